//! The data plane: TUN devices, and one worker thread per direction of the ExpressRoute gateway.
//!
//! ```text
//! VNet TUN --read--> ErEgress::process --> circuit TUN (write)      [egress worker]
//! circuit TUNs --read--> ErIngress::process --> VNet TUN (write)    [ingress worker]
//! ```
//! Each worker owns its half of the pipeline (shaper included), so nothing on the packet path
//! takes a lock. Counters are atomics read by the control thread. TUNs are opened with
//! `IFF_VNET_HDR` and TCP offloads: a read can return a 64 KB super-packet, which the plain path
//! forwards whole, with its virtio header, to the other TUN.

use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use causeway_engine::counters::DropReason;
use causeway_engine::pipeline::{
    build_er, Circuit, ErGatewaySpec, PathCounters, Verdict, Vnet, REPLY_BUF_LEN,
};
use causeway_engine::route::{Route, RouteTable};
use causeway_engine::shaper::BurstPolicy;
use causeway_engine::sku::GatewayType;
use causeway_sys::link;
use causeway_sys::poll::{wait_readable, Waker};
use causeway_sys::tun::{Offload, Tun, TunConfig, VNET_HDR_LEN};
use causeway_wire::ip::fragment_v4;
use causeway_wire::virtio::VirtioHdr;

use crate::config::{Config, ConnectionKind, InterfaceConfig};

/// Largest packet a TUN read can return: a 64 KB super-packet plus its virtio header.
const BUF_LEN: usize = VNET_HDR_LEN + 65_535;
/// Packets handled per wake-up before the worker polls again (fairness between TUNs).
const BATCH: usize = 128;

/// Counters and live state shared with the control thread.
pub struct Shared {
    pub vnet: Arc<PathCounters>,
    pub gateway: Arc<PathCounters>,
    pub circuits: Vec<Circuit>,
    pub vnet_offload: bool,
}

/// The running data plane. Dropping it stops the workers and closes the TUNs (which removes them).
pub struct Dataplane {
    pub shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    wakers: Vec<Arc<Waker>>,
    workers: Vec<JoinHandle<()>>,
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

        let er_index = config
            .gateways
            .iter()
            .position(|g| g.gateway_type == GatewayType::ExpressRoute);
        let mut circuit_tuns = Vec::new();
        let mut circuits = Vec::new();
        let mut routes = Vec::new();
        let mut all_prefixes = Vec::new();
        for conn in &config.connections {
            if Some(conn.gateway_index) != er_index {
                continue;
            }
            let ConnectionKind::ExpressRoute { interface } = &conn.kind;
            let tun = open_tun(interface)?;
            install_routes(interface, &vnet_cfg.address_space)?;
            let idx = circuits.len();
            for p in &conn.prefixes {
                routes.push(Route {
                    prefix: *p,
                    connection: idx,
                    weight: conn.routing_weight,
                });
                all_prefixes.push(*p);
            }
            circuits.push(Circuit {
                name: conn.name.clone(),
                prefixes: conn.prefixes.clone(),
                mtu: interface.mtu as usize,
                up: Arc::new(AtomicBool::new(true)),
                counters: Arc::new(PathCounters::default()),
            });
            circuit_tuns.push(Arc::new(tun));
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
        let gateway_counters = Arc::new(PathCounters::default());
        let stop = Arc::new(AtomicBool::new(false));
        let mut workers = Vec::new();
        let mut wakers = Vec::new();
        if let Some(gi) = er_index {
            let limits = config.gateways[gi].sku.limits();
            let (eg, ing) = build_er(
                ErGatewaySpec {
                    vnet,
                    circuits: circuits.clone(),
                    routes: RouteTable::new(routes),
                    bits_per_sec: limits.bits_per_sec,
                    packets_per_sec: limits.packets_per_sec,
                    burst,
                    gateway_counters: gateway_counters.clone(),
                    vnet_counters: vnet_counters.clone(),
                },
                0,
            );
            let w = Arc::new(Waker::new().context("eventfd")?);
            wakers.push(w.clone());
            let ctx = Worker {
                stop: stop.clone(),
                waker: w,
                clock,
                vnet_counters: vnet_counters.clone(),
                gateway: gateway_counters.clone(),
                circuits: circuits.clone(),
            };
            let (v, c) = (vnet_tun.clone(), circuit_tuns.clone());
            let bps = limits.bits_per_sec;
            let mut eg = eg;
            workers.push(std::thread::Builder::new().name("er-egress".into()).spawn(
                move || {
                    ctx.run(Dir::Egress, vec![v], c, bps, burst, |now, _, v, p, r| {
                        eg.process(now, v, p, r)
                    })
                },
            )?);
            let w = Arc::new(Waker::new().context("eventfd")?);
            wakers.push(w.clone());
            let ctx = Worker {
                stop: stop.clone(),
                waker: w,
                clock,
                vnet_counters: vnet_counters.clone(),
                gateway: gateway_counters.clone(),
                circuits: circuits.clone(),
            };
            let (v, c) = (vnet_tun.clone(), circuit_tuns.clone());
            let mut ing = ing;
            workers.push(
                std::thread::Builder::new()
                    .name("er-ingress".into())
                    .spawn(move || {
                        ctx.run(
                            Dir::Ingress,
                            c,
                            vec![v],
                            bps,
                            burst,
                            |now, input, v, p, r| ing.process(now, input, v, p, r),
                        )
                    })?,
            );
        }
        Ok(Dataplane {
            shared: Arc::new(Shared {
                vnet: vnet_counters,
                gateway: gateway_counters,
                circuits,
                vnet_offload: vnet_tun.vnet_hdr(),
            }),
            stop,
            wakers,
            workers,
        })
    }

    /// Stops the workers and waits for them; the TUNs close when the last reference goes.
    pub fn stop(&mut self) {
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

struct Worker {
    stop: Arc<AtomicBool>,
    waker: Arc<Waker>,
    clock: Instant,
    vnet_counters: Arc<PathCounters>,
    gateway: Arc<PathCounters>,
    circuits: Vec<Circuit>,
}

/// Which half of the gateway a worker runs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Dir {
    Egress,
    Ingress,
}

/// One packet held by the shaper.
struct HeldEntry {
    off: usize,
    /// Bytes in the ring, virtio header included.
    len: usize,
    conn: usize,
    at: u64,
    frag_mtu: Option<usize>,
}

/// Packets the shaper holds until their release time, in arrival order. The bytes live in one
/// ring buffer, allocated on first use (an unshaped gateway never allocates it) and sized from
/// the SKU rate and the shaper's maximum delay; nothing is allocated per packet.
struct Held {
    ring: Vec<u8>,
    capacity: usize,
    head: usize,
    tail: usize,
    entries: std::collections::VecDeque<HeldEntry>,
}

impl Held {
    fn new(bits_per_sec: u64, policy: &BurstPolicy) -> Held {
        let bytes = u128::from(bits_per_sec / 8)
            * u128::from(policy.max_delay_ns + policy.burst_ns)
            / 1_000_000_000;
        let capacity = (bytes as usize).saturating_mul(2).clamp(4 << 20, 64 << 20);
        Held {
            ring: Vec::new(),
            capacity,
            head: 0,
            tail: 0,
            entries: std::collections::VecDeque::with_capacity(4096),
        }
    }

    fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn next_release(&self) -> Option<u64> {
        self.entries.front().map(|e| e.at)
    }

    /// Copies `bytes` in; false when the ring is full.
    fn push(&mut self, bytes: &[u8], conn: usize, at: u64, frag_mtu: Option<usize>) -> bool {
        let len = bytes.len();
        if self.ring.is_empty() {
            self.ring = vec![0; self.capacity];
        }
        let off = if self.entries.is_empty() {
            self.head = 0;
            self.tail = 0;
            0
        } else if self.tail >= self.head {
            if self.capacity - self.tail >= len {
                self.tail
            } else if self.head > len {
                0
            } else {
                return false;
            }
        } else if self.head - self.tail > len {
            self.tail
        } else {
            return false;
        };
        if off + len > self.capacity {
            return false;
        }
        self.ring[off..off + len].copy_from_slice(bytes);
        self.tail = off + len;
        self.entries.push_back(HeldEntry {
            off,
            len,
            conn,
            at,
            frag_mtu,
        });
        true
    }

    fn pop_due(&mut self, now: u64) -> Option<(HeldEntry, &[u8])> {
        if self.entries.front()?.at > now {
            return None;
        }
        let e = self.entries.pop_front()?;
        self.head = e.off + e.len;
        Some((HeldEntry { ..e }, &self.ring[e.off..e.off + e.len]))
    }
}

/// Buffers of one worker, allocated once.
struct Buffers {
    pkt: Vec<u8>,
    reply: Vec<u8>,
    frag: Vec<u8>,
    out: Vec<u8>,
}

impl Buffers {
    fn new() -> Buffers {
        Buffers {
            pkt: vec![0; BUF_LEN],
            reply: vec![0; VNET_HDR_LEN + REPLY_BUF_LEN],
            frag: vec![0; BUF_LEN],
            out: vec![0; BUF_LEN],
        }
    }
}

fn read(tun: &Tun, buf: &mut [u8]) -> io::Result<Option<usize>> {
    match tun.read(buf) {
        Ok(n) => Ok(Some(n)),
        Err(e)
            if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::Interrupted =>
        {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

impl Worker {
    fn now(&self) -> u64 {
        self.clock.elapsed().as_nanos() as u64
    }

    /// Blocks until one of `fds` (the inputs, then the waker) is readable, `deadline` (in the
    /// worker clock) passes, or the worker is told to stop; returns false to stop.
    fn wait(&self, fds: &[BorrowedFd<'_>], ready: &mut [bool], deadline: Option<u64>) -> bool {
        loop {
            if self.stop.load(Ordering::Relaxed) {
                return false;
            }
            let timeout = deadline.map(|d| Duration::from_nanos(d.saturating_sub(self.now())));
            match wait_readable(fds, timeout, ready) {
                Ok(_) => {
                    if ready[fds.len() - 1] {
                        let _ = self.waker.drain();
                        if self.stop.load(Ordering::Relaxed) {
                            return false;
                        }
                    }
                    return true;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    tracing::error!(error = %e, "poll failed; worker stops");
                    return false;
                }
            }
        }
    }

    /// The worker loop of one direction: `inputs` are read (egress: the VNet TUN; ingress: the
    /// circuit TUNs), `process` gives the verdict, forwarded packets go to `output(conn)`, replies
    /// back to the input they came from.
    fn run(
        self,
        dir: Dir,
        inputs: Vec<Arc<Tun>>,
        outputs: Vec<Arc<Tun>>,
        bits_per_sec: u64,
        policy: BurstPolicy,
        mut process: impl FnMut(u64, usize, &VirtioHdr, &mut [u8], &mut [u8]) -> Verdict,
    ) {
        let mut b = Buffers::new();
        let mut held = Held::new(bits_per_sec, &policy);
        let mut ready = vec![false; inputs.len() + 1];
        let mut fds: Vec<BorrowedFd<'_>> = inputs.iter().map(|t| t.as_fd()).collect();
        fds.push(self.waker.as_fd());
        let output = |conn: usize| -> &Tun {
            match dir {
                Dir::Egress => &outputs[conn],
                Dir::Ingress => &outputs[0],
            }
        };
        while self.wait(&fds, &mut ready, held.next_release()) {
            self.release(&mut held, &mut b, &output, dir);
            for (input, tun) in inputs.iter().enumerate() {
                if !ready[input] {
                    continue;
                }
                for _ in 0..BATCH {
                    let n = match read(tun, &mut b.pkt) {
                        Ok(Some(n)) => n,
                        Ok(None) => break,
                        Err(e) => {
                            // Not expected from a TUN; back off briefly so that a persistent
                            // error cannot turn the worker into a busy loop.
                            tracing::warn!(error = %e, tun = tun.name(), "TUN read failed");
                            std::thread::sleep(Duration::from_millis(10));
                            break;
                        }
                    };
                    let Some(v) = VirtioHdr::parse(&b.pkt[..n]) else {
                        let c = match dir {
                            Dir::Egress => &self.vnet_counters.egress,
                            Dir::Ingress => &self.gateway.ingress,
                        };
                        c.drop(DropReason::MalformedVirtio, 1);
                        continue;
                    };
                    let now = self.now();
                    let verdict = process(
                        now,
                        input,
                        &v,
                        &mut b.pkt[VNET_HDR_LEN..n],
                        &mut b.reply[VNET_HDR_LEN..],
                    );
                    let (conn, len, at, frag) = match verdict {
                        Verdict::Forward { conn, len, at } => (conn, len, at, None),
                        Verdict::Fragment { conn, len, mtu, at } => (conn, len, at, Some(mtu)),
                        Verdict::Reply { len } => {
                            b.reply[..VNET_HDR_LEN].fill(0);
                            let _ = tun.write(&b.reply[..VNET_HDR_LEN + len]);
                            continue;
                        }
                        Verdict::Drop(_) => continue,
                    };
                    let conn = if dir == Dir::Ingress { input } else { conn };
                    if held.is_empty() && at <= now {
                        let bytes = &b.pkt[..VNET_HDR_LEN + len];
                        self.send(
                            output(conn),
                            bytes,
                            frag,
                            &mut b.frag,
                            &mut b.out,
                            conn,
                            dir,
                        );
                    } else if !held.push(&b.pkt[..VNET_HDR_LEN + len], conn, at, frag) {
                        self.count_drop(DropReason::ShapedBps, conn, dir);
                    }
                }
            }
            self.release(&mut held, &mut b, &output, dir);
        }
    }

    /// Sends the held packets whose release time has come.
    fn release<'a>(
        &self,
        held: &mut Held,
        b: &mut Buffers,
        output: &impl Fn(usize) -> &'a Tun,
        dir: Dir,
    ) {
        if held.is_empty() {
            return;
        }
        let now = self.now();
        while let Some((e, bytes)) = held.pop_due(now) {
            self.send(
                output(e.conn),
                bytes,
                e.frag_mtu,
                &mut b.frag,
                &mut b.out,
                e.conn,
                dir,
            );
        }
    }

    /// Writes one packet (virtio header first), or its fragments.
    #[allow(clippy::too_many_arguments)]
    fn send(
        &self,
        out: &Tun,
        bytes: &[u8],
        frag_mtu: Option<usize>,
        frag: &mut [u8],
        staging: &mut [u8],
        conn: usize,
        dir: Dir,
    ) {
        let Some(mtu) = frag_mtu else {
            if let Err(e) = out.write(bytes) {
                self.tx_error(e, conn, dir);
            }
            return;
        };
        staging[..VNET_HDR_LEN].fill(0);
        let mut result = Ok(());
        let made = fragment_v4(&bytes[VNET_HDR_LEN..], mtu, frag, |f| {
            staging[VNET_HDR_LEN..VNET_HDR_LEN + f.len()].copy_from_slice(f);
            if let Err(e) = out.write(&staging[..VNET_HDR_LEN + f.len()]) {
                result = Err(e);
            }
        });
        if made.is_none() {
            // The engine checked the MTU; this guards against a bug, counted rather than a panic.
            result = Err(io::Error::other("fragmentation failed"));
        }
        if let Err(e) = result {
            self.tx_error(e, conn, dir);
        }
    }

    fn count_drop(&self, reason: DropReason, conn: usize, dir: Dir) {
        let cc = &self.circuits[conn].counters;
        let (g, c) = match dir {
            Dir::Egress => (&self.gateway.egress, &cc.egress),
            Dir::Ingress => (&self.gateway.ingress, &cc.ingress),
        };
        g.drop(reason, 1);
        c.drop(reason, 1);
    }

    fn tx_error(&self, e: io::Error, conn: usize, dir: Dir) {
        self.count_drop(DropReason::TxError, conn, dir);
        // EIO: the circuit's interface is down. Withdraw its routes now rather than at the link
        // watcher's next look, so that traffic moves to the next best route at once; the
        // watcher restores them when the link is back.
        if dir == Dir::Egress && e.raw_os_error() == Some(libc::EIO) {
            let c = &self.circuits[conn];
            if c.up.swap(false, Ordering::Relaxed) {
                tracing::warn!(connection = %c.name, "circuit write failed (link down): routes withdrawn");
            }
        }
        tracing::trace!(error = %e, "TUN write failed");
    }
}
