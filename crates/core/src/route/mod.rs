//! Route matching, with no I/O: a [`RouteTable`] built once per config generation and
//! listener, and `find` per request.
//!
//! Precedence, most specific first (documented in docs/config.md):
//! 1. host: exact name, then wildcard (longest suffix first), then routes with no host;
//! 2. path: exact, then template (more literal segments first), then prefix (longer
//!    first), then regex, then no path condition;
//! 3. more method/header/query conditions first;
//! 4. config order.

mod index;
mod matcher;
#[cfg(test)]
mod tests;

use gatehouse_config::spec::{HostMatch, MatchSpec, PathMatch, Segment};
use http::{HeaderMap, Method};
use index::PathIndex;
use std::collections::HashMap;

pub use matcher::RequestHead;
pub(crate) use matcher::{path_matches, walk_template};

/// Routes for one listener, with the payload `T` each match yields. Routes are bucketed
/// by host condition, and each bucket indexes its routes by path condition, so that a
/// request looks at the routes that can match it, never at all of them (10,000 routes:
/// docs/benchmarks.md).
pub struct RouteTable<T> {
    entries: Vec<Entry<T>>,
    /// Exact host -> its routes.
    exact: HashMap<Box<str>, PathIndex>,
    /// Wildcard suffix (`.example.com`) -> its routes; looked up at each dot of the host,
    /// leftmost (longest suffix) first.
    wildcard: HashMap<Box<str>, PathIndex>,
    /// Routes with no host condition.
    any_host: PathIndex,
}

struct Entry<T> {
    matcher: MatchSpec,
    value: T,
    rank: Rank,
}

/// Why a route won or lost within a host bucket; the sort key of the precedence rules
/// above.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Rank {
    path_class: u8,
    /// Negated so larger specificity sorts first.
    path_len: i64,
    conditions: i64,
    order: usize,
}

// === impl RouteTable ===

impl<T> RouteTable<T> {
    /// Builds the table; `routes` are in config order.
    pub fn new(routes: Vec<(MatchSpec, T)>) -> Self {
        let entries: Vec<Entry<T>> = routes
            .into_iter()
            .enumerate()
            .map(|(i, (matcher, value))| Entry {
                rank: rank(&matcher, i),
                matcher,
                value,
            })
            .collect();
        let mut exact: HashMap<Box<str>, PathIndex> = HashMap::new();
        let mut wildcard: HashMap<Box<str>, PathIndex> = HashMap::new();
        let mut any_host = PathIndex::default();
        for (i, e) in entries.iter().enumerate() {
            if e.matcher.hosts.is_empty() {
                any_host.add(i, e);
            }
            for h in &e.matcher.hosts {
                let bucket = match h {
                    HostMatch::Exact(n) => exact.entry(n.as_str().into()),
                    HostMatch::Suffix(s) => wildcard.entry(s.as_str().into()),
                };
                bucket.or_default().add(i, e);
            }
        }
        for b in exact.values_mut().chain(wildcard.values_mut()) {
            b.finish(&entries);
        }
        any_host.finish(&entries);
        RouteTable {
            entries,
            exact,
            wildcard,
            any_host,
        }
    }

    /// The most specific route matching the request, if any.
    pub fn find(&self, head: &RequestHead<'_>) -> Option<&T> {
        self.buckets(head.host)
            .find_map(|b| b.find(&self.entries, head))
            .map(|i| &self.entries[i].value)
    }

    /// The buckets that can hold a route for a (lower-case, port-less) host, in
    /// precedence order: its exact name, its wildcards longest first, then any host.
    fn buckets<'a>(&'a self, host: &'a str) -> impl Iterator<Item = &'a PathIndex> + 'a {
        // `*.example.com` (`.example.com`) matches `a.example.com`, not `example.com`.
        // With no wildcard routes the host's dots are not even looked for.
        let dots = if self.wildcard.is_empty() { "" } else { host };
        let wild = dots
            .match_indices('.')
            .filter(|(i, _)| *i > 0)
            .filter_map(|(i, _)| self.wildcard.get(&host[i..]));
        self.exact
            .get(host)
            .into_iter()
            .chain(wild)
            .chain(std::iter::once(&self.any_host))
    }

    /// The same answer as [`find`](Self::find), by checking every route against the
    /// precedence rules directly: the reference the index is tested and fuzzed against.
    #[doc(hidden)]
    pub fn find_by_scan(&self, head: &RequestHead<'_>) -> Option<&T> {
        self.entries
            .iter()
            .filter(|e| matcher::matches(&e.matcher, head))
            .filter_map(|e| Some((host_rank(&e.matcher.hosts, head.host)?, e.rank, e)))
            .min_by_key(|(h, r, _)| (*h, *r))
            .map(|(_, _, e)| &e.value)
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// How well a route's hosts fit `host`, lower first: exact, then wildcards by suffix
/// length, then no host condition; `None` when none fits.
fn host_rank(hosts: &[HostMatch], host: &str) -> Option<(u8, i64)> {
    if hosts.is_empty() {
        return Some((2, 0));
    }
    hosts
        .iter()
        .filter_map(|h| match h {
            HostMatch::Exact(n) => (n == host).then_some((0, 0)),
            HostMatch::Suffix(s) => (host.len() > s.len() && host.ends_with(s.as_str()))
                .then_some((1, -(s.len() as i64))),
        })
        .min()
}

fn rank(m: &MatchSpec, order: usize) -> Rank {
    let (path_class, path_len) = match &m.path {
        PathMatch::Exact(p) => (0, p.len()),
        PathMatch::Template(segs) => (
            1,
            segs.iter()
                .filter(|s| matches!(s, Segment::Literal(_)))
                .count(),
        ),
        PathMatch::Prefix(p) => (2, p.len()),
        PathMatch::Regex(_) => (3, 0),
        PathMatch::Any => (4, 0),
    };
    let conditions = usize::from(!m.methods.is_empty()) + m.headers.len() + m.query.len();
    Rank {
        path_class,
        path_len: -(path_len as i64),
        conditions: -(conditions as i64),
        order,
    }
}

/// Lower-cases a host and drops its port and trailing dots, allocating only when needed.
/// The edge lets only valid `host[:port]` through (`http::edge::valid_host`), for which
/// this is idempotent.
pub fn normalize_host(raw: &str) -> std::borrow::Cow<'_, str> {
    // Bytes, not `str` patterns: this runs on every request (the pattern searchers
    // were a third of a one-route table's matching cost).
    let b = raw.as_bytes();
    let mut end = b.len();
    if let Some(colon) = b.iter().rposition(|&c| c == b':') {
        let (host, port) = (&b[..colon], &b[colon + 1..]);
        // `[v6]:port` or `name:port`; a bare IPv6 literal has more colons and a bracket.
        if port.iter().all(u8::is_ascii_digit) && (host.ends_with(b"]") || !host.contains(&b':')) {
            end = colon;
        }
    }
    while end > 0 && b[end - 1] == b'.' {
        end -= 1;
    }
    let host = &raw[..end];
    if host.bytes().any(|c| c.is_ascii_uppercase()) {
        std::borrow::Cow::Owned(host.to_ascii_lowercase())
    } else {
        std::borrow::Cow::Borrowed(host)
    }
}

/// Builds a request head view for matching.
pub fn head<'a>(
    method: &'a Method,
    host: &'a str,
    path: &'a str,
    query: Option<&'a str>,
    headers: &'a HeaderMap,
) -> RequestHead<'a> {
    RequestHead {
        method,
        host,
        path,
        query,
        headers,
    }
}
