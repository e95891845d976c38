#!/usr/bin/env bash
# test/load/run.sh - load tests of the real wagate binary with SIPp peers,
# over loopback only.
#
# Usage (from anywhere in the repository):
#   test/load/run.sh run RATE [SECONDS]     one run: RATE calls/s for SECONDS (default 30)
#   test/load/run.sh find-max [RATES...]    step the rate up (default 500 1000 1500 2000
#                                           2500 3000 3500 4000 5000) until a run has
#                                           failed calls; print the highest clean rate
#   test/load/run.sh concurrent N [HOLD_S]  hold N calls up (default 60 s each) and read
#                                           wagate's RSS and CPU while they are up
#
# Environment:
#   MEDIA=none|relay   none (default): signalling only. relay: the callee runs
#                      SIPp -rtp_echo and the caller plays a PCMU pcap, so wagate
#                      relays RTP both ways (SIPp's pcap playback needs root or
#                      CAP_NET_RAW, and starts one thread per call).
#   HOLD_MS=1000       call length in the run/find-max modes
#   SECONDS_PER_RUN=30 length of each find-max step
#   WAGATE=path        a wagate binary to test (default: go build ./cmd/wagate)
#   WAGATE_ARGS=...    extra wagate flags (e.g. "-cpuprofile /tmp/cpu.prof")
#   OUT=dir            where configs, logs and SIPp statistics go (default: a new
#                      temp dir, printed at the start; kept afterwards)
#   NET=127.0.50       the loopback /24 used: wagate .1, caller (WhatsApp side) .2,
#                      callee (PBX) .3
#   SIP_PORT=15072 API_PORT=18080   wagate's SIP and status ports
#   PORT_MIN=10000 PORT_MAX=60000   wagate's RTP port range
#
# Per run it prints the calls attempted, successful and failed (from SIPp's
# -trace_stat file; calls still unfinished at the end count as failed), the
# caller's retransmissions, wagate's CPU time (utime+stime from /proc/PID/stat)
# in total and per call, its peak RSS (VmHWM) and what /v1/status says once
# the calls are over. Every wait is bounded; every process started is stopped
# by its pid on exit.
#
# Example: MEDIA=relay test/load/run.sh run 50 5
set -euo pipefail

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 2; }

[[ $# -ge 1 ]] || usage
MODE=$1; shift

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
SCEN=$ROOT/test/sipp
MEDIA=${MEDIA:-none}
HOLD_MS=${HOLD_MS:-1000}
NET=${NET:-127.0.50}
SIP_PORT=${SIP_PORT:-15072}
API_PORT=${API_PORT:-18080}
PORT_MIN=${PORT_MIN:-10000}
PORT_MAX=${PORT_MAX:-60000}
WAGATE_IP=$NET.1
CALLER_IP=$NET.2
CALLEE_IP=$NET.3
PEER_PORT=5060
MEDIA_PORT=6000
BUF=4194304
CLK_TCK=$(getconf CLK_TCK)

case $MEDIA in none|relay) ;; *) echo "MEDIA must be none or relay" >&2; exit 2 ;; esac
command -v sipp >/dev/null || { echo "sipp not found: run \`make test\` (it installs SIPp) or apt-get install sip-tester" >&2; exit 1; }
command -v curl >/dev/null || { echo "curl not found" >&2; exit 1; }

OUT=${OUT:-$(mktemp -d /tmp/wagate-load.XXXXXX)}
mkdir -p "$OUT"
echo "# output in $OUT"

PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# --- helpers -----------------------------------------------------------------

die() { echo "error: $*" >&2; exit 1; }

# bound PROTO IP PORT: is the socket bound (udp) / listening (tcp)?
bound() {
    local flag=-uln; [[ $1 == tcp ]] && flag=-tln
    ss -H $flag "src $2:$3" 2>/dev/null | grep -q .
}

# wait_for SECONDS CMD...: run CMD every 0.1 s until it succeeds.
wait_for() {
    local limit=$(( $1 * 10 )); shift
    local i
    for (( i = 0; i < limit; i++ )); do
        "$@" && return 0
        sleep 0.1
    done
    return 1
}

status() { curl -fsS --max-time 2 "http://$WAGATE_IP:$API_PORT/v1/status"; }

# json_field NAME: read a number from the status JSON on stdin.
json_field() { sed -n "s/.*\"$1\":\([0-9]*\).*/\1/p"; }

cpu_ticks() { # utime+stime of PID, in clock ticks
    local stat; stat=$(<"/proc/$1/stat")
    stat=${stat##*) }   # fields after "(comm) "
    # shellcheck disable=SC2086
    set -- $stat
    echo $(( ${12} + ${13} ))
}

vm_kb() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }

# stat_col FILE NAME: column NAME of the last row of a SIPp -trace_stat CSV.
stat_col() {
    awk -F';' -v name="$2" '
        NR == 1 { for (i = 1; i <= NF; i++) if ($i == name) c = i; next }
        { last = $c }
        END { print (c && last != "" ? last : 0) }' "$1"
}

build_wagate() {
    if [[ -n ${WAGATE:-} ]]; then
        [[ -x $WAGATE ]] || die "WAGATE=$WAGATE is not executable"
        return
    fi
    WAGATE=$OUT/wagate
    echo "# building wagate"
    (cd "$ROOT" && go build -o "$WAGATE" ./cmd/wagate)
}

make_pcap() { # make_pcap SECONDS: PCMU tone for uac_pcap.xml, next to a copy of it
    [[ $MEDIA == relay ]] || return 0
    if [[ $(id -u) != 0 ]]; then
        echo "warning: SIPp plays pcaps through a raw socket; without root/CAP_NET_RAW the relay mode sends no RTP" >&2
    fi
    (cd "$ROOT" && go run ./test/load/mkpcap -o "$OUT/pcmu.pcap" -seconds "$1")
    cp "$SCEN/uac_pcap.xml" "$OUT/uac_pcap.xml"
}

WAGATE_PID=
start_wagate() { # start_wagate TAG
    local cfg=$OUT/$1.wagate.yaml
    cat >"$cfg" <<EOF
sip:
  listen:
    - {transport: udp, address: "$WAGATE_IP:$SIP_PORT"}
    - {transport: tcp, address: "$WAGATE_IP:$SIP_PORT"}
  host: $WAGATE_IP
  ring_timeout: 60s
endpoints:
  - {name: meta, kind: whatsapp, host: $CALLER_IP, port: $PEER_PORT, transport: udp, source_cidrs: [$CALLER_IP/32], codecs: [opus, PCMU, PCMA]}
  - {name: pbx, kind: pbx, host: $CALLEE_IP, port: $PEER_PORT, transport: udp, source_cidrs: [$CALLEE_IP/32], codecs: [PCMU, PCMA]}
numbers:
  - {number: "+15550100001", phone_number_id: "100000000000001", route: {endpoint: pbx, user: "1001"}, callback_permission: true}
media: {bind_ip: $WAGATE_IP, port_min: $PORT_MIN, port_max: $PORT_MAX, rtp_timeout: 30s, rtp_start_timeout: 120s, port_quarantine: 2s}
api: {listen: "$WAGATE_IP:$API_PORT"}
log: {level: warn, format: json}
EOF
    "$WAGATE" -check-config "$cfg" >/dev/null
    bound udp "$WAGATE_IP" "$SIP_PORT" && die "$WAGATE_IP:$SIP_PORT (udp) is already in use"
    "$WAGATE" -config "$cfg" ${WAGATE_ARGS:-} >"$OUT/$1.wagate.log" 2>&1 &
    WAGATE_PID=$!
    PIDS+=("$WAGATE_PID")
    wait_for 15 status >/dev/null || die "wagate did not start; see $OUT/$1.wagate.log"
    wait_for 5 bound udp "$WAGATE_IP" "$SIP_PORT" || die "wagate's SIP port is not bound"
}

stop_wagate() {
    [[ -n $WAGATE_PID ]] || return 0
    kill -TERM "$WAGATE_PID" 2>/dev/null || true
    local i
    for (( i = 0; i < 150; i++ )); do
        kill -0 "$WAGATE_PID" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$WAGATE_PID" 2>/dev/null; then
        echo "warning: wagate still running 15 s after SIGTERM; killing it" >&2
        kill -KILL "$WAGATE_PID" 2>/dev/null || true
    fi
    wait "$WAGATE_PID" 2>/dev/null || true
    WAGATE_PID=
}

# sipp_common TAG IP: arguments shared by every SIPp run (bounded, no stdin,
# statistics and errors into $OUT).
sipp_common() {
    echo -i "$2" -p "$PEER_PORT" -bind_local -mi "$2" -mp "$MEDIA_PORT" -ci "$2" \
        -buff_size "$BUF" -nostdin \
        -trace_err -error_file "$OUT/$1.errors.log" \
        -trace_stat -stf "$OUT/$1.stat.csv" -fd 1 \
        -trace_screen -screen_file "$OUT/$1.screen.log"
}

UAS_PID=
start_uas() { # start_uas TAG CALLS TIMEOUT_S
    local echo_flag=
    [[ $MEDIA == relay ]] && echo_flag=-rtp_echo
    bound udp "$CALLEE_IP" "$PEER_PORT" && die "$CALLEE_IP:$PEER_PORT is already in use"
    # shellcheck disable=SC2046
    sipp -sf "$SCEN/uas.xml" $(sipp_common "$1.uas" "$CALLEE_IP") $echo_flag \
        -m "$2" -timeout "${3}s" -timeout_error >"$OUT/$1.uas.out" 2>&1 &
    UAS_PID=$!
    PIDS+=("$UAS_PID")
    wait_for 10 bound udp "$CALLEE_IP" "$PEER_PORT" || die "sipp callee did not start; see $OUT/$1.uas.out"
}

wait_pid() { # wait_pid PID SECONDS: wait for exit, kill after SECONDS; returns its status
    local i
    for (( i = 0; i < $2 * 10; i++ )); do
        kill -0 "$1" 2>/dev/null || break
        sleep 0.1
    done
    kill -0 "$1" 2>/dev/null && kill -KILL "$1" 2>/dev/null
    local rc=0
    wait "$1" 2>/dev/null || rc=$?
    return $rc
}

# run_uac TAG RATE CALLS LIMIT HOLD_MS TIMEOUT_S [async]
UAC_PID=
run_uac() {
    local scen=$SCEN/uac.xml
    [[ $MEDIA == relay ]] && scen=$OUT/uac_pcap.xml
    # shellcheck disable=SC2046
    sipp -sf "$scen" $(sipp_common "$1.uac" "$CALLER_IP") \
        -s +15550100001 -key from_user +447700900123 \
        -r "$2" -m "$3" -l "$4" -d "$5" -timeout "${6}s" -timeout_error \
        "$WAGATE_IP:$SIP_PORT" >"$OUT/$1.uac.out" 2>&1 &
    UAC_PID=$!
    PIDS+=("$UAC_PID")
}

report_calls() { # report_calls TAG ATTEMPTED -> sets FAILED
    local csv=$OUT/$1.uac.stat.csv ok=0 failed=0 retrans=0
    if [[ -s $csv ]]; then
        ok=$(stat_col "$csv" "SuccessfulCall(C)")
        failed=$(stat_col "$csv" "FailedCall(C)")
        retrans=$(stat_col "$csv" "Retransmissions(C)")
    fi
    local unfinished=$(( $2 - ok - failed ))
    (( unfinished < 0 )) && unfinished=0
    FAILED=$(( failed + unfinished ))
    printf '  calls: %d attempted, %d successful, %d failed (%d unfinished); %d retransmissions\n' \
        "$2" "$ok" "$FAILED" "$unfinished" "$retrans"
}

report_wagate() { # report_wagate TICKS_BEFORE TICKS_AFTER CALLS
    local ticks=$(( $2 - $1 ))
    local hwm rss
    hwm=$(vm_kb "$WAGATE_PID" VmHWM); rss=$(vm_kb "$WAGATE_PID" VmRSS)
    awk -v t="$ticks" -v hz="$CLK_TCK" -v n="$3" -v hwm="$hwm" -v rss="$rss" 'BEGIN {
        s = t / hz
        printf "  wagate: %.2f s CPU, %.3f ms CPU/call; peak RSS %.1f MiB (now %.1f MiB)\n",
            s, (n > 0 ? 1000 * s / n : 0), hwm / 1024, rss / 1024 }'
}

report_status() {
    local st
    st=$(status 2>/dev/null || echo '{}')
    echo "  status: $st"
    # Calls and ports should drain once the callers are done.
    local i calls ports
    for (( i = 0; i < 100; i++ )); do
        st=$(status 2>/dev/null || echo '{}')
        calls=$(json_field calls <<<"$st"); ports=$(json_field ports_in_use <<<"$st")
        [[ $calls == 0 && $ports == 0 ]] && break
        sleep 0.1
    done
    echo "  after drain: calls=${calls:-?} ports_in_use=${ports:-?}"
}

# --- modes ---------------------------------------------------------------------

# one_run RATE SECONDS -> sets FAILED
one_run() {
    local rate=$1 secs=$2
    local calls=$(( rate * secs ))
    local limit=$(( rate * (HOLD_MS / 1000 + 10) ))
    local timeout=$(( secs + HOLD_MS / 1000 + 60 ))
    local tag="r${rate}"
    echo "== $tag: $rate calls/s for $secs s ($calls calls, hold ${HOLD_MS} ms, media $MEDIA)"
    start_wagate "$tag"
    start_uas "$tag" "$calls" "$timeout"
    local t0; t0=$(cpu_ticks "$WAGATE_PID")
    run_uac "$tag" "$rate" "$calls" "$limit" "$HOLD_MS" "$timeout"
    wait_pid "$UAC_PID" $(( timeout + 10 )) || true
    local t1; t1=$(cpu_ticks "$WAGATE_PID")
    wait_pid "$UAS_PID" 15 || true
    report_calls "$tag" "$calls"
    report_wagate "$t0" "$t1" "$calls"
    report_status
    stop_wagate
}

mode_run() {
    [[ $# -ge 1 ]] || usage
    local rate=$1 secs=${2:-30}
    build_wagate
    make_pcap $(( HOLD_MS / 1000 + 5 ))
    one_run "$rate" "$secs"
    (( FAILED == 0 )) || exit 1
}

mode_find_max() {
    local rates=("$@")
    [[ ${#rates[@]} -gt 0 ]] || rates=(500 1000 1500 2000 2500 3000 3500 4000 5000)
    build_wagate
    make_pcap $(( HOLD_MS / 1000 + 5 ))
    local best=0 rate
    for rate in "${rates[@]}"; do
        one_run "$rate" "${SECONDS_PER_RUN:-30}"
        if (( FAILED > 0 )); then
            echo "== $rate calls/s had $FAILED failed calls"
            break
        fi
        best=$rate
        sleep 3 # let quarantined ports come back
    done
    echo "highest clean rate: $best calls/s (media $MEDIA, hold ${HOLD_MS} ms)"
}

mode_concurrent() {
    [[ $# -ge 1 ]] || usage
    local n=$1 hold=${2:-60}
    local rate=$(( n / 10 )); (( rate < 10 )) && rate=10; (( rate > 500 )) && rate=500
    local ramp=$(( (n + rate - 1) / rate ))
    (( hold > ramp + 15 )) || die "HOLD_S=$hold is too short to ramp $n calls at $rate/s and measure (need > $(( ramp + 15 )))"
    local timeout=$(( ramp + hold + 60 ))
    local tag="c$n"
    build_wagate
    make_pcap $(( hold + 5 ))
    echo "== $tag: $n concurrent calls (ramp $rate calls/s, hold ${hold} s, media $MEDIA)"
    start_wagate "$tag"
    local rss0; rss0=$(vm_kb "$WAGATE_PID" VmRSS)
    start_uas "$tag" "$n" "$timeout"
    run_uac "$tag" "$rate" "$n" "$n" $(( hold * 1000 )) "$timeout"
    # Wait (bounded) for all calls to be up.
    local i st calls=0
    for (( i = 0; i < (ramp + 30) * 10; i++ )); do
        st=$(status 2>/dev/null || echo '{}')
        calls=$(json_field calls <<<"$st")
        [[ ${calls:-0} -ge $n ]] && break
        kill -0 "$UAC_PID" 2>/dev/null || break
        sleep 0.1
    done
    echo "  calls up: ${calls:-0} of $n"
    sleep 2
    local t0 t1 window=10
    t0=$(cpu_ticks "$WAGATE_PID"); sleep "$window"; t1=$(cpu_ticks "$WAGATE_PID")
    local rss; rss=$(vm_kb "$WAGATE_PID" VmRSS)
    awk -v t=$(( t1 - t0 )) -v hz="$CLK_TCK" -v w="$window" -v n="$n" -v rss="$rss" -v rss0="$rss0" 'BEGIN {
        c = t / hz / w
        printf "  while held: %.1f%% of one CPU (%.3f ms CPU/s per call); RSS %.1f MiB (%.1f KiB per call over idle %.1f MiB)\n",
            100 * c, (n > 0 ? 1000 * c / n : 0), rss / 1024, (n > 0 ? (rss - rss0) / n : 0), rss0 / 1024 }'
    wait_pid "$UAC_PID" $(( timeout + 10 )) || true
    wait_pid "$UAS_PID" 15 || true
    report_calls "$tag" "$n"
    echo "  wagate peak RSS: $(( $(vm_kb "$WAGATE_PID" VmHWM) / 1024 )) MiB"
    report_status
    stop_wagate
    (( FAILED == 0 )) || exit 1
}

FAILED=0
case $MODE in
    run) mode_run "$@" ;;
    find-max) mode_find_max "$@" ;;
    concurrent) mode_concurrent "$@" ;;
    -h|--help|help) usage ;;
    *) usage ;;
esac
