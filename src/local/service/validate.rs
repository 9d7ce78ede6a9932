//! Input checks of the control operations (AWS's patterns and limits, reference §1, §2.7,
//! §4.2), each returning `InvalidRequest` with a message that names the field.

use serde_json::Value;

use super::ServiceError;

/// Job documents are at most 32 KB (so a reply carrying one fits an MQTT message).
pub const MAX_DOCUMENT_BYTES: usize = 32_768;
/// `comment` and `description`.
pub const MAX_TEXT_CHARS: usize = 2028;
pub const MAX_REASON_CODE_CHARS: usize = 128;

fn invalid(msg: String) -> ServiceError {
    ServiceError::InvalidRequest(msg)
}

/// The document must be a UTF-8 JSON object of at most 32 KB (the SDKs model it as a map).
pub fn document(doc: &str) -> Result<Value, ServiceError> {
    if doc.len() > MAX_DOCUMENT_BYTES {
        return Err(invalid(format!(
            "document is {} bytes; the limit is {MAX_DOCUMENT_BYTES}",
            doc.len()
        )));
    }
    match serde_json::from_str::<Value>(doc) {
        Ok(v @ Value::Object(_)) => Ok(v),
        Ok(_) => Err(invalid("document must be a JSON object".to_owned())),
        Err(e) => Err(invalid(format!("document is not valid JSON: {e}"))),
    }
}

/// `comment` / `description`: at most 2028 characters, no control characters.
pub fn text(field: &str, value: Option<&str>) -> Result<(), ServiceError> {
    let Some(v) = value else { return Ok(()) };
    if v.chars().count() > MAX_TEXT_CHARS {
        return Err(invalid(format!(
            "{field} is longer than {MAX_TEXT_CHARS} characters"
        )));
    }
    if v.chars().any(char::is_control) {
        return Err(invalid(format!(
            "{field} must not contain control characters"
        )));
    }
    Ok(())
}

/// `reasonCode`: 1..128 of upper-case letters, digits and `_`.
pub fn reason_code(value: Option<&str>) -> Result<(), ServiceError> {
    let Some(v) = value else { return Ok(()) };
    let ok = (1..=MAX_REASON_CODE_CHARS).contains(&v.chars().count())
        && v.chars()
            .all(|c| c.is_uppercase() || c.is_numeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(invalid(format!(
            "reasonCode {v:?} must be 1-{MAX_REASON_CODE_CHARS} upper-case letters, digits or _"
        )))
    }
}

/// A thing or thing-group name: `[a-zA-Z0-9:_-]{1,128}`.
pub fn name(kind: &str, v: &str) -> Result<(), ServiceError> {
    if crate::jobs::topics::is_valid_thing_name(v) {
        Ok(())
    } else {
        Err(invalid(format!(
            "{kind} {v:?} must be 1-128 characters from [a-zA-Z0-9:_-]"
        )))
    }
}

/// A job or job-template id: `[a-zA-Z0-9_-]{1,64}`.
pub fn id(kind: &str, v: &str) -> Result<(), ServiceError> {
    if crate::jobs::topics::is_valid_job_id(v) {
        Ok(())
    } else {
        Err(invalid(format!(
            "{kind} {v:?} must be 1-64 characters from [a-zA-Z0-9_-]"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents() {
        assert!(document(r#"{"operation":"x"}"#).is_ok());
        assert!(document("[1]").is_err());
        assert!(document("{").is_err());
        let big = format!(r#"{{"a":"{}"}}"#, "x".repeat(MAX_DOCUMENT_BYTES));
        assert!(document(&big).is_err());
    }

    #[test]
    fn texts_and_codes() {
        assert!(text("comment", Some("fine text")).is_ok());
        assert!(text("comment", Some("line\nbreak")).is_err());
        assert!(text("comment", Some(&"x".repeat(2029))).is_err());
        assert!(reason_code(Some("USER_ABORT_2")).is_ok());
        assert!(reason_code(Some("lower")).is_err());
        assert!(reason_code(Some("")).is_err());
    }
}
