//! The state as JSON files in the data directory, one per kind, each
//! rewritten whole and atomically (written beside, synced, renamed) on
//! every change: `tokens.json`, `channels.json` and `session_ids`.
//!
//! The store of earlier versions, kept for `storage.backend: json` and as
//! the source of the import into SQLite. Bans stay in memory only, as
//! they did with these files: a restart lifts them. Rewriting a file whole is cheap
//! at the sizes a single box sees (tokens and channels change by admin
//! action; the session id mark once per block of ids).

use std::{
    fs, io,
    net::IpAddr,
    path::{Path, PathBuf},
    sync::Mutex,
};

use serde::{Deserialize, Serialize};

use openspeak_shared::persist;

use super::{DataplaneRecord, Store, StoreError, TokenRecord, check_token_hashes};
use crate::channels::ChannelRecord;

const TOKENS: &str = "tokens file";
const CHANNELS: &str = "channels file";
const MARK: &str = "session id mark";

#[derive(Debug)]
pub struct JsonStore {
    tokens_file: PathBuf,
    channels_file: PathBuf,
    ids_file: PathBuf,
    /// The tokens as last read or written: a change rewrites the file
    /// whole, so the store keeps what it would otherwise read back.
    tokens: Mutex<Vec<TokenRecord>>,
}

#[derive(Serialize, Deserialize)]
struct TokensFile {
    version: u32,
    tokens: Vec<TokenRecord>,
}

#[derive(Serialize, Deserialize)]
struct ChannelsFile {
    version: u32,
    channels: Vec<ChannelRecord>,
}

const FILE_VERSION: u32 = 1;

impl JsonStore {
    pub fn new(tokens_file: &Path, channels_file: &Path, ids_file: &Path) -> Self {
        Self {
            tokens_file: tokens_file.to_owned(),
            channels_file: channels_file.to_owned(),
            ids_file: ids_file.to_owned(),
            tokens: Mutex::new(Vec::new()),
        }
    }

    /// `(what, path)` of each file, for `StateFiles`.
    pub fn files(&self) -> Vec<(&'static str, PathBuf)> {
        vec![
            ("the token store", self.tokens_file.clone()),
            ("the channel store", self.channels_file.clone()),
            ("the session id mark", self.ids_file.clone()),
        ]
    }

    fn cached(&self) -> std::sync::MutexGuard<'_, Vec<TokenRecord>> {
        self.tokens.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Whether `path` holds the token store's own JSON (so it is state to
/// import), rather than a provisioning file that merely shares its name.
pub(crate) fn is_token_store(path: &Path) -> bool {
    std::fs::read(path)
        .ok()
        .is_some_and(|bytes| serde_json::from_slice::<TokensFile>(&bytes).is_ok())
}

/// The file's bytes; `None` when it does not exist (nothing saved yet).
fn read(what: &'static str, path: &Path) -> Result<Option<Vec<u8>>, StoreError> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(StoreError::Read {
            what,
            path: path.to_owned(),
            source,
        }),
    }
}

fn write(what: &'static str, path: &Path, bytes: &[u8], mode: u32) -> Result<(), StoreError> {
    persist::write_atomic(path, bytes, mode).map_err(|source| StoreError::Write {
        what,
        path: path.to_owned(),
        source,
    })
}

fn parse<T: for<'de> Deserialize<'de>>(
    what: &'static str,
    path: &Path,
    bytes: &[u8],
) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        what,
        path: path.to_owned(),
        detail: e.to_string(),
    })
}

impl Store for JsonStore {
    fn tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        let tokens = match read(TOKENS, &self.tokens_file)? {
            Some(bytes) => parse::<TokensFile>(TOKENS, &self.tokens_file, &bytes)?.tokens,
            None => Vec::new(),
        };
        check_token_hashes(&tokens, TOKENS, &self.tokens_file)?;
        self.cached().clone_from(&tokens);
        Ok(tokens)
    }

    fn put_token(&self, token: &TokenRecord) -> Result<(), StoreError> {
        let mut cached = self.cached();
        let mut tokens = cached.clone();
        match tokens.iter_mut().find(|t| t.id == token.id) {
            Some(old) => *old = token.clone(),
            None => tokens.push(token.clone()),
        }
        let file = TokensFile {
            version: FILE_VERSION,
            tokens,
        };
        let json = serde_json::to_vec_pretty(&file).expect("token records always serialize");
        // 0600: the hash of a token an operator chose (auth.bootstrap_token)
        // could be guessed offline by whoever reads it.
        write(TOKENS, &self.tokens_file, &json, 0o600)?;
        *cached = file.tokens;
        Ok(())
    }

    fn channels(&self) -> Result<Vec<ChannelRecord>, StoreError> {
        match read(CHANNELS, &self.channels_file)? {
            Some(bytes) => {
                Ok(parse::<ChannelsFile>(CHANNELS, &self.channels_file, &bytes)?.channels)
            }
            None => Ok(Vec::new()),
        }
    }

    fn channels_location(&self) -> &Path {
        &self.channels_file
    }

    fn save_channels(&self, channels: &[ChannelRecord]) -> Result<(), StoreError> {
        let file = ChannelsFile {
            version: FILE_VERSION,
            channels: channels.to_vec(),
        };
        let json = serde_json::to_vec_pretty(&file).expect("channel records always serialize");
        // 0600: the file holds password hashes.
        write(CHANNELS, &self.channels_file, &json, 0o600)
    }

    fn session_mark(&self) -> Result<Option<u32>, StoreError> {
        let Some(bytes) = read(MARK, &self.ids_file)? else {
            return Ok(None);
        };
        let text = String::from_utf8_lossy(&bytes);
        text.trim()
            .parse::<u32>()
            .map(Some)
            .map_err(|_| StoreError::Corrupt {
                what: MARK,
                path: self.ids_file.clone(),
                detail: format!("{text:?} is not a number"),
            })
    }

    fn save_session_mark(&self, mark: u32) -> Result<(), StoreError> {
        write(MARK, &self.ids_file, format!("{mark}\n").as_bytes(), 0o644)
    }

    fn bans(&self) -> Result<Vec<(IpAddr, u64)>, StoreError> {
        Ok(Vec::new())
    }

    fn put_ban(&self, _addr: IpAddr, _until: u64, _now: u64) -> Result<(), StoreError> {
        // A fourth file would be one more to lose and restore, for state
        // that lasts minutes; SQLite keeps bans.
        Ok(())
    }

    fn dataplanes(&self) -> Result<Vec<DataplaneRecord>, StoreError> {
        Ok(Vec::new())
    }

    fn put_dataplane(&self, _dataplane: &DataplaneRecord) -> Result<(), StoreError> {
        // As bans: only SQLite keeps what the data planes presented.
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    //! What only the JSON files do; the behaviour every store shares is
    //! tested in `store`.

    use super::*;

    fn store(dir: &Path) -> JsonStore {
        JsonStore::new(
            &dir.join("tokens.json"),
            &dir.join("channels.json"),
            &dir.join("session_ids"),
        )
    }

    #[test]
    fn a_corrupt_file_names_itself() {
        for (name, text) in [
            ("tokens.json", "{ not json"),
            ("channels.json", "["),
            ("session_ids", "banana"),
        ] {
            let dir = tempfile::tempdir().unwrap();
            fs::write(dir.path().join(name), text).unwrap();
            let store = store(dir.path());
            let err = match name {
                "tokens.json" => store.tokens().unwrap_err(),
                "channels.json" => store.channels().unwrap_err(),
                _ => store.session_mark().unwrap_err(),
            };
            assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
            assert!(err.to_string().contains(name), "{err}");
        }
    }

    #[test]
    fn a_failed_write_keeps_nothing_of_the_change() {
        let dir = tempfile::tempdir().unwrap();
        // A directory where the file should be makes every write fail.
        fs::create_dir(dir.path().join("tokens.json")).unwrap();
        let store = store(dir.path());
        let token = TokenRecord {
            id: "x".into(),
            label: "x".into(),
            role: crate::tokens::Role::Admin,
            sha256: "00".repeat(32),
            created_at: 0,
            expires_at: None,
            revoked_at: None,
        };
        assert!(store.put_token(&token).is_err());
        assert!(store.cached().is_empty());
    }
}
