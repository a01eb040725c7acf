//! IPsec tunnels on the data plane: sealing outbound inner packets into ESP-in-UDP (RFC 4303,
//! RFC 3948) and the table of inbound SAs, looked up by SPI.
//!
//! Fail closed: a packet routed to a tunnel leaves only sealed by the tunnel's outbound SA; when
//! the tunnel has no SA (IKE has not negotiated one yet, or it was deleted) or the SA cannot seal
//! (sequence numbers exhausted), the packet is dropped and counted, never sent in clear.
//!
//! Manual SAs are installed at start; IKE-negotiated ones are installed, replaced (make before
//! break: the new inbound SA first, then the outbound switch) and removed by the IKE thread.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use causeway_engine::counters::DropReason;
use causeway_esp::{
    InboundSa, OpenError, OutboundSa, SealError, HEADROOM, NEXT_HEADER_IPV4, NEXT_HEADER_IPV6,
    TAILROOM,
};
use causeway_sys::udp::{UdpSocket, GSO_MAX_BYTES, GSO_MAX_SEGMENTS};
use causeway_wire::gso::segment_tcp;
use causeway_wire::ip::IpSummary;
use causeway_wire::virtio::{self, VirtioHdr};

use crate::seqlease::SeqLease;

/// ESP state of one tunnel that the control thread reads (changes on every IKE rekey).
#[derive(Debug)]
pub struct EspState {
    pub cipher: Mutex<&'static str>,
    pub esn: AtomicBool,
    pub out_spi: AtomicU32,
    pub in_spi: AtomicU32,
    /// Last sequence number sealed (0: none yet).
    pub out_seq: AtomicU64,
    /// Highest sequence number authenticated inbound (the replay window's top).
    pub in_seq: AtomicU64,
    /// Authenticated inbound packets, all SAs of the tunnel (liveness for dead peer detection).
    pub in_packets: AtomicU64,
}

impl EspState {
    pub fn new(cipher: &'static str, esn: bool, out_spi: u32, in_spi: u32) -> EspState {
        EspState {
            cipher: Mutex::new(cipher),
            esn: AtomicBool::new(esn),
            out_spi: AtomicU32::new(out_spi),
            in_spi: AtomicU32::new(in_spi),
            out_seq: AtomicU64::new(0),
            in_seq: AtomicU64::new(0),
            in_packets: AtomicU64::new(0),
        }
    }

    /// No SA installed.
    pub fn empty() -> EspState {
        EspState::new("-", false, 0, 0)
    }
}

/// The outbound SA of a tunnel and where it sends.
pub struct Outbound {
    pub sa: OutboundSa,
    /// Manual SAs only: the persisted sequence-number lease (IKE SAs have fresh keys).
    pub lease: Option<SeqLease>,
    pub peer: SocketAddr,
}

/// The sending side of one tunnel. Shared by the egress worker (traffic), the tunnel ingress
/// worker (ICMP errors back to the peer) and the IKE thread (SA changes), hence the mutex around
/// the SA (never contended on the traffic path but by those rare events).
pub struct TunnelTx {
    pub conn: usize,
    socket: Arc<UdpSocket>,
    out: Mutex<Option<Outbound>>,
    pub esp: Arc<EspState>,
}

/// Why a sealed send failed, as the counter to bump.
pub enum TxFail {
    Drop(DropReason),
    Io(io::Error),
}

impl TunnelTx {
    /// A sender with an SA (manual keying) or none yet (IKE).
    pub fn new(
        conn: usize,
        socket: Arc<UdpSocket>,
        out: Option<Outbound>,
        esp: Arc<EspState>,
    ) -> TunnelTx {
        TunnelTx {
            conn,
            socket,
            out: Mutex::new(out),
            esp,
        }
    }

    /// Installs (or replaces) the outbound SA; `None` removes it (packets are then dropped as
    /// `esp_no_sa`).
    pub fn set_outbound(&self, out: Option<Outbound>) {
        let mut guard = self.out.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(o) = &out {
            self.esp.out_spi.store(o.sa.spi(), Ordering::Relaxed);
            self.esp.out_seq.store(0, Ordering::Relaxed);
        }
        *guard = out;
    }

    /// The socket this tunnel sends from (IKE messages on port 4500 share it).
    pub fn socket(&self) -> &Arc<UdpSocket> {
        &self.socket
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
        let (range, peer) = {
            let mut guard = self.out.lock().unwrap_or_else(|e| e.into_inner());
            let Some(out) = guard.as_mut() else {
                return Err(TxFail::Drop(DropReason::EspNoSa));
            };
            // Never seal with a number the lease file does not cover: after a restart the SA
            // resumes above the recorded ceiling, so no nonce is ever used twice.
            if let (Some(next), Some(lease)) = (out.sa.next_seq(), out.lease.as_mut()) {
                if let Err(e) = lease.cover(next) {
                    tracing::error!(error = %e, "cannot extend the sequence-number lease: packet not sent");
                    return Err(TxFail::Drop(DropReason::EspSeqLease));
                }
            }
            let r = out.sa.seal(buf, HEADROOM, len, next_header);
            if r.is_ok() {
                let seq = out.sa.next_seq().map_or(u64::MAX, |n| n - 1);
                self.esp.out_seq.store(seq, Ordering::Relaxed);
            }
            (r, out.peer)
        };
        match range {
            Ok(r) => self
                .socket
                .send_to(&buf[r], peer)
                .map(|_| ())
                .map_err(TxFail::Io),
            Err(SealError::SequenceExhausted) => Err(TxFail::Drop(DropReason::EspSeqExhausted)),
            Err(_) => Err(TxFail::Drop(DropReason::EspMalformed)),
        }
    }
}

/// Scratch of [`TunnelTx::seal_send_super`]: sealed segments laid end to end for one UDP GSO
/// send. Allocated once per worker.
pub struct GsoBuf {
    buf: Vec<u8>,
}

impl Default for GsoBuf {
    fn default() -> GsoBuf {
        // One GSO send at most, plus room for the segment that does not fit any more.
        GsoBuf {
            buf: vec![0; GSO_MAX_BYTES + HEADROOM + 65_535 + TAILROOM],
        }
    }
}

impl GsoBuf {
    /// Makes its pages resident (see `worker::prefault`).
    pub fn prefault(&mut self) {
        crate::worker::prefault(&mut self.buf);
    }
}

/// Sealed datagrams of one GSO send being built: all `stride` bytes long but the last.
struct GsoRun {
    len: usize,
    stride: usize,
    count: usize,
}

impl TunnelTx {
    /// Seals a TCP super-packet (`pkt`, checked by the pipeline: summary `s`, virtio header `v`
    /// of kind TCPV4/TCPV6) segment by segment, each sealed in place where it will be sent, and
    /// sends the datagrams with UDP GSO: one `sendmsg` for up to 64 datagrams or 64 KB, instead
    /// of one per segment. Without GSO on the socket (an old kernel), one send per datagram.
    /// `frag` is scratch for a segment (headers plus `gso_size`).
    pub fn seal_send_super(
        &self,
        pkt: &[u8],
        s: &IpSummary,
        v: &VirtioHdr,
        frag: &mut [u8],
        gso: &mut GsoBuf,
    ) -> Result<(), TxFail> {
        let mut guard = self.out.lock().unwrap_or_else(|e| e.into_inner());
        let Some(out) = guard.as_mut() else {
            return Err(TxFail::Drop(DropReason::EspNoSa));
        };
        let cipher = out.sa.cipher();
        let hl = cipher.header_len();
        let peer = out.peer;
        let gso_ok = self.socket.gso_supported();
        let mut run = GsoRun {
            len: 0,
            stride: 0,
            count: 0,
        };
        let mut result = Ok(());
        let buf = &mut gso.buf;
        let socket = &self.socket;
        let flush = |run: &mut GsoRun, buf: &[u8]| -> Result<(), TxFail> {
            if run.count == 0 {
                return Ok(());
            }
            let bytes = &buf[..run.len];
            let r = if gso_ok && run.count > 1 {
                socket.send_gso(bytes, run.stride as u16, peer).map(|_| ())
            } else {
                bytes
                    .chunks(run.stride)
                    .try_for_each(|d| socket.send_to(d, peer).map(|_| ()))
            };
            run.len = 0;
            run.count = 0;
            r.map_err(TxFail::Io)
        };
        let made = segment_tcp(pkt, s, v, frag, |segment| {
            if result.is_err() {
                return;
            }
            let len = segment.len();
            let next_header = if s.version == 4 {
                NEXT_HEADER_IPV4
            } else {
                NEXT_HEADER_IPV6
            };
            let sealed = cipher.sealed_len(len);
            // A GSO send carries datagrams of one size, the last possibly shorter.
            if run.count > 0
                && (sealed > run.stride
                    || run.count >= GSO_MAX_SEGMENTS
                    || run.len + sealed > GSO_MAX_BYTES)
            {
                if let Err(e) = flush(&mut run, buf) {
                    result = Err(e);
                    return;
                }
            }
            if run.count == 0 {
                run.stride = sealed;
            }
            if let (Some(next), Some(lease)) = (out.sa.next_seq(), out.lease.as_mut()) {
                if let Err(e) = lease.cover(next) {
                    tracing::error!(error = %e, "cannot extend the sequence-number lease: packet not sent");
                    result = Err(TxFail::Drop(DropReason::EspSeqLease));
                    return;
                }
            }
            let head = run.len + hl;
            buf[head..head + len].copy_from_slice(segment);
            match out.sa.seal(buf, head, len, next_header) {
                Ok(r) => {
                    debug_assert_eq!(r, run.len..run.len + sealed);
                    run.len += sealed;
                    run.count += 1;
                    let seq = out.sa.next_seq().map_or(u64::MAX, |n| n - 1);
                    self.esp.out_seq.store(seq, Ordering::Relaxed);
                }
                Err(SealError::SequenceExhausted) => {
                    result = Err(TxFail::Drop(DropReason::EspSeqExhausted));
                    return;
                }
                Err(_) => {
                    result = Err(TxFail::Drop(DropReason::EspMalformed));
                    return;
                }
            }
            if sealed < run.stride {
                // Shorter: it must be the last of its send.
                if let Err(e) = flush(&mut run, buf) {
                    result = Err(e);
                }
            }
        });
        if made.is_err() {
            return Err(TxFail::Drop(DropReason::MalformedVirtio));
        }
        result?;
        flush(&mut run, buf)
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

    /// Installs an SA (an IKE child SA; a rekey adds the new one beside the old).
    pub fn install(&mut self, e: InboundEntry) {
        e.esp.in_spi.store(e.spi, Ordering::Relaxed);
        self.entries.retain(|x| x.spi != e.spi);
        self.entries.push(e);
    }

    /// Keeps only the SAs for which `keep` is true.
    pub fn retain(&mut self, keep: impl FnMut(&InboundEntry) -> bool) {
        self.entries.retain(keep);
    }

    /// Removes the SA with this SPI.
    pub fn remove(&mut self, spi: u32) {
        self.entries.retain(|x| x.spi != spi);
    }

    /// The SA for `spi` (a handful of tunnels: a linear scan beats hashing).
    pub fn get(&mut self, spi: u32) -> Option<&mut InboundEntry> {
        self.entries.iter_mut().find(|e| e.spi == spi)
    }
}

/// Changes to the inbound SAs, sent by the IKE thread to the tunnel ingress worker.
pub enum InboundCmd {
    Install(InboundEntry),
    Remove(u32),
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
