//! Single-route checks: path (exact, prefix, template, regex), method, headers, query.

use gatehouse_config::spec::{FieldKind, FieldMatch, MatchSpec, PathMatch, Segment};
use http::{HeaderMap, Method};

/// What a route looks at in a request. `host` is lower-case without port.
pub struct RequestHead<'a> {
    pub method: &'a Method,
    pub host: &'a str,
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub headers: &'a HeaderMap,
}

pub(super) fn matches(m: &MatchSpec, h: &RequestHead<'_>) -> bool {
    path_matches(&m.path, h.path) && rest_matches(m, h)
}

/// Every condition but the path, which the path index has already checked.
pub(super) fn rest_matches(m: &MatchSpec, h: &RequestHead<'_>) -> bool {
    (m.methods.is_empty() || m.methods.contains(h.method))
        && m.headers.iter().all(|f| header_matches(f, h.headers))
        && m.query.iter().all(|f| query_matches(f, h.query))
}

pub(crate) fn path_matches(p: &PathMatch, path: &str) -> bool {
    match p {
        PathMatch::Any => true,
        PathMatch::Exact(e) => path == e,
        PathMatch::Prefix(pre) => prefix_matches(pre, path),
        PathMatch::Template(segs) => template_matches(segs, path),
        PathMatch::Regex(re) => re.is_match(path),
    }
}

/// `/api` matches `/api`, `/api/` and `/api/x` but not `/apix`; `/api/` matches `/api/x`.
fn prefix_matches(pre: &str, path: &str) -> bool {
    match path.strip_prefix(pre) {
        Some(rest) => pre.ends_with('/') || rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

fn template_matches(segs: &[Segment], path: &str) -> bool {
    walk_template(segs, path, |_, _| {})
}

/// Whether `path` matches the template, handing each parameter's name and text to
/// `param` on the way (`{rest*}` gets everything after its `/`).
pub(crate) fn walk_template<'p>(
    segs: &[Segment],
    path: &'p str,
    mut param: impl FnMut(&str, &'p str),
) -> bool {
    let trimmed = path.strip_prefix('/').unwrap_or(path);
    let mut parts = trimmed.split('/');
    let mut consumed = 0usize;
    for seg in segs {
        match seg {
            Segment::Rest(n) => {
                param(n, trimmed.get(consumed..).unwrap_or(""));
                return true;
            }
            Segment::Literal(l) => {
                if parts.next() != Some(l.as_str()) {
                    return false;
                }
                consumed += l.len() + 1;
            }
            Segment::Param(n) => match parts.next() {
                Some(p) if !p.is_empty() => {
                    param(n, p);
                    consumed += p.len() + 1;
                }
                _ => return false,
            },
        }
    }
    parts.next().is_none()
}

fn header_matches(f: &FieldMatch, headers: &HeaderMap) -> bool {
    let mut values = headers.get_all(f.name.as_str()).iter();
    match &f.kind {
        FieldKind::Present => values.next().is_some(),
        FieldKind::Absent => values.next().is_none(),
        FieldKind::Exact(v) => values.any(|x| x.as_bytes() == v.as_bytes()),
        FieldKind::Regex(re) => values.any(|x| x.to_str().map(|s| re.is_match(s)).unwrap_or(false)),
    }
}

fn query_matches(f: &FieldMatch, query: Option<&str>) -> bool {
    let mut values = crate::http::query::values(query.unwrap_or(""), &f.name);
    match &f.kind {
        FieldKind::Present => values.next().is_some(),
        FieldKind::Absent => values.next().is_none(),
        FieldKind::Exact(want) => values.any(|v| v == want),
        FieldKind::Regex(re) => values.any(|v| re.is_match(v)),
    }
}
