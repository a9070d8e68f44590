//! The differential test of the own HTTP/1.1 request writer (`http::h1::encode`): for
//! requests of every framing case (no body, a known length, an unknown one; with and
//! without the client's own Content-Length or Transfer-Encoding; GET and POST), the
//! bytes it writes are the bytes hyper's client puts on the wire.

use bytes::Bytes;
use gatehouse_core::http::h1::encode::{self, BodyLength};
use http::{HeaderMap, Method, Request};
use http_body::Frame;
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Case {
    method: Method,
    headers: &'static [(&'static str, &'static str)],
    body: BodyLength,
    pieces: &'static [&'static [u8]],
}

const CASES: &[Case] = &[
    Case {
        method: Method::GET,
        headers: &[("host", "a")],
        body: BodyLength::Empty,
        pieces: &[],
    },
    Case {
        method: Method::POST,
        headers: &[("host", "a"), ("content-length", "0")],
        body: BodyLength::Empty,
        pieces: &[],
    },
    Case {
        method: Method::POST,
        headers: &[("host", "a")],
        body: BodyLength::Empty,
        pieces: &[],
    },
    Case {
        method: Method::POST,
        headers: &[("host", "a"), ("transfer-encoding", "chunked")],
        body: BodyLength::Empty,
        pieces: &[],
    },
    Case {
        method: Method::PUT,
        headers: &[("host", "a"), ("x-b", "1"), ("x-b", "2")],
        body: BodyLength::Known(5),
        pieces: &[b"hello"],
    },
    Case {
        method: Method::POST,
        headers: &[("host", "a"), ("content-length", "5")],
        body: BodyLength::Unknown,
        pieces: &[b"he", b"llo"],
    },
    Case {
        method: Method::POST,
        headers: &[("host", "a"), ("content-length", "5, 5")],
        body: BodyLength::Unknown,
        pieces: &[b"hello"],
    },
    Case {
        method: Method::POST,
        headers: &[("host", "a")],
        body: BodyLength::Unknown,
        pieces: &[b"abc", b"0123456789abcdef0123"],
    },
    Case {
        method: Method::POST,
        headers: &[("host", "a"), ("content-length", "x")],
        body: BodyLength::Unknown,
        pieces: &[b"abc"],
    },
    Case {
        method: Method::POST,
        headers: &[("host", "a"), ("transfer-encoding", "gzip")],
        body: BodyLength::Unknown,
        pieces: &[b"abc"],
    },
    Case {
        method: Method::POST,
        headers: &[
            ("host", "a"),
            ("transfer-encoding", "gzip, chunked"),
            ("content-length", "3"),
        ],
        body: BodyLength::Unknown,
        pieces: &[b"abc"],
    },
    Case {
        method: Method::GET,
        headers: &[("host", "a")],
        body: BodyLength::Unknown,
        pieces: &[],
    },
    Case {
        method: Method::DELETE,
        headers: &[("host", "a")],
        body: BodyLength::Known(3),
        pieces: &[b"abc"],
    },
];

fn ours(c: &Case) -> Vec<u8> {
    let mut headers = headers(c);
    let mut out = Vec::new();
    let enc = encode::head(&c.method, "/p?q=1", &mut headers, c.body, &mut out).enc;
    for p in c.pieces {
        encode::data(enc, p, &mut out);
    }
    encode::end(enc, &mut out);
    out
}

/// The writer reads the fields once: it notes a `Connection: close` on any line (the
/// exchange then does not pool the connection), and writes no `Transfer-Encoding` for
/// a body known to be empty.
#[test]
fn the_head_notes_a_close_and_leaves_out_an_empty_body_coding() {
    let written = |fields: &'static [(&'static str, &'static str)], body| {
        let c = Case {
            method: Method::POST,
            headers: fields,
            body,
            pieces: &[],
        };
        let mut out = Vec::new();
        let w = encode::head(&c.method, "/", &mut headers(&c), c.body, &mut out);
        (w.close, String::from_utf8(out).unwrap())
    };
    let (close, _) = written(
        &[
            ("host", "a"),
            ("connection", "te"),
            ("connection", "x, Close"),
        ],
        BodyLength::Empty,
    );
    assert!(close, "close on the second line");
    let (close, _) = written(
        &[("host", "a"), ("connection", "closed")],
        BodyLength::Empty,
    );
    assert!(!close, "a token is whole, not a prefix");
    let (close, head) = written(
        &[("host", "a"), ("transfer-encoding", "chunked")],
        BodyLength::Empty,
    );
    assert!(!close);
    assert!(!head.contains("transfer-encoding"), "{head}");
    assert!(head.ends_with("host: a\r\n\r\n"), "{head}");
}

fn headers(c: &Case) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in c.headers {
        h.append(*k, v.parse().unwrap());
    }
    h
}

type Boxed = http_body_util::combinators::BoxBody<Bytes, Infallible>;

fn body(c: &Case) -> Boxed {
    match c.body {
        BodyLength::Empty => Empty::new().boxed(),
        BodyLength::Known(_) => Full::new(Bytes::from(c.pieces.concat())).boxed(),
        BodyLength::Unknown => {
            let frames = c
                .pieces
                .iter()
                .map(|p| Ok(Frame::data(Bytes::from_static(p))));
            StreamBody::new(futures_util::stream::iter(frames.collect::<Vec<_>>())).boxed()
        }
    }
}

/// What hyper's client writes for `c`, read until `want` bytes came (then a little
/// longer, in case it writes more) and the connection is closed.
async fn hyper(c: &Case, want: usize) -> Vec<u8> {
    let (near, mut far) = tokio::io::duplex(1 << 20);
    let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(near))
        .await
        .unwrap();
    let task = tokio::spawn(conn);
    let mut req = Request::builder().method(c.method.clone()).uri("/p?q=1");
    *req.headers_mut().unwrap() = headers(c);
    let req = req.body(body(c)).unwrap();
    let sent = tokio::spawn(async move { tx.send_request(req).await.map(drop) });
    let mut got = vec![0u8; want];
    // A bound, not a wait for state: hyper writing fewer bytes than ours fails here.
    tokio::time::timeout(Duration::from_secs(5), far.read_exact(&mut got))
        .await
        .expect("hyper wrote less than ours")
        .unwrap();
    far.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let _ = sent.await;
    let _ = task.await;
    far.read_to_end(&mut got).await.unwrap();
    got
}

#[tokio::test]
async fn the_writer_writes_what_hyper_writes() {
    let mut differ = Vec::new();
    for (i, c) in CASES.iter().enumerate() {
        let mine = ours(c);
        let theirs = hyper(c, mine.len()).await;
        if mine != theirs {
            differ.push(format!(
                "case {i}:\n  ours  {:?}\n  hyper {:?}",
                String::from_utf8_lossy(&mine),
                String::from_utf8_lossy(&theirs)
            ));
        }
    }
    assert!(differ.is_empty(), "{}", differ.join("\n"));
}
