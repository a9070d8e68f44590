use super::*;
use http::header::{self, HeaderMap, HeaderValue};

fn map(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut m = HeaderMap::new();
    for (k, v) in pairs {
        m.append(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    m
}

#[test]
fn strips_hop_by_hop_and_connection_named() {
    let mut h = map(&[
        ("connection", "keep-alive, x-secret"),
        ("keep-alive", "timeout=5"),
        ("x-secret", "1"),
        ("transfer-encoding", "chunked"),
        ("te", "gzip"),
        ("upgrade", "websocket"),
        ("x-keep", "yes"),
    ]);
    strip_hop_by_hop(&mut h, false);
    assert_eq!(h.len(), 1, "{h:?}");
    assert_eq!(h["x-keep"], "yes");
}

#[test]
fn keeps_te_trailers_for_grpc() {
    let mut h = map(&[("te", "trailers")]);
    strip_hop_by_hop(&mut h, false);
    assert_eq!(h["te"], "trailers");
}

#[test]
fn keeps_upgrade_pair_when_upgrading() {
    let mut h = map(&[("connection", "Upgrade"), ("upgrade", "websocket")]);
    assert!(is_upgrade(&h));
    strip_hop_by_hop(&mut h, true);
    assert_eq!(h["connection"], "upgrade");
    assert_eq!(h["upgrade"], "websocket");
}

fn fwd<'a>(trusted: bool, host: Option<&'a HeaderValue>, via: &'a HeaderValue) -> Forwarding<'a> {
    static TEXT: std::sync::OnceLock<HeaderValue> = std::sync::OnceLock::new();
    Forwarding {
        client: "10.0.0.9".parse().unwrap(),
        client_text: TEXT.get_or_init(|| ip_text("10.0.0.9".parse().unwrap())),
        trusted,
        proto: "https",
        host,
        via: Some(via),
        forwarded: true,
    }
}

#[test]
fn untrusted_peer_headers_are_replaced() {
    let via = HeaderValue::from_static("1.1 gatehouse");
    let host = HeaderValue::from_static("example.com");
    let mut h = map(&[
        ("x-forwarded-for", "6.6.6.6"),
        ("x-forwarded-proto", "http"),
        ("forwarded", "for=6.6.6.6"),
    ]);
    add_forwarding(&mut h, &fwd(false, Some(&host), &via));
    assert_eq!(h["x-forwarded-for"], "10.0.0.9");
    assert_eq!(h["x-forwarded-proto"], "https");
    assert_eq!(h["x-forwarded-host"], "example.com");
    assert_eq!(
        h["forwarded"],
        "for=10.0.0.9;proto=https;host=\"example.com\""
    );
    assert_eq!(h["via"], "1.1 gatehouse");
}

#[test]
fn trusted_peer_headers_are_appended() {
    let via = HeaderValue::from_static("1.1 gatehouse");
    let mut h = map(&[
        ("x-forwarded-for", "1.1.1.1"),
        ("x-forwarded-for", "2.2.2.2"),
        ("x-forwarded-proto", "http"),
        ("via", "1.0 edge"),
    ]);
    add_forwarding(&mut h, &fwd(true, None, &via));
    assert_eq!(h["x-forwarded-for"], "1.1.1.1, 2.2.2.2, 10.0.0.9");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(h["via"], "1.0 edge, 1.1 gatehouse");
}

#[test]
fn ipv6_forwarded_is_quoted() {
    let via = HeaderValue::from_static("1.1 g");
    let mut h = HeaderMap::new();
    let text = ip_text("::1".parse().unwrap());
    let f = Forwarding {
        client: "::1".parse().unwrap(),
        client_text: &text,
        trusted: false,
        proto: "http",
        host: None,
        via: Some(&via),
        forwarded: true,
    };
    add_forwarding(&mut h, &f);
    assert_eq!(h["forwarded"], "for=\"[::1]\";proto=http");
}

#[test]
fn request_id_kept_or_generated() {
    let mut h = map(&[("x-request-id", "abc-123")]);
    assert_eq!(request_id(&mut h), "abc-123");
    let mut h = map(&[("x-request-id", "bad id with spaces")]);
    let id = request_id(&mut h);
    assert_eq!(id.len(), 32);
    assert_eq!(h["x-request-id"], id);
    assert_ne!(new_request_id(), new_request_id());
    let _ = header::VIA;
}

#[test]
fn request_ids_are_kept_out_of_hpack_tables() {
    // A fresh id per request would evict a useful HPACK entry on every response.
    let id = new_request_id();
    assert!(id.is_sensitive());
    let passed = HeaderValue::from_static("abc");
    let copy = unindexed(&passed);
    assert!(copy.is_sensitive() && !passed.is_sensitive());
    assert_eq!(copy, passed);
}

#[test]
fn http2_cookie_fields_are_joined_for_http1() {
    let mut h = map(&[("cookie", "a=1"), ("cookie", "b=2"), ("cookie", "c=3")]);
    join_cookies(&mut h);
    assert_eq!(h.get_all("cookie").iter().count(), 1);
    assert_eq!(h["cookie"], "a=1; b=2; c=3");
    let mut one = map(&[("cookie", "a=1")]);
    join_cookies(&mut one);
    assert_eq!(one["cookie"], "a=1");
}

#[test]
fn connection_cannot_drop_framing_or_the_host() {
    let mut h = map(&[
        ("connection", "content-length, host, x-a"),
        ("content-length", "3"),
        ("host", "a"),
        ("x-a", "1"),
    ]);
    strip_hop_by_hop(&mut h, false);
    assert_eq!(h["content-length"], "3");
    assert_eq!(h["host"], "a");
    assert!(h.get("x-a").is_none());
}

/// Found by the `headers` fuzz target: a field named in a second Connection line
/// survived.
#[test]
fn every_connection_line_names_fields_to_drop() {
    let mut h = map(&[
        ("connection", "keep-alive"),
        ("connection", "x-second"),
        ("x-second", "1"),
        ("x-kept", "1"),
    ]);
    strip_hop_by_hop(&mut h, false);
    assert!(h.get("x-second").is_none(), "{h:?}");
    assert_eq!(h["x-kept"], "1");
}

/// A kept request value is a copy in its own allocation, not a view of the buffer it
/// was read into (hyper's, which it could then not reuse), with its sensitivity.
#[test]
fn a_detached_value_does_not_share_the_read_buffer() {
    let read = bytes::Bytes::copy_from_slice(b"GET / HTTP/1.1\r\nuser-agent: curl/8\r\n");
    let view = HeaderValue::from_maybe_shared(read.slice(28..34)).unwrap();
    assert_eq!(view, "curl/8");
    let copy = detached(&view);
    assert_eq!(copy, view);
    assert_ne!(copy.as_bytes().as_ptr(), view.as_bytes().as_ptr());
    let mut secret = view.clone();
    secret.set_sensitive(true);
    assert!(detached(&secret).is_sensitive());
    assert!(!copy.is_sensitive());
}
