//! Where a request goes besides its route's upstream: splits (canaries by weight,
//! header, cookie or consumer group; first match wins) and mirroring (a copy of a share
//! of requests sent to another upstream, fire-and-forget, its answer dropped; the
//! body copied as it streams to the real upstream, up to a bound).

use super::side;
use crate::body::UpstreamBody;
use crate::consumer::Caller;
use crate::filter::auth::side::Ask;
use crate::runtime::{Mirror, ProxyAction};
use gatehouse_config::spec::SplitWhen;
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
        } => hit(*share),
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

/// One draw: true with probability `share` (0..=1).
fn hit(share: f64) -> bool {
    share >= 1.0 || (share > 0.0 && fastrand::f64() < share)
}

/// Sends a copy of the request (as it goes upstream) to the mirror, when the draw
/// says so. A body is copied as it streams; one over the bound, or cut short, means no
/// mirrored request. Nothing here can delay or fail the real request.
pub(super) fn mirror(m: &Mirror, parts: &Parts, body: &mut UpstreamBody) {
    if !hit(m.share) {
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
