//! The control socket: a Unix stream socket (mode 0600) speaking HTTP/1.1 with JSON bodies, one
//! request per connection (protocol version 2; `docs/CLI.md`, "The control socket protocol").
//! Optionally the same API on TCP (`[control] listen`), where every request must carry
//! `Authorization: Bearer <token>` (`[control] token_file`).

use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::config::SharedKey;
use anyhow::{bail, Context, Result};
use causeway_api::http::{self, Head};
use causeway_api::{CaptureBody, Captured, ErrorBody, FlowsBody, Request, ResizeBody, Response};

/// Largest request head (request line and headers) accepted.
const MAX_HEAD: usize = 8 * 1024;

/// Largest request body accepted.
const MAX_BODY: usize = 64 * 1024;

/// How long a client has to send each part of its request, and to read the answer.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);

/// Answers requests; implemented by the daemon.
pub trait Handler: Send + Sync + 'static {
    fn handle(&self, req: Request) -> Response;
}

/// The listening sockets; the Unix socket is removed from the file system on drop.
pub struct ControlServer {
    path: PathBuf,
    tcp_addr: Option<SocketAddr>,
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl ControlServer {
    /// Binds `path` (refusing to steal the socket of a live daemon), sets mode 0600 and serves
    /// requests on a background thread; with `tcp`, also on that TCP address, where requests
    /// must carry the bearer token.
    pub fn start(
        path: &Path,
        tcp: Option<(SocketAddr, SharedKey)>,
        handler: Arc<dyn Handler>,
    ) -> Result<ControlServer> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("creating control socket directory {}", dir.display()))?;
        }
        if path.exists() {
            if UnixStream::connect(path).is_ok() {
                bail!(
                    "control socket {} is in use by a running daemon (set [control] socket to another path)",
                    path.display()
                );
            }
            std::fs::remove_file(path)
                .with_context(|| format!("removing stale control socket {}", path.display()))?;
        }
        let listener = UnixListener::bind(path)
            .with_context(|| format!("binding control socket {}", path.display()))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("setting mode 0600 on {}", path.display()))?;
        listener.set_nonblocking(true)?;
        let tcp = match tcp {
            Some((addr, token)) => {
                let l = TcpListener::bind(addr)
                    .inspect_err(|_| {
                        let _ = std::fs::remove_file(path);
                    })
                    .with_context(|| {
                        format!("binding the control listener {addr} ([control] listen)")
                    })?;
                l.set_nonblocking(true)?;
                Some((l, token))
            }
            None => None,
        };
        let stop = Arc::new(AtomicBool::new(false));
        let mut server = ControlServer {
            path: path.to_owned(),
            tcp_addr: None,
            stop: stop.clone(),
            threads: Vec::new(),
        };
        let (h, stop2) = (handler.clone(), stop.clone());
        server
            .threads
            .push(
                std::thread::Builder::new()
                    .name("control".into())
                    .spawn(move || {
                        serve(
                            || listener.accept().map(|(s, _)| s),
                            move |s: UnixStream| unix_client(s, &*h),
                            stop2,
                        )
                    })?,
            );
        if let Some((listener, token)) = tcp {
            server.tcp_addr = Some(listener.local_addr()?);
            let token = Arc::new(token);
            server.threads.push(
                std::thread::Builder::new()
                    .name("control-tcp".into())
                    .spawn(move || {
                        serve(
                            || listener.accept().map(|(s, _)| s),
                            move |s: TcpStream| tcp_client(s, &token, &*handler),
                            stop,
                        )
                    })?,
            );
        }
        Ok(server)
    }

    /// The TCP address served (`[control] listen`), if any.
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.tcp_addr
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Accepts clients until `stop`, each served by `client` on its own short-lived thread, so a
/// stuck client cannot block others.
fn serve<S: Send + 'static>(
    mut accept: impl FnMut() -> std::io::Result<S>,
    client: impl Fn(S) -> std::io::Result<()> + Clone + Send + 'static,
    stop: Arc<AtomicBool>,
) {
    while !stop.load(Ordering::Relaxed) {
        match accept() {
            Ok(stream) => {
                let c = client.clone();
                let _ = std::thread::Builder::new()
                    .name("control-client".into())
                    .spawn(move || {
                        if let Err(e) = c(stream) {
                            tracing::debug!(error = %e, "control client");
                        }
                    });
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => {
                tracing::warn!(error = %e, "control socket accept failed");
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
}

fn unix_client(stream: UnixStream, handler: &dyn Handler) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(CLIENT_TIMEOUT))?;
    stream.set_write_timeout(Some(CLIENT_TIMEOUT))?;
    exchange(&mut &stream, None, handler)?;
    let _ = stream.shutdown(std::net::Shutdown::Write);
    linger(&stream, |t| stream.set_read_timeout(t))
}

fn tcp_client(stream: TcpStream, token: &SharedKey, handler: &dyn Handler) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(CLIENT_TIMEOUT))?;
    stream.set_write_timeout(Some(CLIENT_TIMEOUT))?;
    exchange(&mut &stream, Some(token), handler)?;
    let _ = stream.shutdown(std::net::Shutdown::Write);
    linger(&stream, |t| stream.set_read_timeout(t))
}

/// Lingering close: reads what the client may still send (briefly, a bounded amount), so that
/// closing with unread data does not reset the connection before it read the answer.
fn linger(
    mut s: impl Read,
    set_timeout: impl Fn(Option<Duration>) -> std::io::Result<()>,
) -> std::io::Result<()> {
    set_timeout(Some(Duration::from_secs(1)))?;
    let _ = std::io::copy(&mut (&mut s).take(64 * 1024), &mut std::io::sink());
    Ok(())
}

/// Reads one request, answers it. With `token`, the request must carry it
/// (`Authorization: Bearer <token>`, compared in constant time), else 401.
fn exchange(
    s: &mut (impl Read + std::io::Write),
    token: Option<&SharedKey>,
    handler: &dyn Handler,
) -> std::io::Result<()> {
    let reply = match read_request(s, token)? {
        Ok((method, path, body)) => route(&method, &path, &body, handler),
        Err(reply) => reply,
    };
    // The request is read: the answer may take as long as the handler needs (a capture waits for
    // its count or its timeout); the write timeout starts now.
    let mut extra = reply
        .allow
        .map(|a| format!("Allow: {a}\r\n"))
        .unwrap_or_default();
    if reply.code == 401 {
        extra.push_str("WWW-Authenticate: Bearer\r\n");
    }
    http::write_response(
        s,
        reply.code,
        "application/json",
        &extra,
        reply.body.as_bytes(),
        true,
    )
}

/// Method, path and body of the request; or the error reply when it is not acceptable.
type Parsed = Result<(String, String, Vec<u8>), Reply>;

fn read_request(s: &mut impl Read, token: Option<&SharedKey>) -> std::io::Result<Parsed> {
    let Some(raw) = http::read_head(s, MAX_HEAD)? else {
        return Ok(Err(Reply::error(
            431,
            "request head too large (8 KiB at most)",
        )));
    };
    let head = Head::parse(&raw.head);
    let (method, path) = match head.request_line() {
        Ok(mp) => mp,
        Err(e) => return Ok(Err(Reply::error(400, e))),
    };
    if let Some(token) = token {
        let given = head
            .header("authorization")
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .unwrap_or("");
        if !token.matches(given.as_bytes()) {
            return Ok(Err(Reply::error(
                401,
                "a request on TCP needs `Authorization: Bearer <token>` ([control] token_file)",
            )));
        }
    }
    if head.header("transfer-encoding").is_some() {
        return Ok(Err(Reply::error(
            501,
            "Transfer-Encoding is not supported: send Content-Length",
        )));
    }
    let len = match head.content_length() {
        Ok(n) => n.unwrap_or(0),
        Err(e) => return Ok(Err(Reply::error(400, e))),
    };
    if len > MAX_BODY {
        return Ok(Err(Reply::error(
            413,
            "request body too large (64 KiB at most)",
        )));
    }
    let body = http::read_body(s, raw.rest, len)?;
    Ok(Ok((method.to_string(), path.to_string(), body)))
}

/// A response: status code, `Allow` (405) and JSON body.
#[derive(Debug)]
pub struct Reply {
    pub code: u16,
    pub allow: Option<&'static str>,
    pub body: String,
}

impl Reply {
    fn json<T: serde::Serialize>(value: &T) -> Reply {
        match serde_json::to_string(value) {
            Ok(body) => Reply {
                code: 200,
                allow: None,
                body,
            },
            Err(e) => Reply::error(500, format!("encoding the response: {e}")),
        }
    }

    fn error(code: u16, msg: impl Into<String>) -> Reply {
        Reply {
            code,
            allow: None,
            body: serde_json::to_string(&ErrorBody { error: msg.into() })
                .unwrap_or_else(|_| "{}".into()),
        }
    }
}

/// Answers one request; `path` is without its query.
pub fn route(method: &str, path: &str, body: &[u8], handler: &dyn Handler) -> Reply {
    let segments: Vec<&str> = path.strip_prefix('/').unwrap_or(path).split('/').collect();
    let (allow, gateway) = match segments.as_slice() {
        ["v1", "status" | "stats" | "gateways" | "connections"] => ("GET", None),
        ["v1", "gateways", name] => ("GET", Some(*name)),
        ["v1", "gateways", name, "resize"] => ("POST", Some(*name)),
        ["v1", "capture" | "reload" | "flows"] => ("POST", None),
        _ => return Reply::error(404, format!("no such resource: {path} (see docs/CLI.md)")),
    };
    if method != allow {
        let mut r = Reply::error(405, format!("{path} accepts {allow} only"));
        r.allow = Some(allow);
        return r;
    }
    let gateway = match gateway.map(http::decode_segment) {
        Some(None) => return Reply::error(400, "bad gateway name in the path"),
        Some(Some(g)) => Some(g),
        None => None,
    };
    let status = || {
        let r = handler.handle(Request::Status);
        match (r.status, r.error) {
            (Some(s), _) => Ok(s),
            (None, e) => Err(Reply::error(500, e.unwrap_or_else(|| "no status".into()))),
        }
    };
    match (segments[1], gateway) {
        ("status", _) => status().map_or_else(|e| e, |s| Reply::json(&s)),
        ("gateways", None) => status().map_or_else(|e| e, |s| Reply::json(&s.gateways)),
        ("connections", _) => status().map_or_else(
            |e| e,
            |s| {
                let all: Vec<serde_json::Value> = s
                    .gateways
                    .iter()
                    .flat_map(|g| {
                        g.connections.iter().map(|c| {
                            let mut v = serde_json::to_value(c).unwrap_or_default();
                            if let Some(o) = v.as_object_mut() {
                                o.insert("gateway".into(), g.name.clone().into());
                            }
                            v
                        })
                    })
                    .collect();
                Reply::json(&all)
            },
        ),
        ("stats", _) => {
            let r = handler.handle(Request::Stats);
            match (r.stats, r.error) {
                (Some(s), _) => Reply::json(&s),
                (None, e) => Reply::error(500, e.unwrap_or_else(|| "no stats".into())),
            }
        }
        ("gateways", Some(name)) if segments.len() == 3 => status().map_or_else(
            |e| e,
            |s| match s.gateways.iter().find(|g| g.name == name) {
                Some(g) => Reply::json(g),
                None => Reply::error(404, format!("no gateway named {name}")),
            },
        ),
        ("gateways", Some(gateway)) => {
            let b: ResizeBody = match serde_json::from_slice(body) {
                Ok(b) => b,
                Err(e) => return Reply::error(400, format!("bad resize body: {e}")),
            };
            let r = handler.handle(Request::Resize {
                gateway,
                sku: b.sku,
                scale_units: b.scale_units,
            });
            match (r.status, r.error) {
                (_, Some(e)) => Reply::error(409, e),
                (Some(s), None) => Reply::json(&s),
                (None, None) => Reply::error(500, "no status"),
            }
        }
        ("flows", _) => {
            let b: FlowsBody = if body.is_empty() {
                FlowsBody::default()
            } else {
                match serde_json::from_slice(body) {
                    Ok(b) => b,
                    Err(e) => return Reply::error(400, format!("bad flows body: {e}")),
                }
            };
            let r = handler.handle(Request::Flows {
                gateway: b.gateway,
                top: b.top,
            });
            match (r.flows, r.error) {
                (_, Some(e)) => Reply::error(400, e),
                (Some(f), None) => Reply::json(&f),
                (None, None) => Reply::error(500, "no flows"),
            }
        }
        ("reload", _) => {
            let r = handler.handle(Request::Reload);
            match (r.reload, r.error) {
                (_, Some(e)) => Reply::error(409, e),
                (Some(x), None) => Reply::json(&x),
                (None, None) => Reply::error(500, "no reload result"),
            }
        }
        _ => {
            let b: CaptureBody = match serde_json::from_slice(body) {
                Ok(b) => b,
                Err(e) => return Reply::error(400, format!("bad capture body: {e}")),
            };
            let r = handler.handle(Request::Capture {
                connection: b.connection,
                direction: b.direction,
                count: b.count,
                file: b.file,
                timeout_secs: b.timeout_secs,
            });
            match (r.captured, r.error) {
                (_, Some(e)) => Reply::error(400, e),
                (Some(n), None) => Reply::json(&Captured { captured: n }),
                (None, None) => Reply::error(500, "no count"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use causeway_api::{ConnectionStatus, GatewayStatus, InterfaceStatus, Status, VnetStatus};
    use std::io::Write;

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

    /// Answers status; resizes to HighPerformance only; captures of `circuit-1` only.
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
                Request::Resize { gateway, sku, .. } if sku == "HighPerformance" => {
                    assert_eq!(gateway, "er gw");
                    r.status = Some(status(&sku));
                }
                Request::Resize { sku, .. } => {
                    r.error = Some(format!("resize refused: {sku} needs recreating"))
                }
                Request::Capture {
                    connection, count, ..
                } if connection == "circuit-1" => r.captured = Some(u64::from(count)),
                Request::Capture { connection, .. } => {
                    r.error = Some(format!("capture: no connection named {connection}"))
                }
                Request::Reload => {
                    r.reload = Some(causeway_api::ReloadResult {
                        added: vec!["s2s-2".into()],
                        ..Default::default()
                    })
                }
                Request::Flows { gateway, top } => match gateway.as_deref() {
                    Some("nope") => r.error = Some("flows: no gateway `nope`".into()),
                    _ => {
                        r.flows = Some(vec![causeway_api::GatewayFlows {
                            gateway: gateway.unwrap_or_else(|| "er-gw".into()),
                            gateway_type: "ExpressRoute".into(),
                            counts: causeway_api::FlowCounts {
                                max_flows: u64::from(top.unwrap_or(0)),
                                ..Default::default()
                            },
                            flows: vec![],
                        }])
                    }
                },
            }
            r
        }
    }

    fn json(r: &Reply) -> serde_json::Value {
        serde_json::from_str(&r.body).unwrap()
    }

    #[test]
    fn flows_route_takes_an_optional_body() {
        let r = route("POST", "/v1/flows", b"", &Fake);
        assert_eq!(r.code, 200, "{}", r.body);
        assert_eq!(json(&r)[0]["gateway"], "er-gw");
        let r = route("POST", "/v1/flows", br#"{"gateway":"g2","top":7}"#, &Fake);
        assert_eq!(json(&r)[0]["gateway"], "g2");
        assert_eq!(json(&r)[0]["counts"]["max_flows"], 7);
        assert_eq!(route("POST", "/v1/flows", b"{", &Fake).code, 400);
        let r = route("POST", "/v1/flows", br#"{"gateway":"g2","tpo":7}"#, &Fake);
        assert_eq!(r.code, 400);
        assert!(r.body.contains("unknown field `tpo`"), "{}", r.body);
        assert_eq!(route("GET", "/v1/flows", b"", &Fake).code, 405);
        let r = route("POST", "/v1/flows", br#"{"gateway":"nope"}"#, &Fake);
        assert_eq!(r.code, 400);
        assert!(json(&r)["error"].as_str().unwrap().contains("nope"));
    }

    #[test]
    fn routes_status_codes_and_bodies() {
        let get = |p: &str| route("GET", p, b"", &Fake);
        let r = get("/v1/status");
        assert_eq!(r.code, 200);
        assert_eq!(
            serde_json::from_str::<Status>(&r.body).unwrap(),
            status("Standard")
        );
        let r = get("/v1/gateways");
        assert_eq!((r.code, json(&r)[0]["name"].as_str()), (200, Some("er gw")));
        let r = get("/v1/gateways/er%20gw");
        assert_eq!((r.code, json(&r)["sku"].as_str()), (200, Some("Standard")));
        let r = get("/v1/gateways/nope");
        assert_eq!(r.code, 404);
        assert!(json(&r)["error"].as_str().unwrap().contains("nope"));
        let r = get("/v1/connections");
        assert_eq!(r.code, 200);
        assert_eq!(json(&r)[0]["gateway"], "er gw");
        assert_eq!(json(&r)[0]["name"], "circuit-1");
        let r = get("/v1/stats");
        assert_eq!((r.code, json(&r)["uptime_secs"].as_u64()), (200, Some(3)));
        for p in [
            "/",
            "/v1",
            "/v1/status/",
            "/v2/status",
            "/v1/gateways/a/b/c",
        ] {
            let r = get(p);
            assert_eq!(r.code, 404, "{p}");
            assert!(json(&r)["error"].is_string(), "{p}");
        }
        let r = route("POST", "/v1/status", b"", &Fake);
        assert_eq!((r.code, r.allow), (405, Some("GET")));
        let r = get("/v1/gateways/er%20gw/resize");
        assert_eq!((r.code, r.allow), (405, Some("POST")));
        let r = route("POST", "/v1/reload", b"", &Fake);
        assert_eq!(r.code, 200);
        assert!(r.body.contains("s2s-2"), "{}", r.body);
        let r = get("/v1/reload");
        assert_eq!(r.code, 405);
        let r = get("/v1/capture");
        assert_eq!(r.code, 405);

        let resize = |body: &[u8]| route("POST", "/v1/gateways/er%20gw/resize", body, &Fake);
        let r = resize(br#"{"sku":"HighPerformance","scale_units":null}"#);
        assert_eq!(r.code, 200);
        assert_eq!(json(&r)["gateways"][0]["sku"], "HighPerformance");
        let r = resize(br#"{"sku":"UltraPerformance"}"#);
        assert_eq!(r.code, 409);
        assert!(json(&r)["error"].as_str().unwrap().contains("recreat"));
        for bad in [&b"{"[..], b"", br#"{"scale_units":1}"#, b"[1]"] {
            let r = resize(bad);
            assert_eq!(r.code, 400, "{bad:?}");
            assert!(json(&r)["error"].is_string());
        }
        assert_eq!(
            route("POST", "/v1/gateways/%zz/resize", b"{}", &Fake).code,
            400
        );

        let capture = |body: &[u8]| route("POST", "/v1/capture", body, &Fake);
        let r = capture(br#"{"connection":"circuit-1","count":4,"file":"/tmp/x.pcap"}"#);
        assert_eq!((r.code, r.body.as_str()), (200, r#"{"captured":4}"#));
        let r = capture(br#"{"connection":"c9","count":4,"file":"/tmp/x.pcap"}"#);
        assert_eq!(r.code, 400);
        assert!(json(&r)["error"].as_str().unwrap().contains("c9"));
        assert_eq!(capture(br#"{"connection":"circuit-1"}"#).code, 400);
    }

    fn raw(path: &Path, request: &[u8]) -> String {
        let mut s = UnixStream::connect(path).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let _ = s.write_all(request);
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    }

    fn socket_path(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("cw-control-{name}-{}.sock", std::process::id()))
    }

    #[test]
    fn serves_http_on_the_socket_and_call_speaks_it() {
        let path = socket_path("unix");
        let server = ControlServer::start(&path, None, Arc::new(Fake)).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let t = Duration::from_secs(5);
        let r = causeway_api::call(&path, &Request::Status, t).unwrap();
        assert_eq!(r.protocol, 2);
        assert_eq!((r.error, r.status), (None, Some(status("Standard"))));
        assert!(causeway_api::call(&path, &Request::Stats, t)
            .unwrap()
            .stats
            .is_some());
        let resize = |sku: &str| Request::Resize {
            gateway: "er gw".into(),
            sku: sku.into(),
            scale_units: None,
        };
        let r = causeway_api::call(&path, &resize("HighPerformance"), t).unwrap();
        assert_eq!(r.status.unwrap().gateways[0].sku, "HighPerformance");
        let r = causeway_api::call(&path, &resize("UltraPerformance"), t).unwrap();
        assert!(r.status.is_none());
        assert!(r.error.unwrap().contains("resize refused"));
        let capture = |c: &str| Request::Capture {
            connection: c.into(),
            direction: Some("ingress".into()),
            count: 7,
            file: "/tmp/x.pcap".into(),
            timeout_secs: Some(1),
        };
        let r = causeway_api::call(&path, &capture("circuit-1"), t).unwrap();
        assert_eq!((r.error, r.captured), (None, Some(7)));
        let r = causeway_api::call(&path, &capture("c9"), t).unwrap();
        assert!(r.error.unwrap().contains("no connection named c9"));

        // Raw HTTP: headers, errors, limits.
        let r = raw(&path, b"GET /v1/status HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
        assert!(r.contains("Content-Type: application/json\r\n"), "{r}");
        assert!(r.contains("Connection: close\r\n"), "{r}");
        let (head, body) = r.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("Content-Length: {}\r\n", body.len())));
        let r = raw(&path, b"GET /nope HTTP/1.1\r\n\r\n");
        assert!(
            r.starts_with("HTTP/1.1 404 ") && r.contains(r#"{"error":"#),
            "{r}"
        );
        let r = raw(&path, b"DELETE /v1/status HTTP/1.1\r\n\r\n");
        assert!(
            r.starts_with("HTTP/1.1 405 ") && r.contains("Allow: GET\r\n"),
            "{r}"
        );
        let r = raw(
            &path,
            b"POST /v1/capture HTTP/1.1\r\nContent-Length: 3\r\n\r\n{x}",
        );
        assert!(r.starts_with("HTTP/1.1 400 "), "{r}");
        assert!(raw(&path, b"nonsense\r\n\r\n").starts_with("HTTP/1.1 400 "));
        let big = format!("GET /v1/status HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(9000));
        assert!(raw(&path, big.as_bytes()).starts_with("HTTP/1.1 431 "));
        let r = raw(
            &path,
            b"POST /v1/capture HTTP/1.1\r\nContent-Length: 70000\r\n\r\n",
        );
        assert!(r.starts_with("HTTP/1.1 413 "), "{r}");
        drop(server);
        assert!(!path.exists());
    }

    #[test]
    fn tcp_needs_the_bearer_token() {
        let path = socket_path("tcp");
        let token = SharedKey::parse(b"s3cret-token").unwrap();
        let server = ControlServer::start(
            &path,
            Some(("127.0.0.1:0".parse().unwrap(), token)),
            Arc::new(Fake),
        )
        .unwrap();
        let addr = server.tcp_addr().unwrap();
        let get = |auth: &str| {
            let mut s = TcpStream::connect(addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            write!(s, "GET /v1/status HTTP/1.1\r\nHost: x\r\n{auth}\r\n").unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).unwrap();
            out
        };
        let r = get("Authorization: Bearer s3cret-token\r\n");
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
        for auth in [
            "",
            "Authorization: Bearer s3cret-tokeN\r\n",
            "Authorization: Bearer s3cret\r\n",
            "Authorization: Basic s3cret-token\r\n",
        ] {
            let r = get(auth);
            assert!(r.starts_with("HTTP/1.1 401 "), "{auth}: {r}");
            assert!(r.contains("WWW-Authenticate: Bearer\r\n"), "{r}");
        }
        // The Unix socket needs none.
        let r = causeway_api::call(&path, &Request::Status, Duration::from_secs(5)).unwrap();
        assert!(r.status.is_some());
        drop(server);
        assert!(TcpStream::connect(addr).is_err());
    }
}
