//! 1 GiB up and 1 GiB down through the gateway, generated on the fly and counted on the
//! far side, while the process's resident memory is sampled: the gateway must stream
//! with bounded buffers, so RSS may grow by far less than the body (limit below).
//!
//! Client, gateway and upstream share this process, so the RSS bound covers all three.
//! The two tests take a lock so they never overlap and measure each other.

use super::common::{pattern, plain_listener, route_to, QUIET};
use bytes::Bytes;
use gatehouse_test_support::upstream::TestBody;
use gatehouse_test_support::{Conn, Proto, TestGateway, Upstream, UpstreamOptions};
use http::{Method, Response};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Incoming;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

const GIB: u64 = 1 << 30;
const CHUNK: usize = 64 * 1024;
/// Allowed RSS growth while a body many times larger streams through.
const MAX_GROWTH: u64 = 150 << 20;
/// A bound so that a stall fails the test instead of hanging it.
const PATIENCE: Duration = Duration::from_secs(300);

static ONE_AT_A_TIME: LazyLock<tokio::sync::Mutex<()>> =
    LazyLock::new(|| tokio::sync::Mutex::new(()));

/// The process's resident set size, from /proc/self/status.
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

/// The largest RSS seen; sampled by both ends as the bytes flow.
#[derive(Clone, Default)]
struct Peak(Arc<AtomicU64>);

impl Peak {
    fn sample(&self) {
        self.0.fetch_max(rss(), Ordering::Relaxed);
    }

    fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A body of `total` bytes made of one shared 64 KiB chunk, sampling RSS every 16 MiB.
fn generated(total: u64, peak: Peak) -> TestBody {
    let chunk = Bytes::from(pattern(CHUNK));
    let stream = futures_util::stream::unfold(0u64, move |sent| {
        let (chunk, peak) = (chunk.clone(), peak.clone());
        async move {
            if sent >= total {
                return None;
            }
            if sent % (16 << 20) == 0 {
                peak.sample();
            }
            let n = (total - sent).min(CHUNK as u64) as usize;
            let frame = Frame::data(chunk.slice(..n));
            Some((
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(frame),
                sent + n as u64,
            ))
        }
    });
    StreamBody::new(stream).boxed()
}

/// What a generated body must add up to: (length, byte sum).
fn expected(total: u64) -> (u64, u64) {
    let per_chunk: u64 = pattern(CHUNK).iter().map(|b| u64::from(*b)).sum();
    assert_eq!(total % CHUNK as u64, 0);
    (total, per_chunk * (total / CHUNK as u64))
}

/// Reads a body to its end: (length, byte sum), sampling RSS every 16 MiB.
async fn count(mut body: Incoming, peak: &Peak) -> (u64, u64) {
    let (mut n, mut sum, mut next_sample) = (0u64, 0u64, 0u64);
    while let Some(f) = body.frame().await {
        if let Ok(d) = f.unwrap().into_data() {
            n += d.len() as u64;
            sum += d.iter().map(|b| u64::from(*b)).sum::<u64>();
            if n >= next_sample {
                peak.sample();
                next_sample += 16 << 20;
            }
        }
    }
    (n, sum)
}

async fn gateway_to(up: &Upstream, h2: bool) -> TestGateway {
    let extra = if h2 { "protocol = \"http2\"" } else { "" };
    let routes = route_to(up.addr, extra);
    TestGateway::start(&format!("{QUIET}{}{routes}", plain_listener())).await
}

fn upstream_opts(h2: bool) -> UpstreamOptions {
    UpstreamOptions {
        http2_only: h2,
        tls: None,
    }
}

/// `h1` or `h2`, for the report line.
fn proto_name(h2: bool) -> &'static str {
    if h2 {
        "h2"
    } else {
        "h1"
    }
}

fn report(what: &str, started: Instant, base: u64, peak: &Peak) {
    let growth = peak.get().saturating_sub(base);
    eprintln!(
        "{what}: 1 GiB in {:.1?}, RSS {} MiB -> peak {} MiB (+{} MiB)",
        started.elapsed(),
        base >> 20,
        peak.get() >> 20,
        growth >> 20
    );
    assert!(
        growth < MAX_GROWTH,
        "{what}: RSS grew by {} MiB streaming 1 GiB",
        growth >> 20
    );
}

async fn upload(client: Proto, upstream_h2: bool) {
    let _one = ONE_AT_A_TIME.lock().await;
    let peak = Peak::default();
    let up_peak = peak.clone();
    let up = Upstream::start(upstream_opts(upstream_h2), move |req| {
        let peak = up_peak.clone();
        async move {
            let (n, sum) = count(req.into_body(), &peak).await;
            Response::new(gatehouse_test_support::full(format!("{n} {sum}")))
        }
    })
    .await;
    let gw = gateway_to(&up, upstream_h2).await;
    let mut conn = Conn::plain(gw.addr("web"), client).await;
    let base = rss();
    peak.sample();
    let started = Instant::now();
    let req = conn
        .request(Method::POST, "/upload")
        .body(generated(GIB, peak.clone()))
        .unwrap();
    let (parts, body) = tokio::time::timeout(PATIENCE, conn.fetch(req))
        .await
        .unwrap();
    assert_eq!(parts.status, 200);
    let (n, sum) = expected(GIB);
    assert_eq!(String::from_utf8_lossy(&body), format!("{n} {sum}"));
    report(
        &format!("upload {client:?} -> {} upstream", proto_name(upstream_h2)),
        started,
        base,
        &peak,
    );
}

async fn download(client: Proto, upstream_h2: bool) {
    let _one = ONE_AT_A_TIME.lock().await;
    let peak = Peak::default();
    let up_peak = peak.clone();
    let up = Upstream::start(upstream_opts(upstream_h2), move |_req| {
        let peak = up_peak.clone();
        async move { Response::new(generated(GIB, peak)) }
    })
    .await;
    let gw = gateway_to(&up, upstream_h2).await;
    let mut conn = Conn::plain(gw.addr("web"), client).await;
    let base = rss();
    peak.sample();
    let started = Instant::now();
    let req = conn
        .request(Method::GET, "/download")
        .body(gatehouse_test_support::empty())
        .unwrap();
    let resp = tokio::time::timeout(PATIENCE, conn.send(req))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resp.status(), 200);
    let got = tokio::time::timeout(PATIENCE, count(resp.into_body(), &peak))
        .await
        .unwrap();
    assert_eq!(got, expected(GIB));
    report(
        &format!(
            "download {client:?} <- {} upstream",
            proto_name(upstream_h2)
        ),
        started,
        base,
        &peak,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_gib_upload_h1_streams_in_bounded_memory() {
    upload(Proto::H1, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_gib_download_h1_streams_in_bounded_memory() {
    download(Proto::H1, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_gib_upload_h2_streams_in_bounded_memory() {
    upload(Proto::H2, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_gib_download_h2_streams_in_bounded_memory() {
    download(Proto::H2, true).await;
}
