//! Small packet builders for seeds and tests: IPv4 / IPv6 headers with valid checksums, UDP,
//! TCP (with options) and ICMP echo requests, as hosts send them.

use std::net::{Ipv4Addr, Ipv6Addr};

use causeway_wire::checksum;
use causeway_wire::ip::{self, PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP};

pub fn a4(s: &str) -> [u8; 4] {
    s.parse::<Ipv4Addr>().expect("IPv4 literal").octets()
}

pub fn a6(s: &str) -> [u8; 16] {
    s.parse::<Ipv6Addr>().expect("IPv6 literal").octets()
}

/// An IPv4 packet: 20-byte header plus `opts` (padded to 4 bytes), identification 0x1234.
pub fn v4_with(
    src: [u8; 4],
    dst: [u8; 4],
    proto: u8,
    ttl: u8,
    df: bool,
    opts: &[u8],
    l4: &[u8],
) -> Vec<u8> {
    let mut o = opts.to_vec();
    while !o.len().is_multiple_of(4) {
        o.push(0);
    }
    let hl = 20 + o.len();
    let total = hl + l4.len();
    let mut p = vec![0u8; total];
    p[0] = 0x40 | (hl / 4) as u8;
    p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    p[4..6].copy_from_slice(&0x1234u16.to_be_bytes());
    if df {
        p[6] = 0x40;
    }
    p[8] = ttl;
    p[9] = proto;
    p[12..16].copy_from_slice(&src);
    p[16..20].copy_from_slice(&dst);
    p[20..hl].copy_from_slice(&o);
    ip::set_v4_checksum(&mut p[..hl]);
    p[hl..].copy_from_slice(l4);
    p
}

pub fn v4(src: [u8; 4], dst: [u8; 4], proto: u8, ttl: u8, df: bool, l4: &[u8]) -> Vec<u8> {
    v4_with(src, dst, proto, ttl, df, &[], l4)
}

/// An IPv6 packet; `ext` is a chain of extension headers whose first has type `next` and whose
/// last names `proto`, or empty (then `next` is the upper-layer protocol).
pub fn v6(src: [u8; 16], dst: [u8; 16], next: u8, hop: u8, ext: &[u8], l4: &[u8]) -> Vec<u8> {
    let plen = ext.len() + l4.len();
    let mut p = vec![0u8; 40];
    p[0] = 0x60;
    p[4..6].copy_from_slice(&(plen as u16).to_be_bytes());
    p[6] = next;
    p[7] = hop;
    p[8..24].copy_from_slice(&src);
    p[24..40].copy_from_slice(&dst);
    p.extend_from_slice(ext);
    p.extend_from_slice(l4);
    p
}

/// A UDP header and payload (checksum left 0: "none" for IPv4).
pub fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut u = vec![0u8; 8];
    u[0..2].copy_from_slice(&sport.to_be_bytes());
    u[2..4].copy_from_slice(&dport.to_be_bytes());
    u[4..6].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    u.extend_from_slice(payload);
    u
}

/// A TCP segment with `opts` (padded to 4 bytes) and a zero checksum.
pub fn tcp(sport: u16, dport: u16, seq: u32, flags: u8, opts: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut o = opts.to_vec();
    while !o.len().is_multiple_of(4) {
        o.push(1); // NOP
    }
    let hl = 20 + o.len();
    let mut t = vec![0u8; hl];
    t[0..2].copy_from_slice(&sport.to_be_bytes());
    t[2..4].copy_from_slice(&dport.to_be_bytes());
    t[4..8].copy_from_slice(&seq.to_be_bytes());
    t[8..12].copy_from_slice(&1u32.to_be_bytes());
    t[12] = ((hl / 4) as u8) << 4;
    t[13] = flags;
    t[14..16].copy_from_slice(&64240u16.to_be_bytes());
    t[20..hl].copy_from_slice(&o);
    t.extend_from_slice(payload);
    t
}

/// Fills in the TCP (or UDP) checksum of the upper-layer header at `l4` of packet `p`.
pub fn fix_l4_checksum(p: &mut [u8], l4: usize) {
    let (v6, proto) = if p[0] >> 4 == 6 {
        (true, p[6])
    } else {
        (false, p[9])
    };
    let at = l4 + if proto == PROTO_UDP { 6 } else { 16 };
    p[at] = 0;
    p[at + 1] = 0;
    let len = p.len() - l4;
    let pseudo = if v6 {
        checksum::pseudo_v6(
            p[8..24].try_into().unwrap(),
            p[24..40].try_into().unwrap(),
            proto,
            len as u32,
        )
    } else {
        checksum::pseudo_v4(
            p[12..16].try_into().unwrap(),
            p[16..20].try_into().unwrap(),
            proto,
            len as u16,
        )
    };
    let c = checksum::finish(checksum::add(pseudo, &p[l4..]));
    p[at..at + 2].copy_from_slice(&c.to_be_bytes());
}

/// An IPv4 TCP packet with a valid TCP checksum.
pub fn tcp_v4(
    src: [u8; 4],
    dst: [u8; 4],
    seq: u32,
    flags: u8,
    opts: &[u8],
    payload: &[u8],
) -> Vec<u8> {
    let mut p = v4(
        src,
        dst,
        PROTO_TCP,
        64,
        true,
        &tcp(40000, 5201, seq, flags, opts, payload),
    );
    fix_l4_checksum(&mut p, 20);
    p
}

/// An IPv6 TCP packet with a valid TCP checksum.
pub fn tcp_v6(
    src: [u8; 16],
    dst: [u8; 16],
    seq: u32,
    flags: u8,
    opts: &[u8],
    payload: &[u8],
) -> Vec<u8> {
    let mut p = v6(
        src,
        dst,
        PROTO_TCP,
        64,
        &[],
        &tcp(40000, 5201, seq, flags, opts, payload),
    );
    fix_l4_checksum(&mut p, 40);
    p
}

/// An ICMP echo request (IPv4) with a valid checksum.
pub fn ping_v4(src: [u8; 4], dst: [u8; 4], ttl: u8, payload: &[u8]) -> Vec<u8> {
    let mut icmp = vec![8, 0, 0, 0, 0x12, 0x34, 0, 1];
    icmp.extend_from_slice(payload);
    let c = checksum::of(&icmp);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    v4(src, dst, PROTO_ICMP, ttl, false, &icmp)
}

/// An ICMPv6 echo request with a valid checksum.
pub fn ping_v6(src: [u8; 16], dst: [u8; 16], hop: u8, payload: &[u8]) -> Vec<u8> {
    let mut icmp = vec![128, 0, 0, 0, 0x12, 0x34, 0, 1];
    icmp.extend_from_slice(payload);
    let mut p = v6(src, dst, PROTO_ICMPV6, hop, &[], &icmp);
    let sum = checksum::pseudo_v6(src, dst, PROTO_ICMPV6, icmp.len() as u32);
    let c = checksum::finish(checksum::add(sum, &p[40..]));
    p[42..44].copy_from_slice(&c.to_be_bytes());
    p
}

/// A payload of `n` bytes counting up.
pub fn counting(n: usize) -> Vec<u8> {
    (0..n).map(|i| i as u8).collect()
}
