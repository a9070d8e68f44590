//! Verification keys: from config (PEM, HMAC secret, one JWK) or a JWKS document, each
//! bound to the algorithms its type allows, so that a token's `alg` can never pick a
//! use the key was not meant for (HMAC keyed with an RSA public key, say).

use super::secret;
use gatehouse_config::spec::{JwtKeySpec, KeyMaterial};
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use std::str::FromStr;

/// One key and what it may verify.
pub struct Key {
    pub kid: Option<String>,
    pub algs: Vec<Algorithm>,
    pub key: DecodingKey,
}

/// The keys a provider knows at one moment.
#[derive(Default)]
pub struct KeySet {
    pub keys: Vec<Key>,
}

const RSA: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
];
const HMAC: &[Algorithm] = &[Algorithm::HS256, Algorithm::HS384, Algorithm::HS512];

impl KeySet {
    /// Keys whose id and algorithms fit a token's header. With no `kid` in the token,
    /// every key that allows `alg` is a candidate.
    pub fn candidates<'a>(
        &'a self,
        kid: Option<&'a str>,
        alg: Algorithm,
    ) -> impl Iterator<Item = &'a Key> + 'a {
        self.keys
            .iter()
            .filter(move |k| k.algs.contains(&alg) && (kid.is_none() || k.kid.as_deref() == kid))
    }

    pub fn has_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|k| k.kid.as_deref() == Some(kid))
    }

    /// Parses a JWKS document. Keys that are not for signatures, or of a type or
    /// algorithm Gatehouse does not verify, are skipped; the rest must parse.
    pub fn from_jwks(json: &[u8], allowed: &[Algorithm]) -> Result<KeySet, String> {
        let doc: serde_json::Value =
            serde_json::from_slice(json).map_err(|e| format!("not JSON: {e}"))?;
        let Some(list) = doc.get("keys").and_then(|k| k.as_array()) else {
            return Err("no `keys` list".into());
        };
        let mut keys = Vec::new();
        for (i, v) in list.iter().enumerate() {
            let jwk: Jwk = match serde_json::from_value(v.clone()) {
                Ok(j) => j,
                Err(e) => {
                    tracing::debug!(index = i, error = %e, "JWKS key skipped");
                    continue;
                }
            };
            if let Some(k) = from_jwk(&jwk, None, allowed)? {
                keys.push(k);
            }
        }
        Ok(KeySet { keys })
    }

    /// Keys given in config.
    pub fn from_specs(
        specs: &[JwtKeySpec],
        allowed: &[Algorithm],
    ) -> Result<KeySet, (usize, String)> {
        let mut keys = Vec::new();
        for (i, s) in specs.iter().enumerate() {
            let alg = s.alg.as_deref().and_then(|a| Algorithm::from_str(a).ok());
            let key = match &s.material {
                KeyMaterial::Hmac(r) => {
                    let bytes = secret::resolve(r).map_err(|e| (i, e))?;
                    let algs = restrict(HMAC, alg, allowed);
                    Some(Key {
                        kid: s.kid.clone(),
                        algs,
                        key: DecodingKey::from_secret(&bytes).map_err(|e| (i, e.to_string()))?,
                    })
                }
                KeyMaterial::Pem(r) => {
                    let pem = secret::resolve(r).map_err(|e| (i, e))?;
                    Some(from_pem(&pem, s.kid.clone(), alg, allowed).map_err(|e| (i, e))?)
                }
                KeyMaterial::Jwk(text) => {
                    let jwk: Jwk =
                        serde_json::from_str(text).map_err(|e| (i, format!("not a JWK: {e}")))?;
                    let mut k = from_jwk(&jwk, alg, allowed).map_err(|e| (i, e))?;
                    if let (Some(k), Some(kid)) = (k.as_mut(), &s.kid) {
                        k.kid = Some(kid.clone());
                    }
                    k
                }
            };
            match key {
                Some(k) if !k.algs.is_empty() => keys.push(k),
                _ => return Err((i, "no allowed algorithm fits this key".into())),
            }
        }
        Ok(KeySet { keys })
    }
}

/// The family's algorithms, narrowed to the one named and to the provider's list.
fn restrict(
    family: &[Algorithm],
    named: Option<Algorithm>,
    allowed: &[Algorithm],
) -> Vec<Algorithm> {
    family
        .iter()
        .copied()
        .filter(|a| named.is_none_or(|n| n == *a))
        .filter(|a| allowed.is_empty() || allowed.contains(a))
        .collect()
}

/// A `DecodingKey` constructor for one PEM key type.
type PemParser = fn(&[u8]) -> jsonwebtoken::errors::Result<DecodingKey>;

fn from_pem(
    pem: &[u8],
    kid: Option<String>,
    alg: Option<Algorithm>,
    allowed: &[Algorithm],
) -> Result<Key, String> {
    let tries: [(&[Algorithm], PemParser); 3] = [
        (RSA, DecodingKey::from_rsa_pem),
        (
            &[Algorithm::ES256, Algorithm::ES384],
            DecodingKey::from_ec_pem,
        ),
        (&[Algorithm::EdDSA], DecodingKey::from_ed_pem),
    ];
    for (family, parse) in tries {
        if let Ok(key) = parse(pem) {
            return Ok(Key {
                kid,
                algs: restrict(family, alg, allowed),
                key,
            });
        }
    }
    Err("not a PEM public key (RSA, EC P-256/P-384 or Ed25519)".into())
}

/// A key from a JWK; `None` when it is not a signature key Gatehouse verifies.
fn from_jwk(
    jwk: &Jwk,
    alg: Option<Algorithm>,
    allowed: &[Algorithm],
) -> Result<Option<Key>, String> {
    if matches!(jwk.common.public_key_use, Some(ref u) if *u != PublicKeyUse::Signature) {
        return Ok(None);
    }
    let family: &[Algorithm] = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => RSA,
        AlgorithmParameters::EllipticCurve(p) => match p.curve {
            EllipticCurve::P256 => &[Algorithm::ES256],
            EllipticCurve::P384 => &[Algorithm::ES384],
            _ => return Ok(None),
        },
        AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
            &[Algorithm::EdDSA]
        }
        AlgorithmParameters::OctetKey(_) => HMAC,
        _ => return Ok(None),
    };
    // A JWK's own `alg` binds it to that one algorithm.
    let named = match (&jwk.common.key_algorithm, alg) {
        (_, Some(a)) => Some(a),
        (Some(ka), None) => match jwk_alg(ka) {
            Some(a) => Some(a),
            None => return Ok(None),
        },
        (None, None) => None,
    };
    let key = DecodingKey::from_jwk(jwk).map_err(|e| format!("bad key: {e}"))?;
    let algs = restrict(family, named, allowed);
    if algs.is_empty() {
        return Ok(None);
    }
    Ok(Some(Key {
        kid: jwk.common.key_id.clone(),
        algs,
        key,
    }))
}

fn jwk_alg(a: &KeyAlgorithm) -> Option<Algorithm> {
    Algorithm::from_str(&a.to_string()).ok()
}
