//! Reading credentials out of a request head (the `Authorization` scheme compared
//! case-insensitively, RFC 9110 11.1) and the replies that refuse them: 401 with a
//! `WWW-Authenticate` challenge per accepted kind (RFC 6750 3 for Bearer, RFC 7617 for
//! Basic), 400 for a malformed Bearer request, 403 for an identity the route refuses.

use super::{Auth, Found, Method};
use crate::body::ResponseBody;
use crate::consumer::CredentialKind;
use crate::error::{local_reply, ErrorKind};
use base64::Engine as _;
use http::{header, request, HeaderValue, Response, StatusCode};

/// Why a request was refused.
pub enum Denial {
    /// No credential of any accepted kind.
    Missing,
    /// A credential of this kind, but not a good one.
    Invalid(CredentialKind, String),
    /// A bearer token that is not a JWT (a later introspection method may take it).
    NotJwt(String),
    /// The same kind of credential given more than once.
    Duplicate(CredentialKind),
    /// Authenticated, but the route's rules keep this identity out.
    Forbidden(String),
    /// A scope the route needs is missing (the one missing, every one needed).
    Scope(String, String),
    /// The token could not be checked: its provider has no keys yet.
    Unavailable,
}

impl Denial {
    pub fn duplicate(kind: CredentialKind) -> Denial {
        Denial::Duplicate(kind)
    }

    /// The reply: JSON body with the request id, and the challenge headers.
    pub fn reply(&self, auth: &Auth, request_id: &HeaderValue) -> Response<ResponseBody> {
        let realm = &auth.spec.realm;
        let (kind, message, challenges): (ErrorKind, String, Vec<String>) = match self {
            Denial::Missing => (
                ErrorKind::Unauthorized,
                "this route needs credentials".into(),
                {
                    // One Bearer challenge even when two kinds take bearer tokens.
                    let mut v: Vec<String> = Vec::new();
                    for c in auth.methods.iter().map(|m| m.challenge(realm, None)) {
                        if !v.contains(&c) {
                            v.push(c);
                        }
                    }
                    v
                },
            ),
            Denial::Invalid(k, why) => (
                ErrorKind::Unauthorized,
                format!("{}: {why}", k.word()),
                vec![auth.challenge_for(*k, realm, Some(("invalid_token", why)))],
            ),
            Denial::NotJwt(why) => (
                ErrorKind::Unauthorized,
                format!("jwt: {why}"),
                vec![auth.challenge_for(CredentialKind::Jwt, realm, Some(("invalid_token", why)))],
            ),
            Denial::Duplicate(k) => (
                if k.is_bearer() {
                    ErrorKind::BadRequest
                } else {
                    ErrorKind::Unauthorized
                },
                format!("{}: the credential is given more than once", k.word()),
                vec![auth.challenge_for(
                    *k,
                    realm,
                    Some(("invalid_request", "the credential is given more than once")),
                )],
            ),
            Denial::Forbidden(why) => (ErrorKind::Forbidden, why.clone(), vec![]),
            Denial::Scope(missing, all) => (
                ErrorKind::Forbidden,
                format!("scope `{missing}` is required"),
                vec![format!(
                    "Bearer realm=\"{realm}\", error=\"insufficient_scope\", scope=\"{}\"",
                    quote_safe(all)
                )],
            ),
            Denial::Unavailable => (
                ErrorKind::AuthUnavailable,
                "the credential cannot be checked now (the issuer's keys or introspection are unavailable)".into(),
                vec![],
            ),
        };
        let mut resp = local_reply(kind, &message, request_id);
        for c in challenges.into_iter().filter(|c| !c.is_empty()) {
            if let Ok(v) = HeaderValue::from_str(&c) {
                resp.headers_mut().append(header::WWW_AUTHENTICATE, v);
            }
        }
        if resp.status() == StatusCode::SERVICE_UNAVAILABLE {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        resp
    }
}

impl Auth {
    fn challenge_for(
        &self,
        kind: CredentialKind,
        realm: &str,
        error: Option<(&str, &str)>,
    ) -> String {
        self.methods
            .iter()
            .find(|m| m.kind() == kind)
            .map_or_else(String::new, |m| m.challenge(realm, error))
    }
}

impl Method {
    /// This kind's `WWW-Authenticate` challenge.
    fn challenge(&self, realm: &str, error: Option<(&str, &str)>) -> String {
        match (self, error) {
            (Method::Jwt(_) | Method::Introspection(_), Some((code, why))) => format!(
                "Bearer realm=\"{realm}\", error=\"{code}\", error_description=\"{}\"",
                quote_safe(why)
            ),
            (Method::Jwt(_) | Method::Introspection(_), None) => {
                format!("Bearer realm=\"{realm}\"")
            }
            (Method::Basic, _) => format!("Basic realm=\"{realm}\", charset=\"UTF-8\""),
            (Method::ApiKey { header, query }, _) => {
                let name = header
                    .as_ref()
                    .map(|h| h.as_str().to_string())
                    .or_else(|| query.clone())
                    .unwrap_or_default();
                format!("ApiKey realm=\"{realm}\", name=\"{}\"", quote_safe(&name))
            }
            // TLS has no `WWW-Authenticate` scheme.
            (Method::Mtls, _) => String::new(),
        }
    }
}

/// Text safe inside a quoted-string: printable ASCII without `"` or `\`
/// (RFC 6750 3 limits `error_description` to this set).
fn quote_safe(s: &str) -> String {
    s.chars()
        .map(|c| {
            if (' '..='~').contains(&c) && c != '"' && c != '\\' {
                c
            } else {
                '\''
            }
        })
        .collect()
}

/// The credential of the `Authorization` header whose scheme is `scheme`
/// (lower-case). Another scheme is absent for this kind; two headers are a duplicate.
pub fn authorization(head: &request::Parts, scheme: &str) -> Found {
    let mut all = head.headers.get_all(header::AUTHORIZATION).iter();
    let Some(first) = all.next() else {
        return Found::Absent;
    };
    let Ok(text) = first.to_str() else {
        return Found::Absent;
    };
    let (s, rest) = text.trim().split_once(' ').unwrap_or((text.trim(), ""));
    if !s.eq_ignore_ascii_case(scheme) {
        return Found::Absent;
    }
    if all.next().is_some() {
        return Found::Duplicate;
    }
    Found::Present(rest.trim().to_string())
}

/// `base64(user:password)` -> (user, password).
pub fn basic_pair(cred: &str) -> Option<(String, String)> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(cred)
        .ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (u, p) = text.split_once(':')?;
    Some((u.to_string(), p.to_string()))
}

/// Takes parameter `name` out of the URI's query.
pub fn remove_query(uri: &mut http::Uri, name: &str) {
    let Some(q) = uri.query() else { return };
    let Some(rest) = crate::http::query::without(q, name) else {
        return;
    };
    let pq = if rest.is_empty() {
        uri.path().to_string()
    } else {
        format!("{}?{rest}", uri.path())
    };
    let mut parts = uri.clone().into_parts();
    if let Ok(p) = pq.parse() {
        parts.path_and_query = Some(p);
        if let Ok(u) = http::Uri::from_parts(parts) {
            *uri = u;
        }
    }
}
