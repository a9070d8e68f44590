//! Compiles a proxied route's versions, splits and mirror: each version and split is
//! the route's own proxying settings on another upstream group.

use super::{Mirror, ProxyAction, Split, Version, Versions};
use crate::upstream::UpstreamGroup;
use gatehouse_config::spec::{ProxySpec, VersionSpec};
use http::{HeaderName, HeaderValue, StatusCode};
use std::collections::HashMap;
use std::sync::Arc;

type Groups = HashMap<String, Arc<UpstreamGroup>>;

/// The splits, mirror and versions of `p`; a target whose group failed to compile is
/// left out (its error is already reported).
pub fn compile(
    p: &ProxySpec,
    upstreams: &Groups,
    host_rewrite: &Option<HeaderValue>,
) -> (Vec<Split>, Option<Mirror>, Option<Versions>) {
    let action = |upstream: &str| {
        Some(ProxyAction::plain(
            upstreams.get(upstream)?.clone(),
            p.clone(),
            host_rewrite.clone(),
        ))
    };
    let splits = p
        .traffic
        .splits
        .iter()
        .filter_map(|s| {
            Some(Split {
                when: s.when.clone(),
                action: action(&s.upstream)?,
            })
        })
        .collect();
    let mirror = p.traffic.mirror.as_ref().and_then(|m| {
        Some(Mirror {
            group: upstreams.get(&m.upstream)?.clone(),
            share: m.share,
            max_body: m.max_body,
        })
    });
    let versions = p.traffic.versioning.as_ref().map(|v| {
        let list: Vec<Version> = v
            .versions
            .iter()
            .filter_map(|ver| {
                Some(Version {
                    name: ver.name.clone(),
                    action: action(&ver.upstream)?,
                    headers: version_headers(ver),
                })
            })
            .collect();
        Versions {
            by: v.by.clone(),
            default: v
                .default
                .as_ref()
                .and_then(|d| list.iter().position(|x| &x.name == d)),
            unknown: StatusCode::from_u16(v.unknown_status).unwrap_or(StatusCode::BAD_REQUEST),
            list,
        }
    });
    (splits, mirror, versions)
}

/// A version's response headers: `Deprecation: @secs` (RFC 9745), `Sunset` as an
/// HTTP-date (RFC 8594), and a `Link` to the page about it.
fn version_headers(v: &VersionSpec) -> Vec<(HeaderName, HeaderValue)> {
    let mut out = Vec::new();
    let at = |secs: i64| std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs.max(0) as u64);
    if let Some(d) = v.deprecated {
        if let Ok(h) = HeaderValue::from_str(&format!("@{d}")) {
            out.push((HeaderName::from_static("deprecation"), h));
        }
    }
    if let Some(s) = v.sunset {
        if let Ok(h) = HeaderValue::from_str(&httpdate::fmt_http_date(at(s))) {
            out.push((HeaderName::from_static("sunset"), h));
        }
    }
    if let Some(l) = &v.link {
        let rel = if v.deprecated.is_some() {
            "deprecation"
        } else {
            "sunset"
        };
        if let Ok(h) = HeaderValue::from_str(&format!("<{l}>; rel=\"{rel}\"")) {
            out.push((http::header::LINK, h));
        }
    }
    out
}
