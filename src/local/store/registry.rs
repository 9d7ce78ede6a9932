//! Things, static thing groups (nested through `parent`) and group membership.

use rusqlite::{params, OptionalExtension, Row};

use super::{from_json, to_json, Store, StoreError, ThingGroupRecord, ThingRecord};
use crate::local::clock::Timestamp;

const THING_COLS: &str = "name, thing_id, thing_type, attributes, version, created_at";
const GROUP_COLS: &str = "name, group_id, parent, description, attributes, version, created_at";

fn thing_row(r: &Row<'_>) -> rusqlite::Result<ThingRecord> {
    Ok(ThingRecord {
        name: r.get(0)?,
        thing_id: r.get(1)?,
        thing_type: r.get(2)?,
        attributes: from_json(3, &r.get::<_, String>(3)?)?,
        version: r.get(4)?,
        created_at: Timestamp::from_millis(r.get(5)?),
    })
}

fn group_row(r: &Row<'_>) -> rusqlite::Result<ThingGroupRecord> {
    Ok(ThingGroupRecord {
        name: r.get(0)?,
        group_id: r.get(1)?,
        parent: r.get(2)?,
        description: r.get(3)?,
        attributes: from_json(4, &r.get::<_, String>(4)?)?,
        version: r.get(5)?,
        created_at: Timestamp::from_millis(r.get(6)?),
    })
}

impl Store {
    pub fn insert_thing(&self, t: &ThingRecord) -> Result<(), StoreError> {
        self.exec(
            "INSERT INTO things (name, thing_id, thing_type, attributes, version, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                t.name,
                t.thing_id,
                t.thing_type,
                to_json(&t.attributes),
                t.version,
                t.created_at.millis()
            ],
        )?;
        Ok(())
    }

    pub fn get_thing(&self, name: &str) -> Result<Option<ThingRecord>, StoreError> {
        let sql = format!("SELECT {THING_COLS} FROM things WHERE name = ?1");
        Ok(self.row(&sql, [name], thing_row).optional()?)
    }

    pub fn list_things(&self) -> Result<Vec<ThingRecord>, StoreError> {
        let sql = format!("SELECT {THING_COLS} FROM things ORDER BY name");
        let mut st = self.conn.prepare_cached(&sql)?;
        let rows = st.query_map([], thing_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Deletes a thing and its group memberships. Its executions stay (as history).
    pub fn delete_thing(&self, name: &str) -> Result<bool, StoreError> {
        Ok(self.exec("DELETE FROM things WHERE name = ?1", [name])? > 0)
    }

    pub fn insert_group(&self, g: &ThingGroupRecord) -> Result<(), StoreError> {
        self.exec(
            "INSERT INTO thing_groups
               (name, group_id, parent, description, attributes, version, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                g.name,
                g.group_id,
                g.parent,
                g.description,
                to_json(&g.attributes),
                g.version,
                g.created_at.millis()
            ],
        )?;
        Ok(())
    }

    pub fn get_group(&self, name: &str) -> Result<Option<ThingGroupRecord>, StoreError> {
        let sql = format!("SELECT {GROUP_COLS} FROM thing_groups WHERE name = ?1");
        Ok(self.row(&sql, [name], group_row).optional()?)
    }

    pub fn list_groups(&self) -> Result<Vec<ThingGroupRecord>, StoreError> {
        let sql = format!("SELECT {GROUP_COLS} FROM thing_groups ORDER BY name");
        let mut st = self.conn.prepare_cached(&sql)?;
        let rows = st.query_map([], group_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Deletes a group and its memberships. Child groups are detached (become roots), as
    /// they would otherwise point at a missing parent.
    pub fn delete_group(&self, name: &str) -> Result<bool, StoreError> {
        self.exec(
            "UPDATE thing_groups SET parent = NULL WHERE parent = ?1",
            [name],
        )?;
        Ok(self.exec("DELETE FROM thing_groups WHERE name = ?1", [name])? > 0)
    }

    /// Adds `thing` to `group`; false when it already was a member.
    pub fn add_member(&self, group: &str, thing: &str, now: Timestamp) -> Result<bool, StoreError> {
        Ok(self.exec(
            "INSERT OR IGNORE INTO group_members (group_name, thing_name, added_at)
             VALUES (?1, ?2, ?3)",
            params![group, thing, now.millis()],
        )? > 0)
    }

    /// Removes `thing` from `group`; false when it was not a member.
    pub fn remove_member(&self, group: &str, thing: &str) -> Result<bool, StoreError> {
        Ok(self.exec(
            "DELETE FROM group_members WHERE group_name = ?1 AND thing_name = ?2",
            params![group, thing],
        )? > 0)
    }

    /// Groups `thing` is a direct member of, by name.
    pub fn groups_of_thing(&self, thing: &str) -> Result<Vec<String>, StoreError> {
        let mut st = self.conn.prepare_cached(
            "SELECT group_name FROM group_members WHERE thing_name = ?1 ORDER BY group_name",
        )?;
        let rows = st.query_map([thing], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// `group` and, when `recursive`, every group nested below it.
    pub fn group_and_descendants(
        &self,
        group: &str,
        recursive: bool,
    ) -> Result<Vec<String>, StoreError> {
        if !recursive {
            return Ok(vec![group.to_owned()]);
        }
        // UNION (not UNION ALL) stops on a parent cycle instead of looping forever.
        let mut st = self.conn.prepare_cached(
            "WITH RECURSIVE sub(name) AS (
                 SELECT ?1
                 UNION
                 SELECT g.name FROM thing_groups g JOIN sub ON g.parent = sub.name)
             SELECT name FROM sub ORDER BY name",
        )?;
        let rows = st.query_map([group], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// `group`'s ancestors, root first (`rootToParentThingGroups`).
    pub fn ancestors_of_group(&self, group: &str) -> Result<Vec<String>, StoreError> {
        let mut out: Vec<String> = Vec::new();
        let mut cur = self.get_group(group)?.and_then(|g| g.parent);
        while let Some(p) = cur {
            if out.contains(&p) || p == group {
                break; // defensive: a cycle cannot be created through the service
            }
            cur = self.get_group(&p)?.and_then(|g| g.parent);
            out.push(p);
        }
        out.reverse();
        Ok(out)
    }

    /// Things in `group` (and its descendants when `recursive`), sorted, without duplicates.
    pub fn things_in_group(&self, group: &str, recursive: bool) -> Result<Vec<String>, StoreError> {
        let groups = self.group_and_descendants(group, recursive)?;
        let mut st = self
            .conn
            .prepare_cached("SELECT thing_name FROM group_members WHERE group_name = ?1")?;
        let mut out = Vec::new();
        for g in &groups {
            let rows = st.query_map([g], |r| r.get::<_, String>(0))?;
            for name in rows {
                out.push(name?);
            }
        }
        out.sort();
        out.dedup();
        Ok(out)
    }
}
