//! Restoring from a journal (issue 4): the interrupted step waits for the service to
//! confirm the job is still ours; a job gone meanwhile is dropped without a report.

use super::*;

/// An engine restored while step 2 of three was running, connected, with the start-next
/// it sent after connecting.
fn restored() -> (Engine, Sent) {
    let mut run = start_job(config(), "j1", three_steps());
    run.accept(3);
    run.feed(Input::StepFinished(ok()));
    // B's progress goes out after the cooldown and is accepted: no update is pending.
    run.fire(TimerKind::ProgressCooldown);
    run.accept(4);
    assert!(run.engine.state().update.is_none());
    let saved: EngineState =
        serde_json::from_str(&serde_json::to_string(run.engine.state()).unwrap()).unwrap();
    let mut engine = Engine::restore(config(), saved);
    assert!(engine.awaiting_confirmation());
    let actions = engine.handle(Input::Connected);
    let start = published(&actions)
        .into_iter()
        .find(|s| s.topic.ends_with("/start-next"))
        .expect("start-next after connecting");
    assert!(started_steps(&actions).is_empty());
    (engine, start)
}

#[test]
fn start_next_returning_the_job_in_progress_confirms_it_with_its_version() {
    let (mut engine, start) = restored();
    engine.handle(msg(
        "start-next/accepted",
        json!({"clientToken": start.token(), "timestamp": 3,
               "execution": execution("j1", 1, 7, "IN_PROGRESS", three_steps())}),
    ));
    assert!(!engine.awaiting_confirmation());
    assert_eq!(engine.state().job.as_ref().unwrap().version, 7);
    let actions = engine.resume_step();
    assert_eq!(started_steps(&actions), ["2/3 B"]);
}

#[test]
fn a_job_the_service_no_longer_has_is_dropped_without_a_report() {
    let (mut engine, start) = restored();
    let actions = engine.handle(msg(
        "start-next/accepted",
        json!({"clientToken": start.token(), "timestamp": 3}),
    ));
    let describe = only_publish(&actions);
    assert_eq!(describe.topic, format!("{PREFIX}/j1/get"));
    let actions = engine.handle(msg(
        "j1/get/rejected",
        json!({"clientToken": describe.token(), "timestamp": 4,
               "code": "ResourceNotFound", "message": "deleted"}),
    ));
    assert!(engine.current_job().is_none());
    assert!(published(&actions)
        .iter()
        .all(|s| !s.topic.ends_with("/update")));
    assert!(started_steps(&engine.resume_step()).is_empty());
}

#[test]
fn an_interrupted_step_can_be_completed_instead_of_rerun() {
    let (mut engine, start) = restored();
    engine.handle(msg(
        "start-next/accepted",
        json!({"clientToken": start.token(), "timestamp": 3,
               "execution": execution("j1", 1, 5, "IN_PROGRESS", three_steps())}),
    ));
    let actions = engine.finish_interrupted_step(ok());
    assert_eq!(started_steps(&actions), ["3/3 C"], "B is not run again");
}

#[test]
fn a_restored_revoked_job_ends_when_told_its_step_is_gone() {
    let mut run = start_job(config(), "j1", two_steps());
    run.feed(msg(
        "j1/update/rejected",
        json!({"clientToken": run.update.token(), "timestamp": 2,
               "code": "ResourceNotFound", "message": "gone"}),
    ));
    assert!(run.engine.state().job.as_ref().unwrap().is_revoked());
    let saved = run.engine.state().clone();
    let mut engine = Engine::restore(config(), saved);
    engine.finish_interrupted_step(outcome(Termination::Cancelled));
    assert!(engine.current_job().is_none());
}
