//! Unit tests of the settings model, the config file and the generated docs, on a
//! small command tree shaped like the binary's.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{CommandFactory, Parser};

use super::args::Cli;
use super::docs::*;
use super::file::*;
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

// The binary's own command tree.

fn repo_file(path: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path)
}

/// docs/configuration.md is what the command tree generates.
#[test]
fn configuration_docs_are_up_to_date() {
    let generated = render_docs(&Cli::command());
    let committed = std::fs::read_to_string(repo_file("docs/configuration.md")).unwrap_or_default();
    assert!(
        committed == generated,
        "docs/configuration.md differs from the flags; regenerate it: {}",
        REGENERATE_DOCS
    );
}

/// The example in docs/configuration.md is a valid config file.
#[test]
fn the_docs_example_is_valid() {
    let docs = render_docs(&Cli::command());
    let example = docs
        .split_once("```toml\n")
        .and_then(|(_, rest)| rest.split_once("```"))
        .map(|(example, _)| example)
        .expect("a TOML example");
    let settings = Settings::of(&Cli::command());
    parse("the example", example, &settings).expect("the docs example parses");
}

/// Two variables must never flatten to one key, and every variable has one.
#[test]
fn every_variable_has_its_own_key() {
    let settings = Settings::of(&Cli::command());
    let mut keys: Vec<String> = settings.iter().map(|s| s.key.replace('.', "_")).collect();
    let count = keys.len();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), count, "{keys:?}");
    assert!(count >= 50, "only {count} settings found");
}

/// The example file loads, and its values parse for every subcommand.
#[test]
fn the_example_config_parses_for_every_subcommand() {
    let command = Cli::command();
    let settings = Settings::of(&command);
    let example = repo_file("docs/milvus-like.example.toml");
    let assignments = load(&example, &settings).expect("the example loads");
    assert!(assignments.len() >= 30, "{assignments:?}");
    // The values go through clap as the flags they stand for: what the
    // variables would give, checked by the same parsers.
    // The server roles and read-back (the client commands need arguments that
    // are not settings).
    let servers = [
        "standalone",
        "rootcoord",
        "datacoord",
        "proxy",
        "datanode",
        "read-back",
    ];
    for sub in command
        .get_subcommands()
        .filter(|s| servers.contains(&s.get_name()))
    {
        let name = sub.get_name();
        let mut argv = vec!["milvus-like".to_owned(), name.to_owned()];
        if name == "read-back" {
            argv.push("--collection=c".to_owned());
        }
        for a in &assignments {
            let setting = settings.get(&a.env).expect("a known setting");
            let flag = setting
                .uses
                .iter()
                .find(|u| u.subcommand == name || u.subcommand.is_empty())
                .and_then(|u| u.flag.clone());
            if let Some(flag) = flag {
                argv.push(format!("--{flag}={}", a.value));
            }
        }
        let parsed = Cli::try_parse_from(&argv);
        assert!(
            parsed.is_ok(),
            "{argv:?}: {}",
            parsed.err().map(|e| e.to_string()).unwrap_or_default()
        );
    }
    let datanode = assignments
        .iter()
        .find(|a| a.env == "MILVUS_LIKE_FLUSH_AGE")
        .expect("flush.age");
    assert_eq!(
        (datanode.key.as_str(), datanode.value.as_str()),
        ("flush.age", "30s")
    );
}

#[test]
fn index_build_threads_reach_the_data_node_and_zero_is_refused() {
    let cli = Cli::try_parse_from(["milvus-like", "datanode", "--index-build-threads=3"])
        .expect("three threads");
    let super::args::Command::Datanode(args) = cli.command else {
        panic!("a datanode command");
    };
    assert_eq!(args.config().index_build_threads, 3);
    let default = Cli::try_parse_from(["milvus-like", "datanode"]).expect("default");
    let super::args::Command::Datanode(args) = default.command else {
        panic!("a datanode command");
    };
    assert_eq!(args.config().index_build_threads, 1);
    assert!(Cli::try_parse_from(["milvus-like", "datanode", "--index-build-threads=0"]).is_err());
}
