//! Compiles `[[rate_limits]]` into policies. A policy whose spec (and Redis settings) is
//! unchanged is carried over a reload as it is, counts and all; the Redis connections
//! are carried while `[redis]` is unchanged. Local quotas with a state file get a task
//! that writes it each second while counts change.

use super::compile::CompileError;
use crate::limit::redis::RedisStore;
use crate::limit::Policy;
use gatehouse_config::spec::LimitStore;
use gatehouse_config::Spec;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

/// This generation's policies by name, and the tasks that save their state.
#[derive(Default)]
pub struct LimitState {
    pub policies: HashMap<String, Arc<Policy>>,
    redis: Option<Arc<RedisStore>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for LimitState {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl LimitState {
    /// Writes every state file whose counts changed (at shutdown).
    pub fn save(&self) {
        for p in self.policies.values() {
            p.save_state();
        }
    }
}

pub fn compile(
    spec: &Spec,
    previous: Option<&LimitState>,
    errors: &mut Vec<CompileError>,
) -> LimitState {
    let redis = spec.redis.as_ref().map(|r| {
        previous
            .and_then(|p| p.redis.clone())
            .filter(|old| old.spec == *r)
            .unwrap_or_else(|| RedisStore::new(r.clone()))
    });
    let mut state = LimitState {
        redis: redis.clone(),
        policies: HashMap::new(),
        tasks: Vec::new(),
    };
    let rt = tokio::runtime::Handle::try_current().ok();
    let fresh = |r: &Arc<RedisStore>| {
        previous
            .and_then(|p| p.redis.as_ref())
            .is_none_or(|o| !Arc::ptr_eq(o, r))
    };
    if let (Some(r), Some(rt)) = (redis.as_ref().filter(|r| fresh(r)), &rt) {
        let r = r.clone();
        rt.spawn(async move { r.warm().await });
    }
    for (i, s) in spec.rate_limits.iter().enumerate() {
        let same_store = |p: &Policy| match s.store {
            LimitStore::Local => true,
            LimitStore::Redis => {
                previous
                    .and_then(|prev| prev.redis.as_ref())
                    .zip(redis.as_ref())
                    .is_some_and(|(a, b)| Arc::ptr_eq(a, b))
                    && p.is_redis()
            }
        };
        let carried = previous
            .and_then(|p| p.policies.get(&s.name))
            .filter(|p| p.spec == *s && same_store(p))
            .cloned();
        let policy = match carried {
            Some(p) => p,
            None => match Policy::new(s.clone(), redis.clone()) {
                Ok(p) => Arc::new(p),
                Err((key, message)) => {
                    errors.push(CompileError {
                        path: format!("rate_limits[{i}].{key}"),
                        message,
                    });
                    continue;
                }
            },
        };
        if let (true, Some(rt)) = (has_state_file(s), &rt) {
            let p = Arc::downgrade(&policy);
            state.tasks.push(rt.spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(1));
                loop {
                    tick.tick().await;
                    match p.upgrade() {
                        Some(p) => p.save_state(),
                        None => return,
                    }
                }
            }));
        }
        state.policies.insert(s.name.clone(), policy);
    }
    state
}

fn has_state_file(s: &gatehouse_config::spec::RateLimitSpec) -> bool {
    matches!(
        &s.kind,
        gatehouse_config::spec::LimitKind::Quota {
            state_file: Some(_),
            ..
        }
    )
}
