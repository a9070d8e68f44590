//! OpenAPI end to end: the documents in `openapi/` (a petstore-like 3.0 one, a 3.1 one
//! with `$ref`s, `oneOf` and a recursive schema) are imported, the fragment checked as
//! config, and requests that pass and fail the validation it made are sent through a
//! gateway to a real upstream; and a route that names a document (`openapi = FILE`)
//! validates by it, follows its edits on reload, and refuses a bad one whole.

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
    // The path parameter is read as the integer it is declared.
    let (status, body) = send(c.get(gw.url("web", "/pets/seven"))).await;
    assert_eq!(
        (status, violations(&body)),
        (400, vec!["path /petId".to_string()])
    );
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

/// A document for a route's `openapi` key, below a server base path.
const INVENTORY: &str = r#"
openapi: 3.1.0
info: { title: Inventory, version: "1" }
servers: [ { url: "https://api.example.com/v1" } ]
paths:
  /items:
    get:
      parameters:
        - { name: limit, in: query, schema: { type: integer, maximum: 50 } }
    post:
      requestBody:
        required: true
        content:
          application/json:
            schema:
              type: object
              required: [sku]
              properties: { sku: { type: string, pattern: "^[A-Z]{3}-[0-9]+$" } }
  /items/mine:
    get: {}
  /items/{id}:
    parameters:
      - { name: id, in: path, required: true, schema: { type: integer, minimum: 1 } }
    get: {}
    delete: {}
"#;

fn document_route(upstream: std::net::SocketAddr, file: &std::path::Path) -> String {
    gateway_config(
        &format!(
            "[[routes]]\nname = \"inventory\"\nmatch.prefix = \"/v1\"\nupstream = \"backend\"\nopenapi = \"{}\"\n",
            file.display()
        ),
        upstream,
        "",
    )
}

#[tokio::test]
async fn a_route_naming_a_document_validates_by_its_operations() {
    let file = gatehouse_test_support::temp_path("openapi", "inventory.yaml");
    std::fs::write(&file, INVENTORY).unwrap();
    let up = Upstream::fixed("ok").await;
    let gw = TestGateway::start(&document_route(up.addr, &file)).await;
    let c = reqwest::Client::new();
    let status = |r: reqwest::RequestBuilder| async move {
        let resp = r.send().await.unwrap();
        let s = resp.status().as_u16();
        let allow = resp
            .headers()
            .get("allow")
            .map(|v| v.to_str().unwrap().to_string());
        (s, allow, resp.json::<Value>().await.unwrap_or(Value::Null))
    };
    // Paths are below the server URL's `/v1`; the upstream sees the client's path.
    assert_eq!(
        status(c.get(gw.url("web", "/v1/items?limit=5"))).await.0,
        200
    );
    assert_eq!(up.last().uri.path(), "/v1/items");
    let (s, _, body) = status(c.get(gw.url("web", "/v1/items?limit=500"))).await;
    assert_eq!((s, violations(&body)), (400, vec!["query /limit".into()]));
    // A literal path wins over the template beside it; the template's parameter is typed.
    assert_eq!(status(c.get(gw.url("web", "/v1/items/mine"))).await.0, 200);
    assert_eq!(status(c.get(gw.url("web", "/v1/items/12"))).await.0, 200);
    assert_eq!(status(c.head(gw.url("web", "/v1/items/12"))).await.0, 200);
    for bad in ["/v1/items/0", "/v1/items/twelve"] {
        let (s, _, body) = status(c.get(gw.url("web", bad))).await;
        assert_eq!(
            (s, violations(&body)),
            (400, vec!["path /id".into()]),
            "{bad}"
        );
    }
    // The request body of the operation, not of another one.
    let post = |b: Value| c.post(gw.url("web", "/v1/items")).json(&b);
    assert_eq!(status(post(json!({"sku": "ABC-1"}))).await.0, 200);
    let (s, _, body) = status(post(json!({"sku": "abc"}))).await;
    assert_eq!((s, violations(&body)), (400, vec!["body /sku".into()]));
    let (s, _, body) = status(c.post(gw.url("web", "/v1/items"))).await;
    assert_eq!((s, body["error"].as_str()), (400, Some("invalid_request")));
    // What the document does not have.
    let (s, allow, body) = status(c.put(gw.url("web", "/v1/items/12"))).await;
    assert_eq!((s, allow.as_deref()), (405, Some("GET, DELETE")));
    assert_eq!(body["error"], "method_not_allowed");
    assert!(body["request_id"].is_string(), "{body}");
    let (s, _, body) = status(c.get(gw.url("web", "/v1/orders"))).await;
    assert_eq!(
        (s, body["error"].as_str()),
        (404, Some("unknown_operation"))
    );
    let (s, _, _) = status(c.get(gw.url("web", "/v1"))).await;
    assert_eq!(s, 404);
    assert_eq!(up.count(), 5);
}

#[tokio::test]
async fn a_reload_follows_the_document_and_refuses_a_broken_one() {
    let file = gatehouse_test_support::temp_path("openapi", "inventory.yaml");
    std::fs::write(&file, INVENTORY).unwrap();
    let up = Upstream::fixed("ok").await;
    let config = document_route(up.addr, &file);
    let gw = TestGateway::start(&config).await;
    let c = reqwest::Client::new();
    let get = |p: &str| c.get(gw.url("web", p)).send();
    assert_eq!(get("/v1/items?limit=40").await.unwrap().status(), 200);
    assert_eq!(get("/v1/orders").await.unwrap().status(), 404);
    // The document is edited: a lower maximum, a new path.
    let edited = INVENTORY
        .replace("maximum: 50", "maximum: 20")
        .replace("  /items/mine:", "  /orders:\n    get: {}\n  /items/mine:");
    std::fs::write(&file, edited).unwrap();
    gw.gw.reload_text(&config).await.unwrap();
    assert_eq!(get("/v1/items?limit=40").await.unwrap().status(), 400);
    assert_eq!(get("/v1/orders").await.unwrap().status(), 200);
    // A broken document is refused whole, with the key path; the last good one stays.
    std::fs::write(&file, INVENTORY.replace("maximum: 50", "maximum: fifty")).unwrap();
    let err = gw.gw.reload_text(&config).await.unwrap_err().to_string();
    assert!(err.contains("routes[0].openapi"), "{err}");
    assert!(err.contains("GET /items"), "{err}");
    std::fs::remove_file(&file).unwrap();
    let err = gw.gw.reload_text(&config).await.unwrap_err().to_string();
    assert!(
        err.contains("routes[0].openapi") && err.contains("cannot read"),
        "{err}"
    );
    assert_eq!(get("/v1/items?limit=40").await.unwrap().status(), 400);
    assert_eq!(get("/v1/orders").await.unwrap().status(), 200);
}
