//! Filters: per-route request and response steps, built once per config generation and
//! shared by every request on the route. A [`Filter`] has two hooks and a [`Stage`];
//! the [`Chain`] runs request hooks in stage order (config order within a stage) and
//! response hooks in reverse, so config order can never put, say, a cache before auth.
//!
//! Registration is the `match` in [`build`]. Filters may depend on `error`, `metrics`
//! and their own helpers, never on another filter, `proxy` or `listener`.
//!
//! Body hooks: a filter that needs a whole body says so per message
//! ([`Filter::request_body`], [`Filter::response_body`]); the proxy then reads that
//! body up to the route's `body_buffer_limit` (413 / 502 past it), hands it to every
//! filter that asked, and sends the result with its length fixed up. A chain with no
//! such filter reads nothing and streams as before; one with them still streams the
//! messages none of them asks for (an event stream past a JSON transform).
//! Streaming edits: a filter that edits a body as it passes says so per message
//! ([`Filter::request_stream`], [`Filter::response_stream`]) with a [`ChunkEdit`],
//! which sees each chunk and gives what to pass on; nothing is buffered beyond what
//! the edit holds back. They run after the whole-body hooks, on what those made.
//! A filter that answers the request gets the response hooks of the filters before it
//! run on its reply (CORS headers on a 401), and what they carried.

pub mod auth;
mod captures;
mod cors;
mod fault;
mod headers;
mod ip;
mod json;
mod limit;
mod openapi;
mod replace;
mod rewrite;
mod status;
mod template;
mod validate;
mod xml;

pub use cors::preflight_method;
pub use fault::draw;
pub use replace::replace_chunks;
pub use xml::{json_to_xml, xml_to_json};

use crate::body::ResponseBody;
pub use crate::body_edit::ChunkEdit;
use crate::body_edit::Edited;
use crate::error::ProxyError;
use bytes::Bytes;
use gatehouse_config::spec::FilterSpec;
use http::{request, response, HeaderValue, Response};
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;

/// When a filter runs relative to others; request hooks run in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stage {
    /// Before credentials: a CORS preflight carries none.
    Cors,
    Auth,
    RateLimit,
    /// What the client sent is checked before anything edits it.
    Validate,
    Fault,
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

/// The URI as the client sent it: the [`OriginalUri`] when the chain kept one (a filter
/// that reads it says so with [`Filter::wants_original_uri`]), else the head's.
pub fn client_uri(head: &request::Parts) -> &http::Uri {
    head.extensions
        .get::<OriginalUri>()
        .map_or(&head.uri, |o| &o.0)
}

/// What request hooks leave for the response side: values a response hook reads, and
/// guards (a concurrency place) that must live until the response body ends. The proxy
/// moves it from the request to the response, and from there into the body. A slot per
/// filter that needs one, so a request makes no map for it.
#[derive(Clone, Default)]
pub struct Carry {
    /// The rate limits' verdicts and concurrency places.
    pub(crate) limits: Option<limit::Noted>,
    /// The origin CORS allowed.
    pub(crate) cors: Option<cors::Allowed>,
}

/// What of a carry must live until the response body ends (or a tunnel closes): the
/// concurrency places. The rest is dropped once the response hooks ran.
pub struct Held {
    _places: Arc<Vec<crate::limit::Permit>>,
}

impl Carry {
    pub fn into_held(self) -> Option<Held> {
        let places = self.limits?.places?;
        Some(Held { _places: places })
    }
}

/// What building a filter may use besides its spec.
pub struct BuildCtx<'a> {
    pub auth: &'a auth::AuthRt,
    /// This generation's rate-limit policies by name.
    pub limits: &'a std::collections::HashMap<String, Arc<crate::limit::Policy>>,
    pub metrics: &'a crate::metrics::Metrics,
    pub route: &'a str,
    /// OpenAPI documents named by routes' `openapi` keys, read for this generation.
    pub openapi:
        &'a std::collections::HashMap<std::path::PathBuf, Arc<gatehouse_config::openapi::Api>>,
}

/// A request hook's future: an answer at once, or a boxed future for a hook that waits.
pub enum FilterFuture<'a> {
    /// Decided already: nothing to allocate (most hooks, most of the time).
    Ready(Option<Flow>),
    /// A hook that waits (a Redis count, a key set fetch, an auth service).
    Waiting(Pin<Box<dyn Future<Output = Flow> + Send + 'a>>),
}

impl<'a> FilterFuture<'a> {
    pub fn ready(flow: Flow) -> Self {
        FilterFuture::Ready(Some(flow))
    }

    pub fn waiting(f: impl Future<Output = Flow> + Send + 'a) -> Self {
        FilterFuture::Waiting(Box::pin(f))
    }
}

impl Future for FilterFuture<'_> {
    type Output = Flow;

    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Flow> {
        match self.get_mut() {
            // Polled again after its answer (which no caller does): it never ends.
            FilterFuture::Ready(flow) => match flow.take() {
                Some(f) => std::task::Poll::Ready(f),
                None => std::task::Poll::Pending,
            },
            FilterFuture::Waiting(f) => f.as_mut().poll(cx),
        }
    }
}

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
        FilterFuture::ready(Flow::Continue)
    }

    /// Sees (and may edit) the response head before it is sent to the client.
    fn on_response(&self, _head: &mut response::Parts, _ctx: &FilterCtx<'_>) {}

    /// Whether a response hook reads the caller auth found (a template's
    /// `{consumer}` or `{claim.NAME}`): the proxy then puts it on the response.
    fn reads_caller_on_response(&self) -> bool {
        false
    }

    /// Whether this filter ever reads a whole body: (request, response). The chain asks
    /// the per-message questions below only when some filter says yes.
    fn body_sides(&self) -> (bool, bool) {
        (false, false)
    }

    /// Whether this request's whole body is wanted (asked after every head hook).
    fn request_body(&self, _head: &request::Parts) -> bool {
        false
    }

    /// Sees (and may replace) the whole request body; may answer instead. A future,
    /// so a filter may ask another service about the body (external auth).
    fn on_request_body<'a>(
        &'a self,
        _head: &'a mut request::Parts,
        _body: &'a mut Bytes,
        _ctx: &'a FilterCtx<'a>,
    ) -> FilterFuture<'a> {
        FilterFuture::ready(Flow::Continue)
    }

    /// Whether this response's whole body is wanted (asked after every head hook).
    fn response_body(&self, _head: &response::Parts) -> bool {
        false
    }

    /// Sees (and may replace) the whole response body; an error answers 502.
    fn on_response_body(
        &self,
        _head: &mut response::Parts,
        _body: &mut Bytes,
        _ctx: &FilterCtx<'_>,
    ) -> Result<(), ProxyError> {
        Ok(())
    }

    /// The page that replaces Gatehouse's own error reply with this status on the
    /// route (its body and `Content-Type`), if this filter has one.
    fn error_page(&self, _status: http::StatusCode) -> Option<(Bytes, HeaderValue)> {
        None
    }

    /// Whether this filter ever edits a body as it streams: (request, response). The
    /// chain asks the per-message questions below only when some filter says yes.
    fn stream_sides(&self) -> (bool, bool) {
        (false, false)
    }

    /// A streaming edit of this request's body, or `None` (asked after the whole-body
    /// hooks, so it sees what they made). It may fix the head up for it (a length
    /// that the edit changes).
    fn request_stream(&self, _head: &mut request::Parts) -> Option<Box<dyn ChunkEdit>> {
        None
    }

    /// A streaming edit of this response's body, or `None`, as [`Self::request_stream`].
    fn response_stream(&self, _head: &mut response::Parts) -> Option<Box<dyn ChunkEdit>> {
        None
    }
}

/// A route's filters in stage order.
#[derive(Clone, Default)]
pub struct Chain {
    filters: Vec<Arc<dyn Filter>>,
    /// Whether any filter reads whole request bodies.
    request_bodies: bool,
    /// Whether any filter reads whole response bodies.
    response_bodies: bool,
    /// Whether any filter edits request or response bodies as they stream.
    streams: (bool, bool),
    /// Whether any response hook reads the caller.
    caller_on_response: bool,
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
        FilterSpec::Cors(c) => Arc::new(cors::Cors::new(c)),
        FilterSpec::Validate(v) => Arc::new(validate::Validate::new(v, ctx)),
        // A document that could not be read is a compile error: the empty one never serves.
        FilterSpec::OpenApi(file) => Arc::new(openapi::OpenApi::new(
            ctx.openapi.get(file).map_or(&Default::default(), |a| a),
            ctx,
        )),
        FilterSpec::JsonTransform(side, steps) => Arc::new(json::JsonTransform::new(*side, steps)),
        FilterSpec::Replace(side, spec) => Arc::new(replace::Replace::new(*side, spec, ctx.route)),
        FilterSpec::Status(s) => Arc::new(status::StatusRules::new(s)),
        FilterSpec::Fault(f) => Arc::new(fault::Fault::new(f)),
        FilterSpec::Rewrite(w) => Arc::new(rewrite::Rewrite::new(w)),
        FilterSpec::XmlConvert(side, d, root) => Arc::new(xml::XmlConvert::new(*side, *d, root)),
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
        let request_bodies = filters.iter().any(|f| f.body_sides().0);
        let response_bodies = filters.iter().any(|f| f.body_sides().1);
        let streams = (
            filters.iter().any(|f| f.stream_sides().0),
            filters.iter().any(|f| f.stream_sides().1),
        );
        let caller_on_response = filters.iter().any(|f| f.reads_caller_on_response());
        Chain {
            filters,
            request_bodies,
            response_bodies,
            streams,
            caller_on_response,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.filters.is_empty()
    }

    /// Whether a response hook reads the caller auth found.
    pub fn wants_caller_on_response(&self) -> bool {
        self.caller_on_response
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
        for (i, f) in self.filters.iter().enumerate() {
            if !f.has_request_hook() {
                continue;
            }
            if let Flow::Respond(r) = f.on_request(head, ctx).await {
                return self.answered(i, f.name(), head, r, ctx);
            }
        }
        Flow::Continue
    }

    /// A reply made by the filter at `at`: the filters before it see it as a response
    /// (a CORS header on a 401), with what they carried.
    fn answered(
        &self,
        at: usize,
        name: &'static str,
        head: &mut request::Parts,
        mut resp: Box<Response<ResponseBody>>,
        ctx: &FilterCtx<'_>,
    ) -> Flow {
        tracing::debug!(
            filter = name,
            route = ctx.route,
            "filter answered the request"
        );
        if let Some(c) = head.extensions.remove::<Carry>() {
            resp.extensions_mut().insert(c);
        }
        if at > 0 {
            let (mut parts, body) =
                std::mem::replace(&mut *resp, Response::new(ResponseBody::empty())).into_parts();
            for f in self.filters[..at].iter().rev() {
                f.on_response(&mut parts, ctx);
            }
            *resp = Response::from_parts(parts, body);
        }
        Flow::Respond(resp)
    }

    /// Whether some filter wants this request's whole body.
    pub fn wants_request_body(&self, head: &request::Parts) -> bool {
        self.request_bodies && self.filters.iter().any(|f| f.request_body(head))
    }

    /// Runs the request body hooks in order; the first `Respond` ends the chain.
    pub async fn on_request_body(
        &self,
        head: &mut request::Parts,
        body: &mut Bytes,
        ctx: &FilterCtx<'_>,
    ) -> Flow {
        for f in &self.filters {
            if !f.request_body(head) {
                continue;
            }
            if let Flow::Respond(r) = f.on_request_body(head, body, ctx).await {
                // Every head hook ran, so every filter's response hook sees the reply.
                return self.answered(self.filters.len(), f.name(), head, r, ctx);
            }
        }
        Flow::Continue
    }

    /// Whether some filter wants this response's whole body.
    pub fn wants_response_body(&self, head: &response::Parts) -> bool {
        self.response_bodies && self.filters.iter().any(|f| f.response_body(head))
    }

    /// Runs the response body hooks in reverse stage order.
    pub fn on_response_body(
        &self,
        head: &mut response::Parts,
        body: &mut Bytes,
        ctx: &FilterCtx<'_>,
    ) -> Result<(), ProxyError> {
        for f in self.filters.iter().rev() {
            if f.response_body(head) {
                f.on_response_body(head, body, ctx)?;
            }
        }
        Ok(())
    }

    /// The page for Gatehouse's own error reply with `status`, from the first filter
    /// that has one.
    pub fn error_page(&self, status: http::StatusCode) -> Option<(Bytes, HeaderValue)> {
        self.filters.iter().find_map(|f| f.error_page(status))
    }

    /// The streaming edits of this request's body in stage order, `None` when no
    /// filter has one for it.
    pub fn request_edits(&self, head: &mut request::Parts) -> Option<Edited> {
        if !self.streams.0 {
            return None;
        }
        let edits: Vec<_> = self
            .filters
            .iter()
            .filter_map(|f| f.request_stream(head))
            .collect();
        (!edits.is_empty()).then(|| Edited::new(edits))
    }

    /// The streaming edits of this response's body in reverse stage order.
    pub fn response_edits(&self, head: &mut response::Parts) -> Option<Edited> {
        if !self.streams.1 {
            return None;
        }
        let edits: Vec<_> = self
            .filters
            .iter()
            .rev()
            .filter_map(|f| f.response_stream(head))
            .collect();
        (!edits.is_empty()).then(|| Edited::new(edits))
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
