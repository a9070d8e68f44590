//! The upstream request writer, with no I/O: the request head, its framing fields and
//! the body's framing bytes into a buffer. The framing follows hyper's client
//! (`set_length` in hyper 1's `proto/h1/role.rs`), so that upstreams see the same
//! requests whichever client sends them:
//!
//! - a body known to be empty sends no length field (the client's own is kept) and no
//!   Transfer-Encoding;
//! - a `Transfer-Encoding` the request carries wins, with `chunked` added last when it
//!   is not already, and Content-Length dropped;
//! - otherwise a valid Content-Length the request carries is used;
//! - otherwise a known length is set as Content-Length, and an unknown one is chunked,
//!   except for GET, HEAD and CONNECT, which send no body at all.

use crate::http::edge::has_token;
use http::header::{self, Entry, HeaderMap, HeaderValue};
use http::Method;
use std::io::Write as _;

/// What the sender knows of a body's length before sending it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyLength {
    Empty,
    Known(u64),
    Unknown,
}

/// How the body is framed on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// Exactly this many bytes (none for 0).
    Length(u64),
    Chunked,
}

/// What writing a request head found out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    /// How the body is framed.
    pub enc: Encoding,
    /// The request's `Connection` lists `close` (RFC 9112 9.6): the connection carries
    /// nothing after it.
    pub close: bool,
}

/// Writes the request line and fields for `method` and `target` (origin form) into
/// `dst`, after fixing the framing fields in `headers`. The fields are read once, here:
/// `Connection` is noted on the way, and a known-empty body's `Transfer-Encoding` left
/// out rather than looked up and removed first.
pub fn head(
    method: &Method,
    target: &str,
    headers: &mut HeaderMap,
    body: BodyLength,
    dst: &mut Vec<u8>,
) -> Written {
    let enc = framing(method, headers, body);
    let no_coding = body == BodyLength::Empty;
    let mut close = false;
    dst.reserve(64 + target.len() + headers.len() * 32);
    dst.extend_from_slice(method.as_str().as_bytes());
    dst.push(b' ');
    dst.extend_from_slice(target.as_bytes());
    dst.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in headers.iter() {
        if name == header::CONNECTION {
            close |= has_token(value, "close");
        } else if no_coding && name == header::TRANSFER_ENCODING {
            continue;
        }
        dst.extend_from_slice(name.as_str().as_bytes());
        dst.extend_from_slice(b": ");
        dst.extend_from_slice(value.as_bytes());
        dst.extend_from_slice(b"\r\n");
    }
    dst.extend_from_slice(b"\r\n");
    Written { enc, close }
}

/// Appends one piece of body to `dst` as `enc` frames it.
pub fn data(enc: Encoding, bytes: &[u8], dst: &mut Vec<u8>) {
    if bytes.is_empty() {
        return;
    }
    if enc == Encoding::Chunked {
        // Writing into a Vec cannot fail.
        let _ = write!(dst, "{:X}\r\n", bytes.len());
        dst.extend_from_slice(bytes);
        dst.extend_from_slice(b"\r\n");
    } else {
        dst.extend_from_slice(bytes);
    }
}

/// Appends the end of the body: the last chunk, for a chunked one.
pub fn end(enc: Encoding, dst: &mut Vec<u8>) {
    if enc == Encoding::Chunked {
        dst.extend_from_slice(b"0\r\n\r\n");
    }
}

fn framing(method: &Method, headers: &mut HeaderMap, body: BodyLength) -> Encoding {
    if body == BodyLength::Empty {
        // Its Transfer-Encoding is left out as the head is written.
        return Encoding::Length(0);
    }
    let length = stated_length(headers);
    match headers.entry(header::TRANSFER_ENCODING) {
        Entry::Occupied(mut te) => {
            let last_is_chunked = te.iter().next_back().is_some_and(|v| {
                v.to_str().is_ok_and(|s| {
                    s.rsplit(',')
                        .next()
                        .is_some_and(|c| c.trim().eq_ignore_ascii_case("chunked"))
                })
            });
            if !last_is_chunked {
                if let Some(v) = te.iter_mut().next_back() {
                    let mut s = v.as_bytes().to_vec();
                    s.extend_from_slice(b", chunked");
                    if let Ok(nv) = HeaderValue::from_bytes(&s) {
                        *v = nv;
                    }
                }
            }
            headers.remove(header::CONTENT_LENGTH);
            Encoding::Chunked
        }
        Entry::Vacant(te) => match (length, body) {
            (Some(n), _) => Encoding::Length(n),
            (None, BodyLength::Unknown) => {
                if matches!(*method, Method::GET | Method::HEAD | Method::CONNECT) {
                    return Encoding::Length(0);
                }
                te.insert(HeaderValue::from_static("chunked"));
                headers.remove(header::CONTENT_LENGTH);
                Encoding::Chunked
            }
            (None, BodyLength::Known(n)) => {
                headers.insert(header::CONTENT_LENGTH, HeaderValue::from(n));
                Encoding::Length(n)
            }
            (None, BodyLength::Empty) => Encoding::Length(0),
        },
    }
}

/// The Content-Length the request states: every value of every line the same number.
fn stated_length(headers: &HeaderMap) -> Option<u64> {
    let mut found = None;
    for line in headers.get_all(header::CONTENT_LENGTH) {
        for v in line.to_str().ok()?.split(',') {
            let n = super::decode::digits(v.trim().as_bytes())?;
            if found.is_some_and(|f| f != n) {
                return None;
            }
            found = Some(n);
        }
    }
    found
}
