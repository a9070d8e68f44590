//! Route matching (the index against a scan of every route) and host normalisation
//! (idempotent on the hosts the edge lets on). The input is a request head as lines:
//! `METHOD`, `host`, `path?query`, then `name: value` header lines. The route table is
//! built once from a config with every kind of match.
#![no_main]

use gatehouse_core::route::{self, RouteTable};
use libfuzzer_sys::fuzz_target;
use std::sync::LazyLock;

const ROUTES: &str = r#"
[[listeners]]
name = "web"
listen = "127.0.0.1:0"

[[routes]]
name = "exact"
match = { host = "api.example.com", path = "/users" }
respond = { status = 200 }

[[routes]]
name = "template"
match = { host = "*.example.com", path = "/users/{id}/items/{item}", method = ["GET", "PUT"] }
respond = { status = 200 }

[[routes]]
name = "prefix"
match = { prefix = "/static/", headers = [{ name = "x-a", value = "1" }], query = [{ name = "q", present = true }] }
respond = { status = 200 }

[[routes]]
name = "regex"
match = { regex = "^/v[0-9]+/(a|b)+$", headers = [{ name = "accept", regex = "json" }] }
respond = { status = 200 }

[[routes]]
name = "suffix-regex"
match = { host = "*.api.example.com", regex = ".*\\.(php|asp)" }
respond = { status = 200 }

[[routes]]
name = "rest"
match = { path = "/files/{path*}", method = "GET" }
respond = { status = 200 }

[[routes]]
name = "prefix-slash"
match = { host = "api.example.com", prefix = "/users/" }
respond = { status = 200 }

[[routes]]
name = "any"
respond = { status = 404 }
"#;

static TABLE: LazyLock<RouteTable<String>> = LazyLock::new(|| {
    let spec = gatehouse_config::load(ROUTES, "fuzz.toml", gatehouse_config::Format::Toml)
        .unwrap_or_else(|e| panic!("the fuzz routes are invalid: {e:?}"));
    RouteTable::new(spec.routes.into_iter().map(|r| (r.matcher, r.name)).collect())
});

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.split('\n');
    let method = http::Method::from_bytes(lines.next().unwrap_or("GET").as_bytes())
        .unwrap_or(http::Method::GET);
    let raw_host = lines.next().unwrap_or("");
    let target = lines.next().unwrap_or("/");
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    let mut headers = http::HeaderMap::new();
    for l in lines {
        if let Some((n, v)) = l.split_once(':') {
            if let (Ok(n), Ok(v)) = (
                http::HeaderName::from_bytes(n.trim().as_bytes()),
                http::HeaderValue::from_str(v.trim()),
            ) {
                headers.append(n, v);
            }
        }
    }
    let host = route::normalize_host(raw_host);
    // The edge lets only valid hosts reach routing; for those, normalising is idempotent.
    if gatehouse_core::http::edge::valid_host(raw_host.as_bytes()) {
        assert_eq!(route::normalize_host(&host), host, "normalising twice changed {raw_host:?}");
    }
    let head = route::head(&method, &host, path, query, &headers);
    // The index must give what a scan of every route against the precedence rules gives.
    assert_eq!(TABLE.find(&head), TABLE.find_by_scan(&head), "{method} {host}{target}");
});
