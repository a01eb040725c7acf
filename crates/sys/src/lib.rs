//! Causeway's system layer: the only crate of the workspace allowed `unsafe`.
//!
//! - [`tun`]: TUN devices (`IFF_VNET_HDR`, `TUNSETOFFLOAD`, multi-queue), created in a named
//!   network namespace without moving the calling thread.
//! - [`poll`]: waiting for readable fds with `poll(2)`, and a [`poll::Waker`] to interrupt the wait.
//! - [`netns`]: running code inside a named network namespace (`/run/netns/NAME`).
//! - [`link`]: interface configuration through iproute2's `ip`, and a cheap link-state query.
//! - [`udp`]: UDP sockets for the ESP-in-UDP underlay: batched I/O (`sendmmsg`/`recvmmsg`), UDP
//!   GSO and GRO, created in a named network namespace.
//! - [`packet`]: packet sockets bound to one interface, to put raw IP packets onto it and to
//!   capture what crosses it (for the tests).
//!
//! Every `unsafe` block carries a `// SAFETY:` comment. Linux only.
#![warn(missing_docs)]

mod cmd;
mod names;

pub mod link;
pub mod netns;
pub mod packet;
pub mod poll;
pub mod tun;
pub mod udp;
