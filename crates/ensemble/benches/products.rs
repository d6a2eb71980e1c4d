//! Criterion benches of the hot products at small sizes (the full-size comparison against
//! PyTorch is `cargo xtask bench ensemble`). Run: `cargo bench -p diffinv-ensemble`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use diffinv_ensemble::{combine_anomalies, gram, kalman_direction, kalman_flops, reference};
use ndarray::Array2;

fn data(rows: usize, cols: usize, salt: usize) -> Array2<f32> {
    Array2::from_shape_fn((rows, cols), |(i, j)| {
        ((i.wrapping_mul(2654435761) ^ j.wrapping_mul(40503) ^ salt) % 1009) as f32 / 1009.0 - 0.5
    })
}

fn products(c: &mut Criterion) {
    let mut g = c.benchmark_group("ensemble");
    g.sample_size(10);
    for &(n, d, m) in &[(64usize, 4096usize, 1024usize), (256, 4096, 1024)] {
        let x = data(n, d, 1);
        let y = data(n, m, 2);
        let r = data(n, m, 3);
        let cmat = data(n, n, 4);
        let id = format!("N{n}_d{d}_m{m}");
        g.throughput(Throughput::Elements((2 * n * n * m) as u64));
        g.bench_function(BenchmarkId::new("gram_R_Yt", &id), |b| b.iter(|| gram(r.view(), y.view())));
        g.throughput(Throughput::Elements((2 * n * n * d) as u64));
        g.bench_function(BenchmarkId::new("combine_anomalies", &id), |b| {
            b.iter(|| combine_anomalies(cmat.view(), x.view()))
        });
        g.throughput(Throughput::Elements(kalman_flops(n, d, m) as u64));
        g.bench_function(BenchmarkId::new("kalman_direction", &id), |b| {
            b.iter(|| kalman_direction(x.view(), y.view(), r.view()))
        });
        g.bench_function(BenchmarkId::new("kalman_direction_reference", &id), |b| {
            b.iter(|| reference::kalman_direction(x.view(), y.view(), r.view()))
        });
    }
    g.finish();
}

criterion_group!(benches, products);
criterion_main!(benches);
