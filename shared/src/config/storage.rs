//! The `storage` section: where the control plane keeps its state.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{InvalidValue, check::check_path};

/// Where the control plane keeps state across restarts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// Where state lives, relative to the working directory unless absolute.
    pub data_dir: PathBuf,
    /// What holds tokens, channels and the session id mark.
    pub backend: StorageBackend,
    /// The SQLite database; `None`: `<data_dir>/openspeak.db`.
    pub path: Option<PathBuf>,
}

/// The kinds of store the control plane can keep its state in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageBackend {
    /// One SQLite database file (`storage.path`), each change one
    /// transaction. The default.
    Sqlite,
    /// One JSON file per kind of state in `data_dir`, each rewritten
    /// atomically on every change: the store of earlier versions.
    Json,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("data"),
            backend: StorageBackend::Sqlite,
            path: None,
        }
    }
}

impl StorageConfig {
    /// The first value of the section that parses but cannot work.
    pub(super) fn validate(&self) -> Result<(), InvalidValue> {
        check_path("storage.data_dir", Some(&self.data_dir))?;
        check_path("storage.path", self.path.as_deref())
    }

    /// Whether state goes to SQLite (`storage.backend: sqlite`). A method,
    /// so that callers outside this crate need not name the enum, which
    /// `config` does not re-export yet.
    pub fn uses_sqlite(&self) -> bool {
        self.backend == StorageBackend::Sqlite
    }

    /// The SQLite database: `storage.path`, by default
    /// `<storage.data_dir>/openspeak.db`.
    pub fn database_file(&self) -> PathBuf {
        self.path
            .clone()
            .unwrap_or_else(|| self.data_dir.join("openspeak.db"))
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::super::testing::{assert_accepted, assert_rejected, flag, load, opts};
    use super::*;

    #[test]
    fn impossible_values_are_rejected_naming_the_key() {
        assert_rejected(&[("storage.data_dir", ""), ("storage.path", "")]);
    }

    #[test]
    fn sqlite_is_the_default_and_json_can_be_chosen() {
        assert_eq!(StorageConfig::default().backend, StorageBackend::Sqlite);
        assert_accepted(&[("storage.backend", "json"), ("storage.backend", "sqlite")]);
        let config = load(&opts().with_override(flag("storage.backend", "json"))).unwrap();
        assert_eq!(config.storage.backend, StorageBackend::Json);
        assert!(load(&opts().with_override(flag("storage.backend", "mysql"))).is_err());
    }

    #[test]
    fn the_database_lives_in_the_data_dir_unless_moved() {
        let mut storage = StorageConfig {
            data_dir: PathBuf::from("/srv/os"),
            ..StorageConfig::default()
        };
        assert_eq!(
            storage.database_file(),
            PathBuf::from("/srv/os/openspeak.db")
        );
        storage.path = Some(PathBuf::from("/var/lib/os.db"));
        assert_eq!(storage.database_file(), PathBuf::from("/var/lib/os.db"));
    }
}
