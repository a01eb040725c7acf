//! Software segmentation of TUN super-packets (what the kernel does for TSO), for the paths that
//! cannot hand a super-packet on whole: a tunnel seals each wire packet separately.
//!
//! A TCP super-packet is one IP header (with extension headers for IPv6), one TCP header and up
//! to 64 KB of payload; each segment gets a copy of the headers with its own length, IPv4
//! identification (+1 per segment), TCP sequence number (+ payload offset), flags (CWR only on
//! the first; FIN and PSH only on the last) and full checksums, so it needs no offload after.

use crate::checksum;
use crate::ip::{self, IpSummary, PROTO_TCP};
use crate::tcp::{self, FLAG_CWR, FLAG_FIN, FLAG_PSH};
use crate::virtio::{self, VirtioHdr};
use crate::Malformed;

/// Splits the TCP super-packet `pkt` (checked: summary `s`, virtio header `v` of kind TCPV4 or
/// TCPV6) into segments of at most `v.gso_size` payload bytes, each built in `scratch` and handed
/// to `emit`. Returns the number of segments. `scratch` must hold the headers plus `gso_size`.
pub fn segment_tcp(
    pkt: &[u8],
    s: &IpSummary,
    v: &VirtioHdr,
    scratch: &mut [u8],
    mut emit: impl FnMut(&mut [u8]),
) -> Result<usize, Malformed> {
    let kind = v.gso_kind();
    let ok_kind = (kind == virtio::GSO_TCPV4 && s.version == 4)
        || (kind == virtio::GSO_TCPV6 && s.version == 6);
    if !ok_kind || s.proto != PROTO_TCP || s.is_fragment {
        return Err(Malformed::BadVirtioHeader);
    }
    let l4 = s.l4_offset;
    let doff = usize::from(*pkt.get(l4 + 12).ok_or(Malformed::BadVirtioHeader)? >> 4) * 4;
    let hdr = l4 + doff;
    let gso = usize::from(v.gso_size);
    if doff < 20 || hdr > s.total_len || gso == 0 || scratch.len() < hdr + gso {
        return Err(Malformed::BadVirtioHeader);
    }
    let payload = &pkt[hdr..s.total_len];
    let seq0 = u32::from_be_bytes([pkt[l4 + 4], pkt[l4 + 5], pkt[l4 + 6], pkt[l4 + 7]]);
    let id0 = u16::from_be_bytes([pkt[4], pkt[5]]);
    let flags0 = pkt[l4 + 13];
    let n = payload.len().div_ceil(gso).max(1);
    for i in 0..n {
        let start = i * gso;
        let end = (start + gso).min(payload.len());
        let seg_len = end - start;
        let out = &mut scratch[..hdr + seg_len];
        out[..hdr].copy_from_slice(&pkt[..hdr]);
        out[hdr..].copy_from_slice(&payload[start..end]);
        let total = hdr + seg_len;
        if s.version == 4 {
            out[2..4].copy_from_slice(&(total as u16).to_be_bytes());
            out[4..6].copy_from_slice(&id0.wrapping_add(i as u16).to_be_bytes());
            ip::set_v4_checksum(&mut out[..s.header_len]);
        } else {
            out[4..6].copy_from_slice(&((total - ip::IPV6_HEADER_LEN) as u16).to_be_bytes());
        }
        let seq = seq0.wrapping_add(start as u32);
        out[l4 + 4..l4 + 8].copy_from_slice(&seq.to_be_bytes());
        let mut flags = flags0;
        if i != 0 {
            flags &= !FLAG_CWR;
        }
        if i != n - 1 {
            flags &= !(FLAG_FIN | FLAG_PSH);
        }
        out[l4 + 13] = flags;
        let tcp_len = total - l4;
        let pseudo = pseudo_sum(out, s.version, tcp_len);
        tcp::set_checksum(&mut out[l4..], pseudo);
        emit(out);
    }
    Ok(n)
}

/// The pseudo-header sum of the packet in `pkt` for an upper-layer length `len`.
fn pseudo_sum(pkt: &[u8], version: u8, len: usize) -> u32 {
    if version == 4 {
        let mut src = [0u8; 4];
        src.copy_from_slice(&pkt[12..16]);
        let mut dst = [0u8; 4];
        dst.copy_from_slice(&pkt[16..20]);
        checksum::pseudo_v4(src, dst, PROTO_TCP, len as u16)
    } else {
        let mut src = [0u8; 16];
        src.copy_from_slice(&pkt[8..24]);
        let mut dst = [0u8; 16];
        dst.copy_from_slice(&pkt[24..40]);
        checksum::pseudo_v6(src, dst, PROTO_TCP, len as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tcp::FLAG_ACK;

    fn super_packet(version: u8, payload: usize, flags: u8) -> (Vec<u8>, VirtioHdr) {
        let ip_len = if version == 4 { 20 } else { 40 };
        let hdr = ip_len + 32;
        let total = hdr + payload;
        let mut p = vec![0u8; total];
        if version == 4 {
            p[0] = 0x45;
            p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
            p[4..6].copy_from_slice(&0xfffeu16.to_be_bytes());
            p[6] = 0x40;
            p[8] = 64;
            p[9] = PROTO_TCP;
            p[12..16].copy_from_slice(&[10, 1, 0, 10]);
            p[16..20].copy_from_slice(&[10, 3, 0, 10]);
            ip::set_v4_checksum(&mut p[..20]);
        } else {
            p[0] = 0x60;
            p[4..6].copy_from_slice(&((total - 40) as u16).to_be_bytes());
            p[6] = PROTO_TCP;
            p[7] = 64;
            p[8] = 0xfd;
            p[24] = 0xfd;
            p[39] = 1;
        }
        let t = ip_len;
        p[t + 4..t + 8].copy_from_slice(&0xffff_f000u32.to_be_bytes());
        p[t + 12] = 8 << 4;
        p[t + 13] = flags;
        for (i, b) in p[hdr..].iter_mut().enumerate() {
            *b = (i % 251) as u8;
        }
        let v = VirtioHdr {
            flags: virtio::F_NEEDS_CSUM,
            gso_type: if version == 4 {
                virtio::GSO_TCPV4
            } else {
                virtio::GSO_TCPV6
            },
            hdr_len: hdr as u16,
            gso_size: 1348,
            csum_start: t as u16,
            csum_offset: 16,
        };
        (p, v)
    }

    fn check(version: u8, payload: usize) {
        let flags = FLAG_ACK | FLAG_PSH | FLAG_FIN | FLAG_CWR;
        let (p, v) = super_packet(version, payload, flags);
        let s = IpSummary::parse(&p, true).unwrap();
        let mut scratch = vec![0u8; 1500];
        let mut segs: Vec<Vec<u8>> = Vec::new();
        let n = segment_tcp(&p, &s, &v, &mut scratch, |seg| segs.push(seg.to_vec())).unwrap();
        assert_eq!(n, payload.div_ceil(1348).max(1));
        let mut data = Vec::new();
        let mut seq = 0xffff_f000u32;
        for (i, seg) in segs.iter().enumerate() {
            let ss = IpSummary::parse(seg, true).unwrap();
            assert_eq!(ss.total_len, seg.len());
            let l4 = ss.l4_offset;
            assert_eq!(
                u32::from_be_bytes(seg[l4 + 4..l4 + 8].try_into().unwrap()),
                seq
            );
            let f = seg[l4 + 13];
            assert_eq!(f & FLAG_CWR != 0, i == 0);
            assert_eq!(f & (FLAG_FIN | FLAG_PSH) != 0, i == n - 1);
            assert!(f & FLAG_ACK != 0);
            let tcp_len = seg.len() - l4;
            let pseudo = pseudo_sum(seg, version, tcp_len);
            assert_eq!(
                checksum::finish(checksum::add(pseudo, &seg[l4..])),
                0,
                "TCP checksum"
            );
            if version == 4 {
                assert_eq!(
                    u16::from_be_bytes([seg[4], seg[5]]),
                    0xfffeu16.wrapping_add(i as u16)
                );
            }
            let body = &seg[l4 + 32..];
            seq = seq.wrapping_add(body.len() as u32);
            data.extend_from_slice(body);
        }
        let hdr = if version == 4 { 52 } else { 72 };
        assert_eq!(data, &p[hdr..]);
    }

    #[test]
    fn segments_v4_and_v6() {
        for len in [0, 1, 1347, 1348, 1349, 10_000, 65_000] {
            check(4, len);
            check(6, len);
        }
    }

    #[test]
    fn refuses_inconsistent_headers() {
        let (p, mut v) = super_packet(4, 5000, FLAG_ACK);
        let s = IpSummary::parse(&p, true).unwrap();
        let mut scratch = vec![0u8; 1500];
        v.gso_type = virtio::GSO_TCPV6;
        assert!(segment_tcp(&p, &s, &v, &mut scratch, |_| {}).is_err());
        v.gso_type = virtio::GSO_TCPV4;
        v.gso_size = 0;
        assert!(segment_tcp(&p, &s, &v, &mut scratch, |_| {}).is_err());
        v.gso_size = 1448;
        let mut small = vec![0u8; 100];
        assert!(segment_tcp(&p, &s, &v, &mut small, |_| {}).is_err());
    }
}
