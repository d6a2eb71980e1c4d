//! `cargo xtask train CONFIG [--max-steps N]`: train an EDM prior with the `diffinv-train`
//! binary (crates/train) in the bootstrapped libtorch environment, then draw the loss curve
//! (`loss.png`, log scale, raw loss in grey and a 50-step moving average in blue) from the run
//! folder's `loss.csv`. Running the same command again resumes from the last checkpoint.

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
    env.apply(&mut c);
    let st = c.status().context("running diffinv-train")?;
    if !st.success() {
        bail!("training failed");
    }
    if args.evaluate {
        return Ok(());
    }
    plot_loss(&out.join("loss.csv"), &out.join("loss.png"))
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
