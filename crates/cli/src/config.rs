//! The run file: a TOML document with the sections `[prior]`, `[forward]`, `[data]`,
//! `[likelihood]`, `[solver]` and `[run]`. Every key is checked before anything starts or is
//! written; an unknown key, a wrong type or an out-of-range value is one error line naming the
//! key (`forward.timeout_s: must be finite and > 0, got -1`).
//!
//! Paths in the file are relative to the file's folder.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use diffinv_operators::npy::load_npy;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::CliError;

/// The sections a run file may have; `likelihood` and `run` are optional.
pub const SECTIONS: &[&str] = &["prior", "forward", "data", "likelihood", "solver", "run"];

/// A parsed, validated run file (arrays still as paths or inline values).
#[derive(Debug, Clone, Serialize)]
pub struct RunFile {
    /// The file itself.
    pub path: PathBuf,
    /// Its folder: relative paths start here.
    pub dir: PathBuf,
    /// `[prior]`.
    pub prior: PriorSection,
    /// `[forward]`.
    pub forward: ForwardSection,
    /// `[data]`.
    pub data: DataSection,
    /// `[likelihood]`.
    pub likelihood: LikelihoodSection,
    /// `[solver]`: `method` and that method's configuration keys.
    pub solver: SolverSection,
    /// `[run]`.
    pub run: RunSection,
}

/// `[prior]`: the diffusion prior, selected by `kind`.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum PriorSection {
    /// `kind = "gaussian"`.
    Gaussian(GaussianPrior),
    /// `kind = "gaussian-mixture"`.
    GaussianMixture(MixturePrior),
    /// `kind = "trained"`.
    Trained(TrainedPrior),
    /// `kind = "torchscript"`.
    Torchscript(TorchScriptPrior),
}

/// `N(mean, variance I)`, `N(mean, diag(variance))` or `N(mean, covariance)`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GaussianPrior {
    /// The mean, inline.
    #[serde(default)]
    pub mean: Option<Vec<f64>>,
    /// The mean from a `.npy` file of `d` values.
    #[serde(default)]
    pub mean_npy: Option<PathBuf>,
    /// Isotropic variance (default 1 when no other covariance is given).
    #[serde(default)]
    pub variance: Option<f64>,
    /// Per-coordinate variances, inline (`d` values).
    #[serde(default)]
    pub variances: Option<Vec<f64>>,
    /// Per-coordinate variances from a `.npy` file of `d` values.
    #[serde(default)]
    pub variance_npy: Option<PathBuf>,
    /// A full `d x d` covariance from a `.npy` file.
    #[serde(default)]
    pub covariance_npy: Option<PathBuf>,
    /// Solve in standardised coordinates `z = (x - mean) / sd` (the solver sees `N(0, I)`, the
    /// forward model gets `x = mean + sd ⊙ z`), default false. The diffusion samplers' noise
    /// schedule (sigma from 80 down to 0.002, EDM) assumes unknowns of unit scale: a prior
    /// whose standard deviations are far from 1 (rates of 0.1 +- 0.02, say) wastes most steps
    /// without it. The posterior is the same; only its discretisation changes. Diagonal
    /// covariances only.
    #[serde(default)]
    pub standardize: bool,
}

/// `sum_k w_k N(mu_k, variance I)`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MixturePrior {
    /// Component weights (positive; normalised to sum 1).
    pub weights: Vec<f64>,
    /// Component means, inline: one list of `d` values per component.
    #[serde(default)]
    pub means: Option<Vec<Vec<f64>>>,
    /// Component means from a `.npy` file of shape `(K, d)`.
    #[serde(default)]
    pub means_npy: Option<PathBuf>,
    /// The isotropic variance of every component.
    pub variance: f64,
}

/// A prior folder written by `cargo xtask train` (`config.toml`, `ema.safetensors`,
/// `normalization.json`), e.g. `fixtures/priors/ns64`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainedPrior {
    /// The folder.
    pub folder: PathBuf,
    /// Images per network call (default 64).
    #[serde(default = "default_batch")]
    pub batch: usize,
}

/// How an exported TorchScript network is parameterised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ScriptKind {
    /// `D(x, sigma)`: an EDM denoiser (Karras et al. 2022, arXiv 2206.00364).
    Edm,
    /// `eps(x_t, t)`: a variance-preserving noise predictor on a linear beta schedule (DDPM,
    /// Ho et al. 2020, arXiv 2006.11239).
    VpEps,
}

/// A network exported with `torch.jit.script`/`trace`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TorchScriptPrior {
    /// The `.pt` file.
    pub file: PathBuf,
    /// Its parameterisation: `"edm"` or `"vp-eps"` (the "kind" of network; `kind` is
    /// the section's selector).
    pub network: ScriptKind,
    /// `[C, H, W]` of one image.
    pub shape: [usize; 3],
    /// Images per network call (default 64).
    #[serde(default = "default_batch")]
    pub batch: usize,
    /// The network's input normalisation: it was trained on `(x - shift) / scale`.
    #[serde(default)]
    pub shift: f64,
    /// See `shift` (default 1).
    #[serde(default = "one")]
    pub scale: f64,
}

fn default_batch() -> usize {
    64
}
fn one() -> f64 {
    1.0
}

/// `[forward]`: the forward model, selected by `kind`.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum ForwardSection {
    /// `kind = "process"`: a simulator in any language, run as worker processes.
    Process(diffinv_process::ProcessConfig),
    /// `kind = "matrix"`: `y = A x` with `A` from a `.npy` file.
    Matrix(MatrixForward),
    /// `kind = "navier-stokes"`: the 2-D Navier-Stokes solver.
    NavierStokes(NavierStokesForward),
    /// `kind = "imaging"`: one of the image-restoration operators.
    Imaging(ImagingForward),
    /// `kind = "eht"`: closure phases and log closure amplitudes of the EHT array; every key
    /// of the array, source and observation configuration may be given (the defaults are the
    /// black-hole table's M87* setting).
    Eht(diffinv_operators::EhtConfig),
}

/// `y = A x`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatrixForward {
    /// `A`, shape `(m, d)`, float32 or float64.
    pub matrix_npy: PathBuf,
}

/// The 2-D Navier-Stokes forward model of EnKG (arXiv 2409.20175, section 5.2): the vorticity
/// at time `T` from the initial vorticity, subsampled.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NavierStokesForward {
    /// Grid size `H = W` (EnKG: 128).
    pub resolution: usize,
    /// Keep every `subsample`-th grid point per axis (default 2, EnKG's).
    #[serde(default = "two")]
    pub subsample: usize,
    /// Physical vorticity = `input_scale * x` (default 1).
    #[serde(default = "one")]
    pub input_scale: f64,
    /// `"f32"` (default, the reference's) or `"f64"`.
    #[serde(default = "f32_name")]
    pub precision: String,
}

fn two() -> usize {
    2
}
fn f32_name() -> String {
    "f32".into()
}

/// An image-restoration operator on `[C, H, W]` images.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImagingForward {
    /// One of `diffinv_operators::imaging::STANDARD_TASKS`: `sr4`, `box`, `random`, `gblur`,
    /// `mblur`, `phase`, `hdr` (the DPS/DAPS settings).
    pub task: String,
    /// `[C, H, W]`.
    pub shape: [usize; 3],
    /// Seed of the random masks and motion kernels (default 0).
    #[serde(default)]
    pub seed: u64,
}

/// `[data]`: the observation.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSection {
    /// The measurement, inline.
    #[serde(default)]
    pub y: Option<Vec<f64>>,
    /// The measurement from a `.npy` file (any shape; flattened).
    #[serde(default)]
    pub y_npy: Option<PathBuf>,
    /// `[H, W]` or `[C, H, W]` when the unknown is an image: the run then draws its mean and
    /// standard deviation as a labelled PNG.
    #[serde(default)]
    pub shape: Option<Vec<usize>>,
    /// The true unknown, when known (a synthetic test): the summary reports the relative L2
    /// error of the posterior mean.
    #[serde(default)]
    pub truth_npy: Option<PathBuf>,
}

/// `[likelihood]`: the noise model of the measurement.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum LikelihoodSection {
    /// `kind = "gaussian"`.
    Gaussian(GaussianNoise),
    /// `kind = "eht-closure"`.
    EhtClosure(EhtClosureNoise),
}

/// `y = G(x) + sigma n`: one `sigma` for every measurement, or one per measurement.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GaussianNoise {
    /// The noise standard deviation (0: noiseless, unit weight).
    #[serde(default)]
    pub sigma: Option<f64>,
    /// One standard deviation per measurement, from a `.npy` file.
    #[serde(default)]
    pub sigma_npy: Option<PathBuf>,
}

/// The closure chi^2 of the EHT problem (DPS/EnKG's black-hole likelihood).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EhtClosureNoise {
    /// Standard deviations of the closure phases (radians) then of the log closure amplitudes,
    /// one per measurement but the last (the total flux), from a `.npy` file.
    pub sigma_npy: PathBuf,
}

/// `[solver]`.
#[derive(Debug, Clone, Serialize)]
pub struct SolverSection {
    /// A method name from `diffinv methods`.
    pub method: String,
    /// The other keys: that method's configuration (defaults from the registry).
    pub config: serde_json::Value,
}

/// `[run]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunSection {
    /// The run's seed (default 0); every random draw is keyed by (seed, step, particle).
    #[serde(default)]
    pub seed: u64,
    /// The results folder (default `results/<file stem>`, relative to the file's folder).
    #[serde(default)]
    pub out: Option<PathBuf>,
    /// Write the checkpoint at most every this many seconds (default 0: after every step, so
    /// an interruption loses nothing).
    #[serde(default)]
    pub checkpoint_every_s: f64,
    /// Under MPI, shard the prior's denoiser batches over the ranks too (each rank denoises
    /// `1/P` of the rows; default false: every rank denoises every row). Bit-identical for the
    /// analytic priors; a neural prior's rows can depend on the batch they are evaluated in, so
    /// its samples then agree with the run without MPI to rounding (docs/distributed.md).
    /// Ignored without MPI.
    #[serde(default)]
    pub shard_prior: bool,
}

impl Default for RunSection {
    fn default() -> Self {
        Self {
            seed: 0,
            out: None,
            checkpoint_every_s: 0.0,
            shard_prior: false,
        }
    }
}

/// An error about a key.
fn key_error(key: &str, reason: impl std::fmt::Display) -> CliError {
    CliError::Config {
        key: key.to_string(),
        reason: reason.to_string(),
    }
}

/// Deserialize `value` as `T`, naming the failing key below `prefix` on error.
fn typed<T: DeserializeOwned>(value: toml::Value, prefix: &str) -> Result<T, CliError> {
    serde_path_to_error::deserialize::<_, T>(value).map_err(|e| {
        let path = e.path().to_string();
        let key = if path == "." || path.is_empty() {
            prefix.to_string()
        } else {
            format!("{prefix}.{path}")
        };
        key_error(&key, e.inner().to_string().replace('\n', " "))
    })
}

/// The closest of `known` to `word` when it is close enough to be a likely typo.
pub fn close_match<'a>(word: &str, known: &[&'a str]) -> Option<&'a str> {
    let d = |a: &str, b: &str| {
        let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
        let mut row: Vec<usize> = (0..=b.len()).collect();
        for i in 1..=a.len() {
            let mut prev = row[0];
            row[0] = i;
            for j in 1..=b.len() {
                let cur = row[j];
                row[j] = (row[j] + 1)
                    .min(row[j - 1] + 1)
                    .min(prev + usize::from(a[i - 1] != b[j - 1]));
                prev = cur;
            }
        }
        row[b.len()]
    };
    known
        .iter()
        .map(|k| (d(word, k), *k))
        .filter(|(dist, k)| *dist <= 2.max(k.len() / 3))
        .min()
        .map(|(_, k)| k)
}

fn unknown(what: &str, got: &str, known: &[&str]) -> String {
    let hint = close_match(got, known)
        .map(|k| format!(" (did you mean {k:?}?)"))
        .unwrap_or_default();
    format!("unknown {what} {got:?}{hint}; known: {}", known.join(", "))
}

/// Split a section into its `kind` and the other keys.
fn kind_of(
    section: &str,
    value: toml::Value,
    known: &[&str],
) -> Result<(String, toml::Value), CliError> {
    let toml::Value::Table(mut t) = value else {
        return Err(key_error(section, "must be a table"));
    };
    let key = format!("{section}.kind");
    let kind = match t.remove("kind") {
        Some(toml::Value::String(s)) => s,
        Some(other) => return Err(key_error(&key, format!("must be a string, got {other}"))),
        None => return Err(key_error(&key, format!("missing; one of {}", known.join(", ")))),
    };
    if !known.contains(&kind.as_str()) {
        return Err(key_error(&key, unknown("kind", &kind, known)));
    }
    Ok((kind, toml::Value::Table(t)))
}

impl RunFile {
    /// Read, parse and validate `path`. Nothing is started or written.
    pub fn load(path: &Path) -> Result<Self, CliError> {
        let text = std::fs::read_to_string(path).map_err(|e| CliError::Io {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        let dir = path
            .parent()
            .map(Path::to_path_buf)
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or_else(|| PathBuf::from("."));
        Self::parse(&text, path, &dir)
    }

    /// Parse and validate `text` (the content of `path`, whose folder is `dir`).
    pub fn parse(text: &str, path: &Path, dir: &Path) -> Result<Self, CliError> {
        let mut doc: toml::Table = text.parse().map_err(|e: toml::de::Error| {
            let at = e
                .span()
                .map(|s| {
                    let line = text[..s.start.min(text.len())].matches('\n').count() + 1;
                    format!("line {line}: ")
                })
                .unwrap_or_default();
            CliError::Syntax {
                path: path.to_path_buf(),
                reason: format!("{at}{}", e.message().replace('\n', " ")),
            }
        })?;
        for key in doc.keys() {
            if !SECTIONS.contains(&key.as_str()) {
                return Err(key_error(key, unknown("section", key, SECTIONS)));
            }
        }
        let mut take = |s: &str| doc.remove(s);
        let missing = |s: &str| key_error(s, "missing section");

        let prior_v = take("prior").ok_or_else(|| missing("prior"))?;
        let (kind, rest) = kind_of(
            "prior",
            prior_v,
            &["gaussian", "gaussian-mixture", "trained", "torchscript"],
        )?;
        let prior = match kind.as_str() {
            "gaussian" => PriorSection::Gaussian(typed(rest, "prior")?),
            "gaussian-mixture" => PriorSection::GaussianMixture(typed(rest, "prior")?),
            "trained" => PriorSection::Trained(typed(rest, "prior")?),
            _ => PriorSection::Torchscript(typed(rest, "prior")?),
        };

        let forward_v = take("forward").ok_or_else(|| missing("forward"))?;
        let (kind, rest) = kind_of(
            "forward",
            forward_v,
            &["process", "matrix", "navier-stokes", "imaging", "eht"],
        )?;
        let forward = match kind.as_str() {
            "process" => ForwardSection::Process(typed(rest, "forward")?),
            "matrix" => ForwardSection::Matrix(typed(rest, "forward")?),
            "navier-stokes" => ForwardSection::NavierStokes(typed(rest, "forward")?),
            "imaging" => ForwardSection::Imaging(typed(rest, "forward")?),
            _ => {
                // EhtConfig has defaults for every key but no `deny_unknown_fields` of its own:
                // check the keys here against what it serialises.
                let known = serde_json::to_value(diffinv_operators::EhtConfig::default())
                    .map_err(|e| key_error("forward", e))?;
                if let (toml::Value::Table(t), serde_json::Value::Object(k)) = (&rest, &known) {
                    let names: Vec<&str> = k.keys().map(String::as_str).collect();
                    for key in t.keys() {
                        if !k.contains_key(key) {
                            return Err(key_error(
                                &format!("forward.{key}"),
                                unknown("key", key, &names),
                            ));
                        }
                    }
                }
                ForwardSection::Eht(typed(rest, "forward")?)
            }
        };

        let data: DataSection = typed(take("data").ok_or_else(|| missing("data"))?, "data")?;

        let lik_v = take("likelihood").ok_or_else(|| missing("likelihood"))?;
        let (kind, rest) = kind_of("likelihood", lik_v, &["gaussian", "eht-closure"])?;
        let likelihood = match kind.as_str() {
            "gaussian" => LikelihoodSection::Gaussian(typed(rest, "likelihood")?),
            _ => LikelihoodSection::EhtClosure(typed(rest, "likelihood")?),
        };

        let solver_v = take("solver").ok_or_else(|| missing("solver"))?;
        let toml::Value::Table(mut st) = solver_v else {
            return Err(key_error("solver", "must be a table"));
        };
        let method = match st.remove("method") {
            Some(toml::Value::String(s)) => s,
            Some(other) => {
                return Err(key_error("solver.method", format!("must be a string, got {other}")))
            }
            None => {
                return Err(key_error(
                    "solver.method",
                    "missing; `diffinv methods` lists the methods",
                ))
            }
        };
        let config = serde_json::to_value(&st).map_err(|e| key_error("solver", e))?;
        let solver = SolverSection { method, config };

        let run: RunSection = match take("run") {
            Some(v) => typed(v, "run")?,
            None => RunSection::default(),
        };

        let file = Self {
            path: path.to_path_buf(),
            dir: dir.to_path_buf(),
            prior,
            forward,
            data,
            likelihood,
            solver,
            run,
        };
        file.validate()?;
        Ok(file)
    }

    /// A path from the file, relative to its folder.
    pub fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.dir.join(p)
        }
    }

    /// The checks serde cannot express: exactly one source per array, positive sizes, finite
    /// numbers. (The arrays themselves are read and checked by [`Arrays`].)
    fn validate(&self) -> Result<(), CliError> {
        let finite = |key: &str, v: f64, min: f64, strict: bool| -> Result<(), CliError> {
            let ok = v.is_finite() && if strict { v > min } else { v >= min };
            if ok {
                Ok(())
            } else {
                let op = if strict { ">" } else { ">=" };
                Err(key_error(key, format!("must be finite and {op} {min}, got {v}")))
            }
        };
        let one_of = |key_a: &str, a: bool, key_b: &str, b: bool, required: bool| {
            match (a, b) {
                (true, true) => Err(key_error(
                    key_a,
                    format!("give either {key_a} or {key_b}, not both"),
                )),
                (false, false) if required => {
                    Err(key_error(key_a, format!("missing (or give {key_b})")))
                }
                _ => Ok(()),
            }
        };
        match &self.prior {
            PriorSection::Gaussian(g) => {
                one_of("prior.mean", g.mean.is_some(), "prior.mean_npy", g.mean_npy.is_some(), true)?;
                let n = [
                    g.variance.is_some(),
                    g.variances.is_some(),
                    g.variance_npy.is_some(),
                    g.covariance_npy.is_some(),
                ]
                .iter()
                .filter(|b| **b)
                .count();
                if n > 1 {
                    return Err(key_error(
                        "prior.variance",
                        "give one of variance, variances, variance_npy, covariance_npy",
                    ));
                }
                if let Some(v) = &g.variances {
                    for (i, x) in v.iter().enumerate() {
                        finite(&format!("prior.variances[{i}]"), *x, 0.0, true)?;
                    }
                }
                if let Some(v) = g.variance {
                    finite("prior.variance", v, 0.0, true)?;
                }
            }
            PriorSection::GaussianMixture(m) => {
                one_of("prior.means", m.means.is_some(), "prior.means_npy", m.means_npy.is_some(), true)?;
                finite("prior.variance", m.variance, 0.0, true)?;
                if m.weights.is_empty() {
                    return Err(key_error("prior.weights", "needs at least one component"));
                }
                for (i, w) in m.weights.iter().enumerate() {
                    finite(&format!("prior.weights[{i}]"), *w, 0.0, true)?;
                }
                if let Some(means) = &m.means {
                    if means.len() != m.weights.len() {
                        return Err(key_error(
                            "prior.means",
                            format!("{} means for {} weights", means.len(), m.weights.len()),
                        ));
                    }
                    let d = means.first().map_or(0, Vec::len);
                    if d == 0 {
                        return Err(key_error("prior.means", "the means are empty"));
                    }
                    for (i, mu) in means.iter().enumerate() {
                        if mu.len() != d {
                            return Err(key_error(
                                &format!("prior.means[{i}]"),
                                format!("has {} values, the first mean {d}", mu.len()),
                            ));
                        }
                        if mu.iter().any(|v| !v.is_finite()) {
                            return Err(key_error(&format!("prior.means[{i}]"), "non-finite value"));
                        }
                    }
                }
            }
            PriorSection::Trained(t) => {
                if t.batch == 0 {
                    return Err(key_error("prior.batch", "must be > 0"));
                }
            }
            PriorSection::Torchscript(t) => {
                if t.batch == 0 {
                    return Err(key_error("prior.batch", "must be > 0"));
                }
                if t.shape.contains(&0) {
                    return Err(key_error("prior.shape", format!("has a zero size: {:?}", t.shape)));
                }
                finite("prior.scale", t.scale, 0.0, true)?;
                finite("prior.shift", t.shift, f64::MIN, false)?;
            }
        }
        match &self.forward {
            ForwardSection::Process(p) => p.validate().map_err(|e| match e {
                diffinv_process::ProcessError::Config { key, reason } => {
                    key_error(&format!("forward.{key}"), reason)
                }
                other => key_error("forward", other),
            })?,
            ForwardSection::Matrix(_) | ForwardSection::Eht(_) => {}
            ForwardSection::NavierStokes(n) => {
                if n.resolution < 4 || n.resolution % 2 != 0 {
                    return Err(key_error(
                        "forward.resolution",
                        format!("must be even and >= 4, got {}", n.resolution),
                    ));
                }
                if n.subsample == 0 || n.resolution % n.subsample != 0 {
                    return Err(key_error(
                        "forward.subsample",
                        format!("must divide the resolution {}, got {}", n.resolution, n.subsample),
                    ));
                }
                finite("forward.input_scale", n.input_scale, 0.0, true)?;
                if !["f32", "f64"].contains(&n.precision.as_str()) {
                    return Err(key_error(
                        "forward.precision",
                        unknown("precision", &n.precision, &["f32", "f64"]),
                    ));
                }
            }
            ForwardSection::Imaging(i) => {
                let tasks = imaging_tasks();
                if !tasks.contains(&i.task.as_str()) {
                    return Err(key_error("forward.task", unknown("task", &i.task, &tasks)));
                }
                if i.shape.contains(&0) {
                    return Err(key_error("forward.shape", format!("has a zero size: {:?}", i.shape)));
                }
            }
        }
        one_of("data.y", self.data.y.is_some(), "data.y_npy", self.data.y_npy.is_some(), true)?;
        if let Some(y) = &self.data.y {
            if y.is_empty() {
                return Err(key_error("data.y", "is empty"));
            }
            if let Some(i) = y.iter().position(|v| !v.is_finite()) {
                return Err(key_error("data.y", format!("value {i} is not finite")));
            }
        }
        if let Some(s) = &self.data.shape {
            if !(2..=3).contains(&s.len()) || s.contains(&0) {
                return Err(key_error(
                    "data.shape",
                    format!("must be [H, W] or [C, H, W] with sizes > 0, got {s:?}"),
                ));
            }
        }
        if let LikelihoodSection::Gaussian(g) = &self.likelihood {
            one_of(
                "likelihood.sigma",
                g.sigma.is_some(),
                "likelihood.sigma_npy",
                g.sigma_npy.is_some(),
                true,
            )?;
            if let Some(s) = g.sigma {
                finite("likelihood.sigma", s, 0.0, false)?;
            }
        }
        finite("run.checkpoint_every_s", self.run.checkpoint_every_s, 0.0, false)?;
        // The method and its keys (the registry's strict merge: unknown keys and wrong types
        // are named); building a solver does no compute.
        let method = diffinv_solvers::registry::method(&self.solver.method)
            .map_err(|e| key_error("solver.method", e))?;
        method
            .build(&self.solver.config)
            .map_err(|e| key_error("solver", e))?;
        Ok(())
    }

    /// A key-value view of the whole file with every default filled in (for `summary.json`).
    pub fn resolved(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }
}

/// The imaging task names of `[forward] kind = "imaging"`.
pub fn imaging_tasks() -> Vec<&'static str> {
    diffinv_operators::imaging::STANDARD_TASKS.iter().map(|t| t.0).collect()
}

/// Read a `.npy` array named by config key `key`: `(shape, values)`.
pub fn read_npy(file: &RunFile, key: &str, p: &Path) -> Result<(Vec<usize>, Vec<f64>), CliError> {
    let path = file.resolve(p);
    let a = load_npy(&path).map_err(|e| key_error(key, e))?;
    let v = a.to_f64();
    if let Some(i) = v.iter().position(|x| !x.is_finite()) {
        return Err(key_error(key, format!("{}: value {i} is not finite", path.display())));
    }
    Ok((a.shape, v))
}

/// Named arrays of a run, kept for `summary.json` (where each came from).
pub type Sources = BTreeMap<String, String>;
