//! Transforms (IANA "IKEv2 Parameters" registry, RFC 7296 3.3.2) and typed proposals, parsed
//! from strongSwan's proposal strings (`aes256gcm16-prfsha256-ecp256`, `aes256-sha256`, ...).
//!
//! The keywords are strongSwan's own spellings (its `proposal_keywords_static.txt`), restricted
//! to what this crate implements. Unlike strongSwan, one proposal string here names one algorithm
//! of each type: configure several proposals to offer alternatives.

use core::fmt;

/// Transform types (RFC 7296 3.3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum TransformType {
    /// Encryption Algorithm (ENCR).
    Encr = 1,
    /// Pseudorandom Function (PRF).
    Prf = 2,
    /// Integrity Algorithm (INTEG).
    Integ = 3,
    /// Diffie-Hellman group (D-H, "Key Exchange Method" in later registries).
    Dh = 4,
    /// Extended Sequence Numbers (ESN).
    Esn = 5,
}

impl TransformType {
    /// The transform type number on the wire.
    pub fn id(self) -> u8 {
        self as u8
    }

    /// The type for a wire number, if it is one of the five.
    pub fn from_id(id: u8) -> Option<TransformType> {
        Some(match id {
            1 => TransformType::Encr,
            2 => TransformType::Prf,
            3 => TransformType::Integ,
            4 => TransformType::Dh,
            5 => TransformType::Esn,
            _ => return None,
        })
    }

    fn what(self) -> &'static str {
        match self {
            TransformType::Encr => "encryption algorithm",
            TransformType::Prf => "PRF",
            TransformType::Integ => "integrity algorithm",
            TransformType::Dh => "Diffie-Hellman group",
            TransformType::Esn => "ESN setting",
        }
    }
}

/// One transform as carried in an SA payload: type, transform id and, for ENCR, the Key Length
/// attribute (attribute type 14) in bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Transform {
    /// The transform type.
    pub kind: TransformType,
    /// The IANA transform id within that type.
    pub id: u16,
    /// The Key Length attribute in bits (ENCR only).
    pub key_len: Option<u16>,
}

/// Encryption algorithms (transform type 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EncrAlg {
    /// `ENCR_AES_CBC` (12), RFC 3602; needs a separate integrity algorithm.
    AesCbc,
    /// `ENCR_AES_GCM_16` (20), AES-GCM with a 16-byte ICV: RFC 5282 for IKE, RFC 4106 for ESP.
    /// Its keying material is the key followed by a 4-byte salt.
    AesGcm16,
}

impl EncrAlg {
    /// IANA transform id.
    pub fn id(self) -> u16 {
        match self {
            EncrAlg::AesCbc => 12,
            EncrAlg::AesGcm16 => 20,
        }
    }

    /// The algorithm for an IANA transform id.
    pub fn from_id(id: u16) -> Option<EncrAlg> {
        match id {
            12 => Some(EncrAlg::AesCbc),
            20 => Some(EncrAlg::AesGcm16),
            _ => None,
        }
    }

    /// True for combined-mode (AEAD) algorithms, which take no integrity transform.
    pub fn is_aead(self) -> bool {
        matches!(self, EncrAlg::AesGcm16)
    }

    /// True when `key_bits` is a key length this crate supports for the algorithm (128 or 256).
    pub fn supports_key_len(self, key_bits: u16) -> bool {
        matches!(key_bits, 128 | 256)
    }

    /// Bytes of keying material one direction needs (SK_e, or one ESP direction's encryption
    /// key): the key, plus the 4-byte salt for AES-GCM (RFC 5282 7.1, RFC 4106 8.1). `None` for an
    /// unsupported key length.
    pub fn key_material_len(self, key_bits: u16) -> Option<usize> {
        if !self.supports_key_len(key_bits) {
            return None;
        }
        let key = usize::from(key_bits / 8);
        Some(match self {
            EncrAlg::AesCbc => key,
            EncrAlg::AesGcm16 => key + 4,
        })
    }

    /// strongSwan's keyword for this algorithm with this key length, if supported.
    pub fn keyword(self, key_bits: u16) -> Option<&'static str> {
        Some(match (self, key_bits) {
            (EncrAlg::AesCbc, 128) => "aes128",
            (EncrAlg::AesCbc, 256) => "aes256",
            (EncrAlg::AesGcm16, 128) => "aes128gcm16",
            (EncrAlg::AesGcm16, 256) => "aes256gcm16",
            _ => return None,
        })
    }
}

/// Pseudorandom functions (transform type 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PrfAlg {
    /// `PRF_HMAC_SHA1` (2), RFC 2104.
    HmacSha1,
    /// `PRF_HMAC_SHA2_256` (5), RFC 4868.
    HmacSha256,
    /// `PRF_HMAC_SHA2_384` (6), RFC 4868.
    HmacSha384,
}

impl PrfAlg {
    /// IANA transform id.
    pub fn id(self) -> u16 {
        match self {
            PrfAlg::HmacSha1 => 2,
            PrfAlg::HmacSha256 => 5,
            PrfAlg::HmacSha384 => 6,
        }
    }

    /// The PRF for an IANA transform id.
    pub fn from_id(id: u16) -> Option<PrfAlg> {
        match id {
            2 => Some(PrfAlg::HmacSha1),
            5 => Some(PrfAlg::HmacSha256),
            6 => Some(PrfAlg::HmacSha384),
            _ => None,
        }
    }

    /// Output length in bytes.
    pub fn output_len(self) -> usize {
        match self {
            PrfAlg::HmacSha1 => 20,
            PrfAlg::HmacSha256 => 32,
            PrfAlg::HmacSha384 => 48,
        }
    }

    /// The preferred key length (the length of SK_d, SK_pi, SK_pr; RFC 7296 2.14): for HMAC
    /// PRFs, the output length (RFC 4868 2.1.2 for SHA-2).
    pub fn key_len(self) -> usize {
        self.output_len()
    }

    /// strongSwan's keyword.
    pub fn keyword(self) -> &'static str {
        match self {
            PrfAlg::HmacSha1 => "prfsha1",
            PrfAlg::HmacSha256 => "prfsha256",
            PrfAlg::HmacSha384 => "prfsha384",
        }
    }

    pub(crate) fn hmac_algorithm(self) -> aws_lc_rs::hmac::Algorithm {
        match self {
            PrfAlg::HmacSha1 => aws_lc_rs::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
            PrfAlg::HmacSha256 => aws_lc_rs::hmac::HMAC_SHA256,
            PrfAlg::HmacSha384 => aws_lc_rs::hmac::HMAC_SHA384,
        }
    }
}

/// Integrity algorithms (transform type 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IntegAlg {
    /// `AUTH_HMAC_SHA1_96` (2), RFC 2404: 20-byte key, 12-byte ICV.
    HmacSha1_96,
    /// `AUTH_HMAC_SHA2_256_128` (12), RFC 4868: 32-byte key, 16-byte ICV.
    HmacSha256_128,
    /// `AUTH_HMAC_SHA2_384_192` (13), RFC 4868: 48-byte key, 24-byte ICV.
    HmacSha384_192,
}

impl IntegAlg {
    /// IANA transform id.
    pub fn id(self) -> u16 {
        match self {
            IntegAlg::HmacSha1_96 => 2,
            IntegAlg::HmacSha256_128 => 12,
            IntegAlg::HmacSha384_192 => 13,
        }
    }

    /// The algorithm for an IANA transform id (0, `NONE`, is not an algorithm: `None`).
    pub fn from_id(id: u16) -> Option<IntegAlg> {
        match id {
            2 => Some(IntegAlg::HmacSha1_96),
            12 => Some(IntegAlg::HmacSha256_128),
            13 => Some(IntegAlg::HmacSha384_192),
            _ => None,
        }
    }

    /// Key length in bytes (SK_ai / SK_ar, or an ESP integrity key).
    pub fn key_len(self) -> usize {
        match self {
            IntegAlg::HmacSha1_96 => 20,
            IntegAlg::HmacSha256_128 => 32,
            IntegAlg::HmacSha384_192 => 48,
        }
    }

    /// ICV (truncated MAC) length in bytes.
    pub fn icv_len(self) -> usize {
        match self {
            IntegAlg::HmacSha1_96 => 12,
            IntegAlg::HmacSha256_128 => 16,
            IntegAlg::HmacSha384_192 => 24,
        }
    }

    /// strongSwan's keyword.
    pub fn keyword(self) -> &'static str {
        match self {
            IntegAlg::HmacSha1_96 => "sha1",
            IntegAlg::HmacSha256_128 => "sha256",
            IntegAlg::HmacSha384_192 => "sha384",
        }
    }

    /// The PRF strongSwan pairs with this integrity algorithm when an IKE proposal names no PRF.
    pub fn matching_prf(self) -> PrfAlg {
        match self {
            IntegAlg::HmacSha1_96 => PrfAlg::HmacSha1,
            IntegAlg::HmacSha256_128 => PrfAlg::HmacSha256,
            IntegAlg::HmacSha384_192 => PrfAlg::HmacSha384,
        }
    }

    pub(crate) fn hmac_algorithm(self) -> aws_lc_rs::hmac::Algorithm {
        self.matching_prf().hmac_algorithm()
    }
}

/// Diffie-Hellman groups (transform type 4). Key generation and agreement are in `dh.rs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DhGroup {
    /// Group 2, 1024-bit MODP (RFC 2409 6.2). Legacy: offered last, for old peers only.
    Modp1024,
    /// Group 14, 2048-bit MODP (RFC 3526 3).
    Modp2048,
    /// Group 19, 256-bit random ECP group, NIST P-256 (RFC 5903).
    Ecp256,
    /// Group 20, 384-bit random ECP group, NIST P-384 (RFC 5903).
    Ecp384,
    /// Group 31, Curve25519 (RFC 8031).
    Curve25519,
}

impl DhGroup {
    /// IANA transform id (group number).
    pub fn id(self) -> u16 {
        match self {
            DhGroup::Modp1024 => 2,
            DhGroup::Modp2048 => 14,
            DhGroup::Ecp256 => 19,
            DhGroup::Ecp384 => 20,
            DhGroup::Curve25519 => 31,
        }
    }

    /// The group for an IANA group number.
    pub fn from_id(id: u16) -> Option<DhGroup> {
        Some(match id {
            2 => DhGroup::Modp1024,
            14 => DhGroup::Modp2048,
            19 => DhGroup::Ecp256,
            20 => DhGroup::Ecp384,
            31 => DhGroup::Curve25519,
            _ => return None,
        })
    }

    /// strongSwan's keyword.
    pub fn keyword(self) -> &'static str {
        match self {
            DhGroup::Modp1024 => "modp1024",
            DhGroup::Modp2048 => "modp2048",
            DhGroup::Ecp256 => "ecp256",
            DhGroup::Ecp384 => "ecp384",
            DhGroup::Curve25519 => "curve25519",
        }
    }
}

impl fmt::Display for DhGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.keyword())
    }
}

/// Which kind of proposal a string or transform list was read as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProposalKind {
    /// An IKE SA proposal.
    Ike,
    /// An ESP (Child SA) proposal.
    Esp,
}

impl ProposalKind {
    fn name(self) -> &'static str {
        match self {
            ProposalKind::Ike => "IKE",
            ProposalKind::Esp => "ESP",
        }
    }

    /// The keywords this crate accepts in a proposal string of this kind.
    pub fn known_keywords(self) -> &'static [&'static str] {
        match self {
            ProposalKind::Ike => IKE_KEYWORDS,
            ProposalKind::Esp => ESP_KEYWORDS,
        }
    }
}

const IKE_KEYWORDS: &[&str] = &[
    "aes",
    "aes128",
    "aes256",
    "aes128gcm16",
    "aes128gcm128",
    "aes128gcm",
    "aes256gcm16",
    "aes256gcm128",
    "aes256gcm",
    "sha",
    "sha1",
    "sha256",
    "sha2_256",
    "sha384",
    "sha2_384",
    "prfsha1",
    "prfsha256",
    "prfsha384",
    "modp1024",
    "modp2048",
    "ecp256",
    "ecp384",
    "curve25519",
    "x25519",
];

const ESP_KEYWORDS: &[&str] = &[
    "aes",
    "aes128",
    "aes256",
    "aes128gcm16",
    "aes128gcm128",
    "aes128gcm",
    "aes256gcm16",
    "aes256gcm128",
    "aes256gcm",
    "sha",
    "sha1",
    "sha256",
    "sha2_256",
    "sha384",
    "sha2_384",
    "modp1024",
    "modp2048",
    "ecp256",
    "ecp384",
    "curve25519",
    "x25519",
    "esn",
    "noesn",
];

/// A proposal string or transform list that this crate cannot use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProposalError {
    /// The string is empty, or has an empty token (`aes256--sha256`).
    EmptyToken {
        /// IKE or ESP.
        kind: ProposalKind,
    },
    /// A token that is not one of [`ProposalKind::known_keywords`].
    UnknownKeyword {
        /// IKE or ESP.
        kind: ProposalKind,
        /// The token as written (at most 64 characters).
        token: String,
    },
    /// Two algorithms of one type: one proposal names one of each here.
    Duplicate {
        /// IKE or ESP.
        kind: ProposalKind,
        /// The transform type that appeared twice.
        what: TransformType,
    },
    /// A required transform type is missing.
    Missing {
        /// IKE or ESP.
        kind: ProposalKind,
        /// The transform type that is missing.
        what: TransformType,
    },
    /// An integrity algorithm together with an AEAD (combined-mode) cipher (RFC 5282 8).
    IntegrityWithAead {
        /// IKE or ESP.
        kind: ProposalKind,
    },
    /// A transform from a peer's SA payload that this crate does not implement.
    UnsupportedTransform {
        /// IKE or ESP.
        kind: ProposalKind,
        /// The transform.
        transform: Transform,
    },
}

impl fmt::Display for ProposalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProposalError::EmptyToken { kind } => {
                write!(f, "empty {} proposal keyword", kind.name())
            }
            ProposalError::UnknownKeyword { kind, token } => {
                write!(
                    f,
                    "unknown {} proposal keyword {token:?}; known keywords are: {}",
                    kind.name(),
                    kind.known_keywords().join(", ")
                )
            }
            ProposalError::Duplicate { kind, what } => write!(
                f,
                "{} proposal names more than one {}; write one proposal per combination",
                kind.name(),
                what.what()
            ),
            ProposalError::Missing { kind, what } => {
                write!(f, "{} proposal has no {}", kind.name(), what.what())?;
                match (kind, what) {
                    (ProposalKind::Ike, TransformType::Prf) => f.write_str(
                        " (an AEAD cipher needs an explicit PRF, e.g. aes256gcm16-prfsha256-ecp256)",
                    ),
                    (_, TransformType::Integ) => {
                        f.write_str(" (AES-CBC needs one, e.g. aes256-sha256)")
                    }
                    _ => Ok(()),
                }
            }
            ProposalError::IntegrityWithAead { kind } => write!(
                f,
                "{} proposal combines an AEAD cipher with an integrity algorithm",
                kind.name()
            ),
            ProposalError::UnsupportedTransform { kind, transform } => {
                write!(
                    f,
                    "unsupported {} transform: {} id {}",
                    kind.name(),
                    transform.kind.what(),
                    transform.id
                )?;
                if let Some(bits) = transform.key_len {
                    write!(f, " with a {bits}-bit key")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for ProposalError {}

/// An IKE SA proposal: one algorithm of each type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IkeProposal {
    /// Encryption algorithm.
    pub encr: EncrAlg,
    /// Its key length in bits (128 or 256).
    pub key_len: u16,
    /// Pseudorandom function.
    pub prf: PrfAlg,
    /// Integrity algorithm; `None` exactly when `encr` is an AEAD.
    pub integ: Option<IntegAlg>,
    /// Diffie-Hellman group.
    pub dh: DhGroup,
}

/// An ESP proposal: one algorithm of each type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EspProposal {
    /// Encryption algorithm.
    pub encr: EncrAlg,
    /// Its key length in bits (128 or 256).
    pub key_len: u16,
    /// Integrity algorithm; `None` exactly when `encr` is an AEAD.
    pub integ: Option<IntegAlg>,
    /// The PFS group for CREATE_CHILD_SA, if any (a Child SA created in IKE_AUTH never uses it).
    pub dh: Option<DhGroup>,
    /// Extended (64-bit) sequence numbers.
    pub esn: bool,
}

#[derive(Debug, Clone, Copy)]
enum Keyword {
    Encr(EncrAlg, u16),
    Integ(IntegAlg),
    Prf(PrfAlg),
    Dh(DhGroup),
    Esn(bool),
}

fn keyword(token: &str) -> Option<Keyword> {
    use Keyword::*;
    Some(match token {
        "aes" | "aes128" => Encr(EncrAlg::AesCbc, 128),
        "aes256" => Encr(EncrAlg::AesCbc, 256),
        "aes128gcm16" | "aes128gcm128" | "aes128gcm" => Encr(EncrAlg::AesGcm16, 128),
        "aes256gcm16" | "aes256gcm128" | "aes256gcm" => Encr(EncrAlg::AesGcm16, 256),
        "sha" | "sha1" => Integ(IntegAlg::HmacSha1_96),
        "sha256" | "sha2_256" => Integ(IntegAlg::HmacSha256_128),
        "sha384" | "sha2_384" => Integ(IntegAlg::HmacSha384_192),
        "prfsha1" => Prf(PrfAlg::HmacSha1),
        "prfsha256" => Prf(PrfAlg::HmacSha256),
        "prfsha384" => Prf(PrfAlg::HmacSha384),
        "modp1024" => Dh(DhGroup::Modp1024),
        "modp2048" => Dh(DhGroup::Modp2048),
        "ecp256" => Dh(DhGroup::Ecp256),
        "ecp384" => Dh(DhGroup::Ecp384),
        "curve25519" | "x25519" => Dh(DhGroup::Curve25519),
        "esn" => Esn(true),
        "noesn" => Esn(false),
        _ => return None,
    })
}

/// The algorithms named by a proposal, before the per-kind rules are applied.
#[derive(Default)]
struct Parts {
    encr: Option<(EncrAlg, u16)>,
    integ: Option<IntegAlg>,
    prf: Option<PrfAlg>,
    dh: Option<DhGroup>,
    esn: Option<bool>,
}

fn set<T>(
    slot: &mut Option<T>,
    value: T,
    kind: ProposalKind,
    what: TransformType,
) -> Result<(), ProposalError> {
    if slot.is_some() {
        return Err(ProposalError::Duplicate { kind, what });
    }
    *slot = Some(value);
    Ok(())
}

fn parse_parts(s: &str, kind: ProposalKind) -> Result<Parts, ProposalError> {
    let mut parts = Parts::default();
    for raw in s.trim().split('-') {
        let token = raw.trim().to_ascii_lowercase();
        if token.is_empty() {
            return Err(ProposalError::EmptyToken { kind });
        }
        let unknown = || ProposalError::UnknownKeyword {
            kind,
            token: raw.trim().chars().take(64).collect(),
        };
        match (keyword(&token).ok_or_else(unknown)?, kind) {
            (Keyword::Encr(e, bits), _) => {
                set(&mut parts.encr, (e, bits), kind, TransformType::Encr)?
            }
            (Keyword::Integ(i), _) => set(&mut parts.integ, i, kind, TransformType::Integ)?,
            (Keyword::Dh(g), _) => set(&mut parts.dh, g, kind, TransformType::Dh)?,
            (Keyword::Prf(p), ProposalKind::Ike) => {
                set(&mut parts.prf, p, kind, TransformType::Prf)?
            }
            (Keyword::Esn(e), ProposalKind::Esp) => {
                set(&mut parts.esn, e, kind, TransformType::Esn)?
            }
            (Keyword::Prf(_), ProposalKind::Esp) | (Keyword::Esn(_), ProposalKind::Ike) => {
                return Err(unknown())
            }
        }
    }
    Ok(parts)
}

/// Checks the encryption / integrity pairing shared by both kinds.
fn check_cipher(
    kind: ProposalKind,
    encr: Option<(EncrAlg, u16)>,
    integ: Option<IntegAlg>,
) -> Result<(EncrAlg, u16, Option<IntegAlg>), ProposalError> {
    let (encr, key_len) = encr.ok_or(ProposalError::Missing {
        kind,
        what: TransformType::Encr,
    })?;
    match (encr.is_aead(), integ) {
        (true, Some(_)) => Err(ProposalError::IntegrityWithAead { kind }),
        (false, None) => Err(ProposalError::Missing {
            kind,
            what: TransformType::Integ,
        }),
        _ => Ok((encr, key_len, integ)),
    }
}

impl IkeProposal {
    /// Parses a strongSwan IKE proposal such as `aes256gcm16-prfsha256-ecp256` or
    /// `aes256-sha256-modp2048` (ASCII case is ignored). As in strongSwan, a proposal with an
    /// integrity algorithm but no PRF uses the PRF of the same hash (`sha256` -> `prfsha256`);
    /// an AEAD proposal must name its PRF.
    pub fn parse(s: &str) -> Result<IkeProposal, ProposalError> {
        let kind = ProposalKind::Ike;
        let parts = parse_parts(s, kind)?;
        let (encr, key_len, integ) = check_cipher(kind, parts.encr, parts.integ)?;
        let prf =
            parts
                .prf
                .or(integ.map(IntegAlg::matching_prf))
                .ok_or(ProposalError::Missing {
                    kind,
                    what: TransformType::Prf,
                })?;
        let dh = parts.dh.ok_or(ProposalError::Missing {
            kind,
            what: TransformType::Dh,
        })?;
        Ok(IkeProposal {
            encr,
            key_len,
            prf,
            integ,
            dh,
        })
    }

    /// The transforms to put in an SA payload's proposal (protocol IKE): ENCR (with its Key
    /// Length attribute), PRF, INTEG (if any), D-H.
    pub fn transforms(&self) -> Vec<Transform> {
        let mut t = vec![
            Transform {
                kind: TransformType::Encr,
                id: self.encr.id(),
                key_len: Some(self.key_len),
            },
            Transform {
                kind: TransformType::Prf,
                id: self.prf.id(),
                key_len: None,
            },
        ];
        if let Some(i) = self.integ {
            t.push(Transform {
                kind: TransformType::Integ,
                id: i.id(),
                key_len: None,
            });
        }
        t.push(Transform {
            kind: TransformType::Dh,
            id: self.dh.id(),
            key_len: None,
        });
        t
    }

    /// Reads a proposal that names exactly one transform of each type, such as the one a
    /// responder chose (RFC 7296 2.7). An INTEG transform with id 0 (`NONE`) counts as none.
    pub fn from_transforms(transforms: &[Transform]) -> Result<IkeProposal, ProposalError> {
        let kind = ProposalKind::Ike;
        let mut parts = Parts::default();
        for &t in transforms {
            let unsupported = ProposalError::UnsupportedTransform { kind, transform: t };
            match t.kind {
                TransformType::Encr => {
                    let e = EncrAlg::from_id(t.id).ok_or(unsupported.clone())?;
                    let bits = t
                        .key_len
                        .filter(|&b| e.supports_key_len(b))
                        .ok_or(unsupported)?;
                    set(&mut parts.encr, (e, bits), kind, t.kind)?;
                }
                TransformType::Prf => {
                    let p = PrfAlg::from_id(t.id).ok_or(unsupported)?;
                    set(&mut parts.prf, p, kind, t.kind)?;
                }
                TransformType::Integ if t.id == 0 => {}
                TransformType::Integ => {
                    let i = IntegAlg::from_id(t.id).ok_or(unsupported)?;
                    set(&mut parts.integ, i, kind, t.kind)?;
                }
                TransformType::Dh => {
                    let g = DhGroup::from_id(t.id).ok_or(unsupported)?;
                    set(&mut parts.dh, g, kind, t.kind)?;
                }
                TransformType::Esn => return Err(unsupported),
            }
        }
        let (encr, key_len, integ) = check_cipher(kind, parts.encr, parts.integ)?;
        let missing = |what| ProposalError::Missing { kind, what };
        Ok(IkeProposal {
            encr,
            key_len,
            prf: parts.prf.ok_or(missing(TransformType::Prf))?,
            integ,
            dh: parts.dh.ok_or(missing(TransformType::Dh))?,
        })
    }
}

impl core::str::FromStr for IkeProposal {
    type Err = ProposalError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        IkeProposal::parse(s)
    }
}

impl fmt::Display for IkeProposal {
    /// The canonical strongSwan spelling, e.g. `aes256-sha256-prfsha256-modp2048`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.encr.keyword(self.key_len).unwrap_or("?"))?;
        if let Some(i) = self.integ {
            write!(f, "-{}", i.keyword())?;
        }
        write!(f, "-{}-{}", self.prf.keyword(), self.dh.keyword())
    }
}

impl EspProposal {
    /// Parses a strongSwan ESP proposal such as `aes256gcm16`, `aes256-sha256`,
    /// `aes256gcm16-ecp256` (PFS group) or `aes256gcm16-esn` (ASCII case is ignored). Without
    /// `esn`, extended sequence numbers are off, as in strongSwan.
    pub fn parse(s: &str) -> Result<EspProposal, ProposalError> {
        let kind = ProposalKind::Esp;
        let parts = parse_parts(s, kind)?;
        let (encr, key_len, integ) = check_cipher(kind, parts.encr, parts.integ)?;
        Ok(EspProposal {
            encr,
            key_len,
            integ,
            dh: parts.dh,
            esn: parts.esn.unwrap_or(false),
        })
    }

    /// The transforms to put in an SA payload's proposal (protocol ESP): ENCR (with its Key
    /// Length attribute), INTEG (if any), D-H (if PFS), ESN (always: RFC 7296 3.3.2 makes the ESN
    /// transform mandatory for ESP).
    pub fn transforms(&self) -> Vec<Transform> {
        let mut t = vec![Transform {
            kind: TransformType::Encr,
            id: self.encr.id(),
            key_len: Some(self.key_len),
        }];
        if let Some(i) = self.integ {
            t.push(Transform {
                kind: TransformType::Integ,
                id: i.id(),
                key_len: None,
            });
        }
        if let Some(g) = self.dh {
            t.push(Transform {
                kind: TransformType::Dh,
                id: g.id(),
                key_len: None,
            });
        }
        t.push(Transform {
            kind: TransformType::Esn,
            id: u16::from(self.esn),
            key_len: None,
        });
        t
    }

    /// Reads a proposal that names at most one transform of each type. INTEG id 0 and D-H id 0
    /// (`NONE`) count as none; a missing ESN transform means no ESN.
    pub fn from_transforms(transforms: &[Transform]) -> Result<EspProposal, ProposalError> {
        let kind = ProposalKind::Esp;
        let mut parts = Parts::default();
        for &t in transforms {
            let unsupported = ProposalError::UnsupportedTransform { kind, transform: t };
            match t.kind {
                TransformType::Encr => {
                    let e = EncrAlg::from_id(t.id).ok_or(unsupported.clone())?;
                    let bits = t
                        .key_len
                        .filter(|&b| e.supports_key_len(b))
                        .ok_or(unsupported)?;
                    set(&mut parts.encr, (e, bits), kind, t.kind)?;
                }
                TransformType::Integ | TransformType::Dh if t.id == 0 => {}
                TransformType::Integ => {
                    let i = IntegAlg::from_id(t.id).ok_or(unsupported)?;
                    set(&mut parts.integ, i, kind, t.kind)?;
                }
                TransformType::Dh => {
                    let g = DhGroup::from_id(t.id).ok_or(unsupported)?;
                    set(&mut parts.dh, g, kind, t.kind)?;
                }
                TransformType::Esn => {
                    let e = match t.id {
                        0 => false,
                        1 => true,
                        _ => return Err(unsupported),
                    };
                    set(&mut parts.esn, e, kind, t.kind)?;
                }
                TransformType::Prf => return Err(unsupported),
            }
        }
        let (encr, key_len, integ) = check_cipher(kind, parts.encr, parts.integ)?;
        Ok(EspProposal {
            encr,
            key_len,
            integ,
            dh: parts.dh,
            esn: parts.esn.unwrap_or(false),
        })
    }

    /// Bytes of KEYMAT one direction takes (RFC 7296 2.17): the encryption keying material
    /// (with the 4-byte salt for AES-GCM), then the integrity key if any.
    pub fn keymat_len_per_direction(&self) -> usize {
        self.encr.key_material_len(self.key_len).unwrap_or(0)
            + self.integ.map_or(0, IntegAlg::key_len)
    }
}

impl core::str::FromStr for EspProposal {
    type Err = ProposalError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EspProposal::parse(s)
    }
}

impl fmt::Display for EspProposal {
    /// The canonical strongSwan spelling, e.g. `aes256gcm16-ecp256-esn`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.encr.keyword(self.key_len).unwrap_or("?"))?;
        if let Some(i) = self.integ {
            write!(f, "-{}", i.keyword())?;
        }
        if let Some(g) = self.dh {
            write!(f, "-{}", g.keyword())?;
        }
        f.write_str(if self.esn { "-esn" } else { "-noesn" })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ike_proposals_from_the_domain() {
        let p = IkeProposal::parse("aes256gcm16-prfsha256-ecp256").unwrap();
        assert_eq!(
            p,
            IkeProposal {
                encr: EncrAlg::AesGcm16,
                key_len: 256,
                prf: PrfAlg::HmacSha256,
                integ: None,
                dh: DhGroup::Ecp256
            }
        );
        let p = IkeProposal::parse("aes256-sha256-modp2048").unwrap();
        assert_eq!(
            p,
            IkeProposal {
                encr: EncrAlg::AesCbc,
                key_len: 256,
                prf: PrfAlg::HmacSha256,
                integ: Some(IntegAlg::HmacSha256_128),
                dh: DhGroup::Modp2048
            }
        );
        let p = IkeProposal::parse("aes128-sha1-modp2048").unwrap();
        assert_eq!(
            (p.encr, p.key_len, p.prf, p.integ, p.dh),
            (
                EncrAlg::AesCbc,
                128,
                PrfAlg::HmacSha1,
                Some(IntegAlg::HmacSha1_96),
                DhGroup::Modp2048
            )
        );
        let p = IkeProposal::parse("aes256gcm16-prfsha384-ecp384").unwrap();
        assert_eq!(
            (p.encr, p.key_len, p.prf, p.integ, p.dh),
            (
                EncrAlg::AesGcm16,
                256,
                PrfAlg::HmacSha384,
                None,
                DhGroup::Ecp384
            )
        );
        let p = IkeProposal::parse("aes256-sha256-curve25519").unwrap();
        assert_eq!(p.dh, DhGroup::Curve25519);
        assert_eq!(p.dh.id(), 31);
        let p = IkeProposal::parse("AES128-SHA1-MODP1024").unwrap();
        assert_eq!(p.dh, DhGroup::Modp1024);
    }

    #[test]
    fn esp_proposals_from_the_domain() {
        let p = EspProposal::parse("aes256gcm16").unwrap();
        assert_eq!(
            p,
            EspProposal {
                encr: EncrAlg::AesGcm16,
                key_len: 256,
                integ: None,
                dh: None,
                esn: false
            }
        );
        assert_eq!(EspProposal::parse("aes128gcm16").unwrap().key_len, 128);
        let p = EspProposal::parse("aes256-sha256").unwrap();
        assert_eq!(
            (p.encr, p.key_len, p.integ),
            (EncrAlg::AesCbc, 256, Some(IntegAlg::HmacSha256_128))
        );
        assert_eq!(EspProposal::parse("aes128-sha256").unwrap().key_len, 128);
        assert_eq!(
            EspProposal::parse("aes256gcm16-ecp256").unwrap().dh,
            Some(DhGroup::Ecp256)
        );
        assert!(EspProposal::parse("aes256gcm16-esn").unwrap().esn);
        assert!(!EspProposal::parse("aes256gcm16-noesn").unwrap().esn);
    }

    #[test]
    fn unknown_tokens_are_named_and_known_ones_listed() {
        let e = IkeProposal::parse("aes256-sha512-modp2048").unwrap_err();
        assert_eq!(
            e,
            ProposalError::UnknownKeyword {
                kind: ProposalKind::Ike,
                token: "sha512".into()
            }
        );
        let msg = e.to_string();
        assert!(msg.contains("\"sha512\""), "{msg}");
        assert!(
            msg.contains("aes256gcm16") && msg.contains("prfsha256") && msg.contains("curve25519"),
            "{msg}"
        );
        // A PRF keyword means nothing in ESP, and ESN nothing in IKE.
        assert!(matches!(
            EspProposal::parse("aes256gcm16-prfsha256"),
            Err(ProposalError::UnknownKeyword { token, .. }) if token == "prfsha256"
        ));
        assert!(matches!(
            IkeProposal::parse("aes256gcm16-prfsha256-ecp256-esn"),
            Err(ProposalError::UnknownKeyword { token, .. }) if token == "esn"
        ));
        assert!(EspProposal::parse("aes192").is_err());
        assert!(EspProposal::parse("3des-md5").is_err());
    }

    #[test]
    fn structural_errors() {
        use ProposalError::*;
        let ike = ProposalKind::Ike;
        let esp = ProposalKind::Esp;
        assert_eq!(IkeProposal::parse(""), Err(EmptyToken { kind: ike }));
        assert_eq!(
            IkeProposal::parse("aes256--sha256"),
            Err(EmptyToken { kind: ike })
        );
        assert_eq!(
            IkeProposal::parse("aes256gcm16-ecp256"),
            Err(Missing {
                kind: ike,
                what: TransformType::Prf
            })
        );
        assert_eq!(
            IkeProposal::parse("aes256-sha256"),
            Err(Missing {
                kind: ike,
                what: TransformType::Dh
            })
        );
        assert_eq!(
            IkeProposal::parse("aes256-prfsha256-modp2048"),
            Err(Missing {
                kind: ike,
                what: TransformType::Integ
            })
        );
        assert_eq!(
            EspProposal::parse("sha256"),
            Err(Missing {
                kind: esp,
                what: TransformType::Encr
            })
        );
        assert_eq!(
            EspProposal::parse("aes256gcm16-sha256"),
            Err(IntegrityWithAead { kind: esp })
        );
        assert_eq!(
            IkeProposal::parse("aes128-aes256-sha256-modp2048"),
            Err(Duplicate {
                kind: ike,
                what: TransformType::Encr
            })
        );
        assert_eq!(
            EspProposal::parse("aes256gcm16-esn-noesn"),
            Err(Duplicate {
                kind: esp,
                what: TransformType::Esn
            })
        );
        for e in [
            IkeProposal::parse("aes256gcm16-ecp256").unwrap_err(),
            EspProposal::parse("aes256").unwrap_err(),
        ] {
            assert!(!e.to_string().is_empty());
        }
    }

    #[test]
    fn transforms_round_trip_and_display() {
        for s in [
            "aes256gcm16-prfsha256-ecp256",
            "aes256-sha256-modp2048",
            "aes128-sha1-modp2048",
            "aes256gcm16-prfsha384-ecp384",
            "aes256-sha256-curve25519",
        ] {
            let p = IkeProposal::parse(s).unwrap();
            assert_eq!(IkeProposal::from_transforms(&p.transforms()).unwrap(), p);
            assert_eq!(IkeProposal::parse(&p.to_string()).unwrap(), p, "{p}");
        }
        for s in [
            "aes256gcm16",
            "aes128gcm16",
            "aes256-sha256",
            "aes128-sha256",
            "aes256gcm16-ecp256",
            "aes256gcm16-esn",
        ] {
            let p = EspProposal::parse(s).unwrap();
            assert_eq!(EspProposal::from_transforms(&p.transforms()).unwrap(), p);
            assert_eq!(EspProposal::parse(&p.to_string()).unwrap(), p, "{p}");
        }
        assert_eq!(
            IkeProposal::parse("aes256-sha256-modp2048")
                .unwrap()
                .to_string(),
            "aes256-sha256-prfsha256-modp2048"
        );
        // Wire ids (IANA).
        let t = IkeProposal::parse("aes256gcm16-prfsha256-ecp256")
            .unwrap()
            .transforms();
        assert_eq!(
            t.iter()
                .map(|t| (t.kind.id(), t.id, t.key_len))
                .collect::<Vec<_>>(),
            vec![(1, 20, Some(256)), (2, 5, None), (4, 19, None)]
        );
        let t = EspProposal::parse("aes256-sha256").unwrap().transforms();
        assert_eq!(
            t.iter()
                .map(|t| (t.kind.id(), t.id, t.key_len))
                .collect::<Vec<_>>(),
            vec![(1, 12, Some(256)), (3, 12, None), (5, 0, None)]
        );
    }

    #[test]
    fn from_transforms_rejects_what_it_cannot_use() {
        let encr = |id, bits| Transform {
            kind: TransformType::Encr,
            id,
            key_len: bits,
        };
        let other = |kind, id| Transform {
            kind,
            id,
            key_len: None,
        };
        // AES-192 and a key length attribute missing.
        for e in [encr(12, Some(192)), encr(12, None), encr(3, None)] {
            let r = IkeProposal::from_transforms(&[
                e,
                other(TransformType::Prf, 5),
                other(TransformType::Integ, 12),
                other(TransformType::Dh, 14),
            ]);
            assert!(
                matches!(r, Err(ProposalError::UnsupportedTransform { .. })),
                "{r:?}"
            );
        }
        // INTEG NONE with an AEAD is fine.
        let p = IkeProposal::from_transforms(&[
            encr(20, Some(128)),
            other(TransformType::Prf, 2),
            other(TransformType::Integ, 0),
            other(TransformType::Dh, 31),
        ])
        .unwrap();
        assert_eq!(p.integ, None);
        assert_eq!(p.dh, DhGroup::Curve25519);
        // A missing ESN transform means no ESN.
        let p = EspProposal::from_transforms(&[encr(20, Some(256))]).unwrap();
        assert!(!p.esn);
        assert!(
            EspProposal::from_transforms(&[encr(20, Some(256)), other(TransformType::Esn, 7)])
                .is_err()
        );
        assert!(
            EspProposal::from_transforms(&[encr(20, Some(256)), other(TransformType::Prf, 5)])
                .is_err()
        );
    }

    #[test]
    fn lengths() {
        assert_eq!(EncrAlg::AesGcm16.key_material_len(256), Some(36));
        assert_eq!(EncrAlg::AesGcm16.key_material_len(128), Some(20));
        assert_eq!(EncrAlg::AesCbc.key_material_len(256), Some(32));
        assert_eq!(EncrAlg::AesCbc.key_material_len(192), None);
        assert_eq!(
            EspProposal::parse("aes256gcm16")
                .unwrap()
                .keymat_len_per_direction(),
            36
        );
        assert_eq!(
            EspProposal::parse("aes256-sha256")
                .unwrap()
                .keymat_len_per_direction(),
            64
        );
        assert_eq!(
            EspProposal::parse("aes128-sha1")
                .unwrap()
                .keymat_len_per_direction(),
            36
        );
    }
}
