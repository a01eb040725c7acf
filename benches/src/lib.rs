//! Fixtures shared by Causeway's benchmarks: an ExpressRoute gateway shaped like the lab's
//! (`configs/lab-er.toml`: VNet `10.1.0.0/16`, one circuit to `10.2.0.0/16`) and IPv4 packet
//! templates as a TUN opened with `IFF_VNET_HDR` hands them over.
//!
//! `Egress::process` and `Ingress::process` decrement the TTL in place (and patch the IPv4
//! header checksum). A benchmark that feeds the same buffer again and again must therefore put the
//! TTL and checksum back between iterations, or the packet expires after 63 rounds. [`Packet`]
//! keeps the template's bytes 8..12 (TTL, protocol, header checksum) and [`Packet::reset`]
//! writes those four bytes back: the packet is *not* copied per iteration, so the figures are the
//! pipeline's cost alone, without a memcpy of the payload.

use std::net::Ipv4Addr;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use causeway_engine::flow::{FlowLimits, FlowTable, FlowTimeouts};
use causeway_engine::pipeline::{
    build, Connection, Egress, GatewaySpec, Ingress, PathCounters, PipelineSpec, SharedFlows,
    Verdict, Vnet, REPLY_BUF_LEN,
};
use causeway_engine::prefix::Prefix;
use causeway_engine::shaper::BurstPolicy;
use causeway_engine::sku::Sku;
use causeway_wire::ip::{self, PROTO_ICMP, PROTO_TCP, PROTO_UDP};
use causeway_wire::virtio::{self, VirtioHdr};

/// A shaper rate no benchmark can reach (10^15 bit/s, no packets/s limit): the SKU shaper admits
/// every packet at once, so the figures measure the pipeline, not the SKU.
pub const UNSHAPED_BPS: u64 = 1_000_000_000_000_000;

/// Nanoseconds the benchmark clock advances per packet. At [`UNSHAPED_BPS`] that refills 10^8
/// bits, more than a 64 KB super-packet costs (5.2 × 10^5 bits), so the bucket never runs dry.
pub const NOW_STEP_NS: u64 = 100;

/// Payload bytes per segment of the TCP super-packet (a 1500-byte MTU with 32 bytes of TCP
/// header: timestamps).
pub const TCP_MSS: u16 = 1448;
/// Segments in the TCP super-packet: 45 × 1448 + 52 = 65 212 bytes, the largest that fits 64 KB.
pub const TCP_SEGMENTS: usize = 45;

/// Both halves of an ExpressRoute gateway, with a reply buffer.
pub struct Lab {
    pub eg: Egress,
    pub ing: Ingress,
    pub reply: Vec<u8>,
    pub gateway: Arc<PathCounters>,
    /// The gateway's flow table, shared by both halves (None: not tracked).
    pub flows: Option<SharedFlows>,
}

fn prefix(s: &str) -> Prefix {
    s.parse().expect("valid prefix")
}

/// The lab's gateway: VNet `10.1.0.0/16` (gateway address 10.1.255.4), circuit `circuit-1` to
/// `10.2.0.0/16` with a 1500-byte MTU, shaped at `bits_per_sec` / `packets_per_sec` with the
/// daemon's default burst policy.
pub fn lab_with(bits_per_sec: u64, packets_per_sec: Option<u64>) -> Lab {
    lab_spec(bits_per_sec, packets_per_sec, None)
}

/// A flow table as the daemon makes for an ExpressRoute Standard gateway (200 000 flows,
/// 7 000 new flows/s, default timeouts).
pub fn standard_flows() -> SharedFlows {
    Arc::new(std::sync::Mutex::new(FlowTable::for_sku(
        &Sku::ErStandard.limits(),
        FlowTimeouts::default(),
        0,
    )))
}

/// The lab's gateway, unshaped, with a flow table of ExpressRoute Standard's limits
/// ([`standard_flows`]) shared by both halves, as the daemon runs it.
pub fn lab_flows() -> Lab {
    lab_spec(UNSHAPED_BPS, None, Some(standard_flows()))
}

/// A flow table of `limits` (default timeouts).
pub fn flows_of(limits: FlowLimits) -> SharedFlows {
    Arc::new(std::sync::Mutex::new(FlowTable::new(
        limits,
        FlowTimeouts::default(),
        causeway_engine::flow::FlowHasher::random(),
        0,
    )))
}

/// The lab's gateway with `flows` as its flow table.
pub fn lab_spec(
    bits_per_sec: u64,
    packets_per_sec: Option<u64>,
    flows: Option<SharedFlows>,
) -> Lab {
    let vnet = Arc::new(Vnet {
        address_space: vec![prefix("10.1.0.0/16"), prefix("fd00:1::/48")],
        gateway_v4: [10, 1, 255, 4],
        gateway_v6: Some(
            "fd00:1:0:ffff::4"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets(),
        ),
        mtu: 1500,
    });
    let circuit = Connection {
        name: "circuit-1".into(),
        gateway: 0,
        tunnel: None,
        prefixes: vec![prefix("10.2.0.0/16"), prefix("fd00:2::/48")],
        routing_weight: 0,
        mtu: 1500,
        up: Arc::new(AtomicBool::new(true)),
        counters: Arc::new(PathCounters::default()),
    };
    let gateway = Arc::new(PathCounters::default());
    let (eg, ing) = build(
        &PipelineSpec {
            vnet,
            gateways: vec![GatewaySpec {
                name: "er-gw".into(),
                bits_per_sec,
                packets_per_sec,
                counters: gateway.clone(),
                flows: flows.clone(),
            }],
            connections: vec![circuit],
            burst: BurstPolicy::default(),
            vnet_counters: Arc::new(PathCounters::default()),
        },
        0,
    );
    Lab {
        eg,
        ing,
        reply: vec![0; REPLY_BUF_LEN],
        gateway,
        flows,
    }
}

/// The lab's gateway, unshaped for benchmarking ([`UNSHAPED_BPS`], no packets/s limit).
pub fn lab() -> Lab {
    lab_with(UNSHAPED_BPS, None)
}

/// Which way a packet goes through the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    /// VNet host 10.1.0.10 -> on-premises host 10.2.0.10.
    Egress,
    /// On-premises host 10.2.0.10 -> VNet host 10.1.0.10.
    Ingress,
}

impl Dir {
    fn addrs(self) -> ([u8; 4], [u8; 4]) {
        let vnet = Ipv4Addr::new(10, 1, 0, 10).octets();
        let onprem = Ipv4Addr::new(10, 2, 0, 10).octets();
        match self {
            Dir::Egress => (vnet, onprem),
            Dir::Ingress => (onprem, vnet),
        }
    }
}

/// One packet as read from a TUN (virtio header apart), and the template bytes that
/// [`reset`](Self::reset) puts back.
pub struct Packet {
    pub virtio: VirtioHdr,
    pub bytes: Vec<u8>,
    /// Template bytes 8..12: TTL, protocol, IPv4 header checksum.
    saved: [u8; 4],
    /// Wire packets it stands for (segments of a super-packet, else 1).
    pub wire_packets: u64,
}

impl Packet {
    fn new(virtio: VirtioHdr, bytes: Vec<u8>, wire_packets: u64) -> Packet {
        let mut saved = [0u8; 4];
        saved.copy_from_slice(&bytes[8..12]);
        Packet {
            virtio,
            bytes,
            saved,
            wire_packets,
        }
    }

    /// Puts the TTL and header checksum the pipeline changed back to the template's (4 bytes).
    #[inline(always)]
    pub fn reset(&mut self) {
        self.bytes[8..12].copy_from_slice(&self.saved);
    }

    /// IP bytes of the packet (the super-packet's total length for a super-packet).
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

fn v4_header(p: &mut [u8], dir: Dir, proto: u8, ttl: u8) {
    let total = p.len();
    let (src, dst) = dir.addrs();
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    p[4..6].copy_from_slice(&0x1234u16.to_be_bytes());
    p[6] = 0x40; // DF, as Linux sets it on TCP and on UDP with PMTU discovery
    p[8] = ttl;
    p[9] = proto;
    p[12..16].copy_from_slice(&src);
    p[16..20].copy_from_slice(&dst);
    ip::set_v4_checksum(&mut p[..20]);
}

/// An IPv4 UDP packet of `total_len` bytes (IP header included, at least 28), TTL 64, DF set,
/// UDP checksum 0 (none), no offload in its virtio header.
pub fn udp_v4(dir: Dir, total_len: usize) -> Packet {
    udp_v4_ttl(dir, total_len, 64)
}

/// As [`udp_v4`] with the VNet host's port `port` (instead of 40 000): one flow per port.
pub fn udp_v4_port(dir: Dir, total_len: usize, port: u16) -> Packet {
    let mut p = udp_v4(dir, total_len);
    let at = match dir {
        Dir::Egress => 20,
        Dir::Ingress => 22,
    };
    p.bytes[at..at + 2].copy_from_slice(&port.to_be_bytes());
    p
}

/// As [`udp_v4`] with a chosen TTL.
pub fn udp_v4_ttl(dir: Dir, total_len: usize, ttl: u8) -> Packet {
    assert!((28..=65_535).contains(&total_len));
    let mut p = vec![0u8; total_len];
    v4_header(&mut p, dir, PROTO_UDP, ttl);
    p[20..22].copy_from_slice(&40_000u16.to_be_bytes());
    p[22..24].copy_from_slice(&5_201u16.to_be_bytes());
    p[24..26].copy_from_slice(&((total_len - 20) as u16).to_be_bytes());
    for (i, b) in p[28..].iter_mut().enumerate() {
        *b = i as u8;
    }
    Packet::new(VirtioHdr::default(), p, 1)
}

/// A non-first fragment (offset 1480, DF clear, no UDP header) of a UDP datagram of the VNet
/// host's flow, `total_len` bytes: never starts nor is refused a flow.
pub fn udp_v4_later_fragment(dir: Dir, total_len: usize) -> Packet {
    let mut p = udp_v4(dir, total_len).bytes;
    p[6..8].copy_from_slice(&(1480u16 / 8).to_be_bytes());
    ip::set_v4_checksum(&mut p[..20]);
    Packet::new(VirtioHdr::default(), p, 1)
}

/// An ICMP port unreachable coming in `dir` about a UDP datagram that went the other way from
/// port `port` (as [`udp_v4_port`]): counted on that flow when held, else an ordinary ICMP
/// packet (a flow of its own addresses, within the limits).
pub fn icmp_error_v4(dir: Dir, port: u16) -> Packet {
    let back = match dir {
        Dir::Egress => Dir::Ingress,
        Dir::Ingress => Dir::Egress,
    };
    let quoted = udp_v4_port(back, 64, port).bytes;
    let mut p = vec![0u8; 20 + 8 + 28];
    v4_header(&mut p, dir, PROTO_ICMP, 64);
    p[20] = 3;
    p[21] = 3;
    p[28..].copy_from_slice(&quoted[..28]);
    Packet::new(VirtioHdr::default(), p, 1)
}

/// A 64 KB TCP super-packet as a TUN with TSO hands it over (as `tcp_super` in the engine's
/// pipeline tests): 45 segments of 1448 bytes behind a 20-byte IPv4 and a 32-byte TCP header,
/// virtio header `GSO_TCPV4`, `gso_size` 1448, partial checksum (`NEEDS_CSUM`).
pub fn tcp_super_v4(dir: Dir) -> Packet {
    let hdr = 20 + 32;
    let total = hdr + TCP_SEGMENTS * usize::from(TCP_MSS);
    let mut p = vec![0u8; total];
    v4_header(&mut p, dir, PROTO_TCP, 64);
    p[20..22].copy_from_slice(&40_000u16.to_be_bytes());
    p[22..24].copy_from_slice(&5_201u16.to_be_bytes());
    p[32] = 8 << 4; // data offset: 32 bytes
    p[33] = 0x18; // PSH, ACK
    for (i, b) in p[hdr..].iter_mut().enumerate() {
        *b = i as u8;
    }
    let v = VirtioHdr {
        flags: virtio::F_NEEDS_CSUM,
        gso_type: virtio::GSO_TCPV4,
        hdr_len: hdr as u16,
        gso_size: TCP_MSS,
        csum_start: 20,
        csum_offset: 16,
    };
    Packet::new(v, p, TCP_SEGMENTS as u64)
}

/// The packets the benchmarks use, by name: `udp64`, `udp512`, `udp1400` (IP total length) and
/// `tcp_super64k`.
pub fn packets(dir: Dir) -> Vec<(&'static str, Packet)> {
    vec![
        ("udp64", udp_v4(dir, 64)),
        ("udp512", udp_v4(dir, 512)),
        ("udp1400", udp_v4(dir, 1400)),
        ("tcp_super64k", tcp_super_v4(dir)),
    ]
}

impl Lab {
    /// Runs one packet through the half of the gateway for `dir`, from circuit 0 for ingress.
    #[inline(always)]
    pub fn process(&mut self, dir: Dir, now_ns: u64, p: &mut Packet) -> Verdict {
        match dir {
            Dir::Egress => self
                .eg
                .process(now_ns, &p.virtio, &mut p.bytes, &mut self.reply),
            Dir::Ingress => self
                .ing
                .process(now_ns, 0, &p.virtio, &mut p.bytes, &mut self.reply),
        }
    }
}

/// True when `v` forwards the whole packet at once (`at <= now`), as every benchmark expects.
#[inline(always)]
pub fn forwarded_now(v: &Verdict, now_ns: u64, len: usize) -> bool {
    matches!(*v, Verdict::Forward { len: l, at, .. } if l == len && at <= now_ns)
}

/// ESP fixtures: security-association pairs keyed alike for every cipher, inner packets in
/// buffers with the room `OutboundSa::seal` needs, and the raw AEAD of `aws-lc-rs` keyed and
/// fed exactly as `causeway_esp` feeds it, so that the two can be compared.
///
/// Nothing here assumes a packet layout: where `seal` puts the ESP packet and how many bytes the
/// AEAD encrypts are taken from one reference seal ([`layout`]).
pub mod esp {
    use std::ops::Range;

    use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, Tag, UnboundKey};
    use causeway_esp::{
        Cipher, InboundSa, KeyMaterial, OutboundSa, HEADROOM, ICV_LEN, SALT_LEN, TAILROOM,
    };

    use super::{udp_v4, Dir};

    /// The SPI of every benchmark SA (any value above 255).
    pub const SPI: u32 = 0x1000_0001;

    /// Inner IP packet sizes (IPv4 total length) the ESP benchmarks use.
    pub const SIZES: [usize; 3] = [64, 512, 1400];

    /// The three AEAD ciphers in the order the benchmarks report them.
    pub const CIPHERS: [Cipher; 3] = [
        Cipher::Aes128Gcm16,
        Cipher::Aes256Gcm16,
        Cipher::ChaCha20Poly1305,
    ];

    /// Keying material (key || 4-byte salt) for `cipher`: bytes 1, 2, 3, ...
    pub fn key_bytes(cipher: Cipher) -> Vec<u8> {
        (1..=cipher.key_material_len() as u8).collect()
    }

    pub fn key(cipher: Cipher) -> KeyMaterial {
        KeyMaterial::new(cipher, &key_bytes(cipher)).expect("key length")
    }

    /// An outbound SA (no ESN, as the daemon's default) for `cipher`.
    pub fn outbound(cipher: Cipher) -> OutboundSa {
        OutboundSa::new(SPI, cipher, &key(cipher), false).expect("outbound SA")
    }

    /// The matching inbound SA, with the default replay window (1024 packets).
    pub fn inbound(cipher: Cipher) -> InboundSa {
        InboundSa::new(SPI, cipher, &key(cipher), false, 1024).expect("inbound SA")
    }

    /// A buffer of `HEADROOM + len + TAILROOM` bytes with an IPv4 UDP packet of `len` bytes at
    /// `HEADROOM`, ready for `OutboundSa::seal(buf, HEADROOM, len, 4)`.
    pub fn inner_buffer(len: usize) -> Vec<u8> {
        let inner = udp_v4(Dir::Egress, len).bytes;
        let mut buf = vec![0u8; HEADROOM + len + TAILROOM];
        buf[HEADROOM..HEADROOM + len].copy_from_slice(&inner);
        buf
    }

    /// What `OutboundSa::seal(buf, HEADROOM, len, 4)` does with an [`inner_buffer`]`(len)`.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Layout {
        /// The ESP packet in the buffer, from the SPI to the end of the ICV.
        pub esp: Range<usize>,
        /// Bytes in front of the inner packet: ESP header and IV.
        pub header: usize,
        /// Bytes the AEAD encrypts: the inner packet, its padding and the 2-byte trailer.
        pub encrypted: usize,
    }

    /// The [`Layout`] of an inner packet of `len` bytes for `cipher` (an AEAD), from one seal by
    /// a throwaway SA.
    pub fn layout(cipher: Cipher, len: usize) -> Layout {
        let mut buf = inner_buffer(len);
        let esp = outbound(cipher)
            .seal(&mut buf, HEADROOM, len, 4)
            .expect("seal");
        assert_eq!(buf[esp.start..esp.start + 4], SPI.to_be_bytes());
        let header = HEADROOM - esp.start;
        let encrypted = esp.len() - header - ICV_LEN;
        assert!(
            encrypted >= len + 2,
            "{cipher}: {encrypted} bytes encrypted for {len}"
        );
        Layout {
            esp,
            header,
            encrypted,
        }
    }

    /// `count` ESP packets (sequence numbers 1..=count) sealed by a fresh [`outbound`] SA from
    /// inner packets of `len` bytes: what an [`inbound`] SA opens.
    pub fn sealed_batch(cipher: Cipher, len: usize, count: usize) -> Vec<Vec<u8>> {
        let mut tx = outbound(cipher);
        let want = layout(cipher, len).esp;
        (0..count)
            .map(|_| {
                let mut buf = inner_buffer(len);
                let r = tx.seal(&mut buf, HEADROOM, len, 4).expect("seal");
                assert_eq!(r, want);
                buf[r].to_vec()
            })
            .collect()
    }

    /// The AEAD of `aws-lc-rs` alone, keyed from the same material as the SAs: nonce
    /// `salt || 64-bit sequence number` and AAD `SPI || 32-bit sequence number`, built per
    /// packet exactly as `causeway_esp` builds them (RFC 4106, RFC 7634).
    pub struct RawAead {
        key: LessSafeKey,
        salt: [u8; SALT_LEN],
    }

    impl RawAead {
        /// For one of the AEAD ciphers of [`CIPHERS`] (panics for another).
        pub fn new(cipher: Cipher) -> RawAead {
            let material = key_bytes(cipher);
            let (k, s) = material.split_at(cipher.key_len());
            let algorithm = match cipher.name() {
                "aes128gcm16" => &aws_lc_rs::aead::AES_128_GCM,
                "aes256gcm16" => &aws_lc_rs::aead::AES_256_GCM,
                "chacha20poly1305" => &aws_lc_rs::aead::CHACHA20_POLY1305,
                other => panic!("no raw AEAD to compare {other} with"),
            };
            RawAead {
                key: LessSafeKey::new(UnboundKey::new(algorithm, k).expect("AEAD key")),
                salt: s.try_into().expect("4-byte salt"),
            }
        }

        #[inline(always)]
        fn nonce_aad(&self, seq: u64) -> (Nonce, [u8; 8]) {
            let mut n = [0u8; 12];
            n[..SALT_LEN].copy_from_slice(&self.salt);
            n[SALT_LEN..].copy_from_slice(&seq.to_be_bytes());
            let mut aad = [0u8; 8];
            aad[..4].copy_from_slice(&SPI.to_be_bytes());
            aad[4..].copy_from_slice(&(seq as u32).to_be_bytes());
            (Nonce::assume_unique_for_key(n), aad)
        }

        /// `seal_in_place_separate_tag` over `in_out` for packet number `seq`.
        #[inline(always)]
        pub fn seal(&self, seq: u64, in_out: &mut [u8]) -> Tag {
            let (nonce, aad) = self.nonce_aad(seq);
            self.key
                .seal_in_place_separate_tag(nonce, Aad::from(aad), in_out)
                .expect("AEAD seal")
        }

        /// `open_in_place` over `ciphertext || tag` for packet number `seq`; the plaintext
        /// length, or None when the tag does not verify.
        #[inline(always)]
        pub fn open(&self, seq: u64, ct_and_tag: &mut [u8]) -> Option<usize> {
            let (nonce, aad) = self.nonce_aad(seq);
            self.key
                .open_in_place(nonce, Aad::from(aad), ct_and_tag)
                .ok()
                .map(|p| p.len())
        }

        /// `count` ciphertexts of `encrypted` bytes with their tags appended (packet numbers
        /// 1..=count), made from inner packets of `len` bytes: what [`open`](Self::open) opens.
        pub fn sealed_batch(&self, len: usize, encrypted: usize, count: usize) -> Vec<Vec<u8>> {
            (1..=count as u64)
                .map(|seq| {
                    let mut buf = inner_buffer(len)[HEADROOM..HEADROOM + encrypted].to_vec();
                    let tag = self.seal(seq, &mut buf);
                    buf.extend_from_slice(tag.as_ref());
                    buf
                })
                .collect()
        }
    }
}
