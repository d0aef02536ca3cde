#!/usr/bin/env bash
# `dropscope replay IN EXPR -w OUT.pcap -q` against `tcpdump -r IN -w OUT.pcap EXPR` on one
# generated pcap (benches/src/bin/genpcap.rs, cached under target/bench-data/ like
# scripts/bench-replay.sh), interleaved over R rounds: wall seconds per run, medians and
# spread, and the ratio. Both outputs are compared packet by packet (tcpdump -r | md5sum)
# after the runs: a speed without the same result would mean nothing.
#
# usage: scripts/bench-filter-replay.sh [--rounds R] [--packets N] [EXPRESSION]
#   default expression: 'udp and dst portrange 1000-2000' (about half of the generated flows)
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
ROUNDS=8
PACKETS=1000000
EXPR='udp and dst portrange 1000-2000'
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) ROUNDS="$2"; shift 2 ;;
    --packets) PACKETS="$2"; shift 2 ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    -*) echo "bench-filter-replay: unknown option $1 (see --help)" >&2; exit 2 ;;
    *) EXPR="$1"; shift ;;
  esac
done
die() { printf 'bench-filter-replay: ERROR: %s\n' "$*" >&2; exit 1; }
[[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || die "--rounds must be a positive integer"
command -v tcpdump >/dev/null || die "tcpdump not found (scripts/setup.sh installs it)"
DS="$ROOT/target/release/dropscope"
[ -x "$DS" ] || die "build dropscope first: cargo build --release -p dropscope"
(cd "$ROOT" && cargo build --release -q -p dropscope-benches --bin genpcap) || die "building genpcap failed"
GEN_HASH="$(sha256sum "$ROOT/benches/src/bin/genpcap.rs" | cut -c1-10)"
mkdir -p "$ROOT/target/bench-data"
IN="$ROOT/target/bench-data/replay-$PACKETS-$GEN_HASH.pcap"
[ -s "$IN" ] || "$ROOT/target/release/genpcap" "$IN" --packets "$PACKETS" --meta "$IN.json" >/dev/null
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

run() { # NAME -> seconds of one run
  local t0 t1
  t0=$(date +%s.%N)
  case "$1" in
    dropscope) "$DS" replay "$IN" -q -w "$WORK/ds.pcap" "$EXPR" 2>/dev/null ;;
    tcpdump) tcpdump -r "$IN" -w "$WORK/td.pcap" "$EXPR" 2>/dev/null ;;
  esac
  t1=$(date +%s.%N)
  awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.4f\n", b - a }'
}
: >"$WORK/times"
for r in $(seq 1 "$ROUNDS"); do
  for s in dropscope tcpdump; do
    t="$(run "$s")"
    echo "$s $t" >>"$WORK/times"
    printf 'bench-filter-replay: round %d %s: %.3f s\n' "$r" "$s" "$t" >&2
  done
done
a="$(tcpdump -nn -tt -r "$WORK/ds.pcap" 2>/dev/null | md5sum | cut -d' ' -f1)"
b="$(tcpdump -nn -tt -r "$WORK/td.pcap" 2>/dev/null | md5sum | cut -d' ' -f1)"
n="$(tcpdump -nn -r "$WORK/td.pcap" 2>/dev/null | wc -l)"
python3 - "$WORK/times" "$EXPR" "$IN" "$n" "$a" "$b" <<'EOF'
import statistics, sys
path, expr, inp, n, a, b = sys.argv[1:]
t = {}
for line in open(path):
    s, v = line.split()
    t.setdefault(s, []).append(float(v))
print(f"### replay with a filter expression: `{expr}` on {inp}\n")
print(f"packets kept: {n}; same packets in both outputs: {'yes' if a == b else 'NO'}\n")
print("| setup | median s | min | max | rounds |")
print("|---|---:|---:|---:|---|")
for s in ("dropscope", "tcpdump"):
    xs = t[s]
    print(f"| {s} | {statistics.median(xs):.3f} | {min(xs):.3f} | {max(xs):.3f} | {', '.join(f'{x:.2f}' for x in xs)} |")
print(f"\nratio dropscope/tcpdump (medians): {statistics.median(t['dropscope']) / statistics.median(t['tcpdump']):.2f}")
sys.exit(0 if a == b else 1)
EOF
