//! Target `control_request`: one request on the control socket, read as the daemon reads it
//! (`causeway_api::http::read_head`, `Head::parse`, the request line, the bearer token on TCP,
//! `Content-Length`, `read_body`; the steps of `control.rs`'s private `read_request`, which the
//! library does not export), routed by `causewayd::control::route` to a fake handler, and the
//! answer written with `http::write_response` and read back.
//!
//! Input: a mode byte (bit 0: the TCP listener, which needs `Authorization: Bearer
//! s3cret-token`), then the bytes the client sends.
//!
//! Checked: every answer is a JSON body with a known status code (405 with `Allow`), and the
//! response the daemon writes parses back to the same code and length; a path segment that
//! decodes encodes back to itself.

use std::io::Read;

use causeway_api::http::{self, Head};
use causeway_api::{
    ConnectionStatus, GatewayStatus, InterfaceStatus, Request, Response, Status, VnetStatus,
};
use causewayd::config::SharedKey;
use causewayd::control::{route, Handler, Reply};

use crate::input::Input;

/// `control.rs`: the largest head and body accepted.
const MAX_HEAD: usize = 8 * 1024;
const MAX_BODY: usize = 64 * 1024;

fn iface(name: &str) -> InterfaceStatus {
    InterfaceStatus {
        name: name.into(),
        netns: None,
        up: true,
        running: true,
        mtu: 1500,
        offload: true,
    }
}

fn status(sku: &str) -> Status {
    Status {
        version: "0".into(),
        pid: 1,
        uptime_secs: 3,
        config: "x".into(),
        vnet: VnetStatus {
            name: "vnet1".into(),
            address_space: vec!["10.1.0.0/16".into()],
            gateway_address: "10.1.255.4".into(),
            gateway_address_v6: None,
            interface: iface("cw-vnet0"),
        },
        gateways: vec![GatewayStatus {
            name: "er gw".into(),
            gateway_type: "ExpressRoute".into(),
            sku: sku.into(),
            bits_per_sec: 1_000_000_000,
            packets_per_sec: Some(100_000),
            max_connections: 4,
            shaping: true,
            connections: vec![ConnectionStatus {
                name: "circuit-1".into(),
                connection_type: "ExpressRoute".into(),
                state: "Connected".into(),
                routed: true,
                prefixes: vec!["10.2.0.0/16".into()],
                routing_weight: 0,
                interface: Some(iface("cw-er0")),
                tunnel: None,
            }],
        }],
    }
}

/// The handler of control.rs's tests: status; resizes to HighPerformance only; captures of
/// `circuit-1` only; reloads.
struct Fake;

impl Handler for Fake {
    fn handle(&self, req: Request) -> Response {
        let mut r = Response::error("x");
        r.error = None;
        match req {
            Request::Status => r.status = Some(status("Standard")),
            Request::Stats => {
                r.stats = Some(causeway_api::Stats {
                    uptime_secs: 3,
                    vnet: causeway_api::VnetStats {
                        name: "vnet1".into(),
                        egress: Default::default(),
                    },
                    gateways: vec![],
                    stages: vec![],
                    ike: None,
                })
            }
            Request::Resize { sku, .. } if sku == "HighPerformance" => {
                r.status = Some(status(&sku))
            }
            Request::Resize { sku, .. } => r.error = Some(format!("resize refused: {sku}")),
            Request::Capture {
                connection, count, ..
            } if connection == "circuit-1" => r.captured = Some(u64::from(count)),
            Request::Capture { connection, .. } => {
                r.error = Some(format!("capture: no connection named {connection}"))
            }
            Request::Reload => r.reload = Some(Default::default()),
            Request::Flows { .. } => r.flows = Some(vec![]),
        }
        r
    }
}

/// Method, path and body of an acceptable request, or the status of the error reply.
type Parsed = Result<(String, String, Vec<u8>), u16>;

/// What `read_request` decides.
fn read_request(s: &mut impl Read, token: Option<&SharedKey>) -> std::io::Result<Parsed> {
    let Some(raw) = http::read_head(s, MAX_HEAD)? else {
        return Ok(Err(431));
    };
    let head = Head::parse(&raw.head);
    let (method, path) = match head.request_line() {
        Ok(mp) => mp,
        Err(_) => return Ok(Err(400)),
    };
    if let Some(token) = token {
        let given = head
            .header("authorization")
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .unwrap_or("");
        if !token.matches(given.as_bytes()) {
            return Ok(Err(401));
        }
    }
    if head.header("transfer-encoding").is_some() {
        return Ok(Err(501));
    }
    let len = match head.content_length() {
        Ok(n) => n.unwrap_or(0),
        Err(_) => return Ok(Err(400)),
    };
    if len > MAX_BODY {
        return Ok(Err(413));
    }
    let body = http::read_body(s, raw.rest, len)?;
    Ok(Ok((method.to_string(), path.to_string(), body)))
}

fn check_reply(r: &Reply) {
    assert_ne!(http::reason(r.code), "Unknown", "status code {}", r.code);
    let v: serde_json::Value = serde_json::from_str(&r.body)
        .unwrap_or_else(|e| panic!("reply body is not JSON ({e}): {}", r.body));
    if r.code != 200 {
        assert!(
            v["error"].is_string(),
            "error reply without an error: {}",
            r.body
        );
    }
    assert_eq!(r.code == 405, r.allow.is_some(), "Allow header and 405");
    // What the daemon writes parses back.
    let mut out = Vec::new();
    http::write_response(
        &mut out,
        r.code,
        "application/json",
        "",
        r.body.as_bytes(),
        true,
    )
    .expect("write to a Vec");
    let mut reader = &out[..];
    let raw = http::read_head(&mut reader, MAX_HEAD)
        .expect("read a Vec")
        .expect("a response head");
    let head = Head::parse(&raw.head);
    assert_eq!(head.status_code(), Some(r.code));
    assert_eq!(head.content_length(), Ok(Some(r.body.len())));
    let body = http::read_body(&mut reader, raw.rest, r.body.len()).expect("the body");
    assert_eq!(body, r.body.as_bytes());
}

pub fn run(data: &[u8]) {
    let mut input = Input::new(data);
    let tcp = input.u8() & 1 == 1;
    let mut stream = input.rest();
    let token = SharedKey::parse(b"s3cret-token").expect("token");
    let Ok(parsed) = read_request(&mut stream, tcp.then_some(&token)) else {
        // The client closed before sending the body it announced: no answer.
        return;
    };
    let Ok((method, path, body)) = parsed else {
        return;
    };
    for seg in path.split('/') {
        if let Some(d) = http::decode_segment(seg) {
            assert_eq!(
                http::decode_segment(&http::encode_segment(&d)).as_deref(),
                Some(d.as_str())
            );
        }
    }
    let reply = route(&method, &path, &body, &Fake);
    check_reply(&reply);
}

/// Seeds: the requests `causeway` sends (docs/CLI.md, control.rs's tests), on both listeners.
pub fn seeds() -> Vec<(String, Vec<u8>)> {
    let post = |path: &str, body: &str| {
        format!("POST {path} HTTP/1.1\r\nHost: causeway\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).into_bytes()
    };
    let get = |path: &str| {
        format!("GET {path} HTTP/1.1\r\nHost: causeway\r\nConnection: close\r\n\r\n").into_bytes()
    };
    let reqs: Vec<(&str, Vec<u8>)> = vec![
        ("status", get("/v1/status")),
        ("stats", get("/v1/stats")),
        ("gateways", get("/v1/gateways")),
        ("gateway_named", get("/v1/gateways/er%20gw")),
        ("connections", get("/v1/connections?x=1#f")),
        (
            "resize",
            post(
                "/v1/gateways/er%20gw/resize",
                r#"{"sku":"HighPerformance","scale_units":null}"#,
            ),
        ),
        (
            "resize_refused",
            post(
                "/v1/gateways/er%20gw/resize",
                r#"{"sku":"UltraPerformance"}"#,
            ),
        ),
        (
            "capture",
            post(
                "/v1/capture",
                r#"{"connection":"circuit-1","direction":"ingress","count":4,"file":"/tmp/x.pcap","timeout_secs":1}"#,
            ),
        ),
        ("reload", post("/v1/reload", "")),
        ("bad_method", b"DELETE /v1/status HTTP/1.1\r\n\r\n".to_vec()),
        (
            "chunked",
            b"POST /v1/reload HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".to_vec(),
        ),
        ("lf_only", b"GET /v1/status HTTP/1.0\nHost: x\n\n".to_vec()),
    ];
    let mut out = Vec::new();
    for (name, r) in &reqs {
        out.push((format!("unix_{name}"), [&[0u8][..], r].concat()));
    }
    let tcp = b"GET /v1/status HTTP/1.1\r\nAuthorization: Bearer s3cret-token\r\n\r\n";
    out.push(("tcp_status".into(), [&[1u8][..], tcp].concat()));
    out.push(("tcp_no_token".into(), [&[1u8][..], &reqs[0].1].concat()));
    out
}
