//! Pre-shared-key authentication (RFC 7296 2.15).
//!
//! ```text
//! AUTH = prf( prf(Shared Secret, "Key Pad for IKEv2"), <SignedOctets>)
//! InitiatorSignedOctets = RealMessage1 | NonceRData | MACedIDForI
//! MACedIDForI = prf(SK_pi, RestOfInitIDPayload)
//! ResponderSignedOctets = RealMessage2 | NonceIData | MACedIDForR
//! MACedIDForR = prf(SK_pr, RestOfRespIDPayload)
//! ```

use aws_lc_rs::constant_time;

use super::prf::{prf, prf_parts};
use super::secret::SecretBytes;
use super::transforms::PrfAlg;

/// The 17 ASCII octets (no terminating NUL) the PSK is first run through (RFC 7296 2.15).
pub const KEY_PAD_FOR_IKEV2: &[u8] = b"Key Pad for IKEv2";

/// Builds `<SignedOctets>` (RFC 7296 2.15) from its parts:
///
/// - `real_message`: the whole IKE_SA_INIT message this side **sent**, as sent (initiator:
///   RealMessage1; responder: RealMessage2), from the first octet of the IKE header;
/// - `peer_nonce`: the data of the **peer's** Nonce payload from IKE_SA_INIT, without its
///   generic payload header (initiator: Nr; responder: Ni);
/// - `sk_p`: this side's SK_pi (initiator) or SK_pr (responder);
/// - `id_payload_body`: this side's IDi / IDr payload without its 4-byte generic payload header,
///   i.e. ID Type, the three RESERVED octets and the identification data.
///
/// To verify the peer's AUTH, build the peer's octets: the message the peer sent, our own nonce,
/// the peer's SK_p and the peer's ID payload body.
pub fn signed_octets(
    prf_alg: PrfAlg,
    real_message: &[u8],
    peer_nonce: &[u8],
    sk_p: &SecretBytes,
    id_payload_body: &[u8],
) -> Vec<u8> {
    let maced_id = prf(prf_alg, sk_p.as_bytes(), id_payload_body);
    let mut out = Vec::with_capacity(real_message.len() + peer_nonce.len() + maced_id.len());
    out.extend_from_slice(real_message);
    out.extend_from_slice(peer_nonce);
    out.extend_from_slice(maced_id.as_bytes());
    out
}

/// The AUTH payload's Authentication Data for method 2 (Shared Key Message Integrity Code):
/// `prf(prf(psk, "Key Pad for IKEv2"), signed_octets)`.
pub fn psk_auth(prf_alg: PrfAlg, psk: &[u8], signed_octets: &[u8]) -> Vec<u8> {
    let key = prf_parts(prf_alg, psk, &[KEY_PAD_FOR_IKEV2]);
    prf(prf_alg, key.as_bytes(), signed_octets)
        .as_bytes()
        .to_vec()
}

/// Checks a received AUTH value against the expected one, in constant time.
pub fn verify_psk_auth(
    prf_alg: PrfAlg,
    psk: &[u8],
    signed_octets: &[u8],
    auth_data: &[u8],
) -> bool {
    let expected = psk_auth(prf_alg, psk, signed_octets);
    constant_time::verify_slices_are_equal(&expected, auth_data).is_ok()
}
