//! IPv4 (RFC 791) and IPv6 (RFC 8200) headers: a checked summary of what the pipeline needs,
//! in-place TTL/hop-limit decrement, and IPv4 fragmentation.

use crate::{checksum, Malformed};

pub const PROTO_HOPOPT: u8 = 0;
pub const PROTO_ICMP: u8 = 1;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;
pub const PROTO_IPV6_ROUTE: u8 = 43;
pub const PROTO_IPV6_FRAG: u8 = 44;
pub const PROTO_ESP: u8 = 50;
pub const PROTO_AH: u8 = 51;
pub const PROTO_ICMPV6: u8 = 58;
pub const PROTO_IPV6_NONXT: u8 = 59;
pub const PROTO_IPV6_OPTS: u8 = 60;

pub const IPV4_HEADER_LEN: usize = 20;
pub const IPV6_HEADER_LEN: usize = 40;

/// What the pipeline needs to know about an IP packet, read once after all lengths were checked.
/// Addresses are right-aligned in a `u128` (IPv4 in the low 32 bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpSummary {
    /// 4 or 6.
    pub version: u8,
    pub src: u128,
    pub dst: u128,
    /// Length of the IP header (IPv4 with options; IPv6 fixed header only).
    pub header_len: usize,
    /// Bytes of the packet per its own length fields (may be shorter than the buffer).
    pub total_len: usize,
    /// TTL or hop limit.
    pub ttl: u8,
    /// Upper-layer protocol after skipping IPv6 extension headers (`PROTO_IPV6_NONXT` when the
    /// chain could not be followed within the packet).
    pub proto: u8,
    /// Offset of the upper-layer header from the start of the IP header.
    pub l4_offset: usize,
    /// IPv4 Don't Fragment flag (always true for IPv6, which routers never fragment).
    pub dont_fragment: bool,
    /// IPv4 MF set or offset non-zero; IPv6 fragment header present.
    pub is_fragment: bool,
    /// A fragment other than the first one (its upper-layer header is elsewhere).
    pub is_later_fragment: bool,
}

impl IpSummary {
    /// Parses and checks an IPv4 or IPv6 packet at the start of `buf`. For IPv4 the header
    /// checksum is verified when `verify_checksum` is set.
    pub fn parse(buf: &[u8], verify_checksum: bool) -> Result<IpSummary, Malformed> {
        match buf.first().map(|b| b >> 4) {
            None => Err(Malformed::Truncated),
            Some(4) => parse_v4(buf, verify_checksum),
            Some(6) => parse_v6(buf),
            Some(_) => Err(Malformed::BadVersion),
        }
    }

    pub fn is_v4(&self) -> bool {
        self.version == 4
    }
}

fn parse_v4(buf: &[u8], verify_checksum: bool) -> Result<IpSummary, Malformed> {
    if buf.len() < IPV4_HEADER_LEN {
        return Err(Malformed::Truncated);
    }
    let ihl = usize::from(buf[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([buf[2], buf[3]]));
    if ihl < IPV4_HEADER_LEN || total < ihl || buf.len() < ihl {
        return Err(Malformed::BadLength);
    }
    if total > buf.len() {
        return Err(Malformed::BadLength);
    }
    if verify_checksum && checksum::of(&buf[..ihl]) != 0 {
        return Err(Malformed::BadChecksum);
    }
    let flags_frag = u16::from_be_bytes([buf[6], buf[7]]);
    let offset = flags_frag & 0x1fff;
    let mf = flags_frag & 0x2000 != 0;
    if usize::from(offset) * 8 + (total - ihl) > 0xffff {
        // A fragment that ends beyond 65 535 bytes belongs to no datagram (RFC 791; the "ping
        // of death"). Refragmenting it would wrap the 13-bit offset field.
        return Err(Malformed::BadLength);
    }
    Ok(IpSummary {
        version: 4,
        src: u128::from(u32::from_be_bytes([buf[12], buf[13], buf[14], buf[15]])),
        dst: u128::from(u32::from_be_bytes([buf[16], buf[17], buf[18], buf[19]])),
        header_len: ihl,
        total_len: total,
        ttl: buf[8],
        proto: buf[9],
        l4_offset: ihl,
        dont_fragment: flags_frag & 0x4000 != 0,
        is_fragment: mf || offset != 0,
        is_later_fragment: offset != 0,
    })
}

fn parse_v6(buf: &[u8]) -> Result<IpSummary, Malformed> {
    if buf.len() < IPV6_HEADER_LEN {
        return Err(Malformed::Truncated);
    }
    let payload = usize::from(u16::from_be_bytes([buf[4], buf[5]]));
    let total = IPV6_HEADER_LEN + payload;
    if payload == 0 && buf[6] == PROTO_HOPOPT {
        // A jumbogram (RFC 2675): not carried by this gateway.
        return Err(Malformed::BadLength);
    }
    if total > buf.len() {
        return Err(Malformed::BadLength);
    }
    let mut src = [0u8; 16];
    src.copy_from_slice(&buf[8..24]);
    let mut dst = [0u8; 16];
    dst.copy_from_slice(&buf[24..40]);
    // Follow the extension header chain, bounded by the packet and a small count.
    let mut next = buf[6];
    let mut off = IPV6_HEADER_LEN;
    let mut is_fragment = false;
    let mut is_later_fragment = false;
    for _ in 0..8 {
        match next {
            PROTO_HOPOPT | PROTO_IPV6_ROUTE | PROTO_IPV6_OPTS => {
                if off + 2 > total {
                    next = PROTO_IPV6_NONXT;
                    break;
                }
                let len = (usize::from(buf[off + 1]) + 1) * 8;
                next = buf[off];
                off += len;
            }
            PROTO_IPV6_FRAG => {
                if off + 8 > total {
                    next = PROTO_IPV6_NONXT;
                    break;
                }
                is_fragment = true;
                let fo = u16::from_be_bytes([buf[off + 2], buf[off + 3]]) & 0xfff8;
                is_later_fragment = fo != 0;
                next = buf[off];
                off += 8;
            }
            _ => break,
        }
    }
    if off > total {
        next = PROTO_IPV6_NONXT;
        off = total;
    }
    Ok(IpSummary {
        version: 6,
        src: u128::from_be_bytes(src),
        dst: u128::from_be_bytes(dst),
        header_len: IPV6_HEADER_LEN,
        total_len: total,
        ttl: buf[7],
        proto: next,
        l4_offset: off,
        dont_fragment: true,
        is_fragment,
        is_later_fragment,
    })
}

/// Decrements the TTL (IPv4, updating the header checksum incrementally, RFC 1624) or the hop
/// limit (IPv6) of a packet already checked by [`IpSummary::parse`]. The caller has checked
/// that the value is above 1.
pub fn decrement_ttl(pkt: &mut [u8], version: u8) {
    if version == 4 {
        let old = u16::from_be_bytes([pkt[8], pkt[9]]);
        pkt[8] -= 1;
        let new = u16::from_be_bytes([pkt[8], pkt[9]]);
        let check = u16::from_be_bytes([pkt[10], pkt[11]]);
        let check = checksum::update16(check, old, new);
        pkt[10..12].copy_from_slice(&check.to_be_bytes());
    } else {
        pkt[7] -= 1;
    }
}

/// Writes a fresh IPv4 header checksum.
pub fn set_v4_checksum(header: &mut [u8]) {
    header[10] = 0;
    header[11] = 0;
    let c = checksum::of(header);
    header[10..12].copy_from_slice(&c.to_be_bytes());
}

/// Options that must be copied into every fragment (RFC 791: the "copied" flag), written to
/// `out`; returns their length padded to a multiple of 4.
fn copied_options(opts: &[u8], out: &mut [u8; 40]) -> usize {
    let mut i = 0;
    let mut n = 0;
    while i < opts.len() {
        let kind = opts[i];
        match kind {
            0 => break,
            1 => {
                i += 1;
                continue;
            }
            _ => {
                let Some(&len) = opts.get(i + 1) else { break };
                let len = usize::from(len);
                if len < 2 || i + len > opts.len() {
                    break;
                }
                if kind & 0x80 != 0 && n + len <= out.len() {
                    out[n..n + len].copy_from_slice(&opts[i..i + len]);
                    n += len;
                }
                i += len;
            }
        }
    }
    while n % 4 != 0 {
        out[n] = 0;
        n += 1;
    }
    n
}

/// Fragments an IPv4 packet (already checked, DF clear) so that every fragment fits `mtu`,
/// building each fragment in `scratch` and handing it to `emit`. Works on packets that are
/// fragments already (offsets and MF are carried over). Returns the number of fragments, or
/// `None` when the MTU is too small to carry 8 bytes of payload beside the header, or
/// `scratch` is smaller than `mtu`, or (a caller's bug, refused rather than a panic) the header
/// lengths are not those of a checked packet.
pub fn fragment_v4(
    pkt: &[u8],
    mtu: usize,
    scratch: &mut [u8],
    mut emit: impl FnMut(&[u8]),
) -> Option<usize> {
    if pkt.len() < IPV4_HEADER_LEN {
        return None;
    }
    let ihl = usize::from(pkt[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([pkt[2], pkt[3]]));
    if scratch.len() < mtu || total > pkt.len() || ihl > total || ihl < IPV4_HEADER_LEN {
        return None;
    }
    let flags_frag = u16::from_be_bytes([pkt[6], pkt[7]]);
    let base_offset = usize::from(flags_frag & 0x1fff) * 8;
    let last_mf = flags_frag & 0x2000 != 0;
    let payload = &pkt[ihl..total];
    if base_offset + payload.len() > 0xffff {
        // Offsets of the pieces would not fit the 13-bit field (`IpSummary::parse` refuses
        // such a fragment already).
        return None;
    }
    let mut later_opts = [0u8; 40];
    let later_opts_len = copied_options(&pkt[IPV4_HEADER_LEN..ihl], &mut later_opts);
    let mut done = 0;
    let mut count = 0;
    while done < payload.len() || count == 0 {
        let hlen = if count == 0 {
            ihl
        } else {
            IPV4_HEADER_LEN + later_opts_len
        };
        if mtu < hlen + 8 {
            return None;
        }
        let room = (mtu - hlen) & !7;
        let left = payload.len() - done;
        let (take, last) = if left <= mtu - hlen {
            (left, true)
        } else {
            (room, false)
        };
        let out = &mut scratch[..hlen + take];
        out[..IPV4_HEADER_LEN].copy_from_slice(&pkt[..IPV4_HEADER_LEN]);
        if count == 0 {
            out[IPV4_HEADER_LEN..ihl].copy_from_slice(&pkt[IPV4_HEADER_LEN..ihl]);
        } else {
            out[IPV4_HEADER_LEN..hlen].copy_from_slice(&later_opts[..later_opts_len]);
        }
        out[0] = 0x40 | (hlen / 4) as u8;
        out[2..4].copy_from_slice(&((hlen + take) as u16).to_be_bytes());
        let off = (base_offset + done) / 8;
        let mf = !last || last_mf;
        let ff = (flags_frag & 0x8000) | if mf { 0x2000 } else { 0 } | (off as u16 & 0x1fff);
        out[6..8].copy_from_slice(&ff.to_be_bytes());
        out[hlen..].copy_from_slice(&payload[done..done + take]);
        set_v4_checksum(&mut out[..hlen]);
        emit(out);
        done += take;
        count += 1;
        if last {
            break;
        }
    }
    Some(count)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A valid IPv4 packet with `payload_len` bytes of UDP-ish payload.
    pub fn v4_packet(payload_len: usize, df: bool, ttl: u8) -> Vec<u8> {
        let total = 20 + payload_len;
        let mut p = vec![0u8; total];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        p[4..6].copy_from_slice(&0x1234u16.to_be_bytes());
        if df {
            p[6] = 0x40;
        }
        p[8] = ttl;
        p[9] = PROTO_UDP;
        p[12..16].copy_from_slice(&[10, 1, 0, 10]);
        p[16..20].copy_from_slice(&[10, 2, 0, 10]);
        for (i, b) in p[20..].iter_mut().enumerate() {
            *b = i as u8;
        }
        set_v4_checksum(&mut p[..20]);
        p
    }

    pub fn v6_packet(payload_len: usize, hop: u8) -> Vec<u8> {
        let mut p = vec![0u8; 40 + payload_len];
        p[0] = 0x60;
        p[4..6].copy_from_slice(&(payload_len as u16).to_be_bytes());
        p[6] = PROTO_UDP;
        p[7] = hop;
        p[8..24].copy_from_slice(&"fd00:1::10".parse::<std::net::Ipv6Addr>().unwrap().octets());
        p[24..40].copy_from_slice(&"fd00:2::10".parse::<std::net::Ipv6Addr>().unwrap().octets());
        p
    }

    #[test]
    fn parses_v4() {
        let p = v4_packet(100, true, 64);
        let s = IpSummary::parse(&p, true).unwrap();
        assert_eq!(s.version, 4);
        assert_eq!(s.total_len, 120);
        assert_eq!(s.src, 0x0a01000a);
        assert_eq!(s.dst, 0x0a02000a);
        assert!(s.dont_fragment);
        assert!(!s.is_fragment);
        assert_eq!(s.proto, PROTO_UDP);
    }

    #[test]
    fn rejects_bad_v4() {
        let p = v4_packet(100, true, 64);
        assert_eq!(IpSummary::parse(&p[..19], true), Err(Malformed::Truncated));
        assert_eq!(IpSummary::parse(&p[..60], true), Err(Malformed::BadLength));
        let mut q = p.clone();
        q[0] = 0x44;
        assert_eq!(IpSummary::parse(&q, false), Err(Malformed::BadLength));
        let mut q = p.clone();
        q[8] ^= 1;
        assert_eq!(IpSummary::parse(&q, true), Err(Malformed::BadChecksum));
        let mut q = p.clone();
        q[0] = 0x55;
        assert_eq!(IpSummary::parse(&q, true), Err(Malformed::BadVersion));
        let mut q = p.clone();
        q[2..4].copy_from_slice(&10u16.to_be_bytes());
        assert_eq!(IpSummary::parse(&q, false), Err(Malformed::BadLength));
        assert_eq!(IpSummary::parse(&[], true), Err(Malformed::Truncated));
    }

    #[test]
    fn parses_v6_with_extension_headers() {
        let mut p = v6_packet(16, 64);
        p[6] = PROTO_IPV6_FRAG;
        p[40] = PROTO_UDP;
        p[42..44].copy_from_slice(&(8u16 << 3).to_be_bytes());
        let s = IpSummary::parse(&p, true).unwrap();
        assert_eq!(s.proto, PROTO_UDP);
        assert_eq!(s.l4_offset, 48);
        assert!(s.is_fragment && s.is_later_fragment);
        assert_eq!(IpSummary::parse(&p[..39], true), Err(Malformed::Truncated));
        assert_eq!(IpSummary::parse(&p[..50], true), Err(Malformed::BadLength));
    }

    #[test]
    fn ttl_decrement_keeps_checksum_valid() {
        let mut p = v4_packet(10, false, 2);
        decrement_ttl(&mut p, 4);
        assert_eq!(p[8], 1);
        assert_eq!(checksum::of(&p[..20]), 0);
        let mut q = v6_packet(0, 9);
        decrement_ttl(&mut q, 6);
        assert_eq!(q[7], 8);
    }

    /// Regression (fuzz target `pipeline_ingress`): a header whose IHL is below 5 (here 1, what
    /// a partial checksum completed over the IP header left in byte 0) made `fragment_v4` panic
    /// slicing its options (`pkt[20..4]`), in a data plane worker. It is refused instead.
    #[test]
    fn fragmenting_a_broken_header_is_refused_not_a_panic() {
        let mut p = v4_packet(1600, false, 64);
        p[0] = 0xf1;
        let mut scratch = vec![0u8; 1500];
        assert_eq!(
            fragment_v4(&p, 1400, &mut scratch, |_| panic!("no fragment")),
            None
        );
        assert_eq!(
            fragment_v4(&p[..3], 1400, &mut scratch, |_| panic!("no fragment")),
            None
        );
    }

    /// Regression (fuzz target `wire_parsers`): a fragment at offset 8191 (65 528 bytes) with
    /// 1 376 bytes of payload ends beyond 65 535. Fragmenting it again to 576 bytes wrapped the
    /// 13-bit offset of its pieces (66 080 / 8 written as 544 / 8), turning an impossible
    /// fragment into plausible ones at the start of a datagram. Such a fragment is malformed,
    /// and `fragment_v4` refuses it.
    #[test]
    fn a_fragment_ending_beyond_64k_is_malformed_and_not_refragmented() {
        let mut p = v4_packet(1376, false, 64);
        p[6..8].copy_from_slice(&0x3fffu16.to_be_bytes()); // MF, offset 8191
        set_v4_checksum(&mut p[..20]);
        assert_eq!(IpSummary::parse(&p, true), Err(Malformed::BadLength));
        let mut scratch = vec![0u8; 576];
        assert_eq!(
            fragment_v4(&p, 576, &mut scratch, |_| panic!("no fragment")),
            None
        );
        // The last fragment that fits: it ends at exactly 65 535.
        let mut q = v4_packet(65_535 - 65_528, false, 64);
        q[6..8].copy_from_slice(&0x1fffu16.to_be_bytes());
        set_v4_checksum(&mut q[..20]);
        assert!(IpSummary::parse(&q, true).is_ok());
    }

    #[test]
    fn fragments_reassemble_to_the_original() {
        let p = v4_packet(3000, false, 64);
        let mut scratch = vec![0u8; 1500];
        let mut frags: Vec<Vec<u8>> = Vec::new();
        let n = fragment_v4(&p, 1500, &mut scratch, |f| frags.push(f.to_vec())).unwrap();
        assert_eq!(n, 3);
        let mut payload = Vec::new();
        for (i, f) in frags.iter().enumerate() {
            assert!(f.len() <= 1500);
            let s = IpSummary::parse(f, true).unwrap();
            let ff = u16::from_be_bytes([f[6], f[7]]);
            assert_eq!(usize::from(ff & 0x1fff) * 8, payload.len());
            assert_eq!(ff & 0x2000 != 0, i < 2);
            assert!(s.is_fragment);
            payload.extend_from_slice(&f[20..]);
        }
        assert_eq!(payload, &p[20..]);
    }

    #[test]
    fn fragmenting_a_fragment_keeps_offset_and_mf() {
        let mut p = v4_packet(2000, false, 64);
        p[6..8].copy_from_slice(&(0x2000u16 | 100).to_be_bytes());
        set_v4_checksum(&mut p[..20]);
        let mut scratch = vec![0u8; 1500];
        let mut frags: Vec<Vec<u8>> = Vec::new();
        fragment_v4(&p, 1000, &mut scratch, |f| frags.push(f.to_vec())).unwrap();
        for f in &frags {
            let ff = u16::from_be_bytes([f[6], f[7]]);
            assert!(
                ff & 0x2000 != 0,
                "every piece of a non-last fragment keeps MF"
            );
            assert!(usize::from(ff & 0x1fff) >= 100);
        }
    }

    #[test]
    fn fragments_copy_only_copied_options() {
        let mut p = vec![0u8; 24 + 2000];
        p[0] = 0x46;
        p[2..4].copy_from_slice(&(2024u16).to_be_bytes());
        p[8] = 64;
        p[9] = PROTO_UDP;
        // Option 0x07 (record route, not copied) length 4.
        p[20..24].copy_from_slice(&[0x07, 4, 4, 0]);
        set_v4_checksum(&mut p[..24]);
        let mut scratch = vec![0u8; 1500];
        let mut lens = Vec::new();
        fragment_v4(&p, 1500, &mut scratch, |f| {
            lens.push(usize::from(f[0] & 0xf) * 4)
        })
        .unwrap();
        assert_eq!(lens, vec![24, 20]);
    }

    #[test]
    fn tiny_mtu_is_refused() {
        let p = v4_packet(100, false, 64);
        let mut scratch = vec![0u8; 1500];
        assert!(fragment_v4(&p, 24, &mut scratch, |_| {}).is_none());
    }
}
