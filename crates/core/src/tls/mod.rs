//! TLS with rustls: server configs for HTTPS listeners (certificates chosen by SNI, exact
//! and wildcard names, a default; TLS 1.2/1.3; optional client-certificate checks; ALPN;
//! session resumption by tickets and by a session cache, both on by default),
//! and client configs towards upstreams (system-independent web roots or a custom CA).
//! Certificate files are read here, at compile time, never on the request path.

mod client_cert;
mod sni;

use gatehouse_config::spec::{TlsSpec, TlsVersion, UpstreamProtocol, UpstreamTlsSpec};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::Path;
use std::sync::Arc;

pub use client_cert::ClientCert;
pub use sni::SniResolver;

/// A TLS setup problem, named by the file or setting it comes from.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {msg}")]
    File { path: String, msg: String },
    #[error("{0}")]
    Config(String),
}

fn file_err(path: &Path, msg: impl std::fmt::Display) -> TlsError {
    TlsError::File {
        path: path.display().to_string(),
        msg: msg.to_string(),
    }
}

/// Reads every certificate in a PEM file.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_err(path, format!("cannot read certificates: {e}")))?
        .collect::<Result<_, _>>()
        .map_err(|e| file_err(path, format!("bad PEM: {e}")))?;
    if certs.is_empty() {
        return Err(file_err(path, "no certificate found in the file"));
    }
    Ok(certs)
}

/// Reads the first private key in a PEM file.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path)
        .map_err(|e| file_err(path, format!("cannot read a private key: {e}")))
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn versions(min: TlsVersion) -> &'static [&'static rustls::SupportedProtocolVersion] {
    static BOTH: [&rustls::SupportedProtocolVersion; 2] =
        [&rustls::version::TLS13, &rustls::version::TLS12];
    static ONLY13: [&rustls::SupportedProtocolVersion; 1] = [&rustls::version::TLS13];
    match min {
        TlsVersion::Tls12 => &BOTH,
        TlsVersion::Tls13 => &ONLY13,
    }
}

/// Builds the server config of an HTTPS listener.
pub fn server_config(spec: &TlsSpec, http2: bool) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let resolver = SniResolver::load(spec)?;
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(versions(spec.min_version))
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = match &spec.client_auth {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in load_certs(&ca.ca)? {
                roots
                    .add(c)
                    .map_err(|e| file_err(&ca.ca, format!("not a usable CA certificate: {e}")))?;
            }
            let v = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider(),
            );
            let v = if ca.required {
                v
            } else {
                v.allow_unauthenticated()
            };
            builder.with_client_cert_verifier(v.build().map_err(|e| file_err(&ca.ca, e))?)
        }
    };
    let mut cfg = builder.with_cert_resolver(Arc::new(resolver));
    if spec.session_tickets {
        cfg.ticketer = ticketer()?;
    }
    cfg.session_storage = if spec.session_cache == 0 {
        Arc::new(rustls::server::NoServerSessionStorage {})
    } else {
        rustls::server::ServerSessionMemoryCache::new(spec.session_cache)
    };
    cfg.alpn_protocols = if http2 {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    Ok(Arc::new(cfg))
}

/// The process's one ticket key set (rotated every six hours by rustls), shared by every
/// listener and kept across reloads, so that a ticket issued before a reload still
/// resumes after it.
fn ticketer() -> Result<Arc<dyn rustls::server::ProducesTickets>, TlsError> {
    static TICKETER: std::sync::OnceLock<Arc<dyn rustls::server::ProducesTickets>> =
        std::sync::OnceLock::new();
    if let Some(t) = TICKETER.get() {
        return Ok(t.clone());
    }
    let t = rustls::crypto::aws_lc_rs::Ticketer::new()
        .map_err(|e| TlsError::Config(format!("cannot make session ticket keys: {e}")))?;
    Ok(TICKETER.get_or_init(|| t).clone())
}

/// Builds the client config used towards an upstream.
pub fn client_config(
    spec: &UpstreamTlsSpec,
    protocol: UpstreamProtocol,
) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(versions(TlsVersion::Tls12))
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let mut cfg = if !spec.verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify(provider())))
            .with_no_client_auth()
    } else {
        let mut roots = rustls::RootCertStore::empty();
        match &spec.ca {
            Some(path) => {
                for c in load_certs(path)? {
                    roots
                        .add(c)
                        .map_err(|e| file_err(path, format!("not a usable CA certificate: {e}")))?;
                }
            }
            None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    cfg.alpn_protocols = match protocol {
        UpstreamProtocol::Http2 => vec![b"h2".to_vec()],
        UpstreamProtocol::Http1 => vec![b"http/1.1".to_vec()],
    };
    Ok(Arc::new(cfg))
}

/// Accepts any upstream certificate (`verify = false`), still checking the handshake
/// signatures so the connection is at least bound to the key that was presented.
#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
