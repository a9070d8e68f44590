//! Filters: per-route request and response steps, built once per config generation and
//! shared by every request on the route. A [`Filter`] has two hooks and a [`Stage`];
//! the [`Chain`] runs request hooks in stage order (config order within a stage) and
//! response hooks in reverse, so config order can never put, say, a cache before auth.
//!
//! Registration is the `match` in [`build`]. Filters may depend on `error`, `metrics`
//! and their own helpers, never on another filter, `proxy` or `listener`.

pub mod auth;
mod headers;
mod ip;
mod limit;

use crate::body::ResponseBody;
use gatehouse_config::spec::FilterSpec;
use http::{request, response, HeaderValue, Response};
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;

/// When a filter runs relative to others; request hooks run in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stage {
    Auth,
    RateLimit,
    Transform,
    Cache,
}

/// What a request hook decided.
pub enum Flow {
    Continue,
    /// End the chain and answer with this response.
    Respond(Box<Response<ResponseBody>>),
}

/// What a filter may know about the request it is looking at.
pub struct FilterCtx<'a> {
    pub request_id: &'a HeaderValue,
    pub client: SocketAddr,
    /// The client's address after PROXY protocol and trusted `X-Forwarded-For`.
    pub client_ip: IpAddr,
    /// The client certificate the listener verified, on mTLS connections.
    pub client_cert: Option<&'a crate::tls::ClientCert>,
    pub route: &'a str,
}

/// The request's URI as the client sent it, put in the extensions before the path is
/// rewritten for upstream (an external auth check asks about this one).
#[derive(Clone)]
pub struct OriginalUri(pub http::Uri);

/// What request hooks leave for the response side: values a response hook reads, and
/// guards (a concurrency place) that must live until the response body ends. The proxy
/// moves it from the request to the response, and from there into the body.
#[derive(Clone, Default)]
pub struct Carry(pub http::Extensions);

/// What building a filter may use besides its spec.
pub struct BuildCtx<'a> {
    pub auth: &'a auth::AuthRt,
    /// This generation's rate-limit policies by name.
    pub limits: &'a std::collections::HashMap<String, Arc<crate::limit::Policy>>,
    pub metrics: &'a crate::metrics::Metrics,
    pub route: &'a str,
}

/// A boxed request-hook future: one allocation per hook call, nothing next to I/O.
pub type FilterFuture<'a> = Pin<Box<dyn Future<Output = Flow> + Send + 'a>>;

/// A per-route filter.
pub trait Filter: Send + Sync {
    /// Stable name, used in logs and metrics.
    fn name(&self) -> &'static str;

    fn stage(&self) -> Stage;

    /// Whether `on_request` does anything (the chain skips the call, and its
    /// allocation, when not).
    fn has_request_hook(&self) -> bool {
        false
    }

    /// Whether `on_request` reads [`OriginalUri`] (the path before rewriting), which
    /// costs the request a copy of its URI.
    fn wants_original_uri(&self) -> bool {
        false
    }

    /// Sees (and may edit) the request head as it will be sent upstream.
    fn on_request<'a>(
        &'a self,
        _head: &'a mut request::Parts,
        _ctx: &'a FilterCtx<'a>,
    ) -> FilterFuture<'a> {
        Box::pin(std::future::ready(Flow::Continue))
    }

    /// Sees (and may edit) the response head before it is sent to the client.
    fn on_response(&self, _head: &mut response::Parts, _ctx: &FilterCtx<'_>) {}
}

/// A route's filters in stage order.
#[derive(Clone, Default)]
pub struct Chain {
    filters: Vec<Arc<dyn Filter>>,
}

/// Builds the filter a spec names.
pub fn build(spec: &FilterSpec, ctx: &BuildCtx) -> Arc<dyn Filter> {
    match spec {
        FilterSpec::RequestHeaders(rules) => Arc::new(headers::HeaderRules::request(rules)),
        FilterSpec::ResponseHeaders(rules) => Arc::new(headers::HeaderRules::response(rules)),
        FilterSpec::IpRules(rules) => Arc::new(ip::IpRules(rules.clone())),
        FilterSpec::Auth(a) => {
            let counter = |kind, result| ctx.metrics.auth_counter(ctx.route, kind, result);
            Arc::new(auth::Auth::new(a, ctx.auth, &counter))
        }
        FilterSpec::ExternalAuth(e) => Arc::new(auth::external::ExternalAuth::new(
            e,
            ctx.auth.calls.get(&e.upstream).cloned(),
        )),
        FilterSpec::RateLimit(names) => {
            let policies = names
                .iter()
                .filter_map(|n| ctx.limits.get(n).cloned())
                .collect();
            let counter =
                |policy: &str, result| ctx.metrics.limit_counter(ctx.route, policy, result);
            Arc::new(limit::RateLimit::new(policies, &counter))
        }
    }
}

// === impl Chain ===

impl Chain {
    /// Builds a route's chain, sorted by stage (stable, so config order holds within one).
    pub fn new(specs: &[FilterSpec], ctx: &BuildCtx) -> Chain {
        let mut filters: Vec<Arc<dyn Filter>> = specs.iter().map(|s| build(s, ctx)).collect();
        filters.sort_by_key(|f| f.stage());
        Chain { filters }
    }

    pub fn is_empty(&self) -> bool {
        self.filters.is_empty()
    }

    /// Whether any filter reads the URI as the client sent it.
    pub fn wants_original_uri(&self) -> bool {
        self.filters.iter().any(|f| f.wants_original_uri())
    }

    /// Whether any filter has a request hook (local answers skip the chain when not).
    pub fn has_request_hooks(&self) -> bool {
        self.filters.iter().any(|f| f.has_request_hook())
    }

    /// Runs request hooks in order; the first `Respond` ends the chain.
    pub async fn on_request(&self, head: &mut request::Parts, ctx: &FilterCtx<'_>) -> Flow {
        for f in self.filters.iter().filter(|f| f.has_request_hook()) {
            if let Flow::Respond(r) = f.on_request(head, ctx).await {
                tracing::debug!(
                    filter = f.name(),
                    route = ctx.route,
                    "filter answered the request"
                );
                return Flow::Respond(r);
            }
        }
        Flow::Continue
    }

    /// Runs response hooks in reverse stage order.
    pub fn on_response(&self, head: &mut response::Parts, ctx: &FilterCtx<'_>) {
        for f in self.filters.iter().rev() {
            f.on_response(head, ctx);
        }
    }
}

#[cfg(test)]
mod tests;
