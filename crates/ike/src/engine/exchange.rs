//! Plumbing shared by every exchange: dispatch of received datagrams, protecting and opening
//! SK payloads, the request window (message IDs, retransmission, the cached response), and the
//! bookkeeping of SAs (SPIs, Child SA announcements, closing an IKE SA).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::state::{ChildSa, ChildState, IkeSa, IkeState, Outstanding, Request, Task};
use super::{Endpoint, Event, Transmit, IKE_PORT, NATT_PORT};
use crate::crypto::EspKeys;
use crate::wire::{
    decode_inner, encode_inner, Delete, ExchangeType, Flags, Header, Message, Payload, ProtocolId,
    SkPayload,
};

/// How an IKE SA ends.
pub(super) enum Close {
    /// Without a Delete: the peer deleted it, is unreachable, or restarted.
    Silent,
    /// With a Delete request (retransmitted as usual).
    Delete,
}

impl Endpoint {
    /// Dispatches one received datagram.
    pub(super) fn on_datagram(&mut self, local: SocketAddr, remote: SocketAddr, data: &[u8]) {
        self.counters.datagrams += 1;
        let Ok(msg) = Message::decode(data) else {
            self.counters.malformed += 1;
            return;
        };
        let h = msg.header;
        if h.exchange_type == ExchangeType::IKE_SA_INIT {
            if h.flags.response {
                self.on_init_response(remote, data, &msg);
            } else {
                self.on_init_request(local, remote, data, &msg);
            }
            return;
        }
        // The sender's I flag says whose SPI is ours: a message from the original initiator
        // names us in SPIr.
        let ours = if h.flags.initiator { h.spi_r } else { h.spi_i };
        let Some(mut sa) = self.sas.remove(&ours) else {
            self.counters.unknown_sa += 1;
            return;
        };
        self.on_protected(&mut sa, local, remote, data, &msg);
        self.put_back(sa);
    }

    /// Returns an SA taken out of the table, unless it is to be forgotten.
    pub(super) fn put_back(&mut self, sa: IkeSa) {
        if sa.discard {
            self.forget(&sa);
        } else {
            self.sas.insert(sa.local_spi, sa);
        }
    }

    /// Cleans the indexes of an SA that is gone.
    pub(super) fn forget(&mut self, sa: &IkeSa) {
        self.half_open.retain(|_, spi| *spi != sa.local_spi);
        if let Some(out) = &sa.outstanding {
            self.release_offer(&out.request);
        }
        self.dirty.insert(sa.peer);
    }

    fn on_protected(
        &mut self,
        sa: &mut IkeSa,
        local: SocketAddr,
        remote: SocketAddr,
        data: &[u8],
        msg: &Message,
    ) {
        let h = msg.header;
        // Messages from the peer carry the opposite of our I flag, and both SPIs.
        if h.flags.initiator == sa.initiator
            || h.spi_i != sa.spi_i()
            || h.spi_r != sa.spi_r()
            || sa.crypto.is_none()
        {
            self.counters.unknown_sa += 1;
            return;
        }
        let Some(payloads) = self.open(sa, data, msg) else {
            self.counters.auth_failed += 1;
            return;
        };
        let now = self.now;
        if h.flags.response {
            let matches = sa
                .outstanding
                .as_ref()
                .is_some_and(|o| o.message_id == h.message_id && o.exchange == h.exchange_type);
            if !matches || sa.state == IkeState::Closed {
                self.counters.ignored += 1;
                return;
            }
            sa.last_heard = now;
            if let Some(out) = sa.outstanding.take() {
                self.on_response(sa, out, &payloads);
            }
            return;
        }
        if h.message_id == sa.expected_request_id.wrapping_sub(1) {
            // A retransmission: answer from the cache.
            if let Some(cached) = sa.cached.as_ref().filter(|c| c.message_id == h.message_id) {
                let data = cached.data.clone();
                self.transmits.push_back(Transmit {
                    local,
                    remote,
                    data,
                });
            }
            return;
        }
        if h.message_id != sa.expected_request_id || sa.state == IkeState::Closed {
            return;
        }
        sa.last_heard = now;
        if sa.state != IkeState::InitDone {
            // NAT-T (RFC 7296 2.23): requests go where the peer's last request came from.
            sa.local = local;
            sa.remote = remote;
        }
        match h.exchange_type {
            ExchangeType::IKE_AUTH if sa.state == IkeState::InitDone => {
                self.on_auth_request(sa, &h, local, remote, &payloads);
            }
            ExchangeType::CREATE_CHILD_SA if sa.state != IkeState::InitDone => {
                let response = self.on_create_child_request(sa, &payloads);
                self.respond(sa, &h, local, remote, response);
            }
            ExchangeType::INFORMATIONAL if sa.state != IkeState::InitDone => {
                self.on_informational_request(sa, &h, local, remote, &payloads);
            }
            // A second IKE_AUTH (multiple authentication is not supported).
            ExchangeType::IKE_AUTH if sa.state != IkeState::InitDone => {
                let refusal = vec![Payload::Notify(crate::wire::Notify::new(
                    crate::wire::NotifyType::INVALID_SYNTAX,
                ))];
                self.respond(sa, &h, local, remote, refusal);
            }
            _ => {}
        }
    }

    /// Verifies and decrypts the SK payload of a message for `sa`.
    fn open(&self, sa: &IkeSa, data: &[u8], msg: &Message) -> Option<Vec<Payload>> {
        let Some(Payload::Sk(sk)) = msg.payloads.last() else {
            return None;
        };
        // Nothing but SK is expected outside the encryption after IKE_SA_INIT.
        if msg.payloads.len() != 1 {
            return None;
        }
        let (aad, body) = msg.split_encrypted(data)?;
        let plaintext = sa.crypto.as_ref()?.inbound.open(aad, body).ok()?;
        decode_inner(sk.first_inner_payload, &plaintext).ok()
    }

    /// Encodes and protects a message of `sa`.
    pub(super) fn seal(
        &mut self,
        sa: &mut IkeSa,
        exchange: ExchangeType,
        response: bool,
        message_id: u32,
        payloads: &[Payload],
    ) -> Option<Vec<u8>> {
        let header = Header::new(
            sa.spi_i(),
            sa.spi_r(),
            exchange,
            Flags {
                initiator: sa.initiator,
                version: false,
                response,
            },
            message_id,
        );
        let (first, plaintext) = encode_inner(payloads).ok()?;
        let crypto = sa.crypto.as_mut()?;
        let body_len = crypto.out.sealed_len(plaintext.len());
        let mut out = SkPayload::message_prefix(&header, first, body_len).ok()?;
        crypto
            .out
            .seal_append(&mut out, &plaintext, self.rng.as_mut())
            .ok()?;
        Some(out)
    }

    /// Answers the request `request` of `sa`: protects, caches and sends the response, and
    /// opens the window for the next request.
    pub(super) fn respond(
        &mut self,
        sa: &mut IkeSa,
        request: &Header,
        local: SocketAddr,
        remote: SocketAddr,
        payloads: Vec<Payload>,
    ) {
        sa.expected_request_id = request.message_id.wrapping_add(1);
        let Some(data) = self.seal(
            sa,
            request.exchange_type,
            true,
            request.message_id,
            &payloads,
        ) else {
            return;
        };
        sa.cached = Some(super::state::Cached {
            message_id: request.message_id,
            data: data.clone(),
        });
        self.transmits.push_back(Transmit {
            local,
            remote,
            data,
        });
    }

    /// Sends a request on `sa` and holds the window until its response.
    pub(super) fn send_request(
        &mut self,
        sa: &mut IkeSa,
        exchange: ExchangeType,
        payloads: &[Payload],
        request: Request,
    ) {
        let message_id = sa.next_request_id;
        let Some(data) = self.seal(sa, exchange, false, message_id, payloads) else {
            self.release_offer(&request);
            return;
        };
        sa.next_request_id = message_id.wrapping_add(1);
        self.transmits.push_back(Transmit {
            local: sa.local,
            remote: sa.remote,
            data: data.clone(),
        });
        sa.outstanding = Some(Outstanding {
            message_id,
            exchange,
            data,
            sent: 1,
            next_at: self.now + self.retransmit_base,
            request,
        });
    }

    /// Sends a request that is not retransmitted and whose response does not matter (a
    /// farewell Delete, a notification after a failed authentication).
    pub(super) fn send_oneshot(
        &mut self,
        sa: &mut IkeSa,
        exchange: ExchangeType,
        payloads: &[Payload],
    ) {
        let message_id = sa.next_request_id;
        if let Some(data) = self.seal(sa, exchange, false, message_id, payloads) {
            sa.next_request_id = message_id.wrapping_add(1);
            self.transmits.push_back(Transmit {
                local: sa.local,
                remote: sa.remote,
                data,
            });
        }
    }

    /// The timeout after the `sent`-th transmission of a request.
    fn retransmit_timeout(&self, sent: u32) -> Duration {
        let doublings = sent.saturating_sub(1).min(16);
        self.retransmit_base.saturating_mul(1u32 << doublings)
    }

    /// How long a request is retried in all; closed SAs linger this long to answer
    /// retransmissions.
    pub(super) fn linger(&self) -> Duration {
        (1..=self.transmissions).fold(Duration::ZERO, |total, sent| {
            total.saturating_add(self.retransmit_timeout(sent))
        })
    }

    /// Retransmits the request of `sa` if due, or gives up on the peer.
    pub(super) fn retransmit_if_due(&mut self, sa: &mut IkeSa, now: Instant) {
        let Some(out) = sa.outstanding.as_mut() else {
            return;
        };
        if out.next_at > now {
            return;
        }
        if out.sent < self.transmissions {
            out.sent += 1;
            let sent = out.sent;
            let data = out.data.clone();
            let timeout = self.retransmit_timeout(sent);
            if let Some(out) = sa.outstanding.as_mut() {
                out.next_at = now + timeout;
            }
            self.transmits.push_back(Transmit {
                local: sa.local,
                remote: sa.remote,
                data,
            });
            return;
        }
        if let Some(out) = sa.outstanding.take() {
            self.request_timed_out(sa, out);
        }
    }

    /// Starts queued requests while the window is free.
    pub(super) fn pump(&mut self, sa: &mut IkeSa) {
        while sa.outstanding.is_none() && !sa.discard {
            let Some(task) = sa.queue.pop_front() else {
                return;
            };
            self.start_task(sa, task);
        }
    }

    fn start_task(&mut self, sa: &mut IkeSa, task: Task) {
        match task {
            Task::RekeyChild { spi, group } => {
                if sa.state == IkeState::Established {
                    self.start_child_rekey(sa, spi, group);
                }
            }
            Task::CreateChild { group } => {
                if sa.state == IkeState::Established {
                    self.start_child_create(sa, group);
                }
            }
            Task::RekeyIke { group } => {
                if sa.state == IkeState::Established {
                    self.start_ike_rekey(sa, group);
                }
            }
            Task::DeleteChildren(spis) => self.start_child_delete(sa, spis),
            Task::DeleteIke => {
                if sa.crypto.is_some() {
                    let delete = Payload::Delete(Delete {
                        protocol: ProtocolId::IKE,
                        spis: Vec::new(),
                    });
                    self.send_request(
                        sa,
                        ExchangeType::INFORMATIONAL,
                        &[delete],
                        Request::DeleteIke,
                    );
                } else {
                    sa.discard = true;
                }
            }
            Task::Dpd => {
                if sa.state == IkeState::Established {
                    self.send_request(sa, ExchangeType::INFORMATIONAL, &[], Request::Dpd);
                }
            }
        }
    }

    /// The peer answered none of the transmissions of a request.
    fn request_timed_out(&mut self, sa: &mut IkeSa, out: Outstanding) {
        self.release_offer(&out.request);
        match out.request {
            Request::DeleteIke => {
                sa.discard = true;
            }
            Request::Init | Request::Auth(_) => {
                let what = if matches!(out.request, Request::Init) {
                    "IKE_SA_INIT"
                } else {
                    "IKE_AUTH"
                };
                let message = format!(
                    "no response from {} to {what} after {} transmissions over {:.1} s",
                    sa.remote.ip(),
                    out.sent,
                    self.linger().as_secs_f64()
                );
                self.error(sa.peer, message);
                sa.discard = true;
            }
            _ => {
                if sa.state == IkeState::Established {
                    let what = match out.request {
                        Request::Dpd => "liveness check",
                        Request::CreateChild(_) => "CREATE_CHILD_SA (Child SA rekey)",
                        Request::RekeyIke(_) => "CREATE_CHILD_SA (IKE SA rekey)",
                        _ => "INFORMATIONAL (delete)",
                    };
                    let message = format!(
                        "peer {} unreachable: no response to {what} after {} transmissions over {:.1} s",
                        sa.remote.ip(),
                        out.sent,
                        self.linger().as_secs_f64()
                    );
                    self.error(sa.peer, message.clone());
                    self.close_sa(sa, Close::Silent, message);
                } else {
                    // A rekeyed or redundant SA: its Child SAs live elsewhere.
                    self.drop_children_of(sa.local_spi);
                    sa.discard = true;
                }
            }
        }
    }

    /// Ends an IKE SA and its Child SAs. `reason` is for [`Event::IkeDown`] if the peer has no
    /// other established IKE SA.
    pub(super) fn close_sa(&mut self, sa: &mut IkeSa, how: Close, reason: String) {
        self.drop_children_of(sa.local_spi);
        if let Some(out) = sa.outstanding.as_ref() {
            self.release_offer(&out.request);
        }
        if let Some(peer) = self.peers.get_mut(sa.peer) {
            peer.down_reason = Some(reason);
        }
        self.dirty.insert(sa.peer);
        sa.queue.clear();
        sa.rekey_at = None;
        sa.expire_at = None;
        match how {
            Close::Silent => {
                sa.outstanding = None;
                sa.state = IkeState::Closed;
                sa.remove_at = Some(self.now + self.linger());
            }
            Close::Delete => {
                sa.state = IkeState::Deleting;
                sa.remove_at = None;
                if sa.outstanding.is_some() {
                    // The Delete follows the response (or the timeout) of the request in
                    // flight, which will find the SA deleting and do nothing else.
                    sa.queue.push_back(Task::DeleteIke);
                } else {
                    self.start_task(sa, Task::DeleteIke);
                }
            }
        }
    }

    /// Forgets another IKE SA of a peer at once, with a farewell Delete if it has keys (the
    /// peer restarted: INITIAL_CONTACT).
    pub(super) fn discard_with_delete(&mut self, mut other: IkeSa) {
        if matches!(
            other.state,
            IkeState::Established | IkeState::Rekeyed | IkeState::Redundant | IkeState::Deleting
        ) {
            let delete = Payload::Delete(Delete {
                protocol: ProtocolId::IKE,
                spis: Vec::new(),
            });
            self.send_oneshot(&mut other, ExchangeType::INFORMATIONAL, &[delete]);
        }
        self.drop_children_of(other.local_spi);
        self.forget(&other);
    }

    /// A fresh, unused IKE SPI.
    pub(super) fn new_ike_spi(&mut self) -> u64 {
        loop {
            let mut b = [0u8; 8];
            self.rng.fill(&mut b);
            let spi = u64::from_be_bytes(b);
            if spi != 0 && !self.sas.contains_key(&spi) {
                return spi;
            }
        }
    }

    /// A fresh, unused inbound Child SPI in 256..=u32::MAX, reserved until released or used.
    pub(super) fn new_child_spi(&mut self) -> u32 {
        loop {
            let mut b = [0u8; 4];
            self.rng.fill(&mut b);
            let spi = u32::from_be_bytes(b);
            if spi >= 256 && !self.children.contains_key(&spi) && !self.reserved_spis.contains(&spi)
            {
                self.reserved_spis.insert(spi);
                return spi;
            }
        }
    }

    /// A 32-byte nonce (RFC 7296 2.10: at least half the PRF key; 32 covers every PRF here).
    pub(super) fn new_nonce(&mut self) -> Vec<u8> {
        let mut n = vec![0u8; 32];
        self.rng.fill(&mut n);
        n
    }

    /// A random duration in `0..max`.
    pub(super) fn jitter(&mut self, max: Duration) -> Duration {
        let nanos = u64::try_from(max.as_nanos()).unwrap_or(u64::MAX);
        if nanos == 0 {
            return Duration::ZERO;
        }
        let mut b = [0u8; 8];
        self.rng.fill(&mut b);
        Duration::from_nanos(u64::from_be_bytes(b) % nanos)
    }

    /// Soft and hard deadlines for a lifetime starting now: rekey at 90% minus up to 10%,
    /// expire at 100%. `None` for a zero lifetime.
    pub(super) fn lifetime_deadlines(
        &mut self,
        lifetime: Duration,
    ) -> (Option<Instant>, Option<Instant>) {
        if lifetime.is_zero() {
            return (None, None);
        }
        let soft = lifetime
            .mul_f64(0.9)
            .saturating_sub(self.jitter(lifetime / 10));
        (Some(self.now + soft), Some(self.now + lifetime))
    }

    /// The same for a byte lifetime.
    pub(super) fn byte_limits(&mut self, bytes: u64) -> (Option<u64>, Option<u64>) {
        if bytes == 0 {
            return (None, None);
        }
        let tenth = bytes / 10;
        let mut b = [0u8; 8];
        self.rng.fill(&mut b);
        let jitter = if tenth == 0 {
            0
        } else {
            u64::from_be_bytes(b) % tenth
        };
        (
            Some((bytes / 10 * 9).saturating_sub(jitter).max(1)),
            Some(bytes),
        )
    }

    /// Records a new Child SA pair (not announced yet). `sa` is the IKE SA whose exchange made
    /// it; `owner` the IKE SA it belongs to (its successor if it was rekeyed meanwhile).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn add_child(
        &mut self,
        sa: &IkeSa,
        inbound_spi: u32,
        outbound_spi: u32,
        esp: crate::crypto::EspProposal,
        inbound_keys: EspKeys,
        outbound_keys: EspKeys,
        local_ts: Vec<crate::wire::TrafficSelector>,
        remote_ts: Vec<crate::wire::TrafficSelector>,
        state: ChildState,
        replaces: Option<u32>,
    ) {
        self.reserved_spis.remove(&inbound_spi);
        let Some(config) = self.peers.get(sa.peer).map(|p| &p.config) else {
            return;
        };
        let (lifetime, lifetime_bytes) = (config.child_lifetime, config.child_lifetime_bytes);
        let (rekey_at, expire_at) = self.lifetime_deadlines(lifetime);
        let (rekey_bytes, expire_bytes) = self.byte_limits(lifetime_bytes);
        let owner = self.resolve_owner(sa);
        let remote = esp_remote(sa.remote);
        self.children.insert(
            inbound_spi,
            ChildSa {
                peer: sa.peer,
                ike: owner,
                inbound_spi,
                outbound_spi,
                esp,
                local_ts,
                remote_ts,
                created: self.now,
                rekey_at,
                expire_at,
                bytes: 0,
                rekey_bytes,
                expire_bytes,
                state,
                keys: Some((inbound_keys, outbound_keys)),
                announced: false,
                replaces,
                remote,
            },
        );
    }

    /// The IKE SA that now owns what `sa` created: `sa`, or the end of its successor chain.
    fn resolve_owner(&self, sa: &IkeSa) -> u64 {
        let mut spi = sa.local_spi;
        let mut next = sa.successor;
        let mut hops = 0;
        while let Some(s) = next {
            spi = s;
            next = self.sas.get(&s).and_then(|x| x.successor);
            hops += 1;
            if hops > 8 {
                break;
            }
        }
        spi
    }

    /// Announces a Child SA pair ([`Event::ChildSaUp`]).
    pub(super) fn announce(&mut self, spi: u32) {
        let Some(child) = self.children.get_mut(&spi) else {
            return;
        };
        let Some((inbound_keys, outbound_keys)) = child.keys.take() else {
            return;
        };
        child.announced = true;
        let replaces = child
            .replaces
            .filter(|old| self.children.get(old).is_some_and(|c| c.announced));
        let Some(child) = self.children.get(&spi) else {
            return;
        };
        let event = Event::ChildSaUp {
            peer: child.peer,
            inbound_spi: child.inbound_spi,
            outbound_spi: child.outbound_spi,
            esp: child.esp,
            inbound_keys,
            outbound_keys,
            remote: child.remote,
            replaces,
        };
        self.push_event(event);
    }

    /// Removes a Child SA pair, reporting it if it was announced.
    pub(super) fn remove_child(&mut self, spi: u32) {
        if let Some(child) = self.children.remove(&spi) {
            if child.announced {
                self.push_event(Event::ChildSaDown {
                    peer: child.peer,
                    inbound_spi: child.inbound_spi,
                    outbound_spi: child.outbound_spi,
                });
            }
        }
    }

    /// Removes every Child SA pair of an IKE SA.
    pub(super) fn drop_children_of(&mut self, ike: u64) {
        let spis: Vec<u32> = self
            .children
            .values()
            .filter(|c| c.ike == ike)
            .map(|c| c.inbound_spi)
            .collect();
        for spi in spis {
            self.remove_child(spi);
        }
    }

    /// Queues a task on an IKE SA (taken out of the table or not), unless already queued.
    pub(super) fn queue_task(&mut self, ike: u64, task: Task) {
        if let Some(sa) = self.sas.get_mut(&ike) {
            if !sa.queue.contains(&task) {
                sa.queue.push_back(task);
            }
        }
    }
}

/// Where ESP-in-UDP goes for an IKE peer address: its NAT-T port (4500) unless a NAT maps it
/// elsewhere.
pub(super) fn esp_remote(ike_remote: SocketAddr) -> SocketAddr {
    if ike_remote.port() == IKE_PORT {
        SocketAddr::new(ike_remote.ip(), NATT_PORT)
    } else {
        ike_remote
    }
}
