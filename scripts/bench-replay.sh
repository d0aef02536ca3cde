#!/usr/bin/env bash
# Offline speed, side by side, on one 1,000,000-packet pcap of small realistic packets:
#
#   dropscope  dropscope replay in.pcap -w out.pcapng -q --stats-json S   (pcapng + per-flow table)
#   tcpdump    tcpdump -r in.pcap -w out.pcap                             (copy, no decoding)
#   tshark     tshark -r in.pcap -q -z conv,udp                           (full dissection + table)
#
# The input is made once by benches/src/bin/genpcap.rs (deterministic) and cached under
# target/bench-data/, keyed by packet count and the generator's source hash. Timing is
# hyperfine's (mean of --runs after --warmup 1). Then the outputs are checked against the
# generator's own totals: dropscope's flows and packets, tcpdump's copy, tshark's UDP
# conversations.
#
# usage: scripts/bench-replay.sh [--runs N] [--tshark-runs N] [--out FILE.json] [options]
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PACKETS=1000000
RUNS=5
TSHARK_RUNS=2
TSHARK_WARMUP=0
SETUPS="dropscope,tcpdump,tshark"
DROPSCOPE="${DROPSCOPE:-$ROOT/target/release/dropscope}"
OUT="$ROOT/target/bench-replay.json"
DATA="$ROOT/target/bench-data"
VERIFY=1
WORKBASE="${TMPDIR:-/tmp}"

usage() {
  cat <<EOF
usage: $0 [options]
  --packets N       packets in the generated input (default $PACKETS)
  --runs N          hyperfine runs for dropscope and tcpdump (default $RUNS)
  --tshark-runs N   hyperfine runs for tshark, which is much slower (default $TSHARK_RUNS)
  --tshark-warmup N warmup runs for tshark (default $TSHARK_WARMUP: the input is cached by then)
  --setups LIST     comma-separated subset of: dropscope,tcpdump,tshark (default all)
  --dropscope PATH  dropscope binary (default target/release/dropscope, or \$DROPSCOPE)
  --out FILE        JSON with every raw number (default target/bench-replay.json)
  --workdir DIR     where outputs are written (default \$TMPDIR or /tmp)
  --no-verify       skip the output checks
Prints a markdown table on stdout; progress and errors go to stderr.
EOF
}

while [ $# -gt 0 ]; do
  case "$1" in
    --packets) PACKETS="$2"; shift 2 ;;
    --runs) RUNS="$2"; shift 2 ;;
    --tshark-runs) TSHARK_RUNS="$2"; shift 2 ;;
    --tshark-warmup) TSHARK_WARMUP="$2"; shift 2 ;;
    --setups) SETUPS="$2"; shift 2 ;;
    --dropscope) DROPSCOPE="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    --workdir) WORKBASE="$2"; shift 2 ;;
    --no-verify) VERIFY=0; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "bench-replay: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

log() { printf 'bench-replay: %s\n' "$*" >&2; }
die() { printf 'bench-replay: ERROR: %s\n' "$*" >&2; exit 1; }

[[ "$PACKETS" =~ ^[1-9][0-9]*$ ]] || die "--packets must be a positive integer"
[[ "$RUNS" =~ ^[1-9][0-9]*$ ]] || die "--runs must be a positive integer"
[[ "$TSHARK_RUNS" =~ ^[1-9][0-9]*$ ]] || die "--tshark-runs must be a positive integer"
[[ "$TSHARK_WARMUP" =~ ^[0-9]+$ ]] || die "--tshark-warmup must be a non-negative integer"
for s in ${SETUPS//,/ }; do
  case "$s" in dropscope|tcpdump|tshark) ;; *) die "unknown setup '$s' in --setups" ;; esac
done
has_setup() { [[ ",$SETUPS," == *",$1,"* ]]; }
need_cmd() { command -v "$1" >/dev/null 2>&1 || die "$1 not found: $2"; }
need_cmd hyperfine "install hyperfine (scripts/setup.sh does)"
need_cmd python3 "python3 summarises the results"
need_cmd cargo "cargo builds the pcap generator (benches/src/bin/genpcap.rs)"
has_setup tcpdump && need_cmd tcpdump "install tcpdump, or leave it out of --setups"
has_setup tshark && need_cmd tshark "install tshark, or leave it out of --setups"

DROPSCOPE_MISSING=""
if has_setup dropscope && ! [ -x "$DROPSCOPE" ]; then
  DROPSCOPE_MISSING="dropscope binary not found at $DROPSCOPE: build it with 'cargo build --release -p dropscope' (or pass --dropscope PATH); the dropscope setup is NOT run"
  printf '\nbench-replay: ERROR: %s\n\n' "$DROPSCOPE_MISSING" >&2
  SETUPS="$(echo ",$SETUPS," | sed 's/,dropscope,/,/; s/^,//; s/,$//')"
  [ -n "$SETUPS" ] || exit 1
fi

# ---------------------------------------------------------------- the input, cached
log "building the pcap generator (cargo build --release -p dropscope-benches --bin genpcap)"
BUILD_LOG="$(mktemp)"
if ! (cd "$ROOT" && cargo build --release -p dropscope-benches --bin genpcap) >"$BUILD_LOG" 2>&1; then
  cat "$BUILD_LOG" >&2
  rm -f "$BUILD_LOG"
  die "building genpcap failed"
fi
rm -f "$BUILD_LOG"
GEN_HASH="$(sha256sum "$ROOT/benches/src/bin/genpcap.rs" | cut -c1-10)"
mkdir -p "$DATA"
IN="$DATA/replay-$PACKETS-$GEN_HASH.pcap"
META="$IN.json"
if [ -s "$IN" ] && [ -s "$META" ]; then
  log "input: $IN (cached)"
else
  log "generating $IN ($PACKETS packets)"
  "$ROOT/target/release/genpcap" "$IN" --packets "$PACKETS" --meta "$META" >/dev/null
fi

WORK="$(mktemp -d "$WORKBASE/dropscope-bench-replay.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

# Shell-quoted command lines for hyperfine (it runs them through sh -c).
q() { printf '%q' "$1"; }
DS_CMD="$(q "$DROPSCOPE") replay $(q "$IN") -w $(q "$WORK/out.pcapng") -q --stats-json $(q "$WORK/stats.json")"
TD_CMD="tcpdump -r $(q "$IN") -w $(q "$WORK/out.pcap")"
TS_CMD="tshark -r $(q "$IN") -q -z conv,udp"

# ---------------------------------------------------------------- timing
LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"
if python3 -c "import os,sys; sys.exit(0 if os.getloadavg()[0] > os.cpu_count() / 2 else 1)"; then
  log "WARNING: load average $LOAD_BEFORE on $(nproc) CPUs: wall times will be inflated; compare the CPU column"
fi
HF_ARGS=(--style basic --warmup 1)
args=()
has_setup dropscope && args+=(-n dropscope "$DS_CMD")
has_setup tcpdump && args+=(-n tcpdump "$TD_CMD")
if [ "${#args[@]}" -gt 0 ]; then
  log "hyperfine: ${RUNS} runs each of: $(has_setup dropscope && echo dropscope) $(has_setup tcpdump && echo tcpdump)"
  hyperfine "${HF_ARGS[@]}" --runs "$RUNS" --export-json "$WORK/hf-fast.json" "${args[@]}" >&2
fi
if has_setup tshark; then
  # No warmup (the input is in the page cache by now) and the last run's table kept for
  # the checks: tshark on 1M packets takes tens of seconds per run.
  log "hyperfine: $TSHARK_RUNS runs of tshark (slow)"
  hyperfine --style basic --warmup "$TSHARK_WARMUP" --runs "$TSHARK_RUNS" --export-json "$WORK/hf-tshark.json" \
    --output "$WORK/tshark.conv" -n tshark "$TS_CMD" >&2
fi

# ---------------------------------------------------------------- checks
if [ "$VERIFY" = 1 ]; then
  log "checking the outputs against the generator's totals"
  if has_setup tcpdump; then
    stat -c %s "$WORK/out.pcap" >"$WORK/tcpdump.bytes"
    if command -v capinfos >/dev/null 2>&1; then
      capinfos -c -M -T -r "$WORK/out.pcap" | awk -F'\t' 'NF >= 2 { print $2; exit }' >"$WORK/tcpdump.count"
    fi
  fi
fi

LOAD_AFTER="$(cut -d' ' -f1-3 /proc/loadavg)"
mkdir -p "$(dirname "$OUT")"
rc=0
R_LOAD="$LOAD_BEFORE -> $LOAD_AFTER" R_IN="$IN" R_META="$META" R_WORK="$WORK" R_SETUPS="$SETUPS" R_RUNS="$RUNS" R_TSHARK_RUNS="$TSHARK_RUNS" \
R_TSHARK_WARMUP="$TSHARK_WARMUP" R_VERIFY="$VERIFY" R_MISSING="$DROPSCOPE_MISSING" R_DS_CMD="$DS_CMD" R_TD_CMD="$TD_CMD" R_TS_CMD="$TS_CMD" \
python3 - "$OUT" <<'PY' || rc=$?
import json, os, platform, re, subprocess, sys

E = os.environ
out_path = sys.argv[1]
work = E["R_WORK"]
meta = json.load(open(E["R_META"]))
setups = E["R_SETUPS"].split(",")
verify = E["R_VERIFY"] == "1"

def load(p):
    try:
        return json.load(open(p))
    except (OSError, ValueError):
        return None

results = {}
for f in ("hf-fast.json", "hf-tshark.json"):
    d = load(os.path.join(work, f))
    for r in (d or {}).get("results", []):
        results[r["command"]] = r

checks = []  # (setup, what, expected, got, ok)
def check(setup, what, expected, got):
    checks.append({"setup": setup, "what": what, "expected": expected, "got": got, "ok": expected == got})

ds_stats = None
if verify and "dropscope" in setups:
    ds_stats = load(os.path.join(work, "stats.json"))
    if ds_stats is None:
        check("dropscope", "stats JSON written", True, False)
    else:
        flows = ds_stats.get("flows", [])
        check("dropscope", "flows (directional 5-tuples)", meta["flows"], len(flows))
        check("dropscope", "packets (sum over flows)", meta["packets"], sum(f.get("packets", 0) for f in flows))
        check("dropscope", "bytes (sum over flows)", meta["bytes"], sum(f.get("bytes", 0) for f in flows))
        check("dropscope", "packets written to pcapng", meta["packets"],
              ((ds_stats.get("outputs") or {}).get("file") or {}).get("packets"))
        check("dropscope", "accounting reconciled", True, (ds_stats.get("accounting") or {}).get("reconciled"))
if verify and "tcpdump" in setups:
    try:
        check("tcpdump", "output file bytes (same record sizes)", meta["file_bytes"],
              int(open(os.path.join(work, "tcpdump.bytes")).read()))
    except (OSError, ValueError):
        check("tcpdump", "output file written", True, False)
    try:
        check("tcpdump", "packets in output (capinfos)", meta["packets"], int(open(os.path.join(work, "tcpdump.count")).read()))
    except (OSError, ValueError):
        pass
if verify and "tshark" in setups:
    try:
        txt = open(os.path.join(work, "tshark.conv")).read()
        convs = [l for l in txt.splitlines() if "<->" in l]
        check("tshark", "UDP conversations", meta["udp_conversations"], len(convs))
        frames = 0
        for l in convs:
            # "a:p <-> b:q   F1 B1 unit   F2 B2 unit   Ftotal Btotal unit   start duration"
            cells = re.findall(r"(\d+)\s+\d+(?:\.\d+)?\s*(?:bytes|[kMGT]?B)\b", l.split("<->", 1)[1])
            if len(cells) >= 3:
                frames += int(cells[2])
        udp_packets = meta["by_kind"]["ipv4_udp"]["packets"] + meta["by_kind"]["ipv6_udp"]["packets"]
        check("tshark", "UDP frames over conversations", udp_packets, frames)
    except OSError:
        check("tshark", "conversation table", True, False)

summary = {}
for s in ("dropscope", "tcpdump", "tshark"):
    r = results.get(s)
    if r:
        summary[s] = {"mean_s": r["mean"], "stddev_s": r.get("stddev"), "min_s": r["min"], "max_s": r["max"],
                      "runs": len(r.get("times", [])), "user_s": r.get("user"), "system_s": r.get("system"),
                      "cpu_s": (r.get("user") or 0.0) + (r.get("system") or 0.0),
                      "packets_per_s": meta["packets"] / r["mean"] if r["mean"] else None}
ds = summary.get("dropscope", {}).get("mean_s")
ds_cpu = summary.get("dropscope", {}).get("cpu_s")
for s in summary:
    summary[s]["ratio_vs_dropscope"] = round(summary[s]["mean_s"] / ds, 2) if ds else None
    summary[s]["cpu_ratio_vs_dropscope"] = round(summary[s]["cpu_s"] / ds_cpu, 2) if ds_cpu else None

doc = {"schema": "dropscope.bench-replay/1", "input": E["R_IN"], "generator": meta, "kernel": platform.release(),
       "commands": {"dropscope": E["R_DS_CMD"], "tcpdump": E["R_TD_CMD"], "tshark": E["R_TS_CMD"]},
       "runs": int(E["R_RUNS"]), "tshark_runs": int(E["R_TSHARK_RUNS"]), "tshark_warmup": int(E["R_TSHARK_WARMUP"]),
       "load_average": E.get("R_LOAD"),
       "dropscope_missing": E["R_MISSING"] or None, "summary": summary, "checks": checks,
       "hyperfine": results}
json.dump(doc, open(out_path, "w"), indent=2)

P = print
P("### Replay of a 1M-packet pcap: time per tool" if meta["packets"] == 1_000_000 else
  f"### Replay of a {meta['packets']}-packet pcap: time per tool")
P()
P(f"Input: {meta['packets']:,} packets, {meta['bytes']:,} bytes ({meta['file_bytes']/1e6:.1f} MB file), "
  f"{meta['flows']} directional flows ({meta['conversations']} conversations: IPv4/IPv6 x UDP/TCP), "
  f"frames {meta['min_frame']}-{meta['max_frame']} B; kernel {platform.release()}. hyperfine mean of "
  f"{E['R_RUNS']} runs after 1 warmup ({E['R_TSHARK_RUNS']} runs, {E['R_TSHARK_WARMUP']} warmup for tshark); "
  f"load average {E.get('R_LOAD')}.")
P()
P("| tool | mean (wall) | ± stddev | CPU (user+sys) | packets/s | time vs dropscope | CPU vs dropscope | command |")
P("|---|---:|---:|---:|---:|---:|---:|---|")
for s in ("dropscope", "tcpdump", "tshark"):
    if s == "dropscope" and E["R_MISSING"]:
        P("| dropscope | - | - | - | - | - | - | NOT RUN: binary missing (cargo build --release -p dropscope) |")
        continue
    m = summary.get(s)
    if not m:
        continue
    ratio = f"{m['ratio_vs_dropscope']}x" if m["ratio_vs_dropscope"] is not None else "-"
    sd = f"{m['stddev_s']:.3f} s" if m.get("stddev_s") is not None else "-"
    cr = f"{m['cpu_ratio_vs_dropscope']}x" if m["cpu_ratio_vs_dropscope"] is not None else "-"
    P(f"| {s} | {m['mean_s']:.3f} s | {sd} | {m['cpu_s']:.3f} s | {m['packets_per_s']:,.0f} | {ratio} | {cr} | `{doc['commands'][s]}` |")
if checks:
    P()
    P("| check | expected | got | |")
    P("|---|---:|---:|---|")
    for c in checks:
        P(f"| {c['setup']}: {c['what']} | {c['expected']} | {c['got']} | {'ok' if c['ok'] else 'MISMATCH'} |")
P()
P(f"Raw numbers: {out_path}")
sys.exit(1 if any(not c["ok"] for c in checks) else 0)
PY
if [ -n "$DROPSCOPE_MISSING" ]; then
  printf '\nbench-replay: ERROR: %s\n' "$DROPSCOPE_MISSING" >&2
  exit 3
fi
exit "$rc"
