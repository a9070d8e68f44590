//! OpenAPI import end to end: the documents in `openapi/` (a petstore-like 3.0 one, a
//! 3.1 one with `$ref`s, `oneOf` and a recursive schema) are imported, the fragment
//! checked as config, and requests that pass and fail the validation it made are sent
//! through a gateway to a real upstream.

use gatehouse_config::openapi::{import, parse, ImportOptions};
use gatehouse_test_support::tokens::SigningKey;
use gatehouse_test_support::{TestGateway, Upstream};
use serde_json::{json, Value};

fn spec(name: &str) -> Value {
    let path = format!(
        "{}/tests/e2e_ops/openapi/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    parse(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn fragment(name: &str) -> String {
    let opts = ImportOptions {
        upstream: "backend".into(),
        name_prefix: String::new(),
    };
    import(&spec(name), &opts).unwrap().toml
}

fn gateway_config(fragment: &str, upstream: std::net::SocketAddr, extra: &str) -> String {
    format!(
        r#"
[access_log]
enabled = false

[[listeners]]
name = "web"
listen = "127.0.0.1:0"

[[upstreams]]
name = "backend"
endpoints = ["{upstream}"]

{extra}
{fragment}"#
    )
}

fn violations(body: &Value) -> Vec<String> {
    let mut at: Vec<String> = body["violations"]
        .as_array()
        .unwrap_or(&Vec::new())
        .iter()
        .map(|v| {
            format!(
                "{} {}",
                v["in"].as_str().unwrap(),
                v["at"].as_str().unwrap()
            )
        })
        .collect();
    at.sort();
    at
}

#[tokio::test]
async fn a_petstore_3_0_document_becomes_routes_that_validate() {
    let text = fragment("petstore-3.0.yaml");
    assert!(text.contains("name = \"createPet\""), "{text}");
    let up = Upstream::fixed("ok").await;
    let keys = "[[consumers]]\nname = \"app\"\napi_keys = [\"k-1\"]\n";
    let gw = TestGateway::start(&gateway_config(&text, up.addr, keys)).await;
    let c = reqwest::Client::new();
    let send = |r: reqwest::RequestBuilder| async move {
        let resp = r.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json::<Value>().await.unwrap_or(Value::Null))
    };
    // Query parameters, read as their declared types.
    assert_eq!(
        send(c.get(gw.url("web", "/pets?limit=10&tags=a&tags=b")))
            .await
            .0,
        200
    );
    let (status, body) = send(c.get(gw.url("web", "/pets?limit=500"))).await;
    assert_eq!(
        (status, violations(&body)),
        (400, vec!["query /limit".to_string()])
    );
    // The body of createPet, behind its API key; `nullable` and the 3.0 exclusive bound.
    let post = |b: Value| {
        c.post(gw.url("web", "/pets"))
            .header("x-api-key", "k-1")
            .json(&b)
    };
    assert_eq!(
        send(post(json!({"name": "rex", "tag": null, "age": 3})))
            .await
            .0,
        200
    );
    let (status, body) = send(post(json!({"name": "", "age": 40}))).await;
    assert_eq!(
        (status, violations(&body)),
        (400, vec!["body /age".to_string(), "body /name".to_string()])
    );
    let anonymous = c
        .post(gw.url("web", "/pets"))
        .json(&json!({"name": "rex"}))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    // A required header of deletePet; the path template routes by method.
    let (status, body) = send(c.delete(gw.url("web", "/pets/7"))).await;
    assert_eq!(
        (status, violations(&body)),
        (400, vec!["header /x-reason".to_string()])
    );
    assert_eq!(
        send(
            c.delete(gw.url("web", "/pets/7"))
                .header("x-reason", "sold")
        )
        .await
        .0,
        200
    );
    assert_eq!(send(c.get(gw.url("web", "/pets/7"))).await.0, 200);
    assert_eq!(up.count(), 4);
}

#[tokio::test]
async fn a_3_1_document_with_refs_one_of_and_recursion_validates() {
    let text = fragment("shop-3.1.yaml");
    let up = Upstream::fixed("ok").await;
    let key = SigningKey::hmac(
        "k1",
        jsonwebtoken::Algorithm::HS256,
        b"0123456789abcdef0123456789abcdef",
    );
    // The bearer scheme asks for a provider named after it.
    let extra = r#"[[consumers]]
name = "app"
api_keys = ["k-1"]

[[jwt_providers]]
name = "bearer"
keys = [{ kid = "k1", alg = "HS256", secret = "0123456789abcdef0123456789abcdef" }]
"#;
    let gw = TestGateway::start(&gateway_config(&text, up.addr, extra)).await;
    let c = reqwest::Client::new();
    let order = |b: Value| c.post(gw.url("web", "/orders?key=k-1")).json(&b).send();
    let card = json!({"items": [{"price": 2}], "payment": {"kind": "card", "number": "4111111111111111"}, "coupon": null});
    assert_eq!(order(card).await.unwrap().status(), 200);
    let transfer = json!({"items": [{"price": 2}], "payment": {"kind": "transfer", "iban": "DE89370400440532013000"}});
    assert_eq!(order(transfer).await.unwrap().status(), 200);
    // Neither branch of the oneOf fits.
    let bad = order(json!({"items": [], "payment": {"kind": "card", "number": "12"}}))
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let body: Value = bad.json().await.unwrap();
    assert_eq!(violations(&body), vec!["body /items", "body /payment"]);
    // The recursive Category schema, behind a bearer token.
    let token = key.sign(&json!({"sub": "ci", "exp": gatehouse_test_support::tokens::now() + 300}));
    let put = |b: Value| {
        c.put(gw.url("web", "/categories"))
            .bearer_auth(&token)
            .json(&b)
            .send()
    };
    let tree = json!({"name": "root", "children": [{"name": "a", "children": [{"name": "a1"}]}]});
    assert_eq!(put(tree).await.unwrap().status(), 200);
    let broken = json!({"name": "root", "children": [{"children": []}]});
    let resp = put(broken).await.unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(
        violations(&resp.json().await.unwrap()),
        vec!["body /children/0/name"]
    );
    // A parameter inside a segment is matched by a regex.
    assert_eq!(
        c.get(gw.url("web", "/files/report.json"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        c.get(gw.url("web", "/files/report.txt"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
}

#[tokio::test]
async fn what_is_not_openapi_3_is_refused() {
    let opts = ImportOptions {
        upstream: "backend".into(),
        name_prefix: String::new(),
    };
    let err = import(&spec("not-openapi.json"), &opts).err().unwrap();
    assert!(err.contains("only OpenAPI 3.0 and 3.1"), "{err}");
    assert!(parse("openapi: [unclosed").is_err());
    let dangling = parse(r##"{"openapi": "3.1.0", "paths": {"/a": {"post": {"requestBody": {"$ref": "#/nowhere"}}}}}"##).unwrap();
    assert!(import(&dangling, &opts)
        .err()
        .unwrap()
        .contains("#/nowhere"));
}
