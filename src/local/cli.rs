//! Command-line interface of `iotjobs-local` (clap): `serve`, the AWS-CLI-like client
//! verbs, `create-thing`, `watch` and `demo`.

use std::process::ExitCode;

pub fn main() -> ExitCode {
    eprintln!("iotjobs-local: not built yet");
    ExitCode::FAILURE
}
