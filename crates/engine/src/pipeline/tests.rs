use super::*;
use causeway_wire::checksum;
use causeway_wire::ip::{PROTO_ICMP, PROTO_ICMPV6};
use proptest::prelude::*;
use std::net::{Ipv4Addr, Ipv6Addr};

struct Lab {
    eg: Egress,
    ing: Ingress,
    gw: Arc<PathCounters>,
    vnet: Arc<PathCounters>,
    circuit: Arc<PathCounters>,
    up: Arc<AtomicBool>,
    reply: Vec<u8>,
}

fn test_vnet() -> Arc<Vnet> {
    Arc::new(Vnet {
        address_space: vec![
            "10.1.0.0/16".parse().unwrap(),
            "fd00:1::/48".parse().unwrap(),
        ],
        gateway_v4: [10, 1, 255, 4],
        gateway_v6: Some("fd00:1:0:ffff::4".parse::<Ipv6Addr>().unwrap().octets()),
        mtu: 1500,
    })
}

fn policer() -> BurstPolicy {
    BurstPolicy {
        max_delay_ns: 0,
        burst_ns: 1_000_000,
        min_bits: 8 * 70_000,
        min_packets: 50,
    }
}

fn circuit(name: &str, prefixes: &[&str], mtu: usize) -> Connection {
    Connection {
        name: name.into(),
        gateway: 0,
        tunnel: None,
        prefixes: prefixes.iter().map(|p| p.parse().unwrap()).collect(),
        routing_weight: 0,
        mtu,
        up: Arc::new(AtomicBool::new(true)),
        counters: Arc::new(PathCounters::default()),
    }
}

fn gateway(bps: u64, pps: Option<u64>) -> GatewaySpec {
    GatewaySpec {
        name: "gw".into(),
        bits_per_sec: bps,
        packets_per_sec: pps,
        counters: Arc::new(PathCounters::default()),
        flows: None,
    }
}

fn lab_with(bps: u64, pps: Option<u64>, mtu: usize) -> Lab {
    let c = circuit("circuit-1", &["10.2.0.0/16", "fd00:2::/48"], mtu);
    let (up, circuit_counters) = (c.up.clone(), c.counters.clone());
    let g = gateway(bps, pps);
    let gw = g.counters.clone();
    let vc = Arc::new(PathCounters::default());
    let (eg, ing) = build(
        &PipelineSpec {
            vnet: test_vnet(),
            gateways: vec![g],
            connections: vec![c],
            burst: policer(),
            vnet_counters: vc.clone(),
        },
        0,
    );
    Lab {
        eg,
        ing,
        gw,
        vnet: vc,
        circuit: circuit_counters,
        up,
        reply: vec![0; REPLY_BUF_LEN],
    }
}

fn lab() -> Lab {
    lab_with(1_000_000_000, Some(100_000), 1500)
}

fn v4(src: &str, dst: &str, proto: u8, payload: usize, ttl: u8, df: bool) -> Vec<u8> {
    let total = 20 + payload;
    let mut p = vec![0u8; total];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    p[6] = if df { 0x40 } else { 0 };
    p[8] = ttl;
    p[9] = proto;
    p[12..16].copy_from_slice(&src.parse::<Ipv4Addr>().unwrap().octets());
    p[16..20].copy_from_slice(&dst.parse::<Ipv4Addr>().unwrap().octets());
    ip::set_v4_checksum(&mut p[..20]);
    p
}

fn v6(src: &str, dst: &str, proto: u8, payload: usize, hop: u8) -> Vec<u8> {
    let mut p = vec![0u8; 40 + payload];
    p[0] = 0x60;
    p[4..6].copy_from_slice(&(payload as u16).to_be_bytes());
    p[6] = proto;
    p[7] = hop;
    p[8..24].copy_from_slice(&src.parse::<Ipv6Addr>().unwrap().octets());
    p[24..40].copy_from_slice(&dst.parse::<Ipv6Addr>().unwrap().octets());
    p
}

fn plain() -> VirtioHdr {
    VirtioHdr::default()
}

#[test]
fn forwards_v4_and_decrements_ttl() {
    let mut l = lab();
    let mut p = v4("10.1.0.10", "10.2.0.10", PROTO_UDP, 100, 64, true);
    let v = l.eg.process(0, &plain(), &mut p, &mut l.reply);
    assert_eq!(
        v,
        Verdict::Forward {
            conn: 0,
            len: 120,
            at: 0
        }
    );
    assert_eq!(p[8], 63);
    assert_eq!(checksum::of(&p[..20]), 0);
    assert_eq!(l.gw.egress.packets.get(), 1);
    assert_eq!(l.gw.egress.bytes.get(), 120);
    assert_eq!(l.circuit.egress.packets.get(), 1);
}

#[test]
fn forwards_v6_both_ways() {
    let mut l = lab();
    let mut p = v6("fd00:1::10", "fd00:2::10", PROTO_UDP, 100, 64);
    assert_eq!(
        l.eg.process(0, &plain(), &mut p, &mut l.reply),
        Verdict::Forward {
            conn: 0,
            len: 140,
            at: 0
        }
    );
    assert_eq!(p[7], 63);
    let mut p = v6("fd00:2::10", "fd00:1::10", PROTO_UDP, 100, 64);
    assert_eq!(
        l.ing.process(0, 0, &plain(), &mut p, &mut l.reply),
        Verdict::Forward {
            conn: 0,
            len: 140,
            at: 0
        }
    );
    assert_eq!(l.gw.ingress.packets.get(), 1);
}

#[test]
fn trailing_bytes_are_not_forwarded() {
    let mut l = lab();
    let mut p = v4("10.1.0.10", "10.2.0.10", PROTO_UDP, 10, 64, true);
    p.extend_from_slice(&[0xee; 7]);
    assert_eq!(
        l.eg.process(0, &plain(), &mut p, &mut l.reply),
        Verdict::Forward {
            conn: 0,
            len: 30,
            at: 0
        }
    );
}

#[test]
fn spoofed_sources_are_dropped_both_ways() {
    let mut l = lab();
    let mut p = v4("192.0.2.1", "10.2.0.10", PROTO_UDP, 10, 64, true);
    assert_eq!(
        l.eg.process(0, &plain(), &mut p, &mut l.reply),
        Verdict::Drop(DropReason::Spoofed)
    );
    assert_eq!(l.vnet.egress.drops(DropReason::Spoofed), 1);
    // Ingress from a source outside the circuit's prefixes.
    let mut p = v4("10.3.0.1", "10.1.0.10", PROTO_UDP, 10, 64, true);
    assert_eq!(
        l.ing.process(0, 0, &plain(), &mut p, &mut l.reply),
        Verdict::Drop(DropReason::Spoofed)
    );
    assert_eq!(l.gw.ingress.drops(DropReason::Spoofed), 1);
    assert_eq!(l.circuit.ingress.drops(DropReason::Spoofed), 1);
    // Ingress to a destination outside the VNet (no transit).
    let mut p = v4("10.2.0.1", "10.2.0.2", PROTO_UDP, 10, 64, true);
    assert_eq!(
        l.ing.process(0, 0, &plain(), &mut p, &mut l.reply),
        Verdict::Drop(DropReason::DstOutsideVnet)
    );
    assert_eq!(l.gw.egress.packets.get() + l.gw.ingress.packets.get(), 0);
}

#[test]
fn no_route_sends_unreachable_from_the_gateway() {
    let mut l = lab();
    let mut p = v4("10.1.0.10", "10.9.0.1", PROTO_UDP, 10, 64, true);
    let Verdict::Reply { len } = l.eg.process(0, &plain(), &mut p, &mut l.reply) else {
        panic!()
    };
    let r = &l.reply[..len];
    let s = IpSummary::parse(r, true).unwrap();
    assert_eq!(s.src, 0x0a01ff04);
    assert_eq!(s.dst, 0x0a01000a);
    assert_eq!(s.proto, PROTO_ICMP);
    assert_eq!(r[20], icmp::V4_DEST_UNREACHABLE);
    assert_eq!(l.vnet.egress.drops(DropReason::NoRoute), 1);
    assert_eq!(l.vnet.egress.icmp_errors_sent.get(), 1);
    // IPv6 too.
    let mut p = v6("fd00:1::10", "fd00:9::1", PROTO_UDP, 10, 64);
    let Verdict::Reply { len } = l.eg.process(0, &plain(), &mut p, &mut l.reply) else {
        panic!()
    };
    assert_eq!(l.reply[40], icmp::V6_DEST_UNREACHABLE);
    assert_eq!(
        &l.reply[8..24],
        &"fd00:1:0:ffff::4".parse::<Ipv6Addr>().unwrap().octets()
    );
    assert!(len > 48);
}

#[test]
fn a_down_circuit_has_no_routes() {
    let mut l = lab();
    l.up.store(false, Ordering::Relaxed);
    let mut p = v4("10.1.0.10", "10.2.0.10", PROTO_UDP, 10, 64, true);
    assert!(matches!(
        l.eg.process(0, &plain(), &mut p, &mut l.reply),
        Verdict::Reply { .. }
    ));
    assert_eq!(l.vnet.egress.drops(DropReason::NoRoute), 1);
}

#[test]
fn ttl_expiry_both_directions() {
    let mut l = lab();
    let mut p = v4("10.1.0.10", "10.2.0.10", PROTO_UDP, 10, 1, true);
    let Verdict::Reply { len } = l.eg.process(0, &plain(), &mut p, &mut l.reply) else {
        panic!()
    };
    assert_eq!(l.reply[20], icmp::V4_TIME_EXCEEDED);
    assert!(len > 28);
    assert_eq!(l.gw.egress.drops(DropReason::TtlExpired), 1);
    let mut p = v6("fd00:2::10", "fd00:1::10", PROTO_UDP, 10, 1);
    let Verdict::Reply { .. } = l.ing.process(0, 0, &plain(), &mut p, &mut l.reply) else {
        panic!()
    };
    assert_eq!(l.reply[40], icmp::V6_TIME_EXCEEDED);
    // The ICMP error to the on-premises sender comes from the gateway's address.
    assert_eq!(
        &l.reply[24..40],
        &"fd00:2::10".parse::<Ipv6Addr>().unwrap().octets()
    );
    assert_eq!(l.circuit.ingress.drops(DropReason::TtlExpired), 1);
}

#[test]
fn too_big_with_df_gets_frag_needed_and_without_df_is_fragmented() {
    let mut l = lab_with(1_000_000_000, Some(100_000), 1400);
    let mut p = v4("10.1.0.10", "10.2.0.10", PROTO_UDP, 1460, 64, true);
    let Verdict::Reply { .. } = l.eg.process(0, &plain(), &mut p, &mut l.reply) else {
        panic!()
    };
    assert_eq!(l.reply[20], icmp::V4_DEST_UNREACHABLE);
    assert_eq!(l.reply[21], icmp::V4_CODE_FRAG_NEEDED);
    assert_eq!(u16::from_be_bytes([l.reply[26], l.reply[27]]), 1400);
    assert_eq!(l.gw.egress.drops(DropReason::TooBig), 1);
    let mut p = v4("10.1.0.10", "10.2.0.10", PROTO_UDP, 1460, 64, false);
    assert_eq!(
        l.eg.process(0, &plain(), &mut p, &mut l.reply),
        Verdict::Fragment {
            conn: 0,
            len: 1480,
            mtu: 1400,
            at: 0
        }
    );
    assert_eq!(l.gw.egress.packets.get(), 2);
    assert_eq!(l.gw.egress.bytes.get(), 1500);
    let mut p = v6("fd00:1::10", "fd00:2::10", PROTO_UDP, 1400, 64);
    let Verdict::Reply { .. } = l.eg.process(0, &plain(), &mut p, &mut l.reply) else {
        panic!()
    };
    assert_eq!(l.reply[40], icmp::V6_PACKET_TOO_BIG);
}

#[test]
fn gateway_answers_ping_and_drops_the_rest() {
    let mut l = lab();
    let mut p = v4("10.1.0.10", "10.1.255.4", PROTO_ICMP, 16, 64, false);
    p[20] = icmp::V4_ECHO_REQUEST;
    let c = checksum::of(&p[20..]);
    p[22..24].copy_from_slice(&c.to_be_bytes());
    let Verdict::Reply { len } = l.eg.process(0, &plain(), &mut p, &mut l.reply) else {
        panic!()
    };
    assert_eq!(len, 36);
    assert_eq!(l.reply[20], icmp::V4_ECHO_REPLY);
    assert_eq!(l.vnet.egress.echo_replies.get(), 1);
    // From on-premises too.
    let mut q = v4("10.2.0.10", "10.1.255.4", PROTO_ICMP, 16, 64, false);
    q[20..].copy_from_slice(&p[20..]);
    let Verdict::Reply { .. } = l.ing.process(0, 0, &plain(), &mut q, &mut l.reply) else {
        panic!()
    };
    assert_eq!(l.reply[20], icmp::V4_ECHO_REPLY);
    // TCP to the gateway is not answered.
    let mut t = v4("10.1.0.10", "10.1.255.4", PROTO_TCP, 20, 64, true);
    assert_eq!(
        l.eg.process(0, &plain(), &mut t, &mut l.reply),
        Verdict::Drop(DropReason::ToGateway)
    );
    // ICMPv6 echo to the gateway's v6 address.
    let mut p6 = v6("fd00:1::10", "fd00:1:0:ffff::4", PROTO_ICMPV6, 8, 64);
    p6[40] = icmp::V6_ECHO_REQUEST;
    let sum = checksum::pseudo_v6(
        p6[8..24].try_into().unwrap(),
        p6[24..40].try_into().unwrap(),
        PROTO_ICMPV6,
        8,
    );
    let c = checksum::finish(checksum::add(sum, &p6[40..]));
    p6[42..44].copy_from_slice(&c.to_be_bytes());
    let Verdict::Reply { .. } = l.eg.process(0, &plain(), &mut p6, &mut l.reply) else {
        panic!()
    };
    assert_eq!(l.reply[40], icmp::V6_ECHO_REPLY);
}

#[test]
fn malformed_packets_are_counted() {
    let mut l = lab();
    let mut p = v4("10.1.0.10", "10.2.0.10", PROTO_UDP, 10, 64, true);
    p[10] ^= 0xff;
    assert_eq!(
        l.eg.process(0, &plain(), &mut p, &mut l.reply),
        Verdict::Drop(DropReason::MalformedChecksum)
    );
    let mut short = vec![0x45, 0, 0];
    assert_eq!(
        l.eg.process(0, &plain(), &mut short, &mut l.reply),
        Verdict::Drop(DropReason::MalformedTruncated)
    );
    let mut garbage = vec![0x75; 40];
    assert_eq!(
        l.ing.process(0, 0, &plain(), &mut garbage, &mut l.reply),
        Verdict::Drop(DropReason::MalformedVersion)
    );
    assert_eq!(l.vnet.egress.drops(DropReason::MalformedChecksum), 1);
    assert_eq!(l.gw.ingress.drops(DropReason::MalformedVersion), 1);
}

#[test]
fn link_local_and_multicast_are_not_routed() {
    let mut l = lab();
    let mut p = v6("fe80::1", "ff02::2", PROTO_ICMPV6, 8, 255);
    assert_eq!(
        l.eg.process(0, &plain(), &mut p, &mut l.reply),
        Verdict::Drop(DropReason::LinkLocal)
    );
    let mut p = v4("10.1.0.10", "224.0.0.5", PROTO_UDP, 8, 1, false);
    assert_eq!(
        l.eg.process(0, &plain(), &mut p, &mut l.reply),
        Verdict::Drop(DropReason::LinkLocal)
    );
}

fn tcp_super(payload: usize, gso: u16) -> (VirtioHdr, Vec<u8>) {
    let mut p = v4("10.1.0.10", "10.2.0.10", PROTO_TCP, 32 + payload, 64, true);
    p[20 + 12] = 8 << 4; // data offset 32
    let v = VirtioHdr {
        flags: virtio::F_NEEDS_CSUM,
        gso_type: virtio::GSO_TCPV4,
        hdr_len: 52,
        gso_size: gso,
        csum_start: 20,
        csum_offset: 16,
    };
    (v, p)
}

#[test]
fn a_super_packet_counts_as_its_segments() {
    let mut l = lab();
    let (v, mut p) = tcp_super(45 * 1448, 1448);
    assert_eq!(
        l.eg.process(0, &v, &mut p, &mut l.reply),
        Verdict::Forward {
            conn: 0,
            len: 52 + 45 * 1448,
            at: 0
        }
    );
    assert_eq!(l.gw.egress.packets.get(), 45);
    assert_eq!(l.gw.egress.bytes.get(), (45 * (1448 + 52)) as u64);
    assert_eq!(l.gw.egress.super_packets.get(), 1);
    // A last partial segment is a segment.
    let (v, mut p) = tcp_super(1448 + 1, 1448);
    assert!(matches!(
        l.eg.process(0, &v, &mut p, &mut l.reply),
        Verdict::Forward { .. }
    ));
    assert_eq!(l.gw.egress.packets.get(), 47);
}

#[test]
fn super_packet_checked_against_mtu_by_segment() {
    let mut l = lab_with(1_000_000_000, None, 1400);
    let (v, mut p) = tcp_super(10 * 1448, 1448);
    let Verdict::Reply { .. } = l.eg.process(0, &v, &mut p, &mut l.reply) else {
        panic!()
    };
    assert_eq!(u16::from_be_bytes([l.reply[26], l.reply[27]]), 1400);
    // A dropped super-packet counts as the wire packets it carried.
    assert_eq!(l.gw.egress.drops(DropReason::TooBig), 10);
    let (v, mut p) = tcp_super(10 * 1300, 1300);
    assert!(matches!(
        l.eg.process(0, &v, &mut p, &mut l.reply),
        Verdict::Forward { .. }
    ));
}

#[test]
fn inconsistent_virtio_headers_are_malformed() {
    let mut l = lab();
    let (mut v, mut p) = tcp_super(1000, 1448);
    v.gso_size = 0;
    assert_eq!(
        l.eg.process(0, &v, &mut p, &mut l.reply),
        Verdict::Drop(DropReason::MalformedVirtio)
    );
    let (mut v, mut p) = tcp_super(1000, 1448);
    v.gso_type = virtio::GSO_TCPV6;
    assert_eq!(
        l.eg.process(0, &v, &mut p, &mut l.reply),
        Verdict::Drop(DropReason::MalformedVirtio)
    );
    let mut u = v4("10.1.0.10", "10.2.0.10", PROTO_UDP, 10, 64, true);
    let v = VirtioHdr {
        flags: virtio::F_NEEDS_CSUM,
        csum_start: 20,
        csum_offset: 60,
        ..Default::default()
    };
    assert_eq!(
        l.eg.process(0, &v, &mut u, &mut l.reply),
        Verdict::Drop(DropReason::MalformedVirtio)
    );
}

/// Regression (fuzz target `pipeline_ingress`): a partial checksum (`NEEDS_CSUM`) starting at
/// offset 0 passed validation; the packet, too big for the MTU with DF clear, was to be
/// fragmented, and completing the checksum first wrote it over the IPv4 version and length,
/// after which `fragment_v4` panicked. Such a header is malformed.
#[test]
fn a_partial_checksum_inside_the_ip_header_is_malformed() {
    let mut l = lab_with(1_000_000_000, None, 1400);
    for start in [0u16, 10, 19] {
        let mut p = v4("10.1.0.10", "10.2.0.10", PROTO_UDP, 1600, 64, false);
        let v = VirtioHdr {
            flags: virtio::F_NEEDS_CSUM,
            csum_start: start,
            csum_offset: 0,
            ..Default::default()
        };
        assert_eq!(
            l.eg.process(0, &v, &mut p, &mut l.reply),
            Verdict::Drop(DropReason::MalformedVirtio),
            "csum_start {start}"
        );
        assert_eq!(p[0], 0x45, "the packet is untouched");
    }
    // At the transport header, as the kernel sends it: fragmented.
    let mut p = v4("10.1.0.10", "10.2.0.10", PROTO_UDP, 1600, 64, false);
    let v = VirtioHdr {
        flags: virtio::F_NEEDS_CSUM,
        csum_start: 20,
        csum_offset: 6,
        ..Default::default()
    };
    assert!(matches!(
        l.eg.process(0, &v, &mut p, &mut l.reply),
        Verdict::Fragment { .. }
    ));
}

#[test]
fn shaper_holds_the_rate_and_counts_the_excess() {
    // 10 Mbit/s, 1 ms burst floor of 70 000 bytes: offer 1 s worth of 1500-byte packets at
    // 100 Mbit/s and see about 10 Mbit/s + one burst pass.
    let mut l = lab_with(10_000_000, None, 1500);
    let mut passed = 0u64;
    let pkt = v4("10.1.0.10", "10.2.0.10", PROTO_UDP, 1480, 64, true);
    for i in 0..8_333u64 {
        let now = i * 120_000; // one 1500-byte packet every 120 us = 100 Mbit/s
        let mut p = pkt.clone();
        if let Verdict::Forward { .. } = l.eg.process(now, &plain(), &mut p, &mut l.reply) {
            passed += 1500;
        }
    }
    let bits = passed * 8;
    assert!(
        bits <= 10_000_000 + 8 * 70_000 + 12_000,
        "passed {bits} bits"
    );
    assert!(bits >= 9_500_000, "passed {bits} bits");
    let dropped = l.gw.egress.drops(DropReason::ShapedBps);
    assert_eq!(dropped + l.gw.egress.packets.get(), 8_333);
}

#[test]
fn pps_limit_applies() {
    let mut l = lab_with(100_000_000_000, Some(1000), 1500);
    let mut n = 0;
    for i in 0..200u64 {
        let mut p = v4("10.1.0.10", "10.2.0.10", PROTO_UDP, 10, 64, true);
        if matches!(
            l.eg.process(i * 100_000, &plain(), &mut p, &mut l.reply),
            Verdict::Forward { .. }
        ) {
            n += 1;
        }
    }
    // 20 ms at 1000 pps = 20 packets plus the 50-packet burst.
    assert!((60..=71).contains(&n), "{n}");
    assert!(l.gw.egress.drops(DropReason::ShapedPps) > 0);
}

#[test]
fn icmp_errors_are_rate_limited() {
    let mut l = lab();
    let mut sent = 0;
    for _ in 0..(ICMP_ERRORS_BURST + 50) {
        let mut p = v4("10.1.0.10", "10.9.0.1", PROTO_UDP, 10, 64, true);
        if let Verdict::Reply { .. } = l.eg.process(0, &plain(), &mut p, &mut l.reply) {
            sent += 1;
        }
    }
    assert_eq!(sent, ICMP_ERRORS_BURST);
    assert_eq!(l.vnet.egress.icmp_rate_limited.get(), 50);
    assert_eq!(
        l.vnet.egress.drops(DropReason::NoRoute),
        ICMP_ERRORS_BURST + 50
    );
}

/// An ExpressRoute gateway (0) with a circuit to 10.2/16, and a VPN gateway (1) with a tunnel
/// to 10.2/16 (the backup) and 10.3/16, capped per tunnel.
fn coexistence() -> (Egress, Ingress, Vec<Connection>, Vec<GatewaySpec>) {
    let c = circuit("circuit-1", &["10.2.0.0/16"], 1500);
    let mut t = circuit(
        "s2s-1",
        &["10.2.0.0/16", "10.3.0.0/16", "fd00:3::/48"],
        1400,
    );
    t.gateway = 1;
    t.routing_weight = 32_000;
    t.tunnel = Some(TunnelParams {
        mss_clamp: Some(1350),
        cap_bits_per_sec: Some(8_000_000),
    });
    let gws = vec![gateway(1_000_000_000, None), gateway(1_000_000_000, None)];
    let spec = PipelineSpec {
        vnet: test_vnet(),
        gateways: gws.clone(),
        connections: vec![c, t],
        burst: BurstPolicy {
            max_delay_ns: 0,
            burst_ns: 1_000_000,
            min_bits: 8 * 10_000,
            min_packets: 50,
        },
        vnet_counters: Arc::new(PathCounters::default()),
    };
    let (eg, ing) = build(&spec, 0);
    (eg, ing, spec.connections, gws)
}

#[test]
fn a_circuit_wins_over_a_tunnel_which_is_its_backup() {
    let (mut eg, _, conns, _) = coexistence();
    let mut reply = vec![0; REPLY_BUF_LEN];
    let mut p = v4("10.1.0.10", "10.2.0.10", PROTO_UDP, 100, 64, true);
    assert!(matches!(
        eg.process(0, &plain(), &mut p, &mut reply),
        Verdict::Forward { conn: 0, .. }
    ));
    conns[0].up.store(false, Ordering::Relaxed);
    let mut p = v4("10.1.0.10", "10.2.0.10", PROTO_UDP, 100, 64, true);
    assert!(matches!(
        eg.process(0, &plain(), &mut p, &mut reply),
        Verdict::Forward { conn: 1, .. }
    ));
    let mut p = v4("10.1.0.10", "10.3.0.10", PROTO_UDP, 100, 64, true);
    assert!(matches!(
        eg.process(0, &plain(), &mut p, &mut reply),
        Verdict::Forward { conn: 1, .. }
    ));
}

#[test]
fn tunnels_clamp_the_mss_of_syns_and_use_the_tunnel_mtu() {
    let (mut eg, mut ing, conns, gws) = coexistence();
    let mut reply = vec![0; REPLY_BUF_LEN];
    let syn = |src: &str, dst: &str| {
        let mut p = v4(src, dst, PROTO_TCP, 24, 64, true);
        p[20 + 12] = 6 << 4;
        p[20 + 13] = causeway_wire::tcp::FLAG_SYN;
        p[40..44].copy_from_slice(&[2, 4, 0x05, 0xb4]); // MSS 1460
        let pseudo = checksum::pseudo_v4(
            p[12..16].try_into().unwrap(),
            p[16..20].try_into().unwrap(),
            PROTO_TCP,
            24,
        );
        causeway_wire::tcp::set_checksum(&mut p[20..], pseudo);
        p
    };
    let mut p = syn("10.1.0.10", "10.3.0.10");
    assert!(matches!(
        eg.process(0, &plain(), &mut p, &mut reply),
        Verdict::Forward { conn: 1, .. }
    ));
    assert_eq!(u16::from_be_bytes([p[42], p[43]]), 1350);
    let pseudo = checksum::pseudo_v4(
        p[12..16].try_into().unwrap(),
        p[16..20].try_into().unwrap(),
        PROTO_TCP,
        24,
    );
    assert_eq!(checksum::finish(checksum::add(pseudo, &p[20..])), 0);
    // And the other way, on the inner packet of the tunnel.
    let mut p = syn("10.3.0.10", "10.1.0.10");
    assert!(matches!(
        ing.process(0, 1, &plain(), &mut p, &mut reply),
        Verdict::Forward { .. }
    ));
    assert_eq!(u16::from_be_bytes([p[42], p[43]]), 1350);
    // A circuit does not clamp.
    let mut p = syn("10.1.0.10", "10.2.0.10");
    assert!(matches!(
        eg.process(0, &plain(), &mut p, &mut reply),
        Verdict::Forward { conn: 0, .. }
    ));
    assert_eq!(u16::from_be_bytes([p[42], p[43]]), 1460);
    // Tunnel MTU 1400: a 1500-byte packet with DF is too big.
    let mut p = v4("10.1.0.10", "10.3.0.10", PROTO_UDP, 1480, 64, true);
    let Verdict::Reply { .. } = eg.process(0, &plain(), &mut p, &mut reply) else {
        panic!()
    };
    assert_eq!(u16::from_be_bytes([reply[26], reply[27]]), 1400);
    assert_eq!(conns[1].counters.egress.drops(DropReason::TooBig), 1);
    assert_eq!(gws[1].counters.egress.drops(DropReason::TooBig), 1);
    assert_eq!(gws[0].counters.egress.drops(DropReason::TooBig), 0);
}

#[test]
fn the_per_tunnel_cap_is_its_own_drop_reason() {
    let (mut eg, _, conns, gws) = coexistence();
    let mut reply = vec![0; REPLY_BUF_LEN];
    // Cap 8 Mbit/s with a 10 000-byte burst floor: the 8th 1400-byte packet at t=0 is over it.
    let mut passed = 0;
    for _ in 0..20 {
        let mut p = v4("10.1.0.10", "10.3.0.10", PROTO_UDP, 1380, 64, true);
        if matches!(
            eg.process(0, &plain(), &mut p, &mut reply),
            Verdict::Forward { .. }
        ) {
            passed += 1;
        }
    }
    assert_eq!(passed, 7);
    assert_eq!(
        conns[1].counters.egress.drops(DropReason::ShapedTunnelCap),
        13
    );
    assert_eq!(gws[1].counters.egress.drops(DropReason::ShapedBps), 0);
}

#[test]
fn a_packet_refused_by_the_gateway_takes_nothing_from_the_tunnel_cap() {
    // Cap 80 Mbit/s (1 ms burst: 10 000 bytes), gateway 1 Mbit/s (burst floor 2 000 bytes): the
    // gateway refuses first; the cap must keep its tokens for later.
    let c = circuit("s2s-1", &["10.3.0.0/16"], 1400);
    let mut t = c.clone();
    t.tunnel = Some(TunnelParams {
        mss_clamp: None,
        cap_bits_per_sec: Some(80_000_000),
    });
    let spec = PipelineSpec {
        vnet: test_vnet(),
        gateways: vec![gateway(1_000_000, None)],
        connections: vec![t],
        burst: BurstPolicy {
            max_delay_ns: 0,
            burst_ns: 1_000_000,
            min_bits: 8 * 2_000,
            min_packets: 50,
        },
        vnet_counters: Arc::new(PathCounters::default()),
    };
    let (mut eg, _) = build(&spec, 0);
    let mut reply = vec![0; REPLY_BUF_LEN];
    let mut forwarded = 0;
    for _ in 0..10 {
        let mut p = v4("10.1.0.10", "10.3.0.10", PROTO_UDP, 980, 64, true);
        if matches!(
            eg.process(0, &plain(), &mut p, &mut reply),
            Verdict::Forward { .. }
        ) {
            forwarded += 1;
        }
    }
    // Two 1000-byte packets fit the gateway's burst; the rest are the gateway's refusals.
    assert_eq!(forwarded, 2);
    let conn = &spec.connections[0].counters.egress;
    assert_eq!(conn.drops(DropReason::ShapedBps), 8);
    assert_eq!(conn.drops(DropReason::ShapedTunnelCap), 0);
    // The cap still holds 8 000 bytes of its 10 000: a gateway with room would pass 8 more.
    let cap = &mut eg.common.caps[0].as_mut().unwrap();
    assert!(cap.check(0, 8_000, 8).is_ok());
    assert!(cap.check(0, 8_001, 8).is_err());
}

#[test]
fn ipv6_syns_are_clamped_for_the_longer_header() {
    let (mut eg, _, _, _) = coexistence();
    let mut reply = vec![0; REPLY_BUF_LEN];
    let mut p = v6("fd00:1::10", "fd00:3::10", PROTO_TCP, 24, 64);
    p[40 + 12] = 6 << 4;
    p[40 + 13] = causeway_wire::tcp::FLAG_SYN;
    p[60..64].copy_from_slice(&[2, 4, 0x05, 0xa0]); // MSS 1440
    let v = VirtioHdr {
        flags: virtio::F_NEEDS_CSUM,
        csum_start: 40,
        csum_offset: 16,
        ..Default::default()
    };
    assert!(matches!(
        eg.process(0, &v, &mut p, &mut reply),
        Verdict::Forward { conn: 1, .. }
    ));
    // Tunnel MTU 1400 - 40 (IPv6) - 20 (TCP) = 1340, below the configured 1350.
    assert_eq!(u16::from_be_bytes([p[62], p[63]]), 1340);
}

#[test]
fn spoofed_inner_sources_are_dropped_at_the_tunnel() {
    let (_, mut ing, conns, _) = coexistence();
    let mut reply = vec![0; REPLY_BUF_LEN];
    let mut p = v4("10.9.0.1", "10.1.0.10", PROTO_UDP, 10, 64, true);
    assert_eq!(
        ing.process(0, 1, &plain(), &mut p, &mut reply),
        Verdict::Drop(DropReason::Spoofed)
    );
    assert_eq!(conns[1].counters.ingress.drops(DropReason::Spoofed), 1);
}

proptest! {
    /// Arbitrary bytes and virtio headers never panic, and any forwarded packet is a valid IP
    /// packet that fits the buffer.
    #[test]
    fn never_panics_on_garbage(
        data in proptest::collection::vec(any::<u8>(), 0..200),
        first in prop_oneof![Just(0x45u8), Just(0x60u8), any::<u8>()],
        vh in proptest::collection::vec(any::<u8>(), 10),
        ingress in any::<bool>(),
    ) {
        let mut l = lab();
        let mut p = data.clone();
        if !p.is_empty() { p[0] = first; }
        let v = VirtioHdr::parse(&vh).unwrap();
        let verdict = if ingress {
            l.ing.process(0, 0, &v, &mut p, &mut l.reply)
        } else {
            l.eg.process(0, &v, &mut p, &mut l.reply)
        };
        match verdict {
            Verdict::Forward { len, .. } | Verdict::Fragment { len, .. } => {
                prop_assert!(len <= p.len());
                prop_assert!(IpSummary::parse(&p[..len], true).is_ok());
            }
            Verdict::Reply { len } => prop_assert!(IpSummary::parse(&l.reply[..len], true).is_ok()),
            Verdict::Drop(_) => {}
        }
    }
}

#[test]
fn a_live_resize_changes_the_rate_in_place() {
    // Standard-like 1 Mbit/s, then "resized" to 2 Mbit/s under traffic.
    let mut l = lab_with(1_000_000, None, 1500);
    let live = vec![LiveLimits::default()];
    let offer = |l: &mut Lab, from: u64, to: u64| {
        let mut bytes = 0u64;
        let mut t = from;
        while t < to {
            let mut p = v4("10.1.0.10", "10.2.0.10", PROTO_UDP, 980, 64, true);
            l.eg.apply_live(t, &live);
            if matches!(
                l.eg.process(t, &plain(), &mut p, &mut l.reply),
                Verdict::Forward { .. }
            ) {
                bytes += 1000;
            }
            t += 1_000_000; // a 1000-byte packet every ms: 8 Mbit/s offered
        }
        bytes * 8
    };
    // Let the initial burst drain first.
    offer(&mut l, 0, 1_000_000_000);
    let before = offer(&mut l, 1_000_000_000, 2_000_000_000);
    live[0].set(2_000_000, None, None);
    let after = offer(&mut l, 2_000_000_000, 3_000_000_000);
    assert!((900_000..=1_100_000).contains(&before), "{before}");
    assert!((1_900_000..=2_100_000).contains(&after), "{after}");
    // Nothing changes without a new generation.
    assert_eq!(l.eg.gateway_shaper(0).unwrap().bits_per_sec(), 2_000_000);
}

#[test]
fn set_connections_reroutes_and_keeps_the_cap_of_a_connection_that_stays() {
    let (mut eg, mut ing, conns, _) = coexistence();
    let mut reply = vec![0; REPLY_BUF_LEN];
    // Drain most of the tunnel cap's burst (8 Mbit/s, 10 kB minimum burst).
    let mut sent = 0;
    for _ in 0..20 {
        let mut p = v4("10.1.0.10", "10.3.0.10", PROTO_UDP, 972, 64, true);
        if matches!(
            eg.process(0, &plain(), &mut p, &mut reply),
            Verdict::Forward { conn: 1, .. }
        ) {
            sent += 1;
        }
    }
    assert!(sent < 20, "the cap refused some of the burst");
    // Reload: the circuit is removed (a tombstone at index 0: no prefixes, down), the tunnel
    // stays at index 1 (same counters), a new circuit takes index 2.
    let mut gone = conns[0].clone();
    gone.prefixes.clear();
    gone.up = Arc::new(AtomicBool::new(false));
    let new_circuit = circuit("circuit-2", &["10.4.0.0/16"], 1500);
    let next = vec![gone, conns[1].clone(), new_circuit];
    eg.set_connections(0, next.clone());
    ing.set_connections(0, next);
    // 10.2/16 now goes through the tunnel (the circuit that won it is gone).
    let mut p = v4("10.1.0.10", "10.2.0.10", PROTO_UDP, 100, 64, true);
    let v = eg.process(0, &plain(), &mut p, &mut reply);
    assert!(
        matches!(v, Verdict::Drop(DropReason::ShapedTunnelCap)),
        "the tunnel's cap kept its (spent) tokens: {v:?}"
    );
    let mut p = v4("10.1.0.10", "10.4.0.10", PROTO_UDP, 100, 64, true);
    assert!(matches!(
        eg.process(0, &plain(), &mut p, &mut reply),
        Verdict::Forward { conn: 2, .. }
    ));
    // Ingress from the new circuit is checked against its own prefixes.
    let mut p = v4("10.4.0.10", "10.1.0.10", PROTO_UDP, 100, 64, true);
    assert!(matches!(
        ing.process(0, 2, &plain(), &mut p, &mut reply),
        Verdict::Forward { .. }
    ));
    // A replaced tunnel (new counters at the same index) gets a fresh cap.
    let mut t = conns[1].clone();
    t.counters = Arc::new(PathCounters::default());
    let mut gone = conns[0].clone();
    gone.prefixes.clear();
    gone.up = Arc::new(AtomicBool::new(false));
    eg.set_connections(0, vec![gone, t]);
    let mut p = v4("10.1.0.10", "10.3.0.10", PROTO_UDP, 100, 64, true);
    assert!(matches!(
        eg.process(0, &plain(), &mut p, &mut reply),
        Verdict::Forward { conn: 1, .. }
    ));
}

// ---------------------------------------------------------------------------------------------
// Rule 10: the gateway's flow table.

/// The lab with a flow table of `max_flows` and `rate` new flows/s, shared by both halves.
fn flow_lab(max_flows: usize, rate: Option<u64>) -> (Lab, SharedFlows) {
    let flows: SharedFlows = Arc::new(Mutex::new(FlowTable::new(
        crate::flow::FlowLimits {
            max_flows,
            new_flows_per_sec: rate,
        },
        crate::flow::FlowTimeouts::default(),
        crate::flow::FlowHasher::with_seed(7),
        0,
    )));
    let c = circuit("circuit-1", &["10.2.0.0/16", "fd00:2::/48"], 1500);
    let (up, circuit_counters) = (c.up.clone(), c.counters.clone());
    let mut g = gateway(1_000_000_000, Some(100_000));
    g.flows = Some(flows.clone());
    let gw = g.counters.clone();
    let vc = Arc::new(PathCounters::default());
    let (eg, ing) = build(
        &PipelineSpec {
            vnet: test_vnet(),
            gateways: vec![g],
            connections: vec![c],
            burst: policer(),
            vnet_counters: vc.clone(),
        },
        0,
    );
    let l = Lab {
        eg,
        ing,
        gw,
        vnet: vc,
        circuit: circuit_counters,
        up,
        reply: vec![0; REPLY_BUF_LEN],
    };
    (l, flows)
}

/// A TCP segment (20-byte header, `payload` bytes) with `flags`.
fn tcp4(src: &str, sport: u16, dst: &str, dport: u16, flags: u8, payload: usize) -> Vec<u8> {
    let mut p = v4(src, dst, PROTO_TCP, 20 + payload, 64, true);
    p[20..22].copy_from_slice(&sport.to_be_bytes());
    p[22..24].copy_from_slice(&dport.to_be_bytes());
    p[32] = 5 << 4;
    p[33] = flags;
    p
}

fn udp4(src: &str, sport: u16, dst: &str, dport: u16, payload: usize) -> Vec<u8> {
    let mut p = v4(src, dst, PROTO_UDP, 8 + payload, 64, true);
    p[20..22].copy_from_slice(&sport.to_be_bytes());
    p[22..24].copy_from_slice(&dport.to_be_bytes());
    p[24..26].copy_from_slice(&((8 + payload) as u16).to_be_bytes());
    p
}

const SYN: u8 = 0x02;
const ACK: u8 = 0x10;

fn forwarded(v: Verdict) -> bool {
    matches!(v, Verdict::Forward { .. } | Verdict::Fragment { .. })
}

#[test]
fn a_full_table_refuses_new_flows_and_existing_ones_go_on_both_ways() {
    let (mut l, flows) = flow_lab(2, None);
    for port in [40000, 40001] {
        let mut p = tcp4("10.1.0.10", port, "10.2.0.10", 5201, SYN, 0);
        assert!(forwarded(l.eg.process(1, &plain(), &mut p, &mut l.reply)));
    }
    // A third connection is refused, counted at the gateway and the connection.
    let mut p = tcp4("10.1.0.10", 40002, "10.2.0.10", 5201, SYN, 0);
    assert_eq!(
        l.eg.process(2, &plain(), &mut p, &mut l.reply),
        Verdict::Drop(DropReason::FlowTableFull)
    );
    assert_eq!(l.gw.egress.drops(DropReason::FlowTableFull), 1);
    assert_eq!(l.circuit.egress.drops(DropReason::FlowTableFull), 1);
    // An inbound connection too (the table is the gateway's, both directions).
    let mut p = tcp4("10.2.0.10", 6000, "10.1.0.10", 22, SYN, 0);
    assert_eq!(
        l.ing.process(3, 0, &plain(), &mut p, &mut l.reply),
        Verdict::Drop(DropReason::FlowTableFull)
    );
    assert_eq!(l.gw.ingress.drops(DropReason::FlowTableFull), 1);
    // The established ones keep flowing, both ways: the reply is the same flow.
    for t in 4..10 {
        let mut p = tcp4("10.2.0.10", 5201, "10.1.0.10", 40000, SYN | ACK, 100);
        assert!(forwarded(l.ing.process(
            t,
            0,
            &plain(),
            &mut p,
            &mut l.reply
        )));
        let mut p = tcp4("10.1.0.10", 40000, "10.2.0.10", 5201, ACK, 10);
        assert!(forwarded(l.eg.process(t, &plain(), &mut p, &mut l.reply)));
    }
    let t = lock_flows(&flows);
    assert_eq!(t.len(), 2);
    let (key, _) = crate::flow::FlowKey::new(
        4,
        PROTO_TCP,
        (u128::from(u32::from_be_bytes([10, 1, 0, 10])), 40000),
        (u128::from(u32::from_be_bytes([10, 2, 0, 10])), 5201),
    );
    let f = t.get(10, &key).expect("the flow is held");
    assert_eq!(f.packets, [7, 6]);
    assert_eq!(f.bytes, [40 + 6 * 50, 6 * 140]);
    assert_eq!(f.state, crate::flow::FlowState::TcpEstablished);
    assert_eq!(f.connection, Some(0));
    assert_eq!(t.stats().refused_full, 2);
    // Only forwarded packets were counted as forwarded.
    assert_eq!(l.gw.egress.packets.get(), 2 + 6);
    assert_eq!(l.gw.ingress.packets.get(), 6);
}

#[test]
fn new_flows_above_the_rate_are_dropped_and_the_bucket_refills() {
    // 10/s: a burst of 10 (never more than a second's worth), then one per 100 ms.
    let (mut l, flows) = flow_lab(1000, Some(10));
    let mut admitted = 0;
    for port in 0..30u16 {
        let mut p = udp4("10.1.0.10", 10_000 + port, "10.2.0.10", 53, 20);
        match l.eg.process(1_000, &plain(), &mut p, &mut l.reply) {
            Verdict::Forward { .. } => admitted += 1,
            Verdict::Drop(DropReason::NewFlowRate) => {}
            v => panic!("unexpected {v:?}"),
        }
    }
    assert_eq!(admitted, 10);
    assert_eq!(l.gw.egress.drops(DropReason::NewFlowRate), 20);
    assert_eq!(l.circuit.egress.drops(DropReason::NewFlowRate), 20);
    // Packets of admitted flows are never refused by the rate.
    let mut p = udp4("10.2.0.10", 53, "10.1.0.10", 10_000, 20);
    assert!(forwarded(l.ing.process(
        2_000,
        0,
        &plain(),
        &mut p,
        &mut l.reply
    )));
    // 300 ms later: three more.
    let mut later = 0;
    for port in 100..110u16 {
        let mut p = udp4("10.1.0.10", 10_000 + port, "10.2.0.10", 53, 20);
        if forwarded(l.eg.process(300_001_000, &plain(), &mut p, &mut l.reply)) {
            later += 1;
        }
    }
    assert_eq!(later, 3);
    assert_eq!(lock_flows(&flows).stats().created, 13);
}

#[test]
fn a_refused_packet_takes_no_shaper_tokens() {
    let (mut l, _flows) = flow_lab(1, None);
    let mut p = udp4("10.1.0.10", 1, "10.2.0.10", 53, 20);
    assert!(forwarded(l.eg.process(0, &plain(), &mut p, &mut l.reply)));
    let before = l.eg.gateway_shaper(0).unwrap().clone();
    for port in 2..100 {
        let mut p = udp4("10.1.0.10", port, "10.2.0.10", 53, 1000);
        assert_eq!(
            l.eg.process(0, &plain(), &mut p, &mut l.reply),
            Verdict::Drop(DropReason::FlowTableFull)
        );
    }
    assert_eq!(
        format!("{:?}", l.eg.gateway_shaper(0).unwrap()),
        format!("{before:?}")
    );
}

#[test]
fn a_super_packet_counts_its_wire_packets_on_the_flow() {
    let (mut l, flows) = flow_lab(10, None);
    let (v, mut p) = tcp_super(45 * 1448, 1448);
    assert!(forwarded(l.eg.process(0, &v, &mut p, &mut l.reply)));
    let t = lock_flows(&flows);
    let f = t.iter(0).next().expect("one flow");
    assert_eq!(f.packets[0], 45);
    assert_eq!(f.bytes[0], (45 * (1448 + 52)) as u64);
}

#[test]
fn idle_flows_are_swept_and_make_room() {
    let (mut l, flows) = flow_lab(1, None);
    let mut p = udp4("10.1.0.10", 1, "10.2.0.10", 53, 20);
    assert!(forwarded(l.eg.process(0, &plain(), &mut p, &mut l.reply)));
    let mut p = udp4("10.1.0.10", 2, "10.2.0.10", 53, 20);
    assert_eq!(
        l.eg.process(1, &plain(), &mut p, &mut l.reply),
        Verdict::Drop(DropReason::FlowTableFull)
    );
    // UDP one way: 30 s idle. Not yet...
    assert_eq!(l.ing.expire_flows(29_000_000_000, 64), 0);
    // ...then gone, and the new flow fits.
    assert_eq!(l.ing.expire_flows(30_000_000_000, 64), 1);
    assert_eq!(lock_flows(&flows).len(), 0);
    let mut p = udp4("10.1.0.10", 2, "10.2.0.10", 53, 20);
    assert!(forwarded(l.eg.process(
        30_000_000_001,
        &plain(),
        &mut p,
        &mut l.reply
    )));
    assert_eq!(lock_flows(&flows).stats().expired, 1);
}

/// A port unreachable from `from` to `to` quoting `quoted`.
fn port_unreachable(from: &str, to: &str, quoted: &[u8]) -> Vec<u8> {
    let mut e = v4(from, to, PROTO_ICMP, 8 + quoted.len(), 64, false);
    e[20] = 3;
    e[21] = 3;
    e[28..].copy_from_slice(quoted);
    e
}

#[test]
fn icmp_errors_about_a_held_flow_are_never_refused_and_start_no_flow() {
    let (mut l, flows) = flow_lab(1, None);
    let mut p = udp4("10.1.0.10", 1, "10.2.0.10", 53, 20);
    assert!(forwarded(l.eg.process(0, &plain(), &mut p, &mut l.reply)));
    // The table is full.
    for port in 100..200u16 {
        let mut p = udp4("10.1.0.10", port, "10.2.0.10", 53, 20);
        assert!(!forwarded(l.eg.process(0, &plain(), &mut p, &mut l.reply)));
    }
    // A port unreachable about the held flow, from on-premises: counted on it, not refused.
    let quoted = udp4("10.1.0.10", 1, "10.2.0.10", 53, 8);
    let mut e = port_unreachable("10.2.0.10", "10.1.0.10", &quoted);
    assert!(forwarded(l.ing.process(
        1,
        0,
        &plain(),
        &mut e,
        &mut l.reply
    )));
    let t = lock_flows(&flows);
    assert_eq!(t.len(), 1);
    let f = t.iter(1).next().unwrap();
    assert_eq!(f.packets, [1, 1]);
    assert_eq!(l.gw.ingress.drops(DropReason::FlowTableFull), 0);
}

#[test]
fn a_forged_icmp_error_about_no_held_flow_is_within_the_limits() {
    let (mut l, flows) = flow_lab(1, None);
    let mut p = udp4("10.1.0.10", 1, "10.2.0.10", 53, 20);
    assert!(forwarded(l.eg.process(0, &plain(), &mut p, &mut l.reply)));
    // Errors quoting made-up flows: the table is full, so they are refused like any new flow
    // (they used to be forwarded untracked, whatever the limits).
    for port in 2..50u16 {
        let quoted = udp4("10.1.0.10", port, "10.2.0.10", 53, 8);
        let mut e = port_unreachable("10.2.0.10", "10.1.0.10", &quoted);
        assert_eq!(
            l.ing.process(1, 0, &plain(), &mut e, &mut l.reply),
            Verdict::Drop(DropReason::FlowTableFull)
        );
    }
    assert_eq!(l.gw.ingress.drops(DropReason::FlowTableFull), 48);
    assert_eq!(lock_flows(&flows).len(), 1);
    // Within the rate too.
    let (mut l, flows) = flow_lab(1000, Some(1));
    let mut forwarded_errors = 0;
    for port in 2..100u16 {
        let quoted = udp4("10.1.0.10", port, "10.2.0.10", 53, 8);
        let mut e = port_unreachable(&format!("10.2.0.{port}"), "10.1.0.10", &quoted);
        if forwarded(l.ing.process(1, 0, &plain(), &mut e, &mut l.reply)) {
            forwarded_errors += 1;
        }
    }
    let burst = crate::flow::new_flow_burst(1) as usize;
    assert_eq!(forwarded_errors, burst);
    assert_eq!(
        l.gw.ingress.drops(DropReason::NewFlowRate),
        (98 - burst) as u64
    );
    // Each admitted one is an ordinary ICMP flow of its own addresses.
    let t = lock_flows(&flows);
    assert_eq!(t.len(), burst);
    assert!(t.iter(1).all(|f| f.key.proto() == PROTO_ICMP));
}

/// Fragments of one UDP datagram from `src` to `dst`: the first (UDP header, ports, MF) and a
/// later one (offset 1480, no UDP header).
fn udp4_fragments(src: &str, sport: u16, dst: &str, dport: u16) -> (Vec<u8>, Vec<u8>) {
    let mut first = udp4(src, sport, dst, dport, 1472);
    first[6] = 0x20; // MF, offset 0
    ip::set_v4_checksum(&mut first[..20]);
    let mut later = v4(src, dst, PROTO_UDP, 528, 64, false);
    later[6..8].copy_from_slice(&(1480u16 / 8).to_be_bytes());
    ip::set_v4_checksum(&mut later[..20]);
    (first, later)
}

#[test]
fn a_fragmented_udp_flow_keeps_flowing_with_the_table_full_or_the_rate_used_up() {
    for (max_flows, rate) in [(1, None), (1000, Some(1))] {
        let (mut l, flows) = flow_lab(max_flows, rate);
        let (mut first, mut later) = udp4_fragments("10.1.0.10", 4000, "10.2.0.10", 5000);
        assert!(forwarded(l.eg.process(
            0,
            &plain(),
            &mut first,
            &mut l.reply
        )));
        assert!(forwarded(l.eg.process(
            0,
            &plain(),
            &mut later,
            &mut l.reply
        )));
        // Fill the table, or use up the new-flow tokens, with other flows.
        for port in 1..100u16 {
            let mut p = udp4("10.1.0.10", port, "10.2.0.10", 53, 20);
            let _ = l.eg.process(1, &plain(), &mut p, &mut l.reply);
        }
        let refused_before = l.gw.egress.drops(DropReason::FlowTableFull)
            + l.gw.egress.drops(DropReason::NewFlowRate);
        assert!(refused_before > 0);
        // The established fragmented flow goes on, both ways, later fragments included.
        for t in 2..20u64 {
            let (mut first, mut later) = udp4_fragments("10.1.0.10", 4000, "10.2.0.10", 5000);
            assert!(forwarded(l.eg.process(
                t,
                &plain(),
                &mut first,
                &mut l.reply
            )));
            assert!(forwarded(l.eg.process(
                t,
                &plain(),
                &mut later,
                &mut l.reply
            )));
            let (mut first, mut later) = udp4_fragments("10.2.0.10", 5000, "10.1.0.10", 4000);
            assert!(forwarded(l.ing.process(
                t,
                0,
                &plain(),
                &mut first,
                &mut l.reply
            )));
            assert!(forwarded(l.ing.process(
                t,
                0,
                &plain(),
                &mut later,
                &mut l.reply
            )));
        }
        // A new fragmented flow: its first fragment is refused as before, but its later
        // fragments are never refused (nor take an entry).
        let (mut first, mut later) = udp4_fragments("10.1.0.10", 4001, "10.2.0.10", 5000);
        assert!(!forwarded(l.eg.process(
            30,
            &plain(),
            &mut first,
            &mut l.reply
        )));
        let mut other = later.clone();
        other[16..20].copy_from_slice(&[10, 2, 0, 11]);
        ip::set_v4_checksum(&mut other[..20]);
        assert!(forwarded(l.eg.process(
            30,
            &plain(),
            &mut other,
            &mut l.reply
        )));
        assert!(forwarded(l.eg.process(
            30,
            &plain(),
            &mut later,
            &mut l.reply
        )));
        let refused_after = l.gw.egress.drops(DropReason::FlowTableFull)
            + l.gw.egress.drops(DropReason::NewFlowRate);
        assert_eq!(refused_after, refused_before + 1);
        // One entry for the fragmented flow (not two), with its first fragments counted.
        let t = lock_flows(&flows);
        let mine: Vec<_> = t
            .iter(30)
            .filter(|f| f.key.endpoint(f.initiator).1 == 4000 || f.key.endpoint(f.initiator).1 == 0)
            .collect();
        assert_eq!(mine.len(), 1, "{mine:?}");
        assert_eq!(mine[0].packets, [19, 18]);
    }
}

#[test]
fn without_a_table_nothing_is_tracked_or_refused() {
    let mut l = lab();
    for port in 0..100u16 {
        let mut p = udp4("10.1.0.10", port, "10.2.0.10", 53, 20);
        assert!(forwarded(l.eg.process(0, &plain(), &mut p, &mut l.reply)));
    }
    assert_eq!(l.eg.expire_flows(0, 64), 0);
}

proptest! {
    /// Affinity: a packet, its reply and an ICMP error about it are steered to the same worker
    /// (whatever the number of workers), and through the two halves they are one flow entry.
    #[test]
    fn a_flow_and_its_reply_are_one_entry_and_one_worker(
        a in 0u16..=u16::MAX, b in 0u16..=u16::MAX, host in 1u8..=250, tcp in any::<bool>(),
        workers in 1usize..=16,
    ) {
        let (mut l, flows) = flow_lab(100, None);
        let vnet = format!("10.1.0.{host}");
        let (mut out, mut back) = if tcp {
            (tcp4(&vnet, a, "10.2.0.10", b, SYN, 0), tcp4("10.2.0.10", b, &vnet, a, SYN | ACK, 0))
        } else {
            (udp4(&vnet, a, "10.2.0.10", b, 10), udp4("10.2.0.10", b, &vnet, a, 10))
        };
        let w = flow_worker(&out, workers).unwrap();
        prop_assert!(w < workers);
        prop_assert_eq!(flow_worker(&back, workers), Some(w));
        // A port unreachable about `out`, from on-premises.
        let mut quoted = out.clone();
        quoted.truncate(28);
        let mut err = v4("10.2.0.10", &vnet, PROTO_ICMP, 8 + quoted.len(), 64, false);
        err[20] = 3;
        err[21] = 3;
        err[28..].copy_from_slice(&quoted);
        prop_assert_eq!(flow_worker(&err, workers), Some(w));
        prop_assert!(forwarded(l.eg.process(1, &plain(), &mut out, &mut l.reply)));
        prop_assert!(forwarded(l.ing.process(2, 0, &plain(), &mut back, &mut l.reply)));
        prop_assert!(forwarded(l.ing.process(3, 0, &plain(), &mut err, &mut l.reply)));
        let t = lock_flows(&flows);
        prop_assert_eq!(t.len(), 1);
        let f = t.iter(3).next().unwrap();
        // The error is counted on the flow, in the reply direction.
        prop_assert_eq!(f.packets, [1, 2]);
    }
}

#[test]
fn flow_worker_refuses_garbage() {
    assert_eq!(flow_worker(&[0x45, 0, 0], 4), None);
    assert_eq!(flow_worker(&[], 4), None);
}
