//! Routing end to end, over HTTP/1.1 and HTTP/2: host (exact, wildcard), path (exact,
//! prefix), method, header and query matches with their precedence; the 404 of no
//! route; path rewriting (strip_prefix, replace_prefix); Host rewriting (host_rewrite,
//! preserve_host = false); and the local `respond` and `redirect` actions.

use super::common::{read, QUIET};
use gatehouse_test_support::{empty, Conn, Proto, TestGateway, Upstream};
use http::Method;
use std::collections::HashMap;

/// Each route proxies to its own upstream, which answers with its own name.
const NAMES: [&str; 13] = [
    "api", "wild", "exact", "files", "v1", "post", "many", "canary", "hdefault", "v2", "qdefault",
    "rewrite", "nohost",
];

const ROUTES: &str = r#"
[[routes]]
name = "api-host"
upstream = "api"
match.host = "api.example.com"

[[routes]]
name = "wild-host"
upstream = "wild"
match.host = "*.example.com"

[[routes]]
name = "exact"
upstream = "exact"
match.path = "/exact"

[[routes]]
name = "files"
upstream = "files"
match.prefix = "/files"
strip_prefix = "/files"

[[routes]]
name = "v1"
upstream = "v1"
match.prefix = "/old"
strip_prefix = "/old"
replace_prefix = "/new/"

[[routes]]
name = "post"
upstream = "post"
match = { prefix = "/m", method = ["POST", "PUT"] }

[[routes]]
name = "many"
upstream = "many"
match.prefix = "/m"

[[routes]]
name = "canary"
upstream = "canary"
match = { prefix = "/h", headers = [{ name = "X-Canary", value = "1" }] }

[[routes]]
name = "hdefault"
upstream = "hdefault"
match.prefix = "/h"

[[routes]]
name = "v2"
upstream = "v2"
match = { prefix = "/q", query = [{ name = "v", value = "2" }] }

[[routes]]
name = "qdefault"
upstream = "qdefault"
match.prefix = "/q"

[[routes]]
name = "rewrite"
upstream = "rewrite"
match.prefix = "/rewrite"
host_rewrite = "internal.svc"

[[routes]]
name = "nohost"
upstream = "nohost"
match.prefix = "/nohost"
preserve_host = false

[[routes]]
name = "teapot"
match.path = "/teapot"
respond = { status = 418, body = "short and stout", headers = { X-Pot = "1" } }

[[routes]]
name = "moved"
match.prefix = "/moved"
redirect = { to = "https://new.example.com{path}?{query}", status = 301 }
"#;

struct Setup {
    gw: TestGateway,
    ups: HashMap<&'static str, Upstream>,
}

async fn setup() -> Setup {
    let mut ups = HashMap::new();
    let mut text =
        format!("{QUIET}[[listeners]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\n{ROUTES}");
    for n in NAMES {
        let up = Upstream::fixed(n).await;
        text.push_str(&format!(
            "\n[[upstreams]]\nname = \"{n}\"\nendpoints = [\"{}\"]\n",
            up.addr
        ));
        ups.insert(n, up);
    }
    Setup {
        gw: TestGateway::start(&text).await,
        ups,
    }
}

impl Setup {
    async fn conn(&self, proto: Proto) -> Conn {
        Conn::plain(self.gw.addr("web"), proto).await
    }

    /// Sends a request and returns (status, body, response headers).
    async fn call(
        &self,
        c: &mut Conn,
        method: Method,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> (u16, String, http::HeaderMap) {
        let mut b = c.request_to(method, host, path);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let resp = c.send(b.body(empty()).unwrap()).await.unwrap();
        let status = resp.status().as_u16();
        let (parts, body) = resp.into_parts();
        let body = String::from_utf8(read(body).await.to_vec()).unwrap();
        (status, body, parts.headers)
    }

    /// The upstream a request reached (its name), for a request that must be proxied.
    async fn reached(
        &self,
        c: &mut Conn,
        method: Method,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> String {
        let (status, body, _) = self.call(c, method, host, path, headers).await;
        assert_eq!(status, 200, "{host}{path}: {body}");
        body
    }
}

#[tokio::test]
async fn routes_by_host_path_method_header_and_query() {
    let s = setup().await;
    for proto in [Proto::H1, Proto::H2] {
        let mut c = s.conn(proto).await;
        let plain = "plain.test";
        for (method, host, path, headers, want) in [
            (Method::GET, "api.example.com", "/anything", &[][..], "api"),
            // An exact host wins over routes with no host, whatever their path.
            (Method::GET, "API.Example.com:8080", "/exact", &[], "api"),
            (Method::GET, "www.example.com", "/exact", &[], "wild"),
            (Method::GET, plain, "/exact", &[], "exact"),
            (Method::GET, plain, "/files/a.txt", &[], "files"),
            (Method::POST, plain, "/m/x", &[], "post"),
            (Method::PUT, plain, "/m", &[], "post"),
            (Method::GET, plain, "/m/x", &[], "many"),
            (Method::GET, plain, "/h", &[("x-canary", "1")], "canary"),
            (Method::GET, plain, "/h", &[("x-canary", "2")], "hdefault"),
            (Method::GET, plain, "/h", &[], "hdefault"),
            (Method::GET, plain, "/q?a=1&v=2", &[], "v2"),
            (Method::GET, plain, "/q?v=3", &[], "qdefault"),
        ] {
            let got = s.reached(&mut c, method.clone(), host, path, headers).await;
            assert_eq!(got, want, "{proto:?} {method} {host}{path} {headers:?}");
        }
    }
}

#[tokio::test]
async fn no_route_is_a_json_404_with_the_request_id() {
    let s = setup().await;
    for proto in [Proto::H1, Proto::H2] {
        let mut c = s.conn(proto).await;
        // `/filesx` is not under the `/files` prefix: prefixes match whole segments.
        for path in ["/nothing/here", "/filesx"] {
            let (status, body, headers) =
                s.call(&mut c, Method::GET, "plain.test", path, &[]).await;
            assert_eq!(status, 404);
            assert_eq!(headers["content-type"], "application/json");
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            assert_eq!(v["error"], "no_route");
            assert_eq!(v["status"], 404);
            assert_eq!(v["request_id"], headers["x-request-id"].to_str().unwrap());
        }
        let (_, body, headers) = s
            .call(
                &mut c,
                Method::GET,
                "plain.test",
                "/nothing",
                &[("x-request-id", "trace-42")],
            )
            .await;
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["request_id"], "trace-42");
        assert_eq!(headers["x-request-id"], "trace-42");
    }
    assert!(
        s.ups.values().all(|u| u.count() == 0),
        "an upstream was reached"
    );
}

#[tokio::test]
async fn prefixes_are_stripped_and_replaced() {
    let s = setup().await;
    for proto in [Proto::H1, Proto::H2] {
        let mut c = s.conn(proto).await;
        for (path, upstream, want) in [
            ("/files/a/b.txt?dl=1", "files", "/a/b.txt?dl=1"),
            ("/files", "files", "/"),
            ("/old/users/7?x=y", "v1", "/new/users/7?x=y"),
            ("/old", "v1", "/new/"),
        ] {
            assert_eq!(
                s.reached(&mut c, Method::GET, "plain.test", path, &[])
                    .await,
                upstream
            );
            let seen = s.ups[upstream].last();
            assert_eq!(
                seen.uri.path_and_query().unwrap().as_str(),
                want,
                "{proto:?} {path}"
            );
        }
    }
}

/// The Host an upstream (HTTP/1.1 here) received.
fn host_of(u: &Upstream) -> String {
    u.last().headers["host"].to_str().unwrap().to_string()
}

#[tokio::test]
async fn host_is_rewritten_or_replaced_by_the_endpoint() {
    let s = setup().await;
    for proto in [Proto::H1, Proto::H2] {
        let mut c = s.conn(proto).await;
        s.reached(&mut c, Method::GET, "shop.test:8080", "/rewrite/x", &[])
            .await;
        assert_eq!(host_of(&s.ups["rewrite"]), "internal.svc");
        // The client's Host is still reported.
        assert_eq!(
            s.ups["rewrite"].last().headers["x-forwarded-host"],
            "shop.test:8080"
        );

        s.reached(&mut c, Method::GET, "shop.test:8080", "/nohost", &[])
            .await;
        assert_eq!(host_of(&s.ups["nohost"]), s.ups["nohost"].addr.to_string());

        s.reached(&mut c, Method::GET, "shop.test:8080", "/exact", &[])
            .await;
        assert_eq!(
            host_of(&s.ups["exact"]),
            "shop.test:8080",
            "preserved by default"
        );
    }
}

#[tokio::test]
async fn respond_and_redirect_actions_answer_locally() {
    let s = setup().await;
    for proto in [Proto::H1, Proto::H2] {
        let mut c = s.conn(proto).await;
        let (status, body, headers) = s
            .call(&mut c, Method::GET, "plain.test", "/teapot", &[])
            .await;
        assert_eq!(status, 418);
        assert_eq!(body, "short and stout");
        assert_eq!(headers["x-pot"], "1");
        assert!(headers.contains_key("x-request-id"));

        let (status, _, headers) = s
            .call(&mut c, Method::GET, "plain.test", "/moved/a/b?page=2", &[])
            .await;
        assert_eq!(status, 301);
        assert_eq!(
            headers["location"],
            "https://new.example.com/moved/a/b?page=2"
        );
    }
    assert!(
        s.ups.values().all(|u| u.count() == 0),
        "an upstream was reached"
    );
}

#[tokio::test]
async fn host_rules_hold_towards_an_http2_upstream() {
    let opts = gatehouse_test_support::UpstreamOptions {
        http2_only: true,
        tls: None,
    };
    let up = Upstream::start(opts, |_req| async {
        http::Response::new(gatehouse_test_support::full("h2"))
    })
    .await;
    let text = format!(
        "{QUIET}[[listeners]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\n\
         [[routes]]\nname = \"rw\"\nupstream = \"h2\"\nmatch.prefix = \"/rw\"\nhost_rewrite = \"internal.svc\"\n\
         [[routes]]\nname = \"ep\"\nupstream = \"h2\"\nmatch.prefix = \"/ep\"\npreserve_host = false\n\
         [[routes]]\nname = \"keep\"\nupstream = \"h2\"\nstrip_prefix = \"/keep\"\nmatch.prefix = \"/keep\"\n\
         [[upstreams]]\nname = \"h2\"\nendpoints = [\"{}\"]\nprotocol = \"http2\"\n",
        up.addr
    );
    let gw = TestGateway::start(&text).await;
    for proto in [Proto::H1, Proto::H2] {
        let mut c = Conn::plain(gw.addr("web"), proto).await;
        for (path, want_authority, want_path) in [
            ("/rw/a?b=1", "internal.svc".to_string(), "/rw/a?b=1"),
            ("/ep/a", up.addr.to_string(), "/ep/a"),
            ("/keep/z", "shop.test:8080".to_string(), "/z"),
        ] {
            let req = c
                .request_to(Method::GET, "shop.test:8080", path)
                .body(empty())
                .unwrap();
            let (parts, body) = c.fetch(req).await;
            assert_eq!(parts.status, 200, "{body:?}");
            let seen = up.last();
            assert_eq!(seen.version, http::Version::HTTP_2);
            assert_eq!(
                seen.uri.authority().unwrap().as_str(),
                want_authority,
                "{proto:?} {path}"
            );
            assert_eq!(seen.uri.path_and_query().unwrap().as_str(), want_path);
            assert!(
                !seen.headers.contains_key("host"),
                "Host sent beside :authority"
            );
            assert_eq!(seen.headers["x-forwarded-host"], "shop.test:8080");
        }
    }
}
