//! The edge's request rules: what RFC 9110 and RFC 9112 require of an intermediary on a
//! request head that hyper's parser let through, checked before the request is routed.
//! No I/O; one pass over the header names, so a well-formed request pays a few
//! comparisons and a walk over its Host.
//!
//! hyper refuses what is malformed on the wire (bad method and header tokens, obs-fold,
//! whitespace before a colon, CR, LF or NUL in a value, bad chunk sizes, two different
//! Content-Lengths, a final coding other than `chunked`, HTTP/0.9 and HTTP/2.0 request
//! lines) and, for Transfer-Encoding with Content-Length, drops the Content-Length and
//! closes the connection after the response (RFC 9112 6.1). Everything else is here; the
//! whole table with each rule's source is in docs/edge.md.

use crate::error::{ErrorKind, ProxyError};
use http::header::{self, HeaderName, HeaderValue};
use http::{Method, Request, Version};
use std::net::Ipv6Addr;

const HTTP2_SETTINGS: HeaderName = HeaderName::from_static("http2-settings");

/// The methods a 405 names in its `Allow` (RFC 9110 15.5.6): all but CONNECT and TRACE.
pub const ALLOW: &str = "GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS";

/// What to do with a request that passed.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Route and forward it.
    Forward,
    /// Answer it here as the final recipient of an OPTIONS: `OPTIONS *`, or a
    /// Max-Forwards of zero (RFC 9110 7.6.2).
    Options,
}

/// Which of the headers the rules look at a request carries, from one pass over its
/// fields; the Host is kept from that pass, not looked up again.
#[derive(Default)]
struct Seen<'a> {
    hosts: u8,
    host: Option<&'a HeaderValue>,
    te: bool,
    upgrade: bool,
    expect: bool,
    max_forwards: bool,
    http2_settings: bool,
}

/// Checks a request head and repairs what the rules say to repair (see the module
/// docs). A refusal is a [`ProxyError`] whose kind gives the status.
pub fn check<B>(req: &mut Request<B>) -> Result<Verdict, ProxyError> {
    let method = req.method();
    if method == Method::CONNECT || method == Method::TRACE {
        return Err(ProxyError::new(
            ErrorKind::MethodNotAllowed,
            format!("{method} is not served: Gatehouse is a reverse proxy"),
        ));
    }
    let seen = scan(req.headers());
    let h2 = req.version() == Version::HTTP_2;
    let asterisk = target(req)?;
    host(req, &seen, h2)?;
    let seen = seen.flags();
    if !h2 {
        authority_as_host(req);
    }
    if seen.te {
        transfer_coding(req.headers())?;
    }
    if seen.expect {
        expectation(req)?;
    }
    if seen.upgrade || seen.http2_settings {
        drop_h2c(req.headers_mut());
    }
    if req.method() == Method::OPTIONS && (asterisk || seen.max_forwards) {
        return options(req, asterisk);
    }
    Ok(Verdict::Forward)
}

fn scan(headers: &http::HeaderMap) -> Seen<'_> {
    let mut s = Seen::default();
    for (name, value) in headers {
        if name == header::HOST {
            s.hosts = s.hosts.saturating_add(1);
            s.host.get_or_insert(value);
        } else if name == header::TRANSFER_ENCODING {
            s.te = true;
        } else if name == header::UPGRADE {
            s.upgrade = true;
        } else if name == header::EXPECT {
            s.expect = true;
        } else if name == header::MAX_FORWARDS {
            s.max_forwards = true;
        } else if name == HTTP2_SETTINGS {
            s.http2_settings = true;
        }
    }
    s
}

impl Seen<'_> {
    /// The flags alone, so the request can be repaired while they are read.
    fn flags(&self) -> Seen<'static> {
        Seen {
            host: None,
            ..*self
        }
    }
}

fn bad(msg: impl Into<String>) -> ProxyError {
    ProxyError::new(ErrorKind::BadRequest, msg)
}

/// The request-target's form (RFC 9112 3.2): origin-form, absolute-form with an http(s)
/// scheme and no userinfo, or `*` for OPTIONS; never authority-form (CONNECT is refused
/// before). An HTTP/2 request always names its target by `:scheme` and `:authority`,
/// so it takes the absolute-form branch. Returns whether the target is `*`.
fn target<B>(req: &Request<B>) -> Result<bool, ProxyError> {
    let uri = req.uri();
    match (uri.scheme_str(), uri.authority()) {
        (None, None) => {
            let path = uri.path();
            if path == "*" {
                if req.method() != Method::OPTIONS {
                    return Err(bad(format!(
                        "`*` is a target for OPTIONS only, not {}",
                        req.method()
                    )));
                }
                return Ok(true);
            }
            if !path.starts_with('/') {
                return Err(bad("the request-target is not in origin form"));
            }
            Ok(false)
        }
        (None, Some(_)) => Err(bad("authority-form is for CONNECT only")),
        (Some(scheme), authority) => {
            if !(scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https")) {
                return Err(bad(format!("the scheme `{scheme}` is not http or https")));
            }
            let Some(a) = authority else {
                return Err(bad("the request-target has a scheme but no authority"));
            };
            if a.as_str().contains('@') {
                return Err(bad("the request-target carries userinfo"));
            }
            if !valid_host(a.as_str().as_bytes()) {
                return Err(bad(
                    "the request-target's authority is not a valid host[:port]",
                ));
            }
            Ok(false)
        }
    }
}

/// Host rules (RFC 9112 3.2, RFC 9110 7.2, RFC 9113 8.3.1).
fn host<B>(req: &Request<B>, seen: &Seen<'_>, h2: bool) -> Result<(), ProxyError> {
    if seen.hosts > 1 {
        return Err(bad("the request has more than one Host"));
    }
    match (seen.host, req.uri().authority()) {
        (None, _) if h2 || req.version() == Version::HTTP_10 => {}
        (None, _) => return Err(bad("an HTTP/1.1 request needs a Host")),
        (Some(h), _) if !valid_host(h.as_bytes()) => {
            return Err(bad("the Host is not a valid host[:port]"));
        }
        (Some(h), Some(a)) if h2 => {
            if !same_authority(h.as_bytes(), a.as_str().as_bytes()) {
                return Err(bad("the Host names another authority than :authority"));
            }
        }
        (Some(_), _) => {}
    }
    Ok(())
}

/// With an absolute-form target on HTTP/1, the target's authority replaces the Host
/// (RFC 9112 3.2.2).
fn authority_as_host<B>(req: &mut Request<B>) {
    let host = req
        .uri()
        .authority()
        .and_then(|a| HeaderValue::from_str(a.as_str()).ok());
    if let Some(v) = host {
        req.headers_mut().insert(header::HOST, v);
    }
}

/// Two authorities name the same host and port, ignoring case.
fn same_authority(a: &[u8], b: &[u8]) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// `host[:port]` (RFC 3986 3.2.2): a reg-name or IPv4 address (unreserved characters,
/// percent-encodings and sub-delims), or an IPv6 literal in brackets; a port of at most
/// five digits and 65535. An empty host is invalid for http (RFC 9110 4.2.1).
pub fn valid_host(s: &[u8]) -> bool {
    let (host_ok, port) = if s.first() == Some(&b'[') {
        let Some(end) = s.iter().position(|&b| b == b']') else {
            return false;
        };
        let ip = std::str::from_utf8(&s[1..end])
            .ok()
            .and_then(|t| t.parse::<Ipv6Addr>().ok());
        match &s[end + 1..] {
            [] => (ip.is_some(), None),
            [b':', port @ ..] => (ip.is_some(), Some(port)),
            _ => return false,
        }
    } else {
        let (name, port) = match s.iter().rposition(|&b| b == b':') {
            Some(i) => (&s[..i], Some(&s[i + 1..])),
            None => (s, None),
        };
        (!name.is_empty() && reg_name(name), port)
    };
    host_ok && port.is_none_or(valid_port)
}

fn reg_name(s: &[u8]) -> bool {
    let mut i = 0;
    while i < s.len() {
        let b = s[i];
        if b == b'%' {
            if !(i + 2 < s.len() && s[i + 1].is_ascii_hexdigit() && s[i + 2].is_ascii_hexdigit()) {
                return false;
            }
            i += 3;
            continue;
        }
        let unreserved = b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~');
        let sub_delim = matches!(
            b,
            b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'='
        );
        if !(unreserved || sub_delim) {
            return false;
        }
        i += 1;
    }
    true
}

fn valid_port(p: &[u8]) -> bool {
    p.len() <= 5
        && p.iter().all(u8::is_ascii_digit)
        && p.iter().fold(0u32, |n, d| n * 10 + u32::from(d - b'0')) <= 65535
}

/// Transfer codings (RFC 9112 6.1, 7): `chunked` once and last; any other coding is
/// one Gatehouse does not decode (501), since forwarding it re-chunked would hand the
/// upstream bytes it cannot read.
fn transfer_coding(headers: &http::HeaderMap) -> Result<(), ProxyError> {
    let mut chunked = 0;
    let mut last_chunked = false;
    let mut other: Option<String> = None;
    for v in headers.get_all(header::TRANSFER_ENCODING) {
        let Ok(s) = v.to_str() else {
            return Err(bad("Transfer-Encoding is not text"));
        };
        for coding in s.split(',').map(str::trim).filter(|c| !c.is_empty()) {
            let name = coding.split(';').next().unwrap_or("").trim();
            last_chunked = name.eq_ignore_ascii_case("chunked");
            if last_chunked {
                chunked += 1;
            } else if other.is_none() {
                other = Some(name.to_string());
            }
        }
    }
    if !last_chunked {
        return Err(bad("chunked is not the last transfer coding"));
    }
    if chunked > 1 {
        return Err(bad("chunked is applied more than once"));
    }
    match other {
        Some(c) => Err(ProxyError::new(
            ErrorKind::NotImplemented,
            format!("the transfer coding `{c}` is not supported"),
        )),
        None => Ok(()),
    }
}

/// `Expect` (RFC 9110 10.1.1): only 100-continue is known (417 for others); an HTTP/1.0
/// request's expectation is ignored, and so removed before forwarding.
fn expectation<B>(req: &mut Request<B>) -> Result<(), ProxyError> {
    if req.version() == Version::HTTP_10 {
        req.headers_mut().remove(header::EXPECT);
        return Ok(());
    }
    let known = req.headers().get_all(header::EXPECT).iter().all(|v| {
        v.to_str().is_ok_and(|s| {
            s.split(',')
                .map(str::trim)
                .all(|e| e.is_empty() || e.eq_ignore_ascii_case("100-continue"))
        })
    });
    if known {
        Ok(())
    } else {
        Err(ProxyError::new(
            ErrorKind::ExpectationFailed,
            "only the 100-continue expectation is supported",
        ))
    }
}

/// Drops the `h2c` upgrade token and `HTTP2-Settings` (RFC 9113 3.1 removed the h2c
/// upgrade; forwarding it is the h2c smuggling attack): the request goes on as a plain
/// one, or as an upgrade to whatever other protocol it also offered.
fn drop_h2c(headers: &mut http::HeaderMap) {
    headers.remove(HTTP2_SETTINGS);
    let offered: Vec<HeaderValue> = headers.get_all(header::UPGRADE).iter().cloned().collect();
    if !offered.iter().any(|v| has_token(v, "h2c")) {
        return;
    }
    headers.remove(header::UPGRADE);
    let kept: Vec<&str> = offered
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|s| s.split(','))
        .map(str::trim)
        .filter(|p| !p.is_empty() && !p.eq_ignore_ascii_case("h2c"))
        .collect();
    if let Ok(v) = HeaderValue::from_str(&kept.join(", ")) {
        if !kept.is_empty() {
            headers.insert(header::UPGRADE, v);
        }
    }
}

/// Whether a client's HTTP/1 request says it will send nothing after it: `close`
/// (RFC 9112 9.6), or HTTP/1.0 without `keep-alive` (RFC 9112 9.3).
pub fn client_closes<B>(req: &Request<B>) -> bool {
    let mut lines = req.headers().get_all(header::CONNECTION).iter();
    if req.version() == Version::HTTP_10 {
        return !lines.any(|v| has_token(v, "keep-alive"));
    }
    lines.any(|v| has_token(v, "close"))
}

/// Whether a comma-separated header value lists `token` (case-insensitive).
pub fn has_token(v: &HeaderValue, token: &str) -> bool {
    lists(v.as_bytes(), token)
}

/// [`has_token`] on a value's bytes, for a reader that has not made a `HeaderValue`
/// yet. A value that is not visible ASCII lists nothing, as `HeaderValue::to_str`
/// refuses it.
pub fn lists(v: &[u8], token: &str) -> bool {
    v.iter().all(|&b| (b' '..0x7f).contains(&b) || b == b'\t')
        && v.split(|&b| b == b',')
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

/// OPTIONS with Max-Forwards (RFC 9110 7.6.2): zero is answered here, another value
/// goes on one less. `OPTIONS *` asks about the server, which is Gatehouse.
fn options<B>(req: &mut Request<B>, asterisk: bool) -> Result<Verdict, ProxyError> {
    let Some(v) = req.headers().get(header::MAX_FORWARDS) else {
        return Ok(if asterisk {
            Verdict::Options
        } else {
            Verdict::Forward
        });
    };
    let n = v
        .to_str()
        .ok()
        .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|s| s.parse::<u64>().ok().or(Some(u64::MAX)))
        .ok_or_else(|| bad("Max-Forwards is not a number"))?;
    if n == 0 || asterisk {
        return Ok(Verdict::Options);
    }
    req.headers_mut()
        .insert(header::MAX_FORWARDS, HeaderValue::from(n - 1));
    Ok(Verdict::Forward)
}

#[cfg(test)]
#[path = "edge_tests.rs"]
mod tests;
