//! hyper answers an HTTP/1 request head it cannot parse by itself, with an empty body
//! and no hook to change it: `HTTP/1.1 400 Bad Request`, `connection: close`,
//! `content-length: 0`, `date`, nothing else (431 for a head too large, 414 for a
//! target too long). The client connection's I/O wrapper ([`super::conn_state`]) spots
//! that exact reply while no request of the connection is open, and this module makes
//! Gatehouse's JSON local reply to write in its place, with the same status and date,
//! so that every refusal a client gets has the same shape and a request id.
//!
//! Nothing else Gatehouse sends can match: its own replies carry `content-type`, and
//! a proxied response carries the upstream's headers (`date` at least) and, by default,
//! the request id; and a response head is written while its request is still open,
//! unless its body was empty.

use crate::error::{json_body, ErrorKind};
use crate::http::headers;

const CLOSE_AND_EMPTY: &[u8] = b"connection: close\r\ncontent-length: 0\r\ndate: ";
/// `Tue, 01 Dec 2026 20:51:05 GMT`
const DATE_LEN: usize = 29;

/// The JSON reply to write instead of `written`, when `written` is hyper's own reply
/// to a head it could not parse.
pub fn replace(written: &[u8]) -> Option<Vec<u8>> {
    let rest = written.strip_prefix(b"HTTP/1.1 ")?;
    let (kind, message) = match rest.get(..4)? {
        b"400 " => (
            ErrorKind::BadRequest,
            "the request head could not be parsed",
        ),
        b"431 " => (
            ErrorKind::HeadTooLarge,
            "the request head is larger than the listener allows",
        ),
        b"414 " => (ErrorKind::UriTooLong, "the request-target is too long"),
        _ => return None,
    };
    let line_end = rest.windows(2).position(|w| w == b"\r\n")? + 2;
    let status_line = &written[..9 + line_end];
    let tail = rest[line_end..].strip_prefix(CLOSE_AND_EMPTY)?;
    let date = tail.get(..DATE_LEN)?;
    if &tail[DATE_LEN..] != b"\r\n\r\n" {
        return None;
    }
    let id = headers::new_request_id();
    let body = json_body(kind, message, &id);
    let mut out = Vec::with_capacity(status_line.len() + 160 + body.len());
    out.extend_from_slice(status_line);
    out.extend_from_slice(b"content-type: application/json\r\nx-request-id: ");
    out.extend_from_slice(id.as_bytes());
    out.extend_from_slice(b"\r\nconnection: close\r\ncontent-length: ");
    out.extend_from_slice(itoa::Buffer::new().format(body.len()).as_bytes());
    out.extend_from_slice(b"\r\ndate: ");
    out.extend_from_slice(date);
    out.extend_from_slice(b"\r\n\r\n");
    out.extend_from_slice(&body);
    tracing::debug!(status = %String::from_utf8_lossy(&status_line[9..12]), "refused a request head hyper could not parse");
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BARE: &[u8] = b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\ndate: Tue, 01 Dec 2026 20:51:05 GMT\r\n\r\n";

    #[test]
    fn hypers_reply_becomes_json_with_its_status_and_date() {
        let out = String::from_utf8(replace(BARE).unwrap()).unwrap();
        let (head, body) = out.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{head}");
        assert!(
            head.contains("\r\ndate: Tue, 01 Dec 2026 20:51:05 GMT"),
            "{head}"
        );
        assert!(head.contains("\r\nconnection: close"), "{head}");
        let len: usize = head
            .split("\r\n")
            .find_map(|l| l.strip_prefix("content-length: "))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(len, body.len());
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["status"], 400);
        assert_eq!(v["error"], "bad_request");
        assert_eq!(v["request_id"].as_str().unwrap().len(), 32);
        let big = String::from_utf8(BARE.to_vec())
            .unwrap()
            .replace("400 Bad Request", "431 Request Header Fields Too Large");
        let out = String::from_utf8(replace(big.as_bytes()).unwrap()).unwrap();
        assert!(out.contains("\"request_header_fields_too_large\""), "{out}");
    }

    #[test]
    fn anything_else_is_left_alone() {
        let with_more = String::from_utf8(BARE.to_vec())
            .unwrap()
            .replace("content-length: 0\r\n", "content-length: 0\r\nx-a: 1\r\n");
        for other in [
            &b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 0\r\ndate: Tue, 01 Dec 2026 20:51:05 GMT\r\n\r\n"[..],
            &BARE[..BARE.len() - 1],
            with_more.as_bytes(),
            b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\ndate: Tue, 01 Dec 2026 20:51:05 GMT\r\n\r\n",
            b"HTTP/1.1 400",
            b"",
        ] {
            assert!(replace(other).is_none(), "{:?}", String::from_utf8_lossy(other));
        }
    }
}
