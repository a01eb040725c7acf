//! INFORMATIONAL (RFC 7296 1.4): Delete both ways, liveness checks, notifications; the
//! dispatch of responses to our requests; byte lifetimes; shutting down.

use std::net::SocketAddr;

use super::exchange::Close;
use super::init::find_notify;
use super::state::{ChildState, IkeSa, IkeState, Outstanding, Request, Task};
use super::{Endpoint, Event, Peer};
use crate::wire::{Delete, ExchangeType, Header, NotifyType, Payload, ProtocolId};

impl Endpoint {
    /// A response to our request `out` on `sa`.
    pub(super) fn on_response(&mut self, sa: &mut IkeSa, out: Outstanding, payloads: &[Payload]) {
        match out.request {
            Request::Init => {}
            Request::Auth(offer) => self.on_auth_response(sa, offer, payloads),
            Request::CreateChild(offer) => self.on_child_response(sa, offer, payloads),
            Request::RekeyIke(offer) => self.on_ike_rekey_response(sa, offer, payloads),
            Request::DeleteChildren(spis) => {
                for spi in spis {
                    self.remove_child(spi);
                }
            }
            Request::DeleteIke => {
                self.drop_children_of(sa.local_spi);
                sa.discard = true;
            }
            Request::Dpd => {}
        }
    }

    /// An INFORMATIONAL request from the peer.
    pub(super) fn on_informational_request(
        &mut self,
        sa: &mut IkeSa,
        h: &Header,
        local: SocketAddr,
        remote: SocketAddr,
        payloads: &[Payload],
    ) {
        let peer = sa.peer;
        let mut delete_ike = false;
        let mut ours = Vec::new();
        for p in payloads {
            let Payload::Delete(d) = p else {
                continue;
            };
            match d.protocol {
                ProtocolId::IKE => delete_ike = true,
                ProtocolId::ESP | ProtocolId::AH => {
                    for &their in &d.spis {
                        let found = self
                            .children
                            .values()
                            .find(|c| c.peer == peer && c.outbound_spi == their)
                            .map(|c| (c.inbound_spi, c.state));
                        let Some((spi, state)) = found else {
                            continue;
                        };
                        match state {
                            // Crossing deletes (1.4.1): no Delete payload in the response.
                            ChildState::Deleting => {}
                            ChildState::Rekeying => {
                                self.adopt_child_collision(sa, spi);
                                ours.push(spi);
                            }
                            _ => ours.push(spi),
                        }
                        self.remove_child(spi);
                    }
                }
                _ => {}
            }
        }
        if delete_ike {
            self.respond(sa, h, local, remote, Vec::new());
            let reason = format!("deleted by the peer {}", remote.ip());
            if sa.state == IkeState::Established && self.adopt_ike_collision(sa) {
                // The peer won a simultaneous rekey: its new IKE SA carries on.
                sa.state = IkeState::Closed;
                sa.remove_at = Some(self.now + self.linger());
                self.dirty.insert(peer);
                return;
            }
            self.close_sa(sa, Close::Silent, reason);
            return;
        }
        if find_notify(payloads, NotifyType::AUTHENTICATION_FAILED).is_some() {
            self.respond(sa, h, local, remote, Vec::new());
            let message = format!(
                "authentication failed: peer {} rejected our authentication (AUTHENTICATION_FAILED); check the pre-shared key and the identities",
                remote.ip()
            );
            self.error(peer, message.clone());
            self.close_sa(sa, Close::Silent, message);
            return;
        }
        let response = if ours.is_empty() {
            Vec::new()
        } else {
            vec![Payload::Delete(Delete {
                protocol: ProtocolId::ESP,
                spis: ours,
            })]
        };
        self.respond(sa, h, local, remote, response);
    }

    /// Counts bytes against a Child SA's byte lifetime.
    pub(super) fn on_child_bytes(&mut self, peer: usize, spi: u32, bytes: u64) {
        let Some(child) = self.children.get_mut(&spi) else {
            return;
        };
        if child.peer != peer {
            return;
        }
        child.bytes = child.bytes.saturating_add(bytes);
        let ike = child.ike;
        if child.expire_bytes.is_some_and(|limit| child.bytes >= limit)
            && child.state != ChildState::Deleting
        {
            child.expire_bytes = None;
            child.rekey_bytes = None;
            child.state = ChildState::Deleting;
            self.queue_task(ike, Task::DeleteChildren(vec![spi]));
        } else if child.rekey_bytes.is_some_and(|limit| child.bytes >= limit)
            && child.state == ChildState::Installed
        {
            child.rekey_bytes = None;
            self.queue_task(ike, Task::RekeyChild { spi, group: None });
        }
    }

    /// Deletes every IKE SA (once, no retransmission) and reports everything down.
    pub(super) fn on_close_all(&mut self) {
        let spis: Vec<u64> = self.sas.keys().copied().collect();
        for spi in spis {
            if let Some(mut sa) = self.sas.remove(&spi) {
                self.delete_once(&mut sa);
            }
        }
        self.half_open.clear();
        self.reserved_spis.clear();
        self.dirty.clear();
        self.dup_check.clear();
        for (index, peer) in self.peers.iter_mut() {
            peer.reconnect_at = None;
            if peer.up {
                peer.up = false;
                self.events.push_back(Event::IkeDown {
                    peer: index,
                    reason: "closed locally".to_owned(),
                });
            }
        }
    }

    /// Removes a peer's IKE SAs (each deleted as by [`Endpoint::close_all`]) and everything
    /// they hold, then reports its link down. `peer` is already out of its slot, so nothing
    /// below can start anything for it again.
    pub(super) fn on_remove_peer(&mut self, index: usize, peer: Peer) {
        let spis: Vec<u64> = self
            .sas
            .values()
            .filter(|s| s.peer == index)
            .map(|s| s.local_spi)
            .collect();
        // All out of the table first: releasing one SA's exchange (a rekey collision) must not
        // reach another of them.
        let mut sas: Vec<IkeSa> = spis.iter().filter_map(|spi| self.sas.remove(spi)).collect();
        for sa in &mut sas {
            self.delete_once(sa);
        }
        // A Child SA whose IKE SA went elsewhere would otherwise outlive its peer.
        let orphans: Vec<u32> = self
            .children
            .values()
            .filter(|c| c.peer == index)
            .map(|c| c.inbound_spi)
            .collect();
        for spi in orphans {
            self.remove_child(spi);
        }
        // Half-open entries and the SPIs reserved by exchanges in flight; with the Child SAs
        // gone, releasing an offer changes nothing else.
        for sa in &sas {
            self.forget(sa);
        }
        self.dirty.remove(&index);
        self.dup_check.remove(&index);
        if peer.up {
            self.events.push_back(Event::IkeDown {
                peer: index,
                reason: "peer removed from the configuration".to_owned(),
            });
        }
    }

    /// Drops an IKE SA at once: a Delete if it may be known to the peer (sent once, not
    /// retransmitted, since nothing here will wait for the answer) and its Child SAs.
    fn delete_once(&mut self, sa: &mut IkeSa) {
        if matches!(
            sa.state,
            IkeState::AuthSent | IkeState::Established | IkeState::Rekeyed | IkeState::Redundant
        ) {
            let delete = Payload::Delete(Delete {
                protocol: ProtocolId::IKE,
                spis: Vec::new(),
            });
            // A request in flight keeps its message ID; the Delete takes the next one.
            self.send_oneshot(sa, ExchangeType::INFORMATIONAL, &[delete]);
        }
        self.drop_children_of(sa.local_spi);
    }
}
