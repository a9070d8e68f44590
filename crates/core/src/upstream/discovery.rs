//! DNS service discovery for an upstream group: a task looks the name up (A and AAAA
//! for `dns = "name:port"`, SRV for `srv = "_svc._proto.name"`, taking the records of
//! the best priority with their ports and weights), swaps in new members when the set
//! changes, and looks again when the answer's TTL runs out (within `min_refresh` and
//! `max_refresh`). A failed or empty lookup keeps the last good set. Endpoints that
//! stay keep their pools and health; those that go are retired like on a reload.

use super::{Endpoint, Members};
use crate::http::client::Connector;
use arc_swap::ArcSwap;
use gatehouse_config::spec::{DiscoverySpec, DnsTarget, EndpointSpec, UpstreamSpec};
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::RData;
use hickory_resolver::TokioResolver;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

/// The running discovery task of one group; aborted on drop.
pub struct Discovery(JoinHandle<()>);

impl Drop for Discovery {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What one lookup found, and for how long it holds.
struct Found {
    endpoints: Vec<EndpointSpec>,
    ttl: Duration,
}

impl Discovery {
    /// Starts the task; `None` outside a tokio runtime (`gatehouse check`).
    pub fn start(
        d: &DiscoverySpec,
        spec: &UpstreamSpec,
        connector: &Connector,
        members: &Arc<ArcSwap<Members>>,
    ) -> Option<Discovery> {
        let rt = tokio::runtime::Handle::try_current().ok()?;
        let task = Task {
            d: d.clone(),
            spec: spec.clone(),
            connector: connector.clone(),
            members: members.clone(),
        };
        Some(Discovery(rt.spawn(task.run())))
    }
}

struct Task {
    d: DiscoverySpec,
    spec: UpstreamSpec,
    connector: Connector,
    members: Arc<ArcSwap<Members>>,
}

impl Task {
    async fn run(self) {
        let resolver = match resolver(&self.d) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(upstream = %self.spec.name, error = %e, "DNS discovery cannot start");
                return;
            }
        };
        loop {
            let wait = match lookup(&resolver, &self.d.target, self.d.weight).await {
                Ok(f) if !f.endpoints.is_empty() => {
                    self.update(f.endpoints);
                    f.ttl.clamp(self.d.min_refresh, self.d.max_refresh)
                }
                Ok(_) => {
                    tracing::warn!(upstream = %self.spec.name, "DNS found no address; keeping the last good set");
                    self.d.min_refresh
                }
                Err(e) => {
                    tracing::warn!(upstream = %self.spec.name, error = %e, "DNS lookup failed; keeping the last good set");
                    self.d.min_refresh
                }
            };
            tokio::time::sleep(wait).await;
        }
    }

    /// Swaps in the static endpoints plus `found`, if that differs from what runs.
    fn update(&self, found: Vec<EndpointSpec>) {
        let mut list = self.spec.endpoints.clone();
        for e in found {
            if !list.iter().any(|l| l.address == e.address) {
                list.push(e);
            }
        }
        let current = self.members.load_full();
        let same = current.len() == list.len()
            && list.iter().all(|l| {
                current
                    .iter()
                    .any(|e| e.spec.address == l.address && e.spec.weight == l.weight)
            });
        if same {
            return;
        }
        let next = Members::build(&self.spec, &list, &self.connector, Some(&current), true);
        let r = &self.spec.resilience;
        let gone: Vec<&Arc<Endpoint>> = current
            .iter()
            .filter(|e| !next.iter().any(|n| Arc::ptr_eq(n, e)))
            .collect();
        tracing::info!(
            upstream = %self.spec.name,
            endpoints = ?list.iter().map(|l| l.address.as_str()).collect::<Vec<_>>(),
            "DNS changed the endpoints"
        );
        self.members.store(Arc::new(next));
        for e in gone {
            e.retire(r.drain_timeout, r.drain_grace);
        }
    }
}

/// A resolver for the configured name servers, or the system's. Its cache is off: the
/// task itself looks again when the TTL runs out.
fn resolver(d: &DiscoverySpec) -> Result<TokioResolver, String> {
    let provider = TokioRuntimeProvider::default();
    let mut b = if d.nameservers.is_empty() {
        TokioResolver::builder(provider).map_err(|e| e.to_string())?
    } else {
        let servers = d
            .nameservers
            .iter()
            .map(|a| {
                let mut udp = ConnectionConfig::udp();
                udp.port = a.port();
                let mut tcp = ConnectionConfig::tcp();
                tcp.port = a.port();
                NameServerConfig::new(a.ip(), true, vec![udp, tcp])
            })
            .collect();
        TokioResolver::builder_with_config(ResolverConfig::from_name_servers(servers), provider)
    };
    b.options_mut().cache_size = 0;
    b.build().map_err(|e| e.to_string())
}

async fn lookup(r: &TokioResolver, target: &DnsTarget, weight: u32) -> Result<Found, String> {
    match target {
        DnsTarget::Host { host, port } => {
            let (ips, ttl) = addresses(r, host).await?;
            Ok(Found {
                endpoints: ips
                    .into_iter()
                    .map(|ip| endpoint(ip, *port, weight))
                    .collect(),
                ttl,
            })
        }
        DnsTarget::Srv(name) => {
            let answer = r
                .srv_lookup(name.as_str())
                .await
                .map_err(|e| e.to_string())?;
            let mut ttl = u32::MAX;
            let mut records = Vec::new();
            for rec in answer.answers() {
                if let RData::SRV(srv) = &rec.data {
                    ttl = ttl.min(rec.ttl);
                    records.push(srv.clone());
                }
            }
            // Only the best (lowest) priority is used; the others are for when it is gone.
            let best = records.iter().map(|s| s.priority).min();
            let mut endpoints = Vec::new();
            for s in records.iter().filter(|s| Some(s.priority) == best) {
                let (ips, t) = addresses(r, &s.target.to_utf8()).await?;
                ttl = ttl.min(t.as_secs() as u32);
                for ip in ips {
                    endpoints.push(endpoint(ip, s.port, u32::from(s.weight).max(1)));
                }
            }
            Ok(Found {
                endpoints,
                ttl: Duration::from_secs(u64::from(ttl)),
            })
        }
    }
}

/// A and AAAA records of `host`, with their smallest TTL.
async fn addresses(r: &TokioResolver, host: &str) -> Result<(Vec<IpAddr>, Duration), String> {
    let answer = r.lookup_ip(host).await.map_err(|e| e.to_string())?;
    let ttl = answer
        .as_lookup()
        .answers()
        .iter()
        .map(|rec| rec.ttl)
        .min()
        .unwrap_or(0);
    let mut ips: Vec<IpAddr> = answer.iter().collect();
    ips.sort();
    ips.dedup();
    Ok((ips, Duration::from_secs(u64::from(ttl))))
}

fn endpoint(ip: IpAddr, port: u16, weight: u32) -> EndpointSpec {
    let address = match ip {
        IpAddr::V4(a) => format!("{a}:{port}"),
        IpAddr::V6(a) => format!("[{a}]:{port}"),
    };
    EndpointSpec {
        address,
        host: ip.to_string(),
        port,
        weight,
    }
}
