//! Each figure function writes a PNG that decodes, has the expected size and has text pixels
//! where its titles go; bad input gives a typed error, not a panic.

use std::path::{Path, PathBuf};

use diffinv_figures::{
    image_grid, line_plot, scatter_panels, ColorBar, Colormap, FigureError, ImageRow, LinePlot,
    Panel, ScatterOptions, ScatterPanel, Series,
};

fn out(dir: &tempfile::TempDir, name: &str) -> PathBuf {
    dir.path().join(name)
}

fn load(path: &Path) -> image::RgbImage {
    image::open(path).expect("the PNG decodes").to_rgb8()
}

/// Pixels of (near) the text colour in rows `y0..y1`.
fn dark_pixels(img: &image::RgbImage, y0: u32, y1: u32) -> usize {
    (y0..y1.min(img.height()))
        .flat_map(|y| (0..img.width()).map(move |x| (x, y)))
        .filter(|&(x, y)| img.get_pixel(x, y).0.iter().all(|c| *c < 90))
        .count()
}

fn ramp(h: usize, w: usize) -> Vec<f32> {
    (0..h * w)
        .map(|k| k as f32 / (h * w) as f32 * 2.0 - 1.0)
        .collect()
}

fn panel(title: &str, h: usize, w: usize) -> Panel {
    Panel::new(title, ramp(h, w), h, w, Colormap::Diverging, -1.0, 1.0)
}

#[test]
fn image_grid_writes_a_labelled_png() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = out(&dir, "grid.png");
    let mut err = panel("EnKG", 16, 16);
    err.cmap = Colormap::Hot;
    err.lo = 0.0;
    let mut nan = panel("NaN values", 16, 16);
    nan.data[3] = f32::NAN;
    let rows = vec![
        ImageRow::new(
            "reconstruction",
            "vorticity",
            vec![
                Some(panel("truth", 16, 16)),
                Some(panel("observation", 8, 8)),
                Some(nan),
            ],
        ),
        ImageRow::new("|error|", "|error|", vec![None, None, Some(err)]),
    ];
    image_grid(&path, "A title", &rows, 4).expect("grid");
    let img = load(&path);
    // Height: margins 2 x 10, title band 32, per row: title band 24 + 64 + gap 8.
    assert_eq!(img.height(), 20 + 32 + 2 * (24 + 64 + 8));
    assert!(img.width() >= 3 * 64 + 2 * 10, "width {}", img.width());
    assert!(dark_pixels(&img, 0, 42) > 30, "figure title");
    assert!(dark_pixels(&img, 42, 66) > 30, "panel titles");
    // The diverging map's blue end is in the first image.
    assert!(img
        .pixels()
        .any(|p| p.0 == [0, 0, 255] || p.0[2] == 255 && p.0[0] < 40));
}

#[test]
fn image_grid_own_and_hidden_bars() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = out(&dir, "own.png");
    let obs = Panel::new("obs", vec![5.0; 64], 8, 8, Colormap::Gray, 5.0, 5.0)
        .with_bar(ColorBar::Own("log(1 + |Y|)".into()));
    let mask =
        Panel::new("mask", vec![1.0; 64], 8, 8, Colormap::Hot, 0.0, 1.0).with_bar(ColorBar::Hidden);
    let rows = vec![ImageRow {
        label: None,
        unit: Some("intensity".into()),
        panels: vec![Some(panel("truth", 8, 8)), Some(obs), Some(mask)],
    }];
    image_grid(&path, "", &rows, 8).expect("grid");
    let img = load(&path);
    // No figure title; a row with an own bar is 24 + 64 + 54 + 8 high.
    assert_eq!(img.height(), 20 + 24 + 64 + 54 + 8);
    assert!(dark_pixels(&img, 10, 34) > 30, "panel titles");
    assert!(
        dark_pixels(&img, 98 + 14, 152) > 30,
        "own bar ticks and unit"
    );
}

#[test]
fn image_grid_long_title_widens_the_figure() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = out(&dir, "long.png");
    let title = "A figure title much longer than the single small panel below it";
    image_grid(
        &path,
        title,
        &[ImageRow::new("", "", vec![Some(panel("p", 4, 4))])],
        1,
    )
    .expect("grid");
    let img = load(&path);
    assert!(img.width() > 300, "width {}", img.width());
    // Text reaches neither edge.
    let edge_dark = (0..42).any(|y| {
        [0, img.width() - 1]
            .iter()
            .any(|&x| img.get_pixel(x, y).0.iter().all(|c| *c < 90))
    });
    assert!(!edge_dark);
}

#[test]
fn image_grid_bad_input() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = out(&dir, "bad.png");
    let row = |p: Panel| vec![ImageRow::new("", "u", vec![Some(p)])];
    assert!(matches!(
        image_grid(&path, "", &[], 1),
        Err(FigureError::Empty(_))
    ));
    assert!(matches!(
        image_grid(&path, "", &[ImageRow::new("a", "u", vec![None, None])], 1),
        Err(FigureError::Empty(_))
    ));
    let zero = Panel::new("z", vec![], 0, 4, Colormap::Gray, 0.0, 1.0);
    assert!(matches!(
        image_grid(&path, "", &row(zero), 1),
        Err(FigureError::ZeroSize { .. })
    ));
    let short = Panel::new("s", vec![0.0; 3], 2, 2, Colormap::Gray, 0.0, 1.0);
    assert!(matches!(
        image_grid(&path, "", &row(short), 1),
        Err(FigureError::Shape { .. })
    ));
    let nan = Panel::new("n", vec![0.0; 4], 2, 2, Colormap::Gray, f32::NAN, 1.0);
    assert!(matches!(
        image_grid(&path, "", &row(nan), 1),
        Err(FigureError::Range { .. })
    ));
    let flipped = Panel::new("f", vec![0.0; 4], 2, 2, Colormap::Gray, 1.0, 0.0);
    assert!(matches!(
        image_grid(&path, "", &row(flipped), 1),
        Err(FigureError::Range { .. })
    ));
    assert!(matches!(
        image_grid(&path, "", &row(panel("p", 2, 2)), 0),
        Err(FigureError::Size(_))
    ));
    let mut other = panel("q", 2, 2);
    other.hi = 2.0;
    let mixed = vec![ImageRow::new(
        "",
        "u",
        vec![Some(panel("p", 2, 2)), Some(other)],
    )];
    assert!(matches!(
        image_grid(&path, "", &mixed, 1),
        Err(FigureError::MixedScales { row: 0 })
    ));
    let missing_dir = dir.path().join("no/such/dir/x.png");
    assert!(matches!(
        image_grid(&missing_dir, "", &row(panel("p", 2, 2)), 1),
        Err(FigureError::Write { .. })
    ));
    assert!(!path.exists());
}

fn plot(log_y: bool) -> LinePlot {
    LinePlot {
        title: "Misfit".into(),
        x_label: "step".into(),
        y_label: "mean negative log-likelihood".into(),
        log_y,
        width: 500,
        height: 300,
    }
}

#[test]
fn line_plot_writes_a_labelled_png() {
    let dir = tempfile::tempdir().expect("temp dir");
    for log_y in [false, true] {
        let path = out(&dir, &format!("lines-{log_y}.png"));
        let a: Vec<(f64, f64)> = (0..50)
            .map(|s| (s as f64, 1e3 / (1.0 + s as f64)))
            .collect();
        let mut b: Vec<(f64, f64)> = a.iter().map(|(x, y)| (*x, y * 2.0)).collect();
        b[10].1 = f64::NAN;
        b[11].1 = -1.0;
        let series = [
            Series::new("EnKG", a),
            Series::new("CPS", b).with_color([200, 0, 0]),
            Series::new("empty", vec![]),
        ];
        line_plot(&path, &plot(log_y), &series).expect("line plot");
        let img = load(&path);
        assert_eq!(img.dimensions(), (500, 300));
        assert!(dark_pixels(&img, 0, 30) > 30, "title");
        assert!(dark_pixels(&img, 260, 300) > 30, "x label and ticks");
        assert!(img.pixels().any(|p| p.0 == [200, 0, 0]), "the red series");
    }
}

#[test]
fn line_plot_degenerate_but_valid_input() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = out(&dir, "single.png");
    // One point, constant values: the axes are widened, no error.
    line_plot(&path, &plot(true), &[Series::new("one", vec![(3.0, 5.0)])]).expect("one point");
    line_plot(
        &path,
        &plot(false),
        &[Series::new("", vec![(1.0, 0.0), (2.0, 0.0)])],
    )
    .expect("flat");
    assert_eq!(load(&path).dimensions(), (500, 300));
}

#[test]
fn line_plot_bad_input() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = out(&dir, "bad.png");
    assert!(matches!(
        line_plot(&path, &plot(false), &[]),
        Err(FigureError::Empty(_))
    ));
    let nan = [Series::new(
        "nan",
        vec![(f64::NAN, 1.0), (1.0, f64::INFINITY)],
    )];
    assert!(matches!(
        line_plot(&path, &plot(false), &nan),
        Err(FigureError::NoData(_))
    ));
    let neg = [Series::new("neg", vec![(0.0, -1.0), (1.0, 0.0)])];
    assert!(matches!(
        line_plot(&path, &plot(true), &neg),
        Err(FigureError::NoData(_))
    ));
    let mut tiny = plot(false);
    tiny.width = 10;
    let ok = [Series::new("ok", vec![(0.0, 1.0), (1.0, 2.0)])];
    assert!(matches!(
        line_plot(&path, &tiny, &ok),
        Err(FigureError::Size(_))
    ));
    assert!(!path.exists());
}

fn opts() -> ScatterOptions {
    ScatterOptions {
        title: "Posterior samples".into(),
        x_label: "x1".into(),
        y_label: "x2".into(),
        points_label: "samples".into(),
        reference_label: "reference".into(),
        size: 200,
        columns: 0,
    }
}

#[test]
fn scatter_panels_writes_a_labelled_png() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = out(&dir, "scatter.png");
    let reference: Vec<(f64, f64)> = (0..300)
        .map(|k| ((k as f64 * 0.1).cos() * 3.0, (k as f64 * 0.1).sin() * 3.0))
        .collect();
    let panels = vec![
        ScatterPanel {
            title: "EnKG".into(),
            points: reference.iter().map(|(x, y)| (x * 0.5, y * 0.5)).collect(),
            reference: reference.clone(),
            color: Some([0, 0, 200]),
        },
        ScatterPanel {
            title: "DPS".into(),
            points: vec![(f64::NAN, 0.0), (1.0, 1.0)],
            reference: vec![],
            color: None,
        },
    ];
    scatter_panels(&path, &opts(), &panels).expect("scatter");
    let img = load(&path);
    assert_eq!(img.dimensions(), (400, 234));
    assert!(dark_pixels(&img, 0, 34) > 30, "figure title");
    assert!(dark_pixels(&img, 34, 60) > 20, "panel titles");
    assert!(img.pixels().any(|p| p.0 == [0, 0, 200]), "the points");
}

#[test]
fn scatter_panels_bad_input() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = out(&dir, "bad.png");
    assert!(matches!(
        scatter_panels(&path, &opts(), &[]),
        Err(FigureError::Empty(_))
    ));
    let nan = [ScatterPanel {
        title: "nan".into(),
        points: vec![(f64::NAN, f64::NAN)],
        reference: vec![(f64::INFINITY, 0.0)],
        color: None,
    }];
    assert!(matches!(
        scatter_panels(&path, &opts(), &nan),
        Err(FigureError::NoData(_))
    ));
    let one = [ScatterPanel {
        title: "one".into(),
        points: vec![(1.0, 1.0)],
        reference: vec![],
        color: None,
    }];
    let mut small = opts();
    small.size = 20;
    assert!(matches!(
        scatter_panels(&path, &small, &one),
        Err(FigureError::Size(_))
    ));
    assert!(!path.exists());
    // A single point is fine (the axes are widened).
    scatter_panels(&path, &opts(), &one).expect("one point");
    assert_eq!(load(&path).dimensions(), (200, 234));
}

#[test]
fn scatter_panels_wrap_into_rows() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = out(&dir, "wrap.png");
    let panels: Vec<ScatterPanel> = (0..3)
        .map(|k| ScatterPanel {
            title: format!("method {k}"),
            points: vec![(k as f64, 1.0), (0.0, -1.0)],
            reference: vec![],
            color: None,
        })
        .collect();
    let mut o = opts();
    o.columns = 2;
    scatter_panels(&path, &o, &panels).expect("scatter");
    let img = load(&path);
    assert_eq!(img.dimensions(), (400, 34 + 2 * 200));
    // The second row's panel title.
    assert!(dark_pixels(&img, 234, 260) > 20, "second-row title");
}
