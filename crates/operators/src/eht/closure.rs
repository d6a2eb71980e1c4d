//! Closure quantities: minimal independent sets of closure phases and log closure amplitudes
//! per scan, and their thermal-noise uncertainties (Chael et al. 2018, ApJ 857, 23; Blackburn
//! et al. 2020, ApJ 894, 31).
//!
//! With station-based gain errors, the measured visibility of baseline `(i, j)` is
//! `V'_ij = g_i g_j exp(i (phi_i - phi_j)) V_ij` (`V_ji = conj(V_ij)`). Two combinations are
//! immune:
//!
//! - closure phase of triangle `(a, b, c)`: `psi = arg(V_ab V_bc V_ca)`,
//! - log closure amplitude of quadrangle `(a, b, c, d)`:
//!   `ln|V_ab| + ln|V_cd| - ln|V_ac| - ln|V_bd|`.
//!
//! For `n` stations in a scan there are `(n-1)(n-2)/2` independent closure phases: the
//! triangles `(r, i, j)`, `i < j`, through the reference station `r` (the first visible
//! station in array order). There are `n(n-3)/2` independent log closure amplitudes; they are
//! chosen greedily: candidate quadrangles are taken in a fixed order (those through `r` first,
//! two of the three ratios per quadrangle) and kept when their coefficient vector over the scan's
//! log amplitudes is linearly independent of those already kept (exact, on small integer
//! vectors), until the count is reached.
//!
//! Uncertainties from per-component thermal noise `sigma_k` (first-order propagation, the
//! eht-imaging formulas): `sigma_psi = sqrt(sum_k sigma_k^2 / |V_k|^2)` (radians) and
//! `sigma_logcamp = sqrt(sum_k sigma_k^2 / |V_k|^2)` over the three or four visibilities.

use num_complex::Complex;

use super::array::UvCoverage;
use crate::{OperatorError, Result};

/// One closure-phase triangle: `psi = arg(prod_k V_k)` with `V_k` the stored visibility
/// `vis[k]`, conjugated where `conj[k]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Triangle {
    /// Scan index.
    pub scan: usize,
    /// Stations `(a, b, c)` (array indices): the baselines are `ab`, `bc`, `ca`.
    pub stations: [usize; 3],
    /// Indices of the visibilities of `ab`, `bc`, `ca`.
    pub vis: [usize; 3],
    /// Whether each is the conjugate of the stored (lower station first) visibility.
    pub conj: [bool; 3],
}

/// One log closure amplitude: `ln|V_0| + ln|V_1| - ln|V_2| - ln|V_3|`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quadrangle {
    /// Scan index.
    pub scan: usize,
    /// Stations `(a, b, c, d)`: the baselines are `ab`, `cd` (numerator), `ac`, `bd`
    /// (denominator).
    pub stations: [usize; 4],
    /// Indices of the visibilities of `ab`, `cd`, `ac`, `bd`.
    pub vis: [usize; 4],
}

/// The closure triangles and quadrangles of a coverage.
#[derive(Debug, Clone)]
pub struct ClosureSet {
    n_vis: usize,
    triangles: Vec<Triangle>,
    quadrangles: Vec<Quadrangle>,
}

/// Incremental rank test over small integer-valued vectors (modified Gram-Schmidt in `f64`;
/// entries are in {-2..2} and dimensions at most a few dozen, so the tolerance is safe).
#[derive(Default)]
struct Basis {
    rows: Vec<Vec<f64>>,
}

impl Basis {
    fn try_add(&mut self, mut v: Vec<f64>) -> bool {
        for r in &self.rows {
            let p: f64 = r.iter().zip(&v).map(|(a, b)| a * b).sum();
            for (x, y) in v.iter_mut().zip(r) {
                *x -= p * y;
            }
        }
        let n = v.iter().map(|x| x * x).sum::<f64>().sqrt();
        if n < 1e-9 {
            return false;
        }
        v.iter_mut().for_each(|x| *x /= n);
        self.rows.push(v);
        true
    }
}

impl ClosureSet {
    /// Minimal independent closure phases and log closure amplitudes of every scan.
    pub fn minimal(coverage: &UvCoverage) -> Result<Self> {
        let mut triangles = Vec::new();
        let mut quadrangles = Vec::new();
        let idx = |scan: usize, a: usize, b: usize| -> Result<(usize, bool)> {
            coverage
                .vis_index(scan, a, b)
                .ok_or(OperatorError::InvalidParameter {
                    name: "coverage",
                    reason: format!("scan {scan} lacks baseline {a}-{b}"),
                })
        };
        for (s, scan) in coverage.scans.iter().enumerate() {
            let st = &scan.stations;
            let n = st.len();
            if n >= 3 {
                let r = st[0];
                for a in 1..n {
                    for b in a + 1..n {
                        let (i, j) = (st[a], st[b]);
                        let (v0, c0) = idx(s, r, i)?;
                        let (v1, c1) = idx(s, i, j)?;
                        let (v2, c2) = idx(s, j, r)?;
                        triangles.push(Triangle {
                            scan: s,
                            stations: [r, i, j],
                            vis: [v0, v1, v2],
                            conj: [c0, c1, c2],
                        });
                    }
                }
            }
            if n >= 4 {
                let target = n * (n - 3) / 2;
                let nb = scan.vis.len();
                let base = scan.vis.start;
                // Candidates: quadrangles through the reference first, then the rest; two ratios each.
                let mut cands: Vec<[usize; 4]> = Vec::new();
                for pass in 0..2 {
                    for a in 0..n {
                        for b in a + 1..n {
                            for c in b + 1..n {
                                for d in c + 1..n {
                                    if (a == 0) != (pass == 0) {
                                        continue;
                                    }
                                    let (p, q, r2, t) = (st[a], st[b], st[c], st[d]);
                                    cands.push([p, q, r2, t]);
                                    cands.push([p, q, t, r2]);
                                }
                            }
                        }
                    }
                }
                let mut basis = Basis::default();
                let mut kept = 0;
                for q in cands {
                    if kept == target {
                        break;
                    }
                    let pairs = [(q[0], q[1]), (q[2], q[3]), (q[0], q[2]), (q[1], q[3])];
                    let mut vis = [0usize; 4];
                    let mut coef = vec![0.0f64; nb];
                    for (k, &(a, b)) in pairs.iter().enumerate() {
                        vis[k] = idx(s, a, b)?.0;
                        coef[vis[k] - base] += if k < 2 { 1.0 } else { -1.0 };
                    }
                    if basis.try_add(coef) {
                        quadrangles.push(Quadrangle {
                            scan: s,
                            stations: q,
                            vis,
                        });
                        kept += 1;
                    }
                }
                if kept != target {
                    return Err(OperatorError::InvalidParameter {
                        name: "coverage",
                        reason: format!("scan {s}: found {kept} independent closure amplitudes, expected {target}"),
                    });
                }
            }
        }
        Ok(Self {
            n_vis: coverage.n_vis(),
            triangles,
            quadrangles,
        })
    }

    /// Number of visibilities the set indexes into.
    pub fn n_vis(&self) -> usize {
        self.n_vis
    }
    /// The closure-phase triangles, scan by scan.
    pub fn triangles(&self) -> &[Triangle] {
        &self.triangles
    }
    /// The log-closure-amplitude quadrangles, scan by scan.
    pub fn quadrangles(&self) -> &[Quadrangle] {
        &self.quadrangles
    }
    /// Number of closure phases.
    pub fn n_cphase(&self) -> usize {
        self.triangles.len()
    }
    /// Number of log closure amplitudes.
    pub fn n_logcamp(&self) -> usize {
        self.quadrangles.len()
    }

    fn check_len(&self, got: usize, what: &'static str) -> Result<()> {
        if got != self.n_vis {
            return Err(OperatorError::Shape {
                what,
                expected: self.n_vis,
                got,
            });
        }
        Ok(())
    }

    /// Closure phases (radians, in `(-pi, pi]`) of the visibilities `vis` (length `n_vis`).
    pub fn closure_phases<T: Into<f64> + Copy>(&self, vis: &[Complex<T>]) -> Result<Vec<f64>> {
        self.check_len(vis.len(), "visibilities")?;
        Ok(self.triangles.iter().map(|t| cphase_of(t, vis)).collect())
    }

    /// Log closure amplitudes of `vis`; a zero amplitude gives a non-finite value.
    pub fn log_closure_amplitudes<T: Into<f64> + Copy>(
        &self,
        vis: &[Complex<T>],
    ) -> Result<Vec<f64>> {
        self.check_len(vis.len(), "visibilities")?;
        Ok(self
            .quadrangles
            .iter()
            .map(|q| logcamp_of(q, vis))
            .collect())
    }

    /// `sigma_psi = sqrt(sum_k sigma_k^2 / |V_k|^2)` for every triangle, from the visibilities
    /// and their per-component noise `sigma` (same units).
    pub fn closure_phase_sigmas<T: Into<f64> + Copy>(
        &self,
        vis: &[Complex<T>],
        sigma: &[f64],
    ) -> Result<Vec<f64>> {
        self.check_len(vis.len(), "visibilities")?;
        self.check_len(sigma.len(), "visibility sigmas")?;
        Ok(self
            .triangles
            .iter()
            .map(|t| propagate(&t.vis, vis, sigma))
            .collect())
    }

    /// `sigma_logcamp = sqrt(sum_k sigma_k^2 / |V_k|^2)` for every quadrangle.
    pub fn log_closure_amplitude_sigmas<T: Into<f64> + Copy>(
        &self,
        vis: &[Complex<T>],
        sigma: &[f64],
    ) -> Result<Vec<f64>> {
        self.check_len(vis.len(), "visibilities")?;
        self.check_len(sigma.len(), "visibility sigmas")?;
        Ok(self
            .quadrangles
            .iter()
            .map(|q| propagate(&q.vis, vis, sigma))
            .collect())
    }
}

fn c64<T: Into<f64> + Copy>(z: Complex<T>) -> Complex<f64> {
    Complex::new(z.re.into(), z.im.into())
}

pub(crate) fn cphase_of<T: Into<f64> + Copy>(t: &Triangle, vis: &[Complex<T>]) -> f64 {
    let mut b = Complex::new(1.0f64, 0.0);
    for k in 0..3 {
        let z = c64(vis[t.vis[k]]);
        b *= if t.conj[k] { z.conj() } else { z };
    }
    b.arg()
}

pub(crate) fn logcamp_of<T: Into<f64> + Copy>(q: &Quadrangle, vis: &[Complex<T>]) -> f64 {
    let l = |k: usize| c64(vis[q.vis[k]]).norm().ln();
    l(0) + l(1) - l(2) - l(3)
}

fn propagate<T: Into<f64> + Copy>(ks: &[usize], vis: &[Complex<T>], sigma: &[f64]) -> f64 {
    ks.iter()
        .map(|&k| {
            let a = c64(vis[k]).norm_sqr();
            sigma[k] * sigma[k] / a
        })
        .sum::<f64>()
        .sqrt()
}
