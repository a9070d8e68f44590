//! Rate limits, concurrency limits and quotas: each `[[rate_limits]]` policy compiled
//! into a [`Policy`] that counts per key, locally (exact on one instance) or in Redis
//! (shared by every instance), and answers with a [`Verdict`]. Policies whose spec is
//! unchanged are carried over a reload with their counts (see `runtime::limits`).
//!
//! The filter that asks them is `filter::limit`; the arithmetic is in [`algo`], on
//! plain numbers, so that the local store and the Redis scripts agree.

pub mod algo;
pub mod calendar;
mod inflight;
pub mod key;
mod local;
pub mod redis;
mod state;

pub use algo::Verdict;
pub use inflight::Permit;

use algo::{FixedState, Gcra, Window, WindowState};
use gatehouse_config::spec::{
    Algorithm, CalendarUnit, FailMode, LimitKind, LimitStore, QuotaPeriod, RateLimitSpec,
};
use inflight::Inflight;
use jiff::tz::TimeZone;
use local::{Cell, Local};
use redis::{RedisStore, StoreError};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// How a policy counts.
enum Meter {
    Gcra(Gcra),
    Window(Window),
    Calendar {
        limit: u64,
        unit: CalendarUnit,
        tz: TimeZone,
    },
    Concurrency(Arc<Inflight>),
}

/// One compiled policy with its counts.
pub struct Policy {
    pub spec: RateLimitSpec,
    meter: Meter,
    local: Local,
    redis: Option<Arc<RedisStore>>,
    /// The local clock's zero (tokio's clock, so tests can pause it).
    epoch: Instant,
    /// This policy's member of `RateLimit-Policy` (`"name";q=100;w=60`).
    pub advert: Option<String>,
    /// The name as a structured-field string, for `RateLimit`.
    pub quoted: String,
    /// Local quota counts changed since the state file was written.
    dirty: AtomicBool,
    state_file: Option<PathBuf>,
}

/// One policy's answer to one request.
pub enum Answer {
    Counted(Verdict),
    /// Counted by the local store because Redis could not be asked (`fail_open`).
    Fallback(Verdict),
    /// A concurrency limit's place, or `None` when all are taken.
    Place(Option<Permit>),
    /// The store is unreachable and the policy fails closed.
    Unavailable,
}

/// What a policy holds for one key, for the admin API.
#[derive(Debug, serde::Serialize)]
pub struct Usage {
    pub policy: String,
    pub key: String,
    pub limit: u64,
    pub remaining: u64,
    pub reset_seconds: f64,
    pub store: &'static str,
}

// === impl Policy ===

impl Policy {
    /// A policy from its spec; the error names the key at fault and why.
    pub fn new(
        spec: RateLimitSpec,
        redis: Option<Arc<RedisStore>>,
    ) -> Result<Policy, (&'static str, String)> {
        let (meter, idle) = match &spec.kind {
            LimitKind::Rate {
                count,
                period,
                burst,
                algorithm: Algorithm::Gcra,
            } => {
                let g = Gcra::new(*count, *period, *burst);
                (Meter::Gcra(g), g.life())
            }
            LimitKind::Rate {
                count,
                period,
                algorithm: Algorithm::SlidingWindow,
                ..
            } => window(count.ceil() as u64, *period),
            LimitKind::Quota {
                count,
                period: QuotaPeriod::Rolling(d),
                ..
            } => window(*count, *d),
            LimitKind::Quota {
                count,
                period: QuotaPeriod::Calendar(unit),
                time_zone,
                ..
            } => {
                let tz = calendar::zone(time_zone).map_err(|m| ("time_zone", m))?;
                let idle = QuotaPeriod::Calendar(*unit).nominal() + Duration::from_secs(3 * 86_400);
                let m = Meter::Calendar {
                    limit: *count,
                    unit: *unit,
                    tz,
                };
                (m, idle)
            }
            LimitKind::Concurrency { max } => {
                (Meter::Concurrency(Inflight::new(*max)), Duration::ZERO)
            }
        };
        let advert = match (spec.headers, spec.kind.advertised()) {
            (true, Some((q, w))) => Some(format!(
                "{};q={q};w={}",
                quoted(&spec.name),
                w.as_secs().max(1)
            )),
            _ => None,
        };
        let state_file = match &spec.kind {
            LimitKind::Quota { state_file, .. } => state_file.clone(),
            _ => None,
        };
        let p = Policy {
            local: Local::new(spec.max_keys, idle.as_nanos() as u64),
            redis: redis.filter(|_| spec.store == LimitStore::Redis),
            meter,
            epoch: Instant::now(),
            advert,
            quoted: quoted(&spec.name),
            dirty: AtomicBool::new(false),
            state_file,
            spec,
        };
        if let Some(path) = &p.state_file {
            p.load_state(path).map_err(|m| ("state_file", m))?;
        }
        Ok(p)
    }

    fn now(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    /// The advertised limit (for `X-RateLimit-Limit`).
    pub fn limit(&self) -> u64 {
        self.spec.kind.advertised().map_or(0, |(q, _)| q)
    }

    /// Counts one request under `key`. A policy that counts here answers at the first
    /// poll (what the rate-limit filter relies on to decide without a boxed future).
    pub async fn check(&self, key: &str) -> Answer {
        let store = match (&self.meter, &self.redis) {
            (Meter::Concurrency(t), _) => return Answer::Place(t.acquire(key)),
            (_, None) => return Answer::Counted(self.check_local(key)),
            (_, Some(store)) => store,
        };
        match self.check_redis(store, key, true).await {
            Ok(v) => Answer::Counted(v),
            Err(e) => {
                tracing::debug!(policy = %self.spec.name, error = %e, "rate limit store failed");
                match self.spec.on_store_error {
                    FailMode::Open => Answer::Fallback(self.check_local(key)),
                    FailMode::Closed => Answer::Unavailable,
                }
            }
        }
    }

    /// Whether this policy counts in this process (not in Redis).
    pub fn counts_here(&self) -> bool {
        self.redis.is_none() || matches!(self.meter, Meter::Concurrency(_))
    }

    fn check_local(&self, key: &str) -> Verdict {
        let now = self.now();
        match &self.meter {
            Meter::Gcra(g) => self.local.with(
                key,
                now,
                || Cell::Gcra(0),
                |c| {
                    let Cell::Gcra(tat) = c else {
                        return allow_all();
                    };
                    let (next, v) = g.step(*tat, now);
                    if let Some(n) = next {
                        *tat = n;
                    }
                    v
                },
            ),
            Meter::Window(w) => {
                let fresh = || Cell::Window(WindowState::default());
                self.local.with(key, now, fresh, |c| {
                    let Cell::Window(s) = c else {
                        return allow_all();
                    };
                    let (next, v) = w.step(*s, now);
                    if let Some(n) = next {
                        *s = n;
                    }
                    v
                })
            }
            Meter::Calendar { limit, unit, tz } => {
                let wall = jiff::Timestamp::now();
                let (start, end) = calendar::window(wall, tz, *unit);
                let secs = wall.as_second() as f64 + f64::from(wall.subsec_nanosecond()) / 1e9;
                let fresh = || Cell::Fixed(FixedState::default());
                self.local.with(key, now, fresh, |c| {
                    let Cell::Fixed(s) = c else {
                        return allow_all();
                    };
                    let (next, v) = s.step(*limit, start, end, secs);
                    if let Some(n) = next {
                        *s = n;
                        self.dirty.store(true, Ordering::Release);
                    }
                    v
                })
            }
            Meter::Concurrency(_) => allow_all(),
        }
    }

    async fn check_redis(
        &self,
        store: &RedisStore,
        key: &str,
        count: bool,
    ) -> Result<Verdict, StoreError> {
        let rkey = format!("{}rl:{}:{key}", store.spec.key_prefix, self.spec.name);
        match &self.meter {
            Meter::Gcra(g) => {
                store
                    .gcra(&rkey, (g.interval / 1000).max(1), g.burst, count)
                    .await
            }
            Meter::Window(w) => {
                store
                    .window(&rkey, (w.window / 1000).max(1), w.limit, count)
                    .await
            }
            Meter::Calendar { limit, unit, tz } => {
                let now = jiff::Timestamp::now();
                let (start, end) = calendar::window(now, tz, *unit);
                let (ok, used) = store
                    .fixed(&format!("{rkey}:{start}"), *limit, end, count)
                    .await?;
                let reset = Duration::from_secs(end.saturating_sub(now.as_second()).max(0) as u64);
                Ok(Verdict {
                    allowed: ok,
                    remaining: limit.saturating_sub(used),
                    reset,
                    retry_after: if ok { Duration::ZERO } else { reset },
                })
            }
            Meter::Concurrency(_) => Ok(allow_all()),
        }
    }

    /// The refusal a local rate or quota policy would give `key` now, without counting
    /// (the arithmetic is pure: a step whose new state is not stored).
    pub fn would_refuse(&self, key: &str) -> Option<Verdict> {
        if self.redis.is_some() || self.spec.dry_run {
            return None;
        }
        let now = self.now();
        let v = match (&self.meter, self.local.peek(key)) {
            (Meter::Gcra(g), Some(Cell::Gcra(t))) => g.step(t, now).1,
            (Meter::Window(w), Some(Cell::Window(s))) => w.step(s, now).1,
            (Meter::Calendar { limit, unit, tz }, Some(Cell::Fixed(s))) => {
                let wall = jiff::Timestamp::now();
                let (start, end) = calendar::window(wall, tz, *unit);
                s.step(*limit, start, end, wall.as_second() as f64).1
            }
            _ => return None,
        };
        (!v.allowed).then_some(v)
    }

    /// Gives back a request this policy counted locally and a later one refused.
    pub fn refund(&self, key: &str) {
        if self.redis.is_some() {
            return;
        }
        self.local.update(key, |c| match (&self.meter, c) {
            (Meter::Gcra(g), Cell::Gcra(tat)) => *tat = g.refund(*tat),
            (Meter::Window(w), Cell::Window(s)) => *s = w.refund(*s),
            (Meter::Calendar { .. }, Cell::Fixed(s)) => s.count = s.count.saturating_sub(1),
            _ => {}
        });
    }

    /// What the policy holds for `key`, without counting a request.
    pub async fn usage(&self, key: &str) -> Result<Usage, String> {
        let (limit, v, store) = match (&self.meter, &self.redis) {
            (Meter::Concurrency(t), _) => {
                let n = t.count(key);
                let v = Verdict {
                    allowed: n < t.max(),
                    remaining: t.max().saturating_sub(n),
                    reset: Duration::ZERO,
                    retry_after: Duration::ZERO,
                };
                (t.max(), v, "local")
            }
            (_, Some(store)) => {
                let v = self
                    .check_redis(store, key, false)
                    .await
                    .map_err(|e| e.to_string())?;
                (self.limit(), v, "redis")
            }
            (_, None) => (self.limit(), self.peek_local(key), "local"),
        };
        Ok(Usage {
            policy: self.spec.name.clone(),
            key: key.to_string(),
            limit,
            remaining: v.remaining,
            reset_seconds: v.reset.as_secs_f64(),
            store,
        })
    }

    fn peek_local(&self, key: &str) -> Verdict {
        let cell = self.local.peek(key);
        match (&self.meter, cell) {
            (Meter::Gcra(g), Some(Cell::Gcra(t))) => g.peek(t, self.now()),
            (Meter::Gcra(g), _) => g.peek(0, self.now()),
            (Meter::Window(w), Some(Cell::Window(s))) => w.peek(s, self.now()),
            (Meter::Window(w), _) => w.peek(WindowState::default(), self.now()),
            (Meter::Calendar { limit, unit, tz }, c) => {
                let now = jiff::Timestamp::now();
                let (start, end) = calendar::window(now, tz, *unit);
                let used = match c {
                    Some(Cell::Fixed(s)) => s.used(start),
                    _ => 0,
                };
                Verdict {
                    allowed: used < *limit,
                    remaining: limit.saturating_sub(used),
                    reset: Duration::from_secs(end.saturating_sub(now.as_second()).max(0) as u64),
                    retry_after: Duration::ZERO,
                }
            }
            _ => allow_all(),
        }
    }

    /// Forgets `key`'s counts (locally, and in Redis for a Redis policy).
    pub async fn reset(&self, key: &str) -> Result<(), String> {
        self.local.remove(key);
        self.dirty.store(true, Ordering::Release);
        let Some(store) = &self.redis else {
            return Ok(());
        };
        let rkey = format!("{}rl:{}:{key}", store.spec.key_prefix, self.spec.name);
        let rkey = match &self.meter {
            Meter::Calendar { unit, tz, .. } => {
                let (start, _) = calendar::window(jiff::Timestamp::now(), tz, *unit);
                format!("{rkey}:{start}")
            }
            _ => rkey,
        };
        store.delete(&rkey).await.map_err(|e| e.to_string())
    }

    /// Whether this policy's Redis breaker is open.
    pub fn store_down(&self) -> bool {
        self.redis.as_ref().is_some_and(|r| r.is_open())
    }

    pub fn is_redis(&self) -> bool {
        self.redis.is_some()
    }

    /// Writes the state file if counts changed since the last write.
    pub fn save_state(&self) {
        let Some(path) = &self.state_file else { return };
        if !self.dirty.swap(false, Ordering::AcqRel) {
            return;
        }
        let entries = self
            .local
            .entries()
            .into_iter()
            .filter_map(|(k, c)| match c {
                Cell::Fixed(s) => Some((k, s.start, s.count)),
                _ => None,
            })
            .collect();
        if let Err(e) = state::save(path, &self.spec.name, entries) {
            self.dirty.store(true, Ordering::Release);
            tracing::error!(path = %path.display(), error = %e, "could not write the quota state file");
        }
    }

    fn load_state(&self, path: &std::path::Path) -> Result<(), String> {
        for (key, start, count) in state::load(path, &self.spec.name)? {
            let cell = Cell::Fixed(FixedState { start, count });
            self.local.insert(key, cell, self.now());
        }
        Ok(())
    }

    /// Keys held locally (for tests and the admin API).
    pub fn local_keys(&self) -> u64 {
        self.local.len()
    }
}

impl Drop for Policy {
    fn drop(&mut self) {
        self.save_state();
    }
}

fn window(limit: u64, period: Duration) -> (Meter, Duration) {
    let w = Window {
        window: (period.as_nanos() as u64).max(1),
        limit: limit.max(1),
    };
    (Meter::Window(w), w.life())
}

fn allow_all() -> Verdict {
    Verdict {
        allowed: true,
        remaining: u64::MAX,
        reset: Duration::ZERO,
        retry_after: Duration::ZERO,
    }
}

/// A policy name as a structured-field string (RFC 9651): quotes and backslashes
/// escaped; names are checked ASCII by config validation.
pub fn quoted(name: &str) -> String {
    let mut s = String::with_capacity(name.len() + 2);
    s.push('"');
    for c in name.chars() {
        if c == '"' || c == '\\' {
            s.push('\\');
        }
        s.push(c);
    }
    s.push('"');
    s
}

#[cfg(test)]
mod tests;
