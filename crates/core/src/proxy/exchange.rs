//! One exchange with an upstream group: admission by the breaker, the endpoint pick
//! (sticky cookie first), the connection lease, the send with its deadline, and the
//! retry loop. Every attempt's outcome feeds outlier detection, the breaker and the
//! latency EWMA.
//!
//! A failed connect moves on to another endpoint for any method (nothing was sent). A
//! response whose status is in `retry.on_status`, a protocol error or a per-try timeout
//! is retried only for an idempotent method, only when the body can be sent again
//! (empty, or buffered within `retry.buffer_body`), only to an endpoint not yet tried,
//! and only while the group's retry budget allows.

use crate::body::UpstreamBody;
use crate::error::{ErrorKind, ProxyError};
use crate::http::client::{broke_before_response, Lease, Received, Sent};
use crate::http::h1::conn::TimedOut;
use crate::http::response_rules;
use crate::runtime::ProxyAction;
use crate::upstream::endpoint::InFlight;
use crate::upstream::health::Outcome;
use crate::upstream::{retry, UpstreamGroup};
use bytes::Bytes;
use futures_util::future::{Either, FutureExt as _};
use gatehouse_config::spec::RetrySpec;
use http::{header, HeaderValue, Method, Request, Uri, Version};
use hyper::Response;
use std::future::Future;
use std::time::Duration;
use tokio::time::Instant;

/// What came back, and from where.
pub(super) struct Exchanged {
    pub resp: Response<Received>,
    pub in_flight: InFlight,
    /// The endpoint's index in its group.
    pub index: usize,
}

/// The request as handed to the exchange, and what picks need. The exchange borrows it
/// (taking the request out when it is sent) so that its future does not hold a second
/// copy of the request: futures are moved whole on every request.
pub(super) struct Outgoing {
    pub req: Option<Request<UpstreamBody>>,
    pub deadline: Option<Instant>,
    pub key: Option<u64>,
    pub preferred: Option<usize>,
    /// What the client offered in `Upgrade`, when it asked for an upgrade. An upgrade
    /// is never retried: its request carries hyper's upgrade hook.
    pub offered: Option<HeaderValue>,
}

/// A copy of the request head and buffered body, to send again on a retry.
struct Replay {
    method: Method,
    uri: Uri,
    version: Version,
    headers: http::HeaderMap,
    body: Option<Bytes>,
}

/// How the last attempt failed, to decide whether to try again.
enum Failure {
    Status,
    Protocol,
    Timeout,
}

pub(super) async fn exchange(p: &ProxyAction, out: &mut Outgoing) -> Result<Exchanged, ProxyError> {
    let group = &p.group;
    let r = group.resilience();
    let _admitted = group.breaker.admit(&r.breaker).map_err(|rej| {
        ProxyError::new(
            ErrorKind::NoEndpoint,
            format!("upstream `{}` {}", group.name, rej.reason),
        )
        .retry_after(Some(rej.retry_after))
    })?;
    let policy = r
        .retry
        .as_ref()
        .filter(|s| s.retries > 0 && out.offered.is_none());
    if policy.is_some() {
        group.budget.request();
    }
    let (deadline, key, preferred) = (out.deadline, out.key, out.preferred);
    // The request is taken out only where a replay is prepared: taking it and putting it
    // back copies it twice.
    let mut replay = None;
    if let Some(s) = policy {
        if let Some(req) = out.req.take() {
            // Boxed: only retrying groups need it, and it holds a body collector.
            let (next, r) = Box::pin(prepare_replay(req, s)).await?;
            out.req = next;
            replay = r;
        }
    }
    let mut tried: Vec<usize> = Vec::new();
    let mut retries = 0u32;
    let ewma = group.spec.balancer == gatehouse_config::spec::BalancerKind::PowerOfTwo;
    loop {
        let (i, ep) = group.pick(&tried, key, preferred).map_err(|np| {
            ProxyError::new(ErrorKind::NoEndpoint, np.message).retry_after(np.retry_after)
        })?;
        let ep = ep.clone();
        let in_flight = ep.start();
        let lease = match lease(group, &ep).await {
            Ok(l) => l,
            Err(e) => {
                in_flight.failed();
                if e.kind != ErrorKind::NoEndpoint {
                    group.record(&ep, Outcome::Failure);
                }
                tracing::debug!(endpoint = %ep.label, error = %e.message(), "connect failed");
                tried.push(i);
                if !e.retryable || tried.len() >= group.endpoints().len() {
                    return Err(e);
                }
                continue;
            }
        };
        let mut req = match out.req.take() {
            Some(r) => r,
            None => match &replay {
                Some(rp) => rp.request(),
                None => return Err(ProxyError::new(ErrorKind::Internal, "nothing to send")),
            },
        };
        if p.host_rewrite.is_none() && !p.spec.preserve_host {
            endpoint_host(&mut req, &ep.label);
        }
        let (until, kind) = try_deadline(p, deadline, policy);
        // Only p2c reads the latency EWMA: other groups skip the two clock reads.
        let sent = ewma.then(Instant::now);
        let spare = (out.offered.is_none())
            .then(|| spare(&lease, &req, &replay))
            .flatten();
        let failure = match send(group, &ep, lease, req, spare, until).await {
            Ok(resp) => {
                if let Some(t) = sent {
                    ep.health.observe_latency(t.elapsed());
                }
                let status = resp.status();
                let rules = response_rules::check(
                    status,
                    resp.version(),
                    resp.headers(),
                    out.offered.as_ref(),
                );
                if let Err(broken) = rules {
                    // Dropping the response unreleased closes the connection: whatever
                    // follows on it cannot be trusted.
                    drop(resp);
                    in_flight.failed();
                    group.record(&ep, Outcome::Failure);
                    let msg = format!("upstream {}: {broken}", ep.label);
                    (
                        Failure::Protocol,
                        Some(ProxyError::new(ErrorKind::UpstreamProtocol, msg)),
                    )
                } else {
                    let outcome = if status.is_server_error() {
                        in_flight.failed();
                        Outcome::Failure
                    } else {
                        Outcome::Success
                    };
                    group.record(&ep, outcome);
                    let retry_it = policy.is_some_and(|s| s.on_status.contains(&status.as_u16()));
                    if !retry_it || !may_retry(group, policy, &replay, &tried, i, retries, deadline)
                    {
                        return Ok(Exchanged {
                            resp,
                            in_flight,
                            index: i,
                        });
                    }
                    (Failure::Status, None)
                }
            }
            Err(e) => {
                in_flight.failed();
                group.record(&ep, Outcome::Failure);
                if crate::body::find_cause::<TimedOut>(&e).is_some() {
                    let msg = format!("upstream {} did not answer in time", ep.label);
                    (Failure::Timeout, Some(ProxyError::new(kind, msg)))
                } else {
                    (Failure::Protocol, Some(e))
                }
            }
        };
        if let (how, Some(e)) = failure {
            let wanted = match how {
                Failure::Protocol => policy.is_some_and(|s| s.on_status.contains(&502)),
                Failure::Timeout => {
                    kind == ErrorKind::UpstreamTimeout && policy.is_some_and(|s| s.on_timeout)
                }
                Failure::Status => false,
            };
            if !wanted || !may_retry(group, policy, &replay, &tried, i, retries, deadline) {
                return Err(e);
            }
        }
        tried.push(i);
        retries += 1;
        if let Some(s) = policy {
            tracing::debug!(endpoint = %ep.label, retry = retries, "retrying on another endpoint");
            tokio::time::sleep(retry::backoff(s, retries)).await;
        }
    }
}

/// A copy of the request to send again if `lease` is a pooled connection that may have
/// gone stale (see `client::STALE_AFTER`): only for an idempotent request whose body
/// can be sent again (none, or the retry buffer).
fn spare(
    lease: &Lease,
    req: &Request<UpstreamBody>,
    replay: &Option<Box<Replay>>,
) -> Option<Box<Request<UpstreamBody>>> {
    if !lease.may_be_stale() || !idempotent(req.method()) {
        return None;
    }
    match replay {
        Some(rp) => Some(Box::new(rp.request())),
        None if matches!(req.body(), UpstreamBody::Empty) => {
            let mut copy = Request::new(UpstreamBody::Empty);
            *copy.method_mut() = req.method().clone();
            *copy.uri_mut() = req.uri().clone();
            *copy.version_mut() = req.version();
            *copy.headers_mut() = req.headers().clone();
            Some(Box::new(copy))
        }
        None => None,
    }
}

/// Sends on a lease. A request with a spare copy whose stale pooled connection broke
/// before any response is sent once more, on a new connection to the same endpoint.
/// Made of combinators, not an async fn: one would keep room for the request it hands
/// on and for the outcome for its whole life (rust-lang/rust#62958), in every
/// request's future.
fn send<'a>(
    group: &'a UpstreamGroup,
    ep: &'a std::sync::Arc<crate::upstream::Endpoint>,
    lease: Lease,
    req: Request<UpstreamBody>,
    // Boxed: it is rare, and futures are moved whole on every request.
    spare: Option<Box<Request<UpstreamBody>>>,
    until: Instant,
) -> impl Future<Output = Result<Sent, ProxyError>> + 'a {
    let first = group.connector.send(ep, lease, req, Some(until));
    first.then(move |r| match (r, spare) {
        (Err(e), Some(again)) if broke_before_response(&e) => {
            tracing::debug!(endpoint = %ep.label, error = %e.message(), "stale pooled connection: sending again on a new one");
            Either::Left(Box::pin(group.connector.resend_h1(ep, *again, Some(until))))
        }
        (r, _) => Either::Right(std::future::ready(r)),
    })
}

/// A connection to `ep`, within the breaker's connection and pending limits.
async fn lease(
    group: &UpstreamGroup,
    ep: &std::sync::Arc<crate::upstream::Endpoint>,
) -> Result<crate::http::client::Lease, ProxyError> {
    let b = &group.resilience().breaker;
    let full = |reason: &str| {
        ProxyError::new(
            ErrorKind::NoEndpoint,
            format!("upstream `{}` {reason}", group.name),
        )
        .retry_after(Some(Duration::from_secs(1)))
    };
    if b.max_connections != 0
        && !ep.pool.has_reusable()
        && group.open_connections() >= b.max_connections
    {
        return Err(full("has as many connections open as its breaker allows"));
    }
    let _pending = group.breaker.pend(b).map_err(|rej| full(rej.reason))?;
    group.connector.lease(ep).await
}

/// The deadline of one try: the response timeout, the per-try timeout and the whole
/// request's deadline, whichever comes first, and the error kind if it passes.
fn try_deadline(
    p: &ProxyAction,
    deadline: Option<Instant>,
    policy: Option<&RetrySpec>,
) -> (Instant, ErrorKind) {
    let now = Instant::now();
    let mut until = now + p.spec.upstream_response_timeout;
    if let Some(t) = policy.and_then(|s| s.per_try_timeout) {
        until = until.min(now + t);
    }
    match deadline {
        Some(d) if d < until => (d, ErrorKind::RequestTimeout),
        _ => (until, ErrorKind::UpstreamTimeout),
    }
}

/// Whether one more try is allowed: a policy with tries left, a method that is safe to
/// repeat, a body that can be sent again, an endpoint not yet tried, time before the
/// deadline, and the budget (checked last: it spends a token).
fn may_retry(
    group: &UpstreamGroup,
    policy: Option<&RetrySpec>,
    replay: &Option<Box<Replay>>,
    tried: &[usize],
    current: usize,
    retries: u32,
    deadline: Option<Instant>,
) -> bool {
    let Some(s) = policy else { return false };
    let Some(rp) = replay else { return false };
    if retries >= s.retries || !idempotent(&rp.method) {
        return false;
    }
    if deadline.is_some_and(|d| d <= Instant::now()) {
        return false;
    }
    let untried = group
        .endpoints()
        .iter()
        .enumerate()
        .any(|(j, e)| j != current && !tried.contains(&j) && e.health.usable());
    if !untried {
        return false;
    }
    let ok = group.budget.try_retry(s);
    if !ok {
        tracing::debug!(upstream = %group.name, "retry budget spent");
    }
    ok
}

fn idempotent(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
}

/// Buffers the body when it is small enough to send again, and keeps a copy of the
/// head. A body too large (or of unknown length) is streamed, and the request is then
/// retried only on connect failures.
async fn prepare_replay(
    req: Request<UpstreamBody>,
    s: &RetrySpec,
) -> Result<(Option<Request<UpstreamBody>>, Option<Box<Replay>>), ProxyError> {
    let (parts, body) = req.into_parts();
    let buffered = match body {
        UpstreamBody::Empty => None,
        UpstreamBody::Full(b) => b,
        body => {
            let small = parts
                .headers
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
                .is_some_and(|n| n <= s.buffer_body);
            if !small {
                return Ok((Some(Request::from_parts(parts, body)), None));
            }
            Some(super::whole::request(body).await?)
        }
    };
    let replay = Replay {
        method: parts.method,
        uri: parts.uri,
        version: parts.version,
        headers: parts.headers,
        body: buffered,
    };
    Ok((None, Some(Box::new(replay))))
}

impl Replay {
    fn request(&self) -> Request<UpstreamBody> {
        let mut req = Request::new(match &self.body {
            Some(b) => UpstreamBody::Full(Some(b.clone())),
            None => UpstreamBody::Empty,
        });
        *req.method_mut() = self.method.clone();
        *req.uri_mut() = self.uri.clone();
        *req.version_mut() = self.version;
        *req.headers_mut() = self.headers.clone();
        req
    }
}

/// Names the endpoint itself as the Host (HTTP/1.1) or authority (HTTP/2).
fn endpoint_host<B>(req: &mut Request<B>, label: &str) {
    if req.version() == Version::HTTP_2 {
        let mut parts = req.uri().clone().into_parts();
        if let Ok(a) = label.parse() {
            parts.authority = Some(a);
        }
        if let Ok(u) = Uri::from_parts(parts) {
            *req.uri_mut() = u;
        }
    } else if let Ok(v) = HeaderValue::from_str(label) {
        req.headers_mut().insert(header::HOST, v);
    }
}
