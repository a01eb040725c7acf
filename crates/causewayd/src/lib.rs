//! The Causeway daemon as a library: configuration, data plane wiring, control socket,
//! metrics endpoint.

pub mod capture;
pub mod config;
pub mod control;
pub mod daemon;
pub mod dataplane;
pub mod ike;
pub mod metrics;
pub mod seqlease;
pub mod tunnel;
mod worker;
