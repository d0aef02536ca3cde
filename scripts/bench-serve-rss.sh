#!/usr/bin/env bash
# `dropscope serve`'s memory with many distinct flows: N UDP datagrams (default 1,000,000),
# each of its own flow (source port x destination port), are written as raw Ethernet frames
# on A's veth towards B's closed ports (B drops each: NO_SOCKET), paced at --rate per second
# so the kernel table (65,536 entries a generation) has room for every flow; serve's RSS
# (VmRSS) is sampled every second. Prints the RSS before, the peak, the heavy-hitter rows
# kept and folded, and checks that serve counted exactly N drops on B's interface.
#
# usage: sudo scripts/bench-serve-rss.sh [--flows N] [--rate R] [--max-flows M] [DROPSCOPE]
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
FLOWS=1000000
RATE=50000
MAXF=100000
BIN="$ROOT/target/release/dropscope"
while [ $# -gt 0 ]; do
  case "$1" in
    --flows) FLOWS="$2"; shift 2 ;;
    --rate) RATE="$2"; shift 2 ;;
    --max-flows) MAXF="$2"; shift 2 ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    -*) echo "bench-serve-rss: unknown option $1" >&2; exit 2 ;;
    *) BIN="$1"; shift ;;
  esac
done
die() { printf 'bench-serve-rss: ERROR: %s\n' "$*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || die "must run as root"
[ -x "$BIN" ] || die "$BIN is not an executable dropscope"
TAG="dsrs$(($$ % 100000))"
# shellcheck source=scripts/netns-pair.sh
. "$ROOT/scripts/netns-pair.sh"
WORK="$(mktemp -d)"
TOOL=""
cleanup() {
  [ -z "$TOOL" ] || { kill -KILL "$TOOL" 2>/dev/null; wait "$TOOL" 2>/dev/null; } || true
  netns_pair_del
  rm -rf "$WORK"
}
trap cleanup EXIT
netns_pair "$TAG" 81
PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
"$BIN" serve --listen "127.0.0.1:$PORT" --no-names --max-flows "$MAXF" --exemplars 0 \
  --session-dir "$WORK/sessions" >/dev/null 2>"$WORK/err" &
TOOL=$!
for _ in $(seq 200); do grep -q 'serving on' "$WORK/err" && break; sleep 0.05; done
sleep 1
rss() { awk '/^VmRSS:/ { print $2 }' "/proc/$TOOL/status"; }
RSS0="$(rss)"
MAC_B="$(ip -n "$NS_B" -o link show "$VETH_B" | grep -o 'link/ether [0-9a-f:]*' | cut -d' ' -f2)"
MAC_A="$(ip -n "$NS_A" -o link show "$VETH_A" | grep -o 'link/ether [0-9a-f:]*' | cut -d' ' -f2)"
ip netns exec "$NS_A" python3 - "$VETH_A" "$MAC_A" "$MAC_B" "$IP_A" "$IP_B" "$FLOWS" "$RATE" <<'PY' &
import socket, struct, sys, time
dev, ma, mb, ia, ib, n, rate = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], int(sys.argv[6]), int(sys.argv[7])
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((dev, 0))
mac = lambda m: bytes(int(x, 16) for x in m.split(':'))
eth = mac(mb) + mac(ma) + b'\x08\x00'
src, dst = socket.inet_aton(ia), socket.inet_aton(ib)
def csum(b):
    t = sum(struct.unpack('!%dH' % (len(b) // 2), b))
    t = (t >> 16) + (t & 0xffff); t += t >> 16
    return ~t & 0xffff
start = time.time()
for i in range(n):
    sport, dport = 1024 + i % 60000, 2000 + i // 60000
    udp = struct.pack('!HHHH', sport, dport, 8, 0)
    ip = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 28, i & 0xffff, 0, 64, 17, 0, src, dst)
    ip = ip[:10] + struct.pack('!H', csum(ip)) + ip[12:]
    s.send(eth + ip + udp)
    if i % 1000 == 999:
        ahead = (i + 1) / rate - (time.time() - start)
        if ahead > 0: time.sleep(ahead)
PY
SENDER=$!
PEAK="$RSS0"
while kill -0 "$SENDER" 2>/dev/null; do
  r="$(rss)"; [ "$r" -gt "$PEAK" ] && PEAK="$r"
  sleep 1
done
wait "$SENDER"
sleep 3
r="$(rss)"; [ "$r" -gt "$PEAK" ] && PEAK="$r"
IFACE="if$(ip netns exec "$NS_B" cat "/sys/class/net/$VETH_B/ifindex")@netns$(stat -L -c %i "/var/run/netns/$NS_B")"
curl -s "127.0.0.1:$PORT/metrics" >"$WORK/metrics"
got="$(grep "^dropscope_interface_drops_total{origin=\"kernel\",reason=\"NO_SOCKET\",interface=\"$IFACE\"" "$WORK/metrics" | awk '{print $2}')"
echo "### dropscope serve RSS with $FLOWS distinct flows ($RATE/s, --max-flows $MAXF)"
echo
echo "| RSS before | peak RSS | after | drops counted on B | flows tracked | heavy-hitter drops folded | table full |"
echo "|---:|---:|---:|---:|---:|---:|---:|"
echo "| $((RSS0 / 1024)) MiB | $((PEAK / 1024)) MiB | $(( $(rss) / 1024 )) MiB | ${got:-0} | $(awk '/^dropscope_flows_tracked /{print $2}' "$WORK/metrics") | $(awk '/^dropscope_flows_folded_drops_total/{s+=$2} END {print s+0}' "$WORK/metrics") | $(awk '/^dropscope_table_full_total/{s+=$2} END {print s+0}' "$WORK/metrics") |"
[ "${got:-0}" = "$FLOWS" ] || echo "MISMATCH: $FLOWS sent, ${got:-0} counted on $IFACE" >&2
