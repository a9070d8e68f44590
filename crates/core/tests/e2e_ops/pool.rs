//! The upstream side's idle timeout: a pooled connection unused for `pool.idle_timeout`
//! is closed (paused clock), counted as closed for it, and a later request opens a new
//! one.

use crate::conn_counts::{counts, endpoint_view};
use crate::*;
use gatehouse_test_support::{TestGateway, Upstream};

async fn open_connections(gw: &TestGateway) -> u64 {
    endpoint_view(gw).await["open_connections"]
        .as_u64()
        .unwrap()
}

async fn get_ok(c: &reqwest::Client, gw: &TestGateway) {
    let body = text(c.get(gw.url("web", "/"))).await;
    assert_eq!(body, "ok");
}

async fn wait_open(gw: &TestGateway, n: u64, what: &str) {
    eventually(what, || async {
        (open_connections(gw).await == n).then_some(())
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn idle_pooled_connections_close_after_the_idle_timeout() {
    let up = Upstream::fixed("ok").await;
    let gw = TestGateway::start(&config(up.addr, "", "pool = { idle_timeout = \"30s\" }")).await;
    let c = fresh_client();
    get_ok(&c, &gw).await;
    wait_open(&gw, 1, "one pooled connection").await;
    // Still pooled before the timeout...
    tokio::time::advance(Duration::from_secs(20)).await;
    assert_eq!(open_connections(&gw).await, 1);
    // ...closed by the pool sweep once it has passed.
    tokio::time::advance(Duration::from_secs(20)).await;
    wait_open(&gw, 0, "the idle connection to close").await;
    assert_eq!(counts(&gw, "idle_timeout").await, (1, 1));
    get_ok(&c, &gw).await;
    wait_open(&gw, 1, "a new pooled connection").await;
}
