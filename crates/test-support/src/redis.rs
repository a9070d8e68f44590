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
    /// A port found free can be taken by another test before the server binds it; the
    /// server then ends at once, and another port is tried.
    pub async fn start_with(args: impl Fn(u16) -> Vec<String>) -> RedisServer {
        let mut last = String::new();
        for _ in 0..3 {
            let port = free_port();
            let mut r = RedisServer {
                port,
                args: args(port),
                child: None,
            };
            match r.try_start().await {
                Ok(()) => return r,
                Err(e) => last = e,
            }
        }
        panic!("redis-server did not start on three ports: {last}")
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts (again) on the same port.
    pub async fn restart(&mut self) {
        if let Err(e) = self.try_start().await {
            panic!("redis-server on port {} did not start: {e}", self.port);
        }
    }

    /// Starts on `port`; the error is the server's last log line when it ended first.
    async fn try_start(&mut self) -> Result<(), String> {
        self.stop().await;
        let tls = self.args.iter().any(|a| a == "--tls-port");
        let plain = if tls {
            "0".to_string()
        } else {
            self.port.to_string()
        };
        // Any file a server writes (a replica's sync, say) goes to a scratch folder,
        // not into the crate the test runs in.
        let dir = crate::scratch::dir("redis");
        let mut child = Command::new("redis-server")
            .args(["--port", &plain, "--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(&dir)
            .args(&self.args)
            .args(["--save", "", "--appendonly", "no", "--logfile", ""])
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("redis-server is installed (apt-get install redis-server)");
        let out = child.stdout.take().unwrap();
        let mut lines = BufReader::new(out).lines();
        let mut last = String::new();
        loop {
            match lines.next_line().await {
                Ok(Some(l)) if l.contains("Ready to accept connections") => break,
                Ok(Some(l)) => last = l,
                Ok(None) => return Err(last),
                Err(e) => return Err(e.to_string()),
            }
        }
        // Keep draining its log so the server never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        self.child = Some(child);
        Ok(())
    }

    /// Stops the server where it is (SIGSTOP, by its PID): its sockets stay open and
    /// nothing is answered, as a server too slow to answer looks, until `resume`.
    pub async fn pause(&self) {
        self.signal("-STOP").await;
    }

    /// Lets a paused server go on (SIGCONT).
    pub async fn resume(&self) {
        self.signal("-CONT").await;
    }

    async fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().and_then(|c| c.id()).expect("running");
        let ok = Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()
            .await
            .is_ok_and(|s| s.success());
        assert!(ok, "kill {sig} {pid}");
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

/// A real Sentinel (`redis-server --sentinel`) watching one primary, which it calls
/// failed after a second without an answer and replaces by a replica at once (quorum
/// 1). A second, not less: a loaded test machine can keep a server from answering for
/// a fifth of one, and a failover nobody asked for fails the test that did not.
/// Its log is kept as a stream of lines so a test waits for an event, not a time.
pub struct Sentinel {
    pub port: u16,
    lines: tokio::sync::mpsc::UnboundedReceiver<String>,
    dir: std::path::PathBuf,
    child: Child,
}

impl Sentinel {
    /// Starts watching `primary` under the name `master`, ready once it listens (its
    /// `+monitor` event comes after) and has seen `replicas` replicas of it (a failover
    /// needs one).
    pub async fn start(master: &str, primary: u16, replicas: usize) -> Sentinel {
        let port = free_port();
        let dir = crate::scratch::dir("sentinel");
        // Sentinel rewrites its config file, so it is one of its own.
        let conf = dir.join("sentinel.conf");
        std::fs::write(
            &conf,
            format!(
                "port {port}\nbind 127.0.0.1\ndir {dir}\nsentinel monitor {master} 127.0.0.1 {primary} 1\n\
                 sentinel down-after-milliseconds {master} 1000\nsentinel failover-timeout {master} 2000\n",
                dir = dir.display()
            ),
        )
        .unwrap();
        let mut child = Command::new("redis-server")
            .arg(&conf)
            .args(["--sentinel", "--logfile", ""])
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("redis-server is installed (apt-get install redis-server)");
        let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
        let (tx, lines) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok(Some(l)) = out.next_line().await {
                let _ = tx.send(l);
            }
        });
        let mut s = Sentinel {
            port,
            lines,
            dir,
            child,
        };
        s.wait_for("+monitor ").await;
        for _ in 0..replicas {
            s.wait_for("+slave ").await;
        }
        s
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Waits for the next log line holding `what` (`+switch-master`, say), and returns it.
    pub async fn wait_for(&mut self, what: &str) -> String {
        loop {
            match self.lines.recv().await {
                Some(l) if l.contains(what) => return l,
                Some(_) => {}
                None => panic!("Sentinel on port {} ended before `{what}`", self.port),
            }
        }
    }
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
