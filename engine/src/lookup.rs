//! The lookup tables every stage shares, read-only: kernel drop-reason names, kernel
//! symbols, interface names, Cilium's release and formatter, and pod names. Sources, the
//! flow table, the storm profile and the renderer all read them; none of them writes.

use std::fmt::Write as _;

use crate::event::ReasonKey;
use crate::kernel::kallsyms::Kallsyms;
use crate::kernel::reasons::KernelReasons;
use crate::names::IfNames;
use crate::packet::format::ip_of;

/// Kernel drop-reason names, read from the running kernel when first used. Reading them
/// (BTF) costs milliseconds that replaying a capture of ordinary packets never needs.
pub struct LazyKernelReasons(std::sync::OnceLock<KernelReasons>);

impl LazyKernelReasons {
    /// Loads on first use ([`KernelReasons::load`]).
    pub fn new() -> Self {
        LazyKernelReasons(std::sync::OnceLock::new())
    }
}

impl Default for LazyKernelReasons {
    fn default() -> Self {
        Self::new()
    }
}

impl From<KernelReasons> for LazyKernelReasons {
    /// Already loaded.
    fn from(r: KernelReasons) -> Self {
        LazyKernelReasons(std::sync::OnceLock::from(r))
    }
}

impl std::ops::Deref for LazyKernelReasons {
    type Target = KernelReasons;

    fn deref(&self) -> &KernelReasons {
        self.0.get_or_init(KernelReasons::load)
    }
}

/// Lookup tables shared by every stage (read-only).
pub struct Names {
    pub kernel_reasons: LazyKernelReasons,
    pub kallsyms: Option<Kallsyms>,
    pub ifnames: IfNames,
    pub cilium: crate::cilium_glue::CiliumContext,
    /// Pod and namespace names on this node (live captures that ask for them).
    pub pods: Option<std::sync::Arc<crate::pods::PodNames>>,
}

impl Names {
    /// Reason names from the running kernel's BTF, symbols from /proc/kallsyms, interface
    /// names of our namespace (none when `offline`: the events come from elsewhere). Offline,
    /// reason names are read on first use only (most replayed packets have no kernel reason).
    pub fn load(offline: bool) -> Names {
        Names {
            kernel_reasons: if offline {
                LazyKernelReasons::new()
            } else {
                KernelReasons::load().into()
            },
            kallsyms: if offline {
                None
            } else {
                Some(Kallsyms::load())
            },
            ifnames: if offline {
                IfNames::offline()
            } else {
                IfNames::new()
            },
            cilium: crate::cilium_glue::CiliumContext::default(),
            pods: None,
        }
    }

    /// An interface's display name, with the pod it belongs to when known (pcapng
    /// interface names).
    pub fn iface_label(&self, ifindex: u32, netns: u32) -> String {
        let mut n = self.ifnames.display(ifindex, netns);
        if let Some(p) = &self.pods {
            if let Some(pod) = p.snapshot().at(netns, ifindex, p.host_netns()) {
                let _ = write!(n, " (pod {pod})");
            }
        }
        n
    }

    /// The pods of a flow-table row: where it was dropped, and of its addresses.
    pub fn row_pods(&self, k: &crate::aggregate::AggKey) -> PodContext {
        self.pod_snapshot()
            .map(|(snap, host)| PodContext::of_row(&snap, host, k))
            .unwrap_or_default()
    }

    /// The latest pod names and the host's namespace, to look many rows up in.
    pub fn pod_snapshot(&self) -> Option<(std::sync::Arc<crate::pods::Snapshot>, u32)> {
        self.pods.as_ref().map(|p| (p.snapshot(), p.host_netns()))
    }

    pub fn reason_name(&self, r: ReasonKey) -> String {
        match r {
            ReasonKey::Kernel(n) => self.kernel_reasons.name(n).into_owned(),
            ReasonKey::Cilium(c) => crate::cilium_glue::reason_name(c, self.cilium.release),
            ReasonKey::CiliumEvent(t) => {
                format!("cilium {}", crate::cilium_glue::event_type_name(t))
            }
            ReasonKey::Captured => "captured".to_string(),
            ReasonKey::Packet {
                ifindex,
                netns,
                dir,
            } => {
                format!(
                    "packets {} {}",
                    self.iface_label(ifindex, netns),
                    dir.as_str()
                )
            }
        }
    }

    /// `NAME (n)` for kernel reasons, `Policy denied (133)` for Cilium ones.
    pub fn reason_label(&self, r: ReasonKey) -> String {
        match r {
            ReasonKey::Kernel(n) => format!("{} ({n})", self.kernel_reasons.name(n)),
            ReasonKey::Cilium(c) => format!(
                "cilium {} ({c})",
                crate::cilium_glue::reason_name(c, self.cilium.release)
            ),
            ReasonKey::CiliumEvent(t) => {
                format!("cilium {}", crate::cilium_glue::event_type_name(t))
            }
            ReasonKey::Captured => "captured".to_string(),
            ReasonKey::Packet { .. } => self.reason_name(r),
        }
    }

    pub fn symbol(&self, addr: u64) -> Option<(&str, u64)> {
        self.kallsyms.as_ref().and_then(|k| k.resolve(addr))
    }
}

/// The pods an event or row involves, as far as they are known.
#[derive(Clone, Debug, Default)]
pub struct PodContext {
    /// Where it was dropped: the pod's network namespace, or its host-side interface.
    pub at: Option<std::sync::Arc<crate::pods::Pod>>,
    /// The pods of the packet's source and destination addresses.
    pub src: Option<std::sync::Arc<crate::pods::Pod>>,
    pub dst: Option<std::sync::Arc<crate::pods::Pod>>,
}

impl PodContext {
    /// The pods of a flow-table row in `snap`.
    pub fn of_row(
        snap: &crate::pods::Snapshot,
        host_netns: u32,
        k: &crate::aggregate::AggKey,
    ) -> Self {
        let f = &k.flow;
        PodContext {
            at: snap.at(k.netns, k.ifindex, host_netns).cloned(),
            src: snap.by_ip(ip_of(f.family, &f.src)).cloned(),
            dst: snap.by_ip(ip_of(f.family, &f.dst)).cloned(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.at.is_none() && self.src.is_none() && self.dst.is_none()
    }

    /// ` pod NS/NAME pods SRC->DST` (what is known), for comments and text lines.
    pub fn write_text(&self, out: &mut String) {
        if let Some(p) = &self.at {
            out.push_str(" pod ");
            p.write_label(out);
        }
        if self.src.is_some() || self.dst.is_some() {
            let side = |out: &mut String, p: &Option<std::sync::Arc<crate::pods::Pod>>| match p {
                Some(p) => p.write_label(out),
                None => out.push('-'),
            };
            out.push_str(" pods ");
            side(out, &self.src);
            out.push_str("->");
            side(out, &self.dst);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cilium::tables::CiliumRelease;

    /// `--cilium-release` names reasons in summaries and JSON as in comments: a code its
    /// release's `drop.go` does not have is `unknown(N)` there.
    #[test]
    fn cilium_reason_names_follow_the_release() {
        let mut names = Names::load(true);
        names.cilium = crate::cilium_glue::CiliumContext::new(CiliumRelease::Main);
        assert_eq!(names.reason_name(ReasonKey::Cilium(205)), "Punt to proxy");
        assert_eq!(
            names.reason_label(ReasonKey::Cilium(205)),
            "cilium Punt to proxy (205)"
        );
        names.cilium = crate::cilium_glue::CiliumContext::new(CiliumRelease::V1_16);
        assert_eq!(names.reason_name(ReasonKey::Cilium(205)), "unknown(205)");
        assert_eq!(names.reason_name(ReasonKey::Cilium(133)), "Policy denied");
    }
}
