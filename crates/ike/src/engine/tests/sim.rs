//! A deterministic in-process network for two (or more) endpoints: a virtual clock, and a
//! network that can lose, delay, duplicate and reorder datagrams, driven by a seeded RNG.
//!
//! Datagrams on port 4500 carry the 4-byte non-ESP marker on the "wire", as the daemon adds and
//! strips it, so the port rules of the API are checked too.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use crate::crypto::{EspProposal, IkeProposal, Random, SecretBytes, SeededRandom};
use crate::engine::{Endpoint, Event, PeerConfig, Transmit, NATT_PORT};
use crate::wire::{ExchangeType, Header, TrafficSelector};

pub const A: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
pub const B: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2));

/// `10.1.0.0/16` style.
pub fn ts(prefix: &str) -> TrafficSelector {
    let (addr, len) = prefix.split_once('/').unwrap();
    TrafficSelector::from_prefix(addr.parse().unwrap(), len.parse().unwrap()).unwrap()
}

/// A peer configuration with the gateway defaults of DOMAIN.md.
pub fn config(local: IpAddr, remote: IpAddr, initiate: bool) -> PeerConfig {
    let (local_ts, remote_ts) = if local == A {
        ("10.1.0.0/16", "10.3.0.0/16")
    } else {
        ("10.3.0.0/16", "10.1.0.0/16")
    };
    PeerConfig {
        name: format!("to-{remote}"),
        local,
        remote,
        psk: SecretBytes::from_slice(b"correct horse battery staple"),
        local_id: None,
        remote_id: None,
        ike_proposals: vec![IkeProposal::parse("aes256gcm16-prfsha256-ecp256").unwrap()],
        esp_proposals: vec![EspProposal::parse("aes256gcm16").unwrap()],
        local_ts: vec![ts(local_ts)],
        remote_ts: vec![ts(remote_ts)],
        initiate,
        ike_lifetime: Duration::from_secs(28_800),
        child_lifetime: Duration::from_secs(27_000),
        child_lifetime_bytes: 0,
        dpd_timeout: Duration::from_secs(45),
    }
}

pub fn ike(s: &str) -> Vec<IkeProposal> {
    s.split(',')
        .map(|p| IkeProposal::parse(p).unwrap())
        .collect()
}

pub fn esp(s: &str) -> Vec<EspProposal> {
    s.split(',')
        .map(|p| EspProposal::parse(p).unwrap())
        .collect()
}

/// What the network does to each datagram.
#[derive(Clone, Copy, Debug)]
pub struct NetConfig {
    /// One-way delay.
    pub delay: Duration,
    /// Extra random delay in `0..jitter` (reorders datagrams when larger than their spacing).
    pub jitter: Duration,
    /// Probability of losing a datagram.
    pub loss: f64,
    /// Probability of delivering a datagram twice.
    pub duplicate: f64,
}

impl Default for NetConfig {
    fn default() -> NetConfig {
        NetConfig {
            delay: Duration::from_millis(10),
            jitter: Duration::ZERO,
            loss: 0.0,
            duplicate: 0.0,
        }
    }
}

/// One datagram as it went over the wire.
#[derive(Clone, Debug)]
pub struct Packet {
    /// Index of the sending node.
    pub from_node: usize,
    pub src: SocketAddr,
    pub dst: SocketAddr,
    /// The UDP payload (with the non-ESP marker on port 4500).
    pub udp: Vec<u8>,
}

impl Packet {
    /// The IKE message (without the marker).
    pub fn ike(&self) -> &[u8] {
        if self.src.port() == NATT_PORT || self.dst.port() == NATT_PORT {
            &self.udp[4..]
        } else {
            &self.udp
        }
    }

    pub fn header(&self) -> Header {
        Header::peek(self.ike()).unwrap()
    }

    pub fn exchange(&self) -> ExchangeType {
        self.header().exchange_type
    }

    pub fn is_response(&self) -> bool {
        self.header().flags.response
    }
}

/// What a filter decides for a datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Deliver,
    Drop,
}

type Filter = Box<dyn FnMut(&Packet) -> Verdict>;

pub struct Node {
    pub ep: Endpoint,
    pub addr: IpAddr,
    /// Further addresses (several peers between the same two nodes need one pair each).
    pub aliases: Vec<IpAddr>,
    /// Every event so far.
    pub events: Vec<Event>,
    /// Offline: nothing reaches it, nothing leaves it, its timers still run.
    pub offline: bool,
}

impl Node {
    /// Whether `ip` is one of its addresses.
    pub fn has(&self, ip: IpAddr) -> bool {
        self.addr == ip || self.aliases.contains(&ip)
    }
}

struct InFlight {
    packet: Packet,
    to_node: usize,
}

pub struct Sim {
    pub now: Instant,
    pub start: Instant,
    pub nodes: Vec<Node>,
    pub net: NetConfig,
    rng: SeededRandom,
    flying: BTreeMap<(Instant, u64), InFlight>,
    seq: u64,
    /// Every datagram sent (before loss), in order.
    pub sent: Vec<Packet>,
    filter: Option<Filter>,
}

impl Sim {
    /// Two nodes, A (192.0.2.1) and B (192.0.2.2), each with one peer: the other.
    pub fn pair(a: PeerConfig, b: PeerConfig, seed: u64) -> Sim {
        let mut sim = Sim::empty(seed);
        sim.add_node(A, vec![a], seed.wrapping_mul(2).wrapping_add(1));
        sim.add_node(B, vec![b], seed.wrapping_mul(2).wrapping_add(2));
        sim
    }

    /// A network without nodes.
    pub fn empty(seed: u64) -> Sim {
        let start = Instant::now();
        Sim {
            now: start,
            start,
            nodes: Vec::new(),
            net: NetConfig::default(),
            rng: SeededRandom::from_u64(seed ^ 0x5eed),
            flying: BTreeMap::new(),
            seq: 0,
            sent: Vec::new(),
            filter: None,
        }
    }

    pub fn add_node(&mut self, addr: IpAddr, peers: Vec<PeerConfig>, seed: u64) -> usize {
        let ep = Endpoint::new(peers, Box::new(SeededRandom::from_u64(seed)), self.now);
        self.nodes.push(Node {
            ep,
            addr,
            aliases: Vec::new(),
            events: Vec::new(),
            offline: false,
        });
        self.nodes.len() - 1
    }

    /// Replaces node `i`'s endpoint (a restart: all state lost).
    pub fn restart(&mut self, i: usize, peers: Vec<PeerConfig>, seed: u64) {
        self.nodes[i].ep = Endpoint::new(peers, Box::new(SeededRandom::from_u64(seed)), self.now);
    }

    /// Decides the fate of every datagram from now on (on top of the random loss).
    pub fn set_filter(&mut self, f: impl FnMut(&Packet) -> Verdict + 'static) {
        self.filter = Some(Box::new(f));
    }

    pub fn clear_filter(&mut self) {
        self.filter = None;
    }

    fn chance(&mut self, p: f64) -> bool {
        if p <= 0.0 {
            return false;
        }
        let mut b = [0u8; 8];
        self.rng.fill(&mut b);
        (u64::from_be_bytes(b) as f64 / u64::MAX as f64) < p
    }

    fn random_delay(&mut self) -> Duration {
        let jitter = self.net.jitter.as_nanos() as u64;
        let extra = if jitter == 0 {
            0
        } else {
            let mut b = [0u8; 8];
            self.rng.fill(&mut b);
            u64::from_be_bytes(b) % jitter
        };
        self.net.delay + Duration::from_nanos(extra)
    }

    /// Moves transmits and events out of the endpoints.
    fn collect(&mut self) {
        for i in 0..self.nodes.len() {
            while let Some(ev) = self.nodes[i].ep.poll_event() {
                self.nodes[i].events.push(ev);
            }
            while let Some(t) = self.nodes[i].ep.poll_transmit() {
                self.send(i, t);
            }
        }
    }

    fn send(&mut self, from_node: usize, t: Transmit) {
        assert!(
            self.nodes[from_node].has(t.local.ip()),
            "sent from a foreign address {}",
            t.local.ip()
        );
        let mut udp = Vec::new();
        if t.local.port() == NATT_PORT || t.remote.port() == NATT_PORT {
            udp.extend_from_slice(&[0, 0, 0, 0]);
        }
        udp.extend_from_slice(&t.data);
        self.seq += 1;
        let packet = Packet {
            from_node,
            src: t.local,
            dst: t.remote,
            udp,
        };
        self.sent.push(packet.clone());
        if self.nodes[from_node].offline {
            return;
        }
        if let Some(f) = self.filter.as_mut() {
            if f(&packet) == Verdict::Drop {
                return;
            }
        }
        if self.chance(self.net.loss) {
            return;
        }
        let Some(to_node) = self.nodes.iter().position(|n| n.has(t.remote.ip())) else {
            return;
        };
        let copies = if self.chance(self.net.duplicate) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let at = self.now + self.random_delay();
            self.seq += 1;
            self.flying.insert(
                (at, self.seq),
                InFlight {
                    packet: packet.clone(),
                    to_node,
                },
            );
        }
    }

    fn deliver(&mut self, f: InFlight) {
        let node = &mut self.nodes[f.to_node];
        if node.offline {
            return;
        }
        let p = f.packet;
        let data = if p.dst.port() == NATT_PORT || p.src.port() == NATT_PORT {
            // The caller strips the non-ESP marker.
            assert_eq!(
                &p.udp[..4],
                &[0, 0, 0, 0],
                "IKE on 4500 without the non-ESP marker"
            );
            &p.udp[4..]
        } else {
            &p.udp[..]
        };
        node.ep.handle_datagram(self.now, p.dst, p.src, data);
    }

    /// Runs the network and the timers until `now + d`.
    pub fn run_for(&mut self, d: Duration) {
        let deadline = self.now + d;
        self.run_until(deadline);
    }

    pub fn run_until(&mut self, deadline: Instant) {
        let mut steps = 0u64;
        loop {
            self.collect();
            steps += 1;
            assert!(steps < 2_000_000, "simulation does not settle");
            let next_packet = self.flying.keys().next().map(|k| k.0);
            let next_timer = self.nodes.iter().filter_map(|n| n.ep.poll_timeout()).min();
            let next = match (next_packet, next_timer) {
                (Some(a), Some(b)) => a.min(b),
                (a, b) => a.or(b).unwrap_or(deadline),
            };
            // Nothing left to happen (every node idle): straight to the deadline.
            if next > deadline || (next_packet.is_none() && next_timer.is_none()) {
                self.now = deadline;
                self.collect();
                return;
            }
            assert!(
                next >= self.now || next_timer == Some(next),
                "time went backwards"
            );
            self.now = self.now.max(next);
            while let Some(entry) = self.flying.first_entry() {
                if entry.key().0 > self.now {
                    break;
                }
                let f = entry.remove();
                self.deliver(f);
                self.collect();
            }
            for i in 0..self.nodes.len() {
                if self.nodes[i]
                    .ep
                    .poll_timeout()
                    .is_some_and(|t| t <= self.now)
                {
                    self.nodes[i].ep.handle_timeout(self.now);
                    // Something may be due at once (an immediate reconnection), but a timer
                    // that does not move on would spin forever.
                    if self.nodes[i]
                        .ep
                        .poll_timeout()
                        .is_some_and(|t| t <= self.now)
                    {
                        self.collect();
                        self.nodes[i].ep.handle_timeout(self.now);
                        if let Some(t) = self.nodes[i].ep.poll_timeout() {
                            assert!(t > self.now, "node {i}: timer {t:?} not advanced");
                        }
                    }
                }
            }
        }
    }

    /// Seconds since the start, for messages.
    pub fn t(&self) -> f64 {
        (self.now - self.start).as_secs_f64()
    }

    pub fn events(&self, i: usize) -> &[Event] {
        &self.nodes[i].events
    }

    pub fn errors(&self, i: usize) -> Vec<String> {
        self.nodes[i]
            .events
            .iter()
            .filter_map(|e| match e {
                Event::Error { message, .. } => Some(message.clone()),
                _ => None,
            })
            .collect()
    }

    /// Child SA pairs announced and not yet removed, in announcement order:
    /// (inbound SPI, outbound SPI, inbound keys, outbound keys).
    pub fn live_children(&self, i: usize) -> Vec<LiveChild> {
        let mut live: Vec<LiveChild> = Vec::new();
        for e in &self.nodes[i].events {
            match e {
                Event::ChildSaUp {
                    inbound_spi,
                    outbound_spi,
                    inbound_keys,
                    outbound_keys,
                    esp,
                    remote,
                    replaces,
                    ..
                } => {
                    assert!(
                        !live.iter().any(|c| c.inbound == *inbound_spi),
                        "SA {inbound_spi:#x} announced twice"
                    );
                    live.push(LiveChild {
                        inbound: *inbound_spi,
                        outbound: *outbound_spi,
                        in_keys: (
                            inbound_keys.encr.as_bytes().to_vec(),
                            inbound_keys.integ.as_ref().map(|k| k.as_bytes().to_vec()),
                        ),
                        out_keys: (
                            outbound_keys.encr.as_bytes().to_vec(),
                            outbound_keys.integ.as_ref().map(|k| k.as_bytes().to_vec()),
                        ),
                        esp: *esp,
                        remote: *remote,
                        replaces: *replaces,
                    });
                }
                Event::ChildSaDown {
                    inbound_spi,
                    outbound_spi,
                    ..
                } => {
                    let pos = live
                        .iter()
                        .position(|c| c.inbound == *inbound_spi)
                        .unwrap_or_else(|| panic!("SA {inbound_spi:#x} down but never up"));
                    assert_eq!(live[pos].outbound, *outbound_spi);
                    live.remove(pos);
                }
                _ => {}
            }
        }
        live
    }

    /// Whether the last link event of node `i` says up.
    pub fn link_up(&self, i: usize) -> bool {
        self.link_up_where(i, |_| true)
    }

    /// Whether the last link event of node `i` among the events `pick` selects (one peer's)
    /// says up.
    pub fn link_up_where(&self, i: usize, pick: impl Fn(&Event) -> bool) -> bool {
        let mut up = false;
        for e in self.nodes[i].events.iter().filter(|e| pick(e)) {
            match e {
                Event::IkeUp { .. } => {
                    assert!(!up, "node {i}: IkeUp twice in a row");
                    up = true;
                }
                Event::IkeDown { .. } => {
                    assert!(up, "node {i}: IkeDown without IkeUp");
                    up = false;
                }
                _ => {}
            }
        }
        up
    }

    /// Replays node `i`'s events as a data plane that sends on the most recently announced
    /// pair and stops sending when that pair goes away: the pair it ends on must be live.
    pub fn assert_outbound_alive(&self, i: usize) {
        let mut outbound = None;
        for e in &self.nodes[i].events {
            match e {
                Event::ChildSaUp { inbound_spi, .. } => outbound = Some(*inbound_spi),
                Event::ChildSaDown { inbound_spi, .. } if outbound == Some(*inbound_spi) => {
                    outbound = None
                }
                _ => {}
            }
        }
        let live = self.live_children(i);
        assert!(
            outbound.is_some_and(|o| live.iter().any(|c| c.inbound == o)),
            "node {i}: outbound on {outbound:?}, live {live:?}"
        );
    }

    pub fn count(&self, i: usize, f: impl Fn(&Event) -> bool) -> usize {
        self.nodes[i].events.iter().filter(|e| f(e)).count()
    }

    /// Checks that both ends hold the same Child SA pairs (the same in/out SPIs and keys,
    /// swapped), at least one, and returns how many.
    pub fn assert_children_match(&self) -> usize {
        let a = self.live_children(0);
        let b = self.live_children(1);
        assert!(!a.is_empty(), "A has no Child SA at {:.1} s", self.t());
        assert_eq!(a.len(), b.len(), "A {a:#?}\nB {b:#?}");
        for ca in &a {
            let cb = b
                .iter()
                .find(|cb| cb.inbound == ca.outbound)
                .unwrap_or_else(|| panic!("B has no SA {:#x}: {b:#?}", ca.outbound));
            assert_eq!(cb.outbound, ca.inbound);
            assert_eq!(ca.in_keys, cb.out_keys, "keys of SA {:#x}", ca.inbound);
            assert_eq!(ca.out_keys, cb.in_keys, "keys of SA {:#x}", ca.outbound);
            assert_eq!(ca.esp, cb.esp);
        }
        self.assert_outbound_alive(0);
        self.assert_outbound_alive(1);
        a.len()
    }
}

#[derive(Clone, Debug)]
pub struct LiveChild {
    pub inbound: u32,
    pub outbound: u32,
    pub in_keys: (Vec<u8>, Option<Vec<u8>>),
    pub out_keys: (Vec<u8>, Option<Vec<u8>>),
    pub esp: EspProposal,
    pub remote: SocketAddr,
    pub replaces: Option<u32>,
}
