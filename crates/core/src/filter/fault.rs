//! Fault injection for resilience tests (Envoy's fault filter): a configured share of
//! requests is delayed, and a share aborted with a status and the JSON error body,
//! optionally only requests that carry a given header. The draws are independent, so
//! a request may be both delayed and aborted.

use super::{Filter, FilterCtx, FilterFuture, Flow, Stage};
use crate::error::json_reply;
use gatehouse_config::spec::FaultSpec;
use http::{request, HeaderName, StatusCode};
use std::time::Duration;

pub struct Fault {
    abort: Option<(f64, StatusCode)>,
    delay: Option<(f64, Duration)>,
    only_with: Option<HeaderName>,
}

impl Fault {
    pub fn new(spec: &FaultSpec) -> Self {
        Fault {
            abort: spec
                .abort
                .and_then(|(p, s)| Some((p, StatusCode::from_u16(s).ok()?))),
            delay: spec.delay,
            only_with: spec
                .only_with_header
                .as_ref()
                .and_then(|h| HeaderName::from_bytes(h.as_bytes()).ok()),
        }
    }
}

/// One draw: true with probability `share` (0..=1).
pub fn draw(share: f64) -> bool {
    share >= 1.0 || (share > 0.0 && fastrand::f64() < share)
}

impl Filter for Fault {
    fn name(&self) -> &'static str {
        "fault"
    }

    fn stage(&self) -> Stage {
        Stage::Fault
    }

    fn has_request_hook(&self) -> bool {
        true
    }

    fn on_request<'a>(
        &'a self,
        head: &'a mut request::Parts,
        ctx: &'a FilterCtx<'a>,
    ) -> FilterFuture<'a> {
        FilterFuture::waiting(async move {
            if self
                .only_with
                .as_ref()
                .is_some_and(|h| !head.headers.contains_key(h))
            {
                return Flow::Continue;
            }
            if let Some((share, d)) = self.delay {
                if draw(share) {
                    tokio::time::sleep(d).await;
                }
            }
            match self.abort {
                Some((share, status)) if draw(share) => {
                    let msg = "aborted by the route's fault injection";
                    let resp = json_reply("fault_injected", status, msg, ctx.request_id, None);
                    Flow::Respond(Box::new(resp))
                }
                _ => Flow::Continue,
            }
        })
    }
}
