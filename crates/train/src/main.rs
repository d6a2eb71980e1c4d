//! `diffinv-train CONFIG`: train an EDM prior from a TOML config (normally through
//! `cargo xtask train CONFIG`, which bootstraps libtorch and draws the loss curve).
//!
//! The config has a `[data]` table (where the training images come from and how they are
//! normalised), a `[train]` table ([`diffinv_priors::neural::TrainConfig`]: network, loss,
//! optimiser, EMA, checkpoints, seed, device) and `out`, the run folder. The run folder holds
//! `checkpoint/` (resumable state, rewritten every `checkpoint_every` steps and at the end),
//! `loss.csv` (`step,loss,lr,images_per_second`), `ema.safetensors` (the final EMA weights, the
//! prior to ship), `normalization.json`, a copy of the config and, with `[eval] curve_every`,
//! `quality_curve.csv` (the EMA network's denoising MSE against the Wiener filter's on held-out
//! data, every `curve_every` steps). Run the same command again after an interruption and it
//! continues from the last checkpoint with no lost steps (and no lost or repeated curve point).
//! `--evaluate` measures a finished run (`quality.json`, `samples.png`, `spectrum.png`);
//! `--profile` times training steps over threads, batch sizes and layouts (`profile.csv`).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use diffinv_train::eval;

use anyhow::{bail, Context, Result};
use clap::Parser;
use diffinv_datasets::{blackhole, npy};
use diffinv_priors::neural::{TrainConfig, Trainer};
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

#[derive(Parser)]
#[command(name = "diffinv-train", about = "Train an EDM diffusion prior from a TOML config")]
struct Cli {
    /// The TOML config.
    config: PathBuf,
    /// Stop after this many steps in this invocation (for tests and smoke runs).
    #[arg(long)]
    max_steps: Option<u64>,
    /// Do not train: measure the finished run's EMA prior on held-out data (eval.rs).
    #[arg(long)]
    evaluate: bool,
    /// Held-out images for `--evaluate`.
    #[arg(long, default_value_t = 256)]
    test_images: u64,
    /// Samples drawn for `--evaluate`.
    #[arg(long, default_value_t = 64)]
    samples: usize,
    /// Do not train: time training steps of the config's network for every combination of
    /// libtorch threads (1 and the default), batch size (`--profile-batches`) and batch layout
    /// (NCHW, channels-last), and the data loading alone; prints a Markdown table and writes
    /// `profile.csv` into the run folder. Nothing else in the run folder changes.
    #[arg(long)]
    profile: bool,
    /// Batch sizes for `--profile`.
    #[arg(long, value_delimiter = ',', default_values_t = [8i64, 16, 32, 64])]
    profile_batches: Vec<i64>,
    /// Timed steps per combination for `--profile` (after 2 untimed ones).
    #[arg(long, default_value_t = 6)]
    profile_steps: u32,
}

/// Where the training images come from.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
enum DataSource {
    /// A `.npy` file of shape `(N, H, W)` or `(N, C, H, W)` (e.g. from `cargo xtask data ns`).
    Npy {
        /// Path, relative to the config's folder unless absolute.
        path: PathBuf,
        /// Held-out images (same layout) for `--evaluate`.
        #[serde(default)]
        test_path: Option<PathBuf>,
    },
    /// Synthetic black-hole images (m-ring family, `diffinv_datasets::blackhole`), images
    /// `0..count` of the data set with `seed` (the train split; tests use indices >= count).
    Blackhole {
        /// Number of images.
        count: u64,
        /// Data set seed.
        #[serde(default)]
        seed: u64,
        /// Generator settings.
        #[serde(default)]
        mring: blackhole::MringConfig,
    },
}

/// How pixel values are normalised before training: `x_train = (x - shift) / scale`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "lowercase")]
enum Normalization {
    /// Subtract the data's mean and divide by its standard deviation, times `sigma_data`.
    Standard,
    /// Map `[0, 1]` to `[-1, 1]`.
    Unit,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RunConfig {
    out: PathBuf,
    normalization: Normalization,
    /// Start a fresh run from these weights (a `.safetensors` of the same network, e.g. a
    /// shipped prior's `ema.safetensors`; relative to the config's folder): both the trained
    /// network and its EMA start there, the optimiser's moments at zero. Ignored when the run
    /// folder has a checkpoint (the run resumes from it instead).
    #[serde(default)]
    init: Option<PathBuf>,
    data: DataSource,
    #[serde(default)]
    train: TrainConfig,
    #[serde(default)]
    eval: EvalConfig,
}

/// `[eval]`: how `--evaluate` measures the prior, and the quality curve written while training.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct EvalConfig {
    /// Basis of the Gaussian (Wiener) baseline: `full` covariance or `fourier` (periodic fields).
    wiener: eval::WienerBasis,
    /// Compare radially averaged energy spectra of samples and held-out data (periodic fields).
    spectrum: bool,
    /// Every this many steps (a multiple of `checkpoint_every`; 0 = never), measure the EMA
    /// network's denoising MSE against the Wiener filter's on `curve_images` held-out images at
    /// `curve_sigmas`, and append it to `quality_curve.csv`
    /// (`step,images_seen,sigma,network_mse,wiener_mse,ratio`). Default 0: the curve needs held-out
    /// data (`test_path`, or the black-hole generator).
    curve_every: u64,
    /// Noise levels of the curve (default 1 and 2: the levels of the priors' quality targets).
    curve_sigmas: Vec<f64>,
    /// Held-out images of the curve (the first ones of the test set).
    curve_images: u64,
}

impl Default for EvalConfig {
    fn default() -> Self {
        Self { wiener: eval::WienerBasis::default(), spectrum: false, curve_every: 0, curve_sigmas: vec![1.0, 2.0], curve_images: 64 }
    }
}

impl EvalConfig {
    fn validate(&self, train: &TrainConfig) -> Result<()> {
        if self.curve_every > 0 {
            if !self.curve_every.is_multiple_of(train.checkpoint_every) {
                bail!("[eval] curve_every = {} must be a multiple of [train] checkpoint_every = {} (a resumed run must not lose a point)", self.curve_every, train.checkpoint_every);
            }
            if self.curve_sigmas.is_empty() || self.curve_sigmas.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
                bail!("[eval] curve_sigmas must be a non-empty list of positive noise levels, got {:?}", self.curve_sigmas);
            }
            if self.curve_images == 0 {
                bail!("[eval] curve_images must be at least 1");
            }
        }
        Ok(())
    }
}

fn resolve(base: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

/// Load the images as `(N, C, H, W)` f32 on the CPU.
fn load_data(src: &DataSource, base: &Path, cfg: &TrainConfig) -> Result<Tensor> {
    let (c, r) = (cfg.unet.img_channels, cfg.unet.img_resolution);
    let (shape, data) = match src {
        DataSource::Npy { path, .. } => {
            let path = resolve(base, path);
            let (shape, data) = npy::read_f32(&path).with_context(|| format!("reading {}", path.display()))?;
            (shape, data)
        }
        DataSource::Blackhole { count, seed, mring } => {
            eprintln!("diffinv-train: generating {count} black-hole images (seed {seed})");
            let (imgs, _) = blackhole::generate(mring, *seed, 0..*count)?;
            (vec![*count as usize, mring.resolution, mring.resolution], imgs.into_raw_vec_and_offset().0)
        }
    };
    let (n, dims) = match shape.as_slice() {
        [n, h, w] => (*n, [1, *h as i64, *w as i64]),
        [n, ch, h, w] => (*n, [*ch as i64, *h as i64, *w as i64]),
        other => bail!("training data must be (N, H, W) or (N, C, H, W), got {other:?}"),
    };
    if dims != [c, r, r] {
        bail!("training images are {:?} but the network expects ({c}, {r}, {r})", dims);
    }
    if n == 0 {
        bail!("the training set is empty");
    }
    if data.iter().any(|v| !v.is_finite()) {
        bail!("the training set has non-finite values");
    }
    Ok(Tensor::from_slice(&data).reshape([n as i64, dims[0], dims[1], dims[2]]))
}

fn main() {
    if let Err(e) = run() {
        // One line, the root cause last (TOML errors keep their own snippet lines).
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let cli = Cli::parse();
    let text = std::fs::read_to_string(&cli.config).with_context(|| format!("reading {}", cli.config.display()))?;
    let run: RunConfig = toml::from_str(&text).with_context(|| format!("parsing {}", cli.config.display()))?;
    run.train.validate()?;
    run.eval.validate(&run.train)?;
    if cli.profile && (cli.profile_batches.iter().any(|&b| b < 1) || cli.profile_steps == 0) {
        bail!("--profile-batches must be positive and --profile-steps at least 1");
    }
    let base = cli.config.parent().map(Path::to_path_buf).unwrap_or_default();
    if let Some(init) = &run.init {
        let p = resolve(&base, init);
        if !p.is_file() {
            bail!("`init` names {}, which is not a file", p.display());
        }
    }
    let out = resolve(&base, &run.out);
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    std::fs::write(out.join("config.toml"), &text)?;

    let raw = load_data(&run.data, &base, &run.train)?;
    let (shift, scale) = match run.normalization {
        Normalization::Unit => (0.5, 0.5),
        Normalization::Standard => {
            let mean = raw.mean(Kind::Double).double_value(&[]);
            let std = raw.std(true).double_value(&[]);
            (mean, std / run.train.sigma_data)
        }
    };
    let data = (raw - shift) / scale;
    std::fs::write(out.join("normalization.json"), serde_json::json!({"shift": shift, "scale": scale, "rule": "x_train = (x - shift) / scale"}).to_string())?;

    if cli.evaluate {
        return evaluate(&cli, &run, &base, &out, &data, shift, scale);
    }
    if cli.profile {
        return profile(&cli, &run, &out, &data);
    }

    let ckpt = out.join("checkpoint");
    let mut trainer = if ckpt.join("state.json").exists() {
        let t = Trainer::resume(run.train.clone(), &ckpt)?;
        eprintln!("diffinv-train: resuming {} at step {}", out.display(), t.step_count());
        t
    } else {
        let mut t = Trainer::new(run.train.clone())?;
        if let Some(init) = &run.init {
            let p = resolve(&base, init);
            let load = |net: &mut diffinv_priors::neural::EdmNetwork| net.vs.load(&p);
            load(&mut t.net).and_then(|()| load(&mut t.ema)).with_context(|| format!("loading the initial weights {} (`init`): not weights of this network?", p.display()))?;
            eprintln!("diffinv-train: starting from the weights in {}", p.display());
        }
        t
    };
    let cfg = run.train.clone();
    eprintln!(
        "diffinv-train: {} parameters, {} images of {:?}, {} steps of batch {} on {:?}",
        trainer.num_parameters(),
        data.size()[0],
        &data.size()[1..],
        cfg.steps,
        cfg.batch_size,
        cfg.device.resolve()?
    );
    // The loss log keeps exactly the steps the checkpoint has: rows past it are dropped.
    let log_path = out.join("loss.csv");
    let kept: Vec<String> = std::fs::read_to_string(&log_path)
        .unwrap_or_default()
        .lines()
        .skip(1)
        .filter(|l| l.split(',').next().and_then(|s| s.parse::<u64>().ok()).is_some_and(|s| s <= trainer.step_count()))
        .map(str::to_string)
        .collect();
    let mut log = std::fs::File::create(&log_path)?;
    writeln!(log, "step,loss,lr,images_per_second")?;
    for l in &kept {
        writeln!(log, "{l}")?;
    }

    let mut curve = if run.eval.curve_every > 0 {
        let mut c = Curve::new(&run, &base, &out, &data, shift, scale, trainer.step_count())?;
        if trainer.step_count() == 0 {
            // Where the curve starts: the fresh (or `init`) network.
            c.record(&trainer, run.train.seed)?;
        }
        Some(c)
    } else {
        None
    };

    let bar = ProgressBar::new(cfg.steps);
    if let Ok(style) = ProgressStyle::with_template("train [{bar:30}] {pos}/{len} {msg} ({elapsed}<{eta})") {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_position(trainer.step_count());
    let stop = cli.max_steps.map_or(cfg.steps, |m| (trainer.step_count() + m).min(cfg.steps));
    let t0 = Instant::now();
    let first_step = trainer.step_count();
    let mut last = Instant::now();
    let mut smooth = f64::NAN;
    while trainer.step_count() < stop {
        let step = trainer.step_count();
        let loss = trainer.train_step(&data)?;
        let dt = last.elapsed().as_secs_f64();
        last = Instant::now();
        let ips = cfg.batch_size as f64 / dt.max(1e-9);
        smooth = if smooth.is_nan() { loss } else { 0.95 * smooth + 0.05 * loss };
        writeln!(log, "{},{loss:.6},{:.3e},{ips:.1}", step + 1, cfg.lr_at(step))?;
        bar.set_message(format!("loss {smooth:.4} | {ips:.0} img/s"));
        bar.inc(1);
        if trainer.step_count() % cfg.checkpoint_every == 0 || trainer.step_count() == stop {
            log.flush()?;
            // The curve's point first: a kill between the two leaves a row past the checkpoint,
            // which the resumed run drops and measures again.
            if let Some(c) = curve.as_mut().filter(|_| trainer.step_count().is_multiple_of(run.eval.curve_every)) {
                let rows = c.record(&trainer, cfg.seed)?;
                let summary: Vec<String> = rows.iter().map(|r| format!("sigma {}: {:.3}", r.sigma, r.network / r.wiener)).collect();
                bar.println(format!("step {}: network / Wiener MSE {}", trainer.step_count(), summary.join(", ")));
            }
            trainer.save_checkpoint(&ckpt)?;
        }
    }
    bar.finish_and_clear();
    if trainer.step_count() >= cfg.steps {
        trainer.ema.save(&out.join("ema.safetensors"))?;
        eprintln!("diffinv-train: done, EMA weights in {}", out.join("ema.safetensors").display());
    }
    eprintln!(
        "diffinv-train: steps {first_step}..{} in {:.0} s ({} of {} done)",
        trainer.step_count(),
        t0.elapsed().as_secs_f64(),
        trainer.step_count(),
        cfg.steps
    );
    Ok(())
}

/// Held-out images `(N, C, H, W)` in data units (at most `count` of them for the black-hole
/// generator, all of the file's for `.npy`), and the ring generator's settings for black holes.
fn load_test(run: &RunConfig, base: &Path, count: u64) -> Result<(Tensor, Option<blackhole::MringConfig>)> {
    Ok(match &run.data {
        DataSource::Blackhole { count: n, seed, mring } => {
            let (imgs, _) = blackhole::generate(mring, *seed, *n..*n + count)?;
            let r = mring.resolution as i64;
            (Tensor::from_slice(&imgs.into_raw_vec_and_offset().0).reshape([-1, 1, r, r]), Some(mring.clone()))
        }
        DataSource::Npy { test_path: Some(p), .. } => {
            let p = resolve(base, p);
            let (shape, data) = npy::read_f32(&p).with_context(|| format!("reading {}", p.display()))?;
            let dims: Vec<i64> = shape.iter().map(|&v| v as i64).collect();
            let t = Tensor::from_slice(&data).reshape(dims.as_slice());
            (if dims.len() == 3 { t.unsqueeze(1) } else { t }, None)
        }
        DataSource::Npy { test_path: None, .. } => bail!("held-out data is needed (`--evaluate`, `[eval] curve_every`): set `test_path` in [data]"),
    })
}

/// The quality curve: the EMA network's denoising MSE against the Wiener filter's on a fixed
/// set of held-out images, appended to `quality_curve.csv` while training.
struct Curve {
    test: Tensor,
    baseline: eval::WienerBaseline,
    sigmas: Vec<f64>,
    file: std::fs::File,
}

impl Curve {
    const HEADER: &'static str = "step,images_seen,sigma,network_mse,wiener_mse,ratio";

    /// Set up for `run`, keeping the rows of `quality_curve.csv` up to `step` (a resumed run).
    fn new(run: &RunConfig, base: &Path, out: &Path, train: &Tensor, shift: f64, scale: f64, step: u64) -> Result<Self> {
        let (raw, _) = load_test(run, base, run.eval.curve_images)?;
        let k = raw.size()[0].min(run.eval.curve_images as i64);
        let test = (raw.narrow(0, 0, k) - shift) / scale;
        let fit = train.narrow(0, 0, train.size()[0].min(4000));
        let baseline = eval::WienerBaseline::fit(run.eval.wiener, &fit)?;
        let path = out.join("quality_curve.csv");
        let kept: Vec<String> = std::fs::read_to_string(&path)
            .unwrap_or_default()
            .lines()
            .skip(1)
            .filter(|l| l.split(',').next().and_then(|v| v.parse::<u64>().ok()).is_some_and(|v| v <= step))
            .map(str::to_string)
            .collect();
        let mut file = std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        writeln!(file, "{}", Self::HEADER)?;
        for l in &kept {
            writeln!(file, "{l}")?;
        }
        Ok(Self { test, baseline, sigmas: run.eval.curve_sigmas.clone(), file })
    }

    /// Measure `trainer`'s EMA network now and append the rows; returns them for the log.
    fn record(&mut self, trainer: &Trainer, seed: u64) -> Result<Vec<eval::DenoiseRow>> {
        let rows = eval::denoising_rows(&trainer.ema, &self.baseline, &self.test, seed, &self.sigmas)?;
        let step = trainer.step_count();
        let seen = step * trainer.config().batch_size as u64;
        for r in &rows {
            writeln!(self.file, "{step},{seen},{},{:.6e},{:.6e},{:.5}", r.sigma, r.network, r.wiener, r.network / r.wiener)?;
        }
        self.file.flush()?;
        Ok(rows)
    }
}

/// `--profile`: seconds per training step for each (threads, batch, layout), from a fresh
/// network (the timings do not depend on the weights), and the batch-gathering alone.
fn profile(cli: &Cli, run: &RunConfig, out: &Path, data: &Tensor) -> Result<()> {
    let default_threads = tch::get_num_threads().max(1);
    let mut threads = vec![1];
    if default_threads > 1 {
        threads.push(default_threads);
    }
    let mut lines = vec!["threads,batch,layout,seconds_per_step,images_per_second,gather_seconds_per_step".to_string()];
    println!("| threads | batch | layout | s / step | images / s | gathering the batch |\n| --- | --- | --- | --- | --- | --- |");
    for &t in &threads {
        tch::set_num_threads(t);
        for &b in &cli.profile_batches {
            for channels_last in [false, true] {
                let cfg = TrainConfig { batch_size: b, channels_last, steps: u64::MAX / 2, ..run.train.clone() };
                let mut trainer = Trainer::new(cfg)?;
                for _ in 0..2 {
                    trainer.train_step(data)?;
                }
                let t0 = Instant::now();
                for _ in 0..cli.profile_steps {
                    trainer.train_step(data)?;
                }
                let per_step = t0.elapsed().as_secs_f64() / f64::from(cli.profile_steps);
                // The gathering of a batch as `train_step` does it (index_select, to f32).
                let n = data.size()[0];
                let t1 = Instant::now();
                for k in 0..cli.profile_steps {
                    let idx = Tensor::from_slice(&(0..b).map(|i| (i * 7919 + i64::from(k) * 104_729) % n).collect::<Vec<i64>>());
                    let _ = data.index_select(0, &idx).to_kind(Kind::Float);
                }
                let gather = t1.elapsed().as_secs_f64() / f64::from(cli.profile_steps);
                let layout = if channels_last { "channels-last" } else { "NCHW" };
                println!("| {t} | {b} | {layout} | {per_step:.3} | {:.1} | {:.1}% |", b as f64 / per_step, 100.0 * gather / per_step);
                lines.push(format!("{t},{b},{layout},{per_step:.5},{:.2},{gather:.6}", b as f64 / per_step));
            }
        }
    }
    tch::set_num_threads(default_threads);
    std::fs::write(out.join("profile.csv"), lines.join("\n") + "\n")?;
    eprintln!("diffinv-train: profile.csv in {}", out.display());
    Ok(())
}

/// `spectrum.png`: the radially averaged energy spectra of the samples and of the held-out data
/// (log scale, shell `k` = rounded `|k|`), the resolved band's edge marked. A figure that
/// cannot be drawn is reported and skipped.
fn plot_spectrum(s: &serde_json::Value, path: &Path) {
    use diffinv_figures::{line_plot, LinePlot, Series};
    let curve = |key: &str| -> Vec<(f64, f64)> {
        s[key].as_array().map(|v| v.iter().enumerate().skip(1).filter_map(|(k, e)| Some((k as f64, e.as_f64()?))).collect()).unwrap_or_default()
    };
    let (data, samples) = (curve("spectrum_data"), curve("spectrum_samples"));
    let hi = s["band"][1].as_f64().unwrap_or(0.0);
    let (lo_e, hi_e) = data.iter().chain(&samples).map(|p| p.1).filter(|e| *e > 0.0).fold((f64::INFINITY, 0.0f64), |(l, h), e| (l.min(e), h.max(e)));
    let plot = LinePlot {
        title: format!("Energy spectrum: {} samples vs {} held-out fields", s["samples"], s["data"]),
        x_label: "shell |k|".into(),
        y_label: "mean energy per shell".into(),
        log_y: true,
        width: 720,
        height: 420,
    };
    let series = [
        Series::new("held-out data", data).with_color([0, 0, 0]),
        Series::new("samples", samples).with_color([0, 90, 200]),
        Series::new(format!("edge of the resolved band (shell {hi})"), vec![(hi, lo_e), (hi, hi_e)]).with_color([170, 170, 170]),
    ];
    match line_plot(path, &plot, &series) {
        Ok(()) => eprintln!("diffinv-train: {}", path.display()),
        Err(e) => eprintln!("warning: figure {} not written: {e}", path.display()),
    }
}

/// `--evaluate`: denoising table against the Wiener baseline and samples (eval.rs).
fn evaluate(cli: &Cli, run: &RunConfig, base: &Path, out: &Path, train: &Tensor, shift: f64, scale: f64) -> Result<()> {
    let cfg = &run.train;
    let device = cfg.device.resolve()?;
    let weights = out.join("ema.safetensors");
    let net = diffinv_priors::neural::EdmNetwork::load(&cfg.unet, cfg.sigma_data, device, &weights)
        .with_context(|| format!("loading {} (train first)", weights.display()))?;
    let (test_raw, mring) = load_test(run, base, cli.test_images)?;
    let test = (&test_raw - shift) / scale;
    eprintln!("diffinv-train: denoising {} held-out images at {} noise levels", test.size()[0], eval::SIGMAS.len());
    let t0 = Instant::now();
    // The Wiener fit uses at most 4000 training images.
    let fit = train.narrow(0, 0, train.size()[0].min(4000));
    let baseline = eval::WienerBaseline::fit(run.eval.wiener, &fit)?;
    // What a shipped prior's test needs without the data set: the fitted Fourier baseline and the
    // first 32 held-out images (data units).
    if let eval::WienerBaseline::Fourier(w) = &baseline {
        w.save(&out.join("wiener_fourier.safetensors"))?;
    }
    if matches!(run.data, DataSource::Npy { .. }) {
        let k = test_raw.size()[0].min(32);
        let head = test_raw.narrow(0, 0, k).to_kind(Kind::Float).contiguous();
        let skip = if head.size()[1] == 1 { 2 } else { 1 }; // (N, H, W) for one channel
        let dims: Vec<usize> = std::iter::once(k as usize).chain(head.size()[skip..].iter().map(|&v| v as usize)).collect();
        npy::write_f32(&out.join("test32.npy"), &dims, &Vec::<f32>::try_from(&head.flatten(0, -1))?)?;
    }
    let rows = eval::denoising_table_with(&net, &baseline, &test, cfg.seed)?;
    println!("| sigma | network MSE | Wiener MSE | network / Wiener |\n| --- | --- | --- | --- |");
    for r in &rows {
        println!("| {} | {:.5} | {:.5} | {:.3} |", r.sigma, r.network, r.wiener, r.network / r.wiener);
    }
    eprintln!("diffinv-train: sampling {} images (Heun, 32 levels)", cli.samples);
    let samples = eval::sample(net, cli.samples, 32, cfg.seed ^ 0x5a)?;
    let samples = samples.mapv(|v| (f64::from(v) * scale + shift) as f32);
    let d = samples.ncols();
    let data_rows = ndarray::Array2::from_shape_vec(
        (test_raw.size()[0] as usize, d),
        Vec::<f32>::try_from(&test_raw.to_kind(Kind::Float).flatten(0, -1))?,
    )?;
    let rings = match &mring {
        Some(m) => Some(eval::ring_comparison(m, &samples, &data_rows)?),
        None => None,
    };
    let side = (d as f64).sqrt() as usize;
    let spectrum = if run.eval.spectrum { Some(eval::spectrum_comparison(&samples, &data_rows, side)?) } else { None };
    // Grey levels: [0, 1] for images in unit range, else symmetric about 0 over the data's range.
    let range = match run.normalization {
        Normalization::Unit => (0.0, 1.0),
        Normalization::Standard => {
            let m = data_rows.iter().fold(0.0f32, |a, v| a.max(v.abs()));
            (-m, m)
        }
    };
    eval::write_grid(&out.join("samples.png"), &samples, &data_rows, side, 8, range)?;
    let report = serde_json::json!({
        "denoising": rows, "rings": rings, "spectrum": spectrum, "wiener_basis": run.eval.wiener, "seconds": t0.elapsed().as_secs_f64(),
        "weights": weights.display().to_string(), "test_images": cli.test_images, "samples": cli.samples,
    });
    std::fs::write(out.join("quality.json"), serde_json::to_string_pretty(&report)?)?;
    if let Some(r) = rings {
        println!("\nring statistics (samples vs held-out data): {r}");
    }
    if let Some(s) = report.get("spectrum").filter(|s| !s.is_null()) {
        println!("\nenergy spectrum: largest relative deviation over shells {} = {}", s["band"], s["max_relative_deviation"]);
        plot_spectrum(s, &out.join("spectrum.png"));
    }
    eprintln!("diffinv-train: quality.json and samples.png in {}", out.display());
    Ok(())
}
