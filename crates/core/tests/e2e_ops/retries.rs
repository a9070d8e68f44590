//! Retries end to end: a killed endpoint under load costs no idempotent request; a
//! status in `on_status` is retried on another endpoint for idempotent methods only;
//! a small body is buffered and sent again whole, a large one is not retried; the
//! budget caps retries; a per-try timeout moves on to another endpoint.

use crate::health::switchable;
use crate::*;
use gatehouse_test_support::{TestGateway, Upstream, UpstreamOptions};
use http_body_util::BodyExt;
use std::sync::atomic::Ordering;
use std::sync::Arc;

const RETRY: &str = "[upstreams.retry]\nretries = 2\nbackoff = \"1ms\"\nmax_backoff = \"5ms\"\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_an_endpoint_under_load_fails_no_idempotent_request() {
    let a = Upstream::fixed("a").await;
    let b = Upstream::fixed("b").await;
    let gw = TestGateway::start(&config_endpoints(&[a.addr, b.addr], "", RETRY)).await;
    let url = gw.url("web", "/");
    let sent = Arc::new(Progress::default());
    let mut load = Vec::new();
    for _ in 0..8 {
        let (url, sent) = (url.clone(), sent.clone());
        load.push(tokio::spawn(async move {
            // Kept-alive connections, so pooled upstream connections die mid-use too.
            let c = reqwest::Client::new();
            let mut failed = Vec::new();
            for _ in 0..150 {
                sent.tick();
                match c.get(&url).send().await {
                    Ok(r) if r.status() == 200 => {}
                    Ok(r) => failed.push(r.status().to_string()),
                    Err(e) => failed.push(e.to_string()),
                }
            }
            failed
        }));
    }
    sent.past(300).await;
    b.kill();
    let mut failed = Vec::new();
    for t in load {
        failed.extend(t.await.unwrap());
    }
    assert!(
        failed.is_empty(),
        "{} failed: {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
    assert!(b.count() > 50, "b served {} before it died", b.count());
}

#[tokio::test]
async fn a_retried_status_goes_to_another_endpoint_for_idempotent_methods_only() {
    let (a, _) = switchable("a").await;
    let (b, b_status) = switchable("b").await;
    b_status.store(503, Ordering::Relaxed);
    let gw = TestGateway::start(&config_endpoints(&[a.addr, b.addr], "", RETRY)).await;
    let c = fresh_client();
    for _ in 0..10 {
        let r = c.get(gw.url("web", "/")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.text().await.unwrap(), "a");
    }
    assert!(b.count() >= 5, "b was tried: {}", b.count());
    // POST is not idempotent: b's 503 comes back as it is.
    let mut statuses = Vec::new();
    for _ in 0..10 {
        statuses.push(
            c.post(gw.url("web", "/"))
                .body("x")
                .send()
                .await
                .unwrap()
                .status()
                .as_u16(),
        );
    }
    assert!(statuses.contains(&503), "{statuses:?}");
    let snap = gw.gw.snapshot();
    assert!(
        snap.upstreams["backend"]
            .budget
            .retries
            .load(Ordering::Relaxed)
            >= 5
    );
}

/// An upstream that answers `status` with the request body it read.
async fn echo(status: u16) -> Upstream {
    Upstream::start(UpstreamOptions::default(), move |req| async move {
        let body = req.into_body().collect().await.unwrap().to_bytes();
        let mut r = http::Response::new(gatehouse_test_support::upstream::full(body));
        *r.status_mut() = http::StatusCode::from_u16(status).unwrap();
        r
    })
    .await
}

#[tokio::test]
async fn a_small_body_is_buffered_and_sent_again_whole_a_large_one_is_not_retried() {
    let a = echo(200).await;
    let b = echo(503).await;
    let extra = format!("{RETRY}buffer_body = \"1KiB\"\n");
    let gw = TestGateway::start(&config_endpoints(&[a.addr, b.addr], "", &extra)).await;
    let c = fresh_client();
    for i in 0..6 {
        let body = format!("payload {i}");
        let r = c
            .put(gw.url("web", "/"))
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(
            r.text().await.unwrap(),
            body,
            "the retry carried the whole body"
        );
    }
    let big = "x".repeat(4096);
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(
            c.put(gw.url("web", "/"))
                .body(big.clone())
                .send()
                .await
                .unwrap()
                .status()
                .as_u16(),
        );
    }
    assert!(
        statuses.contains(&503),
        "a streamed body is not sent twice: {statuses:?}"
    );
}

#[tokio::test]
async fn the_budget_caps_retries() {
    let (a, _) = switchable("a").await;
    let (b, b_status) = switchable("b").await;
    b_status.store(503, Ordering::Relaxed);
    let extra = format!("{RETRY}budget_percent = 0\nmin_retries_per_second = 0\n");
    let gw = TestGateway::start(&config_endpoints(&[a.addr, b.addr], "", &extra)).await;
    let answers = crate::health::bodies(&gw, 10).await;
    assert_eq!(
        answers.iter().filter(|x| *x == "b").count(),
        5,
        "{answers:?}"
    );
    let _ = a;
}

#[tokio::test(start_paused = true)]
async fn a_per_try_timeout_moves_on_to_another_endpoint() {
    let (silent, _task) = silent_upstream().await;
    let a = Upstream::fixed("a").await;
    let extra = format!("{RETRY}per_try_timeout = \"2s\"\n");
    let gw = TestGateway::start(&config_endpoints(&[silent, a.addr], "", &extra)).await;
    let answers = crate::health::bodies(&gw, 4).await;
    assert!(answers.iter().all(|x| x == "a"), "{answers:?}");
}
