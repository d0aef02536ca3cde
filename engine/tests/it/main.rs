//! The engine's integration tests, in one binary: the kernel ABI, live kernel capture in
//! namespaces of their own, and the Cilium socket against Go's encoding/gob.

mod cilium_socket_go;
mod ebpf_abi;
mod kernel_live;
mod layering;
