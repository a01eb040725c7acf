//! # TEST-ONLY: a sealing hook for fuzz targets. NEVER FOR PRODUCTION.
//!
//! Compiled only with the cargo feature `fuzzing`, which only the fuzz project (`fuzz/`, a
//! workspace of its own) enables; no crate of the main workspace, causewayd least of all, may
//! turn it on.
//!
//! [`OutboundSa::seal`] always writes correct padding and a trailer it chose, so a fuzzer that
//! only has `seal` and [`InboundSa::open`](super::InboundSa::open) never sees an *authentic*
//! packet with bad padding, a bad pad length or an odd next header, and a fuzzer that writes
//! packets itself never gets past the ICV. This hook closes the gap the way a "null cipher"
//! provider would, but without changing a single line of what `open` runs: it seals a
//! plaintext the caller wrote byte for byte (inner packet, padding, Pad Length, Next Header,
//! however malformed) under the SA's real key, at any sequence number, exactly as `seal` would
//! have sealed it. `open` then verifies and decrypts it with the production code and goes on
//! to the padding, next-header and inner-packet checks.
//!
//! Why it must never reach production: it ignores and does not advance the SA's sequence
//! number, so two calls with the same `seq` reuse an AEAD nonce under one key (which gives the
//! key stream and, for GCM, the authentication key away).

use super::{OutboundSa, SealError};
use crate::ESP_HEADER_LEN;

impl OutboundSa {
    /// TEST-ONLY (feature `fuzzing`): completes the ESP packet `pkt` (from the SPI to the end
    /// of the ICV) for packet number `seq`: writes the SPI, the low 32 bits of `seq`, the IV
    /// and the ICV, and encrypts the plaintext that the caller put between
    /// [`Cipher::header_len`](crate::Cipher::header_len) and the last
    /// [`ICV_LEN`](crate::ICV_LEN) bytes, as it is (no padding is added or checked). With
    /// AES-CBC that plaintext must be a whole number of 16-byte blocks. The SA's own sequence
    /// number is neither used nor advanced, so `seq` may repeat: see the module documentation.
    pub fn seal_raw_for_fuzzing(&self, seq: u64, pkt: &mut [u8]) -> Result<(), SealError> {
        let min = self.cipher.header_len() + crate::ICV_LEN;
        if pkt.len() < min {
            return Err(SealError::NoTailroom);
        }
        pkt[..4].copy_from_slice(&self.spi.to_be_bytes());
        pkt[4..ESP_HEADER_LEN].copy_from_slice(&(seq as u32).to_be_bytes());
        self.crypto
            .seal(self.spi, seq, self.esn, pkt)
            .map_err(|_| SealError::Crypto)
    }
}

#[cfg(test)]
mod tests {
    use crate::{Cipher, InboundSa, KeyMaterial, OpenError, OutboundSa, ICV_LEN};

    /// What `seal_raw_for_fuzzing` seals, `open` authenticates; the trailer is the caller's.
    #[test]
    fn raw_sealed_plaintext_authenticates_with_its_own_trailer() {
        for cipher in Cipher::ALL {
            let key = KeyMaterial::new(cipher, &vec![3u8; cipher.key_material_len()]).unwrap();
            let tx = OutboundSa::new(0x1000, cipher, &key, false).unwrap();
            let mut rx = InboundSa::new(0x1000, cipher, &key, false, 1024).unwrap();
            let hl = cipher.header_len();
            // 14 bytes of inner packet, padding 9 9 (not 1 2), pad length 2, next header 4.
            let mut plain = vec![0x45u8; 14];
            plain.extend([9, 9, 2, 4]);
            plain.resize(plain.len().next_multiple_of(cipher.block_len().max(16)), 0);
            let n = plain.len();
            plain[n - 4..].copy_from_slice(&[9, 9, 2, 4]);
            let mut pkt = vec![0u8; hl + n + ICV_LEN];
            pkt[hl..hl + n].copy_from_slice(&plain);
            tx.seal_raw_for_fuzzing(7, &mut pkt).unwrap();
            assert_eq!(rx.open(&mut pkt), Err(OpenError::BadPadding), "{cipher}");
            assert_eq!(rx.window().top(), 7, "{cipher}: authenticated");
            assert_eq!(tx.next_seq(), Some(1), "{cipher}: no sequence number used");
        }
    }
}
