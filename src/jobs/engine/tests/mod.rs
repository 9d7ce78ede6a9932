//! Engine transitions without I/O: every input is fed by hand and every action checked.
//! This module holds the harness; the cases are split by concern.

mod flow;
mod pipeline;
mod restore;
mod retries;
mod revocation;

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
    /// The last start-next published.
    next: Option<Sent>,
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
    let update = published(&actions)
        .into_iter()
        .find(|s| s.topic.ends_with("/update"))
        .expect("a status update");
    let mut run = Run {
        engine,
        update,
        next: None,
    };
    run.take_update(&actions);
    run
}

/// The terminal status and the start-next pipelined right behind it, in that order.
fn terminal_then_start_next(actions: &[Action]) -> (Sent, Sent) {
    let sent = published(actions);
    assert_eq!(sent.len(), 2, "expected two publishes in {actions:#?}");
    assert!(sent[0].topic.ends_with("/update"), "{sent:#?}");
    assert_eq!(sent[1].topic, format!("{PREFIX}/start-next"));
    (sent[0].clone(), sent[1].clone())
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

    /// Remembers a newly published update (and start-next) as the one in flight.
    fn take_update(&mut self, actions: &[Action]) {
        for sent in published(actions) {
            if sent.topic.ends_with("/update") {
                self.update = sent;
            } else if sent.topic.ends_with("/start-next") {
                self.next = Some(sent);
            }
        }
    }

    /// Answers the last start-next with `execution` (None: nothing pending).
    fn answer_next(&mut self, execution: Option<Value>) -> Vec<Action> {
        let token = self.next.take().expect("a start-next was sent").token();
        let mut body = json!({"clientToken": token, "timestamp": 9});
        if let Some(execution) = execution {
            body["execution"] = execution;
        }
        self.feed(msg("start-next/accepted", body))
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

fn three_steps() -> Value {
    json!({"version": "1.0", "steps": [
        {"action": {"name": "A", "type": "runCommand", "input": {"command": "true"}}},
        {"action": {"name": "B", "type": "runCommand", "input": {"command": "true"}}},
        {"action": {"name": "C", "type": "runCommand", "input": {"command": "true"}}}
    ]})
}
