//! Proxy header rules, with no I/O: hop-by-hop stripping (including headers named in
//! `Connection`), X-Forwarded-For/-Proto/-Host with a trusted-proxy list, RFC 7239
//! `Forwarded`, `Via`, and the request id.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use std::fmt::Write;
use std::net::IpAddr;

pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Hop-by-hop headers (RFC 9110 7.6.1), always removed before forwarding.
const HOP_BY_HOP: [HeaderName; 6] = [
    header::CONNECTION,
    KEEP_ALIVE,
    PROXY_CONNECTION,
    header::TRANSFER_ENCODING,
    header::TRAILER,
    header::PROXY_AUTHORIZATION,
];

/// Facts about the client connection that the forwarding headers report.
pub struct Forwarding<'a> {
    pub client: IpAddr,
    /// `client` as header text, made once per connection.
    pub client_text: &'a HeaderValue,
    /// The peer is a trusted proxy: its X-Forwarded-* are kept and appended to.
    pub trusted: bool,
    /// `http` or `https`: how the client reached us.
    pub proto: &'static str,
    /// The Host the client asked for.
    pub host: Option<&'a HeaderValue>,
    /// `Via` entry such as `1.1 gatehouse`; none when `global.via` is off.
    pub via: Option<&'a HeaderValue>,
    /// Also write RFC 7239 `Forwarded`.
    pub forwarded: bool,
}

/// Removes hop-by-hop headers and those named in `Connection`. With `upgrade`, the
/// `Connection: upgrade` / `Upgrade` pair is kept so an upgrade can pass through.
/// `TE: trailers` is kept (gRPC needs it); any other TE is dropped.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, upgrade: bool) {
    // One pass of cheap name comparisons notes which of these the message carries
    // (bit i: `HOP_BY_HOP[i]`); only those are removed, each a hashed look-up. Most
    // messages carry none, or only `Connection` (callgrind: ~2,400 instructions for
    // a `Connection: close` request before, when every name was removed blindly).
    const TE: u8 = 1 << 6; // after HOP_BY_HOP's six
    const UPGRADE: u8 = TE << 1;
    let mut found = 0u8;
    for k in headers.keys() {
        if let Some(i) = HOP_BY_HOP.iter().position(|h| h == k) {
            found |= 1 << i;
        } else if k == header::TE {
            found |= TE;
        } else if k == header::UPGRADE {
            found |= UPGRADE;
        }
    }
    if found == 0 && !upgrade {
        return;
    }
    // Every Connection line counts (RFC 9110 7.6.1), not just the first. Only the
    // names the message carries are kept: `close` and `keep-alive` name none.
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|s| s.split(','))
        .map(str::trim)
        .filter(|t| !(t.is_empty() || upgrade && t.eq_ignore_ascii_case("upgrade")))
        .filter(|t| headers.contains_key(*t))
        .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
        // Framing and the Host are not the sender's to drop: a message naming them is
        // forwarded with them.
        .filter(|n| n != header::CONTENT_LENGTH && n != header::HOST)
        .collect();
    for n in named {
        headers.remove(n);
    }
    for (i, h) in HOP_BY_HOP.iter().enumerate() {
        if found & (1 << i) != 0 {
            headers.remove(h);
        }
    }
    if found & TE != 0 {
        let te_trailers = headers
            .get_all(header::TE)
            .iter()
            .any(|v| v.as_bytes().eq_ignore_ascii_case(b"trailers"));
        headers.remove(header::TE);
        if te_trailers {
            headers.insert(header::TE, HeaderValue::from_static("trailers"));
        }
    }
    if upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    } else if found & UPGRADE != 0 {
        headers.remove(header::UPGRADE);
    }
}

/// Joins the `Cookie` fields an HTTP/2 request splits into one, with `; ` (RFC 9113
/// 8.2.3), before the request goes to an HTTP/1.1 upstream.
pub fn join_cookies(headers: &mut HeaderMap) {
    let mut all = headers.get_all(header::COOKIE).iter();
    if all.next().is_none() || all.next().is_none() {
        return;
    }
    let joined: Vec<&[u8]> = headers
        .get_all(header::COOKIE)
        .iter()
        .map(HeaderValue::as_bytes)
        .collect();
    if let Ok(v) = HeaderValue::from_bytes(&joined.join(&b"; "[..])) {
        headers.insert(header::COOKIE, v);
    }
}

/// Whether a request asks for an HTTP/1.1 protocol upgrade (WebSocket and the like).
pub fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .any(|v| super::edge::has_token(v, "upgrade"))
}

/// Writes X-Forwarded-*, optional `Forwarded`, and `Via`.
pub fn add_forwarding(headers: &mut HeaderMap, f: &Forwarding<'_>) {
    // Room for every field below at once: the map of a connection's first request is
    // made to fit the client's fields, and each insert past its room rehashes the map
    // (a connection per request paid for two such growths).
    headers.reserve(3 + usize::from(f.forwarded) + usize::from(f.via.is_some()));
    if f.trusted {
        append_or_set(
            headers,
            X_FORWARDED_FOR,
            f.client_text.to_str().unwrap_or_default(),
            true,
        );
    } else {
        headers.insert(X_FORWARDED_FOR, f.client_text.clone());
    }
    if !(f.trusted && headers.contains_key(X_FORWARDED_PROTO)) {
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(f.proto));
    }
    if !(f.trusted && headers.contains_key(X_FORWARDED_HOST)) {
        match f.host {
            Some(h) => headers.insert(X_FORWARDED_HOST, h.clone()),
            None => headers.remove(X_FORWARDED_HOST),
        };
    }
    if f.forwarded {
        let mut elem = String::with_capacity(64);
        match f.client {
            IpAddr::V4(a) => {
                let _ = write!(elem, "for={a}");
            }
            IpAddr::V6(a) => {
                let _ = write!(elem, "for=\"[{a}]\"");
            }
        }
        let _ = write!(elem, ";proto={}", f.proto);
        if let Some(h) = f.host.and_then(|h| h.to_str().ok()) {
            let _ = write!(elem, ";host=\"{}\"", h.replace('"', ""));
        }
        append_or_set(headers, header::FORWARDED, &elem, f.trusted);
    }
    if let Some(via) = f.via {
        add_via(headers, via);
    }
}

/// Appends our `Via` entry after any the request already carries.
fn add_via(headers: &mut HeaderMap, via: &HeaderValue) {
    match headers.get(header::VIA).and_then(|v| v.to_str().ok()) {
        Some(prev) => {
            let joined = format!("{prev}, {}", via.to_str().unwrap_or_default());
            if let Ok(v) = HeaderValue::from_str(&joined) {
                headers.insert(header::VIA, v);
            }
        }
        None => {
            headers.insert(header::VIA, via.clone());
        }
    }
}

/// Appends `value` to a list header from a trusted peer, or replaces it otherwise.
fn append_or_set(headers: &mut HeaderMap, name: HeaderName, value: &str, trusted: bool) {
    let prev: Option<String> = if trusted {
        let all: Vec<&str> = headers
            .get_all(&name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        (!all.is_empty()).then(|| all.join(", "))
    } else {
        None
    };
    let joined = match prev {
        Some(p) => format!("{p}, {value}"),
        None => value.to_string(),
    };
    if let Ok(v) = HeaderValue::from_str(&joined) {
        headers.insert(name, v);
    }
}

/// The request's id: a well-formed incoming `X-Request-Id` is kept, else a new one is
/// generated (128 random bits as 32 hex digits) and set on the request.
pub fn request_id(headers: &mut HeaderMap) -> HeaderValue {
    if let Some(v) = incoming_request_id(headers) {
        return v;
    }
    let id = new_request_id();
    headers.insert(X_REQUEST_ID, id.clone());
    id
}

/// A well-formed `X-Request-Id` the request arrived with: 1 to 128 visible ASCII
/// characters. Others are replaced, so a log line cannot be forged or split by one.
pub fn incoming_request_id(headers: &HeaderMap) -> Option<HeaderValue> {
    let v = headers.get(X_REQUEST_ID)?;
    let b = v.as_bytes();
    (!b.is_empty() && b.len() <= 128 && b.iter().all(|c| c.is_ascii_graphic())).then(|| detached(v))
}

/// A copy of a request's value in an allocation of its own, for one kept while the
/// request is forwarded (its id, the access log's User-Agent; the host for routing is
/// kept as a `String` for the same reason, `proxy::host_of`). hyper reads
/// HTTP/1 requests into a buffer per connection and a request's values are views of
/// it; reading on while the request is served, it takes a new buffer (8 KiB) and the
/// old one lives as long as any view of it. With no view kept, the old buffer is freed
/// when the request is written upstream; one kept view held it, 8 KiB a request in
/// flight, until the response ended (gdb on the allocator's frees, docs/benchmarks.md).
pub fn detached(v: &HeaderValue) -> HeaderValue {
    let mut copy = HeaderValue::from_bytes(v.as_bytes()).unwrap_or_else(|_| v.clone());
    copy.set_sensitive(v.is_sensitive());
    copy
}

/// A copy of a value that HPACK must not add to its dynamic table. A request id is
/// new on every response: indexing it would evict a useful entry each time (callgrind:
/// about 3,600 instructions a response on HTTP/2). HTTP/1 ignores the flag.
pub fn unindexed(v: &HeaderValue) -> HeaderValue {
    let mut v = v.clone();
    v.set_sensitive(true);
    v
}

/// An IP address as header text, for X-Forwarded-For.
pub fn ip_text(ip: IpAddr) -> HeaderValue {
    let mut s = String::with_capacity(15);
    write_ip(ip, &mut s);
    HeaderValue::from_str(&s).unwrap_or_else(|_| HeaderValue::from_static("unknown"))
}

/// Writes `ip` as text. An IPv4 address is four numbers by `itoa`: `Ipv4Addr`'s
/// `Display` (the formatting machinery) cost more than the rest of accepting a
/// connection's bookkeeping, and was most of a rate-limit key's cost.
pub fn write_ip(ip: IpAddr, out: &mut String) {
    match ip {
        IpAddr::V4(a) => {
            let mut b = itoa::Buffer::new();
            for (i, o) in a.octets().iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                out.push_str(b.format(*o));
            }
        }
        IpAddr::V6(a) => {
            let _ = write!(out, "{a}");
        }
    }
}

/// A fresh random request id.
pub fn new_request_id() -> HeaderValue {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut n = fastrand::u128(..);
    let mut buf = [0u8; 32];
    for b in buf.iter_mut().rev() {
        *b = HEX[(n & 0xf) as usize];
        n >>= 4;
    }
    let mut v = HeaderValue::from_bytes(&buf).unwrap_or_else(|_| HeaderValue::from_static("0"));
    // Unique per request: not worth a place in an HTTP/2 upstream's HPACK table.
    v.set_sensitive(true);
    v
}

#[cfg(test)]
#[path = "headers_tests.rs"]
mod tests;

/// The client's address: the peer, or, when the peer is a trusted proxy, the
/// right-most `X-Forwarded-For` entry that is not itself a trusted proxy (the
/// left-most when all are; the peer when an entry is not an address).
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: impl Fn(IpAddr) -> bool) -> IpAddr {
    if !trusted(peer) {
        return peer;
    }
    let mut hops: Vec<&str> = Vec::new();
    for v in headers.get_all(X_FORWARDED_FOR) {
        let Ok(text) = v.to_str() else { return peer };
        hops.extend(text.split(',').map(str::trim).filter(|h| !h.is_empty()));
    }
    let mut client = peer;
    for hop in hops.iter().rev() {
        let Ok(ip) = hop.parse::<IpAddr>() else {
            return client;
        };
        client = ip;
        if !trusted(ip) {
            break;
        }
    }
    client
}
