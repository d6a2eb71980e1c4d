//! Where the workers' stderr goes: an optional shared log file (each line prefixed with
//! `[worker k] `) and, per process, the last lines in memory for error messages.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::ProcessError;

/// Lines kept per process.
const TAIL_LINES: usize = 20;
/// Characters kept per line in the tail (the log file gets the whole line).
const TAIL_LINE_CHARS: usize = 300;
/// A line longer than this (without a newline) is cut into pieces of this size.
const MAX_LINE_BYTES: usize = 16 * 1024;
/// Lines quoted in an error message.
const QUOTED_LINES: usize = 6;
/// Characters quoted in an error message.
const QUOTED_CHARS: usize = 600;

/// The log file shared by every worker of a pool (or nothing).
#[derive(Debug, Default)]
pub(crate) struct Sink {
    file: Option<Mutex<File>>,
}

impl Sink {
    /// Open `path` for appending (creating it), or a sink that discards.
    pub(crate) fn open(path: Option<&Path>) -> Result<Self, ProcessError> {
        let file = match path {
            None => None,
            Some(p) => Some(Mutex::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
                    .map_err(|e| ProcessError::Io {
                        path: p.display().to_string(),
                        reason: format!("cannot open the worker log: {e}"),
                    })?,
            )),
        };
        Ok(Self { file })
    }

    /// Append `[worker k] line` (one write per line, so lines of workers never interleave).
    pub(crate) fn line(&self, worker: usize, line: &str) {
        if let Some(f) = &self.file {
            let text = format!("[worker {worker}] {line}\n");
            let mut f = f.lock().unwrap_or_else(|e| e.into_inner());
            // A full disk must not take the run down: the tail still has the line.
            let _ = f.write_all(text.as_bytes());
        }
    }
}

/// The last lines one process wrote to stderr.
#[derive(Debug, Default)]
pub(crate) struct Tail {
    lines: VecDeque<String>,
}

impl Tail {
    fn push(&mut self, line: &str) {
        let mut l: String = line.chars().take(TAIL_LINE_CHARS).collect();
        if l.len() < line.len() {
            l.push_str("...");
        }
        if self.lines.len() == TAIL_LINES {
            self.lines.pop_front();
        }
        self.lines.push_back(l);
    }

    /// The last non-empty lines, joined with ` | ` into one line of bounded length, or
    /// `(nothing on stderr)`.
    pub(crate) fn render(&self) -> String {
        let mut picked: Vec<&str> = Vec::new();
        let mut chars = 0;
        for l in self
            .lines
            .iter()
            .rev()
            .map(|l| l.trim())
            .filter(|l| !l.is_empty())
        {
            if picked.len() == QUOTED_LINES
                || (chars + l.len() > QUOTED_CHARS && !picked.is_empty())
            {
                break;
            }
            chars += l.len() + 3;
            picked.push(l);
        }
        if picked.is_empty() {
            return "(nothing on stderr)".into();
        }
        picked.reverse();
        picked.join(" | ")
    }
}

/// The stderr (and in `files` mode stdout) of one process, read by its own threads.
#[derive(Debug)]
pub(crate) struct Capture {
    tail: Arc<Mutex<Tail>>,
    done: Vec<Receiver<()>>,
}

impl Capture {
    pub(crate) fn new() -> Self {
        Self {
            tail: Arc::new(Mutex::new(Tail::default())),
            done: Vec::new(),
        }
    }

    /// Read `stream` to its end on a new thread, line by line, into the tail and the sink.
    pub(crate) fn follow<R: Read + Send + 'static>(
        &mut self,
        stream: R,
        worker: usize,
        sink: Arc<Sink>,
    ) {
        let (tx, rx) = mpsc::channel();
        let tail = Arc::clone(&self.tail);
        let spawned = std::thread::Builder::new()
            .name(format!("diffinv-worker-{worker}-stderr"))
            .spawn(move || {
                pump(stream, worker, &sink, &tail);
                let _ = tx.send(());
            });
        // Without a thread the output is lost, but the pipe's other end is dropped with the
        // closure, so the worker gets EPIPE/SIGPIPE rather than blocking: nothing hangs.
        if spawned.is_ok() {
            self.done.push(rx);
        }
    }

    /// Wait (at most `limit`) until every followed stream reached its end, so that the tail is
    /// complete: call it after the process is dead.
    pub(crate) fn settle(&mut self, limit: Duration) {
        let until = std::time::Instant::now() + limit;
        for rx in self.done.drain(..) {
            let left = until.saturating_duration_since(std::time::Instant::now());
            let _ = rx.recv_timeout(left);
        }
    }

    /// The tail, rendered for an error message.
    pub(crate) fn render(&self) -> String {
        self.tail.lock().unwrap_or_else(|e| e.into_inner()).render()
    }
}

fn pump<R: Read>(mut stream: R, worker: usize, sink: &Sink, tail: &Mutex<Tail>) {
    let mut buf = vec![0u8; 8192];
    let mut line: Vec<u8> = Vec::new();
    let emit = |line: &mut Vec<u8>| {
        let text = String::from_utf8_lossy(line);
        let text = text.trim_end_matches(['\n', '\r']);
        sink.line(worker, text);
        tail.lock().unwrap_or_else(|e| e.into_inner()).push(text);
        line.clear();
    };
    loop {
        let n = match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        for &b in &buf[..n] {
            if b == b'\n' {
                emit(&mut line);
            } else {
                line.push(b);
                if line.len() >= MAX_LINE_BYTES {
                    emit(&mut line);
                }
            }
        }
    }
    if !line.is_empty() {
        emit(&mut line);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_the_last_lines_in_one_bounded_line() {
        let mut t = Tail::default();
        assert_eq!(t.render(), "(nothing on stderr)");
        for i in 0..30 {
            t.push(&format!("line {i}"));
        }
        t.push("");
        assert_eq!(
            t.render(),
            "line 24 | line 25 | line 26 | line 27 | line 28 | line 29"
        );
        t.push(&"x".repeat(1000));
        let r = t.render();
        assert!(
            r.starts_with("line 2") && r.ends_with("x...") && r.len() < 700,
            "{r}"
        );
    }

    #[test]
    fn capture_splits_lines_and_writes_the_log() {
        let dir = std::env::temp_dir().join(format!("diffinv-process-log-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("workers.log");
        let _ = std::fs::remove_file(&path);
        let sink = Arc::new(Sink::open(Some(&path)).unwrap());
        let mut c = Capture::new();
        c.follow(&b"first\nsecond\r\nno newline"[..], 3, Arc::clone(&sink));
        c.settle(Duration::from_secs(5));
        assert_eq!(c.render(), "first | second | no newline");
        let log = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            log,
            "[worker 3] first\n[worker 3] second\n[worker 3] no newline\n"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
