//! Two endpoints against each other in a simulated network (see [`sim`]), and the inputs
//! strongSwan 5.9.8 sends.

mod sim;

mod establish;
mod failures;
mod fuzz;
mod lifecycle;
mod rekey;
mod reliability;
mod reload;
mod strongswan;

use std::time::Instant;

use super::state::{ChildState, IkeState, Task};
use super::Endpoint;

/// Test hooks: make things happen now instead of waiting for a timer.
impl Endpoint {
    /// Queues a rekey of every installed Child SA of `peer`.
    pub(super) fn test_rekey_children(&mut self, now: Instant, peer: usize) {
        self.advance(now);
        let work: Vec<(u64, u32)> = self
            .children
            .values()
            .filter(|c| c.peer == peer && c.state == ChildState::Installed)
            .map(|c| (c.ike, c.inbound_spi))
            .collect();
        for (ike, spi) in work {
            self.queue_task(ike, Task::RekeyChild { spi, group: None });
        }
        self.finish();
    }

    /// Queues a rekey of the established IKE SAs of `peer`.
    pub(super) fn test_rekey_ike(&mut self, now: Instant, peer: usize) {
        self.advance(now);
        for sa in self.sas.values_mut() {
            if sa.peer == peer && sa.state == IkeState::Established && sa.successor.is_none() {
                sa.queue.push_back(Task::RekeyIke { group: None });
            }
        }
        self.finish();
    }

    /// Deletes every installed Child SA of `peer`.
    pub(super) fn test_delete_children(&mut self, now: Instant, peer: usize) {
        self.advance(now);
        let work: Vec<(u64, u32)> = self
            .children
            .values()
            .filter(|c| c.peer == peer && c.state == ChildState::Installed)
            .map(|c| (c.ike, c.inbound_spi))
            .collect();
        for (ike, spi) in work {
            if let Some(c) = self.children.get_mut(&spi) {
                c.state = ChildState::Deleting;
            }
            self.queue_task(ike, Task::DeleteChildren(vec![spi]));
        }
        self.finish();
    }

    /// Established IKE SAs of `peer`.
    pub(super) fn test_ike_sas(&self, peer: usize) -> usize {
        self.sas
            .values()
            .filter(|s| s.peer == peer && s.state == IkeState::Established)
            .count()
    }

    /// All IKE SAs, whatever their state.
    pub(super) fn test_all_sas(&self) -> usize {
        self.sas.len()
    }

    /// All Child SAs, announced or not.
    pub(super) fn test_all_children(&self) -> usize {
        self.children.len()
    }
}
