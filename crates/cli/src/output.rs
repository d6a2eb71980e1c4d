//! What a run writes into its results folder: the samples and their moments as `.npy`,
//! `steps.csv` (appended after every step, so an interrupted run keeps its log and a resumed one
//! continues it), `summary.json` and, for images, a labelled figure.

use std::io::Write;
use std::path::{Path, PathBuf};

use diffinv_figures::{image_grid, ColorBar, Colormap, ImageRow, Panel};
use diffinv_operators::npy::{save_npy, write_atomic_bytes};
use diffinv_solvers::{CostSummary, Observer, StateView, StepInfo};
use ndarray::{Array1, Array2, Axis};

use crate::CliError;

/// File names inside a results folder.
pub mod files {
    /// The samples, `(N, d)` float32.
    pub const SAMPLES: &str = "samples.npy";
    /// Their mean, `(d,)` float32.
    pub const MEAN: &str = "mean.npy";
    /// Their standard deviation, `(d,)` float32.
    pub const STD: &str = "std.npy";
    /// The run's summary.
    pub const SUMMARY: &str = "summary.json";
    /// One line per step.
    pub const STEPS: &str = "steps.csv";
    /// The checkpoint `--resume` continues from (removed when the run finishes).
    pub const CHECKPOINT: &str = "checkpoint.bin";
    /// The worker processes' stderr.
    pub const WORKERS_LOG: &str = "workers.log";
    /// Mean and standard deviation as images.
    pub const FIGURE: &str = "posterior.png";
}

fn io(path: &Path, e: impl std::fmt::Display) -> CliError {
    CliError::Io {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

/// The per-coordinate mean and standard deviation of the rows of `x` (population, `1/N`).
pub fn moments(x: &Array2<f32>) -> (Array1<f32>, Array1<f32>) {
    let n = x.nrows().max(1) as f64;
    let xd = x.mapv(f64::from);
    let mean = xd.sum_axis(Axis(0)) / n;
    let var = xd
        .axis_iter(Axis(0))
        .fold(Array1::<f64>::zeros(x.ncols()), |acc, r| acc + (&r - &mean).mapv(|v| v * v))
        / n;
    (mean.mapv(|v| v as f32), var.mapv(|v| v.sqrt() as f32))
}

/// Write `samples.npy`, `mean.npy` and `std.npy`; returns the moments.
pub fn write_samples(dir: &Path, x: &Array2<f32>) -> Result<(Array1<f32>, Array1<f32>), CliError> {
    let (mean, std) = moments(x);
    let p = dir.join(files::SAMPLES);
    let data: Vec<f32> = x.iter().copied().collect();
    save_npy(&p, &[x.nrows(), x.ncols()], &data).map_err(|e| io(&p, e))?;
    for (name, v) in [(files::MEAN, &mean), (files::STD, &std)] {
        let p = dir.join(name);
        save_npy(&p, &[v.len()], v.as_slice().unwrap_or(&v.to_vec())).map_err(|e| io(&p, e))?;
    }
    Ok((mean, std))
}

/// Write `value` as pretty JSON to `path`, atomically.
pub fn write_json(path: &Path, value: &serde_json::Value) -> Result<(), CliError> {
    let text = serde_json::to_string_pretty(value).map_err(|e| io(path, e))?;
    write_atomic_bytes(path, format!("{text}\n").as_bytes()).map_err(|e| io(path, e))
}

/// The header of `steps.csv`.
pub const STEPS_HEADER: &str =
    "step,sigma,guided,misfit,fwd_total,fwd_calls,den_total,failed,seconds,spread";

/// An observer that appends one line per step to `steps.csv` and flushes it: the cost columns
/// are cumulative (a resumed run continues the ledger of its checkpoint); `spread` is the
/// root-mean-square distance of the particles to their mean, in the prior's space.
pub struct StepsCsv {
    file: std::fs::File,
    path: PathBuf,
    /// The first write error, reported after the run (a full disk does not abort the solve).
    pub error: Option<CliError>,
}

impl StepsCsv {
    /// Open `dir/steps.csv`: a new file with its header, or, when resuming from a checkpoint
    /// at step `resume_step`, the existing file cut to the lines of the steps before it.
    pub fn open(dir: &Path, resume_step: Option<usize>) -> Result<Self, CliError> {
        let path = dir.join(files::STEPS);
        let mut keep = vec![STEPS_HEADER.to_string()];
        if let (Some(k), Ok(text)) = (resume_step, std::fs::read_to_string(&path)) {
            keep.extend(
                text.lines()
                    .skip(1)
                    .filter(|l| {
                        l.split(',')
                            .next()
                            .and_then(|s| s.parse::<usize>().ok())
                            .is_some_and(|s| s < k)
                    })
                    .map(str::to_string),
            );
        }
        let mut file = std::fs::File::create(&path).map_err(|e| io(&path, e))?;
        for l in &keep {
            writeln!(file, "{l}").map_err(|e| io(&path, e))?;
        }
        Ok(Self {
            file,
            path,
            error: None,
        })
    }
}

impl Observer for StepsCsv {
    fn on_step(&mut self, info: &StepInfo, state: StateView<'_>, cost: &CostSummary) {
        let x = state.particles;
        let spread = if x.nrows() > 1 {
            let mean = x.mean_axis(Axis(0));
            let ss: f64 = match &mean {
                Some(m) => x
                    .outer_iter()
                    .map(|r| r.iter().zip(m.iter()).map(|(a, b)| f64::from(a - b).powi(2)).sum::<f64>())
                    .sum(),
                None => 0.0,
            };
            (ss / x.nrows() as f64).sqrt()
        } else {
            0.0
        };
        let misfit = info.misfit.map(|m| format!("{m:.6e}")).unwrap_or_default();
        let line = format!(
            "{},{:.6e},{},{},{},{},{},{},{:.3},{:.6e}",
            info.step,
            info.sigma,
            info.guided,
            misfit,
            cost.fwd_total,
            cost.fwd_seq,
            cost.den_total,
            cost.failed,
            cost.seconds,
            spread
        );
        if self.error.is_none() {
            if let Err(e) = writeln!(self.file, "{line}").and_then(|_| self.file.flush()) {
                self.error = Some(io(&self.path, e));
            }
        }
    }
}

/// Plain progress lines on stderr (when it is not a terminal): one at least every
/// `every` seconds and at the last step.
pub struct LogLines {
    every: std::time::Duration,
    last: std::time::Instant,
    steps: usize,
    start: std::time::Instant,
}

impl LogLines {
    /// A line at most every `every`.
    pub fn new(every: std::time::Duration) -> Self {
        Self {
            every,
            last: std::time::Instant::now(),
            steps: 0,
            start: std::time::Instant::now(),
        }
    }
}

impl Observer for LogLines {
    fn on_start(&mut self, solver: &str, steps: usize) {
        self.steps = steps;
        eprintln!("diffinv: {solver}, {steps} steps");
    }
    fn on_step(&mut self, info: &StepInfo, _state: StateView<'_>, cost: &CostSummary) {
        if self.last.elapsed() >= self.every || info.step + 1 == self.steps {
            self.last = std::time::Instant::now();
            let misfit = info.misfit.map(|m| format!(" misfit {m:.4e}")).unwrap_or_default();
            eprintln!(
                "diffinv: step {}/{} sigma {:.4}{misfit} forward evaluations {} failed {} ({:.1} s)",
                info.step + 1,
                self.steps,
                info.sigma,
                cost.fwd_total,
                cost.failed,
                self.start.elapsed().as_secs_f64()
            );
        }
    }
}

/// Draw the posterior mean and standard deviation (and the truth, when known) of an image
/// unknown of `shape` (`[H, W]` or `[C, H, W]`) to `dir/posterior.png`: one row per channel.
pub fn figure(
    dir: &Path,
    title: &str,
    shape: &[usize],
    mean: &Array1<f32>,
    std: &Array1<f32>,
    truth: Option<&Array1<f32>>,
) -> Result<PathBuf, CliError> {
    let (c, h, w) = match shape {
        [h, w] => (1, *h, *w),
        [c, h, w] => (*c, *h, *w),
        _ => return Err(CliError::Usage(format!("data.shape {shape:?} is not an image shape"))),
    };
    let range = |v: &[f32]| {
        let lo = v.iter().copied().fold(f32::INFINITY, f32::min);
        let hi = v.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        (lo, hi)
    };
    let mut rows = Vec::new();
    for k in 0..c {
        let part = |v: &Array1<f32>| v.iter().skip(k * h * w).take(h * w).copied().collect::<Vec<f32>>();
        let m = part(mean);
        let s = part(std);
        let t = truth.map(part);
        let (mut lo, mut hi) = range(&m);
        if let Some(t) = &t {
            let (a, b) = range(t);
            lo = lo.min(a);
            hi = hi.max(b);
        }
        // The diverging map puts white at 0: a range symmetric about 0.
        let a = lo.abs().max(hi.abs());
        let (lo, hi, cmap) = if lo < 0.0 {
            (-a, a, Colormap::Diverging)
        } else {
            (lo, hi, Colormap::Hot)
        };
        let (_, shi) = range(&s);
        let mut panels = Vec::new();
        if let Some(t) = t {
            panels.push(Some(Panel::new("truth", t, h, w, cmap, lo, hi)));
        }
        panels.push(Some(Panel::new("posterior mean", m, h, w, cmap, lo, hi)));
        panels.push(Some(
            Panel::new("posterior std", s, h, w, Colormap::Hot, 0.0, shi)
                .with_bar(ColorBar::Own("std".into())),
        ));
        let label = if c > 1 { format!("channel {k}") } else { String::new() };
        rows.push(ImageRow::new(label, "value", panels));
    }
    let zoom = (256 / h.max(w).max(1)).clamp(1, 8);
    let path = dir.join(files::FIGURE);
    image_grid(&path, title, &rows, zoom).map_err(|e| io(&path, e))?;
    Ok(path)
}
