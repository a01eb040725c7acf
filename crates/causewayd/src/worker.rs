//! Data-plane worker threads: each owns one direction's pipeline half and loops on its inputs
//! (TUNs, or UDP sockets for tunnels), sending what the verdicts say, holding what the shaper
//! delays in a ring in arrival order.

use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use causeway_engine::counters::DropReason;
use causeway_engine::latency::{Sampler, Stage};
use causeway_engine::pipeline::{
    Connection, Egress, Ingress, LiveLimits, PathCounters, Verdict, REPLY_BUF_LEN,
};
use causeway_engine::shaper::BurstPolicy;
use causeway_esp::{classify_udp4500, Udp4500, HEADROOM, TAILROOM};
use causeway_sys::poll::{wait_readable, Waker};
use causeway_sys::tun::{Tun, VNET_HDR_LEN};
use causeway_sys::udp::{RecvBatch, UdpSocket};
use causeway_wire::gro::{self, Offer, TcpCoalescer};
use causeway_wire::ip::{fragment_v4, IpSummary};
use causeway_wire::virtio::VirtioHdr;

use crate::capture::{Capture, CaptureDir};
use crate::dataplane::{Shared, Topology};
use crate::ike::{IkeCounters, IkeDatagram};
use crate::tunnel::{open_drop, GsoBuf, Inbound, InboundCmd, TunnelTx, TxFail};

/// Largest packet a TUN read can return: a 64 KB super-packet plus its virtio header.
pub(crate) const BUF_LEN: usize = VNET_HDR_LEN + 65_535;
/// Packets handled per wake-up before the worker polls again (fairness between inputs).
const BATCH: usize = 128;
/// Datagrams per `recvmmsg` on the underlay, and the size of each receive buffer.
const UDP_BATCH: usize = 64;
/// With UDP GRO a read can hold up to 64 KB of coalesced datagrams.
const UDP_BUF: usize = 65_535;
/// Slots of each gateway's flow table the incremental sweep examines per wake-up with packets
/// (about 1.3 µs under the table's lock, some 10 ns per packet of a full batch; see
/// `FlowTable::expire`).
const FLOW_SWEEP_BUDGET: usize = 256;
/// Slots swept by the periodic sweep, on a fixed clock ([`FLOW_SWEEP_EVERY_NS`]) whatever the
/// traffic: about 80 µs under the table's lock every 100 ms, so every slot of a table of 10^6
/// flows is revisited within about 6 s (plus what the per-batch sweeps add under traffic).
const FLOW_SWEEP_PERIODIC_BUDGET: usize = 16_384;
/// A TUN worker wakes at least this often to sweep the flow tables, traffic or not.
const FLOW_SWEEP_EVERY_NS: u64 = 100_000_000;

/// The slots of each flow table a worker sweeps on a wake-up at `now`: the periodic budget
/// when the sweep clock `next_sweep` is due (which then moves on by one period, or to a
/// period after `now` if the worker fell behind, so that a late worker does not sweep
/// several periods in a row), else the small budget on a wake-up with packets to read, else
/// nothing (a wake-up to release a shaped packet sweeps nothing).
fn sweep_budget(now: u64, next_sweep: &mut u64, has_packets: bool) -> usize {
    if now >= *next_sweep {
        *next_sweep = next_sweep.saturating_add(FLOW_SWEEP_EVERY_NS);
        if *next_sweep <= now {
            *next_sweep = now.saturating_add(FLOW_SWEEP_EVERY_NS);
        }
        FLOW_SWEEP_PERIODIC_BUDGET
    } else if has_packets {
        FLOW_SWEEP_BUDGET
    } else {
        0
    }
}

/// Where a connection's packets go.
#[derive(Clone)]
pub enum Output {
    /// A TUN (a circuit, or the VNet side for ingress): written with the virtio header.
    Tun(Arc<Tun>),
    /// An IPsec tunnel: segmented, sealed and sent over the underlay.
    Tunnel(Arc<TunnelTx>),
    /// A connection removed by a reload: what the shaper still held for it is dropped
    /// (`connection_removed`).
    Gone,
}

pub(crate) struct Worker {
    stop: Arc<AtomicBool>,
    pub waker: Arc<Waker>,
    clock: Instant,
    vnet_counters: Arc<PathCounters>,
    gateways: Vec<Arc<PathCounters>>,
    shared: Arc<Shared>,
    /// The topology generation this worker has taken (read by the reload that waits for it).
    ack: Arc<AtomicU64>,
    seen: u64,
    vnet: Arc<Tun>,
    /// The connections by slot as this worker last took them; an emptied slot keeps its old
    /// connection without prefixes and down, so that late packets are still counted.
    connections: Vec<Connection>,
    /// `causeway capture`: checked (one relaxed load) for every forwarded packet.
    capture: Arc<Capture>,
}

/// The pipeline half a TUN worker runs.
pub(crate) enum Half {
    Egress(Egress),
    Ingress(Ingress),
}

impl Half {
    #[inline]
    fn process(
        &mut self,
        now: u64,
        conn: usize,
        v: &VirtioHdr,
        pkt: &mut [u8],
        reply: &mut [u8],
        live: &[LiveLimits],
    ) -> Verdict {
        match self {
            Half::Egress(e) => {
                e.apply_live(now, live);
                e.process(now, v, pkt, reply)
            }
            Half::Ingress(i) => {
                i.apply_live(now, live);
                i.process(now, conn, v, pkt, reply)
            }
        }
    }

    fn set_connections(&mut self, now: u64, c: Vec<Connection>) {
        match self {
            Half::Egress(e) => e.set_connections(now, c),
            Half::Ingress(i) => i.set_connections(now, c),
        }
    }

    /// The flow tables' incremental sweep, `budget` slots of each.
    fn expire_flows(&self, now: u64, budget: usize) {
        match self {
            Half::Egress(e) => e.expire_flows(now, budget),
            Half::Ingress(i) => i.expire_flows(now, budget),
        };
    }
}

/// The connections of a topology by slot, for a worker that had `prev`: an empty slot keeps
/// the connection it had (without prefixes, down), so that what the shaper still holds for it
/// is counted against its gateway.
fn slot_connections(prev: &[Connection], t: &Topology) -> Vec<Connection> {
    t.slots
        .iter()
        .enumerate()
        .map(|(i, s)| match s {
            Some(s) => s.conn.clone(),
            None => {
                let mut c = prev.get(i).cloned().unwrap_or_else(|| Connection {
                    name: String::new(),
                    gateway: 0,
                    tunnel: None,
                    prefixes: Vec::new(),
                    routing_weight: 0,
                    mtu: 0,
                    up: Arc::new(AtomicBool::new(false)),
                    counters: Arc::new(PathCounters::default()),
                });
                if c.up.load(Ordering::Relaxed) || !c.prefixes.is_empty() {
                    c.prefixes.clear();
                    c.up = Arc::new(AtomicBool::new(false));
                }
                c
            }
        })
        .collect()
}

/// Which half of the gateway a worker runs.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dir {
    Egress,
    Ingress,
}

impl Dir {
    fn capture(self) -> CaptureDir {
        match self {
            Dir::Egress => CaptureDir::Egress,
            Dir::Ingress => CaptureDir::Ingress,
        }
    }
}

/// One packet held by the shaper.
struct HeldEntry {
    off: usize,
    /// Bytes in the ring, virtio header included.
    len: usize,
    conn: usize,
    at: u64,
    frag_mtu: Option<usize>,
    /// A sampled packet: when the shaper took it (for the `shaper_hold` histogram).
    since: Option<u64>,
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
    fn push(
        &mut self,
        bytes: &[u8],
        conn: usize,
        at: u64,
        frag_mtu: Option<usize>,
        since: Option<u64>,
    ) -> bool {
        let len = bytes.len();
        if self.ring.is_empty() {
            self.ring = vec![0; self.capacity];
            prefault(&mut self.ring);
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
            since,
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

/// Touches every page of `buf` so that the memory is resident from now on: a zeroed allocation
/// gets its pages only as they are first written, so without this the resident size of a worker
/// would creep up in steps under load (a ring reaching further than before) instead of being
/// flat from the first use.
pub(crate) fn prefault(buf: &mut [u8]) {
    for i in (0..buf.len()).step_by(4096) {
        // Through `black_box`, so that the compiler cannot drop a store of the 0 already there.
        *std::hint::black_box(&mut buf[i]) = 0;
    }
}

/// Buffers of one worker, allocated once.
struct Buffers {
    pkt: Vec<u8>,
    reply: Vec<u8>,
    /// Scratch for what `send` builds: fragments, segments, sealed ESP.
    tx: TxBuffers,
}

/// Scratch buffers of the send path.
struct TxBuffers {
    frag: Vec<u8>,
    out: Vec<u8>,
    seal: Vec<u8>,
    /// Sealed datagrams of a super-packet, for one UDP GSO send (tunnels only).
    gso: GsoBuf,
}

impl Buffers {
    fn new() -> Buffers {
        let mut b = Buffers::zeroed();
        prefault(&mut b.pkt);
        prefault(&mut b.reply);
        prefault(&mut b.tx.frag);
        prefault(&mut b.tx.out);
        prefault(&mut b.tx.seal);
        b.tx.gso.prefault();
        b
    }

    fn zeroed() -> Buffers {
        Buffers {
            pkt: vec![0; BUF_LEN],
            reply: vec![0; VNET_HDR_LEN + REPLY_BUF_LEN],
            tx: TxBuffers {
                frag: vec![0; BUF_LEN],
                out: vec![0; BUF_LEN],
                seal: vec![0; HEADROOM + BUF_LEN + TAILROOM],
                gso: GsoBuf::default(),
            },
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

/// Why a worker's inner loop returned.
#[derive(PartialEq, Eq)]
enum Next {
    Stop,
    /// A new topology was published.
    Refresh,
}

impl Worker {
    pub fn new(
        stop: Arc<AtomicBool>,
        waker: Arc<Waker>,
        clock: Instant,
        shared: Arc<Shared>,
        ack: Arc<AtomicU64>,
        vnet: Arc<Tun>,
    ) -> Worker {
        Worker {
            stop,
            waker,
            clock,
            vnet_counters: shared.vnet.clone(),
            gateways: shared.gateways.clone(),
            capture: shared.capture.clone(),
            shared,
            ack,
            seen: 0,
            vnet,
            connections: Vec::new(),
        }
    }

    fn now(&self) -> u64 {
        self.clock.elapsed().as_nanos() as u64
    }

    /// Takes the published topology (the caller applies it, then calls [`Worker::ack`]).
    fn refresh(&mut self) -> Arc<Topology> {
        self.seen = self.shared.generation();
        let t = self.shared.topology();
        self.connections = slot_connections(&self.connections, &t);
        t
    }

    fn ack(&self) {
        self.ack.store(self.seen, Ordering::Release);
    }

    /// Whether a topology newer than the one this worker runs was published.
    #[inline]
    fn stale(&self) -> bool {
        self.shared.generation() != self.seen
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

    /// The worker loop of one direction over TUN inputs: egress reads the VNet TUN and sends to
    /// the connections' outputs; ingress reads the circuit TUNs and writes to the VNet TUN.
    /// Between batches it takes each new topology (a reload): its pipeline half gets the new
    /// connections, its inputs and outputs follow, what the shaper holds stays in order.
    pub fn run(mut self, dir: Dir, mut half: Half, bits_per_sec: u64, policy: BurstPolicy) {
        let mut b = Buffers::new();
        let mut held = Held::new(bits_per_sec, &policy);
        let live = self.shared.live.clone();
        loop {
            let t = self.refresh();
            half.set_connections(self.now(), self.connections.clone());
            let (inputs, input_conns, outputs): (Vec<Arc<Tun>>, Vec<usize>, Vec<Output>) = match dir
            {
                Dir::Egress => (
                    vec![self.vnet.clone()],
                    vec![0],
                    t.slots
                        .iter()
                        .map(|s| s.as_ref().map_or(Output::Gone, |s| s.output.clone()))
                        .collect(),
                ),
                Dir::Ingress => {
                    let (tuns, conns) = t
                        .iter()
                        .filter_map(|(i, s)| s.circuit().map(|tun| (tun.clone(), i)))
                        .unzip();
                    (tuns, conns, vec![Output::Tun(self.vnet.clone())])
                }
            };
            drop(t);
            self.ack();
            let next = self.serve(
                dir,
                &inputs,
                &input_conns,
                &outputs,
                &mut half,
                &live,
                &mut held,
                &mut b,
            );
            if next == Next::Stop {
                // A reload must not wait for a worker that is gone.
                self.ack.store(u64::MAX, Ordering::Release);
                return;
            }
        }
    }

    /// Serves one topology until it changes or the worker stops. `input_conns[i]` is the
    /// connection of input `i` (ingress); forwarded packets go to `outputs[conn]` (egress) or
    /// `outputs[0]` (ingress), replies back to the input they came from.
    #[allow(clippy::too_many_arguments)]
    fn serve(
        &self,
        dir: Dir,
        inputs: &[Arc<Tun>],
        input_conns: &[usize],
        outputs: &[Output],
        half: &mut Half,
        live: &[LiveLimits],
        held: &mut Held,
        b: &mut Buffers,
    ) -> Next {
        let mut ready = vec![false; inputs.len() + 1];
        let mut fds: Vec<BorrowedFd<'_>> = inputs.iter().map(|t| t.as_fd()).collect();
        fds.push(self.waker.as_fd());
        let gone = Output::Gone;
        let mut sampler = Sampler::default();
        let stage = match dir {
            Dir::Egress => Stage::EgressPipeline,
            Dir::Ingress => Stage::IngressPipeline,
        };
        let output = |conn: usize| -> &Output {
            match dir {
                Dir::Egress => outputs.get(conn).unwrap_or(&gone),
                Dir::Ingress => &outputs[0],
            }
        };
        let mut next_sweep = self.now() + FLOW_SWEEP_EVERY_NS;
        let mut last_read_warning: Option<Instant> = None;
        loop {
            let deadline = held
                .next_release()
                .map_or(next_sweep, |t| t.min(next_sweep));
            if !self.wait(&fds, &mut ready, Some(deadline)) {
                break;
            }
            self.release(held, b, &output, dir);
            if self.stale() {
                return Next::Refresh;
            }
            let now = self.now();
            let has_packets = ready[..inputs.len()].iter().any(|r| *r);
            let budget = sweep_budget(now, &mut next_sweep, has_packets);
            if budget > 0 {
                half.expire_flows(now, budget);
            }
            for (input, tun) in inputs.iter().enumerate() {
                if !ready[input] {
                    continue;
                }
                for _ in 0..BATCH {
                    let n = match read(tun, &mut b.pkt) {
                        Ok(Some(n)) => n,
                        Ok(None) => break,
                        Err(e) => {
                            // A TUN deleted from outside (EBADFD until the link watcher makes
                            // it again) or something unexpected: back off briefly so that a
                            // persistent error cannot turn the worker into a busy loop, and
                            // say so once every 5 s at most.
                            if last_read_warning
                                .is_none_or(|t: Instant| t.elapsed() >= Duration::from_secs(5))
                            {
                                tracing::warn!(error = %e, tun = tun.name(), "TUN read failed");
                                last_read_warning = Some(Instant::now());
                            }
                            std::thread::sleep(Duration::from_millis(10));
                            break;
                        }
                    };
                    let in_conn = input_conns.get(input).copied().unwrap_or(0);
                    let Some(v) = VirtioHdr::parse(&b.pkt[..n]) else {
                        match dir {
                            Dir::Egress => self
                                .vnet_counters
                                .egress
                                .drop(DropReason::MalformedVirtio, 1),
                            Dir::Ingress => {
                                self.count_drop(DropReason::MalformedVirtio, in_conn, dir)
                            }
                        }
                        continue;
                    };
                    let sample = sampler.should_sample();
                    let now = self.now();
                    let verdict = half.process(
                        now,
                        in_conn,
                        &v,
                        &mut b.pkt[VNET_HDR_LEN..n],
                        &mut b.reply[VNET_HDR_LEN..],
                        live,
                    );
                    if sample {
                        self.shared
                            .stages
                            .record(stage, self.now().saturating_sub(now));
                    }
                    let (conn, len, at, frag) = match verdict {
                        Verdict::Forward { conn, len, at } => (conn, len, at, None),
                        Verdict::Fragment { conn, len, mtu, at } => (conn, len, at, Some(mtu)),
                        Verdict::Reply { len } => {
                            b.reply[..VNET_HDR_LEN].fill(0);
                            if tun.write(&b.reply[..VNET_HDR_LEN + len]).is_err() {
                                match dir {
                                    Dir::Egress => {
                                        self.vnet_counters.egress.drop(DropReason::TxError, 1)
                                    }
                                    Dir::Ingress => {
                                        self.count_drop(DropReason::TxError, in_conn, dir)
                                    }
                                }
                            }
                            continue;
                        }
                        Verdict::Drop(_) => continue,
                    };
                    let conn = if dir == Dir::Ingress { in_conn } else { conn };
                    if self.capture.active() {
                        let pkt = &b.pkt[VNET_HDR_LEN..VNET_HDR_LEN + len];
                        self.capture.record(conn, dir.capture(), pkt);
                    }
                    if held.is_empty() && at <= now {
                        let bytes = &b.pkt[..VNET_HDR_LEN + len];
                        self.send(output(conn), bytes, frag, &mut b.tx, conn, dir, sample);
                    } else if !held.push(
                        &b.pkt[..VNET_HDR_LEN + len],
                        conn,
                        at,
                        frag,
                        sample.then_some(now),
                    ) {
                        self.count_drop(DropReason::ShapedBps, conn, dir);
                    }
                }
            }
            self.release(held, b, &output, dir);
        }
        Next::Stop
    }

    /// Sends the held packets whose release time has come.
    fn release<'a>(
        &self,
        held: &mut Held,
        b: &mut Buffers,
        output: &impl Fn(usize) -> &'a Output,
        dir: Dir,
    ) {
        if held.is_empty() {
            return;
        }
        let now = self.now();
        while let Some((e, bytes)) = held.pop_due(now) {
            if let Some(since) = e.since {
                self.shared
                    .stages
                    .record(Stage::ShaperHold, now.saturating_sub(since));
            }
            let sample = e.since.is_some();
            self.send(
                output(e.conn),
                bytes,
                e.frag_mtu,
                &mut b.tx,
                e.conn,
                dir,
                sample,
            );
        }
    }

    /// Sends one packet (`bytes`: virtio header, then the IP packet), or its fragments when
    /// `frag_mtu` says so, to `out`; a `sample`d packet's send is timed.
    #[allow(clippy::too_many_arguments)]
    fn send(
        &self,
        out: &Output,
        bytes: &[u8],
        frag_mtu: Option<usize>,
        tx: &mut TxBuffers,
        conn: usize,
        dir: Dir,
        sample: bool,
    ) {
        let t0 = if sample { self.now() } else { 0 };
        let (result, stage) = match out {
            Output::Tun(tun) => (send_tun(tun, bytes, frag_mtu, tx), Some(Stage::TunWrite)),
            Output::Tunnel(t) => (send_tunnel(t, bytes, frag_mtu, tx), Some(Stage::TunnelSeal)),
            Output::Gone => (Err(TxFail::Drop(DropReason::ConnectionRemoved)), None),
        };
        if let (true, Some(stage)) = (sample, stage) {
            self.shared
                .stages
                .record(stage, self.now().saturating_sub(t0));
        }
        match result {
            Ok(()) => {}
            Err(TxFail::Io(e)) => self.tx_error(e, conn, dir),
            Err(TxFail::Drop(reason)) => self.count_drop(reason, conn, dir),
        }
    }

    fn count_drop(&self, reason: DropReason, conn: usize, dir: Dir) {
        let Some(c) = self.connections.get(conn) else {
            return;
        };
        let (cc, gc) = (&c.counters, &self.gateways[c.gateway]);
        let (g, c) = match dir {
            Dir::Egress => (&gc.egress, &cc.egress),
            Dir::Ingress => (&gc.ingress, &cc.ingress),
        };
        g.drop(reason, 1);
        c.drop(reason, 1);
    }

    fn tx_error(&self, e: io::Error, conn: usize, dir: Dir) {
        self.count_drop(DropReason::TxError, conn, dir);
        // EIO: the circuit's interface is down; EBADFD: its TUN was deleted. Withdraw its routes
        // now rather than at the link watcher's next look, so that traffic moves to the next
        // best route at once; the watcher restores them when the link is back (or makes the
        // deleted TUN again).
        let Some(c) = self.connections.get(conn) else {
            return;
        };
        if dir == Dir::Egress
            && c.tunnel.is_none()
            && matches!(e.raw_os_error(), Some(libc::EIO | libc::EBADFD))
            && c.up.swap(false, Ordering::Relaxed)
        {
            tracing::warn!(connection = %c.name, "circuit write failed (link down): routes withdrawn");
        }
        tracing::trace!(error = %e, "write failed");
    }
}

impl Worker {
    /// Writes the pending merged packet (if any) to the VNet TUN.
    fn flush_to_vnet(&self, to_vnet: &mut ToVnet, vnet_out: &Output) {
        let Output::Tun(tun) = vnet_out else {
            return;
        };
        let sample = std::mem::take(&mut to_vnet.sample);
        let Some(bytes) = to_vnet.gro.flush() else {
            return;
        };
        let t0 = if sample { self.now() } else { 0 };
        if let Err(e) = tun.write(bytes) {
            self.tx_error(e, to_vnet.conn, Dir::Ingress);
        }
        if sample {
            self.shared
                .stages
                .record(Stage::TunWrite, self.now().saturating_sub(t0));
        }
    }
}

/// Writes a packet to a TUN, or its fragments (without offload: a zero virtio header).
fn send_tun(
    tun: &Tun,
    bytes: &[u8],
    frag_mtu: Option<usize>,
    tx: &mut TxBuffers,
) -> Result<(), TxFail> {
    let Some(mtu) = frag_mtu else {
        return tun.write(bytes).map(|_| ()).map_err(TxFail::Io);
    };
    let staging = &mut tx.out;
    staging[..VNET_HDR_LEN].fill(0);
    let mut result = Ok(());
    let made = fragment_v4(&bytes[VNET_HDR_LEN..], mtu, &mut tx.frag, |f| {
        staging[VNET_HDR_LEN..VNET_HDR_LEN + f.len()].copy_from_slice(f);
        if let Err(e) = tun.write(&staging[..VNET_HDR_LEN + f.len()]) {
            result = Err(TxFail::Io(e));
        }
    });
    if made.is_none() {
        // The engine checked the MTU; this guards against a bug, counted rather than a panic.
        return Err(TxFail::Io(io::Error::other("fragmentation failed")));
    }
    result
}

/// Seals a packet into the tunnel: a super-packet segment by segment, a fragmented packet
/// fragment by fragment (inner fragmentation before encryption), anything else whole.
fn send_tunnel(
    t: &TunnelTx,
    bytes: &[u8],
    frag_mtu: Option<usize>,
    tx: &mut TxBuffers,
) -> Result<(), TxFail> {
    let Some(v) = VirtioHdr::parse(bytes) else {
        return Err(TxFail::Drop(DropReason::MalformedVirtio));
    };
    let pkt = &bytes[VNET_HDR_LEN..];
    let TxBuffers {
        frag, seal, gso, ..
    } = tx;
    let mut result = Ok(());
    if let Some(mtu) = frag_mtu {
        // The engine completed any offloaded checksum before asking for fragments.
        let made = fragment_v4(pkt, mtu, frag, |f| {
            if let Err(e) = t.seal_send(f, None, seal) {
                result = Err(e);
            }
        });
        if made.is_none() {
            return Err(TxFail::Io(io::Error::other("fragmentation failed")));
        }
        return result;
    }
    if v.is_gso() {
        let s =
            IpSummary::parse(pkt, false).map_err(|_| TxFail::Drop(DropReason::MalformedVirtio))?;
        return t.seal_send_super(pkt, &s, &v, frag, gso);
    }
    t.seal_send(pkt, Some(&v), seal)
}

/// Inputs of the tunnel ingress worker (the sockets and the senders follow the topology).
pub(crate) struct TunnelInputs {
    pub inbound: Inbound,
    /// SA changes from the IKE thread and from reloads.
    pub cmds: Receiver<InboundCmd>,
    /// Where IKE messages that arrive on port 4500 go (the IKE thread and its waker).
    /// A full inbox refuses the message, counted in the IKE counters' `queue_full`.
    pub ike: Option<(SyncSender<IkeDatagram>, Arc<Waker>, Arc<IkeCounters>)>,
    /// The Vpn gateway (counts datagrams that match no tunnel).
    pub gateway: usize,
}

/// Inner packets on their way to the VNet TUN, merged per TCP flow into super-packets (one TUN
/// write for up to 64 segments instead of one each); see `causeway_wire::gro`.
struct ToVnet {
    gro: TcpCoalescer,
    /// The connection of the pending run (all its packets came through one tunnel).
    conn: usize,
    sample: bool,
}

/// What the tunnel ingress worker takes from a topology.
struct TunnelView {
    sockets: Vec<Arc<UdpSocket>>,
    /// By slot: the tunnel's sender (for ICMP errors back to the peer).
    senders: Vec<Option<Arc<TunnelTx>>>,
}

impl TunnelView {
    fn of(t: &Topology) -> TunnelView {
        let mut sockets: Vec<Arc<UdpSocket>> = Vec::new();
        let senders = t
            .slots
            .iter()
            .map(|s| s.as_ref().and_then(|s| s.tunnel().cloned()))
            .collect::<Vec<_>>();
        for tx in senders.iter().flatten() {
            let s = tx.socket();
            if !sockets.iter().any(|x| x.local_addr() == s.local_addr()) {
                sockets.push(s.clone());
            }
        }
        TunnelView { sockets, senders }
    }
}

impl Worker {
    /// The tunnel ingress loop: ESP-in-UDP datagrams from the underlay are opened by the SA
    /// their SPI names, their inner packets go through the ingress pipeline to the VNet TUN.
    /// On a new topology it drops the SAs of tunnels that are gone and listens on the sockets
    /// of those that are there.
    pub fn run_tunnels(
        mut self,
        mut t: TunnelInputs,
        bits_per_sec: u64,
        policy: BurstPolicy,
        mut ing: Ingress,
    ) {
        let mut b = Buffers::new();
        let mut held = Held::new(bits_per_sec, &policy);
        let mut rb = RecvBatch::new(UDP_BATCH, UDP_BUF);
        rb.prefault();
        let live = self.shared.live.clone();
        loop {
            let topo = self.refresh();
            ing.set_connections(self.now(), self.connections.clone());
            // An SA belongs to the tunnel of its slot only while that tunnel is the one it was
            // made for (the same ESP state): a removed tunnel's SAs go with it.
            t.inbound.retain(|e| {
                topo.get(e.conn)
                    .and_then(|s| s.esp.as_ref())
                    .is_some_and(|esp| Arc::ptr_eq(esp, &e.esp))
            });
            let view = TunnelView::of(&topo);
            drop(topo);
            self.ack();
            let next =
                self.serve_tunnels(&mut t, &view, &mut ing, &live, &mut held, &mut b, &mut rb);
            if next == Next::Stop {
                // A reload must not wait for a worker that is gone.
                self.ack.store(u64::MAX, Ordering::Release);
                return;
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn serve_tunnels(
        &self,
        t: &mut TunnelInputs,
        view: &TunnelView,
        ing: &mut Ingress,
        live: &[LiveLimits],
        held: &mut Held,
        b: &mut Buffers,
        rb: &mut RecvBatch,
    ) -> Next {
        let mut ready = vec![false; view.sockets.len() + 1];
        let mut fds: Vec<BorrowedFd<'_>> = view.sockets.iter().map(|s| s.as_fd()).collect();
        fds.push(self.waker.as_fd());
        let vnet_out = [Output::Tun(self.vnet.clone())];
        let output = |_: usize| -> &Output { &vnet_out[0] };
        let gw = self.gateways[t.gateway].clone();
        let mut sampler = Sampler::default();
        let mut to_vnet = ToVnet {
            gro: TcpCoalescer::new(gro::MAX_LEN),
            conn: 0,
            sample: false,
        };
        while self.wait(&fds, &mut ready, held.next_release()) {
            ing.apply_live(self.now(), live);
            // The periodic sweep is the TUN workers' (they wake on a clock); here the small
            // budget, only on wake-ups with datagrams to read.
            if ready[..view.sockets.len()].iter().any(|r| *r) {
                ing.expire_flows(self.now(), FLOW_SWEEP_BUDGET);
            }
            if self.stale() {
                self.release(held, b, &output, Dir::Ingress);
                return Next::Refresh;
            }
            while let Ok(cmd) = t.cmds.try_recv() {
                match cmd {
                    InboundCmd::Install(e) => {
                        // Not for a slot whose tunnel has gone since (a late IKE install).
                        let current = view
                            .senders
                            .get(e.conn)
                            .and_then(Option::as_ref)
                            .is_some_and(|tx| Arc::ptr_eq(&tx.esp, &e.esp));
                        if current {
                            t.inbound.install(e);
                        }
                    }
                    InboundCmd::Remove(spi) => t.inbound.remove(spi),
                }
            }
            self.release(held, b, &output, Dir::Ingress);
            for (si, socket) in view.sockets.iter().enumerate() {
                if !ready[si] {
                    continue;
                }
                for _ in 0..(BATCH / UDP_BATCH).max(1) {
                    let n = match rb.recv(socket) {
                        Ok(n) => n,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => break,
                        Err(e) => {
                            tracing::warn!(error = %e, "underlay receive failed");
                            std::thread::sleep(Duration::from_millis(10));
                            break;
                        }
                    };
                    for i in 0..n {
                        if rb.truncated(i) {
                            gw.ingress.drop(DropReason::EspMalformed, 1);
                            continue;
                        }
                        // The source is not checked: a NAT may change it, and only the SA's
                        // key decides what is authentic.
                        let (read, src, segment) = rb.packet(i);
                        // With UDP GRO one read holds consecutive datagrams of one size (the
                        // last possibly shorter): each is handled on its own.
                        let size = segment.map_or(read.len(), usize::from).max(1);
                        for data in read.chunks_mut(size) {
                            if let (Some(Udp4500::Ike(msg)), Some((inbox, waker, counters))) =
                                (classify_udp4500(data), &t.ike)
                            {
                                // IKE on port 4500 (after the NAT-T switch): for the IKE thread.
                                match inbox.try_send((socket.local_addr(), src, msg.to_vec())) {
                                    Err(TrySendError::Full(_)) => {
                                        counters.queue_full.fetch_add(1, Ordering::Relaxed);
                                    }
                                    _ => {
                                        let _ = waker.wake();
                                    }
                                }
                                continue;
                            }
                            self.tunnel_datagram(
                                data,
                                sampler.should_sample(),
                                &mut t.inbound,
                                &view.senders,
                                &vnet_out[0],
                                ing,
                                held,
                                b,
                                &gw,
                                &mut to_vnet,
                            );
                        }
                    }
                    // What was merged goes out before the worker reads (or waits) again.
                    self.flush_to_vnet(&mut to_vnet, &vnet_out[0]);
                    if n < UDP_BATCH {
                        break;
                    }
                }
            }
            self.release(held, b, &output, Dir::Ingress);
        }
        Next::Stop
    }

    #[allow(clippy::too_many_arguments)]
    fn tunnel_datagram(
        &self,
        data: &mut [u8],
        sample: bool,
        inbound: &mut Inbound,
        senders: &[Option<Arc<TunnelTx>>],
        vnet_out: &Output,
        ing: &mut Ingress,
        held: &mut Held,
        b: &mut Buffers,
        gw: &PathCounters,
        to_vnet: &mut ToVnet,
    ) {
        let spi = match classify_udp4500(data) {
            Some(Udp4500::Esp { spi }) => spi,
            Some(Udp4500::Keepalive) => return,
            // IKE (non-ESP marker) is not negotiated by this version; too short to be ESP.
            Some(Udp4500::Ike(_)) | None => {
                gw.ingress.drop(DropReason::EspMalformed, 1);
                return;
            }
        };
        let Some(entry) = inbound.get(spi) else {
            gw.ingress.drop(DropReason::EspNoSa, 1);
            return;
        };
        let conn = entry.conn;
        let t0 = if sample { self.now() } else { 0 };
        let opened = entry.sa.open(data);
        if sample {
            self.shared
                .stages
                .record(Stage::TunnelOpen, self.now().saturating_sub(t0));
        }
        let opened = match opened {
            Ok(o) => o,
            Err(e) => {
                self.count_drop(open_drop(e), conn, Dir::Ingress);
                return;
            }
        };
        entry
            .esp
            .in_seq
            .store(entry.sa.window().top(), Ordering::Relaxed);
        let start = opened.inner.start;
        if start < VNET_HDR_LEN {
            self.count_drop(DropReason::EspMalformed, conn, Dir::Ingress);
            return;
        }
        // The inner packet goes to the TUN with a zero virtio header, written over the ESP
        // header and IV in front of it.
        data[start - VNET_HDR_LEN..start].fill(0);
        let now = self.now();
        let plain = VirtioHdr::default();
        let verdict = ing.process(
            now,
            conn,
            &plain,
            &mut data[opened.inner.clone()],
            &mut b.reply[VNET_HDR_LEN..],
        );
        if sample {
            self.shared
                .stages
                .record(Stage::IngressPipeline, self.now().saturating_sub(now));
        }
        let (len, at, frag) = match verdict {
            Verdict::Forward { len, at, .. } => (len, at, None),
            Verdict::Fragment { len, mtu, at, .. } => (len, at, Some(mtu)),
            Verdict::Reply { len } => {
                // An ICMP error or echo reply about an inner packet goes back through the tunnel.
                if let Some(Some(tx)) = senders.get(conn) {
                    let reply = &b.reply[VNET_HDR_LEN..VNET_HDR_LEN + len];
                    match tx.seal_send(reply, None, &mut b.tx.seal) {
                        Ok(()) => {}
                        Err(TxFail::Drop(r)) => self.count_drop(r, conn, Dir::Egress),
                        Err(TxFail::Io(_)) => {
                            self.count_drop(DropReason::TxError, conn, Dir::Egress)
                        }
                    }
                }
                return;
            }
            Verdict::Drop(_) => return,
        };
        if self.capture.active() {
            self.capture
                .record(conn, CaptureDir::Ingress, &data[start..start + len]);
        }
        if held.is_empty() && at <= now && frag.is_none() {
            // Merged with the packets before it when it continues their TCP flow.
            let pkt = &data[start..start + len];
            let mut offer = to_vnet.gro.offer(pkt);
            if offer == Offer::NotMergeable {
                self.flush_to_vnet(to_vnet, vnet_out);
                offer = to_vnet.gro.offer(pkt);
            }
            match offer {
                Offer::Appended | Offer::AppendedLast => {
                    to_vnet.conn = conn;
                    to_vnet.sample |= sample;
                    if offer == Offer::AppendedLast {
                        self.flush_to_vnet(to_vnet, vnet_out);
                    }
                    return;
                }
                Offer::NotMergeable | Offer::Alone => {}
            }
        }
        // Written alone, or held: what was merged before it goes first.
        self.flush_to_vnet(to_vnet, vnet_out);
        let bytes = &data[start - VNET_HDR_LEN..start + len];
        if held.is_empty() && at <= now {
            self.send(vnet_out, bytes, frag, &mut b.tx, conn, Dir::Ingress, sample);
        } else if !held.push(bytes, conn, at, frag, sample.then_some(now)) {
            self.count_drop(DropReason::ShapedBps, conn, Dir::Ingress);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: u64 = FLOW_SWEEP_EVERY_NS;

    #[test]
    fn the_periodic_sweep_runs_on_a_fixed_clock_whatever_the_traffic() {
        let mut next = P;
        // Wake-ups with packets every 1 ms for 1 s: the big sweep runs once per period all the
        // same (it never did under traffic: every wake-up pushed the clock back).
        let mut big = 0;
        let mut small = 0;
        for ms in 1..=1000u64 {
            match sweep_budget(ms * 1_000_000, &mut next, true) {
                FLOW_SWEEP_PERIODIC_BUDGET => big += 1,
                FLOW_SWEEP_BUDGET => small += 1,
                b => panic!("budget {b}"),
            }
        }
        assert_eq!(big, 10);
        assert_eq!(small, 990);
        assert_eq!(next, 11 * P);
    }

    #[test]
    fn a_wake_up_without_packets_before_the_clock_sweeps_nothing() {
        // Shaper releases every 10 µs: no sweep at all until the clock is due (each one swept
        // 16384 slots before), then exactly one periodic sweep.
        let mut next = P;
        let mut swept = 0;
        let mut t = 10_000;
        while t < P {
            swept += sweep_budget(t, &mut next, false);
            t += 10_000;
        }
        assert_eq!(swept, 0);
        assert_eq!(
            sweep_budget(P, &mut next, false),
            FLOW_SWEEP_PERIODIC_BUDGET
        );
        assert_eq!(next, 2 * P);
        assert_eq!(sweep_budget(P + 1, &mut next, false), 0);
    }

    #[test]
    fn a_late_worker_does_not_sweep_every_period_it_missed() {
        let mut next = P;
        assert_eq!(
            sweep_budget(10 * P + 5, &mut next, false),
            FLOW_SWEEP_PERIODIC_BUDGET
        );
        assert_eq!(next, 11 * P + 5);
        assert_eq!(sweep_budget(10 * P + 6, &mut next, true), FLOW_SWEEP_BUDGET);
        // Slightly late: the clock keeps its phase.
        assert_eq!(
            sweep_budget(11 * P + 7, &mut next, true),
            FLOW_SWEEP_PERIODIC_BUDGET
        );
        assert_eq!(next, 12 * P + 5);
    }
}
