//! The config file: one TOML file whose keys are the environment variables the
//! command line already declares, so every setting has one name.
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

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// What every variable that the file may set starts with.
pub const ENV_PREFIX: &str = "MILVUS_LIKE_";

/// The variable that names the config file (the `--config` flag's).
pub const CONFIG_ENV: &str = "MILVUS_LIKE_CONFIG";

/// Variables without the prefix that still have a key: (variable, key path).
const FOREIGN_KEYS: &[(&str, &str)] = &[("RUST_LOG", "log.level")];

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
    fn by_flat_key(&self, flat: &str) -> Option<&Setting> {
        self.by_env.values().find(|s| flat_key(&s.key) == flat)
    }

    /// The documented key closest to `flat`, if it is close enough to be a typo.
    fn closest(&self, flat: &str) -> Option<&str> {
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
fn flat_key(dotted: &str) -> String {
    dotted.replace(['.', '-'], "_").to_ascii_uppercase()
}

/// The config file named by `--config PATH` / `--config=PATH` in `args` (up to a
/// `--`), else by `env` (the value of [`CONFIG_ENV`]).
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

/// The command that regenerates docs/configuration.md.
pub const REGENERATE_DOCS: &str =
    "cargo run -q -p milvus-like-node --bin milvus-like -- config-docs > docs/configuration.md";

/// docs/configuration.md: precedence, the file's rules, and every setting of
/// `command`'s tree by section.
pub fn render_docs(command: &clap::Command) -> String {
    let settings = Settings::of(command);
    let mut doc = String::new();
    let _ = write!(
        doc,
        "{}",
        DOCS_HEAD.replace("{REGENERATE}", REGENERATE_DOCS)
    );
    let mut sections: BTreeMap<&str, Vec<&Setting>> = BTreeMap::new();
    for setting in settings.iter() {
        let section = setting.key.rsplit_once('.').map_or("", |(s, _)| s);
        sections.entry(section).or_default().push(setting);
    }
    for (section, list) in &sections {
        if section.is_empty() {
            doc.push_str("\n### Top level\n\n");
        } else {
            let _ = writeln!(doc, "\n### `[{section}]`\n");
        }
        doc.push_str("| key | environment variable | flag | default | read by | description |\n");
        doc.push_str("|---|---|---|---|---|---|\n");
        for setting in list {
            let _ = writeln!(doc, "{}", row(setting));
        }
    }
    doc
}

/// One table row; where subcommands differ (defaults, help), each is named.
fn row(setting: &Setting) -> String {
    let uses = &setting.uses;
    let name = setting
        .key
        .rsplit_once('.')
        .map_or(setting.key.as_str(), |(_, n)| n);
    let key = if uses.iter().any(|u| u.list) {
        format!("`{name}` (array)")
    } else {
        format!("`{name}`")
    };
    let mut flags: Vec<String> = uses
        .iter()
        .filter_map(|u| u.flag.as_ref().map(|f| format!("`--{f}`")))
        .collect();
    flags.dedup();
    let defaults = distinct(uses, |u| match &u.default {
        Some(d) if d.is_empty() => "`\"\"`".to_owned(),
        Some(d) => format!("`{d}`"),
        None => "unset".to_owned(),
    });
    let default = describe_distinct(uses, &defaults);
    let helps = distinct(uses, |u| {
        let mut help = u.help.trim().to_owned();
        if !help.is_empty() && !help.ends_with(['.', '?', '!']) {
            help.push('.');
        }
        if !u.possible.is_empty() {
            let _ = write!(help, " One of `{}`.", u.possible.join("`, `"));
        }
        if u.secret {
            help.push_str(" A secret: its value is never printed.");
        }
        help.trim_start().to_owned()
    });
    let help = describe_distinct(uses, &helps);
    let read_by = if uses.iter().any(|u| u.subcommand.is_empty()) {
        "every subcommand".to_owned()
    } else {
        uses.iter()
            .map(|u| format!("`{}`", u.subcommand))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let cell = |s: &str| s.replace('|', "\\|");
    format!(
        "| {} | `{}` | {} | {} | {} | {} |",
        key,
        setting.env,
        flags.join(", "),
        cell(&default),
        read_by,
        cell(&help)
    )
}

/// The distinct values of `f` over `uses`, in first-seen order.
fn distinct(uses: &[Use], f: impl Fn(&Use) -> String) -> Vec<(String, Vec<usize>)> {
    let mut out: Vec<(String, Vec<usize>)> = Vec::new();
    for (i, u) in uses.iter().enumerate() {
        let v = f(u);
        match out.iter_mut().find(|(seen, _)| *seen == v) {
            Some((_, who)) => who.push(i),
            None => out.push((v, vec![i])),
        }
    }
    out
}

/// One value as is; several each followed by the subcommands that have it:
/// "`0.0.0.0:19530` (rootcoord); `127.0.0.1:19530` (standalone)".
fn describe_distinct(uses: &[Use], values: &[(String, Vec<usize>)]) -> String {
    if let [(only, _)] = values {
        return only.clone();
    }
    values
        .iter()
        .map(|(v, who)| {
            let names: Vec<&str> = who.iter().map(|&i| uses[i].subcommand.as_str()).collect();
            format!("{v} ({})", names.join(", "))
        })
        .collect::<Vec<_>>()
        .join("; ")
}

const DOCS_HEAD: &str = r#"# Configuration

<!-- Generated from the command-line definitions: do not edit by hand. Regenerate with
     {REGENERATE}
     (a test fails while this file differs from what the code generates). -->

Every setting of `milvus-like` has one name, given three ways: a command-line flag, an
environment variable, and a key in the config file. The key is the environment
variable's name without `MILVUS_LIKE_`, lowercased, with a section: `[kafka] brokers` is
`MILVUS_LIKE_KAFKA_BROKERS` is `--kafka-brokers`.

## Precedence

Highest first:

1. a command-line flag (`--kafka-brokers a:9092`);
2. an environment variable (`MILVUS_LIKE_KAFKA_BROKERS=a:9092`);
3. the config file (`[kafka] brokers = "a:9092"`);
4. the built-in default (the table below).

The config file is named by `--config PATH` (a flag of every subcommand) or
`MILVUS_LIKE_CONFIG=PATH`. Before the command line is parsed, each key of the file whose
environment variable is not already set is exported as that variable; a process started
with a config file therefore sees the same settings as one started with those variables.

## The file

- TOML. A key path joined with `_` and uppercased, prefixed `MILVUS_LIKE_`, is the
  environment variable: `[kafka] brokers` is `MILVUS_LIKE_KAFKA_BROKERS`, the top-level
  `channels` is `MILVUS_LIKE_CHANNELS`. Sections are only a way of writing it:
  `[kafka] sasl_username`, `[kafka.sasl] username` and a top-level `kafka_sasl_username`
  are the same setting (two of them in one file are an error).
- Lists (flags marked "array") are TOML arrays: `endpoints = ["http://a:2379",
  "http://b:2379"]` (a comma-separated string works too).
- Numbers and booleans are written as TOML numbers and booleans; durations are strings
  with a unit: `"250ms"`, `"30s"`, `"10m"`, `"24h"`.
- One file serves every role: a key that the running subcommand does not read (e.g.
  `[flush]` for a root coordinator) is ignored by it.
- A key that is no setting stops the process with a message naming the file, the key
  and the closest known key: ``unknown key `kafka.broker` in milvus.toml; did you mean
  `kafka.brokers`?``. A TOML syntax error names the line and column. A value of the wrong
  type (`channels = "many"`) is refused like the same value in the environment variable.
- Secrets (`kafka.sasl_password`, `s3.secret_key`) may sit in the file, but on
  Kubernetes prefer the environment variables from a Secret.

## The log level

`[log] level` is the initial log filter (`RUST_LOG` and `--log-level` are the same
setting; default `info`), in `tracing` `EnvFilter` syntax: `info`, or
`info,milvus_like_node::datanode=debug`. Every process serves it on its HTTP port and
takes a new one at run time, without a restart:

```sh
curl -s 127.0.0.1:9091/log-level                       # the current filter
curl -s -X PUT --data 'info,milvus_like_node=debug' 127.0.0.1:9091/log-level
```

An invalid filter is answered `400 Bad Request` with the reason, and the level stays as
it was. A change is logged at `info` with the old and the new filter (when one of the
two lets `info` through). A change lasts
until the process exits; the next start reads the configured level again.

## Example

[`milvus-like.example.toml`](milvus-like.example.toml) sets a key of every section:

```toml
log = { level = "info", format = "json" }
channels = 3

[etcd]
endpoints = ["http://etcd-0:2379", "http://etcd-1:2379"]

[kafka]
brokers = "kafka-0:9092,kafka-1:9092"

[flush]
age = "30s"
```

```sh
milvus-like datanode --config milvus-like.toml --flush-age 10s   # the flag wins
```

## Settings

"read by" lists the subcommands that take the setting. Where subcommands differ in a
default or a description, each is followed by the subcommands it belongs to.
"#;

#[cfg(test)]
mod tests {
    use super::*;

    /// A small command tree shaped like the binary's.
    fn command() -> clap::Command {
        use clap::{Arg, Command};
        Command::new("milvus-like")
            .arg(
                Arg::new("config")
                    .long("config")
                    .global(true)
                    .env(CONFIG_ENV),
            )
            .arg(
                Arg::new("log_level")
                    .long("log-level")
                    .global(true)
                    .env("RUST_LOG")
                    .default_value("info"),
            )
            .subcommand(
                Command::new("datanode")
                    .arg(
                        Arg::new("kafka_brokers")
                            .long("kafka-brokers")
                            .env("MILVUS_LIKE_KAFKA_BROKERS")
                            .default_value("127.0.0.1:9092"),
                    )
                    .arg(
                        Arg::new("etcd_endpoints")
                            .long("etcd-endpoints")
                            .env("MILVUS_LIKE_ETCD_ENDPOINTS")
                            .value_delimiter(','),
                    )
                    .arg(
                        Arg::new("kafka_sasl_username")
                            .long("kafka-sasl-username")
                            .env("MILVUS_LIKE_KAFKA_SASL_USERNAME"),
                    )
                    .arg(
                        Arg::new("flush_age")
                            .long("flush-age")
                            .env("MILVUS_LIKE_FLUSH_AGE")
                            .default_value("30s"),
                    )
                    .arg(Arg::new("sample").long("sample")),
            )
            .subcommand(
                Command::new("datacoord")
                    .arg(
                        Arg::new("channels")
                            .long("channels")
                            .env("MILVUS_LIKE_CHANNELS"),
                    )
                    .arg(
                        Arg::new("kafka_brokers")
                            .long("kafka-brokers")
                            .env("MILVUS_LIKE_KAFKA_BROKERS")
                            .default_value("127.0.0.1:9092"),
                    ),
            )
            .subcommand(
                Command::new("secret")
                    .hide(true)
                    .arg(Arg::new("x").long("x").env("MILVUS_LIKE_HIDDEN")),
            )
    }

    fn parse_ok(text: &str) -> Vec<(String, String)> {
        parse("milvus.toml", text, &Settings::of(&command()))
            .expect("parses")
            .into_iter()
            .map(|a| (a.env, a.value))
            .collect()
    }

    fn parse_err(text: &str) -> String {
        parse("milvus.toml", text, &Settings::of(&command()))
            .expect_err("refused")
            .to_string()
    }

    #[test]
    fn keys_come_from_the_whole_command_tree() {
        let settings = Settings::of(&command());
        let keys: Vec<(&str, &str)> = settings
            .iter()
            .map(|s| (s.env.as_str(), s.key.as_str()))
            .collect();
        assert_eq!(
            keys,
            [
                ("MILVUS_LIKE_CHANNELS", "channels"),
                ("MILVUS_LIKE_ETCD_ENDPOINTS", "etcd.endpoints"),
                ("MILVUS_LIKE_FLUSH_AGE", "flush.age"),
                ("MILVUS_LIKE_KAFKA_BROKERS", "kafka.brokers"),
                ("MILVUS_LIKE_KAFKA_SASL_USERNAME", "kafka.sasl_username"),
                ("RUST_LOG", "log.level"),
            ],
            "the config file's own variable, hidden subcommands and flags without a variable have no key"
        );
        let brokers = settings.get("MILVUS_LIKE_KAFKA_BROKERS").expect("brokers");
        let who: Vec<&str> = brokers.uses.iter().map(|u| u.subcommand.as_str()).collect();
        assert_eq!(who, ["datanode", "datacoord"]);
    }

    #[test]
    fn sections_arrays_numbers_and_booleans_flatten_to_variables() {
        let got = parse_ok(
            r#"
            channels = 3
            [log]
            level = "debug"
            [kafka]
            brokers = "a:9092"
            sasl.username = "u"
            [etcd]
            endpoints = ["http://a:2379", "http://b:2379"]
            [flush]
            age = "10s"
            "#,
        );
        assert_eq!(
            got,
            [
                ("MILVUS_LIKE_CHANNELS".into(), "3".into()),
                (
                    "MILVUS_LIKE_ETCD_ENDPOINTS".into(),
                    "http://a:2379,http://b:2379".into()
                ),
                ("MILVUS_LIKE_FLUSH_AGE".into(), "10s".into()),
                ("MILVUS_LIKE_KAFKA_BROKERS".into(), "a:9092".into()),
                ("MILVUS_LIKE_KAFKA_SASL_USERNAME".into(), "u".into()),
                ("RUST_LOG".into(), "debug".into()),
            ]
        );
        // Scalars other than strings become their TOML text.
        let settings = Settings::of(&command());
        let a = parse("f", "channels = true", &settings).expect("parses");
        assert_eq!(a[0].value, "true");
        let a = parse("f", "channels = 1.5", &settings).expect("parses");
        assert_eq!(a[0].value, "1.5");
    }

    #[test]
    fn an_unknown_key_names_the_file_the_key_and_the_closest_key() {
        assert_eq!(
            parse_err("[kafka]\nbroker = \"a:9092\"\n"),
            "unknown key `kafka.broker` in milvus.toml; did you mean `kafka.brokers`?"
        );
        assert_eq!(
            parse_err("[kafak]\nbrokers = \"a:9092\"\n"),
            "unknown key `kafak.brokers` in milvus.toml; did you mean `kafka.brokers`?"
        );
        assert_eq!(
            parse_err("favourite_colour = \"blue\"\n"),
            "unknown key `favourite_colour` in milvus.toml; docs/configuration.md lists the keys"
        );
        // The config file cannot name another one, nor set hidden settings.
        assert!(parse_err("config = \"other.toml\"").contains("unknown key `config`"));
        assert!(parse_err("hidden = 1").contains("unknown key `hidden`"));
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let message = parse_err("channels = 3\n[kafka\nbrokers = 1\n");
        assert!(
            message.starts_with("config file milvus.toml is not valid TOML"),
            "{message}"
        );
        assert!(message.contains("line 2"), "{message}");
    }

    #[test]
    fn two_spellings_of_one_setting_are_refused() {
        assert_eq!(
            parse_err("kafka_brokers = \"a\"\n[kafka]\nbrokers = \"b\"\n"),
            "keys `kafka.brokers` and `kafka_brokers` in milvus.toml are the same setting (MILVUS_LIKE_KAFKA_BROKERS)"
        );
    }

    #[test]
    fn bad_values_are_refused() {
        assert!(parse_err("[etcd]\nendpoints = [[\"a\"]]").contains("key `etcd.endpoints`"));
        assert!(parse_err("[etcd]\nendpoints = [\"a,b\"]").contains("may not contain `,`"));
    }

    #[test]
    fn the_environment_beats_the_file() {
        let settings = Settings::of(&command());
        let all = parse(
            "f",
            "channels = 3\n[kafka]\nbrokers = \"file:9092\"\n",
            &settings,
        )
        .expect("parses");
        let kept = not_overridden(all, |env| env == "MILVUS_LIKE_KAFKA_BROKERS");
        let envs: Vec<&str> = kept.iter().map(|a| a.env.as_str()).collect();
        assert_eq!(envs, ["MILVUS_LIKE_CHANNELS"]);
    }

    #[test]
    fn the_config_path_comes_from_the_flag_then_the_environment() {
        let args = |a: &[&str]| a.iter().map(OsString::from).collect::<Vec<_>>();
        let env = Some(OsString::from("env.toml"));
        assert_eq!(
            config_path(args(&["m", "datanode", "--config", "a.toml"]), env.clone()),
            Some(PathBuf::from("a.toml"))
        );
        assert_eq!(
            config_path(args(&["m", "--config=b.toml", "datanode"]), env.clone()),
            Some(PathBuf::from("b.toml"))
        );
        assert_eq!(
            config_path(args(&["m", "datanode"]), env.clone()),
            Some(PathBuf::from("env.toml"))
        );
        assert_eq!(
            config_path(args(&["m", "--", "--config", "c.toml"]), None),
            None
        );
        assert_eq!(
            config_path(args(&["m"]), Some(OsString::new())),
            None,
            "an empty variable names no file"
        );
    }

    #[test]
    fn documented_keys_of_variables() {
        assert_eq!(
            key_for_env("MILVUS_LIKE_DATANODE_MEMORY_MIB").as_deref(),
            Some("datanode.memory_mib")
        );
        assert_eq!(
            key_for_env("MILVUS_LIKE_ROOTCOORD_HTTP_LISTEN").as_deref(),
            Some("rootcoord.http_listen")
        );
        assert_eq!(
            key_for_env("MILVUS_LIKE_TOPIC_PREFIX").as_deref(),
            Some("topic_prefix")
        );
        assert_eq!(key_for_env("RUST_LOG").as_deref(), Some("log.level"));
        assert_eq!(key_for_env("HOME"), None);
    }

    #[test]
    fn docs_list_every_setting_with_its_readers() {
        let doc = render_docs(&command());
        assert!(doc.contains("### `[kafka]`"), "{doc}");
        assert!(
            doc.contains(
                "| `brokers` | `MILVUS_LIKE_KAFKA_BROKERS` | `--kafka-brokers` | `127.0.0.1:9092` | `datanode`, `datacoord` |"
            ),
            "{doc}"
        );
        assert!(doc.contains("| `endpoints` (array) |"), "{doc}");
        assert!(
            doc.contains("| `level` | `RUST_LOG` | `--log-level` | `info` | every subcommand |"),
            "{doc}"
        );
        assert!(!doc.contains("MILVUS_LIKE_HIDDEN"), "{doc}");
    }

    #[test]
    fn edit_distances() {
        assert_eq!(edit_distance("kafka_broker", "kafka_brokers"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }
}
