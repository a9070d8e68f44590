//! Admin views and actions on upstream groups: `GET /upstreams` (every endpoint's
//! health, last check, ejections, in-flight requests, latency EWMA, weight and drain
//! state, and each group's breaker) and `POST /upstreams/{name}/endpoints/{address}/
//! drain` or `/undrain`.

use super::{json_reply, Reply};
use crate::gateway::Gateway;
use crate::http::conn_count::{Closed, ConnCount};
use crate::upstream::{Endpoint, UpstreamGroup};
use http::StatusCode;
use serde_json::{json, Value};
use std::sync::atomic::Ordering::Relaxed;

pub(super) fn list(gw: &Gateway) -> Reply {
    let s = gw.snapshot();
    let mut groups: Vec<_> = s.upstreams.values().collect();
    groups.sort_by(|a, b| a.name.cmp(&b.name));
    let body: Vec<_> = groups.iter().map(|g| group(g)).collect();
    json_reply(StatusCode::OK, &json!({ "upstreams": body }))
}

fn group(g: &UpstreamGroup) -> Value {
    let r = g.resilience();
    json!({
        "name": &*g.name,
        "balancer": format!("{:?}", g.spec.balancer),
        "breaker": {
            "state": g.breaker.state(),
            "in_flight": g.breaker.in_flight(),
            "opened": g.breaker.opens.load(Relaxed),
        },
        "retries": g.budget.retries.load(Relaxed),
        "health_check": r.health_check.is_some(),
        "endpoints": g.endpoints().iter().map(|e| endpoint(e, r.slow_start)).collect::<Vec<_>>(),
    })
}

fn endpoint(e: &Endpoint, slow_start: std::time::Duration) -> Value {
    let h = &e.health;
    let check = h.check_state();
    let state = if h.is_draining() {
        "draining"
    } else if h.is_down() {
        "down"
    } else if h.is_ejected() {
        "ejected"
    } else {
        "healthy"
    };
    json!({
        "address": &*e.label,
        "weight": e.spec.weight,
        "state": state,
        "draining": h.is_draining(),
        "last_check": check.last_ms.map(|at| json!({
            "ok": check.last_ok,
            "ago_ms": h.now_ms().saturating_sub(at),
            "error": check.last_error,
        })),
        "ejections": h.ejections.load(Relaxed),
        "ejected_for_ms": h.ejection_left().map(|d| d.as_millis() as u64),
        "slow_start_share": h.ramp(slow_start),
        "in_flight": e.in_flight.load(Relaxed),
        "ewma_ms": h.ewma().as_secs_f64() * 1000.0,
        "requests": e.requests.load(Relaxed),
        "failures": e.failures.load(Relaxed),
        "open_connections": e.pool.open(),
        "idle_connections": e.pool.idle(),
        "opened_connections": e.pool.count().opened(),
        "closed_connections": closed_connections(e.pool.count()),
    })
}

/// Connections closed, by why (read after `idle`, whose sweep closes some).
fn closed_connections(count: &ConnCount) -> Value {
    Closed::ALL
        .iter()
        .map(|why| (why.label().to_string(), json!(count.closed(*why))))
        .collect::<serde_json::Map<_, _>>()
        .into()
}

/// `POST /upstreams/{name}/endpoints/{address}/{drain|undrain}`; `None` when `path`
/// is not of that shape.
pub(super) fn action(gw: &Gateway, path: &str) -> Option<Reply> {
    let rest = path.strip_prefix("/upstreams/")?;
    let (name, rest) = rest.split_once("/endpoints/")?;
    let (address, verb) = rest.rsplit_once('/')?;
    if verb != "drain" && verb != "undrain" {
        return None;
    }
    let s = gw.snapshot();
    let Some(g) = s.upstreams.get(name) else {
        return Some(not_found(format!("no upstream `{name}`")));
    };
    let Some(ep) = g.endpoint(address) else {
        return Some(not_found(format!(
            "upstream `{name}` has no endpoint `{address}`"
        )));
    };
    let r = g.resilience();
    if verb == "drain" {
        ep.drain(r.drain_timeout, r.drain_grace);
    } else {
        ep.undrain();
    }
    Some(json_reply(StatusCode::OK, &endpoint(&ep, r.slow_start)))
}

fn not_found(message: String) -> Reply {
    json_reply(
        StatusCode::NOT_FOUND,
        &json!({"error": "not_found", "message": message}),
    )
}
