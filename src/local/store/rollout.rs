//! The rollout queue: things a job targets that have no execution yet, oldest first.
//! Scheduling, rollout rates and maintenance windows drain it (`local::service`).

use rusqlite::params;

use super::{Store, StoreError};

impl Store {
    /// Appends things to a job's rollout queue (already queued ones keep their place).
    pub fn add_rollout<S: AsRef<str>>(&self, job_id: &str, things: &[S]) -> Result<(), StoreError> {
        let next: i64 = self.row(
            "SELECT COALESCE(MAX(position) + 1, 0) FROM job_rollout WHERE job_id = ?1",
            [job_id],
            |r| r.get(0),
        )?;
        let mut st = self.conn.prepare_cached(
            "INSERT OR IGNORE INTO job_rollout (job_id, thing_name, position) VALUES (?1, ?2, ?3)",
        )?;
        for (i, t) in things.iter().enumerate() {
            st.execute(params![job_id, t.as_ref(), next + i as i64])?;
        }
        Ok(())
    }

    /// The first `limit` things of a job's rollout queue (all with `None`).
    pub fn rollout_queue(
        &self,
        job_id: &str,
        limit: Option<i64>,
    ) -> Result<Vec<String>, StoreError> {
        let mut st = self.conn.prepare_cached(
            "SELECT thing_name FROM job_rollout WHERE job_id = ?1 ORDER BY position LIMIT ?2",
        )?;
        let rows = st.query_map(params![job_id, limit.unwrap_or(-1)], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn rollout_len(&self, job_id: &str) -> Result<i64, StoreError> {
        Ok(self.row(
            "SELECT COUNT(*) FROM job_rollout WHERE job_id = ?1",
            [job_id],
            |r| r.get(0),
        )?)
    }

    pub fn remove_rollout(&self, job_id: &str, thing: &str) -> Result<bool, StoreError> {
        Ok(self.exec(
            "DELETE FROM job_rollout WHERE job_id = ?1 AND thing_name = ?2",
            params![job_id, thing],
        )? > 0)
    }

    /// Takes a thing out of every rollout queue (the thing is deleted).
    pub fn remove_thing_from_rollouts(&self, thing: &str) -> Result<usize, StoreError> {
        Ok(self.exec("DELETE FROM job_rollout WHERE thing_name = ?1", [thing])?)
    }

    /// Empties a job's rollout queue; returns how many things it held.
    pub fn clear_rollout(&self, job_id: &str) -> Result<usize, StoreError> {
        Ok(self.exec("DELETE FROM job_rollout WHERE job_id = ?1", [job_id])?)
    }

    /// First executions (not retries) of a job queued after `since` (epoch seconds,
    /// exclusive); with `since = None`, all of them: the things notified so far.
    pub fn first_executions_since(
        &self,
        job_id: &str,
        since: Option<i64>,
    ) -> Result<i64, StoreError> {
        Ok(self.row(
            "SELECT COUNT(*) FROM job_executions
             WHERE job_id = ?1 AND retry_attempt = 0 AND (?2 IS NULL OR queued_at > ?2)",
            params![job_id, since],
            |r| r.get(0),
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_order_duplicates_and_clearing() {
        let s = Store::open_in_memory().unwrap();
        s.conn
            .execute_batch(
                "INSERT INTO jobs (job_id, target_selection, status, document, created_at, last_updated_at)
                 VALUES ('j', 'SNAPSHOT', 'SCHEDULED', '{}', 0, 0)",
            )
            .unwrap();
        s.add_rollout("j", &["b", "a"]).unwrap();
        s.add_rollout("j", &["a", "c"]).unwrap();
        assert_eq!(s.rollout_queue("j", None).unwrap(), ["b", "a", "c"]);
        assert_eq!(s.rollout_queue("j", Some(2)).unwrap(), ["b", "a"]);
        assert!(s.remove_rollout("j", "a").unwrap());
        assert_eq!(s.rollout_len("j").unwrap(), 2);
        assert_eq!(s.clear_rollout("j").unwrap(), 2);
        assert!(s.rollout_queue("j", None).unwrap().is_empty());
    }
}
