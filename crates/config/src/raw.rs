//! Raw config: structs that mirror the file exactly (`*Conf`), unknown keys rejected.
//!
//! Each top-level section and each element of `listeners`, `routes` and `upstreams` is
//! deserialized on its own, so one bad route does not hide the errors of the next, and
//! within one, each bad key is reported before the next is looked at.

use crate::error::ConfigError;
use crate::units::{ByteSize, HumanDuration};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;
use serde_path_to_error::Segment;
use std::collections::BTreeMap;

mod auth;
mod limits;
mod mediation;
mod resilience;
pub use auth::*;
pub use limits::*;
pub use mediation::*;
pub use resilience::*;

/// The whole file. Sections that failed to parse are left at their defaults (and the
/// error list is non-empty, so the result is never used).
#[derive(Debug, Default)]
pub struct RawConfig {
    pub global: GlobalConf,
    pub admin: Option<AdminConf>,
    pub access_log: AccessLogConf,
    pub listeners: Vec<(usize, ListenerConf)>,
    pub routes: Vec<(usize, RouteConf)>,
    pub upstreams: Vec<(usize, UpstreamConf)>,
    pub consumers: Vec<(usize, ConsumerConf)>,
    pub jwt_providers: Vec<(usize, JwtProviderConf)>,
    pub introspection: Vec<(usize, IntrospectionConf)>,
    pub rate_limits: Vec<(usize, RateLimitConf)>,
    pub redis: Option<RedisConf>,
    /// CORS rules for every route without its own `cors`.
    pub cors: Option<CorsConf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GlobalConf {
    pub workers: Option<usize>,
    pub drain_timeout: Option<HumanDuration>,
    pub trusted_proxies: Option<Vec<String>>,
    pub server_name: Option<String>,
    pub via: Option<bool>,
    pub request_id: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConf {
    pub listen: Option<String>,
    pub token: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessLogConf {
    pub enabled: Option<bool>,
    /// `stdout`, `stderr` or a file path.
    pub target: Option<String>,
    /// `json` or `clf`.
    pub format: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerConf {
    pub name: String,
    pub listen: String,
    /// `http` (default), `https`, `redirect` (answers every request with a redirect to
    /// HTTPS), or the layer-4 kinds `tcp`, `udp` and `tls_passthrough`.
    pub protocol: Option<String>,
    pub tls: Option<ListenerTlsConf>,
    pub redirect_port: Option<u16>,
    pub max_connections: Option<usize>,
    pub http2: Option<bool>,
    pub timeouts: Option<ListenerTimeoutsConf>,
    pub limits: Option<LimitsConf>,
    /// `tcp` and `udp` listeners: the upstream every connection goes to;
    /// `tls_passthrough`: the upstream for server names no `sni` entry matches.
    pub upstream: Option<String>,
    /// `tls_passthrough` listeners: upstreams chosen by the ClientHello's server name.
    pub sni: Option<Vec<SniConf>>,
    /// Read a PROXY protocol (v1 or v2) header from trusted peers.
    pub proxy_protocol: Option<bool>,
    /// HTTP listeners: have the kernel hand a connection over only once its first bytes
    /// came (`TCP_DEFER_ACCEPT`). On by default.
    pub defer_accept: Option<bool>,
    /// Client networks let in (all when absent) and kept out, checked on every request.
    pub ip_allow: Option<Vec<String>>,
    pub ip_deny: Option<Vec<String>>,
}

/// One `sni` entry of a `tls_passthrough` listener.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SniConf {
    /// `example.com` or `*.example.com`.
    pub names: Vec<String>,
    pub upstream: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerTlsConf {
    pub certificates: Vec<CertificateConf>,
    pub min_version: Option<String>,
    /// Stateless resumption tickets (TLS 1.2 and 1.3); on by default.
    pub session_tickets: Option<bool>,
    /// Sessions kept for TLS 1.2 clients that resume by session id; 0 turns it off.
    pub session_cache: Option<u64>,
    pub client_ca: Option<String>,
    /// `required` (default when `client_ca` is set) or `optional`.
    pub client_auth: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateConf {
    pub cert: String,
    pub key: String,
    /// Server names this certificate answers for; taken from the certificate when absent.
    pub names: Option<Vec<String>>,
    pub default: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerTimeoutsConf {
    pub header_read: Option<HumanDuration>,
    pub idle: Option<HumanDuration>,
    pub tls_handshake: Option<HumanDuration>,
    /// `udp` listeners: a client flow with no datagram either way for this long ends.
    pub udp_idle: Option<HumanDuration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConf {
    pub max_header_size: Option<ByteSize>,
    pub max_headers: Option<usize>,
    pub max_body_size: Option<ByteSize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConf {
    pub name: String,
    pub listeners: Option<Vec<String>>,
    #[serde(rename = "match", default)]
    pub matches: MatchConf,
    pub upstream: Option<String>,
    pub respond: Option<RespondConf>,
    pub redirect: Option<RedirectConf>,
    pub strip_prefix: Option<String>,
    pub replace_prefix: Option<String>,
    pub host_rewrite: Option<String>,
    pub preserve_host: Option<bool>,
    pub forwarded: Option<bool>,
    pub timeouts: Option<RouteTimeoutsConf>,
    pub max_body_size: Option<ByteSize>,
    pub request_headers: Option<HeaderRulesConf>,
    pub response_headers: Option<HeaderRulesConf>,
    pub auth: Option<AuthConf>,
    pub external_auth: Option<ExternalAuthConf>,
    pub ip_allow: Option<Vec<String>>,
    pub ip_deny: Option<Vec<String>>,
    /// Names of `[[rate_limits]]` policies, all checked.
    pub rate_limits: Option<Vec<String>>,
    pub cors: Option<CorsSwitch>,
    pub validate: Option<ValidateConf>,
    /// An OpenAPI 3.0/3.1 document (YAML or JSON) whose operations this route's
    /// requests are validated against; read when the config is loaded or reloaded.
    pub openapi: Option<String>,
    pub transform: Option<TransformConf>,
    /// Upstream status -> status sent to the client (`{ "404" = 410 }`).
    pub status_map: Option<BTreeMap<String, u16>>,
    /// Status (`502`) or class (`5xx`) -> a fixed page replacing the upstream's body.
    pub error_pages: Option<BTreeMap<String, ErrorPageConf>>,
    pub fault: Option<FaultConf>,
    pub rewrite: Option<RewriteConf>,
    /// Rules sending some requests to other upstreams (canaries), first match wins.
    pub split: Option<Vec<SplitConf>>,
    pub mirror: Option<MirrorConf>,
    pub versioning: Option<VersioningConf>,
    /// The most of a body read whole for a filter that needs it (default 1MiB).
    pub body_buffer_limit: Option<ByteSize>,
}

/// Header edits: `set` replaces, `add` appends, `remove` deletes.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderRulesConf {
    #[serde(default)]
    pub set: BTreeMap<String, String>,
    #[serde(default)]
    pub add: BTreeMap<String, String>,
    #[serde(default)]
    pub remove: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatchConf {
    pub host: Option<OneOrMany>,
    pub path: Option<String>,
    pub prefix: Option<String>,
    pub regex: Option<String>,
    pub method: Option<OneOrMany>,
    #[serde(default)]
    pub headers: Vec<FieldMatchConf>,
    #[serde(default)]
    pub query: Vec<FieldMatchConf>,
}

/// A string or a list of strings.
#[derive(Debug, Deserialize, Clone)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn to_vec(&self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s.clone()],
            OneOrMany::Many(v) => v.clone(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldMatchConf {
    pub name: String,
    pub value: Option<String>,
    pub regex: Option<String>,
    pub present: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RespondConf {
    pub status: Option<u16>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    pub body: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedirectConf {
    pub to: String,
    pub status: Option<u16>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteTimeoutsConf {
    pub request: Option<HumanDuration>,
    pub upstream_response: Option<HumanDuration>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConf {
    pub name: String,
    #[serde(default)]
    pub endpoints: Vec<EndpointConf>,
    /// `http1` (default) or `http2`.
    pub protocol: Option<String>,
    pub balancer: Option<String>,
    /// For hashing balancers: `ip` (default), `header:NAME`, `cookie:NAME` or `query:NAME`.
    pub hash_on: Option<String>,
    pub tls: Option<UpstreamTlsConf>,
    pub pool: Option<PoolConf>,
    pub timeouts: Option<UpstreamTimeoutsConf>,
    /// A new or recovered endpoint's share ramps up over this window.
    pub slow_start: Option<HumanDuration>,
    /// Send to every endpoint when none is healthy, instead of answering 503.
    pub panic_mode: Option<bool>,
    /// How long a drained or removed endpoint may finish its requests.
    pub drain_timeout: Option<HumanDuration>,
    /// How long tunnels (WebSocket, upgrades) to a drained endpoint may stay open.
    pub drain_grace: Option<HumanDuration>,
    pub health_check: Option<HealthCheckConf>,
    pub outlier: Option<OutlierConf>,
    pub breaker: Option<BreakerConf>,
    pub retry: Option<RetryConf>,
    pub sticky: Option<StickyConf>,
    pub discovery: Option<DiscoveryConf>,
    /// `v1` or `v2`: send a PROXY protocol header on each layer-4 connection.
    pub proxy_protocol: Option<String>,
}

/// `"127.0.0.1:9000"` or `{ address = "127.0.0.1:9000", weight = 2 }`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum EndpointConf {
    Address(String),
    Full {
        address: String,
        weight: Option<u32>,
    },
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamTlsConf {
    pub enabled: Option<bool>,
    pub ca: Option<String>,
    pub sni: Option<String>,
    pub verify: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolConf {
    pub max_idle_per_endpoint: Option<usize>,
    pub max_connections_per_endpoint: Option<usize>,
    pub idle_timeout: Option<HumanDuration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamTimeoutsConf {
    pub connect: Option<HumanDuration>,
    pub response_header: Option<HumanDuration>,
    pub idle: Option<HumanDuration>,
}

const TOP_LEVEL: &[&str] = &[
    "global",
    "admin",
    "access_log",
    "listeners",
    "routes",
    "upstreams",
    "consumers",
    "jwt_providers",
    "introspection",
    "rate_limits",
    "redis",
    "cors",
];

/// Splits the tree into sections and deserializes each, collecting every error.
pub fn from_tree(tree: Value, errors: &mut Vec<ConfigError>) -> RawConfig {
    let mut raw = RawConfig::default();
    let Value::Object(mut top) = tree else {
        errors.push(ConfigError::at(
            "",
            "the config must be a table of sections",
        ));
        return raw;
    };
    for key in top.keys() {
        if !TOP_LEVEL.contains(&key.as_str()) {
            errors.push(ConfigError::at(
                key,
                format!("unknown section; expected one of {}", TOP_LEVEL.join(", ")),
            ));
        }
    }
    if let Some(v) = top.remove("global") {
        raw.global = section(v, "global", errors).unwrap_or_default();
    }
    if let Some(v) = top.remove("admin") {
        raw.admin = section(v, "admin", errors);
    }
    if let Some(v) = top.remove("access_log") {
        raw.access_log = section(v, "access_log", errors).unwrap_or_default();
    }
    raw.listeners = list(top.remove("listeners"), "listeners", errors);
    raw.routes = list(top.remove("routes"), "routes", errors);
    raw.upstreams = list(top.remove("upstreams"), "upstreams", errors);
    raw.consumers = list(top.remove("consumers"), "consumers", errors);
    raw.jwt_providers = list(top.remove("jwt_providers"), "jwt_providers", errors);
    raw.introspection = list(top.remove("introspection"), "introspection", errors);
    raw.rate_limits = list(top.remove("rate_limits"), "rate_limits", errors);
    if let Some(v) = top.remove("redis") {
        raw.redis = section(v, "redis", errors);
    }
    if let Some(v) = top.remove("cors") {
        raw.cors = section(v, "cors", errors);
    }
    raw
}

fn list<T: DeserializeOwned>(
    v: Option<Value>,
    name: &str,
    errors: &mut Vec<ConfigError>,
) -> Vec<(usize, T)> {
    match v {
        None => Vec::new(),
        Some(Value::Array(items)) => items
            .into_iter()
            .enumerate()
            .filter_map(|(i, item)| section(item, &format!("{name}[{i}]"), errors).map(|t| (i, t)))
            .collect(),
        Some(_) => {
            errors.push(ConfigError::at(
                name,
                "expected a list (`[[{name}]]` tables)".replace("{name}", name),
            ));
            Vec::new()
        }
    }
}

/// Deserializes one section, reporting every bad key in it. serde stops at the first
/// error, so after each one the offending key is taken out and the section read again.
/// An error inside a list element, or one with no key to take out, ends the section.
fn section<T: DeserializeOwned>(
    mut v: Value,
    path: &str,
    errors: &mut Vec<ConfigError>,
) -> Option<T> {
    let mut removed: Vec<String> = Vec::new();
    // Bounded: each pass removes one key, and a section has few.
    for _ in 0..64 {
        let e = match serde_path_to_error::deserialize::<_, T>(v.clone()) {
            Ok(t) => return removed.is_empty().then_some(t),
            Err(e) => e,
        };
        let segments: Vec<Segment> = e.path().iter().cloned().collect();
        let inner = e.path().to_string();
        let msg = tidy(&e.into_inner().to_string());
        // A key taken out after its own error now reads as missing: already reported.
        if removed
            .iter()
            .any(|k| msg.starts_with(&format!("missing field `{k}`")))
        {
            break;
        }
        let full = if inner == "." || inner.is_empty() {
            path.to_string()
        } else if inner.starts_with('[') {
            format!("{path}{inner}")
        } else {
            format!("{path}.{inner}")
        };
        errors.push(ConfigError::at(full, msg));
        match remove_key(&mut v, &segments) {
            Some(k) => removed.push(k),
            None => break,
        }
    }
    None
}

/// Takes the key at `path` out of a table, returning its name. Only table keys are
/// removed: dropping a list element would shift the indices later errors report.
fn remove_key(v: &mut Value, path: &[Segment]) -> Option<String> {
    let (last, parents) = path.split_last()?;
    let mut at = v;
    for seg in parents {
        at = match seg {
            Segment::Map { key } => at.get_mut(key)?,
            _ => return None,
        };
    }
    match last {
        Segment::Map { key } => at.as_object_mut()?.remove(key).map(|_| key.clone()),
        _ => None,
    }
}

/// serde's untagged-enum message says nothing useful; name the accepted forms instead.
fn tidy(msg: &str) -> String {
    if msg.contains("did not match any variant of untagged enum EndpointConf") {
        return "expected an address string or a table `{ address = \"host:port\", weight = N }`"
            .into();
    }
    if msg.contains("did not match any variant of untagged enum OneOrMany") {
        return "expected a string or a list of strings".into();
    }
    // serde names Rust types; say what to write instead.
    let plain = [
        ("expected usize", "expected a whole number (0 or more)"),
        ("expected u16", "expected a whole number from 0 to 65535"),
        ("expected u32", "expected a whole number (0 or more)"),
        ("expected a sequence", "expected a list"),
        ("expected a map", "expected a table"),
    ];
    for (from, to) in plain {
        if let Some(head) = msg.strip_suffix(from) {
            return format!("{head}{to}");
        }
    }
    msg.to_string()
}
