//! Health end to end, on tokio's paused clock: active checks take a failing endpoint
//! out and bring it back; outlier detection ejects on consecutive 5xx with a back-off
//! that grows, within the group's ejection cap; an empty healthy set answers 503 with
//! `Retry-After` at once, unless panic mode sends to every endpoint; the breaker opens,
//! rejects without touching the upstream, half-opens and closes.

use crate::*;
use gatehouse_core::upstream::Endpoint;
use gatehouse_test_support::{TestGateway, Upstream, UpstreamOptions};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;
use tokio::time::Instant;

/// An upstream answering every request with the status held in the returned cell,
/// and its name as the body.
pub async fn switchable(name: &'static str) -> (Upstream, Arc<AtomicU16>) {
    let status = Arc::new(AtomicU16::new(200));
    let s = status.clone();
    let up = Upstream::start(UpstreamOptions::default(), move |_req| {
        let code = s.load(Ordering::Relaxed);
        async move {
            let mut r = ok(name);
            *r.status_mut() = http::StatusCode::from_u16(code).unwrap();
            r
        }
    })
    .await;
    (up, status)
}

/// The endpoint at `addr` in the running config's `backend` group.
pub fn endpoint(gw: &TestGateway, addr: SocketAddr) -> Arc<Endpoint> {
    let snap = gw.gw.snapshot();
    snap.upstreams["backend"]
        .endpoint(&addr.to_string())
        .unwrap()
}

/// Advances the paused clock in 50 ms steps until `cond` holds; returns how long that
/// took. Bounded, so a broken condition fails instead of hanging.
pub async fn advance_until(what: &str, mut cond: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    for _ in 0..2_000 {
        if cond() {
            return start.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what} did not happen within 100 s");
}

/// Sends `n` GETs and returns the bodies of the answers.
pub async fn bodies(gw: &TestGateway, n: usize) -> Vec<String> {
    let c = fresh_client();
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(text(c.get(gw.url("web", "/"))).await);
    }
    out
}

const CHECK: &str = r#"
[upstreams.health_check]
path = "/health"
interval = "1s"
jitter = "100ms"
timeout = "500ms"
rise = 2
fall = 2
"#;

#[tokio::test(start_paused = true)]
async fn an_active_check_takes_a_failing_endpoint_out_and_brings_it_back() {
    let (a, _) = switchable("a").await;
    let (b, b_status) = switchable("b").await;
    let gw = TestGateway::start(&config_endpoints(&[a.addr, b.addr], "", CHECK)).await;
    let eb = endpoint(&gw, b.addr);
    advance_until("the first checks", || {
        eb.health.check_state().last_ok.is_some()
    })
    .await;
    b_status.store(503, Ordering::Relaxed);
    let out = advance_until("b marked down", || eb.health.is_down()).await;
    // fall = 2 checks at a 1 s interval (plus up to 100 ms of jitter each).
    assert!(out <= Duration::from_millis(2_300), "down after {out:?}");
    assert!(bodies(&gw, 20).await.iter().all(|b| b == "a"));
    let err = eb.health.check_state().last_error.unwrap();
    assert!(err.contains("503"), "{err}");

    b_status.store(200, Ordering::Relaxed);
    let back = advance_until("b back up", || eb.health.usable()).await;
    assert!(back <= Duration::from_millis(2_300), "up after {back:?}");
    assert!(bodies(&gw, 20).await.iter().any(|b| b == "b"));
    println!("active check: ejected after {out:?}, restored after {back:?}");
}

#[tokio::test(start_paused = true)]
async fn a_tcp_check_notices_a_killed_endpoint_and_its_return() {
    let a = Upstream::fixed("a").await;
    let b = Upstream::fixed("b").await;
    let check = "[upstreams.health_check]\ntype = \"tcp\"\ninterval = \"1s\"\nrise = 1\nfall = 1\n";
    let gw = TestGateway::start(&config_endpoints(&[a.addr, b.addr], "", check)).await;
    let eb = endpoint(&gw, b.addr);
    advance_until("the first check", || {
        eb.health.check_state().last_ok == Some(true)
    })
    .await;
    b.kill();
    advance_until("b marked down", || eb.health.is_down()).await;
    let _b = Upstream::start_on(b.addr, UpstreamOptions::default(), |_| async { ok("b") }).await;
    advance_until("b back up", || eb.health.usable()).await;
}

#[tokio::test(start_paused = true)]
async fn an_http_check_can_match_the_body() {
    let good = Upstream::fixed("status: ready").await;
    let bad = Upstream::fixed("status: starting").await;
    let check = "[upstreams.health_check]\ninterval = \"1s\"\nrise = 1\nfall = 1\nexpect_status = \"200\"\nexpect_body = \"ready\"\n";
    let gw = TestGateway::start(&config_endpoints(&[good.addr, bad.addr], "", check)).await;
    let (eg, eb) = (endpoint(&gw, good.addr), endpoint(&gw, bad.addr));
    advance_until("bad marked down", || eb.health.is_down()).await;
    assert!(eg.health.usable());
    let err = eb.health.check_state().last_error.unwrap();
    assert!(err.contains("does not contain `ready`"), "{err}");
    // The check request carried the configured path and our user agent.
    let head = bad.last();
    assert_eq!(head.uri.path(), "/");
    assert_eq!(head.headers["user-agent"], "gatehouse-health-check");
}

const OUTLIER: &str = r#"
[upstreams.outlier]
consecutive_failures = 3
base_ejection = "10s"
max_ejection = "40s"
max_ejected_percent = 50
"#;

#[tokio::test(start_paused = true)]
async fn consecutive_5xx_eject_an_endpoint_for_a_growing_back_off() {
    let (a, _) = switchable("a").await;
    let (b, b_status) = switchable("b").await;
    b_status.store(500, Ordering::Relaxed);
    let gw = TestGateway::start(&config_endpoints(&[a.addr, b.addr], "", OUTLIER)).await;
    let eb = endpoint(&gw, b.addr);
    // Round robin: b sees every other request, and is out after its third 500.
    bodies(&gw, 6).await;
    assert!(eb.health.is_ejected());
    let left = eb.health.ejection_left().unwrap();
    assert!(left > Duration::from_secs(9) && left <= Duration::from_secs(10));
    assert!(bodies(&gw, 20).await.iter().all(|x| x == "a"));
    assert_eq!(b.count(), 3);

    tokio::time::sleep(Duration::from_secs(10)).await;
    bodies(&gw, 6).await;
    // Ejected again soon after its return: twice as long this time.
    let left = eb.health.ejection_left().unwrap();
    assert!(left > Duration::from_secs(19), "{left:?}");
    assert_eq!(eb.health.ejections.load(Ordering::Relaxed), 2);
}

#[tokio::test(start_paused = true)]
async fn ejection_never_takes_more_than_the_cap() {
    let (a, a_status) = switchable("a").await;
    let (b, b_status) = switchable("b").await;
    a_status.store(500, Ordering::Relaxed);
    b_status.store(500, Ordering::Relaxed);
    let gw = TestGateway::start(&config_endpoints(&[a.addr, b.addr], "", OUTLIER)).await;
    bodies(&gw, 30).await;
    let ejected = [a.addr, b.addr]
        .iter()
        .filter(|x| endpoint(&gw, **x).health.is_ejected())
        .count();
    assert_eq!(ejected, 1, "50% of two endpoints is one");
}

#[tokio::test(start_paused = true)]
async fn no_healthy_endpoint_answers_503_with_retry_after_at_once() {
    let (a, a_status) = switchable("a").await;
    a_status.store(500, Ordering::Relaxed);
    let outlier = "[upstreams.outlier]\nconsecutive_failures = 1\nbase_ejection = \"7s\"\nmax_ejected_percent = 100\n";
    let gw = TestGateway::start(&config(a.addr, "", outlier)).await;
    let c = fresh_client();
    assert_eq!(
        c.get(gw.url("web", "/")).send().await.unwrap().status(),
        500
    );
    let r = c.get(gw.url("web", "/")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "7");
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"], "no_endpoint");
    assert!(body["message"]
        .as_str()
        .unwrap()
        .contains("no healthy endpoint"));
    assert!(body["request_id"].as_str().is_some());
    assert_eq!(a.count(), 1, "the 503 did not touch the upstream");
}

#[tokio::test(start_paused = true)]
async fn panic_mode_sends_to_every_endpoint_when_none_is_healthy() {
    let (a, a_status) = switchable("a").await;
    a_status.store(503, Ordering::Relaxed);
    let extra = format!("panic_mode = true\n{CHECK}");
    let gw = TestGateway::start(&config(a.addr, "", &extra)).await;
    let ea = endpoint(&gw, a.addr);
    advance_until("a marked down", || ea.health.is_down()).await;
    let r = fresh_client().get(gw.url("web", "/")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.text().await.unwrap(), "a", "the upstream's own answer");
}

#[tokio::test(start_paused = true)]
async fn the_breaker_opens_rejects_then_half_opens_and_closes() {
    let (a, a_status) = switchable("a").await;
    a_status.store(500, Ordering::Relaxed);
    let breaker = "[upstreams.breaker]\nconsecutive_failures = 3\nopen_for = \"30s\"\n";
    let gw = TestGateway::start(&config(a.addr, "", breaker)).await;
    let c = fresh_client();
    let status = |r: reqwest::Response| r.status().as_u16();
    for _ in 0..3 {
        assert_eq!(status(c.get(gw.url("web", "/")).send().await.unwrap()), 500);
    }
    let r = c.get(gw.url("web", "/")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "30");
    assert!(r.text().await.unwrap().contains("open circuit breaker"));
    assert_eq!(a.count(), 3);

    tokio::time::sleep(Duration::from_secs(30)).await;
    a_status.store(200, Ordering::Relaxed);
    assert_eq!(text(c.get(gw.url("web", "/"))).await, "a");
    let snap = gw.gw.snapshot();
    assert_eq!(snap.upstreams["backend"].breaker.state(), "closed");
    assert_eq!(status(c.get(gw.url("web", "/")).send().await.unwrap()), 200);
}

#[tokio::test]
async fn the_breaker_limits_requests_in_flight() {
    let (a, gate) = held("a").await;
    let gw = TestGateway::start(&config(
        a.addr,
        "",
        "[upstreams.breaker]\nmax_in_flight = 1\n",
    ))
    .await;
    let c = fresh_client();
    let held = tokio::spawn(c.get(gw.url("web", "/")).send());
    gate.arrived().await;
    let r = c.get(gw.url("web", "/")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "1");
    gate.release();
    assert_eq!(held.await.unwrap().unwrap().status(), 200);
}

#[tokio::test]
async fn the_breaker_limits_open_connections() {
    let (a, gate) = held("a").await;
    let extra = "[upstreams.breaker]\nmax_connections = 1\n";
    let gw = TestGateway::start(&config(a.addr, "", extra)).await;
    let c = fresh_client();
    let busy = tokio::spawn(c.get(gw.url("web", "/")).send());
    gate.arrived().await;
    // The only connection is busy; a second would go past the limit.
    let r = c.get(gw.url("web", "/")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    assert!(r.text().await.unwrap().contains("connections open"));
    gate.release();
    assert_eq!(busy.await.unwrap().unwrap().status(), 200);
}
