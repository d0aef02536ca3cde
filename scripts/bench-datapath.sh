#!/usr/bin/env bash
# What counting a big map's entries costs, and whether it slows the datapath that uses the
# map. A stand-in for Cilium's conntrack table (benches/src/bin/mapfixture.rs): a hash map of
# N entries (16-byte keys, 56-byte values) pinned in a bpffs mounted here, and a tc program
# on B's veth ingress that rewrites one entry of it for every packet (map_update_elem, which
# takes the bucket's lock, as a conntrack update does). A floods B (udpflood, every packet
# then dropped with NO_SOCKET) while:
#
#   baseline   nothing else runs
#   counter    dropscope datapath --json runs back to back (entries from the kernel's own
#              counter: a BPF iterator calling bpf_map_sum_elem_count)
#   walk       dropscope datapath --json --walk-keys runs back to back (BPF_MAP_GET_NEXT_KEY
#              over every key)
#   watch      dropscope datapath --watch --interval 0.1 (one process, the iterator loaded
#              once, a count every 0.1 s: what a watch costs)
#   nocount    dropscope datapath --json --no-count runs back to back: the same processes
#              without counting (control for `counter`)
#   spin       a shell busy loop on the counting CPU (control for `walk`, which keeps that
#              CPU busy too): on a VM whose two vCPUs share a core, any load there slows the
#              sender; only a difference from the control is the count's own doing
#
# The setups are interleaved over R rounds (order rotated each round) so drift hits them
# alike. Prints the sender's median rate per setup (with min..max) and its ratio to the
# baseline, and the time each count took (median, max), as a markdown table.
#
# usage: scripts/bench-datapath.sh [--rounds R] [--duration D] [--entries N] [--out FILE]
# Needs root, iproute2 (ip, tc), python3, cargo, taskset (optional).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
ROUNDS=8
DURATION=3
ENTRIES=1048576
OUT="$ROOT/target/bench-datapath.json"
FLOOD_CPU=0
TOOL_CPU=1

while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) ROUNDS="$2"; shift 2 ;;
    --duration) DURATION="$2"; shift 2 ;;
    --entries) ENTRIES="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
    *) echo "bench-datapath: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

log() { printf 'bench-datapath: %s\n' "$*" >&2; }
die() { printf 'bench-datapath: ERROR: %s\n' "$*" >&2; exit 1; }
[[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || die "--rounds must be a positive integer"
[[ "$DURATION" =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "--duration must be a number of seconds"
[[ "$ENTRIES" =~ ^[0-9]+$ ]] || die "--entries must be a number"
python3 -c "import sys; n=int('$ENTRIES'); sys.exit(0 if n > 0 and n & (n - 1) == 0 else 1)" ||
  die "--entries must be a power of two (the program picks key skb->hash % N with a mask)"
[ "$(id -u)" -eq 0 ] || die "must run as root (namespaces, bpffs, BPF programs): sudo $0"
for c in ip tc python3 cargo; do command -v "$c" >/dev/null || die "$c not found"; done

PIN_FLOOD=(); PIN_TOOL=()
if [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null; then
  # This script and all it runs (the counts, python, date) stay off the flood's CPU.
  taskset -cp "$TOOL_CPU" $$ >/dev/null
  PIN_FLOOD=(taskset -c "$FLOOD_CPU"); PIN_TOOL=(taskset -c "$TOOL_CPU")
fi

log "building (cargo build --release -p dropscope -p dropscope-benches)"
(cd "$ROOT" && cargo build --release -p dropscope --bin dropscope -p dropscope-benches \
  --bin udpflood --bin mapfixture) >/dev/null 2>&1 || die "build failed (run the cargo command to see why)"
DS="$ROOT/target/release/dropscope"
FLOOD="$ROOT/target/release/udpflood"
FIXTURE="$ROOT/target/release/mapfixture"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/bench-datapath.XXXXXX")"
FIX_PID=""
# shellcheck source=scripts/netns-pair.sh
. "$ROOT/scripts/netns-pair.sh"
cleanup() {
  [ -z "$FIX_PID" ] || { exec 9>&- 2>/dev/null || true; wait "$FIX_PID" 2>/dev/null || true; }
  netns_pair_del
  mountpoint -q "$WORK/fs" 2>/dev/null && umount -l "$WORK/fs"
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

netns_pair "bdp$$" 78
# The fixture lives while fd 9 (its stdin) is open.
mkfifo "$WORK/fix.in"
"$FIXTURE" "$WORK/fs" "$ENTRIES" <"$WORK/fix.in" >"$WORK/fix.out" 2>"$WORK/fix.err" &
FIX_PID=$!
exec 9>"$WORK/fix.in"
for _ in $(seq 1 600); do grep -q ready "$WORK/fix.out" 2>/dev/null && break; sleep 0.1; done
grep -q ready "$WORK/fix.out" || die "mapfixture did not start: $(cat "$WORK/fix.err")"
log "$(cat "$WORK/fix.err")"
tc -n "$NS_B" qdisc add dev "$VETH_B" clsact
tc -n "$NS_B" filter add dev "$VETH_B" ingress bpf object-pinned "$WORK/fs/ct_touch" direct-action
log "ct_touch on $NS_B/$VETH_B ingress; map $WORK/fs/cilium_ct4_global ($ENTRIES entries)"

RAW="$WORK/raw.jsonl"
: >"$RAW"
flood() { "${PIN_FLOOD[@]}" "$FLOOD" --netns "$NS_A" --dst "$IP_B:9" --duration "$DURATION" --batch 64; }

run_setup() { # SETUP ROUND
  local setup="$1" round="$2" extra=() fpid
  case "$setup" in
    baseline) flood >"$WORK/flood.json" ;;
    watch)
      flood >"$WORK/flood.json" &
      fpid=$!
      "${PIN_TOOL[@]}" "$DS" datapath --watch --interval 0.1 --duration "$DURATION" --own-netns \
        --maps-dir "$WORK/fs" --cilium-api /nonexistent.sock >/dev/null 2>&1
      wait "$fpid"
      : >"$WORK/counts.jsonl"
      ;;
    spin)
      flood >"$WORK/flood.json" &
      fpid=$!
      "${PIN_TOOL[@]}" timeout "$DURATION" sh -c 'while :; do :; done' || true
      wait "$fpid"
      : >"$WORK/counts.jsonl"
      ;;
    counter|walk|nocount)
      [ "$setup" = walk ] && extra=(--walk-keys)
      [ "$setup" = nocount ] && extra=(--no-count)
      flood >"$WORK/flood.json" &
      fpid=$!
      : >"$WORK/counts.jsonl"
      while kill -0 "$fpid" 2>/dev/null; do
        local t0 t1
        t0=$(date +%s%N)
        "${PIN_TOOL[@]}" "$DS" datapath --json --own-netns "${extra[@]}" --maps-dir "$WORK/fs" \
          --cilium-api /nonexistent.sock >"$WORK/snap.json"
        t1=$(date +%s%N)
        python3 - "$WORK/snap.json" "$t0" "$t1" >>"$WORK/counts.jsonl" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
m = [x for x in d["maps"] if x["name"] == "cilium_ct4_global"][0]
m["method"] = m["method"] if m["entries"] is not None else "none"
print(json.dumps({"entries": m["entries"], "method": m["method"], "count_ms": m["count_ms"],
                  "wall_ms": (int(sys.argv[3]) - int(sys.argv[2])) / 1e6}))
PY
      done
      wait "$fpid"
      ;;
  esac
  python3 - "$setup" "$round" "$WORK/flood.json" "$WORK/counts.jsonl" >>"$RAW" <<'PY'
import json, os, sys
setup, rnd, flood, counts = sys.argv[1:5]
f = json.load(open(flood))
c = [json.loads(l) for l in open(counts)] if setup != "baseline" and os.path.exists(counts) else []
print(json.dumps({"setup": setup, "round": int(rnd), "pps": f["pps"], "counts": c}))
PY
}

SETUPS=(baseline counter watch nocount walk spin)
for r in $(seq 1 "$ROUNDS"); do
  k=$(( (r - 1) % ${#SETUPS[@]} ))
  order=("${SETUPS[@]:$k}" "${SETUPS[@]:0:$k}")
  for s in "${order[@]}"; do
    run_setup "$s" "$r"
    log "round $r/$ROUNDS $s: $(tail -n1 "$RAW" | python3 -c 'import json,sys; d=json.load(sys.stdin); print("%.0f pps, %d counts" % (d["pps"], len(d["counts"])))')"
  done
done

mkdir -p "$(dirname "$OUT")"
python3 - "$RAW" "$OUT" "$ENTRIES" "$ROUNDS" "$DURATION" <<'PY'
import json, statistics as st, sys
raw, out, entries, rounds, dur = sys.argv[1:6]
rows = [json.loads(l) for l in open(raw)]
res = {"entries": int(entries), "rounds": int(rounds), "duration_s": float(dur), "setups": {}}
base = st.median(r["pps"] for r in rows if r["setup"] == "baseline")
print(f"| setup | sender pps median | min..max | vs baseline | counts | count ms median (max) | wall ms median (max) | entries seen |")
print("|---|---|---|---|---|---|---|---|")
for s in ["baseline", "counter", "watch", "nocount", "walk", "spin"]:
    rs = [r for r in rows if r["setup"] == s]
    p = [r["pps"] for r in rs]
    cs = [c for r in rs for c in r["counts"]]
    entry = {"pps": p, "pps_median": st.median(p), "ratio": st.median(p) / base,
             "counts": len(cs)}
    cm = wm = "-"
    seen = "-"
    if cs:
        ms = [c["count_ms"] for c in cs]; w = [c["wall_ms"] for c in cs]
        entry.update(count_ms_median=st.median(ms), count_ms_max=max(ms),
                     wall_ms_median=st.median(w), wall_ms_max=max(w),
                     entries_seen=sorted({c["entries"] for c in cs if c["entries"] is not None}),
                     methods=sorted({c["method"] for c in cs}))
        cm = f"{st.median(ms):.1f} ({max(ms):.1f})"; wm = f"{st.median(w):.0f} ({max(w):.0f})"
        seen = ",".join(str(x) for x in entry["entries_seen"])
        if s == "nocount":
            cm = "-"
    res["setups"][s] = entry
    print(f"| {s} | {st.median(p):,.0f} | {min(p):,.0f}..{max(p):,.0f} | {st.median(p)/base:.3f} | {len(cs)} | {cm} | {wm} | {seen} |")
json.dump(res, open(out, "w"), indent=1)
PY
log "raw numbers in $OUT"
