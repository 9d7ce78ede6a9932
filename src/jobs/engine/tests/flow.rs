//! A job's normal course: subscribe, start-next, progress, terminal status; duplicates,
//! invalid documents, heartbeats, persistence.

use std::time::Duration;

use serde_json::json;

use super::*;

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
    let (sent, _next) = terminal_then_start_next(&actions);
    assert_eq!(sent.body["status"], "SUCCEEDED");
    assert_eq!(sent.body["expectedVersion"], 3);
    assert_eq!(
        sent.body["statusDetails"]["reason"],
        "all 2 steps succeeded"
    );
    assert!(sent.body.get("stepTimeoutInMinutes").is_none());

    // Delivered: the job is forgotten; the next one was already asked for.
    let actions = run.accept(4);
    assert!(run.engine.current_job().is_none());
    assert!(published(&actions).is_empty(), "{actions:#?}");
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
    run.accept(5);
    // The start-next sent with the terminal status was answered before the status was
    // applied: the execution is not run again, start-next is asked once more...
    let actions = run.answer_next(Some(execution("j1", 1, 4, "IN_PROGRESS", two_steps())));
    assert!(started_steps(&actions).is_empty(), "{actions:#?}");
    assert_eq!(only_publish(&actions).topic, format!("{PREFIX}/start-next"));
    // ...and a service that keeps offering it does not make the engine spin.
    let actions = run.answer_next(Some(execution("j1", 1, 5, "IN_PROGRESS", two_steps())));
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
    let (sent, _next) = terminal_then_start_next(&actions);
    assert_eq!(sent.body["status"], "REJECTED");
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
    let (sent, _next) = terminal_then_start_next(&actions);
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
