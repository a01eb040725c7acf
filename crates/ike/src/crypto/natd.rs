//! NAT detection (RFC 7296 2.23): the data of the NAT_DETECTION_SOURCE_IP and
//! NAT_DETECTION_DESTINATION_IP notifications.

use std::net::{IpAddr, SocketAddr};

use aws_lc_rs::digest;

/// Length of a NAT detection hash (SHA-1).
pub const NAT_DETECTION_HASH_LEN: usize = 20;

/// `SHA-1(SPIi | SPIr | IP address | port)` (RFC 7296 2.23), with the SPIs as on the wire
/// (`u64` big-endian; SPIr is zero in the IKE_SA_INIT request), the address as 4 (IPv4) or 16
/// (IPv6) octets and the port as 2 octets, network order. An IPv4-mapped IPv6 address
/// (`::ffff:a.b.c.d`, as a dual-stack socket reports IPv4 peers) is hashed as the IPv4 address
/// it stands for, because that is what the peer sees and hashes.
///
/// For NAT_DETECTION_SOURCE_IP pass our own address and port as we send from them; for
/// NAT_DETECTION_DESTINATION_IP the address and port we send to. On receipt, compare the
/// peer's SOURCE hash with the hash of the datagram's source address and its DESTINATION hash
/// with the hash of our receiving address: a mismatch means a NAT on that side.
pub fn nat_detection_hash(
    spi_i: u64,
    spi_r: u64,
    addr: SocketAddr,
) -> [u8; NAT_DETECTION_HASH_LEN] {
    let mut ctx = digest::Context::new(&digest::SHA1_FOR_LEGACY_USE_ONLY);
    ctx.update(&spi_i.to_be_bytes());
    ctx.update(&spi_r.to_be_bytes());
    match addr.ip().to_canonical() {
        IpAddr::V4(a) => ctx.update(&a.octets()),
        IpAddr::V6(a) => ctx.update(&a.octets()),
    }
    ctx.update(&addr.port().to_be_bytes());
    let mut out = [0u8; NAT_DETECTION_HASH_LEN];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}
