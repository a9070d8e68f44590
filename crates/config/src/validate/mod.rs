//! Validation: raw structs -> [`Spec`], applying every default in one place and
//! collecting all errors with their key paths. Submodules take one section each.

mod auth;
mod l4;
mod limits;
mod listeners;
mod mediation;
mod resilience;
mod routes;
mod upstreams;

pub(crate) use mediation::{compile_schema, route_captures};
pub(crate) use routes::template;

use crate::error::ConfigError;
use crate::raw::{AccessLogConf, AdminConf, GlobalConf, RawConfig};
use crate::spec::*;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Default drain time after SIGTERM.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// Default admin address when `[admin]` has no `listen`.
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9901";

/// Collects errors for one validation pass.
pub(crate) struct Errors<'a>(pub &'a mut Vec<ConfigError>);

impl Errors<'_> {
    pub fn push(&mut self, path: impl Into<String>, msg: impl Into<String>) {
        self.0.push(ConfigError::at(path, msg));
    }
}

pub fn validate(raw: &RawConfig, errors: &mut Vec<ConfigError>) -> Spec {
    let mut errs = Errors(errors);
    let global = global(&raw.global, &mut errs);
    let admin = raw.admin.as_ref().and_then(|a| admin(a, &mut errs));
    let access_log = access_log(&raw.access_log, &mut errs);
    let upstreams = upstreams::validate(&raw.upstreams, &mut errs);
    let listeners = listeners::validate(&raw.listeners, &upstreams, &mut errs);
    let consumers = auth::consumers(&raw.consumers, &mut errs);
    let jwt_providers = auth::jwt_providers(&raw.jwt_providers, &upstreams, &mut errs);
    let introspection = auth::introspection(&raw.introspection, &upstreams, &mut errs);
    let redis = raw.redis.as_ref().and_then(|r| limits::redis(r, &mut errs));
    let rate_limits = limits::policies(&raw.rate_limits, redis.as_ref(), &mut errs);
    let policy_names: Vec<&str> = raw
        .rate_limits
        .iter()
        .map(|(_, p)| p.name.as_str())
        .collect();
    let cors = raw
        .cors
        .as_ref()
        .map(|c| mediation::cors(c, "cors", &mut errs));
    let gateway = routes::Gateway {
        cors: cors.as_ref(),
        rate_limits: &policy_names,
        consumers: &consumers,
        providers: &jwt_providers,
        introspection: &introspection,
        upstreams: &upstreams,
    };
    let routes = routes::validate(&raw.routes, &listeners, &upstreams, &gateway, &mut errs);
    if listeners.is_empty() && errs.0.is_empty() {
        errs.push("listeners", "at least one listener is required");
    }
    let warnings = mediation::stream_warnings(&routes, &upstreams);
    Spec {
        warnings,
        global,
        admin,
        access_log,
        listeners,
        routes,
        upstreams,
        consumers,
        jwt_providers,
        introspection,
        rate_limits,
        redis,
    }
}

fn global(g: &GlobalConf, errs: &mut Errors) -> GlobalSpec {
    let workers = match g.workers {
        Some(0) => {
            errs.push("global.workers", "must be at least 1");
            1
        }
        Some(n) => n,
        None => std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
    };
    let mut trusted = Vec::new();
    for (i, s) in g.trusted_proxies.iter().flatten().enumerate() {
        match IpNet::parse(s) {
            Some(n) => trusted.push(n),
            None => errs.push(
                format!("global.trusted_proxies[{i}]"),
                format!("`{s}` is not an IP address or CIDR network"),
            ),
        }
    }
    GlobalSpec {
        workers,
        drain_timeout: g
            .drain_timeout
            .map(|d| d.0)
            .unwrap_or(DEFAULT_DRAIN_TIMEOUT),
        trusted_proxies: trusted,
        server_name: g.server_name.clone().unwrap_or_else(|| "gatehouse".into()),
        via: g.via.unwrap_or(true),
        request_id: g.request_id.unwrap_or(true),
    }
}

fn admin(a: &AdminConf, errs: &mut Errors) -> Option<AdminSpec> {
    let listen = a.listen.as_deref().unwrap_or(DEFAULT_ADMIN_LISTEN);
    let addr = parse_addr(listen, "admin.listen", errs)?;
    if !addr.ip().is_loopback() && a.token.as_deref().is_none_or(str::is_empty) {
        errs.push(
            "admin.token",
            "a bearer token is required when the admin listener is not on a loopback address",
        );
    }
    Some(AdminSpec {
        listen: addr,
        token: a.token.clone().filter(|t| !t.is_empty()),
    })
}

fn access_log(a: &AccessLogConf, errs: &mut Errors) -> AccessLogSpec {
    let target = match a.target.as_deref() {
        None | Some("stdout") => LogTarget::Stdout,
        Some("stderr") => LogTarget::Stderr,
        Some("") => {
            errs.push(
                "access_log.target",
                "expected `stdout`, `stderr` or a file path",
            );
            LogTarget::Stdout
        }
        Some(p) => LogTarget::File(PathBuf::from(p)),
    };
    let format = match a.format.as_deref() {
        None | Some("json") => LogFormat::Json,
        Some("clf") | Some("common") => LogFormat::Clf,
        Some(other) => {
            errs.push(
                "access_log.format",
                format!("`{other}` is not a log format; expected `json` or `clf`"),
            );
            LogFormat::Json
        }
    };
    AccessLogSpec {
        enabled: a.enabled.unwrap_or(true),
        target,
        format,
    }
}

/// Parses `ip:port`, `[v6]:port` or `:port` (all interfaces).
pub(crate) fn parse_addr(s: &str, path: &str, errs: &mut Errors) -> Option<SocketAddr> {
    let full = if s.starts_with(':') {
        format!("0.0.0.0{s}")
    } else {
        s.to_string()
    };
    match full.parse() {
        Ok(a) => Some(a),
        Err(_) => {
            errs.push(
                path,
                format!(
                    "`{s}` is not a socket address; expected `ip:port` such as `127.0.0.1:8080`"
                ),
            );
            None
        }
    }
}

/// Reports names used twice in a list.
pub(crate) fn check_unique<'a>(
    names: impl Iterator<Item = (usize, &'a str)>,
    section: &str,
    errs: &mut Errors,
) {
    let mut seen = std::collections::HashMap::new();
    for (i, n) in names {
        if let Some(first) = seen.insert(n, i) {
            errs.push(
                format!("{section}[{i}].name"),
                format!("`{n}` is already the name of {section}[{first}]"),
            );
        }
    }
}
