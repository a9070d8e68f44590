//! A real `redis-server` (Debian's package) for the tests, on a free loopback port,
//! with no persistence. Started by the test, ready when the server says so on its log
//! (no polling), and killed by its own PID when dropped or when a test stops it to
//! show what a dead Redis does.

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub struct RedisServer {
    pub port: u16,
    /// Extra arguments (TLS, a password, cluster mode), given again on a restart.
    args: Vec<String>,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts a server on a free port; panics if `redis-server` is not installed.
    pub async fn start() -> RedisServer {
        Self::start_with(|_| Vec::new()).await
    }

    /// Starts a server with extra arguments made from its port (for TLS, where the TLS
    /// port is the one served and the plain one is turned off, or for cluster mode).
    pub async fn start_with(args: impl FnOnce(u16) -> Vec<String>) -> RedisServer {
        let port = free_port();
        let mut r = RedisServer {
            port,
            args: args(port),
            child: None,
        };
        r.restart().await;
        r
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts (again) on the same port.
    pub async fn restart(&mut self) {
        self.stop().await;
        let tls = self.args.iter().any(|a| a == "--tls-port");
        let plain = if tls {
            "0".to_string()
        } else {
            self.port.to_string()
        };
        let mut child = Command::new("redis-server")
            .args(["--port", &plain, "--bind", "127.0.0.1"])
            .args(&self.args)
            .args(["--save", "", "--appendonly", "no", "--logfile", ""])
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("redis-server is installed (apt-get install redis-server)");
        let out = child.stdout.take().unwrap();
        let mut lines = BufReader::new(out).lines();
        loop {
            match lines.next_line().await {
                Ok(Some(l)) if l.contains("Ready to accept connections") => break,
                Ok(Some(_)) => {}
                other => panic!(
                    "redis-server on port {} did not start: {other:?}",
                    self.port
                ),
            }
        }
        // Keep draining its log so the server never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        self.child = Some(child);
    }

    /// Kills the server (SIGKILL, by its PID) and waits for it to be gone.
    pub async fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.start_kill();
            let _ = c.wait().await;
        }
    }
}

/// A port nobody listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap()
}
