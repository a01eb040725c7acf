//! IPsec tunnels on the data plane: sealing outbound inner packets into ESP-in-UDP (RFC 4303,
//! RFC 3948) and the table of inbound SAs, looked up by SPI.
//!
//! Fail closed: a packet routed to a tunnel leaves only sealed by the tunnel's outbound SA; when
//! the SA cannot seal (sequence numbers exhausted), the packet is dropped and counted, never sent
//! in clear.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use causeway_engine::counters::DropReason;
use causeway_esp::{
    InboundSa, OpenError, OutboundSa, SealError, HEADROOM, NEXT_HEADER_IPV4, NEXT_HEADER_IPV6,
};
use causeway_sys::udp::UdpSocket;
use causeway_wire::virtio::{self, VirtioHdr};

use crate::seqlease::SeqLease;

/// ESP state of one tunnel that the control thread reads.
#[derive(Debug)]
pub struct EspState {
    pub cipher: &'static str,
    pub esn: bool,
    pub out_spi: u32,
    pub in_spi: u32,
    /// Last sequence number sealed (0: none yet).
    pub out_seq: AtomicU64,
    /// Highest sequence number authenticated inbound (the replay window's top).
    pub in_seq: AtomicU64,
}

/// The sending side of one tunnel. Shared by the egress worker (traffic) and the tunnel ingress
/// worker (ICMP errors back to the peer), hence the mutex around the SA (never contended on the
/// traffic path but by those rare errors).
pub struct TunnelTx {
    pub conn: usize,
    socket: Arc<UdpSocket>,
    peer: SocketAddr,
    sa: Mutex<(OutboundSa, SeqLease)>,
    pub esp: Arc<EspState>,
}

/// Why a sealed send failed, as the counter to bump.
pub enum TxFail {
    Drop(DropReason),
    Io(io::Error),
}

impl TunnelTx {
    /// A sender whose SA resumed at the start of `lease` (see [`SeqLease`]).
    pub fn new(
        conn: usize,
        socket: Arc<UdpSocket>,
        peer: SocketAddr,
        sa: OutboundSa,
        lease: SeqLease,
        esp: Arc<EspState>,
    ) -> TunnelTx {
        TunnelTx {
            conn,
            socket,
            peer,
            sa: Mutex::new((sa, lease)),
            esp,
        }
    }

    /// Seals the inner IP packet `inner` (completing an offloaded checksum first when `csum`
    /// says so) into `buf` and sends it to the peer. `buf` must hold `HEADROOM + inner.len() +
    /// TAILROOM` bytes.
    pub fn seal_send(
        &self,
        inner: &[u8],
        csum: Option<&VirtioHdr>,
        buf: &mut [u8],
    ) -> Result<(), TxFail> {
        let len = inner.len();
        let next_header = match inner.first().map(|b| b >> 4) {
            Some(4) => NEXT_HEADER_IPV4,
            Some(6) => NEXT_HEADER_IPV6,
            _ => return Err(TxFail::Drop(DropReason::EspMalformed)),
        };
        let Some(room) = buf.get_mut(HEADROOM..HEADROOM + len) else {
            return Err(TxFail::Drop(DropReason::EspMalformed));
        };
        room.copy_from_slice(inner);
        if let Some(v) = csum.filter(|v| v.needs_csum()) {
            // The peer's stack verifies checksums: complete what the sender left to offload.
            virtio::complete_csum(v, room);
        }
        let range = {
            let mut guard = self.sa.lock().unwrap_or_else(|e| e.into_inner());
            let (sa, lease) = &mut *guard;
            // Never seal with a number the lease file does not cover: after a restart the SA
            // resumes above the recorded ceiling, so no nonce is ever used twice.
            if let Some(next) = sa.next_seq() {
                if let Err(e) = lease.cover(next) {
                    tracing::error!(error = %e, "cannot extend the sequence-number lease: packet not sent");
                    return Err(TxFail::Drop(DropReason::EspSeqLease));
                }
            }
            let r = sa.seal(buf, HEADROOM, len, next_header);
            if r.is_ok() {
                let seq = sa.next_seq().map_or(u64::MAX, |n| n - 1);
                self.esp.out_seq.store(seq, Ordering::Relaxed);
            }
            r
        };
        match range {
            Ok(r) => self
                .socket
                .send_to(&buf[r], self.peer)
                .map(|_| ())
                .map_err(TxFail::Io),
            Err(SealError::SequenceExhausted) => Err(TxFail::Drop(DropReason::EspSeqExhausted)),
            Err(_) => Err(TxFail::Drop(DropReason::EspMalformed)),
        }
    }
}

/// The inbound SAs, owned by the tunnel ingress worker.
pub struct Inbound {
    entries: Vec<InboundEntry>,
}

pub struct InboundEntry {
    pub spi: u32,
    pub conn: usize,
    pub sa: InboundSa,
    pub esp: Arc<EspState>,
}

impl Inbound {
    pub fn new(entries: Vec<InboundEntry>) -> Inbound {
        Inbound { entries }
    }

    /// The SA for `spi` (a handful of tunnels: a linear scan beats hashing).
    pub fn get(&mut self, spi: u32) -> Option<&mut InboundEntry> {
        self.entries.iter_mut().find(|e| e.spi == spi)
    }
}

/// The counter for an `open` refusal.
pub fn open_drop(e: OpenError) -> DropReason {
    match e {
        OpenError::Truncated => DropReason::EspMalformed,
        OpenError::WrongSpi => DropReason::EspNoSa,
        OpenError::Replayed => DropReason::EspReplayed,
        OpenError::TooOld => DropReason::EspTooOld,
        OpenError::AuthFailed => DropReason::EspAuthFailed,
        OpenError::BadPadding => DropReason::EspBadPadding,
        OpenError::BadNextHeader(_) => DropReason::EspBadNextHeader,
        OpenError::Dummy => DropReason::EspDummy,
    }
}
