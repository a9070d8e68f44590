//! Drain signalling: a [`Drain`] tells every [`Watch`] to wind down, then waits until all
//! of them are dropped. Listeners, connections and upgraded tunnels each hold a `Watch`,
//! so one mechanism serves listener removal on reload and graceful shutdown.

use tokio::sync::watch;

/// The sending side, held by whoever may stop a listener.
pub struct Drain {
    tx: watch::Sender<bool>,
}

/// The receiving side, held by everything that must finish before the drain completes.
#[derive(Clone)]
pub struct Watch {
    rx: watch::Receiver<bool>,
}

impl Drain {
    pub fn new() -> (Drain, Watch) {
        let (tx, rx) = watch::channel(false);
        (Drain { tx }, Watch { rx })
    }

    /// Tells every watch to wind down.
    pub fn signal(&self) {
        self.tx.send_replace(true);
    }

    /// A new watch on this drain.
    pub fn watch(&self) -> Watch {
        Watch {
            rx: self.tx.subscribe(),
        }
    }

    /// Resolves once every watch has been dropped.
    pub async fn wait(&self) {
        self.tx.closed().await;
    }

    /// Watches still held.
    pub fn holders(&self) -> usize {
        self.tx.receiver_count()
    }
}

impl Watch {
    /// Resolves once the drain has been signalled.
    pub async fn signaled(&mut self) {
        let _ = self.rx.wait_for(|v| *v).await;
    }

    pub fn is_signaled(&self) -> bool {
        *self.rx.borrow()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn wait_returns_when_all_watches_drop() {
        let (drain, w1) = Drain::new();
        let mut w2 = drain.watch();
        let task = tokio::spawn(async move {
            w2.signaled().await;
        });
        drain.signal();
        task.await.unwrap();
        assert_eq!(drain.holders(), 1);
        assert!(w1.is_signaled());
        drop(w1);
        tokio::time::timeout(std::time::Duration::from_secs(1), drain.wait())
            .await
            .unwrap();
    }
}
