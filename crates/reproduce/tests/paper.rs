//! `ns --paper` end to end with stand-ins of the reference's interfaces (the real checkpoint and
//! test set are not available here):
//!
//! - a "reference checkout" written by the test: `models/precond.py` with a tiny `EDMPrecond`
//!   that has the reference's constructor and `forward(x, sigma, class_labels=None, ...)`
//!   signature and EDM preconditioning, and a checkpoint `torch.save({"ema": state_dict})`, the
//!   layout the reference loads; exported by the real tools/export_ns_checkpoint.py,
//! - a test set in the reference's layout (an LMDB folder, key `b"<index>"`, value the raw
//!   bytes of a `(1, H, W)` float32 field), converted by the real tools/convert_ns_testdata.py,
//! - the binary run with `--paper` and size overrides (`--particles 4 --cases 1`, 16 x 16
//!   fields) so that the paper's schedule (80 levels, 2 updates, up to 20 clean-estimate steps,
//!   noise 0, 1, 2) runs in seconds on the CPU (`--device cpu`), with its wall-time estimate,
//! - bad input to both tools: one line on stderr, exit status 1, nothing written.
//!
//! Needs `$DIFFINV_PYTHON` (torch, numpy, lmdb: set by `cargo xtask test`); skipped without it
//! unless `DIFFINV_REQUIRE_PYTHON=1`.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn temp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("diffinv-paper-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// `$DIFFINV_PYTHON` when it can import torch, numpy and lmdb; `None` (a skip) otherwise, a
/// panic when `DIFFINV_REQUIRE_PYTHON=1`.
fn python() -> Option<String> {
    let required = std::env::var("DIFFINV_REQUIRE_PYTHON").as_deref() == Ok("1");
    let Ok(p) = std::env::var("DIFFINV_PYTHON") else {
        assert!(
            !required,
            "DIFFINV_REQUIRE_PYTHON=1 but DIFFINV_PYTHON is unset"
        );
        eprintln!("skipping: DIFFINV_PYTHON (a python3 with torch, numpy and lmdb) is unset");
        return None;
    };
    let ok = Command::new(&p)
        .args(["-c", "import torch, numpy, lmdb"])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            !required,
            "{p} cannot import torch, numpy and lmdb (cargo xtask test installs them)"
        );
        eprintln!("skipping: {p} cannot import torch, numpy and lmdb");
        return None;
    }
    Some(p)
}

/// The stand-in of the reference's `models/precond.py`: the constructor arguments of
/// `EDMPrecond` and its `forward(x, sigma, class_labels=None, force_fp32=False, **kw)`, EDM's
/// preconditioning around a two-convolution network with a noise embedding (an `arange` on
/// `x.device`, as the reference's positional embedding).
const PRECOND: &str = r#"import torch


class EDMPrecond(torch.nn.Module):
    def __init__(self, img_resolution, img_channels, label_dim=0, use_fp16=False, sigma_min=0,
                 sigma_max=float('inf'), sigma_data=0.5, model_type='DhariwalUNet', **model_kwargs):
        super().__init__()
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        self.label_dim = label_dim
        self.sigma_data = sigma_data
        ch = model_kwargs.get('model_channels', 4)
        self.model = torch.nn.ModuleDict({
            'conv_in': torch.nn.Conv2d(img_channels, ch, 3, padding=1),
            'emb': torch.nn.Linear(2, ch),
            'conv_out': torch.nn.Conv2d(ch, img_channels, 3, padding=1),
        })

    def forward(self, x, sigma, class_labels=None, force_fp32=False, **model_kwargs):
        x = x.to(torch.float32)
        sigma = sigma.to(torch.float32).reshape(-1, 1, 1, 1)
        c_skip = self.sigma_data ** 2 / (sigma ** 2 + self.sigma_data ** 2)
        c_out = sigma * self.sigma_data / (sigma ** 2 + self.sigma_data ** 2).sqrt()
        c_in = 1 / (self.sigma_data ** 2 + sigma ** 2).sqrt()
        c_noise = sigma.log().flatten() / 4
        freqs = torch.arange(0, 1, dtype=torch.float32, device=x.device) + 1.0
        e = torch.stack([torch.cos(c_noise * freqs), torch.sin(c_noise * freqs)], dim=1)
        h = self.model['conv_in'](c_in * x) + self.model['emb'](e).reshape(x.shape[0], -1, 1, 1)
        f = self.model['conv_out'](torch.nn.functional.silu(h))
        return c_skip * x + c_out * f

    def round_sigma(self, sigma):
        return torch.as_tensor(sigma)
"#;

/// Writes the checkpoint (`{"ema": state_dict}`), the LMDB test set (3 smooth 16 x 16 fields)
/// and, for the comparison, the same fields as `expected.npy`.
const SETUP: &str = r#"import sys
import numpy as np
import torch
import lmdb
sys.path.insert(0, 'ref')
from models.precond import EDMPrecond
torch.manual_seed(0)
net = EDMPrecond(img_resolution=16, img_channels=1, label_dim=0, model_channels=4)
torch.save({'ema': net.state_dict(), 'step': 5}, 'ns-5m.pt')
t = np.linspace(0, 2 * np.pi, 16, endpoint=False)
fields = np.stack([3.0 * np.sin((i + 1) * t)[:, None] * np.cos(2 * t)[None, :] + 0.5 * i
                   for i in range(3)]).astype(np.float32)
env = lmdb.open('Re200.0-t5.0', map_size=1 << 24)
with env.begin(write=True) as txn:
    for i, f in enumerate(fields):
        txn.put(str(i).encode('utf-8'), f.reshape(1, 16, 16).tobytes())
env.close()
np.save('expected.npy', fields)
"#;

fn run_py(py: &str, dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(py)
        .current_dir(dir)
        .env("OMP_NUM_THREADS", "1")
        .args(args)
        .output()
        .unwrap()
}

fn tool(name: &str) -> String {
    root().join("tools").join(name).display().to_string()
}

/// One error line, status 1, and `out` not written.
fn assert_fails(o: &std::process::Output, out: &Path, want: &str, what: &str) {
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{what}: {stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{what}: one line expected:\n{stderr}");
    assert!(
        lines[0].starts_with("error: ") && lines[0].contains(want),
        "{what}: {want:?} not in {stderr}"
    );
    assert!(!out.exists(), "{what}: wrote {}", out.display());
}

#[test]
fn a_reference_checkout_exports_converts_and_runs_the_paper_preset() {
    let Some(py) = python() else { return };
    let dir = temp("e2e");
    std::fs::create_dir_all(dir.join("ref/models")).unwrap();
    std::fs::write(dir.join("ref/models/__init__.py"), "").unwrap();
    std::fs::write(dir.join("ref/models/precond.py"), PRECOND).unwrap();
    let o = run_py(&py, &dir, &["-c", SETUP]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    // Export through the real tool (the checkout is the architecture source).
    let kwargs = r#"{"img_resolution": 16, "model_channels": 4}"#;
    let export = tool("export_ns_checkpoint.py");
    let o = run_py(
        &py,
        &dir,
        &[
            &export,
            "--reference-repo",
            "ref",
            "--checkpoint",
            "ns-5m.pt",
            "--out",
            "prior.pt",
            "--device",
            "cpu",
            "--model-kwargs",
            kwargs,
        ],
    );
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        stdout.contains("exported EDMPrecond (1 x 16 x 16"),
        "{stdout}"
    );

    // Convert the LMDB test set; the first two fields, unnormalised.
    let convert = tool("convert_ns_testdata.py");
    let o = run_py(
        &py,
        &dir,
        &[
            &convert,
            "--lmdb",
            "Re200.0-t5.0",
            "--out",
            "fields.npy",
            "--resolution",
            "16",
            "--ids",
            "0-1",
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let got = diffinv_operators::navier_stokes::dataset::read_npy(&dir.join("fields.npy")).unwrap();
    let want =
        diffinv_operators::navier_stokes::dataset::read_npy(&dir.join("expected.npy")).unwrap();
    assert_eq!(got.shape, vec![2, 16, 16]);
    assert_eq!(got.to_f32(), want.to_f32()[..2 * 256].to_vec());

    // Bad input to the tools: one line, status 1, nothing written.
    let bad = dir.join("bad.pt");
    let bad_s = bad.to_str().unwrap();
    let export_cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["--reference-repo", "nowhere", "--checkpoint", "ns-5m.pt"],
            "no such folder",
        ),
        (
            vec!["--reference-repo", ".", "--checkpoint", "ns-5m.pt"],
            "no models/precond.py",
        ),
        (
            vec![
                "--reference-repo",
                "ref",
                "--checkpoint",
                "missing.pt",
                "--model-kwargs",
                kwargs,
            ],
            "missing.pt: no such file",
        ),
        (
            vec![
                "--reference-repo",
                "ref",
                "--checkpoint",
                "expected.npy",
                "--model-kwargs",
                kwargs,
            ],
            "not a tensors-only checkpoint",
        ),
        (
            vec!["--reference-repo", "ref", "--checkpoint", "ns-5m.pt"],
            "does not fit EDMPrecond",
        ),
        (
            vec![
                "--reference-repo",
                "ref",
                "--checkpoint",
                "ns-5m.pt",
                "--model-kwargs",
                "{img",
            ],
            "--model-kwargs is not JSON",
        ),
        (
            vec![
                "--reference-repo",
                "ref",
                "--checkpoint",
                "ns-5m.pt",
                "--model-kwargs",
                kwargs,
                "--device",
                "tpu",
            ],
            "is not auto, cpu, cuda or cuda:N",
        ),
    ];
    for (args, want) in export_cases {
        let mut a = vec![export.as_str(), "--out", bad_s];
        a.extend(args.iter().copied());
        let o = run_py(&py, &dir, &a);
        assert_fails(&o, &bad, want, &format!("export {args:?}"));
    }
    let bad = dir.join("bad.npy");
    let bad_s = bad.to_str().unwrap();
    let convert_cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--lmdb", "nowhere"], "no such folder"),
        (vec!["--lmdb", "ref"], "no data.mdb"),
        (
            vec!["--lmdb", "Re200.0-t5.0"],
            "not 65536 (1 x 128 x 128 float32)",
        ),
        (
            vec![
                "--lmdb",
                "Re200.0-t5.0",
                "--resolution",
                "16",
                "--ids",
                "0-9",
            ],
            "has no entry 3 (it holds 3 entries)",
        ),
        (
            vec![
                "--lmdb",
                "Re200.0-t5.0",
                "--resolution",
                "16",
                "--ids",
                "two",
            ],
            "expected indices like 0-9",
        ),
    ];
    for (args, want) in convert_cases {
        let mut a = vec![convert.as_str(), "--out", bad_s];
        a.extend(args.iter().copied());
        let o = run_py(&py, &dir, &a);
        assert_fails(&o, &bad, want, &format!("convert {args:?}"));
    }

    // The paper's preset on the exported prior and converted fields, shrunk by the size
    // overrides, on the CPU: a warning, the estimate, then the table.
    let out = dir.join("out");
    // One OpenMP thread for libtorch: its spinning threads stall on a shared 2-core machine.
    let o = Command::new(env!("CARGO_BIN_EXE_diffinv-reproduce"))
        .env("OMP_NUM_THREADS", "1")
        .args([
            "ns",
            "--paper",
            "--device",
            "cpu",
            "--methods",
            "EnKG",
            "--particles",
            "4",
            "--cases",
            "1",
        ])
        .arg("--prior")
        .arg(dir.join("prior.pt"))
        .arg("--test-data")
        .arg(dir.join("fields.npy"))
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    assert!(stderr.contains("warning: --paper on the CPU"), "{stderr}");
    assert!(stderr.contains("timed batch: prior"), "{stderr}");
    assert!(
        stderr.contains("expected wall time on this machine: about"),
        "{stderr}"
    );
    assert!(stderr.contains("ns (paper preset"), "{stderr}");
    let est = stderr
        .lines()
        .find(|l| l.trim_start().starts_with("EnKG: "))
        .unwrap();
    let csv = std::fs::read_to_string(out.join("ns.csv")).unwrap();
    let rows: Vec<Vec<&str>> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect())
        .collect();
    assert_eq!(rows.len(), 3, "{csv}");
    for (r, noise) in rows.iter().zip(["0", "1", "2"]) {
        assert_eq!((r[0], r[1]), ("EnKG", noise), "{csv}");
        let rel: f64 = r[2].parse().unwrap();
        assert!(rel.is_finite() && rel > 0.0, "{csv}");
        // The reference's schedule: 2 updates on each of the 71 guided levels of 80, clean
        // estimates of up to 20 steps (1588 denoiser evaluations per particle), 4 particles.
        let (total, seq): (u64, u64) = (r[5].parse().unwrap(), r[6].parse().unwrap());
        assert_eq!((total, seq), (4 * 142, 142), "{csv}");
        let (den, den_seq): (u64, u64) = (r[7].parse().unwrap(), r[8].parse().unwrap());
        assert_eq!((den, den_seq), (4 * 1588, 1588), "{csv}");
        // The dry run of the estimate counted the same evaluations.
        assert!(
            est.contains(&format!("EnKG: {total} forward and ")),
            "{est}\n{csv}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `ns --prior FILE.pt` at any preset: a TorchScript EDM module (here the exact denoiser of
/// N(0, I), fixtures/torchscript/gaussian_edm.pt) replaces the prior folder, with the reference's
/// normalisation; no Python needed.
#[test]
fn a_torchscript_prior_runs_the_ns_table() {
    let dir = temp("script");
    let fixtures = root().join("fixtures");
    let o = Command::new(env!("CARGO_BIN_EXE_diffinv-reproduce"))
        .env("OMP_NUM_THREADS", "1")
        .args([
            "ns",
            "--tiny",
            "--device",
            "cpu",
            "--methods",
            "EnKG",
            "--cases",
            "1",
        ])
        .arg("--prior")
        .arg(fixtures.join("torchscript/gaussian_edm.pt"))
        .arg("--test-data")
        .arg(fixtures.join("priors/ns64/test32.npy"))
        .arg("--out")
        .arg(&dir)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    let csv = std::fs::read_to_string(dir.join("ns.csv")).unwrap();
    let row = csv
        .lines()
        .find(|l| l.starts_with("EnKG,1,"))
        .unwrap_or_else(|| panic!("{csv}"));
    let rel: f64 = row.split(',').nth(2).unwrap().parse().unwrap();
    assert!(rel.is_finite() && rel > 0.0, "{row}");
    let _ = std::fs::remove_dir_all(&dir);
}
