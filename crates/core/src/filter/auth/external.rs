//! External authorization (Envoy ext_authz, NGINX auth_request, Traefik ForwardAuth):
//! before a request goes upstream, an auth service (an ordinary upstream: pool,
//! balancing, health) is asked with the request's method, URI, host and client address
//! in `X-Forwarded-*` and the chosen headers. A 2xx lets the request on, with the
//! chosen answer headers copied onto it; any other answer is the client's reply as the
//! service sent it; no answer is 503 (or the request passes, with `fail_open`). With
//! `body_limit` the ask waits for the request body and carries its first bytes (a POST,
//! with the client's `Content-Type`; `X-Forwarded-Body-Truncated` when cut).

use super::side::{Ask, Call};
use crate::body::ResponseBody;
use crate::error::{local_reply, ErrorKind};
use crate::filter::{client_uri, Filter, FilterCtx, FilterFuture, Flow, Stage};
use bytes::Bytes;
use gatehouse_config::spec::ExternalAuthSpec;
use http::{request, HeaderMap, HeaderName, HeaderValue, Method, Response};

pub struct ExternalAuth {
    spec: ExternalAuthSpec,
    call: Option<Call>,
    headers: Vec<HeaderName>,
    copy: Vec<HeaderName>,
}

const X_FORWARDED_METHOD: HeaderName = HeaderName::from_static("x-forwarded-method");
const X_FORWARDED_URI: HeaderName = HeaderName::from_static("x-forwarded-uri");
const X_FORWARDED_BODY_TRUNCATED: HeaderName =
    HeaderName::from_static("x-forwarded-body-truncated");

fn names(list: &[String]) -> Vec<HeaderName> {
    list.iter()
        .filter_map(|h| HeaderName::from_bytes(h.as_bytes()).ok())
        .collect()
}

impl ExternalAuth {
    pub fn new(spec: &ExternalAuthSpec, call: Option<Call>) -> ExternalAuth {
        ExternalAuth {
            headers: names(&spec.headers),
            copy: names(&spec.copy_headers),
            spec: spec.clone(),
            call,
        }
    }

    /// The question for the auth service; `body` is the request's, when it is sent.
    fn ask(&self, head: &request::Parts, ctx: &FilterCtx<'_>, body: Option<&Bytes>) -> Ask {
        let mut h = HeaderMap::new();
        for name in &self.headers {
            for v in head.headers.get_all(name) {
                h.append(name.clone(), v.clone());
            }
        }
        let uri = client_uri(head);
        let pq = uri.path_and_query().map_or("/", |p| p.as_str());
        if let Ok(v) = HeaderValue::from_str(head.method.as_str()) {
            h.insert(X_FORWARDED_METHOD, v);
        }
        if let Ok(v) = HeaderValue::from_str(pq) {
            h.insert(X_FORWARDED_URI, v);
        }
        if let Ok(v) = HeaderValue::from_str(&ctx.client_ip.to_string()) {
            h.insert(crate::http::headers::X_FORWARDED_FOR, v);
        }
        let host = head
            .headers
            .get(crate::http::headers::X_FORWARDED_HOST)
            .or_else(|| head.headers.get(http::header::HOST))
            .cloned();
        if let Some(host) = host {
            h.insert(crate::http::headers::X_FORWARDED_HOST, host);
        }
        let body = body.filter(|b| !b.is_empty()).map(|b| {
            let limit = self.spec.body_limit.unwrap_or(0);
            if let Some(ct) = head.headers.get(http::header::CONTENT_TYPE) {
                h.insert(http::header::CONTENT_TYPE, ct.clone());
            }
            if b.len() as u64 > limit {
                h.insert(X_FORWARDED_BODY_TRUNCATED, HeaderValue::from_static("true"));
                b.slice(..limit as usize)
            } else {
                b.clone()
            }
        });
        Ask {
            method: if body.is_some() {
                Method::POST
            } else {
                Method::GET
            },
            path: self.spec.path.clone(),
            headers: h,
            body,
        }
    }

    /// Asks the auth service about the request and acts on the answer.
    async fn check(
        &self,
        head: &mut request::Parts,
        ctx: &FilterCtx<'_>,
        body: Option<&Bytes>,
    ) -> Flow {
        let Some(call) = &self.call else {
            return self.unavailable("its upstream is not configured", ctx);
        };
        let ask = self.ask(head, ctx, body);
        let answer = match tokio::time::timeout(self.spec.timeout, call(ask)).await {
            Err(_) => return self.unavailable("timed out", ctx),
            Ok(Err(e)) => return self.unavailable(&e, ctx),
            Ok(Ok(a)) => a,
        };
        if answer.status.is_server_error() && self.spec.fail_open {
            return self.unavailable(&format!("answered {}", answer.status), ctx);
        }
        if answer.status.is_success() {
            for name in &self.copy {
                head.headers.remove(name);
                for v in answer.headers.get_all(name) {
                    head.headers.append(name.clone(), v.clone());
                }
            }
            return Flow::Continue;
        }
        let mut resp = Response::new(ResponseBody::full(answer.body));
        *resp.status_mut() = answer.status;
        let mut headers = answer.headers;
        crate::http::headers::strip_hop_by_hop(&mut headers, false);
        headers.remove(http::header::CONTENT_LENGTH);
        *resp.headers_mut() = headers;
        Flow::Respond(Box::new(resp))
    }

    fn unavailable(&self, why: &str, ctx: &FilterCtx<'_>) -> Flow {
        if self.spec.fail_open {
            tracing::warn!(route = ctx.route, upstream = %self.spec.upstream, error = why, "external auth did not answer; letting the request through (fail_open)");
            return Flow::Continue;
        }
        tracing::warn!(route = ctx.route, upstream = %self.spec.upstream, error = why, "external auth did not answer");
        let msg = "the auth service did not answer";
        Flow::Respond(Box::new(local_reply(
            ErrorKind::AuthUnavailable,
            msg,
            ctx.request_id,
        )))
    }
}

impl Filter for ExternalAuth {
    fn name(&self) -> &'static str {
        "external_auth"
    }

    fn stage(&self) -> Stage {
        Stage::Auth
    }

    fn has_request_hook(&self) -> bool {
        true
    }

    fn wants_original_uri(&self) -> bool {
        true
    }

    fn on_request<'a>(
        &'a self,
        head: &'a mut request::Parts,
        ctx: &'a FilterCtx<'a>,
    ) -> FilterFuture<'a> {
        if self.spec.body_limit.is_some() {
            // Asked with the body, once it has been read.
            return FilterFuture::ready(Flow::Continue);
        }
        FilterFuture::waiting(self.check(head, ctx, None))
    }

    fn body_sides(&self) -> (bool, bool) {
        (self.spec.body_limit.is_some(), false)
    }

    fn request_body(&self, _head: &request::Parts) -> bool {
        self.spec.body_limit.is_some()
    }

    fn on_request_body<'a>(
        &'a self,
        head: &'a mut request::Parts,
        body: &'a mut Bytes,
        ctx: &'a FilterCtx<'a>,
    ) -> FilterFuture<'a> {
        FilterFuture::waiting(self.check(head, ctx, Some(body)))
    }
}
