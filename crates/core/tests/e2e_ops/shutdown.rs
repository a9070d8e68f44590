//! Graceful shutdown: a request in flight when shutdown starts completes with 200, new
//! connections are refused, and shutdown reports that everything drained in time.

use crate::*;
use gatehouse_test_support::{TestGateway, Upstream, UpstreamOptions};
use std::time::Duration;
use tokio::net::TcpStream;

#[tokio::test(start_paused = true)]
async fn in_flight_request_completes_and_new_connections_are_refused() {
    let (started_tx, mut started) = tokio::sync::mpsc::unbounded_channel();
    let up = Upstream::start(UpstreamOptions::default(), move |_req| {
        let tx = started_tx.clone();
        async move {
            let _ = tx.send(());
            tokio::time::sleep(Duration::from_secs(5)).await;
            ok("finished")
        }
    })
    .await;
    let gw = TestGateway::start(&config(up.addr, "", "")).await;
    let addr = gw.addr("web");
    let in_flight = tokio::spawn(reqwest::get(gw.url("web", "/slow")));
    started.recv().await.unwrap();

    let gw2 = gw.gw.clone();
    let shutdown = tokio::spawn(async move { gw2.shutdown().await });
    eventually("the listener to refuse new connections", || async {
        TcpStream::connect(addr).await.err()
    })
    .await;
    assert!(
        !shutdown.is_finished(),
        "shutdown did not wait for the request"
    );

    let resp = in_flight.await.unwrap().unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), "finished");
    assert!(shutdown.await.unwrap(), "shutdown did not drain in time");
    assert!(TcpStream::connect(addr).await.is_err());
}

/// A request longer than drain_timeout is cut off, and shutdown says so.
#[tokio::test(start_paused = true)]
async fn shutdown_reports_a_drain_that_ran_out_of_time() {
    let (addr, _up) = silent_upstream().await;
    let toml =
        config(addr, "", "").replace("[admin]", "[global]\ndrain_timeout = \"2s\"\n\n[admin]");
    let gw = TestGateway::start(&toml).await;
    let url = gw.url("web", "/");
    let stuck = tokio::spawn(reqwest::get(url));
    // Let the request reach the gateway before shutting down.
    eventually("the request to be in flight", || async {
        let s = gw.gw.snapshot();
        let ep = s.upstreams["backend"].endpoints()[0].clone();
        (ep.in_flight.load(std::sync::atomic::Ordering::Relaxed) == 1).then_some(())
    })
    .await;
    let start = tokio::time::Instant::now();
    assert!(!gw.gw.shutdown().await);
    let t = since(start);
    assert!(
        t >= Duration::from_secs(2) && t < Duration::from_millis(2100),
        "{t:?}"
    );
    stuck.abort();
}

/// A connection accepted before the drain, whose first request is still on the way, is
/// not dropped unread: the request is served, then the connection closes. A kept-alive connection
/// that already had its request and sits idle is closed.
#[tokio::test]
async fn a_new_connection_gets_its_first_request_served_during_a_drain() {
    use tokio::io::AsyncWriteExt;
    // Accepted while silent: deferred accept would leave it to the kernel.
    let gw = TestGateway::start(&local_gateway("defer_accept = false")).await;
    let addr = gw.addr("web");
    let mut idle = TcpStream::connect(addr).await.unwrap();
    idle.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    assert!(read_response(&mut idle).await.ends_with("hi"));
    let mut fresh = TcpStream::connect(addr).await.unwrap();
    // Accepted (and sniffed) before the drain starts.
    eventually("the new connection to be accepted", || async {
        (gw.gw.snapshot().listeners["web"].active.get() == 2).then_some(())
    })
    .await;
    let gw2 = gw.gw.clone();
    let shutdown = tokio::spawn(async move { gw2.shutdown().await });
    assert_eq!(
        read_to_close(&mut idle).await,
        "",
        "the idle connection is closed"
    );
    // Closing our side too ends the server's lingering close at once.
    drop(idle);
    fresh
        .write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    let got = read_to_close(&mut fresh).await;
    assert!(
        got.starts_with("HTTP/1.1 200") && got.ends_with("hi"),
        "{got}"
    );
    drop(fresh);
    assert!(shutdown.await.unwrap());
}

/// Which closes linger (read and drop what the client still sends) and which end at
/// once, as NGINX's rule: a client whose bodiless request said `Connection: close`, or
/// that closed its own side, sends nothing more, so its connection ends as soon as the
/// response is out; one that may still be sending (a body not read to its end) gets the
/// linger, which a test in e2e_edge shows keeps the response whole. The `active` gauge
/// tells whether the server still holds the socket.
#[tokio::test(start_paused = true)]
async fn only_a_close_the_client_may_still_send_on_lingers() {
    use tokio::io::AsyncWriteExt;
    let gw = TestGateway::start(&local_gateway("")).await;
    let addr = gw.addr("web");
    let active = || gw.gw.snapshot().listeners["web"].active.get();
    let asked = b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";
    let old = b"GET / HTTP/1.0\r\nHost: a\r\n\r\n";
    for request in [&asked[..], &old[..]] {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(request).await.unwrap();
        assert!(read_to_close(&mut s).await.ends_with("hi"));
        // Our side stays open: only the server's own decision is seen.
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(
            active(),
            0,
            "no linger after {:?}",
            String::from_utf8_lossy(request)
        );
    }
    let mut s = TcpStream::connect(addr).await.unwrap();
    let unread =
        b"POST / HTTP/1.1\r\nHost: a\r\nConnection: close\r\nContent-Length: 9\r\n\r\nhalf";
    s.write_all(unread).await.unwrap();
    assert!(read_to_close(&mut s).await.ends_with("hi"));
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(active(), 1, "its body may still be coming: it lingers");
    drop(s);
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(active(), 0, "the client's close ends the linger");
}
