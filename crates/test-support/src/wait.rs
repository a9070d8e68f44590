//! Waiting in tests without sleeping: [`eventually`] yields until state another task
//! settles is there, [`Gate`] holds an upstream's requests until the test releases
//! them, and [`temp_path`] gives each test its own files.

use std::future::Future;
use std::sync::Arc;
use tokio::sync::{mpsc, Mutex, Notify};

/// Retries `check` (yielding to the gateway's tasks in between) until it returns
/// `Some`, up to a bounded number of tries: for state that settles in another task
/// right after the client saw its response, such as a log line written when a body ends.
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    for _ in 0..5_000 {
        if let Some(t) = check().await {
            return t;
        }
        tokio::task::yield_now().await;
        std::thread::yield_now();
    }
    panic!("gave up waiting for {what}");
}

/// A unique path under the system temp dir, in a directory named after `suite`.
pub fn temp_path(suite: &str, name: &str) -> std::path::PathBuf {
    crate::scratch::dir(suite).join(name)
}

/// Holds requests inside an upstream handler: the handler calls [`Gate::pass`], which
/// reports the arrival and waits for [`Gate::release`].
#[derive(Clone)]
pub struct Gate {
    release: Arc<Notify>,
    arrived_tx: mpsc::UnboundedSender<()>,
    arrived_rx: Arc<Mutex<mpsc::UnboundedReceiver<()>>>,
}

impl Default for Gate {
    fn default() -> Self {
        let (arrived_tx, rx) = mpsc::unbounded_channel();
        Gate {
            release: Arc::new(Notify::new()),
            arrived_tx,
            arrived_rx: Arc::new(Mutex::new(rx)),
        }
    }
}

impl Gate {
    /// In a handler: says a request arrived, then waits until released.
    pub async fn pass(&self) {
        let _ = self.arrived_tx.send(());
        self.release.notified().await;
    }

    /// In the test: waits until a request is held at the gate.
    pub async fn arrived(&self) {
        self.arrived_rx.lock().await.recv().await.unwrap();
    }

    /// Lets one held request go on.
    pub fn release(&self) {
        self.release.notify_one();
    }
}
