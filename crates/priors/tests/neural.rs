//! Tests of the neural priors (feature `torch`): shapes, devices, the EDM preconditioning of an
//! untrained network, the loss falling on a tiny data set, bit-identical save/load and resume,
//! the vector-Jacobian product against finite differences, and TorchScript round trips through
//! modules that the bootstrapped PyTorch writes (skipped without `DIFFINV_PYTHON` unless
//! `DIFFINV_REQUIRE_PYTHON=1`).
#![cfg(feature = "torch")]

use std::path::PathBuf;

use approx::assert_abs_diff_eq;
use diffinv_priors::neural::{DeviceChoice, EdmNetwork, NeuralDenoiser, ScriptedEdm, ScriptedVpEpsilon, TrainConfig, Trainer, UNetConfig};
use diffinv_priors::Denoiser;
use ndarray::Array2;
use tch::{Device, Tensor};

fn tiny_unet(res: i64) -> UNetConfig {
    UNetConfig { img_channels: 1, img_resolution: res, model_channels: 8, channel_mult: vec![1, 2], num_blocks: 1, attn_resolutions: vec![res / 2], ..Default::default() }
}

fn tiny_train(steps: u64) -> TrainConfig {
    TrainConfig { unet: tiny_unet(8), steps, batch_size: 8, lr: 2e-3, warmup_steps: 10, checkpoint_every: 5, device: DeviceChoice::Cpu, seed: 3, ..Default::default() }
}

/// Two fixed 8 x 8 patterns (a bar and a cross), repeated.
fn tiny_data() -> Tensor {
    let mut v = Vec::new();
    for k in 0..16 {
        for i in 0..8 {
            for j in 0..8 {
                let on = if k % 2 == 0 { i == 3 || i == 4 } else { i == j || i + j == 7 };
                v.push(if on { 0.8f32 } else { -0.8 });
            }
        }
    }
    Tensor::from_slice(&v).reshape([16, 1, 8, 8])
}

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("diffinv-neural-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

fn python() -> Option<String> {
    match std::env::var("DIFFINV_PYTHON") {
        Ok(p) if !p.is_empty() => Some(p),
        _ => {
            assert!(std::env::var("DIFFINV_REQUIRE_PYTHON").as_deref() != Ok("1"), "DIFFINV_REQUIRE_PYTHON=1 but DIFFINV_PYTHON is unset");
            eprintln!("skipped: DIFFINV_PYTHON is unset (run through `cargo xtask test`)");
            None
        }
    }
}

#[test]
fn devices_parse_and_resolve() {
    assert_eq!("cpu".parse::<DeviceChoice>().expect("cpu"), DeviceChoice::Cpu);
    assert_eq!("cuda:1".parse::<DeviceChoice>().expect("cuda:1"), DeviceChoice::Cuda(1));
    assert!("gpu".parse::<DeviceChoice>().is_err());
    assert_eq!(DeviceChoice::Cpu.resolve().expect("cpu"), Device::Cpu);
    assert!(DeviceChoice::Cuda(99).resolve().is_err(), "a missing CUDA device is an error, not a fall-back");
    let auto = DeviceChoice::Auto.resolve().expect("auto");
    assert_eq!(auto == Device::Cpu, !tch::Cuda::is_available());
}

#[test]
fn untrained_network_is_the_edm_skip_connection() {
    for res in [8, 16] {
        let net = EdmNetwork::new(&tiny_unet(res), 0.5, Device::Cpu).expect("net");
        let vals: Vec<f32> = (0..3 * res * res).map(|k| (k as f32 * 0.61).sin()).collect();
        let x = Tensor::from_slice(&vals).reshape([3, 1, res, res]);
        let sigma = Tensor::from_slice(&[0.1f32, 1.0, 10.0]);
        let d = tch::no_grad(|| net.precond(&x, &sigma, false));
        assert_eq!(d.size(), vec![3, 1, res, res]);
        // Zero-initialised output layer: D = c_skip x with c_skip = sd^2 / (sigma^2 + sd^2).
        for (b, s) in [0.1f64, 1.0, 10.0].iter().enumerate() {
            let c_skip = 0.25 / (s * s + 0.25);
            let diff = (d.get(b as i64) - x.get(b as i64) * c_skip).abs().max().double_value(&[]);
            assert!(diff < 1e-6, "res {res} sigma {s}: {diff}");
        }
    }
    assert!(UNetConfig { img_resolution: 10, channel_mult: vec![1, 2, 2], ..tiny_unet(8) }.validate().is_err(), "10 is not divisible by 4");
}

#[test]
fn loss_falls_on_a_tiny_data_set() {
    let mut t = Trainer::new(TrainConfig { lr: 4e-3, ..tiny_train(160) }).expect("trainer");
    let data = tiny_data();
    let losses: Vec<f64> = (0..160).map(|_| t.train_step(&data).expect("step")).collect();
    let first: f64 = losses[..30].iter().sum::<f64>() / 30.0;
    let last: f64 = losses[130..].iter().sum::<f64>() / 30.0;
    assert!(last < 0.6 * first, "loss {first:.4} -> {last:.4}");
}

#[test]
fn save_load_is_bit_identical_and_resume_continues_exactly() {
    // Bit-identical on the CPU for a fixed intra-op thread count (BLAS may otherwise change its
    // threading, and with it the summation order, from run to run).
    tch::set_num_threads(1);
    let data = tiny_data();
    let dir = temp_dir("resume");
    // Uninterrupted: 10 steps.
    let mut a = Trainer::new(tiny_train(10)).expect("trainer");
    for _ in 0..10 {
        a.train_step(&data).expect("step");
    }
    // Interrupted after 5 steps, resumed from the checkpoint.
    let mut b = Trainer::new(tiny_train(10)).expect("trainer");
    for _ in 0..5 {
        b.train_step(&data).expect("step");
    }
    b.save_checkpoint(&dir.join("ckpt")).expect("save");
    drop(b);
    let mut c = Trainer::resume(tiny_train(10), &dir.join("ckpt")).expect("resume");
    assert_eq!(c.step_count(), 5);
    for _ in 0..5 {
        c.train_step(&data).expect("step");
    }
    let va = a.net.vs.variables();
    for (name, tc) in c.net.vs.variables() {
        let ta = &va[&name];
        let diff = (ta - &tc).abs().max().double_value(&[]);
        assert!(ta.equal(&tc), "{name} differs after resume by {diff:e}");
    }
    // Save/load of the EMA weights.
    a.ema.save(&dir.join("ema.safetensors")).expect("save");
    let loaded = EdmNetwork::load(&tiny_unet(8), 0.5, Device::Cpu, &dir.join("ema.safetensors")).expect("load");
    let vals: Vec<f32> = (0..128).map(|k| (k as f32 * 0.37).cos()).collect();
    let x = Tensor::from_slice(&vals).reshape([2, 1, 8, 8]);
    let s = Tensor::from_slice(&[0.3f32, 3.0]);
    let (da, db) = tch::no_grad(|| (a.ema.precond(&x, &s, false), loaded.precond(&x, &s, false)));
    assert!(da.equal(&db), "loaded weights give bit-identical outputs");
    // A checkpoint of another network is refused.
    let other = TrainConfig { unet: UNetConfig { model_channels: 16, ..tiny_unet(8) }, ..tiny_train(10) };
    assert!(Trainer::resume(other, &dir.join("ckpt")).is_err());
    let _ = std::fs::remove_dir_all(&dir);
}

/// The channels-last batch layout trains the same network up to the kernels' rounding.
#[test]
fn channels_last_layout_gives_the_same_training_up_to_rounding() {
    tch::set_num_threads(1);
    let data = tiny_data();
    let mut a = Trainer::new(tiny_train(6)).expect("trainer");
    let mut b = Trainer::new(TrainConfig { channels_last: true, ..tiny_train(6) }).expect("trainer");
    for k in 0..6 {
        let (la, lb) = (a.train_step(&data).expect("step"), b.train_step(&data).expect("step"));
        assert!((la - lb).abs() <= 1e-4 * la.abs(), "step {k}: loss {la} vs {lb}");
    }
    let vb = b.net.vs.variables();
    for (name, ta) in a.net.vs.variables() {
        let diff = (&ta - &vb[&name]).abs().max().double_value(&[]);
        assert!(diff < 1e-4, "{name} differs by {diff:e}");
    }
}

/// `random_roll` shifts each image circularly: on images that every allowed shift leaves
/// unchanged the run is bit-identical to one without augmentation (the shifts come after the
/// step's other draws), on the tiny bar/cross patterns it is not; bad settings are refused.
#[test]
fn random_roll_is_a_pure_circular_shift() {
    tch::set_num_threads(1);
    // Stripes constant along the rows axis, period 2 along the columns: invariant under any
    // shift along the rows and under even shifts along the columns.
    let stripes: Vec<f32> = (0..16 * 64).map(|k| if (k % 8) % 2 == 0 { 0.7 } else { -0.7 } * if (k / 64) % 2 == 0 { 1.0 } else { 0.5 }).collect();
    let stripes = Tensor::from_slice(&stripes).reshape([16, 1, 8, 8]);
    let run = |roll: [i64; 2], data: &Tensor| {
        let mut t = Trainer::new(TrainConfig { random_roll: roll, ..tiny_train(4) }).expect("trainer");
        (0..4).map(|_| t.train_step(data).expect("step")).collect::<Vec<f64>>()
    };
    assert_eq!(run([0, 0], &stripes), run([1, 2], &stripes), "invariant images: rolling changes nothing");
    assert_ne!(run([0, 0], &stripes), run([1, 1], &stripes), "odd column shifts move the stripes");
    let data = tiny_data();
    assert_ne!(run([0, 0], &data), run([1, 1], &data), "the patterns are not shift-invariant");
    for bad in [[-1, 0], [3, 0], [0, 16]] {
        let err = Trainer::new(TrainConfig { random_roll: bad, ..tiny_train(4) }).expect_err("refused");
        assert!(err.to_string().contains("random_roll"), "{bad:?}: {err}");
    }
}

#[test]
fn vjp_matches_finite_differences() {
    let mut t = Trainer::new(tiny_train(20)).expect("trainer");
    let data = tiny_data();
    for _ in 0..20 {
        t.train_step(&data).expect("step");
    }
    let den = NeuralDenoiser::new(Box::new(t.net), 4).expect("denoiser");
    assert_eq!(den.dim(), 64);
    let x = Array2::from_shape_fn((2, 64), |(i, j)| ((i * 64 + j) as f32 * 0.37).sin());
    let v = Array2::from_shape_fn((2, 64), |(i, j)| ((i * 64 + j) as f32 * 0.11).cos());
    let sigma = 0.7f32;
    let g = den.vjp(x.view(), sigma, v.view()).expect("vjp");
    // <v, D(x + h u) - D(x - h u)> / 2h = <J^T v, u> along a few directions u.
    for k in 0..3 {
        let u = Array2::from_shape_fn((2, 64), |(i, j)| (((i * 64 + j) * (k + 3)) as f32 * 0.23).sin());
        let h = 1e-2f32;
        let dp = den.denoise((&x + &(&u * h)).view(), sigma).expect("denoise");
        let dm = den.denoise((&x - &(&u * h)).view(), sigma).expect("denoise");
        let fd: f64 = ((&dp - &dm) * &v).iter().map(|&a| f64::from(a)).sum::<f64>() / (2.0 * f64::from(h));
        let an: f64 = (&g * &u).iter().map(|&a| f64::from(a)).sum();
        assert!((fd - an).abs() < 1e-2 * an.abs().max(1.0), "direction {k}: fd {fd} vs vjp {an}");
    }
    // Typed errors, no panics.
    assert!(den.denoise(Array2::zeros((1, 63)).view(), sigma).is_err());
    assert!(den.denoise(Array2::from_elem((1, 64), f32::NAN).view(), sigma).is_err());
    assert!(den.denoise(x.view(), -1.0).is_err());
}

const MAKE_MODULES: &str = r#"
import sys, torch
out = sys.argv[1]

class Edm(torch.nn.Module):
    # Exact denoiser of N(0, I): D(x; sigma) = x / (1 + sigma^2).
    def forward(self, x, sigma):
        return x / (1.0 + sigma.reshape(-1, 1, 1, 1) ** 2)

class Eps(torch.nn.Module):
    # Exact epsilon prediction for N(0, I) data on the DDPM schedule, with a variance head:
    # E[eps | x_t] = sqrt(1 - abar_t) x_t; outputs 2C channels like guided-diffusion.
    def __init__(self):
        super().__init__()
        betas = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)
        self.register_buffer("abar", torch.cumprod(1 - betas, 0).float())
    def forward(self, x, t):
        a = self.abar[t.long()].reshape(-1, 1, 1, 1)
        eps = torch.sqrt(1 - a) * x
        return torch.cat([eps, torch.zeros_like(eps)], 1)

torch.jit.script(Edm()).save(out + "/edm.pt")
torch.jit.script(Eps()).save(out + "/eps.pt")
"#;

#[test]
fn torchscript_round_trip() {
    let Some(py) = python() else { return };
    let dir = temp_dir("ts");
    let script = dir.join("make.py");
    std::fs::write(&script, MAKE_MODULES).expect("write script");
    let st = std::process::Command::new(&py).arg(&script).arg(&dir).status().expect("run python");
    assert!(st.success(), "python failed");

    let edm = ScriptedEdm::load(&dir.join("edm.pt"), [1, 4, 4], Device::Cpu).expect("load edm");
    let den = NeuralDenoiser::new(Box::new(edm), 8).expect("denoiser");
    let x = Array2::from_shape_fn((3, 16), |(i, j)| (i as f32 - 1.0) * 0.5 + j as f32 * 0.1);
    for sigma in [0.01f32, 1.0, 50.0] {
        let d = den.denoise(x.view(), sigma).expect("denoise");
        for (a, b) in d.iter().zip(x.iter()) {
            assert_abs_diff_eq!(*a, b / (1.0 + sigma * sigma), epsilon = 1e-5);
        }
        // vjp of the linear map x / (1 + sigma^2) is v / (1 + sigma^2), through autograd.
        let g = den.vjp(x.view(), sigma, x.view()).expect("vjp");
        for (a, b) in g.iter().zip(x.iter()) {
            assert_abs_diff_eq!(*a, b / (1.0 + sigma * sigma), epsilon = 1e-5);
        }
    }

    let eps = ScriptedVpEpsilon::load_ddpm(&dir.join("eps.pt"), [1, 4, 4], Device::Cpu).expect("load eps");
    // At a noise level of the discrete schedule the adapter is exact: D = x / (1 + sigma_t^2).
    let sigmas: Vec<f64> = [10usize, 300, 999].iter().map(|&t| eps.sigma_of_step(t)).collect();
    let den = NeuralDenoiser::new(Box::new(eps), 8).expect("denoiser");
    for s in sigmas {
        let d = den.denoise(x.view(), s as f32).expect("denoise");
        for (a, b) in d.iter().zip(x.iter()) {
            assert_abs_diff_eq!(f64::from(*a), f64::from(*b) / (1.0 + s * s), epsilon = 1e-4);
        }
    }
    assert!(ScriptedEdm::load(&dir.join("missing.pt"), [1, 4, 4], Device::Cpu).is_err());
    let _ = std::fs::remove_dir_all(&dir);
}

/// A file that is not TorchScript, or no file at all, is a one-line typed error naming the file
/// and the cause, not libtorch's C++ backtrace.
#[test]
fn loading_a_non_torchscript_file_is_a_one_line_error() {
    use diffinv_priors::neural::load_torchscript;
    use diffinv_priors::PriorError;
    let dir = temp_dir("not-ts");
    // Random bytes (a fixed xorshift stream), a zip-less text file, and a missing path.
    let junk = dir.join("junk.pt");
    let mut s = 0x9e37_79b9_7f4a_7c15u64;
    let bytes: Vec<u8> = (0..4096)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 24) as u8
        })
        .collect();
    std::fs::write(&junk, bytes).expect("write junk");
    let text = dir.join("weights.pt");
    std::fs::write(&text, "this is a state_dict, honest\n").expect("write text");
    let missing = dir.join("missing.pt");
    for path in [&junk, &text, &missing, &dir] {
        for e in [
            load_torchscript(path, Device::Cpu).expect_err("not TorchScript"),
            ScriptedEdm::load(path, [1, 4, 4], Device::Cpu).expect_err("not TorchScript"),
            ScriptedVpEpsilon::load_ddpm(path, [1, 4, 4], Device::Cpu).expect_err("not TorchScript"),
        ] {
            let msg = e.to_string();
            assert!(matches!(e, PriorError::Load { .. }), "{e:?}");
            assert!(msg.starts_with(&path.display().to_string()), "{msg}");
            assert!(!msg.contains('\n'), "one line, got {msg:?}");
            assert!(!msg.contains("frame #") && !msg.contains("Exception raised from"), "{msg}");
            assert!(msg.len() < 300, "{} chars: {msg}", msg.len());
            eprintln!("{msg}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
