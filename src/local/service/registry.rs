//! Things, thing groups and membership, and their effect on jobs: a thing that joins a
//! group targeted by a CONTINUOUS job gets an execution; one that stops being a target, or
//! is deleted, has its pending executions REMOVED. Job templates are plain records here.

use std::collections::{BTreeMap, BTreeSet};

use super::{validate, Changed, JobsService, ServiceError};
use crate::jobs::execution::ServiceAction;
use crate::local::clock::Timestamp;
use crate::local::lifecycle::{Lifecycle, Phase};
use crate::local::store::{
    JobConfigs, JobStatus, JobTemplateRecord, StringMap, TargetSelection, ThingGroupRecord,
    ThingRecord,
};

/// AWS lets a thing belong to at most 10 static thing groups.
pub const MAX_GROUPS_PER_THING: usize = 10;

/// CreateThing input.
#[derive(Debug, Clone, Default)]
pub struct NewThing {
    pub name: String,
    pub thing_type: Option<String>,
    pub attributes: StringMap,
}

/// CreateThingGroup input.
#[derive(Debug, Clone, Default)]
pub struct NewThingGroup {
    pub name: String,
    pub parent: Option<String>,
    pub description: Option<String>,
    pub attributes: StringMap,
}

/// A random UUID v4 string (thing and group ids are opaque).
fn new_uuid() -> String {
    let mut b = [0u8; 16];
    b.iter_mut().for_each(|x| *x = fastrand::u8(..));
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

impl JobsService {
    /// CreateThing. Repeating it with the same configuration returns the existing thing;
    /// a different configuration is `ResourceAlreadyExists`.
    pub fn create_thing(
        &mut self,
        now: Timestamp,
        new: NewThing,
    ) -> Result<ThingRecord, ServiceError> {
        validate::name("thingName", &new.name)?;
        if let Some(t) = self.store.get_thing(&new.name)? {
            if t.thing_type == new.thing_type && t.attributes == new.attributes {
                return Ok(t);
            }
            return Err(ServiceError::ResourceAlreadyExists {
                message: format!(
                    "thing {} already exists with a different configuration",
                    new.name
                ),
                resource_id: t.thing_id,
                resource_arn: Some(self.cfg.account.thing_arn(&new.name)),
            });
        }
        let t = ThingRecord {
            name: new.name,
            thing_id: new_uuid(),
            thing_type: new.thing_type,
            attributes: new.attributes,
            version: 1,
            created_at: now,
        };
        self.store.insert_thing(&t)?;
        Ok(t)
    }

    /// DeleteThing: its pending executions become REMOVED; succeeds when it does not exist.
    pub fn delete_thing(
        &mut self,
        now: Timestamp,
        name: &str,
    ) -> Result<Changed<()>, ServiceError> {
        // Deleting the thing detaches its certificates (cascade): the broker must know.
        let certificates = self.certificates_of_thing(name)?;
        let changed = self.store.atomic(|store| {
            let before = self.snapshot([name])?;
            for mut rec in store.pending_for_thing(name)? {
                self.apply_service_action(now, &mut rec, ServiceAction::Remove, None)?;
                self.settle_job(now, &rec.job_id)?;
            }
            store.remove_thing_from_rollouts(name)?;
            store.delete_thing(name)?;
            let messages = self.notifications(now, &before)?;
            Ok::<_, ServiceError>(Changed {
                value: (),
                messages,
            })
        })?;
        self.refresh_certificates(&certificates)?;
        Ok(changed)
    }

    /// CreateThingGroup (static; `parent` nests it). An identical repeat succeeds.
    pub fn create_thing_group(
        &mut self,
        now: Timestamp,
        new: NewThingGroup,
    ) -> Result<ThingGroupRecord, ServiceError> {
        validate::name("thingGroupName", &new.name)?;
        validate::text("thingGroupDescription", new.description.as_deref())?;
        if let Some(g) = self.store.get_group(&new.name)? {
            if g.parent == new.parent
                && g.description == new.description
                && g.attributes == new.attributes
            {
                return Ok(g);
            }
            return Err(ServiceError::ResourceAlreadyExists {
                message: format!(
                    "thing group {} already exists with a different configuration",
                    new.name
                ),
                resource_id: g.group_id,
                resource_arn: Some(self.cfg.account.group_arn(&new.name)),
            });
        }
        if let Some(p) = &new.parent {
            if self.store.get_group(p)?.is_none() {
                return Err(ServiceError::not_found(format_args!(
                    "parent thing group {p}"
                )));
            }
        }
        let g = ThingGroupRecord {
            name: new.name,
            group_id: new_uuid(),
            parent: new.parent,
            description: new.description,
            attributes: new.attributes,
            version: 1,
            created_at: now,
        };
        self.store.insert_group(&g)?;
        Ok(g)
    }

    /// DeleteThingGroup: its members leave it (continuous jobs react as for a removal).
    pub fn delete_thing_group(
        &mut self,
        now: Timestamp,
        name: &str,
    ) -> Result<Changed<()>, ServiceError> {
        let affected = self.store.things_in_group(name, true)?;
        self.membership_change(now, &affected, |s| {
            s.store.delete_group(name)?;
            Ok(())
        })
    }

    /// AddThingToThingGroup.
    pub fn add_thing_to_thing_group(
        &mut self,
        now: Timestamp,
        group: &str,
        thing: &str,
    ) -> Result<Changed<()>, ServiceError> {
        if self.store.get_group(group)?.is_none() {
            return Err(ServiceError::not_found(format_args!("thing group {group}")));
        }
        if self.store.get_thing(thing)?.is_none() {
            return Err(ServiceError::not_found(format_args!("thing {thing}")));
        }
        let groups = self.store.groups_of_thing(thing)?;
        if groups.len() >= MAX_GROUPS_PER_THING && !groups.iter().any(|g| g == group) {
            return Err(ServiceError::InvalidRequest(format!(
                "thing {thing} is already in {MAX_GROUPS_PER_THING} thing groups, the limit"
            )));
        }
        self.membership_change(now, &[thing.to_owned()], |s| {
            s.store.add_member(group, thing, now)?;
            Ok(())
        })
    }

    /// RemoveThingFromThingGroup.
    pub fn remove_thing_from_thing_group(
        &mut self,
        now: Timestamp,
        group: &str,
        thing: &str,
    ) -> Result<Changed<()>, ServiceError> {
        if self.store.get_group(group)?.is_none() {
            return Err(ServiceError::not_found(format_args!("thing group {group}")));
        }
        self.membership_change(now, &[thing.to_owned()], |s| {
            s.store.remove_member(group, thing)?;
            Ok(())
        })
    }

    /// AssociateTargetsWithJob: adds group (or thing) targets to an IN_PROGRESS
    /// CONTINUOUS job; things they reach get an execution.
    pub fn associate_targets_with_job(
        &mut self,
        now: Timestamp,
        job_id: &str,
        targets: &[String],
        comment: Option<String>,
    ) -> Result<Changed<()>, ServiceError> {
        validate::text("comment", comment.as_deref())?;
        let mut job = self.job_or_404(job_id)?;
        if job.target_selection != TargetSelection::Continuous
            || job.status != JobStatus::InProgress
        {
            return Err(ServiceError::InvalidRequest(format!(
                "job {job_id} is not an IN_PROGRESS CONTINUOUS job"
            )));
        }
        let affected = self.resolve_targets(targets)?;
        self.membership_change(now, &affected, |s| {
            for t in targets {
                if !job.targets.contains(t) {
                    job.targets.push(t.clone());
                }
            }
            if comment.is_some() {
                job.comment = comment;
            }
            job.last_updated_at = now;
            s.store.update_job(&job)?;
            Ok(())
        })
    }

    /// Every ARN through which a job can reach `thing`: its own, its groups' and (when
    /// child groups count) their ancestors'.
    fn target_arns_of(&self, thing: &str) -> Result<BTreeSet<String>, ServiceError> {
        let acct = &self.cfg.account;
        let mut arns = BTreeSet::from([acct.thing_arn(thing)]);
        for g in self.store.groups_of_thing(thing)? {
            if self.cfg.include_child_groups {
                for a in self.store.ancestors_of_group(&g)? {
                    arns.insert(acct.group_arn(&a));
                }
            }
            arns.insert(acct.group_arn(&g));
        }
        Ok(arns)
    }

    /// IN_PROGRESS CONTINUOUS jobs that target `thing` now.
    fn continuous_jobs_of(&self, thing: &str) -> Result<BTreeSet<String>, ServiceError> {
        let mut jobs = BTreeSet::new();
        for arn in self.target_arns_of(thing)? {
            for id in self.store.jobs_targeting(&arn, JobStatus::InProgress)? {
                let continuous = self
                    .store
                    .get_job(&id)?
                    .is_some_and(|j| j.target_selection == TargetSelection::Continuous);
                if continuous {
                    jobs.insert(id);
                }
            }
        }
        Ok(jobs)
    }

    /// Runs a registry change that may change which continuous jobs target `things`, then
    /// queues executions for new targets and removes pending ones of former targets.
    fn membership_change(
        &self,
        now: Timestamp,
        things: &[String],
        change: impl FnOnce(&Self) -> Result<(), ServiceError>,
    ) -> Result<Changed<()>, ServiceError> {
        self.store.atomic(|store| {
            let mut targeted_before = BTreeMap::new();
            for t in things {
                targeted_before.insert(t.clone(), self.continuous_jobs_of(t)?);
            }
            let before = self.snapshot(things)?;
            change(self)?;
            for (thing, old) in &targeted_before {
                let new = self.continuous_jobs_of(thing)?;
                for job_id in new.difference(old) {
                    let Some(job) = store.get_job(job_id)? else {
                        continue;
                    };
                    // A joiner gets its execution at once (the rollout rate only paces
                    // the initial targets), but only inside the schedule and its windows.
                    let lc = Lifecycle::of_stored(job_id, &job.configs);
                    match lc.phase(now) {
                        Phase::Open => {
                            self.create_executions(now, &job, std::slice::from_ref(thing))?;
                        }
                        Phase::BeforeStart | Phase::BetweenWindows => {
                            store.add_rollout(job_id, std::slice::from_ref(thing))?;
                        }
                        Phase::Ended => {}
                    }
                }
                for job_id in old.difference(&new) {
                    store.remove_rollout(job_id, thing)?;
                    if let Some(mut rec) = store.get_execution(job_id, thing, None)? {
                        if rec.exec.status.is_pending() {
                            self.apply_service_action(now, &mut rec, ServiceAction::Remove, None)?;
                        }
                    }
                }
            }
            let messages = self.notifications(now, &before)?;
            Ok(Changed {
                value: (),
                messages,
            })
        })
    }

    /// CreateJobTemplate (custom). A duplicate id is `ConflictException`, as in AWS.
    pub fn create_job_template(
        &mut self,
        now: Timestamp,
        template_id: &str,
        description: String,
        document: Option<String>,
        document_source: Option<String>,
        configs: JobConfigs,
    ) -> Result<JobTemplateRecord, ServiceError> {
        validate::id("jobTemplateId", template_id)?;
        validate::text("description", Some(&description))?;
        if let Some(d) = &document {
            validate::document(d)?;
        }
        if self.store.get_template(template_id)?.is_some() {
            return Err(ServiceError::Conflict {
                message: format!("job template {template_id} already exists"),
                resource_id: template_id.to_owned(),
            });
        }
        let t = JobTemplateRecord {
            template_id: template_id.to_owned(),
            description,
            document,
            document_source,
            configs,
            created_at: now,
        };
        self.store.insert_template(&t)?;
        Ok(t)
    }

    pub fn delete_job_template(&mut self, template_id: &str) -> Result<(), ServiceError> {
        if self.store.delete_template(template_id)? {
            Ok(())
        } else {
            Err(ServiceError::not_found(format_args!(
                "job template {template_id}"
            )))
        }
    }
}

impl JobsService {
    pub fn describe_thing(&self, name: &str) -> Result<ThingRecord, ServiceError> {
        self.store
            .get_thing(name)?
            .ok_or_else(|| ServiceError::not_found(format_args!("thing {name}")))
    }

    /// The group and its ancestors, root first.
    pub fn describe_thing_group(
        &self,
        name: &str,
    ) -> Result<(ThingGroupRecord, Vec<String>), ServiceError> {
        let g = self
            .store
            .get_group(name)?
            .ok_or_else(|| ServiceError::not_found(format_args!("thing group {name}")))?;
        let ancestors = self.store.ancestors_of_group(name)?;
        Ok((g, ancestors))
    }

    pub fn list_things_in_thing_group(
        &self,
        group: &str,
        recursive: bool,
    ) -> Result<Vec<String>, ServiceError> {
        if self.store.get_group(group)?.is_none() {
            return Err(ServiceError::not_found(format_args!("thing group {group}")));
        }
        Ok(self.store.things_in_group(group, recursive)?)
    }

    pub fn list_thing_groups_for_thing(&self, thing: &str) -> Result<Vec<String>, ServiceError> {
        if self.store.get_thing(thing)?.is_none() {
            return Err(ServiceError::not_found(format_args!("thing {thing}")));
        }
        Ok(self.store.groups_of_thing(thing)?)
    }

    pub fn describe_job_template(&self, id: &str) -> Result<JobTemplateRecord, ServiceError> {
        self.store
            .get_template(id)?
            .ok_or_else(|| ServiceError::not_found(format_args!("job template {id}")))
    }
}
