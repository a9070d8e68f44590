//! Validates `[[listeners]]`: addresses, protocols, TLS material names and limits.

use super::{check_unique, l4, parse_addr, Errors};
use crate::raw::{ListenerConf, ListenerTlsConf};
use crate::spec::*;
use std::path::PathBuf;
use std::time::Duration;

/// TLS 1.2 sessions kept for resumption by session id, as NGINX's usual
/// `ssl_session_cache shared:SSL:4m` holds (some 16,000); a few hundred bytes each.
const DEFAULT_SESSION_CACHE: usize = 16_384;
const MAX_SESSION_CACHE: usize = 1 << 20;

pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
pub const DEFAULT_TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_MAX_HEADER_SIZE: usize = 64 * 1024;
pub const DEFAULT_MAX_HEADERS: usize = 100;
pub const MIN_MAX_HEADER_SIZE: usize = 8 * 1024;

pub fn validate(
    list: &[(usize, ListenerConf)],
    upstreams: &[UpstreamSpec],
    errs: &mut Errors,
) -> Vec<ListenerSpec> {
    check_unique(
        list.iter().map(|(i, l)| (*i, l.name.as_str())),
        "listeners",
        errs,
    );
    let out: Vec<(usize, ListenerSpec)> = list
        .iter()
        .filter_map(|(i, l)| {
            listener(l, &format!("listeners[{i}]"), upstreams, errs).map(|s| (*i, s))
        })
        .collect();
    let mut seen = std::collections::HashMap::new();
    for (i, l) in &out {
        // Port 0 asks the system for a free port: two of them never collide.
        if l.addr.port() == 0 {
            continue;
        }
        // TCP and UDP ports are separate: a udp listener may share a tcp one's address.
        if let Some(other) = seen.insert((l.addr, l.kind.is_udp()), &l.name) {
            errs.push(
                format!("listeners[{i}].listen"),
                format!("{} is already bound by listener `{other}`", l.addr),
            );
        }
    }
    out.into_iter().map(|(_, l)| l).collect()
}

fn listener(
    l: &ListenerConf,
    path: &str,
    upstreams: &[UpstreamSpec],
    errs: &mut Errors,
) -> Option<ListenerSpec> {
    let addr = parse_addr(&l.listen, &format!("{path}.listen"), errs);
    let kind = match l.protocol.as_deref().unwrap_or("http") {
        "http" => {
            no_tls(l, path, "http", errs);
            ListenerKind::Http
        }
        "redirect" => {
            no_tls(l, path, "redirect", errs);
            ListenerKind::Redirect {
                https_port: l.redirect_port.unwrap_or(443),
            }
        }
        "https" => match &l.tls {
            Some(t) => ListenerKind::Https(tls(t, &format!("{path}.tls"), errs)),
            None => {
                errs.push(
                    format!("{path}.tls"),
                    "an https listener needs a [listeners.tls] table with certificates",
                );
                ListenerKind::Http
            }
        },
        proto @ ("tcp" | "udp" | "tls_passthrough") => {
            no_tls(l, path, proto, errs);
            l4::kind(l, proto, path, upstreams, errs)
        }
        other => {
            errs.push(
                format!("{path}.protocol"),
                format!(
                    "`{other}` is not a listener protocol; expected `http`, `https`, \
                     `redirect`, `tcp`, `udp` or `tls_passthrough`"
                ),
            );
            ListenerKind::Http
        }
    };
    if kind.is_http() {
        l4::no_l4_keys(l, path, errs);
    } else {
        l4::no_http_keys(l, path, &kind, errs);
    }
    if l.redirect_port.is_some() && !matches!(kind, ListenerKind::Redirect { .. }) {
        errs.push(
            format!("{path}.redirect_port"),
            "only a `redirect` listener takes redirect_port",
        );
    }
    let max_connections = l.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS);
    if max_connections == 0 {
        errs.push(format!("{path}.max_connections"), "must be at least 1");
    }
    let t = l.timeouts.as_ref();
    let lim = l.limits.as_ref();
    let limits = LimitsSpec {
        max_header_size: lim
            .and_then(|x| x.max_header_size)
            .map(|s| s.0 as usize)
            .unwrap_or(DEFAULT_MAX_HEADER_SIZE),
        max_headers: lim
            .and_then(|x| x.max_headers)
            .unwrap_or(DEFAULT_MAX_HEADERS),
        max_body_size: lim.and_then(|x| x.max_body_size).map(|s| s.0),
    };
    // hyper's HTTP/1.1 read buffer, which enforces this limit, cannot be smaller than
    // 8KiB: a smaller value would be silently raised, so refuse it.
    if limits.max_header_size < MIN_MAX_HEADER_SIZE {
        errs.push(
            format!("{path}.limits.max_header_size"),
            "must be at least 8KiB",
        );
    }
    if limits.max_headers == 0 {
        errs.push(format!("{path}.limits.max_headers"), "must be at least 1");
    }
    let defer_accept = kind.is_http() && l.defer_accept.unwrap_or(true);
    Some(ListenerSpec {
        name: l.name.clone(),
        addr: addr?,
        kind,
        http2: l.http2.unwrap_or(true),
        max_connections,
        header_read_timeout: t
            .and_then(|t| t.header_read)
            .map(|d| d.0)
            .unwrap_or(DEFAULT_HEADER_READ_TIMEOUT),
        idle_timeout: t
            .and_then(|t| t.idle)
            .map(|d| d.0)
            .unwrap_or(DEFAULT_IDLE_TIMEOUT),
        tls_handshake_timeout: t
            .and_then(|t| t.tls_handshake)
            .map(|d| d.0)
            .unwrap_or(DEFAULT_TLS_HANDSHAKE_TIMEOUT),
        limits,
        proxy_protocol: l.proxy_protocol.unwrap_or(false),
        defer_accept,
        ip_rules: super::auth::ip_rules(l.ip_allow.as_ref(), l.ip_deny.as_ref(), path, errs),
    })
}

fn no_tls(l: &ListenerConf, path: &str, proto: &str, errs: &mut Errors) {
    if l.tls.is_some() {
        let hint = if matches!(proto, "http" | "redirect") {
            "set protocol = \"https\""
        } else {
            "it does not terminate TLS"
        };
        errs.push(
            format!("{path}.tls"),
            format!("a listener with protocol `{proto}` takes no tls table; {hint}"),
        );
    }
}

fn tls(t: &ListenerTlsConf, path: &str, errs: &mut Errors) -> TlsSpec {
    if t.certificates.is_empty() {
        errs.push(
            format!("{path}.certificates"),
            "at least one certificate is required",
        );
    }
    let mut defaults = 0;
    let certificates = t
        .certificates
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let p = format!("{path}.certificates[{i}]");
            let names: Vec<String> = c
                .names
                .clone()
                .unwrap_or_default()
                .iter()
                .map(|n| n.to_ascii_lowercase())
                .collect();
            for (j, n) in names.iter().enumerate() {
                if !valid_server_name(n) {
                    errs.push(
                        format!("{p}.names[{j}]"),
                        format!("`{n}` is not a server name (`example.com` or `*.example.com`)"),
                    );
                }
            }
            let default = c.default.unwrap_or(false);
            defaults += usize::from(default);
            CertSpec {
                cert: PathBuf::from(&c.cert),
                key: PathBuf::from(&c.key),
                names,
                default,
            }
        })
        .collect();
    if defaults > 1 {
        errs.push(
            format!("{path}.certificates"),
            "only one certificate may be the default",
        );
    }
    let min_version = match t.min_version.as_deref() {
        None | Some("1.2") => TlsVersion::Tls12,
        Some("1.3") => TlsVersion::Tls13,
        Some(v) => {
            errs.push(
                format!("{path}.min_version"),
                format!("`{v}` is not a TLS version; expected \"1.2\" or \"1.3\""),
            );
            TlsVersion::Tls12
        }
    };
    let client_auth = match (&t.client_ca, t.client_auth.as_deref()) {
        (None, None) => None,
        (None, Some(_)) => {
            errs.push(
                format!("{path}.client_auth"),
                "client_auth needs client_ca (a PEM file of trusted CAs)",
            );
            None
        }
        (Some(ca), mode) => {
            let required = match mode {
                None | Some("required") => true,
                Some("optional") => false,
                Some(m) => {
                    errs.push(
                        format!("{path}.client_auth"),
                        format!("`{m}` is not a mode; expected `required` or `optional`"),
                    );
                    true
                }
            };
            Some(ClientAuthSpec {
                ca: PathBuf::from(ca),
                required,
            })
        }
    };
    let session_cache = match t.session_cache {
        None => DEFAULT_SESSION_CACHE,
        Some(n) if n <= MAX_SESSION_CACHE as u64 => n as usize,
        Some(n) => {
            errs.push(
                format!("{path}.session_cache"),
                format!("{n} sessions is more than the {MAX_SESSION_CACHE} allowed"),
            );
            DEFAULT_SESSION_CACHE
        }
    };
    TlsSpec {
        certificates,
        min_version,
        client_auth,
        session_tickets: t.session_tickets.unwrap_or(true),
        session_cache,
    }
}

/// `example.com` or `*.example.com`, letters, digits, `-` and `.` only.
pub(crate) fn valid_server_name(n: &str) -> bool {
    let rest = n.strip_prefix("*.").unwrap_or(n);
    !rest.is_empty()
        && rest.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}
