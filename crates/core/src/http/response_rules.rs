//! What an HTTP/1 upstream response head must be to reach the client, beyond what
//! httparse already refuses (a bad status line or version, bad header tokens). A
//! response that breaks one of these rules is a 502, and its connection is never
//! reused. No I/O.
//!
//! - `101 Switching Protocols` only when the client asked, and only to a protocol it
//!   offered (RFC 9110 7.8, 15.2.2): [`check`], by the exchange, which knows the offer;
//! - one Content-Length line holding one number (RFC 9112 6.3: a list or a repeat is
//!   a framing the client's parser may read otherwise);
//! - Transfer-Encoding only as a lone `chunked`, never with Content-Length (RFC 9112 6.1,
//!   6.3): another coding would reach the client decoded from chunked but still coded.
//!
//! The framing rules are [`framing_fields`], applied by the upstream HTTP/1.1 reader
//! (`h1::decode`) as it reads a head: every HTTP/1 response comes through it.

use crate::http::edge;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{StatusCode, Version};

/// Checks a response head the reader has framed; `offered` is the Upgrade the client
/// sent, if it asked for one.
pub fn check(
    status: StatusCode,
    version: Version,
    headers: &HeaderMap,
    offered: Option<&HeaderValue>,
) -> Result<(), &'static str> {
    if version == Version::HTTP_2 || status != StatusCode::SWITCHING_PROTOCOLS {
        return Ok(());
    }
    switch(headers, offered)
}

/// A head's framing fields, noted as the reader makes its map: it sees every field
/// once, where looking each up again cost about 100 instructions a field name
/// (callgrind), four a response.
#[derive(Default)]
pub struct Fields<'a> {
    lengths: u8,
    length: Option<&'a [u8]>,
    codings: u8,
    coding: Option<&'a [u8]>,
    /// `Connection` lists `close` (RFC 9112 9.6).
    pub close: bool,
    /// `Connection` lists `keep-alive` (RFC 9112 9.3, for HTTP/1.0).
    pub keep_alive: bool,
}

impl<'a> Fields<'a> {
    /// The fields of a whole map: a head another reader made (hyper's, which the
    /// differential test holds to the same rules).
    pub fn of(headers: &'a HeaderMap) -> Fields<'a> {
        let mut f = Fields::default();
        for (name, value) in headers {
            f.note(name, value.as_bytes());
        }
        f
    }

    /// Notes one field of the head, in the head's order.
    pub fn note(&mut self, name: &HeaderName, value: &'a [u8]) {
        if *name == header::CONTENT_LENGTH {
            self.lengths = self.lengths.saturating_add(1);
            self.length.get_or_insert(value);
        } else if *name == header::TRANSFER_ENCODING {
            self.codings = self.codings.saturating_add(1);
            self.coding.get_or_insert(value);
        } else if *name == header::CONNECTION {
            self.close |= edge::lists(value, "close");
            self.keep_alive |= edge::lists(value, "keep-alive");
        }
    }
}

/// What the framing fields said, once they passed.
pub struct Framed<'a> {
    pub length: Option<&'a [u8]>,
    pub chunked: bool,
}

/// The Content-Length and Transfer-Encoding rules above, with what they found, so that
/// the reader frames the body from the same fields.
pub fn framing_fields<'a>(f: &Fields<'a>) -> Result<Framed<'a>, &'static str> {
    if f.lengths > 1 {
        return Err("the upstream sent Content-Length more than once");
    }
    if f.length.is_some_and(|v| v.contains(&b',')) {
        return Err("the upstream sent a list as Content-Length");
    }
    let Some(te) = f.coding else {
        return Ok(Framed {
            length: f.length,
            chunked: false,
        });
    };
    if f.codings > 1 || !te.trim_ascii().eq_ignore_ascii_case(b"chunked") {
        return Err("the upstream sent a transfer coding other than a lone chunked");
    }
    if f.length.is_some() {
        return Err("the upstream sent both Transfer-Encoding and Content-Length");
    }
    Ok(Framed {
        length: None,
        chunked: true,
    })
}

fn switch(headers: &HeaderMap, offered: Option<&HeaderValue>) -> Result<(), &'static str> {
    let Some(offered) = offered else {
        return Err("the upstream switched protocols unasked");
    };
    let chosen = headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.split(',').map(str::trim).filter(|p| !p.is_empty()));
    let Some(mut chosen) = chosen else {
        return Err("the upstream switched protocols without naming one");
    };
    let listed = |p: &str| {
        offered.to_str().is_ok_and(|o| {
            o.split(',')
                .map(str::trim)
                .any(|x| x.eq_ignore_ascii_case(p))
        })
    };
    let mut any = false;
    let all = chosen.all(|p| {
        any = true;
        listed(p)
    });
    if any && all {
        Ok(())
    } else {
        Err("the upstream switched to a protocol the client did not offer")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn heads(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        m
    }

    fn verdict(
        status: u16,
        pairs: &[(&str, &str)],
        offered: Option<&'static str>,
    ) -> Result<(), &'static str> {
        let offered = offered.map(HeaderValue::from_static);
        let h = heads(pairs);
        framing_fields(&Fields::of(&h))?;
        check(
            StatusCode::from_u16(status).unwrap(),
            Version::HTTP_11,
            &h,
            offered.as_ref(),
        )
    }

    #[test]
    fn well_framed_responses_pass() {
        assert!(verdict(200, &[("content-length", "2")], None).is_ok());
        assert!(verdict(200, &[("transfer-encoding", "chunked")], None).is_ok());
        assert!(verdict(200, &[("transfer-encoding", " Chunked ")], None).is_ok());
        assert!(verdict(200, &[], None).is_ok(), "close-delimited");
        let ws = [("upgrade", "websocket"), ("connection", "upgrade")];
        assert!(verdict(101, &ws, Some("websocket")).is_ok());
        assert!(verdict(101, &ws, Some("foo, WebSocket")).is_ok());
    }

    #[test]
    fn unasked_or_unoffered_switches_fail() {
        let ws = [("upgrade", "websocket")];
        assert!(verdict(101, &ws, None).is_err());
        assert!(verdict(101, &ws, Some("h2c")).is_err());
        assert!(verdict(101, &[], Some("websocket")).is_err());
        assert!(verdict(101, &[("upgrade", " , ")], Some("websocket")).is_err());
        assert!(verdict(101, &[("upgrade", "websocket, tls")], Some("websocket")).is_err());
    }

    #[test]
    fn ambiguous_framing_fails() {
        let two = [("content-length", "2"), ("content-length", "2")];
        assert!(verdict(200, &two, None).is_err());
        assert!(verdict(200, &[("content-length", "2, 2")], None).is_err());
        let both = [("transfer-encoding", "chunked"), ("content-length", "9")];
        assert!(verdict(200, &both, None).is_err());
        assert!(verdict(200, &[("transfer-encoding", "gzip")], None).is_err());
        assert!(verdict(200, &[("transfer-encoding", "gzip, chunked")], None).is_err());
        let twice = [
            ("transfer-encoding", "chunked"),
            ("transfer-encoding", "chunked"),
        ];
        assert!(verdict(200, &twice, None).is_err());
    }

    #[test]
    fn http2_responses_are_framed_by_h2() {
        let two = heads(&[("content-length", "2"), ("content-length", "3")]);
        assert!(check(StatusCode::OK, Version::HTTP_2, &two, None).is_ok());
    }
}
