//! Compiles who-is-calling config: the consumer directory and the JWT providers. A
//! provider's fetched key set is carried over a reload while its spec is unchanged
//! (so a reload costs the issuer no fetch), and its fetch loop runs on this
//! generation's upstream group, stopped when the generation is dropped.

use super::compile::CompileError;
use crate::filter::auth::jwks::Remote;
use crate::filter::auth::{self, AuthRt, Directory};
use crate::upstream::UpstreamGroup;
use gatehouse_config::Spec;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::task::JoinHandle;

/// The compiled identity config and the fetch loops that keep it current.
#[derive(Default)]
pub struct AuthState {
    pub rt: AuthRt,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for AuthState {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

pub fn compile(
    spec: &Spec,
    previous: Option<&AuthState>,
    upstreams: &HashMap<String, Arc<UpstreamGroup>>,
    errors: &mut Vec<CompileError>,
) -> AuthState {
    let mut problems = Vec::new();
    let directory = Arc::new(Directory::build(&spec.consumers, &mut problems));
    for (path, message) in problems {
        errors.push(CompileError { path, message });
    }
    let mut state = AuthState::default();
    for (name, g) in upstreams {
        state
            .rt
            .calls
            .insert(name.clone(), crate::proxy::side::caller(g.clone()));
    }
    for (i, s) in spec.introspection.iter().enumerate() {
        let Some(call) = state.rt.calls.get(&s.upstream).cloned() else {
            continue;
        };
        let prev = previous.and_then(|p| p.rt.introspectors.get(&s.name));
        match auth::introspector(s, prev.map(|p| p.as_ref()), call) {
            Ok(x) => {
                state.rt.introspectors.insert(s.name.clone(), Arc::new(x));
            }
            Err(message) => errors.push(CompileError {
                path: format!("introspection[{i}].client_secret"),
                message,
            }),
        }
    }
    let rt = tokio::runtime::Handle::try_current().ok();
    for (i, p) in spec.jwt_providers.iter().enumerate() {
        let carried = previous
            .and_then(|prev| prev.rt.providers.get(&p.name))
            .filter(|old| old.spec == *p)
            .and_then(|old| old.remote.clone());
        let remote = p.remote.as_ref().map(|r| {
            carried.unwrap_or_else(|| {
                Remote::new(r.clone(), p.issuer.clone(), auth::jwt_algorithms(p))
            })
        });
        match auth::provider(p, remote.clone()) {
            Ok(prov) => {
                state.rt.providers.insert(p.name.clone(), Arc::new(prov));
            }
            Err((key, message)) => {
                errors.push(CompileError {
                    path: format!("jwt_providers[{i}].{key}"),
                    message,
                });
                continue;
            }
        }
        let (Some(remote), Some(rt)) = (remote, &rt) else {
            continue;
        };
        let Some(group) = upstreams.get(&remote.spec.upstream).cloned() else {
            continue;
        };
        state
            .tasks
            .push(rt.spawn(remote.run(crate::proxy::side::caller(group))));
    }
    state.rt.directory = directory;
    state
}
