//! The config file and the run-time log level, through the real binary: a
//! `milvus-like standalone` whose HTTP port comes from a config file, an
//! environment variable or a flag; an unknown key; `GET`/`PUT /log-level`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use milvus_like_tests::{Process, TestDir, free_port, http, node_binary, wait_for};

/// The child's environment without any setting of ours (`MILVUS_LIKE_*`,
/// `RUST_LOG`), so that the test's own environment cannot decide the outcome.
fn clean_env(cmd: &mut Command) {
    for (k, _) in std::env::vars() {
        if k.starts_with("MILVUS_LIKE_") && k != "MILVUS_LIKE_BIN" || k == "RUST_LOG" {
            cmd.env_remove(k);
        }
    }
}

/// `milvus-like standalone --config FILE ARGS`, with `env` set and no other
/// setting from the environment.
fn standalone(
    dir: &Path,
    name: &str,
    config: &Path,
    env: &[(&str, String)],
    args: &[String],
) -> Process {
    let mut cmd = Command::new(node_binary());
    cmd.arg("standalone").arg("--config").arg(config).args(args);
    clean_env(&mut cmd);
    for (k, v) in env {
        cmd.env(k, v);
    }
    Process::spawn(name, cmd, dir.join(format!("{name}.log"))).expect("spawn")
}

/// A config file of a standalone with its data under `dir/name`, the root
/// coordinator's gRPC on `port` and HTTP on `http_port`, the other roles on free
/// ports, and `extra` lines.
fn config_file(dir: &Path, name: &str, port: u16, http_port: u16, extra: &str) -> PathBuf {
    let path = dir.join(format!("{name}.toml"));
    let data = dir.join(format!("{name}-data"));
    let mut text = format!(
        "data_dir = {data:?}\n{extra}\n[rootcoord]\nlisten = \"127.0.0.1:{port}\"\nhttp_listen = \"127.0.0.1:{http_port}\"\n",
        data = data.display().to_string(),
    );
    for role in ["proxy", "datacoord", "datanode", "querynode"] {
        text.push_str(&format!(
            "[{role}]\nlisten = \"127.0.0.1:{}\"\nhttp_listen = \"127.0.0.1:{}\"\n",
            free_port(),
            free_port()
        ));
    }
    std::fs::write(&path, text).expect("write config");
    path
}

/// Waits until `/healthz` answers on `port`; panics with the log otherwise.
async fn wait_healthy(port: u16, process: &Process) {
    wait_for(
        &format!("/healthz on port {port}"),
        Duration::from_secs(20),
        || async move {
            match http(port, "GET", "/healthz", "").await {
                Ok((200, _)) => Some(()),
                _ => None,
            }
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}; log:\n{}", process.log()));
}

async fn refuses_connections(port: u16) -> bool {
    tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
}

#[tokio::test]
async fn the_config_file_sets_ports_and_the_environment_and_flags_win() {
    let dir = TestDir::new("config-precedence");
    let (file_http, env_http, flag_http) = (free_port(), free_port(), free_port());

    // The file alone: its HTTP port (and its gRPC port and data dir).
    let config = config_file(dir.path(), "file", free_port(), file_http, "");
    let mut sa = standalone(dir.path(), "file", &config, &[], &[]);
    wait_healthy(file_http, &sa).await;
    assert!(sa.log().contains("read the config file"), "{}", sa.log());
    sa.terminate(Duration::from_secs(5));

    // The environment variable beats the file.
    let config = config_file(dir.path(), "env", free_port(), file_http, "");
    let env = [(
        "MILVUS_LIKE_ROOTCOORD_HTTP_LISTEN",
        format!("127.0.0.1:{env_http}"),
    )];
    let mut sa = standalone(dir.path(), "env", &config, &env, &[]);
    wait_healthy(env_http, &sa).await;
    assert!(
        refuses_connections(file_http).await,
        "the file's port is not used"
    );
    sa.terminate(Duration::from_secs(5));

    // The flag beats the environment variable (and the file).
    let config = config_file(dir.path(), "flag", free_port(), file_http, "");
    let flag = [format!("--rootcoord-http-listen=127.0.0.1:{flag_http}")];
    let mut sa = standalone(dir.path(), "flag", &config, &env, &flag);
    wait_healthy(flag_http, &sa).await;
    assert!(
        refuses_connections(env_http).await,
        "the variable's port is not used"
    );
    assert!(
        refuses_connections(file_http).await,
        "the file's port is not used"
    );
    sa.terminate(Duration::from_secs(5));

    // MILVUS_LIKE_CONFIG names the file as well as --config does.
    let config = config_file(dir.path(), "named", free_port(), file_http, "");
    let mut cmd = Command::new(node_binary());
    cmd.arg("standalone");
    clean_env(&mut cmd);
    cmd.env("MILVUS_LIKE_CONFIG", &config);
    let sa = Process::spawn("named", cmd, dir.path().join("named.log")).expect("spawn");
    wait_healthy(file_http, &sa).await;
}

#[tokio::test]
async fn an_unknown_key_stops_the_process_with_the_closest_key() {
    let dir = TestDir::new("config-unknown");
    let config = config_file(
        dir.path(),
        "typo",
        free_port(),
        free_port(),
        "[kafka]\nbroker = \"a:9092\"",
    );
    let output = Command::new(node_binary())
        .arg("standalone")
        .arg("--config")
        .arg(&config)
        .env_remove("MILVUS_LIKE_CONFIG")
        .output()
        .expect("run");
    assert!(!output.status.success(), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        stderr.trim(),
        format!(
            "error: unknown key `kafka.broker` in {}; did you mean `kafka.brokers`?",
            config.display()
        )
    );
}

#[tokio::test]
async fn the_log_level_changes_at_run_time() {
    let dir = TestDir::new("config-log-level");
    let http_port = free_port();
    // The file sets the initial level.
    let config = config_file(
        dir.path(),
        "sa",
        free_port(),
        http_port,
        "[log]\nlevel = \"info\"",
    );
    let sa = standalone(dir.path(), "sa", &config, &[], &[]);
    wait_healthy(http_port, &sa).await;
    assert_eq!(
        http(http_port, "GET", "/log-level", "").await.expect("get"),
        (200, "info\n".to_owned())
    );
    // At info, requests are not logged.
    assert!(!sa.log().contains("HTTP request"), "{}", sa.log());

    let (status, body) = http(http_port, "PUT", "/log-level", "debug")
        .await
        .expect("put");
    assert_eq!(
        (status, body.as_str()),
        (200, "log filter changed from `info` to `debug`\n")
    );
    http(http_port, "GET", "/healthz", "").await.expect("get");
    wait_for("a debug line", Duration::from_secs(10), || {
        let log = sa.log();
        async move {
            log.lines()
                .any(|l| {
                    l.contains("DEBUG") && l.contains("HTTP request") && l.contains("/healthz")
                })
                .then_some(())
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}; log:\n{}", sa.log()));
    let log = sa.log();
    assert!(
        log.lines().any(|l| l.contains("changing the log filter")
            && l.contains("old")
            && l.contains("info")
            && l.contains("debug")),
        "the change is logged with both filters: {log}"
    );

    // Garbage is refused with the reason, and the level stays.
    let (status, body) = http(
        http_port,
        "PUT",
        "/log-level",
        "debug,milvus_like_node=loud",
    )
    .await
    .expect("put");
    assert_eq!(status, 400, "{body}");
    assert!(
        body.starts_with("invalid log filter `debug,milvus_like_node=loud`")
            && body.contains("the log filter stays as it was"),
        "{body}"
    );
    let (status, body) = http(http_port, "PUT", "/log-level", "").await.expect("put");
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        http(http_port, "GET", "/log-level", "").await.expect("get"),
        (200, "debug\n".to_owned())
    );
}
