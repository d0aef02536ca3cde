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
#           target/release/dropscope:--exemplars,0; `:serve,FLAGS` runs `dropscope serve
#           FLAGS` instead of a capture), or the word bpftrace (a per-reason
#           counter on tracepoint:skb:kfree_skb, the least a kfree_skb observer does).
#           Interleaved over R rounds; medians in ns per run.
#
#   --pod: the receiving namespace (where the drops happen) looks like a pod's to /proc
#           (a process in a kubepods cgroup with the pod's hostname and service-account
#           namespace, as cli/tests/it/pods.rs makes it), named bench/sink-0: setups can select
#           it, e.g. target/release/dropscope:--pod,bench/sink-0.
#
# usage: sudo scripts/bench-progcost.sh [--rounds R] [--duration D] [--cpus 1|2] [--pod] SETUP...
#   e.g. old vs new build: git worktree add /tmp/old <rev> && (cd /tmp/old && cargo build
#   --release -p dropscope) && sudo scripts/bench-progcost.sh /tmp/old/target/release/dropscope
#   target/release/dropscope bpftrace
#   --cpus 2 floods from two CPUs at once (the tool shares CPU 1 with the second flood).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
ROUNDS=4
DURATION=2
CPUS=1
POD=0
SETUPS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) ROUNDS="$2"; shift 2 ;;
    --duration) DURATION="$2"; shift 2 ;;
    --cpus) CPUS="$2"; shift 2 ;;
    --pod) POD=1; shift ;;
    -h|--help) sed -n '2,26p' "$0"; exit 0 ;;
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
# shellcheck source=scripts/netns-pair.sh
. "$ROOT/scripts/netns-pair.sh"
WORK="$(mktemp -d)"
TOOL=""
STATS_WAS="$(sysctl -n kernel.bpf_stats_enabled)"
POD_PID=""
POD_CGROUPS=()
cleanup() {
  [ -z "$TOOL" ] || { kill -KILL "$TOOL" 2>/dev/null; wait "$TOOL" 2>/dev/null; } || true
  [ -z "$POD_PID" ] || { kill -KILL "$POD_PID" 2>/dev/null; wait "$POD_PID" 2>/dev/null; } || true
  for c in "${POD_CGROUPS[@]}"; do rmdir "$c" 2>/dev/null || true; done
  sysctl -qw kernel.bpf_stats_enabled="$STATS_WAS" || true
  netns_pair_del
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
netns_pair "$TAG" 78
if [ "$POD" = 1 ]; then
  CG="$(awk '$3 == "cgroup2" { print $2; exit }' /proc/mounts)"
  [ -n "$CG" ] || die "--pod needs a cgroup2 mount"
  uid=5e1f0c2a-7b3d-4e21-9a0e-5d6f7a8b9c0d
  POD_CGROUPS=("$CG/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod${uid//-/_}.slice"
    "$CG/kubepods.slice/kubepods-besteffort.slice" "$CG/kubepods.slice")
  mkdir -p "${POD_CGROUPS[0]}"
  ip netns exec "$NS_B" unshare -m --propagation private sh -c 'set -e; mount -t tmpfs tmpfs /run
    mkdir -p /run/secrets/kubernetes.io/serviceaccount
    echo bench > /run/secrets/kubernetes.io/serviceaccount/namespace
    echo sink-0 > /run/pod-hostname; mount --bind /run/pod-hostname /etc/hostname
    exec sleep 100000' </dev/null &
  POD_PID=$!
  echo "$POD_PID" >"${POD_CGROUPS[0]}/cgroup.procs"
  for _ in $(seq 100); do
    [ "$(cat "/proc/$POD_PID/root/etc/hostname" 2>/dev/null)" = sink-0 ] && break
    sleep 0.05
  done
  [ "$(cat "/proc/$POD_PID/root/etc/hostname" 2>/dev/null)" = sink-0 ] || die "the fake pod did not start"
fi
sysctl -qw kernel.bpf_stats_enabled=1

flood() { # CPU SPORTS
  nice -n -10 taskset -c "$1" "$UDPFLOOD" --netns "$NS_A" --src "$IP_A" --dst "$IP_B:9" \
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
      if [ "${extra[0]:-}" = serve ]; then
        # `dropscope serve` (the agent: storm mode, always): flags after `serve`.
        nice -n -10 taskset -c 1 "$bin" serve --listen 127.0.0.1:0 --no-names \
          --session-dir "$WORK/sessions" "${extra[@]:1}" >/dev/null 2>"$WORK/err" &
      else
        nice -n -10 taskset -c 1 "$bin" capture -q -w /dev/null "${extra[@]}" >/dev/null 2>"$WORK/err" &
      fi
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
