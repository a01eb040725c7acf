//! Payloads, the generic payload header chain (RFC 7296 section 3.2), and the simple payload
//! bodies: KE (3.4), ID (3.5), AUTH (3.8), Nonce (3.9), Delete (3.11), Vendor ID (3.12).
//!
//! ```text
//!                      1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! | Next Payload  |C|  RESERVED   |         Payload Length        |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::notify::Notify;
use super::reader::{patch_len16, Reader};
use super::sa::{DhGroup, ProtocolId, SaPayload};
use super::sk::{SkPayload, SkfPayload};
use super::ts::TsPayload;
use super::{DecodeError, EncodeError};

/// Size of the generic payload header.
pub const GENERIC_HEADER_LEN: usize = 4;
/// Smallest Nonce data (RFC 7296 section 3.9).
pub const NONCE_MIN_LEN: usize = 16;
/// Largest Nonce data (RFC 7296 section 3.9).
pub const NONCE_MAX_LEN: usize = 256;

/// The critical bit of the generic payload header.
const CRITICAL: u8 = 0x80;

wire_number! {
    /// Payload type, as found in Next Payload fields (RFC 7296 section 3.2, RFC 7383).
    pub struct PayloadType(u8);
    /// No next payload: the end of the chain.
    NONE = 0;
    /// Security Association.
    SA = 33;
    /// Key Exchange.
    KE = 34;
    /// Identification - Initiator.
    IDI = 35;
    /// Identification - Responder.
    IDR = 36;
    /// Certificate (kept raw).
    CERT = 37;
    /// Certificate Request (kept raw).
    CERTREQ = 38;
    /// Authentication.
    AUTH = 39;
    /// Nonce.
    NONCE = 40;
    /// Notify.
    NOTIFY = 41;
    /// Delete.
    DELETE = 42;
    /// Vendor ID.
    VENDOR_ID = 43;
    /// Traffic Selector - Initiator.
    TSI = 44;
    /// Traffic Selector - Responder.
    TSR = 45;
    /// Encrypted and Authenticated.
    SK = 46;
    /// Configuration (kept raw).
    CP = 47;
    /// Extensible Authentication (kept raw).
    EAP = 48;
    /// Encrypted and Authenticated Fragment (RFC 7383).
    SKF = 53;
}

impl PayloadType {
    /// True for the types that decode to a typed [`Payload`] variant other than
    /// [`Payload::Raw`] (and for NONE, which is no payload at all).
    pub const fn is_modelled(self) -> bool {
        matches!(self.0, 0 | 33..=36 | 39..=46 | 53)
    }

    /// True for types this codec recognises, whose critical bit is therefore ignored: the
    /// modelled ones and CERT, CERTREQ, CP and EAP.
    pub const fn is_recognised(self) -> bool {
        matches!(self.0, 33..=48 | 53)
    }
}

/// A payload of a type not modelled here, kept as received: an unknown type with the critical
/// bit clear, or CERT, CERTREQ, CP or EAP.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RawPayload {
    /// Its type (never a modelled one when encoding).
    pub payload_type: PayloadType,
    /// The critical bit as received; sent as is.
    pub critical: bool,
    /// The bytes after the generic header.
    pub body: Vec<u8>,
}

/// Key Exchange payload (RFC 7296 section 3.4): the Diffie-Hellman group and the public value.
/// The two reserved octets are ignored on receipt and sent as zero.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct KePayload {
    /// Diffie-Hellman Group Num.
    pub group: DhGroup,
    /// Key Exchange Data (its length is the engine's business to check).
    pub data: Vec<u8>,
}

wire_number! {
    /// ID Type of IDi / IDr payloads (RFC 7296 section 3.5).
    pub struct IdType(u8);
    /// A single four-octet IPv4 address.
    IPV4_ADDR = 1;
    /// A fully qualified domain name, no terminator.
    FQDN = 2;
    /// An RFC 822 email address, no terminator.
    RFC822_ADDR = 3;
    /// A single sixteen-octet IPv6 address.
    IPV6_ADDR = 5;
    /// A binary DER encoded ASN.1 X.500 Distinguished Name.
    DER_ASN1_DN = 9;
    /// A binary DER encoded ASN.1 X.509 GeneralName.
    DER_ASN1_GN = 10;
    /// An opaque octet stream.
    KEY_ID = 11;
}

/// Identification payload, IDi or IDr (RFC 7296 section 3.5).
///
/// AUTH is computed over the payload body (RestOfInitIDPayload / RestOfRespIDPayload,
/// section 2.15: ID Type, the three reserved octets and the data), so the reserved octets
/// are kept as received: [`IdPayload::body`] returns exactly the received bytes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct IdPayload {
    /// ID Type.
    pub id_type: IdType,
    /// The RESERVED octets, kept as received (zero when sending).
    pub reserved: [u8; 3],
    /// Identification Data.
    pub data: Vec<u8>,
}

impl IdPayload {
    /// An identity of a type and data, reserved octets zero.
    pub fn new(id_type: IdType, data: impl Into<Vec<u8>>) -> IdPayload {
        IdPayload {
            id_type,
            reserved: [0; 3],
            data: data.into(),
        }
    }

    /// ID_IPV4_ADDR or ID_IPV6_ADDR.
    pub fn ip(addr: IpAddr) -> IdPayload {
        match addr {
            IpAddr::V4(a) => IdPayload::new(IdType::IPV4_ADDR, a.octets()),
            IpAddr::V6(a) => IdPayload::new(IdType::IPV6_ADDR, a.octets()),
        }
    }

    /// ID_FQDN.
    pub fn fqdn(name: &str) -> IdPayload {
        IdPayload::new(IdType::FQDN, name.as_bytes())
    }

    /// ID_RFC822_ADDR.
    pub fn rfc822(addr: &str) -> IdPayload {
        IdPayload::new(IdType::RFC822_ADDR, addr.as_bytes())
    }

    /// ID_KEY_ID.
    pub fn key_id(id: &[u8]) -> IdPayload {
        IdPayload::new(IdType::KEY_ID, id)
    }

    /// The address of an ID_IPV4_ADDR / ID_IPV6_ADDR identity whose data has the right size.
    pub fn ip_addr(&self) -> Option<IpAddr> {
        match self.id_type {
            IdType::IPV4_ADDR => <[u8; 4]>::try_from(self.data.as_slice())
                .ok()
                .map(|a| Ipv4Addr::from(a).into()),
            IdType::IPV6_ADDR => <[u8; 16]>::try_from(self.data.as_slice())
                .ok()
                .map(|a| Ipv6Addr::from(a).into()),
            _ => None,
        }
    }

    /// The payload body, the input of the AUTH computation: ID Type, RESERVED, data.
    pub fn body(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(4 + self.data.len());
        out.push(self.id_type.0);
        out.extend_from_slice(&self.reserved);
        out.extend_from_slice(&self.data);
        out
    }
}

wire_number! {
    /// Auth Method of the AUTH payload (RFC 7296 section 3.8, RFC 7427).
    pub struct AuthMethod(u8);
    /// RSA Digital Signature.
    RSA_SIG = 1;
    /// Shared Key Message Integrity Code.
    SHARED_KEY_MIC = 2;
    /// DSS Digital Signature.
    DSS_SIG = 3;
    /// Digital Signature (RFC 7427).
    DIGITAL_SIGNATURE = 14;
}

/// Authentication payload (RFC 7296 section 3.8). The reserved octets are ignored on receipt
/// and sent as zero.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct AuthPayload {
    /// Auth Method.
    pub method: AuthMethod,
    /// Authentication Data.
    pub data: Vec<u8>,
}

/// Delete payload (RFC 7296 section 3.11).
///
/// Deleting the IKE SA: protocol IKE, no SPIs (sent with SPI Size 0). Deleting Child SAs:
/// protocol ESP or AH and the SPIs, each four octets (SPI Size 4), read big-endian.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Delete {
    /// Protocol ID.
    pub protocol: ProtocolId,
    /// The SPIs, as the receiving end of each SA knows them (the sender's inbound SPIs).
    pub spis: Vec<u32>,
}

/// One payload, typed where this codec models the type.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Payload {
    /// Security Association (33).
    Sa(SaPayload),
    /// Key Exchange (34).
    Ke(KePayload),
    /// Identification - Initiator (35).
    IdI(IdPayload),
    /// Identification - Responder (36).
    IdR(IdPayload),
    /// Authentication (39).
    Auth(AuthPayload),
    /// Nonce (40): the Nonce Data, 16 to 256 bytes.
    Nonce(Vec<u8>),
    /// Notify (41).
    Notify(Notify),
    /// Delete (42).
    Delete(Delete),
    /// Vendor ID (43): the opaque Vendor ID.
    VendorId(Vec<u8>),
    /// Traffic Selector - Initiator (44).
    TsI(TsPayload),
    /// Traffic Selector - Responder (45).
    TsR(TsPayload),
    /// Encrypted and Authenticated (46); always last.
    Sk(SkPayload),
    /// Encrypted and Authenticated Fragment (53, RFC 7383); always last.
    Skf(SkfPayload),
    /// Any other type, kept as received.
    Raw(RawPayload),
}

impl Payload {
    /// This payload's type, as the Next Payload field before it says.
    pub fn payload_type(&self) -> PayloadType {
        match self {
            Payload::Sa(_) => PayloadType::SA,
            Payload::Ke(_) => PayloadType::KE,
            Payload::IdI(_) => PayloadType::IDI,
            Payload::IdR(_) => PayloadType::IDR,
            Payload::Auth(_) => PayloadType::AUTH,
            Payload::Nonce(_) => PayloadType::NONCE,
            Payload::Notify(_) => PayloadType::NOTIFY,
            Payload::Delete(_) => PayloadType::DELETE,
            Payload::VendorId(_) => PayloadType::VENDOR_ID,
            Payload::TsI(_) => PayloadType::TSI,
            Payload::TsR(_) => PayloadType::TSR,
            Payload::Sk(_) => PayloadType::SK,
            Payload::Skf(_) => PayloadType::SKF,
            Payload::Raw(raw) => raw.payload_type,
        }
    }

    /// Appends the body (everything after the generic header).
    fn encode_body(&self, out: &mut Vec<u8>) -> Result<(), &'static str> {
        match self {
            Payload::Sa(sa) => sa.encode_body(out)?,
            Payload::Ke(ke) => {
                out.extend_from_slice(&ke.group.0.to_be_bytes());
                out.extend_from_slice(&[0, 0]);
                out.extend_from_slice(&ke.data);
            }
            Payload::IdI(id) | Payload::IdR(id) => {
                out.push(id.id_type.0);
                out.extend_from_slice(&id.reserved);
                out.extend_from_slice(&id.data);
            }
            Payload::Auth(auth) => {
                out.extend_from_slice(&[auth.method.0, 0, 0, 0]);
                out.extend_from_slice(&auth.data);
            }
            Payload::Nonce(nonce) => {
                if !(NONCE_MIN_LEN..=NONCE_MAX_LEN).contains(&nonce.len()) {
                    return Err("nonce data must be 16 to 256 bytes");
                }
                out.extend_from_slice(nonce);
            }
            Payload::Notify(n) => n.encode_body(out),
            Payload::Delete(d) => {
                let spi_size = if d.protocol == ProtocolId::IKE && d.spis.is_empty() {
                    0
                } else {
                    4
                };
                let count = u16::try_from(d.spis.len()).map_err(|_| "more than 65535 SPIs")?;
                out.extend_from_slice(&[d.protocol.0, spi_size]);
                out.extend_from_slice(&count.to_be_bytes());
                for spi in &d.spis {
                    out.extend_from_slice(&spi.to_be_bytes());
                }
            }
            Payload::VendorId(v) => out.extend_from_slice(v),
            Payload::TsI(ts) | Payload::TsR(ts) => ts.encode_body(out)?,
            Payload::Sk(sk) => out.extend_from_slice(&sk.body),
            Payload::Skf(skf) => {
                out.extend_from_slice(&skf.fragment_number.to_be_bytes());
                out.extend_from_slice(&skf.total_fragments.to_be_bytes());
                out.extend_from_slice(&skf.body);
            }
            Payload::Raw(raw) => {
                if raw.payload_type.is_modelled() {
                    return Err("a raw payload may not have a type this codec models");
                }
                out.extend_from_slice(&raw.body);
            }
        }
        Ok(())
    }
}

/// What is wrong with one payload body; the chain adds type and offset.
#[derive(Debug)]
pub(crate) enum BodyError {
    Malformed(&'static str),
    UnsupportedTs(u8),
    UnsupportedCritical,
}

impl BodyError {
    fn at(self, payload_type: PayloadType, offset: usize) -> DecodeError {
        match self {
            BodyError::Malformed(reason) => DecodeError::Malformed {
                payload_type,
                offset,
                reason,
            },
            BodyError::UnsupportedTs(ts_type) => DecodeError::UnsupportedTrafficSelector {
                payload_type,
                offset,
                ts_type,
            },
            BodyError::UnsupportedCritical => DecodeError::UnsupportedCriticalPayload {
                payload_type,
                offset,
            },
        }
    }
}

/// `Option` to a malformed-body error.
pub(crate) fn need<T>(value: Option<T>, reason: &'static str) -> Result<T, BodyError> {
    value.ok_or(BodyError::Malformed(reason))
}

fn decode_body(
    payload_type: PayloadType,
    critical: bool,
    body: &[u8],
) -> Result<Payload, BodyError> {
    let mut r = Reader::new(body);
    Ok(match payload_type {
        PayloadType::SA => Payload::Sa(SaPayload::decode_body(body)?),
        PayloadType::KE => {
            let group = need(r.u16(), "KE payload shorter than its fixed fields")?;
            need(r.take(2), "KE payload shorter than its fixed fields")?;
            Payload::Ke(KePayload {
                group: DhGroup(group),
                data: r.rest().to_vec(),
            })
        }
        PayloadType::IDI | PayloadType::IDR => {
            let [id_type, r0, r1, r2] =
                need(r.array::<4>(), "ID payload shorter than its fixed fields")?;
            let id = IdPayload {
                id_type: IdType(id_type),
                reserved: [r0, r1, r2],
                data: r.rest().to_vec(),
            };
            if payload_type == PayloadType::IDI {
                Payload::IdI(id)
            } else {
                Payload::IdR(id)
            }
        }
        PayloadType::AUTH => {
            let [method, ..] = need(r.array::<4>(), "AUTH payload shorter than its fixed fields")?;
            Payload::Auth(AuthPayload {
                method: AuthMethod(method),
                data: r.rest().to_vec(),
            })
        }
        PayloadType::NONCE => {
            if !(NONCE_MIN_LEN..=NONCE_MAX_LEN).contains(&body.len()) {
                return Err(BodyError::Malformed("nonce data must be 16 to 256 bytes"));
            }
            Payload::Nonce(body.to_vec())
        }
        PayloadType::NOTIFY => Payload::Notify(Notify::decode_body(body)?),
        PayloadType::DELETE => {
            let [protocol, spi_size, n0, n1] = need(
                r.array::<4>(),
                "Delete payload shorter than its fixed fields",
            )?;
            let count = usize::from(u16::from_be_bytes([n0, n1]));
            let spis = match (spi_size, count) {
                (0, 0) => Vec::new(),
                (4, _) => {
                    if r.len() != count.saturating_mul(4) {
                        return Err(BodyError::Malformed(
                            "Delete SPI count does not match the payload length",
                        ));
                    }
                    let mut spis = Vec::with_capacity(count);
                    while let Some(spi) = r.u32() {
                        spis.push(spi);
                    }
                    spis
                }
                _ => {
                    return Err(BodyError::Malformed(
                        "Delete SPI size must be 4 (or 0 with no SPIs)",
                    ))
                }
            };
            if !r.is_empty() {
                return Err(BodyError::Malformed(
                    "Delete SPI count does not match the payload length",
                ));
            }
            Payload::Delete(Delete {
                protocol: ProtocolId(protocol),
                spis,
            })
        }
        PayloadType::VENDOR_ID => Payload::VendorId(body.to_vec()),
        PayloadType::TSI => Payload::TsI(TsPayload::decode_body(body)?),
        PayloadType::TSR => Payload::TsR(TsPayload::decode_body(body)?),
        _ if payload_type.is_recognised() || !critical => Payload::Raw(RawPayload {
            payload_type,
            critical,
            body: body.to_vec(),
        }),
        _ => return Err(BodyError::UnsupportedCritical),
    })
}

/// Decodes a chain of payloads starting with type `first` that must fill `data` exactly.
/// `base` is the offset of `data` for error reports; `outer` allows SK / SKF (as the last
/// payload), which then ends the chain: its Next Payload is the first inner payload's type.
pub(crate) fn decode_chain(
    first: PayloadType,
    data: &[u8],
    base: usize,
    outer: bool,
) -> Result<Vec<Payload>, DecodeError> {
    let mut payloads = Vec::new();
    let mut next = first;
    let mut r = Reader::new(data);
    while next != PayloadType::NONE {
        let payload_type = next;
        let offset = base.saturating_add(data.len() - r.len());
        let available = r.len();
        let Some([next_byte, flags, l0, l1]) = r.array::<4>() else {
            return Err(DecodeError::Truncated {
                payload_type,
                offset,
                needed: GENERIC_HEADER_LEN,
                available,
            });
        };
        let length = u16::from_be_bytes([l0, l1]);
        let Some(body_len) = usize::from(length).checked_sub(GENERIC_HEADER_LEN) else {
            return Err(DecodeError::BadPayloadLength {
                payload_type,
                offset,
                length,
            });
        };
        let Some(body) = r.take(body_len) else {
            return Err(DecodeError::Truncated {
                payload_type,
                offset,
                needed: usize::from(length),
                available,
            });
        };
        next = PayloadType(next_byte);
        if payload_type == PayloadType::SK || payload_type == PayloadType::SKF {
            if !outer {
                return Err(DecodeError::NestedEncrypted {
                    payload_type,
                    offset,
                });
            }
            if !r.is_empty() {
                return Err(DecodeError::EncryptedNotLast {
                    payload_type,
                    offset,
                });
            }
            let payload = if payload_type == PayloadType::SK {
                Payload::Sk(SkPayload {
                    first_inner_payload: next,
                    body: body.to_vec(),
                })
            } else {
                let mut br = Reader::new(body);
                let (Some(fragment_number), Some(total_fragments)) = (br.u16(), br.u16()) else {
                    return Err(DecodeError::Malformed {
                        payload_type,
                        offset,
                        reason: "Encrypted Fragment payload shorter than its fixed fields",
                    });
                };
                Payload::Skf(SkfPayload {
                    first_inner_payload: next,
                    fragment_number,
                    total_fragments,
                    body: br.rest().to_vec(),
                })
            };
            payloads.push(payload);
            return Ok(payloads);
        }
        let critical = flags & CRITICAL != 0;
        payloads.push(
            decode_body(payload_type, critical, body).map_err(|e| e.at(payload_type, offset))?,
        );
    }
    if !r.is_empty() {
        return Err(DecodeError::TrailingBytes {
            offset: base.saturating_add(data.len() - r.len()),
            count: r.len(),
        });
    }
    Ok(payloads)
}

/// Appends a chain of payloads, each with its generic header, and returns the type of the
/// first one (NONE for an empty chain). `outer` allows SK / SKF as the last payload.
pub(crate) fn encode_chain(
    payloads: &[Payload],
    out: &mut Vec<u8>,
    outer: bool,
) -> Result<PayloadType, EncodeError> {
    for (i, payload) in payloads.iter().enumerate() {
        let payload_type = payload.payload_type();
        let err = |reason| EncodeError {
            payload_type,
            reason,
        };
        let is_last = i + 1 == payloads.len();
        let next = match payload {
            Payload::Sk(SkPayload {
                first_inner_payload,
                ..
            })
            | Payload::Skf(SkfPayload {
                first_inner_payload,
                ..
            }) => {
                if !outer {
                    return Err(err(
                        "an encrypted payload cannot be inside encrypted plaintext",
                    ));
                }
                if !is_last {
                    return Err(err("an encrypted payload must be the last payload"));
                }
                *first_inner_payload
            }
            Payload::Raw(RawPayload {
                payload_type: PayloadType::NONE,
                ..
            }) => {
                return Err(err("a raw payload may not have type 0"));
            }
            _ => payloads
                .get(i + 1)
                .map_or(PayloadType::NONE, Payload::payload_type),
        };
        let critical = matches!(payload, Payload::Raw(RawPayload { critical: true, .. }));
        let start = out.len();
        out.extend_from_slice(&[next.0, if critical { CRITICAL } else { 0 }, 0, 0]);
        payload.encode_body(out).map_err(err)?;
        patch_len16(out, start, start + 2).ok_or(err("payload longer than 65535 bytes"))?;
    }
    Ok(payloads
        .first()
        .map_or(PayloadType::NONE, Payload::payload_type))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(payloads: &[Payload]) -> Vec<u8> {
        let mut out = Vec::new();
        encode_chain(payloads, &mut out, false).unwrap();
        out
    }

    #[test]
    fn ke_layout() {
        let bytes = chain(&[Payload::Ke(KePayload {
            group: DhGroup::ECP_256,
            data: vec![0xaa; 3],
        })]);
        assert_eq!(bytes, [0, 0, 0, 11, 0, 19, 0, 0, 0xaa, 0xaa, 0xaa]);
    }

    #[test]
    fn id_keeps_reserved_octets() {
        let body = [1, 0xde, 0xad, 0x00, 192, 0, 2, 1];
        let p = decode_body(PayloadType::IDI, false, &body).unwrap();
        let Payload::IdI(id) = &p else {
            panic!("{p:?}")
        };
        assert_eq!(id.body(), body);
        assert_eq!(id.ip_addr(), Some(IpAddr::from([192, 0, 2, 1])));
        let mut out = Vec::new();
        p.encode_body(&mut out).unwrap();
        assert_eq!(out, body);
    }

    #[test]
    fn nonce_bounds() {
        assert!(decode_body(PayloadType::NONCE, false, &[0; 15]).is_err());
        assert!(decode_body(PayloadType::NONCE, false, &[0; 16]).is_ok());
        assert!(decode_body(PayloadType::NONCE, false, &[0; 256]).is_ok());
        assert!(decode_body(PayloadType::NONCE, false, &[0; 257]).is_err());
        let mut out = Vec::new();
        assert!(encode_chain(&[Payload::Nonce(vec![0; 8])], &mut out, false).is_err());
    }

    #[test]
    fn delete_forms() {
        let ike = chain(&[Payload::Delete(Delete {
            protocol: ProtocolId::IKE,
            spis: vec![],
        })]);
        assert_eq!(ike, [0, 0, 0, 8, 1, 0, 0, 0]);
        let esp = chain(&[Payload::Delete(Delete {
            protocol: ProtocolId::ESP,
            spis: vec![0xc1a2_b3d4, 7],
        })]);
        assert_eq!(
            esp,
            [0, 0, 0, 16, 3, 4, 0, 2, 0xc1, 0xa2, 0xb3, 0xd4, 0, 0, 0, 7]
        );
        assert_eq!(
            decode_chain(PayloadType::DELETE, &esp, 0, false).unwrap(),
            [Payload::Delete(Delete {
                protocol: ProtocolId::ESP,
                spis: vec![0xc1a2_b3d4, 7]
            })]
        );
        // Count and length disagree; odd SPI size.
        assert!(decode_body(PayloadType::DELETE, false, &[3, 4, 0, 2, 1, 2, 3, 4]).is_err());
        assert!(decode_body(PayloadType::DELETE, false, &[3, 2, 0, 1, 1, 2]).is_err());
        assert!(decode_body(PayloadType::DELETE, false, &[1, 0, 0, 1]).is_err());
    }

    #[test]
    fn unknown_payloads() {
        // Unknown non-critical: kept raw; unknown critical: reported.
        let raw = [0, 0x00, 0, 6, 0xab, 0xcd];
        assert_eq!(
            decode_chain(PayloadType(200), &raw, 28, false).unwrap(),
            [Payload::Raw(RawPayload {
                payload_type: PayloadType(200),
                critical: false,
                body: vec![0xab, 0xcd]
            })]
        );
        let crit = [0, 0x80, 0, 6, 0xab, 0xcd];
        assert_eq!(
            decode_chain(PayloadType(200), &crit, 28, false),
            Err(DecodeError::UnsupportedCriticalPayload {
                payload_type: PayloadType(200),
                offset: 28
            })
        );
        // CERTREQ is defined by RFC 7296: kept even with the critical bit.
        assert!(matches!(
            decode_chain(PayloadType::CERTREQ, &crit, 28, false).unwrap()[..],
            [Payload::Raw(RawPayload { critical: true, .. })]
        ));
        // The critical bit of known payloads is ignored.
        let vid = [0, 0x80, 0, 5, 1];
        assert_eq!(
            decode_chain(PayloadType::VENDOR_ID, &vid, 0, false).unwrap(),
            [Payload::VendorId(vec![1])]
        );
    }

    #[test]
    fn chain_errors() {
        assert_eq!(
            decode_chain(PayloadType::VENDOR_ID, &[0, 0, 0], 28, false),
            Err(DecodeError::Truncated {
                payload_type: PayloadType::VENDOR_ID,
                offset: 28,
                needed: 4,
                available: 3
            })
        );
        assert_eq!(
            decode_chain(PayloadType::VENDOR_ID, &[0, 0, 0, 9, 1], 28, false),
            Err(DecodeError::Truncated {
                payload_type: PayloadType::VENDOR_ID,
                offset: 28,
                needed: 9,
                available: 5
            })
        );
        assert_eq!(
            decode_chain(PayloadType::VENDOR_ID, &[0, 0, 0, 3, 1], 28, false),
            Err(DecodeError::BadPayloadLength {
                payload_type: PayloadType::VENDOR_ID,
                offset: 28,
                length: 3
            })
        );
        assert_eq!(
            decode_chain(PayloadType::VENDOR_ID, &[0, 0, 0, 4, 1], 28, false),
            Err(DecodeError::TrailingBytes {
                offset: 32,
                count: 1
            })
        );
        assert_eq!(
            decode_chain(
                PayloadType::VENDOR_ID,
                &[46, 0, 0, 4, 0, 0, 0, 4],
                28,
                false
            ),
            Err(DecodeError::NestedEncrypted {
                payload_type: PayloadType::SK,
                offset: 32
            })
        );
        assert_eq!(
            decode_chain(PayloadType::SK, &[43, 0, 0, 4, 0, 0, 0, 4], 28, true),
            Err(DecodeError::EncryptedNotLast {
                payload_type: PayloadType::SK,
                offset: 28
            })
        );
    }

    #[test]
    fn encode_refuses_bad_chains() {
        let sk = Payload::Sk(SkPayload {
            first_inner_payload: PayloadType::IDI,
            body: vec![],
        });
        let mut out = Vec::new();
        assert!(encode_chain(&[sk.clone(), Payload::VendorId(vec![])], &mut out, true).is_err());
        assert!(encode_chain(std::slice::from_ref(&sk), &mut out, false).is_err());
        let raw = |t| {
            Payload::Raw(RawPayload {
                payload_type: PayloadType(t),
                critical: false,
                body: vec![],
            })
        };
        assert!(encode_chain(&[raw(0)], &mut out, false).is_err());
        assert!(encode_chain(&[raw(33)], &mut out, false).is_err());
        assert!(encode_chain(&[raw(37)], &mut out, false).is_ok());
        assert!(encode_chain(&[Payload::VendorId(vec![0; 65532])], &mut out, false).is_err());
        assert!(encode_chain(&[Payload::VendorId(vec![0; 65531])], &mut out, false).is_ok());
    }
}
