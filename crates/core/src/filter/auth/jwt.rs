//! JWT bearer tokens (RFC 7519, JWS per RFC 7515): the checks Gatehouse makes around
//! the `jsonwebtoken` crate, which verifies signatures and the registered time claims.
//! Here: the size bound, `crit` and `typ`, the key chosen by `kid` among keys bound to
//! their algorithms, `iss`/`aud` made required when configured, and required claims.
//! `jku`, `x5u` and an embedded `jwk` are never read: keys come from config only.
//!
//! A token that verified is remembered by its SHA-256 until its `exp` (at most
//! [`VERIFIED_TTL`], and only while the key set it was checked against is current),
//! as Envoy's JWT cache does: a client sends the same token for its whole life, and a
//! signature check is most of a JWT route's cost.

use super::jwks::Remote;
use super::keyset::KeySet;
use gatehouse_config::spec::{ClaimRule, JwtProviderSpec};
use jsonwebtoken::errors::ErrorKind as JwtKind;
use jsonwebtoken::{Algorithm, Validation};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// The longest a verified token is remembered.
pub const VERIFIED_TTL: Duration = Duration::from_secs(300);
/// The most verified tokens remembered per provider.
const VERIFIED_MAX: usize = 16 * 1024;

/// Why a token was refused; the text goes into `error_description`.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// Not a JWT at all (shape, base64, JSON).
    Malformed(String),
    /// A JWT, but not one to accept (signature, claims, key, algorithm).
    Invalid(String),
    /// The provider has no keys yet (its key set was never fetched).
    NoKeys,
}

/// A token that passed every check.
pub struct Verified {
    pub claims: Arc<Map<String, Value>>,
}

/// A remembered verification: the claims, until when, and the remote key set's
/// version it was checked against (0 without a remote set).
struct Remembered {
    claims: Arc<Map<String, Value>>,
    until: Instant,
    keys: u64,
}

/// One `[[jwt_providers]]` entry, compiled.
pub struct Provider {
    pub spec: JwtProviderSpec,
    local: KeySet,
    pub remote: Option<Arc<Remote>>,
    /// One validation per algorithm the provider may see, built once.
    validations: Vec<(Algorithm, Validation)>,
    verified: Mutex<HashMap<[u8; 32], Remembered>>,
}

impl Provider {
    pub fn new(spec: JwtProviderSpec, local: KeySet, remote: Option<Arc<Remote>>) -> Provider {
        let validations = allowed(&spec)
            .into_iter()
            .map(|a| (a, validation(&spec, a)))
            .collect();
        Provider {
            spec,
            local,
            remote,
            validations,
            verified: Mutex::new(HashMap::new()),
        }
    }

    /// Verifies `token`; an unknown `kid` may wait for one early key-set refresh.
    pub async fn verify(&self, token: &str) -> Result<Verified, Refused> {
        if token.len() > self.spec.max_token_size {
            return Err(Refused::Invalid(format!(
                "token is over {} bytes",
                self.spec.max_token_size
            )));
        }
        let digest = super::secret::sha256(token.as_bytes());
        if let Some(claims) = self.remembered(&digest) {
            return Ok(Verified { claims });
        }
        let claims = Arc::new(self.check(token).await?);
        self.remember(digest, &claims);
        Ok(Verified { claims })
    }

    fn keys_version(&self) -> u64 {
        self.remote.as_ref().map_or(0, |r| r.version())
    }

    fn remembered(&self, digest: &[u8; 32]) -> Option<Arc<Map<String, Value>>> {
        let m = self.verified.lock().ok()?;
        let r = m.get(digest)?;
        (Instant::now() < r.until && r.keys == self.keys_version()).then(|| r.claims.clone())
    }

    /// Remembers a verified token until its `exp` (bounded by [`VERIFIED_TTL`]).
    fn remember(&self, digest: [u8; 32], claims: &Arc<Map<String, Value>>) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let left = match claims.get("exp").and_then(Value::as_u64) {
            Some(exp) if exp > now => Duration::from_secs(exp - now).min(VERIFIED_TTL),
            Some(_) => return,
            None => VERIFIED_TTL,
        };
        let Ok(mut m) = self.verified.lock() else {
            return;
        };
        if m.len() >= VERIFIED_MAX {
            let now = Instant::now();
            m.retain(|_, r| now < r.until);
            if m.len() >= VERIFIED_MAX {
                m.clear();
            }
        }
        let r = Remembered {
            claims: claims.clone(),
            until: Instant::now() + left,
            keys: self.keys_version(),
        };
        m.insert(digest, r);
    }

    /// The full check of a token not remembered.
    async fn check(&self, token: &str) -> Result<Map<String, Value>, Refused> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| Refused::Malformed(describe(&e)))?;
        if header.crit.is_some() {
            return Err(Refused::Invalid(
                "token header has `crit` extensions Gatehouse does not understand".into(),
            ));
        }
        if let Some(want) = &self.spec.typ {
            let got = header.typ.as_deref().unwrap_or("");
            let got = got.strip_prefix("application/").unwrap_or(got);
            if !got.eq_ignore_ascii_case(want) {
                return Err(Refused::Invalid(format!("token `typ` is not `{want}`")));
            }
        }
        let Some((_, v)) = self.validations.iter().find(|(a, _)| *a == header.alg) else {
            return Err(Refused::Invalid(format!(
                "algorithm {:?} is not accepted",
                header.alg
            )));
        };
        let kid = header.kid.as_deref();
        let mut result = self.try_keys(token, kid, header.alg, v);
        if let (Err(Refused::Invalid(_)) | Err(Refused::NoKeys), Some(r), Some(k)) =
            (&result, &self.remote, kid)
        {
            if !self.local.has_kid(k) && r.keys().is_none_or(|s| !s.has_kid(k)) {
                r.refresh_for_unknown().await;
                result = self.try_keys(token, kid, header.alg, v);
            }
        }
        let claims = result?;
        self.required(&claims)?;
        Ok(claims)
    }

    fn try_keys(
        &self,
        token: &str,
        kid: Option<&str>,
        alg: Algorithm,
        v: &Validation,
    ) -> Result<Map<String, Value>, Refused> {
        let remote = self.remote.as_ref().and_then(|r| r.keys());
        if self.local.keys.is_empty() && remote.is_none() {
            return Err(Refused::NoKeys);
        }
        let sets = std::iter::once(&self.local).chain(remote.as_deref());
        let mut last = None;
        for key in sets.flat_map(|s| s.candidates(kid, alg)) {
            match jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, v) {
                Ok(t) => return Ok(t.claims),
                // The wrong key among several: try the next.
                Err(e) if matches!(e.kind(), JwtKind::InvalidSignature) => last = Some(e),
                Err(e) => return Err(refused(&e)),
            }
        }
        Err(match last {
            Some(e) => refused(&e),
            None => Refused::Invalid(match kid {
                Some(k) => format!("no key with kid `{k}` for {alg:?}"),
                None => format!("no key for {alg:?}"),
            }),
        })
    }

    fn required(&self, claims: &Map<String, Value>) -> Result<(), Refused> {
        match check_claims(&self.spec.required_claims, claims) {
            Ok(()) => Ok(()),
            Err(name) => Err(Refused::Invalid(format!(
                "claim `{name}` is missing or not accepted"
            ))),
        }
    }
}

/// Checks claim rules; the first claim that fails is returned.
pub fn check_claims<'a>(
    rules: &'a [(String, ClaimRule)],
    claims: &Map<String, Value>,
) -> Result<(), &'a str> {
    for (name, rule) in rules {
        let ok = match (claims.get(name), rule) {
            (None, _) => false,
            (Some(_), ClaimRule::Present) => true,
            (Some(Value::Array(have)), ClaimRule::OneOf(want)) => {
                have.iter().any(|h| want.contains(h))
            }
            (Some(have), ClaimRule::OneOf(want)) => want.contains(have),
        };
        if !ok {
            return Err(name);
        }
    }
    Ok(())
}

/// The algorithms a provider's tokens may use: its list, or every one its keys allow.
fn allowed(spec: &JwtProviderSpec) -> Vec<Algorithm> {
    let names: Vec<&str> = if spec.algorithms.is_empty() {
        gatehouse_config::spec::JWT_ALGORITHMS.to_vec()
    } else {
        spec.algorithms.iter().map(String::as_str).collect()
    };
    names
        .into_iter()
        .filter_map(|n| Algorithm::from_str(n).ok())
        .collect()
}

/// The provider's algorithm list as `Algorithm`s, for binding keys (empty: any).
pub fn algorithms(spec: &JwtProviderSpec) -> Vec<Algorithm> {
    spec.algorithms
        .iter()
        .filter_map(|n| Algorithm::from_str(n).ok())
        .collect()
}

fn validation(spec: &JwtProviderSpec, alg: Algorithm) -> Validation {
    let mut v = Validation::new(alg);
    v.leeway = spec.leeway.as_secs();
    v.validate_exp = true;
    v.validate_nbf = true;
    let mut required = vec![];
    if spec.require_exp {
        required.push("exp");
    }
    if let Some(iss) = &spec.issuer {
        v.set_issuer(&[iss]);
        required.push("iss");
    }
    if spec.audiences.is_empty() {
        v.validate_aud = false;
    } else {
        v.set_audience(&spec.audiences);
        required.push("aud");
    }
    v.set_required_spec_claims(&required);
    v
}

fn refused(e: &jsonwebtoken::errors::Error) -> Refused {
    match e.kind() {
        JwtKind::InvalidToken | JwtKind::Base64(_) | JwtKind::Json(_) | JwtKind::Utf8(_) => {
            Refused::Malformed(describe(e))
        }
        _ => Refused::Invalid(describe(e)),
    }
}

/// A short reason, safe to send to the client (never key material or claims).
fn describe(e: &jsonwebtoken::errors::Error) -> String {
    match e.kind() {
        JwtKind::InvalidToken => "not a JWT (expected three base64url segments)".into(),
        JwtKind::InvalidSignature => "signature does not verify".into(),
        JwtKind::ExpiredSignature => "token has expired".into(),
        JwtKind::ImmatureSignature => "token is not valid yet (nbf)".into(),
        JwtKind::InvalidIssuer => "issuer is not accepted".into(),
        JwtKind::InvalidAudience => "audience is not accepted".into(),
        JwtKind::MissingRequiredClaim(c) => format!("claim `{c}` is required"),
        JwtKind::InvalidClaimFormat(c) => {
            format!("claim `{c}` has the wrong type (dates are numbers)")
        }
        JwtKind::InvalidAlgorithm
        | JwtKind::InvalidAlgorithmName
        | JwtKind::UnsupportedAlgorithm => "algorithm is not accepted for this key".into(),
        JwtKind::InvalidKeyFormat
        | JwtKind::InvalidRsaKey(_)
        | JwtKind::InvalidEcdsaKey
        | JwtKind::InvalidEddsaKey => "algorithm does not fit the key".into(),
        JwtKind::Base64(_) => "a segment is not base64url".into(),
        JwtKind::Json(_) | JwtKind::Utf8(_) => {
            "header or claims are not a JSON object (or `alg` is unknown)".into()
        }
        _ => "token is not valid".into(),
    }
}
