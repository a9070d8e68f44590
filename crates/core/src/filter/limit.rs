//! The rate-limit filter: asks each of a route's policies about the request, in config
//! order, and answers 429 (with `Retry-After`) for the first that refuses, giving back
//! what the earlier local ones counted. Allowed requests leave their verdicts and
//! concurrency places in the [`Carry`], so the response gets `RateLimit-Policy` and
//! `RateLimit` (and `X-RateLimit-*` when asked) and the places are held until the
//! response body ends.

use super::{Carry, Filter, FilterCtx, FilterFuture, Flow, Stage};
use crate::error::{error_reply, ErrorKind, ProxyError};
use crate::limit::{key, Answer, Permit, Policy, Verdict};
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
}

/// What an allowed request leaves for its response.
#[derive(Clone, Default)]
struct Noted {
    /// (index into `checks`, verdict) of the policies that advertise.
    verdicts: Vec<(usize, Verdict)>,
    /// Concurrency places, held until the response body ends (shared so the carry
    /// can be cloned, as extensions must be).
    places: Option<Arc<Vec<Permit>>>,
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
        let checks = policies
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
        RateLimit { checks, advert }
    }

    async fn check(&self, head: &mut request::Parts, ctx: &FilterCtx<'_>) -> Flow {
        let mut key = String::with_capacity(64);
        let mut noted = Noted::default();
        let mut places = Vec::new();
        for (i, c) in self.checks.iter().enumerate() {
            let p = &c.policy;
            key.clear();
            if !key::build(&p.spec.key, head, ctx, &mut key)
                && p.spec.missing == gatehouse_config::spec::MissingPart::Skip
            {
                continue;
            }
            let verdict = match p.check(&key).await {
                Answer::Counted(v) => v,
                Answer::Fallback(v) => {
                    c.fallback.inc();
                    v
                }
                Answer::Place(Some(permit)) => {
                    places.push(permit);
                    c.allowed.inc();
                    continue;
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
                    return Flow::Respond(Box::new(error_reply(&e, ctx.request_id)));
                }
            };
            if !verdict.allowed {
                if p.spec.dry_run {
                    c.dry_run.inc();
                    tracing::info!(policy = %p.spec.name, route = ctx.route, key = %key, "dry run: rate limit would refuse this request");
                    continue;
                }
                c.limited.inc();
                self.refund(i, head, ctx);
                let (j, worst) = self.tightest(i, verdict, head, ctx);
                return Flow::Respond(Box::new(self.refusal(j, &worst, ctx)));
            }
            c.allowed.inc();
            if p.advert.is_some() || p.spec.legacy_headers {
                noted.verdicts.push((i, verdict));
            }
        }
        if !noted.verdicts.is_empty() || !places.is_empty() {
            noted.places = (!places.is_empty()).then(|| Arc::new(places));
            head.extensions
                .get_or_insert_default::<Carry>()
                .0
                .insert(noted);
        }
        Flow::Continue
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
        Box::pin(self.check(head, ctx))
    }

    fn on_response(&self, head: &mut response::Parts, _ctx: &FilterCtx<'_>) {
        // Two fields of the head: the carried verdicts are read while headers are added.
        let Some(noted) = head
            .extensions
            .get::<Carry>()
            .and_then(|c| c.0.get::<Noted>())
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
            if let Ok(v) = HeaderValue::from_str(&members) {
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
