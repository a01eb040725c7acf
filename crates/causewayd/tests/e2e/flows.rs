//! End to end: the gateway's flow table. A deliberately small `max_flows` refuses the
//! connections beyond it while the established ones go on exchanging data; a small
//! `max_new_flows_per_sec` admits about rate × time + burst new flows; `causeway flows` lists
//! them (JSON and table).
//!
//! The sockets are the test's own: created inside the lab's namespaces
//! (`causeway_sys::netns::run_in`), so the traffic crosses the VNet TUN, the daemon and the
//! circuit TUN like any host's.

use super::*;

use std::io::{Read, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};

use causeway_sys::netns;

/// The on-premises host's address (the first circuit's namespace).
const ONPREM: &str = "10.2.0.10";
const VNET_HOST: &str = "10.1.0.10";

/// An echo server in `ns` on `ONPREM`: each connection is echoed on its own thread until EOF.
/// Returns its address.
fn echo_server(ns: &str) -> SocketAddr {
    let listener = netns::run_in(ns, || TcpListener::bind((ONPREM, 0)))
        .expect("enter the on-premises namespace")
        .expect("bind the echo server");
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in listener.incoming() {
            let Ok(mut s) = s else { break };
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                loop {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if s.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                    }
                }
            });
        }
    });
    addr
}

/// `n` TCP connection attempts from the VNet host to `to`, one after the other, each given
/// `timeout`: the connected streams, and how many attempts failed.
fn connect_many(
    vnet: &str,
    to: SocketAddr,
    n: usize,
    timeout: Duration,
) -> (Vec<TcpStream>, usize) {
    netns::run_in(vnet, || {
        let mut ok = Vec::new();
        let mut failed = 0;
        for _ in 0..n {
            match TcpStream::connect_timeout(&to, timeout) {
                Ok(s) => ok.push(s),
                Err(_) => failed += 1,
            }
        }
        (ok, failed)
    })
    .expect("enter the VNet namespace")
}

/// Sends `msg` on `s` and reads it back (echo), within 3 s.
fn exchange(s: &mut TcpStream, msg: &[u8]) -> std::io::Result<()> {
    s.set_read_timeout(Some(Duration::from_secs(3)))?;
    s.write_all(msg)?;
    let mut back = vec![0u8; msg.len()];
    s.read_exact(&mut back)?;
    if back != msg {
        return Err(std::io::Error::other("echo differs"));
    }
    Ok(())
}

fn gateway_flows(s: &Stats) -> causeway_api::FlowCounts {
    s.gateways[0]
        .flows
        .clone()
        .expect("stats carry the flow counts")
}

fn cli(lab: &Lab, args: &[&str]) -> Output {
    run(Command::new(cli_bin())
        .arg("--socket")
        .arg(&lab.socket)
        .args(args))
}

#[test]
fn a_small_max_flows_refuses_the_excess_while_established_connections_go_on() {
    const LIMIT: usize = 20;
    const EXCESS: usize = 4;
    let lab = Lab::new(LabSpec {
        sku: "sku = \"Standard\"\nmax_flows = 20",
        ..LabSpec::default()
    });
    let server = echo_server(&lab.onprem);
    // Each connection is one flow, both directions: the SYN goes through the egress worker,
    // the SYN-ACK through the circuit ingress worker, one entry. Had the directions been two
    // entries, the table would be full after 10 connections.
    let (mut conns, failed) = connect_many(&lab.vnet, server, LIMIT, Duration::from_secs(3));
    assert_eq!(
        (conns.len(), failed),
        (LIMIT, 0),
        "the first {LIMIT} connections fit the table:\n{}",
        lab.log()
    );
    let f = gateway_flows(&lab.stats());
    assert_eq!((f.active, f.max_flows), (LIMIT as u64, LIMIT as u64));
    // The excess is refused: its SYNs are dropped, the connect times out.
    let (extra, refused) = connect_many(&lab.vnet, server, EXCESS, Duration::from_millis(1200));
    assert_eq!(
        (extra.len(), refused),
        (0, EXCESS),
        "connections beyond max_flows must be refused"
    );
    let s = lab.stats();
    let g = &s.gateways[0];
    assert!(
        g.egress.drops["flow_table_full"] >= EXCESS as u64,
        "flow_table_full at the gateway: {:?}",
        g.egress.drops
    );
    assert!(
        g.connections[0].egress.drops["flow_table_full"] >= EXCESS as u64,
        "flow_table_full at the connection"
    );
    assert_eq!(g.egress.drops["new_flow_rate"], 0);
    assert!(gateway_flows(&s).refused_full >= EXCESS as u64);
    // The established connections keep exchanging data, every one of them, twice.
    for round in 0..2 {
        for (i, c) in conns.iter_mut().enumerate() {
            let msg = format!("round {round} connection {i}: {}", "x".repeat(1000));
            exchange(c, msg.as_bytes())
                .unwrap_or_else(|e| panic!("connection {i} round {round}: {e}"));
        }
    }
    assert_eq!(gateway_flows(&lab.stats()).active, LIMIT as u64);

    // `causeway flows --top 5 -o json`: the five flows with the most bytes, through circuit-1.
    let o = cli(&lab, &["flows", "--top", "5", "-o", "json"]);
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("flows JSON parses");
    let g = &v[0];
    assert_eq!(g["gateway"], "er-gw");
    assert_eq!(g["counts"]["active"], LIMIT as u64);
    assert_eq!(g["counts"]["max_flows"], LIMIT as u64);
    let flows = g["flows"].as_array().expect("a list of flows");
    assert_eq!(flows.len(), 5);
    let mut last = u64::MAX;
    for f in flows {
        assert_eq!(f["protocol"], "tcp", "{f}");
        assert_eq!(f["src"], VNET_HOST, "{f}");
        assert_eq!(f["dst"], ONPREM, "{f}");
        assert_eq!(f["dst_port"], server.port(), "{f}");
        assert_eq!(f["state"], "tcp_established", "{f}");
        assert_eq!(f["connection"], "circuit-1", "{f}");
        // Two rounds of about 1 KB each way, plus the handshake.
        for k in ["bytes_orig", "bytes_reply"] {
            let b = f[k].as_u64().unwrap();
            assert!(b > 2000, "{k} {b}: {f}");
        }
        assert!(f["packets_orig"].as_u64().unwrap() >= 3, "{f}");
        assert!(f["packets_reply"].as_u64().unwrap() >= 3, "{f}");
        let total = f["bytes_orig"].as_u64().unwrap() + f["bytes_reply"].as_u64().unwrap();
        assert!(total <= last, "sorted by bytes, most first");
        last = total;
        assert!(f["age_secs"].as_f64().unwrap() >= f["idle_secs"].as_f64().unwrap());
    }
    // The table output: the gateway line, the header, one row of 9 columns per flow.
    let o = cli(&lab, &["flows", "--gateway", "er-gw", "--top", "3"]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    eprintln!("$ causeway flows --gateway er-gw --top 3\n{t}");
    let lines: Vec<&str> = t.lines().collect();
    assert!(
        lines[0].starts_with("gateway er-gw (ExpressRoute): 20/20 flows"),
        "{t}"
    );
    assert!(lines[1].starts_with("PROTO"), "{t}");
    assert_eq!(lines.len(), 5, "{t}");
    for row in &lines[2..] {
        let cols: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(cols.len(), 9, "{row}");
        assert_eq!(cols[0], "tcp");
        assert!(cols[1].starts_with("10.1.0.10:"), "{row}");
        assert_eq!(cols[2], format!("{ONPREM}:{}", server.port()));
        assert_eq!(cols[8], "circuit-1");
    }
    // An unknown gateway is refused, naming the known ones.
    let o = cli(&lab, &["flows", "--gateway", "nope"]);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("no gateway `nope` (known: er-gw)"),
        "{}",
        text(&o)
    );
    // `--top` beyond the documented maximum is refused, saying so.
    let o = cli(&lab, &["flows", "--top", "10001"]);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("top must be at most 10000, got 10001"),
        "{}",
        text(&o)
    );
    // `causeway stats` shows the flow counts and the new drop reasons.
    let o = cli(&lab, &["stats"]);
    let t = text(&o);
    eprintln!("$ causeway stats\n{t}");
    assert!(
        t.contains("FLOW_TABLE_FULL") && t.contains("flow_table_full="),
        "{t}"
    );
    drop(conns);
}

#[test]
fn new_flows_above_max_new_flows_per_sec_are_dropped_and_counted() {
    // 20 new flows/s: a burst of 16 (`flow::new_flow_burst`), then one per 50 ms.
    const RATE: f64 = 20.0;
    const BURST: f64 = 16.0;
    const ATTEMPTS: usize = 250;
    let lab = Lab::new(LabSpec {
        sku: "sku = \"Standard\"\nmax_new_flows_per_sec = 20",
        ..LabSpec::default()
    });
    let receiver = netns::run_in(&lab.onprem, || UdpSocket::bind((ONPREM, 0)))
        .unwrap()
        .unwrap();
    let to = receiver.local_addr().unwrap();
    receiver
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let counter = std::thread::spawn(move || {
        let mut got = std::collections::HashSet::new();
        let mut buf = [0u8; 64];
        let mut quiet = 0;
        while quiet < 10 {
            match receiver.recv_from(&mut buf) {
                Ok((_, from)) => {
                    quiet = 0;
                    got.insert(from.port());
                }
                Err(_) => quiet += 1,
            }
        }
        got.len()
    });
    // One datagram from a new port every 10 ms: a new flow each, over about 2.5 s.
    let elapsed = netns::run_in(&lab.vnet, || {
        let start = Instant::now();
        // Every socket stays open until the end, so that no source port is used twice (a port
        // used again would be a packet of an existing flow).
        let mut sockets = Vec::with_capacity(ATTEMPTS);
        for i in 0..ATTEMPTS {
            let s = UdpSocket::bind((VNET_HOST, 0)).unwrap();
            s.send_to(format!("flow {i}").as_bytes(), to).unwrap();
            sockets.push(s);
            let next = start + Duration::from_millis(10 * (i as u64 + 1));
            std::thread::sleep(next.saturating_duration_since(Instant::now()));
        }
        start.elapsed().as_secs_f64() - 0.010
    })
    .unwrap();
    let received = counter.join().unwrap();
    let s = lab.stats();
    let g = &s.gateways[0];
    let f = gateway_flows(&s);
    // The gateway's decisions are exact: each attempt started a flow or was refused, once.
    let created = f.created as usize;
    eprintln!(
        "{created} of {ATTEMPTS} new flows admitted ({received} received) in {elapsed:.2} s; \
         expected {:.1}",
        BURST + RATE * elapsed
    );
    assert_eq!(
        g.egress.drops["new_flow_rate"],
        (ATTEMPTS - created) as u64,
        "every refused flow is counted, once (its only packet): {:?}",
        g.egress.drops
    );
    assert_eq!(f.refused_rate, (ATTEMPTS - created) as u64);
    assert_eq!(g.egress.drops["flow_table_full"], 0);
    assert_eq!(f.new_flows_per_sec, Some(20));
    assert_eq!(
        g.egress.packets, created as u64,
        "each admitted flow's packet forwarded"
    );
    // About rate x time + burst were admitted...
    let expected = BURST + RATE * elapsed;
    assert!(
        (created as f64) >= expected - 3.0 && (created as f64) <= expected + 3.0,
        "{created} flows admitted in {elapsed:.2} s; expected about {expected:.0} \
         (burst {BURST} + {RATE}/s)"
    );
    // ...and they crossed to the on-premises host (UDP: allow the kernel one loss).
    assert!(
        received <= created && received + 1 >= created,
        "{received} received of {created} admitted"
    );
}

#[test]
fn reload_and_resize_move_the_flow_limits_and_the_flows_stay() {
    let lab = Lab::new(LabSpec {
        sku: "sku = \"Standard\"\nmax_flows = 3",
        ..LabSpec::default()
    });
    let server = echo_server(&lab.onprem);
    let refused = |n: usize| {
        let (extra, failed) = connect_many(&lab.vnet, server, n, Duration::from_millis(1200));
        assert!(
            extra.is_empty(),
            "a connection beyond the limit got through"
        );
        failed
    };
    let (mut conns, failed) = connect_many(&lab.vnet, server, 3, Duration::from_secs(3));
    assert_eq!((conns.len(), failed), (3, 0));
    assert_eq!(refused(1), 1);

    // A reload raises max_flows to 5 and the established timeout to 10 minutes, live.
    let text0 = std::fs::read_to_string(&lab.config).unwrap();
    let edited = text0.replacen(
        "max_flows = 3",
        "max_flows = 5\n[gateway.flow_timeouts]\ntcp_established = \"10m\"",
        1,
    );
    assert_ne!(edited, text0);
    std::fs::write(&lab.config, &edited).unwrap();
    let o = cli_reload(&lab.socket);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(gateway_flows(&lab.stats()).max_flows, 5);
    let (more, failed) = connect_many(&lab.vnet, server, 2, Duration::from_secs(3));
    assert_eq!((more.len(), failed), (2, 0));
    conns.extend(more);
    assert_eq!(refused(1), 1);
    let o = cli(&lab, &["flows", "--top", "10", "-o", "json"]);
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    for f in v[0]["flows"].as_array().unwrap() {
        if f["state"] == "tcp_established" {
            let left = f["expires_in_secs"].as_f64().unwrap();
            assert!(left > 300.0 && left <= 600.0, "{f}");
        }
    }

    // A resize keeps the config's lower limit (5 < HighPerformance's 400 000)...
    let o = cli(&lab, &["gateway", "resize", "er-gw", "HighPerformance"]);
    assert!(o.status.success(), "{}", text(&o));
    let f = gateway_flows(&lab.stats());
    assert_eq!((f.max_flows, f.new_flows_per_sec), (5, Some(14_000)));
    // ...and without it the SKU's limit applies; every flow is still there and carries data.
    std::fs::write(&lab.config, edited.replacen("max_flows = 5\n", "", 1)).unwrap();
    let o = cli_reload(&lab.socket);
    assert!(o.status.success(), "{}", text(&o));
    let f = gateway_flows(&lab.stats());
    assert_eq!((f.max_flows, f.active), (400_000, 5));
    for (i, c) in conns.iter_mut().enumerate() {
        exchange(c, format!("after the resize {i}").as_bytes())
            .unwrap_or_else(|e| panic!("connection {i}: {e}"));
    }
    let (more, failed) = connect_many(&lab.vnet, server, 3, Duration::from_secs(3));
    assert_eq!((more.len(), failed), (3, 0), "the limit is the SKU's now");
}
