//! Records the git commit the program was built from (for `summary.json`), when the source is a
//! git checkout and `git` is on PATH; otherwise the summary says `null`.

fn main() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    for p in [".git/HEAD", ".git/refs/heads", ".git/packed-refs"] {
        println!("cargo:rerun-if-changed={}", root.join(p).display());
    }
    let out = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(&root)
        .output();
    if let Ok(o) = out {
        if o.status.success() {
            let commit = String::from_utf8_lossy(&o.stdout).trim().to_string();
            if !commit.is_empty() {
                println!("cargo:rustc-env=DIFFINV_GIT_COMMIT={commit}");
            }
        }
    }
}
