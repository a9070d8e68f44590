//! HTTP/1.1 upgrades (WebSocket and others): once the upstream answers 101, the client
//! connection is taken over from hyper and the upstream one from the own client (with
//! any bytes it read past the 101), and bytes are copied both ways until either side
//! closes. The tunnel belongs to no config generation, so reloads leave it alone.

use crate::drain::Watch;
use crate::http::h1::conn::Wire;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

/// Spawns the tunnel between an upgraded client and upstream connection.
/// The tunnel ends when either side closes, or when its endpoint has been drained and
/// its grace has run out (`closing` turns true).
pub(super) fn tunnel(
    client: OnUpgrade,
    mut upstream: Box<Wire>,
    drain: Watch,
    mut closing: tokio::sync::watch::Receiver<bool>,
    held: Option<crate::filter::Held>,
) {
    tokio::spawn(async move {
        let _held = held;
        let c = match client.await {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(error = %e, "upgrade failed");
                return;
            }
        };
        let mut c = TokioIo::new(c);
        // The drain watch is held, not awaited: shutdown waits for tunnels until its
        // drain timeout, then the process exits and closes them.
        let _held = drain;
        tokio::select! {
            r = crate::copy::copy_both(&mut c, &mut *upstream) => {
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
