//! The well-known places on a node that several stages look at: Cilium's sockets and the
//! container runtimes' sockets. One table, so the doctor checks what the sources open.

/// The Cilium agent's REST API socket.
pub const CILIUM_API_SOCKET: &str = "/var/run/cilium/cilium.sock";

/// The container runtimes' CRI sockets, tried in this order: containerd, CRI-O, k3s.
pub const CRI_SOCKETS: [&str; 3] = [
    "/run/containerd/containerd.sock",
    "/var/run/crio/crio.sock",
    "/run/k3s/containerd/containerd.sock",
];

/// The Cilium agent's monitor socket (the gob stream of notifications).
pub const CILIUM_MONITOR_SOCKET: &str = "/var/run/cilium/monitor1_2.sock";
