//! What can be wrong with received bytes ([`DecodeError`]) or with a message to send
//! ([`EncodeError`]).

use core::fmt;

use super::{Header, Notify, NotifyType, PayloadType};

/// Why bytes are not a valid IKEv2 message (or a valid chain of payloads).
///
/// Offsets count from the start of the datagram for [`Message::decode`](super::Message::decode)
/// and from the start of the plaintext for [`decode_inner`](super::decode_inner); an offset of a
/// payload is that of its generic header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// Fewer bytes than the 28-byte IKE header.
    TooShort {
        /// The datagram's length.
        len: usize,
    },
    /// The major version is above 2. RFC 7296 section 2.5: drop the message and, if it is a
    /// request, the engine SHOULD answer INVALID_MAJOR_VERSION (an unprotected notification,
    /// with this header's SPIs and message ID; see [`DecodeError::suggested_notify`]).
    UnsupportedMajorVersion {
        /// Major version received.
        major: u8,
        /// Minor version received.
        minor: u8,
        /// The header as far as it could be read (its fields, not checked further).
        header: Header,
    },
    /// The major version is below 2 (IKEv1, or not IKE at all): drop without an answer.
    ObsoleteMajorVersion {
        /// Major version received.
        major: u8,
        /// Minor version received.
        minor: u8,
    },
    /// The header's Length field differs from the datagram's length.
    LengthMismatch {
        /// The Length field.
        header_length: u32,
        /// The datagram's length.
        datagram_length: usize,
    },
    /// An exchange type other than IKE_SA_INIT, IKE_AUTH, CREATE_CHILD_SA and INFORMATIONAL.
    UnknownExchangeType {
        /// The header, with the exchange type received.
        header: Header,
    },
    /// A payload (or its generic header) runs past the end of the message.
    Truncated {
        /// The payload's type (the Next Payload field before it).
        payload_type: PayloadType,
        /// Offset of the payload.
        offset: usize,
        /// Bytes the payload needs (4 for its header, else its Payload Length).
        needed: usize,
        /// Bytes left in the message at that offset.
        available: usize,
    },
    /// A Payload Length below 4, the size of the generic payload header.
    BadPayloadLength {
        /// The payload's type.
        payload_type: PayloadType,
        /// Offset of the payload.
        offset: usize,
        /// The Payload Length field.
        length: u16,
    },
    /// A known payload whose body breaks RFC 7296 (a field out of range, a substructure whose
    /// length disagrees with its container, ...).
    Malformed {
        /// The payload's type.
        payload_type: PayloadType,
        /// Offset of the payload.
        offset: usize,
        /// What is wrong.
        reason: &'static str,
    },
    /// A payload of a type this codec does not know, with the critical bit set. RFC 7296
    /// section 2.5: reject the message; answer a request with UNSUPPORTED_CRITICAL_PAYLOAD
    /// carrying this one-octet type.
    UnsupportedCriticalPayload {
        /// The unknown payload type.
        payload_type: PayloadType,
        /// Offset of the payload.
        offset: usize,
    },
    /// A traffic selector of a type other than TS_IPV4_ADDR_RANGE and TS_IPV6_ADDR_RANGE.
    UnsupportedTrafficSelector {
        /// TSi or TSr.
        payload_type: PayloadType,
        /// Offset of the payload.
        offset: usize,
        /// The TS Type received.
        ts_type: u8,
    },
    /// An Encrypted (SK) or Encrypted Fragment (SKF) payload that is not the last payload;
    /// RFC 7296 section 3.14 and RFC 7383 section 2.5 require it to be last.
    EncryptedNotLast {
        /// SK or SKF.
        payload_type: PayloadType,
        /// Offset of the payload.
        offset: usize,
    },
    /// An SK or SKF payload inside decrypted plaintext.
    NestedEncrypted {
        /// SK or SKF.
        payload_type: PayloadType,
        /// Offset of the payload (in the plaintext).
        offset: usize,
    },
    /// Bytes after the last payload (the one whose Next Payload is 0).
    TrailingBytes {
        /// Offset of the first byte not covered by a payload.
        offset: usize,
        /// How many bytes follow.
        count: usize,
    },
}

impl DecodeError {
    /// The notification RFC 7296 asks for when a *request* fails to decode this way, if any.
    ///
    /// The engine decides whether to send it: never answer a response; send INVALID_SYNTAX
    /// only inside an exchange whose integrity was verified (section 2.21.2 / 3.10.1; for an
    /// unprotected IKE_SA_INIT request just drop it); UNSUPPORTED_CRITICAL_PAYLOAD and
    /// INVALID_MAJOR_VERSION may go out unprotected.
    pub fn suggested_notify(&self) -> Option<Notify> {
        match self {
            DecodeError::UnsupportedMajorVersion { .. } => {
                Some(Notify::new(NotifyType::INVALID_MAJOR_VERSION))
            }
            DecodeError::UnsupportedCriticalPayload { payload_type, .. } => {
                Some(Notify::unsupported_critical_payload(*payload_type))
            }
            DecodeError::UnsupportedTrafficSelector { .. } => {
                Some(Notify::new(NotifyType::TS_UNACCEPTABLE))
            }
            DecodeError::Truncated { .. }
            | DecodeError::BadPayloadLength { .. }
            | DecodeError::Malformed { .. }
            | DecodeError::EncryptedNotLast { .. }
            | DecodeError::NestedEncrypted { .. }
            | DecodeError::TrailingBytes { .. } => Some(Notify::new(NotifyType::INVALID_SYNTAX)),
            DecodeError::TooShort { .. }
            | DecodeError::ObsoleteMajorVersion { .. }
            | DecodeError::LengthMismatch { .. }
            | DecodeError::UnknownExchangeType { .. } => None,
        }
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::TooShort { len } => {
                write!(f, "{len} bytes is shorter than the 28-byte IKE header")
            }
            DecodeError::UnsupportedMajorVersion { major, minor, .. } => {
                write!(f, "unsupported IKE version {major}.{minor} (this is 2.0)")
            }
            DecodeError::ObsoleteMajorVersion { major, minor } => {
                write!(f, "IKE version {major}.{minor} is not IKEv2")
            }
            DecodeError::LengthMismatch { header_length, datagram_length } => write!(
                f,
                "header length {header_length} differs from the datagram's {datagram_length} bytes"
            ),
            DecodeError::UnknownExchangeType { header } => {
                write!(f, "unknown exchange type {}", header.exchange_type.0)
            }
            DecodeError::Truncated { payload_type, offset, needed, available } => write!(
                f,
                "{payload_type} payload at offset {offset} truncated: needs {needed} bytes, {available} left"
            ),
            DecodeError::BadPayloadLength { payload_type, offset, length } => write!(
                f,
                "{payload_type} payload at offset {offset} has length {length}, less than its 4-byte header"
            ),
            DecodeError::Malformed { payload_type, offset, reason } => {
                write!(f, "{payload_type} payload at offset {offset} malformed: {reason}")
            }
            DecodeError::UnsupportedCriticalPayload { payload_type, offset } => write!(
                f,
                "unsupported critical payload type {} at offset {offset}",
                payload_type.0
            ),
            DecodeError::UnsupportedTrafficSelector { payload_type, offset, ts_type } => write!(
                f,
                "{payload_type} payload at offset {offset}: unsupported traffic selector type {ts_type}"
            ),
            DecodeError::EncryptedNotLast { payload_type, offset } => write!(
                f,
                "{payload_type} payload at offset {offset} is not the last payload"
            ),
            DecodeError::NestedEncrypted { payload_type, offset } => write!(
                f,
                "{payload_type} payload at offset {offset} inside encrypted plaintext"
            ),
            DecodeError::TrailingBytes { offset, count } => {
                write!(f, "{count} bytes after the last payload, at offset {offset}")
            }
        }
    }
}

impl std::error::Error for DecodeError {}

/// Why a message (or payload chain) cannot be encoded: a field does not fit its wire size, or
/// a value breaks a rule of RFC 7296 that the codec enforces (see the module documentation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodeError {
    /// The payload being encoded ([`PayloadType::NONE`] for the message as a whole).
    pub payload_type: PayloadType,
    /// What does not fit.
    pub reason: &'static str,
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.payload_type == PayloadType::NONE {
            write!(f, "cannot encode message: {}", self.reason)
        } else {
            write!(
                f,
                "cannot encode {} payload: {}",
                self.payload_type, self.reason
            )
        }
    }
}

impl std::error::Error for EncodeError {}
