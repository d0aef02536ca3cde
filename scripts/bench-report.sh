#!/usr/bin/env bash
# Time and peak memory of `dropscope report` on a stats document of 1M flow rows (~540 MB,
# made once: benches/src/bin/genpcap.rs --flows N, replayed with --stats-json, cached under
# target/bench-data/), in interleaved rounds under /usr/bin/time (wall, user+sys, max RSS),
# side by side with a peer on the same file: `wc -l` (reading the whole document from the page
# cache: the floor any reader pays), then hyperfine. --jq adds `jq -c '.flows | length'`
# (several GB of memory for 1M rows).
#
# usage: scripts/bench-report.sh [--flows N] [--rounds R] [--bin DROPSCOPE]
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
FLOWS=1000000
ROUNDS=8
BIN="$ROOT/target/release/dropscope"
JQ=0
while [ $# -gt 0 ]; do
  case "$1" in
    --flows) FLOWS="$2"; shift 2 ;;
    --rounds) ROUNDS="$2"; shift 2 ;;
    --bin) BIN="$2"; shift 2 ;;
    --jq) JQ=1; shift ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "bench-report: unknown option $1" >&2; exit 2 ;;
  esac
done
DATA="$ROOT/target/bench-data"
mkdir -p "$DATA"
if [ "$BIN" = "$ROOT/target/release/dropscope" ]; then
  (cd "$ROOT" && cargo build --release -q -p dropscope) >&2
fi
(cd "$ROOT" && cargo build --release -q -p dropscope-benches --bin genpcap) >&2
PCAP="$DATA/report-$FLOWS.pcap"
STATS="$DATA/report-$FLOWS.json"
if [ ! -s "$STATS" ]; then
  "$ROOT/target/release/genpcap" "$PCAP" --packets "$FLOWS" --flows "$FLOWS" >/dev/null
  "$BIN" replay "$PCAP" -q --stats-json "$STATS" >/dev/null 2>&1
fi
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
echo "input: $STATS ($(stat -c %s "$STATS") bytes, $FLOWS flow rows); load: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
PEERS=(wc)
declare -A WALL CPU RSS
for r in $(seq 1 "$ROUNDS"); do
  [ "$JQ" = 1 ] && PEERS=(wc jq)
  # Rotated per round: each setup runs first as often as the others.
  all=(report "${PEERS[@]}")
  n=${#all[@]}
  order=()
  for i in $(seq 0 $((n - 1))); do order+=("${all[$(((i + r) % n))]}"); done
  for s in "${order[@]}"; do
    case "$s" in
      report) cmd=("$BIN" report "$STATS" -o "$WORK/r.html") ;;
      jq) cmd=(jq -c '.flows | length' "$STATS") ;;
      wc) cmd=(wc -l "$STATS") ;;
    esac
    /usr/bin/time -o "$WORK/time" -f '%e %U %S %M' "${cmd[@]}" >/dev/null 2>&1
    read -r w u sy m <"$WORK/time"
    WALL[$s]+="$w "; CPU[$s]+="$(echo "$u + $sy" | bc) "; RSS[$s]+="$m "
  done
done
med() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else printf "%.3f\n", (a[NR/2]+a[NR/2+1])/2}'; }
mn() { tr ' ' '\n' | grep -v '^$' | sort -g | head -1; }
mx() { tr ' ' '\n' | grep -v '^$' | sort -g | tail -1; }
echo "| setup | wall median (min-max) s | CPU median s | max RSS median (max) MB |"
echo "|---|---|---|---|"
for s in report wc jq; do
  [ -n "${WALL[$s]:-}" ] || continue
  printf '| %s | %s (%s-%s) | %s | %s (%s) |\n' "$s" \
    "$(echo "${WALL[$s]}" | med)" "$(echo "${WALL[$s]}" | mn)" "$(echo "${WALL[$s]}" | mx)" \
    "$(echo "${CPU[$s]}" | med)" \
    "$(echo "${RSS[$s]}" | med | awk '{printf "%.1f", $1/1024}')" "$(echo "${RSS[$s]}" | mx | awk '{printf "%.1f", $1/1024}')"
done
if command -v hyperfine >/dev/null; then
  hyperfine -N --runs "$ROUNDS" --warmup 1 "$BIN report $STATS -o $WORK/h.html" >&2
fi
