//! `runCommand` command strings: AWS's comma splitting with `\,` escapes (reference
//! aws-device-client.md §2.4), reproduced exactly so documents behave as on AWS's client.

/// The characters AWS trims from each word (C's `isspace` set).
pub fn is_aws_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\x0B' | '\x0C' | '\r')
}

/// Split a command string into argv the way AWS's client does:
/// 1. words are maximal runs of `\,` pairs or non-comma characters (regex `(\\,|[^,])+`), so
///    empty fields vanish (`"echo,,hi"` gives two words);
/// 2. every `\,` in a word becomes `,`;
/// 3. each word is trimmed of `" \t\n\v\f\r"`, so a blank field becomes an empty argument.
///
/// No shell, quoting, globbing or expansion.
pub fn split_command(command: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut current = String::new();
    let mut chars = command.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&',') => {
                chars.next();
                current.push_str("\\,");
            }
            ',' => {
                if !current.is_empty() {
                    words.push(std::mem::take(&mut current));
                }
            }
            c => current.push(c),
        }
    }
    if !current.is_empty() {
        words.push(current);
    }
    words
        .into_iter()
        .map(|w| w.replace("\\,", ",").trim_matches(is_aws_space).to_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(s: &str) -> Vec<String> {
        split_command(s)
    }

    #[test]
    fn reference_examples() {
        assert_eq!(split(r"echo,Hello\, I am DC."), ["echo", "Hello, I am DC."]);
        assert_eq!(split(" \n echo \t, Hello World "), ["echo", "Hello World"]);
        assert_eq!(split(r"a\\,b"), [r"a\,b"]);
        assert_eq!(split("echo,,hi"), ["echo", "hi"]);
        assert_eq!(split(",echo,hi,"), ["echo", "hi"]);
        assert_eq!(split("echo, ,x"), ["echo", "", "x"]);
        assert_eq!(split("ls,/tmp"), ["ls", "/tmp"]);
        assert_eq!(
            split(" aws iot \t,describe-endpoint"),
            ["aws iot", "describe-endpoint"]
        );
    }

    #[test]
    fn aws_string_utils_cases() {
        // SplitStringByComma keeps the backslash; replace_all removes it afterwards.
        assert_eq!(split(r"hello,world\,!"), ["hello", "world,!"]);
        assert_eq!(split(r"hello\,world!"), ["hello,world!"]);
    }

    #[test]
    fn edge_cases() {
        assert!(split("").is_empty());
        assert!(split(",,,").is_empty());
        assert_eq!(split(" "), [""]);
        assert_eq!(split(r"trailing\"), [r"trailing\"]);
        assert_eq!(split(r"\,"), [","]);
        assert_eq!(split(r"x\,,y"), ["x,", "y"]);
        // Only C's whitespace is trimmed; a non-breaking space stays.
        assert_eq!(split("\u{a0}a\u{a0}"), ["\u{a0}a\u{a0}"]);
        assert_eq!(split("a\x0B,\x0Cb"), ["a", "b"]);
    }
}
