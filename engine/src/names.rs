//! Names for numbers: interface names by ifindex, the inode of our own network namespace.
//!
//! Interface indexes are per network namespace; only those of the namespace dropscope runs
//! in can be named. Others are shown as `if<N>@netns<inode>` so they stay distinct.
//! Must never fail a capture: every lookup falls back to a number.

use std::collections::HashMap;
use std::sync::Mutex;

/// Inode of the network namespace this process runs in (0 if it cannot be read).
pub fn own_netns_inode() -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self/ns/net")
        .map(|m| m.ino() as u32)
        .unwrap_or(0)
}

/// Caches interface names of our own namespace, read from /sys/class/net.
#[derive(Debug)]
pub struct IfNames {
    own_netns: u32,
    cache: Mutex<HashMap<u32, Option<String>>>,
    /// Names the user gave for interfaces of other namespaces (`-i veth0@ns1`).
    known: Mutex<HashMap<(u32, u32), String>>,
}

impl Default for IfNames {
    fn default() -> Self {
        Self::new()
    }
}

impl IfNames {
    pub fn new() -> Self {
        IfNames {
            own_netns: own_netns_inode(),
            cache: Mutex::new(HashMap::new()),
            known: Mutex::new(HashMap::new()),
        }
    }

    /// A namer that never looks at this machine (for replaying files from elsewhere).
    pub fn offline() -> Self {
        IfNames {
            own_netns: u32::MAX,
            cache: Mutex::new(HashMap::new()),
            known: Mutex::new(HashMap::new()),
        }
    }

    pub fn own_netns(&self) -> u32 {
        self.own_netns
    }

    /// The interface's name if it lives in our namespace (netns 0 = unknown = assume ours).
    pub fn lookup(&self, ifindex: u32, netns: u32) -> Option<String> {
        if ifindex == 0 || (netns != 0 && netns != self.own_netns) {
            return None;
        }
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache
            .entry(ifindex)
            .or_insert_with(|| read_ifname(ifindex))
            .clone()
    }

    /// Names (ifindex, netns) `label` (e.g. `veth0@ns1`, as the user named it).
    pub fn remember(&self, ifindex: u32, netns: u32, label: String) {
        self.known
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert((ifindex, netns), label);
    }

    /// A display name that is always unique for (ifindex, netns).
    pub fn display(&self, ifindex: u32, netns: u32) -> String {
        if netns != self.own_netns {
            let known = self.known.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(n) = known.get(&(ifindex, netns)) {
                return n.clone();
            }
        }
        match self.lookup(ifindex, netns) {
            Some(n) => n,
            None if ifindex == 0 => "unknown".to_string(),
            None if netns == 0 || netns == self.own_netns => format!("if{ifindex}"),
            None => format!("if{ifindex}@netns{netns}"),
        }
    }
}

fn read_ifname(ifindex: u32) -> Option<String> {
    let dir = std::fs::read_dir("/sys/class/net").ok()?;
    for entry in dir.flatten() {
        let p = entry.path().join("ifindex");
        if let Ok(s) = std::fs::read_to_string(&p) {
            if s.trim().parse::<u32>().ok() == Some(ifindex) {
                return entry.file_name().into_string().ok();
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_named_and_foreign_namespaces_are_numbered() {
        let n = IfNames::new();
        assert_eq!(n.lookup(1, 0).as_deref(), Some("lo"));
        assert_eq!(n.display(1, n.own_netns()), "lo");
        assert_eq!(n.display(7, 12345), "if7@netns12345");
        assert_eq!(n.display(0, 0), "unknown");
        assert_ne!(own_netns_inode(), 0);
        n.remember(7, 12345, "veth0@a".into());
        assert_eq!(n.display(7, 12345), "veth0@a");
        assert_eq!(n.display(7, 12346), "if7@netns12346");
    }
}
