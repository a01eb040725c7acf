//! Allocations per packet on the hot paths: must be zero.
//!
//! Run: `cargo bench -p causeway-benches --bench alloc`
//!
//! Two counters: a counting global allocator wraps the system one (every Rust allocation), and,
//! on Linux with glibc, `malloc`, `calloc` and `realloc` are interposed by this binary and
//! forwarded to glibc's `__libc_*` functions, so that allocations made by C code linked in (the
//! AEAD of aws-lc, which `causeway-esp` calls) are counted too (Rust allocations reach `malloc`
//! as well, so the C count includes them).
//!
//! 1. The ExpressRoute pipeline: after a warm-up, 100 000 packets go through the gateway
//!    (50 000 egress, 50 000 ingress; 64/512/1400-byte UDP and 64 KB TCP super-packets, with one
//!    packet in 1000 expiring so that the ICMP time-exceeded reply path runs too). (The pipeline
//!    resets the TTL of each reused buffer, see `causeway_benches::Packet`.)
//!    Then the same with the gateway's flow table (ExpressRoute Standard's, 200 000 flows,
//!    shared by both halves), and a part of its own: 100 000 UDP packets of 60 000 flows (a new
//!    port every other packet, replies on the same flows), with the clock running at 1 ms a
//!    packet so that flows expire, and the incremental sweep (`expire_flows`) every 128
//!    packets, as the workers call it: inserts, lookups, expiry and slot reuse; every 64
//!    packets a non-first fragment and an ICMP error go through as well (the paths that never
//!    start a flow, or start one of the error's own addresses).
//! 2. ESP: for each cipher (aes128gcm16, aes256gcm16, chacha20poly1305) and inner packet of 64,
//!    512 and 1400 bytes, 11 112 round trips (100 008 in all) of `OutboundSa::seal` then
//!    `InboundSa::open` in the same buffer, each checked (sequence number, inner packet back
//!    byte for byte). The SAs are built before counting starts (building one allocates: its
//!    AEAD context, its replay window).
//!
//! Prints `allocations per packet: N` for each part and exits with status 1 when any count is
//! not zero.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};

use causeway_benches::esp::{self, CIPHERS, SIZES};
use causeway_benches::{
    icmp_error_v4, lab, lab_flows, packets, tcp_super_v4, udp_v4_later_fragment, udp_v4_port,
    udp_v4_ttl, Dir, Lab, NOW_STEP_NS, TCP_SEGMENTS,
};
use causeway_engine::pipeline::{lock_flows, Verdict};
use causeway_esp::HEADROOM;

static ALLOCS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);

/// The system allocator, counting every allocation and reallocation.
struct Counting;

// The workspace denies `unsafe_code`; implementing `GlobalAlloc` needs an `unsafe impl`, and this
// benchmark binary is the one place outside `crates/sys` that has to (it only forwards to
// `System`).
#[allow(unsafe_code)]
// SAFETY: every method forwards to `System` with the caller's arguments unchanged, so `System`'s
// guarantees hold; the counters are atomics and never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(layout.size() as u64, Ordering::Relaxed);
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, passed on as is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(layout.size() as u64, Ordering::Relaxed);
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(new_size as u64, Ordering::Relaxed);
        // SAFETY: `ptr` was allocated by this allocator (that is, by `System`) with `layout`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by this allocator (that is, by `System`) with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// `malloc`, `calloc` and `realloc` calls, from Rust and C code alike (Linux, glibc only).
static C_ALLOCS: AtomicU64 = AtomicU64::new(0);

/// Interposes `malloc`, `calloc` and `realloc` for the whole process: the executable's own
/// definitions win over glibc's for every caller, C code linked in statically (aws-lc) included.
/// Each counts, then forwards to glibc's allocator under its internal name; `free` and the
/// aligned allocation functions are glibc's own, untouched (they work on the same heap).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
mod c_malloc {
    use core::ffi::c_void;
    use std::sync::atomic::Ordering;

    use super::C_ALLOCS;

    extern "C" {
        fn __libc_malloc(size: usize) -> *mut c_void;
        fn __libc_calloc(n: usize, size: usize) -> *mut c_void;
        fn __libc_realloc(ptr: *mut c_void, size: usize) -> *mut c_void;
    }

    /// # Safety
    /// The contract of C `malloc`, passed on unchanged.
    #[no_mangle]
    pub unsafe extern "C" fn malloc(size: usize) -> *mut c_void {
        C_ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: glibc's own `malloc` under its exported internal name, same arguments.
        unsafe { __libc_malloc(size) }
    }

    /// # Safety
    /// The contract of C `calloc`, passed on unchanged.
    #[no_mangle]
    pub unsafe extern "C" fn calloc(n: usize, size: usize) -> *mut c_void {
        C_ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: glibc's own `calloc`, same arguments.
        unsafe { __libc_calloc(n, size) }
    }

    /// # Safety
    /// The contract of C `realloc`: `ptr` is null or came from this heap (glibc's).
    #[no_mangle]
    pub unsafe extern "C" fn realloc(ptr: *mut c_void, size: usize) -> *mut c_void {
        C_ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: glibc's own `realloc`; `ptr` belongs to glibc's heap (every allocation
        // function of this process is glibc's, only counted here).
        unsafe { __libc_realloc(ptr, size) }
    }
}

/// True when C allocations are counted on this platform.
const C_COUNTED: bool = cfg!(all(target_os = "linux", target_env = "gnu"));

/// Both counters at once.
#[derive(Clone, Copy)]
struct Counts {
    rust: u64,
    rust_bytes: u64,
    c: u64,
}

impl Counts {
    fn now() -> Counts {
        Counts {
            rust: ALLOCS.load(Ordering::SeqCst),
            rust_bytes: BYTES.load(Ordering::SeqCst),
            c: C_ALLOCS.load(Ordering::SeqCst),
        }
    }

    fn since(self, before: Counts) -> Counts {
        Counts {
            rust: self.rust - before.rust,
            rust_bytes: self.rust_bytes - before.rust_bytes,
            c: self.c - before.c,
        }
    }

    fn is_zero(self) -> bool {
        self.rust == 0 && self.c == 0
    }

    fn report(self, packets: u64, what: &str) {
        println!(
            "{what}: Rust allocations: {} ({} bytes); C malloc/calloc/realloc calls: {}",
            self.rust,
            self.rust_bytes,
            if C_COUNTED {
                self.c.to_string()
            } else {
                "not counted on this platform".into()
            }
        );
        println!(
            "{what}: allocations per packet: {:.3}",
            self.rust.max(self.c) as f64 / packets as f64
        );
    }
}

const PACKETS: u64 = 100_000;
const WARM_UP: u64 = 1_000;

#[derive(Default)]
struct Tally {
    forwarded: u64,
    replies: u64,
    other: u64,
}

/// Part 1: the ExpressRoute pipeline. Ok(true) when nothing was allocated.
fn pipeline() -> Result<bool, String> {
    pipeline_of(lab(), "pipeline")
}

/// Part 1 with the gateway's flow table.
fn pipeline_with_flows() -> Result<bool, String> {
    pipeline_of(lab_flows(), "pipeline+flows")
}

/// Many flows: creation, lookup, expiry and the sweep. Ok(true) when nothing was allocated.
fn flow_churn() -> Result<bool, String> {
    let mut l = lab_flows();
    let mut out = udp_v4_port(Dir::Egress, 64, 0);
    let mut back = udp_v4_port(Dir::Ingress, 64, 0);
    let mut frag = udp_v4_later_fragment(Dir::Egress, 512);
    let mut error = icmp_error_v4(Dir::Ingress, 7);
    let mut now = 0u64;
    let mut run = |n: u64, tally: &mut Tally| {
        for i in 0..n {
            now += 1_000_000;
            let port = (((i / 2) % 60_000) as u16).to_be_bytes();
            let (dir, p) = if i % 2 == 0 {
                out.bytes[20..22].copy_from_slice(&port);
                (Dir::Egress, &mut out)
            } else {
                back.bytes[22..24].copy_from_slice(&port);
                (Dir::Ingress, &mut back)
            };
            p.reset();
            match black_box(l.process(dir, now, p)) {
                Verdict::Forward { .. } => tally.forwarded += 1,
                _ => tally.other += 1,
            }
            if i % 64 == 63 {
                // A later fragment and an ICMP error about a flow that may or may not be held:
                // never refused here, and never allocating.
                for (dir, p) in [(Dir::Egress, &mut frag), (Dir::Ingress, &mut error)] {
                    p.reset();
                    match black_box(l.process(dir, now, p)) {
                        Verdict::Forward { .. } => tally.forwarded += 1,
                        _ => tally.other += 1,
                    }
                }
            }
            if i % 128 == 127 {
                black_box(l.eg.expire_flows(now, 1024));
            }
        }
    };
    run(WARM_UP, &mut Tally::default());
    let mut tally = Tally::default();
    let before = Counts::now();
    run(PACKETS, &mut tally);
    let counts = Counts::now().since(before);
    let stats = l
        .flows
        .as_ref()
        .map(|f| lock_flows(f).stats())
        .unwrap_or_default();
    println!(
        "flow churn: {PACKETS} packets (and a later fragment and an ICMP error every 64): {} \
         forwarded, {} other; flows created {}, expired {}",
        tally.forwarded, tally.other, stats.created, stats.expired
    );
    counts.report(PACKETS, "flow churn");
    if tally.other != 0 || stats.expired == 0 {
        return Err("every packet should be forwarded, and flows should expire".into());
    }
    Ok(counts.is_zero())
}

fn pipeline_of(mut l: Lab, what: &str) -> Result<bool, String> {
    let mut egress = packets(Dir::Egress);
    let mut ingress = packets(Dir::Ingress);
    let mut expiring = [
        udp_v4_ttl(Dir::Egress, 100, 1),
        udp_v4_ttl(Dir::Ingress, 100, 1),
    ];
    let mut now = 0u64;

    let mut run = |n: u64, tally: &mut Tally| {
        for i in 0..n {
            now += NOW_STEP_NS;
            let dir = if i % 2 == 0 {
                Dir::Egress
            } else {
                Dir::Ingress
            };
            let p = if i % 1000 == 999 {
                &mut expiring[(i % 2) as usize]
            } else {
                let set = if dir == Dir::Egress {
                    &mut egress
                } else {
                    &mut ingress
                };
                let k = (i / 2) as usize % set.len();
                &mut set[k].1
            };
            p.reset();
            match black_box(l.process(dir, now, p)) {
                Verdict::Forward { .. } => tally.forwarded += 1,
                Verdict::Reply { .. } => tally.replies += 1,
                _ => tally.other += 1,
            }
        }
    };

    run(WARM_UP, &mut Tally::default());
    let mut tally = Tally::default();
    let before = Counts::now();
    run(PACKETS, &mut tally);
    let counts = Counts::now().since(before);

    println!(
        "{what}: {PACKETS} packets through Egress/Ingress::process after {WARM_UP} of warm-up: \
         {} forwarded, {} ICMP replies, {} other verdicts",
        tally.forwarded, tally.replies, tally.other
    );
    counts.report(PACKETS, what);
    let gw = &l.gateway;
    let wire = gw.egress.packets.get() + gw.ingress.packets.get();
    println!("{what}: wire packets counted by the gateway: {wire}");
    if tally.other != 0 || tally.replies == 0 {
        return Err("unexpected verdicts (every packet should be forwarded or answered)".into());
    }
    Ok(counts.is_zero())
}

/// ESP round trips per cipher and size.
const ESP_ROUNDS: u64 = 11_112;
const ESP_WARM_UP: u64 = 100;

/// Part 2: ESP seal + open. Ok(true) when nothing was allocated.
fn esp_seal_open() -> Result<bool, String> {
    // Everything that allocates is built first: SAs, buffers, the originals to compare with.
    let mut cases: Vec<_> = CIPHERS
        .iter()
        .flat_map(|&c| SIZES.iter().map(move |&len| (c, len)))
        .map(|(cipher, len)| {
            let buf = esp::inner_buffer(len);
            let original = buf[HEADROOM..HEADROOM + len].to_vec();
            (
                cipher,
                len,
                esp::outbound(cipher),
                esp::inbound(cipher),
                buf,
                original,
            )
        })
        .collect();
    let mut failure: Option<(usize, u64)> = None;
    let mut run = |rounds: u64, failure: &mut Option<(usize, u64)>| {
        for (k, (_, len, tx, rx, buf, original)) in cases.iter_mut().enumerate() {
            let len = *len;
            for _ in 0..rounds {
                let ok = match tx.seal(buf, HEADROOM, len, 4) {
                    Ok(r) => {
                        let at = r.start;
                        match rx.open(&mut buf[r]) {
                            Ok(o) => {
                                Some(o.seq) == tx.next_seq().map(|n| n - 1)
                                    && o.inner.len() == len
                                    && buf[at + o.inner.start..at + o.inner.end] == original[..]
                            }
                            Err(_) => false,
                        }
                    }
                    Err(_) => false,
                };
                if !ok && failure.is_none() {
                    *failure = Some((k, tx.packets()));
                }
            }
        }
    };
    run(ESP_WARM_UP, &mut failure);
    let before = Counts::now();
    run(ESP_ROUNDS, &mut failure);
    let counts = Counts::now().since(before);

    let total = ESP_ROUNDS * cases.len() as u64;
    println!(
        "esp: {total} round trips (OutboundSa::seal then InboundSa::open, in place) after \
         {ESP_WARM_UP} per case of warm-up: 3 ciphers x 64/512/1400-byte inner packets, \
         {ESP_ROUNDS} each, every one checked"
    );
    counts.report(total, "esp");
    if let Some((k, n)) = failure {
        let (cipher, len, ..) = &cases[k];
        return Err(format!(
            "ESP round trip failed: {cipher}, {len} bytes, packet {n}"
        ));
    }
    Ok(counts.is_zero())
}

/// Super-packets sent through the tunnel path in part 3.
const TUNNEL_SUPERS: u64 = 2_000;

/// Part 3: the tunnel path's software offloads with ESP in between, as the two workers run them:
/// a 64 KB TCP super-packet split into segments (`segment_tcp`), each sealed in place
/// (`OutboundSa::seal`) and opened again (`InboundSa::open`), the opened segments merged back
/// (`TcpCoalescer::offer`) into one super-packet (`flush`). Ok(true) when nothing was allocated.
fn tunnel_offloads() -> Result<bool, String> {
    use causeway_wire::gro::{Offer, TcpCoalescer, MAX_LEN};
    use causeway_wire::gso::segment_tcp;
    use causeway_wire::ip::IpSummary;

    let cipher = causeway_esp::Cipher::Aes256Gcm16;
    let mut tx = esp::outbound(cipher);
    let mut rx = esp::inbound(cipher);
    let sup = tcp_super_v4(Dir::Egress);
    let s = IpSummary::parse(&sup.bytes, false).map_err(|e| format!("{e:?}"))?;
    let mut frag = vec![0u8; 65_536];
    let mut seal = vec![0u8; HEADROOM + 65_536 + causeway_esp::TAILROOM];
    let mut gro = TcpCoalescer::new(MAX_LEN);
    let mut bad = 0u64;
    let mut merged = 0u64;
    let mut run = |n: u64, bad: &mut u64, merged: &mut u64| {
        for _ in 0..n {
            let made = segment_tcp(&sup.bytes, &s, &sup.virtio, &mut frag, |segment| {
                let len = segment.len();
                seal[HEADROOM..HEADROOM + len].copy_from_slice(segment);
                let Ok(r) = tx.seal(&mut seal, HEADROOM, len, 4) else {
                    *bad += 1;
                    return;
                };
                let Ok(o) = rx.open(&mut seal[r.clone()]) else {
                    *bad += 1;
                    return;
                };
                let inner = &seal[r.start + o.inner.start..r.start + o.inner.end];
                match gro.offer(inner) {
                    Offer::Appended | Offer::AppendedLast => {}
                    Offer::NotMergeable | Offer::Alone => *bad += 1,
                }
            });
            if made != Ok(TCP_SEGMENTS) {
                *bad += 1;
            }
            match gro.flush() {
                Some(out) if out.len() == 10 + sup.bytes.len() => *merged += 1,
                _ => *bad += 1,
            }
        }
    };
    run(10, &mut bad, &mut merged);
    let before = Counts::now();
    run(TUNNEL_SUPERS, &mut bad, &mut merged);
    let counts = Counts::now().since(before);
    let segments = TUNNEL_SUPERS * TCP_SEGMENTS as u64;
    println!(
        "tunnel offloads: {TUNNEL_SUPERS} TCP super-packets of {TCP_SEGMENTS} segments: split, \
         sealed ({cipher}), opened and merged back, {merged} whole"
    );
    counts.report(segments, "tunnel offloads");
    if bad != 0 {
        return Err(format!(
            "{bad} steps failed (every segment must seal, open and merge)"
        ));
    }
    Ok(counts.is_zero())
}

fn main() -> ExitCode {
    // The counters themselves must see allocations, or a zero below would prove nothing.
    let before = Counts::now();
    black_box(Vec::<u8>::with_capacity(64));
    let probe = Counts::now().since(before);
    if probe.rust == 0 {
        eprintln!("alloc: the counting allocator is not installed");
        return ExitCode::FAILURE;
    }
    if C_COUNTED {
        // Rust's allocation above went through `malloc`; building an AEAD key allocates inside
        // aws-lc (its EVP_AEAD_CTX), through C code.
        let before = Counts::now();
        black_box(esp::RawAead::new(causeway_esp::Cipher::Aes256Gcm16));
        let aws_lc = Counts::now().since(before);
        if probe.c == 0 || aws_lc.c <= aws_lc.rust {
            eprintln!(
                "alloc: C allocations are not counted (malloc interposition not effective: \
                 {} for a Vec, {} C and {} Rust for an aws-lc key)",
                probe.c, aws_lc.c, aws_lc.rust
            );
            return ExitCode::FAILURE;
        }
        println!(
            "counters work: a 64-byte Vec: {} Rust, {} C allocation(s); an aws-lc AES-256-GCM \
             key: {} Rust, {} C allocation(s)",
            probe.rust, probe.c, aws_lc.rust, aws_lc.c
        );
    }

    let mut failed = false;
    for (name, part) in [
        ("pipeline", pipeline as fn() -> Result<bool, String>),
        ("pipeline with the flow table", pipeline_with_flows),
        ("flow churn", flow_churn),
        ("esp", esp_seal_open),
        ("tunnel offloads", tunnel_offloads),
    ] {
        match part() {
            Ok(true) => {}
            Ok(false) => {
                eprintln!("alloc: FAILED: the {name} hot path allocated");
                failed = true;
            }
            Err(e) => {
                eprintln!("alloc: FAILED: {name}: {e}");
                failed = true;
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
