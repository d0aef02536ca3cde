#!/usr/bin/env bash
# Time and peak memory of `dropscope replay` on a pcap of many distinct flows, without and
# with --stats-json (and --stats-flows 100 when the binary has it), for two builds side by
# side (e.g. main and a branch), in interleaved rounds:
#
#   nojson   dropscope replay in.pcap -q
#   json     dropscope replay in.pcap -q --stats-json S.json
#   top100   dropscope replay in.pcap -q --stats-json S.json --stats-flows 100
#
# The input is made once by benches/src/bin/genpcap.rs --flows N (every packet of the first
# N a new directional flow) and cached under target/bench-data/. Each round runs every
# setup once under /usr/bin/time (wall, user+sys, max RSS), in an order rotated per round;
# then hyperfine runs all setups in one invocation. The stats JSON of each run replaces the
# previous one, as when a user runs the same command again. Then the outputs are checked:
# rows, packets and bytes against the generator's totals; the two builds' documents the same
# text (but for elapsed_s, started and members one of them lacks); the top 100 rows the
# first 100 of the full document.
#
# usage: benches/bench-stats.sh --old BIN [--new BIN] [--flows N] [--packets N] [--rounds R]
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
FLOWS=1000000
PACKETS=""
ROUNDS=8
OLD=""
NEW="$ROOT/target/release/dropscope"
OUT="$ROOT/target/bench-stats.json"
DATA="$ROOT/target/bench-data"
WORKBASE="$ROOT/target"
HYPERFINE=1

usage() {
  cat <<EOF
usage: $0 --old BIN [options]
  --old BIN       the build to compare against (e.g. main's dropscope, built in a worktree)
  --new BIN       the build under test (default target/release/dropscope)
  --flows N       distinct directional flows in the input (default $FLOWS)
  --packets N     packets in the input, at least --flows (default: the number of flows)
  --rounds R      interleaved rounds, and hyperfine runs per setup (default $ROUNDS)
  --no-hyperfine  only the /usr/bin/time rounds
  --out FILE      JSON with every raw number (default target/bench-stats.json)
  --workdir DIR   where outputs are written (default target/; needs room for 2 x ~550 MB)
Prints a markdown table on stdout; progress and errors go to stderr.
EOF
}

while [ $# -gt 0 ]; do
  case "$1" in
    --old) OLD="$2"; shift 2 ;;
    --new) NEW="$2"; shift 2 ;;
    --flows) FLOWS="$2"; shift 2 ;;
    --packets) PACKETS="$2"; shift 2 ;;
    --rounds) ROUNDS="$2"; shift 2 ;;
    --no-hyperfine) HYPERFINE=0; shift ;;
    --out) OUT="$2"; shift 2 ;;
    --workdir) WORKBASE="$2"; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "bench-stats: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

log() { printf 'bench-stats: %s\n' "$*" >&2; }
die() { printf 'bench-stats: ERROR: %s\n' "$*" >&2; exit 1; }

PACKETS="${PACKETS:-$FLOWS}"
[[ "$FLOWS" =~ ^[1-9][0-9]*$ ]] || die "--flows must be a positive integer"
[[ "$PACKETS" =~ ^[1-9][0-9]*$ ]] || die "--packets must be a positive integer"
[ "$PACKETS" -ge "$FLOWS" ] || die "--packets must be at least --flows"
[[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || die "--rounds must be a positive integer"
[ -n "$OLD" ] || die "--old BIN is required (see --help)"
for b in "$OLD" "$NEW"; do [ -x "$b" ] || die "$b is not an executable"; done
[ -x /usr/bin/time ] || die "/usr/bin/time not found (apt-get install time)"
command -v python3 >/dev/null || die "python3 summarises the results"
if [ "$HYPERFINE" = 1 ]; then
  command -v hyperfine >/dev/null || die "hyperfine not found (scripts/setup.sh installs it), or pass --no-hyperfine"
fi

# ---------------------------------------------------------------- the input, cached
log "building the pcap generator"
(cd "$ROOT" && cargo build --release -q -p dropscope-benches --bin genpcap) >&2 || die "building genpcap failed"
GEN_HASH="$(sha256sum "$ROOT/benches/src/bin/genpcap.rs" | cut -c1-10)"
mkdir -p "$DATA"
IN="$DATA/flows-$FLOWS-$PACKETS-$GEN_HASH.pcap"
META="$IN.json"
if [ -s "$IN" ] && [ -s "$META" ]; then
  log "input: $IN (cached)"
else
  log "generating $IN ($FLOWS flows, $PACKETS packets)"
  "$ROOT/target/release/genpcap" "$IN" --packets "$PACKETS" --flows "$FLOWS" --meta "$META" >/dev/null
fi

WORK="$(mktemp -d "$WORKBASE/bench-stats.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

# ---------------------------------------------------------------- setups
NAMES=()
CMDS=()
add() { NAMES+=("$1"); CMDS+=("$2"); }
q() { printf '%q' "$1"; }
for build in old new; do
  bin="$OLD"; [ "$build" = new ] && bin="$NEW"
  base="$(q "$bin") replay $(q "$IN") -q"
  add "$build-nojson" "$base"
  add "$build-json" "$base --stats-json $(q "$WORK/$build-json.json")"
  if "$bin" replay --help 2>/dev/null | grep -q -- '--stats-flows'; then
    add "$build-top100" "$base --stats-json $(q "$WORK/$build-top100.json") --stats-flows 100"
  fi
done

LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"
if python3 -c "import os,sys; sys.exit(0 if os.getloadavg()[0] > os.cpu_count() / 2 else 1)"; then
  log "WARNING: load average $LOAD_BEFORE on $(nproc) CPUs: wall times will be inflated; compare CPU and RSS"
fi

# ---------------------------------------------------------------- interleaved rounds
TIMES="$WORK/times.tsv"
: >"$TIMES"
n=${#NAMES[@]}
for ((r = 0; r < ROUNDS; r++)); do
  log "round $((r + 1))/$ROUNDS"
  for ((j = 0; j < n; j++)); do
    i=$(((j + r) % n))
    if ! /usr/bin/time -f "%e\t%U\t%S\t%M" -o "$WORK/t" sh -c "${CMDS[$i]} >/dev/null 2>$WORK/stderr"; then
      cat "$WORK/stderr" >&2
      die "${NAMES[$i]} failed: ${CMDS[$i]}"
    fi
    printf '%s\t%s\t%s\n' "$((r + 1))" "${NAMES[$i]}" "$(tail -n1 "$WORK/t")" >>"$TIMES"
  done
done

if [ "$HYPERFINE" = 1 ]; then
  args=()
  for ((i = 0; i < n; i++)); do args+=(-n "${NAMES[$i]}" "${CMDS[$i]}"); done
  log "hyperfine: $ROUNDS runs of each setup after 1 warmup"
  hyperfine --style basic --warmup 1 --runs "$ROUNDS" --export-json "$WORK/hf.json" "${args[@]}" >&2
fi

# ---------------------------------------------------------------- checks
# flows[] entries are the only members indented by 6 spaces.
flow_sums() { awk '/^      "packets": /{n++; p+=$2} /^      "bytes": /{b+=$2} END{printf "%d %d %d\n", n, p, b}' "$1"; }
# The first N entries of flows[], each closed by "    }" (no comma).
flow_head() {
  awk -v n="$2" '/^  "flows": \[/{f=1; next} f && /^  \]/{exit}
    f { if ($0 ~ /^    },?$/) { print "    }"; if (++c == n) exit; next } print }' "$1"
}
# The document without what differs between runs or builds.
comparable() {
  grep -v -E '^  "(elapsed_s|started)": |^    "rows_(written|omitted)": ' "$1" |
    sed -E 's/^(    "overflowed_packets": [0-9]+),$/\1/'
}
CHECKS="$WORK/checks.tsv"
: >"$CHECKS"
check() { printf '%s\t%s\t%s\n' "$1" "$2" "$3" >>"$CHECKS"; }
for build in old new; do
  f="$WORK/$build-json.json"
  [ -s "$f" ] && check "$build-json flows, packets, bytes" "$(python3 -c "import json,sys; m=json.load(open(sys.argv[1])); print(m['flows'], m['packets'], m['bytes'])" "$META")" "$(flow_sums "$f")"
done
if [ -s "$WORK/old-json.json" ] && [ -s "$WORK/new-json.json" ]; then
  if cmp -s <(comparable "$WORK/old-json.json") <(comparable "$WORK/new-json.json"); then
    check "old and new documents" "same text" "same text"
  else
    check "old and new documents" "same text" "DIFFERENT"
  fi
fi
for build in old new; do
  t="$WORK/$build-top100.json"
  [ -s "$t" ] || continue
  check "$build-top100 rows_written, rows_omitted" "100 $((FLOWS - 100))" \
    "$(awk '/^    "rows_written": /{w=$2} /^    "rows_omitted": /{o=$2} END{gsub(",","",w); gsub(",","",o); print w, o}' "$t")"
  if cmp -s <(flow_head "$t" 100) <(flow_head "$WORK/$build-json.json" 100); then
    check "$build-top100 rows = first 100 of $build-json" "same" "same"
  else
    check "$build-top100 rows = first 100 of $build-json" "same" "DIFFERENT"
  fi
done
JSON_BYTES="$(stat -c %s "$WORK/new-json.json" 2>/dev/null || echo 0)"

LOAD_AFTER="$(cut -d' ' -f1-3 /proc/loadavg)"
mkdir -p "$(dirname "$OUT")"
R_LOAD="$LOAD_BEFORE -> $LOAD_AFTER" R_META="$META" R_IN="$IN" R_ROUNDS="$ROUNDS" R_OLD="$OLD" R_NEW="$NEW" \
R_JSON_BYTES="$JSON_BYTES" python3 - "$OUT" "$TIMES" "$CHECKS" "$WORK/hf.json" <<'PY'
import json, os, statistics, sys
E = os.environ
out, times, checks, hf = sys.argv[1:5]
meta = json.load(open(E["R_META"]))
runs = {}
for line in open(times):
    r, name, wall, user, sys_, rss = line.rstrip("\n").split("\t")
    runs.setdefault(name, []).append({"round": int(r), "wall_s": float(wall), "cpu_s": float(user) + float(sys_),
                                     "max_rss_kb": int(rss)})
hyper = {}
try:
    for r in json.load(open(hf))["results"]:
        hyper[r["command"]] = r
except (OSError, ValueError):
    pass
checks = [dict(zip(("what", "expected", "got"), l.rstrip("\n").split("\t"))) for l in open(checks)]
for c in checks:
    c["ok"] = c["expected"] == c["got"]
order = [n for n in ("old-nojson", "new-nojson", "old-json", "new-json", "old-top100", "new-top100") if n in runs]
P = print
P(f"### dropscope replay of {meta['flows']:,} flows ({meta['packets']:,} packets): time and peak memory")
P()
P(f"{E['R_ROUNDS']} interleaved rounds under /usr/bin/time (order rotated per round); "
  f"load average {E['R_LOAD']}; old = `{E['R_OLD']}`, new = `{E['R_NEW']}`; "
  f"stats JSON {int(E['R_JSON_BYTES'])/1e6:.0f} MB.")
P()
P("| setup | wall median | wall min-max | CPU median | max RSS median | max RSS max | hyperfine mean ± sd |")
P("|---|---:|---:|---:|---:|---:|---:|")
summary = {}
for n in order:
    rs = runs[n]
    w = [x["wall_s"] for x in rs]; c = [x["cpu_s"] for x in rs]; m = [x["max_rss_kb"] for x in rs]
    h = hyper.get(n)
    summary[n] = {"wall_median_s": statistics.median(w), "wall_min_s": min(w), "wall_max_s": max(w),
                  "cpu_median_s": statistics.median(c), "rss_median_mb": statistics.median(m) / 1024,
                  "rss_max_mb": max(m) / 1024,
                  "hyperfine_mean_s": h["mean"] if h else None, "hyperfine_stddev_s": h.get("stddev") if h else None}
    s = summary[n]
    hs = f"{s['hyperfine_mean_s']:.2f} ± {s['hyperfine_stddev_s'] or 0:.2f} s" if h else "-"
    P(f"| {n} | {s['wall_median_s']:.2f} s | {s['wall_min_s']:.2f}-{s['wall_max_s']:.2f} s | {s['cpu_median_s']:.2f} s "
      f"| {s['rss_median_mb']:.0f} MB | {s['rss_max_mb']:.0f} MB | {hs} |")
if checks:
    P()
    P("| check | expected | got | |")
    P("|---|---|---|---|")
    for c in checks:
        P(f"| {c['what']} | {c['expected']} | {c['got']} | {'ok' if c['ok'] else 'MISMATCH'} |")
json.dump({"schema": "dropscope.bench-stats/1", "input": E["R_IN"], "generator": meta, "load_average": E["R_LOAD"],
           "old": E["R_OLD"], "new": E["R_NEW"], "summary": summary, "runs": runs, "checks": checks,
           "hyperfine": hyper}, open(out, "w"), indent=2)
P()
P(f"Raw numbers: {out}")
sys.exit(1 if any(not c["ok"] for c in checks) else 0)
PY
