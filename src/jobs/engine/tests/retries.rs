//! Requests that fail: reconnects, reply timeouts, version mismatches, throttling.

use serde_json::{json, Value};

use super::*;

#[test]
fn reconnect_resubscribes_resyncs_and_resends_the_pending_update() {
    let mut run = start_job(config(), "j1", two_steps());
    let old = run.update.clone();
    let actions = run.feed(Input::Disconnected);
    assert!(published(&actions).is_empty());
    assert!(actions.iter().any(
        |a| matches!(a, Action::CancelTimer(id) if id.kind == TimerKind::Reply(Slot::Update))
    ));
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
fn offline_progress_is_coalesced_and_sent_after_reconnecting() {
    let mut run = start_job(config(), "j1", three_steps());
    run.feed(Input::Disconnected);
    // The steps keep running offline; only the newest progress is kept.
    let actions = run.feed(Input::StepFinished(ok()));
    assert_eq!(started_steps(&actions), ["2/3 B"]);
    let actions = run.feed(Input::StepFinished(ok()));
    assert_eq!(started_steps(&actions), ["3/3 C"]);
    assert!(published(&actions).is_empty());
    run.feed(Input::Connected);
    let actions = run.fire(TimerKind::ProgressCooldown);
    let sent = only_publish(&actions);
    assert_eq!(sent.body["statusDetails"], json!({"step": "3/3 C"}));
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
    assert_eq!(
        terminal_then_start_next(&actions).0.body["status"],
        "FAILED"
    );
    // The accepted reply was lost; the resend finds the status already applied.
    let actions = run.fire(TimerKind::Reply(Slot::Update));
    assert_eq!(only_publish(&actions).body["status"], "FAILED");
    let actions = run.reject(
        "VersionMismatch",
        Some(json!({"status": "FAILED", "versionNumber": 4})),
    );
    assert!(run.engine.current_job().is_none());
    assert!(published(&actions).is_empty(), "start-next is in flight");
    let actions = run.answer_next(Some(execution("j2", 1, 1, "IN_PROGRESS", two_steps())));
    assert_eq!(started_steps(&actions), ["1/2 A"]);
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
fn a_job_finished_offline_sends_only_its_terminal_status_on_reconnect() {
    let mut run = start_job(
        config(),
        "j1",
        json!({"version": "1.0", "steps": [
            {"action": {"name": "A", "type": "runCommand", "input": {"command": "true"}}}
        ]}),
    );
    run.feed(Input::Disconnected);
    // The IN_PROGRESS reply was lost with the connection; the step ends offline.
    let actions = run.feed(Input::StepFinished(ok()));
    assert!(published(&actions).is_empty());
    let actions = run.feed(Input::Connected);
    let sent = published(&actions);
    let updates: Vec<_> = sent
        .iter()
        .filter(|s| s.topic.ends_with("/update"))
        .collect();
    assert_eq!(updates.len(), 1, "{sent:#?}");
    assert_eq!(updates[0].body["status"], "SUCCEEDED");
    assert_eq!(updates[0].body["expectedVersion"], 2);
}
