//! Streaming without buffering, proven by causality rather than timing: the upstream
//! sends an event, then waits for the test's signal before sending the next; the test
//! gives that signal only once the client holds the first event. A gateway that
//! buffered the response (or the request body, in the upload direction) would never
//! deliver it and the test would fail at its patience bound instead of passing.

use super::common::{plain_listener, route_to, tls_listener, QUIET};
use bytes::Bytes;
use gatehouse_test_support::certs::TestCa;
use gatehouse_test_support::upstream::TestBody;
use gatehouse_test_support::{channel_body, Conn, Proto, TestGateway, Upstream, UpstreamOptions};
use http::{Method, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use std::time::Duration;
use tokio::sync::mpsc;

/// How long a step may take before the test gives up; a bound, never a wait.
const PATIENCE: Duration = Duration::from_secs(20);

async fn within<F: std::future::Future>(what: &str, f: F) -> F::Output {
    tokio::time::timeout(PATIENCE, f)
        .await
        .unwrap_or_else(|_| panic!("{what}: nothing after {PATIENCE:?} (buffered?)"))
}

/// Reads frames until `want` has arrived in full; returns everything read.
async fn read_until(body: &mut Incoming, buf: &mut Vec<u8>, want: &str) {
    while !String::from_utf8_lossy(buf).contains(want) {
        let frame = within(want, body.frame()).await;
        let frame = frame
            .unwrap_or_else(|| panic!("body ended before {want:?}"))
            .unwrap();
        if let Some(d) = frame.data_ref() {
            buf.extend_from_slice(d);
        }
    }
}

struct Setup {
    _gw: TestGateway,
    up: Upstream,
    conn: Conn,
    /// Each response's body sender, handed over by the upstream handler.
    senders: mpsc::UnboundedReceiver<mpsc::Sender<Bytes>>,
}

async fn setup(client: Proto, upstream_h2: bool, tls: bool) -> Setup {
    let ca = TestCa::new();
    let leaf = ca.leaf("gw", &["localhost"]);
    let (tx, senders) = mpsc::unbounded_channel();
    let opts = UpstreamOptions {
        http2_only: upstream_h2,
        tls: None,
    };
    let up = Upstream::start(opts, move |req: http::Request<Incoming>| {
        let tx = tx.clone();
        async move { sse_or_upload(req, tx).await }
    })
    .await;
    let listener = if tls {
        tls_listener(&leaf)
    } else {
        plain_listener()
    };
    let extra = if upstream_h2 {
        "protocol = \"http2\""
    } else {
        ""
    };
    let gw = TestGateway::start(&format!("{QUIET}{listener}{}", route_to(up.addr, extra))).await;
    let conn = if tls {
        Conn::tls(gw.addr("web"), client, &ca.cert_pem, "localhost").await
    } else {
        Conn::plain(gw.addr("web"), client).await
    };
    Setup {
        _gw: gw,
        up,
        conn,
        senders,
    }
}

/// GET: an event stream whose chunks the test sends. POST: reads the upload and
/// acknowledges each chunk on a response stream the test also drives.
async fn sse_or_upload(
    req: http::Request<Incoming>,
    tx: mpsc::UnboundedSender<mpsc::Sender<Bytes>>,
) -> Response<TestBody> {
    let (chunks, body) = channel_body();
    if req.method() == Method::POST {
        // Echo each uploaded chunk as soon as it arrives.
        let mut incoming = req.into_body();
        tokio::spawn(async move {
            while let Some(Ok(f)) = incoming.frame().await {
                if let Some(d) = f.into_data().ok().filter(|d| !d.is_empty()) {
                    if chunks.send(d).await.is_err() {
                        return;
                    }
                }
            }
        });
    } else {
        tx.send(chunks).unwrap();
    }
    let mut resp = Response::new(body);
    resp.headers_mut()
        .insert("content-type", "text/event-stream".parse().unwrap());
    resp
}

async fn sse(client: Proto, upstream_h2: bool, tls: bool) {
    let mut s = setup(client, upstream_h2, tls).await;
    let req = s
        .conn
        .request(Method::GET, "/events")
        .body(gatehouse_test_support::empty())
        .unwrap();
    let resp = within("response head", s.conn.send(req)).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut body = resp.into_body();
    let events = within("upstream handler", s.senders.recv()).await.unwrap();
    let mut buf = Vec::new();
    for i in 1..=3 {
        let event = format!("id: {i}\ndata: event {i}\n\n");
        events.send(Bytes::from(event.clone())).await.unwrap();
        // Event i must reach the client while the upstream still holds event i+1.
        read_until(&mut body, &mut buf, &event).await;
    }
    drop(events);
    assert!(within("end of stream", body.collect())
        .await
        .unwrap()
        .to_bytes()
        .is_empty());
    assert_eq!(s.up.count(), 1);
}

/// The upload direction: each request-body chunk reaches the upstream (and its echo
/// comes back) before the client sends the next.
async fn upload(client: Proto, upstream_h2: bool) {
    let mut s = setup(client, upstream_h2, false).await;
    let (chunks, body) = channel_body();
    let req = s.conn.request(Method::POST, "/upload").body(body).unwrap();
    let resp = within("response head", s.conn.send(req));
    // The head only comes once the upstream has the request; send the first chunk
    // alongside so an HTTP/1.1 client is not waiting on an empty body.
    let first = chunks.send(Bytes::from_static(b"chunk-0;"));
    let (resp, sent) = tokio::join!(resp, first);
    sent.unwrap();
    let mut body = resp.unwrap().into_body();
    let mut buf = Vec::new();
    read_until(&mut body, &mut buf, "chunk-0;").await;
    for i in 1..4 {
        let c = format!("chunk-{i};");
        chunks.send(Bytes::from(c.clone())).await.unwrap();
        read_until(&mut body, &mut buf, &c).await;
    }
    drop(chunks);
    within("end of stream", body.collect()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_h1_to_h1_is_not_buffered() {
    sse(Proto::H1, false, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_h2c_to_h1_is_not_buffered() {
    sse(Proto::H2, false, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_h1_to_h2_is_not_buffered() {
    sse(Proto::H1, true, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_h2c_to_h2_is_not_buffered() {
    sse(Proto::H2, true, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_over_tls_is_not_buffered() {
    sse(Proto::H1, false, true).await;
    sse(Proto::H2, true, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_upload_is_not_buffered() {
    upload(Proto::H1, false).await;
    upload(Proto::H2, true).await;
    upload(Proto::H2, false).await;
    upload(Proto::H1, true).await;
}
