//! IKE_SA_INIT and IKE_AUTH (RFC 7296 1.2, 2.6, 2.15, 2.23), both roles.

use std::net::SocketAddr;

use super::exchange::Close;
use super::proposals::{
    chosen, describe, describe_id, describe_ts, esp_from_wire, esp_offer, identity, ike_from_wire,
    ike_offer, same_identity, select, ts_within,
};
use super::state::{
    nonce_less, ChildOffer, ChildState, Handshake, IkeSa, IkeState, Outstanding, Request, SaCrypto,
};
use super::{Endpoint, Event, PeerConfig, Transmit, IKE_PORT, MAX_HALF_OPEN, NATT_PORT};
use crate::crypto::{
    nat_detection_hash, psk_auth, signed_octets, verify_psk_auth, ChildSaKeys, DhGroup, IkeSaKeys,
    SharedSecret, NAT_DETECTION_HASH_LEN,
};
use crate::wire::{
    self, AuthMethod, AuthPayload, ExchangeType, Flags, Header, KePayload, Message, Notify,
    NotifyType, Payload, Proposal, SaPayload, Spi, TrafficSelector, TsPayload,
};

/// A Child SA the responder accepted.
pub(super) struct ChildAccept {
    pub our_spi: u32,
    pub their_spi: u32,
    pub esp: crate::crypto::EspProposal,
    /// The chosen proposal with our SPI, for the response.
    pub choice: Proposal,
    /// Narrowed TSi / TSr.
    pub ts_i: Vec<TrafficSelector>,
    pub ts_r: Vec<TrafficSelector>,
    pub inbound: crate::crypto::EspKeys,
    pub outbound: crate::crypto::EspKeys,
    /// Our KE payload (PFS).
    pub ke: Option<KePayload>,
}

/// Why the responder refused a Child SA: the notification to send and, for the log, what
/// went wrong.
pub(super) struct ChildReject {
    pub notify: Notify,
    pub message: Option<String>,
}

impl ChildReject {
    fn new(notify: Notify, message: Option<String>) -> ChildReject {
        ChildReject { notify, message }
    }
}

fn first<'a, T>(
    payloads: &'a [Payload],
    pick: impl Fn(&'a Payload) -> Option<&'a T>,
) -> Option<&'a T> {
    payloads.iter().find_map(pick)
}

pub(super) fn find_notify(payloads: &[Payload], t: NotifyType) -> Option<&Notify> {
    payloads.iter().find_map(|p| match p {
        Payload::Notify(n) if n.notify_type == t => Some(n),
        _ => None,
    })
}

/// The first error notification (type below 16384) of a response.
pub(super) fn error_notify(payloads: &[Payload]) -> Option<&Notify> {
    payloads.iter().find_map(|p| match p {
        Payload::Notify(n) if n.notify_type.is_error() => Some(n),
        _ => None,
    })
}

pub(super) fn sa_payload(payloads: &[Payload]) -> Option<&SaPayload> {
    first(payloads, |p| match p {
        Payload::Sa(s) => Some(s),
        _ => None,
    })
}

pub(super) fn ke_payload(payloads: &[Payload]) -> Option<&KePayload> {
    first(payloads, |p| match p {
        Payload::Ke(k) => Some(k),
        _ => None,
    })
}

pub(super) fn nonce_payload(payloads: &[Payload]) -> Option<&Vec<u8>> {
    first(payloads, |p| match p {
        Payload::Nonce(n) => Some(n),
        _ => None,
    })
}

pub(super) fn ts_payloads(payloads: &[Payload]) -> Option<(&TsPayload, &TsPayload)> {
    let tsi = first(payloads, |p| match p {
        Payload::TsI(t) => Some(t),
        _ => None,
    })?;
    let tsr = first(payloads, |p| match p {
        Payload::TsR(t) => Some(t),
        _ => None,
    })?;
    Some((tsi, tsr))
}

impl Endpoint {
    fn config(&self, peer: usize) -> Option<PeerConfig> {
        self.peers.get(peer).map(|p| p.config.clone())
    }

    /// Starts a new IKE SA with a peer (IKE_SA_INIT request).
    pub(super) fn initiate(&mut self, peer: usize) {
        let Some(config) = self.config(peer) else {
            return;
        };
        let Some(first) = config.ike_proposals.first() else {
            self.error(
                peer,
                "cannot initiate: no IKE proposals configured".to_owned(),
            );
            return;
        };
        let group = first.dh;
        let Ok((dh, _)) = group.generate(self.rng.as_mut()) else {
            self.error(
                peer,
                format!("cannot initiate: {group} key generation failed"),
            );
            return;
        };
        let spi = self.new_ike_spi();
        let mut sa = IkeSa::new(
            peer,
            spi,
            0,
            true,
            IkeState::InitSent,
            SocketAddr::new(config.local, IKE_PORT),
            SocketAddr::new(config.remote, IKE_PORT),
            self.now,
        );
        sa.nonce_i = self.new_nonce();
        sa.handshake = Some(Handshake {
            dh: Some(dh),
            ke_group: group,
            offered: ike_offer(&config.ike_proposals, Spi::None),
            cookie: None,
            ke_retries: 0,
            cookie_retries: 0,
            request: Vec::new(),
            response: Vec::new(),
        });
        self.send_init(&mut sa);
        self.sas.insert(spi, sa);
        self.dirty.insert(peer);
    }

    /// Sends (again, after COOKIE or INVALID_KE_PAYLOAD) the IKE_SA_INIT request.
    fn send_init(&mut self, sa: &mut IkeSa) {
        let mut fake = [0u8; NAT_DETECTION_HASH_LEN];
        self.rng.fill(&mut fake);
        let Some(hs) = sa.handshake.as_mut() else {
            return;
        };
        let Some(dh) = hs.dh.as_ref() else {
            return;
        };
        let mut payloads = Vec::new();
        if let Some(cookie) = &hs.cookie {
            payloads.push(Payload::Notify(Notify::with_data(
                NotifyType::COOKIE,
                cookie.clone(),
            )));
        }
        payloads.push(Payload::Sa(SaPayload {
            proposals: hs.offered.clone(),
        }));
        payloads.push(Payload::Ke(KePayload {
            group: wire::DhGroup(hs.ke_group.id()),
            data: dh.public_value().to_vec(),
        }));
        payloads.push(Payload::Nonce(sa.nonce_i.clone()));
        // Like strongSwan with kernel-libipsec: a source hash that cannot match, so that both
        // ends see a NAT and use UDP encapsulation.
        payloads.push(Payload::Notify(Notify::with_data(
            NotifyType::NAT_DETECTION_SOURCE_IP,
            fake,
        )));
        payloads.push(Payload::Notify(Notify::with_data(
            NotifyType::NAT_DETECTION_DESTINATION_IP,
            nat_detection_hash(sa.local_spi, 0, sa.remote),
        )));
        let header = Header::new(
            sa.local_spi,
            0,
            ExchangeType::IKE_SA_INIT,
            Flags {
                initiator: true,
                ..Flags::default()
            },
            0,
        );
        let Ok(data) = (Message { header, payloads }).encode() else {
            return;
        };
        hs.request = data.clone();
        self.transmits.push_back(Transmit {
            local: sa.local,
            remote: sa.remote,
            data: data.clone(),
        });
        sa.outstanding = Some(Outstanding {
            message_id: 0,
            exchange: ExchangeType::IKE_SA_INIT,
            data,
            sent: 1,
            next_at: self.now + self.retransmit_base,
            request: Request::Init,
        });
    }

    /// An IKE_SA_INIT response to one of our requests.
    pub(super) fn on_init_response(&mut self, remote: SocketAddr, data: &[u8], msg: &Message) {
        let h = msg.header;
        if h.message_id != 0 || h.flags.initiator {
            self.counters.malformed += 1;
            return;
        }
        let Some(mut sa) = self.sas.remove(&h.spi_i) else {
            self.counters.unknown_sa += 1;
            return;
        };
        if sa.state == IkeState::InitSent
            && sa.initiator
            && remote.ip().to_canonical() == sa.remote.ip().to_canonical()
        {
            self.process_init_response(&mut sa, data, msg);
        } else {
            self.counters.ignored += 1;
        }
        self.put_back(sa);
    }

    fn process_init_response(&mut self, sa: &mut IkeSa, data: &[u8], msg: &Message) {
        let peer = sa.peer;
        let Some(config) = self.config(peer) else {
            return;
        };
        let Some(hs) = sa.handshake.as_mut() else {
            return;
        };
        if let Some(cookie) = msg.notify(NotifyType::COOKIE) {
            if hs.cookie_retries < 3 && (1..=64).contains(&cookie.data.len()) {
                hs.cookie = Some(cookie.data.clone());
                hs.cookie_retries += 1;
                self.send_init(sa);
            }
            return;
        }
        if let Some(n) = msg.notify(NotifyType::INVALID_KE_PAYLOAD) {
            let requested = n.invalid_ke_group();
            let usable = requested
                .and_then(|g| DhGroup::from_id(g.0))
                .filter(|g| *g != hs.ke_group && config.ike_proposals.iter().any(|p| p.dh == *g));
            match usable {
                Some(group) if hs.ke_retries < 2 => {
                    let Ok((dh, _)) = group.generate(self.rng.as_mut()) else {
                        return;
                    };
                    hs.ke_retries += 1;
                    hs.ke_group = group;
                    hs.dh = Some(dh);
                    self.send_init(sa);
                }
                _ => {
                    let asked = requested.map_or("no valid group".to_owned(), |g| g.to_string());
                    let message = format!(
                        "no proposal chosen: peer asked for Diffie-Hellman group {asked} (INVALID_KE_PAYLOAD), which we do not offer; we offered {}",
                        describe(&hs.offered)
                    );
                    self.error(peer, message);
                    sa.outstanding = None;
                    sa.discard = true;
                }
            }
            return;
        }
        if msg.notify(NotifyType::NO_PROPOSAL_CHOSEN).is_some() {
            let message = format!(
                "no proposal chosen: we offered {} (IKE), peer accepted none of them (NO_PROPOSAL_CHOSEN)",
                describe(&hs.offered)
            );
            self.error(peer, message);
            sa.outstanding = None;
            sa.discard = true;
            return;
        }
        if let Some(n) = msg.notifies().find(|n| n.notify_type.is_error()) {
            let message = format!("IKE_SA_INIT failed: peer answered {}", n.notify_type);
            self.error(peer, message);
            sa.outstanding = None;
            sa.discard = true;
            return;
        }
        // A normal response; anything malformed is ignored (it is unauthenticated) and the
        // request retransmitted.
        let h = msg.header;
        let (Some(Payload::Sa(sa_p)), Some(Payload::Ke(ke)), Some(Payload::Nonce(nr))) = (
            msg.payload(wire::PayloadType::SA),
            msg.payload(wire::PayloadType::KE),
            msg.payload(wire::PayloadType::NONCE),
        ) else {
            return;
        };
        let [choice] = sa_p.proposals.as_slice() else {
            return;
        };
        if h.spi_r == 0 || chosen(&hs.offered, choice).is_none() {
            return;
        }
        let Some(proposal) = ike_from_wire(choice) else {
            return;
        };
        if proposal.dh != hs.ke_group || ke.group.0 != proposal.dh.id() {
            return;
        }
        let Some(dh) = hs.dh.as_ref() else {
            return;
        };
        let Ok(g_ir) = proposal.dh.shared(dh, &ke.data) else {
            return;
        };
        let Ok(keys) = IkeSaKeys::derive(&proposal, &g_ir, &sa.nonce_i, nr, sa.local_spi, h.spi_r)
        else {
            return;
        };
        let Some(crypto) = SaCrypto::new(keys, true) else {
            return;
        };
        hs.response = data.to_vec();
        hs.dh = None;
        sa.remote_spi = h.spi_r;
        sa.crypto = Some(crypto);
        sa.proposal = Some(proposal);
        sa.nonce_r = nr.clone();
        sa.outstanding = None;
        sa.next_request_id = 1;
        // Always behave as behind a NAT (docs/STRONGSWAN.md): float to 4500.
        sa.local = SocketAddr::new(sa.local.ip(), NATT_PORT);
        sa.remote = SocketAddr::new(sa.remote.ip(), NATT_PORT);
        sa.state = IkeState::AuthSent;
        self.send_auth(sa, &config);
    }

    /// An IKE_SA_INIT request from a peer.
    pub(super) fn on_init_request(
        &mut self,
        local: SocketAddr,
        remote: SocketAddr,
        data: &[u8],
        msg: &Message,
    ) {
        let h = msg.header;
        if h.message_id != 0 || !h.flags.initiator || h.spi_r != 0 || h.spi_i == 0 {
            self.counters.malformed += 1;
            return;
        }
        let from = remote.ip().to_canonical();
        if let Some(spi) = self.half_open.get(&(from, h.spi_i)) {
            // A retransmission: repeat our response while the SA is half-open; later, and
            // for an SA we keep, ignore it (a delayed duplicate must not start another SA).
            if let Some(hs) = self
                .sas
                .get(spi)
                .filter(|sa| sa.state == IkeState::InitDone)
                .and_then(|sa| sa.handshake.as_ref())
            {
                if hs.request == data {
                    let data = hs.response.clone();
                    self.transmits.push_back(Transmit {
                        local,
                        remote,
                        data,
                    });
                    return;
                }
            }
            self.counters.ignored += 1;
            return;
        }
        let Some(peer) = self
            .peers
            .iter()
            .find(|(_, p)| p.config.remote.to_canonical() == from)
            .map(|(index, _)| index)
        else {
            self.counters.unknown_peer += 1;
            return;
        };
        let (Some(Payload::Sa(sa_p)), Some(Payload::Ke(ke)), Some(Payload::Nonce(ni))) = (
            msg.payload(wire::PayloadType::SA),
            msg.payload(wire::PayloadType::KE),
            msg.payload(wire::PayloadType::NONCE),
        ) else {
            self.counters.malformed += 1;
            return;
        };
        let now = self.now;
        let half_open = self.half_open_count();
        if half_open >= MAX_HALF_OPEN {
            self.counters.half_open_full += 1;
            return;
        }
        if half_open >= self.half_open_limit {
            let valid = msg
                .notify(NotifyType::COOKIE)
                .is_some_and(|c| self.cookies.verify(now, &c.data, ni, from, h.spi_i));
            if !valid {
                let cookie = self
                    .cookies
                    .cookie(now, self.rng.as_mut(), ni, from, h.spi_i);
                self.init_error(
                    local,
                    remote,
                    &h,
                    Notify::with_data(NotifyType::COOKIE, cookie),
                );
                self.counters.cookies_sent += 1;
                return;
            }
        }
        let Some(config) = self.config(peer) else {
            return;
        };
        let policy = ike_offer(&config.ike_proposals, Spi::None);
        let choice = select(sa_p, &policy, Some(ke.group.0));
        let Some((choice, proposal)) = choice.and_then(|c| ike_from_wire(&c).map(|p| (c, p)))
        else {
            let message = format!(
                "no proposal chosen: peer {} offered {} (IKE), we accept {}",
                remote.ip(),
                describe(&sa_p.proposals),
                describe(&policy)
            );
            self.error(peer, message);
            self.init_error(
                local,
                remote,
                &h,
                Notify::new(NotifyType::NO_PROPOSAL_CHOSEN),
            );
            return;
        };
        if ke.group.0 != proposal.dh.id() {
            let group = wire::DhGroup(proposal.dh.id());
            self.init_error(local, remote, &h, Notify::invalid_ke_payload(group));
            return;
        }
        let Ok((dh, our_ke)) = proposal.dh.generate(self.rng.as_mut()) else {
            return;
        };
        let Ok(g_ir) = proposal.dh.shared(&dh, &ke.data) else {
            // An invalid public value: nothing sensible to answer.
            self.counters.ignored += 1;
            return;
        };
        let spi = self.new_ike_spi();
        let nr = self.new_nonce();
        let Ok(keys) = IkeSaKeys::derive(&proposal, &g_ir, ni, &nr, h.spi_i, spi) else {
            return;
        };
        let Some(crypto) = SaCrypto::new(keys, false) else {
            return;
        };
        let mut fake = [0u8; NAT_DETECTION_HASH_LEN];
        self.rng.fill(&mut fake);
        let payloads = vec![
            Payload::Sa(SaPayload {
                proposals: vec![Proposal {
                    spi: Spi::None,
                    ..choice
                }],
            }),
            Payload::Ke(KePayload {
                group: ke.group,
                data: our_ke,
            }),
            Payload::Nonce(nr.clone()),
            Payload::Notify(Notify::with_data(NotifyType::NAT_DETECTION_SOURCE_IP, fake)),
            Payload::Notify(Notify::with_data(
                NotifyType::NAT_DETECTION_DESTINATION_IP,
                nat_detection_hash(h.spi_i, spi, remote),
            )),
        ];
        let header = Header::new(
            h.spi_i,
            spi,
            ExchangeType::IKE_SA_INIT,
            Flags {
                initiator: false,
                version: false,
                response: true,
            },
            0,
        );
        let Ok(response) = (Message { header, payloads }).encode() else {
            return;
        };
        self.transmits.push_back(Transmit {
            local,
            remote,
            data: response.clone(),
        });
        let mut sa = IkeSa::new(
            peer,
            spi,
            h.spi_i,
            false,
            IkeState::InitDone,
            local,
            remote,
            now,
        );
        sa.crypto = Some(crypto);
        sa.proposal = Some(proposal);
        sa.nonce_i = ni.clone();
        sa.nonce_r = nr;
        sa.expected_request_id = 1;
        sa.remove_at = Some(now + self.linger() * 2);
        sa.handshake = Some(Handshake {
            dh: None,
            ke_group: proposal.dh,
            offered: Vec::new(),
            cookie: None,
            ke_retries: 0,
            cookie_retries: 0,
            request: data.to_vec(),
            response,
        });
        self.half_open.insert((from, h.spi_i), spi);
        self.sas.insert(spi, sa);
        self.dirty.insert(peer);
    }

    /// A stateless IKE_SA_INIT response with one notification (COOKIE, INVALID_KE_PAYLOAD,
    /// NO_PROPOSAL_CHOSEN); the responder's SPI is zero, no state is kept.
    fn init_error(&mut self, local: SocketAddr, remote: SocketAddr, request: &Header, n: Notify) {
        let header = Header::response_to(request);
        if let Ok(data) = (Message {
            header,
            payloads: vec![Payload::Notify(n)],
        })
        .encode()
        {
            self.transmits.push_back(Transmit {
                local,
                remote,
                data,
            });
        }
    }

    /// Sends our IKE_AUTH request (after the IKE_SA_INIT response).
    fn send_auth(&mut self, sa: &mut IkeSa, config: &PeerConfig) {
        let (Some(crypto), Some(hs), Some(proposal)) =
            (sa.crypto.as_ref(), sa.handshake.as_ref(), sa.proposal)
        else {
            return;
        };
        let id_i = identity(config.local_id.as_deref(), config.local);
        let octets = signed_octets(
            proposal.prf,
            &hs.request,
            &sa.nonce_r,
            &crypto.keys.sk_pi,
            &id_i.body(),
        );
        let auth = psk_auth(proposal.prf, config.psk.as_bytes(), &octets);
        // INITIAL_CONTACT: we have nothing established with this peer.
        let initial_contact = !self
            .sas
            .values()
            .any(|s| s.peer == sa.peer && s.is_established());
        let mut payloads = vec![Payload::IdI(id_i)];
        if initial_contact {
            payloads.push(Payload::Notify(Notify::new(NotifyType::INITIAL_CONTACT)));
        }
        if config.remote_id.is_some() {
            payloads.push(Payload::IdR(identity(
                config.remote_id.as_deref(),
                config.remote,
            )));
        }
        payloads.push(Payload::Auth(AuthPayload {
            method: AuthMethod::SHARED_KEY_MIC,
            data: auth,
        }));
        let spi = self.new_child_spi();
        let offered = esp_offer(&config.esp_proposals, spi, false);
        payloads.push(Payload::Sa(SaPayload {
            proposals: offered.clone(),
        }));
        payloads.push(Payload::TsI(TsPayload {
            selectors: config.local_ts.clone(),
        }));
        payloads.push(Payload::TsR(TsPayload {
            selectors: config.remote_ts.clone(),
        }));
        let offer = ChildOffer {
            rekey: None,
            spi,
            nonce: Vec::new(),
            dh: None,
            offered,
            ts_i: config.local_ts.clone(),
            ts_r: config.remote_ts.clone(),
            collision: None,
        };
        self.send_request(sa, ExchangeType::IKE_AUTH, &payloads, Request::Auth(offer));
    }

    /// The responder's side of IKE_AUTH.
    pub(super) fn on_auth_request(
        &mut self,
        sa: &mut IkeSa,
        h: &Header,
        local: SocketAddr,
        remote: SocketAddr,
        payloads: &[Payload],
    ) {
        let peer = sa.peer;
        let Some(config) = self.config(peer) else {
            return;
        };
        let (Some(proposal), Some(crypto), Some(hs)) =
            (sa.proposal, sa.crypto.as_ref(), sa.handshake.as_ref())
        else {
            return;
        };
        let expected = identity(config.remote_id.as_deref(), config.remote);
        let id_i = first(payloads, |p| match p {
            Payload::IdI(id) => Some(id),
            _ => None,
        });
        let auth = first(payloads, |p| match p {
            Payload::Auth(a) => Some(a),
            _ => None,
        });
        let failure = match (id_i, auth) {
            (Some(id_i), Some(auth)) => {
                let octets = signed_octets(
                    proposal.prf,
                    &hs.request,
                    &sa.nonce_r,
                    &crypto.keys.sk_pi,
                    &id_i.body(),
                );
                if !same_identity(id_i, &expected) {
                    Some(format!(
                        "authentication failed: peer {} identifies as {}, expected {}",
                        remote.ip(),
                        describe_id(id_i),
                        describe_id(&expected)
                    ))
                } else if auth.method != AuthMethod::SHARED_KEY_MIC {
                    Some(format!(
                        "authentication failed: peer {} uses authentication method {:?}, we expect a pre-shared key",
                        remote.ip(),
                        auth.method
                    ))
                } else if !verify_psk_auth(proposal.prf, config.psk.as_bytes(), &octets, &auth.data)
                {
                    Some(format!(
                        "authentication failed: the AUTH payload of peer {} ({}) does not verify with our pre-shared key",
                        remote.ip(),
                        describe_id(id_i)
                    ))
                } else {
                    None
                }
            }
            _ => {
                if let Some(n) = error_notify(payloads) {
                    Some(format!(
                        "IKE_AUTH failed: peer {} sent {} instead of authenticating",
                        remote.ip(),
                        n.notify_type
                    ))
                } else {
                    Some(format!(
                        "authentication failed: peer {} sent IKE_AUTH without IDi or AUTH",
                        remote.ip()
                    ))
                }
            }
        };
        if let Some(message) = failure {
            self.error(peer, message);
            self.respond(
                sa,
                h,
                local,
                remote,
                vec![Payload::Notify(Notify::new(
                    NotifyType::AUTHENTICATION_FAILED,
                ))],
            );
            sa.state = IkeState::Closed;
            sa.handshake = None;
            sa.remove_at = Some(self.now + self.linger());
            self.dirty.insert(peer);
            return;
        }

        // Authenticated. Our identity and AUTH.
        let id_r = identity(config.local_id.as_deref(), config.local);
        let octets = signed_octets(
            proposal.prf,
            &hs.response,
            &sa.nonce_i,
            &crypto.keys.sk_pr,
            &id_r.body(),
        );
        let auth_r = psk_auth(proposal.prf, config.psk.as_bytes(), &octets);
        let mut response = vec![
            Payload::IdR(id_r),
            Payload::Auth(AuthPayload {
                method: AuthMethod::SHARED_KEY_MIC,
                data: auth_r,
            }),
        ];
        sa.local = local;
        sa.remote = remote;
        sa.initial_contact = find_notify(payloads, NotifyType::INITIAL_CONTACT).is_some();
        if sa.initial_contact {
            // The peer has nothing else with us: forget what we still hold (with a farewell
            // Delete, in case two IKE SAs were started at once).
            let stale: Vec<u64> = self
                .sas
                .values()
                .filter(|s| {
                    s.peer == peer
                        && matches!(
                            s.state,
                            IkeState::Established
                                | IkeState::Rekeyed
                                | IkeState::Redundant
                                | IkeState::Deleting
                        )
                })
                .map(|s| s.local_spi)
                .collect();
            for spi in stale {
                if let Some(other) = self.sas.remove(&spi) {
                    if let Some(p) = self.peers.get_mut(peer) {
                        p.down_reason =
                            Some("replaced: the peer restarted (INITIAL_CONTACT)".to_owned());
                    }
                    self.discard_with_delete(other);
                }
            }
        }
        self.establish(sa);

        let child = match (sa_payload(payloads), ts_payloads(payloads)) {
            (Some(offered), Some((tsi, tsr))) => {
                let (ni, nr) = (sa.nonce_i.clone(), sa.nonce_r.clone());
                Some(self.accept_child(
                    sa,
                    &config,
                    offered,
                    &tsi.selectors,
                    &tsr.selectors,
                    None,
                    false,
                    &ni,
                    &nr,
                ))
            }
            // A childless IKE_AUTH (RFC 6023) or one we cannot read: the IKE SA alone.
            _ => None,
        };
        let mut accepted = None;
        match child {
            Some(Ok(acc)) => {
                response.push(Payload::Sa(SaPayload {
                    proposals: vec![acc.choice.clone()],
                }));
                response.push(Payload::TsI(TsPayload {
                    selectors: acc.ts_i.clone(),
                }));
                response.push(Payload::TsR(TsPayload {
                    selectors: acc.ts_r.clone(),
                }));
                accepted = Some(acc);
            }
            Some(Err(reject)) => {
                if let Some(message) = reject.message {
                    self.error(peer, message);
                }
                response.push(Payload::Notify(reject.notify));
            }
            None => {}
        }
        sa.handshake = None;
        self.respond(sa, h, local, remote, response);
        if let Some(acc) = accepted {
            let spi = acc.our_spi;
            let redundant = self.is_redundant_duplicate(sa);
            self.add_child(
                sa,
                acc.our_spi,
                acc.their_spi,
                acc.esp,
                acc.inbound,
                acc.outbound,
                acc.ts_r,
                acc.ts_i,
                if redundant {
                    ChildState::Redundant
                } else {
                    ChildState::Installed
                },
                None,
            );
            if !redundant {
                self.announce(spi);
            }
        }
    }

    /// Whether `sa`, just authenticated, loses against another established IKE SA with the same
    /// peer (both ends started at once): the one with the lowest nonce is redundant (see
    /// `resolve_duplicates`). Its Child SA is then never announced, so that outbound traffic
    /// stays on the survivor.
    fn is_redundant_duplicate(&self, sa: &IkeSa) -> bool {
        self.sas.values().any(|o| {
            o.local_spi != sa.local_spi
                && o.peer == sa.peer
                && o.state == IkeState::Established
                && o.successor.is_none()
                && !o.pending_collision
                && nonce_less(sa.lower_nonce(), o.lower_nonce())
        })
    }

    /// The initiator's side of IKE_AUTH: the response.
    pub(super) fn on_auth_response(
        &mut self,
        sa: &mut IkeSa,
        offer: ChildOffer,
        payloads: &[Payload],
    ) {
        self.reserved_spis.remove(&offer.spi);
        let peer = sa.peer;
        let Some(config) = self.config(peer) else {
            return;
        };
        let (Some(proposal), Some(crypto), Some(hs)) =
            (sa.proposal, sa.crypto.as_ref(), sa.handshake.as_ref())
        else {
            return;
        };
        let our_id = identity(config.local_id.as_deref(), config.local);
        if find_notify(payloads, NotifyType::AUTHENTICATION_FAILED).is_some() {
            let message = format!(
                "authentication failed: peer {} rejected our authentication as {} (AUTHENTICATION_FAILED); check the pre-shared key and the identities",
                sa.remote.ip(),
                describe_id(&our_id)
            );
            self.error(peer, message);
            sa.discard = true;
            return;
        }
        let id_r = first(payloads, |p| match p {
            Payload::IdR(id) => Some(id),
            _ => None,
        });
        let auth = first(payloads, |p| match p {
            Payload::Auth(a) => Some(a),
            _ => None,
        });
        let (Some(id_r), Some(auth)) = (id_r, auth) else {
            let message = match error_notify(payloads) {
                Some(n) => format!(
                    "IKE_AUTH failed: peer {} answered {}",
                    sa.remote.ip(),
                    n.notify_type
                ),
                None => format!(
                    "IKE_AUTH failed: peer {} answered without IDr or AUTH",
                    sa.remote.ip()
                ),
            };
            self.error(peer, message);
            sa.discard = true;
            return;
        };
        let expected = identity(config.remote_id.as_deref(), config.remote);
        let octets = signed_octets(
            proposal.prf,
            &hs.response,
            &sa.nonce_i,
            &crypto.keys.sk_pr,
            &id_r.body(),
        );
        let failure = if !same_identity(id_r, &expected) {
            Some(format!(
                "authentication failed: peer {} identifies as {}, expected {}",
                sa.remote.ip(),
                describe_id(id_r),
                describe_id(&expected)
            ))
        } else if auth.method != AuthMethod::SHARED_KEY_MIC
            || !verify_psk_auth(proposal.prf, config.psk.as_bytes(), &octets, &auth.data)
        {
            Some(format!(
                "authentication failed: the AUTH payload of peer {} ({}) does not verify with our pre-shared key",
                sa.remote.ip(),
                describe_id(id_r)
            ))
        } else {
            None
        };
        if let Some(message) = failure {
            self.error(peer, message);
            // RFC 7296 2.21.2: tell the responder in a separate INFORMATIONAL exchange.
            self.send_oneshot(
                sa,
                ExchangeType::INFORMATIONAL,
                &[Payload::Notify(Notify::new(
                    NotifyType::AUTHENTICATION_FAILED,
                ))],
            );
            sa.discard = true;
            return;
        }

        // Authenticated: now the Child SA.
        let child = self.check_auth_child(sa, &offer, payloads);
        let (ni, nr) = (sa.nonce_i.clone(), sa.nonce_r.clone());
        sa.handshake = None;
        match child {
            Ok((esp, their_spi, ts_i, ts_r)) => {
                let Some(keys) = sa.crypto.as_ref().and_then(|c| {
                    ChildSaKeys::derive(proposal.prf, &c.keys.sk_d, &esp, None, &ni, &nr).ok()
                }) else {
                    return;
                };
                self.establish(sa);
                let redundant = self.is_redundant_duplicate(sa);
                self.add_child(
                    sa,
                    offer.spi,
                    their_spi,
                    esp,
                    keys.responder_to_initiator,
                    keys.initiator_to_responder,
                    ts_i,
                    ts_r,
                    if redundant {
                        ChildState::Redundant
                    } else {
                        ChildState::Installed
                    },
                    None,
                );
                if !redundant {
                    self.announce(offer.spi);
                }
            }
            Err(message) => {
                // An IKE SA without its Child SA is of no use to us: report, delete it and
                // try again later.
                self.error(peer, message.clone());
                sa.state = IkeState::Established;
                sa.established_at = Some(self.now);
                self.close_sa(sa, Close::Delete, message);
            }
        }
    }

    /// Checks the Child SA part of an IKE_AUTH response.
    fn check_auth_child(
        &self,
        sa: &IkeSa,
        offer: &ChildOffer,
        payloads: &[Payload],
    ) -> Result<
        (
            crate::crypto::EspProposal,
            u32,
            Vec<TrafficSelector>,
            Vec<TrafficSelector>,
        ),
        String,
    > {
        if let Some(n) = error_notify(payloads) {
            return Err(match n.notify_type {
                NotifyType::NO_PROPOSAL_CHOSEN => format!(
                    "no proposal chosen: we offered {} (ESP), peer {} accepted none of them (NO_PROPOSAL_CHOSEN)",
                    describe(&offer.offered),
                    sa.remote.ip()
                ),
                NotifyType::TS_UNACCEPTABLE => format!(
                    "traffic selectors unacceptable: we proposed {} (local) and {} (remote), peer {} answered TS_UNACCEPTABLE",
                    describe_ts(&offer.ts_i),
                    describe_ts(&offer.ts_r),
                    sa.remote.ip()
                ),
                other => format!(
                    "Child SA not created: peer {} answered {other}",
                    sa.remote.ip()
                ),
            });
        }
        let (Some(sa_p), Some((tsi, tsr))) = (sa_payload(payloads), ts_payloads(payloads)) else {
            return Err(format!(
                "Child SA not created: peer {} answered IKE_AUTH without SA or traffic selectors",
                sa.remote.ip()
            ));
        };
        let valid = match sa_p.proposals.as_slice() {
            [choice] => chosen(&offer.offered, choice)
                .and_then(|_| esp_from_wire(choice))
                .zip(match choice.spi {
                    Spi::U32(spi) if spi >= 256 => Some(spi),
                    _ => None,
                }),
            _ => None,
        };
        let Some((esp, their_spi)) = valid else {
            return Err(format!(
                "Child SA not created: peer {} chose {}, which we did not offer",
                sa.remote.ip(),
                describe(&sa_p.proposals)
            ));
        };
        if !ts_within(&tsi.selectors, &offer.ts_i) || !ts_within(&tsr.selectors, &offer.ts_r) {
            return Err(format!(
                "traffic selectors unacceptable: peer {} narrowed to {} (local) and {} (remote), outside what we proposed",
                sa.remote.ip(),
                describe_ts(&tsi.selectors),
                describe_ts(&tsr.selectors)
            ));
        }
        Ok((esp, their_spi, tsi.selectors.clone(), tsr.selectors.clone()))
    }

    /// The IKE SA is authenticated: timers, link up, duplicate check.
    fn establish(&mut self, sa: &mut IkeSa) {
        let now = self.now;
        sa.state = IkeState::Established;
        sa.established_at = Some(now);
        sa.remove_at = None;
        sa.last_heard = now;
        let lifetime = self
            .peers
            .get(sa.peer)
            .map_or(std::time::Duration::ZERO, |p| p.config.ike_lifetime);
        let (rekey_at, expire_at) = self.lifetime_deadlines(lifetime);
        sa.rekey_at = rekey_at;
        sa.expire_at = expire_at;
        let peer = sa.peer;
        if let Some(p) = self.peers.get_mut(peer) {
            p.backoff = std::time::Duration::ZERO;
            p.reconnect_at = None;
            p.last_error = None;
            if !p.up {
                p.up = true;
                self.events.push_back(Event::IkeUp { peer });
            }
        }
        self.dirty.insert(peer);
        self.dup_check.insert(peer);
    }

    /// The responder's negotiation of a Child SA (IKE_AUTH and CREATE_CHILD_SA): proposal,
    /// PFS, traffic selector narrowing, keys. `ni` / `nr` are the exchange's nonces (those of
    /// IKE_SA_INIT for IKE_AUTH).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn accept_child(
        &mut self,
        sa: &IkeSa,
        config: &PeerConfig,
        offered: &SaPayload,
        tsi: &[TrafficSelector],
        tsr: &[TrafficSelector],
        ke: Option<&KePayload>,
        with_dh: bool,
        ni: &[u8],
        nr: &[u8],
    ) -> Result<ChildAccept, ChildReject> {
        let policy = esp_offer(&config.esp_proposals, 0, with_dh);
        let no_proposal = || {
            ChildReject::new(
                Notify::new(NotifyType::NO_PROPOSAL_CHOSEN),
                Some(format!(
                    "no proposal chosen: peer {} offered {} (ESP), we accept {}",
                    sa.remote.ip(),
                    describe(&offered.proposals),
                    describe(&policy)
                )),
            )
        };
        let choice = select(offered, &policy, ke.map(|k| k.group.0)).ok_or_else(no_proposal)?;
        let esp = esp_from_wire(&choice).ok_or_else(no_proposal)?;
        let their_spi = match choice.spi {
            Spi::U32(spi) if spi >= 256 => spi,
            _ => {
                return Err(ChildReject::new(
                    Notify::new(NotifyType::INVALID_SYNTAX),
                    None,
                ))
            }
        };
        let mut g_ir: Option<SharedSecret> = None;
        let mut our_ke = None;
        if let (true, Some(group)) = (with_dh, esp.dh) {
            let Some(ke) = ke.filter(|k| k.group.0 == group.id()) else {
                return Err(ChildReject::new(
                    Notify::invalid_ke_payload(wire::DhGroup(group.id())),
                    None,
                ));
            };
            let Ok((dh, public)) = group.generate(self.rng.as_mut()) else {
                return Err(ChildReject::new(
                    Notify::new(NotifyType::NO_PROPOSAL_CHOSEN),
                    None,
                ));
            };
            let Ok(secret) = group.shared(&dh, &ke.data) else {
                return Err(ChildReject::new(
                    Notify::new(NotifyType::INVALID_SYNTAX),
                    None,
                ));
            };
            g_ir = Some(secret);
            our_ke = Some(KePayload {
                group: ke.group,
                data: public,
            });
        }
        let ts_i = wire::narrow(tsi, &config.remote_ts);
        let ts_r = wire::narrow(tsr, &config.local_ts);
        if ts_i.is_empty() || ts_r.is_empty() {
            return Err(ChildReject::new(
                Notify::new(NotifyType::TS_UNACCEPTABLE),
                Some(format!(
                    "traffic selectors unacceptable: peer {} proposed {} (its side) and {} (our side), we allow {} and {}",
                    sa.remote.ip(),
                    describe_ts(tsi),
                    describe_ts(tsr),
                    describe_ts(&config.remote_ts),
                    describe_ts(&config.local_ts)
                )),
            ));
        }
        let (Some(proposal), Some(crypto)) = (sa.proposal, sa.crypto.as_ref()) else {
            return Err(ChildReject::new(
                Notify::new(NotifyType::TEMPORARY_FAILURE),
                None,
            ));
        };
        let Ok(keys) =
            ChildSaKeys::derive(proposal.prf, &crypto.keys.sk_d, &esp, g_ir.as_ref(), ni, nr)
        else {
            return Err(ChildReject::new(
                Notify::new(NotifyType::NO_PROPOSAL_CHOSEN),
                None,
            ));
        };
        let our_spi = self.new_child_spi();
        Ok(ChildAccept {
            our_spi,
            their_spi,
            esp,
            choice: Proposal {
                spi: Spi::U32(our_spi),
                ..choice
            },
            ts_i,
            ts_r,
            inbound: keys.initiator_to_responder,
            outbound: keys.responder_to_initiator,
            ke: our_ke,
        })
    }
}
