//! A worker in Rust for the `process` benchmark (`cargo xtask bench process`): 4 inputs,
//! 3 outputs, `y = A x + 1e-3 s(x)` where `s` is a deterministic busy loop of `ITERS`
//! dependent multiply-adds (about 1 ns each), standing in for a simulator's per-row cost.
//!
//! ```text
//! cargo run -p diffinv-process --example spin_worker -- ITERS
//! ```
//!
//! It speaks the protocol through [`diffinv_process::serve`]; the benchmark evaluates the same
//! function in-process and checks that both give bit-identical results.

/// `y = A x + 1e-3 s`, `s` the result of `iters` dependent steps; `x` has 4 values, `y` 3.
fn spin_row(x: &[f32], iters: u32, y: &mut [f32]) {
    const A: [[f32; 4]; 3] = [
        [1.0, 0.5, 0.0, 0.0],
        [0.0, 1.0, -0.5, 0.0],
        [0.0, 0.0, 0.5, 1.0],
    ];
    // A fixed-size copy, so that the loop has no bounds checks whatever the caller's slice.
    let x = [x[0], x[1], x[2], x[3]];
    let mut s = 0.0f32;
    for k in 0..iters {
        s = s * 0.9999 + x[(k % 4) as usize] * 1e-4;
    }
    for (i, row) in A.iter().enumerate() {
        y[i] = row[0] * x[0] + row[1] * x[1] + row[2] * x[2] + row[3] * x[3] + 1e-3 * s;
    }
}

fn main() -> std::io::Result<()> {
    let iters: u32 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1000);
    diffinv_process::serve(4, 3, |x: &[f32], rows: usize, y: &mut [f32]| {
        for r in 0..rows {
            spin_row(&x[4 * r..4 * r + 4], iters, &mut y[3 * r..3 * r + 3]);
        }
        Ok(())
    })
}
