//! Printing the effective configuration with secrets redacted.
//!
//! The configuration holds paths, never key material (`mqtt.key` is the key's *path*,
//! which may be shown). Redaction is still a function of its own, applied to every
//! printed value, so a secret-bearing key added later (a password, token or PIN) is
//! hidden without anyone having to remember it.

use super::Config;

pub const REDACTED: &str = "<redacted>";

/// Optional keys, listed in the output when unset (TOML has no null to show them with).
const OPTIONAL_KEYS: &[(&str, &str, &str)] = &[
    ("mqtt", "endpoint", "required"),
    ("mqtt", "thing_name", "required"),
    ("mqtt", "client_id", "the thing name is used"),
    ("mqtt", "cert", "required"),
    ("mqtt", "key", "required"),
    ("mqtt", "root_ca", "the system's root CAs are used"),
    ("log", "file", "no log file"),
];

/// Whether a key's value is secret by its name: any word of it is one of
/// password, passphrase, secret, token, pin or credentials.
pub fn is_secret_key(name: &str) -> bool {
    name.split(['_', '-', '.']).any(|word| {
        matches!(
            word.to_ascii_lowercase().as_str(),
            "password" | "passphrase" | "secret" | "token" | "pin" | "credentials"
        )
    })
}

/// Replaces the value of every secret key, at any depth, with [`REDACTED`].
pub fn redact(value: &mut toml::Value) {
    match value {
        toml::Value::Table(table) => {
            for (name, inner) in table.iter_mut() {
                if is_secret_key(name) {
                    *inner = toml::Value::String(REDACTED.to_string());
                } else {
                    redact(inner);
                }
            }
        }
        toml::Value::Array(items) => items.iter_mut().for_each(redact),
        _ => {}
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RedactError {
    #[error("cannot render the configuration as TOML: {0}")]
    Render(String),
}

/// Sections in the order the documentation presents them.
const SECTION_ORDER: &[&str] = &["mqtt", "jobs", "log", "paths"];

/// The configuration as TOML, secrets redacted, sections in documentation order and
/// unset optional keys listed as comments in their section.
pub fn to_redacted_toml(config: &Config) -> Result<String, RedactError> {
    let mut value =
        toml::Value::try_from(config).map_err(|e| RedactError::Render(e.to_string()))?;
    redact(&mut value);
    let toml::Value::Table(mut root) = value else {
        return Err(RedactError::Render("not a table".to_string()));
    };
    let mut names: Vec<String> = SECTION_ORDER.iter().map(|s| s.to_string()).collect();
    names.extend(
        root.keys()
            .filter(|k| !SECTION_ORDER.contains(&k.as_str()))
            .cloned(),
    );

    let mut text = String::new();
    for name in names {
        let Some(section) = root.remove(&name) else {
            continue;
        };
        let mut single = toml::Table::new();
        let unset: Vec<String> = OPTIONAL_KEYS
            .iter()
            .filter(|(s, key, _)| *s == name && section.get(key).is_none())
            .map(|(_, key, meaning)| format!("# {key} is unset ({meaning})\n"))
            .collect();
        single.insert(name, section);
        if !text.is_empty() {
            text.push('\n');
        }
        text.push_str(
            &toml::to_string_pretty(&single).map_err(|e| RedactError::Render(e.to_string()))?,
        );
        text.extend(unset);
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_names() {
        for name in [
            "password",
            "http_proxy_password",
            "secure-element-pin",
            "token",
            "aws.secret",
        ] {
            assert!(is_secret_key(name), "{name}");
        }
        for name in [
            "key",
            "cert",
            "root_ca",
            "thing_name",
            "pinned",
            "keep_alive_secs",
        ] {
            assert!(!is_secret_key(name), "{name}");
        }
    }

    #[test]
    fn nested_secrets_are_redacted_and_paths_are_kept() {
        let mut value: toml::Value = toml::from_str(
            "[mqtt]\nkey = \"/etc/k.pem\"\n[proxy]\npassword = \"hunter2\"\n[[list]]\ntoken = \"t\"\n",
        )
        .unwrap();
        redact(&mut value);
        let text = toml::to_string(&value).unwrap();
        assert!(
            !text.contains("hunter2") && !text.contains("\"t\""),
            "{text}"
        );
        assert!(text.contains("/etc/k.pem"), "{text}");
        assert_eq!(value["proxy"]["password"].as_str(), Some(REDACTED));
    }

    #[test]
    fn unset_optional_keys_are_listed() {
        let text = to_redacted_toml(&Config::default()).unwrap();
        assert!(text.starts_with("[mqtt]\n"), "{text}");
        assert!(
            text.contains("\n# endpoint is unset (required)\n"),
            "{text}"
        );
        assert!(text.contains("port = 8883"), "{text}");
        let reparsed: Config = toml::from_str(&text).unwrap();
        assert_eq!(reparsed, Config::default());
    }
}
