//! Clients for tests that must choose the exact wire protocol: one hyper connection
//! speaking HTTP/1.1 or HTTP/2 (h2c prior knowledge on plain TCP, ALPN on TLS), and
//! rustls client configs with a chosen CA, ALPN list, TLS versions and client
//! certificate, so a test can also look at what the handshake negotiated.

use crate::certs::Leaf;
use crate::upstream::TestBody;
use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// The HTTP version a client connection speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    H1,
    H2,
}

/// Settings of a rustls client.
pub struct TlsClient<'a> {
    /// PEM of the CA the server certificate must chain to.
    pub ca_pem: &'a str,
    /// ALPN protocols offered, e.g. `["h2"]`.
    pub alpn: &'a [&'a str],
    /// Versions offered; empty offers both 1.2 and 1.3.
    pub versions: &'a [&'static rustls::SupportedProtocolVersion],
    /// A client certificate to present.
    pub client_cert: Option<&'a Leaf>,
}

impl<'a> TlsClient<'a> {
    /// Trusts `ca_pem`, offers both versions and no ALPN.
    pub fn new(ca_pem: &'a str) -> Self {
        TlsClient {
            ca_pem,
            alpn: &[],
            versions: &[],
            client_cert: None,
        }
    }

    /// The rustls config for these settings.
    pub fn config(&self) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(self.ca_pem.as_bytes()) {
            roots.add(c.unwrap()).unwrap();
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let versions: &[&rustls::SupportedProtocolVersion] = if self.versions.is_empty() {
            rustls::ALL_VERSIONS
        } else {
            self.versions
        };
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(roots);
        let mut cfg = match self.client_cert {
            None => builder.with_no_client_auth(),
            Some(leaf) => {
                let certs = vec![leaf.der()];
                let key = PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).unwrap();
                builder.with_client_auth_cert(certs, key).unwrap()
            }
        };
        cfg.alpn_protocols = self.alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
        Arc::new(cfg)
    }

    /// Connects and completes the handshake, sending `server_name` as SNI.
    pub async fn connect(
        &self,
        addr: SocketAddr,
        server_name: &str,
    ) -> std::io::Result<TlsStream<TcpStream>> {
        let tcp = TcpStream::connect(addr).await?;
        let name = ServerName::try_from(server_name.to_string())
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        tokio_rustls::TlsConnector::from(self.config())
            .connect(name, tcp)
            .await
    }
}

enum Sender {
    H1(http1::SendRequest<TestBody>),
    H2(http2::SendRequest<TestBody>),
}

/// One client connection to a gateway listener.
pub struct Conn {
    sender: Sender,
    scheme: &'static str,
    /// Host (with port) put in `Host` / `:authority`.
    pub authority: String,
}

impl Conn {
    /// A plain TCP connection; HTTP/2 uses prior knowledge (h2c).
    pub async fn plain(addr: SocketAddr, proto: Proto) -> Conn {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let _ = tcp.set_nodelay(true);
        Conn::over(tcp, proto, "http", addr.to_string()).await
    }

    /// A TLS connection offering ALPN for `proto` only; panics if the server picks
    /// another protocol.
    pub async fn tls(addr: SocketAddr, proto: Proto, ca_pem: &str, server_name: &str) -> Conn {
        let alpn: &[&str] = match proto {
            Proto::H1 => &["http/1.1"],
            Proto::H2 => &["h2"],
        };
        let tls = TlsClient {
            alpn,
            ..TlsClient::new(ca_pem)
        };
        let s = tls.connect(addr, server_name).await.unwrap();
        let want: &[u8] = alpn[0].as_bytes();
        assert_eq!(s.get_ref().1.alpn_protocol(), Some(want), "ALPN result");
        let authority = format!("{server_name}:{}", addr.port());
        Conn::over(s, proto, "https", authority).await
    }

    /// HTTP over an already connected stream.
    pub async fn over<I>(io: I, proto: Proto, scheme: &'static str, authority: String) -> Conn
    where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let io = TokioIo::new(io);
        let sender = match proto {
            Proto::H1 => {
                let (tx, conn) = http1::handshake(io).await.unwrap();
                tokio::spawn(conn.with_upgrades());
                Sender::H1(tx)
            }
            Proto::H2 => {
                let (tx, conn) = http2::handshake(TokioExecutor::new(), io).await.unwrap();
                tokio::spawn(conn);
                Sender::H2(tx)
            }
        };
        Conn {
            sender,
            scheme,
            authority,
        }
    }

    pub fn proto(&self) -> Proto {
        match self.sender {
            Sender::H1(_) => Proto::H1,
            Sender::H2(_) => Proto::H2,
        }
    }

    /// A request builder for `path` on this connection's authority: origin form with a
    /// `Host` header on HTTP/1.1, absolute form (`:authority`) on HTTP/2.
    pub fn request(&self, method: Method, path: &str) -> http::request::Builder {
        self.request_to(method, &self.authority.clone(), path)
    }

    /// Like [`Conn::request`] with another host (for routing by host).
    pub fn request_to(
        &self,
        method: Method,
        authority: &str,
        path: &str,
    ) -> http::request::Builder {
        match self.sender {
            Sender::H1(_) => Request::builder()
                .method(method)
                .uri(path)
                .header(header::HOST, HeaderValue::from_str(authority).unwrap()),
            Sender::H2(_) => Request::builder()
                .method(method)
                .version(http::Version::HTTP_2)
                .uri(format!("{}://{authority}{path}", self.scheme)),
        }
    }

    /// Sends a request and returns the response head (the body streams).
    pub async fn send(&mut self, req: Request<TestBody>) -> hyper::Result<Response<Incoming>> {
        match &mut self.sender {
            Sender::H1(tx) => {
                tx.ready().await?;
                tx.send_request(req).await
            }
            Sender::H2(tx) => {
                tx.ready().await?;
                tx.send_request(req).await
            }
        }
    }

    /// Sends a request and reads the whole response.
    pub async fn fetch(&mut self, req: Request<TestBody>) -> (http::response::Parts, Bytes) {
        let resp = self.send(req).await.unwrap();
        let (parts, body) = resp.into_parts();
        (parts, body.collect().await.unwrap().to_bytes())
    }

    /// `GET path`, read whole.
    pub async fn get(&mut self, path: &str) -> (http::response::Parts, Bytes) {
        let req = self
            .request(Method::GET, path)
            .body(crate::upstream::empty())
            .unwrap();
        self.fetch(req).await
    }
}
