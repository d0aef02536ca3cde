#!/usr/bin/env bash
# Text inputs, side by side with text2pcap (Wireshark's hex-dump converter), interleaved
# over R rounds in one run, on inputs made by benches/src/bin/gentext.rs (deterministic):
#
#   dropscope-monitor  dropscope replay mon.txt -q -w out.pcapng   (cilium-dbg monitor -vv
#                      text: header lines and hex dumps -> pcapng with reasons + flow table)
#   text2pcap          text2pcap -q mon.txt out.pcap              (the same hex dumps -> pcap)
#   dropscope-hubble   dropscope replay hub.jsonl -q                (Hubble flows -> flow table,
#                      summary on stderr)
#   dropscope-hubble-json  the same with --stats-json S (the 200,000-row table written as JSON)
#   parse-monitor      reading alone: dropscope's text source over mon.txt and hub.jsonl (chunks
#   parse-hubble       parsed on every CPU, records made into events; benches/src/bin/textparse.rs),
#                      no decoding, flow table or file
#
#   baseline-monitor, baseline-hubble, baseline-hubble-json  with --baseline BIN: the
#                      dropscope setups run by another dropscope binary (e.g. one built from
#                      main), in the same rounds
#
# Wall seconds per run (the setups in a new order each round); medians, spread, records per
# second, and the ratios against text2pcap. Also checks that dropscope wrote one packet per monitor record.
#
# usage: scripts/bench-text-replay.sh [--rounds R] [--records N] [--baseline BIN]
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
ROUNDS=8
RECORDS=200000
BASE=""
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) ROUNDS="$2"; shift 2 ;;
    --records) RECORDS="$2"; shift 2 ;;
    --baseline) BASE="$2"; shift 2 ;;
    -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
    *) echo "bench-text-replay: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
die() { printf 'bench-text-replay: ERROR: %s\n' "$*" >&2; exit 1; }
[[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || die "--rounds must be a positive integer"
command -v text2pcap >/dev/null || die "text2pcap not found (Debian: wireshark-common; scripts/setup.sh installs tshark, which brings it)"
DS="$ROOT/target/release/dropscope"
[ -x "$DS" ] || die "build dropscope first: cargo build --release -p dropscope"
[ -z "$BASE" ] || [ -x "$BASE" ] || die "--baseline $BASE is not an executable"
(cd "$ROOT" && cargo build --release -q -p dropscope-benches --bin gentext --bin textparse) || die "building gentext/textparse failed"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
"$ROOT/target/release/gentext" "$WORK/mon.txt" --kind monitor-vv --records "$RECORDS"
"$ROOT/target/release/gentext" "$WORK/hub.jsonl" --kind hubble --records "$RECORDS"

run() { # NAME -> seconds
  local t0 t1
  t0=$(date +%s.%N)
  case "$1" in
    dropscope-monitor) "$DS" replay "$WORK/mon.txt" -q -w "$WORK/ds.pcapng" 2>"$WORK/ds.err" ;;
    text2pcap) text2pcap -q "$WORK/mon.txt" "$WORK/t2p.pcap" ;;
    dropscope-hubble) "$DS" replay "$WORK/hub.jsonl" -q 2>/dev/null ;;
    dropscope-hubble-json) "$DS" replay "$WORK/hub.jsonl" -q --stats-json "$WORK/hub.json" 2>/dev/null ;;
    parse-monitor) "$ROOT/target/release/textparse" "$WORK/mon.txt" monitor >/dev/null ;;
    parse-hubble) "$ROOT/target/release/textparse" "$WORK/hub.jsonl" hubble >/dev/null ;;
    baseline-monitor) "$BASE" replay "$WORK/mon.txt" -q -w "$WORK/base.pcapng" 2>/dev/null ;;
    baseline-hubble) "$BASE" replay "$WORK/hub.jsonl" -q 2>/dev/null ;;
    baseline-hubble-json) "$BASE" replay "$WORK/hub.jsonl" -q --stats-json "$WORK/hub-base.json" 2>/dev/null ;;
  esac
  t1=$(date +%s.%N)
  awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.4f\n", b - a }'
}
: >"$WORK/times"
SETUPS="dropscope-monitor text2pcap dropscope-hubble dropscope-hubble-json parse-monitor parse-hubble"
[ -z "$BASE" ] || SETUPS="$SETUPS baseline-monitor baseline-hubble baseline-hubble-json"
for r in $(seq 1 "$ROUNDS"); do
  # A new order each round (seeded by the round: the same in every run), so no setup always
  # follows the same one: a setup that writes a file leaves the next one its writeback.
  for s in $(printf '%s\n' $SETUPS | shuf --random-source=<(yes "$r")); do
    t="$(run "$s")"
    echo "$s $t" >>"$WORK/times"
    printf 'bench-text-replay: round %d %s: %.3f s\n' "$r" "$s" "$t" >&2
  done
done
written="$(grep -o '^[0-9]* packets written' "$WORK/ds.err" | cut -d' ' -f1)"
python3 - "$WORK/times" "$RECORDS" "${written:-0}" <<'PY'
import statistics, sys
path, n, written = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
t = {}
for line in open(path):
    s, v = line.split()
    t.setdefault(s, []).append(float(v))
print(f"### text inputs: {n} records each (monitor -vv with hex dumps; Hubble jsonpb lines)\n")
print(f"dropscope wrote {written} packets from the monitor text (expected {n})\n")
print("| setup | median s | min | max | records/s (median) | rounds |")
print("|---|---:|---:|---:|---:|---|")
setups = [s for s in ("dropscope-monitor", "text2pcap", "dropscope-hubble", "dropscope-hubble-json", "parse-monitor", "parse-hubble", "baseline-monitor", "baseline-hubble", "baseline-hubble-json") if s in t]
for s in setups:
    xs = t[s]
    m = statistics.median(xs)
    print(f"| {s} | {m:.3f} | {min(xs):.3f} | {max(xs):.3f} | {n / m:,.0f} | {', '.join(f'{x:.2f}' for x in xs)} |")
base = statistics.median(t["text2pcap"])
for s in setups:
    if s == "text2pcap":
        continue
    xs = sorted(b / x for b, x in zip(t["text2pcap"], t[s]))
    print(f"\nspeed-up {s} vs text2pcap (medians): {base / statistics.median(t[s]):.1f}x"
          f" (per round: median {statistics.median(xs):.1f}x, min {xs[0]:.1f}x, max {xs[-1]:.1f}x)")
sys.exit(0 if written == n else 1)
PY
