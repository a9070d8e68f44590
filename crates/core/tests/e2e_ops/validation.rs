//! Request validation end to end: JSON Schema (2020-12 and draft 7) on bodies, with
//! every violation listed by JSON Pointer; query parameters and headers read as their
//! declared types; malformed and oversized bodies; report-only response validation,
//! logged and counted; a validation on a locally answered route.

use super::{config, echo};
use gatehouse_test_support::upstream::full;
use gatehouse_test_support::{TestGateway, Upstream};
use serde_json::Value;

const ORDER: &str = r#"[routes.validate.body]
type = "object"
required = ["customer", "items"]
additionalProperties = false
properties.customer = { type = "string", minLength = 1 }
properties.note = { type = "string", maxLength = 20 }
properties.items = { type = "array", minItems = 1, items = { type = "object", required = ["sku", "price"], properties = { sku = { type = "string" }, price = { type = "number", minimum = 0 } } } }
"#;

async fn post(gw: &TestGateway, body: &str) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .post(gw.url("web", "/orders"))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

#[tokio::test]
async fn a_valid_body_goes_upstream_as_sent() {
    let up = echo().await;
    let gw = TestGateway::start(&config(up.addr, ORDER, "")).await;
    let body = r#"{"customer":"ada","items":[{"sku":"a-1","price":2.5}]}"#;
    let (status, echoed) = post(&gw, body).await;
    assert_eq!(status, 200);
    assert_eq!(echoed, serde_json::from_str::<Value>(body).unwrap());
    assert_eq!(up.last().headers["content-length"], body.len().to_string());
}

#[tokio::test]
async fn an_invalid_body_gets_400_listing_every_violation() {
    let up = echo().await;
    let gw = TestGateway::start(&config(up.addr, ORDER, "")).await;
    let body = r#"{"customer":"","items":[{"sku":"a","price":1},{"sku":"b","price":2},{"sku":"c","price":-1},{"price":3}],"extra":1}"#;
    let (status, reply) = post(&gw, body).await;
    assert_eq!(status, 400);
    assert_eq!(reply["error"], "invalid_request");
    assert!(reply["request_id"].as_str().is_some_and(|s| !s.is_empty()));
    let mut at: Vec<&str> = reply["violations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            assert_eq!(v["in"], "body");
            v["at"].as_str().unwrap()
        })
        .collect();
    at.sort();
    assert_eq!(
        at,
        ["", "/customer", "/items/2/price", "/items/3/sku"],
        "{reply}"
    );
    let price = reply["violations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["at"] == "/items/2/price")
        .unwrap();
    assert!(
        price["error"].as_str().unwrap().contains("minimum of 0"),
        "{price}"
    );
    assert_eq!(up.count(), 0);
}

#[tokio::test]
async fn malformed_missing_and_mistyped_bodies_are_refused() {
    let up = echo().await;
    let gw = TestGateway::start(&config(up.addr, ORDER, "")).await;
    let (status, reply) = post(&gw, r#"{"customer": "ada", "items": [}"#).await;
    assert_eq!(status, 400);
    assert!(reply["violations"][0]["error"]
        .as_str()
        .unwrap()
        .contains("not valid JSON"));
    let c = reqwest::Client::new();
    let empty = c.post(gw.url("web", "/orders")).send().await.unwrap();
    assert_eq!(empty.status(), 400, "a POST must carry the body");
    let text = c
        .post(gw.url("web", "/orders"))
        .header("content-type", "text/plain")
        .body("customer=ada")
        .send()
        .await
        .unwrap();
    assert_eq!(text.status(), 400);
    // A GET carries no content and passes.
    let get = c.get(gw.url("web", "/orders")).send().await.unwrap();
    assert_eq!(get.status(), 200);
    assert_eq!(up.count(), 1);
}

#[tokio::test]
async fn a_body_over_the_buffer_limit_gets_413() {
    let up = echo().await;
    let route = format!("body_buffer_limit = \"1KiB\"\n{ORDER}");
    let gw = TestGateway::start(&config(up.addr, &route, "")).await;
    let note = "x".repeat(2000);
    let body = format!(r#"{{"customer":"ada","items":[{{"sku":"a","price":1}}],"note":"{note}"}}"#);
    let (status, reply) = post(&gw, &body).await;
    assert_eq!(status, 413, "{reply}");
    // Sent chunked (no Content-Length up front), it is refused as it arrives.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(4);
    tokio::spawn(async move {
        for _ in 0..4 {
            let _ = tx.send(Ok(bytes::Bytes::from(vec![b' '; 512]))).await;
        }
    });
    let resp = reqwest::Client::new()
        .post(gw.url("web", "/orders"))
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(tokio_stream_of(rx)))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    assert_eq!(up.count(), 0);
}

fn tokio_stream_of(
    mut rx: tokio::sync::mpsc::Receiver<Result<bytes::Bytes, std::io::Error>>,
) -> impl futures_util::Stream<Item = Result<bytes::Bytes, std::io::Error>> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

#[tokio::test]
async fn query_parameters_and_headers_are_read_as_their_declared_types() {
    let up = echo().await;
    let extra = r#"[routes.validate.query]
type = "object"
required = ["page"]
properties.page = { type = "integer", minimum = 1 }
properties.sort = { enum = ["asc", "desc"] }
properties.tag = { type = "array", items = { type = "string", maxLength = 5 } }
properties.exact = { type = "boolean" }

[routes.validate.headers]
type = "object"
required = ["x-tenant"]
properties.x-tenant = { type = "string", pattern = "^[a-z]+$" }
properties.x-count = { type = "integer" }
"#;
    let gw = TestGateway::start(&config(up.addr, extra, "")).await;
    let c = reqwest::Client::new();
    let get = |q: &str, tenant: &str| {
        c.get(gw.url("web", &format!("/list?{q}")))
            .header("x-tenant", tenant)
            .header("x-count", "3")
            .send()
    };
    let ok = get("page=2&sort=asc&tag=a&tag=bb&exact=true", "acme")
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let bad = get("page=0&sort=up&tag=toolong&exact=maybe", "ACME")
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let reply: Value = bad.json().await.unwrap();
    let mut found: Vec<(String, String)> = reply["violations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["in"].as_str().unwrap().into(),
                v["at"].as_str().unwrap().into(),
            )
        })
        .collect();
    found.sort();
    let want = [
        ("header", "/x-tenant"),
        ("query", "/exact"),
        ("query", "/page"),
        ("query", "/sort"),
        ("query", "/tag/0"),
    ];
    assert_eq!(
        found,
        want.map(|(a, b)| (a.to_string(), b.to_string())),
        "{reply}"
    );
    let missing = c.get(gw.url("web", "/list")).send().await.unwrap();
    assert_eq!(missing.status(), 400);
    assert_eq!(up.count(), 1);
}

#[tokio::test]
async fn draft_7_schemas_are_read_as_draft_7() {
    let up = echo().await;
    // `definitions` with `$ref` and a tuple `items` array are draft 7 forms.
    let extra = r##"[routes.validate.body]
"$schema" = "http://json-schema.org/draft-07/schema#"
definitions.point = { type = "array", items = [{ type = "number" }, { type = "number" }], additionalItems = false }
type = "object"
properties.at = { "$ref" = "#/definitions/point" }
"##;
    let gw = TestGateway::start(&config(up.addr, extra, "")).await;
    assert_eq!(post(&gw, r#"{"at":[1,2]}"#).await.0, 200);
    let (status, reply) = post(&gw, r#"{"at":[1,2,3]}"#).await;
    assert_eq!(status, 400);
    assert_eq!(reply["violations"][0]["at"], "/at", "{reply}");
    let (status, reply) = post(&gw, r#"{"at":[1,"x"]}"#).await;
    assert_eq!(status, 400);
    assert_eq!(reply["violations"][0]["at"], "/at/1", "{reply}");
}

#[tokio::test]
async fn response_validation_reports_and_never_refuses() {
    let up = Upstream::start(Default::default(), |req| async move {
        let body = if req.uri().path() == "/good" {
            r#"{"id": 1}"#
        } else {
            r#"{"id": "one"}"#
        };
        http::Response::builder()
            .header("content-type", "application/json")
            .body(full(body))
            .unwrap()
    })
    .await;
    let extra = r#"validate = { response_body = { type = "object", properties = { id = { type = "integer" } } } }"#;
    let gw = TestGateway::start(&config(up.addr, extra, "")).await;
    let c = reqwest::Client::new();
    let good = c.get(gw.url("web", "/good")).send().await.unwrap();
    assert_eq!(good.text().await.unwrap(), r#"{"id": 1}"#);
    let bad = c.get(gw.url("web", "/bad")).send().await.unwrap();
    assert_eq!(bad.status(), 200);
    assert_eq!(bad.text().await.unwrap(), r#"{"id": "one"}"#);
    let metrics = c
        .get(gw.admin_url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"gatehouse_validation_failures_total{route="api",side="response"} 1"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_local_route_validates_before_it_answers() {
    let gw = TestGateway::start(
        r#"
[[listeners]]
name = "web"
listen = "127.0.0.1:0"

[[routes]]
name = "mock"
respond = { status = 201, body = "created" }
validate = { body = { type = "object", required = ["name"] } }
"#,
    )
    .await;
    let (status, _) = post(&gw, r#"{"name":"x"}"#).await;
    assert_eq!(status, 201);
    let (status, reply) = post(&gw, r#"{"nom":"x"}"#).await;
    assert_eq!(status, 400);
    assert_eq!(reply["violations"][0]["at"], "/name");
}
