//! Keeps a lost state file from passing for a new server.
//!
//! Each store reads a missing file as "nothing yet", which is right for a
//! new data directory and wrong for one whose `tokens.json` (or, with
//! SQLite, `openspeak.db`) was deleted:
//! the control plane would start with no tokens, make a new admin token
//! and forget every user, channel and session id without a word. So the
//! data directory carries a marker, `control_state`, written once every
//! state file exists. When the marker is there, every state file must be
//! too, or start-up stops and says which one is missing and what to do.
//!
//! A directory without the marker is new (no state file at all) or was
//! written by an earlier version (some of them): both start, and the
//! marker is written once the missing files have been created.

use std::io;
use std::path::{Path, PathBuf};

use openspeak_shared::persist;

/// The marker's name in the data directory.
pub const MARKER: &str = "control_state";

/// What the marker holds: a line a person who opens it can follow.
const MARKER_TEXT: &str = "OpenSpeak control plane state: tokens, channels and session ids \
live in this directory.\nWhile this file exists, the control plane refuses to start if one \
of them is missing.\n";

/// The control plane's state files: the JSON files, or the database.
#[derive(Debug, Clone)]
pub struct StateFiles {
    /// `(what, path)` of each state file, for messages.
    files: Vec<(&'static str, PathBuf)>,
    marker: PathBuf,
}

/// A state file that is missing from a data directory that had it.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error(
        "{what} {path} is missing, but this data directory has held a control plane's state \
         ({marker} is there): restore {path} from a backup; to start afresh on purpose, move \
         the whole data directory away"
    )]
    Missing {
        what: &'static str,
        path: PathBuf,
        marker: PathBuf,
    },
    #[error("cannot check {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
}

impl StateFiles {
    pub fn new(data_dir: &Path, files: Vec<(&'static str, PathBuf)>) -> Self {
        Self {
            files,
            marker: data_dir.join(MARKER),
        }
    }

    /// Refuses to go on when the marker says there was state and a file of
    /// it is gone.
    pub fn check(&self) -> Result<(), StateError> {
        if !exists(&self.marker)? {
            return Ok(());
        }
        for (what, path) in &self.files {
            if !exists(path)? {
                return Err(StateError::Missing {
                    what,
                    path: path.clone(),
                    marker: self.marker.clone(),
                });
            }
        }
        Ok(())
    }

    /// Whether the marker says this directory has held state; `Some` with
    /// the marker's path when it does.
    pub fn marker(&self) -> Result<Option<&Path>, StateError> {
        Ok(exists(&self.marker)?.then_some(self.marker.as_path()))
    }

    /// Which state files do not exist yet.
    pub fn missing(&self) -> Result<Vec<&Path>, StateError> {
        let mut missing = Vec::new();
        for (_, path) in &self.files {
            if !exists(path)? {
                missing.push(path.as_path());
            }
        }
        Ok(missing)
    }

    /// Writes the marker, once every state file exists.
    pub fn seal(&self) -> Result<(), StateError> {
        debug_assert!(self.missing().is_ok_and(|m| m.is_empty()));
        if exists(&self.marker)? {
            return Ok(());
        }
        persist::write_atomic(&self.marker, MARKER_TEXT.as_bytes(), 0o644).map_err(|source| {
            StateError::Write {
                path: self.marker.clone(),
                source,
            }
        })
    }
}

fn exists(path: &Path) -> Result<bool, StateError> {
    path.try_exists().map_err(|source| StateError::Read {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(dir: &Path) -> StateFiles {
        StateFiles::new(
            dir,
            vec![
                ("the token store", dir.join("tokens.json")),
                ("the channel store", dir.join("channels.json")),
                ("the session id mark", dir.join("session_ids")),
            ],
        )
    }

    fn touch(dir: &Path, names: &[&str]) {
        for name in names {
            std::fs::write(dir.join(name), "x").unwrap();
        }
    }

    #[test]
    fn a_new_or_unmarked_directory_starts() {
        let dir = tempfile::tempdir().unwrap();
        let state = files(dir.path());
        state.check().unwrap();
        assert_eq!(state.missing().unwrap().len(), 3);
        // Written by an earlier version: some files, no marker.
        touch(dir.path(), &["tokens.json"]);
        state.check().unwrap();
        assert_eq!(state.missing().unwrap().len(), 2);
    }

    #[test]
    fn once_sealed_every_missing_file_stops_start_up_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let state = files(dir.path());
        touch(dir.path(), &["tokens.json", "channels.json", "session_ids"]);
        state.seal().unwrap();
        state.check().unwrap();
        for name in ["tokens.json", "channels.json", "session_ids"] {
            std::fs::remove_file(dir.path().join(name)).unwrap();
            let err = state.check().unwrap_err();
            let message = err.to_string();
            assert!(message.contains(name), "{message}");
            assert!(message.contains("restore"), "{message}");
            touch(dir.path(), &[name]);
            state.check().unwrap();
        }
    }
}
