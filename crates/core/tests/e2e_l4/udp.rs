//! `udp` listeners: a DNS-style request/response exchange, per-client affinity, flows
//! that expire when idle, and the bound on the number of flows.

use crate::*;
use std::time::Duration;
use tokio::net::UdpSocket;

fn udp_config(endpoints: &[SocketAddr], listener_extra: &str) -> String {
    listener(
        "dns",
        "udp",
        &format!("upstream = \"dns\"\n{listener_extra}"),
    ) + &upstream("dns", endpoints, "")
}

async fn client() -> UdpSocket {
    UdpSocket::bind("127.0.0.1:0").await.unwrap()
}

/// Sends `msg` through the listener and returns the reply.
async fn ask(c: &UdpSocket, to: SocketAddr, msg: &str) -> String {
    c.send_to(msg.as_bytes(), to).await.unwrap();
    let mut buf = [0u8; 2048];
    let (n, from) = c.recv_from(&mut buf).await.unwrap();
    assert_eq!(from, to, "the reply must come from the listener's address");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[tokio::test]
async fn udp_echo_keeps_each_client_on_its_endpoint() {
    let (a, b) = (udp_responder("A").await, udp_responder("B").await);
    let gw = start(&udp_config(&[a, b], "")).await;
    let to = gw.addr("dns");
    let (one, two) = (client().await, client().await);
    let first = ask(&one, to, "q1").await;
    let second = ask(&two, to, "q1").await;
    // Round robin put the two flows on different endpoints...
    assert_ne!(&first[..1], &second[..1], "{first} / {second}");
    // ...and each client stays on its own.
    for i in 2..6 {
        let q = format!("q{i}");
        assert_eq!(ask(&one, to, &q).await, format!("{}{q}", &first[..2]));
        assert_eq!(ask(&two, to, &q).await, format!("{}{q}", &second[..2]));
    }
    assert_eq!(
        metric(&gw, "gatehouse_connections_total{listener=\"dns\"}"),
        2
    );
    assert_eq!(
        metric(&gw, "gatehouse_active_connections{listener=\"dns\"}"),
        2
    );
}

#[tokio::test(start_paused = true)]
async fn an_idle_flow_expires_and_the_next_datagram_opens_a_new_one() {
    let a = udp_responder("A").await;
    let gw = start(&udp_config(&[a], "timeouts = { udp_idle = \"5s\" }")).await;
    let to = gw.addr("dns");
    let c = client().await;
    assert_eq!(ask(&c, to, "hello").await, "A:hello");
    let active = "gatehouse_active_connections{listener=\"dns\"}";
    assert_eq!(metric(&gw, active), 1);
    // Still alive just before the idle timeout...
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(ask(&c, to, "again").await, "A:again");
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(metric(&gw, active), 1, "expired while in use");
    // ...and gone after it.
    tokio::time::sleep(Duration::from_secs(2)).await;
    eventually("the flow to expire", || async {
        (metric(&gw, active) == 0).then_some(())
    })
    .await;
    let snap = gw.gw.snapshot();
    let ep = &snap.upstreams["dns"].endpoints()[0];
    assert_eq!(ep.in_flight.load(std::sync::atomic::Ordering::Relaxed), 0);
    assert_eq!(ask(&c, to, "back").await, "A:back");
    assert_eq!(
        metric(&gw, "gatehouse_connections_total{listener=\"dns\"}"),
        2
    );
}

#[tokio::test(start_paused = true)]
async fn datagrams_past_the_flow_limit_are_dropped() {
    let a = udp_responder("A").await;
    let gw = start(&udp_config(
        &[a],
        "max_connections = 1\ntimeouts = { udp_idle = \"5s\" }",
    ))
    .await;
    let to = gw.addr("dns");
    let (one, two) = (client().await, client().await);
    assert_eq!(ask(&one, to, "first").await, "A:first");
    two.send_to(b"second", to).await.unwrap();
    let mut buf = [0u8; 64];
    let r = tokio::time::timeout(Duration::from_secs(2), two.recv_from(&mut buf)).await;
    assert!(r.is_err(), "a flow past the limit was served");
    // Once the first flow expires there is room again.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(ask(&two, to, "third").await, "A:third");
}
