//! Per-stage packet-processing latency: lock-free histograms of durations in nanoseconds,
//! written by the data-plane worker threads and read by the control thread (`causeway stats -o
//! json` `stages`, and `causeway_stage_duration_seconds` on `/metrics`).
//!
//! The engine reads no clock: the workers measure a stage themselves (two `Instant::now()`
//! around it) and [`Histogram::record`] the difference. They time only the packets a
//! [`Sampler`] picks (1 in [`DEFAULT_SAMPLE_EVERY`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The upper bounds of the finite buckets, in nanoseconds; one more bucket, `+Inf`, follows.
///
/// From a light pipeline verdict (~50-100 ns) through a TUN write and the sealing of a 64 KB
/// super-packet (~30 µs) to a packet the shaper holds (up to ~5 ms), in a 1-2.5-5 series so that
/// the bounds read well in seconds (`le="0.00000025"`...). A value equal to a bound counts in that
/// bucket (`le` is "less than or equal").
pub const BOUNDS_NS: [u64; 16] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000, 10_000_000,
];

/// Buckets per histogram: the finite ones and `+Inf`.
pub const BUCKETS: usize = BOUNDS_NS.len() + 1;

/// A histogram of durations in nanoseconds with the fixed buckets of [`BOUNDS_NS`].
///
/// Lock-free: [`record`](Histogram::record) is two relaxed atomic adds (the bucket and the sum)
/// and a binary search over 16 bounds; no allocation. Any thread may record and any thread may
/// [`snapshot`](Histogram::snapshot) at the same time.
///
/// The count is not a counter of its own but the sum of the bucket counts, read in the same
/// snapshot: so `count` always equals the `+Inf` bucket, as Prometheus requires, even while
/// workers record (`sum_ns` may then lag or lead the buckets by the records in flight).
///
/// Aligned to a cache line so that two histograms never share one.
#[derive(Debug)]
#[repr(align(64))]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS],
    sum_ns: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_ns: AtomicU64::new(0),
        }
    }
}

impl Histogram {
    /// Counts one duration of `ns` nanoseconds.
    #[inline]
    pub fn record(&self, ns: u64) {
        // The first bucket whose bound is >= ns; BOUNDS_NS.len() (+Inf) when none is.
        let i = BOUNDS_NS.partition_point(|&b| b < ns);
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        // Wraps after 584 years of summed time.
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    /// Counts one duration (saturated to u64 nanoseconds).
    #[inline]
    pub fn record_duration(&self, d: Duration) {
        self.record(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    }

    /// The counts now.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let counts: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        HistogramSnapshot {
            bounds_ns: BOUNDS_NS.to_vec(),
            count: counts.iter().fold(0u64, |a, &c| a.wrapping_add(c)),
            counts,
            sum_ns: self.sum_ns.load(Ordering::Relaxed),
        }
    }
}

/// A histogram's counts at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistogramSnapshot {
    /// The finite buckets' upper bounds in nanoseconds, ascending ([`BOUNDS_NS`]).
    pub bounds_ns: Vec<u64>,
    /// Per bucket, not cumulative: `bounds_ns.len() + 1` entries, the last the `+Inf` bucket
    /// (durations over the last bound).
    pub counts: Vec<u64>,
    /// The sum of the recorded durations, in nanoseconds.
    pub sum_ns: u64,
    /// The number of recorded durations: the sum of `counts`.
    pub count: u64,
}

/// A stage of packet processing that the workers time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    /// The pipeline verdict for a packet (or super-packet) read from the VNet TUN.
    EgressPipeline,
    /// The pipeline verdict for a packet from a circuit's TUN or (opened) from a tunnel.
    IngressPipeline,
    /// Writing a packet or super-packet to a TUN (the VNet's or a circuit's).
    TunWrite,
    /// Segmenting, sealing and sending one packet into a tunnel; for a super-packet, all its
    /// segments.
    TunnelSeal,
    /// Opening (authenticating and decrypting) one ESP datagram.
    TunnelOpen,
    /// How long the shaper held a packet: from its verdict to its release.
    ShaperHold,
}

impl Stage {
    /// Every stage, in output order.
    pub const ALL: [Stage; 6] = [
        Stage::EgressPipeline,
        Stage::IngressPipeline,
        Stage::TunWrite,
        Stage::TunnelSeal,
        Stage::TunnelOpen,
        Stage::ShaperHold,
    ];
    pub const COUNT: usize = Self::ALL.len();

    /// The name in stats output (the `stage` label on `/metrics`).
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::EgressPipeline => "egress_pipeline",
            Stage::IngressPipeline => "ingress_pipeline",
            Stage::TunWrite => "tun_write",
            Stage::TunnelSeal => "tunnel_seal",
            Stage::TunnelOpen => "tunnel_open",
            Stage::ShaperHold => "shaper_hold",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// One [`Histogram`] per [`Stage`]; shared by the workers and the control thread as
/// `Arc<StageHistograms>`.
#[derive(Debug)]
pub struct StageHistograms {
    stages: [Histogram; Stage::COUNT],
}

impl Default for StageHistograms {
    fn default() -> Self {
        StageHistograms {
            stages: std::array::from_fn(|_| Histogram::default()),
        }
    }
}

impl StageHistograms {
    /// The histogram of `stage`.
    #[inline]
    pub fn get(&self, stage: Stage) -> &Histogram {
        &self.stages[stage.index()]
    }

    /// Counts one duration of `ns` nanoseconds for `stage`.
    #[inline]
    pub fn record(&self, stage: Stage, ns: u64) {
        self.get(stage).record(ns);
    }

    /// Every stage's counts now, in [`Stage::ALL`] order (zeros included).
    pub fn snapshot(&self) -> Vec<(Stage, HistogramSnapshot)> {
        Stage::ALL
            .iter()
            .map(|&s| (s, self.get(s).snapshot()))
            .collect()
    }
}

/// How many packets per timed packet by default.
pub const DEFAULT_SAMPLE_EVERY: u32 = 64;

/// Picks the packets a worker times: 1 of every N (a power of two), by a counter (no RNG).
///
/// Why sample: timing a stage reads the clock twice (`Instant::now()`, a vDSO call of ~20 ns
/// each), ~40 ns against a pipeline verdict of ~70 ns: timing every packet would cost more than
/// half the work it measures. 1 in 64 costs under 1 ns per packet on average and still gives
/// thousands of samples per second at any interesting rate. The distribution is unbiased as long
/// as the packets' cost does not follow the sampling period.
///
/// Owned by one worker (not shared, not atomic). The first packet is sampled, then every Nth.
#[derive(Debug, Clone)]
pub struct Sampler {
    seen: u32,
    mask: u32,
}

impl Default for Sampler {
    fn default() -> Self {
        Sampler::new(DEFAULT_SAMPLE_EVERY)
    }
}

impl Sampler {
    /// Samples 1 of every `every` packets; `every` is rounded up to a power of two (0 and 1:
    /// every packet).
    pub fn new(every: u32) -> Sampler {
        let every = every.max(1).checked_next_power_of_two().unwrap_or(1 << 31);
        Sampler {
            seen: 0,
            mask: every - 1,
        }
    }

    /// N: one packet of this many is sampled.
    pub fn every(&self) -> u32 {
        self.mask + 1
    }

    /// Whether to time this packet; call once per packet.
    #[inline]
    pub fn should_sample(&mut self) -> bool {
        let hit = self.seen & self.mask == 0;
        self.seen = self.seen.wrapping_add(1);
        hit
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn bucket_of(ns: u64) -> usize {
        let h = Histogram::default();
        h.record(ns);
        let s = h.snapshot();
        assert_eq!(s.count, 1);
        s.counts.iter().position(|&c| c == 1).unwrap()
    }

    #[test]
    fn bounds_ascend() {
        assert!(BOUNDS_NS.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn a_value_equal_to_a_bound_lands_in_that_bucket() {
        assert_eq!(bucket_of(0), 0);
        for (i, &b) in BOUNDS_NS.iter().enumerate() {
            assert_eq!(bucket_of(b), i, "{b}");
            assert_eq!(bucket_of(b + 1), i + 1, "{b} + 1");
            if i > 0 {
                assert_eq!(bucket_of(BOUNDS_NS[i - 1] + 1), i);
            }
        }
        assert_eq!(bucket_of(u64::MAX), BOUNDS_NS.len());
    }

    #[test]
    fn sum_and_count() {
        let h = Histogram::default();
        for ns in [50, 100, 101, 30_000, 5_000_000, 20_000_000] {
            h.record(ns);
        }
        h.record_duration(Duration::from_micros(3));
        let s = h.snapshot();
        assert_eq!(s.count, 7);
        assert_eq!(
            s.sum_ns,
            50 + 100 + 101 + 30_000 + 5_000_000 + 20_000_000 + 3_000
        );
        assert_eq!(s.bounds_ns, BOUNDS_NS.to_vec());
        assert_eq!(s.counts.len(), BOUNDS_NS.len() + 1);
        let mut want = vec![0; BUCKETS];
        want[0] = 2; // 50, 100
        want[1] = 1; // 101
        want[5] = 1; // 3000
        want[8] = 1; // 30000
        want[14] = 1; // 5 ms
        want[16] = 1; // 20 ms: +Inf
        assert_eq!(s.counts, want);
    }

    #[test]
    fn concurrent_recording_gives_exact_totals() {
        let h = Arc::new(StageHistograms::default());
        let n = 100_000u64;
        let threads: Vec<_> = (0..2u64)
            .map(|t| {
                let h = h.clone();
                std::thread::spawn(move || {
                    for i in 0..n {
                        h.record(Stage::TunnelSeal, (i % 7) * 1_000 + t);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let per_thread: u64 = (0..n).map(|i| (i % 7) * 1_000).sum();
        let snap = h.snapshot();
        assert_eq!(snap.len(), Stage::COUNT);
        for (stage, s) in snap {
            if stage == Stage::TunnelSeal {
                assert_eq!(s.count, 2 * n);
                assert_eq!(s.counts.iter().sum::<u64>(), 2 * n);
                assert_eq!(s.sum_ns, 2 * per_thread + n);
            } else {
                assert_eq!((s.count, s.sum_ns), (0, 0), "{stage:?}");
            }
        }
    }

    #[test]
    fn every_stage_has_a_distinct_name_and_slot() {
        let mut names: Vec<_> = Stage::ALL.iter().map(|s| s.as_str()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), Stage::COUNT);
        for (i, s) in Stage::ALL.iter().enumerate() {
            assert_eq!(s.index(), i);
        }
    }

    #[test]
    fn sampler_rate() {
        let mut s = Sampler::default();
        assert_eq!(s.every(), 64);
        assert!(s.should_sample(), "the first packet is sampled");
        let hits = (1..64 * 1000).filter(|_| s.should_sample()).count();
        assert_eq!(hits, 999);
        let mut s = Sampler::new(100);
        assert_eq!(s.every(), 128);
        assert_eq!((0..128 * 10).filter(|_| s.should_sample()).count(), 10);
        let mut s = Sampler::new(0);
        assert_eq!(s.every(), 1);
        assert!((0..10).all(|_| s.should_sample()));
        assert_eq!(Sampler::new(u32::MAX).every(), 1 << 31);
        // The counter wraps without a gap in the period.
        let mut s = Sampler {
            seen: u32::MAX - 63,
            mask: 63,
        };
        assert!(s.should_sample());
        assert_eq!((0..64).filter(|_| s.should_sample()).count(), 1);
    }
}
