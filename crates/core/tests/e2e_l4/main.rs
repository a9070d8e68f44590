//! End-to-end tests of layer 4: TCP listeners (echo, half-close, balancing, fail-over,
//! idle timeout, connection limit, metrics, access line, reload), UDP flows (affinity,
//! expiry, flow limit), TLS passthrough by SNI to two real TLS backends, and the PROXY
//! protocol in both directions. Real sockets on 127.0.0.1 port 0, backends started by
//! each test, the gateway in-process.
//!
//! Timing tests run on tokio's paused clock, as in `e2e_ops`: time jumps to the next
//! timer when every task waits, so a 10 s idle timeout takes no real time.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod passthrough;
mod proxy_protocol;
mod tcp;
mod udp;

use gatehouse_test_support::TestGateway;
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

/// A config with the access log off, `body` appended (listeners and upstreams).
pub fn config(body: &str) -> String {
    format!("[access_log]\nenabled = false\n\n{body}")
}

/// `[[upstreams]]` named `name` over `endpoints`, with `extra` lines in its table.
pub fn upstream(name: &str, endpoints: &[SocketAddr], extra: &str) -> String {
    let eps: Vec<String> = endpoints.iter().map(|e| format!("\"{e}\"")).collect();
    format!(
        "[[upstreams]]\nname = \"{name}\"\nendpoints = [{}]\n{extra}\n",
        eps.join(", ")
    )
}

/// A `[[listeners]]` table on 127.0.0.1 port 0.
pub fn listener(name: &str, protocol: &str, extra: &str) -> String {
    format!(
        "[[listeners]]\nname = \"{name}\"\nlisten = \"127.0.0.1:0\"\nprotocol = \"{protocol}\"\n{extra}\n"
    )
}

pub async fn start(body: &str) -> TestGateway {
    TestGateway::start(&config(body)).await
}

/// A TCP echo backend: on each connection it writes `name|`, then echoes every byte,
/// and shuts its side when the client has shut its own.
pub async fn echo(name: &'static str) -> SocketAddr {
    serve_tcp(move |mut s| async move {
        s.write_all(format!("{name}|").as_bytes()).await?;
        let (mut r, mut w) = s.split();
        tokio::io::copy(&mut r, &mut w).await?;
        w.shutdown().await
    })
    .await
}

/// A backend that answers only once the client has shut its side: it reads to EOF,
/// then writes `got N: <bytes>` and closes.
pub async fn reply_after_eof() -> SocketAddr {
    serve_tcp(|mut s| async move {
        let mut got = Vec::new();
        s.read_to_end(&mut got).await?;
        let reply = format!("got {}: {}", got.len(), String::from_utf8_lossy(&got));
        s.write_all(reply.as_bytes()).await?;
        s.shutdown().await
    })
    .await
}

/// Accepts TCP connections and runs `handle` on each, for as long as the test runs.
pub async fn serve_tcp<F, Fut>(handle: F) -> SocketAddr
where
    F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = std::io::Result<()>> + Send + 'static,
{
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let handle = std::sync::Arc::new(handle);
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let h = handle.clone();
            tokio::spawn(async move {
                let _ = h(s).await;
            });
        }
    });
    addr
}

/// A UDP responder: answers each datagram with `name:payload`, to its sender.
pub async fn udp_responder(name: &'static str) -> SocketAddr {
    let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = s.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = [0u8; 2048];
        while let Ok((n, from)) = s.recv_from(&mut buf).await {
            let mut reply = format!("{name}:").into_bytes();
            reply.extend_from_slice(&buf[..n]);
            let _ = s.send_to(&reply, from).await;
        }
    });
    addr
}

/// Reads exactly `n` bytes as text.
pub async fn read_n<S: AsyncReadExt + Unpin>(s: &mut S, n: usize) -> String {
    let mut buf = vec![0u8; n];
    s.read_exact(&mut buf).await.unwrap();
    String::from_utf8(buf).unwrap()
}

/// The value of one sample line of the Prometheus text, `0` when it is absent.
pub fn metric(gw: &TestGateway, line_start: &str) -> u64 {
    let text = gw.gw.metrics_text();
    text.lines()
        .find_map(|l| l.strip_prefix(line_start))
        .map(|v| v.trim().parse::<f64>().unwrap() as u64)
        .unwrap_or(0)
}

pub use gatehouse_test_support::{dead_addr, eventually, read_to_close};

/// A unique path under the system temp dir.
pub fn temp_path(name: &str) -> std::path::PathBuf {
    gatehouse_test_support::temp_path("e2e-l4", name)
}
