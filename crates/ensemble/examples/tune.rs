//! Tile-size tuning: times `kalman_direction_tiled` on one shape with the given tiles.
//!
//! `cargo run --release -p diffinv-ensemble --example tune -- N D M GR GC CR CC [REPS]`
//! (GR x GC: Gram tiles, CR x CC: combination tiles). Set `RAYON_NUM_THREADS` for the threads.
use diffinv_ensemble::{kalman_direction_tiled, kalman_flops, Tiles};
use ndarray::Array2;
use std::time::Instant;

/// User + system CPU seconds of this process, from /proc/self/stat (Linux; 0 elsewhere).
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else { return 0.0 };
    // fields after the command name (which is in parentheses): utime is field 14, stime 15
    let Some(rest) = stat.rsplit(')').next() else { return 0.0 };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (tick(11) + tick(12)) / 100.0
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = std::env::args().skip(1).map(|s| s.parse::<usize>()).collect::<Result<Vec<_>, _>>()?;
    if args.len() < 7 {
        return Err("usage: tune N D M GRAM_ROWS GRAM_COLS COMBINE_ROWS COMBINE_COLS [REPS]".into());
    }
    let (n, d, m) = (args[0], args[1], args[2]);
    let gt = Tiles { rows: args[3], cols: args[4] };
    let ct = Tiles { rows: args[5], cols: args[6] };
    let reps = args.get(7).copied().unwrap_or(3);
    let x = Array2::from_shape_fn((n, d), |(i, j)| ((i * 31 + j * 17) % 97) as f32 / 97.0);
    let y = Array2::from_shape_fn((n, m), |(i, j)| ((i * 13 + j * 7) % 89) as f32 / 89.0);
    let r = Array2::from_shape_fn((n, m), |(i, j)| ((i * 5 + j * 11) % 83) as f32 / 83.0);
    kalman_direction_tiled(x.view(), y.view(), r.view(), gt, ct)?;
    for _ in 0..reps {
        let (t, c0) = (Instant::now(), cpu_seconds());
        let k = kalman_direction_tiled(x.view(), y.view(), r.view(), gt, ct)?;
        let (dt, cpu) = (t.elapsed().as_secs_f64(), cpu_seconds() - c0);
        let f = kalman_flops(n, d, m) / 1e9;
        // CPU time (user + system of this process) is less sensitive than wall time to other
        // processes on a loaded machine: GFLOP per CPU-second is the per-core rate.
        println!("{dt:.3} s  {:.1} GFLOP/s wall, {:.1} GFLOP per CPU-s  (dx[0,0] = {})", f / dt, f / cpu, k.dx[[0, 0]]);
    }
    Ok(())
}
