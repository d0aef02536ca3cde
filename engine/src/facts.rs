//! What a run was asked to do and where it ran: the `run` member of the stats JSON (the
//! capture facts `dropscope report` shows). Set by the command after the run.

use serde::Serialize;

/// The command, its input, its filters and the host it ran on.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RunFacts {
    /// `capture` or `replay` (empty when not set).
    pub command: String,
    /// Sources (capture) or the file read (replay).
    pub input: String,
    /// The tcpdump filter expression, when one was given.
    pub expression: Option<String>,
    /// The selectors as given on the command line (`--reason NO_SOCKET`, `-i eth0`, ...).
    pub selectors: Vec<String>,
    /// `uname -r` of the host dropscope ran on (for a replay: where the file was read).
    pub kernel: String,
    /// `uname -n` of that host.
    pub hostname: String,
}

impl RunFacts {
    /// Facts of a run of `command` on this host.
    pub fn here(command: &str, input: String) -> RunFacts {
        let (kernel, hostname) = uname();
        RunFacts {
            command: command.into(),
            input,
            kernel,
            hostname,
            ..RunFacts::default()
        }
    }
}

/// (release, nodename) of the running kernel.
fn uname() -> (String, String) {
    // SAFETY: utsname is plain bytes; uname fills it or fails.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: a valid pointer to a utsname.
    if unsafe { libc::uname(&mut u) } != 0 {
        return (String::new(), String::new());
    }
    let text = |f: &[libc::c_char]| -> String {
        let bytes: Vec<u8> = f
            .iter()
            .take_while(|c| **c != 0)
            .map(|c| *c as u8)
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    };
    (text(&u.release), text(&u.nodename))
}
