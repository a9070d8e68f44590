//! `tls_passthrough` listeners: the upstream is chosen by the ClientHello's server name
//! (exact, wildcard, default) and the TLS session is the backend's own, which the
//! client proves by verifying each backend's certificate; unknown names, non-TLS bytes
//! and silent clients are closed.

use crate::*;
use gatehouse_test_support::certs::{Leaf, TestCa};
use gatehouse_test_support::{full, TlsClient, Upstream, UpstreamOptions};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// An HTTPS backend with its own certificate, answering every request with `body`.
async fn tls_backend(
    ca: &TestCa,
    file: &str,
    names: &[&str],
    body: &'static str,
) -> (Upstream, Leaf) {
    let leaf = ca.leaf(file, names);
    let opts = UpstreamOptions {
        tls: Some((leaf.cert_pem.clone(), leaf.key_pem.clone())),
        ..Default::default()
    };
    let up = Upstream::start(
        opts,
        move |_| async move { http::Response::new(full(body)) },
    )
    .await;
    (up, leaf)
}

struct Setup {
    gw: TestGateway,
    ca: TestCa,
    a: Leaf,
    b: Leaf,
}

/// Backends A (`a.example.com`) and B (`x.example.org`); SNI `a.example.com` goes to A,
/// `*.example.org` to B, and `default` (if any) is the default upstream.
async fn setup(default: Option<&str>) -> Setup {
    let ca = TestCa::new();
    let (up_a, a) = tls_backend(&ca, "a", &["a.example.com"], "backend-a").await;
    let (up_b, b) = tls_backend(&ca, "b", &["x.example.org", "y.example.org"], "backend-b").await;
    let default = default
        .map(|d| format!("upstream = \"{d}\"\n"))
        .unwrap_or_default();
    let cfg = listener(
        "tls",
        "tls_passthrough",
        &format!(
            "{default}timeouts = {{ header_read = \"5s\" }}\nsni = [\n  \
             {{ names = [\"a.example.com\"], upstream = \"a\" }},\n  \
             {{ names = [\"*.example.org\"], upstream = \"b\" }},\n]"
        ),
    ) + &upstream("a", &[up_a.addr], "")
        + &upstream("b", &[up_b.addr], "");
    Setup {
        gw: start(&cfg).await,
        ca,
        a,
        b,
    }
}

/// Connects through the listener with `name` as SNI, checks the certificate presented
/// is `expect`'s, and returns the body of a GET.
async fn fetch(s: &Setup, name: &str, expect: &Leaf) -> String {
    let mut tls = TlsClient::new(&s.ca.cert_pem)
        .connect(s.gw.addr("tls"), name)
        .await
        .unwrap();
    let presented = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
    assert_eq!(
        presented,
        expect.der(),
        "{name}: not the backend's own certificate"
    );
    let req = format!("GET / HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n");
    tls.write_all(req.as_bytes()).await.unwrap();
    let resp = read_to_close(&mut tls).await;
    resp.rsplit("\r\n\r\n").next().unwrap().to_string()
}

#[tokio::test]
async fn sni_picks_the_backend_and_tls_reaches_it_untouched() {
    let s = setup(None).await;
    assert_eq!(fetch(&s, "a.example.com", &s.a).await, "backend-a");
    assert_eq!(fetch(&s, "x.example.org", &s.b).await, "backend-b");
    assert_eq!(fetch(&s, "y.example.org", &s.b).await, "backend-b");
}

#[tokio::test]
async fn an_unknown_name_without_default_is_closed() {
    let s = setup(None).await;
    let r = TlsClient::new(&s.ca.cert_pem)
        .connect(s.gw.addr("tls"), "nobody.example.net")
        .await;
    assert!(r.is_err(), "a handshake completed for an unknown name");
    // `*.example.org` covers one label only.
    let r = TlsClient::new(&s.ca.cert_pem)
        .connect(s.gw.addr("tls"), "x.y.example.org")
        .await;
    assert!(r.is_err());
}

#[tokio::test]
async fn an_unknown_name_goes_to_the_default() {
    let s = setup(Some("a")).await;
    // A's certificate does not name `other.example.net`: a certificate error, not a
    // closed connection, shows that the handshake reached A.
    let r = TlsClient::new(&s.ca.cert_pem)
        .connect(s.gw.addr("tls"), "other.example.net")
        .await;
    let Err(e) = r else {
        panic!("A's certificate does not name other.example.net")
    };
    assert!(e.to_string().contains("certificate"), "{e}");
    assert_eq!(fetch(&s, "a.example.com", &s.a).await, "backend-a");
}

#[tokio::test]
async fn plain_text_is_closed() {
    let s = setup(Some("a")).await;
    let mut c = TcpStream::connect(s.gw.addr("tls")).await.unwrap();
    c.write_all(b"GET / HTTP/1.1\r\nHost: a.example.com\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(read_to_close(&mut c).await, "");
}

#[tokio::test]
async fn an_oversized_hello_is_closed() {
    let s = setup(Some("a")).await;
    let mut c = TcpStream::connect(s.gw.addr("tls")).await.unwrap();
    // A handshake record header announcing 16 KiB, then that much filler: the
    // ClientHello never completes within the buffer bound.
    let mut bytes = vec![0x16, 0x03, 0x01, 0x40, 0x00];
    bytes.extend(std::iter::repeat_n(0x01u8, 20 * 1024));
    let _ = c.write_all(&bytes).await;
    assert_eq!(read_to_close(&mut c).await, "");
}

#[tokio::test(start_paused = true)]
async fn a_client_that_never_says_hello_is_closed_at_the_header_read_timeout() {
    let s = setup(Some("a")).await;
    let mut c = TcpStream::connect(s.gw.addr("tls")).await.unwrap();
    let start = tokio::time::Instant::now();
    assert_eq!(read_to_close(&mut c).await, "");
    let waited = tokio::time::Instant::now() - start;
    assert!(
        waited >= Duration::from_secs(5) && waited < Duration::from_secs(6),
        "closed after {waited:?}"
    );
}
