//! From a validated [`RunFile`] to the objects of a run: the prior, the forward model (the
//! worker pool started last, after everything else has been checked), the likelihood and the
//! solver from the registry.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use diffinv_operators::{
    eht::ClosureWeights, ClosureForward, ClosureLikelihood, DiagonalGaussianLikelihood, FnForward,
    ForwardModel, GaussianLikelihood, Likelihood, MatrixOperator, NavierStokes2d,
    NavierStokesConfig,
};
use diffinv_priors::{Denoiser, Gaussian, GaussianMixture, GaussianPrior};
use diffinv_process::{PoolOptions, ProcessForward};
use diffinv_solvers::registry::{self, Method};
use diffinv_solvers::{DynSolver, Problem};
use ndarray::{Array1, Array2};

use crate::config::{
    read_npy, ForwardSection, LikelihoodSection, PriorSection, RunFile,
};
use crate::CliError;

/// Everything a run needs, built and checked.
pub struct Setup {
    /// The prior, in its own (possibly normalised) space.
    pub prior: Box<dyn Denoiser>,
    model: Model,
    /// The likelihood of the observation.
    pub likelihood: Box<dyn Likelihood>,
    /// Physical units from the prior's space, `x = shift + scale ⊙ x_prior` as
    /// `(scale, shift)`, when they differ (a trained prior's normalisation, a standardised
    /// Gaussian prior).
    pub units: Option<(Array1<f32>, Array1<f32>)>,
    /// The observation.
    pub y: Array1<f32>,
    /// The true unknown, when the file gives it.
    pub truth: Option<Array1<f32>>,
    /// The method.
    pub method: &'static Method,
    /// The solver, configured.
    pub solver: Box<dyn DynSolver>,
    /// One line about each piece, for `check` and `summary.json`.
    pub description: Vec<(String, String)>,
}

impl std::fmt::Debug for Setup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Setup")
            .field("method", &self.method.name)
            .field("description", &self.description)
            .finish()
    }
}

fn key(k: &str, reason: impl std::fmt::Display) -> CliError {
    CliError::Config {
        key: k.into(),
        reason: reason.to_string(),
    }
}

/// The forward model: built in, or a pool of worker processes.
enum Model {
    Builtin(Box<dyn ForwardModel>),
    Process(ProcessForward),
}

/// Where worker processes log and what stops them.
#[derive(Debug, Clone, Default)]
pub struct WorkerSettings {
    /// The workers' stderr log (None: kept in memory for error messages only).
    pub log: Option<PathBuf>,
    /// The cancellation flag (Ctrl-C, SIGTERM).
    pub cancel: Option<Arc<AtomicBool>>,
}

impl Setup {
    /// Build every piece of `file`; the worker pool is started last.
    pub fn build(file: &RunFile, workers: WorkerSettings) -> Result<Self, CliError> {
        let mut description = Vec::new();
        // 1. The method (no compute): an unknown name or key fails first.
        let method = registry::method(&file.solver.method).map_err(|e| key("solver.method", e))?;
        let solver = method
            .build(&file.solver.config)
            .map_err(|e| key("solver", e))?;
        description.push((
            "method".into(),
            format!("{} ({}): {}", method.name, crate::methods::family(method), method.summary),
        ));

        // 2. The observation.
        let y: Array1<f32> = match (&file.data.y, &file.data.y_npy) {
            (Some(v), _) => v.iter().map(|&a| a as f32).collect(),
            (None, Some(p)) => {
                let (_, v) = read_npy(file, "data.y_npy", p)?;
                if v.is_empty() {
                    return Err(key("data.y_npy", "is empty"));
                }
                v.into_iter().map(|a| a as f32).collect()
            }
            (None, None) => return Err(key("data.y", "missing (or give data.y_npy)")),
        };

        // 3. The prior.
        let (prior, units, what) = build_prior(file)?;
        let d = prior.dim();
        description.push(("prior".into(), format!("{what}, d = {d}")));
        let truth = match &file.data.truth_npy {
            Some(p) => {
                let (_, v) = read_npy(file, "data.truth_npy", p)?;
                if v.len() != d {
                    return Err(key(
                        "data.truth_npy",
                        format!("has {} values, the unknown has {d}", v.len()),
                    ));
                }
                Some(v.into_iter().map(|a| a as f32).collect())
            }
            None => None,
        };
        if let Some(s) = &file.data.shape {
            let n: usize = s.iter().product();
            if n != d {
                return Err(key(
                    "data.shape",
                    format!("{s:?} holds {n} values, the unknown has {d}"),
                ));
            }
        }

        // 4. The likelihood (needs the forward model's layout for the EHT closures).
        let closure = match &file.forward {
            ForwardSection::Eht(cfg) => Some(
                ClosureForward::new(cfg).map_err(|e| key("forward", e))?,
            ),
            _ => None,
        };
        let likelihood: Box<dyn Likelihood> = match &file.likelihood {
            LikelihoodSection::Gaussian(g) => match (g.sigma, &g.sigma_npy) {
                (Some(s), _) => {
                    description.push(("likelihood".into(), format!("gaussian, sigma {s}, m = {}", y.len())));
                    Box::new(
                        GaussianLikelihood::new(y.clone(), s as f32)
                            .map_err(|e| key("likelihood.sigma", e))?,
                    )
                }
                (None, Some(p)) => {
                    let (_, v) = read_npy(file, "likelihood.sigma_npy", p)?;
                    description.push((
                        "likelihood".into(),
                        format!("gaussian, one sigma per measurement, m = {}", y.len()),
                    ));
                    Box::new(
                        DiagonalGaussianLikelihood::new(
                            y.clone(),
                            v.into_iter().map(|a| a as f32).collect(),
                        )
                        .map_err(|e| key("likelihood.sigma_npy", e))?,
                    )
                }
                (None, None) => return Err(key("likelihood.sigma", "missing (or give sigma_npy)")),
            },
            LikelihoodSection::EhtClosure(c) => {
                let Some(op) = &closure else {
                    return Err(key(
                        "likelihood.kind",
                        "\"eht-closure\" needs the EHT forward model (forward.kind = \"eht\")",
                    ));
                };
                let (nc, nl) = (op.n_cphase(), op.n_logcamp());
                let (_, sig) = read_npy(file, "likelihood.sigma_npy", &c.sigma_npy)?;
                if y.len() != nc + nl + 1 || sig.len() != nc + nl {
                    return Err(key(
                        "likelihood.sigma_npy",
                        format!(
                            "the EHT array gives {nc} closure phases and {nl} log closure amplitudes: \
                             y needs {} values (got {}), sigma {} (got {})",
                            nc + nl + 1,
                            y.len(),
                            nc + nl,
                            sig.len()
                        ),
                    ));
                }
                let yv: Vec<f64> = y.iter().map(|&a| a as f64).collect();
                description.push((
                    "likelihood".into(),
                    format!("EHT closure chi^2: {nc} closure phases, {nl} log closure amplitudes, flux"),
                ));
                Box::new(
                    ClosureLikelihood::from_parts(
                        &yv[..nc],
                        &sig[..nc],
                        &yv[nc..nc + nl],
                        &sig[nc..],
                        yv[nc + nl],
                        ClosureWeights::default(),
                    )
                    .map_err(|e| key("likelihood", e))?,
                )
            }
        };

        // 5. The forward model; a process pool is started only after a stand-in with its sizes
        //    has passed the problem's checks (dimensions, the method's required capabilities).
        let model = match &file.forward {
            ForwardSection::Process(p) => {
                let stand_in = FnForward::new(p.in_dim, p.out_dim, |_: &[f32]| Vec::new());
                check_problem(prior.as_ref(), &stand_in, likelihood.as_ref(), solver.as_ref(), "forward.in_dim")?;
                let options = PoolOptions {
                    base_dir: file.dir.clone(),
                    log: workers.log.clone(),
                    cancel: workers.cancel.clone(),
                };
                let pool = ProcessForward::start(p, options).map_err(|e| CliError::Process(e.to_string()))?;
                description.push((
                    "forward".into(),
                    format!(
                        "process `{}`: {} -> {} values",
                        p.command.join(" "),
                        p.in_dim,
                        p.out_dim
                    ),
                ));
                Model::Process(pool)
            }
            other => {
                let (model, what) = build_builtin(file, other, closure)?;
                description.push(("forward".into(), what));
                Model::Builtin(model)
            }
        };
        let setup = Self {
            prior,
            model,
            likelihood,
            units,
            y,
            truth,
            method,
            solver,
            description,
        };
        check_problem(
            setup.prior.as_ref(),
            setup.forward(),
            setup.likelihood.as_ref(),
            setup.solver.as_ref(),
            "forward",
        )?;
        Ok(setup)
    }

    /// The forward model in physical units.
    pub fn forward(&self) -> &dyn ForwardModel {
        match &self.model {
            Model::Builtin(f) => f.as_ref(),
            Model::Process(p) => p,
        }
    }

    /// The worker pool, for a process forward model.
    pub fn process(&self) -> Option<&ProcessForward> {
        match &self.model {
            Model::Process(p) => Some(p),
            Model::Builtin(_) => None,
        }
    }

    /// Stop the worker pool, if any (also done on drop).
    pub fn shutdown(self) -> Result<(), CliError> {
        match self.model {
            Model::Process(p) => p.shutdown().map_err(|e| CliError::Process(e.to_string())),
            Model::Builtin(_) => Ok(()),
        }
    }

    /// Map samples from the prior's space to physical units, in place.
    pub fn to_physical(&self, x: &mut Array2<f32>) {
        if let Some((scale, shift)) = &self.units {
            for mut row in x.rows_mut() {
                row.zip_mut_with(scale, |v, a| *v *= a);
                row += shift;
            }
        }
    }
}

/// The problem's own checks (dimensions) and the method's capabilities, before any compute.
fn check_problem(
    prior: &dyn Denoiser,
    forward: &dyn ForwardModel,
    likelihood: &dyn Likelihood,
    solver: &dyn DynSolver,
    what: &str,
) -> Result<(), CliError> {
    let problem = Problem::new(prior, forward, likelihood).map_err(|e| key(what, e))?;
    problem
        .check(&solver.name(), &solver.requires())
        .map_err(|e| key("solver.method", e))
}

/// `(scale, shift)` of `x = shift + scale ⊙ x_prior`.
type Units = Option<(Array1<f32>, Array1<f32>)>;

/// The same scale and shift for every coordinate (a trained prior's normalisation), or none
/// when they are the identity.
#[cfg_attr(not(feature = "torch"), allow(dead_code))]
fn uniform_units(d: usize, shift: f64, scale: f64) -> Units {
    (shift != 0.0 || scale != 1.0)
        .then(|| (Array1::from_elem(d, scale as f32), Array1::from_elem(d, shift as f32)))
}

/// The prior, its map to physical units and a description.
fn build_prior(file: &RunFile) -> Result<(Box<dyn Denoiser>, Units, String), CliError> {
    match &file.prior {
        PriorSection::Gaussian(g) => {
            let mean: Array1<f64> = match (&g.mean, &g.mean_npy) {
                (Some(m), _) => Array1::from(m.clone()),
                (None, Some(p)) => Array1::from(read_npy(file, "prior.mean_npy", p)?.1),
                (None, None) => return Err(key("prior.mean", "missing (or give mean_npy)")),
            };
            let d = mean.len();
            if d == 0 {
                return Err(key("prior.mean", "is empty"));
            }
            let gauss = if let Some(v) = &g.variances {
                if v.len() != d {
                    return Err(key("prior.variances", format!("has {} values for d = {d}", v.len())));
                }
                Gaussian::diagonal(mean, Array1::from(v.clone())).map_err(|e| key("prior.variances", e))?
            } else if let Some(p) = &g.variance_npy {
                let (_, v) = read_npy(file, "prior.variance_npy", p)?;
                if v.len() != d {
                    return Err(key("prior.variance_npy", format!("has {} values for d = {d}", v.len())));
                }
                Gaussian::diagonal(mean, Array1::from(v)).map_err(|e| key("prior.variance_npy", e))?
            } else if let Some(p) = &g.covariance_npy {
                let (shape, v) = read_npy(file, "prior.covariance_npy", p)?;
                if shape != [d, d] {
                    return Err(key("prior.covariance_npy", format!("has shape {shape:?}, needs [{d}, {d}]")));
                }
                let cov = Array2::from_shape_vec((d, d), v).map_err(|e| key("prior.covariance_npy", e))?;
                Gaussian::full(mean, cov).map_err(|e| key("prior.covariance_npy", e))?
            } else {
                Gaussian::isotropic(mean, g.variance.unwrap_or(1.0)).map_err(|e| key("prior.variance", e))?
            };
            if g.standardize {
                // N(mean, diag(var)) = mean + sd ⊙ N(0, I): solve in the unit space.
                let diffinv_priors::Covariance::Diagonal(var) = gauss.covariance() else {
                    return Err(key(
                        "prior.standardize",
                        "needs a diagonal covariance (variance or variances)",
                    ));
                };
                let sd: Array1<f32> = var.mapv(|v| v.sqrt() as f32);
                let mean_f: Array1<f32> = gauss.mean().mapv(|v| v as f32);
                let unit = Gaussian::isotropic(Array1::zeros(d), 1.0).map_err(|e| key("prior", e))?;
                return Ok((
                    Box::new(GaussianPrior::new(unit)),
                    Some((sd, mean_f)),
                    "gaussian, standardised (the solver sees N(0, I))".into(),
                ));
            }
            Ok((Box::new(GaussianPrior::new(gauss)), None, "gaussian".into()))
        }
        PriorSection::GaussianMixture(m) => {
            let means: Vec<Vec<f64>> = match (&m.means, &m.means_npy) {
                (Some(v), _) => v.clone(),
                (None, Some(p)) => {
                    let (shape, v) = read_npy(file, "prior.means_npy", p)?;
                    if shape.len() != 2 || shape[0] != m.weights.len() || shape[1] == 0 {
                        return Err(key(
                            "prior.means_npy",
                            format!("has shape {shape:?}, needs [{}, d]", m.weights.len()),
                        ));
                    }
                    v.chunks(shape[1]).map(<[f64]>::to_vec).collect()
                }
                (None, None) => return Err(key("prior.means", "missing (or give means_npy)")),
            };
            let comps = means
                .into_iter()
                .map(|mu| Gaussian::isotropic(Array1::from(mu), m.variance))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| key("prior.means", e))?;
            let k = comps.len();
            let gmm = GaussianMixture::new(&m.weights, comps).map_err(|e| key("prior.weights", e))?;
            Ok((Box::new(gmm), None, format!("gaussian mixture of {k} components")))
        }
        PriorSection::Trained(t) => neural::trained(file, t),
        PriorSection::Torchscript(t) => neural::torchscript(file, t),
    }
}

/// A built-in forward model and its description.
fn build_builtin(
    file: &RunFile,
    section: &ForwardSection,
    closure: Option<ClosureForward>,
) -> Result<(Box<dyn ForwardModel>, String), CliError> {
    Ok(match section {
        ForwardSection::Matrix(m) => {
            let (shape, v) = read_npy(file, "forward.matrix_npy", &m.matrix_npy)?;
            if shape.len() != 2 || shape.contains(&0) {
                return Err(key("forward.matrix_npy", format!("has shape {shape:?}, needs [m, d]")));
            }
            let a = Array2::from_shape_vec((shape[0], shape[1]), v.into_iter().map(|x| x as f32).collect())
                .map_err(|e| key("forward.matrix_npy", e))?;
            let op = MatrixOperator::new(a).map_err(|e| key("forward.matrix_npy", e))?;
            (Box::new(op), format!("matrix {} x {}", shape[0], shape[1]))
        }
        ForwardSection::NavierStokes(n) => {
            let mut cfg = NavierStokesConfig::enkg(n.resolution, 0.0);
            cfg.subsample = n.subsample;
            cfg.input_scale = n.input_scale;
            cfg.precision = if n.precision == "f64" {
                diffinv_operators::navier_stokes::Precision::F64
            } else {
                diffinv_operators::navier_stokes::Precision::F32
            };
            let op = NavierStokes2d::new(cfg).map_err(|e| key("forward", e))?;
            let what = format!(
                "Navier-Stokes {r}x{r}, Re 200, T 1, observed on every {s}-th grid point",
                r = n.resolution,
                s = n.subsample
            );
            (Box::new(op), what)
        }
        ForwardSection::Imaging(i) => {
            let op = diffinv_operators::imaging::standard_task(&i.task, i.shape, i.seed)
                .map_err(|e| key("forward.task", e))?;
            (op, format!("imaging task {} on {:?} images", i.task, i.shape))
        }
        ForwardSection::Eht(_) => match closure {
            Some(op) => {
                let what = format!(
                    "EHT closure quantities: {} closure phases, {} log closure amplitudes, flux",
                    op.n_cphase(),
                    op.n_logcamp()
                );
                (Box::new(op), what)
            }
            None => return Err(key("forward", "the EHT model was not built")),
        },
        ForwardSection::Process(_) => {
            return Err(key("forward.kind", "a process model is started by the pool"))
        }
    })
}

#[cfg(feature = "torch")]
mod neural {
    use super::*;
    use crate::config::{ScriptKind, TorchScriptPrior, TrainedPrior};
    use diffinv_priors::neural::{NeuralDenoiser, PriorFolder, ScriptedEdm, ScriptedVpEpsilon};
    use tch::Device;

    pub(super) fn trained(
        file: &RunFile,
        t: &TrainedPrior,
    ) -> Result<(Box<dyn Denoiser>, Units, String), CliError> {
        let dir = file.resolve(&t.folder);
        let folder = PriorFolder::read(&dir).map_err(|e| key("prior.folder", e))?;
        let net = folder
            .load(t.batch, Device::Cpu)
            .map_err(|e| key("prior.folder", e))?;
        let what = format!(
            "trained EDM prior {} ({:?} images)",
            dir.display(),
            folder.shape()
        );
        let d = net.dim();
        Ok((Box::new(net), uniform_units(d, folder.shift, folder.scale), what))
    }

    pub(super) fn torchscript(
        file: &RunFile,
        t: &TorchScriptPrior,
    ) -> Result<(Box<dyn Denoiser>, Units, String), CliError> {
        let path = file.resolve(&t.file);
        let shape = t.shape.map(|s| s as i64);
        let net: Box<dyn diffinv_priors::neural::TorchDenoise> = match t.network {
            ScriptKind::Edm => Box::new(
                ScriptedEdm::load(&path, shape, Device::Cpu).map_err(|e| key("prior.file", e))?,
            ),
            ScriptKind::VpEps => Box::new(
                ScriptedVpEpsilon::load_ddpm(&path, shape, Device::Cpu)
                    .map_err(|e| key("prior.file", e))?,
            ),
        };
        let den = NeuralDenoiser::new(net, t.batch).map_err(|e| key("prior.file", e))?;
        let d = den.dim();
        Ok((
            Box::new(den),
            uniform_units(d, t.shift, t.scale),
            format!("TorchScript {:?} network {}", t.network, path.display()),
        ))
    }
}

#[cfg(not(feature = "torch"))]
mod neural {
    use super::*;
    use crate::config::{TorchScriptPrior, TrainedPrior};

    fn missing() -> CliError {
        key(
            "prior.kind",
            "neural priors need libtorch, and this diffinv was built without it: \
             install the full program with `cargo xtask install-cli`",
        )
    }
    pub(super) fn trained(
        _: &RunFile,
        _: &TrainedPrior,
    ) -> Result<(Box<dyn Denoiser>, Units, String), CliError> {
        Err(missing())
    }
    pub(super) fn torchscript(
        _: &RunFile,
        _: &TorchScriptPrior,
    ) -> Result<(Box<dyn Denoiser>, Units, String), CliError> {
        Err(missing())
    }
}
