#!/usr/bin/env bash
# Kernel-side cost per drop: the run time of the kfree_skb program per run, from the kernel's
# own BPF statistics (kernel.bpf_stats_enabled=1: run_time_ns / run_cnt), while a UDP flood
# into a closed port drops packets between two network namespaces made here.
#
# Unlike the sender's packets/s (scripts/bench-flood.sh), this isolates the program from the
# rest of the machine, so two builds can be told apart on a noisy host. The statistics add
# their own cost to every run (two clock reads): compare setups within one run only.
#
#   setups: paths to dropscope binaries (each runs `capture -q -w /dev/null`), optionally
#           followed by ':' and extra capture flags separated by commas (e.g.
#           target/release/dropscope:--exemplars,0), or the word bpftrace (a per-reason
#           counter on tracepoint:skb:kfree_skb, the least a kfree_skb observer does).
#           Interleaved over R rounds; medians in ns per run.
#
# usage: sudo scripts/bench-progcost.sh [--rounds R] [--duration D] [--cpus 1|2] SETUP...
#   e.g. old vs new build: git worktree add /tmp/old <rev> && (cd /tmp/old && cargo build
#   --release -p dropscope) && sudo scripts/bench-progcost.sh /tmp/old/target/release/dropscope
#   target/release/dropscope bpftrace
#   --cpus 2 floods from two CPUs at once (the tool shares CPU 1 with the second flood).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
ROUNDS=4
DURATION=2
CPUS=1
SETUPS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) ROUNDS="$2"; shift 2 ;;
    --duration) DURATION="$2"; shift 2 ;;
    --cpus) CPUS="$2"; shift 2 ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    -*) echo "bench-progcost: unknown option $1 (see --help)" >&2; exit 2 ;;
    *) SETUPS+=("$1"); shift ;;
  esac
done
die() { printf 'bench-progcost: ERROR: %s\n' "$*" >&2; exit 1; }
[ "${#SETUPS[@]}" -gt 0 ] || SETUPS=("$ROOT/target/release/dropscope" bpftrace)
[ "$(id -u)" -eq 0 ] || die "must run as root (namespaces, eBPF, bpf_stats)"
[[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || die "--rounds must be a positive integer"
[[ "$DURATION" =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "--duration must be a number of seconds"
case "$CPUS" in 1|2) ;; *) die "--cpus must be 1 or 2" ;; esac
[ "$(nproc)" -ge 2 ] || die "needs 2 CPUs (flood on CPU 0, tool on CPU 1)"
command -v bpftool >/dev/null || die "bpftool not found (scripts/setup.sh installs it)"
for s in "${SETUPS[@]}"; do
  if [ "$s" = bpftrace ]; then command -v bpftrace >/dev/null || die "bpftrace not found"
  else [ -x "${s%%:*}" ] || die "${s%%:*} is not an executable dropscope"; fi
done
(cd "$ROOT" && cargo build --release -q -p dropscope-benches --bin udpflood) || die "building udpflood failed"
UDPFLOOD="$ROOT/target/release/udpflood"
BT_ARG='args.reason'
bpftrace --version 2>/dev/null | grep -q 'v0\.1[0-9]\.' && BT_ARG='args->reason'

TAG="dspc$(($$ % 100000))"
NS_A="${TAG}a"; NS_B="${TAG}b"; X=$(($$ % 200 + 20))
WORK="$(mktemp -d)"
TOOL=""
STATS_WAS="$(sysctl -n kernel.bpf_stats_enabled)"
cleanup() {
  [ -z "$TOOL" ] || { kill -KILL "$TOOL" 2>/dev/null; wait "$TOOL" 2>/dev/null; } || true
  sysctl -qw kernel.bpf_stats_enabled="$STATS_WAS" || true
  ip netns del "$NS_A" 2>/dev/null || true
  ip netns del "$NS_B" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
ip netns add "$NS_A"; ip netns add "$NS_B"
ip link add "${TAG}va" netns "$NS_A" type veth peer name "${TAG}vb" netns "$NS_B"
for ns in "$NS_A" "$NS_B"; do
  ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
done
ip -n "$NS_A" addr add "10.$X.78.1/24" dev "${TAG}va"
ip -n "$NS_B" addr add "10.$X.78.2/24" dev "${TAG}vb"
ip -n "$NS_A" link set "${TAG}va" up
ip -n "$NS_B" link set "${TAG}vb" up
MAC_B="$(ip -n "$NS_B" -o link show "${TAG}vb" | grep -o 'link/ether [0-9a-f:]*' | cut -d' ' -f2)"
ip -n "$NS_A" neigh replace "10.$X.78.2" lladdr "$MAC_B" dev "${TAG}va"
sysctl -qw kernel.bpf_stats_enabled=1

flood() { # CPU SPORTS
  nice -n -10 taskset -c "$1" "$UDPFLOOD" --netns "$NS_A" --src "10.$X.78.1" --dst "10.$X.78.2:9" \
    --sports "$2" --size 64 --batch 64 --duration "$DURATION" >/dev/null
}
prog_ns() { # PID -> ns per run of the kfree_skb programs PID holds (run_time / run_cnt)
  local ids
  ids="$(find "/proc/$1/fdinfo" -type f -exec grep -h '^prog_id:' {} + 2>/dev/null | awk '{print $2}' | sort -u | tr '\n' ' ')"
  bpftool prog show -j | python3 -c "
import json, sys
ids = set(int(i) for i in '$ids'.split())
rt = cnt = 0
for p in json.load(sys.stdin):
    if p['id'] in ids and p.get('run_cnt'):
        rt += p['run_time_ns']; cnt += p['run_cnt']
print('%.1f %d' % (rt / cnt, cnt) if cnt else '- 0')"
}

for r in $(seq 1 "$ROUNDS"); do
  for i in "${!SETUPS[@]}"; do
    s="${SETUPS[$i]}"
    if [ "$s" = bpftrace ]; then
      nice -n -10 taskset -c 1 bpftrace -e "tracepoint:skb:kfree_skb { @[$BT_ARG] = count(); }" >/dev/null 2>"$WORK/err" &
    else
      bin="${s%%:*}"; extra=()
      [ "$bin" != "$s" ] && IFS=',' read -r -a extra <<<"${s#*:}"
      nice -n -10 taskset -c 1 "$bin" capture -q -w /dev/null "${extra[@]}" >/dev/null 2>"$WORK/err" &
    fi
    TOOL=$!
    for _ in $(seq 100); do
      find "/proc/$TOOL/fd" -mindepth 1 -printf '%l\n' 2>/dev/null | grep -q 'bpf[-_]link\|perf_event' && break
      sleep 0.05
    done
    sleep 0.3
    [ "$CPUS" = 2 ] && { flood 1 40010,40011 & F2=$!; }
    flood 0 40000,40001,40002,40003
    [ "$CPUS" = 2 ] && wait "$F2"
    read -r ns runs < <(prog_ns "$TOOL")
    kill -INT "$TOOL" 2>/dev/null || true
    # A tool that does not exit within 20 s of SIGINT (bpftrace sometimes hangs) is killed.
    for _ in $(seq 200); do kill -0 "$TOOL" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$TOOL" 2>/dev/null || true
    wait "$TOOL" 2>/dev/null || true
    TOOL=""
    echo "$i $ns $runs" >>"$WORK/results"
    printf 'bench-progcost: round %d %s: %s ns/run over %s runs\n' "$r" "$s" "$ns" "$runs" >&2
  done
done

python3 - "$WORK/results" "$CPUS" "${SETUPS[@]}" <<'EOF'
import statistics, sys
path, cpus, setups = sys.argv[1], sys.argv[2], sys.argv[3:]
rows = {}
for line in open(path):
    i, ns, runs = line.split()
    if ns != '-':
        rows.setdefault(int(i), []).append(float(ns))
print(f"### kfree_skb program run time per drop (bpf_stats), flood from {cpus} CPU(s)\n")
print("| setup | median ns/run | per round |")
print("|---|---:|---|")
for i, s in enumerate(setups):
    xs = rows.get(i, [])
    med = f"{statistics.median(xs):.1f}" if xs else "-"
    print(f"| {s} | {med} | {', '.join(f'{x:.0f}' for x in xs)} |")
EOF
