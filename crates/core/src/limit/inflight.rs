//! Concurrency limits: requests in flight per key, in sharded maps whose entries go away
//! when their count returns to zero, so the table is never larger than the number of
//! requests in flight. A [`Permit`] is held by the response body and gives its place
//! back when the body ends or is dropped (the client went away).

use foldhash::fast::RandomState;
use std::collections::hash_map::{Entry, HashMap};
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex};

const SHARDS: usize = 16;

pub struct Inflight {
    max: u64,
    hasher: RandomState,
    shards: [Mutex<HashMap<String, u64, RandomState>>; SHARDS],
}

/// One request's place; dropping it frees the place.
pub struct Permit {
    table: Arc<Inflight>,
    shard: usize,
    key: String,
}

impl Inflight {
    pub fn new(max: u64) -> Arc<Inflight> {
        Arc::new(Inflight {
            max,
            hasher: RandomState::default(),
            shards: Default::default(),
        })
    }

    fn shard(&self, key: &str) -> usize {
        (self.hasher.hash_one(key) as usize) % SHARDS
    }

    /// A place for one more request under `key`, or `None` when all are taken.
    pub fn acquire(self: &Arc<Self>, key: &str) -> Option<Permit> {
        let shard = self.shard(key);
        let mut m = self.shards[shard].lock().unwrap_or_else(|e| e.into_inner());
        // Looked up by `&str` first: a key in flight already costs no copy here.
        match m.get_mut(key) {
            Some(n) if *n >= self.max => return None,
            Some(n) => *n += 1,
            None => {
                m.insert(key.to_string(), 1);
            }
        }
        Some(Permit {
            table: self.clone(),
            shard,
            key: key.to_string(),
        })
    }

    /// Requests in flight under `key`.
    pub fn count(&self, key: &str) -> u64 {
        let m = self.shards[self.shard(key)]
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        m.get(key).copied().unwrap_or(0)
    }

    pub fn max(&self) -> u64 {
        self.max
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut m = self.table.shards[self.shard]
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Entry::Occupied(mut e) = m.entry(std::mem::take(&mut self.key)) {
            *e.get_mut() -= 1;
            if *e.get() == 0 {
                e.remove();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_are_given_back_and_empty_keys_leave_the_table() {
        let t = Inflight::new(2);
        let a = t.acquire("k").unwrap();
        let b = t.acquire("k").unwrap();
        assert!(t.acquire("k").is_none());
        assert!(t.acquire("other").is_some(), "keys are counted apart");
        drop(a);
        assert_eq!(t.count("k"), 1);
        let _c = t.acquire("k").unwrap();
        drop(b);
        drop(_c);
        let held: usize = t.shards.iter().map(|s| s.lock().unwrap().len()).sum();
        assert_eq!(held, 0);
    }
}
