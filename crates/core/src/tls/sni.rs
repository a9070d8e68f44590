//! Certificate choice by SNI: exact names first, then the longest wildcard, then the
//! default certificate (the one marked `default`, else the first).

use super::{file_err, load_certs, load_key, provider, TlsError};
use gatehouse_config::spec::TlsSpec;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::collections::HashMap;
use std::sync::Arc;

/// Picks a listener's certificate from the client's server name.
#[derive(Debug)]
pub struct SniResolver {
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// (`.example.com`, key), longest suffix first.
    wildcard: Vec<(String, Arc<CertifiedKey>)>,
    default: Arc<CertifiedKey>,
}

impl SniResolver {
    /// Loads every certificate and key of a listener.
    pub fn load(spec: &TlsSpec) -> Result<Self, TlsError> {
        let mut exact = HashMap::new();
        let mut wildcard = Vec::new();
        let mut first = None;
        let mut marked = None;
        for c in &spec.certificates {
            let chain = load_certs(&c.cert)?;
            let key = load_key(&c.key)?;
            let signing = provider()
                .key_provider
                .load_private_key(key)
                .map_err(|e| file_err(&c.key, format!("unusable private key: {e}")))?;
            let ck = Arc::new(CertifiedKey::new(chain.clone(), signing));
            ck.keys_match().map_err(|e| {
                file_err(
                    &c.key,
                    format!("does not match certificate {}: {e}", c.cert.display()),
                )
            })?;
            let names = if c.names.is_empty() {
                names_in(&chain[0])
            } else {
                c.names.clone()
            };
            for n in names {
                match n.strip_prefix('*') {
                    Some(suffix) => wildcard.push((suffix.to_string(), ck.clone())),
                    None => {
                        exact.entry(n).or_insert_with(|| ck.clone());
                    }
                }
            }
            first.get_or_insert_with(|| ck.clone());
            if c.default {
                marked = Some(ck.clone());
            }
        }
        wildcard.sort_by_key(|w| std::cmp::Reverse(w.0.len()));
        let default = marked
            .or(first)
            .ok_or_else(|| TlsError::Config("no certificate".into()))?;
        Ok(SniResolver {
            exact,
            wildcard,
            default,
        })
    }

    /// The key for a (lower-case) server name.
    pub fn choose(&self, name: Option<&str>) -> Arc<CertifiedKey> {
        if let Some(n) = name {
            if let Some(k) = self.exact.get(n) {
                return k.clone();
            }
            // `*.example.com` covers one label only, as certificate wildcards do.
            if let Some((_, k)) = self
                .wildcard
                .iter()
                .find(|(s, _)| n.ends_with(s.as_str()) && !n[..n.len() - s.len()].contains('.'))
            {
                return k.clone();
            }
        }
        self.default.clone()
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let name = hello.server_name().map(|n| n.to_ascii_lowercase());
        Some(self.choose(name.as_deref()))
    }
}

/// DNS names in a certificate's subjectAltName.
fn names_in(cert: &rustls::pki_types::CertificateDer<'_>) -> Vec<String> {
    match webpki::EndEntityCert::try_from(cert) {
        Ok(ee) => ee
            .valid_dns_names()
            .map(|n| n.to_ascii_lowercase())
            .collect(),
        Err(_) => Vec::new(),
    }
}
