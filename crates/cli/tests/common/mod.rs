//! Helpers shared by the `diffinv` binary's integration tests (cli.rs, examples.rs, mpi.rs).
#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// The `diffinv` binary under test.
pub fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_diffinv"))
}

/// crates/cli/examples.
pub fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples")
}

/// A fresh, empty folder for test `name` of this test process.
pub fn temp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("diffinv-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A `python3` with numpy (`DIFFINV_PYTHON`, set by `cargo xtask test`); `None` with a printed
/// line when unset, a panic when `DIFFINV_REQUIRE_PYTHON=1`.
pub fn python() -> Option<String> {
    match std::env::var("DIFFINV_PYTHON") {
        Ok(p) => Some(p),
        Err(_) => {
            if std::env::var("DIFFINV_REQUIRE_PYTHON").as_deref() == Ok("1") {
                panic!("DIFFINV_REQUIRE_PYTHON=1 but DIFFINV_PYTHON is unset");
            }
            eprintln!("skipping: DIFFINV_PYTHON (a python3 with numpy) is unset");
            None
        }
    }
}

/// Process ids (other than this one) whose command line contains `marker`.
pub fn processes_with(marker: &str) -> Vec<u32> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else { continue };
        if let Ok(cmd) = std::fs::read(e.path().join("cmdline")) {
            if String::from_utf8_lossy(&cmd).contains(marker) && pid != std::process::id() {
                found.push(pid);
            }
        }
    }
    found
}
