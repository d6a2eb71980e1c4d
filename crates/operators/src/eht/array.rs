//! The telescope array, the source, sidereal time and the (u, v) coverage of one night.
//!
//! Geometry (Thompson, Moran & Swenson, *Interferometry and Synthesis in Radio Astronomy*,
//! 3rd ed., eq. 4.1): for a baseline vector `b = r_i - r_j` in geocentric ITRF metres
//! (X towards longitude 0, Y towards longitude 90 E, Z towards the north pole), a source at
//! declination `delta` and *Greenwich* hour angle `H = GMST - RA`,
//!
//! ```text
//! u =            sin H  b_x +            cos H  b_y
//! v = -sin(delta) cos H  b_x + sin(delta) sin H  b_y + cos(delta) b_z
//! w =  cos(delta) cos H  b_x - cos(delta) sin H  b_y + sin(delta) b_z
//! ```
//!
//! divided by the wavelength `lambda = c / nu` to give wavelengths. `w = b . s` with the unit
//! source vector `s = (cos(delta) cos H, -cos(delta) sin H, sin(delta))`; `u` points east and
//! `v` north on the sky.
//!
//! A station sees the source when its elevation `asin(n . s)` is at least the cut, with `n` the
//! outward WGS84 ellipsoid normal at the station, `n ~ (x / a^2, y / a^2, z / b^2)`.

use serde::{Deserialize, Serialize};

use crate::{OperatorError, Result};

/// Speed of light, m/s.
pub const SPEED_OF_LIGHT: f64 = 299_792_458.0;
/// WGS84 semi-major axis, m.
pub const WGS84_A: f64 = 6_378_137.0;
/// WGS84 semi-minor axis, m.
pub const WGS84_B: f64 = 6_356_752.314_245;
/// 2-bit quantisation efficiency used in the thermal-noise formula (the value ehtim uses).
pub const QUANTIZATION_EFFICIENCY: f64 = 0.88;

/// One telescope: name, geocentric ITRF position and system equivalent flux density.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Station {
    /// Station code (e.g. `"ALMA"`).
    pub name: String,
    /// Geocentric ITRF coordinates `(X, Y, Z)` in metres.
    pub xyz_m: [f64; 3],
    /// System equivalent flux density at 230 GHz, Jy.
    pub sefd_jy: f64,
}

impl Station {
    fn new(name: &str, xyz_m: [f64; 3], sefd_jy: f64) -> Self {
        Self {
            name: name.to_string(),
            xyz_m,
            sefd_jy,
        }
    }

    /// Outward unit normal of the WGS84 ellipsoid at the station (the local zenith).
    pub fn zenith(&self) -> [f64; 3] {
        let [x, y, z] = self.xyz_m;
        let a2 = WGS84_A * WGS84_A;
        let b2 = WGS84_B * WGS84_B;
        let n = [x / a2, y / a2, z / b2];
        let norm = (n[0] * n[0] + n[1] * n[1] + n[2] * n[2]).sqrt();
        [n[0] / norm, n[1] / norm, n[2] / norm]
    }

    /// Elevation (radians) of a source at declination `dec` and Greenwich hour angle `gha`:
    /// `asin(n . s)`.
    pub fn elevation(&self, gha: f64, dec: f64) -> f64 {
        let s = source_vector(gha, dec);
        let n = self.zenith();
        (n[0] * s[0] + n[1] * s[1] + n[2] * s[2])
            .clamp(-1.0, 1.0)
            .asin()
    }
}

/// The EHT 2017 array, in this order (the first visible station of a time is the closure
/// reference): ALMA, APEX, JCMT, SMA, SMT, LMT, PV (IRAM 30 m), SPT.
///
/// Positions and SEFDs are the values of the public eht-imaging array file
/// `arrays/EHT2017.txt` (A. Chael et al.), which follow EHT Collaboration 2019, Paper II
/// (ApJL 875, L2), Table 2. SPT sits at the south pole and never sees M87* (dec +12.4 deg).
#[allow(clippy::inconsistent_digit_grouping, clippy::unreadable_literal)]
pub fn eht2017() -> Vec<Station> {
    vec![
        Station::new("ALMA", [2225061.164, -5440057.37, -2481681.15], 90.0),
        Station::new("APEX", [2225039.53, -5441197.63, -2479303.36], 3500.0),
        Station::new("JCMT", [-5464584.68, -2493001.17, 2150653.98], 6000.0),
        Station::new("SMA", [-5464523.4, -2493147.08, 2150611.75], 4900.0),
        Station::new("SMT", [-1828796.2, -5054406.8, 3427865.2], 5000.0),
        Station::new("LMT", [-768713.9637, -5988541.7982, 2063275.9472], 600.0),
        Station::new("PV", [5088967.9, -301681.6, 3825015.8], 1400.0),
        Station::new("SPT", [0.01, 0.01, -6359609.7], 5000.0),
    ]
}

/// A point source position on the sky (J2000, no precession applied).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Source {
    /// Name.
    pub name: String,
    /// Right ascension, radians.
    pub ra_rad: f64,
    /// Declination, radians.
    pub dec_rad: f64,
}

impl Source {
    /// M87*: RA 12h30m49.42338s, Dec +12d23m28.0439s (J2000, the VLBI position used by the EHT).
    pub fn m87() -> Self {
        Self {
            name: "M87".into(),
            ra_rad: hms_to_rad(12.0, 30.0, 49.42338),
            dec_rad: dms_to_rad(1.0, 12.0, 23.0, 28.0439),
        }
    }
}

/// Hours, minutes, seconds of right ascension to radians (`15 deg` per hour).
pub fn hms_to_rad(h: f64, m: f64, s: f64) -> f64 {
    ((h + m / 60.0 + s / 3600.0) * 15.0).to_radians()
}

/// Degrees, arcminutes, arcseconds with a sign (`+1` or `-1`) to radians.
pub fn dms_to_rad(sign: f64, d: f64, m: f64, s: f64) -> f64 {
    sign.signum() * (d + m / 60.0 + s / 3600.0).to_radians()
}

/// Julian date of a Gregorian calendar date at `hour` UT (Meeus, *Astronomical Algorithms*,
/// eq. 7.1).
pub fn julian_date(year: i32, month: u32, day: u32, hour: f64) -> f64 {
    let (mut y, mut m) = (year as f64, month as f64);
    if month <= 2 {
        y -= 1.0;
        m += 12.0;
    }
    let a = (y / 100.0).floor();
    let b = 2.0 - a + (a / 4.0).floor();
    (365.25 * (y + 4716.0)).floor() + (30.6001 * (m + 1.0)).floor() + day as f64 + hour / 24.0 + b
        - 1524.5
}

/// Greenwich mean sidereal time in radians, in `[0, 2 pi)`, at Julian date `jd` (UT1, taken
/// equal to UTC here): Meeus eq. 12.4,
/// `theta = 280.46061837 + 360.98564736629 D + 0.000387933 T^2 - T^3 / 38710000` degrees with
/// `D = JD - 2451545.0`, `T = D / 36525`. The `360 D` part is reduced exactly first.
pub fn gmst_rad(jd: f64) -> f64 {
    let d = jd - 2_451_545.0;
    let t = d / 36_525.0;
    let deg = 280.460_618_37 + 360.0 * d.fract() + 0.985_647_366_29 * d + 0.000_387_933 * t * t
        - t * t * t / 38_710_000.0;
    deg.rem_euclid(360.0).to_radians()
}

/// Unit vector towards a source at declination `dec` and Greenwich hour angle `gha`, ITRF.
pub fn source_vector(gha: f64, dec: f64) -> [f64; 3] {
    [dec.cos() * gha.cos(), -dec.cos() * gha.sin(), dec.sin()]
}

/// `(u, v, w)` in the units of `b` for the baseline vector `b` (ITRF), Greenwich hour angle `gha`
/// and declination `dec` (TMS eq. 4.1, see the module docs).
pub fn baseline_uvw(b: [f64; 3], gha: f64, dec: f64) -> [f64; 3] {
    let (sh, ch) = gha.sin_cos();
    let (sd, cd) = dec.sin_cos();
    [
        sh * b[0] + ch * b[1],
        -sd * ch * b[0] + sd * sh * b[1] + cd * b[2],
        cd * ch * b[0] - cd * sh * b[1] + sd * b[2],
    ]
}

/// Per-visibility thermal noise (standard deviation of each of the real and imaginary parts),
/// Jy: `sigma_ij = sqrt(SEFD_i SEFD_j / (2 dnu tau)) / eta` (TMS eq. 9.22 with the 2-bit
/// quantisation efficiency `eta` = [`QUANTIZATION_EFFICIENCY`]).
pub fn thermal_sigma(sefd_i: f64, sefd_j: f64, bandwidth_hz: f64, t_int_s: f64) -> f64 {
    (sefd_i * sefd_j / (2.0 * bandwidth_hz * t_int_s)).sqrt() / QUANTIZATION_EFFICIENCY
}

/// When and how the array observes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ObservationConfig {
    /// Calendar date (UTC) of the track start.
    pub year: i32,
    /// Month, 1..=12.
    pub month: u32,
    /// Day of month.
    pub day: u32,
    /// Start of the track, hours UTC after midnight of the date.
    pub start_utc_h: f64,
    /// Length of the track, hours.
    pub duration_h: f64,
    /// Time between scans, minutes (one visibility per baseline per scan).
    pub cadence_min: f64,
    /// Minimum elevation for a station to observe, degrees.
    pub elevation_cut_deg: f64,
    /// Observing frequency, Hz.
    pub freq_hz: f64,
    /// Recorded bandwidth, Hz.
    pub bandwidth_hz: f64,
    /// Integration time of one visibility, s.
    pub t_int_s: f64,
}

impl Default for ObservationConfig {
    /// 2017 April 11 (the EHT M87* day with the best coverage), 00:00 UTC for 24 h, one scan
    /// every 10 minutes, 10 deg elevation cut, 230 GHz, 2 GHz bandwidth, 60 s integrations.
    fn default() -> Self {
        Self {
            year: 2017,
            month: 4,
            day: 11,
            start_utc_h: 0.0,
            duration_h: 24.0,
            cadence_min: 10.0,
            elevation_cut_deg: 10.0,
            freq_hz: 230e9,
            bandwidth_hz: 2e9,
            t_int_s: 60.0,
        }
    }
}

impl ObservationConfig {
    fn validate(&self) -> Result<()> {
        let pos = |name: &'static str, v: f64| -> Result<()> {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(OperatorError::InvalidParameter {
                    name,
                    reason: format!("must be finite and > 0, got {v}"),
                })
            }
        };
        pos("duration_h", self.duration_h)?;
        pos("cadence_min", self.cadence_min)?;
        pos("freq_hz", self.freq_hz)?;
        pos("bandwidth_hz", self.bandwidth_hz)?;
        pos("t_int_s", self.t_int_s)?;
        if !(1..=12).contains(&self.month) || !(1..=31).contains(&self.day) {
            return Err(OperatorError::InvalidParameter {
                name: "date",
                reason: format!(
                    "month {} day {} is not a calendar date",
                    self.month, self.day
                ),
            });
        }
        if !self.start_utc_h.is_finite() {
            return Err(OperatorError::InvalidParameter {
                name: "start_utc_h",
                reason: "not finite".into(),
            });
        }
        if !(self.elevation_cut_deg.is_finite() && (-90.0..90.0).contains(&self.elevation_cut_deg))
        {
            return Err(OperatorError::InvalidParameter {
                name: "elevation_cut_deg",
                reason: format!("must be in [-90, 90), got {}", self.elevation_cut_deg),
            });
        }
        Ok(())
    }

    /// Observing wavelength, m.
    pub fn wavelength_m(&self) -> f64 {
        SPEED_OF_LIGHT / self.freq_hz
    }
}

/// One scan: its time, the stations that see the source and the range of its visibilities.
#[derive(Debug, Clone, PartialEq)]
pub struct Scan {
    /// Hours UTC after midnight of the start date.
    pub time_utc_h: f64,
    /// Greenwich mean sidereal time, radians.
    pub gmst_rad: f64,
    /// Greenwich hour angle of the source, radians.
    pub gha_rad: f64,
    /// Indices (into [`UvCoverage::stations`]) of the stations above the elevation cut,
    /// increasing.
    pub stations: Vec<usize>,
    /// Indices of this scan's visibilities in [`UvCoverage::points`].
    pub vis: std::ops::Range<usize>,
}

/// One visibility sample: baseline `(st1, st2)` with `st1 < st2`, at a scan.
#[derive(Debug, Clone, PartialEq)]
pub struct UvPoint {
    /// Index of the scan in [`UvCoverage::scans`].
    pub scan: usize,
    /// First station (array index).
    pub st1: usize,
    /// Second station (array index), `st1 < st2`.
    pub st2: usize,
    /// `u` in wavelengths, from `b = r_st1 - r_st2`.
    pub u: f64,
    /// `v` in wavelengths.
    pub v: f64,
    /// `w` in wavelengths (not used by the 2-D imaging model).
    pub w: f64,
    /// Thermal noise, Jy, per real/imaginary component.
    pub sigma_jy: f64,
}

/// The (u, v) coverage of one track: the scans with at least two stations above the cut and
/// their baselines, scan by scan, baselines in lexicographic station order.
#[derive(Debug, Clone)]
pub struct UvCoverage {
    /// The array.
    pub stations: Vec<Station>,
    /// The source.
    pub source: Source,
    /// The observation settings.
    pub config: ObservationConfig,
    /// Scans with at least two stations.
    pub scans: Vec<Scan>,
    /// All visibilities, scan-major.
    pub points: Vec<UvPoint>,
}

impl UvCoverage {
    /// Earth-rotation coverage of `source` by `stations` under `config`.
    ///
    /// Scans are at `start + k cadence` for `k = 0, 1, ...` while before `start + duration`.
    pub fn new(stations: Vec<Station>, source: Source, config: ObservationConfig) -> Result<Self> {
        config.validate()?;
        if stations.len() < 2 {
            return Err(OperatorError::InvalidParameter {
                name: "stations",
                reason: format!("need at least two stations, got {}", stations.len()),
            });
        }
        for s in &stations {
            if !(s.xyz_m.iter().all(|c| c.is_finite()) && s.sefd_jy.is_finite() && s.sefd_jy > 0.0)
            {
                return Err(OperatorError::InvalidParameter {
                    name: "stations",
                    reason: format!(
                        "station {} has a non-finite position or a non-positive SEFD",
                        s.name
                    ),
                });
            }
        }
        if !(source.ra_rad.is_finite() && source.dec_rad.is_finite()) {
            return Err(OperatorError::InvalidParameter {
                name: "source",
                reason: "non-finite position".into(),
            });
        }
        let lambda = config.wavelength_m();
        let cut = config.elevation_cut_deg.to_radians();
        let jd0 = julian_date(config.year, config.month, config.day, 0.0);
        let n_scans = (config.duration_h * 60.0 / config.cadence_min - 1e-9)
            .ceil()
            .max(0.0) as usize;
        let mut scans = Vec::new();
        let mut points = Vec::new();
        for k in 0..n_scans {
            let t_h = config.start_utc_h + k as f64 * config.cadence_min / 60.0;
            let gmst = gmst_rad(jd0 + t_h / 24.0);
            let gha = (gmst - source.ra_rad).rem_euclid(std::f64::consts::TAU);
            let visible: Vec<usize> = (0..stations.len())
                .filter(|&i| stations[i].elevation(gha, source.dec_rad) >= cut)
                .collect();
            if visible.len() < 2 {
                continue;
            }
            let scan_index = scans.len();
            let start = points.len();
            for (a, &i) in visible.iter().enumerate() {
                for &j in &visible[a + 1..] {
                    let (ri, rj) = (stations[i].xyz_m, stations[j].xyz_m);
                    let b = [ri[0] - rj[0], ri[1] - rj[1], ri[2] - rj[2]];
                    let [u, v, w] = baseline_uvw(b, gha, source.dec_rad);
                    points.push(UvPoint {
                        scan: scan_index,
                        st1: i,
                        st2: j,
                        u: u / lambda,
                        v: v / lambda,
                        w: w / lambda,
                        sigma_jy: thermal_sigma(
                            stations[i].sefd_jy,
                            stations[j].sefd_jy,
                            config.bandwidth_hz,
                            config.t_int_s,
                        ),
                    });
                }
            }
            scans.push(Scan {
                time_utc_h: t_h,
                gmst_rad: gmst,
                gha_rad: gha,
                stations: visible,
                vis: start..points.len(),
            });
        }
        if points.is_empty() {
            return Err(OperatorError::InvalidParameter {
                name: "config",
                reason: "no scan has two stations above the elevation cut".into(),
            });
        }
        Ok(Self {
            stations,
            source,
            config,
            scans,
            points,
        })
    }

    /// The default EHT 2017 track on M87*: [`eht2017`], [`Source::m87`],
    /// [`ObservationConfig::default`].
    pub fn eht2017_m87() -> Result<Self> {
        Self::new(eht2017(), Source::m87(), ObservationConfig::default())
    }

    /// Number of visibilities.
    pub fn n_vis(&self) -> usize {
        self.points.len()
    }

    /// Index of the visibility of baseline `(a, b)` (either order) within scan `scan`, and
    /// whether it is stored conjugated relative to `(a, b)` (i.e. `a > b`).
    pub fn vis_index(&self, scan: usize, a: usize, b: usize) -> Option<(usize, bool)> {
        let (lo, hi, conj) = if a < b { (a, b, false) } else { (b, a, true) };
        let sc = self.scans.get(scan)?;
        self.points[sc.vis.clone()]
            .iter()
            .position(|p| p.st1 == lo && p.st2 == hi)
            .map(|k| (sc.vis.start + k, conj))
    }
}
