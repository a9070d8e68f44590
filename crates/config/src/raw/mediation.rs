//! Raw mediation settings of a route: CORS, request validation, JSON body transforms,
//! status mapping and error pages, and fault injection.

use crate::units::HumanDuration;
use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;

/// `cors`: the rules, or `false` on a route to turn the global ones off.
#[derive(Debug, Clone)]
pub enum CorsSwitch {
    Off,
    On(CorsConf),
}

/// `[cors]` or a route's `cors` table.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorsConf {
    /// Exact origins (`https://app.example.com`), wildcard subdomains
    /// (`https://*.example.com`), or `*`.
    #[serde(default)]
    pub allow_origins: Vec<String>,
    /// Regular expressions an origin must match whole.
    #[serde(default)]
    pub allow_origin_regex: Vec<String>,
    pub allow_methods: Option<Vec<String>>,
    /// Request headers a preflight may ask for; `*` is any.
    pub allow_headers: Option<Vec<String>>,
    #[serde(default)]
    pub expose_headers: Vec<String>,
    pub allow_credentials: Option<bool>,
    pub max_age: Option<HumanDuration>,
    /// The status a refused preflight gets (default 403).
    pub preflight_refusal: Option<u16>,
}

/// A route's `validate` table: JSON Schemas for the request (and, report-only, the
/// response).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValidateConf {
    /// JSON Schema of the request body (draft 2020-12 unless `$schema` says draft 7).
    pub body: Option<Value>,
    /// An object schema whose properties are query parameters.
    pub query: Option<Value>,
    /// An object schema whose properties are request headers (lower-case names).
    pub headers: Option<Value>,
    /// An object schema whose properties are the route's path parameters (the names
    /// of its `match.path` template or of its regex's named groups).
    pub path: Option<Value>,
    /// A request without a body is refused (default: true when `body` is set).
    pub body_required: Option<bool>,
    /// JSON Schema of response bodies; mismatches are logged and counted, never refused.
    pub response_body: Option<Value>,
}

/// A JSON body transform (`transform.request_json` / `transform.response_json`). The
/// steps run in this order: unwrap, rename, move, remove, add, set, wrap.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonTransformConf {
    /// The body becomes the value at this pointer.
    pub unwrap: Option<String>,
    /// Pointer -> new name of the last key, in place.
    #[serde(default)]
    pub rename: BTreeMap<String, String>,
    /// `{ from, to }` pointers, in order (a table would lose it).
    #[serde(default, rename = "move")]
    pub moves: Vec<MoveConf>,
    #[serde(default)]
    pub remove: Vec<String>,
    /// Pointer -> value, only where nothing is.
    #[serde(default)]
    pub add: BTreeMap<String, Value>,
    /// Pointer -> value, replacing what is there. Strings are templates.
    #[serde(default)]
    pub set: BTreeMap<String, Value>,
    /// The body becomes `{ NAME: body }`.
    pub wrap: Option<String>,
}

/// One `move` step of a JSON transform.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MoveConf {
    pub from: String,
    pub to: String,
}

/// A route's `transform` table (the body parts; header rules have their own keys).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransformConf {
    pub request_json: Option<JsonTransformConf>,
    pub response_json: Option<JsonTransformConf>,
    /// `xml_to_json` or `json_to_xml`: what the request body is turned into upstream.
    pub request_body: Option<String>,
    /// `xml_to_json` or `json_to_xml`: what the response body is turned into.
    pub response_body: Option<String>,
    /// The root element of JSON turned into XML when it has no single top key
    /// (default `root`).
    pub xml_root: Option<String>,
    /// Text replaced in request bodies as they stream, in order of priority.
    #[serde(default)]
    pub request_replace: Vec<ReplaceConf>,
    /// Text replaced in response bodies as they stream (NGINX's `sub_filter`).
    #[serde(default)]
    pub response_replace: Vec<ReplaceConf>,
    /// Media types whose bodies the replaces edit (default: text, JSON, XML and
    /// JavaScript ones).
    pub replace_types: Option<Vec<String>>,
}

/// One text replacement: every `from` becomes `to`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplaceConf {
    pub from: String,
    pub to: String,
}

/// A route's `rewrite`: the upstream path from a template over the path's captures,
/// and query parameter edits.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RewriteConf {
    /// Matched against the client's path; its groups (`(?P<id>...)` or `$1`-style
    /// numbers) fill the template. Default: the route's own `match.path` template or
    /// `match.regex`.
    pub regex: Option<String>,
    /// `/v2/accounts/{id}`: captures and template values.
    pub path: Option<String>,
    pub query: Option<QueryRulesConf>,
}

/// Query parameter edits: remove, rename, set (replace), add (append), in that order.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryRulesConf {
    #[serde(default)]
    pub remove: Vec<String>,
    #[serde(default)]
    pub rename: BTreeMap<String, String>,
    #[serde(default)]
    pub set: BTreeMap<String, String>,
    #[serde(default)]
    pub add: BTreeMap<String, String>,
}

/// One `split` rule of a route: requests it selects go to `upstream` instead of the
/// route's. Exactly one condition: `weight` (a percentage), `header`, `cookie` or
/// `consumer_group`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplitConf {
    pub upstream: String,
    pub weight: Option<f64>,
    pub header: Option<String>,
    pub cookie: Option<String>,
    /// With `header` or `cookie`: the value it must have (default: present).
    pub value: Option<String>,
    pub consumer_group: Option<String>,
    /// A weighted split keeps each client on one side (by consumer, else address).
    pub sticky: Option<bool>,
}

/// `mirror`: a copy of a share of requests sent to another upstream, answer ignored.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MirrorConf {
    pub upstream: String,
    /// Share of requests mirrored (default 100).
    pub percent: Option<f64>,
    /// Bodies up to this size go along (default 64KiB); a larger one is not mirrored.
    pub max_body: Option<crate::units::ByteSize>,
}

/// `versioning`: versions of one API, told apart by path, header, media type or query.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VersioningConf {
    /// `path` (the first segment, e.g. `/v2/...`), `header`, `media_type` or `query`.
    pub by: String,
    /// The header (default `api-version`), media type parameter or query parameter
    /// (default `version`) that names the version.
    pub name: Option<String>,
    /// The version of requests that name none (none: they get the unknown answer).
    pub default: Option<String>,
    /// Status for an unknown version: 400 (default) or 404.
    pub unknown_status: Option<u16>,
    pub versions: Vec<VersionConf>,
}

/// One version of an API.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VersionConf {
    pub name: String,
    /// Default: the route's upstream.
    pub upstream: Option<String>,
    /// RFC 3339 time since which it is deprecated (`Deprecation`, RFC 9745).
    pub deprecated: Option<String>,
    /// RFC 3339 time it goes away (`Sunset`, RFC 8594).
    pub sunset: Option<String>,
    /// A page about the deprecation or sunset, sent as a `Link`.
    pub link: Option<String>,
}

/// A fixed page for a status (or `4xx` / `5xx`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorPageConf {
    pub body: String,
    pub content_type: Option<String>,
}

/// `fault`: answers and delays injected for resilience tests.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultConf {
    pub abort: Option<FaultAbortConf>,
    pub delay: Option<FaultDelayConf>,
    /// Only requests carrying this header are touched.
    pub only_with_header: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultAbortConf {
    pub percent: f64,
    pub status: u16,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultDelayConf {
    pub percent: f64,
    pub duration: HumanDuration,
}

impl<'de> Deserialize<'de> for CorsSwitch {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = CorsSwitch;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("`false` or a CORS table")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<CorsSwitch, E> {
                if v {
                    Err(E::custom(
                        "`cors = true` says nothing; give a table of rules, or `false`",
                    ))
                } else {
                    Ok(CorsSwitch::Off)
                }
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<CorsSwitch, A::Error> {
                CorsConf::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(CorsSwitch::On)
            }
        }
        d.deserialize_any(V)
    }
}
