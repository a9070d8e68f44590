//! The path index of one host bucket: which routes' path conditions can match a path,
//! found without looking at every route. Exact paths and prefixes by hash look-ups at the
//! path's `/` boundaries, templates by a segment trie, regexes by their literal prefix
//! (from `regex-syntax`), so a request costs lookups bounded by its own length, whatever
//! the number of routes. Only regexes with no literal prefix (`.*\.php`) are tried one by
//! one, and routes with no path condition, which are all candidates by definition.

use super::{Entry, Rank};
use gatehouse_config::spec::{PathMatch, Segment};
use regex_syntax::hir::literal::{ExtractKind, Extractor};
use std::collections::HashMap;

/// Entry indexes of one bucket by path condition; every list is in rank order.
#[derive(Default)]
pub(super) struct PathIndex {
    exact: HashMap<Box<str>, Vec<usize>>,
    templates: Node,
    prefixes: HashMap<Box<str>, Vec<usize>>,
    /// Regexes by literal prefix (`""` when they have none).
    regexes: HashMap<Box<[u8]>, Vec<usize>>,
    /// The distinct lengths of the keys of `regexes`, shortest first.
    regex_prefix_lens: Vec<usize>,
    any: Vec<usize>,
}

/// A template trie node: the templates whose literal and `{param}` segments lead here.
#[derive(Default)]
struct Node {
    literal: HashMap<Box<str>, Node>,
    param: Option<Box<Node>>,
    /// Templates ending in `{rest*}` here: they match whatever follows.
    rest: Vec<usize>,
    /// Templates ending here: they match when the path has no more segments.
    end: Vec<usize>,
}

/// Keeps the best (lowest-rank) entry seen among several candidates.
struct Best<'a, T> {
    entries: &'a [Entry<T>],
    found: Option<(Rank, usize)>,
}

// === impl PathIndex ===

impl PathIndex {
    pub(super) fn add<T>(&mut self, i: usize, e: &Entry<T>) {
        match &e.matcher.path {
            PathMatch::Exact(p) => self.exact.entry(p.as_str().into()).or_default().push(i),
            PathMatch::Prefix(p) => self.prefixes.entry(p.as_str().into()).or_default().push(i),
            PathMatch::Template(segs) => self.templates.insert(segs, i),
            PathMatch::Regex(re) => {
                for lit in literal_prefixes(re.as_str()) {
                    self.regexes.entry(lit.into()).or_default().push(i);
                }
            }
            PathMatch::Any => self.any.push(i),
        }
    }

    /// Sorts every list by rank once all entries are in.
    pub(super) fn finish<T>(&mut self, entries: &[Entry<T>]) {
        let sort = |v: &mut Vec<usize>| {
            v.sort_by_key(|i| entries[*i].rank);
            v.dedup();
        };
        self.exact.values_mut().for_each(sort);
        self.prefixes.values_mut().for_each(sort);
        self.regexes.values_mut().for_each(sort);
        sort(&mut self.any);
        self.templates.finish(&sort);
        let mut lens: Vec<usize> = self.regexes.keys().map(|k| k.len()).collect();
        lens.sort_unstable();
        lens.dedup();
        self.regex_prefix_lens = lens;
    }

    /// The best entry of this bucket that matches the request, path and all.
    pub(super) fn find<T>(
        &self,
        entries: &[Entry<T>],
        head: &super::RequestHead<'_>,
    ) -> Option<usize> {
        let rest_ok = |i: &usize| super::matcher::rest_matches(&entries[*i].matcher, head);
        let path = head.path;
        // Path classes in precedence order; within one, the lists are already ranked
        // except where candidates come from several lists (templates, regexes).
        if let Some(i) = self
            .exact
            .get(path)
            .and_then(|v| v.iter().find(|i| rest_ok(i)))
        {
            return Some(*i);
        }
        let mut best = Best {
            entries,
            found: None,
        };
        // Segments as `matcher::template_matches` splits them: no leading `/`, then `/`.
        let segments = path.strip_prefix('/').unwrap_or(path);
        if !self.templates.is_empty() {
            self.templates.walk(Some(segments), &mut |i| {
                if rest_ok(&i) {
                    best.offer(i);
                }
            });
        }
        if let Some(i) = best.take() {
            return Some(i);
        }
        // A bucket with no prefix routes does not split the path (most buckets hold
        // one or two path classes); `""` is one look-up in the empty map.
        let prefixes = if self.prefixes.is_empty() { "" } else { path };
        for pre in prefix_candidates(prefixes) {
            if let Some(i) = self
                .prefixes
                .get(pre)
                .and_then(|v| v.iter().find(|i| rest_ok(i)))
            {
                return Some(*i);
            }
        }
        for &len in self
            .regex_prefix_lens
            .iter()
            .take_while(|l| **l <= path.len())
        {
            for &i in self
                .regexes
                .get(&path.as_bytes()[..len])
                .into_iter()
                .flatten()
            {
                let PathMatch::Regex(re) = &entries[i].matcher.path else {
                    continue;
                };
                if best.better(i) && re.is_match(path) && rest_ok(&i) {
                    best.offer(i);
                }
            }
        }
        if let Some(i) = best.take() {
            return Some(i);
        }
        self.any.iter().find(|i| rest_ok(i)).copied()
    }
}

/// The keys a prefix route must have to match `path`, longest first: the path itself,
/// then at each `/` from the right the part up to and including it, and the part before
/// it (`/api` matches `/api/x`, `/api/` matches `/api/x`, neither matches `/apix`).
fn prefix_candidates(path: &str) -> impl Iterator<Item = &str> {
    let slashes = path.rmatch_indices('/').map(|(i, _)| i);
    std::iter::once(path)
        .chain(slashes.flat_map(move |i| [&path[..=i], &path[..i]]))
        .scan(usize::MAX, |last, p| {
            // `path[..=i]` is `path` itself when it ends in `/`: look each key up once.
            let fresh = p.len() < *last;
            *last = p.len();
            Some(fresh.then_some(p))
        })
        .flatten()
}

/// Every literal a match of the (anchored) pattern must start with; `[""]` when the
/// pattern has none or is too wide to list.
fn literal_prefixes(pattern: &str) -> Vec<Vec<u8>> {
    let Ok(hir) = regex_syntax::parse(pattern) else {
        return vec![Vec::new()];
    };
    let seq = Extractor::new().kind(ExtractKind::Prefix).extract(&hir);
    match seq.literals() {
        Some(lits) if !lits.is_empty() => lits.iter().map(|l| l.as_bytes().to_vec()).collect(),
        _ => vec![Vec::new()],
    }
}

// === impl Node ===

impl Node {
    fn is_empty(&self) -> bool {
        self.literal.is_empty()
            && self.param.is_none()
            && self.rest.is_empty()
            && self.end.is_empty()
    }

    fn insert(&mut self, segs: &[Segment], i: usize) {
        match segs.split_first() {
            None => self.end.push(i),
            Some((Segment::Rest(_), _)) => self.rest.push(i),
            Some((Segment::Literal(l), more)) => self
                .literal
                .entry(l.as_str().into())
                .or_default()
                .insert(more, i),
            Some((Segment::Param(_), more)) => self.param.get_or_insert_default().insert(more, i),
        }
    }

    fn finish(&mut self, sort: &impl Fn(&mut Vec<usize>)) {
        sort(&mut self.rest);
        sort(&mut self.end);
        self.literal.values_mut().for_each(|n| n.finish(sort));
        if let Some(p) = &mut self.param {
            p.finish(sort);
        }
    }

    /// Calls `visit` with every template whose segments match `rest`, the path's
    /// remaining segments (`None` when it has no more).
    fn walk(&self, rest: Option<&str>, visit: &mut impl FnMut(usize)) {
        self.rest.iter().for_each(|i| visit(*i));
        let Some(s) = rest else {
            self.end.iter().for_each(|i| visit(*i));
            return;
        };
        let (seg, more) = match s.split_once('/') {
            Some((seg, more)) => (seg, Some(more)),
            None => (s, None),
        };
        if let Some(n) = self.literal.get(seg) {
            n.walk(more, visit);
        }
        if let Some(n) = self.param.as_deref().filter(|_| !seg.is_empty()) {
            n.walk(more, visit);
        }
    }
}

// === impl Best ===

impl<T> Best<'_, T> {
    /// Whether entry `i` would beat the best so far: checked before the costly parts.
    fn better(&self, i: usize) -> bool {
        self.found.is_none_or(|(r, _)| self.entries[i].rank < r)
    }

    fn offer(&mut self, i: usize) {
        if self.better(i) {
            self.found = Some((self.entries[i].rank, i));
        }
    }

    fn take(&mut self) -> Option<usize> {
        self.found.take().map(|(_, i)| i)
    }
}
