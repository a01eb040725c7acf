//! The negotiated PRF and prf+ (RFC 7296 2.13).

use aws_lc_rs::hmac;

use super::keys::KeyError;
use super::secret::SecretBytes;
use super::transforms::PrfAlg;

/// `prf(key, data)`: HMAC with the negotiated hash (RFC 7296 2.13; RFC 2104, RFC 4868).
pub fn prf(alg: PrfAlg, key: &[u8], data: &[u8]) -> SecretBytes {
    prf_parts(alg, key, &[data])
}

/// `prf(key, part0 | part1 | ...)` without building the concatenation.
pub(crate) fn prf_parts(alg: PrfAlg, key: &[u8], parts: &[&[u8]]) -> SecretBytes {
    let key = hmac::Key::new(alg.hmac_algorithm(), key);
    let mut ctx = hmac::Context::with_key(&key);
    for p in parts {
        ctx.update(p);
    }
    SecretBytes::from_slice(ctx.sign().as_ref())
}

/// `prf+(key, seed)` truncated to `len` bytes (RFC 7296 2.13):
///
/// ```text
/// prf+ (K,S) = T1 | T2 | T3 | T4 | ...
/// T1 = prf (K, S | 0x01)
/// T2 = prf (K, T1 | S | 0x02)
/// ...
/// ```
///
/// The counter is one byte, so at most 255 blocks can be produced: a longer `len` is an error.
pub fn prf_plus(alg: PrfAlg, key: &[u8], seed: &[u8], len: usize) -> Result<SecretBytes, KeyError> {
    prf_plus_parts(alg, key, &[seed], len)
}

/// [`prf_plus`] with the seed given as the concatenation of `seed_parts`.
pub(crate) fn prf_plus_parts(
    alg: PrfAlg,
    key: &[u8],
    seed_parts: &[&[u8]],
    len: usize,
) -> Result<SecretBytes, KeyError> {
    let block = alg.output_len();
    let max = 255 * block;
    if len > max {
        return Err(KeyError::PrfPlusTooLong {
            requested: len,
            max,
        });
    }
    let key = hmac::Key::new(alg.hmac_algorithm(), key);
    let mut out = SecretBytes::zeroed(len);
    let buf = out.as_mut_bytes();
    let mut filled = 0usize;
    let mut counter: u8 = 1;
    let mut previous: Option<hmac::Tag> = None;
    while filled < len {
        let mut ctx = hmac::Context::with_key(&key);
        if let Some(t) = &previous {
            ctx.update(t.as_ref());
        }
        for p in seed_parts {
            ctx.update(p);
        }
        ctx.update(&[counter]);
        let t = ctx.sign();
        let take = (len - filled).min(block);
        buf[filled..filled + take].copy_from_slice(&t.as_ref()[..take]);
        filled += take;
        previous = Some(t);
        // Cannot overflow: len <= 255 blocks, so the loop ends before counter would pass 255.
        counter = counter.wrapping_add(1);
    }
    Ok(out)
}
