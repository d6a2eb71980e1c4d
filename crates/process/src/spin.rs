//! The synthetic model of `cargo xtask bench process`, shared by its in-process side and its
//! worker (`examples/spin_worker.rs`) so that both compute the very same function: 4 inputs,
//! 3 outputs, `y = A x + 1e-3 s(x)` where `s` is a deterministic busy loop of `iters` dependent
//! multiply-adds (about 1 ns each), standing in for a simulator's per-row cost.

/// `y = A x + 1e-3 s`, `s` the result of `iters` dependent steps; `x` has 4 values, `y` 3.
pub fn spin_row(x: &[f32], iters: u32, y: &mut [f32]) {
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
