//! End-to-end tests: the real `causewayd` and `causeway` binaries, real TUNs in network
//! namespaces the tests create, real peers (ping, iperf3).
//!
//! Each test builds its own lab: two namespaces named `cwt<pid>x<n>-vnet` / `-onprem`, a config,
//! a daemon with its own control socket. Everything is removed when the test ends, pass or fail
//! (the `Lab` guard), and namespaces left by a killed run (`cwt*` of a dead pid) are removed at
//! start. A throughput test runs alone (it holds the machine lock exclusively). These tests need root.
//!
//! `CAUSEWAY_E2E_OFFLOAD=off` runs the whole suite with `offload = false` on every interface of
//! every Causeway config the labs write (TUNs without TCP offloads); scripts/test.sh runs the
//! suite once each way.

#[path = "e2e/flows.rs"]
mod flows;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Once, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use causeway_api::{Request, Stats, Status};

#[path = "e2e/faults.rs"]
mod faults;
#[path = "e2e/hostile.rs"]
mod hostile;

/// Labs share the machine: a throughput test takes this exclusively (no other lab runs beside
/// it, so its measurement is its own), every other lab takes it shared.
static MACHINE: RwLock<()> = RwLock::new(());

/// How a lab holds [`MACHINE`].
#[allow(dead_code)]
enum MachineGuard {
    Shared(RwLockReadGuard<'static, ()>),
    Exclusive(RwLockWriteGuard<'static, ()>),
}

fn machine(exclusive: bool) -> MachineGuard {
    if exclusive {
        MachineGuard::Exclusive(MACHINE.write().unwrap_or_else(|e| e.into_inner()))
    } else {
        MachineGuard::Shared(MACHINE.read().unwrap_or_else(|e| e.into_inner()))
    }
}
static CLEAN: Once = Once::new();
static NEXT: AtomicUsize = AtomicUsize::new(0);

const PREFIX: &str = "cwt";

fn daemon_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_causewayd"))
}

/// The CLI is another package's binary; it is built beside the daemon (scripts/test.sh builds
/// every binary before running the tests).
fn cli_bin() -> PathBuf {
    let p = daemon_bin().with_file_name("causeway");
    assert!(
        p.exists(),
        "{} is missing: build all binaries first (scripts/test.sh does)",
        p.display()
    );
    p
}

/// Whether the labs' TUNs have TCP offloads: `CAUSEWAY_E2E_OFFLOAD` unset, empty or `on`: yes
/// (the daemon's default); `off`: every Causeway interface gets `offload = false`.
fn offload_on() -> bool {
    match std::env::var("CAUSEWAY_E2E_OFFLOAD").as_deref() {
        Err(_) | Ok("") | Ok("on") => true,
        Ok("off") => false,
        Ok(other) => panic!("CAUSEWAY_E2E_OFFLOAD must be `on` or `off`, not `{other}`"),
    }
}

/// `config` as the suite runs it: with offloads off ([`offload_on`]), `offload = false` is added
/// to every `[vnet.interface]` and `[connection.interface]` table that does not say it yet (so
/// a config derived from a written one can go through again); otherwise unchanged.
fn with_offload(config: &str) -> String {
    if offload_on() {
        return config.to_string();
    }
    let mut out = String::with_capacity(config.len() + 64);
    let mut lines = config.split_inclusive('\n').peekable();
    while let Some(line) = lines.next() {
        out.push_str(line);
        let header = line.trim();
        if (header == "[vnet.interface]" || header == "[connection.interface]")
            && !lines
                .peek()
                .is_some_and(|next| next.trim_start().starts_with("offload"))
        {
            if !line.ends_with('\n') {
                out.push('\n');
            }
            out.push_str("offload = false\n");
        }
    }
    out
}

/// Writes a Causeway config for a daemon of the suite ([`with_offload`]).
fn write_config(path: &Path, config: &str) {
    std::fs::write(path, with_offload(config))
        .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}

fn require_root() {
    // SAFETY-free check: geteuid through the `id` command keeps this crate free of unsafe.
    let out = Command::new("id").arg("-u").output().expect("run id -u");
    let uid = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert_eq!(
        uid, "0",
        "end-to-end tests need root (network namespaces, TUN devices)"
    );
}

/// Removes namespaces of this suite left by runs that were killed (their pid is gone).
fn remove_stale() {
    CLEAN.call_once(|| {
        let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
            return;
        };
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let name = line.split_whitespace().next().unwrap_or("");
            let Some(rest) = name.strip_prefix(PREFIX) else {
                continue;
            };
            let pid: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
            let alive = !pid.is_empty() && Path::new(&format!("/proc/{pid}")).exists();
            if !alive || pid == std::process::id().to_string() {
                let _ = Command::new("ip").args(["netns", "del", name]).status();
            }
        }
    });
}

/// A process's resident memory, KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS for pid {pid}"))
}

fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"))
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// iperf3 from a client in `client_ns` to a one-off server in `server_ns` listening on `dst`
/// (or the reverse direction with `-R`); its JSON report.
fn iperf3_json(
    client_ns: &str,
    server_ns: &str,
    dst: &str,
    secs: u32,
    reverse: bool,
) -> serde_json::Value {
    let extra: &[&str] = if reverse { &["-R"] } else { &[] };
    iperf3_with(client_ns, server_ns, dst, secs, extra)
}

/// iperf3 from a client in `client_ns` to a one-off server in `server_ns` listening on `dst`,
/// with `extra` client options (`-R`, `-u -b 50M`...); its JSON report.
fn iperf3_with(
    client_ns: &str,
    server_ns: &str,
    dst: &str,
    secs: u32,
    extra: &[&str],
) -> serde_json::Value {
    let port = 5300 + (NEXT.fetch_add(1, Ordering::SeqCst) % 500) as u16;
    let port_s = port.to_string();
    let mut server = Command::new("ip")
        .args([
            "netns", "exec", server_ns, "iperf3", "-s", "-1", "-p", &port_s,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("iperf3 server (is iperf3 installed? scripts/deps.sh installs it)");
    std::thread::sleep(Duration::from_millis(300));
    let secs_s = secs.to_string();
    // Bounded: a stalled transfer must fail the test, not hang it.
    let limit = (secs + 20).to_string();
    let mut args = vec![
        "netns",
        "exec",
        client_ns,
        "timeout",
        &limit,
        "iperf3",
        "-c",
        dst,
        "-p",
        &port_s,
        "-t",
        &secs_s,
        "-J",
        "--connect-timeout",
        "3000",
    ];
    args.extend_from_slice(extra);
    let out = run(Command::new("ip").args(&args));
    let _ = server.kill();
    let _ = server.wait();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("iperf3 JSON: {e}: {}", text(&out)));
    v
}

/// iperf3 from a client in `client_ns` to a one-off server in `server_ns` listening on `dst`
/// (or the reverse direction with `-R`); the receiver's Mbit/s.
fn iperf3(client_ns: &str, server_ns: &str, dst: &str, secs: u32, reverse: bool) -> f64 {
    let v = iperf3_json(client_ns, server_ns, dst, secs, reverse);
    let bps = v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .unwrap_or_else(|| panic!("no receiver rate in iperf3 output: {v}"));
    bps / 1e6
}

/// Creates namespaces with loopback up.
fn add_namespaces<'a>(names: impl IntoIterator<Item = &'a String>) {
    for ns in names {
        let o = run(Command::new("ip").args(["netns", "add", ns]));
        assert!(o.status.success(), "ip netns add {ns}: {}", text(&o));
        run(Command::new("ip").args(["-n", ns, "link", "set", "lo", "up"]));
    }
}

/// The underlay between two gateway namespaces: a veth pair `ula` (192.0.2.1/24) - `ulb`
/// (192.0.2.2/24), made inside them.
fn add_underlay(gwa: &str, gwb: &str) {
    let o = run(Command::new("ip").args([
        "-n", gwa, "link", "add", "ula", "type", "veth", "peer", "name", "ulb", "netns", gwb,
    ]));
    assert!(o.status.success(), "veth: {}", text(&o));
    for (ns, dev, addr) in [(gwa, "ula", "192.0.2.1/24"), (gwb, "ulb", "192.0.2.2/24")] {
        run(Command::new("ip").args(["-n", ns, "addr", "add", addr, "dev", dev]));
        run(Command::new("ip").args(["-n", ns, "link", "set", dev, "up"]));
    }
}

/// Removes namespaces (killing what runs inside them first).
fn remove_namespaces<'a>(names: impl IntoIterator<Item = &'a String>) {
    for ns in names {
        if let Ok(o) = Command::new("ip").args(["netns", "pids", ns]).output() {
            for pid in String::from_utf8_lossy(&o.stdout).split_whitespace() {
                let _ = Command::new("kill").args(["-KILL", pid]).status();
            }
        }
        let _ = Command::new("ip").args(["netns", "del", ns]).status();
    }
}

/// A running `causewayd` (optionally inside a network namespace), stopped on drop.
struct Daemon {
    child: Option<Child>,
    socket: PathBuf,
    log: PathBuf,
}

impl Daemon {
    /// Starts the daemon and waits until its control socket answers.
    fn start(config: &Path, socket: &Path, log: &Path, netns: Option<&str>) -> Daemon {
        let file = std::fs::File::create(log).unwrap();
        let mut cmd = match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(daemon_bin());
                c
            }
            None => Command::new(daemon_bin()),
        };
        let child = cmd
            .arg("--config")
            .arg(config)
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("start causewayd");
        let mut d = Daemon {
            child: Some(child),
            socket: socket.to_owned(),
            log: log.to_owned(),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if causeway_api::call(&d.socket, &Request::Status, Duration::from_secs(2)).is_ok() {
                return d;
            }
            if let Some(st) = d.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("causewayd exited ({st}) at start:\n{}", d.log());
            }
            assert!(
                Instant::now() < deadline,
                "causewayd did not answer within 10 s:\n{}",
                d.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn stats(&self) -> Stats {
        let r = causeway_api::call(&self.socket, &Request::Stats, Duration::from_secs(5)).unwrap();
        r.stats.expect("stats in response")
    }

    fn status(&self) -> Status {
        let r = causeway_api::call(&self.socket, &Request::Status, Duration::from_secs(5)).unwrap();
        r.status.expect("status in response")
    }

    /// Stops the daemon with SIGTERM and returns how long it took.
    fn stop(&mut self) -> Duration {
        let t = Instant::now();
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                if c.try_wait().unwrap().is_some() {
                    break;
                }
                if Instant::now() > deadline {
                    let _ = c.kill();
                    let _ = c.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        t.elapsed()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One lab: namespaces, config, running daemon. Dropping it stops the daemon and removes
/// everything.
struct Lab {
    vnet: String,
    /// The on-premises host of the first circuit.
    onprem: String,
    /// One on-premises namespace per circuit (the first is `onprem`).
    onprems: Vec<String>,
    /// Host namespaces a test adds behind `vnet` or an on-premises namespace.
    hosts: Vec<String>,
    dir: PathBuf,
    socket: PathBuf,
    config: PathBuf,
    daemon: Option<Daemon>,
    _machine: MachineGuard,
}

struct LabSpec<'a> {
    /// A throughput test: no other lab runs beside it.
    exclusive: bool,
    sku: &'a str,
    circuit_mtu: u32,
    /// routing_weight of each circuit; every circuit offers the same on-premises prefixes and
    /// its host has the same addresses, so the weights decide which one carries the traffic.
    weights: &'a [u16],
    /// Extra TOML appended to the config (e.g. a `[metrics]` table).
    extra: &'a str,
}

impl Default for LabSpec<'_> {
    fn default() -> Self {
        LabSpec {
            exclusive: false,
            sku: "sku = \"Standard\"",
            circuit_mtu: 1500,
            weights: &[0],
            extra: "",
        }
    }
}

impl Lab {
    fn new(spec: LabSpec) -> Lab {
        let guard = machine(spec.exclusive);
        require_root();
        remove_stale();
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let base = format!("{PREFIX}{}x{n}", std::process::id());
        let dir = std::env::temp_dir().join(format!("{base}-lab"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let onprems: Vec<String> = (0..spec.weights.len())
            .map(|i| {
                if i == 0 {
                    format!("{base}-onprem")
                } else {
                    format!("{base}-op{i}")
                }
            })
            .collect();
        let mut lab = Lab {
            vnet: format!("{base}-vnet"),
            onprem: onprems[0].clone(),
            onprems,
            hosts: Vec::new(),
            socket: dir.join("control.sock"),
            config: dir.join("causeway.toml"),
            dir,
            daemon: None,
            _machine: guard,
        };
        add_namespaces(std::iter::once(&lab.vnet).chain(&lab.onprems));
        let mut cfg = format!(
            r#"
[vnet]
name = "vnet1"
address_space = ["10.1.0.0/16", "fd00:1::/48"]
gateway_subnet = "10.1.255.0/27"
[vnet.interface]
name = "cw-vnet0"
netns = "{vnet}"
addresses = ["10.1.0.10/16", "fd00:1::10/64"]
[control]
socket = "{socket}"
[[gateway]]
name = "er-gw"
type = "ExpressRoute"
{sku}
"#,
            vnet = lab.vnet,
            socket = lab.socket.display(),
            sku = spec.sku,
        );
        for (i, w) in spec.weights.iter().enumerate() {
            cfg.push_str(&format!(
                r#"
[[connection]]
name = "circuit-{n}"
gateway = "er-gw"
type = "ExpressRoute"
prefixes = ["10.2.0.0/16", "fd00:2::/48"]
routing_weight = {w}
[connection.interface]
name = "cw-er{i}"
netns = "{ns}"
addresses = ["10.2.0.10/16", "fd00:2::10/64"]
mtu = {mtu}
"#,
                n = i + 1,
                ns = lab.onprems[i],
                mtu = spec.circuit_mtu,
            ));
        }
        cfg.push_str(spec.extra);
        write_config(&lab.config, &cfg);
        lab.start();
        lab
    }

    fn start(&mut self) {
        self.daemon = Some(Daemon::start(
            &self.config,
            &self.socket,
            &self.dir.join("daemon.log"),
            None,
        ));
    }

    fn log(&self) -> String {
        self.daemon.as_ref().map(Daemon::log).unwrap_or_default()
    }

    fn ns(&self, ns: &str, args: &[&str]) -> Output {
        run(Command::new("ip").args(["netns", "exec", ns]).args(args))
    }

    fn in_vnet(&self, args: &[&str]) -> Output {
        self.ns(&self.vnet, args)
    }

    fn in_onprem(&self, args: &[&str]) -> Output {
        self.ns(&self.onprem, args)
    }

    fn daemon(&self) -> &Daemon {
        self.daemon.as_ref().expect("the lab's daemon runs")
    }

    fn stats(&self) -> Stats {
        self.daemon().stats()
    }

    fn status(&self) -> Status {
        self.daemon().status()
    }

    fn drops(&self, f: impl Fn(&Stats) -> &causeway_api::DirStats, reason: &str) -> u64 {
        f(&self.stats()).drops[reason]
    }

    /// Stops the daemon with SIGTERM and returns how long it took.
    fn stop(&mut self) -> Duration {
        self.daemon.take().map_or(Duration::ZERO, |mut d| d.stop())
    }

    /// iperf3 from the VNet host to the on-premises host (or reverse); receiver Mbit/s.
    fn iperf(&self, secs: u32, reverse: bool, v6: bool) -> f64 {
        let dst = if v6 { "fd00:2::10" } else { "10.2.0.10" };
        iperf3(&self.vnet, &self.onprem, dst, secs, reverse)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.stop();
        remove_namespaces(
            std::iter::once(&self.vnet)
                .chain(&self.onprems)
                .chain(&self.hosts),
        );
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn ping(lab: &Lab, from_vnet: bool, args: &[&str]) -> Output {
    let mut a = vec!["ping", "-n", "-W", "1"];
    a.extend_from_slice(args);
    if from_vnet {
        lab.in_vnet(&a)
    } else {
        lab.in_onprem(&a)
    }
}

#[test]
fn ping_both_ways_ipv4_and_ipv6_and_the_gateway_address() {
    let lab = Lab::new(LabSpec::default());
    for (from_vnet, dst) in [
        (true, "10.2.0.10"),
        (true, "fd00:2::10"),
        (false, "10.1.0.10"),
        (false, "fd00:1::10"),
        (true, "10.1.255.4"),
        (false, "10.1.255.4"),
        (true, "fd00:1:0:ffff::4"),
    ] {
        let o = ping(&lab, from_vnet, &["-c", "3", "-i", "0.2", dst]);
        assert!(
            o.status.success(),
            "ping {dst} from {}: {}",
            if from_vnet { "vnet" } else { "onprem" },
            text(&o)
        );
        assert!(text(&o).contains("3 received"), "{}", text(&o));
    }
    let s = lab.stats();
    let g = &s.gateways[0];
    assert!(g.egress.packets >= 12, "{:?}", g.egress);
    assert!(g.ingress.packets >= 12, "{:?}", g.ingress);
    assert!(s.vnet.egress.echo_replies >= 6);
    assert_eq!(g.connections[0].egress.packets, g.egress.packets);
    let st = lab.status();
    assert_eq!(st.gateways[0].connections[0].state, "Connected");
    assert!(st.vnet.interface.up);
    // `offload` in status is the virtio-net header, which the daemon always uses (CLI.md); with
    // `offload = false` only the TCP offloads are off.
    assert!(st.vnet.interface.offload || !offload_on());
}

/// Pings with `args` from the VNet host (or the on-premises host) and expects an ICMP error
/// `what` from the gateway address `from`.
fn expect_icmp(lab: &Lab, from_vnet: bool, args: &[&str], from: &str, what: &str) {
    let t = text(&ping(lab, from_vnet, args));
    assert!(
        t.contains(&format!("From {from}")) && t.contains(what),
        "{t}"
    );
}

#[test]
fn icmp_time_exceeded_and_unreachable_reach_the_sender() {
    let lab = Lab::new(LabSpec::default());
    expect_icmp(
        &lab,
        true,
        &["-c", "1", "-t", "1", "10.2.0.10"],
        "10.1.255.4",
        "Time to live exceeded",
    );
    // The VNet host routes only the VNet and the advertised prefixes to the gateway; send to an
    // unadvertised prefix through it explicitly.
    run(Command::new("ip").args([
        "-n",
        &lab.vnet,
        "route",
        "add",
        "10.9.0.0/16",
        "dev",
        "cw-vnet0",
    ]));
    expect_icmp(
        &lab,
        true,
        &["-c", "1", "10.9.0.1"],
        "10.1.255.4",
        "Destination Net Unreachable",
    );
    expect_icmp(
        &lab,
        true,
        &["-c", "1", "-t", "1", "fd00:2::10"],
        "fd00:1:0:ffff::4",
        "Time exceeded",
    );
    run(Command::new("ip").args([
        "-n",
        &lab.vnet,
        "-6",
        "route",
        "add",
        "fd00:9::/48",
        "dev",
        "cw-vnet0",
    ]));
    expect_icmp(
        &lab,
        true,
        &["-c", "1", "fd00:9::1"],
        "fd00:1:0:ffff::4",
        "No route",
    );
    // Ingress TTL expiry goes back to the on-premises sender.
    expect_icmp(
        &lab,
        false,
        &["-c", "1", "-t", "1", "10.1.0.10"],
        "10.1.255.4",
        "Time to live exceeded",
    );
    let s = lab.stats();
    assert!(s.gateways[0].egress.drops["ttl_expired"] >= 2);
    assert!(s.gateways[0].ingress.drops["ttl_expired"] >= 1);
    assert!(s.vnet.egress.drops["no_route"] >= 2);
    assert!(s.vnet.egress.icmp_errors_sent >= 2);
}

#[test]
fn too_big_gets_icmp_with_df_and_is_fragmented_without() {
    let lab = Lab::new(LabSpec {
        circuit_mtu: 1400,
        ..LabSpec::default()
    });
    // 1472 bytes of payload = a 1500-byte packet, over the circuit's 1400.
    let o = ping(
        &lab,
        true,
        &["-c", "1", "-M", "do", "-s", "1472", "10.2.0.10"],
    );
    let t = text(&o);
    assert!(
        t.contains("From 10.1.255.4") && t.contains("mtu = 1400"),
        "{t}"
    );
    assert_eq!(lab.drops(|s| &s.gateways[0].egress, "too_big"), 1);
    // DF clear: the gateway fragments, the host reassembles and answers.
    let before = lab.stats().gateways[0].egress.packets;
    let o = ping(
        &lab,
        true,
        &["-c", "2", "-M", "dont", "-s", "1472", "10.2.0.10"],
    );
    assert!(text(&o).contains("2 received"), "{}", text(&o));
    let after = lab.stats().gateways[0].egress.packets;
    assert_eq!(after - before, 4, "two echo requests, two fragments each");
    // IPv6: packet too big.
    let o = ping(&lab, true, &["-c", "1", "-s", "1452", "fd00:2::10"]);
    let t = text(&o);
    assert!(
        t.contains("Packet too big") && t.contains("mtu=1400") || t.contains("mtu = 1400"),
        "{t}"
    );
}

#[test]
fn spoofed_sources_and_transit_are_dropped_and_counted() {
    let lab = Lab::new(LabSpec::default());
    // A VNet host sending from an address outside the VNet address space.
    run(Command::new("ip").args(["-n", &lab.vnet, "addr", "add", "192.0.2.77/32", "dev", "lo"]));
    let o = ping(
        &lab,
        true,
        &["-c", "2", "-i", "0.2", "-I", "192.0.2.77", "10.2.0.10"],
    );
    assert!(!text(&o).contains(" 2 received"), "{}", text(&o));
    assert_eq!(lab.drops(|s| &s.vnet.egress, "spoofed"), 2);
    // An on-premises host sending from outside the circuit's prefixes.
    run(Command::new("ip").args(["-n", &lab.onprem, "addr", "add", "10.3.0.5/32", "dev", "lo"]));
    let o = ping(
        &lab,
        false,
        &["-c", "2", "-i", "0.2", "-I", "10.3.0.5", "10.1.0.10"],
    );
    assert!(!text(&o).contains(" 2 received"), "{}", text(&o));
    let s = lab.stats();
    assert_eq!(s.gateways[0].ingress.drops["spoofed"], 2);
    assert_eq!(s.gateways[0].connections[0].ingress.drops["spoofed"], 2);
    // On-premises traffic to a destination outside the VNet: no transit through the gateway.
    run(Command::new("ip").args([
        "-n",
        &lab.onprem,
        "route",
        "add",
        "10.5.0.0/16",
        "dev",
        "cw-er0",
    ]));
    let _ = ping(&lab, false, &["-c", "1", "10.5.0.1"]);
    assert_eq!(lab.drops(|s| &s.gateways[0].ingress, "dst_outside_vnet"), 1);
    // Nothing spoofed was forwarded: the on-premises side saw no packet from 192.0.2.77.
    assert_eq!(lab.stats().gateways[0].egress.packets, 0);
}

/// Without TUN offloads the daemon moves one 1500-byte packet per TUN read and per write, and
/// the receiving stack runs in the writer's context: on this 2-core machine one stream tops out
/// at about 1.8 Gbit/s (measured 1.76-1.85 Gbit/s, 1.47-1.93 per second), at or under the 90%
/// floor of a 2 Gbit/s band.
const NO_OFFLOAD_MBPS: f64 = 1750.0;

/// The least a throughput test accepts where it expects `floor` Mbit/s of a gateway shaped to
/// `rate` Mbit/s: `floor` itself, unless offloads are off and 90% of `rate` is above
/// [`NO_OFFLOAD_MBPS`] (the CPU, not the shaper, sets the rate then): `relaxed` instead (still
/// above the next SKU down), with the reason on stderr.
fn cpu_floor(floor: f64, relaxed: f64, rate: f64, what: &str) -> f64 {
    if offload_on() || 0.90 * rate <= NO_OFFLOAD_MBPS {
        return floor;
    }
    eprintln!(
        "{what}: offloads off: expecting at least {relaxed:.0} Mbit/s, not {floor:.0}: without \
         TUN offloads this machine forwards about {NO_OFFLOAD_MBPS:.0} Mbit/s, so the CPU and \
         not the shaper sets the rate; the upper bound is checked as usual"
    );
    relaxed
}

fn assert_band(mbps: f64, rate: f64, what: &str) {
    let floor = cpu_floor(0.90 * rate, 0.70 * rate, rate, what);
    assert!(
        mbps >= floor && mbps <= 1.01 * rate,
        "{what}: {mbps:.0} Mbit/s is outside {:.0}-101% of {rate:.0}",
        100.0 * floor / rate
    );
}

#[test]
fn iperf3_through_standard_is_held_to_1_gbit() {
    let lab = Lab::new(LabSpec {
        exclusive: true,
        ..LabSpec::default()
    });
    let up = lab.iperf(6, false, false);
    assert_band(up, 1000.0, "Standard, VNet -> on-premises");
    let down = lab.iperf(6, true, false);
    assert_band(down, 1000.0, "Standard, on-premises -> VNet");
    let v6 = lab.iperf(4, false, true);
    assert_band(v6, 1000.0, "Standard, IPv6");
    let s = lab.stats();
    if offload_on() {
        assert!(s.gateways[0].egress.super_packets > 0, "TUN offload in use");
    } else {
        assert_eq!(
            s.gateways[0].egress.super_packets, 0,
            "offload = false: the kernel hands over no super-packet"
        );
    }
}

#[test]
fn iperf3_through_high_performance_is_held_to_2_gbit() {
    let lab = Lab::new(LabSpec {
        exclusive: true,
        sku: "sku = \"HighPerformance\"",
        ..LabSpec::default()
    });
    let up = lab.iperf(6, false, false);
    assert_band(up, 2000.0, "HighPerformance, VNet -> on-premises");
}

#[test]
fn cli_status_and_stats_and_daemon_down() {
    let mut lab = Lab::new(LabSpec::default());
    let o = run(Command::new(cli_bin())
        .arg("--socket")
        .arg(&lab.socket)
        .arg("status"));
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(
        t.contains("er-gw")
            && t.contains("Standard")
            && t.contains("circuit-1")
            && t.contains("Connected"),
        "{t}"
    );
    let o = run(Command::new(cli_bin())
        .arg("--socket")
        .arg(&lab.socket)
        .args(["stats", "-o", "json"]));
    assert!(o.status.success(), "{}", text(&o));
    let s: Stats = serde_json::from_slice(&o.stdout).expect("stats JSON parses");
    assert_eq!(s.gateways[0].name, "er-gw");
    for reason in [
        "malformed_checksum",
        "spoofed",
        "no_route",
        "ttl_expired",
        "too_big",
        "shaped_bps",
        "shaped_pps",
    ] {
        assert!(
            s.gateways[0].egress.drops.contains_key(reason),
            "{reason} missing"
        );
    }
    let took = lab.stop();
    assert!(took < Duration::from_secs(2), "SIGTERM took {took:?}");
    // The TUNs and the socket are gone.
    let o = lab.in_vnet(&["ip", "link", "show", "cw-vnet0"]);
    assert!(!o.status.success(), "cw-vnet0 still exists after stop");
    assert!(!lab.socket.exists(), "control socket left behind");
    let o = run(Command::new(cli_bin())
        .arg("--socket")
        .arg(&lab.socket)
        .arg("status"));
    assert!(!o.status.success());
    assert!(text(&o).contains("cannot reach causewayd"), "{}", text(&o));
}

#[test]
fn curl_speaks_the_control_api_over_the_socket() {
    let lab = Lab::new(LabSpec::default());
    let curl = |path: &str, extra: &[&str]| {
        let o = run(Command::new("curl")
            .args(["-sS", "--max-time", "10", "--unix-socket"])
            .arg(&lab.socket)
            .args(extra)
            .args(["-w", "\n%{http_code} %{content_type}"])
            .arg(format!("http://localhost{path}")));
        assert!(o.status.success(), "curl {path}: {}", text(&o));
        let out = String::from_utf8(o.stdout).unwrap();
        let (body, tail) = out.rsplit_once('\n').unwrap();
        let (code, ctype) = tail.split_once(' ').unwrap();
        assert_eq!(ctype, "application/json", "{path}");
        let v: serde_json::Value =
            serde_json::from_str(body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"));
        (code.parse::<u16>().unwrap(), v)
    };
    let (code, v) = curl("/v1/status", &[]);
    assert_eq!(code, 200);
    let s: causeway_api::Status = serde_json::from_value(v).expect("status JSON parses");
    assert_eq!(s.gateways[0].name, "er-gw");
    assert_eq!(s.gateways[0].connections[0].name, "circuit-1");
    let (code, v) = curl("/v1/connections", &[]);
    assert_eq!(
        (code, &v[0]["gateway"], &v[0]["name"]),
        (200, &"er-gw".into(), &"circuit-1".into())
    );
    let (code, v) = curl("/v1/gateways/er-gw", &[]);
    assert_eq!((code, &v["sku"]), (200, &"Standard".into()));
    let (code, v) = curl("/v1/stats", &[]);
    assert_eq!(code, 200);
    assert!(v["gateways"][0]["egress"]["drops"].is_object(), "{v}");
    let (code, v) = curl("/v1/nope", &[]);
    assert_eq!(code, 404);
    assert!(v["error"].is_string(), "{v}");
    let (code, v) = curl(
        "/v1/gateways/er-gw/resize",
        &[
            "-H",
            "Content-Type: application/json",
            "-d",
            r#"{"sku":"UltraPerformance","scale_units":null}"#,
        ],
    );
    assert_eq!(code, 409);
    assert!(v["error"].as_str().unwrap().contains("recreat"), "{v}");
}

#[test]
fn the_control_api_over_tcp_requires_the_bearer_token() {
    let mut lab = Lab::new(LabSpec::default());
    lab.stop();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let token_file = lab.dir.join("token");
    std::fs::write(&token_file, "s3cr3t-t0ken\n").unwrap();
    // The token file must be 0600 or stricter (checked as a shared_key_file is).
    run(Command::new("chmod").arg("600").arg(&token_file));
    let cfg = std::fs::read_to_string(&lab.config).unwrap().replacen(
        "[control]\n",
        &format!(
            "[control]\nlisten = \"127.0.0.1:{port}\"\ntoken_file = \"{}\"\n",
            token_file.display()
        ),
        1,
    );
    write_config(&lab.config, &cfg);
    lab.start();
    let curl = |path: &str, extra: &[&str]| -> (u16, String) {
        let o = run(Command::new("curl")
            .args(["-sS", "--max-time", "10"])
            .args(extra)
            .args(["-w", "\n%{http_code}"])
            .arg(format!("http://127.0.0.1:{port}{path}")));
        assert!(o.status.success(), "curl {path}: {}", text(&o));
        let out = String::from_utf8(o.stdout).unwrap();
        let (body, code) = out.rsplit_once('\n').unwrap();
        (code.parse().unwrap(), body.to_string())
    };
    let (code, body) = curl("/v1/status", &[]);
    assert_eq!(code, 401, "{body}");
    let (code, body) = curl("/v1/status", &["-H", "Authorization: Bearer wrong"]);
    assert_eq!(code, 401, "{body}");
    let auth = ["-H", "Authorization: Bearer s3cr3t-t0ken"];
    let (code, body) = curl("/v1/status", &auth);
    assert_eq!(code, 200, "{body}");
    let s: causeway_api::Status = serde_json::from_str(&body).unwrap();
    assert_eq!(s.gateways[0].connections[0].name, "circuit-1");
    // A write call over TCP: a reload of the unchanged file changes nothing.
    let (code, body) = curl("/v1/reload", &[&auth[..], &["-X", "POST"]].concat());
    assert_eq!(code, 200, "{body}");
    let r: causeway_api::ReloadResult = serde_json::from_str(&body).unwrap();
    assert_eq!(r.unchanged, ["circuit-1"]);
    assert!(r.added.is_empty() && r.removed.is_empty(), "{r:?}");
    // The Unix socket needs no token.
    assert_eq!(lab.status().gateways[0].name, "er-gw");
}

#[test]
fn invalid_config_is_refused_whole_with_file_field_and_rule() {
    require_root();
    let dir = std::env::temp_dir().join(format!("{PREFIX}{}-badcfg", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bad.toml");
    let mut f = std::fs::File::create(&path).unwrap();
    write!(
        f,
        r#"
[vnet]
name = "vnet1"
address_space = ["10.1.0.0/16"]
gateway_subnet = "10.9.255.0/27"
colour = "blue"
[vnet.interface]
name = "cw-bad0"
[[gateway]]
name = "er-gw"
type = "ExpressRoute"
sku = "Standrd"
[[gateway]]
name = "er-gw2"
type = "ExpressRoute"
sku = "Standard"
[[connection]]
name = "c1"
gateway = "nope"
type = "ExpressRoute"
prefixes = ["10.2.0.1/16"]
[connection.interface]
name = "cw-bad1"
"#
    )
    .unwrap();
    drop(f);
    for check in [true, false] {
        let mut cmd = Command::new(daemon_bin());
        if check {
            cmd.arg("--check");
        }
        let o = run(cmd.arg("--config").arg(&path));
        let t = text(&o);
        assert_eq!(o.status.code(), Some(1), "{t}");
        let file = path.display().to_string();
        for (field, rule) in [
            (
                "vnet.gateway_subnet",
                "outside every vnet.address_space prefix",
            ),
            ("vnet.colour", "unknown"),
            ("sku", "Standrd"),
            ("gateway[1]", "ExpressRoute"),
            ("connection[0] (c1).gateway", "nope"),
            ("connection[0] (c1).prefixes[0]", "host bits"),
        ] {
            let line = t
                .lines()
                .find(|l| l.contains(field) && l.contains(rule))
                .unwrap_or_else(|| panic!("no error for {field} / {rule} in:\n{t}"));
            assert!(
                line.starts_with(&file),
                "error does not name the file: {line}"
            );
        }
        // Nothing was started: the TUN does not exist.
        let o = run(Command::new("ip").args(["link", "show", "cw-bad0"]));
        assert!(!o.status.success());
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn connection_packets(lab: &Lab) -> Vec<u64> {
    lab.stats().gateways[0]
        .connections
        .iter()
        .map(|c| c.egress.packets)
        .collect()
}

/// Waits until the connection shows `state` and the data plane agrees (routes withdrawn or
/// restored).
fn wait_state(lab: &Lab, conn: usize, state: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let st = lab.status();
        let c = &st.gateways[0].connections[conn];
        if c.state == state && c.routed == (state == "Connected") {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "circuit {conn} never became {state}: {st:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn highest_weight_wins_and_a_down_circuit_fails_over_and_back() {
    let lab = Lab::new(LabSpec {
        weights: &[0, 100],
        ..LabSpec::default()
    });
    let ping3 = || {
        let o = ping(&lab, true, &["-c", "3", "-i", "0.2", "10.2.0.10"]);
        assert!(
            text(&o).contains("3 received"),
            "{}\n{:?}\n{}",
            text(&o),
            lab.stats(),
            lab.log()
        );
    };
    ping3();
    assert_eq!(
        connection_packets(&lab),
        vec![0, 3],
        "weight 100 carries the traffic"
    );
    // The preferred circuit goes down: its routes are withdrawn, the other one takes over.
    run(Command::new("ip").args(["-n", &lab.onprems[1], "link", "set", "cw-er1", "down"]));
    wait_state(&lab, 1, "NotConnected");
    ping3();
    assert_eq!(
        connection_packets(&lab),
        vec![3, 3],
        "backup circuit used while the other is down"
    );
    // It comes back: traffic fails back to it, and its side has its routes again.
    run(Command::new("ip").args(["-n", &lab.onprems[1], "link", "set", "cw-er1", "up"]));
    wait_state(&lab, 1, "Connected");
    ping3();
    assert_eq!(
        connection_packets(&lab),
        vec![3, 6],
        "failback to the preferred circuit"
    );
    // IPv6 works again over the circuit that flapped (its address and routes were restored).
    let o = ping(&lab, true, &["-c", "2", "-i", "0.2", "fd00:2::10"]);
    assert!(text(&o).contains("2 received"), "{}", text(&o));
    assert_eq!(connection_packets(&lab), vec![3, 8]);
    let s = lab.stats();
    assert_eq!(
        s.gateways[0].connections[1].ingress.packets, 8,
        "replies came back on circuit-2"
    );
}

/// `causeway reload` against a daemon's socket.
fn cli_reload(socket: &Path) -> Output {
    run(Command::new(cli_bin())
        .arg("--socket")
        .arg(socket)
        .arg("reload"))
}

/// Polls `check` every 50 ms for at most `secs` seconds.
fn eventually(secs: u64, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !check() {
        assert!(Instant::now() < deadline, "{what}: not within {secs} s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn reload_adds_and_removes_a_circuit_while_another_forwards_without_loss() {
    let mut lab = Lab::new(LabSpec::default());
    // A second on-premises site for the circuit the reload adds (removed with the lab).
    let site = format!("{}-op9", lab.vnet.trim_end_matches("-vnet"));
    add_namespaces([&site]);
    lab.onprems.push(site.clone());
    let original = std::fs::read_to_string(&lab.config).unwrap();
    let with_second = format!(
        r#"{original}
[[connection]]
name = "circuit-9"
gateway = "er-gw"
type = "ExpressRoute"
prefixes = ["10.5.0.0/16"]
[connection.interface]
name = "cw-er9"
netns = "{site}"
addresses = ["10.5.0.10/16"]
"#
    );
    // Steady traffic on circuit-1 for the whole test: 1500 echo requests 4 ms apart (6 s).
    let flood = Command::new("ip")
        .args([
            "netns", "exec", &lab.vnet, "ping", "-n", "-q", "-i", "0.004",
        ])
        .args(["-c", "1500", "-W", "2", "10.2.0.10"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));

    // Added with `causeway reload`: comes up, is routed from the VNet side.
    write_config(&lab.config, &with_second);
    let o = cli_reload(&lab.socket);
    let t = text(&o);
    assert!(o.status.success(), "{t}\n{}", lab.log());
    assert!(
        t.contains("added") && t.contains("circuit-9") && t.contains("unchanged"),
        "{t}"
    );
    let o = ping(&lab, true, &["-c", "3", "-i", "0.2", "10.5.0.10"]);
    assert!(
        text(&o).contains("3 received"),
        "{}\n{}",
        text(&o),
        lab.log()
    );
    let st = lab.status();
    let names: Vec<&str> = st.gateways[0]
        .connections
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(names, ["circuit-1", "circuit-9"]);
    assert_eq!(st.gateways[0].connections[1].state, "Connected");

    // An invalid file is refused whole, naming the file and the field; nothing changes.
    write_config(
        &lab.config,
        &with_second.replace(
            "prefixes = [\"10.5.0.0/16\"]",
            "prefixes = [\"10.5.0.0/33\"]",
        ),
    );
    let o = cli_reload(&lab.socket);
    let t = text(&o);
    assert!(!o.status.success(), "{t}");
    assert!(
        t.contains("reload refused") && t.contains("causeway.toml") && t.contains("prefixes"),
        "{t}"
    );
    // So is a change that needs a restart.
    write_config(
        &lab.config,
        &with_second.replace("name = \"vnet1\"", "name = \"vnet2\""),
    );
    let o = cli_reload(&lab.socket);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("[vnet] changed"), "{}", text(&o));
    assert_eq!(lab.status().gateways[0].connections.len(), 2);

    // Removed with SIGHUP: its interface and its route on the VNet side go.
    write_config(&lab.config, &original);
    let pid = lab.daemon().child.as_ref().unwrap().id();
    run(Command::new("kill").args(["-HUP", &pid.to_string()]));
    eventually(5, "circuit-9 removed", || {
        lab.status().gateways[0].connections.len() == 1
    });
    let o = lab.ns(&site, &["ip", "link", "show", "cw-er9"]);
    assert!(!o.status.success(), "cw-er9 still exists");
    let routes = text(&lab.in_vnet(&["ip", "route", "show"]));
    assert!(
        !routes.contains("10.5.0.0/16") && routes.contains("10.2.0.0/16"),
        "{routes}"
    );
    let o = ping(&lab, true, &["-c", "1", "10.5.0.10"]);
    assert!(!o.status.success(), "10.5.0.10 still reachable");

    // Circuit-1 lost nothing through all of it.
    let out = flood.wait_with_output().unwrap();
    let t = String::from_utf8_lossy(&out.stdout);
    assert!(
        t.contains("1500 packets transmitted, 1500 received"),
        "{t}\n{}",
        lab.log()
    );
    let s = lab.stats();
    assert_eq!(s.gateways[0].egress.drops["connection_removed"], 0);
    assert!(lab.log().contains("config reloaded"), "{}", lab.log());
    assert!(lab.log().contains("reload refused"), "{}", lab.log());
}

// ---------------------------------------------------------------------------------------------
// VPN: two daemons, each a Vpn gateway, joined by a veth underlay.
//
//   <base>-vnet (10.1.0.10, TUN of A)   <base>-gwa (daemon A, 192.0.2.1) ==veth== <base>-gwb
//   (daemon B, 192.0.2.2)   <base>-onprem (10.3.0.10, TUN of B)
//
// Daemon B is "the on-premises VPN device": its own VNet is the on-premises network 10.3/16.
// With `circuit`, A also has an ExpressRoute gateway whose circuit reaches another host with the
// same address 10.3.0.10 in <base>-er, offering the same prefix: the circuit wins, the tunnel is
// the backup.

const KEY_AB: &str = "1111111111111111111111111111111111111111111111111111111111111111aabbccdd";
const KEY_BA: &str = "2222222222222222222222222222222222222222222222222222222222222222eeff0011";

struct VpnSpec<'a> {
    /// A throughput test: no other lab runs beside it.
    exclusive: bool,
    sku: &'a str,
    /// The ESP transform; keys are stretched to its length from `KEY_AB` / `KEY_BA`.
    esp: &'a str,
    /// The key B expects from A (`KEY_AB` unless a test wants the wrong one).
    b_in_key: &'a str,
    circuit: bool,
    tunnel_mtu: u32,
}

impl Default for VpnSpec<'_> {
    fn default() -> Self {
        VpnSpec {
            exclusive: false,
            sku: "VpnGw1",
            esp: "aes256gcm16",
            b_in_key: KEY_AB,
            circuit: false,
            tunnel_mtu: 1400,
        }
    }
}

struct VpnLab {
    vnet: String,
    gwa: String,
    gwb: String,
    onprem: String,
    er: Option<String>,
    /// Host namespaces a test adds behind `vnet` or `onprem`.
    hosts: Vec<String>,
    dir: PathBuf,
    a: Option<Daemon>,
    b: Option<Daemon>,
    config_a: PathBuf,
    _machine: MachineGuard,
}

/// `seed` (hex) repeated to the key length of `esp` (the 36-byte AEAD keys unchanged).
fn key_for(esp: &str, seed: &str) -> String {
    let bytes = match esp {
        "aes256-sha256" => 64,
        "aes128-sha256" => 48,
        "aes128gcm16" => 20,
        _ => 36,
    };
    seed.chars().cycle().take(2 * bytes).collect()
}

#[allow(clippy::too_many_arguments)]
fn vpn_config(
    esp: &str,
    vnet_space: &str,
    vnet_netns: &str,
    vnet_addr: &str,
    socket: &Path,
    gateways: &str,
    local: &str,
    peer: &str,
    remote: &str,
    out: (&str, &str),
    inn: (&str, &str),
    mtu: u32,
    extra: &str,
) -> String {
    // 10.1.0.0/16 -> fd00:1::/48 and host ::10, 10.3.0.0/16 -> fd00:3::/48.
    let v6_space = format!("fd00:{}::/48", &vnet_space[3..4]);
    let v6_addr = format!("fd00:{}::10/64", &vnet_space[3..4]);
    let remote_v6 = format!("fd00:{}::/48", &remote[3..4]);
    format!(
        r#"
[vnet]
name = "vnet"
address_space = ["{vnet_space}", "{v6_space}"]
gateway_subnet = "{gw_subnet}"
[vnet.interface]
name = "cw-vnet0"
netns = "{vnet_netns}"
addresses = ["{vnet_addr}", "{v6_addr}"]
[control]
socket = "{socket}"
state_dir = "{state_dir}"
{gateways}
[[connection]]
name = "s2s-1"
gateway = "vpn-gw"
type = "IPsec"
local_address = "{local}"
peer_address = "{peer}"
prefixes = ["{remote}", "{remote_v6}"]
mtu = {mtu}
[connection.manual_sa]
esp = "{esp}"
out_spi = {out_spi}
out_key = "{out_key}"
in_spi = {in_spi}
in_key = "{in_key}"
{extra}
"#,
        gw_subnet = vnet_space.replace(".0.0/16", ".255.0/27"),
        socket = socket.display(),
        state_dir = socket.with_extension("state").display(),
        out_spi = out.0,
        out_key = out.1,
        in_spi = inn.0,
        in_key = inn.1,
    )
}

impl VpnLab {
    fn new(spec: VpnSpec) -> VpnLab {
        let guard = machine(spec.exclusive);
        require_root();
        remove_stale();
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let base = format!("{PREFIX}{}x{n}", std::process::id());
        let dir = std::env::temp_dir().join(format!("{base}-vpn"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut lab = VpnLab {
            vnet: format!("{base}-vnet"),
            gwa: format!("{base}-gwa"),
            gwb: format!("{base}-gwb"),
            onprem: format!("{base}-onprem"),
            er: spec.circuit.then(|| format!("{base}-er")),
            hosts: Vec::new(),
            config_a: dir.join("a.toml"),
            dir,
            a: None,
            b: None,
            _machine: guard,
        };
        add_namespaces(lab.namespaces());
        // The underlay: a veth pair made inside the two gateway namespaces.
        add_underlay(&lab.gwa, &lab.gwb);
        let (sa, sb) = (lab.dir.join("a.sock"), lab.dir.join("b.sock"));
        let mut gateways_a = String::from("[[gateway]]\nname = \"vpn-gw\"\ntype = \"Vpn\"\n");
        gateways_a.push_str(&format!("sku = \"{}\"\n", spec.sku));
        let mut extra_a = String::new();
        if let Some(er) = &lab.er {
            gateways_a.push_str(
                "[[gateway]]\nname = \"er-gw\"\ntype = \"ExpressRoute\"\nsku = \"Standard\"\n",
            );
            extra_a = format!(
                "[[connection]]\nname = \"circuit-1\"\ngateway = \"er-gw\"\ntype = \"ExpressRoute\"\n\
                 prefixes = [\"10.3.0.0/16\"]\n[connection.interface]\nname = \"cw-er0\"\n\
                 netns = \"{er}\"\naddresses = [\"10.3.0.10/16\"]\n"
            );
        }
        let (k_ab, k_ba, k_b_in) = (
            key_for(spec.esp, KEY_AB),
            key_for(spec.esp, KEY_BA),
            key_for(spec.esp, spec.b_in_key),
        );
        let a = vpn_config(
            spec.esp,
            "10.1.0.0/16",
            &lab.vnet,
            "10.1.0.10/16",
            &sa,
            &gateways_a,
            "192.0.2.1",
            "192.0.2.2",
            "10.3.0.0/16",
            ("0x1001", &k_ab),
            ("0x2002", &k_ba),
            spec.tunnel_mtu,
            &extra_a,
        );
        let gateways_b = format!(
            "[[gateway]]\nname = \"vpn-gw\"\ntype = \"Vpn\"\nsku = \"{}\"\n",
            spec.sku
        );
        let b = vpn_config(
            spec.esp,
            "10.3.0.0/16",
            &lab.onprem,
            "10.3.0.10/16",
            &sb,
            &gateways_b,
            "192.0.2.2",
            "192.0.2.1",
            "10.1.0.0/16",
            ("0x2002", &k_ba),
            ("0x1001", &k_b_in),
            spec.tunnel_mtu,
            "",
        );
        let (ca, cb) = (lab.dir.join("a.toml"), lab.dir.join("b.toml"));
        write_config(&ca, &a);
        write_config(&cb, &b);
        lab.a = Some(Daemon::start(
            &ca,
            &sa,
            &lab.dir.join("a.log"),
            Some(&lab.gwa),
        ));
        lab.b = Some(Daemon::start(
            &cb,
            &sb,
            &lab.dir.join("b.log"),
            Some(&lab.gwb),
        ));
        lab
    }

    fn namespaces(&self) -> Vec<&String> {
        let mut v = vec![&self.vnet, &self.gwa, &self.gwb, &self.onprem];
        v.extend(self.er.iter());
        v.extend(self.hosts.iter());
        v
    }

    fn a(&self) -> &Daemon {
        self.a.as_ref().unwrap()
    }

    fn b(&self) -> &Daemon {
        self.b.as_ref().unwrap()
    }

    fn ping(&self, args: &[&str]) -> String {
        let mut a = vec!["netns", "exec", &self.vnet, "ping", "-n", "-W", "1"];
        a.extend_from_slice(args);
        text(&run(Command::new("ip").args(&a)))
    }
}

impl Drop for VpnLab {
    fn drop(&mut self) {
        drop(self.a.take());
        drop(self.b.take());
        let names: Vec<String> = self.namespaces().into_iter().cloned().collect();
        remove_namespaces(&names);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One UDP datagram of a pcap capture (Ethernet, IPv4).
struct Datagram {
    src: [u8; 4],
    dst: [u8; 4],
    sport: u16,
    dport: u16,
    payload: Vec<u8>,
}

/// One frame of a pcap capture: its captured bytes and its length on the wire.
struct Frame {
    data: Vec<u8>,
    orig_len: usize,
}

/// Reads a classic pcap file (little-endian, as tcpdump writes it here) of an Ethernet capture:
/// every frame.
fn pcap_frames(path: &Path) -> Vec<Frame> {
    let data = std::fs::read(path).unwrap_or_else(|e| panic!("pcap file {}: {e}", path.display()));
    assert!(data.len() >= 24, "pcap too short: {}", path.display());
    assert_eq!(
        u32::from_le_bytes(data[20..24].try_into().unwrap()),
        1,
        "Ethernet link type"
    );
    let mut out = Vec::new();
    let mut i = 24;
    while i + 16 <= data.len() {
        let incl = u32::from_le_bytes(data[i + 8..i + 12].try_into().unwrap()) as usize;
        let orig_len = u32::from_le_bytes(data[i + 12..i + 16].try_into().unwrap()) as usize;
        let frame = &data[i + 16..(i + 16 + incl).min(data.len())];
        i += 16 + incl;
        out.push(Frame {
            data: frame.to_vec(),
            orig_len,
        });
    }
    out
}

/// Reads a classic pcap file of an Ethernet capture: every IPv4 packet as (protocol, datagram
/// when UDP).
fn read_pcap(path: &Path) -> Vec<(u8, Option<Datagram>)> {
    let mut out = Vec::new();
    for f in pcap_frames(path) {
        let frame = &f.data[..];
        if frame.len() < 34 || frame[12..14] != [0x08, 0x00] {
            continue;
        }
        let ip = &frame[14..];
        let ihl = usize::from(ip[0] & 0xf) * 4;
        let proto = ip[9];
        let dg = (proto == 17 && ip.len() >= ihl + 8).then(|| Datagram {
            src: ip[12..16].try_into().unwrap(),
            dst: ip[16..20].try_into().unwrap(),
            sport: u16::from_be_bytes([ip[ihl], ip[ihl + 1]]),
            dport: u16::from_be_bytes([ip[ihl + 2], ip[ihl + 3]]),
            payload: ip[ihl + 8..].to_vec(),
        });
        out.push((proto, dg));
    }
    out
}

/// tcpdump of the IPv4 packets on one interface; stopped by `finish` (or `finish_file`).
struct Capture {
    child: Child,
    file: PathBuf,
}

impl Capture {
    /// On the underlay interface of daemon A.
    fn start(lab: &VpnLab) -> Capture {
        Capture::spawn(
            &lab.gwa,
            "ula",
            lab.dir.join("underlay.pcap"),
            &lab.dir.join("tcpdump.log"),
            &["-s", "2000"],
        )
    }

    /// tcpdump in namespace `ns` on `iface`, writing to `file` (its messages to `log_path`),
    /// with the extra options `opts`; bounded to 60 s. Returns once tcpdump listens.
    fn spawn(ns: &str, iface: &str, file: PathBuf, log_path: &Path, opts: &[&str]) -> Capture {
        let log = std::fs::File::create(log_path).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", ns, "timeout", "60", "tcpdump"])
            .args(["--immediate-mode", "-i", iface, "-U", "-n"])
            .args(opts)
            .arg("-w")
            .arg(&file)
            .arg("ip")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("tcpdump (scripts/deps.sh installs it)");
        // Wait until tcpdump says it listens, so that no packet is missed.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let said = std::fs::read_to_string(log_path).unwrap_or_default();
            if said.contains("listening on") {
                break;
            }
            assert!(Instant::now() < deadline, "tcpdump did not start: {said}");
            std::thread::sleep(Duration::from_millis(50));
        }
        Capture { child, file }
    }

    /// Stops tcpdump (if a packet count did not already) and returns the file it wrote.
    fn finish_file(mut self) -> PathBuf {
        std::thread::sleep(Duration::from_millis(500));
        // SIGINT to `timeout`, which passes it on to tcpdump: it flushes and exits.
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
        self.file.clone()
    }

    fn finish(self) -> Vec<(u8, Option<Datagram>)> {
        read_pcap(&self.finish_file())
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        // Still running (a test failed before `finish`): SIGTERM to `timeout` ends tcpdump too;
        // SIGKILL would leave tcpdump to the namespace's removal.
        if let Ok(None) = self.child.try_wait() {
            let _ = Command::new("kill")
                .args(["-TERM", &self.child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(2);
            while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn tunnel_stats(d: &Daemon) -> causeway_api::ConnectionStats {
    let s = d.stats();
    s.gateways
        .iter()
        .flat_map(|g| g.connections.iter())
        .find(|c| c.name == "s2s-1")
        .cloned()
        .expect("s2s-1 in stats")
}

#[test]
fn tunnel_carries_ping_and_the_underlay_sees_only_esp() {
    let lab = VpnLab::new(VpnSpec::default());
    let cap = Capture::start(&lab);
    // A recognisable payload: the ping pattern fills the ICMP data.
    let t = lab.ping(&[
        "-c",
        "5",
        "-i",
        "0.2",
        "-s",
        "300",
        "-p",
        "c0ffeec0ffee5a5a",
        "10.3.0.10",
    ]);
    assert!(
        t.contains("5 received"),
        "{t}\nA:\n{}\nB:\n{}",
        lab.a().log(),
        lab.b().log()
    );
    let packets = cap.finish();
    let esp: Vec<&Datagram> = packets.iter().filter_map(|(_, d)| d.as_ref()).collect();
    assert!(
        esp.len() >= 10,
        "5 requests and 5 replies on the underlay, saw {}",
        esp.len()
    );
    for (proto, d) in &packets {
        assert_eq!(*proto, 17, "only UDP on the underlay");
        let d = d.as_ref().unwrap();
        assert_eq!((d.sport, d.dport), (4500, 4500));
        assert!(
            !d.payload
                .windows(6)
                .any(|w| w == [0xc0, 0xff, 0xee, 0xc0, 0xff, 0xee]),
            "plaintext payload seen on the underlay"
        );
    }
    let a = tunnel_stats(lab.a());
    // IPv6 inside the tunnel too.
    let t = lab.ping(&["-c", "2", "-i", "0.2", "fd00:3::10"]);
    assert!(t.contains("2 received"), "{t}");
    let esp_a = a.esp.expect("ESP state");
    assert_eq!(esp_a.out_spi, 0x1001);
    assert!(esp_a.out_seq >= 5 && esp_a.in_seq >= 5, "{esp_a:?}");
    assert!(a.egress.packets >= 5 && a.ingress.packets >= 5);
    let st = lab.a().status();
    let c = &st.gateways[0].connections[0];
    assert_eq!(c.state, "Connected");
    let tunnel = c.tunnel.as_ref().unwrap();
    assert_eq!(tunnel.peer, "192.0.2.2:4500");
    // Keys never appear in status or stats.
    let all = format!("{st:?}{:?}", lab.a().stats());
    assert!(!all.contains("1111111111") && !all.contains("2222222222"));
}

#[test]
fn replayed_modified_and_unknown_esp_packets_are_dropped_and_counted() {
    let lab = VpnLab::new(VpnSpec::default());
    let cap = Capture::start(&lab);
    let t = lab.ping(&["-c", "3", "-i", "0.2", "10.3.0.10"]);
    assert!(t.contains("3 received"), "{t}");
    let packets = cap.finish();
    // An ESP packet from B to A (an echo reply).
    let from_b = packets
        .iter()
        .filter_map(|(_, d)| d.as_ref())
        .find(|d| d.src == [192, 0, 2, 2] && d.dst == [192, 0, 2, 1])
        .unwrap_or_else(|| {
            let seen: Vec<_> = packets
                .iter()
                .map(|(p, d)| (p, d.as_ref().map(|d| (d.src, d.dst, d.sport, d.dport))))
                .collect();
            panic!(
                "no captured ESP packet from B among {seen:?}; tcpdump: {}",
                std::fs::read_to_string(lab.dir.join("tcpdump.log")).unwrap_or_default()
            )
        });
    let before = tunnel_stats(lab.a());
    // Send datagrams from B's namespace as if from the peer.
    let sock = causeway_sys::netns::run_in(&lab.gwb, || std::net::UdpSocket::bind("192.0.2.2:0"))
        .unwrap()
        .unwrap();
    let to_a = "192.0.2.1:4500";
    sock.send_to(&from_b.payload, to_a).unwrap();
    let mut modified = from_b.payload.clone();
    let mid = modified.len() / 2;
    modified[mid] ^= 0x01;
    // A new sequence number so that the replay check passes and the ICV has to decide.
    modified[4..8].copy_from_slice(&1_000u32.to_be_bytes());
    sock.send_to(&modified, to_a).unwrap();
    let mut unknown = from_b.payload.clone();
    unknown[0..4].copy_from_slice(&0x0bad_0badu32.to_be_bytes());
    sock.send_to(&unknown, to_a).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let after = tunnel_stats(lab.a());
    assert_eq!(
        after.ingress.drops["esp_replayed"] - before.ingress.drops["esp_replayed"],
        1
    );
    assert_eq!(
        after.ingress.drops["esp_auth_failed"] - before.ingress.drops["esp_auth_failed"],
        1
    );
    assert_eq!(
        after.ingress.packets, before.ingress.packets,
        "nothing delivered"
    );
    let gw = &lab.a().stats().gateways[0];
    assert_eq!(gw.ingress.drops["esp_no_sa"], 1);
    // The tunnel still works after the forgery (the window did not move).
    let t = lab.ping(&["-c", "2", "-i", "0.2", "10.3.0.10"]);
    assert!(t.contains("2 received"), "{t}");
}

#[test]
fn wrong_keys_deliver_nothing_and_are_counted() {
    let lab = VpnLab::new(VpnSpec {
        b_in_key: "3333333333333333333333333333333333333333333333333333333333333333aabbccdd",
        ..VpnSpec::default()
    });
    let t = lab.ping(&["-c", "3", "-i", "0.2", "10.3.0.10"]);
    assert!(t.contains(" 0 received"), "{t}");
    let b = tunnel_stats(lab.b());
    assert_eq!(b.ingress.drops["esp_auth_failed"], 3);
    assert_eq!(b.ingress.packets, 0, "nothing reached B's side");
    assert_eq!(b.esp.unwrap().in_seq, 0, "the replay window never moved");
}

#[test]
fn the_tunnel_handles_too_big_packets_like_a_circuit() {
    let lab = VpnLab::new(VpnSpec::default());
    // 1472 bytes of ICMP data: a 1500-byte packet over the 1400-byte tunnel MTU.
    let t = lab.ping(&["-c", "1", "-M", "do", "-s", "1472", "10.3.0.10"]);
    assert!(
        t.contains("From 10.1.255.4") && t.contains("mtu = 1400"),
        "{t}"
    );
    // DF clear: fragmented before encryption, reassembled by the far host, answered.
    let t = lab.ping(&[
        "-c",
        "2",
        "-i",
        "0.3",
        "-M",
        "dont",
        "-s",
        "1472",
        "10.3.0.10",
    ]);
    assert!(t.contains("2 received"), "{t}");
    let a = tunnel_stats(lab.a());
    assert_eq!(a.egress.drops["too_big"], 1);
    assert!(
        a.egress.packets >= 4,
        "two fragments per request: {:?}",
        a.egress
    );
}

#[test]
fn a_circuit_wins_over_a_tunnel_for_the_same_prefix_which_is_its_backup() {
    let lab = VpnLab::new(VpnSpec {
        circuit: true,
        ..VpnSpec::default()
    });
    let er = lab.er.clone().unwrap();
    let counts = || {
        let s = lab.a().stats();
        let find = |name: &str| {
            s.gateways
                .iter()
                .flat_map(|g| g.connections.iter())
                .find(|c| c.name == name)
                .map(|c| c.egress.packets)
                .unwrap()
        };
        (find("circuit-1"), find("s2s-1"))
    };
    let t = lab.ping(&["-c", "3", "-i", "0.2", "10.3.0.10"]);
    assert!(t.contains("3 received"), "{t}");
    assert_eq!(counts(), (3, 0), "the circuit carries the shared prefix");
    run(Command::new("ip").args(["-n", &er, "link", "set", "cw-er0", "down"]));
    let deadline = Instant::now() + Duration::from_secs(5);
    while lab
        .a()
        .status()
        .gateways
        .iter()
        .flat_map(|g| g.connections.iter())
        .any(|c| c.name == "circuit-1" && c.routed)
    {
        assert!(
            Instant::now() < deadline,
            "the circuit's routes were never withdrawn"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let t = lab.ping(&["-c", "3", "-i", "0.2", "10.3.0.10"]);
    assert!(t.contains("3 received"), "{t}");
    assert_eq!(
        counts(),
        (3, 3),
        "the tunnel is the backup while the circuit is down"
    );
    run(Command::new("ip").args(["-n", &er, "link", "set", "cw-er0", "up"]));
    let deadline = Instant::now() + Duration::from_secs(5);
    while !lab
        .a()
        .status()
        .gateways
        .iter()
        .flat_map(|g| g.connections.iter())
        .any(|c| c.name == "circuit-1" && c.routed)
    {
        assert!(Instant::now() < deadline, "the circuit never came back");
        std::thread::sleep(Duration::from_millis(100));
    }
    let t = lab.ping(&["-c", "3", "-i", "0.2", "10.3.0.10"]);
    assert!(t.contains("3 received"), "{t}");
    assert_eq!(counts(), (6, 3), "failback to the circuit");
}

#[test]
fn iperf3_through_a_vpngw1_tunnel_is_held_to_650_mbit() {
    let lab = VpnLab::new(VpnSpec {
        exclusive: true,
        ..VpnSpec::default()
    });
    let up = iperf3(&lab.vnet, &lab.onprem, "10.3.0.10", 6, false);
    assert_band(up, 650.0, "VpnGw1 tunnel, VNet -> on-premises");
    let down = iperf3(&lab.vnet, &lab.onprem, "10.3.0.10", 6, true);
    assert_band(down, 650.0, "VpnGw1 tunnel, on-premises -> VNet");
}

#[test]
fn icmp_errors_about_tunnel_traffic_go_back_through_the_tunnel() {
    let lab = VpnLab::new(VpnSpec::default());
    // From the on-premises host with TTL 2: gateway B forwards it (TTL 1) into the tunnel, and
    // gateway A must answer "time exceeded" from its own address, sealed back to B.
    let o = run(Command::new("ip").args([
        "netns",
        "exec",
        &lab.onprem,
        "ping",
        "-n",
        "-W",
        "1",
        "-c",
        "1",
        "-t",
        "2",
        "10.1.0.10",
    ]));
    let t = text(&o);
    assert!(
        t.contains("From 10.1.255.4") && t.contains("Time to live exceeded"),
        "{t}"
    );
    let a = tunnel_stats(lab.a());
    assert_eq!(a.ingress.drops["ttl_expired"], 1);
    assert_eq!(a.ingress.icmp_errors_sent, 1);
    assert!(a.esp.unwrap().out_seq >= 1, "the error left sealed");
}

#[test]
fn a_restarted_manual_sa_never_reuses_a_sequence_number() {
    let mut lab = VpnLab::new(VpnSpec::default());
    let t = lab.ping(&["-c", "2", "-i", "0.2", "10.3.0.10"]);
    assert!(t.contains("2 received"), "{t}");
    let before = tunnel_stats(lab.a()).esp.unwrap().out_seq;
    assert!((2..100).contains(&before), "{before}");
    // Restart gateway A with the same keys: its SA resumes above its lease, so no AES-GCM nonce
    // is reused, and B's replay window (which only moves forward) accepts the packets.
    drop(lab.a.take());
    let sock = lab.dir.join("a.sock");
    lab.a = Some(Daemon::start(
        &lab.config_a,
        &sock,
        &lab.dir.join("a2.log"),
        Some(&lab.gwa),
    ));
    let t = lab.ping(&["-c", "2", "-i", "0.2", "10.3.0.10"]);
    assert!(t.contains("2 received"), "{t}");
    let after = tunnel_stats(lab.a()).esp.unwrap().out_seq;
    assert!(
        after > causewayd::seqlease::LEASE,
        "resumed at {after}, inside the old lease"
    );
    assert_eq!(tunnel_stats(lab.b()).ingress.drops["esp_replayed"], 0);
}

#[test]
fn aes_cbc_hmac_sha256_tunnels_work_too() {
    let lab = VpnLab::new(VpnSpec {
        esp: "aes256-sha256",
        ..VpnSpec::default()
    });
    let t = lab.ping(&["-c", "3", "-i", "0.2", "-s", "1000", "10.3.0.10"]);
    assert!(t.contains("3 received"), "{t}\nA:\n{}", lab.a().log());
    let a = tunnel_stats(lab.a());
    assert_eq!(a.esp.as_ref().unwrap().cipher, "aes256-sha256");
    assert!(a.egress.packets >= 3 && a.ingress.packets >= 3);
}

// ---------------------------------------------------------------------------------------------
// IKEv2: Causeway (gateway A) against strongSwan's charon with kernel-libipsec, or against a
// second Causeway (gateway B), started by the tests in their own namespaces.
//
//   <base>-vnet (10.1.0.10, TUN of A)  <base>-gwa (A, 192.0.2.1) ==veth== <base>-gwb (192.0.2.2)
//   strongSwan in <base>-gwb owns 10.3.0.1/32 (inside its traffic selector); a Causeway B has its
//   TUN in <base>-onprem (10.3.0.10).

const PSK: &str = "correct horse battery staple, but longer";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Far {
    StrongSwan,
    Causeway,
}

struct IkeSpec<'a> {
    exclusive: bool,
    far: Far,
    /// Causeway A initiates (else the far side does).
    a_initiates: bool,
    /// Extra lines for A's connection (proposals, lifetimes, dpd_timeout...).
    a_extra: &'a str,
    /// Extra lines for B's connection (Causeway B only).
    b_extra: &'a str,
    /// The PSK the far side uses.
    far_psk: &'a str,
    /// strongSwan write-config options beyond the basics.
    ss_opts: &'a [&'a str],
    /// A's (and Causeway B's) VPN SKU.
    sku: &'a str,
}

impl Default for IkeSpec<'_> {
    fn default() -> Self {
        IkeSpec {
            exclusive: false,
            far: Far::StrongSwan,
            a_initiates: true,
            a_extra: "",
            b_extra: "",
            far_psk: PSK,
            ss_opts: &[],
            sku: "VpnGw1",
        }
    }
}

struct IkeLab {
    vnet: String,
    gwa: String,
    gwb: String,
    onprem: String,
    dir: PathBuf,
    a: Option<Daemon>,
    b: Option<Daemon>,
    config_a: PathBuf,
    far: Far,
    /// The far host to ping.
    target: &'static str,
    _machine: MachineGuard,
}

#[allow(clippy::too_many_arguments)]
fn ike_config(
    space: &str,
    netns: &str,
    addr: &str,
    socket: &Path,
    local: &str,
    peer: &str,
    remote: &str,
    initiate: bool,
    extra: &str,
) -> String {
    format!(
        r#"
[vnet]
name = "vnet"
address_space = ["{space}"]
gateway_subnet = "{gw}"
[vnet.interface]
name = "cw-vnet0"
netns = "{netns}"
addresses = ["{addr}"]
[control]
socket = "{socket}"
state_dir = "{state}"
[[gateway]]
name = "vpn-gw"
type = "Vpn"
sku = "VpnGw1"
[[connection]]
name = "s2s-1"
gateway = "vpn-gw"
type = "IPsec"
local_address = "{local}"
peer_address = "{peer}"
prefixes = ["{remote}"]
shared_key = "{PSK}"
initiate = {initiate}
{extra}
"#,
        gw = space.replace(".0.0/16", ".255.0/27"),
        socket = socket.display(),
        state = socket.with_extension("state").display(),
    )
}

impl IkeLab {
    fn new(spec: IkeSpec) -> IkeLab {
        let guard = machine(spec.exclusive);
        require_root();
        remove_stale();
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let base = format!("{PREFIX}{}x{n}", std::process::id());
        // The vici socket path must stay short: a short directory.
        let dir = std::env::temp_dir().join(format!("{base}-ike"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut lab = IkeLab {
            vnet: format!("{base}-vnet"),
            gwa: format!("{base}-gwa"),
            gwb: format!("{base}-gwb"),
            onprem: format!("{base}-onprem"),
            config_a: dir.join("a.toml"),
            dir,
            a: None,
            b: None,
            far: spec.far,
            target: if spec.far == Far::StrongSwan {
                "10.3.0.1"
            } else {
                "10.3.0.10"
            },
            _machine: guard,
        };
        add_namespaces(lab.namespaces());
        add_underlay(&lab.gwa, &lab.gwb);
        let sa = lab.dir.join("a.sock");
        let a = ike_config(
            "10.1.0.0/16",
            &lab.vnet,
            "10.1.0.10/16",
            &sa,
            "192.0.2.1",
            "192.0.2.2",
            "10.3.0.0/16",
            spec.a_initiates,
            spec.a_extra,
        )
        .replace("sku = \"VpnGw1\"", &format!("sku = \"{}\"", spec.sku));
        write_config(&lab.config_a, &a);
        match spec.far {
            Far::StrongSwan => {
                run(Command::new("ip").args([
                    "-n",
                    &lab.gwb,
                    "addr",
                    "add",
                    "10.3.0.1/32",
                    "dev",
                    "lo",
                ]));
                let conf = lab.ss_dir();
                let start = if spec.a_initiates { "none" } else { "start" };
                let mut args = vec![
                    "write-config".to_string(),
                    conf.display().to_string(),
                    "--local".into(),
                    "192.0.2.2".into(),
                    "--remote".into(),
                    "192.0.2.1".into(),
                    "--local-ts".into(),
                    "10.3.0.0/16".into(),
                    "--remote-ts".into(),
                    "10.1.0.0/16".into(),
                    "--psk".into(),
                    spec.far_psk.into(),
                    "--start-action".into(),
                    start.into(),
                    "--log".into(),
                    "1".into(),
                ];
                args.extend(spec.ss_opts.iter().map(|s| s.to_string()));
                let o = run(Command::new(repo_root().join("scripts/strongswan.sh")).args(&args));
                assert!(o.status.success(), "strongswan write-config: {}", text(&o));
                lab.start_strongswan();
            }
            Far::Causeway => {
                let sb = lab.dir.join("b.sock");
                let b = ike_config(
                    "10.3.0.0/16",
                    &lab.onprem,
                    "10.3.0.10/16",
                    &sb,
                    "192.0.2.2",
                    "192.0.2.1",
                    "10.1.0.0/16",
                    !spec.a_initiates,
                    spec.b_extra,
                )
                .replace(PSK, spec.far_psk)
                .replace("sku = \"VpnGw1\"", &format!("sku = \"{}\"", spec.sku));
                let cb = lab.dir.join("b.toml");
                write_config(&cb, &b);
                lab.b = Some(Daemon::start(
                    &cb,
                    &sb,
                    &lab.dir.join("b.log"),
                    Some(&lab.gwb),
                ));
            }
        }
        lab.a = Some(Daemon::start(
            &lab.config_a,
            &sa,
            &lab.dir.join("a.log"),
            Some(&lab.gwa),
        ));
        lab
    }

    fn ss_dir(&self) -> PathBuf {
        self.dir.join("ss")
    }

    fn start_strongswan(&self) {
        let o = run(Command::new(repo_root().join("scripts/strongswan.sh"))
            .args(["start", "peer", &self.gwb])
            .arg(self.ss_dir()));
        assert!(o.status.success(), "strongswan start: {}", text(&o));
    }

    fn stop_strongswan(&self) {
        let _ = run(Command::new(repo_root().join("scripts/strongswan.sh"))
            .args(["stop", "peer"])
            .arg(self.ss_dir()));
    }

    fn ss_sas(&self) -> String {
        text(&run(Command::new(
            repo_root().join("scripts/strongswan.sh"),
        )
        .arg("list-sas")
        .arg(self.ss_dir())))
    }

    fn namespaces(&self) -> Vec<&String> {
        vec![&self.vnet, &self.gwa, &self.gwb, &self.onprem]
    }

    fn a(&self) -> &Daemon {
        self.a.as_ref().unwrap()
    }

    fn logs(&self) -> String {
        let far = match self.far {
            Far::StrongSwan => {
                std::fs::read_to_string(self.ss_dir().join("charon.log")).unwrap_or_default()
            }
            Far::Causeway => self.b.as_ref().map(Daemon::log).unwrap_or_default(),
        };
        format!("--- A:\n{}\n--- far side:\n{far}", self.a().log())
    }

    /// Waits (15 s at most) until A's tunnel reports an IKE error containing `needle`, and
    /// checks that it is not connected.
    fn wait_error(&self, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let ike = self.tunnel().ike.unwrap();
            let e = ike.last_error.as_deref().unwrap_or("").to_lowercase();
            if e.contains(needle) {
                assert_ne!(ike.state, "Connected", "{ike:?}");
                return;
            }
            assert!(
                Instant::now() < deadline,
                "no `{needle}` error: {ike:?}\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn tunnel(&self) -> causeway_api::TunnelStatus {
        self.a().status().gateways[0].connections[0]
            .tunnel
            .clone()
            .unwrap()
    }

    /// Waits until A's tunnel is Connected (an SA installed), at most `secs`.
    fn wait_connected(&self, secs: u64) -> Duration {
        let t = Instant::now();
        let deadline = t + Duration::from_secs(secs);
        loop {
            let c = &self.a().status().gateways[0].connections[0];
            if c.state == "Connected" && c.tunnel.as_ref().is_some_and(|t| t.esp.out_spi != 0) {
                return t.elapsed();
            }
            assert!(
                Instant::now() < deadline,
                "not connected after {secs} s: {c:?}\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn ping(&self, count: u32) -> String {
        let c = count.to_string();
        let mut a = vec![
            "netns", "exec", &self.vnet, "ping", "-n", "-W", "1", "-i", "0.2", "-c", &c,
        ];
        a.push(self.target);
        text(&run(Command::new("ip").args(&a)))
    }

    fn far_ns(&self) -> &str {
        match self.far {
            Far::StrongSwan => &self.gwb,
            Far::Causeway => &self.onprem,
        }
    }
}

impl Drop for IkeLab {
    fn drop(&mut self) {
        drop(self.a.take());
        drop(self.b.take());
        if self.far == Far::StrongSwan {
            self.stop_strongswan();
        }
        let names: Vec<String> = self.namespaces().into_iter().cloned().collect();
        remove_namespaces(&names);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn ike_causeway_initiates_to_strongswan_aes_gcm_ecp256() {
    let lab = IkeLab::new(IkeSpec::default());
    lab.wait_connected(15);
    let t = lab.ping(3);
    assert!(t.contains("3 received"), "{t}\n{}", lab.logs());
    let mbps = iperf3(&lab.vnet, lab.far_ns(), lab.target, 3, false);
    assert!(
        mbps > 50.0,
        "iperf3 across: {mbps:.0} Mbit/s\n{}",
        lab.logs()
    );
    let tunnel = lab.tunnel();
    let ike = tunnel.ike.clone().unwrap();
    assert_eq!(tunnel.keying, "ike");
    assert_eq!(
        ike.ike_algorithms.as_deref(),
        Some("aes256gcm16-prfsha256-ecp256"),
        "{ike:?}"
    );
    assert_eq!(tunnel.esp.cipher, "aes256gcm16");
    let sas = lab.ss_sas();
    assert!(
        sas.contains("ESTABLISHED") && sas.contains("INSTALLED"),
        "{sas}"
    );
    assert!(
        sas.contains(&format!("{:08x}", tunnel.esp.out_spi)),
        "strongSwan's inbound SPI is our outbound one:\n{sas}"
    );
}

#[test]
fn reload_removing_an_ike_tunnel_deletes_it_at_strongswan_and_adding_it_back_reconnects() {
    let lab = IkeLab::new(IkeSpec::default());
    lab.wait_connected(15);
    let t = lab.ping(2);
    assert!(t.contains("2 received"), "{t}\n{}", lab.logs());
    let original = std::fs::read_to_string(&lab.config_a).unwrap();
    // Everything from the connection on goes: the Vpn gateway stays, without tunnels.
    let cut = original.find("[[connection]]").unwrap();
    write_config(&lab.config_a, &original[..cut]);
    let socket = lab.dir.join("a.sock");
    let o = cli_reload(&socket);
    assert!(o.status.success(), "{}\n{}", text(&o), lab.logs());
    assert!(text(&o).contains("s2s-1"), "{}", text(&o));
    // strongSwan got the Delete: its SAs are gone at once, not after a dead-peer timeout.
    eventually(3, "strongSwan deleting the IKE SA", || {
        !lab.ss_sas().contains("ESTABLISHED")
    });
    assert!(lab.a().status().gateways[0].connections.is_empty());
    // The VNet side has no route to the far prefix any more.
    let t = lab.ping(1);
    assert!(t.contains("Network is unreachable"), "{t}");
    // Back in the file: the tunnel is negotiated again and carries traffic.
    write_config(&lab.config_a, &original);
    let o = cli_reload(&socket);
    assert!(o.status.success(), "{}\n{}", text(&o), lab.logs());
    lab.wait_connected(15);
    let t = lab.ping(2);
    assert!(t.contains("2 received"), "{t}\n{}", lab.logs());
    assert!(lab.ss_sas().contains("INSTALLED"), "{}", lab.ss_sas());
}

#[test]
fn ike_strongswan_initiates_to_causeway_aes_cbc_modp2048() {
    let lab = IkeLab::new(IkeSpec {
        a_initiates: false,
        ss_opts: &["--ike", "aes256-sha256-modp2048", "--esp", "aes256-sha256"],
        ..IkeSpec::default()
    });
    lab.wait_connected(20);
    let t = lab.ping(3);
    assert!(t.contains("3 received"), "{t}\n{}", lab.logs());
    let tunnel = lab.tunnel();
    let ike = tunnel.ike.unwrap().ike_algorithms.unwrap_or_default();
    assert!(
        ike.starts_with("aes256-sha256") && ike.ends_with("modp2048"),
        "{ike}"
    );
    assert_eq!(tunnel.esp.cipher, "aes256-sha256");
    let mbps = iperf3(&lab.vnet, lab.far_ns(), lab.target, 3, false);
    assert!(
        mbps > 50.0,
        "iperf3 across: {mbps:.0} Mbit/s\n{}",
        lab.logs()
    );
}

#[test]
fn ike_proposal_mismatch_and_a_bad_psk_are_reported() {
    let lab = IkeLab::new(IkeSpec {
        a_extra: "ike_proposals = [\"aes128-sha256-modp2048\"]",
        ..IkeSpec::default()
    });
    lab.wait_error("proposal");
    assert!(
        lab.a().log().contains("s2s-1"),
        "the log names the connection"
    );
    drop(lab);
    let lab = IkeLab::new(IkeSpec {
        far_psk: "not the same key at all, sorry",
        ..IkeSpec::default()
    });
    lab.wait_error("auth");
    assert!(lab.ping(2).contains(" 0 received"));
}

#[test]
fn ike_causeway_to_causeway_with_byte_lifetime_rekeys_under_load() {
    let lab = IkeLab::new(IkeSpec {
        exclusive: true,
        far: Far::Causeway,
        a_extra: "child_lifetime_bytes = \"60MB\"",
        b_extra: "child_lifetime_bytes = \"60MB\"",
        ..IkeSpec::default()
    });
    lab.wait_connected(15);
    let first = lab.tunnel().esp.out_spi;
    // About 230 MB at the VpnGw1 rate: several rekeys by bytes during the transfer.
    let mbps = iperf3(&lab.vnet, lab.far_ns(), lab.target, 4, false);
    assert!(
        mbps > 400.0,
        "the transfer went on through the rekeys: {mbps:.0} Mbit/s\n{}",
        lab.logs()
    );
    std::thread::sleep(Duration::from_millis(1500));
    let now = lab.tunnel().esp.out_spi;
    assert_ne!(first, now, "the child SA was rekeyed\n{}", lab.logs());
    assert!(
        lab.a().log().matches("rekey=true").count() >= 1,
        "{}",
        lab.logs()
    );
    let t = lab.ping(2);
    assert!(t.contains("2 received"), "{t}");
}

#[test]
fn ike_rekey_initiated_by_strongswan_under_load() {
    let lab = IkeLab::new(IkeSpec {
        exclusive: true,
        ss_opts: &["--rekey-time", "6s", "--ike-rekey-time", "9s"],
        ..IkeSpec::default()
    });
    lab.wait_connected(15);
    let first = lab.tunnel().esp.out_spi;
    let mbps = iperf3(&lab.vnet, lab.far_ns(), lab.target, 12, false);
    assert!(
        mbps > 50.0,
        "the transfer went on through the rekeys: {mbps:.0} Mbit/s\n{}",
        lab.logs()
    );
    let now = lab.tunnel();
    assert_ne!(first, now.esp.out_spi, "child SA rekeyed\n{}", lab.logs());
    assert_eq!(now.ike.unwrap().state, "Connected");
    let t = lab.ping(2);
    assert!(t.contains("2 received"), "{t}\n{}", lab.logs());
}

#[test]
fn ike_tunnel_comes_back_after_the_peer_or_causeway_restarts() {
    let mut lab = IkeLab::new(IkeSpec {
        a_extra: "dpd_timeout = \"9s\"",
        ..IkeSpec::default()
    });
    lab.wait_connected(15);
    // strongSwan killed and restarted: A notices (DPD or the peer's INVALID_IKE_SPI) and
    // reconnects by itself.
    lab.stop_strongswan();
    std::thread::sleep(Duration::from_secs(1));
    lab.start_strongswan();
    let t = Instant::now();
    // Within the DPD timeout plus a few seconds.
    let deadline = t + Duration::from_secs(9 + 8);
    loop {
        let ok = lab.ping(1).contains("1 received");
        if ok {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the tunnel did not come back\n{}",
            lab.logs()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    eprintln!(
        "tunnel back {:.1} s after strongSwan restarted",
        t.elapsed().as_secs_f64()
    );
    // Causeway restarted: the tunnel comes back without touching strongSwan.
    drop(lab.a.take());
    let sa = lab.dir.join("a.sock");
    lab.a = Some(Daemon::start(
        &lab.config_a,
        &sa,
        &lab.dir.join("a2.log"),
        Some(&lab.gwa),
    ));
    lab.wait_connected(15);
    let t = lab.ping(3);
    assert!(t.contains("3 received"), "{t}\n{}", lab.logs());
}

#[test]
fn ike_causeway_to_causeway_other_roles_bad_psk_and_restart() {
    // B initiates, A responds.
    let mut lab = IkeLab::new(IkeSpec {
        far: Far::Causeway,
        a_initiates: false,
        a_extra:
            "ike_proposals = [\"aes256-sha256-modp2048\"]\nesp_proposals = [\"aes256-sha256\"]",
        b_extra:
            "ike_proposals = [\"aes256-sha256-modp2048\"]\nesp_proposals = [\"aes256-sha256\"]",
        ..IkeSpec::default()
    });
    lab.wait_connected(20);
    let t = lab.ping(3);
    assert!(t.contains("3 received"), "{t}\n{}", lab.logs());
    assert_eq!(lab.tunnel().esp.cipher, "aes256-sha256");
    // A (the responder) restarted: B's DPD or its next message finds the SA gone, and B (the
    // initiator) comes back by itself.
    drop(lab.a.take());
    let sa = lab.dir.join("a.sock");
    lab.a = Some(Daemon::start(
        &lab.config_a,
        &sa,
        &lab.dir.join("a2.log"),
        Some(&lab.gwa),
    ));
    let deadline = Instant::now() + Duration::from_secs(60);
    while !lab.ping(1).contains("1 received") {
        assert!(Instant::now() < deadline, "not back\n{}", lab.logs());
        std::thread::sleep(Duration::from_millis(500));
    }
    drop(lab);
    // A bad PSK between two Causeways.
    let lab = IkeLab::new(IkeSpec {
        far: Far::Causeway,
        far_psk: "a different key entirely",
        ..IkeSpec::default()
    });
    lab.wait_error("auth");
}

#[test]
fn resize_standard_to_high_performance_under_load_and_refused_resizes() {
    let lab = Lab::new(LabSpec {
        exclusive: true,
        ..LabSpec::default()
    });
    let socket = lab.socket.clone();
    // Resize 4 s into an 8 s transfer.
    let resizer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(4));
        causeway_api::call(
            &socket,
            &Request::Resize {
                gateway: "er-gw".into(),
                sku: "HighPerformance".into(),
                scale_units: None,
            },
            Duration::from_secs(5),
        )
        .unwrap()
    });
    let v = iperf3_json(&lab.vnet, &lab.onprem, "10.2.0.10", 8, false);
    let r = resizer.join().unwrap();
    assert!(r.error.is_none(), "{:?}", r.error);
    assert_eq!(r.status.unwrap().gateways[0].sku, "HighPerformance");
    let rates: Vec<f64> = v["intervals"]
        .as_array()
        .expect("iperf3 intervals")
        .iter()
        .map(|i| i["sum"]["bits_per_second"].as_f64().unwrap() / 1e6)
        .collect();
    assert_eq!(rates.len(), 8, "{rates:?}");
    // Before: the Standard band; after (allowing a second for the switch): the new band; no
    // stall anywhere.
    for r in &rates[..3] {
        assert!((850.0..=1010.0).contains(r), "before the resize: {rates:?}");
    }
    // Offloads off: above Standard's 1010 at least, so the resize took effect.
    let after = cpu_floor(1700.0, 1200.0, 2000.0, "after the resize");
    for r in &rates[5..] {
        assert!((after..=2020.0).contains(r), "after the resize: {rates:?}");
    }
    assert!(rates.iter().all(|r| *r > 500.0), "a stall: {rates:?}");
    // Refused resizes, with the reason.
    let refuse = |sku: &str| {
        let r = causeway_api::call(
            &lab.socket,
            &Request::Resize {
                gateway: "er-gw".into(),
                sku: sku.into(),
                scale_units: None,
            },
            Duration::from_secs(5),
        )
        .unwrap();
        r.error
            .unwrap_or_else(|| panic!("resize to {sku} was accepted"))
    };
    assert!(refuse("UltraPerformance").contains("recreat"));
    assert!(refuse("ErGw1AZ").contains("famil"));
    assert!(refuse("VpnGw1").contains("unknown ExpressRoute SKU"));
    assert_eq!(lab.status().gateways[0].sku, "HighPerformance");
    // The CLI says it too, and exits non-zero.
    let o = run(Command::new(cli_bin())
        .arg("--socket")
        .arg(&lab.socket)
        .args(["gateway", "resize", "er-gw", "UltraPerformance"]));
    assert!(!o.status.success());
    assert!(text(&o).contains("recreat"), "{}", text(&o));
}

/// One request to the metrics endpoint; (head, body).
fn http_get(port: u16, path: &str) -> (String, String) {
    use std::io::Read;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect to metrics");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let (head, body) = out.split_once("\r\n\r\n").expect("an HTTP response");
    (head.to_string(), body.to_string())
}

/// A sample of the text exposition format: name, labels (in order), value.
type Sample = (String, Vec<(String, String)>, f64);

/// Parses every line of a Prometheus text exposition; panics on a malformed one.
fn parse_exposition(text: &str) -> Vec<Sample> {
    fn name_ok(n: &str) -> bool {
        let mut c = n.chars();
        c.next()
            .is_some_and(|f| f.is_ascii_alphabetic() || f == '_' || f == ':')
            && c.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    }
    let mut out = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix('#') {
            let mut w = rest.split_whitespace();
            match (w.next(), w.next()) {
                (Some("HELP"), Some(n)) => assert!(name_ok(n), "bad HELP: {line:?}"),
                (Some("TYPE"), Some(n)) => {
                    assert!(name_ok(n), "bad TYPE: {line:?}");
                    let t = w.next().unwrap_or("");
                    assert!(
                        ["counter", "gauge", "histogram", "summary", "untyped"].contains(&t),
                        "bad TYPE: {line:?}"
                    );
                }
                _ => panic!("malformed comment line: {line:?}"),
            }
            continue;
        }
        let end = line
            .find(['{', ' '])
            .unwrap_or_else(|| panic!("malformed: {line:?}"));
        let name = &line[..end];
        assert!(name_ok(name), "bad metric name: {line:?}");
        let mut labels = Vec::new();
        let mut rest = &line[end..];
        if let Some(r) = rest.strip_prefix('{') {
            let mut chars = r.char_indices().peekable();
            let mut closed = None;
            while let Some((i, c)) = chars.next() {
                if c == '}' {
                    closed = Some(i + 1);
                    break;
                }
                // key="value"
                let key_start = i;
                let mut key_end = i;
                let mut ch = c;
                while ch != '=' {
                    let (j, c2) = chars
                        .next()
                        .unwrap_or_else(|| panic!("malformed: {line:?}"));
                    key_end = j;
                    ch = c2;
                }
                let key = if key_end == key_start {
                    ""
                } else {
                    &r[key_start..key_end]
                };
                assert!(name_ok(key), "bad label name in {line:?}");
                assert_eq!(chars.next().map(|c| c.1), Some('"'), "malformed: {line:?}");
                let mut value = String::new();
                loop {
                    match chars.next().map(|c| c.1) {
                        Some('"') => break,
                        Some('\\') => match chars.next().map(|c| c.1) {
                            Some('\\') => value.push('\\'),
                            Some('"') => value.push('"'),
                            Some('n') => value.push('\n'),
                            _ => panic!("bad escape in {line:?}"),
                        },
                        Some('\n') | None => panic!("unterminated label value: {line:?}"),
                        Some(c) => value.push(c),
                    }
                }
                labels.push((key.to_string(), value));
                match chars.peek().map(|c| c.1) {
                    Some(',') => {
                        chars.next();
                    }
                    Some('}') => {}
                    _ => panic!("malformed label list: {line:?}"),
                }
            }
            let closed = closed.unwrap_or_else(|| panic!("unclosed labels: {line:?}"));
            rest = &r[closed..];
        }
        let value = rest
            .strip_prefix(' ')
            .unwrap_or_else(|| panic!("no value: {line:?}"));
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value: {line:?}"));
        out.push((name.to_string(), labels, value));
    }
    out
}

/// The value of the sample `name` with exactly `labels`.
fn sample(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|(n, l, _)| {
            n == name
                && l.len() == labels.len()
                && l.iter()
                    .zip(labels)
                    .all(|((k, v), (k2, v2))| k == k2 && v == v2)
        })
        .map(|s| s.2)
}

#[test]
fn metrics_endpoint_serves_the_counters_of_stats() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let extra = format!("\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n");
    let lab = Lab::new(LabSpec {
        extra: &extra,
        ..LabSpec::default()
    });
    let o = ping(&lab, true, &["-c", "3", "-i", "0.2", "10.2.0.10"]);
    assert!(text(&o).contains("3 received"), "{}", text(&o));
    let _ = ping(&lab, true, &["-c", "1", "-t", "1", "10.2.0.10"]);
    let stats = lab.stats();
    let (head, body) = http_get(port, "/metrics");
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    assert!(
        head.contains("Content-Type: text/plain; version=0.0.4"),
        "{head}"
    );
    let samples = parse_exposition(&body);
    let g = &stats.gateways[0];
    let gw = |dir: &'static str| {
        [
            ("level", "gateway"),
            ("gateway", "er-gw"),
            ("connection", ""),
            ("direction", dir),
        ]
    };
    let egress = sample(&samples, "causeway_packets_total", &gw("egress"))
        .unwrap_or_else(|| panic!("no gateway egress packets in:\n{body}"));
    assert!(
        egress >= g.egress.packets as f64 && g.egress.packets >= 3,
        "metrics {egress}, stats {}",
        g.egress.packets
    );
    let ingress = sample(&samples, "causeway_packets_total", &gw("ingress")).unwrap();
    assert!(ingress >= g.ingress.packets as f64);
    // Every drop reason, at every level and direction, zeros included.
    assert!(g.egress.drops["ttl_expired"] >= 1);
    let levels = [
        ("vnet", "", "", "egress", &stats.vnet.egress),
        ("gateway", "er-gw", "", "egress", &g.egress),
        ("gateway", "er-gw", "", "ingress", &g.ingress),
        (
            "connection",
            "er-gw",
            "circuit-1",
            "egress",
            &g.connections[0].egress,
        ),
        (
            "connection",
            "er-gw",
            "circuit-1",
            "ingress",
            &g.connections[0].ingress,
        ),
    ];
    for (level, gateway, conn, dir, d) in levels {
        assert!(d.drops.len() >= 20, "{d:?}");
        for (reason, n) in &d.drops {
            let l = [
                ("level", level),
                ("gateway", gateway),
                ("connection", conn),
                ("direction", dir),
                ("reason", reason.as_str()),
            ];
            let v = sample(&samples, "causeway_drops_total", &l)
                .unwrap_or_else(|| panic!("no drops sample {l:?} in:\n{body}"));
            assert!(v >= *n as f64, "{l:?}: metrics {v}, stats {n}");
        }
    }
    let conn = [("gateway", "er-gw"), ("connection", "circuit-1")];
    assert_eq!(sample(&samples, "causeway_connection_up", &conn), Some(1.0));
    let gwl = [("gateway", "er-gw")];
    assert_eq!(
        sample(&samples, "causeway_gateway_bits_per_second_limit", &gwl),
        Some(1e9)
    );
    assert_eq!(
        sample(&samples, "causeway_gateway_packets_per_second_limit", &gwl),
        Some(1e5)
    );
    assert!(sample(&samples, "causeway_uptime_seconds", &[]).is_some());
    // Per-stage histograms: each worker times its first packet (then 1 in 64), so the pings
    // were timed in both pipelines and on the TUN writes; buckets are cumulative.
    for stage in ["egress_pipeline", "ingress_pipeline", "tun_write"] {
        let count = sample(
            &samples,
            "causeway_stage_duration_seconds_count",
            &[("stage", stage)],
        )
        .unwrap_or_else(|| panic!("no {stage} histogram in:\n{body}"));
        assert!(count >= 1.0, "{stage}: {count}");
        let inf = sample(
            &samples,
            "causeway_stage_duration_seconds_bucket",
            &[("stage", stage), ("le", "+Inf")],
        );
        assert_eq!(inf, Some(count), "{stage}");
        let sum = sample(
            &samples,
            "causeway_stage_duration_seconds_sum",
            &[("stage", stage)],
        );
        assert!(
            sum.is_some_and(|s| s > 0.0 && s < count),
            "{stage}: sum {sum:?}"
        );
    }
    let (head, _) = http_get(port, "/other");
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");
}

#[test]
fn capture_writes_egress_packets_of_a_circuit_to_a_pcap_file() {
    let lab = Lab::new(LabSpec::default());
    let file = lab.dir.join("egress.pcap");
    let cli = |args: &[&str]| {
        run(Command::new(cli_bin())
            .arg("--socket")
            .arg(&lab.socket)
            .args(args))
    };
    let file_arg = file.to_str().unwrap().to_string();
    let capture = std::thread::scope(|s| {
        let t = s.spawn(|| {
            cli(&[
                "capture",
                "--connection",
                "circuit-1",
                "--direction",
                "egress",
                "--count",
                "4",
                "--file",
                &file_arg,
                "--timeout",
                "20",
            ])
        });
        // The daemon writes the pcap header when the capture starts.
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::fs::metadata(&file).map_or(0, |m| m.len()) < 24 {
            assert!(Instant::now() < deadline, "the capture did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        let o = ping(&lab, true, &["-c", "4", "-i", "0.2", "10.2.0.10"]);
        assert!(text(&o).contains("4 received"), "{}", text(&o));
        t.join().unwrap()
    });
    let t = text(&capture);
    assert!(capture.status.success(), "{t}\n{}", lab.log());
    assert!(
        t.contains(&format!("captured 4 packets to {file_arg}")),
        "{t}"
    );
    let o = run(Command::new("tcpdump").arg("-r").arg(&file).arg("-n"));
    let dump = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(o.status.success(), "{}", text(&o));
    let requests = dump
        .lines()
        .filter(|l| l.contains("10.1.0.10 > 10.2.0.10: ICMP echo request"))
        .count();
    assert_eq!(requests, 4, "{dump}");
    assert_eq!(dump.lines().count(), 4, "{dump}");
    // An unknown connection is refused, naming the known ones.
    let o = cli(&[
        "capture",
        "--connection",
        "nope",
        "--count",
        "1",
        "--file",
        &file_arg,
    ]);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("no connection `nope`") && text(&o).contains("circuit-1"),
        "{}",
        text(&o)
    );
}

// ---------------------------------------------------------------------------------------------
// Correctness under offload, seen from the far side: a host behind each end of a circuit or a
// tunnel, so that what a gateway writes to its TUN is forwarded by the kernel of the namespace
// behind it onto a veth without offloads (segmented and checksummed in software, as on a wire)
// and captured on the host behind that, where the test checks every segment itself.
//
//   <base>-vfar (10.1.200.1) --veth-- <base>-vnet [TUN of A] ==circuit or tunnel== [TUN]
//   <base>-onprem --veth-- <base>-far (10.X.200.1: 10.2 behind a circuit, 10.3 behind a tunnel)

/// Creates host namespace `host` behind `router` (an existing namespace, which starts to
/// forward): a veth pair `cwr0` (in `router`, `net`.2/24) - `cwh0` (in `host`, `net`.1/24), and
/// the host's default route through it. The router's end gets no TSO, GSO or checksum offload,
/// so the kernel segments and checksums in software whatever it forwards to the host (a capture
/// there sees packets as a wire would carry them); the host's end no GRO, so a capture sees
/// every segment on its own.
fn add_host_behind(router: &str, host: &str, net: &str) {
    add_namespaces([&host.to_string()]);
    let o = run(Command::new("ip").args([
        "-n", router, "link", "add", "cwr0", "type", "veth", "peer", "name", "cwh0", "netns", host,
    ]));
    assert!(o.status.success(), "veth: {}", text(&o));
    let (router_addr, host_addr) = (format!("{net}.2"), format!("{net}.1"));
    for (ns, dev, addr) in [(router, "cwr0", &router_addr), (host, "cwh0", &host_addr)] {
        for args in [
            vec!["-n", ns, "addr", "add", &format!("{addr}/24"), "dev", dev],
            vec!["-n", ns, "link", "set", dev, "up"],
        ] {
            let o = run(Command::new("ip").args(&args));
            assert!(o.status.success(), "ip {args:?}: {}", text(&o));
        }
    }
    for (ns, args) in [
        (
            host,
            &["ip", "route", "add", "default", "via", &router_addr][..],
        ),
        (router, &["sysctl", "-qw", "net.ipv4.ip_forward=1"][..]),
        (
            router,
            &[
                "ethtool", "-K", "cwr0", "tso", "off", "gso", "off", "tx", "off",
            ][..],
        ),
        (host, &["ethtool", "-K", "cwh0", "gro", "off"][..]),
    ] {
        let o = run(Command::new("ip").args(["netns", "exec", ns]).args(args));
        assert!(
            o.status.success(),
            "{args:?} in {ns} (scripts/deps.sh installs ethtool): {}",
            text(&o)
        );
    }
}

/// The ones' complement sum of `data` (16-bit big-endian words, an odd byte padded) added to
/// `sum`, not folded.
fn ones_sum(mut sum: u64, data: &[u8]) -> u64 {
    let mut words = data.chunks_exact(2);
    for w in &mut words {
        sum += u64::from(u16::from_be_bytes([w[0], w[1]]));
    }
    if let [b] = words.remainder() {
        sum += u64::from(*b) << 8;
    }
    sum
}

fn fold(mut sum: u64) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// What [`check_segments`] found in one capture.
#[derive(Debug, Default)]
struct SegmentCheck {
    /// IPv4 packets checked.
    ipv4: usize,
    /// TCP segments from `from`, and those of them that carry data.
    tcp: usize,
    tcp_data: usize,
    /// UDP datagrams from `from`.
    udp: usize,
    /// The largest TCP payload and IPv4 total length from `from`.
    max_tcp_payload: usize,
    max_ip_len: usize,
    /// UDP datagrams whose checksum field is 0 ("no checksum", RFC 768) while their content sums
    /// to a checksum of 0xffff: a sender that completed the checksum without mapping a computed
    /// 0 to 0xffff (the kernel does). Legal on IPv4, so only counted.
    udp_zero_for_ffff: usize,
    /// Every problem found.
    bad: Vec<String>,
}

/// Checks every IPv4 frame of a capture: captured whole, a valid IPv4 header checksum and total
/// length, no fragment, a valid TCP or UDP checksum (pseudo-header included); and for what comes
/// from `from` (the far sender), TCP payloads of at most `mss` and packets of at most `mtu`.
fn check_segments(frames: &[Frame], from: [u8; 4], mtu: usize, mss: usize) -> SegmentCheck {
    let mut c = SegmentCheck::default();
    for (n, f) in frames.iter().enumerate() {
        let mut bad = |what: String| {
            if c.bad.len() < 20 {
                c.bad.push(format!("frame {n}: {what}"));
            } else if c.bad.len() == 20 {
                c.bad.push("(more not shown)".into());
            }
        };
        let frame = &f.data[..];
        if frame.len() < 14 || frame[12..14] != [0x08, 0x00] {
            continue;
        }
        if frame.len() != f.orig_len {
            bad(format!("captured {} of {} bytes", frame.len(), f.orig_len));
            continue;
        }
        c.ipv4 += 1;
        let ip = &frame[14..];
        let ihl = usize::from(ip.first().map_or(0, |b| b & 0xf)) * 4;
        if ip.len() < 20 || ip[0] >> 4 != 4 || ihl < 20 || ip.len() < ihl {
            bad(format!(
                "malformed IPv4 header: {:02x?}",
                &ip[..ip.len().min(20)]
            ));
            continue;
        }
        let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
        // Ethernet pads short frames: the packet is the first `total` bytes.
        if total < ihl || total > ip.len() || (ip.len() > 46 && total != ip.len()) {
            bad(format!("IPv4 total length {total} for {} bytes", ip.len()));
            continue;
        }
        let ip = &ip[..total];
        let (src, dst): ([u8; 4], [u8; 4]) = (
            ip[12..16].try_into().unwrap(),
            ip[16..20].try_into().unwrap(),
        );
        let who = format!(
            "{}.{}.{}.{} > {}.{}.{}.{}",
            src[0], src[1], src[2], src[3], dst[0], dst[1], dst[2], dst[3]
        );
        if fold(ones_sum(0, &ip[..ihl])) != 0xffff {
            bad(format!(
                "{who}: bad IPv4 header checksum {:02x?}",
                &ip[10..12]
            ));
        }
        let frag = u16::from_be_bytes([ip[6], ip[7]]);
        if frag & 0x3fff != 0 {
            bad(format!("{who}: a fragment (flags/offset {frag:#06x})"));
            continue;
        }
        let proto = ip[9];
        let l4 = &ip[ihl..];
        if proto != 6 && proto != 17 {
            continue;
        }
        let pseudo = ones_sum(0, &ip[12..20]) + u64::from(proto) + l4.len() as u64;
        let valid = fold(ones_sum(pseudo, l4)) == 0xffff;
        let ours = src == from;
        if ours {
            c.max_ip_len = c.max_ip_len.max(total);
            if total > mtu {
                bad(format!(
                    "{who}: a {total}-byte packet over the path MTU {mtu}"
                ));
            }
        }
        if proto == 6 {
            if l4.len() < 20 || l4.len() < usize::from(l4[12] >> 4) * 4 {
                bad(format!("{who}: truncated TCP header"));
                continue;
            }
            if !valid {
                bad(format!("{who}: bad TCP checksum {:02x?}", &l4[16..18]));
            }
            if ours {
                let payload = l4.len() - usize::from(l4[12] >> 4) * 4;
                c.tcp += 1;
                c.tcp_data += usize::from(payload > 0);
                c.max_tcp_payload = c.max_tcp_payload.max(payload);
                if payload > mss {
                    bad(format!(
                        "{who}: {payload} bytes of TCP payload, over the MSS {mss}"
                    ));
                }
            }
        } else {
            if l4.len() < 8 || usize::from(u16::from_be_bytes([l4[4], l4[5]])) != l4.len() {
                bad(format!("{who}: UDP length does not match the IPv4 packet"));
                continue;
            }
            if l4[6..8] == [0, 0] {
                // No checksum: fine only if the content sums to what would have been 0xffff.
                if fold(ones_sum(pseudo, l4)) == 0xffff {
                    c.udp_zero_for_ffff += 1;
                } else {
                    bad(format!("{who}: UDP without a checksum"));
                }
            } else if !valid {
                bad(format!("{who}: bad UDP checksum {:02x?}", &l4[6..8]));
            }
            c.udp += usize::from(ours);
        }
    }
    c
}

/// Between `west` (a host behind the VNet side, `west_addr`) and `east` (a host behind the far
/// gateway, `east_addr`), each way: UDP (1 s at 50 Mbit/s) then TCP (2 s, as fast as it goes),
/// captured on the receiving host and on the sending one (its ACKs), every captured segment
/// checked ([`check_segments`]). Fails naming every problem; prints what it saw.
#[allow(clippy::too_many_arguments)]
fn check_far_side(
    dir: &Path,
    west: &str,
    west_addr: [u8; 4],
    east: &str,
    east_addr: [u8; 4],
    mtu: usize,
    mss: usize,
    logs: &dyn Fn() -> String,
) {
    let dotted = |a: [u8; 4]| format!("{}.{}.{}.{}", a[0], a[1], a[2], a[3]);
    for (phase, (sender, s_addr, receiver, r_addr)) in [
        (west, west_addr, east, east_addr),
        (east, east_addr, west, west_addr),
    ]
    .into_iter()
    .enumerate()
    {
        // Full snaplen, inbound only (what the host sends itself may carry a partial checksum),
        // bounded in packets (about 45 MB) and, by `Capture::spawn`, in time.
        let opts = ["-Q", "in", "-s", "0", "-c", "30000", "-B", "16384"];
        let cap = |ns: &str, what: &str| {
            Capture::spawn(
                ns,
                "cwh0",
                dir.join(format!("far-{phase}-{what}.pcap")),
                &dir.join(format!("far-{phase}-{what}.log")),
                &opts,
            )
        };
        let at_receiver = cap(receiver, "data");
        let at_sender = cap(sender, "acks");
        let dst = dotted(r_addr);
        let udp = iperf3_with(
            sender,
            receiver,
            &dst,
            1,
            &["-u", "-b", "50M", "-l", "1200"],
        );
        assert!(udp.get("error").is_none(), "iperf3 UDP: {udp}\n{}", logs());
        let tcp = iperf3_with(sender, receiver, &dst, 2, &[]);
        assert!(tcp.get("error").is_none(), "iperf3 TCP: {tcp}\n{}", logs());
        let mbps = tcp["end"]["sum_received"]["bits_per_second"]
            .as_f64()
            .unwrap_or(0.0)
            / 1e6;
        let data = check_segments(&pcap_frames(&at_receiver.finish_file()), s_addr, mtu, mss);
        let acks = check_segments(&pcap_frames(&at_sender.finish_file()), r_addr, mtu, mss);
        eprintln!(
            "{} -> {} ({}): TCP {mbps:.0} Mbit/s; at the receiver {data:?}; at the sender {acks:?}",
            dotted(s_addr),
            dst,
            if offload_on() {
                "offload on"
            } else {
                "offload off"
            },
        );
        for (what, c) in [("receiver", &data), ("sender", &acks)] {
            assert!(
                c.bad.is_empty(),
                "{} -> {dst}, captured at the {what}: {}\n{}",
                dotted(s_addr),
                c.bad.join("\n"),
                logs()
            );
        }
        assert!(
            data.tcp_data >= 1000,
            "{} -> {dst}: only {} TCP data segments reached the receiver ({data:?})\n{}",
            dotted(s_addr),
            data.tcp_data,
            logs()
        );
        assert!(
            data.udp >= 500,
            "{} -> {dst}: only {} UDP datagrams reached the receiver ({data:?})",
            dotted(s_addr),
            data.udp
        );
        assert!(
            acks.tcp >= 100,
            "{dst} -> {}: only {} TCP segments (ACKs) came back ({acks:?})",
            dotted(s_addr),
            acks.tcp
        );
    }
}

#[test]
fn far_side_capture_behind_a_tunnel_has_valid_checksums_and_mss_sized_segments() {
    let mut lab = VpnLab::new(VpnSpec {
        exclusive: true,
        ..VpnSpec::default()
    });
    let base = lab.vnet.trim_end_matches("-vnet").to_string();
    let (vfar, far) = (format!("{base}-vfar"), format!("{base}-far"));
    // Recorded before they exist: removed with the lab even if their setup fails.
    lab.hosts = vec![vfar.clone(), far.clone()];
    add_host_behind(&lab.vnet, &vfar, "10.1.200");
    add_host_behind(&lab.onprem, &far, "10.3.200");
    // The tunnel's MTU is 1400 and the gateways clamp the MSS of SYNs to 1350 (mtu - 50).
    check_far_side(
        &lab.dir,
        &vfar,
        [10, 1, 200, 1],
        &far,
        [10, 3, 200, 1],
        1400,
        1350,
        &|| format!("A:\n{}\nB:\n{}", lab.a().log(), lab.b().log()),
    );
    // Neither gateway saw a bad IPv4 header checksum either; each sealed what it read from its
    // VNet TUN, super-packets included when offloads are on.
    for d in [lab.a(), lab.b()] {
        let s = d.stats();
        assert_eq!(s.gateways[0].egress.drops["malformed_checksum"], 0);
        assert_eq!(s.gateways[0].ingress.drops["malformed_checksum"], 0);
        assert_offload_use(&s.gateways[0].egress, "a VNet TUN");
    }
}

/// With offloads on, some TUN reads of `d` were super-packets; with them off, none.
fn assert_offload_use(d: &causeway_api::DirStats, what: &str) {
    if offload_on() {
        assert!(
            d.super_packets > 0,
            "no super-packet read from {what}: {d:?}"
        );
    } else {
        assert_eq!(
            d.super_packets, 0,
            "offload = false, yet super-packets from {what}"
        );
    }
}

#[test]
fn the_segment_checker_finds_what_it_is_meant_to() {
    // Ethernet + IPv4 + TCP with 8 bytes of data, 10.1.200.1 -> 10.3.200.1.
    let mut f = vec![0u8; 12];
    f.extend_from_slice(&[0x08, 0x00]);
    let mut ip = vec![
        0x45, 0, 0, 48, 0, 1, 0x40, 0, 64, 6, 0, 0, 10, 1, 200, 1, 10, 3, 200, 1,
    ];
    let c = !fold(ones_sum(0, &ip));
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    let mut tcp = vec![0u8; 20];
    tcp[12] = 5 << 4;
    tcp.extend_from_slice(b"payload!");
    let pseudo = ones_sum(0, &ip[12..20]) + 6 + tcp.len() as u64;
    let c = !fold(ones_sum(pseudo, &tcp));
    tcp[16..18].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&tcp);
    let frame = |data: Vec<u8>| Frame {
        orig_len: data.len(),
        data,
    };
    let from = [10, 1, 200, 1];
    let good = check_segments(&[frame(f.clone())], from, 1500, 1460);
    assert!(good.bad.is_empty(), "{good:?}");
    assert_eq!((good.tcp, good.tcp_data, good.max_tcp_payload), (1, 1, 8));
    // One payload bit, the IPv4 header, an MSS too small, a truncated capture.
    let mut payload = f.clone();
    *payload.last_mut().unwrap() ^= 1;
    let mut header = f.clone();
    header[14 + 8] -= 1;
    let mut short = frame(f.clone());
    short.data.pop();
    for (frames, mss, what) in [
        (vec![frame(payload)], 1460, "bad TCP checksum"),
        (vec![frame(header)], 1460, "bad IPv4 header checksum"),
        (vec![frame(f.clone())], 4, "over the MSS 4"),
        (vec![short], 1460, "captured 61 of 62 bytes"),
    ] {
        let c = check_segments(&frames, from, 1500, mss);
        assert!(c.bad.len() == 1 && c.bad[0].contains(what), "{what}: {c:?}");
    }
}

#[test]
fn far_side_capture_behind_a_circuit_has_valid_checksums_and_mtu_sized_segments() {
    let mut lab = Lab::new(LabSpec {
        exclusive: true,
        ..LabSpec::default()
    });
    let base = lab.vnet.trim_end_matches("-vnet").to_string();
    let (vfar, far) = (format!("{base}-vfar"), format!("{base}-far"));
    lab.hosts = vec![vfar.clone(), far.clone()];
    add_host_behind(&lab.vnet, &vfar, "10.1.200");
    add_host_behind(&lab.onprem, &far, "10.2.200");
    // The circuit's MTU is 1500: TCP segments of at most 1460 bytes.
    check_far_side(
        &lab.dir,
        &vfar,
        [10, 1, 200, 1],
        &far,
        [10, 2, 200, 1],
        1500,
        1460,
        &|| lab.log(),
    );
    let s = lab.stats();
    assert_eq!(s.gateways[0].egress.drops["malformed_checksum"], 0);
    assert_eq!(s.gateways[0].ingress.drops["malformed_checksum"], 0);
    assert_offload_use(&s.gateways[0].egress, "the VNet TUN");
    assert_offload_use(&s.gateways[0].ingress, "the circuit TUN");
}
