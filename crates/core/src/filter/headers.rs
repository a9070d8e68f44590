//! Header rules: set (replace), add (append) and remove headers on the request sent
//! upstream or on the response sent to the client, like nginx's `proxy_set_header` /
//! `add_header` and Envoy's `request_headers_to_add`.

use super::{Filter, FilterCtx, FilterFuture, Flow, Stage};
use gatehouse_config::spec::HeaderRulesSpec;
use http::{request, response, HeaderMap, HeaderName, HeaderValue};

/// Which side the rules edit.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Request,
    Response,
}

/// Compiled header edits.
pub struct HeaderRules {
    side: Side,
    set: Vec<(HeaderName, HeaderValue)>,
    add: Vec<(HeaderName, HeaderValue)>,
    remove: Vec<HeaderName>,
}

impl HeaderRules {
    pub fn request(spec: &HeaderRulesSpec) -> Self {
        Self::new(Side::Request, spec)
    }

    pub fn response(spec: &HeaderRulesSpec) -> Self {
        Self::new(Side::Response, spec)
    }

    fn new(side: Side, spec: &HeaderRulesSpec) -> Self {
        // Validation already rejected bad names and values; skip rather than panic.
        let pairs = |v: &[(String, String)]| {
            v.iter()
                .filter_map(|(k, v)| {
                    Some((
                        HeaderName::from_bytes(k.as_bytes()).ok()?,
                        HeaderValue::from_str(v).ok()?,
                    ))
                })
                .collect()
        };
        HeaderRules {
            side,
            set: pairs(&spec.set),
            add: pairs(&spec.add),
            remove: spec
                .remove
                .iter()
                .filter_map(|n| HeaderName::from_bytes(n.as_bytes()).ok())
                .collect(),
        }
    }

    /// Remove first, then set, then add, so `remove = ["x"]` with `add = { x = ... }`
    /// leaves exactly the added value.
    pub fn apply(&self, headers: &mut HeaderMap) {
        for n in &self.remove {
            headers.remove(n);
        }
        for (n, v) in &self.set {
            headers.insert(n.clone(), v.clone());
        }
        for (n, v) in &self.add {
            headers.append(n.clone(), v.clone());
        }
    }
}

impl Filter for HeaderRules {
    fn name(&self) -> &'static str {
        match self.side {
            Side::Request => "request_headers",
            Side::Response => "response_headers",
        }
    }

    fn stage(&self) -> Stage {
        Stage::Transform
    }

    fn has_request_hook(&self) -> bool {
        self.side == Side::Request
    }

    fn on_request<'a>(
        &'a self,
        head: &'a mut request::Parts,
        _ctx: &'a FilterCtx<'a>,
    ) -> FilterFuture<'a> {
        self.apply(&mut head.headers);
        Box::pin(std::future::ready(Flow::Continue))
    }

    fn on_response(&self, head: &mut response::Parts, _ctx: &FilterCtx<'_>) {
        if self.side == Side::Response {
            self.apply(&mut head.headers);
        }
    }
}
