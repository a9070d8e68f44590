//! Validates a route's mediation keys (`cors`, `validate`, `transform`, `rewrite`,
//! `status_map`, `error_pages`, `fault`, `split`, `mirror`) and the global `[cors]`. JSON Schemas are compiled here once
//! to report a bad one with its key path; the core compiles them again for its snapshot.

use super::Errors;
use crate::raw::{
    CorsConf, CorsSwitch, ErrorPageConf, FaultConf, JsonTransformConf, MirrorConf, QueryRulesConf,
    RewriteConf, RouteConf, SplitConf, TransformConf, ValidateConf, VersioningConf,
};
use crate::spec::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;

/// Methods a CORS preflight is allowed by default: every common one.
const DEFAULT_METHODS: [&str; 6] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"];

/// The body read whole for a filter by default.
pub const DEFAULT_BODY_BUFFER_LIMIT: u64 = 1024 * 1024;

/// The mediation filters of a route, in config order (the core sorts them by stage).
pub fn filters(
    r: &RouteConf,
    path: &str,
    matcher: &MatchSpec,
    global_cors: Option<&CorsSpec>,
    errs: &mut Errors,
) -> Vec<FilterSpec> {
    let mut out = Vec::new();
    if let Some(w) = &r.rewrite {
        let at = format!("{path}.rewrite");
        if r.upstream.is_none() {
            errs.push(&at, "a rewrite applies to routes with an upstream");
        } else if w.path.is_some() && (r.strip_prefix.is_some() || r.replace_prefix.is_some()) {
            errs.push(
                &at,
                "give either rewrite.path or strip_prefix/replace_prefix, not both",
            );
        }
        out.push(FilterSpec::Rewrite(rewrite(w, matcher, &at, errs)));
    }
    match &r.cors {
        Some(CorsSwitch::On(c)) => {
            out.push(FilterSpec::Cors(cors(c, &format!("{path}.cors"), errs)))
        }
        Some(CorsSwitch::Off) => {}
        None => out.extend(global_cors.cloned().map(FilterSpec::Cors)),
    }
    if let Some(f) = &r.fault {
        out.push(FilterSpec::Fault(fault(f, &format!("{path}.fault"), errs)));
    }
    if let Some(v) = &r.validate {
        out.push(FilterSpec::Validate(validate(
            v,
            matcher,
            &format!("{path}.validate"),
            errs,
        )));
    }
    if let Some(file) = &r.openapi {
        let at = format!("{path}.openapi");
        if r.upstream.is_none() {
            errs.push(&at, "an OpenAPI document validates routes with an upstream");
        } else if r.validate.is_some() {
            errs.push(
                &at,
                "give either validate or openapi: the document's operations say what is valid",
            );
        } else if file.trim().is_empty() {
            errs.push(&at, "give the path of an OpenAPI document (YAML or JSON)");
        } else {
            out.push(FilterSpec::OpenApi(file.into()));
        }
    }
    if let Some(t) = &r.transform {
        out.extend(transforms(t, &format!("{path}.transform"), errs));
    }
    if r.status_map.is_some() || r.error_pages.is_some() {
        let empty = BTreeMap::new();
        out.push(FilterSpec::Status(status(
            r.status_map.as_ref().unwrap_or(&BTreeMap::new()),
            r.error_pages.as_ref().unwrap_or(&empty),
            path,
            errs,
        )));
    }
    out
}

pub fn cors(c: &CorsConf, path: &str, errs: &mut Errors) -> CorsSpec {
    let mut origins = Vec::new();
    for (i, o) in c.allow_origins.iter().enumerate() {
        match origin_rule(o) {
            Ok(r) => origins.push(r),
            Err(msg) => errs.push(format!("{path}.allow_origins[{i}]"), msg),
        }
    }
    for (i, re) in c.allow_origin_regex.iter().enumerate() {
        match regex::Regex::new(re) {
            Ok(_) => origins.push(OriginRule::Regex(re.clone())),
            Err(e) => errs.push(
                format!("{path}.allow_origin_regex[{i}]"),
                format!(
                    "not a regular expression: {}",
                    super::routes::first_line(&e.to_string())
                ),
            ),
        }
    }
    if c.allow_origins.is_empty() && c.allow_origin_regex.is_empty() {
        errs.push(
            format!("{path}.allow_origins"),
            "name at least one origin (or `*`) in allow_origins or allow_origin_regex",
        );
    }
    let credentials = c.allow_credentials.unwrap_or(false);
    if credentials && origins.contains(&OriginRule::Any) {
        errs.push(
            format!("{path}.allow_credentials"),
            "browsers refuse credentials with `Access-Control-Allow-Origin: *`; list the origins instead of `*`",
        );
    }
    let methods = match &c.allow_methods {
        None => DEFAULT_METHODS.iter().map(|m| m.to_string()).collect(),
        Some(list) => list
            .iter()
            .enumerate()
            .filter_map(|(i, m)| match http::Method::from_bytes(m.as_bytes()) {
                Ok(_) => Some(m.to_ascii_uppercase()),
                Err(_) => {
                    errs.push(
                        format!("{path}.allow_methods[{i}]"),
                        format!("`{m}` is not a method"),
                    );
                    None
                }
            })
            .collect(),
    };
    let headers = match &c.allow_headers {
        Some(list) if list.iter().any(|h| h == "*") => AllowHeaders::Any,
        Some(list) => {
            AllowHeaders::List(header_names(list, &format!("{path}.allow_headers"), errs))
        }
        None => AllowHeaders::List(Vec::new()),
    };
    let expose = header_names(&c.expose_headers, &format!("{path}.expose_headers"), errs);
    let refusal = c.preflight_refusal.unwrap_or(403);
    if !(200..=599).contains(&refusal) {
        errs.push(
            format!("{path}.preflight_refusal"),
            format!("{refusal} is not a status from 200 to 599"),
        );
    }
    CorsSpec {
        origins,
        methods,
        headers,
        expose,
        credentials,
        max_age: c.max_age.map(|d| d.0),
        preflight_refusal: refusal,
    }
}

/// `https://app.example.com`, `https://*.example.com`, `null` or `*`.
fn origin_rule(o: &str) -> Result<OriginRule, String> {
    if o == "*" {
        return Ok(OriginRule::Any);
    }
    if o == "null" {
        return Ok(OriginRule::Exact(o.into()));
    }
    let lower = o.to_ascii_lowercase();
    let Some((scheme, rest)) = lower.split_once("://") else {
        return Err(format!("`{o}` is not an origin; expected `scheme://host[:port]`, `https://*.example.com` or `*`"));
    };
    if scheme.is_empty() || rest.is_empty() || rest.contains('/') {
        return Err(format!(
            "`{o}` is not an origin: no path, only `scheme://host[:port]`"
        ));
    }
    match rest.strip_prefix('*') {
        Some(suffix) if suffix.starts_with('.') && suffix.len() > 1 && !suffix.contains('*') => {
            Ok(OriginRule::Subdomain {
                scheme: scheme.into(),
                suffix: suffix.into(),
            })
        }
        Some(_) => Err(format!(
            "`{o}`: a wildcard stands for subdomains only, as in `https://*.example.com`"
        )),
        None if rest.contains('*') => Err(format!(
            "`{o}`: a wildcard stands for subdomains only, as in `https://*.example.com`"
        )),
        None => Ok(OriginRule::Exact(lower)),
    }
}

fn header_names(list: &[String], path: &str, errs: &mut Errors) -> Vec<String> {
    list.iter()
        .enumerate()
        .filter_map(|(i, h)| match http::HeaderName::from_bytes(h.as_bytes()) {
            Ok(n) => Some(n.as_str().to_string()),
            Err(_) => {
                errs.push(
                    format!("{path}[{i}]"),
                    format!("`{h}` is not a header name"),
                );
                None
            }
        })
        .collect()
}

fn validate(v: &ValidateConf, matcher: &MatchSpec, path: &str, errs: &mut Errors) -> ValidateSpec {
    let mut check = |schema: &Option<Value>, key: &str, object: bool| {
        let at = format!("{path}.{key}");
        // A schema may be given as JSON text (TOML cannot write a `null`).
        let parsed;
        let s = match schema.as_ref()? {
            Value::String(text) => match serde_json::from_str::<Value>(text) {
                Ok(v) => {
                    parsed = v;
                    &parsed
                }
                Err(e) => {
                    errs.push(at, format!("a schema given as text must be JSON: {e}"));
                    return None;
                }
            },
            v => v,
        };
        if let Err(msg) = compile_schema(s) {
            errs.push(at, msg);
            return None;
        }
        if object && !declares_properties(s) {
            errs.push(
                at,
                "give an object schema whose `properties` name the parameters and their types",
            );
            return None;
        }
        Some(s.clone())
    };
    let body = check(&v.body, "body", false);
    let query = check(&v.query, "query", true);
    let headers = check(&v.headers, "headers", true);
    let path_params = check(&v.path, "path", true);
    let response_body = check(&v.response_body, "response_body", false);
    let (path_source, names) = route_captures(matcher);
    if let Some(props) = path_params
        .as_ref()
        .and_then(|s| s["properties"].as_object())
    {
        for name in props.keys().filter(|n| !names.contains(n)) {
            let known = if names.is_empty() {
                "the route's match has no path parameters (give match.path a template or a regex)"
                    .to_string()
            } else {
                format!("its parameters: {}", names.join(", "))
            };
            errs.push(
                format!("{path}.path.properties.{name}"),
                format!("`{name}` is not a parameter of the route's path; {known}"),
            );
        }
    }
    if v.body.is_none()
        && v.query.is_none()
        && v.headers.is_none()
        && v.path.is_none()
        && v.response_body.is_none()
    {
        errs.push(
            path,
            "give at least one of body, query, headers, path, response_body",
        );
    }
    ValidateSpec {
        path: path_params,
        path_source,
        body_required: v.body_required.unwrap_or(v.body.is_some()),
        body,
        query,
        headers,
        response_body,
    }
}

/// Compiles a JSON Schema (its draft from `$schema`, 2020-12 when absent); the error
/// says what is wrong in it.
pub fn compile_schema(s: &Value) -> Result<(), String> {
    if !s.is_object() && !s.is_boolean() {
        return Err("a JSON Schema is a table (or true/false)".into());
    }
    jsonschema::validator_for(s).map(|_| ()).map_err(|e| {
        let at = e.instance_path().to_string();
        let at = if at.is_empty() {
            String::new()
        } else {
            format!(" at `{at}`")
        };
        format!("not a valid JSON Schema{at}: {e}")
    })
}

fn declares_properties(s: &Value) -> bool {
    s.get("properties").is_some_and(Value::is_object)
}

/// A route's body transforms, ordered so that JSON edits see JSON: on the request an
/// XML body becomes JSON before `request_json` and JSON becomes XML after it; response
/// hooks run in reverse, so the response side is listed the other way round.
fn transforms(t: &TransformConf, path: &str, errs: &mut Errors) -> Vec<FilterSpec> {
    let before = errs.0.len();
    let root = t.xml_root.clone().unwrap_or_else(|| "root".into());
    if !xml_name(&root) {
        errs.push(
            format!("{path}.xml_root"),
            format!("`{root}` is not an XML element name"),
        );
    }
    let direction = |v: &Option<String>, key: &str, errs: &mut Errors| match v.as_deref() {
        None => None,
        Some("xml_to_json") => Some(XmlDirection::XmlToJson),
        Some("json_to_xml") => Some(XmlDirection::JsonToXml),
        Some(other) => {
            errs.push(
                format!("{path}.{key}"),
                format!("`{other}`: expected xml_to_json or json_to_xml"),
            );
            None
        }
    };
    let req = direction(&t.request_body, "request_body", errs);
    let resp = direction(&t.response_body, "response_body", errs);
    let convert = |side, d| FilterSpec::XmlConvert(side, d, root.clone());
    let json = |c: &Option<JsonTransformConf>, side, key: &str, errs: &mut Errors| {
        c.as_ref()
            .map(|c| FilterSpec::JsonTransform(side, json_steps(c, &format!("{path}.{key}"), errs)))
    };
    let mut out = Vec::new();
    out.extend(
        (req == Some(XmlDirection::XmlToJson))
            .then(|| convert(BodySide::Request, XmlDirection::XmlToJson)),
    );
    out.extend(json(
        &t.request_json,
        BodySide::Request,
        "request_json",
        errs,
    ));
    out.extend(
        (req == Some(XmlDirection::JsonToXml))
            .then(|| convert(BodySide::Request, XmlDirection::JsonToXml)),
    );
    out.extend(
        (resp == Some(XmlDirection::JsonToXml))
            .then(|| convert(BodySide::Response, XmlDirection::JsonToXml)),
    );
    out.extend(json(
        &t.response_json,
        BodySide::Response,
        "response_json",
        errs,
    ));
    out.extend(
        (resp == Some(XmlDirection::XmlToJson))
            .then(|| convert(BodySide::Response, XmlDirection::XmlToJson)),
    );
    for (side, key, list) in [
        (BodySide::Request, "request_replace", &t.request_replace),
        (BodySide::Response, "response_replace", &t.response_replace),
    ] {
        if !list.is_empty() {
            let spec = replace(
                list,
                t.replace_types.as_deref(),
                &format!("{path}.{key}"),
                errs,
            );
            out.push(FilterSpec::Replace(side, spec));
        }
    }
    if t.replace_types.is_some() && t.request_replace.is_empty() && t.response_replace.is_empty() {
        errs.push(
            format!("{path}.replace_types"),
            "replace_types goes with request_replace or response_replace",
        );
    }
    if out.is_empty() && errs.0.len() == before {
        errs.push(
            path,
            "give at least one of request_json, response_json, request_body, response_body, request_replace, response_replace",
        );
    }
    out
}

/// The text replacements of one side, and the media types they edit.
fn replace(
    list: &[crate::raw::ReplaceConf],
    types: Option<&[String]>,
    path: &str,
    errs: &mut Errors,
) -> ReplaceSpec {
    let mut pairs: Vec<(String, String)> = Vec::new();
    for (i, r) in list.iter().enumerate() {
        if r.from.is_empty() {
            errs.push(format!("{path}[{i}].from"), "give the text to replace");
        } else if r.from.len() > 1024 {
            // Bounds what a pass holds back between chunks.
            errs.push(format!("{path}[{i}].from"), "at most 1024 bytes");
        } else if pairs.iter().any(|(f, _)| *f == r.from) {
            errs.push(
                format!("{path}[{i}].from"),
                format!("`{}` is already replaced by an earlier entry", r.from),
            );
        } else {
            pairs.push((r.from.clone(), r.to.clone()));
        }
    }
    let types = match types {
        None => DEFAULT_REPLACE_TYPES
            .iter()
            .map(|t| t.to_string())
            .collect(),
        Some(list) => {
            let at = path.rsplit_once('.').map_or(path, |(p, _)| p);
            for (i, t) in list.iter().enumerate() {
                let ok = t
                    .split_once('/')
                    .is_some_and(|(a, b)| !a.is_empty() && !b.is_empty() && !a.contains('*'));
                if !ok {
                    errs.push(
                        format!("{at}.replace_types[{i}]"),
                        format!("`{t}` is not a media type like `text/html`, `text/*` or `application/*+json`"),
                    );
                }
            }
            list.iter().map(|t| t.to_ascii_lowercase()).collect()
        }
    };
    ReplaceSpec { pairs, types }
}

/// Whether `p` is a JSON Pointer below the root (reported at `key` when not).
fn pointer(p: &str, key: String, errs: &mut Errors) -> bool {
    let ok = p.starts_with('/');
    if !ok {
        errs.push(
            key,
            format!("`{p}` is not a JSON Pointer; expected a form like `/user/name`"),
        );
    }
    ok
}

fn json_steps(c: &JsonTransformConf, path: &str, errs: &mut Errors) -> Vec<JsonStep> {
    let before = errs.0.len();
    let mut steps = Vec::new();
    if let Some(u) = &c.unwrap {
        if pointer(u, format!("{path}.unwrap"), errs) {
            steps.push(JsonStep::Unwrap(u.clone()));
        }
    }
    for (at, to) in &c.rename {
        if pointer(at, format!("{path}.rename"), errs) {
            if to.is_empty() || to.contains('/') {
                errs.push(
                    format!("{path}.rename"),
                    format!("`{to}` is not a key name (no `/`)"),
                );
            } else {
                steps.push(JsonStep::Rename {
                    at: at.clone(),
                    to: to.clone(),
                });
            }
        }
    }
    for (i, m) in c.moves.iter().enumerate() {
        let from = pointer(&m.from, format!("{path}.move[{i}].from"), errs);
        if pointer(&m.to, format!("{path}.move[{i}].to"), errs) && from {
            steps.push(JsonStep::Move {
                from: m.from.clone(),
                to: m.to.clone(),
            });
        }
    }
    for (i, at) in c.remove.iter().enumerate() {
        if pointer(at, format!("{path}.remove[{i}]"), errs) {
            steps.push(JsonStep::Remove(at.clone()));
        }
    }
    for (at, value) in c.add.iter().chain(&c.set) {
        if let Some(Err(msg)) = value.as_str().map(parse_template) {
            errs.push(
                format!(
                    "{path}.{}",
                    if c.add.contains_key(at) { "add" } else { "set" }
                ),
                msg,
            );
        }
    }
    for (at, value) in &c.add {
        if pointer(at, format!("{path}.add"), errs) {
            steps.push(JsonStep::Add {
                at: at.clone(),
                value: value.clone(),
            });
        }
    }
    for (at, value) in &c.set {
        if pointer(at, format!("{path}.set"), errs) {
            steps.push(JsonStep::Set {
                at: at.clone(),
                value: value.clone(),
            });
        }
    }
    if let Some(w) = &c.wrap {
        if w.is_empty() {
            errs.push(
                format!("{path}.wrap"),
                "name the key the body is wrapped in",
            );
        } else {
            steps.push(JsonStep::Wrap(w.clone()));
        }
    }
    if steps.is_empty() && errs.0.len() == before {
        errs.push(
            path,
            "give at least one of unwrap, rename, move, remove, add, set, wrap",
        );
    }
    steps
}

fn status(
    map: &BTreeMap<String, u16>,
    pages: &BTreeMap<String, ErrorPageConf>,
    path: &str,
    errs: &mut Errors,
) -> StatusSpec {
    let mut spec = StatusSpec::default();
    for (from, to) in map {
        let at = format!("{path}.status_map.{from}");
        match from.parse::<u16>() {
            Ok(f) if (200..=599).contains(&f) => {
                if (200..=599).contains(to) {
                    spec.map.push((f, *to));
                } else {
                    errs.push(at, format!("{to} is not a status from 200 to 599"));
                }
            }
            _ => errs.push(at, format!("`{from}` is not a status from 200 to 599")),
        }
    }
    for (key, page) in pages {
        let at = format!("{path}.error_pages.{key}");
        let (status, class) = match key.as_bytes() {
            [c @ b'4'..=b'5', b'x', b'x'] => (None, Some(u16::from(c - b'0'))),
            _ => match key.parse::<u16>() {
                Ok(s) if (400..=599).contains(&s) => (Some(s), None),
                _ => {
                    errs.push(
                        at,
                        format!("`{key}` is not a status from 400 to 599, `4xx` or `5xx`"),
                    );
                    continue;
                }
            },
        };
        let content_type = page
            .content_type
            .clone()
            .unwrap_or_else(|| "text/html; charset=utf-8".into());
        if http::HeaderValue::from_str(&content_type).is_err() {
            errs.push(format!("{at}.content_type"), "not a header value");
        }
        spec.pages.push(ErrorPage {
            status,
            class,
            body: page.body.clone(),
            content_type,
        });
    }
    spec
}

fn fault(f: &FaultConf, path: &str, errs: &mut Errors) -> FaultSpec {
    let mut share = |p: f64, key: &str| {
        if !(0.0..=100.0).contains(&p) {
            errs.push(
                format!("{path}.{key}.percent"),
                format!("{p} is not a percentage from 0 to 100"),
            );
        }
        p / 100.0
    };
    let abort = f
        .abort
        .as_ref()
        .map(|a| (share(a.percent, "abort"), a.status));
    let delay = f
        .delay
        .as_ref()
        .map(|d| (share(d.percent, "delay"), d.duration.0));
    if let Some((_, s)) = abort {
        if !(200..=599).contains(&s) {
            errs.push(
                format!("{path}.abort.status"),
                format!("{s} is not a status from 200 to 599"),
            );
        }
    }
    if delay.is_some_and(|(_, d)| d > Duration::from_secs(3600)) {
        errs.push(
            format!("{path}.delay.duration"),
            "a delay of more than an hour is a mistake",
        );
    }
    if abort.is_none() && delay.is_none() {
        errs.push(path, "give abort, delay or both");
    }
    let only_with_header = f.only_with_header.as_ref().and_then(|h| {
        match http::HeaderName::from_bytes(h.as_bytes()) {
            Ok(n) => Some(n.as_str().to_string()),
            Err(_) => {
                errs.push(
                    format!("{path}.only_with_header"),
                    format!("`{h}` is not a header name"),
                );
                None
            }
        }
    });
    FaultSpec {
        abort,
        delay,
        only_with_header,
    }
}

fn rewrite(w: &RewriteConf, matcher: &MatchSpec, path: &str, errs: &mut Errors) -> RewriteSpec {
    let mut names: Vec<String> = Vec::new();
    let source = match (&w.regex, &matcher.path) {
        (Some(re), _) => match regex::Regex::new(re) {
            Ok(compiled) => {
                names = group_names(&compiled);
                CaptureSource::Regex(re.clone())
            }
            Err(e) => {
                errs.push(
                    format!("{path}.regex"),
                    format!(
                        "not a regular expression: {}",
                        super::routes::first_line(&e.to_string())
                    ),
                );
                CaptureSource::None
            }
        },
        (None, _) => {
            let (source, found) = route_captures(matcher);
            names = found;
            source
        }
    };
    let tpl_path = w.path.as_ref().and_then(|p| {
        if !p.starts_with('/') {
            errs.push(format!("{path}.path"), format!("`{p}` must start with `/`"));
            return None;
        }
        match parse_template_with(p, &names) {
            Ok(t) => Some(t),
            Err(msg) => {
                let known = if names.is_empty() {
                    " (the route's match has no captures; set rewrite.regex)".to_string()
                } else {
                    format!(" (captures here: {})", names.join(", "))
                };
                errs.push(format!("{path}.path"), format!("{msg}{known}"));
                None
            }
        }
    });
    let query = w
        .query
        .as_ref()
        .map(|q| query_rules(q, &names, &format!("{path}.query"), errs))
        .unwrap_or_default();
    if w.path.is_none() && w.query.is_none() {
        errs.push(path, "give path, query or both");
    }
    RewriteSpec {
        source,
        path: tpl_path,
        query,
    }
}

/// Where a route's own path captures come from (its `match.path` template or regex),
/// and their names.
pub fn route_captures(matcher: &MatchSpec) -> (CaptureSource, Vec<String>) {
    match &matcher.path {
        PathMatch::Regex(re) => (
            CaptureSource::Regex(re.as_str().to_string()),
            group_names(re),
        ),
        PathMatch::Template(segs) => (
            CaptureSource::Template(segs.clone()),
            segs.iter()
                .filter_map(|s| match s {
                    Segment::Param(n) | Segment::Rest(n) => Some(n.clone()),
                    Segment::Literal(_) => None,
                })
                .collect(),
        ),
        _ => (CaptureSource::None, Vec::new()),
    }
}

/// A regex's group names, and the numbers of all its groups (`1`, `2`, ...).
fn group_names(re: &regex::Regex) -> Vec<String> {
    let named = re.capture_names().flatten().map(str::to_string);
    let numbered = (1..re.captures_len()).map(|i| i.to_string());
    named.chain(numbered).collect()
}

fn query_rules(
    q: &QueryRulesConf,
    names: &[String],
    path: &str,
    errs: &mut Errors,
) -> QueryRulesSpec {
    let tpl = |key: &str, v: &str, errs: &mut Errors| match parse_template_with(v, names) {
        Ok(t) => Some(t),
        Err(msg) => {
            errs.push(format!("{path}.{key}"), msg);
            None
        }
    };
    let pairs = |m: &std::collections::BTreeMap<String, String>, key: &str, errs: &mut Errors| {
        m.iter()
            .filter_map(|(k, v)| Some((k.clone(), tpl(key, v, errs)?)))
            .collect::<Vec<_>>()
    };
    QueryRulesSpec {
        remove: q.remove.clone(),
        rename: q
            .rename
            .iter()
            .map(|(a, b)| (a.clone(), b.clone()))
            .collect(),
        set: pairs(&q.set, "set", errs),
        add: pairs(&q.add, "add", errs),
    }
}

/// Default for `mirror.max_body`.
pub const DEFAULT_MIRROR_MAX_BODY: u64 = 64 * 1024;

/// A route's splits and mirror. Their upstreams must speak the route upstream's
/// protocol: the request is put in its upstream form before a split is chosen.
pub fn traffic(
    r: &RouteConf,
    path: &str,
    primary: Option<&UpstreamSpec>,
    upstreams: &[UpstreamSpec],
    errs: &mut Errors,
) -> TrafficSpec {
    let target =
        |name: &str, at: String, errs: &mut Errors| match upstreams.iter().find(|u| u.name == name)
        {
            None => errs.push(at, format!("no upstream is named `{name}`")),
            Some(u) if primary.is_some_and(|p| p.protocol != u.protocol) => errs.push(
                at,
                format!("upstream `{name}` speaks another HTTP version than the route's upstream"),
            ),
            Some(_) => {}
        };
    let splits = r
        .split
        .iter()
        .flatten()
        .enumerate()
        .filter_map(|(i, s)| {
            let at = format!("{path}.split[{i}]");
            target(&s.upstream, format!("{at}.upstream"), errs);
            split_when(s, &at, errs).map(|when| SplitSpec {
                upstream: s.upstream.clone(),
                when,
            })
        })
        .collect();
    let mirror = r.mirror.as_ref().map(|m| {
        target(&m.upstream, format!("{path}.mirror.upstream"), errs);
        mirror(m, &format!("{path}.mirror"), errs)
    });
    let versioning = r.versioning.as_ref().map(|v| {
        let at = format!("{path}.versioning");
        if r.split.is_some() {
            errs.push(&at, "a route has versions or splits, not both");
        }
        let route_upstream = r.upstream.clone().unwrap_or_default();
        for (i, ver) in v.versions.iter().enumerate() {
            if let Some(u) = &ver.upstream {
                target(u, format!("{at}.versions[{i}].upstream"), errs);
            }
        }
        versioning(v, &route_upstream, &at, errs)
    });
    TrafficSpec {
        splits,
        mirror,
        versioning,
    }
}

fn versioning(
    v: &VersioningConf,
    route_upstream: &str,
    at: &str,
    errs: &mut Errors,
) -> VersioningSpec {
    let by = match v.by.as_str() {
        "path" => {
            if v.name.is_some() {
                errs.push(format!("{at}.name"), "a path version has no name to set");
            }
            VersionBy::Path
        }
        "header" => {
            let n = v.name.clone().unwrap_or_else(|| "api-version".into());
            if http::HeaderName::from_bytes(n.as_bytes()).is_err() {
                errs.push(format!("{at}.name"), format!("`{n}` is not a header name"));
            }
            VersionBy::Header(n.to_ascii_lowercase())
        }
        "media_type" => VersionBy::MediaType(v.name.clone().unwrap_or_else(|| "version".into())),
        "query" => VersionBy::Query(v.name.clone().unwrap_or_else(|| "version".into())),
        other => {
            errs.push(
                format!("{at}.by"),
                format!("`{other}`: expected path, header, media_type or query"),
            );
            VersionBy::Path
        }
    };
    if v.versions.is_empty() {
        errs.push(format!("{at}.versions"), "list at least one version");
    }
    super::check_unique(
        v.versions
            .iter()
            .enumerate()
            .map(|(i, x)| (i, x.name.as_str())),
        &format!("{at}.versions"),
        errs,
    );
    if let Some(d) = &v.default {
        if !v.versions.iter().any(|x| &x.name == d) {
            errs.push(
                format!("{at}.default"),
                format!("no version is named `{d}`"),
            );
        }
    }
    let unknown_status = v.unknown_status.unwrap_or(400);
    if ![400, 404].contains(&unknown_status) {
        errs.push(format!("{at}.unknown_status"), "expected 400 or 404");
    }
    let time = |s: &Option<String>, key: String, errs: &mut Errors| {
        let s = s.as_ref()?;
        match s.parse::<jiff::Timestamp>() {
            Ok(t) => Some(t.as_second()),
            Err(_) => {
                errs.push(
                    key,
                    format!("`{s}` is not an RFC 3339 time like `2026-06-30T00:00:00Z`"),
                );
                None
            }
        }
    };
    let versions = v
        .versions
        .iter()
        .enumerate()
        .map(|(i, x)| {
            let vat = format!("{at}.versions[{i}]");
            if x.name.is_empty() || x.name.contains(['/', '?', '#', ' ']) {
                errs.push(
                    format!("{vat}.name"),
                    "a version name is one path segment (no `/`, `?`, `#`, space)",
                );
            }
            if let Some(l) = &x.link {
                if http::HeaderValue::from_str(l).is_err() || l.contains(['<', '>']) {
                    errs.push(format!("{vat}.link"), "not a URL that fits a Link header");
                }
            }
            VersionSpec {
                name: x.name.clone(),
                upstream: x
                    .upstream
                    .clone()
                    .unwrap_or_else(|| route_upstream.to_string()),
                deprecated: time(&x.deprecated, format!("{vat}.deprecated"), errs),
                sunset: time(&x.sunset, format!("{vat}.sunset"), errs),
                link: x.link.clone(),
            }
        })
        .collect();
    VersioningSpec {
        by,
        default: v.default.clone(),
        unknown_status,
        versions,
    }
}

fn split_when(s: &SplitConf, at: &str, errs: &mut Errors) -> Option<SplitWhen> {
    let given = [
        s.weight.is_some(),
        s.header.is_some(),
        s.cookie.is_some(),
        s.consumer_group.is_some(),
    ];
    if given.iter().filter(|g| **g).count() != 1 {
        errs.push(
            at,
            "a split rule has exactly one of weight, header, cookie and consumer_group",
        );
        return None;
    }
    if s.value.is_some() && s.header.is_none() && s.cookie.is_none() {
        errs.push(
            format!("{at}.value"),
            "`value` goes with `header` or `cookie`",
        );
    }
    if s.sticky.is_some() && s.weight.is_none() {
        errs.push(format!("{at}.sticky"), "`sticky` goes with `weight`");
    }
    if let Some(w) = s.weight {
        if !(0.0..=100.0).contains(&w) {
            errs.push(
                format!("{at}.weight"),
                format!("{w} is not a percentage from 0 to 100"),
            );
        }
        return Some(SplitWhen::Weight {
            share: w / 100.0,
            sticky: s.sticky.unwrap_or(false),
        });
    }
    if let Some(h) = &s.header {
        if http::HeaderName::from_bytes(h.as_bytes()).is_err() {
            errs.push(
                format!("{at}.header"),
                format!("`{h}` is not a header name"),
            );
            return None;
        }
        return Some(SplitWhen::Header {
            name: h.to_ascii_lowercase(),
            value: s.value.clone(),
        });
    }
    if let Some(c) = &s.cookie {
        return Some(SplitWhen::Cookie {
            name: c.clone(),
            value: s.value.clone(),
        });
    }
    s.consumer_group.clone().map(SplitWhen::ConsumerGroup)
}

fn mirror(m: &MirrorConf, at: &str, errs: &mut Errors) -> MirrorSpec {
    let percent = m.percent.unwrap_or(100.0);
    if !(0.0..=100.0).contains(&percent) {
        errs.push(
            format!("{at}.percent"),
            format!("{percent} is not a percentage from 0 to 100"),
        );
    }
    MirrorSpec {
        upstream: m.upstream.clone(),
        share: percent / 100.0,
        max_body: m.max_body.map_or(DEFAULT_MIRROR_MAX_BODY, |b| b.0),
    }
}

/// Routes that look like they carry streams (an HTTP/2 upstream, as gRPC needs, or a
/// match on a gRPC or event-stream type) yet have filters that read whole bodies: the
/// streams those filters apply to are buffered up to `body_buffer_limit`.
pub fn stream_warnings(routes: &[RouteSpec], upstreams: &[UpstreamSpec]) -> Vec<String> {
    let mut out = Vec::new();
    for r in routes {
        let readers: Vec<&str> = r
            .filters
            .iter()
            .filter_map(|f| match f {
                FilterSpec::Validate(v) if v.body.is_some() || v.response_body.is_some() => {
                    Some("validate")
                }
                FilterSpec::JsonTransform(BodySide::Request, _) => Some("transform.request_json"),
                FilterSpec::JsonTransform(BodySide::Response, _) => Some("transform.response_json"),
                FilterSpec::XmlConvert(BodySide::Request, ..) => Some("transform.request_body"),
                FilterSpec::XmlConvert(BodySide::Response, ..) => Some("transform.response_body"),
                FilterSpec::Status(s) if !s.pages.is_empty() => Some("error_pages"),
                // Its operations may have JSON bodies to read (known when it is read).
                FilterSpec::OpenApi(_) => Some("openapi"),
                FilterSpec::ExternalAuth(e) if e.body_limit.is_some() => {
                    Some("external_auth.body_limit")
                }
                _ => None,
            })
            .collect();
        if readers.is_empty() {
            continue;
        }
        let h2 = match &r.action {
            ActionSpec::Proxy(p) => upstreams
                .iter()
                .any(|u| u.name == p.upstream && u.protocol == UpstreamProtocol::Http2),
            _ => false,
        };
        let streamy = r.matcher.headers.iter().any(|f| {
            let value = match &f.kind {
                FieldKind::Exact(v) => v.to_ascii_lowercase(),
                FieldKind::Regex(re) => re.as_str().to_ascii_lowercase(),
                _ => String::new(),
            };
            value.contains("grpc") || value.contains("event-stream")
        });
        if h2 || streamy {
            out.push(format!(
                "routes `{}`: {} read whole bodies; the streams they apply to (gRPC, server-sent events) are buffered up to body_buffer_limit ({} bytes) instead of streamed",
                r.name,
                readers.join(", "),
                r.body_buffer_limit
            ));
        }
    }
    out
}
