//! The state in one SQLite database (`storage.path`, by default
//! `<data_dir>/openspeak.db`), the default store.
//!
//! Bans live here too (the JSON store keeps them in memory only).
//!
//! Durability: WAL mode with `synchronous=FULL`, so a commit returns only
//! once its WAL frames are synced; a `kill -9` or a power cut after it
//! loses nothing (`NORMAL`, SQLite's usual WAL setting, may lose the last
//! commits to a power cut, which would break the promise that an answered
//! RPC is durable). Each change is one transaction.
//!
//! The schema is versioned: `schema_version` holds the number of the
//! migrations applied, and [`MIGRATIONS`] are run in order at open, all in
//! one transaction with the version bump, so a crash mid-migration leaves
//! the old schema whole. To change the schema, append a migration; never
//! edit one that has shipped.

use std::{
    fs,
    net::IpAddr,
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
    sync::{Mutex, MutexGuard},
    time::Duration,
};

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::{Contents, DataplaneRecord, Store, StoreError, TokenRecord, check_token_hashes};
use crate::{
    channels::{ChannelRecord, StoredPassword},
    tokens::Role,
};

/// Migration `i` takes the schema from version `i` to `i + 1`.
pub(super) const MIGRATIONS: &[&str] = &[MIGRATION_1, MIGRATION_2, MIGRATION_3];

/// Version 1: tokens, the channel tree, the session id mark.
const MIGRATION_1: &str = "
    -- `seq` keeps creation order, which listings show; a revocation
    -- updates the row in place.
    CREATE TABLE tokens (
        seq INTEGER PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        label TEXT NOT NULL,
        role TEXT NOT NULL CHECK (role IN ('admin', 'member')),
        sha256 TEXT NOT NULL UNIQUE,
        created_at INTEGER NOT NULL,
        expires_at INTEGER,
        revoked_at INTEGER
    );
    -- The whole tree, parents before children in `position` order.
    CREATE TABLE channels (
        position INTEGER PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        name TEXT NOT NULL,
        parent TEXT,
        description TEXT NOT NULL,
        max_members INTEGER NOT NULL,
        password_salt TEXT,
        password_sha256 TEXT,
        temporary INTEGER NOT NULL
    );
    -- One row at most.
    CREATE TABLE session_mark (
        only INTEGER PRIMARY KEY CHECK (only = 1),
        mark INTEGER NOT NULL
    );
";

/// Version 2: addresses banned for failed authentications.
const MIGRATION_2: &str = "
    -- `addr` as Rust writes an IpAddr; `until` in Unix seconds.
    CREATE TABLE bans (
        addr TEXT PRIMARY KEY NOT NULL,
        until INTEGER NOT NULL
    );
";

/// Version 3: the certificate each data plane presented, so that one
/// coming back with another is noticed across restarts.
const MIGRATION_3: &str = "
    -- `first_seen` and `last_seen` in Unix seconds.
    CREATE TABLE dataplanes (
        id TEXT PRIMARY KEY NOT NULL,
        cert_sha256 TEXT NOT NULL,
        first_seen INTEGER NOT NULL,
        last_seen INTEGER NOT NULL
    );
";

/// How long a statement waits for a lock held by another connection (a
/// backup tool reading the file) before it fails.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug)]
pub struct SqliteStore {
    path: PathBuf,
    /// One connection: the writes come from handlers that already take
    /// turns (the broker's lock, the token store's), and SQLite has one
    /// writer at a time anyway.
    conn: Mutex<Connection>,
}

impl SqliteStore {
    /// Opens (or creates) the database and brings its schema up to date.
    #[cfg(test)]
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_seeded(path, || Ok(None)).map(|(store, _)| store)
    }

    /// As [`open`](Self::open); when the database is new (no schema yet),
    /// `seed` is asked for contents to put in it, in the same transaction
    /// as the schema. Returns the contents put in, if any.
    pub fn open_seeded(
        path: &Path,
        seed: impl FnOnce() -> Result<Option<Contents>, StoreError>,
    ) -> Result<(Self, Option<Contents>), StoreError> {
        Self::open_with(path, MIGRATIONS, seed)
    }

    pub(super) fn open_with(
        path: &Path,
        migrations: &[&str],
        seed: impl FnOnce() -> Result<Option<Contents>, StoreError>,
    ) -> Result<(Self, Option<Contents>), StoreError> {
        let fail = |action| failed(path, action);
        create_private(path)?;
        let mut conn = Connection::open(path)
            .map_err(fail("open it (if it is damaged, restore it from a backup)"))?;
        conn.busy_timeout(BUSY_TIMEOUT)
            .map_err(fail("set the busy timeout"))?;
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
            .map_err(fail(
                "read it or switch it to WAL mode (if it is damaged, restore it from a backup)",
            ))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::NoWal {
                path: path.to_owned(),
                mode,
            });
        }
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(fail("set synchronous=FULL"))?;
        let seeded = migrate(&mut conn, path, migrations, seed)?;
        let store = Self {
            path: path.to_owned(),
            conn: Mutex::new(conn),
        };
        Ok((store, seeded))
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding it cannot leave a transaction half done
        // (an open one rolls back when dropped), so the connection is fine.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn fail(&self, action: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError {
        failed(&self.path, action)
    }

    /// Every row `sql` selects, each read by `read`, with any failure
    /// naming `action`: the readers of the store differ only in their query
    /// and their record.
    fn select_all<T>(
        &self,
        action: &'static str,
        sql: &str,
        read: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<Vec<T>, StoreError> {
        let conn = self.lock();
        let fail = || self.fail(action);
        let mut statement = conn.prepare(sql).map_err(fail())?;
        let rows = statement.query_map([], read).map_err(fail())?;
        rows.collect::<Result<_, _>>().map_err(fail())
    }

    fn corrupt(&self, detail: String) -> StoreError {
        StoreError::Corrupt {
            what: "database",
            path: self.path.clone(),
            detail,
        }
    }
}

/// The error for a failed `action` on the database at `path`, for
/// `map_err`.
fn failed(path: &Path, action: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError {
    let path = path.to_owned();
    move |source| StoreError::Database {
        path,
        action,
        source,
    }
}

/// Creates the file with mode 0600 if it does not exist, so that SQLite,
/// which gives its `-wal` and `-shm` files the database's mode, never
/// makes any of them readable by others: they hold password hashes.
fn create_private(path: &Path) -> Result<(), StoreError> {
    let write = |source| StoreError::Write {
        what: "database",
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir).map_err(write)?;
    }
    fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map(drop)
        .map_err(write)
}

/// Runs the migrations the database has not had, and seeds a new one,
/// in one transaction. Returns the contents seeded, if any.
fn migrate(
    conn: &mut Connection,
    path: &Path,
    migrations: &[&str],
    seed: impl FnOnce() -> Result<Option<Contents>, StoreError>,
) -> Result<Option<Contents>, StoreError> {
    let fail = |action| failed(path, action);
    // IMMEDIATE: take the write lock now, so that two processes opening
    // the same new file cannot both migrate it.
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(fail("begin the schema migration"))?;
    tx.execute_batch("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        .map_err(fail("create the schema_version table"))?;
    let found: i64 = tx
        .query_row("SELECT max(version) FROM schema_version", [], |row| {
            row.get::<_, Option<i64>>(0)
        })
        .map_err(fail("read the schema version"))?
        .unwrap_or(0);
    let known = migrations.len();
    let from = usize::try_from(found)
        .ok()
        .filter(|v| *v <= known)
        .ok_or_else(|| StoreError::TooNew {
            path: path.to_owned(),
            found,
            known,
        })?;
    for sql in &migrations[from..] {
        tx.execute_batch(sql).map_err(fail(
            "migrate the schema (restore a backup if it keeps failing)",
        ))?;
    }
    let seeded = if from == 0 { seed()? } else { None };
    if let Some(contents) = &seeded {
        for token in &contents.tokens {
            put_token(&tx, token).map_err(fail("import the tokens"))?;
        }
        replace_channels(&tx, &contents.channels).map_err(fail("import the channels"))?;
        if let Some(mark) = contents.session_mark {
            put_session_mark(&tx, mark).map_err(fail("import the session id mark"))?;
        }
    }
    if from < known || seeded.is_some() {
        tx.execute("DELETE FROM schema_version", [])
            .and_then(|_| {
                tx.execute(
                    "INSERT INTO schema_version (version) VALUES (?1)",
                    [known as i64],
                )
            })
            .map_err(fail("record the schema version"))?;
        tx.commit().map_err(fail("commit the schema migration"))?;
    }
    Ok(seeded)
}

/// Unix seconds as SQLite's signed integers; a time past year 292 billion
/// (an absurd ttl) is kept as the latest one there is.
fn secs(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn put_token(conn: &Connection, t: &TokenRecord) -> rusqlite::Result<()> {
    let role = match t.role {
        Role::Admin => "admin",
        Role::Member => "member",
    };
    conn.prepare_cached(
        "INSERT INTO tokens (id, label, role, sha256, created_at, expires_at, revoked_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (id) DO UPDATE SET
            label = excluded.label, role = excluded.role, sha256 = excluded.sha256,
            created_at = excluded.created_at, expires_at = excluded.expires_at,
            revoked_at = excluded.revoked_at",
    )?
    .execute(params![
        t.id,
        t.label,
        role,
        t.sha256,
        secs(t.created_at),
        t.expires_at.map(secs),
        t.revoked_at.map(secs),
    ])
    .map(drop)
}

/// Replaces the whole tree; the caller holds a transaction. A tree has at
/// most a thousand channels (`limits`), so rewriting it is a few
/// milliseconds, and it keeps the store free of the tree's rules.
fn replace_channels(conn: &Connection, channels: &[ChannelRecord]) -> rusqlite::Result<()> {
    conn.execute("DELETE FROM channels", [])?;
    let mut insert = conn.prepare_cached(
        "INSERT INTO channels (position, id, name, parent, description, max_members,
            password_salt, password_sha256, temporary)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?;
    for (position, c) in channels.iter().enumerate() {
        insert.execute(params![
            position as i64,
            c.id,
            c.name,
            c.parent,
            c.description,
            c.max_members,
            c.password.as_ref().map(|p| &p.salt),
            c.password.as_ref().map(|p| &p.sha256),
            c.temporary,
        ])?;
    }
    Ok(())
}

fn put_session_mark(conn: &Connection, mark: u32) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO session_mark (only, mark) VALUES (1, ?1)
         ON CONFLICT (only) DO UPDATE SET mark = excluded.mark",
        [mark],
    )
    .map(drop)
}

impl Store for SqliteStore {
    fn tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        let rows = self.select_all(
            "read the tokens",
            "SELECT id, label, role, sha256, created_at, expires_at, revoked_at
             FROM tokens ORDER BY seq",
            |row| {
                Ok((
                    TokenRecord {
                        id: row.get(0)?,
                        label: row.get(1)?,
                        role: Role::Member,
                        sha256: row.get(3)?,
                        created_at: row.get::<_, i64>(4)?.max(0) as u64,
                        expires_at: row.get::<_, Option<i64>>(5)?.map(|s| s.max(0) as u64),
                        revoked_at: row.get::<_, Option<i64>>(6)?.map(|s| s.max(0) as u64),
                    },
                    row.get::<_, String>(2)?,
                ))
            },
        )?;
        let mut tokens = Vec::with_capacity(rows.len());
        for (mut token, role) in rows {
            token.role = match role.as_str() {
                "admin" => Role::Admin,
                "member" => Role::Member,
                other => {
                    return Err(
                        self.corrupt(format!("token {} has the unknown role {other:?}", token.id))
                    );
                }
            };
            tokens.push(token);
        }
        check_token_hashes(&tokens, "database", &self.path)?;
        Ok(tokens)
    }

    fn put_token(&self, token: &TokenRecord) -> Result<(), StoreError> {
        // One statement outside a transaction is a transaction of its own.
        put_token(&self.lock(), token).map_err(self.fail("save a token"))
    }

    fn channels(&self) -> Result<Vec<ChannelRecord>, StoreError> {
        self.select_all(
            "read the channels",
            "SELECT id, name, parent, description, max_members, password_salt,
                password_sha256, temporary
             FROM channels ORDER BY position",
            |row| {
                let salt: Option<String> = row.get(5)?;
                let sha256: Option<String> = row.get(6)?;
                Ok(ChannelRecord {
                    id: row.get(0)?,
                    name: row.get(1)?,
                    parent: row.get(2)?,
                    description: row.get(3)?,
                    max_members: row.get(4)?,
                    password: salt
                        .zip(sha256)
                        .map(|(salt, sha256)| StoredPassword { salt, sha256 }),
                    temporary: row.get(7)?,
                })
            },
        )
    }

    fn channels_location(&self) -> &Path {
        &self.path
    }

    fn save_channels(&self, channels: &[ChannelRecord]) -> Result<(), StoreError> {
        let mut conn = self.lock();
        let fail = || self.fail("save the channels");
        let tx = conn.transaction().map_err(fail())?;
        replace_channels(&tx, channels).map_err(fail())?;
        tx.commit().map_err(fail())
    }

    fn session_mark(&self) -> Result<Option<u32>, StoreError> {
        self.lock()
            .query_row("SELECT mark FROM session_mark WHERE only = 1", [], |row| {
                row.get(0)
            })
            .optional()
            .map_err(self.fail("read the session id mark"))
    }

    fn save_session_mark(&self, mark: u32) -> Result<(), StoreError> {
        put_session_mark(&self.lock(), mark).map_err(self.fail("save the session id mark"))
    }

    fn bans(&self) -> Result<Vec<(IpAddr, u64)>, StoreError> {
        self.select_all(
            "read the bans",
            "SELECT addr, until FROM bans ORDER BY addr",
            |row| Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?)),
        )?
        .into_iter()
        .map(|(addr, until)| {
            let addr = addr
                .parse()
                .map_err(|_| self.corrupt(format!("the ban of {addr:?} is no IP address")))?;
            Ok((addr, until.max(0) as u64))
        })
        .collect()
    }

    fn dataplanes(&self) -> Result<Vec<DataplaneRecord>, StoreError> {
        self.select_all(
            "read the data planes",
            "SELECT id, cert_sha256, first_seen, last_seen FROM dataplanes ORDER BY id",
            |row| {
                Ok(DataplaneRecord {
                    id: row.get(0)?,
                    cert_sha256: row.get(1)?,
                    first_seen: row.get::<_, i64>(2)?.max(0) as u64,
                    last_seen: row.get::<_, i64>(3)?.max(0) as u64,
                })
            },
        )
    }

    fn put_dataplane(&self, dataplane: &DataplaneRecord) -> Result<(), StoreError> {
        let conn = self.lock();
        conn.execute(
            "INSERT INTO dataplanes (id, cert_sha256, first_seen, last_seen) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (id) DO UPDATE SET cert_sha256 = excluded.cert_sha256,
                 last_seen = excluded.last_seen",
            params![
                dataplane.id,
                dataplane.cert_sha256,
                secs(dataplane.first_seen),
                secs(dataplane.last_seen)
            ],
        )
        .map_err(self.fail("save a data plane"))?;
        Ok(())
    }

    fn put_ban(&self, addr: IpAddr, until: u64, now: u64) -> Result<(), StoreError> {
        let mut conn = self.lock();
        let fail = || self.fail("save a ban");
        let tx = conn.transaction().map_err(fail())?;
        tx.execute("DELETE FROM bans WHERE until <= ?1", [secs(now)])
            .map_err(fail())?;
        tx.execute(
            "INSERT INTO bans (addr, until) VALUES (?1, ?2)
             ON CONFLICT (addr) DO UPDATE SET until = excluded.until",
            params![addr.to_string(), secs(until)],
        )
        .map_err(fail())?;
        tx.commit().map_err(fail())
    }
}

#[cfg(test)]
mod tests {
    //! What only the database does: its settings and its migrations. The
    //! behaviour every store shares is tested in `store`.

    use super::*;

    fn version(path: &Path) -> i64 {
        Connection::open(path)
            .unwrap()
            .query_row("SELECT version FROM schema_version", [], |r| r.get(0))
            .unwrap()
    }

    #[test]
    fn the_database_is_wal_synchronous_full_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state").join("openspeak.db");
        let store = SqliteStore::open(&path).unwrap();
        let conn = store.lock();
        let mode: String = conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        let sync: i64 = conn
            .query_row("PRAGMA synchronous", [], |r| r.get(0))
            .unwrap();
        assert_eq!(sync, 2, "2 is FULL");
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{mode:o}");
    }

    #[test]
    fn an_empty_database_is_migrated_to_the_latest_version() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("openspeak.db");
        // An empty file, as a crash right after creating it leaves.
        fs::write(&path, b"").unwrap();
        let store = SqliteStore::open(&path).unwrap();
        assert_eq!(store.tokens().unwrap(), vec![]);
        drop(store);
        assert_eq!(version(&path), MIGRATIONS.len() as i64);
        // Opening again runs nothing and changes nothing.
        SqliteStore::open(&path).unwrap();
        assert_eq!(version(&path), MIGRATIONS.len() as i64);
    }

    /// A database at version 1, made by hand as the first release wrote
    /// it, is migrated to the latest version with its data kept.
    #[test]
    fn a_database_at_the_previous_version_is_migrated_keeping_its_data() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("openspeak.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(MIGRATION_1).unwrap();
            conn.execute_batch(
                "CREATE TABLE schema_version (version INTEGER NOT NULL);
                 INSERT INTO schema_version VALUES (1);
                 INSERT INTO tokens (id, label, role, sha256, created_at)
                    VALUES ('t1', 'old', 'admin', printf('%064d', 7), 100);
                 INSERT INTO channels (position, id, name, description, max_members,
                    temporary) VALUES (0, 'c1', 'Lobby', '', 0, 0);
                 INSERT INTO session_mark VALUES (1, 4097);",
            )
            .unwrap();
        }
        let (store, seeded) =
            SqliteStore::open_seeded(&path, || panic!("a database with a schema is never seeded"))
                .unwrap();
        assert!(seeded.is_none());
        let tokens = store.tokens().unwrap();
        assert_eq!(tokens.len(), 1);
        assert_eq!(
            (tokens[0].label.as_str(), tokens[0].role),
            ("old", Role::Admin)
        );
        assert_eq!(store.channels().unwrap()[0].name, "Lobby");
        assert_eq!(store.session_mark().unwrap(), Some(4097));
        // What version 2 brought works.
        let addr: IpAddr = "192.0.2.1".parse().unwrap();
        store.put_ban(addr, 500, 100).unwrap();
        assert_eq!(store.bans().unwrap(), vec![(addr, 500)]);
        drop(store);
        assert_eq!(version(&path), MIGRATIONS.len() as i64);
    }

    /// Each migration runs on the schema the ones before it left, so a
    /// database at any earlier version gets to the latest.
    #[test]
    fn every_earlier_version_migrates_to_the_latest() {
        for from in 0..MIGRATIONS.len() {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("openspeak.db");
            if from > 0 {
                drop(SqliteStore::open_with(&path, &MIGRATIONS[..from], || Ok(None)).unwrap());
                assert_eq!(version(&path), from as i64, "made at {from}");
            }
            let store = SqliteStore::open(&path).unwrap();
            Contents::read(&store).unwrap();
            store.bans().unwrap();
            drop(store);
            assert_eq!(version(&path), MIGRATIONS.len() as i64, "from {from}");
        }
    }

    #[test]
    fn bans_are_kept_across_a_reopen_and_ended_ones_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("openspeak.db");
        let store = SqliteStore::open(&path).unwrap();
        let (a, b): (IpAddr, IpAddr) =
            ("192.0.2.1".parse().unwrap(), "2001:db8::1".parse().unwrap());
        store.put_ban(a, 100, 0).unwrap();
        store.put_ban(b, 400, 50).unwrap();
        // A second ban of the same address moves its end.
        store.put_ban(b, 500, 60).unwrap();
        drop(store);
        let store = SqliteStore::open(&path).unwrap();
        assert_eq!(store.bans().unwrap(), vec![(a, 100), (b, 500)]);
        // Saving a ban after `a` ended forgets `a`.
        store.put_ban(b, 600, 200).unwrap();
        assert_eq!(store.bans().unwrap(), vec![(b, 600)]);
    }

    /// A failing migration changes nothing: the database stays at its
    /// version with its data, and the error names the file.
    #[test]
    fn a_failed_migration_leaves_the_previous_schema_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("openspeak.db");
        let store = SqliteStore::open(&path).unwrap();
        store.save_session_mark(42).unwrap();
        drop(store);
        let broken = "CREATE TABLE extra (x); THIS IS NOT SQL;";
        let mut migrations = MIGRATIONS.to_vec();
        migrations.push(broken);
        let err = SqliteStore::open_with(&path, &migrations, || Ok(None)).unwrap_err();
        assert!(err.to_string().contains("openspeak.db"), "{err}");
        assert_eq!(version(&path), MIGRATIONS.len() as i64);
        let store = SqliteStore::open(&path).unwrap();
        assert_eq!(store.session_mark().unwrap(), Some(42));
        let extra: i64 = store
            .lock()
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE name = 'extra'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(extra, 0, "the half-run migration was rolled back");
    }

    #[test]
    fn a_database_from_a_newer_version_is_refused_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("openspeak.db");
        drop(SqliteStore::open(&path).unwrap());
        Connection::open(&path)
            .unwrap()
            .execute("UPDATE schema_version SET version = 99", [])
            .unwrap();
        let err = SqliteStore::open(&path).unwrap_err();
        assert!(matches!(err, StoreError::TooNew { found: 99, .. }), "{err}");
        assert!(err.to_string().contains("openspeak.db"), "{err}");
    }

    #[test]
    fn a_file_that_is_no_database_is_refused_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("openspeak.db");
        fs::write(&path, vec![b'x'; 4096]).unwrap();
        let err = SqliteStore::open(&path).unwrap_err().to_string();
        assert!(
            err.contains("openspeak.db") && err.contains("restore"),
            "{err}"
        );
    }
}
