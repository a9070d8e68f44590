//! The rate-limit filter: asks each of a route's policies about the request, in config
//! order, and answers 429 (with `Retry-After`) for the first that refuses, giving back
//! what the earlier local ones counted. Allowed requests leave their verdicts and
//! concurrency places in the [`Carry`], so the response gets `RateLimit-Policy` and
//! `RateLimit` (and `X-RateLimit-*` when asked) and the places are held until the
//! response body ends.

use super::{Carry, Filter, FilterCtx, FilterFuture, Flow, Stage};
use crate::error::{error_reply, ErrorKind, ProxyError};
use crate::limit::{key, Answer, Permit, Policy, Verdict};
use futures_util::FutureExt;
use http::{request, response, HeaderName, HeaderValue};
use prometheus_client::metrics::counter::Counter;
use std::sync::Arc;
use std::time::Duration;

static RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
static RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
static X_LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit");
static X_REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
static X_RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset");

/// A policy on this route with its decision counters.
struct Checked {
    policy: Arc<Policy>,
    allowed: Counter,
    limited: Counter,
    dry_run: Counter,
    fallback: Counter,
    unavailable: Counter,
}

pub struct RateLimit {
    checks: Vec<Checked>,
    /// `RateLimit-Policy`, the same on every response of the route.
    advert: Option<HeaderValue>,
    /// Every policy counts in this process (none in Redis): the check never waits.
    local: bool,
}

/// What an allowed request leaves for its response.
#[derive(Clone, Default)]
pub(crate) struct Noted {
    /// (index into `checks`, verdict) of the policies that advertise.
    verdicts: Vec<(usize, Verdict)>,
    /// Concurrency places, held until the response body ends (shared so the carry
    /// can be cloned, as extensions must be).
    pub(super) places: Option<Arc<Vec<Permit>>>,
}

/// One request's pass over the policies: the key being checked (one buffer for all),
/// what advertising policies said, and the concurrency places taken.
#[derive(Default)]
struct Run {
    key: String,
    noted: Noted,
    places: Vec<Permit>,
}

impl Run {
    /// Writes the policy's key; false when a part is missing and the policy skips.
    fn key(&mut self, c: &Checked, head: &request::Parts, ctx: &FilterCtx<'_>) -> bool {
        self.key.clear();
        key::build(&c.policy.spec.key, head, ctx, &mut self.key)
            || c.policy.spec.missing != gatehouse_config::spec::MissingPart::Skip
    }

    /// Leaves the verdicts and places for the response, when there are any.
    fn finish(mut self, head: &mut request::Parts) -> Flow {
        if !self.noted.verdicts.is_empty() || !self.places.is_empty() {
            self.noted.places = (!self.places.is_empty()).then(|| Arc::new(self.places));
            head.extensions.get_or_insert_default::<Carry>().limits = Some(self.noted);
        }
        Flow::Continue
    }
}

impl RateLimit {
    pub fn new(
        policies: Vec<Arc<Policy>>,
        counter: &dyn Fn(&str, &'static str) -> Counter,
    ) -> Self {
        let adverts: Vec<&str> = policies
            .iter()
            .filter_map(|p| p.advert.as_deref())
            .collect();
        let advert = (!adverts.is_empty())
            .then(|| HeaderValue::from_str(&adverts.join(", ")).ok())
            .flatten();
        let checks: Vec<Checked> = policies
            .into_iter()
            .map(|policy| {
                let c = |r| counter(&policy.spec.name, r);
                Checked {
                    allowed: c("allowed"),
                    limited: c("limited"),
                    dry_run: c("dry_run_limited"),
                    fallback: c("store_error_fail_open"),
                    unavailable: c("store_error_fail_closed"),
                    policy,
                }
            })
            .collect();
        let local = checks.iter().all(|c| c.policy.counts_here());
        RateLimit {
            checks,
            advert,
            local,
        }
    }

    /// Checks every policy in turn, waiting for Redis where a policy counts there.
    async fn check(&self, head: &mut request::Parts, ctx: &FilterCtx<'_>) -> Flow {
        let mut run = Run::default();
        for (i, c) in self.checks.iter().enumerate() {
            if !run.key(c, head, ctx) {
                continue;
            }
            let answer = c.policy.check(&run.key).await;
            if let Some(refused) = self.take(i, answer, &mut run, head, ctx) {
                return refused;
            }
        }
        run.finish(head)
    }

    /// Takes policy `i`'s answer into the run; a refusal (or a store that cannot be
    /// reached by a fail-closed policy) is the reply.
    fn take(
        &self,
        i: usize,
        answer: Answer,
        run: &mut Run,
        head: &request::Parts,
        ctx: &FilterCtx<'_>,
    ) -> Option<Flow> {
        let c = &self.checks[i];
        let p = &c.policy;
        let verdict = match answer {
            Answer::Counted(v) => v,
            Answer::Fallback(v) => {
                c.fallback.inc();
                v
            }
            Answer::Place(Some(permit)) => {
                run.places.push(permit);
                c.allowed.inc();
                return None;
            }
            Answer::Place(None) => Verdict {
                allowed: false,
                remaining: 0,
                reset: Duration::ZERO,
                retry_after: Duration::from_secs(1),
            },
            Answer::Unavailable => {
                c.unavailable.inc();
                self.refund(i, head, ctx);
                let e = ProxyError::new(
                    ErrorKind::LimitUnavailable,
                    format!("rate limit `{}` cannot reach its store", p.spec.name),
                );
                return Some(Flow::Respond(Box::new(error_reply(&e, ctx.request_id))));
            }
        };
        if !verdict.allowed {
            if p.spec.dry_run {
                c.dry_run.inc();
                tracing::info!(policy = %p.spec.name, route = ctx.route, key = %run.key, "dry run: rate limit would refuse this request");
                return None;
            }
            c.limited.inc();
            self.refund(i, head, ctx);
            let (j, worst) = self.tightest(i, verdict, head, ctx);
            return Some(Flow::Respond(Box::new(self.refusal(j, &worst, ctx))));
        }
        c.allowed.inc();
        if p.advert.is_some() || p.spec.legacy_headers {
            run.noted.verdicts.push((i, verdict));
        }
        None
    }

    /// The policy that answers a refusal by `checks[i]`: of it and the later local
    /// policies that would refuse too (looked at, not counted), the one whose
    /// `Retry-After` is longest, so a client that waits as told is not refused again.
    fn tightest(
        &self,
        i: usize,
        first: Verdict,
        head: &request::Parts,
        ctx: &FilterCtx<'_>,
    ) -> (usize, Verdict) {
        let mut worst = (i, first);
        let mut key = String::new();
        for (j, c) in self.checks.iter().enumerate().skip(i + 1) {
            key.clear();
            let p = &c.policy;
            if !key::build(&p.spec.key, head, ctx, &mut key)
                && p.spec.missing == gatehouse_config::spec::MissingPart::Skip
            {
                continue;
            }
            if let Some(v) = p.would_refuse(&key) {
                if v.retry_after > worst.1.retry_after {
                    worst = (j, v);
                }
            }
        }
        worst
    }

    /// Gives back what policies before `upto` counted locally for this request.
    fn refund(&self, upto: usize, head: &request::Parts, ctx: &FilterCtx<'_>) {
        let mut key = String::new();
        for c in &self.checks[..upto] {
            key.clear();
            key::build(&c.policy.spec.key, head, ctx, &mut key);
            c.policy.refund(&key);
        }
    }

    /// The 429 for a refusal by `checks[i]`.
    fn refusal(
        &self,
        i: usize,
        v: &Verdict,
        ctx: &FilterCtx<'_>,
    ) -> http::Response<crate::body::ResponseBody> {
        let p = &self.checks[i].policy;
        let e = ProxyError::new(
            ErrorKind::TooManyRequests,
            format!("rate limit `{}` reached", p.spec.name),
        )
        .retry_after(Some(v.retry_after));
        let mut resp = error_reply(&e, ctx.request_id);
        let h = resp.headers_mut();
        if let Some(a) = &self.advert {
            h.insert(RATELIMIT_POLICY.clone(), a.clone());
        }
        if p.advert.is_some() {
            let mut m = String::with_capacity(48);
            member(&mut m, p, v);
            if let Ok(v) = HeaderValue::from_str(&m) {
                h.insert(RATELIMIT.clone(), v);
            }
        }
        if p.spec.legacy_headers {
            legacy(h, p, v);
        }
        resp
    }
}

/// Appends `"name";r=R;t=T` for one policy.
fn member(out: &mut String, p: &Policy, v: &Verdict) {
    let mut b = itoa::Buffer::new();
    out.push_str(&p.quoted);
    out.push_str(";r=");
    out.push_str(b.format(v.remaining));
    out.push_str(";t=");
    out.push_str(b.format(secs(v.reset)));
}

fn secs(d: Duration) -> u64 {
    d.as_millis().div_ceil(1000) as u64
}

fn legacy(h: &mut http::HeaderMap, p: &Policy, v: &Verdict) {
    h.insert(X_LIMIT.clone(), HeaderValue::from(p.limit()));
    h.insert(X_REMAINING.clone(), HeaderValue::from(v.remaining));
    h.insert(X_RESET.clone(), HeaderValue::from(secs(v.reset)));
}

impl Filter for RateLimit {
    fn name(&self) -> &'static str {
        "rate_limit"
    }

    fn stage(&self) -> Stage {
        Stage::RateLimit
    }

    fn has_request_hook(&self) -> bool {
        true
    }

    fn on_request<'a>(
        &'a self,
        head: &'a mut request::Parts,
        ctx: &'a FilterCtx<'a>,
    ) -> FilterFuture<'a> {
        if self.local {
            // Policies that count here answer at the first poll: the check needs no
            // boxed future.
            if let Some(flow) = self.check(head, ctx).now_or_never() {
                return FilterFuture::ready(flow);
            }
        }
        FilterFuture::waiting(self.check(head, ctx))
    }

    fn on_response(&self, head: &mut response::Parts, _ctx: &FilterCtx<'_>) {
        // Two fields of the head: the carried verdicts are read while headers are added.
        let Some(noted) = head
            .extensions
            .get::<Carry>()
            .and_then(|c| c.limits.as_ref())
        else {
            return;
        };
        let h = &mut head.headers;
        if let Some(a) = &self.advert {
            h.insert(RATELIMIT_POLICY.clone(), a.clone());
        }
        // Sized once: growing it by pushes was a third of the hook's instructions.
        let mut members = String::with_capacity(48 * noted.verdicts.len());
        for (i, v) in &noted.verdicts {
            let p = &self.checks[*i].policy;
            if p.advert.is_some() {
                if !members.is_empty() {
                    members.push_str(", ");
                }
                member(&mut members, p, v);
            }
        }
        if !members.is_empty() {
            // The string becomes the value's bytes without a copy.
            if let Ok(v) = HeaderValue::from_maybe_shared(bytes::Bytes::from(members)) {
                h.insert(RATELIMIT.clone(), v);
            }
        }
        // The most restrictive policy that asked for them speaks in X-RateLimit-*.
        let tightest = noted
            .verdicts
            .iter()
            .filter(|(i, _)| self.checks[*i].policy.spec.legacy_headers)
            .min_by_key(|(_, v)| v.remaining);
        if let Some((i, v)) = tightest {
            legacy(h, &self.checks[*i].policy, v);
        }
    }
}
