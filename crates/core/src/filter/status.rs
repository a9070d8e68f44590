//! Upstream status mapping (`404` -> `410`) and fixed error pages per route, like
//! nginx's `error_page` with `proxy_intercept_errors`: the upstream's body is read
//! (bounded, so its connection can be reused) and replaced by the page. Pages apply to
//! the status after mapping, and to Gatehouse's own error replies on the route too (an
//! upstream that cannot be reached, a timeout), as nginx's `error_page` does.

use super::{Filter, FilterCtx, Stage};
use crate::error::ProxyError;
use bytes::Bytes;
use gatehouse_config::spec::StatusSpec;
use http::{header, response, HeaderValue, StatusCode};

pub struct StatusRules {
    map: Vec<(StatusCode, StatusCode)>,
    pages: Vec<Page>,
}

struct Page {
    status: Option<u16>,
    class: Option<u16>,
    body: Bytes,
    content_type: HeaderValue,
}

impl StatusRules {
    pub fn new(spec: &StatusSpec) -> Self {
        let code = |s: u16| StatusCode::from_u16(s).ok();
        StatusRules {
            map: spec
                .map
                .iter()
                .filter_map(|(f, t)| Some((code(*f)?, code(*t)?)))
                .collect(),
            pages: spec
                .pages
                .iter()
                .filter_map(|p| {
                    Some(Page {
                        status: p.status,
                        class: p.class,
                        body: Bytes::from(p.body.clone()),
                        content_type: HeaderValue::from_str(&p.content_type).ok()?,
                    })
                })
                .collect(),
        }
    }

    /// The page for `status`: an exact one before a class.
    fn page(&self, status: StatusCode) -> Option<&Page> {
        let s = status.as_u16();
        self.pages
            .iter()
            .find(|p| p.status == Some(s))
            .or_else(|| self.pages.iter().find(|p| p.class == Some(s / 100)))
    }
}

impl Filter for StatusRules {
    fn name(&self) -> &'static str {
        "status"
    }

    fn stage(&self) -> Stage {
        Stage::Transform
    }

    fn on_response(&self, head: &mut response::Parts, _ctx: &FilterCtx<'_>) {
        if let Some((_, to)) = self.map.iter().find(|(from, _)| *from == head.status) {
            head.status = *to;
        }
    }

    fn body_sides(&self) -> (bool, bool) {
        (false, !self.pages.is_empty())
    }

    fn error_page(&self, status: StatusCode) -> Option<(Bytes, HeaderValue)> {
        self.page(status)
            .map(|p| (p.body.clone(), p.content_type.clone()))
    }

    fn response_body(&self, head: &response::Parts) -> bool {
        self.page(head.status).is_some()
    }

    fn on_response_body(
        &self,
        head: &mut response::Parts,
        body: &mut Bytes,
        _ctx: &FilterCtx<'_>,
    ) -> Result<(), ProxyError> {
        if let Some(p) = self.page(head.status) {
            *body = p.body.clone();
            head.headers
                .insert(header::CONTENT_TYPE, p.content_type.clone());
            // The upstream's validators and encoding described the body it sent.
            for h in [
                header::CONTENT_ENCODING,
                header::ETAG,
                header::LAST_MODIFIED,
            ] {
                head.headers.remove(h);
            }
        }
        Ok(())
    }
}
