//! Schema of the local service's SQLite database and its migrations. Each migration is
//! applied once, in order, and recorded in `PRAGMA user_version`; released migrations are
//! never edited, only appended to.

use rusqlite::Connection;

use super::StoreError;

/// Migration `i` brings the database from `user_version = i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    // v1: registry (things, nested static groups), jobs, executions, templates.
    r#"
    CREATE TABLE things (
        name        TEXT PRIMARY KEY,
        thing_id    TEXT NOT NULL UNIQUE,
        thing_type  TEXT,
        attributes  TEXT NOT NULL DEFAULT '{}',
        version     INTEGER NOT NULL DEFAULT 1,
        created_at  INTEGER NOT NULL
    );

    CREATE TABLE thing_groups (
        name        TEXT PRIMARY KEY,
        group_id    TEXT NOT NULL UNIQUE,
        parent      TEXT REFERENCES thing_groups(name),
        description TEXT,
        attributes  TEXT NOT NULL DEFAULT '{}',
        version     INTEGER NOT NULL DEFAULT 1,
        created_at  INTEGER NOT NULL
    );

    CREATE TABLE group_members (
        group_name  TEXT NOT NULL REFERENCES thing_groups(name) ON DELETE CASCADE,
        thing_name  TEXT NOT NULL REFERENCES things(name) ON DELETE CASCADE,
        added_at    INTEGER NOT NULL,
        PRIMARY KEY (group_name, thing_name)
    );
    CREATE INDEX group_members_by_thing ON group_members(thing_name);

    CREATE TABLE jobs (
        job_id            TEXT PRIMARY KEY,
        target_selection  TEXT NOT NULL,
        status            TEXT NOT NULL,
        force_canceled    INTEGER NOT NULL DEFAULT 0,
        reason_code       TEXT,
        comment           TEXT,
        description       TEXT,
        document          TEXT NOT NULL,
        document_template TEXT,
        document_source   TEXT,
        job_template_arn  TEXT,
        document_parameters TEXT,
        namespace_id      TEXT,
        configs           TEXT NOT NULL DEFAULT '{}',
        created_at        INTEGER NOT NULL,
        last_updated_at   INTEGER NOT NULL,
        completed_at      INTEGER
    );

    CREATE TABLE job_targets (
        job_id    TEXT NOT NULL REFERENCES jobs(job_id) ON DELETE CASCADE,
        position  INTEGER NOT NULL,
        arn       TEXT NOT NULL,
        PRIMARY KEY (job_id, position)
    );

    -- `seq` is the creation order, the tie-breaker of the pending-list ordering.
    -- Execution times are epoch seconds (the device API's unit); every other table keeps
    -- epoch milliseconds.
    CREATE TABLE job_executions (
        seq               INTEGER PRIMARY KEY AUTOINCREMENT,
        job_id            TEXT NOT NULL REFERENCES jobs(job_id) ON DELETE CASCADE,
        thing_name        TEXT NOT NULL,
        execution_number  INTEGER NOT NULL,
        status            TEXT NOT NULL,
        status_details    TEXT NOT NULL DEFAULT '{}',
        version_number    INTEGER NOT NULL,
        force_canceled    INTEGER NOT NULL DEFAULT 0,
        retry_attempt     INTEGER NOT NULL DEFAULT 0,
        queued_at         INTEGER NOT NULL,
        started_at        INTEGER,
        last_updated_at   INTEGER NOT NULL,
        in_progress_timeout_minutes INTEGER,
        in_progress_deadline INTEGER,
        step_deadline     INTEGER,
        UNIQUE (job_id, thing_name, execution_number)
    );
    CREATE INDEX job_executions_by_thing ON job_executions(thing_name, status);

    CREATE TABLE job_templates (
        template_id       TEXT PRIMARY KEY,
        description       TEXT NOT NULL,
        document          TEXT,
        document_source   TEXT,
        configs           TEXT NOT NULL DEFAULT '{}',
        created_at        INTEGER NOT NULL
    );
    "#,
    // v2: the rollout queue: targets of a job that have no execution yet (scheduled jobs,
    // rate-limited rollouts, maintenance windows), in target order.
    r#"
    CREATE TABLE job_rollout (
        job_id      TEXT NOT NULL REFERENCES jobs(job_id) ON DELETE CASCADE,
        thing_name  TEXT NOT NULL,
        position    INTEGER NOT NULL,
        PRIMARY KEY (job_id, thing_name)
    );
    CREATE INDEX job_executions_in_progress ON job_executions(status)
        WHERE status = 'IN_PROGRESS';
    "#,
    // v3: device certificates issued by CreateKeysAndCertificate and their attachments to
    // things (AttachThingPrincipal). `serial` is how the broker recognises a certificate.
    r#"
    CREATE TABLE certificates (
        certificate_id    TEXT PRIMARY KEY,
        certificate_arn   TEXT NOT NULL,
        serial            TEXT NOT NULL UNIQUE,
        pem               TEXT NOT NULL,
        status            TEXT NOT NULL,
        created_at        INTEGER NOT NULL,
        last_modified_at  INTEGER NOT NULL
    );

    CREATE TABLE thing_principals (
        thing_name      TEXT NOT NULL REFERENCES things(name) ON DELETE CASCADE,
        certificate_id  TEXT NOT NULL REFERENCES certificates(certificate_id) ON DELETE CASCADE,
        attached_at     INTEGER NOT NULL,
        PRIMARY KEY (thing_name, certificate_id)
    );
    CREATE INDEX thing_principals_by_certificate ON thing_principals(certificate_id);
    "#,
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

pub(super) fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let current: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if current > SCHEMA_VERSION {
        return Err(StoreError::SchemaTooNew {
            found: current,
            supported: SCHEMA_VERSION,
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        // PRAGMA takes no bound parameters; the value is our own integer.
        tx.execute_batch(&format!("PRAGMA user_version = {}", i + 1))?;
        tx.commit()?;
    }
    Ok(())
}
