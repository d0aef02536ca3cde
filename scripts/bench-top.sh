#!/usr/bin/env bash
# What `dropscope top` costs on top of the capture itself, on this machine, interleaved over
# R rounds. Each round runs, one after another, under the same fixed-rate UDP flood into a
# closed port between two network namespaces made here (udpflood on CPU 0 at --rate PPS,
# 4 flows, for --flood SECS; the tool on CPU 1):
#   capture    dropscope capture -q (the peer: the same sources, program and rings)
#   top-plain  dropscope top --plain > /dev/null (one text block a second)
#   top-tty    dropscope top in a 200x50 tmux pane (full screen, redrawn every second)
# and reads the tool's CPU time (utime + stime from /proc/PID/stat) over the flood. Prints a
# markdown table of medians (% of one core) with the spread, and top's extra cost as the
# median of the per-round differences against capture.
#
# usage: sudo scripts/bench-top.sh [--rounds R] [--flood SECS] [--rate PPS] [DROPSCOPE]
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
ROUNDS=8
FLOOD=5
RATE=100000
BIN="$ROOT/target/release/dropscope"
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) ROUNDS="$2"; shift 2 ;;
    --flood) FLOOD="$2"; shift 2 ;;
    --rate) RATE="$2"; shift 2 ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    -*) echo "bench-top: unknown option $1 (see --help)" >&2; exit 2 ;;
    *) BIN="$1"; shift ;;
  esac
done
die() { printf 'bench-top: ERROR: %s\n' "$*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || die "must run as root (namespaces, eBPF)"
[[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || die "--rounds must be a positive integer"
[ -x "$BIN" ] || die "$BIN is not an executable dropscope (cargo build --release -p dropscope)"
command -v tmux >/dev/null || die "tmux not found (scripts/setup.sh installs it)"
(cd "$ROOT" && cargo build --release -q -p dropscope-benches --bin udpflood) || die "building udpflood failed"
UDPFLOOD="$ROOT/target/release/udpflood"

TAG="dstp$(($$ % 100000))"
# shellcheck source=scripts/netns-pair.sh
. "$ROOT/scripts/netns-pair.sh"
WORK="$(mktemp -d)"
TOOL=""
SESSION="$TAG"
cleanup() {
  [ -z "$TOOL" ] || { kill -KILL "$TOOL" 2>/dev/null; } || true
  tmux kill-session -t "$SESSION" 2>/dev/null || true
  netns_pair_del
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
netns_pair "$TAG" 83
TICKS="$(getconf CLK_TCK)"
COMMON=(--no-names --no-datapath)

start_tool() { # capture|top-plain|top-tty
  rm -f "$WORK/err" "$WORK/pid"
  case "$1" in
    capture) taskset -c 1 "$BIN" capture -q "${COMMON[@]}" >/dev/null 2>"$WORK/err" & TOOL=$! ;;
    top-plain) taskset -c 1 "$BIN" top --plain "${COMMON[@]}" >/dev/null 2>"$WORK/err" & TOOL=$! ;;
    top-tty)
      tmux new-session -d -s "$SESSION" -x 200 -y 50 \
        "echo \$\$ > $WORK/pid; exec taskset -c 1 $BIN top ${COMMON[*]} 2>$WORK/err"
      for _ in $(seq 100); do [ -s "$WORK/pid" ] && break; sleep 0.05; done
      TOOL="$(cat "$WORK/pid")" ;;
  esac
  for _ in $(seq 200); do
    grep -q 'capturing' "$WORK/err" 2>/dev/null && break
    kill -0 "$TOOL" 2>/dev/null || die "$1 exited: $(cat "$WORK/err" 2>/dev/null)"
    sleep 0.05
  done
  sleep 1
}
stop_tool() {
  kill -TERM "$TOOL" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$TOOL" 2>/dev/null || break; sleep 0.05; done
  wait "$TOOL" 2>/dev/null || true
  tmux kill-session -t "$SESSION" 2>/dev/null || true
  TOOL=""
}
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

for r in $(seq 1 "$ROUNDS"); do
  for what in capture top-plain top-tty; do
    start_tool "$what"
    t0="$(cpu_ticks "$TOOL")"; s0="$(date +%s.%N)"
    out="$(nice -n -10 taskset -c 0 "$UDPFLOOD" --netns "$NS_A" --src "$IP_A" --dst "$IP_B:9" \
      --sports 40000,40001,40002,40003 --size 64 --batch 16 --rate "$RATE" --duration "$FLOOD")"
    t1="$(cpu_ticks "$TOOL")"; s1="$(date +%s.%N)"
    stop_tool
    pps="$(python3 -c "import json,sys; print(round(json.loads(sys.argv[1])['pps']))" "$out")"
    pct="$(python3 -c "print(f'{100*($t1-$t0)/$TICKS/($s1-$s0):.2f}')")"
    echo "$r $what $pct $pps" >>"$WORK/results"
    printf 'bench-top: round %d %s: %s%% of a core at %s drops/s\n' "$r" "$what" "$pct" "$pps" >&2
  done
done

python3 - "$WORK/results" "$RATE" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
by = {}
for r, what, pct, pps in rows:
    by.setdefault(what, {})[int(r)] = (float(pct), int(pps))
def fmt(xs):
    return f"{statistics.median(xs):.2f} ({min(xs):.2f}–{max(xs):.2f})"
print(f"### dropscope top: CPU (% of one core) under a {sys.argv[2]} drops/s flood\n")
print("| setup | median (spread) | sender pps (median) |")
print("|---|---|---:|")
for w in ("capture", "top-plain", "top-tty"):
    v = by.get(w, {})
    if v:
        print(f"| {w} | {fmt([p for p, _ in v.values()])} | {statistics.median(q for _, q in v.values()):.0f} |")
base = by.get("capture", {})
for w in ("top-plain", "top-tty"):
    d = [by[w][r][0] - base[r][0] for r in by.get(w, {}) if r in base]
    if d:
        print(f"\n{w} minus capture, per round: median {statistics.median(d):+.2f} points of a core "
              f"(spread {min(d):+.2f} to {max(d):+.2f}); ratio of medians "
              f"{statistics.median(p for p, _ in by[w].values()) / statistics.median(p for p, _ in base.values()):.2f}")
PY
