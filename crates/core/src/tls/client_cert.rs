//! What a client certificate the listener verified says, read once per connection for
//! mTLS consumers: its SHA-256 fingerprint, subject DN and subject alternative names.

use gatehouse_config::spec::normalize_dn;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

#[derive(Debug)]
pub struct ClientCert {
    pub fingerprint: [u8; 32],
    /// `sha256:HEX` of the fingerprint: the credential id an mTLS identity carries,
    /// made once per connection rather than per request.
    pub id: std::sync::Arc<str>,
    /// Normalized (see `normalize_dn`); empty when the certificate did not parse.
    pub subject: String,
    /// DNS (lower-case), IP, e-mail and URI names.
    pub sans: Vec<String>,
}

impl ClientCert {
    pub fn from_der(der: &[u8]) -> ClientCert {
        let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der);
        let mut fingerprint = [0u8; 32];
        fingerprint.copy_from_slice(d.as_ref());
        let (subject, sans) = match X509Certificate::from_der(der) {
            Ok((_, cert)) => (normalize_dn(&cert.subject().to_string()), sans(&cert)),
            Err(_) => (String::new(), Vec::new()),
        };
        let hex: String = fingerprint.iter().map(|b| format!("{b:02x}")).collect();
        ClientCert {
            id: std::sync::Arc::from(format!("sha256:{hex}")),
            fingerprint,
            subject,
            sans,
        }
    }
}

fn sans(cert: &X509Certificate<'_>) -> Vec<String> {
    let Ok(Some(ext)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    ext.value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::DNSName(s) => Some(s.to_ascii_lowercase()),
            GeneralName::RFC822Name(s) | GeneralName::URI(s) => Some(s.to_string()),
            GeneralName::IPAddress(b) => match b.len() {
                4 => <[u8; 4]>::try_from(*b)
                    .ok()
                    .map(|a| std::net::IpAddr::from(a).to_string()),
                16 => <[u8; 16]>::try_from(*b)
                    .ok()
                    .map(|a| std::net::IpAddr::from(a).to_string()),
                _ => None,
            },
            _ => None,
        })
        .collect()
}
