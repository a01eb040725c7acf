//! The Prometheus metrics endpoint (`[metrics] listen`): a small blocking HTTP/1.1 server that
//! answers `GET /metrics` with the counters of `causeway stats`, a few gauges of
//! `causeway status` and the per-stage latency histograms (`stages` of `causeway stats`), in the
//! Prometheus text exposition format (version 0.0.4).
//!
//! The numbers come from the same [`Status`] and [`Stats`] the control socket sends, so the two
//! never disagree on what a counter means (docs/CLI.md, "Metrics").

use std::fmt::Write as _;
use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use causeway_api::http;
use causeway_api::{DirStats, StageStats, Stats, Status};
use causeway_engine::latency::{StageHistograms, DEFAULT_SAMPLE_EVERY};

/// Largest request head (request line and headers) accepted.
const MAX_REQUEST_HEAD: usize = 8 * 1024;

/// How long a client has to send its request and to read the answer.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);

/// The content type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The IKE states a tunnel can be in; `causeway_tunnel_ike_state` has one sample per state.
const IKE_STATES: [&str; 3] = ["Connecting", "Connected", "NotConnected"];

/// Provides the numbers; implemented by the daemon.
pub trait Source: Send + Sync + 'static {
    /// The daemon's status and counters now.
    fn snapshot(&self) -> (Status, Stats);
}

/// The listening socket and its thread; dropping it stops the server.
pub struct MetricsServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl MetricsServer {
    /// Binds `addr` and serves `GET /metrics` on a background thread.
    pub fn start(addr: SocketAddr, source: Arc<dyn Source>) -> Result<MetricsServer> {
        let listener = TcpListener::bind(addr)
            .with_context(|| format!("binding the metrics listener {addr} ([metrics] listen)"))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let thread = std::thread::Builder::new()
            .name("metrics".into())
            .spawn(move || serve(listener, source, stop2))?;
        Ok(MetricsServer {
            addr,
            stop,
            thread: Some(thread),
        })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(listener: TcpListener, source: Arc<dyn Source>, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, _)) => {
                let s = source.clone();
                // One short-lived thread per client, so a slow client cannot block others.
                let _ = std::thread::Builder::new()
                    .name("metrics-client".into())
                    .spawn(move || {
                        if let Err(e) = client(stream, &*s) {
                            tracing::debug!(error = %e, "metrics client");
                        }
                    });
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => {
                tracing::warn!(error = %e, "metrics accept failed");
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
}

/// What to answer: status line, extra headers, body, and whether to send the body (not for
/// HEAD).
struct Reply {
    status: u16,
    headers: &'static str,
    content_type: &'static str,
    body: String,
}

fn plain(status: u16, headers: &'static str, body: &str) -> Reply {
    Reply {
        status,
        headers,
        content_type: "text/plain; charset=utf-8",
        body: format!("{body}\n"),
    }
}

fn route(head: Option<&[u8]>, source: &dyn Source) -> (Reply, bool) {
    let Some(head) = head else {
        return (plain(431, "", "request head too large"), true);
    };
    let head = http::Head::parse(head);
    let (method, path) = match head.request_line() {
        Ok(mp) => mp,
        Err(e) => return (plain(400, "", e), true),
    };
    if path != "/metrics" {
        return (plain(404, "", "not found: try /metrics"), true);
    }
    let with_body = match method {
        "GET" => true,
        "HEAD" => false,
        _ => {
            return (
                plain(405, "Allow: GET, HEAD\r\n", "method not allowed"),
                true,
            )
        }
    };
    let (status, stats) = source.snapshot();
    (
        Reply {
            status: 200,
            headers: "",
            content_type: CONTENT_TYPE,
            body: render(&status, &stats),
        },
        with_body,
    )
}

fn client(mut stream: TcpStream, source: &dyn Source) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(CLIENT_TIMEOUT))?;
    stream.set_write_timeout(Some(CLIENT_TIMEOUT))?;
    let head = http::read_head(&mut stream, MAX_REQUEST_HEAD)?;
    let (reply, with_body) = route(head.as_ref().map(|h| &h.head[..]), source);
    http::write_response(
        &mut stream,
        reply.status,
        reply.content_type,
        reply.headers,
        reply.body.as_bytes(),
        with_body,
    )?;
    let _ = stream.shutdown(std::net::Shutdown::Write);
    // Lingering close: read what the client may still send (briefly, and a bounded amount), so
    // that closing with unread data does not reset the connection before it read the answer.
    stream.set_read_timeout(Some(Duration::from_secs(1)))?;
    let _ = std::io::copy(&mut (&stream).take(64 * 1024), &mut std::io::sink());
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The exposition format
// ---------------------------------------------------------------------------------------------

/// A label value escaped for the text format: backslash, double quote and line feed.
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// One metric family: its samples are written together, after its HELP and TYPE lines.
struct Family {
    name: &'static str,
    kind: &'static str,
    help: &'static str,
    samples: Vec<(String, u64)>,
}

impl Family {
    fn new(name: &'static str, kind: &'static str, help: &'static str) -> Family {
        Family {
            name,
            kind,
            help,
            samples: Vec::new(),
        }
    }

    fn add(&mut self, labels: &[(&str, &str)], value: u64) {
        let labels = labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
            .collect::<Vec<_>>()
            .join(",");
        self.samples.push((labels, value));
    }

    fn write(&self, out: &mut String) {
        let _ = writeln!(out, "# HELP {} {}", self.name, self.help);
        let _ = writeln!(out, "# TYPE {} {}", self.name, self.kind);
        for (labels, value) in &self.samples {
            if labels.is_empty() {
                let _ = writeln!(out, "{} {value}", self.name);
            } else {
                let _ = writeln!(out, "{}{{{labels}}} {value}", self.name);
            }
        }
    }
}

/// The per-direction counters, one family per field.
struct Counters {
    packets: Family,
    bytes: Family,
    super_packets: Family,
    icmp_errors_sent: Family,
    icmp_rate_limited: Family,
    echo_replies: Family,
    drops: Family,
}

impl Counters {
    fn new() -> Counters {
        Counters {
            packets: Family::new(
                "causeway_packets_total",
                "counter",
                "Wire packets admitted for forwarding (a super-packet counts as its segments; for a tunnel, inner packets).",
            ),
            bytes: Family::new(
                "causeway_bytes_total",
                "counter",
                "Wire bytes (IP) of the packets admitted for forwarding (for a tunnel, inner bytes).",
            ),
            super_packets: Family::new(
                "causeway_super_packets_total",
                "counter",
                "Forwarded TUN reads that were super-packets carrying more than one segment.",
            ),
            icmp_errors_sent: Family::new(
                "causeway_icmp_errors_sent_total",
                "counter",
                "ICMP errors the gateway sent about packets of this direction.",
            ),
            icmp_rate_limited: Family::new(
                "causeway_icmp_rate_limited_total",
                "counter",
                "ICMP errors not sent because of the ICMP rate limit.",
            ),
            echo_replies: Family::new(
                "causeway_echo_replies_total",
                "counter",
                "Echo replies the gateway sent for pings of its own address.",
            ),
            drops: Family::new(
                "causeway_drops_total",
                "counter",
                "Dropped packets by reason (every reason present, zeros included).",
            ),
        }
    }

    fn add(&mut self, level: &str, gateway: &str, connection: &str, direction: &str, d: &DirStats) {
        let l = [
            ("level", level),
            ("gateway", gateway),
            ("connection", connection),
            ("direction", direction),
        ];
        self.packets.add(&l, d.packets);
        self.bytes.add(&l, d.bytes);
        self.super_packets.add(&l, d.super_packets);
        self.icmp_errors_sent.add(&l, d.icmp_errors_sent);
        self.icmp_rate_limited.add(&l, d.icmp_rate_limited);
        self.echo_replies.add(&l, d.echo_replies);
        for (reason, n) in &d.drops {
            let [a, b, c, e] = l;
            self.drops.add(&[a, b, c, e, ("reason", reason)], *n);
        }
    }

    fn write(&self, out: &mut String) {
        for f in [
            &self.packets,
            &self.bytes,
            &self.super_packets,
            &self.icmp_errors_sent,
            &self.icmp_rate_limited,
            &self.echo_replies,
            &self.drops,
        ] {
            f.write(out);
        }
    }
}

/// The workers' stage histograms as the `stages` of `causeway stats`: every stage, in
/// [`Stage::ALL`](causeway_engine::latency::Stage::ALL) order, zeros included.
pub fn stage_stats(h: &StageHistograms) -> Vec<StageStats> {
    h.snapshot()
        .into_iter()
        .map(|(stage, s)| StageStats {
            stage: stage.as_str().to_string(),
            bounds_ns: s.bounds_ns,
            counts: s.counts,
            sum_ns: s.sum_ns,
            count: s.count,
        })
        .collect()
}

/// Nanoseconds as decimal seconds, exactly (no float rounding): 250 is `0.00000025`, 5 ms
/// `0.005`, 2 s `2`.
fn seconds(ns: u64) -> String {
    let (secs, frac) = (ns / 1_000_000_000, ns % 1_000_000_000);
    if frac == 0 {
        return secs.to_string();
    }
    let frac = format!("{frac:09}");
    format!("{secs}.{}", frac.trim_end_matches('0'))
}

/// The histogram family of the per-stage latencies.
const STAGE_DURATION: &str = "causeway_stage_duration_seconds";

/// `causeway_stage_duration_seconds`: one histogram per stage (label `stage`), buckets
/// cumulative and in seconds. The `+Inf` bucket and `_count` are the total of the counts, so
/// they agree whatever the input.
fn write_stages(out: &mut String, stages: &[StageStats]) {
    let _ = writeln!(
        out,
        "# HELP {STAGE_DURATION} Time a packet spends in each processing stage (egress_pipeline, ingress_pipeline, tun_write, tunnel_seal, tunnel_open, shaper_hold); sampled: 1 packet in {DEFAULT_SAMPLE_EVERY} per worker, so _count counts samples, not packets."
    );
    let _ = writeln!(out, "# TYPE {STAGE_DURATION} histogram");
    for s in stages {
        let stage = escape(&s.stage);
        let mut cumulative = 0u64;
        for (bound, n) in s.bounds_ns.iter().zip(&s.counts) {
            cumulative = cumulative.saturating_add(*n);
            let _ = writeln!(
                out,
                "{STAGE_DURATION}_bucket{{stage=\"{stage}\",le=\"{}\"}} {cumulative}",
                seconds(*bound)
            );
        }
        let total = s.counts.iter().fold(0u64, |a, &n| a.saturating_add(n));
        let _ = writeln!(
            out,
            "{STAGE_DURATION}_bucket{{stage=\"{stage}\",le=\"+Inf\"}} {total}"
        );
        let _ = writeln!(
            out,
            "{STAGE_DURATION}_sum{{stage=\"{stage}\"}} {}",
            seconds(s.sum_ns)
        );
        let _ = writeln!(out, "{STAGE_DURATION}_count{{stage=\"{stage}\"}} {total}");
    }
}

/// The whole exposition: the counters of `stats` (levels `vnet`, `gateway`, `connection`),
/// gauges from `status` and the stage histograms of `stats`.
pub fn render(status: &Status, stats: &Stats) -> String {
    let mut c = Counters::new();
    c.add("vnet", "", "", "egress", &stats.vnet.egress);
    for g in &stats.gateways {
        c.add("gateway", &g.name, "", "egress", &g.egress);
        c.add("gateway", &g.name, "", "ingress", &g.ingress);
        for conn in &g.connections {
            c.add("connection", &g.name, &conn.name, "egress", &conn.egress);
            c.add("connection", &g.name, &conn.name, "ingress", &conn.ingress);
        }
    }

    let mut bps = Family::new(
        "causeway_gateway_bits_per_second_limit",
        "gauge",
        "The SKU's bits per second, enforced in each direction.",
    );
    let mut pps = Family::new(
        "causeway_gateway_packets_per_second_limit",
        "gauge",
        "The SKU's packets per second, enforced in each direction (absent when the SKU publishes none).",
    );
    let mut up = Family::new(
        "causeway_connection_up",
        "gauge",
        "1 while the gateway routes over the connection, else 0.",
    );
    let mut out_seq = Family::new(
        "causeway_tunnel_esp_out_seq",
        "gauge",
        "The last ESP sequence number sealed on the tunnel's outbound SA.",
    );
    let mut in_seq = Family::new(
        "causeway_tunnel_esp_in_seq",
        "gauge",
        "The highest ESP sequence number received and authenticated on the tunnel's inbound SA.",
    );
    let mut ike = Family::new(
        "causeway_tunnel_ike_state",
        "gauge",
        "1 for the IKE state the tunnel is in, 0 for the others (IKE-keyed tunnels only).",
    );
    for g in &status.gateways {
        let gl = [("gateway", g.name.as_str())];
        bps.add(&gl, g.bits_per_sec);
        if let Some(p) = g.packets_per_sec {
            pps.add(&gl, p);
        }
        for conn in &g.connections {
            let cl = [
                ("gateway", g.name.as_str()),
                ("connection", conn.name.as_str()),
            ];
            up.add(&cl, u64::from(conn.routed));
            let Some(t) = &conn.tunnel else { continue };
            // The sequence numbers of `stats`, which the tunnel's `status` repeats.
            out_seq.add(&cl, t.esp.out_seq);
            in_seq.add(&cl, t.esp.in_seq);
            if let Some(i) = &t.ike {
                let mut states: Vec<&str> = IKE_STATES.to_vec();
                if !states.contains(&i.state.as_str()) {
                    states.push(&i.state);
                }
                for s in states {
                    let [a, b] = cl;
                    ike.add(&[a, b, ("state", s)], u64::from(s == i.state));
                }
            }
        }
    }
    let mut flows = Family::new(
        "causeway_gateway_flows",
        "gauge",
        "Flows held in the gateway's flow table (idle ones the sweep has not reached included).",
    );
    let mut flows_limit = Family::new(
        "causeway_gateway_flows_limit",
        "gauge",
        "The gateway's limit of concurrent flows (the SKU's, or the config's lower max_flows).",
    );
    let mut new_flows_limit = Family::new(
        "causeway_gateway_new_flows_per_second_limit",
        "gauge",
        "The gateway's limit of new flows per second (absent when not limited).",
    );
    let mut created = Family::new(
        "causeway_gateway_flows_created_total",
        "counter",
        "Flows the gateway's flow table created.",
    );
    let mut expired = Family::new(
        "causeway_gateway_flows_expired_total",
        "counter",
        "Flows removed from the gateway's flow table as idle.",
    );
    for g in &stats.gateways {
        let Some(f) = &g.flows else { continue };
        let gl = [("gateway", g.name.as_str())];
        flows.add(&gl, f.active);
        flows_limit.add(&gl, f.max_flows);
        if let Some(r) = f.new_flows_per_sec {
            new_flows_limit.add(&gl, r);
        }
        created.add(&gl, f.created);
        expired.add(&gl, f.expired);
    }
    let mut uptime = Family::new(
        "causeway_uptime_seconds",
        "gauge",
        "Seconds since the daemon started.",
    );
    uptime.add(&[], stats.uptime_secs);

    let mut ike_datagrams = Family::new(
        "causeway_ike_datagrams_total",
        "counter",
        "IKE datagrams received (UDP 500, and UDP 4500 with the non-ESP marker).",
    );
    let mut ike_cookies = Family::new(
        "causeway_ike_cookies_sent_total",
        "counter",
        "IKE_SA_INIT requests answered with a COOKIE instead of creating state.",
    );
    let mut ike_half_open = Family::new(
        "causeway_ike_half_open",
        "gauge",
        "Half-open responder IKE SAs (IKE_SA_INIT answered, IKE_AUTH not yet).",
    );
    let mut ike_drops = Family::new(
        "causeway_ike_drops_total",
        "counter",
        "IKE datagrams dropped, by reason.",
    );
    if let Some(i) = &stats.ike {
        ike_datagrams.add(&[], i.datagrams);
        ike_cookies.add(&[], i.cookies_sent);
        ike_half_open.add(&[], i.half_open);
        for (reason, n) in &i.drops {
            ike_drops.add(&[("reason", reason.as_str())], *n);
        }
    }

    let mut out = String::with_capacity(16 * 1024);
    c.write(&mut out);
    for f in [
        &bps,
        &pps,
        &up,
        &out_seq,
        &in_seq,
        &ike,
        &flows,
        &flows_limit,
        &new_flows_limit,
        &created,
        &expired,
        &uptime,
    ] {
        f.write(&mut out);
    }
    if stats.ike.is_some() {
        for f in [&ike_datagrams, &ike_cookies, &ike_half_open, &ike_drops] {
            f.write(&mut out);
        }
    }
    write_stages(&mut out, &stats.stages);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use causeway_api::{
        ConnectionStats, ConnectionStatus, EspStats, GatewayStats, GatewayStatus, IkeStatus,
        InterfaceStatus, TunnelStatus, VnetStats, VnetStatus,
    };
    use causeway_engine::latency::Stage;
    use std::collections::BTreeMap;
    use std::io::Write;

    fn dir(packets: u64) -> DirStats {
        let mut drops = BTreeMap::new();
        drops.insert("no_route".to_string(), 2);
        drops.insert("shaped_bps".to_string(), 0);
        DirStats {
            packets,
            bytes: packets * 84,
            drops,
            ..DirStats::default()
        }
    }

    fn iface() -> InterfaceStatus {
        InterfaceStatus {
            name: "cw-vnet0".into(),
            netns: None,
            up: true,
            running: true,
            mtu: 1500,
            offload: true,
        }
    }

    fn sample() -> (Status, Stats) {
        let tunnel = TunnelStatus {
            local: "192.0.2.1:4500".into(),
            peer: "192.0.2.2:4500".into(),
            mtu: 1400,
            mss_clamp: Some(1350),
            keying: "ike".into(),
            esp: EspStats {
                out_seq: 7,
                in_seq: 5,
                ..EspStats::default()
            },
            ike: Some(IkeStatus {
                state: "Connected".into(),
                ..IkeStatus::default()
            }),
        };
        let status = Status {
            version: "0".into(),
            pid: 1,
            uptime_secs: 3,
            config: "x".into(),
            vnet: VnetStatus {
                name: "vnet1".into(),
                address_space: vec![],
                gateway_address: "10.1.255.4".into(),
                gateway_address_v6: None,
                interface: iface(),
            },
            gateways: vec![
                GatewayStatus {
                    name: "er-gw".into(),
                    gateway_type: "ExpressRoute".into(),
                    sku: "Standard".into(),
                    bits_per_sec: 1_000_000_000,
                    packets_per_sec: Some(100_000),
                    max_connections: 4,
                    shaping: true,
                    connections: vec![ConnectionStatus {
                        name: "c\"1\\\n".into(),
                        connection_type: "ExpressRoute".into(),
                        state: "NotConnected".into(),
                        routed: false,
                        prefixes: vec![],
                        routing_weight: 0,
                        interface: Some(iface()),
                        tunnel: None,
                    }],
                },
                GatewayStatus {
                    name: "vpn-gw".into(),
                    gateway_type: "Vpn".into(),
                    sku: "VpnGw1".into(),
                    bits_per_sec: 650_000_000,
                    packets_per_sec: None,
                    max_connections: 30,
                    shaping: true,
                    connections: vec![ConnectionStatus {
                        name: "s2s-1".into(),
                        connection_type: "IPsec".into(),
                        state: "Connected".into(),
                        routed: true,
                        prefixes: vec![],
                        routing_weight: 0,
                        interface: None,
                        tunnel: Some(tunnel.clone()),
                    }],
                },
            ],
        };
        let stats = Stats {
            uptime_secs: 3,
            vnet: VnetStats {
                name: "vnet1".into(),
                egress: dir(0),
            },
            gateways: vec![
                GatewayStats {
                    name: "er-gw".into(),
                    gateway_type: "ExpressRoute".into(),
                    sku: "Standard".into(),
                    egress: dir(5),
                    ingress: dir(4),
                    connections: vec![ConnectionStats {
                        name: "c\"1\\\n".into(),
                        egress: dir(5),
                        ingress: dir(4),
                        esp: None,
                    }],
                    flows: Some(causeway_api::FlowCounts {
                        active: 12,
                        max_flows: 20,
                        new_flows_per_sec: Some(7000),
                        created: 30,
                        expired: 18,
                        refused_full: 3,
                        refused_rate: 1,
                    }),
                },
                GatewayStats {
                    name: "vpn-gw".into(),
                    gateway_type: "Vpn".into(),
                    sku: "VpnGw1".into(),
                    egress: dir(7),
                    ingress: dir(5),
                    connections: vec![ConnectionStats {
                        name: "s2s-1".into(),
                        egress: dir(7),
                        ingress: dir(5),
                        esp: Some(tunnel.esp),
                    }],
                    flows: None,
                },
            ],
            stages: stages(),
            ike: Some(causeway_api::IkeStats {
                datagrams: 12,
                cookies_sent: 3,
                half_open: 1,
                drops: [
                    ("malformed".to_string(), 2),
                    ("unknown_peer".to_string(), 1),
                ]
                .into_iter()
                .collect(),
            }),
        };
        (status, stats)
    }

    /// Stage histograms: egress_pipeline 80 ns, 100 ns (on a bound), 101 ns, 30 µs and 20 ms
    /// (over the last bound); the others empty.
    fn stages() -> Vec<StageStats> {
        let h = StageHistograms::default();
        for ns in [80, 100, 101, 30_000, 20_000_000] {
            h.record(Stage::EgressPipeline, ns);
        }
        stage_stats(&h)
    }

    /// The checks a scraper would make: every sample belongs to the family of the last `# TYPE`
    /// line (for a histogram, `_bucket`, `_sum` and `_count` samples), each family once, values
    /// and `le` labels are floats, and each histogram's buckets are cumulative (never
    /// decreasing, `le` ascending) and end with `le="+Inf"` equal to its `_count`.
    fn check_exposition(text: &str) {
        let mut seen = Vec::new();
        let mut current = "";
        let mut kind = "";
        // The histogram series being read: its labels without `le`, last `le` and count.
        let mut series: Option<(String, f64, u64)> = None;
        let mut inf: Option<(String, u64)> = None;
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, k) = rest.split_once(' ').unwrap();
                assert!(!seen.contains(&name.to_string()), "{name} twice");
                seen.push(name.to_string());
                current = name;
                kind = k;
                continue;
            }
            if line.starts_with('#') {
                continue;
            }
            let name = line.split(['{', ' ']).next().unwrap();
            let value = line.rsplit(' ').next().unwrap();
            assert!(value.parse::<f64>().is_ok(), "{line}");
            if kind != "histogram" {
                assert_eq!(name, current, "{line}");
                continue;
            }
            let suffix = name
                .strip_prefix(current)
                .unwrap_or_else(|| panic!("{line} not in {current}"));
            let labels = line[name.len()..].rsplit_once(' ').unwrap().0;
            match suffix {
                "_bucket" => {
                    let (rest, le) = labels.rsplit_once(",le=\"").unwrap();
                    let le = le.strip_suffix("\"}").unwrap();
                    let le_f = if le == "+Inf" {
                        f64::INFINITY
                    } else {
                        le.parse::<f64>().unwrap_or_else(|_| panic!("le {le}"))
                    };
                    let n: u64 = value.parse().unwrap();
                    if let Some((s, last_le, last_n)) = &series {
                        if s == rest && last_le.is_finite() {
                            assert!(le_f > *last_le, "le not ascending: {line}");
                            assert!(n >= *last_n, "not cumulative: {line}");
                        }
                    }
                    if le == "+Inf" {
                        inf = Some((format!("{rest}}}"), n));
                    }
                    series = Some((rest.to_string(), le_f, n));
                }
                "_sum" => {}
                "_count" => {
                    let (s, n) = inf.take().expect("_count without a +Inf bucket");
                    assert_eq!(s, labels, "{line}");
                    assert_eq!(value.parse::<u64>().unwrap(), n, "+Inf != _count: {line}");
                }
                _ => panic!("{line} not in {current}"),
            }
        }
    }

    #[test]
    fn renders_counters_gauges_and_escapes_labels() {
        let (status, stats) = sample();
        let text = render(&status, &stats);
        for line in [
            "causeway_packets_total{level=\"gateway\",gateway=\"er-gw\",connection=\"\",direction=\"egress\"} 5",
            "causeway_bytes_total{level=\"gateway\",gateway=\"er-gw\",connection=\"\",direction=\"ingress\"} 336",
            "causeway_packets_total{level=\"vnet\",gateway=\"\",connection=\"\",direction=\"egress\"} 0",
            "causeway_drops_total{level=\"vnet\",gateway=\"\",connection=\"\",direction=\"egress\",reason=\"no_route\"} 2",
            "causeway_drops_total{level=\"connection\",gateway=\"vpn-gw\",connection=\"s2s-1\",direction=\"ingress\",reason=\"shaped_bps\"} 0",
            "causeway_packets_total{level=\"connection\",gateway=\"er-gw\",connection=\"c\\\"1\\\\\\n\",direction=\"egress\"} 5",
            "causeway_gateway_bits_per_second_limit{gateway=\"vpn-gw\"} 650000000",
            "causeway_gateway_packets_per_second_limit{gateway=\"er-gw\"} 100000",
            "causeway_gateway_flows{gateway=\"er-gw\"} 12",
            "causeway_gateway_flows_limit{gateway=\"er-gw\"} 20",
            "causeway_gateway_new_flows_per_second_limit{gateway=\"er-gw\"} 7000",
            "causeway_gateway_flows_created_total{gateway=\"er-gw\"} 30",
            "causeway_gateway_flows_expired_total{gateway=\"er-gw\"} 18",
            "causeway_connection_up{gateway=\"er-gw\",connection=\"c\\\"1\\\\\\n\"} 0",
            "causeway_connection_up{gateway=\"vpn-gw\",connection=\"s2s-1\"} 1",
            "causeway_tunnel_esp_out_seq{gateway=\"vpn-gw\",connection=\"s2s-1\"} 7",
            "causeway_tunnel_esp_in_seq{gateway=\"vpn-gw\",connection=\"s2s-1\"} 5",
            "causeway_tunnel_ike_state{gateway=\"vpn-gw\",connection=\"s2s-1\",state=\"Connected\"} 1",
            "causeway_tunnel_ike_state{gateway=\"vpn-gw\",connection=\"s2s-1\",state=\"Connecting\"} 0",
            "causeway_uptime_seconds 3",
            "causeway_ike_datagrams_total 12",
            "causeway_ike_cookies_sent_total 3",
            "causeway_ike_half_open 1",
            "causeway_ike_drops_total{reason=\"malformed\"} 2",
            "causeway_ike_drops_total{reason=\"unknown_peer\"} 1",
            "# TYPE causeway_drops_total counter",
            "# TYPE causeway_uptime_seconds gauge",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in:\n{text}");
        }
        // No packets/s limit for a SKU without one.
        assert!(!text.contains("causeway_gateway_packets_per_second_limit{gateway=\"vpn-gw\"}"));
        // Each family's samples follow its own HELP and TYPE lines, once.
        check_exposition(&text);
    }

    #[test]
    fn renders_stage_histograms_cumulative_in_seconds() {
        let (status, stats) = sample();
        let text = render(&status, &stats);
        let b = |le: &str, n: u64| {
            format!("causeway_stage_duration_seconds_bucket{{stage=\"egress_pipeline\",le=\"{le}\"}} {n}")
        };
        for line in [
            "# TYPE causeway_stage_duration_seconds histogram".to_string(),
            b("0.0000001", 2),
            b("0.00000025", 3),
            b("0.000025", 3),
            b("0.00005", 4),
            b("0.005", 4),
            b("0.01", 4),
            b("+Inf", 5),
            "causeway_stage_duration_seconds_sum{stage=\"egress_pipeline\"} 0.020030281".into(),
            "causeway_stage_duration_seconds_count{stage=\"egress_pipeline\"} 5".into(),
            "causeway_stage_duration_seconds_bucket{stage=\"shaper_hold\",le=\"+Inf\"} 0".into(),
            "causeway_stage_duration_seconds_sum{stage=\"tunnel_open\"} 0".into(),
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in:\n{text}"
            );
        }
        assert_eq!(
            text.matches("# HELP causeway_stage_duration_seconds ")
                .count(),
            1
        );
        assert!(text.contains("sampled: 1 packet in 64"));
        // Every stage, each with 16 finite buckets and +Inf.
        for s in Stage::ALL {
            let prefix = format!(
                "causeway_stage_duration_seconds_bucket{{stage=\"{}\",",
                s.as_str()
            );
            assert_eq!(text.lines().filter(|l| l.starts_with(&prefix)).count(), 17);
        }
        check_exposition(&text);
        // An older daemon's stats (no stages): the family is there, empty, and still valid.
        let mut old = stats.clone();
        old.stages.clear();
        let text = render(&status, &old);
        assert!(!text.contains("causeway_stage_duration_seconds_bucket"));
        check_exposition(&text);
    }

    #[test]
    fn seconds_are_exact_decimals() {
        for (ns, s) in [
            (0, "0"),
            (100, "0.0000001"),
            (250, "0.00000025"),
            (1_000_000, "0.001"),
            (2_500_000, "0.0025"),
            (1_000_000_000, "1"),
            (12_000_000_001, "12.000000001"),
        ] {
            assert_eq!(seconds(ns), s);
            assert_eq!(s.parse::<f64>().unwrap(), ns as f64 / 1e9);
        }
    }

    struct Fixed;

    impl Source for Fixed {
        fn snapshot(&self) -> (Status, Stats) {
            sample()
        }
    }

    fn get(addr: SocketAddr, request: &str) -> String {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(request.as_bytes()).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    #[test]
    fn serves_get_metrics_and_refuses_the_rest() {
        let server = MetricsServer::start("127.0.0.1:0".parse().unwrap(), Arc::new(Fixed)).unwrap();
        let addr = server.local_addr();
        let r = get(addr, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
        assert!(
            r.contains(&format!("Content-Type: {CONTENT_TYPE}\r\n")),
            "{r}"
        );
        assert!(r.contains("Connection: close\r\n"), "{r}");
        let (head, body) = r.split_once("\r\n\r\n").unwrap();
        assert!(
            head.contains(&format!("Content-Length: {}\r\n", body.len())),
            "{r}"
        );
        assert!(body.contains("causeway_uptime_seconds 3\n"), "{body}");
        let r = get(addr, "HEAD /metrics HTTP/1.0\r\n\r\n");
        assert!(
            r.starts_with("HTTP/1.1 200 OK\r\n") && r.ends_with("\r\n\r\n"),
            "{r}"
        );
        assert!(get(addr, "GET / HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404 "));
        let r = get(addr, "POST /metrics HTTP/1.1\r\n\r\n");
        assert!(
            r.starts_with("HTTP/1.1 405 ") && r.contains("Allow: GET, HEAD\r\n"),
            "{r}"
        );
        assert!(get(addr, "nonsense\r\n\r\n").starts_with("HTTP/1.1 400 "));
        let big = format!("GET /metrics HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(10_000));
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let _ = s.write_all(big.as_bytes());
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        assert!(out.starts_with("HTTP/1.1 431 "), "{out}");
        drop(server);
        assert!(TcpStream::connect(addr).is_err());
    }
}
