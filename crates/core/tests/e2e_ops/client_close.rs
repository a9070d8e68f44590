//! A client that leaves before its answer is whole: the gateway notices (the close
//! watch, `http::rewind`) and gives the upstream request up, whether the request had a
//! body, the client only shut its sending side, it spoke TLS, or the answer was half
//! sent. Bytes a
//! client sends while its request waits (a pipelined request) are served after it.

use crate::*;
use gatehouse_test_support::{TestGateway, Upstream};
use std::sync::atomic::Ordering;

fn in_flight(gw: &TestGateway) -> usize {
    gw.gw.snapshot().upstreams["backend"].endpoints()[0]
        .in_flight
        .load(Ordering::Relaxed)
}

async fn given_up(gw: &TestGateway) {
    eventually("the gateway to give the request up", || {
        let n = in_flight(gw);
        async move { (n == 0).then_some(()) }
    })
    .await;
}

/// An upstream that reads each request's whole body, then waits at `gate` if the path
/// is `/held`, and answers with the path.
async fn held_upstream(gate: &Gate) -> Upstream {
    let gate = gate.clone();
    Upstream::start(Default::default(), move |req: http::Request<_>| {
        let gate = gate.clone();
        async move {
            let path = req.uri().path().to_string();
            http_body_util::BodyExt::collect(req.into_body())
                .await
                .unwrap();
            if path == "/held" {
                gate.pass().await;
            }
            http::Response::new(full(path))
        }
    })
    .await
}

/// A request sent on a raw connection and held at its upstream's gate. Keep it whole
/// while the test runs: its gateway and upstream end when dropped.
struct Held {
    gate: Gate,
    up: Upstream,
    gw: TestGateway,
    s: TcpStream,
}

/// Sends `raw` (a request to `/held`) through a gateway to [`held_upstream`] and waits
/// until the upstream holds it.
async fn hold(raw: &[u8]) -> Held {
    let gate = Gate::default();
    let up = held_upstream(&gate).await;
    let gw = TestGateway::start(&config(up.addr, "", "")).await;
    let mut s = TcpStream::connect(gw.addr("web")).await.unwrap();
    s.write_all(raw).await.unwrap();
    gate.arrived().await;
    assert_eq!(in_flight(&gw), 1);
    Held { gate, up, gw, s }
}

#[tokio::test]
async fn a_client_leaving_after_its_body_has_its_request_given_up() {
    let h = hold(b"POST /held HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello").await;
    drop(h.s);
    given_up(&h.gw).await;
}

#[tokio::test]
async fn a_client_shutting_its_sending_side_has_its_request_given_up() {
    let mut h = hold(b"GET /held HTTP/1.1\r\nHost: a\r\n\r\n").await;
    // As NGINX does (`proxy_ignore_client_abort off`): a client that closed its side
    // before its answer is taken to have left.
    h.s.shutdown().await.unwrap();
    given_up(&h.gw).await;
    let mut rest = Vec::new();
    h.s.read_to_end(&mut rest).await.unwrap();
    assert!(rest.is_empty(), "{}", String::from_utf8_lossy(&rest));
}

#[tokio::test]
async fn a_tls_client_closing_before_its_answer_has_its_request_given_up() {
    use gatehouse_test_support::certs::TestCa;
    use gatehouse_test_support::client::TlsClient;
    let ca = TestCa::new();
    let leaf = ca.leaf("gw", &["localhost"]);
    let gate = Gate::default();
    let up = held_upstream(&gate).await;
    let plain = "name = \"web\"\nlisten = \"127.0.0.1:0\"\n";
    let tls = format!(
        "{plain}protocol = \"https\"\n\
         tls = {{ certificates = [{{ cert = \"{}\", key = \"{}\" }}] }}\n",
        leaf.cert.display(),
        leaf.key.display()
    );
    let gw = TestGateway::start(&config(up.addr, "", "").replace(plain, &tls)).await;
    let client = TlsClient {
        alpn: &["http/1.1"],
        ..TlsClient::new(&ca.cert_pem)
    };
    let mut s = client.connect(gw.addr("web"), "localhost").await.unwrap();
    s.write_all(b"GET /held HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    gate.arrived().await;
    assert_eq!(in_flight(&gw), 1);
    // Its close_notify, then its FIN: the end of stream comes through TLS.
    s.shutdown().await.unwrap();
    given_up(&gw).await;
}

#[tokio::test]
async fn an_answer_streaming_to_a_client_that_left_is_given_up() {
    let (tx, body) = gatehouse_test_support::upstream::channel_body();
    let body = std::sync::Mutex::new(Some(body));
    let up = Upstream::start(Default::default(), move |_req| {
        let body = body.lock().unwrap().take().unwrap();
        async move { http::Response::new(body) }
    })
    .await;
    let gw = TestGateway::start(&config(up.addr, "", "")).await;
    let mut s = TcpStream::connect(gw.addr("web")).await.unwrap();
    s.write_all(b"GET /events HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    tx.send(bytes::Bytes::from_static(b"first-event"))
        .await
        .unwrap();
    read_until(&mut s, &mut Vec::new(), b"first-event").await;
    // The stream is quiet: nothing is written that could fail on the closed socket.
    drop(s);
    tokio::time::timeout(Duration::from_secs(10), tx.closed())
        .await
        .expect("the upstream's stream to be dropped");
}

#[tokio::test]
async fn bytes_sent_while_a_request_waits_are_served_after_it() {
    let Held {
        gate,
        up,
        gw: _gw,
        mut s,
    } = hold(b"GET /held HTTP/1.1\r\nHost: a\r\n\r\n").await;
    // Longer than what the close watch reads at a time: read partly ahead, partly by
    // hyper.
    let pad = "p".repeat(200);
    let next = format!(
        "POST /next HTTP/1.1\r\nHost: a\r\nX-Pad: {pad}\r\nContent-Length: 4\r\n\
         Connection: close\r\n\r\nbody"
    );
    s.write_all(next.as_bytes()).await.unwrap();
    gate.release();
    let mut all = Vec::new();
    s.read_to_end(&mut all).await.unwrap();
    let all = String::from_utf8_lossy(&all);
    assert_eq!(all.matches("HTTP/1.1 200 OK").count(), 2, "{all}");
    let (first, second) = (all.find("/held").unwrap(), all.find("/next").unwrap());
    assert!(first < second, "{all}");
    assert_eq!(up.count(), 2);
}
