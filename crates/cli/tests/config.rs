//! Bad run files: every malformed key is one error line naming that key, found before anything
//! starts or is written. A property-based walk over a valid file's keys: removing a required
//! key, giving any key a value of the wrong type, a negative size or an unknown sibling key.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use diffinv_cli::config::RunFile;
use proptest::prelude::*;

const VALID: &str = r#"
[prior]
kind = "gaussian-mixture"
weights = [0.5, 0.5]
means = [[-2.0, 0.0], [2.0, 0.0]]
variance = 1.0

[forward]
kind = "process"
command = ["python3", "simulator.py"]
in_dim = 2
out_dim = 3
workers = 2
timeout_s = 60.0
max_restarts = 3

[data]
y = [1.0, 2.0, 3.0]

[likelihood]
kind = "gaussian"
sigma = 0.1

[solver]
method = "EnKG"
num_particles = 16

[run]
seed = 0
out = "results/x"
checkpoint_every_s = 0.0
shard_prior = false
"#;

/// (section, key, required): the keys of `VALID`.
const KEYS: &[(&str, &str, bool)] = &[
    ("prior", "kind", true),
    ("prior", "weights", true),
    ("prior", "means", true),
    ("prior", "variance", true),
    ("forward", "kind", true),
    ("forward", "command", true),
    ("forward", "in_dim", true),
    ("forward", "out_dim", true),
    ("forward", "workers", false),
    ("forward", "timeout_s", false),
    ("forward", "max_restarts", false),
    ("data", "y", true),
    ("likelihood", "kind", true),
    ("likelihood", "sigma", true),
    ("solver", "method", true),
    ("solver", "num_particles", false),
    ("run", "seed", false),
    ("run", "out", false),
    ("run", "checkpoint_every_s", false),
    ("run", "shard_prior", false),
];

fn parse(doc: &toml::Table) -> Result<RunFile, String> {
    let text = toml::to_string(doc).unwrap();
    RunFile::parse(&text, Path::new("problem.toml"), Path::new(".")).map_err(|e| e.to_string())
}

fn base() -> toml::Table {
    VALID.parse().unwrap()
}

fn set(doc: &mut toml::Table, section: &str, key: &str, v: Option<toml::Value>) {
    let t = doc.get_mut(section).unwrap().as_table_mut().unwrap();
    match v {
        Some(v) => {
            t.insert(key.into(), v);
        }
        None => {
            t.remove(key);
        }
    }
}

fn one_line_naming(err: &str, key: &str) {
    assert!(!err.contains('\n'), "not one line: {err}");
    assert!(err.contains(key), "{key:?} not named in: {err}");
}

#[test]
fn the_valid_file_parses() {
    parse(&base()).unwrap();
}

/// A value of another type than the key's.
fn wrong_type(v: &toml::Value) -> toml::Value {
    match v {
        toml::Value::String(_) => toml::Value::Integer(7),
        toml::Value::Array(_) => toml::Value::String("not a list".into()),
        toml::Value::Table(_) => toml::Value::Boolean(true),
        _ => toml::Value::String("seven".into()),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn a_malformed_key_is_one_line_naming_it(i in 0..KEYS.len(), how in 0..4usize) {
        let (section, key, required) = KEYS[i];
        let mut doc = base();
        let current = doc[section][key].clone();
        let expect_named: Option<String> = match how {
            // Removed.
            0 => {
                set(&mut doc, section, key, None);
                required.then(|| key.to_string())
            }
            // Another type (the solver's keys are checked by the registry, which names the
            // key and its expected type).
            1 => {
                set(&mut doc, section, key, Some(wrong_type(&current)));
                Some(key.to_string())
            }
            // A negative number where there is a number.
            2 => {
                if current.is_integer() || current.is_float() {
                    set(&mut doc, section, key, Some(toml::Value::Integer(-1)));
                    // seed and a noise level may not be negative either; but -1 s between
                    // checkpoints is refused too.
                    Some(key.to_string())
                } else {
                    None
                }
            }
            // An unknown key next to it.
            _ => {
                let bad = format!("{key}_x");
                set(&mut doc, section, &bad, Some(current.clone()));
                Some(bad)
            }
        };
        match (parse(&doc), expect_named) {
            (Err(e), Some(k)) => one_line_naming(&e, &k),
            (Ok(_), None) => {}
            (Ok(_), Some(k)) => prop_assert!(false, "{section}.{k} ({how}) was accepted"),
            (Err(e), None) => prop_assert!(false, "{section}.{key} ({how}) refused: {e}"),
        }
    }
}

#[test]
fn unknown_sections_kinds_and_methods_name_close_matches() {
    let mut doc = base();
    doc.insert("solverr".into(), toml::Value::Table(toml::Table::new()));
    let e = parse(&doc).unwrap_err();
    one_line_naming(&e, "solverr");
    assert!(e.contains("did you mean \"solver\""), "{e}");

    let mut doc = base();
    set(&mut doc, "forward", "kind", Some("proces".into()));
    let e = parse(&doc).unwrap_err();
    one_line_naming(&e, "forward.kind");
    assert!(e.contains("\"process\""), "{e}");

    let mut doc = base();
    set(&mut doc, "prior", "kind", Some("gaussian-mixtur".into()));
    one_line_naming(&parse(&doc).unwrap_err(), "gaussian-mixture");
}

#[test]
fn conflicting_and_inconsistent_values_are_refused() {
    // Both an inline array and a file.
    let mut doc = base();
    set(&mut doc, "data", "y_npy", Some("y.npy".into()));
    one_line_naming(&parse(&doc).unwrap_err(), "data.y");
    // Means of different lengths, or as many means as weights.
    let mut doc = base();
    set(&mut doc, "prior", "means", Some(toml::Value::try_from(vec![vec![0.0, 1.0], vec![2.0]]).unwrap()));
    one_line_naming(&parse(&doc).unwrap_err(), "prior.means[1]");
    let mut doc = base();
    set(&mut doc, "prior", "weights", Some(toml::Value::try_from(vec![1.0]).unwrap()));
    one_line_naming(&parse(&doc).unwrap_err(), "prior.means");
    // Zero sizes, a zero timeout, an unknown imaging task.
    for (k, v) in [("in_dim", 0i64), ("out_dim", 0), ("workers", 0)] {
        let mut doc = base();
        set(&mut doc, "forward", k, Some(toml::Value::Integer(v)));
        one_line_naming(&parse(&doc).unwrap_err(), k);
    }
    let mut doc = base();
    set(&mut doc, "forward", "timeout_s", Some(toml::Value::Float(0.0)));
    one_line_naming(&parse(&doc).unwrap_err(), "timeout_s");
    let mut doc = base();
    doc.insert(
        "forward".into(),
        toml::toml! { kind = "imaging" task = "sr5" shape = [1, 8, 8] }.into(),
    );
    let e = parse(&doc).unwrap_err();
    one_line_naming(&e, "forward.task");
    assert!(e.contains("sr4"), "{e}");
    // An EHT section with a misspelt key.
    let mut doc = base();
    doc.insert("forward".into(), toml::toml! { kind = "eht" jy_per_unitt = 1.0 }.into());
    let e = parse(&doc).unwrap_err();
    one_line_naming(&e, "forward.jy_per_unitt");
    assert!(e.contains("jy_per_unit"), "{e}");
    // Invalid TOML: one line with the line number.
    let e = RunFile::parse("[prior\nkind = 1", Path::new("p.toml"), Path::new("."))
        .unwrap_err()
        .to_string();
    one_line_naming(&e, "line 1");
}
