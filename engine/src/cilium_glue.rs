//! Where Cilium notifications meet the shared pipeline: reason keys, identities, tunnel
//! hints, comments and text for `Cause::Cilium` events.
//!
//! Must never: panic on any field value (unknown codes print as numbers).

use crate::aggregate::ReasonKey;
use crate::event::{Cause, Event};
use crate::packet::TunnelHint;
use crate::render::Names;

pub fn reason_name(code: u8) -> String {
    format!("unknown({code})")
}

pub fn reason_and_identities(_c: &Cause) -> (ReasonKey, u32, u32) {
    (ReasonKey::Captured, 0, 0)
}

pub fn tunnel_hint(_c: &Cause) -> Option<TunnelHint> {
    None
}

pub fn comment(_out: &mut String, _e: &Event, _c: &Cause) {}

pub fn text_prefix(_out: &mut String, _n: &Names, _e: &Event, _c: &Cause) {}

pub fn json_fields(
    _m: &mut serde_json::Map<String, serde_json::Value>,
    _n: &Names,
    _e: &Event,
    _c: &Cause,
) {
}
