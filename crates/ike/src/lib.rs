//! IKEv2 (RFC 7296) for Causeway, sans-IO: nothing here does I/O, reads a clock or draws
//! randomness by itself; time and random bytes are passed in, so that two endpoints can be run
//! against each other in-process, deterministically.
//!
//! - [`wire`]: the message codec (header, payloads, the encrypted SK payload's framing).
//! - [`crypto`]: transforms, PRF and prf+, Diffie-Hellman groups, key derivation, the SK payload's
//!   protection, PSK authentication.
//! - [`engine`]: the IKE SA and Child SA state machines: one [`engine::Endpoint`] for every
//!   configured peer, driven by datagrams and timers, producing datagrams and events.

#![forbid(unsafe_code)]

pub mod crypto;
pub mod engine;
pub mod wire;
