//! The Redis store: one round trip per check, an atomic Lua script per algorithm (run by
//! `EVALSHA`, loaded again on `NOSCRIPT` by redis-rs's `Script`) that reads the server's
//! clock, so instances with skewed clocks still share one timeline. Connections are
//! reconnecting multiplexed ones (standalone) or an async cluster connection, made on
//! first use. Behind Sentinel, the primary it names is asked again after an error that
//! means the primary moved or died (a failover), and the connections are made anew when it
//! names another one. A breaker opens after `breaker_failures` errors in a row, so a dead Redis
//! costs no timeout per request; after `breaker_open_for` one request probes it.

use super::algo::Verdict;
use arc_swap::ArcSwap;
use gatehouse_config::spec::{RedisMode, RedisSpec};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{Client, IntoConnectionInfo, RedisError, Script, TlsCertificates};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;
use tokio::sync::OnceCell;
use tokio::time::Instant;

/// GCRA in microseconds. ARGV: interval, burst, 1 to count (0 to look).
/// Returns {allowed, remaining, reset_us, retry_us}.
static GCRA: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tol = interval * tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]))
if not tat or tat < now then tat = now end
if ARGV[3] == '0' then
  local ahead = tat - now
  return {ahead < tol and 1 or 0, math.floor((tol - ahead) / interval), ahead, 0}
end
local nxt = tat + interval
local ahead = nxt - now
if ahead > tol then
  return {0, 0, tat - now, ahead - tol}
end
redis.call('SET', KEYS[1], string.format('%.0f', nxt), 'PX', math.ceil(ahead / 1000) + 1)
return {1, math.floor((tol - ahead) / interval), ahead, 0}
",
    )
});

/// The sliding window counter in one hash (fields i: window index, c: this window's
/// count, p: the previous one's). ARGV: window_us, limit, 1 to count (0 to look).
static WINDOW: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local w = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local idx = math.floor(now / w)
local s = redis.call('HMGET', KEYS[1], 'i', 'c', 'p')
local si = tonumber(s[1]) or idx
local c = tonumber(s[2]) or 0
local p = tonumber(s[3]) or 0
if si == idx - 1 then p = c; c = 0 elseif si ~= idx then p = 0; c = 0 end
local into = now - idx * w
local est = p * (w - into) / w + c
if ARGV[3] == '0' then
  return {est + 1 <= limit and 1 or 0, math.max(math.floor(limit - est), 0), w - into, 0}
end
if est + 1 > limit then
  local room = limit - 1
  local wait
  if c <= room and p > 0 then
    wait = math.max(math.ceil(w - (room - c) * w / p) - into, 1)
  else
    local tt = 0
    if c > 0 then tt = w - room * w / c end
    wait = (w - into) + math.ceil(math.max(tt, 0))
  end
  return {0, 0, w - into, wait}
end
c = c + 1
redis.call('HSET', KEYS[1], 'i', string.format('%.0f', idx), 'c', c, 'p', p)
redis.call('PEXPIRE', KEYS[1], math.ceil(2 * w / 1000))
return {1, math.max(math.floor(limit - est - 1), 0), w - into, 0}
",
    )
});

/// A fixed (calendar) window; the window's start is in the key. ARGV: limit, the
/// window's end (Unix seconds, when the key expires), 1 to count (0 to look).
/// Returns {allowed, used}.
static FIXED: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local n = tonumber(redis.call('GET', KEYS[1]) or '0')
if ARGV[3] == '0' then return {1, n} end
if n + 1 > tonumber(ARGV[1]) then return {0, n} end
n = redis.call('INCR', KEYS[1])
redis.call('EXPIREAT', KEYS[1], ARGV[2])
return {1, n}
",
    )
});

/// Why a check did not get an answer from Redis.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the Redis breaker is open")]
    Open,
    #[error("Redis did not answer within {0:?}")]
    Timeout(Duration),
    #[error("Redis: {0}")]
    Redis(#[from] RedisError),
}

enum Conns {
    Standalone(Vec<ConnectionManager>),
    Cluster(ClusterConnection),
    Sentinel(Box<Followed>),
}

/// The connections to the primary a Sentinel named, and the Sentinel client to ask again
/// when an error says the primary is gone or demoted.
struct Followed {
    sentinel: tokio::sync::Mutex<SentinelClient>,
    primary: ArcSwap<Primary>,
    stale: AtomicBool,
}

/// The primary Sentinel named last: its address, and the connections to it.
struct Primary {
    addr: redis::ConnectionAddr,
    conns: Vec<ConnectionManager>,
}

/// What every connection needs besides its address: the password (resolved once) and
/// the CA bundle.
struct Auth {
    password: Option<String>,
    ca: Option<Vec<u8>>,
}

impl Auth {
    fn certs(&self) -> Option<TlsCertificates> {
        self.ca.as_ref().map(|ca| TlsCertificates {
            client_tls: None,
            root_cert: Some(ca.clone()),
        })
    }
}

pub struct RedisStore {
    pub spec: RedisSpec,
    conns: OnceCell<Conns>,
    next: AtomicUsize,
    breaker: Breaker,
}

/// Consecutive failures, and until when (ns since `epoch`) the breaker is open.
struct Breaker {
    epoch: Instant,
    failures: AtomicU32,
    open_until: AtomicU64,
    probing: AtomicBool,
}

impl RedisStore {
    pub fn new(spec: RedisSpec) -> Arc<RedisStore> {
        // redis-rs builds its TLS config on the process's default provider; make it the
        // one the rest of Gatehouse uses (a no-op when one is installed already).
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        Arc::new(RedisStore {
            spec,
            conns: OnceCell::new(),
            next: AtomicUsize::new(0),
            breaker: Breaker {
                epoch: Instant::now(),
                failures: AtomicU32::new(0),
                open_until: AtomicU64::new(0),
                probing: AtomicBool::new(false),
            },
        })
    }

    /// Whether the breaker lets a request through (and if so, whether it is the probe).
    fn admit(&self) -> Result<bool, StoreError> {
        let b = &self.breaker;
        let until = b.open_until.load(Ordering::Acquire);
        if until == 0 {
            return Ok(false);
        }
        let now = b.epoch.elapsed().as_nanos() as u64;
        if now < until {
            return Err(StoreError::Open);
        }
        // Half-open: one request probes, the rest keep failing fast.
        match b
            .probing
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => Ok(true),
            Err(_) => Err(StoreError::Open),
        }
    }

    fn record(&self, ok: bool, probe: bool) {
        let b = &self.breaker;
        if ok {
            b.failures.store(0, Ordering::Release);
            if probe || b.open_until.load(Ordering::Acquire) != 0 {
                b.open_until.store(0, Ordering::Release);
                tracing::warn!("Redis answers again: rate limits count in Redis");
            }
        } else {
            let n = b.failures.fetch_add(1, Ordering::AcqRel) + 1;
            if probe || n >= self.spec.breaker_failures {
                let until = b.epoch.elapsed() + self.spec.breaker_open_for;
                b.open_until
                    .store(until.as_nanos() as u64, Ordering::Release);
                if !probe {
                    tracing::error!(failures = n, open_for = ?self.spec.breaker_open_for, "Redis breaker open: rate limits fall back");
                }
            }
        }
        if probe {
            b.probing.store(false, Ordering::Release);
        }
    }

    /// Whether the breaker is open now (for the admin API and tests).
    pub fn is_open(&self) -> bool {
        let until = self.breaker.open_until.load(Ordering::Acquire);
        until != 0 && self.breaker.epoch.elapsed().as_nanos() as u64 <= until
    }

    async fn auth(&self) -> Result<Auth, RedisError> {
        let password = match &self.spec.password {
            Some(p) => Some(
                crate::filter::auth::secret::resolve(p)
                    .map(|b| String::from_utf8_lossy(&b).trim_end().to_string())
                    .map_err(|e| RedisError::from((redis::ErrorKind::Client, "password", e)))?,
            ),
            None => None,
        };
        let ca = match &self.spec.tls_ca {
            Some(p) => Some(tokio::fs::read(p).await.map_err(RedisError::from)?),
            None => None,
        };
        Ok(Auth { password, ca })
    }

    async fn connect(&self) -> Result<Conns, RedisError> {
        let s = &self.spec;
        let auth = self.auth().await?;
        match &s.mode {
            RedisMode::Standalone => {
                let mut info = s.urls[0].as_str().into_connection_info()?;
                let mut r = info.redis_settings().clone();
                if let Some(p) = &auth.password {
                    r = r.set_password(p);
                }
                if let Some(u) = &s.username {
                    r = r.set_username(u);
                }
                info = info.set_redis_settings(r);
                let client = match auth.certs() {
                    Some(certs) => Client::build_with_tls(info, certs)?,
                    None => Client::open(info)?,
                };
                Ok(Conns::Standalone(self.managers(&client)?))
            }
            RedisMode::Cluster => {
                let mut b = redis::cluster::ClusterClient::builder(s.urls.clone())
                    .connection_timeout(s.connect_timeout)
                    .response_timeout(s.timeout);
                if let Some(p) = &auth.password {
                    b = b.password(p.clone());
                }
                if let Some(u) = &s.username {
                    b = b.username(u.clone());
                }
                if let Some(certs) = auth.certs() {
                    b = b.certs(certs);
                }
                Ok(Conns::Cluster(b.build()?.get_async_connection().await?))
            }
            RedisMode::Sentinel { master } => {
                let mut sentinel = self.sentinel(master, &auth)?;
                let client = sentinel.async_get_client().await?;
                Ok(Conns::Sentinel(Box::new(Followed {
                    primary: ArcSwap::from_pointee(Primary {
                        addr: client.get_connection_info().addr().clone(),
                        conns: self.managers(&client)?,
                    }),
                    sentinel: tokio::sync::Mutex::new(sentinel),
                    stale: AtomicBool::new(false),
                })))
            }
        }
    }

    /// `pool_size` reconnecting connections to one server, made on first use.
    fn managers(&self, client: &Client) -> Result<Vec<ConnectionManager>, RedisError> {
        let s = &self.spec;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(s.connect_timeout))
            .set_response_timeout(Some(s.timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(2));
        (0..s.pool_size)
            .map(|_| ConnectionManager::new_lazy_with_config(client.clone(), config.clone()))
            .collect()
    }

    /// A client of the Sentinels in `urls` for the primary named `master`. `username`,
    /// `password` and `tls_ca` are the primary's (and its replacement's); a Sentinel's own
    /// password goes in its URL.
    fn sentinel(&self, master: &str, auth: &Auth) -> Result<SentinelClient, RedisError> {
        let s = &self.spec;
        let infos = s
            .urls
            .iter()
            .map(|u| u.as_str().into_connection_info())
            .collect::<Result<Vec<_>, _>>()?;
        let tls = s.urls[0].starts_with("rediss://") || s.urls[0].starts_with("valkeys://");
        let mut b = SentinelClientBuilder::new(
            infos.iter().map(|i| i.addr().clone()),
            master,
            SentinelServerType::Master,
        )?;
        if let Some(p) = &auth.password {
            b = b.set_client_to_redis_password(p);
        }
        if let Some(u) = &s.username {
            b = b.set_client_to_redis_username(u);
        }
        if let Some(p) = infos[0].redis_settings().password() {
            b = b.set_client_to_sentinel_password(p);
        }
        if tls {
            b = b
                .set_client_to_redis_tls_mode(redis::TlsMode::Secure)
                .set_client_to_sentinel_tls_mode(redis::TlsMode::Secure);
        }
        if let Some(certs) = auth.certs() {
            b = b
                .set_client_to_redis_certificates(certs.clone())
                .set_client_to_sentinel_certificates(certs);
        }
        b.build()
    }

    /// The connections, made on first use within `connect_timeout` (a cluster's first
    /// connect asks every seed for the slot map, which a check's timeout cannot cover).
    async fn conns(&self) -> Result<&Conns, StoreError> {
        let t = self.spec.connect_timeout;
        match tokio::time::timeout(t, self.conns.get_or_try_init(|| self.connect())).await {
            Ok(r) => r.map_err(StoreError::Redis),
            Err(_) => Err(StoreError::Timeout(t)),
        }
    }

    /// Connects now, so the first request does not wait for it (run at compile time).
    pub async fn warm(&self) {
        if let Err(e) = self.conns().await {
            tracing::warn!(error = %e, "could not connect to Redis yet; rate limits fall back until it answers");
        }
    }

    /// Runs a script on one key, through the breaker and within the timeout.
    async fn run(
        &self,
        script: &Script,
        key: &str,
        args: [u64; 3],
    ) -> Result<Vec<i64>, StoreError> {
        let probe = self.admit()?;
        let conns = match self.conns().await {
            Ok(c) => c,
            Err(e) => {
                self.record(false, probe);
                return Err(e);
            }
        };
        let mut conn = match self.pick(conns).await {
            Ok(c) => c,
            Err(e) => {
                self.record(false, probe);
                return Err(e);
            }
        };
        let t = self.spec.timeout;
        let mut inv = script.key(key);
        inv.arg(args[0]).arg(args[1]).arg(args[2]);
        let out = match tokio::time::timeout(t, inv.invoke_async::<Vec<i64>>(&mut conn)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(StoreError::Redis(e)),
            Err(_) => Err(StoreError::Timeout(t)),
        };
        if let (Err(e), Conns::Sentinel(f)) = (&out, conns) {
            if moved(e) {
                f.stale.store(true, Ordering::Release);
            }
        }
        self.record(out.is_ok(), probe);
        out
    }

    /// The connection for one command: the next of the pool, the cluster's, or one to
    /// the primary Sentinel names (asked again first when an error marked it stale).
    async fn pick(&self, conns: &Conns) -> Result<Picked, StoreError> {
        let next = |list: &[ConnectionManager]| {
            let i = self.next.fetch_add(1, Ordering::Relaxed) % list.len();
            Picked::Node(list[i].clone())
        };
        match conns {
            Conns::Standalone(list) => Ok(next(list)),
            Conns::Cluster(c) => Ok(Picked::Cluster(c.clone())),
            Conns::Sentinel(f) => {
                if f.stale.load(Ordering::Acquire) {
                    self.follow(f).await?;
                }
                Ok(next(&f.primary.load().conns))
            }
        }
    }

    /// Asks the Sentinels for the primary again, once for all the requests that saw it
    /// fail, within `connect_timeout`. When they name the same one (a slow answer, not a
    /// failover), its connections are kept: made anew, a connection still being set up
    /// would start over, and a primary slow to answer would never get one.
    async fn follow(&self, f: &Followed) -> Result<(), StoreError> {
        let t = self.spec.connect_timeout;
        let ask = async {
            let mut sentinel = f.sentinel.lock().await;
            if !f.stale.load(Ordering::Acquire) {
                return Ok(());
            }
            let client = sentinel.async_get_client().await?;
            let addr = client.get_connection_info().addr();
            if *addr != f.primary.load().addr {
                f.primary.store(Arc::new(Primary {
                    addr: addr.clone(),
                    conns: self.managers(&client)?,
                }));
                tracing::warn!(primary = %addr, "Sentinel names a new Redis primary; rate limits count there");
            }
            f.stale.store(false, Ordering::Release);
            Ok(())
        };
        match tokio::time::timeout(t, ask).await {
            Ok(r) => r.map_err(StoreError::Redis),
            Err(_) => Err(StoreError::Timeout(t)),
        }
    }

    pub async fn gcra(
        &self,
        key: &str,
        interval_us: u64,
        burst: u64,
        count: bool,
    ) -> Result<Verdict, StoreError> {
        let v = self
            .run(&GCRA, key, [interval_us, burst, count as u64])
            .await?;
        Ok(timed(&v))
    }

    pub async fn window(
        &self,
        key: &str,
        window_us: u64,
        limit: u64,
        count: bool,
    ) -> Result<Verdict, StoreError> {
        let v = self
            .run(&WINDOW, key, [window_us, limit, count as u64])
            .await?;
        Ok(timed(&v))
    }

    /// A fixed window's check; the answer is (allowed, used).
    pub async fn fixed(
        &self,
        key: &str,
        limit: u64,
        end: i64,
        count: bool,
    ) -> Result<(bool, u64), StoreError> {
        let v = self
            .run(&FIXED, key, [limit, end.max(0) as u64, count as u64])
            .await?;
        Ok((
            v.first() == Some(&1),
            v.get(1).copied().unwrap_or(0).max(0) as u64,
        ))
    }

    /// Deletes a key (the admin API's reset).
    pub async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let mut conn = self.pick(self.conns().await?).await?;
        let mut cmd = redis::cmd("DEL");
        cmd.arg(key);
        let fut = cmd.query_async::<i64>(&mut conn);
        match tokio::time::timeout(self.spec.timeout.max(Duration::from_secs(1)), fut).await {
            Ok(r) => r.map(|_| ()).map_err(StoreError::Redis),
            Err(_) => Err(StoreError::Timeout(self.spec.timeout)),
        }
    }
}

/// One server's connection or the cluster's, for one command.
enum Picked {
    Node(ConnectionManager),
    Cluster(ClusterConnection),
}

impl redis::aio::ConnectionLike for Picked {
    fn req_packed_command<'a>(
        &'a mut self,
        cmd: &'a redis::Cmd,
    ) -> redis::RedisFuture<'a, redis::Value> {
        match self {
            Picked::Node(c) => c.req_packed_command(cmd),
            Picked::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        match self {
            Picked::Node(c) => c.req_packed_commands(pipeline, offset, count),
            Picked::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Picked::Node(c) => c.get_db(),
            Picked::Cluster(c) => c.get_db(),
        }
    }
}

/// Whether an error says the primary is gone or no longer primary (a failover), so
/// Sentinel should be asked again; a script error or `NOSCRIPT` does not.
fn moved(e: &StoreError) -> bool {
    match e {
        StoreError::Redis(e) => {
            e.is_io_error()
                || e.is_connection_refusal()
                || e.is_connection_dropped()
                || e.is_unrecoverable_error()
                || matches!(
                    e.kind(),
                    redis::ErrorKind::Server(redis::ServerErrorKind::ReadOnly)
                )
        }
        StoreError::Timeout(_) => true,
        StoreError::Open => false,
    }
}

/// {allowed, remaining, reset_us, retry_us} as a verdict.
fn timed(v: &[i64]) -> Verdict {
    let at = |i: usize| v.get(i).copied().unwrap_or(0).max(0) as u64;
    Verdict {
        allowed: at(0) == 1,
        remaining: at(1),
        reset: Duration::from_micros(at(2)),
        retry_after: Duration::from_micros(at(3)),
    }
}
