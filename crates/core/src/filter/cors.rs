//! CORS (the Fetch standard's CORS protocol): preflights answered here without reaching
//! the upstream, and the `Access-Control-*` headers put on actual responses for allowed
//! origins. A disallowed origin gets no CORS header at all (the upstream's are taken
//! off too, since the gateway owns the policy) and its preflight the configured refusal.
//! Every response on a route with CORS varies by `Origin` unless any origin is allowed.

use super::{Carry, Filter, FilterCtx, FilterFuture, Flow, Stage};
use crate::body::ResponseBody;
use gatehouse_config::spec::{AllowHeaders, CorsSpec, OriginRule};
use http::header::{self, HeaderName, HeaderValue};
use http::{request, response, Method, Response, StatusCode};

/// The origin of an allowed cross-origin request, for the response hook.
#[derive(Clone)]
pub(crate) struct Allowed(HeaderValue);

pub struct Cors {
    origins: Vec<Rule>,
    /// Whether `*` is sent (any origin, no credentials).
    any: bool,
    methods: Vec<Method>,
    allow_methods: HeaderValue,
    headers: Option<Vec<String>>,
    allow_headers: Option<HeaderValue>,
    expose: Option<HeaderValue>,
    credentials: bool,
    max_age: Option<HeaderValue>,
    refusal: StatusCode,
}

enum Rule {
    Any,
    Exact(String),
    Subdomain { scheme: String, suffix: String },
    Regex(regex::Regex),
}

impl Cors {
    pub fn new(spec: &CorsSpec) -> Self {
        let origins: Vec<Rule> = spec
            .origins
            .iter()
            .filter_map(|o| {
                Some(match o {
                    OriginRule::Any => Rule::Any,
                    OriginRule::Exact(s) => Rule::Exact(s.clone()),
                    OriginRule::Subdomain { scheme, suffix } => Rule::Subdomain {
                        scheme: scheme.clone(),
                        suffix: suffix.clone(),
                    },
                    // Anchored: the pattern must match the whole origin.
                    OriginRule::Regex(r) => {
                        Rule::Regex(regex::Regex::new(&format!("^(?:{r})$")).ok()?)
                    }
                })
            })
            .collect();
        let joined = |v: &[String]| HeaderValue::from_str(&v.join(", ")).ok();
        let headers = match &spec.headers {
            AllowHeaders::Any => None,
            AllowHeaders::List(l) => Some(l.clone()),
        };
        Cors {
            any: origins.iter().any(|r| matches!(r, Rule::Any)) && !spec.credentials,
            origins,
            methods: spec
                .methods
                .iter()
                .filter_map(|m| Method::from_bytes(m.as_bytes()).ok())
                .collect(),
            allow_methods: joined(&spec.methods).unwrap_or(HeaderValue::from_static("GET")),
            allow_headers: headers.as_deref().and_then(joined),
            headers,
            expose: (!spec.expose.is_empty())
                .then(|| joined(&spec.expose))
                .flatten(),
            credentials: spec.credentials,
            max_age: spec.max_age.map(|d| HeaderValue::from(d.as_secs())),
            refusal: StatusCode::from_u16(spec.preflight_refusal).unwrap_or(StatusCode::FORBIDDEN),
        }
    }

    /// Whether `origin` (as the browser sent it) is let in.
    fn allows(&self, origin: &str) -> bool {
        let lower = origin.to_ascii_lowercase();
        self.origins.iter().any(|r| match r {
            Rule::Any => true,
            Rule::Exact(o) => *o == lower,
            Rule::Subdomain { scheme, suffix } => lower
                .strip_prefix(scheme.as_str())
                .and_then(|r| r.strip_prefix("://"))
                .and_then(|host| host.strip_suffix(suffix.as_str()))
                .is_some_and(|label| !label.is_empty() && label.split('.').all(valid_label)),
            Rule::Regex(re) => re.is_match(origin),
        })
    }

    /// The preflight's answer: 204 with the grants, or the refusal without any.
    fn preflight(&self, head: &request::Parts, origin: &HeaderValue) -> Response<ResponseBody> {
        let allowed = origin.to_str().is_ok_and(|o| self.allows(o))
            && self.method_allowed(head)
            && self.headers_allowed(head);
        let mut resp = Response::new(ResponseBody::empty());
        *resp.status_mut() = if allowed {
            StatusCode::NO_CONTENT
        } else {
            self.refusal
        };
        let h = resp.headers_mut();
        self.vary(h, true);
        if !allowed {
            return resp;
        }
        self.grant(h, origin);
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            self.allow_methods.clone(),
        );
        match (
            &self.allow_headers,
            head.headers.get(header::ACCESS_CONTROL_REQUEST_HEADERS),
        ) {
            (Some(list), _) => {
                h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, list.clone());
            }
            // `*` in config: grant what was asked, which also works with credentials
            // (where a literal `*` is not honoured).
            (None, Some(asked)) => {
                h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, asked.clone());
            }
            (None, None) => {}
        }
        if let Some(a) = &self.max_age {
            h.insert(header::ACCESS_CONTROL_MAX_AGE, a.clone());
        }
        resp
    }

    fn method_allowed(&self, head: &request::Parts) -> bool {
        let Some(m) = head.headers.get(header::ACCESS_CONTROL_REQUEST_METHOD) else {
            return false;
        };
        self.methods
            .iter()
            .any(|a| a.as_str().as_bytes() == m.as_bytes())
    }

    /// Every header the preflight names is allowed (names compared case-insensitively).
    fn headers_allowed(&self, head: &request::Parts) -> bool {
        let Some(list) = &self.headers else {
            return true;
        };
        head.headers
            .get_all(header::ACCESS_CONTROL_REQUEST_HEADERS)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .all(|n| list.iter().any(|a| a.eq_ignore_ascii_case(n)))
    }

    /// The grant headers every allowed response carries.
    fn grant(&self, h: &mut http::HeaderMap, origin: &HeaderValue) {
        let value = if self.any {
            HeaderValue::from_static("*")
        } else {
            origin.clone()
        };
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
        if self.credentials {
            h.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
    }

    /// `Vary: Origin` (and, on a preflight, the request headers it was decided on),
    /// added to what is there; not needed when every origin gets `*`.
    fn vary(&self, h: &mut http::HeaderMap, preflight: bool) {
        let v = match (self.any, preflight) {
            (true, false) => return,
            (true, true) => "Access-Control-Request-Method, Access-Control-Request-Headers",
            (false, false) => "Origin",
            (false, true) => {
                "Origin, Access-Control-Request-Method, Access-Control-Request-Headers"
            }
        };
        h.append(header::VARY, HeaderValue::from_static(v));
    }
}

/// A DNS label as an origin's host may hold (so `https://evil.com#.example.com` and
/// the like never pass for a subdomain).
fn valid_label(l: &str) -> bool {
    !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// The method a preflight (OPTIONS with an `Origin`) asks about. Routes are matched on
/// it, so a route limited to `POST` still answers the preflight for its `POST`s.
pub fn preflight_method<B>(req: &http::Request<B>) -> Option<Method> {
    if req.method() != Method::OPTIONS || !req.headers().contains_key(header::ORIGIN) {
        return None;
    }
    let asked = req.headers().get(header::ACCESS_CONTROL_REQUEST_METHOD)?;
    Method::from_bytes(asked.as_bytes()).ok()
}

static CORS_HEADERS: [HeaderName; 6] = [
    header::ACCESS_CONTROL_ALLOW_ORIGIN,
    header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
    header::ACCESS_CONTROL_EXPOSE_HEADERS,
    header::ACCESS_CONTROL_ALLOW_METHODS,
    header::ACCESS_CONTROL_ALLOW_HEADERS,
    header::ACCESS_CONTROL_MAX_AGE,
];

impl Filter for Cors {
    fn name(&self) -> &'static str {
        "cors"
    }

    fn stage(&self) -> Stage {
        Stage::Cors
    }

    fn has_request_hook(&self) -> bool {
        true
    }

    fn on_request<'a>(
        &'a self,
        head: &'a mut request::Parts,
        _ctx: &'a FilterCtx<'a>,
    ) -> FilterFuture<'a> {
        let flow = match head.headers.get(header::ORIGIN).cloned() {
            None => Flow::Continue,
            Some(origin)
                if head.method == Method::OPTIONS
                    && head
                        .headers
                        .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD) =>
            {
                Flow::Respond(Box::new(self.preflight(head, &origin)))
            }
            Some(origin) => {
                if origin.to_str().is_ok_and(|o| self.allows(o)) {
                    head.extensions.get_or_insert_default::<Carry>().cors = Some(Allowed(origin));
                }
                Flow::Continue
            }
        };
        FilterFuture::ready(flow)
    }

    fn on_response(&self, head: &mut response::Parts, _ctx: &FilterCtx<'_>) {
        // (A preflight this filter answered never comes here: a filter's own reply
        // only passes the response hooks of the filters before it.)
        for n in &CORS_HEADERS {
            head.headers.remove(n);
        }
        self.vary(&mut head.headers, false);
        let Some(Allowed(origin)) = head.extensions.get::<Carry>().and_then(|c| c.cors.clone())
        else {
            return;
        };
        self.grant(&mut head.headers, &origin);
        if let Some(e) = &self.expose {
            head.headers
                .insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, e.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cors(origins: &[OriginRule]) -> Cors {
        Cors::new(&CorsSpec {
            origins: origins.to_vec(),
            methods: vec!["GET".into(), "POST".into()],
            headers: AllowHeaders::List(vec!["content-type".into()]),
            expose: vec![],
            credentials: false,
            max_age: None,
            preflight_refusal: 403,
        })
    }

    #[test]
    fn subdomain_wildcards_take_labels_and_nothing_else() {
        let c = cors(&[OriginRule::Subdomain {
            scheme: "https".into(),
            suffix: ".example.com".into(),
        }]);
        assert!(c.allows("https://app.example.com"));
        assert!(c.allows("https://a.b.example.com"));
        assert!(c.allows("HTTPS://App.Example.com"));
        assert!(!c.allows("https://example.com"));
        assert!(!c.allows("http://app.example.com"));
        assert!(!c.allows("https://app.example.com:8443"));
        assert!(!c.allows("https://evil.com/.example.com"));
        assert!(!c.allows("https://evilexample.com"));
    }

    #[test]
    fn regexes_match_the_whole_origin() {
        let c = cors(&[OriginRule::Regex(r"https://[a-z]+\.test".into())]);
        assert!(c.allows("https://app.test"));
        assert!(!c.allows("https://app.test.evil.com"));
        assert!(!c.allows("xhttps://app.test"));
    }
}
