# Sourced by the bench scripts: two network namespaces NS_A and NS_B joined by a veth pair
# (VETH_A, VETH_B), IPv4 only (no IPv6 chatter on the measured link), A = 10.X.Y.1 and
# B = 10.X.Y.2, loopback up, each side's MAC fixed in the other's neighbour table (no ARP
# during a flood). `netns_pair TAG Y` sets NS_A, NS_B, VETH_A, VETH_B, IP_A, IP_B;
# `netns_pair_del` removes them (call it from the script's cleanup); `udp_noports` prints
# B's `Udp: NoPorts` counter.
netns_pair() { # TAG Y
  local tag="$1" y="$2" x=$(($$ % 200 + 20)) ns mac_a mac_b
  NS_A="${tag}a"; NS_B="${tag}b"; VETH_A="${tag}va"; VETH_B="${tag}vb"
  IP_A="10.$x.$y.1"; IP_B="10.$x.$y.2"
  ip netns add "$NS_A"; ip netns add "$NS_B"
  ip link add "$VETH_A" netns "$NS_A" type veth peer name "$VETH_B" netns "$NS_B"
  for ns in "$NS_A" "$NS_B"; do
    ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
    ip -n "$ns" link set lo up
  done
  ip -n "$NS_A" addr add "$IP_A/24" dev "$VETH_A"
  ip -n "$NS_B" addr add "$IP_B/24" dev "$VETH_B"
  ip -n "$NS_A" link set "$VETH_A" up
  ip -n "$NS_B" link set "$VETH_B" up
  mac_a="$(ip -n "$NS_A" -o link show "$VETH_A" | grep -o 'link/ether [0-9a-f:]*' | cut -d' ' -f2)"
  mac_b="$(ip -n "$NS_B" -o link show "$VETH_B" | grep -o 'link/ether [0-9a-f:]*' | cut -d' ' -f2)"
  ip -n "$NS_A" neigh replace "$IP_B" lladdr "$mac_b" dev "$VETH_A"
  ip -n "$NS_B" neigh replace "$IP_A" lladdr "$mac_a" dev "$VETH_B"
}
netns_pair_del() {
  [ -z "${NS_A:-}" ] || ip netns del "$NS_A" 2>/dev/null || true
  [ -z "${NS_B:-}" ] || ip netns del "$NS_B" 2>/dev/null || true
}
udp_noports() {
  ip netns exec "$NS_B" awk '/^Udp:/ { if (!h) { for (i = 1; i <= NF; i++) c[$i] = i; h = 1 } else print $c["NoPorts"] }' /proc/net/snmp
}
