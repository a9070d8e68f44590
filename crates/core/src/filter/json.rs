//! JSON body transforms on requests or responses: unwrap, rename, move, remove, add,
//! set and wrap, by JSON Pointer (RFC 6901), with template strings. The body is read
//! whole (a JSON document cannot be edited by the chunk); bodies that are not JSON by
//! their `Content-Type` pass untouched and unbuffered. A step whose source is missing
//! does nothing; a body that says it is JSON and is not gets 400 (request) or 502
//! (response).

use super::template::{render, Vars};
use super::{Filter, FilterCtx, FilterFuture, Flow, Stage};
use crate::error::{local_reply, ErrorKind, ProxyError};
use bytes::Bytes;
use gatehouse_config::spec::{parse_template, BodySide, JsonStep, TemplatePart};
use http::{header, request, response, HeaderMap};
use serde_json::Value;

pub struct JsonTransform {
    side: BodySide,
    steps: Vec<Step>,
}

/// A step with its template values parsed once.
enum Step {
    Plain(JsonStep),
    /// `add` (only where absent) or `set` of a template string.
    Template {
        at: String,
        only_absent: bool,
        parts: Vec<TemplatePart>,
    },
}

impl JsonTransform {
    pub fn new(side: BodySide, steps: &[JsonStep]) -> Self {
        let steps = steps
            .iter()
            .map(|s| {
                let templated = |at: &String, v: &Value, only_absent: bool| {
                    let parts = v.as_str().and_then(|t| parse_template(t).ok())?;
                    let at = at.clone();
                    Some(match parts.as_slice() {
                        // A fixed string, with `{{` and `}}` unescaped.
                        [] | [TemplatePart::Text(_)] => {
                            let text = match parts.first() {
                                Some(TemplatePart::Text(t)) => t.clone(),
                                _ => String::new(),
                            };
                            let value = Value::String(text);
                            Step::Plain(if only_absent {
                                JsonStep::Add { at, value }
                            } else {
                                JsonStep::Set { at, value }
                            })
                        }
                        _ => Step::Template {
                            at,
                            only_absent,
                            parts,
                        },
                    })
                };
                let t = match s {
                    JsonStep::Add { at, value } => templated(at, value, true),
                    JsonStep::Set { at, value } => templated(at, value, false),
                    _ => None,
                };
                t.unwrap_or_else(|| Step::Plain(s.clone()))
            })
            .collect();
        JsonTransform { side, steps }
    }

    /// Runs every step on `doc`.
    fn apply(&self, doc: &mut Value, vars: &Vars) {
        for s in &self.steps {
            match s {
                Step::Plain(JsonStep::Unwrap(p)) => {
                    if let Some(inner) = take(doc, p) {
                        *doc = inner;
                    }
                }
                Step::Plain(JsonStep::Rename { at, to }) => {
                    if let Some(v) = take(doc, at) {
                        let parent = &at[..at.rfind('/').unwrap_or(0)];
                        put(doc, &format!("{parent}/{}", escape(to)), v, false);
                    }
                }
                Step::Plain(JsonStep::Move { from, to }) => {
                    if let Some(v) = take(doc, from) {
                        put(doc, to, v, false);
                    }
                }
                Step::Plain(JsonStep::Remove(p)) => {
                    take(doc, p);
                }
                Step::Plain(JsonStep::Add { at, value }) => put(doc, at, value.clone(), true),
                Step::Plain(JsonStep::Set { at, value }) => put(doc, at, value.clone(), false),
                Step::Plain(JsonStep::Wrap(name)) => {
                    let inner = std::mem::take(doc);
                    *doc = Value::Object([(name.clone(), inner)].into_iter().collect());
                }
                Step::Template {
                    at,
                    only_absent,
                    parts,
                } => put(doc, at, Value::String(render(parts, vars)), *only_absent),
            }
        }
    }

    /// Parses, transforms and writes back `body`; `Err` is the parse error.
    fn edit(&self, body: &mut Bytes, vars: &Vars) -> Result<(), serde_json::Error> {
        let mut doc: Value = serde_json::from_slice(body)?;
        self.apply(&mut doc, vars);
        *body = Bytes::from(serde_json::to_vec(&doc)?);
        Ok(())
    }
}

/// Whether a message says its body is JSON (`application/json`, `+json`) and sends it
/// without a content coding (a gzipped document cannot be edited as JSON).
pub fn is_json(headers: &HeaderMap) -> bool {
    says(headers, json_type)
}

/// Whether a message's `Content-Type` is JSON, coded or not.
pub fn says_json(headers: &HeaderMap) -> bool {
    essence(headers).is_some_and(|e| json_type(&e))
}

fn json_type(essence: &str) -> bool {
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Whether a message's media type (lower-case, no parameters) passes `kind` and its
/// body has no content coding.
pub fn says(headers: &HeaderMap, kind: impl Fn(&str) -> bool) -> bool {
    let coded = headers
        .get(header::CONTENT_ENCODING)
        .is_some_and(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"));
    !coded && essence(headers).is_some_and(|e| kind(&e))
}

/// The media type of `Content-Type` without its parameters, lower-case.
fn essence(headers: &HeaderMap) -> Option<String> {
    let ct = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    Some(
        ct.split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase(),
    )
}

/// RFC 6901 reference tokens of a pointer (`~1` is `/`, `~0` is `~`).
fn tokens(p: &str) -> Vec<String> {
    p.split('/')
        .skip(1)
        .map(|t| t.replace("~1", "/").replace("~0", "~"))
        .collect()
}

fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// Takes the value at `p` out of `doc`.
fn take(doc: &mut Value, p: &str) -> Option<Value> {
    let toks = tokens(p);
    let (last, parents) = toks.split_last()?;
    let mut at = doc;
    for t in parents {
        at = child(at, t)?;
    }
    match at {
        Value::Object(m) => m.remove(last),
        Value::Array(a) => {
            let i: usize = last.parse().ok()?;
            (i < a.len()).then(|| a.remove(i))
        }
        _ => None,
    }
}

fn child<'v>(v: &'v mut Value, t: &str) -> Option<&'v mut Value> {
    match v {
        Value::Object(m) => m.get_mut(t),
        Value::Array(a) => a.get_mut(t.parse::<usize>().ok()?),
        _ => None,
    }
}

/// Puts `value` at `p`, making the objects on the way; `-` appends to an array. With
/// `only_absent`, a value already there is kept.
fn put(doc: &mut Value, p: &str, value: Value, only_absent: bool) {
    let toks = tokens(p);
    let Some((last, parents)) = toks.split_last() else {
        return;
    };
    let mut at = doc;
    for t in parents {
        if at.is_null() {
            *at = Value::Object(Default::default());
        }
        let next = match at {
            Value::Object(m) => Some(m.entry(t.clone()).or_insert(Value::Null)),
            Value::Array(a) => t.parse::<usize>().ok().and_then(|i| a.get_mut(i)),
            _ => None,
        };
        let Some(next) = next else { return };
        at = next;
    }
    if at.is_null() {
        *at = Value::Object(Default::default());
    }
    match at {
        Value::Object(m) if !(only_absent && m.contains_key(last)) => {
            m.insert(last.clone(), value);
        }
        Value::Array(a) if last == "-" => a.push(value),
        Value::Array(a) => match last.parse::<usize>() {
            Ok(i) if i < a.len() && !only_absent => a[i] = value,
            Ok(i) if i == a.len() => a.push(value),
            _ => {}
        },
        _ => {}
    }
}

impl JsonTransform {
    /// The request body hook's work, done at once.
    fn read_request_body(
        &self,
        head: &mut request::Parts,
        body: &mut Bytes,
        ctx: &FilterCtx<'_>,
    ) -> Flow {
        if body.is_empty() {
            return Flow::Continue;
        }
        let vars = Vars::request(ctx, head, &[]);
        match self.edit(body, &vars) {
            Ok(()) => Flow::Continue,
            Err(e) => {
                let msg = format!("the request body is not valid JSON: {e}");
                Flow::Respond(Box::new(local_reply(
                    ErrorKind::BadRequest,
                    &msg,
                    ctx.request_id,
                )))
            }
        }
    }
}

impl Filter for JsonTransform {
    fn name(&self) -> &'static str {
        match self.side {
            BodySide::Request => "request_json",
            BodySide::Response => "response_json",
        }
    }

    fn stage(&self) -> Stage {
        Stage::Transform
    }

    fn body_sides(&self) -> (bool, bool) {
        (
            self.side == BodySide::Request,
            self.side == BodySide::Response,
        )
    }

    fn request_body(&self, head: &request::Parts) -> bool {
        self.side == BodySide::Request && is_json(&head.headers)
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
        self.side == BodySide::Response && is_json(&head.headers)
    }

    fn reads_caller_on_response(&self) -> bool {
        self.side == BodySide::Response
            && self
                .steps
                .iter()
                .any(|s| matches!(s, Step::Template { .. }))
    }

    fn on_response_body(
        &self,
        head: &mut response::Parts,
        body: &mut Bytes,
        ctx: &FilterCtx<'_>,
    ) -> Result<(), ProxyError> {
        if body.is_empty() {
            return Ok(());
        }
        let vars = Vars::response(ctx, &head.headers, &head.extensions);
        self.edit(body, &vars).map_err(|e| {
            ProxyError::new(
                ErrorKind::UpstreamProtocol,
                format!("the upstream's JSON body does not parse: {e}"),
            )
        })?;
        // The body is no longer the one a strong validator named.
        if let Some(tag) = head.headers.get(header::ETAG) {
            if !tag.as_bytes().starts_with(b"W/") {
                let mut weak = b"W/".to_vec();
                weak.extend_from_slice(tag.as_bytes());
                if let Ok(v) = http::HeaderValue::from_bytes(&weak) {
                    head.headers.insert(header::ETAG, v);
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pointers_take_and_put_through_objects_and_arrays() {
        let mut d = json!({"a": {"b": [1, 2, 3]}, "x~y": 1, "p/q": 2});
        assert_eq!(take(&mut d, "/a/b/1"), Some(json!(2)));
        assert_eq!(take(&mut d, "/x~0y"), Some(json!(1)));
        assert_eq!(take(&mut d, "/p~1q"), Some(json!(2)));
        assert_eq!(take(&mut d, "/a/none"), None);
        put(&mut d, "/a/b/-", json!(9), false);
        put(&mut d, "/new/deep/key", json!("v"), false);
        put(&mut d, "/a/b/0", json!(7), true);
        assert_eq!(
            d,
            json!({"a": {"b": [1, 3, 9]}, "new": {"deep": {"key": "v"}}})
        );
    }
}
