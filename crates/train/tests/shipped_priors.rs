//! The shipped priors (fixtures/priors/*): they load, and on held-out data they denoise better
//! than the exact Gaussian (Wiener) denoiser fitted to training data, at every noise level up
//! to 1 (the quality bar of docs/priors.md).

use std::path::PathBuf;

use diffinv_datasets::blackhole::{generate, MringConfig};
use diffinv_priors::neural::{EdmNetwork, TrainConfig};
use diffinv_train::eval::{denoising_table_with, FourierWiener, WienerBaseline, WienerBasis};
use tch::{Device, Tensor};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/priors")
}

#[derive(serde::Deserialize)]
struct Shipped {
    train: TrainConfig,
}

#[test]
fn blackhole64_beats_the_wiener_denoiser_on_held_out_images() {
    let dir = fixtures().join("blackhole64");
    let text = std::fs::read_to_string(dir.join("config.toml")).expect("shipped config");
    let value: toml::Value = toml::from_str(&text).expect("toml");
    let shipped: Shipped = value.try_into().expect("config");
    let net = EdmNetwork::load(&shipped.train.unet, shipped.train.sigma_data, Device::Cpu, &dir.join("ema.safetensors")).expect("weights");
    // Data: the training config's generator; held-out images are indices >= count (4000).
    let cfg = MringConfig::default();
    let to_tensor = |range: std::ops::Range<u64>| {
        let (imgs, _) = generate(&cfg, 0, range).expect("generate");
        // Unit normalisation of the config: [0, 1] -> [-1, 1].
        (Tensor::from_slice(&imgs.into_raw_vec_and_offset().0).reshape([-1, 1, 64, 64]) - 0.5) / 0.5
    };
    let train = to_tensor(0..4000);
    let test = to_tensor(4000..4048);
    let rows = diffinv_train::eval::denoising_table(&net, &train, &test, 1, WienerBasis::Full).expect("table");
    for r in rows.iter().filter(|r| r.sigma <= 1.0) {
        assert!(r.network < r.wiener, "sigma {}: network MSE {} vs Wiener {}", r.sigma, r.network, r.wiener);
    }
}

/// The Navier-Stokes prior against the Fourier-basis Wiener denoiser (fitted to the 1024 training
/// fields; shipped as `wiener_fourier.safetensors`) on the 32 held-out fields shipped with it
/// (`test32.npy`: test-split fields 0..32 of `cargo xtask data ns --res 128 --train 1024
/// --test 256 --downsample 64`, downsampled to 64 x 64).
#[test]
fn ns64_beats_the_fourier_wiener_denoiser_on_held_out_fields() {
    beats_the_shipped_fourier_wiener("ns64");
}

/// The 128 x 128 Navier-Stokes prior (the full preset's) against the Fourier-basis Wiener
/// denoiser fitted to its 1024 training fields, on the 32 held-out fields shipped with it
/// (test-split fields 0..32 of `cargo xtask data ns --res 128 --train 1024 --test 256`).
#[test]
fn ns128_beats_the_fourier_wiener_denoiser_on_held_out_fields() {
    beats_the_shipped_fourier_wiener("ns128");
}

/// The natural-image prior against the Fourier-basis (stationary) Wiener denoiser fitted to its
/// 8000 training patches, on the 32 held-out patches shipped with it (`test32.npy`: patches of
/// the astronaut, chelsea and coffee photographs, never in training; `cargo xtask data images`).
#[test]
fn natural64_beats_the_fourier_wiener_denoiser_on_held_out_images() {
    beats_the_shipped_fourier_wiener("natural64");
}

fn beats_the_shipped_fourier_wiener(name: &str) {
    let dir = fixtures().join(name);
    let text = std::fs::read_to_string(dir.join("config.toml")).expect("shipped config");
    let value: toml::Value = toml::from_str(&text).expect("toml");
    let shipped: Shipped = value.try_into().expect("config");
    let net = EdmNetwork::load(&shipped.train.unet, shipped.train.sigma_data, Device::Cpu, &dir.join("ema.safetensors")).expect("weights");
    let norm: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("normalization.json")).expect("normalization")).expect("json");
    let (shift, scale) = (norm["shift"].as_f64().expect("shift"), norm["scale"].as_f64().expect("scale"));
    let (shape, data) = diffinv_datasets::npy::read_f32(&dir.join("test32.npy")).expect("test images");
    let r = shipped.train.unet.img_resolution;
    assert_eq!(shape, vec![32, r as usize, r as usize]);
    let test = (Tensor::from_slice(&data).reshape([32, 1, r, r]) - shift) / scale;
    let wiener = WienerBaseline::Fourier(FourierWiener::load(&dir.join("wiener_fourier.safetensors")).expect("baseline"));
    let rows = denoising_table_with(&net, &wiener, &test, 1).expect("table");
    for r in rows.iter().filter(|r| r.sigma <= 1.0) {
        assert!(r.network < r.wiener, "{name}, sigma {}: network MSE {} vs Wiener {}", r.sigma, r.network, r.wiener);
    }
}
