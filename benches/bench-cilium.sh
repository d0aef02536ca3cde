#!/usr/bin/env bash
# The Cilium source's cost, for one or more dropscope builds side by side:
#
#   replay    dropscope replay s.gobstream -q --stats-json S               (flow table only)
#   replay-w  dropscope replay s.gobstream -q -w out.pcapng --stats-json S  (and a pcapng)
#   live      dropscope capture --source cilium --cilium-socket SOCK -q --stats-json S,
#             while benches/src/bin/ciliumstream.rs plays the agent at --rate payloads/s,
#             one write per payload as the agent does; and, as a reference, `ciliumstream
#             drain` (row "floor"): a reader that only reads the socket, paced the same way,
#             i.e. what the kernel charges any reader for receiving one write per payload
#   gosim     the same capture while testdata/cilium-agent-sim (Go's own encoding/gob, built
#             with the system's go) writes --gosim-payloads payloads as fast as it can: the
#             cost per 100k/s at the highest rate a Go agent reaches here
#
# The saved stream is made once by `ciliumstream gen` (deterministic; cached under
# target/bench-data/, keyed by its arguments and the generator's source hash): N drop
# notifications in chunks of --per-chunk messages (1: a recording of a socket read at an
# ordinary rate, one message per read), a lost-records notice every 100000 samples.
#
# Every round runs every build in every mode, the order of builds rotated per round, so a
# busy machine slows all alike. Replays are pinned to one CPU (--pin, default 1) and timed:
# wall, and user + sys from the process's rusage. Live runs read the dropscope process's CPU time from
# /proc/PID/stat while the agent streams. Each run's stats JSON is checked: every notification
# delivered and processed, the agent's lost records in the ledger, the ledger reconciled.
#
# usage: benches/bench-cilium.sh [options] [DROPSCOPE...]   (default target/release/dropscope)
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
ROUNDS=8
EVENTS=2020000
PER_CHUNK=1
PIN=1
MODES="replay,replay-w,live,gosim"
RATE=100000
LIVE_SECONDS=10
GOSIM_PAYLOADS=1000000
OUT="$ROOT/target/bench-cilium.json"
FLOOR=1
DATA="$ROOT/target/bench-data"

usage() {
  cat <<EOF
usage: $0 [options] [DROPSCOPE...]
  --rounds N        rounds (default $ROUNDS)
  --events N        notifications in the saved stream (default $EVENTS)
  --per-chunk K     gob messages per recorded chunk (default $PER_CHUNK)
  --pin CPU         CPU the replays run on, or 'none' (default $PIN)
  --modes LIST      comma-separated subset of replay,replay-w,live,gosim (default $MODES)
  --rate R          live: payloads per second the agent sends (default $RATE)
  --live-seconds S  live: seconds the agent streams (default $LIVE_SECONDS)
  --gosim-payloads N  gosim: payloads the Go simulator floods (default $GOSIM_PAYLOADS)
  --out FILE        every raw number as JSON (default target/bench-cilium.json)
  --no-floor        live: leave out the reference reader that only reads the socket
Builds are named by their path. Prints a markdown table on stdout, progress on stderr.
EOF
}

BINS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) ROUNDS="$2"; shift 2 ;;
    --events) EVENTS="$2"; shift 2 ;;
    --per-chunk) PER_CHUNK="$2"; shift 2 ;;
    --pin) PIN="$2"; shift 2 ;;
    --modes) MODES="$2"; shift 2 ;;
    --rate) RATE="$2"; shift 2 ;;
    --live-seconds) LIVE_SECONDS="$2"; shift 2 ;;
    --gosim-payloads) GOSIM_PAYLOADS="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    --no-floor) FLOOR=0; shift ;;
    -h|--help) usage; exit 0 ;;
    -*) echo "bench-cilium: unknown option $1 (see --help)" >&2; exit 2 ;;
    *) BINS+=("$1"); shift ;;
  esac
done
[ "${#BINS[@]}" -gt 0 ] || BINS=("$ROOT/target/release/dropscope")

log() { printf 'bench-cilium: %s\n' "$*" >&2; }
die() { printf 'bench-cilium: ERROR: %s\n' "$*" >&2; exit 1; }
for n in "$ROUNDS" "$EVENTS" "$PER_CHUNK" "$RATE" "$LIVE_SECONDS" "$GOSIM_PAYLOADS"; do
  [[ "$n" =~ ^[1-9][0-9]*$ ]] || die "counts must be positive integers (got '$n')"
done
for m in ${MODES//,/ }; do
  case "$m" in replay|replay-w|live|gosim) ;; *) die "unknown mode '$m' in --modes" ;; esac
done
has_mode() { [[ ",$MODES," == *",$1,"* ]]; }
for b in "${BINS[@]}"; do
  [ -x "$b" ] || die "$b is not an executable (build with 'cargo build --release -p dropscope')"
done
command -v python3 >/dev/null || die "python3 times the runs and summarises the results"
PIN_CMD=()
if [ "$PIN" != none ]; then
  command -v taskset >/dev/null || die "taskset not found (util-linux), or use --pin none"
  PIN_CMD=(taskset -c "$PIN")
fi

log "building the stream generator (cargo build --release -p dropscope-benches --bin ciliumstream)"
(cd "$ROOT" && cargo build --release -q -p dropscope-benches --bin ciliumstream) >&2 \
  || die "building ciliumstream failed"
GEN="$ROOT/target/release/ciliumstream"
GEN_HASH="$(sha256sum "$ROOT/benches/src/bin/ciliumstream.rs" | cut -c1-10)"
mkdir -p "$DATA"
STREAM="$DATA/cilium-$EVENTS-$PER_CHUNK-$GEN_HASH.gobstream"
if has_mode replay || has_mode replay-w; then
  if [ -s "$STREAM" ] && [ -s "$STREAM.json" ]; then
    log "input: $STREAM (cached)"
  else
    log "generating $STREAM"
    "$GEN" gen "$STREAM" --events "$EVENTS" --per-chunk "$PER_CHUNK" >"$STREAM.json"
  fi
fi

GOSIM="$DATA/cilium-agent-sim"
if has_mode gosim; then
  command -v go >/dev/null || die "go is needed for the gosim mode (scripts/setup.sh installs golang-go), or leave it out of --modes"
  log "building testdata/cilium-agent-sim (go build, offline)"
  GO111MODULE=off GOFLAGS= GOPROXY=off CGO_ENABLED=0 GOCACHE="$DATA/gocache" GOPATH="$DATA/gopath" \
    go build -o "$GOSIM" "$ROOT/testdata/cilium-agent-sim/main.go" >&2 || die "building the Go simulator failed"
fi

WORK="$(mktemp -d "${TMPDIR:-/tmp}/dropscope-bench-cilium.XXXXXX")"
SERVE_PID=""
DS_PID=""
cleanup() {
  [ -n "$DS_PID" ] && kill "$DS_PID" 2>/dev/null || true
  [ -n "$SERVE_PID" ] && kill "$SERVE_PID" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
RUNS="$WORK/runs.jsonl"
: >"$RUNS"

LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"
if python3 -c "import os,sys; sys.exit(0 if os.getloadavg()[0] > os.cpu_count() / 2 else 1)"; then
  log "WARNING: load average $LOAD_BEFORE on $(nproc) CPUs: wall times are inflated; compare CPU"
fi

# check STATS SUMMARY: the run delivered and processed every notification of the summary.
check() {
  python3 - "$1" "$2" <<'PY'
import json, sys
s = json.load(open(sys.argv[1])); want = json.load(open(sys.argv[2]))
a = s["accounting"]; t = a["totals"]
lost = sum(l["count"] for l in a["stage_losses"] if l["kind"] == "perf_ring_lost_records")
ok = (a["reconciled"] and t["delivered"] == want["samples"] and t["processed"] == want["samples"]
      and t["received"] == want["samples"] and lost == want["lost_total"])
print("ok" if ok else "MISMATCH delivered=%s processed=%s lost=%s want=%s/%s" % (
    t["delivered"], t["processed"], lost, want["samples"], want["lost_total"]))
PY
}

# timed FILE CMD...: runs CMD, writes "wall user sys" (seconds, from wait4's rusage) to FILE.
timed() {
  python3 -c '
import os, subprocess, sys, time
t = time.perf_counter()
p = subprocess.Popen(sys.argv[2:])
_, status, ru = os.wait4(p.pid, 0)
wall = time.perf_counter() - t
open(sys.argv[1], "w").write("%.4f %.4f %.4f\n" % (wall, ru.ru_utime, ru.ru_stime))
sys.exit(os.waitstatus_to_exitcode(status))
' "$@"
}

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

run_replay() { # BIN MODE ROUND
  local bin="$1" mode="$2" round="$3" extra=()
  [ "$mode" = replay-w ] && extra=(-w "$WORK/out.pcapng")
  timed "$WORK/time" "${PIN_CMD[@]}" "$bin" replay "$STREAM" -q \
    --stats-json "$WORK/s.json" "${extra[@]}" 2>"$WORK/err" >/dev/null || {
    cat "$WORK/err" >&2; die "$bin replay failed"; }
  read -r wall user sys <"$WORK/time"
  local verdict; verdict="$(check "$WORK/s.json" "$STREAM.json")"
  printf '{"bin":"%s","mode":"%s","round":%d,"wall":%s,"user":%s,"sys":%s,"events":%d,"check":"%s"}\n' \
    "$bin" "$mode" "$round" "$wall" "$user" "$sys" "$EVENTS" "$verdict" >>"$RUNS"
  log "round $round $mode $(basename "$bin"): ${wall}s wall, $(python3 -c "print(round($user+$sys,2))")s CPU, $verdict"
}

run_live() { # BIN ROUND; BIN "floor" runs `ciliumstream drain` (read and discard) instead
  local bin="$1" round="$2" sock="$WORK/monitor.sock" n=$((RATE * LIVE_SECONDS))
  rm -f "$sock"
  "$GEN" serve "$sock" --events "$n" --rate "$RATE" >"$WORK/serve.out" &
  SERVE_PID=$!
  for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.05; done
  [ -S "$sock" ] || die "the agent simulator did not listen on $sock"
  if [ "$bin" = floor ]; then
    "$GEN" drain "$sock" >"$WORK/drain.out" &
  else
    "$bin" capture --source cilium --cilium-socket "$sock" -q --stats-json "$WORK/live.json" \
      2>"$WORK/live.err" >/dev/null &
  fi
  DS_PID=$!
  # The agent starts streaming when the reader connects, which dropscope does once started:
  # its start-up (loading names) is not counted.
  local t0 t1 verdict
  for _ in $(seq 1000); do [ "$(wc -l <"$WORK/serve.out")" -ge 2 ] && break; sleep 0.01; done
  [ "$bin" = floor ] || t0="$(ticks "$DS_PID")"
  wait "$SERVE_PID" || die "the agent simulator failed"
  SERVE_PID=""
  [ "$bin" = floor ] || t1="$(ticks "$DS_PID")"
  tail -n1 "$WORK/serve.out" >"$WORK/serve.json"
  if [ "$bin" = floor ]; then
    # drain counts its own ticks from its connection to the agent's close.
    wait "$DS_PID" || die "ciliumstream drain failed"
    DS_PID=""
    t0=0
    t1="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["cpu_ticks"])' "$WORK/drain.out")"
    verdict="$(python3 -c 'import json,sys; a=json.load(open(sys.argv[1])); b=json.load(open(sys.argv[2]))
print("ok" if a["bytes"] == b["bytes"] else "MISMATCH bytes %d of %d" % (a["bytes"], b["bytes"]))' \
      "$WORK/drain.out" "$WORK/serve.json")"
  else
    sleep 0.3
    kill -INT "$DS_PID"
    wait "$DS_PID" || { cat "$WORK/live.err" >&2; die "$bin capture failed"; }
    DS_PID=""
    verdict="$(check "$WORK/live.json" "$WORK/serve.json")"
  fi
  local hz; hz="$(getconf CLK_TCK)"
  python3 - "$bin" "$round" "$t0" "$t1" "$hz" "$WORK/serve.json" "$verdict" >>"$RUNS" <<'PY'
import json, sys
bin_, rnd, t0, t1, hz, serve, verdict = sys.argv[1:]
s = json.load(open(serve))
cpu = (int(t1) - int(t0)) / int(hz)
print(json.dumps({"bin": bin_, "mode": "live", "round": int(rnd), "cpu": cpu,
                  "seconds": s["seconds"], "events": s["samples"], "rate": s["payloads_per_sec"],
                  "check": verdict}))
PY
  log "round $round live $(basename "$bin"): $(tail -n1 "$RUNS")"
}

run_gosim() { # BIN ROUND
  local bin="$1" round="$2" sock="$WORK/gosim.sock"
  rm -f "$sock"
  "$GOSIM" -socket "$sock" -flood "$GOSIM_PAYLOADS" -sample-len 180 >"$WORK/gosim.out" &
  SERVE_PID=$!
  for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.05; done
  [ -S "$sock" ] || die "the Go simulator did not listen on $sock"
  "$bin" capture --source cilium --cilium-socket "$sock" -q --stats-json "$WORK/gosim.json" \
    2>"$WORK/gosim.err" >/dev/null &
  DS_PID=$!
  # The simulator starts writing when dropscope's source thread connects: counted from then.
  for _ in $(seq 1000); do
    grep -qs dropscope-sourc /proc/"$DS_PID"/task/*/comm && break
    sleep 0.005
  done
  local t0 t1
  t0="$(ticks "$DS_PID")"
  wait "$SERVE_PID" || die "the Go simulator failed"
  SERVE_PID=""
  t1="$(ticks "$DS_PID")"
  sleep 0.3
  kill -INT "$DS_PID"
  wait "$DS_PID" || { cat "$WORK/gosim.err" >&2; die "$bin capture failed"; }
  DS_PID=""
  python3 - "$bin" "$round" "$t0" "$t1" "$(getconf CLK_TCK)" "$WORK/gosim.out" "$WORK/gosim.json" >>"$RUNS" <<'PY'
import json, sys
bin_, rnd, t0, t1, hz, out, stats = sys.argv[1:]
sim = [json.loads(l) for l in open(out)][-1]
a = json.load(open(stats))["accounting"]
ok = a["reconciled"] and a["totals"]["delivered"] == sim["payloads"] == a["totals"]["processed"]
print(json.dumps({"bin": bin_, "mode": "gosim", "round": int(rnd),
                  "cpu": (int(t1) - int(t0)) / int(hz), "seconds": sim["seconds"],
                  "events": sim["payloads"], "rate": sim["payloads_per_sec"],
                  "check": "ok" if ok else "MISMATCH delivered %d of %d" % (a["totals"]["delivered"], sim["payloads"])}))
PY
  log "round $round gosim $(basename "$bin"): $(tail -n1 "$RUNS")"
}

nb=${#BINS[@]}
for round in $(seq 1 "$ROUNDS"); do
  for i in $(seq 0 $((nb - 1))); do
    bin="${BINS[$(( (i + round) % nb ))]}"
    has_mode replay && run_replay "$bin" replay "$round"
    has_mode replay-w && run_replay "$bin" replay-w "$round"
    has_mode live && run_live "$bin" "$round"
    has_mode gosim && run_gosim "$bin" "$round"
  done
  # The floor: the same agent read by a reader that only reads (kernel cost of the socket).
  if has_mode live && [ "$FLOOR" = 1 ]; then run_live floor "$round"; fi
done

mkdir -p "$(dirname "$OUT")"
python3 - "$RUNS" "$OUT" "$LOAD_BEFORE" "$(cut -d' ' -f1-3 /proc/loadavg)" "$PIN" <<'PY'
import json, statistics as st, sys
runs = [json.loads(l) for l in open(sys.argv[1])]
json.dump({"runs": runs, "load_before": sys.argv[3], "load_after": sys.argv[4],
           "pin": sys.argv[5]}, open(sys.argv[2], "w"), indent=1)
print("load average before %s, after %s; replays pinned to CPU %s\n" % (sys.argv[3], sys.argv[4], sys.argv[5]))
print("| build | mode | runs | median wall s (min-max) | median CPU s (min-max) | M events/s wall | M events/s per CPU-s | % core per 100k ev/s | checks |")
print("|---|---|---|---|---|---|---|---|---|")
keys = []
for r in runs:
    k = (r["bin"], r["mode"])
    if k not in keys:
        keys.append(k)
for b, m in keys:
    rs = [r for r in runs if (r["bin"], r["mode"]) == (b, m)]
    checks = "all ok" if all(r["check"] == "ok" for r in rs) else "MISMATCH"
    if m in ("live", "gosim"):
        cpu = [r["cpu"] for r in rs]
        pct = [100 * r["cpu"] / r["seconds"] / (r["events"] / r["seconds"] / 1e5) for r in rs]
        rate = st.median(r["rate"] for r in rs)
        print("| %s | %s %.0fk/s | %d | %.2f s streaming | %.2f (%.2f-%.2f) | | | %.1f (%.1f-%.1f) | %s |" % (
            b, m, rate / 1e3, len(rs), st.median(r["seconds"] for r in rs), st.median(cpu), min(cpu), max(cpu),
            st.median(pct), min(pct), max(pct), checks))
    else:
        wall = [r["wall"] for r in rs]
        cpu = [r["user"] + r["sys"] for r in rs]
        ev = rs[0]["events"]
        print("| %s | %s | %d | %.3f (%.3f-%.3f) | %.3f (%.3f-%.3f) | %.2f | %.2f | | %s |" % (
            b, m, len(rs), st.median(wall), min(wall), max(wall), st.median(cpu), min(cpu), max(cpu),
            ev / st.median(wall) / 1e6, ev / st.median(cpu) / 1e6, checks))
PY
if grep -q MISMATCH "$RUNS"; then
  die "some runs did not account for every notification (see $OUT)"
fi
