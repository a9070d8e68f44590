//! Answers made by the gateway itself: fixed responses, redirects, and the
//! HTTP -> HTTPS redirect of a `redirect` listener.

use crate::body::ResponseBody;
use crate::runtime::Respond;
use gatehouse_config::spec::RedirectSpec;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};

pub(super) fn respond(r: &Respond) -> Response<ResponseBody> {
    let mut resp = Response::new(ResponseBody::full(r.body.clone()));
    *resp.status_mut() = r.status;
    *resp.headers_mut() = r.headers.clone();
    resp
}

/// A route's redirect; `{path}` and `{query}` in the target take the request's.
pub(super) fn redirect<B>(r: &RedirectSpec, req: &Request<B>) -> Response<ResponseBody> {
    let mut to = r.to.replace("{path}", req.uri().path());
    if to.contains("{query}") {
        to = to.replace("{query}", req.uri().query().unwrap_or(""));
    }
    location(
        StatusCode::from_u16(r.status).unwrap_or(StatusCode::FOUND),
        &to,
    )
}

/// `https://host[:port]/path?query`, 301 for GET and HEAD, 308 (method kept) otherwise.
pub(super) fn https_redirect<B>(req: &Request<B>, host: &str, port: u16) -> Response<ResponseBody> {
    let pq = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let to = if port == 443 {
        format!("https://{host}{pq}")
    } else {
        format!("https://{host}:{port}{pq}")
    };
    let status = if req.method() == Method::GET || req.method() == Method::HEAD {
        StatusCode::MOVED_PERMANENTLY
    } else {
        StatusCode::PERMANENT_REDIRECT
    };
    location(status, &to)
}

/// The answer to an OPTIONS that ends here (`OPTIONS *`, or Max-Forwards 0): what
/// Gatehouse forwards, and no body.
pub(super) fn options() -> Response<ResponseBody> {
    let mut resp = Response::new(ResponseBody::empty());
    let h = resp.headers_mut();
    h.insert(
        header::ALLOW,
        HeaderValue::from_static(crate::http::edge::ALLOW),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    resp
}

fn location(status: StatusCode, to: &str) -> Response<ResponseBody> {
    let mut resp = Response::new(ResponseBody::empty());
    *resp.status_mut() = status;
    if let Ok(v) = HeaderValue::from_str(to) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    resp
}
