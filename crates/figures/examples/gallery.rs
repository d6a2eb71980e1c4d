//! One figure of each kind from synthetic data, to look at:
//! `cargo run -p diffinv-figures --example gallery -- OUT_DIR` (default: `figures-gallery`).

use std::f64::consts::PI;
use std::path::PathBuf;

use diffinv_figures::{
    image_grid, line_plot, scatter_panels, ColorBar, Colormap, ImageRow, LinePlot, Panel,
    ScatterOptions, ScatterPanel, Series,
};

fn field(n: usize, phase: f64) -> Vec<f32> {
    (0..n * n)
        .map(|k| {
            let (i, j) = ((k / n) as f64, (k % n) as f64);
            let (x, y) = (2.0 * PI * j / n as f64, 2.0 * PI * i / n as f64);
            (2.5 * (x + phase).sin() * (2.0 * y).cos() + 0.8 * (3.0 * x - y).cos()) as f32
        })
        .collect()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "figures-gallery".into()),
    );
    std::fs::create_dir_all(&out)?;

    // Navier-Stokes-like grid: truth, observation, 4 methods; |error| row.
    let n = 64;
    let truth = field(n, 0.0);
    let lim = truth.iter().fold(0.0f32, |a, v| a.max(v.abs()));
    let obs: Vec<f32> = (0..16 * 16)
        .map(|k| truth[(k / 16) * 4 * n + (k % 16) * 4])
        .collect();
    let methods = ["EnKG", "CPS", "DPS-GSG", "SCG-Ensemble-long-name"];
    let mut top = vec![
        Some(Panel::new(
            "truth",
            truth.clone(),
            n,
            n,
            Colormap::Diverging,
            -lim,
            lim,
        )),
        Some(Panel::new(
            "observation",
            obs,
            16,
            16,
            Colormap::Diverging,
            -lim,
            lim,
        )),
    ];
    let mut bottom = vec![None, None];
    for (k, m) in methods.iter().enumerate() {
        let r = field(n, 0.1 * (k + 1) as f64);
        let err: Vec<f32> = r.iter().zip(&truth).map(|(a, b)| (a - b).abs()).collect();
        top.push(Some(Panel::new(
            *m,
            r,
            n,
            n,
            Colormap::Diverging,
            -lim,
            lim,
        )));
        bottom.push(Some(Panel::new(*m, err, n, n, Colormap::Hot, 0.0, lim)));
    }
    image_grid(
        &out.join("grid_ns.png"),
        "Navier-Stokes: initial vorticity, noise 0",
        &[
            ImageRow::new("reconstruction", "vorticity", top),
            ImageRow::new("|error|", "|error|", bottom),
        ],
        2,
    )?;

    // Imaging-like grid: gray images, an observation with its own bar, a hidden-bar mask.
    let img: Vec<f32> = field(n, 1.0)
        .iter()
        .map(|v| (v / 6.0 + 0.5).clamp(0.0, 1.0))
        .collect();
    let mut y: Vec<f32> = field(n, 2.0).iter().map(|v| 40.0 * v).collect();
    y[5] = f32::NAN;
    let mask: Vec<f32> = (0..n * n)
        .map(|k| ((k * 7919) % 11 == 0) as u8 as f32)
        .collect();
    let err: Vec<f32> = img.iter().map(|v| (v - 0.5).abs() * 0.4).collect();
    image_grid(
        &out.join("grid_imaging.png"),
        "",
        &[
            ImageRow::new(
                "",
                "intensity (normalised)",
                vec![
                    Some(Panel::new(
                        "truth",
                        img.clone(),
                        n,
                        n,
                        Colormap::Gray,
                        0.0,
                        1.0,
                    )),
                    Some(
                        Panel::new("observation", y, n, n, Colormap::Gray, -100.0, 100.0)
                            .with_bar(ColorBar::Own("log(1 + |Y|)".into())),
                    ),
                    Some(
                        Panel::new("(u, v) coverage", mask, n, n, Colormap::Hot, 0.0, 1.0)
                            .with_bar(ColorBar::Hidden),
                    ),
                    Some(Panel::new("DAPS", img, n, n, Colormap::Gray, 0.0, 1.0)),
                ],
            ),
            ImageRow::new(
                "",
                "|error|",
                vec![
                    None,
                    None,
                    None,
                    Some(Panel::new("DAPS", err, n, n, Colormap::Hot, 0.0, 0.5)),
                ],
            ),
        ],
        2,
    )?;

    // Misfit curves on a log axis, with a NaN gap.
    let mut a: Vec<(f64, f64)> = (0..200)
        .map(|s| (s as f64, 5e4 * (-(s as f64) / 30.0).exp() + 3.0))
        .collect();
    a[50].1 = f64::NAN;
    let b: Vec<(f64, f64)> = (0..200)
        .map(|s| (s as f64, 2e4 * (-(s as f64) / 60.0).exp() + 10.0))
        .collect();
    line_plot(
        &out.join("lines_misfit.png"),
        &LinePlot {
            title: "Data misfit during sampling".into(),
            x_label: "step".into(),
            y_label: "mean negative log-likelihood".into(),
            log_y: true,
            ..LinePlot::default()
        },
        &[Series::new("EnKG", a), Series::new("CPS", b)],
    )?;
    // Training loss: noisy, narrow log range, and its moving average.
    let loss: Vec<(f64, f64)> = (0..2000u64)
        .map(|s| {
            let noise = ((s.wrapping_mul(2654435761) % 1000) as f64 / 1000.0 - 0.5) * 0.05;
            let s = s as f64;
            (s, 0.08 + 0.3 * (-s / 300.0).exp() + noise)
        })
        .collect();
    let smooth: Vec<(f64, f64)> = (0..loss.len())
        .map(|i| {
            let lo = i.saturating_sub(49);
            let m = loss[lo..=i].iter().map(|p| p.1).sum::<f64>() / (i - lo + 1) as f64;
            (loss[i].0, m)
        })
        .collect();
    line_plot(
        &out.join("lines_loss.png"),
        &LinePlot {
            title: "Training loss".into(),
            x_label: "step".into(),
            y_label: "loss".into(),
            log_y: true,
            ..LinePlot::default()
        },
        &[
            Series::new("loss", loss).with_color([190, 190, 190]),
            Series::new("moving average (50 steps)", smooth).with_color([0, 90, 200]),
        ],
    )?;

    // Scatter panels: reference ring and per-method samples.
    let reference: Vec<(f64, f64)> = (0..2000)
        .map(|k| {
            let t = k as f64 * 0.0137;
            (
                8.0 * t.cos() + (k % 7) as f64 * 0.1,
                8.0 * t.sin() - (k % 5) as f64 * 0.1,
            )
        })
        .collect();
    let panels: Vec<ScatterPanel> = [
        "EnKG (gs=2)",
        "EnKG (gs=0.5)",
        "CPS",
        "EKI",
        "Forward-GSG",
        "Central-GSG",
        "DPS",
        "RED-diff-MO",
        "TDS (N=1024)",
    ]
    .iter()
    .enumerate()
    .map(|(m, name)| ScatterPanel {
        title: name.to_string(),
        points: reference
            .iter()
            .step_by(4)
            .map(|(x, y)| (x * (0.6 + 0.05 * m as f64) + 1.0, *y))
            .collect(),
        reference: reference.clone(),
        color: None,
    })
    .collect();
    scatter_panels(
        &out.join("scatter_gmm.png"),
        &ScatterOptions {
            title: "Gaussian mixture, d = 8, d_y = 1: first two coordinates".into(),
            x_label: "x1".into(),
            y_label: "x2".into(),
            points_label: "samples".into(),
            reference_label: "exact posterior".into(),
            columns: 4,
            ..ScatterOptions::default()
        },
        &panels,
    )?;
    println!("written to {}", out.display());
    Ok(())
}
