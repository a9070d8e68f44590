//! The protocol matrix: client HTTP/1.1 or HTTP/2 (h2c on plain, ALPN h2 on TLS) x
//! gateway TLS off or on x upstream HTTP/1.1 or HTTP/2, each with and without TLS.
//! Every cell checks the same things, so a rule that holds on one path but not another
//! (forwarding headers, hop-by-hop stripping, Host, request ids, bodies) shows up.
//!
//! Hop-by-hop headers are illegal in HTTP/2, and hyper drops them itself when it sends
//! HTTP/2; the cells that prove the gateway strips them are those with HTTP/1.1 on
//! the side that sends them. The other cells still check that none arrive.

use super::common::{pattern, plain_listener, read, route_to, tls_listener, QUIET};
use bytes::Bytes;
use gatehouse_test_support::certs::TestCa;
use gatehouse_test_support::upstream::TestBody;
use gatehouse_test_support::{empty, full, Conn, Proto, TestGateway, Upstream, UpstreamOptions};
use http::{Method, Request, Response, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;

/// How the gateway reaches the upstream.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Up {
    H1,
    H1Tls,
    H2,
    H2Tls,
}

impl Up {
    fn http2(self) -> bool {
        matches!(self, Up::H2 | Up::H2Tls)
    }

    fn tls(self) -> bool {
        matches!(self, Up::H1Tls | Up::H2Tls)
    }
}

/// Answers GET with `hello`, echoes a POST body, and adds end-to-end and hop-by-hop
/// headers to its response.
async fn echo(req: Request<Incoming>) -> Response<TestBody> {
    if let Some(code) = req.uri().path().strip_prefix("/status/") {
        let mut resp = Response::new(empty());
        *resp.status_mut() = code.parse().unwrap();
        resp.headers_mut().insert("etag", "\"v1\"".parse().unwrap());
        return resp;
    }
    let post = req.method() == Method::POST;
    let body = read(req.into_body()).await;
    let mut resp = Response::new(full(if post { body } else { "hello".into() }));
    let h = resp.headers_mut();
    h.insert("x-upstream", "yes".parse().unwrap());
    h.insert("x-up-hop", "secret".parse().unwrap());
    h.insert("keep-alive", "timeout=5".parse().unwrap());
    h.insert("connection", "x-up-hop".parse().unwrap());
    resp
}

struct Cell {
    gw: TestGateway,
    up: Upstream,
    conn: Conn,
    client: Proto,
    gw_tls: bool,
    upstream: Up,
}

async fn start(client: Proto, gw_tls: bool, upstream: Up) -> Cell {
    let ca = TestCa::new();
    let gw_leaf = ca.leaf("gateway", &["localhost"]);
    let up_leaf = ca.leaf("upstream", &["127.0.0.1"]);
    let opts = UpstreamOptions {
        http2_only: upstream.http2(),
        tls: upstream
            .tls()
            .then(|| (up_leaf.cert_pem.clone(), up_leaf.key_pem.clone())),
    };
    let up = Upstream::start(opts, echo).await;
    let mut extra = String::new();
    if upstream.http2() {
        extra.push_str("protocol = \"http2\"\n");
    }
    if upstream.tls() {
        extra.push_str(&format!(
            "[upstreams.tls]\nca = \"{}\"\n",
            ca.ca_path.display()
        ));
    }
    let listener = if gw_tls {
        tls_listener(&gw_leaf)
    } else {
        plain_listener()
    };
    let gw = TestGateway::start(&format!("{QUIET}{listener}{}", route_to(up.addr, &extra))).await;
    let addr = gw.addr("web");
    let conn = if gw_tls {
        Conn::tls(addr, client, &ca.cert_pem, "localhost").await
    } else {
        Conn::plain(addr, client).await
    };
    Cell {
        gw,
        up,
        conn,
        client,
        gw_tls,
        upstream,
    }
}

impl Cell {
    /// A GET carrying a request id, hop-by-hop headers (plain and named in
    /// `Connection`) and an end-to-end header.
    async fn get_with_id(&mut self) {
        let mut req = self
            .conn
            .request(Method::GET, "/matrix/get?x=1")
            .header("x-request-id", "client-id-123")
            .header("x-end-to-end", "kept")
            // Not from a trusted proxy: replaced, never trusted.
            .header("x-forwarded-for", "6.6.6.6")
            .header("x-forwarded-proto", "ftp")
            .header("x-forwarded-host", "evil.test")
            // Via is a list every proxy appends to.
            .header("via", "1.0 fred");
        if self.client == Proto::H1 {
            req = req
                .header("connection", "x-client-hop")
                .header("x-client-hop", "1")
                .header("keep-alive", "timeout=5")
                .header("proxy-connection", "keep-alive");
        }
        req = req.header("proxy-authorization", "Basic Zm9vOmJhcg==");
        let (parts, body) = self.conn.fetch(req.body(empty()).unwrap()).await;
        assert_eq!(parts.status, 200, "{body:?}");
        assert_eq!(body, "hello");
        assert_eq!(parts.headers["x-upstream"], "yes");
        assert_eq!(parts.headers["x-request-id"], "client-id-123");
        for hop in ["x-up-hop", "keep-alive", "connection"] {
            assert!(!parts.headers.contains_key(hop), "response kept `{hop}`");
        }

        let seen = self.up.last();
        assert_eq!(seen.method, Method::GET);
        assert_eq!(seen.uri.path_and_query().unwrap(), "/matrix/get?x=1");
        let want_version = if self.upstream.http2() {
            Version::HTTP_2
        } else {
            Version::HTTP_11
        };
        assert_eq!(seen.version, want_version);
        let h = &seen.headers;
        assert_eq!(h["x-forwarded-for"], "127.0.0.1");
        let proto = if self.gw_tls { "https" } else { "http" };
        assert_eq!(h["x-forwarded-proto"], proto);
        assert_eq!(h["x-forwarded-host"], self.conn.authority.as_str());
        let via = match self.client {
            Proto::H1 => "1.1 gatehouse",
            Proto::H2 => "2.0 gatehouse",
        };
        assert_eq!(h["via"], format!("1.0 fred, {via}").as_str());
        assert_eq!(h.get_all("x-forwarded-for").iter().count(), 1);
        assert_eq!(h["x-request-id"], "client-id-123");
        assert_eq!(h["x-end-to-end"], "kept");
        assert_eq!(host_seen(&seen), self.conn.authority, "Host not preserved");
        for hop in [
            "x-client-hop",
            "keep-alive",
            "proxy-connection",
            "proxy-authorization",
            "connection",
        ] {
            assert!(!h.contains_key(hop), "upstream got `{hop}`: {h:?}");
        }
    }

    /// Without an id the gateway makes one, sends it upstream and returns it.
    async fn get_generates_id(&mut self) {
        let (parts, body) = self.conn.get("/matrix/fresh").await;
        assert_eq!(parts.status, 200, "{body:?}");
        let id = parts.headers["x-request-id"].to_str().unwrap().to_string();
        assert_eq!(id.len(), 32, "{id}");
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
        assert_eq!(self.up.last().headers["x-request-id"], id.as_str());
        let (parts, _) = self.conn.get("/matrix/fresh").await;
        assert_ne!(
            parts.headers["x-request-id"],
            id.as_str(),
            "ids must differ"
        );
        // An id that is not a short printable token is replaced, not passed on.
        let long = "x".repeat(129);
        let req = self
            .conn
            .request(Method::GET, "/matrix/fresh")
            .header("x-request-id", long.as_str())
            .body(empty())
            .unwrap();
        let (parts, _) = self.conn.fetch(req).await;
        let id = parts.headers["x-request-id"].to_str().unwrap();
        assert_eq!(id.len(), 32, "{id}");
        assert_eq!(self.up.last().headers["x-request-id"], id);
    }

    /// POST bodies come back intact: one with a length, one streamed in chunks.
    async fn post_round_trip(&mut self) {
        let data = Bytes::from(pattern(256 * 1024 + 7));
        let req = self
            .conn
            .request(Method::POST, "/matrix/post")
            .body(full(data.clone()))
            .unwrap();
        let (parts, body) = self.conn.fetch(req).await;
        assert_eq!(parts.status, 200);
        assert_eq!(body.len(), data.len());
        assert!(body == data, "echoed body differs");
        let seen = self.up.last();
        assert_eq!(seen.method, Method::POST);

        let chunks: Vec<Bytes> = (0..8)
            .map(|i| data.slice(i * 1000..(i + 1) * 1000))
            .collect();
        let stream =
            futures_util::stream::iter(chunks.clone().into_iter().map(|c| {
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(http_body::Frame::data(c))
            }));
        let req = self
            .conn
            .request(Method::POST, "/matrix/post-chunked")
            .body(http_body_util::StreamBody::new(stream).boxed())
            .unwrap();
        let (parts, body) = self.conn.fetch(req).await;
        assert_eq!(parts.status, 200);
        assert_eq!(body, chunks.concat());
    }

    /// Responses without a body (HEAD, 204, 304) end cleanly, and both connections
    /// (client and pooled upstream) still carry the next request.
    async fn bodiless_responses(&mut self) {
        let req = self
            .conn
            .request(Method::HEAD, "/matrix/head")
            .body(empty())
            .unwrap();
        let (parts, body) = self.conn.fetch(req).await;
        assert_eq!(parts.status, 200);
        assert_eq!(parts.headers["content-length"], "5");
        assert!(body.is_empty());
        for code in [204u16, 304] {
            let (parts, body) = self.conn.get(&format!("/status/{code}")).await;
            assert_eq!(parts.status, code);
            assert_eq!(parts.headers["etag"], "\"v1\"");
            assert!(body.is_empty());
        }
        let (parts, body) = self.conn.get("/matrix/after").await;
        assert_eq!(parts.status, 200);
        assert_eq!(body, "hello");
    }
}

/// The Host an upstream received: the header on HTTP/1.1, `:authority` on HTTP/2.
fn host_seen(p: &http::request::Parts) -> String {
    match p.headers.get("host") {
        Some(h) => h.to_str().unwrap().to_string(),
        None => p
            .uri
            .authority()
            .expect("no Host and no authority")
            .to_string(),
    }
}

async fn run(client: Proto, gw_tls: bool, upstream: Up) {
    let mut c = start(client, gw_tls, upstream).await;
    c.get_with_id().await;
    c.get_generates_id().await;
    c.post_round_trip().await;
    c.bodiless_responses().await;
    // Every request above went over the one client connection, and over one upstream
    // connection: each response was read to its end and the connection reused (TLS
    // records such as session tickets arriving in between do not make it look stale).
    assert_eq!(c.up.count(), 10);
    assert_eq!(c.up.connections(), 1, "upstream connections");
    drop(c.gw);
}

macro_rules! cells {
    ($($name:ident: $client:expr, $tls:expr, $up:expr;)*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            run($client, $tls, $up).await;
        }
    )*};
}

cells! {
    h1_plain_to_h1: Proto::H1, false, Up::H1;
    h1_plain_to_h1_tls: Proto::H1, false, Up::H1Tls;
    h1_plain_to_h2: Proto::H1, false, Up::H2;
    h1_plain_to_h2_tls: Proto::H1, false, Up::H2Tls;
    h2c_plain_to_h1: Proto::H2, false, Up::H1;
    h2c_plain_to_h1_tls: Proto::H2, false, Up::H1Tls;
    h2c_plain_to_h2: Proto::H2, false, Up::H2;
    h2c_plain_to_h2_tls: Proto::H2, false, Up::H2Tls;
    h1_tls_to_h1: Proto::H1, true, Up::H1;
    h1_tls_to_h1_tls: Proto::H1, true, Up::H1Tls;
    h1_tls_to_h2: Proto::H1, true, Up::H2;
    h1_tls_to_h2_tls: Proto::H1, true, Up::H2Tls;
    h2_tls_to_h1: Proto::H2, true, Up::H1;
    h2_tls_to_h1_tls: Proto::H2, true, Up::H1Tls;
    h2_tls_to_h2: Proto::H2, true, Up::H2;
    h2_tls_to_h2_tls: Proto::H2, true, Up::H2Tls;
}
