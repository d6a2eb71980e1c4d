//! The tables' presets as data: `configs/tables/TABLE-PRESET.toml` (embedded in the binary at
//! build time), each a list of rows naming a method of the registry
//! ([`diffinv_solvers::registry`]) and the configuration keys that differ from that method's
//! defaults, plus, for the Gaussian-mixture table, the problem sizes.
//!
//! ```toml
//! [[rows]]
//! label = "EnKG (gs=0.5)"       # the row label of the table
//! method = "EnKG"               # a registry name
//! config = { guidance_scale = 0.5, num_particles = 256 }
//! per_task.phase = { zeta = 0.4 } # imaging: overrides for one task
//! resize = ["num_particles"]      # ns/blackhole: the keys `--particles N` sets
//! ```

use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock};

use anyhow::{bail, Context, Result};
use diffinv_solvers::{registry, DynSolver};
use serde::Deserialize;
use serde_json::Value;

use crate::methods::Preset;

/// One row of a table: a registry method with its configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RowSpec {
    /// The row label.
    pub label: String,
    /// The registry name of the method.
    pub method: String,
    /// Keys overriding the method's defaults.
    #[serde(default)]
    pub config: toml::Table,
    /// Imaging: keys overriding `config` for one task (by task name).
    #[serde(default)]
    pub per_task: BTreeMap<String, toml::Table>,
    /// Navier-Stokes and black hole: the keys that `--particles N` sets to `N`.
    #[serde(default)]
    pub resize: Vec<String>,
}

/// A table's preset.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TablePreset {
    /// Which file it came from (for error messages).
    #[serde(skip)]
    pub source: String,
    /// Table-specific settings (the Gaussian-mixture table's sizes).
    #[serde(default)]
    pub settings: Option<toml::Table>,
    /// The rows, in the table's order.
    pub rows: Vec<RowSpec>,
}

/// The embedded preset files, `(table, preset, text)`.
const FILES: &[(&str, &str, &str)] = &[
    ("gmm", "quick", include_str!("../../../configs/tables/gmm-quick.toml")),
    ("gmm", "full", include_str!("../../../configs/tables/gmm-full.toml")),
    ("ns", "tiny", include_str!("../../../configs/tables/ns-tiny.toml")),
    ("ns", "quick", include_str!("../../../configs/tables/ns-quick.toml")),
    ("ns", "full", include_str!("../../../configs/tables/ns-full.toml")),
    ("ns", "paper", include_str!("../../../configs/tables/ns-paper.toml")),
    ("blackhole", "tiny", include_str!("../../../configs/tables/blackhole-tiny.toml")),
    ("blackhole", "quick", include_str!("../../../configs/tables/blackhole-quick.toml")),
    ("blackhole", "full", include_str!("../../../configs/tables/blackhole-full.toml")),
    ("imaging", "tiny", include_str!("../../../configs/tables/imaging-tiny.toml")),
    ("imaging", "quick", include_str!("../../../configs/tables/imaging-quick.toml")),
    ("imaging", "full", include_str!("../../../configs/tables/imaging-full.toml")),
];

/// The parsed presets of this process, by `(table, preset)`.
fn cache() -> &'static Mutex<BTreeMap<(String, &'static str), TablePreset>> {
    static PARSED: OnceLock<Mutex<BTreeMap<(String, &'static str), TablePreset>>> =
        OnceLock::new();
    PARSED.get_or_init(|| Mutex::new(BTreeMap::new()))
}

/// Overlay `patch` onto `base`, table by table.
fn overlay(base: &mut Value, patch: &Value) {
    match (base, patch) {
        (Value::Object(b), Value::Object(p)) => {
            for (k, v) in p {
                match b.get_mut(k) {
                    Some(slot @ Value::Object(_)) if v.is_object() => overlay(slot, v),
                    _ => {
                        b.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (b, p) => *b = p.clone(),
    }
}

impl RowSpec {
    /// The row's configuration for `task` (imaging) with `--particles` applied.
    pub fn config(&self, task: Option<&str>, particles: Option<usize>) -> Result<Value> {
        let mut cfg = serde_json::to_value(&self.config)?;
        if let Some(extra) = task.and_then(|t| self.per_task.get(t)) {
            overlay(&mut cfg, &serde_json::to_value(extra)?);
        }
        if let (Some(n), Value::Object(map)) = (particles, &mut cfg) {
            for k in &self.resize {
                map.insert(k.clone(), Value::from(n));
            }
        }
        Ok(cfg)
    }
    /// Build the row's solver from the registry.
    pub fn build(&self, task: Option<&str>, particles: Option<usize>) -> Result<Box<dyn DynSolver>> {
        let cfg = self.config(task, particles)?;
        registry::build(&self.method, &cfg)
            .with_context(|| format!("row {:?} ({})", self.label, self.method))
    }
}

impl TablePreset {
    /// Parse a preset file's text; every row is built once (with every task override) so that a
    /// bad key fails here, naming the file and the row, before any compute.
    pub fn parse(source: &str, text: &str) -> Result<Self> {
        let mut p: TablePreset =
            toml::from_str(text).with_context(|| format!("reading preset {source}"))?;
        p.source = source.to_string();
        if p.rows.is_empty() {
            bail!("preset {source} has no rows");
        }
        for (i, r) in p.rows.iter().enumerate() {
            if p.rows[..i].iter().any(|o| o.label == r.label) {
                bail!("preset {source}: the row label {:?} appears twice", r.label);
            }
            r.build(None, None).with_context(|| format!("preset {source}"))?;
            for t in r.per_task.keys() {
                r.build(Some(t), None).with_context(|| format!("preset {source}"))?;
            }
        }
        Ok(p)
    }
    /// The embedded preset of `table` at `preset` (or the file given to [`Self::use_file`]),
    /// parsed and validated once per process (the tables ask for a row's solver at every case).
    pub fn get(table: &str, preset: Preset) -> Result<Self> {
        let name = preset.name();
        let key = (table.to_string(), name);
        if let Some(p) = cache().lock().ok().and_then(|c| c.get(&key).cloned()) {
            return Ok(p);
        }
        let (_, _, text) = FILES
            .iter()
            .find(|(t, p, _)| *t == table && *p == name)
            .with_context(|| format!("table {table} has no {name} preset"))?;
        let parsed = Self::parse(&format!("configs/tables/{table}-{name}.toml"), text)?;
        if let Ok(mut c) = cache().lock() {
            c.insert(key, parsed.clone());
        }
        Ok(parsed)
    }
    /// Use the preset file `path` for `table` at `preset` in this process instead of the
    /// embedded one (`diffinv-reproduce --preset-file`: ablations without a rebuild). It is
    /// parsed and every row built now, so a bad key fails before any compute.
    pub fn use_file(table: &str, preset: Preset, path: &std::path::Path) -> Result<()> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading preset file {}", path.display()))?;
        let parsed = Self::parse(&path.display().to_string(), &text)?;
        cache()
            .lock()
            .map_err(|_| anyhow::anyhow!("preset cache poisoned"))?
            .insert((table.to_string(), preset.name()), parsed);
        Ok(())
    }
    /// The row labelled `label`.
    pub fn row(&self, label: &str) -> Result<&RowSpec> {
        self.rows.iter().find(|r| r.label == label).with_context(|| {
            format!(
                "{} has no row {label:?}; its rows: {}",
                self.source,
                self.labels().join(", ")
            )
        })
    }
    /// The row labels, in order.
    pub fn labels(&self) -> Vec<String> {
        self.rows.iter().map(|r| r.label.clone()).collect()
    }
    /// The table-specific settings as `T` (unknown keys are errors).
    pub fn settings<T: serde::de::DeserializeOwned>(&self) -> Result<T> {
        let t = self
            .settings
            .clone()
            .with_context(|| format!("preset {} lacks its [settings]", self.source))?;
        t.try_into()
            .with_context(|| format!("preset {}: [settings]", self.source))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn every_embedded_preset_parses_and_builds() {
        for (t, p, text) in FILES {
            let preset = TablePreset::parse(&format!("{t}-{p}"), text).unwrap();
            assert!(!preset.rows.is_empty());
        }
    }

    #[test]
    fn bad_presets_are_one_clear_error() {
        let bad = [
            ("[[rows]]\nlabel = \"a\"\nmethod = \"EnKG\"\nconfig = { num_particle = 3 }\n", "num_particles"),
            ("[[rows]]\nlabel = \"a\"\nmethod = \"EnKg\"\n", "EnKG"),
            ("[[rows]]\nlabel = \"a\"\nmethod = \"EnKG\"\ncolor = 1\n", "unknown field"),
            ("[[rows]]\nlabel = \"a\"\nmethod = \"EnKG\"\n[[rows]]\nlabel = \"a\"\nmethod = \"CPS\"\n", "twice"),
            ("rows = []\n", "no rows"),
            ("[[rows]]\nlabel = \"a\"\nmethod = \"EnKG\"\nconfig = { num_particles = -1 }\n", "invalid configuration"),
            ("[[rows]\n", "reading preset"),
        ];
        for (text, want) in bad {
            let e = format!("{:#}", TablePreset::parse("test.toml", text).unwrap_err());
            assert!(e.contains(want), "{text:?}: {e}");
            assert!(!e.contains('\n') || e.contains("TOML"), "one line: {e}");
        }
    }

    #[test]
    fn per_task_and_particles_override_the_row() {
        let p = TablePreset::parse(
            "t",
            "[[rows]]\nlabel = \"EnKG\"\nmethod = \"EnKG\"\nconfig = { num_particles = 8, guidance_scale = 1.0 }\nper_task.phase = { guidance_scale = 0.5 }\nresize = [\"num_particles\"]\n",
        )
        .unwrap();
        let r = p.row("EnKG").unwrap();
        assert_eq!(r.config(Some("phase"), Some(64)).unwrap()["guidance_scale"], 0.5);
        assert_eq!(r.config(Some("sr4"), Some(64)).unwrap()["num_particles"], 64);
        assert_eq!(r.config(None, None).unwrap()["num_particles"], 8);
        assert!(p.row("CPS").is_err());
    }
}
