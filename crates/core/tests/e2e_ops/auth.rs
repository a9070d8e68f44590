//! The auth stage end to end: API keys (header, query, hashed, from the environment),
//! Basic against argon2, bcrypt and plain secrets, access rules (consumers, groups,
//! anonymous), IP lists on routes and listeners (with trusted X-Forwarded-For), auth on a
//! locally answered route, what reaches the upstream and the access log, and config
//! errors with their key paths.

use crate::*;
use base64::Engine as _;
use gatehouse_test_support::{TestGateway, Upstream};

const ACME_KEY: &str = "k-acme-0123456789";
const BETA_KEY: &str = "k-beta-9876543210";

fn sha256_hex(s: &str) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, s.as_bytes());
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

fn basic(user: &str, pass: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
    )
}

fn argon2_hash(pass: &str) -> String {
    use argon2::password_hash::PasswordHasher;
    argon2::Argon2::default()
        .hash_password_with_salt(pass.as_bytes(), b"gatehouse-test-salt")
        .unwrap()
        .to_string()
}

fn gateway_config(up: SocketAddr, log: &std::path::Path) -> String {
    let env = "GATEHOUSE_TEST_ENV_KEY";
    // The only test that reads this variable sets it first, before any gateway starts.
    std::env::set_var(env, "k-from-env");
    format!(
        r#"
[admin]
listen = "127.0.0.1:0"

[access_log]
target = {log:?}

[[listeners]]
name = "web"
listen = "127.0.0.1:0"

[[consumers]]
name = "acme"
groups = ["partners"]
api_keys = ["{ACME_KEY}", "env:{env}"]
basic = {{ username = "acme", password = "{argon}" }}

[[consumers]]
name = "beta"
api_keys = ["sha256:{beta}"]
basic = {{ username = "beta", password = "{bcrypt}" }}

[[consumers]]
name = "gamma"
basic = {{ username = "gamma", password = "plain-pass" }}

[[routes]]
name = "keys"
match = {{ prefix = "/keys" }}
upstream = "backend"
auth = {{ methods = ["api_key"], api_key_query = "apikey", api_key_header = "x-api-key", consumer_header = "X-Consumer" }}

[[routes]]
name = "basic"
match = {{ prefix = "/basic" }}
upstream = "backend"
auth = {{ methods = ["basic"], realm = "staff", consumer_header = "X-Consumer" }}

[[routes]]
name = "partners"
match = {{ prefix = "/partners" }}
upstream = "backend"
auth = {{ methods = ["api_key", "basic"], groups = ["partners"], consumers = ["gamma"] }}

[[routes]]
name = "open"
match = {{ prefix = "/open" }}
upstream = "backend"
auth = {{ methods = ["api_key"], anonymous = true, consumer_header = "X-Consumer" }}

[[routes]]
name = "keep"
match = {{ prefix = "/keep" }}
upstream = "backend"
auth = {{ methods = ["basic"], keep_credential = true }}

[[routes]]
name = "local"
match = {{ prefix = "/local" }}
respond = {{ status = 200, body = "secret page" }}
auth = {{ methods = ["api_key"] }}

[[upstreams]]
name = "backend"
endpoints = ["{up}"]
"#,
        log = log.display().to_string(),
        argon = argon2_hash("argon-pass"),
        bcrypt = bcrypt::hash("bcrypt-pass", 4).unwrap(),
        beta = sha256_hex(BETA_KEY),
    )
}

#[tokio::test]
async fn api_keys_by_header_and_query_and_what_goes_upstream() {
    let up = Upstream::fixed("ok").await;
    let log = temp_path("auth-access.log");
    let gw = TestGateway::start(&gateway_config(up.addr, &log)).await;
    let c = reqwest::Client::new();
    let get = |path: &str| c.get(gw.url("web", path));

    let r = get("/keys/a")
        .header("x-api-key", ACME_KEY)
        .header("x-consumer", "spoofed")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let seen = up.last();
    assert_eq!(
        seen.headers["x-consumer"], "acme",
        "the client's X-Consumer is replaced"
    );
    assert!(
        !seen.headers.contains_key("x-api-key"),
        "the key is not sent upstream"
    );

    let r = get(&format!("/keys/b?x=1&apikey={BETA_KEY}&y=2"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let seen = up.last();
    assert_eq!(
        seen.uri.query(),
        Some("x=1&y=2"),
        "the key parameter is taken out"
    );
    assert_eq!(
        seen.headers["x-consumer"], "beta",
        "a SHA-256 digest in config matches"
    );

    let r = get("/keys/c")
        .header("x-api-key", "k-from-env")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "a key from the environment");

    let r = get("/keys/d").send().await.unwrap();
    assert_eq!(r.status(), 401);
    let challenge = r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        challenge.starts_with("ApiKey realm=\"gatehouse\""),
        "{challenge}"
    );
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"], "unauthorized");
    assert!(body["request_id"].as_str().is_some());

    let r = get("/keys/e")
        .header("x-api-key", "wrong-key")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let text = r.text().await.unwrap();
    assert!(
        !text.contains("wrong-key"),
        "the credential is not echoed: {text}"
    );

    let two = get("/keys/f")
        .header("x-api-key", ACME_KEY)
        .header("x-api-key", ACME_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(two.status(), 401, "a key given twice");
    let both = get(&format!("/keys/g?apikey={ACME_KEY}"))
        .header("x-api-key", ACME_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(both.status(), 401, "header and query both");
    let bad_query = get("/keys/h?apikey=nope&q=1").send().await.unwrap();
    assert_eq!(bad_query.status(), 401);

    // The log names the consumer and never holds a key.
    let text = eventually("eight log lines", || async {
        let t = std::fs::read_to_string(&log).unwrap_or_default();
        (t.lines().count() >= 8).then_some(t)
    })
    .await;
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0]["consumer"], "acme");
    assert_eq!(lines[1]["consumer"], "beta");
    assert_eq!(lines[1]["path"], "/keys/b?x=1&y=2");
    assert!(
        lines[3].get("consumer").is_none(),
        "a refused request has no consumer"
    );
    for secret in [ACME_KEY, BETA_KEY, "k-from-env", "nope", "wrong-key"] {
        assert!(!text.contains(secret), "`{secret}` is in the access log");
    }
    // Decisions are counted by route, kind and result; no secret is a label.
    let metrics = reqwest::get(gw.admin_url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for (result, n) in [("allowed", 3), ("invalid", 4)] {
        let line = format!("gatehouse_auth_decisions_total{{route=\"keys\",kind=\"api_key\",result=\"{result}\"}} {n}");
        assert!(metrics.contains(&line), "no `{line}` in:\n{metrics}");
    }
    let missing =
        "gatehouse_auth_decisions_total{route=\"keys\",kind=\"anonymous\",result=\"missing\"} 1";
    assert!(metrics.contains(missing), "{metrics}");
    for secret in [ACME_KEY, BETA_KEY, "wrong-key"] {
        assert!(!metrics.contains(secret), "`{secret}` is in the metrics");
    }
}

#[tokio::test]
async fn basic_against_argon2_bcrypt_and_plain_secrets() {
    let up = Upstream::fixed("ok").await;
    let gw = TestGateway::start(&gateway_config(up.addr, &temp_path("auth-basic.log"))).await;
    let c = reqwest::Client::new();
    let send = |auth: String| {
        c.get(gw.url("web", "/basic"))
            .header("authorization", auth)
            .send()
    };
    for (user, pass) in [
        ("acme", "argon-pass"),
        ("beta", "bcrypt-pass"),
        ("gamma", "plain-pass"),
    ] {
        let r = send(basic(user, pass)).await.unwrap();
        assert_eq!(r.status(), 200, "{user}");
        let seen = up.last();
        assert_eq!(seen.headers["x-consumer"], user);
        assert!(
            !seen.headers.contains_key("authorization"),
            "the credential is not sent upstream"
        );
    }
    // Remembered after one slow check: the second time answers the same.
    assert_eq!(
        send(basic("acme", "argon-pass")).await.unwrap().status(),
        200
    );
    let lower = basic("beta", "bcrypt-pass").replacen("Basic", "basic", 1);
    assert_eq!(
        send(lower).await.unwrap().status(),
        200,
        "the scheme is case-insensitive"
    );
    for bad in [
        basic("acme", "wrong"),
        basic("nobody", "x"),
        "Basic %%%".into(),
        "Basic".into(),
    ] {
        let r = send(bad.clone()).await.unwrap();
        assert_eq!(r.status(), 401, "{bad}");
        assert_eq!(
            r.headers()["www-authenticate"],
            "Basic realm=\"staff\", charset=\"UTF-8\""
        );
    }
    let r = c.get(gw.url("web", "/basic")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = c
        .get(gw.url("web", "/keep"))
        .header("authorization", basic("gamma", "plain-pass"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        up.last().headers["authorization"],
        basic("gamma", "plain-pass").as_str(),
        "keep_credential"
    );
    let r = c
        .get(gw.url("web", "/basic"))
        .header("authorization", basic("acme", "argon-pass"))
        .header("authorization", basic("acme", "argon-pass"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "two Authorization headers");
}

#[tokio::test]
async fn access_rules_anonymous_and_local_routes() {
    let up = Upstream::fixed("ok").await;
    let gw = TestGateway::start(&gateway_config(up.addr, &temp_path("auth-rules.log"))).await;
    let c = reqwest::Client::new();
    let get = |path: &str| c.get(gw.url("web", path));
    // Groups or named consumers.
    assert_eq!(
        get("/partners")
            .header("x-api-key", ACME_KEY)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let r = get("/partners")
        .header("x-api-key", BETA_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"], "forbidden");
    assert_eq!(
        get("/partners")
            .header("authorization", basic("gamma", "plain-pass"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    // Both kinds are challenged when neither is given.
    let r = get("/partners").send().await.unwrap();
    let challenges: Vec<_> = r
        .headers()
        .get_all("www-authenticate")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    assert_eq!(challenges.len(), 2, "{challenges:?}");
    // Anonymous passes with no consumer; a bad key still fails.
    let r = get("/open")
        .header("x-consumer", "spoofed")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(!up.last().headers.contains_key("x-consumer"));
    assert_eq!(
        get("/open")
            .header("x-api-key", "bad")
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(
        get("/open")
            .header("x-api-key", ACME_KEY)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(up.last().headers["x-consumer"], "acme");
    // A locally answered route is protected the same way.
    assert_eq!(get("/local").send().await.unwrap().status(), 401);
    let r = get("/local")
        .header("x-api-key", ACME_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), "secret page");
}

#[tokio::test]
async fn ip_lists_on_routes_and_listeners_after_trusted_forwarding() {
    let up = Upstream::fixed("ok").await;
    let text = format!(
        r#"
[global]
trusted_proxies = ["127.0.0.1"]

[access_log]
enabled = false

[[listeners]]
name = "web"
listen = "127.0.0.1:0"
ip_deny = ["192.0.2.0/24"]

[[routes]]
name = "office"
match = {{ prefix = "/office" }}
upstream = "backend"
ip_allow = ["10.0.0.0/8"]
ip_deny = ["10.9.0.0/16"]

[[routes]]
name = "rest"
upstream = "backend"

[[upstreams]]
name = "backend"
endpoints = ["{}"]
"#,
        up.addr
    );
    let gw = TestGateway::start(&text).await;
    let c = reqwest::Client::new();
    let send = |path: &str, xff: Option<&str>| {
        let mut b = c.get(gw.url("web", path));
        if let Some(x) = xff {
            b = b.header("x-forwarded-for", x);
        }
        b.send()
    };
    assert_eq!(
        send("/office", None).await.unwrap().status(),
        403,
        "loopback is not in 10/8"
    );
    assert_eq!(
        send("/office", Some("10.1.2.3")).await.unwrap().status(),
        200
    );
    assert_eq!(
        send("/office", Some("10.1.2.3, 127.0.0.1"))
            .await
            .unwrap()
            .status(),
        200,
        "trusted hops are skipped"
    );
    assert_eq!(
        send("/office", Some("10.9.1.1")).await.unwrap().status(),
        403,
        "deny wins"
    );
    assert_eq!(
        send("/office", Some("10.1.2.3, 203.0.113.9"))
            .await
            .unwrap()
            .status(),
        403,
        "the right-most untrusted hop counts"
    );
    assert_eq!(
        send("/", Some("192.0.2.7")).await.unwrap().status(),
        403,
        "the listener's list"
    );
    let r = send("/", Some("198.51.100.1")).await.unwrap();
    assert_eq!(r.status(), 200);
}

#[test]
fn config_errors_name_their_keys() {
    let text = r#"
[[listeners]]
name = "web"
listen = "127.0.0.1:0"
ip_allow = ["banana"]

[[consumers]]
name = "a"
api_keys = ["sha256:abc", ""]
basic = { username = "x:y", password = "p" }
certificates = [{ san = "a", subject = "b" }, { fingerprint = "zz" }]

[[introspection]]
name = "i"
upstream = "nope"
path = "bad"
client_id = "x"
client_secret = "y"

[[consumers]]
name = "a"

[[jwt_providers]]
name = "idp"
discovery = true
algorithms = ["none"]
keys = [{ pem = "x", secret = "y" }]

[[jwt_providers]]
name = "empty"
jwks_upstream = "missing"

[[routes]]
name = "r"
respond = { status = 200 }
auth = { methods = ["api_key", "token", "api_key"], consumers = ["nobody"], groups = ["none"], jwt = "other" }
external_auth = { upstream = "nope2", copy_headers = ["bad header"] }
ip_deny = ["10.0.0.0/99"]
"#;
    let err = gatehouse_config::load(text, "t.toml", gatehouse_config::Format::Toml)
        .unwrap_err()
        .to_string();
    for path in [
        "listeners[0].ip_allow[0]",
        "consumers[0].api_keys[0]",
        "consumers[0].api_keys[1]",
        "consumers[0].basic.username",
        "consumers[1].name",
        "jwt_providers[0].discovery",
        "jwt_providers[0].algorithms[0]",
        "jwt_providers[0].keys[0]",
        "jwt_providers[1].jwks_upstream",
        "routes[0].auth.methods[1]",
        "routes[0].auth.methods[2]",
        "routes[0].auth.consumers[0]",
        "routes[0].auth.groups[0]",
        "routes[0].ip_deny[0]",
        "consumers[0].certificates[0]",
        "consumers[0].certificates[1].fingerprint",
        "introspection[0].upstream",
        "introspection[0].path",
        "routes[0].external_auth.upstream",
        "routes[0].external_auth.copy_headers[0]",
    ] {
        assert!(err.contains(path), "no error at `{path}` in:\n{err}");
    }
}

#[tokio::test]
async fn a_secret_that_cannot_be_read_rejects_the_config() {
    let text = r#"
[[listeners]]
name = "web"
listen = "127.0.0.1:0"

[[consumers]]
name = "a"
api_keys = ["env:GATEHOUSE_TEST_UNSET_VARIABLE", "file:/nonexistent/key"]

[[routes]]
name = "r"
respond = { status = 200 }
"#;
    let err = match gatehouse_core::Gateway::start(gatehouse_core::Source::Text {
        name: "t.toml".into(),
        text: text.into(),
    })
    .await
    {
        Ok(_) => panic!("accepted"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("consumers[0].api_keys[0]") && err.contains("GATEHOUSE_TEST_UNSET_VARIABLE"),
        "{err}"
    );
    assert!(
        err.contains("consumers[0].api_keys[1]") && err.contains("/nonexistent/key"),
        "{err}"
    );
}
