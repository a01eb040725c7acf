//! IKEv2 cryptography, sans-IO: transforms and proposals, PRF and prf+, Diffie-Hellman, key
//! derivation, the SK payload's protection, PSK authentication, NAT detection and cookies.
//!
//! Nothing here reads a clock or draws randomness by itself: random bytes come through the
//! [`Random`] trait ([`SystemRandom`] in production, [`SeededRandom`] in tests and simulations)
//! and time is an argument. Every cipher, hash, MAC and curve is `aws-lc-rs`'s; the MODP groups'
//! modular exponentiation is `crypto-bigint`'s constant-time (fixed-window Montgomery)
//! exponentiation. Secret bytes live in [`SecretBytes`] (zeroized on drop, `Debug` redacted).
//!
//! # How an IKE SA uses this module (RFC 7296)
//!
//! 1. Configuration: parse proposal strings with [`IkeProposal::parse`] / [`EspProposal::parse`]
//!    (strongSwan's keywords, e.g. `aes256gcm16-prfsha256-ecp256`); put
//!    [`IkeProposal::transforms`] into the SA payload; turn the peer's chosen proposal back with
//!    [`IkeProposal::from_transforms`].
//! 2. IKE_SA_INIT: `let (private, ke_data) = proposal.dh.generate(rng)?` and send `ke_data` in the
//!    KE payload; on the peer's KE payload, `let g_ir = proposal.dh.shared(&private, peer_ke)?`.
//!    Nonces are `rng.fill`ed by the caller (at least half the PRF key size, RFC 7296 2.10; 32 bytes
//!    is right for every PRF here). NAT detection: [`nat_detection_hash`]. Under load, a responder
//!    answers with a cookie from [`CookieJar::cookie`] and checks it with [`CookieJar::verify`].
//! 3. Keys: [`IkeSaKeys::derive`] (SKEYSEED and the seven keys, 2.14). Build
//!    [`IkeSaKeys::initiator_sk`] (protects messages the original initiator sends) and
//!    [`IkeSaKeys::responder_sk`] (messages the original responder sends); each side seals with its
//!    own and opens with the other.
//! 4. Protected messages: encode the inner payloads (`wire::sk::encode_inner`), make the prefix
//!    `IKE header | SK header` for a body of [`SkCipher::sealed_len`] bytes
//!    (`wire::SkPayload::message_prefix`), then [`SkCipher::seal_append`] onto that prefix: the
//!    result is the datagram. On receipt, `Message::split_encrypted` gives `(aad, body)` for
//!    [`SkCipher::open`], whose output goes to `wire::sk::decode_inner`. An [`SkError`] means:
//!    drop the message silently and count it ([`SkError::as_str`]).
//!    AUTH for PSK: [`signed_octets`] then [`psk_auth`] / [`verify_psk_auth`].
//! 5. Child SAs: [`ChildSaKeys::derive`] with SK_d and the exchange's nonces (and the new DH secret
//!    when PFS is negotiated, 2.17). Rekeying the IKE SA: [`IkeSaKeys::derive_rekeyed`] (2.18).

mod auth;
mod cookie;
mod dh;
mod keys;
mod natd;
mod prf;
mod random;
mod secret;
mod sk;
mod transforms;

#[cfg(test)]
mod tests;

pub use auth::{psk_auth, signed_octets, verify_psk_auth, KEY_PAD_FOR_IKEV2};
pub use cookie::{CookieJar, COOKIE_LEN};
pub use dh::{DhError, DhPrivate, SharedSecret};
pub use keys::{ChildSaKeys, EspKeys, IkeSaKeys, KeyError};
pub use natd::{nat_detection_hash, NAT_DETECTION_HASH_LEN};
pub use prf::{prf, prf_plus};
pub use random::{Random, SeededRandom, SystemRandom};
pub use secret::SecretBytes;
pub use sk::{SkCipher, SkError};
pub use transforms::{
    DhGroup, EncrAlg, EspProposal, IkeProposal, IntegAlg, PrfAlg, ProposalError, ProposalKind,
    Transform, TransformType,
};
