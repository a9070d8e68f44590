//! Validates `[[routes]]`: matchers (host, path, method, header, query), the action
//! (upstream, respond or redirect) and references to listeners and upstreams.

use super::listeners::valid_server_name;
use super::{check_unique, Errors};
use crate::raw::{FieldMatchConf, HeaderRulesConf, MatchConf, RouteConf};
use crate::spec::*;
use regex::Regex;
use std::time::Duration;

pub const DEFAULT_UPSTREAM_RESPONSE_TIMEOUT: Duration = Duration::from_secs(60);

/// What a route's `auth` table may name.
pub struct Gateway<'a> {
    /// The global `[cors]`, for routes without their own.
    pub cors: Option<&'a CorsSpec>,
    /// Every `[[rate_limits]]` name, valid or not (a bad policy is its own error).
    pub rate_limits: &'a [&'a str],
    pub consumers: &'a [ConsumerSpec],
    pub providers: &'a [JwtProviderSpec],
    pub introspection: &'a [IntrospectionSpec],
    pub upstreams: &'a [UpstreamSpec],
}

pub fn validate(
    list: &[(usize, RouteConf)],
    listeners: &[ListenerSpec],
    upstreams: &[UpstreamSpec],
    gateway: &Gateway,
    errs: &mut Errors,
) -> Vec<RouteSpec> {
    check_unique(
        list.iter().map(|(i, r)| (*i, r.name.as_str())),
        "routes",
        errs,
    );
    list.iter()
        .map(|(i, r)| {
            route(
                r,
                &format!("routes[{i}]"),
                listeners,
                upstreams,
                gateway,
                errs,
            )
        })
        .collect()
}

fn route(
    r: &RouteConf,
    path: &str,
    listeners: &[ListenerSpec],
    upstreams: &[UpstreamSpec],
    gateway: &Gateway,
    errs: &mut Errors,
) -> RouteSpec {
    let names = r.listeners.clone().unwrap_or_default();
    for (i, n) in names.iter().enumerate() {
        match listeners.iter().find(|l| &l.name == n) {
            None => errs.push(
                format!("{path}.listeners[{i}]"),
                format!("no listener is named `{n}`"),
            ),
            Some(l) if !l.kind.is_http() => errs.push(
                format!("{path}.listeners[{i}]"),
                format!(
                    "`{n}` is a {} listener; routes serve HTTP listeners only",
                    l.kind.word()
                ),
            ),
            Some(_) => {}
        }
    }
    let matcher = matcher(&r.matches, &format!("{path}.match"), errs);
    let action = action(r, path, upstreams, errs);
    if let (Some(sp), PathMatch::Prefix(p)) = (&r.strip_prefix, &matcher.path) {
        if !p.starts_with(sp.as_str()) {
            errs.push(
                format!("{path}.strip_prefix"),
                format!("`{sp}` is not a prefix of the matched prefix `{p}`"),
            );
        }
    }
    let t = r.timeouts.as_ref();
    let filters = filters(r, path, &matcher, gateway, errs);
    RouteSpec {
        name: r.name.clone(),
        listeners: names,
        matcher,
        action,
        max_body_size: r.max_body_size.map(|s| s.0),
        request_timeout: t
            .and_then(|t| t.request)
            .map(|d| d.0)
            .filter(|d| !d.is_zero()),
        filters,
        body_buffer_limit: r
            .body_buffer_limit
            .map_or(super::mediation::DEFAULT_BODY_BUFFER_LIMIT, |s| s.0),
    }
}

fn filters(
    r: &RouteConf,
    path: &str,
    matcher: &MatchSpec,
    gateway: &Gateway,
    errs: &mut Errors,
) -> Vec<FilterSpec> {
    let mut out = super::mediation::filters(r, path, matcher, gateway.cors, errs);
    // Network rules first: a refused address costs no credential check.
    let ip = super::auth::ip_rules(r.ip_allow.as_ref(), r.ip_deny.as_ref(), path, errs);
    if !ip.is_empty() {
        out.push(FilterSpec::IpRules(ip));
    }
    if let Some(a) = &r.auth {
        out.push(FilterSpec::Auth(super::auth::route_auth(
            a,
            &format!("{path}.auth"),
            gateway.consumers,
            gateway.providers,
            gateway.introspection,
            errs,
        )));
    }
    if let Some(e) = &r.external_auth {
        out.push(FilterSpec::ExternalAuth(super::auth::external_auth(
            e,
            &format!("{path}.external_auth"),
            gateway.upstreams,
            errs,
        )));
    }
    if let Some(names) = &r.rate_limits {
        let names = super::limits::route_limits(names, path, gateway.rate_limits, errs);
        if !names.is_empty() {
            out.push(FilterSpec::RateLimit(names));
        }
    }
    if let Some(h) = &r.request_headers {
        let (source, names) = super::mediation::route_captures(matcher);
        let mut rules = header_rules(h, &names, &format!("{path}.request_headers"), errs);
        rules.captures = source;
        out.push(FilterSpec::RequestHeaders(rules));
    }
    if let Some(h) = &r.response_headers {
        out.push(FilterSpec::ResponseHeaders(header_rules(
            h,
            &[],
            &format!("{path}.response_headers"),
            errs,
        )));
    }
    out
}

/// Header rules; values may name the route's path parameters `names`.
fn header_rules(
    h: &HeaderRulesConf,
    names: &[String],
    path: &str,
    errs: &mut Errors,
) -> HeaderRulesSpec {
    let mut pairs =
        |map: &std::collections::BTreeMap<String, String>, key: &str| -> Vec<(String, String)> {
            map.iter()
                .filter(|(k, v)| {
                    let ok = http::HeaderName::from_bytes(k.as_bytes()).is_ok()
                        && http::HeaderValue::from_str(v).is_ok();
                    if !ok {
                        errs.push(
                            format!("{path}.{key}.{k}"),
                            "not a valid header name and value",
                        );
                    } else if let Err(msg) = crate::spec::parse_template_with(v, names) {
                        let known = if names.is_empty() {
                            String::new()
                        } else {
                            format!(" (path parameters here: {})", names.join(", "))
                        };
                        errs.push(format!("{path}.{key}.{k}"), format!("{msg}{known}"));
                        return false;
                    }
                    ok
                })
                .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
                .collect()
        };
    let set = pairs(&h.set, "set");
    let add = pairs(&h.add, "add");
    let remove = h
        .remove
        .iter()
        .enumerate()
        .filter(|(i, n)| {
            let ok = http::HeaderName::from_bytes(n.as_bytes()).is_ok();
            if !ok {
                errs.push(
                    format!("{path}.remove[{i}]"),
                    format!("`{n}` is not a header name"),
                );
            }
            ok
        })
        .map(|(_, n)| n.to_ascii_lowercase())
        .collect();
    HeaderRulesSpec {
        set,
        add,
        remove,
        captures: CaptureSource::None,
        capture_names: names.to_vec(),
    }
}

fn action(r: &RouteConf, path: &str, upstreams: &[UpstreamSpec], errs: &mut Errors) -> ActionSpec {
    let count = [
        r.upstream.is_some(),
        r.respond.is_some(),
        r.redirect.is_some(),
    ]
    .iter()
    .filter(|b| **b)
    .count();
    if count != 1 {
        errs.push(
            path,
            "a route needs exactly one of `upstream`, `respond` or `redirect`",
        );
    }
    let proxy_only = [
        ("strip_prefix", r.strip_prefix.is_some()),
        ("replace_prefix", r.replace_prefix.is_some()),
        ("host_rewrite", r.host_rewrite.is_some()),
        ("preserve_host", r.preserve_host.is_some()),
        ("forwarded", r.forwarded.is_some()),
        ("request_headers", r.request_headers.is_some()),
        ("split", r.split.is_some()),
        ("mirror", r.mirror.is_some()),
        ("versioning", r.versioning.is_some()),
    ];
    if r.upstream.is_none() {
        for (k, set) in proxy_only {
            if set {
                errs.push(
                    format!("{path}.{k}"),
                    "only applies to a route with an upstream",
                );
            }
        }
    }
    if let Some(resp) = &r.respond {
        let status = resp.status.unwrap_or(200);
        check_status(status, 200..=599, &format!("{path}.respond.status"), errs);
        for (k, v) in &resp.headers {
            if http::HeaderName::from_bytes(k.as_bytes()).is_err()
                || http::HeaderValue::from_str(v).is_err()
            {
                errs.push(
                    format!("{path}.respond.headers.{k}"),
                    "not a valid header name and value",
                );
            }
        }
        let headers = resp
            .headers
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
            .collect();
        return ActionSpec::Respond(RespondSpec {
            status,
            headers,
            body: resp.body.clone().unwrap_or_default(),
        });
    }
    if let Some(red) = &r.redirect {
        let status = red.status.unwrap_or(302);
        if ![301, 302, 303, 307, 308].contains(&status) {
            errs.push(
                format!("{path}.redirect.status"),
                format!("{status} is not a redirect status; expected 301, 302, 303, 307 or 308"),
            );
        }
        if http::HeaderValue::from_str(&red.to).is_err() || red.to.is_empty() {
            errs.push(format!("{path}.redirect.to"), "not a valid Location value");
        }
        return ActionSpec::Redirect(RedirectSpec {
            to: red.to.clone(),
            status,
        });
    }
    let upstream = r.upstream.clone().unwrap_or_default();
    match upstreams.iter().find(|u| u.name == upstream) {
        None if r.upstream.is_some() => errs.push(
            format!("{path}.upstream"),
            format!("no upstream is named `{upstream}`"),
        ),
        // HTTP connections to an upstream are pooled and shared by many clients, so
        // there is no one client address a PROXY header could name.
        Some(u) if u.proxy_protocol.is_some() => errs.push(
            format!("{path}.upstream"),
            format!(
                "upstream `{upstream}` sends a PROXY protocol header, which only layer-4 \
                 listeners do (pooled HTTP connections are shared by many clients)"
            ),
        ),
        _ => {}
    }
    for (k, v) in [
        ("strip_prefix", &r.strip_prefix),
        ("replace_prefix", &r.replace_prefix),
    ] {
        if let Some(v) = v {
            if !v.starts_with('/') {
                errs.push(format!("{path}.{k}"), "must start with `/`");
            }
        }
    }
    if let Some(h) = &r.host_rewrite {
        if http::HeaderValue::from_str(h).is_err() || h.is_empty() {
            errs.push(format!("{path}.host_rewrite"), "not a valid Host value");
        }
    }
    let t = r.timeouts.as_ref();
    let primary = upstreams.iter().find(|u| u.name == upstream);
    let traffic = super::mediation::traffic(r, path, primary, upstreams, errs);
    ActionSpec::Proxy(ProxySpec {
        traffic: Box::new(traffic),
        upstream,
        strip_prefix: r.strip_prefix.clone(),
        replace_prefix: r.replace_prefix.clone(),
        host_rewrite: r.host_rewrite.clone(),
        preserve_host: r.preserve_host.unwrap_or(true),
        forwarded: r.forwarded.unwrap_or(false),
        upstream_response_timeout: t
            .and_then(|t| t.upstream_response)
            .map(|d| d.0)
            .unwrap_or(DEFAULT_UPSTREAM_RESPONSE_TIMEOUT),
    })
}

fn check_status(status: u16, range: std::ops::RangeInclusive<u16>, path: &str, errs: &mut Errors) {
    if !range.contains(&status) {
        errs.push(
            path,
            format!(
                "{status} is out of range {}..={}",
                range.start(),
                range.end()
            ),
        );
    }
}

fn matcher(m: &MatchConf, path: &str, errs: &mut Errors) -> MatchSpec {
    let hosts = m
        .host
        .as_ref()
        .map(|h| h.to_vec())
        .unwrap_or_default()
        .iter()
        .enumerate()
        .filter_map(|(i, h)| host(h, &format!("{path}.host[{i}]"), errs))
        .collect();
    let methods = m
        .method
        .as_ref()
        .map(|h| h.to_vec())
        .unwrap_or_default()
        .iter()
        .enumerate()
        .filter_map(
            |(i, s)| match http::Method::from_bytes(s.to_ascii_uppercase().as_bytes()) {
                Ok(m) => Some(m),
                Err(_) => {
                    errs.push(
                        format!("{path}.method[{i}]"),
                        format!("`{s}` is not an HTTP method"),
                    );
                    None
                }
            },
        )
        .collect();
    MatchSpec {
        hosts,
        path: path_match(m, path, errs),
        methods,
        headers: fields(&m.headers, &format!("{path}.headers"), true, errs),
        query: fields(&m.query, &format!("{path}.query"), false, errs),
    }
}

fn host(h: &str, path: &str, errs: &mut Errors) -> Option<HostMatch> {
    let h = h.to_ascii_lowercase();
    if !valid_server_name(&h) {
        errs.push(
            path,
            format!("`{h}` is not a host name (`example.com` or `*.example.com`)"),
        );
        return None;
    }
    Some(match h.strip_prefix('*') {
        Some(suffix) => HostMatch::Suffix(suffix.to_string()),
        None => HostMatch::Exact(h),
    })
}

fn path_match(m: &MatchConf, path: &str, errs: &mut Errors) -> PathMatch {
    let set = [m.path.is_some(), m.prefix.is_some(), m.regex.is_some()]
        .iter()
        .filter(|b| **b)
        .count();
    if set > 1 {
        errs.push(path, "use only one of `path`, `prefix` and `regex`");
    }
    if let Some(p) = &m.path {
        if !p.starts_with('/') {
            errs.push(format!("{path}.path"), "must start with `/`");
        }
        if p.contains('{') {
            return match template(p) {
                Ok(segs) => PathMatch::Template(segs),
                Err(e) => {
                    errs.push(format!("{path}.path"), e);
                    PathMatch::Any
                }
            };
        }
        return PathMatch::Exact(p.clone());
    }
    if let Some(p) = &m.prefix {
        if !p.starts_with('/') {
            errs.push(format!("{path}.prefix"), "must start with `/`");
        }
        return PathMatch::Prefix(p.clone());
    }
    if let Some(r) = &m.regex {
        // Anchored: a regex matches the whole path, as in Envoy's safe_regex.
        return match Regex::new(&format!("^(?:{r})$")) {
            Ok(re) => PathMatch::Regex(re),
            Err(e) => {
                errs.push(
                    format!("{path}.regex"),
                    format!("regex does not compile: {}", first_line(&e.to_string())),
                );
                PathMatch::Any
            }
        };
    }
    PathMatch::Any
}

/// Parses `/users/{id}/files/{rest*}`.
pub(crate) fn template(p: &str) -> Result<Vec<Segment>, String> {
    let parts: Vec<&str> = p.trim_start_matches('/').split('/').collect();
    let last = parts.len() - 1;
    let mut out = Vec::with_capacity(parts.len());
    for (i, s) in parts.iter().enumerate() {
        if let Some(inner) = s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            let (name, rest) = match inner.strip_suffix('*') {
                Some(n) => (n, true),
                None => (inner, false),
            };
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                return Err(format!(
                    "`{{{inner}}}` is not a parameter; expected `{{name}}` or `{{name*}}`"
                ));
            }
            if rest && i != last {
                return Err(format!("`{{{inner}}}` may only be the last segment"));
            }
            out.push(if rest {
                Segment::Rest(name.into())
            } else {
                Segment::Param(name.into())
            });
        } else if s.contains(['{', '}']) {
            return Err(format!(
                "segment `{s}` mixes text and a parameter; a parameter must be a whole segment"
            ));
        } else {
            out.push(Segment::Literal((*s).to_string()));
        }
    }
    Ok(out)
}

fn fields(list: &[FieldMatchConf], path: &str, header: bool, errs: &mut Errors) -> Vec<FieldMatch> {
    list.iter()
        .enumerate()
        .filter_map(|(i, f)| {
            let p = format!("{path}[{i}]");
            if header && http::HeaderName::from_bytes(f.name.as_bytes()).is_err() {
                errs.push(
                    format!("{p}.name"),
                    format!("`{}` is not a header name", f.name),
                );
            }
            let n = [f.value.is_some(), f.regex.is_some(), f.present.is_some()]
                .iter()
                .filter(|b| **b)
                .count();
            if n != 1 {
                errs.push(&p, "needs exactly one of `value`, `regex` or `present`");
                return None;
            }
            let kind = if let Some(v) = &f.value {
                FieldKind::Exact(v.clone())
            } else if let Some(r) = &f.regex {
                match Regex::new(&format!("^(?:{r})$")) {
                    Ok(re) => FieldKind::Regex(re),
                    Err(e) => {
                        errs.push(
                            format!("{p}.regex"),
                            format!("regex does not compile: {}", first_line(&e.to_string())),
                        );
                        return None;
                    }
                }
            } else if f.present == Some(true) {
                FieldKind::Present
            } else {
                FieldKind::Absent
            };
            let name = if header {
                f.name.to_ascii_lowercase()
            } else {
                f.name.clone()
            };
            Some(FieldMatch { name, kind })
        })
        .collect()
}

/// The regex crate's message ends with a line `error: <what>`; keep only `<what>`.
pub(super) fn first_line(s: &str) -> String {
    let last = s
        .lines()
        .rfind(|l| !l.trim().is_empty())
        .unwrap_or(s)
        .trim();
    last.strip_prefix("error: ").unwrap_or(last).to_string()
}
