//! Hands out session ids that are never reused, across restarts too.
//!
//! A data plane may still route an old session when the control plane
//! restarts, so a restarted control plane must not hand that id to someone
//! else. The allocator counts up and keeps, in `<data_dir>/session_ids`, a
//! mark above every id it may have handed out; it reserves ids in blocks so
//! that the file is written once per block, not once per session.

use std::{
    fs, io,
    path::{Path, PathBuf},
};

use openspeak_shared::persist;

use crate::ids::SessionId;

/// Ids reserved per write of the mark file.
const BLOCK: u32 = 4096;

#[derive(Debug)]
pub struct SessionIds {
    path: PathBuf,
    next: u32,
    /// Every id below this may have been handed out (it is on disk).
    reserved_until: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum SessionIdsError {
    #[error("cannot read session id mark {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("session id mark {path} is corrupt: {text:?}")]
    Corrupt { path: PathBuf, text: String },
    #[error("cannot write session id mark {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
}

impl SessionIds {
    pub fn open(path: &Path) -> Result<Self, SessionIdsError> {
        let mark = match fs::read_to_string(path) {
            Ok(text) => text
                .trim()
                .parse::<u32>()
                .map_err(|_| SessionIdsError::Corrupt {
                    path: path.to_owned(),
                    text: text.clone(),
                })?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => 1,
            Err(source) => {
                return Err(SessionIdsError::Read {
                    path: path.to_owned(),
                    source,
                });
            }
        };
        let next = mark.max(1);
        Ok(Self {
            path: path.to_owned(),
            next,
            reserved_until: next,
        })
    }

    /// The next id that `in_use` does not claim. After four billion
    /// sessions the count wraps to 1, skipping ids still in use.
    pub fn allocate(
        &mut self,
        in_use: impl Fn(SessionId) -> bool,
    ) -> Result<SessionId, SessionIdsError> {
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

    /// Writes the mark now if its file does not exist yet, so that a new
    /// data directory holds every state file from its first start.
    pub fn ensure_written(&mut self) -> Result<(), SessionIdsError> {
        match self.path.try_exists() {
            Ok(true) => Ok(()),
            Ok(false) => self.reserve(self.next),
            Err(source) => Err(SessionIdsError::Read {
                path: self.path.clone(),
                source,
            }),
        }
    }

    fn reserve(&mut self, from: u32) -> Result<(), SessionIdsError> {
        let until = from.saturating_add(BLOCK);
        persist::write_atomic(&self.path, format!("{until}\n").as_bytes(), 0o644).map_err(
            |source| SessionIdsError::Write {
                path: self.path.clone(),
                source,
            },
        )?;
        self.reserved_until = until;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_start_at_one_and_count_up() {
        let dir = tempfile::tempdir().unwrap();
        let mut ids = SessionIds::open(&dir.path().join("session_ids")).unwrap();
        assert_eq!(ids.allocate(|_| false).unwrap(), SessionId(1));
        assert_eq!(ids.allocate(|_| false).unwrap(), SessionId(2));
    }

    #[test]
    fn a_restart_never_hands_out_an_id_given_before() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("session_ids");
        let mut before = SessionIds::open(&path).unwrap();
        let mut last = SessionId(0);
        for _ in 0..(BLOCK + 10) {
            last = before.allocate(|_| false).unwrap();
        }
        drop(before);
        let mut after = SessionIds::open(&path).unwrap();
        let first = after.allocate(|_| false).unwrap();
        assert!(first > last, "{first} after {last}");
    }

    #[test]
    fn ids_in_use_are_skipped_after_wrapping() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("session_ids");
        fs::write(&path, format!("{}\n", u32::MAX)).unwrap();
        let mut ids = SessionIds::open(&path).unwrap();
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
            SessionIds::open(&path),
            Err(SessionIdsError::Corrupt { .. })
        ));
    }
}
