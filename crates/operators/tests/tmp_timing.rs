use diffinv_operators::imaging::*;
use diffinv_operators::{ForwardModel, LinearOperator, Differentiable};
use ndarray::Array2;
use std::time::Instant;
fn t<F: FnMut()>(name: &str, mut f: F) { f(); let n = 5; let s = Instant::now(); for _ in 0..n { f(); } println!("{name}: {:.2} ms", s.elapsed().as_secs_f64() * 1e3 / n as f64); }
#[test]
fn timing() {
    let (c, h, w, n) = (3, 256, 256, 8);
    let x = Array2::from_shape_fn((n, c * h * w), |(i, j)| ((i * 31 + j * 7) % 13) as f32 / 13.0);
    let g = Blur::gaussian(c, h, w, 61, 3.0).unwrap();
    t("blur fwd N=8", || { g.forward(x.view()).unwrap(); });
    t("blur adj N=8", || { g.adjoint(x.view()).unwrap(); });
    let sr = SuperResolution::bicubic(c, h, w, 4).unwrap();
    let ys = sr.forward(x.view()).unwrap();
    t("sr fwd N=8", || { sr.forward(x.view()).unwrap(); });
    t("sr adj N=8", || { sr.adjoint(ys.view()).unwrap(); });
    let pr = PhaseRetrieval::dps(c, h, w, 2.0).unwrap();
    let yp = pr.forward(x.view()).unwrap();
    t("pr fwd N=8", || { pr.forward(x.view()).unwrap(); });
    t("pr vjp N=8", || { pr.vjp(x.view(), yp.view()).unwrap(); });
    let inp = Inpainting::box_seeded(c, h, w, 0).unwrap();
    t("inpaint fwd N=8", || { inp.forward(x.view()).unwrap(); });
    println!("threads {}", rayon::current_num_threads());
}
