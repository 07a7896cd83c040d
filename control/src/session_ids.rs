//! Hands out session ids that are never reused, across restarts too.
//!
//! A data plane may still route an old session when the control plane
//! restarts, so a restarted control plane must not hand that id to someone
//! else. The allocator counts up and keeps, in the store, a mark above
//! every id it may have handed out; it reserves ids in blocks so that the
//! mark is written once per block, not once per session.

use std::sync::Arc;

use crate::{
    ids::SessionId,
    store::{Store, StoreError},
};

/// Ids reserved per write of the mark.
const BLOCK: u32 = 4096;

#[derive(Debug)]
pub struct SessionIds {
    store: Arc<dyn Store>,
    next: u32,
    /// Every id below this may have been handed out (it is stored).
    reserved_until: u32,
    /// Whether the store holds a mark at all.
    written: bool,
}

impl SessionIds {
    pub fn open(store: Arc<dyn Store>) -> Result<Self, StoreError> {
        let mark = store.session_mark()?;
        let next = mark.unwrap_or(1).max(1);
        Ok(Self {
            store,
            next,
            reserved_until: next,
            written: mark.is_some(),
        })
    }

    /// The next id that `in_use` does not claim. After four billion
    /// sessions the count wraps to 1, skipping ids still in use.
    pub fn allocate(
        &mut self,
        in_use: impl Fn(SessionId) -> bool,
    ) -> Result<SessionId, StoreError> {
        loop {
            let id = self.next;
            self.next = self.next.checked_add(1).unwrap_or(1);
            if self.next == 1 || id >= self.reserved_until {
                self.reserve(id)?;
            }
            if !in_use(SessionId(id)) {
                return Ok(SessionId(id));
            }
        }
    }

    /// Writes the mark now if the store has none yet, so that a new data
    /// directory holds every kind of state from its first start.
    pub fn ensure_written(&mut self) -> Result<(), StoreError> {
        if self.written {
            return Ok(());
        }
        self.reserve(self.next)
    }

    fn reserve(&mut self, from: u32) -> Result<(), StoreError> {
        let until = from.saturating_add(BLOCK);
        self.store.save_session_mark(until)?;
        self.reserved_until = until;
        self.written = true;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;
    use crate::store::testing::{each, json};

    #[test]
    fn ids_start_at_one_and_count_up() {
        let dir = tempfile::tempdir().unwrap();
        let mut ids = SessionIds::open(json(dir.path())).unwrap();
        assert_eq!(ids.allocate(|_| false).unwrap(), SessionId(1));
        assert_eq!(ids.allocate(|_| false).unwrap(), SessionId(2));
    }

    #[test]
    fn a_restart_never_hands_out_an_id_given_before() {
        for case in each() {
            let mut before = SessionIds::open(case.open()).unwrap();
            before.ensure_written().unwrap();
            let mut last = SessionId(0);
            for _ in 0..(BLOCK + 10) {
                last = before.allocate(|_| false).unwrap();
            }
            drop(before);
            let mut after = SessionIds::open(case.open()).unwrap();
            let first = after.allocate(|_| false).unwrap();
            assert!(first > last, "{first} after {last}");
        }
    }

    #[test]
    fn ids_in_use_are_skipped_after_wrapping() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("session_ids");
        fs::write(&path, format!("{}\n", u32::MAX)).unwrap();
        let mut ids = SessionIds::open(json(dir.path())).unwrap();
        assert_eq!(ids.allocate(|_| false).unwrap(), SessionId(u32::MAX));
        // Wrapped: 1 and 2 are still in use, 3 is free; 0 is never given.
        assert_eq!(
            ids.allocate(|id| id.0 == 1 || id.0 == 2).unwrap(),
            SessionId(3)
        );
    }

    #[test]
    fn a_corrupt_mark_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("session_ids");
        fs::write(&path, "banana").unwrap();
        assert!(matches!(
            SessionIds::open(json(dir.path())),
            Err(StoreError::Corrupt { .. })
        ));
    }
}
