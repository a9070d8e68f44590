//! The auth stage of a route: finds who is calling from the first credential kind the
//! request carries (API key, Basic, JWT bearer, in the route's order), applies the
//! route's access rules, and hands the [`Identity`] on in the request's extensions.
//!
//! A present but bad credential answers 401 at once (it never falls through to
//! anonymous); no credential at all answers 401 with a challenge per accepted kind
//! unless the route lets anonymous requests pass. Authenticated but not allowed is 403.
//! The credential is removed before the request goes upstream unless the route keeps it.

mod challenge;
mod directory;
pub mod external;
pub mod introspect;
pub mod jwks;
mod jwt;
mod keyset;
pub(crate) mod secret;
pub mod side;

pub use directory::Directory;
pub use jwt::algorithms as jwt_algorithms;
pub use jwt::Provider;
pub use keyset::KeySet;
pub use secret::{hash_key, hash_password};

use super::{Filter, FilterCtx, FilterFuture, Flow, Stage};
use crate::consumer::{Caller, CredentialKind, Identity};
use challenge::Denial;
use futures_util::FutureExt;
use gatehouse_config::spec::{AuthMethod, AuthSpec, JwtProviderSpec};
use http::{header, request, HeaderName, HeaderValue};
use prometheus_client::metrics::counter::Counter;
use std::collections::HashMap;
use std::sync::Arc;

/// What every auth filter of one config generation shares.
#[derive(Default)]
pub struct AuthRt {
    pub directory: Arc<Directory>,
    pub providers: HashMap<String, Arc<Provider>>,
    pub introspectors: HashMap<String, Arc<introspect::Introspector>>,
    /// A side-request sender per upstream group, for external auth.
    pub calls: HashMap<String, side::Call>,
}

/// Builds a provider from its spec: config keys now, the remote set (if any) from
/// `remote`, which the runtime carries over reloads and starts fetching.
pub fn provider(
    spec: &JwtProviderSpec,
    remote: Option<Arc<jwks::Remote>>,
) -> Result<Provider, (String, String)> {
    let allowed = jwt::algorithms(spec);
    let mut local =
        KeySet::from_specs(&spec.keys, &allowed).map_err(|(i, e)| (format!("keys[{i}]"), e))?;
    if let Some(p) = &spec.jwks_file {
        let text = std::fs::read(p).map_err(|e| {
            (
                "jwks_file".to_string(),
                format!("cannot read `{}`: {e}", p.display()),
            )
        })?;
        let set = KeySet::from_jwks(&text, &allowed).map_err(|e| ("jwks_file".to_string(), e))?;
        local.keys.extend(set.keys);
    }
    Ok(Provider::new(spec.clone(), local, remote))
}

/// Builds an introspection endpoint's client; its answer cache is `previous`'s when
/// the spec is unchanged.
pub fn introspector(
    spec: &gatehouse_config::spec::IntrospectionSpec,
    previous: Option<&introspect::Introspector>,
    call: side::Call,
) -> Result<introspect::Introspector, String> {
    let secret = secret::resolve(&spec.client_secret)?;
    let cache = previous
        .filter(|p| p.spec == *spec)
        .map_or_else(Default::default, |p| p.cache.clone());
    Ok(introspect::Introspector::new(
        spec.clone(),
        &secret,
        call,
        cache,
    ))
}

/// A credential kind as the filter runs it.
enum Method {
    ApiKey {
        header: Option<HeaderName>,
        query: Option<String>,
    },
    Basic,
    Jwt(Vec<Arc<Provider>>),
    Introspection(Vec<Arc<introspect::Introspector>>),
    Mtls,
}

/// What one kind found in the request.
enum Found {
    Absent,
    /// The same credential given twice (two headers, header and query).
    Duplicate,
    Present(String),
}

/// Counters by method (in the route's order, then anonymous) and result, made once per
/// route, so a request counts with an index and no look-up by name.
struct Counters(Vec<[Counter; 4]>);

/// How a method (or anonymous access) ended, in the order of `RESULTS`.
#[derive(Clone, Copy)]
enum Outcome {
    Allowed,
    Missing,
    Invalid,
    Forbidden,
}

pub struct Auth {
    spec: AuthSpec,
    directory: Arc<Directory>,
    methods: Vec<Method>,
    consumer_header: Option<HeaderName>,
    counters: Counters,
    /// Every method is checked in memory (API keys, client certificates): nothing to
    /// wait for.
    in_memory: bool,
}

const RESULTS: [&str; 4] = ["allowed", "missing", "invalid", "forbidden"];

impl Auth {
    pub fn new(
        spec: &AuthSpec,
        rt: &AuthRt,
        counter: &dyn Fn(&'static str, &'static str) -> Counter,
    ) -> Auth {
        let methods = spec
            .methods
            .iter()
            .map(|m| match m {
                AuthMethod::ApiKey { header, query } => Method::ApiKey {
                    header: header
                        .as_deref()
                        .and_then(|h| HeaderName::from_bytes(h.as_bytes()).ok()),
                    query: query.clone(),
                },
                AuthMethod::Basic => Method::Basic,
                AuthMethod::Mtls => Method::Mtls,
                AuthMethod::Introspection { endpoints } => Method::Introspection(
                    endpoints
                        .iter()
                        .filter_map(|p| rt.introspectors.get(p).cloned())
                        .collect(),
                ),
                AuthMethod::Jwt { providers } => Method::Jwt(
                    providers
                        .iter()
                        .filter_map(|p| rt.providers.get(p).cloned())
                        .collect(),
                ),
            })
            .collect();
        let counters = spec
            .methods
            .iter()
            .map(|m| m.word())
            .chain(["anonymous"])
            .map(|kind| RESULTS.map(|r| counter(kind, r)))
            .collect();
        Auth {
            spec: spec.clone(),
            directory: rt.directory.clone(),
            methods,
            consumer_header: spec
                .consumer_header
                .as_deref()
                .and_then(|h| HeaderName::from_bytes(h.as_bytes()).ok()),
            counters: Counters(counters),
            in_memory: spec
                .methods
                .iter()
                .all(|m| matches!(m, AuthMethod::ApiKey { .. } | AuthMethod::Mtls)),
        }
    }

    /// Decides and passes the identity on, or answers the refusal.
    async fn run(&self, head: &mut request::Parts, ctx: &FilterCtx<'_>) -> Flow {
        match self.decide(head, ctx).await {
            Ok(id) => {
                self.pass_on(head, &id);
                head.extensions.insert(Caller(Arc::new(id)));
                Flow::Continue
            }
            Err(d) => Flow::Respond(Box::new(d.reply(self, ctx.request_id))),
        }
    }

    async fn decide(
        &self,
        head: &mut request::Parts,
        ctx: &FilterCtx<'_>,
    ) -> Result<Identity, Denial> {
        for (i, m) in self.methods.iter().enumerate() {
            let kind = m.kind();
            let found = m.find(head, ctx);
            let cred = match found {
                Found::Absent => continue,
                Found::Duplicate => {
                    self.count(i, Outcome::Invalid);
                    return Err(Denial::duplicate(kind));
                }
                Found::Present(c) => c,
            };
            let id = match self.verify(m, &cred, ctx).await {
                Ok(id) => id,
                // An opaque token is no JWT: a later introspection method may know it.
                Err(Denial::NotJwt(_)) if self.introspects_after(i) => continue,
                Err(d) => {
                    self.count(i, Outcome::Invalid);
                    return Err(d);
                }
            };
            if let Err(d) = self.allow(&id) {
                self.count(i, Outcome::Forbidden);
                return Err(d);
            }
            self.count(i, Outcome::Allowed);
            return Ok(id);
        }
        let anonymous = Identity {
            consumer: None,
            kind: CredentialKind::Anonymous,
            credential: None,
            claims: None,
            provider: None,
        };
        if self.spec.anonymous && self.allow(&anonymous).is_ok() {
            self.count(self.methods.len(), Outcome::Allowed);
            return Ok(anonymous);
        }
        self.count(self.methods.len(), Outcome::Missing);
        Err(Denial::Missing)
    }

    async fn verify(
        &self,
        m: &Method,
        cred: &str,
        ctx: &FilterCtx<'_>,
    ) -> Result<Identity, Denial> {
        match m {
            Method::ApiKey { .. } => match self.directory.by_key(cred.as_bytes()) {
                Some(o) => Ok(Identity {
                    consumer: Some(o.consumer.clone()),
                    kind: CredentialKind::ApiKey,
                    credential: Some(o.id.clone()),
                    claims: None,
                    provider: None,
                }),
                None => Err(Denial::Invalid(
                    CredentialKind::ApiKey,
                    "API key is not known".into(),
                )),
            },
            Method::Basic => {
                let bad = |why: &str| Denial::Invalid(CredentialKind::Basic, why.into());
                let (user, pass) = challenge::basic_pair(cred)
                    .ok_or_else(|| bad("credentials are not base64 `user:password`"))?;
                match self.directory.check_basic(&user, pass.as_bytes()).await {
                    Some(c) => Ok(Identity {
                        consumer: Some(c),
                        kind: CredentialKind::Basic,
                        credential: Some(Arc::from(user.as_str())),
                        claims: None,
                        provider: None,
                    }),
                    None => Err(bad("username or password is wrong")),
                }
            }
            Method::Jwt(providers) => self.verify_jwt(providers, cred).await,
            Method::Introspection(list) => self.introspect(list, cred).await,
            Method::Mtls => {
                let Some(cert) = ctx.client_cert else {
                    return Err(Denial::Invalid(
                        CredentialKind::Mtls,
                        "no client certificate".into(),
                    ));
                };
                Ok(Identity {
                    consumer: self.directory.by_cert(cert),
                    kind: CredentialKind::Mtls,
                    credential: Some(cert.id.clone()),
                    claims: None,
                    provider: None,
                })
            }
        }
    }

    fn introspects_after(&self, i: usize) -> bool {
        self.methods[i + 1..]
            .iter()
            .any(|m| matches!(m, Method::Introspection(_)))
    }

    /// Asks each endpoint in turn; the first that knows the token active wins.
    async fn introspect(
        &self,
        list: &[Arc<introspect::Introspector>],
        token: &str,
    ) -> Result<Identity, Denial> {
        let mut refusal = None;
        for e in list {
            match e.check(token).await {
                introspect::Outcome::Active(claims) => {
                    return Ok(self.token_identity(
                        CredentialKind::Introspection,
                        claims,
                        &e.spec.consumer_claim,
                    ));
                }
                introspect::Outcome::Inactive(why) => {
                    refusal.get_or_insert(Denial::Invalid(CredentialKind::Introspection, why));
                }
                introspect::Outcome::Down(why) if e.spec.fail_open => {
                    tracing::error!(endpoint = %e.spec.name, error = %why, "token introspection is down; letting the request through unauthenticated (fail_open)");
                    return Ok(Identity {
                        consumer: None,
                        kind: CredentialKind::Introspection,
                        credential: None,
                        claims: None,
                        provider: None,
                    });
                }
                introspect::Outcome::Down(why) => {
                    tracing::warn!(endpoint = %e.spec.name, error = %why, "token introspection failed");
                    refusal.get_or_insert(Denial::Unavailable);
                }
            }
        }
        Err(refusal.unwrap_or(Denial::Invalid(
            CredentialKind::Introspection,
            "no introspection endpoint".into(),
        )))
    }

    /// The identity a verified token (or introspection answer) gives: the consumer named
    /// by its `consumer_claim` (for introspection, `sub` when that is absent).
    fn token_identity(
        &self,
        kind: CredentialKind,
        claims: Arc<serde_json::Map<String, serde_json::Value>>,
        consumer_claim: &str,
    ) -> Identity {
        let named = claims.get(consumer_claim);
        let fallback = (kind == CredentialKind::Introspection)
            .then(|| claims.get("sub"))
            .flatten();
        let subject = named
            .or(fallback)
            .and_then(|s| s.as_str())
            .map(Arc::<str>::from);
        Identity {
            consumer: subject
                .as_deref()
                .and_then(|s| self.directory.by_subject(s)),
            kind,
            credential: subject,
            claims: Some(claims),
            provider: None,
        }
    }

    /// Tries each provider; the first that verifies wins. When none does, the first
    /// provider's reason is given.
    async fn verify_jwt(
        &self,
        providers: &[Arc<Provider>],
        token: &str,
    ) -> Result<Identity, Denial> {
        let mut first = None;
        for p in providers {
            match p.verify(token).await {
                Ok(v) => {
                    let mut id =
                        self.token_identity(CredentialKind::Jwt, v.claims, &p.spec.consumer_claim);
                    id.provider = Some(Arc::from(p.spec.name.as_str()));
                    return Ok(id);
                }
                Err(e) => {
                    first.get_or_insert(e);
                }
            }
        }
        Err(match first {
            Some(jwt::Refused::NoKeys) => Denial::Unavailable,
            Some(jwt::Refused::Malformed(m)) => Denial::NotJwt(m),
            Some(jwt::Refused::Invalid(m)) => Denial::Invalid(CredentialKind::Jwt, m),
            None => Denial::Invalid(CredentialKind::Jwt, "no JWT provider".into()),
        })
    }

    /// The route's access rules, on an authenticated (or anonymous) identity.
    fn allow(&self, id: &Identity) -> Result<(), Denial> {
        let s = &self.spec;
        if !s.consumers.is_empty() || !s.groups.is_empty() {
            let Some(c) = &id.consumer else {
                return Err(Denial::Forbidden(
                    "this route needs a known consumer".into(),
                ));
            };
            let named = s.consumers.iter().any(|n| **n == *c.name);
            let grouped = s.groups.iter().any(|g| c.groups.contains(g));
            if !named && !grouped {
                return Err(Denial::Forbidden(format!(
                    "consumer `{}` may not use this route",
                    c.name
                )));
            }
        }
        if let Some(missing) = s.scopes.iter().find(|sc| !id.has_scope(sc)) {
            return Err(Denial::Scope(missing.clone(), s.scopes.join(" ")));
        }
        if !s.claims.is_empty() {
            let empty = serde_json::Map::new();
            let claims = id.claims.as_deref().unwrap_or(&empty);
            if let Err(name) = jwt::check_claims(&s.claims, claims) {
                return Err(Denial::Forbidden(format!(
                    "claim `{name}` does not allow this route"
                )));
            }
        }
        Ok(())
    }

    /// Edits the head for upstream: the credential out, the consumer and claims in.
    fn pass_on(&self, head: &mut request::Parts, id: &Identity) {
        if !self.spec.keep_credential {
            for m in &self.methods {
                m.remove(head, id.kind);
            }
        }
        if let Some(h) = &self.consumer_header {
            head.headers.remove(h);
            if let Some(v) = id.consumer.as_ref().and_then(|c| c.header.clone()) {
                head.headers.insert(h.clone(), v);
            }
        }
        if let (Some(claims), Some(p)) = (&id.claims, self.jwt_provider(id)) {
            for (claim, name) in &p.spec.claims_to_headers {
                let Ok(name) = HeaderName::from_bytes(name.as_bytes()) else {
                    continue;
                };
                head.headers.remove(&name);
                let text = match claims.get(claim) {
                    Some(serde_json::Value::String(s)) => s.clone(),
                    Some(v @ (serde_json::Value::Number(_) | serde_json::Value::Bool(_))) => {
                        v.to_string()
                    }
                    _ => continue,
                };
                if let Ok(v) = HeaderValue::from_str(&text) {
                    head.headers.insert(name, v);
                }
            }
        }
    }

    /// The route's provider that verified the identity's token.
    fn jwt_provider(&self, id: &Identity) -> Option<&Arc<Provider>> {
        let name = id.provider.as_deref()?;
        self.methods.iter().find_map(|m| match m {
            Method::Jwt(list) => list.iter().find(|p| p.spec.name == name),
            _ => None,
        })
    }

    /// Counts the outcome of method `i` (`methods.len()` for anonymous access).
    fn count(&self, i: usize, result: Outcome) {
        if let Some(c) = self.counters.0.get(i) {
            c[result as usize].inc();
        }
    }
}

impl Method {
    fn kind(&self) -> CredentialKind {
        match self {
            Method::ApiKey { .. } => CredentialKind::ApiKey,
            Method::Basic => CredentialKind::Basic,
            Method::Jwt(_) => CredentialKind::Jwt,
            Method::Introspection(_) => CredentialKind::Introspection,
            Method::Mtls => CredentialKind::Mtls,
        }
    }

    fn find(&self, head: &request::Parts, ctx: &FilterCtx<'_>) -> Found {
        match self {
            Method::ApiKey { header, query } => {
                // Counted in place: only the one key, if one, is copied out.
                let mut seen = 0;
                let mut key: &[u8] = b"";
                if let Some(h) = header {
                    for v in head.headers.get_all(h) {
                        seen += 1;
                        key = v.as_bytes();
                    }
                }
                if let (Some(q), Some(qs)) = (query, head.uri.query()) {
                    for v in crate::http::query::values(qs, q) {
                        seen += 1;
                        key = v.as_bytes();
                    }
                }
                match seen {
                    0 => Found::Absent,
                    1 => Found::Present(String::from_utf8_lossy(key).into_owned()),
                    _ => Found::Duplicate,
                }
            }
            Method::Basic => challenge::authorization(head, "basic"),
            Method::Jwt(_) | Method::Introspection(_) => challenge::authorization(head, "bearer"),
            Method::Mtls => match ctx.client_cert {
                Some(_) => Found::Present(String::new()),
                None => Found::Absent,
            },
        }
    }

    /// Takes this kind's credential out of the head when it is the one that was used
    /// (an API key parameter always, so it never reaches upstream logs).
    fn remove(&self, head: &mut request::Parts, used: CredentialKind) {
        match self {
            Method::ApiKey { header, query } => {
                if used == CredentialKind::ApiKey {
                    if let Some(h) = header {
                        head.headers.remove(h);
                    }
                }
                if let Some(q) = query {
                    challenge::remove_query(&mut head.uri, q);
                }
            }
            Method::Basic if used == CredentialKind::Basic => {
                head.headers.remove(header::AUTHORIZATION);
            }
            Method::Jwt(_) | Method::Introspection(_) if used.is_bearer() => {
                head.headers.remove(header::AUTHORIZATION);
            }
            _ => {}
        }
    }
}

impl Filter for Auth {
    fn name(&self) -> &'static str {
        "auth"
    }

    fn stage(&self) -> Stage {
        Stage::Auth
    }

    fn has_request_hook(&self) -> bool {
        true
    }

    fn on_request<'a>(
        &'a self,
        head: &'a mut request::Parts,
        ctx: &'a FilterCtx<'a>,
    ) -> FilterFuture<'a> {
        if self.in_memory {
            // API keys and client certificates are checked in memory: the decision is
            // made at the first poll, and needs no boxed future.
            if let Some(flow) = self.run(head, ctx).now_or_never() {
                return FilterFuture::ready(flow);
            }
        }
        FilterFuture::waiting(self.run(head, ctx))
    }
}

#[cfg(test)]
mod tests;
