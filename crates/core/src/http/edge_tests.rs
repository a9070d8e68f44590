use super::*;
use crate::error::ErrorKind;

/// A request as hyper would hand it over: method, target, version, header lines.
fn req(method: &str, target: &str, version: Version, headers: &[(&str, &str)]) -> Request<()> {
    let mut r = Request::builder()
        .method(method)
        .uri(target)
        .version(version)
        .body(())
        .unwrap();
    for (k, v) in headers {
        r.headers_mut().append(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_bytes(v.as_bytes()).unwrap(),
        );
    }
    r
}

fn h1(method: &str, target: &str, headers: &[(&str, &str)]) -> Request<()> {
    req(method, target, Version::HTTP_11, headers)
}

fn kind(r: &mut Request<()>) -> Option<ErrorKind> {
    check(r).err().map(|e| e.kind)
}

const HOST: &[(&str, &str)] = &[("host", "a.example")];

#[test]
fn a_plain_request_passes_untouched() {
    let mut r = h1("GET", "/x?y=1", HOST);
    assert_eq!(check(&mut r).unwrap(), Verdict::Forward);
    assert_eq!(r.headers().len(), 1);
    let mut r = req("GET", "/", Version::HTTP_10, &[]);
    assert_eq!(
        check(&mut r).unwrap(),
        Verdict::Forward,
        "HTTP/1.0 needs no Host"
    );
}

#[test]
fn connect_and_trace_are_not_served() {
    for m in ["CONNECT", "TRACE"] {
        let target = if m == "CONNECT" { "a.example:443" } else { "/" };
        let mut r = h1(m, target, HOST);
        assert_eq!(kind(&mut r), Some(ErrorKind::MethodNotAllowed), "{m}");
    }
    let mut r = req("CONNECT", "https://a.example/", Version::HTTP_2, &[]);
    assert_eq!(kind(&mut r), Some(ErrorKind::MethodNotAllowed));
}

#[test]
fn host_must_be_one_valid_host() {
    let mut none = h1("GET", "/", &[]);
    assert_eq!(kind(&mut none), Some(ErrorKind::BadRequest));
    let mut two = h1("GET", "/", &[("host", "a"), ("host", "a")]);
    assert_eq!(kind(&mut two), Some(ErrorKind::BadRequest));
    for bad in [
        "",
        "a b",
        "a@b",
        "[::1",
        "[::1]x",
        "[zz]",
        "a:xx",
        "a:65536",
        "a:123456",
        "a/b",
        "a\\b",
        "a:1:2",
        "%zz",
        "a%2",
        "é.example",
    ] {
        let mut r = h1("GET", "/", &[("host", bad)]);
        assert_eq!(kind(&mut r), Some(ErrorKind::BadRequest), "{bad:?}");
    }
    for good in [
        "a",
        "A.Example.",
        "a.example:8080",
        "a:",
        "10.0.0.1:80",
        "[::1]",
        "[::1]:443",
        "x%41y",
        "a-b_c~d",
        "a!$&'()*+,;=b",
        "[2001:db8::1]:65535",
    ] {
        let mut r = h1("GET", "/", &[("host", good)]);
        assert_eq!(check(&mut r).unwrap(), Verdict::Forward, "{good:?}");
    }
}

#[test]
fn request_targets_other_than_origin_form() {
    let mut star = h1("GET", "*", HOST);
    assert_eq!(kind(&mut star), Some(ErrorKind::BadRequest));
    let mut options = h1("OPTIONS", "*", HOST);
    assert_eq!(check(&mut options).unwrap(), Verdict::Options);
    let mut authority = h1("GET", "a.example:80", HOST);
    assert_eq!(kind(&mut authority), Some(ErrorKind::BadRequest));
    for bad in ["ftp://a.example/x", "http://u@a.example/x", "http://a b/"] {
        let Ok(uri) = bad.parse::<http::Uri>() else {
            continue;
        };
        let mut r = h1("GET", "/", HOST);
        *r.uri_mut() = uri;
        assert_eq!(kind(&mut r), Some(ErrorKind::BadRequest), "{bad}");
    }
}

#[test]
fn absolute_form_names_the_host() {
    let mut r = h1("GET", "http://b.example:81/x", &[("host", "c.example")]);
    assert_eq!(check(&mut r).unwrap(), Verdict::Forward);
    assert_eq!(r.headers()["host"], "b.example:81");
    let mut missing = h1("GET", "http://b.example/x", &[]);
    assert_eq!(
        kind(&mut missing),
        Some(ErrorKind::BadRequest),
        "HTTP/1.1 needs a Host"
    );
    let mut https = h1("GET", "HTTPS://b.example/x", &[("host", "b.example")]);
    assert_eq!(check(&mut https).unwrap(), Verdict::Forward);
}

#[test]
fn http2_host_must_agree_with_the_authority() {
    let mut same = req(
        "GET",
        "https://a.example/x",
        Version::HTTP_2,
        &[("host", "A.example")],
    );
    assert_eq!(check(&mut same).unwrap(), Verdict::Forward);
    let mut other = req(
        "GET",
        "https://a.example/x",
        Version::HTTP_2,
        &[("host", "b.example")],
    );
    assert_eq!(kind(&mut other), Some(ErrorKind::BadRequest));
    let mut none = req("GET", "https://a.example/x", Version::HTTP_2, &[]);
    assert_eq!(check(&mut none).unwrap(), Verdict::Forward);
    assert!(
        none.headers().get("host").is_none(),
        "HTTP/2 keeps :authority only"
    );
}

#[test]
fn transfer_codings() {
    let te = |v: &[&str]| {
        let mut headers: Vec<(&str, &str)> = vec![("host", "a")];
        headers.extend(v.iter().map(|v| ("transfer-encoding", *v)));
        let mut r = h1("POST", "/", &headers);
        kind(&mut r)
    };
    assert_eq!(te(&["chunked"]), None);
    assert_eq!(te(&[" Chunked "]), None);
    assert_eq!(te(&["chunked, chunked"]), Some(ErrorKind::BadRequest));
    assert_eq!(te(&["chunked", "chunked"]), Some(ErrorKind::BadRequest));
    assert_eq!(te(&["chunked, gzip"]), Some(ErrorKind::BadRequest));
    assert_eq!(te(&["gzip"]), Some(ErrorKind::BadRequest));
    assert_eq!(te(&["gzip, chunked"]), Some(ErrorKind::NotImplemented));
    assert_eq!(te(&["foo", "chunked"]), Some(ErrorKind::NotImplemented));
    assert_eq!(te(&[","]), Some(ErrorKind::BadRequest));
}

#[test]
fn expectations() {
    let mut ok = h1("PUT", "/", &[("host", "a"), ("expect", "100-Continue")]);
    assert_eq!(check(&mut ok).unwrap(), Verdict::Forward);
    let mut other = h1("PUT", "/", &[("host", "a"), ("expect", "something")]);
    assert_eq!(kind(&mut other), Some(ErrorKind::ExpectationFailed));
    let mut old = req("PUT", "/", Version::HTTP_10, &[("expect", "something")]);
    assert_eq!(check(&mut old).unwrap(), Verdict::Forward);
    assert!(
        old.headers().get("expect").is_none(),
        "HTTP/1.0 expectations are ignored"
    );
}

#[test]
fn h2c_upgrades_go_on_as_plain_requests() {
    let mut r = h1(
        "GET",
        "/",
        &[
            ("host", "a"),
            ("connection", "Upgrade, HTTP2-Settings"),
            ("upgrade", "h2c"),
            ("http2-settings", "AAMAAABkAARAAAAAAAIAAAAA"),
        ],
    );
    assert_eq!(check(&mut r).unwrap(), Verdict::Forward);
    assert!(r.headers().get("upgrade").is_none());
    assert!(r.headers().get("http2-settings").is_none());
    let mut both = h1(
        "GET",
        "/",
        &[
            ("host", "a"),
            ("connection", "upgrade"),
            ("upgrade", "H2C, websocket"),
        ],
    );
    check(&mut both).unwrap();
    assert_eq!(both.headers()["upgrade"], "websocket");
}

#[test]
fn max_forwards_on_options() {
    let mf = |v: &str| {
        let mut r = h1("OPTIONS", "/x", &[("host", "a"), ("max-forwards", v)]);
        let verdict = check(&mut r).map_err(|e| e.kind);
        (verdict, r.headers().get("max-forwards").cloned())
    };
    assert_eq!(mf("0").0, Ok(Verdict::Options));
    let (v, left) = mf("3");
    assert_eq!(v, Ok(Verdict::Forward));
    assert_eq!(left.unwrap(), "2");
    assert_eq!(mf("x").0, Err(ErrorKind::BadRequest));
    assert_eq!(mf("99999999999999999999999").0, Ok(Verdict::Forward));
    let mut get = h1("GET", "/", &[("host", "a"), ("max-forwards", "0")]);
    assert_eq!(
        check(&mut get).unwrap(),
        Verdict::Forward,
        "only OPTIONS and TRACE"
    );
}

#[test]
fn a_client_closes_by_any_connection_line_or_by_http10_without_keep_alive() {
    let two_lines = [("connection", "te"), ("connection", "x,\tClose ")];
    assert!(client_closes(&h1("GET", "/", &two_lines)));
    assert!(!client_closes(&h1("GET", "/", &[("connection", "closed")])));
    assert!(!client_closes(&h1("GET", "/", HOST)));
    assert!(client_closes(&req("GET", "/", Version::HTTP_10, &[])));
    let ka = [("connection", "x"), ("connection", "Keep-Alive")];
    assert!(!client_closes(&req("GET", "/", Version::HTTP_10, &ka)));
}
