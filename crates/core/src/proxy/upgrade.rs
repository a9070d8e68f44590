//! HTTP/1.1 upgrades (WebSocket and others): once the upstream answers 101, both
//! connections are taken over from hyper and bytes are copied both ways until either
//! side closes. The tunnel belongs to no config generation, so reloads leave it alone.

use crate::drain::Watch;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

/// Spawns the tunnel between an upgraded client and upstream connection.
/// The tunnel ends when either side closes, or when its endpoint has been drained and
/// its grace has run out (`closing` turns true).
pub(super) fn tunnel(
    client: OnUpgrade,
    upstream: OnUpgrade,
    drain: Watch,
    mut closing: tokio::sync::watch::Receiver<bool>,
) {
    tokio::spawn(async move {
        let (c, u) = match tokio::try_join!(client, upstream) {
            Ok(pair) => pair,
            Err(e) => {
                tracing::debug!(error = %e, "upgrade failed");
                return;
            }
        };
        let mut c = TokioIo::new(c);
        let mut u = TokioIo::new(u);
        // The drain watch is held, not awaited: shutdown waits for tunnels until its
        // drain timeout, then the process exits and closes them.
        let _held = drain;
        tokio::select! {
            r = crate::copy::copy_both(&mut c, &mut u) => {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "upgraded connection ended with an error");
                }
            }
            _ = crate::upstream::endpoint::closed(&mut closing) => {
                tracing::info!("tunnel closed: its endpoint was drained");
            }
        }
    });
}
