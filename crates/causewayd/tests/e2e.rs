//! End-to-end tests: the real `causewayd` and `causeway` binaries, real TUNs in network
//! namespaces the tests create, real peers (ping, iperf3).
//!
//! Each test builds its own lab: two namespaces named `cwt<pid>x<n>-vnet` / `-onprem`, a config,
//! a daemon with its own control socket. Everything is removed when the test ends, pass or fail
//! (the `Lab` guard), and namespaces left by a killed run (`cwt*` of a dead pid) are removed at
//! start. Throughput tests take a lock so that two never run at once. These tests need root.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, Once};
use std::time::{Duration, Instant};

use causeway_api::{Request, Stats, Status};

static THROUGHPUT: Mutex<()> = Mutex::new(());
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

/// One lab: namespaces, config, running daemon. Dropping it stops the daemon and removes
/// everything.
struct Lab {
    vnet: String,
    /// The on-premises host of the first circuit.
    onprem: String,
    /// One on-premises namespace per circuit (the first is `onprem`).
    onprems: Vec<String>,
    dir: PathBuf,
    socket: PathBuf,
    config: PathBuf,
    daemon: Option<Child>,
}

struct LabSpec<'a> {
    sku: &'a str,
    circuit_mtu: u32,
    /// routing_weight of each circuit; every circuit offers the same on-premises prefixes and
    /// its host has the same addresses, so the weights decide which one carries the traffic.
    weights: &'a [u16],
}

impl Default for LabSpec<'_> {
    fn default() -> Self {
        LabSpec {
            sku: "sku = \"Standard\"",
            circuit_mtu: 1500,
            weights: &[0],
        }
    }
}

impl Lab {
    fn new(spec: LabSpec) -> Lab {
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
            socket: dir.join("control.sock"),
            config: dir.join("causeway.toml"),
            dir,
            daemon: None,
        };
        for ns in std::iter::once(&lab.vnet).chain(&lab.onprems) {
            let o = run(Command::new("ip").args(["netns", "add", ns]));
            assert!(o.status.success(), "ip netns add {ns}: {}", text(&o));
            run(Command::new("ip").args(["-n", ns, "link", "set", "lo", "up"]));
        }
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
        std::fs::write(&lab.config, cfg).unwrap();
        lab.start();
        lab
    }

    fn start(&mut self) {
        let log = std::fs::File::create(self.dir.join("daemon.log")).unwrap();
        let child = Command::new(daemon_bin())
            .arg("--config")
            .arg(&self.config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start causewayd");
        self.daemon = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if causeway_api::call(&self.socket, &Request::Status, Duration::from_secs(2)).is_ok() {
                return;
            }
            if let Some(st) = self.daemon.as_mut().unwrap().try_wait().unwrap() {
                panic!("causewayd exited ({st}) at start:\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "causewayd did not answer within 10 s:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("daemon.log")).unwrap_or_default()
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

    fn stats(&self) -> Stats {
        let r = causeway_api::call(&self.socket, &Request::Stats, Duration::from_secs(5)).unwrap();
        r.stats.expect("stats in response")
    }

    fn status(&self) -> Status {
        let r = causeway_api::call(&self.socket, &Request::Status, Duration::from_secs(5)).unwrap();
        r.status.expect("status in response")
    }

    fn drops(&self, f: impl Fn(&Stats) -> &causeway_api::DirStats, reason: &str) -> u64 {
        f(&self.stats()).drops[reason]
    }

    /// Stops the daemon with SIGTERM and returns how long it took.
    fn stop(&mut self) -> Duration {
        let t = Instant::now();
        if let Some(mut c) = self.daemon.take() {
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

    /// iperf3 from the VNet host to the on-premises host (or reverse); receiver Mbit/s.
    fn iperf(&self, secs: u32, reverse: bool, v6: bool) -> f64 {
        let port = 5300 + (NEXT.fetch_add(1, Ordering::SeqCst) % 500) as u16;
        let port_s = port.to_string();
        let mut server = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.onprem,
                "iperf3",
                "-s",
                "-1",
                "-p",
                &port_s,
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("iperf3 server (is iperf3 installed? scripts/deps.sh installs it)");
        std::thread::sleep(Duration::from_millis(300));
        let secs_s = secs.to_string();
        let dst = if v6 { "fd00:2::10" } else { "10.2.0.10" };
        let mut args = vec![
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
        if reverse {
            args.push("-R");
        }
        let out = self.in_vnet(&args);
        let _ = server.kill();
        let _ = server.wait();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("iperf3 JSON: {e}: {}", text(&out)));
        let bps = v["end"]["sum_received"]["bits_per_second"]
            .as_f64()
            .unwrap_or_else(|| panic!("no receiver rate in iperf3 output: {v}"));
        bps / 1e6
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.stop();
        for ns in std::iter::once(&self.vnet).chain(&self.onprems) {
            // Kill anything left in the namespace (iperf3), then remove it.
            if let Ok(o) = Command::new("ip").args(["netns", "pids", ns]).output() {
                for pid in String::from_utf8_lossy(&o.stdout).split_whitespace() {
                    let _ = Command::new("kill").args(["-KILL", pid]).status();
                }
            }
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
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
    assert!(st.vnet.interface.up && st.vnet.interface.offload);
}

#[test]
fn icmp_time_exceeded_and_unreachable_reach_the_sender() {
    let lab = Lab::new(LabSpec::default());
    let o = ping(&lab, true, &["-c", "1", "-t", "1", "10.2.0.10"]);
    let t = text(&o);
    assert!(
        t.contains("From 10.1.255.4") && t.contains("Time to live exceeded"),
        "{t}"
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
    let o = ping(&lab, true, &["-c", "1", "10.9.0.1"]);
    let t = text(&o);
    assert!(
        t.contains("From 10.1.255.4") && t.contains("Destination Net Unreachable"),
        "{t}"
    );
    let o = ping(&lab, true, &["-c", "1", "-t", "1", "fd00:2::10"]);
    let t = text(&o);
    assert!(
        t.contains("From fd00:1:0:ffff::4") && t.contains("Time exceeded"),
        "{t}"
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
    let o = ping(&lab, true, &["-c", "1", "fd00:9::1"]);
    let t = text(&o);
    assert!(
        t.contains("From fd00:1:0:ffff::4") && t.contains("No route"),
        "{t}"
    );
    // Ingress TTL expiry goes back to the on-premises sender.
    let o = ping(&lab, false, &["-c", "1", "-t", "1", "10.1.0.10"]);
    let t = text(&o);
    assert!(
        t.contains("From 10.1.255.4") && t.contains("Time to live exceeded"),
        "{t}"
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

fn assert_band(mbps: f64, rate: f64, what: &str) {
    assert!(
        mbps >= 0.90 * rate && mbps <= 1.01 * rate,
        "{what}: {mbps:.0} Mbit/s is outside 90-101% of {rate:.0}"
    );
}

#[test]
fn iperf3_through_standard_is_held_to_1_gbit() {
    let _g = THROUGHPUT.lock().unwrap_or_else(|e| e.into_inner());
    let lab = Lab::new(LabSpec::default());
    let up = lab.iperf(6, false, false);
    assert_band(up, 1000.0, "Standard, VNet -> on-premises");
    let down = lab.iperf(6, true, false);
    assert_band(down, 1000.0, "Standard, on-premises -> VNet");
    let v6 = lab.iperf(4, false, true);
    assert_band(v6, 1000.0, "Standard, IPv6");
    let s = lab.stats();
    assert!(s.gateways[0].egress.super_packets > 0, "TUN offload in use");
}

#[test]
fn iperf3_through_high_performance_is_held_to_2_gbit() {
    let _g = THROUGHPUT.lock().unwrap_or_else(|e| e.into_inner());
    let lab = Lab::new(LabSpec {
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
