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

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use anyhow::{Context, Result};
use causeway_engine::pipeline::{
    build, Connection, GatewaySpec, LiveLimits, PathCounters, PipelineSpec, TunnelParams, Vnet,
};
use causeway_engine::shaper::BurstPolicy;
use causeway_esp::{InboundSa, OutboundSa};
use causeway_sys::link;
use causeway_sys::poll::Waker;
use causeway_sys::tun::{Offload, Tun, TunConfig};
use causeway_sys::udp::{UdpOptions, UdpSocket};

use crate::capture::Capture;
use crate::config::{Config, ConnectionKind, InterfaceConfig, Keying, ManualSa};
use crate::ike::{IkePeer, IkeRuntime, IkeViews};
use crate::seqlease::SeqLease;
use crate::tunnel::{EspState, Inbound, InboundEntry, Outbound, TunnelTx};
use crate::worker::{Dir, Output, TunnelInputs, Worker};

/// Counters and live state shared with the control thread.
pub struct Shared {
    pub vnet: Arc<PathCounters>,
    /// Counters of each gateway, by its index in the config.
    pub gateways: Vec<Arc<PathCounters>>,
    /// The pipeline's connections (counters, up flags), in config order.
    pub connections: Vec<Connection>,
    /// ESP state of each tunnel, by connection index (None for circuits).
    pub esp: Vec<Option<Arc<EspState>>>,
    /// Live limits of each gateway (SKU resizes), by config index.
    pub live: Arc<Vec<LiveLimits>>,
    /// IKE state of the IKE-keyed tunnels: (connection index, view).
    pub ike: Option<IkeViews>,
    pub vnet_offload: bool,
    /// `causeway capture` sessions, shared with the workers.
    pub capture: Arc<Capture>,
}

/// The running data plane. Dropping it stops the workers and closes the TUNs (which removes them).
pub struct Dataplane {
    pub shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    wakers: Vec<Arc<Waker>>,
    workers: Vec<JoinHandle<()>>,
    ike: Option<IkeRuntime>,
}

fn open_tun(iface: &InterfaceConfig) -> Result<Tun> {
    let cfg = TunConfig {
        name: &iface.name,
        netns: iface.netns.as_deref(),
        vnet_hdr: true,
        offload: Offload::TCP,
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

/// The two SAs of a manually keyed tunnel; the outbound one resumes above every sequence number
/// a previous run may have used (its lease in `state_dir`).
fn manual_sas(
    config: &Config,
    name: &str,
    sa: &ManualSa,
    peer: SocketAddr,
) -> Result<(Outbound, InboundSa)> {
    let out_key = sa.out_key.key_material(sa.cipher);
    let in_key = sa.in_key.key_material(sa.cipher);
    let (lease, first) = SeqLease::acquire(&config.control.state_dir, sa.out_spi)
        .with_context(|| format!("connection `{name}`: sequence-number lease"))?;
    let out = OutboundSa::resume(sa.out_spi, sa.cipher, &out_key, sa.esn, first)
        .map_err(|e| anyhow::anyhow!("connection `{name}`: outbound SA: {e}"))?;
    let inn = InboundSa::new(sa.in_spi, sa.cipher, &in_key, sa.esn, sa.replay_window)
        .map_err(|e| anyhow::anyhow!("connection `{name}`: inbound SA: {e}"))?;
    Ok((
        Outbound {
            sa: out,
            lease: Some(lease),
            peer,
        },
        inn,
    ))
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
pub(crate) fn install_routes(
    iface: &InterfaceConfig,
    prefixes: &[causeway_engine::prefix::Prefix],
) -> Result<()> {
    if !iface.install_routes {
        return Ok(());
    }
    for p in prefixes {
        let on_link = iface
            .addresses
            .iter()
            .any(|a| causeway_engine::prefix::Prefix::containing(a.addr, a.len).ok() == Some(*p));
        if !on_link {
            link::add_route(iface.netns.as_deref(), &p.to_string(), &iface.name)
                .with_context(|| format!("adding route {p} via `{}`", iface.name))?;
        }
    }
    Ok(())
}

impl Dataplane {
    /// Creates the TUNs, configures them, and starts the workers.
    pub fn start(config: &Config, burst: BurstPolicy) -> Result<Dataplane> {
        let clock = Instant::now();
        let vnet_cfg = &config.vnet;
        let vnet_tun = Arc::new(open_tun(&vnet_cfg.interface)?);

        let gateway_counters: Vec<Arc<PathCounters>> = config
            .gateways
            .iter()
            .map(|_| Arc::new(PathCounters::default()))
            .collect();
        let mut circuit_tuns = Vec::new();
        let mut circuit_conns = Vec::new();
        let mut outputs = Vec::new();
        let mut connections = Vec::new();
        let mut esp_states = Vec::new();
        let mut sockets: Vec<Arc<UdpSocket>> = Vec::new();
        let mut socket_of: HashMap<SocketAddr, usize> = HashMap::new();
        let mut inbound = Vec::new();
        let mut senders = Vec::new();
        let mut vpn_gateway = None;
        let mut ike_peers: Vec<IkePeer> = Vec::new();
        let mut all_prefixes = Vec::new();
        for (idx, conn) in config.connections.iter().enumerate() {
            all_prefixes.extend(conn.prefixes.iter().copied());
            let up = Arc::new(AtomicBool::new(true));
            let counters = Arc::new(PathCounters::default());
            let (tunnel, mtu) = match &conn.kind {
                ConnectionKind::ExpressRoute { interface } => {
                    let tun = Arc::new(open_tun(interface)?);
                    install_routes(interface, &vnet_cfg.address_space)?;
                    circuit_tuns.push(tun.clone());
                    circuit_conns.push(idx);
                    outputs.push(Output::Tun(tun));
                    esp_states.push(None);
                    senders.push(None);
                    (None, interface.mtu as usize)
                }
                ConnectionKind::IPsec(ipsec) => {
                    vpn_gateway = Some(conn.gateway_index);
                    let local = SocketAddr::new(ipsec.local_address, ipsec.local_port);
                    let si = match socket_of.get(&local) {
                        Some(&i) => i,
                        None => {
                            let sock = UdpSocket::bind(local, None, &UdpOptions::default())
                                .with_context(|| {
                                    format!(
                                        "connection `{}`: binding the underlay socket",
                                        conn.name
                                    )
                                })?;
                            sockets.push(Arc::new(sock));
                            socket_of.insert(local, sockets.len() - 1);
                            sockets.len() - 1
                        }
                    };
                    let peer = SocketAddr::new(ipsec.peer_address, ipsec.peer_port);
                    let (tx, esp) = match &ipsec.keying {
                        Keying::Manual(sa) => {
                            let (out, inn) = manual_sas(config, &conn.name, sa, peer)?;
                            let esp = Arc::new(EspState::new(
                                sa.cipher.name(),
                                sa.esn,
                                sa.out_spi,
                                sa.in_spi,
                            ));
                            inbound.push(InboundEntry {
                                spi: sa.in_spi,
                                conn: idx,
                                sa: inn,
                                esp: esp.clone(),
                            });
                            let tx =
                                TunnelTx::new(idx, sockets[si].clone(), Some(out), esp.clone());
                            (Arc::new(tx), esp)
                        }
                        Keying::Ike(ike) => {
                            // SAs come from the IKE thread; until then packets are dropped
                            // (`esp_no_sa`), never sent in clear.
                            let esp = Arc::new(EspState::empty());
                            let tx = Arc::new(TunnelTx::new(
                                idx,
                                sockets[si].clone(),
                                None,
                                esp.clone(),
                            ));
                            ike_peers.push(IkePeer {
                                conn: idx,
                                name: conn.name.clone(),
                                ipsec: ipsec.clone(),
                                ike: ike.clone(),
                                prefixes: conn.prefixes.clone(),
                                tx: tx.clone(),
                                counters: counters.clone(),
                            });
                            (tx, esp)
                        }
                    };
                    outputs.push(Output::Tunnel(tx.clone()));
                    senders.push(Some(tx));
                    esp_states.push(Some(esp));
                    let cap = config.gateways[conn.gateway_index]
                        .sku
                        .limits()
                        .per_tunnel_bits_per_sec;
                    (
                        Some(TunnelParams {
                            mss_clamp: ipsec.mss_clamp,
                            cap_bits_per_sec: cap,
                        }),
                        ipsec.mtu as usize,
                    )
                }
            };
            connections.push(Connection {
                name: conn.name.clone(),
                gateway: conn.gateway_index,
                tunnel,
                prefixes: conn.prefixes.clone(),
                routing_weight: conn.routing_weight,
                mtu,
                up,
                counters,
            });
        }
        all_prefixes.sort();
        all_prefixes.dedup();
        // The VNet side learns the on-premises prefixes, and the VNet's own address space (so
        // that the gateway's addresses are reachable even outside the interface's subnet).
        let mut vnet_routes = all_prefixes.clone();
        vnet_routes.extend(vnet_cfg.address_space.iter().copied());
        install_routes(&vnet_cfg.interface, &vnet_routes)?;

        let vnet = Arc::new(Vnet {
            address_space: vnet_cfg.address_space.clone(),
            gateway_v4: vnet_cfg.gateway_address_v4().octets(),
            gateway_v6: vnet_cfg.gateway_address_v6().map(|a| a.octets()),
            mtu: vnet_cfg.interface.mtu as usize,
        });
        let vnet_counters = Arc::new(PathCounters::default());
        let gateways: Vec<GatewaySpec> = config
            .gateways
            .iter()
            .zip(&gateway_counters)
            .map(|(g, counters)| {
                let limits = g.sku.limits();
                GatewaySpec {
                    name: g.name.clone(),
                    bits_per_sec: limits.bits_per_sec,
                    packets_per_sec: limits.packets_per_sec,
                    counters: counters.clone(),
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
            .max(10_000_000_000);
        let spec = PipelineSpec {
            vnet,
            gateways,
            connections: connections.clone(),
            burst,
            vnet_counters: vnet_counters.clone(),
        };
        let (mut eg, mut ing) = build(&spec, 0);
        let stop = Arc::new(AtomicBool::new(false));
        let capture = Arc::new(Capture::default());
        let mut workers = Vec::new();
        let mut wakers = Vec::new();
        let worker = |wakers: &mut Vec<Arc<Waker>>| -> Result<Worker> {
            let w = Arc::new(Waker::new().context("eventfd")?);
            wakers.push(w.clone());
            Ok(Worker {
                stop: stop.clone(),
                waker: w,
                clock,
                vnet_counters: vnet_counters.clone(),
                gateways: gateway_counters.clone(),
                connections: connections.clone(),
                capture: capture.clone(),
            })
        };
        if !connections.is_empty() {
            let ctx = worker(&mut wakers)?;
            let v = vnet_tun.clone();
            let live_e = live.clone();
            workers.push(
                std::thread::Builder::new()
                    .name("egress".into())
                    .spawn(move || {
                        ctx.run(
                            Dir::Egress,
                            vec![v],
                            vec![0],
                            outputs,
                            bps,
                            burst,
                            |now, _, v, p, r| {
                                eg.apply_live(now, &live_e);
                                eg.process(now, v, p, r)
                            },
                        )
                    })?,
            );
        }
        if !circuit_tuns.is_empty() {
            let ctx = worker(&mut wakers)?;
            let out = vec![Output::Tun(vnet_tun.clone())];
            let live_i = live.clone();
            workers.push(
                std::thread::Builder::new()
                    .name("circuit-ingress".into())
                    .spawn(move || {
                        ctx.run(
                            Dir::Ingress,
                            circuit_tuns,
                            circuit_conns,
                            out,
                            bps,
                            burst,
                            |now, conn, v, p, r| {
                                ing.apply_live(now, &live_i);
                                ing.process(now, conn, v, p, r)
                            },
                        )
                    })?,
            );
        }
        let mut ike = None;
        if let Some(gateway) = vpn_gateway {
            // The tunnel ingress worker has its own pipeline half (shapers per gateway and
            // direction are only ever used by one worker: the Vpn gateway's ingress here).
            let (_, ing) = build(&spec, 0);
            let ctx = worker(&mut wakers)?;
            let tunnel_waker = ctx.waker.clone();
            let (cmd_tx, cmd_rx) = std::sync::mpsc::channel();
            let inbox = std::sync::mpsc::channel();
            let ike_waker = Arc::new(Waker::new().context("eventfd")?);
            let with_ike = !ike_peers.is_empty();
            let inputs = TunnelInputs {
                sockets: sockets.clone(),
                inbound: Inbound::new(inbound),
                cmds: with_ike.then_some(cmd_rx),
                ike: with_ike.then(|| (inbox.0.clone(), ike_waker.clone())),
                senders,
                gateway,
                vnet: vnet_tun.clone(),
            };
            workers.push(
                std::thread::Builder::new()
                    .name("tunnel-ingress".into())
                    .spawn({
                        let live_t = live.clone();
                        move || ctx.run_tunnels(inputs, bps, burst, ing, live_t)
                    })?,
            );
            if with_ike {
                let by_local = socket_of
                    .iter()
                    .map(|(addr, &i)| (*addr, sockets[i].clone()))
                    .collect();
                ike = Some(crate::ike::start(
                    ike_peers,
                    &vnet_cfg.address_space,
                    by_local,
                    cmd_tx,
                    tunnel_waker,
                    inbox,
                    ike_waker,
                )?);
            }
        }
        Ok(Dataplane {
            shared: Arc::new(Shared {
                vnet: vnet_counters,
                gateways: gateway_counters,
                connections,
                esp: esp_states,
                ike: ike.as_ref().map(|r| r.views.clone()),
                live,
                vnet_offload: vnet_tun.vnet_hdr(),
                capture,
            }),
            stop,
            wakers,
            workers,
            ike,
        })
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
