//! The differential test of the own HTTP/1.1 response reader (`http::h1::decode`):
//! every response of a corpus, valid and invalid, is cut in two at every byte and fed
//! to it and to hyper's client (over an in-memory pipe, then a close). Both must give
//! the same verdict, and for a response that passes, the same status, fields, body and
//! trailers. hyper's verdict is taken with the proxy's own response rules applied, as
//! the proxy applies them today.

use crate::responses::BROKEN;
use bytes::Bytes;
use gatehouse_core::http::h1::decode::read_whole;
use gatehouse_core::http::response_rules;
use http::{HeaderMap, Method, Request};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Responses that pass, and more that do not, beside the edge corpus.
const MORE: &[&[u8]] = &[
    b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nx-a: 1\r\nx-a: 2\r\n\r\nhello",
    b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nx-trailer: t\r\n\r\n",
    b"HTTP/1.1 200 OK\r\ntransfer-encoding: Chunked\r\n\r\nA\r\n0123456789\r\n0\r\n\r\n",
    b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n",
    b"HTTP/1.1 204 No Content\r\n\r\n",
    b"HTTP/1.1 304 Not Modified\r\netag: \"x\"\r\n\r\n",
    b"HTTP/1.1 200\r\ncontent-length: 2\r\n\r\nok",
    b"HTTP/1.1 200 OK\ncontent-length: 2\n\nok",
    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
    b"HTTP/1.1 200 OK\r\n\r\nclose-delimited",
    b"HTTP/1.0 200 OK\r\n\r\nten bytes!",
    b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokEXTRA",
    b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort",
    b"HTTP/1.1 200 OK\r\ncontent-length: +2\r\n\r\nok",
    b"HTTP/1.1 200 OK\r\ncontent-length: 2x\r\n\r\nok",
    b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabcXY0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n-3\r\nabc\r\n0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n",
    b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nfffffffffffffffffff\r\n",
    b"HTTP/1.1 200 OK\r\nx-a:\x01\r\ncontent-length: 0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\n:\r\ncontent-length: 0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\n",
    b"",
];

/// What a reader made of a response: `None` when it refused it.
type Verdict = Option<(u16, Vec<(String, Vec<u8>)>, Vec<u8>, Option<HeaderMap>)>;

fn fields(h: &HeaderMap) -> Vec<(String, Vec<u8>)> {
    h.iter()
        .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
        .collect()
}

fn ours(pieces: &[&[u8]], method: &Method) -> Verdict {
    let w = read_whole(pieces, method == Method::HEAD).ok()?;
    let h = &w.head;
    response_rules::check(h.status, h.version, &h.headers, None).ok()?;
    Some((h.status.as_u16(), fields(&h.headers), w.body, w.trailers))
}

async fn hyper(pieces: &[&[u8]], method: &Method) -> Verdict {
    let (near, mut far) = tokio::io::duplex(1 << 20);
    let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(near))
        .await
        .ok()?;
    tokio::spawn(conn);
    let owned: Vec<Vec<u8>> = pieces.iter().map(|p| p.to_vec()).collect();
    tokio::spawn(async move {
        let mut req = [0u8; 1024];
        let _ = far.read(&mut req).await;
        for p in owned {
            let _ = far.write_all(&p).await;
            // Let hyper read this piece before the next one arrives.
            for _ in 0..8 {
                tokio::task::yield_now().await;
            }
        }
    });
    let req = Request::builder()
        .method(method.clone())
        .uri("/")
        .header("host", "a")
        .body(Empty::<Bytes>::new())
        .ok()?;
    let resp = tx.send_request(req).await.ok()?;
    // The framing rules our reader applies as it reads, then the exchange's check.
    response_rules::framing_fields(&response_rules::Fields::of(resp.headers())).ok()?;
    response_rules::check(resp.status(), resp.version(), resp.headers(), None).ok()?;
    let (parts, body) = resp.into_parts();
    let collected = body.collect().await.ok()?;
    let trailers = collected.trailers().cloned();
    Some((
        parts.status.as_u16(),
        fields(&parts.headers),
        collected.to_bytes().to_vec(),
        trailers,
    ))
}

#[tokio::test(flavor = "current_thread")]
async fn the_reader_and_hyper_agree_at_every_split() {
    let corpus = BROKEN.iter().map(|(_, b)| *b).chain(MORE.iter().copied());
    let mut differ = Vec::new();
    let (mut cases, mut passed) = (0, 0);
    for bytes in corpus {
        for method in [Method::GET, Method::HEAD] {
            for at in 0..=bytes.len() {
                let (a, b) = bytes.split_at(at);
                let pieces = [a, b];
                let (mine, theirs) = (ours(&pieces, &method), hyper(&pieces, &method).await);
                cases += 1;
                passed += usize::from(mine.is_some());
                if mine != theirs {
                    differ.push(format!(
                        "{method} {:?} split at {at}:\n  ours  {mine:?}\n  hyper {theirs:?}",
                        String::from_utf8_lossy(bytes)
                    ));
                    break;
                }
            }
        }
    }
    // Both kinds well represented: a test where everything fails agrees trivially.
    assert!(
        cases > 2000 && passed > 800,
        "{cases} cases, {passed} passed"
    );
    assert!(differ.is_empty(), "{}", differ.join("\n"));
}
