//! Stateless cookies against IKE_SA_INIT floods (RFC 7296 2.6).
//!
//! RFC 7296 suggests `Cookie = <VersionIDofSecret> | Hash(Ni | IPi | SPIi | <secret>)`. Here the
//! keyed hash is HMAC-SHA-256 keyed with the secret (the keyed-MAC form of the same construction;
//! only this responder ever recomputes it), and the version is 4 octets: cookies are
//! [`COOKIE_LEN`] = 36 octets, within the 1..64 RFC 7296 3.10.1 allows.
//!
//! The secret rotates every `lifetime` (time is passed in); a cookie made with a secret is
//! accepted until twice the lifetime after that secret was created, so that a cookie handed out
//! just before a rotation still works for the client's retry, and the secret before the current
//! one is kept for that.

use core::fmt;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use aws_lc_rs::{constant_time, hmac};

use super::random::Random;

/// Length of the cookies this module makes.
pub const COOKIE_LEN: usize = 4 + 32;

struct Secret {
    version: u32,
    key: hmac::Key,
    created: Instant,
}

impl Secret {
    fn new(version: u32, now: Instant, rng: &mut (impl Random + ?Sized)) -> Secret {
        let mut bytes = zeroize::Zeroizing::new([0u8; 32]);
        rng.fill(&mut bytes[..]);
        Secret {
            version,
            key: hmac::Key::new(hmac::HMAC_SHA256, &bytes[..]),
            created: now,
        }
    }

    fn mac(&self, ni: &[u8], ip: IpAddr, spi_i: u64) -> hmac::Tag {
        let mut ctx = hmac::Context::with_key(&self.key);
        ctx.update(ni);
        match ip.to_canonical() {
            IpAddr::V4(a) => ctx.update(&a.octets()),
            IpAddr::V6(a) => ctx.update(&a.octets()),
        }
        ctx.update(&spi_i.to_be_bytes());
        ctx.sign()
    }
}

/// The responder's cookie secrets: makes cookies and checks them.
pub struct CookieJar {
    current: Secret,
    previous: Option<Secret>,
    lifetime: Duration,
}

impl fmt::Debug for CookieJar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CookieJar")
            .field("version", &self.current.version)
            .field("lifetime", &self.lifetime)
            .finish_non_exhaustive()
    }
}

impl CookieJar {
    /// A jar whose first secret is drawn now; secrets rotate every `lifetime` (a few minutes is
    /// usual).
    pub fn new(now: Instant, lifetime: Duration, rng: &mut (impl Random + ?Sized)) -> CookieJar {
        let mut v = [0u8; 4];
        rng.fill(&mut v);
        CookieJar {
            current: Secret::new(u32::from_be_bytes(v), now, rng),
            previous: None,
            lifetime,
        }
    }

    /// Draws a new secret if the current one is `lifetime` old; the current one becomes the
    /// previous one.
    pub fn rotate_if_due(&mut self, now: Instant, rng: &mut (impl Random + ?Sized)) {
        if now.saturating_duration_since(self.current.created) >= self.lifetime {
            let next = Secret::new(self.current.version.wrapping_add(1), now, rng);
            self.previous = Some(core::mem::replace(&mut self.current, next));
        }
    }

    /// The cookie for an IKE_SA_INIT request with nonce data `ni` from address `ip` with
    /// initiator SPI `spi_i` (rotating the secret first if due). Send it in a COOKIE
    /// notification.
    pub fn cookie(
        &mut self,
        now: Instant,
        rng: &mut (impl Random + ?Sized),
        ni: &[u8],
        ip: IpAddr,
        spi_i: u64,
    ) -> [u8; COOKIE_LEN] {
        self.rotate_if_due(now, rng);
        let mut out = [0u8; COOKIE_LEN];
        out[..4].copy_from_slice(&self.current.version.to_be_bytes());
        out[4..].copy_from_slice(self.current.mac(ni, ip, spi_i).as_ref());
        out
    }

    /// True when `cookie` (the data of the COOKIE notification in a retried request) was made
    /// by this jar for these `ni`, `ip` and `spi_i`, with a secret that is not too old.
    pub fn verify(&self, now: Instant, cookie: &[u8], ni: &[u8], ip: IpAddr, spi_i: u64) -> bool {
        if cookie.len() != COOKIE_LEN {
            return false;
        }
        let (version, mac) = cookie.split_at(4);
        let version = u32::from_be_bytes([version[0], version[1], version[2], version[3]]);
        let secret = [Some(&self.current), self.previous.as_ref()]
            .into_iter()
            .flatten()
            .find(|s| s.version == version);
        let Some(secret) = secret else {
            return false;
        };
        if now.saturating_duration_since(secret.created) >= self.lifetime.saturating_mul(2) {
            return false;
        }
        constant_time::verify_slices_are_equal(secret.mac(ni, ip, spi_i).as_ref(), mac).is_ok()
    }
}
