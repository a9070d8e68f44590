//! The upstream response reader, with no I/O: bytes in, a response head and body frames
//! out. `httparse` parses the status line and fields, chunk-size lines and trailers; this
//! module owns only the framing rules an intermediary must apply (RFC 9112 6.3):
//!
//! 1. a response to HEAD, any 1xx, 204 and 304 has no body, whatever its fields say;
//!    1xx other than 101 are skipped, as hyper's client does;
//! 2. `Transfer-Encoding` must be a lone `chunked` and never come with
//!    `Content-Length`, and `Content-Length` must be one line with no list: the rules
//!    of [`response_rules::framing_fields`], called here, not written again;
//! 3. `Content-Length` must hold only digits;
//! 4. otherwise the body runs until the upstream closes, and the connection is not
//!    kept.
//!
//! Anything else is [`Malformed`]: the proxy answers 502 and never reuses the
//! connection. A connection is reusable only when the response said so
//! ([`Head::keep_alive`]) and its body was read exactly to its end.

use crate::http::response_rules;
use bytes::{Buf, Bytes, BytesMut};
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{StatusCode, Version};

/// The largest response head read, 1xx heads included.
pub const MAX_HEAD: usize = 64 * 1024;
/// The most fields in a head or a trailer section (hyper's own default).
pub const MAX_FIELDS: usize = 100;
/// The fields a head is parsed with first (see [`parse_some`]).
const FEW_FIELDS: usize = 24;
/// The longest chunk-size line, extensions included.
const MAX_CHUNK_LINE: usize = 4096;
/// The largest trailer section.
const MAX_TRAILERS: usize = 16 * 1024;

/// Why a response cannot be passed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    #[error("the response head is not valid HTTP/1.x ({0})")]
    Head(httparse::Error),
    #[error("the response head is larger than {MAX_HEAD} bytes")]
    HeadTooLarge,
    #[error("status code {0} is out of range")]
    Status(u16),
    #[error("a response field is not valid")]
    Field,
    /// A rule of [`response_rules::framing_fields`] broken.
    #[error("{0}")]
    Framing(&'static str),
    #[error("Content-Length is not a number")]
    BadLength,
    #[error("a chunk-size line is not valid")]
    ChunkSize,
    #[error("chunk data is not followed by CRLF")]
    ChunkEnd,
    #[error("the trailer section is not valid")]
    Trailers,
    #[error("the connection closed before the response ended")]
    Truncated,
}

/// How the body after a head is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    None,
    Length(u64),
    Chunked,
    UntilClose,
}

/// A final (non-1xx, or 101) response head.
#[derive(Debug)]
pub struct Head {
    pub status: StatusCode,
    pub version: Version,
    pub headers: HeaderMap,
    pub framing: Framing,
    /// The upstream allows another request on the connection after this response.
    pub keep_alive: bool,
}

/// The field names of the last head read on a connection, by position, as the upstream
/// spelled them. An upstream sends the same names in the same order response after
/// response; a name found again at its place is a clone (a copy for a standard name, a
/// reference count for another), where parsing it maps every byte to lower case,
/// searches the standard names and allocates any other (callgrind: about 150
/// instructions a field). A name is a function of its bytes alone, so a hit is the
/// same name a parse would give; any other spelling, case included, is parsed.
#[derive(Default)]
pub struct Names {
    seen: Vec<(Box<[u8]>, HeaderName)>,
}

/// The fields of a head whose names are kept: enough for the common heads, and a
/// bound on what an idle pooled connection holds.
const NAMES_KEPT: usize = 32;

impl Names {
    fn name(&mut self, i: usize, raw: &[u8]) -> Result<HeaderName, Malformed> {
        if let Some((r, n)) = self.seen.get(i) {
            if **r == *raw {
                return Ok(n.clone());
            }
        }
        let n = parse_name(raw)?;
        let kept = || (Box::from(raw), n.clone());
        let len = self.seen.len();
        if i < len {
            self.seen[i] = kept();
        } else if i == len && i < NAMES_KEPT {
            self.seen.push(kept());
        }
        Ok(n)
    }
}

fn parse_name(raw: &[u8]) -> Result<HeaderName, Malformed> {
    HeaderName::from_bytes(raw).map_err(|_| Malformed::Field)
}

/// Takes the final response head off the front of `buf`, skipping 1xx heads before it.
/// `None` while more bytes are needed; `head_request` when the request was HEAD;
/// `names`, the connection's (see [`Names`]).
pub fn read_head(
    buf: &mut BytesMut,
    head_request: bool,
    names: &mut Names,
) -> Result<Option<Head>, Malformed> {
    loop {
        // Polled before the response comes, and again on the wake-up that finds nothing
        // read yet: an empty buffer holds no head, and a parse would first write out the
        // whole array of fields.
        if buf.is_empty() {
            return Ok(None);
        }
        let Some(head) = parse_some(buf, head_request, names)? else {
            return Ok(None);
        };
        let s = head.status;
        if !s.is_informational() || s == StatusCode::SWITCHING_PROTOCOLS {
            return Ok(Some(head));
        }
    }
}

/// A field's name and value, as offsets into the head.
type Span = (std::ops::Range<usize>, std::ops::Range<usize>);

/// Parses one head into room for [`FEW_FIELDS`] fields, and again into room for
/// [`MAX_FIELDS`] only when it has more: the array is written whole before each parse
/// (about 250 instructions for 100 fields), and most heads have a handful.
fn parse_some(
    buf: &mut BytesMut,
    head_request: bool,
    names: &mut Names,
) -> Result<Option<Head>, Malformed> {
    match parse_head::<FEW_FIELDS>(buf, head_request, names) {
        Err(Malformed::Head(httparse::Error::TooManyHeaders)) => {
            parse_head::<MAX_FIELDS>(buf, head_request, names)
        }
        r => r,
    }
}

/// Parses one head with room for `N` fields and takes it off the front of `buf`.
fn parse_head<const N: usize>(
    buf: &mut BytesMut,
    head_request: bool,
    names: &mut Names,
) -> Result<Option<Head>, Malformed> {
    let mut fields = [httparse::EMPTY_HEADER; N];
    let mut resp = httparse::Response::new(&mut fields);
    let used = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD => {
            return Err(Malformed::HeadTooLarge)
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(Malformed::Head(e)),
    };
    if used > MAX_HEAD {
        return Err(Malformed::HeadTooLarge);
    }
    let code = resp.code.unwrap_or(0);
    let status = StatusCode::from_u16(code).map_err(|_| Malformed::Status(code))?;
    let version = if resp.version == Some(0) {
        Version::HTTP_10
    } else {
        Version::HTTP_11
    };
    let spans = spans(buf, resp.headers);
    let head = buf.split_to(used).freeze();
    let mut fields = response_rules::Fields::default();
    let headers = to_map(&head, &spans, &mut fields, |i, raw| names.name(i, raw))?;
    let framing = framing(status, head_request, &fields)?;
    let keep_alive = framing != Framing::UntilClose
        && status != StatusCode::SWITCHING_PROTOCOLS
        && keeps_alive(version, &fields);
    Ok(Some(Head {
        status,
        version,
        headers,
        framing,
        keep_alive,
    }))
}

/// Where each field lies in `buf`, which httparse read them from: a value becomes a
/// view of the head's bytes, not a copy of its own (an allocation a field less). A
/// vector of the fields' number: an array of `MAX_FIELDS` spans cost more to clear
/// than the copies saved.
fn spans(buf: &[u8], fields: &[httparse::Header<'_>]) -> Vec<Span> {
    let base = buf.as_ptr() as usize;
    let at = |s: &[u8]| {
        let start = (s.as_ptr() as usize).saturating_sub(base);
        start..start + s.len()
    };
    fields
        .iter()
        .map(|f| (at(f.name.as_bytes()), at(f.value)))
        .collect()
}

/// The fields of `head` as a map, each name from `name` (its position, its bytes), and
/// its framing fields noted in `fields` on the way.
fn to_map<'h>(
    head: &'h Bytes,
    spans: &[Span],
    fields: &mut response_rules::Fields<'h>,
    mut name: impl FnMut(usize, &[u8]) -> Result<HeaderName, Malformed>,
) -> Result<HeaderMap, Malformed> {
    // Room for the fields the proxy adds on the way back (Via, a request id, rate limit
    // and CORS fields): a map filled to its size grows, rehashing every field, on the
    // first insert.
    let mut map = HeaderMap::with_capacity(spans.len() + 4);
    for (i, (n, value)) in spans.iter().enumerate() {
        let name = name(i, &head[n.clone()])?;
        fields.note(&name, &head[value.clone()]);
        let value = HeaderValue::from_maybe_shared(head.slice(value.clone()))
            .map_err(|_| Malformed::Field)?;
        map.append(name, value);
    }
    Ok(map)
}

/// RFC 9112 6.3, in its order.
fn framing(
    status: StatusCode,
    head_request: bool,
    fields: &response_rules::Fields<'_>,
) -> Result<Framing, Malformed> {
    // Interim heads are skipped unread; every head that reaches the client passes the
    // framing rules, bodiless or not.
    if status.is_informational() && status != StatusCode::SWITCHING_PROTOCOLS {
        return Ok(Framing::None);
    }
    let framed = response_rules::framing_fields(fields).map_err(Malformed::Framing)?;
    if head_request
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return Ok(Framing::None);
    }
    if framed.chunked {
        return Ok(Framing::Chunked);
    }
    match framed.length {
        Some(v) => digits(v).map(Framing::Length).ok_or(Malformed::BadLength),
        None => Ok(Framing::UntilClose),
    }
}

/// A decimal number of digits only: no sign, no list, no spaces inside.
pub(super) fn digits(b: &[u8]) -> Option<u64> {
    if b.is_empty() {
        return None;
    }
    // One pass: each byte checked as it is added.
    b.iter().try_fold(0u64, |n, &d| {
        let d = d.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        n.checked_mul(10)?.checked_add(u64::from(d))
    })
}

/// HTTP/1.1 keeps the connection unless `Connection: close`; HTTP/1.0 only with
/// `Connection: keep-alive` (RFC 9112 9.3).
fn keeps_alive(version: Version, fields: &response_rules::Fields<'_>) -> bool {
    !fields.close && (version == Version::HTTP_11 || fields.keep_alive)
}

/// What the body reader has next.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    Data(Bytes),
    Trailers(HeaderMap),
    /// The body ended exactly here.
    End,
    /// More bytes are needed.
    More,
}

/// The body reader for one response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decoder {
    /// Bytes still to come.
    Length(u64),
    Chunked(Chunk),
    UntilClose,
    Done,
}

/// Where a chunked body is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chunk {
    Size,
    Data(u64),
    DataEnd,
    Trailers,
}

impl Decoder {
    pub fn new(f: Framing) -> Decoder {
        match f {
            Framing::None | Framing::Length(0) => Decoder::Done,
            Framing::Length(n) => Decoder::Length(n),
            Framing::Chunked => Decoder::Chunked(Chunk::Size),
            Framing::UntilClose => Decoder::UntilClose,
        }
    }

    /// Whether the body has been read to its end.
    pub fn is_done(&self) -> bool {
        *self == Decoder::Done
    }

    /// The next frame from the front of `buf`; `eof` once the upstream has closed (a
    /// body that needs more bytes is then [`Malformed::Truncated`]).
    pub fn step(&mut self, buf: &mut BytesMut, eof: bool) -> Result<Step, Malformed> {
        loop {
            match *self {
                Decoder::Done => return Ok(Step::End),
                Decoder::UntilClose if !buf.is_empty() => {
                    return Ok(Step::Data(buf.split().freeze()))
                }
                Decoder::UntilClose if eof => {
                    *self = Decoder::Done;
                    return Ok(Step::End);
                }
                Decoder::UntilClose => return Ok(Step::More),
                Decoder::Length(left) => {
                    let Some(data) = take(buf, left, eof)? else {
                        return Ok(Step::More);
                    };
                    *self = match left - data.len() as u64 {
                        0 => Decoder::Done,
                        n => Decoder::Length(n),
                    };
                    return Ok(Step::Data(data));
                }
                Decoder::Chunked(c) => match chunk_step(c, buf, eof)? {
                    (next, Some(step)) => {
                        *self = next;
                        return Ok(step);
                    }
                    (next, None) => *self = next,
                },
            }
        }
    }
}

/// Up to `left` body bytes off `buf`; `None` when there are none yet.
fn take(buf: &mut BytesMut, left: u64, eof: bool) -> Result<Option<Bytes>, Malformed> {
    if buf.is_empty() {
        return if eof {
            Err(Malformed::Truncated)
        } else {
            Ok(None)
        };
    }
    let n = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
    Ok(Some(buf.split_to(n).freeze()))
}

/// One move of the chunked reader: its next state and, if it has one, a step to give.
fn chunk_step(
    c: Chunk,
    buf: &mut BytesMut,
    eof: bool,
) -> Result<(Decoder, Option<Step>), Malformed> {
    let more = |state| {
        if eof {
            Err(Malformed::Truncated)
        } else {
            Ok((Decoder::Chunked(state), Some(Step::More)))
        }
    };
    match c {
        Chunk::Size => match chunk_size(buf)? {
            None => more(c),
            Some(0) => Ok((Decoder::Chunked(Chunk::Trailers), None)),
            Some(n) => Ok((Decoder::Chunked(Chunk::Data(n)), None)),
        },
        Chunk::Data(left) => match take(buf, left, eof)? {
            None => more(c),
            Some(data) => {
                let next = match left - data.len() as u64 {
                    0 => Chunk::DataEnd,
                    n => Chunk::Data(n),
                };
                Ok((Decoder::Chunked(next), Some(Step::Data(data))))
            }
        },
        Chunk::DataEnd => {
            if buf.len() < 2 {
                return if buf.first().is_some_and(|b| *b != b'\r') {
                    Err(Malformed::ChunkEnd)
                } else {
                    more(c)
                };
            }
            if &buf[..2] != b"\r\n" {
                return Err(Malformed::ChunkEnd);
            }
            buf.advance(2);
            Ok((Decoder::Chunked(Chunk::Size), None))
        }
        Chunk::Trailers => match trailers(buf)? {
            None => more(c),
            Some(map) if map.is_empty() => Ok((Decoder::Done, Some(Step::End))),
            Some(map) => Ok((Decoder::Done, Some(Step::Trailers(map)))),
        },
    }
}

/// A chunk-size line off the front of `buf`, by httparse, which leaves two things to the
/// caller: a size must have at least one digit, and an extension must not hold a bare
/// CR or LF (a line end one parser sees and another does not).
fn chunk_size(buf: &mut BytesMut) -> Result<Option<u64>, Malformed> {
    let (used, size) = match httparse::parse_chunk_size(buf) {
        Ok(httparse::Status::Complete(c)) => c,
        Ok(httparse::Status::Partial) if buf.len() >= MAX_CHUNK_LINE => {
            return Err(Malformed::ChunkSize)
        }
        Ok(httparse::Status::Partial) => {
            return match buf.first() {
                Some(b) if !b.is_ascii_hexdigit() => Err(Malformed::ChunkSize),
                _ => Ok(None),
            }
        }
        Err(_) => return Err(Malformed::ChunkSize),
    };
    let line = &buf[..used - 2];
    let bad = !buf[0].is_ascii_hexdigit()
        || used > MAX_CHUNK_LINE
        || line.iter().any(|b| *b == b'\r' || *b == b'\n');
    if bad {
        return Err(Malformed::ChunkSize);
    }
    buf.advance(used);
    Ok(Some(size))
}

/// The trailer section after the last chunk, through its closing empty line.
fn trailers(buf: &mut BytesMut) -> Result<Option<HeaderMap>, Malformed> {
    let mut fields = [httparse::EMPTY_HEADER; MAX_FIELDS];
    let (used, spans) = match httparse::parse_headers(buf, &mut fields) {
        Ok(httparse::Status::Complete((used, fields))) => (used, spans(buf, fields)),
        Ok(httparse::Status::Partial) if buf.len() >= MAX_TRAILERS => {
            return Err(Malformed::Trailers)
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(Malformed::Trailers),
    };
    if used > MAX_TRAILERS {
        return Err(Malformed::Trailers);
    }
    let section = buf.split_to(used).freeze();
    // Trailers frame nothing: what they would note is not read.
    let mut unread = response_rules::Fields::default();
    let map = to_map(&section, &spans, &mut unread, |_, raw| parse_name(raw))
        .map_err(|_| Malformed::Trailers)?;
    Ok(Some(map))
}

/// A whole response as read from `pieces` arriving one by one and then a close: what
/// the differential test compares with hyper's client and the fuzz target drives.
#[doc(hidden)]
#[derive(Debug)]
pub struct Whole {
    pub head: Head,
    pub body: Vec<u8>,
    pub trailers: Option<HeaderMap>,
    /// Bytes left after the response's end (the connection is then not reused).
    pub rest: usize,
}

#[doc(hidden)]
pub fn read_whole(pieces: &[&[u8]], head_request: bool) -> Result<Whole, Malformed> {
    read_whole_with(pieces, head_request, &mut Names::default())
}

/// [`read_whole`] with the names of an earlier response on the same connection.
#[doc(hidden)]
pub fn read_whole_with(
    pieces: &[&[u8]],
    head_request: bool,
    names: &mut Names,
) -> Result<Whole, Malformed> {
    let mut buf = BytesMut::new();
    let mut whole: Option<(Whole, Decoder)> = None;
    for i in 0..=pieces.len() {
        let eof = i == pieces.len();
        if let Some(p) = pieces.get(i) {
            buf.extend_from_slice(p);
        }
        if whole.is_none() {
            match read_head(&mut buf, head_request, names)? {
                Some(head) => {
                    let dec = Decoder::new(head.framing);
                    let w = Whole {
                        head,
                        body: Vec::new(),
                        trailers: None,
                        rest: 0,
                    };
                    whole = Some((w, dec));
                }
                None if eof => return Err(Malformed::Truncated),
                None => continue,
            }
        }
        let Some((w, dec)) = whole.as_mut() else {
            continue;
        };
        let mut ended = false;
        while !ended {
            match dec.step(&mut buf, eof)? {
                Step::Data(d) => w.body.extend_from_slice(&d),
                Step::Trailers(t) => w.trailers = Some(t),
                Step::End => {
                    let unread: usize = pieces.iter().skip(i + 1).map(|p| p.len()).sum();
                    w.rest = buf.len() + unread;
                    ended = true;
                }
                Step::More => break,
            }
        }
        if ended {
            return whole.map(|(w, _)| w).ok_or(Malformed::Truncated);
        }
    }
    Err(Malformed::Truncated)
}

#[cfg(test)]
#[path = "decode_tests.rs"]
mod tests;
