//! Certificates made at test time (never committed, so they never expire): a CA and
//! leaf certificates signed by it, written as PEM files into a temporary folder.

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use std::path::{Path, PathBuf};

/// A test CA that can sign server and client certificates.
pub struct TestCa {
    pub dir: PathBuf,
    pub cert_pem: String,
    pub ca_path: PathBuf,
    issuer: Issuer<'static, KeyPair>,
}

/// PEM files of a leaf certificate.
pub struct Leaf {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub cert_pem: String,
    pub key_pem: String,
}

impl Leaf {
    /// The certificate in DER, to compare with what a peer presented.
    pub fn der(&self) -> rustls_pki_types::CertificateDer<'static> {
        use rustls_pki_types::pem::PemObject;
        rustls_pki_types::CertificateDer::from_pem_slice(self.cert_pem.as_bytes()).unwrap()
    }
}

impl TestCa {
    /// A new CA, with its files in a fresh folder under the system temp dir.
    pub fn new() -> TestCa {
        let dir = crate::scratch::dir("certs");
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "Gatehouse Test CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let cert_pem = cert.pem();
        let ca_path = dir.join("ca.pem");
        std::fs::write(&ca_path, &cert_pem).unwrap();
        let issuer = Issuer::new(params, key);
        TestCa {
            dir,
            cert_pem,
            ca_path,
            issuer,
        }
    }

    /// A leaf certificate for `names` (DNS names or IP addresses), written as `<file>.pem`
    /// and `<file>.key`.
    pub fn leaf(&self, file: &str, names: &[&str]) -> Leaf {
        let params =
            CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        write_leaf(&self.dir, file, cert.pem(), key.serialize_pem())
    }
}

impl Default for TestCa {
    fn default() -> Self {
        Self::new()
    }
}

fn write_leaf(dir: &Path, file: &str, cert_pem: String, key_pem: String) -> Leaf {
    let cert = dir.join(format!("{file}.pem"));
    let key = dir.join(format!("{file}.key"));
    std::fs::write(&cert, &cert_pem).unwrap();
    std::fs::write(&key, &key_pem).unwrap();
    Leaf {
        cert,
        key,
        cert_pem,
        key_pem,
    }
}
