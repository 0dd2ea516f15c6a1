//! docs/configuration.md, rendered from the command tree: a new flag with an
//! environment variable is a new row, with nothing else to edit.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::{Setting, Settings, Use};

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
curl -s 127.0.0.1:19091/log-level                       # the current filter
curl -s -X PUT --data 'info,milvus_like_node=debug' 127.0.0.1:19091/log-level
```

An invalid filter is answered `400 Bad Request` with the reason, and the level stays as
it was. A change is logged at `info` with the old and the new filter (when one of the
two lets `info` through). A change lasts
until the process exits; the next start reads the configured level again. Changes are
taken from this host only (a loopback address; on Kubernetes, `kubectl exec` or
`kubectl port-forward`): from another address `PUT` is answered `403 Forbidden` and
logged, while `GET` stays open (docs/security.md).

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
