//! Admin views and actions on rate-limit policies: `GET /rate-limits` (every policy,
//! its store, keys held locally and the Redis breaker), `GET /rate-limits/{name}?key=K`
//! (a key's usage and what remains) and `DELETE /rate-limits/{name}?key=K` (forget the
//! key's counts, in Redis too). A key is the policy's key parts joined by `|` as they
//! appear in the dry-run log (a consumer-keyed policy's key is the consumer's name).

use super::{json_reply, Reply};
use crate::gateway::Gateway;
use http::{Method, StatusCode};
use serde_json::json;

pub(super) fn list(gw: &Gateway) -> Reply {
    let s = gw.snapshot();
    let mut names: Vec<&String> = s.limits.policies.keys().collect();
    names.sort();
    let body: Vec<_> = names
        .iter()
        .map(|n| {
            let p = &s.limits.policies[*n];
            json!({
                "name": n,
                "kind": kind(&p.spec.kind),
                "store": if p.is_redis() { "redis" } else { "local" },
                "dry_run": p.spec.dry_run,
                "keys_held_locally": p.local_keys(),
                "store_breaker_open": p.store_down(),
            })
        })
        .collect();
    json_reply(StatusCode::OK, &json!({ "rate_limits": body }))
}

fn kind(k: &gatehouse_config::spec::LimitKind) -> &'static str {
    use gatehouse_config::spec::LimitKind;
    match k {
        LimitKind::Rate { .. } => "rate",
        LimitKind::Concurrency { .. } => "concurrency",
        LimitKind::Quota { .. } => "quota",
    }
}

/// `GET` or `DELETE /rate-limits/{name}?key=K`.
pub(super) async fn one(gw: &Gateway, method: &Method, uri: &http::Uri) -> Reply {
    let name = uri.path().trim_start_matches("/rate-limits/");
    let s = gw.snapshot();
    let Some(p) = s.limits.policies.get(name) else {
        return json_reply(
            StatusCode::NOT_FOUND,
            &json!({"error": "not_found", "message": format!("no rate-limit policy is named `{name}`")}),
        );
    };
    let key = uri.query().and_then(|q| {
        form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "key")
            .map(|(_, v)| v.into_owned())
    });
    let Some(key) = key else {
        return json_reply(
            StatusCode::BAD_REQUEST,
            &json!({"error": "bad_request", "message": "give the key as `?key=...`"}),
        );
    };
    let unavailable = |m: String| {
        json_reply(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({"error": "store_unavailable", "message": m}),
        )
    };
    match *method {
        Method::GET => match p.usage(&key).await {
            Ok(u) => json_reply(StatusCode::OK, &json!(u)),
            Err(m) => unavailable(m),
        },
        Method::DELETE => match p.reset(&key).await {
            Ok(()) => json_reply(
                StatusCode::OK,
                &json!({"status": "reset", "policy": name, "key": key}),
            ),
            Err(m) => unavailable(m),
        },
        _ => json_reply(
            StatusCode::METHOD_NOT_ALLOWED,
            &json!({"error": "method_not_allowed"}),
        ),
    }
}
