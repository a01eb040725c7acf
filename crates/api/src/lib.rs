//! Types exchanged on Causeway's control socket (protocol version 2).
//!
//! Protocol: HTTP/1.1 with JSON bodies over the Unix socket, one request per connection
//! (`GET /v1/status`, `POST /v1/gateways/{name}/resize`...; see `docs/CLI.md`, "The control
//! socket protocol"). [`Request`] and [`Response`] are the in-process view of it: [`call`] maps a
//! request to its HTTP request and the HTTP response back. Protocol 1 (JSON lines) is gone.

pub mod http;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Version of this protocol; bumped on incompatible changes.
pub const PROTOCOL_VERSION: u32 = 2;

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
    /// Re-read the config file the daemon was started with (as SIGHUP does): added connections
    /// come up, removed ones go down, unchanged ones are not touched. An invalid file, or a
    /// change that needs a restart, is refused whole and the running config stays. Answered
    /// with what changed in `reload`.
    Reload,
    /// The active flows of each gateway (or of `gateway`), the `top` (default
    /// [`FLOWS_DEFAULT_TOP`], at most [`FLOWS_MAX_TOP`]) with the most bytes first. Answered in
    /// `flows`.
    Flows {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        gateway: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        top: Option<u32>,
    },
}

/// Flows listed per gateway when a `flows` request names no `top`.
pub const FLOWS_DEFAULT_TOP: u32 = 20;
/// The most flows listed per gateway.
pub const FLOWS_MAX_TOP: u32 = 10_000;

/// The body of `POST /v1/flows` (the fields of [`Request::Flows`]). An unknown field (a typo
/// such as `"tops"`) is an error, not silently ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowsBody {
    #[serde(default)]
    pub gateway: Option<String>,
    #[serde(default)]
    pub top: Option<u32>,
}

/// The flows of one gateway (`causeway flows`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GatewayFlows {
    pub gateway: String,
    #[serde(rename = "type")]
    pub gateway_type: String,
    /// The table's counts and limits.
    pub counts: FlowCounts,
    /// The `top` flows with the most bytes (both directions), most first.
    pub flows: Vec<FlowEntry>,
}

/// One flow. `src` is the side that sent its first packet (the initiator), `dst` the other.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlowEntry {
    /// `tcp`, `udp`, `icmp`, `icmpv6` or the protocol number.
    pub protocol: String,
    pub src: String,
    pub dst: String,
    /// Ports (TCP/UDP) or the ICMP identifier (both fields); 0 for other protocols.
    pub src_port: u16,
    pub dst_port: u16,
    /// `tcp_handshake`, `tcp_established`, `tcp_closing`, `udp`, `udp_stream`, `icmp`, `other`.
    pub state: String,
    /// Wire packets and bytes from the initiator (`orig`) and from the other side (`reply`).
    pub packets_orig: u64,
    pub packets_reply: u64,
    pub bytes_orig: u64,
    pub bytes_reply: u64,
    /// Since the first packet, and since the last one, in seconds.
    pub age_secs: f64,
    pub idle_secs: f64,
    /// Seconds left before the flow expires if idle.
    pub expires_in_secs: f64,
    /// The connection its last packet used (None: not known).
    pub connection: Option<String>,
}

/// Counts and limits of a gateway's flow table (in `causeway stats` and `causeway flows`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowCounts {
    /// Flows held now (expired ones not yet swept included).
    pub active: u64,
    /// Limit of concurrent flows (the SKU's, or the config's lower `max_flows`).
    pub max_flows: u64,
    /// Limit of new flows per second (None: not limited).
    pub new_flows_per_sec: Option<u64>,
    /// Flows created and expired since the daemon started.
    pub created: u64,
    pub expired: u64,
    /// Packets refused: table full, and above the new-flow rate (also in the drops by reason
    /// `flow_table_full` and `new_flow_rate`).
    pub refused_full: u64,
    pub refused_rate: u64,
}

/// What a reload changed (`POST /v1/reload`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReloadResult {
    /// The config file that was read.
    pub config: String,
    /// Connections brought up (new ones, and changed ones that had to be re-created).
    pub added: Vec<String>,
    /// Connections taken down (IKE tunnels send a Delete to their peer).
    pub removed: Vec<String>,
    /// Connections changed in place (prefixes or routing weight): no packet lost.
    pub updated: Vec<String>,
    /// Connections left exactly as they were.
    pub unchanged: Vec<String>,
    /// Gateways whose SKU changed in the file, resized in place: `NAME: OLD -> NEW`.
    pub resized: Vec<String>,
    /// What failed once the reload was under way (a sequence-number lease that could not be
    /// written, a route that could not be set); empty normally.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
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
    /// `reload`: what changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reload: Option<ReloadResult>,
    /// `flows`: per gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flows: Option<Vec<GatewayFlows>>,
}

impl Response {
    pub fn error(msg: impl Into<String>) -> Response {
        Response {
            protocol: PROTOCOL_VERSION,
            error: Some(msg.into()),
            status: None,
            stats: None,
            captured: None,
            reload: None,
            flows: None,
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
    /// The SKU's limits, per direction (what the shapers enforce unless `shaping` is false).
    pub bits_per_sec: u64,
    pub packets_per_sec: Option<u64>,
    pub max_connections: u32,
    /// False when the config turned the SKU's rates off (`shaping = false`, measurements only).
    #[serde(default = "yes")]
    pub shaping: bool,
    pub connections: Vec<ConnectionStatus>,
}

fn yes() -> bool {
    true
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
    /// Per-stage packet-processing latency, sampled (1 packet in 64 per worker); one entry per
    /// stage, zeros included. Absent from older daemons' answers (then empty).
    #[serde(default)]
    pub stages: Vec<StageStats>,
    /// The IKE responder/initiator's datagram counters (present when a Vpn gateway exists).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ike: Option<IkeStats>,
}

/// What the IKE thread did with the datagrams it received on UDP 500 and (after the NAT-T
/// switch, with the non-ESP marker) on UDP 4500.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct IkeStats {
    /// Datagrams handed to the IKE engine.
    pub datagrams: u64,
    /// IKE_SA_INIT requests answered with a COOKIE instead of creating state (more than
    /// 64 half-open SAs).
    pub cookies_sent: u64,
    /// Half-open responder SAs now (IKE_SA_INIT answered, IKE_AUTH not yet; 30 s at most).
    pub half_open: u64,
    /// Dropped datagrams by reason: `malformed`, `unknown_peer`, `unknown_sa`, `auth_failed`,
    /// `half_open_full`, `ignored`, `queue_full`; every reason present, zeros included.
    pub drops: BTreeMap<String, u64>,
}

impl IkeStats {
    pub fn total_drops(&self) -> u64 {
        self.drops.values().sum()
    }
}

/// The latency histogram of one packet-processing stage (`egress_pipeline`, `ingress_pipeline`,
/// `tun_write`, `tunnel_seal`, `tunnel_open`, `shaper_hold`), over the sampled packets.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct StageStats {
    pub stage: String,
    /// The finite buckets' upper bounds in nanoseconds, ascending (a duration equal to a bound
    /// counts in that bucket).
    pub bounds_ns: Vec<u64>,
    /// Samples per bucket, not cumulative: `bounds_ns.len() + 1` entries, the last for the
    /// durations over the last bound (`+Inf`).
    pub counts: Vec<u64>,
    /// The sum of the sampled durations, in nanoseconds.
    pub sum_ns: u64,
    /// The number of samples (the sum of `counts`).
    pub count: u64,
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
    /// The gateway's flow table.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flows: Option<FlowCounts>,
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

/// The body of `POST /v1/gateways/{name}/resize`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResizeBody {
    pub sku: String,
    #[serde(default)]
    pub scale_units: Option<u32>,
}

/// The body of `POST /v1/capture` (the fields of [`Request::Capture`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaptureBody {
    pub connection: String,
    #[serde(default)]
    pub direction: Option<String>,
    pub count: u32,
    pub file: String,
    #[serde(default)]
    pub timeout_secs: Option<u32>,
}

/// The answer of `POST /v1/capture`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Captured {
    pub captured: u64,
}

/// The body of every error response (4xx, 5xx).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
}

/// The largest response body [`call`] reads.
const MAX_RESPONSE_BODY: usize = 64 * 1024 * 1024;

/// The HTTP request of `req`: method, path and JSON body (empty for GET).
pub fn http_request(req: &Request) -> (&'static str, String, Vec<u8>) {
    match req {
        Request::Status => ("GET", "/v1/status".into(), Vec::new()),
        Request::Stats => ("GET", "/v1/stats".into(), Vec::new()),
        Request::Resize {
            gateway,
            sku,
            scale_units,
        } => (
            "POST",
            format!("/v1/gateways/{}/resize", http::encode_segment(gateway)),
            json(&ResizeBody {
                sku: sku.clone(),
                scale_units: *scale_units,
            }),
        ),
        Request::Capture {
            connection,
            direction,
            count,
            file,
            timeout_secs,
        } => (
            "POST",
            "/v1/capture".into(),
            json(&CaptureBody {
                connection: connection.clone(),
                direction: direction.clone(),
                count: *count,
                file: file.clone(),
                timeout_secs: *timeout_secs,
            }),
        ),
        Request::Reload => ("POST", "/v1/reload".into(), Vec::new()),
        Request::Flows { gateway, top } => (
            "POST",
            "/v1/flows".into(),
            json(&FlowsBody {
                gateway: gateway.clone(),
                top: *top,
            }),
        ),
    }
}

/// A request body as JSON (serializing these types cannot fail).
fn json<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).unwrap_or_default()
}

/// The [`Response`] to `req` of an HTTP response: error statuses become [`Response::error`].
pub fn from_http(req: &Request, code: u16, body: &[u8]) -> std::io::Result<Response> {
    let bad = |e: serde_json::Error| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("bad response: {e}"),
        )
    };
    if code != 200 {
        let msg = match serde_json::from_slice::<ErrorBody>(body) {
            Ok(e) => e.error,
            Err(_) => format!(
                "HTTP {code} {}: {}",
                http::reason(code),
                String::from_utf8_lossy(body).trim()
            ),
        };
        return Ok(Response::error(msg));
    }
    let mut r = Response {
        protocol: PROTOCOL_VERSION,
        error: None,
        status: None,
        stats: None,
        captured: None,
        reload: None,
        flows: None,
    };
    match req {
        Request::Status | Request::Resize { .. } => {
            r.status = Some(serde_json::from_slice(body).map_err(bad)?)
        }
        Request::Stats => r.stats = Some(serde_json::from_slice(body).map_err(bad)?),
        Request::Capture { .. } => {
            r.captured = Some(
                serde_json::from_slice::<Captured>(body)
                    .map_err(bad)?
                    .captured,
            )
        }
        Request::Reload => r.reload = Some(serde_json::from_slice(body).map_err(bad)?),
        Request::Flows { .. } => r.flows = Some(serde_json::from_slice(body).map_err(bad)?),
    }
    Ok(r)
}

/// Client side: sends one request to the daemon's socket (as HTTP/1.1) and returns its
/// response; an HTTP error status is returned as [`Response::error`].
pub fn call(
    path: &std::path::Path,
    req: &Request,
    timeout: std::time::Duration,
) -> std::io::Result<Response> {
    use std::io::{Read, Write};
    let mut stream = std::os::unix::net::UnixStream::connect(path)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let (method, target, body) = http_request(req);
    let mut msg = format!(
        "{method} {target} HTTP/1.1\r\nHost: localhost\r\nAccept: application/json\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    msg.extend_from_slice(&body);
    stream.write_all(&msg)?;
    let invalid = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_string());
    let raw = http::read_head(&mut stream, 64 * 1024)?
        .ok_or_else(|| invalid("response head too large"))?;
    let head = http::Head::parse(&raw.head);
    let code = head
        .status_code()
        .ok_or_else(|| invalid("not an HTTP/1.x response"))?;
    let body = match head.content_length().map_err(invalid)? {
        Some(n) if n > MAX_RESPONSE_BODY => return Err(invalid("response too large")),
        Some(n) => http::read_body(&mut stream, raw.rest, n)?,
        None => {
            let mut body = raw.rest;
            (&mut stream)
                .take(MAX_RESPONSE_BODY as u64)
                .read_to_end(&mut body)?;
            body
        }
    };
    from_http(req, code, &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flows_request_and_response_over_http() {
        let all = Request::Flows {
            gateway: None,
            top: None,
        };
        let (m, p, b) = http_request(&all);
        assert_eq!((m, p.as_str()), ("POST", "/v1/flows"));
        assert_eq!(
            serde_json::from_slice::<FlowsBody>(&b).unwrap(),
            FlowsBody::default()
        );
        let one = Request::Flows {
            gateway: Some("er-gw".into()),
            top: Some(5),
        };
        let (_, _, b) = http_request(&one);
        assert_eq!(
            serde_json::from_slice::<FlowsBody>(&b).unwrap(),
            FlowsBody {
                gateway: Some("er-gw".into()),
                top: Some(5)
            }
        );
        // An unknown field is refused (it was ignored: `tops` listed the default 20).
        let e = serde_json::from_str::<FlowsBody>(r#"{"gateway":"er-gw","tops":5}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field `tops`"), "{e}");
        let body = br#"[{"gateway":"er-gw","type":"ExpressRoute","counts":{"active":1,"max_flows":20,"new_flows_per_sec":null,"created":1,"expired":0,"refused_full":0,"refused_rate":0},"flows":[{"protocol":"udp","src":"10.1.0.10","dst":"10.2.0.10","src_port":1,"dst_port":53,"state":"udp","packets_orig":1,"packets_reply":0,"bytes_orig":40,"bytes_reply":0,"age_secs":0.5,"idle_secs":0.5,"expires_in_secs":29.5,"connection":"circuit-1"}]}]"#;
        let r = from_http(&one, 200, body).unwrap();
        let f = r.flows.unwrap();
        assert_eq!(f[0].counts.max_flows, 20);
        assert_eq!(f[0].flows[0].connection.as_deref(), Some("circuit-1"));
        let r = from_http(&one, 400, br#"{"error":"flows: no gateway `x`"}"#).unwrap();
        assert!(r.error.unwrap().contains("no gateway"));
        // Stats from a daemon without flow tables still parse.
        let g: GatewayStats = serde_json::from_str(
            r#"{"name":"g","type":"Vpn","sku":"VpnGw1","egress":{"packets":0,"bytes":0,"super_packets":0,"icmp_errors_sent":0,"icmp_rate_limited":0,"echo_replies":0,"drops":{}},"ingress":{"packets":0,"bytes":0,"super_packets":0,"icmp_errors_sent":0,"icmp_rate_limited":0,"echo_replies":0,"drops":{}},"connections":[]}"#,
        )
        .unwrap();
        assert_eq!(g.flows, None);
    }

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
        assert_eq!(s, r#"{"protocol":2,"error":"nope"}"#);
    }

    #[test]
    fn maps_requests_to_http_and_back() {
        let (m, p, b) = http_request(&Request::Resize {
            gateway: "er gw".into(),
            sku: "HighPerformance".into(),
            scale_units: None,
        });
        assert_eq!((m, p.as_str()), ("POST", "/v1/gateways/er%20gw/resize"));
        assert_eq!(b, br#"{"sku":"HighPerformance","scale_units":null}"#);
        assert_eq!(
            http_request(&Request::Status),
            ("GET", "/v1/status".to_string(), Vec::new())
        );
        let r = from_http(&Request::Stats, 409, br#"{"error":"resize refused: x"}"#).unwrap();
        assert_eq!(r.error.as_deref(), Some("resize refused: x"));
        let r = from_http(&Request::Stats, 502, b"oops").unwrap();
        assert_eq!(r.error.as_deref(), Some("HTTP 502 Unknown: oops"));
        let capture = Request::Capture {
            connection: "c".into(),
            direction: None,
            count: 1,
            file: "/f".into(),
            timeout_secs: None,
        };
        assert_eq!(
            from_http(&capture, 200, br#"{"captured":3}"#)
                .unwrap()
                .captured,
            Some(3)
        );
        assert!(from_http(&Request::Status, 200, b"{").is_err());
        assert_eq!(
            http_request(&Request::Reload),
            ("POST", "/v1/reload".to_string(), Vec::new())
        );
        let r = from_http(
            &Request::Reload,
            200,
            br#"{"config":"/etc/c.toml","added":["b"],"removed":[],"updated":[],"unchanged":["a"],"resized":[]}"#,
        )
        .unwrap();
        let got = r.reload.unwrap();
        assert_eq!(
            (got.added, got.unchanged),
            (vec!["b".to_string()], vec!["a".to_string()])
        );
    }

    #[test]
    fn stats_stages_round_trip_and_default_to_empty() {
        // An older daemon's answer: no `stages`.
        let old = r#"{"uptime_secs":3,"vnet":{"name":"vnet1","egress":{"packets":0,"bytes":0,"super_packets":0,"icmp_errors_sent":0,"icmp_rate_limited":0,"echo_replies":0,"drops":{}}},"gateways":[]}"#;
        let mut s: Stats = serde_json::from_str(old).unwrap();
        assert!(s.stages.is_empty());
        s.stages.push(StageStats {
            stage: "tun_write".into(),
            bounds_ns: vec![100, 250],
            counts: vec![1, 0, 2],
            sum_ns: 9_050,
            count: 3,
        });
        let json = serde_json::to_string(&s).unwrap();
        assert!(
            json.ends_with(r#""stages":[{"stage":"tun_write","bounds_ns":[100,250],"counts":[1,0,2],"sum_ns":9050,"count":3}]}"#),
            "{json}"
        );
        assert_eq!(serde_json::from_str::<Stats>(&json).unwrap(), s);
    }
}
