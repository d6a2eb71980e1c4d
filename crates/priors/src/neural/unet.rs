//! A U-Net of the DDPM++/ADM family for the EDM denoiser `F_theta(c_in x; c_noise)`.
//!
//! Architecture (Song et al. 2021 "DDPM++", Dhariwal & Nichol 2021 "ADM", as configured in
//! Karras et al. 2022):
//! - noise embedding of `c_noise`: positional (`[cos(c w_k), sin(c w_k)]`, `w_k = 10000^(-k/h)`)
//!   or random Fourier features (`w_k ~ N(0, 16^2)`, fixed), then two SiLU-activated linear layers;
//! - an encoder of `len(channel_mult)` levels of `num_blocks` residual blocks each, a stride-2
//!   convolution between levels; a middle of residual, attention, residual; a decoder that
//!   concatenates the encoder's skip activations (`num_blocks + 1` blocks per level, nearest
//!   up-sampling followed by a 3 x 3 convolution between levels);
//! - residual block: `h = conv3(SiLU(GN(x)))`, `h += Linear(emb)`, `h = conv3(SiLU(GN(h)))`,
//!   output `(h + skip(x)) / sqrt(2)` with a 1 x 1 convolution as `skip` when channels change;
//! - self-attention (single head) at the resolutions listed in `attn_resolutions`:
//!   `softmax(q^T k / sqrt(C)) v` over the `H W` positions, output `(x + proj(a)) / sqrt(2)`;
//! - group normalisation with `min(32, C / 4)` groups; the last convolutions of every block and
//!   the output layer are zero-initialised, so the untrained network outputs 0 and the EDM
//!   denoiser starts as `c_skip x`.
//!
//! Cost: for `B` images of `C_img x H x W` the forward pass is dominated by the 3 x 3
//! convolutions, `2 * 9 * C_in * C_out * H_l * W_l` flops each at level resolution `H_l x W_l`,
//! plus `4 C (H_l W_l)^2` per attention layer.

use serde::{Deserialize, Serialize};
use tch::nn::{self, Module};
use tch::{Kind, Tensor};

use crate::PriorError;

/// How the noise level `c_noise` is embedded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NoiseEmbedding {
    /// Sinusoidal positional embedding (DDPM++ / ADM).
    #[default]
    Positional,
    /// Random Fourier features with scale 16 (NCSN++), fixed at construction from a seed.
    Fourier,
}

/// Size and shape of the U-Net.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UNetConfig {
    /// Image channels `C_img`.
    pub img_channels: i64,
    /// Image side (square images), divisible by `2^(len(channel_mult) - 1)`.
    pub img_resolution: i64,
    /// Base channel count.
    pub model_channels: i64,
    /// Channel multiplier per level.
    pub channel_mult: Vec<i64>,
    /// Residual blocks per level in the encoder.
    pub num_blocks: i64,
    /// Resolutions (image sides) with self-attention.
    pub attn_resolutions: Vec<i64>,
    /// Embedding width as a multiple of `model_channels`.
    pub emb_mult: i64,
    /// Noise embedding.
    pub noise_embedding: NoiseEmbedding,
    /// Dropout probability inside residual blocks (training only).
    pub dropout: f64,
}

impl Default for UNetConfig {
    fn default() -> Self {
        Self {
            img_channels: 1,
            img_resolution: 64,
            model_channels: 32,
            channel_mult: vec![1, 2, 2],
            num_blocks: 1,
            attn_resolutions: vec![16],
            emb_mult: 4,
            noise_embedding: NoiseEmbedding::Positional,
            dropout: 0.0,
        }
    }
}

impl UNetConfig {
    /// Check the configuration before building anything.
    pub fn validate(&self) -> Result<(), PriorError> {
        let bad = |name: &'static str, reason: String| Err(PriorError::InvalidParameter { name, reason });
        if self.img_channels < 1 || self.model_channels < 4 || self.num_blocks < 1 || self.emb_mult < 1 {
            return bad("unet", format!("channels, blocks and emb_mult must be positive (model_channels >= 4): {self:?}"));
        }
        if self.channel_mult.is_empty() || self.channel_mult.iter().any(|&m| m < 1) {
            return bad("channel_mult", format!("{:?} must be non-empty and positive", self.channel_mult));
        }
        let factor = 1i64 << (self.channel_mult.len() - 1);
        if self.img_resolution < factor || self.img_resolution % factor != 0 {
            return bad("img_resolution", format!("{} is not divisible by 2^{}", self.img_resolution, self.channel_mult.len() - 1));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return bad("dropout", format!("{} is not in [0, 1)", self.dropout));
        }
        Ok(())
    }
}

fn groups(c: i64) -> i64 {
    let mut g = 32.min((c / 4).max(1));
    while c % g != 0 {
        g -= 1;
    }
    g
}

fn gn(p: nn::Path<'_>, c: i64) -> nn::GroupNorm {
    nn::group_norm(p, groups(c), c, nn::GroupNormConfig { eps: 1e-5, ..Default::default() })
}

fn conv(p: nn::Path<'_>, cin: i64, cout: i64, k: i64, stride: i64, zero: bool) -> nn::Conv2D {
    let mut cfg = nn::ConvConfig { padding: k / 2, stride, ..Default::default() };
    if zero {
        cfg.ws_init = nn::Init::Const(0.0);
    }
    nn::conv2d(p, cin, cout, k, cfg)
}

#[derive(Debug)]
struct ResBlock {
    norm0: nn::GroupNorm,
    conv0: nn::Conv2D,
    affine: nn::Linear,
    norm1: nn::GroupNorm,
    conv1: nn::Conv2D,
    skip: Option<nn::Conv2D>,
    dropout: f64,
}

impl ResBlock {
    fn new(p: nn::Path<'_>, cin: i64, cout: i64, emb: i64, dropout: f64) -> Self {
        Self {
            norm0: gn(&p / "norm0", cin),
            conv0: conv(&p / "conv0", cin, cout, 3, 1, false),
            affine: nn::linear(&p / "affine", emb, cout, Default::default()),
            norm1: gn(&p / "norm1", cout),
            conv1: conv(&p / "conv1", cout, cout, 3, 1, true),
            skip: (cin != cout).then(|| conv(&p / "skip", cin, cout, 1, 1, false)),
            dropout,
        }
    }
    fn forward(&self, x: &Tensor, emb: &Tensor, train: bool) -> Tensor {
        let h = self.conv0.forward(&self.norm0.forward(x).silu());
        let h = h + self.affine.forward(emb).unsqueeze(-1).unsqueeze(-1);
        let h = self.norm1.forward(&h).silu().dropout(self.dropout, train);
        let h = self.conv1.forward(&h);
        let skip = match &self.skip {
            Some(s) => s.forward(x),
            None => x.shallow_clone(),
        };
        (h + skip) * std::f64::consts::FRAC_1_SQRT_2
    }
}

#[derive(Debug)]
struct Attention {
    norm: nn::GroupNorm,
    qkv: nn::Conv2D,
    proj: nn::Conv2D,
    c: i64,
}

impl Attention {
    fn new(p: nn::Path<'_>, c: i64) -> Self {
        Self { norm: gn(&p / "norm", c), qkv: conv(&p / "qkv", c, 3 * c, 1, 1, false), proj: conv(&p / "proj", c, c, 1, 1, true), c }
    }
    fn forward(&self, x: &Tensor) -> Tensor {
        let (b, c, h, w) = x.size4().unwrap_or((0, self.c, 0, 0));
        let qkv = self.qkv.forward(&self.norm.forward(x)).reshape([b, 3, c, h * w]);
        let q = qkv.select(1, 0);
        let k = qkv.select(1, 1);
        let v = qkv.select(1, 2);
        // weights[b, i, j] = softmax_j(<q_i, k_j> / sqrt(C))
        let weights = (q.transpose(1, 2).matmul(&k) / (c as f64).sqrt()).softmax(-1, Kind::Float);
        let a = v.matmul(&weights.transpose(1, 2)).reshape([b, c, h, w]);
        (x + self.proj.forward(&a)) * std::f64::consts::FRAC_1_SQRT_2
    }
}

// Layers are built once per network; boxing the large variant would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
enum Layer {
    Res(ResBlock),
    Attn(Attention),
    Down(nn::Conv2D),
    Up(nn::Conv2D),
}

/// The U-Net `F(x, c_noise)`: `x` of shape `(B, C_img, H, W)`, `c_noise` of shape `(B,)`.
#[derive(Debug)]
pub struct UNet {
    cfg: UNetConfig,
    freqs: Tensor,
    map0: nn::Linear,
    map1: nn::Linear,
    conv_in: nn::Conv2D,
    enc: Vec<(Layer, bool)>,
    mid: Vec<Layer>,
    dec: Vec<(Layer, bool)>,
    norm_out: nn::GroupNorm,
    conv_out: nn::Conv2D,
}

impl UNet {
    /// Build the network's variables under `p`.
    pub fn new(p: &nn::Path<'_>, cfg: &UNetConfig) -> Result<Self, PriorError> {
        cfg.validate()?;
        let mc = cfg.model_channels;
        let emb = mc * cfg.emb_mult;
        let half = mc / 2;
        let f: Vec<f32> = match cfg.noise_embedding {
            NoiseEmbedding::Positional => (0..half).map(|k| (10000f64.powf(-(k as f64) / half as f64)) as f32).collect(),
            NoiseEmbedding::Fourier => {
                use rand::SeedableRng as _;
                use rand_distr::Distribution as _;
                let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0x0f0e);
                (0..half)
                    .map(|_| {
                        let z: f64 = rand_distr::StandardNormal.sample(&mut rng);
                        (16.0 * 2.0 * std::f64::consts::PI * z) as f32
                    })
                    .collect()
            }
        };
        // A buffer, not a parameter: saved with the weights, never trained.
        let mut freqs = p.zeros_no_train("freqs", &[half]);
        tch::no_grad(|| freqs.copy_(&Tensor::from_slice(&f)));
        let map0 = nn::linear(p / "map0", 2 * half, emb, Default::default());
        let map1 = nn::linear(p / "map1", emb, emb, Default::default());
        let conv_in = conv(p / "conv_in", cfg.img_channels, mc, 3, 1, false);

        let mut enc = Vec::new();
        let mut skips = vec![mc];
        let mut c = mc;
        let mut res = cfg.img_resolution;
        let levels = cfg.channel_mult.len();
        for (level, &mult) in cfg.channel_mult.iter().enumerate() {
            let cout = mc * mult;
            for b in 0..cfg.num_blocks {
                let q = p / format!("enc{level}_{b}");
                enc.push((Layer::Res(ResBlock::new(&q / "res", c, cout, emb, cfg.dropout)), false));
                c = cout;
                if cfg.attn_resolutions.contains(&res) {
                    enc.push((Layer::Attn(Attention::new(&q / "attn", c)), false));
                }
                // Mark the last layer of the block as a skip source.
                if let Some(last) = enc.last_mut() {
                    last.1 = true;
                }
                skips.push(c);
            }
            if level + 1 < levels {
                enc.push((Layer::Down(conv(p / format!("down{level}"), c, c, 3, 2, false)), true));
                skips.push(c);
                res /= 2;
            }
        }
        let mid = vec![
            Layer::Res(ResBlock::new(p / "mid0", c, c, emb, cfg.dropout)),
            Layer::Attn(Attention::new(p / "mid_attn", c)),
            Layer::Res(ResBlock::new(p / "mid1", c, c, emb, cfg.dropout)),
        ];
        let mut dec = Vec::new();
        for (level, &mult) in cfg.channel_mult.iter().enumerate().rev() {
            let cout = mc * mult;
            for b in 0..=cfg.num_blocks {
                let q = p / format!("dec{level}_{b}");
                let cskip = skips.pop().ok_or_else(|| PriorError::Backend("unet skip bookkeeping".into()))?;
                // `true`: this residual block consumes (concatenates) one skip activation.
                dec.push((Layer::Res(ResBlock::new(&q / "res", c + cskip, cout, emb, cfg.dropout)), true));
                c = cout;
                if cfg.attn_resolutions.contains(&res) {
                    dec.push((Layer::Attn(Attention::new(&q / "attn", c)), false));
                }
            }
            if level > 0 {
                dec.push((Layer::Up(conv(p / format!("up{level}"), c, c, 3, 1, false)), false));
                res *= 2;
            }
        }
        let norm_out = gn(p / "norm_out", c);
        let conv_out = conv(p / "conv_out", c, cfg.img_channels, 3, 1, true);
        Ok(Self { cfg: cfg.clone(), freqs, map0, map1, conv_in, enc, mid, dec, norm_out, conv_out })
    }

    /// The configuration.
    pub fn config(&self) -> &UNetConfig {
        &self.cfg
    }

    /// `F(x, c_noise)`; `train` enables dropout.
    pub fn forward(&self, x: &Tensor, c_noise: &Tensor, train: bool) -> Tensor {
        let arg = c_noise.to_kind(Kind::Float).unsqueeze(1) * self.freqs.unsqueeze(0);
        let emb = Tensor::cat(&[arg.cos(), arg.sin()], 1);
        let emb = self.map1.forward(&self.map0.forward(&emb).silu()).silu();

        let mut h = self.conv_in.forward(x);
        let mut skips = vec![h.shallow_clone()];
        for (layer, is_skip) in &self.enc {
            h = apply(layer, &h, &emb, train);
            if *is_skip {
                skips.push(h.shallow_clone());
            }
        }
        for layer in &self.mid {
            h = apply(layer, &h, &emb, train);
        }
        for (layer, takes_skip) in &self.dec {
            if *takes_skip {
                if let Some(s) = skips.pop() {
                    h = Tensor::cat(&[h, s], 1);
                }
            }
            h = apply(layer, &h, &emb, train);
        }
        self.conv_out.forward(&self.norm_out.forward(&h).silu())
    }
}

fn apply(layer: &Layer, h: &Tensor, emb: &Tensor, train: bool) -> Tensor {
    match layer {
        Layer::Res(r) => r.forward(h, emb, train),
        Layer::Attn(a) => a.forward(h),
        Layer::Down(c) => c.forward(h),
        Layer::Up(c) => {
            let (_, _, hh, ww) = h.size4().unwrap_or((0, 0, 0, 0));
            c.forward(&h.upsample_nearest2d([2 * hh, 2 * ww], None, None))
        }
    }
}
