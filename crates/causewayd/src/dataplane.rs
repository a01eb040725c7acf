//! The data plane: TUN devices, underlay sockets, and the worker threads.
//!
//! ```text
//! VNet TUN --read--> Egress::process --> circuit TUN (write)                  [egress worker]
//!                                    \-> segment, ESP seal, UDP send to peer
//! circuit TUNs --read--> Ingress::process --> VNet TUN (write)                [circuit ingress]
//! UDP 4500 --recvmmsg--> SPI -> ESP open --> Ingress::process --> VNet TUN    [tunnel ingress]
//! ```
//! Each worker owns its half of the pipeline (shapers included), so nothing on the packet path
//! takes a lock (but the outbound SA of a tunnel, shared with the tunnel ingress worker for ICMP
//! errors and never contended by traffic; and a running `causeway capture`). Counters are atomics
//! read by the control thread. TUNs are opened with `IFF_VNET_HDR` and TCP offloads: a read can
//! return a 64 KB super-packet, which the plain path forwards whole, with its virtio header, to
//! the other TUN, and the tunnel path splits into segments that it seals one by one.
//!
//! The connections live in a [`Topology`] of slots: a connection keeps its slot (its index in
//! every worker's pipeline) for its whole life, so a config reload that adds or removes other
//! connections never touches it. A reload is prepared first (new TUNs, sockets, SAs: anything
//! that can fail, before anything running changes), then committed: the new topology is
//! published, each worker takes it between two batches and acknowledges, and only then are
//! removed tunnels deleted in IKE and their routes withdrawn.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use causeway_engine::flow::{FlowHasher, FlowLimits, FlowTable, FlowTimeouts};
use causeway_engine::latency::StageHistograms;
use causeway_engine::pipeline::{
    build, lock_flows, Connection, GatewaySpec, LiveLimits, PathCounters, PipelineSpec,
    SharedFlows, TunnelParams, Vnet,
};
use causeway_engine::prefix::Prefix;
use causeway_engine::shaper::BurstPolicy;
use causeway_engine::sku::{GatewayType, Sku};
use causeway_esp::{InboundSa, OutboundSa};
use causeway_sys::link;
use causeway_sys::poll::Waker;
use causeway_sys::tun::{Offload, Tun, TunConfig};
use causeway_sys::udp::{UdpOptions, UdpSocket};

use crate::capture::Capture;
use crate::config::{
    Config, ConnectionConfig, ConnectionKind, GatewayConfig, InterfaceConfig, IpsecConfig, Keying,
    ManualSa,
};
use crate::ike::{IkeCmd, IkeCounters, IkePeer, IkeRuntime, IkeViews, IKE_INBOX, IKE_PORT};
use crate::seqlease::SeqLease;
use crate::tunnel::{EspState, InboundCmd, InboundEntry, Outbound, TunnelTx};
use crate::worker::{Dir, Half, Output, TunnelInputs, Worker};

/// How long a worker may take to pick up a new topology before a reload goes on without it.
const ACK_TIMEOUT: Duration = Duration::from_secs(2);
/// A slot freed by a reload is not given to a new connection before this: packets the shaper
/// still holds for the old one (at most a few milliseconds) must not reach the new one.
const SLOT_QUARANTINE: Duration = Duration::from_secs(1);

/// One connection in the data plane: its config, its pipeline view, where its packets go.
#[derive(Clone)]
pub struct Slot {
    pub config: ConnectionConfig,
    pub conn: Connection,
    pub output: Output,
    /// ESP state of a tunnel (None for circuits).
    pub esp: Option<Arc<EspState>>,
}

impl Slot {
    pub fn tunnel(&self) -> Option<&Arc<TunnelTx>> {
        match &self.output {
            Output::Tunnel(t) => Some(t),
            _ => None,
        }
    }

    pub fn circuit(&self) -> Option<&Arc<Tun>> {
        match (&self.output, &self.config.kind) {
            (Output::Tun(t), ConnectionKind::ExpressRoute { .. }) => Some(t),
            _ => None,
        }
    }
}

/// The connections the workers serve, by slot; a removed connection leaves an empty slot.
#[derive(Clone, Default)]
pub struct Topology {
    pub slots: Vec<Option<Slot>>,
}

impl Topology {
    /// The connections there are, with their slots.
    pub fn iter(&self) -> impl Iterator<Item = (usize, &Slot)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.as_ref().map(|s| (i, s)))
    }

    /// The connection named `name`.
    pub fn find(&self, name: &str) -> Option<(usize, &Slot)> {
        self.iter().find(|(_, s)| s.config.name == name)
    }

    pub fn get(&self, slot: usize) -> Option<&Slot> {
        self.slots.get(slot)?.as_ref()
    }
}

/// Counters and live state shared with the control thread and the workers.
pub struct Shared {
    pub vnet: Arc<PathCounters>,
    /// Counters of each gateway, by its index in the config.
    pub gateways: Vec<Arc<PathCounters>>,
    /// Live limits of each gateway (SKU resizes), by config index.
    pub live: Arc<Vec<LiveLimits>>,
    /// The flow table of each gateway, by config index: shared by the workers of both
    /// directions, read by `causeway flows` and `stats`, resized in place.
    pub flows: Vec<SharedFlows>,
    /// The workers' clock (their `now` is the nanoseconds since it).
    pub clock: Instant,
    /// IKE state of the IKE-keyed tunnels: (slot, view).
    pub ike: Option<IkeViews>,
    /// The IKE thread's datagram counters.
    pub ike_counters: Option<Arc<IkeCounters>>,
    pub vnet_offload: bool,
    /// `causeway capture` sessions, shared with the workers.
    pub capture: Arc<Capture>,
    /// Per-stage processing times, sampled by the workers.
    pub stages: StageHistograms,
    topology: RwLock<Arc<Topology>>,
    /// Bumped after each new topology is stored; workers compare it once per wake-up.
    generation: AtomicU64,
}

impl Shared {
    /// The connections now.
    pub fn topology(&self) -> Arc<Topology> {
        self.topology
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    fn publish(&self, t: Topology) -> u64 {
        *self.topology.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(t);
        self.generation.fetch_add(1, Ordering::AcqRel) + 1
    }
}

/// What a reload does to the connections (see [`plan`]).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Slots whose connection goes down (removed from the file, or replaced by a changed one).
    pub remove: Vec<usize>,
    /// Slots whose connection changed only in what needs no new resources (prefixes or
    /// routing weight of a circuit or a manually keyed tunnel): updated in place.
    pub update: Vec<(usize, ConnectionConfig)>,
    /// Connections to bring up (new in the file, or replacing a changed one).
    pub add: Vec<ConnectionConfig>,
    /// Names of the connections left exactly as they are.
    pub unchanged: Vec<String>,
    /// Added circuits that must get a new TUN even where a removed one had the same interface
    /// (its TUN was deleted from outside: the old fd is dead).
    pub fresh: Vec<String>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.remove.is_empty() && self.update.is_empty() && self.add.is_empty()
    }
}

/// Compares the running connections with those of a new config, by name. Equal: unchanged.
/// Changed only in prefixes or routing weight (an IKE tunnel's prefixes are its traffic
/// selectors, so not for those): updated in place. Otherwise the old connection is removed and
/// the new one added.
pub fn plan(current: &Topology, next: &[ConnectionConfig]) -> Plan {
    let mut p = Plan::default();
    let by_name: HashMap<&str, &ConnectionConfig> =
        next.iter().map(|c| (c.name.as_str(), c)).collect();
    for (slot, s) in current.iter() {
        let old = &s.config;
        match by_name.get(old.name.as_str()) {
            None => p.remove.push(slot),
            Some(new) if *new == old => p.unchanged.push(old.name.clone()),
            Some(new) => {
                let ike = matches!(&old.kind, ConnectionKind::IPsec(i) if i.keying.ike().is_some());
                let in_place = new.kind == old.kind
                    && new.gateway_index == old.gateway_index
                    && (!ike || new.prefixes == old.prefixes);
                if in_place {
                    p.update.push((slot, (*new).clone()));
                } else {
                    p.remove.push(slot);
                    p.add.push((*new).clone());
                }
            }
        }
    }
    for c in next {
        if current.find(&c.name).is_none() {
            p.add.push(c.clone());
        }
    }
    p
}

/// The running data plane. Dropping it stops the workers and closes the TUNs (which removes them).
pub struct Dataplane {
    pub shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    wakers: Vec<Arc<Waker>>,
    workers: Vec<JoinHandle<()>>,
    /// The topology generation each worker has taken.
    acks: Vec<Arc<AtomicU64>>,
    ike: Option<IkeRuntime>,
    /// To the tunnel ingress worker: manual SAs brought by a reload.
    inbound: Option<(Sender<InboundCmd>, Arc<Waker>)>,
    vnet_iface: InterfaceConfig,
    vnet_space: Vec<Prefix>,
    state_dir: PathBuf,
    vpn_gateway: Option<usize>,
    /// `[[gateway]] shaping` of each gateway (fixed for the daemon's life).
    shaping: Vec<bool>,
    /// Underlay sockets by local address (the tunnels of one address share one).
    sockets: HashMap<SocketAddr, Arc<UdpSocket>>,
    /// IKE's UDP 500 sockets by local address.
    ike_sockets: HashMap<IpAddr, Arc<UdpSocket>>,
    /// Routes installed on the VNet side toward on-premises prefixes.
    vnet_routes: BTreeSet<Prefix>,
    /// Slots freed by a reload, and when.
    freed: HashMap<usize, Instant>,
}

/// A connection made ready by [`Dataplane::prepare`], and what its commit still has to do.
enum Ready {
    Circuit,
    /// A manually keyed tunnel: its inbound SA to install, then its outbound SA to make. The
    /// outbound SA takes its sequence-number lease (a file write) only at commit: a refused
    /// reload spends no numbers, and a replaced tunnel with the same SPI has let its lease go.
    Manual {
        inbound: Box<InboundEntry>,
        sa: Box<ManualSa>,
        peer: SocketAddr,
    },
    Ike(Box<IkePeer>),
}

/// Everything a reload needs, made before anything running changes (see [`Dataplane::commit`]).
pub struct Prepared {
    plan: Plan,
    added: Vec<(usize, Slot, Ready)>,
    /// Reused TUNs (a replaced circuit on the same interface): configured again at commit.
    reconfigure: Vec<InterfaceConfig>,
    sockets: HashMap<SocketAddr, Arc<UdpSocket>>,
    ike_sockets: HashMap<IpAddr, Arc<UdpSocket>>,
}

impl Prepared {
    pub fn plan(&self) -> &Plan {
        &self.plan
    }
}

/// Opens the TUN of `iface`, always with the virtio header; with TCP offloads unless the
/// interface says `offload = false` (then the kernel hands over only single, fully checksummed
/// packets, and the header of every read says so).
fn open_tun(iface: &InterfaceConfig) -> Result<Tun> {
    let cfg = TunConfig {
        name: &iface.name,
        netns: iface.netns.as_deref(),
        vnet_hdr: true,
        offload: if iface.offload {
            Offload::TCP
        } else {
            Offload::NONE
        },
        queues: 1,
    };
    let mut tuns = Tun::create(&cfg).with_context(|| {
        format!(
            "creating TUN `{}`{}",
            iface.name,
            iface
                .netns
                .as_deref()
                .map(|n| format!(" in netns `{n}`"))
                .unwrap_or_default()
        )
    })?;
    let tun = tuns.pop().context("no TUN queue returned")?;
    configure(iface).with_context(|| format!("configuring interface `{}`", iface.name))?;
    Ok(tun)
}

/// MTU, queue length, addresses, link up.
fn configure(iface: &InterfaceConfig) -> io::Result<()> {
    let ns = iface.netns.as_deref();
    // Best effort: keeps the kernel from sending router solicitations and DAD through the TUN.
    let _ = link::disable_ipv6_autoconf(ns, &iface.name);
    link::set_mtu(ns, &iface.name, iface.mtu)?;
    link::set_txqueuelen(ns, &iface.name, iface.txqueuelen.unwrap_or(1000))?;
    readdress(iface)?;
    link::set_up(ns, &iface.name)
}

/// The inbound SA of a manually keyed tunnel.
fn manual_inbound(name: &str, sa: &ManualSa) -> Result<InboundSa> {
    let in_key = sa.in_key.key_material(sa.cipher);
    InboundSa::new(sa.in_spi, sa.cipher, &in_key, sa.esn, sa.replay_window)
        .map_err(|e| anyhow::anyhow!("connection `{name}`: inbound SA: {e}"))
}

/// The outbound SA of a manually keyed tunnel, resuming at `first` (its lease).
fn manual_outbound_sa(name: &str, sa: &ManualSa, first: u64) -> Result<OutboundSa> {
    let out_key = sa.out_key.key_material(sa.cipher);
    OutboundSa::resume(sa.out_spi, sa.cipher, &out_key, sa.esn, first)
        .map_err(|e| anyhow::anyhow!("connection `{name}`: outbound SA: {e}"))
}

/// The outbound SA of a manually keyed tunnel with its lease taken: it resumes above every
/// sequence number a previous run may have used (`state_dir`).
fn manual_outbound(
    state_dir: &std::path::Path,
    name: &str,
    sa: &ManualSa,
    peer: SocketAddr,
) -> Result<Outbound> {
    let (lease, first) = SeqLease::acquire(state_dir, sa.out_spi)
        .with_context(|| format!("connection `{name}`: sequence-number lease"))?;
    Ok(Outbound {
        sa: manual_outbound_sa(name, sa, first)?,
        lease: Some(lease),
        peer,
    })
}

/// Assigns the configured addresses (idempotent: `ip address replace`).
pub(crate) fn readdress(iface: &InterfaceConfig) -> io::Result<()> {
    for a in &iface.addresses {
        link::add_address(iface.netns.as_deref(), &iface.name, a.addr, a.len)?;
    }
    Ok(())
}

/// Routes the gateway advertises to one side: `prefixes` via that side's interface, except those
/// already on-link through one of the interface's own addresses.
pub(crate) fn install_routes(iface: &InterfaceConfig, prefixes: &[Prefix]) -> Result<()> {
    for p in prefixes {
        if routed_by(iface, p) {
            link::add_route(iface.netns.as_deref(), &p.to_string(), &iface.name)
                .with_context(|| format!("adding route {p} via `{}`", iface.name))?;
        }
    }
    Ok(())
}

/// Whether the gateway installs a route to `p` through `iface` (not when the interface does
/// not install routes, nor when `p` is on-link through one of its addresses).
fn routed_by(iface: &InterfaceConfig, p: &Prefix) -> bool {
    iface.install_routes
        && !iface
            .addresses
            .iter()
            .any(|a| Prefix::containing(a.addr, a.len).ok() == Some(*p))
}

/// A tunnel's UDP socket: large buffers, and UDP GRO (received datagrams of one peer come
/// coalesced, up to 64 KB per read) where the kernel has it (Linux 5.0+; else without).
fn bind_underlay(local: SocketAddr) -> io::Result<UdpSocket> {
    let gro = UdpOptions {
        gro: true,
        ..UdpOptions::default()
    };
    UdpSocket::bind(local, None, &gro)
        .or_else(|e| UdpSocket::bind(local, None, &UdpOptions::default()).map_err(|_| e))
}

/// The rate a gateway with `shaping = false` is given: far above anything a machine forwards.
pub const UNSHAPED_BITS_PER_SEC: u64 = 1_000_000_000_000_000;

/// The flow limits of gateway `g` at SKU `sku`: the SKU's (`FlowLimits::from_sku`: VPN SKUs,
/// which publish none, get a table of `flow::DEFAULT_MAX_FLOWS` and no rate), lowered by the
/// config's `max_flows` / `max_new_flows_per_sec` (which never raise them: after a resize to a
/// smaller SKU the smaller of the two applies).
pub fn flow_limits(g: &GatewayConfig, sku: Sku) -> FlowLimits {
    let l = FlowLimits::from_sku(&sku.limits());
    FlowLimits {
        max_flows: match g.max_flows {
            Some(m) => l
                .max_flows
                .min(usize::try_from(m).unwrap_or(usize::MAX))
                .max(1),
            None => l.max_flows,
        },
        new_flows_per_sec: match (l.new_flows_per_sec, g.max_new_flows_per_sec) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        },
    }
}

/// Applies `limits` and `timeouts` to a gateway's flow table (a resize or a reload), at
/// `now_ns` of the workers' clock; a no-op when nothing changed.
/// Slots of a flow table examined per hold of its lock by [`forget_connections`].
const FORGET_CHUNK: usize = 4096;

/// The flows of `flows` that last used a connection of `slots` name none any more
/// ([`FlowTable::forget_connections`]), the table's lock taken for [`FORGET_CHUNK`] slots at a
/// time so that the workers never wait for a whole scan.
pub fn forget_connections(flows: &SharedFlows, slots: &[usize]) {
    let mut from = Some(0);
    while let Some(f) = from {
        from = lock_flows(flows).forget_connections(f, FORGET_CHUNK, |c| slots.contains(&c));
    }
}

pub fn update_flows(flows: &SharedFlows, now_ns: u64, limits: FlowLimits, timeouts: FlowTimeouts) {
    let mut t = lock_flows(flows);
    if t.max_flows() != limits.max_flows || t.new_flows_per_sec() != limits.new_flows_per_sec {
        t.set_limits(now_ns, limits);
    }
    if t.timeouts() != timeouts {
        t.set_timeouts(timeouts);
    }
}

/// The rates a gateway's shapers enforce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rates {
    pub bits_per_sec: u64,
    pub packets_per_sec: Option<u64>,
    /// The per-tunnel cap (VPN SKUs).
    pub tunnel_cap: Option<u64>,
}

/// The rates of `sku`, or none to speak of when shaping is off (`[[gateway]] shaping = false`,
/// for capacity measurements).
pub fn rates(sku: Sku, shaping: bool) -> Rates {
    if !shaping {
        return Rates {
            bits_per_sec: UNSHAPED_BITS_PER_SEC,
            packets_per_sec: None,
            tunnel_cap: None,
        };
    }
    let l = sku.limits();
    Rates {
        bits_per_sec: l.bits_per_sec,
        packets_per_sec: l.packets_per_sec,
        tunnel_cap: l.per_tunnel_bits_per_sec,
    }
}

/// A tunnel's pipeline parameters, its cap from its gateway's rates.
fn tunnel_params(ipsec: &IpsecConfig, rates: Rates) -> TunnelParams {
    TunnelParams {
        mss_clamp: ipsec.mss_clamp,
        cap_bits_per_sec: rates.tunnel_cap,
    }
}

impl Dataplane {
    /// Creates the VNet TUN, starts the workers (and the IKE thread for a Vpn gateway), then
    /// brings up the configured connections as a first reload would.
    pub fn start(config: &Config, burst: BurstPolicy) -> Result<Dataplane> {
        let clock = Instant::now();
        let vnet_cfg = &config.vnet;
        let vnet_tun = Arc::new(open_tun(&vnet_cfg.interface)?);
        // The VNet's own address space (so that the gateway's addresses are reachable even
        // outside the interface's subnet); on-premises prefixes follow the connections.
        install_routes(&vnet_cfg.interface, &vnet_cfg.address_space)?;

        let gateway_counters: Vec<Arc<PathCounters>> = config
            .gateways
            .iter()
            .map(|_| Arc::new(PathCounters::default()))
            .collect();
        let vnet = Arc::new(Vnet {
            address_space: vnet_cfg.address_space.clone(),
            gateway_v4: vnet_cfg.gateway_address_v4().octets(),
            gateway_v6: vnet_cfg.gateway_address_v6().map(|a| a.octets()),
            mtu: vnet_cfg.interface.mtu as usize,
        });
        let vnet_counters = Arc::new(PathCounters::default());
        // One flow table per gateway, its memory reserved for the SKU's flows (resident as
        // flows use it).
        let flows: Vec<SharedFlows> = config
            .gateways
            .iter()
            .map(|g| {
                Arc::new(std::sync::Mutex::new(FlowTable::new(
                    flow_limits(g, g.sku),
                    g.flow_timeouts,
                    FlowHasher::random(),
                    0,
                )))
            })
            .collect();
        let gateways: Vec<GatewaySpec> = config
            .gateways
            .iter()
            .zip(&gateway_counters)
            .zip(&flows)
            .map(|((g, counters), flows)| {
                let r = rates(g.sku, g.shaping);
                if !g.shaping {
                    tracing::warn!(gateway = %g.name, sku = %g.sku, "shaping = false: the SKU's rates are not enforced (capacity measurements only)");
                }
                GatewaySpec {
                    name: g.name.clone(),
                    bits_per_sec: r.bits_per_sec,
                    packets_per_sec: r.packets_per_sec,
                    counters: counters.clone(),
                    flows: Some(flows.clone()),
                }
            })
            .collect();
        // Live limits for SKU resizes, one per gateway, applied by every worker.
        let live: Arc<Vec<LiveLimits>> = Arc::new(
            config
                .gateways
                .iter()
                .map(|_| LiveLimits::default())
                .collect(),
        );
        // The held-packet ring of a direction is sized for the fastest gateway, and for what a
        // resize may bring (up to 10 Gbit/s before the 64 MB cap).
        let bps = gateways
            .iter()
            .map(|g| g.bits_per_sec)
            .max()
            .unwrap_or(0)
            .clamp(10_000_000_000, 100_000_000_000);
        let spec = PipelineSpec {
            vnet,
            gateways,
            connections: Vec::new(),
            burst,
            vnet_counters: vnet_counters.clone(),
        };
        let vpn_gateway = config
            .gateways
            .iter()
            .position(|g| g.gateway_type == GatewayType::Vpn);
        let stop = Arc::new(AtomicBool::new(false));
        let capture = Arc::new(Capture::default());

        // The tunnel ingress worker's waker and SA channel, and the IKE thread, exist first:
        // the shared state names the IKE views.
        let tunnel_waker = Arc::new(Waker::new().context("eventfd")?);
        let (cmd_tx, cmd_rx) = std::sync::mpsc::channel();
        let inbox = std::sync::mpsc::sync_channel(IKE_INBOX);
        let ike_waker = Arc::new(Waker::new().context("eventfd")?);
        let mut ike = None;
        if vpn_gateway.is_some() {
            ike = Some(crate::ike::start(
                &vnet_cfg.address_space,
                cmd_tx.clone(),
                tunnel_waker.clone(),
                inbox.1,
                ike_waker.clone(),
            )?);
        }
        let shared = Arc::new(Shared {
            vnet: vnet_counters.clone(),
            gateways: gateway_counters.clone(),
            ike: ike.as_ref().map(|r: &IkeRuntime| r.views.clone()),
            ike_counters: ike.as_ref().map(|r: &IkeRuntime| r.counters.clone()),
            live: live.clone(),
            flows,
            clock,
            vnet_offload: vnet_tun.vnet_hdr(),
            capture: capture.clone(),
            stages: StageHistograms::default(),
            topology: RwLock::new(Arc::new(Topology::default())),
            generation: AtomicU64::new(0),
        });
        let mut dp = Dataplane {
            shared: shared.clone(),
            stop: stop.clone(),
            wakers: Vec::new(),
            workers: Vec::new(),
            acks: Vec::new(),
            ike,
            inbound: vpn_gateway.map(|_| (cmd_tx, tunnel_waker.clone())),
            vnet_iface: vnet_cfg.interface.clone(),
            vnet_space: vnet_cfg.address_space.clone(),
            state_dir: config.control.state_dir.clone(),
            vpn_gateway,
            shaping: config.gateways.iter().map(|g| g.shaping).collect(),
            sockets: HashMap::new(),
            ike_sockets: HashMap::new(),
            vnet_routes: BTreeSet::new(),
            freed: HashMap::new(),
        };
        let worker = |dp: &mut Dataplane, waker: Option<Arc<Waker>>| -> Result<Worker> {
            let w = match waker {
                Some(w) => w,
                None => Arc::new(Waker::new().context("eventfd")?),
            };
            let ack = Arc::new(AtomicU64::new(0));
            dp.wakers.push(w.clone());
            dp.acks.push(ack.clone());
            Ok(Worker::new(
                stop.clone(),
                w,
                clock,
                shared.clone(),
                ack,
                vnet_tun.clone(),
            ))
        };
        let (eg, ing) = build(&spec, 0);
        let ctx = worker(&mut dp, None)?;
        dp.workers.push(
            std::thread::Builder::new()
                .name("egress".into())
                .spawn(move || ctx.run(Dir::Egress, Half::Egress(eg), bps, burst))?,
        );
        let ctx = worker(&mut dp, None)?;
        dp.workers.push(
            std::thread::Builder::new()
                .name("circuit-ingress".into())
                .spawn(move || ctx.run(Dir::Ingress, Half::Ingress(ing), bps, burst))?,
        );
        if let Some(gateway) = vpn_gateway {
            // The tunnel ingress worker has its own pipeline half (shapers per gateway and
            // direction are only ever used by one worker: the Vpn gateway's ingress here).
            let (_, ing) = build(&spec, 0);
            let ctx = worker(&mut dp, Some(tunnel_waker))?;
            let inputs = TunnelInputs {
                inbound: crate::tunnel::Inbound::new(Vec::new()),
                cmds: cmd_rx,
                ike: dp
                    .ike
                    .as_ref()
                    .map(|r| (inbox.0.clone(), ike_waker.clone(), r.counters.clone())),
                gateway,
            };
            dp.workers.push(
                std::thread::Builder::new()
                    .name("tunnel-ingress".into())
                    .spawn(move || ctx.run_tunnels(inputs, bps, burst, ing))?,
            );
        }
        let skus: Vec<Sku> = config.gateways.iter().map(|g| g.sku).collect();
        let first = plan(&Topology::default(), &config.connections);
        let prepared = dp.prepare(first, &skus)?;
        let errors = dp.commit(prepared);
        if !errors.is_empty() {
            anyhow::bail!("{}", errors.join("; "));
        }
        Ok(dp)
    }

    /// Makes what `plan` needs (TUNs, sockets, SAs) without changing anything running: an
    /// error leaves the data plane as it was (what was made is closed again). `skus` are the
    /// gateways' SKUs after the reload (for the tunnels' caps).
    pub fn prepare(&self, plan: Plan, skus: &[Sku]) -> Result<Prepared> {
        let current = self.shared.topology();
        let removed: Vec<&Slot> = plan.remove.iter().filter_map(|&i| current.get(i)).collect();
        // Free slots: empty before this reload and out of quarantine; then new ones.
        let now = Instant::now();
        let mut free = current
            .slots
            .iter()
            .enumerate()
            .filter(|(i, s)| {
                s.is_none()
                    && self
                        .freed
                        .get(i)
                        .is_some_and(|at| now.saturating_duration_since(*at) >= SLOT_QUARANTINE)
            })
            .map(|(i, _)| i)
            .collect::<Vec<_>>()
            .into_iter();
        let mut next_new = current.slots.len();
        let mut p = Prepared {
            plan: Plan::default(),
            added: Vec::new(),
            reconfigure: Vec::new(),
            sockets: self.sockets.clone(),
            ike_sockets: self.ike_sockets.clone(),
        };
        for c in &plan.add {
            let slot = free.next().unwrap_or_else(|| {
                next_new += 1;
                next_new - 1
            });
            let up = Arc::new(AtomicBool::new(true));
            let counters = Arc::new(PathCounters::default());
            let sku = skus
                .get(c.gateway_index)
                .copied()
                .context("connection names an unknown gateway")?;
            let (output, esp, tunnel, mtu, ready) = match &c.kind {
                ConnectionKind::ExpressRoute { interface } => {
                    // A replaced circuit on the same interface hands its TUN over.
                    let fresh = plan.fresh.contains(&c.name);
                    let reuse = removed.iter().find_map(|s| match &s.config.kind {
                        ConnectionKind::ExpressRoute { interface: old }
                            if !fresh
                                && old.name == interface.name
                                && old.netns == interface.netns =>
                        {
                            Some((old.offload, s.circuit().cloned()))
                        }
                        _ => None,
                    });
                    // The offloads are chosen when a TUN is opened: changing them needs a new
                    // one, which cannot exist beside the old one of the same name.
                    if let Some((old, _)) = reuse.as_ref().filter(|(o, _)| *o != interface.offload)
                    {
                        anyhow::bail!(
                            "connection `{}`: interface `{}`: `offload` changes from {old} to {} \
                             only with a new interface: remove the connection in one reload and \
                             add it back in the next, or restart the daemon",
                            c.name,
                            interface.name,
                            interface.offload
                        );
                    }
                    let reuse = reuse.and_then(|(_, t)| t);
                    let tun = match reuse {
                        Some(t) => {
                            p.reconfigure.push(interface.clone());
                            t
                        }
                        None => {
                            let t = Arc::new(
                                open_tun(interface)
                                    .with_context(|| format!("connection `{}`", c.name))?,
                            );
                            install_routes(interface, &self.vnet_space)
                                .with_context(|| format!("connection `{}`", c.name))?;
                            t
                        }
                    };
                    (
                        Output::Tun(tun),
                        None,
                        None,
                        interface.mtu as usize,
                        Ready::Circuit,
                    )
                }
                ConnectionKind::IPsec(ipsec) => {
                    if self.vpn_gateway != Some(c.gateway_index) {
                        anyhow::bail!(
                            "connection `{}`: IPsec connections need the Vpn gateway the daemon \
                             started with",
                            c.name
                        );
                    }
                    let local = SocketAddr::new(ipsec.local_address, ipsec.local_port);
                    let socket = match p.sockets.get(&local) {
                        Some(s) => s.clone(),
                        None => {
                            let s = Arc::new(bind_underlay(local).with_context(|| {
                                format!("connection `{}`: binding the underlay socket", c.name)
                            })?);
                            p.sockets.insert(local, s.clone());
                            s
                        }
                    };
                    let peer = SocketAddr::new(ipsec.peer_address, ipsec.peer_port);
                    let (tx, esp, ready) = match &ipsec.keying {
                        Keying::Manual(sa) => {
                            let esp = Arc::new(EspState::new(
                                sa.cipher.name(),
                                sa.esn,
                                sa.out_spi,
                                sa.in_spi,
                            ));
                            // Checked now, written at commit: the lease file and the keys.
                            let first =
                                SeqLease::peek(&self.state_dir, sa.out_spi).with_context(|| {
                                    format!("connection `{}`: sequence-number lease", c.name)
                                })?;
                            drop(manual_outbound_sa(&c.name, sa, first)?);
                            let entry = InboundEntry {
                                spi: sa.in_spi,
                                conn: slot,
                                sa: manual_inbound(&c.name, sa)?,
                                esp: esp.clone(),
                            };
                            let tx = TunnelTx::new(slot, socket, None, esp.clone());
                            let ready = Ready::Manual {
                                inbound: Box::new(entry),
                                sa: Box::new(sa.clone()),
                                peer,
                            };
                            (Arc::new(tx), esp, ready)
                        }
                        Keying::Ike(ike) => {
                            // SAs come from the IKE thread; until then packets are dropped
                            // (`esp_no_sa`), never sent in clear.
                            let addr = ipsec.local_address;
                            if let std::collections::hash_map::Entry::Vacant(v) =
                                p.ike_sockets.entry(addr)
                            {
                                let at = SocketAddr::new(addr, IKE_PORT);
                                let s = UdpSocket::bind(at, None, &UdpOptions::default())
                                    .with_context(|| {
                                        format!(
                                            "connection `{}`: binding the IKE socket {at}",
                                            c.name
                                        )
                                    })?;
                                v.insert(Arc::new(s));
                            }
                            let esp = Arc::new(EspState::empty());
                            let tx = Arc::new(TunnelTx::new(slot, socket, None, esp.clone()));
                            let peer = IkePeer {
                                conn: slot,
                                name: c.name.clone(),
                                ipsec: ipsec.clone(),
                                ike: ike.clone(),
                                prefixes: c.prefixes.clone(),
                                tx: tx.clone(),
                                counters: counters.clone(),
                            };
                            (tx, esp, Ready::Ike(Box::new(peer)))
                        }
                    };
                    (
                        Output::Tunnel(tx),
                        Some(esp),
                        Some(tunnel_params(
                            ipsec,
                            rates(
                                sku,
                                self.shaping.get(c.gateway_index).copied().unwrap_or(true),
                            ),
                        )),
                        ipsec.mtu as usize,
                        ready,
                    )
                }
            };
            let conn = Connection {
                name: c.name.clone(),
                gateway: c.gateway_index,
                tunnel,
                prefixes: c.prefixes.clone(),
                routing_weight: c.routing_weight,
                mtu,
                up,
                counters,
            };
            let s = Slot {
                config: c.clone(),
                conn,
                output,
                esp,
            };
            p.added.push((slot, s, ready));
        }
        p.plan = plan;
        Ok(p)
    }

    /// Applies a prepared reload: the new topology goes to the workers (each takes it between
    /// two batches; connections that stay keep their slot, shapers and SAs), then removed
    /// tunnels are deleted in IKE, new SAs installed, routes nobody offers withdrawn. Returns
    /// what failed past the point of no return (logged too): a sequence-number lease that could
    /// not be written leaves its tunnel without SAs, a route or address that could not be set
    /// is retried at the next reload.
    pub fn commit(&mut self, p: Prepared) -> Vec<String> {
        let Prepared {
            plan,
            added,
            reconfigure,
            mut sockets,
            mut ike_sockets,
        } = p;
        let mut errors = Vec::new();
        let mut t = (*self.shared.topology()).clone();
        let mut gone = Vec::new();
        for &slot in &plan.remove {
            if let Some(s) = t.slots.get_mut(slot).and_then(Option::take) {
                // A capture of it ends now rather than at its timeout.
                self.shared.capture.end_for(
                    slot,
                    &format!("connection `{}` removed by a config reload", s.config.name),
                );
                gone.push((slot, s));
            }
        }
        for (slot, cfg) in &plan.update {
            if let Some(s) = t.slots.get_mut(*slot).and_then(Option::as_mut) {
                s.conn.prefixes = cfg.prefixes.clone();
                s.conn.routing_weight = cfg.routing_weight;
                s.config = cfg.clone();
            }
        }
        let mut ready = Vec::new();
        let mut reused = Vec::new();
        for (slot, s, r) in added {
            if t.slots.len() <= slot {
                t.slots.resize(slot + 1, None);
            }
            if self.freed.remove(&slot).is_some() {
                reused.push(slot);
            }
            ready.push((slot, s.config.name.clone(), s.tunnel().cloned(), r));
            t.slots[slot] = Some(s);
        }
        for iface in &reconfigure {
            // A replaced circuit's TUN, kept: its addresses are those of the new config only.
            let r = link::flush_addresses(iface.netns.as_deref(), &iface.name)
                .and_then(|()| configure(iface))
                .map_err(anyhow::Error::from)
                .and_then(|()| install_routes(iface, &self.vnet_space));
            if let Err(e) = r {
                let e = format!("interface `{}`: reconfiguring: {e:#}", iface.name);
                tracing::warn!(error = %e, "reload");
                errors.push(e);
            }
        }
        // New routes toward on-premises before the workers route over the new connections.
        let wanted: BTreeSet<Prefix> = t
            .iter()
            .flat_map(|(_, s)| s.conn.prefixes.iter().copied())
            .filter(|p| routed_by(&self.vnet_iface, p))
            .collect();
        let missing: Vec<Prefix> = wanted.difference(&self.vnet_routes).copied().collect();
        for p in missing {
            match link::add_route(
                self.vnet_iface.netns.as_deref(),
                &p.to_string(),
                &self.vnet_iface.name,
            ) {
                Ok(()) => {
                    self.vnet_routes.insert(p);
                }
                Err(e) => {
                    let e = format!("adding the VNet-side route {p}: {e}");
                    tracing::warn!(error = %e, "reload");
                    errors.push(e);
                }
            }
        }
        // Sockets nobody uses any more are closed when the last reference goes.
        let used: HashSet<SocketAddr> = t
            .iter()
            .filter_map(|(_, s)| s.tunnel().map(|tx| tx.socket().local_addr()))
            .collect();
        sockets.retain(|a, _| used.contains(a));
        let ike_used: HashSet<IpAddr> = t
            .iter()
            .filter_map(|(_, s)| match &s.config.kind {
                ConnectionKind::IPsec(i) if i.keying.ike().is_some() => Some(i.local_address),
                _ => None,
            })
            .collect();
        ike_sockets.retain(|a, _| ike_used.contains(a));
        // Flows that last used the removed connection of a slot now given to another one must
        // not show the new one's name: they name none until their next packet (before the
        // workers see the new connection; the slot's quarantine means none still uses the old).
        if !reused.is_empty() {
            for flows in &self.shared.flows {
                forget_connections(flows, &reused);
            }
        }
        let generation = self.shared.publish(t);
        let all_took_it = self.wait_acks(generation);
        // A freed slot is given to a new connection only once no worker can still hold packets
        // for the old one: a second after every worker took the topology (much later when one
        // did not answer in time).
        let free_from = Instant::now()
            + if all_took_it {
                Duration::ZERO
            } else {
                Duration::from_secs(60)
            };
        for (slot, _) in &gone {
            self.freed.insert(*slot, free_from);
        }

        // No worker routes to a removed connection any more.
        for (slot, s) in &gone {
            if let Some(tx) = s.tunnel() {
                let is_ike =
                    matches!(&s.config.kind, ConnectionKind::IPsec(i) if i.keying.ike().is_some());
                if is_ike {
                    if let Some(ike) = &self.ike {
                        ike.send(IkeCmd::Remove(*slot));
                    }
                } else {
                    // Stops sealing and releases the sequence-number lease.
                    tx.set_outbound(None);
                }
            }
            tracing::info!(connection = %s.config.name, "connection removed");
        }
        if let Some(ike) = &self.ike {
            ike.send(IkeCmd::Sockets(ike_sockets.values().cloned().collect()));
        }
        for (slot, name, tx, r) in ready {
            match r {
                Ready::Circuit => {}
                Ready::Manual { inbound, sa, peer } => {
                    // Make before break: the inbound SA first, then the outbound one.
                    if let Some((cmds, waker)) = &self.inbound {
                        let _ = cmds.send(InboundCmd::Install(*inbound));
                        let _ = waker.wake();
                    }
                    match manual_outbound(&self.state_dir, &name, &sa, peer) {
                        Ok(out) => {
                            if let Some(tx) = &tx {
                                tx.set_outbound(Some(out));
                            }
                        }
                        Err(e) => {
                            let e = format!(
                                "{e:#}: the tunnel has no outbound SA and drops its packets \
                                 (esp_no_sa)"
                            );
                            tracing::error!(connection = %name, error = %e, "manual SA not installed");
                            errors.push(e);
                        }
                    }
                }
                Ready::Ike(peer) => {
                    if let Some(ike) = &self.ike {
                        ike.send(IkeCmd::Add(peer));
                    }
                }
            }
            tracing::info!(connection = %name, slot, "connection added");
        }
        for (_, cfg) in &plan.update {
            tracing::info!(connection = %cfg.name, "connection updated in place");
        }
        let stale: Vec<Prefix> = self.vnet_routes.difference(&wanted).copied().collect();
        for p in stale {
            match link::del_route(
                self.vnet_iface.netns.as_deref(),
                &p.to_string(),
                &self.vnet_iface.name,
            ) {
                Ok(()) => {
                    self.vnet_routes.remove(&p);
                }
                Err(e) => {
                    let e = format!("withdrawing the VNet-side route {p}: {e}");
                    tracing::warn!(error = %e, "reload");
                    errors.push(e);
                }
            }
        }
        self.sockets = sockets;
        self.ike_sockets = ike_sockets;
        errors
    }

    /// Wakes every worker and waits (bounded) until each has taken `generation`; false when
    /// one did not in time.
    fn wait_acks(&self, generation: u64) -> bool {
        for w in &self.wakers {
            let _ = w.wake();
        }
        let deadline = Instant::now() + ACK_TIMEOUT;
        while self
            .acks
            .iter()
            .any(|a| a.load(Ordering::Acquire) < generation)
        {
            if self.stop.load(Ordering::Relaxed) || Instant::now() >= deadline {
                tracing::warn!(generation, "a worker did not take the new topology in time");
                return false;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        true
    }

    /// Stops the workers and waits for them; the TUNs close when the last reference goes.
    pub fn stop(&mut self) {
        // IKE first: its DELETEs go out over the tunnel sockets while they still exist.
        if let Some(mut ike) = self.ike.take() {
            ike.stop();
        }
        self.stop.store(true, Ordering::SeqCst);
        for w in &self.wakers {
            let _ = w.wake();
        }
        for h in self.workers.drain(..) {
            let _ = h.join();
        }
    }
}

impl Drop for Dataplane {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use causeway_engine::flow::PacketKey;
    use std::path::Path;

    #[test]
    fn reused_slots_are_forgotten_by_every_flow_in_chunks() {
        let flows: SharedFlows = Arc::new(std::sync::Mutex::new(FlowTable::new(
            FlowLimits {
                max_flows: 10_000,
                new_flows_per_sec: None,
            },
            FlowTimeouts::default(),
            FlowHasher::with_seed(1),
            0,
        )));
        let key = |i: u32| PacketKey::new(4, 17, (u128::from(i), 1), (u128::from(i) + 1, 2), 0);
        {
            let mut t = lock_flows(&flows);
            for i in 0..10_000u32 {
                t.lookup_or_insert_via(0, &key(i), 1, 64, (i % 300) as usize)
                    .unwrap();
            }
        }
        forget_connections(&flows, &[7, 299]);
        let t = lock_flows(&flows);
        let mut named = 0;
        for f in t.iter(0) {
            if let Some(c) = f.connection {
                assert!(c != 7 && c != 299);
                named += 1;
            }
        }
        // 10 000 flows over 300 slots: 34 on slot 7, 33 on slot 299 (beyond a byte).
        assert_eq!(named, 10_000 - 34 - 33);
    }

    #[test]
    fn flow_limits_are_the_skus_lowered_by_the_config() {
        let (c, _) = fixture("valid.toml");
        let mut g = c.gateways[0].clone();
        g.max_flows = None;
        g.max_new_flows_per_sec = None;
        let l = flow_limits(&g, Sku::ErStandard);
        assert_eq!((l.max_flows, l.new_flows_per_sec), (200_000, Some(7_000)));
        let l = flow_limits(&g, Sku::ErGwScale(3));
        assert_eq!((l.max_flows, l.new_flows_per_sec), (300_000, Some(21_000)));
        let vpn = Sku::VpnGw {
            generation: 1,
            az: false,
        };
        let l = flow_limits(&g, vpn);
        assert_eq!(
            (l.max_flows, l.new_flows_per_sec),
            (causeway_engine::flow::DEFAULT_MAX_FLOWS, None)
        );
        g.max_flows = Some(20);
        g.max_new_flows_per_sec = Some(50);
        let l = flow_limits(&g, Sku::ErStandard);
        assert_eq!((l.max_flows, l.new_flows_per_sec), (20, Some(50)));
        // A lower limit than the config's after a resize: the smaller applies.
        g.max_flows = Some(150_000);
        g.max_new_flows_per_sec = Some(10_000);
        let l = flow_limits(&g, Sku::ErGwScale(1));
        assert_eq!((l.max_flows, l.new_flows_per_sec), (100_000, Some(7_000)));
        // A VPN SKU publishes no rate: the config's is the one.
        let l = flow_limits(&g, vpn);
        assert_eq!((l.max_flows, l.new_flows_per_sec), (150_000, Some(10_000)));
    }

    #[test]
    fn update_flows_applies_only_changes_and_keeps_the_flows() {
        let (c, _) = fixture("valid.toml");
        let g = &c.gateways[0];
        let flows: SharedFlows = Arc::new(std::sync::Mutex::new(FlowTable::new(
            flow_limits(g, Sku::ErStandard),
            FlowTimeouts::default(),
            FlowHasher::with_seed(1),
            0,
        )));
        let pk = causeway_engine::flow::PacketKey::new(4, 17, (1, 1000), (2, 53), 0);
        lock_flows(&flows)
            .lookup_or_insert(0, &pk, 1, 100)
            .expect("admitted");
        let small = FlowLimits {
            max_flows: 1,
            new_flows_per_sec: Some(1),
        };
        let t = FlowTimeouts {
            udp: Duration::from_secs(5),
            ..FlowTimeouts::default()
        };
        update_flows(&flows, 10, small, t);
        let table = lock_flows(&flows);
        assert_eq!(table.max_flows(), 1);
        assert_eq!(table.new_flows_per_sec(), Some(1));
        assert_eq!(table.timeouts().udp, Duration::from_secs(5));
        assert_eq!(table.len(), 1);
    }

    fn fixture(name: &str) -> (Config, String) {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/config")
            .join(name);
        let text = std::fs::read_to_string(&path).unwrap();
        (crate::config::parse(&text, &path).unwrap(), text)
    }

    fn reparse(text: &str) -> Config {
        crate::config::parse(text, Path::new("/etc/causeway/test.toml"))
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// A running topology with the connections of `c` in slots 0.. (outputs are irrelevant).
    fn topology(c: &Config) -> Topology {
        Topology {
            slots: c
                .connections
                .iter()
                .map(|cc| {
                    Some(Slot {
                        config: cc.clone(),
                        conn: Connection {
                            name: cc.name.clone(),
                            gateway: cc.gateway_index,
                            tunnel: None,
                            prefixes: cc.prefixes.clone(),
                            routing_weight: cc.routing_weight,
                            mtu: 1500,
                            up: Arc::new(AtomicBool::new(true)),
                            counters: Arc::new(PathCounters::default()),
                        },
                        output: Output::Gone,
                        esp: None,
                    })
                })
                .collect(),
        }
    }

    #[test]
    fn the_same_file_changes_nothing() {
        let (c, _) = fixture("coexist.toml");
        let p = plan(&topology(&c), &c.connections);
        assert!(p.is_empty(), "{p:?}");
        assert_eq!(p.unchanged, ["circuit-1", "s2s-1", "s2s-2"]);
    }

    #[test]
    fn connections_are_matched_by_name_and_sorted_into_kinds_of_change() {
        let (c, text) = fixture("coexist.toml");
        let t = topology(&c);
        // circuit-1: a routing weight (in place); s2s-1: another MTU (re-created); s2s-2: gone;
        // s2s-3: new.
        let next = text
            .replace(
                "prefixes = [\"10.2.0.0/16\", \"fd00:2::/48\"]",
                "prefixes = [\"10.2.0.0/16\", \"fd00:2::/48\"]\nrouting_weight = 10",
            )
            .replace("mtu = 1400", "mtu = 1390");
        let cut = next.find("[[connection]]\nname = \"s2s-2\"").unwrap();
        let rest = &next[cut..];
        let s2s3 = rest
            .replace("name = \"s2s-2\"", "name = \"s2s-3\"")
            .replace("fd00:4::/48", "fd00:5::/48")
            .replace("10.4.0.0/16", "10.5.0.0/16");
        let next = format!("{}{}", &next[..cut], s2s3);
        let n = reparse(&next);
        let p = plan(&t, &n.connections);
        assert_eq!(p.update.len(), 1);
        assert_eq!((p.update[0].0, p.update[0].1.routing_weight), (0, 10));
        assert_eq!(p.remove, [1, 2], "s2s-1 (changed) and s2s-2 (gone)");
        let added: Vec<&str> = p.add.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(added, ["s2s-1", "s2s-3"]);
        assert!(p.unchanged.is_empty());
    }

    #[test]
    fn new_prefixes_update_a_manual_tunnel_in_place_but_renegotiate_an_ike_one() {
        let (c, text) = fixture("ike.toml");
        let t = topology(&c);
        let next = text
            .replace(
                "prefixes = [\"10.9.0.0/16\"]",
                "prefixes = [\"10.9.0.0/16\", \"10.19.0.0/16\"]",
            )
            .replace(
                "prefixes = [\"10.3.0.0/16\"]",
                "prefixes = [\"10.3.0.0/16\", \"10.13.0.0/16\"]",
            );
        let p = plan(&t, &reparse(&next).connections);
        assert_eq!(p.update.len(), 1);
        assert_eq!(p.update[0].1.name, "s2s-manual");
        assert_eq!(p.remove, [1], "the IKE tunnel's traffic selectors changed");
        assert_eq!(p.add.len(), 1);
        assert_eq!(p.add[0].name, "s2s-1");
        assert_eq!(p.unchanged, ["s2s-2"]);
    }

    #[test]
    fn removed_slots_stay_empty_and_are_not_matched() {
        let (c, _) = fixture("coexist.toml");
        let mut t = topology(&c);
        t.slots[1] = None;
        assert!(t.find("s2s-1").is_none());
        assert_eq!(t.iter().count(), 2);
        let p = plan(&t, &c.connections);
        assert_eq!(p.add.len(), 1);
        assert_eq!(p.add[0].name, "s2s-1");
        assert!(p.remove.is_empty());
    }
}
