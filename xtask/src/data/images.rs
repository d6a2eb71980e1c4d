//! `cargo xtask data images [--train N] [--seed S] [--out DIR]`
//!
//! 64 x 64 grayscale natural-image patches for the imaging prior (`configs/natural64.toml`) and
//! the held-out test images of `cargo xtask reproduce imaging`. The photographs are the ones that
//! ship inside the scikit-image wheel (`skimage/data/`), fetched from the package registry with
//! `pip download --no-deps scikit-image==0.26.0` into the diffinv cache; they are read from the
//! wheel (a zip) by `xtask/python/image_data.py` with Pillow in the libtorch venv. No import of
//! scikit-image, and no download at run time beyond the registry.
//!
//! Split by photograph: 15 photographs give the training patches (random windows at box
//! downsampling factors 1, 2, 3, 4, 6 and random horizontal flips); astronaut, chelsea and
//! coffee are held out and give the test patches. Output `DIR/images-64/{train,test}.npy`
//! (`(N, 64, 64)` f32 in [0, 1]) and `meta.json`.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context, Result};
use clap::Parser;

use super::DataArgs;

/// The wheel whose `skimage/data/` photographs are the data.
pub const SKIMAGE: &str = "scikit-image==0.26.0";
/// Python packages the extraction script needs in the libtorch venv.
const PY_DEPS: [&str; 2] = ["numpy==2.4.6", "pillow==11.3.0"];

#[derive(Parser, Debug)]
#[command(
    name = "cargo xtask data images",
    about = "64 x 64 grayscale natural-image patches from the scikit-image wheel"
)]
struct ImageDataArgs {
    /// Number of training patches.
    #[arg(long, default_value_t = 8000)]
    train: usize,
    /// Seed of the patch sampler.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Output folder (the data go to DIR/images-64).
    #[arg(long, default_value = "data")]
    out: PathBuf,
}

/// Fetch the wheel, install the script's dependencies, cut the patches.
pub fn run(args: &DataArgs) -> Result<()> {
    let a = ImageDataArgs::try_parse_from(
        std::iter::once("cargo xtask data images".to_string()).chain(args.rest.iter().cloned()),
    )?;
    let env = crate::torch_env::ensure()?;
    let py = &env.python;
    let pip = |extra: &[&str]| -> Result<()> {
        let st = Command::new(py)
            .args(["-m", "pip", "--disable-pip-version-check", "-q"])
            .args(extra)
            .status()
            .context("running pip")?;
        if !st.success() {
            bail!("pip {} failed", extra.join(" "));
        }
        Ok(())
    };
    let mut install = vec!["install"];
    install.extend(PY_DEPS);
    pip(&install)?;
    let wheels = crate::torch_env::cache_dir()?.join("wheels");
    std::fs::create_dir_all(&wheels)?;
    let find = || -> Result<Option<PathBuf>> {
        Ok(std::fs::read_dir(&wheels)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("scikit_image-0.26.0-") && n.ends_with(".whl"))
            }))
    };
    let wheel = match find()? {
        Some(w) => w,
        None => {
            let dir = wheels.to_string_lossy().to_string();
            pip(&[
                "download",
                "--no-deps",
                "--only-binary=:all:",
                "-d",
                &dir,
                SKIMAGE,
            ])?;
            find()?.context("pip download left no scikit-image wheel")?
        }
    };
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("python/image_data.py");
    let out = a.out.join("images-64");
    eprintln!(
        "xtask: {} training patches from {} into {}",
        a.train,
        wheel.display(),
        out.display()
    );
    let st = Command::new(py)
        .arg(&script)
        .arg(&wheel)
        .arg(&out)
        .args([
            "--train",
            &a.train.to_string(),
            "--seed",
            &a.seed.to_string(),
        ])
        .status()
        .context("running image_data.py")?;
    if !st.success() {
        bail!("image_data.py failed");
    }
    Ok(())
}
