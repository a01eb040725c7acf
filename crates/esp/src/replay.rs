//! The anti-replay window of RFC 4303 section 3.4.3, with the extended-sequence-number
//! reconstruction of Appendix A2.2.
//!
//! The window covers the `size` sequence numbers ending at the highest one authenticated so
//! far (`top`). Its bitmap is a ring of 64-bit words (the layout of RFC 6479): bit
//! `seq % 64` of word `(seq / 64) % words`, with one word more than `size / 64` so that
//! sliding the window only clears whole words and never shifts bits.
//!
//! The contract with the caller (RFC 4303 section 3.4.3): [`ReplayWindow::check`] before the
//! integrity check (a cheap reject), [`ReplayWindow::commit`] only after the ICV verified.

use core::fmt;

/// Why a sequence number is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Replay {
    /// Inside the window and already received.
    Replayed,
    /// Left of the window (or zero, which no sender ever uses): cannot be checked, so dropped.
    TooOld,
}

/// A window size that is not a multiple of 64 within `MIN_SIZE..=MAX_SIZE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowSizeError(pub u32);

impl fmt::Display for WindowSizeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "replay window of {} packets: must be a multiple of 64 between {} and {}",
            self.0,
            ReplayWindow::MIN_SIZE,
            ReplayWindow::MAX_SIZE
        )
    }
}

impl std::error::Error for WindowSizeError {}

/// Anti-replay state of one inbound SA.
#[derive(Clone)]
pub struct ReplayWindow {
    /// Ring of `size / 64 + 1` words.
    words: Box<[u64]>,
    size: u64,
    /// Highest sequence number committed; 0 before the first packet.
    top: u64,
}

impl ReplayWindow {
    pub const DEFAULT_SIZE: u32 = 1024;
    pub const MIN_SIZE: u32 = 1024;
    /// 2^20 packets: 16 Ki words, 128 KiB per SA.
    pub const MAX_SIZE: u32 = 1 << 20;

    /// A window of `size` packets (a multiple of 64, at least 1024). Allocates once, here.
    pub fn new(size: u32) -> Result<ReplayWindow, WindowSizeError> {
        if !(Self::MIN_SIZE..=Self::MAX_SIZE).contains(&size) || size & 63 != 0 {
            return Err(WindowSizeError(size));
        }
        let words = (size / 64 + 1) as usize;
        Ok(ReplayWindow {
            words: vec![0u64; words].into_boxed_slice(),
            size: u64::from(size),
            top: 0,
        })
    }

    /// The window size in packets.
    pub fn size(&self) -> u32 {
        // Constructed from a u32.
        self.size as u32
    }

    /// The highest sequence number committed so far (0 before any).
    pub fn top(&self) -> u64 {
        self.top
    }

    fn slot(&self, seq: u64) -> (usize, u64) {
        let n = self.words.len() as u64;
        (((seq >> 6) % n) as usize, 1u64 << (seq & 63))
    }

    /// Would `seq` be accepted? Does not change the window.
    pub fn check(&self, seq: u64) -> Result<(), Replay> {
        if seq == 0 {
            return Err(Replay::TooOld);
        }
        if seq > self.top {
            return Ok(());
        }
        if self.top - seq >= self.size {
            return Err(Replay::TooOld);
        }
        let (w, bit) = self.slot(seq);
        if self.words[w] & bit != 0 {
            Err(Replay::Replayed)
        } else {
            Ok(())
        }
    }

    /// Marks `seq` as received, sliding the window right if it is new. Call only after the
    /// packet authenticated. Numbers left of the window (and 0) are ignored.
    pub fn commit(&mut self, seq: u64) {
        if seq == 0 {
            return;
        }
        if seq > self.top {
            let n = self.words.len() as u64;
            let old_block = self.top >> 6;
            let new_block = seq >> 6;
            if new_block - old_block >= n {
                self.words.fill(0);
            } else {
                for block in old_block + 1..=new_block {
                    self.words[(block % n) as usize] = 0;
                }
            }
            self.top = seq;
        } else if self.top - seq >= self.size {
            return;
        }
        let (w, bit) = self.slot(seq);
        self.words[w] |= bit;
    }

    /// The full 64-bit sequence number of a packet that carries the low 32 bits `low`, with
    /// extended sequence numbers (RFC 4303 Appendix A2.2): the high half is taken to be that of
    /// the window's top, or one more when `low` is below the window (the counter wrapped), or
    /// one less when the window straddles a 2^32 boundary and `low` lies in its older part.
    ///
    /// `None` when the guess would leave the 64-bit space (below 0 or above 2^64 - 1): such a
    /// packet cannot be valid. The guess is only a guess: a wrong one fails the ICV.
    pub fn infer_esn(&self, low: u32) -> Option<u64> {
        let tl = self.top as u32;
        let th = (self.top >> 32) as u32;
        // The window size is at most 2^20, so `w - 1` fits a u32.
        let w1 = (self.size - 1) as u32;
        let seqh = if tl >= w1 {
            // Case A: the window lies within one 2^32 subspace.
            if low >= tl - w1 {
                th
            } else {
                th.checked_add(1)?
            }
        } else if low >= tl.wrapping_sub(w1) {
            // Case B: the window straddles two subspaces and `low` is in the older one.
            th.checked_sub(1)?
        } else {
            th
        };
        Some(u64::from(seqh) << 32 | u64::from(low))
    }
}

impl fmt::Debug for ReplayWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplayWindow")
            .field("size", &self.size)
            .field("top", &self.top)
            .finish_non_exhaustive()
    }
}

impl Default for ReplayWindow {
    fn default() -> Self {
        ReplayWindow {
            words: vec![0u64; (Self::DEFAULT_SIZE / 64 + 1) as usize].into_boxed_slice(),
            size: u64::from(Self::DEFAULT_SIZE),
            top: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashSet;

    /// The obvious model: every number ever committed, and the highest.
    struct Model {
        seen: HashSet<u64>,
        top: u64,
        size: u64,
    }

    impl Model {
        fn new(size: u32) -> Model {
            Model {
                seen: HashSet::new(),
                top: 0,
                size: u64::from(size),
            }
        }
        fn check(&self, seq: u64) -> Result<(), Replay> {
            if seq == 0 || (seq <= self.top && self.top - seq >= self.size) {
                Err(Replay::TooOld)
            } else if self.seen.contains(&seq) {
                Err(Replay::Replayed)
            } else {
                Ok(())
            }
        }
        fn commit(&mut self, seq: u64) {
            if self.check(seq) == Err(Replay::TooOld) {
                return;
            }
            self.seen.insert(seq);
            self.top = self.top.max(seq);
        }
    }

    #[test]
    fn sizes() {
        assert!(ReplayWindow::new(1024).is_ok());
        assert!(ReplayWindow::new(4096).is_ok());
        assert_eq!(ReplayWindow::new(1000).unwrap_err(), WindowSizeError(1000));
        assert_eq!(ReplayWindow::new(960).unwrap_err(), WindowSizeError(960));
        assert!(ReplayWindow::new(0).is_err());
        assert!(ReplayWindow::new(ReplayWindow::MAX_SIZE + 64).is_err());
        assert_eq!(ReplayWindow::default().size(), 1024);
        assert!(WindowSizeError(5).to_string().contains("multiple of 64"));
    }

    #[test]
    fn basics() {
        let mut w = ReplayWindow::new(1024).unwrap();
        assert_eq!(w.check(0), Err(Replay::TooOld));
        assert_eq!(w.check(1), Ok(()));
        w.commit(1);
        assert_eq!(w.check(1), Err(Replay::Replayed));
        w.commit(3000);
        assert_eq!(w.top(), 3000);
        assert_eq!(w.check(1), Err(Replay::TooOld));
        assert_eq!(w.check(3000 - 1023), Ok(()));
        assert_eq!(w.check(3000 - 1024), Err(Replay::TooOld));
        w.commit(3000 - 1023);
        assert_eq!(w.check(3000 - 1023), Err(Replay::Replayed));
        // Committing something left of the window changes nothing.
        w.commit(5);
        assert_eq!(w.top(), 3000);
        // The slot reused by the next block must come back clear.
        w.commit(3000 + 64);
        assert_eq!(w.check(3000 + 63), Ok(()));
        assert_eq!(w.check(3000), Err(Replay::Replayed));
    }

    #[test]
    fn top_of_u64_space() {
        let mut w = ReplayWindow::new(1024).unwrap();
        w.commit(u64::MAX - 5);
        w.commit(u64::MAX);
        assert_eq!(w.check(u64::MAX), Err(Replay::Replayed));
        assert_eq!(w.check(u64::MAX - 5), Err(Replay::Replayed));
        assert_eq!(w.check(u64::MAX - 1), Ok(()));
    }

    #[test]
    fn esn_inference_rfc4303_a2() {
        let mut w = ReplayWindow::new(1024).unwrap();
        // Fresh window: case B with Th = 0; numbers "before 0" cannot exist.
        assert_eq!(w.infer_esn(1), Some(1));
        assert_eq!(w.infer_esn(u32::MAX), None);
        assert_eq!(w.infer_esn(u32::MAX - 1022), None);
        assert_eq!(
            w.infer_esn(u32::MAX - 1023),
            Some(u64::from(u32::MAX - 1023))
        );
        // Case A inside one subspace.
        w.commit(0x0000_0005_0000_1000);
        assert_eq!(
            w.infer_esn(0x1000 - 1023),
            Some(0x0000_0005_0000_1000 - 1023)
        );
        assert_eq!(w.infer_esn(0x2000), Some(0x0000_0005_0000_2000));
        // Below the window: the counter wrapped into the next subspace.
        assert_eq!(w.infer_esn(0x10), Some(0x0000_0006_0000_0010));
        // Case B: top just past a 2^32 boundary; the old subspace's tail is still in window.
        let mut w = ReplayWindow::new(1024).unwrap();
        w.commit(0x0000_0007_0000_0010);
        assert_eq!(w.infer_esn(0xffff_fff0), Some(0x0000_0006_ffff_fff0));
        assert_eq!(w.infer_esn(0x20), Some(0x0000_0007_0000_0020));
        assert_eq!(w.infer_esn(0x8000_0000), Some(0x0000_0007_8000_0000));
        // At the very end of the space there is no next subspace.
        let mut w = ReplayWindow::new(1024).unwrap();
        w.commit(u64::MAX - 10);
        assert_eq!(w.infer_esn(3), None);
        assert_eq!(w.infer_esn(u32::MAX), Some(u64::MAX));
    }

    /// One step of a random walk, interpreted relative to the current top.
    #[derive(Debug, Clone)]
    enum Step {
        /// top + d: in-order arrival or a small gap.
        Ahead(u16),
        /// top - d: reordering within (or, for large d, left of) the window, or a duplicate.
        Behind(u16),
        /// A far jump right.
        Jump(u32),
        /// An absolute number (mostly tiny: the start of the space).
        Absolute(u64),
    }

    fn step() -> impl Strategy<Value = (Step, bool)> {
        let s = prop_oneof![
            4 => (0u16..80).prop_map(Step::Ahead),
            4 => (0u16..1200).prop_map(Step::Behind),
            1 => (1000u32..200_000).prop_map(Step::Jump),
            1 => prop_oneof![0u64..70, any::<u64>()].prop_map(Step::Absolute),
        ];
        // The flag: does the packet authenticate (commit) or is it a forgery (check only)?
        (s, proptest::bool::weighted(0.85))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        #[test]
        fn matches_reference_model(
            size in prop_oneof![Just(1024u32), Just(2048u32), Just(1088u32)],
            steps in proptest::collection::vec(step(), 1..300),
        ) {
            let mut w = ReplayWindow::new(size).unwrap();
            let mut m = Model::new(size);
            for (s, authentic) in steps {
                let seq = match s {
                    Step::Ahead(d) => m.top.saturating_add(u64::from(d)),
                    Step::Behind(d) => m.top.saturating_sub(u64::from(d)),
                    Step::Jump(d) => m.top.saturating_add(u64::from(d)),
                    Step::Absolute(v) => v,
                };
                prop_assert_eq!(w.check(seq), m.check(seq), "check({})", seq);
                if authentic && m.check(seq).is_ok() {
                    w.commit(seq);
                    m.commit(seq);
                }
                prop_assert_eq!(w.top(), m.top);
                // Whole-state comparison around the top, including just left of the window.
                let lo = m.top.saturating_sub(u64::from(size) + 70);
                let hi = m.top.saturating_add(70);
                for probe in lo..=hi {
                    prop_assert_eq!(w.check(probe), m.check(probe), "probe {}", probe);
                }
            }
        }
    }
}
