//! Causeway's engine: routes, the pipeline of each gateway type, the SKU catalog and shapers,
//! verdicts and drop reasons. No I/O, no clock reads, no threads: time is passed in.

pub mod counters;
pub mod flow;
pub mod latency;
pub mod pipeline;
pub mod prefix;
pub mod route;
pub mod shaper;
pub mod sku;
