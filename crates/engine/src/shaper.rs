//! SKU shapers: token buckets for bits/s and packets/s, sans-IO (the caller passes `now`).
//!
//! A gateway is held to its SKU in each direction by one [`Shaper`]: a packet is admitted only
//! when both buckets hold enough tokens for it, and then takes from both; otherwise it is dropped
//! (the caller counts it as `shaped_bps` or `shaped_pps`) and takes nothing. A TUN super-packet
//! is charged as the wire packets it carries, in bits and in packets.
//!
//! Token arithmetic is exact integer arithmetic in "unit-nanoseconds" (units × 10⁹), so no rate
//! drifts through rounding, and elapsed time is capped at the time that fills the bucket, so
//! nothing overflows whatever the clock does (a clock that goes backwards adds nothing).

/// Nanoseconds per second.
pub const NANOS: u64 = 1_000_000_000;

/// A token bucket of `rate` units per second holding at most `burst` units. Tokens may be
/// borrowed ahead (the balance goes negative) by [`take`](Self::take) after
/// [`wait_for`](Self::wait_for): that is how the shaper schedules a packet for later instead of
/// dropping it.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: u64,
    burst: u64,
    /// Tokens × 10⁹; negative while borrowed ahead.
    tokens: i128,
    last_ns: u64,
}

impl TokenBucket {
    /// A full bucket. `rate` and `burst` must be positive (a zero is raised to 1).
    pub fn new(rate: u64, burst: u64, now_ns: u64) -> TokenBucket {
        let rate = rate.max(1);
        let burst = burst.max(1);
        TokenBucket {
            rate,
            burst,
            tokens: i128::from(burst) * i128::from(NANOS),
            last_ns: now_ns,
        }
    }

    pub fn rate(&self) -> u64 {
        self.rate
    }

    pub fn burst(&self) -> u64 {
        self.burst
    }

    fn refill(&mut self, now_ns: u64) {
        if now_ns > self.last_ns {
            let cap = i128::from(self.burst) * i128::from(NANOS);
            let elapsed = i128::from(now_ns - self.last_ns);
            // Elapsed time is capped at what refills an empty bucket from its deepest debt, so
            // the product cannot overflow.
            let elapsed = elapsed.min(i128::from(u64::MAX / 4));
            self.tokens = (self.tokens + elapsed * i128::from(self.rate)).min(cap);
            self.last_ns = now_ns;
        }
    }

    /// Nanoseconds from `now` until the bucket holds `units` (0: now). Refills; takes nothing.
    pub fn wait_for(&mut self, now_ns: u64, units: u64) -> u64 {
        self.refill(now_ns);
        let need = i128::from(units) * i128::from(NANOS);
        if self.tokens >= need {
            0
        } else {
            let deficit = need - self.tokens;
            let rate = i128::from(self.rate);
            u64::try_from((deficit + rate - 1) / rate).unwrap_or(u64::MAX)
        }
    }

    /// Would `units` fit now? Refills first; takes nothing.
    pub fn check(&mut self, now_ns: u64, units: u64) -> bool {
        self.wait_for(now_ns, units) == 0
    }

    /// Takes `units`, borrowing ahead when the bucket holds fewer.
    pub fn take(&mut self, units: u64) {
        self.tokens -= i128::from(units) * i128::from(NANOS);
    }

    /// Checks and takes in one step, without borrowing.
    pub fn admit(&mut self, now_ns: u64, units: u64) -> bool {
        if self.check(now_ns, units) {
            self.take(units);
            true
        } else {
            false
        }
    }

    /// Whole tokens available at `now` (negative while borrowed ahead).
    pub fn available(&mut self, now_ns: u64) -> i64 {
        self.refill(now_ns);
        (self.tokens / i128::from(NANOS)) as i64
    }

    /// Changes rate and burst in place (a live resize); the balance is kept, capped to the new
    /// burst.
    pub fn set_rate(&mut self, now_ns: u64, rate: u64, burst: u64) {
        self.refill(now_ns);
        self.rate = rate.max(1);
        self.burst = burst.max(1);
        self.tokens = self.tokens.min(i128::from(self.burst) * i128::from(NANOS));
    }
}

/// How long a burst each bucket absorbs at full rate, its floor, and how long a packet may wait
/// for tokens before it is dropped instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BurstPolicy {
    /// Longest a packet may be held for tokens (the shaper's queue, in time). Beyond it the
    /// packet is dropped and counted. 0 makes the shaper a pure policer.
    pub max_delay_ns: u64,
    /// Burst as time at the full rate (nanoseconds).
    pub burst_ns: u64,
    /// Smallest bit burst: at least a few 64 KB super-packets, or the shaper could never pass one.
    pub min_bits: u64,
    /// Smallest packet burst.
    pub min_packets: u64,
}

impl Default for BurstPolicy {
    fn default() -> Self {
        BurstPolicy {
            max_delay_ns: 5_000_000, // 5 ms
            burst_ns: 2_000_000,     // 2 ms
            min_bits: 4 * 65_535 * 8 * 2,
            min_packets: 256,
        }
    }
}

impl BurstPolicy {
    fn bits(&self, bps: u64) -> u64 {
        ((u128::from(bps) * u128::from(self.burst_ns) / u128::from(NANOS)) as u64)
            .max(self.min_bits)
    }
    fn packets(&self, pps: u64) -> u64 {
        ((u128::from(pps) * u128::from(self.burst_ns) / u128::from(NANOS)) as u64)
            .max(self.min_packets)
    }
}

/// Why the shaper refused a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shaped {
    Bps,
    Pps,
}

/// One direction of one gateway: bits/s and (when the SKU publishes one) packets/s.
#[derive(Debug, Clone)]
pub struct Shaper {
    bits: TokenBucket,
    packets: Option<TokenBucket>,
    policy: BurstPolicy,
}

impl Shaper {
    pub fn new(
        bits_per_sec: u64,
        packets_per_sec: Option<u64>,
        policy: BurstPolicy,
        now_ns: u64,
    ) -> Shaper {
        Shaper {
            bits: TokenBucket::new(bits_per_sec, policy.bits(bits_per_sec), now_ns),
            packets: packets_per_sec.map(|p| TokenBucket::new(p, policy.packets(p), now_ns)),
            policy,
        }
    }

    /// Schedules `packets` wire packets of `bytes` bytes in all: returns the time at which they
    /// may leave (`now_ns` when tokens are there, later when they must wait, at most
    /// `max_delay_ns` later), or which limit refused them. A refused packet takes no tokens.
    pub fn schedule(&mut self, now_ns: u64, bytes: u64, packets: u64) -> Result<u64, Shaped> {
        self.schedule_within(now_ns, bytes, packets, self.policy.max_delay_ns)
    }

    /// As [`schedule`](Self::schedule) but never waits: a policer.
    pub fn admit(&mut self, now_ns: u64, bytes: u64, packets: u64) -> Result<(), Shaped> {
        self.schedule_within(now_ns, bytes, packets, 0).map(|_| ())
    }

    fn schedule_within(
        &mut self,
        now_ns: u64,
        bytes: u64,
        packets: u64,
        max_wait: u64,
    ) -> Result<u64, Shaped> {
        let at = self.check_within(now_ns, bytes, packets, max_wait)?;
        self.commit(bytes, packets);
        Ok(at)
    }

    /// When `packets` wire packets of `bytes` bytes could leave (as [`schedule`](Self::schedule)),
    /// without taking any token: for a caller that must ask several shapers before it commits
    /// to all of them with [`commit`](Self::commit).
    pub fn check(&mut self, now_ns: u64, bytes: u64, packets: u64) -> Result<u64, Shaped> {
        self.check_within(now_ns, bytes, packets, self.policy.max_delay_ns)
    }

    fn check_within(
        &mut self,
        now_ns: u64,
        bytes: u64,
        packets: u64,
        max_wait: u64,
    ) -> Result<u64, Shaped> {
        let wb = self.bits.wait_for(now_ns, bytes.saturating_mul(8));
        if wb > max_wait {
            return Err(Shaped::Bps);
        }
        let mut wait = wb;
        if let Some(p) = &mut self.packets {
            let wp = p.wait_for(now_ns, packets);
            if wp > max_wait {
                return Err(Shaped::Pps);
            }
            wait = wait.max(wp);
        }
        Ok(now_ns.saturating_add(wait))
    }

    /// Takes the tokens of a packet that [`check`](Self::check) admitted at the same `now`.
    pub fn commit(&mut self, bytes: u64, packets: u64) {
        self.bits.take(bytes.saturating_mul(8));
        if let Some(p) = &mut self.packets {
            p.take(packets);
        }
    }

    pub fn policy(&self) -> BurstPolicy {
        self.policy
    }

    pub fn bits_per_sec(&self) -> u64 {
        self.bits.rate()
    }

    pub fn packets_per_sec(&self) -> Option<u64> {
        self.packets.as_ref().map(|p| p.rate())
    }

    /// Changes the limits in place (a SKU resize under traffic).
    pub fn set_limits(&mut self, now_ns: u64, bits_per_sec: u64, packets_per_sec: Option<u64>) {
        self.bits
            .set_rate(now_ns, bits_per_sec, self.policy.bits(bits_per_sec));
        self.packets = match (self.packets.take(), packets_per_sec) {
            (Some(mut b), Some(p)) => {
                b.set_rate(now_ns, p, self.policy.packets(p));
                Some(b)
            }
            (None, Some(p)) => Some(TokenBucket::new(p, self.policy.packets(p), now_ns)),
            (_, None) => None,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn starts_full_and_refills_at_rate() {
        let mut b = TokenBucket::new(1000, 100, 0);
        assert!(b.admit(0, 100));
        assert!(!b.admit(0, 1));
        // 10 ms at 1000/s = 10 units.
        assert!(!b.admit(9_999_999, 10));
        assert!(b.admit(10_000_000, 10));
        // Never more than the burst, however long idle.
        assert_eq!(b.available(u64::MAX / 2), 100);
    }

    #[test]
    fn clock_going_backwards_adds_nothing() {
        let mut b = TokenBucket::new(1000, 10, 1_000_000_000);
        assert!(b.admit(1_000_000_000, 10));
        assert!(!b.admit(0, 1));
        assert!(!b.admit(1_000_000_000, 1));
    }

    #[test]
    fn refused_packet_takes_no_tokens() {
        let policy = BurstPolicy {
            max_delay_ns: 0,
            burst_ns: 1_000_000,
            min_bits: 8000,
            min_packets: 2,
        };
        let mut s = Shaper::new(8_000_000, Some(2000), policy, 0);
        // Bits burst 8000 (1000 bytes), packets burst 2.
        assert_eq!(s.admit(0, 2000, 1), Err(Shaped::Bps));
        assert_eq!(s.admit(0, 400, 1), Ok(()));
        assert_eq!(s.admit(0, 400, 1), Ok(()));
        assert_eq!(s.admit(0, 100, 1), Err(Shaped::Pps));
        // The pps refusal did not take bits: 200 bytes left.
        s.set_limits(0, 8_000_000, None);
        assert_eq!(s.admit(0, 200, 1), Ok(()));
        assert_eq!(s.admit(0, 1, 1), Err(Shaped::Bps));
    }

    #[test]
    fn resize_changes_rate_in_place() {
        let policy = BurstPolicy {
            max_delay_ns: 0,
            burst_ns: 1_000_000,
            min_bits: 1,
            min_packets: 1,
        };
        let mut s = Shaper::new(1_000_000_000, Some(100_000), policy, 0);
        s.set_limits(0, 2_000_000_000, Some(250_000));
        assert_eq!(s.bits_per_sec(), 2_000_000_000);
        assert_eq!(s.packets_per_sec(), Some(250_000));
    }

    #[test]
    fn schedules_within_the_delay_then_drops() {
        // 8 Mbit/s = 1 byte/us; burst floor 1000 bytes; up to 1 ms of waiting.
        let policy = BurstPolicy {
            max_delay_ns: 1_000_000,
            burst_ns: 0,
            min_bits: 8000,
            min_packets: 1,
        };
        let mut s = Shaper::new(8_000_000, None, policy, 0);
        assert_eq!(s.schedule(0, 1000, 1), Ok(0));
        // The next 1000 bytes leave after 1000 us.
        assert_eq!(s.schedule(0, 1000, 1), Ok(1_000_000));
        // A third would wait 2 ms: over the limit, dropped, nothing taken.
        assert_eq!(s.schedule(0, 1000, 1), Err(Shaped::Bps));
        assert_eq!(s.schedule(500_000, 500, 1), Ok(1_500_000));
    }

    /// The reference model: a bucket with real-valued tokens, f64 arithmetic.
    struct Model {
        rate: f64,
        burst: f64,
        tokens: f64,
        last: f64,
    }

    impl Model {
        fn admit(&mut self, now_ns: u64, units: u64) -> bool {
            let now = now_ns as f64;
            if now > self.last {
                self.tokens = (self.tokens + (now - self.last) * self.rate / 1e9).min(self.burst);
                self.last = now;
            }
            if self.tokens >= units as f64 {
                self.tokens -= units as f64;
                true
            } else {
                false
            }
        }
    }

    proptest! {
        /// Never admits more than burst + rate × elapsed, over the whole run.
        #[test]
        fn never_exceeds_rate_plus_burst(
            rate in 1u64..10_000_000_000,
            burst in 1u64..10_000_000,
            steps in proptest::collection::vec((0u64..5_000_000, 1u64..200_000), 1..300),
        ) {
            let mut b = TokenBucket::new(rate, burst, 0);
            let mut now = 0u64;
            let mut admitted: u128 = 0;
            for (dt, units) in steps {
                now += dt;
                if b.admit(now, units) {
                    admitted += u128::from(units);
                }
                let bound = u128::from(burst) + u128::from(rate) * u128::from(now) / u128::from(NANOS);
                prop_assert!(admitted <= bound, "admitted {} > bound {}", admitted, bound);
            }
        }

        /// Traffic within the rate (each packet after its own transmission time) is never refused.
        #[test]
        fn conforming_traffic_always_passes(
            rate in 1_000u64..10_000_000_000,
            sizes in proptest::collection::vec(1u64..100_000, 1..300),
        ) {
            let burst = 100_000u64;
            let mut b = TokenBucket::new(rate, burst, 0);
            let mut now = 0u64;
            for units in sizes {
                prop_assert!(b.admit(now, units));
                // Wait exactly long enough to earn the units back (rounded up).
                now += (u128::from(units) * u128::from(NANOS)).div_ceil(u128::from(rate)) as u64;
            }
        }

        /// Scheduled traffic: release times never go backwards, never wait longer than the policy
        /// allows, and what has left by any release time fits burst + rate × time.
        #[test]
        fn scheduled_traffic_conforms(
            rate_mbit in 1u64..40_000,
            max_delay in 0u64..10_000_000,
            steps in proptest::collection::vec((0u64..200_000, 64u64..65_000), 1..400),
        ) {
            let bps = rate_mbit * 1_000_000;
            let policy = BurstPolicy { max_delay_ns: max_delay, burst_ns: 1_000_000, min_bits: 8 * 65_535, min_packets: 1 };
            let mut s = Shaper::new(bps, None, policy, 0);
            let burst_bits = u128::from(policy.bits(bps));
            let mut now = 0u64;
            let mut last_release = 0u64;
            let mut sent_bits: u128 = 0;
            for (dt, bytes) in steps {
                now += dt;
                if let Ok(at) = s.schedule(now, bytes, 1) {
                    prop_assert!(at >= now && at - now <= max_delay);
                    prop_assert!(at >= last_release);
                    last_release = at;
                    sent_bits += u128::from(bytes) * 8;
                    let bound = burst_bits + u128::from(bps) * u128::from(at) / u128::from(NANOS) + 1;
                    prop_assert!(sent_bits <= bound, "{} > {}", sent_bits, bound);
                }
            }
        }

        /// Same decisions as the real-valued model, except where the two are within a rounding
        /// hair of the boundary.
        #[test]
        fn agrees_with_the_model(
            rate in 1_000u64..2_000_000_000,
            burst in 1_000u64..1_000_000,
            steps in proptest::collection::vec((0u64..2_000_000, 1u64..50_000), 1..200),
        ) {
            let mut b = TokenBucket::new(rate, burst, 0);
            let mut m = Model { rate: rate as f64, burst: burst as f64, tokens: burst as f64, last: 0.0 };
            let mut now = 0;
            for (dt, units) in steps {
                now += dt;
                let tokens_before = m.tokens + ((now as f64 - m.last).max(0.0) * m.rate / 1e9);
                let near_boundary = (tokens_before.min(m.burst) - units as f64).abs() < 1e-3 * units as f64 + 1.0;
                let real = b.admit(now, units);
                let model = m.admit(now, units);
                if near_boundary {
                    // Resynchronise the model on the real decision.
                    if real != model {
                        m.tokens = b.available(now) as f64;
                    }
                } else {
                    prop_assert_eq!(real, model);
                }
            }
        }
    }
}
