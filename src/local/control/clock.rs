//! Local extension (no AWS equivalent): the service's clock. `GET /iotjobs-local/clock`
//! reads it; with `serve --manual-clock`, `POST /iotjobs-local/clock` moves it
//! (`{"advanceSeconds": N}`, `{"set": EPOCH_SECONDS}` or `{"setTime": "2030-01-01T10:00"}`)
//! and runs the scheduler at once, so tests see schedules, windows, rollout, timeouts and
//! retries happen without waiting. Time never moves backwards.

use std::time::Duration;

use axum::extract::State;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::error::{ApiError, ApiResult};
use super::extract::Body;
use super::ControlContext;
use crate::local::clock::{Clock, Timestamp};
use crate::local::lifecycle::schedule;
use crate::local::service::task::Command;

pub async fn get_clock(State(ctx): State<ControlContext>) -> Json<Value> {
    let now = ctx.clock.now();
    Json(json!({
        "now": now.secs_f64(),
        "time": schedule::format_time(now),
        "manual": ctx.manual_clock.is_some(),
    }))
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MoveClock {
    advance_seconds: Option<f64>,
    set: Option<f64>,
    set_time: Option<String>,
}

pub async fn move_clock(
    State(ctx): State<ControlContext>,
    Body(b): Body<MoveClock>,
) -> ApiResult<Json<Value>> {
    let Some(clock) = &ctx.manual_clock else {
        return Err(ApiError::invalid(
            "the clock is the system clock; start `iotjobs-local serve --manual-clock` to move it",
        ));
    };
    let now = clock.now();
    let target = match (b.advance_seconds, b.set, b.set_time.as_deref()) {
        // At most ~300 years: `Duration::from_secs_f64` panics on overflow.
        (Some(s), None, None) if s.is_finite() && (0.0..=1e10).contains(&s) => {
            now.plus(Duration::from_secs_f64(s))
        }
        (None, Some(e), None) if e.is_finite() => Timestamp::from_millis((e * 1000.0) as i64),
        (None, None, Some(t)) => {
            schedule::parse_time("setTime", t).map_err(|e| ApiError::invalid(e.0))?
        }
        _ => {
            return Err(ApiError::invalid(
                "give exactly one of advanceSeconds (≥ 0), set (epoch seconds) or setTime (2030-01-01T10:00)",
            ))
        }
    };
    if target < now {
        return Err(ApiError::invalid(format!(
            "the clock does not go backwards (now {})",
            now.secs_f64()
        )));
    }
    clock.set(target);
    let report = ctx.service.request(Command::Tick).await?;
    Ok(Json(json!({
        "now": target.secs_f64(),
        "time": schedule::format_time(target),
        "tick": {
            "started": report.started,
            "ended": report.ended,
            "aborted": report.aborted,
            "rolledOut": report.rolled_out,
            "timedOut": report.timed_out,
            "retried": report.retried,
        },
    })))
}
