//! The pseudo-spectral vorticity solver.
//!
//! Equations, on the torus `[0, 2 pi)^2` with `x` along axis 0 and `y` along axis 1:
//!
//! ```text
//! w_t + u . grad w = (1/Re) Lap w + f,      u = (psi_y, -psi_x),      -Lap psi = w,
//! ```
//!
//! In Fourier space, with `G(k) = k1^2 + k2^2` and the nonlinear term
//! `N(w) = -i k1 F[q w] - i k2 F[v w] + F[f]`, `q = psi_y`, `v = -psi_x` computed from the
//! 2/3-dealiased vorticity, one step of size `dt` is Heun's method for `N` combined with
//! Crank-Nicolson for the viscous term (the scheme of devzhk/enkg-pytorch
//! `inverse_problems/navier_stokes.py`, itself the PINO/FNO solver):
//!
//! ```text
//! a         = dt G / (2 Re)
//! w_tilde   = (w_n + dt N(w_n) - a w_n) / (1 + a)
//! w_{n+1}   = (w_n + dt (N(w_n) + N(w_tilde)) / 2 - a w_n) / (1 + a)
//! ```
//!
//! Time step (CFL, recomputed at every step in the adaptive modes) with `h = 1/max(H, W)`:
//! `dt = min(0.5 h / max|u|, 0.5 h^2 Re / xi)`, `xi = sqrt(max|f|)` (1 when unforced), where
//! `u` is the velocity of the 2/3-dealiased `w_n` that the first Heun stage computes for
//! `N(w_n)` anyway (so the step costs no extra FFT); the last step is shortened to land on
//! `T` exactly.
//!
//! Cost per step: two evaluations of `N` (5 real 2-D FFTs each: `w`, `q`, `v` back to the
//! grid, `q w` and `v w` forward): 10 FFTs of `H x W`, about `10 * 2.5 * H W log2(H W)` flops
//! (1.2 MFLOP at 64x64, 5.7 MFLOP at 128x128). Around them: per evaluation one transpose pass
//! per transform (see [`super::spectral`]) and one pointwise pass on the grid (products, and
//! the CFL maximum in stage 1); per step two fused passes over the modes (the Heun/CN updates,
//! which also write the three multiplied spectra that the next evaluation transforms). The hot
//! passes take their written buffers as `&mut` arguments (so the compiler knows they do not
//! alias and vectorises them) and have copies compiled for AVX2, chosen at run time; without
//! FMA the arithmetic, and so the results, are the same on both paths (tested).

use std::sync::Mutex;

use diffinv_fft::fftfreq;
use ndarray::{Array3, ArrayView3};
use num_complex::Complex;
use rayon::prelude::*;

use super::float::NsFloat;
use super::spectral::{Fft2, FftScratch};
use crate::{OperatorError, Result};

/// How the time step is chosen.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TimeStep {
    /// CFL step per sample, recomputed after every step (default). Each sample's result is
    /// independent of the rest of the batch.
    Adaptive,
    /// CFL step from the fastest sample of the batch, shared by all samples, as the reference
    /// does (`torch.max` over the whole batch). Results then depend on the batch.
    AdaptiveBatchMin,
    /// A fixed step (the reference's `adaptive=False`, `delta_t`).
    Fixed(f64),
}

/// The body force `f` of the vorticity equation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Forcing {
    /// No forcing.
    None,
    /// Kolmogorov forcing `f(x, y) = -amplitude * cos(wavenumber * y)`, `y` along axis 1
    /// (the reference: `-4 cos(4 y)` with `y` the second `meshgrid(..., indexing='ij')` output).
    Kolmogorov {
        /// Amplitude (4 in the reference).
        amplitude: f64,
        /// Wavenumber (4 in the reference).
        wavenumber: f64,
    },
}

/// Parameters of a solve.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NsConfig {
    /// Reynolds number `Re` (viscosity `1/Re`). Default 200 (EnKG/InverseBench).
    pub re: f64,
    /// Final time `T`. Default 1.0 (EnKG/InverseBench `forward_time`).
    pub t_final: f64,
    /// Time-step rule. Default [`TimeStep::Adaptive`].
    pub time_step: TimeStep,
    /// Forcing. Default Kolmogorov `-4 cos(4 y)`.
    pub forcing: Forcing,
    /// A sample needing more steps than this fails (guards against a collapsing CFL step).
    pub max_steps: usize,
}

impl Default for NsConfig {
    fn default() -> Self {
        Self {
            re: 200.0,
            t_final: 1.0,
            time_step: TimeStep::Adaptive,
            forcing: Forcing::Kolmogorov {
                amplitude: 4.0,
                wavenumber: 4.0,
            },
            max_steps: 200_000,
        }
    }
}

/// What one successful solve did.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct SolveStats {
    /// Number of time steps taken.
    pub steps: usize,
    /// Smallest step used (the last, shortened step excluded unless it is the only one).
    pub dt_min: f64,
    /// Largest step used.
    pub dt_max: f64,
}

/// Outcome of one sample of a batch: its step statistics or why it failed.
pub type SampleResult = std::result::Result<SolveStats, String>;

/// Per-sample state and work buffers (allocated once, reused through a pool).
///
/// Between steps, `spec3` already holds the three multiplied spectra of `w_n`
/// (`c_w w`, `i c_q w`, `-i c_v w`): the pass that produces `w_n` writes them, so the next
/// evaluation of `N` starts with its inverse transforms.
struct Workspace<T: NsFloat> {
    /// The current spectrum `w_n` (column-major half spectrum, `n = H (W/2+1)` modes).
    w_h: Vec<Complex<T>>,
    /// `N(w_n)`, kept for the second Heun stage.
    n1: Vec<Complex<T>>,
    /// `1 / (1 + dt G / (2 Re))` per mode for the current step.
    inv_den: Vec<T>,
    /// Inputs of the three inverse transforms of `N` (3 spectra; consumed by the transforms).
    spec3: Vec<Complex<T>>,
    /// `w_d`, `q`, `v` on the grid (packed layout), then `q w_d`, `v w_d` in place.
    grid3: Vec<Complex<T>>,
    /// `2 F[q w_d]`, `2 F[v w_d]`.
    spec2: Vec<Complex<T>>,
    fft: FftScratch<T>,
}

/// The solver for one grid size and configuration: FFT plans, wavenumber tables, the forcing
/// spectrum and a pool of per-thread workspaces (no allocation inside the time loop).
pub struct NsSolver<T: NsFloat> {
    fft: Fft2<T>,
    cfg: NsConfig,
    /// Half the derivative wavenumber along axis 0 per mode (column-major, Nyquist set to 0);
    /// the half undoes the factor 2 of [`Fft2::forward_packed`].
    k1: Vec<T>,
    /// Half the derivative wavenumber along axis 1 per mode (Nyquist set to 0).
    k2: Vec<T>,
    /// `G / Re` per mode (column-major).
    gg: Vec<T>,
    /// Per-mode multipliers of the three inverse transforms of the nonlinear term, with the
    /// 2/3-rule mask (`k1^2 + k2^2 <= (H/3)^2 + (W/3)^2`, mean mode removed) and the inverse
    /// FFT's `1 / (H W)` folded in: `w_d = c_w w`, `q = i c_q w`, `v = -i c_v w`, where
    /// `c_q = k2 / G`, `c_v = k1 / G` on the kept modes.
    c_w: Vec<T>,
    c_q: Vec<T>,
    c_v: Vec<T>,
    /// Spectrum of the forcing (zeros when unforced).
    f_h: Vec<Complex<T>>,
    /// `sqrt(max |f|)` (1 when unforced).
    xi: f64,
    pool: Mutex<Vec<Workspace<T>>>,
    /// Whether the CPU has AVX2: the pointwise passes then run in copies compiled for it
    /// (wider vectors; no FMA, so the arithmetic and the results are the same).
    avx2: bool,
}

impl<T: NsFloat> std::fmt::Debug for NsSolver<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NsSolver")
            .field("h", &self.fft.h)
            .field("w", &self.fft.w)
            .field("type", &T::NAME)
            .field("cfg", &self.cfg)
            .finish()
    }
}

enum StepError {
    NonFinite,
}

/// `max (q^2 + v^2)` over a grid in the packed layout (both parts of every complex value
/// are grid values), in 8 independent lanes (vectorisable selects); `s * 0` is 0 for a finite
/// `s` and NaN for an infinite or NaN one, so `chk` flags both.
#[inline(always)]
fn max_speed2<T: NsFloat>(q: &[Complex<T>], v: &[Complex<T>]) -> std::result::Result<T, StepError> {
    let zero = T::zero();
    let mut lanes = [zero; 8];
    let mut chk = [zero; 8];
    let mut acc = |l: usize, s2: T| {
        lanes[l] = if s2 > lanes[l] { s2 } else { lanes[l] };
        chk[l] = chk[l] + s2 * zero;
    };
    for (q4, v4) in q.chunks_exact(4).zip(v.chunks_exact(4)) {
        for l in 0..4 {
            acc(2 * l, q4[l].re * q4[l].re + v4[l].re * v4[l].re);
            acc(2 * l + 1, q4[l].im * q4[l].im + v4[l].im * v4[l].im);
        }
    }
    let n4 = q.len() / 4 * 4;
    for (q, v) in q[n4..].iter().zip(&v[n4..]) {
        acc(0, q.re * q.re + v.re * v.re);
        acc(1, q.im * q.im + v.im * v.im);
    }
    if chk.iter().any(|c| *c != zero) {
        return Err(StepError::NonFinite);
    }
    Ok(lanes.iter().fold(zero, |m, &x| if x > m { x } else { m }))
}

impl<T: NsFloat> NsSolver<T> {
    /// Build a solver for an `h x w` grid (both even, at least 4).
    pub fn new(h: usize, w: usize, cfg: NsConfig) -> Result<Self> {
        if h < 4 || w < 4 || !h.is_multiple_of(2) || !w.is_multiple_of(2) {
            return Err(OperatorError::InvalidParameter {
                name: "resolution",
                reason: format!("grid must be even and at least 4 in each axis, got {h} x {w}"),
            });
        }
        if !(cfg.re.is_finite() && cfg.re > 0.0) {
            return Err(OperatorError::InvalidParameter {
                name: "re",
                reason: format!("must be positive, got {}", cfg.re),
            });
        }
        if !(cfg.t_final.is_finite() && cfg.t_final >= 0.0) {
            return Err(OperatorError::InvalidParameter {
                name: "t_final",
                reason: format!("must be finite and non-negative, got {}", cfg.t_final),
            });
        }
        if let TimeStep::Fixed(dt) = cfg.time_step {
            if !(dt.is_finite() && dt > 0.0) {
                return Err(OperatorError::InvalidParameter {
                    name: "dt",
                    reason: format!("must be positive, got {dt}"),
                });
            }
        }
        if let Forcing::Kolmogorov {
            amplitude,
            wavenumber,
        } = cfg.forcing
        {
            if !(amplitude.is_finite() && wavenumber.is_finite()) {
                return Err(OperatorError::InvalidParameter {
                    name: "forcing",
                    reason: "non-finite parameters".into(),
                });
            }
        }
        if cfg.max_steps == 0 {
            return Err(OperatorError::InvalidParameter {
                name: "max_steps",
                reason: "must be at least 1".into(),
            });
        }
        let fft = Fft2::<T>::new(h, w);
        let wc = fft.wc;
        let n = h * wc;
        let scale = 1.0 / (h * w) as f64;
        let mut k1 = vec![T::zero(); n];
        let mut k2 = vec![T::zero(); n];
        let mut gg = vec![T::zero(); n];
        let mut c_w = vec![T::zero(); n];
        let mut c_q = vec![T::zero(); n];
        let mut c_v = vec![T::zero(); n];
        let cut = (h as f64 / 3.0).powi(2) + (w as f64 / 3.0).powi(2);
        for j in 0..wc {
            for i in 0..h {
                let k1f = fftfreq(i, h) as f64;
                let k2f = j as f64;
                // Derivative wavenumbers: the Nyquist modes are set to 0.
                let k1d = if i == h / 2 { 0.0 } else { k1f };
                let k2d = if j == w / 2 { 0.0 } else { k2f };
                let g = k1f * k1f + k2f * k2f;
                let m = j * h + i;
                let inv_lap = if m == 0 { 1.0 } else { 1.0 / g };
                let keep = if m != 0 && g <= cut { 1.0 } else { 0.0 };
                k1[m] = T::lit(0.5 * k1d);
                k2[m] = T::lit(0.5 * k2d);
                gg[m] = T::lit(g) / T::lit(cfg.re);
                c_w[m] = T::lit(keep * scale);
                c_q[m] = T::lit(keep * k2d * inv_lap * scale);
                c_v[m] = T::lit(keep * k1d * inv_lap * scale);
            }
        }
        let (f_h, xi) = match cfg.forcing {
            Forcing::None => (vec![Complex::new(T::zero(), T::zero()); n], 1.0),
            Forcing::Kolmogorov {
                amplitude,
                wavenumber,
            } => {
                let mut f = vec![T::zero(); h * w];
                let mut fmax = 0.0f64;
                for i in 0..h {
                    for j in 0..w {
                        let y = 2.0 * std::f64::consts::PI * j as f64 / w as f64;
                        let v = T::lit(-amplitude * (wavenumber * y).cos());
                        fmax = fmax.max(v.as_f64().abs());
                        f[i * w + j] = v;
                    }
                }
                let mut s = fft.scratch();
                let mut spec = vec![Complex::new(T::zero(), T::zero()); n];
                fft.rfft2(&f, &mut spec, &mut s);
                (spec, if fmax > 0.0 { fmax.sqrt() } else { 1.0 })
            }
        };
        Ok(Self {
            fft,
            cfg,
            k1,
            k2,
            gg,
            c_w,
            c_q,
            c_v,
            f_h,
            xi,
            pool: Mutex::new(Vec::new()),
            avx2: super::spectral::has_avx2(),
        })
    }

    /// Grid rows.
    pub fn h(&self) -> usize {
        self.fft.h
    }
    /// Grid columns.
    pub fn w(&self) -> usize {
        self.fft.w
    }
    /// The configuration.
    pub fn config(&self) -> &NsConfig {
        &self.cfg
    }

    fn take_workspace(&self) -> Workspace<T> {
        let popped = self.pool.lock().ok().and_then(|mut p| p.pop());
        popped.unwrap_or_else(|| {
            let n = self.fft.spec_len();
            let z = Complex::new(T::zero(), T::zero());
            Workspace {
                w_h: vec![z; n],
                n1: vec![z; n],
                inv_den: vec![T::zero(); n],
                spec3: vec![z; 3 * n],
                grid3: vec![z; 3 * self.fft.packed_len()],
                spec2: vec![z; 2 * n],
                fft: self.fft.scratch(),
            }
        })
    }

    fn give_workspace(&self, ws: Workspace<T>) {
        if let Ok(mut p) = self.pool.lock() {
            p.push(ws);
        }
    }

    /// The transforms of `N`: from the multiplied spectra in `ws.spec3` (consumed) to
    /// `ws.spec2 = (2 F[q w_d], 2 F[v w_d])`: 3 inverse and 2 forward real 2-D FFTs and one
    /// pointwise pass on the grid, which also returns `max |u|^2` of the dealiased velocity
    /// when `with_speed` (or an error if it is not finite).
    fn transforms(
        &self,
        ws: &mut Workspace<T>,
        with_speed: bool,
    ) -> std::result::Result<T, StepError> {
        let Workspace {
            spec3,
            grid3,
            spec2,
            fft: s,
            ..
        } = ws;
        self.fft.inverse_packed(spec3, grid3, s);
        let pl = self.fft.packed_len();
        let (wd, qv) = grid3.split_at_mut(pl);
        let (q, v) = qv.split_at_mut(pl);
        let speed2 = self.products(wd, q, v, with_speed)?;
        self.fft.forward_packed(qv, spec2, s);
        Ok(speed2)
    }

    /// `q *= w_d`, `v *= w_d` on the grid (the packed layout is a permutation of the grid, so
    /// the products are componentwise), after `max |u|^2 = max (q^2 + v^2)` when `with_speed`.
    #[inline(never)]
    fn products(
        &self,
        wd: &[Complex<T>],
        q: &mut [Complex<T>],
        v: &mut [Complex<T>],
        with_speed: bool,
    ) -> std::result::Result<T, StepError> {
        #[cfg(target_arch = "x86_64")]
        if self.avx2 {
            // SAFETY: AVX2 support was detected at run time when `self` was built.
            return unsafe { Self::products_avx2(wd, q, v, with_speed) };
        }
        Self::products_body(wd, q, v, with_speed)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    #[inline(never)]
    fn products_avx2(
        wd: &[Complex<T>],
        q: &mut [Complex<T>],
        v: &mut [Complex<T>],
        with_speed: bool,
    ) -> std::result::Result<T, StepError> {
        Self::products_body(wd, q, v, with_speed)
    }

    #[inline(always)]
    fn products_body(
        wd: &[Complex<T>],
        q: &mut [Complex<T>],
        v: &mut [Complex<T>],
        with_speed: bool,
    ) -> std::result::Result<T, StepError> {
        let speed2 = if with_speed {
            max_speed2(q, v)?
        } else {
            T::zero()
        };
        for ((q, v), &w) in q.iter_mut().zip(v.iter_mut()).zip(wd.iter()) {
            *q = Complex::new(q.re * w.re, q.im * w.im);
            *v = Complex::new(v.re * w.re, v.im * w.im);
        }
        Ok(speed2)
    }

    /// Write the three multiplied spectra of `ws.w_h` (`c_w w`, `i c_q w`, `-i c_v w`) into
    /// `ws.spec3`.
    fn spread(&self, ws: &mut Workspace<T>) {
        let n = self.fft.spec_len();
        let (s0, rest) = ws.spec3.split_at_mut(n);
        let (s1, s2) = rest.split_at_mut(n);
        let s2 = &mut s2[..n];
        let (cw, cq, cv) = (&self.c_w[..n], &self.c_q[..n], &self.c_v[..n]);
        let w_h = &ws.w_h[..n];
        for m in 0..n {
            let w = w_h[m];
            s0[m] = w * cw[m];
            s1[m] = Complex::new(-w.im * cq[m], w.re * cq[m]);
            s2[m] = Complex::new(w.im * cv[m], -w.re * cv[m]);
        }
    }

    /// CFL step from the squared maximum speed `max |u|^2` of the dealiased velocity:
    /// `dt = min(0.5 h / max|u|, 0.5 h^2 Re / xi)`, `h = 1 / max(H, W)`.
    fn cfl_dt(&self, max2: T) -> f64 {
        let hh = 1.0 / (self.fft.h.max(self.fft.w) as f64);
        let mu = self.xi / self.cfg.re;
        let dt_visc = 0.5 * hh * hh / mu;
        let speed = max2.sqrt().as_f64();
        if speed == 0.0 {
            dt_visc
        } else {
            (0.5 * hh / speed).min(dt_visc)
        }
    }

    /// First half of a step: the transforms of `N(w_n)` (from the spectra `ws.spec3` of
    /// `w_n`). Returns `max |u|^2` of the dealiased velocity that `N` computes anyway (the CFL
    /// speed; when `with_speed`), or an error if it is not finite. Needs no `dt`.
    fn stage1(&self, ws: &mut Workspace<T>, with_speed: bool) -> std::result::Result<T, StepError> {
        self.transforms(ws, with_speed)
    }

    /// Second half of a Heun/Crank-Nicolson step of size `dt` on `ws.w_h`, after
    /// [`Self::stage1`]. Two fused passes over the modes:
    ///
    /// 1. `N(w_n)` from the transforms, `w~ = (w_n + dt N(w_n) - a w_n) / (1 + a)` and the
    ///    three multiplied spectra of `w~` (`w~` itself is never stored);
    /// 2. after the transforms of `N(w~)`:
    ///    `w_{n+1} = (w_n + dt (N(w_n) + N(w~))/2 - a w_n) / (1 + a)`, its finiteness, and the
    ///    multiplied spectra of `w_{n+1}` for the next step.
    fn finish_step(&self, ws: &mut Workspace<T>, dt: f64) -> std::result::Result<(), StepError> {
        let n = self.fft.spec_len();
        {
            let Workspace {
                w_h,
                n1,
                inv_den,
                spec3,
                spec2,
                ..
            } = &mut *ws;
            let (fa, fb) = spec2.split_at(n);
            let (s0, rest) = spec3.split_at_mut(n);
            let (s1, s2) = rest.split_at_mut(n);
            self.heun_stage1(dt, w_h, fa, fb, n1, inv_den, [s0, s1, s2]);
        }
        self.transforms(ws, false)?;
        let Workspace {
            w_h,
            n1,
            inv_den,
            spec3,
            spec2,
            ..
        } = &mut *ws;
        let (fa, fb) = spec2.split_at(n);
        let (s0, rest) = spec3.split_at_mut(n);
        let (s1, s2) = rest.split_at_mut(n);
        if self.heun_stage2(dt, w_h, fa, fb, n1, inv_den, [s0, s1, s2]) {
            Ok(())
        } else {
            Err(StepError::NonFinite)
        }
    }

    /// Pass 1 of [`Self::finish_step`]. Every written buffer is its own `&mut` argument, so
    /// the compiler knows they do not alias and vectorises the loop.
    #[allow(clippy::too_many_arguments)]
    #[inline(never)]
    fn heun_stage1(
        &self,
        dt: f64,
        w_h: &[Complex<T>],
        fa: &[Complex<T>],
        fb: &[Complex<T>],
        n1: &mut [Complex<T>],
        inv_den: &mut [T],
        [s0, s1, s2]: [&mut [Complex<T>]; 3],
    ) {
        #[cfg(target_arch = "x86_64")]
        if self.avx2 {
            // SAFETY: AVX2 support was detected at run time when `self` was built.
            return unsafe { self.heun_stage1_avx2(dt, w_h, fa, fb, n1, inv_den, [s0, s1, s2]) };
        }
        self.heun_stage1_body(dt, w_h, fa, fb, n1, inv_den, [s0, s1, s2])
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    #[allow(clippy::too_many_arguments)]
    #[inline(never)]
    fn heun_stage1_avx2(
        &self,
        dt: f64,
        w_h: &[Complex<T>],
        fa: &[Complex<T>],
        fb: &[Complex<T>],
        n1: &mut [Complex<T>],
        inv_den: &mut [T],
        [s0, s1, s2]: [&mut [Complex<T>]; 3],
    ) {
        self.heun_stage1_body(dt, w_h, fa, fb, n1, inv_den, [s0, s1, s2])
    }

    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn heun_stage1_body(
        &self,
        dt: f64,
        w_h: &[Complex<T>],
        fa: &[Complex<T>],
        fb: &[Complex<T>],
        n1: &mut [Complex<T>],
        inv_den: &mut [T],
        [s0, s1, s2]: [&mut [Complex<T>]; 3],
    ) {
        let n = self.fft.spec_len();
        let dt_t = T::lit(dt);
        let hdt = T::lit(0.5) * dt_t;
        let one = T::one();
        let (k1, k2, gg, f_h) = (&self.k1[..n], &self.k2[..n], &self.gg[..n], &self.f_h[..n]);
        let (cw, cq, cv) = (&self.c_w[..n], &self.c_q[..n], &self.c_v[..n]);
        let (w_h, fa, fb) = (&w_h[..n], &fa[..n], &fb[..n]);
        let (n1, inv_den) = (&mut n1[..n], &mut inv_den[..n]);
        let (s0, s1, s2) = (&mut s0[..n], &mut s1[..n], &mut s2[..n]);
        for m in 0..n {
            // N = -i k1 F[q w] - i k2 F[v w] + F[f] (the k tables hold half the wavenumber:
            // `fa`, `fb` are twice the transforms).
            let (a, b, f) = (fa[m], fb[m], f_h[m]);
            let nn = Complex::new(
                a.im * k1[m] + b.im * k2[m] + f.re,
                f.im - a.re * k1[m] - b.re * k2[m],
            );
            n1[m] = nn;
            let g = gg[m];
            let inv = one / (one + hdt * g);
            inv_den[m] = inv;
            let wt = (w_h[m] * (one - hdt * g) + nn * dt_t) * inv;
            s0[m] = wt * cw[m];
            s1[m] = Complex::new(-wt.im * cq[m], wt.re * cq[m]);
            s2[m] = Complex::new(wt.im * cv[m], -wt.re * cv[m]);
        }
    }

    /// Pass 2 of [`Self::finish_step`]; returns whether `w_{n+1}` is finite.
    #[allow(clippy::too_many_arguments)]
    #[inline(never)]
    fn heun_stage2(
        &self,
        dt: f64,
        w_h: &mut [Complex<T>],
        fa: &[Complex<T>],
        fb: &[Complex<T>],
        n1: &[Complex<T>],
        inv_den: &[T],
        [s0, s1, s2]: [&mut [Complex<T>]; 3],
    ) -> bool {
        #[cfg(target_arch = "x86_64")]
        if self.avx2 {
            // SAFETY: AVX2 support was detected at run time when `self` was built.
            return unsafe { self.heun_stage2_avx2(dt, w_h, fa, fb, n1, inv_den, [s0, s1, s2]) };
        }
        self.heun_stage2_body(dt, w_h, fa, fb, n1, inv_den, [s0, s1, s2])
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    #[allow(clippy::too_many_arguments)]
    #[inline(never)]
    fn heun_stage2_avx2(
        &self,
        dt: f64,
        w_h: &mut [Complex<T>],
        fa: &[Complex<T>],
        fb: &[Complex<T>],
        n1: &[Complex<T>],
        inv_den: &[T],
        [s0, s1, s2]: [&mut [Complex<T>]; 3],
    ) -> bool {
        self.heun_stage2_body(dt, w_h, fa, fb, n1, inv_den, [s0, s1, s2])
    }

    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn heun_stage2_body(
        &self,
        dt: f64,
        w_h: &mut [Complex<T>],
        fa: &[Complex<T>],
        fb: &[Complex<T>],
        n1: &[Complex<T>],
        inv_den: &[T],
        [s0, s1, s2]: [&mut [Complex<T>]; 3],
    ) -> bool {
        let n = self.fft.spec_len();
        let hdt = T::lit(0.5) * T::lit(dt);
        let one = T::one();
        let zero = T::zero();
        let (k1, k2, gg, f_h) = (&self.k1[..n], &self.k2[..n], &self.gg[..n], &self.f_h[..n]);
        let (cw, cq, cv) = (&self.c_w[..n], &self.c_q[..n], &self.c_v[..n]);
        let (fa, fb, n1, inv_den) = (&fa[..n], &fb[..n], &n1[..n], &inv_den[..n]);
        let w_h = &mut w_h[..n];
        let (s0, s1, s2) = (&mut s0[..n], &mut s1[..n], &mut s2[..n]);
        // `x * 0` is 0 for finite `x` and NaN otherwise; a non-short-circuit `&` of the
        // comparisons is an integer reduction, which vectorises.
        let mut finite = true;
        for m in 0..n {
            let (a, b, f) = (fa[m], fb[m], f_h[m]);
            let nn = Complex::new(
                a.im * k1[m] + b.im * k2[m] + f.re,
                f.im - a.re * k1[m] - b.re * k2[m],
            );
            let g = gg[m];
            let nw = (w_h[m] * (one - hdt * g) + (n1[m] + nn) * hdt) * inv_den[m];
            finite &= (nw.re * zero == zero) & (nw.im * zero == zero);
            w_h[m] = nw;
            s0[m] = nw * cw[m];
            s1[m] = Complex::new(-nw.im * cq[m], nw.re * cq[m]);
            s2[m] = Complex::new(nw.im * cv[m], -nw.re * cv[m]);
        }
        finite
    }

    fn load(&self, ws: &mut Workspace<T>, w0: &[T]) {
        self.fft.rfft2(w0, &mut ws.w_h, &mut ws.fft);
        self.spread(ws);
    }

    fn store(&self, ws: &mut Workspace<T>, out: &mut [T]) {
        self.fft.irfft2(&ws.w_h, out, &mut ws.fft);
    }

    /// Solve one sample: `w0` is the `H * W` row-major initial vorticity, `out` receives the
    /// vorticity at `T`. Uses the configured step rule ([`TimeStep::AdaptiveBatchMin`] acts as
    /// [`TimeStep::Adaptive`] for a single sample). On failure returns the reason in words.
    pub fn solve_one(&self, w0: &[T], out: &mut [T]) -> SampleResult {
        mono::solve_one(self, w0, out)
    }

    fn solve_one_impl(&self, w0: &[T], out: &mut [T]) -> SampleResult {
        let n = self.fft.h * self.fft.w;
        if w0.len() != n || out.len() != n {
            return Err(format!(
                "expected {n} values, got {} in and {} out",
                w0.len(),
                out.len()
            ));
        }
        if let Some(p) = w0.iter().position(|v| !v.is_finite()) {
            return Err(format!("non-finite initial vorticity at grid index {p}"));
        }
        let mut ws = self.take_workspace();
        self.load(&mut ws, w0);
        let r = self.integrate(&mut ws);
        if r.is_ok() {
            self.store(&mut ws, out);
        }
        self.give_workspace(ws);
        r
    }

    fn integrate(&self, ws: &mut Workspace<T>) -> SampleResult {
        let t_end = self.cfg.t_final;
        let fixed = match self.cfg.time_step {
            TimeStep::Fixed(dt) => Some(dt),
            _ => None,
        };
        let mut time = 0.0f64;
        let mut stats = SolveStats {
            steps: 0,
            dt_min: f64::INFINITY,
            dt_max: 0.0,
        };
        while time < t_end {
            // The first Heun stage computes the dealiased velocity of w_n: its maximum gives
            // the CFL step of this step.
            let speed2 = self
                .stage1(ws, fixed.is_none())
                .map_err(|_| format!("velocity became non-finite at t = {time:.6}"))?;
            let dt = fixed.unwrap_or_else(|| self.cfl_dt(speed2));
            if stats.steps >= self.cfg.max_steps {
                return Err(format!(
                    "step limit {} reached at t = {time:.6} (CFL step {dt:.3e})",
                    self.cfg.max_steps
                ));
            }
            let cur = if time + dt > t_end { t_end - time } else { dt };
            self.finish_step(ws, cur)
                .map_err(|_| format!("vorticity became non-finite at t = {:.6}", time + cur))?;
            stats.steps += 1;
            stats.dt_max = stats.dt_max.max(cur);
            if cur == dt || stats.steps == 1 {
                stats.dt_min = stats.dt_min.min(cur);
            }
            time += cur;
        }
        if stats.steps == 0 {
            stats.dt_min = 0.0;
        }
        Ok(stats)
    }

    /// Solve a batch `(N, H, W)`, in parallel over samples with rayon. Returns the final
    /// vorticity `(N, H, W)` (rows of failed samples are NaN) and, per sample, its stats or
    /// the reason it failed. Results are bit-identical for any thread count.
    pub fn solve_batch(&self, w0: ArrayView3<'_, T>) -> Result<(Array3<T>, Vec<SampleResult>)> {
        let (nb, h, w) = w0.dim();
        if h != self.fft.h || w != self.fft.w {
            return Err(OperatorError::Shape {
                what: "initial vorticity grid",
                expected: self.fft.h * self.fft.w,
                got: h * w,
            });
        }
        let w0 = w0.as_standard_layout();
        let src = w0.as_slice().unwrap_or(&[]);
        let mut out = Array3::<T>::from_elem((nb, h, w), T::nan());
        let dst = out.as_slice_mut().unwrap_or(&mut []);
        let status = mono::solve_into(self, src, dst, nb);
        Ok((out, status))
    }

    /// The batch solve into `dst` (`nb` samples of `H W` values).
    fn solve_into(&self, src: &[T], dst: &mut [T], nb: usize) -> Vec<SampleResult> {
        let n = self.fft.h * self.fft.w;
        if matches!(self.cfg.time_step, TimeStep::AdaptiveBatchMin) && nb > 1 {
            self.solve_lockstep(src, dst)
        } else {
            src.par_chunks(n)
                .zip(dst.par_chunks_mut(n))
                .map(|(x, y)| {
                    let r = self.solve_one_impl(x, y);
                    if r.is_err() {
                        y.iter_mut().for_each(|v| *v = T::nan());
                    }
                    r
                })
                .collect()
        }
    }

    /// Batch-minimum CFL step: every live sample takes the same step, the smallest of their
    /// CFL steps (the reference's behaviour). A sample that fails drops out of the minimum.
    /// The CFL step of step `n + 1` comes from the first Heun stage of that step, so each
    /// parallel task finishes step `n` of one sample and runs the first stage of step `n + 1`
    /// (while its workspace is in cache); the batch minimum is taken between tasks.
    fn solve_lockstep(&self, src: &[T], dst: &mut [T]) -> Vec<SampleResult> {
        let n = self.fft.h * self.fft.w;
        struct Slot<T: NsFloat> {
            ws: Option<Workspace<T>>,
            dt: f64,
            status: SampleResult,
        }
        impl<T: NsFloat> Slot<T> {
            fn fail(&mut self, solver: &NsSolver<T>, why: String) {
                self.status = Err(why);
                if let Some(ws) = self.ws.take() {
                    solver.give_workspace(ws);
                }
            }
        }
        let t_end = self.cfg.t_final;
        // The first stage of step 0 (when there is a step) and its CFL step.
        let first = |s: &mut Slot<T>| {
            if t_end <= 0.0 {
                return;
            }
            let Some(ws) = s.ws.as_mut() else { return };
            match self.stage1(ws, true) {
                Ok(speed2) => s.dt = self.cfl_dt(speed2),
                Err(_) => s.fail(self, "velocity became non-finite at t = 0.000000".into()),
            }
        };
        let mut slots: Vec<Slot<T>> = src
            .par_chunks(n)
            .map(|x| {
                if let Some(p) = x.iter().position(|v| !v.is_finite()) {
                    return Slot {
                        ws: None,
                        dt: 0.0,
                        status: Err(format!("non-finite initial vorticity at grid index {p}")),
                    };
                }
                let mut ws = self.take_workspace();
                self.load(&mut ws, x);
                let mut slot = Slot {
                    ws: Some(ws),
                    dt: 0.0,
                    status: Ok(SolveStats {
                        steps: 0,
                        dt_min: f64::INFINITY,
                        dt_max: 0.0,
                    }),
                };
                first(&mut slot);
                slot
            })
            .collect();
        let mut time = 0.0f64;
        let mut steps = 0usize;
        while time < t_end {
            let dt = slots
                .iter()
                .filter(|s| s.ws.is_some())
                .map(|s| s.dt)
                .fold(f64::INFINITY, f64::min);
            if !dt.is_finite() {
                break; // every sample failed
            }
            if steps >= self.cfg.max_steps {
                for s in slots.iter_mut().filter(|s| s.ws.is_some()) {
                    s.fail(
                        self,
                        format!(
                            "step limit {} reached at t = {time:.6} (batch CFL step {dt:.3e})",
                            self.cfg.max_steps
                        ),
                    );
                }
                break;
            }
            let cur = if time + dt > t_end { t_end - time } else { dt };
            let t_next = time + cur;
            // Finish step n with the shared step size, then the first stage of step n + 1
            // (its CFL step) unless this was the last step.
            slots
                .par_iter_mut()
                .filter(|s| s.ws.is_some())
                .for_each(|s| {
                    let Some(ws) = s.ws.as_mut() else { return };
                    if self.finish_step(ws, cur).is_err() {
                        s.fail(
                            self,
                            format!("vorticity became non-finite at t = {t_next:.6}"),
                        );
                        return;
                    }
                    if let Ok(st) = s.status.as_mut() {
                        st.steps += 1;
                        st.dt_max = st.dt_max.max(cur);
                        if cur == dt || st.steps == 1 {
                            st.dt_min = st.dt_min.min(cur);
                        }
                    }
                    if t_next < t_end {
                        match self.stage1(ws, true) {
                            Ok(speed2) => s.dt = self.cfl_dt(speed2),
                            Err(_) => s.fail(
                                self,
                                format!("velocity became non-finite at t = {t_next:.6}"),
                            ),
                        }
                    }
                });
            time = t_next;
            steps += 1;
        }
        slots
            .par_iter_mut()
            .zip(dst.par_chunks_mut(n))
            .map(|(s, y)| {
                if let Some(mut ws) = s.ws.take() {
                    self.store(&mut ws, y);
                    self.give_workspace(ws);
                }
                let mut st = std::mem::replace(&mut s.status, Err(String::new()));
                if let Ok(x) = st.as_mut() {
                    if x.steps == 0 {
                        x.dt_min = 0.0;
                    }
                }
                st
            })
            .collect()
    }
}

/// Monomorphic entry points. A generic function is compiled in the crate that instantiates it,
/// with that crate's build profile: a caller built at a lower optimisation level, or with
/// overflow checks and debug assertions (the workspace's dev profile, e.g. xtask), would get a
/// slow copy of the solver. For `f32` and `f64` the public entry points therefore call these
/// non-generic functions, which are compiled here, with this crate's profile (opt-level 3, no
/// checks, in both profiles).
mod mono {
    use std::any::TypeId;

    use super::{NsFloat, NsSolver, SampleResult};

    /// `x` as `&U` when `T` and `U` are the same type.
    fn cast<T: 'static, U: 'static>(x: &T) -> Option<&U> {
        (TypeId::of::<T>() == TypeId::of::<U>()).then(|| {
            // SAFETY: `T` and `U` are the same type.
            unsafe { &*(x as *const T as *const U) }
        })
    }

    /// `x` as `&[U]` when `T` and `U` are the same type.
    fn cast_slice<T: 'static, U: 'static>(x: &[T]) -> Option<&[U]> {
        (TypeId::of::<T>() == TypeId::of::<U>()).then(|| {
            // SAFETY: `T` and `U` are the same type.
            unsafe { &*(x as *const [T] as *const [U]) }
        })
    }

    /// `x` as `&mut [U]` when `T` and `U` are the same type.
    fn cast_slice_mut<T: 'static, U: 'static>(x: &mut [T]) -> Option<&mut [U]> {
        (TypeId::of::<T>() == TypeId::of::<U>()).then(|| {
            // SAFETY: `T` and `U` are the same type.
            unsafe { &mut *(x as *mut [T] as *mut [U]) }
        })
    }

    pub(super) fn solve_into<T: NsFloat>(
        s: &NsSolver<T>,
        src: &[T],
        dst: &mut [T],
        nb: usize,
    ) -> Vec<SampleResult> {
        if let (Some(s32), Some(x), Some(y)) = (
            cast::<_, NsSolver<f32>>(s),
            cast_slice::<_, f32>(src),
            cast_slice_mut::<_, f32>(&mut *dst),
        ) {
            return solve_into_f32(s32, x, y, nb);
        }
        if let (Some(s64), Some(x), Some(y)) = (
            cast::<_, NsSolver<f64>>(s),
            cast_slice::<_, f64>(src),
            cast_slice_mut::<_, f64>(&mut *dst),
        ) {
            return solve_into_f64(s64, x, y, nb);
        }
        s.solve_into(src, dst, nb)
    }

    pub(super) fn solve_one<T: NsFloat>(s: &NsSolver<T>, w0: &[T], out: &mut [T]) -> SampleResult {
        if let (Some(s32), Some(x), Some(y)) = (
            cast::<_, NsSolver<f32>>(s),
            cast_slice::<_, f32>(w0),
            cast_slice_mut::<_, f32>(&mut *out),
        ) {
            return solve_one_f32(s32, x, y);
        }
        if let (Some(s64), Some(x), Some(y)) = (
            cast::<_, NsSolver<f64>>(s),
            cast_slice::<_, f64>(w0),
            cast_slice_mut::<_, f64>(&mut *out),
        ) {
            return solve_one_f64(s64, x, y);
        }
        s.solve_one_impl(w0, out)
    }

    #[inline(never)]
    fn solve_into_f32(s: &NsSolver<f32>, x: &[f32], y: &mut [f32], nb: usize) -> Vec<SampleResult> {
        s.solve_into(x, y, nb)
    }

    #[inline(never)]
    fn solve_into_f64(s: &NsSolver<f64>, x: &[f64], y: &mut [f64], nb: usize) -> Vec<SampleResult> {
        s.solve_into(x, y, nb)
    }

    #[inline(never)]
    fn solve_one_f32(s: &NsSolver<f32>, x: &[f32], y: &mut [f32]) -> SampleResult {
        s.solve_one_impl(x, y)
    }

    #[inline(never)]
    fn solve_one_f64(s: &NsSolver<f64>, x: &[f64], y: &mut [f64]) -> SampleResult {
        s.solve_one_impl(x, y)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The AVX2 copies of the passes compute exactly what the plain ones do (no FMA, same
    /// operation order): a forced 16 x 16 solve is bit-identical on both paths, in f32 and f64.
    #[test]
    fn avx2_and_plain_paths_are_bit_identical() {
        fn run<T: NsFloat>(avx2: bool) -> Vec<T> {
            let n = 16;
            let cfg = NsConfig {
                t_final: 0.3,
                ..NsConfig::default()
            };
            let mut s = NsSolver::<T>::new(n, n, cfg).expect("solver");
            s.avx2 = avx2;
            s.fft.avx2 = avx2;
            let w0: Vec<T> = (0..n * n)
                .map(|m| T::lit(3.0 * (m as f64 * 0.37).sin() + (m as f64 * 0.011).cos()))
                .collect();
            let mut out = vec![T::zero(); n * n];
            let st = s.solve_one(&w0, &mut out).expect("solve");
            assert!(st.steps > 5);
            out
        }
        if !super::super::spectral::has_avx2() {
            return; // nothing to compare on this CPU
        }
        assert_eq!(run::<f64>(false), run::<f64>(true));
        assert_eq!(run::<f32>(false), run::<f32>(true));
    }
}
