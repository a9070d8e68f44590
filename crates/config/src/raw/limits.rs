//! Raw `[[rate_limits]]` policies and the `[redis]` section they may count in.

use crate::units::HumanDuration;
use serde::Deserialize;

/// `[[rate_limits]]`: one policy; exactly one of `rate`, `concurrency` and `quota`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConf {
    pub name: String,
    /// Parts of the key: `consumer`, `credential`, `ip`, `ip/24`, `ip/24/64`, `route`,
    /// `header:NAME`, `query:NAME`, `claim:NAME`.
    #[serde(default)]
    pub key: Vec<String>,
    /// `100/s`, `6000/min`, `1e6/day`, `10/5s`.
    pub rate: Option<String>,
    pub burst: Option<u64>,
    /// `gcra` (default) or `sliding_window`.
    pub algorithm: Option<String>,
    /// Requests in flight at once.
    pub concurrency: Option<u64>,
    /// `10000/day`, `1e6/month`, `500/week`, `1000/30d`.
    pub quota: Option<String>,
    /// Quota windows on calendar boundaries (default) or rolling.
    pub calendar: Option<bool>,
    /// IANA zone for calendar windows (`UTC` default).
    pub time_zone: Option<String>,
    /// Local quota counts are kept in this file across restarts.
    pub state_file: Option<String>,
    /// `local` (default) or `redis`.
    pub store: Option<String>,
    /// `fail_open` (default) or `fail_closed`: what a Redis error does.
    pub on_store_error: Option<String>,
    pub dry_run: Option<bool>,
    /// `RateLimit-Policy` and `RateLimit` on responses (default true).
    pub headers: Option<bool>,
    /// `X-RateLimit-Limit`, `-Remaining`, `-Reset` too (default false).
    pub legacy_headers: Option<bool>,
    /// Keys kept locally at most.
    pub max_keys: Option<u64>,
    /// `shared` (default): requests without a key part share one bucket; `skip`: the
    /// policy does not apply to them.
    pub missing: Option<String>,
}

/// `[redis]`: where `store = "redis"` policies count.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisConf {
    /// `redis://host:port/db` or `rediss://` (TLS); several for a cluster.
    #[serde(default)]
    pub urls: Vec<String>,
    pub url: Option<String>,
    /// `standalone` (default), `cluster` or `sentinel`.
    pub mode: Option<String>,
    /// The primary's name in Sentinel (`sentinel monitor NAME ...`), for `sentinel`.
    pub master: Option<String>,
    pub username: Option<String>,
    /// Inline, `env:NAME` or `file:PATH`.
    pub password: Option<String>,
    /// A PEM CA bundle for `rediss://` servers.
    pub tls_ca: Option<String>,
    /// Multiplexed connections (default 2).
    pub pool_size: Option<usize>,
    pub connect_timeout: Option<HumanDuration>,
    /// One check's deadline (default 50ms).
    pub timeout: Option<HumanDuration>,
    /// Errors in a row that open the breaker (default 3).
    pub breaker_failures: Option<u32>,
    /// How long the breaker stays open before one probe (default 1s).
    pub breaker_open_for: Option<HumanDuration>,
    /// Prefix of every key written (default `gatehouse:`).
    pub key_prefix: Option<String>,
}
