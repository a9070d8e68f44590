//! A route validated by an OpenAPI document (`openapi = "spec.yaml"`): the request's
//! path (below the document's server base path) and method pick the operation, and
//! that operation's parameters and JSON request body are checked as `validate` checks
//! them. A path the document does not have gets 404, a method it does not declare
//! there 405 with `Allow`. The document is read when the config is compiled, so a
//! reload picks up its edits.

use super::validate::Validate;
use super::{client_uri, BuildCtx, Filter, FilterCtx, FilterFuture, Flow, Stage};
use crate::error::json_reply;
use bytes::Bytes;
use gatehouse_config::openapi::Api;
use gatehouse_config::spec::PathMatch;
use http::{header, request, HeaderValue, Method, StatusCode};

pub struct OpenApi {
    base: String,
    ops: Vec<Operation>,
    bodies: bool,
}

struct Operation {
    label: String,
    method: Method,
    path: PathMatch,
    specificity: usize,
    check: Validate,
}

/// Which operation a request matched, left in its extensions for the body hook.
#[derive(Clone, Copy)]
struct Matched(usize);

/// What a path and method found in the document.
enum Found<'p> {
    /// The operation, and the path below the base that its parameters are read from.
    Operation(usize, &'p str),
    /// The path is there, not with this method: the methods it has.
    Method(Vec<Method>),
    Nothing,
}

impl OpenApi {
    pub fn new(api: &Api, ctx: &BuildCtx) -> Self {
        let ops: Vec<Operation> = api
            .operations
            .iter()
            .map(|o| Operation {
                label: o.label.clone(),
                method: o.method.clone(),
                path: o.path.clone(),
                specificity: o.specificity,
                check: Validate::new(&o.validate, ctx),
            })
            .collect();
        OpenApi {
            base: api.base.clone(),
            bodies: ops.iter().any(|o| o.check.body_sides().0),
            ops,
        }
    }

    /// The operation for `method` at `path` (the client's path): the most specific
    /// of those whose path matches; HEAD falls back to GET.
    fn find<'p>(&self, method: &Method, path: &'p str) -> Found<'p> {
        let Some(rel) = below(&self.base, path) else {
            return Found::Nothing;
        };
        let matching = || {
            self.ops
                .iter()
                .enumerate()
                .filter(|(_, op)| crate::route::path_matches(&op.path, rel))
        };
        let mut best: Option<usize> = None;
        let mut head_as_get: Option<usize> = None;
        for (i, op) in matching() {
            let better =
                |b: Option<usize>| b.is_none_or(|b| self.ops[b].specificity < op.specificity);
            if op.method == *method && better(best) {
                best = Some(i);
            } else if *method == Method::HEAD && op.method == Method::GET && better(head_as_get) {
                head_as_get = Some(i);
            }
        }
        if let Some(i) = best.or(head_as_get) {
            return Found::Operation(i, rel);
        }
        // Refused: only now the methods the path has are gathered, for `Allow`.
        let mut methods: Vec<Method> = Vec::new();
        for (_, op) in matching() {
            if !methods.contains(&op.method) {
                methods.push(op.method.clone());
            }
        }
        if methods.is_empty() {
            Found::Nothing
        } else {
            Found::Method(methods)
        }
    }
}

/// `path` below the base path (`/v1/pets` below `/v1` is `/pets`), `None` when it is
/// not under it.
fn below<'p>(base: &str, path: &'p str) -> Option<&'p str> {
    if base.is_empty() {
        return Some(path);
    }
    match path.strip_prefix(base)? {
        "" => Some("/"),
        rest if rest.starts_with('/') => Some(rest),
        _ => None,
    }
}

impl Filter for OpenApi {
    fn name(&self) -> &'static str {
        "openapi"
    }

    fn stage(&self) -> Stage {
        Stage::Validate
    }

    fn has_request_hook(&self) -> bool {
        true
    }

    fn wants_original_uri(&self) -> bool {
        true
    }

    fn on_request<'a>(
        &'a self,
        head: &'a mut request::Parts,
        ctx: &'a FilterCtx<'a>,
    ) -> FilterFuture<'a> {
        let flow = match self.find(&head.method, client_uri(head).path()) {
            Found::Operation(i, rel) => {
                let op = &self.ops[i];
                let found = op.check.head_violations(head, rel);
                // Only the body hook reads it, and only an operation with a body schema
                // has one.
                if op.check.body_sides().0 {
                    head.extensions.insert(Matched(i));
                }
                if found.is_empty() {
                    Flow::Continue
                } else {
                    tracing::debug!(route = ctx.route, operation = %op.label, "request refused by its OpenAPI operation");
                    op.check.refuse(found, ctx)
                }
            }
            Found::Method(methods) => {
                let allow: Vec<&str> = methods.iter().map(Method::as_str).collect();
                let allow = allow.join(", ");
                let msg = format!(
                    "the API has no {} operation at this path; it has {allow}",
                    head.method
                );
                let mut resp = json_reply(
                    "method_not_allowed",
                    StatusCode::METHOD_NOT_ALLOWED,
                    &msg,
                    ctx.request_id,
                    None,
                );
                if let Ok(v) = HeaderValue::from_str(&allow) {
                    resp.headers_mut().insert(header::ALLOW, v);
                }
                Flow::Respond(Box::new(resp))
            }
            Found::Nothing => Flow::Respond(Box::new(json_reply(
                "unknown_operation",
                StatusCode::NOT_FOUND,
                "the API has no operation at this path",
                ctx.request_id,
                None,
            ))),
        };
        FilterFuture::ready(flow)
    }

    fn body_sides(&self) -> (bool, bool) {
        (self.bodies, false)
    }

    fn request_body(&self, head: &request::Parts) -> bool {
        self.matched(head)
            .is_some_and(|op| op.check.request_body(head))
    }

    fn on_request_body<'a>(
        &'a self,
        head: &'a mut request::Parts,
        body: &'a mut Bytes,
        ctx: &'a FilterCtx<'a>,
    ) -> FilterFuture<'a> {
        match head.extensions.get::<Matched>().copied() {
            Some(Matched(i)) => self.ops[i].check.on_request_body(head, body, ctx),
            None => FilterFuture::ready(Flow::Continue),
        }
    }
}

impl OpenApi {
    fn matched(&self, head: &request::Parts) -> Option<&Operation> {
        let Matched(i) = head.extensions.get::<Matched>().copied()?;
        self.ops.get(i)
    }
}

#[cfg(test)]
mod tests {
    use super::below;

    #[test]
    fn paths_below_the_base() {
        assert_eq!(below("", "/pets"), Some("/pets"));
        assert_eq!(below("/v1", "/v1/pets"), Some("/pets"));
        assert_eq!(below("/v1", "/v1"), Some("/"));
        assert_eq!(below("/v1", "/v10/pets"), None);
        assert_eq!(below("/v1", "/pets"), None);
    }
}
