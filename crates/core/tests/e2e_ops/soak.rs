//! The short soak (the long one is `bench/soak.sh`): after bursts of mixed traffic,
//! once the clients are gone, the process holds as many descriptors as it did after
//! the warm-up: nothing leaks a socket per request or per connection.

use crate::*;
use gatehouse_test_support::{Conn, Proto, TestGateway, Upstream};
use std::sync::atomic::Ordering;

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// `rounds` of: 8 clients, half on a connection per request, half kept alive, over
/// HTTP/1.1 and HTTP/2, 25 requests each; then every client is gone.
async fn burst(gw: &TestGateway, rounds: usize) {
    let addr = gw.addr("web");
    for _ in 0..rounds {
        let mut tasks = Vec::new();
        for i in 0..8 {
            tasks.push(tokio::spawn(async move {
                let proto = if i % 2 == 0 { Proto::H1 } else { Proto::H2 };
                let mut kept = (i % 4 < 2).then_some(());
                let mut c = Conn::plain(addr, proto).await;
                for _ in 0..25 {
                    if kept.is_none() {
                        c = Conn::plain(addr, proto).await;
                    }
                    let (parts, body) = c.get("/").await;
                    assert_eq!(parts.status, 200);
                    assert_eq!(&body[..], b"soak");
                }
                kept.take();
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    }
    let listener = gw.gw.snapshot().listeners["web"].clone();
    eventually("every client connection to end", || {
        let n = listener.active.get();
        async move { (n == 0).then_some(()) }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn descriptors_come_back_after_bursts_of_traffic() {
    let up = Upstream::fixed("soak").await;
    let gw = TestGateway::start(&config(up.addr, "", "")).await;
    let ep = gw.gw.snapshot().upstreams["backend"].endpoints()[0].clone();
    // Pooled upstream connections stay, as they should; this process holds both of
    // their ends (the gateway's and the test upstream's), so they are counted apart.
    let held = || open_fds() - 2 * ep.pool.open();
    burst(&gw, 1).await;
    let warm = held();
    burst(&gw, 10).await;
    let after = held();
    println!(
        "soak: {warm} descriptors after the warm-up, {after} after 10 more bursts ({} requests), pooled upstream connections aside ({} open)",
        up.count(),
        ep.pool.open()
    );
    assert!(after <= warm + 1, "descriptors grew from {warm} to {after}");
    assert_eq!(ep.in_flight.load(Ordering::Relaxed), 0);
}
