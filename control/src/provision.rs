//! `auth.tokens_file` as a provisioning source: the tokens an operator
//! lists there are put into the store at every start, so that a deployment
//! can be described in a file (or a secret mounted into a container) rather
//! than by calls to a running server.
//!
//! Each entry names its secret by the plaintext (`token`) or by its
//! SHA-256 (`sha256`, 64 hex digits, with or without a `sha256:` prefix),
//! with a `role`, a `label` and optionally an `expires_at` (Unix seconds)
//! and an `id`. The token store's own JSON (`storage.backend: json`) is a
//! valid provisioning file, so a data directory of an earlier version can
//! be pointed at as it is. An entry updates the token of the same id, or
//! else of the same secret, and adds one otherwise; a token revoked in the
//! store stays revoked. The log names each token by id, label and role and
//! says whether the file gave its plaintext or its hash; never the secret.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use openspeak_shared::config::Config;
use serde::Deserialize;
use tracing::{info, warn};

use crate::store::{Store, StoreError, TokenRecord};
use crate::tokens::{self, Role, TokenStore, Upsert};

/// What a provisioning file holds.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    /// The token store's own files carry a version; ignored here.
    #[serde(default)]
    #[allow(dead_code)]
    version: Option<u32>,
    tokens: Vec<Entry>,
}

/// One token of the file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    #[serde(default)]
    id: Option<String>,
    /// The plaintext, as clients present it.
    #[serde(default)]
    token: Option<String>,
    /// Or its SHA-256, hex.
    #[serde(default)]
    sha256: Option<String>,
    role: Role,
    #[serde(default)]
    label: String,
    #[serde(default)]
    expires_at: Option<u64>,
    #[serde(default)]
    created_at: Option<u64>,
    #[serde(default)]
    revoked_at: Option<u64>,
}

/// Why the provisioning file could not be applied. Nothing after the
/// failing entry is applied, and the control plane does not start.
#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    #[error("cannot read auth.tokens_file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("auth.tokens_file {} is not a tokens file: {source}", path.display())]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("auth.tokens_file {}: token {number} (label `{label}`): {problem}", path.display())]
    Entry {
        path: PathBuf,
        /// 1-based, in file order.
        number: usize,
        label: String,
        problem: &'static str,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What one provisioning pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Provisioned {
    pub added: usize,
    pub updated: usize,
    pub unchanged: usize,
}

/// The tokens of `store` as a control plane starts with them: with
/// `auth.tokens_file` applied beside a database (with the JSON backend
/// that file is the store itself). The server and the admin commands on a
/// stopped one both open them here, so that they see the same tokens.
pub fn open_tokens(config: &Config, store: Arc<dyn Store>) -> Result<TokenStore, ProvisionError> {
    let mut tokens = TokenStore::open(store)?;
    if config.storage.uses_sqlite() {
        apply(&config.tokens_file(), &mut tokens, SystemTime::now())?;
    }
    Ok(tokens)
}

/// Applies the provisioning file at `path`, if there is one, to `tokens`.
pub fn apply(
    path: &Path,
    tokens: &mut TokenStore,
    now: SystemTime,
) -> Result<Option<Provisioned>, ProvisionError> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(ProvisionError::Read {
                path: path.to_owned(),
                source,
            });
        }
    };
    let file: File = serde_json::from_slice(&bytes).map_err(|source| ProvisionError::Parse {
        path: path.to_owned(),
        source,
    })?;
    // Check every entry before changing anything: a typo in the last one
    // must not leave the first ones applied and the rest not.
    let records = file
        .tokens
        .into_iter()
        .enumerate()
        .map(|(i, entry)| record(entry, now).map_err(|e| e.at(path, i + 1)))
        .collect::<Result<Vec<_>, _>>()?;
    if records.iter().any(|(_, from_plaintext)| *from_plaintext) {
        warn_if_readable_by_others(path);
    }
    let mut done = Provisioned::default();
    for (record, from_plaintext) in records {
        let (id, label, role) = (record.id.clone(), record.label.clone(), record.role);
        let source = if from_plaintext { "plaintext" } else { "hash" };
        match tokens.upsert(record)? {
            Upsert::Added => {
                done.added += 1;
                info!(token_id = %id, %label, ?role, secret_from = source, "provisioned a new token");
            }
            Upsert::Updated => {
                done.updated += 1;
                info!(token_id = %id, %label, ?role, secret_from = source, "provisioned a token anew");
            }
            Upsert::Unchanged => done.unchanged += 1,
        }
    }
    info!(
        file = %path.display(),
        added = done.added,
        updated = done.updated,
        unchanged = done.unchanged,
        "applied auth.tokens_file"
    );
    Ok(Some(done))
}

/// What went wrong with one entry, before the file and number are known.
struct BadEntry {
    label: String,
    problem: &'static str,
}

impl BadEntry {
    fn at(self, path: &Path, number: usize) -> ProvisionError {
        ProvisionError::Entry {
            path: path.to_owned(),
            number,
            label: self.label,
            problem: self.problem,
        }
    }
}

/// The record an entry asks for, and whether its secret came as plaintext.
fn record(entry: Entry, now: SystemTime) -> Result<(TokenRecord, bool), BadEntry> {
    let bad = |problem| BadEntry {
        label: entry.label.clone(),
        problem,
    };
    let (sha256, from_plaintext) = match (&entry.token, &entry.sha256) {
        (Some(plaintext), None) => {
            let plaintext = plaintext.trim();
            if plaintext.is_empty() {
                return Err(bad("`token` is empty"));
            }
            (hex::encode(tokens::hash(plaintext)), true)
        }
        (None, Some(given)) => {
            let hex_text = given.strip_prefix("sha256:").unwrap_or(given).trim();
            if tokens::decode_hash(hex_text).is_none() {
                return Err(bad("`sha256` is not 64 hex digits"));
            }
            (hex_text.to_ascii_lowercase(), false)
        }
        (Some(_), Some(_)) => return Err(bad("give `token` or `sha256`, not both")),
        (None, None) => return Err(bad("give the secret as `token` or `sha256`")),
    };
    if entry.id.as_deref().is_some_and(|id| id.trim().is_empty()) {
        return Err(bad("`id` is empty"));
    }
    let record = TokenRecord {
        id: entry.id.unwrap_or_else(tokens::generate_id),
        label: entry.label,
        role: entry.role,
        sha256,
        created_at: entry.created_at.unwrap_or_else(|| tokens::unix_secs(now)),
        expires_at: entry.expires_at,
        revoked_at: entry.revoked_at,
    };
    Ok((record, from_plaintext))
}

/// Plaintext secrets in a file others may read: the operator's choice,
/// but worth a line in the log.
fn warn_if_readable_by_others(path: &Path) {
    if let Some(mode) = openspeak_shared::persist::readable_by_others(path) {
        warn!(file = %path.display(), mode = format_args!("{mode:o}"),
            "auth.tokens_file holds plaintext tokens and others may read it; chmod 600");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::JsonStore;

    fn store(dir: &Path) -> TokenStore {
        let json = JsonStore::new(
            &dir.join("store-tokens.json"),
            &dir.join("channels.json"),
            &dir.join("session_ids"),
        );
        TokenStore::open(Arc::new(json)).unwrap()
    }

    fn write(dir: &Path, json: &str) -> PathBuf {
        let path = dir.join("provision.json");
        std::fs::write(&path, json).unwrap();
        path
    }

    #[test]
    fn plaintext_and_hashed_tokens_are_added_then_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let mut tokens = store(dir.path());
        let member_hash = hex::encode(tokens::hash("alice-secret"));
        let path = write(
            dir.path(),
            &format!(
                r#"{{"tokens": [
                    {{"token": "ops-secret", "role": "admin", "label": "ops"}},
                    {{"sha256": "sha256:{member_hash}", "role": "member", "label": "alice",
                      "expires_at": 4102444800}}
                ]}}"#
            ),
        );
        let now = SystemTime::now();
        let done = apply(&path, &mut tokens, now).unwrap().unwrap();
        assert_eq!((done.added, done.updated, done.unchanged), (2, 0, 0));
        let ops = tokens.authenticate("ops-secret", now).unwrap();
        assert_eq!((ops.label.as_str(), ops.role), ("ops", Role::Admin));
        let alice = tokens.authenticate("alice-secret", now).unwrap();
        assert_eq!(alice.role, Role::Member);
        assert!(alice.expires_at.is_some());

        // The next start changes nothing, and makes no second token.
        let again = apply(&path, &mut store(dir.path()), now).unwrap().unwrap();
        assert_eq!((again.added, again.updated, again.unchanged), (0, 0, 2));
    }

    #[test]
    fn an_entry_updates_its_token_but_never_lifts_a_revocation() {
        let dir = tempfile::tempdir().unwrap();
        let mut tokens = store(dir.path());
        let now = SystemTime::now();
        let path = write(
            dir.path(),
            r#"{"tokens": [{"id": "t1", "token": "s1", "role": "member", "label": "bob"}]}"#,
        );
        apply(&path, &mut tokens, now).unwrap();
        // Same id, new label, role and secret: one token, changed.
        let path = write(
            dir.path(),
            r#"{"tokens": [{"id": "t1", "token": "s2", "role": "admin", "label": "bob (ops)"}]}"#,
        );
        let done = apply(&path, &mut tokens, now).unwrap().unwrap();
        assert_eq!((done.added, done.updated), (0, 1));
        assert!(
            tokens.authenticate("s1", now).is_err(),
            "the old secret is gone"
        );
        let bob = tokens.authenticate("s2", now).unwrap();
        assert_eq!((bob.id.as_str(), bob.role), ("t1", Role::Admin));

        tokens.revoke("t1", now).unwrap();
        let done = apply(&path, &mut store(dir.path()), now).unwrap().unwrap();
        assert_eq!(done.updated + done.added, 0);
        assert!(!store(dir.path()).is_live("t1"), "still revoked");
    }

    #[test]
    fn the_token_stores_own_file_is_a_provisioning_file() {
        let dir = tempfile::tempdir().unwrap();
        let hash = hex::encode(tokens::hash("old-secret"));
        let path = write(
            dir.path(),
            &format!(
                r#"{{"version": 1, "tokens": [{{"id": "a1", "label": "bootstrap admin",
                    "role": "admin", "sha256": "{hash}", "created_at": 1700000000,
                    "expires_at": null, "revoked_at": null}}]}}"#
            ),
        );
        let mut tokens = store(dir.path());
        apply(&path, &mut tokens, SystemTime::now()).unwrap();
        let info = tokens.get("a1").unwrap();
        assert_eq!(info.role, Role::Admin);
        assert_eq!(
            info.created_at,
            SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000)
        );
    }

    #[test]
    fn a_bad_entry_changes_nothing_and_names_itself_never_the_secret() {
        let dir = tempfile::tempdir().unwrap();
        let mut tokens = store(dir.path());
        let cases = [
            (
                r#"{"token": "fine", "role": "member", "label": "a"}, {"role": "member", "label": "b"}"#,
                "token 2 (label `b`)",
            ),
            (
                r#"{"token": "x", "sha256": "00", "role": "member", "label": "c"}"#,
                "not both",
            ),
            (
                r#"{"sha256": "sha256:1234", "role": "member", "label": "d"}"#,
                "64 hex digits",
            ),
            (r#"{"token": " ", "role": "member", "label": "e"}"#, "empty"),
        ];
        for (entries, expected) in cases {
            let path = write(dir.path(), &format!(r#"{{"tokens": [{entries}]}}"#));
            let err = apply(&path, &mut tokens, SystemTime::now()).unwrap_err();
            let shown = err.to_string();
            assert!(shown.contains(expected), "{shown}");
            assert!(shown.contains("provision.json"), "{shown}");
            assert!(!shown.contains("fine"), "{shown}");
        }
        assert!(tokens.is_empty(), "nothing of a bad file is applied");

        let path = write(
            dir.path(),
            r#"{"tokens": [{"token": "a", "role": "owner"}]}"#,
        );
        let err = apply(&path, &mut tokens, SystemTime::now()).unwrap_err();
        assert!(matches!(err, ProvisionError::Parse { .. }), "{err}");
        assert!(
            apply(
                &dir.path().join("none.json"),
                &mut tokens,
                SystemTime::now()
            )
            .unwrap()
            .is_none()
        );
    }
}
