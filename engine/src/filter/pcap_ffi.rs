//! tcpdump filter expressions compiled by libpcap's own compiler (`pcap_compile`), through
//! a minimal FFI: no crate beyond libc, linked against the system's `libpcap.so`.
//!
//! Must never: call into libpcap's compiler from two threads at once (older libpcaps keep
//! compiler state in globals; a process-wide mutex serialises every compile), leak the
//! `pcap_t` or the compiled program on any path, or read the program past `bf_len`.

use std::ffi::{c_char, c_int, c_uint, CStr, CString};
use std::sync::Mutex;

pub use super::cbpf::BpfInsn;
use super::FilterError;

/// Ethernet link type (`DLT_EN10MB`).
pub const DLT_EN10MB: u32 = 1;
/// Raw IPv4/IPv6 link type as `pcap_open_dead` takes it on Linux (`DLT_RAW` is 12 there;
/// 101 is `LINKTYPE_RAW`, its value in capture files, which libpcap maps to 12).
pub const DLT_RAW: u32 = 12;
/// tcpdump's default snap length, which `pcap_compile` uses for "accept" returns.
pub const SNAPLEN: c_int = 262_144;
const PCAP_NETMASK_UNKNOWN: u32 = 0xffff_ffff;

#[repr(C)]
struct PcapT {
    _private: [u8; 0],
}

#[repr(C)]
struct BpfProgram {
    bf_len: c_uint,
    bf_insns: *mut BpfInsn,
}

#[link(name = "pcap")]
extern "C" {
    fn pcap_open_dead(linktype: c_int, snaplen: c_int) -> *mut PcapT;
    fn pcap_compile(
        p: *mut PcapT,
        fp: *mut BpfProgram,
        expr: *const c_char,
        optimize: c_int,
        netmask: u32,
    ) -> c_int;
    fn pcap_geterr(p: *mut PcapT) -> *mut c_char;
    fn pcap_freecode(fp: *mut BpfProgram);
    fn pcap_close(p: *mut PcapT);
    fn bpf_filter(pc: *const BpfInsn, pkt: *const u8, wirelen: c_uint, buflen: c_uint) -> c_uint;
}

static COMPILE_LOCK: Mutex<()> = Mutex::new(());

/// Closes the `pcap_t` on every path.
struct Dead(*mut PcapT);

impl Drop for Dead {
    fn drop(&mut self) {
        // SAFETY: the pointer came from pcap_open_dead, is non-null and is closed only here.
        unsafe { pcap_close(self.0) }
    }
}

/// One line: control characters (libpcap's messages may end in a newline) become spaces.
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_string()
}

/// Compiles a tcpdump filter expression for link type `dlt` ([`DLT_EN10MB`] or [`DLT_RAW`])
/// with libpcap, optimised, netmask unknown, tcpdump's snap length. The result is not yet
/// validated (see [`super::Program::new`]).
pub fn compile(expr: &str, dlt: u32) -> Result<Vec<BpfInsn>, FilterError> {
    let bad = |msg: String| FilterError::Compile {
        expr: expr.to_string(),
        msg: one_line(&msg),
    };
    let cexpr = CString::new(expr).map_err(|_| bad("expression holds a NUL byte".into()))?;
    let linktype =
        c_int::try_from(dlt).map_err(|_| bad(format!("link type {dlt} out of range")))?;
    // A poisoned lock only means another compile panicked; libpcap's state is still sound.
    let _guard = COMPILE_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    // SAFETY: plain FFI call with integer arguments.
    let p = unsafe { pcap_open_dead(linktype, SNAPLEN) };
    if p.is_null() {
        return Err(bad(format!("pcap_open_dead({dlt}) failed")));
    }
    let dead = Dead(p);
    let mut prog = BpfProgram {
        bf_len: 0,
        bf_insns: std::ptr::null_mut(),
    };
    // SAFETY: `dead.0` is a live pcap_t, `prog` is a writable bpf_program and `cexpr` a
    // NUL-terminated string that outlives the call.
    let rc = unsafe { pcap_compile(dead.0, &mut prog, cexpr.as_ptr(), 1, PCAP_NETMASK_UNKNOWN) };
    if rc != 0 {
        // SAFETY: pcap_geterr returns the pcap_t's NUL-terminated error buffer, valid until
        // the next call on it; we copy it out at once.
        let msg = unsafe {
            let e = pcap_geterr(dead.0);
            if e.is_null() {
                "unknown error".to_string()
            } else {
                CStr::from_ptr(e).to_string_lossy().into_owned()
            }
        };
        return Err(bad(msg));
    }
    let insns = if prog.bf_insns.is_null() {
        Vec::new()
    } else {
        // SAFETY: on success libpcap hands back bf_len instructions at bf_insns, which stay
        // valid until pcap_freecode below; BpfInsn has struct bpf_insn's layout.
        unsafe { std::slice::from_raw_parts(prog.bf_insns, prog.bf_len as usize).to_vec() }
    };
    // SAFETY: frees what pcap_compile allocated into `prog`, exactly once.
    unsafe { pcap_freecode(&mut prog) };
    Ok(insns)
}

/// libpcap's own interpreter, `bpf_filter()`: the reference for classic semantics, used by
/// tests. `insns` must have passed [`super::Program::new`] (libpcap aborts on an unknown
/// opcode and trusts jump targets).
#[doc(hidden)]
pub fn libpcap_run(prog: &super::Program, pkt: &[u8], wirelen: u32) -> u32 {
    let Ok(buflen) = c_uint::try_from(pkt.len()) else {
        return 0;
    };
    // SAFETY: the program is validated (known opcodes, in-range forward jumps, ends with a
    // return, M[] indices < 16), and libpcap reads at most `buflen` bytes of `pkt`.
    unsafe { bpf_filter(prog.insns().as_ptr(), pkt.as_ptr(), wirelen, buflen) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_ffi_compiles_and_reports_errors() {
        let p = compile("tcp", DLT_EN10MB).expect("tcp compiles");
        // ldh [12]; jeq #0x86dd ...: tcpdump -d tcp starts by loading the ethertype.
        assert_eq!(p[0], BpfInsn::new(0x28, 0, 0, 12));
        assert_eq!(p.last().map(|i| i.code), Some(0x06));
        let raw = compile("tcp", DLT_RAW).expect("tcp compiles for raw IP");
        // Raw IP starts from the version nibble at offset 0.
        assert_eq!(raw[0], BpfInsn::new(0x30, 0, 0, 0));
        let e = compile("tcp port foo", DLT_EN10MB).unwrap_err().to_string();
        assert!(
            e.starts_with("bad filter expression \"tcp port foo\": libpcap: "),
            "{e}"
        );
        assert!(e.contains("foo"), "{e}");
        assert!(!e.contains('\n'));
        let e = compile("tcp and (", DLT_RAW).unwrap_err().to_string();
        assert!(e.contains("syntax error"), "{e}");
        let e = compile("a\0b", DLT_RAW).unwrap_err().to_string();
        assert!(e.contains("NUL"), "{e}");
        // Empty expression: libpcap accepts everything (ret #snaplen).
        assert_eq!(
            compile("", DLT_RAW).unwrap(),
            vec![BpfInsn::new(0x06, 0, 0, 262_144)]
        );
    }
}
