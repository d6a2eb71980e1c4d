//! Open MPI for the tests of `diffinv`'s feature `mpi` (`cargo xtask test`) and for
//! `cargo xtask bench mpi`: found, or installed with apt-get when we are root, or reported
//! missing in one line.

use std::process::{Command, Stdio};

/// The Debian packages the feature needs: the library and its headers (`mpicc`), the
/// launcher, and libclang for the generated bindings of the `mpi` crate.
pub const PACKAGES: [&str; 3] = ["libopenmpi-dev", "openmpi-bin", "libclang-dev"];

fn quiet(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// libclang where the `mpi` crate's bindgen finds it (`LIBCLANG_PATH`, or a `libclang.so` or
/// `libclang-N.so` known to the dynamic linker; `libclang-cpp` is another library).
fn has_libclang() -> bool {
    if std::env::var_os("LIBCLANG_PATH").is_some() {
        return true;
    }
    let Ok(out) = Command::new("ldconfig").arg("-p").output() else {
        return false;
    };
    String::from_utf8_lossy(&out.stdout).lines().any(|l| {
        let l = l.trim_start();
        l.starts_with("libclang.so")
            || l.strip_prefix("libclang-")
                .is_some_and(|r| r.starts_with(|c: char| c.is_ascii_digit()))
    })
}

/// Whether Open MPI's `mpirun` (the tests pass it Open MPI's options), `mpicc` (the headers)
/// and libclang are all there.
pub fn present() -> bool {
    let open_mpi = Command::new("mpirun")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("Open MPI"))
        .unwrap_or(false);
    open_mpi && quiet("mpicc", &["--showme:version"]) && has_libclang()
}

/// MPI for the tests: `true` when present, or after installing it with apt-get as root;
/// otherwise one line saying the MPI tests are skipped and what to install, and `false`.
pub fn ensure() -> bool {
    if present() {
        return true;
    }
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    if root && quiet("apt-get", &["--version"]) {
        eprintln!("xtask: installing {} (apt-get) for the MPI tests", PACKAGES.join(" "));
        let install = || {
            Command::new("apt-get")
                .args(["install", "-y", "-q", "--no-install-recommends"])
                .args(PACKAGES)
                .env("DEBIAN_FRONTEND", "noninteractive")
                .stdout(Stdio::null())
                .status()
                .map(|s| s.success())
                .unwrap_or(false)
        };
        // A fresh machine may have no package lists yet.
        if !install() && quiet("apt-get", &["update", "-q"]) {
            install();
        }
        if present() {
            return true;
        }
    }
    eprintln!(
        "xtask: MPI tests skipped: install {} (apt-get) to run them",
        PACKAGES.join(" ")
    );
    false
}
