//! The gateway as a whole: loads config from its source, compiles and swaps generations
//! (one reload at a time), keeps the listener set in step, runs the admin API, and
//! drains on shutdown. The binary and the tests both start it through [`Gateway::start`].

use crate::admin;
use crate::listener::Listeners;
use crate::metrics::{Metrics, ResultLabels};
use crate::runtime::{compile, ConfigStore, Runtime};
use crate::upgrade::{Handed, Inherited};
use gatehouse_config::{Format, Spec};
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Where the config comes from.
pub enum Source {
    /// A file, read again on every reload.
    File(PathBuf),
    /// Text held in memory (tests, embedding); replaced with [`Gateway::reload_text`].
    Text { name: String, text: String },
}

/// Why a start or reload was refused: every problem, one line each.
#[derive(Debug, thiserror::Error)]
#[error("{}", .0.join("\n"))]
pub struct LoadErrors(pub Vec<String>);

/// A running gateway.
pub struct Gateway {
    store: Arc<ConfigStore>,
    metrics: Arc<Metrics>,
    listeners: Listeners,
    source: Mutex<Source>,
    reload_lock: tokio::sync::Mutex<()>,
    generation: AtomicU64,
    draining: AtomicBool,
    admin_addr: Mutex<Option<SocketAddr>>,
    /// A second descriptor of the admin socket, to hand to a new binary.
    admin_socket: Mutex<Option<(SocketAddr, OwnedFd)>>,
    /// Turns true when a new binary took over: the admin listener stops.
    admin_stop: tokio::sync::watch::Sender<bool>,
}

/// Runs a reload's parse and compile on a thread of its own at a lower CPU priority
/// (nice 10), so that the serving threads keep answering while a large config compiles:
/// 10,000 routes take most of a second, which on the serving thread was a stall of every
/// request for as long (docs/benchmarks.md). The thread is a fresh one, scoped inside a
/// blocking task: its priority goes with it (an unprivileged thread cannot raise its
/// priority back), and the blocking task keeps a paused test clock from jumping ahead
/// meanwhile. The runtime is entered there, so the compile's clocks and spawns are the
/// runtime's.
async fn off_the_serving_threads<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, LoadErrors> + Send + 'static,
) -> Result<T, LoadErrors> {
    let runtime = tokio::runtime::Handle::current();
    let failed = || LoadErrors(vec!["the config compiler failed".into()]);
    tokio::task::spawn_blocking(move || {
        std::thread::scope(|s| {
            s.spawn(|| {
                let _entered = runtime.enter();
                // Best effort: where the priority cannot change, the compile still runs.
                let _ = rustix::process::setpriority_process(None, 10);
                work()
            })
            .join()
        })
    })
    .await
    .map_err(|_| failed())?
    .map_err(|_| failed())?
}

/// Reads, parses and validates config text into a spec. A parser that panics on some
/// input (toml_edit 0.23 did, found by fuzzing) refuses the text instead of taking the
/// process down with a reload.
pub fn parse(text: &str, name: &str) -> Result<Spec, LoadErrors> {
    let loaded =
        std::panic::catch_unwind(|| gatehouse_config::load(text, name, Format::from_path(name)));
    match loaded {
        Ok(r) => r.map_err(|e| LoadErrors(e.lines())),
        Err(_) => Err(LoadErrors(vec![format!(
            "{name}: the config parser failed on this text"
        )])),
    }
}

/// What `check` finds beyond the config text: the OpenAPI documents routes name that
/// cannot be read or are not valid, with the key path of the route naming each.
pub fn check_files(spec: &Spec) -> Vec<String> {
    let mut errors = Vec::new();
    crate::runtime::openapi_documents(spec, &mut errors);
    errors.iter().map(ToString::to_string).collect()
}

/// A short stable hash of the config text, shown by the admin API.
fn hash(text: &str) -> String {
    // FNV-1a: stable across runs and builds, unlike std's RandomState.
    let h = text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("{h:016x}")
}

// === impl Source ===

impl Source {
    fn read(&self) -> Result<(String, String), LoadErrors> {
        match self {
            Source::File(p) => {
                let name = p.display().to_string();
                std::fs::read_to_string(p)
                    .map(|t| (t, name.clone()))
                    .map_err(|e| LoadErrors(vec![format!("{name}: cannot read: {e}")]))
            }
            Source::Text { name, text } => Ok((text.clone(), name.clone())),
        }
    }
}

// === impl Gateway ===

impl Gateway {
    /// Loads the config, binds every listener and the admin API, and starts serving.
    pub async fn start(source: Source) -> Result<Arc<Gateway>, LoadErrors> {
        Gateway::start_inheriting(source, None).await
    }

    /// [`Gateway::start`] on the sockets an old process handed over (see `upgrade`),
    /// where they match the config; the rest are bound anew.
    pub async fn start_inheriting(
        source: Source,
        inherited: Option<Inherited>,
    ) -> Result<Arc<Gateway>, LoadErrors> {
        let (text, name) = source.read()?;
        let spec = parse(&text, &name)?;
        let metrics = Arc::new(Metrics::new());
        let admin_spec = spec.admin.clone();
        let first = compile(spec, hash(&text), 1, None, &metrics)
            .map_err(|e| LoadErrors(e.iter().map(|e| e.to_string()).collect()))?;
        let listeners = Listeners::default();
        let bound = listeners
            .bind(&first, inherited.as_ref())
            .map_err(LoadErrors)?;
        let store = Arc::new(ConfigStore::new(first));
        let gw = Arc::new(Gateway {
            store: store.clone(),
            metrics,
            listeners,
            source: Mutex::new(source),
            reload_lock: tokio::sync::Mutex::new(()),
            generation: AtomicU64::new(1),
            draining: AtomicBool::new(false),
            admin_addr: Mutex::new(None),
            admin_socket: Mutex::new(None),
            admin_stop: tokio::sync::watch::Sender::new(false),
        });
        if let Some(a) = admin_spec {
            let configured = a.listen;
            let fd = inherited
                .as_ref()
                .and_then(|i| i.take(None, configured, false));
            let (addr, socket) = admin::start(a, gw.clone(), fd, gw.admin_stop.subscribe())
                .await
                .map_err(|e| LoadErrors(vec![e]))?;
            if let Ok(mut g) = gw.admin_addr.lock() {
                *g = Some(addr);
            }
            if let (Ok(mut g), Some(fd)) = (gw.admin_socket.lock(), socket) {
                *g = Some((configured, fd));
            }
        }
        let snap = store.load();
        gw.listeners.commit(bound, &snap, &store);
        gw.metrics.generation.set(1);
        tokio::spawn(sweep_pools(Arc::downgrade(&gw)));
        Ok(gw)
    }

    /// Reloads from the source. On any error the running config stays.
    pub async fn reload(&self) -> Result<u64, LoadErrors> {
        let _one = self.reload_lock.lock().await;
        let read = self
            .source
            .lock()
            .map_err(|_| LoadErrors(vec!["config source poisoned".into()]))?
            .read();
        let result = match read {
            Ok((text, name)) => self.apply(text, name).await,
            Err(e) => Err(e),
        };
        let label = if result.is_ok() { "success" } else { "failure" };
        self.metrics
            .reloads
            .get_or_create(&ResultLabels { result: label })
            .inc();
        match &result {
            Ok(g) => tracing::info!(generation = g, "config reloaded"),
            Err(e) => {
                tracing::error!(errors = %e, "config reload rejected; the running config stays")
            }
        }
        result
    }

    /// Replaces an in-memory source's text and reloads it.
    pub async fn reload_text(&self, text: &str) -> Result<u64, LoadErrors> {
        if let Ok(mut s) = self.source.lock() {
            if let Source::Text { text: t, .. } = &mut *s {
                *t = text.to_string();
            }
        }
        self.reload().await
    }

    async fn apply(&self, text: String, name: String) -> Result<u64, LoadErrors> {
        let prev = self.store.load();
        let generation = self.generation.load(Ordering::Relaxed) + 1;
        let metrics = self.metrics.clone();
        let next = off_the_serving_threads(move || {
            let spec = parse(&text, &name)?;
            compile(spec, hash(&text), generation, Some(&prev), &metrics)
                .map_err(|e| LoadErrors(e.iter().map(|e| e.to_string()).collect()))
        })
        .await?;
        let bound = self.listeners.bind(&next, None).map_err(LoadErrors)?;
        let old = self.store.swap(next);
        self.generation.store(generation, Ordering::Relaxed);
        let snap = self.store.load();
        crate::upstream::retire_removed(
            old.upstreams.values().map(|g| g.as_ref()),
            snap.upstreams.values().map(|g| g.as_ref()),
        );
        for d in self.listeners.commit(bound, &snap, &self.store) {
            let timeout = snap.spec.global.drain_timeout;
            tokio::spawn(async move {
                let _ = tokio::time::timeout(timeout, d.wait()).await;
            });
        }
        self.metrics.generation.set(generation as i64);
        // Freeing a large snapshot takes milliseconds too: let go of it off the serving
        // threads (a request still holding it frees it when it ends).
        drop(snap);
        tokio::task::spawn_blocking(move || drop(old));
        Ok(generation)
    }

    /// Stops accepting, lets in-flight requests finish within `drain_timeout`, and
    /// returns whether everything finished in time.
    pub async fn shutdown(&self) -> bool {
        self.draining.store(true, Ordering::Relaxed);
        let timeout = self.store.load().spec.global.drain_timeout;
        let drains = self.listeners.drain_all();
        let all = futures_util::future::join_all(drains.iter().map(|d| d.wait()));
        let done = tokio::time::timeout(timeout, all).await.is_ok();
        // Local quota counts outlive the process in their state files.
        self.store.load().limits.save();
        done
    }

    /// A descriptor of every listening socket, the admin API's included, for a new
    /// binary to serve on (see `upgrade`).
    pub fn handover_sockets(&self) -> Vec<(Handed, OwnedFd)> {
        let mut all = self.listeners.handover();
        if let Ok(g) = self.admin_socket.lock() {
            if let Some((configured, fd)) = g.as_ref() {
                if let Ok(fd) = fd.try_clone() {
                    let h = Handed {
                        listener: None,
                        configured: *configured,
                        udp: false,
                    };
                    all.push((h, fd));
                }
            }
        }
        all
    }

    /// A new binary serves on this one's sockets: stop the admin API (the listeners
    /// stop with [`Gateway::shutdown`]).
    pub fn handed_over(&self) {
        self.admin_stop.send_replace(true);
    }

    /// The current config generation.
    pub fn snapshot(&self) -> Arc<Runtime> {
        self.store.load()
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The Prometheus exposition, upstream series included.
    pub fn metrics_text(&self) -> String {
        let snap = self.store.load();
        self.metrics
            .encode(snap.upstreams.values().map(|g| g.as_ref()))
    }

    /// Whether shutdown has begun (readiness turns false).
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Where a listener is bound; resolves port 0 to the port the system chose.
    pub fn listener_addr(&self, name: &str) -> Option<SocketAddr> {
        self.listeners.local_addr(name)
    }

    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr.lock().ok().and_then(|g| *g)
    }
}

/// Closes pooled upstream connections past their idle timeout, every few seconds, for as
/// long as the gateway lives.
async fn sweep_pools(gw: std::sync::Weak<Gateway>) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tick.tick().await;
        let Some(gw) = gw.upgrade() else { return };
        for g in gw.store.load().upstreams.values() {
            for e in g.endpoints().iter() {
                e.pool.sweep();
            }
        }
    }
}
