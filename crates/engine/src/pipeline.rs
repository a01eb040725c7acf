//! The ExpressRoute pipeline: plain forwarding between the VNet side and circuits.
//!
//! Policy, in the order it is applied to every packet (the first rule that decides wins):
//!
//! Egress (VNet side -> circuit):
//! 1. Parse and validate (version, lengths, IPv4 header checksum, virtio-net GSO fields):
//!    else drop `malformed_*`.
//! 2. Link-local, multicast or broadcast source or destination: drop `link_local`.
//! 3. Source outside the VNet address space: drop `spoofed`.
//! 4. Destination is the gateway's own address: answer an echo request (`echo_replies`), else
//!    drop `to_gateway`.
//! 5. Longest prefix match over the connections that are up; equal prefixes go to the highest
//!    `routing_weight`. No route: ICMP destination unreachable from the gateway, drop `no_route`.
//! 6. TTL / hop limit 1 or 0: ICMP time exceeded, drop `ttl_expired`.
//! 7. Wire packets larger than the circuit MTU: IPv4 with DF clear is fragmented; otherwise ICMP
//!    fragmentation needed / packet too big with the MTU, drop `too_big`.
//! 8. The gateway's SKU shaper (bits/s, packets/s) for this direction: the packet leaves at
//!    once when tokens are there, or is held (in order) until they are, up to the shaper's
//!    maximum delay; beyond that it is dropped, `shaped_bps` or `shaped_pps`.
//! 9. TTL / hop limit decremented (IPv4 checksum updated incrementally), forwarded.
//!
//! Ingress (circuit -> VNet side) is the mirror image, with rule 3 reading "source outside the
//! prefixes of the circuit it came from" and a rule 3b: destination outside the VNet address
//! space, drop `dst_outside_vnet` (no transit between on-premises sites through the gateway).
//! ICMP errors about ingress packets go back out the circuit they came from.
//!
//! A TUN super-packet (virtio-net GSO) is validated, checked against the MTU by its segment size,
//! shaped and counted as the wire packets it carries, and forwarded whole.
//!
//! ICMP errors are rate limited (RFC 1812 4.3.2.8); an error not sent is counted in
//! `icmp_rate_limited`, and the packet is dropped with its reason either way.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use causeway_wire::icmp;
use causeway_wire::ip::{self, IpSummary, PROTO_TCP, PROTO_UDP};
use causeway_wire::virtio::{self, VirtioHdr};
use causeway_wire::Malformed;

use crate::counters::{DirCounters, DropReason};
use crate::prefix::{Family, Prefix};
use crate::route::RouteTable;
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

/// A circuit as the pipeline sees it.
#[derive(Debug, Clone)]
pub struct Circuit {
    pub name: String,
    pub prefixes: Vec<Prefix>,
    /// MTU of the circuit interface (egress packets larger than this are too big).
    pub mtu: usize,
    /// False while the circuit is down: its routes are skipped.
    pub up: Arc<AtomicBool>,
    pub counters: Arc<PathCounters>,
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

/// State shared by both directions' code paths.
struct Common {
    vnet: Arc<Vnet>,
    shaper: Shaper,
    icmp_limit: TokenBucket,
}

enum Error {
    Unreachable,
    TimeExceeded,
    TooBig(usize),
}

impl Common {
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

    /// Rules 6 to 9, shared by both directions, once the output is known.
    #[allow(clippy::too_many_arguments)]
    fn finish(
        &mut self,
        now_ns: u64,
        v: &VirtioHdr,
        pkt: &mut [u8],
        s: &IpSummary,
        cost: &WireCost,
        out_mtu: usize,
        conn: usize,
        reply: &mut [u8],
        dir: &[&DirCounters],
    ) -> Verdict {
        if s.ttl <= 1 {
            return self.icmp_error(
                now_ns,
                pkt,
                s,
                Error::TimeExceeded,
                DropReason::TtlExpired,
                cost.packets,
                reply,
                dir,
            );
        }
        let mut fragment = false;
        let mut cost = *cost;
        if cost.max_packet > out_mtu {
            if s.version == 4 && !s.dont_fragment && !cost.is_super {
                let room = (out_mtu.saturating_sub(s.header_len)) & !7;
                let payload = s.total_len - s.header_len;
                if room < 8 {
                    return self.icmp_error(
                        now_ns,
                        pkt,
                        s,
                        Error::TooBig(out_mtu),
                        DropReason::TooBig,
                        cost.packets,
                        reply,
                        dir,
                    );
                }
                let n = payload.div_ceil(room);
                cost.packets = n as u64;
                cost.bytes = (s.total_len + (n - 1) * s.header_len) as u64;
                fragment = true;
            } else {
                return self.icmp_error(
                    now_ns,
                    pkt,
                    s,
                    Error::TooBig(out_mtu),
                    DropReason::TooBig,
                    cost.packets,
                    reply,
                    dir,
                );
            }
        }
        let at = match self.shaper.schedule(now_ns, cost.bytes, cost.packets) {
            Ok(at) => at,
            Err(why) => {
                let reason = match why {
                    Shaped::Bps => DropReason::ShapedBps,
                    Shaped::Pps => DropReason::ShapedPps,
                };
                for c in dir {
                    c.drop(reason, cost.packets);
                }
                return Verdict::Drop(reason);
            }
        };
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

/// The egress half of an ExpressRoute gateway (VNet side -> circuits). Owned by one thread.
pub struct ErEgress {
    common: Common,
    gateway: Arc<PathCounters>,
    routes: RouteTable,
    circuits: Vec<Circuit>,
    /// Drops before a connection is chosen (rules 1-5) are counted here, on the VNet side.
    vnet_counters: Arc<PathCounters>,
}

/// The ingress half of an ExpressRoute gateway (circuits -> VNet side). Owned by one thread.
pub struct ErIngress {
    common: Common,
    gateway: Arc<PathCounters>,
    circuits: Vec<Circuit>,
}

/// Everything needed to build both halves of an ExpressRoute gateway.
pub struct ErGatewaySpec {
    pub vnet: Arc<Vnet>,
    pub circuits: Vec<Circuit>,
    /// `(prefix, circuit index, routing_weight)`.
    pub routes: RouteTable,
    pub bits_per_sec: u64,
    pub packets_per_sec: Option<u64>,
    pub burst: BurstPolicy,
    pub gateway_counters: Arc<PathCounters>,
    pub vnet_counters: Arc<PathCounters>,
}

/// Builds the two halves of an ExpressRoute gateway.
pub fn build_er(spec: ErGatewaySpec, now_ns: u64) -> (ErEgress, ErIngress) {
    let common = |_| Common {
        vnet: spec.vnet.clone(),
        shaper: Shaper::new(spec.bits_per_sec, spec.packets_per_sec, spec.burst, now_ns),
        icmp_limit: TokenBucket::new(ICMP_ERRORS_PER_SEC, ICMP_ERRORS_BURST, now_ns),
    };
    (
        ErEgress {
            common: common(0),
            gateway: spec.gateway_counters.clone(),
            routes: spec.routes.clone(),
            circuits: spec.circuits.clone(),
            vnet_counters: spec.vnet_counters.clone(),
        },
        ErIngress {
            common: common(1),
            gateway: spec.gateway_counters.clone(),
            circuits: spec.circuits,
        },
    )
}

impl ErEgress {
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
        let circuits = &self.circuits;
        let Some(conn) = self
            .routes
            .lookup(f, s.dst, |c| circuits[c].up.load(Ordering::Relaxed))
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
        let circuit = &self.circuits[conn];
        self.common.finish(
            now_ns,
            v,
            pkt,
            &s,
            &cost,
            circuit.mtu,
            conn,
            reply,
            &[&self.gateway.egress, &circuit.counters.egress],
        )
    }

    pub fn shaper(&mut self) -> &mut Shaper {
        &mut self.common.shaper
    }

    pub fn circuits(&self) -> &[Circuit] {
        &self.circuits
    }
}

impl ErIngress {
    /// Decides what to do with one packet read from circuit `conn`.
    pub fn process(
        &mut self,
        now_ns: u64,
        conn: usize,
        v: &VirtioHdr,
        pkt: &mut [u8],
        reply: &mut [u8],
    ) -> Verdict {
        let Some(circuit) = self.circuits.get(conn) else {
            return Verdict::Drop(DropReason::Spoofed);
        };
        let dir: [&DirCounters; 2] = [&self.gateway.ingress, &circuit.counters.ingress];
        let (s, cost) = match validate(v, pkt, &dir) {
            Ok(x) => x,
            Err(r) => return Verdict::Drop(r),
        };
        let f = family(&s);
        let drop = |reason: DropReason| {
            for c in &dir {
                c.drop(reason, cost.packets);
            }
            Verdict::Drop(reason)
        };
        if is_link_local(f, s.src) || is_link_local(f, s.dst) {
            return drop(DropReason::LinkLocal);
        }
        if !circuit.prefixes.iter().any(|p| p.contains_bits(f, s.src)) {
            return drop(DropReason::Spoofed);
        }
        let vnet = &self.common.vnet;
        if vnet.is_gateway(f, s.dst) {
            return to_gateway(pkt, &s, cost.packets, reply, &dir);
        }
        if !vnet.contains(f, s.dst) {
            return drop(DropReason::DstOutsideVnet);
        }
        let mtu = vnet.mtu;
        self.common
            .finish(now_ns, v, pkt, &s, &cost, mtu, conn, reply, &dir)
    }

    pub fn shaper(&mut self) -> &mut Shaper {
        &mut self.common.shaper
    }
}

#[cfg(test)]
mod tests;
