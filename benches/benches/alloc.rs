//! Allocations per packet on the ExpressRoute hot path: must be zero.
//!
//! Run: `cargo bench -p causeway-benches --bench alloc`
//!
//! A counting global allocator wraps the system one. After a warm-up, 100 000 packets go through
//! the gateway (50 000 egress, 50 000 ingress; 64/512/1400-byte UDP and 64 KB TCP super-packets,
//! with one packet in 1000 expiring so that the ICMP time-exceeded reply path runs too) while
//! allocations are counted. Prints `allocations per packet: N` and exits with status 1 when N is
//! not zero. (The pipeline resets the TTL of each reused buffer, see `causeway_benches::Packet`.)

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};

use causeway_benches::{lab, packets, udp_v4_ttl, Dir, NOW_STEP_NS};
use causeway_engine::pipeline::Verdict;

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

const PACKETS: u64 = 100_000;
const WARM_UP: u64 = 1_000;

#[derive(Default)]
struct Tally {
    forwarded: u64,
    replies: u64,
    other: u64,
}

fn main() -> ExitCode {
    let mut l = lab();
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

    // The counter itself must see allocations, or a zero below would prove nothing.
    let probe = ALLOCS.load(Ordering::SeqCst);
    black_box(Vec::<u8>::with_capacity(64));
    if ALLOCS.load(Ordering::SeqCst) == probe {
        eprintln!("alloc: the counting allocator is not installed");
        return ExitCode::FAILURE;
    }

    run(WARM_UP, &mut Tally::default());
    let mut tally = Tally::default();
    let allocs_before = ALLOCS.load(Ordering::SeqCst);
    let bytes_before = BYTES.load(Ordering::SeqCst);
    run(PACKETS, &mut tally);
    let allocs = ALLOCS.load(Ordering::SeqCst) - allocs_before;
    let bytes = BYTES.load(Ordering::SeqCst) - bytes_before;

    println!(
        "alloc: {PACKETS} packets through Egress/Ingress::process after {WARM_UP} of warm-up: \
         {} forwarded, {} ICMP replies, {} other verdicts",
        tally.forwarded, tally.replies, tally.other
    );
    println!("allocations: {allocs} ({bytes} bytes)");
    println!(
        "allocations per packet: {:.3}",
        allocs as f64 / PACKETS as f64
    );
    let gw = &l.gateway;
    let wire = gw.egress.packets.get() + gw.ingress.packets.get();
    println!("wire packets counted by the gateway: {wire}");
    if tally.other != 0 || tally.replies == 0 {
        eprintln!("alloc: unexpected verdicts (every packet should be forwarded or answered)");
        return ExitCode::FAILURE;
    }
    if allocs != 0 {
        eprintln!("alloc: FAILED: the hot path allocated {allocs} times");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
