//! Rate limits end to end: a limit by each key kind, several policies on one route (the
//! most restrictive answering, with `RateLimit-Policy`, `RateLimit` and `X-RateLimit-*`),
//! 429s with `Retry-After` and the JSON body, concurrency places given back when the
//! body ends or the client goes away, dry runs, counts kept over a reload, local quotas
//! in their state file, the admin API, and with a real `redis-server`: one count shared
//! by two gateways, quotas that outlive a gateway, and Redis killed mid-run and started
//! again under `fail_open` and `fail_closed`.

use crate::*;
use gatehouse_test_support::tokens::SigningKey;
use gatehouse_test_support::{eventually, RedisServer, TestGateway, Upstream};
use jsonwebtoken::Algorithm;
use reqwest::StatusCode;

const SECRET: &str = "a-long-enough-hmac-secret-for-hs256!";

/// Two requests a minute per key, for each key kind; a route per kind.
fn key_kinds_config(up: SocketAddr) -> String {
    let kinds = [
        ("consumer", "consumer"),
        ("credential", "credential"),
        ("ip", "ip/24"),
        ("route", "route"),
        ("header", "header:x-tenant"),
        ("query", "query:tenant"),
        ("claim", "claim:org"),
    ];
    let mut s = format!(
        r#"
[global]
trusted_proxies = ["127.0.0.1"]

[[listeners]]
name = "web"
listen = "127.0.0.1:0"

[access_log]
enabled = false

[[upstreams]]
name = "backend"
endpoints = ["{up}"]

[[consumers]]
name = "acme"
api_keys = ["key-acme-1", "key-acme-2"]

[[consumers]]
name = "beta"
api_keys = ["key-beta-1"]

[[jwt_providers]]
name = "idp"
issuer = "https://idp.test"
keys = [{{ kid = "k", alg = "HS256", secret = "{SECRET}" }}]
"#
    );
    for (name, part) in kinds {
        let auth = match name {
            "consumer" | "credential" => r#"auth = { methods = ["api_key"] }"#,
            "claim" => r#"auth = { methods = ["jwt"] }"#,
            _ => "",
        };
        s.push_str(&format!(
            r#"
[[rate_limits]]
name = "by-{name}"
key = ["{part}"]
rate = "2/min"

[[routes]]
name = "{name}"
match = {{ prefix = "/{name}" }}
upstream = "backend"
rate_limits = ["by-{name}"]
{auth}
"#
        ));
    }
    s
}

/// Sends `n` requests made by `req` and returns their statuses.
async fn statuses(n: usize, req: impl Fn() -> reqwest::RequestBuilder) -> Vec<u16> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(req().send().await.unwrap().status().as_u16());
    }
    out
}

/// Sends `req` until the answer is not 503 (a fail_closed check that met no Redis), for
/// at most 15 s: that answer's status, and how many 503s came first.
async fn first_answer(what: &str, req: impl Fn() -> reqwest::RequestBuilder) -> (u16, usize) {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let mut refused = 0;
    loop {
        match req().send().await.unwrap().status().as_u16() {
            503 => refused += 1,
            s => return (s, refused),
        }
        assert!(std::time::Instant::now() < deadline, "{what}");
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn a_limit_by_each_kind_of_key() {
    let up = Upstream::fixed("ok").await;
    let gw = TestGateway::start(&key_kinds_config(up.addr)).await;
    let c = reqwest::Client::new();
    let get = |path: &str| c.get(gw.url("web", path));
    let with = |path: &'static str, h: &'static str, v: &'static str| {
        let get = &get;
        move || get(path).header(h, v)
    };

    // By consumer: both of acme's keys share acme's count; beta has its own.
    assert_eq!(
        statuses(2, with("/consumer", "x-api-key", "key-acme-1")).await,
        [200, 200]
    );
    assert_eq!(
        statuses(1, with("/consumer", "x-api-key", "key-acme-2")).await,
        [429]
    );
    assert_eq!(
        statuses(1, with("/consumer", "x-api-key", "key-beta-1")).await,
        [200]
    );

    // By credential: each key of acme counts apart.
    assert_eq!(
        statuses(3, with("/credential", "x-api-key", "key-acme-1")).await,
        [200, 200, 429]
    );
    assert_eq!(
        statuses(1, with("/credential", "x-api-key", "key-acme-2")).await,
        [200]
    );

    // By client network (/24), after trusted X-Forwarded-For.
    assert_eq!(
        statuses(2, with("/ip", "x-forwarded-for", "10.0.0.1")).await,
        [200, 200]
    );
    assert_eq!(
        statuses(1, with("/ip", "x-forwarded-for", "10.0.0.77")).await,
        [429],
        "same /24"
    );
    assert_eq!(
        statuses(1, with("/ip", "x-forwarded-for", "10.0.1.1")).await,
        [200]
    );

    // By route: every client shares it.
    assert_eq!(statuses(3, || get("/route")).await, [200, 200, 429]);

    // By header and by query parameter.
    assert_eq!(
        statuses(3, with("/header", "x-tenant", "t1")).await,
        [200, 200, 429]
    );
    assert_eq!(statuses(1, with("/header", "x-tenant", "t2")).await, [200]);
    assert_eq!(
        statuses(3, || get("/query?tenant=t1")).await,
        [200, 200, 429]
    );
    assert_eq!(statuses(1, || get("/query?tenant=t2&x=1")).await, [200]);
    // Requests without the part share one bucket by default.
    assert_eq!(statuses(3, || get("/query")).await, [200, 200, 429]);

    // By a verified token's claim.
    let key = SigningKey::hmac("k", Algorithm::HS256, SECRET.as_bytes());
    let token = |org: &str| {
        let exp = gatehouse_test_support::tokens::now() + 600;
        key.sign(
            &serde_json::json!({"iss": "https://idp.test", "sub": "u", "org": org, "exp": exp}),
        )
    };
    let (a, b) = (token("org-a"), token("org-b"));
    let bearer = |t: &String| get("/claim").bearer_auth(t);
    assert_eq!(statuses(3, || bearer(&a)).await, [200, 200, 429]);
    assert_eq!(statuses(1, || bearer(&b)).await, [200]);
}

#[tokio::test]
async fn several_policies_answer_with_the_most_restrictive_and_their_headers() {
    let up = Upstream::fixed("ok").await;
    let cfg = config(up.addr, r#"rate_limits = ["per-second", "daily"]"#, "")
        + r#"
[[rate_limits]]
name = "per-second"
rate = "10/s"
burst = 5
legacy_headers = true

[[rate_limits]]
name = "daily"
quota = "3/day"
legacy_headers = true
"#;
    let gw = TestGateway::start(&cfg).await;
    let c = reqwest::Client::new();
    let r = c.get(gw.url("web", "/x")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let h = r.headers();
    assert_eq!(
        h["ratelimit-policy"],
        "\"per-second\";q=10;w=1, \"daily\";q=3;w=86400"
    );
    let rl = h["ratelimit"].to_str().unwrap();
    assert!(
        rl.starts_with("\"per-second\";r=4;t=1, \"daily\";r=2;t="),
        "{rl}"
    );
    assert_eq!(h["x-ratelimit-limit"], "3", "the tightest policy speaks");
    assert_eq!(h["x-ratelimit-remaining"], "2");
    c.get(gw.url("web", "/x")).send().await.unwrap();
    c.get(gw.url("web", "/x")).send().await.unwrap();
    let r = c.get(gw.url("web", "/x")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry > 0 && retry <= 86_400, "{retry}");
    assert!(r.headers()["ratelimit"]
        .to_str()
        .unwrap()
        .starts_with("\"daily\";r=0;t="));
    assert_eq!(r.headers()["x-ratelimit-remaining"], "0");
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"], "rate_limited");
    assert!(body["message"].as_str().unwrap().contains("daily"));
    assert!(body["request_id"].as_str().is_some_and(|s| !s.is_empty()));
    assert_eq!(
        up.count(),
        3,
        "a refused request never reaches the upstream"
    );
    // The refusal by `daily` gave back what `per-second` counted for it.
    let usage = json(c.get(gw.admin_url("/rate-limits/per-second?key="))).await;
    assert!(usage["remaining"].as_u64().unwrap() >= 2, "{usage}");
}

#[tokio::test]
async fn concurrency_places_come_back_when_the_body_ends_or_the_client_leaves() {
    let gate = Gate::default();
    let g = gate.clone();
    // Requests marked `x-hold` wait at the gate; the rest answer at once.
    let up = Upstream::start(Default::default(), move |req: http::Request<_>| {
        let g = g.clone();
        let hold = req.headers().contains_key("x-hold");
        async move {
            if hold {
                g.pass().await;
            }
            http::Response::new(full("done"))
        }
    })
    .await;
    let cfg = config(up.addr, r#"rate_limits = ["one-at-a-time"]"#, "")
        + r#"
[[rate_limits]]
name = "one-at-a-time"
concurrency = 1
"#;
    let gw = TestGateway::start(&cfg).await;
    let c = reqwest::Client::new();
    let url = gw.url("web", "/slow");
    let first = tokio::spawn(c.get(&url).header("x-hold", "1").send());
    gate.arrived().await;
    let r = c.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 429, "the only place is taken");
    assert_eq!(r.headers()["retry-after"], "1");
    gate.release();
    let r = first.await.unwrap().unwrap();
    assert_eq!(r.text().await.unwrap(), "done");
    // The body has ended: the place is free.
    let r = eventually("the place to be given back", || async {
        let r = c.get(&url).send().await.unwrap();
        (r.status() == 200).then_some(r)
    })
    .await;
    assert_eq!(r.text().await.unwrap(), "done");

    // A client that goes away while its request waits gives its place back too.
    let gone = tokio::spawn(c.get(&url).header("x-hold", "1").send());
    gate.arrived().await;
    assert_eq!(c.get(&url).send().await.unwrap().status(), 429);
    gone.abort();
    let _ = gone.await;
    eventually("the place of a client that left", || async {
        let r = c.get(&url).send().await.unwrap();
        (r.status() == 200).then_some(())
    })
    .await;
    gate.release();
}

#[tokio::test]
async fn a_dry_run_only_counts_what_it_would_refuse() {
    let up = Upstream::fixed("ok").await;
    let cfg = config(up.addr, r#"rate_limits = ["trial"]"#, "")
        + r#"
[[rate_limits]]
name = "trial"
rate = "1/min"
dry_run = true
"#;
    let gw = TestGateway::start(&cfg).await;
    let c = reqwest::Client::new();
    for _ in 0..4 {
        let r = c.get(gw.url("web", "/x")).send().await.unwrap();
        assert_eq!(r.status(), 200);
    }
    let m = c
        .get(gw.admin_url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let line = |result: &str| {
        m.lines()
            .find(|l| l.starts_with("gatehouse_rate_limit_decisions_total") && l.contains(result))
            .map(|l| l.rsplit(' ').next().unwrap().to_string())
    };
    assert_eq!(
        line("result=\"dry_run_limited\"").as_deref(),
        Some("3"),
        "{m}"
    );
    assert_eq!(line("result=\"allowed\"").as_deref(), Some("1"));
}

#[tokio::test]
async fn a_reload_keeps_the_counts_of_an_unchanged_policy() {
    let up = Upstream::fixed("ok").await;
    let policy = |rate: &str| format!("\n[[rate_limits]]\nname = \"p\"\nrate = \"{rate}\"\n");
    let cfg = config(up.addr, r#"rate_limits = ["p"]"#, "") + &policy("2/min");
    let gw = TestGateway::start(&cfg).await;
    let c = reqwest::Client::new();
    let get = || c.get(gw.url("web", "/x"));
    assert_eq!(statuses(3, get).await, [200, 200, 429]);
    // Same policy, another route added: the count stays.
    let more = cfg.clone() + "\n[[routes]]\nname = \"other\"\nmatch = { prefix = \"/other\" }\nrespond = { status = 204 }\n";
    gw.gw.reload_text(&more).await.unwrap();
    assert_eq!(statuses(1, get).await, [429]);
    // A changed policy starts afresh.
    let changed = config(up.addr, r#"rate_limits = ["p"]"#, "") + &policy("3/min");
    gw.gw.reload_text(&changed).await.unwrap();
    assert_eq!(statuses(4, get).await, [200, 200, 200, 429]);
}

#[tokio::test]
async fn local_quota_counts_outlive_the_gateway_in_their_state_file() {
    let up = Upstream::fixed("ok").await;
    let file = temp_path("quota-state.json");
    let cfg = config(up.addr, r#"rate_limits = ["monthly"]"#, "")
        + &format!(
            "\n[[rate_limits]]\nname = \"monthly\"\nquota = \"3/month\"\ntime_zone = \"Europe/Berlin\"\nstate_file = {:?}\n",
            file.display().to_string()
        );
    let gw = TestGateway::start(&cfg).await;
    let c = reqwest::Client::new();
    let get = |gw: &TestGateway| c.get(gw.url("web", "/x"));
    assert_eq!(statuses(2, || get(&gw)).await, [200, 200]);
    assert!(gw.gw.shutdown().await);
    drop(gw);
    let saved = std::fs::read_to_string(&file).unwrap();
    assert!(saved.contains("\"monthly\""), "{saved}");
    let gw = TestGateway::start(&cfg).await;
    assert_eq!(
        statuses(2, || get(&gw)).await,
        [200, 429],
        "two of three were used before"
    );
    // The admin API shows the key's usage and resets it.
    let u = json(c.get(gw.admin_url("/rate-limits/monthly?key="))).await;
    assert_eq!(
        (u["limit"].as_u64(), u["remaining"].as_u64()),
        (Some(3), Some(0)),
        "{u}"
    );
    let r = c
        .delete(gw.admin_url("/rate-limits/monthly?key="))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(statuses(1, || get(&gw)).await, [200]);
    let r = c
        .get(gw.admin_url("/rate-limits/nope?key=a"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = c
        .get(gw.admin_url("/rate-limits/monthly"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "the key is required");
    let list = json(c.get(gw.admin_url("/rate-limits"))).await;
    assert_eq!(list["rate_limits"][0]["kind"], "quota");
}

/// A config whose policies count in this Redis. A check's timeout is a second: the
/// first check on a connection also makes it, and a loaded machine can take a fifth of
/// a second for that; the tests about a slow Redis set their own.
fn redis_config(up: SocketAddr, redis: &str, extra: &str) -> String {
    format!(
        r#"
[admin]
listen = "127.0.0.1:0"

[access_log]
enabled = false

[[listeners]]
name = "web"
listen = "127.0.0.1:0"

[[upstreams]]
name = "backend"
endpoints = ["{up}"]

[redis]
url = "{redis}"
timeout = "1s"
breaker_failures = 2
breaker_open_for = "50ms"
key_prefix = "t{pid}:"

[[routes]]
name = "shared"
match = {{ prefix = "/shared" }}
upstream = "backend"
rate_limits = ["shared"]

[[rate_limits]]
name = "shared"
key = ["header:x-user"]
rate = "4/min"
store = "redis"
{extra}
"#,
        pid = std::process::id()
    )
}

#[tokio::test]
async fn one_redis_count_is_shared_by_two_gateways_and_its_quotas_outlive_them() {
    let redis = RedisServer::start().await;
    let up = Upstream::fixed("ok").await;
    let quota = r#"
[[routes]]
name = "quota"
match = { prefix = "/quota" }
upstream = "backend"
rate_limits = ["daily", "window"]

[[rate_limits]]
name = "daily"
key = ["header:x-user"]
quota = "3/day"
store = "redis"

[[rate_limits]]
name = "window"
key = ["header:x-user"]
rate = "5/min"
algorithm = "sliding_window"
store = "redis"
"#;
    let cfg = redis_config(up.addr, &redis.url(), quota);
    let a = TestGateway::start(&cfg).await;
    let b = TestGateway::start(&cfg).await;
    let c = reqwest::Client::new();
    let on = |gw: &TestGateway, path: &str, user: &str| {
        c.get(gw.url("web", path))
            .header("x-user", user.to_string())
    };
    let mut seen = Vec::new();
    for i in 0..6 {
        let gw = if i % 2 == 0 { &a } else { &b };
        seen.push(
            on(gw, "/shared", "u1")
                .send()
                .await
                .unwrap()
                .status()
                .as_u16(),
        );
    }
    assert_eq!(
        seen,
        [200, 200, 200, 200, 429, 429],
        "4 a minute across both"
    );
    let r = on(&b, "/shared", "u1").send().await.unwrap();
    assert!(r.headers()["ratelimit"]
        .to_str()
        .unwrap()
        .starts_with("\"shared\";r=0;t="));
    assert_eq!(on(&a, "/shared", "u2").send().await.unwrap().status(), 200);

    assert_eq!(statuses(2, || on(&a, "/quota", "q")).await, [200, 200]);
    drop(a);
    // A gateway started later sees the quota used so far.
    let late = TestGateway::start(&cfg).await;
    assert_eq!(statuses(2, || on(&late, "/quota", "q")).await, [200, 429]);
    let u = json(c.get(late.admin_url("/rate-limits/daily?key=q"))).await;
    assert_eq!(
        (u["remaining"].as_u64(), u["store"].as_str()),
        (Some(0), Some("redis")),
        "{u}"
    );
    c.delete(late.admin_url("/rate-limits/daily?key=q"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        statuses(1, || on(&b, "/quota", "q")).await,
        [200],
        "reset for every gateway"
    );
    let u = json(c.get(late.admin_url("/rate-limits/window?key=q"))).await;
    assert_eq!(
        u["remaining"].as_u64(),
        Some(1),
        "the window saw 4 of 5: {u}"
    );
}

#[tokio::test]
async fn redis_killed_mid_run_falls_back_open_or_closed_and_recovers() {
    let mut redis = RedisServer::start().await;
    let up = Upstream::fixed("ok").await;
    let closed = r#"
[[routes]]
name = "closed"
match = { prefix = "/closed" }
upstream = "backend"
rate_limits = ["strict"]

[[rate_limits]]
name = "strict"
rate = "1000/s"
store = "redis"
on_store_error = "fail_closed"
"#;
    let gw = TestGateway::start(&redis_config(up.addr, &redis.url(), closed)).await;
    let c = reqwest::Client::new();
    let get = |path: &str, user: &str| {
        c.get(gw.url("web", path))
            .header("x-user", user.to_string())
    };
    assert_eq!(get("/shared", "a").send().await.unwrap().status(), 200);
    assert_eq!(get("/closed", "a").send().await.unwrap().status(), 200);

    redis.stop().await;
    // fail_open: allowed, and counted by the local store meanwhile (4 a minute still).
    let seen = statuses(6, || get("/shared", "b")).await;
    assert_eq!(seen, [200, 200, 200, 200, 429, 429]);
    // fail_closed: 503 with the JSON body.
    let r = get("/closed", "a").send().await.unwrap();
    assert_eq!(r.status(), 503);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"], "rate_limit_unavailable");
    let m = c
        .get(gw.admin_url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(m.contains("result=\"store_error_fail_open\""), "{m}");
    assert!(m.contains("result=\"store_error_fail_closed\""));

    redis.restart().await;
    let (status, _) = first_answer("Redis never came back", || get("/closed", "a")).await;
    assert_eq!(status, 200);
    // Counting is in Redis again: a fresh server, so a fresh count for `b`.
    assert_eq!(get("/shared", "b").send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn redis_over_tls_with_a_password() {
    let ca = gatehouse_test_support::certs::TestCa::new();
    let leaf = ca.leaf("redis", &["localhost"]);
    let (cert, key, ca_path) = (leaf.cert.clone(), leaf.key.clone(), ca.ca_path.clone());
    let path = |p: &std::path::Path| p.display().to_string();
    let redis = RedisServer::start_with(|port| {
        let mut a: Vec<String> = ["--tls-port", &port.to_string(), "--tls-auth-clients", "no"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        a.extend([
            "--tls-cert-file".into(),
            path(&cert),
            "--tls-key-file".into(),
            path(&key),
        ]);
        a.extend(["--tls-ca-cert-file".into(), path(&ca_path)]);
        a.extend(["--requirepass".into(), "redis-secret".into()]);
        a
    })
    .await;
    std::env::set_var("GATEHOUSE_TEST_REDIS_PASSWORD", "redis-secret");
    let up = Upstream::fixed("ok").await;
    let url = format!("rediss://localhost:{}", redis.port);
    let cfg = redis_config(up.addr, &url, "").replace(
        "[redis]\n",
        &format!(
            "[redis]\npassword = \"env:GATEHOUSE_TEST_REDIS_PASSWORD\"\ntls_ca = {:?}\n",
            path(&ca.ca_path)
        ),
    );
    // fail_closed shows the answers come from Redis and not the local fallback.
    let cfg = cfg.replace(
        "store = \"redis\"\n",
        "store = \"redis\"\non_store_error = \"fail_closed\"\n",
    );
    let gw = TestGateway::start(&cfg).await;
    let c = reqwest::Client::new();
    let get = || c.get(gw.url("web", "/shared")).header("x-user", "tls");
    assert_eq!(statuses(5, get).await, [200, 200, 200, 200, 429]);
}

#[tokio::test]
async fn redis_cluster_counts_each_key_on_its_slot() {
    let dir = temp_path("redis-cluster");
    let dir = dir.parent().unwrap().to_path_buf();
    let mut nodes = Vec::new();
    for i in 0..3 {
        let d = dir.display().to_string();
        nodes.push(
            RedisServer::start_with(|port| {
                let conf = format!("nodes-{port}-{i}.conf");
                [
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    &conf,
                    "--dir",
                    &d,
                ]
                .iter()
                .map(|s| s.to_string())
                .collect()
            })
            .await,
        );
    }
    let addrs: Vec<String> = nodes
        .iter()
        .map(|n| format!("127.0.0.1:{}", n.port))
        .collect();
    let made = tokio::process::Command::new("redis-cli")
        .args(["--cluster", "create"])
        .args(&addrs)
        .args(["--cluster-replicas", "0", "--cluster-yes"])
        .output()
        .await
        .expect("redis-cli is installed with redis-server");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stdout)
    );
    // The nodes agree on the slots a moment after `create` returns, each on its own
    // time: a node still in `cluster_state:fail` answers CLUSTERDOWN, so every node
    // must say ok (a CI run failed the first check when only the first was asked).
    for node in &nodes {
        let port = node.port.to_string();
        let agreed = tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                let info = tokio::process::Command::new("redis-cli")
                    .args(["-p", &port, "cluster", "info"])
                    .output()
                    .await
                    .unwrap();
                let info = String::from_utf8_lossy(&info.stdout).into_owned();
                if info.contains("cluster_state:ok") && info.contains("cluster_known_nodes:3") {
                    break;
                }
                tokio::task::yield_now().await;
            }
        })
        .await;
        assert!(
            agreed.is_ok(),
            "node {port} never reported cluster_state:ok"
        );
    }
    let up = Upstream::fixed("ok").await;
    let urls: Vec<String> = addrs.iter().map(|a| format!("\"redis://{a}\"")).collect();
    let cfg = redis_config(up.addr, "unused", "")
        .replace(
            "url = \"unused\"",
            &format!("urls = [{}]\nmode = \"cluster\"", urls.join(", ")),
        )
        .replace(
            "store = \"redis\"\n",
            "store = \"redis\"\non_store_error = \"fail_closed\"\n",
        );
    let gw = TestGateway::start(&cfg).await;
    let c = reqwest::Client::new();
    // Users whose keys fall on different slots (and so different nodes) count apart.
    for user in ["alpha", "bravo", "charlie", "delta"] {
        let get = || c.get(gw.url("web", "/shared")).header("x-user", user);
        assert_eq!(statuses(5, get).await, [200, 200, 200, 200, 429], "{user}");
    }
}

#[tokio::test]
async fn of_two_refusing_policies_the_longer_wait_answers() {
    let up = Upstream::fixed("ok").await;
    let cfg = config(up.addr, r#"rate_limits = ["fast", "daily"]"#, "")
        + r#"
[[rate_limits]]
name = "fast"
rate = "2/s"

[[rate_limits]]
name = "daily"
quota = "2/day"
"#;
    let gw = TestGateway::start(&cfg).await;
    let c = reqwest::Client::new();
    assert_eq!(statuses(2, || c.get(gw.url("web", "/x"))).await, [200, 200]);
    // `fast` refuses first (half a second), but `daily` would refuse until midnight:
    // the answer is the day's, so a client that waits as told is let in.
    let r = c.get(gw.url("web", "/x")).send().await.unwrap();
    assert_eq!(r.status(), 429);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry > 1, "{retry}");
    assert!(r.headers()["ratelimit"]
        .to_str()
        .unwrap()
        .starts_with("\"daily\";r=0;"));
}

#[tokio::test]
async fn redis_behind_sentinel_follows_a_failover_and_keeps_the_count() {
    // The first sync streams the data set over the socket at once (no RDB file, no
    // 5 s wait for more replicas).
    let sync = |more: &[&str]| {
        let mut a = vec!["--repl-diskless-sync-delay", "0"];
        a.extend(more);
        a.iter().map(|s| s.to_string()).collect::<Vec<_>>()
    };
    let mut primary = RedisServer::start_with(|_| sync(&[])).await;
    let p = primary.port.to_string();
    let replica = RedisServer::start_with(|_| {
        sync(&[
            "--repl-diskless-load",
            "on-empty-db",
            "--replicaof",
            "127.0.0.1",
            &p,
        ])
    })
    .await;
    let mut sentinel = gatehouse_test_support::Sentinel::start("gh", primary.port, 1).await;
    let up = Upstream::fixed("ok").await;
    // fail_closed: every 200 or 429 below was answered by a Redis primary.
    let cfg = sentinel_config(up.addr, &sentinel, "");
    let gw = TestGateway::start(&cfg).await;
    let c = reqwest::Client::new();
    let get = || c.get(gw.url("web", "/shared")).header("x-user", "s");
    assert_eq!(
        statuses(2, get).await,
        [200, 200],
        "counted on the first primary"
    );

    // The two counts are on the replica before its primary dies: WAIT waits for this
    // connection's own writes, and a replica applies writes in order, so once it has
    // the marker it has the counts before it.
    let patient =
        redis::AsyncConnectionConfig::new().set_response_timeout(Some(Duration::from_secs(10)));
    let mut direct = redis::Client::open(primary.url())
        .unwrap()
        .get_multiplexed_async_connection_with_config(&patient)
        .await
        .unwrap();
    let _: () = redis::cmd("SET")
        .arg("marker")
        .arg(1)
        .query_async(&mut direct)
        .await
        .unwrap();
    let acked: i64 = redis::cmd("WAIT")
        .arg(1)
        .arg(5000)
        .query_async(&mut direct)
        .await
        .unwrap();
    assert_eq!(acked, 1);
    primary.stop().await;
    let line = sentinel.wait_for("+switch-master").await;
    assert!(line.ends_with(&format!(" {}", replica.port)), "{line}");
    // The requests that met the dead primary get 503 (fail_closed); then the new one
    // answers, with the count the old one had: 2 more of the 4 a minute, then 429.
    let (mut answered, mut refused) = (Vec::new(), 0);
    for _ in 0..3 {
        let (status, before) = first_answer("the new primary never answered", get).await;
        answered.push(status);
        refused += before;
    }
    assert_eq!(answered, [200, 200, 429], "after {refused} refusals");
}

/// `redis_config` behind the Sentinel `s`, for the primary `gh`, failing closed: every
/// 200 or 429 is a primary's answer.
fn sentinel_config(up: SocketAddr, s: &gatehouse_test_support::Sentinel, extra: &str) -> String {
    redis_config(up, &s.url(), "on_store_error = \"fail_closed\"\n").replace(
        "[redis]\n",
        &format!("[redis]\nmode = \"sentinel\"\nmaster = \"gh\"\n{extra}"),
    )
}

/// The ids of the connections on `redis` whose last command was a check's script.
async fn script_clients(redis: &mut redis::aio::MultiplexedConnection) -> Vec<String> {
    let list: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query_async(redis)
        .await
        .unwrap();
    list.lines()
        .filter(|l| l.contains(" cmd=evalsha ") || l.contains(" cmd=eval "))
        .filter_map(|l| l.strip_prefix("id=")?.split(' ').next().map(String::from))
        .collect()
}

#[tokio::test]
async fn a_primary_too_slow_to_answer_keeps_its_connection_behind_sentinel() {
    let primary = RedisServer::start().await;
    let sentinel = gatehouse_test_support::Sentinel::start("gh", primary.port, 0).await;
    let up = Upstream::fixed("ok").await;
    // A fifth of a second to answer, which the stopped primary below runs past.
    let cfg = sentinel_config(up.addr, &sentinel, "pool_size = 1\n")
        .replace("timeout = \"1s\"", "timeout = \"200ms\"")
        .replace("rate = \"4/min\"", "rate = \"100/min\"");
    let gw = TestGateway::start(&cfg).await;
    let c = reqwest::Client::new();
    let get = || c.get(gw.url("web", "/shared")).header("x-user", "p");
    assert_eq!(get().send().await.unwrap().status(), 200);
    let mut direct = redis::Client::open(primary.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let before = script_clients(&mut direct).await;
    assert_eq!(before.len(), 1, "{before:?}");

    // Stopped, the primary answers nothing: the check times out (503, fail_closed) and
    // the next one asks Sentinel again, which names the same primary.
    primary.pause().await;
    assert_eq!(get().send().await.unwrap().status(), 503);
    primary.resume().await;
    let (status, _) = first_answer("the primary never answered again", get).await;
    assert_eq!(status, 200);
    assert_eq!(
        script_clients(&mut direct).await,
        before,
        "the connection was made anew"
    );
}

/// How many times `redis` has run a check's script (`EVALSHA`).
async fn script_calls(mut redis: redis::aio::MultiplexedConnection) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut redis)
        .await
        .unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("cmdstat_evalsha:calls=")?.split(',').next())
        .map_or(0, |n| n.parse().unwrap())
}

#[tokio::test]
async fn an_open_breaker_keeps_checks_off_a_redis_that_does_not_answer() {
    let redis = RedisServer::start().await;
    let up = Upstream::fixed("ok").await;
    // Two checks that time out open the breaker, for longer than the test runs. One
    // connection, made by the first check, so both later checks are sent on it.
    let cfg = redis_config(up.addr, &redis.url(), "on_store_error = \"fail_closed\"\n")
        .replace("[redis]\n", "[redis]\npool_size = 1\n")
        .replace("timeout = \"1s\"", "timeout = \"200ms\"")
        .replace("breaker_open_for = \"50ms\"", "breaker_open_for = \"1h\"");
    let gw = TestGateway::start(&cfg).await;
    let c = reqwest::Client::new();
    let get = || c.get(gw.url("web", "/shared")).header("x-user", "b");
    assert_eq!(get().send().await.unwrap().status(), 200);
    let direct = redis::Client::open(redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let before = script_calls(direct.clone()).await;

    // Stopped, the server takes the two checks' scripts and answers neither: both time
    // out, and the second opens the breaker. The 20 after it never leave the gateway.
    redis.pause().await;
    assert_eq!(statuses(2, get).await, [503; 2]);
    assert_eq!(statuses(20, get).await, [503; 20]);
    redis.resume().await;
    eventually("the stopped server to run the two scripts it took", || {
        let direct = direct.clone();
        async move { (script_calls(direct).await >= before + 2).then_some(()) }
    })
    .await;
    assert_eq!(script_calls(direct).await, before + 2);
}
