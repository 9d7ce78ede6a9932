//! Job executions: one row per (job, thing, executionNumber).

use rusqlite::{params, OptionalExtension, Row};

use super::{
    from_json, from_name, name_of, to_json, ExecutionRecord, StatusCounts, Store, StoreError,
};
use crate::jobs::execution::{self, ExecutionRecord as Execution};
use crate::jobs::wire::JobExecutionStatus;

const EXEC_COLS: &str = "e.seq, e.job_id, e.thing_name, e.force_canceled, e.retry_attempt,
     e.status, e.status_details, e.version_number, e.execution_number, e.queued_at,
     e.started_at, e.last_updated_at, e.in_progress_timeout_minutes, e.in_progress_deadline,
     e.step_deadline";

fn exec_row(r: &Row<'_>) -> rusqlite::Result<ExecutionRecord> {
    Ok(ExecutionRecord {
        seq: r.get(0)?,
        job_id: r.get(1)?,
        thing_name: r.get(2)?,
        force_canceled: r.get(3)?,
        retry_attempt: r.get(4)?,
        exec: Execution {
            status: from_name(5, r.get(5)?)?,
            status_details: from_json(6, &r.get::<_, String>(6)?)?,
            version_number: r.get(7)?,
            execution_number: r.get(8)?,
            queued_at: r.get(9)?,
            started_at: r.get(10)?,
            last_updated_at: r.get(11)?,
            in_progress_timeout_minutes: r.get(12)?,
            in_progress_deadline: r.get(13)?,
            step_deadline: r.get(14)?,
        },
    })
}

/// Statuses that keep an execution in a device's pending list.
const PENDING: &str = "('QUEUED', 'IN_PROGRESS')";

impl Store {
    /// Queues a new attempt of `job_id` on `thing`: the next execution number for that
    /// pair, `versionNumber` 1, QUEUED at `now` (epoch seconds).
    pub fn insert_execution(
        &self,
        job_id: &str,
        thing: &str,
        retry_attempt: i64,
        in_progress_timeout_minutes: Option<i64>,
        now: i64,
    ) -> Result<ExecutionRecord, StoreError> {
        let latest: Option<i64> = self.row(
            "SELECT MAX(execution_number) FROM job_executions
             WHERE job_id = ?1 AND thing_name = ?2",
            params![job_id, thing],
            |r| r.get(0),
        )?;
        let exec = Execution::queued(
            execution::next_execution_number(latest),
            in_progress_timeout_minutes,
            now,
        );
        self.exec(
            "INSERT INTO job_executions (job_id, thing_name, execution_number, status,
                 status_details, version_number, retry_attempt, queued_at, last_updated_at,
                 in_progress_timeout_minutes)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            params![
                job_id,
                thing,
                exec.execution_number,
                name_of(&exec.status),
                to_json(&exec.status_details),
                exec.version_number,
                retry_attempt,
                exec.queued_at,
                exec.last_updated_at,
                exec.in_progress_timeout_minutes,
            ],
        )?;
        Ok(ExecutionRecord {
            seq: self.conn.last_insert_rowid(),
            job_id: job_id.to_owned(),
            thing_name: thing.to_owned(),
            force_canceled: false,
            retry_attempt,
            exec,
        })
    }

    /// Writes every mutable field of an execution (identified by `seq`).
    pub fn update_execution(&self, e: &ExecutionRecord) -> Result<(), StoreError> {
        let x = &e.exec;
        self.exec(
            "UPDATE job_executions SET status = ?2, status_details = ?3, version_number = ?4,
                 force_canceled = ?5, retry_attempt = ?6, started_at = ?7, last_updated_at = ?8,
                 in_progress_timeout_minutes = ?9, in_progress_deadline = ?10,
                 step_deadline = ?11
             WHERE seq = ?1",
            params![
                e.seq,
                name_of(&x.status),
                to_json(&x.status_details),
                x.version_number,
                e.force_canceled,
                e.retry_attempt,
                x.started_at,
                x.last_updated_at,
                x.in_progress_timeout_minutes,
                x.in_progress_deadline,
                x.step_deadline,
            ],
        )?;
        Ok(())
    }

    /// The execution `number` of (job, thing), or the latest one when `number` is None.
    pub fn get_execution(
        &self,
        job_id: &str,
        thing: &str,
        number: Option<i64>,
    ) -> Result<Option<ExecutionRecord>, StoreError> {
        let sql = format!(
            "SELECT {EXEC_COLS} FROM job_executions e
             WHERE e.job_id = ?1 AND e.thing_name = ?2 AND (?3 IS NULL OR e.execution_number = ?3)
             ORDER BY e.execution_number DESC LIMIT 1"
        );
        Ok(self
            .row(&sql, params![job_id, thing, number], exec_row)
            .optional()?)
    }

    /// The thing's pending executions in the order the device API uses everywhere:
    /// IN_PROGRESS first, then QUEUED, each oldest-queued first, ties by creation order.
    /// Executions of SCHEDULED jobs and of jobs being deleted are never pending.
    pub fn pending_for_thing(&self, thing: &str) -> Result<Vec<ExecutionRecord>, StoreError> {
        self.pending_head(thing, None)
    }

    /// The first `limit` (all when `None`) of [`Self::pending_for_thing`]: a thing with a
    /// long queue costs a request only what its reply shows.
    pub fn pending_head(
        &self,
        thing: &str,
        limit: Option<usize>,
    ) -> Result<Vec<ExecutionRecord>, StoreError> {
        let sql = format!(
            "SELECT {EXEC_COLS} FROM job_executions e JOIN jobs j ON j.job_id = e.job_id
             WHERE e.thing_name = ?1 AND e.status IN {PENDING}
               AND j.status NOT IN ('SCHEDULED', 'DELETION_IN_PROGRESS')
             ORDER BY CASE e.status WHEN 'IN_PROGRESS' THEN 0 ELSE 1 END, e.queued_at, e.seq
             LIMIT ?2"
        );
        // SQLite: a negative LIMIT means no limit.
        let limit = limit.map_or(-1, |n| i64::try_from(n).unwrap_or(i64::MAX));
        let mut st = self.conn.prepare_cached(&sql)?;
        let rows = st.query_map(params![thing, limit], exec_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The sequence number and status of each of the thing's pending executions, in no
    /// particular order and without decoding the rest of each row: what deciding whether
    /// `notify` is due needs (a set comparison; the head comes from [`Self::pending_head`]).
    pub fn pending_keys(&self, thing: &str) -> Result<Vec<(i64, JobExecutionStatus)>, StoreError> {
        let sql = format!(
            "SELECT e.seq, e.status FROM job_executions e JOIN jobs j ON j.job_id = e.job_id
             WHERE e.thing_name = ?1 AND e.status IN {PENDING}
               AND j.status NOT IN ('SCHEDULED', 'DELETION_IN_PROGRESS')"
        );
        let mut st = self.conn.prepare_cached(&sql)?;
        let rows = st.query_map([thing], |r| Ok((r.get(0)?, from_name(1, r.get(1)?)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Executions of a job (every attempt), by thing then execution number, optionally
    /// only those in `status`.
    pub fn executions_for_job(
        &self,
        job_id: &str,
        status: Option<JobExecutionStatus>,
    ) -> Result<Vec<ExecutionRecord>, StoreError> {
        let sql = format!(
            "SELECT {EXEC_COLS} FROM job_executions e
             WHERE e.job_id = ?1 AND (?2 IS NULL OR e.status = ?2)
             ORDER BY e.thing_name, e.execution_number"
        );
        let mut st = self.conn.prepare_cached(&sql)?;
        let rows = st.query_map(params![job_id, status.as_ref().map(name_of)], exec_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Executions on a thing (every attempt), oldest first, optionally filtered.
    pub fn executions_for_thing(
        &self,
        thing: &str,
        status: Option<JobExecutionStatus>,
        job_id: Option<&str>,
    ) -> Result<Vec<ExecutionRecord>, StoreError> {
        let sql = format!(
            "SELECT {EXEC_COLS} FROM job_executions e
             WHERE e.thing_name = ?1 AND (?2 IS NULL OR e.status = ?2)
               AND (?3 IS NULL OR e.job_id = ?3)
             ORDER BY e.queued_at, e.seq"
        );
        let mut st = self.conn.prepare_cached(&sql)?;
        let rows = st.query_map(
            params![thing, status.as_ref().map(name_of), job_id],
            exec_row,
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The latest execution of each thing of a job, by thing name.
    pub fn latest_executions_for_job(
        &self,
        job_id: &str,
    ) -> Result<Vec<ExecutionRecord>, StoreError> {
        let sql = format!(
            "SELECT {EXEC_COLS} FROM job_executions e
             WHERE e.job_id = ?1 AND e.execution_number = (
                 SELECT MAX(x.execution_number) FROM job_executions x
                 WHERE x.job_id = e.job_id AND x.thing_name = e.thing_name)
             ORDER BY e.thing_name"
        );
        let mut st = self.conn.prepare_cached(&sql)?;
        let rows = st.query_map([job_id], exec_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// `jobProcessDetails` counters: the latest execution per thing, by status.
    pub fn status_counts(&self, job_id: &str) -> Result<StatusCounts, StoreError> {
        let mut c = StatusCounts::default();
        for e in self.latest_executions_for_job(job_id)? {
            let slot = match e.exec.status {
                JobExecutionStatus::Queued => &mut c.number_of_queued_things,
                JobExecutionStatus::InProgress => &mut c.number_of_in_progress_things,
                JobExecutionStatus::Succeeded => &mut c.number_of_succeeded_things,
                JobExecutionStatus::Failed => &mut c.number_of_failed_things,
                JobExecutionStatus::Rejected => &mut c.number_of_rejected_things,
                JobExecutionStatus::Canceled => &mut c.number_of_canceled_things,
                JobExecutionStatus::Removed => &mut c.number_of_removed_things,
                JobExecutionStatus::TimedOut => &mut c.number_of_timed_out_things,
            };
            *slot += 1;
        }
        Ok(c)
    }

    /// Whether any execution of the job is still QUEUED or IN_PROGRESS.
    pub fn job_has_pending(&self, job_id: &str) -> Result<bool, StoreError> {
        let sql = format!(
            "SELECT EXISTS(SELECT 1 FROM job_executions WHERE job_id = ?1 AND status IN {PENDING})"
        );
        Ok(self.row(&sql, [job_id], |r| r.get(0))?)
    }

    /// Distinct things that have any execution of the job.
    pub fn things_of_job(&self, job_id: &str) -> Result<Vec<String>, StoreError> {
        let mut st = self.conn.prepare_cached(
            "SELECT DISTINCT thing_name FROM job_executions WHERE job_id = ?1 ORDER BY thing_name",
        )?;
        let rows = st.query_map([job_id], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn delete_execution(&self, seq: i64) -> Result<bool, StoreError> {
        Ok(self.exec("DELETE FROM job_executions WHERE seq = ?1", [seq])? > 0)
    }
}

impl Store {
    /// IN_PROGRESS executions whose in-progress or step deadline is at or before `now`
    /// (epoch seconds), in creation order.
    pub fn expired_executions(&self, now: i64) -> Result<Vec<ExecutionRecord>, StoreError> {
        let sql = format!(
            "SELECT {EXEC_COLS} FROM job_executions e
             WHERE e.status = 'IN_PROGRESS'
               AND (e.in_progress_deadline <= ?1 OR e.step_deadline <= ?1)
             ORDER BY e.seq"
        );
        let mut st = self.conn.prepare_cached(&sql)?;
        let rows = st.query_map([now], exec_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

impl Store {
    /// Abort counters: per thing, the status of its latest *finished* attempt (a thing
    /// whose failure awaits a queued retry still counts as failed), by status.
    pub fn finished_counts(&self, job_id: &str) -> Result<StatusCounts, StoreError> {
        let mut st = self.conn.prepare_cached(&format!(
            "SELECT e.status FROM job_executions e
             WHERE e.job_id = ?1 AND e.status NOT IN {PENDING} AND e.execution_number = (
                 SELECT MAX(x.execution_number) FROM job_executions x
                 WHERE x.job_id = e.job_id AND x.thing_name = e.thing_name
                   AND x.status NOT IN {PENDING})"
        ))?;
        let rows = st.query_map([job_id], |r| from_name::<JobExecutionStatus>(0, r.get(0)?))?;
        let mut c = StatusCounts::default();
        for s in rows {
            let slot = match s? {
                JobExecutionStatus::Succeeded => &mut c.number_of_succeeded_things,
                JobExecutionStatus::Failed => &mut c.number_of_failed_things,
                JobExecutionStatus::Rejected => &mut c.number_of_rejected_things,
                JobExecutionStatus::TimedOut => &mut c.number_of_timed_out_things,
                JobExecutionStatus::Canceled => &mut c.number_of_canceled_things,
                JobExecutionStatus::Removed => &mut c.number_of_removed_things,
                JobExecutionStatus::Queued | JobExecutionStatus::InProgress => continue,
            };
            *slot += 1;
        }
        Ok(c)
    }
}
