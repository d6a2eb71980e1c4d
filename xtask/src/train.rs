//! `cargo xtask train CONFIG [--max-steps N]`: train an EDM prior with the `diffinv-train`
//! binary (crates/train) in the bootstrapped libtorch environment, then draw the loss curve
//! (`loss.png`, log scale, raw loss in grey and a 50-step moving average in blue) from the run
//! folder's `loss.csv`, and the quality curve (`quality_curve.png`) from `quality_curve.csv` when
//! the config asks for one (`[eval] curve_every`). Running the same command again resumes from
//! the last checkpoint.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;

use crate::plot::{line_plot, LinePlot, Series};

/// Arguments of `cargo xtask train`.
#[derive(Args, Debug)]
pub struct TrainArgs {
    /// The TOML config (see configs/).
    pub config: PathBuf,
    /// Stop after this many steps in this invocation.
    #[arg(long)]
    pub max_steps: Option<u64>,
    /// Build in the dev profile instead of release (faster to compile, slower to train).
    #[arg(long)]
    pub dev: bool,
    /// Do not train: measure the finished prior on held-out data (quality.json, samples.png).
    #[arg(long)]
    pub evaluate: bool,
    /// Do not train: time training steps over threads x batch size x layout (`profile.csv`).
    #[arg(long)]
    pub profile: bool,
}

/// Run the trainer and plot its loss.
pub fn run(args: TrainArgs) -> Result<()> {
    let text = std::fs::read_to_string(&args.config)
        .with_context(|| format!("reading {}", args.config.display()))?;
    let value: toml::Value =
        toml::from_str(&text).with_context(|| format!("parsing {}", args.config.display()))?;
    let out = value
        .get("out")
        .and_then(|v| v.as_str())
        .context("the config has no `out` folder")?;
    let base = args
        .config
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let out = if Path::new(out).is_absolute() {
        PathBuf::from(out)
    } else {
        base.join(out)
    };

    let env = crate::torch_env::ensure()?;
    let mut c = crate::cargo();
    c.args(["run", "--quiet", "-p", "diffinv-train"]);
    if !args.dev {
        c.arg("--release");
    }
    c.arg("--")
        .arg(std::fs::canonicalize(&args.config).unwrap_or(args.config.clone()));
    if let Some(n) = args.max_steps {
        c.args(["--max-steps", &n.to_string()]);
    }
    if args.evaluate {
        c.arg("--evaluate");
    }
    if args.profile {
        c.arg("--profile");
    }
    env.apply(&mut c);
    let st = c.status().context("running diffinv-train")?;
    if !st.success() {
        bail!("training failed");
    }
    if args.evaluate || args.profile {
        return Ok(());
    }
    plot_loss(&out.join("loss.csv"), &out.join("loss.png"))?;
    let curve = out.join("quality_curve.csv");
    if curve.is_file() {
        plot_quality_curve(&curve, &out.join("quality_curve.png"))?;
    }
    Ok(())
}

/// Draw `quality_curve.png` from `quality_curve.csv`
/// (`step,images_seen,sigma,network_mse,wiener_mse,ratio`): the ratio of the network's
/// denoising MSE to the Wiener filter's against training images seen, one line per noise
/// level, with the priors' targets (0.7 at sigma 1, 0.85 at sigma 2) as flat grey lines. The
/// ratio axis is logarithmic when the curve spans more than a factor 4 (a run from a fresh
/// network starts hundreds of times above the filter).
pub fn plot_quality_curve(csv: &Path, png: &Path) -> Result<()> {
    let text =
        std::fs::read_to_string(csv).with_context(|| format!("reading {}", csv.display()))?;
    let mut by_sigma: std::collections::BTreeMap<String, Vec<(f64, f64)>> = Default::default();
    let (mut x_max, mut y_min, mut y_max) = (0.0f64, f64::INFINITY, 0.0f64);
    for l in text.lines().skip(1) {
        let f: Vec<&str> = l.split(',').collect();
        if let (Some(seen), Some(sigma), Some(ratio)) = (
            f.get(1).and_then(|v| v.parse::<f64>().ok()),
            f.get(2),
            f.get(5).and_then(|v| v.parse::<f64>().ok()),
        ) {
            by_sigma.entry(sigma.to_string()).or_default().push((seen, ratio));
            x_max = x_max.max(seen);
            y_min = y_min.min(ratio);
            y_max = y_max.max(ratio);
        }
    }
    let plot = LinePlot {
        title: "Denoising MSE of the EMA network / the Wiener filter's (held-out data)".into(),
        x_label: "training images seen".into(),
        y_label: "MSE ratio".into(),
        log_y: y_min > 0.0 && y_max > 4.0 * y_min,
        width: 720,
        height: 420,
    };
    let mut series: Vec<Series> = by_sigma
        .into_iter()
        .map(|(s, pts)| Series::new(format!("sigma {s}"), pts))
        .collect();
    for (name, level, grey) in [("target at sigma 1 (0.70)", 0.7, 150u8), ("target at sigma 2 (0.85)", 0.85, 200)] {
        series.push(Series::new(name, vec![(0.0, level), (x_max, level)]).with_color([grey, grey, grey]));
    }
    line_plot(png, &plot, &series)?;
    eprintln!("xtask: quality curve in {}", png.display());
    Ok(())
}

/// Draw `loss.png` from `loss.csv` (`step,loss,...`).
pub fn plot_loss(csv: &Path, png: &Path) -> Result<()> {
    let text =
        std::fs::read_to_string(csv).with_context(|| format!("reading {}", csv.display()))?;
    let pts: Vec<(f64, f64)> = text
        .lines()
        .skip(1)
        .filter_map(|l| {
            let mut it = l.split(',');
            Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
        })
        .collect();
    let window = 50usize;
    let smooth: Vec<(f64, f64)> = (0..pts.len())
        .map(|i| {
            let lo = i.saturating_sub(window - 1);
            let mean = pts[lo..=i].iter().map(|p| p.1).sum::<f64>() / (i - lo + 1) as f64;
            (pts[i].0, mean)
        })
        .collect();
    let plot = LinePlot {
        title: "Training loss".into(),
        x_label: "step".into(),
        y_label: "loss".into(),
        log_y: true,
        width: 720,
        height: 420,
    };
    let series = [
        Series::new("loss", pts).with_color([190, 190, 190]),
        Series::new(format!("moving average ({window} steps)"), smooth).with_color([0, 90, 200]),
    ];
    line_plot(png, &plot, &series)?;
    eprintln!("xtask: loss curve in {}", png.display());
    Ok(())
}
