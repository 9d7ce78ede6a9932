//! Engine transitions without I/O: every input is fed by hand and every action checked.

use std::time::Duration;

use serde_json::{json, Value};

use super::*;
use crate::jobs::document::HostFacts;
use crate::jobs::runner::{StepOutcome, Termination};

const THING: &str = "dev-1";
const PREFIX: &str = "$aws/things/dev-1/jobs";

fn host() -> HostFacts {
    HostFacts {
        operating_system: Some("debian".into()),
        operating_system_version: Some("12".into()),
        architecture: "x86_64".into(),
    }
}

fn config() -> EngineConfig {
    EngineConfig::new(THING, host(), 42)
}

fn two_steps() -> Value {
    json!({
        "version": "1.0",
        "steps": [
            {"action": {"name": "A", "type": "runCommand", "input": {"command": "true"}}},
            {"action": {"name": "B", "type": "runCommand", "input": {"command": "true"}}}
        ]
    })
}

fn outcome(termination: Termination) -> StepOutcome {
    StepOutcome {
        termination,
        stdout_tail: String::new(),
        stderr_tail: String::new(),
        stderr_seen: false,
        stderr_lines: 0,
        pgid: Some(4242),
    }
}

fn ok() -> StepOutcome {
    outcome(Termination::Exited(0))
}

/// A published message, decoded.
#[derive(Debug, Clone)]
struct Sent {
    topic: String,
    body: Value,
}

impl Sent {
    fn token(&self) -> String {
        self.body["clientToken"].as_str().unwrap().to_string()
    }
}

fn published(actions: &[Action]) -> Vec<Sent> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Publish { topic, payload } => Some(Sent {
                topic: topic.clone(),
                body: serde_json::from_slice(payload).unwrap(),
            }),
            _ => None,
        })
        .collect()
}

fn only_publish(actions: &[Action]) -> Sent {
    let sent = published(actions);
    assert_eq!(sent.len(), 1, "expected one publish in {actions:#?}");
    sent[0].clone()
}

fn started_steps(actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::StartStep(s) => Some(s.step.label.clone()),
            _ => None,
        })
        .collect()
}

fn armed(actions: &[Action], kind: TimerKind) -> Option<(TimerId, Duration)> {
    actions.iter().find_map(|a| match a {
        Action::ArmTimer { id, after } if id.kind == kind => Some((*id, *after)),
        _ => None,
    })
}

fn kills(actions: &[Action]) -> usize {
    actions
        .iter()
        .filter(|a| matches!(a, Action::KillStep { .. }))
        .count()
}

fn msg(topic: &str, body: Value) -> Input {
    Input::Message {
        topic: format!("{PREFIX}/{topic}"),
        payload: serde_json::to_vec(&body).unwrap(),
    }
}

fn execution(job: &str, number: i64, version: i64, status: &str, doc: Value) -> Value {
    json!({
        "jobId": job, "status": status, "versionNumber": version,
        "executionNumber": number, "jobDocument": doc
    })
}

/// Drives an engine through connect and start-next; returns it with the first step running
/// and the IN_PROGRESS update in flight.
struct Run {
    engine: Engine,
    /// The last update published and not yet answered.
    update: Sent,
}

fn connect(engine: &mut Engine) -> Sent {
    let actions = engine.handle(Input::Connected);
    assert!(
        matches!(&actions[0], Action::Subscribe(f) if f.contains(&format!("{PREFIX}/notify-next")))
    );
    let sent = only_publish(&actions);
    assert_eq!(sent.topic, format!("{PREFIX}/start-next"));
    sent
}

fn start_job(cfg: EngineConfig, job: &str, doc: Value) -> Run {
    let mut engine = Engine::new(cfg);
    let start = connect(&mut engine);
    let actions = engine.handle(msg(
        "start-next/accepted",
        json!({"clientToken": start.token(), "timestamp": 1,
               "execution": execution(job, 1, 2, "IN_PROGRESS", doc)}),
    ));
    let update = only_publish(&actions);
    Run { engine, update }
}

impl Run {
    fn accept(&mut self, version: i64) -> Vec<Action> {
        let job = self.update.topic.split('/').nth(4).unwrap().to_string();
        let actions = self.engine.handle(msg(
            &format!("{job}/update/accepted"),
            json!({"clientToken": self.update.token(), "timestamp": 2,
                   "executionState": {"status": self.update.body["status"], "versionNumber": version}}),
        ));
        self.take_update(&actions);
        actions
    }

    fn reject(&mut self, code: &str, state: Option<Value>) -> Vec<Action> {
        let job = self.update.topic.split('/').nth(4).unwrap().to_string();
        let mut body = json!({"clientToken": self.update.token(), "timestamp": 2, "code": code, "message": "no"});
        if let Some(state) = state {
            body["executionState"] = state;
        }
        let actions = self
            .engine
            .handle(msg(&format!("{job}/update/rejected"), body));
        self.take_update(&actions);
        actions
    }

    /// Remembers a newly published update as the one in flight.
    fn take_update(&mut self, actions: &[Action]) {
        if let Some(sent) = published(actions)
            .into_iter()
            .find(|s| s.topic.ends_with("/update"))
        {
            self.update = sent;
        }
    }

    fn feed(&mut self, input: Input) -> Vec<Action> {
        let actions = self.engine.handle(input);
        self.take_update(&actions);
        actions
    }

    /// Fires the currently armed timer of `kind`.
    fn fire(&mut self, kind: TimerKind) -> Vec<Action> {
        let id = self
            .engine
            .state()
            .timers
            .armed_id(kind)
            .unwrap_or_else(|| panic!("{kind:?} is not armed"));
        self.feed(Input::TimerFired(id))
    }
}

#[test]
fn connect_subscribes_first_then_asks_start_next_with_a_token() {
    let mut cfg = config();
    cfg.step_timeout_minutes = 20;
    let mut engine = Engine::new(cfg);
    let actions = engine.handle(Input::Connected);
    let Action::Subscribe(filters) = &actions[0] else {
        panic!("first action must subscribe: {actions:#?}");
    };
    for want in [
        "notify-next",
        "notify",
        "start-next/accepted",
        "start-next/rejected",
        "+/update/accepted",
        "+/update/rejected",
        "+/get/accepted",
        "+/get/rejected",
    ] {
        assert!(filters.contains(&format!("{PREFIX}/{want}")), "{want}");
    }
    let sent = only_publish(&actions);
    assert_eq!(sent.topic, format!("{PREFIX}/start-next"));
    assert_eq!(sent.body["stepTimeoutInMinutes"], 20);
    assert!(sent.token().len() <= 64);
    assert_eq!(
        armed(&actions, TimerKind::Reply(Slot::StartNext))
            .unwrap()
            .1,
        Duration::from_secs(10)
    );
}

#[test]
fn nothing_is_published_while_disconnected() {
    let mut engine = Engine::new(config());
    let actions = engine.handle(msg(
        "notify-next",
        json!({"timestamp": 1,
        "execution": execution("j1", 1, 1, "QUEUED", two_steps())}),
    ));
    assert!(published(&actions).is_empty());
}

#[test]
fn a_job_runs_in_progress_first_then_steps_then_succeeded() {
    let mut run = start_job(config(), "j1", two_steps());
    let first = &run.update;
    assert_eq!(first.topic, format!("{PREFIX}/j1/update"));
    assert_eq!(first.body["status"], "IN_PROGRESS");
    assert_eq!(first.body["expectedVersion"], 2);
    assert_eq!(first.body["executionNumber"], 1);
    assert_eq!(first.body["statusDetails"], json!({"step": "1/2 A"}));

    let actions = run.accept(3);
    assert!(started_steps(&actions).is_empty(), "step started already");
    // Progress for step 2 waits for the cooldown of the first IN_PROGRESS update.
    let actions = run.feed(Input::StepFinished(ok()));
    assert_eq!(started_steps(&actions), ["2/2 B"]);
    assert!(published(&actions).is_empty(), "progress is rate-limited");
    assert!(run
        .engine
        .state()
        .timers
        .is_armed(TimerKind::ProgressCooldown));
    // The step ends before the cooldown: the terminal status goes out at once and
    // supersedes the pending progress.
    let actions = run.feed(Input::StepFinished(ok()));
    let sent = only_publish(&actions);
    assert_eq!(sent.body["status"], "SUCCEEDED");
    assert_eq!(sent.body["expectedVersion"], 3);
    assert_eq!(
        sent.body["statusDetails"]["reason"],
        "all 2 steps succeeded"
    );
    assert!(sent.body.get("stepTimeoutInMinutes").is_none());

    // Delivered: the job is forgotten and the next one is asked for.
    let actions = run.accept(4);
    assert!(run.engine.current_job().is_none());
    let next = only_publish(&actions);
    assert_eq!(next.topic, format!("{PREFIX}/start-next"));
}

#[test]
fn the_in_progress_update_is_published_before_the_first_step_starts() {
    let mut engine = Engine::new(config());
    let start = connect(&mut engine);
    let actions = engine.handle(msg(
        "start-next/accepted",
        json!({"clientToken": start.token(), "timestamp": 1,
               "execution": execution("j1", 1, 2, "IN_PROGRESS", two_steps())}),
    ));
    let publish_at = actions
        .iter()
        .position(|a| matches!(a, Action::Publish { .. }));
    let start_at = actions
        .iter()
        .position(|a| matches!(a, Action::StartStep(_)));
    assert!(publish_at.unwrap() < start_at.unwrap(), "{actions:#?}");
    let Some(Action::StartStep(step)) = actions.get(start_at.unwrap()) else {
        unreachable!()
    };
    assert_eq!((step.job_id.as_str(), step.execution_number), ("j1", 1));
}

fn three_steps() -> Value {
    json!({"version": "1.0", "steps": [
        {"action": {"name": "A", "type": "runCommand", "input": {"command": "true"}}},
        {"action": {"name": "B", "type": "runCommand", "input": {"command": "true"}}},
        {"action": {"name": "C", "type": "runCommand", "input": {"command": "true"}}}
    ]})
}

#[test]
fn progress_waiting_for_the_cooldown_is_sent_when_it_ends() {
    let mut run = start_job(config(), "j1", three_steps());
    run.accept(3);
    run.feed(Input::StepFinished(ok()));
    let actions = run.fire(TimerKind::ProgressCooldown);
    let sent = only_publish(&actions);
    assert_eq!(sent.body["status"], "IN_PROGRESS");
    assert_eq!(sent.body["statusDetails"], json!({"step": "2/3 B"}));
    assert_eq!(sent.body["expectedVersion"], 3);
}

#[test]
fn duplicate_deliveries_are_ignored() {
    let mut run = start_job(config(), "j1", two_steps());
    let start_token = "irrelevant";
    // notify-next repeating the running job: nothing happens.
    let actions = run.feed(msg(
        "notify-next",
        json!({"timestamp": 3,
        "execution": execution("j1", 1, 2, "IN_PROGRESS", two_steps())}),
    ));
    assert!(published(&actions).is_empty() && started_steps(&actions).is_empty());
    // A replayed start-next reply (token no longer pending) starts nothing either.
    let actions = run.feed(msg(
        "start-next/accepted",
        json!({"clientToken": start_token,
        "timestamp": 3, "execution": execution("j1", 1, 2, "IN_PROGRESS", two_steps())}),
    ));
    assert!(published(&actions).is_empty() && started_steps(&actions).is_empty());

    // Finish the job; the same execution offered again afterwards is not run again.
    run.accept(3);
    run.feed(Input::StepFinished(ok()));
    run.feed(Input::StepFinished(ok()));
    let actions = run.accept(5);
    let next = only_publish(&actions);
    let actions = run.feed(msg(
        "start-next/accepted",
        json!({"clientToken": next.token(),
        "timestamp": 4, "execution": execution("j1", 1, 5, "IN_PROGRESS", two_steps())}),
    ));
    assert!(started_steps(&actions).is_empty(), "{actions:#?}");
    assert!(published(&actions).is_empty());
    let actions = run.feed(msg(
        "notify-next",
        json!({"timestamp": 5,
        "execution": execution("j1", 1, 5, "IN_PROGRESS", two_steps())}),
    ));
    assert!(
        published(&actions).is_empty(),
        "a finished execution is no work"
    );
    // A new execution of the same job (a retry) is new work.
    let actions = run.feed(msg(
        "notify-next",
        json!({"timestamp": 6,
        "execution": execution("j1", 2, 1, "QUEUED", two_steps())}),
    ));
    assert_eq!(only_publish(&actions).topic, format!("{PREFIX}/start-next"));
}

#[test]
fn notify_next_while_idle_triggers_start_next_not_a_direct_start() {
    let mut engine = Engine::new(config());
    let start = connect(&mut engine);
    let actions = engine.handle(msg(
        "start-next/accepted",
        json!({"clientToken": start.token(), "timestamp": 1}),
    ));
    assert!(published(&actions).is_empty());
    assert!(
        armed(&actions, TimerKind::Poll).is_some(),
        "idle poll armed"
    );
    let actions = engine.handle(msg(
        "notify-next",
        json!({"timestamp": 2,
        "execution": execution("j9", 1, 1, "QUEUED", two_steps())}),
    ));
    assert!(started_steps(&actions).is_empty());
    let sent = only_publish(&actions);
    assert_eq!(sent.topic, format!("{PREFIX}/start-next"));
    assert_ne!(
        sent.token(),
        start.token(),
        "every request has a fresh token"
    );
}

#[test]
fn reconnect_resubscribes_resyncs_and_resends_the_pending_update() {
    let mut run = start_job(config(), "j1", two_steps());
    let old = run.update.clone();
    let actions = run.feed(Input::Disconnected);
    assert!(published(&actions).is_empty());
    assert!(actions.iter().any(
        |a| matches!(a, Action::CancelTimer(id) if id.kind == TimerKind::Reply(Slot::Update))
    ));
    // The step keeps running offline and its progress queues up.
    let actions = run.feed(Input::StepFinished(ok()));
    assert_eq!(started_steps(&actions), ["2/2 B"]);
    assert!(published(&actions).is_empty());

    let actions = run.feed(Input::Connected);
    assert!(matches!(actions[0], Action::Subscribe(_)));
    let sent = published(&actions);
    let topics: Vec<_> = sent.iter().map(|s| s.topic.as_str()).collect();
    assert_eq!(
        topics,
        [
            format!("{PREFIX}/j1/update"),
            format!("{PREFIX}/start-next")
        ],
        "the outbox is flushed before the resync"
    );
    assert_eq!(sent[0].body["status"], "IN_PROGRESS");
    assert_ne!(sent[0].token(), old.token(), "a resend gets a new token");
    // start-next returns our own job: nothing changes.
    let actions = run.feed(msg(
        "start-next/accepted",
        json!({"clientToken": sent[1].token(),
        "timestamp": 3, "execution": execution("j1", 1, 3, "IN_PROGRESS", two_steps())}),
    ));
    assert!(published(&actions).is_empty() && kills(&actions) == 0);
    assert!(run.engine.current_job().is_some());
}

#[test]
fn reconnect_while_idle_resyncs_with_start_next() {
    let mut engine = Engine::new(config());
    let first = connect(&mut engine);
    engine.handle(Input::Disconnected);
    let second = connect(&mut engine);
    assert_ne!(first.token(), second.token());
    // The reply to the first request is stale now.
    let actions = engine.handle(msg(
        "start-next/accepted",
        json!({"clientToken": first.token(),
        "timestamp": 1, "execution": execution("j1", 1, 2, "IN_PROGRESS", two_steps())}),
    ));
    assert!(started_steps(&actions).is_empty());
}

#[test]
fn reply_timeout_resends_with_a_new_token_and_ignores_the_late_reply() {
    let mut run = start_job(config(), "j1", two_steps());
    let old = run.update.clone();
    let actions = run.fire(TimerKind::Reply(Slot::Update));
    let resent = only_publish(&actions);
    assert_eq!(resent.topic, old.topic);
    assert_ne!(resent.token(), old.token());
    assert_eq!(resent.body["expectedVersion"], old.body["expectedVersion"]);
    assert!(armed(&actions, TimerKind::Reply(Slot::Update)).is_some());
    // The late reply to the first attempt matches nothing.
    let actions = run.engine.handle(msg(
        "j1/update/accepted",
        json!({"clientToken": old.token(), "timestamp": 9}),
    ));
    assert!(
        actions.iter().all(|a| matches!(a, Action::Log(_))),
        "{actions:#?}"
    );
    // A stale firing of the old reply timer is ignored too.
    let stale = TimerId {
        kind: TimerKind::Reply(Slot::Update),
        generation: 1,
    };
    assert!(published(&run.engine.handle(Input::TimerFired(stale))).is_empty());
}

#[test]
fn start_next_reply_timeout_retries_start_next() {
    let mut engine = Engine::new(config());
    let first = connect(&mut engine);
    let id = engine
        .state()
        .timers
        .armed_id(TimerKind::Reply(Slot::StartNext))
        .unwrap();
    let actions = engine.handle(Input::TimerFired(id));
    let again = only_publish(&actions);
    assert_eq!(again.topic, first.topic);
    assert_ne!(again.token(), first.token());
}

#[test]
fn version_mismatch_adopts_the_service_version_and_resends() {
    let mut run = start_job(config(), "j1", two_steps());
    let old = run.update.clone();
    let actions = run.reject(
        "VersionMismatch",
        Some(json!({"status": "IN_PROGRESS", "versionNumber": 7})),
    );
    let resent = only_publish(&actions);
    assert_eq!(resent.body["expectedVersion"], 7);
    assert_eq!(resent.body["status"], "IN_PROGRESS");
    assert_ne!(resent.token(), old.token());
    assert_eq!(kills(&actions), 0);
}

#[test]
fn version_mismatch_showing_our_terminal_status_counts_as_delivered() {
    let mut run = start_job(config(), "j1", two_steps());
    run.accept(3);
    run.feed(Input::StepFinished(ok()));
    let actions = run.feed(Input::StepFinished(outcome(Termination::Exited(2))));
    assert_eq!(only_publish(&actions).body["status"], "FAILED");
    // The accepted reply was lost; the resend finds the status already applied.
    run.fire(TimerKind::Reply(Slot::Update));
    let actions = run.reject(
        "VersionMismatch",
        Some(json!({"status": "FAILED", "versionNumber": 4})),
    );
    assert!(run.engine.current_job().is_none());
    assert_eq!(only_publish(&actions).topic, format!("{PREFIX}/start-next"));
}

#[test]
fn version_mismatch_without_state_asks_the_service_before_resending() {
    let mut run = start_job(config(), "j1", two_steps());
    let actions = run.reject("VersionMismatch", None);
    let ask = only_publish(&actions);
    assert_eq!(ask.topic, format!("{PREFIX}/j1/get"));
    assert_eq!(ask.body["executionNumber"], 1);
    let actions = run.feed(msg(
        "j1/get/accepted",
        json!({"clientToken": ask.token(),
        "timestamp": 3, "execution": execution("j1", 1, 9, "IN_PROGRESS", Value::Null)}),
    ));
    // The held progress goes out once progress updates may be sent again.
    assert!(published(&actions).is_empty());
    let actions = run.fire(TimerKind::ProgressCooldown);
    let resent = only_publish(&actions);
    assert_eq!(resent.topic, format!("{PREFIX}/j1/update"));
    assert_eq!(resent.body["expectedVersion"], 9);
}

#[test]
fn throttling_backs_off_exponentially_with_jitter_then_resends() {
    let mut run = start_job(config(), "j1", two_steps());
    let backoff = run.engine.config().backoff;
    let mut previous = run.update.token();
    for attempt in 1..=4u32 {
        let code = if attempt % 2 == 0 {
            "InternalError"
        } else {
            "RequestThrottled"
        };
        let actions = run.reject(code, None);
        assert!(published(&actions).is_empty(), "no immediate resend");
        let (_, delay) = armed(&actions, TimerKind::Backoff(Slot::Update)).unwrap();
        let full = backoff.base * 2u32.pow(attempt - 1);
        assert!(
            delay >= full / 2 && delay < full,
            "attempt {attempt}: {delay:?}"
        );
        let actions = run.fire(TimerKind::Backoff(Slot::Update));
        let resent = only_publish(&actions);
        assert_ne!(resent.token(), previous);
        previous = resent.token();
    }
    // Success resets nothing else: the job goes on.
    run.accept(3);
    assert!(run.engine.current_job().is_some());
}

#[test]
fn backoff_is_deterministic_for_a_seed() {
    let delays = |seed: u64| {
        let mut cfg = config();
        cfg.seed = seed;
        let mut run = start_job(cfg, "j1", two_steps());
        let actions = run.reject("RequestThrottled", None);
        armed(&actions, TimerKind::Backoff(Slot::Update)).unwrap().1
    };
    assert_eq!(delays(5), delays(5));
}

#[test]
fn start_next_rejections_are_retried_with_backoff() {
    let mut engine = Engine::new(config());
    let start = connect(&mut engine);
    let actions = engine.handle(msg(
        "start-next/rejected",
        json!({"clientToken": start.token(),
        "timestamp": 1, "code": "RequestThrottled", "message": "slow down"}),
    ));
    assert!(published(&actions).is_empty());
    let (id, _) = armed(&actions, TimerKind::Backoff(Slot::StartNext)).unwrap();
    let again = only_publish(&engine.handle(Input::TimerFired(id)));
    assert_eq!(again.topic, format!("{PREFIX}/start-next"));
}

fn assert_revoked_and_silent(run: &mut Run, actions: &[Action]) {
    assert_eq!(kills(actions), 1, "the handler is killed: {actions:#?}");
    assert!(published(actions).is_empty(), "nothing more is sent for it");
    // Its step reports back (killed); still nothing is sent for the job, and the engine
    // looks for the next job.
    let actions = run.feed(Input::StepFinished(outcome(Termination::Cancelled)));
    let sent = published(&actions);
    assert!(sent.iter().all(|s| !s.topic.contains("/j1/")), "{sent:#?}");
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].topic, format!("{PREFIX}/start-next"));
    assert!(run.engine.current_job().is_none());
    assert!(started_steps(&actions).is_empty());
}

#[test]
fn revoked_by_invalid_state_transition() {
    let mut run = start_job(config(), "j1", two_steps());
    let actions = run.reject(
        "InvalidStateTransition",
        Some(json!({"status": "CANCELED", "versionNumber": 4})),
    );
    assert_revoked_and_silent(&mut run, &actions);
}

#[test]
fn revoked_by_terminal_state_reached() {
    let mut run = start_job(config(), "j1", two_steps());
    let actions = run.reject("TerminalStateReached", None);
    assert_revoked_and_silent(&mut run, &actions);
}

#[test]
fn revoked_by_resource_not_found() {
    let mut run = start_job(config(), "j1", two_steps());
    let actions = run.reject("ResourceNotFound", None);
    assert_revoked_and_silent(&mut run, &actions);
}

#[test]
fn revoked_when_notify_next_names_another_job_and_describe_confirms() {
    let mut run = start_job(config(), "j1", two_steps());
    run.accept(3);
    let actions = run.feed(msg(
        "notify-next",
        json!({"timestamp": 3,
        "execution": execution("j2", 1, 1, "QUEUED", two_steps())}),
    ));
    assert_eq!(kills(&actions), 0, "not before the service confirms");
    let ask = only_publish(&actions);
    assert_eq!(ask.topic, format!("{PREFIX}/j1/get"));
    let actions = run.feed(msg(
        "j1/get/accepted",
        json!({"clientToken": ask.token(),
        "timestamp": 4, "execution": execution("j1", 1, 4, "CANCELED", Value::Null)}),
    ));
    assert_revoked_and_silent(&mut run, &actions);
}

#[test]
fn revoked_when_notify_next_shows_nothing_and_describe_is_rejected() {
    let mut run = start_job(config(), "j1", two_steps());
    let actions = run.feed(msg("notify-next", json!({"timestamp": 3})));
    let ask = published(&actions)
        .into_iter()
        .find(|s| s.topic.ends_with("/get"))
        .unwrap();
    let actions = run.feed(msg(
        "j1/get/rejected",
        json!({"clientToken": ask.token(),
        "timestamp": 4, "code": "ResourceNotFound", "message": "deleted"}),
    ));
    assert_revoked_and_silent(&mut run, &actions);
}

#[test]
fn revoked_when_notify_no_longer_lists_the_job() {
    let mut run = start_job(config(), "j1", two_steps());
    run.accept(3);
    let actions = run.feed(msg(
        "notify",
        json!({"timestamp": 3,
        "jobs": {"QUEUED": [{"jobId": "j2", "queuedAt": 1, "lastUpdatedAt": 1,
                              "versionNumber": 1, "executionNumber": 1}]}}),
    ));
    let ask = only_publish(&actions);
    assert_eq!(ask.topic, format!("{PREFIX}/j1/get"));
    let actions = run.feed(msg(
        "j1/get/rejected",
        json!({"clientToken": ask.token(),
        "timestamp": 4, "code": "TerminalStateReached", "message": "timed out"}),
    ));
    assert_revoked_and_silent(&mut run, &actions);
}

#[test]
fn a_notification_listing_the_job_or_a_describe_showing_it_in_progress_changes_nothing() {
    let mut run = start_job(config(), "j1", two_steps());
    run.accept(3);
    let actions = run.feed(msg(
        "notify",
        json!({"timestamp": 3,
        "jobs": {"IN_PROGRESS": [{"jobId": "j1", "queuedAt": 1, "lastUpdatedAt": 1,
                                   "versionNumber": 3, "executionNumber": 1}]}}),
    ));
    assert!(published(&actions).is_empty());
    let actions = run.feed(msg("notify-next", json!({"timestamp": 4})));
    let ask = only_publish(&actions);
    let actions = run.feed(msg(
        "j1/get/accepted",
        json!({"clientToken": ask.token(),
        "timestamp": 4, "execution": execution("j1", 1, 3, "IN_PROGRESS", Value::Null)}),
    ));
    assert_eq!(kills(&actions), 0);
    assert!(run.engine.current_job().is_some());
}

#[test]
fn a_revoked_job_between_steps_is_dropped_without_a_kill() {
    let mut run = start_job(config(), "j1", two_steps());
    // The last step ended and the terminal status is in flight when the job is deleted.
    run.accept(3);
    run.feed(Input::StepFinished(ok()));
    run.feed(Input::StepFinished(ok()));
    let actions = run.reject("ResourceNotFound", None);
    assert_eq!(kills(&actions), 0);
    assert!(run.engine.current_job().is_none());
    assert_eq!(only_publish(&actions).topic, format!("{PREFIX}/start-next"));
}

#[test]
fn an_invalid_document_is_rejected_with_the_field_path() {
    let doc = json!({"version": "1.0", "steps": [
        {"action": {"name": "x", "type": "runHandler"}}
    ]});
    let run = start_job(config(), "bad", doc);
    let sent = &run.update;
    assert_eq!(sent.topic, format!("{PREFIX}/bad/update"));
    assert_eq!(sent.body["status"], "REJECTED");
    let reason = sent.body["statusDetails"]["reason"].as_str().unwrap();
    assert!(reason.contains("steps[0].action.input"), "{reason}");
}

#[test]
fn an_invalid_document_starts_no_step() {
    let mut engine = Engine::new(config());
    let start = connect(&mut engine);
    let actions = engine.handle(msg(
        "start-next/accepted",
        json!({"clientToken": start.token(),
        "timestamp": 1, "execution": execution("bad", 1, 2, "IN_PROGRESS", json!({"steps": 3}))}),
    ));
    assert!(started_steps(&actions).is_empty());
    assert_eq!(only_publish(&actions).body["status"], "REJECTED");
}

#[test]
fn unmet_conditions_reject_the_job() {
    let doc = json!({"version": "1.0",
        "conditions": [{"key": "operatingSystem", "value": ["windows"], "type": "stringEqual"}],
        "steps": [{"action": {"name": "A", "type": "runCommand", "input": {"command": "true"}}}]});
    let run = start_job(config(), "j1", doc);
    assert_eq!(run.update.body["status"], "REJECTED");
    let reason = run.update.body["statusDetails"]["reason"].as_str().unwrap();
    assert!(reason.contains("conditions[0]"), "{reason}");
}

#[test]
fn failing_step_reports_failed_with_reason_and_stderr_tail() {
    let mut run = start_job(config(), "j1", two_steps());
    run.accept(3);
    let mut failed = outcome(Termination::Exited(2));
    failed.stderr_tail = "E: unable to locate package\n".into();
    failed.stderr_lines = 1;
    let actions = run.feed(Input::StepFinished(failed));
    assert!(started_steps(&actions).is_empty(), "step B is skipped");
    let sent = only_publish(&actions);
    assert_eq!(sent.body["status"], "FAILED");
    assert_eq!(
        sent.body["statusDetails"]["reason"],
        "step 'A' exited with status 2"
    );
    assert_eq!(
        sent.body["statusDetails"]["stderr"],
        "E: unable to locate package"
    );
}

#[test]
fn step_timeout_is_sent_and_refreshed_by_heartbeats() {
    let mut cfg = config();
    cfg.step_timeout_minutes = 10;
    let mut run = start_job(cfg, "j1", two_steps());
    assert_eq!(run.update.body["stepTimeoutInMinutes"], 10);
    run.accept(3);
    assert!(published(&run.fire(TimerKind::ProgressCooldown)).is_empty());
    let actions = run.fire(TimerKind::Heartbeat);
    let beat = only_publish(&actions);
    assert_eq!(beat.body["status"], "IN_PROGRESS");
    assert_eq!(beat.body["stepTimeoutInMinutes"], 10);
    assert_eq!(beat.body["statusDetails"], json!({"step": "1/2 A"}));
    assert_eq!(
        armed(&actions, TimerKind::Heartbeat).unwrap().1,
        Duration::from_secs(300)
    );
    // Once the job is finished no heartbeat remains.
    run.accept(4);
    run.feed(Input::StepFinished(ok()));
    run.feed(Input::StepFinished(ok()));
    assert!(!run.engine.state().timers.is_armed(TimerKind::Heartbeat));
}

#[test]
fn messages_for_other_things_and_garbage_are_ignored() {
    let mut run = start_job(config(), "j1", two_steps());
    let actions = run.feed(Input::Message {
        topic: "$aws/things/other/jobs/notify-next".into(),
        payload: b"{\"timestamp\":1}".to_vec(),
    });
    assert!(actions.iter().all(|a| matches!(a, Action::Log(_))));
    let actions = run.feed(Input::Message {
        topic: format!("{PREFIX}/notify-next"),
        payload: b"not json".to_vec(),
    });
    assert!(actions.iter().all(|a| matches!(a, Action::Log(_))));
    assert!(run.engine.current_job().is_some());
}

#[test]
fn engine_state_serialises_mid_job() {
    let mut run = start_job(config(), "j1", two_steps());
    run.feed(Input::Disconnected);
    let json = serde_json::to_string(run.engine.state()).unwrap();
    let back: EngineState = serde_json::from_str(&json).unwrap();
    assert_eq!(back.job, run.engine.state().job);
    assert_eq!(back.job.unwrap().key.job_id, "j1");
}

#[test]
fn a_restored_engine_resends_its_pending_status_and_reruns_only_the_interrupted_step() {
    let mut run = start_job(config(), "j1", three_steps());
    run.accept(3);
    run.feed(Input::StepFinished(ok()));
    // Saved while step 2 runs, with its progress update waiting for the cooldown.
    let saved: EngineState =
        serde_json::from_str(&serde_json::to_string(run.engine.state()).unwrap()).unwrap();

    let mut engine = Engine::restore(config(), saved);
    assert!(engine.state().timers.armed().next().is_none());
    let actions = engine.resume_step();
    assert_eq!(
        started_steps(&actions),
        ["2/3 B"],
        "step A is not run again"
    );
    assert!(published(&actions).is_empty(), "offline until Connected");
    let actions = engine.handle(Input::Connected);
    let sent = published(&actions);
    assert_eq!(sent[0].topic, format!("{PREFIX}/j1/update"));
    assert_eq!(sent[0].body["statusDetails"], json!({"step": "2/3 B"}));
    assert_eq!(sent[0].body["expectedVersion"], 3);
    assert_eq!(sent[1].topic, format!("{PREFIX}/start-next"));
    // Resuming twice starts nothing more.
    assert!(started_steps(&engine.resume_step()).is_empty());
}

#[test]
fn a_version_mismatch_naming_our_own_version_backs_off_instead_of_spinning() {
    let mut run = start_job(config(), "j1", two_steps());
    let actions = run.reject(
        "VersionMismatch",
        Some(json!({"status": "IN_PROGRESS", "versionNumber": 2})),
    );
    assert!(published(&actions).is_empty());
    assert!(armed(&actions, TimerKind::Backoff(Slot::Update)).is_some());
}

#[test]
fn notify_listing_new_work_while_idle_triggers_start_next() {
    let mut engine = Engine::new(config());
    let start = connect(&mut engine);
    engine.handle(msg(
        "start-next/accepted",
        json!({"clientToken": start.token(), "timestamp": 1}),
    ));
    let actions = engine.handle(msg("notify", json!({"timestamp": 2, "jobs": {}})));
    assert!(published(&actions).is_empty(), "an empty list is no work");
    let actions = engine.handle(msg(
        "notify",
        json!({"timestamp": 3, "jobs": {"QUEUED": [{"jobId": "j5", "queuedAt": 1,
            "lastUpdatedAt": 1, "versionNumber": 1, "executionNumber": 1}]}}),
    ));
    assert_eq!(only_publish(&actions).topic, format!("{PREFIX}/start-next"));
}

#[test]
fn the_idle_poll_asks_start_next_again() {
    let mut engine = Engine::new(config());
    let start = connect(&mut engine);
    let actions = engine.handle(msg(
        "start-next/accepted",
        json!({"clientToken": start.token(), "timestamp": 1}),
    ));
    let (id, after) = armed(&actions, TimerKind::Poll).unwrap();
    assert_eq!(after, Duration::from_secs(15 * 60));
    let again = only_publish(&engine.handle(Input::TimerFired(id)));
    assert_eq!(again.topic, format!("{PREFIX}/start-next"));
}
