//! The local store: one policy's per-key state in a bounded concurrent cache (moka),
//! whose keys expire once idle for as long as their state can matter, so a flood of
//! random keys holds at most `max_keys` entries and an idle key costs nothing for long.

use super::algo::{FixedState, WindowState};
use moka::sync::Cache;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One key's state.
pub enum Cell {
    /// A GCRA theoretical arrival time, updated by compare-and-swap.
    Gcra(AtomicU64),
    Window(Mutex<WindowState>),
    Fixed(Mutex<FixedState>),
}

pub struct Local {
    cache: Cache<String, Arc<Cell>>,
}

impl Local {
    /// `idle`: how long a key's state matters after its last request.
    pub fn new(max_keys: u64, idle: Duration) -> Local {
        Local {
            cache: Cache::builder()
                .max_capacity(max_keys)
                .time_to_idle(idle.max(Duration::from_secs(1)))
                .build(),
        }
    }

    /// The key's cell, made by `fresh` when the key is new.
    pub fn cell(&self, key: &str, fresh: impl FnOnce() -> Cell) -> Arc<Cell> {
        if let Some(c) = self.cache.get(key) {
            return c;
        }
        self.cache.get_with(key.to_string(), || Arc::new(fresh()))
    }

    /// The key's cell if it is held.
    pub fn peek(&self, key: &str) -> Option<Arc<Cell>> {
        self.cache.get(key)
    }

    pub fn remove(&self, key: &str) {
        self.cache.invalidate(key);
    }

    /// Every key and its cell (for the state file).
    pub fn entries(&self) -> Vec<(Arc<String>, Arc<Cell>)> {
        self.cache.iter().collect()
    }

    /// Puts a key's state back (from the state file).
    pub fn insert(&self, key: String, cell: Cell) {
        self.cache.insert(key, Arc::new(cell));
    }

    pub fn len(&self) -> u64 {
        self.cache.run_pending_tasks();
        self.cache.entry_count()
    }
}
