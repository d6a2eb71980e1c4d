//! The one registry of methods: every solver by name, with its default configuration, the
//! capabilities it requires and a constructor from a configuration table. The table runner, the
//! command-line program and the Python package all build their solvers here.
//!
//! ```
//! use diffinv_solvers::registry;
//! let enkg = registry::build("EnKG", &serde_json::json!({ "num_particles": 64 })).unwrap();
//! assert_eq!(enkg.name(), "EnKG");
//! // A misspelt key is an error that names it and the close matches.
//! let err = registry::build("EnKG", &serde_json::json!({ "num_particle": 64 })).unwrap_err();
//! assert!(err.to_string().contains("num_particles"));
//! ```

use std::sync::OnceLock;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::problem::{Capability, Problem};
use crate::solver::{DynSolver, Solver};
use crate::{
    Cps, CpsConfig, Daps, DapsConfig, Dds, DdsConfig, DiffPir, DiffPirConfig, Dpg, DpgConfig, Dps,
    DpsConfig, Eki, EkiConfig, Enkg, EnkgConfig, Gsg, GsgConfig, GsgScheme, LatentConfig,
    LatentOptimization, Mcg, McgConfig, Pigdm, PigdmConfig, PnpAdmm, PnpAdmmConfig, Red,
    RedConfig, RedDiff, RedDiffConfig, Result, Scg, ScgConfig, Smc, SmcConfig, SolverError,
    Tikhonov, TikhonovConfig, TotalVariation, TvConfig, Unconditional, UnconditionalConfig,
};

/// How a method uses the forward model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Family {
    /// Evaluates the forward model only (EnKG, CPS and their black-box baselines).
    DerivativeFree,
    /// Needs the forward model's gradient or adjoint (DPS, RED-diff, DDS, ...).
    GradientBased,
    /// A classical regulariser without a diffusion prior's sampler (Tikhonov, TV, PnP).
    Classical,
    /// Ignores the measurement (the prior's samples).
    Baseline,
}

type Builder = Box<dyn Fn(&Value) -> Result<Box<dyn DynSolver>> + Send + Sync>;

/// One method of the registry.
pub struct Method {
    /// The name (a results table's row label; what `diffinv methods` lists).
    pub name: &'static str,
    /// One line: what it is and where it comes from (paper and arXiv id).
    pub summary: &'static str,
    /// How it uses the forward model.
    pub family: Family,
    default: Value,
    requires: Vec<Capability>,
    build: Builder,
}

impl std::fmt::Debug for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Method")
            .field("name", &self.name)
            .field("requires", &self.requires)
            .finish()
    }
}

impl Method {
    /// The default configuration, every key with its value.
    pub fn default_config(&self) -> &Value {
        &self.default
    }
    /// What the method requires of a problem with its default configuration.
    pub fn requires(&self) -> &[Capability] {
        &self.requires
    }
    /// Build the method from `config`, a table of keys that override the defaults (nested
    /// tables merge key by key). Unknown keys are an error naming the key and its close
    /// matches; invalid values are the solver's own validation error.
    pub fn build(&self, config: &Value) -> Result<Box<dyn DynSolver>> {
        let mut merged = self.default.clone();
        merge(&mut merged, config, self.name, "")?;
        let solver = (self.build)(&merged)?;
        let name = solver.name();
        if !name.starts_with(self.name) {
            return Err(SolverError::Config(format!(
                "this configuration of {} is the method {name}: build it under that name",
                self.name
            )));
        }
        Ok(solver)
    }
    /// `Ok` when `problem` offers what this method needs with its default configuration, else
    /// an error saying what is missing.
    pub fn supports(&self, problem: &Problem<'_>) -> Result<()> {
        problem.check(self.name, &self.requires)
    }
}

/// Overlay `patch` onto `base` key by key; a key absent from `base` is an error.
fn merge(base: &mut Value, patch: &Value, method: &str, path: &str) -> Result<()> {
    let Value::Object(patch) = patch else {
        if patch.is_null() {
            return Ok(());
        }
        return Err(SolverError::Config(format!(
            "the configuration of {method} must be a table of keys, got {patch}"
        )));
    };
    let Value::Object(base) = base else {
        return Err(SolverError::Config(format!(
            "{method}: {path} is not a table"
        )));
    };
    for (k, v) in patch {
        let key = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
        match base.get_mut(k) {
            Some(b @ Value::Object(_)) if v.is_object() => merge(b, v, method, &key)?,
            Some(b) => *b = v.clone(),
            None => {
                let known: Vec<&String> = base.keys().collect();
                return Err(SolverError::Config(unknown_key(method, &key, k, &known)));
            }
        }
    }
    Ok(())
}

fn unknown_key(method: &str, key: &str, leaf: &str, known: &[&String]) -> String {
    let mut close: Vec<(usize, &String)> = known
        .iter()
        .map(|c| (edit_distance(leaf, c), *c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 3))
        .collect();
    close.sort();
    let close: Vec<&str> = close.iter().take(3).map(|(_, c)| c.as_str()).collect();
    let all: Vec<&str> = known.iter().map(|s| s.as_str()).collect();
    if close.is_empty() {
        format!(
            "unknown key {key:?} for {method}; its keys are: {}",
            all.join(", ")
        )
    } else {
        format!(
            "unknown key {key:?} for {method}; did you mean {}?",
            close.join(" or ")
        )
    }
}

/// Levenshtein distance between two short strings.
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

fn entry<C, S>(
    name: &'static str,
    summary: &'static str,
    family: Family,
    default: C,
    ctor: fn(C) -> Result<S>,
) -> Method
where
    C: Serialize + DeserializeOwned + Clone + 'static,
    S: Solver + 'static,
{
    let requires = ctor(default.clone())
        .map(|s| s.requires())
        .unwrap_or_default();
    let default = serde_json::to_value(&default).unwrap_or(Value::Null);
    let build: Builder = Box::new(move |v: &Value| {
        let cfg: C = serde_path_to_error::deserialize(v.clone()).map_err(|e| {
            let path = e.path().to_string();
            let at = if path == "." { String::new() } else { format!("{path}: ") };
            SolverError::Config(format!("invalid configuration of {name}: {at}{}", e.inner()))
        })?;
        Ok(Box::new(ctor(cfg)?) as Box<dyn DynSolver>)
    });
    Method {
        name,
        summary,
        family,
        default,
        requires,
        build,
    }
}

/// Every method, in a fixed order (derivative-free first).
pub fn registry() -> &'static [Method] {
    static REGISTRY: OnceLock<Vec<Method>> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        use Family::*;
        vec![
            entry("EnKG", "Ensemble Kalman Diffusion Guidance (Zheng et al., arXiv 2409.20175)", DerivativeFree, EnkgConfig::default(), Enkg::new),
            entry("CPS", "Constrained Particle Seeking with restarts (arXiv 2603.01837)", DerivativeFree, CpsConfig::default(), Cps::new),
            entry("EKI", "Ensemble Kalman Inversion, the EnKG reference's: adaptive step from a Gaussian random field (devzhk/enkg-pytorch algo/eki.py)", DerivativeFree, EkiConfig::default(), Eki::new),
            entry("EKI-PO", "Ensemble Kalman Inversion with perturbed observations from prior draws (Iglesias et al. 2013)", DerivativeFree, EkiConfig::perturbed_observations(), Eki::new),
            entry("TEKI", "Tikhonov-regularised EKI from prior draws (Chada et al. 2020)", DerivativeFree, EkiConfig { tikhonov_lambda: 1.0, ..EkiConfig::perturbed_observations() }, Eki::new),
            entry("Forward-GSG", "DPS with forward-difference Gaussian-smoothed gradients (EnKG baseline)", DerivativeFree, GsgConfig { scheme: GsgScheme::Forward, ..Default::default() }, Gsg::new),
            entry("Central-GSG", "DPS with central-difference Gaussian-smoothed gradients (EnKG baseline)", DerivativeFree, GsgConfig { scheme: GsgScheme::Central, ..Default::default() }, Gsg::new),
            entry("DPG", "Diffusion policy gradient (Tang et al. 2024)", DerivativeFree, DpgConfig::default(), Dpg::new),
            entry("SCG", "Stochastic control guidance, best of M candidates (Huang et al. 2024)", DerivativeFree, ScgConfig::default(), Scg::new),
            entry("DPS", "Diffusion posterior sampling (Chung et al., arXiv 2209.14687)", GradientBased, DpsConfig::default(), Dps::new),
            entry("DPS-MO", "DPS with Measurements Optimization (arXiv 2412.03941)", GradientBased, DpsConfig::mo_default(), Dps::new),
            entry("MCG", "Manifold constrained gradients (Chung et al., arXiv 2206.00941)", GradientBased, McgConfig::default(), Mcg::new),
            entry("PiGDM", "Pseudoinverse-guided diffusion (Song et al. 2023)", GradientBased, PigdmConfig::default(), Pigdm::new),
            entry("RED-diff", "Variational diffusion sampling (Mardani et al., arXiv 2305.04391)", GradientBased, RedDiffConfig::default(), RedDiff::new),
            entry("RED-diff-MO", "RED-diff with Measurements Optimization (arXiv 2412.03941)", GradientBased, RedDiffConfig::mo_default(), RedDiff::new),
            entry("DDS", "Decomposed diffusion sampling, CG in clean space (Chung et al., arXiv 2303.05754)", GradientBased, DdsConfig::default(), Dds::new),
            entry("DAPS", "Decoupled annealing posterior sampling (Zhang et al., arXiv 2407.01521)", GradientBased, DapsConfig::default(), Daps::new),
            entry("DiffPIR", "Plug-and-play restoration with diffusion (Zhu et al., arXiv 2305.08995)", GradientBased, DiffPirConfig::default(), DiffPir::new),
            entry("DMPlug", "Optimisation of the sampler's seed (Wang et al. 2024)", GradientBased, LatentConfig::default(), LatentOptimization::new),
            entry("CSGM", "Compressed sensing with a generative model: seed with a Gaussian penalty (Bora et al. 2017)", GradientBased, LatentConfig { latent_weight: 1.0, ..Default::default() }, LatentOptimization::new),
            entry("SMC", "Twisted sequential Monte Carlo (TDS; Wu et al. 2023)", GradientBased, SmcConfig::default(), Smc::new),
            entry("Tikhonov", "Tikhonov-regularised least squares by conjugate gradients", Classical, TikhonovConfig::default(), Tikhonov::new),
            entry("TV", "Total-variation regularisation (Chambolle-Pock)", Classical, TvConfig::default(), TotalVariation::new),
            entry("PnP-ADMM", "Plug-and-play ADMM with the prior's denoiser (Venkatakrishnan et al. 2013)", Classical, PnpAdmmConfig::default(), PnpAdmm::new),
            entry("RED", "Regularisation by denoising (Romano et al. 2017)", Classical, RedConfig::default(), Red::new),
            entry("unconditional", "The prior's samples, ignoring the measurement", Baseline, UnconditionalConfig::default(), Unconditional::new),
        ]
    })
}

/// The method called `name`, or an error listing the close matches.
pub fn method(name: &str) -> Result<&'static Method> {
    let all = registry();
    all.iter().find(|m| m.name == name).ok_or_else(|| {
        let names: Vec<String> = all.iter().map(|m| m.name.to_string()).collect();
        let refs: Vec<&String> = names.iter().collect();
        let msg = unknown_key("the registry", name, name, &refs);
        SolverError::Config(msg.replacen("unknown key", "unknown method", 1))
    })
}

/// Build method `name` from `config` (keys overriding its defaults).
pub fn build(name: &str, config: &Value) -> Result<Box<dyn DynSolver>> {
    method(name)?.build(config)
}

/// For every method, whether `problem` offers what it requires (and if not, why).
pub fn supported(problem: &Problem<'_>) -> Vec<(&'static str, Result<()>)> {
    registry()
        .iter()
        .map(|m| (m.name, m.supports(problem)))
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_defaults_build() {
        let mut names: Vec<&str> = registry().iter().map(|m| m.name).collect();
        let n = names.len();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), n, "duplicate method names");
        for m in registry() {
            let s = m.build(&Value::Null).unwrap();
            assert!(s.name().starts_with(m.name), "{} builds {}", m.name, s.name());
            assert!(m.default_config().is_object(), "{}", m.name);
        }
    }

    #[test]
    fn unknown_keys_and_methods_name_the_close_matches() {
        let e = build("EnKG", &serde_json::json!({"num_particle": 3})).unwrap_err();
        assert!(e.to_string().contains("did you mean num_particles"), "{e}");
        let e = build("EnKG", &serde_json::json!({"schedule": {"sigma_maxx": 3.0}})).unwrap_err();
        assert!(e.to_string().contains("schedule.sigma_maxx"), "{e}");
        let e = build("EnKg", &Value::Null).unwrap_err();
        assert!(e.to_string().contains("EnKG"), "{e}");
        let e = build("EnKG", &serde_json::json!({"num_particles": -3})).unwrap_err();
        assert!(e.to_string().contains("invalid configuration of EnKG"), "{e}");
        let e = build("EnKG", &serde_json::json!({"num_particles": 1})).unwrap_err();
        assert!(e.to_string().contains("at least 2 particles"), "{e}");
        let e = build("EnKG", &serde_json::json!([1, 2])).unwrap_err();
        assert!(e.to_string().contains("table of keys"), "{e}");
    }

    #[test]
    fn a_variant_must_keep_its_identity() {
        let e = build("Forward-GSG", &serde_json::json!({"scheme": "central"})).unwrap_err();
        assert!(e.to_string().contains("Central-GSG"), "{e}");
    }

    #[test]
    fn edit_distance_is_levenshtein() {
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("same", "same"), 0);
    }
}
