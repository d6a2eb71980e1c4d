//! `cargo xtask data ns [--res 64|128] [--train N] [--test M] [--seed S] [--out DIR] [--full] [--downsample M]`
//!
//! The Navier-Stokes data of EnKG/InverseBench ("Re200.0-t5.0"): initial vorticity drawn from
//! the FNO Gaussian random field (alpha 2.5, tau 7), evolved for 5 time units at Re 200 with
//! the Kolmogorov forcing; the state at t = 5 is one sample (the "initial vorticity" of the
//! inverse problem and a training image of the prior). Solved in f64 with the per-sample CFL
//! step, stored as f32.
//!
//! Output, under `DIR/ns-{res}-re{Re}-t{t}/`:
//! - `{train,test}/chunk-NNNNN.npy`: `(K, H, W)` chunks, written atomically as they finish; a
//!   rerun skips the chunks already there (resumable);
//! - `{train,test}.npy`: `(N, H, W)` little-endian f32, C order, assembled from the chunks;
//! - `{train,test}.json`: the parameters and statistics.
//!
//! Sample `i` of a split draws its field from the ChaCha8 stream
//! `navier_stokes::dataset::sample_stream(split, i)` keyed by the seed: train streams are
//! `0..2^63`, test streams `2^63..2^64`, so the splits never share a field.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Parser;
use diffinv_operators::navier_stokes::dataset::{
    read_npy, sample_rng, sample_stream, spectral_downsample, write_npy_f32, Split,
};
use diffinv_operators::navier_stokes::{GaussianRandomField, NsConfig, NsSolver};
use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;
use serde_json::json;

use super::DataArgs;

#[derive(Parser, Debug)]
#[command(
    name = "cargo xtask data ns",
    about = "Navier-Stokes vorticity data (GRF evolved to t = 5, Re 200)"
)]
struct NsDataArgs {
    /// Grid size (64 or 128; InverseBench uses 128).
    #[arg(long, default_value_t = 64)]
    res: usize,
    /// Number of training samples.
    #[arg(long, default_value_t = 32)]
    train: usize,
    /// Number of test samples.
    #[arg(long, default_value_t = 8)]
    test: usize,
    /// Data-set seed (keys every sample's ChaCha8 stream).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Output folder.
    #[arg(long, default_value = "data")]
    out: PathBuf,
    /// Samples per chunk file.
    #[arg(long, default_value_t = 16)]
    chunk: usize,
    /// Reynolds number.
    #[arg(long, default_value_t = 200.0)]
    re: f64,
    /// Evolution time from the Gaussian random field.
    #[arg(long, default_value_t = 5.0)]
    t: f64,
    /// The paper-size data set: 128x128, 20480 train, 100 test (hours on 2 cores).
    #[arg(long)]
    full: bool,
    /// Also write each split spectrally downsampled to `M x M` (modes `|k| < M/2` of the
    /// `res x res` fields, `navier_stokes::dataset::spectral_downsample`) into
    /// `DIR/ns-{M}from{res}-re{Re}-t{t}/`: coarse fields from fine dynamics.
    #[arg(long, value_name = "M")]
    downsample: Option<usize>,
}

/// Generate the data set.
pub fn run(args: &DataArgs) -> Result<()> {
    let mut a = NsDataArgs::try_parse_from(
        std::iter::once("ns".to_string()).chain(args.rest.iter().cloned()),
    )?;
    if a.full {
        a.res = 128;
        a.train = 20_480;
        a.test = 100;
    }
    if a.res < 8 || a.res % 2 != 0 {
        bail!("--res must be even and at least 8, got {}", a.res);
    }
    if a.chunk == 0 {
        bail!("--chunk must be at least 1");
    }
    if let Some(m) = a.downsample {
        if m < 4 || m % 2 != 0 || m >= a.res {
            bail!("--downsample must be even, at least 4 and below --res {}, got {m}", a.res);
        }
    }
    let dir = a.out.join(format!("ns-{}-re{}-t{}", a.res, a.re, a.t));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let cfg = NsConfig {
        re: a.re,
        t_final: a.t,
        ..NsConfig::default()
    };
    let solver = NsSolver::<f64>::new(a.res, a.res, cfg)?;
    let grf = GaussianRandomField::fno(a.res, a.res)?;
    eprintln!(
        "data ns: {}x{} Re {} t {} seed {} -> {} (train {}, test {}, {} threads)",
        a.res,
        a.res,
        a.re,
        a.t,
        a.seed,
        dir.display(),
        a.train,
        a.test,
        rayon::current_num_threads()
    );
    for (split, count) in [(Split::Train, a.train), (Split::Test, a.test)] {
        generate_split(&a, &dir, split, count, &solver, &grf)?;
    }
    Ok(())
}

fn chunk_path(dir: &Path, split: Split, k: usize) -> PathBuf {
    dir.join(split.name()).join(format!("chunk-{k:05}.npy"))
}

fn chunk_done(path: &Path, rows: usize, res: usize) -> bool {
    matches!(read_npy(path), Ok(a) if a.shape == vec![rows, res, res])
}

fn generate_split(
    a: &NsDataArgs,
    dir: &Path,
    split: Split,
    count: usize,
    solver: &NsSolver<f64>,
    grf: &GaussianRandomField,
) -> Result<()> {
    let res = a.res;
    let n = res * res;
    std::fs::create_dir_all(dir.join(split.name()))?;
    let chunks = count.div_ceil(a.chunk);
    let todo: Vec<usize> = (0..chunks)
        .filter(|&k| {
            let rows = a.chunk.min(count - k * a.chunk);
            !chunk_done(&chunk_path(dir, split, k), rows, res)
        })
        .collect();
    let skipped = chunks - todo.len();
    let pb = ProgressBar::new(
        (todo
            .iter()
            .map(|&k| a.chunk.min(count - k * a.chunk))
            .sum::<usize>()) as u64,
    );
    pb.set_style(
        ProgressStyle::with_template(
            "{prefix:>5} [{elapsed_precise}] {bar:40} {pos}/{len} samples (eta {eta})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    pb.set_prefix(split.name());
    if skipped > 0 {
        eprintln!(
            "{}: {skipped} of {chunks} chunks already done, skipping them",
            split.name()
        );
    }
    let mut steps_total = 0usize;
    for &k in &todo {
        let start = k * a.chunk;
        let rows = a.chunk.min(count - start);
        let results: Vec<Result<(Vec<f32>, usize)>> = (start..start + rows)
            .into_par_iter()
            .map(|i| {
                let w0 = grf.sample(&mut sample_rng(a.seed, split, i as u64));
                let mut out = vec![0.0f64; n];
                let st = solver
                    .solve_one(&w0, &mut out)
                    .map_err(|e| anyhow::anyhow!("{} sample {i} failed: {e}", split.name()))?;
                pb.inc(1);
                Ok((out.iter().map(|&v| v as f32).collect(), st.steps))
            })
            .collect();
        let mut data = Vec::with_capacity(rows * n);
        for r in results {
            let (v, s) = r?;
            data.extend_from_slice(&v);
            steps_total += s;
        }
        write_npy_f32(&chunk_path(dir, split, k), &[rows, res, res], &data)?;
    }
    pb.finish();
    // Assemble the split from the chunks.
    let mut all = Vec::with_capacity(count * n);
    for k in 0..chunks {
        let arr = read_npy(&chunk_path(dir, split, k))?;
        all.extend(arr.to_f32());
    }
    if all.len() != count * n {
        bail!(
            "{}: assembled {} values, expected {}",
            split.name(),
            all.len(),
            count * n
        );
    }
    write_npy_f32(
        &dir.join(format!("{}.npy", split.name())),
        &[count, res, res],
        &all,
    )?;
    let (mean, std, lo, hi) = field_stats(&all);
    let meta = json!({
        "generator": "cargo xtask data ns",
        "split": split.name(),
        "count": count,
        "shape": [count, res, res],
        "format": "npy, little-endian float32, C order, (N, H, W); axis 0 = x, axis 1 = y",
        "equation": "w_t + u.grad w = (1/Re) Lap w + f on [0, 2pi)^2, u = (psi_y, -psi_x), -Lap psi = w",
        "re": a.re,
        "t_evolve": a.t,
        "forcing": "f = -4 cos(4 y), y along axis 1",
        "scheme": "pseudo-spectral, 2/3 dealiasing, Heun (advection) + Crank-Nicolson (viscosity), per-sample adaptive CFL step, f64",
        "initial_field": {
            "kind": "Gaussian random field (FNO/PINO sampler)",
            "alpha": 2.5,
            "tau": 7.0,
            "sigma": 7f64.powf(1.5),
            "covariance": "2 sigma^2 (-Lap + tau^2)^(-alpha) on the unnormalised Fourier basis",
        },
        "seed": a.seed,
        "streams": format!(
            "ChaCha8 keyed by seed, stream {} + i for sample i",
            sample_stream(split, 0)
        ),
        "chunk": a.chunk,
        "stats": {"mean": mean, "std": std, "min": lo, "max": hi},
        "steps_this_run": steps_total,
    });
    let path = dir.join(format!("{}.json", split.name()));
    std::fs::write(&path, serde_json::to_string_pretty(&meta)?)?;
    if let Some(m) = a.downsample {
        write_downsampled(a, split, count, &all, m, &meta)?;
    }
    eprintln!(
        "{}: {count} samples -> {} (mean {mean:.3}, std {std:.3}, min {lo:.2}, max {hi:.2})",
        split.name(),
        dir.join(format!("{}.npy", split.name())).display()
    );
    Ok(())
}

/// The split downsampled to `m x m` (`spectral_downsample`), with its own sidecar.
fn write_downsampled(
    a: &NsDataArgs,
    split: Split,
    count: usize,
    fine: &[f32],
    m: usize,
    fine_meta: &serde_json::Value,
) -> Result<()> {
    let dir = a
        .out
        .join(format!("ns-{m}from{}-re{}-t{}", a.res, a.re, a.t));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let coarse = spectral_downsample(fine, a.res, m)?;
    write_npy_f32(
        &dir.join(format!("{}.npy", split.name())),
        &[count, m, m],
        &coarse,
    )?;
    let (mean, std, lo, hi) = field_stats(&coarse);
    let meta = json!({
        "generator": "cargo xtask data ns --downsample",
        "split": split.name(),
        "count": count,
        "shape": [count, m, m],
        "format": "npy, little-endian float32, C order, (N, H, W); axis 0 = x, axis 1 = y",
        "downsampling": format!("spectral: the Fourier modes |k_x|, |k_y| < {} of the {}x{} fields (navier_stokes::dataset::spectral_downsample)", m / 2, a.res, a.res),
        "source": fine_meta,
        "stats": {"mean": mean, "std": std, "min": lo, "max": hi},
    });
    std::fs::write(
        dir.join(format!("{}.json", split.name())),
        serde_json::to_string_pretty(&meta)?,
    )?;
    eprintln!(
        "{}: downsampled to {m}x{m} -> {} (std {:.3})",
        split.name(),
        dir.join(format!("{}.npy", split.name())).display(),
        std
    );
    Ok(())
}

/// Mean, standard deviation (two passes), minimum and maximum of a split's values, for the
/// sidecar JSON.
fn field_stats(values: &[f32]) -> (f64, f64, f64, f64) {
    let n = values.len().max(1) as f64;
    let mean = values.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
    let var = values.iter().map(|&v| (f64::from(v) - mean).powi(2)).sum::<f64>() / n;
    let (lo, hi) = values.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), &v| {
        (l.min(f64::from(v)), h.max(f64::from(v)))
    });
    (mean, var.sqrt(), lo, hi)
}
