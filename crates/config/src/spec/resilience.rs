//! Validated health and resilience settings of an upstream group.

use std::time::Duration;

/// Everything about keeping an upstream group healthy, besides how it balances.
#[derive(Debug, Clone, PartialEq)]
pub struct ResilienceSpec {
    pub health_check: Option<HealthCheckSpec>,
    pub outlier: Option<OutlierSpec>,
    pub breaker: BreakerSpec,
    pub retry: Option<RetrySpec>,
    pub sticky: Option<StickySpec>,
    pub discovery: Option<DiscoverySpec>,
    /// Zero is off.
    pub slow_start: Duration,
    pub panic_mode: bool,
    pub drain_timeout: Duration,
    pub drain_grace: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HealthCheckSpec {
    pub kind: CheckKind,
    pub interval: Duration,
    pub jitter: Duration,
    pub timeout: Duration,
    pub rise: u32,
    pub fall: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub enum CheckKind {
    Tcp,
    Http(HttpCheckSpec),
}

#[derive(Debug, Clone, PartialEq)]
pub struct HttpCheckSpec {
    pub method: http::Method,
    pub path: String,
    /// `None` sends the endpoint's `host:port`.
    pub host: Option<String>,
    /// Inclusive status ranges, any of which passes.
    pub expect_status: Vec<(u16, u16)>,
    pub expect_body: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OutlierSpec {
    pub consecutive_failures: u32,
    pub base_ejection: Duration,
    pub max_ejection: Duration,
    pub max_ejected_percent: u32,
}

/// Zero in a limit means unlimited; `consecutive_failures == 0` turns the breaker off.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct BreakerSpec {
    pub max_connections: usize,
    pub max_pending: usize,
    pub max_in_flight: usize,
    pub consecutive_failures: u32,
    pub open_for: Duration,
    pub half_open_requests: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RetrySpec {
    /// Tries after the first.
    pub retries: u32,
    /// Statuses retried for idempotent methods.
    pub on_status: Vec<u16>,
    /// Whether a per-try timeout on an idempotent request is retried.
    pub on_timeout: bool,
    pub per_try_timeout: Option<Duration>,
    pub backoff: Duration,
    pub max_backoff: Duration,
    pub budget_percent: u32,
    pub min_retries_per_second: u32,
    /// Request bodies up to this size are kept so they can be sent again.
    pub buffer_body: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StickySpec {
    pub cookie: String,
    pub secret: String,
    pub ttl: Option<Duration>,
    pub path: String,
    pub same_site: SameSite,
    pub secure: bool,
    pub http_only: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SameSite {
    Lax,
    Strict,
    None,
}

impl SameSite {
    pub fn as_str(self) -> &'static str {
        match self {
            SameSite::Lax => "Lax",
            SameSite::Strict => "Strict",
            SameSite::None => "None",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoverySpec {
    pub target: DnsTarget,
    /// Empty: the system's resolver configuration.
    pub nameservers: Vec<std::net::SocketAddr>,
    pub min_refresh: Duration,
    pub max_refresh: Duration,
    pub weight: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DnsTarget {
    /// A and AAAA records of `host`, each at `port`.
    Host { host: String, port: u16 },
    /// SRV records of this name.
    Srv(String),
}
