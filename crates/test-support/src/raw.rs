//! Byte-level HTTP/1 peers for the edge tests: a [`RawOrigin`] that records every
//! request exactly as it arrived and answers with whatever bytes the test scripts, and
//! [`exchange`], a client that writes raw bytes and reads one response back.
//!
//! The origin frames requests the lenient way a naive server does (any `chunked` in
//! Transfer-Encoding means chunked, else the first Content-Length), so a request the
//! proxy let through ambiguously shows up as two requests here.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// One request as the origin read it.
#[derive(Debug, Clone)]
pub struct SeenRequest {
    pub method: String,
    pub target: String,
    /// Header names lower-cased, values as sent.
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

impl SeenRequest {
    /// Every value of a header, as text.
    pub fn all(&self, name: &str) -> Vec<String> {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
            .collect()
    }

    /// The header's only value; `None` when absent.
    pub fn get(&self, name: &str) -> Option<String> {
        self.all(name).into_iter().next()
    }
}

/// What the origin sends back for a request.
pub struct Reply {
    pub bytes: Vec<u8>,
    /// Close the connection after writing.
    pub close: bool,
}

impl Reply {
    /// `200 OK` with a two-byte body, kept alive.
    pub fn ok() -> Reply {
        Reply::raw(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
    }

    /// These bytes, kept alive.
    pub fn raw(bytes: &[u8]) -> Reply {
        Reply {
            bytes: bytes.to_vec(),
            close: false,
        }
    }

    /// These bytes, then a close.
    pub fn closing(bytes: &[u8]) -> Reply {
        Reply {
            bytes: bytes.to_vec(),
            close: true,
        }
    }
}

type Script = Arc<dyn Fn(&SeenRequest) -> Reply + Send + Sync>;

/// A recording origin on 127.0.0.1.
pub struct RawOrigin {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<SeenRequest>>>,
    conns: Arc<Mutex<usize>>,
    /// Bytes that did not parse as a request, per connection that sent them.
    garbage: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl RawOrigin {
    /// Starts an origin answering every request with `script`.
    pub async fn start(
        script: impl Fn(&SeenRequest) -> Reply + Send + Sync + 'static,
    ) -> RawOrigin {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let origin = RawOrigin {
            addr,
            seen: Arc::default(),
            conns: Arc::default(),
            garbage: Arc::default(),
        };
        let script: Script = Arc::new(script);
        let (seen, conns, garbage) = (
            origin.seen.clone(),
            origin.conns.clone(),
            origin.garbage.clone(),
        );
        tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                *conns.lock().unwrap() += 1;
                let (seen, garbage, script) = (seen.clone(), garbage.clone(), script.clone());
                tokio::spawn(serve(s, seen, garbage, script));
            }
        });
        origin
    }

    /// An origin answering `200 ok` to everything.
    pub async fn ok() -> RawOrigin {
        RawOrigin::start(|_| Reply::ok()).await
    }

    /// Every request seen so far, in order.
    pub fn seen(&self) -> Vec<SeenRequest> {
        self.seen.lock().unwrap().clone()
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        *self.conns.lock().unwrap()
    }

    /// Bytes that arrived but did not parse as a request.
    pub fn garbage(&self) -> Vec<Vec<u8>> {
        self.garbage.lock().unwrap().clone()
    }

    pub fn clear(&self) {
        self.seen.lock().unwrap().clear();
        self.garbage.lock().unwrap().clear();
    }
}

async fn serve(
    mut s: TcpStream,
    seen: Arc<Mutex<Vec<SeenRequest>>>,
    garbage: Arc<Mutex<Vec<Vec<u8>>>>,
    script: Script,
) {
    let mut r = Reader::new(None);
    loop {
        let req = match next_request(&mut s, &mut r).await {
            Ok(Some(req)) => req,
            Ok(None) => return,
            Err(()) => {
                if !r.buf.is_empty() {
                    garbage.lock().unwrap().push(std::mem::take(&mut r.buf));
                }
                return;
            }
        };
        seen.lock().unwrap().push(req.clone());
        let reply = script(&req);
        if s.write_all(&reply.bytes).await.is_err() || reply.close {
            return;
        }
    }
}

/// Reads one request; `Ok(None)` on a clean close between requests, `Err` on bytes that
/// are not a request or a close inside one.
async fn next_request(s: &mut TcpStream, r: &mut Reader) -> Result<Option<SeenRequest>, ()> {
    let (mut req, used) = loop {
        let mut headers = [httparse::EMPTY_HEADER; 128];
        let mut p = httparse::Request::new(&mut headers);
        match p.parse(&r.buf) {
            Ok(httparse::Status::Complete(n)) => {
                let req = SeenRequest {
                    method: p.method.unwrap_or("").to_string(),
                    target: p.path.unwrap_or("").to_string(),
                    headers: p
                        .headers
                        .iter()
                        .map(|h| (h.name.to_ascii_lowercase(), h.value.to_vec()))
                        .collect(),
                    body: Vec::new(),
                };
                break (req, n);
            }
            Ok(httparse::Status::Partial) => {
                if !r.fill(s).await {
                    return if r.buf.is_empty() { Ok(None) } else { Err(()) };
                }
            }
            Err(_) => return Err(()),
        }
    };
    r.buf.drain(..used);
    let chunked = req
        .all("transfer-encoding")
        .iter()
        .any(|v| v.to_ascii_lowercase().contains("chunked"));
    if chunked {
        let (body, ended) = r.chunked(s).await;
        if !ended {
            return Err(());
        }
        req.body = body;
    } else if let Some(n) = req
        .get("content-length")
        .and_then(|v| v.trim().parse::<usize>().ok())
    {
        let body = r.exactly(s, n).await;
        if body.len() < n {
            return Err(());
        }
        req.body = body;
    }
    Ok(Some(req))
}

/// Buffered reads off a raw stream, with the lenient line and chunk rules of a naive
/// peer (a bare LF ends a line; a chunk size ends at `;`).
struct Reader {
    buf: Vec<u8>,
    /// How long one read may wait; `None`: as long as it takes.
    patience: Option<Duration>,
}

impl Reader {
    fn new(patience: Option<Duration>) -> Reader {
        Reader {
            buf: Vec::new(),
            patience,
        }
    }

    /// Reads more bytes; false on a close, an error or running out of patience.
    async fn fill<S: AsyncRead + Unpin>(&mut self, s: &mut S) -> bool {
        let mut chunk = [0u8; 16384];
        let read = match self.patience {
            Some(p) => tokio::time::timeout(p, s.read(&mut chunk))
                .await
                .unwrap_or(Ok(0)),
            None => s.read(&mut chunk).await,
        };
        match read {
            Ok(n) if n > 0 => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
            _ => false,
        }
    }

    /// Up to `n` bytes: fewer when the stream ends first.
    async fn exactly<S: AsyncRead + Unpin>(&mut self, s: &mut S, n: usize) -> Vec<u8> {
        while self.buf.len() < n && self.fill(s).await {}
        self.buf.drain(..n.min(self.buf.len())).collect()
    }

    /// Everything up to the close.
    async fn until_close<S: AsyncRead + Unpin>(&mut self, s: &mut S) -> Vec<u8> {
        while self.fill(s).await {}
        std::mem::take(&mut self.buf)
    }

    /// A line without its ending; `None` when the stream ends first.
    async fn line<S: AsyncRead + Unpin>(&mut self, s: &mut S) -> Option<Vec<u8>> {
        loop {
            if let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
                let mut l: Vec<u8> = self.buf.drain(..=i).collect();
                l.pop();
                if l.last() == Some(&b'\r') {
                    l.pop();
                }
                return Some(l);
            }
            if !self.fill(s).await {
                return None;
            }
        }
    }

    /// A chunked body, decoded, and whether its last chunk came.
    async fn chunked<S: AsyncRead + Unpin>(&mut self, s: &mut S) -> (Vec<u8>, bool) {
        let mut body = Vec::new();
        loop {
            let Some(size_line) = self.line(s).await else {
                return (body, false);
            };
            let text = String::from_utf8_lossy(&size_line);
            let hex = text.split(';').next().unwrap_or("").trim();
            let Ok(n) = usize::from_str_radix(hex, 16) else {
                return (body, false);
            };
            if n == 0 {
                loop {
                    match self.line(s).await {
                        Some(l) if l.is_empty() => return (body, true),
                        Some(_) => {}
                        None => return (body, false),
                    }
                }
            }
            let data = self.exactly(s, n + 2).await;
            body.extend_from_slice(&data[..n.min(data.len())]);
            if data.len() < n + 2 {
                return (body, false);
            }
        }
    }
}

/// A response as a raw client read it.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    /// The body, decoded from chunked.
    pub body: Vec<u8>,
    /// The body came whole: all its Content-Length, or chunked up to its last chunk.
    pub ended: bool,
}

impl RawResponse {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON; panics if it is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {:?}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

/// How long a raw client waits for bytes the server has no reason to hold back.
const PATIENCE: Duration = Duration::from_secs(5);

/// Writes `raw` to `addr` and reads the first response back: status, headers and a
/// body framed by Content-Length or chunked (or read to the close). `None` when no
/// response came before the close. The connection is returned for what follows.
pub async fn exchange(addr: SocketAddr, raw: &[u8]) -> (Option<RawResponse>, TcpStream) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(raw).await.unwrap();
    let resp = read_response(&mut s).await;
    (resp, s)
}

/// Reads one response from a raw connection (see [`exchange`]), after any 1xx.
pub async fn read_response<S: AsyncRead + Unpin>(s: &mut S) -> Option<RawResponse> {
    let mut r = Reader::new(Some(PATIENCE));
    let (status, headers) = loop {
        let mut hs = [httparse::EMPTY_HEADER; 64];
        let mut p = httparse::Response::new(&mut hs);
        match p.parse(&r.buf) {
            Ok(httparse::Status::Complete(n)) => {
                let status = p.code.unwrap_or(0);
                let headers: Vec<(String, String)> = p
                    .headers
                    .iter()
                    .map(|h| {
                        (
                            h.name.to_ascii_lowercase(),
                            String::from_utf8_lossy(h.value).into_owned(),
                        )
                    })
                    .collect();
                r.buf.drain(..n);
                if (100..200).contains(&status) && status != 101 {
                    continue;
                }
                break (status, headers);
            }
            Ok(httparse::Status::Partial) => {
                if !r.fill(s).await {
                    return None;
                }
            }
            Err(e) => panic!(
                "not an HTTP response ({e}): {:?}",
                String::from_utf8_lossy(&r.buf)
            ),
        }
    };
    let mut resp = RawResponse {
        status,
        headers,
        body: Vec::new(),
        ended: true,
    };
    let length = resp
        .get("content-length")
        .and_then(|v| v.parse::<usize>().ok());
    if resp.get("transfer-encoding").is_some() {
        (resp.body, resp.ended) = r.chunked(s).await;
    } else if let Some(n) = length {
        resp.body = r.exactly(s, n).await;
        resp.ended = resp.body.len() == n;
    } else if status >= 200 && status != 204 && status != 304 {
        resp.body = r.until_close(s).await;
    }
    Some(resp)
}

/// Whether the server closes the connection: the next read ends (EOF or a reset)
/// instead of bringing bytes. Used where a close is expected, so it comes at once; to
/// show a connection was kept, send it another request instead.
pub async fn closes(s: &mut TcpStream) -> bool {
    let mut b = [0u8; 1];
    matches!(
        tokio::time::timeout(PATIENCE, s.read(&mut b)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}
