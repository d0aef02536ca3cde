//! How the process takes memory from the kernel.
//!
//! mimalloc asks for transparent huge pages on all of its memory, and each thread's heap
//! starts in a 2 MiB region of its own: `dropscope replay` of a 1,000-line input touched
//! 17 MB with huge pages and 2.7 MB with 4 KiB pages (its 9 threads). On a VM whose host
//! backs guest memory only when it is first touched, each of those regions is a 2 MiB page
//! zeroed and faulted in; text replays of 200,000 records took a quarter less time with
//! 4 KiB pages after memory had been idle for a second (README "Speed"), and no less with
//! memory just freed. The binaries turn huge pages off for themselves as they load.

/// Turns transparent huge pages off for the calling process (`PR_SET_THP_DISABLE`) unless
/// the environment has `DROPSCOPE_THP=1`. For a binary's load-time constructor
/// (`.init_array`): it runs before the Rust runtime's first allocation.
pub extern "C" fn no_huge_pages_unless_asked() {
    // SAFETY: getenv reads the environment with a NUL-terminated name (in a load-time
    // constructor nothing else runs yet); the pointer it returns is read at once, as a
    // NUL-terminated string, before anything can change the environment.
    let keep = unsafe {
        let v = libc::getenv(c"DROPSCOPE_THP".as_ptr());
        !v.is_null() && std::ffi::CStr::from_ptr(v).to_bytes() == b"1"
    };
    if keep {
        return;
    }
    // SAFETY: PR_SET_THP_DISABLE takes integers only and touches none of our memory.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}
