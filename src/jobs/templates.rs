//! The eight AWS managed job templates (AWS-Reboot, AWS-Download-File, ...) as data, and
//! `${aws:iot:parameter:NAME}` substitution into job documents.
//!
//! Owns: each template's name, description, document (byte for byte as AWS publishes it,
//! placeholders included) and parameter list; rendering a template with `documentParameters`
//! the way the service does (required parameters checked, missing optional ones empty, values
//! JSON-escaped). Used by `iotjobsd run-job` and by iotjobs-local's control plane.
//! Must not: do I/O, parse or validate the job document's schema (that is the document
//! module's job), or resolve other placeholders (`${aws:iot:s3-presigned-url:...}` stays as is).

use std::collections::BTreeMap;

/// Prefix of a parameter placeholder; the placeholder ends at the next `}`.
const PLACEHOLDER_PREFIX: &str = "${aws:iot:parameter:";

/// Every managed template is published in this version only.
pub const TEMPLATE_VERSION: &str = "1.0";

/// Errors of template lookup and parameter substitution.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("missing required document parameter '{0}'")]
    MissingParameter(String),
    #[error("unknown document parameter '{0}': the template does not use it")]
    UnknownParameter(String),
    #[error("document parameter '{name}' is {len} characters long; at most {max} are allowed")]
    ParameterTooLong {
        name: String,
        len: usize,
        max: usize,
    },
    #[error("no AWS managed job template named '{0}'")]
    UnknownTemplate(String),
}

/// One entry of a template's `documentParameters`, as DescribeManagedJobTemplate returns it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TemplateParameter {
    pub key: &'static str,
    pub description: &'static str,
    /// The regex AWS publishes. Every published regex is "any text up to N characters", so
    /// it is enforced through `max_len` rather than a regex engine.
    pub regex: &'static str,
    pub max_len: Option<usize>,
    pub example: &'static str,
    pub optional: bool,
}

/// An AWS managed job template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ManagedTemplate {
    pub name: &'static str,
    pub description: &'static str,
    /// The job document with its placeholders, exactly as AWS publishes it.
    pub document: &'static str,
    pub parameters: &'static [TemplateParameter],
}

const RUN_AS_USER: TemplateParameter = TemplateParameter {
    key: "runAsUser",
    description: "Name of the user that runs the handler on the device.",
    regex: "(.){0,256}",
    max_len: Some(256),
    example: "user1",
    optional: true,
};

const PATH_TO_HANDLER: TemplateParameter = TemplateParameter {
    key: "pathToHandler",
    description: "Path to the handler script on the device.",
    regex: "(.){0,4096}",
    max_len: Some(4096),
    example: "/path/to/handler/script",
    optional: true,
};

const fn required(
    key: &'static str,
    description: &'static str,
    example: &'static str,
) -> TemplateParameter {
    TemplateParameter {
        key,
        description,
        regex: "(.*?)",
        max_len: None,
        example,
        optional: false,
    }
}

const PACKAGES: TemplateParameter = required(
    "packages",
    "Space-separated list of packages.",
    "package1 package2",
);
const SERVICES: TemplateParameter = required(
    "services",
    "Space-separated list of system services.",
    "service1 service2",
);

/// The catalogue, in AWS's order. Documents, action names, parameter keys, regexes, the
/// Download-File parameter descriptions and the Reboot/Download-File/Remove/Stop/Restart
/// descriptions are AWS's (reference iot-jobs-protocol.md §8); the Install, Start and
/// Run-Command descriptions, the other parameter descriptions and the AWS-Run-Command document
/// are reconstructed (AWS's text was not available).
pub const MANAGED_TEMPLATES: &[ManagedTemplate] = &[
    ManagedTemplate {
        name: "AWS-Reboot",
        description: "A managed job template for rebooting the device.",
        document: r#"{"version":"1.0","steps":[{"action":{"name":"Reboot","type":"runHandler","input":{"handler":"reboot.sh","path":"${aws:iot:parameter:pathToHandler}"},"runAsUser":"${aws:iot:parameter:runAsUser}"}}]}"#,
        parameters: &[RUN_AS_USER, PATH_TO_HANDLER],
    },
    ManagedTemplate {
        name: "AWS-Download-File",
        description: "A managed job template for downloading a file.",
        document: r#"{"version":"1.0","steps":[{"action":{"name":"Download-File","type":"runHandler","input":{"handler":"download-file.sh","args":["${aws:iot:parameter:downloadUrl}","${aws:iot:parameter:filePath}"],"path":"${aws:iot:parameter:pathToHandler}"},"runAsUser":"${aws:iot:parameter:runAsUser}"}}]}"#,
        parameters: &[
            required(
                "downloadUrl",
                "URL of file to download.",
                "http://www.example.com/index.html",
            ),
            required(
                "filePath",
                "Path on the device where downloaded file is written.",
                "/path/to/file",
            ),
            RUN_AS_USER,
            PATH_TO_HANDLER,
        ],
    },
    ManagedTemplate {
        name: "AWS-Install-Application",
        description: "A managed job template for installing one or more applications.",
        document: r#"{"version":"1.0","steps":[{"action":{"name":"Install-Application","type":"runHandler","input":{"handler":"install-packages.sh","args":["${aws:iot:parameter:packages}"],"path":"${aws:iot:parameter:pathToHandler}"},"runAsUser":"${aws:iot:parameter:runAsUser}"}}]}"#,
        parameters: &[PACKAGES, RUN_AS_USER, PATH_TO_HANDLER],
    },
    ManagedTemplate {
        name: "AWS-Remove-Application",
        description: "A managed job template for uninstalling one or more applications.",
        document: r#"{"version":"1.0","steps":[{"action":{"name":"Remove-Application","type":"runHandler","input":{"handler":"remove-packages.sh","args":["${aws:iot:parameter:packages}"],"path":"${aws:iot:parameter:pathToHandler}"},"runAsUser":"${aws:iot:parameter:runAsUser}"}}]}"#,
        parameters: &[PACKAGES, RUN_AS_USER, PATH_TO_HANDLER],
    },
    ManagedTemplate {
        name: "AWS-Start-Application",
        description: "A managed job template for starting one or more system services.",
        document: r#"{"version":"1.0","steps":[{"action":{"name":"Start-Application","type":"runHandler","input":{"handler":"start-services.sh","args":["${aws:iot:parameter:services}"],"path":"${aws:iot:parameter:pathToHandler}"},"runAsUser":"${aws:iot:parameter:runAsUser}"}}]}"#,
        parameters: &[SERVICES, RUN_AS_USER, PATH_TO_HANDLER],
    },
    ManagedTemplate {
        name: "AWS-Stop-Application",
        description: "A managed job template for stopping one or more system services.",
        document: r#"{"version":"1.0","steps":[{"action":{"name":"Stop-Application","type":"runHandler","input":{"handler":"stop-services.sh","args":["${aws:iot:parameter:services}"],"path":"${aws:iot:parameter:pathToHandler}"},"runAsUser":"${aws:iot:parameter:runAsUser}"}}]}"#,
        parameters: &[SERVICES, RUN_AS_USER, PATH_TO_HANDLER],
    },
    ManagedTemplate {
        name: "AWS-Restart-Application",
        description: "A managed job template for restarting one or more system services.",
        document: r#"{"version":"1.0","steps":[{"action":{"name":"Restart-Application","type":"runHandler","input":{"handler":"restart-services.sh","args":["${aws:iot:parameter:services}"],"path":"${aws:iot:parameter:pathToHandler}"},"runAsUser":"${aws:iot:parameter:runAsUser}"}}]}"#,
        parameters: &[SERVICES, RUN_AS_USER, PATH_TO_HANDLER],
    },
    ManagedTemplate {
        name: "AWS-Run-Command",
        description: "A managed job template for running a shell command.",
        document: r#"{"version":"1.0","steps":[{"action":{"name":"Run-Command","type":"runCommand","input":{"command":"${aws:iot:parameter:command}"},"runAsUser":"${aws:iot:parameter:runAsUser}"}}]}"#,
        parameters: &[
            required(
                "command",
                "Comma-separated command and arguments; escape a literal comma as \\,.",
                "ls,-l,/tmp",
            ),
            RUN_AS_USER,
        ],
    },
];

/// Finds a managed template by name (`AWS-Reboot`), by name and version (`AWS-Reboot:1.0`)
/// or by ARN (`arn:aws:iot:us-east-1::jobtemplate/AWS-Reboot:1.0`).
pub fn find(name_or_arn: &str) -> Result<&'static ManagedTemplate, TemplateError> {
    let tail = name_or_arn
        .rsplit_once(":jobtemplate/")
        .map_or(name_or_arn, |(_, t)| t);
    let name = match tail.split_once(':') {
        Some((name, version)) if version == TEMPLATE_VERSION => name,
        Some(_) => return Err(TemplateError::UnknownTemplate(name_or_arn.to_owned())),
        None => tail,
    };
    MANAGED_TEMPLATES
        .iter()
        .find(|t| t.name == name)
        .ok_or_else(|| TemplateError::UnknownTemplate(name_or_arn.to_owned()))
}

/// The ARN of a managed template in a region (managed templates have no account id).
pub fn arn(region: &str, template: &ManagedTemplate) -> String {
    format!(
        "arn:aws:iot:{region}::jobtemplate/{}:{TEMPLATE_VERSION}",
        template.name
    )
}

impl ManagedTemplate {
    /// Renders the document with `documentParameters` as CreateJob does: every required
    /// parameter must be given, unknown ones are refused, missing optional ones become "".
    pub fn render(&self, params: &BTreeMap<String, String>) -> Result<String, TemplateError> {
        if let Some(unknown) = params
            .keys()
            .find(|k| !self.parameters.iter().any(|p| p.key == k.as_str()))
        {
            return Err(TemplateError::UnknownParameter(unknown.clone()));
        }
        let mut full = BTreeMap::new();
        for p in self.parameters {
            let value = match params.get(p.key) {
                Some(v) => v.clone(),
                None if p.optional => String::new(),
                None => return Err(TemplateError::MissingParameter(p.key.to_owned())),
            };
            let len = value.chars().count();
            if let Some(max) = p.max_len.filter(|max| len > *max) {
                return Err(TemplateError::ParameterTooLong {
                    name: p.key.to_owned(),
                    len,
                    max,
                });
            }
            full.insert(p.key.to_owned(), value);
        }
        substitute(self.document, &full)
    }
}

/// Replaces every `${aws:iot:parameter:NAME}` in a JSON document with `params[NAME]`.
///
/// A placeholder inside a JSON string gets the value JSON-escaped (quotes, backslashes,
/// control characters), so no value can change the document's structure; a placeholder
/// outside any string becomes a JSON string literal. A placeholder without a value is an
/// error naming it, and so is a value no placeholder uses (it is almost certainly a typo).
/// Values are inserted once: a value that itself looks like a placeholder stays literal.
pub fn substitute(
    document: &str,
    params: &BTreeMap<String, String>,
) -> Result<String, TemplateError> {
    let mut out = String::with_capacity(document.len());
    let mut used = vec![false; params.len()];
    let mut in_string = false;
    let mut escaped = false;
    let mut rest = document;
    while let Some(c) = rest.chars().next() {
        if let Some(name) = placeholder_at(rest) {
            let (index, value) = params
                .iter()
                .enumerate()
                .find(|(_, (k, _))| k.as_str() == name)
                .map(|(i, (_, v))| (i, v))
                .ok_or_else(|| TemplateError::MissingParameter(name.to_owned()))?;
            used[index] = true;
            let quoted = serde_json::Value::String(value.clone()).to_string();
            if in_string {
                out.push_str(&quoted[1..quoted.len() - 1]);
            } else {
                out.push_str(&quoted);
            }
            rest = &rest[PLACEHOLDER_PREFIX.len() + name.len() + 1..];
            escaped = false;
            continue;
        }
        if in_string {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    if let Some((name, _)) = params
        .iter()
        .zip(&used)
        .find(|(_, used)| !**used)
        .map(|(p, _)| p)
    {
        return Err(TemplateError::UnknownParameter(name.clone()));
    }
    Ok(out)
}

/// The NAME of a well-formed placeholder at the start of `s` (not inside an escape sequence:
/// the caller only asks at character boundaries outside a `\` escape).
fn placeholder_at(s: &str) -> Option<&str> {
    let after = s.strip_prefix(PLACEHOLDER_PREFIX)?;
    let end = after.find('}')?;
    let name = &after[..end];
    let valid = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.');
    valid.then_some(name)
}

#[cfg(test)]
mod tests;
