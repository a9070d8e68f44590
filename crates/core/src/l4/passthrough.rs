//! A `tls_passthrough` listener's connection: read the ClientHello without terminating
//! TLS, choose the upstream by its server name ([`SniTable`]), then replay the bytes read
//! so far to the upstream and pipe the rest. The client's TLS session is with the
//! upstream; Gatehouse never holds a key.
//!
//! The ClientHello is parsed by rustls' [`Acceptor`], fed a copy of the bytes as they
//! arrive (no TLS parser of our own); the bytes buffered are bounded and the wait for
//! them is bounded by the listener's `timeouts.header_read`.

use super::Session;
use crate::drain::Watch;
use crate::upstream::UpstreamGroup;
use gatehouse_config::spec::PassthroughSpec;
use rustls::server::Acceptor;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};

/// The most ClientHello bytes buffered before giving up. A ClientHello is usually under
/// 2 KiB; post-quantum key shares bring it near 2-3 KiB; 16 KiB is one TLS record.
pub const MAX_HELLO: usize = 16 * 1024;

/// Upstreams by server name: exact names, then the longest `*.` wildcard (one label,
/// as in certificates), then the default. Generic only so tests can use plain values.
pub struct SniTable<G = Arc<UpstreamGroup>> {
    exact: HashMap<String, G>,
    /// (`.example.com`, group), longest suffix first.
    wildcard: Vec<(String, G)>,
    default: Option<G>,
}

/// Why no upstream was chosen.
#[derive(Debug, thiserror::Error)]
pub enum HelloError {
    #[error("no ClientHello within the header-read timeout")]
    Timeout,
    #[error("the client closed before a whole ClientHello")]
    Closed,
    #[error("ClientHello larger than {MAX_HELLO} bytes")]
    TooLarge,
    #[error("not a TLS ClientHello: {0}")]
    NotTls(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

// === impl SniTable ===

impl SniTable {
    /// Builds the table; names whose upstream is missing (it failed to compile, which is
    /// reported on its own) are left out.
    pub fn new(spec: &PassthroughSpec, groups: &HashMap<String, Arc<UpstreamGroup>>) -> Self {
        let names = spec
            .names
            .iter()
            .filter_map(|(n, u)| Some((n.clone(), groups.get(u)?.clone())));
        let default = spec.default.as_ref().and_then(|d| groups.get(d).cloned());
        SniTable::from_names(names, default)
    }
}

impl<G> SniTable<G> {
    fn from_names(names: impl Iterator<Item = (String, G)>, default: Option<G>) -> Self {
        let mut exact = HashMap::new();
        let mut wildcard = Vec::new();
        for (name, g) in names {
            match name.strip_prefix('*') {
                Some(suffix) => wildcard.push((suffix.to_string(), g)),
                None => {
                    exact.insert(name, g);
                }
            }
        }
        wildcard.sort_by_key(|w| std::cmp::Reverse(w.0.len()));
        SniTable {
            exact,
            wildcard,
            default,
        }
    }

    /// The upstream for a (lower-case) server name; `None` when nothing matches and
    /// there is no default.
    pub fn choose(&self, name: Option<&str>) -> Option<&G> {
        if let Some(n) = name {
            if let Some(g) = self.exact.get(n) {
                return Some(g);
            }
            let one_label = |s: &str| {
                n.len() > s.len() && n.ends_with(s) && !n[..n.len() - s.len()].contains('.')
            };
            if let Some((_, g)) = self.wildcard.iter().find(|(s, _)| one_label(s)) {
                return Some(g);
            }
        }
        self.default.as_ref()
    }
}

/// Serves one client connection until it ends.
pub async fn serve<C>(mut client: C, s: Session, table: &SniTable, watch: Watch)
where
    C: AsyncRead + AsyncWrite + Unpin,
{
    let hello = tokio::time::timeout(s.header_read_timeout, read_hello(&mut client)).await;
    let (first, sni) = match hello {
        Ok(Ok(x)) => x,
        Ok(Err(e)) => return refuse(&s, None, &e.to_string()),
        Err(_) => return refuse(&s, None, &HelloError::Timeout.to_string()),
    };
    let Some(group) = table.choose(sni.as_deref()).cloned() else {
        let msg = format!(
            "no upstream for server name {:?}",
            sni.as_deref().unwrap_or("")
        );
        return refuse(&s, sni.as_deref(), &msg);
    };
    super::tcp::forward(client, &s, &group, first, sni.as_deref(), watch).await;
}

fn refuse(s: &Session, sni: Option<&str>, why: &str) {
    tracing::debug!(listener = %s.listener, client = %s.client, reason = why, "passthrough connection refused");
    s.log(None, None, sni, &Default::default(), Some("no_upstream"));
}

/// Reads until rustls has a whole ClientHello; returns every byte read (to replay) and
/// the server name, lower-case.
async fn read_hello<C: AsyncRead + Unpin>(
    client: &mut C,
) -> Result<(Vec<u8>, Option<String>), HelloError> {
    let mut acceptor = Acceptor::default();
    let mut buf = Vec::with_capacity(2048);
    let mut tmp = [0u8; 4096];
    loop {
        if buf.len() >= MAX_HELLO {
            return Err(HelloError::TooLarge);
        }
        let want = tmp.len().min(MAX_HELLO - buf.len());
        let n = client.read(&mut tmp[..want]).await?;
        if n == 0 {
            return Err(HelloError::Closed);
        }
        buf.extend_from_slice(&tmp[..n]);
        // rustls gets a copy; `buf` keeps the original bytes for the upstream.
        let mut rd = &tmp[..n];
        while !rd.is_empty() {
            if acceptor.read_tls(&mut rd)? == 0 {
                break;
            }
        }
        match acceptor.accept() {
            Ok(None) => continue,
            Ok(Some(accepted)) => {
                let name = accepted
                    .client_hello()
                    .server_name()
                    .map(str::to_ascii_lowercase);
                return Ok((buf, name));
            }
            Err((e, _alert)) => return Err(HelloError::NotTls(e.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(default: Option<&'static str>) -> SniTable<&'static str> {
        let names = [
            ("a.example.com", "exact"),
            ("*.example.com", "wild"),
            ("*.deep.example.com", "deeper"),
        ];
        SniTable::from_names(names.into_iter().map(|(n, g)| (n.to_string(), g)), default)
    }

    #[test]
    fn exact_then_longest_wildcard_then_default() {
        let t = table(Some("default"));
        assert_eq!(t.choose(Some("a.example.com")), Some(&"exact"));
        assert_eq!(t.choose(Some("b.example.com")), Some(&"wild"));
        assert_eq!(t.choose(Some("x.deep.example.com")), Some(&"deeper"));
        // One label only, as certificate wildcards.
        assert_eq!(t.choose(Some("x.y.example.com")), Some(&"default"));
        assert_eq!(t.choose(Some("example.com")), Some(&"default"));
        assert_eq!(t.choose(None), Some(&"default"));
    }

    #[test]
    fn no_default_means_no_upstream() {
        let t = table(None);
        assert_eq!(t.choose(Some("other.org")), None);
        assert_eq!(t.choose(None), None);
    }

    #[tokio::test]
    async fn a_hello_is_read_whole_and_kept_byte_for_byte() {
        // A real ClientHello, from rustls' own client, arriving a few bytes at a time.
        let hello = client_hello("svc.example.com");
        let (mut w, mut r) = tokio::io::duplex(64);
        let sent = hello.clone();
        tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            for c in sent.chunks(7) {
                w.write_all(c).await.unwrap();
            }
            std::future::pending::<()>().await;
        });
        let (bytes, name) = read_hello(&mut r).await.unwrap();
        assert_eq!(bytes, hello);
        assert_eq!(name.as_deref(), Some("svc.example.com"));
    }

    #[tokio::test]
    async fn a_hello_cut_short_is_refused() {
        let hello = client_hello("svc.example.com");
        let mut r: &[u8] = &hello[..hello.len() / 2];
        assert!(matches!(read_hello(&mut r).await, Err(HelloError::Closed)));
    }

    #[tokio::test]
    async fn plain_text_is_not_tls() {
        let mut r: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        assert!(matches!(
            read_hello(&mut r).await,
            Err(HelloError::NotTls(_))
        ));
    }

    fn client_hello(name: &str) -> Vec<u8> {
        let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
        let server = rustls::pki_types::ServerName::try_from(name.to_string()).unwrap();
        let mut c = rustls::ClientConnection::new(Arc::new(cfg), server).unwrap();
        let mut out = Vec::new();
        while c.wants_write() {
            c.write_tls(&mut out).unwrap();
        }
        out
    }
}
