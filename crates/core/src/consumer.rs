//! Who is calling: the [`Identity`] an auth filter finds for a request, the seam that
//! rate limits, quotas, analytics and the access log key on. It travels in the request
//! head's extensions as a [`Caller`], set once by the auth stage and read after it.

use std::sync::Arc;

/// A configured consumer, compiled once per config generation.
#[derive(Debug)]
pub struct Consumer {
    pub name: Arc<str>,
    pub groups: Vec<String>,
    pub tags: Vec<(String, String)>,
    /// The name as a header value, made once (`None` if it cannot be one).
    pub header: Option<http::HeaderValue>,
}

/// How a request proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialKind {
    ApiKey,
    Basic,
    Jwt,
    /// A bearer token an introspection endpoint called active.
    Introspection,
    /// A client certificate the listener verified.
    Mtls,
    /// No credential, on a route that lets anonymous requests pass.
    Anonymous,
}

impl CredentialKind {
    /// Whether the credential came as `Authorization: Bearer`.
    pub fn is_bearer(self) -> bool {
        matches!(self, CredentialKind::Jwt | CredentialKind::Introspection)
    }

    pub fn word(self) -> &'static str {
        match self {
            CredentialKind::ApiKey => "api_key",
            CredentialKind::Basic => "basic",
            CredentialKind::Jwt => "jwt",
            CredentialKind::Introspection => "introspection",
            CredentialKind::Mtls => "mtls",
            CredentialKind::Anonymous => "anonymous",
        }
    }
}

/// What the auth stage found. A verified token with no matching consumer has claims but
/// no `consumer`.
#[derive(Debug)]
pub struct Identity {
    pub consumer: Option<Arc<Consumer>>,
    pub kind: CredentialKind,
    /// A non-secret id of the credential: the key's `consumer#n`, the Basic username,
    /// the token's subject.
    pub credential: Option<Arc<str>>,
    /// A verified token's claims.
    pub claims: Option<Arc<serde_json::Map<String, serde_json::Value>>>,
    /// The JWT provider that verified the token.
    pub provider: Option<Arc<str>>,
}

impl Identity {
    pub fn consumer_name(&self) -> Option<&Arc<str>> {
        self.consumer.as_ref().map(|c| &c.name)
    }

    /// Scopes granted: a token's `scope` (space-separated) or `scp` (list or string).
    pub fn has_scope(&self, want: &str) -> bool {
        let Some(c) = &self.claims else { return false };
        let listed = |v: &serde_json::Value| match v {
            serde_json::Value::String(s) => s.split(' ').any(|x| x == want),
            serde_json::Value::Array(a) => a.iter().any(|x| x.as_str() == Some(want)),
            _ => false,
        };
        c.get("scope").is_some_and(listed) || c.get("scp").is_some_and(listed)
    }
}

/// The request extension that carries the identity.
#[derive(Debug, Clone)]
pub struct Caller(pub Arc<Identity>);
