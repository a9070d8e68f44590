//! Parking idle HTTP/1 connections (see `http::park`), on the paused clock: a kept-alive
//! connection silent for a couple of ticks gives up its hyper side, then serves its next
//! request as if nothing happened: plain or TLS, with a head begun before the parking,
//! and still bounded by header_read and closed by a drain.

use crate::*;
use gatehouse_test_support::certs::TestCa;
use gatehouse_test_support::raw::read_response;
use gatehouse_test_support::{TestGateway, TlsClient};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::{sleep, Instant};

const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";

/// A connection to `web`. No Nagle: a head sent in parts must not wait for an ACK
/// the kernel delays in real time while the paused clock runs ahead.
async fn connect(gw: &TestGateway) -> TcpStream {
    let s = TcpStream::connect(gw.addr("web")).await.unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// Parked connections on the gateway's listener `web`.
fn parked(gw: &TestGateway) -> i64 {
    gw.gw.snapshot().listeners["web"].parked.get()
}

async fn ok_on<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S, request: &[u8]) {
    s.write_all(request).await.unwrap();
    let r = read_response(s).await.expect("a response");
    assert_eq!((r.status, r.body.as_slice()), (200, &b"hi"[..]));
}

#[tokio::test(start_paused = true)]
async fn an_idle_connection_is_parked_and_serves_its_next_request() {
    let gw = TestGateway::start(&local_gateway("timeouts = { header_read = \"60s\" }")).await;
    let mut s = connect(&gw).await;
    for round in 0..3 {
        ok_on(&mut s, GET).await;
        sleep(Duration::from_secs(3)).await;
        assert_eq!(parked(&gw), 1, "round {round}: parked after silence");
    }
    ok_on(&mut s, GET).await;
    assert_eq!(parked(&gw), 0, "serving again");
    let snap = gw.gw.snapshot();
    assert_eq!(
        snap.listeners["web"].connections.get(),
        1,
        "one connection all along"
    );
}

#[tokio::test(start_paused = true)]
async fn a_head_begun_before_the_parking_is_finished_after_it() {
    let gw = TestGateway::start(&local_gateway("timeouts = { header_read = \"60s\" }")).await;
    let mut s = connect(&gw).await;
    ok_on(&mut s, GET).await;
    s.write_all(b"GET / HTTP/1.1\r\nHo").await.unwrap();
    sleep(Duration::from_secs(3)).await;
    assert_eq!(parked(&gw), 1);
    ok_on(&mut s, b"st: x\r\n\r\n").await;
    // Two requests in one write after a parking: both answered, in order.
    sleep(Duration::from_secs(3)).await;
    assert_eq!(parked(&gw), 1);
    let last = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    s.write_all(&[GET, last].concat()).await.unwrap();
    let got = read_to_close(&mut s).await;
    assert_eq!(got.matches("HTTP/1.1 200").count(), 2, "{got}");
}

#[tokio::test(start_paused = true)]
async fn a_parked_connection_still_closes_at_header_read() {
    let gw = TestGateway::start(&local_gateway("timeouts = { header_read = \"5s\" }")).await;
    let mut s = connect(&gw).await;
    ok_on(&mut s, GET).await;
    let answered = Instant::now();
    sleep(Duration::from_secs(3)).await;
    assert_eq!(parked(&gw), 1);
    assert_eq!(read_to_close(&mut s).await, "", "closed without a byte");
    let t = since(answered);
    assert!(
        t >= Duration::from_secs(5) && t < Duration::from_millis(5100),
        "{t:?}"
    );
    assert_eq!(parked(&gw), 0);
}

#[tokio::test(start_paused = true)]
async fn a_parked_connection_closes_when_its_listener_drains() {
    let gw = TestGateway::start(&local_gateway("timeouts = { header_read = \"60s\" }")).await;
    let mut s = connect(&gw).await;
    ok_on(&mut s, GET).await;
    sleep(Duration::from_secs(3)).await;
    assert_eq!(parked(&gw), 1);
    let start = Instant::now();
    let closed = async {
        let got = read_to_close(&mut s).await;
        (got, since(start))
    };
    let (done, (got, t)) = tokio::join!(gw.gw.shutdown(), closed);
    assert!(done, "the drain finished");
    assert_eq!(got, "");
    assert!(t < Duration::from_millis(100), "closed at once: {t:?}");
}

#[tokio::test(start_paused = true)]
async fn a_parked_tls_connection_serves_its_next_request() {
    let ca = TestCa::new();
    let leaf = ca.leaf("gw", &["localhost"]);
    let listener = format!(
        "protocol = \"https\"\ntimeouts = {{ header_read = \"60s\" }}\n\
         tls = {{ certificates = [{{ cert = \"{}\", key = \"{}\" }}] }}",
        leaf.cert.display(),
        leaf.key.display()
    );
    let gw = TestGateway::start(&local_gateway(&listener)).await;
    let client = TlsClient {
        alpn: &["http/1.1"],
        ..TlsClient::new(&ca.cert_pem)
    };
    let mut s = client.connect(gw.addr("web"), "localhost").await.unwrap();
    for _ in 0..2 {
        ok_on(&mut s, GET).await;
        sleep(Duration::from_secs(3)).await;
        assert_eq!(parked(&gw), 1);
    }
    ok_on(&mut s, GET).await;
    assert_eq!(gw.gw.snapshot().listeners["web"].connections.get(), 1);
}

/// A parked connection holds no task of its own (its listener's lot serves all of
/// them), still counts as active and still holds its place under `max_connections`:
/// a second connection waits until the parked one closes.
#[tokio::test(start_paused = true)]
async fn a_parked_connection_holds_no_task_but_keeps_its_place() {
    let extra = "max_connections = 1\ntimeouts = { header_read = \"60s\" }";
    let gw = TestGateway::start(&local_gateway(extra)).await;
    let tasks = || {
        tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks()
    };
    let mut first = connect(&gw).await;
    ok_on(&mut first, GET).await;
    let live = tasks();
    sleep(Duration::from_secs(3)).await;
    assert_eq!(parked(&gw), 1);
    assert_eq!(tasks(), live - 1, "the parked connection has no task");
    assert_eq!(gw.gw.snapshot().listeners["web"].active.get(), 1);
    let mut second = connect(&gw).await;
    second.write_all(GET).await.unwrap();
    let mut byte = [0u8; 1];
    let waiting = tokio::time::timeout(Duration::from_secs(5), second.read(&mut byte)).await;
    assert!(
        waiting.is_err(),
        "served while the parked one holds the place"
    );
    // Served again after its parking, then closed: the place passes on.
    ok_on(&mut first, GET).await;
    drop(first);
    let r = read_response(&mut second).await.expect("a response");
    assert_eq!(r.status, 200);
}

/// Many connections in one lot (more than a chunk of slots): each wakes on its own
/// bytes, in any order, and parks again; when all have left, the lot is empty.
#[tokio::test(start_paused = true)]
async fn many_parked_connections_wake_in_any_order() {
    let gw = TestGateway::start(&local_gateway("timeouts = { header_read = \"60s\" }")).await;
    let mut conns = Vec::new();
    for _ in 0..300 {
        let mut s = connect(&gw).await;
        ok_on(&mut s, GET).await;
        conns.push(s);
    }
    sleep(Duration::from_secs(3)).await;
    assert_eq!(parked(&gw), 300);
    // Every third one, from the back: slots are freed out of order.
    for s in conns.iter_mut().rev().step_by(3) {
        ok_on(s, GET).await;
    }
    assert_eq!(parked(&gw), 200);
    sleep(Duration::from_secs(3)).await;
    assert_eq!(parked(&gw), 300, "parked again, in freed slots");
    for s in &mut conns {
        ok_on(s, GET).await;
    }
    assert_eq!(parked(&gw), 0);
    assert_eq!(gw.gw.snapshot().listeners["web"].connections.get(), 300);
}
