//! Active health checks: one task per endpoint probes it every interval (plus jitter,
//! so a fleet does not probe in lockstep) with a TCP connect or an HTTP request on a
//! fresh connection, and feeds the result to the endpoint's rise/fall counters. The
//! tasks belong to the group that started them and stop when it is dropped.

use super::health::Transition;
use super::Endpoint;
use crate::body::UpstreamBody;
use crate::http::client::Connector;
use gatehouse_config::spec::{
    CheckKind, HealthCheckSpec, HttpCheckSpec, UpstreamProtocol, UpstreamSpec,
};
use http::{header, HeaderValue, Request, Uri, Version};
use http_body_util::BodyExt;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

/// The most of a check response's body read to match `expect_body`.
const MAX_CHECK_BODY: usize = 64 * 1024;

/// The running checks of one group; aborted on drop.
pub struct Checks(Vec<JoinHandle<()>>);

impl Drop for Checks {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

impl Checks {
    /// Starts a check task per endpoint; `None` outside a tokio runtime (`check` CLI).
    pub fn start(
        h: &HealthCheckSpec,
        spec: &UpstreamSpec,
        endpoints: &[Arc<Endpoint>],
        connector: &Connector,
    ) -> Option<Checks> {
        let rt = tokio::runtime::Handle::try_current().ok()?;
        let tasks = endpoints
            .iter()
            .map(|ep| {
                let probe = Probe {
                    ep: ep.clone(),
                    spec: h.clone(),
                    connector: connector.clone(),
                    tls: spec.tls.is_some(),
                    group: Arc::from(spec.name.as_str()),
                };
                rt.spawn(probe.run())
            })
            .collect();
        Some(Checks(tasks))
    }
}

struct Probe {
    ep: Arc<Endpoint>,
    spec: HealthCheckSpec,
    connector: Connector,
    tls: bool,
    group: Arc<str>,
}

impl Probe {
    async fn run(self) {
        let h = &self.spec;
        tokio::time::sleep(jitter(h.jitter)).await;
        loop {
            let result = match tokio::time::timeout(h.timeout, self.once()).await {
                Ok(r) => r,
                Err(_) => Err(format!("no answer within {:?}", h.timeout)),
            };
            let ok = result.is_ok();
            let t = self.ep.health.checked(ok, result.err(), h.rise, h.fall);
            match t {
                Transition::WentDown => {
                    let err = self.ep.health.check_state().last_error.unwrap_or_default();
                    tracing::warn!(upstream = %self.group, endpoint = %self.ep.label, error = %err, "health check: endpoint down");
                }
                Transition::CameUp => {
                    tracing::info!(upstream = %self.group, endpoint = %self.ep.label, "health check: endpoint up");
                }
                Transition::None => {}
            }
            tokio::time::sleep(h.interval + jitter(h.jitter)).await;
        }
    }

    async fn once(&self) -> Result<(), String> {
        match &self.spec.kind {
            CheckKind::Tcp => self
                .connector
                .reach(&self.ep)
                .await
                .map_err(|e| e.message()),
            CheckKind::Http(c) => self.http(c).await,
        }
    }

    async fn http(&self, c: &HttpCheckSpec) -> Result<(), String> {
        let lease = self
            .connector
            .fresh(&self.ep)
            .await
            .map_err(|e| e.message())?;
        let host = c.host.as_deref().unwrap_or(&self.ep.label);
        let req = self.request(c, host).map_err(|e| e.to_string())?;
        let resp = self
            .connector
            .send(&self.ep, lease, req, None)
            .await
            .map_err(|e| e.message())?;
        let status = resp.status().as_u16();
        if !c
            .expect_status
            .iter()
            .any(|(a, b)| (*a..=*b).contains(&status))
        {
            return Err(format!("status {status} is not expected"));
        }
        let Some(want) = &c.expect_body else {
            return Ok(());
        };
        let body = http_body_util::Limited::new(resp.into_body(), MAX_CHECK_BODY)
            .collect()
            .await
            .map_err(|e| format!("reading the body: {e}"))?
            .to_bytes();
        if String::from_utf8_lossy(&body).contains(want.as_str()) {
            Ok(())
        } else {
            Err(format!("body does not contain `{want}`"))
        }
    }

    fn request(&self, c: &HttpCheckSpec, host: &str) -> Result<Request<UpstreamBody>, http::Error> {
        let b = Request::builder().method(c.method.clone());
        let b = match self.connector.protocol {
            UpstreamProtocol::Http1 => b
                .uri(c.path.as_str())
                .version(Version::HTTP_11)
                .header(header::HOST, host)
                .header(header::CONNECTION, "close"),
            UpstreamProtocol::Http2 => {
                let scheme = if self.tls { "https" } else { "http" };
                let uri: Uri = format!("{scheme}://{host}{}", c.path).parse()?;
                b.uri(uri).version(Version::HTTP_2)
            }
        };
        b.header(
            header::USER_AGENT,
            HeaderValue::from_static("gatehouse-health-check"),
        )
        .body(UpstreamBody::Empty)
    }
}

/// A uniform pause in [0, max].
fn jitter(max: Duration) -> Duration {
    Duration::from_micros(fastrand::u64(..=max.as_micros() as u64))
}
