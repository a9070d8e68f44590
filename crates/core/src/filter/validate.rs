//! Request validation by JSON Schema (drafts 4 to 2020-12, picked by `$schema`):
//! the body, and query parameters, headers and path parameters against object schemas
//! whose properties name them (their text read as the type each property declares). A request that
//! does not match gets 400 listing every violation by where it is and its JSON Pointer.
//! A response schema is report-only: mismatches are logged and counted, never refused.
//! Schemas are compiled once per config generation.

use super::captures::PathCaptures;
use super::json::is_json;
use super::{client_uri, BuildCtx, Filter, FilterCtx, FilterFuture, Flow, Stage};
use crate::error::{json_reply, ProxyError};
use bytes::Bytes;
use gatehouse_config::spec::ValidateSpec;
use http::{request, response, StatusCode};
use jsonschema::Validator;
use prometheus_client::metrics::counter::Counter;
use serde_json::{Map, Value};

/// The most violations listed in one reply.
const MAX_LISTED: usize = 100;

pub struct Validate {
    body: Option<Validator>,
    body_required: bool,
    query: Option<Params>,
    headers: Option<Params>,
    /// Path parameters: where they come from, and their schema.
    path: Option<(PathCaptures, Params)>,
    response: Option<Validator>,
    refused: Counter,
    reported: Counter,
}

/// An object schema over named text values, and the type each property declares.
struct Params {
    validator: Validator,
    kinds: Vec<(String, Kind)>,
}

/// How a parameter's text is read before it is validated.
#[derive(Clone, Copy)]
enum Kind {
    Text,
    Integer,
    Number,
    Boolean,
    /// Every value of a repeated parameter, each read as the items' type.
    List(Scalar),
}

#[derive(Clone, Copy)]
enum Scalar {
    Text,
    Integer,
    Number,
    Boolean,
}

/// One way the request failed its schema.
pub(super) struct Violation {
    place: &'static str,
    at: String,
    error: String,
}

impl Validate {
    pub fn new(spec: &ValidateSpec, ctx: &BuildCtx) -> Self {
        // The config crate compiled each schema already; one that fails here is skipped.
        let compile =
            |s: &Option<Value>| s.as_ref().and_then(|s| jsonschema::validator_for(s).ok());
        Validate {
            body: compile(&spec.body),
            body_required: spec.body_required,
            query: spec.query.as_ref().and_then(Params::new),
            headers: spec.headers.as_ref().and_then(Params::new),
            path: spec
                .path
                .as_ref()
                .and_then(Params::new)
                .map(|p| (PathCaptures::new(&spec.path_source), p)),
            response: compile(&spec.response_body),
            refused: ctx.metrics.validation_counter(ctx.route, "request"),
            reported: ctx.metrics.validation_counter(ctx.route, "response"),
        }
    }

    /// Every violation of the head: query, headers, path parameters.
    /// `path` is the client's path as the path parameters are found in it.
    pub(super) fn head_violations(&self, head: &request::Parts, path: &str) -> Vec<Violation> {
        let mut found = Vec::new();
        if let Some(q) = &self.query {
            let raw = head.uri.query().unwrap_or("");
            let pairs = form_urlencoded::parse(raw.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()));
            violations(&q.validator, &q.object(pairs), "query", &mut found);
        }
        if let Some(h) = &self.headers {
            let pairs = head
                .headers
                .iter()
                .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())));
            violations(&h.validator, &h.object(pairs), "header", &mut found);
        }
        if let Some((captures, p)) = &self.path {
            let pairs = captures
                .of(path)
                .unwrap_or_default()
                .into_iter()
                .map(|(n, v)| {
                    let text = percent_encoding::percent_decode_str(&v).decode_utf8_lossy();
                    (n, text.into_owned())
                });
            violations(&p.validator, &p.object(pairs), "path", &mut found);
        }
        found
    }

    pub(super) fn refuse(&self, found: Vec<Violation>, ctx: &FilterCtx<'_>) -> Flow {
        self.refused.inc();
        let n = found.len();
        let listed: Vec<Value> = found
            .into_iter()
            .take(MAX_LISTED)
            .map(|v| serde_json::json!({"in": v.place, "at": v.at, "error": v.error}))
            .collect();
        let msg = format!(
            "the request does not match the route's schema ({n} violation{})",
            if n == 1 { "" } else { "s" }
        );
        let resp = json_reply(
            "invalid_request",
            StatusCode::BAD_REQUEST,
            &msg,
            ctx.request_id,
            Some(("violations", Value::Array(listed))),
        );
        Flow::Respond(Box::new(resp))
    }
}

/// Every error of `doc` against `v`, located.
fn violations(v: &Validator, doc: &Value, place: &'static str, out: &mut Vec<Violation>) {
    for e in v.iter_errors(doc) {
        let mut at = e.instance_path().to_string();
        // A missing property is pointed at where it should be, not at its parent.
        if let jsonschema::error::ValidationErrorKind::Required {
            property: Value::String(name),
        } = e.kind()
        {
            at.push('/');
            at.push_str(&name.replace('~', "~0").replace('/', "~1"));
        }
        out.push(Violation {
            place,
            at,
            error: e.masked().to_string(),
        });
    }
}

// === impl Params ===

impl Params {
    fn new(schema: &Value) -> Option<Params> {
        let validator = jsonschema::validator_for(schema).ok()?;
        let props = schema.get("properties")?.as_object()?;
        let kinds = props
            .iter()
            .map(|(name, p)| (name.clone(), Kind::of(p)))
            .collect();
        Some(Params { validator, kinds })
    }

    /// The values as a JSON object: declared ones read as their type, others as text.
    fn object(&self, pairs: impl Iterator<Item = (String, String)>) -> Value {
        let mut out = Map::new();
        for (name, text) in pairs {
            let kind = self
                .kinds
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(&name))
                .map_or(Kind::Text, |(_, k)| *k);
            match kind {
                Kind::List(s) => {
                    let entry = out.entry(name).or_insert_with(|| Value::Array(Vec::new()));
                    if let Value::Array(a) = entry {
                        a.push(s.read(text));
                    }
                }
                Kind::Text => {
                    out.entry(name).or_insert(Value::String(text));
                }
                Kind::Integer => {
                    out.entry(name)
                        .or_insert_with(|| Scalar::Integer.read(text));
                }
                Kind::Number => {
                    out.entry(name).or_insert_with(|| Scalar::Number.read(text));
                }
                Kind::Boolean => {
                    out.entry(name)
                        .or_insert_with(|| Scalar::Boolean.read(text));
                }
            }
        }
        Value::Object(out)
    }
}

impl Kind {
    /// The type a property schema declares (the first non-null of a list).
    fn of(p: &Value) -> Kind {
        match declared(p) {
            Some("array") => Kind::List(match p.get("items").and_then(declared) {
                Some("integer") => Scalar::Integer,
                Some("number") => Scalar::Number,
                Some("boolean") => Scalar::Boolean,
                _ => Scalar::Text,
            }),
            Some("integer") => Kind::Integer,
            Some("number") => Kind::Number,
            Some("boolean") => Kind::Boolean,
            _ => Kind::Text,
        }
    }
}

fn declared(p: &Value) -> Option<&str> {
    match p.get("type")? {
        Value::String(s) => Some(s),
        Value::Array(a) => a.iter().filter_map(Value::as_str).find(|t| *t != "null"),
        _ => None,
    }
}

impl Scalar {
    /// The text as this type, or left as text (which the schema then refuses by type).
    fn read(self, text: String) -> Value {
        let parsed = match self {
            Scalar::Text => None,
            Scalar::Integer => text.parse::<i64>().ok().map(Value::from),
            Scalar::Number => text
                .parse::<f64>()
                .ok()
                .and_then(|f| serde_json::Number::from_f64(f).map(Value::Number)),
            Scalar::Boolean => match text.as_str() {
                "true" => Some(Value::Bool(true)),
                "false" => Some(Value::Bool(false)),
                _ => None,
            },
        };
        parsed.unwrap_or(Value::String(text))
    }
}

impl Validate {
    /// The request body hook's work, done at once.
    fn read_request_body(
        &self,
        head: &mut request::Parts,
        body: &mut Bytes,
        ctx: &FilterCtx<'_>,
    ) -> Flow {
        let Some(v) = &self.body else {
            return Flow::Continue;
        };
        let violation = |error: String| Violation {
            place: "body",
            at: String::new(),
            error,
        };
        if body.is_empty() {
            // Only methods whose requests carry content must have it.
            let carries = matches!(
                head.method,
                http::Method::POST | http::Method::PUT | http::Method::PATCH
            );
            if !self.body_required || !carries {
                return Flow::Continue;
            }
            return self.refuse(vec![violation("a JSON body is required".into())], ctx);
        }
        if !super::json::says_json(&head.headers) {
            return self.refuse(
                vec![violation(
                    "the body must be sent as application/json".into(),
                )],
                ctx,
            );
        }
        if !is_json(&head.headers) {
            return self.refuse(
                vec![violation(
                    "a body with a Content-Encoding cannot be validated; send it unencoded".into(),
                )],
                ctx,
            );
        }
        let doc: Value = match serde_json::from_slice(body) {
            Ok(d) => d,
            Err(e) => return self.refuse(vec![violation(format!("not valid JSON: {e}"))], ctx),
        };
        let mut found = Vec::new();
        violations(v, &doc, "body", &mut found);
        if found.is_empty() {
            Flow::Continue
        } else {
            self.refuse(found, ctx)
        }
    }
}

impl Filter for Validate {
    fn name(&self) -> &'static str {
        "validate"
    }

    fn stage(&self) -> Stage {
        Stage::Validate
    }

    fn has_request_hook(&self) -> bool {
        self.query.is_some() || self.headers.is_some() || self.path.is_some()
    }

    fn wants_original_uri(&self) -> bool {
        self.path.is_some()
    }

    fn on_request<'a>(
        &'a self,
        head: &'a mut request::Parts,
        ctx: &'a FilterCtx<'a>,
    ) -> FilterFuture<'a> {
        // The client's path: a prefix strip or rewrite has not happened to it.
        let found = self.head_violations(head, client_uri(head).path());
        let flow = if found.is_empty() {
            Flow::Continue
        } else {
            self.refuse(found, ctx)
        };
        FilterFuture::ready(flow)
    }

    fn body_sides(&self) -> (bool, bool) {
        (self.body.is_some(), self.response.is_some())
    }

    fn request_body(&self, _head: &request::Parts) -> bool {
        // Every request: one without a JSON body is refused here, not let through.
        self.body.is_some()
    }

    fn on_request_body<'a>(
        &'a self,
        head: &'a mut request::Parts,
        body: &'a mut Bytes,
        ctx: &'a FilterCtx<'a>,
    ) -> FilterFuture<'a> {
        FilterFuture::ready(self.read_request_body(head, body, ctx))
    }

    fn response_body(&self, head: &response::Parts) -> bool {
        self.response.is_some() && is_json(&head.headers)
    }

    fn on_response_body(
        &self,
        _head: &mut response::Parts,
        body: &mut Bytes,
        ctx: &FilterCtx<'_>,
    ) -> Result<(), ProxyError> {
        let Some(v) = &self.response else {
            return Ok(());
        };
        let mut found = Vec::new();
        match serde_json::from_slice::<Value>(body) {
            Ok(doc) => violations(v, &doc, "response", &mut found),
            Err(e) => found.push(Violation {
                place: "response",
                at: String::new(),
                error: format!("not valid JSON: {e}"),
            }),
        }
        if let Some(first) = found.first() {
            self.reported.inc();
            tracing::warn!(route = ctx.route, request_id = ctx.request_id.to_str().unwrap_or("-"), violations = found.len(), at = %first.at, error = %first.error, "response does not match the route's schema (report only)");
        }
        Ok(())
    }
}
