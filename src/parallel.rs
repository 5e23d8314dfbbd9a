//! Per-thread state for work spread over rayon's threads: each thread keeps
//! its own (a memo, say) for the length of one computation, so that what one
//! batch worked out serves the next, and nothing outlives the computation.

use std::sync::{Mutex, PoisonError};

/// One `T` per rayon thread, plus one for work done outside the pool.
pub(crate) struct PerThread<T>(Vec<Mutex<T>>);

impl<T: Default> PerThread<T> {
    /// Fresh state for every thread of the current pool.
    pub(crate) fn new() -> Self {
        Self(
            (0..=rayon::current_num_threads())
                .map(|_| Mutex::new(T::default()))
                .collect(),
        )
    }

    /// Runs `work` with the calling thread's state. Each thread only ever
    /// takes its own lock, so the lock is never contended.
    pub(crate) fn with<R>(&self, work: impl FnOnce(&mut T) -> R) -> R {
        let at = rayon::current_thread_index()
            .filter(|&at| at + 1 < self.0.len())
            .unwrap_or(self.0.len() - 1);
        let slot = self.0.get(at).or(self.0.last());
        match slot {
            Some(slot) => work(&mut slot.lock().unwrap_or_else(PoisonError::into_inner)),
            None => work(&mut T::default()),
        }
    }
}

/// Entries a memo keeps before it starts again: twins that look alike are
/// worked out once, and a fleet where none do cannot fill memory.
pub(crate) const MEMO_ENTRIES: usize = 16_384;

/// A memo keyed by text. Keys are long (a twin's configuration as JSON), so
/// they are hashed with a fast non-cryptographic hash; they come from the
/// user's own fleet, so hash flooding is no concern.
pub(crate) type Memo<V> = rustc_hash::FxHashMap<String, V>;

/// Inserts into a memo, emptying it first when it is full.
pub(crate) fn remember<V>(memo: &mut Memo<V>, key: String, value: V) {
    if memo.len() >= MEMO_ENTRIES {
        memo.clear();
    }
    memo.insert(key, value);
}
