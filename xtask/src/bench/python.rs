//! `cargo xtask bench python [--quick]`: the overhead of a Python callable as the forward
//! model against the same model in Rust, for one EnKG run (`xtask/python/python_overhead.py`,
//! with the package staged as `cargo xtask test` does: the workspace's dev-profile build).
//!
//! Per case, `ours` is the wall time of the run through the Python callable
//! (`lambda x: op(x)`), `baseline` the same run with the solver calling the Rust model directly
//! (bit-identical samples); the ratio `baseline / ours` is below 1 by the overhead.

use std::process::Command;

use anyhow::{bail, Context, Result};

use super::BenchArgs;
use crate::report::{print_bench, BenchCase, Better};

/// Run the benchmark.
pub fn run(args: &BenchArgs) -> Result<()> {
    let env = crate::torch_env::ensure()?;
    crate::torch_env::ensure_test_packages(&env)?;
    let Some(dir) = crate::python::stage(&env)? else {
        bail!("the Python package could not be built for this python (see the line above)");
    };
    let script = crate::workspace_root().join("xtask/python/python_overhead.py");
    let mut c = Command::new(&env.python);
    c.arg(&script).args(["--repeat", if args.quick { "1" } else { "3" }]);
    if args.quick {
        c.arg("--quick");
    }
    env.apply(&mut c);
    c.env("PYTHONPATH", crate::python::pythonpath(&dir));
    let out = c.output().with_context(|| format!("running {}", script.display()))?;
    if !out.status.success() {
        bail!("python_overhead.py failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().last().unwrap_or("");
    let v: serde_json::Value = serde_json::from_str(line).with_context(|| format!("parsing {line:?}"))?;
    let threads = rayon::current_num_threads();
    println!("bench python: one EnKG run, forward model through a Python callable vs called in Rust, {threads} threads");
    let mut cases = Vec::new();
    for c in v["cases"].as_array().map(Vec::as_slice).unwrap_or_default() {
        let name = c["case"].as_str().unwrap_or("?");
        let f = |k: &str| c[k].as_f64().unwrap_or(f64::NAN);
        println!(
            "{name:<12} d {:>5}: rust {:>8.1} ms, python callable {:>8.1} ms; {} calls of {} rows, inside the forward model {:.1} vs {:.1} ms: {:.0} us of overhead per call ({:.1}% of the callable run)",
            f("d"),
            1e3 * f("rust_s"),
            1e3 * f("python_s"),
            f("calls"),
            f("rows") / f("calls").max(1.0),
            1e3 * f("fwd_s_python"),
            1e3 * f("fwd_s_rust"),
            f("overhead_us_per_call"),
            100.0 * f("overhead_us_per_call") * 1e-6 * f("calls") / f("python_s"),
        );
        cases.push(BenchCase::new(name, 1e3 * f("python_s"), 1e3 * f("rust_s"), "ms/run", Better::Lower));
    }
    if cases.is_empty() {
        bail!("no cases in {line:?}");
    }
    print_bench("python", &cases)
}
