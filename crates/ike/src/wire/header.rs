//! The IKE header (RFC 7296 section 3.1).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                       IKE SA Initiator's SPI                  |
//! |                                                               |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                       IKE SA Responder's SPI                  |
//! |                                                               |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |  Next Payload | MjVer | MnVer | Exchange Type |     Flags     |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                          Message ID                           |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                            Length                             |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```

use super::reader::Reader;
use super::{DecodeError, PayloadType};

/// Size of the IKE header.
pub const HEADER_LEN: usize = 28;

/// The version byte this codec sends: major 2, minor 0.
pub const IKE_VERSION: u8 = 0x20;

wire_number! {
    /// Exchange Type (RFC 7296 section 3.1).
    pub struct ExchangeType(u8);
    /// Sets up the IKE SA: SA, KE, Nonce.
    IKE_SA_INIT = 34;
    /// Authenticates and creates the first Child SA.
    IKE_AUTH = 35;
    /// Creates or rekeys a Child SA, or rekeys the IKE SA.
    CREATE_CHILD_SA = 36;
    /// Deletes, errors and liveness checks (dead peer detection).
    INFORMATIONAL = 37;
}

impl ExchangeType {
    /// True for the four exchanges of RFC 7296, the only ones [`Header::decode`] accepts.
    pub const fn is_supported(self) -> bool {
        matches!(self.0, 34..=37)
    }
}

/// The three defined bits of the Flags octet; the other five are reserved: sent as zero and
/// ignored on receipt.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Flags {
    /// I (0x08): set in messages from the original initiator of the IKE SA, cleared in
    /// messages from the original responder (whoever sends the request).
    pub initiator: bool,
    /// V (0x10): the sender can speak a higher major version. This codec never sets it.
    pub version: bool,
    /// R (0x20): this message is a response to a message with the same message ID.
    pub response: bool,
}

impl Flags {
    /// The I bit.
    pub const INITIATOR: u8 = 0x08;
    /// The V bit.
    pub const VERSION: u8 = 0x10;
    /// The R bit.
    pub const RESPONSE: u8 = 0x20;

    /// The flags octet.
    pub const fn to_byte(self) -> u8 {
        (if self.initiator { Self::INITIATOR } else { 0 })
            | (if self.version { Self::VERSION } else { 0 })
            | (if self.response { Self::RESPONSE } else { 0 })
    }

    /// Reads the defined bits of a flags octet, ignoring the reserved ones.
    pub const fn from_byte(byte: u8) -> Flags {
        Flags {
            initiator: byte & Self::INITIATOR != 0,
            version: byte & Self::VERSION != 0,
            response: byte & Self::RESPONSE != 0,
        }
    }
}

/// The IKE header.
///
/// SPIs are the 8 octets read big-endian (`spi.to_be_bytes()` gives the wire octets, as prf+
/// input for SKEYSEED needs them). The version is always 2.0 on the wire; a received minor
/// version is ignored (RFC 7296 section 2.5) and not kept.
///
/// `next_payload` and `length` describe the encoded message: [`Header::decode`] and
/// [`Message::decode`](super::Message::decode) fill them from the wire;
/// [`Message::encode`](super::Message::encode) computes them and ignores the values here.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Header {
    /// IKE SA Initiator's SPI.
    pub spi_i: u64,
    /// IKE SA Responder's SPI; zero in the first IKE_SA_INIT request.
    pub spi_r: u64,
    /// Type of the first payload.
    pub next_payload: PayloadType,
    /// Exchange type.
    pub exchange_type: ExchangeType,
    /// I, V and R flags.
    pub flags: Flags,
    /// Message ID.
    pub message_id: u32,
    /// Length of the whole message, header included.
    pub length: u32,
}

impl Header {
    /// A header to send; `next_payload` and `length` are left zero for
    /// [`Message::encode`](super::Message::encode) to fill.
    pub const fn new(
        spi_i: u64,
        spi_r: u64,
        exchange_type: ExchangeType,
        flags: Flags,
        message_id: u32,
    ) -> Header {
        Header {
            spi_i,
            spi_r,
            next_payload: PayloadType::NONE,
            exchange_type,
            flags,
            message_id,
            length: 0,
        }
    }

    /// The header of the response to `request`: same SPIs, exchange type and message ID, R
    /// set, I the opposite of the request's (the responder of this exchange is the other end
    /// of the IKE SA), V clear. In an IKE_SA_INIT response the engine still has to put its own
    /// SPI in `spi_r`.
    pub const fn response_to(request: &Header) -> Header {
        Header::new(
            request.spi_i,
            request.spi_r,
            request.exchange_type,
            Flags {
                initiator: !request.flags.initiator,
                version: false,
                response: true,
            },
            request.message_id,
        )
    }

    /// Reads the 28 header bytes without checking version, length or exchange type (for
    /// logging, or to answer a message that [`Header::decode`] refused). Only fails with
    /// [`DecodeError::TooShort`].
    pub fn peek(datagram: &[u8]) -> Result<Header, DecodeError> {
        Self::peek_with_version(datagram).map(|(header, _)| header)
    }

    fn peek_with_version(datagram: &[u8]) -> Result<(Header, u8), DecodeError> {
        let too_short = DecodeError::TooShort {
            len: datagram.len(),
        };
        let mut r = Reader::new(datagram);
        let (
            Some(spi_i),
            Some(spi_r),
            Some([next, version, exchange, flags]),
            Some(message_id),
            Some(length),
        ) = (r.u64(), r.u64(), r.array::<4>(), r.u32(), r.u32())
        else {
            return Err(too_short);
        };
        let header = Header {
            spi_i,
            spi_r,
            next_payload: PayloadType(next),
            exchange_type: ExchangeType(exchange),
            flags: Flags::from_byte(flags),
            message_id,
            length,
        };
        Ok((header, version))
    }

    /// Reads and checks the header of a whole datagram (the UDP payload, after the non-ESP
    /// marker on port 4500): at least 28 bytes, major version 2 (a higher one is
    /// [`DecodeError::UnsupportedMajorVersion`], a lower one
    /// [`DecodeError::ObsoleteMajorVersion`]), Length equal to the datagram's length, and one
    /// of the four exchange types of RFC 7296.
    pub fn decode(datagram: &[u8]) -> Result<Header, DecodeError> {
        let (header, version) = Self::peek_with_version(datagram)?;
        let (major, minor) = (version >> 4, version & 0x0f);
        if major > 2 {
            return Err(DecodeError::UnsupportedMajorVersion {
                major,
                minor,
                header,
            });
        }
        if major < 2 {
            return Err(DecodeError::ObsoleteMajorVersion { major, minor });
        }
        if usize::try_from(header.length).ok() != Some(datagram.len()) {
            return Err(DecodeError::LengthMismatch {
                header_length: header.length,
                datagram_length: datagram.len(),
            });
        }
        if !header.exchange_type.is_supported() {
            return Err(DecodeError::UnknownExchangeType { header });
        }
        Ok(header)
    }

    /// The 28 header bytes, with the fields exactly as they are in `self` (version 2.0).
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        let fields = self
            .spi_i
            .to_be_bytes()
            .into_iter()
            .chain(self.spi_r.to_be_bytes())
            .chain([
                self.next_payload.0,
                IKE_VERSION,
                self.exchange_type.0,
                self.flags.to_byte(),
            ])
            .chain(self.message_id.to_be_bytes())
            .chain(self.length.to_be_bytes());
        for (slot, byte) in b.iter_mut().zip(fields) {
            *slot = byte;
        }
        b
    }

    /// True when the R flag is set.
    pub const fn is_response(&self) -> bool {
        self.flags.response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Header {
        Header {
            spi_i: 0x0102_0304_0506_0708,
            spi_r: 0x1112_1314_1516_1718,
            next_payload: PayloadType::SK,
            exchange_type: ExchangeType::IKE_AUTH,
            flags: Flags {
                initiator: true,
                version: false,
                response: false,
            },
            message_id: 1,
            length: 28,
        }
    }

    #[test]
    fn layout_matches_rfc_7296_3_1() {
        let b = sample().to_bytes();
        assert_eq!(
            b,
            [
                1, 2, 3, 4, 5, 6, 7, 8, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 46, 0x20,
                35, 0x08, 0, 0, 0, 1, 0, 0, 0, 28
            ]
        );
        assert_eq!(Header::decode(&b), Ok(sample()));
    }

    #[test]
    fn too_short() {
        assert_eq!(
            Header::decode(&[0u8; 27]),
            Err(DecodeError::TooShort { len: 27 })
        );
        assert_eq!(Header::peek(&[]), Err(DecodeError::TooShort { len: 0 }));
    }

    #[test]
    fn version_checks() {
        let mut b = sample().to_bytes();
        b[17] = 0x31;
        match Header::decode(&b) {
            Err(DecodeError::UnsupportedMajorVersion {
                major: 3,
                minor: 1,
                header,
            }) => {
                assert_eq!(header, sample());
            }
            other => panic!("{other:?}"),
        }
        b[17] = 0x10;
        assert_eq!(
            Header::decode(&b),
            Err(DecodeError::ObsoleteMajorVersion { major: 1, minor: 0 })
        );
        // The minor version is ignored.
        b[17] = 0x2f;
        assert_eq!(Header::decode(&b), Ok(sample()));
    }

    #[test]
    fn length_must_match_datagram() {
        let b = sample().to_bytes();
        let mut longer = b.to_vec();
        longer.push(0);
        assert_eq!(
            Header::decode(&longer),
            Err(DecodeError::LengthMismatch {
                header_length: 28,
                datagram_length: 29
            })
        );
    }

    #[test]
    fn unknown_exchange_reported() {
        let mut h = sample();
        h.exchange_type = ExchangeType(43);
        assert_eq!(
            Header::decode(&h.to_bytes()),
            Err(DecodeError::UnknownExchangeType { header: h })
        );
    }

    #[test]
    fn reserved_flag_bits_ignored() {
        let mut b = sample().to_bytes();
        b[19] = 0xc7 | 0x08;
        assert_eq!(Header::decode(&b), Ok(sample()));
    }

    #[test]
    fn response_header() {
        let req = sample();
        let resp = Header::response_to(&req);
        assert_eq!(resp.spi_i, req.spi_i);
        assert_eq!(resp.spi_r, req.spi_r);
        assert_eq!(resp.message_id, 1);
        assert_eq!(resp.exchange_type, ExchangeType::IKE_AUTH);
        assert_eq!(
            resp.flags,
            Flags {
                initiator: false,
                version: false,
                response: true
            }
        );
        // A request from the original responder is answered with I set.
        let back = Header::response_to(&Header {
            flags: Flags::default(),
            ..req
        });
        assert!(back.flags.initiator && back.flags.response);
    }
}
