//! Spec -> [`Runtime`]: reads certificate files, opens the access log, builds route
//! tables per listener and upstream groups, reusing state from the previous generation.

use super::*;
use crate::http::client::{Connector, UpstreamTls};
use crate::l4::passthrough::SniTable;
use crate::l4::{ByteCounters, L4Target};
use crate::metrics::{BytesLabels, ListenerLabels, Metrics};
use gatehouse_config::spec::{ActionSpec, GlobalSpec, ListenerKind, RouteSpec, UpstreamSpec};

/// A problem found while compiling (files that cannot be read, bad certificates).
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct CompileError {
    pub path: String,
    pub message: String,
}

fn err(path: impl Into<String>, message: impl std::fmt::Display) -> CompileError {
    CompileError {
        path: path.into(),
        message: message.to_string(),
    }
}

/// Compiles `spec` as generation `generation`. Every error is collected.
pub fn compile(
    spec: Spec,
    hash: String,
    generation: u64,
    previous: Option<&Runtime>,
    metrics: &Metrics,
) -> Result<Runtime, Vec<CompileError>> {
    let mut errors = Vec::new();
    let upstreams = upstreams(&spec, previous, &mut errors);
    let auth = super::auth::compile(&spec, previous.map(|p| &p.auth), &upstreams, &mut errors);
    let limits = super::limits::compile(&spec, previous.map(|p| &p.limits), &mut errors);
    let openapi = openapi_documents(&spec, &mut errors);
    let routes = routes(
        &spec,
        &upstreams,
        &auth.rt,
        &limits.policies,
        &openapi,
        metrics,
    );
    let mut listeners = HashMap::default();
    for (i, l) in spec.listeners.iter().enumerate() {
        let tls = match &l.kind {
            ListenerKind::Https(t) => match crate::tls::server_config(t, l.http2) {
                Ok(cfg) => Some(tokio_rustls::TlsAcceptor::from(cfg)),
                Err(e) => {
                    errors.push(err(format!("listeners[{i}].tls"), e));
                    None
                }
            },
            _ => None,
        };
        // Routes serve HTTP listeners only; a layer-4 one has a target instead.
        let table = RouteTable::new(
            spec.routes
                .iter()
                .zip(&routes)
                .filter(|_| l.kind.is_http())
                .filter(|(r, _)| r.listeners.is_empty() || r.listeners.contains(&l.name))
                .map(|(r, c)| (r.matcher.clone(), c.clone()))
                .collect(),
        );
        let l4 = match &l.kind {
            // `None` when the group failed to compile, which is already an error.
            ListenerKind::Tcp { upstream } | ListenerKind::Udp { upstream, .. } => {
                upstreams.get(upstream).map(|g| L4Target::Group(g.clone()))
            }
            ListenerKind::TlsPassthrough(p) => Some(L4Target::Sni(SniTable::new(p, &upstreams))),
            _ => None,
        };
        let bytes = |direction| {
            metrics
                .l4_bytes
                .get_or_create(&BytesLabels {
                    listener: l.name.clone(),
                    direction,
                })
                .clone()
        };
        let l4_bytes = Arc::new(ByteCounters {
            received: bytes("received"),
            sent: bytes("sent"),
        });
        let rt = ListenerRt {
            name: Arc::from(l.name.as_str()),
            routes: table,
            scheme: if tls.is_some() { "https" } else { "http" },
            tls,
            no_route: Arc::new(metrics.route("-", "-")),
            active: metrics
                .active_connections
                .get_or_create(&ListenerLabels {
                    listener: l.name.clone(),
                })
                .clone(),
            parked: metrics
                .parked_connections
                .get_or_create(&ListenerLabels {
                    listener: l.name.clone(),
                })
                .clone(),
            connections: metrics
                .connections
                .get_or_create(&ListenerLabels {
                    listener: l.name.clone(),
                })
                .clone(),
            spec: l.clone(),
            l4,
            l4_bytes,
        };
        listeners.insert(l.name.clone(), Arc::new(rt));
    }
    let access_log = access_log(&spec, previous, &mut errors);
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(Runtime {
        generation,
        hash,
        loaded_at: SystemTime::now(),
        trusted_proxies: spec.global.trusted_proxies.clone(),
        via_h1: via(&spec.global, "1.1"),
        via_h2: via(&spec.global, "2.0"),
        listeners,
        upstreams,
        access_log,
        auth,
        limits,
        spec,
    })
}

/// The `Via` entry for one protocol version, unless `global.via` is off.
fn via(g: &GlobalSpec, version: &str) -> Option<HeaderValue> {
    let name = &g.server_name;
    let entry = |n: &str| HeaderValue::from_str(&format!("{version} {n}")).ok();
    g.via
        .then(|| entry(name).or_else(|| entry("gatehouse")))
        .flatten()
}

fn upstreams(
    spec: &Spec,
    previous: Option<&Runtime>,
    errors: &mut Vec<CompileError>,
) -> HashMap<String, Arc<UpstreamGroup>> {
    let mut out = HashMap::new();
    for (i, u) in spec.upstreams.iter().enumerate() {
        let prev = previous.and_then(|p| p.upstreams.get(&u.name));
        if let Some(p) = prev.filter(|p| p.spec == *u) {
            out.insert(u.name.clone(), p.clone());
            continue;
        }
        match connector(u) {
            Ok(c) => {
                out.insert(
                    u.name.clone(),
                    Arc::new(UpstreamGroup::new(u.clone(), c, prev.map(|p| p.as_ref()))),
                );
            }
            Err(e) => errors.push(err(format!("upstreams[{i}].tls"), e)),
        }
    }
    out
}

fn connector(u: &UpstreamSpec) -> Result<Connector, crate::tls::TlsError> {
    let tls = match &u.tls {
        None => None,
        Some(t) => {
            let cfg = crate::tls::client_config(t, u.protocol)?;
            let sni = match &t.sni {
                Some(n) => Some(
                    rustls::pki_types::ServerName::try_from(n.clone())
                        .map_err(|e| crate::tls::TlsError::Config(format!("sni `{n}`: {e}")))?,
                ),
                None => None,
            };
            Some(UpstreamTls {
                connector: tokio_rustls::TlsConnector::from(cfg),
                sni,
            })
        }
    };
    Ok(Connector {
        protocol: u.protocol,
        connect_timeout: u.connect_timeout,
        tls,
    })
}

/// OpenAPI documents by file, as routes' `openapi` keys name them.
pub type Documents = HashMap<std::path::PathBuf, Arc<gatehouse_config::openapi::Api>>;

fn routes(
    spec: &Spec,
    upstreams: &HashMap<String, Arc<UpstreamGroup>>,
    auth: &crate::filter::auth::AuthRt,
    limits: &HashMap<String, Arc<crate::limit::Policy>>,
    openapi: &Documents,
    metrics: &Metrics,
) -> Vec<Arc<Route>> {
    spec.routes
        .iter()
        .filter_map(|r| route(r, upstreams, auth, limits, openapi, metrics).map(Arc::new))
        .collect()
}

/// Reads and compiles each OpenAPI document the routes name, once each. A reload reads
/// them again, so validation follows the document's edits.
pub fn openapi_documents(spec: &Spec, errors: &mut Vec<CompileError>) -> Documents {
    let mut out = Documents::new();
    let mut failed = std::collections::HashSet::new();
    for (i, file) in spec.documents() {
        if out.contains_key(file) || failed.contains(file) {
            continue;
        }
        let name = file.display();
        let loaded = std::fs::read_to_string(file)
            .map_err(|e| format!("cannot read `{name}`: {e}"))
            .and_then(|text| {
                gatehouse_config::openapi::load(&text).map_err(|e| format!("`{name}`: {e}"))
            });
        match loaded {
            Ok(api) => {
                out.insert(file.clone(), Arc::new(api));
            }
            Err(e) => {
                errors.push(err(format!("routes[{i}].openapi"), e));
                failed.insert(file.clone());
            }
        }
    }
    out
}

fn route(
    r: &RouteSpec,
    upstreams: &HashMap<String, Arc<UpstreamGroup>>,
    auth: &crate::filter::auth::AuthRt,
    limits: &HashMap<String, Arc<crate::limit::Policy>>,
    openapi: &Documents,
    metrics: &Metrics,
) -> Option<Route> {
    let (action, upstream_name) = match &r.action {
        ActionSpec::Proxy(p) => {
            // A group that failed to compile is already an error; skip its routes.
            let group = upstreams.get(&p.upstream)?.clone();
            let host_rewrite = p
                .host_rewrite
                .as_deref()
                .and_then(|h| HeaderValue::from_str(h).ok());
            let (splits, mirror, versions) = super::traffic::compile(p, upstreams, &host_rewrite);
            (
                Action::Proxy(ProxyAction {
                    group,
                    spec: p.clone(),
                    host_rewrite,
                    splits,
                    mirror,
                    versions,
                }),
                p.upstream.as_str(),
            )
        }
        ActionSpec::Respond(s) => {
            let mut headers = HeaderMap::new();
            for (k, v) in &s.headers {
                if let (Ok(k), Ok(v)) = (
                    http::HeaderName::from_bytes(k.as_bytes()),
                    HeaderValue::from_str(v),
                ) {
                    headers.append(k, v);
                }
            }
            let status = StatusCode::from_u16(s.status).unwrap_or(StatusCode::OK);
            (
                Action::Respond(Respond {
                    status,
                    headers,
                    body: Bytes::from(s.body.clone()),
                }),
                "-",
            )
        }
        ActionSpec::Redirect(s) => (Action::Redirect(s.clone()), "-"),
    };
    Some(Route {
        name: Arc::from(r.name.as_str()),
        action,
        max_body_size: r.max_body_size,
        body_buffer_limit: r.body_buffer_limit,
        request_timeout: r.request_timeout,
        metrics: Arc::new(metrics.route(&r.name, upstream_name)),
        filters: crate::filter::Chain::new(
            &r.filters,
            &crate::filter::BuildCtx {
                auth,
                limits,
                metrics,
                route: &r.name,
                openapi,
            },
        ),
        redact_query: redacted_query(r),
    })
}

/// The API key query parameter of a route's auth, kept out of its access log lines.
fn redacted_query(r: &RouteSpec) -> Option<Arc<str>> {
    r.filters.iter().find_map(|f| match f {
        gatehouse_config::spec::FilterSpec::Auth(a) => a.methods.iter().find_map(|m| match m {
            gatehouse_config::spec::AuthMethod::ApiKey { query: Some(q), .. } => {
                Some(Arc::from(q.as_str()))
            }
            _ => None,
        }),
        _ => None,
    })
}

fn access_log(
    spec: &Spec,
    previous: Option<&Runtime>,
    errors: &mut Vec<CompileError>,
) -> Option<Arc<AccessLog>> {
    if !spec.access_log.enabled {
        return None;
    }
    if let Some(prev) = previous
        .and_then(|p| p.access_log.as_ref())
        .filter(|l| l.spec == spec.access_log)
    {
        return Some(prev.clone());
    }
    match AccessLog::open(&spec.access_log) {
        Ok(l) => Some(Arc::new(l)),
        Err(e) => {
            errors.push(err("access_log.target", format!("cannot open: {e}")));
            None
        }
    }
}
