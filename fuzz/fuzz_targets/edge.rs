//! The edge's request rules on any request head: the bytes are parsed as hyper parses
//! them (httparse, then the `http` types), and `edge::check` either refuses the request
//! or lets it on, never panics; what it lets on has one valid Host (or none on HTTP/1.0
//! and HTTP/2) and no h2c upgrade. hyper's own bare 400 is also fed to the rewrite that
//! replaces it.
#![no_main]

use gatehouse_core::http::{bare_reply, edge};
use http::header;
use libfuzzer_sys::fuzz_target;

fn request(data: &[u8]) -> Option<http::Request<()>> {
    let mut hs = [httparse::EMPTY_HEADER; 64];
    let mut r = httparse::Request::new(&mut hs);
    r.parse(data).ok()?;
    let mut b = http::Request::builder()
        .method(r.method?)
        .uri(r.path?)
        .version(match r.version? {
            0 => http::Version::HTTP_10,
            _ => http::Version::HTTP_11,
        });
    for h in r.headers.iter() {
        b = b.header(h.name, h.value);
    }
    b.body(()).ok()
}

fuzz_target!(|data: &[u8]| {
    let _ = bare_reply::replace(data);
    let Some(mut req) = request(data) else { return };
    if edge::check(&mut req).is_ok() {
        let hosts = req.headers().get_all(header::HOST).iter().count();
        assert!(hosts <= 1);
        if let Some(h) = req.headers().get(header::HOST) {
            assert!(edge::valid_host(h.as_bytes()), "{h:?} let on");
        }
        assert!(!req.headers().contains_key("http2-settings"));
        for v in req.headers().get_all(header::UPGRADE) {
            assert!(!edge::has_token(v, "h2c"));
        }
    }
});
