//! Randomness, passed in: [`Random`], with [`SystemRandom`] for production and [`SeededRandom`]
//! for deterministic tests and simulations.

use core::fmt;

use aws_lc_rs::digest;
use zeroize::Zeroize;

/// A source of random bytes. Everything in this crate that needs randomness (DH private values,
/// IVs, cookie secrets) takes one, so that tests can run deterministically.
pub trait Random {
    /// Fills `buf` entirely with random bytes.
    fn fill(&mut self, buf: &mut [u8]);
}

impl<R: Random + ?Sized> Random for &mut R {
    fn fill(&mut self, buf: &mut [u8]) {
        (**self).fill(buf);
    }
}

/// The operating system's CSPRNG through `aws-lc-rs` (`RAND_bytes`).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemRandom;

impl SystemRandom {
    /// The system random source.
    pub fn new() -> SystemRandom {
        SystemRandom
    }
}

impl Random for SystemRandom {
    /// # Panics
    ///
    /// If AWS-LC cannot produce random bytes. That means the system's entropy source is broken;
    /// carrying on would mean predictable keys, so this fails closed.
    fn fill(&mut self, buf: &mut [u8]) {
        #[allow(clippy::expect_used)]
        aws_lc_rs::rand::fill(buf).expect("the system random source failed (AWS-LC RAND_bytes)");
    }
}

/// A deterministic byte stream for tests and simulations: block `n` is `SHA-256(seed || n)`.
///
/// **Not for production**: anyone who knows the seed knows every key drawn from it.
#[derive(Clone)]
pub struct SeededRandom {
    seed: [u8; 32],
    counter: u64,
    block: [u8; 32],
    used: usize,
}

impl SeededRandom {
    /// A stream determined by `seed` (any length; it is hashed).
    pub fn new(seed: &[u8]) -> SeededRandom {
        let mut s = [0u8; 32];
        s.copy_from_slice(digest::digest(&digest::SHA256, seed).as_ref());
        SeededRandom {
            seed: s,
            counter: 0,
            block: [0; 32],
            used: 32,
        }
    }

    /// Same as `SeededRandom::new(&seed.to_be_bytes())`.
    pub fn from_u64(seed: u64) -> SeededRandom {
        SeededRandom::new(&seed.to_be_bytes())
    }
}

impl Random for SeededRandom {
    fn fill(&mut self, buf: &mut [u8]) {
        for b in buf.iter_mut() {
            if self.used == self.block.len() {
                let mut ctx = digest::Context::new(&digest::SHA256);
                ctx.update(&self.seed);
                ctx.update(&self.counter.to_be_bytes());
                self.block.copy_from_slice(ctx.finish().as_ref());
                self.counter = self.counter.wrapping_add(1);
                self.used = 0;
            }
            *b = self.block[self.used];
            self.used += 1;
        }
    }
}

impl Drop for SeededRandom {
    fn drop(&mut self) {
        self.seed.zeroize();
        self.block.zeroize();
    }
}

impl fmt::Debug for SeededRandom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SeededRandom")
            .field("counter", &self.counter)
            .finish_non_exhaustive()
    }
}
