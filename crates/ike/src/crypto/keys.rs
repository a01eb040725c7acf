//! Key derivation: the IKE SA's keys (RFC 7296 2.14), a rekeyed IKE SA's (2.18) and a Child
//! SA's KEYMAT (2.17).

use core::fmt;

use super::dh::SharedSecret;
use super::prf::{prf_parts, prf_plus_parts};
use super::secret::SecretBytes;
use super::sk::SkCipher;
use super::transforms::{EncrAlg, EspProposal, IkeProposal, IntegAlg, PrfAlg};

/// Why keys could not be derived or a cipher could not be keyed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyError {
    /// prf+ can produce at most 255 PRF blocks (RFC 7296 2.13).
    PrfPlusTooLong {
        /// Bytes asked for.
        requested: usize,
        /// The most this PRF can produce.
        max: usize,
    },
    /// The encryption algorithm does not support this key length (this crate: 128 or 256 bits).
    UnsupportedKeyLength {
        /// The algorithm.
        encr: EncrAlg,
        /// The key length in bits.
        bits: u16,
    },
    /// A key of the wrong length was given.
    WrongKeyLength {
        /// Which key ("SK_e", "SK_a").
        what: &'static str,
        /// The length needed.
        expected: usize,
        /// The length given.
        got: usize,
    },
    /// A non-AEAD cipher needs an integrity algorithm and key; an AEAD takes none.
    IntegrityMismatch,
    /// AWS-LC refused the key (should not happen with the right length).
    Rejected,
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyError::PrfPlusTooLong { requested, max } => write!(
                f,
                "prf+ asked for {requested} bytes, this PRF can produce at most {max}"
            ),
            KeyError::UnsupportedKeyLength { encr, bits } => {
                write!(f, "{encr:?} does not support {bits}-bit keys")
            }
            KeyError::WrongKeyLength {
                what,
                expected,
                got,
            } => write!(f, "{what} has {got} bytes, expected {expected}"),
            KeyError::IntegrityMismatch => {
                f.write_str("an AEAD cipher takes no integrity key, any other cipher needs one")
            }
            KeyError::Rejected => f.write_str("the cryptographic library refused the key"),
        }
    }
}

impl std::error::Error for KeyError {}

/// The seven secrets of an IKE SA (RFC 7296 2.14), with the proposal they were derived for.
/// `sk_ai` / `sk_ar` are `None` for an AEAD cipher; `sk_ei` / `sk_er` include the 4-byte salt
/// for AES-GCM (RFC 5282 7.1).
#[derive(Debug, Clone)]
pub struct IkeSaKeys {
    /// The proposal the keys were derived for.
    pub proposal: IkeProposal,
    /// SK_d: derives Child SA keys and the next IKE SA's SKEYSEED.
    pub sk_d: SecretBytes,
    /// SK_ai: integrity key for messages sent by the original initiator.
    pub sk_ai: Option<SecretBytes>,
    /// SK_ar: integrity key for messages sent by the original responder.
    pub sk_ar: Option<SecretBytes>,
    /// SK_ei: encryption key (and salt) for messages sent by the original initiator.
    pub sk_ei: SecretBytes,
    /// SK_er: encryption key (and salt) for messages sent by the original responder.
    pub sk_er: SecretBytes,
    /// SK_pi: for the initiator's AUTH payload (MACedIDForI).
    pub sk_pi: SecretBytes,
    /// SK_pr: for the responder's AUTH payload (MACedIDForR).
    pub sk_pr: SecretBytes,
}

impl IkeSaKeys {
    /// `SKEYSEED = prf(Ni | Nr, g^ir)` (RFC 7296 2.14). `ni` and `nr` are the Nonce payloads'
    /// data; for HMAC PRFs the whole `Ni | Nr` is the key.
    pub fn skeyseed(prf: PrfAlg, ni: &[u8], nr: &[u8], g_ir: &SharedSecret) -> SecretBytes {
        let mut key = SecretBytes::zeroed(ni.len() + nr.len());
        key.as_mut_bytes()[..ni.len()].copy_from_slice(ni);
        key.as_mut_bytes()[ni.len()..].copy_from_slice(nr);
        prf_parts(prf, key.as_bytes(), &[g_ir.as_bytes()])
    }

    /// `SKEYSEED = prf(SK_d (old), g^ir (new) | Ni | Nr)` for an IKE SA rekeyed with
    /// CREATE_CHILD_SA (RFC 7296 2.18), with the **old** IKE SA's PRF. `ni` / `nr` are the nonces
    /// of the CREATE_CHILD_SA exchange (initiator's first).
    pub fn rekey_skeyseed(
        old_prf: PrfAlg,
        old_sk_d: &SecretBytes,
        g_ir: &SharedSecret,
        ni: &[u8],
        nr: &[u8],
    ) -> SecretBytes {
        prf_parts(old_prf, old_sk_d.as_bytes(), &[g_ir.as_bytes(), ni, nr])
    }

    /// The IKE SA's keys after IKE_SA_INIT (RFC 7296 2.14):
    ///
    /// ```text
    /// SKEYSEED = prf(Ni | Nr, g^ir)
    /// {SK_d | SK_ai | SK_ar | SK_ei | SK_er | SK_pi | SK_pr} = prf+ (SKEYSEED, Ni | Nr | SPIi | SPIr)
    /// ```
    ///
    /// SPIs are the 8-byte IKE SPIs as on the wire (`u64` big-endian).
    pub fn derive(
        proposal: &IkeProposal,
        g_ir: &SharedSecret,
        ni: &[u8],
        nr: &[u8],
        spi_i: u64,
        spi_r: u64,
    ) -> Result<IkeSaKeys, KeyError> {
        let skeyseed = IkeSaKeys::skeyseed(proposal.prf, ni, nr, g_ir);
        IkeSaKeys::from_skeyseed(proposal, &skeyseed, ni, nr, spi_i, spi_r)
    }

    /// The new IKE SA's keys after a rekey through CREATE_CHILD_SA (RFC 7296 2.18): SKEYSEED from
    /// [`IkeSaKeys::rekey_skeyseed`] with the old SA's PRF and SK_d, then prf+ with the **new**
    /// proposal's PRF over `Ni | Nr | SPIi | SPIr`, where the nonces are the exchange's and the
    /// SPIs the new SA's (SPIi from the exchange's initiator, SPIr from its responder).
    #[allow(clippy::too_many_arguments)]
    pub fn derive_rekeyed(
        old_prf: PrfAlg,
        old_sk_d: &SecretBytes,
        proposal: &IkeProposal,
        g_ir: &SharedSecret,
        ni: &[u8],
        nr: &[u8],
        spi_i: u64,
        spi_r: u64,
    ) -> Result<IkeSaKeys, KeyError> {
        let skeyseed = IkeSaKeys::rekey_skeyseed(old_prf, old_sk_d, g_ir, ni, nr);
        IkeSaKeys::from_skeyseed(proposal, &skeyseed, ni, nr, spi_i, spi_r)
    }

    /// The seven keys from a SKEYSEED: prf+(SKEYSEED, Ni | Nr | SPIi | SPIr) split in the order
    /// SK_d, SK_ai, SK_ar, SK_ei, SK_er, SK_pi, SK_pr with the negotiated lengths.
    pub fn from_skeyseed(
        proposal: &IkeProposal,
        skeyseed: &SecretBytes,
        ni: &[u8],
        nr: &[u8],
        spi_i: u64,
        spi_r: u64,
    ) -> Result<IkeSaKeys, KeyError> {
        let prf = proposal.prf;
        let prf_key = prf.key_len();
        let integ = proposal.integ.map_or(0, IntegAlg::key_len);
        let encr = proposal.encr.key_material_len(proposal.key_len).ok_or(
            KeyError::UnsupportedKeyLength {
                encr: proposal.encr,
                bits: proposal.key_len,
            },
        )?;
        let total = 3 * prf_key + 2 * integ + 2 * encr;
        let keymat = prf_plus_parts(
            prf,
            skeyseed.as_bytes(),
            &[ni, nr, &spi_i.to_be_bytes(), &spi_r.to_be_bytes()],
            total,
        )?;
        let mut rest = keymat.as_bytes();
        let mut take = |n: usize| {
            let (head, tail) = rest.split_at(n);
            rest = tail;
            SecretBytes::from_slice(head)
        };
        let sk_d = take(prf_key);
        let sk_ai = take(integ);
        let sk_ar = take(integ);
        let sk_ei = take(encr);
        let sk_er = take(encr);
        let sk_pi = take(prf_key);
        let sk_pr = take(prf_key);
        let has_integ = proposal.integ.is_some();
        Ok(IkeSaKeys {
            proposal: *proposal,
            sk_d,
            sk_ai: has_integ.then_some(sk_ai),
            sk_ar: has_integ.then_some(sk_ar),
            sk_ei,
            sk_er,
            sk_pi,
            sk_pr,
        })
    }

    /// The SK payload cipher for messages the original initiator sends (SK_ei, SK_ai): the
    /// initiator seals with it, the responder opens with it.
    pub fn initiator_sk(&self) -> Result<SkCipher, KeyError> {
        SkCipher::new(
            self.proposal.encr,
            self.proposal.key_len,
            self.proposal.integ,
            &self.sk_ei,
            self.sk_ai.as_ref(),
        )
    }

    /// The SK payload cipher for messages the original responder sends (SK_er, SK_ar).
    pub fn responder_sk(&self) -> Result<SkCipher, KeyError> {
        SkCipher::new(
            self.proposal.encr,
            self.proposal.key_len,
            self.proposal.integ,
            &self.sk_er,
            self.sk_ar.as_ref(),
        )
    }
}

/// The keys of one ESP direction, as RFC 7296 2.17 takes them from KEYMAT: the encryption
/// keying material first (for AES-GCM the key followed by the 4-byte salt, RFC 4106 8.1: what
/// `causeway_esp::KeyMaterial::new` takes), then the integrity key for a non-AEAD cipher.
#[derive(Debug, Clone)]
pub struct EspKeys {
    /// Encryption key (with the salt for AES-GCM).
    pub encr: SecretBytes,
    /// Integrity key (AES-CBC with HMAC), `None` for AES-GCM.
    pub integ: Option<SecretBytes>,
}

/// A Child SA's keys (RFC 7296 2.17).
#[derive(Debug, Clone)]
pub struct ChildSaKeys {
    /// The ESP SA carrying traffic from the exchange's initiator to its responder.
    pub initiator_to_responder: EspKeys,
    /// The ESP SA carrying traffic from the exchange's responder to its initiator.
    pub responder_to_initiator: EspKeys,
}

impl ChildSaKeys {
    /// `KEYMAT = prf+(SK_d, Ni | Nr)`, or `prf+(SK_d, g^ir (new) | Ni | Nr)` when the
    /// CREATE_CHILD_SA exchange carried KE payloads (PFS), split initiator-to-responder first
    /// (RFC 7296 2.17). `prf` and `sk_d` are the IKE SA's. `ni` / `nr` are the nonces of the
    /// exchange that creates the Child SA: those of IKE_SA_INIT for the first Child SA (created
    /// in IKE_AUTH), those of the CREATE_CHILD_SA exchange otherwise (initiator's first, even
    /// when the original responder initiates the exchange).
    pub fn derive(
        prf: PrfAlg,
        sk_d: &SecretBytes,
        esp: &EspProposal,
        g_ir: Option<&SharedSecret>,
        ni: &[u8],
        nr: &[u8],
    ) -> Result<ChildSaKeys, KeyError> {
        let encr =
            esp.encr
                .key_material_len(esp.key_len)
                .ok_or(KeyError::UnsupportedKeyLength {
                    encr: esp.encr,
                    bits: esp.key_len,
                })?;
        let integ = esp.integ.map_or(0, IntegAlg::key_len);
        let per_direction = encr + integ;
        let g: &[u8] = g_ir.map_or(&[], SharedSecret::as_bytes);
        let keymat = prf_plus_parts(prf, sk_d.as_bytes(), &[g, ni, nr], 2 * per_direction)?;
        let direction = |bytes: &[u8]| EspKeys {
            encr: SecretBytes::from_slice(&bytes[..encr]),
            integ: esp
                .integ
                .map(|_| SecretBytes::from_slice(&bytes[encr..per_direction])),
        };
        let (i2r, r2i) = keymat.as_bytes().split_at(per_direction);
        Ok(ChildSaKeys {
            initiator_to_responder: direction(i2r),
            responder_to_initiator: direction(r2i),
        })
    }
}
