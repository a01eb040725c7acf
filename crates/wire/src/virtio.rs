//! The virtio-net header that a TUN opened with `IFF_VNET_HDR` puts before every packet
//! (`struct virtio_net_hdr`, 10 bytes, little-endian on the architectures we run on).
//!
//! With offloads on, the kernel hands over "super-packets" of up to 64 KB: one IP/TCP (or UDP)
//! header followed by the payload of many wire packets, `gso_size` payload bytes each, with a
//! partial checksum (`NEEDS_CSUM`) that the kernel completes when it segments.

/// Size of the header as configured with `TUNSETVNETHDRSZ`.
pub const LEN: usize = 10;

pub const F_NEEDS_CSUM: u8 = 1;
pub const F_DATA_VALID: u8 = 2;

pub const GSO_NONE: u8 = 0;
pub const GSO_TCPV4: u8 = 1;
pub const GSO_UDP: u8 = 3;
pub const GSO_TCPV6: u8 = 4;
pub const GSO_UDP_L4: u8 = 5;
pub const GSO_ECN: u8 = 0x80;

/// A decoded virtio-net header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VirtioHdr {
    pub flags: u8,
    pub gso_type: u8,
    pub hdr_len: u16,
    pub gso_size: u16,
    pub csum_start: u16,
    pub csum_offset: u16,
}

impl VirtioHdr {
    /// Decodes the first [`LEN`] bytes; `None` when `buf` is shorter.
    pub fn parse(buf: &[u8]) -> Option<VirtioHdr> {
        let b = buf.get(..LEN)?;
        Some(VirtioHdr {
            flags: b[0],
            gso_type: b[1],
            hdr_len: u16::from_le_bytes([b[2], b[3]]),
            gso_size: u16::from_le_bytes([b[4], b[5]]),
            csum_start: u16::from_le_bytes([b[6], b[7]]),
            csum_offset: u16::from_le_bytes([b[8], b[9]]),
        })
    }

    /// Encodes into the first [`LEN`] bytes of `buf` (which must be that long).
    pub fn write(&self, buf: &mut [u8]) {
        let b = &mut buf[..LEN];
        b[0] = self.flags;
        b[1] = self.gso_type;
        b[2..4].copy_from_slice(&self.hdr_len.to_le_bytes());
        b[4..6].copy_from_slice(&self.gso_size.to_le_bytes());
        b[6..8].copy_from_slice(&self.csum_start.to_le_bytes());
        b[8..10].copy_from_slice(&self.csum_offset.to_le_bytes());
    }

    /// The GSO kind without the ECN bit.
    pub fn gso_kind(&self) -> u8 {
        self.gso_type & !GSO_ECN
    }

    /// Is this a super-packet the kernel will segment?
    pub fn is_gso(&self) -> bool {
        self.gso_kind() != GSO_NONE
    }

    pub fn needs_csum(&self) -> bool {
        self.flags & F_NEEDS_CSUM != 0
    }
}

/// Completes a partial checksum (`NEEDS_CSUM`) in software: the field at
/// `csum_start + csum_offset` holds the pseudo-header sum; the one's-complement sum from
/// `csum_start` to the end of `pkt` is folded into it. Returns false (and changes nothing) when
/// the offsets do not fit `pkt`.
pub fn complete_csum(h: &VirtioHdr, pkt: &mut [u8]) -> bool {
    let start = usize::from(h.csum_start);
    let field = start + usize::from(h.csum_offset);
    if field + 2 > pkt.len() || start > pkt.len() {
        return false;
    }
    let c = crate::checksum::of(&pkt[start..]);
    // UDP (its checksum is 6 bytes into the header) sends a computed 0 as 0xffff: 0 means "no
    // checksum" (RFC 768), which IPv6 receivers drop (RFC 8200 8.1).
    let c = if h.csum_offset == UDP_CSUM_OFFSET && c == 0 {
        0xffff
    } else {
        c
    };
    pkt[field..field + 2].copy_from_slice(&c.to_be_bytes());
    true
}

/// Where the checksum is in a UDP header (`csum_offset` of a UDP packet).
pub const UDP_CSUM_OFFSET: u16 = 6;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_udp_checksum_that_computes_to_zero_is_sent_as_ffff() {
        // An 8-byte UDP header whose one's-complement sum is 0xffff (so the checksum is 0):
        // ports 0xffff and 0, length 0, checksum field 0 (the "pseudo-header sum" left there
        // by the sender is 0 here).
        let mut pkt = [0xff, 0xff, 0, 0, 0, 0, 0, 0];
        let h = VirtioHdr {
            flags: F_NEEDS_CSUM,
            csum_start: 0,
            csum_offset: UDP_CSUM_OFFSET,
            ..VirtioHdr::default()
        };
        assert!(complete_csum(&h, &mut pkt));
        assert_eq!(&pkt[6..8], &[0xff, 0xff]);
        // TCP keeps a computed 0 as 0.
        let mut tcp = [0u8; 20];
        tcp[0] = 0xff;
        tcp[1] = 0xff;
        let h = VirtioHdr {
            csum_offset: 16,
            ..h
        };
        assert!(complete_csum(&h, &mut tcp));
        assert_eq!(&tcp[16..18], &[0, 0]);
    }

    #[test]
    fn roundtrip() {
        let h = VirtioHdr {
            flags: F_NEEDS_CSUM,
            gso_type: GSO_TCPV4 | GSO_ECN,
            hdr_len: 52,
            gso_size: 1448,
            csum_start: 20,
            csum_offset: 16,
        };
        let mut b = [0u8; LEN];
        h.write(&mut b);
        assert_eq!(b, [1, 0x81, 52, 0, 0xa8, 5, 20, 0, 16, 0]);
        let p = VirtioHdr::parse(&b).unwrap();
        assert_eq!(p, h);
        assert!(p.is_gso());
        assert_eq!(p.gso_kind(), GSO_TCPV4);
        assert!(p.needs_csum());
    }

    #[test]
    fn completes_a_partial_udp_checksum() {
        use crate::checksum;
        // IPv4 + UDP with the pseudo-header sum in the checksum field, as the kernel leaves it.
        let mut p = crate::ip::tests::v4_packet(8 + 33, false, 64);
        let udp_len = (8 + 33) as u16;
        p[24..26].copy_from_slice(&udp_len.to_be_bytes());
        let src: [u8; 4] = p[12..16].try_into().unwrap();
        let dst: [u8; 4] = p[16..20].try_into().unwrap();
        let pseudo = checksum::fold(checksum::pseudo_v4(src, dst, 17, udp_len));
        p[26..28].copy_from_slice(&pseudo.to_be_bytes());
        let h = VirtioHdr {
            flags: F_NEEDS_CSUM,
            csum_start: 20,
            csum_offset: 6,
            ..Default::default()
        };
        assert!(complete_csum(&h, &mut p));
        let full = checksum::finish(checksum::add(
            checksum::pseudo_v4(src, dst, 17, udp_len),
            &p[20..],
        ));
        assert_eq!(full, 0, "the completed checksum verifies");
        let bad = VirtioHdr {
            csum_start: 60,
            ..h
        };
        assert!(!complete_csum(&bad, &mut p));
    }

    #[test]
    fn short_buffer() {
        assert!(VirtioHdr::parse(&[0u8; 9]).is_none());
        assert!(!VirtioHdr::default().is_gso());
    }
}
