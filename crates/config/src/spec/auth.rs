//! Validated consumers, JWT providers and per-route access rules. Secrets stay as
//! references ([`SecretRef`]) here: the core resolves `env:` and `file:` when it compiles,
//! and nothing in this module prints a secret's value.

use super::IpNet;
use std::path::PathBuf;
use std::time::Duration;

/// Where a secret's value comes from. `Debug` never shows an inline value.
#[derive(Clone, PartialEq, Eq)]
pub enum SecretRef {
    Inline(String),
    Env(String),
    File(PathBuf),
}

impl std::fmt::Debug for SecretRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SecretRef::Inline(_) => f.write_str("Inline(<redacted>)"),
            SecretRef::Env(n) => write!(f, "Env({n})"),
            SecretRef::File(p) => write!(f, "File({})", p.display()),
        }
    }
}

impl SecretRef {
    /// `env:NAME`, `file:PATH`, or the value itself.
    pub fn parse(s: &str) -> SecretRef {
        if let Some(n) = s.strip_prefix("env:") {
            SecretRef::Env(n.to_string())
        } else if let Some(p) = s.strip_prefix("file:") {
            SecretRef::File(PathBuf::from(p))
        } else {
            SecretRef::Inline(s.to_string())
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ConsumerSpec {
    pub name: String,
    pub groups: Vec<String>,
    pub tags: Vec<(String, String)>,
    pub api_keys: Vec<ApiKeySpec>,
    pub basic: Option<BasicSpec>,
    pub jwt_subjects: Vec<String>,
    pub certificates: Vec<CertMatch>,
}

/// How a client certificate names a consumer.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CertMatch {
    /// The subject DN, normalized by [`normalize_dn`].
    Subject(String),
    /// A subject alternative name, as written (DNS names lower-case).
    San(String),
    /// SHA-256 of the certificate's DER.
    Fingerprint([u8; 32]),
}

/// A DN compared without spaces around `,` and `=`, attribute types upper-case:
/// `cn=acme, O=Acme Corp` and `CN=acme,O=Acme Corp` are the same.
pub fn normalize_dn(dn: &str) -> String {
    dn.split(',')
        .map(|rdn| match rdn.split_once('=') {
            Some((k, v)) => format!("{}={}", k.trim().to_ascii_uppercase(), v.trim()),
            None => rdn.trim().to_string(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiKeySpec {
    /// The SHA-256 digest of the key (`sha256:HEX`).
    Sha256([u8; 32]),
    Secret(SecretRef),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BasicSpec {
    pub username: String,
    pub password: PasswordSpec,
}

#[derive(Clone, PartialEq, Eq)]
pub enum PasswordSpec {
    /// A PHC string (`$argon2id$v=19$...`).
    Argon2(String),
    /// A modular-crypt bcrypt hash (`$2b$12$...`).
    Bcrypt(String),
    Secret(SecretRef),
}

impl std::fmt::Debug for PasswordSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PasswordSpec::Argon2(_) => f.write_str("Argon2(<hash>)"),
            PasswordSpec::Bcrypt(_) => f.write_str("Bcrypt(<hash>)"),
            PasswordSpec::Secret(s) => write!(f, "Secret({s:?})"),
        }
    }
}

/// The JWS algorithms a provider may accept, by their JOSE names.
pub const JWT_ALGORITHMS: &[&str] = &[
    "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256",
    "ES384", "EdDSA",
];

#[derive(Debug, Clone, PartialEq)]
pub struct JwtProviderSpec {
    pub name: String,
    pub issuer: Option<String>,
    pub audiences: Vec<String>,
    /// Names from [`JWT_ALGORITHMS`]; empty allows what each key's type allows.
    pub algorithms: Vec<String>,
    pub keys: Vec<JwtKeySpec>,
    pub jwks_file: Option<PathBuf>,
    pub remote: Option<JwksRemoteSpec>,
    pub leeway: Duration,
    pub require_exp: bool,
    pub required_claims: Vec<(String, ClaimRule)>,
    pub typ: Option<String>,
    pub consumer_claim: String,
    /// Claim name -> header name (lower-case).
    pub claims_to_headers: Vec<(String, String)>,
    pub max_token_size: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtKeySpec {
    pub kid: Option<String>,
    pub alg: Option<String>,
    pub material: KeyMaterial,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyMaterial {
    /// A PEM public key (RSA, EC or Ed25519), inline or from a file.
    Pem(SecretRef),
    /// An HMAC secret.
    Hmac(SecretRef),
    /// One JWK, as JSON text.
    Jwk(String),
}

/// A key set fetched from an upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwksRemoteSpec {
    pub upstream: String,
    /// Path and query of the key set; with `discovery`, of the OpenID configuration.
    pub path: String,
    pub discovery: bool,
    /// The longest a fetched set is used before it is fetched again (a smaller
    /// `Cache-Control: max-age` wins).
    pub max_age: Duration,
    /// The least time between two fetches, also the bound on refreshes an unknown
    /// `kid` may cause.
    pub min_refresh: Duration,
    pub timeout: Duration,
}

/// An OAuth 2.0 token introspection endpoint (RFC 7662), reached through an upstream.
#[derive(Debug, Clone, PartialEq)]
pub struct IntrospectionSpec {
    pub name: String,
    pub upstream: String,
    pub path: String,
    pub client_id: String,
    pub client_secret: SecretRef,
    pub timeout: Duration,
    /// The longest an active answer is reused (never past the token's `exp`).
    pub cache_max: Duration,
    /// How long an inactive answer is reused.
    pub inactive_cache: Duration,
    pub max_cached: usize,
    /// Let requests through, as anonymous, when the endpoint cannot answer.
    pub fail_open: bool,
    pub consumer_claim: String,
}

/// An auth service asked before each request on a route (`external_auth`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalAuthSpec {
    pub upstream: String,
    pub path: String,
    /// Lower-case request headers sent along.
    pub headers: Vec<String>,
    /// Lower-case answer headers copied onto the upstream request on a 2xx.
    pub copy_headers: Vec<String>,
    pub timeout: Duration,
    pub fail_open: bool,
    /// The most of the request body sent along (`None`: no body).
    pub body_limit: Option<u64>,
}

/// What a claim must hold.
#[derive(Debug, Clone, PartialEq)]
pub enum ClaimRule {
    Present,
    /// Equal to one of these (for an array claim: containing one of them).
    OneOf(Vec<serde_json::Value>),
}

/// Credential kinds a route accepts, tried in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthMethod {
    ApiKey {
        /// Lower-case header name.
        header: Option<String>,
        query: Option<String>,
    },
    Basic,
    Jwt {
        providers: Vec<String>,
    },
    /// An opaque (or any) bearer token checked by introspection.
    Introspection {
        endpoints: Vec<String>,
    },
    /// The client certificate the listener verified.
    Mtls,
}

impl AuthMethod {
    pub fn word(&self) -> &'static str {
        match self {
            AuthMethod::ApiKey { .. } => "api_key",
            AuthMethod::Basic => "basic",
            AuthMethod::Jwt { .. } => "jwt",
            AuthMethod::Introspection { .. } => "introspection",
            AuthMethod::Mtls => "mtls",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct AuthSpec {
    pub methods: Vec<AuthMethod>,
    /// Requests with no credential at all pass, as anonymous.
    pub anonymous: bool,
    pub consumers: Vec<String>,
    pub groups: Vec<String>,
    pub scopes: Vec<String>,
    pub claims: Vec<(String, ClaimRule)>,
    pub realm: String,
    pub keep_credential: bool,
    /// Lower-case header that carries the consumer's name upstream.
    pub consumer_header: Option<String>,
}

/// Client networks let in (all when `allow` is empty) and kept out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IpRulesSpec {
    pub allow: Vec<IpNet>,
    pub deny: Vec<IpNet>,
}

impl IpRulesSpec {
    pub fn is_empty(&self) -> bool {
        self.allow.is_empty() && self.deny.is_empty()
    }

    /// Deny wins over allow; an empty allow list lets everyone in.
    pub fn admits(&self, ip: std::net::IpAddr) -> bool {
        !self.deny.iter().any(|n| n.contains(ip))
            && (self.allow.is_empty() || self.allow.iter().any(|n| n.contains(ip)))
    }
}
