//! The IKEv2 state machines (RFC 7296), sans-IO, in the shape of quinn-proto's connection: the
//! caller passes in `now` and datagrams ([`Endpoint::handle_datagram`]), fires timers
//! ([`Endpoint::poll_timeout`] / [`Endpoint::handle_timeout`]) and drains what the endpoint
//! wants done ([`Endpoint::poll_transmit`], [`Endpoint::poll_event`]). Nothing here reads a clock,
//! opens a socket or draws randomness by itself.
//!
//! One [`Endpoint`] serves every configured peer ([`PeerConfig`], addressed by its index in the
//! list given to [`Endpoint::new`], or the one [`Endpoint::add_peer`] returns). Per peer it runs
//! at most one IKE SA at a time (plus the transient ones of a rekey or of a simultaneous start),
//! with its Child SAs (ESP, tunnel mode). Peers come and go with a configuration reload
//! ([`Endpoint::add_peer`], [`Endpoint::remove_peer`]) without disturbing the others: indices
//! never shift, a removed peer's index stays free until reused.
//!
//! # What happens on the wire
//!
//! - **IKE_SA_INIT** on port 500 (RFC 7296 1.2): `SA KE Ni N(NAT_DETECTION_SOURCE_IP)
//!   N(NAT_DETECTION_DESTINATION_IP)`. Like strongSwan with kernel-libipsec
//!   (docs/STRONGSWAN.md) the source hash is random, so both ends see "NAT" and everything after
//!   IKE_SA_INIT, IKE and ESP, runs in UDP on port 4500. The responder picks the first of its
//!   own proposals the initiator offered, preferring one whose group matches the KE payload;
//!   a KE of another group is answered with INVALID_KE_PAYLOAD (the initiator retries with the
//!   group asked for), no common proposal with NO_PROPOSAL_CHOSEN. With more than
//!   [`Endpoint::set_half_open_limit`] half-open SAs the responder answers with a stateless
//!   COOKIE (2.6) and the initiator repeats its request with it.
//! - **IKE_AUTH** (1.2, 2.15), PSK only: `IDi [N(INITIAL_CONTACT)] [IDr] AUTH SA TSi TSr`,
//!   answered by `IDr AUTH SA TSi TSr`. The peer's identity must be the configured one (its IP
//!   address unless `remote_id` is set). The first Child SA's traffic selectors are narrowed
//!   (2.9) by the responder to its `local_ts` / `remote_ts`. ESP proposals never carry ESN
//!   (strongSwan's libipsec has none): only "no ESN" is offered and accepted.
//! - **CREATE_CHILD_SA** (1.3): Child SA rekey `N(REKEY_SA) SA Ni [KEi] TSi TSr` (KE when the
//!   ESP proposal has a PFS group; INVALID_KE_PAYLOAD retried with the group asked for), a new
//!   Child SA (the same without REKEY_SA: an initiating peer whose IKE SA lost its last Child
//!   SA, deleted by the peer or expired, asks for a new one, every 30 s until it gets it), IKE
//!   SA rekey `SA Ni KEi` with new SPIs (2.18). A simultaneous rekey of the same SA from
//!   both ends (2.8.1, 2.8.2) is resolved by the lowest nonce: the SA created by the exchange
//!   with the lowest nonce is deleted by its initiator; the winner's initiator deletes the old
//!   SA. A rekey of an SA that is already being deleted or was already rekeyed here is answered
//!   with TEMPORARY_FAILURE.
//! - **INFORMATIONAL** (1.4): Delete of Child SAs (answered with the paired SPIs; crossing
//!   deletes answered empty, 1.4.1) and of the IKE SA, and the empty liveness check: after
//!   `dpd_timeout` without anything authenticated from the peer (an IKE message, or
//!   [`Endpoint::child_alive`]) an empty request is sent.
//! - **Reliability** (2.1-2.4): window size 1; requests are retransmitted after 0.5, 1, 2, 4
//!   and 8 s ([`Endpoint::set_retransmission`]); a request still unanswered then means the peer
//!   is gone: the IKE SA and its Child SAs are closed without a Delete, and a peer with
//!   `initiate` starts over, with a growing pause between attempts (2 s doubling to 60 s),
//!   until the peer answers again. Retransmitted requests are answered from the cached
//!   response.
//! - **Lifetimes**: each IKE SA and Child SA is rekeyed at 80-90% of its lifetime (90% minus a
//!   random up to 10%, so that the two ends rarely collide), and deleted at 100% if the rekey
//!   did not succeed. Child SAs also count bytes ([`Endpoint::child_bytes`]) against
//!   `child_lifetime_bytes` in the same way.
//!
//! # Events and make-before-break
//!
//! [`Event::ChildSaUp`] hands the data plane a new pair of ESP SAs; on a rekey it names the
//! pair it `replaces`, and the old pair is removed later by [`Event::ChildSaDown`] (after the
//! Delete exchange). The data plane installs the inbound SA first and moves outbound traffic to
//! the newest announced pair. The engine keeps that choice right: an SA known to be redundant
//! when it is created (a lost rekey collision, the Child SA of the losing IKE SA when both ends
//! started at once) is never announced, and a rekeyed pair is only reported down after its
//! replacement was announced. (Only a peer that deletes its newest pair out of turn leaves the data plane
//! without an outbound SA until the next [`Event::ChildSaUp`].) [`Event::IkeUp`] /
//! [`Event::IkeDown`] report whether the peer has an established IKE SA at all (an IKE SA
//! rekey is seamless and reports neither); [`Event::IkeUp`] comes before the first
//! [`Event::ChildSaUp`], and the [`Event::ChildSaDown`]s of an IKE SA before its
//! [`Event::IkeDown`]. [`Event::Error`] carries what the daemon should log
//! (proposal mismatch, authentication failure, unacceptable traffic selectors, timeouts) and is
//! also kept as the peer's last error in [`Endpoint::status`].
//!
//! # Untrusted input
//!
//! Every datagram is untrusted: nothing in it can make the endpoint panic. Protected messages
//! whose ICV does not verify are dropped without a trace. Only IKE_SA_INIT carries anything
//! unauthenticated that has an effect (as in every IKEv2 implementation): a request from a
//! configured peer address starts a half-open SA (bounded by the cookie mechanism and a
//! 30-second timeout), and error notifications in an IKE_SA_INIT response end our attempt.

mod child;
mod exchange;
mod info;
mod init;
mod proposals;
mod state;
mod status;
mod timers;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use crate::crypto::{CookieJar, EspKeys, EspProposal, IkeProposal, Random, SecretBytes};
use crate::wire::TrafficSelector;

pub use status::{ChildStatus, IkeStatus, PeerState, PeerStatus};

use state::{ChildSa, IkeSa};

/// The IKE port (IKE_SA_INIT).
pub const IKE_PORT: u16 = 500;
/// The NAT-T port (everything after IKE_SA_INIT, and ESP in UDP).
pub const NATT_PORT: u16 = 4500;
/// Default number of half-open responder SAs above which IKE_SA_INIT requests need a cookie.
pub const DEFAULT_HALF_OPEN_LIMIT: usize = 64;
/// Hard bound on half-open responder SAs: above it even requests with a valid cookie are
/// dropped (and counted), so that a flood from a configured peer's address that echoes our
/// cookies still cannot grow memory without bound (each half-open SA lives 30 s at most).
pub const MAX_HALF_OPEN: usize = 1024;

/// What the endpoint did with the datagrams it was given: every datagram is counted in
/// `datagrams`; one dropped for one of the reasons below is counted once more, in that field.
/// (A request that fails a check deeper in an exchange is answered with an error notification
/// and is not counted here.)
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Datagrams handed to [`Endpoint::handle_datagram`].
    pub datagrams: u64,
    /// Not an IKEv2 message (header or payload chain does not decode), or an IKE_SA_INIT
    /// request without the payloads or header fields it must have.
    pub malformed: u64,
    /// IKE_SA_INIT request from an address that is no configured peer.
    pub unknown_peer: u64,
    /// No IKE SA with that SPI, or the header does not match the SA (SPIs, roles, state).
    pub unknown_sa: u64,
    /// The encrypted payload did not authenticate or decrypt.
    pub auth_failed: u64,
    /// IKE_SA_INIT requests answered with a COOKIE (no state kept).
    pub cookies_sent: u64,
    /// IKE_SA_INIT requests dropped because [`MAX_HALF_OPEN`] half-open SAs exist.
    pub half_open_full: u64,
    /// Authenticated or well-formed but unusable: late duplicates, responses to nothing
    /// outstanding, requests out of the window, invalid key exchange values.
    pub ignored: u64,
}
/// Default first retransmission timeout; it doubles at every retransmission.
pub const DEFAULT_RETRANSMIT_BASE: Duration = Duration::from_millis(500);
/// Default number of times a request is sent (the first time and the retransmissions) before
/// the peer is declared unreachable: with the default base, 0.5 + 1 + 2 + 4 + 8 = 15.5 s.
pub const DEFAULT_TRANSMISSIONS: u32 = 5;

/// One configured peer (a tunnel connection).
#[derive(Clone, Debug)]
pub struct PeerConfig {
    /// The connection's name (for status and messages).
    pub name: String,
    /// Our underlay address.
    pub local: IpAddr,
    /// The peer's underlay address.
    pub remote: IpAddr,
    /// The pre-shared key.
    pub psk: SecretBytes,
    /// Our identity: `None` for our address (ID_IPV4_ADDR / ID_IPV6_ADDR); `Some` holds an IP
    /// literal (an address identity), `user@domain` (ID_RFC822_ADDR) or a name (ID_FQDN).
    pub local_id: Option<String>,
    /// The identity the peer must prove, written like `local_id`; `None` for its address.
    pub remote_id: Option<String>,
    /// Our IKE proposals, in preference order.
    pub ike_proposals: Vec<IkeProposal>,
    /// Our ESP proposals, in preference order. ESN is never offered, whatever `esn` says.
    pub esp_proposals: Vec<EspProposal>,
    /// The traffic selectors of our side (the VNet address space, one per prefix).
    pub local_ts: Vec<TrafficSelector>,
    /// The traffic selectors of the peer's side (the connection's prefixes).
    pub remote_ts: Vec<TrafficSelector>,
    /// Whether we start the IKE SA (and start it again when it goes away).
    pub initiate: bool,
    /// IKE SA lifetime (rekeyed before, deleted at expiry); zero for none.
    pub ike_lifetime: Duration,
    /// Child SA lifetime; zero for none.
    pub child_lifetime: Duration,
    /// Child SA lifetime in bytes (as reported through [`Endpoint::child_bytes`]); zero for none.
    pub child_lifetime_bytes: u64,
    /// Time without anything from the peer after which a liveness check is sent; zero disables.
    pub dpd_timeout: Duration,
}

/// A datagram to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// The local address and port to send from.
    pub local: SocketAddr,
    /// The destination.
    pub remote: SocketAddr,
    /// The IKE message. On port 4500 (either end) the caller puts the 4-byte non-ESP marker in
    /// front of it.
    pub data: Vec<u8>,
}

/// Something the daemon must act on or log.
#[derive(Clone, Debug)]
pub enum Event {
    /// A Child SA pair is ready: install the inbound SA first, then move outbound traffic to it
    /// (make-before-break). `replaces` names the inbound SPI of the pair it supersedes on a
    /// rekey; that pair goes away later with [`Event::ChildSaDown`].
    ChildSaUp {
        /// The peer's index.
        peer: usize,
        /// Our SPI: ESP from the peer carries it.
        inbound_spi: u32,
        /// The peer's SPI: ESP we send carries it.
        outbound_spi: u32,
        /// The negotiated algorithms (never ESN).
        esp: EspProposal,
        /// Keys of the inbound SA.
        inbound_keys: EspKeys,
        /// Keys of the outbound SA.
        outbound_keys: EspKeys,
        /// Where ESP-in-UDP goes: the peer's address and its NAT-T port (4500).
        remote: SocketAddr,
        /// The inbound SPI of the pair this one replaces (a rekey).
        replaces: Option<u32>,
    },
    /// A Child SA pair is gone: remove both SAs.
    ChildSaDown {
        /// The peer's index.
        peer: usize,
        /// Our SPI.
        inbound_spi: u32,
        /// The peer's SPI.
        outbound_spi: u32,
    },
    /// The peer has an established IKE SA (it had none).
    IkeUp {
        /// The peer's index.
        peer: usize,
    },
    /// The peer has no established IKE SA any more.
    IkeDown {
        /// The peer's index.
        peer: usize,
        /// Why, for the log.
        reason: String,
    },
    /// A failure to log with the connection's name and to show in the status: no proposal
    /// chosen, authentication failed, traffic selectors unacceptable, the peer not answering.
    Error {
        /// The peer's index.
        peer: usize,
        /// What went wrong, in words.
        message: String,
    },
}

/// Per-peer state that outlives its IKE SAs.
struct Peer {
    config: PeerConfig,
    /// An [`Event::IkeUp`] was the last link event.
    up: bool,
    /// Why the link went down, for the next [`Event::IkeDown`].
    down_reason: Option<String>,
    /// When to start the next attempt (initiating peers without an IKE SA).
    reconnect_at: Option<Instant>,
    /// The pause before the attempt after the next failure.
    backoff: Duration,
    last_error: Option<String>,
}

impl Peer {
    /// A peer with nothing under way; an initiating one is due to start at `now`.
    fn new(mut config: PeerConfig, now: Instant) -> Peer {
        // Deadlines are `now` plus these: keep them far from overflowing an Instant.
        config.ike_lifetime = config.ike_lifetime.min(MAX_DURATION);
        config.child_lifetime = config.child_lifetime.min(MAX_DURATION);
        config.dpd_timeout = config.dpd_timeout.min(MAX_DURATION);
        Peer {
            reconnect_at: config.initiate.then_some(now),
            config,
            up: false,
            down_reason: None,
            backoff: Duration::ZERO,
            last_error: None,
        }
    }
}

/// The peers by index. A removed peer leaves its slot empty so that the others keep their
/// indices (the `peer` numbers of the API); only these accessors look into the slots, so no
/// lookup can find a removed peer.
struct Peers(Vec<Option<Peer>>);

impl Peers {
    /// The peer at `index`, unless unknown or removed.
    fn get(&self, index: usize) -> Option<&Peer> {
        self.0.get(index).and_then(Option::as_ref)
    }

    fn get_mut(&mut self, index: usize) -> Option<&mut Peer> {
        self.0.get_mut(index).and_then(Option::as_mut)
    }

    /// The present peers with their indices.
    fn iter(&self) -> impl Iterator<Item = (usize, &Peer)> + '_ {
        self.0
            .iter()
            .enumerate()
            .filter_map(|(index, slot)| slot.as_ref().map(|peer| (index, peer)))
    }

    fn iter_mut(&mut self) -> impl Iterator<Item = (usize, &mut Peer)> + '_ {
        self.0
            .iter_mut()
            .enumerate()
            .filter_map(|(index, slot)| slot.as_mut().map(|peer| (index, peer)))
    }

    /// Puts a peer in the lowest free slot and returns its index.
    fn insert(&mut self, peer: Peer) -> usize {
        if let Some(index) = self.0.iter().position(Option::is_none) {
            self.0[index] = Some(peer);
            index
        } else {
            self.0.push(Some(peer));
            self.0.len() - 1
        }
    }

    /// Frees the slot of a peer.
    fn remove(&mut self, index: usize) -> Option<Peer> {
        self.0.get_mut(index).and_then(Option::take)
    }

    /// The number of slots, free ones included.
    fn slots(&self) -> usize {
        self.0.len()
    }
}

/// The IKEv2 endpoint: every peer's IKE and Child SAs.
pub struct Endpoint {
    peers: Peers,
    /// IKE SAs by our SPI.
    sas: BTreeMap<u64, IkeSa>,
    /// Responder SAs by (peer address, initiator's SPI), to answer retransmitted IKE_SA_INIT
    /// requests (and to ignore late duplicates).
    half_open: HashMap<(IpAddr, u64), u64>,
    /// Child SAs by inbound SPI.
    children: BTreeMap<u32, ChildSa>,
    /// Inbound SPIs offered in exchanges still in flight.
    reserved_spis: BTreeSet<u32>,
    rng: Box<dyn Random + Send>,
    cookies: CookieJar,
    half_open_limit: usize,
    retransmit_base: Duration,
    transmissions: u32,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    /// Peers whose link state (up / down / reconnect) must be re-evaluated.
    dirty: BTreeSet<usize>,
    /// Peers with a newly authenticated IKE SA: check for duplicates.
    dup_check: BTreeSet<usize>,
    /// The latest time given to any entry point.
    now: Instant,
    closed: bool,
    counters: Counters,
}

/// How long a cookie secret lives (cookies stay valid for twice this).
const COOKIE_SECRET_LIFETIME: Duration = Duration::from_secs(120);
/// Longer lifetimes and timeouts are cut to this (ten years).
const MAX_DURATION: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

impl Endpoint {
    /// An endpoint for these peers (their indices are the `peer` numbers of the API; more come
    /// with [`Endpoint::add_peer`]).
    /// Initiating peers start their IKE SA at once (see [`Endpoint::poll_transmit`]).
    pub fn new(peers: Vec<PeerConfig>, mut rng: Box<dyn Random + Send>, now: Instant) -> Endpoint {
        let cookies = CookieJar::new(now, COOKIE_SECRET_LIFETIME, rng.as_mut());
        let peers = peers
            .into_iter()
            .map(|config| Some(Peer::new(config, now)))
            .collect();
        let mut endpoint = Endpoint {
            peers: Peers(peers),
            sas: BTreeMap::new(),
            half_open: HashMap::new(),
            children: BTreeMap::new(),
            reserved_spis: BTreeSet::new(),
            rng,
            cookies,
            half_open_limit: DEFAULT_HALF_OPEN_LIMIT,
            retransmit_base: DEFAULT_RETRANSMIT_BASE,
            transmissions: DEFAULT_TRANSMISSIONS,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            dirty: BTreeSet::new(),
            dup_check: BTreeSet::new(),
            now,
            closed: false,
            counters: Counters::default(),
        };
        endpoint.on_timeout(now);
        endpoint.finish();
        endpoint
    }

    /// Above this many half-open responder SAs, IKE_SA_INIT requests must carry a cookie
    /// (RFC 7296 2.6). Zero demands cookies always.
    pub fn set_half_open_limit(&mut self, limit: usize) {
        self.half_open_limit = limit;
    }

    /// Retransmission: the first timeout (doubled after each retransmission; at most an hour)
    /// and how many times a request is sent in all before the peer counts as unreachable
    /// (1 to 16).
    pub fn set_retransmission(&mut self, base: Duration, transmissions: u32) {
        self.retransmit_base = base.clamp(Duration::from_millis(1), Duration::from_secs(3600));
        self.transmissions = transmissions.clamp(1, 16);
    }

    /// What became of the datagrams received so far (see [`Counters`]).
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// The number of half-open responder SAs (IKE_SA_INIT answered, IKE_AUTH not yet).
    pub fn half_open(&self) -> usize {
        self.half_open_count()
    }

    fn half_open_count(&self) -> usize {
        self.sas
            .values()
            .filter(|s| s.state == state::IkeState::InitDone)
            .count()
    }

    /// The number of peer index slots: every index handed out so far, removed peers included
    /// (their [`Endpoint::status`] says not connected until [`Endpoint::add_peer`] reuses them).
    pub fn peer_count(&self) -> usize {
        self.peers.slots()
    }

    /// Adds a peer and returns its index (the lowest index freed by [`Endpoint::remove_peer`],
    /// else a new one). An initiating peer starts its IKE SA at once, as in [`Endpoint::new`];
    /// on a closed endpoint nothing starts.
    pub fn add_peer(&mut self, now: Instant, config: PeerConfig) -> usize {
        self.advance(now);
        let mut peer = Peer::new(config, self.now);
        if self.closed {
            peer.reconnect_at = None;
        }
        let index = self.peers.insert(peer);
        if !self.closed {
            self.reconnect_if_due(index, self.now);
            self.finish();
        }
        index
    }

    /// Removes a peer (its configuration is gone): each of its IKE SAs is deleted as
    /// [`Endpoint::close_all`] does (one Delete, not retransmitted: the peer need not wait for
    /// DPD, and we will not wait for its answer), its Child SAs are reported with
    /// [`Event::ChildSaDown`], then [`Event::IkeDown`] if it was up. Nothing of it is left: no
    /// timer, no half-open SA; datagrams from its address are those of an unknown peer, and no
    /// event names the index again until [`Endpoint::add_peer`] reuses it. The other peers are
    /// not touched. An unknown or already removed index is ignored.
    pub fn remove_peer(&mut self, now: Instant, peer: usize) {
        self.advance(now);
        let Some(removed) = self.peers.remove(peer) else {
            return;
        };
        self.on_remove_peer(peer, removed);
        if !self.closed {
            self.finish();
        }
    }

    /// One IKE message received on `local` from `remote` (the caller strips the non-ESP marker
    /// on port 4500).
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        data: &[u8],
    ) {
        self.advance(now);
        if self.closed {
            return;
        }
        self.on_datagram(local, remote, data);
        self.finish();
    }

    /// Fires every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.advance(now);
        if self.closed {
            return;
        }
        self.on_timeout(now);
        self.finish();
    }

    /// When [`Endpoint::handle_timeout`] must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.closed {
            return None;
        }
        self.next_timeout()
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// The data plane carried `bytes` on the Child SA pair with this inbound SPI (either
    /// direction): counted against the byte lifetime.
    pub fn child_bytes(&mut self, now: Instant, peer: usize, inbound_spi: u32, bytes: u64) {
        self.advance(now);
        if self.closed {
            return;
        }
        self.on_child_bytes(peer, inbound_spi, bytes);
        self.finish();
    }

    /// The data plane received authenticated ESP from the peer: it is alive, no liveness check
    /// is needed.
    pub fn child_alive(&mut self, now: Instant, peer: usize) {
        self.advance(now);
        for sa in self.sas.values_mut() {
            if sa.peer == peer && sa.is_established() {
                sa.last_heard = sa.last_heard.max(now);
            }
        }
    }

    /// Sends a Delete for every IKE SA (best effort, no retransmission), reports every Child SA
    /// and IKE SA down and stops: afterwards the endpoint ignores input and has no timers.
    pub fn close_all(&mut self, now: Instant) {
        self.advance(now);
        if self.closed {
            return;
        }
        self.on_close_all();
        self.finish();
        self.closed = true;
    }

    /// Keeps `now` monotonic whatever the caller passes.
    fn advance(&mut self, now: Instant) {
        if now > self.now {
            self.now = now;
        }
    }

    fn push_event(&mut self, event: Event) {
        if let Event::Error { peer, message } = &event {
            if let Some(p) = self.peers.get_mut(*peer) {
                p.last_error = Some(message.clone());
            }
        }
        self.events.push_back(event);
    }

    fn error(&mut self, peer: usize, message: String) {
        self.push_event(Event::Error { peer, message });
    }
}
