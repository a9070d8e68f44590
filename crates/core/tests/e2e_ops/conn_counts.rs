//! Upstream connections counted per endpoint (`http::conn_count`): opened, open, and
//! closed by why, in the admin API and in /metrics. Each reason is brought about here
//! the way it happens in service: a response that says `close`, an upstream closing a
//! pooled connection, a pool already full, the client leaving mid-body, a drain, a
//! tunnel, an HTTP/2 upstream going away. (The idle timeout is in `pool.rs`.)

use crate::*;
use gatehouse_test_support::raw::{exchange, RawOrigin, Reply};
use gatehouse_test_support::upstream::UpstreamOptions;
use gatehouse_test_support::{TestGateway, Upstream};

/// The admin API's view of the only endpoint of `backend`.
pub async fn endpoint_view(gw: &TestGateway) -> serde_json::Value {
    let v = json(fresh_client().get(gw.admin_url("/upstreams"))).await;
    v["upstreams"][0]["endpoints"][0].clone()
}

/// Connections opened and those closed for `reason`, as the admin API shows them.
pub async fn counts(gw: &TestGateway, reason: &str) -> (u64, u64) {
    let e = endpoint_view(gw).await;
    let opened = e["opened_connections"].as_u64().unwrap();
    (opened, e["closed_connections"][reason].as_u64().unwrap())
}

/// Waits until `reason` has closed `n` connections.
async fn closed_for(gw: &TestGateway, reason: &str, n: u64) {
    eventually(
        &format!("{n} connection(s) closed for {reason}"),
        || async { (counts(gw, reason).await.1 == n).then_some(()) },
    )
    .await;
}

/// Every close reason but `reason` is at zero.
async fn only(gw: &TestGateway, reason: &str) {
    let e = endpoint_view(gw).await;
    for (why, n) in e["closed_connections"].as_object().unwrap() {
        if why != reason {
            assert_eq!(n, 0, "closed for {why}: {e}");
        }
    }
}

/// Waits until one connection closed for `reason`, then checks that `opened` were
/// opened in all and that no other reason closed any.
async fn one_closed_for(gw: &TestGateway, reason: &str, opened: u64) {
    closed_for(gw, reason, 1).await;
    assert_eq!(counts(gw, reason).await.0, opened);
    only(gw, reason).await;
}

async fn get(gw: &TestGateway, target: &str) -> u16 {
    let req = format!("GET {target} HTTP/1.1\r\nHost: a\r\n\r\n");
    exchange(gw.addr("web"), req.as_bytes())
        .await
        .0
        .unwrap()
        .status
}

#[tokio::test]
async fn kept_alive_connections_are_reused_and_a_close_is_counted_not_reusable() {
    let origin = RawOrigin::start(|r| {
        if r.target == "/close" {
            Reply::closing(b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok")
        } else {
            Reply::ok()
        }
    })
    .await;
    let gw = TestGateway::start(&config(origin.addr, "", "")).await;
    for _ in 0..3 {
        assert_eq!(get(&gw, "/").await, 200);
    }
    assert_eq!(counts(&gw, "not_reusable").await, (1, 0));
    assert_eq!(endpoint_view(&gw).await["open_connections"], 1);
    assert_eq!(get(&gw, "/close").await, 200);
    closed_for(&gw, "not_reusable", 1).await;
    assert_eq!(endpoint_view(&gw).await["open_connections"], 0);
    assert_eq!(get(&gw, "/").await, 200);
    assert_eq!(counts(&gw, "not_reusable").await, (2, 1));
    only(&gw, "not_reusable").await;
    assert_eq!(origin.connections(), 2);

    let metrics = text(fresh_client().get(gw.admin_url("/metrics"))).await;
    let labels = format!("upstream=\"backend\",endpoint=\"{}\"", origin.addr);
    for line in [
        format!("gatehouse_upstream_connections_opened_total{{{labels}}} 2"),
        format!("gatehouse_upstream_connections{{{labels}}} 1"),
        format!(
            "gatehouse_upstream_connections_closed_total{{{labels},reason=\"not_reusable\"}} 1"
        ),
        format!("gatehouse_upstream_connections_closed_total{{{labels},reason=\"pool_full\"}} 0"),
    ] {
        assert!(metrics.contains(&line), "no `{line}` in:\n{metrics}");
    }
}

#[tokio::test]
async fn a_pooled_connection_the_upstream_closed_is_counted_upstream_closed() {
    // Kept alive by its head, but the origin closes after it.
    let origin =
        RawOrigin::start(|_| Reply::closing(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"))
            .await;
    let gw = TestGateway::start(&config(origin.addr, "", "")).await;
    assert_eq!(get(&gw, "/").await, 200);
    // The admin API's idle count sweeps the pool, which finds the close.
    closed_for(&gw, "upstream_closed", 1).await;
    assert_eq!(get(&gw, "/").await, 200);
    assert_eq!(counts(&gw, "upstream_closed").await.0, 2);
    only(&gw, "upstream_closed").await;
}

#[tokio::test]
async fn a_connection_back_to_a_full_pool_is_counted_pool_full() {
    let (up, gate) = held("ok").await;
    let gw = TestGateway::start(&config(up.addr, "", "pool = { max_idle_per_endpoint = 1 }")).await;
    let c = fresh_client();
    let url = gw.url("web", "/");
    let both = tokio::spawn(async move {
        let (a, b) = tokio::join!(text(c.get(&url)), text(c.get(&url)));
        (a, b)
    });
    gate.arrived().await;
    gate.arrived().await;
    gate.release();
    gate.release();
    assert_eq!(both.await.unwrap(), ("ok".to_string(), "ok".to_string()));
    one_closed_for(&gw, "pool_full", 2).await;
    assert_eq!(endpoint_view(&gw).await["idle_connections"], 1);
}

#[tokio::test]
async fn a_client_leaving_mid_body_leaves_its_connection_counted_unfinished() {
    let up = Upstream::start(Default::default(), |_req| async move {
        http::Response::new(stalling_body("part"))
    })
    .await;
    let gw = TestGateway::start(&config(up.addr, "", "")).await;
    let mut s = TcpStream::connect(gw.addr("web")).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    read_until(&mut s, &mut Vec::new(), b"part").await;
    drop(s);
    one_closed_for(&gw, "unfinished", 1).await;
}

#[tokio::test]
async fn a_drained_endpoints_idle_connections_are_counted_drained() {
    let up = Upstream::fixed("ok").await;
    let gw = TestGateway::start(&config(up.addr, "", "")).await;
    assert_eq!(get(&gw, "/").await, 200);
    let path = format!("/upstreams/backend/endpoints/{}/drain", up.addr);
    let resp = fresh_client()
        .post(gw.admin_url(&path))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    one_closed_for(&gw, "drained", 1).await;
}

#[tokio::test]
async fn a_connection_handed_to_a_tunnel_is_counted_upgraded() {
    // The origin switches protocols, then closes: the tunnel ends with it.
    let addr = raw_upstream(
        b"HTTP/1.1 101 Switching Protocols\r\nupgrade: raw\r\nconnection: upgrade\r\n\r\n",
    )
    .await;
    let gw = TestGateway::start(&config(addr, "", "")).await;
    let mut s = TcpStream::connect(gw.addr("web")).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: raw\r\n\r\n")
        .await
        .unwrap();
    let seen = read_to_close(&mut s).await;
    assert!(seen.starts_with("HTTP/1.1 101"), "{seen}");
    // The client's side of the tunnel ends too.
    drop(s);
    one_closed_for(&gw, "upgraded", 1).await;
}

#[tokio::test]
async fn an_http2_connection_ending_is_counted_http2_ended() {
    let opts = UpstreamOptions {
        http2_only: true,
        tls: None,
    };
    let up = Upstream::start(opts, |_req| async move { ok("ok") }).await;
    let gw = TestGateway::start(&config(up.addr, "", "protocol = \"http2\"")).await;
    for _ in 0..3 {
        assert_eq!(get(&gw, "/").await, 200);
    }
    assert_eq!(counts(&gw, "http2_ended").await, (1, 0));
    up.kill();
    one_closed_for(&gw, "http2_ended", 1).await;
    assert_eq!(endpoint_view(&gw).await["open_connections"], 0);
}
