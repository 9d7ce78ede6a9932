//! Durable state of iotjobs-local: things, thing groups (nested) and membership, jobs with
//! their targets and configurations, job executions, job templates, and device
//! certificates with their attachments to things, in one SQLite file.
//!
//! The store is plain data access over one `rusqlite::Connection`: it enforces the schema
//! and referential integrity, but not the Jobs rules (state transitions, versions,
//! notifications). Those live in `local::service`, which owns the only `Store`.

mod certificates;
mod executions;
mod jobs;
mod registry;
mod rollout;
mod schema;
mod templates;
mod types;

use std::path::Path;

use rusqlite::Connection;

pub use certificates::{CertificateRecord, CertificateStatus};
pub use schema::SCHEMA_VERSION;
pub use types::*;

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("database schema version {found} is newer than this build supports ({supported})")]
    SchemaTooNew { found: i64, supported: i64 },
    #[error("cannot create database directory {path}: {source}")]
    CreateDir {
        path: String,
        source: std::io::Error,
    },
}

/// The database. Single owner; not `Sync` on purpose.
#[derive(Debug)]
pub struct Store {
    conn: Connection,
}

impl Store {
    /// Opens (creating if needed) the database at `path` and brings its schema up to date.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
                path: dir.display().to_string(),
                source,
            })?;
        }
        let conn = Connection::open(path)?;
        // WAL keeps a crash mid-write from corrupting the file and lets readers (sqlite3
        // CLI while debugging) look without blocking the service.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        Self::init(conn)
    }

    /// A private in-memory database (tests, `--ephemeral`).
    pub fn open_in_memory() -> Result<Self, StoreError> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(mut conn: Connection) -> Result<Self, StoreError> {
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        // Every statement goes through the cache (`exec`, `row`, `prepare_cached`): parsing
        // and planning SQL cost more than running it on the device-request path.
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        schema::migrate(&mut conn)?;
        Ok(Store { conn })
    }

    /// Runs `f` atomically: every write inside commits together or not at all. Nests
    /// (savepoints), so service operations can compose smaller atomic steps.
    pub fn atomic<T, E>(&self, f: impl FnOnce(&Store) -> Result<T, E>) -> Result<T, E>
    where
        E: From<StoreError>,
    {
        self.exec("SAVEPOINT atomic", [])
            .map_err(StoreError::from)?;
        match f(self) {
            Ok(v) => {
                self.exec("RELEASE atomic", []).map_err(StoreError::from)?;
                Ok(v)
            }
            Err(e) => {
                // Best effort: the original error matters more than a failed rollback.
                let _ = self
                    .conn
                    .execute_batch("ROLLBACK TO atomic; RELEASE atomic");
                Err(e)
            }
        }
    }
}

impl Store {
    /// `Connection::execute` through the prepared-statement cache.
    fn exec<P: rusqlite::Params>(&self, sql: &str, params: P) -> rusqlite::Result<usize> {
        self.conn.prepare_cached(sql)?.execute(params)
    }

    /// `Connection::query_row` through the prepared-statement cache.
    fn row<T, P, F>(&self, sql: &str, params: P, f: F) -> rusqlite::Result<T>
    where
        P: rusqlite::Params,
        F: FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    {
        self.conn.prepare_cached(sql)?.query_row(params, f)
    }
}

/// Distinct statements the store uses, with room (a full cache evicts the oldest).
const STATEMENT_CACHE: usize = 112;

fn to_json<T: serde::Serialize>(v: &T) -> String {
    // Serializing maps of strings and `serde_json::Value`s cannot fail.
    serde_json::to_string(v).unwrap_or_else(|_| "null".to_owned())
}

/// Decodes a JSON column inside a row mapper; a corrupt value becomes a conversion error
/// naming the column instead of a panic.
fn from_json<T: serde::de::DeserializeOwned>(idx: usize, text: &str) -> rusqlite::Result<T> {
    serde_json::from_str(text).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(idx, rusqlite::types::Type::Text, Box::new(e))
    })
}

/// Decodes an enum stored as its wire name (e.g. `IN_PROGRESS`) inside a row mapper.
fn from_name<T: serde::de::DeserializeOwned>(idx: usize, text: String) -> rusqlite::Result<T> {
    serde_json::from_value(serde_json::Value::String(text)).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(idx, rusqlite::types::Type::Text, Box::new(e))
    })
}

/// The wire name of a serde enum (`JobExecutionStatus::InProgress` → `IN_PROGRESS`).
pub(crate) fn name_of<T: serde::Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::local::clock::Timestamp;

    fn thing(name: &str) -> ThingRecord {
        ThingRecord {
            name: name.into(),
            thing_id: format!("id-{name}"),
            thing_type: None,
            attributes: [("k".to_owned(), "v".to_owned())].into(),
            version: 1,
            created_at: Timestamp::from_millis(1_700_000_000_123),
        }
    }

    #[test]
    fn migrations_run_once_and_refuse_a_newer_schema() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        Store::open(&path)
            .unwrap()
            .insert_thing(&thing("a"))
            .unwrap();
        // Reopening applies nothing twice and keeps the data.
        let s = Store::open(&path).unwrap();
        assert_eq!(s.get_thing("a").unwrap(), Some(thing("a")));
        let v: i64 = s
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, SCHEMA_VERSION);
        s.conn
            .execute_batch(&format!("PRAGMA user_version = {}", SCHEMA_VERSION + 1))
            .unwrap();
        drop(s);
        assert!(matches!(
            Store::open(&path),
            Err(StoreError::SchemaTooNew { .. })
        ));
    }

    #[test]
    fn atomic_rolls_back_everything_on_error_and_nests() {
        let s = Store::open_in_memory().unwrap();
        let r: Result<(), StoreError> = s.atomic(|s| {
            s.insert_thing(&thing("a"))?;
            s.atomic(|s| s.insert_thing(&thing("b")))?;
            s.insert_thing(&thing("a")) // duplicate: fails
        });
        assert!(r.is_err());
        assert!(s.list_things().unwrap().is_empty());
        s.atomic(|s| s.insert_thing(&thing("c"))).unwrap();
        assert_eq!(s.list_things().unwrap().len(), 1);
    }

    #[test]
    fn nested_groups_and_membership() {
        let s = Store::open_in_memory().unwrap();
        let now = Timestamp::from_secs(1);
        for (g, parent) in [("root", None), ("mid", Some("root")), ("leaf", Some("mid"))] {
            s.insert_group(&ThingGroupRecord {
                name: g.into(),
                group_id: format!("id-{g}"),
                parent: parent.map(Into::into),
                description: None,
                attributes: Default::default(),
                version: 1,
                created_at: now,
            })
            .unwrap();
        }
        for t in ["a", "b"] {
            s.insert_thing(&thing(t)).unwrap();
        }
        assert!(s.add_member("leaf", "a", now).unwrap());
        assert!(!s.add_member("leaf", "a", now).unwrap());
        s.add_member("root", "b", now).unwrap();
        assert_eq!(s.things_in_group("root", true).unwrap(), ["a", "b"]);
        assert_eq!(s.things_in_group("root", false).unwrap(), ["b"]);
        assert_eq!(s.ancestors_of_group("leaf").unwrap(), ["root", "mid"]);
        assert!(s.add_member("nope", "a", now).is_err(), "foreign key");
        // Deleting a thing drops its memberships; deleting a group detaches its children.
        s.delete_thing("a").unwrap();
        assert!(s.things_in_group("leaf", false).unwrap().is_empty());
        s.delete_group("mid").unwrap();
        assert_eq!(s.get_group("leaf").unwrap().unwrap().parent, None);
    }
}
