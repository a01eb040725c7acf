//! The two halves of a gateway on two threads, as the daemon runs them: does one slow the other?
//!
//! Run: `cargo bench -p causeway-benches --bench threads`
//!
//! `Egress` and `Ingress` share counters (`Arc<PathCounters>`) and the VNet description
//! (`Arc<Vnet>`). This measures ns per 64-byte packet of each half alone on one thread, then of
//! both at once on two threads (the daemon's `er-egress` and `er-ingress` workers). On an idle
//! machine with two free cores, the concurrent figure should equal the solo one; a higher figure
//! is the cost of cache lines written by both threads. Needs at least two cores to mean anything.
//!
//! Then again with the gateway's flow table (`lab_flows`): both halves lock the one table of the
//! gateway for every packet, and the packets of both are the same flow (one entry written by
//! both threads), the worst case of the shared table.

use std::hint::black_box;
use std::sync::Barrier;
use std::time::Instant;

use causeway_benches::{forwarded_now, lab, lab_flows, udp_v4, Dir, Lab, NOW_STEP_NS};

const PACKETS: u64 = 5_000_000;
const ROUNDS: usize = 3;

/// ns per packet of `dir` on `half` (the other half of the same gateway may run elsewhere).
fn run(half: &mut Lab, dir: Dir) -> f64 {
    let mut p = udp_v4(dir, 64);
    let mut now = 0u64;
    let start = Instant::now();
    for _ in 0..PACKETS {
        now += NOW_STEP_NS;
        p.reset();
        let v = half.process(dir, now, &mut p);
        assert!(forwarded_now(&v, now, 64), "unexpected verdict {v:?}");
        black_box(v);
    }
    start.elapsed().as_nanos() as f64 / PACKETS as f64
}

fn main() {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("threads: {cores} core(s) available; {PACKETS} 64-byte packets per half per round, best of {ROUNDS}");
    for (what, make) in [
        ("no flow table", lab as fn() -> Lab),
        (
            "one flow table shared by both halves (one flow, both ways)",
            lab_flows,
        ),
    ] {
        println!("{what}:");
        measure(make);
    }
}

fn measure(make: fn() -> Lab) {
    let mut solo = [f64::MAX; 2];
    let mut both = [f64::MAX; 2];
    for _ in 0..ROUNDS {
        // Each half alone (the other exists, shares its Arcs, but is idle).
        let mut l = make();
        solo[0] = solo[0].min(run(&mut l, Dir::Egress));
        solo[1] = solo[1].min(run(&mut l, Dir::Ingress));

        // Both at once, one thread each, as in the daemon.
        let l = make();
        let Lab { eg, ing, reply, .. } = l;
        let barrier = Barrier::new(2);
        let (e, i) = std::thread::scope(|s| {
            let b = &barrier;
            let reply_i = reply.clone();
            let te = s.spawn(move || {
                let mut half = Lab {
                    eg,
                    ing: lab().ing,
                    reply,
                    gateway: Default::default(),
                    flows: None,
                };
                b.wait();
                run(&mut half, Dir::Egress)
            });
            let ti = s.spawn(move || {
                let mut half = Lab {
                    eg: lab().eg,
                    ing,
                    reply: reply_i,
                    gateway: Default::default(),
                    flows: None,
                };
                b.wait();
                run(&mut half, Dir::Ingress)
            });
            (te.join().unwrap(), ti.join().unwrap())
        });
        both[0] = both[0].min(e);
        both[1] = both[1].min(i);
    }
    println!(
        "egress  alone: {:6.1} ns/packet   both halves at once: {:6.1} ns/packet ({:+.0}%)",
        solo[0],
        both[0],
        100.0 * (both[0] / solo[0] - 1.0)
    );
    println!(
        "ingress alone: {:6.1} ns/packet   both halves at once: {:6.1} ns/packet ({:+.0}%)",
        solo[1],
        both[1],
        100.0 * (both[1] / solo[1] - 1.0)
    );
}
