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

fn main() -> std::io::Result<()> {
    let iters: u32 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1000);
    diffinv_process::serve(4, 3, |x: &[f32], rows: usize, y: &mut [f32]| {
        for r in 0..rows {
            diffinv_process::spin::spin_row(&x[4 * r..4 * r + 4], iters, &mut y[3 * r..3 * r + 3]);
        }
        Ok(())
    })
}
