//! Validates `[[upstreams]]`: endpoints, protocol, balancer, TLS towards it, pool limits.

use super::{check_unique, Errors};
use crate::raw::{EndpointConf, UpstreamConf};
use crate::spec::*;
use std::path::PathBuf;
use std::time::Duration;

pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
pub const DEFAULT_POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
pub const DEFAULT_MAX_IDLE_PER_ENDPOINT: usize = 256;

pub fn validate(list: &[(usize, UpstreamConf)], errs: &mut Errors) -> Vec<UpstreamSpec> {
    check_unique(
        list.iter().map(|(i, u)| (*i, u.name.as_str())),
        "upstreams",
        errs,
    );
    list.iter()
        .map(|(i, u)| upstream(u, &format!("upstreams[{i}]"), errs))
        .collect()
}

fn upstream(u: &UpstreamConf, path: &str, errs: &mut Errors) -> UpstreamSpec {
    if u.endpoints.is_empty() && u.discovery.is_none() {
        errs.push(
            format!("{path}.endpoints"),
            "at least one endpoint is required",
        );
    }
    let endpoints = u
        .endpoints
        .iter()
        .enumerate()
        .filter_map(|(i, e)| endpoint(e, &format!("{path}.endpoints[{i}]"), errs))
        .collect();
    let protocol = match u.protocol.as_deref() {
        None | Some("http1") | Some("http/1.1") => UpstreamProtocol::Http1,
        Some("http2") | Some("h2") => UpstreamProtocol::Http2,
        Some(p) => {
            errs.push(
                format!("{path}.protocol"),
                format!("`{p}` is not an upstream protocol; expected `http1` or `http2`"),
            );
            UpstreamProtocol::Http1
        }
    };
    let balancer = match u.balancer.as_deref() {
        None | Some("round_robin") => BalancerKind::RoundRobin,
        Some("least_conn") => BalancerKind::LeastConn,
        Some("random") => BalancerKind::Random,
        Some("p2c") => BalancerKind::PowerOfTwo,
        Some("consistent_hash") | Some("ip_hash") => BalancerKind::ConsistentHash,
        Some(b) => {
            errs.push(
                format!("{path}.balancer"),
                format!("`{b}` is not a balancer; expected `round_robin`, `least_conn`, `random`, `p2c`, `consistent_hash` or `ip_hash`"),
            );
            BalancerKind::RoundRobin
        }
    };
    let tls = u
        .tls
        .as_ref()
        .filter(|t| t.enabled.unwrap_or(true))
        .map(|t| UpstreamTlsSpec {
            ca: t.ca.as_ref().map(PathBuf::from),
            sni: t.sni.clone(),
            verify: t.verify.unwrap_or(true),
        });
    let p = u.pool.as_ref();
    let pool = PoolSpec {
        max_idle_per_endpoint: p
            .and_then(|p| p.max_idle_per_endpoint)
            .unwrap_or(DEFAULT_MAX_IDLE_PER_ENDPOINT),
        max_connections_per_endpoint: p.and_then(|p| p.max_connections_per_endpoint).unwrap_or(0),
        idle_timeout: p
            .and_then(|p| p.idle_timeout)
            .or(u.timeouts.as_ref().and_then(|t| t.idle))
            .map(|d| d.0)
            .unwrap_or(DEFAULT_POOL_IDLE_TIMEOUT),
    };
    let t = u.timeouts.as_ref();
    if t.and_then(|t| t.response_header).is_some() {
        errs.push(
            format!("{path}.timeouts.response_header"),
            "set the response deadline per route, with routes[].timeouts.upstream_response",
        );
    }
    let hash_on = hash_on(u, balancer, path, errs);
    let proxy_protocol = match u.proxy_protocol.as_deref() {
        None => None,
        Some("v1") => Some(ProxyProtocolVersion::V1),
        Some("v2") => Some(ProxyProtocolVersion::V2),
        Some(v) => {
            errs.push(
                format!("{path}.proxy_protocol"),
                format!("`{v}` is not a PROXY protocol version; expected `v1` or `v2`"),
            );
            None
        }
    };
    UpstreamSpec {
        name: u.name.clone(),
        endpoints,
        protocol,
        balancer,
        hash_on,
        tls,
        pool,
        connect_timeout: t
            .and_then(|t| t.connect)
            .map(|d| d.0)
            .unwrap_or(DEFAULT_CONNECT_TIMEOUT),
        resilience: super::resilience::validate(u, path, errs),
        proxy_protocol,
    }
}

fn endpoint(e: &EndpointConf, path: &str, errs: &mut Errors) -> Option<EndpointSpec> {
    let (address, weight) = match e {
        EndpointConf::Address(a) => (a.clone(), 1),
        EndpointConf::Full { address, weight } => (address.clone(), weight.unwrap_or(1)),
    };
    if weight == 0 {
        errs.push(format!("{path}.weight"), "must be at least 1");
    }
    let Some((host, port)) = split_host_port(&address) else {
        let msg = if address.ends_with(":0") {
            format!("`{address}`: port 0 cannot be connected to")
        } else {
            format!("`{address}` is not `host:port`")
        };
        errs.push(path, msg);
        return None;
    };
    Some(EndpointSpec {
        address,
        host,
        port,
        weight,
    })
}

/// Splits `host:port` or `[v6]:port`.
pub(super) fn split_host_port(a: &str) -> Option<(String, u16)> {
    let (host, port) = a.rsplit_once(':')?;
    let port: u16 = port.parse().ok().filter(|p| *p != 0)?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if host.is_empty() || host.contains(char::is_whitespace) {
        return None;
    }
    Some((host.to_string(), port))
}

/// `hash_on` for hashing balancers: `ip` (the default, and the only one for `ip_hash`),
/// `header:NAME`, `cookie:NAME` or `query:NAME`.
fn hash_on(
    u: &UpstreamConf,
    balancer: BalancerKind,
    path: &str,
    errs: &mut Errors,
) -> Option<HashOn> {
    let p = format!("{path}.hash_on");
    if balancer != BalancerKind::ConsistentHash {
        if u.hash_on.is_some() {
            errs.push(
                p,
                "only a `consistent_hash` or `ip_hash` balancer takes hash_on",
            );
        }
        return None;
    }
    let raw = u.hash_on.as_deref().unwrap_or("ip");
    if u.balancer.as_deref() == Some("ip_hash") && raw != "ip" {
        errs.push(
            p,
            "`ip_hash` hashes the client IP; use `consistent_hash` for another key",
        );
        return Some(HashOn::ClientIp);
    }
    let bad = |errs: &mut Errors| {
        errs.push(&p, format!("`{raw}` is not a hash key; expected `ip`, `header:NAME`, `cookie:NAME` or `query:NAME`"));
        Some(HashOn::ClientIp)
    };
    match raw.split_once(':') {
        None if raw == "ip" => Some(HashOn::ClientIp),
        Some((_, "")) | None => bad(errs),
        Some(("header", n)) if http::HeaderName::from_bytes(n.as_bytes()).is_ok() => {
            Some(HashOn::Header(n.to_ascii_lowercase()))
        }
        Some(("cookie", n)) => Some(HashOn::Cookie(n.to_string())),
        Some(("query", n)) => Some(HashOn::Query(n.to_string())),
        Some(_) => bad(errs),
    }
}
