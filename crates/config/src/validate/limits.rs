//! Validates `[[rate_limits]]` policies, a route's `rate_limits` list and `[redis]`.

use super::{check_unique, Errors};
use crate::raw::{RateLimitConf, RedisConf};
use crate::spec::*;
use crate::units::parse_duration;
use std::path::PathBuf;
use std::time::Duration;

pub const DEFAULT_MAX_KEYS: u64 = 100_000;
pub const DEFAULT_REDIS_TIMEOUT: Duration = Duration::from_millis(100);
pub const DEFAULT_REDIS_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
pub const DEFAULT_REDIS_POOL: usize = 2;
pub const DEFAULT_BREAKER_FAILURES: u32 = 3;
pub const DEFAULT_BREAKER_OPEN_FOR: Duration = Duration::from_secs(1);

pub fn policies(
    list: &[(usize, RateLimitConf)],
    redis: Option<&RedisSpec>,
    errs: &mut Errors,
) -> Vec<RateLimitSpec> {
    check_unique(
        list.iter().map(|(i, c)| (*i, c.name.as_str())),
        "rate_limits",
        errs,
    );
    list.iter()
        .filter_map(|(i, c)| policy(c, &format!("rate_limits[{i}]"), redis, errs))
        .collect()
}

fn policy(
    c: &RateLimitConf,
    path: &str,
    redis: Option<&RedisSpec>,
    errs: &mut Errors,
) -> Option<RateLimitSpec> {
    let before = errs.0.len();
    let token = |ch: char| ch.is_ascii_alphanumeric() || "_.:-".contains(ch);
    if c.name.is_empty() || !c.name.chars().all(token) {
        errs.push(
            format!("{path}.name"),
            "a policy name is letters, digits and `_ . : -` (it is sent in RateLimit headers)",
        );
    }
    let key = c
        .key
        .iter()
        .enumerate()
        .filter_map(|(j, k)| match key_part(k) {
            Ok(p) => Some(p),
            Err(m) => {
                errs.push(format!("{path}.key[{j}]"), m);
                None
            }
        })
        .collect();
    let store = match c.store.as_deref() {
        None | Some("local") => LimitStore::Local,
        Some("redis") => LimitStore::Redis,
        Some(o) => {
            errs.push(
                format!("{path}.store"),
                format!("`{o}` is not a store; expected `local` or `redis`"),
            );
            LimitStore::Local
        }
    };
    if store == LimitStore::Redis && redis.is_none() {
        errs.push(
            format!("{path}.store"),
            "`redis` needs a `[redis]` section with the server's URL",
        );
    }
    let kind = kind(c, path, store, errs)?;
    let on_store_error = match c.on_store_error.as_deref() {
        None | Some("fail_open") => FailMode::Open,
        Some("fail_closed") => FailMode::Closed,
        Some(o) => {
            errs.push(
                format!("{path}.on_store_error"),
                format!("`{o}` is not a choice; expected `fail_open` or `fail_closed`"),
            );
            FailMode::Open
        }
    };
    if c.on_store_error.is_some() && store == LimitStore::Local {
        errs.push(
            format!("{path}.on_store_error"),
            "only a `store = \"redis\"` policy can fail to reach its store",
        );
    }
    let missing = match c.missing.as_deref() {
        None | Some("shared") => MissingPart::Shared,
        Some("skip") => MissingPart::Skip,
        Some(o) => {
            errs.push(
                format!("{path}.missing"),
                format!("`{o}` is not a choice; expected `shared` or `skip`"),
            );
            MissingPart::Shared
        }
    };
    let max_keys = c.max_keys.unwrap_or(DEFAULT_MAX_KEYS);
    if max_keys == 0 {
        errs.push(format!("{path}.max_keys"), "must be at least 1");
    }
    (errs.0.len() == before).then(|| RateLimitSpec {
        name: c.name.clone(),
        key,
        kind,
        store,
        on_store_error,
        dry_run: c.dry_run.unwrap_or(false),
        headers: c.headers.unwrap_or(true),
        legacy_headers: c.legacy_headers.unwrap_or(false),
        max_keys,
        missing,
    })
}

/// Which of `rate`, `concurrency` and `quota` the policy is, with its own settings.
fn kind(c: &RateLimitConf, path: &str, store: LimitStore, errs: &mut Errors) -> Option<LimitKind> {
    let given = [c.rate.is_some(), c.concurrency.is_some(), c.quota.is_some()];
    if given.iter().filter(|g| **g).count() != 1 {
        errs.push(
            path,
            "a policy sets exactly one of `rate`, `concurrency` and `quota`",
        );
        return None;
    }
    let only = |set: bool, key: &str, kind: &str, errs: &mut Errors| {
        if set {
            errs.push(
                format!("{path}.{key}"),
                format!("`{key}` applies to `{kind}` policies only"),
            );
        }
    };
    let quota_keys = [
        ("calendar", c.calendar.is_some()),
        ("time_zone", c.time_zone.is_some()),
        ("state_file", c.state_file.is_some()),
    ];
    if let Some(r) = &c.rate {
        for (k, set) in quota_keys {
            only(set, k, "quota", errs);
        }
        return rate(r, c, path, errs);
    }
    only(c.burst.is_some(), "burst", "rate", errs);
    only(c.algorithm.is_some(), "algorithm", "rate", errs);
    if let Some(max) = c.concurrency {
        for (k, set) in quota_keys {
            only(set, k, "quota", errs);
        }
        if max == 0 {
            errs.push(format!("{path}.concurrency"), "must be at least 1");
        }
        if store == LimitStore::Redis {
            errs.push(
                format!("{path}.store"),
                "a concurrency limit is counted per instance (`local`): requests in flight \
                 are not shared state",
            );
        }
        return Some(LimitKind::Concurrency { max });
    }
    quota(c.quota.as_deref()?, c, path, store, errs)
}

fn rate(r: &str, c: &RateLimitConf, path: &str, errs: &mut Errors) -> Option<LimitKind> {
    let (count, period) = match parse_rate(r) {
        Ok(x) => x,
        Err(m) => {
            errs.push(format!("{path}.rate"), m);
            return None;
        }
    };
    let algorithm = match c.algorithm.as_deref() {
        None | Some("gcra") => Algorithm::Gcra,
        Some("sliding_window") => Algorithm::SlidingWindow,
        Some(o) => {
            errs.push(
                format!("{path}.algorithm"),
                format!("`{o}` is not an algorithm; expected `gcra` or `sliding_window`"),
            );
            Algorithm::Gcra
        }
    };
    // By default a whole period's worth may come at once, as a fixed window allows.
    let burst = c.burst.unwrap_or_else(|| count.ceil().max(1.0) as u64);
    if burst == 0 {
        errs.push(format!("{path}.burst"), "must be at least 1");
    }
    if algorithm == Algorithm::SlidingWindow && c.burst.is_some() {
        errs.push(
            format!("{path}.burst"),
            "a sliding window admits its whole count in a window; `burst` is for `gcra`",
        );
    }
    Some(LimitKind::Rate {
        count,
        period,
        burst,
        algorithm,
    })
}

fn quota(
    q: &str,
    c: &RateLimitConf,
    path: &str,
    store: LimitStore,
    errs: &mut Errors,
) -> Option<LimitKind> {
    let calendar = c.calendar.unwrap_or(true);
    let (count, unit) = q
        .split_once('/')
        .map(|(n, u)| (n.trim(), u.trim()))
        .unwrap_or((q, ""));
    let count = match count.parse::<f64>() {
        Ok(n) if n >= 1.0 && n.fract() == 0.0 && n < 1e15 => n as u64,
        _ => {
            errs.push(
                format!("{path}.quota"),
                format!("`{q}` is not a quota; expected a whole count per window such as `10000/day` or `1e6/month`"),
            );
            return None;
        }
    };
    let period = match (calendar, calendar_unit(unit)) {
        (true, Some(u)) => QuotaPeriod::Calendar(u),
        (false, Some(u)) => QuotaPeriod::Rolling(QuotaPeriod::Calendar(u).nominal()),
        (_, None) => match parse_duration(unit) {
            Ok(d) if !d.is_zero() => QuotaPeriod::Rolling(d),
            _ => {
                errs.push(
                    format!("{path}.quota"),
                    format!("`{unit}` is not a window; expected `day`, `week`, `month` or a duration such as `30d`"),
                );
                return None;
            }
        },
    };
    if calendar && matches!(period, QuotaPeriod::Rolling(_)) && c.calendar.is_some() {
        errs.push(
            format!("{path}.calendar"),
            "calendar windows are `day`, `week` or `month`; a duration window rolls",
        );
    }
    let state_file = c.state_file.as_ref().map(PathBuf::from);
    if state_file.is_some() && store == LimitStore::Redis {
        errs.push(
            format!("{path}.state_file"),
            "a Redis quota is kept by Redis; `state_file` is for `local` quotas",
        );
    }
    let time_zone = c.time_zone.clone().unwrap_or_else(|| "UTC".into());
    // The one look-up validation makes outside the text: the zone database (bundled
    // into the binary, or the system's), so `check` names a zone that does not exist.
    if time_zone != "UTC" && jiff::tz::TimeZone::get(&time_zone).is_err() {
        errs.push(
            format!("{path}.time_zone"),
            format!("`{time_zone}` is not a known IANA time zone (such as `Europe/Berlin`)"),
        );
    }
    Some(LimitKind::Quota {
        count,
        period,
        time_zone,
        state_file,
    })
}

fn calendar_unit(u: &str) -> Option<CalendarUnit> {
    match u {
        "d" | "day" => Some(CalendarUnit::Day),
        "w" | "week" => Some(CalendarUnit::Week),
        "month" | "mon" => Some(CalendarUnit::Month),
        _ => None,
    }
}

/// Parses `100/s`, `6000/min`, `1e6/day`, `10/5s` into a count and its period.
pub fn parse_rate(s: &str) -> Result<(f64, Duration), String> {
    let bad = || {
        format!("`{s}` is not a rate; expected a count per period such as `100/s`, `6000/min`, `1e6/day` or `10/5s`")
    };
    let (n, unit) = s.split_once('/').ok_or_else(bad)?;
    let count: f64 = n.trim().parse().map_err(|_| bad())?;
    if !count.is_finite() || count <= 0.0 {
        return Err(bad());
    }
    let period = match unit.trim() {
        "s" | "sec" | "second" => Duration::from_secs(1),
        "m" | "min" | "minute" => Duration::from_secs(60),
        "h" | "hour" => Duration::from_secs(3600),
        "d" | "day" => Duration::from_secs(86_400),
        other => match parse_duration(other) {
            Ok(d) if !d.is_zero() => d,
            _ => return Err(bad()),
        },
    };
    if period.as_secs_f64() / count < 1e-9 {
        return Err(format!("`{s}` is more than one request a nanosecond"));
    }
    Ok((count, period))
}

/// Parses one key part.
pub fn key_part(k: &str) -> Result<KeyPart, String> {
    if let Some((kind, name)) = k.split_once(':') {
        let name = name.trim();
        if name.is_empty() {
            return Err(format!("`{k}` names no {kind}"));
        }
        return match kind {
            "header" => http_name(name).map(KeyPart::Header),
            "query" => Ok(KeyPart::Query(name.to_string())),
            "claim" => Ok(KeyPart::Claim(name.to_string())),
            _ => Err(unknown_part(k)),
        };
    }
    match k {
        "consumer" => Ok(KeyPart::Consumer),
        "credential" => Ok(KeyPart::Credential),
        "route" => Ok(KeyPart::Route),
        "ip" => Ok(KeyPart::Ip { v4: 32, v6: 128 }),
        _ if k.starts_with("ip/") => ip_prefix(&k[3..]).ok_or_else(|| {
            format!("`{k}` is not an address prefix; expected `ip/24` (IPv4) or `ip/24/64` (IPv4, IPv6)")
        }),
        _ => Err(unknown_part(k)),
    }
}

fn unknown_part(k: &str) -> String {
    format!(
        "`{k}` is not a key part; expected `consumer`, `credential`, `ip`, `ip/24`, `route`, \
         `header:NAME`, `query:NAME` or `claim:NAME`"
    )
}

/// `24` or `24/64`; a lone IPv4 length groups IPv6 clients by their /64 (one site).
fn ip_prefix(s: &str) -> Option<KeyPart> {
    let (a, b) = match s.split_once('/') {
        Some((a, b)) => (a, Some(b)),
        None => (s, None),
    };
    let v4: u8 = a.parse().ok().filter(|n| *n <= 32)?;
    let v6: u8 = match b {
        Some(b) => b.parse().ok().filter(|n| *n <= 128)?,
        None if v4 == 32 => 128,
        None => 64,
    };
    Some(KeyPart::Ip { v4, v6 })
}

fn http_name(n: &str) -> Result<String, String> {
    http::HeaderName::from_bytes(n.as_bytes())
        .map(|h| h.as_str().to_string())
        .map_err(|_| format!("`{n}` is not a header name"))
}

/// Checks a route's `rate_limits` names.
pub fn route_limits(
    names: &[String],
    path: &str,
    declared: &[&str],
    errs: &mut Errors,
) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for (j, n) in names.iter().enumerate() {
        if out.contains(n) {
            errs.push(
                format!("{path}.rate_limits[{j}]"),
                format!("`{n}` is listed twice"),
            );
        } else if declared.contains(&n.as_str()) {
            out.push(n.clone());
        } else {
            errs.push(
                format!("{path}.rate_limits[{j}]"),
                format!("no `[[rate_limits]]` policy is named `{n}`"),
            );
        }
    }
    out
}

pub fn redis(c: &RedisConf, errs: &mut Errors) -> Option<RedisSpec> {
    let mut urls: Vec<String> = c.url.iter().chain(&c.urls).cloned().collect();
    urls.dedup();
    if urls.is_empty() {
        errs.push(
            "redis.url",
            "give the server's `url` (or `urls` for a cluster)",
        );
    }
    for (i, u) in urls.iter().enumerate() {
        let ok = ["redis://", "rediss://", "valkey://", "valkeys://"]
            .iter()
            .any(|s| u.starts_with(s) && u.len() > s.len());
        if !ok {
            errs.push(
                format!("redis.urls[{i}]"),
                format!("`{u}` is not a Redis URL; expected `redis://host:port` or `rediss://host:port`"),
            );
        }
    }
    let mode = redis_mode(c, errs);
    if matches!(c.mode.as_deref(), None | Some("standalone")) && urls.len() > 1 {
        errs.push(
            "redis.urls",
            "several URLs are a cluster's seed nodes or Sentinels: set `mode = \"cluster\"` or `mode = \"sentinel\"`",
        );
    }
    let pool_size = c.pool_size.unwrap_or(DEFAULT_REDIS_POOL);
    if pool_size == 0 {
        errs.push("redis.pool_size", "must be at least 1");
    }
    let timeout = c.timeout.map_or(DEFAULT_REDIS_TIMEOUT, |d| d.0);
    if timeout.is_zero() {
        errs.push("redis.timeout", "must be more than zero");
    }
    let breaker_failures = c.breaker_failures.unwrap_or(DEFAULT_BREAKER_FAILURES);
    if breaker_failures == 0 {
        errs.push("redis.breaker_failures", "must be at least 1");
    }
    Some(RedisSpec {
        urls,
        mode,
        username: c.username.clone(),
        password: c.password.as_deref().map(SecretRef::parse),
        tls_ca: c.tls_ca.as_ref().map(PathBuf::from),
        pool_size,
        connect_timeout: c
            .connect_timeout
            .map_or(DEFAULT_REDIS_CONNECT_TIMEOUT, |d| d.0),
        timeout,
        breaker_failures,
        breaker_open_for: c.breaker_open_for.map_or(DEFAULT_BREAKER_OPEN_FOR, |d| d.0),
        key_prefix: c.key_prefix.clone().unwrap_or_else(|| "gatehouse:".into()),
    })
}

/// `mode`, with the `master` a Sentinel names (and only there).
fn redis_mode(c: &RedisConf, errs: &mut Errors) -> RedisMode {
    let mode = match c.mode.as_deref() {
        None | Some("standalone") => RedisMode::Standalone,
        Some("cluster") => RedisMode::Cluster,
        Some("sentinel") => match &c.master {
            Some(m) if !m.is_empty() => RedisMode::Sentinel { master: m.clone() },
            _ => {
                errs.push(
                    "redis.master",
                    "`mode = \"sentinel\"` needs the primary's name as Sentinel knows it (`sentinel monitor NAME ...`)",
                );
                RedisMode::Standalone
            }
        },
        Some(o) => {
            errs.push(
                "redis.mode",
                format!("`{o}` is not a mode; expected `standalone`, `cluster` or `sentinel`"),
            );
            RedisMode::Standalone
        }
    };
    if c.master.is_some() && c.mode.as_deref() != Some("sentinel") {
        errs.push(
            "redis.master",
            "`master` names a primary for Sentinel: set `mode = \"sentinel\"`",
        );
    }
    mode
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_with_their_periods() {
        assert_eq!(
            parse_rate("100/s").unwrap(),
            (100.0, Duration::from_secs(1))
        );
        assert_eq!(
            parse_rate("6000/min").unwrap(),
            (6000.0, Duration::from_secs(60))
        );
        assert_eq!(
            parse_rate("1e6/day").unwrap(),
            (1e6, Duration::from_secs(86_400))
        );
        assert_eq!(parse_rate("10/5s").unwrap(), (10.0, Duration::from_secs(5)));
        for bad in ["100", "0/s", "-1/s", "x/s", "10/fortnight", "1e12/ns"] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn key_parts_parse() {
        assert_eq!(key_part("ip/24").unwrap(), KeyPart::Ip { v4: 24, v6: 64 });
        assert_eq!(
            key_part("ip/16/48").unwrap(),
            KeyPart::Ip { v4: 16, v6: 48 }
        );
        assert_eq!(
            key_part("header:X-Tenant").unwrap(),
            KeyPart::Header("x-tenant".into())
        );
        for bad in [
            "ip/33",
            "ip/24/129",
            "header:",
            "header:a b",
            "user",
            "cookie:x",
        ] {
            assert!(key_part(bad).is_err(), "{bad}");
        }
    }
}
