//! The Encrypted (SK) payload's protection: RFC 7296 3.14 (AES-CBC + HMAC) and RFC 5282
//! (AES-GCM).
//!
//! The SK payload's body (after its 4-byte generic payload header) is
//!
//! ```text
//! IV | encrypted( IKE payloads | Padding | Pad Length ) | ICV
//! ```
//!
//! # What the caller passes as `aad`
//!
//! Always the same bytes: **the message from the first octet of the IKE header up to and
//! including the SK payload's generic header** — everything that precedes the IV — with the
//! length fields (IKE header Length, SK Payload Length) already holding their final values
//! ([`SkCipher::sealed_len`] gives the body length to put there before sealing).
//!
//! - AES-CBC (RFC 7296 3.14): the ICV is the truncated HMAC over the whole message from the IKE
//!   header through the end of the ciphertext, i.e. over `aad | IV | ciphertext`.
//! - AES-GCM (RFC 5282 5.1): the AAD is the IKE header through the SK payload header, i.e.
//!   `aad`; the 12-byte nonce is the 4-byte salt (from SK_e) followed by the 8-byte IV sent in the
//!   payload, and the 16-byte tag is the ICV.
//!
//! The same holds for an Encrypted Fragment payload (SKF, RFC 7383): `aad` then ends after the
//! SKF header (including its Fragment Number and Total Fragments fields).
//!
//! # CBC with aws-lc-rs
//!
//! IKE pads its plaintext itself (pad bytes then a pad-length byte, RFC 7296 3.14), so the block
//! cipher must not add PKCS#7 padding. aws-lc-rs's `cipher` module has exactly that mode:
//! [`EncryptingKey::cbc`] / [`DecryptingKey::cbc`] are AES-CBC *without* padding (the padded
//! variant is a separate type, `PaddedBlockEncryptingKey`), requiring input that is a whole
//! number of blocks, with the IV given through `less_safe_encrypt` and an `EncryptionContext`.
//! So AES itself stays AWS-LC's; this module only arranges IV, padding and HMAC around it.

use core::fmt;

use aws_lc_rs::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::cipher::{
    DecryptingKey, DecryptionContext, EncryptingKey, EncryptionContext, UnboundCipherKey,
};
use aws_lc_rs::iv::FixedLength;
use aws_lc_rs::{constant_time, hmac};

use super::keys::KeyError;
use super::random::Random;
use super::secret::SecretBytes;
use super::transforms::{EncrAlg, IntegAlg};

const AES_BLOCK: usize = 16;
const GCM_IV: usize = 8;
const GCM_SALT: usize = 4;
const GCM_ICV: usize = 16;

/// Why an SK payload could not be opened (or, for `Exhausted`, sealed). Every variant is a
/// reason to drop the message silently (RFC 7296 2.21.2 / 3.14); none reveals which check failed
/// to the peer, and `open` checks the ICV before it looks at the plaintext.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkError {
    /// The body is shorter than IV + one cipher block (or pad-length byte) + ICV.
    Truncated,
    /// The AES-CBC ciphertext is not a whole number of blocks.
    NotBlockAligned,
    /// The ICV / tag does not verify: wrong key, tampered or corrupted message.
    IntegrityCheckFailed,
    /// The decrypted Pad Length points past the start of the plaintext.
    BadPadding,
    /// 2^64 messages sealed with one AES-GCM key: the IV space is used up (never in practice).
    Exhausted,
}

impl SkError {
    /// A short, stable name for counters and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            SkError::Truncated => "sk_truncated",
            SkError::NotBlockAligned => "sk_not_block_aligned",
            SkError::IntegrityCheckFailed => "sk_integrity_check_failed",
            SkError::BadPadding => "sk_bad_padding",
            SkError::Exhausted => "sk_iv_exhausted",
        }
    }
}

impl fmt::Display for SkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SkError::Truncated => "encrypted payload too short",
            SkError::NotBlockAligned => "encrypted payload is not a whole number of cipher blocks",
            SkError::IntegrityCheckFailed => "encrypted payload failed its integrity check",
            SkError::BadPadding => "encrypted payload has an invalid pad length",
            SkError::Exhausted => "no IV left for this key",
        })
    }
}

impl std::error::Error for SkError {}

enum Inner {
    Gcm {
        key: LessSafeKey,
        salt: [u8; GCM_SALT],
        /// Next IV: drawn from the RNG at the first seal, then incremented, so that one
        /// `SkCipher` never repeats an IV (RFC 5282 3.1) and separate instances are unlikely to.
        next_iv: Option<u64>,
        sealed: u64,
    },
    Cbc(Box<CbcKeys>),
}

struct CbcKeys {
    enc: EncryptingKey,
    dec: DecryptingKey,
    integ: IntegAlg,
    mac: hmac::Key,
}

/// Protects and verifies SK payloads in one direction (SK_ei/SK_ai or SK_er/SK_ar). Build it
/// with [`IkeSaKeys::initiator_sk`](super::IkeSaKeys::initiator_sk) /
/// [`responder_sk`](super::IkeSaKeys::responder_sk) or [`SkCipher::new`].
pub struct SkCipher {
    encr: EncrAlg,
    inner: Inner,
}

impl fmt::Debug for SkCipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let integ = match &self.inner {
            Inner::Gcm { .. } => None,
            Inner::Cbc(k) => Some(k.integ),
        };
        f.debug_struct("SkCipher")
            .field("encr", &self.encr)
            .field("integ", &integ)
            .finish_non_exhaustive()
    }
}

impl SkCipher {
    /// Keys a cipher. `sk_e` is the encryption keying material (key, then the 4-byte salt for
    /// AES-GCM), `sk_a` the integrity key: required with `integ` for AES-CBC, absent for AES-GCM.
    pub fn new(
        encr: EncrAlg,
        key_bits: u16,
        integ: Option<IntegAlg>,
        sk_e: &SecretBytes,
        sk_a: Option<&SecretBytes>,
    ) -> Result<SkCipher, KeyError> {
        let expected = encr
            .key_material_len(key_bits)
            .ok_or(KeyError::UnsupportedKeyLength {
                encr,
                bits: key_bits,
            })?;
        if sk_e.len() != expected {
            return Err(KeyError::WrongKeyLength {
                what: "SK_e",
                expected,
                got: sk_e.len(),
            });
        }
        let inner = match (encr, integ, sk_a) {
            (EncrAlg::AesGcm16, None, None) => {
                let (key, salt) = sk_e.as_bytes().split_at(expected - GCM_SALT);
                let alg = if key_bits == 128 {
                    &aead::AES_128_GCM
                } else {
                    &aead::AES_256_GCM
                };
                let key = UnboundKey::new(alg, key).map_err(|_| KeyError::Rejected)?;
                let mut s = [0u8; GCM_SALT];
                s.copy_from_slice(salt);
                Inner::Gcm {
                    key: LessSafeKey::new(key),
                    salt: s,
                    next_iv: None,
                    sealed: 0,
                }
            }
            (EncrAlg::AesCbc, Some(integ), Some(sk_a)) => {
                if sk_a.len() != integ.key_len() {
                    return Err(KeyError::WrongKeyLength {
                        what: "SK_a",
                        expected: integ.key_len(),
                        got: sk_a.len(),
                    });
                }
                let alg = if key_bits == 128 {
                    &aws_lc_rs::cipher::AES_128
                } else {
                    &aws_lc_rs::cipher::AES_256
                };
                let unbound = |k| UnboundCipherKey::new(alg, k).map_err(|_| KeyError::Rejected);
                Inner::Cbc(Box::new(CbcKeys {
                    enc: EncryptingKey::cbc(unbound(sk_e.as_bytes())?)
                        .map_err(|_| KeyError::Rejected)?,
                    dec: DecryptingKey::cbc(unbound(sk_e.as_bytes())?)
                        .map_err(|_| KeyError::Rejected)?,
                    integ,
                    mac: hmac::Key::new(integ.hmac_algorithm(), sk_a.as_bytes()),
                }))
            }
            _ => return Err(KeyError::IntegrityMismatch),
        };
        Ok(SkCipher { encr, inner })
    }

    /// Length of the IV at the start of the body (16 for AES-CBC, 8 for AES-GCM).
    pub fn iv_len(&self) -> usize {
        match self.inner {
            Inner::Gcm { .. } => GCM_IV,
            Inner::Cbc(_) => AES_BLOCK,
        }
    }

    /// Length of the ICV at the end of the body.
    pub fn icv_len(&self) -> usize {
        match &self.inner {
            Inner::Gcm { .. } => GCM_ICV,
            Inner::Cbc(k) => k.integ.icv_len(),
        }
    }

    /// Padding this module adds before the Pad Length byte: the least that aligns
    /// `plaintext | Padding | Pad Length` to the cipher's block (none for GCM, whose "block" is
    /// one byte, RFC 5282 3).
    fn pad_len(&self, plaintext_len: usize) -> usize {
        match self.inner {
            Inner::Gcm { .. } => 0,
            Inner::Cbc(_) => (AES_BLOCK - (plaintext_len + 1) % AES_BLOCK) % AES_BLOCK,
        }
    }

    /// Length of the body [`seal`](SkCipher::seal) produces for `plaintext_len` bytes of
    /// payloads: IV + payloads + padding + 1 + ICV. The SK Payload Length is this plus 4.
    pub fn sealed_len(&self, plaintext_len: usize) -> usize {
        self.iv_len() + plaintext_len + self.pad_len(plaintext_len) + 1 + self.icv_len()
    }

    /// Encrypts and authenticates `plaintext` (the inner payload chain) and returns the SK
    /// payload body `IV | ciphertext | ICV`. `aad` is every byte of the message before the IV
    /// (see the module documentation), with final length fields.
    pub fn seal(
        &mut self,
        aad: &[u8],
        plaintext: &[u8],
        rng: &mut (impl Random + ?Sized),
    ) -> Result<Vec<u8>, SkError> {
        let mut message = Vec::with_capacity(aad.len() + self.sealed_len(plaintext.len()));
        message.extend_from_slice(aad);
        self.seal_append(&mut message, plaintext, rng)?;
        Ok(message.split_off(aad.len()))
    }

    /// Like [`seal`](SkCipher::seal), with the message being built in `message`: everything in
    /// it so far is the `aad`, and the body is appended. Write the IKE header and the SK payload
    /// header (lengths from [`sealed_len`](SkCipher::sealed_len)) into `message`, then call this.
    /// On error `message` is left as it was.
    pub fn seal_append(
        &mut self,
        message: &mut Vec<u8>,
        plaintext: &[u8],
        rng: &mut (impl Random + ?Sized),
    ) -> Result<(), SkError> {
        let aad_len = message.len();
        let pad = self.pad_len(plaintext.len());
        // Pad bytes are zero: RFC 7296 3.14 lets the sender choose any value.
        let inner_len = plaintext.len() + pad + 1;
        match &mut self.inner {
            Inner::Gcm {
                key,
                salt,
                next_iv,
                sealed,
            } => {
                if *sealed == u64::MAX {
                    return Err(SkError::Exhausted);
                }
                let iv = match *next_iv {
                    Some(iv) => iv,
                    None => {
                        let mut b = [0u8; GCM_IV];
                        rng.fill(&mut b);
                        u64::from_be_bytes(b)
                    }
                };
                *next_iv = Some(iv.wrapping_add(1));
                *sealed += 1;
                let iv = iv.to_be_bytes();
                let mut nonce = [0u8; 12];
                nonce[..GCM_SALT].copy_from_slice(salt);
                nonce[GCM_SALT..].copy_from_slice(&iv);
                message.extend_from_slice(&iv);
                let start = message.len();
                message.extend_from_slice(plaintext);
                message.resize(start + inner_len, 0);
                // pad == 0 for GCM, so the Pad Length byte (already 0) is right.
                let (aad, body) = message.split_at_mut(aad_len);
                let ct = &mut body[GCM_IV..];
                match key.seal_in_place_separate_tag(
                    Nonce::assume_unique_for_key(nonce),
                    Aad::from(&*aad),
                    ct,
                ) {
                    Ok(tag) => {
                        message.extend_from_slice(tag.as_ref());
                        Ok(())
                    }
                    Err(_) => {
                        // Only for inputs beyond GCM's limits (2^36 bytes): not an IKE message.
                        message.truncate(aad_len);
                        Err(SkError::Exhausted)
                    }
                }
            }
            Inner::Cbc(k) => {
                let CbcKeys {
                    enc, integ, mac, ..
                } = &**k;
                let mut iv = [0u8; AES_BLOCK];
                rng.fill(&mut iv);
                message.extend_from_slice(&iv);
                let start = message.len();
                message.extend_from_slice(plaintext);
                message.resize(start + inner_len, 0);
                let last = message.len() - 1;
                // pad < 16, so the cast is lossless.
                message[last] = pad as u8;
                let context = EncryptionContext::Iv128(FixedLength::from(iv));
                if enc
                    .less_safe_encrypt(&mut message[start..], context)
                    .is_err()
                {
                    message.truncate(aad_len);
                    return Err(SkError::NotBlockAligned);
                }
                let tag = hmac::sign(mac, message);
                message.extend_from_slice(&tag.as_ref()[..integ.icv_len()]);
                Ok(())
            }
        }
    }

    /// Verifies and decrypts an SK payload body (`IV | ciphertext | ICV`) and returns the inner
    /// payload chain without its padding. `aad` is every byte of the received message before the
    /// IV. The ICV is checked (in constant time) before anything is decrypted or parsed; no input
    /// makes this panic.
    pub fn open(&self, aad: &[u8], body: &[u8]) -> Result<Vec<u8>, SkError> {
        let iv_len = self.iv_len();
        let icv_len = self.icv_len();
        match &self.inner {
            Inner::Gcm { key, salt, .. } => {
                // At least the Pad Length byte must be there.
                if body.len() < iv_len + 1 + icv_len {
                    return Err(SkError::Truncated);
                }
                let (iv, rest) = body.split_at(iv_len);
                let mut nonce = [0u8; 12];
                nonce[..GCM_SALT].copy_from_slice(salt);
                nonce[GCM_SALT..].copy_from_slice(iv);
                let mut buf = SecretBytes::from_slice(rest);
                let plain_len = key
                    .open_in_place(
                        Nonce::assume_unique_for_key(nonce),
                        Aad::from(aad),
                        buf.as_mut_bytes(),
                    )
                    .map_err(|_| SkError::IntegrityCheckFailed)?
                    .len();
                strip_padding(&buf.as_bytes()[..plain_len])
            }
            Inner::Cbc(k) => {
                let CbcKeys {
                    dec, integ, mac, ..
                } = &**k;
                if body.len() < iv_len + AES_BLOCK + icv_len {
                    return Err(SkError::Truncated);
                }
                let (signed, icv) = body.split_at(body.len() - icv_len);
                let (iv, ct) = signed.split_at(iv_len);
                if ct.len() % AES_BLOCK != 0 {
                    return Err(SkError::NotBlockAligned);
                }
                let mut ctx = hmac::Context::with_key(mac);
                ctx.update(aad);
                ctx.update(signed);
                let tag = ctx.sign();
                constant_time::verify_slices_are_equal(&tag.as_ref()[..integ.icv_len()], icv)
                    .map_err(|_| SkError::IntegrityCheckFailed)?;
                let mut iv_block = [0u8; AES_BLOCK];
                iv_block.copy_from_slice(iv);
                let mut buf = SecretBytes::from_slice(ct);
                let plain_len = dec
                    .decrypt(
                        buf.as_mut_bytes(),
                        DecryptionContext::Iv128(FixedLength::from(iv_block)),
                    )
                    .map_err(|_| SkError::NotBlockAligned)?
                    .len();
                strip_padding(&buf.as_bytes()[..plain_len])
            }
        }
    }
}

/// Removes `Padding | Pad Length` from decrypted `inner`.
fn strip_padding(inner: &[u8]) -> Result<Vec<u8>, SkError> {
    let (&pad_len, rest) = inner.split_last().ok_or(SkError::BadPadding)?;
    let pad_len = usize::from(pad_len);
    if pad_len > rest.len() {
        return Err(SkError::BadPadding);
    }
    Ok(rest[..rest.len() - pad_len].to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::random::SeededRandom;

    fn gcm(bits: u16) -> SkCipher {
        let len = EncrAlg::AesGcm16.key_material_len(bits).unwrap();
        let key = SecretBytes::from_slice(&(0..len as u8).collect::<Vec<_>>());
        SkCipher::new(EncrAlg::AesGcm16, bits, None, &key, None).unwrap()
    }

    fn cbc(bits: u16, integ: IntegAlg) -> SkCipher {
        let len = EncrAlg::AesCbc.key_material_len(bits).unwrap();
        let key = SecretBytes::from_slice(&(0..len as u8).collect::<Vec<_>>());
        let mac = SecretBytes::from_slice(&vec![0x5a; integ.key_len()]);
        SkCipher::new(EncrAlg::AesCbc, bits, Some(integ), &key, Some(&mac)).unwrap()
    }

    fn all() -> Vec<SkCipher> {
        vec![
            gcm(128),
            gcm(256),
            cbc(128, IntegAlg::HmacSha1_96),
            cbc(256, IntegAlg::HmacSha256_128),
            cbc(256, IntegAlg::HmacSha384_192),
        ]
    }

    const AAD: &[u8] = b"IKE header (28 bytes) ....|SK hdr";

    #[test]
    fn round_trips_every_length() {
        let mut rng = SeededRandom::from_u64(1);
        for mut c in all() {
            for len in 0..70usize {
                let plain: Vec<u8> = (0..len).map(|i| i as u8).collect();
                let body = c.seal(AAD, &plain, &mut rng).unwrap();
                assert_eq!(body.len(), c.sealed_len(len), "{c:?} {len}");
                if c.iv_len() == AES_BLOCK {
                    assert_eq!((body.len() - c.iv_len() - c.icv_len()) % AES_BLOCK, 0);
                }
                assert_eq!(c.open(AAD, &body).unwrap(), plain, "{c:?} {len}");
            }
        }
    }

    #[test]
    fn seal_append_matches_seal_and_keeps_the_aad() {
        let mut rng1 = SeededRandom::from_u64(2);
        let mut rng2 = SeededRandom::from_u64(2);
        let mut a = cbc(256, IntegAlg::HmacSha256_128);
        let mut b = cbc(256, IntegAlg::HmacSha256_128);
        let body = a.seal(AAD, b"payloads", &mut rng1).unwrap();
        let mut msg = AAD.to_vec();
        b.seal_append(&mut msg, b"payloads", &mut rng2).unwrap();
        assert_eq!(&msg[..AAD.len()], AAD);
        assert_eq!(&msg[AAD.len()..], &body[..]);
    }

    #[test]
    fn gcm_ivs_never_repeat_within_one_cipher() {
        let mut rng = SeededRandom::from_u64(3);
        let mut c = gcm(256);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..100 {
            let body = c.seal(AAD, b"x", &mut rng).unwrap();
            assert!(seen.insert(body[..GCM_IV].to_vec()));
        }
    }

    #[test]
    fn any_tampering_is_detected() {
        let mut rng = SeededRandom::from_u64(4);
        for mut c in all() {
            let body = c.seal(AAD, b"some payloads here", &mut rng).unwrap();
            for i in 0..body.len() {
                let mut t = body.clone();
                t[i] ^= 0x01;
                assert_eq!(
                    c.open(AAD, &t),
                    Err(SkError::IntegrityCheckFailed),
                    "{c:?} byte {i}"
                );
            }
            for i in 0..AAD.len() {
                let mut aad = AAD.to_vec();
                aad[i] ^= 0x80;
                assert_eq!(c.open(&aad, &body), Err(SkError::IntegrityCheckFailed));
            }
            // The other direction's keys do not open it either.
            let other = if c.iv_len() == GCM_IV {
                let key = SecretBytes::from_slice(&[9u8; 36]);
                SkCipher::new(EncrAlg::AesGcm16, 256, None, &key, None).unwrap()
            } else {
                let integ = match c.icv_len() {
                    12 => IntegAlg::HmacSha1_96,
                    16 => IntegAlg::HmacSha256_128,
                    _ => IntegAlg::HmacSha384_192,
                };
                let key = SecretBytes::from_slice(&[9u8; 32]);
                let mac = SecretBytes::from_slice(&vec![9u8; integ.key_len()]);
                SkCipher::new(EncrAlg::AesCbc, 256, Some(integ), &key, Some(&mac)).unwrap()
            };
            assert!(other.open(AAD, &body).is_err());
        }
    }

    #[test]
    fn truncated_and_misaligned_bodies() {
        let mut rng = SeededRandom::from_u64(5);
        for mut c in all() {
            let body = c.seal(AAD, b"abc", &mut rng).unwrap();
            for len in 0..body.len() {
                let r = c.open(AAD, &body[..len]);
                assert!(r.is_err(), "{c:?} len {len}");
            }
            assert_eq!(c.open(AAD, &[]), Err(SkError::Truncated));
        }
        let c = cbc(128, IntegAlg::HmacSha256_128);
        assert_eq!(
            c.open(AAD, &[0u8; 16 + 17 + 16]),
            Err(SkError::NotBlockAligned)
        );
        assert_eq!(c.open(AAD, &[0u8; 16 + 15 + 16]), Err(SkError::Truncated));
    }

    /// A correctly authenticated message whose Pad Length points before the plaintext start is
    /// refused after the ICV check. Built with the same AWS-LC primitives, by hand.
    #[test]
    fn bad_padding_is_refused_after_authentication() {
        // CBC: one block whose last byte (Pad Length) is 200.
        let key = SecretBytes::from_slice(&[7u8; 32]);
        let mac_key = SecretBytes::from_slice(&[8u8; 32]);
        let c = SkCipher::new(
            EncrAlg::AesCbc,
            256,
            Some(IntegAlg::HmacSha256_128),
            &key,
            Some(&mac_key),
        )
        .unwrap();
        let iv = [3u8; 16];
        let mut block = [0u8; 16];
        block[15] = 200;
        let enc = EncryptingKey::cbc(
            UnboundCipherKey::new(&aws_lc_rs::cipher::AES_256, &[7u8; 32]).unwrap(),
        )
        .unwrap();
        enc.less_safe_encrypt(&mut block, EncryptionContext::Iv128(FixedLength::from(iv)))
            .unwrap();
        let mut body = iv.to_vec();
        body.extend_from_slice(&block);
        let mut signed = AAD.to_vec();
        signed.extend_from_slice(&body);
        let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, &[8u8; 32]), &signed);
        body.extend_from_slice(&tag.as_ref()[..16]);
        assert_eq!(c.open(AAD, &body), Err(SkError::BadPadding));
        // Pad Length 15 (all the block) is fine: empty plaintext.
        let mut block = [0u8; 16];
        block[15] = 15;
        enc.less_safe_encrypt(&mut block, EncryptionContext::Iv128(FixedLength::from(iv)))
            .unwrap();
        let mut body = iv.to_vec();
        body.extend_from_slice(&block);
        let mut signed = AAD.to_vec();
        signed.extend_from_slice(&body);
        let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, &[8u8; 32]), &signed);
        body.extend_from_slice(&tag.as_ref()[..16]);
        assert_eq!(c.open(AAD, &body), Ok(vec![]));

        // GCM: plaintext "ab" + Pad Length 5.
        let key = SecretBytes::from_slice(&[1u8; 36]);
        let c = SkCipher::new(EncrAlg::AesGcm16, 256, None, &key, None).unwrap();
        let k = LessSafeKey::new(UnboundKey::new(&aead::AES_256_GCM, &[1u8; 32]).unwrap());
        let iv = [9u8; 8];
        let mut nonce = [1u8; 12];
        nonce[4..].copy_from_slice(&iv);
        let mut inner = b"ab\x05".to_vec();
        let tag = k
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(AAD),
                &mut inner,
            )
            .unwrap();
        let mut body = iv.to_vec();
        body.extend_from_slice(&inner);
        body.extend_from_slice(tag.as_ref());
        assert_eq!(c.open(AAD, &body), Err(SkError::BadPadding));
    }

    /// The GCM body layout is exactly RFC 5282's: IV | AES-GCM(salt | IV, aad, inner) | tag.
    #[test]
    fn gcm_layout_matches_a_direct_aes_gcm_computation() {
        let key = SecretBytes::from_slice(&(0..20u8).collect::<Vec<_>>());
        let mut c = SkCipher::new(EncrAlg::AesGcm16, 128, None, &key, None).unwrap();
        let mut rng = SeededRandom::from_u64(6);
        let body = c.seal(AAD, b"hello", &mut rng).unwrap();
        let k =
            LessSafeKey::new(UnboundKey::new(&aead::AES_128_GCM, &key.as_bytes()[..16]).unwrap());
        let mut nonce = [0u8; 12];
        nonce[..4].copy_from_slice(&key.as_bytes()[16..]);
        nonce[4..].copy_from_slice(&body[..8]);
        let mut inner = b"hello\x00".to_vec();
        let tag = k
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(AAD),
                &mut inner,
            )
            .unwrap();
        assert_eq!(&body[8..8 + 6], &inner[..]);
        assert_eq!(&body[14..], tag.as_ref());
    }

    /// The CBC layout: IV | AES-CBC(inner) | HMAC(aad | IV | ciphertext) truncated.
    #[test]
    fn cbc_layout_matches_a_direct_computation() {
        let mut c = cbc(128, IntegAlg::HmacSha1_96);
        let mut rng = SeededRandom::from_u64(7);
        let body = c.seal(AAD, b"0123456789", &mut rng).unwrap();
        assert_eq!(body.len(), 16 + 16 + 12);
        let mut signed = AAD.to_vec();
        signed.extend_from_slice(&body[..32]);
        let tag = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, &[0x5a; 20]),
            &signed,
        );
        assert_eq!(&body[32..], &tag.as_ref()[..12]);
        let dec = DecryptingKey::cbc(
            UnboundCipherKey::new(&aws_lc_rs::cipher::AES_128, &(0..16u8).collect::<Vec<_>>())
                .unwrap(),
        )
        .unwrap();
        let mut block = body[16..32].to_vec();
        let mut iv = [0u8; 16];
        iv.copy_from_slice(&body[..16]);
        let plain = dec
            .decrypt(&mut block, DecryptionContext::Iv128(FixedLength::from(iv)))
            .unwrap();
        assert_eq!(&plain[..10], b"0123456789");
        assert_eq!(plain[15], 5); // 10 + 5 + 1 = 16
    }

    proptest::proptest! {
        /// `open` never panics, whatever the bytes; random bytes never authenticate.
        #[test]
        fn open_never_panics(aad in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40),
                             body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..120)) {
            for c in all() {
                proptest::prop_assert!(c.open(&aad, &body).is_err());
            }
        }

        /// Whatever the payloads, what is sealed opens to the same bytes.
        #[test]
        fn seal_open_round_trip(seed in proptest::prelude::any::<u64>(),
                                plain in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            let mut rng = SeededRandom::from_u64(seed);
            for mut c in all() {
                let body = c.seal(AAD, &plain, &mut rng).unwrap();
                proptest::prop_assert_eq!(body.len(), c.sealed_len(plain.len()));
                proptest::prop_assert_eq!(c.open(AAD, &body).unwrap(), plain.clone());
            }
        }
    }

    #[test]
    fn key_checks() {
        let k36 = SecretBytes::from_slice(&[0u8; 36]);
        let k32 = SecretBytes::from_slice(&[0u8; 32]);
        assert!(matches!(
            SkCipher::new(EncrAlg::AesGcm16, 256, None, &k32, None),
            Err(KeyError::WrongKeyLength {
                what: "SK_e",
                expected: 36,
                got: 32
            })
        ));
        assert_eq!(
            SkCipher::new(
                EncrAlg::AesGcm16,
                256,
                Some(IntegAlg::HmacSha256_128),
                &k36,
                Some(&k32)
            )
            .err(),
            Some(KeyError::IntegrityMismatch)
        );
        assert_eq!(
            SkCipher::new(EncrAlg::AesCbc, 256, None, &k32, None).err(),
            Some(KeyError::IntegrityMismatch)
        );
        assert!(matches!(
            SkCipher::new(
                EncrAlg::AesCbc,
                256,
                Some(IntegAlg::HmacSha1_96),
                &k32,
                Some(&k32)
            ),
            Err(KeyError::WrongKeyLength { what: "SK_a", .. })
        ));
        assert!(matches!(
            SkCipher::new(
                EncrAlg::AesCbc,
                192,
                Some(IntegAlg::HmacSha1_96),
                &k32,
                Some(&k32)
            ),
            Err(KeyError::UnsupportedKeyLength { .. })
        ));
    }
}
