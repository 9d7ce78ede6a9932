//! Pipelining: start-next goes out right behind the terminal status, and every order in
//! which the two answers (and notifications) can arrive leads to the same result: the
//! finished execution never runs again, the next one runs exactly once.

use serde_json::json;

use super::*;

fn one_step() -> Value {
    json!({"version": "1.0", "steps": [
        {"action": {"name": "A", "type": "runCommand", "input": {"command": "true"}}}
    ]})
}

/// j1 (one step) ran and its SUCCEEDED status and the pipelined start-next are in flight.
fn finishing() -> Run {
    let mut run = start_job(config(), "j1", one_step());
    run.accept(3);
    let actions = run.feed(Input::StepFinished(ok()));
    let (terminal, next) = terminal_then_start_next(&actions);
    assert_eq!(terminal.body["status"], "SUCCEEDED");
    assert!(next.body.get("clientToken").is_some());
    run
}

fn j1_in_progress() -> Value {
    execution("j1", 1, 3, "IN_PROGRESS", one_step())
}

fn j2_started() -> Value {
    execution("j2", 1, 2, "IN_PROGRESS", two_steps())
}

/// Asserts j2 was started: its IN_PROGRESS update goes out and its first step runs.
fn assert_j2_starts(run: &Run, actions: &[Action]) {
    assert_eq!(started_steps(actions), ["1/2 A"], "{actions:#?}");
    assert_eq!(run.engine.current_job().unwrap().job_id, "j2");
    let updates: Vec<_> = published(actions)
        .into_iter()
        .filter(|s| s.topic.ends_with("/update"))
        .collect();
    assert_eq!(updates.len(), 1);
    assert_eq!(updates[0].topic, format!("{PREFIX}/j2/update"));
    assert_eq!(updates[0].body["status"], "IN_PROGRESS");
}

fn start_nexts(actions: &[Action]) -> usize {
    published(actions)
        .iter()
        .filter(|s| s.topic.ends_with("/start-next"))
        .count()
}

fn describes(actions: &[Action]) -> usize {
    published(actions)
        .iter()
        .filter(|s| s.topic.ends_with("/get"))
        .count()
}

#[test]
fn in_order_answers_run_the_next_job_without_another_start_next() {
    let mut run = finishing();
    let actions = run.accept(4);
    assert!(run.engine.current_job().is_none());
    assert!(published(&actions).is_empty(), "{actions:#?}");
    let actions = run.answer_next(Some(j2_started()));
    assert_j2_starts(&run, &actions);
    assert_eq!(start_nexts(&actions), 0);
}

#[test]
fn the_next_job_answered_before_the_status_waits_for_it_then_starts_at_once() {
    let mut run = finishing();
    let actions = run.answer_next(Some(j2_started()));
    assert!(started_steps(&actions).is_empty(), "one job at a time");
    assert!(published(&actions).is_empty(), "no describe, no start-next");
    assert_eq!(run.engine.current_job().unwrap().job_id, "j1");
    let actions = run.accept(4);
    assert_j2_starts(&run, &actions);
    assert_eq!(start_nexts(&actions), 0);
}

#[test]
fn the_finishing_execution_answered_before_its_status_is_not_run_and_asked_again_after_it() {
    let mut run = finishing();
    let actions = run.answer_next(Some(j1_in_progress()));
    assert!(started_steps(&actions).is_empty(), "{actions:#?}");
    assert!(published(&actions).is_empty(), "{actions:#?}");
    assert_eq!(run.engine.current_job().unwrap().job_id, "j1");
    // The status is applied: only now is the answer about the next job meaningful.
    let actions = run.accept(4);
    assert!(run.engine.current_job().is_none());
    assert_eq!(start_nexts(&actions), 1);
    assert!(run.next.is_some());
    let actions = run.answer_next(Some(j2_started()));
    assert_j2_starts(&run, &actions);
}

#[test]
fn the_finishing_execution_answered_after_its_status_is_not_run_and_asked_again_once() {
    let mut run = finishing();
    // The service processed start-next before the update but its answer comes last.
    run.accept(4);
    let actions = run.answer_next(Some(j1_in_progress()));
    assert!(started_steps(&actions).is_empty(), "{actions:#?}");
    assert_eq!(start_nexts(&actions), 1, "{actions:#?}");
    assert!(armed(&actions, TimerKind::Poll).is_none());
    // The new question is not tied to j1: the same stale answer again is not re-asked.
    let actions = run.answer_next(Some(j1_in_progress()));
    assert!(started_steps(&actions).is_empty());
    assert!(published(&actions).is_empty());
    assert!(armed(&actions, TimerKind::Poll).is_some());
}

#[test]
fn nothing_pending_before_the_status_answer_asks_no_describe() {
    let mut run = finishing();
    let actions = run.answer_next(None);
    assert!(published(&actions).is_empty(), "{actions:#?}");
    assert_eq!(run.engine.current_job().unwrap().job_id, "j1");
    // The job ends; start-next is asked again (work may have come in between).
    let actions = run.accept(4);
    assert_eq!(start_nexts(&actions), 1);
    let actions = run.answer_next(None);
    assert!(published(&actions).is_empty());
    assert!(armed(&actions, TimerKind::Poll).is_some());
}

#[test]
fn nothing_pending_after_the_status_answer_ends_the_drain() {
    let mut run = finishing();
    run.accept(4);
    let actions = run.answer_next(None);
    assert!(published(&actions).is_empty(), "{actions:#?}");
    assert!(armed(&actions, TimerKind::Poll).is_some());
}

#[test]
fn notifications_about_the_next_job_while_the_status_is_in_flight_change_nothing() {
    let mut run = finishing();
    let actions = run.feed(msg(
        "notify-next",
        json!({"timestamp": 5, "execution": execution("j2", 1, 1, "QUEUED", two_steps())}),
    ));
    assert!(published(&actions).is_empty(), "{actions:#?}");
    let actions = run.feed(msg("notify-next", json!({"timestamp": 5})));
    assert!(published(&actions).is_empty(), "{actions:#?}");
    let actions = run.feed(msg(
        "notify",
        json!({"timestamp": 5, "jobs": {"QUEUED": [
            {"jobId": "j2", "executionNumber": 1, "versionNumber": 1,
             "queuedAt": 1, "lastUpdatedAt": 1}]}}),
    ));
    assert!(published(&actions).is_empty(), "{actions:#?}");
    assert_eq!(kills(&actions), 0);
    // The status answer then ends j1 and the pending start-next brings j2.
    let actions = run.accept(4);
    assert_eq!(describes(&actions) + start_nexts(&actions), 0);
    let actions = run.answer_next(Some(j2_started()));
    assert_j2_starts(&run, &actions);
}

#[test]
fn a_status_rejected_because_the_job_was_cancelled_still_runs_the_parked_next_job() {
    let mut run = finishing();
    run.answer_next(Some(j2_started()));
    let actions = run.reject(
        "InvalidStateTransition",
        Some(json!({"status": "CANCELED", "versionNumber": 5})),
    );
    assert_eq!(kills(&actions), 0);
    assert_j2_starts(&run, &actions);
    assert!(run.engine.state().recent.contains(&ExecKey {
        job_id: "j1".into(),
        execution_number: 1
    }));
}

#[test]
fn a_cancelled_job_offered_from_before_the_cancel_is_not_run_again() {
    let mut run = finishing();
    let actions = run.reject(
        "InvalidStateTransition",
        Some(json!({"status": "CANCELED", "versionNumber": 5})),
    );
    assert!(run.engine.current_job().is_none());
    assert!(published(&actions).is_empty(), "start-next is still out");
    let actions = run.answer_next(Some(j1_in_progress()));
    assert!(started_steps(&actions).is_empty());
    assert_eq!(start_nexts(&actions), 1);
}

#[test]
fn a_throttled_status_is_resent_with_a_new_start_next_behind_it() {
    let mut run = finishing();
    let actions = run.reject("RequestThrottled", None);
    assert!(armed(&actions, TimerKind::Backoff(Slot::Update)).is_some());
    // The start-next overtook the unapplied status.
    let actions = run.answer_next(Some(j1_in_progress()));
    assert!(published(&actions).is_empty() && started_steps(&actions).is_empty());
    let actions = run.fire(TimerKind::Backoff(Slot::Update));
    let (terminal, _) = terminal_then_start_next(&actions);
    assert_eq!(terminal.body["status"], "SUCCEEDED");
    run.accept(4);
    let actions = run.answer_next(Some(j2_started()));
    assert_j2_starts(&run, &actions);
}

#[test]
fn a_drop_with_both_in_flight_resends_both_with_new_tokens_and_ignores_old_answers() {
    let mut run = finishing();
    let (old_update, old_next) = (run.update.clone(), run.next.clone().unwrap());
    let actions = run.feed(Input::Disconnected);
    assert!(published(&actions).is_empty());
    let actions = run.feed(Input::Connected);
    assert!(matches!(actions[0], Action::Subscribe(_)));
    let (terminal, next) = terminal_then_start_next(&actions);
    assert_eq!(terminal.body["status"], "SUCCEEDED");
    assert_ne!(terminal.token(), old_update.token());
    assert_ne!(next.token(), old_next.token());
    // Answers to the old attempts (delivered late) are ignored.
    let actions = run.feed(msg(
        "start-next/accepted",
        json!({"clientToken": old_next.token(), "timestamp": 6, "execution": j2_started()}),
    ));
    assert!(published(&actions).is_empty());
    assert!(started_steps(&actions).is_empty());
    assert_eq!(run.engine.current_job().unwrap().job_id, "j1");
    let actions = run.answer_next(Some(j2_started()));
    assert!(
        started_steps(&actions).is_empty(),
        "parked until j1 is answered"
    );
    let actions = run.accept(4);
    assert_j2_starts(&run, &actions);
}

#[test]
fn a_restored_terminal_status_is_resent_with_one_start_next_that_cannot_rerun_it() {
    let mut run = start_job(config(), "j1", one_step());
    run.accept(3);
    run.feed(Input::StepFinished(ok()));
    // Crash with the status unanswered; the journal holds the state.
    let saved: EngineState =
        serde_json::from_str(&serde_json::to_string(run.engine.state()).unwrap()).unwrap();
    let mut restored = Run {
        engine: Engine::restore(config(), saved),
        update: run.update.clone(),
        next: None,
    };
    let actions = restored.feed(Input::Connected);
    let (terminal, _) = terminal_then_start_next(&actions);
    assert_eq!(terminal.body["status"], "SUCCEEDED");
    assert_eq!(terminal.body["expectedVersion"], 3);
    let actions = restored.answer_next(Some(j1_in_progress()));
    assert!(started_steps(&actions).is_empty() && published(&actions).is_empty());
    let actions = restored.accept(4);
    assert_eq!(start_nexts(&actions), 1);
    let actions = restored.answer_next(Some(j2_started()));
    assert_j2_starts(&restored, &actions);
}

#[test]
fn a_parked_job_is_not_journalled_and_the_resync_brings_it_back() {
    let mut run = finishing();
    run.answer_next(Some(j2_started()));
    assert!(run.engine.state().parked.is_some());
    let json = serde_json::to_string(run.engine.state()).unwrap();
    assert!(!json.contains("\"j2\""), "{json}");
    let saved: EngineState = serde_json::from_str(&json).unwrap();
    let mut restored = Run {
        engine: Engine::restore(config(), saved),
        update: run.update.clone(),
        next: None,
    };
    let actions = restored.feed(Input::Connected);
    terminal_then_start_next(&actions);
    restored.accept(4);
    let actions = restored.answer_next(Some(j2_started()));
    assert_j2_starts(&restored, &actions);
}

#[test]
fn a_journal_written_before_pipelining_still_restores() {
    let run = finishing();
    let mut value = serde_json::to_value(run.engine.state()).unwrap();
    // Older journals stored start-next's body as `()`, i.e. null.
    value["start_next"] = json!({"state": "Unsent", "attempt": 0, "body": null});
    let state: EngineState = serde_json::from_value(value).unwrap();
    assert_eq!(state.start_next.unwrap().body, None);
}

#[test]
fn a_rejected_document_is_reported_with_start_next_right_behind() {
    let mut engine = Engine::new(config());
    let start = connect(&mut engine);
    let actions = engine.handle(msg(
        "start-next/accepted",
        json!({"clientToken": start.token(), "timestamp": 1,
               "execution": execution("bad", 1, 2, "IN_PROGRESS", json!({"steps": 3}))}),
    ));
    let (terminal, _) = terminal_then_start_next(&actions);
    assert_eq!(terminal.body["status"], "REJECTED");
}

#[test]
fn progress_updates_do_not_pipeline_start_next() {
    let run = start_job(config(), "j1", two_steps());
    assert!(run.next.is_none());
    assert!(run.engine.state().start_next.is_none());
}
