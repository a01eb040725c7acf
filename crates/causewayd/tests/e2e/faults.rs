//! Faults (issue 7): a circuit going down under a TCP transfer (failover to the VPN backup and
//! back), the daemon killed with SIGKILL and restarted, an underlay that drops and reorders,
//! and a soak at the SKU rate with a rekey every 30 seconds.

use super::*;
use causeway_sys::packet::PacketSocket;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::Arc;

/// Polls `value` every 20 ms until it has grown by more than `by` over its value at the call;
/// how long that took (fails after `secs`).
fn time_until_growth(
    secs: u64,
    what: &str,
    by: u64,
    mut value: impl FnMut() -> u64,
    logs: impl Fn() -> String,
) -> Duration {
    let t = Instant::now();
    let start = value();
    loop {
        if value() > start + by {
            return t.elapsed();
        }
        assert!(
            t.elapsed() < Duration::from_secs(secs),
            "{what}: no growth within {secs} s\n{}",
            logs()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn conn_egress_packets(d: &Daemon, name: &str) -> u64 {
    d.stats()
        .gateways
        .iter()
        .flat_map(|g| g.connections.iter())
        .find(|c| c.name == name)
        .map(|c| c.egress.packets)
        .unwrap_or_else(|| panic!("no connection {name}"))
}

/// Gateway A with an ExpressRoute circuit and an IPsec tunnel (to Causeway B, manual SAs) that
/// offer the same prefix, 10.3.0.0/16. Both end in one on-premises namespace, `site`: the
/// circuit's TUN and B's VNet TUN are both there, and the host 10.3.9.10 (on `lo`) is reachable
/// both ways, as a site with ExpressRoute and a VPN backup is. The site's routes back to the
/// VNet are its own (as an on-premises router's, learned over BGP): through the circuit with
/// metric 10, through B with metric 20, so they fail over when the circuit's link goes down.
struct SiteLab {
    vnet: String,
    gwa: String,
    gwb: String,
    site: String,
    dir: PathBuf,
    a: Option<Daemon>,
    b: Option<Daemon>,
    _machine: MachineGuard,
}

const SITE_HOST: &str = "10.3.9.10";

impl SiteLab {
    fn new() -> SiteLab {
        let guard = machine(true);
        require_root();
        remove_stale();
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let base = format!("{PREFIX}{}x{n}", std::process::id());
        let dir = std::env::temp_dir().join(format!("{base}-site"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut lab = SiteLab {
            vnet: format!("{base}-vnet"),
            gwa: format!("{base}-gwa"),
            gwb: format!("{base}-gwb"),
            site: format!("{base}-site"),
            dir,
            a: None,
            b: None,
            _machine: guard,
        };
        add_namespaces([&lab.vnet, &lab.gwa, &lab.gwb, &lab.site]);
        add_underlay(&lab.gwa, &lab.gwb);
        let esp = "aes256gcm16";
        let (k_ab, k_ba) = (key_for(esp, KEY_AB), key_for(esp, KEY_BA));
        let (sa, sb) = (lab.dir.join("a.sock"), lab.dir.join("b.sock"));
        let a = format!(
            r#"
[vnet]
name = "vnet"
address_space = ["10.1.0.0/16"]
gateway_subnet = "10.1.255.0/27"
[vnet.interface]
name = "cw-vnet0"
netns = "{vnet}"
addresses = ["10.1.0.10/16"]
[control]
socket = "{sa}"
state_dir = "{sa_state}"
[[gateway]]
name = "vpn-gw"
type = "Vpn"
sku = "VpnGw1"
[[gateway]]
name = "er-gw"
type = "ExpressRoute"
sku = "Standard"
[[connection]]
name = "circuit-1"
gateway = "er-gw"
type = "ExpressRoute"
prefixes = ["10.3.0.0/16"]
[connection.interface]
name = "cw-er0"
netns = "{site}"
addresses = ["10.3.0.1/24"]
install_routes = false
[[connection]]
name = "s2s-1"
gateway = "vpn-gw"
type = "IPsec"
local_address = "192.0.2.1"
peer_address = "192.0.2.2"
prefixes = ["10.3.0.0/16"]
[connection.manual_sa]
esp = "{esp}"
out_spi = 0x1001
out_key = "{k_ab}"
in_spi = 0x2002
in_key = "{k_ba}"
"#,
            vnet = lab.vnet,
            site = lab.site,
            sa = sa.display(),
            sa_state = sa.with_extension("state").display(),
        );
        let b = format!(
            r#"
[vnet]
name = "site"
address_space = ["10.3.0.0/16"]
gateway_subnet = "10.3.255.0/27"
[vnet.interface]
name = "cw-vnet0"
netns = "{site}"
addresses = ["10.3.1.1/24"]
install_routes = false
[control]
socket = "{sb}"
state_dir = "{sb_state}"
[[gateway]]
name = "vpn-gw"
type = "Vpn"
sku = "VpnGw1"
[[connection]]
name = "s2s-1"
gateway = "vpn-gw"
type = "IPsec"
local_address = "192.0.2.2"
peer_address = "192.0.2.1"
prefixes = ["10.1.0.0/16"]
[connection.manual_sa]
esp = "{esp}"
out_spi = 0x2002
out_key = "{k_ba}"
in_spi = 0x1001
in_key = "{k_ab}"
"#,
            site = lab.site,
            sb = sb.display(),
            sb_state = sb.with_extension("state").display(),
        );
        let (ca, cb) = (lab.dir.join("a.toml"), lab.dir.join("b.toml"));
        write_config(&ca, &a);
        write_config(&cb, &b);
        lab.b = Some(Daemon::start(
            &cb,
            &sb,
            &lab.dir.join("b.log"),
            Some(&lab.gwb),
        ));
        lab.a = Some(Daemon::start(
            &ca,
            &sa,
            &lab.dir.join("a.log"),
            Some(&lab.gwa),
        ));
        run(Command::new("ip").args(["-n", &lab.site, "addr", "add", "10.3.9.10/32", "dev", "lo"]));
        lab.circuit_route();
        let o = run(Command::new("ip").args([
            "-n",
            &lab.site,
            "route",
            "add",
            "10.1.0.0/16",
            "dev",
            "cw-vnet0",
            "metric",
            "20",
        ]));
        assert!(o.status.success(), "{}", text(&o));
        lab
    }

    /// The site's preferred route back to the VNet, through the circuit (the kernel removes it
    /// when the circuit's link goes down; an on-premises router re-learns it when it returns).
    fn circuit_route(&self) {
        let o = run(Command::new("ip").args([
            "-n",
            &self.site,
            "route",
            "replace",
            "10.1.0.0/16",
            "dev",
            "cw-er0",
            "metric",
            "10",
        ]));
        assert!(o.status.success(), "{}", text(&o));
    }

    fn a(&self) -> &Daemon {
        self.a.as_ref().unwrap()
    }

    fn logs(&self) -> String {
        format!(
            "--- A:\n{}\n--- B:\n{}",
            self.a().log(),
            self.b.as_ref().map(Daemon::log).unwrap_or_default()
        )
    }
}

impl Drop for SiteLab {
    fn drop(&mut self) {
        drop(self.a.take());
        drop(self.b.take());
        remove_namespaces([&self.vnet, &self.gwa, &self.gwb, &self.site]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn a_circuit_down_or_deleted_under_tcp_fails_over_to_the_vpn_within_a_second_and_back() {
    let lab = SiteLab::new();
    let t = run(Command::new("ip").args([
        "netns", "exec", &lab.vnet, "ping", "-n", "-c", "3", "-i", "0.2", "-W", "1", SITE_HOST,
    ]));
    assert!(
        text(&t).contains("3 received"),
        "{}\n{}",
        text(&t),
        lab.logs()
    );
    let before = (
        conn_egress_packets(lab.a(), "circuit-1"),
        conn_egress_packets(lab.a(), "s2s-1"),
    );
    assert!(
        before.0 >= 3 && before.1 == 0,
        "{before:?}: the circuit first"
    );

    // One TCP transfer across four switches: 24 s at 300 Mbit/s, within both paths' SKUs.
    let (vnet, site) = (lab.vnet.clone(), lab.site.clone());
    let transfer = std::thread::spawn(move || {
        iperf3_with(&vnet, &site, SITE_HOST, 24, &["-b", "300M", "-i", "1"])
    });
    std::thread::sleep(Duration::from_secs(4));
    let tunnel = || conn_egress_packets(lab.a(), "s2s-1");
    let circuit = || conn_egress_packets(lab.a(), "circuit-1");

    // 1. The circuit's link goes down, then up again.
    run(Command::new("ip").args(["-n", &lab.site, "link", "set", "cw-er0", "down"]));
    let down = time_until_growth(5, "tunnel after the circuit went down", 200, tunnel, || {
        lab.logs()
    });
    std::thread::sleep(Duration::from_secs(3));
    run(Command::new("ip").args(["-n", &lab.site, "link", "set", "cw-er0", "up"]));
    lab.circuit_route();
    let up = time_until_growth(5, "circuit after it came back up", 200, circuit, || {
        lab.logs()
    });
    // Once back, the tunnel carries nothing more.
    std::thread::sleep(Duration::from_millis(500));
    let tunnel_then = tunnel();
    std::thread::sleep(Duration::from_millis(500));
    let tunnel_idle = tunnel() - tunnel_then;
    std::thread::sleep(Duration::from_secs(2));

    // 2. The circuit's TUN is deleted: the daemon fails over, then makes the TUN again (with
    // its addresses); the site's router learns its route again once the link is there.
    run(Command::new("ip").args(["-n", &lab.site, "link", "del", "cw-er0"]));
    let deleted = time_until_growth(
        5,
        "tunnel after the circuit TUN was deleted",
        200,
        tunnel,
        || lab.logs(),
    );
    let t = Instant::now();
    eventually(10, "the daemon makes the circuit TUN again, up", || {
        let o = run(Command::new("ip").args(["-n", &lab.site, "link", "show", "dev", "cw-er0"]));
        let flags = text(&o);
        o.status.success() && (flags.contains(",UP") || flags.contains("<UP"))
    });
    let remade = t.elapsed();
    let addr = text(&run(
        Command::new("ip").args(["-n", &lab.site, "addr", "show", "dev", "cw-er0"])
    ));
    assert!(
        addr.contains("10.3.0.1/24"),
        "the TUN made again lacks its address: {addr}"
    );
    lab.circuit_route();
    let back = time_until_growth(
        5,
        "circuit after its TUN was made again",
        200,
        circuit,
        || lab.logs(),
    );

    let v = transfer.join().unwrap();
    eprintln!(
        "link down: failover to the VPN {:.0} ms, failback {:.0} ms; TUN deleted: failover \
         {:.0} ms, TUN made again after {:.0} ms, failback {:.0} ms; transfer {:.0} Mbit/s",
        down.as_secs_f64() * 1e3,
        up.as_secs_f64() * 1e3,
        deleted.as_secs_f64() * 1e3,
        remade.as_secs_f64() * 1e3,
        back.as_secs_f64() * 1e3,
        v["end"]["sum_received"]["bits_per_second"]
            .as_f64()
            .unwrap_or(0.0)
            / 1e6
    );
    assert!(
        v.get("error").is_none(),
        "the TCP transfer broke: {}\n{}",
        v["error"],
        lab.logs()
    );
    // Every second of the transfer moved data: the connection survived every switch.
    let intervals = v["intervals"].as_array().expect("iperf3 intervals");
    assert!(intervals.len() >= 23, "{v}");
    for (i, iv) in intervals.iter().enumerate() {
        let bytes = iv["sum"]["bytes"].as_f64().unwrap_or(0.0);
        assert!(bytes > 0.0, "second {i} of the transfer moved nothing: {v}");
    }
    for (what, d) in [
        ("failover (link down)", down),
        ("failback (link up)", up),
        ("failover (TUN deleted)", deleted),
        ("failback (TUN made again)", back),
    ] {
        assert!(d < Duration::from_secs(1), "{what} took {d:?}");
    }
    assert!(
        remade < Duration::from_secs(3),
        "TUN made again after {remade:?}"
    );
    assert!(
        tunnel_idle < 20,
        "the tunnel still carried {tunnel_idle} packets after failback"
    );
    assert!(
        lab.a()
            .log()
            .contains("circuit TUN was deleted: made again"),
        "{}",
        lab.logs()
    );
}

/// The process's open file descriptors.
fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// The process's file descriptors, without the control connection just made to it (the
/// daemon may close that one a moment after answering): the least of a few counts.
fn steady_fds(pid: u32) -> usize {
    (0..4)
        .map(|_| {
            std::thread::sleep(Duration::from_millis(25));
            fd_count(pid)
        })
        .min()
        .unwrap_or(0)
}

fn link_exists(netns: &str, dev: &str) -> bool {
    run(Command::new("ip").args(["-n", netns, "link", "show", "dev", dev]))
        .status
        .success()
}

/// Lines of `ip route show PREFIX` in a namespace.
fn routes_to(netns: &str, prefix: &str) -> usize {
    text(&run(
        Command::new("ip").args(["-n", netns, "route", "show", prefix])
    ))
    .lines()
    .filter(|l| !l.trim().is_empty())
    .count()
}

/// Pings `dst` from the VNet (one ping, 100 ms wait) until one answers.
fn until_ping(lab: &IkeLab, dst: &str, secs: u64) {
    let t = Instant::now();
    loop {
        let o = run(Command::new("ip").args([
            "netns", "exec", &lab.vnet, "ping", "-n", "-c", "1", "-W", "0.1", dst,
        ]));
        if text(&o).contains("1 received") {
            return;
        }
        assert!(
            t.elapsed() < Duration::from_secs(secs),
            "{dst} unreachable {secs} s after the restart\n{}",
            lab.logs()
        );
    }
}

const CIRCUIT_IN_GWA: &str =
    "\n[[gateway]]\nname = \"er-gw\"\ntype = \"ExpressRoute\"\nsku = \"Standard\"\n\
    [[connection]]\nname = \"circuit-1\"\ngateway = \"er-gw\"\ntype = \"ExpressRoute\"\n\
    prefixes = [\"10.4.0.0/16\"]\n[connection.interface]\nname = \"cw-er0\"\n\
    addresses = [\"10.4.0.10/16\"]\n";

#[test]
fn sigkill_and_restart_forwards_again_within_two_seconds_with_nothing_stale() {
    // A: an IKE tunnel to strongSwan and a circuit whose TUN is in A's namespace.
    let mut lab = IkeLab::new(IkeSpec {
        a_extra: CIRCUIT_IN_GWA,
        ..IkeSpec::default()
    });
    lab.wait_connected(15);
    assert!(lab.ping(2).contains("2 received"), "{}", lab.logs());
    let old_pid = lab.a().child.as_ref().unwrap().id();
    let fds_before = steady_fds(old_pid);

    // SIGKILL: no clean-up of any kind by the daemon.
    let mut child = lab.a.as_mut().unwrap().child.take().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    drop(lab.a.take());
    // The kernel took everything with the process: the TUNs (and their routes), the sockets.
    assert!(!link_exists(&lab.vnet, "cw-vnet0"), "VNet TUN left behind");
    assert!(!link_exists(&lab.gwa, "cw-er0"), "circuit TUN left behind");
    let ss = text(&run(
        Command::new("ip").args(["netns", "exec", &lab.gwa, "ss", "-uan"])
    ));
    assert!(
        !ss.contains(":4500") && !ss.contains(":500 "),
        "sockets left behind:\n{ss}"
    );
    let socket = lab.dir.join("a.sock");
    assert!(socket.exists(), "the control socket file stays (stale)");

    // Restart with the same config: the stale socket file is replaced.
    let t = Instant::now();
    lab.a = Some(Daemon::start(
        &lab.config_a,
        &socket,
        &lab.dir.join("a2.log"),
        Some(&lab.gwa),
    ));
    until_ping(&lab, "10.4.0.10", 10);
    let circuit = t.elapsed();
    until_ping(&lab, lab.target, 10);
    let tunnel = t.elapsed();
    eprintln!(
        "after SIGKILL: circuit forwarding {:.0} ms, tunnel renegotiated and forwarding {:.0} ms \
         after the restart",
        circuit.as_secs_f64() * 1e3,
        tunnel.as_secs_f64() * 1e3
    );
    assert!(
        circuit < Duration::from_secs(2),
        "circuit back after {circuit:?}"
    );
    assert!(
        tunnel < Duration::from_secs(2),
        "tunnel back after {tunnel:?}"
    );

    // Nothing stale: one TUN each, one route per prefix, one IKE SA at strongSwan (the old one
    // replaced, thanks to INITIAL_CONTACT), as many fds as the first daemon had.
    let new_pid = lab.a().child.as_ref().unwrap().id();
    assert_ne!(new_pid, old_pid);
    for (ns, prefix) in [(&lab.vnet, "10.3.0.0/16"), (&lab.vnet, "10.4.0.0/16")] {
        assert_eq!(routes_to(ns, prefix), 1, "routes to {prefix} in {ns}");
    }
    assert_eq!(routes_to(&lab.gwa, "10.1.0.0/16"), 1);
    eventually(10, "strongSwan keeps one IKE SA", || {
        lab.ss_sas().matches("ESTABLISHED").count() == 1
    });
    let fds_after = steady_fds(new_pid);
    assert_eq!(
        fds_after, fds_before,
        "fds: {fds_before} before, {fds_after} after"
    );
    let st = lab.a().status();
    let tunnel = &st.gateways[0].connections[0];
    assert_eq!(tunnel.state, "Connected");
}

/// The underlay between A and B, rebuilt through a third namespace, `wan`, where two threads
/// relay Ethernet frames between the two veths (packet sockets) and impair the UDP ones:
/// `loss` percent are dropped, `reorder` percent are held back and sent after the next frame
/// (or after 20 ms). It plays tc netem's part: the lab kernel has no netem qdisc. ARP passes
/// untouched.
struct Impaired {
    wan: String,
    stop: Arc<AtomicBool>,
    loss: Arc<AtomicU64>,
    reorder: Arc<AtomicU64>,
    dropped: Arc<AtomicU64>,
    reordered: Arc<AtomicU64>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Impaired {
    fn new(gwa: &str, gwb: &str, wan: String) -> Impaired {
        run(Command::new("ip").args(["-n", gwa, "link", "del", "ula"]));
        add_namespaces([&wan]);
        for (ns, dev, peer, addr) in [
            (gwa, "ula", "wa", "192.0.2.1/24"),
            (gwb, "ulb", "wb", "192.0.2.2/24"),
        ] {
            let o = run(Command::new("ip").args([
                "-n", ns, "link", "add", dev, "type", "veth", "peer", "name", peer, "netns", &wan,
            ]));
            assert!(o.status.success(), "veth: {}", text(&o));
            run(Command::new("ip").args(["-n", ns, "addr", "add", addr, "dev", dev]));
            // Wire-sized frames with their checksums computed: no segmentation or checksum
            // offload on the way (a relayed frame is sent as it was read).
            for (n, d) in [(ns, dev), (wan.as_str(), peer)] {
                let o = run(Command::new("ip").args([
                    "netns",
                    "exec",
                    n,
                    "ethtool",
                    "-K",
                    d,
                    "tx",
                    "off",
                    "gso",
                    "off",
                    "tso",
                    "off",
                    "gro",
                    "off",
                    "tx-udp-segmentation",
                    "off",
                ]));
                assert!(o.status.success(), "ethtool: {}", text(&o));
                run(Command::new("ip").args(["-n", n, "link", "set", d, "up"]));
            }
        }
        let sock = |dev: &'static str| {
            Arc::new(
                causeway_sys::netns::run_in(&wan, move || PacketSocket::bind_frames(dev))
                    .unwrap()
                    .unwrap(),
            )
        };
        let (wa, wb) = (sock("wa"), sock("wb"));
        let mut me = Impaired {
            wan,
            stop: Arc::new(AtomicBool::new(false)),
            loss: Arc::new(AtomicU64::new(0)),
            reorder: Arc::new(AtomicU64::new(0)),
            dropped: Arc::new(AtomicU64::new(0)),
            reordered: Arc::new(AtomicU64::new(0)),
            threads: Vec::new(),
        };
        for (seed, from, to) in [(11u64, wa.clone(), wb.clone()), (12, wb, wa)] {
            let (stop, loss, reorder) = (me.stop.clone(), me.loss.clone(), me.reorder.clone());
            let (dropped, reordered) = (me.dropped.clone(), me.reordered.clone());
            me.threads.push(std::thread::spawn(move || {
                let mut rng = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
                let mut percent = move || {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    rng % 100
                };
                let mut buf = vec![0u8; 65_536];
                let mut held: Option<(Vec<u8>, Instant)> = None;
                while !stop.load(Ordering::Relaxed) {
                    if let Ok(Some((n, false))) = from.recv_from(&mut buf, Duration::from_millis(5))
                    {
                        let f = &buf[..n];
                        let udp = n >= 34 && f[12..14] == [0x08, 0x00] && f[23] == 17;
                        if udp && percent() < loss.load(Ordering::Relaxed) {
                            dropped.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                        if udp && held.is_none() && percent() < reorder.load(Ordering::Relaxed) {
                            held = Some((f.to_vec(), Instant::now()));
                            continue;
                        }
                        let _ = to.send(f);
                        if let Some((h, _)) = held.take() {
                            let _ = to.send(&h);
                            reordered.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    if held
                        .as_ref()
                        .is_some_and(|(_, at)| at.elapsed() > Duration::from_millis(20))
                    {
                        let _ = to.send(&held.take().unwrap().0);
                    }
                }
            }));
        }
        me
    }

    fn set(&self, loss: u64, reorder: u64) {
        self.loss.store(loss, Ordering::Relaxed);
        self.reorder.store(reorder, Ordering::Relaxed);
    }
}

impl Drop for Impaired {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        remove_namespaces([&self.wan]);
    }
}

/// ESP sequence numbers, in arrival order, of the datagrams to `spi` seen on `dev`.
fn esp_seqs(sock: &PacketSocket, spi: u32, until: Instant) -> Vec<u32> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 4096];
    while Instant::now() < until {
        let Ok(Some(n)) = sock.recv(&mut buf, Duration::from_millis(100)) else {
            continue;
        };
        let p = &buf[..n];
        if n < 36 || p[0] >> 4 != 4 || p[9] != 17 {
            continue;
        }
        let ihl = usize::from(p[0] & 0x0f) * 4;
        let u = &p[ihl..];
        if u.len() >= 16
            && u16::from_be_bytes([u[2], u[3]]) == 4500
            && u[8..12] == spi.to_be_bytes()
        {
            out.push(u32::from_be_bytes([u[12], u[13], u[14], u[15]]));
        }
    }
    out
}

#[test]
fn ike_and_esp_survive_an_underlay_that_drops_and_reorders() {
    let mut lab = IkeLab::new(IkeSpec::default());
    lab.wait_connected(15);
    // A stops; the underlay is rebuilt through the impairing relay, which first loses every
    // datagram. A starts again: its IKE_SA_INIT is lost, and its retransmissions (0.5, 1, 2,
    // 4 s) must bring the tunnel up once the loss eases.
    lab.a.as_mut().unwrap().stop();
    drop(lab.a.take());
    let wan = format!("{}-wan", lab.vnet.trim_end_matches("-vnet"));
    let net = Impaired::new(&lab.gwa, &lab.gwb, wan);
    net.set(100, 0);
    lab.a = Some(Daemon::start(
        &lab.config_a,
        &lab.dir.join("a.sock"),
        &lab.dir.join("a2.log"),
        Some(&lab.gwa),
    ));
    std::thread::sleep(Duration::from_millis(1500));
    let lost = net.dropped.load(Ordering::Relaxed);
    assert!(lost >= 1, "A sent no IKE_SA_INIT into the loss");
    // Then 5% loss each way, and reordering: a quarter of the datagrams overtaken.
    net.set(5, 25);
    let took = lab.wait_connected(40);
    eprintln!(
        "IKE completed {:.1} s after the loss eased ({lost} datagrams lost before)",
        took.as_secs_f64()
    );

    let in_spi = lab.tunnel().esp.in_spi;
    let sock = causeway_sys::netns::run_in(&lab.gwa, || PacketSocket::bind("ula"))
        .unwrap()
        .unwrap();
    let (vnet, target) = (lab.vnet.clone(), lab.target);
    let pinger = std::thread::spawn(move || {
        text(&run(Command::new("ip").args([
            "netns", "exec", &vnet, "ping", "-n", "-q", "-c", "400", "-i", "0.01", "-W", "1",
            target,
        ])))
    });
    let seqs = esp_seqs(&sock, in_spi, Instant::now() + Duration::from_secs(6));
    let pings = pinger.join().unwrap();
    eprintln!(
        "relay: {} dropped, {} reordered",
        net.dropped.load(Ordering::Relaxed),
        net.reordered.load(Ordering::Relaxed)
    );
    let received: u32 = pings
        .split(" received")
        .next()
        .and_then(|s| s.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let inversions = seqs.windows(2).filter(|w| w[1] < w[0]).count();
    let s = tunnel_stats(lab.a());
    eprintln!(
        "{received}/400 pings through 5% loss each way; {} ESP datagrams seen arriving, \
         {inversions} out of order; A's ingress drops {:?}",
        seqs.len(),
        s.ingress
            .drops
            .iter()
            .filter(|(_, v)| **v > 0)
            .collect::<Vec<_>>()
    );
    assert!(inversions > 0, "the underlay did not reorder: {seqs:?}");
    // 0.95^2 of 400 = 361 expected: well above 300 unless ESP broke.
    assert!(received >= 300, "{pings}\n{}", lab.logs());
    for r in [
        "esp_auth_failed",
        "esp_replayed",
        "esp_too_old",
        "esp_malformed",
    ] {
        assert_eq!(
            s.ingress.drops[r], 0,
            "{r}: reordering within the window is accepted"
        );
    }
    assert_eq!(lab.tunnel().ike.unwrap().state, "Connected");
}

/// Seconds of the soak: `CAUSEWAY_SOAK_SECS`, or 90 (three rekeys) in the suite; the
/// 10-minute figure in docs/RELIABILITY.md is this test with `CAUSEWAY_SOAK_SECS=600`.
fn soak_secs() -> u64 {
    std::env::var("CAUSEWAY_SOAK_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|v| *v >= 60)
        .unwrap_or(90)
}

#[test]
fn soak_at_the_sku_rate_with_a_rekey_every_30_seconds() {
    let secs = soak_secs();
    // A Standard VPN gateway (100 Mbit/s), a strongSwan peer that rekeys the Child SA every
    // 30 s and the IKE SA every 60 s.
    let lab = IkeLab::new(IkeSpec {
        exclusive: true,
        sku: "Standard",
        ss_opts: &[
            "--rekey-time",
            "30s",
            "--life-time",
            "33s",
            "--ike-rekey-time",
            "60s",
        ],
        ..IkeSpec::default()
    });
    lab.wait_connected(15);
    let pid = lab.a().child.as_ref().unwrap().id();
    let (vnet, far, target) = (lab.vnet.clone(), lab.far_ns().to_string(), lab.target);
    let transfer =
        std::thread::spawn(move || iperf3_with(&vnet, &far, target, secs as u32, &["-i", "10"]));
    // Every 5 s: the tunnel's state and SPI, A's memory and file descriptors.
    let mut samples = Vec::new();
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(secs) {
        std::thread::sleep(Duration::from_secs(5));
        let t = lab.tunnel();
        samples.push((
            start.elapsed().as_secs(),
            t.ike.map(|i| i.state).unwrap_or_default(),
            t.esp.out_spi,
            rss_kib(pid),
            steady_fds(pid),
        ));
    }
    let v = transfer.join().unwrap();
    for s in &samples {
        eprintln!(
            "soak t={:>4} s {} spi {:#010x} rss {} KiB fds {}",
            s.0, s.1, s.2, s.3, s.4
        );
    }
    assert!(
        v.get("error").is_none(),
        "iperf3: {}\n{}",
        v["error"],
        lab.logs()
    );
    let mbps = v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .unwrap_or(0.0)
        / 1e6;
    eprintln!("soak: {secs} s at {mbps:.1} Mbit/s (Standard: 100)");
    assert!(mbps > 85.0, "{mbps:.1} Mbit/s: not at the SKU rate");
    for iv in v["intervals"].as_array().expect("intervals") {
        let b = iv["sum"]["bits_per_second"].as_f64().unwrap_or(0.0) / 1e6;
        assert!(b > 50.0, "an interval at {b:.1} Mbit/s: {iv}");
    }
    // Zero lost tunnels: connected at every sample.
    assert!(
        samples.iter().all(|s| s.1 == "Connected"),
        "the tunnel was lost: {samples:?}\n{}",
        lab.logs()
    );
    let mut spis: Vec<u32> = samples.iter().map(|s| s.2).collect();
    spis.dedup();
    let expected = secs / 30;
    assert!(
        spis.len() as u64 > expected.saturating_sub(1),
        "{} Child SAs in {secs} s: no rekey every 30 s ({spis:x?})",
        spis.len()
    );
    // No growth: after the first third, memory stays within 1 MiB and fds do not move.
    let warm = &samples[samples.len() / 3..];
    let (rss_warm, fds_warm) = (warm[0].3, warm[0].4);
    for s in warm {
        assert!(s.3 <= rss_warm + 1024, "memory grew: {samples:?}");
        assert_eq!(s.4, fds_warm, "file descriptors changed: {samples:?}");
    }
}
