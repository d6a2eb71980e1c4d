//! `cargo xtask check-tables [--run] [--results DIR] [--only TABLE[:PRESET],...]`: the tables
//! quoted in docs/ equal what the code produces.
//!
//! A quoted table is announced by a marker line right above it:
//!
//! ```text
//! <!-- reproduce: table=ns preset=quick seed=0 key=method,noise check=rel_l2_mean,fwd_total -->
//! | method | noise | rel_l2_mean | ... |
//! ```
//!
//! The command that produced it is `cargo xtask reproduce TABLE --PRESET --seed SEED`; its CSV
//! (`DIR/TABLE.csv`) must hold, for every quoted row (matched on the `key` columns), the same
//! text in every `check` column (timings are not checked: they depend on the machine).
//! `--run` first runs those commands into a fresh folder under `target/`; without it the CSVs
//! of `--results DIR` (default `results/`) are compared.
//!
//! A pivoted table (one quoted column per combination of CSV values) adds `pivot=d/d_y`: every
//! quoted column that is not a key, named `8/1`, holds the `check` columns of the CSV row whose
//! `d` is 8 and `d_y` is 1, joined by ` / ` (`check=psnr,ssim`: `16.27 / 0.423`); a cell `n/a`
//! says the CSV has no such row, or one whose check columns are all `n/a` (a method that does not
//! support the task).
//!
//! A result that depends on the CPU's floating-point kernels (libtorch picks its convolution
//! and matrix kernels per instruction set and thread count, and some methods amplify the last
//! bits; see docs/reproduction.md) gets a band from the marker's `within=`, a comma-separated
//! list of `KEY[@COLUMN]:BAND` items:
//!
//! - `KEY` is a key value (`DPG`: every row with a key column equal to `DPG`) or `*` (every
//!   row); `@COLUMN` narrows the item to one quoted column (`MCG@gblur` in a table pivoted on
//!   the task);
//! - `BAND` is `PCT%` (`|code - docs| <= PCT/100 |docs|`), `Nd` (N units of the quoted value's
//!   last printed digit: `1d` is a rounding flip) or `*` (not compared);
//! - the most specific item of a cell applies (a named key before `*`, an item with a column
//!   before one without): `within=*:0.2%,DPG:10%`.
//!
//! Only decimal cells are banded: counts and text stay exact, a pivoted cell `a / b` is inside
//! its band when each part is, and a cell that moved inside its band is printed, not failed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;

/// Arguments of `cargo xtask check-tables`.
#[derive(Args, Debug, Clone)]
pub struct CheckArgs {
    /// Run the tables' commands first (into target/check-tables) instead of reading --results.
    #[arg(long)]
    pub run: bool,
    /// Folder with the tables' CSVs (ignored with --run).
    #[arg(long, default_value = "results")]
    pub results: PathBuf,
    /// Only these tables (`ns`, `blackhole:quick`, ...; default: every quoted table).
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
    /// With --run: build the runner in the dev profile (as `cargo xtask test` does).
    #[arg(long)]
    pub dev: bool,
}

/// One quoted table.
#[derive(Debug, Clone, PartialEq)]
pub struct Quoted {
    /// File and line of the marker.
    pub at: String,
    /// Table name (gmm, ns, blackhole, imaging).
    pub table: String,
    /// Preset name.
    pub preset: String,
    /// Seed.
    pub seed: u64,
    /// Columns that identify a row.
    pub key: Vec<String>,
    /// Columns compared.
    pub check: Vec<String>,
    /// CSV columns whose values name the quoted columns of a pivoted table.
    pub pivot: Vec<String>,
    /// Header of the quoted table.
    pub header: Vec<String>,
    /// Quoted rows.
    pub rows: Vec<Vec<String>>,
    /// Rows (by a key value), or single cells of them, whose decimal cells may move by a band
    /// (`within=`).
    pub within: Vec<Band>,
}

/// One `within=` item: `KEY[@COLUMN]:BAND`, BAND `PCT%`, `Nd` or `*`.
#[derive(Debug, Clone, PartialEq)]
pub struct Band {
    /// A key value of the rows it applies to (`DPG`), or `*`: every row.
    pub key: String,
    /// The one quoted column it applies to (`gblur`), or every column.
    pub column: Option<String>,
    /// How far a decimal cell may move.
    pub band: Tolerance,
}

/// How far a decimal cell of a `within=` item may move from the docs' value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Tolerance {
    /// `PCT%`: `|code - docs| <= PCT/100 |docs|`.
    Relative(f64),
    /// `Nd`: `|code - docs| <= N` units of the docs' last printed digit (`1d` on `0.139` allows
    /// `0.138` to `0.140`: a rounding flip).
    Digits(u32),
    /// `*`: not compared.
    Any,
}

impl Quoted {
    /// The band of the cell in quoted column `column` of the row with key values `key`: of the
    /// items that match it, the most specific (a named key before `*`, then one naming the
    /// column before one that does not).
    fn band_for(&self, key: &[&str], column: &str) -> Option<Tolerance> {
        self.within
            .iter()
            .filter(|b| {
                (b.key == "*" || key.contains(&b.key.as_str()))
                    && b.column.as_deref().is_none_or(|c| c == column)
            })
            .max_by_key(|b| 2 * usize::from(b.key != "*") + usize::from(b.column.is_some()))
            .map(|b| b.band)
    }
}

/// What [`compare`] found.
#[derive(Debug, Default)]
pub struct Comparison {
    /// Cells that differ (and rows or columns that are missing), one line each.
    pub differs: Vec<String>,
    /// Cells that differ inside their row's `within=` band, one line each.
    pub tolerated: Vec<String>,
}

/// `within=KEY[@COLUMN]:BAND[,...]`, BAND `PCT%`, `Nd` or `*`.
fn parse_within(at: &str, spec: &str) -> Result<Vec<Band>> {
    spec.split(',')
        .map(|item| {
            let (selector, pct) = item
                .rsplit_once(':')
                .filter(|(v, _)| !v.is_empty() && !v.starts_with('@') && !v.ends_with('@'))
                .with_context(|| format!("{at}: within={spec}: {item:?} is not KEY[@COLUMN]:BAND (e.g. DPG:5%, *:1d, MCG@gblur:*)"))?;
            let (key, column) = match selector.split_once('@') {
                Some((k, c)) => (k.to_string(), Some(c.to_string())),
                None => (selector.to_string(), None),
            };
            if pct == "*" {
                return Ok(Band { key, column, band: Tolerance::Any });
            }
            if let Some(n) = pct.strip_suffix('d') {
                let n = n
                    .parse::<u32>()
                    .ok()
                    .filter(|n| (1..=1000).contains(n))
                    .with_context(|| format!("{at}: within={spec}: {pct:?} must be 1d to 1000d (units of the last printed digit)"))?;
                return Ok(Band { key, column, band: Tolerance::Digits(n) });
            }
            let band = pct
                .strip_suffix('%')
                .and_then(|p| p.parse::<f64>().ok())
                .filter(|b| b.is_finite() && *b > 0.0 && *b < 100.0)
                .with_context(|| format!("{at}: within={spec}: the band {pct:?} must be a percentage in (0, 100) (5%), units of the last digit (2d) or * (not compared)"))?;
            Ok(Band { key, column, band: Tolerance::Relative(band / 100.0) })
        })
        .collect()
}

/// Whether two decimal cells agree inside `band`; integers and text never do unless equal.
fn inside_band(doc: &str, code: &str, band: Tolerance) -> bool {
    let decimal = |s: &str| s.contains('.').then(|| s.parse::<f64>().ok()).flatten();
    let (Some(d), Some(c)) = (decimal(doc), decimal(code)) else {
        return false;
    };
    match band {
        Tolerance::Any => true,
        Tolerance::Relative(r) => (c - d).abs() <= r * d.abs(),
        Tolerance::Digits(n) => {
            let places = doc.split_once('.').map_or(0, |(_, f)| f.len()) as i32;
            // Half a unit of slack absorbs the binary representation of the two decimals.
            (c - d).abs() <= (f64::from(n) + 0.5) * 10f64.powi(-places)
        }
    }
}

/// [`inside_band`] for a quoted cell, which may join several values with ` / ` (pivoted
/// tables): every part equal or inside the band.
fn parts_inside_band(doc: &str, code: &str, band: Tolerance) -> bool {
    let (d, c): (Vec<&str>, Vec<&str>) = (doc.split(" / ").collect(), code.split(" / ").collect());
    d.len() == c.len() && d.iter().zip(&c).all(|(d, c)| d == c || inside_band(d, c, band))
}

impl Comparison {
    /// A cell whose docs and code text differ (`line` says so): tolerated when its band
    /// covers the difference, else a difference.
    fn unequal_cell(&mut self, line: String, doc: &str, code: &str, band: Option<Tolerance>) {
        match band {
            Some(b) if parts_inside_band(doc, code, b) => {
                self.tolerated.push(format!("{line} ({})", band_words(b)))
            }
            _ => self.differs.push(line),
        }
    }
}

/// How a tolerated cell is reported.
fn band_words(band: Tolerance) -> String {
    match band {
        Tolerance::Any => "a cell whose decimals the marker does not compare".to_string(),
        Tolerance::Relative(r) => format!("inside the marker's {}% band", r * 100.0),
        Tolerance::Digits(n) => format!("inside the marker's {n} units of the last digit"),
    }
}

fn cells(line: &str) -> Vec<String> {
    line.trim()
        .trim_start_matches('|')
        .trim_end_matches('|')
        .split('|')
        .map(|c| c.trim().to_string())
        .collect()
}

/// Every quoted table of one Markdown text (`name` for the messages).
pub fn parse_markdown(name: &str, text: &str) -> Result<Vec<Quoted>> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some(rest) = line.trim().strip_prefix("<!-- reproduce:") else {
            continue;
        };
        let at = format!("{name}:{}", i + 1);
        let rest = rest
            .strip_suffix("-->")
            .with_context(|| format!("{at}: the marker must end with -->"))?;
        let mut kv = BTreeMap::new();
        for pair in rest.split_whitespace() {
            let (k, v) = pair
                .split_once('=')
                .with_context(|| format!("{at}: {pair:?} is not key=value"))?;
            if !["table", "preset", "seed", "key", "check", "pivot", "within"].contains(&k) {
                bail!("{at}: unknown marker key {k:?} (table, preset, seed, key, check, pivot, within)");
            }
            kv.insert(k.to_string(), v.to_string());
        }
        let get = |k: &str| {
            kv.get(k)
                .cloned()
                .with_context(|| format!("{at}: the marker lacks {k}="))
        };
        let list = |k: &str| -> Result<Vec<String>> {
            Ok(get(k)?.split(',').map(String::from).collect())
        };
        let table_lines: Vec<&str> = lines[i + 1..]
            .iter()
            .take_while(|l| l.trim_start().starts_with('|'))
            .copied()
            .collect();
        if table_lines.len() < 3 {
            bail!("{at}: a Markdown table (header, rule, rows) must follow the marker");
        }
        let header = cells(table_lines[0]);
        let q = Quoted {
            at: at.clone(),
            table: get("table")?,
            preset: get("preset")?,
            seed: get("seed")?
                .parse()
                .with_context(|| format!("{at}: seed must be a number"))?,
            key: list("key")?,
            check: list("check")?,
            pivot: kv
                .get("pivot")
                .map(|p| p.split('/').map(String::from).collect())
                .unwrap_or_default(),
            rows: table_lines[2..].iter().map(|l| cells(l)).collect(),
            header,
            within: match kv.get("within") {
                Some(spec) => parse_within(&at, spec)?,
                None => Vec::new(),
            },
        };
        for b in &q.within {
            let keyed = b.key == "*" || q.rows.iter().any(|r| {
                q.key.iter().any(|k| q.header.iter().position(|h| h == k).and_then(|i| r.get(i)) == Some(&b.key))
            });
            if !keyed {
                bail!("{at}: within= names {:?}, which no quoted row has as a key", b.key);
            }
            if let Some(c) = &b.column {
                let compared = if q.pivot.is_empty() { q.check.contains(c) } else { q.header.contains(c) && !q.key.contains(c) };
                if !compared {
                    bail!("{at}: within= names column {c:?}, which is not a compared column of the quoted table");
                }
            }
        }
        let quoted_cols: Vec<&String> = if q.pivot.is_empty() { q.check.iter().collect() } else { Vec::new() };
        for c in q.key.iter().chain(quoted_cols) {
            if !q.header.contains(c) {
                bail!("{at}: the quoted table has no column {c:?}");
            }
        }
        out.push(q);
    }
    Ok(out)
}

/// A CSV as header and rows (the writer of crates/reproduce quotes fields with commas).
fn read_csv(path: &Path) -> Result<(Vec<String>, Vec<Vec<String>>)> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut rows = text.lines().map(split_csv);
    let header = rows
        .next()
        .with_context(|| format!("{} is empty", path.display()))?;
    Ok((header, rows.collect()))
}

fn split_csv(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => out.push(std::mem::take(&mut cur)),
            (c, _) => cur.push(c),
        }
    }
    out.push(cur);
    out
}

/// Compare one quoted table with the CSV the code wrote.
pub fn compare(q: &Quoted, header: &[String], rows: &[Vec<String>]) -> Comparison {
    if !q.pivot.is_empty() {
        return compare_pivoted(q, header, rows);
    }
    let col = |h: &[String], name: &str| h.iter().position(|c| c == name);
    let mut out = Comparison::default();
    for c in q.key.iter().chain(&q.check) {
        if col(header, c).is_none() {
            out.differs.push(format!("{}: the code's {} table has no column {c:?}", q.at, q.table));
        }
    }
    if !out.differs.is_empty() {
        return out;
    }
    for row in &q.rows {
        let key: Vec<&str> = q
            .key
            .iter()
            .map(|k| col(&q.header, k).and_then(|i| row.get(i)).map_or("", |s| s.as_str()))
            .collect();
        let found = rows.iter().find(|r| {
            q.key
                .iter()
                .zip(&key)
                .all(|(k, v)| col(header, k).and_then(|i| r.get(i)).map(|s| s.as_str()) == Some(*v))
        });
        let Some(found) = found else {
            out.differs.push(format!("{}: row {key:?} is not in the code's table", q.at));
            continue;
        };
        for c in &q.check {
            let doc = col(&q.header, c).and_then(|i| row.get(i)).map_or("", |s| s.as_str());
            let code = col(header, c).and_then(|i| found.get(i)).map_or("", |s| s.as_str());
            if doc == code {
                continue;
            }
            let line = format!("{}: row {key:?} column {c}: docs {doc}, code {code}", q.at);
            out.unequal_cell(line, doc, code, q.band_for(&key, c));
        }
    }
    out
}

/// [`compare`] for a pivoted table: quoted column `a/b` is the check columns (joined by ` / `)
/// of the CSV row with the row's keys and pivot values `a`, `b`; `n/a` means no such row.
fn compare_pivoted(q: &Quoted, header: &[String], rows: &[Vec<String>]) -> Comparison {
    let col = |name: &str| header.iter().position(|c| c == name);
    let only = |line: String| Comparison { differs: vec![line], tolerated: Vec::new() };
    let mut out = Comparison::default();
    let mut check = Vec::new();
    for c in &q.check {
        match col(c) {
            Some(i) => check.push(i),
            None => return only(format!("{}: the code's {} table has no column {c:?}", q.at, q.table)),
        }
    }
    let mut fixed: Vec<(usize, usize)> = Vec::new(); // (quoted column, csv column) of the keys
    for k in &q.key {
        match (q.header.iter().position(|c| c == k), col(k)) {
            (Some(a), Some(b)) => fixed.push((a, b)),
            _ => return only(format!("{}: key column {k:?} missing", q.at)),
        }
    }
    let mut pivot_cols = Vec::new();
    for p in &q.pivot {
        match col(p) {
            Some(i) => pivot_cols.push(i),
            None => return only(format!("{}: the code's table has no column {p:?}", q.at)),
        }
    }
    for row in &q.rows {
        let key: Vec<&str> = fixed.iter().map(|(a, _)| row.get(*a).map_or("", |s| s.as_str())).collect();
        for (j, name) in q.header.iter().enumerate() {
            if q.key.contains(name) {
                continue;
            }
            let values: Vec<&str> = name.split('/').collect();
            if values.len() != pivot_cols.len() {
                out.differs.push(format!("{}: column {name:?} does not name {} pivot values", q.at, pivot_cols.len()));
                continue;
            }
            let found = rows.iter().find(|r| {
                fixed.iter().all(|(a, b)| row.get(*a) == r.get(*b))
                    && pivot_cols.iter().zip(&values).all(|(i, v)| r.get(*i).map(|s| s.as_str()) == Some(*v))
            });
            let doc = row.get(j).map_or("", |s| s.as_str());
            let code = found.map(|r| {
                let values: Vec<&str> = check.iter().map(|&i| r.get(i).map_or("", |s| s.as_str())).collect();
                if values.iter().all(|v| *v == "n/a") { "n/a".to_string() } else { values.join(" / ") }
            });
            match code {
                None if doc == "n/a" => {}
                None => out.differs.push(format!("{}: {:?} {name} is not in the code's table", q.at, row.first())),
                Some(code) if code != doc => {
                    let line = format!(
                        "{}: {:?} {name}: docs {doc}, code {code}",
                        q.at,
                        row.first().map_or("", |s| s.as_str())
                    );
                    out.unequal_cell(line, doc, &code, q.band_for(&key, name));
                }
                Some(_) => {}
            }
        }
    }
    out
}

/// Every quoted table under `docs/`.
pub fn quoted_tables(root: &Path) -> Result<Vec<Quoted>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f)?;
        let name = f
            .strip_prefix(root)
            .unwrap_or(&f)
            .display()
            .to_string();
        out.extend(parse_markdown(&name, &text)?);
    }
    Ok(out)
}

/// Run the check.
pub fn run(args: CheckArgs) -> Result<()> {
    let root = crate::workspace_root();
    let mut quoted = quoted_tables(&root)?;
    if !args.only.is_empty() {
        quoted.retain(|q| {
            args.only
                .iter()
                .any(|o| *o == q.table || *o == format!("{}:{}", q.table, q.preset))
        });
    }
    if quoted.is_empty() {
        bail!("no quoted table to check (markers `<!-- reproduce: ... -->` in docs/*.md)");
    }
    let mut runs: Vec<(String, String, u64)> = quoted
        .iter()
        .map(|q| (q.table.clone(), q.preset.clone(), q.seed))
        .collect();
    runs.sort();
    runs.dedup();
    let mut diffs = Vec::new();
    let mut tolerated = 0;
    for (table, preset, seed) in &runs {
        let dir = if args.run {
            let dir = root
                .join("target/check-tables")
                .join(format!("{table}-{preset}-seed{seed}"));
            let _ = std::fs::remove_dir_all(&dir);
            crate::reproduce::run(crate::reproduce::ReproduceArgs {
                tables: vec![table.clone()],
                quick: preset == "quick",
                full: preset == "full",
                paper: false,
                prior: None,
                test_data: None,
                device: None,
                out: dir.clone(),
                seed: *seed,
                resume: false,
                extra: Vec::new(),
                dev: args.dev,
            })?;
            dir
        } else {
            args.results.clone()
        };
        let (header, rows) = read_csv(&dir.join(format!("{table}.csv")))?;
        for q in quoted
            .iter()
            .filter(|q| &q.table == table && &q.preset == preset && q.seed == *seed)
        {
            let d = compare(q, &header, &rows);
            eprintln!(
                "xtask: {} ({table} {preset}, seed {seed}): {}",
                q.at,
                if !d.differs.is_empty() {
                    "DIFFERS"
                } else if d.tolerated.is_empty() {
                    "equal"
                } else {
                    "equal outside the within= rows, which are inside their band"
                }
            );
            for t in &d.tolerated {
                eprintln!("{t}");
            }
            tolerated += d.tolerated.len();
            diffs.extend(d.differs);
        }
    }
    if !diffs.is_empty() {
        for d in &diffs {
            eprintln!("{d}");
        }
        bail!("{} quoted cells differ from the code's tables", diffs.len());
    }
    if tolerated == 0 {
        println!("check-tables: {} quoted tables equal the code's", quoted.len());
    } else {
        println!(
            "check-tables: {} quoted tables equal the code's, {tolerated} cells inside their within= band",
            quoted.len()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "text\n<!-- reproduce: table=ns preset=quick seed=0 key=method,noise check=err -->\n| method | noise | err | seconds |\n|---|---|---|---|\n| EnKG | 0 | 0.50 | 3 |\n| CPS | 0 | 0.70 | 9 |\n\nmore\n";

    #[test]
    fn quoted_tables_are_found_and_compared_on_their_check_columns() -> Result<()> {
        let q = parse_markdown("doc.md", DOC)?;
        assert_eq!(q.len(), 1);
        assert_eq!(q[0].at, "doc.md:2");
        assert_eq!(q[0].rows.len(), 2);
        let header: Vec<String> = ["method", "noise", "err", "seconds"].map(String::from).to_vec();
        let same = vec![
            ["CPS", "0", "0.70", "1"].map(String::from).to_vec(),
            ["EnKG", "0", "0.50", "1"].map(String::from).to_vec(),
        ];
        assert!(compare(&q[0], &header, &same).differs.is_empty(), "timings are not compared");
        let other = vec![["EnKG", "0", "0.51", "3"].map(String::from).to_vec()];
        let d = compare(&q[0], &header, &other).differs;
        assert_eq!(d.len(), 2, "{d:?}");
        assert!(d[0].contains("column err: docs 0.50, code 0.51"), "{d:?}");
        assert!(d[1].contains("not in the code's table"), "{d:?}");
        Ok(())
    }

    #[test]
    fn bad_markers_are_one_clear_error() {
        for (doc, want) in [
            ("<!-- reproduce: table=ns preset=quick seed=0 key=method check=x -->\n| a |\n", "must follow"),
            ("<!-- reproduce: table=ns preset=quick seed=0 key=method check=x\n", "end with -->"),
            ("<!-- reproduce: table=ns preset=quick seed=zero key=method check=x -->\n| method | x |\n|---|---|\n| a | 1 |\n", "seed must be a number"),
            ("<!-- reproduce: table=ns preset=quick key=method check=x -->\n| method | x |\n|---|---|\n| a | 1 |\n", "lacks seed="),
            ("<!-- reproduce: table=ns preset=quick seed=0 key=method check=y -->\n| method | x |\n|---|---|\n| a | 1 |\n", "no column \"y\""),
            ("<!-- reproduce: tabel=ns -->\n", "unknown marker key"),
            ("<!-- reproduce: table=ns preset=quick seed=0 key=method check=x within=a -->\n| method | x |\n|---|---|\n| a | 1.0 |\n", "is not KEY[@COLUMN]"),
            ("<!-- reproduce: table=ns preset=quick seed=0 key=method check=x within=:5% -->\n| method | x |\n|---|---|\n| a | 1.0 |\n", "is not KEY[@COLUMN]"),
            ("<!-- reproduce: table=ns preset=quick seed=0 key=method check=x within=a:5 -->\n| method | x |\n|---|---|\n| a | 1.0 |\n", "must be a percentage"),
            ("<!-- reproduce: table=ns preset=quick seed=0 key=method check=x within=a:-5% -->\n| method | x |\n|---|---|\n| a | 1.0 |\n", "must be a percentage"),
            ("<!-- reproduce: table=ns preset=quick seed=0 key=method check=x within=a:NaN% -->\n| method | x |\n|---|---|\n| a | 1.0 |\n", "must be a percentage"),
            ("<!-- reproduce: table=ns preset=quick seed=0 key=method check=x within=b:5% -->\n| method | x |\n|---|---|\n| a | 1.0 |\n", "no quoted row has as a key"),
            ("<!-- reproduce: table=ns preset=quick seed=0 key=method check=x within=a:0d -->\n| method | x |\n|---|---|\n| a | 1.0 |\n", "must be 1d to 1000d"),
            ("<!-- reproduce: table=ns preset=quick seed=0 key=method check=x within=a:xd -->\n| method | x |\n|---|---|\n| a | 1.0 |\n", "must be 1d to 1000d"),
            ("<!-- reproduce: table=ns preset=quick seed=0 key=method check=x within=@x:5% -->\n| method | x |\n|---|---|\n| a | 1.0 |\n", "is not KEY[@COLUMN]"),
            ("<!-- reproduce: table=ns preset=quick seed=0 key=method check=x within=a@:5% -->\n| method | x |\n|---|---|\n| a | 1.0 |\n", "is not KEY[@COLUMN]"),
            ("<!-- reproduce: table=ns preset=quick seed=0 key=method check=x within=a@y:5% -->\n| method | x | y |\n|---|---|---|\n| a | 1.0 | 2 |\n", "not a compared column"),
            ("<!-- reproduce: table=gmm preset=quick seed=0 key=method check=x pivot=d within=a@method:5% -->\n| method | 8 |\n|---|---|\n| a | 1.0 |\n", "not a compared column"),
        ] {
            let e = parse_markdown("d.md", doc).unwrap_err().to_string();
            assert!(e.contains(want), "{doc:?}: {e}");
        }
    }

    #[test]
    fn within_bands_loosen_only_the_decimal_cells_of_their_rows() -> Result<()> {
        let doc = "<!-- reproduce: table=ns preset=quick seed=0 key=method,noise check=err,count within=DPG:5% -->\n| method | noise | err | count |\n|---|---|---|---|\n| DPG | 1 | 3.126 | 377 |\n| EnKG | 1 | 0.843 | 648 |\n";
        let q = parse_markdown("d.md", doc)?;
        assert_eq!(q[0].within, vec![Band { key: "DPG".into(), column: None, band: Tolerance::Relative(0.05) }]);
        let header: Vec<String> = ["method", "noise", "err", "count"].map(String::from).to_vec();
        let row = |m: &str, e: &str, c: &str| [m, "1", e, c].map(String::from).to_vec();
        // 3.199 is 2.3% above 3.126: inside the band, reported, not failed.
        let d = compare(&q[0], &header, &[row("DPG", "3.199", "377"), row("EnKG", "0.843", "648")]);
        assert!(d.differs.is_empty(), "{d:?}");
        assert_eq!(d.tolerated.len(), 1, "{d:?}");
        assert!(d.tolerated[0].contains("docs 3.126, code 3.199 (inside the marker's 5% band)"), "{d:?}");
        // 3.30 is 5.6% above: outside. Counts stay exact; other rows get no band.
        let d = compare(&q[0], &header, &[row("DPG", "3.300", "378"), row("EnKG", "0.844", "648")]);
        assert_eq!(d.differs.len(), 3, "{d:?}");
        assert!(d.differs[0].contains("column err: docs 3.126, code 3.300"), "{d:?}");
        assert!(d.differs[1].contains("column count: docs 377, code 378"), "{d:?}");
        assert!(d.differs[2].contains("[\"EnKG\", \"1\"] column err"), "{d:?}");
        // Below the docs' value counts the same as above.
        let d = compare(&q[0], &header, &[row("DPG", "2.980", "377"), row("EnKG", "0.843", "648")]);
        assert!(d.differs.is_empty() && d.tolerated.len() == 1, "{d:?}");
        // Text that is not a number never matches by band.
        let d = compare(&q[0], &header, &[row("DPG", "n/a", "377"), row("EnKG", "0.843", "648")]);
        assert_eq!(d.differs.len(), 1, "{d:?}");
        // KEY:* reports the row's decimals without comparing them; its counts stay exact.
        let doc = doc.replace("DPG:5%", "DPG:*");
        let q = parse_markdown("d.md", &doc)?;
        assert_eq!(q[0].within[0].band, Tolerance::Any);
        let d = compare(&q[0], &header, &[row("DPG", "-20.000", "377"), row("EnKG", "0.843", "648")]);
        assert!(d.differs.is_empty() && d.tolerated.len() == 1, "{d:?}");
        assert!(d.tolerated[0].contains("does not compare"), "{d:?}");
        let d = compare(&q[0], &header, &[row("DPG", "9.000", "376"), row("EnKG", "0.843", "648")]);
        assert_eq!(d.differs.len(), 1, "{d:?}");
        assert!(d.differs[0].contains("column count: docs 377, code 376"), "{d:?}");
        Ok(())
    }

    #[test]
    fn pivoted_tables_compare_each_cell_with_its_csv_row() -> Result<()> {
        let doc = "<!-- reproduce: table=gmm preset=quick seed=0 key=method check=sw pivot=d/d_y -->\n| method | 8/1 | 80/1 |\n| --- | --- | --- |\n| EnKG | 1.00 | 2.00 |\n";
        let q = parse_markdown("d.md", doc)?;
        let header: Vec<String> = ["method", "d", "d_y", "sw"].map(String::from).to_vec();
        let rows = vec![
            ["EnKG", "8", "1", "1.00"].map(String::from).to_vec(),
            ["EnKG", "80", "1", "2.50"].map(String::from).to_vec(),
        ];
        let d = compare(&q[0], &header, &rows).differs;
        assert_eq!(d.len(), 1, "{d:?}");
        assert!(d[0].contains("80/1: docs 2.00, code 2.50"), "{d:?}");
        Ok(())
    }

    #[test]
    fn pivoted_cells_join_several_check_columns_and_na_means_absent() -> Result<()> {
        let doc = "<!-- reproduce: table=imaging preset=quick seed=0 key=method check=psnr,ssim pivot=task -->\n| method | sr4 | phase |\n| --- | --- | --- |\n| DPS | 16.27 / 0.423 | 10.72 / 0.090 |\n| DDS | 16.49 / 0.479 | n/a |\n";
        let q = parse_markdown("d.md", doc)?;
        let header: Vec<String> = ["method", "task", "psnr", "ssim", "seconds"].map(String::from).to_vec();
        let row = |m: &str, t: &str, p: &str, s: &str| [m, t, p, s, "9"].map(String::from).to_vec();
        let same = vec![row("DPS", "sr4", "16.27", "0.423"), row("DPS", "phase", "10.72", "0.090"), row("DDS", "sr4", "16.49", "0.479"), row("DDS", "phase", "n/a", "n/a")];
        assert!(compare(&q[0], &header, &same).differs.is_empty(), "{:?}", compare(&q[0], &header, &same));
        let other = vec![row("DPS", "sr4", "16.27", "0.424"), row("DDS", "sr4", "16.49", "0.479"), row("DDS", "phase", "9.00", "0.010")];
        let d = compare(&q[0], &header, &other).differs;
        assert_eq!(d.len(), 3, "{d:?}");
        assert!(d[0].contains("sr4: docs 16.27 / 0.423, code 16.27 / 0.424"), "{d:?}");
        assert!(d[1].contains("phase is not in the code's table"), "{d:?}");
        assert!(d[2].contains("phase: docs n/a, code 9.00 / 0.010"), "{d:?}");
        Ok(())
    }

    #[test]
    fn within_bands_address_single_cells_of_pivoted_tables() -> Result<()> {
        let doc = "<!-- reproduce: table=imaging preset=quick seed=0 key=method check=psnr,ssim pivot=task within=MCG@gblur:*,PiGDM@mblur:1% -->\n| method | gblur | mblur |\n| --- | --- | --- |\n| MCG | 5.44 / 0.024 | 5.19 / 0.014 |\n| PiGDM | 15.69 / 0.416 | 14.65 / 0.353 |\n";
        let q = parse_markdown("d.md", doc)?;
        let header: Vec<String> = ["method", "task", "psnr", "ssim"].map(String::from).to_vec();
        let row = |m: &str, t: &str, p: &str, s: &str| [m, t, p, s].map(String::from).to_vec();
        let rows = |mcg_g: (&str, &str), mcg_m: (&str, &str), pi_m: (&str, &str)| {
            vec![
                row("MCG", "gblur", mcg_g.0, mcg_g.1),
                row("MCG", "mblur", mcg_m.0, mcg_m.1),
                row("PiGDM", "gblur", "15.69", "0.416"),
                row("PiGDM", "mblur", pi_m.0, pi_m.1),
            ]
        };
        // MCG's gblur is not compared, PiGDM's mblur within 1% in both parts.
        let d = compare(&q[0], &header, &rows(("5.53", "0.032"), ("5.19", "0.014"), ("14.67", "0.354")));
        assert!(d.differs.is_empty(), "{d:?}");
        assert_eq!(d.tolerated.len(), 2, "{d:?}");
        assert!(d.tolerated[1].contains("\"PiGDM\" mblur: docs 14.65 / 0.353, code 14.67 / 0.354 (inside the marker's 1% band)"), "{d:?}");
        // The band is per cell: MCG's mblur stays exact, and one part outside fails the cell.
        let d = compare(&q[0], &header, &rows(("5.53", "0.032"), ("5.20", "0.014"), ("14.67", "0.400")));
        assert_eq!(d.differs.len(), 2, "{d:?}");
        assert!(d.differs[0].contains("\"MCG\" mblur"), "{d:?}");
        assert!(d.differs[1].contains("\"PiGDM\" mblur"), "{d:?}");
        // `*` gives every other cell a band; the named items still win.
        let q = parse_markdown("d.md", &doc.replace("PiGDM@mblur:1%", "*:0.5%"))?;
        let d = compare(&q[0], &header, &rows(("9.00", "0.5"), ("5.20", "0.014"), ("14.65", "0.354")));
        assert!(d.differs.is_empty() && d.tolerated.len() == 3, "{d:?}");
        let d = compare(&q[0], &header, &rows(("9.00", "0.5"), ("5.30", "0.014"), ("14.65", "0.354")));
        assert_eq!(d.differs.len(), 1, "{d:?}");
        // `Nd`: N units of the docs' last printed digit, per part.
        let q = parse_markdown("d.md", &doc.replace("PiGDM@mblur:1%", "*:1d"))?;
        let d = compare(&q[0], &header, &rows(("9.00", "0.5"), ("5.20", "0.015"), ("14.66", "0.352")));
        assert!(d.differs.is_empty() && d.tolerated.len() == 3, "{d:?}");
        assert!(d.tolerated[2].contains("1 units of the last digit"), "{d:?}");
        let d = compare(&q[0], &header, &rows(("9.00", "0.5"), ("5.19", "0.016"), ("14.65", "0.353")));
        assert_eq!(d.differs.len(), 1, "{d:?}");
        // n/a against a number is never inside a band.
        let d = compare(&q[0], &header, &rows(("n/a", "n/a"), ("5.19", "0.014"), ("14.65", "0.353")));
        assert_eq!(d.differs.len(), 1, "{d:?}");
        Ok(())
    }

    #[test]
    fn csv_fields_with_commas_are_unquoted() {
        assert_eq!(split_csv("a,\"b, c\",\"d\"\"e\""), vec!["a", "b, c", "d\"e"]);
    }
}
