//! The one place that knows the order of a request's life: load the snapshot once, find
//! the route, answer locally or forward upstream, then hand the response body what it
//! needs to log and to return its connection when it ends.

mod exchange;
mod forward;
mod local;
pub mod side;
mod traffic;
mod upgrade;
mod whole;

use crate::access_log::{BytesIn, Completion, LogRecord};
use crate::body::ClientBody;
use crate::body::ResponseBody;
use crate::drain::Watch;
use crate::error::{error_reply, ErrorKind, ProxyError};
use crate::filter::{FilterCtx, Flow};
use crate::http::{edge, headers};
use crate::route;
use crate::runtime::{Action, ConfigStore, ListenerRt, Route, Runtime};
use gatehouse_config::spec::ListenerKind;
use http::{header, HeaderValue, Request, Response, Version};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;
use tokio::time::Instant;

/// What a request knows about the connection it came on.
pub struct ConnCtx {
    pub peer: SocketAddr,
    /// The peer's IP as header text, for X-Forwarded-For.
    pub peer_ip: HeaderValue,
    pub listener: Arc<str>,
    pub store: Arc<ConfigStore>,
    /// Lets upgraded tunnels outlive the connection but not the drain.
    pub drain: Watch,
    /// The client certificate the listener verified (mTLS), read once.
    pub client_cert: Option<Arc<crate::tls::ClientCert>>,
    /// The connection's place under its listener's limit, released with the context.
    pub _admitted: crate::listener::Admitted,
}

/// A parked connection's context (see `http::park`): a [`ConnCtx`] without what is
/// made again when the connection is served, so that a parked connection is small.
pub struct ParkedCtx {
    peer: SocketAddr,
    listener: Arc<str>,
    store: Arc<ConfigStore>,
    drain: Watch,
    client_cert: Option<Arc<crate::tls::ClientCert>>,
    admitted: crate::listener::Admitted,
}

impl ConnCtx {
    pub fn new(
        peer: SocketAddr,
        listener: Arc<str>,
        store: Arc<ConfigStore>,
        drain: Watch,
        client_cert: Option<Arc<crate::tls::ClientCert>>,
        admitted: crate::listener::Admitted,
    ) -> ConnCtx {
        ConnCtx {
            peer,
            peer_ip: headers::ip_text(peer.ip()),
            listener,
            store,
            drain,
            client_cert,
            _admitted: admitted,
        }
    }

    pub fn park(self) -> ParkedCtx {
        let ConnCtx {
            peer,
            listener,
            store,
            drain,
            client_cert,
            _admitted: admitted,
            ..
        } = self;
        ParkedCtx {
            peer,
            listener,
            store,
            drain,
            client_cert,
            admitted,
        }
    }
}

impl ParkedCtx {
    pub fn resume(self) -> ConnCtx {
        ConnCtx::new(
            self.peer,
            self.listener,
            self.store,
            self.drain,
            self.client_cert,
            self.admitted,
        )
    }

    /// The listener the connection came on.
    pub fn listener(&self) -> &str {
        &self.listener
    }

    /// The config store, to find the listener's current settings.
    pub fn store(&self) -> &Arc<ConfigStore> {
        &self.store
    }
}

/// Per-request facts shared by the steps below.
struct Req<'a> {
    conn: &'a ConnCtx,
    snap: &'a Runtime,
    listener: &'a ListenerRt,
    /// Set up front when `global.request_id` is on; otherwise the incoming id, or one
    /// made only if an error reply, a filter or a log line needs it.
    request_id: OnceLock<HeaderValue>,
    /// The peer, or the client a trusted proxy forwarded for.
    client_ip: std::net::IpAddr,
    start: Instant,
}

/// A request's future, boxed where it is made.
pub type Handling = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<Response<ResponseBody>, Infallible>> + Send>,
>;

/// Serves one request. Never fails: every error becomes a local reply. The future is
/// boxed here, as it is made: it is about 4 KiB, and a future is moved whole each time
/// it is handed on (into the request's count, into hyper's dispatcher), which cost more
/// than the allocation.
pub fn handle(req: Request<ClientBody>, conn: Arc<ConnCtx>) -> Handling {
    // Written into the allocation, not made on the stack and copied in.
    let fut = Box::write(Box::new_uninit(), serve_request(req, conn));
    Box::into_pin(fut)
}

async fn serve_request(
    mut req: Request<ClientBody>,
    conn: Arc<ConnCtx>,
) -> Result<Response<ResponseBody>, Infallible> {
    let start = Instant::now();
    let snap = conn.store.load();
    let request_id = if snap.spec.global.request_id {
        OnceLock::from(headers::request_id(req.headers_mut()))
    } else {
        headers::incoming_request_id(req.headers()).map_or_else(OnceLock::new, OnceLock::from)
    };
    let Some(listener) = snap.listeners.get(&*conn.listener) else {
        let e = ProxyError::new(ErrorKind::Unavailable, "listener was removed");
        return Ok(error_reply(
            &e,
            request_id.get_or_init(headers::new_request_id),
        ));
    };
    let peer = conn.peer.ip();
    let client_ip = if snap.trusted_proxies.is_empty() {
        peer
    } else {
        headers::client_ip(peer, req.headers(), |ip| snap.is_trusted(ip))
    };
    let ctx = Req {
        conn: &conn,
        snap: &snap,
        listener,
        request_id,
        client_ip,
        start,
    };
    Ok(ctx.serve(req).await)
}

// === impl Req ===

impl Req<'_> {
    /// The request id, made now if it was not needed before.
    fn id(&self) -> &HeaderValue {
        self.request_id.get_or_init(headers::new_request_id)
    }

    async fn serve(&self, mut req: Request<ClientBody>) -> Response<ResponseBody> {
        let verdict = match edge::check(&mut req) {
            Ok(v) => v,
            Err(e) => return self.reply_err(&req, None, e.close()),
        };
        // A copy, not a view of the request's Host: `req` moves on, and a view kept
        // while it is forwarded would keep hyper's read buffer (see `headers::detached`).
        let host = match host_of(&req) {
            Some(host) => host,
            None if req.version() == Version::HTTP_10 => String::new(),
            None => {
                return self.reply_err(
                    &req,
                    None,
                    ProxyError::new(ErrorKind::BadRequest, "request has no Host"),
                )
            }
        };
        if !self.listener.spec.ip_rules.admits(self.client_ip) {
            let msg = format!(
                "client address {} is not allowed on this listener",
                self.client_ip
            );
            return self.reply_err(&req, None, ProxyError::new(ErrorKind::Forbidden, msg));
        }
        if verdict == edge::Verdict::Options {
            return self.finish(&req, &host, None, local::options(), None);
        }
        if let ListenerKind::Redirect { https_port } = self.listener.spec.kind {
            let resp = local::https_redirect(&req, &host, https_port);
            return self.finish(&req, &host, None, resp, None);
        }
        let preflight = crate::filter::preflight_method(&req);
        let head = route::head(
            preflight.as_ref().unwrap_or(req.method()),
            &host,
            req.uri().path(),
            req.uri().query(),
            req.headers(),
        );
        let Some(route) = self.listener.routes.find(&head).cloned() else {
            let msg = format!(
                "no route matched {} {}{}",
                req.method(),
                host,
                req.uri().path()
            );
            return self.reply_err(&req, None, ProxyError::new(ErrorKind::NoRoute, msg));
        };
        match &route.action {
            Action::Respond(r) => {
                let mut req = match self.local_filters(&route, req, &host).await {
                    Ok(req) => req,
                    Err(resp) => return resp,
                };
                let resp =
                    self.response_filters(&route, carried(&route, &mut req, local::respond(r)));
                self.finish(&req, &host, Some(&route), resp, None)
            }
            Action::Redirect(r) => {
                let mut req = match self.local_filters(&route, req, &host).await {
                    Ok(req) => req,
                    Err(resp) => return resp,
                };
                let resp = local::redirect(r, &req);
                let resp = self.response_filters(&route, carried(&route, &mut req, resp));
                self.finish(&req, &host, Some(&route), resp, None)
            }
            Action::Proxy(p) => {
                let log = self.log_record(&req, &host, Some(&route));
                match forward::forward(self, req, &host, &route, p, log).await {
                    Ok(resp) => resp,
                    Err((e, log, carry)) => {
                        self.error_reply(e, &route.metrics, log, Some(&route), carry)
                    }
                }
            }
        }
    }

    /// Runs the request hooks of a route answered locally (auth on a `respond` route);
    /// `Err` is the reply a filter gave instead. The body is dropped (a local answer
    /// sends nothing on) after a body hook read it, for validation in front of a mock.
    async fn local_filters(
        &self,
        route: &Arc<Route>,
        req: Request<ClientBody>,
        host: &str,
    ) -> Result<Request<()>, Response<ResponseBody>> {
        let (mut parts, body) = req.into_parts();
        if !route.filters.has_request_hooks() && !route.filters.wants_request_body(&parts) {
            return Ok(Request::from_parts(parts, ()));
        }
        let mut flow = route
            .filters
            .on_request(&mut parts, &self.filter_ctx(route))
            .await;
        if matches!(flow, Flow::Continue) && route.filters.wants_request_body(&parts) {
            // Boxed: futures are moved whole, and few local routes read bodies.
            match Box::pin(self.local_body(route, &mut parts, body)).await {
                Ok(f) => flow = f,
                Err(e) => {
                    let req = Request::from_parts(parts, ());
                    return Err(self.reply_err(&req, Some(route), e));
                }
            }
        }
        let req = Request::from_parts(parts, ());
        match flow {
            Flow::Continue => Ok(req),
            Flow::Respond(resp) => Err(self.finish(&req, host, Some(route), *resp, None)),
        }
    }

    /// Reads a locally answered request's body for the body hooks and runs them.
    async fn local_body(
        &self,
        route: &Route,
        parts: &mut http::request::Parts,
        body: ClientBody,
    ) -> Result<Flow, ProxyError> {
        let limit = route
            .max_body_size
            .or(self.listener.spec.limits.max_body_size);
        let buffer = limit.map_or(route.body_buffer_limit, |l| l.min(route.body_buffer_limit));
        let read = crate::body::UpstreamBody::incoming(body, Some(buffer), None);
        let mut bytes = whole::request(read).await?;
        Ok(route
            .filters
            .on_request_body(parts, &mut bytes, &self.filter_ctx(route))
            .await)
    }

    /// The context filters see.
    fn filter_ctx<'a>(&'a self, route: &'a Route) -> FilterCtx<'a> {
        FilterCtx {
            request_id: self.id(),
            client: self.conn.peer,
            client_ip: self.client_ip,
            client_cert: self.conn.client_cert.as_deref(),
            route: &route.name,
        }
    }

    /// Runs a route's response filters on a response head.
    fn response_filters(
        &self,
        route: &Route,
        resp: Response<ResponseBody>,
    ) -> Response<ResponseBody> {
        if route.filters.is_empty() {
            return resp;
        }
        let (mut parts, body) = resp.into_parts();
        route
            .filters
            .on_response(&mut parts, &self.filter_ctx(route));
        Response::from_parts(parts, body)
    }

    /// Turns an error into a local reply, logged and counted like any response.
    fn reply_err<B>(
        &self,
        req: &Request<B>,
        route: Option<&Arc<Route>>,
        e: ProxyError,
    ) -> Response<ResponseBody> {
        let host = host_of(req).unwrap_or_default();
        let log = self.log_record(req, &host, route);
        let metrics = route.map(|r| &r.metrics).unwrap_or(&self.listener.no_route);
        let close = e.close && req.version() != Version::HTTP_2;
        let mut resp = self.error_reply(e, metrics, log, route, None);
        if close {
            resp.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        resp
    }

    fn error_reply(
        &self,
        e: ProxyError,
        metrics: &Arc<crate::metrics::RouteMetrics>,
        log: Option<Box<LogRecord>>,
        route: Option<&Arc<Route>>,
        carry: Option<crate::filter::Carry>,
    ) -> Response<ResponseBody> {
        let id = self.id();
        tracing::debug!(request_id = id.to_str().unwrap_or("-"), route = route.map(|r| &*r.name), side = ?e.side, error = %e.message(), "local error reply");
        let mut resp = error_reply(&e, id);
        if let Some(c) = carry {
            resp.extensions_mut().insert(c);
        }
        if let Some(r) = route {
            // The route's response hooks (a CORS grant, a status map) and error page
            // apply to its own error replies as to the upstream's.
            resp = self.response_filters(r, resp);
            if let Some((page, content_type)) = r.filters.error_page(resp.status()) {
                resp.headers_mut()
                    .insert(header::CONTENT_TYPE, content_type);
                *resp.body_mut() = ResponseBody::full(page);
            }
        }
        self.complete(resp, metrics.clone(), log, None)
    }

    fn finish<B>(
        &self,
        req: &Request<B>,
        host: &str,
        route: Option<&Arc<Route>>,
        resp: Response<ResponseBody>,
        in_flight: Option<crate::upstream::endpoint::InFlight>,
    ) -> Response<ResponseBody> {
        let mut log = self.log_record(req, host, route);
        note_caller(&mut log, req.extensions());
        let metrics = route
            .map(|r| &r.metrics)
            .unwrap_or(&self.listener.no_route)
            .clone();
        self.complete(resp, metrics, log, in_flight)
    }

    /// Attaches the completion (metrics, log line) to a response's body.
    fn complete(
        &self,
        mut resp: Response<ResponseBody>,
        metrics: Arc<crate::metrics::RouteMetrics>,
        mut log: Option<Box<LogRecord>>,
        in_flight: Option<crate::upstream::endpoint::InFlight>,
    ) -> Response<ResponseBody> {
        let status = resp.status().as_u16();
        if let Some(l) = log.as_mut() {
            l.status = status;
        }
        if self.snap.spec.global.request_id {
            resp.headers_mut()
                .insert(headers::X_REQUEST_ID, headers::unindexed(self.id()));
        }
        let held = resp
            .extensions_mut()
            .remove::<crate::filter::Carry>()
            .and_then(crate::filter::Carry::into_held);
        let c = Completion {
            start: self.start,
            status,
            metrics,
            in_flight,
            log,
            held,
        };
        resp.body_mut().set_completion(c);
        resp
    }

    /// A log record, when the access log is on.
    fn log_record<B>(
        &self,
        req: &Request<B>,
        host: &str,
        route: Option<&Arc<Route>>,
    ) -> Option<Box<LogRecord>> {
        let log = self.snap.access_log.as_ref()?;
        let bytes_in = match content_length(req) {
            Some(n) => BytesIn::Known(n),
            None if req.headers().contains_key(header::TRANSFER_ENCODING)
                || req.version() == Version::HTTP_2 =>
            {
                BytesIn::Counted(Arc::new(AtomicU64::new(0)))
            }
            None => BytesIn::Known(0),
        };
        Some(Box::new(LogRecord {
            log: log.clone(),
            time: SystemTime::now(),
            client: self.conn.peer,
            method: req.method().clone(),
            version: req.version(),
            host: host.to_string(),
            target: log_target(req, route),
            bytes_in,
            route: route.map(|r| r.name.clone()),
            consumer: None,
            upstream: None,
            endpoint: None,
            request_id: self.id().clone(),
            user_agent: req.headers().get(header::USER_AGENT).map(headers::detached),
            status: 0,
        }))
    }
}

/// The request's host without port, lower-case: from the authority of an absolute
/// target or HTTP/2's `:authority`, else the Host field.
fn host_of<B>(req: &Request<B>) -> Option<String> {
    let raw = match req.uri().authority() {
        Some(a) => a.as_str(),
        None => req.headers().get(header::HOST)?.to_str().ok()?,
    };
    Some(route::normalize_host(raw).into_owned())
}

/// The request-target as logged: a route's API key parameter taken out.
fn log_target<B>(req: &Request<B>, route: Option<&Arc<Route>>) -> String {
    let pq = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let secret = route.and_then(|r| r.redact_query.as_deref());
    match (secret, req.uri().query()) {
        (Some(name), Some(q)) => match crate::http::query::without(q, name) {
            Some(rest) if rest.is_empty() => req.uri().path().to_string(),
            Some(rest) => format!("{}?{rest}", req.uri().path()),
            None => pq.to_string(),
        },
        _ => pq.to_string(),
    }
}

/// Moves what the request hooks carried onto the response, for the response hooks and
/// then the body.
fn carried<B>(
    route: &Route,
    req: &mut Request<B>,
    mut resp: Response<ResponseBody>,
) -> Response<ResponseBody> {
    if let Some(c) = req.extensions_mut().remove::<crate::filter::Carry>() {
        resp.extensions_mut().insert(c);
    }
    if route.filters.wants_caller_on_response() {
        // Cloned: the log line still reads it from the request.
        if let Some(c) = req.extensions().get::<crate::consumer::Caller>() {
            resp.extensions_mut().insert(c.clone());
        }
    }
    resp
}

/// Notes the consumer the auth stage found in the request's log line.
fn note_caller(log: &mut Option<Box<LogRecord>>, ext: &http::Extensions) {
    if let (Some(l), Some(c)) = (log.as_mut(), ext.get::<crate::consumer::Caller>()) {
        l.consumer = c.0.consumer_name().cloned();
    }
}

fn content_length<B>(req: &Request<B>) -> Option<u64> {
    req.headers()
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod size_tests {
    use super::exchange::{exchange, Outgoing};
    use crate::http::client::Connector;
    use crate::runtime::ProxyAction;
    use crate::upstream::Endpoint;
    use std::sync::Arc;

    /// The size of the future an async fn returns, from the fn alone.
    fn future_size<A, B, F>(_: fn(A, B) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    /// A request's future is moved whole on every request (into hyper's HTTP/1
    /// dispatcher, or into an HTTP/2 stream's task), so its size is a per-request cost.
    /// Connects and retry buffering are boxed to keep it small: this catches a change
    /// that puts a large value back on the common path (7.1 KiB before, 3.9 KiB after;
    /// 5.0 KiB by 2026-12-06, back to 3.9 KiB when sending stopped keeping copies of the
    /// request). The request's future is one allocation a request: at most 4 KiB it is
    /// served from jemalloc's thread cache by its fast path, above it by the slow one
    /// (callgrind: about 170 instructions a request more).
    #[test]
    fn request_futures_stay_small() {
        let handle = future_size(super::serve_request);
        let exchange = future_size::<&'static ProxyAction, &'static mut Outgoing, _>(exchange);
        let lease = future_size::<&'static Connector, &'static Arc<Endpoint>, _>(Connector::lease);
        println!("handle {handle} B, exchange {exchange} B, lease {lease} B");
        assert!(handle <= 4 * 1024, "handle future is {handle} bytes");
        // A response is moved several times on its way to the client, and `memcpy`
        // moves 256 bytes or less in about half the instructions of 272 (callgrind).
        let response = std::mem::size_of::<http::Response<crate::body::ResponseBody>>();
        assert!(response <= 256, "a response is {response} bytes");
        assert!(exchange <= 1024, "exchange future is {exchange} bytes");
        assert!(lease <= 256, "lease future is {lease} bytes");
    }
}
