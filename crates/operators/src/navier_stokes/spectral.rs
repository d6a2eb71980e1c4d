//! Two-dimensional real FFTs on an `H x W` periodic grid, the solver's specialised kernels on
//! the complex plans of the shared [`diffinv_fft::ComplexFft2`].
//!
//! Layout. A real field is stored row-major, `f[i * W + j]`, `i` along axis 0 ("x", size `H`)
//! and `j` along axis 1 ("y", size `W`). Its half spectrum (the `rfft2` of numpy/PyTorch:
//! real-to-complex along axis 1, then complex along axis 0) has `H x Wc` modes, `Wc = W/2 + 1`,
//! and is stored **column-major**, `F[j * H + i]`, so that the complex transforms along axis 0
//! run on contiguous columns in a single rustfft call. The layout is internal to the solver.
//!
//! Conventions match `torch.fft.rfft2` / `irfft2` with the default ("backward") norm: the
//! forward transform is unnormalised, the inverse divides by `H * W`.
//!
//! Packed grid layout (what the solver uses inside its time loop). A real field is held as
//! `h/2` complex rows, `z_p[j] = x[2p][j] + i x[2p+1][j]`: exactly the input of the pair-packed
//! row transforms, and, viewed as `h w` reals, a permutation of the grid, so pointwise products
//! run on it directly. [`Fft2::forward_packed`] / [`Fft2::inverse_packed`] transform several
//! such fields in one batched rustfft call per axis, with one pass per field in between that
//! separates (or combines) the row pairs by Hermitian symmetry and transposes to (or from) the
//! column-major spectrum: no pack/unpack passes.
//!
//! Cost. One transform is `H/2` complex transforms of length `W` (two real rows packed in each)
//! plus `W/2+1` complex transforms of length `H`: about `2.5 * H * W * log2(H * W)` flops, and
//! one transpose pass over `H * W` values (four columns at a time; `f32` with AVX2 has its own
//! intrinsics kernels, 256-bit loads and stores along the rows).

use diffinv_fft::{Complex, ComplexFft2, FftDirection};

use super::float::NsFloat;

/// FFT plans for one grid size, built once and shared by every thread.
///
/// The real transforms along axis 1 are done two rows at a time: rows `a` and `b` are packed
/// into one complex row `z = a + i b`, transformed with a complex FFT of length `W` (all `H/2`
/// pairs in one batched rustfft call), and separated with the Hermitian symmetry
/// `A[k] = (Z[k] + conj Z[W-k]) / 2`, `B[k] = (Z[k] - conj Z[W-k]) / (2 i)` (and the reverse
/// for the inverse). The pack/unpack loops are plain arithmetic on contiguous rows.
pub struct Fft2<T: NsFloat> {
    /// Grid rows (axis 0).
    pub h: usize,
    /// Grid columns (axis 1).
    pub w: usize,
    /// Number of half-spectrum columns, `w / 2 + 1`.
    pub wc: usize,
    /// The complex plans: rows of length `w` (the packed row pairs), columns of length `h`.
    plans: ComplexFft2<T>,
    /// Whether the CPU has AVX2 (the transposes then run in copies compiled for it).
    pub(super) avx2: bool,
}

#[inline(never)]
fn plan_f32(h: usize, w: usize) -> Fft2<f32> {
    Fft2::<f32>::plan(h, w)
}

#[inline(never)]
fn plan_f64(h: usize, w: usize) -> Fft2<f64> {
    Fft2::<f64>::plan(h, w)
}

/// Whether the CPU supports AVX2 (always false off x86-64).
pub(crate) fn has_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

impl<T: NsFloat> std::fmt::Debug for Fft2<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fft2")
            .field("h", &self.h)
            .field("w", &self.w)
            .finish()
    }
}

/// Scratch buffers for one thread: everything a transform needs, allocated once.
pub struct FftScratch<T: NsFloat> {
    /// `H/2` packed row pairs of `W` complex values.
    pairs: Vec<Complex<T>>,
    col: Vec<Complex<T>>,
    scratch: Vec<Complex<T>>,
}

impl<T: NsFloat> Fft2<T> {
    /// Plan the transforms for an `h x w` grid (`h` even).
    ///
    /// For `f32` and `f64` the plans are built by non-generic functions of this crate: rustfft
    /// instantiates its (generic) FFT kernels where the planner is called, so planning from a
    /// generic function would compile the kernels in the calling crate, with its profile (a
    /// dev-profile caller, e.g. xtask, got kernels with overflow checks, 3x the instructions).
    /// ([`ComplexFft2::new`] is generic, so it is instantiated here, from `plan_f32`/`plan_f64`.)
    pub fn new(h: usize, w: usize) -> Self {
        use std::any::{Any, TypeId};
        let planned: Option<Box<dyn Any>> = if TypeId::of::<T>() == TypeId::of::<f32>() {
            Some(Box::new(plan_f32(h, w)))
        } else if TypeId::of::<T>() == TypeId::of::<f64>() {
            Some(Box::new(plan_f64(h, w)))
        } else {
            None
        };
        match planned.map(|b| b.downcast::<Self>()) {
            Some(Ok(f)) => *f,
            _ => Self::plan(h, w),
        }
    }

    fn plan(h: usize, w: usize) -> Self {
        Self {
            h,
            w,
            wc: w / 2 + 1,
            plans: ComplexFft2::new(h, w),
            avx2: has_avx2(),
        }
    }

    /// Number of complex modes of a half spectrum, `h * (w/2 + 1)`.
    pub fn spec_len(&self) -> usize {
        self.h * self.wc
    }

    /// Allocate the scratch buffers for one thread.
    pub fn scratch(&self) -> FftScratch<T> {
        let zero = Complex::new(T::zero(), T::zero());
        let cs = self.plans.scratch_len();
        FftScratch {
            pairs: vec![zero; self.h / 2 * self.w],
            col: vec![zero; self.spec_len()],
            scratch: vec![zero; cs],
        }
    }

    /// Number of complex values of one field in the packed grid layout, `(h/2) * w`.
    pub fn packed_len(&self) -> usize {
        self.h / 2 * self.w
    }

    /// `spec = rfft2(field)` (unnormalised). `field` is `h * w` row-major, `spec` is
    /// `h * (w/2+1)` column-major.
    pub fn rfft2(&self, field: &[T], spec: &mut [Complex<T>], s: &mut FftScratch<T>) {
        let (h, w, wc) = (self.h, self.w, self.wc);
        debug_assert_eq!(field.len(), h * w);
        debug_assert_eq!(spec.len(), h * wc);
        let mut pairs = std::mem::take(&mut s.pairs);
        pack_rows(field, &mut pairs, w);
        self.forward_packed(&mut pairs, spec, s);
        s.pairs = pairs;
        let half = T::lit(0.5);
        for v in spec.iter_mut() {
            *v = *v * half;
        }
    }

    /// `field = irfft2(spec)` (divides by `h * w`). `spec` is left untouched.
    ///
    /// As in numpy/PyTorch, the imaginary parts of the `j = 0` and `j = w/2` columns after the
    /// axis-0 transform are ignored (they vanish for the spectrum of a real field).
    pub fn irfft2(&self, spec: &[Complex<T>], field: &mut [T], s: &mut FftScratch<T>) {
        debug_assert_eq!(field.len(), self.h * self.w);
        let mut col = std::mem::take(&mut s.col);
        col.copy_from_slice(spec);
        self.irfft2_unscaled_consume(&mut col, field, s);
        s.col = col;
        let scale = T::one() / T::lit((self.h * self.w) as f64);
        for v in field.iter_mut() {
            *v = *v * scale;
        }
    }

    /// `field = h * w * irfft2(spec)`, **without** the `1 / (h w)` normalisation (callers fold
    /// it into their spectral coefficients), using `spec` as scratch (its values are destroyed).
    pub fn irfft2_unscaled_consume(
        &self,
        spec: &mut [Complex<T>],
        field: &mut [T],
        s: &mut FftScratch<T>,
    ) {
        debug_assert_eq!(field.len(), self.h * self.w);
        let mut pairs = std::mem::take(&mut s.pairs);
        self.inverse_packed(spec, &mut pairs, s);
        for (z, rows) in pairs
            .chunks_exact(self.w)
            .zip(field.chunks_exact_mut(2 * self.w))
        {
            let (ra, rb) = rows.split_at_mut(self.w);
            for ((z, a), b) in z.iter().zip(ra.iter_mut()).zip(rb.iter_mut()) {
                *a = z.re;
                *b = z.im;
            }
        }
        s.pairs = pairs;
    }

    /// Forward transform of `F` real fields held in the **packed grid layout**: field `f` is
    /// `grid[f * L .. (f + 1) * L]`, `L = (h/2) w` ([`Self::packed_len`]), with
    /// `grid[p * w + j] = x[2p][j] + i x[2p+1][j]` (rows `2p` and `2p+1` as the real and
    /// imaginary parts). Viewed as `h * w` reals the layout is a permutation of the grid, so
    /// pointwise products need no unpacking. Writes `spec[f * n ..] = 2 rfft2(x_f)`
    /// (`n = h (w/2+1)`, column-major; the factor 2 of the Hermitian separation is left to the
    /// caller's coefficient tables) and destroys `grid`.
    ///
    /// All `F h/2` row transforms run in one batched rustfft call, then one pass per field
    /// separates and transposes (`2 A[k] = Z[k] + conj Z[w-k]`, `2 i B[k] = Z[k] - conj Z[w-k]`,
    /// two columns `k`, `k+1` at a time so that reads and writes come in contiguous pairs),
    /// then all `F (w/2+1)` column transforms run in one call.
    pub fn forward_packed(
        &self,
        grid: &mut [Complex<T>],
        spec: &mut [Complex<T>],
        s: &mut FftScratch<T>,
    ) {
        let (h, w, wc) = (self.h, self.w, self.wc);
        let (pl, n) = (self.packed_len(), h * wc);
        debug_assert_eq!(grid.len() % pl, 0);
        debug_assert_eq!(grid.len() / pl * n, spec.len());
        self.plans
            .rows(FftDirection::Forward)
            .process_with_scratch(grid, &mut s.scratch);
        for (g, sp) in grid.chunks_exact(pl).zip(spec.chunks_exact_mut(n)) {
            #[cfg(target_arch = "x86_64")]
            if self.avx2 {
                if let (Some(g), Some(sp)) = (as_f32(g), as_f32_mut(sp)) {
                    // SAFETY: AVX2 was detected at run time; the lengths are checked inside.
                    unsafe { separate_f32_avx2(h, w, g, sp) };
                    continue;
                }
                // SAFETY: AVX2 support was detected at run time when `self` was built.
                unsafe { separate_avx2(h, w, g, sp) };
                continue;
            }
            separate_plain(h, w, g, sp);
        }
        self.plans
            .cols(FftDirection::Forward)
            .process_with_scratch(spec, &mut s.scratch);
    }

    /// Inverse of [`Self::forward_packed`] without normalisation: `grid` (packed layout, `F`
    /// fields) receives `h w irfft2(spec_f)`; `spec` (`F` column-major half spectra) is
    /// destroyed. The imaginary parts of the `j = 0` and `j = w/2` columns after the axis-0
    /// transform are ignored (real-field convention).
    pub fn inverse_packed(
        &self,
        spec: &mut [Complex<T>],
        grid: &mut [Complex<T>],
        s: &mut FftScratch<T>,
    ) {
        let (h, w, wc) = (self.h, self.w, self.wc);
        let (pl, n) = (self.packed_len(), h * wc);
        debug_assert_eq!(grid.len() % pl, 0);
        debug_assert_eq!(grid.len() / pl * n, spec.len());
        self.plans
            .cols(FftDirection::Inverse)
            .process_with_scratch(spec, &mut s.scratch);
        for (g, sp) in grid.chunks_exact_mut(pl).zip(spec.chunks_exact(n)) {
            #[cfg(target_arch = "x86_64")]
            if self.avx2 {
                if let (Some(sp), Some(g)) = (as_f32(sp), as_f32_mut(g)) {
                    // SAFETY: AVX2 was detected at run time; the lengths are checked inside.
                    unsafe { combine_f32_avx2(h, w, sp, g) };
                    continue;
                }
                // SAFETY: AVX2 support was detected at run time when `self` was built.
                unsafe { combine_avx2(h, w, sp, g) };
                continue;
            }
            combine_plain(h, w, sp, g);
        }
        self.plans
            .rows(FftDirection::Inverse)
            .process_with_scratch(grid, &mut s.scratch);
    }
}

/// Hermitian separation and transpose of one field (see [`Fft2::forward_packed`]): `g` holds
/// the row transforms of the `h/2` packed row pairs, `sp` receives the column-major
/// `2 A`, `2 B` half spectrum before the column transforms.
#[inline(always)]
fn separate_body<T: NsFloat>(h: usize, w: usize, g: &[Complex<T>], sp: &mut [Complex<T>]) {
    #[inline(always)]
    fn sep<T: NsFloat>(zk: Complex<T>, zc: Complex<T>) -> (Complex<T>, Complex<T>) {
        let zc = zc.conj();
        let d = zk - zc; // = 2 i B
        (zk + zc, Complex::new(d.im, -d.re))
    }
    let (c0, rest) = sp.split_at_mut(h);
    for (ab, z) in c0.chunks_exact_mut(2).zip(g.chunks_exact(w)) {
        (ab[0], ab[1]) = sep(z[0], z[0]);
    }
    // Columns k .. k + 4 for k = 1, 5, ..., then pairs, then a last single column.
    let mut quads = rest.chunks_exact_mut(4 * h);
    let mut k = 1;
    for cc in &mut quads {
        let (ca, cb) = cc.split_at_mut(2 * h);
        let (ca, cc) = ca.split_at_mut(h);
        let (cb, cd) = cb.split_at_mut(h);
        for ((((a0, a1), a2), a3), z) in ca
            .chunks_exact_mut(2)
            .zip(cc.chunks_exact_mut(2))
            .zip(cb.chunks_exact_mut(2))
            .zip(cd.chunks_exact_mut(2))
            .zip(g.chunks_exact(w))
        {
            let lo = &z[k..k + 4];
            let hi = &z[w - k - 3..w - k + 1];
            (a0[0], a0[1]) = sep(lo[0], hi[3]);
            (a1[0], a1[1]) = sep(lo[1], hi[2]);
            (a2[0], a2[1]) = sep(lo[2], hi[1]);
            (a3[0], a3[1]) = sep(lo[3], hi[0]);
        }
        k += 4;
    }
    let mut cols = quads.into_remainder().chunks_exact_mut(2 * h);
    for cc in &mut cols {
        let (ca, cb) = cc.split_at_mut(h);
        for ((aa, bb), z) in ca
            .chunks_exact_mut(2)
            .zip(cb.chunks_exact_mut(2))
            .zip(g.chunks_exact(w))
        {
            let lo = &z[k..k + 2];
            let hi = &z[w - k - 1..w - k + 1];
            (aa[0], aa[1]) = sep(lo[0], hi[1]);
            (bb[0], bb[1]) = sep(lo[1], hi[0]);
        }
        k += 2;
    }
    let last = cols.into_remainder();
    if !last.is_empty() {
        for (ab, z) in last.chunks_exact_mut(2).zip(g.chunks_exact(w)) {
            (ab[0], ab[1]) = sep(z[k], z[w - k]);
        }
    }
}

#[inline(never)]
fn separate_plain<T: NsFloat>(h: usize, w: usize, g: &[Complex<T>], sp: &mut [Complex<T>]) {
    separate_body(h, w, g, sp)
}

/// [`separate_body`] compiled for AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline(never)]
fn separate_avx2<T: NsFloat>(h: usize, w: usize, g: &[Complex<T>], sp: &mut [Complex<T>]) {
    separate_body(h, w, g, sp)
}

/// Inverse of [`separate_body`] for one field (see [`Fft2::inverse_packed`]): from the
/// column-major spectrum after the column transforms to the packed row pairs before the row
/// transforms.
#[inline(always)]
fn combine_body<T: NsFloat>(h: usize, w: usize, sp: &[Complex<T>], g: &mut [Complex<T>]) {
    // Row pair p: z[k] = A[k] + i B[k], z[w - k] = conj(A[k]) + i conj(B[k]).
    #[inline(always)]
    fn comb<T: NsFloat>(a: Complex<T>, b: Complex<T>) -> (Complex<T>, Complex<T>) {
        (
            Complex::new(a.re - b.im, a.im + b.re),
            Complex::new(a.re + b.im, b.re - a.im),
        )
    }
    let half = w / 2;
    let (c0, rest) = sp.split_at(h);
    let (mid, cn) = rest.split_at((half - 1) * h);
    for ((a0, an), z) in c0
        .chunks_exact(2)
        .zip(cn.chunks_exact(2))
        .zip(g.chunks_exact_mut(w))
    {
        z[0] = Complex::new(a0[0].re, a0[1].re);
        z[half] = Complex::new(an[0].re, an[1].re);
    }
    // Columns k .. k + 4 for k = 1, 5, ... < w/2, then pairs, then a last single column.
    let mut quads = mid.chunks_exact(4 * h);
    let mut k = 1;
    for cc in &mut quads {
        let (ca, cb) = cc.split_at(2 * h);
        let (ca, cc) = ca.split_at(h);
        let (cb, cd) = cb.split_at(h);
        for ((((a0, a1), a2), a3), z) in ca
            .chunks_exact(2)
            .zip(cc.chunks_exact(2))
            .zip(cb.chunks_exact(2))
            .zip(cd.chunks_exact(2))
            .zip(g.chunks_exact_mut(w))
        {
            let (zk0, zc0) = comb(a0[0], a0[1]);
            let (zk1, zc1) = comb(a1[0], a1[1]);
            let (zk2, zc2) = comb(a2[0], a2[1]);
            let (zk3, zc3) = comb(a3[0], a3[1]);
            let (lo, hi) = z.split_at_mut(half);
            let lo = &mut lo[k..k + 4];
            (lo[0], lo[1], lo[2], lo[3]) = (zk0, zk1, zk2, zk3);
            let hi = &mut hi[half - k - 3..half - k + 1];
            (hi[0], hi[1], hi[2], hi[3]) = (zc3, zc2, zc1, zc0);
        }
        k += 4;
    }
    let mut cols = quads.remainder().chunks_exact(2 * h);
    for cc in &mut cols {
        let (ca, cb) = cc.split_at(h);
        for ((aa, bb), z) in ca
            .chunks_exact(2)
            .zip(cb.chunks_exact(2))
            .zip(g.chunks_exact_mut(w))
        {
            let (zk0, zc0) = comb(aa[0], aa[1]);
            let (zk1, zc1) = comb(bb[0], bb[1]);
            let (lo, hi) = z.split_at_mut(half);
            let lo = &mut lo[k..k + 2];
            lo[0] = zk0;
            lo[1] = zk1;
            let hi = &mut hi[half - k - 1..half - k + 1];
            hi[0] = zc1;
            hi[1] = zc0;
        }
        k += 2;
    }
    let last = cols.remainder();
    if !last.is_empty() {
        for (ab, z) in last.chunks_exact(2).zip(g.chunks_exact_mut(w)) {
            (z[k], z[w - k]) = comb(ab[0], ab[1]);
        }
    }
}

#[inline(never)]
fn combine_plain<T: NsFloat>(h: usize, w: usize, sp: &[Complex<T>], g: &mut [Complex<T>]) {
    combine_body(h, w, sp, g)
}

/// [`combine_body`] compiled for AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline(never)]
fn combine_avx2<T: NsFloat>(h: usize, w: usize, sp: &[Complex<T>], g: &mut [Complex<T>]) {
    combine_body(h, w, sp, g)
}

/// `Some(x)` viewed as `f32` values when `T` is `f32`.
fn as_f32<T: NsFloat>(x: &[Complex<T>]) -> Option<&[Complex<f32>]> {
    if std::any::TypeId::of::<T>() == std::any::TypeId::of::<f32>() {
        // SAFETY: `T` is `f32`, so the two slice types are the same type.
        Some(unsafe { &*(x as *const [Complex<T>] as *const [Complex<f32>]) })
    } else {
        None
    }
}

/// `Some(x)` viewed as `f32` values when `T` is `f32`.
fn as_f32_mut<T: NsFloat>(x: &mut [Complex<T>]) -> Option<&mut [Complex<f32>]> {
    if std::any::TypeId::of::<T>() == std::any::TypeId::of::<f32>() {
        // SAFETY: `T` is `f32`, so the two slice types are the same type.
        Some(unsafe { &mut *(x as *mut [Complex<T>] as *mut [Complex<f32>]) })
    } else {
        None
    }
}

/// [`separate_body`] for `f32` with AVX intrinsics: four columns `k .. k+4` per row pair, as
/// one 256-bit load of `Z[k..k+4]`, one of `Z[w-k-3..w-k+1]` (reversed in registers), and four
/// 128-bit stores of the `(2 A, 2 B)` pairs into the four columns. The arithmetic is the same
/// as [`separate_body`] (one add or subtract per output), so the results are identical.
///
/// # Safety
/// The CPU must support AVX2; `g` holds `h/2` rows of `w` values, `sp` at least `h (w/2+1)`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn separate_f32_avx2(h: usize, w: usize, g: &[Complex<f32>], sp: &mut [Complex<f32>]) {
    use std::arch::x86_64::*;
    let half = w / 2;
    assert!(g.len() >= h / 2 * w && sp.len() >= h * (half + 1));
    let sep = |zk: Complex<f32>, zc: Complex<f32>| {
        let zc = zc.conj();
        let d = zk - zc;
        (zk + zc, Complex::new(d.im, -d.re))
    };
    for p in 0..h / 2 {
        let z0 = g[p * w];
        (sp[2 * p], sp[2 * p + 1]) = sep(z0, z0);
    }
    let gp = g.as_ptr() as *const f32;
    let spp = sp.as_mut_ptr() as *mut f32;
    // SAFETY (all pointer accesses below): columns k .. k+4 <= w/2 + 1 and rows p < h/2, so
    // `p w + k + 3 < h/2 w`, `p w + w - k - 3 >= 0`, `p w + w - k + 1 <= h/2 w` and
    // `(k + 3) h + 2 p + 1 < h (w/2 + 1)`: every access is inside the asserted lengths.
    let odd = _mm256_setr_ps(0.0, -0.0, 0.0, -0.0, 0.0, -0.0, 0.0, -0.0);
    let mut k = 1;
    unsafe {
        while k + 4 <= half + 1 {
            for p in 0..h / 2 {
                let row = gp.add(2 * p * w);
                let lo = _mm256_loadu_ps(row.add(2 * k));
                let hi = _mm256_loadu_ps(row.add(2 * (w - k - 3)));
                // conj(Z[w-k-i]) for i = 0..4.
                let rev = _mm256_permute2f128_ps(hi, hi, 1);
                let zc = _mm256_xor_ps(_mm256_permute_ps(rev, 0b01_00_11_10), odd);
                let a2 = _mm256_add_ps(lo, zc);
                let d = _mm256_sub_ps(lo, zc);
                let b2 = _mm256_xor_ps(_mm256_permute_ps(d, 0b10_11_00_01), odd);
                let p02 = _mm256_castpd_ps(_mm256_unpacklo_pd(
                    _mm256_castps_pd(a2),
                    _mm256_castps_pd(b2),
                ));
                let p13 = _mm256_castpd_ps(_mm256_unpackhi_pd(
                    _mm256_castps_pd(a2),
                    _mm256_castps_pd(b2),
                ));
                let at = |i: usize| spp.add(2 * ((k + i) * h + 2 * p));
                _mm_storeu_ps(at(0), _mm256_castps256_ps128(p02));
                _mm_storeu_ps(at(1), _mm256_castps256_ps128(p13));
                _mm_storeu_ps(at(2), _mm256_extractf128_ps(p02, 1));
                _mm_storeu_ps(at(3), _mm256_extractf128_ps(p13, 1));
            }
            k += 4;
        }
    }
    while k <= half {
        for p in 0..h / 2 {
            let z = &g[p * w..(p + 1) * w];
            (sp[k * h + 2 * p], sp[k * h + 2 * p + 1]) = sep(z[k], z[w - k]);
        }
        k += 1;
    }
}

/// [`combine_body`] for `f32` with AVX intrinsics: four columns `k .. k+4` per row pair (four
/// 128-bit loads of the `(A, B)` pairs), written as one 256-bit store of `z[k..k+4]` and one of
/// `z[w-k-3..w-k+1]`. Same arithmetic as [`combine_body`], so the results are identical.
///
/// # Safety
/// The CPU must support AVX2; `sp` holds at least `h (w/2+1)` values, `g` `h/2` rows of `w`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn combine_f32_avx2(h: usize, w: usize, sp: &[Complex<f32>], g: &mut [Complex<f32>]) {
    use std::arch::x86_64::*;
    let half = w / 2;
    assert!(g.len() >= h / 2 * w && sp.len() >= h * (half + 1));
    let comb = |a: Complex<f32>, b: Complex<f32>| {
        (
            Complex::new(a.re - b.im, a.im + b.re),
            Complex::new(a.re + b.im, b.re - a.im),
        )
    };
    for p in 0..h / 2 {
        g[p * w] = Complex::new(sp[2 * p].re, sp[2 * p + 1].re);
        g[p * w + half] = Complex::new(sp[half * h + 2 * p].re, sp[half * h + 2 * p + 1].re);
    }
    let spp = sp.as_ptr() as *const f32;
    let gp = g.as_mut_ptr() as *mut f32;
    // SAFETY (all pointer accesses below): columns 1 <= k .. k+4 <= w/2 and rows p < h/2, so
    // every access is inside the asserted lengths (as in `separate_f32_avx2`).
    let odd = _mm256_setr_ps(0.0, -0.0, 0.0, -0.0, 0.0, -0.0, 0.0, -0.0);
    let all = _mm256_set1_ps(-0.0);
    let mut k = 1;
    unsafe {
        while k + 4 <= half {
            for p in 0..h / 2 {
                let at = |i: usize| spp.add(2 * ((k + i) * h + 2 * p));
                let (v0, v1, v2, v3) = (
                    _mm_loadu_ps(at(0)),
                    _mm_loadu_ps(at(1)),
                    _mm_loadu_ps(at(2)),
                    _mm_loadu_ps(at(3)),
                );
                let a = _mm256_set_m128(_mm_movelh_ps(v2, v3), _mm_movelh_ps(v0, v1));
                let b = _mm256_set_m128(_mm_movehl_ps(v3, v2), _mm_movehl_ps(v1, v0));
                let bs = _mm256_permute_ps(b, 0b10_11_00_01); // (b.im, b.re)
                let lo = _mm256_addsub_ps(a, bs); // (a.re - b.im, a.im + b.re)
                let c = _mm256_addsub_ps(a, _mm256_xor_ps(bs, all)); // (a.re + b.im, a.im - b.re)
                let c = _mm256_xor_ps(c, odd); // (a.re + b.im, b.re - a.im)
                let c = _mm256_permute2f128_ps(c, c, 1);
                let c = _mm256_permute_ps(c, 0b01_00_11_10); // complex order reversed
                let row = gp.add(2 * p * w);
                _mm256_storeu_ps(row.add(2 * k), lo);
                _mm256_storeu_ps(row.add(2 * (w - k - 3)), c);
            }
            k += 4;
        }
    }
    while k < half {
        for p in 0..h / 2 {
            let (zk, zc) = comb(sp[k * h + 2 * p], sp[k * h + 2 * p + 1]);
            g[p * w + k] = zk;
            g[p * w + w - k] = zc;
        }
        k += 1;
    }
}

/// Pack a row-major `h x w` real field into the packed grid layout (rows `2p`, `2p+1` as the
/// real and imaginary parts of complex row `p`).
pub fn pack_rows<T: NsFloat>(field: &[T], grid: &mut [Complex<T>], w: usize) {
    for (z, rows) in grid.chunks_exact_mut(w).zip(field.chunks_exact(2 * w)) {
        let (ra, rb) = rows.split_at(w);
        for ((z, &a), &b) in z.iter_mut().zip(ra).zip(rb) {
            *z = Complex::new(a, b);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Naive `rfft2`: `X[k1, k2] = sum_{i,j} x[i][j] e^{-2 pi i (k1 i / h + k2 j / w)}`,
    /// column-major half spectrum.
    fn naive_rfft2(x: &[f64], h: usize, w: usize) -> Vec<Complex<f64>> {
        let wc = w / 2 + 1;
        let mut out = vec![Complex::new(0.0, 0.0); h * wc];
        for k2 in 0..wc {
            for k1 in 0..h {
                let mut acc = Complex::new(0.0, 0.0);
                for i in 0..h {
                    for j in 0..w {
                        let ph = -2.0
                            * std::f64::consts::PI
                            * ((k1 * i) as f64 / h as f64 + (k2 * j) as f64 / w as f64);
                        acc += Complex::new(ph.cos(), ph.sin()) * x[i * w + j];
                    }
                }
                out[k2 * h + k1] = acc;
            }
        }
        out
    }

    fn field(h: usize, w: usize, seed: f64) -> Vec<f64> {
        (0..h * w)
            .map(|m| ((m as f64 + seed) * 0.7548776662).sin() + 0.3 * ((m * m) as f64 * 0.1).cos())
            .collect()
    }

    /// `rfft2` against the naive DFT and `irfft2(rfft2(x)) = x`, for grids whose `w/2` leaves
    /// every remainder of the 4- and 2-column blocks of the transposes, and the packed
    /// two-field transforms against the single-field ones; `f64` and `f32` (which has its own
    /// AVX kernels), plain and AVX2 paths. `tol` bounds the spectral error (values up to ~300)
    /// and `tol_grid` the grid error (values ~1).
    fn check<T: NsFloat>(tol: f64, tol_grid: f64) {
        let sizes = [
            (4, 4),
            (6, 10),
            (8, 6),
            (4, 12),
            (10, 8),
            (16, 14),
            (8, 18),
            (6, 20),
        ];
        let paths = if has_avx2() {
            vec![false, true]
        } else {
            vec![false]
        };
        let c = |z: Complex<T>| Complex::new(z.re.as_f64(), z.im.as_f64());
        let zero = Complex::new(T::zero(), T::zero());
        for (&(h, w), avx2) in sizes
            .iter()
            .flat_map(|hw| paths.iter().map(move |&a| (hw, a)))
        {
            let mut f = Fft2::<T>::new(h, w);
            f.avx2 = avx2;
            let mut s = f.scratch();
            let n = f.spec_len();
            let x: Vec<T> = field(h, w, 1.0).into_iter().map(T::lit).collect();
            let x64: Vec<f64> = x.iter().map(|v| v.as_f64()).collect();
            let mut spec = vec![zero; n];
            f.rfft2(&x, &mut spec, &mut s);
            let want = naive_rfft2(&x64, h, w);
            let err = spec
                .iter()
                .zip(&want)
                .map(|(&a, b)| (c(a) - b).norm())
                .fold(0.0, f64::max);
            assert!(err < tol, "{h}x{w} avx2 {avx2}: rfft2 vs naive DFT {err:e}");
            let mut back = vec![T::zero(); h * w];
            f.irfft2(&spec, &mut back, &mut s);
            let err = back
                .iter()
                .zip(&x64)
                .map(|(a, b)| (a.as_f64() - b).abs())
                .fold(0.0, f64::max);
            assert!(
                err < tol_grid,
                "{h}x{w} avx2 {avx2}: irfft2(rfft2 x) - x = {err:e}"
            );

            // Two fields at once in the packed layout: 2 rfft2, and back (unscaled).
            let y: Vec<T> = field(h, w, 7.0).into_iter().map(T::lit).collect();
            let pl = f.packed_len();
            let mut grid = vec![zero; 2 * pl];
            pack_rows(&x, &mut grid[..pl], w);
            pack_rows(&y, &mut grid[pl..], w);
            let mut spec2 = vec![zero; 2 * n];
            f.forward_packed(&mut grid, &mut spec2, &mut s);
            let mut spec_y = vec![zero; n];
            f.rfft2(&y, &mut spec_y, &mut s);
            for (got, single) in spec2.chunks_exact(n).zip([&spec, &spec_y]) {
                let err = got
                    .iter()
                    .zip(single.iter())
                    .map(|(&a, &b)| (c(a) - c(b) * 2.0).norm())
                    .fold(0.0, f64::max);
                assert!(
                    err < tol,
                    "{h}x{w} avx2 {avx2}: forward_packed vs 2 rfft2 {err:e}"
                );
            }
            f.inverse_packed(&mut spec2, &mut grid, &mut s);
            let scale = 1.0 / (2 * h * w) as f64;
            for (g, orig) in grid.chunks_exact(pl).zip([&x, &y]) {
                for p in 0..h / 2 {
                    for j in 0..w {
                        let z = c(g[p * w + j]) * scale;
                        let e = (z.re - orig[2 * p * w + j].as_f64()).abs()
                            + (z.im - orig[(2 * p + 1) * w + j].as_f64()).abs();
                        assert!(
                            e < tol_grid,
                            "{h}x{w} avx2 {avx2}: inverse_packed at ({p}, {j}): {e:e}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn transforms_match_the_naive_dft_and_invert_f64() {
        check::<f64>(1e-11, 1e-13);
    }

    #[test]
    fn transforms_match_the_naive_dft_and_invert_f32() {
        check::<f32>(1e-3, 2e-6);
    }
}
