//! Validated mediation settings: CORS, request validation, JSON body transforms, status
//! mapping with error pages, and fault injection.

use super::Segment;
use serde_json::Value;
use std::time::Duration;

/// CORS rules of a route (its own, or the global ones).
#[derive(Debug, Clone, PartialEq)]
pub struct CorsSpec {
    pub origins: Vec<OriginRule>,
    /// Upper-case method names.
    pub methods: Vec<String>,
    /// Lower-case header names; `AnyHeader` when `*` was given.
    pub headers: AllowHeaders,
    pub expose: Vec<String>,
    pub credentials: bool,
    pub max_age: Option<Duration>,
    pub preflight_refusal: u16,
}

/// Which origins CORS lets in.
#[derive(Debug, Clone, PartialEq)]
pub enum OriginRule {
    Any,
    /// Lower-case, as browsers serialize an origin.
    Exact(String),
    /// `https://*.example.com`: the scheme, and the suffix after `*` (`.example.com`,
    /// with any port that followed).
    Subdomain {
        scheme: String,
        suffix: String,
    },
    /// A pattern matched against the whole origin.
    Regex(String),
}

/// Request headers a preflight may name.
#[derive(Debug, Clone, PartialEq)]
pub enum AllowHeaders {
    Any,
    List(Vec<String>),
}

/// JSON Schemas a route checks requests against (compiled once per generation).
#[derive(Debug, Clone, PartialEq)]
pub struct ValidateSpec {
    pub body: Option<Value>,
    pub query: Option<Value>,
    pub headers: Option<Value>,
    /// Path parameters, and where their values come from.
    pub path: Option<Value>,
    pub path_source: CaptureSource,
    pub body_required: bool,
    /// Report-only: mismatches are logged and counted.
    pub response_body: Option<Value>,
}

/// One step of a JSON body transform, in the order it runs.
#[derive(Debug, Clone, PartialEq)]
pub enum JsonStep {
    Unwrap(String),
    Rename {
        at: String,
        to: String,
    },
    Move {
        from: String,
        to: String,
    },
    Remove(String),
    /// Only where the pointer finds nothing.
    Add {
        at: String,
        value: Value,
    },
    Set {
        at: String,
        value: Value,
    },
    Wrap(String),
}

/// Which way a body is converted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XmlDirection {
    XmlToJson,
    JsonToXml,
}

/// An XML element name as Gatehouse writes one: a letter or `_` first, then letters,
/// digits, `-`, `_`, `.` or `:`.
pub fn xml_name(n: &str) -> bool {
    let mut chars = n.chars();
    chars.next().is_some_and(|c| c.is_alphabetic() || c == '_')
        && chars.all(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
}

/// Which body a transform edits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodySide {
    Request,
    Response,
}

/// Text replaced in bodies as they stream.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplaceSpec {
    /// `(from, to)`, the earlier winning where two start at one place.
    pub pairs: Vec<(String, String)>,
    /// Lower-case media types: `type/subtype`, `type/*`, or `type/*+suffix`.
    pub types: Vec<String>,
}

/// Media types the replaces edit by default.
pub const DEFAULT_REPLACE_TYPES: [&str; 6] = [
    "text/*",
    "application/json",
    "application/*+json",
    "application/xml",
    "application/*+xml",
    "application/javascript",
];

/// Status mapping and fixed error pages on upstream responses.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StatusSpec {
    /// Upstream status -> client status.
    pub map: Vec<(u16, u16)>,
    pub pages: Vec<ErrorPage>,
}

/// A page for one status, or a class (`5xx` is `class = Some(5)`).
#[derive(Debug, Clone, PartialEq)]
pub struct ErrorPage {
    pub status: Option<u16>,
    pub class: Option<u16>,
    pub body: String,
    pub content_type: String,
}

/// Injected faults.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultSpec {
    /// Share of requests aborted (0..=1) and their status.
    pub abort: Option<(f64, u16)>,
    /// Share of requests delayed (0..=1) and for how long.
    pub delay: Option<(f64, Duration)>,
    /// Lower-case header that must be present for any fault.
    pub only_with_header: Option<String>,
}

/// A piece of a template string: text, or a value filled in per request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplatePart {
    Text(String),
    Var(TemplateVar),
}

/// What a template's `{...}` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplateVar {
    ClientIp,
    RequestId,
    Route,
    Consumer,
    Method,
    Path,
    /// The time now, RFC 3339 in UTC.
    Date,
    /// `{header.NAME}`, lower-case.
    Header(String),
    /// `{query.NAME}`.
    Query(String),
    /// `{claim.NAME}`: a verified token's claim.
    Claim(String),
    /// `{NAME}` in a rewrite: a path parameter or a regex group (by name or number).
    Param(String),
}

/// Where a rewrite's captures come from.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum CaptureSource {
    /// None: the template uses no captures.
    #[default]
    None,
    /// A regex matched against the client's path (the rewrite's or the route's).
    Regex(String),
    /// The route's `match.path` template.
    Template(Vec<Segment>),
}

/// A route's path and query rewrite.
#[derive(Debug, Clone, PartialEq)]
pub struct RewriteSpec {
    pub source: CaptureSource,
    pub path: Option<Vec<TemplatePart>>,
    pub query: QueryRulesSpec,
}

/// Query edits, run in the order of the fields.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct QueryRulesSpec {
    pub remove: Vec<String>,
    pub rename: Vec<(String, String)>,
    pub set: Vec<(String, Vec<TemplatePart>)>,
    pub add: Vec<(String, Vec<TemplatePart>)>,
}

/// Splits `text` into text and `{var}`s; `{{` and `}}` are literal braces.
pub fn parse_template(text: &str) -> Result<Vec<TemplatePart>, String> {
    parse_template_with(text, &[])
}

/// [`parse_template`] where `params` are names of captures (`{id}`, `{1}`) too.
pub fn parse_template_with(text: &str, params: &[String]) -> Result<Vec<TemplatePart>, String> {
    let mut parts = Vec::new();
    let mut lit = String::new();
    let mut rest = text;
    while let Some(i) = rest.find(['{', '}']) {
        lit.push_str(&rest[..i]);
        let tail = &rest[i..];
        if tail.starts_with("{{") || tail.starts_with("}}") {
            lit.push_str(&tail[..1]);
            rest = &tail[2..];
            continue;
        }
        if tail.starts_with('}') {
            return Err(format!("`{text}`: a lone `}}` (write `}}}}` for a brace)"));
        }
        let Some(end) = tail.find('}') else {
            return Err(format!("`{text}`: `{{` is not closed"));
        };
        if !lit.is_empty() {
            parts.push(TemplatePart::Text(std::mem::take(&mut lit)));
        }
        let name = &tail[1..end];
        let var = if params.iter().any(|p| p == name) {
            TemplateVar::Param(name.into())
        } else {
            template_var(name)?
        };
        parts.push(TemplatePart::Var(var));
        rest = &tail[end + 1..];
    }
    lit.push_str(rest);
    if !lit.is_empty() {
        parts.push(TemplatePart::Text(lit));
    }
    Ok(parts)
}

fn template_var(name: &str) -> Result<TemplateVar, String> {
    let v = match name {
        "client_ip" => TemplateVar::ClientIp,
        "request_id" => TemplateVar::RequestId,
        "route" => TemplateVar::Route,
        "consumer" => TemplateVar::Consumer,
        "method" => TemplateVar::Method,
        "path" => TemplateVar::Path,
        "date" => TemplateVar::Date,
        _ => match name.split_once('.') {
            Some(("header", h)) if !h.is_empty() => TemplateVar::Header(h.to_ascii_lowercase()),
            Some(("query", q)) if !q.is_empty() => TemplateVar::Query(q.into()),
            Some(("claim", c)) if !c.is_empty() => TemplateVar::Claim(c.into()),
            _ => {
                return Err(format!(
                    "`{{{name}}}` is not a template value; expected client_ip, request_id, route, consumer, method, path, date, header.NAME, query.NAME or claim.NAME"
                ))
            }
        },
    };
    Ok(v)
}

#[cfg(test)]
mod template_tests {
    use super::*;

    #[test]
    fn templates_split_into_text_and_values() {
        let t = parse_template("ip={client_ip}, {{x}} {header.X-Id}").unwrap();
        assert_eq!(
            t,
            vec![
                TemplatePart::Text("ip=".into()),
                TemplatePart::Var(TemplateVar::ClientIp),
                TemplatePart::Text(", {x} ".into()),
                TemplatePart::Var(TemplateVar::Header("x-id".into())),
            ]
        );
        assert!(parse_template("{nope}").is_err());
        assert!(parse_template("{client_ip").is_err());
        assert!(parse_template("a}b").is_err());
    }
}

/// Where a route's requests go besides its upstream.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TrafficSpec {
    /// In order; the first that selects a request sends it to its upstream.
    pub splits: Vec<SplitSpec>,
    pub mirror: Option<MirrorSpec>,
    pub versioning: Option<VersioningSpec>,
}

/// Versions of one API on a route.
#[derive(Debug, Clone, PartialEq)]
pub struct VersioningSpec {
    pub by: VersionBy,
    pub default: Option<String>,
    pub unknown_status: u16,
    pub versions: Vec<VersionSpec>,
}

/// Where a request names its version.
#[derive(Debug, Clone, PartialEq)]
pub enum VersionBy {
    /// The first path segment, taken off before the request goes upstream.
    Path,
    /// A lower-case header name.
    Header(String),
    /// A parameter of an `Accept` media range (`application/vnd.x+json; version=2`).
    MediaType(String),
    Query(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct VersionSpec {
    pub name: String,
    pub upstream: String,
    /// Unix seconds.
    pub deprecated: Option<i64>,
    /// Unix seconds.
    pub sunset: Option<i64>,
    pub link: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SplitSpec {
    pub upstream: String,
    pub when: SplitWhen,
}

/// What selects a request for a split.
#[derive(Debug, Clone, PartialEq)]
pub enum SplitWhen {
    /// A share (0..=1); sticky by consumer, else client address, when asked.
    Weight {
        share: f64,
        sticky: bool,
    },
    /// A lower-case header, with this value or just present.
    Header {
        name: String,
        value: Option<String>,
    },
    Cookie {
        name: String,
        value: Option<String>,
    },
    ConsumerGroup(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct MirrorSpec {
    pub upstream: String,
    /// Share of requests mirrored (0..=1).
    pub share: f64,
    pub max_body: u64,
}
