//! Types exchanged on Causeway's control socket (version 1).
//!
//! Protocol: the client connects to the Unix socket, writes one [`Request`] as a JSON line, and
//! reads one [`Response`] as a JSON line; then the connection closes. Every field is named in
//! `docs/CLI.md`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Version of this protocol; bumped on incompatible changes.
pub const PROTOCOL_VERSION: u32 = 1;

/// Default control socket path.
pub const DEFAULT_SOCKET: &str = "/run/causeway/control.sock";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "request", rename_all = "snake_case")]
pub enum Request {
    /// Gateways, SKUs, connections, link state.
    Status,
    /// Counters.
    Stats,
    /// Resize a gateway to another SKU in place (the resize rules of the SKU families apply;
    /// refused with the reason otherwise). Answered with the new status.
    Resize {
        gateway: String,
        sku: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        scale_units: Option<u32>,
    },
    /// Capture `count` packets of a connection into a pcap file (LINKTYPE_RAW) that the daemon
    /// writes at `file` (an absolute path). Answered when the count is reached or `timeout_secs`
    /// (default [`CAPTURE_DEFAULT_TIMEOUT_SECS`], at most [`CAPTURE_MAX_TIMEOUT_SECS`]) pass, with
    /// the number of packets written in `captured`.
    Capture {
        connection: String,
        /// `ingress` or `egress`; both when absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        direction: Option<String>,
        count: u32,
        file: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timeout_secs: Option<u32>,
    },
}

/// `capture`: how long the daemon waits for the count when the request names no timeout.
pub const CAPTURE_DEFAULT_TIMEOUT_SECS: u32 = 30;
/// `capture`: the longest timeout accepted.
pub const CAPTURE_MAX_TIMEOUT_SECS: u32 = 600;
/// `capture`: the largest count accepted.
pub const CAPTURE_MAX_COUNT: u32 = 1_000_000;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Response {
    pub protocol: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stats: Option<Stats>,
    /// `capture`: the number of packets written to the file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub captured: Option<u64>,
}

impl Response {
    pub fn error(msg: impl Into<String>) -> Response {
        Response {
            protocol: PROTOCOL_VERSION,
            error: Some(msg.into()),
            status: None,
            stats: None,
            captured: None,
        }
    }
}

/// `causeway status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub version: String,
    pub pid: u32,
    pub uptime_secs: u64,
    pub config: String,
    pub vnet: VnetStatus,
    pub gateways: Vec<GatewayStatus>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VnetStatus {
    pub name: String,
    pub address_space: Vec<String>,
    pub gateway_address: String,
    pub gateway_address_v6: Option<String>,
    pub interface: InterfaceStatus,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InterfaceStatus {
    pub name: String,
    pub netns: Option<String>,
    /// Administratively up (IFF_UP).
    pub up: bool,
    /// Carrier (IFF_RUNNING).
    pub running: bool,
    pub mtu: u32,
    /// The TUN was opened with the virtio-net header and TCP offloads (checksum, TSO4/6), so the
    /// kernel hands over and accepts 64 KB super-packets (the daemon does not start otherwise).
    pub offload: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GatewayStatus {
    pub name: String,
    #[serde(rename = "type")]
    pub gateway_type: String,
    pub sku: String,
    /// The shaper's current limits, per direction.
    pub bits_per_sec: u64,
    pub packets_per_sec: Option<u64>,
    pub max_connections: u32,
    pub connections: Vec<ConnectionStatus>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConnectionStatus {
    pub name: String,
    #[serde(rename = "type")]
    pub connection_type: String,
    /// `Connected` or `NotConnected`.
    pub state: String,
    /// The data plane routes over this connection now (false from the moment its link is seen
    /// down until it is seen up again).
    pub routed: bool,
    pub prefixes: Vec<String>,
    pub routing_weight: u16,
    /// The circuit's TUN (ExpressRoute connections).
    pub interface: Option<InterfaceStatus>,
    /// The tunnel's endpoints and SAs (IPsec connections).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tunnel: Option<TunnelStatus>,
}

/// An IPsec tunnel: endpoints and ESP SAs (SPIs and algorithms, never keys).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TunnelStatus {
    pub local: String,
    pub peer: String,
    /// Tunnel MTU (inner packets).
    pub mtu: u32,
    pub mss_clamp: Option<u16>,
    /// How the SAs are keyed: `manual` or `ike`.
    pub keying: String,
    pub esp: EspStats,
    /// The IKEv2 state (IKE-keyed tunnels).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ike: Option<IkeStatus>,
}

/// IKEv2 state of a tunnel: algorithms and SPIs, never keys.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct IkeStatus {
    /// `Connecting`, `Connected` or `NotConnected`.
    pub state: String,
    /// The IKE SA's negotiated proposal, strongSwan spelling (e.g. `aes256gcm16-prfsha256-ecp256`).
    pub ike_algorithms: Option<String>,
    /// The child SA's negotiated proposal (e.g. `aes256gcm16`).
    pub esp_algorithms: Option<String>,
    pub ike_spis: Option<String>,
    pub ike_age_secs: Option<u64>,
    pub child_age_secs: Option<u64>,
    /// The last failure (NO_PROPOSAL_CHOSEN, AUTHENTICATION_FAILED, timeouts...).
    pub last_error: Option<String>,
}

/// ESP SA state of a tunnel.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct EspStats {
    pub cipher: String,
    pub esn: bool,
    pub out_spi: u32,
    pub in_spi: u32,
    /// Last sequence number sent (0: none yet).
    pub out_seq: u64,
    /// Highest sequence number received and authenticated (the replay window's top).
    pub in_seq: u64,
}

/// `causeway stats`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    pub uptime_secs: u64,
    /// Drops on the VNet side before a connection was chosen (malformed, spoofed, no route...).
    pub vnet: VnetStats,
    pub gateways: Vec<GatewayStats>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VnetStats {
    pub name: String,
    pub egress: DirStats,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GatewayStats {
    pub name: String,
    #[serde(rename = "type")]
    pub gateway_type: String,
    pub sku: String,
    pub egress: DirStats,
    pub ingress: DirStats,
    pub connections: Vec<ConnectionStats>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConnectionStats {
    pub name: String,
    pub egress: DirStats,
    pub ingress: DirStats,
    /// ESP sequence numbers and SPIs (IPsec connections).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub esp: Option<EspStats>,
}

/// Counters of one direction.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DirStats {
    /// Wire packets forwarded (a TUN super-packet counts as the segments it carries).
    pub packets: u64,
    /// Wire bytes forwarded (IP bytes).
    pub bytes: u64,
    /// Super-packets among them (reads that carried several wire packets).
    pub super_packets: u64,
    pub icmp_errors_sent: u64,
    pub icmp_rate_limited: u64,
    pub echo_replies: u64,
    /// Drops by reason; every reason is present, zeros included.
    pub drops: BTreeMap<String, u64>,
}

impl DirStats {
    pub fn total_drops(&self) -> u64 {
        self.drops.values().sum()
    }
}

/// Client side: sends one request to the daemon's socket and returns its response.
pub fn call(
    path: &std::path::Path,
    req: &Request,
    timeout: std::time::Duration,
) -> std::io::Result<Response> {
    use std::io::{BufRead, Write};
    let stream = std::os::unix::net::UnixStream::connect(path)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let mut msg = serde_json::to_vec(req).map_err(std::io::Error::other)?;
    msg.push(b'\n');
    (&stream).write_all(&msg)?;
    let mut line = String::new();
    std::io::BufReader::new(&stream).read_line(&mut line)?;
    serde_json::from_str(&line).map_err(std::io::Error::other)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_wire_format() {
        assert_eq!(
            serde_json::to_string(&Request::Status).unwrap(),
            r#"{"request":"status"}"#
        );
        let r: Request = serde_json::from_str(r#"{"request":"stats"}"#).unwrap();
        assert_eq!(r, Request::Stats);
        let r: Request = serde_json::from_str(
            r#"{"request":"resize","gateway":"er-gw","sku":"HighPerformance"}"#,
        )
        .unwrap();
        assert_eq!(
            r,
            Request::Resize {
                gateway: "er-gw".into(),
                sku: "HighPerformance".into(),
                scale_units: None
            }
        );
        assert!(serde_json::from_str::<Request>(r#"{"request":"reboot"}"#).is_err());
        let r: Request = serde_json::from_str(
            r#"{"request":"capture","connection":"circuit-1","count":4,"file":"/tmp/x.pcap"}"#,
        )
        .unwrap();
        assert_eq!(
            r,
            Request::Capture {
                connection: "circuit-1".into(),
                direction: None,
                count: 4,
                file: "/tmp/x.pcap".into(),
                timeout_secs: None
            }
        );
    }

    #[test]
    fn error_response_omits_payloads() {
        let s = serde_json::to_string(&Response::error("nope")).unwrap();
        assert_eq!(s, r#"{"protocol":1,"error":"nope"}"#);
    }
}
