//! Results are bit-identical for any rayon thread count (1, 2 and 3 threads), for shapes that
//! span several output tiles in both directions and edge tiles.

use diffinv_ensemble::{combine, combine_anomalies, gram, kalman_direction, kalman_step_in, mean, KalmanForm};
use ndarray::Array2;

fn data(rows: usize, cols: usize, salt: usize) -> Array2<f32> {
    Array2::from_shape_fn((rows, cols), |(i, j)| {
        let h = (i.wrapping_mul(2654435761) ^ j.wrapping_mul(40503) ^ salt.wrapping_mul(97)) % 10007;
        h as f32 / 10007.0 - 0.5 + 0.25 * salt as f32
    })
}

fn bits(a: &Array2<f32>) -> Vec<u32> {
    a.iter().map(|v| v.to_bits()).collect()
}

fn in_pool<T: Send>(threads: usize, f: impl FnOnce() -> T + Send) -> T {
    match rayon::ThreadPoolBuilder::new().num_threads(threads).build() {
        Ok(pool) => pool.install(f),
        Err(e) => panic!("cannot build a rayon pool of {threads} threads: {e}"),
    }
}

#[test]
fn bit_identical_across_thread_counts() {
    // N = 600 > 512 (two row tiles of C X, three of the Gram), d = 1100 (three column bands,
    // the last partial), m = 2500 (three bands of the mean).
    let (n, d, m) = (600, 1100, 2500);
    let x = data(n, d, 1);
    let y = data(n, m, 2);
    let r = data(n, m, 3);
    let c = data(n, n, 4);
    let run = || {
        let kd = kalman_direction(x.view(), y.view(), r.view()).expect("valid shapes");
        let g = gram(r.view(), y.view()).expect("valid shapes");
        let cx = combine(c.view(), x.view()).expect("valid shapes");
        let ca = combine_anomalies(c.view(), x.view()).expect("valid shapes");
        let mu = mean(y.view()).expect("non-empty").insert_axis(ndarray::Axis(0));
        // The factored form over the same shapes (P is m x d: several tiles both ways).
        let fs = kalman_step_in(KalmanForm::Factored, x.view(), y.view(), r.view()).expect("valid shapes");
        ([kd.dx, kd.c, g, cx, ca, mu, fs.dx], fs.c_norm.to_bits())
    };
    let (one, one_norm) = in_pool(1, run);
    for threads in [2, 3] {
        let (other, other_norm) = in_pool(threads, run);
        assert_eq!(one_norm, other_norm, "||C|| differs between 1 and {threads} threads");
        for (k, (a, b)) in one.iter().zip(other.iter()).enumerate() {
            assert_eq!(bits(a), bits(b), "output {k} differs between 1 and {threads} threads");
        }
    }
    // and a non-trivial result (not all zeros)
    assert!(one[0].iter().any(|v| *v != 0.0));
}
