//! Text replaced in bodies as they stream (`transform.response_replace`, like NGINX's
//! `sub_filter`, and `request_replace`): every occurrence of each `from` becomes its
//! `to`, found by one Aho-Corasick automaton (the earlier entry wins where two start
//! at one place). Only the last `longest - 1` bytes of a chunk are held back, for a
//! match that may straddle the next one, so a body of any size passes without being
//! buffered. Bodies of other media types, or with a `Content-Encoding`, pass as they
//! are; an edited one loses its `Content-Length` (it is sent chunked) and a strong
//! `ETag` becomes weak, since the bytes are no longer the upstream's.

use super::{ChunkEdit, Filter, Stage};
use crate::body::BodyError;
use aho_corasick::{AhoCorasick, MatchKind};
use bytes::{Bytes, BytesMut};
use gatehouse_config::spec::{BodySide, ReplaceSpec};
use http::{header, request, response, HeaderMap, HeaderValue, StatusCode};
use std::sync::Arc;

pub struct Replace {
    side: BodySide,
    /// `None` when the patterns are past the automaton's limits (the config crate
    /// bounds them): bodies then pass unedited, as logged when it was built.
    rules: Option<Arc<Rules>>,
    types: Vec<String>,
}

struct Rules {
    finder: AhoCorasick,
    to: Vec<Bytes>,
    /// The longest `from`: a match may start up to `longest - 1` bytes before a
    /// chunk's end and finish in the next.
    longest: usize,
}

/// One body's pass: the bytes held back from the last chunk.
struct Pass {
    rules: Arc<Rules>,
    held: BytesMut,
}

impl Replace {
    pub fn new(side: BodySide, spec: &ReplaceSpec, route: &str) -> Self {
        let finder = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostFirst)
            .build(spec.pairs.iter().map(|(f, _)| f.as_bytes()));
        let rules = match finder {
            Ok(finder) => Some(Arc::new(Rules {
                finder,
                to: spec
                    .pairs
                    .iter()
                    .map(|(_, t)| Bytes::from(t.clone()))
                    .collect(),
                longest: spec.pairs.iter().map(|(f, _)| f.len()).max().unwrap_or(1),
            })),
            Err(e) => {
                tracing::error!(route, error = %e, "the replace patterns could not be built; bodies pass unedited");
                None
            }
        };
        Replace {
            side,
            rules,
            types: spec.types.clone(),
        }
    }

    /// Whether a body with these headers is one to edit, and the head fixed up for it.
    fn start(&self, headers: &mut HeaderMap) -> Option<Box<dyn ChunkEdit>> {
        let rules = self.rules.as_ref()?;
        let encoded = headers
            .get(header::CONTENT_ENCODING)
            .is_some_and(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"));
        if encoded || !media_type_in(headers, &self.types) {
            return None;
        }
        headers.remove(header::CONTENT_LENGTH);
        if let Some(tag) = headers.get(header::ETAG) {
            if !tag.as_bytes().starts_with(b"W/") {
                let mut weak = b"W/".to_vec();
                weak.extend_from_slice(tag.as_bytes());
                if let Ok(v) = HeaderValue::from_bytes(&weak) {
                    headers.insert(header::ETAG, v);
                }
            }
        }
        Some(Box::new(Pass {
            rules: rules.clone(),
            held: BytesMut::new(),
        }))
    }
}

/// Whether the message's `Content-Type` is one of `types` (`type/subtype`, `type/*`,
/// `type/*+suffix`).
fn media_type_in(headers: &HeaderMap, types: &[String]) -> bool {
    let Some(ct) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let Some((major, minor)) = essence.split_once('/') else {
        return false;
    };
    types.iter().any(|t| match t.split_once('/') {
        Some((m, "*")) => m == major,
        Some((m, s)) if s.starts_with("*+") => m == major && minor.ends_with(&s[1..]),
        _ => *t == essence,
    })
}

impl Filter for Replace {
    fn name(&self) -> &'static str {
        "replace"
    }

    fn stage(&self) -> Stage {
        Stage::Transform
    }

    fn stream_sides(&self) -> (bool, bool) {
        (
            self.side == BodySide::Request,
            self.side == BodySide::Response,
        )
    }

    fn request_stream(&self, head: &mut request::Parts) -> Option<Box<dyn ChunkEdit>> {
        self.start(&mut head.headers)
    }

    fn response_stream(&self, head: &mut response::Parts) -> Option<Box<dyn ChunkEdit>> {
        // A range's bytes are offsets into the upstream's representation.
        if head.status == StatusCode::PARTIAL_CONTENT {
            return None;
        }
        self.start(&mut head.headers)
    }
}

// === impl Pass ===

impl Pass {
    /// Replaces in `buf` the matches that start before `hold_from`; returns the bytes to
    /// pass on and keeps the rest (at most `longest - 1` bytes) for the next chunk.
    fn run(&mut self, buf: Bytes, hold_from: usize) -> Bytes {
        let r = &self.rules;
        let mut out: Option<BytesMut> = None;
        let mut at = 0;
        for m in r.finder.find_iter(&buf[..]) {
            if m.start() >= hold_from {
                break;
            }
            let o = out.get_or_insert_with(|| BytesMut::with_capacity(buf.len()));
            o.extend_from_slice(&buf[at..m.start()]);
            o.extend_from_slice(&r.to[m.pattern().as_usize()]);
            at = m.end();
        }
        let pass_to = at.max(hold_from);
        self.held.extend_from_slice(&buf[pass_to..]);
        match out {
            // No match: the chunk's own bytes pass, uncopied.
            None => buf.slice(..pass_to),
            Some(mut o) => {
                o.extend_from_slice(&buf[at..pass_to]);
                o.freeze()
            }
        }
    }
}

impl ChunkEdit for Pass {
    fn chunk(&mut self, chunk: Bytes) -> Result<Bytes, BodyError> {
        let buf = if self.held.is_empty() {
            chunk
        } else {
            self.held.extend_from_slice(&chunk);
            self.held.split().freeze()
        };
        // Any match starting before this point ends inside `buf`, so it is the same
        // match the whole body would give there.
        let hold_from = buf.len().saturating_sub(self.rules.longest - 1);
        Ok(self.run(buf, hold_from))
    }

    fn end(&mut self) -> Result<Bytes, BodyError> {
        let buf = self.held.split().freeze();
        let len = buf.len();
        Ok(self.run(buf, len))
    }
}

/// `pairs` replaced in a body given as `chunks`, as a streaming pass does it (for the
/// `replace` fuzz target, which checks any split gives what the whole body gives).
pub fn replace_chunks(pairs: &[(String, String)], chunks: &[&[u8]]) -> Option<Vec<u8>> {
    let spec = ReplaceSpec {
        pairs: pairs.to_vec(),
        types: vec!["text/*".into()],
    };
    let r = Replace::new(BodySide::Response, &spec, "fuzz");
    let mut h = HeaderMap::new();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    let mut pass = r.start(&mut h)?;
    let mut out = Vec::new();
    for c in chunks {
        out.extend_from_slice(&pass.chunk(Bytes::copy_from_slice(c)).ok()?);
    }
    out.extend_from_slice(&pass.end().ok()?);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replace(pairs: &[(&str, &str)]) -> Replace {
        let spec = ReplaceSpec {
            pairs: pairs
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
            types: vec!["text/*".into()],
        };
        Replace::new(BodySide::Response, &spec, "r")
    }

    fn pass(r: &Replace) -> Box<dyn ChunkEdit> {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
        r.start(&mut h).unwrap()
    }

    /// The body split at every pair of places gives what the whole body gives.
    #[test]
    fn every_split_gives_the_same_bytes_as_the_whole_body() {
        let r = replace(&[
            ("internal.local:8080", "api.example.com"),
            ("in", "IN"),
            ("aaa", "b"),
        ]);
        let body =
            b"see http://internal.local:8080/x and internal.local:80 in aaaa; internal.local:8080";
        let mut whole = pass(&r);
        let mut want = whole.chunk(Bytes::from_static(body)).unwrap().to_vec();
        want.extend_from_slice(&whole.end().unwrap());
        assert!(String::from_utf8_lossy(&want).contains("http://api.example.com/x"));
        for i in 0..=body.len() {
            for j in i..=body.len() {
                let mut p = pass(&r);
                let mut got = Vec::new();
                for part in [&body[..i], &body[i..j], &body[j..]] {
                    got.extend_from_slice(&p.chunk(Bytes::copy_from_slice(part)).unwrap());
                }
                got.extend_from_slice(&p.end().unwrap());
                assert_eq!(got, want, "split at {i} and {j}");
            }
        }
    }

    #[test]
    fn at_most_the_longest_pattern_is_held() {
        let r = replace(&[("abcdef", "x")]);
        let mut p = pass(&r);
        let out = p.chunk(Bytes::from(vec![b'z'; 10_000])).unwrap();
        assert_eq!(out.len(), 10_000 - 5);
        assert_eq!(p.end().unwrap().len(), 5);
    }

    #[test]
    fn other_types_and_encoded_bodies_pass() {
        let r = replace(&[("a", "b")]);
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("image/png"));
        assert!(r.start(&mut h).is_none());
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        assert!(r.start(&mut h).is_none());
        h.remove(header::CONTENT_ENCODING);
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("10"));
        h.insert(header::ETAG, HeaderValue::from_static("\"v1\""));
        assert!(r.start(&mut h).is_some());
        assert!(h.get(header::CONTENT_LENGTH).is_none());
        assert_eq!(h[header::ETAG], "W/\"v1\"");
    }

    #[test]
    fn media_types_by_wildcard_and_suffix() {
        let types: Vec<String> = ["text/*", "application/*+json", "application/xml"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let is = |ct: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
            media_type_in(&h, &types)
        };
        assert!(is("text/html; charset=utf-8"));
        assert!(is("application/problem+json"));
        assert!(is("Application/XML"));
        assert!(!is("application/json"));
        assert!(!is("application/xmlx"));
    }
}
