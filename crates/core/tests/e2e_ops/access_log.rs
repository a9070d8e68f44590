//! The access log written to a file: JSON lines with the documented fields, Common Log
//! Format, and `enabled = false` writing nothing. Lines are written when a response body
//! ends, so the file is polled with a bounded patience.

use crate::*;
use gatehouse_test_support::{TestGateway, Upstream};
use std::path::Path;

fn with_log(upstream: SocketAddr, log: &str) -> String {
    config(upstream, "match = { prefix = \"/api\" }", "").replace(
        "[access_log]\nenabled = false",
        &format!("[access_log]\n{log}"),
    )
}

async fn lines(path: &Path, n: usize) -> Vec<String> {
    eventually(&format!("{n} lines in {}", path.display()), || async {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(str::to_string).collect();
        (lines.len() >= n).then_some(lines)
    })
    .await
}

#[tokio::test]
async fn json_lines_carry_every_documented_field() {
    let up = Upstream::fixed("hello").await;
    let path = temp_path("access.log");
    let gw = TestGateway::start(&with_log(
        up.addr,
        &format!(
            "target = {:?}\nformat = \"json\"",
            path.display().to_string()
        ),
    ))
    .await;
    let c = reqwest::Client::new();
    let r = c
        .post(gw.url("web", "/api/items?q=1"))
        .header("user-agent", "e2e/1")
        .body("12345")
        .send()
        .await
        .unwrap();
    let id = r.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_eq!(r.text().await.unwrap(), "hello");
    let r = c.get(gw.url("web", "/missing")).send().await.unwrap();
    let missing_id = r.headers()["x-request-id"].to_str().unwrap().to_string();
    expect_error(r, 404, "no_route").await;

    let lines = lines(&path, 2).await;
    let first: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
    let time = first["time"].as_str().unwrap();
    assert!(
        time.len() == 24 && time.ends_with('Z') && &time[10..11] == "T",
        "{time}"
    );
    assert_eq!(first["client"], "127.0.0.1");
    assert_eq!(first["method"], "POST");
    assert_eq!(first["protocol"], "HTTP/1.1");
    assert_eq!(first["host"], "127.0.0.1");
    assert_eq!(first["path"], "/api/items?q=1");
    assert_eq!(first["status"], 200);
    assert_eq!(first["bytes_in"], 5);
    assert_eq!(first["bytes_out"], 5);
    assert!(first["duration_ms"].as_f64().unwrap() >= 0.0);
    assert_eq!(first["route"], "api");
    assert_eq!(first["upstream"], "backend");
    assert_eq!(first["endpoint"], up.addr.to_string().as_str());
    assert_eq!(first["request_id"], id.as_str());
    assert_eq!(first["user_agent"], "e2e/1");

    let second: serde_json::Value = serde_json::from_str(&lines[1]).unwrap();
    assert_eq!(second["status"], 404);
    assert_eq!(second["path"], "/missing");
    assert_eq!(second["route"], serde_json::Value::Null);
    assert_eq!(second["upstream"], serde_json::Value::Null);
    assert_eq!(second["request_id"], missing_id.as_str());
    assert!(second["bytes_out"].as_u64().unwrap() > 0);
}

#[tokio::test]
async fn clf_lines_follow_the_common_log_format() {
    let up = Upstream::fixed("hello").await;
    let path = temp_path("access.log");
    let gw = TestGateway::start(&with_log(
        up.addr,
        &format!(
            "target = {:?}\nformat = \"clf\"",
            path.display().to_string()
        ),
    ))
    .await;
    let r = reqwest::get(gw.url("web", "/api/a?b=c")).await.unwrap();
    assert_eq!(r.text().await.unwrap(), "hello");
    let line = lines(&path, 1).await.remove(0);
    // 127.0.0.1 - - [27/Nov/2026:19:44:00 +0000] "GET /api/a?b=c HTTP/1.1" 200 5
    let (prefix, rest) = line.split_once(" [").unwrap();
    assert_eq!(prefix, "127.0.0.1 - -");
    let (time, rest) = rest.split_once("] ").unwrap();
    assert_eq!(time.len(), 26, "{time}");
    assert!(time.ends_with(" +0000") && &time[2..3] == "/" && &time[11..12] == ":");
    assert_eq!(rest, "\"GET /api/a?b=c HTTP/1.1\" 200 5");
}

/// With the log off, a request writes nothing. Shown by ordering: the log is turned on by
/// a reload, a second request is logged, and the file holds that line only (a request
/// takes its log target when it starts, so the first could only have logged before).
#[tokio::test]
async fn disabled_log_writes_nothing() {
    let up = Upstream::fixed("hello").await;
    let path = temp_path("access.log");
    let target = format!("target = {:?}", path.display().to_string());
    let off = with_log(up.addr, &format!("enabled = false\n{target}"));
    let gw = TestGateway::start(&off).await;
    let r = reqwest::get(gw.url("web", "/api/first")).await.unwrap();
    assert_eq!(r.text().await.unwrap(), "hello");
    assert!(!path.exists() || std::fs::read_to_string(&path).unwrap().is_empty());

    gw.gw
        .reload_text(&off.replace("enabled = false\n", "enabled = true\n"))
        .await
        .unwrap();
    let r = reqwest::get(gw.url("web", "/api/second")).await.unwrap();
    assert_eq!(r.text().await.unwrap(), "hello");
    let lines = lines(&path, 1).await;
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].contains("\"path\":\"/api/second\""),
        "{}",
        lines[0]
    );
}

/// With `global.request_id = false` nothing is generated for the upstream or the
/// client, yet every log line still names an id: the incoming one, or one made for it.
#[tokio::test]
async fn lines_carry_an_id_with_request_ids_off() {
    let up = Upstream::fixed("hello").await;
    let path = temp_path("access.log");
    let log = format!("target = {:?}", path.display().to_string());
    let cfg = format!("[global]\nrequest_id = false\n{}", with_log(up.addr, &log));
    let gw = TestGateway::start(&cfg).await;
    let c = reqwest::Client::new();
    let r = c
        .get(gw.url("web", "/api/a"))
        .header("x-request-id", "trace-9")
        .send()
        .await
        .unwrap();
    assert!(!r.headers().contains_key("x-request-id"));
    assert_eq!(r.text().await.unwrap(), "hello");
    let r = c.get(gw.url("web", "/api/b")).send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), "hello");
    assert!(!up.last().headers.contains_key("x-request-id"));

    let lines = lines(&path, 2).await;
    let first: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(first["request_id"], "trace-9");
    let second: serde_json::Value = serde_json::from_str(&lines[1]).unwrap();
    let made = second["request_id"].as_str().unwrap();
    assert!(
        made.len() == 32 && made.bytes().all(|b| b.is_ascii_hexdigit()),
        "{made}"
    );
}
