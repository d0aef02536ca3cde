//! The per-CPU ring reader on arbitrary ring contents and an arbitrary producer position:
//! `PerCpuRings::drain` (through `TestRings`) must not panic, must hand out only whole frames from inside the ring,
//! and must end with its position at the producer's (nothing read twice, nothing left).
#![no_main]

use engine::kernel::ring::TestRings;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 9 {
        return;
    }
    let prod = u64::from_le_bytes(data[..8].try_into().unwrap());
    let blocks = 1u32 << (data[8] % 3); // 1, 2 or 4 blocks
    let mut rings = TestRings::new(1, blocks).unwrap();
    rings.poke_blocks(0, &data[9..]);
    // Positions up to three rings out, to cover "more than a ring ahead" too.
    let prod = prod % (3 * rings.rings().bytes_per_cpu() + 1);
    rings.set_prod(0, prod);
    let mut records = 0u64;
    let consumed = rings.drain(|rec| {
        assert!(rec.len() + 8 <= capture_common_block());
        assert_eq!(rec.len() % 8, 0);
        records += 1;
    });
    let s = rings.stats();
    assert_eq!(s.records, records);
    assert!(consumed <= prod);
    // A second pass finds nothing new.
    assert_eq!(rings.drain(|_| panic!("read twice")), 0);
});

fn capture_common_block() -> usize {
    64 * 1024
}
