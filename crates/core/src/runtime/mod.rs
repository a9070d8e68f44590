//! The compiled config snapshot ([`Runtime`]) and the [`ConfigStore`] that swaps it
//! atomically. `compile` turns a validated spec into route tables, upstream groups,
//! TLS acceptors and the access log, reusing unchanged upstream groups (and so their
//! pools and counters) from the previous generation.

mod compile;

use crate::access_log::AccessLog;
use crate::metrics::RouteMetrics;
use crate::route::RouteTable;
use crate::upstream::UpstreamGroup;
use arc_swap::ArcSwap;
use bytes::Bytes;
use gatehouse_config::spec::{IpNet, ListenerSpec, ProxySpec, RedirectSpec, Spec};
use http::{HeaderMap, HeaderValue, StatusCode};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

mod auth;
mod limits;
mod traffic;

pub use auth::AuthState;
pub use compile::{compile, openapi_documents, CompileError};
pub use limits::LimitState;

/// One generation of compiled config. Immutable; requests hold an `Arc` to the one they
/// started on, so a reload never changes a request midway.
pub struct Runtime {
    pub generation: u64,
    /// Hash of the config text, shown by the admin API.
    pub hash: String,
    pub loaded_at: SystemTime,
    pub spec: Spec,
    /// Looked up by name on every request and connection: foldhash, not SipHash (the
    /// names are config, not client input).
    pub listeners: HashMap<String, Arc<ListenerRt>, foldhash::fast::RandomState>,
    pub upstreams: HashMap<String, Arc<UpstreamGroup>>,
    pub access_log: Option<Arc<AccessLog>>,
    pub trusted_proxies: Vec<IpNet>,
    /// `Via` entries for HTTP/1.x and HTTP/2 requests; none with `global.via = false`.
    pub via_h1: Option<HeaderValue>,
    pub via_h2: Option<HeaderValue>,
    /// Consumers and JWT providers, with the key-set fetch loops of this generation.
    pub auth: AuthState,
    /// Rate-limit policies with their counts (carried over reloads).
    pub limits: LimitState,
}

/// A listener's compiled settings and routes.
pub struct ListenerRt {
    pub spec: ListenerSpec,
    pub name: Arc<str>,
    pub routes: RouteTable<Arc<Route>>,
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// Metrics for requests no route matched.
    pub no_route: Arc<RouteMetrics>,
    /// `http` or `https`, for X-Forwarded-Proto.
    pub scheme: &'static str,
    /// Open and accepted client connections.
    pub active: prometheus_client::metrics::gauge::Gauge,
    /// Idle HTTP/1 connections parked (see `http::park`).
    pub parked: prometheus_client::metrics::gauge::Gauge,
    pub connections: prometheus_client::metrics::counter::Counter,
    /// Layer-4 listeners: where connections go (`None` on HTTP listeners).
    pub l4: Option<crate::l4::L4Target>,
    /// Layer-4 bytes from and to clients.
    pub l4_bytes: Arc<crate::l4::ByteCounters>,
}

/// A compiled route.
pub struct Route {
    pub name: Arc<str>,
    pub action: Action,
    pub max_body_size: Option<u64>,
    /// The most of a body read whole for a filter's body hook.
    pub body_buffer_limit: u64,
    pub request_timeout: Option<Duration>,
    pub metrics: Arc<RouteMetrics>,
    pub filters: crate::filter::Chain,
    /// A query parameter that holds a secret (an API key), masked in access log lines.
    pub redact_query: Option<Arc<str>>,
}

/// What a route does with a request.
pub enum Action {
    Proxy(ProxyAction),
    Respond(Respond),
    Redirect(RedirectSpec),
}

pub struct ProxyAction {
    pub group: Arc<UpstreamGroup>,
    pub spec: ProxySpec,
    pub host_rewrite: Option<HeaderValue>,
    /// Other upstreams some requests go to (canaries), first match wins.
    pub splits: Vec<Split>,
    pub mirror: Option<Mirror>,
    pub versions: Option<Versions>,
}

/// A route's API versions.
pub struct Versions {
    pub by: gatehouse_config::spec::VersionBy,
    /// Index of the default version.
    pub default: Option<usize>,
    pub unknown: StatusCode,
    pub list: Vec<Version>,
}

/// One API version: where it goes and the headers its responses get.
pub struct Version {
    pub name: String,
    pub action: ProxyAction,
    /// `Deprecation`, `Sunset`, `Link`.
    pub headers: Vec<(http::HeaderName, HeaderValue)>,
}

impl ProxyAction {
    /// An action with no versions, splits or mirror of its own (a version's, a
    /// split's, or a side request's).
    pub fn plain(
        group: Arc<UpstreamGroup>,
        spec: ProxySpec,
        host_rewrite: Option<HeaderValue>,
    ) -> Self {
        ProxyAction {
            group,
            spec,
            host_rewrite,
            splits: Vec::new(),
            mirror: None,
            versions: None,
        }
    }
}

/// A split: the requests it selects go to its action (same route settings, another
/// upstream; it has no splits or mirror of its own).
pub struct Split {
    pub when: gatehouse_config::spec::SplitWhen,
    pub action: ProxyAction,
}

/// Where mirrored copies go.
pub struct Mirror {
    pub group: Arc<UpstreamGroup>,
    pub share: f64,
    pub max_body: u64,
}

/// A fixed response, prebuilt.
pub struct Respond {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// Holds the current [`Runtime`] for the request path.
pub struct ConfigStore {
    current: ArcSwap<Runtime>,
}

// === impl ConfigStore ===

impl ConfigStore {
    pub fn new(first: Runtime) -> Self {
        ConfigStore {
            current: ArcSwap::from_pointee(first),
        }
    }

    /// The current generation; cheap, taken once per request.
    pub fn load(&self) -> Arc<Runtime> {
        self.current.load_full()
    }

    pub fn swap(&self, next: Runtime) -> Arc<Runtime> {
        self.current.swap(Arc::new(next))
    }
}

// === impl Runtime ===

impl Runtime {
    /// Whether `ip` is a trusted proxy whose forwarding headers are kept.
    pub fn is_trusted(&self, ip: std::net::IpAddr) -> bool {
        self.trusted_proxies.iter().any(|n| n.contains(ip))
    }
}
