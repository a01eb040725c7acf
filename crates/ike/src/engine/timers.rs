//! Timers (retransmission, lifetimes, liveness, reconnection) and the bookkeeping after every
//! entry point: queued requests, duplicate IKE SAs, link events.

use std::time::{Duration, Instant};

use super::exchange::Close;
use super::state::{nonce_less, ChildState, IkeState, Task};
use super::{Endpoint, Event};

/// The longest pause between two attempts of an initiating peer.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// The pause after the first failed attempt.
const FIRST_BACKOFF: Duration = Duration::from_secs(2);

impl Endpoint {
    /// Fires the timers due at `now`.
    pub(super) fn on_timeout(&mut self, now: Instant) {
        for index in 0..self.peers.slots() {
            self.reconnect_if_due(index, now);
        }

        let spis: Vec<u64> = self.sas.keys().copied().collect();
        for spi in spis {
            let Some(mut sa) = self.sas.remove(&spi) else {
                continue;
            };
            self.retransmit_if_due(&mut sa, now);
            if !sa.discard && sa.remove_at.is_some_and(|at| at <= now) {
                match sa.state {
                    IkeState::InitDone | IkeState::Closed => sa.discard = true,
                    IkeState::Rekeyed | IkeState::Redundant => {
                        self.drop_children_of(sa.local_spi);
                        sa.discard = true;
                    }
                    _ => sa.remove_at = None,
                }
            }
            if !sa.discard && sa.state == IkeState::Established {
                let dpd = self
                    .peers
                    .get(sa.peer)
                    .map_or(Duration::ZERO, |p| p.config.dpd_timeout);
                if sa.expire_at.is_some_and(|at| at <= now) {
                    self.close_sa(
                        &mut sa,
                        Close::Delete,
                        "the IKE SA lifetime expired before a rekey succeeded".to_owned(),
                    );
                } else {
                    if sa.rekey_at.is_some_and(|at| at <= now) {
                        sa.rekey_at = None;
                        if !sa.rekeying() && sa.successor.is_none() {
                            sa.queue.push_back(Task::RekeyIke { group: None });
                        }
                    }
                    if sa.recreate_at.is_some_and(|at| at <= now) {
                        sa.recreate_at = None;
                        if !sa.creating_child() {
                            sa.queue.push_back(Task::CreateChild { group: None });
                        }
                    }
                    if !dpd.is_zero()
                        && sa.outstanding.is_none()
                        && sa.queue.is_empty()
                        && sa.last_heard + dpd <= now
                    {
                        sa.queue.push_back(Task::Dpd);
                    }
                }
            }
            self.put_back(sa);
        }

        let mut rekey = Vec::new();
        let mut delete = Vec::new();
        for child in self.children.values_mut() {
            if child.state != ChildState::Deleting && child.expire_at.is_some_and(|at| at <= now) {
                child.expire_at = None;
                child.rekey_at = None;
                child.state = ChildState::Deleting;
                delete.push((child.ike, child.inbound_spi));
            } else if child.state == ChildState::Installed
                && child.rekey_at.is_some_and(|at| at <= now)
            {
                child.rekey_at = None;
                rekey.push((child.ike, child.inbound_spi));
            }
        }
        for (ike, spi) in delete {
            self.queue_task(ike, Task::DeleteChildren(vec![spi]));
        }
        for (ike, spi) in rekey {
            self.queue_task(ike, Task::RekeyChild { spi, group: None });
        }
    }

    /// Starts the next attempt of an initiating peer if it is due.
    pub(super) fn reconnect_if_due(&mut self, index: usize, now: Instant) {
        let Some(peer) = self.peers.get_mut(index) else {
            return;
        };
        match peer.reconnect_at {
            Some(at) if at <= now => peer.reconnect_at = None,
            _ => return,
        }
        let busy = self.sas.values().any(|s| s.peer == index && s.is_live());
        if !busy {
            self.initiate(index);
        }
    }

    /// The earliest timer.
    pub(super) fn next_timeout(&self) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        let mut consider = |at: Option<Instant>| {
            if let Some(at) = at {
                next = Some(next.map_or(at, |n| n.min(at)));
            }
        };
        for (_, peer) in self.peers.iter() {
            consider(peer.reconnect_at);
        }
        for sa in self.sas.values() {
            consider(sa.outstanding.as_ref().map(|o| o.next_at));
            if matches!(
                sa.state,
                IkeState::InitDone | IkeState::Closed | IkeState::Rekeyed | IkeState::Redundant
            ) {
                consider(sa.remove_at);
            }
            if sa.state == IkeState::Established {
                consider(sa.expire_at);
                consider(sa.rekey_at);
                consider(sa.recreate_at);
                let dpd = self
                    .peers
                    .get(sa.peer)
                    .map_or(Duration::ZERO, |p| p.config.dpd_timeout);
                if !dpd.is_zero() && sa.outstanding.is_none() && sa.queue.is_empty() {
                    consider(Some(sa.last_heard + dpd));
                }
            }
        }
        for child in self.children.values() {
            if child.state != ChildState::Deleting {
                consider(child.expire_at);
            }
            if child.state == ChildState::Installed {
                consider(child.rekey_at);
            }
        }
        next
    }

    /// After every entry point: duplicates, queued requests, link events, reconnection.
    pub(super) fn finish(&mut self) {
        for _ in 0..4 {
            let dups = std::mem::take(&mut self.dup_check);
            for peer in dups {
                self.resolve_duplicates(peer);
            }
            let spis: Vec<u64> = self.sas.keys().copied().collect();
            for spi in spis {
                if let Some(mut sa) = self.sas.remove(&spi) {
                    self.pump(&mut sa);
                    self.put_back(sa);
                }
            }
            let dirty = std::mem::take(&mut self.dirty);
            for peer in dirty {
                self.evaluate_link(peer);
            }
            self.schedule_recreation();
            if self.dirty.is_empty() && self.dup_check.is_empty() {
                break;
            }
        }
    }

    /// An initiating peer's IKE SA without a Child SA (deleted by the peer, expired) gets a
    /// new one.
    fn schedule_recreation(&mut self) {
        let now = self.now;
        for sa in self.sas.values_mut() {
            let initiate = self.peers.get(sa.peer).is_some_and(|p| p.config.initiate);
            if !initiate
                || sa.state != IkeState::Established
                || sa.successor.is_some()
                || sa.pending_collision
                || sa.recreate_at.is_some()
                || sa.creating_child()
            {
                continue;
            }
            let spi = sa.local_spi;
            let childless = !self
                .children
                .values()
                .any(|c| c.ike == spi && c.state != ChildState::Deleting);
            if childless {
                sa.recreate_at = Some(now);
            }
        }
    }

    /// Two IKE SAs established with one peer (both ends started at once): the one with the
    /// lowest nonce is redundant and deleted by whoever initiated it (as for rekey collisions,
    /// RFC 7296 2.8.2), so both ends keep the same one.
    fn resolve_duplicates(&mut self, peer: usize) {
        let mut candidates: Vec<(u64, Vec<u8>, bool)> = self
            .sas
            .values()
            .filter(|s| {
                s.peer == peer
                    && s.state == IkeState::Established
                    && s.successor.is_none()
                    && !s.pending_collision
            })
            .map(|s| (s.local_spi, s.lower_nonce().to_vec(), s.initiator))
            .collect();
        if candidates.len() < 2 {
            return;
        }
        // The survivor has the highest lower nonce.
        candidates.sort_by(|a, b| {
            if nonce_less(&a.1, &b.1) {
                std::cmp::Ordering::Less
            } else if nonce_less(&b.1, &a.1) {
                std::cmp::Ordering::Greater
            } else {
                std::cmp::Ordering::Equal
            }
        });
        candidates.pop();
        for (spi, _, initiator) in candidates {
            if !initiator {
                continue;
            }
            if let Some(mut sa) = self.sas.remove(&spi) {
                self.close_sa(
                    &mut sa,
                    Close::Delete,
                    "duplicate IKE SA (both ends initiated)".to_owned(),
                );
                self.put_back(sa);
            }
        }
    }

    /// Reports the peer's link down when it has no established IKE SA left, and schedules
    /// the next attempt of an initiating peer that has nothing under way.
    fn evaluate_link(&mut self, index: usize) {
        let connected = self
            .sas
            .values()
            .any(|s| s.peer == index && s.is_established());
        let live = self.sas.values().any(|s| s.peer == index && s.is_live());
        let wait = {
            let Some(peer) = self.peers.get(index) else {
                return;
            };
            // Losing an established IKE SA: start again at once; after a failed attempt: wait.
            let lost = peer.up && !connected;
            (!live && peer.config.initiate && peer.reconnect_at.is_none()).then_some(if lost {
                Duration::ZERO
            } else {
                peer.backoff.max(FIRST_BACKOFF)
            })
        };
        let jitter = match wait {
            Some(backoff) => self.jitter(backoff / 10),
            None => Duration::ZERO,
        };
        let now = self.now;
        let Some(peer) = self.peers.get_mut(index) else {
            return;
        };
        if connected {
            peer.down_reason = None;
        }
        if peer.up && !connected {
            peer.up = false;
            let reason = peer
                .down_reason
                .take()
                .unwrap_or_else(|| "the IKE SA is gone".to_owned());
            self.events.push_back(Event::IkeDown {
                peer: index,
                reason,
            });
        }
        if let Some(backoff) = wait {
            peer.reconnect_at = Some(now + backoff + jitter);
            if !backoff.is_zero() {
                peer.backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}
