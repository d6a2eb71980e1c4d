//! The worker protocol, version 1 (docs/simulators.md has the language-neutral description).
//!
//! Everything on a worker's stdin and stdout is this protocol; its stderr is free text for the
//! log.
//!
//! 1. At start-up the worker writes one JSON line, the hello:
//!    `{"protocol": 1, "in_dim": 2, "out_dim": 5}`.
//! 2. For every call diffinv writes one JSON line `{"rows": n, "in_dim": d}`, then `n * d`
//!    little-endian `float32` values, row-major.
//! 3. The worker answers one JSON line `{"status": "ok", "rows": n, "out_dim": m}` followed by
//!    `n * m` little-endian `float32` values, or `{"status": "error", "message": "..."}` with no
//!    values (every row of the call fails with the message; the worker stays up). A row with a
//!    NaN or an infinity fails alone.
//! 4. diffinv closes the worker's stdin when it is done; the worker exits.
//!
//! Header lines end with `\n` (a `\r` before it is accepted), are at most
//! [`MAX_HEADER_BYTES`] long and hold one JSON object; unknown keys are ignored, so later
//! versions can add some.
//!
//! [`serve`] is the worker side of the protocol for simulators written in Rust.

use std::io::{BufRead, Read, Write};

use serde_json::Value;

/// The protocol version this crate speaks (the `protocol` of the hello, `DIFFINV_PROTOCOL`).
pub const PROTOCOL_VERSION: u64 = 1;

/// The longest header line (hello, request or reply) accepted, newline included: 64 KiB.
/// Longer is a malformed message.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;

/// A worker's hello.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Hello {
    pub protocol: u64,
    pub in_dim: u64,
    pub out_dim: u64,
}

/// A worker's reply header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ReplyHeader {
    /// `{"status": "ok", ...}`: `rows * out_dim` values follow.
    Ok { rows: u64, out_dim: u64 },
    /// `{"status": "error", "message": ...}`.
    Error { message: String },
}

/// The start of `bytes` as a short, printable quote for an error message.
pub(crate) fn quote(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(120)]);
    let mut q = format!("{text:?}");
    if bytes.len() > 120 {
        q.push_str("...");
    }
    q
}

fn object(
    line: &[u8],
    what: &str,
    example: &str,
) -> Result<serde_json::Map<String, Value>, String> {
    let hint = "(stdout is reserved for the protocol: print anything else to stderr)";
    match serde_json::from_slice::<Value>(line) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(format!(
            "expected a JSON {what} line like {example}, got {} {hint}",
            quote(line)
        )),
    }
}

fn count(m: &serde_json::Map<String, Value>, key: &str, what: &str) -> Result<u64, String> {
    match m.get(key) {
        Some(v) => v.as_u64().ok_or_else(|| {
            format!("the {what}'s \"{key}\" must be a non-negative integer, got {v}")
        }),
        None => Err(format!("the {what} has no \"{key}\"")),
    }
}

/// Parse a hello line (without its newline).
pub(crate) fn parse_hello(line: &[u8]) -> Result<Hello, String> {
    let m = object(
        line,
        "hello",
        r#"{"protocol": 1, "in_dim": 2, "out_dim": 5}"#,
    )?;
    Ok(Hello {
        protocol: count(&m, "protocol", "hello")?,
        in_dim: count(&m, "in_dim", "hello")?,
        out_dim: count(&m, "out_dim", "hello")?,
    })
}

/// Parse a reply header line (without its newline).
pub(crate) fn parse_reply(line: &[u8]) -> Result<ReplyHeader, String> {
    let m = object(
        line,
        "reply header",
        r#"{"status": "ok", "rows": 4, "out_dim": 5}"#,
    )?;
    match m.get("status").and_then(Value::as_str) {
        Some("ok") => Ok(ReplyHeader::Ok {
            rows: count(&m, "rows", "reply header")?,
            out_dim: count(&m, "out_dim", "reply header")?,
        }),
        Some("error") => Ok(ReplyHeader::Error {
            message: match m.get("message") {
                Some(Value::String(s)) => s.clone(),
                Some(v) => v.to_string(),
                None => "(no message)".into(),
            },
        }),
        _ => Err(format!(
            "the reply header's \"status\" must be \"ok\" or \"error\", got {}",
            quote(line)
        )),
    }
}

/// The request header line for a call of `rows` rows, newline included.
pub(crate) fn request_header(rows: usize, in_dim: usize) -> String {
    format!("{{\"rows\": {rows}, \"in_dim\": {in_dim}}}\n")
}

/// Append `values` as little-endian `float32`.
pub(crate) fn put_f32(out: &mut Vec<u8>, values: &[f32]) {
    out.reserve(values.len() * 4);
    for v in values {
        out.extend_from_slice(&v.to_le_bytes());
    }
}

/// Decode little-endian `float32` values (`bytes.len()` a multiple of 4).
pub(crate) fn get_f32(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// Read one header line of at most [`MAX_HEADER_BYTES`]; `Ok(None)` at end of input.
fn read_header<R: BufRead>(input: &mut R) -> std::io::Result<Option<Vec<u8>>> {
    let mut line = Vec::new();
    let n = input
        .by_ref()
        .take(MAX_HEADER_BYTES as u64)
        .read_until(b'\n', &mut line)?;
    if n == 0 {
        return Ok(None);
    }
    if line.last() != Some(&b'\n') {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "request header line cut short or longer than 64 KiB",
        ));
    }
    line.pop();
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    Ok(Some(line))
}

/// Serve the protocol on this process's stdin and stdout until stdin closes: the worker side,
/// for simulators written in Rust (the Python and C helpers in `crates/process/python` and
/// `crates/process/c` do the same for those languages).
///
/// `forward(x, rows, y)` gets `rows` rows of `in_dim` values in `x` (row-major) and fills `y`
/// (`rows * out_dim`, zero on entry). A row it leaves non-finite (NaN) fails alone; an
/// `Err(message)` fails every row of the call with `message` and the worker keeps serving.
/// Write diagnostics to stderr, never to stdout.
///
/// ```no_run
/// // A worker computing y = (x0 * x1, x0 + x1) for every row.
/// fn main() -> std::io::Result<()> {
///     diffinv_process::serve(2, 2, |x: &[f32], rows: usize, y: &mut [f32]| {
///         for r in 0..rows {
///             y[2 * r] = x[2 * r] * x[2 * r + 1];
///             y[2 * r + 1] = x[2 * r] + x[2 * r + 1];
///         }
///         Ok(())
///     })
/// }
/// ```
pub fn serve<F>(in_dim: usize, out_dim: usize, forward: F) -> std::io::Result<()>
where
    F: FnMut(&[f32], usize, &mut [f32]) -> Result<(), String>,
{
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    serve_io(
        &mut stdin.lock(),
        &mut std::io::BufWriter::new(stdout.lock()),
        in_dim,
        out_dim,
        forward,
    )
}

/// [`serve`] on any byte streams (tests, or a worker that talks over another channel).
pub fn serve_io<R, W, F>(
    input: &mut R,
    output: &mut W,
    in_dim: usize,
    out_dim: usize,
    mut forward: F,
) -> std::io::Result<()>
where
    R: BufRead,
    W: Write,
    F: FnMut(&[f32], usize, &mut [f32]) -> Result<(), String>,
{
    let invalid = |m: String| std::io::Error::new(std::io::ErrorKind::InvalidData, m);
    writeln!(
        output,
        "{{\"protocol\": {PROTOCOL_VERSION}, \"in_dim\": {in_dim}, \"out_dim\": {out_dim}}}"
    )?;
    output.flush()?;
    let mut raw = Vec::new();
    let mut out = Vec::new();
    while let Some(line) = read_header(input)? {
        let req: Value = serde_json::from_slice(&line)
            .map_err(|e| invalid(format!("request header {}: {e}", quote(&line))))?;
        let rows = req.get("rows").and_then(Value::as_u64);
        let d = req.get("in_dim").and_then(Value::as_u64);
        let (Some(rows), Some(d)) = (rows, d) else {
            return Err(invalid(format!("request header {}", quote(&line))));
        };
        if d != in_dim as u64 {
            return Err(invalid(format!(
                "request with in_dim {d}, this worker takes {in_dim}"
            )));
        }
        let rows = usize::try_from(rows).map_err(|_| invalid("too many rows".into()))?;
        raw.resize(rows * in_dim * 4, 0);
        input.read_exact(&mut raw)?;
        let x = get_f32(&raw);
        let mut y = vec![0.0f32; rows * out_dim];
        match forward(&x, rows, &mut y) {
            Ok(()) => {
                out.clear();
                out.extend_from_slice(
                    format!("{{\"status\": \"ok\", \"rows\": {rows}, \"out_dim\": {out_dim}}}\n")
                        .as_bytes(),
                );
                put_f32(&mut out, &y);
                output.write_all(&out)?;
            }
            Err(message) => {
                let header = serde_json::json!({"status": "error", "message": message});
                writeln!(output, "{header}")?;
            }
        }
        output.flush()?;
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn headers_parse_and_reject_with_a_quote() {
        assert_eq!(
            parse_hello(br#"{"protocol": 1, "in_dim": 2, "out_dim": 5, "name": "sim"}"#),
            Ok(Hello {
                protocol: 1,
                in_dim: 2,
                out_dim: 5
            })
        );
        let e = parse_hello(b"Loading mesh...").unwrap_err();
        assert!(
            e.contains("\"Loading mesh...\"") && e.contains("stderr"),
            "{e}"
        );
        let e = parse_hello(br#"{"protocol": 1, "in_dim": 2}"#).unwrap_err();
        assert!(e.contains("no \"out_dim\""), "{e}");
        let e = parse_hello(br#"{"protocol": "1", "in_dim": 2, "out_dim": 1}"#).unwrap_err();
        assert!(
            e.contains("\"protocol\" must be a non-negative integer"),
            "{e}"
        );
        assert_eq!(
            parse_reply(br#"{"status": "ok", "rows": 3, "out_dim": 1}"#),
            Ok(ReplyHeader::Ok {
                rows: 3,
                out_dim: 1
            })
        );
        assert_eq!(
            parse_reply(br#"{"status": "error", "message": "diverged"}"#),
            Ok(ReplyHeader::Error {
                message: "diverged".into()
            })
        );
        assert!(parse_reply(br#"{"status": "fine"}"#).is_err());
        assert!(parse_reply(b"[1, 2]").is_err());
        assert_eq!(request_header(3, 2), "{\"rows\": 3, \"in_dim\": 2}\n");
    }

    #[test]
    fn serve_io_answers_calls_and_errors() {
        let mut input = Vec::new();
        input.extend_from_slice(request_header(2, 1).as_bytes());
        put_f32(&mut input, &[1.5, -2.0]);
        input.extend_from_slice(request_header(1, 1).as_bytes());
        put_f32(&mut input, &[7.0]);
        let mut output = Vec::new();
        serve_io(&mut &input[..], &mut output, 1, 2, |x, rows, y| {
            if x[0] == 7.0 {
                return Err("seven \"is\" bad".into());
            }
            for r in 0..rows {
                y[2 * r] = x[r] * 2.0;
                y[2 * r + 1] = x[r] + 1.0;
            }
            Ok(())
        })
        .unwrap();
        let mut r = &output[..];
        let hello = read_header(&mut r).unwrap().unwrap();
        assert_eq!(
            parse_hello(&hello).unwrap(),
            Hello {
                protocol: 1,
                in_dim: 1,
                out_dim: 2
            }
        );
        let h = read_header(&mut r).unwrap().unwrap();
        assert_eq!(
            parse_reply(&h).unwrap(),
            ReplyHeader::Ok {
                rows: 2,
                out_dim: 2
            }
        );
        let mut payload = [0u8; 16];
        r.read_exact(&mut payload).unwrap();
        assert_eq!(get_f32(&payload), vec![3.0, 2.5, -4.0, -1.0]);
        let h = read_header(&mut r).unwrap().unwrap();
        assert_eq!(
            parse_reply(&h).unwrap(),
            ReplyHeader::Error {
                message: "seven \"is\" bad".into()
            }
        );
        assert!(r.is_empty());
    }
}
