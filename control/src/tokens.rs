//! Access tokens: creation, authentication and revocation.
//!
//! Only a SHA-256 hash of each token is kept, in memory and in the store,
//! so a leaked store lets nobody in. Every change is made durable in the
//! [`Store`] before it takes effect; if that fails the change is undone
//! and the caller gets the error, so nothing that was acknowledged can be
//! lost by a crash.

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use base64::Engine;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::store::{Store, StoreError, TokenRecord as Record};

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    Member,
}

/// A token as callers see it: never its plaintext nor its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenInfo {
    pub id: String,
    pub label: String,
    pub role: Role,
    pub created_at: SystemTime,
    /// `None`: never expires.
    pub expires_at: Option<SystemTime>,
}

impl TokenInfo {
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }
}

/// Why a presented token was refused. Callers must not tell a client which
/// of these it was (all are UNAUTHENTICATED); the log records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("unknown token")]
    Unknown,
    #[error("token expired")]
    Expired,
    #[error("token revoked")]
    Revoked,
}

/// Why a revocation failed.
#[derive(Debug, thiserror::Error)]
pub enum RevokeError {
    #[error("no live token has id {}", crate::limits::Echo(.0))]
    NotFound(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What [`TokenStore::upsert`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upsert {
    Added,
    Updated,
    Unchanged,
}

/// The token store: every token ever created, indexed by hash.
#[derive(Debug)]
pub struct TokenStore {
    store: Arc<dyn Store>,
    records: Vec<Record>,
    /// Hash → index in `records`.
    by_hash: HashMap<[u8; 32], usize>,
}

impl TokenStore {
    /// Loads every token from `store`, which keeps each change from then on.
    pub fn open(store: Arc<dyn Store>) -> Result<Self, StoreError> {
        let records = store.tokens()?;
        let mut by_hash = HashMap::new();
        for (index, record) in records.iter().enumerate() {
            // The stores refuse malformed hashes when loading.
            if let Some(hash) = decode_hash(&record.sha256) {
                by_hash.insert(hash, index);
            }
        }
        Ok(TokenStore {
            store,
            records,
            by_hash,
        })
    }

    /// True when no token was ever created: the moment to bootstrap.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Creates a token with a fresh random plaintext, which is returned
    /// once and never stored.
    pub fn create(
        &mut self,
        label: &str,
        role: Role,
        ttl: Option<Duration>,
        now: SystemTime,
    ) -> Result<(String, TokenInfo), StoreError> {
        let plaintext = generate_plaintext();
        let info = self.insert(&plaintext, label, role, ttl, now)?;
        Ok((plaintext, info))
    }

    /// Stores a token whose plaintext the caller chose (the configured
    /// bootstrap token).
    pub fn insert(
        &mut self,
        plaintext: &str,
        label: &str,
        role: Role,
        ttl: Option<Duration>,
        now: SystemTime,
    ) -> Result<TokenInfo, StoreError> {
        let hash = hash(plaintext);
        let created_at = unix_secs(now);
        let record = Record {
            id: generate_id(),
            label: label.to_owned(),
            role,
            sha256: hex::encode(hash),
            created_at,
            expires_at: ttl.map(|ttl| created_at.saturating_add(ttl.as_secs())),
            revoked_at: None,
        };
        self.store.put_token(&record)?;
        let info = record.info();
        self.records.push(record);
        self.by_hash.insert(hash, self.records.len() - 1);
        Ok(info)
    }

    /// The token whose plaintext this is, if it may be used at `now`.
    pub fn authenticate(&self, plaintext: &str, now: SystemTime) -> Result<TokenInfo, AuthError> {
        let presented = hash(plaintext);
        let index = *self.by_hash.get(&presented).ok_or(AuthError::Unknown)?;
        let record = &self.records[index];
        // The map lookup already matched the hash; this comparison is the
        // one the security argument rests on, so it must not leak timing
        // (the map's own compare only ever sees hashes of the guess).
        let stored = decode_hash(&record.sha256).ok_or(AuthError::Unknown)?;
        if !bool::from(stored.ct_eq(&presented)) {
            return Err(AuthError::Unknown);
        }
        if record.revoked_at.is_some() {
            return Err(AuthError::Revoked);
        }
        if record.expires_at.is_some_and(|at| unix_secs(now) >= at) {
            return Err(AuthError::Expired);
        }
        Ok(record.info())
    }

    /// Revokes the live token `id`; it is refused from the next call on.
    pub fn revoke(&mut self, id: &str, now: SystemTime) -> Result<TokenInfo, RevokeError> {
        let index = self
            .records
            .iter()
            .position(|r| r.id == id && r.revoked_at.is_none())
            .ok_or_else(|| RevokeError::NotFound(id.to_owned()))?;
        let mut revoked = self.records[index].clone();
        revoked.revoked_at = Some(unix_secs(now));
        self.store.put_token(&revoked)?;
        self.records[index] = revoked;
        Ok(self.records[index].info())
    }

    /// Puts `wanted` in: the token with its id, or else with its hash, is
    /// brought in line with it (label, role, expiry, and the hash when
    /// found by id), or it is added as it is. A revoked token stays
    /// revoked whatever `wanted` says: a revocation is never undone behind
    /// the operator's back. `wanted.revoked_at` revokes a live one.
    pub fn upsert(&mut self, wanted: Record) -> Result<Upsert, StoreError> {
        let hash = decode_hash(&wanted.sha256).expect("the caller gives a well-formed hash");
        let found = self
            .records
            .iter()
            .position(|r| r.id == wanted.id)
            .or_else(|| self.by_hash.get(&hash).copied());
        let Some(index) = found else {
            self.store.put_token(&wanted)?;
            self.records.push(wanted);
            self.by_hash.insert(hash, self.records.len() - 1);
            return Ok(Upsert::Added);
        };
        let old = &self.records[index];
        let merged = Record {
            id: old.id.clone(),
            created_at: old.created_at,
            revoked_at: old.revoked_at.or(wanted.revoked_at),
            ..wanted
        };
        if merged == *old {
            return Ok(Upsert::Unchanged);
        }
        self.store.put_token(&merged)?;
        if let Some(previous) = decode_hash(&old.sha256) {
            self.by_hash.remove(&previous);
        }
        self.by_hash.insert(hash, index);
        self.records[index] = merged;
        Ok(Upsert::Updated)
    }

    /// The token with this id, revoked or not.
    #[cfg(test)]
    pub fn get(&self, id: &str) -> Option<TokenInfo> {
        self.records.iter().find(|r| r.id == id).map(Record::info)
    }

    /// Whether token `id` exists and is not revoked.
    pub fn is_live(&self, id: &str) -> bool {
        self.records
            .iter()
            .any(|r| r.id == id && r.revoked_at.is_none())
    }

    /// Every token that is not revoked (expired ones included), oldest first.
    pub fn list(&self) -> Vec<TokenInfo> {
        self.records
            .iter()
            .filter(|r| r.revoked_at.is_none())
            .map(Record::info)
            .collect()
    }
}

impl Record {
    fn info(&self) -> TokenInfo {
        TokenInfo {
            id: self.id.clone(),
            label: self.label.clone(),
            role: self.role,
            created_at: from_unix_secs(self.created_at),
            expires_at: self.expires_at.map(from_unix_secs),
        }
    }
}

pub(crate) fn hash(plaintext: &str) -> [u8; 32] {
    Sha256::digest(plaintext.as_bytes()).into()
}

pub(crate) fn decode_hash(hex_text: &str) -> Option<[u8; 32]> {
    hex::decode(hex_text).ok()?.try_into().ok()
}

/// `ost_` and 256 random bits in URL-safe base64: recognisable in a leaked
/// log or repository, and unguessable.
fn generate_plaintext() -> String {
    let mut secret = [0u8; 32];
    rand::rng().fill_bytes(&mut secret);
    format!(
        "ost_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret)
    )
}

pub(crate) fn generate_id() -> String {
    let mut id = [0u8; 8];
    rand::rng().fill_bytes(&mut id);
    hex::encode(id)
}

pub(crate) fn unix_secs(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn from_unix_secs(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;
    use crate::store::testing::{each, json, sqlite};

    fn store() -> (tempfile::TempDir, TokenStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = TokenStore::open(sqlite(dir.path())).unwrap();
        (dir, store)
    }

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn a_created_token_authenticates_with_its_role() {
        let (_dir, mut store) = store();
        assert!(store.is_empty());
        let (plaintext, info) = store.create("alice", Role::Member, None, at(1000)).unwrap();
        assert!(plaintext.starts_with("ost_"));
        let seen = store.authenticate(&plaintext, at(2000)).unwrap();
        assert_eq!(seen, info);
        assert_eq!(seen.role, Role::Member);
        assert_eq!(seen.label, "alice");
        assert_eq!(seen.expires_at, None);
        assert!(!store.is_empty());
    }

    #[test]
    fn unknown_tokens_are_refused() {
        let (_dir, mut store) = store();
        store.create("a", Role::Admin, None, at(0)).unwrap();
        assert_eq!(
            store.authenticate("ost_nope", at(0)),
            Err(AuthError::Unknown)
        );
        assert_eq!(store.authenticate("", at(0)), Err(AuthError::Unknown));
    }

    #[test]
    fn tokens_expire_at_their_ttl() {
        let (_dir, mut store) = store();
        let (token, info) = store
            .create(
                "short",
                Role::Member,
                Some(Duration::from_secs(60)),
                at(100),
            )
            .unwrap();
        assert_eq!(info.expires_at, Some(at(160)));
        assert!(store.authenticate(&token, at(159)).is_ok());
        assert_eq!(store.authenticate(&token, at(160)), Err(AuthError::Expired));
    }

    #[test]
    fn revocation_takes_effect_at_once_and_hides_the_token() {
        let (_dir, mut store) = store();
        let (token, info) = store.create("bob", Role::Member, None, at(0)).unwrap();
        store.revoke(&info.id, at(5)).unwrap();
        assert_eq!(store.authenticate(&token, at(6)), Err(AuthError::Revoked));
        assert!(store.list().is_empty());
        assert!(matches!(
            store.revoke(&info.id, at(7)),
            Err(RevokeError::NotFound(_))
        ));
        assert!(matches!(
            store.revoke("no-such-id", at(7)),
            Err(RevokeError::NotFound(_))
        ));
    }

    #[test]
    fn tokens_survive_a_reopen_and_the_store_holds_no_plaintext() {
        for case in each() {
            let mut store = TokenStore::open(case.open()).unwrap();
            let (kept, _) = store.create("kept", Role::Admin, None, at(0)).unwrap();
            let (gone, gone_info) = store.create("gone", Role::Member, None, at(0)).unwrap();
            store.revoke(&gone_info.id, at(1)).unwrap();
            store
                .insert("chosen-bootstrap", "boot", Role::Admin, None, at(2))
                .unwrap();
            drop(store);

            for entry in fs::read_dir(case.dir.path()).unwrap() {
                let bytes = fs::read(entry.unwrap().path()).unwrap();
                let text = String::from_utf8_lossy(&bytes);
                assert!(!text.contains(&kept) && !text.contains(&gone));
                assert!(!text.contains("chosen-bootstrap"));
            }

            let reopened = TokenStore::open(case.open()).unwrap();
            assert_eq!(reopened.authenticate(&kept, at(3)).unwrap().label, "kept");
            assert_eq!(reopened.authenticate(&gone, at(3)), Err(AuthError::Revoked));
            assert!(reopened.authenticate("chosen-bootstrap", at(3)).is_ok());
            assert_eq!(reopened.list().len(), 2);
        }
    }

    #[test]
    fn a_failed_write_undoes_the_change() {
        let dir = tempfile::tempdir().unwrap();
        // A directory where the file should be makes every write fail.
        fs::create_dir(dir.path().join("tokens.json")).unwrap();
        let mut store = TokenStore {
            store: json(dir.path()),
            records: Vec::new(),
            by_hash: HashMap::new(),
        };
        assert!(store.create("x", Role::Admin, None, at(0)).is_err());
        assert!(store.is_empty());
        // A revocation that cannot be saved is not made either.
        let dir = tempfile::tempdir().unwrap();
        let mut store = TokenStore::open(json(dir.path())).unwrap();
        let (token, info) = store.create("y", Role::Member, None, at(0)).unwrap();
        fs::remove_file(dir.path().join("tokens.json")).unwrap();
        fs::create_dir(dir.path().join("tokens.json")).unwrap();
        assert!(matches!(
            store.revoke(&info.id, at(1)),
            Err(RevokeError::Store(_))
        ));
        assert!(store.authenticate(&token, at(2)).is_ok());
    }
}
