//! The admin API, on its own listener (loopback by default, a bearer token required
//! elsewhere): `/healthz`, `/readyz`, `/metrics`, `/config`, `/upstreams` and
//! `POST /reload`, endpoint drain/undrain (in [`upstreams`]) and rate-limit usage and
//! resets (in [`limits`]). The admin listener is
//! bound at start; changing it needs a restart.

use crate::gateway::Gateway;
use bytes::Bytes;
use gatehouse_config::spec::AdminSpec;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::json;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::sync::Arc;

mod limits;
mod upstreams;

type Reply = Response<Full<Bytes>>;

/// Binds the admin listener (or serves on `inherited`, handed over by an old process)
/// in the background until `stop` turns true; returns its address and a second
/// descriptor of its socket, for a later hand-over.
pub async fn start(
    spec: AdminSpec,
    gw: Arc<Gateway>,
    inherited: Option<OwnedFd>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<(SocketAddr, Option<OwnedFd>), String> {
    let fail = |e: std::io::Error| format!("admin: cannot bind {}: {e}", spec.listen);
    let std_listener = match inherited {
        Some(fd) => crate::listener::adopt(fd).map_err(fail)?,
        None => tokio::net::TcpListener::bind(spec.listen)
            .await
            .and_then(|l| l.into_std())
            .map_err(fail)?,
    };
    let socket = std_listener.try_clone().ok().map(OwnedFd::from);
    let listener = tokio::net::TcpListener::from_std(std_listener).map_err(fail)?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let token: Option<Arc<str>> = spec.token.as_deref().map(Arc::from);
    let weak = Arc::downgrade(&gw);
    drop(gw);
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = stop.wait_for(|s| *s) => return,
            };
            let Ok((stream, _)) = accepted else {
                continue;
            };
            let Some(gw) = weak.upgrade() else { return };
            let token = token.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req| {
                    let (gw, token) = (gw.clone(), token.clone());
                    async move {
                        Ok::<_, std::convert::Infallible>(route(req, &gw, token.as_deref()).await)
                    }
                });
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    tracing::info!(address = %addr, "admin API listening");
    Ok((addr, socket))
}

async fn route(req: Request<Incoming>, gw: &Gateway, token: Option<&str>) -> Reply {
    if let Some(t) = token {
        let expected = format!("Bearer {t}");
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .map(|v| v.as_bytes());
        if given != Some(expected.as_bytes()) {
            return json_reply(
                StatusCode::UNAUTHORIZED,
                &json!({"error": "unauthorized", "message": "a bearer token is required"}),
            );
        }
    }
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/healthz") => json_reply(StatusCode::OK, &json!({"status": "ok"})),
        (&Method::GET, "/readyz") => {
            if gw.is_draining() {
                json_reply(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &json!({"status": "draining"}),
                )
            } else {
                json_reply(StatusCode::OK, &json!({"status": "ready"}))
            }
        }
        (&Method::GET, "/metrics") => {
            let mut r = Response::new(Full::new(Bytes::from(gw.metrics_text())));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ),
            );
            r
        }
        (&Method::GET, "/config") => config(gw),
        (&Method::GET, "/upstreams") => upstreams::list(gw),
        (&Method::GET, "/rate-limits") => limits::list(gw),
        (&Method::POST, "/reload") => match gw.reload().await {
            Ok(g) => json_reply(
                StatusCode::OK,
                &json!({"status": "reloaded", "generation": g}),
            ),
            Err(e) => json_reply(
                StatusCode::UNPROCESSABLE_ENTITY,
                &json!({"status": "rejected", "generation": gw.snapshot().generation, "errors": e.0}),
            ),
        },
        (_, "/healthz" | "/readyz" | "/metrics" | "/config" | "/upstreams" | "/reload") => {
            json_reply(
                StatusCode::METHOD_NOT_ALLOWED,
                &json!({"error": "method_not_allowed"}),
            )
        }
        (&Method::POST, path) if path.starts_with("/upstreams/") => {
            upstreams::action(gw, path).unwrap_or_else(unknown)
        }
        (m, path) if path.starts_with("/rate-limits/") => limits::one(gw, m, req.uri()).await,
        _ => unknown(),
    }
}

fn config(gw: &Gateway) -> Reply {
    let s = gw.snapshot();
    let loaded = s
        .loaded_at
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut listeners: Vec<_> = s
        .spec
        .listeners
        .iter()
        .map(|l| json!({"name": l.name, "address": gw.listener_addr(&l.name)}))
        .collect();
    listeners.sort_by_key(|v| v["name"].as_str().map(str::to_string));
    json_reply(
        StatusCode::OK,
        &json!({
            "generation": s.generation,
            "hash": s.hash,
            "loaded_at_unix": loaded,
            "listeners": listeners,
            "routes": s.spec.routes.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
            "upstreams": s.spec.upstreams.iter().map(|u| u.name.as_str()).collect::<Vec<_>>(),
        }),
    )
}

fn unknown() -> Reply {
    json_reply(
        StatusCode::NOT_FOUND,
        &json!({"error": "not_found", "message": "unknown admin path"}),
    )
}

fn json_reply(status: StatusCode, v: &serde_json::Value) -> Reply {
    let mut body = serde_json::to_vec_pretty(v).unwrap_or_default();
    body.push(b'\n');
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}
