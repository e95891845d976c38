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
#   DIRECTION=uic|bic  uic (default): user-initiated calls, the caller plays Meta
#                      (NET.2) and calls the business number, the callee is the
#                      PBX (NET.3). bic: business-initiated calls, the caller is a
#                      dialer (NET.4, From +15550100001) calling WhatsApp users
#                      +4477009NNNNN taken in turn from USERS distinct ones (a
#                      SIPp injection file), the callee plays Meta on the
#                      whatsapp endpoint (NET.2, media_encryption none).
#   PERMISSIONS=off|on on: the call-permission check is enabled (store in OUT,
#                      limits raised so they never bind) and, before the first
#                      run, every one of the USERS users gets a permanent
#                      permission through the API (PUT /v1/permissions/...,
#                      16 in flight). off: no check. Either way the API has a
#                      token, so the two configs differ only in the check.
#   USERS=10000        distinct WhatsApp users a BIC run cycles through; each is
#                      called again only USERS/RATE seconds later, so no user has
#                      two calls at once (that is refused with 486 by design)
#   TRACE=off|log|hep  off (default): no SIP trace. log: sip.trace.log with
#                      log.level info (otherwise warn), so a line per message
#                      is written to the run's log. hep: sip.trace.hep toward
#                      a UDP sink on NET.8:9060 (python3) that counts packets.
#   MEDIA=none|relay   none (default): signalling only. relay: the callee runs
#                      SIPp -rtp_echo and the caller plays a PCMU pcap, so wagate
#                      relays RTP both ways (SIPp's pcap playback needs root or
#                      CAP_NET_RAW, and starts one thread per call).
#   CDR=on|off         on (default): every call's CDR is written to the events
#                      store (data/events.db) and metrics are kept; off:
#                      cdr.enabled false and no subscribers, so the store is
#                      not even opened (metrics stay: they cost no I/O)
#   EXTRA_YAML=...     raw YAML appended to wagate's config (e.g. an events
#                      subscriber: 'events: {subscribers: [{name: x, url: ...}]}')
#   HOLD_MS=1000       call length in the run/find-max modes
#   SECONDS_PER_RUN=30 length of each find-max step
#   PROXY=wagate|kamailio  wagate (default): the system under test. kamailio:
#                      the same SIPp caller and callee with Kamailio 5.6 in
#                      wagate's place (address and port): a stateful proxy
#                      that record-routes every dialog, relays the INVITE to
#                      the callee and carries no media. It is the reference
#                      wagate's CPU per call is compared against (run.sh with
#                      each PROXY in turn, same machine, same window). Its CPU
#                      and RSS are summed over all its processes. Needs the
#                      Debian package kamailio (make test installs it); MEDIA,
#                      TRACE, PERMISSIONS and CDR do not apply.
#   KAMAILIO_CHILDREN=2 Kamailio's UDP worker processes (one per core here)
#   WAGATE=path        a wagate binary to test (default: go build ./cmd/wagate)
#   WAGATE_ARGS=...    extra wagate flags (e.g. "-cpuprofile /tmp/cpu.prof")
#   OUT=dir            where configs, logs and SIPp statistics go (default: a new
#                      temp dir, printed at the start; kept afterwards)
#   NET=127.0.50       the loopback /24 used: wagate .1, Meta .2, PBX .3, dialer .4
#   SIP_PORT=15072 API_PORT=18080   wagate's SIP and status ports
#   PORT_MIN=10000 PORT_MAX=60000   wagate's RTP port range
#   SILENCE=dtx|continuous          media.silence toward the WhatsApp leg while
#                      the callee sends nothing: dtx (default) a frame every
#                      400 ms, continuous every 20 ms (the build before DTX)
#   PORT_QUARANTINE=2s              media.port_quarantine (at N calls/s with
#                      H-second calls about 2·N·(H + quarantine) pairs are out,
#                      two descriptors each while bound; past media.max_bound_pairs,
#                      derived from the open-files limit, freed pairs are closed
#                      and bound again at their next use)
#
# Per run it prints the calls attempted, successful and failed (from SIPp's
# -trace_stat file; calls still unfinished at the end count as failed), the
# caller's retransmissions, wagate's CPU time (utime+stime from /proc/PID/stat)
# in total and per call, its peak RSS (VmHWM), roughly how busy the machine
# was and how much CPU time the hypervisor stole (/proc/stat; over 5 % it is
# flagged), how many datagrams wagate's SIP socket dropped because its
# receive queue was full (/proc/net/udp), and what /v1/status says once the
# calls are over. Every wait is bounded; every process started is stopped by
# its pid on exit.
#
# The WhatsApp endpoint is configured with media_encryption none: SIPp offers
# and answers plain RTP/AVP, which an SDES endpoint (the default for whatsapp)
# refuses with 488. Toward that endpoint wagate sends its silence from the
# answer on (50 packets/s per call; SIPp does not read them), which is part of
# what a call costs here.
#
# Examples: MEDIA=relay test/load/run.sh run 50 5
#           DIRECTION=bic PERMISSIONS=on test/load/run.sh find-max 500 750 1000 1250
set -euo pipefail

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 2; }

[[ $# -ge 1 ]] || usage
MODE=$1; shift

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
SCEN=$ROOT/test/sipp
MEDIA=${MEDIA:-none}
DIRECTION=${DIRECTION:-uic}
PERMISSIONS=${PERMISSIONS:-off}
CDR=${CDR:-on}
EXTRA_YAML=${EXTRA_YAML:-}
TRACE=${TRACE:-off}
USERS=${USERS:-10000}
HOLD_MS=${HOLD_MS:-1000}
NET=${NET:-127.0.50}
SIP_PORT=${SIP_PORT:-15072}
API_PORT=${API_PORT:-18080}
PORT_MIN=${PORT_MIN:-10000}
PORT_MAX=${PORT_MAX:-60000}
PORT_QUARANTINE=${PORT_QUARANTINE:-2s}
SILENCE=${SILENCE:-dtx}
WAGATE_IP=$NET.1
META_IP=$NET.2
PBX_IP=$NET.3
DIALER_IP=$NET.4
API_TOKEN=load-test-token
PNID=100000000000001
BUSINESS=+15550100001
PEER_PORT=5060
MEDIA_PORT=6000
BUF=4194304
CLK_TCK=$(getconf CLK_TCK)

PROXY=${PROXY:-wagate}
case $MEDIA in none|relay) ;; *) echo "MEDIA must be none or relay" >&2; exit 2 ;; esac
case $PROXY in
    wagate) ;;
    kamailio) command -v kamailio >/dev/null || { echo "kamailio not found: apt-get install kamailio" >&2; exit 1; }
              [[ $MEDIA == none ]] || { echo "PROXY=kamailio relays no media: use MEDIA=none" >&2; exit 2; } ;;
    *) echo "PROXY must be wagate or kamailio" >&2; exit 2 ;;
esac
case $DIRECTION in
    uic) CALLER_IP=$META_IP; CALLEE_IP=$PBX_IP ;;
    bic) CALLER_IP=$DIALER_IP; CALLEE_IP=$META_IP
         [[ $MEDIA == none ]] || { echo "DIRECTION=bic supports MEDIA=none only" >&2; exit 2; } ;;
    *) echo "DIRECTION must be uic or bic" >&2; exit 2 ;;
esac
case $PERMISSIONS in off|on) ;; *) echo "PERMISSIONS must be off or on" >&2; exit 2 ;; esac
[[ $USERS =~ ^[0-9]+$ ]] && (( USERS >= 1 && USERS <= 99999 )) || { echo "USERS must be 1..99999" >&2; exit 2; }
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

# wagate keeps every port pair it has used bound (two descriptors each), so
# the descriptor limit caps the port range as much as PORT_MIN/PORT_MAX do:
# root raises the hard limit too (it may be as low as 20000 in a container).
ulimit -Hn 262144 2>/dev/null || true
ulimit -n 262144 2>/dev/null || ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

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

user_of() { printf '+4477009%05d' "$1"; } # the WhatsApp users of a BIC run

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

# udp_drops IP PORT: receive-queue drops of the UDP socket bound there
# (/proc/net/udp; the address is little-endian hex on x86 and arm64).
udp_drops() {
    local a b c d
    IFS=. read -r a b c d <<<"$1"
    local key; key=$(printf '%02X%02X%02X%02X:%04X' "$d" "$c" "$b" "$a" "$2")
    awk -v k="$key" '$2 == k { print $NF; found = 1 } END { if (!found) print 0 }' /proc/net/udp
}

# machine_ticks: busy, total and stolen clock ticks of all CPUs (/proc/stat;
# stolen: the hypervisor gave them to other tenants; busy is
# all but idle and iowait), to tell whether a run saturated the machine
# (wagate and both SIPps share it).
machine_ticks() {
    awk '$1 == "cpu" { t = 0; for (i = 2; i <= 9; i++) t += $i; print t - $5 - $6, t, $9; exit }' /proc/stat
}

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

# start_hep_sink: a UDP socket on NET.8:9060 that reads and counts HEP
# packets (into $OUT/hep.count when it is stopped), so that the export is
# measured against a collector that keeps up.
HEP_SINK_PID=
start_hep_sink() {
    [[ -n $HEP_SINK_PID ]] && return 0
    python3 -c '
import signal, socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
s.bind((sys.argv[1], 9060))
n = 0
def stop(*_):
    open(sys.argv[2], "w").write(str(n) + "\n"); sys.exit(0)
signal.signal(signal.SIGTERM, stop)
while True:
    s.recv(70000); n += 1
' "$NET.8" "$OUT/hep.count" &
    HEP_SINK_PID=$!
    PIDS+=("$HEP_SINK_PID")
}

WAGATE_PID=
start_wagate() { # start_wagate TAG
    local cfg=$OUT/$1.wagate.yaml perms="permissions: {enabled: false}" trace="" level=warn
    case $TRACE in
        off) ;;
        log) trace="  trace: {log: true}"; level=info ;;
        hep) trace="  trace: {hep: {address: \"$NET.8:9060\"}}"; start_hep_sink ;;
        *) die "TRACE=$TRACE: use off, log or hep" ;;
    esac
    if [[ $PERMISSIONS == on ]]; then
        # Limits far above what a run reaches, so only the lookup is measured.
        perms="permissions:
  enabled: true
  store: $OUT/permissions.db
  limits: {connected_calls_per_user_24h: 1000000, new_calls_per_number_24h: 100000000, concurrent_calls_per_number: 1000000}"
    fi
    # The WhatsApp endpoint speaks plain RTP (media_encryption none): SIPp
    # offers and answers RTP/AVP.
    cat >"$cfg" <<EOF
data_dir: $OUT/data
sip:
  listen:
    - {transport: udp, address: "$WAGATE_IP:$SIP_PORT"}
    - {transport: tcp, address: "$WAGATE_IP:$SIP_PORT"}
  host: $WAGATE_IP
  ring_timeout: 60s
$trace
endpoints:
  - {name: meta, kind: whatsapp, host: $META_IP, port: $PEER_PORT, transport: udp, source_cidrs: [$META_IP/32], codecs: [opus, PCMU, PCMA], media_encryption: none}
  - {name: pbx, kind: pbx, host: $PBX_IP, port: $PEER_PORT, transport: udp, source_cidrs: [$PBX_IP/32], codecs: [PCMU, PCMA]}
  - {name: dialer, kind: dialer, host: $DIALER_IP, port: $PEER_PORT, transport: udp, source_cidrs: [$DIALER_IP/32], codecs: [PCMU, PCMA]}
numbers:
  - {number: "$BUSINESS", phone_number_id: "$PNID", route: {endpoint: pbx, user: "1001"}, dialers: [dialer], callback_permission: true}
media: {bind_ip: $WAGATE_IP, port_min: $PORT_MIN, port_max: $PORT_MAX, rtp_timeout: 30s, rtp_start_timeout: 120s, port_quarantine: $PORT_QUARANTINE, silence: $SILENCE}
api: {listen: "$WAGATE_IP:$API_PORT", token: {value: "$API_TOKEN"}}
$perms
$([[ $CDR == off ]] && echo "cdr: {enabled: false}")
log: {level: $level, format: json}
$EXTRA_YAML
EOF
    "$WAGATE" -check-config "$cfg" >/dev/null
    bound udp "$WAGATE_IP" "$SIP_PORT" && die "$WAGATE_IP:$SIP_PORT (udp) is already in use"
    "$WAGATE" -config "$cfg" ${WAGATE_ARGS:-} >"$OUT/$1.wagate.log" 2>&1 &
    WAGATE_PID=$!
    PIDS+=("$WAGATE_PID")
    wait_for 15 status >/dev/null 2>&1 || die "wagate did not start; see $OUT/$1.wagate.log"
    wait_for 5 bound udp "$WAGATE_IP" "$SIP_PORT" || die "wagate's SIP port is not bound"
    if [[ $DIRECTION == bic && $PERMISSIONS == on ]]; then
        grant_permissions
    fi
}

# start_kamailio TAG: Kamailio in wagate's place, as a stateful
# record-routing proxy toward the callee, with no dispatcher, no probing,
# no database and no logging per message: the least a SIP proxy does for a
# call, which is what wagate's signalling is compared against.
start_kamailio() {
    local cfg=$OUT/$1.kamailio.cfg
    cat >"$cfg" <<EOF
#!KAMAILIO
debug=1
log_stderror=yes
children=${KAMAILIO_CHILDREN:-2}
auto_aliases=no
listen=udp:$WAGATE_IP:$SIP_PORT
mpath="/usr/lib/x86_64-linux-gnu/kamailio/modules/:/usr/lib/kamailio/modules/"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "siputils.so"
loadmodule "textops.so"
modparam("tm", "fr_timer", 5000)
modparam("tm", "fr_inv_timer", 60000)
request_route {
    if (!mf_process_maxfwd_header("10")) { sl_send_reply("483", "Too Many Hops"); exit; }
    if (has_totag()) {
        if (loose_route()) { t_relay(); exit; }
        if (is_method("ACK")) { if (t_check_trans()) { t_relay(); } exit; }
        sl_send_reply("404", "Not here"); exit;
    }
    if (is_method("CANCEL")) { if (t_check_trans()) { t_relay(); } exit; }
    t_check_trans();
    record_route();
    \$du = "sip:$CALLEE_IP:$PEER_PORT";
    if (!t_relay()) { sl_reply_error(); }
    exit;
}
EOF
    bound udp "$WAGATE_IP" "$SIP_PORT" && die "$WAGATE_IP:$SIP_PORT (udp) is already in use"
    kamailio -c -f "$cfg" >"$OUT/$1.kamailio.check" 2>&1 || die "kamailio refuses its config; see $OUT/$1.kamailio.check"
    kamailio -DD -E -m 256 -M 16 -f "$cfg" >"$OUT/$1.kamailio.log" 2>&1 &
    WAGATE_PID=$!
    PIDS+=("$WAGATE_PID")
    wait_for 10 bound udp "$WAGATE_IP" "$SIP_PORT" || die "kamailio did not start; see $OUT/$1.kamailio.log"
}

# proc_tree PID: PID and all its descendants.
proc_tree() {
    local p
    echo "$1"
    for p in $(pgrep -P "$1" 2>/dev/null); do proc_tree "$p"; done
}

# sut_ticks: CPU ticks of the system under test (all of Kamailio's
# processes; wagate is one).
sut_ticks() {
    local p t=0
    for p in $(proc_tree "$WAGATE_PID"); do
        t=$(( t + $(cpu_ticks "$p" 2>/dev/null || echo 0) ))
    done
    echo "$t"
}

# sut_rss_kb FIELD: VmRSS or VmHWM summed over the system under test's
# processes (Kamailio's shared memory counts once per process that touched
# it: an upper bound).
sut_rss_kb() {
    local p t=0 v
    for p in $(proc_tree "$WAGATE_PID"); do
        v=$(vm_kb "$p" "$1" 2>/dev/null || echo 0); t=$(( t + ${v:-0} ))
    done
    echo "$t"
}

# grant_permissions: a permanent permission for each of the USERS users,
# unless the store (kept in OUT across runs) has them already. One curl
# process, at most 16 requests in flight, each bounded to 10 s.
grant_permissions() {
    local api="http://$WAGATE_IP:$API_PORT/v1/permissions/$PNID"
    local last; last=$(user_of $(( USERS - 1 )))
    if curl -fsS --max-time 5 -o /dev/null -H "Authorization: Bearer $API_TOKEN" "$api/$last" 2>/dev/null; then
        echo "  permissions: the $USERS users are granted already (store $OUT/permissions.db)"
        return
    fi
    local cfg=$OUT/grant.curl i
    {
        echo 'request = "PUT"'
        echo "header = \"Authorization: Bearer $API_TOKEN\""
        echo 'header = "Content-Type: application/json"'
        echo 'data = "{\"status\":\"permanent\"}"'
        echo 'max-time = 10'
        echo 'write-out = "%{http_code}\\n"'
        for (( i = 0; i < USERS; i++ )); do
            printf 'url = "%s/+4477009%05d"\noutput = "/dev/null"\n' "$api" "$i"
        done
    } >"$cfg"
    local t0=$SECONDS
    curl -sS --no-progress-meter --parallel --parallel-max 16 -K "$cfg" >"$OUT/grant.codes" 2>"$OUT/grant.err" || true
    local ok; ok=$(grep -c '^200$' "$OUT/grant.codes" || true)
    echo "  permissions: granted $ok of $USERS users in $(( SECONDS - t0 )) s"
    (( ok == USERS )) || die "granting permissions failed ($ok of $USERS answered 200); see $OUT/grant.codes and $OUT/grant.err"
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

# run_uac TAG RATE CALLS LIMIT HOLD_MS TIMEOUT_S
UAC_PID=
run_uac() {
    local scen=$SCEN/uac.xml
    [[ $MEDIA == relay ]] && scen=$OUT/uac_pcap.xml
    local who=(-s "$BUSINESS" -key from_user +447700900123)
    if [[ $DIRECTION == bic ]]; then
        scen=$ROOT/test/load/sipp/bic_uac.xml
        who=(-inf "$(users_csv)" -key from_user "$BUSINESS")
    fi
    # shellcheck disable=SC2046
    sipp -sf "$scen" $(sipp_common "$1.uac" "$CALLER_IP") "${who[@]}" \
        -r "$2" -m "$3" -l "$4" -d "$5" -timeout "${6}s" -timeout_error \
        "$WAGATE_IP:$SIP_PORT" >"$OUT/$1.uac.out" 2>&1 &
    UAC_PID=$!
    PIDS+=("$UAC_PID")
}

# users_csv: the BIC dialer's injection file (made once): USERS users,
# taken in turn.
users_csv() {
    local f=$OUT/users.csv i
    if [[ ! -s $f ]]; then
        { echo SEQUENTIAL; for (( i = 0; i < USERS; i++ )); do printf '+4477009%05d;\n' "$i"; done; } >"$f"
    fi
    echo "$f"
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
    hwm=$(sut_rss_kb VmHWM); rss=$(sut_rss_kb VmRSS)
    awk -v who="$PROXY" -v t="$ticks" -v hz="$CLK_TCK" -v n="$3" -v hwm="$hwm" -v rss="$rss" 'BEGIN {
        s = t / hz
        printf "  %s: %.2f s CPU, %.3f ms CPU/call; peak RSS %.1f MiB (now %.1f MiB)\n",
            who, s, (n > 0 ? 1000 * s / n : 0), hwm / 1024, rss / 1024 }'
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
    # ports_bound: sockets still open, free pairs kept bound within
    # media.max_bound_pairs.
    local bound; bound=$(json_field ports_bound <<<"$st")
    echo "  after drain: calls=${calls:-?} ports_in_use=${ports:-?} ports_bound=${bound:-?}"
}

# --- modes ---------------------------------------------------------------------

# one_run RATE SECONDS -> sets FAILED
one_run() {
    local rate=$1 secs=$2
    local calls=$(( rate * secs ))
    local limit=$(( rate * (HOLD_MS / 1000 + 10) ))
    local timeout=$(( secs + HOLD_MS / 1000 + 60 ))
    local tag="r${rate}"
    echo "== $tag: $rate calls/s for $secs s ($calls calls, hold ${HOLD_MS} ms, $PROXY, media $MEDIA, $DIRECTION, permissions $PERMISSIONS)"
    if [[ $PROXY == kamailio ]]; then start_kamailio "$tag"; else start_wagate "$tag"; fi
    start_uas "$tag" "$calls" "$timeout"
    local t0; t0=$(sut_ticks)
    local m0; m0=$(machine_ticks)
    local d0; d0=$(udp_drops "$WAGATE_IP" "$SIP_PORT")
    run_uac "$tag" "$rate" "$calls" "$limit" "$HOLD_MS" "$timeout"
    wait_pid "$UAC_PID" $(( timeout + 10 )) || true
    local t1; t1=$(sut_ticks)
    local m1; m1=$(machine_ticks)
    local d1; d1=$(udp_drops "$WAGATE_IP" "$SIP_PORT")
    wait_pid "$UAS_PID" 15 || true
    report_calls "$tag" "$calls"
    report_wagate "$t0" "$t1" "$calls"
    # shellcheck disable=SC2086
    awk -v a="$m0" -v b="$m1" -v w=$(( t1 - t0 )) -v n="$(getconf _NPROCESSORS_ONLN)" 'BEGIN {
        split(a, x, " "); split(b, y, " ")
        if (y[2] > x[2]) printf "  machine: about %.0f%% of %d00%% busy during the run (tick-sampled /proc/stat; the system under test %.0f%%, the rest mostly the two SIPps)\n",
            100 * n * (y[1] - x[1]) / (y[2] - x[2]), n, 100 * n * w / (y[2] - x[2])
        if (y[2] > x[2]) printf "  host: the hypervisor stole %.1f%% of the CPU time%s\n", 100 * (y[3] - x[3]) / (y[2] - x[2]),
            ((y[3] - x[3]) > 0.05 * (y[2] - x[2]) ? " (!: other tenants took CPU; compare runs with care)" : "") }'
    echo "  $PROXY's SIP socket: $(( d1 - d0 )) datagrams dropped (receive queue full)"
    if [[ $PROXY == wagate ]]; then report_status; fi
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
    echo "highest clean rate: $best calls/s (media $MEDIA, hold ${HOLD_MS} ms, $DIRECTION, permissions $PERMISSIONS)"
}

mode_concurrent() {
    [[ $# -ge 1 ]] || usage
    [[ $PROXY == wagate ]] || die "the concurrent mode reads wagate's status: PROXY=wagate only"
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
    local rss0 anon0; rss0=$(vm_kb "$WAGATE_PID" VmRSS); anon0=$(vm_kb "$WAGATE_PID" RssAnon)
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
    local rss anon; rss=$(vm_kb "$WAGATE_PID" VmRSS); anon=$(vm_kb "$WAGATE_PID" RssAnon)
    # Per call over idle on the anonymous part (RssAnon: heap, stacks);
    # VmRSS also counts the binary's pages from the page cache, which
    # move by megabytes with what code ran and the kernel's read-ahead.
    awk -v t=$(( t1 - t0 )) -v hz="$CLK_TCK" -v w="$window" -v n="$n" -v rss="$rss" -v rss0="$rss0" -v anon="$anon" -v anon0="$anon0" 'BEGIN {
        c = t / hz / w
        printf "  while held: %.1f%% of one CPU (%.3f ms CPU/s per call); RSS %.1f MiB (idle %.1f), anonymous %.1f MiB: %.1f KiB per call over idle %.1f MiB\n",
            100 * c, (n > 0 ? 1000 * c / n : 0), rss / 1024, rss0 / 1024, anon / 1024, (n > 0 ? (anon - anon0) / n : 0), anon0 / 1024 }'
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
