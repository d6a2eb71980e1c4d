//! The seven black-box methods of EnKG's tables at each preset's size. Hyperparameters not
//! named here are the solvers' documented defaults (the papers' settings).

use diffinv_solvers::DynSolver;
use serde::{Deserialize, Serialize};

/// Row order of both tables (EnKG Tables 2 and 3, with CPS added).
pub const METHODS: [&str; 7] = [
    "EKI",
    "Forward-GSG",
    "Central-GSG",
    "DPG",
    "SCG",
    "EnKG",
    "CPS",
];

/// Which problem a method is configured for (EnKG's reference uses a different guidance
/// schedule for the black hole).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Problem {
    /// Navier-Stokes, EnKG section 5.2.
    NavierStokes,
    /// Black-hole imaging, EnKG section 5.3.
    BlackHole,
}

/// Size of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Preset {
    /// For the tests: a handful of particles and 4 steps.
    Tiny,
    /// CI: both tables in a few minutes on 2 cores.
    Quick,
    /// The paper's protocol scaled to a few hours on 2 cores.
    Full,
    /// The paper's own scale (Navier-Stokes only: N = 2048, 80 levels; for a GPU).
    Paper,
}

impl Preset {
    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Preset::Tiny => "tiny",
            Preset::Quick => "quick",
            Preset::Full => "full",
            Preset::Paper => "paper",
        }
    }
}

/// Build method `name` (one of [`METHODS`]) for `problem` at `preset`, from the preset file
/// `configs/tables/{ns,blackhole}-PRESET.toml`; `particles` overrides the preset's ensemble size
/// (EKI, EnKG) and candidate/query count (GSG, DPG, SCG, CPS): the row's `resize` keys.
pub fn build(
    name: &str,
    problem: Problem,
    preset: Preset,
    particles: Option<usize>,
) -> anyhow::Result<Box<dyn DynSolver>> {
    let table = match problem {
        Problem::NavierStokes => "ns",
        Problem::BlackHole => "blackhole",
    };
    crate::presets::TablePreset::get(table, preset)?
        .row(name)?
        .build(None, particles)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// The preset files list exactly the table's rows, in its order.
    #[test]
    fn preset_rows_are_the_table_rows() {
        for preset in [Preset::Tiny, Preset::Quick, Preset::Full] {
            for table in ["ns", "blackhole"] {
                let p = crate::presets::TablePreset::get(table, preset).unwrap();
                assert_eq!(p.labels(), METHODS.map(String::from).to_vec());
            }
        }
        let p = crate::presets::TablePreset::get("ns", Preset::Paper).unwrap();
        assert_eq!(p.labels(), METHODS.map(String::from).to_vec());
        assert!(crate::presets::TablePreset::get("blackhole", Preset::Paper).is_err());
    }
}
