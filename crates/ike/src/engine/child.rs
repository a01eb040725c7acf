//! CREATE_CHILD_SA (RFC 7296 1.3): rekeying Child SAs and the IKE SA, both roles, with the
//! resolution of simultaneous rekeys (2.8.1, 2.8.2).

use std::time::Duration;

use super::init::{error_notify, find_notify, ke_payload, nonce_payload, sa_payload, ts_payloads};
use super::proposals::{
    chosen, describe, dh_of, esp_from_wire, esp_offer, ike_from_wire, ike_offer, select, ts_within,
};
use super::state::{
    lower, nonce_less, ChildOffer, ChildState, Collision, IkeRekeyOffer, IkeSa, IkeState,
    Outstanding, Request, SaCrypto, Task,
};
use super::Endpoint;
use crate::crypto::{ChildSaKeys, DhGroup, IkeSaKeys};
use crate::wire::{
    self, ExchangeType, KePayload, Notify, NotifyType, Payload, Proposal, ProtocolId, SaPayload,
    Spi, TsPayload,
};

/// Pause before retrying a rekey the peer refused for the moment (TEMPORARY_FAILURE).
const RETRY_TEMPORARY: Duration = Duration::from_secs(2);
/// Pause before retrying a rekey that failed otherwise.
const RETRY_FAILED: Duration = Duration::from_secs(30);

impl Endpoint {
    /// Sends a rekey request for the Child SA pair `spi` (our inbound SPI).
    pub(super) fn start_child_rekey(&mut self, sa: &mut IkeSa, spi: u32, group: Option<DhGroup>) {
        let Some(child) = self.children.get(&spi) else {
            return;
        };
        if child.state != ChildState::Installed || child.peer != sa.peer {
            return;
        }
        let (ts_i, ts_r) = (child.local_ts.clone(), child.remote_ts.clone());
        self.send_child_request(sa, Some(spi), ts_i, ts_r, group);
    }

    /// Sends a request for a new Child SA with the configured traffic selectors.
    pub(super) fn start_child_create(&mut self, sa: &mut IkeSa, group: Option<DhGroup>) {
        let Some(config) = self.peers.get(sa.peer).map(|p| &p.config) else {
            return;
        };
        let (ts_i, ts_r) = (config.local_ts.clone(), config.remote_ts.clone());
        self.send_child_request(sa, None, ts_i, ts_r, group);
    }

    /// CREATE_CHILD_SA for a Child SA: a rekey of `rekey` (our inbound SPI), or a new one.
    fn send_child_request(
        &mut self,
        sa: &mut IkeSa,
        rekey: Option<u32>,
        ts_i: Vec<wire::TrafficSelector>,
        ts_r: Vec<wire::TrafficSelector>,
        group: Option<DhGroup>,
    ) {
        let Some(config) = self.peers.get(sa.peer).map(|p| p.config.clone()) else {
            return;
        };
        let new_spi = self.new_child_spi();
        let nonce = self.new_nonce();
        let offered = esp_offer(&config.esp_proposals, new_spi, true);
        let group = group.or_else(|| offered.first().and_then(dh_of));
        let mut dh = None;
        let mut payloads = Vec::new();
        if let Some(spi) = rekey {
            payloads.push(Payload::Notify(Notify::rekey_sa(ProtocolId::ESP, spi)));
        }
        payloads.push(Payload::Sa(SaPayload {
            proposals: offered.clone(),
        }));
        payloads.push(Payload::Nonce(nonce.clone()));
        if let Some(group) = group {
            let Ok((private, public)) = group.generate(self.rng.as_mut()) else {
                self.reserved_spis.remove(&new_spi);
                return;
            };
            payloads.push(Payload::Ke(KePayload {
                group: wire::DhGroup(group.id()),
                data: public,
            }));
            dh = Some(private);
        }
        payloads.push(Payload::TsI(TsPayload {
            selectors: ts_i.clone(),
        }));
        payloads.push(Payload::TsR(TsPayload {
            selectors: ts_r.clone(),
        }));
        if let Some(child) = rekey.and_then(|spi| self.children.get_mut(&spi)) {
            child.state = ChildState::Rekeying;
        }
        let offer = ChildOffer {
            rekey,
            spi: new_spi,
            nonce,
            dh,
            offered,
            ts_i,
            ts_r,
            collision: None,
        };
        self.send_request(
            sa,
            ExchangeType::CREATE_CHILD_SA,
            &payloads,
            Request::CreateChild(offer),
        );
    }

    /// Puts a Child SA whose rekey did not happen back in service, to be rekeyed again after
    /// `retry` (not after it expires).
    fn rekey_later(&mut self, spi: u32, retry: Duration) {
        let now = self.now;
        if let Some(child) = self.children.get_mut(&spi) {
            if child.state == ChildState::Rekeying {
                child.state = ChildState::Installed;
                let at = now + retry;
                child.rekey_at = Some(match child.expire_at {
                    Some(expire) if expire < at => now,
                    _ => at,
                });
            }
        }
    }

    /// The peer's SA of a rekey collision survives: announce it in place of the old pair.
    fn adopt_child(&mut self, created: u32, old: Option<u32>) {
        if let Some(child) = self.children.get_mut(&created) {
            if child.state == ChildState::Pending {
                child.state = ChildState::Installed;
                self.announce(created);
            }
        }
        if let Some(child) = old.and_then(|o| self.children.get_mut(&o)) {
            if matches!(child.state, ChildState::Rekeying | ChildState::Installed) {
                child.state = ChildState::Rekeyed;
                child.rekey_at = None;
            }
        }
    }

    /// What an unfinished exchange leaves behind: its reserved SPI, a Child SA waiting for its
    /// rekey, the peer's SA of a collision.
    pub(super) fn release_offer(&mut self, request: &Request) {
        match request {
            Request::Auth(offer) => {
                self.reserved_spis.remove(&offer.spi);
            }
            Request::CreateChild(offer) => {
                self.reserved_spis.remove(&offer.spi);
                if let Some(c) = &offer.collision {
                    self.adopt_child(c.created, offer.rekey);
                }
                if let Some(old) = offer.rekey {
                    self.rekey_later(old, RETRY_TEMPORARY);
                }
            }
            Request::RekeyIke(offer) => {
                if let Some(c) = &offer.collision {
                    if let Some(other) = self.sas.remove(&c.created) {
                        self.forget(&other);
                    }
                }
            }
            _ => {}
        }
    }

    /// The response to our CREATE_CHILD_SA for a Child SA.
    pub(super) fn on_child_response(
        &mut self,
        sa: &mut IkeSa,
        offer: ChildOffer,
        payloads: &[Payload],
    ) {
        self.reserved_spis.remove(&offer.spi);
        let peer = sa.peer;
        let old = offer.rekey;
        if !matches!(sa.state, IkeState::Established | IkeState::Rekeyed) {
            self.release_offer(&Request::CreateChild(offer));
            return;
        }
        if let Some(n) = error_notify(payloads) {
            if old.is_none() {
                return self.child_create_failed(
                    sa,
                    &offer,
                    Some(n.notify_type),
                    n.invalid_ke_group(),
                );
            }
            if let (Some(group), None) = (n.invalid_ke_group(), &offer.collision) {
                let group = DhGroup::from_id(group.0);
                let ours = offer.dh.as_ref().map(|d| d.group());
                let configured = self.peers.get(peer).is_some_and(|p| {
                    p.config
                        .esp_proposals
                        .iter()
                        .any(|e| e.dh.is_some() && e.dh == group)
                });
                if let (Some(group), Some(old), true) = (group, old, configured && group != ours) {
                    if let Some(child) = self.children.get_mut(&old) {
                        if child.state == ChildState::Rekeying {
                            child.state = ChildState::Installed;
                        }
                    }
                    sa.queue.push_front(Task::RekeyChild {
                        spi: old,
                        group: Some(group),
                    });
                    return;
                }
            }
            if let Some(c) = &offer.collision {
                // The peer's rekey of the same pair succeeded: keep its SA.
                self.adopt_child(c.created, old);
                return;
            }
            let what = n.notify_type;
            match what {
                NotifyType::TEMPORARY_FAILURE => {
                    if let Some(old) = old {
                        let retry = RETRY_TEMPORARY + self.jitter(RETRY_TEMPORARY);
                        self.rekey_later(old, retry);
                    }
                }
                NotifyType::CHILD_SA_NOT_FOUND => {
                    // The peer no longer has it.
                    if let Some(old) = old {
                        self.remove_child(old);
                    }
                }
                _ => {
                    let message = match what {
                        NotifyType::NO_PROPOSAL_CHOSEN => format!(
                            "Child SA rekey failed: no proposal chosen: we offered {} (ESP), peer {} accepted none of them (NO_PROPOSAL_CHOSEN)",
                            describe(&offer.offered),
                            sa.remote.ip()
                        ),
                        other => format!(
                            "Child SA rekey failed: peer {} answered {other}",
                            sa.remote.ip()
                        ),
                    };
                    self.error(peer, message);
                    if let Some(old) = old {
                        self.rekey_later(old, RETRY_FAILED);
                    }
                }
            }
            return;
        }
        let Some(result) = self.check_child_response(sa, &offer, payloads) else {
            if old.is_none() {
                return self.child_create_failed(sa, &offer, None, None);
            }
            let message = format!(
                "Child SA rekey failed: peer {} sent an unusable CREATE_CHILD_SA response",
                sa.remote.ip()
            );
            self.error(peer, message);
            self.release_offer(&Request::CreateChild(offer));
            return;
        };
        let (esp, their_spi, ts_i, ts_r, keys) = result;
        let new = offer.spi;
        let replaces = old.filter(|o| self.children.contains_key(o));
        if let Some(c) = &offer.collision {
            let ours = lower(&offer.nonce, &keys.1);
            let theirs = lower(&c.ni, &c.nr);
            // The peer's pair already announced: the peer deleted the old pair, so it won.
            // The peer's pair gone: the peer deleted it, so it lost.
            let we_lost = match self.children.get(&c.created) {
                None => false,
                Some(theirs_sa) if theirs_sa.announced => true,
                Some(_) => nonce_less(ours, theirs),
            };
            if we_lost {
                // Our SA has the lowest nonce: it is redundant and ours to delete.
                self.add_child(
                    sa,
                    new,
                    their_spi,
                    esp,
                    keys.0.responder_to_initiator,
                    keys.0.initiator_to_responder,
                    ts_i,
                    ts_r,
                    ChildState::Deleting,
                    replaces,
                );
                self.adopt_child(c.created, old);
                self.queue_on(sa, Task::DeleteChildren(vec![new]));
                return;
            }
            // The peer's SA is redundant (the peer deletes it); ours replaces the old pair,
            // which we delete.
            if let Some(child) = self.children.get_mut(&c.created) {
                child.state = ChildState::Redundant;
                child.rekey_at = None;
            }
        }
        self.add_child(
            sa,
            new,
            their_spi,
            esp,
            keys.0.responder_to_initiator,
            keys.0.initiator_to_responder,
            ts_i,
            ts_r,
            ChildState::Installed,
            replaces,
        );
        self.announce(new);
        self.retire_old(sa, replaces);
    }

    /// Our request for a new Child SA failed: report it and try again later (or at once with
    /// the group the peer asked for).
    fn child_create_failed(
        &mut self,
        sa: &mut IkeSa,
        offer: &ChildOffer,
        notify: Option<NotifyType>,
        ke_group: Option<wire::DhGroup>,
    ) {
        let requested = ke_group.and_then(|g| DhGroup::from_id(g.0));
        let ours = offer.dh.as_ref().map(|d| d.group());
        let configured = self.peers.get(sa.peer).is_some_and(|p| {
            p.config
                .esp_proposals
                .iter()
                .any(|e| e.dh.is_some() && e.dh == requested)
        });
        if let (Some(group), true) = (requested, configured && requested != ours) {
            sa.queue
                .push_front(Task::CreateChild { group: Some(group) });
            return;
        }
        let message = match notify {
            Some(NotifyType::NO_PROPOSAL_CHOSEN) => format!(
                "Child SA not created: no proposal chosen: we offered {} (ESP), peer {} accepted none of them (NO_PROPOSAL_CHOSEN)",
                describe(&offer.offered),
                sa.remote.ip()
            ),
            Some(NotifyType::TS_UNACCEPTABLE) => format!(
                "Child SA not created: traffic selectors unacceptable: peer {} answered TS_UNACCEPTABLE",
                sa.remote.ip()
            ),
            Some(other) => format!("Child SA not created: peer {} answered {other}", sa.remote.ip()),
            None => format!(
                "Child SA not created: peer {} sent an unusable CREATE_CHILD_SA response",
                sa.remote.ip()
            ),
        };
        if notify != Some(NotifyType::TEMPORARY_FAILURE) {
            self.error(sa.peer, message);
        }
        sa.recreate_at = Some(self.now + RETRY_FAILED);
    }

    /// After our successful rekey: delete the old pair.
    fn retire_old(&mut self, sa: &mut IkeSa, old: Option<u32>) {
        let Some(old) = old else {
            return;
        };
        let Some(child) = self.children.get_mut(&old) else {
            return;
        };
        let queued = child.state == ChildState::Deleting;
        child.state = ChildState::Deleting;
        child.rekey_at = None;
        if !queued {
            self.queue_on(sa, Task::DeleteChildren(vec![old]));
        }
    }

    /// Queues a task on the IKE SA in hand or, if it was rekeyed, on its successor.
    pub(super) fn queue_on(&mut self, sa: &mut IkeSa, task: Task) {
        match sa.successor {
            Some(next) if self.sas.contains_key(&next) => self.queue_task(next, task),
            _ => {
                if !sa.queue.contains(&task) {
                    sa.queue.push_back(task);
                }
            }
        }
    }

    /// Checks a successful CREATE_CHILD_SA response and derives the keys: the ESP proposal,
    /// the peer's SPI, the narrowed selectors, the keys and Nr.
    #[allow(clippy::type_complexity)]
    fn check_child_response(
        &mut self,
        sa: &IkeSa,
        offer: &ChildOffer,
        payloads: &[Payload],
    ) -> Option<(
        crate::crypto::EspProposal,
        u32,
        Vec<wire::TrafficSelector>,
        Vec<wire::TrafficSelector>,
        (ChildSaKeys, Vec<u8>),
    )> {
        let sa_p = sa_payload(payloads)?;
        let nr = nonce_payload(payloads)?;
        let (tsi, tsr) = ts_payloads(payloads)?;
        let [choice] = sa_p.proposals.as_slice() else {
            return None;
        };
        chosen(&offer.offered, choice)?;
        let esp = esp_from_wire(choice)?;
        let their_spi = match choice.spi {
            Spi::U32(spi) if spi >= 256 => spi,
            _ => return None,
        };
        let g_ir = match esp.dh {
            Some(group) => {
                let ke = ke_payload(payloads).filter(|k| k.group.0 == group.id())?;
                let dh = offer.dh.as_ref().filter(|d| d.group() == group)?;
                Some(group.shared(dh, &ke.data).ok()?)
            }
            None => None,
        };
        if !ts_within(&tsi.selectors, &offer.ts_i) || !ts_within(&tsr.selectors, &offer.ts_r) {
            return None;
        }
        let (proposal, crypto) = (sa.proposal?, sa.crypto.as_ref()?);
        let keys = ChildSaKeys::derive(
            proposal.prf,
            &crypto.keys.sk_d,
            &esp,
            g_ir.as_ref(),
            &offer.nonce,
            nr,
        )
        .ok()?;
        Some((
            esp,
            their_spi,
            tsi.selectors.clone(),
            tsr.selectors.clone(),
            (keys, nr.clone()),
        ))
    }

    /// A CREATE_CHILD_SA request: a Child SA rekey, a new Child SA, or an IKE SA rekey.
    /// Returns the response's payloads.
    pub(super) fn on_create_child_request(
        &mut self,
        sa: &mut IkeSa,
        payloads: &[Payload],
    ) -> Vec<Payload> {
        let temporary = || vec![Payload::Notify(Notify::new(NotifyType::TEMPORARY_FAILURE))];
        let syntax = || vec![Payload::Notify(Notify::new(NotifyType::INVALID_SYNTAX))];
        if sa.state != IkeState::Established || sa.pending_collision {
            return temporary();
        }
        let (Some(offered), Some(ni)) = (sa_payload(payloads), nonce_payload(payloads)) else {
            return syntax();
        };
        match offered.proposals.first().map(|p| p.protocol) {
            Some(ProtocolId::IKE) => self.on_ike_rekey_request(sa, offered, ni, payloads),
            Some(ProtocolId::ESP) => self.on_child_request(sa, offered, ni, payloads),
            _ => vec![Payload::Notify(Notify::new(NotifyType::NO_PROPOSAL_CHOSEN))],
        }
    }

    fn on_child_request(
        &mut self,
        sa: &mut IkeSa,
        offered: &SaPayload,
        ni: &[u8],
        payloads: &[Payload],
    ) -> Vec<Payload> {
        let peer = sa.peer;
        let Some((tsi, tsr)) = ts_payloads(payloads) else {
            return vec![Payload::Notify(Notify::new(NotifyType::INVALID_SYNTAX))];
        };
        // Which pair it rekeys (REKEY_SA names the peer's inbound SPI, our outbound).
        let mut old = None;
        let mut collision = false;
        if let Some(n) = find_notify(payloads, NotifyType::REKEY_SA) {
            let Spi::U32(their) = n.spi else {
                return vec![Payload::Notify(Notify::new(NotifyType::INVALID_SYNTAX))];
            };
            let found = self
                .children
                .values()
                .find(|c| c.peer == peer && c.outbound_spi == their)
                .map(|c| (c.inbound_spi, c.state));
            match found {
                None => {
                    return vec![Payload::Notify(Notify {
                        protocol: ProtocolId::ESP,
                        spi: Spi::U32(their),
                        ..Notify::new(NotifyType::CHILD_SA_NOT_FOUND)
                    })]
                }
                Some((spi, ChildState::Installed)) => old = Some(spi),
                Some((spi, ChildState::Rekeying)) => {
                    // Our rekey of the same pair is in flight: a collision (2.8.1), unless
                    // the exchange in flight is another one.
                    let ours = matches!(
                        &sa.outstanding,
                        Some(Outstanding { request: Request::CreateChild(o), .. })
                            if o.rekey == Some(spi) && o.collision.is_none()
                    );
                    if !ours {
                        return vec![Payload::Notify(Notify::new(NotifyType::TEMPORARY_FAILURE))];
                    }
                    old = Some(spi);
                    collision = true;
                }
                // Being deleted, already rekeyed, or itself undecided: not now.
                Some(_) => {
                    return vec![Payload::Notify(Notify::new(NotifyType::TEMPORARY_FAILURE))]
                }
            }
        }
        let Some(config) = self.peers.get(peer).map(|p| p.config.clone()) else {
            return vec![Payload::Notify(Notify::new(NotifyType::TEMPORARY_FAILURE))];
        };
        let nr = self.new_nonce();
        let ke = ke_payload(payloads);
        let acc = match self.accept_child(
            sa,
            &config,
            offered,
            &tsi.selectors,
            &tsr.selectors,
            ke,
            true,
            ni,
            &nr,
        ) {
            Ok(acc) => acc,
            Err(reject) => {
                if let Some(message) = reject.message {
                    self.error(peer, message);
                }
                return vec![Payload::Notify(reject.notify)];
            }
        };
        let mut response = vec![
            Payload::Sa(SaPayload {
                proposals: vec![acc.choice.clone()],
            }),
            Payload::Nonce(nr.clone()),
        ];
        if let Some(ke) = &acc.ke {
            response.push(Payload::Ke(ke.clone()));
        }
        response.push(Payload::TsI(TsPayload {
            selectors: acc.ts_i.clone(),
        }));
        response.push(Payload::TsR(TsPayload {
            selectors: acc.ts_r.clone(),
        }));
        let spi = acc.our_spi;
        let state = if collision {
            ChildState::Pending
        } else {
            ChildState::Installed
        };
        self.add_child(
            sa,
            acc.our_spi,
            acc.their_spi,
            acc.esp,
            acc.inbound,
            acc.outbound,
            acc.ts_r,
            acc.ts_i,
            state,
            old,
        );
        if collision {
            if let Some(Outstanding {
                request: Request::CreateChild(offer),
                ..
            }) = sa.outstanding.as_mut()
            {
                offer.collision = Some(Collision {
                    created: spi,
                    ni: ni.to_vec(),
                    nr,
                });
            }
        } else {
            self.announce(spi);
            if let Some(child) = old.and_then(|o| self.children.get_mut(&o)) {
                // The peer deletes the old pair.
                child.state = ChildState::Rekeyed;
                child.rekey_at = None;
            }
        }
        response
    }

    /// Sends a rekey request for the IKE SA (2.18).
    pub(super) fn start_ike_rekey(&mut self, sa: &mut IkeSa, group: Option<DhGroup>) {
        if sa.successor.is_some() || sa.pending_collision {
            return;
        }
        let Some(config) = self.peers.get(sa.peer).map(|p| p.config.clone()) else {
            return;
        };
        let spi = self.new_ike_spi();
        let nonce = self.new_nonce();
        let offered = ike_offer(&config.ike_proposals, Spi::U64(spi));
        let current = sa
            .proposal
            .map(|p| p.dh)
            .filter(|g| config.ike_proposals.iter().any(|p| p.dh == *g));
        let Some(group) = group
            .or(current)
            .or_else(|| config.ike_proposals.first().map(|p| p.dh))
        else {
            return;
        };
        let Ok((dh, public)) = group.generate(self.rng.as_mut()) else {
            return;
        };
        let payloads = [
            Payload::Sa(SaPayload {
                proposals: offered.clone(),
            }),
            Payload::Nonce(nonce.clone()),
            Payload::Ke(KePayload {
                group: wire::DhGroup(group.id()),
                data: public,
            }),
        ];
        let offer = IkeRekeyOffer {
            spi,
            nonce,
            dh,
            offered,
            collision: None,
        };
        self.send_request(
            sa,
            ExchangeType::CREATE_CHILD_SA,
            &payloads,
            Request::RekeyIke(offer),
        );
    }

    /// The peer rekeys the IKE SA.
    fn on_ike_rekey_request(
        &mut self,
        sa: &mut IkeSa,
        offered: &SaPayload,
        ni: &[u8],
        payloads: &[Payload],
    ) -> Vec<Payload> {
        let peer = sa.peer;
        let notify = |t| vec![Payload::Notify(Notify::new(t))];
        if sa.successor.is_some() {
            return notify(NotifyType::TEMPORARY_FAILURE);
        }
        // Our own rekey in flight makes this a collision (2.8.2); a second one is refused.
        let collision = match &sa.outstanding {
            Some(Outstanding {
                request: Request::RekeyIke(o),
                ..
            }) => {
                if o.collision.is_some() {
                    return notify(NotifyType::TEMPORARY_FAILURE);
                }
                true
            }
            _ => false,
        };
        let Some(ke) = ke_payload(payloads) else {
            return notify(NotifyType::INVALID_SYNTAX);
        };
        let Some(config) = self.peers.get(peer).map(|p| p.config.clone()) else {
            return notify(NotifyType::TEMPORARY_FAILURE);
        };
        let policy = ike_offer(&config.ike_proposals, Spi::None);
        let Some((choice, proposal)) = select(offered, &policy, Some(ke.group.0))
            .and_then(|c| ike_from_wire(&c).map(|p| (c, p)))
        else {
            let message = format!(
                "IKE SA rekey: no proposal chosen: peer {} offered {} (IKE), we accept {}",
                sa.remote.ip(),
                describe(&offered.proposals),
                describe(&policy)
            );
            self.error(peer, message);
            return notify(NotifyType::NO_PROPOSAL_CHOSEN);
        };
        let their_spi = match choice.spi {
            Spi::U64(spi) if spi != 0 => spi,
            _ => return notify(NotifyType::INVALID_SYNTAX),
        };
        if ke.group.0 != proposal.dh.id() {
            return vec![Payload::Notify(Notify::invalid_ke_payload(wire::DhGroup(
                proposal.dh.id(),
            )))];
        }
        let (Some(old_proposal), Some(old_crypto)) = (sa.proposal, sa.crypto.as_ref()) else {
            return notify(NotifyType::TEMPORARY_FAILURE);
        };
        let Ok((dh, public)) = proposal.dh.generate(self.rng.as_mut()) else {
            return notify(NotifyType::TEMPORARY_FAILURE);
        };
        let Ok(g_ir) = proposal.dh.shared(&dh, &ke.data) else {
            return notify(NotifyType::INVALID_SYNTAX);
        };
        let spi = self.new_ike_spi();
        let nr = self.new_nonce();
        let Ok(keys) = IkeSaKeys::derive_rekeyed(
            old_proposal.prf,
            &old_crypto.keys.sk_d,
            &proposal,
            &g_ir,
            ni,
            &nr,
            their_spi,
            spi,
        ) else {
            return notify(NotifyType::NO_PROPOSAL_CHOSEN);
        };
        let Some(crypto) = SaCrypto::new(keys, false) else {
            return notify(NotifyType::NO_PROPOSAL_CHOSEN);
        };
        let mut new = self.successor_sa(sa, spi, their_spi, false);
        new.crypto = Some(crypto);
        new.proposal = Some(proposal);
        new.nonce_i = ni.to_vec();
        new.nonce_r = nr.clone();
        let response = vec![
            Payload::Sa(SaPayload {
                proposals: vec![Proposal {
                    spi: Spi::U64(spi),
                    ..choice
                }],
            }),
            Payload::Nonce(nr.clone()),
            Payload::Ke(KePayload {
                group: ke.group,
                data: public,
            }),
        ];
        if collision {
            new.pending_collision = true;
            if let Some(Outstanding {
                request: Request::RekeyIke(offer),
                ..
            }) = sa.outstanding.as_mut()
            {
                offer.collision = Some(Collision {
                    created: spi,
                    ni: ni.to_vec(),
                    nr,
                });
            }
            self.sas.insert(spi, new);
        } else {
            self.sas.insert(spi, new);
            // The peer deletes the old IKE SA.
            self.hand_over(sa, spi, false);
        }
        response
    }

    /// A new IKE SA replacing `sa` (rekey), established now, with fresh timers.
    fn successor_sa(&mut self, sa: &IkeSa, spi: u64, remote_spi: u64, initiator: bool) -> IkeSa {
        let now = self.now;
        let mut new = IkeSa::new(
            sa.peer,
            spi,
            remote_spi,
            initiator,
            IkeState::Established,
            sa.local,
            sa.remote,
            now,
        );
        new.established_at = Some(now);
        let lifetime = self
            .peers
            .get(sa.peer)
            .map_or(Duration::ZERO, |p| p.config.ike_lifetime);
        let (rekey_at, expire_at) = self.lifetime_deadlines(lifetime);
        new.rekey_at = rekey_at;
        new.expire_at = expire_at;
        new
    }

    /// Moves the Child SAs and queued work of `sa` to its successor `next` (in the table).
    /// With `delete_old` we delete `sa` (we initiated the surviving rekey); otherwise the peer
    /// will and we wait.
    fn hand_over(&mut self, sa: &mut IkeSa, next: u64, delete_old: bool) {
        for child in self.children.values_mut() {
            if child.ike == sa.local_spi {
                child.ike = next;
            }
        }
        let tasks: Vec<Task> = sa
            .queue
            .drain(..)
            .filter(|t| !matches!(t, Task::DeleteIke | Task::RekeyIke { .. } | Task::Dpd))
            .collect();
        if let Some(n) = self.sas.get_mut(&next) {
            n.pending_collision = false;
            for t in tasks {
                if !n.queue.contains(&t) {
                    n.queue.push_back(t);
                }
            }
        }
        sa.successor = Some(next);
        sa.state = IkeState::Rekeyed;
        sa.rekey_at = None;
        sa.expire_at = None;
        if delete_old {
            sa.remove_at = None;
            sa.queue.push_back(Task::DeleteIke);
        } else {
            sa.remove_at = Some(self.now + self.linger() * 2);
        }
    }

    /// The response to our IKE SA rekey.
    pub(super) fn on_ike_rekey_response(
        &mut self,
        sa: &mut IkeSa,
        offer: IkeRekeyOffer,
        payloads: &[Payload],
    ) {
        let peer = sa.peer;
        if sa.state != IkeState::Established {
            self.release_offer(&Request::RekeyIke(offer));
            return;
        }
        if let Some(n) = error_notify(payloads) {
            if let Some(c) = &offer.collision {
                // The peer's rekey succeeded: its new SA survives and it deletes this one.
                let created = c.created;
                if self.sas.contains_key(&created) {
                    self.hand_over(sa, created, false);
                }
                return;
            }
            let requested = n.invalid_ke_group().and_then(|g| DhGroup::from_id(g.0));
            let configured = self.peers.get(peer).is_some_and(|p| {
                p.config
                    .ike_proposals
                    .iter()
                    .any(|i| Some(i.dh) == requested)
            });
            if let (Some(group), true) =
                (requested, configured && requested != Some(offer.dh.group()))
            {
                sa.queue.push_front(Task::RekeyIke { group: Some(group) });
                return;
            }
            let retry = if n.notify_type == NotifyType::TEMPORARY_FAILURE {
                RETRY_TEMPORARY + self.jitter(RETRY_TEMPORARY)
            } else {
                let message = format!(
                    "IKE SA rekey failed: peer {} answered {}",
                    sa.remote.ip(),
                    n.notify_type
                );
                self.error(peer, message);
                RETRY_FAILED
            };
            let at = self.now + retry;
            sa.rekey_at = Some(match sa.expire_at {
                Some(expire) if expire < at => self.now,
                _ => at,
            });
            return;
        }
        let Some((new_spi, mut new)) = self.check_ike_rekey_response(sa, &offer, payloads) else {
            let message = format!(
                "IKE SA rekey failed: peer {} sent an unusable CREATE_CHILD_SA response",
                sa.remote.ip()
            );
            self.error(peer, message);
            sa.rekey_at = Some(self.now + RETRY_FAILED);
            if let Some(c) = &offer.collision {
                if self.sas.contains_key(&c.created) {
                    self.hand_over(sa, c.created, false);
                }
            }
            return;
        };
        let collided = offer.collision.as_ref().filter(|c| {
            self.sas
                .get(&c.created)
                .is_some_and(|s| s.state == IkeState::Established)
        });
        match collided {
            Some(c) => {
                let ours = lower(&new.nonce_i, &new.nonce_r).to_vec();
                let theirs = lower(&c.ni, &c.nr);
                if nonce_less(&ours, theirs) {
                    // Ours is redundant: delete it; the peer's survives and the peer deletes
                    // the old one.
                    new.state = IkeState::Deleting;
                    new.rekey_at = None;
                    new.expire_at = None;
                    new.queue.push_back(Task::DeleteIke);
                    self.sas.insert(new_spi, new);
                    self.hand_over(sa, c.created, false);
                } else {
                    let wait = self.now + self.linger() * 2;
                    if let Some(other) = self.sas.get_mut(&c.created) {
                        other.state = IkeState::Redundant;
                        other.pending_collision = false;
                        other.rekey_at = None;
                        other.expire_at = None;
                        other.remove_at = Some(wait);
                    }
                    self.sas.insert(new_spi, new);
                    self.hand_over(sa, new_spi, true);
                }
            }
            _ => {
                self.sas.insert(new_spi, new);
                self.hand_over(sa, new_spi, true);
            }
        }
    }

    /// Checks a successful IKE SA rekey response and builds the new SA.
    fn check_ike_rekey_response(
        &mut self,
        sa: &IkeSa,
        offer: &IkeRekeyOffer,
        payloads: &[Payload],
    ) -> Option<(u64, IkeSa)> {
        let sa_p = sa_payload(payloads)?;
        let nr = nonce_payload(payloads)?;
        let ke = ke_payload(payloads)?;
        let [choice] = sa_p.proposals.as_slice() else {
            return None;
        };
        chosen(&offer.offered, choice)?;
        let proposal = ike_from_wire(choice)?;
        let their_spi = match choice.spi {
            Spi::U64(spi) if spi != 0 => spi,
            _ => return None,
        };
        if proposal.dh != offer.dh.group() || ke.group.0 != proposal.dh.id() {
            return None;
        }
        let g_ir = proposal.dh.shared(&offer.dh, &ke.data).ok()?;
        let (old_proposal, old_crypto) = (sa.proposal?, sa.crypto.as_ref()?);
        let keys = IkeSaKeys::derive_rekeyed(
            old_proposal.prf,
            &old_crypto.keys.sk_d,
            &proposal,
            &g_ir,
            &offer.nonce,
            nr,
            offer.spi,
            their_spi,
        )
        .ok()?;
        let crypto = SaCrypto::new(keys, true)?;
        let mut new = self.successor_sa(sa, offer.spi, their_spi, true);
        new.crypto = Some(crypto);
        new.proposal = Some(proposal);
        new.nonce_i = offer.nonce.clone();
        new.nonce_r = nr.clone();
        Some((offer.spi, new))
    }

    /// The peer deletes an IKE SA whose rekey we have in flight with a collision: the peer won,
    /// so its new SA takes over.
    pub(super) fn adopt_ike_collision(&mut self, sa: &mut IkeSa) -> bool {
        let created = match &sa.outstanding {
            Some(Outstanding {
                request:
                    Request::RekeyIke(IkeRekeyOffer {
                        collision: Some(c), ..
                    }),
                ..
            }) => c.created,
            _ => return false,
        };
        if !self.sas.contains_key(&created) {
            return false;
        }
        sa.outstanding = None;
        self.hand_over(sa, created, false);
        true
    }

    /// The peer deletes a Child SA pair whose rekey we have in flight with a collision: the
    /// peer won, its new pair takes over now.
    pub(super) fn adopt_child_collision(&mut self, sa: &mut IkeSa, old: u32) {
        let created = match &sa.outstanding {
            Some(Outstanding {
                request:
                    Request::CreateChild(ChildOffer {
                        rekey: Some(r),
                        collision: Some(c),
                        ..
                    }),
                ..
            }) if *r == old => c.created,
            _ => return,
        };
        self.adopt_child(created, Some(old));
    }

    /// Sends a Delete for Child SA pairs we are deleting.
    pub(super) fn start_child_delete(&mut self, sa: &mut IkeSa, spis: Vec<u32>) {
        let spis: Vec<u32> = spis
            .into_iter()
            .filter(|s| {
                self.children
                    .get(s)
                    .is_some_and(|c| c.peer == sa.peer && c.state == ChildState::Deleting)
            })
            .collect();
        if spis.is_empty() {
            return;
        }
        let delete = Payload::Delete(wire::Delete {
            protocol: ProtocolId::ESP,
            spis: spis.clone(),
        });
        self.send_request(
            sa,
            ExchangeType::INFORMATIONAL,
            &[delete],
            Request::DeleteChildren(spis),
        );
    }
}
