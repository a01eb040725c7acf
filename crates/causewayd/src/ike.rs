//! The IKE thread: runs the sans-IO IKEv2 engine (`causeway_ike::engine::Endpoint`) for every
//! IKE-keyed tunnel, over UDP 500 (its own sockets) and 4500 (the tunnel sockets, shared with ESP:
//! the tunnel ingress worker hands over datagrams that carry the non-ESP marker).
//!
//! What the engine decides becomes data-plane state here: a new child SA pair installs the
//! inbound SA in the tunnel ingress worker (through a command channel) and then switches the
//! tunnel's outbound SA (make before break: the old inbound SA stays until the engine deletes
//! it); a deleted pair is removed; a tunnel without an SA drops its packets (`esp_no_sa`).
//! Ten times a second the thread feeds the engine the bytes each tunnel carried (byte lifetimes) and
//! whether authenticated ESP arrived (liveness, so dead peer detection need not probe).
//!
//! Tunnels come and go with config reloads ([`IkeCmd`]): an added one is a new engine peer (it
//! initiates at once when configured to), a removed one has its IKE SA deleted (a Delete sent
//! to the peer) and its Child SAs removed from the data plane.

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use causeway_engine::pipeline::PathCounters;
use causeway_engine::prefix::Prefix;
use causeway_esp::encap::NON_ESP_MARKER;
use causeway_esp::{Cipher, InboundSa, KeyMaterial, OutboundSa, ReplayWindow};
use causeway_ike::crypto::{EncrAlg, EspKeys, EspProposal, IntegAlg, SecretBytes, SystemRandom};
use causeway_ike::engine::{Counters, Endpoint, Event, PeerConfig};
use causeway_ike::wire::TrafficSelector;
use causeway_sys::poll::{wait_readable, Waker};
use causeway_sys::udp::UdpSocket;

use crate::config::{IkeConfig, IpsecConfig};
use crate::tunnel::{InboundCmd, InboundEntry, Outbound, TunnelTx};

/// The IKE port (RFC 7296 2.23); 4500 is the tunnel's own `local_port`.
pub const IKE_PORT: u16 = 500;

/// An IKE-keyed tunnel, as the dataplane hands it over.
pub struct IkePeer {
    pub conn: usize,
    pub name: String,
    pub ipsec: IpsecConfig,
    pub ike: IkeConfig,
    pub prefixes: Vec<Prefix>,
    pub tx: Arc<TunnelTx>,
    pub counters: Arc<PathCounters>,
}

/// What the control thread shows of an IKE-keyed tunnel.
#[derive(Debug, Clone, Default)]
pub struct IkeView {
    /// `Connecting`, `Connected` or `NotConnected`.
    pub state: String,
    pub ike_algorithms: Option<String>,
    pub esp_algorithms: Option<String>,
    pub ike_spis: Option<String>,
    pub ike_age_secs: Option<u64>,
    pub child_age_secs: Option<u64>,
    pub last_error: Option<String>,
}

/// The IKE views the control thread reads: (connection slot, view) per IKE peer.
pub type IkeViews = Arc<Mutex<Vec<(usize, IkeView)>>>;

/// Changes to the IKE peers (config reloads), applied in order.
pub enum IkeCmd {
    /// A new IKE-keyed tunnel.
    Add(Box<IkePeer>),
    /// The tunnel of this connection slot is gone: delete its SAs.
    Remove(usize),
    /// The UDP 500 sockets now in use (one per local address with an IKE tunnel).
    Sockets(Vec<Arc<UdpSocket>>),
}

/// A datagram for the IKE engine: (local address, remote address, IKE message).
pub type IkeDatagram = (SocketAddr, SocketAddr, Vec<u8>);

/// How many IKE messages received on port 4500 may wait for the IKE thread; more are dropped
/// and counted (`queue_full`), so a flood cannot grow memory (legitimate IKE traffic is a few
/// messages per exchange).
pub const IKE_INBOX: usize = 1024;

/// The IKE counters the control thread reads: the engine's, published by the IKE thread after
/// every wake-up, and the tunnel worker's count of messages the full inbox refused.
#[derive(Default)]
pub struct IkeCounters {
    engine: Mutex<(Counters, usize)>,
    pub queue_full: AtomicU64,
}

impl IkeCounters {
    /// For `causeway stats` and `/metrics`.
    pub fn snapshot(&self) -> causeway_api::IkeStats {
        let (c, half_open) = *self.engine.lock().unwrap_or_else(|e| e.into_inner());
        let drops: BTreeMap<String, u64> = [
            ("malformed", c.malformed),
            ("unknown_peer", c.unknown_peer),
            ("unknown_sa", c.unknown_sa),
            ("auth_failed", c.auth_failed),
            ("half_open_full", c.half_open_full),
            ("ignored", c.ignored),
            ("queue_full", self.queue_full.load(Ordering::Relaxed)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        causeway_api::IkeStats {
            datagrams: c.datagrams,
            cookies_sent: c.cookies_sent,
            half_open: half_open as u64,
            drops,
        }
    }
}

/// The running IKE thread.
pub struct IkeRuntime {
    cmds: Sender<IkeCmd>,
    pub waker: Arc<Waker>,
    /// By IKE peer index (the order of `IkePeer`s), with the connection index.
    pub views: IkeViews,
    pub counters: Arc<IkeCounters>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl IkeRuntime {
    /// Queues a change for the IKE thread and wakes it.
    pub fn send(&self, cmd: IkeCmd) {
        let _ = self.cmds.send(cmd);
        let _ = self.waker.wake();
    }

    /// Stops the thread after it has sent a DELETE for every IKE SA (best effort).
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.waker.wake();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for IkeRuntime {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The ESP transform of a negotiated proposal, as the data plane knows it.
fn esp_cipher(p: &EspProposal) -> Option<Cipher> {
    match (p.encr, p.key_len, p.integ) {
        (EncrAlg::AesGcm16, 128, None) => Some(Cipher::Aes128Gcm16),
        (EncrAlg::AesGcm16, 256, None) => Some(Cipher::Aes256Gcm16),
        (EncrAlg::AesCbc, 128, Some(IntegAlg::HmacSha256_128)) => Some(Cipher::Aes128CbcSha256),
        (EncrAlg::AesCbc, 256, Some(IntegAlg::HmacSha256_128)) => Some(Cipher::Aes256CbcSha256),
        _ => None,
    }
}

/// ESP keying material in the data plane's order: encryption key (with salt), integrity key.
fn key_material(cipher: Cipher, keys: &EspKeys) -> Option<KeyMaterial> {
    let mut bytes = keys.encr.as_bytes().to_vec();
    if let Some(i) = &keys.integ {
        bytes.extend_from_slice(i.as_bytes());
    }
    let km = KeyMaterial::new(cipher, &bytes).ok();
    zeroize::Zeroize::zeroize(&mut bytes);
    km
}

fn selectors(prefixes: &[Prefix]) -> Vec<TrafficSelector> {
    prefixes
        .iter()
        .filter_map(|p| TrafficSelector::from_prefix(p.network(), p.len()))
        .collect()
}

/// Starts the IKE thread, with no peers yet (they come as [`IkeCmd`]s). `inbound` and
/// `tunnel_waker` reach the tunnel ingress worker; `inbox` brings the IKE messages it receives
/// on port 4500.
pub fn start(
    vnet_space: &[Prefix],
    inbound: Sender<InboundCmd>,
    tunnel_waker: Arc<Waker>,
    inbox: Receiver<IkeDatagram>,
    waker: Arc<Waker>,
) -> Result<IkeRuntime> {
    let stop = Arc::new(AtomicBool::new(false));
    let views = Arc::new(Mutex::new(Vec::new()));
    let counters = Arc::new(IkeCounters::default());
    let (cmd_tx, cmd_rx) = std::sync::mpsc::channel();
    let ctx = Ctx {
        endpoint: Endpoint::new(Vec::new(), Box::new(SystemRandom), Instant::now()),
        local_ts: selectors(vnet_space),
        peers: Vec::new(),
        sockets_500: Vec::new(),
        inbound,
        tunnel_waker,
        views: views.clone(),
        counters: counters.clone(),
    };
    let (w, s) = (waker.clone(), stop.clone());
    let thread = std::thread::Builder::new()
        .name("ike".into())
        .spawn(move || ctx.run(&w, &s, inbox, cmd_rx))
        .context("starting the IKE thread")?;
    Ok(IkeRuntime {
        cmds: cmd_tx,
        waker,
        views,
        counters,
        stop,
        thread: Some(thread),
    })
}

/// The engine's view of a tunnel.
fn peer_config(p: &IkePeer, local_ts: &[TrafficSelector]) -> PeerConfig {
    PeerConfig {
        name: p.name.clone(),
        local: p.ipsec.local_address,
        remote: p.ipsec.peer_address,
        psk: SecretBytes::from_slice(p.ike.psk.as_bytes()),
        local_id: p.ike.local_id.clone(),
        remote_id: p.ike.remote_id.clone(),
        ike_proposals: p.ike.ike_proposals.clone(),
        // libipsec peers (strongSwan) cannot do ESN: never propose it.
        esp_proposals: p
            .ike
            .esp_proposals
            .iter()
            .filter(|e| esp_cipher(e).is_some())
            .cloned()
            .collect(),
        local_ts: local_ts.to_vec(),
        remote_ts: selectors(&p.prefixes),
        initiate: p.ike.initiate,
        ike_lifetime: p.ike.ike_lifetime,
        child_lifetime: p.ike.child_lifetime,
        child_lifetime_bytes: p.ike.child_lifetime_bytes,
        dpd_timeout: p.ike.dpd_timeout,
    }
}

/// An engine peer and what the thread tracks of it.
struct Tracked {
    peer: IkePeer,
    last_bytes: u64,
    last_alive: u64,
    /// The inbound SPI of its current child SA (for byte accounting).
    current_in: Option<u32>,
}

struct Ctx {
    endpoint: Endpoint,
    /// The VNet's traffic selectors (every tunnel's local side).
    local_ts: Vec<TrafficSelector>,
    /// By engine peer index (None: a removed peer's free index).
    peers: Vec<Option<Tracked>>,
    sockets_500: Vec<Arc<UdpSocket>>,
    inbound: Sender<InboundCmd>,
    tunnel_waker: Arc<Waker>,
    views: IkeViews,
    counters: Arc<IkeCounters>,
}

/// How often traffic is reported to the engine (fine enough for byte lifetimes of a few MB).
const TICK: Duration = Duration::from_millis(100);

impl Ctx {
    fn run(
        mut self,
        waker: &Waker,
        stop: &AtomicBool,
        inbox: Receiver<IkeDatagram>,
        cmds: Receiver<IkeCmd>,
    ) {
        let mut buf = vec![0u8; 65_535];
        let mut next_tick = Instant::now() + TICK;
        loop {
            // The sockets change with reloads: cheap to rebuild on this control-plane thread.
            let sockets = self.sockets_500.clone();
            let mut fds: Vec<BorrowedFd<'_>> = sockets.iter().map(|s| s.as_fd()).collect();
            fds.push(waker.as_fd());
            let mut ready = vec![false; fds.len()];
            let now = Instant::now();
            let deadline = self
                .endpoint
                .poll_timeout()
                .map_or(next_tick, |t| t.min(next_tick));
            let timeout = deadline.saturating_duration_since(now);
            if let Err(e) = wait_readable(&fds, Some(timeout), &mut ready) {
                if e.kind() != io::ErrorKind::Interrupted {
                    tracing::error!(error = %e, "IKE poll failed; IKE stops");
                    return;
                }
            }
            let _ = waker.drain();
            if stop.load(Ordering::Relaxed) {
                self.endpoint.close_all(Instant::now());
                self.flush();
                return;
            }
            let now = Instant::now();
            while let Ok(cmd) = cmds.try_recv() {
                self.command(now, cmd);
            }
            for (i, s) in sockets.iter().enumerate() {
                if !ready[i] {
                    continue;
                }
                for _ in 0..64 {
                    match s.recv_from(&mut buf) {
                        Ok((n, remote)) => {
                            let local = s.local_addr();
                            self.endpoint.handle_datagram(now, local, remote, &buf[..n]);
                        }
                        Err(_) => break,
                    }
                }
            }
            while let Ok((local, remote, data)) = inbox.try_recv() {
                self.endpoint.handle_datagram(now, local, remote, &data);
            }
            self.endpoint.handle_timeout(now);
            if now >= next_tick {
                self.report_traffic(now);
                next_tick = now + TICK;
            }
            self.flush();
            self.publish();
        }
    }

    /// Applies a reload's change to the peers.
    fn command(&mut self, now: Instant, cmd: IkeCmd) {
        match cmd {
            IkeCmd::Add(peer) => {
                let config = peer_config(&peer, &self.local_ts);
                let i = self.endpoint.add_peer(now, config);
                if self.peers.len() <= i {
                    self.peers.resize_with(i + 1, || None);
                }
                tracing::info!(connection = %peer.name, initiate = peer.ike.initiate, "IKE peer added");
                self.peers[i] = Some(Tracked {
                    peer: *peer,
                    last_bytes: 0,
                    last_alive: 0,
                    current_in: None,
                });
            }
            IkeCmd::Remove(slot) => {
                let Some(i) = self
                    .peers
                    .iter()
                    .position(|p| p.as_ref().is_some_and(|p| p.peer.conn == slot))
                else {
                    return;
                };
                // The Delete goes out and the Child SAs come down (events applied by the
                // flush, while the peer is still known), then the index is free.
                self.endpoint.remove_peer(now, i);
                self.flush();
                if let Some(t) = self.peers[i].take() {
                    t.peer.tx.set_outbound(None);
                    tracing::info!(connection = %t.peer.name, "IKE peer removed");
                }
            }
            IkeCmd::Sockets(s) => self.sockets_500 = s,
        }
    }

    fn tracked(&self, peer: usize) -> Option<&IkePeer> {
        self.peers.get(peer)?.as_ref().map(|t| &t.peer)
    }

    /// Sends what the engine has to send, and applies its events.
    fn flush(&mut self) {
        while let Some(t) = self.endpoint.poll_transmit() {
            let sent = if t.local.port() == IKE_PORT && t.remote.port() == IKE_PORT {
                self.sockets_500
                    .iter()
                    .find(|s| s.local_addr().ip() == t.local.ip())
                    .map(|s| s.send_to(&t.data, t.remote))
            } else {
                // Port 4500: the non-ESP marker tells IKE from ESP (RFC 3948). The tunnels on
                // that address share one socket.
                let socket = self
                    .peers
                    .iter()
                    .flatten()
                    .map(|p| p.peer.tx.socket())
                    .find(|s| s.local_addr() == t.local);
                socket.map(|s| {
                    let mut msg = Vec::with_capacity(4 + t.data.len());
                    msg.extend_from_slice(&NON_ESP_MARKER);
                    msg.extend_from_slice(&t.data);
                    s.send_to(&msg, t.remote)
                })
            };
            match sent {
                Some(Ok(_)) => {}
                Some(Err(e)) => tracing::debug!(error = %e, remote = %t.remote, "IKE send failed"),
                None => tracing::warn!(local = %t.local, "no socket for an IKE message"),
            }
        }
        while let Some(e) = self.endpoint.poll_event() {
            self.apply(e);
        }
    }

    fn apply(&mut self, e: Event) {
        match e {
            Event::ChildSaUp {
                peer,
                inbound_spi,
                outbound_spi,
                esp,
                inbound_keys,
                outbound_keys,
                remote,
                replaces,
            } => {
                let Some(Some(t)) = self.peers.get_mut(peer) else {
                    return;
                };
                let p = &t.peer;
                let Some(cipher) = esp_cipher(&esp) else {
                    tracing::error!(connection = %p.name, proposal = %esp, "negotiated ESP transform the data plane cannot do");
                    return;
                };
                let (Some(kin), Some(kout)) = (
                    key_material(cipher, &inbound_keys),
                    key_material(cipher, &outbound_keys),
                ) else {
                    tracing::error!(connection = %p.name, "child SA keys of the wrong length");
                    return;
                };
                let sas = (
                    InboundSa::new(
                        inbound_spi,
                        cipher,
                        &kin,
                        esp.esn,
                        ReplayWindow::DEFAULT_SIZE,
                    ),
                    OutboundSa::new(outbound_spi, cipher, &kout, esp.esn),
                );
                let (Ok(inn), Ok(out)) = sas else {
                    tracing::error!(connection = %p.name, "child SA refused by the ESP layer");
                    return;
                };
                // Inbound first, then the outbound switch: make before break.
                let esp_state = p.tx.esp.clone();
                let _ = self.inbound.send(InboundCmd::Install(InboundEntry {
                    spi: inbound_spi,
                    conn: p.conn,
                    sa: inn,
                    esp: esp_state.clone(),
                }));
                let _ = self.tunnel_waker.wake();
                *esp_state.cipher.lock().unwrap_or_else(|e| e.into_inner()) = cipher.name();
                esp_state.esn.store(esp.esn, Ordering::Relaxed);
                p.tx.set_outbound(Some(Outbound {
                    sa: out,
                    lease: None,
                    peer: remote,
                }));
                t.current_in = Some(inbound_spi);
                tracing::info!(
                    connection = %p.name,
                    esp = %esp,
                    spi_in = format_args!("{inbound_spi:#010x}"),
                    spi_out = format_args!("{outbound_spi:#010x}"),
                    rekey = replaces.is_some(),
                    "child SA installed"
                );
            }
            Event::ChildSaDown {
                peer,
                inbound_spi,
                outbound_spi,
            } => {
                let Some(Some(t)) = self.peers.get_mut(peer) else {
                    return;
                };
                let p = &t.peer;
                let _ = self.inbound.send(InboundCmd::Remove(inbound_spi));
                let _ = self.tunnel_waker.wake();
                if p.tx.esp.out_spi.load(Ordering::Relaxed) == outbound_spi {
                    p.tx.set_outbound(None);
                }
                if t.current_in == Some(inbound_spi) {
                    t.current_in = None;
                }
                tracing::info!(connection = %p.name, spi_in = format_args!("{inbound_spi:#010x}"), "child SA removed");
            }
            Event::IkeUp { peer } => {
                if let Some(p) = self.tracked(peer) {
                    tracing::info!(connection = %p.name, "IKE SA established");
                }
            }
            Event::IkeDown { peer, reason } => {
                if let Some(p) = self.tracked(peer) {
                    tracing::warn!(connection = %p.name, %reason, "IKE SA down");
                }
            }
            Event::Error { peer, message } => {
                if let Some(p) = self.tracked(peer) {
                    tracing::warn!(connection = %p.name, error = %message, "IKE");
                }
            }
        }
    }

    /// Bytes carried since the last tick (byte lifetimes), and liveness.
    fn report_traffic(&mut self, now: Instant) {
        for (i, t) in self.peers.iter_mut().enumerate() {
            let Some(t) = t else { continue };
            let p = &t.peer;
            let bytes = p.counters.egress.bytes.get() + p.counters.ingress.bytes.get();
            let delta = bytes.saturating_sub(t.last_bytes);
            t.last_bytes = bytes;
            if let (Some(spi), true) = (t.current_in, delta > 0) {
                self.endpoint.child_bytes(now, i, spi, delta);
            }
            let alive = p.tx.esp.in_packets.load(Ordering::Relaxed);
            if alive != t.last_alive {
                t.last_alive = alive;
                self.endpoint.child_alive(now, i);
            }
        }
    }

    fn publish(&self) {
        let fresh: Vec<(usize, IkeView)> = self
            .peers
            .iter()
            .enumerate()
            .filter_map(|(i, t)| Some((t.as_ref()?.peer.conn, view(&self.endpoint, i))))
            .collect();
        *self.views.lock().unwrap_or_else(|e| e.into_inner()) = fresh;
        *self
            .counters
            .engine
            .lock()
            .unwrap_or_else(|e| e.into_inner()) =
            (self.endpoint.counters(), self.endpoint.half_open());
    }
}

fn view(endpoint: &Endpoint, peer: usize) -> IkeView {
    let s = endpoint.status(peer);
    let child = s.children.iter().rev().find(|c| !c.retiring);
    IkeView {
        state: format!("{:?}", s.state),
        ike_algorithms: s.ike.as_ref().map(|i| i.proposal.clone()),
        esp_algorithms: child.map(|c| c.esp.clone()),
        ike_spis: s
            .ike
            .as_ref()
            .map(|i| format!("{:016x}_i {:016x}_r", i.spi_i, i.spi_r)),
        ike_age_secs: s.ike.as_ref().map(|i| i.age.as_secs()),
        child_age_secs: child.map(|c| c.age.as_secs()),
        last_error: s.last_error.clone(),
    }
}
