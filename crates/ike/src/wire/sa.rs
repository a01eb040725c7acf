//! The Security Association payload (RFC 7296 section 3.3): proposals, transforms, transform
//! attributes, and the helpers that choose a proposal.
//!
//! ```text
//! Proposal substructure:
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! | Last Substruc |   RESERVED    |         Proposal Length       |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! | Proposal Num  |  Protocol ID  |    SPI Size   |Num  Transforms|
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ~                        SPI (variable)                         ~
//! ~                        <Transforms>                           ~
//!
//! Transform substructure:
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! | Last Substruc |   RESERVED    |        Transform Length       |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |Transform Type |   RESERVED    |          Transform ID         |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ~                      Transform Attributes                     ~
//!
//! Transform attribute:
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |A|       Attribute Type        |    AF=0  Attribute Length     |
//! |F|                             |    AF=1  Attribute Value      |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                   AF=0  Attribute Value                       |
//! ```

use super::payload::{need, BodyError};
use super::reader::{patch_len16, Reader};

const LAST: u8 = 0;
const MORE_PROPOSALS: u8 = 2;
const MORE_TRANSFORMS: u8 = 3;
const AF_TV: u16 = 0x8000;

wire_number! {
    /// Protocol ID of proposals, notifications and deletes (RFC 7296 section 3.3.1).
    pub struct ProtocolId(u8);
    /// None: a notification without SPI.
    NONE = 0;
    /// IKE.
    IKE = 1;
    /// AH.
    AH = 2;
    /// ESP.
    ESP = 3;
}

wire_number! {
    /// Transform Type (RFC 7296 section 3.3.2).
    pub struct TransformType(u8);
    /// Encryption Algorithm (ENCR).
    ENCR = 1;
    /// Pseudorandom Function (PRF).
    PRF = 2;
    /// Integrity Algorithm (INTEG).
    INTEG = 3;
    /// Diffie-Hellman group (D-H), "Key Exchange Method" since RFC 9370.
    DH = 4;
    /// Extended Sequence Numbers (ESN).
    ESN = 5;
}

wire_number! {
    /// Transform IDs of type 1, encryption (RFC 7296 3.3.2, RFC 5282, RFC 7634).
    pub struct EncrId(u16);
    /// 3DES-CBC.
    TRIPLE_DES = 3;
    /// NULL encryption.
    NULL = 11;
    /// AES-CBC, with a Key Length attribute.
    AES_CBC = 12;
    /// AES-CTR, with a Key Length attribute.
    AES_CTR = 13;
    /// AES-CCM with an 8-octet ICV.
    AES_CCM_8 = 14;
    /// AES-CCM with a 12-octet ICV.
    AES_CCM_12 = 15;
    /// AES-CCM with a 16-octet ICV.
    AES_CCM_16 = 16;
    /// AES-GCM with an 8-octet ICV.
    AES_GCM_8 = 18;
    /// AES-GCM with a 12-octet ICV.
    AES_GCM_12 = 19;
    /// AES-GCM with a 16-octet ICV (strongSwan's `aes256gcm16`), with a Key Length attribute.
    AES_GCM_16 = 20;
    /// AES-GMAC, authentication only.
    NULL_AUTH_AES_GMAC = 21;
    /// ChaCha20-Poly1305 (RFC 7634), no Key Length attribute.
    CHACHA20_POLY1305 = 28;
}

wire_number! {
    /// Transform IDs of type 2, pseudorandom functions.
    pub struct PrfId(u16);
    /// HMAC-MD5.
    HMAC_MD5 = 1;
    /// HMAC-SHA1.
    HMAC_SHA1 = 2;
    /// AES128-XCBC.
    AES128_XCBC = 4;
    /// HMAC-SHA2-256.
    HMAC_SHA2_256 = 5;
    /// HMAC-SHA2-384.
    HMAC_SHA2_384 = 6;
    /// HMAC-SHA2-512.
    HMAC_SHA2_512 = 7;
    /// AES128-CMAC.
    AES128_CMAC = 8;
}

wire_number! {
    /// Transform IDs of type 3, integrity algorithms.
    pub struct IntegId(u16);
    /// None (with AEAD ciphers).
    NONE = 0;
    /// HMAC-MD5-96.
    HMAC_MD5_96 = 1;
    /// HMAC-SHA1-96.
    HMAC_SHA1_96 = 2;
    /// AES-XCBC-96.
    AES_XCBC_96 = 5;
    /// HMAC-SHA2-256-128.
    HMAC_SHA2_256_128 = 12;
    /// HMAC-SHA2-384-192.
    HMAC_SHA2_384_192 = 13;
    /// HMAC-SHA2-512-256.
    HMAC_SHA2_512_256 = 14;
}

wire_number! {
    /// Transform IDs of type 4, Diffie-Hellman groups (also the KE payload's group).
    pub struct DhGroup(u16);
    /// None.
    NONE = 0;
    /// 768-bit MODP.
    MODP_768 = 1;
    /// 1024-bit MODP.
    MODP_1024 = 2;
    /// 1536-bit MODP.
    MODP_1536 = 5;
    /// 2048-bit MODP.
    MODP_2048 = 14;
    /// 3072-bit MODP.
    MODP_3072 = 15;
    /// 4096-bit MODP.
    MODP_4096 = 16;
    /// 256-bit random ECP (NIST P-256).
    ECP_256 = 19;
    /// 384-bit random ECP (NIST P-384).
    ECP_384 = 20;
    /// 521-bit random ECP (NIST P-521).
    ECP_521 = 21;
    /// Curve25519.
    CURVE25519 = 31;
    /// Curve448.
    CURVE448 = 32;
}

wire_number! {
    /// Transform IDs of type 5, extended sequence numbers.
    pub struct EsnId(u16);
    /// 32-bit sequence numbers.
    NO_ESN = 0;
    /// 64-bit extended sequence numbers.
    ESN = 1;
}

wire_number! {
    /// Transform attribute type (15 bits; RFC 7296 section 3.3.5).
    pub struct AttributeType(u16);
    /// Key Length in bits, TV format.
    KEY_LENGTH = 14;
}

/// A transform attribute's value: TV (AF = 1, two octets in place of the length) or TLV.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AttributeValue {
    /// Type/Value: a 16-bit value.
    Tv(u16),
    /// Type/Length/Value: up to 65535 octets.
    Tlv(Vec<u8>),
}

/// A transform attribute.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Attribute {
    /// Attribute Type, below 0x8000.
    pub attribute_type: AttributeType,
    /// Value and format.
    pub value: AttributeValue,
}

/// One transform: type, ID and attributes. Two transforms are the same choice exactly when
/// they are equal (`==`): same type, same ID, same attributes in the same order (RFC 7296
/// section 3.3.6: a transform with an attribute the responder does not know is unacceptable).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Transform {
    /// Transform Type.
    pub transform_type: TransformType,
    /// Transform ID, to be read with the ID type of the transform type ([`EncrId`], ...).
    pub id: u16,
    /// Transform Attributes.
    pub attributes: Vec<Attribute>,
}

impl Transform {
    /// An encryption transform, with a Key Length attribute if `key_bits` is given.
    pub fn encr(id: EncrId, key_bits: Option<u16>) -> Transform {
        let attributes = key_bits
            .map(|bits| Attribute {
                attribute_type: AttributeType::KEY_LENGTH,
                value: AttributeValue::Tv(bits),
            })
            .into_iter()
            .collect();
        Transform {
            transform_type: TransformType::ENCR,
            id: id.0,
            attributes,
        }
    }

    /// A pseudorandom function transform.
    pub fn prf(id: PrfId) -> Transform {
        Transform {
            transform_type: TransformType::PRF,
            id: id.0,
            attributes: Vec::new(),
        }
    }

    /// An integrity transform.
    pub fn integ(id: IntegId) -> Transform {
        Transform {
            transform_type: TransformType::INTEG,
            id: id.0,
            attributes: Vec::new(),
        }
    }

    /// A Diffie-Hellman group transform.
    pub fn dh(group: DhGroup) -> Transform {
        Transform {
            transform_type: TransformType::DH,
            id: group.0,
            attributes: Vec::new(),
        }
    }

    /// An extended sequence numbers transform.
    pub fn esn(id: EsnId) -> Transform {
        Transform {
            transform_type: TransformType::ESN,
            id: id.0,
            attributes: Vec::new(),
        }
    }

    /// The Key Length attribute (TV format), in bits.
    pub fn key_length(&self) -> Option<u16> {
        self.attributes.iter().find_map(|a| match a {
            Attribute {
                attribute_type: AttributeType::KEY_LENGTH,
                value: AttributeValue::Tv(bits),
            } => Some(*bits),
            _ => None,
        })
    }

    fn encode(&self, last: bool, out: &mut Vec<u8>) -> Result<(), &'static str> {
        let start = out.len();
        out.extend_from_slice(&[
            if last { LAST } else { MORE_TRANSFORMS },
            0,
            0,
            0,
            self.transform_type.0,
            0,
        ]);
        out.extend_from_slice(&self.id.to_be_bytes());
        for attribute in &self.attributes {
            let t = attribute.attribute_type.0;
            if t & AF_TV != 0 {
                return Err("attribute type above 0x7fff");
            }
            match &attribute.value {
                AttributeValue::Tv(v) => {
                    out.extend_from_slice(&(t | AF_TV).to_be_bytes());
                    out.extend_from_slice(&v.to_be_bytes());
                }
                AttributeValue::Tlv(v) => {
                    let len =
                        u16::try_from(v.len()).map_err(|_| "attribute longer than 65535 bytes")?;
                    out.extend_from_slice(&t.to_be_bytes());
                    out.extend_from_slice(&len.to_be_bytes());
                    out.extend_from_slice(v);
                }
            }
        }
        patch_len16(out, start, start + 2).ok_or("transform longer than 65535 bytes")
    }

    fn decode(body: &[u8]) -> Result<Transform, BodyError> {
        let mut r = Reader::new(body);
        let [transform_type, _reserved, i0, i1] =
            need(r.array::<4>(), "transform shorter than its header")?;
        let mut attributes = Vec::new();
        while !r.is_empty() {
            let t = need(r.u16(), "attribute header truncated")?;
            let value = if t & AF_TV != 0 {
                AttributeValue::Tv(need(r.u16(), "attribute header truncated")?)
            } else {
                let len = need(r.u16(), "attribute header truncated")?;
                AttributeValue::Tlv(
                    need(
                        r.take(usize::from(len)),
                        "attribute value beyond the transform",
                    )?
                    .to_vec(),
                )
            };
            attributes.push(Attribute {
                attribute_type: AttributeType(t & !AF_TV),
                value,
            });
        }
        Ok(Transform {
            transform_type: TransformType(transform_type),
            id: u16::from_be_bytes([i0, i1]),
            attributes,
        })
    }
}

/// An SPI in a proposal or notification: empty, four octets (ESP, AH) or eight (IKE), read
/// big-endian.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Spi {
    /// No SPI (SPI Size 0).
    #[default]
    None,
    /// A four-octet SPI.
    U32(u32),
    /// An eight-octet SPI.
    U64(u64),
}

impl Spi {
    /// SPI Size.
    pub const fn len(&self) -> u8 {
        match self {
            Spi::None => 0,
            Spi::U32(_) => 4,
            Spi::U64(_) => 8,
        }
    }

    /// True for [`Spi::None`].
    pub const fn is_empty(&self) -> bool {
        matches!(self, Spi::None)
    }

    /// Reads an SPI of 0, 4 or 8 octets.
    pub fn from_bytes(bytes: &[u8]) -> Option<Spi> {
        match bytes.len() {
            0 => Some(Spi::None),
            4 => bytes.try_into().ok().map(u32::from_be_bytes).map(Spi::U32),
            8 => bytes.try_into().ok().map(u64::from_be_bytes).map(Spi::U64),
            _ => None,
        }
    }

    pub(crate) fn write(&self, out: &mut Vec<u8>) {
        match self {
            Spi::None => {}
            Spi::U32(v) => out.extend_from_slice(&v.to_be_bytes()),
            Spi::U64(v) => out.extend_from_slice(&v.to_be_bytes()),
        }
    }
}

/// One proposal. Equality compares everything, SPI and number included; use
/// [`Proposal::select`] / [`Proposal::is_selection_of`] to negotiate.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Proposal {
    /// Proposal Num: 1, 2, ... in a request; the chosen proposal's number in a response.
    pub number: u8,
    /// Protocol ID: IKE or ESP here.
    pub protocol: ProtocolId,
    /// The sender's inbound SPI: none in IKE_SA_INIT, 8 octets when rekeying the IKE SA,
    /// 4 octets for ESP.
    pub spi: Spi,
    /// The transforms, any number of each type (alternatives), in preference order.
    pub transforms: Vec<Transform>,
}

impl Proposal {
    /// The transforms of one type.
    pub fn transforms_of(
        &self,
        transform_type: TransformType,
    ) -> impl Iterator<Item = &Transform> + '_ {
        self.transforms
            .iter()
            .filter(move |t| t.transform_type == transform_type)
    }

    /// The transform types present, in order of first appearance.
    pub fn transform_types(&self) -> Vec<TransformType> {
        let mut types: Vec<TransformType> = Vec::new();
        for t in &self.transforms {
            if !types.contains(&t.transform_type) {
                types.push(t.transform_type);
            }
        }
        types
    }

    /// Chooses, as a responder, from a peer's `offered` proposal with `self` as local policy
    /// (every acceptable transform, in local preference order): the protocols must match and
    /// both must have the same transform types (RFC 7296 section 3.3.6: an unknown or missing
    /// type makes the proposal unacceptable); for each type the first local transform that
    /// the peer also offered is taken. The result carries the peer's proposal number and SPI
    /// (a responder replaces the SPI with its own) and one transform per type, in the order
    /// of `self`'s types.
    pub fn select(&self, offered: &Proposal) -> Option<Proposal> {
        if self.protocol != offered.protocol {
            return None;
        }
        let types = self.transform_types();
        let offered_types = offered.transform_types();
        if types.len() != offered_types.len() || !offered_types.iter().all(|t| types.contains(t)) {
            return None;
        }
        let mut chosen = Vec::with_capacity(types.len());
        for ty in types {
            let pick = self
                .transforms_of(ty)
                .find(|ours| offered.transforms_of(ty).any(|theirs| theirs == *ours))?;
            chosen.push(pick.clone());
        }
        Some(Proposal {
            number: offered.number,
            protocol: offered.protocol,
            spi: offered.spi,
            transforms: chosen,
        })
    }

    /// Checks, as an initiator, a responder's choice (`self`) against what was `offered`:
    /// same proposal number and protocol, exactly one transform of each type that `offered`
    /// has, each of them one that `offered` contains.
    pub fn is_selection_of(&self, offered: &Proposal) -> bool {
        if self.number != offered.number || self.protocol != offered.protocol {
            return false;
        }
        let types = offered.transform_types();
        self.transforms.len() == types.len()
            && types.iter().all(|ty| self.transforms_of(*ty).count() == 1)
            && self
                .transforms
                .iter()
                .all(|t| offered.transforms.contains(t))
    }

    fn encode(&self, last: bool, out: &mut Vec<u8>) -> Result<(), &'static str> {
        let count = u8::try_from(self.transforms.len())
            .map_err(|_| "more than 255 transforms in a proposal")?;
        let start = out.len();
        out.extend_from_slice(&[
            if last { LAST } else { MORE_PROPOSALS },
            0,
            0,
            0,
            self.number,
            self.protocol.0,
            self.spi.len(),
            count,
        ]);
        self.spi.write(out);
        for (i, t) in self.transforms.iter().enumerate() {
            t.encode(i + 1 == self.transforms.len(), out)?;
        }
        patch_len16(out, start, start + 2).ok_or("proposal longer than 65535 bytes")
    }
}

/// Security Association payload: the proposals, in preference order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct SaPayload {
    /// The proposals.
    pub proposals: Vec<Proposal>,
}

impl SaPayload {
    /// Chooses, as a responder, the first acceptable proposal: local proposals (`ours`) in
    /// order, and for each the peer's proposals in their order; see [`Proposal::select`].
    pub fn select(&self, ours: &[Proposal]) -> Option<Proposal> {
        ours.iter().find_map(|local| {
            self.proposals
                .iter()
                .find_map(|offered| local.select(offered))
        })
    }

    pub(crate) fn encode_body(&self, out: &mut Vec<u8>) -> Result<(), &'static str> {
        for (i, p) in self.proposals.iter().enumerate() {
            p.encode(i + 1 == self.proposals.len(), out)?;
        }
        Ok(())
    }

    pub(crate) fn decode_body(body: &[u8]) -> Result<SaPayload, BodyError> {
        let mut r = Reader::new(body);
        let mut proposals = Vec::new();
        while !r.is_empty() {
            let [last, _reserved, l0, l1, number, protocol, spi_size, count] =
                need(r.array::<8>(), "proposal header truncated")?;
            let len = need(
                usize::from(u16::from_be_bytes([l0, l1])).checked_sub(8),
                "proposal length shorter than its header",
            )?;
            let inner = need(r.take(len), "proposal length beyond the SA payload")?;
            check_last(
                last,
                MORE_PROPOSALS,
                r.is_empty(),
                "proposal Last Substruc does not match the payload",
            )?;
            let mut pr = Reader::new(inner);
            let spi = need(pr.take(usize::from(spi_size)), "SPI beyond the proposal")?;
            let spi = need(Spi::from_bytes(spi), "proposal SPI size is not 0, 4 or 8")?;
            let mut transforms = Vec::with_capacity(usize::from(count));
            while !pr.is_empty() {
                let [last, _reserved, l0, l1] =
                    need(pr.array::<4>(), "transform header truncated")?;
                let len = need(
                    usize::from(u16::from_be_bytes([l0, l1])).checked_sub(4),
                    "transform length shorter than its header",
                )?;
                let t = need(pr.take(len), "transform length beyond the proposal")?;
                check_last(
                    last,
                    MORE_TRANSFORMS,
                    pr.is_empty(),
                    "transform Last Substruc does not match the proposal",
                )?;
                transforms.push(Transform::decode(t)?);
            }
            if transforms.len() != usize::from(count) {
                return Err(BodyError::Malformed(
                    "transform count does not match the proposal",
                ));
            }
            proposals.push(Proposal {
                number,
                protocol: ProtocolId(protocol),
                spi,
                transforms,
            });
        }
        Ok(SaPayload { proposals })
    }
}

fn check_last(marker: u8, more: u8, is_last: bool, reason: &'static str) -> Result<(), BodyError> {
    if marker == if is_last { LAST } else { more } {
        Ok(())
    } else {
        Err(BodyError::Malformed(reason))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ike_gcm() -> Proposal {
        Proposal {
            number: 1,
            protocol: ProtocolId::IKE,
            spi: Spi::None,
            transforms: vec![
                Transform::encr(EncrId::AES_GCM_16, Some(256)),
                Transform::prf(PrfId::HMAC_SHA2_256),
                Transform::dh(DhGroup::ECP_256),
            ],
        }
    }

    #[test]
    fn transform_layout() {
        let mut out = Vec::new();
        Transform::encr(EncrId::AES_GCM_16, Some(256))
            .encode(false, &mut out)
            .unwrap();
        assert_eq!(out, [3, 0, 0, 12, 1, 0, 0, 20, 0x80, 14, 1, 0]);
        assert_eq!(
            Transform::decode(&out[4..]).unwrap().key_length(),
            Some(256)
        );
    }

    #[test]
    fn tlv_attribute_round_trip() {
        let t = Transform {
            transform_type: TransformType(9),
            id: 7,
            attributes: vec![Attribute {
                attribute_type: AttributeType(300),
                value: AttributeValue::Tlv(vec![1, 2, 3]),
            }],
        };
        let mut out = Vec::new();
        t.encode(true, &mut out).unwrap();
        assert_eq!(out, [0, 0, 0, 15, 9, 0, 0, 7, 0x01, 0x2c, 0, 3, 1, 2, 3]);
        assert_eq!(Transform::decode(&out[4..]).unwrap(), t);
        assert!(Transform::decode(&[9, 0, 0, 7, 0x01, 0x2c, 0, 4, 1, 2, 3]).is_err());
    }

    #[test]
    fn last_substruc_and_count_checked() {
        let sa = SaPayload {
            proposals: vec![
                ike_gcm(),
                Proposal {
                    number: 2,
                    ..ike_gcm()
                },
            ],
        };
        let mut body = Vec::new();
        sa.encode_body(&mut body).unwrap();
        assert_eq!(SaPayload::decode_body(&body).unwrap(), sa);
        assert_eq!(body[0], 2);
        let mut bad = body.clone();
        bad[0] = 0;
        assert!(SaPayload::decode_body(&bad).is_err());
        let mut bad = body.clone();
        bad[7] = 4; // transform count
        assert!(SaPayload::decode_body(&bad).is_err());
        let mut bad = body.clone();
        bad[8] = 0; // first transform claims to be the last
        assert!(SaPayload::decode_body(&bad).is_err());
        let mut bad = body;
        bad[6] = 3; // SPI size
        assert!(SaPayload::decode_body(&bad).is_err());
    }

    #[test]
    fn select_and_verify() {
        let ours = Proposal {
            number: 1,
            protocol: ProtocolId::IKE,
            spi: Spi::None,
            transforms: vec![
                Transform::encr(EncrId::AES_GCM_16, Some(256)),
                Transform::prf(PrfId::HMAC_SHA2_256),
                Transform::prf(PrfId::HMAC_SHA1),
                Transform::dh(DhGroup::MODP_2048),
                Transform::dh(DhGroup::ECP_256),
            ],
        };
        let peer = Proposal {
            number: 3,
            transforms: vec![
                Transform::encr(EncrId::AES_GCM_16, Some(128)),
                Transform::encr(EncrId::AES_GCM_16, Some(256)),
                Transform::prf(PrfId::HMAC_SHA2_256),
                Transform::dh(DhGroup::ECP_256),
                Transform::dh(DhGroup::MODP_2048),
            ],
            ..ike_gcm()
        };
        let chosen = ours.select(&peer).unwrap();
        assert_eq!(chosen.number, 3);
        assert_eq!(
            chosen.transforms,
            [
                Transform::encr(EncrId::AES_GCM_16, Some(256)),
                Transform::prf(PrfId::HMAC_SHA2_256),
                Transform::dh(DhGroup::MODP_2048),
            ]
        );
        assert!(chosen.is_selection_of(&peer));
        assert!(!ike_gcm().is_selection_of(&peer), "wrong number");
        let two_dh = Proposal {
            transforms: peer.transforms.clone(),
            ..chosen.clone()
        };
        assert!(!two_dh.is_selection_of(&peer));

        // A type the local policy lacks (INTEG) makes the proposal unacceptable.
        let mut with_integ = peer.clone();
        with_integ
            .transforms
            .push(Transform::integ(IntegId::HMAC_SHA2_256_128));
        assert_eq!(ours.select(&with_integ), None);
        // Key length matters.
        let short_key = Proposal {
            transforms: vec![
                Transform::encr(EncrId::AES_GCM_16, Some(128)),
                Transform::prf(PrfId::HMAC_SHA2_256),
                Transform::dh(DhGroup::ECP_256),
            ],
            ..peer.clone()
        };
        assert_eq!(ours.select(&short_key), None);

        let offered = SaPayload {
            proposals: vec![short_key, peer],
        };
        assert_eq!(offered.select(std::slice::from_ref(&ours)), Some(chosen));
    }
}
