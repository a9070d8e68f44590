//! The running process: SIGHUP reloads the file, `--watch` reloads when the file
//! changes, and SIGTERM drains and exits 0. The binary runs as a child on port 0; its
//! JSON logs on stderr say where it listens. State that settles in the child (a reload)
//! is polled with a bounded patience.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

fn config(body: &str) -> String {
    format!(
        r#"
[global]
workers = 1
drain_timeout = "5s"

[access_log]
enabled = false

[[listeners]]
name = "web"
listen = "127.0.0.1:0"

[[routes]]
name = "home"
respond = {{ status = 200, body = "{body}" }}
"#
    )
}

fn temp_config(name: &str, body: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("gatehouse-process-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, config(body)).unwrap();
    p
}

/// Starts the binary; returns it, the `web` listener's address (read from its log) and
/// the messages it logs afterwards.
fn start(config: &Path, extra: &[&str]) -> (Child, SocketAddr, mpsc::Receiver<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args([
            "--log-format",
            "json",
            "run",
            "--config",
            config.to_str().unwrap(),
        ])
        .args(extra)
        .env_remove("GATEHOUSE_LOG")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
            let f = &v["fields"];
            let msg = if f["listener"] == "web" {
                format!("address {}", f["address"].as_str().unwrap_or_default())
            } else {
                f["message"].as_str().unwrap_or_default().to_string()
            };
            let _ = tx.send(msg);
        }
    });
    let addr = wait_for(&rx, "address ");
    (
        child,
        addr.trim_start_matches("address ").parse().unwrap(),
        rx,
    )
}

/// The next logged message starting with `prefix` (bounded patience).
fn wait_for(rx: &mpsc::Receiver<String>, prefix: &str) -> String {
    loop {
        let msg = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("no log line {prefix:?}"));
        if msg.starts_with(prefix) {
            return msg;
        }
    }
}

fn get(addr: SocketAddr) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out.rsplit("\r\n\r\n")
        .next()
        .unwrap_or_default()
        .to_string()
}

/// Polls until the gateway answers `want` (a reload is applied in the child).
fn eventually_answers(addr: SocketAddr, want: &str) {
    for _ in 0..200 {
        if get(addr) == want {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("the gateway never answered {want:?}");
}

/// Kills the child if a test fails before it has exited, so no gateway outlives its test.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

#[test]
fn sighup_reloads_the_file_and_sigterm_drains_and_exits_zero() {
    let path = temp_config("hup.toml", "one");
    let (child, addr, logs) = start(&path, &[]);
    let mut child = Running(child);
    assert_eq!(get(addr), "one");
    std::fs::write(&path, config("two")).unwrap();
    // Without --watch, nothing changes until SIGHUP.
    assert_eq!(get(addr), "one");
    signal(&child.0, "-HUP");
    eventually_answers(addr, "two");
    // A bad file on SIGHUP is rejected and the running config stays.
    std::fs::write(&path, "this is = = not toml").unwrap();
    signal(&child.0, "-HUP");
    wait_for(&logs, "config reload rejected");
    assert_eq!(get(addr), "two");
    signal(&child.0, "-TERM");
    let status = child.0.wait().unwrap();
    assert_eq!(status.code(), Some(0));
}

#[test]
fn watch_reloads_when_the_file_changes() {
    let path = temp_config("watch.toml", "one");
    let (child, addr, _logs) = start(&path, &["--watch"]);
    let mut child = Running(child);
    assert_eq!(get(addr), "one");
    std::fs::write(&path, config("two")).unwrap();
    eventually_answers(addr, "two");
    signal(&child.0, "-INT");
    assert_eq!(child.0.wait().unwrap().code(), Some(0));
}
