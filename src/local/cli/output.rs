//! Output of the client verbs: the service's JSON as is (`--output json`), or readable
//! tables (the default). Plain text only; no terminal crate.

use serde_json::Value;

/// `--output` formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
}

/// Epoch seconds → `YYYY-MM-DD HH:MM:SS` (UTC).
pub fn utc(secs: f64) -> String {
    let s = secs.floor() as i64;
    let (days, rem) = (s.div_euclid(86_400), s.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// A cell from a JSON value: strings bare, times (keys ending in `At`/`Date`) as UTC,
/// absent as `-`.
pub fn cell(key: &str, v: &Value) -> String {
    match v {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        Value::Number(n) if key.ends_with("At") || key.ends_with("Date") => {
            n.as_f64().map_or_else(|| n.to_string(), utc)
        }
        other => other.to_string(),
    }
}

/// Renders rows under headers with aligned columns.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(c.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| -> String {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                let pad = widths[i].saturating_sub(c.chars().count());
                s.push_str(c);
                s.push_str(&" ".repeat(pad + 2));
            }
        }
        s.trim_end().to_owned()
    };
    let mut out = line(headers.to_vec());
    out.push('\n');
    for r in rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
        out.push('\n');
    }
    out
}

/// Rows of `items` with the given columns (JSON pointers, e.g. `/jobExecutionSummary/status`).
pub fn rows(items: &[Value], pointers: &[&str]) -> Vec<Vec<String>> {
    items
        .iter()
        .map(|it| {
            pointers
                .iter()
                .map(|p| {
                    let key = p.rsplit('/').next().unwrap_or(p);
                    let v = it.pointer(p).unwrap_or(&Value::Null);
                    let c = cell(key, v);
                    // ARNs read better as their resource name in a table.
                    match c.rsplit_once(":thing/") {
                        Some((_, name)) if key.ends_with("Arn") => name.to_owned(),
                        _ => c,
                    }
                })
                .collect()
        })
        .collect()
}

/// An object flattened to `FIELD  VALUE` lines (nested keys joined with `.`).
pub fn fields(v: &Value) -> String {
    let mut out = Vec::new();
    flatten("", v, &mut out);
    let rows: Vec<Vec<String>> = out.into_iter().map(|(k, v)| vec![k, v]).collect();
    table(&["FIELD", "VALUE"], &rows)
}

fn flatten(prefix: &str, v: &Value, out: &mut Vec<(String, String)>) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, v) in m {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        Value::Array(a) if a.iter().all(|x| !x.is_object() && !x.is_array()) => {
            let items: Vec<String> = a.iter().map(|x| cell("", x)).collect();
            out.push((prefix.to_owned(), items.join(", ")));
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                flatten(&format!("{prefix}[{i}]"), x, out);
            }
        }
        other => {
            let key = prefix.rsplit('.').next().unwrap_or(prefix);
            out.push((prefix.to_owned(), cell(key, other)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0.0), "1970-01-01 00:00:00");
        assert_eq!(utc(1_700_000_000.5), "2023-11-14 22:13:20");
        assert_eq!(utc(951_782_400.0), "2000-02-29 00:00:00");
    }

    #[test]
    fn tables_align_and_flatten() {
        let t = table(&["A", "LONGER"], &[vec!["xyz".into(), "1".into()]]);
        assert_eq!(t, "A    LONGER\nxyz  1\n");
        let f = fields(&json!({"job": {"jobId": "j", "createdAt": 0, "targets": ["a", "b"]}}));
        let lines: Vec<Vec<&str>> = f
            .lines()
            .map(|l| l.splitn(2, ' ').map(str::trim).collect())
            .collect();
        assert_eq!(
            lines,
            [
                vec!["FIELD", "VALUE"],
                vec!["job.createdAt", "1970-01-01 00:00:00"],
                vec!["job.jobId", "j"],
                vec!["job.targets", "a, b"],
            ],
            "{f}"
        );
        let r = rows(
            &[json!({"thingArn": "arn:aws:iot:r:1:thing/t1", "s": {"status": "QUEUED"}})],
            &["/thingArn", "/s/status", "/missing"],
        );
        assert_eq!(r, [vec!["t1".to_owned(), "QUEUED".into(), "-".into()]]);
    }
}
