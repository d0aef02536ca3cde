#!/usr/bin/env bash
# `dropscope serve`'s costs, on this machine, interleaved over R rounds:
#   1. idle CPU: % of one core (utime + stime from /proc/PID/stat over --idle SECS) of an idle
#      `serve`, beside its peer, an idle `capture -q --exemplars 64 -w /dev/null` (the same
#      program and table, the one-shot way);
#   2. /metrics scrape latency (connect to last byte, HdrHistogram in benches' `scrape`,
#      one GET every 100 ms) while a UDP flood into a closed port drops packets between two
#      network namespaces made here (udpflood on CPU 0, 4 flows), beside the same scrapes
#      with no flood.
# Prints a markdown table of medians with the per-round spread.
#
# usage: sudo scripts/bench-serve.sh [--rounds R] [--idle SECS] [--flood SECS] [DROPSCOPE]
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
ROUNDS=8
IDLE=10
FLOOD=5
BIN="$ROOT/target/release/dropscope"
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) ROUNDS="$2"; shift 2 ;;
    --idle) IDLE="$2"; shift 2 ;;
    --flood) FLOOD="$2"; shift 2 ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    -*) echo "bench-serve: unknown option $1 (see --help)" >&2; exit 2 ;;
    *) BIN="$1"; shift ;;
  esac
done
die() { printf 'bench-serve: ERROR: %s\n' "$*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || die "must run as root (namespaces, eBPF)"
[[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || die "--rounds must be a positive integer"
[ -x "$BIN" ] || die "$BIN is not an executable dropscope (cargo build --release -p dropscope)"
(cd "$ROOT" && cargo build --release -q -p dropscope-benches --bin udpflood --bin scrape) || die "building udpflood/scrape failed"
UDPFLOOD="$ROOT/target/release/udpflood"
SCRAPE="$ROOT/target/release/scrape"

TAG="dssv$(($$ % 100000))"
# shellcheck source=scripts/netns-pair.sh
. "$ROOT/scripts/netns-pair.sh"
WORK="$(mktemp -d)"
TOOL=""
cleanup() {
  [ -z "$TOOL" ] || { kill -KILL "$TOOL" 2>/dev/null; wait "$TOOL" 2>/dev/null; } || true
  netns_pair_del
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
netns_pair "$TAG" 79
TICKS="$(getconf CLK_TCK)"

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
start_tool() { # serve|capture PORT
  if [ "$1" = serve ]; then
    taskset -c 1 "$BIN" serve --listen "127.0.0.1:$2" --no-names --session-dir "$WORK/sessions" >/dev/null 2>"$WORK/err" &
  else
    taskset -c 1 "$BIN" capture -q --no-names --no-datapath --exemplars 64 -w /dev/null >/dev/null 2>"$WORK/err" &
  fi
  TOOL=$!
  for _ in $(seq 200); do
    grep -q 'serving on\|capturing' "$WORK/err" 2>/dev/null && break
    kill -0 "$TOOL" 2>/dev/null || die "$1 exited: $(cat "$WORK/err")"
    sleep 0.05
  done
  sleep 1
}
stop_tool() {
  kill -TERM "$TOOL" 2>/dev/null || true
  wait "$TOOL" 2>/dev/null || true
  TOOL=""
}
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

for r in $(seq 1 "$ROUNDS"); do
  for what in serve capture; do
    p="$(port)"
    start_tool "$what" "$p"
    t0="$(cpu_ticks "$TOOL")"; s0="$(date +%s.%N)"
    sleep "$IDLE"
    t1="$(cpu_ticks "$TOOL")"; s1="$(date +%s.%N)"
    pct="$(python3 -c "print(f'{100*($t1-$t0)/$TICKS/($s1-$s0):.3f}')")"
    echo "idle $what $pct" >>"$WORK/results"
    printf 'bench-serve: round %d idle %s: %s%% of a core\n' "$r" "$what" "$pct" >&2
    stop_tool
  done
  p="$(port)"
  start_tool serve "$p"
  for load in flood none; do
    if [ "$load" = flood ]; then
      nice -n -10 taskset -c 0 "$UDPFLOOD" --netns "$NS_A" --src "$IP_A" --dst "$IP_B:9" \
        --sports 40000,40001,40002,40003 --size 64 --batch 64 --duration "$FLOOD" >/dev/null &
      F=$!
    fi
    out="$("$SCRAPE" --port "$p" --interval-ms 100 --duration "$FLOOD")"
    [ "$load" = flood ] && wait "$F"
    echo "scrape $load $out" >>"$WORK/results"
    printf 'bench-serve: round %d scrape (%s): %s\n' "$r" "$load" "$out" >&2
  done
  stop_tool
done

python3 - "$WORK/results" <<'PY'
import json, statistics, sys
idle, scrape = {}, {}
for line in open(sys.argv[1]):
    kind, what, rest = line.split(' ', 2)
    if kind == 'idle':
        idle.setdefault(what, []).append(float(rest))
    else:
        scrape.setdefault(what, []).append(json.loads(rest))
def fmt(xs, f='{:.3f}'):
    return f"{f.format(statistics.median(xs))} (min {f.format(min(xs))}, max {f.format(max(xs))})"
print("### dropscope serve: idle CPU (% of one core)\n")
print("| process | median (spread) | per round |")
print("|---|---|---|")
for w in ('serve', 'capture'):
    xs = idle.get(w, [])
    if xs:
        print(f"| {w} | {fmt(xs)} | {', '.join(f'{x:.3f}' for x in xs)} |")
if idle.get('serve') and idle.get('capture') and statistics.median(idle['capture']) > 0:
    print(f"\nratio serve / capture (medians): {statistics.median(idle['serve'])/statistics.median(idle['capture']):.2f}")
print("\n### /metrics scrape latency (µs), one GET every 100 ms\n")
print("| load | scrapes/round | p50 median | p99 median (spread) | max median | errors |")
print("|---|---:|---:|---|---:|---:|")
for w in ('flood', 'none'):
    rs = scrape.get(w, [])
    if rs:
        print(f"| {w} | {rs[0]['n']} | {statistics.median(r['p50_us'] for r in rs):.0f} | "
              f"{fmt([r['p99_us'] for r in rs], '{:.0f}')} | {statistics.median(r['max_us'] for r in rs):.0f} | "
              f"{sum(r['errors'] for r in rs)} |")
PY
