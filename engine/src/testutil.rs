//! Helpers shared by the unit tests (compiled for tests only).

/// Bytes from a hex string such as the vectors of docs/cilium-vectors.md.
pub fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}
