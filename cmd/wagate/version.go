package main

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"

	"github.com/wagate/wagate/codec"
)

// version and commit are set by `make build` through -ldflags
// ("-X main.version=… -X main.commit=…", from git describe and git
// rev-parse). A plain `go build` leaves them empty; buildInfo then falls
// back to what the Go toolchain stamped into the binary.
var (
	version string
	commit  string
)

// buildInfo says what this binary is.
type buildInfo struct {
	Version  string // git describe, the module version, or "devel"
	Commit   string // full commit hash; "unknown" when nothing says
	Modified bool   // built from a work tree with uncommitted changes
	Go       string // the Go toolchain that built it
	Platform string // GOOS/GOARCH
	Opus     string // the libopus linked at run time
}

func readBuildInfo() buildInfo {
	b := buildInfo{
		Version:  version,
		Commit:   commit,
		Go:       runtime.Version(),
		Platform: runtime.GOOS + "/" + runtime.GOARCH,
		Opus:     codec.OpusVersion(),
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		if b.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			b.Version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				if b.Commit == "" {
					b.Commit = s.Value
				}
			case "vcs.modified":
				b.Modified = s.Value == "true"
			}
		}
	}
	if b.Version == "" {
		b.Version = "devel"
	}
	if b.Commit == "" {
		b.Commit = "unknown"
	}
	return b
}

// commitString is the commit with "+dirty" when the tree was modified.
func (b buildInfo) commitString() string {
	if b.Modified {
		return b.Commit + "+dirty"
	}
	return b.Commit
}

// write prints b for -version, one fact per line.
func (b buildInfo) write(w io.Writer) {
	fmt.Fprintf(w, "wagate %s\ncommit  %s\ngo      %s %s\nlibopus %s\n",
		b.Version, b.commitString(), b.Go, b.Platform, b.Opus)
}
