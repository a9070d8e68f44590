//! Validates an upstream's health and resilience tables (`health_check`, `outlier`,
//! `breaker`, `retry`, `sticky`) and the drain and slow-start settings, applying defaults.

use super::Errors;
use crate::raw::{
    BreakerConf, DiscoveryConf, HealthCheckConf, OutlierConf, RetryConf, StickyConf, UpstreamConf,
};
use crate::spec::*;
use std::time::Duration;

pub const DEFAULT_CHECK_INTERVAL: Duration = Duration::from_secs(5);
pub const DEFAULT_CHECK_TIMEOUT: Duration = Duration::from_secs(2);
pub const DEFAULT_ENDPOINT_DRAIN: Duration = Duration::from_secs(30);
pub const DEFAULT_DRAIN_GRACE: Duration = Duration::from_secs(60);
/// A shorter secret would make the sticky cookie's signature guessable.
const MIN_SECRET_LEN: usize = 16;

pub fn validate(u: &UpstreamConf, path: &str, errs: &mut Errors) -> ResilienceSpec {
    ResilienceSpec {
        health_check: u
            .health_check
            .as_ref()
            .map(|h| health_check(h, &format!("{path}.health_check"), errs)),
        outlier: u
            .outlier
            .as_ref()
            .map(|o| outlier(o, &format!("{path}.outlier"), errs)),
        breaker: u
            .breaker
            .as_ref()
            .map(|b| breaker(b, &format!("{path}.breaker"), errs))
            .unwrap_or_default(),
        retry: u
            .retry
            .as_ref()
            .map(|r| retry(r, &format!("{path}.retry"), errs)),
        sticky: u
            .sticky
            .as_ref()
            .and_then(|s| sticky(s, &format!("{path}.sticky"), errs)),
        discovery: u
            .discovery
            .as_ref()
            .and_then(|d| discovery(d, &format!("{path}.discovery"), errs)),
        slow_start: u.slow_start.map(|d| d.0).unwrap_or_default(),
        panic_mode: u.panic_mode.unwrap_or(false),
        drain_timeout: u.drain_timeout.map_or(DEFAULT_ENDPOINT_DRAIN, |d| d.0),
        drain_grace: u.drain_grace.map_or(DEFAULT_DRAIN_GRACE, |d| d.0),
    }
}

fn at_least_one(v: Option<u32>, default: u32, path: String, errs: &mut Errors) -> u32 {
    match v {
        Some(0) => {
            errs.push(path, "must be at least 1");
            default
        }
        Some(n) => n,
        None => default,
    }
}

fn health_check(h: &HealthCheckConf, path: &str, errs: &mut Errors) -> HealthCheckSpec {
    let interval = h.interval.map_or(DEFAULT_CHECK_INTERVAL, |d| d.0);
    if interval.is_zero() {
        errs.push(format!("{path}.interval"), "must be more than 0s");
    }
    let timeout = h
        .timeout
        .map_or(DEFAULT_CHECK_TIMEOUT.min(interval), |d| d.0);
    if !interval.is_zero() && (timeout.is_zero() || timeout > interval) {
        errs.push(
            format!("{path}.timeout"),
            "must be more than 0s and at most the interval",
        );
    }
    let kind = match h.kind.as_deref() {
        None | Some("http") => CheckKind::Http(http_check(h, path, errs)),
        Some("tcp") => {
            for (set, key) in [
                (h.method.is_some(), "method"),
                (h.path.is_some(), "path"),
                (h.host.is_some(), "host"),
                (h.expect_status.is_some(), "expect_status"),
                (h.expect_body.is_some(), "expect_body"),
            ] {
                if set {
                    errs.push(format!("{path}.{key}"), "only an `http` check takes this");
                }
            }
            CheckKind::Tcp
        }
        Some(k) => {
            errs.push(
                format!("{path}.type"),
                format!("`{k}` is not a check type; expected `http` or `tcp`"),
            );
            CheckKind::Tcp
        }
    };
    HealthCheckSpec {
        kind,
        interval,
        jitter: h.jitter.map_or(interval / 10, |d| d.0),
        timeout,
        rise: at_least_one(h.rise, 2, format!("{path}.rise"), errs),
        fall: at_least_one(h.fall, 3, format!("{path}.fall"), errs),
    }
}

fn http_check(h: &HealthCheckConf, path: &str, errs: &mut Errors) -> HttpCheckSpec {
    let method = match h.method.as_deref().unwrap_or("GET").parse::<http::Method>() {
        Ok(m) => m,
        Err(_) => {
            errs.push(format!("{path}.method"), "is not an HTTP method");
            http::Method::GET
        }
    };
    let check_path = h.path.clone().unwrap_or_else(|| "/".into());
    if !check_path.starts_with('/') || check_path.parse::<http::Uri>().is_err() {
        errs.push(
            format!("{path}.path"),
            format!("`{check_path}` is not a path starting with `/`"),
        );
    }
    if let Some(host) = &h.host {
        if http::HeaderValue::from_str(host).is_err() || host.is_empty() {
            errs.push(format!("{path}.host"), "is not a valid Host header");
        }
    }
    let raw = h.expect_status.as_deref().unwrap_or("200-399");
    let expect_status = match status_ranges(raw) {
        Some(r) => r,
        None => {
            errs.push(
                format!("{path}.expect_status"),
                format!(
                    "`{raw}` is not a status list; expected e.g. `200`, `200-399` or `200,204`"
                ),
            );
            vec![(200, 399)]
        }
    };
    HttpCheckSpec {
        method,
        path: check_path,
        host: h.host.clone(),
        expect_status,
        expect_body: h.expect_body.clone(),
    }
}

/// `200`, `200-399`, `200,204,300-302`.
fn status_ranges(s: &str) -> Option<Vec<(u16, u16)>> {
    let status = |t: &str| {
        t.trim()
            .parse::<u16>()
            .ok()
            .filter(|s| (100..600).contains(s))
    };
    s.split(',')
        .map(|part| match part.split_once('-') {
            Some((a, b)) => Some((status(a)?, status(b)?)).filter(|(a, b)| a <= b),
            None => status(part).map(|s| (s, s)),
        })
        .collect()
}

fn outlier(o: &OutlierConf, path: &str, errs: &mut Errors) -> OutlierSpec {
    let base = o.base_ejection.map_or(Duration::from_secs(10), |d| d.0);
    let max = o
        .max_ejection
        .map_or(Duration::from_secs(300).max(base), |d| d.0);
    if base.is_zero() {
        errs.push(format!("{path}.base_ejection"), "must be more than 0s");
    }
    if max < base {
        errs.push(
            format!("{path}.max_ejection"),
            "must be at least base_ejection",
        );
    }
    let pct = o.max_ejected_percent.unwrap_or(50);
    if pct > 100 {
        errs.push(
            format!("{path}.max_ejected_percent"),
            "must be between 0 and 100",
        );
    }
    OutlierSpec {
        consecutive_failures: at_least_one(
            o.consecutive_failures,
            5,
            format!("{path}.consecutive_failures"),
            errs,
        ),
        base_ejection: base,
        max_ejection: max,
        max_ejected_percent: pct.min(100),
    }
}

fn breaker(b: &BreakerConf, path: &str, errs: &mut Errors) -> BreakerSpec {
    let open_for = b.open_for.map_or(Duration::from_secs(10), |d| d.0);
    if open_for.is_zero() {
        errs.push(format!("{path}.open_for"), "must be more than 0s");
    }
    BreakerSpec {
        max_connections: b.max_connections.unwrap_or(0),
        max_pending: b.max_pending.unwrap_or(0),
        max_in_flight: b.max_in_flight.unwrap_or(0),
        consecutive_failures: b.consecutive_failures.unwrap_or(0),
        open_for,
        half_open_requests: at_least_one(
            b.half_open_requests,
            1,
            format!("{path}.half_open_requests"),
            errs,
        ),
    }
}

fn retry(r: &RetryConf, path: &str, errs: &mut Errors) -> RetrySpec {
    let on_status = r.on_status.clone().unwrap_or_else(|| vec![502, 503, 504]);
    for (i, s) in on_status.iter().enumerate() {
        if !(400..600).contains(s) {
            errs.push(
                format!("{path}.on_status[{i}]"),
                "only error statuses (400-599) are retried",
            );
        }
    }
    let backoff = r.backoff.map_or(Duration::from_millis(25), |d| d.0);
    let max_backoff = r
        .max_backoff
        .map_or(Duration::from_millis(250).max(backoff), |d| d.0);
    if max_backoff < backoff {
        errs.push(format!("{path}.max_backoff"), "must be at least backoff");
    }
    if r.per_try_timeout.is_some_and(|d| d.0.is_zero()) {
        errs.push(format!("{path}.per_try_timeout"), "must be more than 0s");
    }
    let budget = r.budget_percent.unwrap_or(20);
    if budget > 100 {
        errs.push(
            format!("{path}.budget_percent"),
            "must be between 0 and 100",
        );
    }
    RetrySpec {
        retries: r.retries.unwrap_or(2),
        on_status,
        on_timeout: r.on_timeout.unwrap_or(true),
        per_try_timeout: r.per_try_timeout.map(|d| d.0),
        backoff,
        max_backoff,
        budget_percent: budget.min(100),
        min_retries_per_second: r.min_retries_per_second.unwrap_or(3),
        buffer_body: r.buffer_body.map_or(64 * 1024, |b| b.0),
    }
}

fn sticky(s: &StickyConf, path: &str, errs: &mut Errors) -> Option<StickySpec> {
    let cookie = s.cookie.clone().unwrap_or_else(|| "gh_sticky".into());
    if cookie.is_empty()
        || !cookie
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    {
        errs.push(
            format!("{path}.cookie"),
            "a cookie name of letters, digits, `-`, `_` or `.` is required",
        );
    }
    let secret = match &s.secret {
        Some(x) if x.len() >= MIN_SECRET_LEN => x.clone(),
        _ => {
            errs.push(
                format!("{path}.secret"),
                format!("a secret of at least {MIN_SECRET_LEN} characters signs the cookie"),
            );
            return None;
        }
    };
    let same_site = match s
        .same_site
        .as_deref()
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None | Some("lax") => SameSite::Lax,
        Some("strict") => SameSite::Strict,
        Some("none") => SameSite::None,
        Some(v) => {
            errs.push(
                format!("{path}.same_site"),
                format!("`{v}` is not a SameSite value; expected `lax`, `strict` or `none`"),
            );
            SameSite::Lax
        }
    };
    let secure = s.secure.unwrap_or(false);
    if same_site == SameSite::None && !secure {
        errs.push(
            format!("{path}.same_site"),
            "browsers drop `SameSite=None` cookies that are not `secure`",
        );
    }
    let cookie_path = s.path.clone().unwrap_or_else(|| "/".into());
    if !cookie_path.starts_with('/') || cookie_path.contains(';') {
        errs.push(
            format!("{path}.path"),
            "must start with `/` and hold no `;`",
        );
    }
    Some(StickySpec {
        cookie,
        secret,
        ttl: s.ttl.map(|d| d.0),
        path: cookie_path,
        same_site,
        secure,
        http_only: s.http_only.unwrap_or(true),
    })
}

fn discovery(d: &DiscoveryConf, path: &str, errs: &mut Errors) -> Option<DiscoverySpec> {
    let target = match (&d.dns, &d.srv) {
        (Some(a), None) => match super::upstreams::split_host_port(a) {
            Some((host, port)) if host.parse::<std::net::IpAddr>().is_err() => {
                Some(DnsTarget::Host { host, port })
            }
            _ => {
                errs.push(
                    format!("{path}.dns"),
                    format!("`{a}` is not `name:port` (a DNS name, not an address)"),
                );
                None
            }
        },
        (None, Some(s)) if !s.is_empty() && !s.contains(char::is_whitespace) => {
            Some(DnsTarget::Srv(s.clone()))
        }
        (None, Some(s)) => {
            errs.push(format!("{path}.srv"), format!("`{s}` is not a DNS name"));
            None
        }
        _ => {
            errs.push(path, "exactly one of `dns` or `srv` is required");
            None
        }
    };
    let mut nameservers = Vec::new();
    for (i, n) in d.nameservers.iter().flatten().enumerate() {
        match n.parse() {
            Ok(a) => nameservers.push(a),
            Err(_) => errs.push(
                format!("{path}.nameservers[{i}]"),
                format!("`{n}` is not `ip:port`"),
            ),
        }
    }
    let min_refresh = d.min_refresh.map_or(Duration::from_secs(1), |x| x.0);
    let max_refresh = d
        .max_refresh
        .map_or(Duration::from_secs(300).max(min_refresh), |x| x.0);
    if min_refresh.is_zero() {
        errs.push(format!("{path}.min_refresh"), "must be more than 0s");
    }
    if max_refresh < min_refresh {
        errs.push(
            format!("{path}.max_refresh"),
            "must be at least min_refresh",
        );
    }
    let weight = at_least_one(d.weight, 1, format!("{path}.weight"), errs);
    Some(DiscoverySpec {
        target: target?,
        nameservers,
        min_refresh,
        max_refresh,
        weight,
    })
}
