//! The gateway pipeline: forwarding between the VNet side and the connections of the VNet's
//! gateways: ExpressRoute circuits (plain) and VPN tunnels (sealed into ESP by the caller after
//! the verdict, see `causeway_esp`).
//!
//! Policy, in the order it is applied to every packet (the first rule that decides wins):
//!
//! Egress (VNet side -> connection):
//! 1. Parse and validate (version, lengths, IPv4 header checksum, virtio-net GSO fields):
//!    else drop `malformed_*`.
//! 2. Link-local, multicast or broadcast source or destination: drop `link_local`.
//! 3. Source outside the VNet address space: drop `spoofed`.
//! 4. Destination is the gateway's own address: answer an echo request (`echo_replies`), else
//!    drop `to_gateway`.
//! 5. Longest prefix match over the connections that are up; among equal prefixes a circuit
//!    wins over a tunnel (the backup), then the highest `routing_weight`. No route: ICMP
//!    destination unreachable from the gateway, drop `no_route`.
//! 6. TTL / hop limit 1 or 0: ICMP time exceeded, drop `ttl_expired`.
//! 7. Wire packets larger than the connection's MTU (a circuit's interface MTU, a tunnel's
//!    `mtu`, 1400 by default): IPv4 with DF clear is fragmented (before encryption on a tunnel);
//!    otherwise ICMP fragmentation needed / packet too big with the MTU, drop `too_big`.
//! 8. Tunnels: the MSS option of TCP SYNs is clamped to the tunnel's `mss_clamp`.
//! 9. Shapers for this direction: the tunnel's per-tunnel cap (VPN SKUs), then the gateway's
//!    SKU (bits/s, packets/s). The packet leaves at once when tokens are there, or is held (in
//!    order) until they are, up to the shaper's maximum delay; beyond that it is dropped,
//!    `shaped_tunnel_cap`, `shaped_bps` or `shaped_pps`.
//! 10. The gateway's flow table ([`crate::flow`], one per gateway, shared by both directions):
//!     a packet of a flow the table holds is counted on it (a super-packet as its wire packets,
//!     a fragmented packet as its fragments); a packet that would start a flow is dropped when
//!     the table holds its limit of concurrent flows (`flow_table_full`) or above the new flows
//!     per second (`new_flow_rate`). An ICMP error about a flow the table holds is counted on
//!     that flow and never refused; one about no held flow (a forged quote, a flow gone) is an
//!     ordinary ICMP packet of its own addresses, within the limits like any. A non-first
//!     fragment never starts a flow and is never refused (its first fragment was decided on):
//!     it is counted on the flow of its addresses and protocol if one is held. The shapers only
//!     take their tokens once the flow table admitted the packet, so a refused packet costs no
//!     rate.
//! 11. TTL / hop limit decremented (IPv4 checksum updated incrementally), forwarded.
//!
//! Ingress (connection -> VNet side; for a tunnel, the inner packet after ESP was opened) is
//! the mirror image, with rule 3 reading "source outside the prefixes of the connection it came
//! from" (for a tunnel: a spoofed inner source) and a rule 3b: destination outside the VNet
//! address space, drop `dst_outside_vnet` (no transit between on-premises sites through the
//! gateway). ICMP errors about ingress packets go back out the connection they came from.
//!
//! A TUN super-packet (virtio-net GSO) is validated, checked against the MTU by its segment size,
//! shaped and counted as the wire packets it carries, and forwarded whole.
//!
//! ICMP errors are rate limited (RFC 1812 4.3.2.8); an error not sent is counted in
//! `icmp_rate_limited`, and the packet is dropped with its reason either way.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use causeway_wire::icmp;
use causeway_wire::ip::{self, IpSummary, PROTO_TCP, PROTO_UDP};
use causeway_wire::tcp;
use causeway_wire::virtio::{self, VirtioHdr};
use causeway_wire::Malformed;

use crate::counters::{DirCounters, DropReason};
use crate::flow::{self, Classified, FlowTable, Refused};
use crate::prefix::{Family, Prefix};
use crate::route::{Route, RouteTable, PREFER_CIRCUIT, PREFER_TUNNEL};
use crate::shaper::{BurstPolicy, Shaped, Shaper, TokenBucket};

/// Bytes a reply buffer must hold (the largest ICMP error or echo reply the gateway builds).
pub const REPLY_BUF_LEN: usize = 65_536;

/// ICMP errors per second the gateway originates per direction, and the burst.
pub const ICMP_ERRORS_PER_SEC: u64 = 1_000;
pub const ICMP_ERRORS_BURST: u64 = 200;

/// What the VNet looks like to the pipeline.
#[derive(Debug, Clone)]
pub struct Vnet {
    pub address_space: Vec<Prefix>,
    /// The gateway's own IPv4 address (the source of the ICMP errors it sends).
    pub gateway_v4: [u8; 4],
    /// The gateway's own IPv6 address, when the VNet has IPv6.
    pub gateway_v6: Option<[u8; 16]>,
    /// MTU of the VNet-side interface (ingress packets larger than this are too big).
    pub mtu: usize,
}

impl Vnet {
    #[inline]
    fn contains(&self, family: Family, addr: u128) -> bool {
        self.address_space
            .iter()
            .any(|p| p.contains_bits(family, addr))
    }

    #[inline]
    fn is_gateway(&self, family: Family, addr: u128) -> bool {
        match family {
            Family::V4 => addr == u128::from(u32::from_be_bytes(self.gateway_v4)),
            Family::V6 => self
                .gateway_v6
                .is_some_and(|g| addr == u128::from_be_bytes(g)),
        }
    }
}

/// Counters of one gateway or connection, both directions.
#[derive(Debug, Default)]
pub struct PathCounters {
    pub egress: DirCounters,
    pub ingress: DirCounters,
}

/// What makes a connection a tunnel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TunnelParams {
    /// TCP MSS clamp for SYNs in both directions (None: off).
    pub mss_clamp: Option<u16>,
    /// Per-tunnel cap of the VPN SKU, bits per second per direction (None: no cap).
    pub cap_bits_per_sec: Option<u64>,
}

/// A connection as the pipeline sees it: a circuit (`tunnel: None`) or a tunnel.
#[derive(Debug, Clone)]
pub struct Connection {
    pub name: String,
    /// Index of its gateway in the spec's gateway list.
    pub gateway: usize,
    pub tunnel: Option<TunnelParams>,
    pub prefixes: Vec<Prefix>,
    pub routing_weight: u16,
    /// Egress MTU: the circuit interface's, or the tunnel MTU for inner packets.
    pub mtu: usize,
    /// False while the connection is down: its routes are skipped.
    pub up: Arc<AtomicBool>,
    pub counters: Arc<PathCounters>,
}

/// A gateway's flow table, shared by the pipeline halves of both directions (so that both
/// directions of a flow are one entry) and read by the control thread. Each half locks it
/// once per packet it is about to forward (uncontended: one worker per direction, tens of ns;
/// see docs/DECISIONS.md) and once per [`Egress::expire_flows`] call.
pub type SharedFlows = Arc<Mutex<FlowTable>>;

/// Locks a gateway's flow table (a worker that panicked while holding it left it consistent:
/// every table operation completes or changes nothing before it can panic).
pub fn lock_flows(f: &Mutex<FlowTable>) -> std::sync::MutexGuard<'_, FlowTable> {
    f.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A gateway's limits and counters.
#[derive(Debug, Clone)]
pub struct GatewaySpec {
    pub name: String,
    pub bits_per_sec: u64,
    pub packets_per_sec: Option<u64>,
    pub counters: Arc<PathCounters>,
    /// The gateway's flow table (None: flows are not tracked, no flow limits).
    pub flows: Option<SharedFlows>,
}

impl From<Refused> for DropReason {
    fn from(r: Refused) -> Self {
        match r {
            Refused::TableFull => DropReason::FlowTableFull,
            Refused::NewFlowRate => DropReason::NewFlowRate,
        }
    }
}

/// Which of `workers` workers must handle `pkt` (an IP packet) so that every packet of its
/// flow, in both directions, and the ICMP errors about it, go to the same one: the
/// direction-independent flow key hashed by [`flow::worker_of`]. `None` for a packet that does
/// not parse.
///
/// Flow affinity in the daemon today: each input (the VNet TUN, the circuit TUNs, the
/// underlay sockets) is read by exactly one worker, which forwards in arrival order (the
/// shaper's held packets too), so the packets of one flow in one direction are never reordered;
/// both directions update the one entry of the gateway's shared table. A data plane with
/// several workers per direction (multi-queue TUNs) must steer by this function.
pub fn flow_worker(pkt: &[u8], workers: usize) -> Option<usize> {
    let s = IpSummary::parse(pkt, false).ok()?;
    Some(flow::worker_of(flow::classify(pkt, &s).key(), workers))
}

/// Rule 10: counts the packet on its flow, or says why a new flow is refused.
#[inline]
fn track_flow(
    flows: &Mutex<FlowTable>,
    now_ns: u64,
    pkt: &[u8],
    s: &IpSummary,
    cost: &WireCost,
    conn: usize,
) -> Result<(), DropReason> {
    let c = flow::classify(pkt, s);
    let mut t = lock_flows(flows);
    match c {
        Classified::Flow(pk) => t
            .lookup_or_insert_via(now_ns, &pk, cost.packets, cost.bytes, conn)
            .map(|_| ())
            .map_err(DropReason::from),
        Classified::IcmpError(pk) => {
            if t.lookup_related(now_ns, &pk, cost.packets, cost.bytes)
                .is_some()
            {
                return Ok(());
            }
            // About no flow held (a forged quote, or a flow gone): an ordinary ICMP packet,
            // within the limits like any other.
            t.lookup_or_insert_via(
                now_ns,
                &flow::unported_key(s),
                cost.packets,
                cost.bytes,
                conn,
            )
            .map(|_| ())
            .map_err(DropReason::from)
        }
        Classified::LaterFragment(pk) => {
            // Never refused: the first fragment decided (counted on a flow of its addresses
            // and protocol when one is held).
            let _ = t.lookup_existing(now_ns, &pk, cost.packets, cost.bytes);
            Ok(())
        }
    }
}

/// Everything needed to build both halves of the pipeline.
#[derive(Debug, Clone)]
pub struct PipelineSpec {
    pub vnet: Arc<Vnet>,
    pub gateways: Vec<GatewaySpec>,
    pub connections: Vec<Connection>,
    pub burst: BurstPolicy,
    /// Drops on the VNet side before a connection is chosen.
    pub vnet_counters: Arc<PathCounters>,
}

/// What to do with one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Send the packet (first `len` bytes, virtio header unchanged) to connection `conn`
    /// (egress) or to the VNet side (ingress, `conn` is the circuit it came from), not before
    /// `at` (the shaper's release time, in the `now` clock; `at <= now` means at once). Packets
    /// of one direction must leave in the order they were processed.
    Forward { conn: usize, len: usize, at: u64 },
    /// Fragment the packet (already admitted by the shaper, TTL already decremented) to `mtu`
    /// and send the fragments as for `Forward`.
    Fragment {
        conn: usize,
        len: usize,
        mtu: usize,
        at: u64,
    },
    /// Send the first `len` bytes of the reply buffer (an ICMP error or echo reply, no offload)
    /// back out of the interface the packet came in on; the packet itself is consumed.
    Reply { len: usize },
    /// Drop the packet; it has been counted.
    Drop(DropReason),
}

/// Cost of a packet in wire terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WireCost {
    pub packets: u64,
    pub bytes: u64,
    /// Largest wire packet it becomes (the segment size of a super-packet).
    pub max_packet: usize,
    pub is_super: bool,
}

/// Checks a virtio-net header against the packet and works out what the packet costs on the
/// wire: a super-packet is `ceil(payload / gso_size)` segments, each carrying the headers.
pub fn wire_cost(v: &VirtioHdr, pkt: &[u8], s: &IpSummary) -> Result<WireCost, Malformed> {
    let total = s.total_len;
    if v.needs_csum() && usize::from(v.csum_start) < s.l4_offset {
        // A partial checksum that starts inside the IP header: completing it (before
        // fragmenting, or before sealing into a tunnel) would overwrite the header. The kernel
        // never sends one (its csum_start is the transport header's offset).
        return Err(Malformed::BadVirtioHeader);
    }
    if !v.is_gso() {
        if v.needs_csum() && usize::from(v.csum_start) + usize::from(v.csum_offset) + 2 > total {
            return Err(Malformed::BadVirtioHeader);
        }
        return Ok(WireCost {
            packets: 1,
            bytes: total as u64,
            max_packet: total,
            is_super: false,
        });
    }
    let l4_len = match (v.gso_kind(), s.version, s.proto) {
        (virtio::GSO_TCPV4, 4, PROTO_TCP) | (virtio::GSO_TCPV6, 6, PROTO_TCP) => {
            let off = s.l4_offset + 12;
            let doff = usize::from(*pkt.get(off).ok_or(Malformed::BadVirtioHeader)? >> 4) * 4;
            if doff < 20 {
                return Err(Malformed::BadVirtioHeader);
            }
            doff
        }
        (virtio::GSO_UDP_L4, _, PROTO_UDP) => 8,
        _ => return Err(Malformed::BadVirtioHeader),
    };
    let hdr = s.l4_offset + l4_len;
    let gso = usize::from(v.gso_size);
    if gso == 0 || hdr > total || s.is_fragment {
        return Err(Malformed::BadVirtioHeader);
    }
    let payload = total - hdr;
    let segs = payload.div_ceil(gso).max(1);
    Ok(WireCost {
        packets: segs as u64,
        bytes: (total + (segs - 1) * hdr) as u64,
        max_packet: hdr + gso.min(payload),
        is_super: segs > 1,
    })
}

fn is_link_local(family: Family, a: u128) -> bool {
    match family {
        Family::V4 => {
            let a = a as u32;
            let first = (a >> 24) as u8;
            a >> 16 == 0xa9fe // 169.254/16
                || (224..=239).contains(&first)
                || a == u32::MAX
                || a == 0
        }
        Family::V6 => {
            let top = (a >> 112) as u16;
            top & 0xffc0 == 0xfe80 || top & 0xff00 == 0xff00 || a == 0
        }
    }
}

/// A gateway's limits as the control thread sets them on a live resize, read by the workers:
/// each worker applies a new `generation` to its own shapers (no lock on the packet path: one
/// relaxed load per packet).
#[derive(Debug, Default)]
pub struct LiveLimits {
    generation: AtomicU64,
    bits_per_sec: AtomicU64,
    /// 0: no packets/s limit.
    packets_per_sec: AtomicU64,
    /// 0: no per-tunnel cap.
    tunnel_cap: AtomicU64,
}

impl LiveLimits {
    /// Publishes new limits (the resize is applied by each worker at its next packet).
    pub fn set(&self, bits_per_sec: u64, packets_per_sec: Option<u64>, tunnel_cap: Option<u64>) {
        self.bits_per_sec.store(bits_per_sec, Ordering::Relaxed);
        self.packets_per_sec
            .store(packets_per_sec.unwrap_or(0), Ordering::Relaxed);
        self.tunnel_cap
            .store(tunnel_cap.unwrap_or(0), Ordering::Release);
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    fn get(&self) -> (u64, Option<u64>, Option<u64>) {
        let nz = |v: u64| (v != 0).then_some(v);
        (
            self.bits_per_sec.load(Ordering::Relaxed),
            nz(self.packets_per_sec.load(Ordering::Relaxed)),
            nz(self.tunnel_cap.load(Ordering::Relaxed)),
        )
    }
}

/// One direction of one gateway.
struct GatewayHalf {
    shaper: Shaper,
    counters: Arc<PathCounters>,
    flows: Option<SharedFlows>,
}

/// Which half a [`Common`] serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dir {
    Egress,
    Ingress,
}

/// State of one direction: shapers, ICMP limiter, the connections.
struct Common {
    dir: Dir,
    vnet: Arc<Vnet>,
    icmp_limit: TokenBucket,
    gateways: Vec<GatewayHalf>,
    connections: Vec<Connection>,
    /// Per-tunnel cap shapers, by connection index.
    caps: Vec<Option<Shaper>>,
    burst: BurstPolicy,
    /// The live-limit generation last applied, by gateway.
    seen: Vec<u64>,
}

enum Error {
    Unreachable,
    TimeExceeded,
    TooBig(usize),
}

impl Common {
    /// Applies the gateways' live limits whose generation moved since this half last looked
    /// (a SKU resize under traffic): the shapers keep their tokens, capped to the new burst.
    fn apply_live(&mut self, now_ns: u64, live: &[LiveLimits]) {
        for (gi, l) in live.iter().enumerate() {
            let g = l.generation();
            if self.seen.get(gi).copied().unwrap_or(0) == g {
                continue;
            }
            let (bits, pps, cap) = l.get();
            if let Some(half) = self.gateways.get_mut(gi) {
                half.shaper.set_limits(now_ns, bits, pps);
            }
            for (ci, c) in self.connections.iter().enumerate() {
                if c.gateway != gi || c.tunnel.is_none() {
                    continue;
                }
                self.caps[ci] = match (self.caps[ci].take(), cap) {
                    (Some(mut s), Some(b)) => {
                        s.set_limits(now_ns, b, None);
                        Some(s)
                    }
                    (None, Some(b)) => Some(Shaper::new(b, None, self.burst, now_ns)),
                    (_, None) => None,
                };
            }
            if self.seen.len() <= gi {
                self.seen.resize(gi + 1, 0);
            }
            self.seen[gi] = g;
        }
    }

    /// Counts the drop of `pkt` (`packets` wire packets) for `reason` and builds an ICMP error
    /// about it into `reply`; returns the verdict (a reply, or the drop alone when no error may
    /// or can be sent).
    #[allow(clippy::too_many_arguments)]
    fn icmp_error(
        &mut self,
        now_ns: u64,
        pkt: &[u8],
        s: &IpSummary,
        kind: Error,
        reason: DropReason,
        packets: u64,
        reply: &mut [u8],
        dir: &[&DirCounters],
    ) -> Verdict {
        for c in dir {
            c.drop(reason, packets);
        }
        if !icmp::may_send_error_about(pkt, s) {
            return Verdict::Drop(reason);
        }
        let len = if s.version == 4 {
            let (ty, code, rest) = match kind {
                Error::Unreachable => (icmp::V4_DEST_UNREACHABLE, icmp::V4_CODE_NET_UNREACHABLE, 0),
                Error::TimeExceeded => (icmp::V4_TIME_EXCEEDED, 0, 0),
                Error::TooBig(mtu) => (
                    icmp::V4_DEST_UNREACHABLE,
                    icmp::V4_CODE_FRAG_NEEDED,
                    mtu as u32,
                ),
            };
            if !self.icmp_limit.admit(now_ns, 1) {
                dir[0].icmp_rate_limited.add(1);
                return Verdict::Drop(reason);
            }
            icmp::v4_error(pkt, self.vnet.gateway_v4, ty, code, rest, reply)
        } else {
            let Some(from) = self.vnet.gateway_v6 else {
                return Verdict::Drop(reason);
            };
            let (ty, code, rest) = match kind {
                Error::Unreachable => (icmp::V6_DEST_UNREACHABLE, icmp::V6_CODE_NO_ROUTE, 0),
                Error::TimeExceeded => (icmp::V6_TIME_EXCEEDED, 0, 0),
                Error::TooBig(mtu) => (icmp::V6_PACKET_TOO_BIG, 0, mtu as u32),
            };
            if !self.icmp_limit.admit(now_ns, 1) {
                dir[0].icmp_rate_limited.add(1);
                return Verdict::Drop(reason);
            }
            icmp::v6_error(pkt, from, ty, code, rest, reply)
        };
        for c in dir {
            c.icmp_errors_sent.add(1);
        }
        Verdict::Reply { len }
    }

    fn counters(&self, conn: usize) -> [&DirCounters; 2] {
        let c = &self.connections[conn];
        let g = &self.gateways[c.gateway].counters;
        match self.dir {
            Dir::Egress => [&g.egress, &c.counters.egress],
            Dir::Ingress => [&g.ingress, &c.counters.ingress],
        }
    }

    /// Rules 6 to 10, shared by both directions, once the connection is known.
    #[allow(clippy::too_many_arguments)]
    fn finish(
        &mut self,
        now_ns: u64,
        v: &VirtioHdr,
        pkt: &mut [u8],
        s: &IpSummary,
        cost: &WireCost,
        conn: usize,
        reply: &mut [u8],
    ) -> Verdict {
        let out_mtu = match self.dir {
            Dir::Egress => self.connections[conn].mtu,
            Dir::Ingress => self.vnet.mtu,
        };
        let tunnel = self.connections[conn].tunnel;
        if s.ttl <= 1 {
            return self.icmp_error_at(
                now_ns,
                pkt,
                s,
                Error::TimeExceeded,
                DropReason::TtlExpired,
                cost.packets,
                reply,
                conn,
            );
        }
        let mut fragment = false;
        let mut cost = *cost;
        if cost.max_packet > out_mtu {
            let room = (out_mtu.saturating_sub(s.header_len)) & !7;
            if s.version == 4 && !s.dont_fragment && !cost.is_super && room >= 8 {
                let payload = s.total_len - s.header_len;
                let n = payload.div_ceil(room);
                cost.packets = n as u64;
                cost.bytes = (s.total_len + (n - 1) * s.header_len) as u64;
                fragment = true;
            } else {
                return self.icmp_error_at(
                    now_ns,
                    pkt,
                    s,
                    Error::TooBig(out_mtu),
                    DropReason::TooBig,
                    cost.packets,
                    reply,
                    conn,
                );
            }
        }
        if let Some(TunnelParams {
            mss_clamp: Some(mss),
            ..
        }) = tunnel
        {
            // IPv6 headers are 20 bytes longer: keep IPv6 segments inside the tunnel MTU too.
            let mss = if s.version == 6 {
                let room = self.connections[conn].mtu.saturating_sub(60);
                mss.min(u16::try_from(room).unwrap_or(u16::MAX))
            } else {
                mss
            };
            if s.proto == PROTO_TCP && !s.is_fragment {
                if let Some(tcp) = pkt.get_mut(s.l4_offset..s.total_len) {
                    tcp::clamp_mss(tcp, mss, v.needs_csum());
                }
            }
        }
        // Both shapers must admit the packet before either takes tokens.
        let gw = self.connections[conn].gateway;
        let mut at = now_ns;
        let mut refused = None;
        if let Some(cap) = &mut self.caps[conn] {
            match cap.check(now_ns, cost.bytes, cost.packets) {
                Ok(t) => at = at.max(t),
                Err(_) => refused = Some(DropReason::ShapedTunnelCap),
            }
        }
        if refused.is_none() {
            match self.gateways[gw]
                .shaper
                .check(now_ns, cost.bytes, cost.packets)
            {
                Ok(t) => at = at.max(t),
                Err(Shaped::Bps) => refused = Some(DropReason::ShapedBps),
                Err(Shaped::Pps) => refused = Some(DropReason::ShapedPps),
            }
        }
        if refused.is_none() {
            if let Some(flows) = &self.gateways[gw].flows {
                refused = track_flow(flows, now_ns, pkt, s, &cost, conn).err();
            }
        }
        if refused.is_none() {
            if let Some(cap) = &mut self.caps[conn] {
                cap.commit(cost.bytes, cost.packets);
            }
            self.gateways[gw].shaper.commit(cost.bytes, cost.packets);
        }
        let dir = self.counters(conn);
        if let Some(reason) = refused {
            for c in dir {
                c.drop(reason, cost.packets);
            }
            return Verdict::Drop(reason);
        }
        ip::decrement_ttl(pkt, s.version);
        for c in dir {
            c.packets.add(cost.packets);
            c.bytes.add(cost.bytes);
            if cost.is_super {
                c.super_packets.add(1);
            }
        }
        if fragment {
            if v.needs_csum() {
                // Fragments cannot carry an offloaded checksum: complete it now.
                virtio::complete_csum(v, &mut pkt[..s.total_len]);
            }
            Verdict::Fragment {
                conn,
                len: s.total_len,
                mtu: out_mtu,
                at,
            }
        } else {
            Verdict::Forward {
                conn,
                len: s.total_len,
                at,
            }
        }
    }

    /// [`icmp_error`](Self::icmp_error) counted at connection `conn` and its gateway.
    #[allow(clippy::too_many_arguments)]
    fn icmp_error_at(
        &mut self,
        now_ns: u64,
        pkt: &[u8],
        s: &IpSummary,
        kind: Error,
        reason: DropReason,
        packets: u64,
        reply: &mut [u8],
        conn: usize,
    ) -> Verdict {
        let c = self.connections[conn].counters.clone();
        let g = self.gateways[self.connections[conn].gateway]
            .counters
            .clone();
        let dir: [&DirCounters; 2] = match self.dir {
            Dir::Egress => [&g.egress, &c.egress],
            Dir::Ingress => [&g.ingress, &c.ingress],
        };
        self.icmp_error(now_ns, pkt, s, kind, reason, packets, reply, &dir)
    }
}

fn family(s: &IpSummary) -> Family {
    if s.version == 4 {
        Family::V4
    } else {
        Family::V6
    }
}

/// Parses and validates; returns the summary and wire cost or counts the malformed drop.
#[inline]
fn validate(
    v: &VirtioHdr,
    pkt: &[u8],
    dir: &[&DirCounters],
) -> Result<(IpSummary, WireCost), DropReason> {
    let r = IpSummary::parse(pkt, true).and_then(|s| wire_cost(v, pkt, &s).map(|c| (s, c)));
    r.map_err(|m| {
        let reason = DropReason::from(m);
        for c in dir {
            c.drop(reason, 1);
        }
        reason
    })
}

/// Answers a ping of the gateway's own address, or drops anything else sent to it.
fn to_gateway(
    pkt: &[u8],
    s: &IpSummary,
    packets: u64,
    reply: &mut [u8],
    dir: &[&DirCounters],
) -> Verdict {
    match icmp::echo_reply(pkt, s, reply) {
        Some(len) => {
            for c in dir {
                c.echo_replies.add(1);
            }
            Verdict::Reply { len }
        }
        None => {
            for c in dir {
                c.drop(DropReason::ToGateway, packets);
            }
            Verdict::Drop(DropReason::ToGateway)
        }
    }
}

/// The egress half (VNet side -> connections). Owned by one thread.
pub struct Egress {
    common: Common,
    routes: RouteTable,
    /// Drops before a connection is chosen (rules 1-5) are counted here, on the VNet side.
    vnet_counters: Arc<PathCounters>,
}

/// The ingress half (connections -> VNet side). Owned by one thread (or one per kind of input,
/// each with its own `Ingress`; they share the counters).
pub struct Ingress {
    common: Common,
}

fn common(spec: &PipelineSpec, dir: Dir, now_ns: u64) -> Common {
    let gateways = spec
        .gateways
        .iter()
        .map(|g| GatewayHalf {
            shaper: Shaper::new(g.bits_per_sec, g.packets_per_sec, spec.burst, now_ns),
            counters: g.counters.clone(),
            flows: g.flows.clone(),
        })
        .collect();
    let caps = spec
        .connections
        .iter()
        .map(|c| {
            c.tunnel
                .and_then(|t| t.cap_bits_per_sec)
                .map(|bps| Shaper::new(bps, None, spec.burst, now_ns))
        })
        .collect();
    Common {
        dir,
        vnet: spec.vnet.clone(),
        icmp_limit: TokenBucket::new(ICMP_ERRORS_PER_SEC, ICMP_ERRORS_BURST, now_ns),
        gateways,
        connections: spec.connections.clone(),
        caps,
        burst: spec.burst,
        seen: vec![0; spec.gateways.len()],
    }
}

/// The route table over `connections` (indices are the connections' positions).
fn route_table(connections: &[Connection]) -> RouteTable {
    RouteTable::new(connections.iter().enumerate().flat_map(|(i, c)| {
        c.prefixes.iter().map(move |p| Route {
            prefix: *p,
            connection: i,
            preference: if c.tunnel.is_some() {
                PREFER_TUNNEL
            } else {
                PREFER_CIRCUIT
            },
            weight: c.routing_weight,
        })
    }))
}

impl Common {
    /// Sweeps `budget` slots of each gateway's flow table; returns the flows removed.
    fn expire_flows(&self, now_ns: u64, budget: usize) -> usize {
        self.gateways
            .iter()
            .filter_map(|g| g.flows.as_ref())
            .map(|f| lock_flows(f).expire(now_ns, budget))
            .sum()
    }

    /// Replaces the connection list (a config reload). A connection is the same one as before
    /// when it shares its counters (`Arc::ptr_eq`): it keeps its per-tunnel cap shaper, and
    /// with it its tokens, so a reload does not disturb it. Other tunnels get a fresh cap
    /// shaper. Gateway shapers are untouched.
    fn set_connections(&mut self, now_ns: u64, connections: Vec<Connection>) {
        let mut caps = Vec::with_capacity(connections.len());
        for (i, c) in connections.iter().enumerate() {
            let same = self
                .connections
                .get(i)
                .is_some_and(|old| Arc::ptr_eq(&old.counters, &c.counters));
            let kept = if same {
                self.caps.get_mut(i).and_then(Option::take)
            } else {
                None
            };
            let cap = match (kept, c.tunnel.and_then(|t| t.cap_bits_per_sec)) {
                (Some(s), Some(_)) => Some(s),
                (None, Some(bps)) => Some(Shaper::new(bps, None, self.burst, now_ns)),
                (_, None) => None,
            };
            caps.push(cap);
        }
        self.caps = caps;
        self.connections = connections;
    }
}

/// Builds the two halves of the pipeline. Connections must name gateways of the spec.
pub fn build(spec: &PipelineSpec, now_ns: u64) -> (Egress, Ingress) {
    let routes = route_table(&spec.connections);
    (
        Egress {
            common: common(spec, Dir::Egress, now_ns),
            routes,
            vnet_counters: spec.vnet_counters.clone(),
        },
        Ingress {
            common: common(spec, Dir::Ingress, now_ns),
        },
    )
}

impl Egress {
    /// Decides what to do with one packet read from the VNet side. `pkt` is the IP packet
    /// (after the virtio header `v`); `reply` must hold [`REPLY_BUF_LEN`] bytes.
    pub fn process(
        &mut self,
        now_ns: u64,
        v: &VirtioHdr,
        pkt: &mut [u8],
        reply: &mut [u8],
    ) -> Verdict {
        let vc = &self.vnet_counters.egress;
        let (s, cost) = match validate(v, pkt, &[vc]) {
            Ok(x) => x,
            Err(r) => return Verdict::Drop(r),
        };
        let f = family(&s);
        if is_link_local(f, s.src) || is_link_local(f, s.dst) {
            vc.drop(DropReason::LinkLocal, cost.packets);
            return Verdict::Drop(DropReason::LinkLocal);
        }
        let vnet = &self.common.vnet;
        if !vnet.contains(f, s.src) {
            vc.drop(DropReason::Spoofed, cost.packets);
            return Verdict::Drop(DropReason::Spoofed);
        }
        if vnet.is_gateway(f, s.dst) {
            return to_gateway(pkt, &s, cost.packets, reply, &[vc]);
        }
        let conns = &self.common.connections;
        let Some(conn) = self
            .routes
            .lookup(f, s.dst, |c| conns[c].up.load(Ordering::Relaxed))
        else {
            return self.common.icmp_error(
                now_ns,
                pkt,
                &s,
                Error::Unreachable,
                DropReason::NoRoute,
                cost.packets,
                reply,
                &[vc],
            );
        };
        self.common.finish(now_ns, v, pkt, &s, &cost, conn, reply)
    }

    /// The shaper of gateway `gateway` (index in the spec) for this direction.
    pub fn gateway_shaper(&mut self, gateway: usize) -> Option<&mut Shaper> {
        self.common.gateways.get_mut(gateway).map(|g| &mut g.shaper)
    }

    /// Applies live limits that changed (by gateway index); cheap when nothing did.
    #[inline]
    pub fn apply_live(&mut self, now_ns: u64, live: &[LiveLimits]) {
        self.common.apply_live(now_ns, live);
    }

    /// The incremental sweep of the gateways' flow tables: `budget` slots of each (bounded
    /// work; a worker calls it once per wake-up). Returns the flows removed as idle.
    pub fn expire_flows(&self, now_ns: u64, budget: usize) -> usize {
        self.common.expire_flows(now_ns, budget)
    }

    pub fn connections(&self) -> &[Connection] {
        &self.common.connections
    }

    /// Replaces the connections and rebuilds the route table (a config reload; see
    /// [`Ingress::set_connections`] for what carries over). Connection indices of verdicts
    /// are positions in the new list; a connection that stays keeps its position.
    pub fn set_connections(&mut self, now_ns: u64, connections: Vec<Connection>) {
        self.routes = route_table(&connections);
        self.common.set_connections(now_ns, connections);
    }
}

impl Ingress {
    /// Decides what to do with one packet that arrived on connection `conn` (for a tunnel: the
    /// inner packet, already opened).
    pub fn process(
        &mut self,
        now_ns: u64,
        conn: usize,
        v: &VirtioHdr,
        pkt: &mut [u8],
        reply: &mut [u8],
    ) -> Verdict {
        let (s, cost) = match self.check(conn, v, pkt, reply) {
            Ok(x) => x,
            Err(verdict) => return verdict,
        };
        self.common.finish(now_ns, v, pkt, &s, &cost, conn, reply)
    }

    /// Rules 1 to 4 of ingress: validation, addresses, the gateway's own address.
    fn check(
        &self,
        conn: usize,
        v: &VirtioHdr,
        pkt: &[u8],
        reply: &mut [u8],
    ) -> Result<(IpSummary, WireCost), Verdict> {
        let Some(c) = self.common.connections.get(conn) else {
            return Err(Verdict::Drop(DropReason::Spoofed));
        };
        let g = &self.common.gateways[c.gateway].counters;
        let dir: [&DirCounters; 2] = [&g.ingress, &c.counters.ingress];
        let (s, cost) = validate(v, pkt, &dir).map_err(Verdict::Drop)?;
        let f = family(&s);
        let drop = |reason: DropReason| {
            for c in &dir {
                c.drop(reason, cost.packets);
            }
            Verdict::Drop(reason)
        };
        if is_link_local(f, s.src) || is_link_local(f, s.dst) {
            return Err(drop(DropReason::LinkLocal));
        }
        if !c.prefixes.iter().any(|p| p.contains_bits(f, s.src)) {
            return Err(drop(DropReason::Spoofed));
        }
        let vnet = &self.common.vnet;
        if vnet.is_gateway(f, s.dst) {
            return Err(to_gateway(pkt, &s, cost.packets, reply, &dir));
        }
        if !vnet.contains(f, s.dst) {
            return Err(drop(DropReason::DstOutsideVnet));
        }
        Ok((s, cost))
    }

    /// The shaper of gateway `gateway` for this direction.
    pub fn gateway_shaper(&mut self, gateway: usize) -> Option<&mut Shaper> {
        self.common.gateways.get_mut(gateway).map(|g| &mut g.shaper)
    }

    /// As [`Egress::expire_flows`].
    pub fn expire_flows(&self, now_ns: u64, budget: usize) -> usize {
        self.common.expire_flows(now_ns, budget)
    }

    /// Applies live limits that changed (by gateway index); cheap when nothing did.
    #[inline]
    pub fn apply_live(&mut self, now_ns: u64, live: &[LiveLimits]) {
        self.common.apply_live(now_ns, live);
    }

    /// Replaces the connections (a config reload). A connection present before and after (the
    /// same counters, at the same index) keeps its per-tunnel cap shaper and its tokens; the
    /// gateway shapers carry over whole, so unchanged connections see no difference.
    pub fn set_connections(&mut self, now_ns: u64, connections: Vec<Connection>) {
        self.common.set_connections(now_ns, connections);
    }
}

#[cfg(test)]
mod tests;
