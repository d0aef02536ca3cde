-- dropscope.lua: Wireshark (4.0 and later) postdissector for dropscope's packet comments.
--
-- dropscope writes why each packet was dropped into the packet's comment (pcapng
-- opt_comment), one line, in one of two shapes:
--
--   kernel: NO_SOCKET (3) at __udp4_lib_rcv+0x5b4 [0xffffffff81b2c3d4] netns 4026531840
--           [ pod NS/NAME] [ pods SRC->DST] [ ← Cilium: REASON (CODE) identity A->B]
--   cilium: DROP Policy denied (133) identity 12345->678 ep 0 ifindex 3 bpf_lxc.c:1234
--           [ pod NS/NAME] [ pods SRC->DST] [ node NODE]
--
-- This plugin turns them into fields to filter on and show as columns:
--   dropscope.origin ("kernel" or "cilium"), dropscope.reason (the name, e.g. "NO_SOCKET"),
--   dropscope.code (the number), dropscope.family (the drop family the colouring rules of
--   the profile use), dropscope.location ("sym+0xoff" or the address), dropscope.address,
--   dropscope.netns, dropscope.ifindex (kernel drops: from the interface's description,
--   "ifindex N netns M"), dropscope.src_identity, dropscope.dst_identity,
--   dropscope.endpoint, dropscope.source (Cilium's file:line), dropscope.pod,
--   dropscope.namespace (the pod's), dropscope.src_pod, dropscope.dst_pod,
--   dropscope.cilium_reason / .cilium_code (a Cilium notification joined to a kernel drop).
--
--   tshark -X lua_script:dropscope.lua -r drops.pcapng -Y 'dropscope.reason == "NO_SOCKET"'
--
-- Install: copy this file to ~/.local/lib/wireshark/plugins/ (see README.md, "Wireshark").
-- Comments are any file's text: what does not parse is left alone (no fields).

local p = Proto("dropscope", "dropscope drop cause")

local f = {
  origin = ProtoField.string("dropscope.origin", "Origin"),
  reason = ProtoField.string("dropscope.reason", "Reason"),
  code = ProtoField.uint32("dropscope.code", "Reason code"),
  family = ProtoField.string("dropscope.family", "Drop family"),
  location = ProtoField.string("dropscope.location", "Drop location"),
  address = ProtoField.uint64("dropscope.address", "Drop address", base.HEX),
  netns = ProtoField.uint32("dropscope.netns", "Network namespace"),
  ifindex = ProtoField.uint32("dropscope.ifindex", "Interface index"),
  src_identity = ProtoField.uint32("dropscope.src_identity", "Source identity"),
  dst_identity = ProtoField.uint32("dropscope.dst_identity", "Destination identity"),
  endpoint = ProtoField.uint32("dropscope.endpoint", "Endpoint"),
  source = ProtoField.string("dropscope.source", "Datapath source"),
  pod = ProtoField.string("dropscope.pod", "Pod (where dropped)"),
  namespace = ProtoField.string("dropscope.namespace", "Pod namespace"),
  src_pod = ProtoField.string("dropscope.src_pod", "Source pod"),
  dst_pod = ProtoField.string("dropscope.dst_pod", "Destination pod"),
  node = ProtoField.string("dropscope.node", "Node"),
  cilium_reason = ProtoField.string("dropscope.cilium_reason", "Cilium reason (joined)"),
  cilium_code = ProtoField.uint32("dropscope.cilium_code", "Cilium code (joined)"),
}
p.fields = {
  f.origin, f.reason, f.code, f.family, f.location, f.address, f.netns, f.ifindex,
  f.src_identity, f.dst_identity, f.endpoint, f.source, f.pod, f.namespace, f.src_pod,
  f.dst_pod, f.node, f.cilium_reason, f.cilium_code,
}

local f_comment = Field.new("frame.comment")
local f_ifdesc = Field.new("frame.interface_description")

-- The drop family of a reason: what the profile's colouring rules key on.
local function family(origin, reason)
  if origin == "cilium" then
    if reason:find("[Pp]olicy") then return "policy" end
    return "cilium"
  end
  if reason:find("NETFILTER") or reason:find("IPTABLES") or reason:find("NFT") then
    return "netfilter"
  end
  if reason == "NO_SOCKET" or reason:find("^SOCKET") then return "socket" end
  if reason:find("^TCP") then return "tcp" end
  if reason:find("QDISC") or reason:find("FULL_RING") or reason:find("BACKLOG")
      or reason:find("NOMEM") or reason:find("CPU_BACKLOG") then
    return "congestion"
  end
  if reason:find("CSUM") or reason:find("HDR") or reason:find("TOO_SMALL")
      or reason:find("INHDR") or reason:find("INVALID") then
    return "malformed"
  end
  if reason:find("NEIGH") or reason:find("ROUTE") or reason:find("NOROUTE")
      or reason:find("HOST") then
    return "routing"
  end
  if reason == "NOT_SPECIFIED" then return "unspecified" end
  return "other"
end

-- Adds the pod members (pod, pods, node, joined Cilium cause) found in `rest`.
local function add_tail(t, rest)
  local pod = rest:match(" pod (%S+)")
  if pod then
    t:add(f.pod, pod)
    local ns = pod:match("^([^/]+)/")
    if ns then t:add(f.namespace, ns) end
  end
  local sp, dp = rest:match(" pods (%S+)%->(%S+)")
  if sp then
    if sp ~= "-" then t:add(f.src_pod, sp) end
    if dp ~= "-" then t:add(f.dst_pod, dp) end
  end
  local node = rest:match(" node (%S+)")
  if node then t:add(f.node, node) end
  local jr, jc, ja, jb = rest:match(" ← Cilium: (.-) %((%d+)%) identity (%d+)%->(%d+)")
  if jr then
    t:add(f.cilium_reason, jr)
    t:add(f.cilium_code, tonumber(jc))
    t:add(f.src_identity, tonumber(ja))
    t:add(f.dst_identity, tonumber(jb))
  end
end

local function dissect_comment(c, tree)
  -- Cilium: DROP REASON (CODE) identity A->B ep E ifindex I [FILE:LINE]
  local reason, code, a, b, ep, ifi, rest =
    c:match("^DROP (.-) %((%d+)%) identity (%d+)%->(%d+) ep (%d+) ifindex (%d+)(.*)$")
  if reason then
    local t = tree:add(p, "dropscope: " .. c)
    t:add(f.origin, "cilium")
    t:add(f.reason, reason)
    t:add(f.code, tonumber(code))
    t:add(f.family, family("cilium", reason))
    t:add(f.src_identity, tonumber(a))
    t:add(f.dst_identity, tonumber(b))
    t:add(f.endpoint, tonumber(ep))
    t:add(f.ifindex, tonumber(ifi))
    local src = rest:match("^ ([^%s]+:%d+)")
    if src then t:add(f.source, src) end
    add_tail(t, rest)
    return true
  end
  -- Kernel: REASON (CODE) [at LOCATION [ [ADDR] ]] netns N ...
  local kreason, kcode, krest = c:match("^([%w_]+) %((%d+)%)(.*)$")
  if not kreason then return false end
  local netns = krest:match(" netns (%d+)")
  if not netns then return false end
  local t = tree:add(p, "dropscope: " .. c)
  t:add(f.origin, "kernel")
  t:add(f.reason, kreason)
  t:add(f.code, tonumber(kcode))
  t:add(f.family, family("kernel", kreason))
  local loc = krest:match("^ at (%S+)")
  if loc then
    t:add(f.location, loc)
    local addr = krest:match("^ at %S+ %[0x(%x+)%]") or loc:match("^0x(%x+)$")
    if addr then t:add(f.address, UInt64.fromhex(addr)) end
  end
  t:add(f.netns, tonumber(netns))
  local desc = f_ifdesc()
  if desc then
    local i = tostring(desc.value):match("^ifindex (%d+)")
    if i then t:add(f.ifindex, tonumber(i)) end
  end
  add_tail(t, krest)
  return true
end

function p.dissector(tvb, pinfo, tree)
  local comments = { f_comment() }
  for _, fi in ipairs(comments) do
    local text = tostring(fi.value)
    -- One drop cause per packet: the first comment that is one.
    if dissect_comment(text, tree) then return end
  end
end

register_postdissector(p)
