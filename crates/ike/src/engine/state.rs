//! The state the endpoint keeps: IKE SAs with their request window, Child SAs, and the
//! exchanges in flight.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Instant;

use crate::crypto::{DhGroup, DhPrivate, EspKeys, EspProposal, IkeProposal, IkeSaKeys, SkCipher};
use crate::wire::{ExchangeType, Proposal, TrafficSelector};

/// Where an IKE SA is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum IkeState {
    /// Initiator: IKE_SA_INIT request sent.
    InitSent,
    /// Responder: IKE_SA_INIT answered, waiting for IKE_AUTH (half-open).
    InitDone,
    /// Initiator: IKE_AUTH request sent.
    AuthSent,
    /// Authenticated and in use.
    Established,
    /// Replaced by a rekey (`successor`); its Child SAs moved; waiting for its Delete.
    Rekeyed,
    /// A new IKE SA the peer created in a rekey collision it lost: the peer deletes it.
    Redundant,
    /// Our Delete for it is in flight; it has no Child SAs any more.
    Deleting,
    /// Gone, kept only to answer a retransmission of the last request from the cache.
    Closed,
}

/// The keys of an IKE SA and its two SK ciphers.
pub(super) struct SaCrypto {
    pub keys: IkeSaKeys,
    /// Protects what we send.
    pub out: SkCipher,
    /// Opens what the peer sends.
    pub inbound: SkCipher,
}

impl SaCrypto {
    /// Keys the ciphers for the side that is (or is not) the original initiator.
    pub fn new(keys: IkeSaKeys, initiator: bool) -> Option<SaCrypto> {
        let (out, inbound) = if initiator {
            (keys.initiator_sk().ok()?, keys.responder_sk().ok()?)
        } else {
            (keys.responder_sk().ok()?, keys.initiator_sk().ok()?)
        };
        Some(SaCrypto { keys, out, inbound })
    }
}

/// What IKE_SA_INIT leaves for IKE_AUTH.
pub(super) struct Handshake {
    /// Initiator: our DH private value until the response arrives.
    pub dh: Option<DhPrivate>,
    /// Initiator: the group of our KE payload.
    pub ke_group: DhGroup,
    /// Initiator: the SA payload's proposals as sent.
    pub offered: Vec<Proposal>,
    /// Initiator: the cookie to repeat.
    pub cookie: Option<Vec<u8>>,
    /// Initiator: retries after INVALID_KE_PAYLOAD / COOKIE so far.
    pub ke_retries: u8,
    pub cookie_retries: u8,
    /// The IKE_SA_INIT request as sent / received (RealMessage1).
    pub request: Vec<u8>,
    /// The IKE_SA_INIT response (RealMessage2).
    pub response: Vec<u8>,
}

/// A response kept to answer a retransmitted request.
pub(super) struct Cached {
    pub message_id: u32,
    pub data: Vec<u8>,
}

/// What we offered in a CREATE_CHILD_SA (or IKE_AUTH) for a Child SA.
pub(super) struct ChildOffer {
    /// The inbound SPI of the pair being rekeyed.
    pub rekey: Option<u32>,
    /// Our inbound SPI for the new pair.
    pub spi: u32,
    pub nonce: Vec<u8>,
    pub dh: Option<DhPrivate>,
    pub offered: Vec<Proposal>,
    pub ts_i: Vec<TrafficSelector>,
    pub ts_r: Vec<TrafficSelector>,
    /// Rekey collision: the pair the peer created for the same old pair while this request was
    /// in flight (2.8.1), not announced yet.
    pub collision: Option<Collision<u32>>,
}

/// What we offered to rekey the IKE SA.
pub(super) struct IkeRekeyOffer {
    /// Our SPI of the new IKE SA.
    pub spi: u64,
    pub nonce: Vec<u8>,
    pub dh: DhPrivate,
    pub offered: Vec<Proposal>,
    /// The new IKE SA the peer created in a simultaneous rekey (2.8.2).
    pub collision: Option<Collision<u64>>,
}

/// The other exchange of a simultaneous rekey: the SA it created and its nonces.
pub(super) struct Collision<T> {
    pub created: T,
    pub ni: Vec<u8>,
    pub nr: Vec<u8>,
}

/// The kind of request in flight, with what its response needs.
pub(super) enum Request {
    Init,
    Auth(ChildOffer),
    CreateChild(ChildOffer),
    RekeyIke(IkeRekeyOffer),
    DeleteChildren(Vec<u32>),
    DeleteIke,
    Dpd,
}

/// The request in flight (window size 1).
pub(super) struct Outstanding {
    pub message_id: u32,
    pub exchange: ExchangeType,
    pub data: Vec<u8>,
    pub sent: u32,
    pub next_at: Instant,
    pub request: Request,
}

/// Requests waiting for the window.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Task {
    /// Rekey the Child SA pair with this inbound SPI, with this PFS group if not the default.
    RekeyChild { spi: u32, group: Option<DhGroup> },
    /// Create a Child SA for the configured selectors (an initiating peer whose IKE SA has
    /// none left), with this PFS group if not the default.
    CreateChild { group: Option<DhGroup> },
    /// Rekey the IKE SA, with this group if not the default.
    RekeyIke { group: Option<DhGroup> },
    /// Delete these Child SA pairs (inbound SPIs).
    DeleteChildren(Vec<u32>),
    /// Delete this IKE SA.
    DeleteIke,
    /// Liveness check.
    Dpd,
}

/// One IKE SA.
pub(super) struct IkeSa {
    pub peer: usize,
    pub local_spi: u64,
    /// Zero until known.
    pub remote_spi: u64,
    /// We are its original initiator (for a rekeyed SA: we initiated the rekey).
    pub initiator: bool,
    pub state: IkeState,
    /// Where our requests go from and to (port 4500 after IKE_SA_INIT).
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub established_at: Option<Instant>,
    pub proposal: Option<IkeProposal>,
    pub crypto: Option<SaCrypto>,
    pub handshake: Option<Handshake>,
    /// The nonces of the exchange that created it (IKE_SA_INIT or the rekey).
    pub nonce_i: Vec<u8>,
    pub nonce_r: Vec<u8>,
    pub next_request_id: u32,
    pub outstanding: Option<Outstanding>,
    pub queue: VecDeque<Task>,
    /// The message ID of the next request the peer may send.
    pub expected_request_id: u32,
    pub cached: Option<Cached>,
    pub rekey_at: Option<Instant>,
    pub expire_at: Option<Instant>,
    /// Last sign of life from the peer (for DPD).
    pub last_heard: Instant,
    /// The IKE SA that replaced it.
    pub successor: Option<u64>,
    /// Removal deadline: half-open timeout, the linger of a closed SA, the wait for the Delete
    /// of a rekeyed or redundant one.
    pub remove_at: Option<Instant>,
    /// Responder: IKE_AUTH carried INITIAL_CONTACT.
    pub initial_contact: bool,
    /// Forget it now (it is not put back into the table).
    pub discard: bool,
    /// Created as responder in a simultaneous IKE SA rekey not resolved yet.
    pub pending_collision: bool,
    /// When to create a Child SA again (an initiating peer's IKE SA without one).
    pub recreate_at: Option<Instant>,
}

impl IkeSa {
    /// A new IKE SA in `state`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        peer: usize,
        local_spi: u64,
        remote_spi: u64,
        initiator: bool,
        state: IkeState,
        local: SocketAddr,
        remote: SocketAddr,
        now: Instant,
    ) -> IkeSa {
        IkeSa {
            peer,
            local_spi,
            remote_spi,
            initiator,
            state,
            local,
            remote,
            established_at: None,
            proposal: None,
            crypto: None,
            handshake: None,
            nonce_i: Vec::new(),
            nonce_r: Vec::new(),
            next_request_id: 0,
            outstanding: None,
            queue: VecDeque::new(),
            expected_request_id: 0,
            cached: None,
            rekey_at: None,
            expire_at: None,
            last_heard: now,
            successor: None,
            remove_at: None,
            initial_contact: false,
            discard: false,
            pending_collision: false,
            recreate_at: None,
        }
    }

    /// The SPIs as the header carries them.
    pub fn spi_i(&self) -> u64 {
        if self.initiator {
            self.local_spi
        } else {
            self.remote_spi
        }
    }

    pub fn spi_r(&self) -> u64 {
        if self.initiator {
            self.remote_spi
        } else {
            self.local_spi
        }
    }

    pub fn is_established(&self) -> bool {
        self.state == IkeState::Established
    }

    /// Still negotiating, established, or winding down a rekey: the peer has something here.
    pub fn is_live(&self) -> bool {
        matches!(
            self.state,
            IkeState::InitSent
                | IkeState::InitDone
                | IkeState::AuthSent
                | IkeState::Established
                | IkeState::Rekeyed
        )
    }

    /// Whether a Child SA creation is queued or in flight.
    pub fn creating_child(&self) -> bool {
        self.queue
            .iter()
            .any(|t| matches!(t, Task::CreateChild { .. }))
            || matches!(
                self.outstanding,
                Some(Outstanding {
                    request: Request::CreateChild(ChildOffer { rekey: None, .. }),
                    ..
                })
            )
    }

    /// Whether a rekey of the IKE SA is queued or in flight.
    pub fn rekeying(&self) -> bool {
        self.queue
            .iter()
            .any(|t| matches!(t, Task::RekeyIke { .. }))
            || matches!(
                self.outstanding,
                Some(Outstanding {
                    request: Request::RekeyIke(_),
                    ..
                })
            )
    }

    /// The lower of the two nonces that created it (2.8.2).
    pub fn lower_nonce(&self) -> &[u8] {
        lower(&self.nonce_i, &self.nonce_r)
    }
}

/// The lower of two nonces, compared as strongSwan does: over the common length.
pub(super) fn lower<'a>(a: &'a [u8], b: &'a [u8]) -> &'a [u8] {
    if nonce_less(b, a) {
        b
    } else {
        a
    }
}

/// Nonce order for collision resolution: lexicographic over the shorter length.
pub(super) fn nonce_less(a: &[u8], b: &[u8]) -> bool {
    let n = a.len().min(b.len());
    a[..n] < b[..n]
}

/// Where a Child SA pair is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ChildState {
    /// In use.
    Installed,
    /// Our rekey of it is in flight.
    Rekeying,
    /// Replaced by a rekey; whoever must delete it will.
    Rekeyed,
    /// Our Delete for it is queued or in flight.
    Deleting,
    /// Created by the peer in a rekey collision the peer lost: the peer deletes it. Never
    /// announced.
    Redundant,
    /// Created as responder while our own rekey of the same pair is in flight: announced or not
    /// once that exchange ends.
    Pending,
}

/// One Child SA pair (ESP, tunnel mode).
pub(super) struct ChildSa {
    pub peer: usize,
    /// Our SPI of the IKE SA it belongs to.
    pub ike: u64,
    pub inbound_spi: u32,
    pub outbound_spi: u32,
    pub esp: EspProposal,
    pub local_ts: Vec<TrafficSelector>,
    pub remote_ts: Vec<TrafficSelector>,
    pub created: Instant,
    pub rekey_at: Option<Instant>,
    pub expire_at: Option<Instant>,
    pub bytes: u64,
    pub rekey_bytes: Option<u64>,
    pub expire_bytes: Option<u64>,
    pub state: ChildState,
    /// Inbound and outbound keys until announced.
    pub keys: Option<(EspKeys, EspKeys)>,
    pub announced: bool,
    /// The pair this one replaces (announced with it).
    pub replaces: Option<u32>,
    /// Where ESP-in-UDP goes.
    pub remote: SocketAddr,
}
