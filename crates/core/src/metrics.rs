//! Every metric family, defined in one place, on a registry owned by the gateway and
//! passed in (no global statics). Request-path handles (per route, per listener) are
//! created at compile time so a request only touches atomics.

use crate::http::conn_count::Closed;
use crate::upstream::UpstreamGroup;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Mutex;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndpointLabels {
    pub upstream: String,
    pub endpoint: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpstreamLabels {
    pub upstream: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BreakerLabels {
    pub upstream: String,
    pub state: &'static str,
}

/// Upstream connections closed, by endpoint and why (`http::conn_count::Closed`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClosedLabels {
    pub upstream: String,
    pub endpoint: String,
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub route: String,
    pub upstream: String,
    pub class: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ListenerLabels {
    pub listener: String,
}

/// Layer-4 bytes: `received` from clients, `sent` to them.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BytesLabels {
    pub listener: String,
    pub direction: &'static str,
}

/// Auth decisions: the credential kind tried and what came of it.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AuthLabels {
    pub route: String,
    pub kind: &'static str,
    pub result: &'static str,
}

/// Rate-limit decisions: the policy asked and what it answered.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LimitLabels {
    pub route: String,
    pub policy: String,
    pub result: &'static str,
}

/// Labels of a schema validation failure: the route and what failed (`request`, or
/// `response` in report-only mode).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ValidationLabels {
    pub route: String,
    pub side: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: &'static str,
}

/// The gateway's metrics.
pub struct Metrics {
    registry: Mutex<Registry>,
    requests: Family<RequestLabels, Counter>,
    duration: Family<RouteLabels, Histogram, fn() -> Histogram>,
    pub active_connections: Family<ListenerLabels, Gauge>,
    pub parked_connections: Family<ListenerLabels, Gauge>,
    pub connections: Family<ListenerLabels, Counter>,
    pub l4_bytes: Family<BytesLabels, Counter>,
    pub reloads: Family<ResultLabels, Counter>,
    pub auth: Family<AuthLabels, Counter>,
    pub limits: Family<LimitLabels, Counter>,
    pub validation: Family<ValidationLabels, Counter>,
    pub generation: Gauge,
}

/// Handles for one route: a counter per status class and a latency histogram.
#[derive(Clone)]
pub struct RouteMetrics {
    by_class: [Counter; 5],
    duration: Histogram,
}

fn latency_histogram() -> Histogram {
    Histogram::new([
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    ])
}

// === impl Metrics ===

impl Metrics {
    /// The counter of one auth outcome on a route, made when the route is compiled.
    pub fn auth_counter(&self, route: &str, kind: &'static str, result: &'static str) -> Counter {
        self.auth
            .get_or_create(&AuthLabels {
                route: route.to_string(),
                kind,
                result,
            })
            .clone()
    }

    /// The counter of one rate-limit outcome on a route, made when the route is compiled.
    pub fn limit_counter(&self, route: &str, policy: &str, result: &'static str) -> Counter {
        self.limits
            .get_or_create(&LimitLabels {
                route: route.to_string(),
                policy: policy.to_string(),
                result,
            })
            .clone()
    }

    pub fn validation_counter(&self, route: &str, side: &'static str) -> Counter {
        self.validation
            .get_or_create(&ValidationLabels {
                route: route.to_string(),
                side,
            })
            .clone()
    }

    pub fn new() -> Self {
        let m = Metrics {
            registry: Mutex::new(Registry::with_prefix("gatehouse")),
            requests: Family::default(),
            duration: Family::new_with_constructor(latency_histogram),
            active_connections: Family::default(),
            parked_connections: Family::default(),
            connections: Family::default(),
            l4_bytes: Family::default(),
            reloads: Family::default(),
            auth: Family::default(),
            limits: Family::default(),
            validation: Family::default(),
            generation: Gauge::default(),
        };
        if let Ok(mut r) = m.registry.lock() {
            r.register(
                "requests",
                "Requests by route, upstream and status class",
                m.requests.clone(),
            );
            r.register(
                "request_duration_seconds",
                "Time from request head to end of response",
                m.duration.clone(),
            );
            r.register(
                "active_connections",
                "Open client connections by listener",
                m.active_connections.clone(),
            );
            r.register(
                "parked_connections",
                "Idle HTTP/1 client connections parked (buffers released) by listener",
                m.parked_connections.clone(),
            );
            r.register(
                "connections",
                "Accepted client connections by listener",
                m.connections.clone(),
            );
            r.register(
                "l4_bytes",
                "Bytes of layer-4 listeners by direction (received from clients, sent to them)",
                m.l4_bytes.clone(),
            );
            r.register("reloads", "Config reloads by result", m.reloads.clone());
            r.register(
                "auth_decisions",
                "Auth decisions by route, credential kind and result",
                m.auth.clone(),
            );
            r.register(
                "rate_limit_decisions",
                "Rate-limit decisions by route, policy and result",
                m.limits.clone(),
            );
            r.register(
                "validation_failures",
                "Requests refused and responses reported by schema validation",
                m.validation.clone(),
            );
            r.register(
                "config_generation",
                "Generation number of the running config",
                m.generation.clone(),
            );
        }
        m
    }

    /// Handles for a route (`-` for requests no route matched).
    pub fn route(&self, route: &str, upstream: &str) -> RouteMetrics {
        let class = |c: &'static str| {
            self.requests
                .get_or_create(&RequestLabels {
                    route: route.to_string(),
                    upstream: upstream.to_string(),
                    class: c,
                })
                .clone()
        };
        RouteMetrics {
            by_class: [
                class("1xx"),
                class("2xx"),
                class("3xx"),
                class("4xx"),
                class("5xx"),
            ],
            duration: self
                .duration
                .get_or_create(&RouteLabels {
                    route: route.to_string(),
                })
                .clone(),
        }
    }

    /// The Prometheus text exposition, with the upstream series read from `groups`
    /// at scrape time (so their label sets are exactly the configured endpoints).
    pub fn encode<'a>(&self, groups: impl Iterator<Item = &'a UpstreamGroup>) -> String {
        use prometheus_client::encoding::text;
        let mut out = String::new();
        if let Ok(r) = self.registry.lock() {
            let _ = text::encode_registry(&mut out, &r);
        }
        let _ = text::encode_registry(&mut out, &upstream_registry(groups));
        let _ = text::encode_eof(&mut out);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

// === impl RouteMetrics ===

impl RouteMetrics {
    pub fn record(&self, status: u16, seconds: f64) {
        let i = (status / 100).clamp(1, 5) as usize - 1;
        self.by_class[i].inc();
        self.duration.observe(seconds);
    }
}

/// Per-endpoint and per-upstream series, built from the live counters of `groups`.
fn upstream_registry<'a>(groups: impl Iterator<Item = &'a UpstreamGroup>) -> Registry {
    let mut r = Registry::with_prefix("gatehouse_upstream");
    let counter = || Family::<EndpointLabels, Counter>::default();
    let (requests, failures, transitions, ejections) = (counter(), counter(), counter(), counter());
    let healthy = Family::<EndpointLabels, Gauge>::default();
    let in_flight = Family::<EndpointLabels, Gauge>::default();
    let (open, opened) = (Family::<EndpointLabels, Gauge>::default(), counter());
    let closed = Family::<ClosedLabels, Counter>::default();
    let retries = Family::<UpstreamLabels, Counter>::default();
    let breaker = Family::<BreakerLabels, Gauge>::default();
    for g in groups {
        for e in g.endpoints().iter() {
            let l = EndpointLabels {
                upstream: g.name.to_string(),
                endpoint: e.label.to_string(),
            };
            requests.get_or_create(&l).inc_by(e.requests.load(Relaxed));
            failures.get_or_create(&l).inc_by(e.failures.load(Relaxed));
            transitions
                .get_or_create(&l)
                .inc_by(e.health.transitions.load(Relaxed));
            ejections
                .get_or_create(&l)
                .inc_by(e.health.ejections.load(Relaxed));
            healthy.get_or_create(&l).set(i64::from(e.health.usable()));
            in_flight
                .get_or_create(&l)
                .set(e.in_flight.load(Relaxed) as i64);
            let count = e.pool.count();
            open.get_or_create(&l).set(count.open() as i64);
            opened.get_or_create(&l).inc_by(count.opened());
            for why in Closed::ALL {
                let c = ClosedLabels {
                    upstream: l.upstream.clone(),
                    endpoint: l.endpoint.clone(),
                    reason: why.label(),
                };
                closed.get_or_create(&c).inc_by(count.closed(why));
            }
        }
        let u = UpstreamLabels {
            upstream: g.name.to_string(),
        };
        retries
            .get_or_create(&u)
            .inc_by(g.budget.retries.load(Relaxed));
        let now = g.breaker.state();
        for state in ["closed", "open", "half_open"] {
            let l = BreakerLabels {
                upstream: g.name.to_string(),
                state,
            };
            breaker.get_or_create(&l).set(i64::from(state == now));
        }
    }
    r.register("requests", "Requests sent to each endpoint", requests);
    r.register(
        "failures",
        "Failed requests (connect, 5xx, timeout) by endpoint",
        failures,
    );
    r.register(
        "health_transitions",
        "Health state changes by endpoint",
        transitions,
    );
    r.register("ejections", "Outlier ejections by endpoint", ejections);
    r.register("healthy", "1 when the endpoint takes new requests", healthy);
    r.register("in_flight", "Requests in flight by endpoint", in_flight);
    r.register(
        "connections",
        "Connections open to each endpoint, idle or busy",
        open,
    );
    r.register(
        "connections_opened",
        "Connections opened to each endpoint",
        opened,
    );
    r.register(
        "connections_closed",
        "Connections closed, by endpoint and why",
        closed,
    );
    r.register(
        "retries",
        "Retries granted by the retry budget, by upstream",
        retries,
    );
    r.register(
        "breaker_state",
        "1 for the circuit breaker's current state",
        breaker,
    );
    r
}
