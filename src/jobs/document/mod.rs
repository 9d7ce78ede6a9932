//! Job documents: AWS's schema (`"version": "1.0"`) and the old one-operation schema, parsed
//! and validated into a [`JobPlan`] the engine executes without re-checking anything.
//!
//! Owns the document model, every validation rule, runCommand splitting and condition
//! evaluation. Pure: it never touches files, processes or the network (the one exception,
//! [`HostFacts::read`], is a separate function the daemon calls once). Handler files are
//! resolved and checked by the sandbox, not here.
//!
//! Compared with AWS's client (reference aws-device-client.md §2): a field of the wrong type
//! is an error instead of being silently ignored; booleans may be JSON booleans or the strings
//! `"true"`/`"false"`; a step without `input`, a non-string handler, a handler name with `/`
//! or `..` in the handler directory and a document over 32768 bytes are rejected; extensions
//! AWS ignores are honoured: per-step `timeoutSeconds` and `rollback`, and evaluated
//! `conditions`. Every error names the field path.

mod command;
mod conditions;
mod parse;
mod validate;

#[cfg(test)]
mod tests;

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use command::split_command;
pub use conditions::{parse_os_release, Condition, ConditionType, HostFacts, OsRelease};

/// AWS's limit on job documents.
pub const MAX_DOCUMENT_BYTES: usize = 32 * 1024;
/// Upper bound of a step's `timeoutSeconds` (7 days, AWS's longest step timeout).
pub const MAX_STEP_TIMEOUT_SECS: u64 = 7 * 24 * 3600;

/// One problem in a job document. `path` is the field, e.g. `steps[1].action.input.handler`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DocumentError {
    #[error("job document is {size} bytes; the limit is 32768")]
    TooLarge { size: usize },
    #[error("job document is not valid JSON: {0}")]
    NotJson(String),
    #[error("{path}: is required")]
    Missing { path: String },
    #[error("{path}: must be {expected}")]
    WrongType {
        path: String,
        expected: &'static str,
    },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
    #[error("{path}: condition not met: {message}")]
    ConditionNotMet { path: String, message: String },
}

impl DocumentError {
    /// The field the error is about, when there is one.
    pub fn path(&self) -> Option<&str> {
        match self {
            Self::TooLarge { .. } | Self::NotJson(_) => None,
            Self::Missing { path }
            | Self::WrongType { path, .. }
            | Self::Invalid { path, .. }
            | Self::ConditionNotMet { path, .. } => Some(path),
        }
    }
}

/// Every problem found in a document (never empty). Displays as one line, suitable for the
/// REJECTED `statusDetails.reason` (the daemon still cuts it to 1024 characters).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentErrors(Vec<DocumentError>);

impl DocumentErrors {
    /// `None` when `errors` is empty (there is then nothing to report).
    pub fn new(errors: Vec<DocumentError>) -> Option<Self> {
        (!errors.is_empty()).then_some(DocumentErrors(errors))
    }

    pub fn first(&self) -> &DocumentError {
        &self.0[0]
    }

    pub fn errors(&self) -> &[DocumentError] {
        &self.0
    }

    pub fn iter(&self) -> impl Iterator<Item = &DocumentError> {
        self.0.iter()
    }
}

impl fmt::Display for DocumentErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("invalid job document: ")?;
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for DocumentErrors {}

impl From<DocumentError> for DocumentErrors {
    fn from(e: DocumentError) -> Self {
        DocumentErrors(vec![e])
    }
}

/// Which schema a document used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Schema {
    /// `"version": "1.0"` with steps.
    V1,
    /// The old schema: one `operation` handler, no version.
    Legacy,
}

/// Where a runHandler step's handler lives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum HandlerPath {
    /// `path` absent, empty or `"default"`: the configured handler directory.
    Default,
    /// Any other `path`: that directory (the sandbox decides whether it is allowed).
    Dir(PathBuf),
}

/// What a step runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum StepKind {
    /// `runHandler`: `argv = [<dir>/<name>, <runAsUser or "">, args...]`.
    Handler {
        name: String,
        path: HandlerPath,
        args: Vec<String>,
    },
    /// `runCommand`: the split command; `argv[0]` has no whitespace and is not empty.
    Command { argv: Vec<String> },
}

/// One validated step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedStep {
    pub name: String,
    pub kind: StepKind,
    /// `runAsUser`; `None` when absent or empty (handlers then get `""` as argv[1]).
    pub run_as_user: Option<String>,
    /// `allowStdErr`: how many stderr lines the step may print and still succeed.
    pub allow_stderr: Option<u32>,
    /// `ignoreStepFailure`.
    pub ignore_failure: bool,
    /// Extension `timeoutSeconds`; `None` means the configured default.
    pub timeout: Option<Duration>,
    /// Extension `rollback`: run (in reverse step order) when this step or a later one fails.
    pub rollback: Option<Box<PlannedStep>>,
}

/// A validated job document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobPlan {
    pub schema: Schema,
    /// `includeStdOut`: report the stdout tail in the terminal status.
    pub include_stdout: bool,
    /// Checked with [`JobPlan::check_conditions`] before anything runs.
    pub conditions: Vec<Condition>,
    /// Never empty.
    pub steps: Vec<PlannedStep>,
    /// Runs only when every step succeeded (or had its failure ignored).
    pub final_step: Option<PlannedStep>,
}

impl JobPlan {
    /// Parse and validate a job document given as JSON (the MQTT `jobDocument` object). Its
    /// size is measured on its compact serialisation.
    pub fn from_value(doc: &Value) -> Result<JobPlan, DocumentErrors> {
        let size = serde_json::to_vec(doc).map(|v| v.len()).unwrap_or(0);
        if size > MAX_DOCUMENT_BYTES {
            return Err(DocumentError::TooLarge { size }.into());
        }
        validate::plan(doc).map_err(DocumentErrors)
    }

    /// Parse and validate a job document file's bytes (size measured on the bytes as given).
    pub fn from_slice(bytes: &[u8]) -> Result<JobPlan, DocumentErrors> {
        if bytes.len() > MAX_DOCUMENT_BYTES {
            return Err(DocumentError::TooLarge { size: bytes.len() }.into());
        }
        let doc: Value =
            serde_json::from_slice(bytes).map_err(|e| DocumentError::NotJson(e.to_string()))?;
        validate::plan(&doc).map_err(DocumentErrors)
    }

    /// Evaluate the document's `conditions` against this host. Every unmet or unknown
    /// condition is reported; the job must then be REJECTED with this reason.
    pub fn check_conditions(&self, facts: &HostFacts) -> Result<(), DocumentErrors> {
        conditions::evaluate(&self.conditions, facts).map_err(DocumentErrors)
    }

    /// Steps in execution order, final step last.
    pub fn all_steps(&self) -> impl Iterator<Item = &PlannedStep> {
        self.steps.iter().chain(self.final_step.as_ref())
    }
}
