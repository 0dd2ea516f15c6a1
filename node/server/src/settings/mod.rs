//! The node's settings. Each has one name, given three ways: a command-line flag, an
//! environment variable and a key in the config file.
//!
//! - [`args`]: the command line of every subcommand (clap), with the variable names,
//!   ports and defaults of `milvus_like_api::settings`.
//! - [`file`]: the config file.
//! - [`docs`]: docs/configuration.md, generated from the command tree.
//! - This module: the settings as the command tree declares them ([`Settings::of`]).
//!
//!
//! Key `[kafka] brokers` is `MILVUS_LIKE_KAFKA_BROKERS`: the key path joined with
//! `_`, uppercased, prefixed `MILVUS_LIKE_`. Before clap parses, the binary exports
//! each key of the file whose variable the environment does not already set; clap
//! then reads it like any other environment variable. Hence the precedence:
//! command-line flag > environment variable > config file > built-in default.
//!
//! The set of keys is read from the clap command tree itself ([`Settings::of`]), so
//! a new flag with an `env` is a new key, in the file and in docs/configuration.md
//! ([`render_docs`]), with nothing else to edit.

pub mod args;
pub mod docs;
pub mod file;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

pub use milvus_like_api::settings::env::{CONFIG as CONFIG_ENV, PREFIX as ENV_PREFIX};

/// Variables without the prefix that still have a key: (variable, key path).
const FOREIGN_KEYS: &[(&str, &str)] = &[(milvus_like_api::settings::env::LOG_LEVEL, "log.level")];

/// The sections of the file: variable `MILVUS_LIKE_{SECTION}_{REST}` is documented
/// as key `rest` in `[section]`; any other variable as a top-level key. (Both
/// spellings are accepted whatever the documentation says: `[kafka] sasl_username`,
/// `[kafka.sasl] username` and top-level `kafka_sasl_username` are one setting.)
const SECTIONS: &[&str] = &[
    "datacoord",
    "datanode",
    "etcd",
    "flush",
    "kafka",
    "log",
    "proxy",
    "querynode",
    "rootcoord",
    "s3",
    "segment",
    "storage",
    "tso",
];

/// How one subcommand (or the root command, for global flags) reads a setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Use {
    /// `rootcoord`, `datanode`, ...; empty for a global flag.
    pub subcommand: String,
    /// `--kafka-brokers` (without the dashes).
    pub flag: Option<String>,
    /// The built-in default as clap prints it; lists joined with `,`.
    pub default: Option<String>,
    pub help: String,
    /// The flag takes a list: in the file, an array.
    pub list: bool,
    /// One of these values only.
    pub possible: Vec<String>,
    /// A secret (clap's `hide_env_values`).
    pub secret: bool,
}

/// One setting: its variable, its documented key, and who reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    pub env: String,
    /// Dotted key path, e.g. `kafka.brokers` or `channels`.
    pub key: String,
    pub uses: Vec<Use>,
}

/// Every setting the command tree declares, by variable name.
#[derive(Debug, Clone)]
pub struct Settings {
    by_env: BTreeMap<String, Setting>,
}

impl Settings {
    /// Walks `command` and all its subcommands (hidden ones and hidden flags
    /// excluded), collecting every flag that declares an environment variable with
    /// the prefix (or one of [`FOREIGN_KEYS`]), except the config file's own.
    pub fn of(command: &clap::Command) -> Self {
        let mut by_env = BTreeMap::new();
        collect(command, "", &mut by_env);
        Self { by_env }
    }

    pub fn iter(&self) -> impl Iterator<Item = &Setting> {
        self.by_env.values()
    }

    pub fn get(&self, env: &str) -> Option<&Setting> {
        self.by_env.get(env)
    }

    /// The setting a flattened key (`KAFKA_BROKERS`, the key path joined by `_`,
    /// uppercased, without the prefix) names.
    pub(crate) fn by_flat_key(&self, flat: &str) -> Option<&Setting> {
        self.by_env.values().find(|s| flat_key(&s.key) == flat)
    }

    /// The documented key closest to `flat`, if it is close enough to be a typo.
    pub(crate) fn closest(&self, flat: &str) -> Option<&str> {
        let (distance, key) = self
            .by_env
            .values()
            .map(|s| (edit_distance(&flat_key(&s.key), flat), s.key.as_str()))
            .min()?;
        (distance <= (flat.len() / 3).max(2)).then_some(key)
    }
}

fn collect(command: &clap::Command, subcommand: &str, out: &mut BTreeMap<String, Setting>) {
    for arg in command.get_arguments() {
        if arg.is_hide_set() {
            continue;
        }
        let Some(env) = arg.get_env().and_then(|e| e.to_str()) else {
            continue;
        };
        if env == CONFIG_ENV {
            continue;
        }
        let Some(key) = key_for_env(env) else {
            continue;
        };
        let defaults: Vec<String> = arg
            .get_default_values()
            .iter()
            .map(|v| v.to_string_lossy().into_owned())
            .collect();
        let use_ = Use {
            subcommand: subcommand.to_owned(),
            flag: arg.get_long().map(str::to_owned),
            default: (!defaults.is_empty()).then(|| defaults.join(",")),
            help: arg
                .get_help()
                .map(|h| h.to_string().replace('\n', " "))
                .unwrap_or_default(),
            list: arg.get_value_delimiter().is_some(),
            possible: arg
                .get_possible_values()
                .iter()
                .filter(|p| !p.is_hide_set())
                .map(|p| p.get_name().to_owned())
                .collect(),
            secret: arg.is_hide_env_values_set(),
        };
        out.entry(env.to_owned())
            .or_insert_with(|| Setting {
                env: env.to_owned(),
                key,
                uses: Vec::new(),
            })
            .uses
            .push(use_);
    }
    for sub in command.get_subcommands() {
        if !sub.is_hide_set() {
            // The whole command line: `collection create`, not `create`.
            let path = if subcommand.is_empty() {
                sub.get_name().to_owned()
            } else {
                format!("{subcommand} {}", sub.get_name())
            };
            collect(sub, &path, out);
        }
    }
}

/// The documented key of variable `env`: `MILVUS_LIKE_KAFKA_BROKERS` is
/// `kafka.brokers`, `MILVUS_LIKE_CHANNELS` is `channels`; `None` for a variable
/// outside the prefix that has no key.
pub fn key_for_env(env: &str) -> Option<String> {
    if let Some((_, key)) = FOREIGN_KEYS.iter().find(|(e, _)| *e == env) {
        return Some((*key).to_owned());
    }
    let rest = env.strip_prefix(ENV_PREFIX)?.to_ascii_lowercase();
    for section in SECTIONS {
        if let Some(name) = rest.strip_prefix(section).and_then(|r| r.strip_prefix('_')) {
            return Some(format!("{section}.{name}"));
        }
    }
    Some(rest)
}

/// A key path as the variable's tail: `kafka.sasl-username` is `KAFKA_SASL_USERNAME`.
pub(crate) fn flat_key(dotted: &str) -> String {
    dotted.replace(['.', '-'], "_").to_ascii_uppercase()
}

/// Levenshtein distance, by characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = if ca == *cb {
                diagonal
            } else {
                1 + diagonal.min(above).min(row[j])
            };
            diagonal = above;
        }
    }
    row[b.len()]
}
