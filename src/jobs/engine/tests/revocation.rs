//! A job the service takes away: each trigger kills the step and silences the job.

use serde_json::{json, Value};

use super::*;

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
    assert!(published(&actions).is_empty(), "start-next is in flight");
    let actions = run.answer_next(None);
    assert!(armed(&actions, TimerKind::Poll).is_some());
}
