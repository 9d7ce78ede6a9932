//! Output capture with bounded memory: a step's stdout and stderr are read concurrently
//! until EOF, split into lines of at most [`MAX_LINE_BYTES`], logged, handed to an
//! optional sink, and only the last [`TAIL_CHARS`] characters of each stream are kept.
//!
//! Whatever a handler prints, this module holds at most one read buffer, one partial
//! line and one tail per stream. It never stops reading early (stopping would kill the
//! writer with SIGPIPE, AWS issue #461); it stops only when told to, after the step is
//! over.

use std::borrow::Cow;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio_util::sync::CancellationToken;

/// Longer lines are split into several lines of at most this many bytes.
pub const MAX_LINE_BYTES: usize = 4096;
/// Characters of each stream kept for the job status.
pub const TAIL_CHARS: usize = 1024;
const READ_BUF_BYTES: usize = 8192;
/// The tail buffer is trimmed back to [`TAIL_CHARS`] once it grows past this.
const TAIL_TRIM_BYTES: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// One line of a step's output, as given to a [`LineSink`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputLine<'a> {
    pub stream: Stream,
    /// The text without its newline; invalid UTF-8 is replaced by U+FFFD.
    pub text: &'a str,
    /// False when the line was cut at [`MAX_LINE_BYTES`] (it continues in the next
    /// line) or the stream ended without a final newline.
    pub complete: bool,
}

/// Receives every output line as it is read (e.g. `run-job` prints them live). It runs
/// on the reader task, so a slow sink slows the handler's writes down, nothing more.
pub type LineSink = Arc<dyn Fn(OutputLine<'_>) + Send + Sync>;

/// Splits a byte stream into lines of at most `max` bytes, cutting overlong lines on a
/// UTF-8 character boundary where possible.
pub(crate) struct LineSplitter {
    partial: Vec<u8>,
    max: usize,
}

impl LineSplitter {
    pub fn new(max: usize) -> Self {
        LineSplitter {
            partial: Vec::with_capacity(max.min(MAX_LINE_BYTES)),
            max: max.max(4),
        }
    }

    /// Feeds bytes; `emit(line, complete)` is called for each finished line.
    pub fn push(&mut self, mut data: &[u8], mut emit: impl FnMut(&[u8], bool)) {
        while !data.is_empty() {
            let room = self.max - self.partial.len();
            let window = &data[..data.len().min(room + 1)];
            if let Some(i) = window.iter().position(|&b| b == b'\n') {
                self.emit_with(&data[..i], true, &mut emit);
                data = &data[i + 1..];
            } else if data.len() <= room {
                self.partial.extend_from_slice(data);
                return;
            } else {
                let cut = char_boundary(data, room);
                self.emit_with(&data[..cut], false, &mut emit);
                data = &data[cut..];
            }
        }
    }

    /// Flushes a last line that had no newline.
    pub fn finish(&mut self, mut emit: impl FnMut(&[u8], bool)) {
        if !self.partial.is_empty() {
            emit(&self.partial, false);
            self.partial.clear();
        }
    }

    fn emit_with(&mut self, rest: &[u8], complete: bool, emit: &mut impl FnMut(&[u8], bool)) {
        if self.partial.is_empty() {
            emit(rest, complete);
        } else {
            self.partial.extend_from_slice(rest);
            emit(&self.partial, complete);
            self.partial.clear();
        }
    }
}

/// The largest cut ≤ `at` that does not split a UTF-8 sequence (looking back at most 3
/// bytes; invalid input is cut at `at`).
fn char_boundary(data: &[u8], at: usize) -> usize {
    let is_continuation = |i: usize| data.get(i).is_some_and(|&b| b & 0xC0 == 0x80);
    (at.saturating_sub(3)..=at)
        .rev()
        .take_while(|&k| k > 0)
        .find(|&k| !is_continuation(k))
        .unwrap_or(at)
}

/// The last `cap` characters of a stream.
pub(crate) struct Tail {
    buf: String,
    cap: usize,
}

impl Tail {
    pub fn new(cap: usize) -> Self {
        Tail {
            buf: String::new(),
            cap,
        }
    }

    pub fn push(&mut self, s: &str) {
        self.buf.push_str(s);
        if self.buf.len() > TAIL_TRIM_BYTES.max(self.cap * 4) {
            self.trim();
        }
    }

    pub fn finish(mut self) -> String {
        self.trim();
        self.buf
    }

    fn trim(&mut self) {
        if self.cap == 0 {
            self.buf.clear();
            return;
        }
        if let Some((start, _)) = self.buf.char_indices().rev().nth(self.cap - 1) {
            self.buf.drain(..start);
        }
    }
}

/// What was captured from one stream.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Capture {
    pub tail: String,
    pub lines: u64,
    pub bytes: u64,
}

/// Identifies a step in log lines.
#[derive(Debug, Clone)]
pub(crate) struct LogContext {
    pub job_id: String,
    pub step: String,
    pub step_index: usize,
}

/// Reads one stream to EOF (or until `stop`), logging and forwarding each line.
pub(crate) async fn read_stream<R: AsyncRead + Unpin>(
    mut reader: R,
    stream: Stream,
    ctx: Arc<LogContext>,
    sink: Option<LineSink>,
    stop: CancellationToken,
) -> Capture {
    let mut splitter = LineSplitter::new(MAX_LINE_BYTES);
    let mut tail = Tail::new(TAIL_CHARS);
    let mut lines = 0u64;
    let mut bytes = 0u64;
    let mut buf = vec![0u8; READ_BUF_BYTES];
    let mut on_line = |raw: &[u8], complete: bool| {
        lines += 1;
        let text = String::from_utf8_lossy(raw);
        tail.push(&text);
        if complete {
            tail.push("\n");
        }
        tracing::info!(
            job_id = %ctx.job_id,
            step = %ctx.step,
            step_index = ctx.step_index,
            stream = stream.as_str(),
            "{}",
            log_safe(&text)
        );
        if let Some(sink) = &sink {
            sink(OutputLine {
                stream,
                text: &text,
                complete,
            });
        }
    };
    loop {
        // `stop` first: an escaped process could keep the pipe busy forever.
        // Both branches are cancel-safe (`read` loses no data when not completed).
        let n = tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            r = reader.read(&mut buf) => r,
        };
        match n {
            Ok(0) => break,
            Ok(n) => {
                bytes += n as u64;
                splitter.push(&buf[..n], &mut on_line);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                tracing::warn!(job_id = %ctx.job_id, step = %ctx.step, stream = stream.as_str(),
                    error = %e, "reading step output failed");
                break;
            }
        }
    }
    splitter.finish(&mut on_line);
    Capture {
        tail: tail.finish(),
        lines,
        bytes,
    }
}

/// A handler's line with control characters (escape sequences, CR) made visible, so it
/// cannot forge or garble log lines.
fn log_safe(text: &str) -> Cow<'_, str> {
    if text.chars().any(|c| c.is_control() && c != '\t') {
        Cow::Owned(
            text.chars()
                .map(|c| {
                    if c.is_control() && c != '\t' {
                        c.escape_default().to_string()
                    } else {
                        c.to_string()
                    }
                })
                .collect(),
        )
    } else {
        Cow::Borrowed(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(max: usize, chunks: &[&[u8]]) -> Vec<(String, bool)> {
        let mut s = LineSplitter::new(max);
        let mut out = Vec::new();
        for c in chunks {
            s.push(c, |l, complete| {
                out.push((String::from_utf8_lossy(l).into_owned(), complete))
            });
        }
        s.finish(|l, complete| out.push((String::from_utf8_lossy(l).into_owned(), complete)));
        out
    }

    fn owned(v: &[(&str, bool)]) -> Vec<(String, bool)> {
        v.iter().map(|(s, c)| (s.to_string(), *c)).collect()
    }

    #[test]
    fn splits_lines_across_chunks() {
        assert_eq!(
            split(100, &[b"ab", b"c\nde\n\nf", b"g"]),
            owned(&[("abc", true), ("de", true), ("", true), ("fg", false)])
        );
    }

    #[test]
    fn overlong_line_is_cut_at_max() {
        assert_eq!(
            split(4, &[b"abcdefghij\n"]),
            owned(&[("abcd", false), ("efgh", false), ("ij", true)])
        );
        // Exactly max bytes followed by a newline is one complete line.
        assert_eq!(split(4, &[b"abcd\n"]), owned(&[("abcd", true)]));
        assert_eq!(split(4, &[b"ab", b"cd", b"\n"]), owned(&[("abcd", true)]));
        assert_eq!(
            split(4, &[b"ab", b"cde"]),
            owned(&[("abcd", false), ("e", false)])
        );
    }

    #[test]
    fn cut_does_not_split_a_character() {
        // "é" is 2 bytes: "abc" + "é" would be 5 bytes with max 4.
        let lines = split(4, &["abcé\n".as_bytes()]);
        assert_eq!(lines, owned(&[("abc", false), ("é", true)]));
    }

    #[test]
    fn tail_keeps_last_characters() {
        let mut t = Tail::new(5);
        for _ in 0..10_000 {
            t.push("0123456789é");
        }
        assert_eq!(t.finish(), "6789é");
        let mut t = Tail::new(5);
        t.push("ab");
        assert_eq!(t.finish(), "ab");
    }

    #[test]
    fn control_characters_are_escaped_for_the_log() {
        assert_eq!(log_safe("plain\ttext"), "plain\ttext");
        assert_eq!(log_safe("a\rb\u{1b}[31m"), "a\\rb\\u{1b}[31m");
    }

    #[tokio::test]
    async fn reader_counts_and_tails_and_feeds_sink() {
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let s2 = seen.clone();
        let sink: LineSink = Arc::new(move |l: OutputLine<'_>| {
            s2.lock()
                .unwrap()
                .push((l.stream, l.text.to_string(), l.complete))
        });
        let ctx = Arc::new(LogContext {
            job_id: "j".into(),
            step: "s".into(),
            step_index: 0,
        });
        let data: &[u8] = b"one\ntwo\nthree";
        let cap = read_stream(
            data,
            Stream::Stderr,
            ctx,
            Some(sink),
            CancellationToken::new(),
        )
        .await;
        assert_eq!(cap.tail, "one\ntwo\nthree");
        assert_eq!(cap.lines, 3);
        assert_eq!(cap.bytes, 13);
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 3);
        assert_eq!(seen[2], (Stream::Stderr, "three".to_string(), false));
    }
}
