//! `gatehouse import openapi`: an OpenAPI 3.0 or 3.1 document (YAML or JSON) turned into
//! a config fragment: one route per operation (its method and templated path), the
//! validation its parameters and JSON request body declare, and the auth its security
//! requirement names where a credential kind of ours corresponds. Pure: text in, TOML
//! text and notes out (the binary reads and writes the files).
//!
//! Schemas: `#/components/schemas` travel with each schema as `$defs` (so recursive
//! schemas stay references), other local `$ref`s (parameters, request bodies) are
//! inlined; 3.0's `nullable` and boolean `exclusiveMinimum`/`exclusiveMaximum` become
//! their JSON Schema forms. A schema holding a JSON `null` (which TOML cannot write) is
//! emitted as a JSON string, which `validate` also accepts.

use serde_json::{json, Map, Value};

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// What the fragment's routes point at.
pub struct ImportOptions {
    /// The upstream every route proxies to.
    pub upstream: String,
    /// Put in front of each route's name.
    pub name_prefix: String,
}

/// The fragment, and what could not be carried over (as comments for the reader).
pub struct Imported {
    pub toml: String,
    pub notes: Vec<String>,
}

/// Reads an OpenAPI document (JSON when it starts with `{`, else YAML).
pub fn parse(text: &str) -> Result<Value, String> {
    if text.trim_start().starts_with('{') {
        serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))
    } else {
        serde_norway::from_str(text).map_err(|e| format!("not valid YAML: {e}"))
    }
}

/// One operation of a document in our terms: how a route matches it and what its
/// requests must look like (JSON Schemas, component schemas beside them as `$defs`).
pub struct Operation {
    /// The operationId as a route name, or the method and path when it has none.
    pub name: String,
    /// Upper-case.
    pub method: String,
    /// As the document writes it (`/pets/{petId}`).
    pub path: String,
    /// The path as a `match.path` template (`None`: a parameter sits inside a segment
    /// or has a name a template cannot hold, so it is matched by [`Operation::regex`]).
    pub template: Option<String>,
    /// The path as an anchored regex, parameters with plain names as named groups.
    pub regex: String,
    pub query: Option<Value>,
    pub headers: Option<Value>,
    pub path_params: Option<Value>,
    pub body: Option<Value>,
    pub body_required: bool,
    /// The security requirement that applies (the operation's or the document's).
    pub security: Option<Value>,
}

/// An operation checked and compiled for a route's `openapi` key.
pub struct CheckedOperation {
    /// `GET /pets/{petId}`, for replies and logs.
    pub label: String,
    pub method: http::Method,
    pub path: crate::spec::PathMatch,
    /// Literal segments count for more: `/pets/mine` wins over `/pets/{id}`.
    pub specificity: usize,
    pub validate: crate::spec::ValidateSpec,
}

/// A document read for a route's `openapi` key.
#[derive(Default)]
pub struct Api {
    /// The path of the first `servers` URL (`/v1` of `https://api.example.com/v1`),
    /// which the document's paths are relative to; empty when there is none.
    pub base: String,
    pub operations: Vec<CheckedOperation>,
}

/// Reads a document for a route's `openapi` key: every schema compiled, every path
/// turned into a matcher. The error names the operation it is in.
pub fn load(text: &str) -> Result<Api, String> {
    let doc = parse(text)?;
    let (ops, _) = operations(&doc)?;
    Ok(Api {
        base: base_path(&doc),
        operations: ops
            .iter()
            .map(Operation::checked)
            .collect::<Result<_, _>>()?,
    })
}

/// The path part of the first server URL, without a trailing `/`. A URL with
/// variables (`/{version}`) has no fixed base and gives none.
fn base_path(doc: &Value) -> String {
    let Some(url) = doc.pointer("/servers/0/url").and_then(Value::as_str) else {
        return String::new();
    };
    let path = match url.split_once("://") {
        Some((_, rest)) => rest.find('/').map_or("", |i| &rest[i..]),
        None => url,
    };
    if path.contains('{') || !path.starts_with('/') {
        return String::new();
    }
    path.trim_end_matches('/').to_string()
}

/// The document's version checked, its operations in document order, and notes on
/// what could not be carried over.
pub fn operations(doc: &Value) -> Result<(Vec<Operation>, Vec<String>), String> {
    let version = doc
        .get("openapi")
        .and_then(Value::as_str)
        .ok_or("no `openapi` version: only OpenAPI 3.0 and 3.1 documents are read")?;
    let v30 = version.starts_with("3.0");
    if !v30 && !version.starts_with("3.1") {
        return Err(format!("OpenAPI {version}: only 3.0 and 3.1 are read"));
    }
    let paths = doc
        .get("paths")
        .and_then(Value::as_object)
        .ok_or("the document has no `paths`")?;
    let mut defs = Map::new();
    if let Some(schemas) = doc
        .pointer("/components/schemas")
        .and_then(Value::as_object)
    {
        for (k, s) in schemas {
            defs.insert(k.clone(), schema(s, doc, v30, 0)?);
        }
    }
    let cx = Doc { doc, v30, defs };
    let mut notes = Vec::new();
    let mut ops = Vec::new();
    for (path, item) in paths {
        let shared = params_of(item.get("parameters"), doc)?;
        for m in METHODS {
            let Some(op) = item.get(m) else { continue };
            let mut params = shared.clone();
            for p in params_of(op.get("parameters"), doc)? {
                params.retain(|q| !(q.name == p.name && q.place == p.place));
                params.push(p);
            }
            ops.push(operation(path, m, op, &params, &cx, &mut notes)?);
        }
    }
    if ops.is_empty() {
        return Err("the document has no operations".into());
    }
    Ok((ops, notes))
}

pub fn import(doc: &Value, opts: &ImportOptions) -> Result<Imported, String> {
    let (ops, mut notes) = operations(doc)?;
    let mut routes = Vec::new();
    let mut names = std::collections::HashSet::new();
    for op in &ops {
        let mut name = format!("{}{}", opts.name_prefix, op.name);
        while !names.insert(name.clone()) {
            name.push('_');
        }
        routes.push(route(&name, op, doc, opts, &mut notes)?);
    }
    let mut out = String::new();
    let title = doc
        .pointer("/info/title")
        .and_then(Value::as_str)
        .unwrap_or("an API");
    let version = doc.get("openapi").and_then(Value::as_str).unwrap_or("3");
    out.push_str(&format!(
        "# Routes for {title} (OpenAPI {version}), made by `gatehouse import openapi`.\n"
    ));
    for n in &notes {
        out.push_str(&format!("# note: {n}\n"));
    }
    for r in routes {
        let mut table = toml::map::Map::new();
        table.insert("routes".into(), toml::Value::Array(vec![r]));
        let text = toml::to_string(&toml::Value::Table(table)).map_err(|e| e.to_string())?;
        out.push('\n');
        out.push_str(&text);
    }
    Ok(Imported { toml: out, notes })
}

/// What every schema of a document is read with.
struct Doc<'a> {
    doc: &'a Value,
    v30: bool,
    /// `#/components/schemas`, converted.
    defs: Map<String, Value>,
}

/// A parameter as declared: where, its name, whether required, its schema.
#[derive(Clone)]
struct Param {
    name: String,
    place: String,
    required: bool,
    schema: Value,
}

fn params_of(list: Option<&Value>, doc: &Value) -> Result<Vec<Param>, String> {
    let mut out = Vec::new();
    for p in list.and_then(Value::as_array).into_iter().flatten() {
        let p = deref(p, doc, 0)?;
        let (Some(name), Some(place)) = (
            p.get("name").and_then(Value::as_str),
            p.get("in").and_then(Value::as_str),
        ) else {
            return Err("a parameter without `name` or `in`".into());
        };
        out.push(Param {
            name: name.into(),
            place: place.into(),
            required: p
                .get("required")
                .and_then(Value::as_bool)
                .unwrap_or(place == "path"),
            schema: p.get("schema").cloned().unwrap_or(json!({})),
        });
    }
    Ok(out)
}

fn operation(
    path: &str,
    method: &str,
    op: &Value,
    params: &[Param],
    cx: &Doc,
    notes: &mut Vec<String>,
) -> Result<Operation, String> {
    let name = op
        .get("operationId")
        .and_then(Value::as_str)
        .map_or_else(|| format!("{method}{}", slug(path)), slug_id);
    let template = whole_segments(path).then(|| path.to_string());
    if template.is_none() {
        notes.push(format!(
            "route `{name}`: `{path}` has a parameter inside a segment (or with a name a template cannot hold), matched by a regex"
        ));
    }
    let mut o = Operation {
        name,
        method: method.to_ascii_uppercase(),
        path: path.into(),
        template,
        regex: path_regex(path),
        query: None,
        headers: None,
        path_params: None,
        body: None,
        body_required: false,
        security: op
            .get("security")
            .or_else(|| cx.doc.get("security"))
            .cloned(),
    };
    o.query = params_schema(params, "query", cx)?;
    o.headers = params_schema(params, "header", cx)?;
    // Only parameters a template or a named group captures can be checked.
    let captured: Vec<Param> = params
        .iter()
        .filter(|p| p.place == "path" && plain_name(&p.name))
        .cloned()
        .collect();
    o.path_params = params_schema(&captured, "path", cx)?;
    if let Some(body) = op.get("requestBody") {
        let body = deref(body, cx.doc, 0)?;
        let content = body.get("content").and_then(Value::as_object);
        let json_schema = content.and_then(|c| {
            c.iter()
                .find(|(t, _)| *t == "application/json" || t.ends_with("+json"))
                .map(|(_, m)| m.get("schema").cloned().unwrap_or(json!({})))
        });
        match json_schema {
            Some(s) => {
                o.body = Some(with_defs(schema(&s, cx.doc, cx.v30, 0)?, &cx.defs));
                o.body_required = body
                    .get("required")
                    .and_then(Value::as_bool)
                    .unwrap_or(false);
            }
            None => notes.push(format!(
                "route `{}`: its request body is not JSON and is not validated",
                o.name
            )),
        }
    }
    Ok(o)
}

/// An object schema over the parameters declared in `place` (`None` when there are
/// none); header names lower-case.
fn params_schema(params: &[Param], place: &str, cx: &Doc) -> Result<Option<Value>, String> {
    let ps: Vec<&Param> = params.iter().filter(|p| p.place == place).collect();
    if ps.is_empty() {
        return Ok(None);
    }
    let mut props = Map::new();
    let mut required = Vec::new();
    for p in ps {
        let n = if place == "header" {
            p.name.to_ascii_lowercase()
        } else {
            p.name.clone()
        };
        props.insert(n.clone(), schema(&p.schema, cx.doc, cx.v30, 0)?);
        if p.required {
            required.push(Value::String(n));
        }
    }
    let mut s = json!({"type": "object", "properties": props});
    if !required.is_empty() {
        s["required"] = Value::Array(required);
    }
    Ok(Some(with_defs(s, &cx.defs)))
}

// === impl Operation ===

impl Operation {
    /// Compiles the schemas and the path matcher.
    fn checked(&self) -> Result<CheckedOperation, String> {
        let label = format!("{} {}", self.method, self.path);
        let at = |what: &str, e: String| format!("operation `{label}`, {what}: {e}");
        for (what, s) in [
            ("query parameters", &self.query),
            ("headers", &self.headers),
            ("path parameters", &self.path_params),
            ("request body", &self.body),
        ] {
            if let Some(s) = s {
                crate::validate::compile_schema(s).map_err(|e| at(what, e))?;
            }
        }
        let method = http::Method::from_bytes(self.method.as_bytes())
            .map_err(|e| at("method", e.to_string()))?;
        let (path, specificity) = match &self.template {
            Some(t) => {
                let segs = crate::validate::template(t).map_err(|e| at("path", e))?;
                let literal = segs
                    .iter()
                    .filter(|s| matches!(s, crate::spec::Segment::Literal(_)))
                    .count();
                (crate::spec::PathMatch::Template(segs), literal)
            }
            None => {
                let re = regex::Regex::new(&self.regex).map_err(|e| at("path", e.to_string()))?;
                (crate::spec::PathMatch::Regex(re), 0)
            }
        };
        let matcher = crate::spec::MatchSpec {
            path,
            ..Default::default()
        };
        let (path_source, _) = crate::validate::route_captures(&matcher);
        Ok(CheckedOperation {
            label,
            method,
            path: matcher.path,
            specificity,
            validate: crate::spec::ValidateSpec {
                body: self.body.clone(),
                query: self.query.clone(),
                headers: self.headers.clone(),
                path: self.path_params.clone(),
                path_source,
                body_required: self.body_required,
                response_body: None,
            },
        })
    }
}

/// An imported route: the operation's match, the upstream, its validation and auth.
fn route(
    name: &str,
    op: &Operation,
    doc: &Value,
    opts: &ImportOptions,
    notes: &mut Vec<String>,
) -> Result<toml::Value, String> {
    let mut r = toml::map::Map::new();
    r.insert("name".into(), name.into());
    let mut m = toml::map::Map::new();
    match &op.template {
        Some(t) => m.insert("path".into(), t.clone().into()),
        None => m.insert("regex".into(), op.regex.clone().into()),
    };
    m.insert("method".into(), op.method.clone().into());
    r.insert("match".into(), toml::Value::Table(m));
    r.insert("upstream".into(), opts.upstream.clone().into());
    let mut validate = toml::map::Map::new();
    for (key, s) in [
        ("query", &op.query),
        ("headers", &op.headers),
        ("path", &op.path_params),
    ] {
        if let Some(s) = s {
            validate.insert(key.into(), emit(s.clone())?);
        }
    }
    if let Some(b) = &op.body {
        validate.insert("body".into(), emit(b.clone())?);
        validate.insert("body_required".into(), op.body_required.into());
    }
    if !validate.is_empty() {
        r.insert("validate".into(), toml::Value::Table(validate));
    }
    if let Some(auth) = op
        .security
        .as_ref()
        .and_then(|s| auth_of(s, doc, name, notes))
    {
        r.insert("auth".into(), auth);
    }
    Ok(toml::Value::Table(r))
}

/// The auth table of a security requirement list (alternatives, each an AND of
/// schemes): the kinds of our credentials the first alternative names, in order.
fn auth_of(
    security: &Value,
    doc: &Value,
    route: &str,
    notes: &mut Vec<String>,
) -> Option<toml::Value> {
    let alts = security.as_array()?;
    if alts.is_empty()
        || alts
            .iter()
            .any(|a| a.as_object().is_some_and(|o| o.is_empty()))
    {
        return None; // `security: []` or an empty alternative: anonymous access.
    }
    let mut t = toml::map::Map::new();
    let mut methods: Vec<toml::Value> = Vec::new();
    let push = |m: &str, methods: &mut Vec<toml::Value>| {
        if !methods.iter().any(|x| x.as_str() == Some(m)) {
            methods.push(m.into());
        }
    };
    for alt in alts.iter().filter_map(Value::as_object) {
        for scheme_name in alt.keys() {
            let Some(s) = doc.pointer(&format!("/components/securitySchemes/{scheme_name}")) else {
                notes.push(format!(
                    "route `{route}`: security scheme `{scheme_name}` is not declared"
                ));
                continue;
            };
            let kind = s.get("type").and_then(Value::as_str).unwrap_or("");
            match (kind, s.get("scheme").and_then(Value::as_str).map(str::to_ascii_lowercase).as_deref()) {
                ("apiKey", _) => {
                    let n = s.get("name").and_then(Value::as_str).unwrap_or("x-api-key");
                    match s.get("in").and_then(Value::as_str) {
                        Some("query") => {
                            t.insert("api_key_query".into(), n.into());
                        }
                        Some("header") => {
                            t.insert("api_key_header".into(), n.to_ascii_lowercase().into());
                        }
                        _ => {
                            notes.push(format!("route `{route}`: an API key in a cookie has no credential kind here"));
                            continue;
                        }
                    }
                    push("api_key", &mut methods);
                }
                ("http", Some("basic")) => push("basic", &mut methods),
                ("http", Some("bearer")) | ("oauth2", _) | ("openIdConnect", _) => {
                    push("jwt", &mut methods);
                    t.insert("jwt".into(), scheme_name.as_str().into());
                    notes.push(format!(
                        "route `{route}`: `{scheme_name}` takes bearer tokens: declare a [[jwt_providers]] entry named `{scheme_name}` (or switch the route to `introspection`)"
                    ));
                }
                _ => notes.push(format!("route `{route}`: security scheme `{scheme_name}` ({kind}) has no credential kind here")),
            }
        }
    }
    if methods.is_empty() {
        return None;
    }
    t.insert("methods".into(), toml::Value::Array(methods));
    Some(toml::Value::Table(t))
}

/// Follows a local `$ref` (to parameters, request bodies) to what it names.
fn deref(v: &Value, doc: &Value, depth: usize) -> Result<Value, String> {
    match v.get("$ref").and_then(Value::as_str) {
        None => Ok(v.clone()),
        Some(_) if depth > 16 => Err("`$ref`s nest deeper than 16".into()),
        Some(r) => {
            let target = r
                .strip_prefix('#')
                .and_then(|p| doc.pointer(p))
                .ok_or_else(|| format!("`$ref` `{r}` does not point into this document"))?;
            deref(target, doc, depth + 1)
        }
    }
}

/// An OpenAPI schema as JSON Schema: references to component schemas point at
/// `$defs`, other local references are inlined, 3.0 forms rewritten.
fn schema(s: &Value, doc: &Value, v30: bool, depth: usize) -> Result<Value, String> {
    if depth > 64 {
        return Err("a schema nests deeper than 64".into());
    }
    match s {
        Value::Object(m) => {
            if let Some(r) = m.get("$ref").and_then(Value::as_str) {
                if let Some(name) = r.strip_prefix("#/components/schemas/") {
                    return Ok(json!({"$ref": format!("#/$defs/{name}")}));
                }
                return schema(&deref(s, doc, 0)?, doc, v30, depth + 1);
            }
            let mut out = Map::new();
            for (k, v) in m {
                let v = match k.as_str() {
                    // Keywords that hold schemas, or maps and lists of them.
                    "properties" | "patternProperties" | "$defs" | "definitions"
                    | "dependentSchemas" => {
                        let mut inner = Map::new();
                        for (pk, pv) in v.as_object().into_iter().flatten() {
                            inner.insert(pk.clone(), schema(pv, doc, v30, depth + 1)?);
                        }
                        Value::Object(inner)
                    }
                    "allOf" | "anyOf" | "oneOf" | "prefixItems" => Value::Array(
                        v.as_array()
                            .into_iter()
                            .flatten()
                            .map(|x| schema(x, doc, v30, depth + 1))
                            .collect::<Result<_, _>>()?,
                    ),
                    "items"
                    | "additionalProperties"
                    | "not"
                    | "contains"
                    | "if"
                    | "then"
                    | "else"
                    | "propertyNames"
                    | "unevaluatedProperties"
                    | "unevaluatedItems"
                        if v.is_object() =>
                    {
                        schema(v, doc, v30, depth + 1)?
                    }
                    // Documentation only; `discriminator` and `xml` say nothing to a validator.
                    "example" | "examples" | "discriminator" | "xml" | "externalDocs" if v30 => {
                        continue
                    }
                    _ => v.clone(),
                };
                out.insert(k.clone(), v);
            }
            if v30 {
                three_oh(&mut out);
            }
            Ok(Value::Object(out))
        }
        other => Ok(other.clone()),
    }
}

/// 3.0 forms in their JSON Schema spelling: `nullable`, boolean exclusive bounds.
fn three_oh(m: &mut Map<String, Value>) {
    if m.remove("nullable") == Some(Value::Bool(true)) {
        if let Some(Value::String(t)) = m.get("type").cloned() {
            m.insert("type".into(), json!([t, "null"]));
        }
        if let Some(Value::Array(e)) = m.get_mut("enum") {
            if !e.contains(&Value::Null) {
                e.push(Value::Null);
            }
        }
    }
    for (flag, bound) in [
        ("exclusiveMinimum", "minimum"),
        ("exclusiveMaximum", "maximum"),
    ] {
        match m.get(flag) {
            Some(Value::Bool(true)) => {
                if let Some(b) = m.remove(bound) {
                    m.insert(flag.into(), b);
                }
            }
            Some(Value::Bool(false)) => {
                m.remove(flag);
            }
            _ => {}
        }
    }
}

/// A schema with the document's component schemas beside it, when it refers to any.
fn with_defs(s: Value, defs: &Map<String, Value>) -> Value {
    if defs.is_empty() || !s.to_string().contains("#/$defs/") {
        return s;
    }
    let mut s = s;
    if let Value::Object(m) = &mut s {
        m.insert("$defs".into(), Value::Object(defs.clone()));
    }
    s
}

/// A schema as TOML: a table, or a JSON string when it holds a `null` (TOML has none).
fn emit(s: Value) -> Result<toml::Value, String> {
    if has_null(&s) {
        return serde_json::to_string(&s)
            .map(toml::Value::String)
            .map_err(|e| e.to_string());
    }
    toml::Value::try_from(&s).map_err(|e| e.to_string())
}

fn has_null(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Array(a) => a.iter().any(has_null),
        Value::Object(m) => m.values().any(has_null),
        _ => false,
    }
}

/// Whether every `{param}` of an OpenAPI path fills a whole segment under a plain
/// name, as our templates do.
fn whole_segments(path: &str) -> bool {
    path.split('/').all(|seg| {
        !seg.contains('{')
            || (seg.starts_with('{')
                && seg.ends_with('}')
                && seg.matches('{').count() == 1
                && plain_name(&seg[1..seg.len() - 1]))
    })
}

/// A name both a template parameter and a regex group can hold.
fn plain_name(n: &str) -> bool {
    n.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// A path as an anchored regex; parameters with plain names are named groups.
fn path_regex(path: &str) -> String {
    let mut out = String::from("^");
    let mut rest = path;
    while let Some(i) = rest.find('{') {
        out.push_str(&regex::escape(&rest[..i]));
        let end = rest[i..].find('}').map_or(rest.len(), |e| i + e + 1);
        let name = rest[i + 1..end].trim_end_matches('}');
        if plain_name(name) {
            out.push_str(&format!("(?P<{name}>[^/]+)"));
        } else {
            out.push_str("[^/]+");
        }
        rest = &rest[end..];
    }
    out.push_str(&regex::escape(rest));
    out.push('$');
    out
}

/// A route name from a path: `/pets/{id}` -> `_pets_id`.
fn slug(path: &str) -> String {
    path.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect::<String>()
        .split('_')
        .filter(|s| !s.is_empty())
        .fold(String::new(), |acc, s| acc + "_" + s)
}

/// An operationId as a route name (letters, digits, `_ - .`).
fn slug_id(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect()
}
