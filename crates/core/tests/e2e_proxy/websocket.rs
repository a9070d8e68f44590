//! WebSocket through the gateway: the HTTP/1.1 upgrade is forwarded, frames are echoed
//! both ways, and an open WebSocket survives a config reload, even one that points its
//! route at another upstream (the tunnel belongs to no config generation).

use super::common::QUIET;
use futures_util::{SinkExt, StreamExt};
use gatehouse_test_support::{Conn, Proto, TestGateway};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// A WebSocket echo server: replies `tag:text` to text and the same bytes to binary,
/// and records the headers of every handshake.
pub(super) struct EchoServer {
    pub addr: SocketAddr,
    handshakes: Arc<Mutex<Vec<http::HeaderMap>>>,
}

pub(super) async fn echo_server(tag: &'static str) -> EchoServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let handshakes = Arc::new(Mutex::new(Vec::new()));
    let seen = handshakes.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                // The error type is tungstenite's callback signature, not ours.
                #[allow(clippy::result_large_err)]
                let record = |req: &Request, resp: Response| {
                    seen.lock().unwrap().push(req.headers().clone());
                    Ok(resp)
                };
                let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(stream, record).await else {
                    return;
                };
                while let Some(Ok(msg)) = ws.next().await {
                    let reply = match msg {
                        Message::Text(t) => Message::text(format!("{tag}:{t}")),
                        Message::Binary(b) => Message::Binary(b),
                        Message::Close(_) => return,
                        _ => continue,
                    };
                    if ws.send(reply).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    EchoServer { addr, handshakes }
}

fn config(upstream: SocketAddr, extra_route: &str) -> String {
    format!(
        "{QUIET}[[listeners]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\n\
         [[routes]]\nname = \"ws\"\nupstream = \"echo\"\nmatch.prefix = \"/ws\"\n{extra_route}\n\
         [[upstreams]]\nname = \"echo\"\nendpoints = [\"{upstream}\"]\n"
    )
}

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

async fn open(gw: &TestGateway) -> Ws {
    let url = format!("ws://{}/ws/chat", gw.addr("web"));
    let (ws, resp) = tokio_tungstenite::connect_async(url).await.unwrap();
    assert_eq!(resp.status(), 101);
    assert!(resp.headers().contains_key("x-request-id"));
    ws
}

/// Sends `n` text messages and one binary one, and checks every echo.
async fn exchange(ws: &mut Ws, tag: &str, round: &str, n: usize) {
    for i in 0..n {
        ws.send(Message::text(format!("{round}-{i}")))
            .await
            .unwrap();
        let got = ws.next().await.unwrap().unwrap();
        assert_eq!(got, Message::text(format!("{tag}:{round}-{i}")));
    }
    let blob: Vec<u8> = (0..70_000u32).map(|i| (i % 253) as u8).collect();
    ws.send(Message::binary(blob.clone())).await.unwrap();
    let got = ws.next().await.unwrap().unwrap();
    assert_eq!(got, Message::binary(blob));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_echoes_through_the_gateway() {
    let up = echo_server("one").await;
    let gw = TestGateway::start(&config(up.addr, "")).await;
    let mut ws = open(&gw).await;
    exchange(&mut ws, "one", "a", 5).await;
    let h = up.handshakes.lock().unwrap()[0].clone();
    assert_eq!(
        h["upgrade"].to_str().unwrap().to_ascii_lowercase(),
        "websocket"
    );
    assert_eq!(h["x-forwarded-for"], "127.0.0.1");
    assert_eq!(h["via"], "1.1 gatehouse");
    ws.close(None).await.unwrap();
    // The server answers the close; the stream then ends.
    while let Some(Ok(m)) = ws.next().await {
        assert!(m.is_close(), "{m:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_survives_a_reload_that_moves_its_route() {
    let one = echo_server("one").await;
    let two = echo_server("two").await;
    let gw = TestGateway::start(&config(one.addr, "")).await;
    let addr = gw.addr("web");
    let mut ws = open(&gw).await;
    exchange(&mut ws, "one", "before", 3).await;

    let extra = "\n[[routes]]\nname = \"probe\"\nmatch.path = \"/probe\"\nrespond = { body = \"generation two\" }\n";
    let generation = gw.gw.reload_text(&config(two.addr, extra)).await.unwrap();
    assert_eq!(generation, 2);
    assert_eq!(gw.addr("web"), addr, "the listener was kept");

    // The new config serves new requests on the same listener...
    let mut c = Conn::plain(addr, Proto::H1).await;
    let (parts, body) = c.get("/probe").await;
    assert_eq!(parts.status, 200);
    assert_eq!(body, "generation two");
    let mut ws2 = open(&gw).await;
    exchange(&mut ws2, "two", "new", 2).await;

    // ...while the WebSocket opened before it still talks to its first upstream.
    exchange(&mut ws, "one", "after", 3).await;
    assert_eq!(one.handshakes.lock().unwrap().len(), 1);
    assert_eq!(two.handshakes.lock().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_over_a_tls_listener() {
    let ca = gatehouse_test_support::certs::TestCa::new();
    let leaf = ca.leaf("gw", &["ws.test"]);
    let up = echo_server("tls").await;
    let text = format!(
        "{QUIET}{}[[routes]]\nname = \"ws\"\nupstream = \"echo\"\n\
         [[upstreams]]\nname = \"echo\"\nendpoints = [\"{}\"]\n",
        super::common::tls_listener(&leaf),
        up.addr
    );
    let gw = TestGateway::start(&text).await;
    // WebSocket upgrades are HTTP/1.1, so the client offers only http/1.1.
    let tls = gatehouse_test_support::TlsClient {
        alpn: &["http/1.1"],
        ..gatehouse_test_support::TlsClient::new(&ca.cert_pem)
    };
    let stream = tls.connect(gw.addr("web"), "ws.test").await.unwrap();
    let url = format!("wss://ws.test:{}/secure", gw.addr("web").port());
    let (mut ws, resp) = tokio_tungstenite::client_async(url, stream).await.unwrap();
    assert_eq!(resp.status(), 101);
    for i in 0..5 {
        ws.send(Message::text(format!("m{i}"))).await.unwrap();
        assert_eq!(
            ws.next().await.unwrap().unwrap(),
            Message::text(format!("tls:m{i}"))
        );
    }
    assert_eq!(
        up.handshakes.lock().unwrap()[0]["x-forwarded-proto"],
        "https"
    );
}

/// Draining an endpoint leaves its open WebSocket up for `drain_grace`, then closes it;
/// undraining before then would have kept it (the endpoint's closing signal is only
/// sent while it is still draining). On the paused clock.
#[tokio::test(start_paused = true)]
async fn a_drained_endpoints_websocket_closes_after_the_grace() {
    let echo = echo_server("e").await;
    let extra = "drain_timeout = \"1s\"\ndrain_grace = \"30s\"\n";
    let gw = TestGateway::start(&format!("{}{extra}", config(echo.addr, ""))).await;
    let mut ws = open(&gw).await;
    exchange(&mut ws, "e", "before", 2).await;
    let snap = gw.gw.snapshot();
    let ep = snap.upstreams["echo"]
        .endpoint(&echo.addr.to_string())
        .unwrap();
    ep.drain(
        std::time::Duration::from_secs(1),
        std::time::Duration::from_secs(30),
    );
    // Within the grace the tunnel still carries frames.
    tokio::time::sleep(std::time::Duration::from_secs(20)).await;
    exchange(&mut ws, "e", "during", 2).await;
    // After it, the gateway closes the connection.
    let end = tokio::time::timeout(std::time::Duration::from_secs(15), ws.next()).await;
    match end.expect("the tunnel was not closed after the grace") {
        None | Some(Err(_)) | Some(Ok(Message::Close(_))) => {}
        Some(Ok(m)) => panic!("unexpected frame {m:?}"),
    }
}
