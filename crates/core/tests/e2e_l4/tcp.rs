//! `tcp` listeners: echo, half-close, balancing and in-flight counts, fail-over past a
//! dead endpoint, idle timeout, the connection limit, metrics, the access line, and
//! connections that outlive a reload.

use crate::*;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn tcp_config(endpoints: &[SocketAddr], listener_extra: &str, upstream_extra: &str) -> String {
    listener(
        "tcp",
        "tcp",
        &format!("upstream = \"back\"\n{listener_extra}"),
    ) + &upstream("back", endpoints, upstream_extra)
}

#[tokio::test]
async fn echo_through_the_proxy() {
    let a = echo("A").await;
    let gw = start(&tcp_config(&[a], "", "")).await;
    let mut c = TcpStream::connect(gw.addr("tcp")).await.unwrap();
    assert_eq!(read_n(&mut c, 2).await, "A|");
    c.write_all(b"ping").await.unwrap();
    assert_eq!(read_n(&mut c, 4).await, "ping");
    c.write_all(b"pong and more").await.unwrap();
    assert_eq!(read_n(&mut c, 13).await, "pong and more");
}

#[tokio::test]
async fn half_close_passes_the_fin_and_the_reply_still_arrives() {
    let up = reply_after_eof().await;
    let gw = start(&tcp_config(&[up], "", "")).await;
    let mut c = TcpStream::connect(gw.addr("tcp")).await.unwrap();
    c.write_all(b"hello").await.unwrap();
    // Only our write side closes; the backend answers once it sees our FIN.
    c.shutdown().await.unwrap();
    assert_eq!(read_to_close(&mut c).await, "got 5: hello");
}

#[tokio::test]
async fn connections_are_balanced_and_counted_in_flight() {
    let (a, b) = (echo("A").await, echo("B").await);
    let gw = start(&tcp_config(&[a, b], "", "balancer = \"least_conn\"")).await;
    // Each held connection is in flight on its endpoint, so least_conn spreads them.
    let mut held = Vec::new();
    let mut names = Vec::new();
    for _ in 0..4 {
        let mut c = TcpStream::connect(gw.addr("tcp")).await.unwrap();
        names.push(read_n(&mut c, 2).await);
        held.push(c);
    }
    names.sort();
    assert_eq!(names, ["A|", "A|", "B|", "B|"]);
    let snap = gw.gw.snapshot();
    let eps = snap.upstreams["back"].endpoints();
    let in_flight = |i: usize| eps[i].in_flight.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!((in_flight(0), in_flight(1)), (2, 2));
    drop(held);
    eventually("in-flight counts back to 0", || async {
        (in_flight(0) == 0 && in_flight(1) == 0).then_some(())
    })
    .await;
}

#[tokio::test]
async fn round_robin_alternates_endpoints() {
    let (a, b) = (echo("A").await, echo("B").await);
    let gw = start(&tcp_config(&[a, b], "", "")).await;
    let mut names = Vec::new();
    for _ in 0..4 {
        let mut c = TcpStream::connect(gw.addr("tcp")).await.unwrap();
        names.push(read_n(&mut c, 2).await);
    }
    // The rotation starts anywhere, then alternates.
    assert_ne!(names[0], names[1], "{names:?}");
    assert_eq!((&names[0], &names[1]), (&names[2], &names[3]), "{names:?}");
}

#[tokio::test]
async fn a_dead_endpoint_is_skipped() {
    let dead = dead_addr().await;
    let a = echo("A").await;
    let gw = start(&tcp_config(
        &[dead, a],
        "",
        "timeouts = { connect = \"2s\" }",
    ))
    .await;
    for _ in 0..3 {
        let mut c = TcpStream::connect(gw.addr("tcp")).await.unwrap();
        assert_eq!(read_n(&mut c, 2).await, "A|");
    }
    let snap = gw.gw.snapshot();
    let failures = snap.upstreams["back"].endpoints()[0]
        .failures
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(failures >= 1, "the dead endpoint was never tried");
}

#[tokio::test]
async fn no_endpoint_left_closes_the_client() {
    let gw = start(&tcp_config(&[dead_addr().await], "", "")).await;
    let mut c = TcpStream::connect(gw.addr("tcp")).await.unwrap();
    assert_eq!(read_to_close(&mut c).await, "");
}

#[tokio::test(start_paused = true)]
async fn an_idle_connection_is_closed_after_the_idle_timeout() {
    let a = echo("A").await;
    let gw = start(&tcp_config(&[a], "timeouts = { idle = \"10s\" }", "")).await;
    let mut c = TcpStream::connect(gw.addr("tcp")).await.unwrap();
    assert_eq!(read_n(&mut c, 2).await, "A|");
    let start = tokio::time::Instant::now();
    assert_eq!(read_to_close(&mut c).await, "");
    let waited = tokio::time::Instant::now() - start;
    assert!(
        waited >= Duration::from_secs(10) && waited < Duration::from_secs(13),
        "closed after {waited:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn the_connection_limit_holds_new_connections_back() {
    let a = echo("A").await;
    let gw = start(&tcp_config(&[a], "max_connections = 1", "")).await;
    let mut first = TcpStream::connect(gw.addr("tcp")).await.unwrap();
    assert_eq!(read_n(&mut first, 2).await, "A|");
    // The second waits in the kernel's backlog: nothing for it while the first is open.
    let mut second = TcpStream::connect(gw.addr("tcp")).await.unwrap();
    let mut b = [0u8; 2];
    let waited = tokio::time::timeout(Duration::from_secs(5), second.read_exact(&mut b)).await;
    assert!(waited.is_err(), "served past the limit");
    drop(first);
    assert_eq!(read_n(&mut second, 2).await, "A|");
}

#[tokio::test]
async fn bytes_and_connections_are_in_the_metrics() {
    let a = echo("A").await;
    let gw = start(&tcp_config(&[a], "", "")).await;
    let mut c = TcpStream::connect(gw.addr("tcp")).await.unwrap();
    c.write_all(b"12345").await.unwrap();
    assert_eq!(read_n(&mut c, 7).await, "A|12345");
    c.shutdown().await.unwrap();
    read_to_close(&mut c).await;
    let received = "gatehouse_l4_bytes_total{listener=\"tcp\",direction=\"received\"}";
    let sent = "gatehouse_l4_bytes_total{listener=\"tcp\",direction=\"sent\"}";
    eventually("byte counters", || async {
        (metric(&gw, received) == 5 && metric(&gw, sent) == 7).then_some(())
    })
    .await;
    assert_eq!(
        metric(&gw, "gatehouse_connections_total{listener=\"tcp\"}"),
        1
    );
}

#[tokio::test]
async fn each_connection_writes_one_access_line() {
    let a = echo("A").await;
    let path = temp_path("access.log");
    let cfg = tcp_config(&[a], "", "");
    let text = format!("[access_log]\ntarget = \"{}\"\n\n{cfg}", path.display());
    let gw = TestGateway::start(&text).await;
    let mut c = TcpStream::connect(gw.addr("tcp")).await.unwrap();
    c.write_all(b"abc").await.unwrap();
    assert_eq!(read_n(&mut c, 5).await, "A|abc");
    c.shutdown().await.unwrap();
    read_to_close(&mut c).await;
    let line = eventually("the access line", || async {
        std::fs::read_to_string(&path)
            .ok()
            .filter(|t| t.ends_with('\n'))
    })
    .await;
    let v: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
    assert_eq!(v["protocol"], "tcp", "{v}");
    assert_eq!(v["listener"], "tcp");
    assert_eq!(v["client"], "127.0.0.1");
    assert_eq!(v["upstream"], "back");
    assert_eq!(v["endpoint"], a.to_string());
    assert_eq!(v["bytes_in"], 3);
    assert_eq!(v["bytes_out"], 5);
    assert!(v["time"].is_string() && v.get("error").is_none(), "{v}");
}

#[tokio::test]
async fn an_open_connection_survives_a_reload() {
    let (a, b) = (echo("A").await, echo("B").await);
    let gw = start(&tcp_config(&[a], "", "")).await;
    let addr = gw.addr("tcp");
    let mut old = TcpStream::connect(addr).await.unwrap();
    assert_eq!(read_n(&mut old, 2).await, "A|");
    // The upstream now points elsewhere: new connections go there, the open one stays.
    gw.gw
        .reload_text(&config(&tcp_config(&[b], "", "")))
        .await
        .unwrap();
    assert_eq!(gw.addr("tcp"), addr, "the listener was rebound");
    old.write_all(b"still here").await.unwrap();
    assert_eq!(read_n(&mut old, 10).await, "still here");
    let mut new = TcpStream::connect(addr).await.unwrap();
    assert_eq!(read_n(&mut new, 2).await, "B|");
}

#[tokio::test]
async fn a_removed_listener_stops_accepting() {
    let a = echo("A").await;
    let both = tcp_config(&[a], "", "") + &listener("other", "tcp", "upstream = \"back\"");
    let gw = start(&both).await;
    let addr = gw.addr("other");
    gw.gw
        .reload_text(&config(&tcp_config(&[a], "", "")))
        .await
        .unwrap();
    eventually("the removed listener to close", || async {
        TcpStream::connect(addr).await.is_err().then_some(())
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_removed_listener_drains_its_open_connections() {
    let a = echo("A").await;
    let drain = "[global]\ndrain_timeout = \"5s\"\n\n";
    let both = tcp_config(&[a], "", "") + &listener("other", "tcp", "upstream = \"back\"");
    let gw = start(&format!("{drain}{both}")).await;
    let mut open = TcpStream::connect(gw.addr("other")).await.unwrap();
    assert_eq!(read_n(&mut open, 2).await, "A|");
    gw.gw
        .reload_text(&config(&format!("{drain}{}", tcp_config(&[a], "", ""))))
        .await
        .unwrap();
    // Still served while draining...
    open.write_all(b"more").await.unwrap();
    assert_eq!(read_n(&mut open, 4).await, "more");
    // ...and closed once the drain timeout has passed.
    let start = tokio::time::Instant::now();
    assert_eq!(read_to_close(&mut open).await, "");
    let waited = tokio::time::Instant::now() - start;
    assert!(waited < Duration::from_secs(6), "closed after {waited:?}");
}
