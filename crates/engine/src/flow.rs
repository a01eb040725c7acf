//! Flow tracking: a bounded, preallocated table of the flows a gateway carries, keyed by the
//! direction-independent 5-tuple, with idle timeouts per protocol and the SKU's flow limits
//! (concurrent flows, new flows per second). Sans-IO like the rest of the engine: the caller
//! passes `now`.
//!
//! # Keys
//!
//! [`classify`] reads the key of a packet already checked by [`IpSummary::parse`]:
//!
//! - TCP and UDP: addresses, protocol and ports.
//! - ICMP echo, timestamp, information and address-mask messages (ICMPv4 types 0/8, 13/14,
//!   15/16, 17/18) and ICMPv6 echo (128/129): addresses, protocol and the identifier (in both
//!   port fields), so that a request and its reply are one flow and two pings with different
//!   identifiers are two.
//! - ICMP and ICMPv6 *errors* (ICMPv4 3, 4, 5, 11, 12; ICMPv6 1 to 4) belong to the flow of
//!   the packet they quote ([`Classified::IcmpError`]): a "fragmentation needed" or "time
//!   exceeded" about a TCP segment is counted on that TCP flow, is steered to the same worker
//!   ([`worker_of`]), and never creates a flow of its own while that flow is held (an error
//!   about a held flow is never refused because the table is full: path MTU discovery keeps
//!   working under a flood). An error whose quoted flow is not held (expired, or a forged
//!   quote) is an ordinary ICMP packet keyed by its own addresses ([`unported_key`]): it may
//!   start a flow and is within the limits like any other, so made-up quotes cannot bypass
//!   them. The quoted packet must be of the same IP version and come from the error's
//!   destination; otherwise (or when the quote is too short for an IP header) the error is an
//!   ordinary ICMP packet too.
//! - Non-first fragments carry no upper-layer header ([`Classified::LaterFragment`]): keyed
//!   by addresses and protocol only (ports 0), they never create a flow and are never refused
//!   (the first fragment, which carries the ports, was admitted or refused). They are counted
//!   on the flow of that key when one is held (a protocol without ports, such as GRE), and
//!   otherwise forwarded untracked: the later fragments of a fragmented UDP or TCP flow are
//!   not in its counters, and they may go to another worker than its first ones (as with RSS,
//!   which hashes fragments on the addresses alone); the receiver reassembles whatever the
//!   order.
//! - Every other protocol (ESP, GRE, ICMPv6 neighbour discovery, ...), and TCP/UDP whose ports
//!   are not within the packet: addresses and protocol.
//!
//! The key is canonical: of the two endpoints (address, port), the lower one comes first, so
//! both directions of a flow have the same key; [`PacketKey::from`] tells which of the two sent
//! the packet. The table remembers the side of a flow's first packet (the *initiator*): packets
//! from it are [`FlowDir::Original`], the others [`FlowDir::Reply`].
//!
//! # Hash, and hash flooding
//!
//! [`FlowHasher`]: three folded multiplies (the 128-bit product of two 64-bit words, its halves
//! xored; the construction of foldhash and of aHash's fallback) over the canonical key xored
//! with a random 384-bit seed drawn per table: about 2 ns a key, against about 45 ns for std's
//! SipHash-1-3 (`RandomState`, through the key's derived `Hash`) on the shared 2-core test
//! machine (`benches/benches/flows.rs`, `flow_hash/*`); SipHash alone would cost more than a
//! whole lookup in a table of 10³ flows. It is not a cryptographic PRF: it resists an attacker
//! who does not know the seed (they cannot aim keys at one probe sequence, since every table
//! has its own seed and the seed never leaves the process), which is the threat here, but it
//! gives no guarantee against one who can observe timing precisely enough to learn about the
//! seed. Probing is linear, at a load factor of at most one half, so even a poor hash costs
//! only longer probes, never unbounded memory. [`worker_of`] uses a different seed (one per
//! process) so that the flows of one worker are not all in a corner of that worker's table.
//!
//! # Layout and memory
//!
//! A slab of flows (96 bytes each, reserved for the whole capacity at creation, pushed into
//! as flows arrive and recycled through a free list) and an open-addressed index of 8-byte
//! buckets (32 bits of hash and the slab slot), a power of two with at least two buckets per
//! flow of capacity (so 2 to 4: 16 to 32 bytes). 112 to 128 bytes per flow of capacity in all
//! ([`FlowTable::memory_bytes`]): 200 000 flows (ErStandard) ≈ 23 MB, 10⁶ ≈ 113 MB. The slab is
//! reserved, not written, at creation, and the index is zeroed memory, so pages become resident
//! as flows use them. Lookup, insert, expiry and removal never allocate; only a live resize to
//! more flows than the table was made for ([`FlowTable::set_limits`]) does, once. A resize to
//! fewer flows keeps the memory (the capacity never shrinks).
//!
//! # Timeouts and expiry
//!
//! A flow expires when it has been idle (no packet of its own, ICMP errors do not count) for
//! the timeout of its state ([`FlowTimeouts`]). An expired flow is gone: a packet with its key
//! starts a new flow (through the limits, as any new flow). Its memory is reclaimed by
//! [`FlowTable::expire`], a sweep over the slab that examines a bounded number of slots per
//! call (the daemon's TUN workers call it with 16,384 slots every 100 ms on a fixed clock, and
//! with 256 on each wake-up with packets), or at once when a packet of the same key arrives, or
//! by [`FlowTable::remove`]. Until then it counts in [`FlowTable::len`] and against the limit of
//! concurrent flows: with a budget of `b` slots per call, an expired flow holds its slot for at
//! most `slots used / b` calls.
//!
//! TCP is tracked as far as the timeouts need: a flow is in *handshake* until the responder
//! sends a packet that is not an RST, then *established*; a FIN from either side or an RST
//! makes it *closing* (shorter timeout). A flow picked up mid-stream (its first packet is not a
//! SYN: the gateway restarted, or the flow expired) starts in handshake too and becomes
//! established on the first reply, so one-way floods of any flags only get the short timeout.
//! A SYN (without ACK or RST) on a closing flow is a new connection reusing the 5-tuple: the
//! flow starts over (its sender is the initiator, counters and first-seen time are reset), in
//! the slot it holds (not counted as a new flow against the limits).
//!
//! # Limits
//!
//! [`FlowLimits::from_sku`]: the SKU's concurrent flows (a table made for them; SKUs that
//! publish none get [`DEFAULT_MAX_FLOWS`], a memory bound) and new flows per second (a token
//! bucket with a burst of [`new_flow_burst`]; `None`: not limited). `ErGwScale` scales both with
//! its units (the SKU catalog does). A packet that would start a flow while the table holds
//! the limit is refused ([`Refused::TableFull`]), as is one beyond the rate
//! ([`Refused::NewFlowRate`]; the full check comes first and a packet refused as full takes no
//! token). Packets of existing flows are never refused, their non-first fragments included
//! (which never start nor are refused a flow), and neither are ICMP errors about them.

use std::collections::hash_map::RandomState;
use std::collections::BinaryHeap;
use std::fmt;
use std::hash::BuildHasher;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::OnceLock;
use std::time::Duration;

use causeway_wire::ip::{
    IpSummary, PROTO_HOPOPT, PROTO_ICMP, PROTO_ICMPV6, PROTO_IPV6_FRAG, PROTO_IPV6_NONXT,
    PROTO_IPV6_OPTS, PROTO_IPV6_ROUTE, PROTO_TCP, PROTO_UDP,
};
use causeway_wire::tcp::{FLAG_ACK, FLAG_FIN, FLAG_RST, FLAG_SYN};

use crate::shaper::TokenBucket;
use crate::sku::SkuLimits;

/// The bound on concurrent flows of a gateway whose SKU publishes no flow limit (VPN SKUs,
/// ExpressRoute Basic): memory must be bounded all the same (≈ 30 MB).
pub const DEFAULT_MAX_FLOWS: usize = 1 << 18;

/// The largest table: slots are 32-bit in the index.
pub const MAX_CAPACITY: usize = 1 << 30;

/// Smallest burst of the new-flows bucket (never more than a second's worth, though).
pub const MIN_NEW_FLOW_BURST: u64 = 16;

/// The burst of the new-flows-per-second bucket for `rate`: 100 ms at the rate, at least
/// [`MIN_NEW_FLOW_BURST`] flows but never more than one second's worth. For the SKUs: 700
/// (7 000/s) to 28 000 (ErGwScale 40, 280 000/s).
pub fn new_flow_burst(rate: u64) -> u64 {
    (rate / 10).max(rate.min(MIN_NEW_FLOW_BURST)).max(1)
}

// ---------------------------------------------------------------------------------------------
// Keys

/// One of the two endpoints of a canonical [`FlowKey`]: `Lo` is the lower (address, port).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Side {
    Lo = 0,
    Hi = 1,
}

impl Side {
    pub fn other(self) -> Side {
        match self {
            Side::Lo => Side::Hi,
            Side::Hi => Side::Lo,
        }
    }
}

/// The direction-independent key of a flow: IP version, protocol, and the two endpoints
/// (address and port; ports are 0 where the protocol has none, the ICMP identifier in both
/// where it has one), the lower endpoint first. Addresses are kept as two 64-bit halves so
/// that the key is 8-byte aligned: 40 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowKey {
    /// `[lo, hi]`, each `[high 64 bits, low 64 bits]`; IPv4 right-aligned.
    addr: [[u64; 2]; 2],
    /// `[lo, hi]`.
    port: [u16; 2],
    proto: u8,
    version: u8,
}

const _: () = assert!(std::mem::size_of::<FlowKey>() == 40);

fn halves(a: u128) -> [u64; 2] {
    [(a >> 64) as u64, a as u64]
}

impl FlowKey {
    /// The canonical key of a packet from `src` to `dst` (address, port), and the side `src` is.
    /// Equal endpoints are `Side::Lo`.
    #[inline]
    pub fn new(version: u8, proto: u8, src: (u128, u16), dst: (u128, u16)) -> (FlowKey, Side) {
        let (lo, hi, from) = if src <= dst {
            (src, dst, Side::Lo)
        } else {
            (dst, src, Side::Hi)
        };
        (
            FlowKey {
                addr: [halves(lo.0), halves(hi.0)],
                port: [lo.1, hi.1],
                proto,
                version,
            },
            from,
        )
    }

    /// 4 or 6.
    pub fn version(&self) -> u8 {
        self.version
    }

    /// The IP protocol number (after IPv6 extension headers).
    pub fn proto(&self) -> u8 {
        self.proto
    }

    /// Address (right-aligned, as in [`IpSummary`]) and port of one endpoint.
    pub fn endpoint(&self, side: Side) -> (u128, u16) {
        let i = side as usize;
        let [h, l] = self.addr[i];
        ((u128::from(h) << 64) | u128::from(l), self.port[i])
    }

    /// The address of one endpoint as an [`IpAddr`].
    pub fn ip(&self, side: Side) -> IpAddr {
        let (a, _) = self.endpoint(side);
        if self.version == 4 {
            IpAddr::V4(Ipv4Addr::from(a as u32))
        } else {
            IpAddr::V6(Ipv6Addr::from(a))
        }
    }
}

impl fmt::Display for FlowKey {
    /// `tcp 10.1.0.10:40000 <-> 10.2.0.10:5201` (lower endpoint first).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match (self.proto, self.version) {
            (PROTO_TCP, _) => "tcp".to_string(),
            (PROTO_UDP, _) => "udp".to_string(),
            (PROTO_ICMP, 4) => "icmp".to_string(),
            (PROTO_ICMPV6, 6) => "icmpv6".to_string(),
            (p, _) => format!("proto {p}"),
        };
        let ep = |s: Side| match self.ip(s) {
            IpAddr::V4(a) => format!("{a}:{}", self.port[s as usize]),
            IpAddr::V6(a) => format!("[{a}]:{}", self.port[s as usize]),
        };
        write!(f, "{name} {} <-> {}", ep(Side::Lo), ep(Side::Hi))
    }
}

/// The key of one packet: its flow, which endpoint sent it, and its TCP flags (0 when not TCP
/// or when the TCP header is not within the packet).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketKey {
    pub key: FlowKey,
    pub from: Side,
    pub tcp_flags: u8,
}

impl PacketKey {
    /// The key of a packet from `src` to `dst` (address, port).
    #[inline]
    pub fn new(
        version: u8,
        proto: u8,
        src: (u128, u16),
        dst: (u128, u16),
        tcp_flags: u8,
    ) -> PacketKey {
        let (key, from) = FlowKey::new(version, proto, src, dst);
        PacketKey {
            key,
            from,
            tcp_flags,
        }
    }
}

/// What [`classify`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Classified {
    /// A packet of its own flow, which it may create: [`FlowTable::lookup_or_insert`].
    Flow(PacketKey),
    /// An ICMP or ICMPv6 error about a packet of flow `key`, travelling the other way (`from`
    /// is the side the error goes *from*: the quoted packet's destination side). It belongs to
    /// that flow and never creates one: [`FlowTable::lookup_related`]. When no such flow is
    /// held, the error is an ordinary ICMP packet of key [`unported_key`] (which may create a
    /// flow, and be refused, as any).
    IcmpError(PacketKey),
    /// A non-first fragment (no upper-layer header): key by addresses and protocol (ports 0).
    /// It never creates a flow and is never refused: it is counted on the flow of that key if
    /// one is held ([`FlowTable::lookup_existing`]), else forwarded untracked.
    LaterFragment(PacketKey),
}

impl Classified {
    pub fn packet_key(&self) -> &PacketKey {
        match self {
            Classified::Flow(k) | Classified::IcmpError(k) | Classified::LaterFragment(k) => k,
        }
    }

    /// The flow key (of the quoted packet for an ICMP error): what [`worker_of`] hashes.
    pub fn key(&self) -> &FlowKey {
        &self.packet_key().key
    }
}

const V4_ERRORS: [u8; 5] = [3, 4, 5, 11, 12];

fn is_query(version: u8, ty: u8) -> bool {
    if version == 4 {
        matches!(ty, 0 | 8 | 13..=18)
    } else {
        matches!(ty, 128 | 129)
    }
}

fn be16(b: &[u8], at: usize) -> u16 {
    match b.get(at..at + 2) {
        Some(&[x, y]) => u16::from_be_bytes([x, y]),
        _ => 0,
    }
}

/// Source and destination "ports" of an upper-layer header `l4` of protocol `proto` (the ICMP
/// query identifier in both), 0 where there are none or they are not within `l4`.
#[inline]
fn l4_ports(version: u8, proto: u8, l4: &[u8]) -> (u16, u16) {
    match proto {
        PROTO_TCP | PROTO_UDP if l4.len() >= 4 => (be16(l4, 0), be16(l4, 2)),
        PROTO_ICMP | PROTO_ICMPV6
            if l4.len() >= 8
                && (proto == PROTO_ICMP) == (version == 4)
                && is_query(version, l4[0]) =>
        {
            let id = be16(l4, 4);
            (id, id)
        }
        _ => (0, 0),
    }
}

/// The key of the packet quoted by an ICMP error (`q`: its IP header and what follows, as
/// much as the error carries), if it is an IP packet of `version`.
fn quoted(version: u8, q: &[u8]) -> Option<(PacketKey, u128)> {
    if q.first().map(|b| b >> 4) != Some(version) {
        return None;
    }
    if version == 4 {
        if q.len() < 20 {
            return None;
        }
        let ihl = usize::from(q[0] & 0x0f) * 4;
        if ihl < 20 {
            return None;
        }
        let proto = q[9];
        let src = u128::from(u32::from_be_bytes([q[12], q[13], q[14], q[15]]));
        let dst = u128::from(u32::from_be_bytes([q[16], q[17], q[18], q[19]]));
        let later = be16(q, 6) & 0x1fff != 0;
        let (sp, dp) = if later {
            (0, 0)
        } else {
            l4_ports(4, proto, q.get(ihl..).unwrap_or(&[]))
        };
        Some((PacketKey::new(4, proto, (src, sp), (dst, dp), 0), src))
    } else {
        if q.len() < 40 {
            return None;
        }
        let mut a = [0u8; 16];
        a.copy_from_slice(&q[8..24]);
        let src = u128::from_be_bytes(a);
        a.copy_from_slice(&q[24..40]);
        let dst = u128::from_be_bytes(a);
        // The extension header chain, as `IpSummary::parse` follows it, within the quote.
        let mut next = q[6];
        let mut off = 40usize;
        let mut later = false;
        for _ in 0..8 {
            match next {
                PROTO_HOPOPT | PROTO_IPV6_ROUTE | PROTO_IPV6_OPTS => {
                    if off + 2 > q.len() {
                        next = PROTO_IPV6_NONXT;
                        break;
                    }
                    next = q[off];
                    off += (usize::from(q[off + 1]) + 1) * 8;
                }
                PROTO_IPV6_FRAG => {
                    if off + 8 > q.len() {
                        next = PROTO_IPV6_NONXT;
                        break;
                    }
                    later = be16(q, off + 2) & 0xfff8 != 0;
                    next = q[off];
                    off += 8;
                }
                _ => break,
            }
        }
        let (sp, dp) = if later {
            (0, 0)
        } else {
            l4_ports(6, next, q.get(off..).unwrap_or(&[]))
        };
        Some((PacketKey::new(6, next, (src, sp), (dst, dp), 0), src))
    }
}

/// The key of a packet by its addresses and protocol alone (ports 0): the key of a later
/// fragment, and of an ICMP error whose quoted flow is not held (an ordinary ICMP packet).
#[inline]
pub fn unported_key(s: &IpSummary) -> PacketKey {
    PacketKey::new(s.version, s.proto, (s.src, 0), (s.dst, 0), 0)
}

/// The flow key of a packet checked by [`IpSummary::parse`] (`pkt` starts with its IP header;
/// `s` is its summary). Never panics, whatever `pkt` and `s` hold: what is not within the
/// packet reads as absent (ports 0, no TCP flags). See the module documentation for the rules.
#[inline]
pub fn classify(pkt: &[u8], s: &IpSummary) -> Classified {
    let end = s.total_len.min(pkt.len());
    let l4 = pkt.get(s.l4_offset..end).unwrap_or(&[]);
    let v = s.version;
    let proto = s.proto;
    if s.is_later_fragment {
        return Classified::LaterFragment(unported_key(s));
    }
    let is_icmp = (proto == PROTO_ICMP && v == 4) || (proto == PROTO_ICMPV6 && v == 6);
    if is_icmp && l4.len() >= 8 {
        let ty = l4[0];
        let error = if v == 4 {
            V4_ERRORS.contains(&ty)
        } else {
            (1..=4).contains(&ty)
        };
        if error {
            if let Some((mut k, qsrc)) = quoted(v, &l4[8..]) {
                if qsrc == s.dst {
                    k.from = if k.key.endpoint(Side::Lo) == k.key.endpoint(Side::Hi) {
                        Side::Lo
                    } else {
                        k.from.other()
                    };
                    return Classified::IcmpError(k);
                }
            }
        }
    }
    let (sp, dp) = l4_ports(v, proto, l4);
    let flags = if proto == PROTO_TCP && l4.len() >= 14 {
        l4[13]
    } else {
        0
    };
    Classified::Flow(PacketKey::new(v, proto, (s.src, sp), (s.dst, dp), flags))
}

// ---------------------------------------------------------------------------------------------
// Hashing and worker affinity

/// A seeded hash of [`FlowKey`]s (see the module documentation): three folded multiplies.
#[derive(Clone, Copy)]
pub struct FlowHasher {
    k: [u64; 6],
}

impl fmt::Debug for FlowHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The seed is the secret: never printed.
        f.write_str("FlowHasher { .. }")
    }
}

#[inline(always)]
fn fold(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    (p as u64) ^ ((p >> 64) as u64)
}

fn splitmix64(x: &mut u64) -> u64 {
    *x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *x;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl FlowHasher {
    /// A hasher with a seed derived from `seed` (tests, benchmarks: reproducible).
    pub fn with_seed(seed: u64) -> FlowHasher {
        let mut s = seed;
        let mut k = [0u64; 6];
        for w in &mut k {
            // A zero word would make a multiply ignore its partner for one input in 2^64:
            // harmless, but cheap to rule out.
            *w = splitmix64(&mut s) | 1;
        }
        FlowHasher { k }
    }

    /// A hasher with a random seed (std's per-process random keys, as `HashMap` uses; every
    /// call gives a different seed).
    pub fn random() -> FlowHasher {
        let r = RandomState::new();
        FlowHasher::with_seed(
            r.hash_one(0x666c_6f77_u64) ^ r.hash_one(0x7365_6564_u64).rotate_left(32),
        )
    }

    /// The 64-bit hash of `key`.
    #[inline]
    pub fn hash(&self, key: &FlowKey) -> u64 {
        let k = &self.k;
        let m = u64::from(key.port[0])
            | (u64::from(key.port[1]) << 16)
            | (u64::from(key.proto) << 32)
            | (u64::from(key.version) << 40);
        let x = fold(key.addr[0][0] ^ k[0], key.addr[0][1] ^ k[1]);
        let y = fold(key.addr[1][0] ^ k[2], key.addr[1][1] ^ k[3]);
        fold(x ^ m ^ k[4], y ^ k[5])
    }

    /// Which of `workers` workers handles the flow of `key` (uniform over the top bits of the
    /// hash; 0 when `workers` is 0).
    #[inline]
    pub fn worker_of(&self, key: &FlowKey, workers: usize) -> usize {
        ((u128::from(self.hash(key)) * workers as u128) >> 64) as usize
    }
}

/// Which of `workers` workers handles every packet of the flow of `key`, in both directions
/// (the key is direction-independent). The hash seed is random, drawn once per process, and
/// differs from every table's, so that the flows a worker gets are spread over its table.
/// 0 when `workers` is 0.
#[inline]
pub fn worker_of(key: &FlowKey, workers: usize) -> usize {
    static AFFINITY: OnceLock<FlowHasher> = OnceLock::new();
    AFFINITY
        .get_or_init(FlowHasher::random)
        .worker_of(key, workers)
}

// ---------------------------------------------------------------------------------------------
// Timeouts and limits

/// Idle timeouts per protocol and state. Defaults after Linux conntrack, shortened where a
/// gateway with a flow limit must not hold flows that may be dead: TCP established 300 s
/// (conntrack: 5 days), TCP handshake and after FIN/RST 30 s, UDP 30 s one-way and 120 s once
/// both sides sent (conntrack's "stream"), ICMP 30 s, other protocols 60 s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowTimeouts {
    /// TCP until the responder sent a packet (a SYN without answer, a one-way pick-up).
    pub tcp_handshake: Duration,
    pub tcp_established: Duration,
    /// TCP after a FIN from either side or an RST.
    pub tcp_closing: Duration,
    /// UDP while only the initiator sent.
    pub udp: Duration,
    /// UDP once both sides sent.
    pub udp_stream: Duration,
    /// ICMP and ICMPv6.
    pub icmp: Duration,
    pub other: Duration,
}

impl Default for FlowTimeouts {
    fn default() -> Self {
        FlowTimeouts {
            tcp_handshake: Duration::from_secs(30),
            tcp_established: Duration::from_secs(300),
            tcp_closing: Duration::from_secs(30),
            udp: Duration::from_secs(30),
            udp_stream: Duration::from_secs(120),
            icmp: Duration::from_secs(30),
            other: Duration::from_secs(60),
        }
    }
}

impl FlowTimeouts {
    fn as_ns(&self) -> [u64; CLASSES] {
        let ns = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        [
            ns(self.tcp_handshake),
            ns(self.tcp_established),
            ns(self.tcp_closing),
            ns(self.udp),
            ns(self.udp_stream),
            ns(self.icmp),
            ns(self.other),
        ]
    }
}

/// The state of a flow, which picks its idle timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum FlowState {
    TcpHandshake = 0,
    TcpEstablished = 1,
    TcpClosing = 2,
    Udp = 3,
    UdpStream = 4,
    Icmp = 5,
    Other = 6,
}

const CLASSES: usize = 7;
const FREE: u8 = 0xff;

impl FlowState {
    fn from_u8(c: u8) -> FlowState {
        match c {
            0 => FlowState::TcpHandshake,
            1 => FlowState::TcpEstablished,
            2 => FlowState::TcpClosing,
            3 => FlowState::Udp,
            4 => FlowState::UdpStream,
            5 => FlowState::Icmp,
            _ => FlowState::Other,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            FlowState::TcpHandshake => "tcp_handshake",
            FlowState::TcpEstablished => "tcp_established",
            FlowState::TcpClosing => "tcp_closing",
            FlowState::Udp => "udp",
            FlowState::UdpStream => "udp_stream",
            FlowState::Icmp => "icmp",
            FlowState::Other => "other",
        }
    }
}

/// The flow limits of a gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowLimits {
    /// Concurrent flows (at most [`MAX_CAPACITY`]).
    pub max_flows: usize,
    /// New flows per second (`None`: not limited).
    pub new_flows_per_sec: Option<u64>,
}

impl FlowLimits {
    /// The SKU's limits: its published concurrent flows ([`DEFAULT_MAX_FLOWS`] when it
    /// publishes none) and new flows per second.
    pub fn from_sku(l: &SkuLimits) -> FlowLimits {
        FlowLimits {
            max_flows: l.flows.map_or(DEFAULT_MAX_FLOWS, |f| {
                usize::try_from(f).map_or(MAX_CAPACITY, |f| f.min(MAX_CAPACITY))
            }),
            new_flows_per_sec: l.new_flows_per_sec,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The table

/// Why a packet that would start a flow was refused (the caller drops and counts it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refused {
    /// The table holds the limit of concurrent flows.
    TableFull,
    /// Above the SKU's new flows per second.
    NewFlowRate,
}

impl Refused {
    pub fn as_str(self) -> &'static str {
        match self {
            Refused::TableFull => "flow_table_full",
            Refused::NewFlowRate => "new_flow_rate",
        }
    }
}

/// Which way a packet goes within its flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FlowDir {
    /// From the initiator (the sender of the flow's first packet).
    Original = 0,
    Reply = 1,
}

/// What the table did, since it was made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlowStats {
    /// Flows created.
    pub created: u64,
    /// Flows removed as idle (by the sweep, or when a packet of the same key came).
    pub expired: u64,
    /// Flows removed by [`FlowTable::remove`].
    pub removed: u64,
    /// Packets refused: table full.
    pub refused_full: u64,
    /// Packets refused: above the new flows per second.
    pub refused_rate: u64,
}

// TCP bits of a flow.
const T_SYN: u8 = 1;
const T_REPLY: u8 = 2;
const T_FIN_ORIG: u8 = 4;
const T_FIN_REPLY: u8 = 8;
const T_RST: u8 = 16;
const T_CLOSING: u8 = T_FIN_ORIG | T_FIN_REPLY | T_RST;

/// A slab entry: 96 bytes.
#[derive(Clone, Copy)]
struct Flow {
    key: FlowKey,
    /// `[original, reply]`.
    packets: [u64; 2],
    bytes: [u64; 2],
    first_seen: u64,
    last_seen: u64,
    /// While free: the next free slot ([`NIL`]: none). While live: the connection (pipeline
    /// slot) the flow's last packet used ([`NO_CONN`]: not known). One field for both keeps
    /// the entry at 96 bytes with a 32-bit connection id.
    link: u32,
    initiator: Side,
    /// A [`FlowState`], or [`FREE`].
    class: u8,
    /// `T_*` bits (TCP), `T_REPLY` for other protocols too.
    bits: u8,
}

/// [`Flow::link`] of a live flow whose connection is not known.
const NO_CONN: u32 = u32::MAX;

const _: () = assert!(std::mem::size_of::<Flow>() == 96);

const NIL: u32 = u32::MAX;

impl Flow {
    const VACANT: Flow = Flow {
        key: FlowKey {
            addr: [[0; 2]; 2],
            port: [0; 2],
            proto: 0,
            version: 0,
        },
        packets: [0; 2],
        bytes: [0; 2],
        first_seen: 0,
        last_seen: 0,
        link: NIL,
        initiator: Side::Lo,
        class: FREE,
        bits: 0,
    };

    /// A new flow (its connection not known: [`NO_CONN`]).
    fn start(key: FlowKey, initiator: Side, now_ns: u64) -> Flow {
        Flow {
            key,
            initiator,
            first_seen: now_ns,
            last_seen: now_ns,
            class: FlowState::Other as u8,
            ..Flow::VACANT
        }
    }

    #[inline]
    fn is_live(&self) -> bool {
        self.class != FREE
    }

    #[inline]
    fn timeout(&self, t: &[u64; CLASSES]) -> u64 {
        t.get(usize::from(self.class)).copied().unwrap_or(0)
    }

    #[inline]
    fn expired(&self, now_ns: u64, t: &[u64; CLASSES]) -> bool {
        now_ns.saturating_sub(self.last_seen) >= self.timeout(t)
    }

    /// Counts a packet of the flow, refreshes it and moves its state on.
    #[inline]
    fn account(&mut self, now_ns: u64, pk: &PacketKey, packets: u64, bytes: u64) -> FlowDir {
        let f = pk.tcp_flags;
        let tcp = self.key.proto == PROTO_TCP;
        if tcp && self.bits & T_CLOSING != 0 && f & (FLAG_SYN | FLAG_ACK | FLAG_RST) == FLAG_SYN {
            // A new connection on the 5-tuple of a closing one: start over.
            *self = Flow::start(self.key, pk.from, now_ns);
        }
        let d = if pk.from == self.initiator {
            FlowDir::Original
        } else {
            FlowDir::Reply
        };
        let i = d as usize;
        self.packets[i] = self.packets[i].saturating_add(packets);
        self.bytes[i] = self.bytes[i].saturating_add(bytes);
        self.last_seen = self.last_seen.max(now_ns);
        let state = if tcp {
            if f & FLAG_SYN != 0 && d == FlowDir::Original {
                self.bits |= T_SYN;
            }
            if f & FLAG_RST != 0 {
                self.bits |= T_RST;
            } else if d == FlowDir::Reply {
                self.bits |= T_REPLY;
            }
            if f & FLAG_FIN != 0 {
                self.bits |= match d {
                    FlowDir::Original => T_FIN_ORIG,
                    FlowDir::Reply => T_FIN_REPLY,
                };
            }
            if self.bits & T_CLOSING != 0 {
                FlowState::TcpClosing
            } else if self.bits & T_REPLY != 0 {
                FlowState::TcpEstablished
            } else {
                FlowState::TcpHandshake
            }
        } else {
            if d == FlowDir::Reply {
                self.bits |= T_REPLY;
            }
            match self.key.proto {
                PROTO_UDP if self.bits & T_REPLY != 0 => FlowState::UdpStream,
                PROTO_UDP => FlowState::Udp,
                PROTO_ICMP | PROTO_ICMPV6 => FlowState::Icmp,
                _ => FlowState::Other,
            }
        };
        self.class = state as u8;
        d
    }

    fn info(&self, t: &[u64; CLASSES]) -> FlowInfo {
        FlowInfo {
            key: self.key,
            initiator: self.initiator,
            packets: self.packets,
            bytes: self.bytes,
            first_seen_ns: self.first_seen,
            last_seen_ns: self.last_seen,
            state: FlowState::from_u8(self.class),
            syn_seen: self.bits & T_SYN != 0,
            fin_seen: [self.bits & T_FIN_ORIG != 0, self.bits & T_FIN_REPLY != 0],
            rst_seen: self.bits & T_RST != 0,
            expires_at_ns: self.last_seen.saturating_add(self.timeout(t)),
            connection: (self.link != NO_CONN).then_some(self.link as usize),
        }
    }
}

/// A copy of a flow's state (for `causeway flows`, tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowInfo {
    pub key: FlowKey,
    /// The side of the flow's first packet.
    pub initiator: Side,
    /// `[original, reply]` ([`FlowDir`] as index).
    pub packets: [u64; 2],
    pub bytes: [u64; 2],
    pub first_seen_ns: u64,
    pub last_seen_ns: u64,
    pub state: FlowState,
    /// TCP: a SYN from the initiator was seen.
    pub syn_seen: bool,
    /// TCP: a FIN was seen `[from the initiator, from the responder]`.
    pub fin_seen: [bool; 2],
    /// TCP: an RST was seen.
    pub rst_seen: bool,
    /// When the flow expires if no packet comes.
    pub expires_at_ns: u64,
    /// The connection (the pipeline's index) its last packet used, when recorded
    /// ([`FlowTable::lookup_or_insert_via`]); `None` too once that connection was removed
    /// ([`FlowTable::forget_connections`]) and until the flow's next packet.
    pub connection: Option<usize>,
}

impl FlowInfo {
    pub fn total_bytes(&self) -> u64 {
        self.bytes[0].saturating_add(self.bytes[1])
    }
}

/// A [`FlowInfo`] ordered by total bytes, then key.
#[derive(Debug, Clone, Copy)]
struct Ranked(FlowInfo);

impl Ranked {
    fn rank(&self) -> (u64, FlowKey) {
        (self.0.total_bytes(), self.0.key)
    }
}

impl PartialEq for Ranked {
    fn eq(&self, other: &Self) -> bool {
        self.rank() == other.rank()
    }
}

impl Eq for Ranked {}

impl PartialOrd for Ranked {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Ranked {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.rank().cmp(&other.rank())
    }
}

/// A top-N scan by bytes resumed chunk by chunk ([`FlowTable::scan_top`]): a cursor over the
/// slab and a heap of at most `n` copies of flows (allocated once, at creation).
#[derive(Debug)]
pub struct TopScan {
    n: usize,
    cursor: usize,
    heap: BinaryHeap<std::cmp::Reverse<Ranked>>,
}

impl TopScan {
    /// A scan for the `n` flows with the most bytes (memory for up to 65 536 of them reserved
    /// now; a larger `n` grows the heap as flows are found, never beyond the flows held).
    pub fn new(n: usize) -> TopScan {
        TopScan {
            n,
            cursor: 0,
            heap: BinaryHeap::with_capacity(n.min(1 << 16) + 1),
        }
    }

    /// The flows found, most bytes first (ties by key), each key once.
    pub fn finish(self) -> Vec<FlowInfo> {
        let mut out: Vec<FlowInfo> = self.heap.into_iter().map(|r| r.0 .0).collect();
        out.sort_by(|a, b| {
            b.total_bytes()
                .cmp(&a.total_bytes())
                .then(a.key.cmp(&b.key))
        });
        // A flow removed and started again in another slot during a chunked scan: keep its
        // first (largest) sighting.
        let mut seen = std::collections::HashSet::with_capacity(out.len());
        out.retain(|f| seen.insert(f.key));
        out
    }
}

/// The flow a packet belongs to, after it was counted.
#[derive(Debug, Clone, Copy)]
pub struct FlowRef<'a> {
    flow: &'a Flow,
    is_new: bool,
    dir: FlowDir,
    timeouts: &'a [u64; CLASSES],
}

impl fmt::Debug for Flow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Flow")
            .field("key", &self.key)
            .field("class", &self.class)
            .finish_non_exhaustive()
    }
}

impl FlowRef<'_> {
    /// This packet started the flow.
    pub fn is_new(&self) -> bool {
        self.is_new
    }

    /// The packet's direction within the flow.
    pub fn dir(&self) -> FlowDir {
        self.dir
    }

    pub fn state(&self) -> FlowState {
        FlowState::from_u8(self.flow.class)
    }

    pub fn info(&self) -> FlowInfo {
        self.flow.info(self.timeouts)
    }
}

/// The flow table of one gateway (or of one worker's share of it): see the module
/// documentation. Owned by one thread.
pub struct FlowTable {
    hasher: FlowHasher,
    /// Open addressing, linear probing, a power of two ≥ 2 × capacity (load ≤ ½). A bucket is
    /// 0 (empty) or `(h32 << 32) | (slot + 1)` with `h32` the top 32 bits of the key's hash,
    /// whose low bits are the bucket's home.
    index: Vec<u64>,
    mask: usize,
    /// Capacity reserved for `capacity` flows; `len()` is the high-water mark of slots used.
    slab: Vec<Flow>,
    capacity: usize,
    free: u32,
    len: usize,
    max_flows: usize,
    rate: Option<TokenBucket>,
    timeouts: FlowTimeouts,
    timeout_ns: [u64; CLASSES],
    /// Next slot the sweep examines.
    cursor: usize,
    stats: FlowStats,
}

impl fmt::Debug for FlowTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FlowTable")
            .field("len", &self.len)
            .field("capacity", &self.capacity)
            .field("max_flows", &self.max_flows)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

fn buckets_for(capacity: usize) -> usize {
    capacity.saturating_mul(2).next_power_of_two().max(8)
}

impl FlowTable {
    /// A table made for `limits.max_flows` flows (all its memory reserved now), hashing with
    /// `hasher` (use [`FlowHasher::random`] outside tests).
    pub fn new(
        limits: FlowLimits,
        timeouts: FlowTimeouts,
        hasher: FlowHasher,
        now_ns: u64,
    ) -> FlowTable {
        let capacity = limits.max_flows.min(MAX_CAPACITY);
        let buckets = buckets_for(capacity);
        FlowTable {
            hasher,
            index: vec![0; buckets],
            mask: buckets - 1,
            slab: Vec::with_capacity(capacity),
            capacity,
            free: NIL,
            len: 0,
            max_flows: capacity,
            rate: limits
                .new_flows_per_sec
                .map(|r| TokenBucket::new(r, new_flow_burst(r), now_ns)),
            timeouts,
            timeout_ns: timeouts.as_ns(),
            cursor: 0,
            stats: FlowStats::default(),
        }
    }

    /// A table for a gateway of SKU limits `l`, with a random hash seed.
    pub fn for_sku(l: &SkuLimits, timeouts: FlowTimeouts, now_ns: u64) -> FlowTable {
        FlowTable::new(
            FlowLimits::from_sku(l),
            timeouts,
            FlowHasher::random(),
            now_ns,
        )
    }

    /// Flows held, expired ones the sweep has not reached yet included.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Flows the table has memory for.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The limit of concurrent flows (≤ capacity).
    pub fn max_flows(&self) -> usize {
        self.max_flows
    }

    pub fn new_flows_per_sec(&self) -> Option<u64> {
        self.rate.as_ref().map(TokenBucket::rate)
    }

    pub fn stats(&self) -> FlowStats {
        self.stats
    }

    pub fn timeouts(&self) -> FlowTimeouts {
        self.timeouts
    }

    /// Changes the timeouts; they apply to every flow at once (expiry is computed from the last
    /// packet and the current timeouts).
    pub fn set_timeouts(&mut self, timeouts: FlowTimeouts) {
        self.timeouts = timeouts;
        self.timeout_ns = timeouts.as_ns();
    }

    /// Bytes of memory the table holds for its capacity (slab and index), whether resident yet
    /// or not.
    pub fn memory_bytes(&self) -> usize {
        self.slab.capacity() * std::mem::size_of::<Flow>()
            + self.index.capacity() * std::mem::size_of::<u64>()
    }

    /// A live resize. Existing flows always stay: with a limit below [`len`](Self::len) no
    /// flow is created until enough expired. The new-flows bucket keeps its tokens (capped to
    /// the new burst). A limit above the capacity grows the table: the one operation that
    /// allocates (the slab is moved and the index rebuilt, O(len): about 11 ms for 200 000
    /// flows held, 25 ms for 400 000, 60 ms for 10⁶ on the 2-core test machine, a stall of every
    /// thread that needs the table's lock). A lower limit keeps the memory.
    pub fn set_limits(&mut self, now_ns: u64, limits: FlowLimits) {
        let max = limits.max_flows.min(MAX_CAPACITY);
        if max > self.capacity {
            self.grow(max);
        }
        self.max_flows = max;
        self.rate = match (self.rate.take(), limits.new_flows_per_sec) {
            (Some(mut b), Some(r)) => {
                b.set_rate(now_ns, r, new_flow_burst(r));
                Some(b)
            }
            (None, Some(r)) => Some(TokenBucket::new(r, new_flow_burst(r), now_ns)),
            (_, None) => None,
        };
    }

    fn grow(&mut self, capacity: usize) {
        self.slab.reserve_exact(capacity - self.slab.len());
        let buckets = buckets_for(capacity);
        self.index = vec![0; buckets];
        self.mask = buckets - 1;
        self.capacity = capacity;
        for slot in 0..self.slab.len() {
            if self.slab[slot].is_live() {
                let h32 = self.h32(&self.slab[slot].key);
                self.index_insert(h32, slot);
            }
        }
    }

    #[inline(always)]
    fn h32(&self, key: &FlowKey) -> u32 {
        (self.hasher.hash(key) >> 32) as u32
    }

    /// The bucket and slot of `key`, if held (expired or not).
    #[inline]
    fn find(&self, h32: u32, key: &FlowKey) -> Option<(usize, usize)> {
        let mut i = h32 as usize & self.mask;
        loop {
            let e = self.index[i];
            if e == 0 {
                return None;
            }
            if (e >> 32) as u32 == h32 {
                let slot = (e as u32 - 1) as usize;
                if self.slab[slot].key == *key {
                    return Some((i, slot));
                }
            }
            i = (i + 1) & self.mask;
        }
    }

    #[inline]
    fn index_insert(&mut self, h32: u32, slot: usize) {
        let mut i = h32 as usize & self.mask;
        while self.index[i] != 0 {
            i = (i + 1) & self.mask;
        }
        self.index[i] = (u64::from(h32) << 32) | (slot as u64 + 1);
    }

    /// Empties bucket `b` and shifts the buckets after it back (no tombstones).
    fn index_remove(&mut self, b: usize) {
        let mask = self.mask;
        let mut hole = b;
        let mut j = (b + 1) & mask;
        loop {
            let e = self.index[j];
            if e == 0 {
                break;
            }
            let home = (e >> 32) as usize & mask;
            // `e` may fill the hole when the hole lies between its home and where it is.
            if (j.wrapping_sub(home) & mask) >= (j.wrapping_sub(hole) & mask) {
                self.index[hole] = e;
                hole = j;
            }
            j = (j + 1) & mask;
        }
        self.index[hole] = 0;
    }

    /// Removes the flow in bucket `b`, slot `slot`.
    fn unlink(&mut self, b: usize, slot: usize) {
        self.index_remove(b);
        self.slab[slot] = Flow {
            link: self.free,
            ..Flow::VACANT
        };
        self.free = slot as u32;
        self.len -= 1;
    }

    fn alloc_slot(&mut self) -> usize {
        if self.free != NIL {
            let s = self.free as usize;
            self.free = self.slab[s].link;
            s
        } else {
            // `len < max_flows <= capacity` and no free slot: the slab has room (reserved).
            debug_assert!(self.slab.len() < self.slab.capacity());
            self.slab.push(Flow::VACANT);
            self.slab.len() - 1
        }
    }

    /// Finds the flow of `pk` or starts it, and counts the packet (`packets` wire packets of
    /// `bytes` bytes: a super-packet counts as the segments it carries) on it. A flow found
    /// expired is removed and started anew. A new flow must fit the limits: otherwise the packet
    /// is refused and counted in [`stats`](Self::stats), and nothing else changes.
    #[inline]
    pub fn lookup_or_insert(
        &mut self,
        now_ns: u64,
        pk: &PacketKey,
        packets: u64,
        bytes: u64,
    ) -> Result<FlowRef<'_>, Refused> {
        self.lookup_or_insert_conn(now_ns, pk, packets, bytes, None)
    }

    /// [`lookup_or_insert`](Self::lookup_or_insert), and records that the packet used
    /// connection `conn` (shown by `causeway flows`; any index below `u32::MAX`).
    #[inline]
    pub fn lookup_or_insert_via(
        &mut self,
        now_ns: u64,
        pk: &PacketKey,
        packets: u64,
        bytes: u64,
        conn: usize,
    ) -> Result<FlowRef<'_>, Refused> {
        let c = u32::try_from(conn).unwrap_or(NO_CONN);
        self.lookup_or_insert_conn(now_ns, pk, packets, bytes, Some(c))
    }

    #[inline]
    fn lookup_or_insert_conn(
        &mut self,
        now_ns: u64,
        pk: &PacketKey,
        packets: u64,
        bytes: u64,
        conn: Option<u32>,
    ) -> Result<FlowRef<'_>, Refused> {
        let h32 = self.h32(&pk.key);
        let found = self.find(h32, &pk.key);
        let (slot, is_new) = match found {
            Some((_, slot)) if !self.slab[slot].expired(now_ns, &self.timeout_ns) => (slot, false),
            _ => {
                if let Some((b, slot)) = found {
                    self.unlink(b, slot);
                    self.stats.expired += 1;
                }
                if self.len >= self.max_flows {
                    self.stats.refused_full += packets;
                    return Err(Refused::TableFull);
                }
                if let Some(r) = &mut self.rate {
                    if !r.admit(now_ns, 1) {
                        self.stats.refused_rate += packets;
                        return Err(Refused::NewFlowRate);
                    }
                }
                let slot = self.alloc_slot();
                self.slab[slot] = Flow::start(pk.key, pk.from, now_ns);
                self.index_insert(h32, slot);
                self.len += 1;
                self.stats.created += 1;
                (slot, true)
            }
        };
        let flow = &mut self.slab[slot];
        let dir = flow.account(now_ns, pk, packets, bytes);
        if let Some(c) = conn {
            flow.link = c;
        }
        Ok(FlowRef {
            flow,
            is_new,
            dir,
            timeouts: &self.timeout_ns,
        })
    }

    /// Counts an ICMP error ([`Classified::IcmpError`]) on the flow it is about, if that flow is
    /// held and not expired. The flow is not refreshed (an error is no sign of life) and its
    /// state does not change; nothing is ever created. `None`: no such flow (the caller forwards
    /// the error untracked, or drops it, as it decides).
    #[inline]
    pub fn lookup_related(
        &mut self,
        now_ns: u64,
        pk: &PacketKey,
        packets: u64,
        bytes: u64,
    ) -> Option<FlowRef<'_>> {
        let h32 = self.h32(&pk.key);
        let (_, slot) = self.find(h32, &pk.key)?;
        let flow = &mut self.slab[slot];
        if flow.expired(now_ns, &self.timeout_ns) {
            return None;
        }
        let dir = if pk.from == flow.initiator {
            FlowDir::Original
        } else {
            FlowDir::Reply
        };
        let i = dir as usize;
        flow.packets[i] = flow.packets[i].saturating_add(packets);
        flow.bytes[i] = flow.bytes[i].saturating_add(bytes);
        Some(FlowRef {
            flow,
            is_new: false,
            dir,
            timeouts: &self.timeout_ns,
        })
    }

    /// Counts a packet on the flow of `pk` if it is held and not expired (refreshing it, as
    /// [`lookup_or_insert`](Self::lookup_or_insert) would), and nothing else: never creates a
    /// flow, never refuses (a later fragment, [`Classified::LaterFragment`]). `None`: no such
    /// flow (the caller forwards the packet untracked).
    #[inline]
    pub fn lookup_existing(
        &mut self,
        now_ns: u64,
        pk: &PacketKey,
        packets: u64,
        bytes: u64,
    ) -> Option<FlowRef<'_>> {
        let h32 = self.h32(&pk.key);
        let (_, slot) = self.find(h32, &pk.key)?;
        let flow = &mut self.slab[slot];
        if flow.expired(now_ns, &self.timeout_ns) {
            return None;
        }
        let dir = flow.account(now_ns, pk, packets, bytes);
        Some(FlowRef {
            flow,
            is_new: false,
            dir,
            timeouts: &self.timeout_ns,
        })
    }

    /// The flow of `key`, if held and not expired at `now_ns`.
    pub fn get(&self, now_ns: u64, key: &FlowKey) -> Option<FlowInfo> {
        let (_, slot) = self.find(self.h32(key), key)?;
        let f = &self.slab[slot];
        (!f.expired(now_ns, &self.timeout_ns)).then(|| f.info(&self.timeout_ns))
    }

    /// Removes the flow of `key` (expired or not); false when not held.
    pub fn remove(&mut self, key: &FlowKey) -> bool {
        match self.find(self.h32(key), key) {
            Some((b, slot)) => {
                self.unlink(b, slot);
                self.stats.removed += 1;
                true
            }
            None => false,
        }
    }

    /// One chunk of forgetting connections: the flows in slots `from..from + budget` whose
    /// recorded connection satisfies `gone` (connections a reload removed, whose slot may be
    /// given to another connection) no longer name one (`connection: None`, until their next
    /// packet records the connection it uses). Returns where the next chunk starts, `None` when
    /// every slot used was examined (bounded work per call, so that the caller can release
    /// the table's lock between chunks).
    pub fn forget_connections(
        &mut self,
        from: usize,
        budget: usize,
        gone: impl Fn(usize) -> bool,
    ) -> Option<usize> {
        let end = from.saturating_add(budget).min(self.slab.len());
        for f in self.slab.get_mut(from..end).unwrap_or(&mut []) {
            if f.is_live() && f.link != NO_CONN && gone(f.link as usize) {
                f.link = NO_CONN;
            }
        }
        (end < self.slab.len()).then_some(end)
    }

    /// Removes every flow (a gateway deleted, a flush); keeps the memory, limits and stats.
    pub fn clear(&mut self) {
        self.index.fill(0);
        self.slab.clear();
        self.free = NIL;
        self.len = 0;
        self.cursor = 0;
    }

    /// The incremental sweep: examines the next `budget` slots of the slab (wrapping around; at
    /// most the slots ever used) and removes the flows expired at `now_ns`. Returns how many
    /// were removed. Bounded work: `budget` slot reads (sequential, about 5 ns each), plus an
    /// index removal per expired flow (a cache miss or two, 60 to 90 ns in a table of 10⁶).
    pub fn expire(&mut self, now_ns: u64, budget: usize) -> usize {
        let used = self.slab.len();
        let mut removed = 0;
        for _ in 0..budget.min(used) {
            if self.cursor >= used {
                self.cursor = 0;
            }
            let slot = self.cursor;
            self.cursor += 1;
            let f = &self.slab[slot];
            if f.is_live() && f.expired(now_ns, &self.timeout_ns) {
                let h32 = self.h32(&f.key);
                let key = f.key;
                if let Some((b, s)) = self.find(h32, &key) {
                    debug_assert_eq!(s, slot);
                    self.unlink(b, s);
                    self.stats.expired += 1;
                    removed += 1;
                }
            }
        }
        removed
    }

    /// Every flow held and not expired at `now_ns`, in slab order.
    pub fn iter(&self, now_ns: u64) -> impl Iterator<Item = FlowInfo> + '_ {
        self.slab
            .iter()
            .filter(move |f| f.is_live() && !f.expired(now_ns, &self.timeout_ns))
            .map(|f| f.info(&self.timeout_ns))
    }

    /// The `n` flows with the most bytes (both directions), most first, in one pass under
    /// whatever lock the caller holds (allocates, O(len · log n)). The daemon scans in chunks
    /// instead ([`FlowTable::scan_top`]).
    pub fn top_by_bytes(&self, now_ns: u64, n: usize) -> Vec<FlowInfo> {
        let mut scan = TopScan::new(n);
        while !self.scan_top(now_ns, &mut scan, usize::MAX) {}
        scan.finish()
    }

    /// One chunk of a top-N scan: examines the next `budget` slots from the scan's cursor
    /// (bounded work, so that the caller can release the table's lock between chunks) and
    /// merges the flows live at `now_ns` into its heap. True when the scan has reached the end
    /// of the slots used. The table may change between chunks: a flow is reported as it was
    /// when its slot was read (one created behind the cursor is missed, one moved to another
    /// slot is reported once, with its larger count).
    pub fn scan_top(&self, now_ns: u64, scan: &mut TopScan, budget: usize) -> bool {
        let used = self.slab.len();
        let end = scan.cursor.saturating_add(budget).min(used);
        if scan.n > 0 {
            for f in self.slab.get(scan.cursor..end).unwrap_or(&[]) {
                if !f.is_live() || f.expired(now_ns, &self.timeout_ns) {
                    continue;
                }
                let total = f.bytes[0].saturating_add(f.bytes[1]);
                if scan.heap.len() == scan.n {
                    match scan.heap.peek() {
                        Some(std::cmp::Reverse(least)) if (total, f.key) <= least.rank() => {
                            continue
                        }
                        _ => {}
                    }
                }
                scan.heap
                    .push(std::cmp::Reverse(Ranked(f.info(&self.timeout_ns))));
                if scan.heap.len() > scan.n {
                    scan.heap.pop();
                }
            }
        }
        scan.cursor = end.max(scan.cursor);
        scan.cursor >= used || scan.n == 0
    }

    /// Checks the table's structure (tests).
    #[cfg(test)]
    fn check_invariants(&self) {
        assert!(self.len <= self.capacity);
        assert!(self.slab.len() <= self.capacity);
        assert!(self.slab.capacity() >= self.capacity);
        assert!(2 * self.capacity <= self.index.len());
        let live = self.slab.iter().filter(|f| f.is_live()).count();
        assert_eq!(live, self.len);
        let in_index = self.index.iter().filter(|&&e| e != 0).count();
        assert_eq!(in_index, self.len);
        let mut free = 0;
        let mut s = self.free;
        while s != NIL {
            assert!(!self.slab[s as usize].is_live());
            free += 1;
            s = self.slab[s as usize].link;
            assert!(free <= self.slab.len());
        }
        assert_eq!(free + live, self.slab.len());
        for (slot, f) in self.slab.iter().enumerate() {
            if f.is_live() {
                let (_, s) = self.find(self.h32(&f.key), &f.key).expect("reachable");
                assert_eq!(s, slot);
            }
        }
    }

    /// Held, expired or not (tests).
    #[cfg(test)]
    fn holds(&self, key: &FlowKey) -> bool {
        self.find(self.h32(key), key).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use causeway_wire::tcp::FLAG_PSH;
    use proptest::prelude::*;
    use std::collections::HashMap;

    const S: u64 = 1_000_000_000;
    const GRE: u8 = 47;

    fn v4(proto: u8, src: [u8; 4], dst: [u8; 4], l4: &[u8]) -> Vec<u8> {
        let total = 20 + l4.len();
        let mut p = vec![0u8; total];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        p[8] = 64;
        p[9] = proto;
        p[12..16].copy_from_slice(&src);
        p[16..20].copy_from_slice(&dst);
        causeway_wire::ip::set_v4_checksum(&mut p[..20]);
        p[20..].copy_from_slice(l4);
        p
    }

    fn v6(next: u8, src: u128, dst: u128, l4: &[u8]) -> Vec<u8> {
        let mut p = vec![0u8; 40 + l4.len()];
        p[0] = 0x60;
        p[4..6].copy_from_slice(&(l4.len() as u16).to_be_bytes());
        p[6] = next;
        p[7] = 64;
        p[8..24].copy_from_slice(&src.to_be_bytes());
        p[24..40].copy_from_slice(&dst.to_be_bytes());
        p[40..].copy_from_slice(l4);
        p
    }

    fn tcp(sp: u16, dp: u16, flags: u8) -> Vec<u8> {
        let mut h = vec![0u8; 20];
        h[0..2].copy_from_slice(&sp.to_be_bytes());
        h[2..4].copy_from_slice(&dp.to_be_bytes());
        h[12] = 5 << 4;
        h[13] = flags;
        h
    }

    fn udp(sp: u16, dp: u16) -> Vec<u8> {
        let mut h = vec![0u8; 12];
        h[0..2].copy_from_slice(&sp.to_be_bytes());
        h[2..4].copy_from_slice(&dp.to_be_bytes());
        h[4..6].copy_from_slice(&12u16.to_be_bytes());
        h
    }

    fn icmp(ty: u8, id: u16, rest: &[u8]) -> Vec<u8> {
        let mut h = vec![0u8; 8];
        h[0] = ty;
        h[4..6].copy_from_slice(&id.to_be_bytes());
        h[6..8].copy_from_slice(&7u16.to_be_bytes());
        h.extend_from_slice(rest);
        h
    }

    fn classified(pkt: &[u8]) -> Classified {
        let s = IpSummary::parse(pkt, true).expect("valid packet");
        classify(pkt, &s)
    }

    fn flow_key(pkt: &[u8]) -> PacketKey {
        match classified(pkt) {
            Classified::Flow(k) => k,
            c => panic!("not a flow packet: {c:?}"),
        }
    }

    const A: [u8; 4] = [10, 1, 0, 10];
    const B: [u8; 4] = [10, 2, 0, 10];
    const R: [u8; 4] = [192, 0, 2, 1];
    const A6: u128 = 0xfd00_0001_0000_0000_0000_0000_0000_000a;
    const B6: u128 = 0xfd00_0002_0000_0000_0000_0000_0000_000a;

    fn limits(max_flows: usize, rate: Option<u64>) -> FlowLimits {
        FlowLimits {
            max_flows,
            new_flows_per_sec: rate,
        }
    }

    fn table(max_flows: usize, rate: Option<u64>) -> FlowTable {
        FlowTable::new(
            limits(max_flows, rate),
            FlowTimeouts::default(),
            FlowHasher::with_seed(7),
            0,
        )
    }

    /// A UDP packet key from endpoint `i` to endpoint `j` (distinct flows for distinct pairs).
    fn udp_key(i: u32, j: u32) -> PacketKey {
        PacketKey::new(
            4,
            PROTO_UDP,
            (u128::from(0x0a01_0000 + i), 40_000),
            (u128::from(0x0a02_0000 + j), 53),
            0,
        )
    }

    fn tcp_key(reverse: bool, flags: u8) -> PacketKey {
        let a = (u128::from(u32::from_be_bytes(A)), 40_000);
        let b = (u128::from(u32::from_be_bytes(B)), 443);
        let (src, dst) = if reverse { (b, a) } else { (a, b) };
        PacketKey::new(4, PROTO_TCP, src, dst, flags)
    }

    #[test]
    fn both_directions_have_one_key() {
        let pairs: Vec<(Vec<u8>, Vec<u8>)> = vec![
            (
                v4(PROTO_TCP, A, B, &tcp(40_000, 443, FLAG_SYN)),
                v4(PROTO_TCP, B, A, &tcp(443, 40_000, FLAG_SYN | FLAG_ACK)),
            ),
            (
                v4(PROTO_UDP, B, A, &udp(53, 53)),
                v4(PROTO_UDP, A, B, &udp(53, 53)),
            ),
            (
                v6(PROTO_UDP, A6, B6, &udp(1, 2)),
                v6(PROTO_UDP, B6, A6, &udp(2, 1)),
            ),
            (
                v4(PROTO_ICMP, A, B, &icmp(8, 99, b"ping")),
                v4(PROTO_ICMP, B, A, &icmp(0, 99, b"ping")),
            ),
            (
                v6(PROTO_ICMPV6, A6, B6, &icmp(128, 99, b"ping")),
                v6(PROTO_ICMPV6, B6, A6, &icmp(129, 99, b"ping")),
            ),
            (v4(GRE, A, B, &[0; 8]), v4(GRE, B, A, &[0; 8])),
        ];
        for (there, back) in pairs {
            let (t, b) = (flow_key(&there), flow_key(&back));
            assert_eq!(t.key, b.key, "{}", t.key);
            assert_ne!(t.from, b.from, "{}", t.key);
            assert_eq!(worker_of(&t.key, 7), worker_of(&b.key, 7));
        }
        let k = flow_key(&v4(PROTO_TCP, A, B, &tcp(40_000, 443, FLAG_SYN)));
        assert_eq!(k.tcp_flags, FLAG_SYN);
        assert_eq!(k.key.proto(), PROTO_TCP);
        assert_eq!(k.key.version(), 4);
        assert_eq!(
            k.key.endpoint(k.from),
            (u128::from(u32::from_be_bytes(A)), 40_000)
        );
        assert_eq!(k.key.to_string(), "tcp 10.1.0.10:40000 <-> 10.2.0.10:443");
        let g = flow_key(&v4(GRE, A, B, &[0; 8]));
        assert_eq!(g.key.endpoint(Side::Lo).1, 0);
        assert_eq!(g.key.endpoint(Side::Hi).1, 0);
        // The same addresses, v4 and v6, are different flows.
        let (k4, _) = FlowKey::new(4, PROTO_UDP, (1, 1), (2, 2));
        let (k6, _) = FlowKey::new(6, PROTO_UDP, (1, 1), (2, 2));
        assert_ne!(k4, k6);
    }

    #[test]
    fn icmp_identifiers_separate_pings() {
        let a = flow_key(&v4(PROTO_ICMP, A, B, &icmp(8, 1, b"")));
        let b = flow_key(&v4(PROTO_ICMP, A, B, &icmp(8, 2, b"")));
        assert_ne!(a.key, b.key);
        assert_eq!(a.key.endpoint(Side::Lo).1, 1);
        // Not a query: by addresses (neighbour solicitation, a router advertisement).
        let ns = flow_key(&v6(PROTO_ICMPV6, A6, B6, &icmp(135, 1, b"")));
        assert_eq!(ns.key.endpoint(Side::Lo).1, 0);
        // ICMP in IPv6 (protocol 1) is not ICMPv6: by addresses.
        let odd = flow_key(&v6(PROTO_ICMP, A6, B6, &icmp(8, 5, b"")));
        assert_eq!(odd.key.endpoint(Side::Lo).1, 0);
    }

    #[test]
    fn later_fragments_are_keyed_by_addresses() {
        let mut first = v4(PROTO_UDP, A, B, &udp(1000, 2000));
        first[6] = 0x20; // MF, offset 0
        causeway_wire::ip::set_v4_checksum(&mut first[..20]);
        let f = flow_key(&first);
        assert_eq!(f.key.endpoint(f.from), (0x0a01_000a, 1000));
        let mut later = v4(PROTO_UDP, A, B, &udp(1000, 2000));
        later[7] = 0x10; // offset 128 bytes
        causeway_wire::ip::set_v4_checksum(&mut later[..20]);
        let Classified::LaterFragment(l) = classified(&later) else {
            panic!("{:?}", classified(&later))
        };
        assert_eq!(l.key.endpoint(Side::Lo).1, 0);
        assert_eq!(l.key.endpoint(Side::Hi).1, 0);
        assert_eq!(l.key.proto(), PROTO_UDP);
        assert_ne!(f.key, l.key);
        // IPv6: a fragment header with a non-zero offset.
        let mut frag = vec![PROTO_UDP, 0, 0, 0x81, 0, 0, 0, 1];
        frag.extend_from_slice(&udp(1000, 2000));
        let l6 = *classified(&v6(PROTO_IPV6_FRAG, A6, B6, &frag)).packet_key();
        assert!(matches!(
            classified(&v6(PROTO_IPV6_FRAG, A6, B6, &frag)),
            Classified::LaterFragment(_)
        ));
        assert_eq!(
            (l6.key.proto(), l6.key.endpoint(Side::Lo).1),
            (PROTO_UDP, 0)
        );
        let mut first6 = vec![PROTO_UDP, 0, 0, 0x01, 0, 0, 0, 1];
        first6.extend_from_slice(&udp(1000, 2000));
        let f6 = flow_key(&v6(PROTO_IPV6_FRAG, A6, B6, &first6));
        assert_eq!(f6.key.endpoint(f6.from), (A6, 1000));
    }

    #[test]
    fn later_fragments_never_create_nor_are_refused() {
        // A full table (one flow) and no tokens: a later fragment is counted on the flow of
        // its addresses and protocol if held, else finds nothing, and changes nothing.
        let mut t = table(1, Some(1));
        let mut later = v4(PROTO_UDP, A, B, &udp(1000, 2000));
        later[7] = 0x10;
        causeway_wire::ip::set_v4_checksum(&mut later[..20]);
        let Classified::LaterFragment(lk) = classified(&later) else {
            panic!()
        };
        assert!(t.lookup_existing(0, &lk, 1, 100).is_none());
        assert!(t.is_empty());
        assert_eq!(t.stats(), FlowStats::default());
        // A protocol without ports (GRE, 47) whose flow is held: its later fragments are
        // counted on it and refresh it.
        let mut gre = v4(47, A, B, &[0; 8]);
        let gk = flow_key(&gre);
        assert!(t.lookup_or_insert(0, &gk, 1, 28).unwrap().is_new());
        gre[7] = 0x10;
        causeway_wire::ip::set_v4_checksum(&mut gre[..20]);
        let Classified::LaterFragment(glk) = classified(&gre) else {
            panic!()
        };
        assert_eq!(glk.key, gk.key);
        let r = t
            .lookup_existing(5 * S, &glk, 1, 100)
            .expect("the GRE flow");
        assert!(!r.is_new());
        let info = t.get(5 * S, &gk.key).unwrap();
        assert_eq!((info.packets[0], info.bytes[0]), (2, 128));
        assert_eq!(info.last_seen_ns, 5 * S);
        // Full, no tokens: the UDP fragment still finds nothing and is not refused.
        assert!(t.lookup_existing(6 * S, &lk, 1, 100).is_none());
        assert_eq!(
            (t.len(), t.stats().refused_full, t.stats().refused_rate),
            (1, 0, 0)
        );
        t.check_invariants();
    }

    #[test]
    fn icmp_errors_belong_to_the_flow_they_quote() {
        let seg = v4(PROTO_TCP, A, B, &tcp(40_000, 443, FLAG_ACK));
        let data = flow_key(&seg);
        let reply = flow_key(&v4(PROTO_TCP, B, A, &tcp(443, 40_000, FLAG_ACK)));
        // Fragmentation needed, from a router on the way, back to A: quotes the header and 8
        // bytes of TCP.
        let err = v4(PROTO_ICMP, R, A, &icmp(3, 0, &seg[..28]));
        match classified(&err) {
            Classified::IcmpError(k) => {
                assert_eq!(k.key, data.key);
                assert_eq!(k.from, reply.from, "travels the reply way");
                assert_eq!(k.tcp_flags, 0);
            }
            c => panic!("{c:?}"),
        }
        assert_eq!(classified(&err).key(), &data.key);
        // IPv6 packet too big quoting a UDP datagram.
        let dgram = v6(PROTO_UDP, A6, B6, &udp(5000, 6000));
        let err6 = v6(PROTO_ICMPV6, B6 + 1, A6, &icmp(2, 0, &dgram));
        assert_eq!(
            classified(&err6),
            Classified::IcmpError(PacketKey {
                from: flow_key(&dgram).from.other(),
                ..flow_key(&dgram)
            })
        );
        // Time exceeded about a ping (traceroute -I).
        let ping = v4(PROTO_ICMP, A, B, &icmp(8, 42, b"x"));
        let te = v4(PROTO_ICMP, R, A, &icmp(11, 0, &ping));
        assert_eq!(classified(&te).key(), &flow_key(&ping).key);
        // A quote that does not come from the error's destination, of the other IP version, or
        // too short: an ordinary ICMP packet by its own addresses.
        for bogus in [
            v4(PROTO_ICMP, R, B, &icmp(3, 0, &seg[..28])),
            v4(PROTO_ICMP, R, A, &icmp(3, 0, &dgram)),
            v4(PROTO_ICMP, R, A, &icmp(3, 0, &seg[..12])),
        ] {
            match classified(&bogus) {
                Classified::Flow(k) => {
                    assert_eq!(k.key.proto(), PROTO_ICMP);
                    assert_eq!(k.key.endpoint(Side::Lo).1, 0);
                }
                c => panic!("{c:?}"),
            }
        }
    }

    #[test]
    fn icmp_errors_never_create_nor_refresh_flows() {
        let mut t = table(1, None);
        let seg = v4(PROTO_TCP, A, B, &tcp(40_000, 443, FLAG_SYN));
        let err = v4(PROTO_ICMP, R, A, &icmp(3, 4, &seg[..28]));
        let Classified::IcmpError(ek) = classified(&err) else {
            panic!()
        };
        assert!(t.lookup_related(0, &ek, 1, 56).is_none());
        assert!(t.is_empty());
        let k = flow_key(&seg);
        assert!(t.lookup_or_insert(0, &k, 1, 40).unwrap().is_new());
        let r = t.lookup_related(10 * S, &ek, 1, 56).expect("the TCP flow");
        assert_eq!(r.dir(), FlowDir::Reply);
        let info = t.get(10 * S, &k.key).unwrap();
        assert_eq!((info.packets, info.bytes), ([1, 1], [40, 56]));
        assert_eq!(info.last_seen_ns, 0, "an error is no sign of life");
        assert_eq!(info.state, FlowState::TcpHandshake);
        // Expired at 30 s (handshake): the error finds nothing, and the table is full for a
        // while but errors are never refused.
        assert!(t.lookup_related(30 * S, &ek, 1, 56).is_none());
    }

    #[test]
    fn tcp_states_pick_the_timeouts() {
        let mut t = table(10, None);
        let syn = tcp_key(false, FLAG_SYN);
        let f = t.lookup_or_insert(0, &syn, 1, 60).unwrap();
        assert!(f.is_new());
        assert_eq!(
            (f.dir(), f.state()),
            (FlowDir::Original, FlowState::TcpHandshake)
        );
        assert_eq!(f.info().expires_at_ns, 30 * S);
        // No answer: gone after 30 s.
        assert!(t.get(30 * S - 1, &syn.key).is_some());
        assert!(t.get(30 * S, &syn.key).is_none());
        assert_eq!(t.expire(30 * S, 100), 1);
        assert!(t.is_empty());

        t.lookup_or_insert(100 * S, &syn, 1, 60).unwrap();
        let f = t
            .lookup_or_insert(100 * S, &tcp_key(true, FLAG_SYN | FLAG_ACK), 1, 60)
            .unwrap();
        assert!(!f.is_new());
        assert_eq!(
            (f.dir(), f.state()),
            (FlowDir::Reply, FlowState::TcpEstablished)
        );
        assert_eq!(f.info().expires_at_ns, 400 * S);
        let f = t
            .lookup_or_insert(399 * S, &tcp_key(false, FLAG_ACK | FLAG_PSH), 1, 1500)
            .unwrap();
        assert_eq!(f.info().expires_at_ns, 699 * S);
        // A FIN from the responder: closing, 30 s.
        let f = t
            .lookup_or_insert(400 * S, &tcp_key(true, FLAG_FIN | FLAG_ACK), 1, 52)
            .unwrap();
        assert_eq!(f.state(), FlowState::TcpClosing);
        let info = f.info();
        assert_eq!(info.fin_seen, [false, true]);
        assert!(info.syn_seen && !info.rst_seen);
        assert_eq!(info.expires_at_ns, 430 * S);
        assert_eq!(info.packets, [2, 2]);
        assert_eq!(info.bytes, [1560, 112]);
        assert!(t.get(430 * S, &syn.key).is_none());

        // A new connection on the same 5-tuple (the other way, even) while closing: starts over.
        t.lookup_or_insert(420 * S, &tcp_key(true, FLAG_SYN), 1, 60)
            .unwrap();
        let info = t.get(420 * S, &syn.key).unwrap();
        assert_eq!(info.state, FlowState::TcpHandshake);
        assert_eq!(info.initiator, tcp_key(true, 0).from);
        assert_eq!((info.packets, info.first_seen_ns), ([1, 0], 420 * S));
        assert_eq!(t.stats().created, 2, "not a new flow for the limits");

        // An RST: closing.
        t.lookup_or_insert(421 * S, &tcp_key(false, FLAG_SYN | FLAG_ACK), 1, 60)
            .unwrap();
        assert_eq!(
            t.get(421 * S, &syn.key).unwrap().state,
            FlowState::TcpEstablished
        );
        let f = t
            .lookup_or_insert(422 * S, &tcp_key(false, FLAG_RST), 1, 40)
            .unwrap();
        assert_eq!(f.state(), FlowState::TcpClosing);
        assert!(f.info().rst_seen);
        assert_eq!(f.info().expires_at_ns, 452 * S);
    }

    #[test]
    fn one_way_tcp_never_gets_established() {
        let mut t = table(10, None);
        for (i, flags) in [FLAG_ACK, FLAG_ACK | FLAG_PSH, FLAG_ACK]
            .into_iter()
            .enumerate()
        {
            let f = t
                .lookup_or_insert(i as u64 * S, &tcp_key(false, flags), 1, 100)
                .unwrap();
            assert_eq!(f.state(), FlowState::TcpHandshake);
        }
        // An RST back does not establish it either.
        let f = t
            .lookup_or_insert(3 * S, &tcp_key(true, FLAG_RST), 1, 40)
            .unwrap();
        assert_eq!(f.state(), FlowState::TcpClosing);
    }

    #[test]
    fn udp_stream_and_other_timeouts() {
        let mut t = table(10, None);
        let k = udp_key(1, 1);
        let f = t.lookup_or_insert(0, &k, 1, 100).unwrap();
        assert_eq!(
            (f.state(), f.info().expires_at_ns),
            (FlowState::Udp, 30 * S)
        );
        let back = PacketKey {
            from: k.from.other(),
            ..k
        };
        let f = t.lookup_or_insert(S, &back, 1, 100).unwrap();
        assert_eq!(
            (f.state(), f.info().expires_at_ns),
            (FlowState::UdpStream, 121 * S)
        );
        let ping = PacketKey::new(6, PROTO_ICMPV6, (A6, 9), (B6, 9), 0);
        let f = t.lookup_or_insert(0, &ping, 1, 64).unwrap();
        assert_eq!(
            (f.state(), f.info().expires_at_ns),
            (FlowState::Icmp, 30 * S)
        );
        let esp = PacketKey::new(4, 50, (1, 0), (2, 0), 0);
        let f = t.lookup_or_insert(0, &esp, 1, 64).unwrap();
        assert_eq!(
            (f.state(), f.info().expires_at_ns),
            (FlowState::Other, 60 * S)
        );
        // Configurable, for every flow at once.
        t.set_timeouts(FlowTimeouts {
            other: Duration::from_secs(5),
            ..FlowTimeouts::default()
        });
        assert!(t.get(5 * S, &esp.key).is_none());
        assert!(t.get(5 * S, &ping.key).is_some());
    }

    #[test]
    fn a_full_table_refuses_new_flows_only() {
        let mut t = table(3, None);
        for i in 0..3 {
            assert!(t
                .lookup_or_insert(0, &udp_key(i, 0), 1, 10)
                .unwrap()
                .is_new());
        }
        assert_eq!(
            t.lookup_or_insert(0, &udp_key(9, 0), 2, 10).unwrap_err(),
            Refused::TableFull
        );
        assert_eq!(t.stats().refused_full, 2);
        // Existing flows keep flowing, both ways.
        for i in 0..3 {
            let k = udp_key(i, 0);
            assert!(!t.lookup_or_insert(1, &k, 1, 10).unwrap().is_new());
            let back = PacketKey {
                from: k.from.other(),
                ..k
            };
            assert_eq!(
                t.lookup_or_insert(1, &back, 1, 10).unwrap().dir(),
                FlowDir::Reply
            );
        }
        assert_eq!(t.len(), 3);
        // Once one is removed there is room again.
        assert!(t.remove(&udp_key(1, 0).key));
        assert!(!t.remove(&udp_key(1, 0).key));
        assert!(t.lookup_or_insert(2, &udp_key(9, 0), 1, 10).is_ok());
        assert_eq!(
            t.lookup_or_insert(2, &udp_key(1, 0), 1, 10).unwrap_err(),
            Refused::TableFull
        );
        t.check_invariants();
    }

    #[test]
    fn new_flows_above_the_rate_are_refused() {
        // 100/s: a burst of 16, then one every 10 ms.
        let mut t = table(1000, Some(100));
        assert_eq!(new_flow_burst(100), 16);
        let mut n = 0;
        for i in 0..20 {
            if t.lookup_or_insert(0, &udp_key(i, 0), 1, 10).is_ok() {
                n += 1;
            }
        }
        assert_eq!(n, 16);
        assert_eq!(t.stats().refused_rate, 4);
        // Packets of admitted flows are never rate limited.
        for _ in 0..100 {
            assert!(t.lookup_or_insert(0, &udp_key(0, 0), 1, 10).is_ok());
        }
        assert_eq!(
            t.lookup_or_insert(9_999_999, &udp_key(100, 0), 1, 10)
                .unwrap_err(),
            Refused::NewFlowRate
        );
        assert!(t
            .lookup_or_insert(10_000_000, &udp_key(100, 0), 1, 10)
            .is_ok());
        // The full check comes first and takes no token.
        let mut t = table(1, Some(1));
        t.lookup_or_insert(0, &udp_key(0, 0), 1, 10).unwrap();
        assert_eq!(
            t.lookup_or_insert(S, &udp_key(1, 0), 1, 10).unwrap_err(),
            Refused::TableFull
        );
        t.remove(&udp_key(0, 0).key);
        assert!(t.lookup_or_insert(S, &udp_key(1, 0), 1, 10).is_ok());
        // The bursts of the SKUs.
        assert_eq!(new_flow_burst(7_000), 700);
        assert_eq!(new_flow_burst(5), 5);
        assert_eq!(new_flow_burst(0), 1);
    }

    #[test]
    fn limits_come_from_the_sku_and_scale_with_units() {
        use crate::sku::Sku;
        let l = FlowLimits::from_sku(&Sku::ErStandard.limits());
        assert_eq!(l, limits(200_000, Some(7_000)));
        let l = FlowLimits::from_sku(&Sku::ErGwScale(3).limits());
        assert_eq!(l, limits(300_000, Some(21_000)));
        let l = FlowLimits::from_sku(&Sku::ErGwScale(40).limits());
        assert_eq!(l, limits(4_000_000, Some(280_000)));
        let vpn = Sku::VpnGw {
            generation: 1,
            az: false,
        };
        assert_eq!(
            FlowLimits::from_sku(&vpn.limits()),
            limits(DEFAULT_MAX_FLOWS, None)
        );
        let t = FlowTable::for_sku(&Sku::ErGw1AZ.limits(), FlowTimeouts::default(), 0);
        assert_eq!((t.capacity(), t.max_flows()), (200_000, 200_000));
        assert_eq!(t.new_flows_per_sec(), Some(7_000));
        // 96-byte flows and 2 to 4 index buckets of 8 bytes per flow.
        assert_eq!(t.memory_bytes(), 200_000 * 96 + 524_288 * 8);
    }

    #[test]
    fn live_resizes_keep_existing_flows() {
        let mut t = table(4, Some(1000));
        for i in 0..4 {
            t.lookup_or_insert(0, &udp_key(i, 0), 1, 10).unwrap();
        }
        // Down to 2: all four stay, no new one until below 2.
        t.set_limits(0, limits(2, Some(1000)));
        assert_eq!((t.len(), t.max_flows(), t.capacity()), (4, 2, 4));
        for i in 0..4 {
            assert!(t.lookup_or_insert(1, &udp_key(i, 0), 1, 10).is_ok());
        }
        assert_eq!(
            t.lookup_or_insert(1, &udp_key(9, 0), 1, 10).unwrap_err(),
            Refused::TableFull
        );
        t.remove(&udp_key(0, 0).key);
        t.remove(&udp_key(1, 0).key);
        assert_eq!(
            t.lookup_or_insert(1, &udp_key(9, 0), 1, 10).unwrap_err(),
            Refused::TableFull
        );
        t.remove(&udp_key(2, 0).key);
        assert!(t.lookup_or_insert(1, &udp_key(9, 0), 1, 10).is_ok());
        // Up to 100: the table grows (once) and keeps its flows.
        t.set_limits(2, limits(100, None));
        assert_eq!(
            (t.max_flows(), t.capacity(), t.new_flows_per_sec()),
            (100, 100, None)
        );
        assert!(t.get(2, &udp_key(3, 0).key).is_some());
        assert!(t.get(2, &udp_key(9, 0).key).is_some());
        for i in 10..108 {
            assert!(t.lookup_or_insert(3, &udp_key(i, 1), 1, 10).is_ok());
        }
        assert_eq!(t.len(), 100);
        assert_eq!(
            t.lookup_or_insert(3, &udp_key(200, 1), 1, 10).unwrap_err(),
            Refused::TableFull
        );
        t.check_invariants();
        // A rate again.
        t.set_limits(4, limits(100, Some(5)));
        assert_eq!(t.new_flows_per_sec(), Some(5));
    }

    #[test]
    fn expiry_sweeps_in_bounded_steps() {
        let n = 1000;
        let mut t = table(n, None);
        for i in 0..n as u32 {
            // Half UDP one-way (30 s), half UDP streams (120 s).
            let k = udp_key(i, 0);
            t.lookup_or_insert(0, &k, 1, 10).unwrap();
            if i % 2 == 0 {
                let back = PacketKey {
                    from: k.from.other(),
                    ..k
                };
                t.lookup_or_insert(0, &back, 1, 10).unwrap();
            }
        }
        assert_eq!(t.expire(29 * S, usize::MAX), 0);
        let mut removed = 0;
        let mut calls = 0;
        while removed < n / 2 {
            let r = t.expire(30 * S, 64);
            assert!(r <= 64);
            removed += r;
            calls += 1;
            assert!(calls <= n.div_ceil(64), "one sweep of the slab is enough");
        }
        assert_eq!(t.len(), n / 2);
        assert_eq!(t.stats().expired, (n / 2) as u64);
        t.check_invariants();
        // Freed slots are reused before the slab grows: no new memory touched.
        for i in 0..(n / 2) as u32 {
            t.lookup_or_insert(31 * S, &udp_key(i, 7), 1, 10).unwrap();
        }
        assert_eq!(t.slab.len(), n);
        t.check_invariants();
        assert_eq!(t.expire(10_000 * S, usize::MAX), n);
        assert!(t.is_empty());
        assert_eq!(t.expire(10_000 * S, 10), 0);
    }

    #[test]
    fn an_expired_flow_is_a_new_flow() {
        let mut t = table(1, Some(1));
        let k = udp_key(0, 0);
        assert!(t.lookup_or_insert(0, &k, 1, 10).unwrap().is_new());
        assert!(!t.lookup_or_insert(29 * S, &k, 1, 10).unwrap().is_new());
        // Idle from 29 s: expired at 59 s, started again (a token came in the meantime).
        let f = t.lookup_or_insert(59 * S, &k, 1, 10).unwrap();
        assert!(f.is_new());
        assert_eq!((f.info().packets, f.info().first_seen_ns), ([1, 0], 59 * S));
        assert_eq!(t.stats().expired, 1);
        assert_eq!(t.len(), 1);
        // In a full table, an expired flow makes room for its own key's new flow.
        assert!(t.lookup_or_insert(89 * S, &k, 1, 10).unwrap().is_new());
        let mut t = table(5, Some(1));
        t.lookup_or_insert(0, &k, 1, 10).unwrap();
        t.lookup_or_insert(0, &udp_key(1, 1), 1, 10).unwrap_err();
        let back = PacketKey {
            from: k.from.other(),
            ..k
        };
        // One-way UDP lives 30 s: at 30 s a packet from the other side starts a new flow (it is
        // the initiator now); at 29 s it would have made the flow a stream (120 s).
        let f = t.lookup_or_insert(30 * S, &back, 1, 10).unwrap();
        assert!(f.is_new());
        assert_eq!(
            (f.dir(), f.info().initiator),
            (FlowDir::Original, back.from)
        );
        let f = t.lookup_or_insert(59 * S, &k, 1, 10).unwrap();
        assert_eq!((f.dir(), f.state()), (FlowDir::Reply, FlowState::UdpStream));
        assert!(t.get(178 * S, &k.key).is_some());
        assert!(t.get(179 * S, &k.key).is_none());
    }

    #[test]
    fn nothing_is_reallocated_by_packets_or_expiry() {
        let n = 5000;
        let mut t = table(n, None);
        let (slab, index) = (t.slab.as_ptr(), t.index.as_ptr());
        let (slab_cap, index_cap) = (t.slab.capacity(), t.index.capacity());
        let mut now = 0;
        for round in 0..6u32 {
            for i in 0..n as u32 + 100 {
                now += 1_000_000;
                let _ = t.lookup_or_insert(now, &udp_key(i, round), 1, 100);
            }
            t.expire(now, 2000);
            t.remove(&udp_key(round, round).key);
        }
        assert_eq!((t.slab.as_ptr(), t.index.as_ptr()), (slab, index));
        assert_eq!(
            (t.slab.capacity(), t.index.capacity()),
            (slab_cap, index_cap)
        );
        assert!(t.stats().refused_full > 0 && t.stats().expired > 0);
        t.check_invariants();
    }

    #[test]
    fn a_chunked_top_scan_resumes_where_it_stopped() {
        let mut t = table(100, None);
        for i in 0..40u32 {
            t.lookup_or_insert(0, &udp_key(i, 0), 1, u64::from(i) * 100)
                .unwrap();
        }
        let mut scan = TopScan::new(5);
        let mut chunks = 0;
        loop {
            let cursor = scan.cursor;
            let done = t.scan_top(0, &mut scan, 8);
            assert!(scan.cursor - cursor <= 8, "at most the budget per chunk");
            chunks += 1;
            if done {
                break;
            }
            // The table changes between chunks (the lock is released): flows ahead of the
            // cursor grow and go.
            if chunks == 2 {
                t.lookup_or_insert(1, &udp_key(39, 0), 1, 10_000).unwrap();
                assert!(t.remove(&udp_key(35, 0).key));
            }
        }
        assert_eq!(chunks, 5);
        let bytes: Vec<u64> = scan.finish().iter().map(FlowInfo::total_bytes).collect();
        // Flow 39 is seen grown and flow 35 not at all: their slots were read after the
        // change.
        assert_eq!(bytes, [13_900, 3800, 3700, 3600, 3400]);
        // n = 0 and an empty table end at once.
        let mut scan = TopScan::new(0);
        assert!(t.scan_top(0, &mut scan, 1));
        assert!(scan.finish().is_empty());
        let e = table(10, None);
        let mut scan = TopScan::new(3);
        assert!(e.scan_top(0, &mut scan, 1));
        assert!(scan.finish().is_empty());
    }

    #[test]
    fn connections_of_any_slot_are_recorded_and_forgotten_when_removed() {
        let mut t = table(100, None);
        for i in 0..10u32 {
            // Slots above a byte (the id used to be one byte: 255 and up were lost).
            t.lookup_or_insert_via(0, &udp_key(i, 0), 1, 100, 250 + i as usize)
                .unwrap();
        }
        t.lookup_or_insert(0, &udp_key(50, 0), 1, 100).unwrap();
        let conn = |t: &FlowTable, i: u32| t.get(0, &udp_key(i, 0).key).unwrap().connection;
        assert_eq!(conn(&t, 9), Some(259));
        assert_eq!(conn(&t, 5), Some(255));
        assert_eq!(conn(&t, 50), None);
        // A reload removed the connections of slots 255 and 258: their flows name none, in
        // chunks of 4 slots.
        let mut from = Some(0);
        let mut chunks = 0;
        while let Some(f) = from {
            from = t.forget_connections(f, 4, |c| c == 255 || c == 258);
            chunks += 1;
        }
        assert_eq!(chunks, 3);
        let conns: Vec<Option<usize>> = (0..10).map(|i| conn(&t, i)).collect();
        assert_eq!(
            conns,
            [
                Some(250),
                Some(251),
                Some(252),
                Some(253),
                Some(254),
                None,
                Some(256),
                Some(257),
                None,
                Some(259)
            ]
        );
        // The next packet records the connection it uses.
        t.lookup_or_insert_via(1, &udp_key(5, 0), 1, 100, 3)
            .unwrap();
        assert_eq!(conn(&t, 5), Some(3));
        // A freed slot's link is the free list, not a connection.
        assert!(t.remove(&udp_key(9, 0).key));
        assert_eq!(t.forget_connections(0, 100, |_| true), None);
        t.check_invariants();
        assert_eq!(conn(&t, 0), None);
    }

    #[test]
    fn top_flows_by_bytes() {
        let mut t = table(10, None);
        for i in 0..10u32 {
            t.lookup_or_insert(0, &udp_key(i, 0), 1, u64::from(i) * 100)
                .unwrap();
        }
        let top = t.top_by_bytes(0, 3);
        let bytes: Vec<u64> = top.iter().map(FlowInfo::total_bytes).collect();
        assert_eq!(bytes, [900, 800, 700]);
        assert_eq!(t.top_by_bytes(0, 50).len(), 10);
        // Any n: memory is not reserved for it (this overflowed).
        assert_eq!(t.top_by_bytes(0, usize::MAX).len(), 10);
        assert!(t.top_by_bytes(0, 0).is_empty());
        assert_eq!(t.iter(0).count(), 10);
        assert_eq!(t.iter(31 * S).count(), 0, "expired flows are not shown");
        t.clear();
        assert!(t.is_empty());
        assert_eq!(t.iter(0).count(), 0);
        t.check_invariants();
    }

    #[test]
    fn workers_are_spread_evenly() {
        let workers = 4;
        let mut count = [0usize; 4];
        for i in 0..40_000u32 {
            let k = udp_key(i % 200, i / 200);
            let w = worker_of(&k.key, workers);
            count[w] += 1;
            let back = PacketKey {
                from: k.from.other(),
                ..k
            };
            assert_eq!(worker_of(&back.key, workers), w);
        }
        for c in count {
            assert!((9_000..11_000).contains(&c), "{count:?}");
        }
        assert_eq!(worker_of(&udp_key(0, 0).key, 0), 0);
        assert_eq!(worker_of(&udp_key(0, 0).key, 1), 0);
    }

    /// Ports of one host pair, sequential addresses: no long probe runs in the index.
    #[test]
    fn the_hash_spreads_regular_keys() {
        let n = 100_000usize;
        for keys in [
            (0..n as u32)
                .map(|i| {
                    PacketKey::new(
                        4,
                        PROTO_TCP,
                        (0x0a01_000a, (i % 60_000) as u16),
                        (0x0a02_000a + (i / 60_000) as u128, 443),
                        0,
                    )
                })
                .collect::<Vec<_>>(),
            (0..n as u32).map(|i| udp_key(i, 0)).collect(),
            (0..n as u32)
                .map(|i| {
                    PacketKey::new(6, PROTO_UDP, (A6 + (u128::from(i) << 64), 53), (B6, 53), 0)
                })
                .collect(),
        ] {
            let mut t = table(n, None);
            for k in &keys {
                t.lookup_or_insert(0, k, 1, 1).unwrap();
            }
            let mut longest = 0;
            let mut total = 0;
            for k in &keys {
                let h32 = t.h32(&k.key);
                let (b, _) = t.find(h32, &k.key).unwrap();
                let d = b.wrapping_sub(h32 as usize & t.mask) & t.mask;
                longest = longest.max(d);
                total += d;
            }
            // Linear probing at load 0.38: about 0.3 on average, a few dozen at worst.
            assert!(
                (total as f64 / n as f64) < 0.6,
                "mean {}",
                total as f64 / n as f64
            );
            assert!(longest < 64, "longest {longest}");
        }
    }

    // ----- The table against a model --------------------------------------------------------

    #[derive(Debug, Clone)]
    struct MFlow {
        initiator: Side,
        packets: [u64; 2],
        bytes: [u64; 2],
        first: u64,
        last: u64,
        syn: bool,
        replied: bool,
        fin: [bool; 2],
        rst: bool,
    }

    impl MFlow {
        fn new(initiator: Side, now: u64) -> MFlow {
            MFlow {
                initiator,
                packets: [0; 2],
                bytes: [0; 2],
                first: now,
                last: now,
                syn: false,
                replied: false,
                fin: [false; 2],
                rst: false,
            }
        }

        fn state(&self, proto: u8) -> FlowState {
            match proto {
                PROTO_TCP if self.fin[0] || self.fin[1] || self.rst => FlowState::TcpClosing,
                PROTO_TCP if self.replied => FlowState::TcpEstablished,
                PROTO_TCP => FlowState::TcpHandshake,
                PROTO_UDP if self.replied => FlowState::UdpStream,
                PROTO_UDP => FlowState::Udp,
                PROTO_ICMP => FlowState::Icmp,
                _ => FlowState::Other,
            }
        }

        fn timeout(&self, proto: u8, t: &FlowTimeouts) -> u64 {
            let d = match self.state(proto) {
                FlowState::TcpHandshake => t.tcp_handshake,
                FlowState::TcpEstablished => t.tcp_established,
                FlowState::TcpClosing => t.tcp_closing,
                FlowState::Udp => t.udp,
                FlowState::UdpStream => t.udp_stream,
                FlowState::Icmp => t.icmp,
                FlowState::Other => t.other,
            };
            d.as_nanos() as u64
        }

        fn expired(&self, proto: u8, t: &FlowTimeouts, now: u64) -> bool {
            now.saturating_sub(self.last) >= self.timeout(proto, t)
        }
    }

    /// A bucket of whole tokens in token-nanoseconds, refilled at `rate` per second.
    #[derive(Debug)]
    struct MBucket {
        rate: u64,
        burst: u64,
        tokens: u128,
        last: u64,
    }

    impl MBucket {
        fn refill(&mut self, now: u64) {
            if now > self.last {
                let cap = u128::from(self.burst) * u128::from(S);
                self.tokens =
                    (self.tokens + u128::from(now - self.last) * u128::from(self.rate)).min(cap);
                self.last = now;
            }
        }
    }

    #[derive(Debug)]
    struct Model {
        flows: HashMap<FlowKey, MFlow>,
        max: usize,
        rate: Option<MBucket>,
        t: FlowTimeouts,
        stats: FlowStats,
    }

    impl Model {
        fn bucket(rate: u64, now: u64) -> MBucket {
            let rate = rate.max(1);
            let burst = new_flow_burst(rate);
            MBucket {
                rate,
                burst,
                tokens: u128::from(burst) * u128::from(S),
                last: now,
            }
        }

        fn set_limits(&mut self, now: u64, max: usize, rate: Option<u64>) {
            self.max = max;
            self.rate = match (self.rate.take(), rate) {
                (Some(mut b), Some(r)) => {
                    b.refill(now);
                    b.rate = r.max(1);
                    b.burst = new_flow_burst(r);
                    b.tokens = b.tokens.min(u128::from(b.burst) * u128::from(S));
                    Some(b)
                }
                (None, Some(r)) => Some(Model::bucket(r, now)),
                (_, None) => None,
            };
        }

        fn packet(
            &mut self,
            now: u64,
            pk: &PacketKey,
            packets: u64,
            bytes: u64,
        ) -> Result<(bool, FlowDir), Refused> {
            let proto = pk.key.proto();
            if self
                .flows
                .get(&pk.key)
                .is_some_and(|f| f.expired(proto, &self.t, now))
            {
                self.flows.remove(&pk.key);
                self.stats.expired += 1;
            }
            let mut is_new = false;
            if !self.flows.contains_key(&pk.key) {
                if self.flows.len() >= self.max {
                    self.stats.refused_full += packets;
                    return Err(Refused::TableFull);
                }
                if let Some(b) = &mut self.rate {
                    b.refill(now);
                    if b.tokens < u128::from(S) {
                        self.stats.refused_rate += packets;
                        return Err(Refused::NewFlowRate);
                    }
                    b.tokens -= u128::from(S);
                }
                self.flows.insert(pk.key, MFlow::new(pk.from, now));
                self.stats.created += 1;
                is_new = true;
            }
            let f = self.flows.get_mut(&pk.key).unwrap();
            let flags = pk.tcp_flags;
            let syn_only = flags & (FLAG_SYN | FLAG_ACK | FLAG_RST) == FLAG_SYN;
            if proto == PROTO_TCP && (f.fin[0] || f.fin[1] || f.rst) && syn_only {
                *f = MFlow::new(pk.from, now);
            }
            let reply = pk.from != f.initiator;
            let i = usize::from(reply);
            f.packets[i] += packets;
            f.bytes[i] += bytes;
            f.last = f.last.max(now);
            if proto == PROTO_TCP {
                f.syn |= !reply && flags & FLAG_SYN != 0;
                f.rst |= flags & FLAG_RST != 0;
                f.replied |= reply && flags & FLAG_RST == 0;
                f.fin[i] |= flags & FLAG_FIN != 0;
            } else {
                f.replied |= reply;
            }
            let dir = if reply {
                FlowDir::Reply
            } else {
                FlowDir::Original
            };
            Ok((is_new, dir))
        }
    }

    #[derive(Debug, Clone)]
    enum Op {
        Packet {
            src: usize,
            dst: usize,
            proto: u8,
            flags: u8,
            packets: u64,
            bytes: u64,
        },
        Advance(u64),
        ExpireAll,
        ExpireSome(usize),
        Remove(usize, usize, u8),
        SetLimits(usize, Option<u64>),
    }

    const PROTOS: [u8; 4] = [PROTO_TCP, PROTO_UDP, PROTO_ICMP, GRE];
    const ENDPOINTS: usize = 6;

    fn endpoint(i: usize) -> (u128, u16) {
        (0x0a00_0001 + (i / 2) as u128, 1000 + (i % 2) as u16)
    }

    fn mkey(src: usize, dst: usize, proto: u8, flags: u8) -> PacketKey {
        let (mut s, mut d) = (endpoint(src), endpoint(dst));
        if proto != PROTO_TCP && proto != PROTO_UDP {
            s.1 = 0;
            d.1 = 0;
        }
        PacketKey::new(4, proto, s, d, if proto == PROTO_TCP { flags } else { 0 })
    }

    fn op() -> impl Strategy<Value = Op> {
        let dts = prop::sample::select(vec![
            0u64,
            1_000_000,
            100_000_000,
            S,
            10 * S,
            29 * S,
            30 * S,
            31 * S,
            60 * S,
            119 * S,
            121 * S,
            301 * S,
        ]);
        let flags = prop::sample::select(vec![
            FLAG_SYN,
            FLAG_SYN | FLAG_ACK,
            FLAG_ACK,
            FLAG_ACK | FLAG_PSH,
            FLAG_FIN | FLAG_ACK,
            FLAG_RST,
            FLAG_RST | FLAG_ACK,
            0,
        ]);
        prop_oneof![
            8 => (0..ENDPOINTS, 0..ENDPOINTS, prop::sample::select(PROTOS.to_vec()), flags,
                  1u64..4, 0u64..70_000)
                .prop_map(|(src, dst, proto, flags, packets, bytes)| Op::Packet {
                    src, dst, proto, flags, packets, bytes
                }),
            4 => dts.prop_map(Op::Advance),
            1 => Just(Op::ExpireAll),
            2 => (1usize..8).prop_map(Op::ExpireSome),
            1 => (0..ENDPOINTS, 0..ENDPOINTS, prop::sample::select(PROTOS.to_vec()))
                .prop_map(|(a, b, p)| Op::Remove(a, b, p)),
            1 => (0usize..12, prop::option::of(1u64..20)).prop_map(|(m, r)| Op::SetLimits(m, r)),
        ]
    }

    fn all_keys() -> Vec<FlowKey> {
        let mut keys = Vec::new();
        for a in 0..ENDPOINTS {
            for b in 0..ENDPOINTS {
                for p in PROTOS {
                    keys.push(mkey(a, b, p, 0).key);
                }
            }
        }
        keys
    }

    fn compare(t: &FlowTable, m: &Model, now: u64, keys: &[FlowKey]) {
        t.check_invariants();
        assert_eq!(t.len(), m.flows.len());
        assert_eq!(t.stats(), m.stats);
        for k in keys {
            match m.flows.get(k) {
                None => assert!(!t.holds(k), "{k} held"),
                Some(f) if f.expired(k.proto(), &m.t, now) => {
                    assert!(t.holds(k), "{k} dropped before its sweep");
                    assert_eq!(t.get(now, k), None, "{k}");
                }
                Some(f) => {
                    let i = t.get(now, k).unwrap_or_else(|| panic!("{k} missing"));
                    assert_eq!(i.initiator, f.initiator, "{k}");
                    assert_eq!((i.packets, i.bytes), (f.packets, f.bytes), "{k}");
                    assert_eq!((i.first_seen_ns, i.last_seen_ns), (f.first, f.last), "{k}");
                    assert_eq!(i.state, f.state(k.proto()), "{k}");
                    assert_eq!(i.expires_at_ns, f.last + f.timeout(k.proto(), &m.t));
                    assert_eq!((i.syn_seen, i.fin_seen, i.rst_seen), (f.syn, f.fin, f.rst));
                }
            }
        }
    }

    proptest! {
        /// Any sequence of packets, clock steps, sweeps, removals and resizes: the table agrees
        /// with the model on every answer (new flow, direction, refusal and its reason), every
        /// flow's counters, state and expiry, its length and its stats; its structure stays
        /// sound and it never holds more than its capacity.
        #[test]
        fn table_matches_the_model(
            max in 0usize..10,
            rate in prop::option::of(1u64..20),
            ops in prop::collection::vec(op(), 1..250),
        ) {
            let timeouts = FlowTimeouts::default();
            let hasher = FlowHasher::with_seed(max as u64);
            let mut t = FlowTable::new(limits(max, rate), timeouts, hasher, 0);
            let mut m = Model {
                flows: HashMap::new(),
                max,
                rate: rate.map(|r| Model::bucket(r, 0)),
                t: timeouts,
                stats: FlowStats::default(),
            };
            let keys = all_keys();
            let mut now = 0u64;
            let mut peak = 0;
            for op in ops {
                match op {
                    Op::Packet { src, dst, proto, flags, packets, bytes } => {
                        let pk = mkey(src, dst, proto, flags);
                        let got = t
                            .lookup_or_insert(now, &pk, packets, bytes)
                            .map(|f| (f.is_new(), f.dir()));
                        let want = m.packet(now, &pk, packets, bytes);
                        prop_assert_eq!(got, want, "{:?}", pk);
                    }
                    Op::Advance(dt) => now += dt,
                    Op::ExpireAll => {
                        let n = t.expire(now, usize::MAX);
                        let before = m.flows.len();
                        let (tt, nn) = (m.t, now);
                        m.flows.retain(|k, f| !f.expired(k.proto(), &tt, nn));
                        prop_assert_eq!(n, before - m.flows.len());
                        m.stats.expired += n as u64;
                    }
                    Op::ExpireSome(budget) => {
                        let n = t.expire(now, budget);
                        prop_assert!(n <= budget);
                        let mut gone = 0;
                        let held: Vec<FlowKey> = m.flows.keys().copied().collect();
                        for k in held {
                            if !t.holds(&k) {
                                let expired = m.flows[&k].expired(k.proto(), &m.t, now);
                                prop_assert!(expired, "{} swept alive", k);
                                m.flows.remove(&k);
                                gone += 1;
                            }
                        }
                        prop_assert_eq!(n, gone);
                        m.stats.expired += n as u64;
                    }
                    Op::Remove(a, b, p) => {
                        let k = mkey(a, b, p, 0).key;
                        let was = m.flows.remove(&k).is_some();
                        if was {
                            m.stats.removed += 1;
                        }
                        prop_assert_eq!(t.remove(&k), was);
                    }
                    Op::SetLimits(max, rate) => {
                        t.set_limits(now, limits(max, rate));
                        m.set_limits(now, max, rate);
                    }
                }
                compare(&t, &m, now, &keys);
                peak = peak.max(t.len());
                prop_assert!(t.len() <= t.capacity());
            }
            prop_assert!(peak <= t.capacity());
        }

        /// Whatever the bytes, key extraction does not panic (through `IpSummary::parse`, and
        /// with any summary at all).
        #[test]
        fn classify_never_panics(
            bytes in prop::collection::vec(any::<u8>(), 0..160),
            version in prop::sample::select(vec![4u8, 6]),
            proto in any::<u8>(),
            l4_offset in 0usize..200,
            total_len in 0usize..200,
            later in any::<bool>(),
        ) {
            let mut b = bytes.clone();
            if let Some(first) = b.first_mut() {
                *first = (version << 4) | (*first & 0x0f);
            }
            if let Ok(s) = IpSummary::parse(&b, false) {
                let c = classify(&b, &s);
                let _ = worker_of(c.key(), 3);
            }
            let s = IpSummary {
                version,
                src: 1,
                dst: 2,
                header_len: 20,
                total_len,
                ttl: 1,
                proto,
                l4_offset,
                dont_fragment: false,
                is_fragment: later,
                is_later_fragment: later,
            };
            let _ = classify(&bytes, &s);
            for proto in [PROTO_TCP, PROTO_UDP, PROTO_ICMP, PROTO_ICMPV6] {
                let _ = classify(&bytes, &IpSummary { proto, ..s });
            }
        }

        /// A packet and its answer have one key, opposite sides, one worker; an ICMP error
        /// about the packet has the key too, and the answer's side.
        #[test]
        fn answers_and_errors_share_the_key(
            is_v6 in any::<bool>(),
            kind in 0u8..4,
            a in any::<u128>(),
            b in any::<u128>(),
            sp in any::<u16>(),
            dp in any::<u16>(),
            flags in any::<u8>(),
        ) {
            let (a, b) = if is_v6 { (a, b) } else { (a & 0xffff_ffff, b & 0xffff_ffff) };
            prop_assume!(a != b);
            let (proto, there, back) = match kind {
                0 => (PROTO_TCP, tcp(sp, dp, flags), tcp(dp, sp, flags)),
                1 => (PROTO_UDP, udp(sp, dp), udp(dp, sp)),
                2 if is_v6 => (PROTO_ICMPV6, icmp(128, sp, b"abc"), icmp(129, sp, b"abc")),
                2 => (PROTO_ICMP, icmp(8, sp, b"abc"), icmp(0, sp, b"abc")),
                _ => (GRE, vec![0; 8], vec![1; 8]),
            };
            let pkt = |s: u128, d: u128, l4: &[u8], proto: u8| {
                if is_v6 {
                    v6(proto, s, d, l4)
                } else {
                    v4(proto, (s as u32).to_be_bytes(), (d as u32).to_be_bytes(), l4)
                }
            };
            let p = pkt(a, b, &there, proto);
            let t = flow_key(&p);
            let r = flow_key(&pkt(b, a, &back, proto));
            prop_assert_eq!(t.key, r.key);
            prop_assert_ne!(t.from, r.from);
            prop_assert_eq!(t.key.endpoint(t.from).0, a);
            prop_assert_eq!(t.key.endpoint(r.from).0, b);
            prop_assert_eq!(worker_of(&t.key, 5), worker_of(&r.key, 5));
            let h = FlowHasher::with_seed(sp.into());
            prop_assert_eq!(h.hash(&t.key), h.hash(&r.key));
            if kind < 2 {
                prop_assert_eq!(t.key.endpoint(t.from).1, sp);
                prop_assert_eq!(t.key.endpoint(r.from).1, dp);
            }
            // An error from a third party back to the sender.
            let (err_ty, err_proto) = if is_v6 { (1, PROTO_ICMPV6) } else { (3, PROTO_ICMP) };
            let e = classified(&pkt(a ^ 1 ^ b, a, &icmp(err_ty, 0, &p), err_proto));
            let want = PacketKey { from: r.from, tcp_flags: 0, ..t };
            prop_assert_eq!(e, Classified::IcmpError(want));
        }
    }
}
