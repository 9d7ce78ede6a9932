//! Typed, path-tracking reads of JSON fields. Each read records a [`DocumentError`] naming the
//! exact field (`steps[1].action.input.handler`) instead of silently keeping a default, which
//! is what AWS's client does with a field of the wrong type.
//!
//! Like AWS's client: keys are case-sensitive, `null` counts as absent, unknown keys are
//! ignored. Unlike it: a wrong type is an error, and booleans may be JSON booleans or the
//! strings `"true"`/`"false"`.

use serde_json::{Map, Value};

use super::DocumentError;

pub(super) type Errors = Vec<DocumentError>;

/// `parent.key`, or `key` at the root.
pub(super) fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

pub(super) fn index(parent: &str, i: usize) -> String {
    format!("{parent}[{i}]")
}

pub(super) fn wrong_type(path: String, expected: &'static str) -> DocumentError {
    DocumentError::WrongType { path, expected }
}

pub(super) fn invalid(path: String, message: impl Into<String>) -> DocumentError {
    DocumentError::Invalid {
        path,
        message: message.into(),
    }
}

/// A JSON object and where it sits in the document.
#[derive(Clone, Copy)]
pub(super) struct Obj<'a> {
    pub map: &'a Map<String, Value>,
    pub path: &'a str,
}

impl<'a> Obj<'a> {
    pub fn path_of(&self, key: &str) -> String {
        join(self.path, key)
    }

    /// The value of `key`; `null` counts as absent.
    pub fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    pub fn has(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    pub fn opt_str(&self, key: &str, errs: &mut Errors) -> Option<&'a str> {
        match self.get(key)? {
            Value::String(s) => Some(s),
            _ => {
                errs.push(wrong_type(self.path_of(key), "a string"));
                None
            }
        }
    }

    /// A required, non-empty string.
    pub fn req_str(&self, key: &str, errs: &mut Errors) -> Option<&'a str> {
        if !self.has(key) {
            errs.push(DocumentError::Missing {
                path: self.path_of(key),
            });
            return None;
        }
        let s = self.opt_str(key, errs)?;
        if s.is_empty() {
            errs.push(invalid(self.path_of(key), "must not be empty"));
            return None;
        }
        Some(s)
    }

    pub fn opt_array(&self, key: &str, errs: &mut Errors) -> Option<&'a Vec<Value>> {
        match self.get(key)? {
            Value::Array(a) => Some(a),
            _ => {
                errs.push(wrong_type(self.path_of(key), "an array"));
                None
            }
        }
    }

    /// The object at `key`, if present.
    pub fn opt_obj(&self, key: &str, errs: &mut Errors) -> Option<&'a Map<String, Value>> {
        match self.get(key)? {
            Value::Object(m) => Some(m),
            _ => {
                errs.push(wrong_type(self.path_of(key), "an object"));
                None
            }
        }
    }

    pub fn req_obj(&self, key: &str, errs: &mut Errors) -> Option<&'a Map<String, Value>> {
        if !self.has(key) {
            errs.push(DocumentError::Missing {
                path: self.path_of(key),
            });
            return None;
        }
        self.opt_obj(key, errs)
    }

    /// A boolean flag: `true`/`false` or `"true"`/`"false"`; absent is false.
    pub fn flag(&self, key: &str, errs: &mut Errors) -> bool {
        match self.get(key) {
            None => false,
            Some(Value::Bool(b)) => *b,
            Some(Value::String(s)) if s == "true" => true,
            Some(Value::String(s)) if s == "false" => false,
            Some(_) => {
                errs.push(wrong_type(
                    self.path_of(key),
                    "true or false (a JSON boolean or the string \"true\" or \"false\")",
                ));
                false
            }
        }
    }

    /// A non-negative integer: a JSON number with an integral value, or a string of digits.
    pub fn opt_uint(&self, key: &str, errs: &mut Errors) -> Option<u64> {
        let v = self.get(key)?;
        let n = match v {
            Value::Number(n) => n.as_u64().or_else(|| {
                n.as_f64()
                    .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f <= u32::MAX as f64)
                    .map(|f| f as u64)
            }),
            Value::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
                s.parse().ok()
            }
            _ => None,
        };
        if n.is_none() {
            errs.push(wrong_type(self.path_of(key), "a non-negative integer"));
        }
        n
    }

    /// An optional array whose elements must all be strings.
    pub fn string_list(&self, key: &str, errs: &mut Errors) -> Option<Vec<String>> {
        let arr = self.opt_array(key, errs)?;
        let path = self.path_of(key);
        let mut out = Vec::with_capacity(arr.len());
        let mut ok = true;
        for (i, v) in arr.iter().enumerate() {
            match v {
                Value::String(s) => out.push(s.clone()),
                _ => {
                    errs.push(wrong_type(index(&path, i), "a string"));
                    ok = false;
                }
            }
        }
        ok.then_some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn with<T>(v: Value, f: impl FnOnce(Obj<'_>, &mut Errors) -> T) -> (T, Errors) {
        let map = v.as_object().unwrap().clone();
        let mut errs = Errors::new();
        let out = f(
            Obj {
                map: &map,
                path: "a",
            },
            &mut errs,
        );
        (out, errs)
    }

    #[test]
    fn flags_accept_booleans_and_their_strings() {
        for (v, expected) in [
            (json!(true), true),
            (json!(false), false),
            (json!("true"), true),
            (json!("false"), false),
            (Value::Null, false),
        ] {
            let (b, errs) = with(json!({ "f": v }), |o, e| o.flag("f", e));
            assert_eq!(b, expected);
            assert!(errs.is_empty());
        }
        for bad in [json!("TRUE"), json!("yes"), json!(1), json!([])] {
            let (_, errs) = with(json!({ "f": bad }), |o, e| o.flag("f", e));
            assert_eq!(errs.len(), 1);
            assert_eq!(errs[0].path(), Some("a.f"));
        }
    }

    #[test]
    fn integers() {
        for (v, expected) in [
            (json!(8), Some(8)),
            (json!(8.0), Some(8)),
            (json!("8"), Some(8)),
            (json!(0), Some(0)),
        ] {
            let (n, errs) = with(json!({ "n": v }), |o, e| o.opt_uint("n", e));
            assert_eq!(n, expected);
            assert!(errs.is_empty());
        }
        for bad in [json!(-1), json!(1.5), json!("8x"), json!(""), json!(true)] {
            let (n, errs) = with(json!({ "n": bad }), |o, e| o.opt_uint("n", e));
            assert_eq!(n, None);
            assert_eq!(errs.len(), 1, "{errs:?}");
        }
    }

    #[test]
    fn strings_and_lists() {
        let (s, errs) = with(json!({"s": 5}), |o, e| o.req_str("s", e).map(str::to_owned));
        assert_eq!(s, None);
        assert_eq!(errs[0].to_string(), "a.s: must be a string");
        let (_, errs) = with(json!({"s": null}), |o, e| {
            o.req_str("s", e).map(str::to_owned)
        });
        assert_eq!(errs[0].to_string(), "a.s: is required");
        let (_, errs) = with(json!({"s": ""}), |o, e| {
            o.req_str("s", e).map(str::to_owned)
        });
        assert_eq!(errs[0].to_string(), "a.s: must not be empty");
        let (l, errs) = with(json!({"l": ["x", 1, null]}), |o, e| o.string_list("l", e));
        assert_eq!(l, None);
        let paths: Vec<_> = errs.iter().filter_map(|e| e.path()).collect();
        assert_eq!(paths, ["a.l[1]", "a.l[2]"]);
    }
}
