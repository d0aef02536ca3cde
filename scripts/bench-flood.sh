#!/usr/bin/env bash
# Side-by-side cost of watching a drop storm: how fast can one core flood UDP into a closed
# port (every packet dropped by the kernel with NO_SOCKET) while each tool watches?
#
#   baseline   nothing attached
#   dropscope  dropscope capture -w X.pcapng -q --stats-json S   (main namespace, eBPF)
#   tcpdump    ip netns exec B tcpdump -i <B's veth> -w X.pcap     (the same packets, AF_PACKET)
#   bpftrace   bpftrace -e 'tracepoint:skb:kfree_skb { @[reason] = count(); }'
#
# Two network namespaces A -> B joined by a veth pair made here (removed on exit, also on
# failure or Ctrl-C); traffic goes only from A to B. The setups are interleaved over R rounds
# (order rotated each round) so drift hits them alike; the table shows the median rate.
# For dropscope it also checks the accounting: sent = observed by the kernel program =
# delivered + lost in the ring, and what reached the pcapng.
#
# usage: scripts/bench-flood.sh [--rounds R] [--duration D] [--out FILE.json] [options]
#   see --help. Needs root, iproute2, tcpdump, bpftrace, python3, cargo (builds udpflood).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
ROUNDS=3
DURATION=5
SIZE=64
FLOWS=4
BATCH=64
PORT=9
OUT="$ROOT/target/bench-flood.json"
SETUPS="baseline,dropscope,tcpdump,bpftrace"
DROPSCOPE="${DROPSCOPE:-$ROOT/target/release/dropscope}"
DS_FLAGS=""
PIN=1
FLOOD_CPU=0
TOOL_CPU=1
NICE=-10
VERIFY=1
KEEP=0
WORKBASE="${TMPDIR:-/tmp}"

usage() {
  cat <<EOF
usage: $0 [options]
  --rounds R        rounds; each runs every setup once (default $ROUNDS)
  --duration D      seconds of flood per run (default $DURATION)
  --size BYTES      UDP payload size (default $SIZE)
  --flows N         source ports (flows) used by the flood (default $FLOWS)
  --batch N         datagrams per sendmmsg call (default $BATCH)
  --setups LIST     comma-separated subset of: baseline,dropscope,tcpdump,bpftrace
                    (default all)
  --dropscope PATH  dropscope binary (default target/release/dropscope, or \$DROPSCOPE)
  --dropscope-flags "FLAGS"  extra capture flags for dropscope, e.g. "--exemplars 4" (storm mode)
  --out FILE        JSON file with every raw number (default target/bench-flood.json)
  --workdir DIR     where captures are written while a run lasts (default \$TMPDIR or /tmp)
  --no-pin          do not pin the flood and the watching tool to CPUs
  --flood-cpu N     CPU for the flood (default $FLOOD_CPU)
  --tool-cpu N      CPU for the watching tool (default $TOOL_CPU: another CPU than the flood's,
                    as on a real node; the same CPU hides cross-CPU wakeup costs)
  --nice N          nice value for the flood and the tool (default $NICE: ahead of builds)
  --no-verify       do not count the packets in the written files (capinfos)
  --keep            keep the scratch directory (captures, logs) instead of removing it
Prints a markdown table on stdout; progress and errors go to stderr.
EOF
}

while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) ROUNDS="$2"; shift 2 ;;
    --duration) DURATION="$2"; shift 2 ;;
    --size) SIZE="$2"; shift 2 ;;
    --flows) FLOWS="$2"; shift 2 ;;
    --batch) BATCH="$2"; shift 2 ;;
    --setups) SETUPS="$2"; shift 2 ;;
    --dropscope) DROPSCOPE="$2"; shift 2 ;;
    --dropscope-flags) DS_FLAGS="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    --workdir) WORKBASE="$2"; shift 2 ;;
    --no-pin) PIN=0; shift ;;
    --flood-cpu) FLOOD_CPU="$2"; shift 2 ;;
    --tool-cpu) TOOL_CPU="$2"; shift 2 ;;
    --nice) NICE="$2"; shift 2 ;;
    --no-verify) VERIFY=0; shift ;;
    --keep) KEEP=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "bench-flood: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

log() { printf 'bench-flood: %s\n' "$*" >&2; }
die() { printf 'bench-flood: ERROR: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------- environment checks
[[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || die "--rounds must be a positive integer"
[[ "$DURATION" =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "--duration must be a number of seconds"
if ! [[ "$FLOWS" =~ ^[1-9][0-9]*$ ]] || [ "$FLOWS" -gt 1000 ]; then die "--flows must be 1..1000"; fi
[[ "$NICE" =~ ^-?[0-9]+$ ]] || die "--nice must be an integer"
for c in "$FLOOD_CPU" "$TOOL_CPU"; do
  if ! [[ "$c" =~ ^[0-9]+$ ]] || [ "$c" -ge "$(nproc)" ]; then die "--flood-cpu/--tool-cpu: $c is not a CPU number below $(nproc)"; fi
done
[ "$(id -u)" -eq 0 ] || die "must run as root (network namespaces, eBPF, packet capture): sudo $0"
IFS=',' read -r -a SETUP_LIST <<<"$SETUPS"
for s in "${SETUP_LIST[@]}"; do
  case "$s" in baseline|dropscope|tcpdump|bpftrace) ;; *) die "unknown setup '$s' in --setups" ;; esac
done
has_setup() { [[ ",$SETUPS," == *",$1,"* ]]; }
need_cmd() { command -v "$1" >/dev/null 2>&1 || die "$1 not found: $2"; }
need_cmd ip "install iproute2"
need_cmd python3 "python3 summarises the results"
need_cmd cargo "cargo builds the flood generator (benches/src/bin/udpflood.rs)"
has_setup tcpdump && need_cmd tcpdump "install tcpdump (scripts/setup.sh does), or leave it out of --setups"
has_setup bpftrace && need_cmd bpftrace "install bpftrace (scripts/setup.sh does), or leave it out of --setups"
if has_setup dropscope || has_setup bpftrace; then
  if ! [ -r /sys/kernel/tracing/events/skb/kfree_skb/format ]; then
    mount -t tracefs nodev /sys/kernel/tracing 2>/dev/null || true
  fi
  [ -r /sys/kernel/tracing/events/skb/kfree_skb/format ] ||
    die "tracepoint skb:kfree_skb not found (is tracefs mounted at /sys/kernel/tracing?)"
  grep -q 'field:enum skb_drop_reason reason\|field:.*reason;' /sys/kernel/tracing/events/skb/kfree_skb/format ||
    die "this kernel's skb:kfree_skb has no drop reason (needs Linux >= 5.17)"
fi
VERIFY_TOOL=""
if [ "$VERIFY" = 1 ]; then
  if command -v capinfos >/dev/null 2>&1; then VERIFY_TOOL=capinfos
  else log "capinfos not found: written files are not counted (install tshark's wireshark-common)"; fi
fi

DROPSCOPE_MISSING=""
if has_setup dropscope && ! [ -x "$DROPSCOPE" ]; then
  DROPSCOPE_MISSING="dropscope binary not found at $DROPSCOPE: build it with 'cargo build --release -p dropscope' (or pass --dropscope PATH); the dropscope setup is NOT run"
  printf '\nbench-flood: ERROR: %s\n\n' "$DROPSCOPE_MISSING" >&2
  SETUP_LIST=()
  for s in ${SETUPS//,/ }; do [ "$s" = dropscope ] || SETUP_LIST+=("$s"); done
  [ "${#SETUP_LIST[@]}" -gt 0 ] || exit 1
fi

NCPU="$(nproc)"
# nice: the flood and the tool run ahead of whatever else the machine is doing (builds).
FLOOD_RUN=(nice -n "$NICE")
TOOL_RUN=(nice -n "$NICE")
if [ "$PIN" = 1 ] && [ "$NCPU" -ge 2 ] && command -v taskset >/dev/null 2>&1; then
  FLOOD_RUN+=(taskset -c "$FLOOD_CPU")
  TOOL_RUN+=(taskset -c "$TOOL_CPU")
else
  PIN=0
  log "not pinning (needs 2+ CPUs and taskset, and no --no-pin)"
fi

log "building the flood generator (cargo build --release -p dropscope-benches --bin udpflood)"
BUILD_LOG="$(mktemp)"
if ! (cd "$ROOT" && cargo build --release -p dropscope-benches --bin udpflood) >"$BUILD_LOG" 2>&1; then
  cat "$BUILD_LOG" >&2
  rm -f "$BUILD_LOG"
  die "building udpflood failed"
fi
rm -f "$BUILD_LOG"
UDPFLOOD="$ROOT/target/release/udpflood"

# ---------------------------------------------------------------- namespaces, cleanup
TAG="dsbf$(($$ % 100000))"
# shellcheck source=scripts/netns-pair.sh
. "$ROOT/scripts/netns-pair.sh"
WORK="$(mktemp -d "$WORKBASE/dropscope-bench-flood.XXXXXX")"
TOOL_PID=""
WRAP_PID=""

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [ -n "$TOOL_PID" ] && kill -0 "$TOOL_PID" 2>/dev/null; then
    kill -KILL "$TOOL_PID" 2>/dev/null || true
  fi
  [ -z "$WRAP_PID" ] || wait "$WRAP_PID" 2>/dev/null || true
  netns_pair_del
  if [ "$KEEP" = 1 ]; then log "kept $WORK"; else rm -rf "$WORK"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

netns_pair "$TAG" 77
log "namespaces $NS_A ($IP_A) -> $NS_B ($IP_B) over veth $VETH_A/$VETH_B; scratch $WORK"
if ip netns exec "$NS_B" ss -Hlun "sport = :$PORT" | grep -q .; then die "port $PORT is open in $NS_B"; fi

SPORTS="$(seq -s, 40000 $((40000 + FLOWS - 1)))"
BPFTRACE_VER="$(bpftrace --version 2>/dev/null | grep -o '[0-9]*\.[0-9]*' | head -n1 || true)"
# bpftrace >= 0.20 spells tracepoint arguments args.reason; older ones args->reason.
if [ -n "$BPFTRACE_VER" ] && python3 -c "import sys; a,b=map(int,'$BPFTRACE_VER'.split('.')); sys.exit(0 if (a,b)>=(0,20) else 1)"; then
  BT_ARG='args.reason'
else
  BT_ARG='args->reason'
fi
BT_PROG="tracepoint:skb:kfree_skb { @[$BT_ARG] = count(); }"

# ---------------------------------------------------------------- helpers
# CPU ticks (utime + stime) of a live process, "" if gone.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || true; }

# What PID's open file descriptors point at, one a line.
fd_targets() { find "/proc/$1/fd" -mindepth 1 -maxdepth 1 -printf '%l\n' 2>/dev/null || true; }

# Waits until PID holds a perf event or BPF link (its tracepoint program is attached).
wait_attached() {
  local pid=$1 limit=$2 i
  for ((i = 0; i < limit * 20; i++)); do
    kill -0 "$pid" 2>/dev/null || return 1
    if fd_targets "$pid" | grep -q 'anon_inode:\[perf_event\]\|anon_inode:bpf[-_]link'; then
      return 0
    fi
    sleep 0.05
  done
  return 1
}

# Waits until FILE contains TEXT while PID lives.
wait_text() {
  local pid=$1 file=$2 text=$3 limit=$4 i
  for ((i = 0; i < limit * 20; i++)); do
    grep -q "$text" "$file" 2>/dev/null && return 0
    kill -0 "$pid" 2>/dev/null || return 1
    sleep 0.05
  done
  return 1
}

# Starts a watching tool in the background: TOOL_PID is the tool itself (for SIGINT and
# /proc), WRAP_PID a subshell that waits for it and records its exit code and its whole-life
# CPU time (the subshell's only child is the tool, so its children times are the tool's).
start_tool() {
  local dir=$1
  shift
  (
    set +e
    "$@" </dev/null >"$dir/tool.out" 2>"$dir/tool.err" &
    echo $! >"$dir/pid"
    wait $!
    echo $? >"$dir/tool_rc"
    times >"$dir/times"
  ) &
  WRAP_PID=$!
  local i
  for ((i = 0; i < 200; i++)); do
    [ -s "$dir/pid" ] && break
    sleep 0.01
  done
  TOOL_PID="$(cat "$dir/pid")"
}

# SIGINT to the tool; wait (up to 60 s) for it to finish writing and exit, else SIGKILL.
stop_tool() {
  local dir=$1 i
  kill -INT "$TOOL_PID" 2>/dev/null || true
  for ((i = 0; i < 1200; i++)); do
    [ -e "$dir/times" ] && break
    sleep 0.05
  done
  if [ -e "$dir/times" ]; then
    echo sigint >"$dir/stop"
  else
    echo killed >"$dir/stop"
    log "$(cat "$dir/setup") did not exit within 60 s of SIGINT: killed"
    kill -KILL "$TOOL_PID" 2>/dev/null || true
  fi
  wait "$WRAP_PID" 2>/dev/null || true
  TOOL_PID=""
  WRAP_PID=""
}

# A tool that never became ready: stop it and record why (exit code, last stderr lines).
not_ready() {
  local dir=$1 what=$2
  stop_tool "$dir"
  echo "$what (exit code $(cat "$dir/tool_rc" 2>/dev/null || echo '?')): $(tail -n 3 "$dir/tool.err" | tr '\n' ' ')" >"$dir/error"
  log "round $(cat "$dir/round") $(cat "$dir/setup"): $(cat "$dir/error")"
}

# Other processes with BPF programs loaded (e.g. another dropscope on kfree_skb): their
# per-packet cost lands on the flood too, so the rates are not comparable while they run.
other_bpf_users() {
  local p
  for p in /proc/[0-9]*; do
    [ "${p#/proc/}" = "$$" ] && continue
    if fd_targets "${p#/proc/}" | grep -q 'anon_inode:bpf-prog\|anon_inode:bpf[-_]link'; then
      printf '%s %s\n' "${p#/proc/}" "$(tr '\0' ' ' <"$p/cmdline" 2>/dev/null | cut -c1-100)"
    fi
  done
}

# shellcheck disable=SC2016 # an awk program

flood() {
  local dir=$1
  udp_noports >"$dir/noports0"
  "${FLOOD_RUN[@]}" "$UDPFLOOD" --netns "$NS_A" --src "$IP_A" --dst "$IP_B:$PORT" --sports "$SPORTS" \
    --size "$SIZE" --batch "$BATCH" --duration "$DURATION" >"$dir/flood.json" 2>"$dir/flood.err" ||
    die "udpflood failed: $(cat "$dir/flood.err")"
  udp_noports >"$dir/noports1"
}

count_packets() { # FILE -> packet count, via capinfos
  [ -n "$VERIFY_TOOL" ] && [ -f "$1" ] || return 0
  capinfos -c -M -T -r "$1" 2>/dev/null | awk -F'\t' 'NF >= 2 { print $2; exit }'
}

run_one() {
  local setup=$1 round=$2 dir
  dir="$WORK/runs/$(printf '%02d' "$round")-$setup"
  mkdir -p "$dir"
  echo "$setup" >"$dir/setup"
  echo "$round" >"$dir/round"
  case "$setup" in
    baseline)
      flood "$dir"
      ;;
    dropscope)
      # shellcheck disable=SC2086 # DS_FLAGS is a list of flags
      start_tool "$dir" "${TOOL_RUN[@]}" "$DROPSCOPE" capture -w "$WORK/cap.pcapng" -q --stats-json "$dir/stats.json" $DS_FLAGS
      if ! wait_attached "$TOOL_PID" 60; then
        not_ready "$dir" "dropscope did not attach"
        return 0
      fi
      sleep 0.3
      cpu_ticks "$TOOL_PID" >"$dir/ticks0"
      flood "$dir"
      cpu_ticks "$TOOL_PID" >"$dir/ticks1"
      stop_tool "$dir"
      stat -c %s "$WORK/cap.pcapng" >"$dir/file_bytes" 2>/dev/null || true
      count_packets "$WORK/cap.pcapng" >"$dir/file_packets"
      rm -f "$WORK/cap.pcapng"
      ;;
    tcpdump)
      start_tool "$dir" ip netns exec "$NS_B" "${TOOL_RUN[@]}" tcpdump -i "$VETH_B" -w "$WORK/cap.pcap"
      if ! wait_text "$TOOL_PID" "$dir/tool.err" "listening on" 30; then
        not_ready "$dir" "tcpdump did not start"
        return 0
      fi
      cpu_ticks "$TOOL_PID" >"$dir/ticks0"
      flood "$dir"
      cpu_ticks "$TOOL_PID" >"$dir/ticks1"
      stop_tool "$dir"
      stat -c %s "$WORK/cap.pcap" >"$dir/file_bytes" 2>/dev/null || true
      count_packets "$WORK/cap.pcap" >"$dir/file_packets"
      rm -f "$WORK/cap.pcap"
      ;;
    bpftrace)
      start_tool "$dir" "${TOOL_RUN[@]}" bpftrace -e "$BT_PROG"
      if ! wait_text "$TOOL_PID" "$dir/tool.out" "Attaching" 60 || ! wait_attached "$TOOL_PID" 30; then
        not_ready "$dir" "bpftrace did not attach"
        return 0
      fi
      sleep 0.3
      cpu_ticks "$TOOL_PID" >"$dir/ticks0"
      flood "$dir"
      cpu_ticks "$TOOL_PID" >"$dir/ticks1"
      stop_tool "$dir"
      ;;
  esac
  log "round $round $setup: $(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print("%d sent, %.0f kpps" % (d["sent"], d["pps"] / 1e3))' "$dir/flood.json")"
}

# ---------------------------------------------------------------- the runs
LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"
other_bpf_users >"$WORK/bpf_users_before"
if [ -s "$WORK/bpf_users_before" ]; then
  log "WARNING: other processes hold BPF programs (their per-packet cost slows the flood too; rates are not comparable):"
  sed 's/^/  /' "$WORK/bpf_users_before" >&2
fi
if python3 -c "import os,sys; sys.exit(0 if os.getloadavg()[0] > os.cpu_count() / 2 else 1)"; then
  log "WARNING: load average $LOAD_BEFORE on $NCPU CPUs: other work on this machine will make the rates noisy"
fi
START=$(date +%s)
log "setups: ${SETUP_LIST[*]}; $ROUNDS rounds x ${DURATION}s; payload $SIZE B; $FLOWS flows; pinned: $PIN (flood CPU $FLOOD_CPU, tool CPU $TOOL_CPU)"
for ((r = 1; r <= ROUNDS; r++)); do
  n=${#SETUP_LIST[@]}
  for ((k = 0; k < n; k++)); do
    run_one "${SETUP_LIST[$(((k + r - 1) % n))]}" "$r"
    sleep 0.5
  done
done
LOAD_AFTER="$(cut -d' ' -f1-3 /proc/loadavg)"
other_bpf_users >"$WORK/bpf_users_after"
log "runs took $(($(date +%s) - START)) s; load average before $LOAD_BEFORE, after $LOAD_AFTER"

# ---------------------------------------------------------------- summary
mkdir -p "$(dirname "$OUT")"
REASONS_FMT=/sys/kernel/tracing/events/skb/kfree_skb/format
B_ROUNDS=$ROUNDS B_DURATION=$DURATION B_SIZE=$SIZE B_FLOWS=$FLOWS B_BATCH=$BATCH B_DST="$IP_B:$PORT" \
B_SRC=$IP_A B_SPORTS=$SPORTS B_SETUPS="${SETUP_LIST[*]}" B_PIN=$PIN B_FLOOD_CPU=$FLOOD_CPU B_TOOL_CPU=$TOOL_CPU B_NCPU=$NCPU B_DROPSCOPE="$DROPSCOPE" \
B_MISSING="$DROPSCOPE_MISSING" B_BT_PROG="$BT_PROG" B_LOAD="$LOAD_BEFORE -> $LOAD_AFTER" \
python3 - "$WORK/runs" "$OUT" "$REASONS_FMT" <<'PY'
import json, os, re, statistics, sys, platform, subprocess

runs_dir, out_path, fmt_path = sys.argv[1], sys.argv[2], sys.argv[3]
E = os.environ
cfg = {
    "rounds": int(E["B_ROUNDS"]), "duration_s": float(E["B_DURATION"]), "payload_bytes": int(E["B_SIZE"]),
    "flows": int(E["B_FLOWS"]), "batch": int(E["B_BATCH"]), "dst": E["B_DST"], "src": E["B_SRC"],
    "sports": E["B_SPORTS"], "setups": E["B_SETUPS"].split(), "pinned": E["B_PIN"] == "1",
    "flood_cpu": int(E["B_FLOOD_CPU"]), "tool_cpu": int(E["B_TOOL_CPU"]),
    "cpus": int(E["B_NCPU"]), "dropscope": E["B_DROPSCOPE"], "dropscope_missing": E["B_MISSING"] or None,
    "bpftrace_program": E["B_BT_PROG"], "load_average": E["B_LOAD"],
}
def lines(p):
    try:
        return [l for l in open(p).read().splitlines() if l.strip()]
    except OSError:
        return []
work = os.path.dirname(runs_dir)
cfg["other_bpf_users_before"] = lines(os.path.join(work, "bpf_users_before"))
cfg["other_bpf_users_after"] = lines(os.path.join(work, "bpf_users_after"))
HZ = os.sysconf("SC_CLK_TCK")

def read(d, name, default=None):
    try:
        with open(os.path.join(d, name)) as f:
            return f.read().strip()
    except OSError:
        return default

def num(s):
    try:
        return int(s)
    except (TypeError, ValueError):
        return None

def children_cpu(d):
    """Whole-life CPU seconds (user + system) of the tool: its waiting subshell's children times."""
    s = read(d, "times")
    lines = (s or "").splitlines()
    if len(lines) < 2:
        return None
    return round(sum(int(m) * 60 + float(x) for m, x in re.findall(r"(\d+)m([\d.]+)s", lines[1])), 3)

reason_names = {}
try:
    fmt = open(fmt_path).read()
    for code, name in re.findall(r'\{\s*(\d+),\s*"([A-Z0-9_]+)"\s*\}', fmt):
        reason_names[int(code)] = name
except OSError:
    pass

records = []
for name in sorted(os.listdir(runs_dir)):
    d = os.path.join(runs_dir, name)
    rec = {"setup": read(d, "setup"), "round": num(read(d, "round"))}
    err = read(d, "error")
    if err:
        rec["error"] = err
    try:
        fl = json.load(open(os.path.join(d, "flood.json")))
        rec["flood"] = fl
        rec["sent"], rec["pps"], rec["seconds"] = fl["sent"], fl["pps"], fl["seconds"]
    except (OSError, ValueError):
        pass
    n0, n1 = num(read(d, "noports0")), num(read(d, "noports1"))
    if n0 is not None and n1 is not None:
        rec["kernel_udp_noports"] = n1 - n0
    if rec["setup"] != "baseline":
        t0, t1 = num(read(d, "ticks0")), num(read(d, "ticks1"))
        if t0 is not None and t1 is not None and rec.get("seconds"):
            rec["tool_cpu_during_flood_s"] = round((t1 - t0) / HZ, 2)
            rec["tool_cpu_during_flood_pct"] = round(100.0 * (t1 - t0) / HZ / rec["seconds"], 1)
        rec["tool_cpu_total_s"] = children_cpu(d)
        rec["tool_exit"] = num(read(d, "tool_rc"))
        rec["tool_stopped_by"] = read(d, "stop")
        fb, fp = num(read(d, "file_bytes")), num(read(d, "file_packets"))
        if fb is not None:
            rec["file_bytes"] = fb
        if fp is not None:
            rec["file_packets_counted"] = fp
        tail = (read(d, "tool.err", "") or "").splitlines()[-12:]
        rec["tool_stderr_tail"] = tail
    if rec["setup"] == "tcpdump":
        errtxt = read(d, "tool.err", "") or ""
        for key, pat in (("captured", r"(\d+) packets? captured"),
                         ("received_by_filter", r"(\d+) packets? received by filter"),
                         ("dropped_by_kernel", r"(\d+) packets? dropped by kernel"),
                         ("dropped_by_interface", r"(\d+) packets? dropped by interface")):
            m = re.search(pat, errtxt)
            if m:
                rec.setdefault("tcpdump", {})[key] = int(m.group(1))
    if rec["setup"] == "bpftrace":
        counts = {}
        for code, cnt in re.findall(r"^@\[(\w+)\]:\s*(\d+)", read(d, "tool.out", "") or "", re.M):
            key = reason_names.get(int(code), code) if code.isdigit() else code.replace("SKB_DROP_REASON_", "")
            counts[key] = counts.get(key, 0) + int(cnt)
        rec["bpftrace_counts"] = counts
        rec["bpftrace_no_socket"] = counts.get("NO_SOCKET", 0)
    if rec["setup"] == "dropscope":
        try:
            st = json.load(open(os.path.join(d, "stats.json")))
        except (OSError, ValueError) as e:
            st = None
            rec.setdefault("error", f"no stats JSON: {e}")
        if st is not None:
            rows = st.get("accounting", {}).get("reasons", [])
            ip_b, port = cfg["dst"].rsplit(":", 1)
            sports = {int(p) for p in cfg["sports"].split(",")}
            flood_flows = [f for f in st.get("flows", [])
                           if f.get("dst") == ip_b and f.get("dport") == int(port)
                           and f.get("proto") == 17 and f.get("src") == cfg["src"] and f.get("sport") in sports]
            by_reason = {}
            for f in flood_flows:
                by_reason[f.get("reason_name")] = by_reason.get(f.get("reason_name"), 0) + f.get("packets", 0)
            flood_reasons = set(by_reason) or {"NO_SOCKET"}
            def norm(n):
                return (n or "").replace("SKB_DROP_REASON_", "")
            frows = [r for r in rows if r.get("origin") == "kernel" and norm(r.get("name")) in {norm(x) for x in flood_reasons}]
            S = lambda rs, k: sum((r.get(k) or 0) for r in rs)
            delivered = sum(by_reason.values())
            lost = S(frows, "lost_ring")
            sent = rec.get("sent") or 0
            outs = st.get("outputs") or {}
            file_out = outs.get("file") or {}
            # The kernel flow table's exact per-flow counts (storm mode and full capture).
            table = sum(f.get("packets", 0) for f in ((st.get("storm") or {}).get("flows") or [])
                        if f.get("dst") == ip_b and f.get("dport") == int(port)
                        and f.get("src") == cfg["src"] and f.get("sport") in sports)
            rec["dropscope"] = {
                "table_packets": table,
                "table_pct": round(100.0 * table / sent, 3) if sent else None,
                "flood_flows": len(flood_flows),
                "flood_packets_by_reason": by_reason,
                "flood_delivered": delivered,
                "reason_rows": frows,
                "observed": S(frows, "observed"),
                "lost_ring": lost,
                "delivered_all_of_reason": S(frows, "delivered"),
                "other_traffic_same_reason": S(frows, "delivered") - delivered,
                "all_reasons_observed": S(rows, "observed"),
                "all_reasons_lost_ring": S(rows, "lost_ring"),
                "written_pcapng": file_out.get("packets"),
                "reconciled": st.get("accounting", {}).get("reconciled"),
                "stopped_by": st.get("stopped_by"),
                "elapsed_s": st.get("elapsed_s"),
                "accounted_pct": round(100.0 * (delivered + lost) / sent, 3) if sent else None,
                "observed_pct": round(100.0 * S(frows, "observed") / sent, 3) if sent else None,
            }
    records.append(rec)

def med(xs):
    return statistics.median(xs) if xs else None

setups = [s for s in ["baseline", "dropscope", "tcpdump", "bpftrace"] if any(r["setup"] == s for r in records)]
summary = {}
for s in setups:
    rs = [r for r in records if r["setup"] == s and "pps" in r and "error" not in r]
    summary[s] = {"median_pps": med([r["pps"] for r in rs]), "rounds_pps": [round(r["pps"]) for r in rs],
                  "runs_failed": sum(1 for r in records if r["setup"] == s and "error" in r)}
base = (summary.get("baseline") or {}).get("median_pps")
for s in setups:
    m = summary[s]["median_pps"]
    summary[s]["ratio_vs_baseline_pct"] = round(100.0 * m / base, 1) if (m and base) else None

def tool_versions():
    v = {}
    for name, cmd in (("tcpdump", ["tcpdump", "--version"]), ("bpftrace", ["bpftrace", "--version"])):
        try:
            v[name] = subprocess.run(cmd, capture_output=True, text=True).stdout.splitlines()[0]
        except Exception:
            pass
    return v

cpu_model = ""
try:
    cpu_model = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
except Exception:
    pass
doc = {"schema": "dropscope.bench-flood/1", "config": cfg, "kernel": platform.release(), "cpu": cpu_model,
       "tools": tool_versions(), "summary": summary, "runs": records}
with open(out_path, "w") as f:
    json.dump(doc, f, indent=2)

# ---- markdown on stdout
pinning = f"flood on CPU {cfg['flood_cpu']}, tool on CPU {cfg['tool_cpu']}" if cfg["pinned"] else "not pinned"
P = print
P(f"### UDP flood into a closed port: sender rate while a tool watches")
P()
P(f"{cfg['rounds']} rounds x {cfg['duration_s']} s, payload {cfg['payload_bytes']} B, {cfg['flows']} flows, "
  f"sendmmsg batch {cfg['batch']}, veth between two namespaces; kernel {doc['kernel']}, {cfg['cpus']} CPUs ({cpu_model}); "
  f"{pinning}; load average {cfg['load_average']}.")
P()
P("| setup | median pps | vs baseline | per round (kpps) | tool CPU during flood | notes |")
P("|---|---:|---:|---|---:|---|")
for s in ["baseline", "dropscope", "tcpdump", "bpftrace"]:
    if s == "dropscope" and cfg["dropscope_missing"]:
        P("| dropscope | - | - | - | - | NOT RUN: binary missing (cargo build --release -p dropscope) |")
        continue
    if s not in summary:
        continue
    sm = summary[s]
    rs = [r for r in records if r["setup"] == s]
    cpu = [r["tool_cpu_during_flood_pct"] for r in rs if "tool_cpu_during_flood_pct" in r]
    notes = []
    if sm["runs_failed"]:
        notes.append(f"{sm['runs_failed']} run(s) failed: " + next(r["error"] for r in rs if "error" in r)[:120])
    if s == "tcpdump":
        cap = [r["tcpdump"].get("captured") for r in rs if "tcpdump" in r]
        drp = [r["tcpdump"].get("dropped_by_kernel") for r in rs if "tcpdump" in r]
        snt = [r.get("sent") for r in rs if "tcpdump" in r]
        if cap:
            notes.append("captured/sent " + ", ".join(f"{100.0*c/x:.1f}%" for c, x in zip(cap, snt) if c is not None and x))
            notes.append("dropped by kernel " + ", ".join(str(x) for x in drp))
    if s == "bpftrace":
        ns = [(r.get("bpftrace_no_socket"), r.get("sent")) for r in rs if "bpftrace_counts" in r]
        if ns:
            notes.append("NO_SOCKET counted/sent " + ", ".join(f"{100.0*a/b:.2f}%" for a, b in ns if b))
    if s == "dropscope":
        acc = [r["dropscope"]["accounted_pct"] for r in rs if "dropscope" in r]
        if acc:
            notes.append("accounted " + ", ".join(f"{a}%" for a in acc))
        tab = [r["dropscope"]["table_pct"] for r in rs if "dropscope" in r]
        if tab:
            notes.append("per-flow in kernel table/sent " + ", ".join(f"{a}%" for a in tab))
    if s == "baseline":
        k = [(r.get("kernel_udp_noports"), r.get("sent")) for r in rs]
        notes.append("kernel NoPorts = sent: " + ("yes" if all(a == b for a, b in k) else "NO " + str(k)))
    ratio = f"{sm['ratio_vs_baseline_pct']}%" if sm["ratio_vs_baseline_pct"] is not None else "-"
    medp = f"{sm['median_pps']:,.0f}" if sm["median_pps"] else "-"
    P(f"| {s} | {medp} | {ratio} | {', '.join(f'{x/1e3:.0f}' for x in sm['rounds_pps'])} | "
      f"{(str(med(cpu)) + '%') if cpu else '-'} | {'; '.join(notes)} |")

ds = [r for r in records if r["setup"] == "dropscope" and "dropscope" in r]
if ds:
    P()
    P("#### dropscope accounting (flood flows)")
    P()
    P("| round | sent | kernel NoPorts | observed | delivered | lost in ring | written to pcapng | counted in file | accounted | reconciled | CPU total |")
    P("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|")
    for r in ds:
        x = r["dropscope"]
        P(f"| {r['round']} | {r.get('sent')} | {r.get('kernel_udp_noports')} | {x['observed']} | {x['flood_delivered']} | "
          f"{x['lost_ring']} | {x['written_pcapng']} | {r.get('file_packets_counted', '-')} | {x['accounted_pct']}% | "
          f"{x['reconciled']} | {r.get('tool_cpu_total_s')} s |")
tc = [r for r in records if r["setup"] == "tcpdump" and "tcpdump" in r]
if tc:
    P()
    P("#### tcpdump (inside the receiving namespace, on its veth)")
    P()
    P("| round | sent | captured | received by filter | dropped by kernel | counted in file | CPU total |")
    P("|---:|---:|---:|---:|---:|---:|---:|")
    for r in tc:
        t = r["tcpdump"]
        P(f"| {r['round']} | {r.get('sent')} | {t.get('captured')} | {t.get('received_by_filter')} | "
          f"{t.get('dropped_by_kernel')} | {r.get('file_packets_counted', '-')} | {r.get('tool_cpu_total_s')} s |")
bt = [r for r in records if r["setup"] == "bpftrace" and "bpftrace_counts" in r]
if bt:
    P()
    P("#### bpftrace kfree_skb counter")
    P()
    P("| round | sent | NO_SOCKET counted | all reasons | CPU total |")
    P("|---:|---:|---:|---:|---:|")
    for r in bt:
        P(f"| {r['round']} | {r.get('sent')} | {r['bpftrace_no_socket']} | {sum(r['bpftrace_counts'].values())} | {r.get('tool_cpu_total_s')} s |")
P()
others = sorted(set(cfg["other_bpf_users_before"]) | set(cfg["other_bpf_users_after"]))
if others:
    P()
    P(f"**Warning**: {len(others)} other process(es) held BPF programs during the runs; their cost "
      "slows every setup, so the rates are not clean: " + "; ".join(f"`{o}`" for o in others[:5]))
P()
P(f"Raw numbers: {out_path}")
PY

if [ -n "$DROPSCOPE_MISSING" ]; then
  printf '\nbench-flood: ERROR: %s\n' "$DROPSCOPE_MISSING" >&2
  exit 3
fi
