//! The one request-path error type, [`ProxyError`], and the single function that turns
//! any of them into a local reply: a status from one exhaustive `match`, and a JSON body
//! that carries the request id.

use crate::body::ResponseBody;
use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};

/// What went wrong; [`ErrorKind::status`] decides the status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// No route matched the request.
    NoRoute,
    /// The request body is larger than the route or listener allows.
    PayloadTooLarge,
    /// The client sent something that cannot be proxied.
    BadRequest,
    /// A method Gatehouse never forwards (CONNECT, TRACE).
    MethodNotAllowed,
    /// A feature of the request Gatehouse does not implement (a transfer coding).
    NotImplemented,
    /// An `Expect` other than 100-continue.
    ExpectationFailed,
    /// The request head is larger than the listener allows.
    HeadTooLarge,
    /// The request-target is longer than hyper reads.
    UriTooLong,
    /// The upstream could not be reached (refused, reset, DNS, TLS).
    UpstreamConnect,
    /// The upstream broke the protocol or closed mid-response.
    UpstreamProtocol,
    /// Connect or response deadline passed.
    UpstreamTimeout,
    /// The whole-request deadline passed.
    RequestTimeout,
    /// The upstream group has no endpoint to send to, or all are at capacity.
    NoEndpoint,
    /// The listener or route was removed by a reload mid-connection.
    Unavailable,
    /// No valid credential (401, with a `WWW-Authenticate` challenge).
    Unauthorized,
    /// Authenticated, or from an address, that this route does not let in.
    Forbidden,
    /// A credential could not be checked: the issuer's keys are not yet known.
    AuthUnavailable,
    /// A rate, concurrency or quota limit refused the request (429, `Retry-After`).
    TooManyRequests,
    /// A `fail_closed` limit could not reach its store.
    LimitUnavailable,
    /// A broken internal invariant.
    Internal,
}

/// Which side caused an error: used in logs and to decide retries later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Client,
    Upstream,
    Internal,
}

/// An error on the request path.
#[derive(Debug, thiserror::Error)]
#[error("{kind:?}: {context}")]
pub struct ProxyError {
    pub kind: ErrorKind,
    pub side: Side,
    /// Safe to send the request again elsewhere (nothing reached the upstream).
    pub retryable: bool,
    /// Close the client's HTTP/1 connection after the reply: what follows the refused
    /// head on it cannot be trusted to be a request.
    pub close: bool,
    pub context: String,
    /// When a 503 may be tried again (`Retry-After`); one second when unset.
    pub retry_after: Option<std::time::Duration>,
    #[source]
    pub source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

// === impl ErrorKind ===

impl ErrorKind {
    pub fn status(self) -> StatusCode {
        match self {
            ErrorKind::NoRoute => StatusCode::NOT_FOUND,
            ErrorKind::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorKind::BadRequest => StatusCode::BAD_REQUEST,
            ErrorKind::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorKind::NotImplemented => StatusCode::NOT_IMPLEMENTED,
            ErrorKind::ExpectationFailed => StatusCode::EXPECTATION_FAILED,
            ErrorKind::HeadTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ErrorKind::UriTooLong => StatusCode::URI_TOO_LONG,
            ErrorKind::UpstreamConnect | ErrorKind::UpstreamProtocol => StatusCode::BAD_GATEWAY,
            ErrorKind::UpstreamTimeout | ErrorKind::RequestTimeout => StatusCode::GATEWAY_TIMEOUT,
            ErrorKind::NoEndpoint | ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorKind::Forbidden => StatusCode::FORBIDDEN,
            ErrorKind::AuthUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            ErrorKind::LimitUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Stable machine-readable code put in the JSON body.
    pub fn code(self) -> &'static str {
        match self {
            ErrorKind::NoRoute => "no_route",
            ErrorKind::PayloadTooLarge => "payload_too_large",
            ErrorKind::BadRequest => "bad_request",
            ErrorKind::MethodNotAllowed => "method_not_allowed",
            ErrorKind::NotImplemented => "not_implemented",
            ErrorKind::ExpectationFailed => "expectation_failed",
            ErrorKind::HeadTooLarge => "request_header_fields_too_large",
            ErrorKind::UriTooLong => "uri_too_long",
            ErrorKind::UpstreamConnect => "upstream_connect_failed",
            ErrorKind::UpstreamProtocol => "upstream_protocol_error",
            ErrorKind::UpstreamTimeout => "upstream_timeout",
            ErrorKind::RequestTimeout => "request_timeout",
            ErrorKind::NoEndpoint => "no_endpoint",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Unauthorized => "unauthorized",
            ErrorKind::Forbidden => "forbidden",
            ErrorKind::AuthUnavailable => "auth_unavailable",
            ErrorKind::TooManyRequests => "rate_limited",
            ErrorKind::LimitUnavailable => "rate_limit_unavailable",
            ErrorKind::Internal => "internal_error",
        }
    }

    fn side(self) -> Side {
        match self {
            ErrorKind::NoRoute
            | ErrorKind::PayloadTooLarge
            | ErrorKind::BadRequest
            | ErrorKind::MethodNotAllowed
            | ErrorKind::NotImplemented
            | ErrorKind::ExpectationFailed
            | ErrorKind::HeadTooLarge
            | ErrorKind::UriTooLong
            | ErrorKind::Unauthorized
            | ErrorKind::TooManyRequests
            | ErrorKind::Forbidden => Side::Client,
            ErrorKind::UpstreamConnect
            | ErrorKind::UpstreamProtocol
            | ErrorKind::UpstreamTimeout
            | ErrorKind::RequestTimeout
            | ErrorKind::NoEndpoint => Side::Upstream,
            ErrorKind::Unavailable
            | ErrorKind::AuthUnavailable
            | ErrorKind::LimitUnavailable
            | ErrorKind::Internal => Side::Internal,
        }
    }
}

// === impl ProxyError ===

impl ProxyError {
    pub fn new(kind: ErrorKind, context: impl Into<String>) -> Self {
        ProxyError {
            kind,
            side: kind.side(),
            retryable: false,
            close: false,
            context: context.into(),
            retry_after: None,
            source: None,
        }
    }

    pub fn with_source(mut self, e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        self.source = Some(e.into());
        self
    }

    pub fn retry_after(mut self, after: Option<std::time::Duration>) -> Self {
        self.retry_after = after;
        self
    }

    pub fn close(mut self) -> Self {
        self.close = true;
        self
    }

    pub fn retryable(mut self) -> Self {
        self.retryable = true;
        self
    }

    /// The message put in the reply: the context and the first cause, never internals.
    pub fn message(&self) -> String {
        match &self.source {
            Some(s) => format!("{}: {s}", self.context),
            None => self.context.clone(),
        }
    }
}

/// The JSON body of a local reply, newline-terminated.
pub fn json_body(kind: ErrorKind, message: &str, request_id: &HeaderValue) -> Vec<u8> {
    json_body_with(kind.code(), kind.status(), message, request_id, None)
}

/// The JSON body of a local reply with any code and status, and extra fields (a
/// validation's `violations`) after the usual ones.
pub fn json_body_with(
    code: &str,
    status: StatusCode,
    message: &str,
    request_id: &HeaderValue,
    extra: Option<(&str, serde_json::Value)>,
) -> Vec<u8> {
    let mut body = serde_json::json!({
        "error": code,
        "message": message,
        "status": status.as_u16(),
        "request_id": request_id.to_str().unwrap_or_default(),
    });
    if let (Some((k, v)), Some(map)) = (extra, body.as_object_mut()) {
        map.insert(k.to_string(), v);
    }
    let mut bytes = serde_json::to_vec(&body).unwrap_or_default();
    bytes.push(b'\n');
    bytes
}

/// Builds a JSON local reply: `{"error": code, "message": ..., "status": n, "request_id": ...}`.
pub fn local_reply(
    kind: ErrorKind,
    message: &str,
    request_id: &HeaderValue,
) -> Response<ResponseBody> {
    json_reply(kind.code(), kind.status(), message, request_id, None)
}

/// A JSON local reply with any code and status (see [`json_body_with`]).
pub fn json_reply(
    code: &str,
    status: StatusCode,
    message: &str,
    request_id: &HeaderValue,
    extra: Option<(&str, serde_json::Value)>,
) -> Response<ResponseBody> {
    let bytes = json_body_with(code, status, message, request_id, extra);
    let mut resp = Response::new(ResponseBody::full(Bytes::from(bytes)));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(
        crate::http::headers::X_REQUEST_ID,
        crate::http::headers::unindexed(request_id),
    );
    resp
}

/// The local reply for `e`: [`local_reply`] plus, on a 503, `Retry-After` in whole
/// seconds rounded up (at least 1), and on a 405 the `Allow` it must carry.
pub fn error_reply(e: &ProxyError, request_id: &HeaderValue) -> Response<ResponseBody> {
    let mut resp = local_reply(e.kind, &e.message(), request_id);
    if e.kind == ErrorKind::MethodNotAllowed {
        resp.headers_mut().insert(
            header::ALLOW,
            HeaderValue::from_static(crate::http::edge::ALLOW),
        );
    }
    if matches!(
        resp.status(),
        StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS
    ) {
        let after = e
            .retry_after
            .map_or(1, |d| d.as_millis().div_ceil(1000).max(1));
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(after as u64));
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_maps_to_its_status() {
        assert_eq!(ErrorKind::NoRoute.status(), 404);
        assert_eq!(ErrorKind::UpstreamConnect.status(), 502);
        assert_eq!(ErrorKind::NoEndpoint.status(), 503);
        assert_eq!(ErrorKind::UpstreamTimeout.status(), 504);
        assert_eq!(ErrorKind::PayloadTooLarge.status(), 413);
    }

    #[test]
    fn reply_carries_request_id_and_code() {
        let id = HeaderValue::from_static("abc");
        let e = ProxyError::new(ErrorKind::NoEndpoint, "none");
        let r = error_reply(&e, &id);
        assert_eq!(r.status(), 503);
        assert_eq!(r.headers()["x-request-id"], "abc");
        assert_eq!(r.headers()["retry-after"], "1");
        let e = e.retry_after(Some(std::time::Duration::from_millis(4_200)));
        assert_eq!(error_reply(&e, &id).headers()["retry-after"], "5");
        let e = ProxyError::new(ErrorKind::UpstreamConnect, "refused");
        assert!(error_reply(&e, &id).headers().get("retry-after").is_none());
    }
}
