//! The running process: SIGHUP reloads the file, `--watch` reloads when the file
//! changes, SIGTERM drains and exits 0, and SIGUSR2 (`gatehouse upgrade`) hands the
//! sockets to a new process under load without a failed request or a refused
//! connection. The binary runs as a child on port 0; its
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
    let p = gatehouse_test_support::scratch::dir("process").join(name);
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
            } else if let Some(pid) = f["pid"].as_u64() {
                format!("{} pid={pid}", f["message"].as_str().unwrap_or_default())
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

/// The status line's code for `GET path`.
fn status_of(addr: SocketAddr, path: &str) -> u16 {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

#[test]
fn watch_reloads_when_an_openapi_document_changes() {
    let dir = temp_config("doc-watch.toml", "x");
    let doc = dir.with_file_name("doc-watch.yaml");
    let spec = |max: u32| {
        format!("openapi: 3.1.0\npaths:\n  /a:\n    get:\n      parameters:\n        - {{ name: n, in: query, schema: {{ type: integer, maximum: {max} }} }}\n")
    };
    std::fs::write(&doc, spec(5)).unwrap();
    // Port 1 refuses: a request the document lets through gets 502, one it refuses 400.
    let text = config("x").replace(
        "[[routes]]",
        &format!("[[upstreams]]\nname = \"gone\"\nendpoints = [\"127.0.0.1:1\"]\n\n[[routes]]\nname = \"api\"\nmatch.prefix = \"/a\"\nupstream = \"gone\"\nopenapi = \"{}\"\n\n[[routes]]", doc.display()),
    );
    std::fs::write(&dir, text).unwrap();
    let (child, addr, _logs) = start(&dir, &["--watch"]);
    let mut child = Running(child);
    assert_eq!(status_of(addr, "/a?n=9"), 400);
    std::fs::write(&doc, spec(10)).unwrap();
    for _ in 0..200 {
        if status_of(addr, "/a?n=9") == 502 {
            signal(&child.0, "-INT");
            assert_eq!(child.0.wait().unwrap().code(), Some(0));
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("the edited document was never applied");
}

/// Load against `addr` until `stop`: each thread either opens a connection per request
/// or keeps one alive. A request on a kept-alive connection that the server closed
/// before any answer (its drain closing an idle connection as the request went out) is
/// sent once more on a new connection, as HTTP clients do (RFC 9112 9.3.1).
#[derive(Default)]
struct Load {
    ok: std::sync::atomic::AtomicUsize,
    failed: std::sync::atomic::AtomicUsize,
    refused: std::sync::atomic::AtomicUsize,
    resent: std::sync::atomic::AtomicUsize,
}

impl Load {
    fn run(
        self: std::sync::Arc<Self>,
        addr: SocketAddr,
        keep_alive: bool,
        stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    ) {
        use std::sync::atomic::Ordering::Relaxed;
        let mut conn: Option<TcpStream> = None;
        while !stop.load(Relaxed) {
            let reused = conn.is_some();
            let c = match conn.take() {
                Some(c) => c,
                None => match TcpStream::connect(addr) {
                    Ok(c) => c,
                    Err(_) => {
                        self.refused.fetch_add(1, Relaxed);
                        continue;
                    }
                },
            };
            match one(c, keep_alive) {
                Some(next) => {
                    self.ok.fetch_add(1, Relaxed);
                    conn = next;
                }
                None if reused => {
                    self.resent.fetch_add(1, Relaxed);
                }
                None => {
                    self.failed.fetch_add(1, Relaxed);
                }
            }
        }
    }
}

/// One `GET /` answered `hi`; the connection back when it stays open.
fn one(mut c: TcpStream, keep_alive: bool) -> Option<Option<TcpStream>> {
    c.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let req: &[u8] = if keep_alive {
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    } else {
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    };
    c.write_all(req).ok()?;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = c.read(&mut buf).ok()?;
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
        if got.ends_with(b"\r\n\r\nhi") {
            break;
        }
    }
    let text = String::from_utf8_lossy(&got);
    if !(text.starts_with("HTTP/1.1 200") && text.ends_with("hi")) {
        return None;
    }
    let closing = text.to_ascii_lowercase().contains("connection: close");
    Some((keep_alive && !closing).then_some(c))
}

#[test]
fn sigusr2_hands_the_sockets_over_under_load_losing_nothing() {
    use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
    use std::sync::Arc;
    let path = temp_config("upgrade.toml", "hi");
    let (old, addr, logs) = start(&path, &[]);
    let mut old = Running(old);
    let load = Arc::new(Load::default());
    let stop = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = (0..6)
        .map(|i| {
            let (load, stop) = (load.clone(), stop.clone());
            std::thread::spawn(move || load.run(addr, i % 2 == 0, stop))
        })
        .collect();
    let served = |n: usize| {
        let target = load.ok.load(Relaxed) + n;
        for _ in 0..2000 {
            if load.ok.load(Relaxed) >= target {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        panic!("the load stalled");
    };
    served(500);
    let ok = Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(["upgrade", "--pid", &old.0.id().to_string()])
        .output()
        .unwrap();
    assert!(ok.status.success(), "{ok:?}");
    let line = wait_for(&logs, "upgrade: the new process serves");
    let new_pid: u32 = line.rsplit("pid=").next().unwrap().parse().unwrap();
    assert_ne!(new_pid, old.0.id());
    // The old process drains and exits 0; the new one goes on answering.
    assert_eq!(old.0.wait().unwrap().code(), Some(0));
    served(500);
    stop.store(true, Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    let _ = Command::new("kill").arg(new_pid.to_string()).status();
    let (done, failed, refused, resent) = (
        load.ok.load(Relaxed),
        load.failed.load(Relaxed),
        load.refused.load(Relaxed),
        load.resent.load(Relaxed),
    );
    println!("upgrade under load: {done} requests, {failed} failed, {refused} connections refused, {resent} sent again after a kept-alive close");
    assert_eq!((failed, refused), (0, 0));
}

/// A new binary that cannot start (here: the config file went bad) fails the upgrade;
/// the running process says why and keeps serving.
#[test]
fn a_failed_upgrade_leaves_the_old_process_serving() {
    let path = temp_config("upgrade-bad.toml", "still here");
    let (child, addr, logs) = start(&path, &[]);
    let mut child = Running(child);
    assert_eq!(get(addr), "still here");
    std::fs::write(&path, "this is = = not toml").unwrap();
    signal(&child.0, "-USR2");
    wait_for(&logs, "upgrade failed");
    assert_eq!(get(addr), "still here");
    signal(&child.0, "-TERM");
    assert_eq!(child.0.wait().unwrap().code(), Some(0));
}
