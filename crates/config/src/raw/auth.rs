//! Raw `[[consumers]]`, `[[jwt_providers]]` and a route's `auth` table, as written.

use super::OneOrMany;
use crate::units::{ByteSize, HumanDuration};
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;

/// One `[[consumers]]` entry: who may call, and the credentials that prove it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsumerConf {
    pub name: String,
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Secrets: `sha256:HEX`, `env:NAME`, `file:PATH` or the key itself.
    #[serde(default)]
    pub api_keys: Vec<String>,
    pub basic: Option<BasicConf>,
    /// Values of a JWT provider's `consumer_claim` that name this consumer.
    #[serde(default)]
    pub jwt_subjects: Vec<String>,
    /// Client certificates (verified by the listener's `client_ca`) that name this consumer.
    #[serde(default)]
    pub certificates: Vec<CertMatchConf>,
}

/// One of `subject` (the distinguished name), `san` (a DNS, IP, e-mail or URI name) or
/// `fingerprint` (SHA-256 of the DER, hex, colons allowed).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertMatchConf {
    pub subject: Option<String>,
    pub san: Option<String>,
    pub fingerprint: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicConf {
    pub username: String,
    /// An argon2 (`$argon2id$...`) or bcrypt (`$2b$...`) hash, or a secret
    /// (`env:NAME`, `file:PATH`, the password itself).
    pub password: String,
}

/// One `[[jwt_providers]]` entry: an issuer's keys and the checks on its tokens.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtProviderConf {
    pub name: String,
    pub issuer: Option<String>,
    pub audiences: Option<OneOrMany>,
    pub algorithms: Option<Vec<String>>,
    #[serde(default)]
    pub keys: Vec<JwtKeyConf>,
    pub jwks_file: Option<String>,
    /// The upstream that serves the key set (pool, balancing, TLS and health apply).
    pub jwks_upstream: Option<String>,
    pub jwks_path: Option<String>,
    /// Find `jwks_uri` through `{issuer}/.well-known/openid-configuration` on
    /// `jwks_upstream`.
    pub discovery: Option<bool>,
    pub jwks_max_age: Option<HumanDuration>,
    pub jwks_min_refresh: Option<HumanDuration>,
    pub jwks_timeout: Option<HumanDuration>,
    pub leeway: Option<HumanDuration>,
    pub require_exp: Option<bool>,
    #[serde(default)]
    pub required_claims: BTreeMap<String, Value>,
    pub typ: Option<String>,
    pub consumer_claim: Option<String>,
    #[serde(default)]
    pub claims_to_headers: BTreeMap<String, String>,
    pub max_token_size: Option<ByteSize>,
}

/// A key given in config: exactly one of `pem`, `secret` (HMAC) or `jwk`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtKeyConf {
    pub kid: Option<String>,
    pub alg: Option<String>,
    pub pem: Option<String>,
    pub secret: Option<String>,
    pub jwk: Option<String>,
}

/// One `[[introspection]]` entry: an OAuth 2.0 introspection endpoint (RFC 7662).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntrospectionConf {
    pub name: String,
    pub upstream: String,
    pub path: Option<String>,
    pub client_id: String,
    /// A secret: `env:NAME`, `file:PATH` or the value.
    pub client_secret: String,
    pub timeout: Option<HumanDuration>,
    pub cache_max: Option<HumanDuration>,
    pub inactive_cache: Option<HumanDuration>,
    pub max_cached: Option<usize>,
    pub fail_open: Option<bool>,
    pub consumer_claim: Option<String>,
}

/// A route's `external_auth` table: an auth service asked before each request.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExternalAuthConf {
    pub upstream: String,
    pub path: Option<String>,
    /// Request headers sent to the auth service (besides the X-Forwarded-* it gets).
    pub headers: Option<Vec<String>>,
    /// Headers of a 2xx answer copied onto the upstream request.
    pub copy_headers: Option<Vec<String>>,
    pub timeout: Option<HumanDuration>,
    pub fail_open: Option<bool>,
    /// Send the request body too, its first this many bytes (Envoy's
    /// `with_request_body`); the request is held until the body is read.
    pub body_limit: Option<ByteSize>,
}

/// A route's `auth` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConf {
    /// Credential kinds tried in order: `api_key`, `basic`, `jwt`.
    pub methods: Vec<String>,
    pub anonymous: Option<bool>,
    pub consumers: Option<Vec<String>>,
    pub groups: Option<Vec<String>>,
    pub scopes: Option<Vec<String>>,
    #[serde(default)]
    pub claims: BTreeMap<String, Value>,
    pub jwt: Option<OneOrMany>,
    pub introspection: Option<OneOrMany>,
    pub api_key_header: Option<String>,
    pub api_key_query: Option<String>,
    pub realm: Option<String>,
    pub keep_credential: Option<bool>,
    pub consumer_header: Option<String>,
}
