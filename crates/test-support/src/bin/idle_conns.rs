//! `idle_conns`: holds many idle client connections open on a proxy, for the memory
//! per connection figure (`bench/idle-memory.sh`). Each connection makes one request
//! (or a WebSocket handshake and one echoed message), then stays open and silent until
//! a line (or the end) comes on stdin; then all of them close together.
//!
//!     idle_conns hold h1|tls|h2|ws ADDR COUNT [CA_PEM]
//!     idle_conns ws-echo ADDR          # the WebSocket upstream for `ws`
//!
//! `tls` is HTTP/1.1 over TLS, `h2` HTTP/2 over TLS (ALPN h2); both need `CA_PEM`, the
//! certificate the proxy presents, for a server name of `127.0.0.1`.

use anyhow::{bail, Context as _};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::AsyncBufReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_rustls::TlsConnector;
use tokio_tungstenite::tungstenite::Message;

/// How many connections are being opened at once.
const OPENING: usize = 256;

#[derive(Clone, Copy)]
enum Kind {
    H1,
    Tls,
    H2,
    Ws,
}

/// A connection kept open: the hyper handle (its connection runs in a task that ends
/// when the handle is dropped) or the WebSocket. Only dropped, never read.
#[allow(dead_code)]
enum Held {
    H1(http1::SendRequest<Empty<Bytes>>),
    H2(http2::SendRequest<Empty<Bytes>>),
    Ws(Box<tokio_tungstenite::WebSocketStream<TcpStream>>),
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["hold", kind, addr, count, ref ca @ ..] => {
            let kind = match kind {
                "h1" => Kind::H1,
                "tls" => Kind::Tls,
                "h2" => Kind::H2,
                "ws" => Kind::Ws,
                k => bail!("unknown kind {k}: h1, tls, h2 or ws"),
            };
            let tls = match (kind, ca.first()) {
                (Kind::Tls | Kind::H2, Some(ca)) => Some(connector(ca, kind)?),
                (Kind::Tls | Kind::H2, None) => bail!("tls and h2 need CA_PEM"),
                _ => None,
            };
            rt.block_on(hold(kind, addr.parse()?, count.parse()?, tls))
        }
        ["ws-echo", addr] => rt.block_on(ws_echo(addr.parse()?)),
        _ => bail!("usage: idle_conns hold h1|tls|h2|ws ADDR COUNT [CA_PEM] | ws-echo ADDR"),
    }
}

/// Opens `count` connections, says `ready OPENED failed FAILED`, waits for stdin, closes.
async fn hold(
    kind: Kind,
    addr: SocketAddr,
    count: usize,
    tls: Option<TlsConnector>,
) -> anyhow::Result<()> {
    let gate = Arc::new(Semaphore::new(OPENING));
    let mut opening = JoinSet::new();
    for _ in 0..count {
        let permit = gate.clone().acquire_owned().await?;
        let tls = tls.clone();
        opening.spawn(async move {
            let held = open(kind, addr, tls).await;
            drop(permit);
            held
        });
    }
    let (mut held, mut failed) = (Vec::with_capacity(count), 0);
    while let Some(r) = opening.join_next().await {
        match r? {
            Ok(h) => held.push(h),
            Err(e) => {
                if failed == 0 {
                    eprintln!("first failure: {e:#}");
                }
                failed += 1;
            }
        }
    }
    println!("ready {} failed {failed}", held.len());
    let mut line = String::new();
    tokio::io::BufReader::new(tokio::io::stdin())
        .read_line(&mut line)
        .await?;
    drop(held);
    println!("closed");
    Ok(())
}

/// One connection with its one exchange done.
async fn open(kind: Kind, addr: SocketAddr, tls: Option<TlsConnector>) -> anyhow::Result<Held> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let name = ServerName::IpAddress(addr.ip().into());
    match (kind, tls) {
        (Kind::H1, _) => h1(TokioIo::new(tcp)).await,
        (Kind::Tls, Some(c)) => h1(TokioIo::new(c.connect(name, tcp).await?)).await,
        (Kind::H2, Some(c)) => {
            let io = TokioIo::new(c.connect(name, tcp).await?);
            let (mut send, conn) = http2::handshake(TokioExecutor::new(), io).await?;
            tokio::spawn(conn);
            answered(send.send_request(request()?).await?).await?;
            Ok(Held::H2(send))
        }
        (Kind::Ws, _) => {
            let url = format!("ws://{addr}/ws");
            let (mut ws, _) = tokio_tungstenite::client_async(url, tcp).await?;
            ws.send(Message::text("hello")).await?;
            match ws.next().await {
                Some(Ok(Message::Text(t))) if t.as_str() == "hello" => Ok(Held::Ws(Box::new(ws))),
                other => bail!("no echo: {other:?}"),
            }
        }
        _ => bail!("TLS kinds need a connector"),
    }
}

async fn h1<I>(io: I) -> anyhow::Result<Held>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut send, conn) = http1::handshake(io).await?;
    tokio::spawn(conn);
    answered(send.send_request(request()?).await?).await?;
    Ok(Held::H1(send))
}

/// The connection's one request: `GET /`.
fn request() -> anyhow::Result<http::Request<Empty<Bytes>>> {
    Ok(http::Request::get("/")
        .header(http::header::HOST, "127.0.0.1")
        .body(Empty::<Bytes>::new())?)
}

/// A successful answer, its body read to the end.
async fn answered(resp: http::Response<hyper::body::Incoming>) -> anyhow::Result<()> {
    if !resp.status().is_success() {
        bail!("status {}", resp.status());
    }
    resp.into_body().collect().await?;
    Ok(())
}

/// A TLS client trusting only `ca` (the proxy's self-signed certificate).
fn connector(ca: &str, kind: Kind) -> anyhow::Result<TlsConnector> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).with_context(|| format!("reading {ca}"))? {
        roots.add(cert?)?;
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = match kind {
        Kind::H2 => vec![b"h2".to_vec()],
        _ => vec![b"http/1.1".to_vec()],
    };
    Ok(TlsConnector::from(Arc::new(config)))
}

/// A WebSocket upstream that echoes every text and binary message.
async fn ws_echo(addr: SocketAddr) -> anyhow::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    println!("listening {}", listener.local_addr()?);
    loop {
        let (tcp, _) = listener.accept().await?;
        tokio::spawn(async move {
            let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
                return;
            };
            while let Some(Ok(m)) = ws.next().await {
                if (m.is_text() || m.is_binary()) && ws.send(m).await.is_err() {
                    return;
                }
            }
        });
    }
}
