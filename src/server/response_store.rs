//! The responses `/v1/responses` keeps ([`super::responses`]): in memory, within a
//! byte budget, the oldest dropped first, each for the API key that made it.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use serde_json::Value;

/// Bytes of stored responses by default (`--responses-store-bytes`).
pub const DEFAULT_STORE_BYTES: usize = 64 << 20;

/// A response as kept: its object, the conversation it followed (the input items of
/// it and of the responses it continues, after any truncation; instructions are not
/// items), and whose it is.
pub struct Stored {
    pub(super) response: Value,
    pub(super) context: Vec<Arc<Value>>,
    pub(super) owner: Option<usize>,
    pub(super) bytes: usize,
}

impl Stored {
    /// The conversation a response continuing this one starts from: this one's
    /// context, then its output.
    pub(super) fn continued(&self) -> Vec<Arc<Value>> {
        let output = self.response["output"].as_array().into_iter().flatten();
        self.context
            .iter()
            .cloned()
            .chain(output.map(|o| Arc::new(o.clone())))
            .collect()
    }
}

/// The stored responses: at most `budget` bytes (each response counted with the items
/// of its own input; the earlier turns it shares are counted once, with the response
/// that brought them), the oldest dropped first.
pub struct Store {
    budget: usize,
    inner: Mutex<StoreInner>,
}

#[derive(Default)]
struct StoreInner {
    by_id: HashMap<String, Arc<Stored>>,
    order: VecDeque<String>,
    bytes: usize,
}

impl Store {
    pub fn new(budget: usize) -> Self {
        Store {
            budget,
            inner: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, StoreInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether responses are kept at all.
    pub fn enabled(&self) -> bool {
        self.budget > 0
    }

    /// Keep a response (dropping the oldest beyond the budget); one larger than the
    /// whole budget is not kept.
    pub(super) fn put(&self, id: String, stored: Stored) {
        if stored.bytes > self.budget {
            return;
        }
        let mut s = self.lock();
        s.bytes += stored.bytes;
        s.by_id.insert(id.clone(), Arc::new(stored));
        s.order.push_back(id);
        while s.bytes > self.budget {
            let Some(old) = s.order.pop_front() else {
                break;
            };
            if let Some(gone) = s.by_id.remove(&old) {
                s.bytes -= gone.bytes;
            }
        }
    }

    /// The response `id` if `owner` may see it (the key that made it; anyone's
    /// without keys).
    pub(super) fn get(&self, id: &str, owner: Option<usize>) -> Option<Arc<Stored>> {
        self.lock()
            .by_id
            .get(id)
            .filter(|s| s.owner == owner)
            .cloned()
    }

    pub(super) fn remove(&self, id: &str, owner: Option<usize>) -> bool {
        let mut s = self.lock();
        if s.by_id.get(id).is_none_or(|r| r.owner != owner) {
            return false;
        }
        if let Some(gone) = s.by_id.remove(id) {
            s.bytes -= gone.bytes;
        }
        s.order.retain(|k| k != id);
        true
    }

    /// Responses kept, and their bytes.
    pub fn usage(&self) -> (usize, usize) {
        let s = self.lock();
        (s.by_id.len(), s.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The store keeps the newest within its bytes, per owner.
    #[test]
    fn the_store_keeps_the_newest_within_its_budget() {
        let s = Store::new(1000);
        let stored = |owner, bytes| Stored {
            response: json!({"output": []}),
            context: Vec::new(),
            owner,
            bytes,
        };
        s.put("a".into(), stored(None, 400));
        s.put("b".into(), stored(None, 400));
        assert_eq!(s.usage(), (2, 800));
        s.put("c".into(), stored(Some(1), 400));
        assert!(s.get("a", None).is_none(), "the oldest went first");
        assert!(s.get("b", None).is_some());
        assert!(s.get("c", None).is_none(), "another key's");
        assert!(s.get("c", Some(1)).is_some());
        assert!(!s.remove("c", Some(2)));
        assert!(s.remove("c", Some(1)));
        assert_eq!(s.usage(), (1, 400));
        s.put("huge".into(), stored(None, 2000));
        assert!(s.get("huge", None).is_none());
        assert!(!Store::new(0).enabled());
    }
}
