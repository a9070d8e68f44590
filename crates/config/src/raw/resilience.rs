//! Raw `[upstreams.*]` tables for health and resilience: active checks, outlier
//! detection, the circuit breaker, retries, sticky sessions and DNS discovery.

use crate::units::{ByteSize, HumanDuration};
use serde::Deserialize;

/// `[upstreams.health_check]`: an active probe of every endpoint.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheckConf {
    /// `http` (default) or `tcp`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub interval: Option<HumanDuration>,
    pub jitter: Option<HumanDuration>,
    pub timeout: Option<HumanDuration>,
    pub rise: Option<u32>,
    pub fall: Option<u32>,
    pub method: Option<String>,
    pub path: Option<String>,
    pub host: Option<String>,
    /// `200-399` (default), `200`, or a list such as `"200,204"`.
    pub expect_status: Option<String>,
    /// A substring the body must contain.
    pub expect_body: Option<String>,
}

/// `[upstreams.outlier]`: passive ejection on consecutive failures.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutlierConf {
    pub consecutive_failures: Option<u32>,
    pub base_ejection: Option<HumanDuration>,
    pub max_ejection: Option<HumanDuration>,
    pub max_ejected_percent: Option<u32>,
}

/// `[upstreams.breaker]`: limits and a consecutive-failure breaker for the group.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BreakerConf {
    pub max_connections: Option<usize>,
    pub max_pending: Option<usize>,
    pub max_in_flight: Option<usize>,
    pub consecutive_failures: Option<u32>,
    pub open_for: Option<HumanDuration>,
    pub half_open_requests: Option<u32>,
}

/// `[upstreams.retry]`: which failures are tried again, how often and how fast.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryConf {
    pub retries: Option<u32>,
    pub on_status: Option<Vec<u16>>,
    pub on_timeout: Option<bool>,
    pub per_try_timeout: Option<HumanDuration>,
    pub backoff: Option<HumanDuration>,
    pub max_backoff: Option<HumanDuration>,
    pub budget_percent: Option<u32>,
    pub min_retries_per_second: Option<u32>,
    pub buffer_body: Option<ByteSize>,
}

/// `[upstreams.sticky]`: a signed cookie that names the endpoint.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StickyConf {
    pub cookie: Option<String>,
    pub secret: Option<String>,
    pub ttl: Option<HumanDuration>,
    pub path: Option<String>,
    /// `lax` (default), `strict` or `none`.
    pub same_site: Option<String>,
    pub secure: Option<bool>,
    pub http_only: Option<bool>,
}

/// `[upstreams.discovery]`: endpoints found in DNS, re-resolved as their TTL expires.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiscoveryConf {
    /// `host:port`, resolved to A and AAAA records.
    pub dns: Option<String>,
    /// An SRV name such as `_http._tcp.api.internal`: ports and weights from the records.
    pub srv: Option<String>,
    /// `ip:port` of the name servers to ask; the system's resolv.conf when absent.
    pub nameservers: Option<Vec<String>>,
    pub min_refresh: Option<HumanDuration>,
    pub max_refresh: Option<HumanDuration>,
    /// Weight of each address found through `dns` (SRV records carry their own).
    pub weight: Option<u32>,
}
