//! The local store: one policy's per-key state in sharded maps, bounded by `max_keys`.
//! A key's state is read and updated under its shard's lock, with no allocation once the
//! key exists. Keys idle for longer than their state can matter (a GCRA key after
//! `burst` intervals) are swept out: every 1,024 new keys in a shard, and whenever a
//! shard is full; if a full shard has nothing idle, an eighth of it is dropped (in the
//! map's random order), so a flood of random keys costs O(1) amortized per key and never
//! more than `max_keys` entries. A dropped key starts afresh, as a new key would.

use super::algo::{FixedState, WindowState};
use foldhash::fast::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::Mutex;

const SHARDS: usize = 16;
/// New keys in a shard between two sweeps of its idle keys.
const SWEEP_EVERY: u32 = 1024;

/// One key's state.
#[derive(Clone, Copy)]
pub enum Cell {
    /// A GCRA theoretical arrival time.
    Gcra(u64),
    Window(WindowState),
    Fixed(FixedState),
}

struct Entry {
    cell: Cell,
    /// Last use, on the policy's clock (ns).
    used: u64,
}

#[derive(Default)]
struct Shard {
    map: HashMap<String, Entry, RandomState>,
    inserted: u32,
}

pub struct Local {
    shards: Box<[Mutex<Shard>]>,
    hasher: RandomState,
    cap: usize,
    idle: u64,
}

impl Local {
    /// `idle`: how long (ns) a key's state matters after its last request.
    pub fn new(max_keys: u64, idle: u64) -> Local {
        Local {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            hasher: RandomState::default(),
            cap: (max_keys as usize).div_ceil(SHARDS).max(1),
            idle: idle.max(1_000_000_000),
        }
    }

    fn shard(&self, key: &str) -> std::sync::MutexGuard<'_, Shard> {
        let i = (self.hasher.hash_one(key) as usize) % SHARDS;
        self.shards[i].lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` on the key's cell (made by `fresh` when the key is new) at `now`.
    pub fn with<T>(
        &self,
        key: &str,
        now: u64,
        fresh: impl FnOnce() -> Cell,
        f: impl FnOnce(&mut Cell) -> T,
    ) -> T {
        let mut s = self.shard(key);
        if let Some(e) = s.map.get_mut(key) {
            e.used = now;
            return f(&mut e.cell);
        }
        s.inserted += 1;
        if s.map.len() >= self.cap || s.inserted >= SWEEP_EVERY {
            self.sweep(&mut s, now);
        }
        let mut cell = fresh();
        let out = f(&mut cell);
        s.map.insert(key.to_string(), Entry { cell, used: now });
        out
    }

    fn sweep(&self, s: &mut Shard, now: u64) {
        s.inserted = 0;
        let idle = self.idle;
        s.map.retain(|_, e| now.saturating_sub(e.used) < idle);
        if s.map.len() >= self.cap {
            let drop: Vec<String> = s.map.keys().take(self.cap.div_ceil(8)).cloned().collect();
            for k in drop {
                s.map.remove(&k);
            }
        }
    }

    /// The key's cell if it is held.
    pub fn peek(&self, key: &str) -> Option<Cell> {
        self.shard(key).map.get(key).map(|e| e.cell)
    }

    /// Runs `f` on the key's cell if it is held (a refund).
    pub fn update(&self, key: &str, f: impl FnOnce(&mut Cell)) {
        if let Some(e) = self.shard(key).map.get_mut(key) {
            f(&mut e.cell);
        }
    }

    pub fn remove(&self, key: &str) {
        self.shard(key).map.remove(key);
    }

    /// Every key and its cell (for the state file).
    pub fn entries(&self) -> Vec<(String, Cell)> {
        let mut out = Vec::new();
        for s in self.shards.iter() {
            let s = s.lock().unwrap_or_else(|e| e.into_inner());
            out.extend(s.map.iter().map(|(k, e)| (k.clone(), e.cell)));
        }
        out
    }

    /// Puts a key's state back (from the state file).
    pub fn insert(&self, key: String, cell: Cell, now: u64) {
        self.shard(&key).map.insert(key, Entry { cell, used: now });
    }

    pub fn len(&self) -> u64 {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).map.len() as u64)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_keys_are_swept_and_a_full_store_stays_full_at_most() {
        let l = Local::new(160, 1_000_000_000);
        for i in 0..100 {
            l.with(&format!("k{i}"), 0, || Cell::Gcra(0), |_| ());
        }
        assert!(l.len() <= 100);
        // Two seconds on, the old keys are idle: a full shard sweeps them out.
        for i in 0..10_000 {
            l.with(&format!("new{i}"), 2_000_000_000, || Cell::Gcra(0), |_| ());
            assert!(l.len() <= 160 + SHARDS as u64);
        }
        assert!((0..100).all(|i| l.peek(&format!("k{i}")).is_none()));
    }
}
