//! A provider's remote key set: fetched in the background through an upstream, kept
//! for its `Cache-Control: max-age` (bounded by config), refreshed early when a token
//! names an unknown `kid` (at most once per `min_refresh`, so a flood of random kids
//! cannot hammer the issuer), and kept as it was when a fetch fails.
//!
//! The fetch itself is a [`Call`] handed in by the runtime, which owns the upstream
//! groups; this module only decides when to fetch and what to keep.

use super::keyset::KeySet;
use super::side::{Ask, Call};
use arc_swap::ArcSwapOption;
use gatehouse_config::spec::JwksRemoteSpec;
use jsonwebtoken::Algorithm;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{watch, Notify};
use tokio::time::Instant;

/// The longest a failed fetch waits before the next try.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// The key set and its fetch schedule; survives a reload while the provider's spec
/// stays the same.
pub struct Remote {
    pub spec: JwksRemoteSpec,
    issuer: Option<String>,
    allowed: Vec<Algorithm>,
    keys: ArcSwapOption<KeySet>,
    /// When the last fetch started; an early refresh waits `min_refresh` after it.
    last_try: Mutex<Option<Instant>>,
    /// When the next scheduled fetch is due; a loop started after a reload waits for it.
    due: Mutex<Option<Instant>>,
    kick: Notify,
    /// A fetch is under way: an early refresh waits for it instead of starting one.
    fetching: std::sync::atomic::AtomicBool,
    /// Bumped after every fetch, good or bad, so early refreshes can wait for one.
    done: watch::Sender<u64>,
    /// Bumped when a new set is swapped in: tokens remembered against an older one are
    /// checked again.
    version: std::sync::atomic::AtomicU64,
}

impl Remote {
    pub fn new(
        spec: JwksRemoteSpec,
        issuer: Option<String>,
        allowed: Vec<Algorithm>,
    ) -> Arc<Remote> {
        Arc::new(Remote {
            spec,
            issuer,
            allowed,
            keys: ArcSwapOption::empty(),
            last_try: Mutex::new(None),
            due: Mutex::new(None),
            kick: Notify::new(),
            fetching: std::sync::atomic::AtomicBool::new(false),
            done: watch::channel(0).0,
            version: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// Which set is current (0 before the first).
    pub fn version(&self) -> u64 {
        self.version.load(std::sync::atomic::Ordering::Acquire)
    }

    /// The keys known now; `None` before the first good fetch.
    pub fn keys(&self) -> Option<Arc<KeySet>> {
        self.keys.load_full()
    }

    /// A token named a `kid` the set lacks: fetch now unless one started within
    /// `min_refresh`, and wait (up to the fetch timeout) for it to finish.
    pub async fn refresh_for_unknown(&self) {
        // Read in the opposite order to the loop's writes (`fetching`, then `last_try`):
        // a fetch that started after `last_try` was read is seen as under way.
        let mut rx = self.done.subscribe();
        let allowed = {
            let Ok(last) = self.last_try.lock() else {
                return;
            };
            last.is_none_or(|t| t.elapsed() >= self.spec.min_refresh)
        };
        let under_way = self.fetching.load(std::sync::atomic::Ordering::Acquire);
        if !allowed && !under_way {
            return;
        }
        if allowed {
            self.kick.notify_one();
        }
        let _ = tokio::time::timeout(self.spec.timeout, rx.changed()).await;
    }

    /// The background loop: fetch, wait until due or kicked, again. Runs until aborted.
    pub async fn run(self: Arc<Self>, fetch: Call) {
        let mut failures = 0u32;
        // A set carried over a reload is not fetched again before it is due.
        let mut wait = self
            .due
            .lock()
            .ok()
            .and_then(|d| *d)
            .map_or(Duration::ZERO, |d| {
                d.saturating_duration_since(Instant::now())
            });
        loop {
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.kick.notified() => {}
            }
            let since = self
                .last_try
                .lock()
                .ok()
                .and_then(|l| *l)
                .map(|t| t.elapsed());
            if let Some(s) = since.filter(|s| *s < self.spec.min_refresh) {
                wait = self.spec.min_refresh - s;
                continue;
            }
            self.fetching
                .store(true, std::sync::atomic::Ordering::Release);
            if let Ok(mut l) = self.last_try.lock() {
                *l = Some(Instant::now());
            }
            let result = self.fetch_once(&fetch).await;
            self.fetching
                .store(false, std::sync::atomic::Ordering::Release);
            wait = match result {
                Ok(max_age) => {
                    failures = 0;
                    max_age
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    tracing::warn!(path = %self.spec.path, upstream = %self.spec.upstream, error = %e, "JWKS fetch failed; keeping the last good key set");
                    (self.spec.min_refresh * 2u32.saturating_pow(failures.min(6))).min(MAX_BACKOFF)
                }
            };
            if let Ok(mut d) = self.due.lock() {
                *d = Some(Instant::now() + wait);
            }
            self.done.send_modify(|n| *n += 1);
        }
    }

    /// One fetch (two with discovery). On success, the set is swapped in and the time
    /// until the next fetch returned.
    async fn fetch_once(&self, fetch: &Call) -> Result<Duration, String> {
        let path = if self.spec.discovery {
            self.discover(fetch).await?
        } else {
            self.spec.path.clone()
        };
        let got = tokio::time::timeout(self.spec.timeout, fetch(Ask::get(path.clone())))
            .await
            .map_err(|_| format!("no answer within {:?}", self.spec.timeout))??;
        if got.status != 200 {
            return Err(format!("{path} answered {}", got.status));
        }
        let set = KeySet::from_jwks(&got.body, &self.allowed)?;
        tracing::info!(path = %path, keys = set.keys.len(), "JWKS fetched");
        self.keys.store(Some(Arc::new(set)));
        self.version
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        let age = got
            .headers
            .get(http::header::CACHE_CONTROL)
            .and_then(|v| v.to_str().ok())
            .and_then(max_age)
            .unwrap_or(self.spec.max_age);
        Ok(age.clamp(self.spec.min_refresh, self.spec.max_age))
    }

    /// Reads the OpenID configuration and returns the path of its `jwks_uri`.
    async fn discover(&self, fetch: &Call) -> Result<String, String> {
        let got = tokio::time::timeout(self.spec.timeout, fetch(Ask::get(self.spec.path.clone())))
            .await
            .map_err(|_| format!("no answer within {:?}", self.spec.timeout))??;
        if got.status != 200 {
            return Err(format!("{} answered {}", self.spec.path, got.status));
        }
        let doc: serde_json::Value = serde_json::from_slice(&got.body)
            .map_err(|e| format!("OpenID configuration is not JSON: {e}"))?;
        let issuer = doc.get("issuer").and_then(|v| v.as_str());
        if let Some(want) = &self.issuer {
            if issuer != Some(want.as_str()) {
                return Err(format!(
                    "OpenID configuration names issuer {issuer:?}, not `{want}`"
                ));
            }
        }
        let uri = doc
            .get("jwks_uri")
            .and_then(|v| v.as_str())
            .ok_or("OpenID configuration has no `jwks_uri`")?;
        let parsed: http::Uri = uri.parse().map_err(|_| format!("`{uri}` is not a URI"))?;
        // The key set is fetched through the issuer's upstream: one elsewhere would be
        // asked of the wrong server.
        if let Some(issuer) = &self.issuer {
            if !same_origin(issuer, &parsed) {
                return Err(format!(
                    "`jwks_uri` {uri} is not on the issuer's host; give this provider `jwks_upstream` and `jwks_path` for it instead of discovery"
                ));
            }
        }
        Ok(parsed
            .path_and_query()
            .map_or("/".to_string(), |p| p.as_str().to_string()))
    }
}

/// Whether `uri` names the issuer's host, so the issuer's upstream can serve it (the
/// upstream decides scheme and port). A relative `uri`, or an issuer that is not a
/// URL, counts as the same.
fn same_origin(issuer: &str, uri: &http::Uri) -> bool {
    let Ok(iss) = issuer.parse::<http::Uri>() else {
        return true;
    };
    match (iss.host(), uri.host()) {
        (Some(a), Some(b)) => a.eq_ignore_ascii_case(b),
        _ => true,
    }
}

/// `max-age=N` of a Cache-Control value (`no-store`/`no-cache` count as 0).
fn max_age(cc: &str) -> Option<Duration> {
    let mut out = None;
    for d in cc.split(',').map(str::trim) {
        let lower = d.to_ascii_lowercase();
        if lower == "no-store" || lower == "no-cache" {
            return Some(Duration::ZERO);
        }
        if let Some(v) = lower.strip_prefix("max-age=") {
            out = v
                .trim_matches('"')
                .parse::<u64>()
                .ok()
                .map(Duration::from_secs);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{max_age, same_origin};
    use std::time::Duration;

    #[test]
    fn a_key_set_on_another_host_is_not_the_issuers() {
        let uri = |s: &str| s.parse::<http::Uri>().unwrap();
        assert!(same_origin(
            "https://idp.test",
            &uri("http://IDP.test/keys")
        ));
        assert!(same_origin("https://idp.test/tenant", &uri("/keys")));
        assert!(same_origin("not a url", &uri("https://x/keys")));
        assert!(!same_origin(
            "https://accounts.google.com",
            &uri("https://www.googleapis.com/oauth2/v3/certs")
        ));
    }

    #[test]
    fn cache_control_max_age() {
        assert_eq!(
            max_age("public, max-age=300"),
            Some(Duration::from_secs(300))
        );
        assert_eq!(max_age("no-store"), Some(Duration::ZERO));
        assert_eq!(max_age("private"), None);
        assert_eq!(max_age("max-age=banana"), None);
    }
}
