//! Validates the layer-4 side of `[[listeners]]`: the `tcp`, `udp` and `tls_passthrough`
//! kinds, the upstreams they name (directly or per server name), and the keys that only
//! make sense on one side (HTTP limits on a TCP listener, `upstream` on an HTTP one).

use super::listeners::valid_server_name;
use super::Errors;
use crate::raw::ListenerConf;
use crate::spec::*;
use std::collections::HashMap;
use std::time::Duration;

pub const DEFAULT_UDP_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// The kind of a `tcp`, `udp` or `tls_passthrough` listener.
pub fn kind(
    l: &ListenerConf,
    proto: &str,
    path: &str,
    upstreams: &[UpstreamSpec],
    errs: &mut Errors,
) -> ListenerKind {
    if proto == "tls_passthrough" {
        return ListenerKind::TlsPassthrough(passthrough(l, path, upstreams, errs));
    }
    let upstream = match &l.upstream {
        Some(u) => {
            upstream_ref(u, &format!("{path}.upstream"), proto, upstreams, errs);
            u.clone()
        }
        None => {
            errs.push(
                format!("{path}.upstream"),
                format!("a {proto} listener needs `upstream`, the upstream its traffic goes to"),
            );
            String::new()
        }
    };
    if l.sni.is_some() {
        errs.push(
            format!("{path}.sni"),
            "only a `tls_passthrough` listener chooses upstreams by sni",
        );
    }
    if proto == "tcp" {
        return ListenerKind::Tcp { upstream };
    }
    let idle = l.timeouts.as_ref().and_then(|t| t.udp_idle).map(|d| d.0);
    if idle.is_some_and(|d| d.is_zero()) {
        errs.push(format!("{path}.timeouts.udp_idle"), "must be more than 0");
    }
    ListenerKind::Udp {
        upstream,
        flow_idle_timeout: idle.unwrap_or(DEFAULT_UDP_IDLE_TIMEOUT),
    }
}

fn passthrough(
    l: &ListenerConf,
    path: &str,
    upstreams: &[UpstreamSpec],
    errs: &mut Errors,
) -> PassthroughSpec {
    let proto = "tls_passthrough";
    if let Some(u) = &l.upstream {
        upstream_ref(u, &format!("{path}.upstream"), proto, upstreams, errs);
    }
    let entries = l.sni.as_deref().unwrap_or_default();
    if entries.is_empty() && l.upstream.is_none() {
        errs.push(
            format!("{path}.sni"),
            "a tls_passthrough listener needs `sni` entries, a default `upstream`, or both",
        );
    }
    let mut names = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (i, e) in entries.iter().enumerate() {
        let p = format!("{path}.sni[{i}]");
        upstream_ref(
            &e.upstream,
            &format!("{p}.upstream"),
            proto,
            upstreams,
            errs,
        );
        if e.names.is_empty() {
            errs.push(format!("{p}.names"), "at least one name is required");
        }
        for (j, n) in e.names.iter().enumerate() {
            let n = n.to_ascii_lowercase();
            if !valid_server_name(&n) {
                errs.push(
                    format!("{p}.names[{j}]"),
                    format!("`{n}` is not a server name (`example.com` or `*.example.com`)"),
                );
                continue;
            }
            if let Some(first) = seen.insert(n.clone(), i) {
                errs.push(
                    format!("{p}.names[{j}]"),
                    format!("`{n}` is already listed in sni[{first}]"),
                );
                continue;
            }
            names.push((n, e.upstream.clone()));
        }
    }
    PassthroughSpec {
        names,
        default: l.upstream.clone(),
    }
}

/// Checks an upstream named by a layer-4 listener: it exists, and asks for nothing a
/// byte-forwarding listener cannot do.
fn upstream_ref(
    name: &str,
    path: &str,
    proto: &str,
    upstreams: &[UpstreamSpec],
    errs: &mut Errors,
) {
    let Some(u) = upstreams.iter().find(|u| u.name == name) else {
        errs.push(path, format!("no upstream is named `{name}`"));
        return;
    };
    if u.tls.is_some() {
        errs.push(
            path,
            format!(
                "upstream `{name}` has tls; a {proto} listener forwards bytes as they are \
                 and opens no TLS towards its upstream"
            ),
        );
    }
    if proto == "udp" && u.proxy_protocol.is_some() {
        errs.push(
            path,
            format!("upstream `{name}` sends a PROXY protocol header, which udp listeners do not"),
        );
    }
}

/// Keys of layer-4 listeners set on an HTTP one.
pub fn no_l4_keys(l: &ListenerConf, path: &str, errs: &mut Errors) {
    if l.upstream.is_some() {
        errs.push(
            format!("{path}.upstream"),
            "only tcp, udp and tls_passthrough listeners take an upstream; HTTP listeners \
             reach upstreams through routes",
        );
    }
    if l.sni.is_some() {
        errs.push(
            format!("{path}.sni"),
            "only a `tls_passthrough` listener chooses upstreams by sni",
        );
    }
    udp_only(l, path, errs);
}

/// Keys of HTTP listeners set on a layer-4 one, and layer-4 keys on the wrong kind.
pub fn no_http_keys(l: &ListenerConf, path: &str, kind: &ListenerKind, errs: &mut Errors) {
    let word = kind.word();
    if l.http2.is_some() {
        errs.push(
            format!("{path}.http2"),
            format!("a {word} listener does not speak HTTP; remove http2"),
        );
    }
    if l.limits.is_some() {
        errs.push(
            format!("{path}.limits"),
            format!("a {word} listener does not speak HTTP; remove limits"),
        );
    }
    if l.defer_accept.is_some() {
        errs.push(
            format!("{path}.defer_accept"),
            format!("a {word} listener accepts at once (its server may speak first); remove defer_accept"),
        );
    }
    if kind.is_udp() {
        if l.proxy_protocol == Some(true) {
            errs.push(
                format!("{path}.proxy_protocol"),
                "the PROXY protocol is read on TCP listeners only",
            );
        }
    } else {
        udp_only(l, path, errs);
    }
}

fn udp_only(l: &ListenerConf, path: &str, errs: &mut Errors) {
    if l.timeouts.as_ref().is_some_and(|t| t.udp_idle.is_some()) {
        errs.push(
            format!("{path}.timeouts.udp_idle"),
            "only a `udp` listener takes udp_idle",
        );
    }
}
