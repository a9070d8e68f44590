//! The upstream response rules on any response head (parsed with httparse, as hyper's
//! client does): a verdict, never a panic; a response that passes has at most one
//! Content-Length, holding no list.
#![no_main]

use gatehouse_core::http::response_rules;
use http::header;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (offer, head) = data.split_at(data.len().min(1));
    let mut hs = [httparse::EMPTY_HEADER; 64];
    let mut r = httparse::Response::new(&mut hs);
    if r.parse(head).is_err() {
        return;
    }
    let Some(status) = r.code.and_then(|c| http::StatusCode::from_u16(c).ok()) else {
        return;
    };
    let mut map = http::HeaderMap::new();
    for h in r.headers.iter() {
        if let (Ok(n), Ok(v)) = (
            http::HeaderName::from_bytes(h.name.as_bytes()),
            http::HeaderValue::from_bytes(h.value),
        ) {
            map.append(n, v);
        }
    }
    let offered = (offer.first().is_some_and(|b| b & 1 == 1))
        .then(|| http::HeaderValue::from_static("websocket"));
    // The reader's framing rules, then the exchange's check, as a response meets them.
    let verdict =
        response_rules::framing_fields(&response_rules::Fields::of(&map)).and_then(|_| {
            response_rules::check(status, http::Version::HTTP_11, &map, offered.as_ref())
        });
    if verdict.is_ok() {
        let lengths: Vec<_> = map.get_all(header::CONTENT_LENGTH).iter().collect();
        assert!(lengths.len() <= 1);
        assert!(lengths.iter().all(|v| !v.as_bytes().contains(&b',')));
    }
});
