//! ICMP (RFC 792) and ICMPv6 (RFC 4443) messages the gateway originates: errors that quote
//! the offending packet, and echo replies to pings of the gateway's own address.

use crate::checksum;
use crate::ip::{self, IpSummary, PROTO_ICMP, PROTO_ICMPV6};

pub const V4_ECHO_REPLY: u8 = 0;
pub const V4_DEST_UNREACHABLE: u8 = 3;
pub const V4_ECHO_REQUEST: u8 = 8;
pub const V4_TIME_EXCEEDED: u8 = 11;
/// Codes of destination unreachable.
pub const V4_CODE_NET_UNREACHABLE: u8 = 0;
pub const V4_CODE_HOST_UNREACHABLE: u8 = 1;
pub const V4_CODE_FRAG_NEEDED: u8 = 4;

pub const V6_DEST_UNREACHABLE: u8 = 1;
pub const V6_PACKET_TOO_BIG: u8 = 2;
pub const V6_TIME_EXCEEDED: u8 = 3;
pub const V6_ECHO_REQUEST: u8 = 128;
pub const V6_ECHO_REPLY: u8 = 129;
/// Code of destination unreachable: no route to destination.
pub const V6_CODE_NO_ROUTE: u8 = 0;

/// Largest ICMPv4 error datagram (RFC 1812 4.3.2.3: "not exceed 576 bytes").
pub const V4_ERROR_MAX: usize = 576;
/// Largest ICMPv6 error datagram (RFC 4443 2.4(c): the minimum IPv6 MTU).
pub const V6_ERROR_MAX: usize = 1280;

/// Default TTL / hop limit of packets the gateway originates.
pub const ORIGIN_TTL: u8 = 64;

/// Is this packet itself an ICMP error (which must never trigger another, RFC 1812 4.3.2.7,
/// RFC 4443 2.4(e))? Unknown ICMP types are treated as errors, to stay on the safe side.
pub fn is_icmp_error(pkt: &[u8], s: &IpSummary) -> bool {
    match (s.version, s.proto) {
        (4, PROTO_ICMP) => {
            if s.is_later_fragment {
                return true;
            }
            match pkt.get(s.l4_offset) {
                Some(&t) => !matches!(t, V4_ECHO_REQUEST | V4_ECHO_REPLY | 13 | 14),
                None => true,
            }
        }
        (6, PROTO_ICMPV6) => match pkt.get(s.l4_offset) {
            // Types 0..=127 are errors.
            Some(&t) => t < 128,
            None => true,
        },
        _ => false,
    }
}

/// May the gateway send an ICMP error about this packet at all? Not about ICMP errors, later
/// fragments, or packets from unspecified/multicast/broadcast/loopback sources (RFC 1812 4.3.2.7,
/// RFC 4443 2.4(e)).
pub fn may_send_error_about(pkt: &[u8], s: &IpSummary) -> bool {
    if is_icmp_error(pkt, s) || s.is_later_fragment {
        return false;
    }
    if s.version == 4 {
        let src = s.src as u32;
        let dst = s.dst as u32;
        let first = (src >> 24) as u8;
        !(src == 0
            || first == 127
            || (224..=255).contains(&first)
            || dst == u32::MAX
            || (224..=239).contains(&((dst >> 24) as u8)))
    } else {
        let src_first = (s.src >> 120) as u8;
        let dst_first = (s.dst >> 120) as u8;
        !(s.src == 0 || s.src == 1 || src_first == 0xff || dst_first == 0xff)
    }
}

/// Builds an ICMPv4 error from `from` about `orig` (which must be a checked IPv4 packet) into
/// `out`; `rest` is the 32-bit field after the checksum (next-hop MTU for "fragmentation
/// needed", else 0). Returns the datagram length. `out` must hold [`V4_ERROR_MAX`] bytes.
pub fn v4_error(orig: &[u8], from: [u8; 4], ty: u8, code: u8, rest: u32, out: &mut [u8]) -> usize {
    let orig_total = usize::from(u16::from_be_bytes([orig[2], orig[3]])).min(orig.len());
    let quote = orig_total.min(V4_ERROR_MAX - 28);
    let total = 28 + quote;
    let out = &mut out[..total];
    out[..20].fill(0);
    out[0] = 0x45;
    out[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    out[8] = ORIGIN_TTL;
    out[9] = PROTO_ICMP;
    out[12..16].copy_from_slice(&from);
    out[16..20].copy_from_slice(&orig[12..16]);
    ip::set_v4_checksum(&mut out[..20]);
    out[20] = ty;
    out[21] = code;
    out[22] = 0;
    out[23] = 0;
    out[24..28].copy_from_slice(&rest.to_be_bytes());
    out[28..].copy_from_slice(&orig[..quote]);
    let c = checksum::of(&out[20..]);
    out[22..24].copy_from_slice(&c.to_be_bytes());
    total
}

/// Builds an ICMPv6 error from `from` about `orig` (a checked IPv6 packet) into `out`
/// (at least [`V6_ERROR_MAX`] bytes). `rest` is the MTU for "packet too big", else 0.
pub fn v6_error(orig: &[u8], from: [u8; 16], ty: u8, code: u8, rest: u32, out: &mut [u8]) -> usize {
    let orig_total = (40 + usize::from(u16::from_be_bytes([orig[4], orig[5]]))).min(orig.len());
    let quote = orig_total.min(V6_ERROR_MAX - 48);
    let plen = 8 + quote;
    let total = 40 + plen;
    let out = &mut out[..total];
    write_v6_header(out, from, orig[8..24].try_into().unwrap_or([0; 16]), plen);
    out[40] = ty;
    out[41] = code;
    out[42] = 0;
    out[43] = 0;
    out[44..48].copy_from_slice(&rest.to_be_bytes());
    out[48..].copy_from_slice(&orig[..quote]);
    finish_icmpv6(out);
    total
}

fn write_v6_header(out: &mut [u8], src: [u8; 16], dst: [u8; 16], plen: usize) {
    out[..8].fill(0);
    out[0] = 0x60;
    out[4..6].copy_from_slice(&(plen as u16).to_be_bytes());
    out[6] = PROTO_ICMPV6;
    out[7] = ORIGIN_TTL;
    out[8..24].copy_from_slice(&src);
    out[24..40].copy_from_slice(&dst);
}

fn finish_icmpv6(out: &mut [u8]) {
    let mut src = [0u8; 16];
    src.copy_from_slice(&out[8..24]);
    let mut dst = [0u8; 16];
    dst.copy_from_slice(&out[24..40]);
    let plen = out.len() - 40;
    out[42] = 0;
    out[43] = 0;
    let sum = checksum::pseudo_v6(src, dst, PROTO_ICMPV6, plen as u32);
    let c = checksum::finish(checksum::add(sum, &out[40..]));
    out[42..44].copy_from_slice(&c.to_be_bytes());
}

/// If `req` (checked, summary `s`) is an ICMP/ICMPv6 echo request, writes the echo reply into
/// `out` and returns its length; the reply's source is the address that was pinged. Requests
/// with a bad ICMP checksum, fragments and oversized requests (beyond `out`) are not answered.
pub fn echo_reply(req: &[u8], s: &IpSummary, out: &mut [u8]) -> Option<usize> {
    if s.is_fragment || s.total_len > out.len() {
        return None;
    }
    let l4 = s.l4_offset;
    let body = req.get(l4..s.total_len)?;
    if body.len() < 8 {
        return None;
    }
    match s.version {
        4 if s.proto == PROTO_ICMP && body[0] == V4_ECHO_REQUEST && body[1] == 0 => {
            if checksum::of(body) != 0 {
                return None;
            }
            let total = 20 + body.len();
            let o = &mut out[..total];
            o[..20].fill(0);
            o[0] = 0x45;
            o[2..4].copy_from_slice(&(total as u16).to_be_bytes());
            o[8] = ORIGIN_TTL;
            o[9] = PROTO_ICMP;
            o[12..16].copy_from_slice(&req[16..20]);
            o[16..20].copy_from_slice(&req[12..16]);
            ip::set_v4_checksum(&mut o[..20]);
            o[20..].copy_from_slice(body);
            o[20] = V4_ECHO_REPLY;
            o[22] = 0;
            o[23] = 0;
            let c = checksum::of(&o[20..]);
            o[22..24].copy_from_slice(&c.to_be_bytes());
            Some(total)
        }
        6 if s.proto == PROTO_ICMPV6 && body[0] == V6_ECHO_REQUEST && body[1] == 0 => {
            let mut src = [0u8; 16];
            src.copy_from_slice(&req[8..24]);
            let mut dst = [0u8; 16];
            dst.copy_from_slice(&req[24..40]);
            let sum = checksum::pseudo_v6(src, dst, PROTO_ICMPV6, body.len() as u32);
            if checksum::finish(checksum::add(sum, body)) != 0 {
                return None;
            }
            let total = 40 + body.len();
            let o = &mut out[..total];
            write_v6_header(o, dst, src, body.len());
            o[40..].copy_from_slice(body);
            o[40] = V6_ECHO_REPLY;
            finish_icmpv6(o);
            Some(total)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ip::tests::{v4_packet, v6_packet};

    fn v4_echo(len: usize) -> Vec<u8> {
        let mut p = v4_packet(8 + len, false, 64);
        p[9] = PROTO_ICMP;
        ip::set_v4_checksum(&mut p[..20]);
        p[20] = V4_ECHO_REQUEST;
        p[21] = 0;
        p[22] = 0;
        p[23] = 0;
        let c = checksum::of(&p[20..]);
        p[22..24].copy_from_slice(&c.to_be_bytes());
        p
    }

    #[test]
    fn v4_error_quotes_and_checksums() {
        let orig = v4_packet(1000, true, 1);
        let mut out = [0u8; V4_ERROR_MAX];
        let n = v4_error(&orig, [10, 1, 255, 4], V4_TIME_EXCEEDED, 0, 0, &mut out);
        assert_eq!(n, V4_ERROR_MAX);
        let s = IpSummary::parse(&out[..n], true).unwrap();
        assert_eq!(s.proto, PROTO_ICMP);
        assert_eq!(s.src, 0x0a01ff04);
        assert_eq!(s.dst, 0x0a01000a);
        assert_eq!(checksum::of(&out[20..n]), 0);
        assert_eq!(&out[28..48], &orig[..20]);
        assert!(is_icmp_error(&out[..n], &s));
    }

    #[test]
    fn frag_needed_carries_mtu() {
        let orig = v4_packet(100, true, 64);
        let mut out = [0u8; V4_ERROR_MAX];
        let n = v4_error(
            &orig,
            [1, 2, 3, 4],
            V4_DEST_UNREACHABLE,
            V4_CODE_FRAG_NEEDED,
            1400,
            &mut out,
        );
        assert_eq!(n, 28 + 120);
        assert_eq!(u32::from_be_bytes(out[24..28].try_into().unwrap()), 1400);
    }

    #[test]
    fn v6_error_has_valid_checksum() {
        let orig = v6_packet(2000, 64);
        let mut out = [0u8; V6_ERROR_MAX];
        let gw: std::net::Ipv6Addr = "fd00:1:0:ffff::4".parse().unwrap();
        let n = v6_error(&orig, gw.octets(), V6_PACKET_TOO_BIG, 0, 1500, &mut out);
        assert_eq!(n, V6_ERROR_MAX);
        let s = IpSummary::parse(&out[..n], true).unwrap();
        assert_eq!(s.proto, PROTO_ICMPV6);
        let sum = checksum::pseudo_v6(
            out[8..24].try_into().unwrap(),
            out[24..40].try_into().unwrap(),
            PROTO_ICMPV6,
            (n - 40) as u32,
        );
        assert_eq!(checksum::finish(checksum::add(sum, &out[40..n])), 0);
        assert_eq!(&out[24..40], &orig[8..24]);
        assert!(is_icmp_error(&out[..n], &s));
    }

    #[test]
    fn answers_v4_echo() {
        let req = v4_echo(56);
        let s = IpSummary::parse(&req, true).unwrap();
        assert!(!is_icmp_error(&req, &s));
        let mut out = [0u8; 2048];
        let n = echo_reply(&req, &s, &mut out).unwrap();
        assert_eq!(n, req.len());
        assert_eq!(out[20], V4_ECHO_REPLY);
        assert_eq!(&out[12..16], &req[16..20]);
        assert_eq!(&out[16..20], &req[12..16]);
        assert_eq!(checksum::of(&out[..20]), 0);
        assert_eq!(checksum::of(&out[20..n]), 0);
        assert_eq!(&out[24..n], &req[24..]);
        // A corrupted request is not answered.
        let mut bad = req.clone();
        bad[30] ^= 0xff;
        assert!(echo_reply(&bad, &s, &mut out).is_none());
    }

    #[test]
    fn answers_v6_echo() {
        let mut req = v6_packet(16, 64);
        req[6] = PROTO_ICMPV6;
        req[40] = V6_ECHO_REQUEST;
        let sum = checksum::pseudo_v6(
            req[8..24].try_into().unwrap(),
            req[24..40].try_into().unwrap(),
            PROTO_ICMPV6,
            16,
        );
        let c = checksum::finish(checksum::add(sum, &req[40..]));
        req[42..44].copy_from_slice(&c.to_be_bytes());
        let s = IpSummary::parse(&req, true).unwrap();
        let mut out = [0u8; 2048];
        let n = echo_reply(&req, &s, &mut out).unwrap();
        assert_eq!(out[40], V6_ECHO_REPLY);
        let sum = checksum::pseudo_v6(
            out[8..24].try_into().unwrap(),
            out[24..40].try_into().unwrap(),
            PROTO_ICMPV6,
            (n - 40) as u32,
        );
        assert_eq!(checksum::finish(checksum::add(sum, &out[40..n])), 0);
    }

    #[test]
    fn no_errors_about_errors_or_multicast() {
        let mut p = v4_packet(20, false, 64);
        p[16] = 224;
        ip::set_v4_checksum(&mut p[..20]);
        let s = IpSummary::parse(&p, true).unwrap();
        assert!(!may_send_error_about(&p, &s));
        let p = v4_packet(20, false, 64);
        let s = IpSummary::parse(&p, true).unwrap();
        assert!(may_send_error_about(&p, &s));
    }
}
