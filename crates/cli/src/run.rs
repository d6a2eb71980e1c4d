//! `diffinv run` and `diffinv check`.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use diffinv_operators::{Affine, ForwardModel};
use diffinv_solvers::{Checkpoint, CostSummary, Problem, Runner, SolverError};
use serde_json::json;

use diffinv_mpi::{AgreedCancel, Collective, ShardedDenoiser, ShardedForward};

use crate::config::RunFile;
use crate::output::{self, files};
use crate::setup::{Setup, WorkerSettings};
use crate::CliError;

/// What `diffinv run` was asked.
#[derive(Debug, Clone)]
pub struct RunArgs {
    /// The run file.
    pub config: PathBuf,
    /// `--out`: the results folder (else `[run] out`, else `results/<file stem>` next to the file).
    pub out: Option<PathBuf>,
    /// `--seed` (else `[run] seed`).
    pub seed: Option<u64>,
    /// `--resume`: continue from the folder's checkpoint.
    pub resume: bool,
    /// Stop after this many steps as if interrupted (a deterministic Ctrl-C, for tests).
    pub stop_after: Option<usize>,
}

/// The results folder of a run.
pub fn out_dir(file: &RunFile, flag: Option<&Path>) -> PathBuf {
    match (flag, &file.run.out) {
        (Some(o), _) => o.to_path_buf(),
        (None, Some(o)) => file.resolve(o),
        (None, None) => {
            let stem = file
                .path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "run".into());
            file.dir.join("results").join(stem)
        }
    }
}

fn out_err(msg: String) -> CliError {
    CliError::Output(msg)
}

/// What the results folder holds before a run.
#[derive(Debug, Clone, PartialEq)]
pub enum FolderState {
    /// Absent or empty.
    Fresh,
    /// Holds a checkpoint at this step.
    Checkpoint(usize),
    /// Holds a finished run.
    Finished,
    /// Holds other files.
    Other,
}

/// Look at `out` without changing it.
pub fn folder_state(out: &Path) -> Result<FolderState, CliError> {
    if !out.exists() {
        return Ok(FolderState::Fresh);
    }
    if !out.is_dir() {
        return Err(out_err(format!("{}: exists and is not a folder", out.display())));
    }
    let ckpt = out.join(files::CHECKPOINT);
    if ckpt.is_file() {
        let c = Checkpoint::load(&ckpt)?;
        return Ok(FolderState::Checkpoint(c.step));
    }
    if out.join(files::SUMMARY).is_file() {
        return Ok(FolderState::Finished);
    }
    let mut entries = std::fs::read_dir(out).map_err(|e| CliError::Io {
        path: out.to_path_buf(),
        reason: e.to_string(),
    })?;
    Ok(if entries.next().is_none() {
        FolderState::Fresh
    } else {
        FolderState::Other
    })
}

/// The ensemble size of a method's configuration (`num_particles`, else `num_candidates`,
/// else 1).
fn particles_of(config: &serde_json::Value) -> usize {
    ["num_particles", "num_candidates"]
        .iter()
        .find_map(|k| config.get(*k).and_then(serde_json::Value::as_u64))
        .map_or(1, |n| n.max(1) as usize)
}

/// Run the method with its configuration on a stand-in problem of the same capabilities in one
/// dimension (a unit Gaussian prior, `G(x) = x`, a Gaussian likelihood of the same kind): what
/// it costs in evaluations, at almost no cost.
fn dry_run_counts(setup: &Setup) -> Result<CostSummary, SolverError> {
    use diffinv_operators::{DiagonalGaussianLikelihood, FnForward, GaussianLikelihood, Likelihood, MatrixOperator};
    let prior = diffinv_priors::GaussianPrior::new(
        diffinv_priors::Gaussian::isotropic(ndarray::array![0.0], 1.0)
            .map_err(|e| diffinv_solvers::problem::prior_error(e, 0))?,
    );
    let matrix;
    let black_box;
    let fwd: &dyn ForwardModel = if setup.forward().as_linear().is_some()
        || setup.forward().as_differentiable().is_some()
    {
        matrix = MatrixOperator::new(ndarray::array![[1.0f32]])
            .map_err(|e| diffinv_solvers::problem::operator_error(e, 0))?;
        &matrix
    } else {
        black_box = FnForward::new(1, 1, |x: &[f32]| x.to_vec());
        &black_box
    };
    let iso;
    let diag;
    let lik: &dyn Likelihood = match setup.likelihood.as_gaussian() {
        Some(g) => {
            iso = GaussianLikelihood::new(ndarray::array![0.5f32], g.sigma_y().max(0.1))
                .map_err(|e| diffinv_solvers::problem::operator_error(e, 0))?;
            &iso
        }
        None => {
            diag = DiagonalGaussianLikelihood::new(ndarray::array![0.5f32], ndarray::array![0.1f32])
                .map_err(|e| diffinv_solvers::problem::operator_error(e, 0))?;
            &diag
        }
    };
    let problem = Problem::new(&prior, fwd, lik)?;
    let out = Runner::new(problem).run(setup.solver.as_ref(), 0)?;
    Ok(out.cost)
}

/// The forward model the solver sees: physical units mapped from the prior's space when the
/// prior is normalised (`x = shift + scale * x_prior`), with every capability passed through.
fn with_units<'a>(
    setup: &'a Setup,
    slot: &'a mut Option<Affine<&'a dyn ForwardModel>>,
) -> Result<&'a dyn ForwardModel, CliError> {
    let Some((scale, shift)) = &setup.units else {
        return Ok(setup.forward());
    };
    let a = Affine::per_component(setup.forward(), scale.clone(), shift.clone()).map_err(|e| {
        CliError::Config {
            key: "prior".into(),
            reason: e.to_string(),
        }
    })?;
    Ok(slot.insert(a))
}

/// The ranks of an MPI job (or none): what [`run`] shares with the others.
struct Ranks {
    comm: Option<Arc<dyn Collective>>,
}

impl Ranks {
    fn rank(&self) -> usize {
        self.comm.as_ref().map_or(0, |c| c.rank())
    }
    fn size(&self) -> usize {
        self.comm.as_ref().map_or(1, |c| c.size())
    }
    /// `r` where every rank's result is `Ok`; else this rank's own error, or
    /// [`CliError::Elsewhere`] naming the failed rank. A collective: every rank calls it at the
    /// same point, so that no rank goes on into a step that a failed rank never reaches.
    fn together<T>(&self, r: Result<T, CliError>) -> Result<T, CliError> {
        let Some(c) = &self.comm else { return r };
        let mine = r.as_ref().map(|_| ()).map_err(|e| e.to_string());
        match (diffinv_mpi::agree(c.as_ref(), mine), r) {
            (Ok(()), r) => r,
            (Err(_), Err(e)) => Err(e),
            (Err(f), Ok(_)) => Err(CliError::Elsewhere {
                rank: f.rank,
                message: f.message,
            }),
        }
    }
    /// Every rank's `value` (a collective).
    fn gather_json(&self, value: serde_json::Value) -> Vec<serde_json::Value> {
        let Some(c) = &self.comm else { return vec![value] };
        let bytes = serde_json::to_vec(&value).unwrap_or_default();
        let lens = c.all_gather_u64(&[bytes.len() as u64]);
        let counts: Vec<usize> = lens.iter().map(|&l| l as usize).collect();
        let all = c.all_gather_bytes(&bytes, &counts);
        let mut at = 0;
        counts
            .iter()
            .map(|&n| {
                let v = serde_json::from_slice(&all[at..at + n]).unwrap_or_default();
                at += n;
                v
            })
            .collect()
    }
}

/// A folder's state as two numbers, to compare the ranks' views of it.
fn state_code(s: &FolderState) -> [u64; 2] {
    match s {
        FolderState::Fresh => [0, 0],
        FolderState::Checkpoint(k) => [1, *k as u64],
        FolderState::Finished => [2, 0],
        FolderState::Other => [3, 0],
    }
}

/// The words for a [`state_code`].
fn describe_state(code: &[u64]) -> String {
    match code {
        [0, _] => "no results".into(),
        [1, k] => format!("a checkpoint at step {k}"),
        [2, _] => "a finished run".into(),
        _ => "other files".into(),
    }
}

/// The worker log of `rank` of `ranks`: `workers.log`, or `workers.rank-K.log` under MPI.
pub fn workers_log_name(rank: usize, ranks: usize) -> String {
    if ranks > 1 {
        format!("workers.rank-{rank}.log")
    } else {
        files::WORKERS_LOG.to_string()
    }
}

/// `diffinv run`: solve, write the results folder, return it.
///
/// With `comm` (the ranks of an MPI job, or any other [`Collective`]), every rank calls this
/// with the same arguments: each builds the problem and steps the solver, every forward
/// evaluation is sharded over the ranks ([`ShardedForward`]), every rank reads the checkpoint
/// on `--resume`, and rank 0 alone writes the results folder, `steps.csv`, `summary.json` and
/// the checkpoints. Each rank runs its own worker pool (`workers` processes per rank) and logs
/// to `workers.rank-K.log`. The samples are bit-identical to a run without `comm`.
pub fn run(
    args: &RunArgs,
    cancel: Arc<AtomicBool>,
    comm: Option<Arc<dyn Collective>>,
) -> Result<PathBuf, CliError> {
    let ranks = Ranks { comm };
    let (rank, size) = (ranks.rank(), ranks.size());
    let lead = rank == 0;
    // 1. Every rank reads the run file and looks at the results folder.
    let first = (|| {
        let file = RunFile::load(&args.config)?;
        let out = out_dir(&file, args.out.as_deref());
        let state = folder_state(&out)?;
        Ok((file, out, state))
    })();
    let (file, out, state) = ranks.together(first)?;
    let seed = args.seed.unwrap_or(file.run.seed);
    if let Some(c) = &ranks.comm {
        let codes = c.all_gather_u64(&state_code(&state));
        if let Some(r) = (1..size).find(|&r| codes[2 * r..2 * r + 2] != codes[..2]) {
            return Err(out_err(format!(
                "{}: rank 0 sees {}, rank {r} sees {}: the results folder must be on a file system that every node of the job shares",
                out.display(),
                describe_state(&codes[..2]),
                describe_state(&codes[2 * r..2 * r + 2])
            )));
        }
    }
    let resume_step = match (&state, args.resume) {
        (FolderState::Fresh, _) => None,
        (FolderState::Checkpoint(k), true) => Some(*k),
        (FolderState::Checkpoint(k), false) => {
            return Err(out_err(format!(
                "{}: holds an unfinished run (checkpoint at step {k}): pass --resume to continue it, or choose another --out",
                out.display()
            )))
        }
        (FolderState::Finished, _) => {
            return Err(out_err(format!(
                "{}: holds a finished run (summary.json): choose another --out",
                out.display()
            )))
        }
        (FolderState::Other, true) => None,
        (FolderState::Other, false) => {
            return Err(out_err(format!(
                "{}: is not empty: choose another --out (or --resume an interrupted run there)",
                out.display()
            )))
        }
    };
    // 2. Rank 0 creates the folder; the top-most folder it creates is removed again if the
    //    set-up fails.
    let created = out
        .ancestors()
        .take_while(|p| !p.as_os_str().is_empty() && !p.exists())
        .last()
        .map(Path::to_path_buf);
    let made = if lead {
        std::fs::create_dir_all(&out).map_err(|e| CliError::Io {
            path: out.clone(),
            reason: e.to_string(),
        })
    } else {
        Ok(())
    };
    ranks.together(made)?;
    let seen = if lead || out.is_dir() {
        Ok(())
    } else {
        Err(out_err(format!(
            "{}: this rank does not see the folder rank 0 created: the results folder must be on a file system that every node of the job shares",
            out.display()
        )))
    };
    ranks.together(seen)?;
    // 3. Every rank builds the problem and starts its own workers.
    let workers = WorkerSettings {
        log: Some(out.join(workers_log_name(rank, size))),
        cancel: Some(cancel.clone()),
    };
    let setup = match ranks.together(Setup::build(&file, workers)) {
        Ok(s) => s,
        Err(e) => {
            // A run that never started leaves nothing behind (a worker's failed start is quoted
            // in the error itself); rank 0 removes what it created.
            if let (Some(top), true) = (&created, lead) {
                let _ = std::fs::remove_dir_all(top);
            }
            return Err(e);
        }
    };
    let mut slot = None;
    let forward = with_units(&setup, &mut slot)?;
    let sharded;
    let forward: &dyn ForwardModel = match &ranks.comm {
        Some(c) => {
            sharded = ShardedForward::new(forward, c.clone());
            &sharded
        }
        None => forward,
    };
    let sharded_prior;
    let prior: &dyn diffinv_priors::Denoiser = match (&ranks.comm, file.run.shard_prior) {
        (Some(c), true) => {
            sharded_prior = ShardedDenoiser::new(setup.prior.as_ref(), c.clone());
            &sharded_prior
        }
        _ => setup.prior.as_ref(),
    };
    let problem = Problem::new(prior, forward, setup.likelihood.as_ref())?;
    let steps = setup.solver.num_steps();
    let csv = if lead {
        output::StepsCsv::open(&out, resume_step).map(Some)
    } else {
        Ok(None)
    };
    let mut csv = ranks.together(csv)?;
    let t0 = Instant::now();
    let result = {
        let mut runner = Runner::new(problem)
            .with_checkpoint(out.join(files::CHECKPOINT))
            .with_checkpoint_interval(Duration::from_secs_f64(file.run.checkpoint_every_s))
            .with_checkpoint_writer(lead);
        runner = match &ranks.comm {
            // Every rank stops before the same step, whichever rank the signal reached first.
            Some(c) => {
                let agreed = AgreedCancel::new(c.clone(), cancel);
                runner.with_cancel(agreed.flag()).observe(agreed)
            }
            None => runner.with_cancel(cancel),
        };
        if let Some(csv) = csv.as_mut() {
            runner = runner.observe(csv);
        }
        if let Some(k) = args.stop_after {
            runner = runner.stop_after(k);
        }
        if lead {
            runner = if std::io::stderr().is_terminal() {
                runner.with_progress()
            } else {
                runner.observe(output::LogLines::new(Duration::from_secs(10)))
            };
        }
        runner.run_partial(setup.solver.as_ref(), seed)
    };
    let interrupted = |step: usize| CliError::Interrupted {
        step,
        steps,
        out: out.clone(),
        config: args.config.clone(),
        out_flag: args
            .out
            .as_ref()
            .map(|o| format!(" --out {}", o.display()))
            .unwrap_or_default(),
        ranks: size,
    };
    let run = match result {
        Ok(Some(r)) => r,
        Ok(None) => {
            // Rank 0 wrote the checkpoint before returning; only it reports the step.
            let step = if lead {
                Checkpoint::load(&out.join(files::CHECKPOINT))?.step
            } else {
                0
            };
            return Err(interrupted(step));
        }
        Err(SolverError::Interrupted { step }) => return Err(interrupted(step)),
        Err(e) => return Err(e.into()),
    };
    let wall = t0.elapsed().as_secs_f64();
    // 4. Every rank finished the same run: what each rank's workers and forward model did.
    let per_rank = ranks.gather_json(json!({
        "rank": rank,
        "forward_seconds": run.cost.fwd_seconds,
        "prior_seconds": run.cost.den_seconds,
        "workers": setup.process().map(|p| serde_json::to_value(p.stats()).unwrap_or_default()),
    }));
    if !lead {
        setup.shutdown()?;
        return Ok(out);
    }
    if let Some(e) = csv.as_mut().and_then(|c| c.error.take()) {
        return Err(e);
    }
    let mut samples = run.samples;
    setup.to_physical(&mut samples);
    let (mean, std) = output::write_samples(&out, &samples)?;
    let mut written: Vec<String> = [files::SAMPLES, files::MEAN, files::STD, files::STEPS, files::SUMMARY]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let mut truth_report = serde_json::Value::Null;
    if let Some(t) = &setup.truth {
        let rel = diffinv_metrics::relative_l2(mean.view(), t.view()).ok();
        truth_report = json!({ "relative_l2_of_mean": rel });
    }
    if let Some(shape) = &file.data.shape {
        let title = format!("{}: posterior of {} samples", setup.method.name, samples.nrows());
        output::figure(&out, &title, shape, &mean, &std, setup.truth.as_ref())?;
        written.push(files::FIGURE.into());
    }
    // The workers' counts, summed over the ranks.
    let stats = setup.process().map(|_| {
        let mut total = serde_json::Map::new();
        for w in per_rank.iter().filter_map(|r| r["workers"].as_object()) {
            for (k, v) in w {
                let sum = total.get(k).and_then(|t| t.as_u64()).unwrap_or(0) + v.as_u64().unwrap_or(0);
                total.insert(k.clone(), json!(sum));
            }
        }
        serde_json::Value::Object(total)
    });
    if setup.process().is_some() {
        written.extend((0..size).map(|r| workers_log_name(r, size)));
    }
    let mut resolved = file.resolved();
    resolved["run"]["seed"] = json!(seed);
    resolved["run"]["out"] = json!(out.display().to_string());
    let summary = json!({
        "diffinv": {
            "version": env!("CARGO_PKG_VERSION"),
            "commit": option_env!("DIFFINV_GIT_COMMIT"),
        },
        "method": setup.method.name,
        "solver_config": setup.solver.config_value()?,
        "seed": seed,
        "particles": samples.nrows(),
        "dim": samples.ncols(),
        "measurements": setup.y.len(),
        "steps": steps,
        "resumed_from_step": resume_step,
        "final_misfit": run.log.last().and_then(|s| s.misfit),
        "cost": run.cost,
        "wall_seconds_this_invocation": wall,
        "ranks": size,
        "per_rank": if ranks.comm.is_some() { json!(per_rank) } else { serde_json::Value::Null },
        "failures": {
            "failed_forward_rows": run.cost.failed,
            "workers": stats,
        },
        "truth": truth_report,
        "problem": setup.description.iter().cloned().collect::<std::collections::BTreeMap<_, _>>(),
        "config": resolved,
        "outputs": written,
    });
    output::write_json(&out.join(files::SUMMARY), &summary)?;
    let ckpt = out.join(files::CHECKPOINT);
    let _ = std::fs::remove_file(&ckpt);
    let mut tmp = ckpt.into_os_string();
    tmp.push(".tmp");
    let _ = std::fs::remove_file(tmp);
    setup.shutdown()?;
    Ok(out)
}

/// `diffinv check`: validate, start the workers, time one step, and describe the run.
///
/// `ranks`: the MPI ranks the run will have (1 without MPI); the estimate divides the forward
/// model's time by it (each rank evaluates `1/ranks` of every batch, with its own workers).
pub fn check(
    config: &Path,
    out_flag: Option<&Path>,
    cancel: Arc<AtomicBool>,
    ranks: usize,
) -> Result<String, CliError> {
    let ranks = ranks.max(1);
    let file = RunFile::load(config)?;
    let out = out_dir(&file, out_flag);
    let setup = Setup::build(
        &file,
        WorkerSettings {
            log: None,
            cancel: Some(cancel.clone()),
        },
    )?;
    let mut lines = vec![format!("{}: every key is valid", config.display())];
    for (k, v) in &setup.description {
        lines.push(format!("{k:<11} {v}"));
    }
    let solver_config = setup.solver.config_value()?;
    let particles = solver_config
        .get("num_particles")
        .and_then(|v| v.as_u64())
        .map(|n| format!("{n} particles, "))
        .unwrap_or_default();
    let steps = setup.solver.num_steps();
    lines.push(format!("{:<11} {particles}{steps} steps, seed {}", "solver", file.run.seed));
    if let (Some(p), crate::config::ForwardSection::Process(cfg)) = (setup.process(), &file.forward) {
        let n = cfg
            .workers
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        lines.push(format!(
            "{:<11} {n} worker(s) started, protocol and sizes checked (restarts {})",
            "workers",
            p.stats().restarts
        ));
    }
    if ranks > 1 {
        lines.push(format!(
            "{:<11} {ranks} MPI ranks: each evaluates 1/{ranks} of every forward batch with its own model{}; {}",
            "ranks",
            if setup.process().is_some() { " and workers" } else { "" },
            if file.run.shard_prior {
                "and of every prior batch (shard_prior)"
            } else {
                "every rank evaluates the prior on every row"
            }
        ));
    }
    let mut slot = None;
    let forward = with_units(&setup, &mut slot)?;
    let n = particles_of(&solver_config);

    // One timed batch of the forward model on `n` plausible inputs (the prior's denoised
    // estimates of pure noise at sigma = 10, so roughly prior-typical values).
    let d = setup.prior.dim();
    let noise = ndarray::Array2::from_shape_fn((n, d), |(i, j)| {
        let k = (i * 7919 + j * 104_729) as f32;
        10.0 * (k.sin() * 43_758.547).fract()
    });
    // The first call of a network pays libtorch's start-up: time the second.
    let mut t_den = 0.0;
    let mut x = noise.clone();
    for _ in 0..2 {
        let t = Instant::now();
        x = setup.prior.denoise(noise.view(), 10.0).map_err(|e| {
            CliError::Solver(diffinv_solvers::problem::prior_error(e, 0))
        })?;
        t_den = t.elapsed().as_secs_f64() / n as f64;
    }
    let t = Instant::now();
    let batch = forward
        .forward_partial(x.view())
        .map_err(|e| CliError::Solver(diffinv_solvers::problem::operator_error(e, 0)))?;
    let t_fwd = t.elapsed().as_secs_f64() / n as f64;
    let non_finite = batch
        .y
        .outer_iter()
        .filter(|r| r.iter().any(|v| !v.is_finite()))
        .count();
    lines.push(format!(
        "{:<11} one batch of {n}: forward {:.3} s ({} of {n} rows failed{}), prior {:.3} s",
        "probe",
        t_fwd * n as f64,
        batch.failures.len().max(non_finite),
        batch
            .failures
            .first()
            .map(|f| format!(", e.g. row {}: {}", f.row, f.reason))
            .unwrap_or_default(),
        t_den * n as f64,
    ));
    // The evaluation counts of this method and configuration, from a dry run on a
    // one-dimensional stand-in problem with the same capabilities (the counts of the methods
    // depend on the configuration, not on the sizes; adaptive schedules may differ).
    match dry_run_counts(&setup) {
        Ok(c) => lines.push(format!(
            "{:<11} {} forward evaluations in {} batches, {} prior evaluations, {} gradient evaluations: about {} (from the probe's per-row times)",
            "estimate",
            c.fwd_total,
            c.fwd_seq,
            c.den_total,
            c.fwd_grad_total + c.den_grad_total,
            human_seconds(
                (c.fwd_total + c.fwd_grad_total) as f64 * t_fwd / ranks as f64
                    + (c.den_total + 2 * c.den_grad_total) as f64 * t_den
                        / if file.run.shard_prior { ranks as f64 } else { 1.0 }
            )
        )),
        Err(e) => lines.push(format!("{:<11} not available: {e}", "estimate")),
    }
    let state = match folder_state(&out)? {
        FolderState::Fresh => "new".to_string(),
        FolderState::Checkpoint(s) => format!("holds a checkpoint at step {s}: `--resume` continues it"),
        FolderState::Finished => "holds a finished run: choose another --out".into(),
        FolderState::Other => "not empty: choose another --out".into(),
    };
    lines.push(format!("{:<11} {} ({state})", "results", out.display()));
    setup.shutdown()?;
    Ok(lines.join("\n"))
}

fn human_seconds(s: f64) -> String {
    if s < 120.0 {
        format!("{s:.1} s")
    } else if s < 7200.0 {
        format!("{:.1} min", s / 60.0)
    } else {
        format!("{:.1} h", s / 3600.0)
    }
}
