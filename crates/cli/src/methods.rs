//! `diffinv methods`: the registry, as a table, one method's keys, or Markdown for docs/cli.md.

use diffinv_solvers::registry::{self, Method};
use serde_json::Value;

use crate::CliError;

/// The method's family in words (`derivative-free`, `gradient-based`, ...).
pub fn family(m: &Method) -> String {
    serde_json::to_value(m.family)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

fn requires(m: &Method) -> String {
    if m.requires().is_empty() {
        "-".into()
    } else {
        m.requires()
            .iter()
            .map(|c| c.name())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Every key of a configuration, dotted, with its default, in the order of the table.
pub fn flatten(v: &Value, prefix: &str, out: &mut Vec<(String, String)>) {
    match v {
        Value::Object(map) => {
            for (k, x) in map {
                let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                flatten(x, &key, out);
            }
        }
        other => out.push((prefix.to_string(), other.to_string())),
    }
}

/// The registry as a plain table: name, family, required capabilities, summary.
pub fn table() -> String {
    let mut s = format!("{:<16} {:<16} {:<34} {}\n", "method", "family", "requires", "what");
    for m in registry::registry() {
        s.push_str(&format!(
            "{:<16} {:<16} {:<34} {}\n",
            m.name,
            family(m),
            requires(m),
            m.summary
        ));
    }
    s.push_str(
        "\nA process forward model (a simulator run as workers) offers no capability: only the\n\
         methods that require nothing accept it. `diffinv methods NAME` lists a method's keys.\n",
    );
    s
}

/// One method: its summary, requirements and every configuration key with its default.
pub fn show(name: &str) -> Result<String, CliError> {
    let m = registry::method(name).map_err(|e| CliError::Usage(e.to_string()))?;
    let mut keys = Vec::new();
    flatten(m.default_config(), "", &mut keys);
    let mut s = format!(
        "{}: {}\nfamily: {}\nrequires: {}\n\n[solver] keys and defaults:\nmethod = \"{}\"\n",
        m.name,
        m.summary,
        family(m),
        requires(m),
        m.name
    );
    for (k, v) in keys {
        s.push_str(&format!("{k} = {v}\n"));
    }
    Ok(s)
}

/// Every method in Markdown: the registry section of docs/cli.md.
pub fn markdown() -> String {
    let mut s = String::from(
        "| method | family | requires | what |\n|---|---|---|---|\n",
    );
    for m in registry::registry() {
        s.push_str(&format!(
            "| `{}` | {} | {} | {} |\n",
            m.name,
            family(m),
            requires(m),
            m.summary.replace('|', "\\|")
        ));
    }
    for m in registry::registry() {
        let mut keys = Vec::new();
        flatten(m.default_config(), "", &mut keys);
        s.push_str(&format!("\n### {}\n\n{}\n\n", m.name, m.summary));
        s.push_str("| key | default |\n|---|---|\n");
        for (k, v) in keys {
            s.push_str(&format!("| `{k}` | `{v}` |\n"));
        }
    }
    s
}
