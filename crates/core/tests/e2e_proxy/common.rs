//! Pieces shared by the e2e_proxy modules: config text and small body helpers.

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;

/// Every test config starts with this: the access log off, so big and many requests do
/// not flood the test output.
pub const QUIET: &str = "[access_log]\nenabled = false\n";

/// A plain `[[listeners]]` table named `web`.
pub fn plain_listener() -> String {
    "[[listeners]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\n".to_string()
}

/// An https `[[listeners]]` table named `web` with one certificate.
pub fn tls_listener(leaf: &gatehouse_test_support::certs::Leaf) -> String {
    format!(
        "[[listeners]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\nprotocol = \"https\"\n\
         [listeners.tls]\ncertificates = [{{ cert = \"{}\", key = \"{}\" }}]\n",
        leaf.cert.display(),
        leaf.key.display()
    )
}

/// A catch-all route to `backend`, an upstream at `addr`; `extra` goes in the upstream
/// table (protocol, tls).
pub fn route_to(addr: std::net::SocketAddr, extra: &str) -> String {
    format!(
        "[[routes]]\nname = \"all\"\nupstream = \"backend\"\n\n\
         [[upstreams]]\nname = \"backend\"\nendpoints = [\"{addr}\"]\n{extra}\n"
    )
}

/// Reads a whole body.
pub async fn read(body: Incoming) -> Bytes {
    body.collect().await.unwrap().to_bytes()
}

/// `n` bytes of a pattern that is not all zeros, so a swapped or dropped chunk shows.
pub fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}
