//! The Causeway daemon as a library: configuration, data plane wiring, control socket.

pub mod config;
pub mod control;
pub mod daemon;
pub mod dataplane;
pub mod ike;
pub mod seqlease;
pub mod tunnel;
mod worker;
