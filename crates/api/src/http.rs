//! The small subset of HTTP/1.1 that Causeway speaks, shared by the daemon's servers (the
//! control socket and the metrics endpoint) and by the client ([`crate::call`]): reading and
//! parsing a message head, reading a body of known length, writing a response, and the
//! percent-encoding of a path segment.
//!
//! One request per connection (`Connection: close`); no chunked bodies, no keep-alive.

use std::io::{self, Read, Write};

/// Where a message head ends: just past the first blank line (`\r\n\r\n` or `\n\n`).
fn head_end(b: &[u8]) -> Option<usize> {
    let crlf = b.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4);
    let lf = b.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// A message head as read off a stream, and the bytes read past it (the start of the body).
#[derive(Debug)]
pub struct RawHead {
    pub head: Vec<u8>,
    pub rest: Vec<u8>,
}

/// Reads a message head: up to the blank line, at most `max` bytes. None when the peer sent
/// `max` bytes without ending its head. A peer that closes (or half-closes) before the blank
/// line gets what it sent as its head.
pub fn read_head(r: &mut impl Read, max: usize) -> io::Result<Option<RawHead>> {
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    loop {
        if let Some(end) = head_end(&buf) {
            let rest = buf.split_off(end);
            return Ok(Some(RawHead { head: buf, rest }));
        }
        if buf.len() >= max {
            return Ok(None);
        }
        let want = chunk.len().min(max - buf.len());
        let n = match r.read(&mut chunk[..want]) {
            Ok(n) => n,
            // A signal arrived while reading: read again.
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if n == 0 {
            return Ok(Some(RawHead {
                head: buf,
                rest: Vec::new(),
            }));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Reads a body of `len` bytes, of which `rest` (from [`read_head`]) were already read.
pub fn read_body(r: &mut impl Read, mut rest: Vec<u8>, len: usize) -> io::Result<Vec<u8>> {
    rest.truncate(len);
    let have = rest.len();
    rest.resize(len, 0);
    r.read_exact(&mut rest[have..])?;
    Ok(rest)
}

/// A parsed message head: the start line and the header fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub line: String,
    pub headers: Vec<(String, String)>,
}

impl Head {
    pub fn parse(raw: &[u8]) -> Head {
        let text = String::from_utf8_lossy(raw);
        let mut lines = text.lines();
        let line = lines.next().unwrap_or("").trim_end().to_string();
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect();
        Head { line, headers }
    }

    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// A request line's method and path (without query or fragment).
    pub fn request_line(&self) -> Result<(&str, &str), &'static str> {
        let mut parts = self.line.split_whitespace();
        let (Some(method), Some(target), Some(version), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err("bad request line");
        };
        if !version.starts_with("HTTP/1.") {
            return Err("HTTP/1.x only");
        }
        Ok((method, target.split(['?', '#']).next().unwrap_or("")))
    }

    /// A status line's code.
    pub fn status_code(&self) -> Option<u16> {
        let mut parts = self.line.split_whitespace();
        parts.next().filter(|v| v.starts_with("HTTP/1."))?;
        parts.next()?.parse().ok()
    }

    /// `Content-Length` (None when absent).
    pub fn content_length(&self) -> Result<Option<usize>, &'static str> {
        match self.header("content-length") {
            None => Ok(None),
            Some(v) => v.parse().map(Some).map_err(|_| "bad Content-Length"),
        }
    }
}

/// The reason phrase of the status codes Causeway sends.
pub fn reason(code: u16) -> &'static str {
    match code {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        413 => "Content Too Large",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        _ => "Unknown",
    }
}

/// Writes a whole response with `Content-Type`, `Content-Length` and `Connection: close`;
/// `extra_headers` are complete lines (each ending in `\r\n`). The body is left out when
/// `with_body` is false (HEAD).
pub fn write_response(
    w: &mut impl Write,
    code: u16,
    content_type: &str,
    extra_headers: &str,
    body: &[u8],
    with_body: bool,
) -> io::Result<()> {
    let mut out = format!(
        "HTTP/1.1 {code} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{extra_headers}Connection: close\r\n\r\n",
        reason(code),
        body.len(),
    )
    .into_bytes();
    if with_body {
        out.extend_from_slice(body);
    }
    w.write_all(&out)?;
    w.flush()
}

/// Percent-encodes a path segment (everything but the unreserved characters).
pub fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Decodes a percent-encoded path segment; None when malformed or not UTF-8.
pub fn decode_segment(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_head_and_body_and_parses() {
        let msg = b"POST /v1/x?y=1 HTTP/1.1\r\nHost: a\r\ncontent-length: 5\r\n\r\nhello";
        let mut r = &msg[..];
        let raw = read_head(&mut r, 8192).unwrap().unwrap();
        let head = Head::parse(&raw.head);
        assert_eq!(head.request_line(), Ok(("POST", "/v1/x")));
        assert_eq!(head.header("Content-Length"), Some("5"));
        assert_eq!(head.content_length(), Ok(Some(5)));
        assert_eq!(read_body(&mut r, raw.rest, 5).unwrap(), b"hello");
        let mut big = &[b'a'; 100][..];
        assert!(read_head(&mut big, 50).unwrap().is_none());
        assert_eq!(
            Head::parse(b"nonsense\r\n\r\n").request_line(),
            Err("bad request line")
        );
        assert_eq!(
            Head::parse(b"HTTP/1.1 409 Conflict\r\n\r\n").status_code(),
            Some(409)
        );
        assert_eq!(encode_segment("er gw/1"), "er%20gw%2F1");
        assert_eq!(decode_segment("er%20gw%2F1").unwrap(), "er gw/1");
        assert!(decode_segment("%zz").is_none());
    }
}
