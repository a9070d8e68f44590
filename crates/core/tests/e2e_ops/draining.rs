//! Draining end to end: an endpoint drained through the admin API under load gets no
//! new request and no request fails; undrain brings it back; an endpoint removed by a
//! reload finishes the request it holds; the admin API and /metrics show per-endpoint
//! state; sticky cookies pin a client to its endpoint across a reload and fall back
//! when that endpoint is drained.

use crate::health::endpoint;
use crate::*;
use gatehouse_test_support::{TestGateway, Upstream};
use std::sync::atomic::Ordering;
use std::sync::Arc;

async fn post(url: String) -> serde_json::Value {
    let r = reqwest::Client::new().post(url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn draining_under_load_fails_nothing_and_undrain_brings_it_back() {
    let a = Upstream::fixed("a").await;
    let b = Upstream::fixed("b").await;
    let gw = TestGateway::start(&config_endpoints(&[a.addr, b.addr], "", "")).await;
    let url = gw.url("web", "/");
    let sent = Arc::new(Progress::default());
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut load = Vec::new();
    for _ in 0..6 {
        let (url, sent, stop) = (url.clone(), sent.clone(), stop.clone());
        load.push(tokio::spawn(async move {
            let c = reqwest::Client::new();
            let mut failed = 0;
            while !stop.load(Ordering::Relaxed) {
                sent.tick();
                match c.get(&url).send().await {
                    Ok(r) if r.status() == 200 => {}
                    _ => failed += 1,
                }
            }
            failed
        }));
    }
    sent.past(200).await;
    let path = format!("/upstreams/backend/endpoints/{}/drain", b.addr);
    let view = post(gw.admin_url(&path)).await;
    assert_eq!(view["state"], "draining");
    let eb = endpoint(&gw, b.addr);
    settles("b's in-flight requests to end", || {
        eb.in_flight.load(Ordering::Relaxed) == 0
    })
    .await;
    let before = b.count();
    let mark = sent.sent();
    sent.past(mark + 200).await;
    assert_eq!(b.count(), before, "a drained endpoint gets no new request");

    let list: serde_json::Value = reqwest::get(gw.admin_url("/upstreams"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let eps = list["upstreams"][0]["endpoints"].as_array().unwrap();
    let shown = eps
        .iter()
        .find(|e| e["address"] == b.addr.to_string())
        .unwrap();
    assert_eq!(shown["draining"], true);
    for key in [
        "state",
        "last_check",
        "ejections",
        "in_flight",
        "ewma_ms",
        "weight",
    ] {
        assert!(shown.get(key).is_some(), "{key} missing from {shown}");
    }

    let path = format!("/upstreams/backend/endpoints/{}/undrain", b.addr);
    assert_eq!(post(gw.admin_url(&path)).await["state"], "healthy");
    let mark = sent.sent();
    sent.past(mark + 200).await;
    stop.store(true, Ordering::Relaxed);
    let mut failed = 0;
    for t in load {
        failed += t.await.unwrap();
    }
    assert_eq!(failed, 0);
    assert!(b.count() > before, "undrained endpoint serves again");
}

#[tokio::test]
async fn admin_drain_rejects_unknown_names_and_metrics_show_endpoints() {
    let a = Upstream::fixed("a").await;
    let gw = TestGateway::start(&config(a.addr, "", "")).await;
    let c = reqwest::Client::new();
    for path in [
        "/upstreams/nope/endpoints/127.0.0.1:1/drain".to_string(),
        "/upstreams/backend/endpoints/127.0.0.1:1/drain".to_string(),
        format!("/upstreams/backend/endpoints/{}/explode", a.addr),
    ] {
        let r = c.post(gw.admin_url(&path)).send().await.unwrap();
        assert_eq!(r.status(), 404, "{path}");
    }
    text(c.get(gw.url("web", "/"))).await;
    let m = text(c.get(gw.admin_url("/metrics"))).await;
    let series = format!(
        "gatehouse_upstream_requests_total{{upstream=\"backend\",endpoint=\"{}\"}} 1",
        a.addr
    );
    assert!(m.contains(&series), "{m}");
    assert!(m.contains("gatehouse_upstream_breaker_state{upstream=\"backend\",state=\"closed\"} 1"));
    assert!(m.contains("gatehouse_upstream_healthy{"));
    assert_eq!(m.matches("# EOF").count(), 1);
}

#[tokio::test]
async fn an_endpoint_removed_by_a_reload_finishes_its_request() {
    let (b, gate) = held("b").await;
    let a = Upstream::fixed("a").await;
    let gw = TestGateway::start(&config(b.addr, "", "")).await;
    let c = fresh_client();
    let held = tokio::spawn(c.get(gw.url("web", "/")).send());
    gate.arrived().await;
    gw.gw.reload_text(&config(a.addr, "", "")).await.unwrap();
    // Every new request goes to the new endpoint: the removed one is not carried over.
    for _ in 0..10 {
        assert_eq!(text(c.get(gw.url("web", "/"))).await, "a");
    }
    gate.release();
    let r = held.await.unwrap().unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "b");
}

#[tokio::test]
async fn a_sticky_cookie_keeps_a_client_on_its_endpoint_across_a_reload() {
    let a = Upstream::fixed("a").await;
    let b = Upstream::fixed("b").await;
    let sticky =
        "[upstreams.sticky]\ncookie = \"gh\"\nsecret = \"a-secret-of-some-length\"\nttl = \"1h\"\n";
    let toml = config_endpoints(&[a.addr, b.addr], "", sticky);
    let gw = TestGateway::start(&toml).await;
    let c = fresh_client();
    let r = c.get(gw.url("web", "/")).send().await.unwrap();
    let set = r.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(
        set.contains("Max-Age=3600") && set.contains("HttpOnly"),
        "{set}"
    );
    let first = r.text().await.unwrap();
    let cookie = set.split(';').next().unwrap().to_string();
    let get = || c.get(gw.url("web", "/")).header("cookie", &cookie);
    for _ in 0..10 {
        let r = get().send().await.unwrap();
        assert!(
            r.headers().get("set-cookie").is_none(),
            "an honoured cookie is not set again"
        );
        assert_eq!(r.text().await.unwrap(), first);
    }
    // A reload that changes something else keeps the mapping.
    let reloaded = toml.replace("[[routes]]", "[[routes]]\nname = \"other\"\nmatch = { path = \"/other\" }\nrespond = { status = 204 }\n\n[[routes]]");
    gw.gw.reload_text(&reloaded).await.unwrap();
    for _ in 0..10 {
        assert_eq!(text(get()).await, first);
    }
    // Drained, its clients fall back to the other endpoint and get a new cookie.
    let pinned = if first == "a" { a.addr } else { b.addr };
    endpoint(&gw, pinned).drain(Duration::from_secs(1), Duration::from_secs(1));
    let r = get().send().await.unwrap();
    assert!(r.headers().get("set-cookie").is_some());
    assert_ne!(r.text().await.unwrap(), first);
    // A forged cookie is ignored.
    let r = c
        .get(gw.url("web", "/"))
        .header("cookie", "gh=0000000000000001.00")
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("set-cookie").is_some());
}
