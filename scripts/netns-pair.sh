# Sourced by the bench scripts: two network namespaces NS_A and NS_B joined by a veth pair,
# IPv4 only, A = 10.X.Y.1 and B = 10.X.Y.2 with B's MAC fixed in A's neighbour table (no ARP
# during a flood). `netns_pair TAG Y` sets NS_A, NS_B, IP_A, IP_B; `netns_pair_del` removes
# them (call it from the script's cleanup).
netns_pair() { # TAG Y
  local tag="$1" y="$2" x=$(($$ % 200 + 20)) ns mac
  NS_A="${tag}a"; NS_B="${tag}b"; IP_A="10.$x.$y.1"; IP_B="10.$x.$y.2"
  ip netns add "$NS_A"; ip netns add "$NS_B"
  ip link add "${tag}va" netns "$NS_A" type veth peer name "${tag}vb" netns "$NS_B"
  for ns in "$NS_A" "$NS_B"; do
    ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
  done
  ip -n "$NS_A" addr add "$IP_A/24" dev "${tag}va"
  ip -n "$NS_B" addr add "$IP_B/24" dev "${tag}vb"
  ip -n "$NS_A" link set "${tag}va" up
  ip -n "$NS_B" link set "${tag}vb" up
  mac="$(ip -n "$NS_B" -o link show "${tag}vb" | grep -o 'link/ether [0-9a-f:]*' | cut -d' ' -f2)"
  ip -n "$NS_A" neigh replace "$IP_B" lladdr "$mac" dev "${tag}va"
}
netns_pair_del() {
  [ -z "${NS_A:-}" ] || ip netns del "$NS_A" 2>/dev/null || true
  [ -z "${NS_B:-}" ] || ip netns del "$NS_B" 2>/dev/null || true
}
