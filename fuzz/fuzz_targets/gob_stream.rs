//! Cilium monitor socket bytes: the incremental Payload stream decoder (fed in chunks whose
//! size the first input byte picks), the generic gob stream decoder, and the inner agent
//! notification / L7 decoders must never panic, and every decoded payload is counted.
#![no_main]

use engine::cilium_socket::gob::decode_stream;
use engine::cilium_socket::payload::{
    decode_agent_notify, validate_l7, PayloadStream, StreamStats,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (chunk, rest) = match data.split_first() {
        Some((&c, rest)) => (usize::from(c).max(1), rest),
        None => (1, data),
    };
    let mut stream = PayloadStream::new(1 << 16);
    let mut stats = StreamStats::default();
    let mut out = Vec::new();
    for c in rest.chunks(chunk) {
        stream.push(c, &mut stats);
        if stream.decode(&mut out, &mut stats).is_err() {
            stream.reset(&mut stats);
        }
    }
    stream.reset(&mut stats);
    assert_eq!(stats.payloads, out.len() as u64);
    assert_eq!(stats.bytes, rest.len() as u64);

    // The same bytes in one piece decode to the same messages unless an error reset the
    // stream part-way (then chunking changes what follows).
    if stats.streams_abandoned == 0 {
        let mut one = PayloadStream::new(1 << 16);
        let mut s1 = StreamStats::default();
        let mut out1 = Vec::new();
        one.push(rest, &mut s1);
        let _ = one.decode(&mut out1, &mut s1);
        assert_eq!(out, out1);
    }

    let _ = decode_stream(rest, 1 << 16);
    let _ = decode_agent_notify(rest);
    let _ = validate_l7(rest);
});
