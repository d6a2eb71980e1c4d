//! Output formats shared by every command: the bench JSON line and the CSV/Markdown tables.



use anyhow::Result;
use serde::Serialize;

/// Whether lower or higher values of a measurement are better.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Better {
    /// Lower is better (times).
    Lower,
    /// Higher is better (rates).
    Higher,
}

/// One case of a side-by-side benchmark.
#[derive(Debug, Clone, Serialize)]
pub struct BenchCase {
    /// Case name, e.g. `ns64`.
    pub case: String,
    /// Our measurement.
    pub ours: f64,
    /// The PyTorch baseline's measurement.
    pub baseline: f64,
    /// Unit, e.g. `ms/sample` or `GFLOP/s`.
    pub unit: String,
    /// Which direction is better.
    pub better: Better,
    /// `baseline / ours` when lower is better, `ours / baseline` when higher is better:
    /// above 1 means ours is better.
    pub ratio: f64,
}

impl BenchCase {
    /// Build a case and compute its ratio.
    pub fn new(
        case: impl Into<String>,
        ours: f64,
        baseline: f64,
        unit: impl Into<String>,
        better: Better,
    ) -> Self {
        let ratio = match better {
            Better::Lower => baseline / ours,
            Better::Higher => ours / baseline,
        };
        Self {
            case: case.into(),
            ours,
            baseline,
            unit: unit.into(),
            better,
            ratio,
        }
    }
}

#[derive(Serialize)]
struct BenchLine<'a> {
    bench: &'a str,
    cases: &'a [BenchCase],
}

/// Print the human-readable summary and then, as the very last line, the JSON object of
/// `{"bench": NAME, "cases": [...]}` (docs/performance.md).
pub fn print_bench(name: &str, cases: &[BenchCase]) -> Result<()> {
    for c in cases {
        println!(
            "{:<12} ours {:>10.3} {:<10} baseline {:>10.3} {:<10} ratio {:.2} ({} is better)",
            c.case,
            c.ours,
            c.unit,
            c.baseline,
            c.unit,
            c.ratio,
            if c.better == Better::Lower {
                "lower"
            } else {
                "higher"
            }
        );
    }
    println!(
        "{}",
        serde_json::to_string(&BenchLine { bench: name, cases })?
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bench_ratio_direction() {
        let lower = BenchCase::new("t", 2.0, 8.0, "ms", Better::Lower);
        assert!((lower.ratio - 4.0).abs() < 1e-12);
        let higher = BenchCase::new("r", 70.0, 100.0, "GFLOP/s", Better::Higher);
        assert!((higher.ratio - 0.7).abs() < 1e-12);
    }

}
