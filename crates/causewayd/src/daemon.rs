//! The daemon: starts the data plane, the control socket and the metrics endpoint from a
//! validated config, watches link state, answers `status` and `stats`, reloads its config on
//! SIGHUP (or `causeway reload`), and stops cleanly on SIGINT/SIGTERM.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use causeway_api::{
    ConnectionStats, ConnectionStatus, DirStats, EspStats, FlowCounts, FlowEntry, GatewayFlows,
    GatewayStats, GatewayStatus, IkeStatus, InterfaceStatus, ReloadResult, Request, Response,
    Stats, Status, TunnelStatus, VnetStats, VnetStatus, CAPTURE_DEFAULT_TIMEOUT_SECS,
    CAPTURE_MAX_COUNT, CAPTURE_MAX_TIMEOUT_SECS, FLOWS_DEFAULT_TOP, FLOWS_MAX_TOP,
    PROTOCOL_VERSION,
};
use causeway_engine::counters::DirCounters;
use causeway_engine::flow::{FlowInfo, FlowTable, TopScan};
use causeway_engine::pipeline::lock_flows;
use causeway_engine::shaper::BurstPolicy;
use causeway_engine::sku::Sku;
use causeway_sys::link::{self, LinkState};
use causeway_wire::ip::{PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP};

use crate::capture::CaptureDir;
use crate::config::{Config, ConnectionConfig, ConnectionKind, InterfaceConfig};
use crate::control::{ControlServer, Handler};
use crate::dataplane::{
    flow_limits, install_routes, plan, rates, readdress, update_flows, Dataplane, Plan, Shared,
};
use crate::metrics::MetricsServer;

/// How often circuit link state is checked (a circuit that goes down loses its routes).
const LINK_POLL: Duration = Duration::from_millis(500);
/// How often the re-creation of a deleted circuit TUN is retried while it fails.
const RECREATE_RETRY: Duration = Duration::from_secs(5);

struct State {
    /// The running config (a reload replaces it).
    config: RwLock<Arc<Config>>,
    /// The data plane; locked by a reload (one at a time) and at stop.
    dataplane: Mutex<Dataplane>,
    shared: Arc<Shared>,
    started: Instant,
    /// The current SKU of each gateway (config order): resizes change it.
    skus: Mutex<Vec<Sku>>,
}

fn dir_stats(c: &DirCounters) -> DirStats {
    DirStats {
        packets: c.packets.get(),
        bytes: c.bytes.get(),
        super_packets: c.super_packets.get(),
        icmp_errors_sent: c.icmp_errors_sent.get(),
        icmp_rate_limited: c.icmp_rate_limited.get(),
        echo_replies: c.echo_replies.get(),
        drops: c.drop_table().map(|(k, v)| (k.to_string(), v)).collect(),
    }
}

/// Slots of a flow table `causeway flows` examines per hold of its lock (some 20 to 40 µs).
const FLOWS_SCAN_CHUNK: usize = 4096;

fn flow_counts(t: &FlowTable) -> FlowCounts {
    let st = t.stats();
    FlowCounts {
        active: t.len() as u64,
        max_flows: t.max_flows() as u64,
        new_flows_per_sec: t.new_flows_per_sec(),
        created: st.created,
        expired: st.expired,
        refused_full: st.refused_full,
        refused_rate: st.refused_rate,
    }
}

fn protocol_name(proto: u8) -> String {
    match proto {
        PROTO_TCP => "tcp".into(),
        PROTO_UDP => "udp".into(),
        PROTO_ICMP => "icmp".into(),
        PROTO_ICMPV6 => "icmpv6".into(),
        p => p.to_string(),
    }
}

/// A flow for `causeway flows`, at `now_ns`; `conn_name` names a pipeline slot.
fn flow_entry(f: &FlowInfo, now_ns: u64, conn_name: impl Fn(usize) -> Option<String>) -> FlowEntry {
    let secs = |ns: u64| ns as f64 / 1e9;
    let (from, to) = (f.initiator, f.initiator.other());
    FlowEntry {
        protocol: protocol_name(f.key.proto()),
        src: f.key.ip(from).to_string(),
        dst: f.key.ip(to).to_string(),
        src_port: f.key.endpoint(from).1,
        dst_port: f.key.endpoint(to).1,
        state: f.state.as_str().into(),
        packets_orig: f.packets[0],
        packets_reply: f.packets[1],
        bytes_orig: f.bytes[0],
        bytes_reply: f.bytes[1],
        age_secs: secs(now_ns.saturating_sub(f.first_seen_ns)),
        idle_secs: secs(now_ns.saturating_sub(f.last_seen_ns)),
        expires_in_secs: secs(f.expires_at_ns.saturating_sub(now_ns)),
        connection: f.connection.and_then(conn_name),
    }
}

fn iface_status(i: &InterfaceConfig, offload: bool) -> InterfaceStatus {
    let st = link::link_state(i.netns.as_deref(), &i.name).unwrap_or(LinkState {
        exists: false,
        up: false,
        running: false,
        mtu: 0,
    });
    InterfaceStatus {
        name: i.name.clone(),
        netns: i.netns.clone(),
        up: st.exists && st.up,
        running: st.exists && st.running,
        mtu: st.mtu,
        offload,
    }
}

impl State {
    fn config(&self) -> Arc<Config> {
        self.config
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Now in the workers' clock (what the flow tables count in).
    fn now_ns(&self) -> u64 {
        u64::try_from(self.shared.clock.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// `flows`: the top flows by bytes of each gateway (or of `gateway`). The table is scanned
    /// in chunks of [`FLOWS_SCAN_CHUNK`] slots, its lock released between chunks, so the
    /// workers never wait for more than one chunk (tens of µs) whatever the table's size.
    fn flows(&self, gateway: Option<&str>, top: Option<u32>) -> Result<Vec<GatewayFlows>, String> {
        let c = self.config();
        let top = top.unwrap_or(FLOWS_DEFAULT_TOP);
        if top > FLOWS_MAX_TOP {
            return Err(format!("top must be at most {FLOWS_MAX_TOP}, got {top}"));
        }
        if let Some(name) = gateway {
            if !c.gateways.iter().any(|g| g.name == name) {
                let known: Vec<&str> = c.gateways.iter().map(|g| g.name.as_str()).collect();
                return Err(format!("no gateway `{name}` (known: {})", known.join(", ")));
            }
        }
        let t = self.shared.topology();
        let conn_name = |slot: usize| t.get(slot).map(|s| s.config.name.clone());
        Ok(c.gateways
            .iter()
            .enumerate()
            .filter(|(_, g)| gateway.is_none() || gateway == Some(g.name.as_str()))
            .map(|(gi, g)| {
                let now = self.now_ns();
                let flows = &self.shared.flows[gi];
                let mut scan = TopScan::new(top as usize);
                while !lock_flows(flows).scan_top(now, &mut scan, FLOWS_SCAN_CHUNK) {}
                let counts = flow_counts(&lock_flows(flows));
                let top = scan.finish();
                GatewayFlows {
                    gateway: g.name.clone(),
                    gateway_type: g.gateway_type.to_string(),
                    counts,
                    flows: top.iter().map(|f| flow_entry(f, now, conn_name)).collect(),
                }
            })
            .collect())
    }

    fn sku(&self, gi: usize) -> Sku {
        let skus = self.skus.lock().unwrap_or_else(|e| e.into_inner());
        skus.get(gi)
            .copied()
            .unwrap_or_else(|| self.config().gateways[gi].sku)
    }

    /// Re-reads the config file. Checked whole before anything changes: the file must be valid,
    /// the VNet, the gateways (but their SKUs), `[control]` and `[metrics]` unchanged (those
    /// need a restart), a changed SKU a legal resize of the running one, and the connections
    /// within each gateway's SKU; then what the connections need is made (TUNs, sockets,
    /// SAs), and only then applied.
    /// Brings back the circuit of `slot` after its TUN was deleted from outside (`ip link del`):
    /// the connection is removed and added again from the running config, as a reload that
    /// changed it would (a new TUN with its addresses and routes). Meanwhile its traffic took
    /// the next best route, as for a circuit that is down.
    fn recreate(&self, slot: usize) -> Result<(), String> {
        let mut dp = self.dataplane.lock().unwrap_or_else(|e| e.into_inner());
        let Some(config) = self.shared.topology().get(slot).map(|s| s.config.clone()) else {
            return Ok(());
        };
        let skus = self.skus.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let plan = Plan {
            remove: vec![slot],
            fresh: vec![config.name.clone()],
            add: vec![config],
            ..Plan::default()
        };
        let prepared = dp.prepare(plan, &skus).map_err(|e| format!("{e:#}"))?;
        let errors = dp.commit(prepared);
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("; "))
        }
    }

    fn reload(&self) -> Result<ReloadResult, String> {
        let mut dp = self.dataplane.lock().unwrap_or_else(|e| e.into_inner());
        let old = self.config();
        let new = crate::config::load(&old.path).map_err(|e| e.to_string())?;
        let restart = |what: &str| {
            Err(format!(
                "{}: {what} changed; that needs a restart of the daemon (the running config \
                 stays)",
                old.path.display()
            ))
        };
        if new.vnet != old.vnet {
            return restart("[vnet]");
        }
        if new.control != old.control {
            return restart("[control]");
        }
        if new.metrics != old.metrics {
            return restart("[metrics]");
        }
        let same_gateways = new.gateways.len() == old.gateways.len()
            && new.gateways.iter().zip(&old.gateways).all(|(n, o)| {
                n.name == o.name && n.gateway_type == o.gateway_type && n.shaping == o.shaping
            });
        if !same_gateways {
            return restart("the list of gateways (names, types, shaping)");
        }
        // SKUs: a change in the file is a resize of the running SKU (which `causeway gateway
        // resize` may have changed since); no change in the file keeps the running one.
        let mut skus = self.skus.lock().unwrap_or_else(|e| e.into_inner());
        let mut next = skus.clone();
        let mut resized = Vec::new();
        for (gi, (n, o)) in new.gateways.iter().zip(&old.gateways).enumerate() {
            if n.sku != o.sku && n.sku != skus[gi] {
                skus[gi].can_resize_to(n.sku).map_err(|e| {
                    format!(
                        "{}: gateway `{}`: sku {} -> {}: {e}",
                        old.path.display(),
                        n.name,
                        skus[gi],
                        n.sku
                    )
                })?;
                next[gi] = n.sku;
                resized.push(format!("{}: {} -> {}", n.name, skus[gi], n.sku));
            }
        }
        for (gi, g) in new.gateways.iter().enumerate() {
            let count = new
                .connections
                .iter()
                .filter(|c| c.gateway_index == gi)
                .count();
            let max = next[gi].limits().max_connections as usize;
            if count > max {
                return Err(format!(
                    "{}: gateway `{}` would have {count} connections and its SKU {} allows {max}",
                    old.path.display(),
                    g.name,
                    next[gi]
                ));
            }
        }
        let change = plan(&self.shared.topology(), &new.connections);
        let names = |slots: &[usize]| -> Vec<String> {
            let t = self.shared.topology();
            slots
                .iter()
                .filter_map(|&i| t.get(i).map(|s| s.config.name.clone()))
                .collect()
        };
        let mut result = ReloadResult {
            config: old.path.display().to_string(),
            added: change.add.iter().map(|c| c.name.clone()).collect(),
            removed: names(&change.remove),
            updated: change.update.iter().map(|(_, c)| c.name.clone()).collect(),
            unchanged: change.unchanged.clone(),
            resized,
            errors: Vec::new(),
        };
        let prepared = dp
            .prepare(change, &next)
            .map_err(|e| format!("{}: {e:#} (nothing changed)", old.path.display()))?;
        for (gi, sku) in next.iter().enumerate() {
            if *sku != skus[gi] {
                let r = rates(*sku, old.gateways[gi].shaping);
                self.shared.live[gi].set(r.bits_per_sec, r.packets_per_sec, r.tunnel_cap);
            }
        }
        // Flow limits follow the SKU and the config's lower limits; timeouts the config.
        for (gi, g) in new.gateways.iter().enumerate() {
            update_flows(
                &self.shared.flows[gi],
                self.now_ns(),
                flow_limits(g, next[gi]),
                g.flow_timeouts,
            );
        }
        *skus = next;
        result.errors = dp.commit(prepared);
        *self.config.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(new);
        drop(skus);
        tracing::info!(
            added = ?result.added,
            removed = ?result.removed,
            updated = ?result.updated,
            unchanged = result.unchanged.len(),
            resized = ?result.resized,
            errors = ?result.errors,
            "config reloaded"
        );
        Ok(result)
    }

    /// A live resize: the resize rules of DOMAIN.md (`Sku::can_resize_to`), the connection count
    /// of the new SKU, then the new limits published to the workers (applied at their next
    /// packet, the shapers keeping their tokens).
    fn resize(&self, gateway: &str, sku: &str, scale_units: Option<u32>) -> Result<(), String> {
        // One change at a time: a reload under way finishes first (its connection count and
        // tunnel caps are then those this resize checks against).
        let _dp = self.dataplane.lock().unwrap_or_else(|e| e.into_inner());
        let config = self.config();
        let Some(gi) = config.gateways.iter().position(|g| g.name == gateway) else {
            let known: Vec<&str> = config.gateways.iter().map(|g| g.name.as_str()).collect();
            return Err(format!(
                "no gateway `{gateway}` (known: {})",
                known.join(", ")
            ));
        };
        let g = &config.gateways[gi];
        let new = Sku::parse(g.gateway_type, sku, scale_units)?;
        let mut skus = self.skus.lock().unwrap_or_else(|e| e.into_inner());
        let current = skus[gi];
        current.can_resize_to(new)?;
        let limits = new.limits();
        let connections = config
            .connections
            .iter()
            .filter(|c| c.gateway_index == gi)
            .count();
        if connections > limits.max_connections as usize {
            return Err(format!(
                "gateway `{gateway}` has {connections} connections and {new} allows {}",
                limits.max_connections
            ));
        }
        let r = rates(new, g.shaping);
        self.shared.live[gi].set(r.bits_per_sec, r.packets_per_sec, r.tunnel_cap);
        update_flows(
            &self.shared.flows[gi],
            self.now_ns(),
            flow_limits(g, new),
            g.flow_timeouts,
        );
        skus[gi] = new;
        tracing::info!(gateway, from = %current, to = %new, "gateway resized in place");
        Ok(())
    }

    /// `capture`: validates the request, starts the capture and waits for its end (count reached
    /// or timeout); returns the number of packets written.
    fn capture(
        &self,
        connection: &str,
        direction: Option<&str>,
        count: u32,
        file: &str,
        timeout_secs: Option<u32>,
    ) -> Result<u64, String> {
        let Some(conn) = self.conn_index(connection) else {
            let t = self.shared.topology();
            let known: Vec<&str> = t.iter().map(|(_, s)| s.config.name.as_str()).collect();
            return Err(format!(
                "no connection `{connection}` (known: {})",
                known.join(", ")
            ));
        };
        let dir = match direction {
            None => None,
            Some("egress") => Some(CaptureDir::Egress),
            Some("ingress") => Some(CaptureDir::Ingress),
            Some(d) => return Err(format!("direction `{d}`: expected `ingress` or `egress`")),
        };
        if !(1..=CAPTURE_MAX_COUNT).contains(&count) {
            return Err(format!("count {count}: expected 1..={CAPTURE_MAX_COUNT}"));
        }
        let timeout = timeout_secs.unwrap_or(CAPTURE_DEFAULT_TIMEOUT_SECS);
        if !(1..=CAPTURE_MAX_TIMEOUT_SECS).contains(&timeout) {
            return Err(format!(
                "timeout {timeout} s: expected 1..={CAPTURE_MAX_TIMEOUT_SECS}"
            ));
        }
        let path = std::path::Path::new(file);
        if !path.is_absolute() {
            return Err(format!("file `{file}`: the path must be absolute"));
        }
        let capture = &self.shared.capture;
        let pending = capture.start(conn, dir, count, path)?;
        tracing::info!(
            connection,
            direction = direction.unwrap_or("both"),
            count,
            file,
            "capture started"
        );
        let n = capture.wait(pending, Duration::from_secs(timeout.into()))?;
        tracing::info!(connection, captured = n, file, "capture ended");
        Ok(n)
    }

    fn conn_index(&self, name: &str) -> Option<usize> {
        self.shared.topology().find(name).map(|(i, _)| i)
    }

    fn ike_status(&self, idx: usize) -> Option<IkeStatus> {
        let views = self.shared.ike.as_ref()?;
        let views = views.lock().unwrap_or_else(|e| e.into_inner());
        let (_, v) = views.iter().find(|(c, _)| *c == idx)?;
        Some(IkeStatus {
            state: v.state.clone(),
            ike_algorithms: v.ike_algorithms.clone(),
            esp_algorithms: v.esp_algorithms.clone(),
            ike_spis: v.ike_spis.clone(),
            ike_age_secs: v.ike_age_secs,
            child_age_secs: v.child_age_secs,
            last_error: v.last_error.clone(),
        })
    }

    fn esp_stats(&self, idx: usize) -> Option<EspStats> {
        let t = self.shared.topology();
        let e = t.get(idx)?.esp.clone()?;
        let cipher = e
            .cipher
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .to_string();
        Some(EspStats {
            cipher,
            esn: e.esn.load(Ordering::Relaxed),
            out_spi: e.out_spi.load(Ordering::Relaxed),
            in_spi: e.in_spi.load(Ordering::Relaxed),
            out_seq: e.out_seq.load(Ordering::Relaxed),
            in_seq: e.in_seq.load(Ordering::Relaxed),
        })
    }

    fn connection_status(&self, conn: &ConnectionConfig) -> ConnectionStatus {
        let idx = self.conn_index(&conn.name);
        // Routed: the data plane routes over it (the link watcher has not withdrawn its routes).
        let routed = idx
            .and_then(|i| self.shared.topology().get(i).map(|s| s.conn.up.clone()))
            .is_some_and(|up| up.load(Ordering::Relaxed));
        let (connection_type, interface, tunnel, connected) = match &conn.kind {
            ConnectionKind::ExpressRoute { interface } => {
                let iface = iface_status(interface, self.shared.vnet_offload);
                let connected = iface.up && iface.running && routed;
                ("ExpressRoute", Some(iface), None, (connected, None))
            }
            ConnectionKind::IPsec(ipsec) => {
                let esp = idx.and_then(|i| self.esp_stats(i)).unwrap_or_default();
                let ike = idx.and_then(|i| self.ike_status(i));
                // Manually keyed SAs are installed at start: the tunnel carries traffic as long
                // as it is routed. An IKE-keyed one is connected once IKE has an SA up (and
                // connecting until the IKE thread has shown it, just after a reload added it).
                let keyed_by_ike = ipsec.keying.ike().is_some();
                let connected = routed
                    && (!keyed_by_ike || ike.as_ref().is_some_and(|s| s.state == "Connected"));
                let state = match &ike {
                    Some(s) => Some(s.state.clone()),
                    None if keyed_by_ike => Some("Connecting".to_string()),
                    None => None,
                };
                let tunnel = TunnelStatus {
                    local: SocketAddr::new(ipsec.local_address, ipsec.local_port).to_string(),
                    peer: SocketAddr::new(ipsec.peer_address, ipsec.peer_port).to_string(),
                    mtu: ipsec.mtu,
                    mss_clamp: ipsec.mss_clamp,
                    keying: ipsec.keying.name().into(),
                    esp,
                    ike,
                };
                ("IPsec", None, Some(tunnel), (connected, state))
            }
        };
        let (connected, ike_state) = connected;
        ConnectionStatus {
            name: conn.name.clone(),
            connection_type: connection_type.into(),
            // IKE's own word (Connecting while it negotiates), else the link's.
            state: ike_state.unwrap_or_else(|| {
                if connected {
                    "Connected"
                } else {
                    "NotConnected"
                }
                .into()
            }),
            routed,
            prefixes: conn.prefixes.iter().map(|p| p.to_string()).collect(),
            routing_weight: conn.routing_weight,
            interface,
            tunnel,
        }
    }

    fn status(&self) -> Status {
        let c = &*self.config();
        let vnet = VnetStatus {
            name: c.vnet.name.clone(),
            address_space: c.vnet.address_space.iter().map(|p| p.to_string()).collect(),
            gateway_address: c.vnet.gateway_address_v4().to_string(),
            gateway_address_v6: c.vnet.gateway_address_v6().map(|a| a.to_string()),
            interface: iface_status(&c.vnet.interface, self.shared.vnet_offload),
        };
        let gateways = c
            .gateways
            .iter()
            .enumerate()
            .map(|(gi, g)| {
                let sku = self.sku(gi);
                let limits = sku.limits();
                let connections = c
                    .connections
                    .iter()
                    .filter(|conn| conn.gateway_index == gi)
                    .map(|conn| self.connection_status(conn))
                    .collect();
                GatewayStatus {
                    name: g.name.clone(),
                    gateway_type: g.gateway_type.to_string(),
                    sku: sku.to_string(),
                    bits_per_sec: limits.bits_per_sec,
                    packets_per_sec: limits.packets_per_sec,
                    max_connections: limits.max_connections,
                    shaping: g.shaping,
                    connections,
                }
            })
            .collect();
        Status {
            version: env!("CARGO_PKG_VERSION").into(),
            pid: std::process::id(),
            uptime_secs: self.started.elapsed().as_secs(),
            config: c.path.display().to_string(),
            vnet,
            gateways,
        }
    }

    fn stats(&self) -> Stats {
        let c = &*self.config();
        let t = self.shared.topology();
        let gateways = c
            .gateways
            .iter()
            .enumerate()
            .map(|(gi, g)| {
                // A copy of the counts, the lock released at once (not held while the rest
                // of the gateway's stats are built).
                let flows = flow_counts(&lock_flows(&self.shared.flows[gi]));
                GatewayStats {
                    name: g.name.clone(),
                    gateway_type: g.gateway_type.to_string(),
                    sku: self.sku(gi).to_string(),
                    flows: Some(flows),
                    egress: dir_stats(&self.shared.gateways[gi].egress),
                    ingress: dir_stats(&self.shared.gateways[gi].ingress),
                    // In config order, as `status` lists them.
                    connections: c
                        .connections
                        .iter()
                        .filter(|cc| cc.gateway_index == gi)
                        .filter_map(|cc| t.find(&cc.name))
                        .map(|(i, s)| ConnectionStats {
                            name: s.conn.name.clone(),
                            egress: dir_stats(&s.conn.counters.egress),
                            ingress: dir_stats(&s.conn.counters.ingress),
                            esp: self.esp_stats(i),
                        })
                        .collect(),
                }
            })
            .collect();
        Stats {
            uptime_secs: self.started.elapsed().as_secs(),
            vnet: VnetStats {
                name: c.vnet.name.clone(),
                egress: dir_stats(&self.shared.vnet.egress),
            },
            gateways,
            stages: crate::metrics::stage_stats(&self.shared.stages),
            ike: self.shared.ike_counters.as_ref().map(|c| c.snapshot()),
        }
    }
}

impl Handler for State {
    fn handle(&self, req: Request) -> Response {
        let mut r = Response {
            protocol: PROTOCOL_VERSION,
            error: None,
            status: None,
            stats: None,
            captured: None,
            reload: None,
            flows: None,
        };
        match req {
            Request::Status => r.status = Some(self.status()),
            Request::Stats => r.stats = Some(self.stats()),
            Request::Resize {
                gateway,
                sku,
                scale_units,
            } => match self.resize(&gateway, &sku, scale_units) {
                Ok(()) => r.status = Some(self.status()),
                Err(e) => r.error = Some(format!("resize refused: {e}")),
            },
            Request::Capture {
                connection,
                direction,
                count,
                file,
                timeout_secs,
            } => match self.capture(
                &connection,
                direction.as_deref(),
                count,
                &file,
                timeout_secs,
            ) {
                Ok(n) => r.captured = Some(n),
                Err(e) => r.error = Some(format!("capture: {e}")),
            },
            Request::Flows { gateway, top } => match self.flows(gateway.as_deref(), top) {
                Ok(f) => r.flows = Some(f),
                Err(e) => r.error = Some(format!("flows: {e}")),
            },
            Request::Reload => match self.reload() {
                Ok(x) => r.reload = Some(x),
                Err(e) => {
                    tracing::warn!(error = %e, "reload refused (control API)");
                    r.error = Some(format!("reload refused: {e}"));
                }
            },
        }
        r
    }
}

impl crate::metrics::Source for State {
    fn snapshot(&self) -> (Status, Stats) {
        (self.status(), self.stats())
    }
}

/// Keeps each circuit's `up` flag in line with its interface (administratively up and running),
/// so that the routes of a circuit that goes down are skipped, and logs transitions. The
/// circuits are those of the topology at each look (reloads add and remove them).
fn watch_links(state: &State, stop: &AtomicBool) {
    let mut probes: std::collections::HashMap<Option<String>, link::LinkProbe> =
        std::collections::HashMap::new();
    // Circuits whose TUN was deleted, by name, and when their re-creation was last tried.
    let mut tried: std::collections::HashMap<String, Instant> = std::collections::HashMap::new();
    while !stop.load(Ordering::Relaxed) {
        let mut missing = Vec::new();
        let t = state.shared.topology();
        let vnet_space = state.config().vnet.address_space.clone();
        // A probe pins its namespace: keep only those of namespaces with circuits now.
        probes.retain(|ns, _| {
            t.iter().any(|(_, s)| {
                matches!(&s.config.kind, ConnectionKind::ExpressRoute { interface }
                    if interface.netns == *ns)
            })
        });
        for (index, slot) in t.iter() {
            let ConnectionKind::ExpressRoute { interface: iface } = &slot.config.kind else {
                continue;
            };
            if !probes.contains_key(&iface.netns) {
                match link::LinkProbe::new(iface.netns.as_deref()) {
                    Ok(p) => {
                        probes.insert(iface.netns.clone(), p);
                    }
                    Err(_) => continue,
                }
            }
            let Some(probe) = probes.get(&iface.netns) else {
                continue;
            };
            let circuit = &slot.conn;
            let st = probe.state(&iface.name);
            if !st.as_ref().is_ok_and(|s| s.exists) {
                // Maybe the namespace was made again since the probe was: look afresh next time.
                probes.remove(&iface.netns);
            }
            if st.as_ref().is_ok_and(|s| !s.exists) {
                missing.push((index, circuit.name.clone()));
            }
            let up = st.map(|s| s.exists && s.up && s.running).unwrap_or(false);
            let was = circuit.up.load(Ordering::Relaxed);
            if up && !was {
                // The kernel removed the routes through the interface when it went down (and its
                // IPv6 addresses): configure them and advertise the VNet to this side again (both
                // idempotent), and only then route over the circuit again.
                if let Err(e) = readdress(iface)
                    .map_err(anyhow::Error::from)
                    .and_then(|()| install_routes(iface, &vnet_space))
                {
                    tracing::warn!(connection = %circuit.name, error = %format!("{e:#}"), "re-adding addresses and routes failed");
                }
                circuit.up.store(true, Ordering::Relaxed);
                tracing::info!(connection = %circuit.name, "circuit up: routes restored");
            } else if !up && was {
                circuit.up.store(false, Ordering::Relaxed);
                tracing::warn!(connection = %circuit.name, "circuit down: routes withdrawn");
            }
        }
        drop(t);
        // A deleted TUN does not come back by itself: make it again (every 5 s at most per
        // circuit while that fails, say because its namespace is gone too).
        tried.retain(|name, _| missing.iter().any(|(_, n)| n == name));
        for (slot, name) in missing {
            if tried
                .get(&name)
                .is_some_and(|t| t.elapsed() < RECREATE_RETRY)
            {
                continue;
            }
            tried.insert(name.clone(), Instant::now());
            match state.recreate(slot) {
                Ok(()) => {
                    tried.remove(&name);
                    tracing::warn!(connection = %name, "circuit TUN was deleted: made again");
                }
                Err(e) => {
                    tracing::warn!(connection = %name, error = %e, "circuit TUN was deleted; making it again failed (retried in 5 s)");
                }
            }
        }
        std::thread::sleep(LINK_POLL);
    }
}

/// Runs the daemon until SIGINT or SIGTERM.
pub fn run(config: Config) -> Result<()> {
    let started = Instant::now();
    // Installed first: a SIGHUP (say `systemctl reload`) while the data plane starts must not
    // end the daemon; it is handled once running.
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
    ])
    .context("installing signal handlers")?;
    let dp =
        Dataplane::start(&config, BurstPolicy::default()).context("starting the data plane")?;
    let state = Arc::new(State {
        config: RwLock::new(Arc::new(config.clone())),
        shared: dp.shared.clone(),
        dataplane: Mutex::new(dp),
        started,
        skus: Mutex::new(config.gateways.iter().map(|g| g.sku).collect()),
    });
    let server = ControlServer::start(
        &config.control.socket,
        config.control.tcp.clone(),
        state.clone(),
    )?;
    let metrics = match config.metrics.listen {
        Some(addr) => Some(MetricsServer::start(addr, state.clone())?),
        None => None,
    };
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (state, stop) = (state.clone(), stop.clone());
        std::thread::Builder::new()
            .name("links".into())
            .spawn(move || watch_links(&state, &stop))?
    };
    tracing::info!(
        config = %config.path.display(),
        socket = %config.control.socket.display(),
        metrics = %metrics.as_ref().map_or("off".to_string(), |m| m.local_addr().to_string()),
        control_listen = %server.tcp_addr().map_or("off".to_string(), |a| a.to_string()),
        gateways = config.gateways.len(),
        connections = config.connections.len(),
        "causewayd running"
    );
    for sig in signals.forever() {
        if sig == signal_hook::consts::SIGHUP {
            // The result is logged either way; a refused reload keeps the running config.
            if let Err(e) = state.reload() {
                tracing::error!(error = %e, "reload refused (SIGHUP)");
            }
            continue;
        }
        tracing::info!(signal = sig, "stopping");
        break;
    }
    stop.store(true, Ordering::SeqCst);
    state
        .dataplane
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .stop();
    drop(metrics);
    drop(server);
    let _ = watcher.join();
    drop(state);
    tracing::info!("stopped");
    Ok(())
}
