//! `statusDetails` limits of the AWS IoT Jobs device API (reference §2.7): checking a map (the
//! local service rejects bad ones with `InvalidRequest`) and cleaning one (the daemon never
//! publishes a map AWS would reject).
//!
//! Limits: at most 10 pairs; keys 1–128 characters from `[a-zA-Z0-9:_-]`; values 1–1024
//! characters with no character of Unicode category C (`[^\p{C}]+`: no newlines, tabs or other
//! control, format or private-use characters). Lengths count Unicode scalar values.
//! Unassigned code points (also category C) are not detected: that needs Unicode tables.

use super::wire::StatusDetails;

pub const MAX_PAIRS: usize = 10;
pub const MAX_KEY_CHARS: usize = 128;
pub const MAX_VALUE_CHARS: usize = 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StatusDetailsError {
    #[error("statusDetails has {0} pairs; at most 10 are allowed")]
    TooManyPairs(usize),
    #[error("statusDetails key {0:?} must be 1-128 characters from [a-zA-Z0-9:_-]")]
    InvalidKey(String),
    #[error("statusDetails.{0} must not be empty")]
    EmptyValue(String),
    #[error("statusDetails.{key} is {chars} characters; at most 1024 are allowed")]
    ValueTooLong { key: String, chars: usize },
    #[error("statusDetails.{0} contains a control character")]
    ControlCharacter(String),
}

/// True for keys matching `[a-zA-Z0-9:_-]{1,128}`.
pub fn is_valid_key(key: &str) -> bool {
    (1..=MAX_KEY_CHARS).contains(&key.len())
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b':' | b'_' | b'-'))
}

/// Characters of Unicode general category C that can be named without tables: control (Cc),
/// format (Cf), private use (Co) and the noncharacters.
pub fn is_forbidden_char(c: char) -> bool {
    let u = c as u32;
    c.is_control()
        || matches!(u,
            0xAD | 0x600..=0x605 | 0x61C | 0x6DD | 0x70F | 0x890..=0x891 | 0x8E2 | 0x180E
            | 0x200B..=0x200F | 0x202A..=0x202E | 0x2060..=0x2064 | 0x2066..=0x206F
            | 0xFEFF | 0xFFF9..=0xFFFB | 0x110BD | 0x110CD | 0x13430..=0x1343F
            | 0x1BCA0..=0x1BCA3 | 0x1D173..=0x1D17A | 0xE0001 | 0xE0020..=0xE007F)
        || matches!(u, 0xE000..=0xF8FF | 0xF0000..=0xFFFFD | 0x100000..=0x10FFFD)
        || matches!(u, 0xFDD0..=0xFDEF)
        || (u & 0xFFFE) == 0xFFFE
}

/// Check a map against AWS's limits, reporting the first problem.
pub fn validate(details: &StatusDetails) -> Result<(), StatusDetailsError> {
    if details.len() > MAX_PAIRS {
        return Err(StatusDetailsError::TooManyPairs(details.len()));
    }
    for (key, value) in details {
        if !is_valid_key(key) {
            return Err(StatusDetailsError::InvalidKey(key.clone()));
        }
        if value.is_empty() {
            return Err(StatusDetailsError::EmptyValue(key.clone()));
        }
        let chars = value.chars().count();
        if chars > MAX_VALUE_CHARS {
            return Err(StatusDetailsError::ValueTooLong {
                key: key.clone(),
                chars,
            });
        }
        if value.chars().any(is_forbidden_char) {
            return Err(StatusDetailsError::ControlCharacter(key.clone()));
        }
    }
    Ok(())
}

/// Which end of an over-long value survives: the head for messages (`reason`), the tail for
/// output (`stdout`, `stderr`), where the last lines say what went wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    Head,
    Tail,
}

/// A key made acceptable: forbidden characters become `_`, cut to 128 characters. `None` when
/// nothing is left.
pub fn sanitize_key(key: &str) -> Option<String> {
    let cleaned: String = key
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, ':' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .take(MAX_KEY_CHARS)
        .collect();
    (!cleaned.is_empty()).then_some(cleaned)
}

/// A value made acceptable: every forbidden character (newline, tab, ...) becomes a space, the
/// ends are trimmed, and the value is cut to 1024 characters keeping `keep`. `None` when nothing
/// is left (AWS refuses empty values).
pub fn sanitize_value(value: &str, keep: Keep) -> Option<String> {
    let cleaned: String = value
        .chars()
        .map(|c| if is_forbidden_char(c) { ' ' } else { c })
        .collect();
    let trimmed = cleaned.trim();
    let n = trimmed.chars().count();
    let out: String = if n <= MAX_VALUE_CHARS {
        trimmed.to_owned()
    } else {
        match keep {
            Keep::Head => trimmed.chars().take(MAX_VALUE_CHARS).collect(),
            Keep::Tail => trimmed.chars().skip(n - MAX_VALUE_CHARS).collect(),
        }
    };
    (!out.is_empty()).then_some(out)
}

/// Clean a whole map: keys and values as above (values keep their head), empty values dropped,
/// at most 10 pairs (the first in key order). Colliding cleaned keys keep the first.
pub fn sanitize(details: &StatusDetails) -> StatusDetails {
    let mut b = Builder::new();
    for (k, v) in details {
        b = b.head(k, v);
    }
    b.build()
}

/// Builds a map that always satisfies [`validate`]: the first 10 distinct keys inserted win.
#[derive(Debug, Clone, Default)]
pub struct Builder {
    map: StatusDetails,
}

impl Builder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Insert a value that keeps its head when too long.
    pub fn head(self, key: &str, value: &str) -> Self {
        self.insert(key, value, Keep::Head)
    }

    /// Insert a value that keeps its tail when too long.
    pub fn tail(self, key: &str, value: &str) -> Self {
        self.insert(key, value, Keep::Tail)
    }

    pub fn insert(mut self, key: &str, value: &str, keep: Keep) -> Self {
        if let (Some(k), Some(v)) = (sanitize_key(key), sanitize_value(value, keep)) {
            if self.map.contains_key(&k) || self.map.len() < MAX_PAIRS {
                self.map.entry(k).or_insert(v);
            }
        }
        self
    }

    pub fn build(self) -> StatusDetails {
        self.map
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> StatusDetails {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn validate_accepts_limits_and_rejects_each_violation() {
        let max_key = "k".repeat(128);
        let max_val = "é".repeat(1024);
        assert_eq!(
            validate(&map(&[(&max_key, &max_val), ("a:b_c-1", "x")])),
            Ok(())
        );

        let eleven: StatusDetails = (0..11).map(|i| (format!("k{i}"), "v".into())).collect();
        assert_eq!(validate(&eleven), Err(StatusDetailsError::TooManyPairs(11)));
        let ten: StatusDetails = (0..10).map(|i| (format!("k{i}"), "v".into())).collect();
        assert_eq!(validate(&ten), Ok(()));

        for bad in ["", "a b", "a.b", "ä", &"k".repeat(129)] {
            assert_eq!(
                validate(&map(&[(bad, "v")])),
                Err(StatusDetailsError::InvalidKey(bad.into()))
            );
        }
        assert_eq!(
            validate(&map(&[("k", "")])),
            Err(StatusDetailsError::EmptyValue("k".into()))
        );
        assert_eq!(
            validate(&map(&[("k", &"x".repeat(1025))])),
            Err(StatusDetailsError::ValueTooLong {
                key: "k".into(),
                chars: 1025
            })
        );
        for bad in [
            "a\nb",
            "tab\there",
            "nul\0",
            "bom\u{feff}",
            "zw\u{200b}",
            "pua\u{e000}",
        ] {
            assert_eq!(
                validate(&map(&[("k", bad)])),
                Err(StatusDetailsError::ControlCharacter("k".into())),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn sanitize_value_replaces_control_characters_and_trims() {
        assert_eq!(
            sanitize_value("line1\nline2\r\n\tend\n", Keep::Tail).as_deref(),
            Some("line1 line2   end")
        );
        assert_eq!(sanitize_value("\n\n", Keep::Head), None);
        assert_eq!(sanitize_value("", Keep::Head), None);
    }

    #[test]
    fn sanitize_value_keeps_head_or_tail() {
        let long: String = (0..2000)
            .map(|i| char::from(b'a' + (i % 26) as u8))
            .collect();
        let head = sanitize_value(&long, Keep::Head).unwrap();
        let tail = sanitize_value(&long, Keep::Tail).unwrap();
        assert_eq!(head.chars().count(), 1024);
        assert_eq!(tail.chars().count(), 1024);
        assert!(long.starts_with(&head));
        assert!(long.ends_with(&tail));
        // Multi-byte characters are never split.
        let wide = "€".repeat(1500);
        assert_eq!(sanitize_value(&wide, Keep::Tail).unwrap(), "€".repeat(1024));
    }

    #[test]
    fn sanitized_maps_always_validate() {
        let mut m: StatusDetails = (0..15)
            .map(|i| (format!("key {i}!"), format!("v\n{i}")))
            .collect();
        m.insert("empty".into(), "\n".into());
        m.insert("long".into(), "x".repeat(5000));
        let clean = sanitize(&m);
        assert_eq!(validate(&clean), Ok(()));
        assert_eq!(clean.len(), 10);
        assert!(!clean.contains_key("empty"));
        assert_eq!(clean["key_0_"], "v 0");
    }

    #[test]
    fn builder_keeps_first_ten_and_ends() {
        let mut b = Builder::new()
            .head("reason", &format!("step failed{}", "!".repeat(2000)))
            .tail("stderr", &format!("{}last line\n", "noise\n".repeat(500)));
        for i in 0..20 {
            b = b.head(&format!("k{i}"), "v");
        }
        let m = b.head("reason", "second reason is ignored").build();
        assert_eq!(validate(&m), Ok(()));
        assert_eq!(m.len(), 10);
        assert!(m["reason"].starts_with("step failed"));
        assert!(m["stderr"].ends_with("noise last line"));
        assert!(m.contains_key("k7") && !m.contains_key("k8"));
    }

    #[test]
    fn sanitize_output_always_validates_on_random_input() {
        let mut rng = fastrand::Rng::with_seed(7);
        let alphabet = [
            'a', 'Z', '9', ':', ' ', '\n', '\t', '\0', '\u{7f}', '\u{200b}', 'é', '€', '😀',
            '\u{e000}', '\u{ffff}',
        ];
        let mut text = |max: usize| -> String {
            let n = rng.usize(0..max);
            (0..n)
                .map(|_| alphabet[rng.usize(0..alphabet.len())])
                .collect()
        };
        for _ in 0..300 {
            let m: StatusDetails = (0..14).map(|_| (text(140), text(1500))).collect();
            let clean = sanitize(&m);
            assert_eq!(validate(&clean), Ok(()), "{m:?}");
        }
    }

    #[test]
    fn sanitize_key_replaces_and_cuts() {
        assert_eq!(sanitize_key("my key.x").as_deref(), Some("my_key_x"));
        assert_eq!(sanitize_key("").as_deref(), None);
        assert_eq!(sanitize_key(&"a".repeat(300)).unwrap().len(), 128);
    }
}
