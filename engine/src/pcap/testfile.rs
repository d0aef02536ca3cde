//! Test-only builders of pcap and pcapng bytes in either byte order, independent of the
//! writers, so the reader is checked on layouts the writers never produce (big-endian
//! sections, other resolutions, simple and obsolete packet blocks, unknown blocks).

use crate::wire::Endian;

pub(super) struct Ng {
    pub buf: Vec<u8>,
    /// Offset just past every block written, in order.
    pub ends: Vec<usize>,
    /// For each block: does it carry a packet the reader should emit?
    pub is_packet: Vec<bool>,
    e: Endian,
}

fn u16b(e: Endian, v: u16) -> [u8; 2] {
    match e {
        Endian::Little => v.to_le_bytes(),
        Endian::Big => v.to_be_bytes(),
        Endian::Native => v.to_ne_bytes(),
    }
}

fn u32b(e: Endian, v: u32) -> [u8; 4] {
    match e {
        Endian::Little => v.to_le_bytes(),
        Endian::Big => v.to_be_bytes(),
        Endian::Native => v.to_ne_bytes(),
    }
}

pub(super) fn pad(v: &mut Vec<u8>) {
    while !v.len().is_multiple_of(4) {
        v.push(0);
    }
}

pub(super) fn opts(e: Endian, list: &[(u16, &[u8])]) -> Vec<u8> {
    let mut v = Vec::new();
    for (code, value) in list {
        v.extend_from_slice(&u16b(e, *code));
        v.extend_from_slice(&u16b(e, value.len() as u16));
        v.extend_from_slice(value);
        pad(&mut v);
    }
    if !list.is_empty() {
        v.extend_from_slice(&[0; 4]);
    }
    v
}

impl Ng {
    pub fn new(e: Endian) -> Self {
        Ng {
            buf: Vec::new(),
            ends: Vec::new(),
            is_packet: Vec::new(),
            e,
        }
    }

    /// Switches the byte order used for the following blocks (call before `shb`).
    pub fn endian(&mut self, e: Endian) {
        self.e = e;
    }

    pub fn u16(&self, v: u16) -> [u8; 2] {
        u16b(self.e, v)
    }

    pub fn u32(&self, v: u32) -> [u8; 4] {
        u32b(self.e, v)
    }

    pub fn block(&mut self, t: u32, body: &[u8], packet: bool) {
        let total = 12 + body.len() as u32;
        let (tb, lb) = (self.u32(t), self.u32(total));
        self.buf.extend_from_slice(&tb);
        self.buf.extend_from_slice(&lb);
        self.buf.extend_from_slice(body);
        self.buf.extend_from_slice(&lb);
        self.ends.push(self.buf.len());
        self.is_packet.push(packet);
    }

    pub fn shb(&mut self, major: u16) {
        let mut b = Vec::new();
        b.extend_from_slice(&self.u32(0x1A2B_3C4D));
        b.extend_from_slice(&self.u16(major));
        b.extend_from_slice(&self.u16(0));
        b.extend_from_slice(&[0xff; 8]);
        b.extend_from_slice(&opts(self.e, &[(4, b"test builder")]));
        self.block(0x0A0D_0D0A, &b, false);
    }

    pub fn idb(&mut self, linktype: u16, snaplen: u32, options: &[(u16, &[u8])]) {
        let mut b = Vec::new();
        b.extend_from_slice(&self.u16(linktype));
        b.extend_from_slice(&self.u16(0));
        b.extend_from_slice(&self.u32(snaplen));
        b.extend_from_slice(&opts(self.e, options));
        self.block(1, &b, false);
    }

    pub fn epb(
        &mut self,
        id: u32,
        units: u64,
        data: &[u8],
        orig: u32,
        options: &[(u16, &[u8])],
        packet: bool,
    ) {
        let mut b = Vec::new();
        b.extend_from_slice(&self.u32(id));
        b.extend_from_slice(&self.u32((units >> 32) as u32));
        b.extend_from_slice(&self.u32(units as u32));
        b.extend_from_slice(&self.u32(data.len() as u32));
        b.extend_from_slice(&self.u32(orig));
        b.extend_from_slice(data);
        pad(&mut b);
        b.extend_from_slice(&opts(self.e, options));
        self.block(6, &b, packet);
    }

    pub fn pb(&mut self, id: u16, units: u64, data: &[u8], orig: u32, options: &[(u16, &[u8])]) {
        let mut b = Vec::new();
        b.extend_from_slice(&self.u16(id));
        b.extend_from_slice(&self.u16(0));
        b.extend_from_slice(&self.u32((units >> 32) as u32));
        b.extend_from_slice(&self.u32(units as u32));
        b.extend_from_slice(&self.u32(data.len() as u32));
        b.extend_from_slice(&self.u32(orig));
        b.extend_from_slice(data);
        pad(&mut b);
        b.extend_from_slice(&opts(self.e, options));
        self.block(2, &b, true);
    }

    pub fn spb(&mut self, orig: u32, data: &[u8]) {
        let mut b = Vec::new();
        b.extend_from_slice(&self.u32(orig));
        b.extend_from_slice(data);
        pad(&mut b);
        self.block(3, &b, true);
    }
}

/// A classic pcap file: `magic` written in byte order `e`; records (sec, frac, data, orig).
pub(super) fn pcap(
    e: Endian,
    magic: u32,
    linktype: u32,
    records: &[(u32, u32, &[u8], u32)],
) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&u32b(e, magic));
    v.extend_from_slice(&u16b(e, 2));
    v.extend_from_slice(&u16b(e, 4));
    v.extend_from_slice(&[0; 8]);
    v.extend_from_slice(&u32b(e, 65535));
    v.extend_from_slice(&u32b(e, linktype));
    let modified = magic == 0xa1b2_cd34;
    for (sec, frac, data, orig) in records {
        v.extend_from_slice(&u32b(e, *sec));
        v.extend_from_slice(&u32b(e, *frac));
        v.extend_from_slice(&u32b(e, data.len() as u32));
        v.extend_from_slice(&u32b(e, *orig));
        if modified {
            v.extend_from_slice(&u32b(e, 9));
            v.extend_from_slice(&[0; 4]);
        }
        v.extend_from_slice(data);
    }
    v
}

/// A minimal IPv4/UDP packet of `len` bytes (`len` >= 28), without Ethernet.
pub(super) fn ipv4_udp(len: usize, seed: u8) -> Vec<u8> {
    let n = len.max(28);
    let mut p = vec![0u8; n];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(n as u16).to_be_bytes());
    p[8] = 64;
    p[9] = 17;
    p[12..16].copy_from_slice(&[10, 0, 0, seed]);
    p[16..20].copy_from_slice(&[10, 0, 1, 1]);
    p[20..22].copy_from_slice(&4000u16.to_be_bytes());
    p[22..24].copy_from_slice(&53u16.to_be_bytes());
    p[24..26].copy_from_slice(&((n - 20) as u16).to_be_bytes());
    for (i, b) in p.iter_mut().enumerate().skip(28) {
        *b = (i as u8).wrapping_add(seed);
    }
    p
}

/// `ipv4_udp` behind an Ethernet header.
pub(super) fn eth_ipv4_udp(len: usize, seed: u8) -> Vec<u8> {
    let mut p = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, seed, 0x08, 0x00];
    p.extend_from_slice(&ipv4_udp(len.saturating_sub(14), seed));
    p
}
