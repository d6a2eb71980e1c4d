//! The `diffinv-train` binary on a tiny periodic data set: the quality curve written while
//! training survives an interruption exactly, `--profile` writes its table, `init` starts from
//! given weights, and every new config key and option refuses bad input with one line, before
//! anything is written.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use diffinv_datasets::npy;

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("diffinv-train-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

/// 24 train and 8 test 8 x 8 periodic fields (smooth waves), in `dir`.
fn write_data(dir: &Path) {
    let field = |k: usize| -> Vec<f32> {
        (0..64)
            .map(|p| {
                let (i, j) = ((p / 8) as f32, (p % 8) as f32);
                let t = std::f32::consts::TAU / 8.0;
                (t * (i + k as f32 * 0.37)).sin() * (t * 2.0 * j).cos() + 0.3 * (t * (j + 0.5 * k as f32)).sin()
            })
            .collect()
    };
    let train: Vec<f32> = (0..24).flat_map(field).collect();
    let test: Vec<f32> = (100..108).flat_map(field).collect();
    npy::write_f32(&dir.join("train.npy"), &[24, 8, 8], &train).expect("train.npy");
    npy::write_f32(&dir.join("test.npy"), &[8, 8, 8], &test).expect("test.npy");
}

/// A tiny run config; `train_extra` and `eval_extra` are appended to `[train]` and `[eval]`,
/// `top` before the tables.
fn config(dir: &Path, top: &str, train_extra: &str, eval_extra: &str) -> PathBuf {
    let text = format!(
        r#"out = "run"
normalization = "standard"
{top}

[data]
kind = "npy"
path = "train.npy"
test_path = "test.npy"

[train]
sigma_data = 0.5
steps = 6
batch_size = 4
lr = 2e-3
warmup_steps = 2
checkpoint_every = 2
seed = 5
device = "cpu"
random_roll = [1, 2]

[train.unet]
img_channels = 1
img_resolution = 8
model_channels = 8
channel_mult = [1, 2]
num_blocks = 1
attn_resolutions = [4]

[eval]
wiener = "fourier"
curve_every = 2
curve_sigmas = [1.0, 2.0]
curve_images = 6
"#
    );
    // Each extra `key = value` line replaces the base's line of that key, or is appended to
    // its table.
    let mut text = text;
    for (extra, table_end) in [(train_extra, "\n[train.unet]"), (eval_extra, "")] {
        for line in extra.lines().filter(|l| !l.trim().is_empty()) {
            let key = line.split('=').next().unwrap_or("").trim();
            let old = text.lines().find(|l| l.split('=').next().map(str::trim) == Some(key)).map(str::to_string);
            text = match old {
                Some(old) => text.replace(&old, line),
                None if table_end.is_empty() => format!("{text}{line}\n"),
                None => text.replacen(table_end, &format!("{line}\n{table_end}"), 1),
            };
        }
    }
    let path = dir.join("config.toml");
    std::fs::write(&path, text).expect("config");
    path
}

fn train(config: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_diffinv-train"))
        .arg(config)
        .args(args)
        // One intra-op thread: bit-identical arithmetic from run to run.
        .env("OMP_NUM_THREADS", "1")
        .output()
        .expect("running diffinv-train")
}

fn ok(out: &Output) {
    assert!(out.status.success(), "diffinv-train failed: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn the_quality_curve_survives_an_interruption_exactly() {
    let (a, b) = (temp_dir("curve-a"), temp_dir("curve-b"));
    for d in [&a, &b] {
        write_data(d);
    }
    ok(&train(&config(&a, "", "", ""), &[]));
    let cb = config(&b, "", "", "");
    // Stopped at step 3 (a checkpoint, but not a curve point), then continued.
    ok(&train(&cb, &["--max-steps", "3"]));
    ok(&train(&cb, &[]));
    let read = |d: &Path| std::fs::read_to_string(d.join("run/quality_curve.csv")).expect("quality_curve.csv");
    let (ca, cb) = (read(&a), read(&b));
    assert_eq!(ca, cb, "an interrupted run writes the same curve");
    let lines: Vec<&str> = ca.lines().collect();
    assert_eq!(lines[0], "step,images_seen,sigma,network_mse,wiener_mse,ratio");
    let steps: Vec<&str> = lines[1..].iter().map(|l| l.split(',').next().unwrap_or("")).collect();
    assert_eq!(steps, ["0", "0", "2", "2", "4", "4", "6", "6"], "two levels at the start and every 2 steps");
    for l in &lines[1..] {
        let f: Vec<f64> = l.split(',').map(|v| v.parse().expect("number")).collect();
        assert_eq!(f[1], f[0] * 4.0, "images seen = steps x batch");
        assert!(f[3] > 0.0 && f[4] > 0.0 && (f[5] - f[3] / f[4]).abs() < 1e-4 * f[5], "{l}");
    }
    // The EMA network learns: its last point beats its first at both levels.
    for sigma in ["1", "2"] {
        let ratios: Vec<f64> = lines[1..].iter().filter(|l| l.split(',').nth(2) == Some(sigma)).filter_map(|l| l.split(',').nth(5)?.parse().ok()).collect();
        assert!(ratios[ratios.len() - 1] < ratios[0], "sigma {sigma}: {ratios:?}");
    }
    for d in [&a, &b] {
        let _ = std::fs::remove_dir_all(d);
    }
}

#[test]
fn init_starts_from_the_given_weights_and_profile_writes_its_table() {
    let d = temp_dir("init");
    write_data(&d);
    ok(&train(&config(&d, "", "", ""), &[]));
    std::fs::rename(d.join("run/ema.safetensors"), d.join("start.safetensors")).expect("move");
    std::fs::remove_dir_all(d.join("run")).expect("clean");
    // From the trained weights, the first curve point beats a fresh start's.
    let first_ratio = |d: &Path| -> f64 {
        let text = std::fs::read_to_string(d.join("run/quality_curve.csv")).expect("curve");
        text.lines().nth(1).and_then(|l| l.split(',').nth(5)).and_then(|v| v.parse().ok()).expect("ratio")
    };
    ok(&train(&config(&d, r#"init = "start.safetensors""#, "", ""), &["--max-steps", "2"]));
    let warm = first_ratio(&d);
    std::fs::remove_dir_all(d.join("run")).expect("clean");
    ok(&train(&config(&d, "", "", ""), &["--max-steps", "2"]));
    let cold = first_ratio(&d);
    assert!(warm < cold, "warm start {warm} vs fresh {cold}");

    let out = train(&config(&d, "", "", ""), &["--profile", "--profile-batches", "2,4", "--profile-steps", "1"]);
    ok(&out);
    let csv = std::fs::read_to_string(d.join("run/profile.csv")).expect("profile.csv");
    let rows: Vec<&str> = csv.lines().collect();
    assert_eq!(rows[0], "threads,batch,layout,seconds_per_step,images_per_second,gather_seconds_per_step");
    // 1 thread (and the default count when it differs) x 2 batches x 2 layouts.
    assert!(rows.len() == 5 || rows.len() == 9, "{csv}");
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn bad_config_keys_and_options_are_one_line_errors_and_write_nothing() {
    let d = temp_dir("bad");
    write_data(&d);
    let cases: [(&str, &str, &str, &[&str], &str); 9] = [
        ("", "", "curve_every = 3", &[], "curve_every"),
        ("", "", "curve_sigmas = [1.0, -2.0]", &[], "curve_sigmas"),
        ("", "", "curve_sigmas = []", &[], "curve_sigmas"),
        ("", "", "curve_images = 0", &[], "curve_images"),
        ("", "random_roll = [3, 0]", "", &[], "random_roll"),
        ("", "channels_last = 1", "", &[], "channels_last"),
        ("", "", "curve_colour = 1", &[], "curve_colour"),
        ("", "", "", &["--profile", "--profile-steps", "0"], "--profile-steps"),
        ("", "", "", &["--profile", "--profile-batches", "0"], "--profile-batches"),
    ];
    for (top, tr, ev, args, needle) in cases {
        let cfg = config(&d, top, tr, ev);
        let out = train(&cfg, args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{needle}: accepted");
        assert!(err.contains(needle), "{needle}: {err}");
        assert!(!err.contains("panicked") && err.starts_with("error: "), "{needle}: {err}");
        // TOML's own errors quote the offending line under the message.
        if !matches!(needle, "channels_last" | "curve_colour") {
            assert_eq!(err.trim_end().lines().count(), 1, "{needle}: one line: {err}");
        }
        assert!(!d.join("run").exists(), "{needle}: the run folder was written");
    }
    // A missing `init` file is named.
    let out = train(&config(&d, r#"init = "nowhere.safetensors""#, "", ""), &["--max-steps", "1"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("nowhere.safetensors"), "{err}");
    assert!(!d.join("run").exists(), "init: the run folder was written");
    let _ = std::fs::remove_dir_all(&d);
}
