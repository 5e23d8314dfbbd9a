//! Per-thread state for work spread over rayon's threads: each thread keeps
//! its own (a memo, say) for the length of one computation, so that what one
//! batch worked out serves the next, and nothing outlives the computation.

use std::sync::{Mutex, PoisonError};

use rustc_hash::FxHashMap;

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

/// Results already worked out, by the text of what they depend on (a
/// twin's configuration as JSON, say). Keys are hashed with a fast
/// non-cryptographic hash and compared in full, so a result is never taken
/// for another's. The memo holds at most a budget of key bytes and starts
/// again when it is full, so that a fleet where no two twins look alike
/// cannot fill memory.
#[derive(Debug)]
pub(crate) struct Memo<V> {
    entries: FxHashMap<Box<str>, V>,
    bytes: usize,
}

impl<V> Default for Memo<V> {
    fn default() -> Self {
        Self {
            entries: FxHashMap::default(),
            bytes: 0,
        }
    }
}

/// Key bytes a memo holds before it starts again.
const MEMO_BYTES: usize = 32 << 20;

impl<V> Memo<V> {
    /// The result remembered for `key`.
    pub(crate) fn get(&self, key: &str) -> Option<&V> {
        self.entries.get(key)
    }

    /// Remembers `value` for `key`, first forgetting everything when full.
    pub(crate) fn remember(&mut self, key: &str, value: V) {
        if self.bytes + key.len() > MEMO_BYTES {
            self.entries.clear();
            self.bytes = 0;
        }
        self.bytes += key.len();
        self.entries.insert(key.into(), value);
    }
}

/// Small numbers for the texts a thread has seen (a twin's tag, a live
/// value), so that memos over several texts key on a few numbers: each
/// text is hashed and compared once per twin, and held once however many
/// memo keys name it. Bounded like [`Memo`]: when [`is_full`](Self::is_full),
/// the ids start again, and so must every memo keyed by them.
#[derive(Debug, Default)]
pub(crate) struct Texts {
    ids: FxHashMap<Box<str>, usize>,
    bytes: usize,
}

impl Texts {
    /// The id of `text`: 0 when absent, else the same number for the same
    /// text until the ids start again.
    pub(crate) fn id(&mut self, text: Option<&str>) -> usize {
        let Some(text) = text else { return 0 };
        if let Some(&id) = self.ids.get(text) {
            return id;
        }
        let id = self.ids.len() + 1;
        self.bytes += text.len();
        self.ids.insert(text.into(), id);
        id
    }

    /// Whether the texts hold their budget of bytes.
    pub(crate) fn is_full(&self) -> bool {
        self.bytes > MEMO_BYTES
    }

    /// Forgets every text: ids start again.
    pub(crate) fn clear(&mut self) {
        self.ids.clear();
        self.bytes = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::Texts;

    #[test]
    fn a_text_keeps_its_id_until_the_ids_start_again() {
        let mut texts = Texts::default();
        assert_eq!(texts.id(None), 0);
        let first = texts.id(Some("{\"a\":1}"));
        let second = texts.id(Some("{\"a\":2}"));
        assert_ne!(first, 0);
        assert_ne!(first, second);
        assert_eq!(texts.id(Some("{\"a\":1}")), first);
        assert!(!texts.is_full());
        texts.clear();
        assert_eq!(texts.id(Some("{\"a\":2}")), first, "ids start again");
    }
}
