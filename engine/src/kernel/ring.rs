//! The reading side of the kernel program's per-CPU rings (layout: capture-common's
//! [`RingPos`] and [`RING_BLOCK`] docs): two `BPF_F_MMAPABLE` array maps mapped into this
//! process, one holding every CPU's ring blocks, one each CPU's positions.
//!
//! For each CPU the reader takes `prod` (acquire), walks the frames between its `cons` and
//! `prod`, hands each record to a callback, and stores the new `cons` (release), which is
//! what lets the kernel program reuse the space. Frames are untrusted: a length that is not
//! a multiple of 8, shorter than a frame header, crossing its block, or past `prod` is counted
//! ([`RingStats::bad_frames`]) and reading goes on at the next block (the kernel program
//! starts a block with a fresh frame, so that is the next place a frame boundary is known).
//!
//! Ordering: the reader's acquire load of `prod` pairs with the kernel program's publishing
//! store of `prod` (capture-ebpf `emit`: a plain store after the frame's stores, a release
//! store under x86-64's ordering, the only architecture the loader accepts), and the
//! reader's release store of `cons` pairs with the program's load of `cons` before it reuses
//! the space.
//!
//! Memory safety rests on the mappings covering what is read: [`PerCpuRings::map`] is an
//! `unsafe fn` whose caller promises the descriptors are the kernel program's ring maps of
//! that geometry; the data mapping of a kernel ring is read-only. Tests, benches and fuzzing
//! write rings of their own through [`TestRings`] (private writable memory).
//!
//! Must never: read at or past `prod` (the producer may be writing there), dereference a
//! position outside the mapped area, or store a `cons` past `prod`.

use std::{
    io,
    os::fd::{AsRawFd, BorrowedFd},
    ptr::NonNull,
    sync::atomic::{AtomicU64, Ordering},
};

use capture_common::{FrameHeader, RingPos, FRAME_PAD, RING_BLOCK, RING_BLOCK_SHIFT, RING_ELEM};

const FRAME_HDR: u64 = std::mem::size_of::<FrameHeader>() as u64;
const BLOCK: u64 = RING_BLOCK as u64;

/// One shared mapping of a map's values; unmapped on drop.
struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

impl Mapping {
    /// A shared mapping of the first `len` bytes of a map's values (`Some(fd)`), or zeroed
    /// private memory (`None`: rings without a kernel, for tests and benches).
    fn new(fd: Option<BorrowedFd<'_>>, len: usize, writable: bool) -> io::Result<Self> {
        let prot = if writable {
            libc::PROT_READ | libc::PROT_WRITE
        } else {
            libc::PROT_READ
        };
        let (flags, raw_fd) = match fd {
            Some(fd) => (libc::MAP_SHARED, fd.as_raw_fd()),
            None => (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1),
        };
        // SAFETY: a fresh mapping of `len` bytes at offset 0; for a map, the kernel checks
        // `len` against the array's size, and the fd stays open while we live (the caller
        // keeps the map).
        let p = unsafe { libc::mmap(std::ptr::null_mut(), len, prot, flags, raw_fd, 0) };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(p.cast::<u8>()).ok_or_else(|| io::Error::other("mmap gave NULL"))?;
        Ok(Mapping { ptr, len })
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `new`; no reference into it outlives
        // self (readers copy the bytes out before returning).
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

// SAFETY: the mapping is plain shared memory; all access goes through raw pointers with
// atomics for the positions.
unsafe impl Send for Mapping {}

/// Page-rounded size of an mmap-able array's values (what the kernel lets one map).
fn array_bytes(entries: usize, value_size: usize) -> usize {
    let elem = value_size.next_multiple_of(8);
    let page = page_size();
    entries.saturating_mul(elem).next_multiple_of(page)
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(p).ok().filter(|&p| p > 0).unwrap_or(4096)
}

/// The u64 at `offset` in `cpu`'s [`RingPos`], as an atomic (the kernel writes these words
/// concurrently). `cpu` must be below the CPU count the mapping was made for.
fn pos_word(pos: &Mapping, cpu: u32, offset: usize) -> &AtomicU64 {
    let at = cpu as usize * std::mem::size_of::<RingPos>() + offset;
    assert!(
        at + 8 <= pos.len && offset.is_multiple_of(8),
        "ring position out of the mapping"
    );
    // SAFETY: `at + 8` is inside the mapping (asserted); the mapping is page-aligned and
    // `at` a multiple of 8 (RingPos is 192 bytes, `offset` 8-aligned), so the address is
    // aligned for a u64; the memory lives as long as `pos`.
    unsafe { AtomicU64::from_ptr(pos.ptr.as_ptr().add(at).cast::<u64>()) }
}

/// What reading the rings did, summed over CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RingStats {
    /// Records handed to the callback.
    pub records: u64,
    /// Bytes consumed (frames, padding and skipped bytes).
    pub bytes: u64,
    /// Frames whose header was impossible; the rest of their block was skipped.
    pub bad_frames: u64,
}

/// The per-CPU rings, mapped.
pub struct PerCpuRings {
    data: Mapping,
    pos: Mapping,
    cpus: u32,
    blocks: u32,
    stats: RingStats,
}

impl PerCpuRings {
    /// Maps the rings of `cpus` CPUs with `blocks` blocks each.
    ///
    /// # Safety
    /// `data_fd` and `pos_fd` must be the kernel program's `BPF_F_MMAPABLE` array maps
    /// `RING_DATA` (at least `cpus * blocks` elements of `RING_ELEM` bytes) and `RING_POS`
    /// (at least `cpus` [`RingPos`] elements), and stay open while the rings live. Any other
    /// descriptor (a file shorter than the mapping, say) makes reads fault or return bytes
    /// no producer wrote.
    pub(crate) unsafe fn map(
        data_fd: BorrowedFd<'_>,
        pos_fd: BorrowedFd<'_>,
        cpus: u32,
        blocks: u32,
    ) -> io::Result<Self> {
        Self::new(Some((data_fd, pos_fd)), cpus, blocks)
    }

    fn new(
        fds: Option<(BorrowedFd<'_>, BorrowedFd<'_>)>,
        cpus: u32,
        blocks: u32,
    ) -> io::Result<Self> {
        if cpus == 0 || blocks == 0 || !blocks.is_power_of_two() {
            return Err(io::Error::other(format!(
                "bad ring geometry: {cpus} CPUs x {blocks} blocks"
            )));
        }
        let entries = (cpus as usize).saturating_mul(blocks as usize);
        let data_len = array_bytes(entries, RING_ELEM as usize);
        let pos_len = array_bytes(cpus as usize, std::mem::size_of::<RingPos>());
        Ok(PerCpuRings {
            data: Mapping::new(fds.map(|f| f.0), data_len, fds.is_none())?,
            pos: Mapping::new(fds.map(|f| f.1), pos_len, true)?,
            cpus,
            blocks,
            stats: RingStats::default(),
        })
    }

    /// Offset in the data mapping of `cpu`'s ring position `pos` (`cpu < self.cpus`): the
    /// element of its block plus its offset in the block, always inside the mapping.
    fn offset(&self, cpu: u32, pos: u64) -> usize {
        let mask = u64::from(self.blocks) - 1;
        let elem = u64::from(cpu) * u64::from(self.blocks) + ((pos >> RING_BLOCK_SHIFT) & mask);
        elem as usize * RING_ELEM as usize + (pos & (BLOCK - 1)) as usize
    }

    /// One CPU's storm-switch state as its program last wrote it: (start of the current
    /// storm or 0, storms begun, nanoseconds in storms that ended).
    pub fn storm_state(&self, cpu: u32) -> (u64, u64, u64) {
        if cpu >= self.cpus {
            return (0, 0, 0);
        }
        let w = |off| pos_word(&self.pos, cpu, off).load(Ordering::Relaxed);
        (
            w(std::mem::offset_of!(RingPos, storm_since)),
            w(std::mem::offset_of!(RingPos, storm_count)),
            w(std::mem::offset_of!(RingPos, storm_total_ns)),
        )
    }

    /// Bytes published on `cpu`'s ring and not yet read (0 for a CPU out of range): the
    /// ring's fill, for a gauge.
    pub fn used(&self, cpu: u32) -> u64 {
        if cpu >= self.cpus {
            return 0;
        }
        let prod =
            pos_word(&self.pos, cpu, std::mem::offset_of!(RingPos, prod)).load(Ordering::Relaxed);
        let cons =
            pos_word(&self.pos, cpu, std::mem::offset_of!(RingPos, cons)).load(Ordering::Relaxed);
        prod.saturating_sub(cons).min(self.bytes_per_cpu())
    }

    pub fn cpus(&self) -> u32 {
        self.cpus
    }

    pub fn stats(&self) -> RingStats {
        self.stats
    }

    /// Bytes of one CPU's ring.
    pub fn bytes_per_cpu(&self) -> u64 {
        u64::from(self.blocks) << RING_BLOCK_SHIFT
    }

    /// Reads every record published so far on every CPU; returns the bytes consumed.
    pub fn drain(&mut self, mut on_record: impl FnMut(&[u8])) -> u64 {
        let mut consumed = 0;
        for cpu in 0..self.cpus {
            consumed += self.drain_cpu(cpu, &mut on_record);
        }
        consumed
    }

    fn drain_cpu(&mut self, cpu: u32, on_record: &mut impl FnMut(&[u8])) -> u64 {
        let prod =
            pos_word(&self.pos, cpu, std::mem::offset_of!(RingPos, prod)).load(Ordering::Acquire);
        let cons_word = pos_word(&self.pos, cpu, std::mem::offset_of!(RingPos, cons));
        let start = cons_word.load(Ordering::Relaxed);
        let mut cons = start;
        // A producer never runs more than a ring ahead; if `prod` says otherwise it is not to
        // be trusted: skip to it (counted as one bad frame).
        if prod < cons || prod - cons > self.bytes_per_cpu() {
            self.stats.bad_frames += 1;
            cons_word.store(prod, Ordering::Release);
            return 0;
        }
        while cons < prod {
            let off = cons & (BLOCK - 1);
            let block_end = cons - off + BLOCK;
            // In bounds: offset() is inside the mapping and off + len <= BLOCK < RING_ELEM
            // (checked below before any read of the frame's bytes).
            let base = self.offset(cpu, cons);
            if off + FRAME_HDR > BLOCK || cons + FRAME_HDR > prod {
                self.stats.bad_frames += 1;
                cons = block_end.min(prod);
                continue;
            }
            // SAFETY: [base, base + 8) is inside the data mapping (see above) and before
            // `prod`, so the producer has finished writing it.
            let len = u64::from(unsafe {
                std::ptr::read_unaligned(self.data.ptr.as_ptr().add(base).cast::<u32>())
            });
            if len == u64::from(FRAME_PAD) {
                cons = block_end.min(prod);
                continue;
            }
            if len < FRAME_HDR || len % 8 != 0 || off + len > BLOCK || cons + len > prod {
                self.stats.bad_frames += 1;
                cons = block_end.min(prod);
                continue;
            }
            // SAFETY: as above for [base, base + len): inside one block of the mapping and
            // wholly before `prod`. The slice lives only for the callback, which copies.
            let frame = unsafe {
                std::slice::from_raw_parts(self.data.ptr.as_ptr().add(base), len as usize)
            };
            on_record(frame.get(FRAME_HDR as usize..).unwrap_or(&[]));
            self.stats.records += 1;
            cons += len;
        }
        cons_word.store(cons, Ordering::Release);
        let n = cons - start;
        self.stats.bytes += n;
        n
    }
}

/// Rings in private, writable memory, written the way the kernel program writes: for tests,
/// benches and fuzzing of the reading side without a kernel.
#[cfg(any(test, feature = "test-support"))]
pub struct TestRings {
    r: PerCpuRings,
}

#[cfg(any(test, feature = "test-support"))]
impl TestRings {
    pub fn new(cpus: u32, blocks: u32) -> io::Result<Self> {
        Ok(TestRings {
            r: PerCpuRings::new(None, cpus, blocks)?,
        })
    }

    /// The reading side.
    pub fn rings(&mut self) -> &mut PerCpuRings {
        &mut self.r
    }

    pub fn drain(&mut self, on_record: impl FnMut(&[u8])) -> u64 {
        self.r.drain(on_record)
    }

    pub fn stats(&self) -> RingStats {
        self.r.stats()
    }

    /// Appends one frame holding `payload` to `cpu`'s ring exactly as the kernel program
    /// does (padding to the next block when it would cross one, the cached limit); false
    /// when there is no room. Only for rings made by [`PerCpuRings::anonymous`].
    pub fn produce(&mut self, cpu: u32, payload: &[u8]) -> bool {
        if cpu >= self.r.cpus
            || payload.len() as u64 + FRAME_HDR > u64::from(capture_common::MAX_FRAME)
        {
            return false;
        }
        let total = (payload.len() as u64 + FRAME_HDR).next_multiple_of(8);
        let prod =
            pos_word(&self.r.pos, cpu, std::mem::offset_of!(RingPos, prod)).load(Ordering::Relaxed);
        let off = prod & (BLOCK - 1);
        let at = if off + total > BLOCK {
            prod + (BLOCK - off)
        } else {
            prod
        };
        let end = at + total;
        let limit_word = pos_word(&self.r.pos, cpu, std::mem::offset_of!(RingPos, limit));
        if end > limit_word.load(Ordering::Relaxed) {
            let cons = pos_word(&self.r.pos, cpu, std::mem::offset_of!(RingPos, cons))
                .load(Ordering::Acquire);
            limit_word.store(cons + self.r.bytes_per_cpu(), Ordering::Relaxed);
            if end > cons + self.r.bytes_per_cpu() {
                return false;
            }
        }
        let data = self.r.data.ptr.as_ptr();
        if at != prod {
            // SAFETY: offset() is inside the mapping, and 8 bytes before its block's end
            // because positions are 8-aligned; the memory is ours alone.
            unsafe {
                std::ptr::write_unaligned(
                    data.add(self.r.offset(cpu, prod)).cast::<u32>(),
                    FRAME_PAD,
                )
            };
        }
        let frame = self.r.offset(cpu, at);
        // SAFETY: the frame fits its block (at most MAX_FRAME < RING_ELEM - offset bytes).
        unsafe {
            std::ptr::write_unaligned(data.add(frame).cast::<u32>(), total as u32);
            std::ptr::write_unaligned(data.add(frame + 4).cast::<u32>(), 0);
            std::ptr::copy_nonoverlapping(
                payload.as_ptr(),
                data.add(frame + FRAME_HDR as usize),
                payload.len(),
            );
        }
        pos_word(&self.r.pos, cpu, std::mem::offset_of!(RingPos, prod))
            .store(end, Ordering::Release);
        true
    }

    /// Overwrites 4 bytes at `cpu`'s ring position `pos` (tests: corrupt a frame header).
    #[doc(hidden)]
    pub fn poke_u32(&mut self, cpu: u32, pos: u64, value: u32) {
        let at = self.r.offset(cpu.min(self.r.cpus - 1), pos & !7);
        // SAFETY: inside the mapping, 8 bytes before the block's end (8-aligned offset).
        unsafe { std::ptr::write_unaligned(self.r.data.ptr.as_ptr().add(at).cast::<u32>(), value) };
    }

    /// Overwrites ring bytes from `cpu`'s block 0, offset 0 on, as far as they reach into
    /// the CPU's blocks (fuzzing: arbitrary ring contents).
    #[doc(hidden)]
    pub fn poke_blocks(&mut self, cpu: u32, bytes: &[u8]) {
        let first = cpu.min(self.r.cpus - 1) as usize * self.r.blocks as usize;
        for (i, chunk) in bytes
            .chunks(RING_BLOCK as usize)
            .take(self.r.blocks as usize)
            .enumerate()
        {
            let at = (first + i) * RING_ELEM as usize;
            // SAFETY: element first + i exists (i < blocks) and a chunk is at most one block.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    chunk.as_ptr(),
                    self.r.data.ptr.as_ptr().add(at),
                    chunk.len(),
                )
            };
        }
    }

    /// Sets `cpu`'s published end (tests: a producer position that cannot be).
    #[doc(hidden)]
    pub fn set_prod(&mut self, cpu: u32, prod: u64) {
        pos_word(
            &self.r.pos,
            cpu.min(self.r.cpus - 1),
            std::mem::offset_of!(RingPos, prod),
        )
        .store(prod, Ordering::Release);
    }
}

/// Blocks per CPU for a requested ring size: a power of two, at least one block.
pub fn blocks_for(bytes_per_cpu: u64) -> u32 {
    let blocks = bytes_per_cpu
        .div_ceil(BLOCK)
        .clamp(1, u64::from(MAX_BLOCKS));
    (blocks as u32).next_power_of_two().min(MAX_BLOCKS)
}

/// The bytes of a ring asked for with `bytes_per_cpu`, after [`blocks_for`]'s rounding.
pub fn ring_bytes(bytes_per_cpu: u64) -> u64 {
    u64::from(blocks_for(bytes_per_cpu)) << RING_BLOCK_SHIFT
}

/// Largest ring per CPU: 4096 blocks of 64 KiB (256 MiB).
pub const MAX_BLOCKS: u32 = 4096;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_counts() {
        assert_eq!(blocks_for(0), 1);
        assert_eq!(blocks_for(1), 1);
        assert_eq!(blocks_for(BLOCK), 1);
        assert_eq!(blocks_for(BLOCK + 1), 2);
        assert_eq!(blocks_for(3 * BLOCK), 4);
        assert_eq!(blocks_for(4 << 20), 64);
        assert_eq!(blocks_for(u64::MAX), MAX_BLOCKS);
        assert_eq!(ring_bytes(1), BLOCK);
        assert_eq!(ring_bytes(3 << 20), 4 << 20);
    }

    fn payload(tag: u8, len: usize) -> Vec<u8> {
        (0..len).map(|i| tag.wrapping_add(i as u8)).collect()
    }

    fn drain_all(r: &mut TestRings) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        r.drain(|rec| out.push(rec.to_vec()));
        out
    }

    /// Frames come back exactly, with their 8-byte padding (the record parser ignores it).
    fn unpadded(rec: &[u8], len: usize) -> &[u8] {
        assert_eq!(
            rec.len(),
            len.next_multiple_of(8),
            "frame payload is padded to 8"
        );
        &rec[..len]
    }

    #[test]
    fn records_come_back_in_order_per_cpu_across_blocks_and_wraps() {
        // 2 CPUs x 2 blocks; records of 1000 bytes: 65 fit a block, then a pad frame.
        let mut r = TestRings::new(2, 2).unwrap();
        let mut expect: [Vec<Vec<u8>>; 2] = Default::default();
        let mut seq = 0u32;
        for _round in 0..20 {
            for _ in 0..100 {
                for cpu in 0..2 {
                    let p = payload(seq as u8, 993 + (seq % 7) as usize);
                    assert!(r.produce(cpu, &p), "room for record {seq}");
                    expect[cpu as usize].push(p);
                    seq += 1;
                }
            }
            let got = drain_all(&mut r);
            // CPU 0's records first, then CPU 1's, each in order.
            let flat: Vec<&Vec<u8>> = expect[0].iter().chain(expect[1].iter()).collect();
            assert_eq!(got.len(), flat.len());
            for (g, e) in got.iter().zip(flat) {
                assert_eq!(unpadded(g, e.len()), &e[..]);
            }
            expect = Default::default();
        }
        let s = r.stats();
        assert_eq!(s.records, 4000);
        assert_eq!(s.bad_frames, 0);
        // Every byte of 20 x 100 records per CPU went through: frames plus pads.
        assert!(s.bytes > 4000 * 1000);
    }

    #[test]
    fn a_full_ring_refuses_until_read() {
        let mut r = TestRings::new(1, 1).unwrap();
        let p = payload(1, 1016); // 1024-byte frames: exactly 64 fill the block
        let mut n = 0;
        while r.produce(0, &p) {
            n += 1;
        }
        assert_eq!(n, 64);
        assert!(!r.produce(0, &p));
        assert_eq!(drain_all(&mut r).len(), 64);
        // Room again, after the reader's position moved.
        assert!(r.produce(0, &p));
        assert_eq!(drain_all(&mut r).len(), 1);
    }

    #[test]
    fn bad_frames_are_counted_and_skipped_to_the_next_block() {
        let mut r = TestRings::new(1, 4).unwrap();
        let p = payload(7, 100); // 112-byte frames
        for _ in 0..3 {
            assert!(r.produce(0, &p));
        }
        // Corrupt the second frame's length: not a multiple of 8.
        r.poke_u32(0, 112, 13);
        let got = drain_all(&mut r);
        assert_eq!(
            got.len(),
            1,
            "the first frame only; the rest of the block is skipped"
        );
        assert_eq!(r.stats().bad_frames, 1);
        // A length past the end of the block.
        let mut r = TestRings::new(1, 4).unwrap();
        assert!(r.produce(0, &p));
        r.poke_u32(0, 0, 70_000);
        assert!(drain_all(&mut r).is_empty());
        assert_eq!(r.stats().bad_frames, 1);
        // A producer position more than a ring ahead: skipped to, counted once.
        let mut r = TestRings::new(1, 1).unwrap();
        r.set_prod(0, 10 * BLOCK);
        assert!(drain_all(&mut r).is_empty());
        assert_eq!(r.stats().bad_frames, 1);
        // ...and reading goes on from there.
        assert!(r.produce(0, &p));
        assert_eq!(drain_all(&mut r).len(), 1);
        assert_eq!(r.stats().bad_frames, 1);
    }

    #[test]
    fn array_sizes_round_to_pages() {
        let page = page_size();
        assert_eq!(array_bytes(1, 192), page);
        assert_eq!(array_bytes(2, RING_ELEM as usize) % page, 0);
        assert!(array_bytes(2, RING_ELEM as usize) >= 2 * RING_ELEM as usize);
    }
}
