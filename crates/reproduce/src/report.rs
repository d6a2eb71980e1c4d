//! Result tables (CSV with a header row, method first; Markdown) and the row cache.

use std::path::Path;

use anyhow::{Context, Result};

/// A table of strings with a header.
#[derive(Debug, Clone, Default)]
pub struct Table {
    /// Column names.
    pub header: Vec<String>,
    /// Rows, each as long as the header.
    pub rows: Vec<Vec<String>>,
}

impl Table {
    /// An empty table with `header`.
    pub fn new(header: &[&str]) -> Self {
        Self {
            header: header.iter().map(|s| s.to_string()).collect(),
            rows: Vec::new(),
        }
    }
    /// Append a row.
    pub fn push(&mut self, row: Vec<String>) {
        self.rows.push(row);
    }
    /// CSV (fields with commas or quotes are quoted).
    pub fn to_csv(&self) -> String {
        let esc = |s: &String| {
            if s.contains(',') || s.contains('"') {
                format!("\"{}\"", s.replace('"', "\"\""))
            } else {
                s.clone()
            }
        };
        let mut out = String::new();
        for r in std::iter::once(&self.header).chain(&self.rows) {
            out += &r.iter().map(esc).collect::<Vec<_>>().join(",");
            out.push('\n');
        }
        out
    }
    /// A GitHub Markdown table.
    pub fn to_markdown(&self) -> String {
        let mut out = format!("| {} |\n", self.header.join(" | "));
        out += &format!("|{}\n", "---|".repeat(self.header.len()));
        for r in &self.rows {
            out += &format!("| {} |\n", r.join(" | "));
        }
        out
    }
    /// Write `dir/name.csv` and `dir/name.md` (title, the table, notes).
    pub fn write(&self, dir: &Path, name: &str, title: &str, notes: &str) -> Result<()> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        std::fs::write(dir.join(format!("{name}.csv")), self.to_csv())?;
        std::fs::write(
            dir.join(format!("{name}.md")),
            format!("# {title}\n\n{}\n{notes}\n", self.to_markdown()),
        )?;
        Ok(())
    }
}

/// Finished (method, case) results, one JSON file each under a folder: a rerun with
/// `--resume` skips them.
#[derive(Debug, Clone)]
pub struct RowCache {
    dir: std::path::PathBuf,
    /// `inputs.json`'s path and text ([`RowCache::open_with_inputs`]), written with the first row.
    inputs: Option<(std::path::PathBuf, String)>,
}

/// How often a running (method, case) writes its checkpoint: a kill loses at most this much
/// work, and large ensembles are not serialised at every step.
pub const CHECKPOINT_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

impl RowCache {
    /// Open (create) the cache folder; `fresh` empties it first.
    pub fn open(dir: &Path, fresh: bool) -> Result<Self> {
        if fresh && dir.exists() {
            std::fs::remove_dir_all(dir).with_context(|| format!("clearing {}", dir.display()))?;
        }
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Self {
            dir: dir.to_path_buf(),
            inputs: None,
        })
    }
    /// [`RowCache::open`] for rows computed from input files (the prior, the test data): their
    /// identities (path and a hash of the contents; for a prior folder, of the files that
    /// define the prior) are recorded in `inputs.json`, and a resumed run (`fresh = false`)
    /// whose inputs differ from the recorded ones is an error naming the input, never a silent
    /// reuse of rows computed from other data.
    pub fn open_with_inputs(dir: &Path, fresh: bool, inputs: &[(&str, &Path)]) -> Result<Self> {
        let mut now = std::collections::BTreeMap::new();
        for (name, path) in inputs {
            now.insert(name.to_string(), input_identity(path)?);
        }
        let record = dir.join("inputs.json");
        if !fresh {
            if let Ok(text) = std::fs::read_to_string(&record) {
                let before: std::collections::BTreeMap<String, String> = serde_json::from_str(&text)
                    .with_context(|| format!("reading {}", record.display()))?;
                for (name, id) in &now {
                    if let Some(old) = before.get(name).filter(|old| *old != id) {
                        anyhow::bail!(
                            "--resume: the finished rows in {} were computed with {name} {old}, not {id}; run without --resume (or with another --out) to compute them again",
                            dir.display()
                        );
                    }
                }
            }
        }
        let mut cache = Self::open(dir, fresh)?;
        cache.inputs = Some((record, serde_json::to_string_pretty(&now)?));
        Ok(cache)
    }
    fn path(&self, key: &str) -> std::path::PathBuf {
        let safe: String = key
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        self.dir.join(format!("{safe}.json"))
    }
    /// A cached value.
    pub fn get<T: serde::de::DeserializeOwned>(&self, key: &str) -> Option<T> {
        let text = std::fs::read_to_string(self.path(key)).ok()?;
        serde_json::from_str(&text).ok()
    }
    /// Store a value (atomically); the first one also records the cache's inputs.
    pub fn put<T: serde::Serialize>(&self, key: &str, value: &T) -> Result<()> {
        self.record_inputs()?;
        let p = self.path(key);
        let tmp = p.with_extension("tmp");
        std::fs::write(&tmp, serde_json::to_string(value)?)?;
        std::fs::rename(&tmp, &p)?;
        Ok(())
    }
    /// Write `inputs.json` if this cache has inputs and it is not there yet (before the first
    /// row or checkpoint: a run that fails its set-up leaves nothing behind).
    fn record_inputs(&self) -> Result<()> {
        if let Some((record, text)) = &self.inputs {
            if !record.is_file() {
                std::fs::write(record, text).with_context(|| format!("writing {}", record.display()))?;
            }
        }
        Ok(())
    }
    /// Path of the solver checkpoint of `key` (kept next to the cache).
    pub fn checkpoint(&self, key: &str) -> std::path::PathBuf {
        self.path(key).with_extension("ckpt.json")
    }

    /// The result of one (method, case): the cached value of `key` when `resume` is set and
    /// one exists, else `compute()`'s, stored under `key` before it is returned.
    pub fn get_or_compute<T, F>(&self, key: &str, resume: bool, compute: F) -> Result<T>
    where
        T: serde::Serialize + serde::de::DeserializeOwned,
        F: FnOnce() -> Result<T>,
    {
        if resume {
            if let Some(v) = self.get(key) {
                return Ok(v);
            }
        }
        let v = compute()?;
        self.put(key, &v)?;
        Ok(v)
    }

    /// Run `solver` on `problem` with the checkpoint of `key` (written at most every
    /// [`CHECKPOINT_INTERVAL`]): continued from it when
    /// `resume` is set, started afresh (stale checkpoint removed) otherwise; the checkpoint is
    /// removed once the run has finished.
    pub fn run_checkpointed(
        &self,
        key: &str,
        resume: bool,
        problem: diffinv_solvers::Problem<'_>,
        solver: &dyn diffinv_solvers::DynSolver,
        seed: u64,
    ) -> Result<diffinv_solvers::RunOutput> {
        let ckpt = self.checkpoint(key);
        if !resume {
            let _ = std::fs::remove_file(&ckpt);
        }
        self.record_inputs()?;
        let out = diffinv_solvers::Runner::new(problem)
            .with_checkpoint(&ckpt)
            .with_checkpoint_interval(CHECKPOINT_INTERVAL)
            .run(solver, seed)
            .with_context(|| format!("{} ({key})", solver.name()))?;
        let _ = std::fs::remove_file(&ckpt);
        Ok(out)
    }
}

/// `PATH (hash HEX)`: a 64-bit hash of the contents of `path`, or for a folder of the files that
/// define a trained prior (`PriorFolder::DEFINING_FILES`, those present). Read in 1 MiB blocks.
fn input_identity(path: &Path) -> Result<String> {
    use std::hash::Hasher;
    use std::io::Read;
    let files: Vec<std::path::PathBuf> = if path.is_dir() {
        diffinv_priors::neural::PriorFolder::DEFINING_FILES
            .iter()
            .map(|f| path.join(f))
            .filter(|p| p.is_file())
            .collect()
    } else {
        vec![path.to_path_buf()]
    };
    // `DefaultHasher::new()` has fixed keys: the same contents give the same hash in every run
    // of one build (a toolchain upgrade may change it: then a resume asks for a fresh run).
    let mut h = std::collections::hash_map::DefaultHasher::new();
    let mut buf = vec![0u8; 1 << 20];
    for f in &files {
        h.write(f.file_name().map(|n| n.as_encoded_bytes()).unwrap_or_default());
        let mut r = std::fs::File::open(f).with_context(|| format!("reading {}", f.display()))?;
        loop {
            let n = r.read(&mut buf).with_context(|| format!("reading {}", f.display()))?;
            if n == 0 {
                break;
            }
            h.write(&buf[..n]);
        }
    }
    Ok(format!("{} (hash {:016x})", path.display(), h.finish()))
}

/// Mean and sample standard deviation (0 for one value).
pub fn mean_std(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    if v.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let m = v.iter().sum::<f64>() / n;
    let s = if v.len() > 1 {
        (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
    } else {
        0.0
    };
    (m, s)
}
