//! The IKEv2 message codec (RFC 7296 section 3; RFC 7383 for the Encrypted Fragment payload).
//!
//! [`Message::decode`] turns a datagram (the UDP payload; on port 4500 after the 4-byte non-ESP
//! marker) into a [`Header`] and a list of typed [`Payload`]s; [`Message::encode`] does the
//! reverse, computing every length, count and Next Payload field. Any input bytes give a value
//! or a [`DecodeError`] that says what is wrong and where; nothing panics. Encoding a value
//! that does not fit the wire gives an [`EncodeError`].
//!
//! # What the codec checks
//!
//! - The header ([`Header::decode`]): 28 bytes at least; major version 2 (a higher one is
//!   reported as [`DecodeError::UnsupportedMajorVersion`] with the header, so that the engine
//!   can answer INVALID_MAJOR_VERSION; a lower one as [`DecodeError::ObsoleteMajorVersion`]);
//!   Length equal to the datagram's length; an exchange type of RFC 7296 (others are
//!   [`DecodeError::UnknownExchangeType`]). The minor version and the reserved flag bits are
//!   ignored.
//! - The payload chain: every generic header and Payload Length fits the message, nothing
//!   follows the last payload, SK / SKF is the last payload of a message and never appears
//!   inside decrypted plaintext.
//! - Payload types: those of RFC 7296 that are modelled decode to typed variants; CERT,
//!   CERTREQ, CP and EAP (defined by RFC 7296 but not used by this gateway) are kept as
//!   [`RawPayload`] whatever their critical bit; any other type is kept as [`RawPayload`] if
//!   its critical bit is clear and rejected with [`DecodeError::UnsupportedCriticalPayload`]
//!   if it is set (RFC 7296 section 2.5). The critical bit of known types is ignored on
//!   receipt and sent as zero.
//! - Payload bodies: fixed fields present; in SA payloads, proposal / transform / attribute
//!   lengths nested exactly, the "last substructure" markers (0 / 2 for proposals, 0 / 3 for
//!   transforms) and the transform count consistent, SPI sizes 0, 4 or 8; Nonce data 16 to 256
//!   bytes; Notify SPI size 0, 4 or 8; Delete SPI size 4 (or 0 with no SPIs) and SPI count
//!   matching the body; traffic selectors of type 7 or 8 with selector length 16 or 40 and a
//!   count matching the body (other TS types are
//!   [`DecodeError::UnsupportedTrafficSelector`]).
//!
//! # What it leaves to the engine
//!
//! Which payloads an exchange must or may carry and how many; proposal numbering (first 1,
//! then consecutive) and whether an SA payload is empty; SPI sizes against the protocol ID
//! (0 or 8 for IKE, 4 for ESP); whether a KE payload's data has the right length for its
//! group, or matches the group of the chosen proposal; the ID data against its ID type; what
//! a Notify's data means (helpers such as [`Notify::invalid_ke_group`] read common ones); the
//! Encrypted Fragment payload's fragment numbers (reassembly is not supported); message IDs,
//! windows and retransmissions; and all of the cryptography.
//!
//! # The Encrypted payload (SK) and the crypto layer
//!
//! The codec only frames SK: [`SkPayload`] holds the type of the first inner payload and the
//! body, `IV || ciphertext || ICV`, exactly as on the wire. Inner payloads go through
//! [`encode_inner`] (payloads to plaintext: the chain of inner payloads without the IKE header,
//! without padding and without the Pad Length octet) and [`decode_inner`] (plaintext, after
//! the crypto layer removed padding and Pad Length, back to payloads).
//!
//! Byte ranges: SK is always the last payload, so its body is always the last
//! `sk.body.len()` bytes of the encoded message, and everything before is the authenticated
//! prefix. With only an SK payload (the usual case) that prefix is bytes `0..32`: the 28-byte
//! IKE header (whose Length already counts the whole message, ICV included) followed by the
//! 4-byte SK generic header (Next Payload = first inner payload type, critical bit clear,
//! Payload Length = 4 + body length). This prefix is the AAD of AES-GCM / ChaCha20-Poly1305
//! (RFC 5282 section 5.1, RFC 7634), and for AES-CBC + HMAC the ICV covers the prefix plus
//! IV and ciphertext, i.e. every byte before the ICV (RFC 7296 section 3.14).
//!
//! - Sending: build the prefix with [`SkPayload::message_prefix`] (it needs the final body
//!   length, which the crypto layer knows: IV + padded plaintext + Pad Length octet + ICV),
//!   then append the body. The result equals [`Message::encode`] of a message whose only
//!   payload is that [`SkPayload`].
//! - Receiving: [`Message::decode`], then [`Message::split_encrypted`] on the same datagram
//!   gives `(prefix, body)`.
//!
//! For SKF (RFC 7383 section 2.5) the same holds with an 8-byte payload header (generic
//! header, Fragment Number, Total Fragments): the AAD is bytes `0..36`.
//!
//! # Numbers
//!
//! Registry values (payload, exchange, transform, notify, ID types, ...) are newtypes over the
//! wire integer with named constants, such as [`NotifyType::COOKIE`]; any value round-trips,
//! and `Debug` / `Display` print the registry name when there is one.

/// A newtype over a wire integer with named constants and a `Debug` / `Display` that prints
/// the name.
macro_rules! wire_number {
    (
        $(#[$meta:meta])*
        pub struct $name:ident($ty:ty);
        $( $(#[$cmeta:meta])* $konst:ident = $value:literal; )*
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub $ty);

        impl $name {
            $( $(#[$cmeta])* pub const $konst: $name = $name($value); )*

            /// The IANA registry name of this value, if this crate knows it.
            pub const fn name(self) -> Option<&'static str> {
                match self.0 {
                    $( $value => Some(stringify!($konst)), )*
                    _ => None,
                }
            }
        }

        impl core::fmt::Debug for $name {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                match self.name() {
                    Some(name) => f.write_str(name),
                    None => write!(f, "{}({})", stringify!($name), self.0),
                }
            }
        }

        impl core::fmt::Display for $name {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                core::fmt::Debug::fmt(self, f)
            }
        }

        impl From<$ty> for $name {
            fn from(value: $ty) -> $name {
                $name(value)
            }
        }

        impl From<$name> for $ty {
            fn from(value: $name) -> $ty {
                value.0
            }
        }
    };
}

mod error;
mod header;
mod message;
mod notify;
mod payload;
mod reader;
mod sa;
mod sk;
mod ts;

#[cfg(test)]
mod golden_tests;
#[cfg(test)]
mod prop_tests;

pub use error::{DecodeError, EncodeError};
pub use header::{ExchangeType, Flags, Header, HEADER_LEN, IKE_VERSION};
pub use message::Message;
pub use notify::{Notify, NotifyType};
pub use payload::{
    AuthMethod, AuthPayload, Delete, IdPayload, IdType, KePayload, Payload, PayloadType,
    RawPayload, GENERIC_HEADER_LEN, NONCE_MAX_LEN, NONCE_MIN_LEN,
};
pub use sa::{
    Attribute, AttributeType, AttributeValue, DhGroup, EncrId, EsnId, IntegId, PrfId, Proposal,
    ProtocolId, SaPayload, Spi, Transform, TransformType,
};
pub use sk::{decode_inner, encode_inner, SkPayload, SkfPayload, SKF_HEADER_LEN, SK_HEADER_LEN};
pub use ts::{narrow, AddressRange, TrafficSelector, TsPayload, TsType};
