//! Noise-level discretisations.

use serde::{Deserialize, Serialize};

use crate::{PriorError, Result};

/// The EDM time discretisation (Karras et al. 2022, eq. 5):
///
/// `sigma_i = (sigma_max^(1/rho) + i/(n-1) (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho`,
/// `i = 0..n-1`, followed by `sigma_n = 0`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EdmSchedule {
    /// Largest noise level (default 80).
    pub sigma_max: f64,
    /// Smallest non-zero noise level (default 0.002).
    pub sigma_min: f64,
    /// Exponent (default 7).
    pub rho: f64,
}

impl Default for EdmSchedule {
    fn default() -> Self {
        Self { sigma_max: 80.0, sigma_min: 0.002, rho: 7.0 }
    }
}

impl EdmSchedule {
    /// Check `0 < sigma_min < sigma_max` and `rho > 0`, all finite.
    pub fn validate(&self) -> Result<()> {
        let ok = self.sigma_min.is_finite()
            && self.sigma_max.is_finite()
            && self.rho.is_finite()
            && self.sigma_min > 0.0
            && self.sigma_max > self.sigma_min
            && self.rho > 0.0;
        if ok {
            Ok(())
        } else {
            Err(PriorError::InvalidParameter {
                name: "schedule",
                reason: format!(
                    "need 0 < sigma_min < sigma_max and rho > 0, got sigma_min {}, sigma_max {}, rho {}",
                    self.sigma_min, self.sigma_max, self.rho
                ),
            })
        }
    }

    /// `n` noise levels from `sigma_max` down to `sigma_min`, then a final 0 (`n + 1` values).
    pub fn sigmas(&self, n: usize) -> Result<Vec<f64>> {
        self.validate()?;
        karras_sigmas(self.sigma_max, self.sigma_min, self.rho, n)
    }
}

/// `n` Karras noise levels from `start` to `end` (`start > end > 0`) followed by a final 0.
/// With `n = 1` the single level is `start`.
pub fn karras_sigmas(start: f64, end: f64, rho: f64, n: usize) -> Result<Vec<f64>> {
    if n == 0 {
        return Err(PriorError::InvalidParameter { name: "steps", reason: "need at least one step".into() });
    }
    if !(start.is_finite() && end.is_finite() && start > 0.0 && end > 0.0 && rho > 0.0) {
        return Err(PriorError::InvalidParameter {
            name: "sigma",
            reason: format!("need finite start > 0, end > 0, rho > 0 (got {start}, {end}, {rho})"),
        });
    }
    let mut out = Vec::with_capacity(n + 1);
    if n == 1 {
        out.push(start);
    } else {
        let a = start.powf(1.0 / rho);
        let b = end.powf(1.0 / rho);
        for i in 0..n {
            let t = i as f64 / (n - 1) as f64;
            out.push((a + t * (b - a)).powf(rho));
        }
    }
    out.push(0.0);
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use approx::assert_relative_eq;

    #[test]
    fn endpoints_and_monotone() {
        let s = EdmSchedule::default().sigmas(18).unwrap();
        assert_eq!(s.len(), 19);
        assert_relative_eq!(s[0], 80.0, max_relative = 1e-12);
        assert_relative_eq!(s[17], 0.002, max_relative = 1e-12);
        assert_eq!(s[18], 0.0);
        assert!(s.windows(2).all(|w| w[0] > w[1]));
    }

    #[test]
    fn rejects_bad_parameters() {
        let bad = EdmSchedule { sigma_max: 1.0, sigma_min: 2.0, rho: 7.0 };
        assert!(bad.sigmas(10).is_err());
        assert!(EdmSchedule::default().sigmas(0).is_err());
    }
}
