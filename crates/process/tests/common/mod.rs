//! Helpers shared by the test binaries: C workers compiled once per binary, unique markers,
//! and the process-table scan that proves no worker is left behind.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use diffinv_process::ProcessConfig;

/// The crate's folder.
pub fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A scratch folder unique to this test binary's process.
pub fn scratch() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        // Remove the folders of earlier test processes that are gone.
        if let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                let Some(pid) = name.strip_prefix("diffinv-process-tests-") else {
                    continue;
                };
                if pid.parse::<u32>().is_ok() && !Path::new("/proc").join(pid).exists() {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        let d = std::env::temp_dir().join(format!("diffinv-process-tests-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    })
}

/// A fresh sub-folder of [`scratch`].
pub fn fresh_dir(tag: &str) -> PathBuf {
    let d = scratch().join(tag);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Compile a C file (relative to the crate) once per test binary; the executable's path.
pub fn c_program(source: &str) -> PathBuf {
    static BUILT: OnceLock<Mutex<HashMap<String, PathBuf>>> = OnceLock::new();
    let built = BUILT.get_or_init(Default::default);
    let mut built = built.lock().unwrap();
    if let Some(p) = built.get(source) {
        return p.clone();
    }
    let src = crate_dir().join(source);
    let name = Path::new(source)
        .file_stem()
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let exe = scratch().join(format!("{name}.bin"));
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let out = Command::new(&cc)
        .args([
            "-std=c99",
            "-D_DEFAULT_SOURCE",
            "-O2",
            "-ffp-contract=off",
            "-Wall",
        ])
        .arg("-I")
        .arg(crate_dir().join("c"))
        .arg(&src)
        .arg("-o")
        .arg(&exe)
        .arg("-lm")
        .output()
        .unwrap_or_else(|e| panic!("running {cc}: {e}"));
    assert!(
        out.status.success(),
        "compiling {source} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    built.insert(source.to_string(), exe.clone());
    exe
}

/// The fault worker (tests/workers/fault.c).
pub fn fault() -> PathBuf {
    c_program("tests/workers/fault.c")
}

/// A marker argument unique to one test (and this process).
pub fn marker(tag: &str) -> String {
    format!("diffinv-test-marker-{tag}-{}", std::process::id())
}

/// `(pid, ppid)` of every process whose command line has an argument containing `marker`.
pub fn alive(marker: &str) -> Vec<(u32, u32)> {
    let me = std::process::id();
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let hit = cmd
            .split(|&b| b == 0)
            .any(|a| String::from_utf8_lossy(a).contains(marker));
        if !hit {
            continue;
        }
        // Zombies have an empty command line already; be explicit anyway.
        let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
        let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
        let mut f = after.split_whitespace();
        let state = f.next().unwrap_or("");
        let ppid = f.next().and_then(|s| s.parse().ok()).unwrap_or(0);
        if state != "Z" {
            found.push((pid, ppid));
        }
    }
    found
}

/// Wait (up to 3 s) until no process carries `marker`; panic listing them otherwise.
pub fn assert_gone(marker: &str) {
    let until = Instant::now() + Duration::from_secs(3);
    loop {
        let a = alive(marker);
        if a.is_empty() {
            return;
        }
        if Instant::now() > until {
            let detail: Vec<String> = a
                .iter()
                .map(|(pid, _)| {
                    let st =
                        std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
                    let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                    format!(
                        "{st} | {}",
                        String::from_utf8_lossy(&cmd).replace('\0', " ")
                    )
                })
                .collect();
            panic!("processes left behind with marker {marker}: {detail:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A persistent-mode configuration of the fault worker in `mode`.
pub fn fault_cfg(mode: &str, marker: &str, workers: usize) -> ProcessConfig {
    let mut c = ProcessConfig::new(
        vec![
            fault().display().to_string(),
            mode.to_string(),
            marker.to_string(),
        ],
        1,
        2,
    );
    c.workers = Some(workers);
    c.timeout_s = 5.0;
    c
}

/// An `(n, 1)` batch of the given values.
pub fn column(values: &[f32]) -> ndarray::Array2<f32> {
    ndarray::Array2::from_shape_vec((values.len(), 1), values.to_vec()).unwrap()
}

/// The Python interpreter for the Python tests (`DIFFINV_PYTHON`), or `None` with a skip line;
/// with `DIFFINV_REQUIRE_PYTHON=1` a missing interpreter is a failure.
pub fn python() -> Option<String> {
    match std::env::var("DIFFINV_PYTHON") {
        Ok(p) if !p.is_empty() => Some(p),
        _ => {
            if std::env::var("DIFFINV_REQUIRE_PYTHON").as_deref() == Ok("1") {
                panic!("DIFFINV_REQUIRE_PYTHON=1 but DIFFINV_PYTHON is unset");
            }
            eprintln!("skipping Python worker test: DIFFINV_PYTHON is unset");
            None
        }
    }
}
