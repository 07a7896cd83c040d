//! Where the channel tree is kept across restarts.
//!
//! A trait, so that the JSON file of a single box can give way to an
//! embedded database, and later to a networked store shared by several
//! control planes, without the broker noticing.

use std::{
    fs, io,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use openspeak_shared::persist;

use crate::channels::ChannelRecord;

#[derive(Debug, thiserror::Error)]
pub enum ChannelStoreError {
    #[error("cannot read channels file {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("channels file {path} is corrupt: {source}")]
    Corrupt {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("cannot write channels file {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
}

/// Saves and loads the whole channel tree.
pub trait ChannelStore: Send {
    /// The saved channels, parents first; none when nothing was saved yet.
    fn load(&self) -> Result<Vec<ChannelRecord>, ChannelStoreError>;
    /// Replaces what is saved; when this returns, it survives a crash.
    fn save(&mut self, channels: &[ChannelRecord]) -> Result<(), ChannelStoreError>;
}

/// The channel tree as one JSON file, rewritten atomically on each change.
/// Channel changes are rare admin actions, so rewriting it whole is cheap.
#[derive(Debug)]
pub struct JsonChannelStore {
    path: PathBuf,
}

#[derive(Serialize, Deserialize)]
struct File {
    version: u32,
    channels: Vec<ChannelRecord>,
}

impl JsonChannelStore {
    pub fn new(path: &Path) -> Self {
        Self {
            path: path.to_owned(),
        }
    }
}

impl ChannelStore for JsonChannelStore {
    fn load(&self) -> Result<Vec<ChannelRecord>, ChannelStoreError> {
        match fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice::<File>(&bytes)
                .map(|f| f.channels)
                .map_err(|source| ChannelStoreError::Corrupt {
                    path: self.path.clone(),
                    source,
                }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(source) => Err(ChannelStoreError::Read {
                path: self.path.clone(),
                source,
            }),
        }
    }

    fn save(&mut self, channels: &[ChannelRecord]) -> Result<(), ChannelStoreError> {
        let file = File {
            version: 1,
            channels: channels.to_vec(),
        };
        let json = serde_json::to_vec_pretty(&file).expect("channel records always serialize");
        // 0600: the file holds password hashes.
        persist::write_atomic(&self.path, &json, 0o600).map_err(|source| ChannelStoreError::Write {
            path: self.path.clone(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saves_and_loads_and_starts_empty() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = JsonChannelStore::new(&dir.path().join("channels.json"));
        assert!(store.load().unwrap().is_empty());
        let record = ChannelRecord {
            id: "a".into(),
            name: "A".into(),
            parent: None,
            description: "d".into(),
            max_members: 2,
            password: None,
            temporary: false,
        };
        store.save(std::slice::from_ref(&record)).unwrap();
        assert_eq!(store.load().unwrap(), vec![record]);
    }

    #[test]
    fn a_corrupt_file_names_itself() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("channels.json");
        fs::write(&path, "[").unwrap();
        let err = JsonChannelStore::new(&path).load().unwrap_err();
        assert!(err.to_string().contains("channels.json"), "{err}");
    }
}
