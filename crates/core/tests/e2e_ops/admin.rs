//! The admin API: health and readiness (503 once shutdown begins), Prometheus metrics,
//! /config generations, POST /reload from a file source, and the bearer token.

use crate::*;
use gatehouse_core::{Gateway, Source};
use gatehouse_test_support::{TestGateway, Upstream};

async fn get(url: String) -> (u16, String) {
    let r = reqwest::get(url).await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

async fn json(url: String) -> serde_json::Value {
    reqwest::get(url).await.unwrap().json().await.unwrap()
}

#[tokio::test]
async fn healthz_and_readyz_turn_503_once_shutdown_begins() {
    let up = Upstream::fixed("up").await;
    let gw = TestGateway::start(&config(up.addr, "", "")).await;
    assert_eq!(get(gw.admin_url("/healthz")).await.0, 200);
    let (status, body) = get(gw.admin_url("/readyz")).await;
    assert_eq!((status, body.contains("ready")), (200, true));
    assert!(gw.gw.shutdown().await);
    let (status, body) = get(gw.admin_url("/readyz")).await;
    assert_eq!(status, 503);
    assert!(body.contains("draining"), "{body}");
    // Liveness is not readiness: the process is still healthy while draining.
    assert_eq!(get(gw.admin_url("/healthz")).await.0, 200);
}

#[tokio::test]
async fn metrics_count_requests_durations_connections_and_failed_reloads() {
    let up = Upstream::fixed("up").await;
    let toml = config(up.addr, "match = { prefix = \"/api\" }", "");
    let gw = TestGateway::start(&toml).await;
    let c = reqwest::Client::new();
    for _ in 0..3 {
        let r = c.get(gw.url("web", "/api/x")).send().await.unwrap();
        assert_eq!(r.text().await.unwrap(), "up");
    }
    let r = c.get(gw.url("web", "/nowhere")).send().await.unwrap();
    expect_error(r, 404, "no_route").await;
    assert!(gw
        .gw
        .reload_text("[[listeners]]\nname = 1\n")
        .await
        .is_err());

    let text = eventually("the requests to be counted", || async {
        let (status, text) = get(gw.admin_url("/metrics")).await;
        assert_eq!(status, 200);
        let want = [
            "gatehouse_requests_total{route=\"api\",upstream=\"backend\",class=\"2xx\"} 3",
            "gatehouse_requests_total{route=\"-\",upstream=\"-\",class=\"4xx\"} 1",
        ];
        want.iter().all(|w| text.contains(w)).then_some(text)
    })
    .await;
    for line in [
        "# TYPE gatehouse_request_duration_seconds histogram",
        "gatehouse_request_duration_seconds_count{route=\"api\"} 3",
        "gatehouse_request_duration_seconds_bucket{le=\"+Inf\",route=\"api\"} 3",
        "# TYPE gatehouse_active_connections gauge",
        "gatehouse_active_connections{listener=\"web\"} 1",
        "gatehouse_reloads_total{result=\"failure\"} 1",
        "gatehouse_config_generation 1",
    ] {
        assert!(text.contains(line), "missing `{line}` in:\n{text}");
    }
}

#[tokio::test]
async fn config_generation_and_hash_change_on_reload() {
    let up = Upstream::fixed("up").await;
    let toml = config(up.addr, "", "");
    let gw = TestGateway::start(&toml).await;
    let first = json(gw.admin_url("/config")).await;
    assert_eq!(first["generation"], 1);
    assert_eq!(first["routes"], serde_json::json!(["api"]));
    assert_eq!(
        first["listeners"][0]["address"],
        gw.addr("web").to_string().as_str()
    );
    gw.gw
        .reload_text(&toml.replace("name = \"api\"", "name = \"api2\""))
        .await
        .unwrap();
    let second = json(gw.admin_url("/config")).await;
    assert_eq!(second["generation"], 2);
    assert_eq!(second["routes"], serde_json::json!(["api2"]));
    assert_ne!(second["hash"], first["hash"]);
    // A refused reload changes neither.
    assert!(gw.gw.reload_text("nonsense = [").await.is_err());
    let third = json(gw.admin_url("/config")).await;
    assert_eq!(third["generation"], 2);
    assert_eq!(third["hash"], second["hash"]);
}

#[tokio::test]
async fn post_reload_rereads_the_file_and_reports_every_error() {
    let up = Upstream::fixed("up").await;
    let path = temp_path("gatehouse.toml");
    let good = config(up.addr, "", "");
    std::fs::write(&path, &good).unwrap();
    let gw = Gateway::start(Source::File(path.clone())).await.unwrap();
    let admin = format!("http://{}", gw.admin_addr().unwrap());
    let c = reqwest::Client::new();

    std::fs::write(&path, good.replace("name = \"api\"", "name = \"renamed\"")).unwrap();
    let r = c.post(format!("{admin}/reload")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["status"], "reloaded");
    assert_eq!(body["generation"], 2);
    assert_eq!(gw.snapshot().spec.routes[0].name, "renamed");

    // Two errors, each reported with its line.
    let bad = good
        .replace("upstream = \"backend\"", "upstream = \"nope\"")
        .replace("endpoints = [", "balancer = \"fastest\"\nendpoints = [");
    std::fs::write(&path, &bad).unwrap();
    let r = c.post(format!("{admin}/reload")).send().await.unwrap();
    assert_eq!(r.status(), 422);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["status"], "rejected");
    assert_eq!(body["generation"], 2);
    let file = path.display().to_string();
    assert_eq!(
        body["errors"],
        serde_json::json!([
            format!("{file}:14: routes[0].upstream: no upstream is named `nope`"),
            format!("{file}:19: upstreams[0].balancer: `fastest` is not a balancer; expected `round_robin`, `least_conn`, `random`, `p2c`, `consistent_hash` or `ip_hash`"),
        ]),
        "{bad}"
    );
    // GET is not how to reload.
    let r = c.get(format!("{admin}/reload")).send().await.unwrap();
    assert_eq!(r.status(), 405);
    assert!(gw.shutdown().await);
}

#[tokio::test]
async fn admin_token_is_required_when_set() {
    let up = Upstream::fixed("up").await;
    let toml = config(up.addr, "", "").replace(
        "listen = \"127.0.0.1:0\"\n\n[access_log]",
        "listen = \"127.0.0.1:0\"\ntoken = \"s3cret\"\n\n[access_log]",
    );
    assert!(toml.contains("s3cret"));
    let gw = TestGateway::start(&toml).await;
    let c = reqwest::Client::new();
    for path in ["/healthz", "/metrics", "/config", "/upstreams"] {
        let r = c.get(gw.admin_url(path)).send().await.unwrap();
        assert_eq!(r.status(), 401, "{path} without a token");
        let r = c
            .get(gw.admin_url(path))
            .header("authorization", "Bearer wrong")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{path} with a wrong token");
        let r = c
            .get(gw.admin_url(path))
            .header("authorization", "Bearer s3cret")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path} with the token");
    }
    let r = c.post(gw.admin_url("/reload")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(gw.gw.snapshot().generation, 1);
}
