//! Tiled, thread-count-independent matrix products on top of the `gemm` crate.
//!
//! # Determinism
//!
//! Every product is cut into output tiles whose boundaries depend only on the shapes and on
//! the constants of [`Tiles`], never on the number of threads. Each tile is one call of
//! `gemm::gemm` with `Parallelism::None`, over the *whole* inner dimension, so the summation
//! order of every output element is fixed by `gemm`'s own (shape-dependent) `k`-blocking and
//! micro-kernel. Rayon only decides *which worker* computes a tile, so the result is
//! bit-identical for any thread count (tested in `tests/determinism.rs`).
//!
//! # Cost
//!
//! A tile `(mt, nt)` of `A (M x K) B (K x N)` costs `2 mt nt K` flops, and `gemm` packs
//! `(mt + nt) K` floats for it: packing traffic per flop is `(mt + nt) / (2 mt nt)`, i.e.
//! `1/512` for `512 x 512` tiles, negligible against the micro-kernel.

use gemm::Parallelism;
use ndarray::{ArrayView2, ArrayViewMut2};
use rayon::prelude::*;

/// Tile sizes of the output of a product.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tiles {
    /// Rows of an output tile.
    pub rows: usize,
    /// Columns of an output tile.
    pub cols: usize,
}

/// Default tiles of the Gram products `A B^T` (output `N x N`).
pub const GRAM_TILES: Tiles = Tiles { rows: 256, cols: 256 };
/// Default tiles of the combination `C X` (output `N x d`).
pub const COMBINE_TILES: Tiles = Tiles { rows: 512, cols: 512 };

/// A read-only strided matrix handed to `gemm` (element `(i, j)` at `ptr + i rs + j cs`).
#[derive(Clone, Copy)]
struct Mat {
    ptr: *const f32,
    rs: isize,
    cs: isize,
}

// SAFETY: `Mat` is only built from `ArrayView2`s that outlive the parallel region that uses
// it, and it is only read.
unsafe impl Send for Mat {}
unsafe impl Sync for Mat {}

impl Mat {
    fn of(v: &ArrayView2<'_, f32>) -> Self {
        let s = v.strides();
        Self { ptr: v.as_ptr(), rs: s[0], cs: s[1] }
    }
    /// Pointer to element `(i, j)` (computed with wrapping arithmetic; only dereferenced by
    /// `gemm` inside the matrix).
    fn at(&self, i: usize, j: usize) -> *const f32 {
        self.ptr.wrapping_offset(i as isize * self.rs + j as isize * self.cs)
    }
}

/// Output pointer of a row-major contiguous `(rows, cols)` matrix.
#[derive(Clone, Copy)]
struct Out {
    ptr: *mut f32,
    ld: usize,
}

// SAFETY: tiles written through `Out` are pairwise disjoint (see the callers).
unsafe impl Send for Out {}
unsafe impl Sync for Out {}

impl Out {
    /// Pointer to element `(i, j)`.
    fn at(&self, i: usize, j: usize) -> *mut f32 {
        self.ptr.wrapping_add(i * self.ld + j)
    }
}

/// One serial `gemm` call: `dst (m x n, row stride ld) = beta * lhs (m x k) rhs (k x n)`.
///
/// # Safety
/// `dst` must be valid for writes of the `m x n` block, `lhs`/`rhs` valid for reads of their
/// blocks, and no other thread may touch the `dst` block meanwhile.
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_serial(m: usize, n: usize, k: usize, dst: *mut f32, ld: usize, lhs: Mat, rhs: Mat, beta: f32) {
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        for i in 0..m {
            // SAFETY: row `i` of the block, within `dst` by the caller's contract.
            unsafe { std::ptr::write_bytes(dst.add(i * ld), 0, n) };
        }
        return;
    }
    // SAFETY: forwarded from the caller's contract.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            1,
            ld as isize,
            false,
            lhs.ptr,
            lhs.cs,
            lhs.rs,
            rhs.ptr,
            rhs.cs,
            rhs.rs,
            0.0,
            beta,
            false,
            false,
            false,
            Parallelism::None,
        )
    }
}

fn n_tiles(len: usize, tile: usize) -> usize {
    len.div_ceil(tile.max(1))
}

/// `out = scale * A B^T` with `A (M x K)`, `B (N x K)` and `out (M x N)` in standard layout.
///
/// Flops `2 M N K`; bytes read `4 K (M + N)` (once per tile row/column of the other
/// operand: `4 K (M n_col_tiles + N n_row_tiles)`), written `4 M N`.
pub(crate) fn gram_into(mut out: ArrayViewMut2<'_, f32>, a: ArrayView2<'_, f32>, b: ArrayView2<'_, f32>, scale: f32, tiles: Tiles) {
    let (m, n, k) = (a.nrows(), b.nrows(), a.ncols());
    debug_assert_eq!(b.ncols(), k);
    debug_assert_eq!(out.dim(), (m, n));
    debug_assert!(out.is_standard_layout());
    let (a, b) = (Mat::of(&a), Mat::of(&b));
    let o = Out { ptr: out.as_mut_ptr(), ld: n };
    let (tr, tc) = (tiles.rows.max(1), tiles.cols.max(1));
    let (nr, nc) = (n_tiles(m, tr), n_tiles(n, tc));
    (0..nr * nc).into_par_iter().for_each(|t| {
        let (bi, bj) = (t / nc, t % nc);
        let (i0, j0) = (bi * tr, bj * tc);
        let (mt, nt) = (tr.min(m - i0), tc.min(n - j0));
        // B^T as a (K x N) matrix: element (kk, j) = b[j, kk].
        let bt = Mat { ptr: b.at(j0, 0), rs: b.cs, cs: b.rs };
        let at = Mat { ptr: a.at(i0, 0), rs: a.rs, cs: a.cs };
        // SAFETY: tile (bi, bj) is written by this task only; the views outlive the loop.
        unsafe { gemm_serial(mt, nt, k, o.at(i0, j0), o.ld, at, bt, scale) };
    });
}

/// `out = scale * C (X - 1 center^T)` (or `scale * C X` without `center`) with `C (M x K)`,
/// `X (K x N)`, `out (M x N)` in standard layout.
///
/// With `center`, each task copies its column band `X[:, j0..j1] - center[j0..j1]` into a
/// per-worker buffer of `K x cols` floats and multiplies from there, so the anomalies of `X`
/// are never materialised as a whole (`O(K cols)` extra memory per worker) and the
/// subtraction is exact (no cancellation of the form `C X - (C 1) xbar^T`). Tasks are ordered
/// column band first, so a worker that takes consecutive row tiles of one band reuses its
/// buffer.
pub(crate) fn combine_into(
    mut out: ArrayViewMut2<'_, f32>,
    c: ArrayView2<'_, f32>,
    x: ArrayView2<'_, f32>,
    center: Option<&[f32]>,
    scale: f32,
    tiles: Tiles,
) {
    let (m, k, n) = (c.nrows(), c.ncols(), x.ncols());
    debug_assert_eq!(x.nrows(), k);
    debug_assert_eq!(out.dim(), (m, n));
    debug_assert!(out.is_standard_layout());
    debug_assert!(center.is_none_or(|v| v.len() == n));
    let (cm, xm) = (Mat::of(&c), Mat::of(&x));
    let o = Out { ptr: out.as_mut_ptr(), ld: n };
    let (tr, tc) = (tiles.rows.max(1), tiles.cols.max(1));
    let (nr, nc) = (n_tiles(m, tr), n_tiles(n, tc));
    (0..nr * nc).into_par_iter().for_each_init(
        || (Vec::<f32>::new(), usize::MAX),
        |(buf, band), t| {
            let (bj, bi) = (t / nr, t % nr);
            let (i0, j0) = (bi * tr, bj * tc);
            let (mt, nt) = (tr.min(m - i0), tc.min(n - j0));
            let lhs = Mat { ptr: cm.at(i0, 0), rs: cm.rs, cs: cm.cs };
            let rhs = match center {
                Some(mu) => {
                    if *band != bj {
                        buf.clear();
                        buf.reserve(k * nt);
                        let mu = &mu[j0..j0 + nt];
                        for kk in 0..k {
                            let row = x.row(kk);
                            let row = row.slice(ndarray::s![j0..j0 + nt]);
                            match row.as_slice() {
                                Some(s) => buf.extend(s.iter().zip(mu).map(|(v, c)| v - c)),
                                None => buf.extend(row.iter().zip(mu).map(|(v, c)| v - c)),
                            }
                        }
                        *band = bj;
                    }
                    Mat { ptr: buf.as_ptr(), rs: nt as isize, cs: 1 }
                }
                None => Mat { ptr: xm.at(0, j0), rs: xm.rs, cs: xm.cs },
            };
            // SAFETY: tile (bi, bj) is written by this task only; `buf` holds `k * nt` floats.
            unsafe { gemm_serial(mt, nt, k, o.at(i0, j0), o.ld, lhs, rhs, scale) };
        },
    );
}
