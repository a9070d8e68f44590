//! Validates `[[consumers]]`, `[[jwt_providers]]`, a route's `auth` table and the
//! `ip_allow` / `ip_deny` lists of routes and listeners.

use super::{check_unique, Errors};
use crate::raw::{
    AuthConf, ConsumerConf, ExternalAuthConf, IntrospectionConf, JwtKeyConf, JwtProviderConf,
};
use crate::spec::*;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(30);
pub const DEFAULT_MAX_TOKEN_SIZE: usize = 8 * 1024;
pub const DEFAULT_JWKS_MAX_AGE: Duration = Duration::from_secs(3600);
pub const DEFAULT_JWKS_MIN_REFRESH: Duration = Duration::from_secs(5);
pub const DEFAULT_JWKS_TIMEOUT: Duration = Duration::from_secs(5);
pub const DEFAULT_API_KEY_HEADER: &str = "x-api-key";

pub fn consumers(list: &[(usize, ConsumerConf)], errs: &mut Errors) -> Vec<ConsumerSpec> {
    check_unique(
        list.iter().map(|(i, c)| (*i, c.name.as_str())),
        "consumers",
        errs,
    );
    let mut users: HashMap<&str, usize> = HashMap::new();
    let mut subjects: HashMap<&str, usize> = HashMap::new();
    let mut keys: HashMap<ApiKeySpec, usize> = HashMap::new();
    let mut out = Vec::new();
    for (i, c) in list {
        let path = format!("consumers[{i}]");
        let api_keys = c
            .api_keys
            .iter()
            .enumerate()
            .filter_map(|(j, k)| {
                let at = format!("{path}.api_keys[{j}]");
                let key = api_key(k, &at, errs)?;
                if let Some(first) = keys.insert(key.clone(), *i) {
                    errs.push(
                        at,
                        format!("the same key is already given to consumers[{first}]"),
                    );
                }
                Some(key)
            })
            .collect();
        let basic = c.basic.as_ref().map(|b| {
            if let Some(first) = users.insert(b.username.as_str(), *i) {
                errs.push(
                    format!("{path}.basic.username"),
                    format!(
                        "`{}` is already the username of consumers[{first}]",
                        b.username
                    ),
                );
            }
            if b.username.contains(':') || b.username.is_empty() {
                errs.push(
                    format!("{path}.basic.username"),
                    "a Basic username is non-empty and has no `:` (RFC 7617)",
                );
            }
            BasicSpec {
                username: b.username.clone(),
                password: password(&b.password),
            }
        });
        for (j, s) in c.jwt_subjects.iter().enumerate() {
            if let Some(first) = subjects.insert(s.as_str(), *i) {
                errs.push(
                    format!("{path}.jwt_subjects[{j}]"),
                    format!("`{s}` already names consumers[{first}]"),
                );
            }
        }
        let certificates = c
            .certificates
            .iter()
            .enumerate()
            .filter_map(|(j, m)| cert_match(m, &format!("{path}.certificates[{j}]"), errs))
            .collect();
        out.push(ConsumerSpec {
            certificates,
            name: c.name.clone(),
            groups: c.groups.clone(),
            tags: c.tags.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            api_keys,
            basic,
            jwt_subjects: c.jwt_subjects.clone(),
        });
    }
    out
}

impl std::hash::Hash for ApiKeySpec {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        match self {
            ApiKeySpec::Sha256(d) => d.hash(h),
            ApiKeySpec::Secret(SecretRef::Inline(s)) => s.hash(h),
            ApiKeySpec::Secret(SecretRef::Env(s)) => ("env", s).hash(h),
            ApiKeySpec::Secret(SecretRef::File(p)) => p.hash(h),
        }
    }
}

fn api_key(k: &str, path: &str, errs: &mut Errors) -> Option<ApiKeySpec> {
    if let Some(hex) = k.strip_prefix("sha256:") {
        return match hex32(hex) {
            Some(d) => Some(ApiKeySpec::Sha256(d)),
            None => {
                errs.push(
                    path,
                    "`sha256:` is followed by 64 hex digits (the key's SHA-256)",
                );
                None
            }
        };
    }
    if k.is_empty() {
        errs.push(path, "an API key cannot be empty");
        return None;
    }
    Some(ApiKeySpec::Secret(SecretRef::parse(k)))
}

fn cert_match(m: &crate::raw::CertMatchConf, path: &str, errs: &mut Errors) -> Option<CertMatch> {
    match (&m.subject, &m.san, &m.fingerprint) {
        (Some(s), None, None) => Some(CertMatch::Subject(normalize_dn(s))),
        (None, Some(s), None) => Some(CertMatch::San(s.clone())),
        (None, None, Some(f)) => {
            let hex: String = f
                .trim_start_matches("sha256:")
                .chars()
                .filter(|c| *c != ':')
                .collect();
            let d = hex32(&hex);
            if d.is_none() {
                errs.push(
                    format!("{path}.fingerprint"),
                    "expected the certificate's SHA-256 as 64 hex digits",
                );
            }
            d.map(CertMatch::Fingerprint)
        }
        _ => {
            errs.push(
                path,
                "a certificate match has exactly one of `subject`, `san` or `fingerprint`",
            );
            None
        }
    }
}

/// 64 hex digits -> 32 bytes.
fn hex32(s: &str) -> Option<[u8; 32]> {
    let b = s.as_bytes();
    if b.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (o, pair) in out.iter_mut().zip(b.chunks(2)) {
        *o = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
    }
    Some(out)
}

fn password(p: &str) -> PasswordSpec {
    if p.starts_with("$argon2") {
        PasswordSpec::Argon2(p.to_string())
    } else if ["$2a$", "$2b$", "$2y$", "$2x$"]
        .iter()
        .any(|x| p.starts_with(x))
    {
        PasswordSpec::Bcrypt(p.to_string())
    } else {
        PasswordSpec::Secret(SecretRef::parse(p))
    }
}

pub fn jwt_providers(
    list: &[(usize, JwtProviderConf)],
    upstreams: &[UpstreamSpec],
    errs: &mut Errors,
) -> Vec<JwtProviderSpec> {
    check_unique(
        list.iter().map(|(i, p)| (*i, p.name.as_str())),
        "jwt_providers",
        errs,
    );
    list.iter()
        .map(|(i, p)| provider(p, &format!("jwt_providers[{i}]"), upstreams, errs))
        .collect()
}

fn provider(
    p: &JwtProviderConf,
    path: &str,
    upstreams: &[UpstreamSpec],
    errs: &mut Errors,
) -> JwtProviderSpec {
    let algorithms = p.algorithms.clone().unwrap_or_default();
    for (i, a) in algorithms.iter().enumerate() {
        check_alg(a, &format!("{path}.algorithms[{i}]"), errs);
    }
    let keys: Vec<JwtKeySpec> = p
        .keys
        .iter()
        .enumerate()
        .filter_map(|(i, k)| key(k, &format!("{path}.keys[{i}]"), errs))
        .collect();
    let discovery = p.discovery.unwrap_or(false);
    let remote = p.jwks_upstream.as_ref().map(|u| {
        if !upstreams.iter().any(|s| &s.name == u) {
            errs.push(
                format!("{path}.jwks_upstream"),
                format!("no upstream is named `{u}`"),
            );
        }
        let default_path = match (&p.issuer, discovery) {
            (Some(iss), true) => discovery_path(iss),
            _ => "/.well-known/jwks.json".to_string(),
        };
        let jwks_path = p.jwks_path.clone().unwrap_or(default_path);
        if !jwks_path.starts_with('/') || http::uri::PathAndQuery::try_from(&*jwks_path).is_err() {
            errs.push(
                format!("{path}.jwks_path"),
                "expected a path such as `/jwks.json`",
            );
        }
        JwksRemoteSpec {
            upstream: u.clone(),
            path: jwks_path,
            discovery,
            max_age: p.jwks_max_age.map_or(DEFAULT_JWKS_MAX_AGE, |d| d.0),
            min_refresh: p.jwks_min_refresh.map_or(DEFAULT_JWKS_MIN_REFRESH, |d| d.0),
            timeout: p.jwks_timeout.map_or(DEFAULT_JWKS_TIMEOUT, |d| d.0),
        }
    });
    if discovery && (p.issuer.is_none() || p.jwks_upstream.is_none()) {
        errs.push(
            format!("{path}.discovery"),
            "discovery needs `issuer` and `jwks_upstream` (the upstream that serves the issuer)",
        );
    }
    if keys.is_empty() && p.jwks_file.is_none() && remote.is_none() {
        errs.push(
            path,
            "a JWT provider needs keys: `keys`, `jwks_file` or `jwks_upstream`",
        );
    }
    let claims_to_headers = p
        .claims_to_headers
        .iter()
        .filter_map(|(claim, h)| {
            header_name(h, &format!("{path}.claims_to_headers.{claim}"), errs)
                .map(|h| (claim.clone(), h))
        })
        .collect();
    JwtProviderSpec {
        name: p.name.clone(),
        issuer: p.issuer.clone(),
        audiences: p.audiences.as_ref().map(|a| a.to_vec()).unwrap_or_default(),
        algorithms,
        keys,
        jwks_file: p.jwks_file.as_ref().map(Into::into),
        remote,
        leeway: p.leeway.map_or(DEFAULT_LEEWAY, |d| d.0),
        require_exp: p.require_exp.unwrap_or(true),
        required_claims: claim_rules(&p.required_claims),
        typ: p.typ.clone(),
        consumer_claim: p.consumer_claim.clone().unwrap_or_else(|| "sub".into()),
        claims_to_headers,
        max_token_size: p
            .max_token_size
            .map_or(DEFAULT_MAX_TOKEN_SIZE, |s| s.0 as usize),
    }
}

/// `https://idp.example/realms/x` -> `/realms/x/.well-known/openid-configuration`.
fn discovery_path(issuer: &str) -> String {
    let after_scheme = issuer.split_once("://").map_or(issuer, |(_, r)| r);
    let base = after_scheme.find('/').map_or("", |i| &after_scheme[i..]);
    format!(
        "{}/.well-known/openid-configuration",
        base.trim_end_matches('/')
    )
}

fn check_alg(a: &str, path: &str, errs: &mut Errors) -> bool {
    let ok = JWT_ALGORITHMS.contains(&a);
    if !ok {
        errs.push(
            path,
            format!(
                "`{a}` is not an algorithm Gatehouse accepts; expected one of {}",
                JWT_ALGORITHMS.join(", ")
            ),
        );
    }
    ok
}

fn key(k: &JwtKeyConf, path: &str, errs: &mut Errors) -> Option<JwtKeySpec> {
    if let Some(a) = &k.alg {
        check_alg(a, &format!("{path}.alg"), errs);
    }
    let material = match (&k.pem, &k.secret, &k.jwk) {
        (Some(p), None, None) => KeyMaterial::Pem(SecretRef::parse(p)),
        (None, Some(s), None) => KeyMaterial::Hmac(SecretRef::parse(s)),
        (None, None, Some(j)) => KeyMaterial::Jwk(j.clone()),
        _ => {
            errs.push(path, "a key has exactly one of `pem`, `secret` or `jwk`");
            return None;
        }
    };
    if matches!(material, KeyMaterial::Hmac(_))
        && k.alg.as_deref().is_some_and(|a| !a.starts_with("HS"))
    {
        errs.push(
            format!("{path}.alg"),
            "an HMAC `secret` is used with HS256, HS384 or HS512 only",
        );
    }
    Some(JwtKeySpec {
        kid: k.kid.clone(),
        alg: k.alg.clone(),
        material,
    })
}

fn claim_rules(m: &BTreeMap<String, Value>) -> Vec<(String, ClaimRule)> {
    m.iter()
        .map(|(k, v)| {
            let rule = match v {
                Value::Bool(true) => ClaimRule::Present,
                Value::Array(a) => ClaimRule::OneOf(a.clone()),
                other => ClaimRule::OneOf(vec![other.clone()]),
            };
            (k.clone(), rule)
        })
        .collect()
}

fn header_name(h: &str, path: &str, errs: &mut Errors) -> Option<String> {
    match http::HeaderName::from_bytes(h.as_bytes()) {
        Ok(n) => Some(n.as_str().to_string()),
        Err(_) => {
            errs.push(path, format!("`{h}` is not a header name"));
            None
        }
    }
}

pub fn introspection(
    list: &[(usize, IntrospectionConf)],
    upstreams: &[UpstreamSpec],
    errs: &mut Errors,
) -> Vec<IntrospectionSpec> {
    check_unique(
        list.iter().map(|(i, c)| (*i, c.name.as_str())),
        "introspection",
        errs,
    );
    list.iter()
        .map(|(i, c)| {
            let path = format!("introspection[{i}]");
            upstream_ref(&c.upstream, &format!("{path}.upstream"), upstreams, errs);
            let p = c.path.clone().unwrap_or_else(|| "/introspect".into());
            check_path(&p, &format!("{path}.path"), errs);
            IntrospectionSpec {
                name: c.name.clone(),
                upstream: c.upstream.clone(),
                path: p,
                client_id: c.client_id.clone(),
                client_secret: SecretRef::parse(&c.client_secret),
                timeout: c.timeout.map_or(Duration::from_secs(2), |d| d.0),
                cache_max: c.cache_max.map_or(Duration::from_secs(300), |d| d.0),
                inactive_cache: c.inactive_cache.map_or(Duration::from_secs(10), |d| d.0),
                max_cached: c.max_cached.unwrap_or(100_000),
                fail_open: c.fail_open.unwrap_or(false),
                consumer_claim: c
                    .consumer_claim
                    .clone()
                    .unwrap_or_else(|| "client_id".into()),
            }
        })
        .collect()
}

/// A route's `external_auth` table.
pub fn external_auth(
    e: &ExternalAuthConf,
    path: &str,
    upstreams: &[UpstreamSpec],
    errs: &mut Errors,
) -> ExternalAuthSpec {
    upstream_ref(&e.upstream, &format!("{path}.upstream"), upstreams, errs);
    let p = e.path.clone().unwrap_or_else(|| "/".into());
    check_path(&p, &format!("{path}.path"), errs);
    if e.body_limit.is_some_and(|b| b.0 == 0) {
        errs.push(
            format!("{path}.body_limit"),
            "give a size above 0, or leave it out to send no body",
        );
    }
    let names = |list: &Option<Vec<String>>, key: &str, errs: &mut Errors| -> Vec<String> {
        list.iter()
            .flatten()
            .enumerate()
            .filter_map(|(i, h)| header_name(h, &format!("{path}.{key}[{i}]"), errs))
            .collect()
    };
    ExternalAuthSpec {
        upstream: e.upstream.clone(),
        path: p,
        headers: names(&e.headers, "headers", errs),
        copy_headers: names(&e.copy_headers, "copy_headers", errs),
        timeout: e.timeout.map_or(Duration::from_secs(2), |d| d.0),
        fail_open: e.fail_open.unwrap_or(false),
        body_limit: e.body_limit.map(|b| b.0),
    }
}

fn upstream_ref(name: &str, path: &str, upstreams: &[UpstreamSpec], errs: &mut Errors) {
    if !upstreams.iter().any(|u| u.name == name) {
        errs.push(path, format!("no upstream is named `{name}`"));
    }
}

fn check_path(p: &str, path: &str, errs: &mut Errors) {
    if !p.starts_with('/') || http::uri::PathAndQuery::try_from(p).is_err() {
        errs.push(path, "expected a path such as `/check`");
    }
}

/// A route's `auth` table.
pub fn route_auth(
    a: &AuthConf,
    path: &str,
    consumers: &[ConsumerSpec],
    providers: &[JwtProviderSpec],
    introspection: &[IntrospectionSpec],
    errs: &mut Errors,
) -> AuthSpec {
    let mut methods = Vec::new();
    if a.methods.is_empty() {
        errs.push(
            format!("{path}.methods"),
            "name at least one of `api_key`, `basic`, `jwt`, `introspection`, `mtls`",
        );
    }
    for (i, m) in a.methods.iter().enumerate() {
        let at = format!("{path}.methods[{i}]");
        let method = match m.as_str() {
            "api_key" => AuthMethod::ApiKey {
                header: match &a.api_key_query {
                    Some(_) if a.api_key_header.is_none() => None,
                    _ => header_name(
                        a.api_key_header
                            .as_deref()
                            .unwrap_or(DEFAULT_API_KEY_HEADER),
                        &format!("{path}.api_key_header"),
                        errs,
                    ),
                },
                query: a.api_key_query.clone(),
            },
            "basic" => AuthMethod::Basic,
            "jwt" => AuthMethod::Jwt {
                providers: named(
                    &a.jwt,
                    &providers
                        .iter()
                        .map(|p| p.name.as_str())
                        .collect::<Vec<_>>(),
                    "jwt",
                    ("jwt_providers", "JWT provider"),
                    path,
                    errs,
                ),
            },
            "introspection" => AuthMethod::Introspection {
                endpoints: named(
                    &a.introspection,
                    &introspection
                        .iter()
                        .map(|p| p.name.as_str())
                        .collect::<Vec<_>>(),
                    "introspection",
                    ("introspection", "introspection endpoint"),
                    path,
                    errs,
                ),
            },
            "mtls" => AuthMethod::Mtls,
            other => {
                errs.push(
                    at,
                    format!(
                        "`{other}` is not a credential kind; expected `api_key`, `basic`, `jwt`, `introspection` or `mtls`"
                    ),
                );
                continue;
            }
        };
        if methods
            .iter()
            .any(|x: &AuthMethod| x.word() == method.word())
        {
            errs.push(at, format!("`{m}` is listed twice"));
            continue;
        }
        methods.push(method);
    }
    for (i, c) in a.consumers.iter().flatten().enumerate() {
        if !consumers.iter().any(|s| &s.name == c) {
            errs.push(
                format!("{path}.consumers[{i}]"),
                format!("no consumer is named `{c}`"),
            );
        }
    }
    for (i, g) in a.groups.iter().flatten().enumerate() {
        if !consumers.iter().any(|s| s.groups.contains(g)) {
            errs.push(
                format!("{path}.groups[{i}]"),
                format!("no consumer is in group `{g}`"),
            );
        }
    }
    let realm = a.realm.clone().unwrap_or_else(|| "gatehouse".into());
    if realm.contains('"') || realm.contains('\\') || http::HeaderValue::from_str(&realm).is_err() {
        errs.push(
            format!("{path}.realm"),
            "a realm is printable text without `\"` or `\\`",
        );
    }
    AuthSpec {
        methods,
        anonymous: a.anonymous.unwrap_or(false),
        consumers: a.consumers.clone().unwrap_or_default(),
        groups: a.groups.clone().unwrap_or_default(),
        scopes: a.scopes.clone().unwrap_or_default(),
        claims: claim_rules(&a.claims),
        realm,
        keep_credential: a.keep_credential.unwrap_or(false),
        consumer_header: a
            .consumer_header
            .as_deref()
            .and_then(|h| header_name(h, &format!("{path}.consumer_header"), errs)),
    }
}

/// The names a route's `auth.jwt` / `auth.introspection` gives (every defined one when
/// absent), each checked to exist.
fn named(
    given: &Option<crate::raw::OneOrMany>,
    known: &[&str],
    key: &str,
    (section, what): (&str, &str),
    path: &str,
    errs: &mut Errors,
) -> Vec<String> {
    let names = match given {
        Some(n) => n.to_vec(),
        None => known.iter().map(|k| k.to_string()).collect(),
    };
    if names.is_empty() {
        errs.push(
            format!("{path}.methods"),
            format!("`{key}` needs a `[[{section}]]` entry"),
        );
    }
    for (i, n) in names.iter().enumerate() {
        if given.is_some() && !known.contains(&n.as_str()) {
            let at = match given {
                Some(crate::raw::OneOrMany::Many(_)) => format!("{path}.{key}[{i}]"),
                _ => format!("{path}.{key}"),
            };
            errs.push(at, format!("no {what} is named `{n}`"));
        }
    }
    names
}

/// `ip_allow` and `ip_deny` of a route or listener.
pub fn ip_rules(
    allow: Option<&Vec<String>>,
    deny: Option<&Vec<String>>,
    path: &str,
    errs: &mut Errors,
) -> IpRulesSpec {
    let mut nets = |list: Option<&Vec<String>>, key: &str| -> Vec<IpNet> {
        list.into_iter()
            .flatten()
            .enumerate()
            .filter_map(|(i, s)| {
                let n = IpNet::parse(s);
                if n.is_none() {
                    errs.push(
                        format!("{path}.{key}[{i}]"),
                        format!("`{s}` is not an IP address or CIDR network"),
                    );
                }
                n
            })
            .collect()
    };
    IpRulesSpec {
        allow: nets(allow, "ip_allow"),
        deny: nets(deny, "ip_deny"),
    }
}
