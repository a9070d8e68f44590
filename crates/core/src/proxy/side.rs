//! Requests Gatehouse makes on its own behalf through an upstream group (a JWT
//! provider's key set): the same exchange as a proxied request (breaker, picks, pool,
//! TLS, health), with the body read whole up to a bound and the connection pooled after.

use super::exchange::{exchange, Outgoing};
use crate::body::UpstreamBody;
use crate::filter::auth::jwks::Fetched;
use crate::runtime::ProxyAction;
use crate::upstream::UpstreamGroup;
use gatehouse_config::spec::{ProxySpec, UpstreamProtocol};
use http::{header, HeaderValue, Method, Request, Uri, Version};
use http_body_util::BodyExt;
use std::sync::Arc;
use std::time::Duration;

/// A GET of `path` (with query) through `group`, its body bounded by `max_body`.
pub async fn get(
    group: Arc<UpstreamGroup>,
    path: String,
    max_body: usize,
) -> Result<Fetched, String> {
    let (uri, version) = match group.spec.protocol {
        UpstreamProtocol::Http1 => (
            path.parse::<Uri>().map_err(|e| e.to_string())?,
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
            let u = format!("{scheme}://{authority}{path}");
            (
                u.parse::<Uri>().map_err(|e| e.to_string())?,
                Version::HTTP_2,
            )
        }
    };
    let req = Request::builder()
        .method(Method::GET)
        .uri(uri)
        .version(version)
        .header(header::ACCEPT, HeaderValue::from_static("application/json"))
        .header(header::USER_AGENT, HeaderValue::from_static("gatehouse"))
        .body(UpstreamBody::Empty)
        .map_err(|e| e.to_string())?;
    let p = ProxyAction {
        spec: ProxySpec {
            upstream: group.name.to_string(),
            strip_prefix: None,
            replace_prefix: None,
            host_rewrite: None,
            preserve_host: false,
            forwarded: false,
            upstream_response_timeout: Duration::from_secs(10),
        },
        group,
        host_rewrite: None,
    };
    let mut out = Outgoing {
        req: Some(req),
        deadline: None,
        key: None,
        preferred: None,
        offered: None,
    };
    let x = exchange(&p, &mut out).await.map_err(|e| e.message())?;
    let status = x.resp.status().as_u16();
    let cache_control = x
        .resp
        .headers()
        .get(header::CACHE_CONTROL)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let mut body = x.resp.into_body();
    let mut bytes = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| format!("reading the body: {e}"))?;
        if let Some(d) = frame.data_ref() {
            if bytes.len() + d.len() > max_body {
                return Err(format!("body is over {max_body} bytes"));
            }
            bytes.extend_from_slice(d);
        }
    }
    body.release();
    drop(x.in_flight);
    Ok(Fetched {
        status,
        cache_control,
        body: bytes.freeze(),
    })
}
