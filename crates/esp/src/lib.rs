//! ESP (RFC 4303) tunnel mode for Causeway, sans-IO: security associations that seal and open
//! packets in place with AEAD ciphers, sequence numbers, the anti-replay window, and the
//! RFC 3948 UDP encapsulation helpers.
//!
//! Nothing here does I/O, reads a clock or spawns threads. Nothing allocates per packet: an SA
//! allocates its replay bitmap once when built; [`OutboundSa::seal`] and [`InboundSa::open`]
//! work in the caller's buffer. Input bytes never cause a panic; every refusal is a counted
//! [`OpenError`] reason.
//!
//! Ciphers (through `aws-lc-rs`, never written here): AES-GCM with a 16-byte ICV (RFC 4106)
//! and ChaCha20-Poly1305 (RFC 7634). See [`cipher`] for the nonce and AAD layouts and
//! [`sa`] for the packet layout.
//!
//! What a caller must know:
//! - Leave [`HEADROOM`] bytes before and [`TAILROOM`] bytes after an inner packet to seal it in
//!   place ([`tail_len`] gives the exact tail for a length); [`sealed_len`] is the ESP size and
//!   [`max_inner_len`] the largest inner packet that fits a given ESP size.
//! - Sequence numbers start at 1. An SA without ESN is exhausted after 2^32 - 1 packets
//!   ([`SealError::SequenceExhausted`]): rekey well before (the IKE layer's job).
//! - An [`InboundSa`] is looked up by SPI first ([`spi_of`]); `open` checks it again.
//! - `open` decrypts in place; on `AuthFailed` the payload bytes are garbage. Pass exactly
//!   the ESP packet (the UDP payload), nothing after it.
//!
//! ```
//! use causeway_esp::{Cipher, InboundSa, KeyMaterial, OutboundSa, HEADROOM, TAILROOM};
//!
//! let cipher: Cipher = "aes256gcm16".parse().unwrap();
//! let key = KeyMaterial::from_hex(cipher, &"2a".repeat(cipher.key_material_len())).unwrap();
//! let mut tx = OutboundSa::new(0x1000_0001, cipher, &key, true).unwrap();
//! let mut rx = InboundSa::new(0x1000_0001, cipher, &key, true, 1024).unwrap();
//!
//! let inner = [0x45u8; 60]; // an IPv4 packet
//! let mut buf = [0u8; HEADROOM + 60 + TAILROOM];
//! buf[HEADROOM..HEADROOM + 60].copy_from_slice(&inner);
//! let esp = tx.seal(&mut buf, HEADROOM, inner.len(), 4).unwrap();
//!
//! let packet = &mut buf[esp]; // what goes into the UDP 4500 datagram
//! assert_eq!(causeway_esp::spi_of(packet), Some(0x1000_0001));
//! let opened = rx.open(packet).unwrap();
//! assert_eq!((opened.seq, opened.next_header), (1, 4));
//! assert_eq!(&packet[opened.inner], &inner[..]);
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
/// The explicit per-packet IV of RFC 4106 / RFC 7634.
pub const IV_LEN: usize = 8;
/// The salt at the end of the keying material.
pub const SALT_LEN: usize = 4;
/// Integrity check value (the AEAD tag).
pub const ICV_LEN: usize = 16;
/// Pad Length + Next Header.
pub const TRAILER_LEN: usize = 2;
/// Most padding ever added: payload + padding + 2 is brought to a multiple of 4.
pub const MAX_PAD_LEN: usize = 3;
/// Bytes [`OutboundSa::seal`] writes in front of the inner packet: ESP header + IV.
pub const HEADROOM: usize = ESP_HEADER_LEN + IV_LEN;
/// Most bytes [`OutboundSa::seal`] writes after the inner packet: padding + trailer + ICV.
pub const TAILROOM: usize = MAX_PAD_LEN + TRAILER_LEN + ICV_LEN;
/// Shortest ESP packet `open` considers: header, IV, trailer and ICV around an empty payload.
pub const MIN_ESP_LEN: usize = HEADROOM + TRAILER_LEN + ICV_LEN;

/// Next header of an IPv4 inner packet (IP-in-IP).
pub const NEXT_HEADER_IPV4: u8 = 4;
/// Next header of an IPv6 inner packet.
pub const NEXT_HEADER_IPV6: u8 = 41;
/// Next header of a dummy packet (RFC 4303 section 2.6).
pub const NEXT_HEADER_NONE: u8 = 59;

/// Pad bytes for an inner packet of `len` bytes (0..=3).
pub const fn pad_len(len: usize) -> usize {
    // Written so that no `len` overflows.
    (4 - (len % 4 + TRAILER_LEN) % 4) % 4
}

/// Bytes `seal` writes after an inner packet of `len` bytes: padding, trailer and ICV.
pub const fn tail_len(len: usize) -> usize {
    pad_len(len) + TRAILER_LEN + ICV_LEN
}

/// Size of the ESP packet (the UDP payload) that carries an inner packet of `len` bytes.
pub const fn sealed_len(len: usize) -> usize {
    HEADROOM + len + tail_len(len)
}

/// The largest inner packet whose ESP packet fits in `esp_len` bytes; 0 also when not even an
/// empty one fits (below `sealed_len(0)` = 36 bytes).
pub const fn max_inner_len(esp_len: usize) -> usize {
    let room = esp_len.saturating_sub(HEADROOM + ICV_LEN);
    (room - room % 4).saturating_sub(TRAILER_LEN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_constants() {
        assert_eq!(HEADROOM, 16);
        assert_eq!(TAILROOM, 21);
        assert_eq!(MIN_ESP_LEN, 34);
        for len in 0..2000 {
            assert!(pad_len(len) <= MAX_PAD_LEN);
            assert_eq!((len + pad_len(len) + TRAILER_LEN) % 4, 0);
            assert!(tail_len(len) <= TAILROOM);
            assert_eq!(sealed_len(len), HEADROOM + len + tail_len(len));
        }
        assert_eq!(max_inner_len(0), 0);
        assert_eq!(max_inner_len(MIN_ESP_LEN), 0);
        assert_eq!(sealed_len(0), 36);
        // The tunnel MTU of DOMAIN.md: 1400-byte ESP payloads carry 1366-byte inner packets.
        assert_eq!(max_inner_len(1400), 1366);
        for esp in sealed_len(0)..2000 {
            let n = max_inner_len(esp);
            assert!(sealed_len(n) <= esp, "{esp}");
            assert!(sealed_len(n + 1) > esp, "{esp}");
        }
    }
}
