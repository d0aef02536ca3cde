#!/usr/bin/env bash
# Storm then soak (root): one dropscope capture in storm mode watches
#   1. a flood at this machine's maximum drop rate from both CPUs (udpflood on CPU 0 and on
#      CPU 1, 4 flows each, into a closed port between two namespaces made here), FLOOD s;
#   2. then a soak of SOAK s: every second 2,000 drops spread over 200 new flows (a fresh
#      set of source ports each minute), so the kernel table keeps switching generations
#      with new keys while little else happens.
# dropscope's RSS is sampled every 5 s. At the end every flow's count in the kernel table
# (stats JSON storm.flows) is compared with what udpflood says the kernel accepted for it,
# and B's Udp NoPorts delta with the total.
#
# usage: sudo scripts/bench-soak.sh [--flood SECS] [--soak SECS] [--dropscope PATH] [-- CAPTURE FLAGS]
#   default: --flood 60 --soak 600, flags --exemplars 4
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
FLOOD=60
SOAK=600
DROPSCOPE="$ROOT/target/release/dropscope"
FLAGS=(--exemplars 4)
while [ $# -gt 0 ]; do
  case "$1" in
    --flood) FLOOD="$2"; shift 2 ;;
    --soak) SOAK="$2"; shift 2 ;;
    --dropscope) DROPSCOPE="$2"; shift 2 ;;
    --) shift; FLAGS=("$@"); break ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "bench-soak: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
die() { printf 'bench-soak: ERROR: %s\n' "$*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || die "must run as root (namespaces, eBPF)"
[ -x "$DROPSCOPE" ] || die "$DROPSCOPE is not executable (cargo build --release -p dropscope)"
(cd "$ROOT" && cargo build --release -q -p dropscope-benches --bin udpflood) || die "building udpflood failed"
UDPFLOOD="$ROOT/target/release/udpflood"

TAG="dssk$(($$ % 100000))"
# shellcheck source=scripts/netns-pair.sh
. "$ROOT/scripts/netns-pair.sh"
WORK="$(mktemp -d)"
DS=""
cleanup() {
  [ -z "$DS" ] || { kill -KILL "$DS" 2>/dev/null; wait "$DS" 2>/dev/null; } || true
  netns_pair_del
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
netns_pair "$TAG" 79

BEFORE="$(udp_noports)"
"$DROPSCOPE" capture -q --stats-json "$WORK/s.json" "${FLAGS[@]}" >/dev/null 2>"$WORK/err" &
DS=$!
for _ in $(seq 100); do grep -q capturing "$WORK/err" 2>/dev/null && break; sleep 0.1; done
grep -q capturing "$WORK/err" || die "dropscope did not start: $(cat "$WORK/err")"
rss() { awk '/^VmRSS:/ { print $2 }' "/proc/$DS/status"; }
T0=$(date +%s)
( while kill -0 "$DS" 2>/dev/null; do echo "$(( $(date +%s) - T0 )) $(rss)"; sleep 5; done ) >"$WORK/rss" 2>/dev/null &
SAMPLER=$!

flood() { # CPU SPORTS SECS -> JSON
  taskset -c "$1" "$UDPFLOOD" --netns "$NS_A" --src "$IP_A" --dst "$IP_B:9" \
    --sports "$2" --size 16 --batch 64 --duration "$3"
}
echo "bench-soak: flood ${FLOOD}s from 2 CPUs" >&2
flood 0 40100,40101,40102,40103 "$FLOOD" >"$WORK/f0.json" &
F0=$!
flood 1 40200,40201,40202,40203 "$FLOOD" >"$WORK/f1.json"
wait "$F0"
echo "bench-soak: soak ${SOAK}s: 2000 drops/s over 200 flows, new ports each minute" >&2
END=$(( $(date +%s) + SOAK ))
i=0
while [ "$(date +%s)" -lt "$END" ]; do
  base=$(( 41000 + (i / 60 % 100) * 200 ))
  ports="$(seq -s, "$base" $(( base + 199 )))"
  taskset -c $(( i % 2 )) "$UDPFLOOD" --netns "$NS_A" --src "$IP_A" --dst "$IP_B:9" \
    --sports "$ports" --size 16 --batch 10 --count 2000 >>"$WORK/soak.jsonl"
  i=$(( i + 1 ))
  sleep 1
done
sleep 2
kill -INT "$DS"; wait "$DS" || die "dropscope failed: $(tail -3 "$WORK/err")"
DS=""
kill "$SAMPLER" 2>/dev/null || true
AFTER="$(udp_noports)"

python3 - "$WORK" "$BEFORE" "$AFTER" "$IP_A" "$IP_B" <<'EOF'
import json, sys, collections
work, before, after, src, dst = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
sent = collections.Counter()
flood = collections.Counter()
for f in ("f0.json", "f1.json"):
    j = json.load(open(f"{work}/{f}"))
    for fl in j["flows"]:
        sent[fl["sport"]] += fl["sent"]; flood[fl["sport"]] += fl["sent"]
for line in open(f"{work}/soak.jsonl"):
    for fl in json.loads(line)["flows"]:
        sent[fl["sport"]] += fl["sent"]
s = json.load(open(f"{work}/s.json"))
got = collections.Counter()
for r in s["storm"]["flows"]:
    if r.get("src") == src and r.get("dst") == dst and r.get("dport") == 9:
        got[r["sport"]] += r["packets"]
total = sum(sent.values())
wrong = {p: (sent[p], got[p]) for p in set(sent) | set(got) if sent[p] != got[p]}
rss = [tuple(map(int, l.split())) for l in open(f"{work}/rss") if len(l.split()) == 2]
print("### storm then soak\n")
print(f"- flood: {sum(flood.values()):,} drops in the flood ({len(flood)} flows), {total:,} in all over {len(sent)} flows")
print(f"- kernel NoPorts delta {after - before:,} vs sent {total:,}: {'equal' if after - before == total else 'DIFFERENT'}")
print(f"- flows whose kernel-table count differs from sent: {len(wrong)} {dict(list(wrong.items())[:5])}")
print(f"- reconciled: {s['accounting']['reconciled']}, generations {s['storm']['table']['generations']}, rows {s['storm']['table']['rows']}")
if rss:
    print(f"- RSS (KiB) at t=5s {rss[0][1]}, after the flood {min(rss, key=lambda r: abs(r[0]-65))[1]}, max {max(r[1] for r in rss)}, last {rss[-1][1]} over {rss[-1][0]} s")
    print("- RSS samples (s:KiB): " + " ".join(f"{t}:{k}" for t, k in rss[::6]))
ok = after - before == total and not wrong and s["accounting"]["reconciled"]
sys.exit(0 if ok else 1)
EOF
