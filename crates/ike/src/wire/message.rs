//! A whole IKE message: header and payloads.

use super::payload::{decode_chain, encode_chain};
use super::{
    DecodeError, EncodeError, Header, Notify, NotifyType, Payload, PayloadType, HEADER_LEN,
};

/// An IKE message. After [`Message::decode`] of a protected message, `payloads` usually holds a
/// single [`Payload::Sk`]; the engine decrypts it and decodes the plaintext with
/// [`decode_inner`](super::decode_inner).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Message {
    /// The header. `next_payload` and `length` are computed by [`Message::encode`].
    pub header: Header,
    /// The payloads in order; an SK or SKF payload can only be the last.
    pub payloads: Vec<Payload>,
}

impl Message {
    /// Encodes the message: header (version 2.0, Next Payload = first payload's type, Length =
    /// the whole message), then each payload with its generic header, Next Payload chained to
    /// the following payload (SK / SKF: to its first inner payload), the critical bit clear
    /// except for a [`RawPayload`](super::RawPayload) that has it.
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        let mut out = vec![0u8; HEADER_LEN];
        let next_payload = encode_chain(&self.payloads, &mut out, true)?;
        let length = u32::try_from(out.len()).map_err(|_| EncodeError {
            payload_type: PayloadType::NONE,
            reason: "message longer than 2^32 - 1 bytes",
        })?;
        let header = Header {
            next_payload,
            length,
            ..self.header
        };
        if let Some(slot) = out.get_mut(..HEADER_LEN) {
            slot.copy_from_slice(&header.to_bytes());
        }
        Ok(out)
    }

    /// Decodes a datagram: [`Header::decode`]'s checks, then the payload chain (see the module
    /// documentation for what is checked).
    pub fn decode(datagram: &[u8]) -> Result<Message, DecodeError> {
        let header = Header::decode(datagram)?;
        let rest = datagram.get(HEADER_LEN..).unwrap_or_default();
        let payloads = decode_chain(header.next_payload, rest, HEADER_LEN, true)?;
        Ok(Message { header, payloads })
    }

    /// For a message decoded from (or encoded to) `datagram` whose last payload is SK or SKF:
    /// `(authenticated prefix, body)`, where the prefix is every byte before the SK body (IKE
    /// header, any payloads before SK, the SK header; for SKF also Fragment Number and Total
    /// Fragments) and the body is `IV || ciphertext || ICV`. `None` if there is no SK / SKF
    /// payload or `datagram` does not end with its body.
    pub fn split_encrypted<'a>(&self, datagram: &'a [u8]) -> Option<(&'a [u8], &'a [u8])> {
        let (body, header_len) = match self.payloads.last()? {
            Payload::Sk(sk) => (&sk.body, super::SK_HEADER_LEN),
            Payload::Skf(skf) => (&skf.body, super::SKF_HEADER_LEN),
            _ => return None,
        };
        let at = datagram.len().checked_sub(body.len())?;
        if at < HEADER_LEN + header_len {
            return None;
        }
        let (prefix, tail) = datagram.split_at_checked(at)?;
        (tail == body.as_slice()).then_some((prefix, tail))
    }

    /// The Notify payloads.
    pub fn notifies(&self) -> impl Iterator<Item = &Notify> + '_ {
        self.payloads.iter().filter_map(|p| match p {
            Payload::Notify(n) => Some(n),
            _ => None,
        })
    }

    /// The first Notify payload of a type.
    pub fn notify(&self, notify_type: NotifyType) -> Option<&Notify> {
        self.notifies().find(|n| n.notify_type == notify_type)
    }

    /// The first payload of a type.
    pub fn payload(&self, payload_type: PayloadType) -> Option<&Payload> {
        self.payloads
            .iter()
            .find(|p| p.payload_type() == payload_type)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{ExchangeType, Flags, SkPayload};

    fn informational(payloads: Vec<Payload>) -> Message {
        Message {
            header: Header::new(
                1,
                2,
                ExchangeType::INFORMATIONAL,
                Flags {
                    initiator: true,
                    ..Flags::default()
                },
                7,
            ),
            payloads,
        }
    }

    #[test]
    fn empty_message() {
        let m = informational(vec![]);
        let b = m.encode().unwrap();
        assert_eq!(b.len(), 28);
        assert_eq!(b[16], 0);
        let d = Message::decode(&b).unwrap();
        assert_eq!(d.payloads, vec![]);
        assert_eq!(d.header.length, 28);
        assert_eq!(d.split_encrypted(&b), None);
    }

    #[test]
    fn finders() {
        let m = informational(vec![
            Payload::VendorId(vec![1]),
            Payload::Notify(Notify::new(NotifyType::COOKIE)),
            Payload::Notify(Notify::new(NotifyType::INITIAL_CONTACT)),
        ]);
        assert_eq!(m.notifies().count(), 2);
        assert!(m.notify(NotifyType::INITIAL_CONTACT).is_some());
        assert!(m.notify(NotifyType::REKEY_SA).is_none());
        assert_eq!(
            m.payload(PayloadType::VENDOR_ID),
            Some(&Payload::VendorId(vec![1]))
        );
    }

    #[test]
    fn split_encrypted_checks_the_datagram() {
        let m = informational(vec![
            Payload::VendorId(vec![1, 2, 3]),
            Payload::Sk(SkPayload {
                first_inner_payload: PayloadType::NONE,
                body: vec![5; 24],
            }),
        ]);
        let b = m.encode().unwrap();
        let (prefix, body) = m.split_encrypted(&b).unwrap();
        assert_eq!(prefix.len(), 28 + 7 + 4);
        assert_eq!(body, &[5; 24][..]);
        assert_eq!(m.split_encrypted(&b[..b.len() - 1]), None);
        assert_eq!(m.split_encrypted(&b[..20]), None);
    }
}
