//! What to capture: the selectors (`--reason`, `--not-reason`, `-i`, `--netns`, Cilium's
//! `--identity`, `--from-identity`, `--to-identity`) and a tcpdump filter expression, ANDed.
//!
//! The kernel source runs its half in the kernel program ([`Selection::kernel`]): reason,
//! interface and namespace, and the expression translated to eBPF. Everything else (Cilium
//! notifications, files, an expression the kernel refused) goes through [`Selection::keep`]
//! in the decode stage. Both halves decide alike: an event lacking the field a selector
//! names (a kernel drop has no Cilium identity, a Cilium notification no namespace) is not
//! selected.
//!
//! Must never: select differently in the kernel and in user space for the same drop, or
//! accept a reason name it cannot resolve.

use std::{collections::BTreeSet, sync::Arc};

use crate::{
    aggregate::ReasonKey,
    event::{Event, LinkType},
    filter::Expression,
    kernel::{loader::KernelSelect, KernelReasons},
};

/// Reasons named on the command line: the kernel's and Cilium's that match.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reasons {
    pub kernel: BTreeSet<u32>,
    pub cilium: BTreeSet<u8>,
}

impl Reasons {
    /// Resolves names and numbers (`NO_SOCKET`, `skb_drop_reason_no_socket`, `133`,
    /// `DROP_POLICY`, `Policy denied`, case-insensitive). A number selects that value in both
    /// tables. An unknown name is an error that says where to list them.
    pub fn resolve(items: &[String], kernel: &KernelReasons) -> Result<Reasons, String> {
        let mut out = Reasons::default();
        for item in items {
            let t = item.trim();
            if let Ok(n) = parse_number(t) {
                out.kernel.insert(n);
                if let Ok(c) = u8::try_from(n) {
                    out.cilium.insert(c);
                }
                continue;
            }
            let up = t.to_ascii_uppercase();
            let mut found = false;
            if let Some(v) = kernel.value(&up) {
                out.kernel.insert(v);
                found = true;
            }
            for code in 0..=255u8 {
                let Some(info) = crate::cilium::tables::drop_reason_info(code) else {
                    continue;
                };
                let c_name = info.name.to_ascii_uppercase();
                let short = c_name.strip_prefix("DROP_").unwrap_or(&c_name);
                let monitor = info.monitor.map(str::to_ascii_uppercase);
                if c_name == up || short == up || monitor.as_deref() == Some(up.as_str()) {
                    out.cilium.insert(code);
                    found = true;
                }
            }
            if !found {
                return Err(format!(
                    "unknown drop reason {t:?}: `dropscope reasons` lists the kernel's and Cilium's names"
                ));
            }
        }
        Ok(out)
    }

    fn has(&self, k: ReasonKey) -> bool {
        match k {
            ReasonKey::Kernel(r) => self.kernel.contains(&r),
            ReasonKey::Cilium(c) => self.cilium.contains(&c),
            _ => false,
        }
    }
}

fn parse_number(t: &str) -> Result<u32, std::num::ParseIntError> {
    match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(h) => u32::from_str_radix(h, 16),
        None => t.parse(),
    }
}

/// The selectors and the expression of one run.
#[derive(Clone, Debug, Default)]
pub struct Selection {
    /// `--reason`: only these.
    pub only: Option<Reasons>,
    /// `--not-reason`: none of these.
    pub except: Option<Reasons>,
    /// `-i`: only this ifindex.
    pub ifindex: Option<u32>,
    /// `-i` given more than once (`capture --packets`): only drops on these
    /// (ifindex, netns inode).
    pub ifaces: Option<Vec<(u32, u32)>>,
    /// `--netns`: only this namespace inode.
    pub netns: Option<u32>,
    /// `--identity`: source or destination identity is one of these.
    pub identity: Vec<u32>,
    pub from_identity: Vec<u32>,
    pub to_identity: Vec<u32>,
    /// The tcpdump filter expression.
    pub expr: Option<Arc<Expression>>,
    /// `--pod`, `--namespace`, `--label`, decided against the node's pod names (user space:
    /// the kernel program selects a superset, and [`Selection::kernel_decided`] is off).
    pub pods: Option<(crate::pods::PodSelector, Arc<crate::pods::PodNames>)>,
    /// Kernel drops were selected by the kernel program already (selectors and expression):
    /// [`Selection::keep`] passes them without deciding again.
    pub kernel_decided: bool,
}

impl Selection {
    /// True when it selects every event.
    pub fn is_all(&self) -> bool {
        self.only.is_none()
            && self.except.is_none()
            && self.ifindex.is_none()
            && self.ifaces.is_none()
            && self.netns.is_none()
            && !self.has_identity()
            && self.expr.is_none()
            && self.pods.is_none()
    }

    fn has_identity(&self) -> bool {
        !(self.identity.is_empty() && self.from_identity.is_empty() && self.to_identity.is_empty())
    }

    /// The kernel program's half: reason, interface and namespace, and the expression
    /// translated for its stub (`None` when the translator refuses it: the expression then
    /// runs in user space, and the reason is returned). Identity selectors select no kernel
    /// drop, so with them the kernel selects none (`select_none`).
    pub fn kernel(&self) -> (KernelSelect, Option<String>) {
        let mut k = KernelSelect {
            ifindex: self.ifindex.unwrap_or(0),
            netns: self.netns.unwrap_or(0),
            ifaces: self.ifaces.as_ref().map(|v| {
                v.iter()
                    .map(|&(ifindex, netns_ino)| capture_common::PktKey {
                        ifindex,
                        netns_ino,
                        direction: 0,
                    })
                    .collect()
            }),
            ..Default::default()
        };
        let except = self
            .except
            .as_ref()
            .map(|r| r.kernel.clone())
            .unwrap_or_default();
        k.reasons = match &self.only {
            Some(only) => Some((true, only.kernel.difference(&except).copied().collect())),
            None if !except.is_empty() => Some((false, except.into_iter().collect())),
            None => None,
        };
        if self.has_identity() {
            // No kernel drop carries a Cilium identity.
            k.reasons = Some((true, Vec::new()));
        }
        let mut fallback = None;
        if let Some(e) = &self.expr {
            match e.translate(capture_common::FILTER_RESERVE as usize) {
                Ok(p) => k.program = Some(p.into_iter().map(|i| i.to_u64()).collect()),
                Err(err) => fallback = Some(err.to_string()),
            }
        }
        (k, fallback)
    }

    /// The selectors alone (what the kernel ran when only its expression fell back).
    pub fn expression_only(&self) -> Selection {
        Selection {
            expr: self.expr.clone(),
            ..Default::default()
        }
    }

    /// True when `e` is selected. Ordinary packets (`--packets`) are chosen by the
    /// interfaces their programs are attached to, and have no reason: the reason and
    /// interface selectors are for drops; the others apply to them as to drops.
    pub fn keep(&self, e: &Event) -> bool {
        use crate::event::Cause;
        if self.kernel_decided && matches!(e.cause, Cause::Kernel { .. } | Cause::Packet { .. }) {
            return true;
        }
        let drop = !matches!(e.cause, Cause::Packet { .. });
        let (reason, src, dst) = crate::aggregate::reason_and_identities(e);
        if let (Some(only), true) = (&self.only, drop) {
            if !only.has(reason) {
                return false;
            }
        }
        if let (Some(except), true) = (&self.except, drop) {
            if except.has(reason) {
                return false;
            }
        }
        if let (Some(i), true) = (self.ifindex, drop) {
            if e.ifindex != i {
                return false;
            }
        }
        if let (Some(set), true) = (&self.ifaces, drop) {
            if !set.contains(&(e.ifindex, e.netns)) {
                return false;
            }
        }
        if let Some(n) = self.netns {
            if e.netns != n {
                return false;
            }
        }
        if self.has_identity() {
            if !matches!(e.cause, crate::event::Cause::Cilium(_)) {
                return false;
            }
            if !self.identity.is_empty() && !self.identity.iter().any(|&i| i == src || i == dst) {
                return false;
            }
            if !self.from_identity.is_empty() && !self.from_identity.contains(&src) {
                return false;
            }
            if !self.to_identity.is_empty() && !self.to_identity.contains(&dst) {
                return false;
            }
        }
        if let Some(x) = &self.expr {
            if !x.matches(e.link == LinkType::RawIp, &e.data, e.orig_len) {
                return false;
            }
        }
        if let Some((sel, names)) = &self.pods {
            if !pod_selected(sel, names, e, src, dst) {
                return false;
            }
        }
        true
    }
}

/// Is `e` a drop of a selected pod: where it was dropped, its addresses' pods, or (Cilium
/// events) its identities' labels?
fn pod_selected(
    sel: &crate::pods::PodSelector,
    names: &crate::pods::PodNames,
    e: &Event,
    src_identity: u32,
    dst_identity: u32,
) -> bool {
    let snap = names.snapshot();
    if snap
        .at(e.netns, e.ifindex, names.host_netns())
        .is_some_and(|p| sel.matches(p))
    {
        return true;
    }
    if [src_identity, dst_identity]
        .iter()
        .any(|id| snap.labels(*id).is_some_and(|l| sel.labels_match(l)))
    {
        return true;
    }
    let s = crate::packet::summarize(
        &e.data,
        e.link,
        crate::cilium_glue::tunnel_hint_for(e, crate::packet::TunnelHint::default()),
    );
    let f = &s.flow;
    [&f.src, &f.dst].iter().any(|a| {
        snap.by_ip(crate::packet::format::ip_of(f.family, a))
            .is_some_and(|p| sel.matches(p))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Cause;
    use bytes::Bytes;

    fn kernel_reasons() -> KernelReasons {
        KernelReasons::builtin()
    }

    #[test]
    fn names_numbers_and_unknowns() {
        let k = kernel_reasons();
        let no_socket = k.value("NO_SOCKET").expect("builtin table has NO_SOCKET");
        let r = Reasons::resolve(&["no_socket".into(), "Policy denied".into()], &k).unwrap();
        assert_eq!(r.kernel, BTreeSet::from([no_socket]));
        assert_eq!(r.cilium, BTreeSet::from([133]));
        let r = Reasons::resolve(&["DROP_POLICY".into(), "7".into()], &k).unwrap();
        assert_eq!(r.kernel, BTreeSet::from([7]));
        assert_eq!(r.cilium, BTreeSet::from([7, 133]));
        let err = Reasons::resolve(&["NO_SUCH_REASON".into()], &k).unwrap_err();
        assert!(err.contains("dropscope reasons"), "{err}");
        assert!(!err.contains('\n'));
    }

    fn ev(reason: u32, ifindex: u32, netns: u32) -> Event {
        Event {
            meta: None,
            ts_ns: 0,
            ifindex,
            netns,
            cpu: 0,
            orig_len: 0,
            link: LinkType::Ethernet,
            data: Bytes::new(),
            cause: Cause::Kernel {
                reason,
                location: 0,
                protocol: 0,
            },
        }
    }

    #[test]
    fn packets_skip_the_drop_selectors_and_meet_the_others() {
        let pkt = |ifindex, netns| Event {
            cause: Cause::Packet {
                dir: crate::event::Direction::Inbound,
            },
            ..ev(0, ifindex, netns)
        };
        let s = Selection {
            only: Some(Reasons {
                kernel: [3].into(),
                cilium: Default::default(),
            }),
            ifaces: Some(vec![(4, 99)]),
            ..Default::default()
        };
        // Reasons and interfaces select drops; a packet has no reason, and its interface
        // is the one its program is attached to.
        assert!(s.keep(&pkt(7, 98)));
        assert!(s.keep(&ev(3, 4, 99)));
        assert!(!s.keep(&ev(3, 7, 99)));
        assert!(!s.keep(&ev(2, 4, 99)));
        let s = Selection {
            netns: Some(99),
            ..s
        };
        assert!(s.keep(&pkt(7, 99)));
        assert!(!s.keep(&pkt(7, 98)));
        // Decided by the kernel: passed as they are.
        let s = Selection {
            kernel_decided: true,
            ..s
        };
        assert!(s.keep(&pkt(7, 98)));
        let (k, _) = s.kernel();
        assert_eq!(
            k.ifaces,
            Some(vec![capture_common::PktKey {
                ifindex: 4,
                netns_ino: 99,
                direction: 0
            }])
        );
    }

    #[test]
    fn user_side_selectors_and_their_kernel_half() {
        let k = kernel_reasons();
        let s = Selection {
            only: Some(Reasons::resolve(&["2".into(), "3".into()], &k).unwrap()),
            except: Some(Reasons::resolve(&["3".into()], &k).unwrap()),
            ifindex: Some(4),
            netns: Some(99),
            ..Default::default()
        };
        assert!(s.keep(&ev(2, 4, 99)));
        assert!(!s.keep(&ev(3, 4, 99)));
        assert!(!s.keep(&ev(2, 5, 99)));
        assert!(!s.keep(&ev(2, 4, 98)));
        let (ks, fallback) = s.kernel();
        assert_eq!(fallback, None);
        assert_eq!(
            ks,
            KernelSelect {
                ifindex: 4,
                netns: 99,
                reasons: Some((true, vec![2])),
                program: None,
                pods: None,
                ifaces: None,
            }
        );
        let only_not = Selection {
            except: Some(Reasons::resolve(&["2".into()], &k).unwrap()),
            ..Default::default()
        };
        assert_eq!(only_not.kernel().0.reasons, Some((false, vec![2])));
        assert!(!only_not.keep(&ev(2, 1, 1)) && only_not.keep(&ev(3, 1, 1)));
        // An identity selector selects no kernel drop, in both halves.
        let ident = Selection {
            identity: vec![1234],
            ..Default::default()
        };
        assert!(!ident.keep(&ev(2, 1, 1)));
        assert_eq!(ident.kernel().0.reasons, Some((true, vec![])));
        assert!(Selection::default().is_all() && !ident.is_all());
        // Kernel drops the kernel program already selected pass without a second decision.
        let decided = Selection {
            kernel_decided: true,
            ..s.clone()
        };
        assert!(!s.keep(&ev(3, 4, 99)) && decided.keep(&ev(3, 4, 99)));
    }
}
