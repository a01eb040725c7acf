//! Per-packet cost of the ExpressRoute pipeline and of the SKU shaper.
//!
//! Run: `cargo bench -p causeway-benches --bench pipeline` (add a filter such as `er_egress`).
//!
//! - `er_egress/<packet>`, `er_ingress/<packet>`: one `Egress::process` / `Ingress::process`
//!   call per iteration for IPv4 UDP packets of 64, 512 and 1400 bytes (IP total length) and a
//!   64 KB TCP super-packet (virtio `GSO_TCPV4`, 45 × 1448 bytes). Throughput is in IP bytes, so
//!   criterion's time is ns per packet (per super-packet for `tcp_super64k`) and its rate is
//!   bytes/s. The gateway is unshaped (10^15 bit/s, no packets/s limit) so that every packet is
//!   forwarded at once; every verdict is checked.
//!   The pipeline decrements the TTL in place: each iteration writes back 4 bytes (TTL, protocol,
//!   header checksum) from the template; the packet itself is not copied.
//! - `er_batch/udp64_x128`: a batch of 128 64-byte packets each way, as the daemon's workers
//!   handle them per wake-up; throughput in packets (elements).
//! - `er_egress_flows/*`, `er_ingress_flows/*`, `er_batch_flows/*`: the same with the gateway's
//!   flow table (ExpressRoute Standard: 200 000 flows), shared by both halves behind its mutex
//!   as in the daemon: one lock, a lookup and the flow's counters per packet. The batch uses
//!   128 flows (one per port), each seen both ways.
//! - `shaper/*`: `Shaper::schedule` alone, one call per iteration, at the ErGwScale 40 limits
//!   (40 Gbit/s and 4 Mpps) with the clock advancing at the SKU's own pace (never refused), and
//!   bits/s only. Throughput in packets (elements).

use std::hint::black_box;
use std::time::Duration;

use causeway_benches::{
    forwarded_now, lab, lab_flows, packets, udp_v4_port, Dir, Lab, NOW_STEP_NS,
};
use causeway_engine::shaper::{BurstPolicy, Shaper};
use causeway_engine::sku::Sku;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30)
}

/// The lab without a flow table, and with one (ExpressRoute Standard's, shared by both halves).
const LABS: [(&str, fn() -> Lab); 2] = [("", lab), ("_flows", lab_flows)];

fn pipeline(c: &mut Criterion) {
    for (group_name, dir, make) in [
        ("er_egress", Dir::Egress, LABS[0].1),
        ("er_ingress", Dir::Ingress, LABS[0].1),
        ("er_egress_flows", Dir::Egress, LABS[1].1),
        ("er_ingress_flows", Dir::Ingress, LABS[1].1),
    ] {
        let mut group = c.benchmark_group(group_name);
        for (name, mut pkt) in packets(dir) {
            let mut l = make();
            let len = pkt.len();
            group.throughput(Throughput::Bytes(len as u64));
            let mut now = 0u64;
            group.bench_function(BenchmarkId::from_parameter(name), |b| {
                b.iter(|| {
                    now += NOW_STEP_NS;
                    pkt.reset();
                    let v = l.process(dir, black_box(now), &mut pkt);
                    if !forwarded_now(&v, now, len) {
                        panic!("{group_name}/{name}: unexpected verdict {v:?}");
                    }
                    black_box(v)
                })
            });
        }
        group.finish();
    }
}

fn batch(c: &mut Criterion) {
    const BATCH: usize = 128;
    for (suffix, make) in LABS {
        let mut group = c.benchmark_group(format!("er_batch{suffix}"));
        group.throughput(Throughput::Elements(2 * BATCH as u64));
        let mut l = make();
        // With a flow table: 128 flows (a port each), both directions of each.
        let port = |i: usize| {
            if suffix.is_empty() {
                40_000
            } else {
                40_000 + i as u16
            }
        };
        let mut out: Vec<_> = (0..BATCH)
            .map(|i| udp_v4_port(Dir::Egress, 64, port(i)))
            .collect();
        let mut back: Vec<_> = (0..BATCH)
            .map(|i| udp_v4_port(Dir::Ingress, 64, port(i)))
            .collect();
        let mut now = 0u64;
        group.bench_function("udp64_x128_each_way", |b| {
            b.iter(|| {
                let mut forwarded = 0usize;
                for p in out.iter_mut() {
                    now += NOW_STEP_NS;
                    p.reset();
                    let v = l.process(Dir::Egress, now, p);
                    forwarded += usize::from(forwarded_now(&v, now, 64));
                }
                for p in back.iter_mut() {
                    now += NOW_STEP_NS;
                    p.reset();
                    let v = l.process(Dir::Ingress, now, p);
                    forwarded += usize::from(forwarded_now(&v, now, 64));
                }
                assert_eq!(forwarded, 2 * BATCH);
                black_box(forwarded)
            })
        });
        group.finish();
    }
}

fn shaper(c: &mut Criterion) {
    let mut group = c.benchmark_group("shaper");
    group.throughput(Throughput::Elements(1));
    let limits = Sku::ErGwScale(40).limits();
    let bps = limits.bits_per_sec;
    let pps = limits
        .packets_per_sec
        .expect("ErGwScale publishes a packets/s limit");
    // The clock advances by one packet's time at the SKU rate (the slower of bits/s and packets/s),
    // so the buckets stay full and every call is admitted at once.
    for (name, bytes) in [
        ("udp64", 64u64),
        ("udp1400", 1400),
        ("tcp_super64k", 65_212),
    ] {
        let packets: u64 = if bytes > 1500 { 45 } else { 1 };
        let step_bits = (bytes * 8 * 1_000_000_000).div_ceil(bps);
        let step_pps = (packets * 1_000_000_000).div_ceil(pps);
        let step = step_bits.max(step_pps);
        let mut s = Shaper::new(bps, Some(pps), BurstPolicy::default(), 0);
        let mut now = 0u64;
        group.bench_function(BenchmarkId::new("ergwscale40", name), |b| {
            b.iter(|| {
                now += step;
                let at = s
                    .schedule(black_box(now), black_box(bytes), black_box(packets))
                    .expect("admitted");
                assert!(at <= now);
                black_box(at)
            })
        });
    }
    let mut s = Shaper::new(bps, None, BurstPolicy::default(), 0);
    let mut now = 0u64;
    group.bench_function(BenchmarkId::new("bits_only", "udp1400"), |b| {
        b.iter(|| {
            now += 280;
            let at = s
                .schedule(black_box(now), black_box(1400), black_box(1))
                .expect("admitted");
            black_box(at)
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = config();
    targets = pipeline, batch, shaper
}
criterion_main!(benches);
