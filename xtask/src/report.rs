//! Output formats shared by every command: the bench JSON line and the CSV/Markdown tables.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;

/// Whether lower or higher values of a measurement are better.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Better {
    /// Lower is better (times).
    Lower,
    /// Higher is better (rates).
    Higher,
}

/// One case of a side-by-side benchmark.
#[derive(Debug, Clone, Serialize)]
pub struct BenchCase {
    /// Case name, e.g. `ns64`.
    pub case: String,
    /// Our measurement.
    pub ours: f64,
    /// The PyTorch baseline's measurement.
    pub baseline: f64,
    /// Unit, e.g. `ms/sample` or `GFLOP/s`.
    pub unit: String,
    /// Which direction is better.
    pub better: Better,
    /// `baseline / ours` when lower is better, `ours / baseline` when higher is better:
    /// above 1 means ours is better.
    pub ratio: f64,
}

impl BenchCase {
    /// Build a case and compute its ratio.
    pub fn new(
        case: impl Into<String>,
        ours: f64,
        baseline: f64,
        unit: impl Into<String>,
        better: Better,
    ) -> Self {
        let ratio = match better {
            Better::Lower => baseline / ours,
            Better::Higher => ours / baseline,
        };
        Self {
            case: case.into(),
            ours,
            baseline,
            unit: unit.into(),
            better,
            ratio,
        }
    }
}

#[derive(Serialize)]
struct BenchLine<'a> {
    bench: &'a str,
    cases: &'a [BenchCase],
}

/// Print the human-readable summary and then, as the very last line, the JSON object of
/// DESIGN.md: `{"bench": NAME, "cases": [...]}`.
pub fn print_bench(name: &str, cases: &[BenchCase]) -> Result<()> {
    for c in cases {
        println!(
            "{:<12} ours {:>10.3} {:<10} baseline {:>10.3} {:<10} ratio {:.2} ({} is better)",
            c.case,
            c.ours,
            c.unit,
            c.baseline,
            c.unit,
            c.ratio,
            if c.better == Better::Lower {
                "lower"
            } else {
                "higher"
            }
        );
    }
    println!(
        "{}",
        serde_json::to_string(&BenchLine { bench: name, cases })?
    );
    Ok(())
}

/// A results table: a header and rows of already-formatted cells.
#[derive(Debug, Clone, Default)]
pub struct Table {
    /// Column names; the first is `method`.
    pub header: Vec<String>,
    /// Rows, each as long as the header.
    pub rows: Vec<Vec<String>>,
}

impl Table {
    /// New table with the given header.
    pub fn new(header: &[&str]) -> Self {
        Self {
            header: header.iter().map(|s| s.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    /// CSV text (RFC 4180 quoting where needed).
    pub fn to_csv(&self) -> String {
        fn cell(s: &str) -> String {
            if s.contains([',', '"', '\n']) {
                format!("\"{}\"", s.replace('"', "\"\""))
            } else {
                s.to_string()
            }
        }
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{}",
            self.header
                .iter()
                .map(|s| cell(s))
                .collect::<Vec<_>>()
                .join(",")
        );
        for r in &self.rows {
            let _ = writeln!(
                out,
                "{}",
                r.iter().map(|s| cell(s)).collect::<Vec<_>>().join(",")
            );
        }
        out
    }

    /// Markdown table text.
    pub fn to_markdown(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "| {} |", self.header.join(" | "));
        let _ = writeln!(out, "|{}", " --- |".repeat(self.header.len()));
        for r in &self.rows {
            let _ = writeln!(out, "| {} |", r.join(" | "));
        }
        out
    }

    /// Write `DIR/NAME.csv` and `DIR/NAME.md` (the latter with a title and notes above the table).
    pub fn write(&self, dir: &Path, name: &str, title: &str, notes: &str) -> Result<()> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let csv = dir.join(format!("{name}.csv"));
        std::fs::write(&csv, self.to_csv())
            .with_context(|| format!("writing {}", csv.display()))?;
        let md = dir.join(format!("{name}.md"));
        let text = format!("# {title}\n\n{notes}\n\n{}", self.to_markdown());
        std::fs::write(&md, text).with_context(|| format!("writing {}", md.display()))?;
        Ok(())
    }
}

/// A resumable store of finished table rows: one JSON line per row, keyed by a string that
/// names the method and configuration. A killed `cargo xtask reproduce` loses at most the row
/// in flight; the next run with the same preset and seed reuses every finished row.
#[derive(Debug)]
pub struct RowCache {
    path: std::path::PathBuf,
    rows: std::collections::HashMap<String, serde_json::Value>,
}

impl RowCache {
    /// Open (or start) the cache file at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        let mut rows = std::collections::HashMap::new();
        if let Ok(text) = std::fs::read_to_string(path) {
            for line in text.lines() {
                // A line cut short by a kill is skipped.
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(line) {
                    if let (Some(k), Some(val)) =
                        (v.get("key").and_then(|k| k.as_str()), v.get("value"))
                    {
                        rows.insert(k.to_string(), val.clone());
                    }
                }
            }
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        Ok(Self {
            path: path.to_path_buf(),
            rows,
        })
    }
    /// A finished row, if any.
    pub fn get<T: serde::de::DeserializeOwned>(&self, key: &str) -> Option<T> {
        self.rows
            .get(key)
            .and_then(|v| serde_json::from_value(v.clone()).ok())
    }
    /// Record a finished row (appended and flushed at once).
    pub fn put<T: Serialize>(&mut self, key: &str, value: &T) -> Result<()> {
        use std::io::Write as _;
        let v = serde_json::to_value(value)?;
        let line = serde_json::to_string(&serde_json::json!({"key": key, "value": v}))?;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .with_context(|| format!("opening {}", self.path.display()))?;
        writeln!(f, "{line}")?;
        self.rows.insert(key.to_string(), v);
        Ok(())
    }
    /// Number of cached rows.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.rows.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_cache_resumes_and_skips_a_cut_line() -> Result<()> {
        let dir = std::env::temp_dir().join(format!("diffinv-rowcache-{}", std::process::id()));
        let path = dir.join("rows.jsonl");
        let _ = std::fs::remove_file(&path);
        let mut cache = RowCache::open(&path)?;
        cache.put("a|1", &vec![1.0f64, 2.0])?;
        cache.put("b|2", &vec![3.0f64])?;
        // A run killed while writing leaves half a line behind.
        {
            use std::io::Write as _;
            let mut f = std::fs::OpenOptions::new().append(true).open(&path)?;
            write!(f, "{{\"key\":\"c|3\",\"val")?;
        }
        let reopened = RowCache::open(&path)?;
        assert_eq!(reopened.len(), 2);
        assert_eq!(reopened.get::<Vec<f64>>("a|1"), Some(vec![1.0, 2.0]));
        assert_eq!(reopened.get::<Vec<f64>>("c|3"), None);
        std::fs::remove_dir_all(&dir)?;
        Ok(())
    }

    #[test]
    fn bench_ratio_direction() {
        let lower = BenchCase::new("t", 2.0, 8.0, "ms", Better::Lower);
        assert!((lower.ratio - 4.0).abs() < 1e-12);
        let higher = BenchCase::new("r", 70.0, 100.0, "GFLOP/s", Better::Higher);
        assert!((higher.ratio - 0.7).abs() < 1e-12);
    }

    #[test]
    fn table_csv_has_header_and_rows() {
        let mut t = Table::new(&["method", "x"]);
        t.rows.push(vec!["a".into(), "1".into()]);
        let csv = t.to_csv();
        assert_eq!(csv.lines().next(), Some("method,x"));
        assert_eq!(csv.lines().count(), 2);
    }
}
