//! End-to-end tests of the operational side: timeouts, limits, failure mapping, reload,
//! the admin API, the access log and graceful shutdown. Real sockets on 127.0.0.1 port 0,
//! real clients (reqwest, raw `TcpStream` for byte-level cases), the gateway in-process.
//!
//! Timing tests run on tokio's paused clock (`start_paused = true`): when every task is
//! waiting, time jumps to the next timer, so a 20 s timeout takes no real time and
//! "not before t" is shown with a `timeout` shorter than t. Nothing here sleeps to wait
//! for state; where state settles in another task, [`eventually`] yields with a bound.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod access_log;
mod admin;
mod auth;
mod auth_services;
mod balancing;
mod client_close;
mod conn_counts;
mod cors;
mod defer_accept;
mod discovery;
mod draining;
mod failures;
mod faults;
mod filters;
mod forwarding;
mod health;
mod jwt;
mod limits;
mod openapi;
mod parking;
mod pool;
mod rate_limits;
mod reload;
mod replace;
mod retries;
mod shutdown;
mod soak;
mod timeouts;
mod traffic;
mod transforms;
mod upstream_h1;
mod validation;

use gatehouse_test_support::upstream::{full, TestBody};
use gatehouse_test_support::Gate;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

/// An upstream that sends back the body it got, with its content type.
pub async fn echo() -> gatehouse_test_support::Upstream {
    gatehouse_test_support::Upstream::start(Default::default(), |req| async move {
        let ct = req.headers().get("content-type").cloned();
        let body = http_body_util::BodyExt::collect(req.into_body())
            .await
            .unwrap()
            .to_bytes();
        let mut resp = http::Response::new(full(body));
        if let Some(ct) = ct {
            resp.headers_mut().insert("content-type", ct);
        }
        resp
    })
    .await
}

/// A gateway config with one listener `web`, an `[admin]` on port 0, the access log off,
/// and one route `api` to upstream `backend` at `upstream`; `route_extra` and
/// `upstream_extra` are appended to the route's and the upstream's tables.
pub fn config(upstream: SocketAddr, route_extra: &str, upstream_extra: &str) -> String {
    config_endpoints(&[upstream], route_extra, upstream_extra)
}

/// [`config`] with several endpoints in `backend`.
pub fn config_endpoints(
    endpoints: &[SocketAddr],
    route_extra: &str,
    upstream_extra: &str,
) -> String {
    let endpoints: Vec<String> = endpoints.iter().map(|e| format!("\"{e}\"")).collect();
    let endpoints = endpoints.join(", ");
    format!(
        r#"
[admin]
listen = "127.0.0.1:0"

[access_log]
enabled = false

[[listeners]]
name = "web"
listen = "127.0.0.1:0"

[[routes]]
name = "api"
upstream = "backend"
{route_extra}

[[upstreams]]
name = "backend"
endpoints = [{endpoints}]
{upstream_extra}
"#
    )
}

/// Sends a request and returns its body text.
pub async fn text(req: reqwest::RequestBuilder) -> String {
    req.send().await.unwrap().text().await.unwrap()
}

/// Sends a request and returns its body as JSON.
pub async fn json(req: reqwest::RequestBuilder) -> serde_json::Value {
    req.send().await.unwrap().json().await.unwrap()
}

/// A gateway with one listener `web` (plus `listener_extra` in its table) and one route
/// answering 200 "hi" itself.
pub fn local_gateway(listener_extra: &str) -> String {
    format!(
        r#"
[access_log]
enabled = false

[[listeners]]
name = "web"
listen = "127.0.0.1:0"
{listener_extra}

[[routes]]
name = "home"
respond = {{ status = 200, body = "hi" }}
"#
    )
}

/// An upstream that accepts connections and reads, but never answers. The connections
/// stay open for as long as the returned task runs.
pub async fn silent_upstream() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = l.accept().await {
            held.push(tokio::spawn(drain_forever(s)));
        }
    });
    (addr, task)
}

async fn drain_forever(mut s: TcpStream) {
    let mut buf = [0u8; 4096];
    while let Ok(n) = s.read(&mut buf).await {
        if n == 0 {
            break;
        }
    }
    // Hold the socket open after the peer's half-close too.
    std::future::pending::<()>().await;
}

/// An upstream that reads one request head and answers with `bytes`, then closes.
pub async fn raw_upstream(bytes: &'static [u8]) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                read_head(&mut s).await;
                let _ = s.write_all(bytes).await;
                let _ = s.shutdown().await;
            });
        }
    });
    addr
}

async fn read_head(s: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    got
}

/// A body that sends `first` and then never ends.
pub fn stalling_body(first: &'static str) -> TestBody {
    use futures_util::StreamExt;
    use http_body_util::BodyExt;
    let s = futures_util::stream::once(async move {
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(hyper::body::Frame::data(
            bytes::Bytes::from_static(first.as_bytes()),
        ))
    })
    .chain(futures_util::stream::pending());
    BodyExt::boxed(http_body_util::StreamBody::new(s))
}

/// Reads from `s` until `want` has arrived (after what `seen` already holds), within
/// 10 s.
pub async fn read_until(s: &mut TcpStream, seen: &mut Vec<u8>, want: &[u8]) {
    let mut b = [0u8; 4096];
    while !seen.windows(want.len()).any(|w| w == want) {
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut b))
            .await
            .unwrap_or_else(|_| panic!("{:?} did not come", String::from_utf8_lossy(want)))
            .unwrap();
        assert_ne!(n, 0, "closed before {:?}", String::from_utf8_lossy(want));
        seen.extend_from_slice(&b[..n]);
    }
}

/// A 200 response with `body`.
pub fn ok(body: &'static str) -> http::Response<TestBody> {
    http::Response::new(full(body))
}

/// Sends `bytes` on a new connection and reads until the gateway closes it. A reset
/// after some bytes arrived ends the read like a close.
pub async fn raw_exchange(addr: SocketAddr, bytes: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    read_to_close(&mut s).await
}

/// Reads one HTTP/1.1 response with a Content-Length body from a kept-alive connection.
pub async fn read_response(s: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map(|v| v.trim().parse().unwrap())
                .unwrap_or(0);
            if got.len() >= end + 4 + len {
                return String::from_utf8_lossy(&got).into_owned();
            }
        }
        let n = s.read(&mut buf).await.unwrap();
        assert!(n > 0, "connection closed mid-response: {got:?}");
        got.extend_from_slice(&buf[..n]);
    }
}

/// Checks a local error reply: its status, a JSON body with `error` = `code`, the same
/// `status`, and a `request_id` equal to the X-Request-Id header. Returns the body.
pub async fn expect_error(resp: reqwest::Response, status: u16, code: &str) -> serde_json::Value {
    assert_eq!(resp.status(), status, "status");
    assert_eq!(resp.headers()["content-type"], "application/json");
    let id = resp.headers()["x-request-id"].to_str().unwrap().to_string();
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"], code, "{body}");
    assert_eq!(body["status"], status, "{body}");
    assert_eq!(body["request_id"], id.as_str(), "{body}");
    assert!(!id.is_empty());
    body
}

/// A client that never pools, so each request opens its own connection.
pub fn fresh_client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
}

pub use gatehouse_test_support::{dead_addr, eventually, read_to_close};

/// An upstream that holds every request at a [`Gate`] until the test releases it, then
/// answers 200 with `name`.
pub async fn held(name: &'static str) -> (gatehouse_test_support::Upstream, Gate) {
    let gate = Gate::default();
    let g = gate.clone();
    let up = gatehouse_test_support::Upstream::start(Default::default(), move |_req| {
        let g = g.clone();
        async move {
            g.pass().await;
            ok(name)
        }
    })
    .await;
    (up, gate)
}

/// A unique path under the system temp dir.
pub fn temp_path(name: &str) -> std::path::PathBuf {
    gatehouse_test_support::temp_path("e2e-ops", name)
}

/// The virtual time since `start`, for paused-clock assertions.
pub fn since(start: tokio::time::Instant) -> Duration {
    tokio::time::Instant::now() - start
}

/// A shared count of requests sent by load tasks, that a test can wait on.
#[derive(Default)]
pub struct Progress {
    sent: std::sync::atomic::AtomicUsize,
    moved: tokio::sync::Notify,
}

impl Progress {
    /// Counts one more request.
    pub fn tick(&self) {
        self.sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.moved.notify_waiters();
    }

    pub fn sent(&self) -> usize {
        self.sent.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Waits until more than `n` requests were sent (bounded: 30 s).
    pub async fn past(&self, n: usize) {
        let wait = async {
            loop {
                let moved = self.moved.notified();
                if self.sent() > n {
                    return;
                }
                moved.await;
            }
        };
        tokio::time::timeout(Duration::from_secs(30), wait)
            .await
            .unwrap_or_else(|_| panic!("load stalled before {n} requests"));
    }
}

/// Yields until `cond` holds, for state another thread settles (bounded: 10 s).
pub async fn settles(what: &str, cond: impl Fn() -> bool) {
    let wait = async {
        while !cond() {
            tokio::task::yield_now().await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), wait)
        .await
        .unwrap_or_else(|_| panic!("gave up waiting for {what}"));
}
