//! Integration tests for the UDP underlay socket (batched I/O, GSO, GRO, namespaces). They need
//! root (`CAP_NET_ADMIN`, `CAP_SYS_ADMIN`) and iproute2. Each test works in its own namespace named
//! `cwudp-<pid>-<n>` with loopback up, removed by a guard even when the test fails.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsFd;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Once;
use std::time::{Duration, Instant};

use causeway_sys::poll::wait_readable;
use causeway_sys::udp::{
    RecvBatch, SendBatch, UdpOptions, UdpSocket, GSO_MAX_BYTES, GSO_MAX_SEGMENTS,
};
use causeway_sys::{link, netns};

const PREFIX: &str = "cwudp-";
const TIMEOUT: Duration = Duration::from_secs(5);
const V4: Ipv4Addr = Ipv4Addr::LOCALHOST;
const V6: Ipv6Addr = Ipv6Addr::LOCALHOST;

/// A fresh namespace with loopback up, deleted when dropped. Declare it before the sockets.
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
        let guard = NsGuard { name };
        link::set_up(guard.name(), "lo").expect("loopback up");
        guard
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

/// Removes `cwudp-<pid>-*` namespaces left by test processes that no longer run.
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

fn bind(ns: &NsGuard, ip: impl Into<std::net::IpAddr>, gro: bool) -> UdpSocket {
    let addr = SocketAddr::new(ip.into(), 0);
    let opts = UdpOptions {
        gro,
        ..UdpOptions::default()
    };
    UdpSocket::bind(addr, ns.name(), &opts).expect("bind")
}

/// One received read.
#[derive(Debug)]
struct Got {
    data: Vec<u8>,
    src: SocketAddr,
    segment: Option<u16>,
    truncated: bool,
}

/// Receives with `batch` until `enough` accepts what was collected; fails after `TIMEOUT`.
fn collect(
    sock: &UdpSocket,
    batch: &mut RecvBatch,
    mut enough: impl FnMut(&[Got]) -> bool,
) -> Vec<Got> {
    let deadline = Instant::now() + TIMEOUT;
    let mut got = Vec::new();
    let mut ready = [false];
    while !enough(&got) {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "timed out after {TIMEOUT:?} with {} reads ({} bytes)",
            got.len(),
            total(&got)
        );
        wait_readable(&[sock.as_fd()], Some(left), &mut ready).expect("poll");
        let n = match batch.recv(sock) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => panic!("recv: {e}"),
        };
        assert_eq!(n, batch.len());
        for i in 0..n {
            let truncated = batch.truncated(i);
            let (data, src, segment) = batch.packet(i);
            got.push(Got {
                data: data.to_vec(),
                src,
                segment,
                truncated,
            });
        }
    }
    got
}

fn total(got: &[Got]) -> usize {
    got.iter().map(|g| g.data.len()).sum()
}

/// Asserts that nothing more arrives within a short while.
fn assert_quiet(sock: &UdpSocket) {
    let mut ready = [false];
    let n = wait_readable(&[sock.as_fd()], Some(Duration::from_millis(50)), &mut ready).unwrap();
    assert_eq!(n, 0, "unexpected extra datagram");
}

/// Datagram `i` of the batch tests: varied sizes (1 to 2 999 bytes), contents derived from `i`.
fn payload(i: usize) -> Vec<u8> {
    let len = 1 + (i * 137) % 2999;
    (0..len).map(|j| (i * 7 + j) as u8).collect()
}

fn batch_roundtrip(ip: std::net::IpAddr) {
    let ns = NsGuard::new();
    let tx = bind(&ns, ip, false);
    let rx = bind(&ns, ip, false);
    let dst = rx.local_addr();
    assert_eq!(dst.ip(), ip);
    assert_ne!(dst.port(), 0);

    let payloads: Vec<Vec<u8>> = (0..100).map(payload).collect();
    // The first 60 through `send_batch`, the other 40 through a reusable `SendBatch` in rounds of
    // at most 16 (the storage outlives the rounds; each round borrows the payloads).
    let msgs: Vec<(&[u8], SocketAddr)> = payloads[..60].iter().map(|p| (&p[..], dst)).collect();
    assert_eq!(tx.send_batch(&msgs).expect("send_batch"), 60);
    let mut storage = SendBatch::with_capacity(16);
    assert_eq!(storage.capacity(), 16);
    for round in payloads[60..].chunks(16) {
        let mut queue = storage.begin();
        for p in round {
            queue.push(p, dst).expect("push");
        }
        assert_eq!(queue.len(), round.len());
        assert_eq!(queue.flush(&tx).expect("flush"), round.len());
        assert!(queue.is_empty());
    }

    let mut batch = RecvBatch::new(16, 4096);
    let got = collect(&rx, &mut batch, |g| g.len() >= 100);
    assert_eq!(got.len(), 100);
    for (i, g) in got.iter().enumerate() {
        assert_eq!(g.src, tx.local_addr(), "source of datagram {i}");
        assert_eq!(g.data, payloads[i], "contents of datagram {i}");
        assert_eq!(g.segment, None);
        assert!(!g.truncated);
    }
    assert_quiet(&rx);
}

#[test]
fn batch_v4() {
    batch_roundtrip(V4.into());
}

#[test]
fn batch_v6() {
    batch_roundtrip(V6.into());
}

#[test]
fn send_batch_over_several_chunks() {
    let ns = NsGuard::new();
    let tx = bind(&ns, V4, false);
    let rx = bind(&ns, V4, false);
    let dst = rx.local_addr();
    let payloads: Vec<Vec<u8>> = (0..300)
        .map(|i| (i as u32).to_be_bytes().to_vec())
        .collect();
    let msgs: Vec<(&[u8], SocketAddr)> = payloads.iter().map(|p| (&p[..], dst)).collect();
    assert_eq!(tx.send_batch(&msgs).expect("send_batch"), 300);
    let mut batch = RecvBatch::new(64, 64);
    let got = collect(&rx, &mut batch, |g| g.len() >= 300);
    for (i, g) in got.iter().enumerate() {
        assert_eq!(g.data, payloads[i]);
    }
}

fn gso_buffer() -> Vec<u8> {
    (0..10_000u32).map(|i| (i % 251) as u8).collect()
}

fn gso_without_gro(ip: std::net::IpAddr) {
    let ns = NsGuard::new();
    let tx = bind(&ns, ip, false);
    let rx = bind(&ns, ip, false);
    assert!(
        tx.gso_supported(),
        "UDP GSO should be supported (Linux 4.18+)"
    );
    let buf = gso_buffer();
    assert_eq!(
        tx.send_gso(&buf, 1400, rx.local_addr()).expect("send_gso"),
        10_000
    );
    let mut batch = RecvBatch::new(16, 2048);
    let got = collect(&rx, &mut batch, |g| total(g) >= 10_000);
    let lens: Vec<usize> = got.iter().map(|g| g.data.len()).collect();
    assert_eq!(lens, [1400, 1400, 1400, 1400, 1400, 1400, 1400, 200]);
    for (g, chunk) in got.iter().zip(buf.chunks(1400)) {
        assert_eq!(g.data, chunk);
        assert_eq!(g.src, tx.local_addr());
        assert_eq!(g.segment, None);
    }
    assert_quiet(&rx);
}

#[test]
fn gso_v4_without_gro() {
    gso_without_gro(V4.into());
}

#[test]
fn gso_v6_without_gro() {
    gso_without_gro(V6.into());
}

fn gso_with_gro(ip: std::net::IpAddr) {
    let ns = NsGuard::new();
    let tx = bind(&ns, ip, false);
    let rx = bind(&ns, ip, true);
    assert!(rx.gro());
    let buf = gso_buffer();
    tx.send_gso(&buf, 1400, rx.local_addr()).expect("send_gso");
    let mut batch = RecvBatch::new(8, 65_536);
    let got = collect(&rx, &mut batch, |g| total(g) >= 10_000);
    assert_eq!(total(&got), 10_000);
    assert!(got.len() <= 8);
    let mut joined = Vec::new();
    for g in &got {
        assert_eq!(g.src, tx.local_addr());
        assert!(!g.truncated);
        if g.data.len() > 1400 {
            assert_eq!(g.segment, Some(1400), "coalesced read of {}", g.data.len());
        }
        if let Some(seg) = g.segment {
            assert_eq!(seg, 1400);
        }
        joined.extend_from_slice(&g.data);
    }
    assert_eq!(joined, buf);
    // Over loopback the GSO super-datagram reaches a GRO socket whole.
    assert!(
        got.iter().any(|g| g.segment == Some(1400)),
        "no read reported the segment size: {:?}",
        got.iter()
            .map(|g| (g.data.len(), g.segment))
            .collect::<Vec<_>>()
    );
    assert_quiet(&rx);
}

#[test]
fn gso_v4_with_gro() {
    gso_with_gro(V4.into());
}

#[test]
fn gso_v6_with_gro() {
    gso_with_gro(V6.into());
}

#[test]
fn gso_rejects_bad_arguments() {
    let ns = NsGuard::new();
    let tx = bind(&ns, V4, false);
    let dst = SocketAddr::from((V4, 4500));
    let buf = vec![0u8; GSO_MAX_BYTES + 1];
    let cases: [(&[u8], u16); 4] = [
        (&buf[..100], 0),
        (&buf[..0], 1400),
        (&buf[..], 1400),
        (&buf[..GSO_MAX_SEGMENTS * 100 + 1], 100),
    ];
    for (b, seg) in cases {
        let e = tx.send_gso(b, seg, dst).unwrap_err();
        assert_eq!(
            e.kind(),
            io::ErrorKind::InvalidInput,
            "{} / {seg}: {e}",
            b.len()
        );
    }
    // Exactly the limits is fine.
    tx.send_gso(&buf[..GSO_MAX_SEGMENTS * 100], 100, dst)
        .expect("64 segments");
    let v6 = SocketAddr::from((V6, 4500));
    let e = tx.send_gso(&buf[..100], 50, v6).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
}

#[test]
fn single_datagrams_and_errors() {
    let ns = NsGuard::new();
    let a = bind(&ns, V6, false);
    let b = bind(&ns, V6, false);
    let mut buf = [0u8; 64];
    let e = b.recv_from(&mut buf).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
    let mut batch = RecvBatch::new(4, 64);
    let e = batch.recv(&b).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
    assert!(batch.is_empty());

    assert_eq!(a.send_to(b"ping", b.local_addr()).unwrap(), 4);
    let mut ready = [false];
    wait_readable(&[b.as_fd()], Some(TIMEOUT), &mut ready).unwrap();
    let (n, src) = b.recv_from(&mut buf).unwrap();
    assert_eq!((&buf[..n], src), (&b"ping"[..], a.local_addr()));

    // A datagram longer than the batch buffer is truncated and flagged.
    a.send_to(&[7u8; 100], b.local_addr()).unwrap();
    let got = collect(&b, &mut batch, |g| !g.is_empty());
    assert_eq!(got[0].data, [7u8; 64]);
    assert!(got[0].truncated);

    // IPv4 destinations from an IPv6 socket are refused before anything is sent.
    let v4 = SocketAddr::from((V4, 4500));
    assert_eq!(
        a.send_to(b"x", v4).unwrap_err().kind(),
        io::ErrorKind::InvalidInput
    );
    let msgs: [(&[u8], SocketAddr); 2] = [(b"x", b.local_addr()), (b"y", v4)];
    assert_eq!(
        a.send_batch(&msgs).unwrap_err().kind(),
        io::ErrorKind::InvalidInput
    );
    let mut storage = SendBatch::with_capacity(1);
    let mut queue = storage.begin();
    queue.push(b"y", v4).unwrap();
    assert!(queue.is_full());
    let e = queue.push(b"z", b.local_addr()).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    assert_eq!(
        queue.flush(&a).unwrap_err().kind(),
        io::ErrorKind::InvalidInput
    );
    assert!(queue.is_empty());
    assert_eq!(queue.flush(&a).unwrap(), 0);
    assert_quiet(&b);
}

#[test]
fn buffers_are_forced() {
    let ns = NsGuard::new();
    let s = bind(&ns, V4, false);
    // Root may exceed net.core.rmem_max; the kernel reports twice the requested size.
    assert!(s.recv_buffer_size().unwrap() >= 4 << 20);
    assert!(s.send_buffer_size().unwrap() >= 4 << 20);
}

#[test]
fn bind_to_missing_address_names_it() {
    let ns = NsGuard::new();
    let name = ns.name().unwrap();
    for addr in ["192.0.2.1:4500", "[2001:db8::1]:4500"] {
        let addr: SocketAddr = addr.parse().unwrap();
        let e = UdpSocket::bind(addr, ns.name(), &UdpOptions::default()).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AddrNotAvailable, "{e}");
        let msg = e.to_string();
        assert!(msg.contains(&addr.to_string()), "{msg}");
        assert!(msg.contains(name), "{msg}");
    }
    let missing = format!("{PREFIX}{}-missing", std::process::id());
    let addr = SocketAddr::from((V4, 0));
    let e = UdpSocket::bind(addr, Some(&missing), &UdpOptions::default()).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::NotFound, "{e}");
    assert!(e.to_string().contains(&missing), "{e}");
}

#[test]
fn namespace_is_isolated_from_root() {
    let ns = NsGuard::new();
    let root = UdpSocket::bind((V4, 0).into(), None, &UdpOptions::default()).expect("root bind");
    assert_eq!(root.netns(), None);
    let port = root.local_addr().port();
    // The same address and port is free inside the namespace.
    let inner = UdpSocket::bind((V4, port).into(), ns.name(), &UdpOptions::default())
        .expect("bind the root's port inside the namespace");
    assert_eq!(inner.local_addr(), root.local_addr());
    assert_eq!(inner.netns(), ns.name());
    // Traffic sent inside the namespace reaches the namespace's socket, not the root one.
    let tx = bind(&ns, V4, false);
    tx.send_to(b"inside", inner.local_addr()).unwrap();
    let mut batch = RecvBatch::new(4, 64);
    let got = collect(&inner, &mut batch, |g| !g.is_empty());
    assert_eq!(got[0].data, b"inside");
    assert_quiet(&root);
    // And binding the same port again inside the namespace is refused.
    let e = UdpSocket::bind((V4, port).into(), ns.name(), &UdpOptions::default()).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::AddrInUse, "{e}");
}

#[test]
fn socket_types_are_send() {
    fn send<T: Send>() {}
    fn sync<T: Sync>() {}
    send::<UdpSocket>();
    sync::<UdpSocket>();
    send::<SendBatch>();
    send::<RecvBatch>();
}
