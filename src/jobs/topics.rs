//! The AWS IoT Jobs device topics: builders for every topic and a parser that turns a topic
//! string into a typed [`JobsTopic`] (thing name, operation, job id, request or reply).
//!
//! Owns the topic grammar and the thing-name and job-id patterns. It must not touch payloads
//! (see `wire`) and must never use `rumqttc::matches`, which refuses every `$` topic.
//!
//! Grammar (`T` = thing name, `J` = job id), all under `$aws/things/T/jobs/`:
//! `get`, `start-next`, `J/get` (`J` may be `$next`), `J/update`, each with optional
//! `/accepted` or `/rejected`; `notify`; `notify-next`.

use std::fmt;

/// The literal job id that means "the next pending execution" (describe only).
pub const NEXT_JOB_ID: &str = "$next";
/// AWS limit on thing names (`[a-zA-Z0-9:_-]+`).
pub const MAX_THING_NAME_LEN: usize = 128;
/// AWS limit on job ids (`[a-zA-Z0-9_-]+`).
pub const MAX_JOB_ID_LEN: usize = 64;
/// The filter the local service subscribes to so it sees every device request.
pub const SERVICE_FILTER: &str = "$aws/things/+/jobs/#";

const PREFIX: &str = "$aws/things/";

/// Why a thing name or job id is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    #[error("invalid thing name {0:?}: 1-128 characters from [a-zA-Z0-9:_-]")]
    InvalidThingName(String),
    #[error("invalid job id {0:?}: 1-64 characters from [a-zA-Z0-9_-]")]
    InvalidJobId(String),
}

/// True when `name` matches AWS's thing-name pattern `[a-zA-Z0-9:_-]{1,128}`.
pub fn is_valid_thing_name(name: &str) -> bool {
    (1..=MAX_THING_NAME_LEN).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b':' | b'_' | b'-'))
}

/// True when `id` matches AWS's job-id pattern `[a-zA-Z0-9_-]{1,64}` (`$next` is not a job id).
pub fn is_valid_job_id(id: &str) -> bool {
    (1..=MAX_JOB_ID_LEN).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
}

pub fn validate_thing_name(name: &str) -> Result<(), TopicError> {
    if is_valid_thing_name(name) {
        Ok(())
    } else {
        Err(TopicError::InvalidThingName(name.to_owned()))
    }
}

pub fn validate_job_id(id: &str) -> Result<(), TopicError> {
    if is_valid_job_id(id) {
        Ok(())
    } else {
        Err(TopicError::InvalidJobId(id.to_owned()))
    }
}

/// Which execution a DescribeJobExecution addresses.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum JobRef {
    /// `$next`: the execution start-next would pick, without changing anything.
    Next,
    Id(String),
}

impl JobRef {
    pub fn as_str(&self) -> &str {
        match self {
            JobRef::Next => NEXT_JOB_ID,
            JobRef::Id(id) => id,
        }
    }
}

/// A device API operation (the part of the topic that names the request).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Operation {
    /// `jobs/get`: GetPendingJobExecutions.
    GetPending,
    /// `jobs/start-next`: StartNextPendingJobExecution.
    StartNext,
    /// `jobs/{J}/get`: DescribeJobExecution.
    Describe(JobRef),
    /// `jobs/{J}/update`: UpdateJobExecution.
    Update(String),
}

impl Operation {
    /// The job id in the topic, if the operation has one (`$next` included).
    pub fn job_id(&self) -> Option<&str> {
        match self {
            Operation::GetPending | Operation::StartNext => None,
            Operation::Describe(r) => Some(r.as_str()),
            Operation::Update(id) => Some(id),
        }
    }

    fn suffix(&self) -> String {
        match self {
            Operation::GetPending => "get".to_owned(),
            Operation::StartNext => "start-next".to_owned(),
            Operation::Describe(r) => format!("{}/get", r.as_str()),
            Operation::Update(id) => format!("{id}/update"),
        }
    }
}

/// What a topic carries.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TopicKind {
    /// A device request (device → service).
    Request(Operation),
    /// The success reply to a request (service → device).
    Accepted(Operation),
    /// The error reply to a request (service → device).
    Rejected(Operation),
    /// `notify`: JobExecutionsChanged.
    Notify,
    /// `notify-next`: NextJobExecutionChanged.
    NotifyNext,
}

/// A parsed Jobs topic.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct JobsTopic {
    pub thing_name: String,
    pub kind: TopicKind,
}

impl JobsTopic {
    pub fn new(thing_name: impl Into<String>, kind: TopicKind) -> Self {
        JobsTopic {
            thing_name: thing_name.into(),
            kind,
        }
    }

    /// The topic string.
    pub fn topic(&self) -> String {
        self.to_string()
    }

    /// For a request, the topic of its accepted reply; `None` for anything else.
    pub fn accepted(&self) -> Option<JobsTopic> {
        match &self.kind {
            TopicKind::Request(op) => Some(JobsTopic::new(
                self.thing_name.clone(),
                TopicKind::Accepted(op.clone()),
            )),
            _ => None,
        }
    }

    /// For a request, the topic of its rejected reply; `None` for anything else.
    pub fn rejected(&self) -> Option<JobsTopic> {
        match &self.kind {
            TopicKind::Request(op) => Some(JobsTopic::new(
                self.thing_name.clone(),
                TopicKind::Rejected(op.clone()),
            )),
            _ => None,
        }
    }
}

impl fmt::Display for JobsTopic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PREFIX}{}/jobs/", self.thing_name)?;
        match &self.kind {
            TopicKind::Request(op) => f.write_str(&op.suffix()),
            TopicKind::Accepted(op) => write!(f, "{}/accepted", op.suffix()),
            TopicKind::Rejected(op) => write!(f, "{}/rejected", op.suffix()),
            TopicKind::Notify => f.write_str("notify"),
            TopicKind::NotifyNext => f.write_str("notify-next"),
        }
    }
}

/// The thing name of any topic under `$aws/things/{thing}/jobs/`, recognised operation or not.
/// The service uses it to answer unknown operations with `InvalidTopic` on `<topic>/rejected`.
pub fn jobs_thing(topic: &str) -> Option<&str> {
    let rest = topic.strip_prefix(PREFIX)?;
    let (thing, rest) = rest.split_once('/')?;
    let rest = rest.strip_prefix("jobs")?;
    if (rest.is_empty() || rest.starts_with('/')) && is_valid_thing_name(thing) {
        Some(thing)
    } else {
        None
    }
}

/// Parse a Jobs device topic. `None` for anything that is not exactly one of the topics in the
/// module grammar, or whose thing name or job id breaks AWS's patterns.
pub fn parse(topic: &str) -> Option<JobsTopic> {
    let rest = topic.strip_prefix(PREFIX)?;
    let mut levels = rest.split('/');
    let thing = levels.next()?;
    if !is_valid_thing_name(thing) || levels.next()? != "jobs" {
        return None;
    }
    let levels: Vec<&str> = levels.collect();
    let kind = match levels.as_slice() {
        ["notify"] => TopicKind::Notify,
        ["notify-next"] => TopicKind::NotifyNext,
        [op] => TopicKind::Request(fixed_op(op)?),
        [op, reply @ ("accepted" | "rejected")] if fixed_op(op).is_some() => {
            reply_kind(fixed_op(op)?, reply)
        }
        [job, verb] => TopicKind::Request(job_op(job, verb)?),
        [job, verb, reply @ ("accepted" | "rejected")] => reply_kind(job_op(job, verb)?, reply),
        _ => return None,
    };
    Some(JobsTopic::new(thing, kind))
}

fn fixed_op(level: &str) -> Option<Operation> {
    match level {
        "get" => Some(Operation::GetPending),
        "start-next" => Some(Operation::StartNext),
        _ => None,
    }
}

fn job_op(job: &str, verb: &str) -> Option<Operation> {
    match verb {
        "get" if job == NEXT_JOB_ID => Some(Operation::Describe(JobRef::Next)),
        "get" if is_valid_job_id(job) => Some(Operation::Describe(JobRef::Id(job.to_owned()))),
        "update" if is_valid_job_id(job) => Some(Operation::Update(job.to_owned())),
        _ => None,
    }
}

fn reply_kind(op: Operation, reply: &str) -> TopicKind {
    if reply == "accepted" {
        TopicKind::Accepted(op)
    } else {
        TopicKind::Rejected(op)
    }
}

// Builders: the strings devices and the service publish to. They do not validate; callers
// hold names that were validated once (configuration, topic parsing, control plane input).

fn base(thing: &str) -> String {
    format!("{PREFIX}{thing}/jobs")
}

/// `$aws/things/T/jobs/get`
pub fn get_pending(thing: &str) -> String {
    format!("{}/get", base(thing))
}
/// `$aws/things/T/jobs/start-next`
pub fn start_next(thing: &str) -> String {
    format!("{}/start-next", base(thing))
}
/// `$aws/things/T/jobs/J/get` (`J` may be [`NEXT_JOB_ID`])
pub fn describe(thing: &str, job_id: &str) -> String {
    format!("{}/{job_id}/get", base(thing))
}
/// `$aws/things/T/jobs/J/update`
pub fn update(thing: &str, job_id: &str) -> String {
    format!("{}/{job_id}/update", base(thing))
}
/// `$aws/things/T/jobs/notify`
pub fn notify(thing: &str) -> String {
    format!("{}/notify", base(thing))
}
/// `$aws/things/T/jobs/notify-next`
pub fn notify_next(thing: &str) -> String {
    format!("{}/notify-next", base(thing))
}
/// `<request>/accepted`
pub fn accepted(request_topic: &str) -> String {
    format!("{request_topic}/accepted")
}
/// `<request>/rejected`
pub fn rejected(request_topic: &str) -> String {
    format!("{request_topic}/rejected")
}

/// The filters a device subscribes to before its first request (reference §9.1): both
/// notifications and the replies of every operation, job ids wildcarded.
pub fn device_filters(thing: &str) -> Vec<String> {
    let b = base(thing);
    vec![
        format!("{b}/notify-next"),
        format!("{b}/notify"),
        format!("{b}/start-next/accepted"),
        format!("{b}/start-next/rejected"),
        format!("{b}/get/accepted"),
        format!("{b}/get/rejected"),
        format!("{b}/+/get/accepted"),
        format!("{b}/+/get/rejected"),
        format!("{b}/+/update/accepted"),
        format!("{b}/+/update/rejected"),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(kind: TopicKind) -> JobsTopic {
        JobsTopic::new("dev-1", kind)
    }

    fn id(s: &str) -> String {
        s.to_owned()
    }

    #[test]
    fn every_topic_round_trips_through_builder_and_parser() {
        use Operation::*;
        let ops = [
            GetPending,
            StartNext,
            Describe(JobRef::Next),
            Describe(JobRef::Id(id("job-1"))),
            Update(id("job_2")),
        ];
        let mut cases = vec![
            (
                t(TopicKind::Notify),
                "$aws/things/dev-1/jobs/notify".to_owned(),
            ),
            (
                t(TopicKind::NotifyNext),
                "$aws/things/dev-1/jobs/notify-next".to_owned(),
            ),
        ];
        for op in ops {
            let req = match &op {
                GetPending => get_pending("dev-1"),
                StartNext => start_next("dev-1"),
                Describe(r) => describe("dev-1", r.as_str()),
                Update(j) => update("dev-1", j),
            };
            cases.push((t(TopicKind::Request(op.clone())), req.clone()));
            cases.push((t(TopicKind::Accepted(op.clone())), accepted(&req)));
            cases.push((t(TopicKind::Rejected(op.clone())), rejected(&req)));
        }
        assert_eq!(cases.len(), 17);
        for (parsed, s) in cases {
            assert_eq!(parsed.topic(), s);
            assert_eq!(parse(&s), Some(parsed), "{s}");
        }
    }

    #[test]
    fn exact_aws_strings() {
        assert_eq!(get_pending("T"), "$aws/things/T/jobs/get");
        assert_eq!(start_next("T"), "$aws/things/T/jobs/start-next");
        assert_eq!(describe("T", "$next"), "$aws/things/T/jobs/$next/get");
        assert_eq!(
            accepted(&update("T", "J")),
            "$aws/things/T/jobs/J/update/accepted"
        );
        assert_eq!(notify_next("T"), "$aws/things/T/jobs/notify-next");
        assert_eq!(notify("T"), "$aws/things/T/jobs/notify");
    }

    #[test]
    fn reply_topics_of_a_request() {
        let req = parse("$aws/things/a:b/jobs/j/update").unwrap();
        assert_eq!(
            req.accepted().unwrap().topic(),
            "$aws/things/a:b/jobs/j/update/accepted"
        );
        assert_eq!(
            req.rejected().unwrap().topic(),
            "$aws/things/a:b/jobs/j/update/rejected"
        );
        assert_eq!(parse("$aws/things/a/jobs/notify").unwrap().accepted(), None);
    }

    #[test]
    fn job_ids_that_look_like_operations_are_job_ids() {
        assert_eq!(
            parse("$aws/things/T/jobs/get/get").unwrap().kind,
            TopicKind::Request(Operation::Describe(JobRef::Id(id("get"))))
        );
        assert_eq!(
            parse("$aws/things/T/jobs/notify/update/rejected")
                .unwrap()
                .kind,
            TopicKind::Rejected(Operation::Update(id("notify")))
        );
        assert_eq!(
            parse("$aws/things/T/jobs/start-next/get/accepted")
                .unwrap()
                .kind,
            TopicKind::Accepted(Operation::Describe(JobRef::Id(id("start-next"))))
        );
    }

    #[test]
    fn malformed_topics_are_refused() {
        for s in [
            "",
            "$aws/things",
            "$aws/things/T",
            "$aws/things/T/jobs",
            "$aws/things/T/jobs/",
            "$aws/things/T/jobs/unknown",
            "$aws/things/T/jobs/get/other",
            "$aws/things/T/jobs/notify/accepted",
            "$aws/things/T/jobs/notify-next/rejected",
            "$aws/things/T/jobs/J/delete",
            "$aws/things/T/jobs/J/get/accepted/x",
            "$aws/things/T/jobs/$next/update",
            "$aws/things/T/jobs/$nex/get",
            "$aws/things/T/jobs/a.b/get",
            "$aws/things/T/jobs//get",
            "$aws/things//jobs/get",
            "$aws/things/T T/jobs/get",
            "$aws/things/T/shadow/get",
            "aws/things/T/jobs/get",
            "$aws/things/+/jobs/get",
            "$aws/things/T/jobs/+/update",
            "$aws/things/T/jobs/#",
        ] {
            assert_eq!(parse(s), None, "{s:?}");
        }
        let long_job = "j".repeat(65);
        assert_eq!(parse(&update("T", &long_job)), None);
        assert!(parse(&update("T", &"j".repeat(64))).is_some());
        let long_thing = "t".repeat(129);
        assert_eq!(parse(&start_next(&long_thing)), None);
        assert!(parse(&start_next(&"t".repeat(128))).is_some());
    }

    #[test]
    fn name_patterns() {
        assert!(is_valid_thing_name("Gate_way:01-a"));
        assert!(!is_valid_thing_name(""));
        assert!(!is_valid_thing_name("a/b"));
        assert!(!is_valid_thing_name("a+b"));
        assert!(!is_valid_thing_name("é"));
        assert!(is_valid_job_id("Job_1-x"));
        assert!(!is_valid_job_id("job:1"));
        assert!(!is_valid_job_id("$next"));
        assert!(validate_job_id("").is_err());
        assert_eq!(
            validate_thing_name("x y"),
            Err(TopicError::InvalidThingName("x y".into()))
        );
    }

    #[test]
    fn jobs_thing_finds_the_thing_of_unknown_operations() {
        assert_eq!(jobs_thing("$aws/things/T/jobs/what/ever"), Some("T"));
        assert_eq!(jobs_thing("$aws/things/T/jobs"), Some("T"));
        assert_eq!(jobs_thing("$aws/things/T/jobsx"), None);
        assert_eq!(jobs_thing("$aws/things/T/shadow/get"), None);
        assert_eq!(jobs_thing("$aws/things/+/jobs/get"), None);
    }

    #[test]
    fn device_filters_cover_every_reply_and_notification() {
        let filters = device_filters("T");
        let covered = |topic: &str| {
            filters.iter().any(|f| {
                let (fl, tl): (Vec<_>, Vec<_>) =
                    (f.split('/').collect(), topic.split('/').collect());
                fl.len() == tl.len() && fl.iter().zip(&tl).all(|(a, b)| *a == "+" || a == b)
            })
        };
        for s in [
            notify("T"),
            notify_next("T"),
            accepted(&get_pending("T")),
            rejected(&start_next("T")),
            accepted(&describe("T", "$next")),
            rejected(&describe("T", "j")),
            accepted(&update("T", "j")),
            rejected(&update("T", "j")),
        ] {
            assert!(covered(&s), "{s}");
        }
        assert!(!covered(&get_pending("T")), "requests are not subscribed");
    }
}
