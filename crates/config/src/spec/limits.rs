//! Validated rate-limit policies and the Redis settings cluster-wide ones count with.

use super::SecretRef;
use std::path::PathBuf;
use std::time::Duration;

/// One `[[rate_limits]]` policy.
#[derive(Debug, Clone, PartialEq)]
pub struct RateLimitSpec {
    pub name: String,
    /// What a request is counted by; empty is one bucket for every request.
    pub key: Vec<KeyPart>,
    pub kind: LimitKind,
    pub store: LimitStore,
    pub on_store_error: FailMode,
    pub dry_run: bool,
    pub headers: bool,
    pub legacy_headers: bool,
    pub max_keys: u64,
    pub missing: MissingPart,
}

/// One part of a policy's key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum KeyPart {
    Consumer,
    Credential,
    /// The client address, masked to these prefix lengths.
    Ip {
        v4: u8,
        v6: u8,
    },
    Route,
    /// Lower-case header name.
    Header(String),
    Query(String),
    Claim(String),
}

#[derive(Debug, Clone, PartialEq)]
pub enum LimitKind {
    /// `count` requests per `period`, with up to `burst` at once.
    Rate {
        count: f64,
        period: Duration,
        burst: u64,
        algorithm: Algorithm,
    },
    /// At most `max` requests in flight at once.
    Concurrency { max: u64 },
    /// `count` requests per window, counted for as long as the window lasts.
    Quota {
        count: u64,
        period: QuotaPeriod,
        time_zone: String,
        state_file: Option<PathBuf>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Gcra,
    SlidingWindow,
}

/// A quota's window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaPeriod {
    /// Calendar windows in the policy's time zone.
    Calendar(CalendarUnit),
    /// A window that slides with the clock.
    Rolling(Duration),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CalendarUnit {
    Day,
    Week,
    Month,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitStore {
    Local,
    Redis,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailMode {
    /// Allow, counted by the local store meanwhile.
    Open,
    /// 503.
    Closed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MissingPart {
    Shared,
    Skip,
}

/// How `[redis]`'s URLs are read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisMode {
    /// One server.
    Standalone,
    /// Redis Cluster: the URLs are seed nodes, each key lives on its slot's node.
    Cluster,
    /// The URLs are Sentinels; the primary they name for `master` is asked again after
    /// an error, so a failover moves the counts to the new primary.
    Sentinel { master: String },
}

/// `[redis]`.
#[derive(Debug, Clone, PartialEq)]
pub struct RedisSpec {
    /// The server, a cluster's seed nodes, or the Sentinels.
    pub urls: Vec<String>,
    pub mode: RedisMode,
    pub username: Option<String>,
    pub password: Option<SecretRef>,
    pub tls_ca: Option<PathBuf>,
    pub pool_size: usize,
    pub connect_timeout: Duration,
    pub timeout: Duration,
    pub breaker_failures: u32,
    pub breaker_open_for: Duration,
    pub key_prefix: String,
}

impl LimitKind {
    /// The window a client is told about (`w` of `RateLimit-Policy`), and the limit.
    pub fn advertised(&self) -> Option<(u64, Duration)> {
        match self {
            LimitKind::Rate { count, period, .. } => Some((count.ceil() as u64, *period)),
            LimitKind::Concurrency { .. } => None,
            LimitKind::Quota { count, period, .. } => Some((*count, period.nominal())),
        }
    }
}

impl QuotaPeriod {
    /// The window's usual length (a calendar month is 30 days here).
    pub fn nominal(&self) -> Duration {
        match self {
            QuotaPeriod::Rolling(d) => *d,
            QuotaPeriod::Calendar(CalendarUnit::Day) => Duration::from_secs(86_400),
            QuotaPeriod::Calendar(CalendarUnit::Week) => Duration::from_secs(7 * 86_400),
            QuotaPeriod::Calendar(CalendarUnit::Month) => Duration::from_secs(30 * 86_400),
        }
    }
}
