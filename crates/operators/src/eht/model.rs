//! The closure forward model `image -> [closure phases, log closure amplitudes, total flux]`
//! and synthetic observations.

use ndarray::{Array1, Array2, ArrayView1, ArrayView2, Axis, Zip};
use num_complex::Complex;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};

use super::array::{eht2017, ObservationConfig, Source, Station, UvCoverage};
use super::closure::{cphase_of, logcamp_of, ClosureSet};
use super::vis::{ImageGrid, PixelResponse, VisibilityOperator};
use crate::{check_batch, Differentiable, ForwardModel, LinearOperator, OperatorError, Result};

/// Everything that defines the black-hole problem. `Default` is the EHT 2017 M87* setting of
/// `docs/operators-eht.md`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct EhtConfig {
    /// The array ([`eht2017`] by default).
    pub stations: Vec<Station>,
    /// The source ([`Source::m87`] by default).
    pub source: Source,
    /// Date, track, cadence, elevation cut, frequency, bandwidth, integration time.
    pub observation: ObservationConfig,
    /// Image grid (64 x 64 over 160 uas by default).
    pub grid: ImageGrid,
    /// Pixel response (triangle by default).
    pub pulse: PixelResponse,
    /// Jansky per image unit: the thermal noise in image units is `sigma_Jy / jy_per_unit`. The
    /// references scale each target so that its peak pixel is 1 and divide the noise by the
    /// peak in Jy; the default 0.005 Jy is the peak pixel of a ~0.6 Jy, 40 uas ring at 2.5 uas
    /// pixels.
    pub jy_per_unit: f64,
    /// The model input `x` is mapped to the image `(x + input_shift) * input_scale` before the
    /// transform (the references map prior samples in `[-1, 1]` with shift 1, scale 0.5).
    /// Default: identity (0, 1).
    pub input_shift: f32,
    /// See [`input_shift`](Self::input_shift).
    pub input_scale: f32,
}

impl Default for EhtConfig {
    fn default() -> Self {
        Self {
            stations: eht2017(),
            source: Source::m87(),
            observation: ObservationConfig::default(),
            grid: ImageGrid::default(),
            pulse: PixelResponse::default(),
            jy_per_unit: 0.005,
            input_shift: 0.0,
            input_scale: 1.0,
        }
    }
}

impl EhtConfig {
    /// The default setting with the reference's input map `(x + 1) / 2` from the prior's
    /// `[-1, 1]` range to `[0, 1]` image units.
    pub fn reference() -> Self {
        Self {
            input_shift: 1.0,
            input_scale: 0.5,
            ..Self::default()
        }
    }
}

/// Thermal noise added to the visibilities of a synthetic observation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum VisNoise {
    /// No noise: closure quantities of the true image (the sigmas are still computed).
    None,
    /// `V + sigma (n_re + i n_im)`, `n ~ N(0, 1)` per component (the reference's `vis_thermal`).
    Thermal,
}

/// A synthetic observation: noisy visibilities and the closure data derived from them.
#[derive(Debug, Clone, PartialEq)]
pub struct EhtData {
    /// Observed complex visibilities (image units).
    pub vis: Vec<Complex<f64>>,
    /// Their per-component thermal noise (image units).
    pub vis_sigma: Vec<f64>,
    /// Closure phases, radians.
    pub cphase: Vec<f64>,
    /// Closure-phase uncertainties, radians.
    pub cphase_sigma: Vec<f64>,
    /// Log closure amplitudes.
    pub logcamp: Vec<f64>,
    /// Log-closure-amplitude uncertainties.
    pub logcamp_sigma: Vec<f64>,
    /// Total flux of the true image (image units), known without noise as in the references.
    pub flux: f64,
}

impl EhtData {
    /// The measurement vector `[cphase, logcamp, flux]` in the layout of [`ClosureForward`].
    pub fn measurement(&self) -> Array1<f32> {
        self.cphase
            .iter()
            .chain(&self.logcamp)
            .chain(std::iter::once(&self.flux))
            .map(|&v| v as f32)
            .collect()
    }
}

/// The black-hole forward model of EnKG section 5.3: an `n x n` image (row of `n^2`, shape
/// `(1, n, n)`) to the measurement vector
///
/// ```text
/// y = [psi_0 .. psi_{P-1} | lca_0 .. lca_{Q-1} | F]
/// ```
///
/// with the closure phases `psi` (radians, `(-pi, pi]`) of [`ClosureSet::triangles`], the log
/// closure amplitudes `lca` of [`ClosureSet::quadrangles`] (both scan by scan) and the total
/// flux `F = sum_p I_p`. Length `P + Q + 1`.
///
/// Visibilities come from the [`VisibilityOperator`]; closure quantities are formed in `f64`.
/// A visibility of exactly zero amplitude makes a log closure amplitude infinite; that row fails
/// with [`OperatorError::SampleFailed`].
#[derive(Debug, Clone)]
pub struct ClosureForward {
    coverage: UvCoverage,
    vis: VisibilityOperator,
    closures: ClosureSet,
    vis_sigma: Vec<f64>,
    shift: f32,
    scale: f32,
}

impl ClosureForward {
    /// Build coverage, DFT matrix and closure sets for `cfg`.
    pub fn new(cfg: &EhtConfig) -> Result<Self> {
        if !(cfg.jy_per_unit.is_finite() && cfg.jy_per_unit > 0.0) {
            return Err(OperatorError::InvalidParameter {
                name: "jy_per_unit",
                reason: format!("must be finite and > 0, got {}", cfg.jy_per_unit),
            });
        }
        if !(cfg.input_shift.is_finite() && cfg.input_scale.is_finite() && cfg.input_scale != 0.0) {
            return Err(OperatorError::InvalidParameter {
                name: "input_scale",
                reason: "input shift and scale must be finite, scale non-zero".into(),
            });
        }
        let coverage = UvCoverage::new(
            cfg.stations.clone(),
            cfg.source.clone(),
            cfg.observation.clone(),
        )?;
        let vis = VisibilityOperator::new(&coverage, cfg.grid, cfg.pulse)?;
        let closures = ClosureSet::minimal(&coverage)?;
        let vis_sigma = coverage
            .points
            .iter()
            .map(|p| p.sigma_jy / cfg.jy_per_unit)
            .collect();
        Ok(Self {
            coverage,
            vis,
            closures,
            vis_sigma,
            shift: cfg.input_shift,
            scale: cfg.input_scale,
        })
    }

    /// The (u, v) coverage.
    pub fn coverage(&self) -> &UvCoverage {
        &self.coverage
    }
    /// The linear visibility operator (acting on images, i.e. after the input map).
    pub fn visibility_operator(&self) -> &VisibilityOperator {
        &self.vis
    }
    /// The closure triangles and quadrangles.
    pub fn closure_set(&self) -> &ClosureSet {
        &self.closures
    }
    /// Per-visibility thermal noise in image units.
    pub fn vis_sigma(&self) -> &[f64] {
        &self.vis_sigma
    }
    /// Number of closure phases `P`.
    pub fn n_cphase(&self) -> usize {
        self.closures.n_cphase()
    }
    /// Number of log closure amplitudes `Q`.
    pub fn n_logcamp(&self) -> usize {
        self.closures.n_logcamp()
    }

    /// Where each group sits in the measurement vector: closure phases, log closure
    /// amplitudes, and the index of the total flux.
    pub fn layout(&self) -> (std::ops::Range<usize>, std::ops::Range<usize>, usize) {
        let (p, q) = (self.n_cphase(), self.n_logcamp());
        (0..p, p..p + q, p + q)
    }

    /// The images `(x + shift) * scale` of a batch of model inputs.
    pub fn to_image(&self, x: ArrayView2<'_, f32>) -> Array2<f32> {
        let (s, c) = (self.shift, self.scale);
        x.mapv(|v| (v + s) * c)
    }

    /// Complex visibilities (image units) of a batch of model inputs, `(N, K)`.
    pub fn visibilities(&self, x: ArrayView2<'_, f32>) -> Result<Array2<Complex<f32>>> {
        check_batch(x, self.vis.grid().npix.pow(2), "closure forward input")?;
        self.vis.visibilities(self.to_image(x).view())
    }

    /// Closure data of one model input, with thermal noise `noise` drawn from a ChaCha8 stream
    /// seeded with `seed` (real then imaginary part, visibility by visibility).
    pub fn simulate(&self, x: ArrayView1<'_, f32>, noise: VisNoise, seed: u64) -> Result<EhtData> {
        let x2 = x.insert_axis(Axis(0));
        let img = {
            check_batch(x2, self.vis.grid().npix.pow(2), "simulated image")?;
            self.to_image(x2)
        };
        let v = self.vis.visibilities(img.view())?;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let vis: Vec<Complex<f64>> = v
            .row(0)
            .iter()
            .zip(&self.vis_sigma)
            .map(|(z, &s)| {
                let z = Complex::new(z.re as f64, z.im as f64);
                match noise {
                    VisNoise::None => z,
                    VisNoise::Thermal => {
                        let nr: f64 = StandardNormal.sample(&mut rng);
                        let ni: f64 = StandardNormal.sample(&mut rng);
                        z + Complex::new(nr, ni) * s
                    }
                }
            })
            .collect();
        let cphase = self.closures.closure_phases(&vis)?;
        let logcamp = self.closures.log_closure_amplitudes(&vis)?;
        let cphase_sigma = self.closures.closure_phase_sigmas(&vis, &self.vis_sigma)?;
        let logcamp_sigma = self
            .closures
            .log_closure_amplitude_sigmas(&vis, &self.vis_sigma)?;
        if logcamp
            .iter()
            .chain(&logcamp_sigma)
            .chain(&cphase_sigma)
            .any(|v| !v.is_finite())
        {
            return Err(OperatorError::SampleFailed {
                row: 0,
                reason: "a simulated visibility has zero amplitude".into(),
            });
        }
        let flux = img.iter().map(|&p| p as f64).sum();
        Ok(EhtData {
            vis,
            vis_sigma: self.vis_sigma.clone(),
            cphase,
            cphase_sigma,
            logcamp,
            logcamp_sigma,
            flux,
        })
    }
}

impl ForwardModel for ClosureForward {
    fn as_differentiable(&self) -> Option<&dyn crate::Differentiable> {
        Some(self)
    }
    fn input_shape(&self) -> Vec<usize> {
        self.vis.input_shape()
    }
    fn output_shape(&self) -> Vec<usize> {
        vec![self.n_cphase() + self.n_logcamp() + 1]
    }
    fn forward(&self, x: ArrayView2<'_, f32>) -> Result<Array2<f32>> {
        let d = self.vis.grid().npix.pow(2);
        check_batch(x, d, "closure forward input")?;
        let img = self.to_image(x);
        let vri = self.vis.forward(img.view())?;
        let k = self.vis.n_vis();
        let (p, q) = (self.n_cphase(), self.n_logcamp());
        let mut y = Array2::<f32>::zeros((x.nrows(), p + q + 1));
        let mut bad = Array1::<Option<usize>>::from_elem(x.nrows(), None);
        Zip::from(y.rows_mut())
            .and(vri.rows())
            .and(img.rows())
            .and(&mut bad)
            .par_for_each(|mut yr, vr, ir, bad| {
                let vis: Vec<Complex<f32>> =
                    (0..k).map(|j| Complex::new(vr[j], vr[k + j])).collect();
                for (o, t) in yr.iter_mut().zip(self.closures.triangles()) {
                    *o = cphase_of(t, &vis) as f32;
                }
                for (j, qd) in self.closures.quadrangles().iter().enumerate() {
                    let l = logcamp_of(qd, &vis);
                    if !l.is_finite() && bad.is_none() {
                        *bad = Some(j);
                    }
                    yr[p + j] = l as f32;
                }
                yr[p + q] = ir.iter().map(|&v| v as f64).sum::<f64>() as f32;
            });
        if let Some((row, j)) = bad.iter().enumerate().find_map(|(i, b)| b.map(|j| (i, j))) {
            let qd = &self.closures.quadrangles()[j];
            let names = |s: usize| self.coverage.stations[s].name.as_str();
            return Err(OperatorError::SampleFailed {
                row,
                reason: format!(
                    "zero visibility amplitude in log closure amplitude {j} (scan {}, stations {}-{}-{}-{})",
                    qd.scan,
                    names(qd.stations[0]),
                    names(qd.stations[1]),
                    names(qd.stations[2]),
                    names(qd.stations[3])
                ),
            });
        }
        Ok(y)
    }
}

impl ClosureForward {
    /// The error for a zero-amplitude visibility `k` of `row`.
    fn zero_vis(&self, row: usize, k: usize) -> OperatorError {
        let p = &self.coverage.points[k];
        OperatorError::SampleFailed {
            row,
            reason: format!(
                "zero visibility amplitude on {}-{} (scan {})",
                self.coverage.stations[p.st1].name, self.coverage.stations[p.st2].name, p.scan
            ),
        }
    }
}

/// Vector-Jacobian product through the visibilities. With `V_k = a_k + i b_k`,
/// `d arg V / d(a, b) = (-b, a) / |V|^2` and `d ln|V| / d(a, b) = (a, b) / |V|^2`; a closure
/// phase adds `+-` these over its three visibilities (`-` where conjugated), a log closure
/// amplitude `+` over its numerator and `-` over its denominator. The visibility cotangent
/// `[c_re, c_im]` is pulled back with the exact adjoint `Re(A)^T c_re + Im(A)^T c_im`; the flux
/// row adds `v_F` to every pixel; the input map multiplies by `input_scale`.
///
/// Cost: one forward and one adjoint visibility transform (`8 K n^2` flops per image) plus
/// `O(P + Q)` for the closure Jacobians.
impl Differentiable for ClosureForward {
    fn vjp(&self, x: ArrayView2<'_, f32>, v: ArrayView2<'_, f32>) -> Result<Array2<f32>> {
        let d = self.vis.grid().npix.pow(2);
        check_batch(x, d, "vjp point")?;
        if v.nrows() != x.nrows() {
            return Err(OperatorError::Rows {
                what: "vjp cotangent",
                expected: x.nrows(),
                got: v.nrows(),
            });
        }
        let (p, q) = (self.n_cphase(), self.n_logcamp());
        check_batch(v, p + q + 1, "vjp cotangent")?;
        let img = self.to_image(x);
        let vri = self.vis.forward(img.view())?;
        let k = self.vis.n_vis();
        let mut cot = Array2::<f32>::zeros((x.nrows(), 2 * k));
        let mut bad = Array1::<Option<usize>>::from_elem(x.nrows(), None);
        Zip::from(cot.rows_mut())
            .and(vri.rows())
            .and(v.rows())
            .and(&mut bad)
            .par_for_each(|mut cr, vr, wr, bad| {
                let mut c = vec![0.0f64; 2 * k];
                let mut add = |j: usize, w: f64, phase: bool| {
                    let (a, b) = (vr[j] as f64, vr[k + j] as f64);
                    let n2 = a * a + b * b;
                    if n2 == 0.0 {
                        if bad.is_none() {
                            *bad = Some(j);
                        }
                        return;
                    }
                    if phase {
                        c[j] -= w * b / n2;
                        c[k + j] += w * a / n2;
                    } else {
                        c[j] += w * a / n2;
                        c[k + j] += w * b / n2;
                    }
                };
                for (t, &w) in self.closures.triangles().iter().zip(wr.iter()) {
                    for m in 0..3 {
                        let s = if t.conj[m] { -1.0 } else { 1.0 };
                        add(t.vis[m], s * w as f64, true);
                    }
                }
                for (qd, &w) in self.closures.quadrangles().iter().zip(wr.iter().skip(p)) {
                    for m in 0..4 {
                        let s = if m < 2 { 1.0 } else { -1.0 };
                        add(qd.vis[m], s * w as f64, false);
                    }
                }
                for (o, ci) in cr.iter_mut().zip(&c) {
                    *o = *ci as f32;
                }
            });
        if let Some((row, j)) = bad.iter().enumerate().find_map(|(i, b)| b.map(|j| (i, j))) {
            return Err(self.zero_vis(row, j));
        }
        let mut g = self.vis.adjoint(cot.view())?;
        let scale = self.scale;
        Zip::from(g.rows_mut())
            .and(v.column(p + q))
            .for_each(|mut gr, &vf| {
                gr.mapv_inplace(|e| (e + vf) * scale);
            });
        Ok(g)
    }
}
