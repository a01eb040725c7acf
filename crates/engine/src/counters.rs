//! Verdict drop reasons and the counters users read with `causeway stats`.
//!
//! Every [`DropReason`] has a counter in every [`DirCounters`]; the list of reasons is the single
//! source of truth for the names in `causeway stats -o json` and in the docs.

use std::sync::atomic::{AtomicU64, Ordering};

use causeway_wire::Malformed;

/// Why the pipeline dropped a packet. A drop is a normal outcome, counted per reason; it is not
/// an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// Shorter than the IP header.
    MalformedTruncated,
    /// Not IPv4 or IPv6.
    MalformedVersion,
    /// IP length fields inconsistent with each other or the buffer.
    MalformedLength,
    /// IPv4 header checksum wrong.
    MalformedChecksum,
    /// The TUN's virtio-net header does not fit the packet.
    MalformedVirtio,
    /// Source address not allowed where the packet came from (egress: outside the VNet address
    /// space; ingress: outside the circuit's prefixes).
    Spoofed,
    /// Ingress packet whose destination is outside the VNet address space (no transit).
    DstOutsideVnet,
    /// Link-local, multicast or broadcast addresses: never routed by the gateway.
    LinkLocal,
    /// No connection's prefixes cover the destination (an ICMP unreachable is sent).
    NoRoute,
    /// TTL or hop limit would reach zero (an ICMP time exceeded is sent).
    TtlExpired,
    /// Larger than the egress MTU and not fragmentable (an ICMP too-big is sent).
    TooBig,
    /// Addressed to the gateway itself but not an echo request it answers.
    ToGateway,
    /// Over the SKU's bits per second.
    ShapedBps,
    /// Over the SKU's packets per second.
    ShapedPps,
    /// Over the per-tunnel cap of the VPN SKU (the aggregate may still have room).
    ShapedTunnelCap,
    /// A packet that would start a flow while the gateway's flow table holds its limit of
    /// concurrent flows (the SKU's, or the config's `max_flows`); existing flows go on.
    FlowTableFull,
    /// A packet that would start a flow above the gateway's new flows per second (the SKU's
    /// new connections/s, or the config's `max_new_flows_per_sec`).
    NewFlowRate,
    /// The output interface refused the packet (link down, queue full).
    TxError,
    /// A UDP 4500 datagram too short to be ESP, or a packet too large to seal.
    EspMalformed,
    /// Inbound: no SA with that SPI.
    EspNoSa,
    /// The ICV did not verify (wrong key, tampered packet).
    EspAuthFailed,
    /// The sequence number was already received (replay).
    EspReplayed,
    /// The sequence number is left of the replay window.
    EspTooOld,
    /// Padding bytes or pad length inconsistent (after the ICV verified).
    EspBadPadding,
    /// The next-header field is neither IPv4 nor IPv6.
    EspBadNextHeader,
    /// A dummy packet (next header 59, RFC 4303 2.6): dropped by design.
    EspDummy,
    /// The outbound SA ran out of sequence numbers: it must be rekeyed.
    EspSeqExhausted,
    /// The sequence-number lease of a manually keyed SA could not be persisted (`state_dir`):
    /// the packet is not sent rather than risk reusing a nonce after a restart.
    EspSeqLease,
    /// The connection was removed by a config reload while the packet was held by the shaper.
    ConnectionRemoved,
}

impl DropReason {
    /// Every reason, in output order.
    pub const ALL: [DropReason; 29] = [
        DropReason::MalformedTruncated,
        DropReason::MalformedVersion,
        DropReason::MalformedLength,
        DropReason::MalformedChecksum,
        DropReason::MalformedVirtio,
        DropReason::Spoofed,
        DropReason::DstOutsideVnet,
        DropReason::LinkLocal,
        DropReason::NoRoute,
        DropReason::TtlExpired,
        DropReason::TooBig,
        DropReason::ToGateway,
        DropReason::ShapedBps,
        DropReason::ShapedPps,
        DropReason::ShapedTunnelCap,
        DropReason::FlowTableFull,
        DropReason::NewFlowRate,
        DropReason::TxError,
        DropReason::EspMalformed,
        DropReason::EspNoSa,
        DropReason::EspAuthFailed,
        DropReason::EspReplayed,
        DropReason::EspTooOld,
        DropReason::EspBadPadding,
        DropReason::EspBadNextHeader,
        DropReason::EspDummy,
        DropReason::EspSeqExhausted,
        DropReason::EspSeqLease,
        DropReason::ConnectionRemoved,
    ];
    pub const COUNT: usize = Self::ALL.len();

    /// The name in stats output.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::MalformedTruncated => "malformed_truncated",
            DropReason::MalformedVersion => "malformed_version",
            DropReason::MalformedLength => "malformed_length",
            DropReason::MalformedChecksum => "malformed_checksum",
            DropReason::MalformedVirtio => "malformed_virtio_header",
            DropReason::Spoofed => "spoofed",
            DropReason::DstOutsideVnet => "dst_outside_vnet",
            DropReason::LinkLocal => "link_local",
            DropReason::NoRoute => "no_route",
            DropReason::TtlExpired => "ttl_expired",
            DropReason::TooBig => "too_big",
            DropReason::ToGateway => "to_gateway",
            DropReason::ShapedBps => "shaped_bps",
            DropReason::ShapedPps => "shaped_pps",
            DropReason::ShapedTunnelCap => "shaped_tunnel_cap",
            DropReason::FlowTableFull => "flow_table_full",
            DropReason::NewFlowRate => "new_flow_rate",
            DropReason::TxError => "tx_error",
            DropReason::EspMalformed => "esp_malformed",
            DropReason::EspNoSa => "esp_no_sa",
            DropReason::EspAuthFailed => "esp_auth_failed",
            DropReason::EspReplayed => "esp_replayed",
            DropReason::EspTooOld => "esp_too_old",
            DropReason::EspBadPadding => "esp_bad_padding",
            DropReason::EspBadNextHeader => "esp_bad_next_header",
            DropReason::EspDummy => "esp_dummy",
            DropReason::EspSeqExhausted => "esp_seq_exhausted",
            DropReason::EspSeqLease => "esp_seq_lease",
            DropReason::ConnectionRemoved => "connection_removed",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl From<Malformed> for DropReason {
    fn from(m: Malformed) -> Self {
        match m {
            Malformed::Truncated => DropReason::MalformedTruncated,
            Malformed::BadVersion => DropReason::MalformedVersion,
            Malformed::BadLength => DropReason::MalformedLength,
            Malformed::BadChecksum => DropReason::MalformedChecksum,
            Malformed::BadVirtioHeader => DropReason::MalformedVirtio,
        }
    }
}

/// A counter written by the data-plane thread that owns it and read by the control thread.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Counters of one direction at one level (VNet side, gateway or connection).
#[derive(Debug)]
pub struct DirCounters {
    /// Wire packets forwarded (a super-packet counts as the segments it carries).
    pub packets: Counter,
    /// Wire bytes forwarded (IP bytes, headers of every segment included).
    pub bytes: Counter,
    /// TUN reads/writes that carried a super-packet (how much offload helps).
    pub super_packets: Counter,
    /// ICMP errors the gateway sent about packets of this direction.
    pub icmp_errors_sent: Counter,
    /// ICMP errors not sent because of the ICMP rate limit.
    pub icmp_rate_limited: Counter,
    /// Echo replies the gateway sent for pings of its own address.
    pub echo_replies: Counter,
    drops: [Counter; DropReason::COUNT],
}

impl Default for DirCounters {
    fn default() -> Self {
        DirCounters {
            packets: Counter::default(),
            bytes: Counter::default(),
            super_packets: Counter::default(),
            icmp_errors_sent: Counter::default(),
            icmp_rate_limited: Counter::default(),
            echo_replies: Counter::default(),
            drops: std::array::from_fn(|_| Counter::default()),
        }
    }
}

impl DirCounters {
    #[inline]
    pub fn drop(&self, reason: DropReason, packets: u64) {
        self.drops[reason.index()].add(packets);
    }

    pub fn drops(&self, reason: DropReason) -> u64 {
        self.drops[reason.index()].get()
    }

    /// All drops, every reason.
    pub fn total_drops(&self) -> u64 {
        self.drops.iter().map(Counter::get).sum()
    }

    /// (reason name, count) for every reason, zeros included.
    pub fn drop_table(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        DropReason::ALL.iter().map(|r| (r.as_str(), self.drops(*r)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_has_a_distinct_name_and_slot() {
        let mut names: Vec<_> = DropReason::ALL.iter().map(|r| r.as_str()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), DropReason::COUNT);
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
    }

    #[test]
    fn counts_per_reason() {
        let c = DirCounters::default();
        c.drop(DropReason::Spoofed, 2);
        c.drop(DropReason::ShapedBps, 45);
        assert_eq!(c.drops(DropReason::Spoofed), 2);
        assert_eq!(c.total_drops(), 47);
        assert_eq!(c.drop_table().count(), DropReason::COUNT);
    }
}
