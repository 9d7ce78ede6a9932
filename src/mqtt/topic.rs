//! MQTT topic names and filters (MQTT 3.1.1 §4.7): validation and matching.
//!
//! We route incoming messages with our own matcher because `rumqttc::matches` never
//! matches topics beginning with `$`, and every AWS IoT Jobs topic starts with `$aws/`.
//! Per §4.7.2, a filter starting with a wildcard (`#`, `+`) must not match a `$` topic;
//! a filter that spells out the `$` level does.

use super::MqttError;

/// Longest topic or filter MQTT allows (the length prefix is 16 bits).
const MAX_LEN: usize = 65_535;

/// Checks a topic name we are about to publish to: non-empty, no wildcards, no NUL.
pub fn validate_topic(topic: &str) -> Result<(), MqttError> {
    let bad = |reason| {
        Err(MqttError::InvalidTopic {
            what: "topic",
            value: topic.to_string(),
            reason,
        })
    };
    if topic.is_empty() {
        return bad("it is empty");
    }
    if topic.len() > MAX_LEN {
        return bad("it is longer than 65535 bytes");
    }
    if topic.contains(['+', '#']) {
        return bad("a topic name cannot contain the wildcards + or #");
    }
    if topic.contains('\0') {
        return bad("it contains a NUL character");
    }
    Ok(())
}

/// Checks a subscription filter: non-empty, `+` and `#` only as whole levels, `#` last.
pub fn validate_filter(filter: &str) -> Result<(), MqttError> {
    let bad = |reason| {
        Err(MqttError::InvalidTopic {
            what: "filter",
            value: filter.to_string(),
            reason,
        })
    };
    if filter.is_empty() {
        return bad("it is empty");
    }
    if filter.len() > MAX_LEN {
        return bad("it is longer than 65535 bytes");
    }
    if filter.contains('\0') {
        return bad("it contains a NUL character");
    }
    let mut levels = filter.split('/').peekable();
    while let Some(level) = levels.next() {
        let is_last = levels.peek().is_none();
        match level {
            "#" if !is_last => return bad("# must be the last level"),
            "#" | "+" => {}
            _ if level.contains(['#', '+']) => return bad("wildcards must occupy a whole level"),
            _ => {}
        }
    }
    Ok(())
}

/// Whether a (valid) filter matches a (valid) topic name, `$` topics included.
pub fn filter_matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && filter.starts_with(['+', '#']) {
        return false;
    }
    let mut filter_levels = filter.split('/');
    let mut topic_levels = topic.split('/');
    loop {
        match (filter_levels.next(), topic_levels.next()) {
            // `#` also matches the parent level: "a/#" matches "a".
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(f), Some(t)) if f == t => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_dollar_topics_match() {
        let t = "$aws/things/t1/jobs/notify-next";
        assert!(filter_matches(t, t));
        assert!(filter_matches("$aws/things/+/jobs/notify-next", t));
        assert!(filter_matches("$aws/things/t1/jobs/#", t));
        assert!(filter_matches("$aws/#", t));
    }

    #[test]
    fn leading_wildcards_never_match_dollar_topics() {
        let t = "$aws/things/t1/jobs/notify-next";
        assert!(!filter_matches("#", t));
        assert!(!filter_matches("+/things/t1/jobs/notify-next", t));
        assert!(!filter_matches("+/#", t));
        assert!(filter_matches("#", "aws/things/t1"));
        assert!(filter_matches("+/things/t1", "aws/things/t1"));
    }

    #[test]
    fn plus_matches_exactly_one_level() {
        assert!(filter_matches("a/+/c", "a/b/c"));
        assert!(filter_matches("a/+/c", "a//c"));
        assert!(!filter_matches("a/+/c", "a/b/x/c"));
        assert!(!filter_matches("a/+", "a"));
        assert!(filter_matches("a/+", "a/"));
    }

    #[test]
    fn hash_matches_parent_and_descendants() {
        assert!(filter_matches("a/#", "a"));
        assert!(filter_matches("a/#", "a/b"));
        assert!(filter_matches("a/#", "a/b/c"));
        assert!(!filter_matches("a/#", "b/a"));
    }

    #[test]
    fn literal_levels_must_be_equal() {
        assert!(!filter_matches("a/b", "a/b/c"));
        assert!(!filter_matches("a/b/c", "a/b"));
        assert!(!filter_matches("a/b", "a/B"));
        assert!(!filter_matches(
            "$aws/things/t1/jobs/notify",
            "$aws/things/t1/jobs/notify-next"
        ));
    }

    #[test]
    fn filter_validation() {
        for ok in [
            "a",
            "#",
            "+",
            "a/+/b",
            "a/#",
            "$aws/things/+/jobs/#",
            "/",
            "a//b",
        ] {
            assert!(validate_filter(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a/#/b", "a#", "a/b+", "+a", "a\0b"] {
            assert!(validate_filter(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn topic_validation() {
        assert!(validate_topic("$aws/things/t1/jobs/start-next").is_ok());
        for bad in ["", "a/+", "a/#", "a\0"] {
            let err = validate_topic(bad).unwrap_err();
            assert_eq!(err.kind(), "invalid_topic", "{bad:?}");
        }
    }
}
