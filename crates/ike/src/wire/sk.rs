//! The Encrypted and Authenticated payload (SK, RFC 7296 section 3.14), the Encrypted
//! Fragment payload (SKF, RFC 7383 section 2.5), and the plaintext of inner payloads.
//!
//! ```text
//! SK:                                          SKF:
//! +---------------+-+-------------+---------+  +---------------+-+-------------+---------+
//! | Next Payload  |C|  RESERVED   | Length  |  | Next Payload  |C|  RESERVED   | Length  |
//! +---------------+-+-------------+---------+  +---------------+---------------+---------+
//! |    Initialization Vector                |  |  Fragment Number  |  Total Fragments    |
//! ~    Encrypted IKE Payloads               ~  +-------------------+---------------------+
//! ~    Padding, Pad Length (encrypted)      ~  |  IV, encrypted payloads, padding,       |
//! ~    Integrity Checksum Data              ~  ~  Pad Length, ICV (as SK)                ~
//! ```
//!
//! Next Payload of SK is the type of the first inner payload; of SKF, the same in fragment 1
//! and 0 in the others. See the module documentation of [`wire`](super) for the byte ranges
//! the crypto layer authenticates.

use super::payload::{decode_chain, encode_chain};
use super::{DecodeError, EncodeError, Header, Payload, PayloadType, HEADER_LEN};

/// Size of the SK payload's header (the generic header).
pub const SK_HEADER_LEN: usize = 4;
/// Size of the SKF payload's header (generic header, Fragment Number, Total Fragments).
pub const SKF_HEADER_LEN: usize = 8;

/// The Encrypted payload, framed only: the crypto layer makes and opens the body.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SkPayload {
    /// Type of the first inner payload (the SK payload's Next Payload field); NONE for an
    /// empty plaintext (an INFORMATIONAL liveness check).
    pub first_inner_payload: PayloadType,
    /// `IV || ciphertext || ICV`, the ciphertext covering inner payloads, padding and Pad
    /// Length.
    pub body: Vec<u8>,
}

impl SkPayload {
    /// The encoded message `header || SK generic header` that precedes an SK body of
    /// `body_len` bytes, with the header's Next Payload set to SK and its Length to the whole
    /// message (`32 + body_len`). This is the AEAD additional data (and the start of what an
    /// HMAC ICV covers); append the body of exactly `body_len` bytes to get the datagram,
    /// identical to [`Message::encode`](super::Message::encode) of `header` with this single
    /// SK payload.
    pub fn message_prefix(
        header: &Header,
        first_inner_payload: PayloadType,
        body_len: usize,
    ) -> Result<Vec<u8>, EncodeError> {
        let err = |reason| EncodeError {
            payload_type: PayloadType::SK,
            reason,
        };
        let payload_len = u16::try_from(body_len.saturating_add(SK_HEADER_LEN))
            .map_err(|_| err("payload longer than 65535 bytes"))?;
        let total = u32::from(payload_len) + HEADER_LEN as u32;
        let header = Header {
            next_payload: PayloadType::SK,
            length: total,
            ..*header
        };
        let mut out = Vec::with_capacity(HEADER_LEN + SK_HEADER_LEN + body_len);
        out.extend_from_slice(&header.to_bytes());
        out.extend_from_slice(&[first_inner_payload.0, 0]);
        out.extend_from_slice(&payload_len.to_be_bytes());
        Ok(out)
    }
}

/// The Encrypted Fragment payload (RFC 7383), framed only. This gateway does not reassemble
/// fragments; the engine may drop such messages, or answer as it sees fit.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SkfPayload {
    /// Type of the first inner payload in fragment 1, NONE in the others.
    pub first_inner_payload: PayloadType,
    /// Fragment Number, from 1 (not checked by the codec).
    pub fragment_number: u16,
    /// Total Fragments (not checked by the codec).
    pub total_fragments: u16,
    /// `IV || ciphertext || ICV` of this fragment.
    pub body: Vec<u8>,
}

/// Encodes inner payloads to the plaintext that goes inside SK: the payload chain (each with
/// its generic header and Next Payload), without IKE header, padding or Pad Length. Returns
/// the type of the first payload (for [`SkPayload::first_inner_payload`]) and the bytes.
/// SK and SKF payloads are refused.
pub fn encode_inner(payloads: &[Payload]) -> Result<(PayloadType, Vec<u8>), EncodeError> {
    let mut out = Vec::new();
    let first = encode_chain(payloads, &mut out, false)?;
    Ok((first, out))
}

/// Decodes the plaintext of an SK payload (after the crypto layer removed padding and the Pad
/// Length octet) into payloads, the first of type `first_inner_payload`. The chain must fill
/// the plaintext exactly; offsets in errors count from the start of the plaintext.
pub fn decode_inner(
    first_inner_payload: PayloadType,
    plaintext: &[u8],
) -> Result<Vec<Payload>, DecodeError> {
    decode_chain(first_inner_payload, plaintext, 0, false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{ExchangeType, Flags, IdPayload, Message};

    fn header() -> Header {
        Header::new(
            0x0102_0304_0506_0708,
            0x1112_1314_1516_1718,
            ExchangeType::IKE_AUTH,
            Flags {
                initiator: true,
                ..Flags::default()
            },
            1,
        )
    }

    #[test]
    fn prefix_is_what_encode_produces() {
        let body: Vec<u8> = (0u8..80).collect();
        let prefix = SkPayload::message_prefix(&header(), PayloadType::IDI, body.len()).unwrap();
        assert_eq!(prefix.len(), HEADER_LEN + SK_HEADER_LEN);
        let msg = Message {
            header: header(),
            payloads: vec![Payload::Sk(SkPayload {
                first_inner_payload: PayloadType::IDI,
                body: body.clone(),
            })],
        };
        let encoded = msg.encode().unwrap();
        assert_eq!(encoded[..32], prefix[..]);
        assert_eq!(encoded[32..], body[..]);
        // Length = 28 + 4 + 80 = 112; SK header: next IDi, length 84.
        assert_eq!(encoded[24..28], [0, 0, 0, 112]);
        assert_eq!(encoded[16], 46);
        assert_eq!(encoded[28..32], [35, 0, 0, 84]);

        let decoded = Message::decode(&encoded).unwrap();
        assert_eq!(
            decoded.split_encrypted(&encoded),
            Some((&prefix[..], &body[..]))
        );
        assert!(SkPayload::message_prefix(&header(), PayloadType::IDI, 65532).is_err());
        assert!(SkPayload::message_prefix(&header(), PayloadType::IDI, 65531).is_ok());
    }

    #[test]
    fn skf_framing() {
        let msg = Message {
            header: header(),
            payloads: vec![Payload::Skf(SkfPayload {
                first_inner_payload: PayloadType::IDI,
                fragment_number: 1,
                total_fragments: 3,
                body: vec![9; 20],
            })],
        };
        let encoded = msg.encode().unwrap();
        assert_eq!(encoded[16], 53);
        assert_eq!(encoded[28..36], [35, 0, 0, 28, 0, 1, 0, 3]);
        let decoded = Message::decode(&encoded).unwrap();
        let (aad, body) = decoded.split_encrypted(&encoded).unwrap();
        assert_eq!(aad, &encoded[..36]);
        assert_eq!(body, &[9; 20][..]);
        // Too short for the fragment fields.
        let mut bytes = header().to_bytes().to_vec();
        bytes[16] = 53;
        bytes.extend_from_slice(&[35, 0, 0, 6, 0, 1]);
        bytes[27] = 34;
        assert!(matches!(
            Message::decode(&bytes),
            Err(DecodeError::Malformed { .. })
        ));
    }

    #[test]
    fn inner_round_trip() {
        let payloads = vec![
            Payload::IdI(IdPayload::fqdn("gw.example")),
            Payload::VendorId(vec![1, 2]),
        ];
        let (first, plain) = encode_inner(&payloads).unwrap();
        assert_eq!(first, PayloadType::IDI);
        assert_eq!(plain[..4], [43, 0, 0, 18]);
        assert_eq!(decode_inner(first, &plain).unwrap(), payloads);
        assert_eq!(encode_inner(&[]).unwrap(), (PayloadType::NONE, vec![]));
        assert_eq!(decode_inner(PayloadType::NONE, &[]).unwrap(), vec![]);
        let nested = Payload::Sk(SkPayload {
            first_inner_payload: PayloadType::NONE,
            body: vec![],
        });
        assert!(encode_inner(&[nested]).is_err());
    }
}
