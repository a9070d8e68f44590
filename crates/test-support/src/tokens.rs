//! Minting JWTs for tests: signing keys of every algorithm Gatehouse accepts (made
//! fresh with aws-lc-rs), their public JWKs and PEMs, and hand-built tokens for the
//! shapes a signer would never produce (`alg: none`, bad segments).

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::signature::{EcdsaKeyPair, Ed25519KeyPair, KeyPair as _};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::Value;

/// A private key, its algorithm and id, and its public halves.
pub struct SigningKey {
    pub alg: Algorithm,
    pub kid: String,
    pub enc: EncodingKey,
    /// The public JWK (with `kid` and `alg`).
    pub jwk: Value,
    /// The public key as PEM (none for HMAC).
    pub public_pem: Option<String>,
    /// The HMAC secret (HMAC keys only).
    pub secret: Option<Vec<u8>>,
}

fn pem(label: &str, der: &[u8]) -> String {
    let b = STANDARD.encode(der);
    let lines: Vec<&str> = b
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap_or_default())
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}

impl SigningKey {
    fn finish(
        alg: Algorithm,
        kid: &str,
        enc: EncodingKey,
        public_pem: Option<String>,
        secret: Option<Vec<u8>>,
    ) -> SigningKey {
        let mut jwk = serde_json::to_value(
            jsonwebtoken::jwk::Jwk::from_encoding_key(&enc, alg).expect("jwk"),
        )
        .expect("json");
        jwk["kid"] = Value::String(kid.to_string());
        SigningKey {
            alg,
            kid: kid.to_string(),
            enc,
            jwk,
            public_pem,
            secret,
        }
    }

    /// An RSA 2048 key for RS* or PS*.
    pub fn rsa(kid: &str, alg: Algorithm) -> SigningKey {
        let kp = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).expect("rsa");
        let private = pem("PRIVATE KEY", kp.as_der().expect("der").as_ref());
        let public = pem(
            "PUBLIC KEY",
            kp.public_key().as_der().expect("der").as_ref(),
        );
        let enc = EncodingKey::from_rsa_pem(private.as_bytes()).expect("rsa pem");
        Self::finish(alg, kid, enc, Some(public), None)
    }

    /// A P-256 (ES256) or P-384 (ES384) key.
    pub fn ec(kid: &str, alg: Algorithm) -> SigningKey {
        let sign = match alg {
            Algorithm::ES384 => &aws_lc_rs::signature::ECDSA_P384_SHA384_FIXED_SIGNING,
            _ => &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        };
        let kp = EcdsaKeyPair::generate(sign).expect("ec");
        let der = kp.to_pkcs8v1().expect("pkcs8");
        let public = pem(
            "PUBLIC KEY",
            kp.public_key().as_der().expect("der").as_ref(),
        );
        let enc = EncodingKey::from_ec_der(der.as_ref());
        Self::finish(alg, kid, enc, Some(public), None)
    }

    /// An Ed25519 key (EdDSA).
    pub fn ed(kid: &str) -> SigningKey {
        let kp = Ed25519KeyPair::generate().expect("ed");
        let der = kp.to_pkcs8v1().expect("pkcs8");
        let public = pem(
            "PUBLIC KEY",
            kp.public_key().as_der().expect("der").as_ref(),
        );
        let enc = EncodingKey::from_ed_der(der.as_ref());
        Self::finish(Algorithm::EdDSA, kid, enc, Some(public), None)
    }

    /// An HMAC key (HS256/384/512) with this secret.
    pub fn hmac(kid: &str, alg: Algorithm, secret: &[u8]) -> SigningKey {
        let enc = EncodingKey::from_secret(secret).expect("hmac");
        Self::finish(alg, kid, enc, None, Some(secret.to_vec()))
    }

    /// A token with the usual header (`alg`, `kid`, `typ: JWT`).
    pub fn sign(&self, claims: &Value) -> String {
        let mut h = Header::new(self.alg);
        h.kid = Some(self.kid.clone());
        self.sign_with(h, claims)
    }

    /// A token with this header, signed with this key.
    pub fn sign_with(&self, header: Header, claims: &Value) -> String {
        jsonwebtoken::encode(&header, claims, &self.enc).expect("sign")
    }
}

/// A JWKS document of these keys' public halves.
pub fn jwks(keys: &[&SigningKey]) -> String {
    let list: Vec<Value> = keys.iter().map(|k| k.jwk.clone()).collect();
    serde_json::json!({ "keys": list }).to_string()
}

/// Seconds since the epoch.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// base64url without padding.
pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A token from raw header and claims JSON and a raw signature (for shapes no signer
/// makes: `alg: none`, a stripped signature).
pub fn raw(header: &str, claims: &str, signature: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        b64(header.as_bytes()),
        b64(claims.as_bytes()),
        b64(signature)
    )
}

/// An HMAC-SHA256 signature over `header.claims` (the algorithm-confusion attack signs
/// with a public key's bytes as the secret).
pub fn hs256_with(secret: &[u8], header: &str, claims: &str) -> String {
    let input = format!("{}.{}", b64(header.as_bytes()), b64(claims.as_bytes()));
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret);
    let tag = aws_lc_rs::hmac::sign(&key, input.as_bytes());
    format!("{input}.{}", b64(tag.as_ref()))
}
