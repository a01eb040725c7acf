//! Transforms, key material and the crypto glue: nonce, IV, AAD and ICV construction.
//!
//! The primitives come from `aws-lc-rs` (its `aead`, `cipher`, `hmac` and `rand` modules);
//! this module only builds the inputs the ESP RFCs define for them.
//!
//! AEAD transforms (combined mode):
//! - RFC 4106 section 4 (AES-GCM) and RFC 7634 section 2 (ChaCha20-Poly1305): the keying
//!   material is the cipher key followed by a 4-byte salt; the 12-byte nonce is
//!   `salt || IV`, where the 8-byte IV travels in the packet right after the ESP header.
//!   The IV is the 64-bit sequence number: unique per SA, which is all these RFCs ask.
//! - RFC 4106 section 5 and RFC 7634 section 2.1: the AAD is `SPI || 32-bit sequence number`
//!   (8 bytes), or `SPI || 64-bit extended sequence number` (12 bytes, high half first) when
//!   ESN is in use.
//! - Both use a 16-byte ICV (the `16` in the strongSwan names `aes128gcm16`, `aes256gcm16`).
//!
//! AES-CBC with HMAC-SHA-256-128 (separate confidentiality and integrity, encrypt-then-MAC):
//! - The keying material is the AES key followed by the 32-byte HMAC key: encryption key(s)
//!   first, integrity key(s) second, in the order RFC 7296 section 2.17 takes them from KEYMAT.
//! - RFC 3602: a 16-byte IV travels in the packet right after the ESP header; the payload,
//!   padding and trailer are padded to whole 16-byte blocks (RFC 4303 section 2.4) and
//!   encrypted with raw, unpadded CBC (`aws_lc_rs::cipher::EncryptingKey::cbc`).
//! - RFC 4868 section 2.1: the ICV is HMAC-SHA-256 truncated to its first 16 bytes, computed
//!   over `SPI || sequence number (low 32 bits) || IV || ciphertext`, followed (for the
//!   computation only, never sent) by the high 32 bits of the sequence number when ESN is in
//!   use (RFC 4303 sections 2.2.1 and 3.3.2.2). The receiver verifies it, in constant time,
//!   before it decrypts anything.
//! - The IV must be unpredictable (RFC 3602 section 2.1), not merely unique. It is
//!   `AES-ECB(iv_key, 64-bit sequence number || 0^64)`, under a per-SA `iv_key` drawn once from
//!   the operating system's CSPRNG (`aws_lc_rs::rand`) when the outbound SA is built: a
//!   pseudo-random permutation of a counter that never repeats, so the IVs are distinct and
//!   cannot be predicted without `iv_key` (the "encrypted counter" IV of NIST SP 800-38A
//!   appendix C). This keeps `seal` free of per-packet CSPRNG calls (about 0.5 us each on the
//!   development machine, a fifth of the whole seal of a 1400-byte packet, against about 40 ns
//!   for the one AES block; the `speed` test prints both) and makes its cost predictable. A
//!   restarted sender draws a new `iv_key`, so even a reused sequence number gets a fresh IV.

use core::fmt;
use core::str::FromStr;

use aws_lc_rs::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::cipher::{
    DecryptingKey, DecryptionContext, EncryptingKey, EncryptionContext, UnboundCipherKey, AES_128,
    AES_256,
};
use aws_lc_rs::{constant_time, hmac, rand};
use zeroize::Zeroize;

use crate::{CBC_IV_LEN, ESP_HEADER_LEN, ICV_LEN, IV_LEN, SALT_LEN, TRAILER_LEN};

/// Length of the HMAC-SHA-256 key of `aes*-sha256` (RFC 4868 section 2.1.1: 256 bits).
pub const HMAC_SHA256_KEY_LEN: usize = 32;

/// Longest keying material of any transform: a 32-byte AES key plus the 32-byte HMAC key.
pub const MAX_KEY_MATERIAL_LEN: usize = 32 + HMAC_SHA256_KEY_LEN;

/// An ESP transform: an AEAD, or AES-CBC with HMAC-SHA-256-128.
///
/// The name is historical (the type began with the AEADs alone); the non-AEAD variants carry
/// their integrity algorithm with them, as strongSwan's proposal keywords do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Cipher {
    /// AES-128 in GCM mode with a 16-byte ICV (RFC 4106; IKEv2 transform `ENCR_AES_GCM_16`, 128-bit key).
    Aes128Gcm16,
    /// AES-256 in GCM mode with a 16-byte ICV (RFC 4106; IKEv2 transform `ENCR_AES_GCM_16`, 256-bit key).
    Aes256Gcm16,
    /// ChaCha20-Poly1305 (RFC 7634; IKEv2 transform `ENCR_CHACHA20_POLY1305`).
    ChaCha20Poly1305,
    /// AES-128 in CBC mode (RFC 3602; `ENCR_AES_CBC`, 128-bit key) with HMAC-SHA-256-128
    /// (RFC 4868; `AUTH_HMAC_SHA2_256_128`): strongSwan's `aes128-sha256`.
    Aes128CbcSha256,
    /// AES-256 in CBC mode (RFC 3602; `ENCR_AES_CBC`, 256-bit key) with HMAC-SHA-256-128
    /// (RFC 4868; `AUTH_HMAC_SHA2_256_128`): strongSwan's `aes256-sha256`.
    Aes256CbcSha256,
}

impl Cipher {
    /// Every supported transform, strongest-first in the order a gateway would offer them.
    pub const ALL: [Cipher; 5] = [
        Cipher::Aes256Gcm16,
        Cipher::Aes128Gcm16,
        Cipher::ChaCha20Poly1305,
        Cipher::Aes256CbcSha256,
        Cipher::Aes128CbcSha256,
    ];

    /// The strongSwan / swanctl proposal keyword.
    pub const fn name(self) -> &'static str {
        match self {
            Cipher::Aes128Gcm16 => "aes128gcm16",
            Cipher::Aes256Gcm16 => "aes256gcm16",
            Cipher::ChaCha20Poly1305 => "chacha20poly1305",
            Cipher::Aes128CbcSha256 => "aes128-sha256",
            Cipher::Aes256CbcSha256 => "aes256-sha256",
        }
    }

    /// True for the combined-mode (AEAD) transforms; false for AES-CBC + HMAC.
    pub const fn is_aead(self) -> bool {
        match self {
            Cipher::Aes128Gcm16 | Cipher::Aes256Gcm16 | Cipher::ChaCha20Poly1305 => true,
            Cipher::Aes128CbcSha256 | Cipher::Aes256CbcSha256 => false,
        }
    }

    /// Length of the encryption key proper, without the AEAD salt or the integrity key.
    pub const fn key_len(self) -> usize {
        match self {
            Cipher::Aes128Gcm16 | Cipher::Aes128CbcSha256 => 16,
            Cipher::Aes256Gcm16 | Cipher::ChaCha20Poly1305 | Cipher::Aes256CbcSha256 => 32,
        }
    }

    /// Length of the salt after the key: [`SALT_LEN`] for the AEADs, 0 otherwise.
    pub const fn salt_len(self) -> usize {
        if self.is_aead() {
            SALT_LEN
        } else {
            0
        }
    }

    /// Length of the integrity key after the encryption key: [`HMAC_SHA256_KEY_LEN`] for
    /// AES-CBC + HMAC-SHA-256, 0 for the AEADs.
    pub const fn integrity_key_len(self) -> usize {
        if self.is_aead() {
            0
        } else {
            HMAC_SHA256_KEY_LEN
        }
    }

    /// Length of the keying material an SA needs: the key followed by the 4-byte salt (AEAD),
    /// or the encryption key followed by the integrity key (AES-CBC + HMAC).
    pub const fn key_material_len(self) -> usize {
        self.key_len() + self.salt_len() + self.integrity_key_len()
    }

    /// The per-packet IV that follows the ESP header: [`IV_LEN`] (8) for the AEADs,
    /// [`CBC_IV_LEN`] (16) for AES-CBC.
    pub const fn iv_len(self) -> usize {
        if self.is_aead() {
            IV_LEN
        } else {
            CBC_IV_LEN
        }
    }

    /// Bytes in front of the inner packet: ESP header and IV (16 or 24; at most
    /// [`crate::HEADROOM`]).
    pub const fn header_len(self) -> usize {
        ESP_HEADER_LEN + self.iv_len()
    }

    /// Payload + padding + trailer is a multiple of this (RFC 4303 section 2.4): 4 for the
    /// AEADs (the ESP alignment), the 16-byte AES block for AES-CBC.
    pub const fn block_len(self) -> usize {
        if self.is_aead() {
            4
        } else {
            16
        }
    }

    /// Integrity check value length: 16 for every transform ([`ICV_LEN`]).
    pub const fn icv_len(self) -> usize {
        ICV_LEN
    }

    /// Pad bytes `seal` adds to an inner packet of `len` bytes (below [`Cipher::block_len`]).
    pub const fn pad_len(self, len: usize) -> usize {
        let b = self.block_len();
        // Written so that no `len` overflows.
        (b - (len % b + TRAILER_LEN) % b) % b
    }

    /// Bytes `seal` writes after an inner packet of `len` bytes: padding, trailer and ICV.
    pub const fn tail_len(self, len: usize) -> usize {
        self.pad_len(len) + TRAILER_LEN + ICV_LEN
    }

    /// Size of the ESP packet (the UDP payload) that carries an inner packet of `len` bytes.
    pub const fn sealed_len(self, len: usize) -> usize {
        self.header_len() + len + self.tail_len(len)
    }

    /// The largest inner packet whose ESP packet fits in `esp_len` bytes; 0 also when not even
    /// an empty one fits (below `sealed_len(0)`).
    pub const fn max_inner_len(self, esp_len: usize) -> usize {
        let b = self.block_len();
        let room = esp_len.saturating_sub(self.header_len() + ICV_LEN);
        (room - room % b).saturating_sub(TRAILER_LEN)
    }

    /// Shortest ESP packet `open` considers: header, IV and ICV around the smallest
    /// ciphertext (the 2-byte trailer for an AEAD, one 16-byte block for AES-CBC).
    pub const fn min_esp_len(self) -> usize {
        let body = if self.is_aead() {
            TRAILER_LEN
        } else {
            self.block_len()
        };
        self.header_len() + body + ICV_LEN
    }

    fn aead_algorithm(self) -> Option<&'static aead::Algorithm> {
        match self {
            Cipher::Aes128Gcm16 => Some(&aead::AES_128_GCM),
            Cipher::Aes256Gcm16 => Some(&aead::AES_256_GCM),
            Cipher::ChaCha20Poly1305 => Some(&aead::CHACHA20_POLY1305),
            Cipher::Aes128CbcSha256 | Cipher::Aes256CbcSha256 => None,
        }
    }

    fn aes_algorithm(self) -> &'static aws_lc_rs::cipher::Algorithm {
        if self.key_len() == 16 {
            &AES_128
        } else {
            &AES_256
        }
    }
}

impl fmt::Display for Cipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Cipher {
    type Err = UnknownCipher;

    /// Parses a strongSwan ESP proposal keyword, ignoring ASCII case. Also accepted:
    /// `aes128gcm128` and `aes256gcm128` (strongSwan's aliases that count the ICV in bits) and
    /// `aes128-sha2_256`, `aes256-sha2_256` (its aliases of `sha256`, HMAC-SHA-256-128).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        let is = |name: &str| t.eq_ignore_ascii_case(name);
        if is("aes128gcm16") || is("aes128gcm128") {
            Ok(Cipher::Aes128Gcm16)
        } else if is("aes256gcm16") || is("aes256gcm128") {
            Ok(Cipher::Aes256Gcm16)
        } else if is("chacha20poly1305") {
            Ok(Cipher::ChaCha20Poly1305)
        } else if is("aes128-sha256") || is("aes128-sha2_256") {
            Ok(Cipher::Aes128CbcSha256)
        } else if is("aes256-sha256") || is("aes256-sha2_256") {
            Ok(Cipher::Aes256CbcSha256)
        } else {
            Err(UnknownCipher {
                name: t.chars().take(64).collect(),
            })
        }
    }
}

/// A cipher name that is not one of [`Cipher::ALL`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownCipher {
    /// The name as given (trimmed, at most 64 characters).
    pub name: String,
}

impl fmt::Display for UnknownCipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown ESP cipher {:?}; known ciphers are ", self.name)?;
        for (i, c) in Cipher::ALL.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            f.write_str(c.name())?;
        }
        Ok(())
    }
}

impl std::error::Error for UnknownCipher {}

/// How a transform's keying material is made up, for messages: `32 key + 4 salt` or
/// `32 encryption key + 32 integrity key`.
pub(crate) struct KeyLayout(pub(crate) Cipher);

impl fmt::Display for KeyLayout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = self.0;
        if c.is_aead() {
            write!(f, "{} key + {} salt", c.key_len(), c.salt_len())
        } else {
            write!(
                f,
                "{} encryption key + {} integrity key",
                c.key_len(),
                c.integrity_key_len()
            )
        }
    }
}

/// Keying material of one SA direction: the cipher key followed by the 4-byte salt (AEAD), or
/// the encryption key followed by the integrity key (AES-CBC + HMAC).
///
/// Zeroized on drop; its `Debug` output is `<redacted>`; errors about it never echo it.
#[derive(Clone)]
pub struct KeyMaterial {
    bytes: [u8; MAX_KEY_MATERIAL_LEN],
    len: usize,
}

impl KeyMaterial {
    /// Copies `bytes`, which must be exactly `cipher.key_material_len()` long.
    pub fn new(cipher: Cipher, bytes: &[u8]) -> Result<KeyMaterial, KeyError> {
        let expected = cipher.key_material_len();
        if bytes.len() != expected {
            return Err(KeyError::WrongLength {
                cipher,
                expected,
                got: bytes.len(),
            });
        }
        let mut km = KeyMaterial {
            bytes: [0; MAX_KEY_MATERIAL_LEN],
            len: expected,
        };
        km.bytes[..expected].copy_from_slice(bytes);
        Ok(km)
    }

    /// Parses hex (`0x...` or plain; ASCII whitespace and colons are ignored anywhere) into
    /// keying material for `cipher`: `cipher.key_material_len()` bytes, key then salt (AEAD)
    /// or encryption key then integrity key (AES-CBC + HMAC).
    pub fn from_hex(cipher: Cipher, text: &str) -> Result<KeyMaterial, KeyError> {
        let expected = cipher.key_material_len();
        let trimmed = text.trim_start();
        let skipped = text.len() - trimmed.len();
        let (body, prefix) = match trimmed.get(..2) {
            Some("0x") | Some("0X") => (&trimmed[2..], 2),
            _ => (trimmed, 0),
        };
        // Written straight into the result so that every path (errors included) zeroizes it.
        let mut km = KeyMaterial {
            bytes: [0; MAX_KEY_MATERIAL_LEN],
            len: 0,
        };
        let mut digits = 0usize;
        for (i, c) in body.char_indices() {
            if c.is_ascii_whitespace() || c == ':' {
                continue;
            }
            let Some(v) = c.to_digit(16) else {
                let position = text[..skipped + prefix + i].chars().count() + 1;
                return Err(KeyError::InvalidHexDigit { position });
            };
            let byte = digits / 2;
            if byte < MAX_KEY_MATERIAL_LEN {
                // `v` < 16, so the cast is lossless.
                km.bytes[byte] |= (v as u8) << if digits & 1 == 0 { 4 } else { 0 };
            }
            digits += 1;
        }
        if digits & 1 != 0 {
            return Err(KeyError::OddDigitCount);
        }
        let got = digits / 2;
        if got != expected {
            return Err(KeyError::WrongLength {
                cipher,
                expected,
                got,
            });
        }
        km.len = got;
        Ok(km)
    }

    /// Number of bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True only for material that holds nothing (never produced by the constructors).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The bytes, when they have `cipher`'s length.
    fn for_cipher(&self, cipher: Cipher) -> Option<&[u8]> {
        (self.len == cipher.key_material_len()).then(|| &self.bytes[..self.len])
    }

    /// The encryption key (without salt or integrity key).
    fn key(&self, cipher: Cipher) -> Option<&[u8]> {
        self.for_cipher(cipher).map(|b| &b[..cipher.key_len()])
    }

    /// The AEAD salt that follows the key.
    fn salt(&self, cipher: Cipher) -> Option<[u8; SALT_LEN]> {
        if cipher.salt_len() != SALT_LEN {
            return None;
        }
        let b = self.for_cipher(cipher)?;
        b.get(cipher.key_len()..cipher.key_len() + SALT_LEN)?
            .try_into()
            .ok()
    }

    /// The integrity key that follows the encryption key.
    fn integrity_key(&self, cipher: Cipher) -> Option<&[u8]> {
        let b = self.for_cipher(cipher)?;
        b.get(cipher.key_len()..cipher.key_len() + cipher.integrity_key_len())
    }
}

impl Drop for KeyMaterial {
    fn drop(&mut self) {
        self.bytes.zeroize();
    }
}

impl fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Why keying material was refused. Never contains the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyError {
    /// A character that is not a hex digit, whitespace or colon, at this 1-based position.
    InvalidHexDigit { position: usize },
    /// An odd number of hex digits.
    OddDigitCount,
    /// The material does not have the length the cipher needs.
    WrongLength {
        cipher: Cipher,
        expected: usize,
        got: usize,
    },
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyError::InvalidHexDigit { position } => {
                write!(
                    f,
                    "key is not hex: invalid character at position {position}"
                )
            }
            KeyError::OddDigitCount => f.write_str("key is not hex: odd number of hex digits"),
            KeyError::WrongLength {
                cipher,
                expected,
                got,
            } => write!(
                f,
                "key for {cipher} must be {expected} bytes ({}), got {got}",
                KeyLayout(*cipher)
            ),
        }
    }
}

impl std::error::Error for KeyError {}

/// The AAD of RFC 4106 section 5 / RFC 7634 section 2.1, in a fixed buffer.
pub(crate) struct EspAad {
    buf: [u8; 12],
    len: usize,
}

impl EspAad {
    /// `SPI || seq32` without ESN, `SPI || seq_hi32 || seq_lo32` with ESN.
    pub(crate) fn new(spi: u32, seq: u64, esn: bool) -> EspAad {
        let mut buf = [0; 12];
        buf[..4].copy_from_slice(&spi.to_be_bytes());
        if esn {
            buf[4..12].copy_from_slice(&seq.to_be_bytes());
            EspAad { buf, len: 12 }
        } else {
            // Without ESN only the low 32 bits exist (callers never exceed 2^32 - 1).
            buf[4..8].copy_from_slice(&(seq as u32).to_be_bytes());
            EspAad { buf, len: 8 }
        }
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// The crypto library refused to work: a wrong tag or ICV, a malformed input, or an internal
/// failure on seal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CryptoFailure;

/// A keyed AEAD plus the salt: everything that seals or opens one ESP payload.
pub(crate) struct EspAead {
    key: LessSafeKey,
    salt: [u8; SALT_LEN],
}

impl EspAead {
    /// `km` must have the cipher's length (checked by the SA constructors).
    pub(crate) fn new(cipher: Cipher, km: &KeyMaterial) -> Result<EspAead, CryptoFailure> {
        let algorithm = cipher.aead_algorithm().ok_or(CryptoFailure)?;
        let key = km.key(cipher).ok_or(CryptoFailure)?;
        let salt = km.salt(cipher).ok_or(CryptoFailure)?;
        let key = UnboundKey::new(algorithm, key).map_err(|_| CryptoFailure)?;
        Ok(EspAead {
            key: LessSafeKey::new(key),
            salt,
        })
    }

    /// `salt || iv` (RFC 4106 section 4, RFC 7634 section 2).
    pub(crate) fn nonce(&self, iv: &[u8; IV_LEN]) -> Nonce {
        let mut n = [0u8; SALT_LEN + IV_LEN];
        n[..SALT_LEN].copy_from_slice(&self.salt);
        n[SALT_LEN..].copy_from_slice(iv);
        Nonce::assume_unique_for_key(n)
    }

    /// Encrypts `in_out` in place and returns the ICV.
    pub(crate) fn seal(
        &self,
        iv: &[u8; IV_LEN],
        aad: &[u8],
        in_out: &mut [u8],
    ) -> Result<[u8; ICV_LEN], CryptoFailure> {
        let tag = self
            .key
            .seal_in_place_separate_tag(self.nonce(iv), Aad::from(aad), in_out)
            .map_err(|_| CryptoFailure)?;
        tag.as_ref().try_into().map_err(|_| CryptoFailure)
    }

    /// Verifies `icv` and decrypts `in_out` in place. On failure `in_out` holds garbage.
    pub(crate) fn open(
        &self,
        iv: &[u8; IV_LEN],
        aad: &[u8],
        icv: &[u8],
        in_out: &mut [u8],
    ) -> Result<(), CryptoFailure> {
        self.key
            .open_in_place_separate_tag(self.nonce(iv), Aad::from(aad), icv, in_out)
            .map(|_| ())
            .map_err(|_| CryptoFailure)
    }
}

impl Drop for EspAead {
    fn drop(&mut self) {
        // aws-lc cleanses its own key schedule when the key is freed; the salt is ours.
        self.salt.zeroize();
    }
}

/// Where an outbound AES-CBC SA takes its IVs from: `AES-ECB(iv_key, seq || 0^64)`, under a
/// per-SA key from the CSPRNG.
struct IvSource {
    key: EncryptingKey,
    /// Tests only: this IV for every packet instead (to reproduce published ESP packets).
    #[cfg(test)]
    fixed: Option<[u8; CBC_IV_LEN]>,
}

impl IvSource {
    fn iv(&self, seq: u64) -> Result<[u8; CBC_IV_LEN], CryptoFailure> {
        #[cfg(test)]
        if let Some(iv) = self.fixed {
            return Ok(iv);
        }
        let mut block = [0u8; CBC_IV_LEN];
        block[..8].copy_from_slice(&seq.to_be_bytes());
        self.key
            .less_safe_encrypt(&mut block, EncryptionContext::None)
            .map_err(|_| CryptoFailure)?;
        Ok(block)
    }

    /// IVs under the ECB key `bytes` (a key of `cipher`'s AES size).
    fn keyed(cipher: Cipher, bytes: &[u8]) -> Result<IvSource, CryptoFailure> {
        let key =
            UnboundCipherKey::new(cipher.aes_algorithm(), bytes).map_err(|_| CryptoFailure)?;
        Ok(IvSource {
            key: EncryptingKey::ecb(key).map_err(|_| CryptoFailure)?,
            #[cfg(test)]
            fixed: None,
        })
    }

    /// IVs under an ECB key drawn from the CSPRNG.
    fn random(cipher: Cipher) -> Result<IvSource, CryptoFailure> {
        let mut bytes = [0u8; 32];
        let bytes = &mut bytes[..cipher.key_len()];
        let source = rand::fill(bytes)
            .map_err(|_| CryptoFailure)
            .and_then(|()| IvSource::keyed(cipher, bytes));
        bytes.zeroize();
        source
    }
}

/// The AES key of `km`, unbound, and the HMAC-SHA-256 key. `km` must have the cipher's length
/// (checked by the SA constructors).
fn cbc_hmac_keys(
    cipher: Cipher,
    km: &KeyMaterial,
) -> Result<(UnboundCipherKey, hmac::Key), CryptoFailure> {
    if cipher.is_aead() {
        return Err(CryptoFailure);
    }
    let enc = km.key(cipher).ok_or(CryptoFailure)?;
    let integ = km.integrity_key(cipher).ok_or(CryptoFailure)?;
    let unbound = UnboundCipherKey::new(cipher.aes_algorithm(), enc).map_err(|_| CryptoFailure)?;
    Ok((unbound, hmac::Key::new(hmac::HMAC_SHA256, integ)))
}

/// HMAC-SHA-256 over `authenticated` (SPI .. end of ciphertext), then `seq_hi` (the high half
/// of an extended sequence number, never sent), truncated to its first 16 bytes (RFC 4868).
fn hmac_sha256_128(mac: &hmac::Key, authenticated: &[u8], seq_hi: Option<u32>) -> [u8; ICV_LEN] {
    let mut ctx = hmac::Context::with_key(mac);
    ctx.update(authenticated);
    if let Some(hi) = seq_hi {
        ctx.update(&hi.to_be_bytes());
    }
    let tag = ctx.sign();
    let mut icv = [0u8; ICV_LEN];
    icv.copy_from_slice(&tag.as_ref()[..ICV_LEN]);
    icv
}

/// AES-CBC (RFC 3602) + HMAC-SHA-256-128 (RFC 4868), keyed to seal.
pub(crate) struct CbcHmacSealer {
    key: EncryptingKey,
    ivs: IvSource,
    mac: hmac::Key,
}

impl CbcHmacSealer {
    /// Also draws the IV key from the CSPRNG.
    pub(crate) fn new(cipher: Cipher, km: &KeyMaterial) -> Result<CbcHmacSealer, CryptoFailure> {
        let (unbound, mac) = cbc_hmac_keys(cipher, km)?;
        Ok(CbcHmacSealer {
            key: EncryptingKey::cbc(unbound).map_err(|_| CryptoFailure)?,
            ivs: IvSource::random(cipher)?,
            mac,
        })
    }

    /// The IV of packet `seq`.
    pub(crate) fn iv(&self, seq: u64) -> Result<[u8; CBC_IV_LEN], CryptoFailure> {
        self.ivs.iv(seq)
    }

    /// Raw (unpadded) CBC encryption of whole blocks in place.
    pub(crate) fn encrypt(
        &self,
        iv: &[u8; CBC_IV_LEN],
        in_out: &mut [u8],
    ) -> Result<(), CryptoFailure> {
        if !in_out.len().is_multiple_of(CBC_IV_LEN) {
            return Err(CryptoFailure);
        }
        self.key
            .less_safe_encrypt(in_out, EncryptionContext::Iv128((*iv).into()))
            .map(|_| ())
            .map_err(|_| CryptoFailure)
    }

    /// The ICV of `authenticated` (and `seq_hi`, with ESN).
    pub(crate) fn icv(&self, authenticated: &[u8], seq_hi: Option<u32>) -> [u8; ICV_LEN] {
        hmac_sha256_128(&self.mac, authenticated, seq_hi)
    }

    /// Tests only: IVs from an ECB key of our choosing.
    #[cfg(test)]
    pub(crate) fn set_iv_key(&mut self, cipher: Cipher, iv_key: &[u8]) {
        self.ivs = IvSource::keyed(cipher, iv_key).expect("IV key");
    }

    /// Tests only: this IV for every packet.
    #[cfg(test)]
    pub(crate) fn set_fixed_iv(&mut self, iv: [u8; CBC_IV_LEN]) {
        self.ivs.fixed = Some(iv);
    }
}

/// AES-CBC (RFC 3602) + HMAC-SHA-256-128 (RFC 4868), keyed to open.
pub(crate) struct CbcHmacOpener {
    key: DecryptingKey,
    mac: hmac::Key,
}

impl CbcHmacOpener {
    pub(crate) fn new(cipher: Cipher, km: &KeyMaterial) -> Result<CbcHmacOpener, CryptoFailure> {
        let (unbound, mac) = cbc_hmac_keys(cipher, km)?;
        Ok(CbcHmacOpener {
            key: DecryptingKey::cbc(unbound).map_err(|_| CryptoFailure)?,
            mac,
        })
    }

    /// Raw (unpadded) CBC decryption of whole blocks in place.
    pub(crate) fn decrypt(
        &self,
        iv: &[u8; CBC_IV_LEN],
        in_out: &mut [u8],
    ) -> Result<(), CryptoFailure> {
        if !in_out.len().is_multiple_of(CBC_IV_LEN) {
            return Err(CryptoFailure);
        }
        self.key
            .decrypt(in_out, DecryptionContext::Iv128((*iv).into()))
            .map(|_| ())
            .map_err(|_| CryptoFailure)
    }

    /// Compares the ICV of `authenticated` (and `seq_hi`) with `icv`, in constant time.
    pub(crate) fn verify(
        &self,
        authenticated: &[u8],
        seq_hi: Option<u32>,
        icv: &[u8],
    ) -> Result<(), CryptoFailure> {
        let want = hmac_sha256_128(&self.mac, authenticated, seq_hi);
        constant_time::verify_slices_are_equal(&want, icv).map_err(|_| CryptoFailure)
    }
}

/// The keyed transform of one SA direction. The AES-CBC keys (AES schedules and HMAC states,
/// about 1-2 KiB) are boxed: allocated once when the SA is built.
pub(crate) enum EspCrypto {
    Aead(EspAead),
    CbcSeal(Box<CbcHmacSealer>),
    CbcOpen(Box<CbcHmacOpener>),
}

impl EspCrypto {
    /// Keys `cipher` for sealing (`seal`) or opening. `km` must have the cipher's length.
    pub(crate) fn new(
        cipher: Cipher,
        km: &KeyMaterial,
        seal: bool,
    ) -> Result<EspCrypto, CryptoFailure> {
        if cipher.is_aead() {
            EspAead::new(cipher, km).map(EspCrypto::Aead)
        } else if seal {
            CbcHmacSealer::new(cipher, km).map(|s| EspCrypto::CbcSeal(Box::new(s)))
        } else {
            CbcHmacOpener::new(cipher, km).map(|o| EspCrypto::CbcOpen(Box::new(o)))
        }
    }

    /// Completes the ESP packet `pkt` (SPI to ICV) of packet number `seq`: SPI, low sequence
    /// number and the plaintext (payload, padding, trailer) are in place; writes the IV,
    /// encrypts and writes the ICV.
    pub(crate) fn seal(
        &self,
        spi: u32,
        seq: u64,
        esn: bool,
        pkt: &mut [u8],
    ) -> Result<(), CryptoFailure> {
        let icv_at = pkt.len().checked_sub(ICV_LEN).ok_or(CryptoFailure)?;
        let (body, icv_out) = pkt.split_at_mut(icv_at);
        let icv = match self {
            EspCrypto::Aead(aead) => {
                let iv = seq.to_be_bytes();
                let (header, plaintext) = split_header(body, IV_LEN)?;
                header[ESP_HEADER_LEN..].copy_from_slice(&iv);
                aead.seal(&iv, EspAad::new(spi, seq, esn).as_bytes(), plaintext)?
            }
            EspCrypto::CbcSeal(cbc) => {
                let iv = cbc.iv(seq)?;
                let (header, plaintext) = split_header(body, CBC_IV_LEN)?;
                header[ESP_HEADER_LEN..].copy_from_slice(&iv);
                cbc.encrypt(&iv, plaintext)?;
                cbc.icv(body, esn.then_some((seq >> 32) as u32))
            }
            EspCrypto::CbcOpen(_) => return Err(CryptoFailure),
        };
        icv_out.copy_from_slice(&icv);
        Ok(())
    }

    /// Verifies the ICV of the ESP packet `pkt` (SPI to ICV) for packet number `seq`, then
    /// decrypts its payload in place. AES-CBC touches nothing unless the ICV verifies; an AEAD
    /// leaves garbage on failure.
    pub(crate) fn open(
        &self,
        spi: u32,
        seq: u64,
        esn: bool,
        pkt: &mut [u8],
    ) -> Result<(), CryptoFailure> {
        let icv_at = pkt.len().checked_sub(ICV_LEN).ok_or(CryptoFailure)?;
        let (body, icv) = pkt.split_at_mut(icv_at);
        match self {
            EspCrypto::Aead(aead) => {
                let (header, ciphertext) = split_header(body, IV_LEN)?;
                let iv: [u8; IV_LEN] = header[ESP_HEADER_LEN..]
                    .try_into()
                    .map_err(|_| CryptoFailure)?;
                aead.open(&iv, EspAad::new(spi, seq, esn).as_bytes(), icv, ciphertext)
            }
            EspCrypto::CbcOpen(cbc) => {
                // Encrypt-then-MAC: nothing is decrypted before the ICV verifies.
                cbc.verify(body, esn.then_some((seq >> 32) as u32), icv)?;
                let (header, ciphertext) = split_header(body, CBC_IV_LEN)?;
                let iv: [u8; CBC_IV_LEN] = header[ESP_HEADER_LEN..]
                    .try_into()
                    .map_err(|_| CryptoFailure)?;
                cbc.decrypt(&iv, ciphertext)
            }
            EspCrypto::CbcSeal(_) => Err(CryptoFailure),
        }
    }

    /// Tests only: the AES-CBC sealer, to fix its IVs.
    #[cfg(test)]
    pub(crate) fn cbc_sealer_mut(&mut self) -> Option<&mut CbcHmacSealer> {
        match self {
            EspCrypto::CbcSeal(s) => Some(s),
            _ => None,
        }
    }
}

/// `(ESP header + IV, rest)` of `body`.
fn split_header(body: &mut [u8], iv_len: usize) -> Result<(&mut [u8], &mut [u8]), CryptoFailure> {
    let at = ESP_HEADER_LEN + iv_len;
    if body.len() < at {
        return Err(CryptoFailure);
    }
    Ok(body.split_at_mut(at))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn unhex(s: &str) -> Vec<u8> {
        let digits: Vec<u8> = s
            .bytes()
            .filter(|b| !b.is_ascii_whitespace())
            .map(|b| (b as char).to_digit(16).expect("hex digit") as u8)
            .collect();
        assert!(digits.len() & 1 == 0, "odd hex");
        digits.chunks(2).map(|p| p[0] << 4 | p[1]).collect()
    }

    fn iv8(b: &[u8]) -> [u8; 8] {
        b.try_into().unwrap()
    }

    /// Runs one AEAD known answer through our nonce construction: the 12-byte GCM/ChaCha IV of
    /// the published vector is split into salt (first 4 bytes, appended to the key as in
    /// RFC 4106 section 8.1) and the 8-byte per-packet IV.
    fn known_answer(
        cipher: Cipher,
        key: &str,
        iv12: &str,
        aad: &str,
        pt: &str,
        ct: &str,
        tag: &str,
    ) {
        let iv12 = unhex(iv12);
        let mut material = unhex(key);
        material.extend_from_slice(&iv12[..4]);
        let km = KeyMaterial::new(cipher, &material).unwrap();
        let aead = EspAead::new(cipher, &km).unwrap();
        let iv = iv8(&iv12[4..]);
        assert_eq!(aead.nonce(&iv).as_ref(), &iv12[..]);
        let aad = unhex(aad);
        let mut buf = unhex(pt);
        let icv = aead.seal(&iv, &aad, &mut buf).unwrap();
        assert_eq!(buf, unhex(ct), "{cipher} ciphertext");
        assert_eq!(icv.to_vec(), unhex(tag), "{cipher} tag");
        aead.open(&iv, &aad, &icv, &mut buf).unwrap();
        assert_eq!(buf, unhex(pt));
        let mut bad = icv;
        bad[0] ^= 1;
        let mut buf = unhex(ct);
        assert_eq!(aead.open(&iv, &aad, &bad, &mut buf), Err(CryptoFailure));
    }

    const GCM_K: &str = "feffe9928665731c6d6a8f9467308308";
    const GCM_IV: &str = "cafebabefacedbaddecaf888";
    const GCM_P: &str = "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72\
                         1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b391aafd255";
    const GCM_A: &str = "feedfacedeadbeeffeedfacedeadbeefabaddad2";

    /// McGrew & Viega, "The Galois/Counter Mode of Operation", test cases 3 and 4 (AES-128).
    #[test]
    fn gcm_spec_test_cases_3_and_4() {
        let c3 = "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e\
                  21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091473f5985";
        known_answer(
            Cipher::Aes128Gcm16,
            GCM_K,
            GCM_IV,
            "",
            GCM_P,
            c3,
            "4d5c2af327cd64a62cf35abd2ba6fab4",
        );
        known_answer(
            Cipher::Aes128Gcm16,
            GCM_K,
            GCM_IV,
            GCM_A,
            &GCM_P[..120],
            &c3[..120],
            "5bc94fbc3221a5db94fae95ae7121a47",
        );
    }

    /// Same document, test cases 15 and 16 (AES-256).
    #[test]
    fn gcm_spec_test_cases_15_and_16() {
        let k = format!("{GCM_K}{GCM_K}");
        let c15 = "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa\
                   8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662898015ad";
        known_answer(
            Cipher::Aes256Gcm16,
            &k,
            GCM_IV,
            "",
            GCM_P,
            c15,
            "b094dac5d93471bdec1a502270e3cc6c",
        );
        known_answer(
            Cipher::Aes256Gcm16,
            &k,
            GCM_IV,
            GCM_A,
            &GCM_P[..120],
            &c15[..120],
            "76fc6ece0f4e1768cddf8853bb2d551b",
        );
    }

    /// RFC 8439 section 2.8.2. Its nonce is `07000000 || 4041424344454647` (our salt || IV),
    /// and its 12-byte AAD happens to have exactly the ESN shape: SPI 0x50515253 followed by
    /// the 64-bit sequence number 0xc0c1c2c3c4c5c6c7, so [`EspAad`] must rebuild it.
    #[test]
    fn rfc8439_aead_vector() {
        let aad = EspAad::new(0x5051_5253, 0xc0c1_c2c3_c4c5_c6c7, true);
        assert_eq!(aad.as_bytes(), &unhex("50515253c0c1c2c3c4c5c6c7")[..]);
        let pt = hex_of(
            b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for \
              the future, sunscreen would be it.",
        );
        known_answer(
            Cipher::ChaCha20Poly1305,
            "808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f",
            "070000004041424344454647",
            "50515253c0c1c2c3c4c5c6c7",
            &pt,
            "d31a8d34648e60db7b86afbc53ef7ec2a4aded51296e08fea9e2b5a736ee62d6\
             3dbea45e8ca9671282fafb69da92728b1a71de0a9e060b2905d6a5b67ecd3b36\
             92ddbd7f2d778b8c9803aee328091b58fab324e4fad675945585808b4831d7bc\
             3ff4def08e4b7a9de576d26586cec64b6116",
            "1ae10b594f09e26a7e902ecbd0600691",
        );
    }

    fn hex_of(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn aad_layouts() {
        assert_eq!(
            EspAad::new(0x0102_0304, 5, false).as_bytes(),
            &[1, 2, 3, 4, 0, 0, 0, 5]
        );
        assert_eq!(
            EspAad::new(0x0102_0304, 0x0000_0007_0000_0005, true).as_bytes(),
            &[1, 2, 3, 4, 0, 0, 0, 7, 0, 0, 0, 5]
        );
    }

    #[test]
    fn cipher_names_round_trip() {
        for c in Cipher::ALL {
            assert_eq!(c.name().parse::<Cipher>(), Ok(c));
            assert_eq!(c.to_string(), c.name());
        }
        assert_eq!("AES256GCM16".parse::<Cipher>(), Ok(Cipher::Aes256Gcm16));
        assert_eq!(" aes128gcm128 ".parse::<Cipher>(), Ok(Cipher::Aes128Gcm16));
        // strongSwan's spelling of AES-CBC with HMAC-SHA-256-128, and its alias.
        for (name, c) in [
            ("aes256-sha256", Cipher::Aes256CbcSha256),
            ("AES128-SHA256", Cipher::Aes128CbcSha256),
            ("aes256-sha2_256", Cipher::Aes256CbcSha256),
            (" aes128-sha2_256", Cipher::Aes128CbcSha256),
        ] {
            assert_eq!(name.parse::<Cipher>(), Ok(c), "{name}");
        }
        for unknown in [
            "aes256-sha1",
            "aes256",
            "aes256-sha256-modp2048",
            "aes256sha256",
            "",
        ] {
            let err = unknown.parse::<Cipher>().unwrap_err();
            let msg = err.to_string();
            assert!(msg.contains(&format!("{unknown:?}")), "{msg}");
            for c in Cipher::ALL {
                assert!(msg.contains(c.name()), "{msg}");
            }
        }
        assert_eq!(
            "3des".parse::<Cipher>().unwrap_err().to_string(),
            "unknown ESP cipher \"3des\"; known ciphers are aes256gcm16, aes128gcm16, \
             chacha20poly1305, aes256-sha256, aes128-sha256"
        );
    }

    #[test]
    fn key_lengths() {
        assert_eq!(Cipher::Aes128Gcm16.key_material_len(), 20);
        assert_eq!(Cipher::Aes256Gcm16.key_material_len(), 36);
        assert_eq!(Cipher::ChaCha20Poly1305.key_material_len(), 36);
        // RFC 7296 section 2.17: encryption key, then integrity key (RFC 4868: 32 bytes).
        assert_eq!(Cipher::Aes128CbcSha256.key_material_len(), 16 + 32);
        assert_eq!(Cipher::Aes256CbcSha256.key_material_len(), 32 + 32);
        assert_eq!(MAX_KEY_MATERIAL_LEN, 64);
        for c in Cipher::ALL {
            assert!(c.key_material_len() <= MAX_KEY_MATERIAL_LEN);
            assert_eq!(c.salt_len() == SALT_LEN, c.is_aead());
            assert_eq!(c.integrity_key_len() == HMAC_SHA256_KEY_LEN, !c.is_aead());
        }
    }

    #[test]
    fn cbc_key_material_order() {
        let c = Cipher::Aes256CbcSha256;
        let bytes: Vec<u8> = (0..64).collect();
        let km = KeyMaterial::new(c, &bytes).unwrap();
        assert_eq!(km.key(c), Some(&bytes[..32]));
        assert_eq!(km.integrity_key(c), Some(&bytes[32..]));
        assert_eq!(km.salt(c), None);
        let c = Cipher::Aes128CbcSha256;
        let km = KeyMaterial::from_hex(c, &hex_of(&bytes[..48])).unwrap();
        assert_eq!(km.key(c), Some(&bytes[..16]));
        assert_eq!(km.integrity_key(c), Some(&bytes[16..48]));
    }

    #[test]
    fn key_from_hex_forms() {
        let plain = "000102030405060708090a0b0c0d0e0f10111213";
        let a = KeyMaterial::from_hex(Cipher::Aes128Gcm16, plain).unwrap();
        let b = KeyMaterial::from_hex(
            Cipher::Aes128Gcm16,
            "  0x00:01:02:03 04050607\n08090A0B0C0D0E0F 1011 1213 ",
        )
        .unwrap();
        let c = KeyMaterial::from_hex(Cipher::Aes128Gcm16, &format!("0X{plain}")).unwrap();
        for k in [&a, &b, &c] {
            assert_eq!(k.len(), 20);
            let c = Cipher::Aes128Gcm16;
            assert_eq!(k.key(c), Some(&unhex(&plain[..32])[..]));
            assert_eq!(k.salt(c), Some([0x10, 0x11, 0x12, 0x13]));
            assert_eq!(k.integrity_key(c), Some(&[][..]));
            assert_eq!(
                k.key(Cipher::Aes256Gcm16),
                None,
                "wrong length for that cipher"
            );
        }
    }

    #[test]
    fn key_errors_do_not_echo_the_key() {
        let secret = "deadbeefcafef00d";
        let e = KeyMaterial::from_hex(Cipher::Aes256Gcm16, secret).unwrap_err();
        assert_eq!(
            e,
            KeyError::WrongLength {
                cipher: Cipher::Aes256Gcm16,
                expected: 36,
                got: 8
            }
        );
        let msg = e.to_string();
        assert_eq!(
            msg,
            "key for aes256gcm16 must be 36 bytes (32 key + 4 salt), got 8"
        );
        assert!(!msg.contains("dead"));

        let e = KeyMaterial::from_hex(Cipher::Aes128Gcm16, "0xdeadbeefZcafe").unwrap_err();
        assert_eq!(e, KeyError::InvalidHexDigit { position: 11 });
        assert!(!e.to_string().contains("dead"));
        assert!(!e.to_string().contains('Z'));

        let e = KeyMaterial::from_hex(Cipher::Aes128Gcm16, "abc").unwrap_err();
        assert_eq!(e, KeyError::OddDigitCount);

        // Far too long: counted, not stored past the buffer.
        let long = "ab".repeat(100);
        let e = KeyMaterial::from_hex(Cipher::ChaCha20Poly1305, &long).unwrap_err();
        assert_eq!(
            e,
            KeyError::WrongLength {
                cipher: Cipher::ChaCha20Poly1305,
                expected: 36,
                got: 100
            }
        );
        assert!(KeyMaterial::new(Cipher::Aes128Gcm16, &[0; 36]).is_err());
        let e = KeyMaterial::from_hex(Cipher::Aes256CbcSha256, &"ab".repeat(36)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "key for aes256-sha256 must be 64 bytes (32 encryption key + 32 integrity key), got 36"
        );
        let e = KeyMaterial::new(Cipher::Aes128CbcSha256, &[0xab; 64]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "key for aes128-sha256 must be 48 bytes (16 encryption key + 32 integrity key), got 64"
        );
        // The longest material fits; one byte more is counted but not stored.
        assert!(KeyMaterial::from_hex(Cipher::Aes256CbcSha256, &"ab".repeat(64)).is_ok());
        assert_eq!(
            KeyMaterial::from_hex(Cipher::Aes256CbcSha256, &"ab".repeat(65)).unwrap_err(),
            KeyError::WrongLength {
                cipher: Cipher::Aes256CbcSha256,
                expected: 64,
                got: 65
            }
        );
        // Multi-byte characters are reported by character position, not byte offset.
        let e = KeyMaterial::from_hex(Cipher::Aes128Gcm16, "ab é").unwrap_err();
        assert_eq!(e, KeyError::InvalidHexDigit { position: 4 });
    }

    #[test]
    fn key_debug_is_redacted() {
        let km = KeyMaterial::new(Cipher::Aes128Gcm16, &[0xab; 20]).unwrap();
        assert_eq!(format!("{km:?}"), "<redacted>");
        assert_eq!(format!("{:?}", Some(&km)), "Some(<redacted>)");
    }

    /// AES-CBC + HMAC keyed from `enc || integ`, in both directions.
    fn cbc_pair(cipher: Cipher, enc: &[u8], integ: &[u8]) -> (CbcHmacSealer, CbcHmacOpener) {
        let km = KeyMaterial::new(cipher, &[enc, integ].concat()).unwrap();
        (
            CbcHmacSealer::new(cipher, &km).unwrap(),
            CbcHmacOpener::new(cipher, &km).unwrap(),
        )
    }

    /// RFC 3602 section 4, cases 1 to 4 (AES-128-CBC), through the raw CBC glue: the IV is the
    /// caller's, no padding is added, the ciphertext replaces the plaintext in place.
    #[test]
    fn rfc3602_aes_cbc_test_cases() {
        let cases: [(&str, &str, Vec<u8>, &str); 4] = [
            (
                "06a9214036b8a15b512e03d534120006",
                "3dafba429d9eb430b422da802c9fac41",
                b"Single block msg".to_vec(),
                "e353779c1079aeb82708942dbe77181a",
            ),
            (
                "c286696d887c9aa0611bbb3e2025a45a",
                "562e17996d093d28ddb3ba695a2e6f58",
                (0u8..32).collect(),
                "d296cd94c2cccf8a3a863028b5e1dc0a7586602d253cfff91b8266bea6d61ab1",
            ),
            (
                "6c3ea0477630ce21a2ce334aa746c2cd",
                "c782dc4c098c66cbd9cd27d825682c81",
                b"This is a 48-byte message (exactly 3 AES blocks)".to_vec(),
                "d0a02b3836451753d493665d33f0e8862dea54cdb293abc7506939276772f8d5\
                 021c19216bad525c8579695d83ba2684",
            ),
            (
                "56e47a38c5598974bc46903dba290349",
                "8ce82eefbea0da3c44699ed7db51b7d9",
                (0xa0u8..0xe0).collect(),
                "c30e32ffedc0774e6aff6af0869f71aa0f3af07a9a31a9c684db207eb0ef8e4e\
                 35907aa632c3ffdf868bb7b29d3d46ad83ce9f9a102ee99d49a53e87f4c3da55",
            ),
        ];
        for (key, iv, pt, ct) in cases {
            let (tx, rx) = cbc_pair(Cipher::Aes128CbcSha256, &unhex(key), &[0; 32]);
            let iv: [u8; 16] = unhex(iv).try_into().unwrap();
            let mut buf = pt.clone();
            tx.encrypt(&iv, &mut buf).unwrap();
            assert_eq!(buf, unhex(ct));
            rx.decrypt(&iv, &mut buf).unwrap();
            assert_eq!(buf, pt);
            // Raw CBC: only whole blocks.
            assert_eq!(tx.encrypt(&iv, &mut buf[..15]), Err(CryptoFailure));
            assert_eq!(rx.decrypt(&iv, &mut [0; 17]), Err(CryptoFailure));
        }
    }

    /// RFC 4868 section 2.7.2.1, AUTH256-1 to AUTH256-3: HMAC-SHA-256 with 32-byte keys,
    /// truncated to the leftmost 128 bits. The full outputs (computed independently with
    /// Python's `hmac`) show that the ICV is their first half.
    #[test]
    fn rfc4868_hmac_sha256_128_vectors() {
        let cases: [(Vec<u8>, Vec<u8>, &str, &str); 3] = [
            (
                vec![0x0b; 32],
                b"Hi There".to_vec(),
                "198a607eb44bfbc69903a0f1cf2bbdc5",
                "ba0aa3f3d9ae3c1c7a3b1696a0b68cf7",
            ),
            (
                b"JefeJefeJefeJefeJefeJefeJefeJefe".to_vec(),
                b"what do ya want for nothing?".to_vec(),
                "167f928588c5cc2eef8e3093caa0e87c",
                "9ff566a14794aa61648d81621a2a40c6",
            ),
            (
                vec![0xaa; 32],
                vec![0xdd; 50],
                "cdcb1220d1ecccea91e53aba3092f962",
                "e549fe6ce9ed7fdc43191fbde45c30b0",
            ),
        ];
        for (key, data, icv, rest) in cases {
            for cipher in [Cipher::Aes128CbcSha256, Cipher::Aes256CbcSha256] {
                let (tx, rx) = cbc_pair(cipher, &vec![0; cipher.key_len()], &key);
                assert_eq!(hex_of(&tx.icv(&data, None)), icv);
                let full = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, &key), &data);
                assert_eq!(hex_of(full.as_ref()), format!("{icv}{rest}"));
                let want = unhex(icv);
                rx.verify(&data, None, &want).unwrap();
                let mut bad = want.clone();
                bad[15] ^= 0x80;
                assert_eq!(rx.verify(&data, None, &bad), Err(CryptoFailure));
                // The full 32-byte tag, or a shorter prefix, is not the ICV.
                assert!(rx.verify(&data, None, full.as_ref()).is_err());
                assert!(rx.verify(&data, None, &want[..12]).is_err());
            }
        }
    }

    /// With ESN the high half of the sequence number is authenticated as if it followed the
    /// ciphertext (RFC 4303 section 2.2.1).
    #[test]
    fn esn_high_half_is_appended_to_the_icv_input() {
        let (tx, rx) = cbc_pair(Cipher::Aes256CbcSha256, &[1; 32], &[2; 32]);
        let data = unhex("c0ffee0100000005 000102030405060708090a0b0c0d0e0f");
        let appended = [&data[..], &[0, 0, 0, 7]].concat();
        assert_eq!(tx.icv(&data, Some(7)), tx.icv(&appended, None));
        assert_ne!(tx.icv(&data, Some(7)), tx.icv(&data, None));
        assert_ne!(tx.icv(&data, Some(7)), tx.icv(&data, Some(8)));
        rx.verify(&data, Some(7), &tx.icv(&appended, None)).unwrap();
        assert!(rx.verify(&data, Some(0), &tx.icv(&data, Some(7))).is_err());
    }

    /// IVs are `AES-ECB(iv_key, seq || 0^64)`: checked against one-block AES-CBC with a zero
    /// IV (the same permutation, reached another way through aws-lc-rs). Random IV keys make
    /// two SAs with the same keys send different IVs.
    #[test]
    fn cbc_ivs_are_an_encrypted_counter() {
        for cipher in [Cipher::Aes128CbcSha256, Cipher::Aes256CbcSha256] {
            let km = KeyMaterial::new(cipher, &vec![3; cipher.key_material_len()]).unwrap();
            let mut a = CbcHmacSealer::new(cipher, &km).unwrap();
            let b = CbcHmacSealer::new(cipher, &km).unwrap();
            assert_ne!(a.iv(1).unwrap(), b.iv(1).unwrap(), "random IV keys");
            let iv_key = vec![0x5c; cipher.key_len()];
            a.set_iv_key(cipher, &iv_key);
            let check = {
                let unbound = UnboundCipherKey::new(cipher.aes_algorithm(), &iv_key).unwrap();
                EncryptingKey::cbc(unbound).unwrap()
            };
            let mut seen = std::collections::HashSet::new();
            for seq in (1..2000u64).chain([u64::from(u32::MAX), 1 << 32, u64::MAX]) {
                let iv = a.iv(seq).unwrap();
                let mut block = [0u8; 16];
                block[..8].copy_from_slice(&seq.to_be_bytes());
                check
                    .less_safe_encrypt(&mut block, EncryptionContext::Iv128([0u8; 16].into()))
                    .unwrap();
                assert_eq!(iv, block, "{cipher} seq {seq}");
                assert!(seen.insert(iv), "{cipher}: IV repeated at {seq}");
            }
        }
    }

    #[test]
    fn transforms_refuse_the_wrong_kind_of_key() {
        let aead = KeyMaterial::new(Cipher::Aes256Gcm16, &[1; 36]).unwrap();
        assert!(CbcHmacSealer::new(Cipher::Aes256Gcm16, &aead).is_err());
        assert!(CbcHmacOpener::new(Cipher::Aes256Gcm16, &aead).is_err());
        let cbc = KeyMaterial::new(Cipher::Aes256CbcSha256, &[1; 64]).unwrap();
        assert!(EspAead::new(Cipher::Aes256CbcSha256, &cbc).is_err());
        // Material of another length than the cipher's.
        assert!(EspCrypto::new(Cipher::Aes128CbcSha256, &cbc, true).is_err());
        assert!(EspCrypto::new(Cipher::Aes256CbcSha256, &cbc, false).is_ok());
        // A direction does only its own job.
        let mut pkt = [0u8; 56];
        let sealer = EspCrypto::new(Cipher::Aes256CbcSha256, &cbc, true).unwrap();
        let opener = EspCrypto::new(Cipher::Aes256CbcSha256, &cbc, false).unwrap();
        assert!(opener.seal(0x1000, 1, false, &mut pkt).is_err());
        sealer.seal(0x1000, 1, false, &mut pkt).unwrap();
        assert!(sealer.open(0x1000, 1, false, &mut pkt).is_err());
        opener.open(0x1000, 1, false, &mut pkt).unwrap();
        // Too short to hold header, IV and ICV: refused, not a panic.
        for n in 0..40 {
            assert!(sealer.seal(0x1000, 1, false, &mut pkt[..n]).is_err(), "{n}");
            assert!(opener.open(0x1000, 1, false, &mut pkt[..n]).is_err(), "{n}");
        }
    }
}
