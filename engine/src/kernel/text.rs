//! A kernel drop in words: the head of its text line (`xx drop (NO_SOCKET) at
//! udp_queue_rcv_one_skb+0x1d2, ifindex 3 (veth0), netns 4026531840`) and its JSON members.
//! The pcapng comment's grammar, which the file reader parses back, is in
//! [`crate::comment`]; the renderer only dispatches to these.

use std::fmt::Write as _;

/// What is known of one kernel drop, as it is shown.
pub struct KernelDrop<'a> {
    pub reason: u32,
    /// The reason's name (BTF), `reason` as a number when it has none.
    pub reason_name: &'a str,
    /// Kernel address of the drop site.
    pub location: u64,
    /// The drop site's symbol and offset, when this machine's symbols resolve it.
    pub symbol: Option<(&'a str, u64)>,
    /// The drop site as a replayed file's comment named it (`sym+0xoff`), when this
    /// machine's symbols do not resolve it.
    pub file_symbol: Option<&'a str>,
    /// `skb->protocol`, host order.
    pub protocol: u16,
}

impl KernelDrop<'_> {
    /// `xx drop (REASON) at SITE, ifindex N (NAME), netns M` (no separator after).
    pub fn write_line_head(
        &self,
        out: &mut String,
        ifindex: u32,
        ifname: Option<&str>,
        netns: u32,
    ) {
        let _ = write!(out, "xx drop ({}) at ", self.reason_name);
        match (self.symbol, self.file_symbol) {
            (Some((sym, off)), _) => {
                let _ = write!(out, "{sym}+{off:#x}");
            }
            (None, Some(sym)) => out.push_str(sym),
            (None, None) => {
                let _ = write!(out, "{:#x}", self.location);
            }
        }
        let _ = write!(out, ", ifindex {ifindex}");
        if let Some(n) = ifname {
            let _ = write!(out, " ({n})");
        }
        let _ = write!(out, ", netns {netns}");
    }

    /// `origin`, `reason`, `reason_name`, `location`, `symbol` (when known), `skb_protocol`.
    pub fn json_fields(&self, m: &mut serde_json::Map<String, serde_json::Value>) {
        m.insert("origin".into(), "kernel".into());
        m.insert("reason".into(), self.reason.into());
        m.insert("reason_name".into(), self.reason_name.into());
        m.insert("location".into(), format!("{:#x}", self.location).into());
        if let Some((sym, off)) = self.symbol {
            m.insert("symbol".into(), format!("{sym}+{off:#x}").into());
        } else if let Some(sym) = self.file_symbol {
            m.insert("symbol".into(), sym.into());
        }
        m.insert(
            "skb_protocol".into(),
            format!("{:#06x}", self.protocol).into(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drop(
        symbol: Option<(&'static str, u64)>,
        file_symbol: Option<&'static str>,
    ) -> KernelDrop<'static> {
        KernelDrop {
            reason: 2,
            reason_name: "NO_SOCKET",
            location: 0xffff_ffff_8100_1234,
            symbol,
            file_symbol,
            protocol: 0x0800,
        }
    }

    #[test]
    fn the_line_names_the_site_as_well_as_it_is_known() {
        let mut s = String::new();
        drop(Some(("udp_rcv", 0x1d2)), Some("other+0x1")).write_line_head(
            &mut s,
            3,
            Some("veth0"),
            9,
        );
        assert_eq!(
            s,
            "xx drop (NO_SOCKET) at udp_rcv+0x1d2, ifindex 3 (veth0), netns 9"
        );
        s.clear();
        drop(None, Some("udp_rcv+0x1d2")).write_line_head(&mut s, 3, None, 9);
        assert_eq!(
            s,
            "xx drop (NO_SOCKET) at udp_rcv+0x1d2, ifindex 3, netns 9"
        );
        s.clear();
        drop(None, None).write_line_head(&mut s, 3, None, 9);
        assert_eq!(
            s,
            "xx drop (NO_SOCKET) at 0xffffffff81001234, ifindex 3, netns 9"
        );
    }

    #[test]
    fn json_members() {
        let mut m = serde_json::Map::new();
        drop(None, Some("udp_rcv+0x1d2")).json_fields(&mut m);
        assert_eq!(
            serde_json::Value::Object(m),
            serde_json::json!({
                "origin": "kernel", "reason": 2, "reason_name": "NO_SOCKET",
                "location": "0xffffffff81001234", "symbol": "udp_rcv+0x1d2",
                "skb_protocol": "0x0800"
            })
        );
    }
}
