//! Header rules: set (replace), add (append) and remove headers on the request sent
//! upstream or on the response sent to the client, like nginx's `proxy_set_header` /
//! `add_header` and Envoy's `request_headers_to_add`.

use super::captures::PathCaptures;
use super::client_uri;
use super::template::{render, Vars};
use super::{Filter, FilterCtx, FilterFuture, Flow, Stage};
use gatehouse_config::spec::{parse_template_with, HeaderRulesSpec, TemplatePart, TemplateVar};
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
    set: Vec<(HeaderName, Text)>,
    add: Vec<(HeaderName, Text)>,
    remove: Vec<HeaderName>,
    /// Whether any value is a template (rendered per message).
    templated: bool,
    /// The route's path parameters, when a value names one.
    captures: Option<PathCaptures>,
}

/// A header value: fixed, or a template (`{client_ip}`, `{header.x-id}`).
enum Text {
    Fixed(HeaderValue),
    Template(Vec<TemplatePart>),
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
        let pairs = |v: &[(String, String)]| -> Vec<(HeaderName, Text)> {
            v.iter()
                .filter_map(|(k, v)| {
                    let text = match parse_template_with(v, &spec.capture_names).ok()?.as_slice() {
                        [] => Text::Fixed(HeaderValue::from_static("")),
                        // `{{` and `}}` unescaped.
                        [TemplatePart::Text(t)] => Text::Fixed(HeaderValue::from_str(t).ok()?),
                        parts => Text::Template(parts.to_vec()),
                    };
                    Some((HeaderName::from_bytes(k.as_bytes()).ok()?, text))
                })
                .collect()
        };
        let (set, add) = (pairs(&spec.set), pairs(&spec.add));
        let templated = set
            .iter()
            .chain(&add)
            .any(|(_, t)| matches!(t, Text::Template(_)));
        let names_capture = set.iter().chain(&add).any(|(_, t)| match t {
            Text::Template(parts) => parts
                .iter()
                .any(|p| matches!(p, TemplatePart::Var(TemplateVar::Param(_)))),
            Text::Fixed(_) => false,
        });
        HeaderRules {
            side,
            templated,
            captures: names_capture.then(|| PathCaptures::new(&spec.captures)),
            set,
            add,
            remove: spec
                .remove
                .iter()
                .filter_map(|n| HeaderName::from_bytes(n.as_bytes()).ok())
                .collect(),
        }
    }

    /// Remove first, then set, then add, so `remove = ["x"]` with `add = { x = ... }`
    /// leaves exactly the added value.
    pub fn apply(&self, headers: &mut HeaderMap, vars: Option<&Vars>) {
        // Templates read the message as it came, before any edit here.
        let value = |t: &Text| match (t, vars) {
            (Text::Fixed(v), _) => Some(v.clone()),
            (Text::Template(parts), Some(vars)) => HeaderValue::from_str(&render(parts, vars)).ok(),
            (Text::Template(_), None) => None,
        };
        let set: Vec<_> = self
            .set
            .iter()
            .filter_map(|(n, t)| Some((n, value(t)?)))
            .collect();
        let add: Vec<_> = self
            .add
            .iter()
            .filter_map(|(n, t)| Some((n, value(t)?)))
            .collect();
        for n in &self.remove {
            headers.remove(n);
        }
        for (n, v) in set {
            headers.insert(n.clone(), v);
        }
        for (n, v) in add {
            headers.append(n.clone(), v);
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

    fn wants_original_uri(&self) -> bool {
        self.captures.is_some()
    }

    fn reads_caller_on_response(&self) -> bool {
        self.side == Side::Response && self.templated
    }

    fn on_request<'a>(
        &'a self,
        head: &'a mut request::Parts,
        ctx: &'a FilterCtx<'a>,
    ) -> FilterFuture<'a> {
        if self.templated {
            let copy = head.headers.clone();
            // Parameters of the client's path, before a prefix strip or rewrite.
            let params = self
                .captures
                .as_ref()
                .and_then(|c| c.of(client_uri(head).path()));
            // Field by field: the head's headers are edited while the others are read.
            let vars = Vars {
                ctx,
                method: Some(&head.method),
                uri: Some(&head.uri),
                headers: &copy,
                caller: head.extensions.get::<crate::consumer::Caller>(),
                params: params.as_deref().unwrap_or(&[]),
            };
            // The vars read the copy: `head.headers` is edited.
            self.apply(&mut head.headers, Some(&vars));
        } else {
            self.apply(&mut head.headers, None);
        }
        FilterFuture::ready(Flow::Continue)
    }

    fn on_response(&self, head: &mut response::Parts, ctx: &FilterCtx<'_>) {
        if self.side != Side::Response {
            return;
        }
        if self.templated {
            let copy = head.headers.clone();
            let vars = Vars::response(ctx, &copy, &head.extensions);
            self.apply(&mut head.headers, Some(&vars));
        } else {
            self.apply(&mut head.headers, None);
        }
    }
}
