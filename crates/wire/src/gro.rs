//! Software receive coalescing (GRO) of TCP segments, the inverse of
//! [`segment_tcp`](crate::gso::segment_tcp): consecutive segments of one flow, as a tunnel opens
//! them one by one, are merged into one super-packet that a TUN opened with `IFF_VNET_HDR` takes
//! in a single `write` (virtio `GSO_TCPV4`/`GSO_TCPV6`, `NEEDS_CSUM`), instead of one system call
//! per segment.
//!
//! # Protocol
//!
//! One [`TcpCoalescer`] holds at most one pending super-packet (a "run"). For each opened packet,
//! [`TcpCoalescer::offer`] says what to do:
//!
//! - [`Offer::Appended`]: taken (it started or extended the run); nothing to write yet.
//! - [`Offer::AppendedLast`]: taken, and nothing more can follow it: [`TcpCoalescer::flush`] now.
//! - [`Offer::NotMergeable`]: it could be coalesced but does not continue the pending run:
//!   `flush()` and write the pending run, then `offer` the packet again (it starts the next run).
//! - [`Offer::Alone`]: never coalesced: `flush()` and write the pending run if there is one (to
//!   keep the order), then write this packet by itself with a zero virtio header.
//!
//! At the end of a batch (nothing more to read for now) the caller flushes. The TCP checksum of a
//! packet is computed at most once: the cheap header comparisons come first, and a packet that
//! will be offered again after a flush (`NotMergeable`) has not been summed yet.
//!
//! # Merge rules
//!
//! They are those of Linux's GRO (`tcp_gro_receive`, `inet_gro_receive`, `ipv6_gro_receive`) and
//! of wireguard-go's `tcpGRO`, narrowed where the super-packet must segment back into exactly the
//! bytes it was made of. A segment is coalescible ([`Offer::Alone`] otherwise) when:
//!
//! - it is IPv4 without options, Don't Fragment set, not a fragment (flags and fragment offset
//!   exactly `0x4000`) and with a valid header checksum; or IPv6 without extension headers;
//! - it is TCP with a data offset of at least 20 bytes inside the packet and a non-empty payload;
//! - its TCP flags are exactly ACK or ACK|PSH (no FIN, SYN, RST, URG, ECE, CWR: each means
//!   something per segment that a merged header could not carry or would move);
//! - its TCP checksum verifies. The tunnel's ICV rules out corruption on the way, but the sender
//!   may still have sent a bad checksum, which the kernel would drop; once merged under
//!   `NEEDS_CSUM` the kernel would trust it instead. Verifying costs one pass over the payload
//!   (about what the kernel would have spent on that segment itself: with `NEEDS_CSUM` it does
//!   not verify the super-packet again on local delivery). A segment that fails is reported
//!   `Alone` and written unchanged, so the kernel drops it as it would have;
//! - for the first segment of a run: it is not PSH and leaves room in the buffer for another
//!   segment of its size (else it is written alone, without a copy).
//!
//! It continues the pending run when, in addition:
//!
//! - same IP version and header length, and the same IP header apart from length, identification
//!   and checksum (IPv4: TOS including ECN bits, flags, TTL, protocol, addresses; IPv6: traffic
//!   class, flow label, next header, hop limit, addresses);
//! - IPv4 identification: the first segment's plus the number of segments already merged
//!   (incrementing, what Linux TCP sends), or, decided on the second segment as Linux does for
//!   atomic datagrams, the same as the first (fixed IDs, as FreeBSD sends with DF). A fixed-ID run
//!   comes out of a later segmentation with incrementing IDs (virtio has no `FIXEDID`): harmless
//!   for DF packets, whose ID has no meaning (RFC 6864), and the only case where a round trip is
//!   not byte-exact;
//! - same TCP header apart from sequence number, PSH and checksum: ports, acknowledgment number,
//!   data offset and reserved bits, window, urgent pointer and options byte for byte (timestamps
//!   included). Linux does not compare the window and keeps the first one; we require it equal,
//!   so that no window update is lost and segmentation gives the same bytes back;
//! - its sequence number is the pending run's next one (no gap, no reordering, no overlap);
//! - its payload is at most the first segment's (the `gso_size`); a shorter one ends the run;
//! - the run stays within 64 segments and the buffer (at most 65 535 bytes of IP packet, for IPv6
//!   too: Linux's GRO keeps the whole packet under 64 KB).
//!
//! The run ends ([`Offer::AppendedLast`]) after a PSH segment, a shorter segment, the 64th
//! segment, or when a segment of `gso_size` would no longer fit.
//!
//! # Output
//!
//! [`TcpCoalescer::flush`] returns the 10-byte virtio header followed by the IP packet. A run of
//! one segment is that segment unchanged behind a zero header (`GSO_NONE`, no flags): its checksum
//! is complete and valid. A longer run has the first segment's headers with the total length
//! (IPv4 total length and a new header checksum, or IPv6 payload length), PSH if the last segment
//! had it, and in the TCP checksum field the folded pseudo-header sum over the whole TCP length,
//! as Linux's `tcp_v4_send_check` leaves it; its virtio header is `NEEDS_CSUM`,
//! `csum_start` = the TCP header's offset, `csum_offset` = 16, `gso_type` `TCPV4` or `TCPV6`
//! (no ECN bit: CWR is never merged), `gso_size` = the first segment's payload, `hdr_len` = IP
//! and TCP headers. That is what `tun_get_user` and `virtio_net_hdr_to_skb` accept: the checksum
//! field within `hdr_len`, `hdr_len` within the packet, `csum_offset` 16 for TCP, and more
//! payload than `gso_size`.

use crate::checksum;
use crate::ip::{IpSummary, IPV4_HEADER_LEN, IPV6_HEADER_LEN, PROTO_TCP};
use crate::tcp::{FLAG_ACK, FLAG_PSH};
use crate::virtio::{self, VirtioHdr};

/// The largest IP packet a super-packet may become (the IPv4 total length field; for IPv6 too).
pub const MAX_LEN: usize = 65_535;
/// The most segments merged into one super-packet (Linux's GRO limit).
pub const MAX_SEGMENTS: usize = 64;
/// Offset of the TCP checksum in the TCP header (the virtio `csum_offset`).
pub const TCP_CSUM_OFFSET: usize = 16;

/// What [`TcpCoalescer::offer`] did with a packet, and what the caller must do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    /// Merged into the pending super-packet (or started it); more may follow.
    Appended,
    /// Merged, and it ends the run (PSH, shorter than `gso_size`, 64 segments, or no room for
    /// another full segment): flush now.
    AppendedLast,
    /// Coalescible, but it does not continue the pending run: flush, then offer it again.
    NotMergeable,
    /// Never coalesced (see the module's rules): flush the pending run if there is one, then
    /// write this packet alone with a zero virtio header.
    Alone,
}

/// How the IPv4 identification advances within a run, decided by its second segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IdMode {
    Undecided,
    Incrementing,
    Fixed,
}

/// A checked, coalescible TCP segment (offsets into the packet).
struct Segment {
    version: u8,
    /// Offset of the TCP header (the IP header's length).
    l4: usize,
    /// IP and TCP headers.
    hdr: usize,
    /// IP total length (the buffer may be longer).
    total: usize,
    seq: u32,
    psh: bool,
}

impl Segment {
    fn payload(&self) -> usize {
        self.total - self.hdr
    }

    /// Checks everything that does not depend on a pending run, except the TCP checksum.
    fn parse(pkt: &[u8]) -> Option<Segment> {
        let s = IpSummary::parse(pkt, true).ok()?;
        let l4 = if s.version == 4 {
            // No options; DF alone in the flags and no fragment offset.
            if s.header_len != IPV4_HEADER_LEN || pkt[6] != 0x40 || pkt[7] != 0 {
                return None;
            }
            IPV4_HEADER_LEN
        } else {
            // No extension headers.
            if pkt[6] != PROTO_TCP {
                return None;
            }
            IPV6_HEADER_LEN
        };
        if s.proto != PROTO_TCP || s.l4_offset != l4 || s.total_len < l4 + 20 {
            return None;
        }
        let doff = usize::from(pkt[l4 + 12] >> 4) * 4;
        let hdr = l4 + doff;
        if doff < 20 || hdr >= s.total_len {
            return None;
        }
        let flags = pkt[l4 + 13];
        if flags != FLAG_ACK && flags != FLAG_ACK | FLAG_PSH {
            return None;
        }
        Some(Segment {
            version: s.version,
            l4,
            hdr,
            total: s.total_len,
            seq: u32::from_be_bytes([pkt[l4 + 4], pkt[l4 + 5], pkt[l4 + 6], pkt[l4 + 7]]),
            psh: flags & FLAG_PSH != 0,
        })
    }

    /// Does the TCP checksum of `pkt` verify?
    fn checksum_ok(&self, pkt: &[u8]) -> bool {
        let pseudo = pseudo_sum(pkt, self.version, self.total - self.l4);
        checksum::finish(checksum::add(pseudo, &pkt[self.l4..self.total])) == 0
    }
}

/// The pseudo-header sum of the IP packet `pkt` for a TCP length `len`.
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

/// Merges consecutive TCP segments of one flow into one super-packet for a TUN write (see the
/// module's documentation for the protocol and the rules). Allocates its buffer once, in
/// [`TcpCoalescer::new`]; nothing after allocates.
pub struct TcpCoalescer {
    /// The virtio header ([`virtio::LEN`]) then the pending IP packet.
    buf: Box<[u8]>,
    /// The largest IP packet the buffer takes.
    cap: usize,
    /// IP bytes pending (0: no run).
    len: usize,
    segs: usize,
    version: u8,
    l4: usize,
    hdr: usize,
    gso: usize,
    next_seq: u32,
    first_id: u16,
    id_mode: IdMode,
    psh: bool,
    /// Nothing more can be appended (reported as `AppendedLast`).
    closed: bool,
}

impl std::fmt::Debug for TcpCoalescer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpCoalescer")
            .field("cap", &self.cap)
            .field("len", &self.len)
            .field("segs", &self.segs)
            .field("gso", &self.gso)
            .field("closed", &self.closed)
            .finish_non_exhaustive()
    }
}

impl TcpCoalescer {
    /// A coalescer whose super-packets are at most `max_len` bytes of IP packet (capped at
    /// [`MAX_LEN`]). Allocates `virtio::LEN + min(max_len, MAX_LEN)` bytes, once.
    pub fn new(max_len: usize) -> Self {
        let cap = max_len.min(MAX_LEN);
        TcpCoalescer {
            buf: vec![0u8; virtio::LEN + cap].into_boxed_slice(),
            cap,
            len: 0,
            segs: 0,
            version: 0,
            l4: 0,
            hdr: 0,
            gso: 0,
            next_seq: 0,
            first_id: 0,
            id_mode: IdMode::Undecided,
            psh: false,
            closed: false,
        }
    }

    /// Is a super-packet (of one segment or more) waiting for [`flush`](Self::flush)?
    pub fn pending(&self) -> bool {
        self.len != 0
    }

    /// Segments in the pending super-packet (0 when none).
    pub fn segments(&self) -> usize {
        if self.len == 0 {
            0
        } else {
            self.segs
        }
    }

    /// Offers one IP packet (the bytes past its IP total length are ignored). See [`Offer`].
    pub fn offer(&mut self, pkt: &[u8]) -> Offer {
        let Some(seg) = Segment::parse(pkt) else {
            return Offer::Alone;
        };
        if self.len != 0 {
            if !self.continues(pkt, &seg) {
                return Offer::NotMergeable;
            }
            if !seg.checksum_ok(pkt) {
                return Offer::Alone;
            }
            self.append(pkt, &seg)
        } else {
            // A run that could not grow is a packet alone: no copy.
            if seg.psh || seg.total + seg.payload() > self.cap || !seg.checksum_ok(pkt) {
                return Offer::Alone;
            }
            self.start(pkt, &seg);
            Offer::Appended
        }
    }

    fn start(&mut self, pkt: &[u8], seg: &Segment) {
        let ip = &mut self.buf[virtio::LEN..];
        ip[..seg.total].copy_from_slice(&pkt[..seg.total]);
        self.len = seg.total;
        self.segs = 1;
        self.version = seg.version;
        self.l4 = seg.l4;
        self.hdr = seg.hdr;
        self.gso = seg.payload();
        self.next_seq = seg.seq.wrapping_add(self.gso as u32);
        self.first_id = u16::from_be_bytes([pkt[4], pkt[5]]);
        self.id_mode = IdMode::Undecided;
        self.psh = false;
        self.closed = false;
    }

    /// Does `pkt` (checked as `seg`) continue the pending run? Header comparisons only.
    fn continues(&self, pkt: &[u8], seg: &Segment) -> bool {
        let payload = seg.payload();
        if self.closed
            || seg.version != self.version
            || seg.hdr != self.hdr
            || payload > self.gso
            || self.len + payload > self.cap
            || self.segs >= MAX_SEGMENTS
            || seg.seq != self.next_seq
        {
            return false;
        }
        let first = &self.buf[virtio::LEN..virtio::LEN + self.hdr];
        let (l4, hdr) = (self.l4, self.hdr);
        let ip_same = if self.version == 4 {
            // Version/IHL and TOS; flags/offset, TTL, protocol; addresses.
            pkt[..2] == first[..2] && pkt[6..10] == first[6..10] && pkt[12..20] == first[12..20]
        } else {
            // Version, traffic class, flow label; next header, hop limit, addresses.
            pkt[..4] == first[..4] && pkt[6..40] == first[6..40]
        };
        // Ports; acknowledgment number, data offset and reserved bits; window; urgent pointer
        // and options. (Flags are ACK or ACK|PSH on both, and the first has no PSH.)
        let tcp_same = pkt[l4..l4 + 4] == first[l4..l4 + 4]
            && pkt[l4 + 8..l4 + 13] == first[l4 + 8..l4 + 13]
            && pkt[l4 + 14..l4 + 16] == first[l4 + 14..l4 + 16]
            && pkt[l4 + 18..hdr] == first[l4 + 18..hdr];
        if !(ip_same && tcp_same) {
            return false;
        }
        if self.version == 4 {
            let id = u16::from_be_bytes([pkt[4], pkt[5]]);
            let incrementing = id == self.first_id.wrapping_add(self.segs as u16);
            let fixed = id == self.first_id;
            let ok = match self.id_mode {
                IdMode::Undecided => incrementing || fixed,
                IdMode::Incrementing => incrementing,
                IdMode::Fixed => fixed,
            };
            if !ok {
                return false;
            }
        }
        true
    }

    fn append(&mut self, pkt: &[u8], seg: &Segment) -> Offer {
        let payload = seg.payload();
        let at = virtio::LEN + self.len;
        self.buf[at..at + payload].copy_from_slice(&pkt[seg.hdr..seg.total]);
        if self.version == 4 && self.id_mode == IdMode::Undecided {
            let id = u16::from_be_bytes([pkt[4], pkt[5]]);
            // With one segment merged, +1 and +0 cannot both hold.
            self.id_mode = if id == self.first_id {
                IdMode::Fixed
            } else {
                IdMode::Incrementing
            };
        }
        self.len += payload;
        self.segs += 1;
        self.next_seq = self.next_seq.wrapping_add(payload as u32);
        self.psh = seg.psh;
        self.closed = seg.psh
            || payload < self.gso
            || self.segs >= MAX_SEGMENTS
            || self.len + self.gso > self.cap;
        if self.closed {
            Offer::AppendedLast
        } else {
            Offer::Appended
        }
    }

    /// The pending super-packet with its 10-byte virtio header in front, ready for one TUN write,
    /// or `None` when nothing is pending. Clears the pending state (the bytes stay valid until the
    /// next `offer`).
    pub fn flush(&mut self) -> Option<&[u8]> {
        if self.len == 0 {
            return None;
        }
        let total = self.len;
        self.len = 0;
        let (head, ip) = self.buf.split_at_mut(virtio::LEN);
        if self.segs == 1 {
            VirtioHdr::default().write(head);
        } else {
            let (l4, version) = (self.l4, self.version);
            if version == 4 {
                ip[2..4].copy_from_slice(&(total as u16).to_be_bytes());
                crate::ip::set_v4_checksum(&mut ip[..IPV4_HEADER_LEN]);
            } else {
                ip[4..6].copy_from_slice(&((total - IPV6_HEADER_LEN) as u16).to_be_bytes());
            }
            if self.psh {
                ip[l4 + 13] |= FLAG_PSH;
            }
            let pseudo = checksum::fold(pseudo_sum(ip, version, total - l4));
            let at = l4 + TCP_CSUM_OFFSET;
            ip[at..at + 2].copy_from_slice(&pseudo.to_be_bytes());
            VirtioHdr {
                flags: virtio::F_NEEDS_CSUM,
                gso_type: if version == 4 {
                    virtio::GSO_TCPV4
                } else {
                    virtio::GSO_TCPV6
                },
                hdr_len: self.hdr as u16,
                gso_size: self.gso as u16,
                csum_start: l4 as u16,
                csum_offset: TCP_CSUM_OFFSET as u16,
            }
            .write(head);
        }
        Some(&self.buf[..virtio::LEN + total])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gso::segment_tcp;
    use crate::ip::{self, PROTO_UDP};
    use crate::tcp::{self, FLAG_CWR, FLAG_FIN, FLAG_RST, FLAG_SYN};
    use proptest::prelude::*;

    const FLAG_URG: u8 = 0x20;
    const FLAG_ECE: u8 = 0x40;

    /// What stays the same over the segments of one burst.
    #[derive(Clone, Debug)]
    struct Flow {
        version: u8,
        /// TCP options, a multiple of 4 bytes.
        opts: Vec<u8>,
        ack: u32,
        win: u16,
        id: u16,
    }

    fn flow(version: u8) -> Flow {
        Flow {
            version,
            // NOP NOP timestamps.
            opts: vec![1, 1, 8, 10, 0, 0, 0x12, 0x34, 0, 0, 0x56, 0x78],
            ack: 0x0102_0304,
            win: 501,
            id: 0xfff0,
        }
    }

    /// An IPv4 or IPv6 TCP packet with `payload`, complete checksums.
    fn packet(f: &Flow, seq: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
        let l4 = if f.version == 4 { 20 } else { 40 };
        let hdr = l4 + 20 + f.opts.len();
        let total = hdr + payload.len();
        let mut p = vec![0u8; total];
        if f.version == 4 {
            p[0] = 0x45;
            p[1] = 0x08;
            p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
            p[4..6].copy_from_slice(&f.id.to_be_bytes());
            p[6] = 0x40;
            p[8] = 63;
            p[9] = PROTO_TCP;
            p[12..16].copy_from_slice(&[10, 2, 0, 10]);
            p[16..20].copy_from_slice(&[10, 1, 0, 10]);
        } else {
            p[0] = 0x60;
            p[1] = 0x0a;
            p[2..4].copy_from_slice(&0xbeefu16.to_be_bytes());
            p[4..6].copy_from_slice(&((total - 40) as u16).to_be_bytes());
            p[6] = PROTO_TCP;
            p[7] = 63;
            p[8..10].copy_from_slice(&[0xfd, 0x00]);
            p[23] = 2;
            p[24..26].copy_from_slice(&[0xfd, 0x00]);
            p[39] = 1;
        }
        let t = &mut p[l4..];
        t[0..2].copy_from_slice(&443u16.to_be_bytes());
        t[2..4].copy_from_slice(&40_000u16.to_be_bytes());
        t[4..8].copy_from_slice(&seq.to_be_bytes());
        t[8..12].copy_from_slice(&f.ack.to_be_bytes());
        t[12] = (((20 + f.opts.len()) / 4) as u8) << 4;
        t[13] = flags;
        t[14..16].copy_from_slice(&f.win.to_be_bytes());
        t[20..20 + f.opts.len()].copy_from_slice(&f.opts);
        p[hdr..].copy_from_slice(payload);
        refix(&mut p);
        p
    }

    /// Recomputes the IPv4 header checksum and the TCP checksum after a change.
    fn refix(p: &mut [u8]) {
        let (version, l4) = if p[0] >> 4 == 4 {
            (4, usize::from(p[0] & 0xf) * 4)
        } else {
            (6, 40)
        };
        if version == 4 {
            ip::set_v4_checksum(&mut p[..l4]);
        }
        let pseudo = pseudo_sum(p, version, p.len() - l4);
        tcp::set_checksum(&mut p[l4..], pseudo);
    }

    fn bytes(n: usize, seed: u8) -> Vec<u8> {
        (0..n)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect()
    }

    /// `segment_tcp` of a super-packet as a TUN with TSO would hand it over.
    fn segments(f: &Flow, seq: u32, flags: u8, payload: &[u8], mss: usize) -> Vec<Vec<u8>> {
        let p = packet(f, seq, flags, payload);
        let s = IpSummary::parse(&p, true).unwrap();
        let v = VirtioHdr {
            flags: virtio::F_NEEDS_CSUM,
            gso_type: if f.version == 4 {
                virtio::GSO_TCPV4
            } else {
                virtio::GSO_TCPV6
            },
            hdr_len: (s.l4_offset + 20 + f.opts.len()) as u16,
            gso_size: mss as u16,
            csum_start: s.l4_offset as u16,
            csum_offset: 16,
        };
        let mut scratch = vec![0u8; 1600];
        let mut out = Vec::new();
        segment_tcp(&p, &s, &v, &mut scratch, |seg| out.push(seg.to_vec())).unwrap();
        out
    }

    /// Checks a flushed super-packet as the kernel (`tun_get_user`, `virtio_net_hdr_to_skb`) and
    /// the engine's `wire_cost` would, and that completing its partial checksum gives a valid
    /// TCP checksum. Returns the virtio header and the number of segments.
    fn check_super(out: &[u8]) -> (VirtioHdr, usize) {
        let v = VirtioHdr::parse(out).unwrap();
        let ip = &out[virtio::LEN..];
        let s = IpSummary::parse(ip, true).unwrap();
        assert_eq!(s.total_len, ip.len());
        assert!(ip.len() <= MAX_LEN);
        assert_eq!(s.proto, PROTO_TCP);
        assert!(!s.is_fragment);
        let kind = if s.version == 4 {
            virtio::GSO_TCPV4
        } else {
            virtio::GSO_TCPV6
        };
        assert_eq!(v.gso_type, kind, "gso_type (no ECN bit)");
        assert_eq!(v.flags, virtio::F_NEEDS_CSUM);
        let l4 = s.l4_offset;
        let doff = usize::from(ip[l4 + 12] >> 4) * 4;
        assert!(doff >= 20);
        let hdr = l4 + doff;
        assert_eq!(usize::from(v.hdr_len), hdr);
        assert_eq!(usize::from(v.csum_start), l4);
        assert_eq!(usize::from(v.csum_offset), 16);
        assert!(usize::from(v.csum_start + v.csum_offset) + 2 <= usize::from(v.hdr_len));
        assert!(usize::from(v.hdr_len) <= ip.len());
        let gso = usize::from(v.gso_size);
        let payload = ip.len() - hdr;
        assert!(
            gso > 0 && payload > gso,
            "a GSO packet carries more than gso_size"
        );
        let segs = payload.div_ceil(gso);
        assert!(segs <= MAX_SEGMENTS);
        // The checksum field holds the folded pseudo-header sum over the whole TCP length.
        let mut copy = ip.to_vec();
        assert!(virtio::complete_csum(&v, &mut copy));
        let pseudo = pseudo_sum(&copy, s.version, copy.len() - l4);
        assert_eq!(checksum::finish(checksum::add(pseudo, &copy[l4..])), 0);
        (v, segs)
    }

    /// Splits what the coalescer wrote back into wire segments.
    fn resegment(out: &[u8]) -> Vec<Vec<u8>> {
        let v = VirtioHdr::parse(out).unwrap();
        let ip = &out[virtio::LEN..];
        if !v.is_gso() {
            assert_eq!(v, VirtioHdr::default(), "a single packet has a zero header");
            return vec![ip.to_vec()];
        }
        let (v, n) = check_super(out);
        let s = IpSummary::parse(ip, true).unwrap();
        let mut scratch = vec![0u8; MAX_LEN];
        let mut segs = Vec::new();
        let got = segment_tcp(ip, &s, &v, &mut scratch, |seg| segs.push(seg.to_vec())).unwrap();
        assert_eq!(got, n);
        segs
    }

    /// The caller's side of the protocol: what would be written to the TUN, write by write.
    fn drive(c: &mut TcpCoalescer, pkts: &[Vec<u8>]) -> Vec<Vec<u8>> {
        let mut writes = Vec::new();
        let alone = |p: &[u8]| {
            let mut w = vec![0u8; virtio::LEN];
            w.extend_from_slice(&p[..IpSummary::parse(p, false).map_or(p.len(), |s| s.total_len)]);
            w
        };
        for p in pkts {
            let mut r = c.offer(p);
            if r == Offer::NotMergeable {
                writes.push(
                    c.flush()
                        .expect("NotMergeable with nothing pending")
                        .to_vec(),
                );
                r = c.offer(p);
                assert_ne!(r, Offer::NotMergeable, "after a flush");
            }
            match r {
                Offer::Appended => assert!(c.pending()),
                Offer::AppendedLast => writes.push(c.flush().unwrap().to_vec()),
                Offer::Alone => {
                    if let Some(w) = c.flush() {
                        writes.push(w.to_vec());
                    }
                    writes.push(alone(p));
                }
                Offer::NotMergeable => unreachable!(),
            }
        }
        if let Some(w) = c.flush() {
            writes.push(w.to_vec());
        }
        assert!(!c.pending());
        writes
    }

    #[test]
    fn a_burst_becomes_one_super_packet_that_segments_back() {
        for version in [4, 6] {
            let f = flow(version);
            let segs = segments(
                &f,
                0xffff_ff00,
                FLAG_ACK | FLAG_PSH,
                &bytes(45 * 1448, 7),
                1448,
            );
            assert_eq!(segs.len(), 45);
            let mut c = TcpCoalescer::new(MAX_LEN);
            for (i, s) in segs.iter().enumerate() {
                let want = if i == 44 {
                    Offer::AppendedLast
                } else {
                    Offer::Appended
                };
                assert_eq!(c.offer(s), want, "v{version} segment {i}");
                assert_eq!(c.segments(), i + 1);
            }
            let out = c.flush().unwrap().to_vec();
            assert!(!c.pending() && c.flush().is_none());
            let (v, n) = check_super(&out);
            assert_eq!((v.gso_size, n), (1448, 45));
            let ip = &out[virtio::LEN..];
            let l4 = if version == 4 { 20 } else { 40 };
            assert_eq!(ip.len(), l4 + 32 + 45 * 1448);
            assert_eq!(ip[l4 + 13], FLAG_ACK | FLAG_PSH, "PSH of the last segment");
            assert_eq!(resegment(&out), segs);
        }
    }

    #[test]
    fn one_segment_is_written_unchanged_behind_a_zero_header() {
        let f = flow(4);
        let segs = segments(&f, 1, FLAG_ACK, &bytes(3000, 1), 1448);
        let mut c = TcpCoalescer::new(MAX_LEN);
        assert_eq!(c.offer(&segs[0]), Offer::Appended);
        let out = c.flush().unwrap();
        assert_eq!(&out[..virtio::LEN], &[0u8; virtio::LEN]);
        assert_eq!(&out[virtio::LEN..], &segs[0][..]);
    }

    #[test]
    fn psh_ends_the_run_and_a_psh_segment_alone_is_not_copied() {
        let f = flow(6);
        let mut segs = segments(&f, 1, FLAG_ACK, &bytes(4 * 1000, 1), 1000);
        segs[1][40 + 13] |= FLAG_PSH;
        refix(&mut segs[1]);
        let mut c = TcpCoalescer::new(MAX_LEN);
        assert_eq!(c.offer(&segs[0]), Offer::Appended);
        assert_eq!(c.offer(&segs[1]), Offer::AppendedLast);
        assert_eq!(c.offer(&segs[2]), Offer::NotMergeable);
        let out = c.flush().unwrap().to_vec();
        assert_eq!(check_super(&out).1, 2);
        segs[2][40 + 13] |= FLAG_PSH;
        refix(&mut segs[2]);
        assert_eq!(c.offer(&segs[2]), Offer::Alone);
        assert!(!c.pending());
    }

    /// Offers `segs[0]`, then `segs[1]`: returns the second answer (the first must be taken).
    fn second(segs: &[Vec<u8>]) -> Offer {
        let mut c = TcpCoalescer::new(MAX_LEN);
        assert_eq!(c.offer(&segs[0]), Offer::Appended);
        let r = c.offer(&segs[1]);
        if matches!(r, Offer::NotMergeable | Offer::Alone) {
            assert_eq!(c.segments(), 1, "the pending run is untouched");
            let out = c.flush().unwrap();
            assert_eq!(&out[virtio::LEN..], &segs[0][..]);
        }
        r
    }

    /// Three segments of 1448 bytes of flow `f`, with `change` applied to the second.
    fn changed(f: &Flow, change: impl FnOnce(&mut Vec<u8>)) -> Vec<Vec<u8>> {
        let mut segs = segments(f, 1000, FLAG_ACK, &bytes(3 * 1448, 3), 1448);
        change(&mut segs[1]);
        refix(&mut segs[1]);
        segs
    }

    #[test]
    fn different_flows_and_headers_are_not_merged() {
        for version in [4, 6] {
            let f = flow(version);
            let l4 = if version == 4 { 20 } else { 40 };
            let unchanged = changed(&f, |_| {});
            assert_eq!(second(&unchanged), Offer::Appended);
            type Change = Box<dyn Fn(&mut Vec<u8>)>;
            let cases: Vec<(&str, Change)> = vec![
                ("source port", Box::new(move |p| p[l4] ^= 1)),
                ("destination port", Box::new(move |p| p[l4 + 3] ^= 1)),
                (
                    "source address",
                    Box::new(move |p| p[if version == 4 { 15 } else { 23 }] ^= 1),
                ),
                (
                    "destination address",
                    Box::new(move |p| p[if version == 4 { 19 } else { 39 }] ^= 1),
                ),
                ("ack", Box::new(move |p| p[l4 + 11] ^= 1)),
                ("window", Box::new(move |p| p[l4 + 15] ^= 1)),
                ("urgent pointer", Box::new(move |p| p[l4 + 19] ^= 1)),
                ("timestamp", Box::new(move |p| p[l4 + 27] ^= 1)),
                ("reserved bits", Box::new(move |p| p[l4 + 12] |= 1)),
                ("seq gap", Box::new(move |p| p[l4 + 7] ^= 1)),
                (
                    "TTL/hop limit",
                    Box::new(move |p| p[if version == 4 { 8 } else { 7 }] -= 1),
                ),
                (
                    "TOS/traffic class (ECN CE)",
                    Box::new(move |p| p[1] |= if version == 4 { 0x03 } else { 0x30 }),
                ),
            ];
            for (what, change) in cases {
                let segs = changed(&f, change);
                assert_eq!(second(&segs), Offer::NotMergeable, "v{version}: {what}");
            }
            if version == 4 {
                let segs = changed(&f, |p| p[5] = p[5].wrapping_add(1));
                assert_eq!(second(&segs), Offer::NotMergeable, "IP ID gap");
            } else {
                let segs = changed(&f, |p| p[3] ^= 1);
                assert_eq!(second(&segs), Offer::NotMergeable, "flow label");
            }
            // Different options (no timestamps): different header length too.
            let mut g = f.clone();
            g.opts = vec![1, 1, 4, 2];
            let other = segments(&g, 1000 + 1448, FLAG_ACK, &bytes(1448, 0), 1448);
            assert_eq!(
                second(&[unchanged[0].clone(), other[0].clone()]),
                Offer::NotMergeable,
                "options"
            );
            // A retransmission of the first segment.
            assert_eq!(
                second(&[unchanged[0].clone(), unchanged[0].clone()]),
                Offer::NotMergeable,
                "same seq"
            );
        }
        // IPv4 then IPv6.
        let a = segments(&flow(4), 1000, FLAG_ACK, &bytes(2896, 0), 1448);
        let b = segments(&flow(6), 1000, FLAG_ACK, &bytes(2896, 0), 1448);
        assert_eq!(second(&[a[0].clone(), b[1].clone()]), Offer::NotMergeable);
    }

    #[test]
    fn flags_other_than_ack_and_psh_are_written_alone() {
        for version in [4, 6] {
            let l4 = if version == 4 { 20 } else { 40 };
            for flag in [FLAG_FIN, FLAG_SYN, FLAG_RST, FLAG_URG, FLAG_ECE, FLAG_CWR] {
                let segs = changed(&flow(version), |p| p[l4 + 13] |= flag);
                assert_eq!(second(&segs), Offer::Alone, "v{version} flag {flag:#x}");
                let mut c = TcpCoalescer::new(MAX_LEN);
                assert_eq!(c.offer(&segs[1]), Offer::Alone, "as a first segment");
            }
            let segs = changed(&flow(version), |p| p[l4 + 13] = FLAG_PSH);
            assert_eq!(second(&segs), Offer::Alone, "PSH without ACK");
        }
    }

    #[test]
    fn pure_acks_and_other_protocols_are_written_alone() {
        let f = flow(4);
        let ack = packet(&f, 5, FLAG_ACK, &[]);
        let mut c = TcpCoalescer::new(MAX_LEN);
        assert_eq!(c.offer(&ack), Offer::Alone);
        let mut udp = ip::tests::v4_packet(1000, true, 64);
        udp[9] = PROTO_UDP;
        assert_eq!(c.offer(&udp), Offer::Alone);
        assert_eq!(c.offer(&[]), Offer::Alone);
        assert_eq!(c.offer(&[0x45; 19]), Offer::Alone);
        assert_eq!(c.offer(&[0x60; 39]), Offer::Alone);
        // Data offset beyond the packet, or below 20.
        let mut p = packet(&f, 5, FLAG_ACK, &bytes(8, 0));
        p[20 + 12] = 0xf0;
        refix(&mut p);
        assert_eq!(c.offer(&p), Offer::Alone);
        p[20 + 12] = 0x40;
        assert_eq!(c.offer(&p), Offer::Alone);
        assert!(!c.pending());
    }

    #[test]
    fn shorter_segment_ends_the_run_and_larger_ones_do_not_follow() {
        for version in [4, 6] {
            let f = flow(version);
            // 1448, 1000, 1448: the second is a (middle) shorter segment.
            let a = segments(&f, 0, FLAG_ACK, &bytes(1448, 0), 1448);
            let b = segments(&f, 1448, FLAG_ACK, &bytes(1000, 1), 1448);
            let mut g = f.clone();
            g.id = f.id.wrapping_add(2);
            let cc = segments(&g, 2448, FLAG_ACK, &bytes(1448, 2), 1448);
            let mut b0 = b[0].clone();
            if version == 4 {
                b0[4..6].copy_from_slice(&f.id.wrapping_add(1).to_be_bytes());
                refix(&mut b0);
            }
            let mut c = TcpCoalescer::new(MAX_LEN);
            assert_eq!(c.offer(&a[0]), Offer::Appended);
            assert_eq!(c.offer(&b0), Offer::AppendedLast, "v{version}");
            assert_eq!(c.offer(&cc[0]), Offer::NotMergeable);
            let out = c.flush().unwrap().to_vec();
            assert_eq!(resegment(&out), vec![a[0].clone(), b0.clone()]);
            // Small then large.
            let mut c = TcpCoalescer::new(MAX_LEN);
            let mut h = f.clone();
            h.id = f.id.wrapping_add(1);
            let big = segments(&h, 1000, FLAG_ACK, &bytes(1448, 0), 1448);
            let small = segments(&f, 0, FLAG_ACK, &bytes(1000, 0), 1448);
            assert_eq!(c.offer(&small[0]), Offer::Appended);
            assert_eq!(c.offer(&big[0]), Offer::NotMergeable);
        }
    }

    #[test]
    fn bad_checksums_are_written_alone() {
        for version in [4, 6] {
            let l4 = if version == 4 { 20 } else { 40 };
            let mut segs = segments(&flow(version), 9, FLAG_ACK, &bytes(3 * 1448, 9), 1448);
            segs[1][l4 + 100] ^= 0x40;
            assert_eq!(second(&segs), Offer::Alone, "v{version} second segment");
            let mut c = TcpCoalescer::new(MAX_LEN);
            assert_eq!(c.offer(&segs[1]), Offer::Alone, "v{version} first segment");
            segs[1][l4 + 100] ^= 0x40;
            segs[1][l4 + 16] ^= 1;
            assert_eq!(second(&segs), Offer::Alone, "v{version} checksum field");
        }
        // A bad IPv4 header checksum.
        let mut segs = segments(&flow(4), 9, FLAG_ACK, &bytes(3 * 1448, 9), 1448);
        segs[1][10] ^= 1;
        assert_eq!(second(&segs), Offer::Alone);
    }

    #[test]
    fn ip_options_fragments_and_extension_headers_are_written_alone() {
        let f = flow(4);
        let segs = segments(&f, 9, FLAG_ACK, &bytes(2 * 1448, 9), 1448);
        // IPv4 options: a 4-byte NOP/EOL option inserted after the fixed header.
        let mut o = segs[1].clone();
        o.splice(20..20, [1, 1, 1, 0]);
        o[0] = 0x46;
        let len = o.len() as u16;
        o[2..4].copy_from_slice(&len.to_be_bytes());
        refix(&mut o);
        assert!(IpSummary::parse(&o, true).is_ok());
        assert_eq!(second(&[segs[0].clone(), o]), Offer::Alone, "IPv4 options");
        for (what, flags) in [
            ("MF", 0x6000u16),
            ("offset", 0x4001),
            ("DF clear", 0x0000),
            ("reserved bit", 0xc000),
        ] {
            let s = changed(&f, |p| p[6..8].copy_from_slice(&flags.to_be_bytes()));
            assert_eq!(second(&s), Offer::Alone, "{what}");
        }
        // IPv6 with a destination options header before TCP.
        let g = flow(6);
        let segs = segments(&g, 9, FLAG_ACK, &bytes(2 * 1448, 9), 1448);
        let mut e = segs[1].clone();
        e.splice(40..40, [PROTO_TCP, 0, 1, 4, 0, 0, 0, 0]);
        e[6] = ip::PROTO_IPV6_OPTS;
        let plen = (e.len() - 40) as u16;
        e[4..6].copy_from_slice(&plen.to_be_bytes());
        let s = IpSummary::parse(&e, true).unwrap();
        assert_eq!((s.proto, s.l4_offset), (PROTO_TCP, 48));
        assert_eq!(
            second(&[segs[0].clone(), e]),
            Offer::Alone,
            "extension header"
        );
    }

    #[test]
    fn fixed_ipv4_ids_merge_like_linux_gro() {
        let f = flow(4);
        let mut segs = segments(&f, 9, FLAG_ACK, &bytes(4 * 1448, 9), 1448);
        for s in segs.iter_mut() {
            s[4..6].copy_from_slice(&0u16.to_be_bytes());
            refix(s);
        }
        let mut c = TcpCoalescer::new(MAX_LEN);
        for s in &segs {
            assert_eq!(c.offer(s), Offer::Appended);
        }
        // Once fixed, an incrementing ID does not continue the run.
        let more = segments(&f, 9 + 4 * 1448, FLAG_ACK, &bytes(1448, 0), 1448);
        let mut m = more[0].clone();
        m[4..6].copy_from_slice(&4u16.to_be_bytes());
        refix(&mut m);
        assert_eq!(c.offer(&m), Offer::NotMergeable);
        let out = c.flush().unwrap().to_vec();
        // Segmented again, the IDs increment from the first (RFC 6864: meaningless with DF).
        let back = resegment(&out);
        assert_eq!(back.len(), 4);
        for (i, (b, s)) in back.iter().zip(&segs).enumerate() {
            assert_eq!(u16::from_be_bytes([b[4], b[5]]), i as u16);
            assert_eq!(b[20..], s[20..]);
        }
    }

    #[test]
    fn a_run_stops_at_64_kb_and_64_segments() {
        // 1448-byte segments: 45 fit in 65 535 bytes (45 × 1448 + 52 = 65 212), the 46th not.
        let f = flow(4);
        let mut segs = segments(&f, 9, FLAG_ACK, &bytes(45 * 1448, 9), 1448);
        let mut g = f.clone();
        g.id = f.id.wrapping_add(45);
        segs.extend(segments(&g, 9 + 45 * 1448, FLAG_ACK, &bytes(1448, 1), 1448));
        let mut c = TcpCoalescer::new(MAX_LEN);
        for s in &segs[..44] {
            assert_eq!(c.offer(s), Offer::Appended);
        }
        assert_eq!(c.offer(&segs[44]), Offer::AppendedLast);
        assert_eq!(c.offer(&segs[45]), Offer::NotMergeable);
        assert_eq!(check_super(c.flush().unwrap()).1, 45);
        assert_eq!(c.offer(&segs[45]), Offer::Appended);
        // 536-byte segments: the 64th segment closes the run (64 × 536 + 72 < 65 535).
        let g = flow(6);
        let segs = segments(&g, 9, FLAG_ACK, &bytes(65 * 536, 9), 536);
        let mut c = TcpCoalescer::new(MAX_LEN);
        for s in &segs[..63] {
            assert_eq!(c.offer(s), Offer::Appended);
        }
        assert_eq!(c.offer(&segs[63]), Offer::AppendedLast);
        assert_eq!(c.offer(&segs[64]), Offer::NotMergeable);
        assert_eq!(check_super(c.flush().unwrap()).1, 64);
        // A smaller buffer: 3 segments of 1000 bytes and their 52 bytes of headers.
        let segs = segments(&f, 9, FLAG_ACK, &bytes(5 * 1000, 9), 1000);
        let mut c = TcpCoalescer::new(3052);
        assert_eq!(c.offer(&segs[0]), Offer::Appended);
        assert_eq!(c.offer(&segs[1]), Offer::Appended);
        assert_eq!(c.offer(&segs[2]), Offer::AppendedLast);
        assert_eq!(c.flush().unwrap().len(), virtio::LEN + 3052);
        // Too small for two: every segment goes alone.
        let mut c = TcpCoalescer::new(2000);
        assert_eq!(c.offer(&segs[0]), Offer::Alone);
        // Larger than the cap: capped at 64 KB.
        assert_eq!(TcpCoalescer::new(1 << 20).cap, MAX_LEN);
    }

    #[test]
    fn the_sequence_number_may_wrap() {
        let segs = segments(&flow(6), u32::MAX - 2000, FLAG_ACK, &bytes(5000, 0), 1448);
        let mut c = TcpCoalescer::new(MAX_LEN);
        let out = drive(&mut c, &segs);
        assert_eq!(out.len(), 1);
        assert_eq!(resegment(&out[0]), segs);
    }

    const FLAGS: [u8; 4] = [
        FLAG_ACK,
        FLAG_ACK | FLAG_PSH,
        FLAG_ACK | FLAG_PSH | FLAG_FIN,
        FLAG_ACK | FLAG_CWR,
    ];

    /// One burst of a stream: payload length, flags (index in [`FLAGS`]), new ACK, new window.
    fn burst() -> impl Strategy<Value = (usize, usize, bool, bool)> {
        (
            prop_oneof![1usize..4000, 1usize..65_535],
            0usize..FLAGS.len(),
            proptest::bool::weighted(0.3),
            proptest::bool::weighted(0.1),
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        /// A TCP stream segmented as the kernel's TSO would, coalesced, then segmented again:
        /// the same bytes, segment for segment.
        #[test]
        fn segment_coalesce_segment_is_the_identity(
            v6 in any::<bool>(),
            mss in 536usize..=1448,
            timestamps in any::<bool>(),
            seq0 in any::<u32>(),
            id0 in any::<u16>(),
            bursts in proptest::collection::vec(burst(), 1..5),
        ) {
            let mut f = flow(if v6 { 6 } else { 4 });
            if !timestamps {
                f.opts.clear();
            }
            f.id = id0;
            let hdr = if v6 { 40 } else { 20 } + 20 + f.opts.len();
            let mut seq = seq0;
            let mut input = Vec::new();
            let mut longest = 0;
            for (i, (len, flags, new_ack, new_win)) in bursts.into_iter().enumerate() {
                let len = len.min(MAX_LEN - hdr);
                if new_ack {
                    f.ack = f.ack.wrapping_add(1000);
                }
                if new_win {
                    f.win = f.win.wrapping_add(1);
                }
                let segs = segments(&f, seq, FLAGS[flags], &bytes(len, i as u8), mss);
                f.id = f.id.wrapping_add(segs.len() as u16);
                seq = seq.wrapping_add(len as u32);
                longest = longest.max(segs.len());
                input.extend(segs);
            }
            let mut c = TcpCoalescer::new(MAX_LEN);
            let writes = drive(&mut c, &input);
            prop_assert!(writes.len() <= input.len());
            // In a burst of 4 segments or more, at least the second and third merge.
            prop_assert!(longest < 4 || writes.len() < input.len());
            let mut back = Vec::new();
            for w in &writes {
                back.extend(resegment(w));
            }
            prop_assert_eq!(back, input);
        }

        /// Damaged or arbitrary input never panics, and whatever is flushed is a valid
        /// super-packet (or a packet offered alone).
        #[test]
        fn arbitrary_input_is_safe(
            v6 in any::<bool>(),
            edits in proptest::collection::vec((0usize..1600, any::<u8>(), any::<bool>()), 0..6),
            garbage in proptest::collection::vec(any::<u8>(), 0..200),
        ) {
            let f = flow(if v6 { 6 } else { 4 });
            let mut segs = segments(&f, 77, FLAG_ACK, &bytes(4 * 1448, 5), 1448);
            for (at, val, fix) in edits {
                let s = &mut segs[at % 4];
                let i = at % s.len();
                s[i] = val;
                if fix && IpSummary::parse(s, false).is_ok_and(|x| x.total_len == s.len()
                    && x.l4_offset + 18 <= s.len()) {
                    refix(s);
                }
            }
            segs.insert(2, garbage);
            let mut c = TcpCoalescer::new(MAX_LEN);
            for w in drive(&mut c, &segs) {
                let v = VirtioHdr::parse(&w).unwrap();
                if v.is_gso() {
                    check_super(&w);
                }
            }
        }
    }
}
