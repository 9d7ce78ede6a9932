use super::*;
use serde_json::{json, Value};

fn params(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn action(doc: &str) -> Value {
    let v: Value = serde_json::from_str(doc).unwrap();
    v["steps"][0]["action"].clone()
}

#[test]
fn every_template_document_is_json_in_aws_schema_1_0() {
    assert_eq!(MANAGED_TEMPLATES.len(), 8);
    for t in MANAGED_TEMPLATES {
        let v: Value = serde_json::from_str(t.document)
            .unwrap_or_else(|e| panic!("{}: document is not JSON: {e}", t.name));
        assert_eq!(v["version"], "1.0", "{}", t.name);
        let steps = v["steps"].as_array().unwrap();
        assert_eq!(steps.len(), 1, "{}", t.name);
        assert_eq!(
            steps[0]["action"]["runAsUser"], "${aws:iot:parameter:runAsUser}",
            "{}",
            t.name
        );
        // The action name is the template name without "AWS-".
        assert_eq!(
            steps[0]["action"]["name"],
            t.name.strip_prefix("AWS-").unwrap(),
            "{}",
            t.name
        );
    }
}

#[test]
fn every_placeholder_is_a_declared_parameter_and_every_parameter_is_used() {
    for t in MANAGED_TEMPLATES {
        let mut found = Vec::new();
        let mut rest = t.document;
        while let Some(i) = rest.find(PLACEHOLDER_PREFIX) {
            let name = placeholder_at(&rest[i..]).unwrap();
            found.push(name);
            rest = &rest[i + PLACEHOLDER_PREFIX.len()..];
        }
        found.sort_unstable();
        found.dedup();
        let mut declared: Vec<&str> = t.parameters.iter().map(|p| p.key).collect();
        declared.sort_unstable();
        assert_eq!(found, declared, "{}", t.name);
    }
}

#[test]
fn handlers_and_argument_order_match_the_shipped_scripts() {
    let expect = [
        ("AWS-Reboot", Some("reboot.sh"), vec![]),
        (
            "AWS-Download-File",
            Some("download-file.sh"),
            vec![
                "${aws:iot:parameter:downloadUrl}",
                "${aws:iot:parameter:filePath}",
            ],
        ),
        (
            "AWS-Install-Application",
            Some("install-packages.sh"),
            vec!["${aws:iot:parameter:packages}"],
        ),
        (
            "AWS-Remove-Application",
            Some("remove-packages.sh"),
            vec!["${aws:iot:parameter:packages}"],
        ),
        (
            "AWS-Start-Application",
            Some("start-services.sh"),
            vec!["${aws:iot:parameter:services}"],
        ),
        (
            "AWS-Stop-Application",
            Some("stop-services.sh"),
            vec!["${aws:iot:parameter:services}"],
        ),
        (
            "AWS-Restart-Application",
            Some("restart-services.sh"),
            vec!["${aws:iot:parameter:services}"],
        ),
        ("AWS-Run-Command", None, vec![]),
    ];
    for (name, handler, args) in expect {
        let a = action(find(name).unwrap().document);
        match handler {
            Some(h) => {
                assert_eq!(a["type"], "runHandler", "{name}");
                assert_eq!(a["input"]["handler"], h, "{name}");
                assert_eq!(
                    a["input"]["path"], "${aws:iot:parameter:pathToHandler}",
                    "{name}"
                );
                let got: Vec<&str> = a["input"]["args"]
                    .as_array()
                    .map(|v| v.iter().map(|s| s.as_str().unwrap()).collect())
                    .unwrap_or_default();
                assert_eq!(got, args, "{name}");
                let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("handlers")
                    .join(h);
                assert!(
                    script.is_file(),
                    "{name}: {} is not shipped",
                    script.display()
                );
            }
            None => {
                assert_eq!(a["type"], "runCommand", "{name}");
                assert_eq!(a["input"]["command"], "${aws:iot:parameter:command}");
            }
        }
    }
}

#[test]
fn find_accepts_name_name_with_version_and_arn() {
    let t = find("AWS-Reboot").unwrap();
    assert_eq!(find("AWS-Reboot:1.0").unwrap(), t);
    assert_eq!(find(&arn("eu-west-1", t)).unwrap(), t);
    assert_eq!(
        arn("eu-west-1", t),
        "arn:aws:iot:eu-west-1::jobtemplate/AWS-Reboot:1.0"
    );
    assert_eq!(
        find("AWS-Reboot:2.0"),
        Err(TemplateError::UnknownTemplate("AWS-Reboot:2.0".into()))
    );
    assert_eq!(
        find("AWS-Nope"),
        Err(TemplateError::UnknownTemplate("AWS-Nope".into()))
    );
}

#[test]
fn render_download_file_substitutes_in_order() {
    let doc = find("AWS-Download-File")
        .unwrap()
        .render(&params(&[
            ("downloadUrl", "https://example.com/a.bin"),
            ("filePath", "/tmp/a.bin"),
            ("runAsUser", "root"),
        ]))
        .unwrap();
    let a = action(&doc);
    assert_eq!(
        a["input"]["args"],
        json!(["https://example.com/a.bin", "/tmp/a.bin"])
    );
    assert_eq!(a["runAsUser"], "root");
    // Optional parameters that were not given become empty strings.
    assert_eq!(a["input"]["path"], "");
    assert!(!doc.contains("${aws:iot:parameter:"));
}

#[test]
fn render_reports_the_missing_required_parameter_by_name() {
    let t = find("AWS-Download-File").unwrap();
    assert_eq!(
        t.render(&params(&[("downloadUrl", "http://x/y")])),
        Err(TemplateError::MissingParameter("filePath".into()))
    );
    let err = t.render(&params(&[])).unwrap_err();
    assert_eq!(
        err.to_string(),
        "missing required document parameter 'downloadUrl'"
    );
}

#[test]
fn render_refuses_unknown_parameters() {
    let t = find("AWS-Run-Command").unwrap();
    assert_eq!(
        t.render(&params(&[("command", "ls"), ("pathToHandler", "/x")])),
        Err(TemplateError::UnknownParameter("pathToHandler".into()))
    );
}

#[test]
fn render_enforces_the_published_length_limits() {
    let t = find("AWS-Reboot").unwrap();
    let long = "u".repeat(257);
    assert_eq!(
        t.render(&params(&[("runAsUser", &long)])),
        Err(TemplateError::ParameterTooLong {
            name: "runAsUser".into(),
            len: 257,
            max: 256
        })
    );
    assert!(t
        .render(&params(&[("runAsUser", &"u".repeat(256))]))
        .is_ok());
}

#[test]
fn values_are_json_escaped_and_cannot_change_the_document_structure() {
    let t = find("AWS-Install-Application").unwrap();
    let evil = r#"a", "b"], "handler": "evil.sh", "x": ["\ 	tab"#;
    let doc = t.render(&params(&[("packages", evil)])).unwrap();
    let a = action(&doc);
    assert_eq!(a["input"]["handler"], "install-packages.sh");
    assert_eq!(a["input"]["args"], json!([evil]));
}

#[test]
fn run_command_keeps_escaped_commas_for_the_engine() {
    let doc = find("AWS-Run-Command")
        .unwrap()
        .render(&params(&[("command", r"echo,a\,b")]))
        .unwrap();
    // The JSON string holds a backslash; the engine's comma splitting sees `echo,a\,b`.
    assert_eq!(action(&doc)["input"]["command"], r"echo,a\,b");
}

#[test]
fn substitute_is_single_pass_and_leaves_other_placeholders() {
    let doc = r#"{"a":"${aws:iot:parameter:x}","b":"${aws:iot:s3-presigned-url:https://s3.amazonaws.com/b/k}"}"#;
    let out = substitute(doc, &params(&[("x", "${aws:iot:parameter:y}")])).unwrap();
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["a"], "${aws:iot:parameter:y}");
    assert_eq!(
        v["b"],
        "${aws:iot:s3-presigned-url:https://s3.amazonaws.com/b/k}"
    );
}

#[test]
fn substitute_handles_several_placeholders_in_one_string_and_repeats() {
    let doc = r#"{"a":"${aws:iot:parameter:x}-${aws:iot:parameter:x}/${aws:iot:parameter:y}"}"#;
    let out = substitute(doc, &params(&[("x", "1"), ("y", "é\"2")])).unwrap();
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["a"], "1-1/é\"2");
}

#[test]
fn substitute_outside_a_string_inserts_a_string_literal() {
    let out = substitute(
        r#"{"a":${aws:iot:parameter:x}}"#,
        &params(&[("x", "1, \"b\": 2")]),
    )
    .unwrap();
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v, json!({"a": "1, \"b\": 2"}));
}

#[test]
fn substitute_tracks_strings_across_escaped_quotes() {
    // The placeholder after `\"` is still inside the string.
    let doc = r#"{"a":"say \"${aws:iot:parameter:x}\""}"#;
    let out = substitute(doc, &params(&[("x", "q\"")])).unwrap();
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["a"], "say \"q\"\"");
}

#[test]
fn substitute_errors_name_the_parameter() {
    let doc = r#"{"a":"${aws:iot:parameter:x}"}"#;
    assert_eq!(
        substitute(doc, &params(&[])),
        Err(TemplateError::MissingParameter("x".into()))
    );
    assert_eq!(
        substitute(doc, &params(&[("x", "1"), ("z", "2")])),
        Err(TemplateError::UnknownParameter("z".into()))
    );
}

#[test]
fn malformed_placeholders_are_left_alone() {
    let doc = r#"{"a":"${aws:iot:parameter:}","b":"${aws:iot:parameter:x"}"#;
    assert_eq!(substitute(doc, &params(&[])).unwrap(), doc);
}
