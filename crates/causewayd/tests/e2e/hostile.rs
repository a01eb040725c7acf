//! Hostile traffic from the three sides of a gateway while legitimate traffic runs (issue 7).
//!
//! Gateway A has an IKE-keyed tunnel to Causeway B and an ExpressRoute circuit whose TUN
//! (`cw-er0`, 10.4.0.10/16) is in A's own namespace, where the iperf3 server runs. For
//! [`HOSTILE_SECS`] seconds three senders, each paced at [`hostile_pps`] packets per second,
//! send only packets the gateway must refuse:
//!
//! - **VNet side**: written onto the VNet TUN from its namespace with a packet socket (so that
//!   nothing in the kernel fixes them up): truncated, wrong version, wrong lengths, wrong header
//!   checksums, spoofed sources, multicast and broadcast, TTL 0 and 1, IPv4 options, IPv6
//!   hop-by-hop and routing headers, later and overlapping fragments, too big for the tunnel,
//!   random bytes;
//! - **on-premises side**: the same kinds written onto the circuit's TUN (MTU 9000, so that an
//!   8 000-byte packet toward the VNet's MTU 1500 can arrive), plus destinations outside the
//!   VNet (transit);
//! - **underlay**: random datagrams to UDP 4500; forged ESP under the tunnel's SPI; replayed
//!   ESP captured from B; an IKE_SA_INIT flood from the peer's address (cookies); IKE_SA_INIT
//!   from a stranger; random bytes to UDP 500; IKE messages of unknown SAs on UDP 4500;
//!   oversized datagrams (20 000 bytes to 4500, 30 000 to 500).
//!
//! Meanwhile iperf3 runs VNet -> circuit at a fixed rate and ping runs through the tunnel.
//! Afterwards: A is alive, iperf3 kept at least 90% of the rate it had before the attack, the
//! tunnel answered pings, every hostile packet is in a counter (drop reasons, IKE counters,
//! or a kernel drop counter on the way), half-open IKE SAs stayed at the cookie threshold and
//! A's memory grew by less than 8 MiB (after a warm-up that made the shaper's one-time hold
//! rings).

use super::*;
use causeway_sys::packet::PacketSocket;
use std::net::{SocketAddr, UdpSocket};

/// Seconds the attack lasts (and the legitimate iperf3 transfer beside it).
const HOSTILE_SECS: u32 = 10;

/// Packets per second each of the three hostile senders aims at: `CAUSEWAY_HOSTILE_PPS`, or
/// 15,000 (45,000 hostile packets a second in all, beside the legitimate transfer: what the
/// 2-core test machine sustains while the suite's own processes share it).
fn hostile_pps() -> u64 {
    std::env::var("CAUSEWAY_HOSTILE_PPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|v| *v > 0)
        .unwrap_or(15_000)
}

/// A small deterministic generator (xorshift64*), so that a failing run can be repeated.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn fill(&mut self, buf: &mut [u8]) {
        for b in buf {
            *b = self.next() as u8;
        }
    }

    fn bytes(&mut self, min: usize, max: usize) -> Vec<u8> {
        let mut v = vec![0u8; min + self.below((max - min + 1) as u64) as usize];
        self.fill(&mut v);
        v
    }
}

/// An IPv4 packet; `frag` is the flags-and-offset field (0x4000 = DF, 0x2000 = MF).
fn ipv4(src: [u8; 4], dst: [u8; 4], ttl: u8, options: &[u8], frag: u16, payload: &[u8]) -> Vec<u8> {
    assert_eq!(options.len() % 4, 0);
    let ihl = 20 + options.len();
    let total = ihl + payload.len();
    let mut p = vec![0u8; total];
    p[0] = 0x40 | (ihl / 4) as u8;
    p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    p[4..6].copy_from_slice(&0x4321u16.to_be_bytes());
    p[6..8].copy_from_slice(&frag.to_be_bytes());
    p[8] = ttl;
    p[9] = 17;
    p[12..16].copy_from_slice(&src);
    p[16..20].copy_from_slice(&dst);
    p[20..ihl].copy_from_slice(options);
    let c = !fold(ones_sum(0, &p[..ihl]));
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p[ihl..].copy_from_slice(payload);
    p
}

/// A UDP header and payload (checksum 0: none, legal over IPv4).
fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut u = Vec::with_capacity(8 + payload.len());
    u.extend_from_slice(&sport.to_be_bytes());
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(payload);
    u
}

/// An IPv6 packet whose payload starts with one extension header of type `ext` (0 hop-by-hop,
/// 43 routing) followed by UDP.
fn ipv6_ext(src: [u8; 16], dst: [u8; 16], hop: u8, ext: u8) -> Vec<u8> {
    let mut ext_hdr = vec![17u8, 0, 1, 4, 0, 0, 0, 0]; // next UDP, 8 bytes, PadN
    if ext == 43 {
        ext_hdr = vec![17, 0, 0, 0, 0, 0, 0, 0]; // type 0, segments left 0
    }
    let body = [ext_hdr, udp(4000, 9, &[0x55; 16])].concat();
    let mut p = vec![0u8; 40];
    p[0] = 0x60;
    p[4..6].copy_from_slice(&(body.len() as u16).to_be_bytes());
    p[6] = ext;
    p[7] = hop;
    p[8..24].copy_from_slice(&src);
    p[24..40].copy_from_slice(&dst);
    p.extend_from_slice(&body);
    p
}

fn v6(s: &str) -> [u8; 16] {
    s.parse::<std::net::Ipv6Addr>().unwrap().octets()
}

/// The hostile packets written onto a TUN from its far side: `inside` is an allowed source
/// (a VNet address, or an on-premises one for a circuit), `routed` a destination the gateway
/// would forward to, `gateway` the gateway's own address, `nowhere` an address outside
/// everything. Each is refused by the gateway's policy; which rule refuses it is in the name.
fn tun_packet(kind: usize, rng: &mut Rng, ends: &TunEnds) -> Vec<u8> {
    let TunEnds {
        inside,
        routed,
        gateway,
        nowhere,
        spoofed,
        too_big_dst,
        big,
    } = *ends;
    let data = udp(4000 + rng.below(1000) as u16, 9, &rng.bytes(8, 64));
    match kind % TUN_KINDS {
        // Malformed: truncated, wrong version, length beyond the buffer, header checksum.
        0 => ipv4(inside, routed, 64, &[], 0, &data)[..12].to_vec(),
        1 => {
            let mut p = ipv4(inside, routed, 64, &[], 0, &data);
            p[0] = 0x55;
            p
        }
        2 => {
            let mut p = ipv4(inside, routed, 64, &[], 0, &data);
            let bad = (p.len() + 100) as u16;
            p[2..4].copy_from_slice(&bad.to_be_bytes());
            p
        }
        3 => {
            let mut p = ipv4(inside, routed, 64, &[], 0, &data);
            p[10] ^= 0x5a;
            p
        }
        // Spoofed source; multicast and broadcast destinations.
        4 => ipv4(spoofed, routed, 64, &[], 0, &data),
        5 => ipv4(inside, [224, 0, 0, 251], 64, &[], 0, &data),
        6 => ipv4(inside, [255, 255, 255, 255], 64, &[], 0, &data),
        // TTL 0 and 1 toward a routed destination.
        7 => ipv4(inside, routed, 0, &[], 0, &data),
        8 => ipv4(inside, routed, 1, &[], 0, &data),
        // IPv4 options (NOP NOP NOP EOL, then a router alert) to the gateway itself.
        9 => ipv4(inside, gateway, 64, &[1, 1, 1, 0, 148, 4, 0, 0], 0, &data),
        // A later fragment, and two overlapping fragments, to nowhere.
        10 => ipv4(inside, nowhere, 64, &[], 185, &data),
        11 => ipv4(inside, nowhere, 64, &[], 0x2000, &rng.bytes(48, 48)),
        12 => ipv4(inside, nowhere, 64, &[], 3, &rng.bytes(48, 48)),
        // Too big for the way out (the tunnel's MTU 1400, the VNet's 1500), DF set.
        13 => ipv4(
            inside,
            too_big_dst,
            64,
            &[],
            0x4000,
            &udp(4000, 9, &vec![7u8; big]),
        ),
        // IPv6 with a hop-by-hop header from link-local to all-nodes; with a routing header from
        // an address outside the VNet.
        14 => ipv6_ext(v6("fe80::1"), v6("ff02::1"), 1, 0),
        15 => ipv6_ext(v6("2001:db8::66"), v6("fd00:3::10"), 64, 43),
        // Random bytes with an IP version nibble.
        _ => {
            let mut p = rng.bytes(1, 120);
            match rng.below(3) {
                0 => p[0] = 0x45,
                1 => p[0] = 0x60,
                _ => {}
            }
            p
        }
    }
}

const TUN_KINDS: usize = 17;

#[derive(Clone, Copy)]
struct TunEnds {
    inside: [u8; 4],
    routed: [u8; 4],
    gateway: [u8; 4],
    nowhere: [u8; 4],
    spoofed: [u8; 4],
    too_big_dst: [u8; 4],
    /// The UDP payload size of the too-big packet.
    big: usize,
}

/// A packet socket on `ifname`, made inside `netns`: what it sends goes onto the interface as
/// it is (a TUN hands it to the daemon).
fn packet_socket(netns: &str, ifname: &str, receive: bool) -> PacketSocket {
    let name = ifname.to_string();
    let open = if receive {
        PacketSocket::bind
    } else {
        PacketSocket::sender
    };
    causeway_sys::netns::run_in(netns, move || open(&name))
        .unwrap()
        .unwrap_or_else(|e| panic!("packet socket on {ifname} in {netns}: {e}"))
}

/// Sends `make(i)` packets with `send` at `pps` until `secs` have passed; the number sent
/// (sends the kernel refused at once are not counted: they never reached anything).
fn paced(secs: u32, pps: u64, mut send: impl FnMut(u64) -> bool) -> u64 {
    let start = Instant::now();
    let end = start + Duration::from_secs(u64::from(secs));
    let mut sent = 0u64;
    let mut i = 0u64;
    while Instant::now() < end {
        for _ in 0..50 {
            if send(i) {
                sent += 1;
            }
            i += 1;
        }
        let due = start + Duration::from_secs_f64(i as f64 / pps as f64);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    sent
}

/// A namespace's kernel drop counters on the way to the daemon: the interface's transmit
/// drops (TUN queue full) and the UDP receive errors (socket buffer full).
fn tx_dropped(netns: &str, dev: &str) -> u64 {
    let o = run(Command::new("ip").args(["-n", netns, "-j", "-s", "link", "show", "dev", dev]));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    v[0]["stats64"]["tx"]["dropped"].as_u64().unwrap_or(0)
}

/// Datagrams the namespace's kernel lost on their way to a UDP socket: UDP receive errors
/// (socket buffer full) and IP reassembly failures (an oversized datagram's fragments).
fn udp_in_errors(netns: &str) -> u64 {
    let o = run(Command::new("ip").args(["netns", "exec", netns, "cat", "/proc/net/snmp"]));
    let t = text(&o);
    let field = |proto: &str, name: &str| -> u64 {
        let mut lines = t.lines().filter(|l| l.starts_with(proto));
        let (names, values) = (lines.next().unwrap(), lines.next().unwrap());
        names
            .split_whitespace()
            .zip(values.split_whitespace())
            .find(|(n, _)| *n == name)
            .and_then(|(_, v)| v.parse().ok())
            .unwrap()
    };
    field("Udp:", "InErrors") + field("Ip:", "ReasmFails")
}

/// Every counted drop except the shaper's (which legitimate traffic may cause).
fn hostile_drops(d: &causeway_api::DirStats) -> u64 {
    d.drops
        .iter()
        .filter(|(k, _)| !k.starts_with("shaped_"))
        .map(|(_, v)| v)
        .sum()
}

struct Snapshot {
    vnet_side: u64,
    circuit_side: u64,
    underlay_esp: u64,
    ike: causeway_api::IkeStats,
    vnet_kernel: u64,
    circuit_kernel: u64,
    udp_errors: u64,
}

fn snapshot(lab: &IkeLab) -> Snapshot {
    let s = lab.a().stats();
    let gw = |name: &str| s.gateways.iter().find(|g| g.name == name).unwrap();
    Snapshot {
        vnet_side: hostile_drops(&s.vnet.egress)
            + s.gateways
                .iter()
                .map(|g| hostile_drops(&g.egress))
                .sum::<u64>(),
        circuit_side: hostile_drops(&gw("er-gw").ingress),
        underlay_esp: hostile_drops(&gw("vpn-gw").ingress),
        ike: s.ike.clone().expect("ike stats"),
        vnet_kernel: tx_dropped(&lab.vnet, "cw-vnet0"),
        circuit_kernel: tx_dropped(&lab.gwa, "cw-er0"),
        udp_errors: udp_in_errors(&lab.gwa),
    }
}

/// An IKE_SA_INIT request as the peer (192.0.2.2) would send it: made by an initiating IKE
/// endpoint of the `causeway-ike` crate, so its SA, KE and nonce are real.
fn ike_sa_init() -> Vec<u8> {
    use causeway_ike::crypto::{EspProposal, IkeProposal, SecretBytes, SystemRandom};
    use causeway_ike::engine::{Endpoint, PeerConfig};
    let ts = |p: &str| {
        let (addr, len) = p.split_once('/').unwrap();
        causeway_ike::wire::TrafficSelector::from_prefix(
            addr.parse().unwrap(),
            len.parse().unwrap(),
        )
        .unwrap()
    };
    let config = PeerConfig {
        name: "flood".into(),
        local: "192.0.2.2".parse().unwrap(),
        remote: "192.0.2.1".parse().unwrap(),
        psk: SecretBytes::from_slice(PSK.as_bytes()),
        local_id: None,
        remote_id: None,
        ike_proposals: vec![IkeProposal::parse("aes256gcm16-prfsha256-ecp256").unwrap()],
        esp_proposals: vec![EspProposal::parse("aes256gcm16").unwrap()],
        local_ts: vec![ts("10.3.0.0/16")],
        remote_ts: vec![ts("10.1.0.0/16")],
        initiate: true,
        ike_lifetime: Duration::from_secs(28_800),
        child_lifetime: Duration::from_secs(27_000),
        child_lifetime_bytes: 0,
        dpd_timeout: Duration::from_secs(45),
    };
    let mut ep = Endpoint::new(
        vec![config],
        Box::new(SystemRandom),
        std::time::Instant::now(),
    );
    ep.poll_transmit().expect("an IKE_SA_INIT request").data
}

/// ESP datagrams B sends to A, captured on B's side of the underlay while pings cross.
fn capture_esp(lab: &IkeLab, spi: u32) -> Vec<Vec<u8>> {
    let sock = packet_socket(&lab.gwb, "ulb", true);
    let pinger = {
        let (vnet, target) = (lab.vnet.clone(), lab.target);
        std::thread::spawn(move || {
            run(Command::new("ip").args([
                "netns", "exec", &vnet, "ping", "-n", "-c", "20", "-i", "0.05", target,
            ]))
        })
    };
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut buf = vec![0u8; 2048];
    while out.len() < 16 && Instant::now() < deadline {
        let Ok(Some(n)) = sock.recv(&mut buf, Duration::from_millis(200)) else {
            continue;
        };
        if n < 28 {
            continue;
        }
        let p = &buf[..n];
        let ihl = usize::from(p[0] & 0x0f) * 4;
        if p[0] >> 4 != 4 || p[9] != 17 || p.len() < ihl + 16 || p[12..16] != [192, 0, 2, 2] {
            continue;
        }
        let u = &p[ihl..];
        if u16::from_be_bytes([u[2], u[3]]) == 4500 && u[8..12] == spi.to_be_bytes() {
            out.push(u[8..].to_vec());
        }
    }
    let _ = pinger.join();
    assert!(!out.is_empty(), "captured no ESP from B");
    out
}

/// The underlay attacker: sockets in B's namespace, on B's address (the configured peer) and on
/// a stranger's.
fn underlay_attack(lab: &IkeLab, in_spi: u32, replay: Vec<Vec<u8>>, pps: u64) -> u64 {
    run(Command::new("ip").args(["-n", &lab.gwb, "addr", "add", "192.0.2.77/24", "dev", "ulb"]));
    let (peer, stranger) = causeway_sys::netns::run_in(&lab.gwb, || {
        (
            UdpSocket::bind("192.0.2.2:0").unwrap(),
            UdpSocket::bind("192.0.2.77:0").unwrap(),
        )
    })
    .unwrap();
    let a500: SocketAddr = "192.0.2.1:500".parse().unwrap();
    let a4500: SocketAddr = "192.0.2.1:4500".parse().unwrap();
    let init = ike_sa_init();
    let mut rng = Rng(0x1bad_5eed);
    paced(HOSTILE_SECS, pps, |i| {
        let (sock, to, data) = match i % 10 {
            // Random bytes to 4500 (never a lone 0xff, which is a NAT-T keepalive).
            0 => (&peer, a4500, rng.bytes(2, 200)),
            // Oversized: 20 000 bytes to 4500 (beyond the 16 KiB ESP receive buffer) and
            // 30 000 to 500 (IP fragments on the wire, reassembled by A's kernel).
            8 => {
                let mut d = rng.bytes(20_000, 20_000);
                d[0] |= 0x80;
                (&peer, a4500, d)
            }
            9 => (&peer, a500, rng.bytes(30_000, 30_000)),
            // Forged ESP under the tunnel's SPI.
            1 => {
                let mut d = rng.bytes(80, 160);
                d[..4].copy_from_slice(&in_spi.to_be_bytes());
                (&peer, a4500, d)
            }
            // Replayed ESP.
            2 => (
                &peer,
                a4500,
                replay[(i / 8) as usize % replay.len()].clone(),
            ),
            // IKE_SA_INIT flood from the peer's address: fresh initiator SPIs.
            3 => {
                let mut d = init.clone();
                d[..8].copy_from_slice(&rng.next().max(1).to_be_bytes());
                (&peer, a500, d)
            }
            // IKE_SA_INIT from a stranger.
            4 => {
                let mut d = init.clone();
                d[..8].copy_from_slice(&rng.next().max(1).to_be_bytes());
                (&stranger, a500, d)
            }
            // Random bytes to 500.
            5 => (&peer, a500, rng.bytes(1, 300)),
            // An IKE_AUTH of an SA that does not exist, on 4500 (non-ESP marker first).
            6 => {
                let mut d = vec![0u8; 4 + 28 + 64];
                rng.fill(&mut d[4..20]);
                d[20] = 46; // SK
                d[21] = 0x20;
                d[22] = 35; // IKE_AUTH
                d[23] = 0x08;
                d[24..28].copy_from_slice(&1u32.to_be_bytes());
                d[28..32].copy_from_slice(&92u32.to_be_bytes());
                rng.fill(&mut d[32..]);
                // A well-formed SK payload header (64 bytes): only the SPIs are wrong.
                d[32] = 35; // IDi first inside
                d[33] = 0;
                d[34..36].copy_from_slice(&64u16.to_be_bytes());
                (&peer, a4500, d)
            }
            // IKE_SA_INIT on 4500, half-open: never followed by IKE_AUTH.
            _ => {
                let mut d = vec![0u8; 4];
                d.extend_from_slice(&init);
                d[4..12].copy_from_slice(&rng.next().max(1).to_be_bytes());
                (&peer, a4500, d)
            }
        };
        sock.send_to(&data, to).is_ok()
    })
}

#[test]
fn hostile_traffic_from_three_sides_is_dropped_and_counted_while_legitimate_traffic_keeps_its_rate()
{
    let circuit = "\n[[gateway]]\nname = \"er-gw\"\ntype = \"ExpressRoute\"\nsku = \"Standard\"\n\
        [[connection]]\nname = \"circuit-1\"\ngateway = \"er-gw\"\ntype = \"ExpressRoute\"\n\
        prefixes = [\"10.4.0.0/16\"]\n[connection.interface]\nname = \"cw-er0\"\n\
        addresses = [\"10.4.0.10/16\"]\nmtu = 9000\n";
    let lab = IkeLab::new(IkeSpec {
        exclusive: true,
        far: Far::Causeway,
        a_extra: circuit,
        ..IkeSpec::default()
    });
    lab.wait_connected(15);
    let pps = hostile_pps();
    let legit = ["-b", "400M"];
    let rate = |secs: u32| {
        let v = iperf3_with(&lab.vnet, &lab.gwa, "10.4.0.10", secs, &legit);
        v["end"]["sum_received"]["bits_per_second"]
            .as_f64()
            .unwrap_or_else(|| panic!("no iperf3 rate: {v}"))
            / 1e6
    };
    // Warm-up: unlimited transfers both ways, over the SKU rate, so that the shaper holds
    // packets and allocates its hold rings (sized from the SKU, once) before memory is taken.
    for reverse in [false, true] {
        let extra: &[&str] = if reverse { &["-R"] } else { &[] };
        iperf3_with(&lab.vnet, &lab.gwa, "10.4.0.10", 2, extra);
    }
    let before = rate(5);
    let pid = lab.a.as_ref().unwrap().child.as_ref().unwrap().id();
    let in_spi = lab.tunnel().esp.in_spi;
    let replay = capture_esp(&lab, in_spi);
    let rss0 = rss_kib(pid);

    let s0 = snapshot(&lab);

    let vnet_ends = TunEnds {
        inside: [10, 1, 0, 10],
        routed: [10, 4, 0, 10],
        gateway: [10, 1, 255, 4],
        nowhere: [10, 99, 0, 1],
        spoofed: [198, 51, 100, 7],
        too_big_dst: [10, 3, 0, 10],
        big: 1430,
    };
    let onprem_ends = TunEnds {
        inside: [10, 4, 0, 20],
        routed: [10, 1, 0, 10],
        gateway: [10, 1, 255, 4],
        nowhere: [10, 99, 0, 1],
        spoofed: [10, 9, 0, 1],
        // 8 000 bytes through the circuit (MTU 9000) toward the VNet (MTU 1500).
        too_big_dst: [10, 1, 0, 10],
        big: 8000,
    };
    let vsock = packet_socket(&lab.vnet, "cw-vnet0", false);
    let csock = packet_socket(&lab.gwa, "cw-er0", false);
    let (during, sent, pings, rss_mid) = std::thread::scope(|s| {
        // A's resident size halfway through the attack (printed).
        let m = s.spawn(|| {
            std::thread::sleep(Duration::from_millis(u64::from(HOSTILE_SECS) * 500));
            rss_kib(pid)
        });
        let v = s.spawn(|| {
            let mut rng = Rng(0x5eed_0001);
            paced(HOSTILE_SECS, pps, |i| {
                let p = tun_packet(i as usize, &mut rng, &vnet_ends);
                vsock.send(&p).is_ok()
            })
        });
        let c = s.spawn(|| {
            let mut rng = Rng(0x5eed_0002);
            paced(HOSTILE_SECS, pps, |i| {
                let p = tun_packet(i as usize, &mut rng, &onprem_ends);
                csock.send(&p).is_ok()
            })
        });
        let u = s.spawn(|| underlay_attack(&lab, in_spi, replay.clone(), pps));
        let p = s.spawn(|| {
            text(&run(Command::new("ip").args([
                "netns", "exec", &lab.vnet, "ping", "-n", "-q", "-c", "100", "-i", "0.08", "-W",
                "1", lab.target,
            ])))
        });
        let during = rate(HOSTILE_SECS - 1);
        let sent = (v.join().unwrap(), c.join().unwrap(), u.join().unwrap());
        (during, sent, p.join().unwrap(), m.join().unwrap())
    });
    // Let the queues drain and the IKE thread publish its counters.
    std::thread::sleep(Duration::from_millis(1500));
    let s1 = snapshot(&lab);
    let rss1 = rss_kib(pid);

    eprintln!(
        "hostile: {pps} pps per side for {HOSTILE_SECS} s; sent VNet {} circuit {} underlay {}; \
         iperf3 {before:.0} -> {during:.0} Mbit/s; RSS {rss0} -> {rss_mid} (halfway) -> {rss1} KiB; \
         IKE {:?}",
        sent.0, sent.1, sent.2, s1.ike
    );

    // Alive, answering, and still forwarding both ways.
    assert!(
        lab.a.as_ref().unwrap().child.as_ref().unwrap().id() == pid
            && Path::new(&format!("/proc/{pid}")).exists(),
        "A died:\n{}",
        lab.logs()
    );
    assert!(
        during >= 0.9 * before,
        "legitimate iperf3 fell from {before:.0} to {during:.0} Mbit/s under attack"
    );
    let received: u32 = pings
        .split(" received")
        .next()
        .and_then(|s| s.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(received >= 95, "tunnel pings under attack: {pings}");
    assert!(lab.ping(3).contains("3 received"), "{}", lab.logs());

    // Every hostile packet is in a counter. Slack above: the kernels' own chatter (IPv6
    // solicitations on the TUNs) is counted too.
    let account = |what: &str, sent: u64, counted: u64| {
        eprintln!("{what}: sent {sent}, counted {counted}");
        assert!(
            counted >= sent && counted <= sent + 50,
            "{what}: {sent} hostile packets sent, {counted} counted"
        );
    };
    account(
        "VNet side (drops + TUN queue drops)",
        sent.0,
        (s1.vnet_side - s0.vnet_side) + (s1.vnet_kernel - s0.vnet_kernel),
    );
    account(
        "on-premises side (drops + TUN queue drops)",
        sent.1,
        (s1.circuit_side - s0.circuit_side) + (s1.circuit_kernel - s0.circuit_kernel),
    );
    let q = |i: &causeway_api::IkeStats| i.drops.get("queue_full").copied().unwrap_or(0);
    account(
        "underlay (ESP drops + IKE datagrams + UDP receive errors)",
        sent.2,
        (s1.underlay_esp - s0.underlay_esp)
            + (s1.ike.datagrams - s0.ike.datagrams)
            + (q(&s1.ike) - q(&s0.ike))
            + (s1.udp_errors - s0.udp_errors),
    );
    let d = |r: &str| s1.ike.drops[r] - s0.ike.drops[r];
    assert!(s1.ike.cookies_sent > s0.ike.cookies_sent, "{:?}", s1.ike);
    assert!(d("unknown_peer") > 0 && d("malformed") > 0 && d("unknown_sa") > 0);
    assert!(
        s1.ike.half_open <= causeway_ike::engine::DEFAULT_HALF_OPEN_LIMIT as u64,
        "half-open SAs beyond the cookie threshold: {:?}",
        s1.ike
    );
    let esp = lab.a().stats();
    let er = esp.gateways.iter().find(|g| g.name == "er-gw").unwrap();
    assert!(
        er.ingress.drops["too_big"] > 0 && er.ingress.drops["dst_outside_vnet"] > 0,
        "{:?}",
        er.ingress.drops
    );
    let vpn = esp.gateways.iter().find(|g| g.name == "vpn-gw").unwrap();
    for r in ["esp_auth_failed", "esp_no_sa", "esp_malformed"] {
        assert!(vpn.ingress.drops[r] > 0, "no {r}: {:?}", vpn.ingress.drops);
    }
    assert!(
        vpn.ingress.drops["esp_replayed"] + vpn.ingress.drops["esp_too_old"] > 0,
        "replays not seen: {:?}",
        vpn.ingress.drops
    );
    // Bounded: the half-open IKE SAs, the IKE queue and the ICMP error path are all the attack
    // can fill; they fit in a few MiB.
    assert!(
        rss1 < rss0 + 8 * 1024,
        "memory grew under attack: {rss0} -> {rss_mid} (halfway) -> {rss1} KiB"
    );
}
