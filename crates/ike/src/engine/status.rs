//! What [`Endpoint::status`] reports about a peer.

use std::net::SocketAddr;
use std::time::Duration;

use super::proposals::esp_name;
use super::state::{ChildState, IkeState};
use super::Endpoint;
use crate::wire::TrafficSelector;

/// Whether a peer's tunnel is up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerState {
    /// An IKE SA is being set up, or an initiating peer waits for its next attempt.
    Connecting,
    /// An IKE SA is established.
    Connected,
    /// Nothing is happening (a responder-only peer that has not called).
    NotConnected,
}

/// The established IKE SA of a peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IkeStatus {
    /// The negotiated algorithms, as a strongSwan proposal (`aes256gcm16-prfsha256-ecp256`).
    pub proposal: String,
    /// Initiator's SPI.
    pub spi_i: u64,
    /// Responder's SPI.
    pub spi_r: u64,
    /// We initiated it (or its last rekey).
    pub initiator: bool,
    /// Our address and port for IKE.
    pub local: SocketAddr,
    /// The peer's address and port for IKE.
    pub remote: SocketAddr,
    /// Time since it was established (or rekeyed), as of the last call into the endpoint.
    pub age: Duration,
}

/// One announced Child SA pair of a peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChildStatus {
    /// The negotiated algorithms, as a strongSwan ESP proposal (`aes256gcm16`).
    pub esp: String,
    /// Our SPI.
    pub inbound_spi: u32,
    /// The peer's SPI.
    pub outbound_spi: u32,
    /// Our side's traffic selectors.
    pub local_ts: Vec<TrafficSelector>,
    /// The peer's side's traffic selectors.
    pub remote_ts: Vec<TrafficSelector>,
    /// Time since it was created, as of the last call into the endpoint.
    pub age: Duration,
    /// Bytes reported through [`Endpoint::child_bytes`].
    pub bytes: u64,
    /// Being replaced or deleted.
    pub retiring: bool,
}

/// A peer's state for `causeway status`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerStatus {
    /// The connection's name.
    pub name: String,
    /// Up, coming up, or down.
    pub state: PeerState,
    /// The established IKE SA, if any.
    pub ike: Option<IkeStatus>,
    /// The announced Child SA pairs, oldest first.
    pub children: Vec<ChildStatus>,
    /// The last error reported for this peer (cleared when an IKE SA is established).
    pub last_error: Option<String>,
}

impl Endpoint {
    /// The state of peer `peer` (a default "not connected" status for an unknown or removed
    /// index).
    pub fn status(&self, peer: usize) -> PeerStatus {
        let Some(p) = self.peers.get(peer) else {
            return PeerStatus {
                name: String::new(),
                state: PeerState::NotConnected,
                ike: None,
                children: Vec::new(),
                last_error: None,
            };
        };
        let now = self.now;
        let ike = self
            .sas
            .values()
            .filter(|s| s.peer == peer && s.is_established())
            .max_by_key(|s| s.established_at)
            .map(|s| IkeStatus {
                proposal: s.proposal.map(|p| p.to_string()).unwrap_or_default(),
                spi_i: s.spi_i(),
                spi_r: s.spi_r(),
                initiator: s.initiator,
                local: s.local,
                remote: s.remote,
                age: s
                    .established_at
                    .map_or(Duration::ZERO, |at| now.saturating_duration_since(at)),
            });
        let mut children: Vec<ChildStatus> = self
            .children
            .values()
            .filter(|c| c.peer == peer && c.announced)
            .map(|c| ChildStatus {
                esp: esp_name(&c.esp),
                inbound_spi: c.inbound_spi,
                outbound_spi: c.outbound_spi,
                local_ts: c.local_ts.clone(),
                remote_ts: c.remote_ts.clone(),
                age: now.saturating_duration_since(c.created),
                bytes: c.bytes,
                retiring: !matches!(c.state, ChildState::Installed | ChildState::Rekeying),
            })
            .collect();
        children.sort_by_key(|c| std::cmp::Reverse(c.age));
        let negotiating = self.sas.values().any(|s| {
            s.peer == peer
                && matches!(
                    s.state,
                    IkeState::InitSent | IkeState::InitDone | IkeState::AuthSent
                )
        });
        let state = if ike.is_some() {
            PeerState::Connected
        } else if negotiating || (p.config.initiate && !self.closed) {
            PeerState::Connecting
        } else {
            PeerState::NotConnected
        };
        PeerStatus {
            name: p.config.name.clone(),
            state,
            ike,
            children,
            last_error: p.last_error.clone(),
        }
    }
}
