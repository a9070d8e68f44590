//! The short soak (the long one is `bench/soak.sh`): after bursts of mixed traffic,
//! once the clients are gone, the process holds as many sockets to the gateway and its
//! upstream as it did after the warm-up: nothing leaks a socket per request or per
//! connection.

use crate::*;
use gatehouse_test_support::{Conn, Proto, TestGateway, Upstream};
use std::sync::atomic::Ordering;

/// This process's descriptors that are TCP sockets with an end on one of `ports`. The
/// other tests of this binary run in this process at the same time: counting every
/// descriptor counted their sockets too, and failed when they opened some meanwhile.
fn open_sockets(ports: &[u16]) -> usize {
    let port = |addr: &str| {
        let hex = addr.rsplit(':').next()?;
        u16::from_str_radix(hex, 16).ok()
    };
    let mut inodes = std::collections::HashSet::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() > 9
                && [f[1], f[2]]
                    .into_iter()
                    .any(|a| port(a).is_some_and(|p| ports.contains(&p)))
            {
                inodes.insert(f[9].to_owned());
            }
        }
    }
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .filter(|l| {
            l.to_str()
                .and_then(|l| l.strip_prefix("socket:[")?.strip_suffix(']'))
                .is_some_and(|i| inodes.contains(i))
        })
        .count()
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
    let ports = [gw.addr("web").port(), up.addr.port()];
    let held = || open_sockets(&ports) - 2 * ep.pool.open();
    burst(&gw, 1).await;
    let warm = held();
    burst(&gw, 10).await;
    let after = held();
    println!(
        "soak: {warm} sockets after the warm-up, {after} after 10 more bursts ({} requests), pooled upstream connections aside ({} open)",
        up.count(),
        ep.pool.open()
    );
    assert!(after <= warm + 1, "sockets grew from {warm} to {after}");
    assert_eq!(ep.in_flight.load(Ordering::Relaxed), 0);
}
