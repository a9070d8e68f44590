//! HTTP/2 at the edge: an invalid connection preface is answered with GOAWAY
//! (PROTOCOL_ERROR) and a clean close, over TLS (ALPN h2) and on a plain listener past
//! the preface's request line; `Expect: 100-continue` gets its `100` once the upstream
//! reads the body, and none when the request is answered without it.

use bytes::Bytes;
use gatehouse_test_support::certs::TestCa;
use gatehouse_test_support::{read_to_close, TestGateway, TlsClient, Upstream, UpstreamOptions};
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// The GOAWAY frames in what a server wrote: (last stream id, error code).
fn goaways(bytes: &[u8]) -> Vec<(u32, u32)> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while rest.len() >= 9 {
        let len = u32::from_be_bytes([0, rest[0], rest[1], rest[2]]) as usize;
        if rest.len() < 9 + len {
            break;
        }
        let payload = &rest[9..9 + len];
        if rest[3] == 0x7 && len >= 8 {
            let last = u32::from_be_bytes(payload[..4].try_into().unwrap()) & 0x7fff_ffff;
            let code = u32::from_be_bytes(payload[4..8].try_into().unwrap());
            out.push((last, code));
        }
        rest = &rest[9 + len..];
    }
    out
}

const PROTOCOL_ERROR: u32 = 0x1;

#[tokio::test]
async fn an_invalid_preface_over_tls_gets_goaway_then_a_clean_close() {
    let ca = TestCa::new();
    let leaf = ca.leaf("h2", &["localhost"]);
    let toml = format!(
        "[access_log]\nenabled = false\n[[listeners]]\nname = \"tls\"\nlisten = \"127.0.0.1:0\"\nprotocol = \"https\"\n\
         [listeners.tls]\ncertificates = [{{ cert = \"{}\", key = \"{}\" }}]\n\
         [[routes]]\nname = \"ok\"\nrespond = {{ status = 200, body = \"ok\" }}\n",
        leaf.cert.display(),
        leaf.key.display()
    );
    let gw = TestGateway::start(&toml).await;
    let tls = TlsClient {
        alpn: &["h2"],
        ..TlsClient::new(&ca.cert_pem)
    };
    let mut s = tls.connect(gw.addr("tls"), "localhost").await.unwrap();
    s.write_all(b"INVALID CONNECTION PREFACE\r\n\r\n")
        .await
        .unwrap();
    let got = read_bytes_to_close(&mut s).await;
    assert_eq!(goaways(&got), [(0, PROTOCOL_ERROR)], "{got:?}");
}

#[tokio::test]
async fn a_broken_h2c_preface_gets_goaway_and_http1_stays_http1() {
    let toml =
        "[access_log]\nenabled = false\n[[listeners]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\n\
                [[routes]]\nname = \"ok\"\nrespond = { status = 200, body = \"ok\" }\n";
    let gw = TestGateway::start(toml).await;
    let mut s = TcpStream::connect(gw.addr("web")).await.unwrap();
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n")
        .await
        .unwrap();
    let got = read_bytes_to_close(&mut s).await;
    assert_eq!(goaways(&got), [(0, PROTOCOL_ERROR)], "{got:?}");
    // A PRI that goes another way is an HTTP/1 request (and a bad one).
    let mut s = TcpStream::connect(gw.addr("web")).await.unwrap();
    s.write_all(b"PRI * HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    let got = read_to_close(&mut s).await;
    assert!(got.starts_with("HTTP/1.1 400"), "{got}");
}

async fn read_bytes_to_close<S: tokio::io::AsyncRead + Unpin>(s: &mut S) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let mut out = Vec::new();
    match s.read_to_end(&mut out).await {
        Ok(_) => out,
        Err(e) => panic!("the connection ended with {e} instead of a close, after {out:?}"),
    }
}

/// An upstream that answers with the number of body bytes it read.
async fn counting_upstream() -> Upstream {
    Upstream::start(UpstreamOptions::default(), |req| async move {
        let n = req
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes().len())
            .unwrap_or(0);
        http::Response::new(gatehouse_test_support::full(n.to_string()))
    })
    .await
}

async fn h2c(addr: std::net::SocketAddr) -> h2::client::SendRequest<Bytes> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (tx, conn) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    tx
}

#[tokio::test]
async fn expect_100_continue_over_h2_gets_its_100_before_the_body() {
    let up = counting_upstream().await;
    let toml = format!(
        "[access_log]\nenabled = false\n[[listeners]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\n\
         [[routes]]\nname = \"all\"\nupstream = \"b\"\nmax_body_size = \"1KiB\"\n\
         [[upstreams]]\nname = \"b\"\nendpoints = [\"{}\"]\n",
        up.addr
    );
    let gw = TestGateway::start(&toml).await;
    let mut tx = h2c(gw.addr("web")).await.ready().await.unwrap();
    let req = Request::post(format!("http://{}/up", gw.addr("web")))
        .header("expect", "100-continue")
        .header("content-length", "5")
        .body(())
        .unwrap();
    let (mut resp, mut body) = tx.send_request(req, false).unwrap();
    // No body byte is sent before the 100 arrives.
    let cont = std::future::poll_fn(|cx| resp.poll_informational(cx))
        .await
        .expect("no informational response")
        .unwrap();
    assert_eq!(cont.status(), StatusCode::CONTINUE);
    body.send_data(Bytes::from_static(b"hello"), true).unwrap();
    let resp = resp.await.unwrap();
    assert_eq!(resp.status(), 200);
    let mut got = resp.into_body();
    let data = got.data().await.unwrap().unwrap();
    assert_eq!(&data[..], b"5");

    // Refused on its head (over the body limit): the final status, and no 100.
    let req = Request::post(format!("http://{}/up", gw.addr("web")))
        .header("expect", "100-continue")
        .header("content-length", "5000")
        .body(())
        .unwrap();
    let (mut resp, _body) = tx.send_request(req, false).unwrap();
    let first = std::future::poll_fn(|cx| resp.poll_informational(cx)).await;
    assert!(first.is_none(), "a 100 before a refusal: {first:?}");
    assert_eq!(resp.await.unwrap().status(), 413);
}

/// The HTTP/2 forms of the refusals: CONNECT is 405, a Host that names another
/// authority than `:authority` is 400; neither reaches the upstream.
#[tokio::test]
async fn http2_connect_and_a_mismatched_host_are_refused() {
    let up = counting_upstream().await;
    let toml = format!(
        "[access_log]\nenabled = false\n[[listeners]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\n\
         [[routes]]\nname = \"all\"\nupstream = \"b\"\n\
         [[upstreams]]\nname = \"b\"\nendpoints = [\"{}\"]\n",
        up.addr
    );
    let gw = TestGateway::start(&toml).await;
    let mut tx = h2c(gw.addr("web")).await.ready().await.unwrap();
    let connect = Request::connect("a.example:443").body(()).unwrap();
    let (resp, _) = tx.send_request(connect, true).unwrap();
    assert_eq!(resp.await.unwrap().status(), 405);
    let mut tx = tx.ready().await.unwrap();
    let other = Request::get(format!("http://{}/x", gw.addr("web")))
        .header("host", "b.example")
        .body(())
        .unwrap();
    let (resp, _) = tx.send_request(other, true).unwrap();
    assert_eq!(resp.await.unwrap().status(), 400);
    assert_eq!(up.count(), 0);
}
