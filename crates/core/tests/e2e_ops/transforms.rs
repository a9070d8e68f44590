//! Body mediation end to end: JSON transforms on requests and responses (golden files in
//! `golden/`), templates, what passes untouched and unbuffered (a non-JSON event stream),
//! a broken upstream document, status mapping and error pages with the upstream
//! connection kept, and fault injection.

use super::{config, echo};
use gatehouse_test_support::upstream::{channel_body, full};
use gatehouse_test_support::{TestGateway, Upstream};
use serde_json::Value;
use std::time::Duration;

fn golden(name: &str) -> Value {
    let path = format!("{}/tests/e2e_ops/golden/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

const REQUEST_JSON: &str = r#"auth = { methods = ["api_key"] }

[routes.transform.request_json]
unwrap = "/data"
rename = { "/user_name" = "username" }
move = [{ from = "/address/zip", to = "/postcode" }, { from = "/address", to = "/location" }]
remove = ["/password"]
add = { "/plan" = "pro" }
set = { "/source" = "gateway", "/meta/client" = "{client_ip}", "/meta/route" = "{route}", "/meta/consumer" = "{consumer}", "/meta/ua" = "{header.user-agent}" }
wrap = "payload"
"#;

#[tokio::test]
async fn a_request_body_is_transformed_as_the_golden_file_says() {
    let up = echo().await;
    let cfg = config(up.addr, REQUEST_JSON, "")
        + "\n[[consumers]]\nname = \"acme\"\napi_keys = [\"k-1\"]\n";
    let gw = TestGateway::start(&cfg).await;
    let input = std::fs::read(format!(
        "{}/tests/e2e_ops/golden/request.in.json",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let resp = reqwest::Client::new()
        .post(gw.url("web", "/users"))
        .header("content-type", "application/json")
        .header("x-api-key", "k-1")
        .header("user-agent", "golden/1")
        .body(input)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let sent = resp.bytes().await.unwrap();
    assert_eq!(
        serde_json::from_slice::<Value>(&sent).unwrap(),
        golden("request.out.json")
    );
    assert_eq!(up.last().headers["content-length"], sent.len().to_string());
}

#[tokio::test]
async fn a_response_body_is_transformed_as_the_golden_file_says() {
    let body = std::fs::read(format!(
        "{}/tests/e2e_ops/golden/response.in.json",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let up = Upstream::start(Default::default(), move |_req| {
        let body = body.clone();
        async move {
            http::Response::builder()
                .header("content-type", "application/json; charset=utf-8")
                .header("etag", "\"v1\"")
                .body(full(body))
                .unwrap()
        }
    })
    .await;
    let extra = r#"[routes.transform.response_json]
unwrap = "/result"
remove = ["/items/0/internal_cost", "/debug"]
rename = { "/total" = "count" }
set = { "/api_version" = "2" }
"#;
    let gw = TestGateway::start(&config(up.addr, extra, "")).await;
    let c = reqwest::Client::new();
    for _ in 0..3 {
        let resp = c.get(gw.url("web", "/items")).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(
            resp.headers()["etag"],
            "W/\"v1\"",
            "a changed body keeps only a weak validator"
        );
        let len: usize = resp.headers()["content-length"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        let got = resp.bytes().await.unwrap();
        assert_eq!(got.len(), len);
        assert_eq!(
            serde_json::from_slice::<Value>(&got).unwrap(),
            golden("response.out.json")
        );
    }
    // The bodies were read to their end, so one connection served all three.
    assert_eq!(up.connections(), 1);
}

#[tokio::test]
async fn what_is_not_json_streams_past_a_json_transform() {
    let (tx, rx) = tokio::sync::mpsc::channel::<tokio::sync::mpsc::Sender<bytes::Bytes>>(1);
    let up = Upstream::start(Default::default(), move |_req| {
        let tx = tx.clone();
        async move {
            let (events, body) = channel_body();
            tx.send(events).await.unwrap();
            http::Response::builder()
                .header("content-type", "text/event-stream")
                .body(body)
                .unwrap()
        }
    })
    .await;
    let extra = r#"transform = { response_json = { set = { "/x" = 1 } } }"#;
    let gw = TestGateway::start(&config(up.addr, extra, "")).await;
    let mut resp = reqwest::get(gw.url("web", "/events")).await.unwrap();
    let mut rx = rx;
    let events = rx.recv().await.unwrap();
    events
        .send(bytes::Bytes::from_static(b"data: one\n\n"))
        .await
        .unwrap();
    // The first event arrives while the upstream's body is still open.
    let first = tokio::time::timeout(Duration::from_secs(10), resp.chunk())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.unwrap(), "data: one\n\n");
    drop(events);
}

#[tokio::test]
async fn an_upstream_document_that_does_not_parse_gets_502() {
    let up = Upstream::start(Default::default(), |_req| async {
        http::Response::builder()
            .header("content-type", "application/json")
            .body(full("{\"half\": "))
            .unwrap()
    })
    .await;
    let extra = r#"transform = { response_json = { remove = ["/half"] } }"#;
    let gw = TestGateway::start(&config(up.addr, extra, "")).await;
    let resp = reqwest::get(gw.url("web", "/")).await.unwrap();
    assert_eq!(resp.status(), 502);
    let reply: Value = resp.json().await.unwrap();
    assert_eq!(reply["error"], "upstream_protocol_error");
    assert!(reply["request_id"].is_string());
    // A request body that says JSON and is not gets 400.
    let extra = r#"transform = { request_json = { remove = ["/x"] } }"#;
    let gw = TestGateway::start(&config(up.addr, extra, "")).await;
    let resp = reqwest::Client::new()
        .post(gw.url("web", "/"))
        .header("content-type", "application/json")
        .body("not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
}

#[tokio::test]
async fn an_upstream_body_over_the_buffer_limit_gets_502() {
    let up = Upstream::start(Default::default(), |_req| async {
        let big = format!("{{\"x\": \"{}\"}}", "y".repeat(4096));
        http::Response::builder()
            .header("content-type", "application/json")
            .body(full(big))
            .unwrap()
    })
    .await;
    let extra = "body_buffer_limit = 1024\ntransform = { response_json = { remove = [\"/x\"] } }";
    let gw = TestGateway::start(&config(up.addr, extra, "")).await;
    let resp = reqwest::get(gw.url("web", "/")).await.unwrap();
    assert_eq!(resp.status(), 502);
}

#[tokio::test]
async fn statuses_are_mapped_and_error_pages_replace_bodies() {
    let up = Upstream::start(Default::default(), |req| async move {
        let status = req
            .uri()
            .path()
            .trim_start_matches('/')
            .parse::<u16>()
            .unwrap_or(200);
        http::Response::builder()
            .status(status)
            .header("content-type", "text/plain")
            .body(full(format!("upstream says {status}")))
            .unwrap()
    })
    .await;
    let extra = r#"status_map = { "404" = 410, "418" = 400 }

[routes.error_pages.410]
body = "<h1>Gone for good</h1>"

[routes.error_pages.5xx]
body = '{"error": "try later"}'
content_type = "application/json"
"#;
    let gw = TestGateway::start(&config(up.addr, extra, "")).await;
    let c = reqwest::Client::new();
    let get = |p: &'static str| c.get(gw.url("web", p)).send();
    let gone = get("/404").await.unwrap();
    assert_eq!(gone.status(), 410);
    assert_eq!(gone.headers()["content-type"], "text/html; charset=utf-8");
    assert_eq!(gone.text().await.unwrap(), "<h1>Gone for good</h1>");
    let teapot = get("/418").await.unwrap();
    assert_eq!(teapot.status(), 400);
    assert_eq!(
        teapot.text().await.unwrap(),
        "upstream says 418",
        "no page for 400"
    );
    for s in ["/500", "/503"] {
        let r = get(s).await.unwrap();
        assert_eq!(r.status().as_u16(), s[1..].parse::<u16>().unwrap());
        assert_eq!(r.headers()["content-type"], "application/json");
        assert_eq!(r.text().await.unwrap(), r#"{"error": "try later"}"#);
    }
    let ok = get("/200").await.unwrap();
    assert_eq!(ok.text().await.unwrap(), "upstream says 200");
    assert_eq!(
        up.connections(),
        1,
        "the replaced bodies were read to their end"
    );
    // Gatehouse's own 502 for an upstream that is gone gets the page too.
    up.kill();
    let down = get("/200").await.unwrap();
    assert_eq!(down.status(), 502);
    assert!(down.headers().contains_key("x-request-id"));
    assert_eq!(down.text().await.unwrap(), r#"{"error": "try later"}"#);
}

#[tokio::test]
async fn faults_abort_and_delay_the_share_asked_for() {
    let up = Upstream::fixed("ok").await;
    let extra =
        r#"fault = { abort = { percent = 100, status = 503 }, only_with_header = "x-chaos" }"#;
    let gw = TestGateway::start(&config(up.addr, extra, "")).await;
    let c = reqwest::Client::new();
    let plain = c.get(gw.url("web", "/")).send().await.unwrap();
    assert_eq!(plain.status(), 200, "no header, no fault");
    let hit = c
        .get(gw.url("web", "/"))
        .header("x-chaos", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(hit.status(), 503);
    let reply: Value = hit.json().await.unwrap();
    assert_eq!(reply["error"], "fault_injected");
    assert_eq!(up.count(), 1);

    let extra = r#"fault = { abort = { percent = 50, status = 500 } }"#;
    let gw = TestGateway::start(&config(up.addr, extra, "")).await;
    let mut aborted = 0;
    for _ in 0..400 {
        if c.get(gw.url("web", "/")).send().await.unwrap().status() == 500 {
            aborted += 1;
        }
    }
    // Binomial(400, 0.5): 200 +- 20 is one standard deviation; 60 is six.
    assert!((140..=260).contains(&aborted), "{aborted} of 400 aborted");

    let extra = r#"fault = { delay = { percent = 100, duration = "300ms" } }"#;
    let gw = TestGateway::start(&config(up.addr, extra, "")).await;
    let t = std::time::Instant::now();
    let slow = c.get(gw.url("web", "/")).send().await.unwrap();
    assert_eq!(slow.status(), 200);
    assert!(
        t.elapsed() >= Duration::from_millis(300),
        "{:?}",
        t.elapsed()
    );
}

#[tokio::test]
async fn paths_are_rewritten_from_captures_and_queries_edited() {
    let up = Upstream::fixed("ok").await;
    let gw = TestGateway::start(&format!(
        r#"
[[listeners]]
name = "web"
listen = "127.0.0.1:0"

[[routes]]
name = "users"
match = {{ path = "/users/{{id}}/{{rest*}}" }}
upstream = "backend"
rewrite = {{ path = "/v2/accounts/{{id}}/{{rest}}", query = {{ remove = ["debug"], rename = {{ q = "search" }}, set = {{ src = "gw {{route}}" }}, add = {{ tag = "{{id}}" }} }} }}

[[routes]]
name = "orders"
match = {{ prefix = "/shop" }}
upstream = "backend"
rewrite = {{ regex = '^/shop/(?P<year>\d{{4}})/(\d+)$', path = "/archive/{{2}}?y={{year}}" }}

[[upstreams]]
name = "backend"
endpoints = ["{}"]
"#,
        up.addr
    ))
    .await;
    let c = reqwest::Client::new();
    let r = c
        .get(gw.url("web", "/users/42/posts/7?q=cats&debug=1&src=client"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        up.last().uri.to_string(),
        "/v2/accounts/42/posts/7?search=cats&src=gw+users&tag=42"
    );
    c.get(gw.url("web", "/shop/2024/991")).send().await.unwrap();
    assert_eq!(up.last().uri.to_string(), "/archive/991?y=2024");
    // A path the regex does not match goes as it came.
    c.get(gw.url("web", "/shop/latest")).send().await.unwrap();
    assert_eq!(up.last().uri.to_string(), "/shop/latest");
}

#[tokio::test]
async fn header_values_may_be_templates() {
    let up = Upstream::fixed("ok").await;
    let extra = r#"request_headers = { set = { "x-client" = "{client_ip}", "x-trace" = "{route}/{request_id}", "x-page" = "p{query.page}", "x-literal" = "{{json}}" } }
response_headers = { set = { "x-served-for" = "{client_ip}", "x-type" = "was {header.content-length}" } }"#;
    let gw = TestGateway::start(&config(up.addr, extra, "")).await;
    let resp = reqwest::Client::new()
        .get(gw.url("web", "/a?page=3"))
        .header("x-request-id", "abc123")
        .send()
        .await
        .unwrap();
    let seen = up.last();
    assert_eq!(seen.headers["x-client"], "127.0.0.1");
    assert_eq!(seen.headers["x-trace"], "api/abc123");
    assert_eq!(seen.headers["x-page"], "p3");
    assert_eq!(seen.headers["x-literal"], "{json}");
    assert_eq!(resp.headers()["x-served-for"], "127.0.0.1");
    assert_eq!(resp.headers()["x-type"], "was 2");
}

#[tokio::test]
async fn response_templates_see_the_consumer_auth_found() {
    let up = serving(r#"{"total": 3}"#.into(), "application/json").await;
    let extra = r#"auth = { methods = ["api_key"] }
response_headers = { set = { "x-served-to" = "{consumer}" } }
transform = { response_json = { set = { "/for" = "{consumer}" } } }"#;
    let cfg =
        config(up.addr, extra, "") + "\n[[consumers]]\nname = \"acme\"\napi_keys = [\"k-1\"]\n";
    let gw = TestGateway::start(&cfg).await;
    let resp = reqwest::Client::new()
        .get(gw.url("web", "/orders"))
        .header("x-api-key", "k-1")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-served-to"], "acme");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body, serde_json::json!({"total": 3, "for": "acme"}));
}

#[tokio::test]
async fn header_values_may_name_the_path_parameters() {
    let up = Upstream::fixed("ok").await;
    // The parameters of the client's path, though the upstream's path is stripped.
    let extra = r#"match = { path = "/tenants/{tenant}/files/{rest*}" }
strip_prefix = "/tenants"
request_headers = { set = { "x-tenant" = "{tenant}", "x-file" = "f:{rest}" } }"#;
    let gw = TestGateway::start(&config(up.addr, extra, "")).await;
    reqwest::get(gw.url("web", "/tenants/acme/files/a/b.txt"))
        .await
        .unwrap();
    let seen = up.last();
    assert_eq!(seen.uri.path(), "/acme/files/a/b.txt");
    assert_eq!(seen.headers["x-tenant"], "acme");
    assert_eq!(seen.headers["x-file"], "f:a/b.txt");
}

fn golden_text(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/tests/e2e_ops/golden/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

/// An upstream answering `body` with `content_type`.
async fn serving(body: String, content_type: &'static str) -> Upstream {
    Upstream::start(Default::default(), move |_req| {
        let body = body.clone();
        async move {
            http::Response::builder()
                .header("content-type", content_type)
                .body(full(body))
                .unwrap()
        }
    })
    .await
}

#[tokio::test]
async fn an_xml_upstream_answers_json_as_the_golden_file_says() {
    let up = serving(golden_text("soap.in.xml"), "text/xml; charset=utf-8").await;
    let extra = r#"transform = { response_body = "xml_to_json" }"#;
    let gw = TestGateway::start(&config(up.addr, extra, "")).await;
    let resp = reqwest::get(gw.url("web", "/orders/7")).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/json");
    let len: usize = resp.headers()["content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let got = resp.bytes().await.unwrap();
    assert_eq!(got.len(), len);
    assert_eq!(
        serde_json::from_slice::<Value>(&got).unwrap(),
        golden("soap.out.json")
    );
}

#[tokio::test]
async fn a_json_request_reaches_an_xml_upstream_as_the_golden_file_says() {
    let up = echo().await;
    let extra = r#"transform = { request_body = "json_to_xml" }"#;
    let gw = TestGateway::start(&config(up.addr, extra, "")).await;
    let resp = reqwest::Client::new()
        .post(gw.url("web", "/orders"))
        .header("content-type", "application/json")
        .body(golden_text("order.in.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        up.last().headers["content-type"],
        "application/xml; charset=utf-8"
    );
    assert_eq!(resp.text().await.unwrap(), golden_text("order.out.xml"));
}

#[tokio::test]
async fn xml_from_a_client_is_edited_as_json_and_answered_as_xml() {
    // Client XML -> JSON -> edited -> upstream; the upstream's JSON -> XML for the client.
    let up = echo().await;
    let extra = r#"[routes.transform]
request_body = "xml_to_json"
request_json = { unwrap = "/req", set = { "/via" = "gateway" } }
response_body = "json_to_xml"
xml_root = "reply"
"#;
    let gw = TestGateway::start(&config(up.addr, extra, "")).await;
    let resp = reqwest::Client::new()
        .post(gw.url("web", "/rpc"))
        .header("content-type", "application/xml")
        .body(r#"<req><op>sum</op><arg>1</arg><arg>2</arg></req>"#)
        .send()
        .await
        .unwrap();
    assert_eq!(up.last().headers["content-type"], "application/json");
    assert_eq!(
        resp.headers()["content-type"],
        "application/xml; charset=utf-8"
    );
    assert_eq!(
        resp.text().await.unwrap(),
        r#"<?xml version="1.0" encoding="UTF-8"?><reply><arg>1</arg><arg>2</arg><op>sum</op><via>gateway</via></reply>"#
    );
}

#[tokio::test]
async fn malformed_and_hostile_xml_is_refused() {
    let up = serving("<order><id>7</order>".into(), "application/xml").await;
    let extra = r#"transform = { request_body = "xml_to_json", response_body = "xml_to_json" }"#;
    let gw = TestGateway::start(&config(up.addr, extra, "")).await;
    let c = reqwest::Client::new();
    let resp = c.get(gw.url("web", "/")).send().await.unwrap();
    assert_eq!(resp.status(), 502, "a broken upstream document");
    let reply: Value = resp.json().await.unwrap();
    assert!(
        reply["message"]
            .as_str()
            .unwrap()
            .contains("could not be converted"),
        "{reply}"
    );
    for bad in [
        "<a><b></a>",
        r#"<!DOCTYPE x [<!ENTITY big "boom">]><x>&big;</x>"#,
        "not xml at all",
    ] {
        let resp = c
            .post(gw.url("web", "/"))
            .header("content-type", "application/xml")
            .body(bad)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "{bad}");
    }
    assert_eq!(up.count(), 1, "only the GET reached the upstream");
}
