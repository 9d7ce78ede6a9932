//! Jobs and their target lists.

use rusqlite::{params, OptionalExtension, Row};

use super::{from_json, from_name, name_of, to_json, JobRecord, JobStatus, Store, StoreError};
use crate::local::clock::Timestamp;

const JOB_COLS: &str = "job_id, target_selection, status, force_canceled, reason_code, comment,
     description, document, document_template, document_source, job_template_arn,
     document_parameters, namespace_id, configs, created_at, last_updated_at, completed_at";

fn job_row(r: &Row<'_>) -> rusqlite::Result<JobRecord> {
    let params_json: Option<String> = r.get(11)?;
    Ok(JobRecord {
        job_id: r.get(0)?,
        target_selection: from_name(1, r.get(1)?)?,
        status: from_name(2, r.get(2)?)?,
        force_canceled: r.get(3)?,
        reason_code: r.get(4)?,
        comment: r.get(5)?,
        description: r.get(6)?,
        targets: Vec::new(),
        document: r.get(7)?,
        document_template: r.get(8)?,
        document_source: r.get(9)?,
        job_template_arn: r.get(10)?,
        document_parameters: params_json.map(|p| from_json(11, &p)).transpose()?,
        namespace_id: r.get(12)?,
        configs: from_json(13, &r.get::<_, String>(13)?)?,
        created_at: Timestamp::from_millis(r.get(14)?),
        last_updated_at: Timestamp::from_millis(r.get(15)?),
        completed_at: r.get::<_, Option<i64>>(16)?.map(Timestamp::from_millis),
    })
}

impl Store {
    pub fn insert_job(&self, j: &JobRecord) -> Result<(), StoreError> {
        self.exec(
            "INSERT INTO jobs (job_id, target_selection, status, force_canceled, reason_code,
                 comment, description, document, document_template, document_source,
                 job_template_arn, document_parameters, namespace_id, configs, created_at,
                 last_updated_at, completed_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)",
            params![
                j.job_id,
                name_of(&j.target_selection),
                name_of(&j.status),
                j.force_canceled,
                j.reason_code,
                j.comment,
                j.description,
                j.document,
                j.document_template,
                j.document_source,
                j.job_template_arn,
                j.document_parameters.as_ref().map(to_json),
                j.namespace_id,
                to_json(&j.configs),
                j.created_at.millis(),
                j.last_updated_at.millis(),
                j.completed_at.map(Timestamp::millis),
            ],
        )?;
        let mut st = self.conn.prepare_cached(
            "INSERT INTO job_targets (job_id, position, arn) VALUES (?1, ?2, ?3)",
        )?;
        for (i, arn) in j.targets.iter().enumerate() {
            st.execute(params![j.job_id, i as i64, arn])?;
        }
        Ok(())
    }

    /// Writes the mutable fields of a job (status, cancel info, description, configs,
    /// timestamps) and appends targets not yet stored. Document and identity never change.
    pub fn update_job(&self, j: &JobRecord) -> Result<(), StoreError> {
        self.exec(
            "UPDATE jobs SET status = ?2, force_canceled = ?3, reason_code = ?4, comment = ?5,
                 description = ?6, configs = ?7, last_updated_at = ?8, completed_at = ?9
             WHERE job_id = ?1",
            params![
                j.job_id,
                name_of(&j.status),
                j.force_canceled,
                j.reason_code,
                j.comment,
                j.description,
                to_json(&j.configs),
                j.last_updated_at.millis(),
                j.completed_at.map(Timestamp::millis),
            ],
        )?;
        if j.targets.is_empty() {
            return Ok(());
        }
        let stored: i64 = self.row(
            "SELECT COUNT(*) FROM job_targets WHERE job_id = ?1",
            [&j.job_id],
            |r| r.get(0),
        )?;
        let mut st = self.conn.prepare_cached(
            "INSERT INTO job_targets (job_id, position, arn) VALUES (?1, ?2, ?3)",
        )?;
        for (i, arn) in j.targets.iter().enumerate().skip(stored as usize) {
            st.execute(params![j.job_id, i as i64, arn])?;
        }
        Ok(())
    }

    pub fn get_job(&self, job_id: &str) -> Result<Option<JobRecord>, StoreError> {
        match self.get_job_without_targets(job_id)? {
            Some(mut j) => {
                j.targets = self.job_targets(job_id)?;
                Ok(Some(j))
            }
            None => Ok(None),
        }
    }

    /// The job with an empty `targets` (up to 100 rows not read): for the device path,
    /// which needs its document, configs and status. [`Store::update_job`] on such a
    /// record leaves the stored targets as they are.
    pub fn get_job_without_targets(&self, job_id: &str) -> Result<Option<JobRecord>, StoreError> {
        let sql = format!("SELECT {JOB_COLS} FROM jobs WHERE job_id = ?1");
        Ok(self.row(&sql, [job_id], job_row).optional()?)
    }

    /// All jobs, oldest first.
    pub fn list_jobs(&self) -> Result<Vec<JobRecord>, StoreError> {
        let sql = format!("SELECT {JOB_COLS} FROM jobs ORDER BY created_at, job_id");
        let mut st = self.conn.prepare_cached(&sql)?;
        let mut jobs: Vec<JobRecord> = st.query_map([], job_row)?.collect::<Result<_, _>>()?;
        for j in &mut jobs {
            j.targets = self.job_targets(&j.job_id)?;
        }
        Ok(jobs)
    }

    /// SCHEDULED and IN_PROGRESS jobs, oldest first (what the scheduler looks at every
    /// second), without their targets (see [`Store::get_job_without_targets`]).
    pub fn list_active_jobs(&self) -> Result<Vec<JobRecord>, StoreError> {
        let sql = format!(
            "SELECT {JOB_COLS} FROM jobs WHERE status IN ('SCHEDULED', 'IN_PROGRESS')
             ORDER BY created_at, job_id"
        );
        let mut st = self.conn.prepare_cached(&sql)?;
        let jobs = st.query_map([], job_row)?.collect::<Result<_, _>>()?;
        Ok(jobs)
    }

    /// Ids of jobs in `status` whose target list contains `arn`.
    pub fn jobs_targeting(&self, arn: &str, status: JobStatus) -> Result<Vec<String>, StoreError> {
        let mut st = self.conn.prepare_cached(
            "SELECT DISTINCT j.job_id FROM jobs j JOIN job_targets t ON t.job_id = j.job_id
             WHERE t.arn = ?1 AND j.status = ?2 ORDER BY j.created_at, j.job_id",
        )?;
        let rows = st.query_map(params![arn, name_of(&status)], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Deletes a job with its targets and executions.
    pub fn delete_job(&self, job_id: &str) -> Result<bool, StoreError> {
        Ok(self.exec("DELETE FROM jobs WHERE job_id = ?1", [job_id])? > 0)
    }

    /// The job's target ARNs, in order.
    pub fn job_targets(&self, job_id: &str) -> Result<Vec<String>, StoreError> {
        let mut st = self
            .conn
            .prepare_cached("SELECT arn FROM job_targets WHERE job_id = ?1 ORDER BY position")?;
        let rows = st.query_map([job_id], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_read_without_targets_writes_back_without_losing_them() {
        let s = Store::open_in_memory().unwrap();
        s.conn
            .execute_batch(
                "INSERT INTO jobs (job_id, target_selection, status, document, created_at, last_updated_at)
                 VALUES ('j', 'SNAPSHOT', 'IN_PROGRESS', '{}', 0, 0);
                 INSERT INTO job_targets (job_id, position, arn) VALUES ('j', 0, 'a'), ('j', 1, 'b');",
            )
            .unwrap();
        let mut lean = s.get_job_without_targets("j").unwrap().unwrap();
        assert!(lean.targets.is_empty());
        assert_eq!(s.get_job("j").unwrap().unwrap().targets, ["a", "b"]);
        lean.status = JobStatus::Completed;
        s.update_job(&lean).unwrap();
        let full = s.get_job("j").unwrap().unwrap();
        assert_eq!(full.status, JobStatus::Completed);
        assert_eq!(full.targets, ["a", "b"]);
        // A full record still appends the targets that are not stored yet.
        let mut more = full;
        more.targets.push("c".into());
        s.update_job(&more).unwrap();
        assert_eq!(s.job_targets("j").unwrap(), ["a", "b", "c"]);
        assert!(s.get_job_without_targets("nope").unwrap().is_none());
        assert_eq!(
            s.list_active_jobs().unwrap().len(),
            0,
            "COMPLETED is not active"
        );
    }
}
