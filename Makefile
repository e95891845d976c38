# wagate — build, run and test. `make run` and `make test` do all set-up on
# a fresh Debian machine (as root, or with sudo).

GO        ?= go
BIN       := bin/wagate
ARGS      ?=
# System packages: the codec links libopus through cgo; the tests drive real
# SIP peers (sipp from sip-tester) and, from the media issue on, baresip;
# systemd provides systemd-analyze, which checks deploy/wagate.service;
# prometheus provides promtool, which checks /metrics; the SIP trace tests
# decode wagate's HEP packets with sngrep (HEP to SIP) and tshark (the SIP);
# the multi-node tests start redis-server and kamailio on loopback; the
# call flows speak through the espeak-ng command (prompt/, no cgo).
RUN_PKGS  := pkg-config libopus-dev libopusfile-dev espeak-ng
TEST_PKGS := $(RUN_PKGS) sip-tester baresip-core systemd prometheus tshark sngrep redis-server kamailio sox openssl
# What `wagate -version` and the start-up log line report. A plain `go build`
# falls back to the commit the Go toolchain stamps (none in a git worktree,
# or with -buildvcs=false): then it says "devel" and "commit unknown".
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
COMMIT    ?= $(shell git rev-parse HEAD 2>/dev/null)
LDFLAGS   := -X main.version=$(VERSION) -X main.commit=$(COMMIT)

# apt_install installs the Debian packages in $(1) that are not installed yet.
define apt_install
	@missing=""; for p in $(1); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing; \
	fi
endef

.PHONY: all build run test FORCE deps-run deps-test vet fmt-check unit e2e race fuzz bench clean

all: build

build: $(BIN)

# Always handed to go build, whose cache makes an unchanged build cheap:
# a new commit changes the version stamped in, with no source change.
$(BIN): FORCE
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/wagate

FORCE:

deps-run:
	$(call apt_install,$(RUN_PKGS))

deps-test:
	$(call apt_install,$(TEST_PKGS))

## run: build and start wagate on the embedded default config (ARGS="-config FILE" for another)
run: deps-run build
	./$(BIN) $(ARGS)

## test: install test dependencies, then format check, vet, and every test with the race detector
test: deps-test fmt-check vet
	$(GO) test -race -count=1 -timeout 15m ./...

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

## fuzz: run every fuzz target briefly (FUZZTIME=30s by default), then the
## black-box mutation fuzzer against the real binary (BLACKBOX_COUNT messages)
FUZZTIME ?= 30s
BLACKBOX_COUNT ?= 50000
fuzz: deps-test
	@for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
	    echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	  done; \
	done
	@echo "== black-box mutations against ./cmd/wagate ($(BLACKBOX_COUNT) messages)"
	WAGATE_BLACKBOX_COUNT=$(BLACKBOX_COUNT) $(GO) test -count=1 -timeout 30m -run '^TestBlackBoxMutations$$' -v ./test/

## bench: Go benchmarks (numbers, not pass/fail)
bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...

clean:
	rm -rf bin
