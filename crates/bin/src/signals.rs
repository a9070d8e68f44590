//! Process signals and file watching: SIGHUP reloads, SIGTERM/SIGINT start the drain,
//! SIGUSR2 hands the sockets to the binary now at this one's path and then drains (see
//! `gatehouse_core::upgrade`), and `--watch` reloads when the config file's contents
//! change.

use gatehouse_core::{upgrade, Gateway};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::signal::unix::{signal, SignalKind};

/// Serves reload and upgrade signals until a shutdown signal arrives or a new binary
/// took over; either way the caller drains next.
pub async fn until_shutdown(gw: &Arc<Gateway>, exe: &Path) -> anyhow::Result<()> {
    let mut hup = signal(SignalKind::hangup())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut usr2 = signal(SignalKind::user_defined2())?;
    loop {
        tokio::select! {
            _ = hup.recv() => {
                tracing::info!("SIGHUP: reloading config");
                let _ = gw.reload().await;
            }
            _ = usr2.recv() => {
                tracing::info!(binary = %exe.display(), "SIGUSR2: upgrading");
                let command = upgrade::same_command(exe);
                match upgrade::hand_over(command, gw.handover_sockets()).await {
                    Ok(pid) => {
                        tracing::info!(pid, "upgrade: the new process serves; this one drains");
                        gw.handed_over();
                        return Ok(());
                    }
                    Err(e) => tracing::error!(error = %e, "upgrade failed; this process keeps serving"),
                }
            }
            _ = term.recv() => return Ok(()),
            _ = int.recv() => return Ok(()),
        }
    }
}

/// `gatehouse upgrade --pid PID`: asks that gateway to upgrade itself.
pub fn send_upgrade(pid: i32) -> anyhow::Result<std::process::ExitCode> {
    let p = rustix::process::Pid::from_raw(pid)
        .ok_or_else(|| anyhow::anyhow!("{pid} is not a process id"))?;
    rustix::process::kill_process(p, rustix::process::Signal::USR2)
        .map_err(|e| anyhow::anyhow!("cannot signal {pid}: {e}"))?;
    println!("sent SIGUSR2 to {pid}: it hands its sockets to the binary at its path, then drains");
    Ok(std::process::ExitCode::SUCCESS)
}

/// Polls the config file, and the OpenAPI documents its routes name, once a second and
/// reloads when their contents change. `started_with` is the config text read at
/// start and `documents` the documents' (see [`documents_now`]), so a change made
/// before this task first runs is still seen as a change.
pub async fn watch_file(
    path: PathBuf,
    gw: Arc<Gateway>,
    started_with: Vec<u8>,
    documents_at_start: Vec<Option<Vec<u8>>>,
) {
    let mut last = Some(started_with);
    let mut last_documents = documents_at_start;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let now = tokio::fs::read(&path).await.ok();
        let now_documents = documents(&gw).await;
        let config_changed = now.is_some() && now != last;
        if config_changed || now_documents != last_documents {
            let what = if config_changed {
                "config file"
            } else {
                "an OpenAPI document"
            };
            tracing::info!(file = %path.display(), "{what} changed: reloading");
            let _ = gw.reload().await;
            last = now.or(last);
            // Read again: the reload may have named other documents.
            last_documents = documents(&gw).await;
        }
    }
}

/// [`documents`], read before the runtime serves anything.
pub fn documents_now(gw: &Gateway) -> Vec<Option<Vec<u8>>> {
    let snap = gw.snapshot();
    snap.spec
        .documents()
        .map(|(_, file)| std::fs::read(file).ok())
        .collect()
}

/// The contents of the OpenAPI documents the running config names (`None` for one
/// that cannot be read).
async fn documents(gw: &Gateway) -> Vec<Option<Vec<u8>>> {
    let snap = gw.snapshot();
    let mut out = Vec::new();
    for (_, file) in snap.spec.documents() {
        out.push(tokio::fs::read(file).await.ok());
    }
    out
}
