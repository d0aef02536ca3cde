#!/usr/bin/env bash
# `dropscope capture --packets -i IF -w FILE` against `tcpdump -i IF -w FILE` on the same UDP
# flood, in the same run: setups interleaved round by round (none, tcpdump, dropscope), so
# the noisy host's drift hits all of them alike; medians and spread at the end.
#
# The flood (udpflood, one CPU) goes from namespace A to a closed port in namespace B over
# a veth pair made here; both tools capture A's interface (every datagram passes it once,
# outbound) and run on the other CPU. B drops every datagram (NO_SOCKET): dropscope's
# kfree_skb program sees those drops too and turns them away in the kernel (they are not on
# the captured interface), so its cost of watching drops is in the figures.
#
# Per round and setup: the sender's rate (datagrams/s the kernel accepted), datagrams sent,
# packets the tool wrote (its own count, checked with capinfos), and what it says it lost
# (tcpdump: "dropped by kernel"; dropscope: the packet rows' lost in ring).
#
# usage: sudo scripts/bench-packets.sh [--rounds R] [--duration D] [--dropscope PATH] [--snaplen N]
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
ROUNDS=8
DURATION=2
DROPSCOPE="$ROOT/target/release/dropscope"
SNAPLEN=256
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) ROUNDS="$2"; shift 2 ;;
    --duration) DURATION="$2"; shift 2 ;;
    --dropscope) DROPSCOPE="$2"; shift 2 ;;
    --snaplen) SNAPLEN="$2"; shift 2 ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "bench-packets: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
die() { printf 'bench-packets: ERROR: %s\n' "$*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || die "must run as root (namespaces, eBPF, tcpdump)"
[[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || die "--rounds must be a positive integer"
[[ "$DURATION" =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "--duration must be a number of seconds"
[ "$(nproc)" -ge 2 ] || die "needs 2 CPUs (flood on CPU 0, tool on CPU 1)"
for t in tcpdump capinfos python3; do command -v "$t" >/dev/null || die "$t not found"; done
[ -x "$DROPSCOPE" ] || die "$DROPSCOPE is not an executable dropscope (cargo build --release -p dropscope)"
(cd "$ROOT" && cargo build --release -q -p dropscope-benches --bin udpflood) || die "building udpflood failed"
UDPFLOOD="$ROOT/target/release/udpflood"
mountpoint -q /sys/kernel/tracing 2>/dev/null || mount -t tracefs nodev /sys/kernel/tracing 2>/dev/null || true

TAG="dspk$(($$ % 100000))"
# shellcheck source=scripts/netns-pair.sh
. "$ROOT/scripts/netns-pair.sh"
WORK="$(mktemp -d -p /var/tmp)"
TOOL=""
cleanup() {
  [ -z "$TOOL" ] || { kill -KILL "$TOOL" 2>/dev/null; wait "$TOOL" 2>/dev/null; } || true
  netns_pair_del
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
netns_pair "$TAG" 79

flood() { # -> JSON on stdout
  nice -n -10 taskset -c 0 "$UDPFLOOD" --netns "$NS_A" --src "$IP_A" --dst "$IP_B:9" \
    --sports 40000,40001,40002,40003 --size 64 --batch 64 --duration "$DURATION"
}

SETUPS=(none tcpdump dropscope)
for r in $(seq 1 "$ROUNDS"); do
  for s in "${SETUPS[@]}"; do
    out="$WORK/$s.pcap"
    [ "$s" = dropscope ] && out="$WORK/$s.pcapng"
    rm -f "$out"
    case "$s" in
      none) ;;
      tcpdump)
        nice -n -10 taskset -c 1 ip netns exec "$NS_A" tcpdump -i "$VETH_A" -s "$SNAPLEN" -w "$out" \
          >/dev/null 2>"$WORK/err" &
        TOOL=$! ;;
      dropscope)
        nice -n -10 taskset -c 1 "$DROPSCOPE" capture --packets -i "$VETH_A@$NS_A" -s "$SNAPLEN" -w "$out" \
          >/dev/null 2>"$WORK/err" &
        TOOL=$! ;;
    esac
    if [ -n "$TOOL" ]; then
      for _ in $(seq 200); do
        grep -q 'listening on\|capturing drops' "$WORK/err" 2>/dev/null && break
        kill -0 "$TOOL" 2>/dev/null || die "$s exited early: $(cat "$WORK/err")"
        sleep 0.05
      done
      sleep 0.3
    fi
    fl="$(flood)"
    written="-"; lost="-"
    if [ -n "$TOOL" ]; then
      sleep 0.3
      kill -INT "$TOOL" 2>/dev/null || true
      wait "$TOOL" 2>/dev/null || true
      TOOL=""
      file_pkts="$(capinfos -c -M "$out" 2>/dev/null | awk -F: '/Number of packets/ { gsub(/ /, "", $2); print $2 }')"
      if [ "$s" = tcpdump ]; then
        written="$(awk '/packets captured/ { print $1 }' "$WORK/err")"
        lost="$(awk '/dropped by kernel/ { print $1 }' "$WORK/err")"
      else
        written="$(awk '/packets written to/ { print $1 }' "$WORK/err")"
        lost="$(grep -o 'packets: reconciled over [0-9]* interface directions: [0-9]* seen = [0-9]* filtered + [0-9]* lost' "$WORK/err" | awk '{ print $(NF-1) }')"
      fi
      # dropscope's file ends with a custom block, which capinfos does not count as a packet.
      [ "$written" = "$file_pkts" ] || die "$s says $written packets written, capinfos counts $file_pkts"
    fi
    sent="$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["sent"])' "$fl")"
    pps="$(python3 -c 'import json,sys; print("%.0f" % json.loads(sys.argv[1])["pps"])' "$fl")"
    echo "$s $pps $sent ${written:--} ${lost:--}" >>"$WORK/results"
    printf 'bench-packets: round %d %-9s: %s pps, %s sent, %s written, %s lost\n' "$r" "$s" "$pps" "$sent" "$written" "$lost" >&2
    rm -f "$out"
  done
done

python3 - "$WORK/results" "$DURATION" "$SNAPLEN" <<'EOF'
import statistics, sys
path, duration, snaplen = sys.argv[1], sys.argv[2], sys.argv[3]
rows = {}
for line in open(path):
    s, pps, sent, written, lost = line.split()
    rows.setdefault(s, []).append((float(pps), int(sent), written, lost))
print(f"### --packets vs tcpdump: UDP flood (64-byte payload, {duration} s per round, snaplen {snaplen}), medians over {len(rows['none'])} rounds\n")
print("| setup | sender pps (median) | min..max | vs none | written/sent (median) | rounds with loss | lost (total) |")
print("|---|---:|---|---:|---:|---:|---:|")
base = statistics.median(p for p, *_ in rows["none"])
for s in ("none", "tcpdump", "dropscope"):
    xs = rows.get(s, [])
    pps = [p for p, *_ in xs]
    med = statistics.median(pps)
    if s == "none":
        ratio, lossy, total = "-", "-", "-"
    else:
        ratio = f"{statistics.median(int(w) / n for _, n, w, _ in xs):.4f}"
        lossy = sum(1 for *_, l in xs if l not in ("-", "0"))
        total = sum(int(l) for *_, l in xs if l != "-")
    print(f"| {s} | {med:,.0f} | {min(pps):,.0f}..{max(pps):,.0f} | {med / base:.3f} | {ratio} | {lossy} | {total} |")
t = statistics.median(p for p, *_ in rows["tcpdump"])
d = statistics.median(p for p, *_ in rows["dropscope"])
print(f"\ndropscope / tcpdump sender rate (medians): {d / t:.3f}")
EOF
