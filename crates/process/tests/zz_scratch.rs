#![allow(clippy::unwrap_used)]
use diffinv_operators::{FnForward, ForwardModel};
use diffinv_process::{PoolOptions, ProcessConfig, ProcessForward};
use std::time::Instant;

fn spin_row(x: &[f32], iters: u32) -> Vec<f32> {
    const A: [[f32; 4]; 3] = [[1.0, 0.5, 0.0, 0.0], [0.0, 1.0, -0.5, 0.0], [0.0, 0.0, 0.5, 1.0]];
    let x = [x[0], x[1], x[2], x[3]];
    let mut s = 0.0f32;
    for k in 0..iters { s = s * 0.9999 + x[(k % 4) as usize] * 1e-4; }
    A.iter().map(|row| row[0] * x[0] + row[1] * x[1] + row[2] * x[2] + row[3] * x[3] + 1e-3 * s).collect()
}

#[test]
#[ignore]
fn scratch() {
    let iters = 4400;
    let exe = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/debug/examples/spin_worker");
    let mut cfg = ProcessConfig::new(vec![exe.display().to_string(), iters.to_string()], 4, 3);
    cfg.workers = Some(2);
    let p = ProcessForward::start(&cfg, PoolOptions::default()).unwrap();
    let f = FnForward::new(4, 3, move |x: &[f32]| spin_row(x, iters));
    for n in [64usize, 256, 1024] {
        let x = ndarray::Array2::<f32>::from_elem((n, 4), 0.3);
        let (mut bi, mut bp) = (f64::INFINITY, f64::INFINITY);
        for _ in 0..20 {
            let t = Instant::now(); f.forward(x.view()).unwrap(); bi = bi.min(t.elapsed().as_secs_f64());
            let t = Instant::now(); p.forward(x.view()).unwrap(); bp = bp.min(t.elapsed().as_secs_f64());
        }
        println!("n {n}: in {:.2} us/row, process {:.2} us/row", bi / n as f64 * 1e6, bp / n as f64 * 1e6);
    }
}
