//! A `tcp` listener's connection: pick and connect an endpoint of its upstream, pipe
//! the bytes both ways, write one access line when both sides are done.

use super::{connect, pipe, Counts, End, Session};
use crate::drain::Watch;
use crate::upstream::UpstreamGroup;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};

/// Serves one client connection until it ends.
pub async fn serve<C>(client: C, s: Session, group: Arc<UpstreamGroup>, watch: Watch)
where
    C: AsyncRead + AsyncWrite + Unpin,
{
    forward(client, &s, &group, Vec::new(), None, watch).await;
}

/// Connects to `group`, sends `first` (bytes already read from the client), then pipes.
/// Shared with passthrough, which has read the ClientHello by then.
pub(super) async fn forward<C>(
    client: C,
    s: &Session,
    group: &UpstreamGroup,
    first: Vec<u8>,
    sni: Option<&str>,
    watch: Watch,
) where
    C: AsyncRead + AsyncWrite + Unpin,
{
    let counts = Arc::new(Counts::default());
    let (mut upstream, in_flight) = match connect(group, s.client, s.local).await {
        Ok(x) => x,
        Err(e) => {
            tracing::debug!(listener = %s.listener, error = %e.message(), "no upstream connection");
            s.log(Some(&group.name), None, sni, &counts, Some(e.kind.code()));
            return;
        }
    };
    if !first.is_empty() {
        use tokio::io::AsyncWriteExt;
        if let Err(e) = upstream.write_all(&first).await {
            in_flight.failed();
            tracing::debug!(error = %e, "could not replay the client's first bytes");
            let label = Some(&*in_flight.endpoint().label);
            s.log(
                Some(&group.name),
                label,
                sni,
                &counts,
                Some("upstream_write_failed"),
            );
            return;
        }
        // The replayed bytes came from the client: count them as received.
        let n = first.len() as u64;
        counts
            .received
            .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
        s.bytes.received.inc_by(n);
    }
    let closing = in_flight.endpoint().closing();
    let end = pipe(client, upstream, s, &counts, watch, closing).await;
    let error = match end {
        End::Closed => None,
        End::Idle => Some("idle_timeout"),
        End::Drained => Some("drained"),
        End::Error => Some("connection_error"),
    };
    let label = Some(&*in_flight.endpoint().label);
    s.log(Some(&group.name), label, sni, &counts, error);
}
