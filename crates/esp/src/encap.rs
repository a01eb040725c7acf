//! UDP encapsulation of ESP (RFC 3948): what arrives on UDP port 4500.
//!
//! - A single `0xFF` byte is a NAT-keepalive (section 2.3): ignore it.
//! - Four zero bytes (the non-ESP marker, section 2.2) followed by an IKE message.
//! - Anything else is ESP, whose first four bytes are the (non-zero) SPI.

use crate::ESP_HEADER_LEN;

/// The UDP port of NAT traversal (RFC 3948 / RFC 7296 section 2.23).
pub const NAT_T_PORT: u16 = 4500;
/// Precedes IKE messages on port 4500.
pub const NON_ESP_MARKER: [u8; 4] = [0; 4];
/// The whole payload of a NAT-keepalive.
pub const NAT_KEEPALIVE: u8 = 0xff;

/// What a UDP 4500 payload carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Udp4500<'a> {
    /// An ESP packet for this SPI (the whole payload is the ESP packet).
    Esp { spi: u32 },
    /// An IKE message: the payload after the non-ESP marker.
    Ike(&'a [u8]),
    /// A NAT-keepalive.
    Keepalive,
}

/// Classifies a UDP 4500 payload; `None` when it is none of the three (too short to be ESP).
pub fn classify_udp4500(payload: &[u8]) -> Option<Udp4500<'_>> {
    match payload {
        [NAT_KEEPALIVE] => Some(Udp4500::Keepalive),
        [0, 0, 0, 0, ike @ ..] => Some(Udp4500::Ike(ike)),
        [a, b, c, d, ..] if payload.len() >= ESP_HEADER_LEN => Some(Udp4500::Esp {
            spi: u32::from_be_bytes([*a, *b, *c, *d]),
        }),
        _ => None,
    }
}

/// The SPI of a UDP 4500 payload that is ESP; `None` for IKE, keepalives and runts.
pub fn spi_of(udp_payload: &[u8]) -> Option<u32> {
    match classify_udp4500(udp_payload) {
        Some(Udp4500::Esp { spi }) => Some(spi),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        assert_eq!(classify_udp4500(&[0xff]), Some(Udp4500::Keepalive));
        assert_eq!(spi_of(&[0xff]), None);
        let ike = [0, 0, 0, 0, 1, 2, 3];
        assert_eq!(classify_udp4500(&ike), Some(Udp4500::Ike(&[1, 2, 3])));
        assert_eq!(classify_udp4500(&[0, 0, 0, 0]), Some(Udp4500::Ike(&[])));
        assert_eq!(spi_of(&ike), None);
        let esp = [0xc0, 0xff, 0xee, 0x01, 0, 0, 0, 1, 9, 9];
        assert_eq!(
            classify_udp4500(&esp),
            Some(Udp4500::Esp { spi: 0xc0ff_ee01 })
        );
        assert_eq!(spi_of(&esp), Some(0xc0ff_ee01));
        // Runts: neither keepalive nor marker nor a full ESP header.
        assert_eq!(classify_udp4500(&[]), None);
        assert_eq!(classify_udp4500(&[0xfe]), None);
        assert_eq!(classify_udp4500(&[0xff, 0xff]), None);
        assert_eq!(classify_udp4500(&[0, 0, 0]), None);
        assert_eq!(classify_udp4500(&esp[..7]), None);
        assert_eq!(spi_of(&esp[..8]), Some(0xc0ff_ee01));
    }
}
