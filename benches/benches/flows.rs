//! Cost of the flow table (`causeway_engine::flow`): key extraction, hashing, lookup and insert.
//!
//! Run: `cargo bench -p causeway-benches --bench flows` (add a filter such as `flow_lookup`).
//!
//! - `flow_lookup/<n>`: one `FlowTable::lookup_or_insert` per iteration that finds an existing
//!   flow (and counts the packet on it), in a table holding n = 10³, 10⁵ or 10⁶ flows made for
//!   exactly n (the SKU limit). The flows are visited with a stride of 7919 slots, so that at
//!   10⁵ and 10⁶ flows nearly every lookup misses the caches (the worst case: a burst of packets
//!   of one flow hits warm lines instead).
//! - `flow_insert/<n>`: one `FlowTable::remove` of the oldest flow then one `lookup_or_insert`
//!   of a new one per iteration, in a table kept at n flows (full after each insert, a
//!   load factor of n over the index's 2 to 4 buckets per flow).
//! - `flow_key/<packet>`: `flow::classify` of a 64-byte IPv4 TCP segment, UDP datagram, ICMP
//!   echo request, and an ICMP error (fragmentation needed) quoting a TCP segment; the packet
//!   was parsed by `IpSummary::parse` before (the pipeline does that anyway).
//! - `flow_hash/<hasher>`: the table's seeded folded-multiply hash (`FlowHasher`) against std's
//!   SipHash-1-3 (`RandomState`) on the same 40-byte key: the price of the alternative.
//!
//! Throughput is in elements: criterion's time is ns per operation. The table is built with no
//! new-flows-per-second limit and the clock advances 1 ns per iteration, so nothing is refused
//! and nothing expires; every answer is checked. The memory the table holds per flow is
//! printed when it is built.

use std::hash::BuildHasher;
use std::hint::black_box;
use std::time::Duration;

use causeway_engine::flow::{
    classify, Classified, FlowHasher, FlowLimits, FlowTable, FlowTimeouts, PacketKey,
};
use causeway_wire::ip::{self, IpSummary, PROTO_ICMP, PROTO_TCP, PROTO_UDP};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30)
}

const SIZES: [(&str, usize); 3] = [("1e3", 1_000), ("1e5", 100_000), ("1e6", 1_000_000)];

/// Flows between two lookups (modulo the size): a prime, co-prime with every size, so every
/// flow is visited.
const STRIDE: usize = 7919;

/// The key of flow number `i`: a UDP flow from a VNet host to an on-premises one, distinct for
/// every `i` below 2⁴⁰.
fn key(i: u64) -> PacketKey {
    let src = 0x0a01_0000 + u128::from((i >> 16) as u32 & 0xff_ffff);
    PacketKey::new(
        4,
        PROTO_UDP,
        (src, (i & 0xffff) as u16),
        (0x0a02_000a, 5201),
        0,
    )
}

fn table(n: usize) -> FlowTable {
    let t = FlowTable::new(
        FlowLimits {
            max_flows: n,
            new_flows_per_sec: None,
        },
        FlowTimeouts::default(),
        FlowHasher::random(),
        0,
    );
    eprintln!(
        "flow table for {n} flows: {} bytes, {:.1} bytes per flow",
        t.memory_bytes(),
        t.memory_bytes() as f64 / n as f64
    );
    t
}

fn lookup(c: &mut Criterion) {
    let mut group = c.benchmark_group("flow_lookup");
    group.throughput(Throughput::Elements(1));
    for (name, n) in SIZES {
        let mut t = table(n);
        let keys: Vec<PacketKey> = (0..n as u64).map(key).collect();
        for k in &keys {
            assert!(t.lookup_or_insert(0, k, 1, 64).is_ok());
        }
        assert_eq!(t.len(), n);
        let mut now = 0u64;
        let mut i = 0usize;
        let stride = STRIDE % n;
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter(|| {
                now += 1;
                i += stride;
                if i >= n {
                    i -= n;
                }
                let f = t
                    .lookup_or_insert(black_box(now), black_box(&keys[i]), 1, 64)
                    .expect("an existing flow");
                assert!(!f.is_new());
                black_box(f.dir())
            })
        });
    }
    group.finish();
}

fn insert(c: &mut Criterion) {
    let mut group = c.benchmark_group("flow_insert");
    group.throughput(Throughput::Elements(1));
    for (name, n) in SIZES {
        let mut t = table(n);
        let mut ring: Vec<PacketKey> = (0..n as u64).map(key).collect();
        for k in &ring {
            assert!(t.lookup_or_insert(0, k, 1, 64).is_ok());
        }
        let mut next = n as u64;
        let mut oldest = 0usize;
        let mut now = 0u64;
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter(|| {
                now += 1;
                assert!(t.remove(&ring[oldest].key));
                let k = key(next);
                next += 1;
                let f = t
                    .lookup_or_insert(black_box(now), black_box(&k), 1, 64)
                    .expect("room for one");
                assert!(f.is_new());
                ring[oldest] = k;
                oldest += 1;
                if oldest == n {
                    oldest = 0;
                }
            })
        });
        assert_eq!(t.len(), n);
    }
    group.finish();
}

/// A 64-byte IPv4 packet (VNet host -> on-premises host) of `proto` with `l4` at its start.
fn v4(proto: u8, l4: &[u8]) -> Vec<u8> {
    let mut p = vec![0u8; 64];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&64u16.to_be_bytes());
    p[6] = 0x40;
    p[8] = 64;
    p[9] = proto;
    p[12..16].copy_from_slice(&[10, 1, 0, 10]);
    p[16..20].copy_from_slice(&[10, 2, 0, 10]);
    p[20..20 + l4.len()].copy_from_slice(l4);
    ip::set_v4_checksum(&mut p[..20]);
    p
}

fn key_extraction(c: &mut Criterion) {
    let mut group = c.benchmark_group("flow_key");
    group.throughput(Throughput::Elements(1));
    let mut tcp = [0u8; 20];
    tcp[0..2].copy_from_slice(&40_000u16.to_be_bytes());
    tcp[2..4].copy_from_slice(&5_201u16.to_be_bytes());
    tcp[12] = 5 << 4;
    tcp[13] = 0x10; // ACK
    let mut udp = [0u8; 8];
    udp[0..2].copy_from_slice(&40_000u16.to_be_bytes());
    udp[2..4].copy_from_slice(&5_201u16.to_be_bytes());
    udp[4..6].copy_from_slice(&44u16.to_be_bytes());
    let echo = [8u8, 0, 0, 0, 0x12, 0x34, 0, 1];
    let segment = v4(PROTO_TCP, &tcp);
    // Fragmentation needed from a router back to the VNet host, quoting the segment's
    // header and 8 bytes of TCP.
    let mut err = vec![3u8, 4, 0, 0, 0, 0, 0x05, 0x78];
    err.extend_from_slice(&segment[..28]);
    let mut error = v4(PROTO_ICMP, &err);
    error[12..16].copy_from_slice(&[192, 0, 2, 1]);
    error[16..20].copy_from_slice(&[10, 1, 0, 10]);
    ip::set_v4_checksum(&mut error[..20]);
    for (name, pkt, is_error) in [
        ("tcp", segment.clone(), false),
        ("udp", v4(PROTO_UDP, &udp), false),
        ("icmp", v4(PROTO_ICMP, &echo), false),
        ("icmp_error", error, true),
    ] {
        let s = IpSummary::parse(&pkt, false).expect("valid packet");
        assert_eq!(
            matches!(classify(&pkt, &s), Classified::IcmpError(_)),
            is_error
        );
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter(|| black_box(classify(black_box(&pkt), black_box(&s))))
        });
    }
    group.finish();
}

fn hash(c: &mut Criterion) {
    let mut group = c.benchmark_group("flow_hash");
    group.throughput(Throughput::Elements(1));
    let k = key(12_345).key;
    let fold = FlowHasher::random();
    group.bench_function("fold", |b| b.iter(|| black_box(fold.hash(black_box(&k)))));
    let sip = std::collections::hash_map::RandomState::new();
    group.bench_function("siphash13", |b| {
        b.iter(|| black_box(sip.hash_one(black_box(&k))))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = config();
    targets = lookup, insert, key_extraction, hash
}
criterion_main!(benches);
