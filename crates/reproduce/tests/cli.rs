//! Bad input to the `diffinv-reproduce` command line: every option with a wrong value ends in one
//! clear error line (exit status 1 or clap's 2) and writes nothing.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_diffinv-reproduce"))
}

fn temp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("diffinv-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(files_under(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// Run with `args` into a fresh output folder; the run must fail with one error line naming
/// `want`, and leave the folder empty.
fn fails(name: &str, args: &[&str], want: &str) {
    let dir = temp(name);
    let out = dir.join("out");
    let o = bin()
        .args(args)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{name}: {args:?} succeeded");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error")).collect();
    assert_eq!(errors.len(), 1, "{name}: one error line expected:\n{stderr}");
    assert!(stderr.contains(want), "{name}: {want:?} not in:\n{stderr}");
    assert!(
        !stderr.contains("stack backtrace") && !stderr.contains("panicked"),
        "{name}: {stderr}"
    );
    assert!(files_under(&out).is_empty(), "{name}: wrote {:?}", files_under(&out));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn every_option_rejects_bad_values_with_one_line_and_no_output() {
    let dir = temp("inputs");
    let junk = dir.join("junk.pt");
    std::fs::write(&junk, b"\x00\x01 this is not a TorchScript archive").unwrap();
    let truncated = dir.join("truncated.npy");
    std::fs::write(&truncated, b"\x93NUMPY\x01\x00\x76\x00{'descr': '<f4', 'fortran_or").unwrap();
    let empty_prior = dir.join("empty-prior");
    std::fs::create_dir_all(&empty_prior).unwrap();
    let oblong = dir.join("oblong.npy");
    diffinv_operators::navier_stokes::dataset::write_npy_f32(&oblong, &[2, 8, 6], &[0.5; 96]).unwrap();
    let square32 = dir.join("square32.npy");
    diffinv_operators::navier_stokes::dataset::write_npy_f32(&square32, &[1, 32, 32], &[0.5; 1024]).unwrap();
    let square32 = square32.to_str().unwrap().to_string();
    let square32 = square32.as_str();
    // A preset file labels its rows freely: `--methods` takes its labels (and only those).
    let relabelled = dir.join("relabelled.toml");
    std::fs::write(
        &relabelled,
        "[[rows]]\nlabel = \"EnKG-raw\"\nmethod = \"EnKG\"\nconfig = { linearization = \"Measurement\" }\n\n[[rows]]\nlabel = \"EnKG\"\nmethod = \"EnKG\"\n",
    )
    .unwrap();
    let relabelled = relabelled.to_str().unwrap().to_string();
    let relabelled = relabelled.as_str();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures");
    let (edm, fields) = (root.join("torchscript/gaussian_edm.pt"), root.join("priors/ns64/test32.npy"));
    let (junk, truncated, empty_prior, oblong, edm, fields) = (
        junk.to_str().unwrap(),
        truncated.to_str().unwrap(),
        empty_prior.to_str().unwrap(),
        oblong.to_str().unwrap(),
        edm.to_str().unwrap(),
        fields.to_str().unwrap(),
    );
    let cases: Vec<(&str, Vec<&str>, &str)> = vec![
        ("no-table", vec![], "required"),
        ("unknown-table", vec!["nss"], "unknown table \"nss\""),
        ("quick-and-full", vec!["ns", "--quick", "--full"], "cannot be used with"),
        ("seed-not-a-number", vec!["ns", "--seed", "x"], "invalid value 'x'"),
        ("cases-zero", vec!["ns", "--cases", "0"], "--cases must be at least 1"),
        ("cases-negative", vec!["ns", "--cases", "-3"], "unexpected argument"),
        ("particles-zero", vec!["ns", "--particles", "0"], "--particles must be at least 1"),
        ("particles-one-for-enkg", vec!["ns", "--particles", "1", "--methods", "EnKG"], "at least 2 particles"),
        ("unknown-method", vec!["ns", "--methods", "EnKG,EnKF"], "EnKF"),
        ("unknown-imaging-method", vec!["imaging", "--methods", "DPS++"], "DPS++"),
        ("method-not-a-preset-row", vec!["blackhole", "--tiny", "--preset-file", relabelled, "--methods", "EnKG-raw,CPS"], "unknown method \"CPS\"; known: EnKG-raw, EnKG"),
        ("methods-across-tables", vec!["ns", "imaging", "--methods", "DPS"], "run imaging on its own"),
        ("unknown-task", vec!["imaging", "--tasks", "sr3"], "unknown imaging task \"sr3\""),
        ("missing-prior", vec!["ns", "--prior", "/nonexistent/prior"], "/nonexistent/prior"),
        ("empty-prior-folder", vec!["blackhole", "--prior", empty_prior], "empty-prior"),
        ("prior-not-torchscript", vec!["imaging", "--prior", junk, "--test-images", truncated], "junk.pt"),
        ("unknown-prior-kind", vec!["imaging", "--prior", junk, "--prior-kind", "ddim", "--test-images", truncated], "unknown --prior-kind \"ddim\""),
        ("image-shape-two-numbers", vec!["imaging", "--prior", junk, "--image-shape", "3,64"], "--image-shape takes C,H,W"),
        ("missing-test-images", vec!["imaging", "--test-images", "/nonexistent/x.npy"], "/nonexistent/x.npy"),
        ("truncated-test-images", vec!["imaging", "--test-images", truncated], "truncated.npy"),
        ("missing-lpips", vec!["imaging", "--lpips", "/nonexistent/lpips.pt"], "/nonexistent/lpips.pt"),
        ("missing-test-data", vec!["ns", "--test-data", "/nonexistent/t.npy"], "/nonexistent/t.npy"),
        ("truncated-test-data", vec!["ns", "--test-data", truncated], "truncated.npy"),
        ("gmm-has-no-tiny", vec!["gmm", "--tiny"], "no tiny preset"),
        ("unknown-option", vec!["ns", "--particle", "3"], "unexpected argument '--particle'"),
        ("device-unknown", vec!["ns", "--device", "gpu"], "--device \"gpu\" is not auto, cpu, cuda or cuda:N"),
        ("device-cuda-index", vec!["ns", "--device", "cuda:x"], "is not auto, cpu, cuda or cuda:N"),
        ("device-absent-cuda", vec!["ns", "--tiny", "--device", "cuda:64"], "cuda:64 requested"),
        ("paper-and-full", vec!["ns", "--paper", "--full"], "cannot be used with"),
        ("paper-other-table", vec!["blackhole", "--paper"], "run `ns --paper` on its own"),
        ("estimate-other-table", vec!["ns", "gmm", "--estimate"], "run `ns --estimate` on its own"),
        ("paper-without-prior", vec!["ns", "--paper", "--test-data", fields], "--paper needs --prior FILE.pt"),
        ("paper-without-test-data", vec!["ns", "--paper", "--prior", edm], "--paper needs --prior FILE.pt"),
        ("paper-absent-cuda", vec!["ns", "--paper", "--device", "cuda:64", "--prior", edm, "--test-data", fields], "cuda:64 requested"),
        ("ns-prior-not-torchscript", vec!["ns", "--tiny", "--prior", junk], "junk.pt"),
        ("ns-test-data-oblong", vec!["ns", "--tiny", "--prior", edm, "--test-data", oblong], "not (N, H, H) or (N, 1, H, H)"),
        ("ns-prior-folder-other-shape", vec!["ns", "--tiny", "--test-data", square32], "makes [1, 64, 64] images but the ns operator takes [1, 32, 32]"),
    ];
    let mut cases = cases;
    if !tch::Cuda::is_available() {
        // The machine has no CUDA device: `--paper` without `--device cpu` says so in one line.
        cases.push(("paper-no-cuda", vec!["ns", "--paper", "--prior", edm, "--test-data", fields], "needs a CUDA device, but libtorch sees none"));
    }
    for (name, args, want) in cases {
        fails(name, &args, want);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `ns --estimate` prints the expected wall time, one line per method and a total, and runs
/// nothing: the output folder stays empty.
#[test]
fn estimate_prints_the_expected_wall_time_and_runs_nothing() {
    let dir = temp("estimate");
    let out = dir.join("out");
    let o = bin().args(["ns", "--tiny", "--estimate", "--out"]).arg(&out).output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success(), "{stderr}");
    assert!(stdout.contains("ns (tiny preset): expected wall time on this machine: about"), "{stdout}");
    for m in ["EKI", "Forward-GSG", "Central-GSG", "DPG", "SCG", "EnKG", "CPS"] {
        assert!(stderr.contains(&format!("  {m}: ")), "no line for {m}:\n{stderr}");
    }
    assert!(files_under(&out).is_empty(), "wrote {:?}", files_under(&out));
    std::fs::remove_dir_all(&dir).unwrap();
}
