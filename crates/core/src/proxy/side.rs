//! Requests Gatehouse makes on its own behalf through an upstream group (a JWT
//! provider's key set, token introspection, an external auth check): the same exchange
//! as a proxied request (breaker, picks, pool, TLS, health), with the body read whole up
//! to a bound and the connection pooled after.

use super::exchange::{exchange, Outgoing};
use crate::body::UpstreamBody;
use crate::filter::auth::side::{Answer, Ask, Call};
use crate::runtime::ProxyAction;
use crate::upstream::UpstreamGroup;
use gatehouse_config::spec::{ProxySpec, UpstreamProtocol};
use http::{header, HeaderValue, Request, Uri, Version};
use http_body_util::BodyExt;
use std::sync::Arc;
use std::time::Duration;

/// The most of a side answer's body read.
const MAX_BODY: usize = 1024 * 1024;

/// A [`Call`] that sends through `group`.
pub fn caller(group: Arc<UpstreamGroup>) -> Call {
    Arc::new(move |ask| Box::pin(send(group.clone(), ask)))
}

/// Sends `ask` through `group` and reads the answer whole.
pub async fn send(group: Arc<UpstreamGroup>, ask: Ask) -> Result<Answer, String> {
    let (uri, version) = match group.spec.protocol {
        UpstreamProtocol::Http1 => (
            ask.path.parse::<Uri>().map_err(|e| e.to_string())?,
            Version::HTTP_11,
        ),
        UpstreamProtocol::Http2 => {
            let scheme = if group.spec.tls.is_some() {
                "https"
            } else {
                "http"
            };
            let authority = group
                .endpoints()
                .first()
                .map(|e| e.label.to_string())
                .unwrap_or_default();
            let u = format!("{scheme}://{authority}{}", ask.path);
            (
                u.parse::<Uri>().map_err(|e| e.to_string())?,
                Version::HTTP_2,
            )
        }
    };
    let mut req = Request::builder()
        .method(ask.method)
        .uri(uri)
        .version(version)
        .body(match ask.body {
            Some(b) => UpstreamBody::Full(Some(b)),
            None => UpstreamBody::Empty,
        })
        .map_err(|e| e.to_string())?;
    *req.headers_mut() = ask.headers;
    req.headers_mut()
        .entry(header::USER_AGENT)
        .or_insert(HeaderValue::from_static("gatehouse"));
    let spec = ProxySpec {
        upstream: group.name.to_string(),
        strip_prefix: None,
        replace_prefix: None,
        host_rewrite: None,
        preserve_host: false,
        forwarded: false,
        upstream_response_timeout: Duration::from_secs(30),
        traffic: Default::default(),
    };
    let p = ProxyAction::plain(group, spec, None);
    let mut out = Outgoing {
        req: Some(req),
        deadline: None,
        key: None,
        preferred: None,
        offered: None,
    };
    let x = exchange(&p, &mut out).await.map_err(|e| e.message())?;
    let (parts, mut body) = x.resp.into_parts();
    let mut bytes = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| format!("reading the body: {e}"))?;
        if let Some(d) = frame.data_ref() {
            if bytes.len() + d.len() > MAX_BODY {
                return Err(format!("body is over {MAX_BODY} bytes"));
            }
            bytes.extend_from_slice(d);
        }
    }
    body.release();
    drop(x.in_flight);
    Ok(Answer {
        status: parts.status,
        headers: parts.headers,
        body: bytes.freeze(),
    })
}
