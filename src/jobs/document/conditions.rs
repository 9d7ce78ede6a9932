//! Document `conditions`: AWS's client parses them and never evaluates them; we evaluate them
//! against [`HostFacts`] so a job meant for other hosts is REJECTED instead of run.
//!
//! Keys: `operatingSystem` (os-release `ID`, case-insensitive), `operatingSystemVersion`
//! (`VERSION_ID`) and `architecture` (`x86_64`/`amd64`, `aarch64`/`arm64`, `arm`/`armhf`/...,
//! compared after normalising). Types: `stringEqual` (default: the fact is one of the values)
//! and `stringNotEqual` (it is none of them). A condition this build cannot evaluate (unknown
//! key or type) counts as not met: skipping a guard would run a job where it was not meant to.
//! Validation only applies AWS's rules (non-empty key, non-empty list of string values), so
//! documents AWS accepts still parse.

use serde::{Deserialize, Serialize};

use super::parse::{index, invalid, Errors, Obj};
use super::DocumentError;

pub const KNOWN_KEYS: [&str; 3] = ["operatingSystem", "operatingSystemVersion", "architecture"];

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConditionType {
    StringEqual,
    StringNotEqual,
    /// A type this build does not evaluate (kept so validation stays as lenient as AWS's).
    Other(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Condition {
    pub key: String,
    pub values: Vec<String>,
    pub kind: ConditionType,
}

/// What conditions are evaluated against. Built by [`HostFacts::read`] on a real host, by hand
/// in tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostFacts {
    /// os-release `ID` (e.g. `ubuntu`, `debian`, `rhel`).
    pub operating_system: Option<String>,
    /// os-release `VERSION_ID` (e.g. `24.04`).
    pub operating_system_version: Option<String>,
    /// CPU architecture (e.g. `x86_64`, `aarch64`).
    pub architecture: String,
}

/// The fields of os-release we use.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OsRelease {
    pub id: Option<String>,
    pub version_id: Option<String>,
}

/// Parse os-release text (`KEY=value` lines; values optionally quoted; `#` comments).
pub fn parse_os_release(text: &str) -> OsRelease {
    let mut out = OsRelease::default();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') {
            continue;
        }
        let Some((key, raw)) = line.split_once('=') else {
            continue;
        };
        let value = unquote(raw.trim());
        match key.trim() {
            "ID" if !value.is_empty() => out.id = Some(value),
            "VERSION_ID" if !value.is_empty() => out.version_id = Some(value),
            _ => {}
        }
    }
    out
}

fn unquote(raw: &str) -> String {
    let inner = match raw.as_bytes() {
        [q @ (b'"' | b'\''), .., last] if last == q && raw.len() >= 2 => &raw[1..raw.len() - 1],
        _ => raw,
    };
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(next) = chars.next() {
                out.push(next);
            }
        } else {
            out.push(c);
        }
    }
    out
}

impl HostFacts {
    /// Facts of this host: `/etc/os-release` (else `/usr/lib/os-release`) and the architecture
    /// this binary was built for. The only function of the document module that reads files.
    pub fn read() -> HostFacts {
        let text = std::fs::read_to_string("/etc/os-release")
            .or_else(|_| std::fs::read_to_string("/usr/lib/os-release"))
            .unwrap_or_default();
        let os = parse_os_release(&text);
        HostFacts {
            operating_system: os.id,
            operating_system_version: os.version_id,
            architecture: std::env::consts::ARCH.to_owned(),
        }
    }
}

/// One spelling per architecture, so `amd64` in a document matches an `x86_64` host.
fn normalise_arch(a: &str) -> String {
    let a = a.to_ascii_lowercase();
    match a.as_str() {
        "x86_64" | "amd64" | "x64" => "x86_64".to_owned(),
        "aarch64" | "arm64" => "aarch64".to_owned(),
        "x86" | "i386" | "i486" | "i586" | "i686" => "x86".to_owned(),
        "arm" | "armhf" | "armel" | "armv6l" | "armv7l" | "armv7" => "arm".to_owned(),
        "riscv64" | "riscv64gc" => "riscv64".to_owned(),
        "powerpc64le" | "ppc64le" | "ppc64el" => "powerpc64le".to_owned(),
        _ => a,
    }
}

/// Read `conditions` with AWS's rules: each element an object with a non-empty string `key`,
/// a non-empty array of strings `value`, and an optional string `type`.
pub(super) fn parse(doc: Obj<'_>, errs: &mut Errors) -> Vec<Condition> {
    let Some(list) = doc.opt_array("conditions", errs) else {
        return Vec::new();
    };
    let base = doc.path_of("conditions");
    let mut out = Vec::new();
    for (i, item) in list.iter().enumerate() {
        let path = index(&base, i);
        let Some(map) = item.as_object() else {
            errs.push(DocumentError::WrongType {
                path,
                expected: "an object",
            });
            continue;
        };
        let obj = Obj { map, path: &path };
        let key = obj.req_str("key", errs);
        let values = if obj.has("value") {
            obj.string_list("value", errs)
        } else {
            errs.push(DocumentError::Missing {
                path: obj.path_of("value"),
            });
            None
        };
        if values.as_ref().is_some_and(Vec::is_empty) {
            errs.push(invalid(
                obj.path_of("value"),
                "must list at least one value",
            ));
        }
        let kind = match obj.opt_str("type", errs) {
            None | Some("stringEqual") => ConditionType::StringEqual,
            Some("stringNotEqual") => ConditionType::StringNotEqual,
            Some(other) => ConditionType::Other(other.to_owned()),
        };
        if let (Some(key), Some(values)) = (key, values) {
            out.push(Condition {
                key: key.to_owned(),
                values,
                kind,
            });
        }
    }
    out
}

pub(super) fn evaluate(
    conditions: &[Condition],
    facts: &HostFacts,
) -> Result<(), Vec<DocumentError>> {
    let errs: Vec<DocumentError> = conditions
        .iter()
        .enumerate()
        .filter_map(|(i, c)| {
            check(c, facts)
                .err()
                .map(|message| DocumentError::ConditionNotMet {
                    path: format!("conditions[{i}]"),
                    message,
                })
        })
        .collect();
    if errs.is_empty() {
        Ok(())
    } else {
        Err(errs)
    }
}

/// How a fact is compared with a listed value.
type Matcher = fn(&str, &str) -> bool;

fn check(c: &Condition, facts: &HostFacts) -> Result<(), String> {
    let (fact, matches): (Option<&str>, Matcher) = match c.key.as_str() {
        "operatingSystem" => (facts.operating_system.as_deref(), |f, v| {
            f.eq_ignore_ascii_case(v)
        }),
        "operatingSystemVersion" => (facts.operating_system_version.as_deref(), |f, v| f == v),
        "architecture" => (Some(facts.architecture.as_str()), |f, v| {
            normalise_arch(f) == normalise_arch(v)
        }),
        other => {
            return Err(format!(
                "unknown condition key {other:?} (this host evaluates {})",
                KNOWN_KEYS.join(", ")
            ))
        }
    };
    let Some(fact) = fact else {
        return Err(format!("{} of this host is unknown", c.key));
    };
    let listed = c.values.iter().any(|v| matches(fact, v));
    let values = c.values.join(", ");
    match &c.kind {
        ConditionType::StringEqual if listed => Ok(()),
        ConditionType::StringEqual => Err(format!("{} is {fact:?}, not one of [{values}]", c.key)),
        ConditionType::StringNotEqual if !listed => Ok(()),
        ConditionType::StringNotEqual => Err(format!("{} is {fact:?}, one of [{values}]", c.key)),
        ConditionType::Other(t) => Err(format!(
            "unknown condition type {t:?} (this host evaluates stringEqual, stringNotEqual)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cond(key: &str, values: &[&str], kind: ConditionType) -> Condition {
        Condition {
            key: key.into(),
            values: values.iter().map(|s| s.to_string()).collect(),
            kind,
        }
    }

    fn ubuntu_x86() -> HostFacts {
        HostFacts {
            operating_system: Some("ubuntu".into()),
            operating_system_version: Some("24.04".into()),
            architecture: "x86_64".into(),
        }
    }

    #[test]
    fn os_release_parsing() {
        let text = "# comment\nNAME=\"Ubuntu\"\nID=ubuntu\nID_LIKE=debian\nVERSION_ID=\"24.04\"\n\
                    PRETTY_NAME='Ubuntu 24.04 \\\"LTS\\\"'\nbroken line\n";
        let os = parse_os_release(text);
        assert_eq!(os.id.as_deref(), Some("ubuntu"));
        assert_eq!(os.version_id.as_deref(), Some("24.04"));
        assert_eq!(parse_os_release(""), OsRelease::default());
        assert_eq!(parse_os_release("ID=\"\"\n").id, None);
    }

    #[test]
    fn string_equal_and_not_equal() {
        use ConditionType::*;
        let f = ubuntu_x86();
        let ok = |c: Condition| evaluate(&[c], &f).is_ok();
        assert!(ok(cond(
            "operatingSystem",
            &["Ubuntu", "redhat"],
            StringEqual
        )));
        assert!(!ok(cond("operatingSystem", &["debian"], StringEqual)));
        assert!(ok(cond("operatingSystem", &["debian"], StringNotEqual)));
        assert!(!ok(cond("operatingSystem", &["ubuntu"], StringNotEqual)));
        assert!(ok(cond(
            "operatingSystemVersion",
            &["22.04", "24.04"],
            StringEqual
        )));
        assert!(ok(cond("architecture", &["amd64"], StringEqual)));
        assert!(!ok(cond("architecture", &["arm64"], StringEqual)));
        let arm = HostFacts {
            architecture: "aarch64".into(),
            ..f.clone()
        };
        assert!(evaluate(&[cond("architecture", &["arm64"], StringEqual)], &arm).is_ok());
    }

    #[test]
    fn unknown_keys_types_and_facts_are_not_met() {
        let f = ubuntu_x86();
        let errs = evaluate(
            &[
                cond("operatingSystem", &["ubuntu"], ConditionType::StringEqual),
                cond("OS", &["16.0"], ConditionType::StringEqual),
                cond(
                    "architecture",
                    &["x86_64"],
                    ConditionType::Other("regex".into()),
                ),
            ],
            &f,
        )
        .unwrap_err();
        assert_eq!(errs.len(), 2);
        assert_eq!(errs[0].path(), Some("conditions[1]"));
        assert!(errs[0].to_string().contains("unknown condition key \"OS\""));
        assert_eq!(errs[1].path(), Some("conditions[2]"));
        let no_os = HostFacts::default();
        let e = evaluate(
            &[cond(
                "operatingSystem",
                &["ubuntu"],
                ConditionType::StringEqual,
            )],
            &no_os,
        )
        .unwrap_err();
        assert_eq!(
            e[0].to_string(),
            "conditions[0]: condition not met: operatingSystem of this host is unknown"
        );
    }

    #[test]
    fn unmet_message_names_fact_and_values() {
        let e = evaluate(
            &[cond(
                "operatingSystem",
                &["debian", "rhel"],
                ConditionType::StringEqual,
            )],
            &ubuntu_x86(),
        )
        .unwrap_err();
        assert_eq!(
            e[0].to_string(),
            "conditions[0]: condition not met: operatingSystem is \"ubuntu\", not one of [debian, rhel]"
        );
    }
}
