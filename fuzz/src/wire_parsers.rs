//! Target `wire_parsers`: the packet code of `causeway-wire` on its own, with arbitrary bytes
//! and arbitrary virtio-net headers, and with oracles where the functions promise something.
//!
//! Input: records until the input ends, each an op byte (taken modulo 6) and its fields:
//!
//! 0. `parse`: verify u8, frame. `IpSummary::parse`; on a checked packet: ICMP error
//!    classification, `v4_error` / `v6_error` and `echo_reply` (valid ICMP out), TTL decrement
//!    (the IPv4 checksum still verifies), MSS clamping (a valid TCP checksum stays valid),
//!    `complete_csum` with an arbitrary header.
//! 1. `fragment`: mtu u16, frame. `fragment_v4` on a checked IPv4 packet, fragments checked.
//! 2. `gso`: 10 bytes of virtio header, frame. `wire_cost` and `segment_tcp` must agree: what
//!    `wire_cost` accepts as a TCP super-packet segments, into checked segments.
//! 3. `gro`: max_len u16, then frames offered to a checked `TcpCoalescer` (count u8 of them).
//! 4. `gro_flow`: a template packet (frame), then count u8 segments made from it, each with
//!    flags u8, payload length u16 (mod 2048), id step u8, sequence step i16 — checksums fixed up
//!    (unless flags bit 7) so that the coalescer's merge rules, not checksums, decide.
//! 5. `checksum`: the pseudo-header sums against a reference: 4+4 or 16+16 address bytes
//!    (selector u8), protocol u8, length u32.

use causeway_wire::checksum;
use causeway_wire::icmp;
use causeway_wire::ip::{self, IpSummary, PROTO_TCP};
use causeway_wire::tcp;
use causeway_wire::virtio::{self, VirtioHdr};

use crate::checks::{self, CheckedGro};
use crate::input::{Input, Seed};
use crate::packets::*;

pub fn run(data: &[u8]) {
    let mut input = Input::new(data);
    while !input.is_empty() {
        match input.u8() % 6 {
            0 => {
                let verify = input.u8() & 1 == 1;
                parse(input.frame(), verify);
            }
            1 => {
                let mtu = usize::from(input.u16());
                let pkt = input.frame();
                if let Ok(s) = IpSummary::parse(pkt, true) {
                    if s.version == 4 {
                        checks::check_fragments(pkt, mtu);
                    }
                }
            }
            2 => {
                let v = VirtioHdr::parse(input.take(virtio::LEN)).unwrap_or_default();
                gso(&v, input.frame());
            }
            3 => {
                let max_len = usize::from(input.u16());
                let n = input.u8();
                let mut gro = CheckedGro::new(max_len);
                for _ in 0..n {
                    gro.offer(input.frame());
                }
                gro.flush();
            }
            4 => gro_flow(&mut input),
            _ => pseudo(&mut input),
        }
    }
}

fn parse(pkt: &[u8], verify: bool) {
    let Ok(s) = IpSummary::parse(pkt, verify) else {
        return;
    };
    assert!(
        s.total_len <= pkt.len() && s.l4_offset <= s.total_len,
        "{s:?}"
    );
    assert!(s.header_len <= s.total_len);
    let mut out = vec![0u8; 65_536];
    let may = icmp::may_send_error_about(pkt, &s);
    let is_err = icmp::is_icmp_error(pkt, &s);
    assert!(!(may && is_err), "may send an error about an ICMP error");
    if verify {
        let len = if s.version == 4 {
            icmp::v4_error(
                pkt,
                [10, 1, 255, 4],
                icmp::V4_DEST_UNREACHABLE,
                icmp::V4_CODE_FRAG_NEEDED,
                1400,
                &mut out,
            )
        } else {
            icmp::v6_error(
                pkt,
                a6("fd00:1:0:ffff::4"),
                icmp::V6_PACKET_TOO_BIG,
                0,
                1280,
                &mut out,
            )
        };
        checks::check_reply(&out[..len]);
        if let Some(len) = icmp::echo_reply(pkt, &s, &mut out) {
            checks::check_reply(&out[..len]);
            assert_eq!(
                len,
                s.total_len - s.l4_offset + if s.version == 4 { 20 } else { 40 }
            );
        }
        if s.ttl > 1 {
            let mut copy = pkt.to_vec();
            ip::decrement_ttl(&mut copy, s.version);
            let d = checks::valid_ip(&copy, "after decrement_ttl");
            assert_eq!(d.ttl, s.ttl - 1);
        }
    }
    if s.proto == PROTO_TCP && !s.is_fragment && s.l4_offset + 20 <= s.total_len {
        let ok = checks::tcp_checksum_ok(pkt, &s);
        for (mss, partial) in [(536u16, false), (1200, true), (0, false), (u16::MAX, false)] {
            let mut copy = pkt.to_vec();
            let lowered = tcp::clamp_mss(&mut copy[s.l4_offset..s.total_len], mss, partial);
            if !lowered {
                assert_eq!(copy, pkt, "clamp_mss changed a packet it did not clamp");
            }
            if ok && !partial {
                assert!(
                    checks::tcp_checksum_ok(&copy, &s),
                    "clamp_mss broke the TCP checksum"
                );
            }
        }
    }
    if pkt.len() >= virtio::LEN {
        let v = VirtioHdr::parse(&pkt[pkt.len() - virtio::LEN..]).unwrap_or_default();
        let mut copy = pkt[..s.total_len].to_vec();
        virtio::complete_csum(&v, &mut copy);
    }
}

fn gso(v: &VirtioHdr, pkt: &[u8]) {
    let Ok(s) = IpSummary::parse(pkt, true) else {
        return;
    };
    let cost = causeway_engine::pipeline::wire_cost(v, pkt, &s);
    let tcp_kind = matches!(v.gso_kind(), virtio::GSO_TCPV4 | virtio::GSO_TCPV6);
    let segs = checks::check_segments(pkt, &s, v);
    if let (Ok(cost), true) = (cost, tcp_kind) {
        let segs =
            segs.unwrap_or_else(|| panic!("wire_cost accepts {v:?} but segment_tcp refuses it"));
        assert_eq!(segs.len() as u64, cost.packets, "wire_cost's packet count");
        let bytes: usize = segs.iter().map(Vec::len).sum();
        assert_eq!(bytes as u64, cost.bytes, "wire_cost's byte count");
        let max = segs.iter().map(Vec::len).max().unwrap_or(0);
        assert_eq!(max, cost.max_packet, "wire_cost's largest packet");
    }
}

fn gro_flow(input: &mut Input) {
    let base = input.frame();
    let n = input.u8();
    let Ok(s) = IpSummary::parse(base, true) else {
        return;
    };
    if s.proto != PROTO_TCP || s.l4_offset + 20 > s.total_len {
        return;
    }
    let l4 = s.l4_offset;
    let doff = usize::from(base[l4 + 12] >> 4) * 4;
    let hdr = (l4 + doff.max(20)).min(s.total_len);
    let mut gro = CheckedGro::new(causeway_wire::gro::MAX_LEN);
    let mut seq = u32::from_be_bytes(base[l4 + 4..l4 + 8].try_into().unwrap());
    let mut id = u16::from_be_bytes([base[4], base[5]]);
    for i in 0..n {
        let flags = input.u8();
        let plen = usize::from(input.u16() % 2048);
        let id_step = input.u8();
        let seq_step = input.u16() as i16;
        let mut p = base[..hdr].to_vec();
        p.extend((0..plen).map(|k| (k + usize::from(i)) as u8));
        let total = p.len();
        if s.version == 4 {
            if total > 65_535 {
                continue;
            }
            p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
            p[4..6].copy_from_slice(&id.to_be_bytes());
            ip::set_v4_checksum(&mut p[..s.header_len]);
        } else {
            p[4..6].copy_from_slice(&((total - 40) as u16).to_be_bytes());
        }
        p[l4 + 4..l4 + 8].copy_from_slice(&seq.to_be_bytes());
        p[l4 + 13] = match flags & 3 {
            0 | 1 => tcp::FLAG_ACK,
            2 => tcp::FLAG_ACK | tcp::FLAG_PSH,
            _ => flags,
        };
        if flags & 0x80 == 0 {
            fix_l4_checksum(&mut p, l4);
        }
        gro.offer(&p);
        seq = seq.wrapping_add(plen as u32).wrapping_add(seq_step as u32);
        id = id.wrapping_add(u16::from(id_step));
        if flags & 0x40 != 0 {
            gro.flush();
        }
    }
    gro.flush();
}

/// One's-complement sum of 16-bit words, the slow obvious way.
fn reference(words: impl IntoIterator<Item = u32>) -> u16 {
    let mut acc: u64 = 0;
    for w in words {
        acc += u64::from(w);
    }
    while acc >> 16 != 0 {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

fn words(b: &[u8]) -> impl Iterator<Item = u32> + '_ {
    b.chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
}

fn pseudo(input: &mut Input) {
    let sel = input.u8();
    if sel & 1 == 0 {
        let src: [u8; 4] = input.u32().to_be_bytes();
        let dst: [u8; 4] = input.u32().to_be_bytes();
        let proto = input.u8();
        let len = input.u32() as u16;
        let got = checksum::fold(checksum::pseudo_v4(src, dst, proto, len));
        let want = reference(
            words(&src)
                .chain(words(&dst))
                .chain([u32::from(proto), u32::from(len)]),
        );
        assert_eq!(got, want, "pseudo_v4({src:?}, {dst:?}, {proto}, {len})");
    } else {
        let mut src = [0u8; 16];
        let mut dst = [0u8; 16];
        src.copy_from_slice(&[input.u64().to_be_bytes(), input.u64().to_be_bytes()].concat());
        dst.copy_from_slice(&[input.u64().to_be_bytes(), input.u64().to_be_bytes()].concat());
        let proto = input.u8();
        let len = input.u32();
        let got = checksum::fold(checksum::pseudo_v6(src, dst, proto, len));
        let want = reference(words(&src).chain(words(&dst)).chain([
            len >> 16,
            len & 0xffff,
            u32::from(proto),
        ]));
        assert_eq!(got, want, "pseudo_v6({src:?}, {dst:?}, {proto}, {len})");
    }
}

/// Seeds: the packets of the pipeline's seeds through every op, a super-packet, a flow of
/// segments as the tunnel opens them.
pub fn seeds() -> Vec<(String, Vec<u8>)> {
    let (s4, d4) = (a4("10.1.0.10"), a4("10.2.0.10"));
    let (s6, d6) = (a6("fd00:1::10"), a6("fd00:2::10"));
    let syn = tcp_v4(s4, d4, 7, 0x02, &[1, 2, 4, 0x05, 0xb4, 1, 3, 3, 7], &[]);
    let syn6 = tcp_v6(s6, d6, 7, 0x02, &[2, 4, 0x05, 0xa0, 4, 2], &[]);
    let udp4 = v4(s4, d4, 17, 64, false, &udp(1, 2, &counting(1400)));
    let opts4 = v4_with(
        s4,
        d4,
        17,
        64,
        false,
        &[0x83, 7, 4, 0, 0, 0, 0, 1, 0x07, 3, 0],
        &udp(1, 2, &counting(700)),
    );
    let ping = ping_v4(s4, d4, 64, &counting(56));
    let ping6 = ping_v6(s6, d6, 64, &counting(56));
    let seg = tcp_v4(
        s4,
        d4,
        1000,
        0x10,
        &[1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2],
        &counting(1000),
    );
    let seg6 = tcp_v6(s6, d6, 1000, 0x10, &[], &counting(1200));
    let mut big = tcp_v4(s4, d4, 1, 0x18, &[], &counting(8 * 1448));
    big[36] = 0;
    big[37] = 0;
    let gso_hdr = |kind| {
        let mut h = [0u8; 10];
        VirtioHdr {
            flags: virtio::F_NEEDS_CSUM,
            gso_type: kind,
            hdr_len: 40,
            gso_size: 1448,
            csum_start: 20,
            csum_offset: 16,
        }
        .write(&mut h);
        h
    };
    let flow = |base: &[u8], steps: &[(u8, u16)]| {
        let mut s = Seed::new().u8(4).frame(base).u8(steps.len() as u8);
        for &(f, n) in steps {
            s = s.u8(f).u16(n).u8(1).u16(0);
        }
        s.build()
    };
    vec![
        ("parse_syn", Seed::new().u8(0).u8(1).frame(&syn).build()),
        ("parse_syn6", Seed::new().u8(0).u8(1).frame(&syn6).build()),
        ("parse_ping", Seed::new().u8(0).u8(1).frame(&ping).build()),
        ("parse_ping6", Seed::new().u8(0).u8(1).frame(&ping6).build()),
        (
            "parse_options",
            Seed::new().u8(0).u8(1).frame(&opts4).build(),
        ),
        (
            "fragment_576",
            Seed::new().u8(1).u16(576).frame(&udp4).build(),
        ),
        (
            "fragment_options_68",
            Seed::new().u8(1).u16(68).frame(&opts4).build(),
        ),
        (
            "gso_tcpv4",
            Seed::new()
                .u8(2)
                .bytes(&gso_hdr(virtio::GSO_TCPV4))
                .frame(&big)
                .build(),
        ),
        (
            "gro_two",
            Seed::new()
                .u8(3)
                .u16(65_535)
                .u8(2)
                .frame(&seg)
                .frame(&seg)
                .build(),
        ),
        (
            "gro_flow4",
            flow(&seg, &[(0, 1000), (0, 1000), (0, 1000), (2, 500)]),
        ),
        ("gro_flow6", flow(&seg6, &[(0, 1200), (0, 1200), (0, 600)])),
        (
            "pseudo_v4",
            Seed::new()
                .u8(5)
                .u8(0)
                .u32(0x0a01_000a)
                .u32(0x0a02_000a)
                .u8(6)
                .u32(1500)
                .build(),
        ),
        (
            "pseudo_v6",
            Seed::new()
                .u8(5)
                .u8(1)
                .u64(1)
                .u64(2)
                .u64(3)
                .u64(4)
                .u8(6)
                .u32(1500)
                .build(),
        ),
    ]
    .into_iter()
    .map(|(n, d)| (n.to_string(), d))
    .collect()
}
