//! ESP (RFC 4303) tunnel mode for Causeway, sans-IO: security associations that seal and open
//! packets in place, sequence numbers, the anti-replay window, and the RFC 3948 UDP
//! encapsulation helpers.
//!
//! Nothing here does I/O, reads a clock or spawns threads. Nothing allocates per packet: an SA
//! allocates its keys and replay bitmap once when built; [`OutboundSa::seal`] and
//! [`InboundSa::open`] work in the caller's buffer. Input bytes never cause a panic; every
//! refusal is a counted [`OpenError`] reason.
//!
//! Transforms ([`Cipher`]; the primitives come from `aws-lc-rs`, never written here):
//! - AEAD: AES-GCM with a 16-byte ICV (RFC 4106) and ChaCha20-Poly1305 (RFC 7634);
//! - AES-CBC (RFC 3602) with HMAC-SHA-256-128 (RFC 4868), encrypt-then-MAC, strongSwan's
//!   `aes128-sha256` / `aes256-sha256`.
//!
//! See [`cipher`] for the nonce, IV, AAD and ICV layouts and [`sa`] for the packet layout.
//!
//! What a caller must know:
//! - Leave [`HEADROOM`] bytes before and [`TAILROOM`] bytes after an inner packet to seal it in
//!   place: enough for every transform. The exact figures depend on the transform:
//!   [`Cipher::header_len`] (16 for the AEADs, 24 for AES-CBC), [`Cipher::tail_len`],
//!   [`Cipher::sealed_len`] (the ESP size) and [`Cipher::max_inner_len`] (the largest inner
//!   packet that fits a given ESP size). The free functions [`tail_len`], [`sealed_len`] and
//!   [`max_inner_len`] are the bounds over every transform.
//! - The ESP packet starts `header_len()` bytes before the inner packet, so with `head =
//!   HEADROOM` an AEAD packet starts at offset 8 of the buffer: use the range `seal` returns.
//! - Sequence numbers start at 1. An SA without ESN is exhausted after 2^32 - 1 packets
//!   ([`SealError::SequenceExhausted`]): rekey well before (the IKE layer's job).
//! - An [`InboundSa`] is looked up by SPI first ([`spi_of`]); `open` checks it again.
//! - `open` decrypts in place; on `AuthFailed` the payload bytes are untouched (AES-CBC) or
//!   garbage (AEAD). Pass exactly the ESP packet (the UDP payload), nothing after it.
//!
//! ```
//! use causeway_esp::{Cipher, InboundSa, KeyMaterial, OutboundSa, HEADROOM, TAILROOM};
//!
//! for name in ["aes256gcm16", "aes256-sha256"] {
//!     let cipher: Cipher = name.parse().unwrap();
//!     let key = KeyMaterial::from_hex(cipher, &"2a".repeat(cipher.key_material_len())).unwrap();
//!     let mut tx = OutboundSa::new(0x1000_0001, cipher, &key, true).unwrap();
//!     let mut rx = InboundSa::new(0x1000_0001, cipher, &key, true, 1024).unwrap();
//!
//!     let inner = [0x45u8; 60]; // an IPv4 packet
//!     let mut buf = [0u8; HEADROOM + 60 + TAILROOM];
//!     buf[HEADROOM..HEADROOM + 60].copy_from_slice(&inner);
//!     let esp = tx.seal(&mut buf, HEADROOM, inner.len(), 4).unwrap();
//!     assert_eq!(esp.len(), cipher.sealed_len(inner.len()));
//!
//!     let packet = &mut buf[esp]; // what goes into the UDP 4500 datagram
//!     assert_eq!(causeway_esp::spi_of(packet), Some(0x1000_0001));
//!     let opened = rx.open(packet).unwrap();
//!     assert_eq!((opened.seq, opened.next_header), (1, 4));
//!     assert_eq!(&packet[opened.inner], &inner[..]);
//! }
//! ```

#![forbid(unsafe_code)]

pub mod cipher;
pub mod encap;
pub mod replay;
pub mod sa;

pub use cipher::{Cipher, KeyError, KeyMaterial, UnknownCipher};
pub use encap::{classify_udp4500, spi_of, Udp4500};
pub use replay::{Replay, ReplayWindow, WindowSizeError};
pub use sa::{InboundSa, OpenError, Opened, OutboundSa, SaError, SealError};

/// SPI + sequence number.
pub const ESP_HEADER_LEN: usize = 8;
/// The explicit per-packet IV of the AEAD transforms (RFC 4106 / RFC 7634).
pub const IV_LEN: usize = 8;
/// The per-packet IV of AES-CBC (RFC 3602): one AES block.
pub const CBC_IV_LEN: usize = 16;
/// The longest per-packet IV of any transform.
pub const MAX_IV_LEN: usize = CBC_IV_LEN;
/// The salt at the end of the keying material of the AEAD transforms.
pub const SALT_LEN: usize = 4;
/// Integrity check value: the AEAD tag, or HMAC-SHA-256 truncated to 128 bits (RFC 4868).
pub const ICV_LEN: usize = 16;
/// Pad Length + Next Header.
pub const TRAILER_LEN: usize = 2;
/// Most padding ever added: payload + padding + 2 is brought to a multiple of the transform's
/// block ([`Cipher::block_len`]: 4 for the AEADs, so at most 3; 16 for AES-CBC, so at most 15).
pub const MAX_PAD_LEN: usize = 15;
/// Bytes [`OutboundSa::seal`] writes in front of the inner packet, at most (ESP header + IV of
/// AES-CBC); [`Cipher::header_len`] is the exact figure of a transform.
pub const HEADROOM: usize = ESP_HEADER_LEN + MAX_IV_LEN;
/// Most bytes [`OutboundSa::seal`] writes after the inner packet: padding + trailer + ICV.
pub const TAILROOM: usize = MAX_PAD_LEN + TRAILER_LEN + ICV_LEN;
/// Shortest ESP packet `open` considers under any transform: header, AEAD IV, trailer and ICV
/// around an empty payload ([`Cipher::min_esp_len`] is the figure of a transform).
pub const MIN_ESP_LEN: usize = ESP_HEADER_LEN + IV_LEN + TRAILER_LEN + ICV_LEN;

/// Next header of an IPv4 inner packet (IP-in-IP).
pub const NEXT_HEADER_IPV4: u8 = 4;
/// Next header of an IPv6 inner packet.
pub const NEXT_HEADER_IPV6: u8 = 41;
/// Next header of a dummy packet (RFC 4303 section 2.6).
pub const NEXT_HEADER_NONE: u8 = 59;

/// The most pad bytes any transform adds to an inner packet of `len` bytes (0..=15);
/// [`Cipher::pad_len`] is the exact figure.
pub const fn pad_len(len: usize) -> usize {
    let mut most = 0;
    let mut i = 0;
    while i < Cipher::ALL.len() {
        let p = Cipher::ALL[i].pad_len(len);
        if p > most {
            most = p;
        }
        i += 1;
    }
    most
}

/// The most bytes `seal` writes after an inner packet of `len` bytes under any transform:
/// padding, trailer and ICV (at most [`TAILROOM`]); [`Cipher::tail_len`] is the exact figure.
pub const fn tail_len(len: usize) -> usize {
    pad_len(len) + TRAILER_LEN + ICV_LEN
}

/// Room for the ESP packet (the UDP payload) that carries an inner packet of `len` bytes under
/// any transform: `HEADROOM + len + tail_len(len)`, so a buffer of this size with the inner
/// packet at `HEADROOM` can always be sealed. [`Cipher::sealed_len`] is the exact size.
pub const fn sealed_len(len: usize) -> usize {
    HEADROOM + len + tail_len(len)
}

/// The largest inner packet whose ESP packet fits in `esp_len` bytes under every transform
/// (the smallest of the [`Cipher::max_inner_len`]s); 0 also when not even an empty one fits.
pub const fn max_inner_len(esp_len: usize) -> usize {
    let mut least = usize::MAX;
    let mut i = 0;
    while i < Cipher::ALL.len() {
        let n = Cipher::ALL[i].max_inner_len(esp_len);
        if n < least {
            least = n;
        }
        i += 1;
    }
    least
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_constants() {
        assert_eq!(HEADROOM, 24);
        assert_eq!(TAILROOM, 33);
        assert_eq!(MIN_ESP_LEN, 34);
        for c in Cipher::ALL {
            assert!(c.header_len() <= HEADROOM, "{c}");
            assert!(c.min_esp_len() >= MIN_ESP_LEN, "{c}");
            assert!(c.sealed_len(0) >= c.min_esp_len(), "{c}");
        }
        for len in 0..2000 {
            assert!(pad_len(len) <= MAX_PAD_LEN);
            assert!(tail_len(len) <= TAILROOM);
            assert_eq!(sealed_len(len), HEADROOM + len + tail_len(len));
            for c in Cipher::ALL {
                let b = c.block_len();
                assert!(c.pad_len(len) < b, "{c}");
                assert_eq!((len + c.pad_len(len) + TRAILER_LEN) % b, 0, "{c}");
                assert!(c.pad_len(len) <= pad_len(len), "{c}");
                assert!(c.tail_len(len) <= tail_len(len), "{c}");
                assert_eq!(c.tail_len(len), c.pad_len(len) + TRAILER_LEN + ICV_LEN);
                assert_eq!(c.sealed_len(len), c.header_len() + len + c.tail_len(len));
                assert!(c.sealed_len(len) <= sealed_len(len), "{c}");
                assert_eq!(
                    c.sealed_len(len) % 4,
                    0,
                    "{c}: ESP packets stay 4-byte aligned"
                );
            }
        }
        assert_eq!(max_inner_len(0), 0);
        assert_eq!(max_inner_len(MIN_ESP_LEN), 0);
        // The tunnel MTU of DOMAIN.md: 1400-byte ESP payloads carry 1366-byte inner packets
        // with an AEAD, 1358-byte ones with AES-CBC (a 16-byte IV, 16-byte blocks).
        for c in [
            Cipher::Aes128Gcm16,
            Cipher::Aes256Gcm16,
            Cipher::ChaCha20Poly1305,
        ] {
            assert_eq!((c.sealed_len(0), c.min_esp_len()), (36, 34), "{c}");
            assert_eq!(c.max_inner_len(1400), 1366, "{c}");
        }
        for c in [Cipher::Aes128CbcSha256, Cipher::Aes256CbcSha256] {
            assert_eq!((c.sealed_len(0), c.min_esp_len()), (56, 56), "{c}");
            assert_eq!(c.max_inner_len(1400), 1358, "{c}");
        }
        assert_eq!(max_inner_len(1400), 1358);
        for esp in 0..2000 {
            let n = max_inner_len(esp);
            if esp >= sealed_len(0) {
                assert!(sealed_len(n) <= esp, "{esp}");
                assert!(sealed_len(n + 1) > esp, "{esp}");
            }
            for c in Cipher::ALL {
                let m = c.max_inner_len(esp);
                assert!(n <= m, "{c} {esp}");
                if esp >= c.sealed_len(0) {
                    assert!(c.sealed_len(m) <= esp, "{c} {esp}");
                    assert!(c.sealed_len(m + 1) > esp, "{c} {esp}");
                } else {
                    assert_eq!(m, 0, "{c} {esp}");
                }
            }
        }
    }
}
