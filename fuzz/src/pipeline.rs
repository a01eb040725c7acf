//! Targets `pipeline_egress` and `pipeline_ingress`: packets as a TUN (VNet side, or a
//! circuit) or a tunnel's ESP open hands them to `Egress::process` / `Ingress::process`, with an
//! arbitrary virtio-net header, and what the daemon does next with the verdict (fragmenting,
//! segmenting a super-packet for a tunnel, coalescing towards the VNet).
//!
//! Input: a byte choosing the topology, then records until the input ends:
//!
//! - `ctl` (any value below 0xf0): a packet. `ctl & 7` is the connection it arrives on
//!   (ingress; 5..7 are not connections), `ctl >> 3` advances the clock by `2^k - 1` ns. Then
//!   10 bytes of virtio-net header and a frame (u16 length, bytes) with the IP packet.
//! - `0xf0`: a live resize (`LiveLimits::set`): gateway u8, bits/s u64, packets/s u32 (0: none),
//!   per-tunnel cap u32 kbit/s (0: none).
//! - `0xf1`: connection u8 goes down or up.
//! - `0xf2`: a reload (`set_connections`) with the connections in reverse order.
//!
//! Checked beyond "no panic": a `Forward` is a valid IP packet no longer than what came in,
//! with its TTL decremented; a `Fragment` fragments (`fragment_v4`) into valid fragments within
//! the MTU that reassemble; a TCP super-packet forwarded to a tunnel segments (`segment_tcp`)
//! into valid segments; a `Reply` is a valid ICMP message within the reply buffer; ingress
//! packets forwarded at once go through a checked GRO (see [`crate::checks::CheckedGro`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use causeway_engine::pipeline::{
    build, Connection, Egress, GatewaySpec, Ingress, LiveLimits, PathCounters, PipelineSpec,
    TunnelParams, Verdict, Vnet, REPLY_BUF_LEN,
};
use causeway_engine::prefix::Prefix;
use causeway_engine::shaper::BurstPolicy;
use causeway_wire::ip::IpSummary;
use causeway_wire::virtio::{self, VirtioHdr};

use crate::checks::{self, CheckedGro};
use crate::input::{Input, Seed};
use crate::packets::*;

fn prefixes(list: &[&str]) -> Vec<Prefix> {
    list.iter().map(|s| s.parse().expect("prefix")).collect()
}

fn conn(
    name: &str,
    gateway: usize,
    tunnel: Option<TunnelParams>,
    p: &[&str],
    mtu: usize,
) -> Connection {
    Connection {
        name: name.into(),
        gateway,
        tunnel,
        prefixes: prefixes(p),
        routing_weight: 0,
        mtu,
        up: Arc::new(AtomicBool::new(true)),
        counters: Arc::new(PathCounters::default()),
    }
}

/// The topology: VNet 10.1.0.0/16 + fd00:1::/48 behind an ExpressRoute gateway (circuit to
/// 10.2/16, a circuit with a 576-byte MTU to 10.4/16) and a VPN gateway (tunnel to 10.3/16 and
/// 10.2.128/17 with an MSS clamp and a per-tunnel cap, a tunnel that is down). Variant 1 adds a
/// forced-tunnel default route (0.0.0.0/0, ::/0) on a second tunnel, so that any destination
/// routes; variant 0 leaves unrouted destinations unreachable.
pub fn spec(variant: u8) -> PipelineSpec {
    let vnet = Arc::new(Vnet {
        address_space: prefixes(&["10.1.0.0/16", "fd00:1::/48"]),
        gateway_v4: a4("10.1.255.4"),
        gateway_v6: Some(a6("fd00:1:0:ffff::4")),
        mtu: 1500,
    });
    let tunnel = |mss, cap| {
        Some(TunnelParams {
            mss_clamp: mss,
            cap_bits_per_sec: cap,
        })
    };
    let mut connections = vec![
        conn("circuit-1", 0, None, &["10.2.0.0/16", "fd00:2::/48"], 1500),
        conn(
            "tunnel-1",
            1,
            tunnel(Some(1360), Some(50_000_000)),
            &["10.3.0.0/16", "10.2.128.0/17", "fd00:3::/48"],
            1400,
        ),
        conn(
            "circuit-small",
            0,
            None,
            &["10.4.0.0/16", "fd00:4::/48"],
            576,
        ),
        conn("tunnel-down", 1, tunnel(None, None), &["10.5.0.0/16"], 1400),
    ];
    connections[3].up.store(false, Ordering::Relaxed);
    if variant & 1 == 1 {
        let mut d = conn(
            "forced",
            1,
            tunnel(Some(1200), None),
            &["0.0.0.0/0", "::/0"],
            1300,
        );
        d.routing_weight = 10;
        connections.push(d);
    }
    // The ExpressRoute gateway tracks flows in a small table (64 flows, 1000 new/s, a fixed
    // hash seed: runs are reproducible) so that inputs reach its refusals too; the Vpn gateway
    // tracks none.
    let flows = |max_flows| {
        Arc::new(std::sync::Mutex::new(causeway_engine::flow::FlowTable::new(
            causeway_engine::flow::FlowLimits {
                max_flows,
                new_flows_per_sec: Some(1000),
            },
            causeway_engine::flow::FlowTimeouts::default(),
            causeway_engine::flow::FlowHasher::with_seed(1),
            0,
        )))
    };
    let gateway = |name: &str, bits, pps, tracked: bool| GatewaySpec {
        name: name.into(),
        bits_per_sec: bits,
        packets_per_sec: pps,
        counters: Arc::new(PathCounters::default()),
        flows: tracked.then(|| flows(64)),
    };
    PipelineSpec {
        vnet,
        gateways: vec![
            gateway("er-gw", 10_000_000_000, Some(1_000_000), true),
            gateway("vpn-gw", 100_000_000, None, false),
        ],
        connections,
        burst: BurstPolicy::default(),
        vnet_counters: Arc::new(PathCounters::default()),
    }
}

thread_local! {
    static REPLY: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0; REPLY_BUF_LEN]);
}

/// Which half of the pipeline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Egress,
    Ingress,
}

/// Runs one input through the egress half.
pub fn egress(data: &[u8]) {
    run(data, Side::Egress);
}

/// Runs one input through the ingress half.
pub fn ingress(data: &[u8]) {
    run(data, Side::Ingress);
}

fn run(data: &[u8], side: Side) {
    let mut input = Input::new(data);
    let variant = input.u8();
    let spec = spec(variant);
    let mut now: u64 = 1_000_000_000;
    let (mut eg, mut ing) = build(&spec, now);
    let live: Vec<LiveLimits> = spec
        .gateways
        .iter()
        .map(|_| LiveLimits::default())
        .collect();
    let mut gro = CheckedGro::new(causeway_wire::gro::MAX_LEN);
    REPLY.with(|r| {
        let mut reply = r.borrow_mut();
        while !input.is_empty() {
            let ctl = input.u8();
            match ctl {
                0xf0 => {
                    let g = usize::from(input.u8()) % live.len();
                    let bits = input.u64();
                    let pps = input.u32();
                    let cap = input.u32();
                    live[g].set(
                        bits,
                        (pps != 0).then_some(u64::from(pps)),
                        (cap != 0).then_some(u64::from(cap) * 1000),
                    );
                    eg.apply_live(now, &live);
                    ing.apply_live(now, &live);
                }
                0xf1 => {
                    let cs = eg.connections();
                    if let Some(c) = cs.get(usize::from(input.u8()) % cs.len()) {
                        c.up.fetch_xor(true, Ordering::Relaxed);
                    }
                }
                0xf2 => {
                    let mut cs = eg.connections().to_vec();
                    cs.reverse();
                    eg.set_connections(now, cs.clone());
                    ing.set_connections(now, cs);
                }
                _ => {
                    let k = u32::from(ctl >> 3);
                    now = now.saturating_add((1u64 << k) - 1);
                    let v = VirtioHdr::parse(input.take(virtio::LEN)).unwrap_or_default();
                    let mut pkt = input.frame().to_vec();
                    let conn = usize::from(ctl & 7);
                    packet(
                        side, &mut eg, &mut ing, &mut gro, now, conn, &v, &mut pkt, &mut reply,
                    );
                }
            }
        }
    });
    gro.flush();
}

#[allow(clippy::too_many_arguments)]
fn packet(
    side: Side,
    eg: &mut Egress,
    ing: &mut Ingress,
    gro: &mut CheckedGro,
    now: u64,
    conn: usize,
    v: &VirtioHdr,
    pkt: &mut [u8],
    reply: &mut [u8],
) {
    let before = IpSummary::parse(pkt, true).ok();
    let in_len = pkt.len();
    let verdict = match side {
        Side::Egress => eg.process(now, v, pkt, reply),
        Side::Ingress => ing.process(now, conn, v, pkt, reply),
    };
    let connections = eg.connections();
    match verdict {
        Verdict::Forward { conn: to, len, .. } => {
            assert!(len <= in_len, "forwarded {len} bytes of {in_len}");
            let s0 = before.expect("forwarded a packet that did not parse");
            let s = checks::valid_ip(&pkt[..len], "forwarded packet");
            assert_eq!(s.total_len, len, "forwarded length");
            assert_eq!(s.ttl, s0.ttl - 1, "TTL of the forwarded packet");
            assert!(
                to < connections.len(),
                "connection {to} of {}",
                connections.len()
            );
            if side == Side::Egress {
                let tunnel = connections[to].tunnel.is_some();
                let tcp_gso = matches!(v.gso_kind(), virtio::GSO_TCPV4 | virtio::GSO_TCPV6);
                if tunnel && tcp_gso {
                    // What the tunnel sender does with a super-packet: segment it.
                    let mut full = pkt[..len].to_vec();
                    if v.needs_csum() {
                        virtio::complete_csum(v, &mut full);
                    }
                    checks::check_segments(&full, &s, v)
                        .expect("a super-packet the pipeline forwarded to a tunnel must segment");
                }
            } else if !v.is_gso() {
                // Tunnel ingress: towards the VNet through GRO.
                gro.offer(&pkt[..len]);
            }
        }
        Verdict::Fragment {
            conn: to, len, mtu, ..
        } => {
            assert!(len <= in_len, "fragmenting {len} bytes of {in_len}");
            assert!(to < connections.len());
            let s = checks::valid_ip(&pkt[..len], "packet to fragment");
            assert_eq!(s.version, 4, "fragmenting IPv6");
            assert!(!s.dont_fragment, "fragmenting a DF packet");
            checks::check_fragments(&pkt[..len], mtu)
                .expect("the pipeline asked for fragments that fragment_v4 refuses");
        }
        Verdict::Reply { len } => {
            assert!(len <= reply.len(), "reply of {len} bytes");
            assert!(
                before.is_some(),
                "a reply about a packet that did not parse"
            );
            checks::check_reply(&reply[..len]);
        }
        Verdict::Drop(_) => {}
    }
}

/// One packet record of the input layout.
pub fn record(ctl: u8, v: VirtioHdr, pkt: &[u8]) -> Seed {
    let mut h = [0u8; virtio::LEN];
    v.write(&mut h);
    Seed::new().u8(ctl).bytes(&h).frame(pkt)
}

fn join(variant: u8, records: Vec<Seed>) -> Vec<u8> {
    let mut out = vec![variant];
    for r in records {
        out.extend(r.build());
    }
    out
}

/// A TCP super-packet as a TUN with TSO hands it over.
fn tcp_super(src: [u8; 4], dst: [u8; 4], segs: usize, mss: u16) -> (VirtioHdr, Vec<u8>) {
    let payload = counting(segs * usize::from(mss));
    let mut p = v4(
        src,
        dst,
        causeway_wire::ip::PROTO_TCP,
        64,
        true,
        &tcp(
            40000,
            5201,
            1,
            0x18,
            &[1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2],
            &payload,
        ),
    );
    // The partial checksum the kernel leaves: the pseudo-header sum.
    let tcp_len = (p.len() - 20) as u16;
    let pseudo =
        causeway_wire::checksum::fold(causeway_wire::checksum::pseudo_v4(src, dst, 6, tcp_len));
    p[36..38].copy_from_slice(&pseudo.to_be_bytes());
    let v = VirtioHdr {
        flags: virtio::F_NEEDS_CSUM,
        gso_type: virtio::GSO_TCPV4,
        hdr_len: 52,
        gso_size: mss,
        csum_start: 20,
        csum_offset: 16,
    };
    (v, p)
}

/// Seeds: the packets of the lab and the end-to-end tests (UDP, TCP, super-packets, pings of
/// the gateway, SYNs to a tunnel, IPv6 with extension headers, expiring TTLs, packets to
/// fragment), as named files.
pub fn seeds(side: Side) -> Vec<(String, Vec<u8>)> {
    let z = VirtioHdr::default();
    let (vnet, far, tun, small) = (
        a4("10.1.0.10"),
        a4("10.2.0.10"),
        a4("10.3.0.10"),
        a4("10.4.0.10"),
    );
    let (vnet6, far6, tun6) = (a6("fd00:1::10"), a6("fd00:2::10"), a6("fd00:3::10"));
    let gw4 = a4("10.1.255.4");
    let gw6 = a6("fd00:1:0:ffff::4");
    let (src, dst, src6, dst6) = match side {
        Side::Egress => (vnet, far, vnet6, far6),
        Side::Ingress => (far, vnet, far6, vnet6),
    };
    let (tsrc, tdst, tsrc6, tdst6) = match side {
        Side::Egress => (vnet, tun, vnet6, tun6),
        Side::Ingress => (tun, vnet, tun6, vnet6),
    };
    let udp_pkt = |s, d, n| v4(s, d, 17, 64, true, &udp(40000, 5201, &counting(n)));
    let syn = tcp_v4(
        tsrc,
        tdst,
        7,
        0x02,
        &[2, 4, 0x05, 0xb4, 1, 3, 3, 7, 4, 2],
        &[],
    );
    let syn6 = tcp_v6(tsrc6, tdst6, 7, 0x02, &[2, 4, 0x05, 0xa0, 1, 1, 4, 2], &[]);
    let hbh = [17, 0, 1, 4, 0, 0, 0, 0]; // hop-by-hop: PadN, next UDP
    let frag6 = [17, 0, 0, 0, 0, 0, 0, 42]; // fragment header, offset 0, no MF
    let mut s: Vec<(&str, Vec<Seed>)> = vec![
        ("udp64", vec![record(0, z, &udp_pkt(src, dst, 36))]),
        ("udp1400", vec![record(0, z, &udp_pkt(src, dst, 1372))]),
        ("udp_tunnel", vec![record(1, z, &udp_pkt(tsrc, tdst, 500))]),
        ("tcp_syn_mss_tunnel", vec![record(1, z, &syn)]),
        ("tcp6_syn_mss_tunnel", vec![record(1, z, &syn6)]),
        (
            "ttl1",
            vec![record(
                0,
                z,
                &v4(src, dst, 17, 1, true, &udp(1, 2, b"expire")),
            )],
        ),
        (
            "no_route",
            vec![record(0, z, &udp_pkt(src, a4("192.0.2.1"), 20))],
        ),
        (
            "udp6",
            vec![record(
                0,
                z,
                &v6(src6, dst6, 17, 64, &[], &udp(40000, 5201, &counting(100))),
            )],
        ),
        (
            "udp6_hbh_frag",
            vec![record(
                0,
                z,
                &v6(
                    src6,
                    dst6,
                    0,
                    64,
                    &[hbh.as_slice(), &frag6].concat(),
                    &udp(1, 2, b"six"),
                ),
            )],
        ),
        (
            "v4_options",
            vec![record(
                0,
                z,
                &v4_with(
                    src,
                    dst,
                    17,
                    64,
                    false,
                    &[0x83, 7, 4, 0, 0, 0, 0, 1],
                    &udp(1, 2, &counting(40)),
                ),
            )],
        ),
        (
            "icmp_echo_to_far",
            vec![record(0, z, &ping_v4(src, dst, 64, &counting(56)))],
        ),
        (
            "burst",
            (0..6)
                .map(|i| record(8 * (i as u8 % 4), z, &udp_pkt(src, dst, 1000 + i * 50)))
                .collect(),
        ),
        (
            "resize_then_udp",
            vec![
                Seed::new().u8(0xf0).u8(0).u64(1_000_000).u32(100).u32(0),
                record(0, z, &udp_pkt(src, dst, 1400)),
                record(0, z, &udp_pkt(src, dst, 1400)),
            ],
        ),
        (
            "down_up_reload",
            vec![
                Seed::new().u8(0xf1).u8(0),
                record(0, z, &udp_pkt(src, dst, 100)),
                Seed::new().u8(0xf1).u8(0),
                Seed::new().u8(0xf2),
                record(0, z, &udp_pkt(src, dst, 100)),
            ],
        ),
    ];
    match side {
        Side::Egress => {
            let (v, sp) = tcp_super(vnet, tun, 10, 1348);
            s.push(("tcp_super_to_tunnel", vec![record(0, v, &sp)]));
            let (v, sp) = tcp_super(vnet, far, 45, 1448);
            s.push(("tcp_super64k", vec![record(0, v, &sp)]));
            s.push((
                "ping_gateway",
                vec![record(0, z, &ping_v4(vnet, gw4, 64, &counting(56)))],
            ));
            s.push((
                "ping6_gateway",
                vec![record(0, z, &ping_v6(vnet6, gw6, 64, &counting(56)))],
            ));
            s.push((
                "fragment_small_mtu",
                vec![record(
                    0,
                    z,
                    &v4(vnet, small, 17, 64, false, &udp(1, 2, &counting(1200))),
                )],
            ));
            s.push((
                "too_big_df",
                vec![record(
                    0,
                    z,
                    &v4(vnet, small, 17, 64, true, &udp(1, 2, &counting(1200))),
                )],
            ));
            s.push(("spoofed", vec![record(0, z, &udp_pkt(far, tun, 20))]));
        }
        Side::Ingress => {
            s.push((
                "ping_gateway",
                vec![record(0, z, &ping_v4(far, gw4, 64, &counting(56)))],
            ));
            s.push((
                "ping6_gateway",
                vec![record(0, z, &ping_v6(far6, gw6, 64, &counting(56)))],
            ));
            // A flow of full segments from the tunnel, as GRO merges them.
            let segs: Vec<Seed> = (0..4u32)
                .map(|i| {
                    let mut p = tcp_v4(tun, vnet, 1 + i * 1000, 0x10, &[], &counting(1000));
                    p[4..6].copy_from_slice(&(0x100 + i as u16).to_be_bytes());
                    causeway_wire::ip::set_v4_checksum(&mut p[..20]);
                    record(1, z, &p)
                })
                .collect();
            s.push(("tcp_flow_gro", segs));
            s.push((
                "dst_outside_vnet",
                vec![record(0, z, &udp_pkt(far, a4("10.9.0.1"), 20))],
            ));
            s.push((
                "fragment_ingress",
                vec![record(
                    0,
                    z,
                    &v4(far, vnet, 17, 64, false, &udp(1, 2, &counting(1600))),
                )],
            ));
        }
    }
    s.into_iter()
        .map(|(name, recs)| {
            let variant = u8::from(name.contains("tunnel") && name.contains("super"));
            (name.to_string(), join(variant, recs))
        })
        .collect()
}
