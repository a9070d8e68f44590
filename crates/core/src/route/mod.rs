//! Route matching, with no I/O: a [`RouteTable`] built once per config generation and
//! listener, and `find` per request.
//!
//! Precedence, most specific first (documented in docs/config.md):
//! 1. host: exact name, then wildcard (longest suffix first), then routes with no host;
//! 2. path: exact, then template (more literal segments first), then prefix (longer
//!    first), then regex, then no path condition;
//! 3. more method/header/query conditions first;
//! 4. config order.

mod matcher;
#[cfg(test)]
mod tests;

use gatehouse_config::spec::{HostMatch, MatchSpec, PathMatch, Segment};
use http::{HeaderMap, Method};
use std::collections::HashMap;

pub use matcher::RequestHead;

/// Routes for one listener, with the payload `T` each match yields.
pub struct RouteTable<T> {
    entries: Vec<Entry<T>>,
    /// Exact host -> entry indexes in precedence order.
    exact: HashMap<String, Vec<usize>>,
    /// (suffix, entry indexes), longest suffix first.
    wildcard: Vec<(String, Vec<usize>)>,
    /// Entries with no host condition, in precedence order.
    any_host: Vec<usize>,
}

struct Entry<T> {
    matcher: MatchSpec,
    value: T,
}

/// Why a route won or lost; the sort key of the precedence rules above.
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
            .map(|(matcher, value)| Entry { matcher, value })
            .collect();
        let mut exact: HashMap<String, Vec<usize>> = HashMap::new();
        let mut wildcard: HashMap<String, Vec<usize>> = HashMap::new();
        let mut any_host = Vec::new();
        for (i, e) in entries.iter().enumerate() {
            if e.matcher.hosts.is_empty() {
                any_host.push(i);
            }
            for h in &e.matcher.hosts {
                match h {
                    HostMatch::Exact(n) => exact.entry(n.clone()).or_default().push(i),
                    HostMatch::Suffix(s) => wildcard.entry(s.clone()).or_default().push(i),
                }
            }
        }
        let rank = |i: &usize| rank(&entries[*i].matcher, *i);
        for v in exact.values_mut() {
            v.sort_by_key(rank);
            v.dedup();
        }
        let mut wildcard: Vec<(String, Vec<usize>)> = wildcard.into_iter().collect();
        for (_, v) in wildcard.iter_mut() {
            v.sort_by_key(rank);
            v.dedup();
        }
        wildcard.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.0.cmp(&b.0)));
        any_host.sort_by_key(rank);
        RouteTable {
            entries,
            exact,
            wildcard,
            any_host,
        }
    }

    /// The most specific route matching the request, if any.
    pub fn find(&self, head: &RequestHead<'_>) -> Option<&T> {
        self.candidates(head.host)
            .find(|i| matcher::matches(&self.entries[*i].matcher, head))
            .map(|i| &self.entries[i].value)
    }

    /// Entry indexes in precedence order for a (lower-case, port-less) host.
    fn candidates<'a>(&'a self, host: &'a str) -> impl Iterator<Item = usize> + 'a {
        let exact = self.exact.get(host).into_iter().flatten().copied();
        let wild = self
            .wildcard
            .iter()
            .filter(move |(s, _)| host.len() > s.len() && host.ends_with(s.as_str()));
        exact
            .chain(wild.flat_map(|(_, v)| v.iter().copied()))
            .chain(self.any_host.iter().copied())
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
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
    let no_port = match raw.rsplit_once(':') {
        // `[v6]:port` or `name:port`; a bare IPv6 literal has more colons and a bracket.
        Some((h, p))
            if p.bytes().all(|b| b.is_ascii_digit()) && (!h.contains(':') || h.ends_with(']')) =>
        {
            h
        }
        _ => raw,
    };
    let no_dot = no_port.trim_end_matches('.');
    if no_dot.bytes().any(|b| b.is_ascii_uppercase()) {
        std::borrow::Cow::Owned(no_dot.to_ascii_lowercase())
    } else {
        std::borrow::Cow::Borrowed(no_dot)
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
