//! The proxy header rules on any set of header lines (`name: value`): hop-by-hop
//! stripping, the forwarding headers, cookie joining and the request id. Never a panic,
//! and what must be gone is gone.
#![no_main]

use gatehouse_core::http::headers::{self, Forwarding};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use std::net::{IpAddr, Ipv4Addr};

fn map(data: &[u8]) -> HeaderMap {
    let mut m = HeaderMap::new();
    for line in data.split(|b| *b == b'\n') {
        let Some(i) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let (n, v) = (&line[..i], line[i + 1..].trim_ascii());
        if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(n), HeaderValue::from_bytes(v)) {
            m.append(n, v);
        }
    }
    m
}

fuzz_target!(|data: &[u8]| {
    let (first, rest) = data.split_at(data.len().min(1));
    let upgrade = first.first().is_some_and(|b| b & 1 == 1);
    let mut h = map(rest);
    let named: Vec<HeaderName> = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|s| s.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .filter(|n| n != header::CONTENT_LENGTH && n != header::HOST)
        .filter(|n| !(upgrade && n == header::UPGRADE))
        .collect();
    headers::strip_hop_by_hop(&mut h, upgrade);
    for gone in [header::TRANSFER_ENCODING, header::TRAILER, header::PROXY_AUTHORIZATION] {
        assert!(!h.contains_key(&gone), "{gone} survived");
    }
    for n in &named {
        if n != header::CONNECTION && n != header::TE {
            assert!(!h.contains_key(n), "{n}, named in Connection, survived");
        }
    }
    let client = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
    let text = headers::ip_text(client);
    let host = h.get(header::HOST).cloned();
    let via = HeaderValue::from_static("1.1 gatehouse");
    for trusted in [false, true] {
        let mut m = h.clone();
        let f = Forwarding {
            client,
            client_text: &text,
            trusted,
            proto: "https",
            host: host.as_ref(),
            via: Some(&via),
            forwarded: true,
        };
        headers::add_forwarding(&mut m, &f);
        assert!(m.contains_key(headers::X_FORWARDED_FOR));
        if !trusted {
            assert_eq!(m.get_all(headers::X_FORWARDED_FOR).iter().count(), 1);
        }
        headers::join_cookies(&mut m);
        assert!(m.get_all(header::COOKIE).iter().count() <= 1);
        let id = headers::request_id(&mut m);
        assert!(!id.is_empty() && id.len() <= 128);
    }
});
