//! Security associations: [`OutboundSa::seal`] and [`InboundSa::open`], in place.
//!
//! The ESP packet (RFC 4303 section 2, tunnel mode), with an AEAD (combined mode):
//!
//! ```text
//!  0               4               8                       16
//! +---------------+---------------+-----------------------+---------------------------
//! |      SPI      | Sequence (lo) |  IV (8 bytes, clear)  | inner IP packet ...
//! +---------------+---------------+-----------------------+---------------------------
//!     ... | Padding 1,2,3.. (0-3) | Pad Length | Next Header | ICV (16 bytes)         |
//!     ----+-----------------------+------------+-------------+------------------------+
//!          \_________________ encrypted: inner packet .. Next Header ______/
//! ```
//!
//! The IV is the 64-bit sequence number (big-endian): unique per SA, which is all that
//! RFC 4106 section 3.1 / RFC 7634 section 2 ask of it. Padding brings payload + padding + 2
//! to a multiple of 4 (RFC 4303 section 2.4), so at most 3 pad bytes are ever added. The AAD
//! (SPI and sequence number) authenticates the header.
//!
//! With AES-CBC + HMAC-SHA-256-128 (RFC 3602, RFC 4868), encrypt-then-MAC:
//!
//! ```text
//!  0               4               8                                               24
//! +---------------+---------------+-----------------------------------------------+----------
//! |      SPI      | Sequence (lo) |         IV (16 bytes, clear, unpredictable)   | inner ...
//! +---------------+---------------+-----------------------------------------------+----------
//!     ... | Padding 1,2,3.. (0-15) | Pad Length | Next Header | ICV (16 bytes)               |
//!     ----+------------------------+------------+-------------+------------------------------+
//!          \__________ encrypted (whole 16-byte blocks): inner .. Next Header ___/
//!  \____________________ ICV input: SPI .. Next Header (|| Sequence (hi) with ESN) ____/
//! ```
//!
//! Padding brings payload + padding + 2 to a multiple of the 16-byte AES block, so at most 15
//! pad bytes. The receiver checks the ICV (in constant time) before it decrypts anything, and
//! the padding only after that, so no padding oracle exists. How the IV is chosen: see
//! [`crate::cipher`].

use core::fmt;
use core::ops::Range;

use crate::cipher::{Cipher, EspCrypto, KeyLayout, KeyMaterial};
use crate::replay::{Replay, ReplayWindow, WindowSizeError};
use crate::{
    ESP_HEADER_LEN, ICV_LEN, NEXT_HEADER_IPV4, NEXT_HEADER_IPV6, NEXT_HEADER_NONE, TRAILER_LEN,
};

/// Why an SA could not be built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SaError {
    /// SPIs 0..=255 are reserved (RFC 4303 section 2.1); 0 would also read as the RFC 3948
    /// non-ESP marker on UDP 4500.
    ReservedSpi(u32),
    /// The key material does not fit the cipher.
    KeyLength {
        cipher: Cipher,
        expected: usize,
        got: usize,
    },
    /// The replay window size is not allowed.
    ReplayWindow(WindowSizeError),
    /// The crypto library refused the key (or, outbound AES-CBC, could not draw the IV key
    /// from the CSPRNG).
    Crypto,
}

impl fmt::Display for SaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SaError::ReservedSpi(spi) => {
                write!(
                    f,
                    "SPI {spi:#010x} is reserved (SPIs 0-255 are not used on the wire)"
                )
            }
            SaError::KeyLength {
                cipher,
                expected,
                got,
            } => write!(
                f,
                "key for {cipher} must be {expected} bytes ({}), got {got}",
                KeyLayout(*cipher)
            ),
            SaError::ReplayWindow(e) => e.fmt(f),
            SaError::Crypto => f.write_str("the crypto library refused the key"),
        }
    }
}

impl std::error::Error for SaError {}

fn check_spi_and_key(
    spi: u32,
    cipher: Cipher,
    key: &KeyMaterial,
    seal: bool,
) -> Result<EspCrypto, SaError> {
    if spi < 256 {
        return Err(SaError::ReservedSpi(spi));
    }
    let expected = cipher.key_material_len();
    if key.len() != expected {
        return Err(SaError::KeyLength {
            cipher,
            expected,
            got: key.len(),
        });
    }
    EspCrypto::new(cipher, key, seal).map_err(|_| SaError::Crypto)
}

/// Why a packet could not be sealed. The buffer is untouched unless noted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SealError {
    /// Fewer than the transform's [`Cipher::header_len`] bytes (at most [`crate::HEADROOM`])
    /// before the inner packet.
    NoHeadroom,
    /// The inner packet plus padding, trailer and ICV do not fit the buffer (or the inner
    /// range itself lies outside it).
    NoTailroom,
    /// The sequence number space is used up (2^32 - 1 packets without ESN, 2^64 - 1 with):
    /// the SA must be replaced by a rekeyed one. Permanent for this SA.
    SequenceExhausted,
    /// The crypto library failed. The sequence number was consumed; the buffer holds garbage.
    Crypto,
}

impl SealError {
    pub fn as_str(self) -> &'static str {
        match self {
            SealError::NoHeadroom => "no_headroom",
            SealError::NoTailroom => "no_tailroom",
            SealError::SequenceExhausted => "sequence_exhausted",
            SealError::Crypto => "crypto",
        }
    }
}

impl fmt::Display for SealError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SealError::NoHeadroom => "not enough headroom before the inner packet",
            SealError::NoTailroom => "not enough tailroom after the inner packet",
            SealError::SequenceExhausted => "sequence numbers exhausted: the SA must be rekeyed",
            SealError::Crypto => "the crypto library failed to seal",
        })
    }
}

impl std::error::Error for SealError {}

/// The sending half of a child SA.
pub struct OutboundSa {
    spi: u32,
    cipher: Cipher,
    esn: bool,
    crypto: EspCrypto,
    /// Last sequence number used; 0 before the first packet.
    last_seq: u64,
    packets: u64,
    bytes: u64,
}

impl OutboundSa {
    /// An SA that sends with `spi` (the SPI the peer chose for its inbound SA). With AES-CBC
    /// this draws the SA's IV key from the operating system's CSPRNG.
    pub fn new(
        spi: u32,
        cipher: Cipher,
        key: &KeyMaterial,
        esn: bool,
    ) -> Result<OutboundSa, SaError> {
        let crypto = check_spi_and_key(spi, cipher, key, true)?;
        Ok(OutboundSa {
            spi,
            cipher,
            esn,
            crypto,
            last_seq: 0,
            packets: 0,
            bytes: 0,
        })
    }

    /// An SA whose first packet carries `next_seq` instead of 1: for manually keyed SAs, which
    /// outlive a restart of the daemon. The sequence number is also the AEAD nonce's IV, so a
    /// restarted sender must never reuse one under the same key: the caller resumes above every
    /// number it may have used before (see the daemon's sequence lease). (AES-CBC IVs do not
    /// repeat across a restart either way: each SA draws a fresh IV key.)
    pub fn resume(
        spi: u32,
        cipher: Cipher,
        key: &KeyMaterial,
        esn: bool,
        next_seq: u64,
    ) -> Result<OutboundSa, SaError> {
        let mut sa = OutboundSa::new(spi, cipher, key, esn)?;
        sa.last_seq = next_seq.saturating_sub(1);
        Ok(sa)
    }

    pub fn spi(&self) -> u32 {
        self.spi
    }

    pub fn cipher(&self) -> Cipher {
        self.cipher
    }

    pub fn esn(&self) -> bool {
        self.esn
    }

    fn max_seq(&self) -> u64 {
        if self.esn {
            u64::MAX
        } else {
            u64::from(u32::MAX)
        }
    }

    /// The sequence number the next packet will carry; `None` once exhausted.
    pub fn next_seq(&self) -> Option<u64> {
        if self.last_seq >= self.max_seq() {
            None
        } else {
            Some(self.last_seq + 1)
        }
    }

    /// Packets sealed so far.
    pub fn packets(&self) -> u64 {
        self.packets
    }

    /// Inner-packet bytes sealed so far (what SA byte lifetimes count).
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Seals the inner packet at `buf[head..head + len]` in place, tunnel mode.
    ///
    /// Needs [`Cipher::header_len`] bytes before `head` (16 or 24; [`crate::HEADROOM`] is
    /// always enough) and [`Cipher::tail_len`]`(len)` after the packet ([`crate::TAILROOM`] is
    /// always enough). Writes the ESP header and IV in front, padding, pad length,
    /// `next_header` (4 for IPv4, 41 for IPv6, 59 for a dummy packet) and the ICV behind, and
    /// encrypts in between. Returns the range of the ESP packet in `buf`, starting at the SPI:
    /// `head - header_len() .. head + len + tail_len(len)`, of [`Cipher::sealed_len`]`(len)`
    /// bytes.
    pub fn seal(
        &mut self,
        buf: &mut [u8],
        head: usize,
        len: usize,
        next_header: u8,
    ) -> Result<Range<usize>, SealError> {
        let cipher = self.cipher;
        let start = head
            .checked_sub(cipher.header_len())
            .ok_or(SealError::NoHeadroom)?;
        let pad = cipher.pad_len(len);
        let payload_end = head.checked_add(len).ok_or(SealError::NoTailroom)?;
        let pt_end = payload_end
            .checked_add(pad + TRAILER_LEN)
            .ok_or(SealError::NoTailroom)?;
        let end = pt_end.checked_add(ICV_LEN).ok_or(SealError::NoTailroom)?;
        if end > buf.len() {
            return Err(SealError::NoTailroom);
        }
        let seq = self.next_seq().ok_or(SealError::SequenceExhausted)?;
        // Consumed before sealing: a sequence number (the AEAD IV) must never be used twice,
        // even if the crypto call were to fail halfway.
        self.last_seq = seq;

        buf[start..start + 4].copy_from_slice(&self.spi.to_be_bytes());
        // Only the low 32 bits travel; with ESN the high half is in the AAD or ICV input alone.
        buf[start + 4..start + ESP_HEADER_LEN].copy_from_slice(&(seq as u32).to_be_bytes());
        for (i, b) in buf[payload_end..payload_end + pad].iter_mut().enumerate() {
            // i < 15
            *b = i as u8 + 1;
        }
        buf[pt_end - 2] = pad as u8;
        buf[pt_end - 1] = next_header;

        // Writes the IV, encrypts the inner packet .. next header, writes the ICV.
        self.crypto
            .seal(self.spi, seq, self.esn, &mut buf[start..end])
            .map_err(|_| SealError::Crypto)?;
        self.packets += 1;
        self.bytes = self.bytes.saturating_add(len as u64);
        Ok(start..end)
    }

    /// Test hook: pretend `last` packets were already sent.
    #[cfg(test)]
    pub(crate) fn set_last_seq(&mut self, last: u64) {
        self.last_seq = last;
    }

    /// Test hook (AES-CBC): derive IVs under this IV key instead of a random one.
    #[cfg(test)]
    pub(crate) fn set_iv_key(&mut self, iv_key: &[u8]) {
        if let Some(c) = self.crypto.cbc_sealer_mut() {
            c.set_iv_key(self.cipher, iv_key);
        }
    }

    /// Test hook (AES-CBC): send this IV in every packet.
    #[cfg(test)]
    pub(crate) fn set_fixed_iv(&mut self, iv: [u8; crate::CBC_IV_LEN]) {
        if let Some(c) = self.crypto.cbc_sealer_mut() {
            c.set_fixed_iv(iv);
        }
    }
}

impl fmt::Debug for OutboundSa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutboundSa")
            .field("spi", &format_args!("{:#010x}", self.spi))
            .field("cipher", &self.cipher)
            .field("esn", &self.esn)
            .field("next_seq", &self.next_seq())
            .field("packets", &self.packets)
            .field("bytes", &self.bytes)
            .finish_non_exhaustive()
    }
}

/// A packet that [`InboundSa::open`] authenticated, decrypted and accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    /// Where the inner packet now lies (in clear) in the buffer given to `open`: it starts at
    /// the transform's [`Cipher::header_len`] (16 for the AEADs, 24 for AES-CBC).
    pub inner: Range<usize>,
    /// 4 (IPv4) or 41 (IPv6).
    pub next_header: u8,
    /// The full (with ESN: reconstructed 64-bit) sequence number.
    pub seq: u64,
}

/// Why an ESP packet was not delivered. Each variant is a counted drop reason upstream.
///
/// The first four are decided before decryption and leave the buffer and the SA untouched;
/// `AuthFailed` leaves the SA untouched (the buffer's payload is garbage with an AEAD, untouched
/// with AES-CBC); the last three come after the ICV verified, so the replay window has already
/// recorded the packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpenError {
    /// Shorter than header + IV + trailer + ICV ([`Cipher::min_esp_len`]), or, with AES-CBC,
    /// a ciphertext that is not a whole number of 16-byte blocks (cannot be decrypted).
    Truncated,
    /// The SPI is not this SA's (the caller's lookup by SPI is wrong).
    WrongSpi,
    /// Already received (inside the replay window).
    Replayed,
    /// Left of the replay window (or sequence number 0, or an ESN that cannot exist).
    TooOld,
    /// The ICV does not verify: forged, corrupted, wrong key, or (ESN) a wrong guess of the
    /// sequence number's high half.
    AuthFailed,
    /// Authentic, but the padding is not 1, 2, 3, ... or the pad length exceeds the payload.
    BadPadding,
    /// Authentic, but the next header is neither 4 (IPv4) nor 41 (IPv6) nor 59.
    BadNextHeader(u8),
    /// Authentic dummy packet (next header 59, RFC 4303 section 2.6): drop silently; it is
    /// traffic-flow confidentiality chaff, not an attack.
    Dummy,
}

impl OpenError {
    pub fn as_str(self) -> &'static str {
        match self {
            OpenError::Truncated => "truncated",
            OpenError::WrongSpi => "wrong_spi",
            OpenError::Replayed => "replayed",
            OpenError::TooOld => "too_old",
            OpenError::AuthFailed => "auth_failed",
            OpenError::BadPadding => "bad_padding",
            OpenError::BadNextHeader(_) => "bad_next_header",
            OpenError::Dummy => "dummy",
        }
    }

    /// True when the packet authenticated (the replay window recorded it).
    pub fn authenticated(self) -> bool {
        matches!(
            self,
            OpenError::BadPadding | OpenError::BadNextHeader(_) | OpenError::Dummy
        )
    }
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpenError::Truncated => f.write_str("ESP packet truncated"),
            OpenError::WrongSpi => f.write_str("ESP packet for another SPI"),
            OpenError::Replayed => f.write_str("ESP packet replayed"),
            OpenError::TooOld => f.write_str("ESP packet left of the replay window"),
            OpenError::AuthFailed => f.write_str("ESP integrity check failed"),
            OpenError::BadPadding => f.write_str("ESP padding invalid"),
            OpenError::BadNextHeader(nh) => write!(f, "ESP next header {nh} not carried"),
            OpenError::Dummy => f.write_str("ESP dummy packet"),
        }
    }
}

impl std::error::Error for OpenError {}

/// The receiving half of a child SA.
pub struct InboundSa {
    spi: u32,
    cipher: Cipher,
    esn: bool,
    crypto: EspCrypto,
    window: ReplayWindow,
    packets: u64,
    bytes: u64,
}

impl InboundSa {
    /// An SA that receives on `spi` (the SPI we chose), with a replay window of
    /// `replay_window` packets ([`ReplayWindow::DEFAULT_SIZE`] = 1024; a multiple of 64,
    /// at least 1024).
    pub fn new(
        spi: u32,
        cipher: Cipher,
        key: &KeyMaterial,
        esn: bool,
        replay_window: u32,
    ) -> Result<InboundSa, SaError> {
        let crypto = check_spi_and_key(spi, cipher, key, false)?;
        let window = ReplayWindow::new(replay_window).map_err(SaError::ReplayWindow)?;
        Ok(InboundSa {
            spi,
            cipher,
            esn,
            crypto,
            window,
            packets: 0,
            bytes: 0,
        })
    }

    pub fn spi(&self) -> u32 {
        self.spi
    }

    pub fn cipher(&self) -> Cipher {
        self.cipher
    }

    pub fn esn(&self) -> bool {
        self.esn
    }

    pub fn window(&self) -> &ReplayWindow {
        &self.window
    }

    /// Authenticated packets so far (including dummies and ones with a bad trailer).
    pub fn packets(&self) -> u64 {
        self.packets
    }

    /// Decrypted inner-packet bytes of authenticated packets so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Opens the ESP packet `esp` (the whole UDP 4500 payload, starting at the SPI) in place.
    ///
    /// Order (RFC 4303 section 3.4): length, SPI, replay check (cheap reject, no state change),
    /// ICV verification and decryption (AES-CBC: the ICV is verified first, then the payload
    /// decrypted), then the window update, then the trailer checks.
    pub fn open(&mut self, esp: &mut [u8]) -> Result<Opened, OpenError> {
        let len = esp.len();
        let cipher = self.cipher;
        let header_len = cipher.header_len();
        if len < cipher.min_esp_len() {
            return Err(OpenError::Truncated);
        }
        if !cipher.is_aead() && !(len - header_len - ICV_LEN).is_multiple_of(cipher.block_len()) {
            return Err(OpenError::Truncated);
        }
        let spi = u32::from_be_bytes([esp[0], esp[1], esp[2], esp[3]]);
        if spi != self.spi {
            return Err(OpenError::WrongSpi);
        }
        let low = u32::from_be_bytes([esp[4], esp[5], esp[6], esp[7]]);
        let seq = if self.esn {
            self.window.infer_esn(low).ok_or(OpenError::TooOld)?
        } else {
            u64::from(low)
        };
        self.window.check(seq).map_err(|r| match r {
            Replay::Replayed => OpenError::Replayed,
            Replay::TooOld => OpenError::TooOld,
        })?;

        self.crypto
            .open(self.spi, seq, self.esn, esp)
            .map_err(|_| OpenError::AuthFailed)?;
        let pt = &esp[header_len..len - ICV_LEN];

        // Authentic: only now may the window move (RFC 4303 section 3.4.3).
        self.window.commit(seq);
        self.packets += 1;

        let pt_len = pt.len();
        let next_header = pt[pt_len - 1];
        let pad = usize::from(pt[pt_len - 2]);
        let Some(payload_len) = pt_len.checked_sub(TRAILER_LEN + pad) else {
            self.bytes = self.bytes.saturating_add((pt_len - TRAILER_LEN) as u64);
            return Err(OpenError::BadPadding);
        };
        self.bytes = self.bytes.saturating_add(payload_len as u64);
        let padding = &pt[payload_len..payload_len + pad];
        // Counted in usize: up to 255 pad bytes are legal, and `1u8..` would overflow there.
        if padding
            .iter()
            .enumerate()
            .any(|(i, &b)| usize::from(b) != i + 1)
        {
            return Err(OpenError::BadPadding);
        }
        match next_header {
            NEXT_HEADER_IPV4 | NEXT_HEADER_IPV6 => Ok(Opened {
                inner: header_len..header_len + payload_len,
                next_header,
                seq,
            }),
            NEXT_HEADER_NONE => Err(OpenError::Dummy),
            other => Err(OpenError::BadNextHeader(other)),
        }
    }

    #[cfg(test)]
    pub(crate) fn window_mut(&mut self) -> &mut ReplayWindow {
        &mut self.window
    }
}

impl fmt::Debug for InboundSa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InboundSa")
            .field("spi", &format_args!("{:#010x}", self.spi))
            .field("cipher", &self.cipher)
            .field("esn", &self.esn)
            .field("window", &self.window)
            .field("packets", &self.packets)
            .field("bytes", &self.bytes)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;

/// TEST-ONLY (cargo feature `fuzzing`, never enabled in production): see `sa/fuzzing.rs`.
#[cfg(feature = "fuzzing")]
mod fuzzing;

#[cfg(test)]
mod resume_tests {
    use super::*;
    use crate::{HEADROOM, TAILROOM};

    #[test]
    fn a_resumed_sa_continues_above_the_given_number() {
        let cipher = Cipher::Aes256Gcm16;
        let key = KeyMaterial::new(cipher, &[7u8; 36]).unwrap();
        let mut tx = OutboundSa::resume(0x1000, cipher, &key, false, 5000).unwrap();
        assert_eq!(tx.next_seq(), Some(5000));
        let mut rx = InboundSa::new(0x1000, cipher, &key, false, 1024).unwrap();
        let mut buf = [0u8; HEADROOM + 40 + TAILROOM];
        buf[HEADROOM] = 0x45;
        let r = tx.seal(&mut buf, HEADROOM, 40, 4).unwrap();
        assert_eq!(rx.open(&mut buf[r]).unwrap().seq, 5000);
        // Past the 32-bit space without ESN: exhausted at once, never wrapped.
        let tx = OutboundSa::resume(0x1000, cipher, &key, false, 1 << 33).unwrap();
        assert_eq!(tx.next_seq(), None);
    }
}
