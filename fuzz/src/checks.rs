//! Oracles shared by the targets: what must hold of every packet the data plane builds or
//! forwards, beyond "no panic". Each failed check panics with what was wrong, which libFuzzer
//! reports as a crash.

use causeway_wire::checksum;
use causeway_wire::gro::{Offer, TcpCoalescer};
use causeway_wire::gso::segment_tcp;
use causeway_wire::ip::{fragment_v4, IpSummary, PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP};
use causeway_wire::virtio::{self, VirtioHdr};

/// The packet parses, with a valid IPv4 header checksum; returns its summary.
pub fn valid_ip(pkt: &[u8], what: &str) -> IpSummary {
    match IpSummary::parse(pkt, true) {
        Ok(s) => s,
        Err(e) => panic!("{what}: not a valid IP packet ({e:?}): {pkt:02x?}"),
    }
}

/// The pseudo-header sum of `pkt` for an upper-layer protocol `proto` of `len` bytes.
fn pseudo(pkt: &[u8], version: u8, proto: u8, len: usize) -> u32 {
    if version == 4 {
        checksum::pseudo_v4(
            pkt[12..16].try_into().unwrap(),
            pkt[16..20].try_into().unwrap(),
            proto,
            len as u16,
        )
    } else {
        checksum::pseudo_v6(
            pkt[8..24].try_into().unwrap(),
            pkt[24..40].try_into().unwrap(),
            proto,
            len as u32,
        )
    }
}

/// Does the full TCP checksum of `pkt` (summary `s`) verify?
pub fn tcp_checksum_ok(pkt: &[u8], s: &IpSummary) -> bool {
    let seg = &pkt[s.l4_offset..s.total_len];
    checksum::finish(checksum::add(
        pseudo(pkt, s.version, PROTO_TCP, seg.len()),
        seg,
    )) == 0
}

/// An ICMP error or echo reply the gateway built: a valid IP packet of exactly `reply.len()`
/// bytes whose ICMP checksum verifies, within the size limits of RFC 1812 / RFC 4443 for errors.
pub fn check_reply(reply: &[u8]) {
    let s = valid_ip(reply, "reply");
    assert_eq!(s.total_len, reply.len(), "reply length");
    let body = &reply[s.l4_offset..];
    match s.version {
        4 => {
            assert_eq!(s.proto, PROTO_ICMP, "reply protocol");
            assert_eq!(checksum::of(body), 0, "ICMP checksum of the reply");
            if body[0] != 0 {
                assert!(reply.len() <= 576, "ICMP error of {} bytes", reply.len());
            }
        }
        _ => {
            assert_eq!(s.proto, PROTO_ICMPV6, "reply next header");
            let sum = pseudo(reply, 6, PROTO_ICMPV6, body.len());
            assert_eq!(
                checksum::finish(checksum::add(sum, body)),
                0,
                "ICMPv6 checksum"
            );
            if body[0] < 128 {
                assert!(reply.len() <= 1280, "ICMPv6 error of {} bytes", reply.len());
            }
        }
    }
}

/// Fragments the IPv4 packet `pkt` (checked, DF clear) to `mtu` and checks the fragments: each
/// a valid packet within the MTU, offsets contiguous, MF on all but the last (and on the last
/// as on the original), payloads that put back together give the original payload. Returns the
/// number of fragments, or None when `fragment_v4` refused.
pub fn check_fragments(pkt: &[u8], mtu: usize) -> Option<usize> {
    let s = valid_ip(pkt, "packet to fragment");
    let payload = &pkt[s.header_len..s.total_len];
    let flags = u16::from_be_bytes([pkt[6], pkt[7]]);
    let base = usize::from(flags & 0x1fff) * 8;
    let mut scratch = vec![0u8; mtu.max(1)];
    let mut got = Vec::with_capacity(payload.len());
    let mut frags: Vec<(usize, bool)> = Vec::new();
    let n = fragment_v4(pkt, mtu, &mut scratch, |f| {
        assert!(
            f.len() <= mtu,
            "fragment of {} bytes for MTU {mtu}",
            f.len()
        );
        let fs = valid_ip(f, "fragment");
        assert_eq!(fs.total_len, f.len(), "fragment length field");
        assert_eq!(&f[12..20], &pkt[12..20], "fragment addresses");
        assert_eq!(f[9], pkt[9], "fragment protocol");
        let ff = u16::from_be_bytes([f[6], f[7]]);
        let off = usize::from(ff & 0x1fff) * 8;
        assert_eq!(off, base + got.len(), "fragment offset");
        frags.push((f.len(), ff & 0x2000 != 0));
        got.extend_from_slice(&f[fs.header_len..]);
    })?;
    assert_eq!(n, frags.len(), "fragment count");
    assert_eq!(got, payload, "reassembled payload");
    for (i, &(len, mf)) in frags.iter().enumerate() {
        if i + 1 < frags.len() {
            assert!(mf, "MF clear on fragment {i} of {n}");
            assert!(len <= mtu);
        } else {
            assert_eq!(mf, flags & 0x2000 != 0, "MF of the last fragment");
        }
    }
    Some(n)
}

/// Segments the TCP super-packet `pkt` (summary `s`, virtio `v` of a TCP kind) and checks the
/// segments: valid IP and TCP checksums, at most `gso_size` payload each, sequence numbers
/// contiguous, payloads that concatenate to the original's. Returns the segments, or None when `segment_tcp` refuses.
pub fn check_segments(pkt: &[u8], s: &IpSummary, v: &VirtioHdr) -> Option<Vec<Vec<u8>>> {
    let l4 = s.l4_offset;
    let doff = pkt.get(l4 + 12).map_or(0, |b| usize::from(b >> 4) * 4);
    let hdr = l4 + doff;
    let mut scratch = vec![0u8; hdr + usize::from(v.gso_size) + 1];
    let mut segs: Vec<Vec<u8>> = Vec::new();
    let n = segment_tcp(pkt, s, v, &mut scratch, |seg| segs.push(seg.to_vec())).ok()?;
    assert_eq!(n, segs.len(), "segment count");
    let payload = &pkt[hdr..s.total_len];
    let seq0 = u32::from_be_bytes(pkt[l4 + 4..l4 + 8].try_into().unwrap());
    let mut got = Vec::with_capacity(payload.len());
    for seg in &segs {
        let ss = valid_ip(seg, "segment");
        assert_eq!(ss.total_len, seg.len(), "segment length field");
        assert!(tcp_checksum_ok(seg, &ss), "TCP checksum of a segment");
        let body = &seg[hdr..];
        assert!(
            body.len() <= usize::from(v.gso_size),
            "segment payload above gso_size"
        );
        let seq = u32::from_be_bytes(seg[l4 + 4..l4 + 8].try_into().unwrap());
        assert_eq!(
            seq,
            seq0.wrapping_add(got.len() as u32),
            "segment sequence number"
        );
        got.extend_from_slice(body);
    }
    assert_eq!(got, payload, "segments' payloads");
    Some(segs)
}

/// A [`TcpCoalescer`] driven as the daemon's tunnel ingress drives it (offer, flush on
/// `NotMergeable` and offer again, flush on `Alone` and at the end), with every super-packet it
/// writes checked: what the TUN would get must be accepted by the kernel's rules as the engine
/// states them (`wire_cost`) and segment back into exactly the packets that went in.
pub struct CheckedGro {
    gro: TcpCoalescer,
    run: Vec<Vec<u8>>,
    /// Super-packets written (for statistics in tests).
    pub flushed: usize,
}

impl CheckedGro {
    pub fn new(max_len: usize) -> CheckedGro {
        CheckedGro {
            gro: TcpCoalescer::new(max_len),
            run: Vec::new(),
            flushed: 0,
        }
    }

    /// Offers a packet (its bytes past the IP total length ignored, as by `offer`).
    pub fn offer(&mut self, pkt: &[u8]) {
        let mut offer = self.gro.offer(pkt);
        if offer == Offer::NotMergeable {
            self.flush();
            offer = self.gro.offer(pkt);
            assert_ne!(
                offer,
                Offer::NotMergeable,
                "NotMergeable twice for one packet"
            );
        }
        match offer {
            Offer::Appended | Offer::AppendedLast => {
                let s = valid_ip(pkt, "coalesced segment");
                self.run.push(pkt[..s.total_len].to_vec());
                assert_eq!(self.gro.segments(), self.run.len(), "segments()");
                if offer == Offer::AppendedLast {
                    self.flush();
                }
            }
            Offer::Alone => self.flush(),
            Offer::NotMergeable => unreachable!(),
        }
    }

    /// Flushes and checks the pending super-packet.
    pub fn flush(&mut self) {
        let run = std::mem::take(&mut self.run);
        let Some(out) = self.gro.flush() else {
            assert!(run.is_empty(), "segments appended but nothing to flush");
            return;
        };
        self.flushed += 1;
        assert!(!run.is_empty(), "a flush without segments");
        let v = VirtioHdr::parse(out).expect("virtio header");
        let pkt = &out[virtio::LEN..];
        if run.len() == 1 {
            assert_eq!(
                v,
                VirtioHdr::default(),
                "a run of one has a zero virtio header"
            );
            assert_eq!(pkt, &run[0][..], "a run of one is written unchanged");
            return;
        }
        let s = valid_ip(pkt, "super-packet");
        assert_eq!(s.total_len, pkt.len(), "super-packet length");
        let cost = causeway_engine::pipeline::wire_cost(&v, pkt, &s)
            .unwrap_or_else(|e| panic!("the super-packet's virtio header is refused: {e:?} {v:?}"));
        assert_eq!(
            cost.packets,
            run.len() as u64,
            "wire packets of the super-packet"
        );
        // NEEDS_CSUM: complete the checksum as the kernel would, then segment.
        let mut full = pkt.to_vec();
        assert!(
            virtio::complete_csum(&v, &mut full),
            "csum offsets outside the packet"
        );
        let segs = check_segments(&full, &s, &v).expect("the super-packet segments");
        assert_eq!(segs.len(), run.len(), "segments out vs in");
        let fixed_id = s.version == 4 && run[0][4..6] == run[1][4..6];
        for (i, (a, b)) in segs.iter().zip(&run).enumerate() {
            assert_eq!(a.len(), b.len(), "segment {i} length");
            let l4 = s.l4_offset;
            let mut a = a.clone();
            let mut b = b.clone();
            // Checksums may differ in representation (0x0000 / 0xffff); both were verified.
            for p in [&mut a, &mut b] {
                p[l4 + 16] = 0;
                p[l4 + 17] = 0;
                if s.version == 4 {
                    p[10] = 0;
                    p[11] = 0;
                    if fixed_id {
                        p[4] = 0;
                        p[5] = 0;
                    }
                }
            }
            assert_eq!(a, b, "segment {i} differs from the packet that went in");
        }
    }
}
