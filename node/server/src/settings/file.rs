//! The config file: one TOML file whose keys are the settings' environment
//! variables. Before clap parses, the binary exports each key of the file whose
//! variable the environment does not already set ([`not_overridden`]).

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use super::{Settings, flat_key};

/// The config file named by `--config PATH` / `--config=PATH` in `args` (up to a
/// `--`), else by `env` (the value of [`super::CONFIG_ENV`]).
pub fn config_path(
    args: impl IntoIterator<Item = OsString>,
    env: Option<OsString>,
) -> Option<PathBuf> {
    let mut args = args.into_iter().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--" {
            break;
        }
        if arg == "--config" {
            return args.next().map(PathBuf::from);
        }
        if let Some(path) = arg.to_str().and_then(|a| a.strip_prefix("--config=")) {
            return Some(PathBuf::from(path));
        }
    }
    env.filter(|e| !e.is_empty()).map(PathBuf::from)
}

/// Why a config file cannot be used; the message names the file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("read config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid TOML: {message}")]
    Syntax { path: String, message: String },
    #[error("unknown key `{key}` in {path}; {hint}")]
    UnknownKey {
        path: String,
        key: String,
        hint: String,
    },
    #[error("key `{key}` in {path}: {problem}")]
    BadValue {
        path: String,
        key: String,
        problem: String,
    },
    #[error("keys `{first}` and `{second}` in {path} are the same setting ({env})")]
    Duplicate {
        path: String,
        first: String,
        second: String,
        env: String,
    },
}

/// One variable the file sets, and the key that set it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    pub env: String,
    pub value: String,
    /// The key as written in the file (dotted).
    pub key: String,
}

/// Reads and checks the file at `path`: the variables it sets.
pub fn load(path: &Path, settings: &Settings) -> Result<Vec<Assignment>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.display().to_string(),
        source,
    })?;
    parse(&path.display().to_string(), &text, settings)
}

/// Parses TOML `text` (from file `path`, for messages) into the variables it sets,
/// in key order. Every key must name a setting of `settings`.
pub fn parse(path: &str, text: &str, settings: &Settings) -> Result<Vec<Assignment>, ConfigError> {
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| ConfigError::Syntax {
            path: path.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        })?;
    let mut leaves = Vec::new();
    flatten(path, &table, &mut Vec::new(), &mut leaves)?;
    let mut out: Vec<Assignment> = Vec::with_capacity(leaves.len());
    for (segments, value) in leaves {
        let dotted = segments.join(".");
        let flat = flat_key(&dotted);
        let Some(setting) = settings.by_flat_key(&flat) else {
            let hint = match settings.closest(&flat) {
                Some(key) => format!("did you mean `{key}`?"),
                None => "docs/configuration.md lists the keys".to_owned(),
            };
            return Err(ConfigError::UnknownKey {
                path: path.to_owned(),
                key: dotted,
                hint,
            });
        };
        if let Some(first) = out.iter().find(|a| a.env == setting.env) {
            return Err(ConfigError::Duplicate {
                path: path.to_owned(),
                first: first.key.clone(),
                second: dotted,
                env: setting.env.clone(),
            });
        }
        out.push(Assignment {
            env: setting.env.clone(),
            value,
            key: dotted,
        });
    }
    Ok(out)
}

/// Leaves of `table` as (key path, value as the variable's text).
fn flatten(
    path: &str,
    table: &toml::Table,
    prefix: &mut Vec<String>,
    out: &mut Vec<(Vec<String>, String)>,
) -> Result<(), ConfigError> {
    for (name, value) in table {
        prefix.push(name.clone());
        let bad = |problem: &str| ConfigError::BadValue {
            path: path.to_owned(),
            key: prefix.join("."),
            problem: problem.to_owned(),
        };
        match value {
            toml::Value::Table(inner) => flatten(path, inner, prefix, out)?,
            toml::Value::Array(items) => {
                let mut texts = Vec::with_capacity(items.len());
                for item in items {
                    let text = scalar(item).ok_or_else(|| {
                        bad("an array may hold only strings, numbers and booleans")
                    })?;
                    if text.contains(',') {
                        return Err(bad(
                            "an array item may not contain `,` (lists are passed on comma separated)",
                        ));
                    }
                    texts.push(text);
                }
                out.push((prefix.clone(), texts.join(",")));
            }
            other => out.push((
                prefix.clone(),
                scalar(other).ok_or_else(|| bad("unsupported value"))?,
            )),
        }
        prefix.pop();
    }
    Ok(())
}

fn scalar(value: &toml::Value) -> Option<String> {
    match value {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Float(f) => Some(f.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        toml::Value::Datetime(d) => Some(d.to_string()),
        toml::Value::Array(_) | toml::Value::Table(_) => None,
    }
}

/// The assignments the environment does not override (`is_set(variable)`): what
/// the binary exports before clap parses.
pub fn not_overridden(
    assignments: Vec<Assignment>,
    is_set: impl Fn(&str) -> bool,
) -> Vec<Assignment> {
    assignments
        .into_iter()
        .filter(|a| !is_set(&a.env))
        .collect()
}
