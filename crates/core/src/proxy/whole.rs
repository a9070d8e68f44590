//! Whole bodies for the filters that asked for them (see `filter`'s body hooks): the
//! request body read up to the route's buffer limit (413 past it), the upstream's
//! response body likewise (502 past it, its connection then closed) and handed back
//! to the pool once read to its end, and the lengths fixed up after the hooks.

use crate::body::{BodyTooLarge, UpstreamBody};
use crate::error::{ErrorKind, ProxyError};
use crate::http::client::Received;
use bytes::{Bytes, BytesMut};
use http::{header, HeaderMap, HeaderValue};
use http_body_util::BodyExt;
use tokio::time::Instant;

/// Reads a request body whole (its limit is the body's own, see [`UpstreamBody`]).
pub(super) async fn request(body: UpstreamBody) -> Result<Bytes, ProxyError> {
    let collected = body.collect().await.map_err(|e| {
        let kind = if e.is::<BodyTooLarge>() {
            ErrorKind::PayloadTooLarge
        } else {
            ErrorKind::BadRequest
        };
        ProxyError::new(kind, "reading the request body failed").with_source(e)
    })?;
    Ok(collected.to_bytes())
}

/// Reads an upstream's response body whole, at most `limit` bytes, by `until`; the
/// connection goes back to its pool only when the body was read to its end.
pub(super) async fn response(
    mut body: Received,
    limit: u64,
    until: Instant,
) -> Result<Bytes, ProxyError> {
    let read = async {
        let mut buf = BytesMut::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| {
                ProxyError::new(
                    ErrorKind::UpstreamProtocol,
                    "reading the upstream's body failed",
                )
                .with_source(e)
            })?;
            if let Ok(d) = frame.into_data() {
                if (buf.len() + d.len()) as u64 > limit {
                    let msg = format!("the upstream's body is over the route's body_buffer_limit of {limit} bytes");
                    return Err(ProxyError::new(ErrorKind::UpstreamProtocol, msg));
                }
                buf.extend_from_slice(&d);
            }
        }
        body.release();
        Ok(buf.freeze())
    };
    match tokio::time::timeout_at(until, read).await {
        Ok(r) => r,
        Err(_) => Err(ProxyError::new(
            ErrorKind::UpstreamTimeout,
            "the upstream's body did not arrive in time",
        )),
    }
}

/// Describes a body the hooks may have replaced: its length, no transfer coding. A
/// request that had no body and still has none is left as it was.
pub(super) fn set_length(headers: &mut HeaderMap, len: usize, had_body: bool) {
    headers.remove(header::TRANSFER_ENCODING);
    if len == 0 && !had_body {
        return;
    }
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
}
