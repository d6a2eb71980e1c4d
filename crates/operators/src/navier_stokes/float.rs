//! The scalar types the Navier-Stokes solver runs in (`f32`, `f64`).

use rustfft::num_traits;
use rustfft::FftNum;

/// A floating-point scalar the pseudo-spectral solver can run in: an FFT-capable number
/// ([`rustfft::FftNum`]) with the usual float operations. Implemented for `f32` and `f64`.
pub trait NsFloat: FftNum + num_traits::Float + Default {
    /// Round an `f64` constant to this type.
    fn lit(x: f64) -> Self;
    /// Widen to `f64`.
    fn as_f64(self) -> f64;
    /// Name of the type, for messages ("f32", "f64").
    const NAME: &'static str;
}

impl NsFloat for f32 {
    #[inline]
    fn lit(x: f64) -> Self {
        x as f32
    }
    #[inline]
    fn as_f64(self) -> f64 {
        self as f64
    }
    const NAME: &'static str = "f32";
}

impl NsFloat for f64 {
    #[inline]
    fn lit(x: f64) -> Self {
        x
    }
    #[inline]
    fn as_f64(self) -> f64 {
        self
    }
    const NAME: &'static str = "f64";
}
