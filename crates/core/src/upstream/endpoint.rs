//! One endpoint of an upstream group: its address, counters, health and connection pool,
//! and the signal that closes its tunnels once it has been drained.

use super::health::Health;
use crate::http::client::Pool;
use gatehouse_config::spec::{EndpointSpec, PoolSpec};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// An address in an upstream group, with the state that outlives config generations.
pub struct Endpoint {
    pub spec: EndpointSpec,
    /// `host:port`, the label used in logs and metrics.
    pub label: Arc<str>,
    /// The address when `host` is an IP literal; names are resolved on connect.
    pub addr: Option<SocketAddr>,
    pub pool: Pool,
    pub in_flight: AtomicUsize,
    pub requests: AtomicU64,
    pub failures: AtomicU64,
    pub health: Health,
    /// Set once a drained endpoint's grace for long-lived connections has run out.
    closing: watch::Sender<bool>,
}

/// Counts a request as in flight on its endpoint until dropped.
pub struct InFlight(Arc<Endpoint>);

// === impl Endpoint ===

impl Endpoint {
    pub fn new(spec: EndpointSpec, pool: PoolSpec) -> Self {
        let addr = spec
            .host
            .parse()
            .ok()
            .map(|ip| SocketAddr::new(ip, spec.port));
        Endpoint {
            label: Arc::from(spec.address.as_str()),
            addr,
            spec,
            pool: Pool::new(pool),
            in_flight: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            health: Health::new(),
            closing: watch::Sender::new(false),
        }
    }

    /// A receiver that turns true when tunnels to this endpoint must close.
    pub fn closing(&self) -> watch::Receiver<bool> {
        self.closing.subscribe()
    }

    /// Drains this endpoint (admin API): no new requests; once in-flight ones end or
    /// `timeout` passes, idle connections close; tunnels get `grace` before they are
    /// cut. Undraining before then stops all of it.
    pub fn drain(self: &Arc<Self>, timeout: Duration, grace: Duration) {
        if self.health.is_draining() {
            return;
        }
        self.health.set_draining(true);
        self.close_after(timeout, grace, true);
    }

    /// Winds down an endpoint a reload removed. It is not marked draining: requests
    /// still running on the previous generation may pick it for a moment, and must
    /// not find it refused; the new generation no longer lists it.
    pub fn retire(self: &Arc<Self>, timeout: Duration, grace: Duration) {
        self.close_after(timeout, grace, false);
    }

    fn close_after(self: &Arc<Self>, timeout: Duration, grace: Duration, undrainable: bool) {
        let ep = self.clone();
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let cancelled = move |ep: &Endpoint| undrainable && !ep.health.is_draining();
        rt.spawn(async move {
            let start = tokio::time::Instant::now();
            let mut tick = tokio::time::interval(Duration::from_millis(50));
            while ep.in_flight.load(Ordering::Relaxed) > 0 && start.elapsed() < timeout {
                tick.tick().await;
            }
            if cancelled(&ep) {
                return;
            }
            ep.pool.close_idle();
            tracing::info!(endpoint = %ep.label, "endpoint drained");
            tokio::time::sleep_until(start + grace.max(timeout)).await;
            if !cancelled(&ep) {
                ep.closing.send_replace(true);
            }
        });
    }

    /// Takes a drained endpoint back into rotation.
    pub fn undrain(&self) {
        self.health.set_draining(false);
        self.closing.send_replace(false);
    }

    /// Marks a request as started on this endpoint.
    pub fn start(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.requests.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }
}

/// Resolves once `closing` (from [`Endpoint::closing`]) turns true. An endpoint that is
/// dropped without being drained never closes its tunnels, so a dropped sender waits
/// forever rather than ending them.
pub async fn closed(closing: &mut watch::Receiver<bool>) {
    if closing.wait_for(|c| *c).await.is_err() {
        std::future::pending::<()>().await;
    }
}

impl InFlight {
    pub fn endpoint(&self) -> &Arc<Endpoint> {
        &self.0
    }

    /// Records a failed request on the endpoint.
    pub fn failed(&self) {
        self.0.failures.fetch_add(1, Ordering::Relaxed);
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}
