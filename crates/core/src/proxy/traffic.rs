//! Where a request goes besides its route's upstream: API versions (named by the
//! path's first segment, a header, an `Accept` media type parameter or a query
//! parameter), splits (canaries by weight, header, cookie or consumer group; first
//! match wins) and mirroring (a copy of a share
//! of requests sent to another upstream, fire-and-forget, its answer dropped; the
//! body copied as it streams to the real upstream, up to a bound).

use super::side;
use crate::body::UpstreamBody;
use crate::consumer::Caller;
use crate::filter::auth::side::Ask;
use crate::filter::draw;
use crate::runtime::{Mirror, ProxyAction, Version, Versions};
use gatehouse_config::spec::{SplitWhen, VersionBy};
use http::header;
use http::request::Parts;
use std::hash::{Hash, Hasher};
use std::net::IpAddr;

/// The action a request goes to (the first split that selects it, or the route's
/// own) and its balancing key (made again when a split chose another group).
pub(super) fn route_to<'a>(
    p: &'a ProxyAction,
    key: Option<u64>,
    parts: &Parts,
    client: IpAddr,
    peer: IpAddr,
) -> (&'a ProxyAction, Option<u64>) {
    let Some(s) = p.splits.iter().find(|s| selects(&s.when, parts, client)) else {
        return (p, key);
    };
    let key = s.action.group.spec.hash_on.as_ref().and_then(|on| {
        crate::upstream::lb::request_key(on, &parts.headers, parts.uri.query(), peer)
    });
    (&s.action, key)
}

fn selects(when: &SplitWhen, parts: &Parts, client: IpAddr) -> bool {
    let caller = || parts.extensions.get::<Caller>();
    match when {
        SplitWhen::Weight {
            share,
            sticky: false,
        } => draw(*share),
        SplitWhen::Weight {
            share,
            sticky: true,
        } => {
            // The same client lands on the same side, on every instance: a fixed hash.
            let mut h = std::collections::hash_map::DefaultHasher::new();
            match caller().and_then(|c| c.0.consumer_name().cloned()) {
                Some(name) => name.hash(&mut h),
                None => client.hash(&mut h),
            }
            ((h.finish() % 10_000) as f64) < share * 10_000.0
        }
        SplitWhen::Header { name, value } => {
            let mut values = parts.headers.get_all(name.as_str()).iter();
            match value {
                None => values.next().is_some(),
                Some(v) => values.any(|x| x.as_bytes() == v.as_bytes()),
            }
        }
        SplitWhen::Cookie { name, value } => {
            cookie(parts, name).is_some_and(|got| value.as_deref().is_none_or(|v| v == got))
        }
        SplitWhen::ConsumerGroup(g) => caller()
            .and_then(|c| c.0.consumer.as_ref())
            .is_some_and(|c| c.groups.iter().any(|x| x == g)),
    }
}

/// The value of cookie `name` in the request's `Cookie` headers.
fn cookie<'p>(parts: &'p Parts, name: &str) -> Option<&'p str> {
    parts
        .headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The version a request names (its path segment taken off when named by path), or
/// the default; `Err` lists the known ones for the unknown-version reply.
pub(super) fn version<'v>(v: &'v Versions, parts: &mut Parts) -> Result<&'v Version, String> {
    let find = |name: &str| v.list.iter().find(|x| x.name == name);
    let named: Option<String> = match &v.by {
        VersionBy::Path => {
            let path = parts.uri.path();
            let first = path
                .strip_prefix('/')
                .unwrap_or(path)
                .split('/')
                .next()
                .unwrap_or("");
            if let Some(found) = find(first) {
                let rest = match &path[1 + first.len()..] {
                    "" => "/".to_string(),
                    rest => rest.to_string(),
                };
                set_path(parts, &rest);
                return Ok(found);
            }
            None
        }
        VersionBy::Header(h) => parts
            .headers
            .get(h.as_str())
            .and_then(|x| x.to_str().ok())
            .map(|s| s.trim().to_string()),
        VersionBy::Query(q) => parts
            .uri
            .query()
            .and_then(|query| crate::http::query::values(query, q).next())
            .map(str::to_string),
        VersionBy::MediaType(param) => media_version(parts, param),
    };
    let chosen = match &named {
        Some(n) => find(n),
        None => v.default.and_then(|i| v.list.get(i)),
    };
    chosen.ok_or_else(|| {
        let known: Vec<&str> = v.list.iter().map(|x| x.name.as_str()).collect();
        match named {
            Some(n) => format!("unknown API version `{n}`; known: {}", known.join(", ")),
            None => format!("name an API version; known: {}", known.join(", ")),
        }
    })
}

/// `version=2` in any media range of `Accept` (`application/vnd.x+json; version=2`).
fn media_version(parts: &Parts, param: &str) -> Option<String> {
    parts
        .headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .flat_map(|range| range.split(';').skip(1))
        .filter_map(|p| p.trim().split_once('='))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case(param))
        .map(|(_, v)| v.trim().trim_matches('"').to_string())
}

/// Replaces the path of the request's URI, keeping its query (and, in absolute form,
/// its scheme and authority).
fn set_path(parts: &mut Parts, path: &str) {
    let pq = match parts.uri.query() {
        Some(q) => format!("{path}?{q}"),
        None => path.to_string(),
    };
    let mut u = parts.uri.clone().into_parts();
    if let Ok(pq) = http::uri::PathAndQuery::try_from(pq) {
        u.path_and_query = Some(pq);
        if let Ok(uri) = http::Uri::from_parts(u) {
            parts.uri = uri;
        }
    }
}

/// Sends a copy of the request (as it goes upstream) to the mirror, when the draw
/// says so. A body is copied as it streams; one over the bound, or cut short, means no
/// mirrored request. Nothing here can delay or fail the real request.
pub(super) fn mirror(m: &Mirror, parts: &Parts, body: &mut UpstreamBody) {
    if !draw(m.share) {
        return;
    }
    let max = usize::try_from(m.max_body).unwrap_or(usize::MAX);
    enum Copy {
        Now(Option<bytes::Bytes>),
        Later(tokio::sync::oneshot::Receiver<bytes::Bytes>),
    }
    let copy = match body {
        UpstreamBody::Empty => Copy::Now(None),
        UpstreamBody::Full(b) => match b {
            Some(b) if b.len() > max => return,
            b => Copy::Now(b.clone()),
        },
        incoming => match incoming.tee(max) {
            Some(rx) => Copy::Later(rx),
            None => return,
        },
    };
    let mut headers = parts.headers.clone();
    headers.remove(header::HOST);
    headers.remove(header::CONTENT_LENGTH);
    headers.remove(header::TRANSFER_ENCODING);
    let ask_path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    let (method, group) = (parts.method.clone(), m.group.clone());
    tokio::spawn(async move {
        let body = match copy {
            Copy::Now(b) => b,
            Copy::Later(rx) => match rx.await {
                Ok(b) => Some(b),
                // The body was over the bound or did not end whole.
                Err(_) => return,
            },
        };
        let ask = Ask {
            method,
            path: ask_path,
            headers,
            body,
        };
        match side::send(group, ask).await {
            Ok(a) => tracing::debug!(status = a.status.as_u16(), "mirrored request answered"),
            Err(e) => tracing::debug!(error = %e, "mirrored request failed"),
        }
    });
}
