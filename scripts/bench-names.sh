#!/usr/bin/env bash
# Pod names on vs off, interleaved over R rounds: the criterion bench benches/benches/names.rs
# (200,000 kernel drops from 1,000 pod namespaces through the whole pipeline; names from a
# snapshot naming all 1,000 pods), one short criterion run per setup per round, off and on
# alternating (which goes first alternates too). Outputs: decode (the decode stage alone), pcapng (and a file with a comment per
# packet), pcapng_json (and a JSON line per packet). Prints medians, spread and on/off ratios.
#
# usage: scripts/bench-names.sh [--rounds R]
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
ROUNDS=8
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) ROUNDS="$2"; shift 2 ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "bench-names: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
[[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || { echo "bench-names: --rounds must be a positive integer" >&2; exit 2; }
cd "$ROOT"
BIN="$(cargo bench -q -p dropscope-benches --bench names --no-run --message-format=json 2>/dev/null \
  | python3 -c 'import json,sys
for l in sys.stdin:
    m=json.loads(l)
    if m.get("reason")=="compiler-artifact" and m["target"]["name"]=="names" and m.get("executable"): print(m["executable"])' | tail -1)"
[ -x "$BIN" ] || { echo "bench-names: building the names bench failed" >&2; exit 1; }
OUT="$(mktemp)"
trap 'rm -f "$OUT"' EXIT
for r in $(seq 1 "$ROUNDS"); do
  for out in decode pcapng pcapng_json; do
    # Which goes first alternates by round (the second of a pair runs on a warmer heap).
    order="off on"; [ $((r % 2)) -eq 0 ] && order="on off"
    for names in $order; do
      id="${out}_names_${names}"
      t="$("$BIN" --bench "^names/${id}\$" --warm-up-time 1 --measurement-time 3 --noplot 2>/dev/null \
        | awk '/time:/ { for (i = 1; i <= NF; i++) if ($i == "time:") { v = $(i + 3); u = $(i + 4) }
                         if (u == "s") v *= 1000; if (u == "µs") v /= 1000; print v; exit }')"
      echo "$id $t" >>"$OUT"
      printf 'bench-names: round %d %s: %s ms\n' "$r" "$id" "$t" >&2
    done
  done
done
python3 - "$OUT" <<'PY'
import statistics, sys
t = {}
for line in open(sys.argv[1]):
    k, v = line.split()
    t.setdefault(k, []).append(float(v))
print("| output | names off (median ms) | names on (median ms) | on/off | off spread | on spread |")
print("|---|---:|---:|---:|---|---|")
for out in ("decode", "pcapng", "pcapng_json"):
    off, on = t[f"{out}_names_off"], t[f"{out}_names_on"]
    mo, mn = statistics.median(off), statistics.median(on)
    print(f"| {out} | {mo:.1f} | {mn:.1f} | {mn / mo:.3f} | {min(off):.1f}-{max(off):.1f} | {min(on):.1f}-{max(on):.1f} |")
PY
