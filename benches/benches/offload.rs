//! Cost of the software TCP offloads of the tunnel path: segmenting a TUN super-packet into wire
//! segments (`causeway_wire::gso::segment_tcp`, egress) and coalescing opened segments back into
//! one super-packet for a single TUN write (`causeway_wire::gro::TcpCoalescer`, ingress).
//!
//! Run: `cargo bench -p causeway-benches --bench offload` (add a filter such as `gro_coalesce`).
//!
//! - `gso_split/{v4,v6}/{1448,536}`: one `segment_tcp` call per iteration on a 64 KB TCP
//!   super-packet (timestamps option: 32 bytes of TCP header) of as many segments of 1448 or 536
//!   payload bytes as fit 65 535 bytes of IP packet: 45 or 122 segments. Each segment is built in
//!   a scratch buffer with its headers and full checksums (IPv4 header, TCP) and handed to a
//!   closure that only looks at its length. The `IpSummary` of the super-packet is parsed once,
//!   outside the timed part (the pipeline has it already). Throughput in bytes of the
//!   super-packet.
//! - `gro_coalesce/{v4,v6}/1448`: the 45 segments of such a super-packet (made by `segment_tcp`
//!   beforehand) offered one by one to a `TcpCoalescer`, then one `flush`: per iteration, 45
//!   checks and copies (each segment's TCP checksum verified) and the super-packet's headers and
//!   virtio header written. Every answer is checked (44 `Appended`, then `AppendedLast`) and so is
//!   the flushed length. Throughput in bytes of the 45 segments (IP bytes in).

use std::hint::black_box;
use std::time::Duration;

use causeway_wire::gro::{Offer, TcpCoalescer, MAX_LEN};
use causeway_wire::gso::segment_tcp;
use causeway_wire::ip::{self, IpSummary, PROTO_TCP};
use causeway_wire::tcp::FLAG_ACK;
use causeway_wire::virtio::{self, VirtioHdr};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30)
}

/// TCP header with NOP, NOP, timestamps.
const TCP_HEADER: usize = 32;

/// A TCP super-packet as a TUN with TSO hands it over: as many `mss`-byte segments as fit 64 KB,
/// with its virtio header and number of segments.
fn super_packet(version: u8, mss: usize) -> (Vec<u8>, VirtioHdr, usize) {
    let l4 = if version == 4 {
        ip::IPV4_HEADER_LEN
    } else {
        ip::IPV6_HEADER_LEN
    };
    let hdr = l4 + TCP_HEADER;
    let segments = (MAX_LEN - hdr) / mss;
    let total = hdr + segments * mss;
    let mut p = vec![0u8; total];
    if version == 4 {
        p[0] = 0x45;
        p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        p[4..6].copy_from_slice(&0x1234u16.to_be_bytes());
        p[6] = 0x40;
        p[8] = 64;
        p[9] = PROTO_TCP;
        p[12..16].copy_from_slice(&[10, 2, 0, 10]);
        p[16..20].copy_from_slice(&[10, 1, 0, 10]);
        ip::set_v4_checksum(&mut p[..20]);
    } else {
        p[0] = 0x60;
        p[4..6].copy_from_slice(&((total - 40) as u16).to_be_bytes());
        p[6] = PROTO_TCP;
        p[7] = 64;
        p[8..10].copy_from_slice(&[0xfd, 0x00]);
        p[23] = 2;
        p[24..26].copy_from_slice(&[0xfd, 0x00]);
        p[39] = 1;
    }
    let t = &mut p[l4..hdr];
    t[0..2].copy_from_slice(&443u16.to_be_bytes());
    t[2..4].copy_from_slice(&40_000u16.to_be_bytes());
    t[4..8].copy_from_slice(&0x1000_0000u32.to_be_bytes());
    t[8..12].copy_from_slice(&0x2000_0000u32.to_be_bytes());
    t[12] = ((TCP_HEADER / 4) as u8) << 4;
    t[13] = FLAG_ACK;
    t[14..16].copy_from_slice(&501u16.to_be_bytes());
    t[20..32].copy_from_slice(&[1, 1, 8, 10, 0, 0, 0x12, 0x34, 0, 0, 0x56, 0x78]);
    for (i, b) in p[hdr..].iter_mut().enumerate() {
        *b = (i % 251) as u8;
    }
    let v = VirtioHdr {
        flags: virtio::F_NEEDS_CSUM,
        gso_type: if version == 4 {
            virtio::GSO_TCPV4
        } else {
            virtio::GSO_TCPV6
        },
        hdr_len: hdr as u16,
        gso_size: mss as u16,
        csum_start: l4 as u16,
        csum_offset: 16,
    };
    (p, v, segments)
}

fn name(version: u8) -> &'static str {
    if version == 4 {
        "v4"
    } else {
        "v6"
    }
}

fn gso_split(c: &mut Criterion) {
    let mut group = c.benchmark_group("gso_split");
    for version in [4u8, 6] {
        for mss in [1448usize, 536] {
            let (pkt, v, n) = super_packet(version, mss);
            let s = IpSummary::parse(&pkt, true).expect("a valid super-packet");
            let mut scratch = vec![0u8; usize::from(v.hdr_len) + mss];
            group.throughput(Throughput::Bytes(pkt.len() as u64));
            group.bench_function(BenchmarkId::new(name(version), mss), |b| {
                b.iter(|| {
                    let mut bytes = 0usize;
                    let r = segment_tcp(black_box(&pkt), &s, &v, &mut scratch, |seg| {
                        bytes += black_box(seg).len();
                    });
                    if r != Ok(n) {
                        panic!("gso_split/{}/{mss}: {r:?}", name(version));
                    }
                    black_box(bytes)
                })
            });
        }
    }
    group.finish();
}

fn gro_coalesce(c: &mut Criterion) {
    let mut group = c.benchmark_group("gro_coalesce");
    for version in [4u8, 6] {
        let mss = 1448usize;
        let (pkt, v, n) = super_packet(version, mss);
        let s = IpSummary::parse(&pkt, true).expect("a valid super-packet");
        let mut scratch = vec![0u8; usize::from(v.hdr_len) + mss];
        let mut segs: Vec<Vec<u8>> = Vec::with_capacity(n);
        segment_tcp(&pkt, &s, &v, &mut scratch, |seg| segs.push(seg.to_vec())).expect("segmented");
        assert_eq!(segs.len(), 45);
        let bytes: usize = segs.iter().map(Vec::len).sum();
        let mut gro = TcpCoalescer::new(MAX_LEN);
        group.throughput(Throughput::Bytes(bytes as u64));
        group.bench_function(BenchmarkId::new(name(version), mss), |b| {
            b.iter(|| {
                for (i, seg) in segs.iter().enumerate() {
                    let r = gro.offer(black_box(seg));
                    let want = if i + 1 == n {
                        Offer::AppendedLast
                    } else {
                        Offer::Appended
                    };
                    if r != want {
                        panic!("gro_coalesce/{}: segment {i}: {r:?}", name(version));
                    }
                }
                let out = gro.flush().expect("a pending super-packet");
                if out.len() != virtio::LEN + pkt.len() {
                    panic!("gro_coalesce/{}: {} bytes", name(version), out.len());
                }
                black_box(out.len())
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = config();
    targets = gso_split, gro_coalesce
}
criterion_main!(benches);
