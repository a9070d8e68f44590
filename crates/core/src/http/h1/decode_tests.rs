use super::*;

fn whole(bytes: &[u8]) -> Result<Whole, Malformed> {
    read_whole(&[bytes], false)
}

/// Every way of cutting `bytes` in two reads the same as reading it whole.
fn same_at_every_split(bytes: &[u8], head_request: bool) {
    let one = format!("{:?}", read_whole(&[bytes], head_request));
    for at in 0..=bytes.len() {
        let (a, b) = bytes.split_at(at);
        let two = format!("{:?}", read_whole(&[a, b], head_request));
        assert_eq!(one, two, "split at {at}");
    }
}

#[test]
fn length_chunked_and_close_delimited_bodies() {
    let w = whole(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").unwrap();
    assert_eq!(
        (w.head.status, &w.body[..], w.head.keep_alive),
        (StatusCode::OK, &b"ok"[..], true)
    );
    let w = whole(
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2;x=y\r\nok\r\n1\r\n!\r\n0\r\n\r\n",
    )
    .unwrap();
    assert_eq!(w.body, b"ok!");
    assert!(w.trailers.is_none());
    let w = whole(b"HTTP/1.1 200 OK\r\n\r\nuntil close").unwrap();
    assert_eq!(
        (&w.body[..], w.head.keep_alive),
        (&b"until close"[..], false)
    );
}

#[test]
fn trailers_come_after_the_last_chunk() {
    let w = whole(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n1\r\na\r\n0\r\ngrpc-status: 0\r\n\r\n").unwrap();
    assert_eq!(w.trailers.unwrap()["grpc-status"], "0");
}

#[test]
fn no_body_for_head_1xx_204_304() {
    let r = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n";
    let w = read_whole(&[r], true).unwrap();
    assert!(w.body.is_empty() && w.head.keep_alive);
    for s in ["204 No Content", "304 Not Modified"] {
        let r = format!("HTTP/1.1 {s}\r\ncontent-length: 5\r\n\r\nhello");
        let w = whole(r.as_bytes()).unwrap();
        assert_eq!((w.body.len(), w.rest), (0, 5), "{s}");
    }
    let w = whole(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").unwrap();
    assert_eq!((w.head.status, &w.body[..]), (StatusCode::OK, &b"ok"[..]));
    let w = whole(b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n\r\nframes").unwrap();
    assert_eq!(
        (w.head.status, w.rest, w.head.keep_alive),
        (StatusCode::SWITCHING_PROTOCOLS, 6, false)
    );
}

#[test]
fn keep_alive_follows_version_and_connection() {
    let ka = |r: &[u8]| whole(r).unwrap().head.keep_alive;
    assert!(!ka(
        b"HTTP/1.1 200 OK\r\nconnection: keep-alive, close\r\ncontent-length: 0\r\n\r\n"
    ));
    assert!(!ka(b"HTTP/1.0 200 OK\r\ncontent-length: 0\r\n\r\n"));
    assert!(ka(
        b"HTTP/1.0 200 OK\r\nconnection: Keep-Alive\r\ncontent-length: 0\r\n\r\n"
    ));
    // Every Connection line counts, read as the head's fields go by.
    assert!(!ka(
        b"HTTP/1.1 200 OK\r\nconnection: te\r\ncontent-length: 0\r\nConnection:\tx ,CLOSE\r\n\r\n"
    ));
    assert!(ka(
        b"HTTP/1.0 200 OK\r\nconnection: x\r\nconnection: keep-alive\r\ncontent-length: 0\r\n\r\n"
    ));
    // A value that is not visible ASCII lists no token, as `HeaderValue::to_str` has it.
    assert!(ka(
        b"HTTP/1.1 200 OK\r\nconnection: close, \xe9\r\ncontent-length: 0\r\n\r\n"
    ));
}

#[test]
fn bad_framing_is_malformed() {
    let cases: &[(&[u8], Malformed)] = &[
        (
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 2\r\n\r\nok",
            Malformed::Framing("the upstream sent Content-Length more than once"),
        ),
        (
            b"HTTP/1.1 200 OK\r\ncontent-length: 2, 2\r\n\r\nok",
            Malformed::Framing("the upstream sent a list as Content-Length"),
        ),
        (
            b"HTTP/1.1 200 OK\r\ncontent-length: +2\r\n\r\nok",
            Malformed::BadLength,
        ),
        (
            b"HTTP/1.1 200 OK\r\ncontent-length: 99999999999999999999999\r\n\r\n",
            Malformed::BadLength,
        ),
        (
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n",
            Malformed::Framing("the upstream sent a transfer coding other than a lone chunked"),
        ),
        (
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ntransfer-encoding: chunked\r\n\r\n",
            Malformed::Framing("the upstream sent a transfer coding other than a lone chunked"),
        ),
        (
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: 3\r\n\r\n",
            Malformed::Framing("the upstream sent both Transfer-Encoding and Content-Length"),
        ),
        (
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
            Malformed::ChunkSize,
        ),
        (
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n\r\n",
            Malformed::ChunkSize,
        ),
        (
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n1;a\nb\r\nx\r\n0\r\n\r\n",
            Malformed::ChunkSize,
        ),
        (
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n11111111111111111\r\n",
            Malformed::ChunkSize,
        ),
        (
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n1\r\nabc",
            Malformed::ChunkEnd,
        ),
        (
            b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc",
            Malformed::Truncated,
        ),
        (
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nab",
            Malformed::Truncated,
        ),
        (b"HTTP/1.1 200 OK\r\ncontent-le", Malformed::Truncated),
        (b"HTTP/1.1 099 OK\r\n\r\n", Malformed::Status(99)),
    ];
    for (bytes, want) in cases {
        let got = whole(bytes).unwrap_err();
        assert_eq!(got, *want, "{}", String::from_utf8_lossy(bytes));
        same_at_every_split(bytes, false);
    }
    for bad in [
        &b"HTTP/3.1 200 OK\r\n\r\n"[..],
        b"<html>",
        b"HTTP/1.1 200 OK\r\nx a: 1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nx: 1\r\n 2\r\n\r\n",
    ] {
        assert!(
            matches!(whole(bad), Err(Malformed::Head(_))),
            "{}",
            String::from_utf8_lossy(bad)
        );
    }
}

#[test]
fn oversized_heads_and_chunk_lines_are_refused() {
    let mut head = b"HTTP/1.1 200 OK\r\n".to_vec();
    while head.len() < MAX_HEAD {
        head.extend_from_slice(b"x-a: 0123456789012345678901234567890123456789\r\n");
    }
    assert_eq!(
        whole(&head).unwrap_err(),
        Malformed::Head(httparse::Error::TooManyHeaders)
    );
    let mut big = b"HTTP/1.1 200 OK\r\nx: ".to_vec();
    big.resize(MAX_HEAD + 10, b'a');
    assert_eq!(whole(&big).unwrap_err(), Malformed::HeadTooLarge);
    let mut line = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n1;".to_vec();
    line.resize(line.len() + MAX_CHUNK_LINE, b'e');
    assert_eq!(whole(&line).unwrap_err(), Malformed::ChunkSize);
}

#[test]
fn good_responses_read_the_same_at_every_split() {
    for r in [
        &b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello"[..],
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\nx-t: 1\r\n\r\n",
        b"HTTP/1.1 103 Early Hints\r\n\r\nHTTP/1.1 200 OK\r\n\r\nclose",
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokHTTP/1.1",
    ] {
        same_at_every_split(r, false);
    }
}

/// A head is parsed into room for a few fields first and again with room for all:
/// a head past the first room reads the same, whole or cut anywhere, and one past
/// `MAX_FIELDS` is refused.
#[test]
fn heads_with_many_fields_read_whole_and_past_the_limit_are_refused() {
    let head = |n: usize| {
        let mut h = b"HTTP/1.1 200 OK\r\n".to_vec();
        for i in 0..n {
            h.extend_from_slice(format!("x-f{i}: {i}\r\n").as_bytes());
        }
        h.extend_from_slice(b"content-length: 2\r\n\r\nok");
        h
    };
    for n in [FEW_FIELDS - 1, FEW_FIELDS, FEW_FIELDS + 1, MAX_FIELDS - 1] {
        let w = whole(&head(n)).unwrap();
        assert_eq!(w.head.headers.len(), n + 1, "{n} fields and a length");
        assert_eq!(w.head.headers["x-f0"], "0");
        same_at_every_split(&head(n), false);
    }
    assert_eq!(
        whole(&head(MAX_FIELDS)).unwrap_err(),
        Malformed::Head(httparse::Error::TooManyHeaders)
    );
    // Nothing read yet, or only the start of a long head: more is needed.
    let mut buf = BytesMut::new();
    assert!(read_head(&mut buf, false, &mut Names::default())
        .unwrap()
        .is_none());
    let long = head(FEW_FIELDS + 10);
    let mut buf = BytesMut::from(&long[..long.len() / 2]);
    assert!(read_head(&mut buf, false, &mut Names::default())
        .unwrap()
        .is_none());
    assert_eq!(
        buf.len(),
        long.len() / 2,
        "nothing taken off a partial head"
    );
}

/// Heads read one after another on a connection, through its [`Names`], read as each
/// would alone: the same names again, another case, another name at a kept place, a
/// head refused (httparse refuses the name before any is looked up) and the one after
/// it, fewer fields, and more than are kept.
#[test]
fn names_of_earlier_heads_change_nothing() {
    let many: String = (0..NAMES_KEPT + 3)
        .map(|i| format!("X-F{i}: {i}\r\n"))
        .collect();
    let heads = [
        "HTTP/1.1 200 OK\r\nServer: s\r\nX-Backend: a\r\nContent-Length: 2\r\n\r\nok".to_string(),
        "HTTP/1.1 200 OK\r\nServer: s\r\nX-Backend: b\r\nContent-Length: 2\r\n\r\nok".to_string(),
        "HTTP/1.1 200 OK\r\nserver: s\r\nX-Other: b\r\nContent-Length: 2\r\n\r\nok".to_string(),
        "HTTP/1.1 200 OK\r\nserver: s\r\nX Other: b\r\nContent-Length: 2\r\n\r\nok".to_string(),
        "HTTP/1.1 200 OK\r\nserver: s\r\nX-Other: b\r\nContent-Length: 2\r\n\r\nok".to_string(),
        "HTTP/1.1 204 No Content\r\nServer: s\r\n\r\n".to_string(),
        format!("HTTP/1.1 200 OK\r\n{many}Content-Length: 2\r\n\r\nok"),
        format!("HTTP/1.1 200 OK\r\n{many}Content-Length: 2\r\n\r\nok"),
        "HTTP/1.1 200 OK\r\nServer: s\r\nX-Backend: a\r\nContent-Length: 2\r\n\r\nok".to_string(),
    ];
    let mut names = Names::default();
    for h in &heads {
        let alone = format!("{:?}", read_whole(&[h.as_bytes()], false));
        let after = format!("{:?}", read_whole_with(&[h.as_bytes()], false, &mut names));
        assert_eq!(alone, after, "{h}");
    }
    assert_eq!(
        names.seen.len(),
        NAMES_KEPT,
        "names past the kept ones are parsed"
    );
    let w = read_whole_with(&[heads[0].as_bytes()], false, &mut names).unwrap();
    assert_eq!(w.head.headers["x-backend"], "a");
    assert!(read_whole_with(&[heads[3].as_bytes()], false, &mut names).is_err());
}
