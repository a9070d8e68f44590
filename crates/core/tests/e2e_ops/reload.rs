//! Reload: a valid change applies to new requests and keeps the listener socket and the
//! upstream pools; an invalid config is refused whole, with every error located, and the
//! old one keeps serving; listeners are bound and stopped with the config; and reloads
//! under load fail no request.

use crate::*;
use gatehouse_test_support::{TestGateway, Upstream};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

fn two_routes(upstream: SocketAddr, body: &str) -> String {
    config(upstream, "match = { prefix = \"/api\" }", "").replace(
        "[[upstreams]]",
        &format!(
            "[[routes]]\nname = \"local\"\nrespond = {{ status = 200, body = \"{body}\" }}\n\n[[upstreams]]"
        ),
    )
}

async fn text(url: String) -> String {
    reqwest::get(url).await.unwrap().text().await.unwrap()
}

async fn upstreams(gw: &TestGateway) -> serde_json::Value {
    reqwest::get(gw.admin_url("/upstreams"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn valid_reload_changes_routes_and_keeps_socket_and_pools() {
    let up = Upstream::fixed("from upstream").await;
    let gw = TestGateway::start(&two_routes(up.addr, "one")).await;
    let addr = gw.addr("web");
    // A kept-alive connection opened before the reload.
    let mut kept = TcpStream::connect(addr).await.unwrap();
    kept.write_all(b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    assert!(read_response(&mut kept).await.ends_with("one"));
    let client = reqwest::Client::new();
    let r = client.get(gw.url("web", "/api/1")).send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), "from upstream");
    let before = upstreams(&gw).await;
    assert_eq!(
        before["upstreams"][0]["endpoints"][0]["open_connections"],
        1
    );

    assert_eq!(
        gw.gw
            .reload_text(&two_routes(up.addr, "two"))
            .await
            .unwrap(),
        2
    );

    assert_eq!(gw.addr("web"), addr, "listener was rebound");
    assert_eq!(text(gw.url("web", "/x")).await, "two");
    // The old connection still works and sees the new routes.
    kept.write_all(b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    assert!(read_response(&mut kept).await.ends_with("two"));
    // Same upstream spec: the same endpoint, its pooled connection and its counters.
    let after = upstreams(&gw).await;
    let ep = &after["upstreams"][0]["endpoints"][0];
    assert_eq!(ep["open_connections"], 1, "{after}");
    assert_eq!(ep["requests"], 1, "{after}");
    let r = client.get(gw.url("web", "/api/2")).send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), "from upstream");
    let again = upstreams(&gw).await;
    let ep = &again["upstreams"][0]["endpoints"][0];
    assert_eq!(ep["requests"], 2, "{again}");
    assert_eq!(
        ep["open_connections"], 1,
        "the pooled connection was not reused"
    );
}

#[tokio::test]
async fn invalid_reload_is_refused_whole_with_every_error() {
    let up = Upstream::fixed("up").await;
    let gw = TestGateway::start(&two_routes(up.addr, "one")).await;
    let bad = r#"
[[listeners]]
name = "web"
listen = "127.0.0.1:0"
max_connections = 0

[[routes]]
name = "local"
respond = { status = 200, body = "bad" }

[[routes]]
name = "api"
upstream = "missing"
[routes.timeouts]
request = "soon"

[[upstreams]]
name = "backend"
endpoints = ["no-port"]
"#;
    let err = gw.gw.reload_text(bad).await.unwrap_err();
    assert_eq!(
        err.0,
        vec![
            "test.toml:5: listeners[0].max_connections: must be at least 1",
            "test.toml:15: routes[1].timeouts.request: `soon` is not a duration; \
             expected a form like `30s`, `250ms`, `2m`",
            "test.toml:19: upstreams[0].endpoints[0]: `no-port` is not `host:port`",
        ]
    );
    // Nothing of it applied: the old routes serve, the generation stays.
    assert_eq!(text(gw.url("web", "/x")).await, "one");
    assert_eq!(gw.gw.snapshot().generation, 1);
}

#[tokio::test]
async fn reload_binds_added_listeners_and_stops_removed_ones() {
    let base = "
[access_log]
enabled = false

[[listeners]]
name = \"web\"
listen = \"127.0.0.1:0\"

[[routes]]
name = \"home\"
respond = { status = 200, body = \"hi\" }
";
    let gw = TestGateway::start(base).await;
    assert!(gw.gw.listener_addr("extra").is_none());
    let added = format!("{base}\n[[listeners]]\nname = \"extra\"\nlisten = \"127.0.0.1:0\"\n");
    gw.gw.reload_text(&added).await.unwrap();
    let extra = gw.addr("extra");
    assert_eq!(text(gw.url("extra", "/")).await, "hi");

    gw.gw.reload_text(base).await.unwrap();
    assert!(gw.gw.listener_addr("extra").is_none());
    // The removed listener's socket closes once its accept loop sees the drain.
    eventually("the removed listener to refuse connections", || async {
        TcpStream::connect(extra).await.err()
    })
    .await;
    assert_eq!(text(gw.url("web", "/")).await, "hi");
}

/// 8 clients send 2,000 requests in all while 20 reloads alternate two configs (one of
/// which also changes the upstream's pool, so its group is rebuilt): none fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_under_load_fail_no_request() {
    const CLIENTS: usize = 8;
    const PER_CLIENT: usize = 250;
    const RELOADS: usize = 20;
    let up = Upstream::fixed("up").await;
    let a = two_routes(up.addr, "a");
    let b = two_routes(up.addr, "b").replace(
        &format!("endpoints = [\"{}\"]", up.addr),
        &format!(
            "endpoints = [\"{}\"]\n[upstreams.pool]\nmax_idle_per_endpoint = 8",
            up.addr
        ),
    );
    let gw = TestGateway::start(&a).await;
    let (done_tx, done_rx) = tokio::sync::watch::channel(0usize);
    let done_tx = std::sync::Arc::new(done_tx);
    let mut clients = Vec::new();
    for i in 0..CLIENTS {
        let (url_api, url_local) = (gw.url("web", "/api/x"), gw.url("web", "/local"));
        let done = done_tx.clone();
        clients.push(tokio::spawn(async move {
            let c = reqwest::Client::new();
            let mut failed = Vec::new();
            for n in 0..PER_CLIENT {
                let url = if (i + n) % 2 == 0 {
                    &url_api
                } else {
                    &url_local
                };
                match c.get(url).send().await {
                    Ok(r) if r.status() == 200 => {
                        let body = r.text().await.unwrap_or_default();
                        if !["up", "a", "b"].contains(&body.as_str()) {
                            failed.push(format!("{url}: body {body:?}"));
                        }
                    }
                    Ok(r) => failed.push(format!("{url}: status {}", r.status())),
                    Err(e) => failed.push(format!("{url}: {e}")),
                }
                done.send_modify(|d| *d += 1);
            }
            failed
        }));
    }
    let mut done = done_rx;
    for i in 0..RELOADS {
        // Spread the reloads over the run.
        let at = (i + 1) * CLIENTS * PER_CLIENT / (RELOADS + 2);
        done.wait_for(|d| *d >= at).await.unwrap();
        let text = if i % 2 == 0 { &b } else { &a };
        gw.gw.reload_text(text).await.unwrap();
    }
    let mut failed = Vec::new();
    for c in clients {
        failed.extend(c.await.unwrap());
    }
    assert!(
        failed.is_empty(),
        "{} failed: {:?}",
        failed.len(),
        &failed[..failed.len().min(10)]
    );
    assert_eq!(*done.borrow(), CLIENTS * PER_CLIENT);
    assert_eq!(gw.gw.snapshot().generation, RELOADS as u64 + 1);
    let metrics = gw.gw.metrics_text();
    assert!(
        metrics.contains("gatehouse_reloads_total{result=\"success\"} 20"),
        "{metrics}"
    );
}
