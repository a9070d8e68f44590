//! Process signals and file watching: SIGHUP reloads, SIGTERM/SIGINT start the drain,
//! and `--watch` reloads when the config file's contents change.

use gatehouse_core::Gateway;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::signal::unix::{signal, SignalKind};

/// Serves reload signals until a shutdown signal arrives.
pub async fn until_shutdown(gw: &Arc<Gateway>) -> anyhow::Result<()> {
    let mut hup = signal(SignalKind::hangup())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    loop {
        tokio::select! {
            _ = hup.recv() => {
                tracing::info!("SIGHUP: reloading config");
                let _ = gw.reload().await;
            }
            _ = term.recv() => return Ok(()),
            _ = int.recv() => return Ok(()),
        }
    }
}

/// Polls the config file once a second and reloads when its contents change.
/// `started_with` is the text read at start, so a change made before this task first
/// runs is still seen as a change.
pub async fn watch_file(path: PathBuf, gw: Arc<Gateway>, started_with: Vec<u8>) {
    let mut last = Some(started_with);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let now = tokio::fs::read(&path).await.ok();
        if now.is_some() && now != last {
            tracing::info!(file = %path.display(), "config file changed: reloading");
            let _ = gw.reload().await;
            last = now;
        }
    }
}
