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
        self.conn.execute(
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
        let mut st = self
            .conn
            .prepare("INSERT INTO job_targets (job_id, position, arn) VALUES (?1, ?2, ?3)")?;
        for (i, arn) in j.targets.iter().enumerate() {
            st.execute(params![j.job_id, i as i64, arn])?;
        }
        Ok(())
    }

    /// Writes the mutable fields of a job (status, cancel info, description, configs,
    /// timestamps) and appends targets not yet stored. Document and identity never change.
    pub fn update_job(&self, j: &JobRecord) -> Result<(), StoreError> {
        self.conn.execute(
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
        let stored = self.job_targets(&j.job_id)?;
        let mut st = self
            .conn
            .prepare("INSERT INTO job_targets (job_id, position, arn) VALUES (?1, ?2, ?3)")?;
        for (i, arn) in j.targets.iter().enumerate().skip(stored.len()) {
            st.execute(params![j.job_id, i as i64, arn])?;
        }
        Ok(())
    }

    pub fn get_job(&self, job_id: &str) -> Result<Option<JobRecord>, StoreError> {
        let sql = format!("SELECT {JOB_COLS} FROM jobs WHERE job_id = ?1");
        let job = self.conn.query_row(&sql, [job_id], job_row).optional()?;
        match job {
            Some(mut j) => {
                j.targets = self.job_targets(job_id)?;
                Ok(Some(j))
            }
            None => Ok(None),
        }
    }

    /// All jobs, oldest first.
    pub fn list_jobs(&self) -> Result<Vec<JobRecord>, StoreError> {
        let sql = format!("SELECT {JOB_COLS} FROM jobs ORDER BY created_at, job_id");
        let mut st = self.conn.prepare(&sql)?;
        let mut jobs: Vec<JobRecord> = st.query_map([], job_row)?.collect::<Result<_, _>>()?;
        for j in &mut jobs {
            j.targets = self.job_targets(&j.job_id)?;
        }
        Ok(jobs)
    }

    /// SCHEDULED and IN_PROGRESS jobs, oldest first (what the scheduler looks at).
    pub fn list_active_jobs(&self) -> Result<Vec<JobRecord>, StoreError> {
        let sql = format!(
            "SELECT {JOB_COLS} FROM jobs WHERE status IN ('SCHEDULED', 'IN_PROGRESS')
             ORDER BY created_at, job_id"
        );
        let mut st = self.conn.prepare(&sql)?;
        let mut jobs: Vec<JobRecord> = st.query_map([], job_row)?.collect::<Result<_, _>>()?;
        for j in &mut jobs {
            j.targets = self.job_targets(&j.job_id)?;
        }
        Ok(jobs)
    }

    /// Ids of jobs in `status` whose target list contains `arn`.
    pub fn jobs_targeting(&self, arn: &str, status: JobStatus) -> Result<Vec<String>, StoreError> {
        let mut st = self.conn.prepare(
            "SELECT DISTINCT j.job_id FROM jobs j JOIN job_targets t ON t.job_id = j.job_id
             WHERE t.arn = ?1 AND j.status = ?2 ORDER BY j.created_at, j.job_id",
        )?;
        let rows = st.query_map(params![arn, name_of(&status)], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Deletes a job with its targets and executions.
    pub fn delete_job(&self, job_id: &str) -> Result<bool, StoreError> {
        Ok(self
            .conn
            .execute("DELETE FROM jobs WHERE job_id = ?1", [job_id])?
            > 0)
    }

    fn job_targets(&self, job_id: &str) -> Result<Vec<String>, StoreError> {
        let mut st = self
            .conn
            .prepare("SELECT arn FROM job_targets WHERE job_id = ?1 ORDER BY position")?;
        let rows = st.query_map([job_id], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}
