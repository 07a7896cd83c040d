//! Where the control plane's state is kept across restarts: tokens (their
//! hashes), the permanent channels, the session id mark and, with SQLite,
//! the addresses banned for failed authentications.
//!
//! The managers (`TokenStore`, the broker's channel tree, `SessionIds`)
//! keep their state in memory and go through [`Store`] only to load it at
//! start and to make each change durable before it takes effect. Each
//! write method returns once the change survives a `kill -9` and a power
//! cut, so an RPC answered after it never loses its change. A trait, so
//! that a networked database can serve several control planes later
//! without the managers noticing.
//!
//! Two implementations: [`SqliteStore`], one database file and the
//! default, and [`JsonStore`], one JSON file per kind of state, the store
//! of earlier versions. [`open`] picks one from the configuration, keeps
//! the `control_state` guarantee (a data directory that held state and
//! lost it refuses to start) and, on the first SQLite start over a data
//! directory of JSON files, imports them.

mod json;
mod sqlite;

use std::{
    fmt, io,
    net::IpAddr,
    path::{Path, PathBuf},
    sync::Arc,
};

use openspeak_shared::config::Config;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::{
    channels::ChannelRecord,
    state_files::{StateError, StateFiles},
    tokens::Role,
};

pub use json::JsonStore;
pub use sqlite::SqliteStore;

/// One token as stored: never its plaintext.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    pub id: String,
    pub label: String,
    pub role: Role,
    /// Hex SHA-256 of the plaintext.
    pub sha256: String,
    /// Unix seconds.
    pub created_at: u64,
    pub expires_at: Option<u64>,
    /// Revoked tokens are kept (for the audit trail) but never accepted.
    pub revoked_at: Option<u64>,
}

/// A data plane as the control plane last saw it: the certificate its
/// clients pin, so that a data plane coming back with another one is
/// noticed (regenerated, or not the same machine).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataplaneRecord {
    pub id: String,
    /// 64 lowercase hex digits.
    pub cert_sha256: String,
    /// Unix seconds.
    pub first_seen: u64,
    pub last_seen: u64,
}

/// Keeps the control plane's state. Every write returns only once the
/// change is durable; when it fails, nothing of the change was kept and
/// the caller must not make it.
pub trait Store: Send + Sync + fmt::Debug {
    /// Every token ever created, oldest first.
    fn tokens(&self) -> Result<Vec<TokenRecord>, StoreError>;
    /// Adds `token`, or replaces the one with its id (a revocation).
    fn put_token(&self, token: &TokenRecord) -> Result<(), StoreError>;
    /// The saved channels, parents first; none when nothing was saved yet.
    fn channels(&self) -> Result<Vec<ChannelRecord>, StoreError>;
    /// Where the channels are kept, for messages about them.
    fn channels_location(&self) -> &Path;
    /// Replaces the saved channel tree with `channels`.
    fn save_channels(&self, channels: &[ChannelRecord]) -> Result<(), StoreError>;
    /// The session id mark: every id below it may have been handed out.
    /// `None` when none was saved yet.
    fn session_mark(&self) -> Result<Option<u32>, StoreError>;
    fn save_session_mark(&self, mark: u32) -> Result<(), StoreError>;
    /// The banned addresses and when each ban ends (Unix seconds); bans
    /// that have ended may be among them.
    fn bans(&self) -> Result<Vec<(IpAddr, u64)>, StoreError>;
    /// Records that `addr` is banned until `until`, and forgets bans that
    /// ended before `now` (both Unix seconds).
    fn put_ban(&self, addr: IpAddr, until: u64, now: u64) -> Result<(), StoreError>;
    /// The data planes ever attached, by id.
    fn dataplanes(&self) -> Result<Vec<DataplaneRecord>, StoreError>;
    /// Adds `dataplane`, or replaces the one with its id.
    fn put_dataplane(&self, dataplane: &DataplaneRecord) -> Result<(), StoreError>;
}

/// A failure to read or write the state, naming the file and, where there
/// is one, what to do.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot read {what} {path}: {source}")]
    Read {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("{what} {path} is corrupt ({detail}): restore it from a backup")]
    Corrupt {
        what: &'static str,
        path: PathBuf,
        detail: String,
    },
    #[error("cannot write {what} {path}: {source}")]
    Write {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("database {path}: cannot {action}: {source}")]
    Database {
        path: PathBuf,
        action: &'static str,
        source: rusqlite::Error,
    },
    #[error(
        "database {path} cannot use WAL mode (its journal mode stays {mode:?}): put it on a \
         local file system (storage.path)"
    )]
    NoWal { path: PathBuf, mode: String },
    #[error(
        "database {path} is empty, but this data directory has held a control plane's state \
         ({marker} is there): restore {path} from a backup; to start afresh on purpose, move \
         the whole data directory away"
    )]
    Emptied { path: PathBuf, marker: PathBuf },
    #[error(
        "database {path} has schema version {found}, but this openspeak-control knows \
         versions up to {known}: run the newer openspeak-control that wrote it, or restore a \
         backup taken with this version"
    )]
    TooNew {
        path: PathBuf,
        found: i64,
        known: usize,
    },
}

/// Everything a store holds, as loaded at start (and as imported).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Contents {
    pub tokens: Vec<TokenRecord>,
    pub channels: Vec<ChannelRecord>,
    pub session_mark: Option<u32>,
}

impl Contents {
    pub fn read(store: &dyn Store) -> Result<Self, StoreError> {
        Ok(Self {
            tokens: store.tokens()?,
            channels: store.channels()?,
            session_mark: store.session_mark()?,
        })
    }
}

/// Why the store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    State(#[from] StateError),
}

/// The configured store, opened.
#[derive(Debug)]
pub struct Opened {
    pub store: Arc<dyn Store>,
    /// The files that must all exist once the control plane has started;
    /// seal them when they do.
    pub state: StateFiles,
    /// Nothing was there before: a new data directory.
    pub fresh: bool,
}

/// Opens the store `config` names (`storage.backend`).
///
/// With SQLite, a data directory holding the JSON files of earlier
/// versions and no database yet is imported: the JSON files go into the
/// new database in the same transaction as its schema (so a crash leaves
/// either no data in it, and the import runs again, or all of it), then
/// they are renamed to `*.imported`.
pub fn open(config: &Config) -> Result<Opened, OpenError> {
    let data_dir = &config.storage.data_dir;
    let json = JsonStore::new(
        &config.tokens_file(),
        &data_dir.join("channels.json"),
        &data_dir.join("session_ids"),
    );
    let json_state = StateFiles::new(data_dir, json.files());
    if !config.storage.uses_sqlite() {
        json_state.check()?;
        let fresh = json_state.missing()?.len() == json.files().len();
        return Ok(Opened {
            store: Arc::new(json),
            state: json_state,
            fresh,
        });
    }

    let db = config.storage.database_file();
    let db_state = StateFiles::new(data_dir, vec![("the database", db.clone())]);
    let db_existed = exists(&db)?;
    // The tokens file is the provisioning source beside a database
    // (`provision`): only in the token store's own format, and only
    // before there is a database, is it state to import.
    let tokens_file = config.tokens_file();
    let json_present: Vec<PathBuf> = json
        .files()
        .into_iter()
        .map(|(_, path)| path)
        .filter(|path| path.try_exists().unwrap_or(true))
        .filter(|path| *path != tokens_file || (!db_existed && json::is_token_store(path)))
        .collect();
    if !db_existed && !json_present.is_empty() {
        // The JSON files are the state: a lost one of them still stops
        // start-up, as it did before.
        json_state.check()?;
    } else {
        db_state.check()?;
    }
    let marker = db_state.marker()?.map(Path::to_owned);
    // Called only when the database holds no schema yet: a new one.
    let (store, imported) = SqliteStore::open_seeded(&db, || {
        if !json_present.is_empty() {
            Contents::read(&json).map(Some)
        } else if let Some(marker) = marker {
            // Truncated or replaced by an empty file: it must not pass
            // for a new server any more than a missing one.
            Err(StoreError::Emptied {
                path: db.clone(),
                marker,
            })
        } else {
            Ok(None)
        }
    })?;
    if let Some(contents) = &imported {
        info!(
            database = %db.display(),
            tokens = contents.tokens.len(),
            channels = contents.channels.len(),
            session_mark = contents.session_mark.unwrap_or(0),
            "imported the JSON state files into the database; they are renamed to *.imported"
        );
        for path in &json_present {
            let to = imported_name(path);
            // Not fatal: the database is the store now, and a JSON file
            // left beside it is only ever warned about.
            if let Err(error) = std::fs::rename(path, &to) {
                warn!(from = %path.display(), to = %to.display(), %error,
                    "cannot rename an imported state file; move it away by hand");
            }
        }
    } else {
        for path in &json_present {
            warn!(
                file = %path.display(),
                database = %db.display(),
                "a JSON state file is beside the database and is not read \
                 (storage.backend is sqlite); move it away"
            );
        }
    }
    Ok(Opened {
        store: Arc::new(store),
        state: db_state,
        fresh: !db_existed && json_present.is_empty(),
    })
}

/// Refuses tokens whose `sha256` is not 32 bytes of hex: such a token
/// could never be presented, and the file or database was damaged.
fn check_token_hashes(
    tokens: &[TokenRecord],
    what: &'static str,
    path: &Path,
) -> Result<(), StoreError> {
    match tokens
        .iter()
        .find(|t| crate::tokens::decode_hash(&t.sha256).is_none())
    {
        None => Ok(()),
        Some(bad) => Err(StoreError::Corrupt {
            what,
            path: path.to_owned(),
            detail: format!("token {} has a malformed sha256", bad.id),
        }),
    }
}

/// `tokens.json` → `tokens.json.imported`.
fn imported_name(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".imported");
    PathBuf::from(name)
}

fn exists(path: &Path) -> Result<bool, StateError> {
    path.try_exists().map_err(|source| StateError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Each implementation over a test's directory, for the tests that run
/// the same on both.
#[cfg(test)]
pub mod testing {
    use super::*;

    /// Opens a store over the directory.
    pub type Make = fn(&Path) -> Arc<dyn Store>;

    pub fn json(dir: &Path) -> Arc<dyn Store> {
        Arc::new(JsonStore::new(
            &dir.join("tokens.json"),
            &dir.join("channels.json"),
            &dir.join("session_ids"),
        ))
    }

    pub fn sqlite(dir: &Path) -> Arc<dyn Store> {
        Arc::new(SqliteStore::open(&dir.join("openspeak.db")).unwrap())
    }

    const BOTH: [(&str, Make); 2] = [("json", json), ("sqlite", sqlite)];

    /// One implementation under test, over a fresh directory of its own.
    pub struct Case {
        /// The implementation's name, for assertion messages.
        pub name: &'static str,
        /// Where its files are; removed when the case is dropped.
        pub dir: tempfile::TempDir,
        make: Make,
    }

    impl Case {
        /// Opens the store over the case's directory: again after a drop,
        /// to see what it kept.
        pub fn open(&self) -> Arc<dyn Store> {
            (self.make)(self.dir.path())
        }

        /// Opens the store as a server start does, its tokens read first:
        /// the JSON store writes a token into the list it has read.
        pub fn start(&self) -> Arc<dyn Store> {
            let store = self.open();
            store.tokens().unwrap();
            store
        }
    }

    /// Each implementation, over a fresh directory each: every test that
    /// runs the same on both starts from this.
    pub fn each() -> impl Iterator<Item = Case> {
        BOTH.into_iter().map(|(name, make)| Case {
            name,
            dir: tempfile::tempdir().unwrap(),
            make,
        })
    }
}

#[cfg(test)]
mod tests {
    //! One set of tests, run on each implementation.

    use super::*;
    use crate::channels::StoredPassword;

    fn token(id: &str, created_at: u64) -> TokenRecord {
        TokenRecord {
            id: id.into(),
            label: format!("label {id}"),
            role: Role::Member,
            sha256: format!("{:064x}", created_at + 1),
            created_at,
            expires_at: Some(created_at + 60),
            revoked_at: None,
        }
    }

    fn channel(id: &str, parent: Option<&str>) -> ChannelRecord {
        ChannelRecord {
            id: id.into(),
            name: format!("name {id}"),
            parent: parent.map(str::to_owned),
            description: "a \"quoted\" description, 'and' more".into(),
            max_members: 7,
            password: Some(StoredPassword {
                salt: "00ff".into(),
                sha256: "ab".repeat(32),
            }),
            temporary: false,
        }
    }

    use super::testing::{each, json};

    #[test]
    fn each_store_starts_empty() {
        for case in each() {
            let store = case.open();
            assert_eq!(
                Contents::read(&*store).unwrap(),
                Contents::default(),
                "{}",
                case.name
            );
        }
    }

    #[test]
    fn each_store_keeps_every_change_across_a_reopen_in_order() {
        for case in each() {
            let store = case.start();
            let (a, mut b, c) = (token("a", 10), token("b", 5), token("c", 20));
            for t in [&a, &b, &c] {
                store.put_token(t).unwrap();
            }
            b.revoked_at = Some(30);
            store.put_token(&b).unwrap();
            let tree = vec![channel("root", None), channel("child", Some("root"))];
            store.save_channels(&tree).unwrap();
            // A replacement drops what it leaves out.
            let tree = vec![
                channel("root", None),
                channel("other", None),
                channel("grandchild", Some("other")),
            ];
            store.save_channels(&tree).unwrap();
            store.save_session_mark(4097).unwrap();
            store.save_session_mark(8193).unwrap();
            drop(store);

            let reopened = case.open();
            let contents = Contents::read(&*reopened).unwrap();
            assert_eq!(
                contents,
                Contents {
                    // Creation order, not id or time order; the revocation
                    // replaced the record in place.
                    tokens: vec![a.clone(), b.clone(), c.clone()],
                    channels: tree.clone(),
                    session_mark: Some(8193),
                },
                "{}",
                case.name
            );
        }
    }

    #[test]
    fn each_store_refuses_a_token_with_a_malformed_hash_naming_the_file() {
        for case in each() {
            let store = case.start();
            let mut bad = token("bad", 1);
            bad.sha256 = "not hex".into();
            store.put_token(&bad).unwrap();
            drop(store);
            let err = case.open().tokens().unwrap_err().to_string();
            let (name, dir) = (case.name, case.dir.path());
            assert!(err.contains(dir.to_str().unwrap()), "{name}: {err}");
            assert!(err.contains("bad"), "{name}: {err}");
        }
    }

    fn config(dir: &Path, backend: &str) -> Config {
        let mut config = Config::default();
        config.storage.data_dir = dir.to_owned();
        if backend == "json" {
            // Only reachable through (de)serialization from outside the
            // shared crate; see `StorageConfig::uses_sqlite`.
            config.storage = serde_json::from_value(serde_json::json!({
                "data_dir": dir, "backend": "json"
            }))
            .unwrap();
        }
        config
    }

    /// A data directory of JSON files becomes a database at the first
    /// SQLite start: every record, one transaction, the files renamed.
    #[test]
    fn the_first_sqlite_start_imports_the_json_files() {
        let dir = tempfile::tempdir().unwrap();
        let before = json(dir.path());
        before.tokens().unwrap();
        let (a, mut b) = (token("a", 1), token("b", 2));
        before.put_token(&a).unwrap();
        b.revoked_at = Some(3);
        before.put_token(&b).unwrap();
        let tree = vec![channel("root", None), channel("child", Some("root"))];
        before.save_channels(&tree).unwrap();
        before.save_session_mark(12_289).unwrap();
        let expected = Contents::read(&*before).unwrap();
        drop(before);

        let opened = open(&config(dir.path(), "sqlite")).unwrap();
        assert!(!opened.fresh);
        assert_eq!(Contents::read(&*opened.store).unwrap(), expected);
        for name in ["tokens.json", "channels.json", "session_ids"] {
            assert!(!dir.path().join(name).exists(), "{name} is renamed");
            assert!(dir.path().join(format!("{name}.imported")).exists());
        }
        drop(opened);
        // The next start reads the database, which has it all.
        let again = open(&config(dir.path(), "sqlite")).unwrap();
        assert_eq!(Contents::read(&*again.store).unwrap(), expected);
    }

    /// A JSON directory that lost a file refuses to be imported, as it
    /// refused to start before; one that lost its database refuses too.
    #[test]
    fn lost_state_stops_the_sqlite_start_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let json_dir = open(&config(dir.path(), "json")).unwrap();
        assert!(json_dir.fresh);
        json_dir.store.save_session_mark(1).unwrap();
        json_dir.store.save_channels(&[channel("r", None)]).unwrap();
        json_dir.store.tokens().unwrap();
        json_dir.store.put_token(&token("t", 1)).unwrap();
        json_dir.state.seal().unwrap();
        std::fs::remove_file(dir.path().join("channels.json")).unwrap();
        let err = open(&config(dir.path(), "sqlite")).unwrap_err().to_string();
        assert!(err.contains("channels.json"), "{err}");
        assert!(!dir.path().join("openspeak.db").exists());

        let dir = tempfile::tempdir().unwrap();
        let opened = open(&config(dir.path(), "sqlite")).unwrap();
        assert!(opened.fresh);
        opened.state.seal().unwrap();
        drop(opened);
        std::fs::remove_file(dir.path().join("openspeak.db")).unwrap();
        let err = open(&config(dir.path(), "sqlite")).unwrap_err().to_string();
        assert!(err.contains("openspeak.db"), "{err}");
        assert!(err.contains("restore"), "{err}");
        // An empty file in its place is no better.
        std::fs::write(dir.path().join("openspeak.db"), b"").unwrap();
        let err = open(&config(dir.path(), "sqlite")).unwrap_err().to_string();
        assert!(
            err.contains("openspeak.db") && err.contains("empty"),
            "{err}"
        );
        assert!(err.contains("restore"), "{err}");
    }

    /// What one durable write costs, per store: run with
    /// `cargo test -p openspeak-control --release --lib write_cost -- --ignored --nocapture`.
    /// Timing, not a check, so it is left out of the suite.
    #[test]
    #[ignore = "a measurement; run by hand"]
    fn write_cost() {
        const N: u64 = 300;
        for case in each() {
            let store = case.open();
            let mut tokens = crate::tokens::TokenStore::open(store.clone()).unwrap();
            let start = std::time::Instant::now();
            for i in 0..N {
                tokens
                    .create(
                        &format!("t{i}"),
                        Role::Member,
                        None,
                        std::time::SystemTime::now(),
                    )
                    .unwrap();
            }
            let per_token = start.elapsed() / N as u32;
            let tree: Vec<_> = (0..100).map(|i| channel(&format!("c{i}"), None)).collect();
            let start = std::time::Instant::now();
            for _ in 0..N {
                store.save_channels(&tree).unwrap();
            }
            let per_tree = start.elapsed() / N as u32;
            eprintln!(
                "{}: one token creation {per_token:?} (of {N}, up to {N} tokens stored); \
                 one save of a 100-channel tree {per_tree:?}",
                case.name
            );
        }
    }
}
