//! Upstream servers for tests: HTTP/1.1 and HTTP/2 (h2c or TLS), each answering with a
//! handler the test gives, and recording every request head it receives.

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::combinators::BoxBody;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

/// The body type upstream handlers answer with.
pub type TestBody = BoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;
type Handler = Arc<
    dyn Fn(Request<Incoming>) -> Pin<Box<dyn Future<Output = Response<TestBody>> + Send>>
        + Send
        + Sync,
>;

/// How an upstream speaks.
#[derive(Clone, Default)]
pub struct UpstreamOptions {
    /// Only HTTP/2 (h2c prior knowledge, or ALPN h2 with TLS).
    pub http2_only: bool,
    /// Serve TLS with this certificate and key (PEM).
    pub tls: Option<(String, String)>,
}

/// A running upstream server.
pub struct Upstream {
    pub addr: SocketAddr,
    /// Heads of every request received, in order.
    pub seen: Arc<Mutex<Vec<http::request::Parts>>>,
    /// Connections accepted.
    accepted: Arc<std::sync::atomic::AtomicUsize>,
    /// Turns true to kill the server: stop accepting and drop every connection.
    stop: tokio::sync::watch::Sender<bool>,
}

/// A full body from bytes.
pub fn full(b: impl Into<Bytes>) -> TestBody {
    use http_body_util::BodyExt;
    http_body_util::Full::new(b.into())
        .map_err(|e| match e {})
        .boxed()
}

/// Boxes a body that is `Send` but not `Sync` (tonic's, for one) as a [`TestBody`].
pub fn send_body<B>(b: B) -> TestBody
where
    B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    use http_body_util::BodyExt;
    SyncBody(Mutex::new(b)).map_err(Into::into).boxed()
}

/// Makes a `Send` body `Sync`: polling takes `&mut self`, so the lock is never contended.
struct SyncBody<B>(Mutex<B>);

impl<B: http_body::Body + Unpin> http_body::Body for SyncBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<B::Data>, B::Error>>> {
        let inner = self
            .get_mut()
            .0
            .get_mut()
            .unwrap_or_else(|e| e.into_inner());
        Pin::new(inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.0.lock().map(|b| b.is_end_stream()).unwrap_or(false)
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.0.lock().map(|b| b.size_hint()).unwrap_or_default()
    }
}

/// An empty body.
pub fn empty() -> TestBody {
    full(Bytes::new())
}

/// A body whose chunks the test sends, one `Bytes` at a time; it ends when the sender
/// is dropped. Lets a test decide when each chunk leaves.
pub fn channel_body() -> (tokio::sync::mpsc::Sender<Bytes>, TestBody) {
    use http_body_util::BodyExt;
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(1);
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        let chunk = rx.recv().await?;
        Some((Ok(http_body::Frame::data(chunk)), rx))
    });
    (tx, http_body_util::StreamBody::new(stream).boxed())
}

impl Upstream {
    /// Starts an upstream that answers every request with `handler`.
    pub async fn start<F, Fut>(opts: UpstreamOptions, handler: F) -> Upstream
    where
        F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Response<TestBody>> + Send + 'static,
    {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::serve(listener, opts, handler)
    }

    /// Starts an upstream on `addr` (a killed upstream's, to bring it back).
    pub async fn start_on<F, Fut>(addr: SocketAddr, opts: UpstreamOptions, handler: F) -> Upstream
    where
        F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Response<TestBody>> + Send + 'static,
    {
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        Self::serve(listener, opts, handler)
    }

    /// Kills the server: it stops accepting and every open connection is dropped
    /// (requests in progress on them fail), like a crashed process.
    pub fn kill(&self) {
        self.stop.send_replace(true);
    }

    fn serve<F, Fut>(
        listener: tokio::net::TcpListener,
        opts: UpstreamOptions,
        handler: F,
    ) -> Upstream
    where
        F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Response<TestBody>> + Send + 'static,
    {
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let h: Handler = Arc::new(move |req| Box::pin(handler(req)));
        let acceptor = opts
            .tls
            .as_ref()
            .map(|(c, k)| tls_acceptor(c, k, opts.http2_only));
        let seen2 = seen.clone();
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let accepted2 = accepted.clone();
        tokio::spawn(async move {
            loop {
                let mut on_stop = stopped.clone();
                let accepted = tokio::select! {
                    a = listener.accept() => a,
                    _ = killed(&mut on_stop) => return,
                };
                let Ok((stream, _)) = accepted else {
                    return;
                };
                accepted2.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let (h, seen, acceptor, h2) =
                    (h.clone(), seen2.clone(), acceptor.clone(), opts.http2_only);
                tokio::spawn(async move {
                    tokio::select! {
                        _ = killed(&mut on_stop) => {}
                        _ = serve_one(stream, h, seen, acceptor, h2) => {}
                    }
                });
            }
        });
        Upstream {
            addr,
            seen,
            accepted,
            stop,
        }
    }
}

/// Resolves when the upstream is killed. Dropping the [`Upstream`] handle does not kill
/// it: tests often keep only its address.
async fn killed(stop: &mut tokio::sync::watch::Receiver<bool>) {
    if stop.wait_for(|s| *s).await.is_err() {
        std::future::pending::<()>().await;
    }
}

async fn serve_one(
    stream: tokio::net::TcpStream,
    h: Handler,
    seen: Arc<Mutex<Vec<http::request::Parts>>>,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    h2: bool,
) {
    let svc = service_fn(move |req: Request<Incoming>| {
        let (h, seen) = (h.clone(), seen.clone());
        async move {
            let (parts, body) = req.into_parts();
            seen.lock().unwrap().push(clone_parts(&parts));
            let head = parts.method == http::Method::HEAD;
            let resp = h(Request::from_parts(parts, body)).await;
            Ok::<_, std::convert::Infallible>(if head { without_body(resp) } else { resp })
        }
    });
    let mut b = auto::Builder::new(TokioExecutor::new());
    if h2 {
        b = b.http2_only();
    }
    match acceptor {
        Some(a) => {
            if let Ok(s) = a.accept(stream).await {
                let _ = b.serve_connection_with_upgrades(TokioIo::new(s), svc).await;
            }
        }
        None => {
            let _ = b
                .serve_connection_with_upgrades(TokioIo::new(stream), svc)
                .await;
        }
    }
}

impl Upstream {
    /// An upstream answering 200 with `body` to everything.
    pub async fn fixed(body: &'static str) -> Upstream {
        Upstream::start(UpstreamOptions::default(), move |_req| async move {
            Response::new(full(body))
        })
        .await
    }

    /// The last request head received.
    pub fn last(&self) -> http::request::Parts {
        let seen = self.seen.lock().unwrap();
        clone_parts(seen.last().expect("upstream received no request"))
    }

    pub fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.accepted.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// A HEAD response as a real server sends it: the GET's headers, no content. hyper
/// drops the body itself on HTTP/1.1 but sends it on HTTP/2, where it is a protocol
/// error, so handlers can answer HEAD like GET and this keeps both versions honest.
fn without_body(resp: Response<TestBody>) -> Response<TestBody> {
    use http_body::Body as _;
    let (mut parts, body) = resp.into_parts();
    if let Some(n) = body.size_hint().exact() {
        parts
            .headers
            .entry(http::header::CONTENT_LENGTH)
            .or_insert_with(|| n.into());
    }
    Response::from_parts(parts, empty())
}

fn clone_parts(p: &http::request::Parts) -> http::request::Parts {
    let mut b = Request::builder()
        .method(p.method.clone())
        .uri(p.uri.clone())
        .version(p.version);
    if let Some(h) = b.headers_mut() {
        *h = p.headers.clone();
    }
    b.body(()).unwrap().into_parts().0
}

fn tls_acceptor(cert: &str, key: &str, h2: bool) -> tokio_rustls::TlsAcceptor {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<_> = CertificateDer::pem_slice_iter(cert.as_bytes())
        .collect::<Result<_, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
    let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    cfg.alpn_protocols = if h2 {
        vec![b"h2".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    tokio_rustls::TlsAcceptor::from(Arc::new(cfg))
}
