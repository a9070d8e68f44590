//! Accuracy across instances: three `gatehouse` processes share one `redis-server`
//! (started by the test on a free port) and are driven together at three times a
//! policy's limit for 10 s. The requests they admit between them must be the policy's
//! limit over that time, plus its burst, within 1%.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use gatehouse_test_support::RedisServer;
use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::time::Instant;

const RATE: u64 = 100;
const BURST: u64 = 10;
const SECONDS: u64 = 10;

fn config(redis: &str) -> String {
    format!(
        r#"
[global]
workers = 1

[access_log]
enabled = false

[[listeners]]
name = "web"
listen = "127.0.0.1:0"

# A check that timed out would count in the instance (fail_open), not in Redis: a
# second, so a loaded machine does not turn a slow answer into an accuracy error.
[redis]
url = "{redis}"
timeout = "1s"
key_prefix = "accuracy{pid}:"

[[rate_limits]]
name = "shared"
rate = "{RATE}/s"
burst = {BURST}
store = "redis"

[[routes]]
name = "api"
respond = {{ status = 200, body = "ok" }}
rate_limits = ["shared"]
"#,
        pid = std::process::id()
    )
}

/// Starts the binary; returns it and its `web` listener's address (from its JSON log).
async fn start(config: &std::path::Path) -> (Child, SocketAddr) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(["--log-format", "json", "run", "--config"])
        .arg(config)
        .env_remove("GATEHOUSE_LOG")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = loop {
        let line = lines.next_line().await.unwrap().expect("gatehouse exited");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
        if v["fields"]["listener"] == "web" {
            if let Some(a) = v["fields"]["address"].as_str() {
                break a.parse().unwrap();
            }
        }
    };
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, addr)
}

/// What one instance's driver saw.
struct Driven {
    admitted: u64,
    refused: u64,
    first: Instant,
    last: Instant,
}

/// Sends `RATE` requests a second for `SECONDS` to `addr`.
async fn drive(addr: SocketAddr) -> Driven {
    let c = reqwest::Client::new();
    let url = format!("http://{addr}/");
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / RATE));
    let mut sent = Vec::new();
    let first = Instant::now();
    let mut last = first;
    for _ in 0..RATE * SECONDS {
        tick.tick().await;
        last = Instant::now();
        let req = c.get(&url).send();
        sent.push(tokio::spawn(async move {
            req.await.map(|r| r.status().as_u16())
        }));
    }
    let (mut ok, mut refused) = (0, 0);
    for s in sent {
        match s.await.unwrap() {
            Ok(200) => ok += 1,
            Ok(429) => refused += 1,
            other => panic!("unexpected answer {other:?}"),
        }
    }
    Driven {
        admitted: ok,
        refused,
        first,
        last,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_sharing_redis_admit_the_limit_within_one_percent() {
    let redis = RedisServer::start().await;
    let dir = gatehouse_test_support::scratch::dir("accuracy");
    let path = dir.join("gatehouse.toml");
    std::fs::write(&path, config(&redis.url())).unwrap();
    let mut instances = Vec::new();
    for _ in 0..3 {
        instances.push(start(&path).await);
    }
    let runs: Vec<_> = instances
        .iter()
        .map(|(_, a)| tokio::spawn(drive(*a)))
        .collect();
    let (mut admitted, mut refused) = (0, 0);
    let (mut first, mut last): (Option<Instant>, Option<Instant>) = (None, None);
    for r in runs {
        let d = r.await.unwrap();
        admitted += d.admitted;
        refused += d.refused;
        first = Some(first.map_or(d.first, |f| f.min(d.first)));
        last = Some(last.map_or(d.last, |l| l.max(d.last)));
    }
    // The limit over the time between the first and the last request sent (measured,
    // so a slow machine that stretches the run is not counted against the limiter),
    // plus the burst.
    let took = (last.unwrap() - first.unwrap()).as_secs_f64();
    let expected = (BURST as f64 + (took * RATE as f64).floor()).round();
    let error = (admitted as f64 - expected) / expected;
    println!(
        "3 instances, {} requests in {took:.2} s at 3x the limit: admitted {admitted}, \
         refused {refused}, expected {expected}, error {:+.2}%",
        admitted + refused,
        error * 100.0
    );
    assert_eq!(admitted + refused, 3 * RATE * SECONDS);
    assert!(
        error.abs() <= 0.01,
        "admitted {admitted}, expected {expected}"
    );
    for (mut c, _) in instances {
        let _ = c.start_kill();
        let _ = c.wait().await;
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
