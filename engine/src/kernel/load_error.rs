//! What can go wrong loading and attaching a program, in one clear line each, and the
//! running kernel's version (which decides what to try).

use std::{error::Error as StdError, io};

use aya::{programs::ProgramError, EbpfError};

use super::btf::{BtfError, VMLINUX_BTF};

const PERMISSION_HINT: &str = "loading the eBPF program needs CAP_BPF and CAP_PERFMON \
(or CAP_SYS_ADMIN on kernels before 5.8); run as root or grant them";

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("this build has no eBPF object; rebuild without AYA_BUILD_SKIP")]
    NoObject,
    #[error("{VMLINUX_BTF} is missing or unreadable ({source}); dropscope needs a kernel built with CONFIG_DEBUG_INFO_BTF=y")]
    NoBtf { source: BtfError },
    #[error("the kernel's BTF lacks {what}: {source}")]
    Layout {
        what: &'static str,
        source: BtfError,
    },
    #[error("{PERMISSION_HINT}")]
    Permission,
    #[error("the kernel verifier rejected {program} ({errno}): {log_tail}")]
    Verifier {
        program: &'static str,
        errno: String,
        log_tail: String,
    },
    #[error("tracefs is not mounted, the kfree_skb tracepoint fallback needs it: run `mount -t tracefs nodev /sys/kernel/tracing` (and load from the host network namespace: `ip netns exec` hides tracefs)")]
    TracefsMissing,
    #[error("cannot use {path}: {reason}")]
    TracepointFormat { path: String, reason: String },
    #[error("{step} failed: {message}")]
    Ebpf { step: &'static str, message: String },
    #[error("the kernel program publishes ring records with x86-64 store ordering; this is {arch}, which needs a BPF store-release dropscope does not emit yet: run dropscope on x86-64")]
    Architecture { arch: &'static str },
}

/// The running kernel's (major, minor) version, from uname.
pub fn kernel_release() -> Option<(u32, u32)> {
    // SAFETY: uname fills the struct we pass; a zeroed utsname is a valid argument.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::uname(&mut u) } != 0 {
        return None;
    }
    let bytes: Vec<u8> = u
        .release
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    parse_release(&String::from_utf8_lossy(&bytes))
}

/// "6.18.0-13-amd64" -> (6, 18).
pub fn parse_release(r: &str) -> Option<(u32, u32)> {
    let mut it = r.split(|c: char| !c.is_ascii_digit());
    let major = it.next()?.parse().ok()?;
    let minor = it.next()?.parse().ok()?;
    Some((major, minor))
}

/// Turns an aya error into one clear line.
pub(crate) fn classify(
    step: &'static str,
    program: &'static str,
    e: &(dyn StdError + 'static),
) -> LoadError {
    // A verifier rejection carries the log; EPERM anywhere in the chain is privileges.
    let mut cur: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(ProgramError::LoadError {
            io_error,
            verifier_log,
        }) = err.downcast_ref::<ProgramError>()
        {
            if io_error.raw_os_error() == Some(libc::EPERM) {
                return LoadError::Permission;
            }
            return LoadError::Verifier {
                program,
                errno: io_error.to_string(),
                log_tail: log_tail(&verifier_log.to_string(), 6),
            };
        }
        if let Some(EbpfError::ProgramError(ProgramError::LoadError {
            io_error,
            verifier_log,
        })) = err.downcast_ref::<EbpfError>()
        {
            if io_error.raw_os_error() == Some(libc::EPERM) {
                return LoadError::Permission;
            }
            return LoadError::Verifier {
                program,
                errno: io_error.to_string(),
                log_tail: log_tail(&verifier_log.to_string(), 6),
            };
        }
        if let Some(io) = err.downcast_ref::<io::Error>() {
            if io.raw_os_error() == Some(libc::EPERM) {
                return LoadError::Permission;
            }
        }
        cur = err.source();
    }
    LoadError::Ebpf {
        step,
        message: one_line(&chain(e)),
    }
}

fn chain(e: &(dyn StdError + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(err) = cur {
        let msg = err.to_string();
        if !s.contains(&msg) {
            s.push_str(": ");
            s.push_str(&msg);
        }
        cur = err.source();
    }
    s
}

/// The last `n` non-empty lines of a verifier log, joined with " | ".
pub fn log_tail(log: &str, n: usize) -> String {
    let lines: Vec<&str> = log
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let start = lines.len().saturating_sub(n);
    let tail = lines.get(start..).unwrap_or_default().join(" | ");
    if tail.is_empty() {
        "no verifier log".to_string()
    } else {
        tail
    }
}

pub(crate) fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}
