//! Custom job templates (CreateJobTemplate). AWS managed templates are built into the
//! control plane and never stored.

use rusqlite::{params, OptionalExtension, Row};

use super::{from_json, to_json, JobTemplateRecord, Store, StoreError};
use crate::local::clock::Timestamp;

fn template_row(r: &Row<'_>) -> rusqlite::Result<JobTemplateRecord> {
    Ok(JobTemplateRecord {
        template_id: r.get(0)?,
        description: r.get(1)?,
        document: r.get(2)?,
        document_source: r.get(3)?,
        configs: from_json(4, &r.get::<_, String>(4)?)?,
        created_at: Timestamp::from_millis(r.get(5)?),
    })
}

const COLS: &str = "template_id, description, document, document_source, configs, created_at";

impl Store {
    pub fn insert_template(&self, t: &JobTemplateRecord) -> Result<(), StoreError> {
        self.exec(
            "INSERT INTO job_templates
               (template_id, description, document, document_source, configs, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                t.template_id,
                t.description,
                t.document,
                t.document_source,
                to_json(&t.configs),
                t.created_at.millis()
            ],
        )?;
        Ok(())
    }

    pub fn get_template(&self, id: &str) -> Result<Option<JobTemplateRecord>, StoreError> {
        let sql = format!("SELECT {COLS} FROM job_templates WHERE template_id = ?1");
        Ok(self.row(&sql, [id], template_row).optional()?)
    }

    /// All templates, oldest first.
    pub fn list_templates(&self) -> Result<Vec<JobTemplateRecord>, StoreError> {
        let sql = format!("SELECT {COLS} FROM job_templates ORDER BY created_at, template_id");
        let mut st = self.conn.prepare_cached(&sql)?;
        let rows = st.query_map([], template_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn delete_template(&self, id: &str) -> Result<bool, StoreError> {
        Ok(self.exec("DELETE FROM job_templates WHERE template_id = ?1", [id])? > 0)
    }
}
