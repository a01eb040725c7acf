//! Integration tests for TUN, netns, link and poll. They need root (`CAP_NET_ADMIN`,
//! `CAP_SYS_ADMIN`), `/dev/net/tun` and iproute2. Each test works in its own namespace named
//! `cwsys-<pid>-<n>`, removed by a guard even when the test fails.

use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::{AsFd, AsRawFd};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Once};
use std::time::{Duration, Instant};

use causeway_sys::poll::{wait_readable, Waker};
use causeway_sys::tun::{Offload, Tun, TunConfig, VNET_HDR_LEN};
use causeway_sys::{link, netns};

const PREFIX: &str = "cwsys-";
const TIMEOUT: Duration = Duration::from_secs(5);

/// Deletes the namespace when dropped. Declare it before any `Tun` so it drops last.
struct NsGuard {
    name: String,
}

impl NsGuard {
    fn new() -> NsGuard {
        static CLEAN: Once = Once::new();
        CLEAN.call_once(remove_stale);
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "{PREFIX}{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        netns::add(&name).expect("ip netns add");
        NsGuard { name }
    }

    fn name(&self) -> Option<&str> {
        Some(&self.name)
    }
}

impl Drop for NsGuard {
    fn drop(&mut self) {
        let _ = netns::delete(&self.name);
    }
}

/// Removes `cwsys-<pid>-*` namespaces left by test processes that no longer run.
fn remove_stale() {
    for name in netns::list().unwrap_or_default() {
        let Some(rest) = name.strip_prefix(PREFIX) else {
            continue;
        };
        let pid = rest.split('-').next().unwrap_or("");
        let alive = !pid.is_empty() && Path::new("/proc").join(pid).exists();
        if !alive {
            let _ = netns::delete(&name);
        }
    }
}

fn vnet_tun(ns: &NsGuard, name: &str) -> Tun {
    let cfg = TunConfig {
        name,
        netns: ns.name(),
        vnet_hdr: true,
        offload: Offload::TCP,
        queues: 1,
    };
    let mut tuns = Tun::create(&cfg).expect("create tun");
    assert_eq!(tuns.len(), 1);
    tuns.pop().unwrap()
}

fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// A zero virtio header followed by an IPv4/UDP packet (UDP checksum 0).
fn udp4_packet(src: SocketAddr, dst: SocketAddr, payload: &[u8]) -> Vec<u8> {
    let (IpAddr::V4(s), IpAddr::V4(d)) = (src.ip(), dst.ip()) else {
        panic!("v4 only")
    };
    let total = 20 + 8 + payload.len();
    let mut p = vec![0u8; VNET_HDR_LEN];
    let ip_start = p.len();
    p.extend_from_slice(&[0x45, 0, 0, 0, 0x12, 0x34, 0x40, 0, 64, 17, 0, 0]);
    p[ip_start + 2..ip_start + 4].copy_from_slice(&(total as u16).to_be_bytes());
    p.extend_from_slice(&s.octets());
    p.extend_from_slice(&d.octets());
    let csum = checksum(&p[ip_start..ip_start + 20]);
    p[ip_start + 10..ip_start + 12].copy_from_slice(&csum.to_be_bytes());
    p.extend_from_slice(&src.port().to_be_bytes());
    p.extend_from_slice(&dst.port().to_be_bytes());
    p.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(payload);
    p
}

/// Reads packets from `tun` until `want` accepts one or `TIMEOUT` passes.
fn read_until(tun: &Tun, mut want: impl FnMut(&[u8]) -> bool) -> Vec<u8> {
    let deadline = Instant::now() + TIMEOUT;
    let mut buf = vec![0u8; 65536 + VNET_HDR_LEN];
    let mut ready = [false];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "no matching packet read from the TUN within {TIMEOUT:?}"
        );
        wait_readable(&[tun.as_fd()], Some(left), &mut ready).expect("poll");
        match tun.read(&mut buf) {
            Ok(n) if want(&buf[..n]) => return buf[..n].to_vec(),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("tun read: {e}"),
        }
    }
}

/// Waits (bounded) until the interface is gone: the kernel unregisters a closed TUN
/// asynchronously, a fraction of a millisecond after the last fd closes.
fn wait_gone(netns: Option<&str>, ifname: &str) {
    let start = Instant::now();
    while link::link_state(netns, ifname).unwrap().exists {
        assert!(
            start.elapsed() < TIMEOUT,
            "{ifname} still exists {TIMEOUT:?} after its fds closed"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn udp_both_ways_through_vnet_tun() {
    let ns = NsGuard::new();
    let tun = vnet_tun(&ns, "cwt0");
    assert!(tun.vnet_hdr());
    assert_eq!(tun.name(), "cwt0");
    let _ = link::disable_ipv6_autoconf(ns.name(), "cwt0");
    link::add_address(ns.name(), "cwt0", "10.99.0.1".parse().unwrap(), 24).unwrap();
    link::add_address(ns.name(), "cwt0", "fd99::1".parse().unwrap(), 64).unwrap();
    link::set_up(ns.name(), "cwt0").unwrap();
    link::add_route(ns.name(), "10.98.0.0/16", "cwt0").unwrap();
    link::add_route(ns.name(), "10.98.0.0/16", "cwt0").unwrap(); // replace: idempotent
    link::add_route(ns.name(), "10.97.0.0/16", "cwt0").unwrap();
    link::del_route(ns.name(), "10.97.0.0/16", "cwt0").unwrap();
    link::del_route(ns.name(), "10.97.0.0/16", "cwt0").unwrap(); // already gone: not an error
    let routes = std::process::Command::new("ip")
        .args(["-n", &ns.name, "route", "show"])
        .output()
        .unwrap();
    let routes = String::from_utf8_lossy(&routes.stdout);
    assert!(
        routes.contains("10.98.0.0/16") && !routes.contains("10.97.0.0/16"),
        "{routes}"
    );

    // Kernel -> TUN.
    let payload = b"hello causeway";
    netns::run_in(&ns.name, || {
        let s = UdpSocket::bind("0.0.0.0:0")?;
        s.send_to(payload, "10.99.0.2:9")
    })
    .unwrap()
    .unwrap();
    let pkt = read_until(&tun, |p| {
        p.len() >= VNET_HDR_LEN + 28 && p[VNET_HDR_LEN] >> 4 == 4 && p[VNET_HDR_LEN + 9] == 17
    });
    let (hdr, ip) = pkt.split_at(VNET_HDR_LEN);
    let (flags, gso_type) = (hdr[0], hdr[1]);
    let csum_start = u16::from_le_bytes([hdr[6], hdr[7]]);
    let csum_offset = u16::from_le_bytes([hdr[8], hdr[9]]);
    assert_eq!(
        gso_type, 0,
        "GSO_NONE expected for a small datagram: {hdr:?}"
    );
    assert!(flags & !1 == 0, "only NEEDS_CSUM may be set: {hdr:?}");
    if flags == 1 {
        assert_eq!(
            (csum_start, csum_offset),
            (20, 6),
            "partial UDP checksum position"
        );
    }
    assert_eq!(ip[0] >> 4, 4);
    assert_eq!(ip[9], 17);
    assert_eq!(&ip[16..20], &[10, 99, 0, 2]);
    assert_eq!(u16::from_be_bytes([ip[22], ip[23]]), 9);
    assert_eq!(&ip[28..], payload);

    // TUN -> kernel.
    let rx = netns::run_in(&ns.name, || UdpSocket::bind("10.99.0.1:0"))
        .unwrap()
        .unwrap();
    rx.set_read_timeout(Some(TIMEOUT)).unwrap();
    let dst = rx.local_addr().unwrap();
    let src: SocketAddr = "10.99.0.2:4000".parse().unwrap();
    let pkt = udp4_packet(src, dst, b"from the tun");
    assert_eq!(tun.write(&pkt).unwrap(), pkt.len());
    let mut buf = [0u8; 100];
    let (n, from) = rx
        .recv_from(&mut buf)
        .expect("datagram written to the TUN not received");
    assert_eq!(&buf[..n], b"from the tun");
    assert_eq!(from, src);
}

#[test]
fn same_name_twice_is_already_exists() {
    let ns = NsGuard::new();
    let _tun = vnet_tun(&ns, "cwdup0");
    let cfg = TunConfig {
        netns: ns.name(),
        ..TunConfig::new("cwdup0")
    };
    let err = Tun::create(&cfg).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::AlreadyExists, "{err}");
    let msg = err.to_string();
    assert!(msg.contains("cwdup0") && msg.contains(&ns.name), "{msg}");
    // An existing non-TUN interface is refused too.
    let cfg = TunConfig {
        netns: ns.name(),
        ..TunConfig::new("lo")
    };
    assert_eq!(
        Tun::create(&cfg).unwrap_err().kind(),
        io::ErrorKind::AlreadyExists
    );
}

#[test]
fn missing_namespace_is_named() {
    let missing = format!("{PREFIX}{}-missing", std::process::id());
    assert!(!netns::exists(&missing));
    let cfg = TunConfig {
        netns: Some(&missing),
        ..TunConfig::new("cwx0")
    };
    let err = Tun::create(&cfg).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::NotFound, "{err}");
    assert!(err.to_string().contains(&missing), "{err}");
    let err = netns::run_in(&missing, || ()).unwrap_err();
    assert!(err.to_string().contains(&missing), "{err}");
    let err = link::link_state(Some(&missing), "lo").unwrap_err();
    assert!(err.to_string().contains(&missing), "{err}");
}

#[test]
fn invalid_configs_are_rejected() {
    let bad = [
        TunConfig {
            offload: Offload::TCP,
            ..TunConfig::new("cwbad0")
        },
        TunConfig {
            queues: 0,
            ..TunConfig::new("cwbad0")
        },
        TunConfig::new("this-name-is-too-long"),
        TunConfig::new("cw%d"),
        TunConfig {
            netns: Some("../etc"),
            ..TunConfig::new("cwbad0")
        },
        TunConfig {
            vnet_hdr: true,
            offload: Offload {
                tso4: true,
                ..Offload::NONE
            },
            ..TunConfig::new("cwbad0")
        },
    ];
    for cfg in bad {
        let err = Tun::create(&cfg).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{cfg:?}: {err}");
    }
    assert_eq!(Offload::TCP.bits(), 0x0f);
    assert_eq!(Offload::TCP_UDP.bits(), 0x6f);
    assert_eq!(Offload::NONE.bits(), 0);
}

#[test]
fn link_state_and_drop_removes_device() {
    let ns = NsGuard::new();
    let tun = vnet_tun(&ns, "cwls0");
    let st = link::link_state(ns.name(), "cwls0").unwrap();
    assert!(st.exists && !st.up, "{st:?}");
    link::set_mtu(ns.name(), "cwls0", 1400).unwrap();
    link::set_txqueuelen(ns.name(), "cwls0", 2000).unwrap();
    link::disable_ipv6_autoconf(ns.name(), "cwls0").unwrap();
    link::set_up(ns.name(), "cwls0").unwrap();
    let st = link::link_state(ns.name(), "cwls0").unwrap();
    assert_eq!(
        st,
        link::LinkState {
            exists: true,
            up: true,
            running: true,
            mtu: 1400
        }
    );
    let probe = link::LinkProbe::new(ns.name()).unwrap();
    assert_eq!(probe.state("cwls0").unwrap(), st);
    assert!(!probe.state("nosuch0").unwrap().exists);
    // The namespace's device is not visible from ours.
    assert!(!link::link_state(None, "cwls0").unwrap().exists);
    drop(tun);
    wait_gone(ns.name(), "cwls0");
    assert_eq!(probe.state("cwls0").unwrap(), link::LinkState::default());
}

#[test]
fn ip_errors_quote_the_command() {
    let ns = NsGuard::new();
    let err = link::set_mtu(ns.name(), "nosuch0", 1400).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("ip -n {} link set dev nosuch0 mtu 1400", ns.name)),
        "{msg}"
    );
    assert_eq!(err.kind(), io::ErrorKind::NotFound, "{msg}");
    let err = link::add_route(ns.name(), "not-a-prefix", "lo").unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
}

#[test]
fn multi_queue_returns_one_fd_per_queue() {
    let ns = NsGuard::new();
    let cfg = TunConfig {
        name: "cwmq0",
        netns: ns.name(),
        vnet_hdr: true,
        offload: Offload::TCP_UDP,
        queues: 2,
    };
    let tuns = Tun::create(&cfg).unwrap();
    assert_eq!(tuns.len(), 2);
    assert_ne!(tuns[0].as_raw_fd(), tuns[1].as_raw_fd());
    assert!(tuns
        .iter()
        .all(|t| t.name() == "cwmq0" && t.netns() == Some(ns.name.as_str())));
    assert!(link::link_state(ns.name(), "cwmq0").unwrap().exists);
    drop(tuns);
    wait_gone(ns.name(), "cwmq0");
}

#[test]
fn waker_interrupts_wait_readable() {
    let ns = NsGuard::new();
    let tun = vnet_tun(&ns, "cwwk0");
    let waker = Arc::new(Waker::new().unwrap());
    let mut ready = [true, true];

    // Nothing pending: times out.
    let n = wait_readable(
        &[tun.as_fd(), waker.as_fd()],
        Some(Duration::from_millis(20)),
        &mut ready,
    )
    .unwrap();
    assert_eq!((n, ready), (0, [false, false]));
    assert!(!waker.drain().unwrap());

    let w = Arc::clone(&waker);
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        w.wake().unwrap();
    });
    let start = Instant::now();
    let n = wait_readable(&[tun.as_fd(), waker.as_fd()], None, &mut ready).unwrap();
    t.join().unwrap();
    assert_eq!((n, ready), (1, [false, true]));
    assert!(start.elapsed() < TIMEOUT);
    assert!(waker.drain().unwrap());
    assert!(!waker.drain().unwrap());
    let n = wait_readable(&[waker.as_fd()], Some(Duration::ZERO), &mut ready).unwrap();
    assert_eq!((n, ready), (0, [false, false]));
}
