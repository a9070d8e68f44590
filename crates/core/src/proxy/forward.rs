//! Forwarding to an upstream: body limit, header rules, path and Host rewriting, the
//! sticky cookie, and upgrades. The exchange itself (picks, retries) is in
//! [`super::exchange`].

use super::exchange::{exchange, Exchanged, Outgoing};
use super::{content_length, upgrade, Req};
use crate::access_log::{BytesIn, LogRecord};
use crate::body::ClientBody;
use crate::body::{ResponseBody, UpstreamBody};
use crate::error::{ErrorKind, ProxyError};
use crate::filter::{Carry, Flow};
use crate::http::client::Received;
use crate::http::headers::{self, Forwarding};
use crate::runtime::{ProxyAction, Route};
use gatehouse_config::spec::UpstreamProtocol;
use http::request::Parts;
use http::uri::{PathAndQuery, Uri};
use http::{header, HeaderValue, Request, Response, StatusCode, Version};
use http_body::Body as _;
use std::sync::Arc;

/// Why forwarding failed, the log record, and what the filters carried (a CORS grant,
/// a concurrency place) for the error reply.
pub(super) type Failed = (ProxyError, Option<Box<LogRecord>>, Option<Carry>);

pub(super) async fn forward(
    r: &Req<'_>,
    mut req: Request<ClientBody>,
    host: &str,
    route: &Arc<Route>,
    p: &ProxyAction,
    mut log: Option<Box<LogRecord>>,
) -> Result<Response<ResponseBody>, Failed> {
    let limit = route.max_body_size.or(r.listener.spec.limits.max_body_size);
    // The length is read only when there is a limit to hold it to.
    if let Some((max, n)) = limit.and_then(|max| Some((max, content_length(&req)?))) {
        if n > max {
            return Err((
                ProxyError::new(
                    ErrorKind::PayloadTooLarge,
                    format!("request body of {n} bytes is over the limit of {max}"),
                ),
                log,
                None,
            ));
        }
    }
    let upgrade = req.version() == Version::HTTP_11 && headers::is_upgrade(req.headers());
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let offered = upgrade
        .then(|| req.headers().get(header::UPGRADE).cloned())
        .flatten();
    let deadline = route.request_timeout.map(|t| r.start + t);
    let key = p.group.spec.hash_on.as_ref().and_then(|on| {
        crate::upstream::lb::request_key(on, req.headers(), req.uri().query(), r.conn.peer.ip())
    });
    let (mut parts, body) = req.into_parts();
    if route.filters.wants_original_uri() {
        let uri = parts.uri.clone();
        parts.extensions.insert(crate::filter::OriginalUri(uri));
    }
    rewrite_head(r, &mut parts, host, p, upgrade);
    if !route.filters.is_empty() {
        if let Flow::Respond(resp) = route
            .filters
            .on_request(&mut parts, &r.filter_ctx(route))
            .await
        {
            return Ok(r.complete(*resp, route.metrics.clone(), log, None));
        }
        super::note_caller(&mut log, &parts.extensions);
    }
    let counter = match log.as_deref() {
        Some(LogRecord {
            bytes_in: BytesIn::Counted(c),
            ..
        }) => Some(c.clone()),
        _ => None,
    };
    let mut body = if body.is_end_stream() {
        UpstreamBody::Empty
    } else {
        UpstreamBody::incoming(body, limit, counter)
    };
    if !upgrade && route.filters.wants_request_body(&parts) {
        // Boxed: only routes with body filters read bodies, and futures are moved whole.
        body = match Box::pin(request_hooks(r, route, limit, &mut parts, body)).await {
            Ok(b) => b,
            Err(Ok(resp)) => return Ok(r.complete(resp, route.metrics.clone(), log, None)),
            Err(Err(e)) => return Err((e, log, parts.extensions.remove::<Carry>())),
        };
    }
    if !upgrade && !matches!(body, UpstreamBody::Empty) {
        if let Some(edits) = route.filters.request_edits(&mut parts) {
            body = UpstreamBody::Edited(Box::new((body, edits)));
        }
    }
    let (p, version) = match &p.versions {
        None => (p, None),
        Some(v) => match super::traffic::version(v, &mut parts) {
            Ok(ver) => (&ver.action, Some(ver)),
            Err(msg) => {
                let known: Vec<serde_json::Value> =
                    v.list.iter().map(|x| x.name.clone().into()).collect();
                let resp = crate::error::json_reply(
                    "unknown_version",
                    v.unknown,
                    &msg,
                    r.id(),
                    Some(("versions", known.into())),
                );
                return Ok(r.complete(resp, route.metrics.clone(), log, None));
            }
        },
    };
    // After the filters: a split may follow the consumer they found.
    let (p, key) = super::traffic::route_to(p, key, &parts, r.client_ip, r.conn.peer.ip());
    if let Some(m) = p.mirror.as_ref().filter(|_| !upgrade) {
        super::traffic::mirror(m, &parts, &mut body);
    }
    let carry = parts.extensions.remove::<Carry>();
    let caller = route
        .filters
        .wants_caller_on_response()
        .then(|| parts.extensions.get::<crate::consumer::Caller>().cloned())
        .flatten();
    let head_only = parts.method == http::Method::HEAD;
    // Only groups with sticky sessions hold their members for the request.
    let members = p
        .group
        .spec
        .resilience
        .sticky
        .is_some()
        .then(|| p.group.endpoints());
    let sticky = members.as_ref().and_then(|m| m.sticky.as_ref());
    let preferred = sticky.and_then(|s| s.endpoint(&parts.headers));
    let mut out = Outgoing {
        req: Some(Request::from_parts(parts, body)),
        deadline,
        key,
        preferred,
        offered,
    };
    let Exchanged {
        resp,
        in_flight,
        index,
    } = match exchange(p, &mut out).await {
        Ok(x) => x,
        Err(e) => return Err((e, log, carry)),
    };
    if let Some(l) = log.as_mut() {
        l.upstream = Some(p.group.name.clone());
        l.endpoint = Some(in_flight.endpoint().label.clone());
    }
    let upgraded = resp.status() == StatusCode::SWITCHING_PROTOCOLS;
    let out = match (upgraded, client_upgrade) {
        (true, Some(client)) => {
            let (mut parts, body) = resp.into_parts();
            if let Received::H1(b) = body {
                if let Some(upstream) = b.into_wire() {
                    let closing = in_flight.endpoint().closing();
                    // A concurrency place stays taken while the tunnel is open.
                    let held = carry.and_then(Carry::into_held);
                    upgrade::tunnel(client, upstream, r.conn.drain.clone(), closing, held);
                }
            }
            headers::strip_hop_by_hop(&mut parts.headers, true);
            Response::from_parts(parts, ResponseBody::empty())
        }
        _ => {
            let (mut parts, body) = resp.into_parts();
            headers::strip_hop_by_hop(&mut parts.headers, false);
            // An intermediary sends its own version (RFC 9110 6.2), not the upstream's.
            parts.version = Version::HTTP_11;
            if let Some(c) = sticky.filter(|_| preferred != Some(index)) {
                if let Some(v) = c.set_cookie(index) {
                    parts.headers.append(header::SET_COOKIE, v);
                }
            }
            if let Some(c) = carry {
                parts.extensions.insert(c);
            }
            if let Some(c) = caller {
                parts.extensions.insert(c);
            }
            for (n, v) in version.iter().flat_map(|v| &v.headers) {
                parts.headers.insert(n.clone(), v.clone());
            }
            if !route.filters.is_empty() {
                route.filters.on_response(&mut parts, &r.filter_ctx(route));
            }
            let content = has_content(&parts, head_only);
            let mut body = if content && route.filters.wants_response_body(&parts) {
                let until = deadline.unwrap_or_else(|| {
                    tokio::time::Instant::now() + p.spec.upstream_response_timeout
                });
                match Box::pin(response_hooks(r, route, &mut parts, body, until)).await {
                    Ok(b) => b,
                    Err(e) => return Err((e, log, parts.extensions.remove::<Carry>())),
                }
            } else {
                ResponseBody::upstream(body)
            };
            if let Some(edits) = content
                .then(|| route.filters.response_edits(&mut parts))
                .flatten()
            {
                body.edit(edits);
            }
            if let Some(d) = deadline {
                body.set_deadline(d);
            }
            Response::from_parts(parts, body)
        }
    };
    Ok(r.complete(out, route.metrics.clone(), log, Some(in_flight)))
}

/// Reads the request body whole for the filters that asked and runs their hooks:
/// the body to send, or the reply a filter gave (`Err(Ok)`), or why it failed.
async fn request_hooks(
    r: &Req<'_>,
    route: &Route,
    limit: Option<u64>,
    parts: &mut Parts,
    body: UpstreamBody,
) -> Result<UpstreamBody, Result<Response<ResponseBody>, ProxyError>> {
    let had_body = !matches!(body, UpstreamBody::Empty);
    let buffer = limit.map_or(route.body_buffer_limit, |l| l.min(route.body_buffer_limit));
    let body = match body {
        UpstreamBody::Incoming { inner, counter, .. } => {
            UpstreamBody::incoming(inner, Some(buffer), counter)
        }
        other => other,
    };
    let mut bytes = super::whole::request(body).await.map_err(Err)?;
    if let Flow::Respond(resp) = route
        .filters
        .on_request_body(parts, &mut bytes, &r.filter_ctx(route))
        .await
    {
        return Err(Ok(*resp));
    }
    super::whole::set_length(&mut parts.headers, bytes.len(), had_body);
    Ok(if bytes.is_empty() {
        UpstreamBody::Empty
    } else {
        UpstreamBody::Full(Some(bytes))
    })
}

/// Reads the upstream's body whole for the filters that asked and runs their hooks.
async fn response_hooks(
    r: &Req<'_>,
    route: &Route,
    parts: &mut http::response::Parts,
    body: Received,
    until: tokio::time::Instant,
) -> Result<ResponseBody, ProxyError> {
    let mut bytes = super::whole::response(body, route.body_buffer_limit, until).await?;
    route
        .filters
        .on_response_body(parts, &mut bytes, &r.filter_ctx(route))?;
    super::whole::set_length(&mut parts.headers, bytes.len(), true);
    Ok(ResponseBody::full(bytes))
}

/// Whether a response has content a body hook could read (RFC 9110 6.4.1).
fn has_content(parts: &http::response::Parts, head_only: bool) -> bool {
    !head_only
        && !parts.status.is_informational()
        && parts.status != StatusCode::NO_CONTENT
        && parts.status != StatusCode::NOT_MODIFIED
}

/// Applies the header rules, Host and path rewriting, and the upstream's HTTP version.
fn rewrite_head(r: &Req<'_>, parts: &mut Parts, host: &str, p: &ProxyAction, upgrade: bool) {
    let original_host = match parts.headers.get(header::HOST) {
        Some(h) => Some(h.clone()),
        None => parts
            .uri
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok()),
    };
    headers::strip_hop_by_hop(&mut parts.headers, upgrade);
    let via = if parts.version == Version::HTTP_2 {
        r.snap.via_h2.as_ref()
    } else {
        r.snap.via_h1.as_ref()
    };
    let ip = r.conn.peer.ip();
    let f = Forwarding {
        client: ip,
        client_text: &r.conn.peer_ip,
        trusted: !r.snap.trusted_proxies.is_empty() && r.snap.is_trusted(ip),
        proto: r.listener.scheme,
        host: original_host.as_ref(),
        via,
        forwarded: p.spec.forwarded,
    };
    headers::add_forwarding(&mut parts.headers, &f);
    let upstream_host = match (&p.host_rewrite, p.spec.preserve_host) {
        (Some(h), _) => Some(h.clone()),
        (None, true) => original_host,
        (None, false) => None,
    };
    if parts.version == Version::HTTP_2 && p.group.spec.protocol == UpstreamProtocol::Http1 {
        headers::join_cookies(&mut parts.headers);
    }
    let path = rewrite_path(parts, p);
    let (uri, version) = match p.group.spec.protocol {
        UpstreamProtocol::Http1 => (origin_form(path), Version::HTTP_11),
        UpstreamProtocol::Http2 => (
            absolute_form(path, upstream_host.as_ref(), host, p),
            Version::HTTP_2,
        ),
    };
    parts.uri = uri;
    parts.version = version;
    match (p.group.spec.protocol, upstream_host) {
        (UpstreamProtocol::Http1, Some(h)) => {
            parts.headers.insert(header::HOST, h);
        }
        // With preserve_host off the Host is the endpoint's address, set once it is picked.
        (UpstreamProtocol::Http1, None) => {}
        (UpstreamProtocol::Http2, _) => {
            parts.headers.remove(header::HOST);
        }
    }
}

/// The path and query to send, after strip_prefix / replace_prefix.
fn rewrite_path(parts: &Parts, p: &ProxyAction) -> PathAndQuery {
    let pq = parts
        .uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    if p.spec.strip_prefix.is_none() && p.spec.replace_prefix.is_none() {
        return pq;
    }
    let path = pq.path();
    let rest = match &p.spec.strip_prefix {
        Some(s) => path.strip_prefix(s.trim_end_matches('/')).unwrap_or(path),
        None => path,
    };
    let prefix = p
        .spec
        .replace_prefix
        .as_deref()
        .unwrap_or("")
        .trim_end_matches('/');
    let mut out = String::with_capacity(
        prefix.len() + rest.len() + 1 + pq.query().map_or(0, |q| q.len() + 1),
    );
    out.push_str(prefix);
    if !rest.starts_with('/') {
        out.push('/');
    }
    out.push_str(rest);
    if let Some(q) = pq.query() {
        out.push('?');
        out.push_str(q);
    }
    PathAndQuery::try_from(out).unwrap_or(pq)
}

fn origin_form(pq: PathAndQuery) -> Uri {
    Uri::from(pq)
}

fn absolute_form(
    pq: PathAndQuery,
    upstream_host: Option<&HeaderValue>,
    host: &str,
    p: &ProxyAction,
) -> Uri {
    let scheme = if p.group.spec.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let authority = upstream_host
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
        .unwrap_or_else(|| {
            if host.is_empty() {
                p.group
                    .endpoints()
                    .first()
                    .map(|e| e.label.to_string())
                    .unwrap_or_default()
            } else {
                host.to_string()
            }
        });
    // (When preserve_host is off the authority is replaced by the picked endpoint's.)
    Uri::builder()
        .scheme(scheme)
        .authority(authority)
        .path_and_query(pq.clone())
        .build()
        .unwrap_or_else(|_| Uri::from(pq))
}
