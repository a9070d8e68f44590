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
}

/// A full body from bytes.
pub fn full(b: impl Into<Bytes>) -> TestBody {
    use http_body_util::BodyExt;
    http_body_util::Full::new(b.into())
        .map_err(|e| match e {})
        .boxed()
}

impl Upstream {
    /// Starts an upstream that answers every request with `handler`.
    pub async fn start<F, Fut>(opts: UpstreamOptions, handler: F) -> Upstream
    where
        F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Response<TestBody>> + Send + 'static,
    {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let h: Handler = Arc::new(move |req| Box::pin(handler(req)));
        let acceptor = opts
            .tls
            .as_ref()
            .map(|(c, k)| tls_acceptor(c, k, opts.http2_only));
        let seen2 = seen.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (h, seen, acceptor, h2) =
                    (h.clone(), seen2.clone(), acceptor.clone(), opts.http2_only);
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let (h, seen) = (h.clone(), seen.clone());
                        async move {
                            let (parts, body) = req.into_parts();
                            seen.lock().unwrap().push(clone_parts(&parts));
                            Ok::<_, std::convert::Infallible>(
                                h(Request::from_parts(parts, body)).await,
                            )
                        }
                    });
                    let mut b = auto::Builder::new(TokioExecutor::new());
                    if h2 {
                        b = b.http2_only();
                    }
                    match acceptor {
                        Some(a) => {
                            if let Ok(s) = a.accept(stream).await {
                                let _ =
                                    b.serve_connection_with_upgrades(TokioIo::new(s), svc).await;
                            }
                        }
                        None => {
                            let _ = b
                                .serve_connection_with_upgrades(TokioIo::new(stream), svc)
                                .await;
                        }
                    }
                });
            }
        });
        Upstream { addr, seen }
    }

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
