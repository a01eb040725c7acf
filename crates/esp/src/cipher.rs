//! Cipher suites, key material and the AEAD glue (nonce and AAD construction).
//!
//! The ciphers themselves come from `aws-lc-rs`; this module only builds the inputs the ESP
//! RFCs define for them:
//!
//! - RFC 4106 section 4 (AES-GCM) and RFC 7634 section 2 (ChaCha20-Poly1305): the keying
//!   material is the cipher key followed by a 4-byte salt; the 12-byte nonce is
//!   `salt || IV`, where the 8-byte IV travels in the packet right after the ESP header.
//! - RFC 4106 section 5 and RFC 7634 section 2.1: the AAD is `SPI || 32-bit sequence number`
//!   (8 bytes), or `SPI || 64-bit extended sequence number` (12 bytes, high half first) when
//!   ESN is in use.
//! - Both use a 16-byte ICV (the `16` in the strongSwan names `aes128gcm16`, `aes256gcm16`).

use core::fmt;
use core::str::FromStr;

use aws_lc_rs::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};
use zeroize::Zeroize;

use crate::{ICV_LEN, IV_LEN, SALT_LEN};

/// Longest keying material of any supported cipher: a 32-byte key plus the 4-byte salt.
pub const MAX_KEY_MATERIAL_LEN: usize = 32 + SALT_LEN;

/// An ESP AEAD transform.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Cipher {
    /// AES-128 in GCM mode with a 16-byte ICV (RFC 4106; IKEv2 transform `ENCR_AES_GCM_16`, 128-bit key).
    Aes128Gcm16,
    /// AES-256 in GCM mode with a 16-byte ICV (RFC 4106; IKEv2 transform `ENCR_AES_GCM_16`, 256-bit key).
    Aes256Gcm16,
    /// ChaCha20-Poly1305 (RFC 7634; IKEv2 transform `ENCR_CHACHA20_POLY1305`).
    ChaCha20Poly1305,
}

impl Cipher {
    /// Every supported cipher, strongest-first in the order a gateway would offer them.
    pub const ALL: [Cipher; 3] = [
        Cipher::Aes256Gcm16,
        Cipher::Aes128Gcm16,
        Cipher::ChaCha20Poly1305,
    ];

    /// The strongSwan / swanctl proposal keyword.
    pub fn name(self) -> &'static str {
        match self {
            Cipher::Aes128Gcm16 => "aes128gcm16",
            Cipher::Aes256Gcm16 => "aes256gcm16",
            Cipher::ChaCha20Poly1305 => "chacha20poly1305",
        }
    }

    /// Length of the cipher key proper, without the salt.
    pub fn key_len(self) -> usize {
        match self {
            Cipher::Aes128Gcm16 => 16,
            Cipher::Aes256Gcm16 | Cipher::ChaCha20Poly1305 => 32,
        }
    }

    /// Length of the keying material an SA needs: the key followed by the 4-byte salt.
    pub fn key_material_len(self) -> usize {
        self.key_len() + SALT_LEN
    }

    fn algorithm(self) -> &'static aead::Algorithm {
        match self {
            Cipher::Aes128Gcm16 => &aead::AES_128_GCM,
            Cipher::Aes256Gcm16 => &aead::AES_256_GCM,
            Cipher::ChaCha20Poly1305 => &aead::CHACHA20_POLY1305,
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

    /// Parses a strongSwan ESP proposal keyword, ignoring ASCII case. `aes128gcm128` and
    /// `aes256gcm128` (strongSwan's aliases that count the ICV in bits) are accepted too.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        let is = |name: &str| t.eq_ignore_ascii_case(name);
        if is("aes128gcm16") || is("aes128gcm128") {
            Ok(Cipher::Aes128Gcm16)
        } else if is("aes256gcm16") || is("aes256gcm128") {
            Ok(Cipher::Aes256Gcm16)
        } else if is("chacha20poly1305") {
            Ok(Cipher::ChaCha20Poly1305)
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

/// Keying material of one SA direction: the cipher key followed by the 4-byte salt.
///
/// Zeroized on drop; its `Debug` output is `<redacted>`; errors about it never echo it.
#[derive(Clone)]
pub struct KeyMaterial {
    bytes: [u8; MAX_KEY_MATERIAL_LEN],
    len: usize,
}

impl KeyMaterial {
    /// Copies `bytes` (key || salt), which must be exactly `cipher.key_material_len()` long.
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
    /// keying material for `cipher`: `cipher.key_material_len()` bytes, key then salt.
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

    /// Number of bytes (key + salt).
    pub fn len(&self) -> usize {
        self.len
    }

    /// True only for material that holds nothing (never produced by the constructors).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn key(&self) -> &[u8] {
        &self.bytes[..self.len.saturating_sub(SALT_LEN)]
    }

    fn salt(&self) -> [u8; SALT_LEN] {
        let mut s = [0; SALT_LEN];
        if self.len >= SALT_LEN {
            s.copy_from_slice(&self.bytes[self.len - SALT_LEN..self.len]);
        }
        s
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
                "key for {cipher} must be {expected} bytes ({} key + {SALT_LEN} salt), got {got}",
                cipher.key_len()
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

/// A keyed AEAD plus the salt: everything that seals or opens one ESP payload.
pub(crate) struct EspAead {
    key: LessSafeKey,
    salt: [u8; SALT_LEN],
}

/// The AEAD refused to work (wrong tag, or an internal failure on seal).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AeadFailure;

impl EspAead {
    /// `km` must already have the cipher's length (checked by the SA constructors).
    pub(crate) fn new(cipher: Cipher, km: &KeyMaterial) -> Result<EspAead, AeadFailure> {
        if km.len() != cipher.key_material_len() {
            return Err(AeadFailure);
        }
        let key = UnboundKey::new(cipher.algorithm(), km.key()).map_err(|_| AeadFailure)?;
        Ok(EspAead {
            key: LessSafeKey::new(key),
            salt: km.salt(),
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
    ) -> Result<[u8; ICV_LEN], AeadFailure> {
        let tag = self
            .key
            .seal_in_place_separate_tag(self.nonce(iv), Aad::from(aad), in_out)
            .map_err(|_| AeadFailure)?;
        let mut icv = [0u8; ICV_LEN];
        let t = tag.as_ref();
        if t.len() != ICV_LEN {
            return Err(AeadFailure);
        }
        icv.copy_from_slice(t);
        Ok(icv)
    }

    /// Verifies `icv` and decrypts `in_out` in place. On failure `in_out` holds garbage.
    pub(crate) fn open(
        &self,
        iv: &[u8; IV_LEN],
        aad: &[u8],
        icv: &[u8],
        in_out: &mut [u8],
    ) -> Result<(), AeadFailure> {
        self.key
            .open_in_place_separate_tag(self.nonce(iv), Aad::from(aad), icv, in_out)
            .map(|_| ())
            .map_err(|_| AeadFailure)
    }
}

impl Drop for EspAead {
    fn drop(&mut self) {
        // aws-lc cleanses its own key schedule when the key is freed; the salt is ours.
        self.salt.zeroize();
    }
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
        assert_eq!(aead.open(&iv, &aad, &bad, &mut buf), Err(AeadFailure));
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
        let err = "aes256-sha256".parse::<Cipher>().unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("\"aes256-sha256\""), "{msg}");
        for c in Cipher::ALL {
            assert!(msg.contains(c.name()), "{msg}");
        }
    }

    #[test]
    fn key_lengths() {
        assert_eq!(Cipher::Aes128Gcm16.key_material_len(), 20);
        assert_eq!(Cipher::Aes256Gcm16.key_material_len(), 36);
        assert_eq!(Cipher::ChaCha20Poly1305.key_material_len(), 36);
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
            assert_eq!(k.key(), &unhex(&plain[..32])[..]);
            assert_eq!(k.salt(), [0x10, 0x11, 0x12, 0x13]);
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
}
