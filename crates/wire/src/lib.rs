//! Zero-copy packet views and checksums for Causeway.
//!
//! The contract (after smoltcp's `wire`): a view is made by a `new_checked`-style constructor
//! that verifies every length the accessors rely on, so that no accessor can panic afterwards.
//! Nothing here allocates. Malformed input is reported as a [`Malformed`] reason, never a panic.

#![forbid(unsafe_code)]

pub mod checksum;
pub mod gro;
pub mod gso;
pub mod icmp;
pub mod ip;
pub mod tcp;
pub mod virtio;

/// Why a packet could not be parsed. Each variant is a counted drop reason upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Malformed {
    /// Shorter than the fixed header.
    Truncated,
    /// Version nibble is neither 4 nor 6 (or not what the caller expected).
    BadVersion,
    /// A header length field is inconsistent (IHL < 5, total length < header, length beyond buffer).
    BadLength,
    /// IPv4 header checksum does not verify.
    BadChecksum,
    /// The virtio-net header is inconsistent (GSO fields that do not fit the packet).
    BadVirtioHeader,
}

impl Malformed {
    pub fn as_str(self) -> &'static str {
        match self {
            Malformed::Truncated => "truncated",
            Malformed::BadVersion => "bad_version",
            Malformed::BadLength => "bad_length",
            Malformed::BadChecksum => "bad_checksum",
            Malformed::BadVirtioHeader => "bad_virtio_header",
        }
    }
}
