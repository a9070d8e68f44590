//! Reload torture, bounded: 100 reloads alternating two configs that add and remove
//! routes, upstreams and endpoints, under concurrent HTTP/1.1, HTTP/2 and gRPC load,
//! with a WebSocket and a bidirectional gRPC stream open the whole time. No request
//! fails, and the WebSocket and the stream answer after every reload. The full-length
//! run is `bench/reload-torture.sh`, which sets `TORTURE_RELOADS` and `TORTURE_CONNS`
//! (reloads, and connections per kind of load) higher.

use super::common::QUIET;
use super::grpc::{greeter, Hello, Reply, ECHO, SAY};
use super::websocket::echo_server;
use futures_util::{SinkExt, StreamExt};
use gatehouse_test_support::{Conn, Proto, TestGateway, Upstream, UpstreamOptions};
use http::uri::PathAndQuery;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use tokio_tungstenite::tungstenite::Message;
use tonic_prost::ProstCodec;

/// `name` from the environment, or `default`.
fn knob(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Backends {
    greeter: SocketAddr,
    ws: SocketAddr,
    plain: [SocketAddr; 2],
}

/// Generation A: `/plain` on one endpoint and a local `/a`. Generation B: `/plain` on
/// two endpoints, and `/b` to an upstream A does not have.
fn config(b: &Backends, a: bool) -> String {
    let common = format!(
        "{QUIET}[[listeners]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\n\n\
         [[routes]]\nname = \"grpc\"\nupstream = \"greeter\"\n\
         match.headers = [{{ name = \"content-type\", regex = \"application/grpc.*\" }}]\n\n\
         [[routes]]\nname = \"ws\"\nupstream = \"echo\"\nmatch.prefix = \"/ws\"\n\n\
         [[routes]]\nname = \"plain\"\nupstream = \"plain\"\nmatch.prefix = \"/plain\"\n\n\
         [[upstreams]]\nname = \"greeter\"\nendpoints = [\"{}\"]\nprotocol = \"http2\"\n\n\
         [[upstreams]]\nname = \"echo\"\nendpoints = [\"{}\"]\n\n",
        b.greeter, b.ws
    );
    if a {
        format!(
            "{common}[[routes]]\nname = \"a\"\nmatch.prefix = \"/a\"\nrespond = {{ status = 200, body = \"a\" }}\n\n\
             [[upstreams]]\nname = \"plain\"\nendpoints = [\"{}\"]\n",
            b.plain[0]
        )
    } else {
        format!(
            "{common}[[routes]]\nname = \"b\"\nupstream = \"bonus\"\nmatch.prefix = \"/b\"\n\n\
             [[upstreams]]\nname = \"plain\"\nendpoints = [\"{}\", \"{}\"]\n\n\
             [[upstreams]]\nname = \"bonus\"\nendpoints = [\"{}\"]\n",
            b.plain[0], b.plain[1], b.plain[1]
        )
    }
}

/// Counts of a load task: requests done and failed.
#[derive(Default)]
struct Tally {
    done: AtomicUsize,
    failed: AtomicUsize,
    moved: tokio::sync::Notify,
}

impl Tally {
    fn record(&self, ok: bool) {
        if !ok {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
        self.done.fetch_add(1, Ordering::Relaxed);
        self.moved.notify_waiters();
    }

    /// Waits until `n` requests are done.
    async fn past(&self, n: usize) -> usize {
        loop {
            let moved = self.moved.notified();
            let done = self.done.load(Ordering::Relaxed);
            if done >= n {
                return done;
            }
            moved.await;
        }
    }
}

/// Keeps one connection of `proto` busy with `GET /plain` until `stop`.
fn http_load(addr: SocketAddr, proto: Proto, tally: Arc<Tally>, stop: Arc<AtomicBool>) {
    tokio::spawn(async move {
        let mut c = Conn::plain(addr, proto).await;
        while !stop.load(Ordering::Relaxed) {
            let req = c
                .request(http::Method::GET, "/plain")
                .body(gatehouse_test_support::empty())
                .unwrap();
            let ok = match c.send(req).await {
                Ok(r) if r.status() == 200 => http_body_util::BodyExt::collect(r.into_body())
                    .await
                    .is_ok(),
                _ => false,
            };
            tally.record(ok);
        }
    });
}

/// Unary gRPC calls until `stop`.
fn grpc_load(channel: tonic::transport::Channel, tally: Arc<Tally>, stop: Arc<AtomicBool>) {
    tokio::spawn(async move {
        let mut client = tonic::client::Grpc::new(channel);
        while !stop.load(Ordering::Relaxed) {
            let req = tonic::Request::new(Hello {
                name: "load".into(),
                count: 0,
            });
            let ok = client.ready().await.is_ok()
                && client
                    .unary::<_, Reply, _>(
                        req,
                        PathAndQuery::from_static(SAY),
                        ProstCodec::default(),
                    )
                    .await
                    .is_ok();
            tally.record(ok);
        }
    });
}

/// Waits until every tally has moved on by `n` requests since `marks`.
async fn progress(tallies: &[Arc<Tally>], marks: &mut [usize], n: usize) {
    for (t, mark) in tallies.iter().zip(marks.iter_mut()) {
        *mark = t.past(*mark + n).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_reloads_under_load_lose_nothing() {
    let h2 = UpstreamOptions {
        http2_only: true,
        tls: None,
    };
    let greeter_up = Upstream::start(h2, greeter).await;
    let ws = echo_server("ws").await;
    let p1 = Upstream::fixed("p1").await;
    let p2 = Upstream::fixed("p2").await;
    let b = Backends {
        greeter: greeter_up.addr,
        ws: ws.addr,
        plain: [p1.addr, p2.addr],
    };
    let gw = TestGateway::start(&config(&b, true)).await;
    let addr = gw.addr("web");
    let stop = Arc::new(AtomicBool::new(false));
    let (reloads, conns) = (knob("TORTURE_RELOADS", 100), knob("TORTURE_CONNS", 2));
    let channel = tonic::transport::Channel::from_shared(gw.url("web", ""))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut tallies: Vec<Arc<Tally>> = Vec::new();
    for _ in 0..conns {
        for kind in 0..3 {
            let t = Arc::new(Tally::default());
            match kind {
                0 => http_load(addr, Proto::H1, t.clone(), stop.clone()),
                1 => http_load(addr, Proto::H2, t.clone(), stop.clone()),
                _ => grpc_load(channel.clone(), t.clone(), stop.clone()),
            }
            tallies.push(t);
        }
    }

    // The long-lived ones: a WebSocket and a bidirectional gRPC stream.
    let (mut socket, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws/t"))
        .await
        .unwrap();
    let (to_stream, rx) = tokio::sync::mpsc::channel::<Hello>(1);
    let mut client = tonic::client::Grpc::new(channel);
    client.ready().await.unwrap();
    let outbound = tokio_stream::wrappers::ReceiverStream::new(rx);
    let mut stream = client
        .streaming::<_, Hello, Reply, _>(
            tonic::Request::new(outbound),
            PathAndQuery::from_static(ECHO),
            ProstCodec::default(),
        )
        .await
        .unwrap()
        .into_inner();

    let mut marks = vec![0; tallies.len()];
    for round in 0..reloads {
        progress(&tallies, &mut marks, 3).await;
        let generation = gw
            .gw
            .reload_text(&config(&b, round % 2 == 1))
            .await
            .unwrap();
        assert_eq!(generation, round as u64 + 2);
        socket
            .send(Message::text(format!("r{round}")))
            .await
            .unwrap();
        let echo = socket.next().await.expect("the WebSocket closed").unwrap();
        assert_eq!(echo.into_text().unwrap().as_str(), format!("ws:r{round}"));
        to_stream
            .send(Hello {
                name: format!("r{round}"),
                count: round as u32,
            })
            .await
            .unwrap();
        let reply = stream
            .message()
            .await
            .unwrap()
            .expect("the gRPC stream ended");
        assert_eq!(
            (reply.index, reply.text),
            (round as u32, format!("echo r{round}"))
        );
    }
    progress(&tallies, &mut marks, 3).await;
    stop.store(true, Ordering::Relaxed);
    let done: usize = tallies.iter().map(|t| t.done.load(Ordering::Relaxed)).sum();
    let failed: usize = tallies
        .iter()
        .map(|t| t.failed.load(Ordering::Relaxed))
        .sum();
    println!("reload torture: {reloads} reloads, {done} requests ({conns} connections each of HTTP/1.1, HTTP/2 and gRPC), {failed} failed, 1 WebSocket and 1 gRPC stream kept");
    assert_eq!(
        failed, 0,
        "{failed} of {done} requests failed across {reloads} reloads"
    );
    assert!(
        p2.count() > 0,
        "generation B's second endpoint took no requests"
    );
    drop(to_stream);
    assert!(
        stream.message().await.unwrap().is_none(),
        "the stream ends cleanly"
    );
}
