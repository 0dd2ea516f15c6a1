//! Where a test's services keep their data and logs.

use std::path::{Path, PathBuf};

/// A directory for one test's services and logs. Kept (and announced) when the
/// test panics, deleted otherwise.
#[derive(Debug)]
pub struct TestDir {
    dir: Option<tempfile::TempDir>,
    path: PathBuf,
}

impl TestDir {
    pub fn new(name: &str) -> Self {
        let base = workspace_root().join("target").join("test-runs");
        let _ = std::fs::create_dir_all(&base);
        let dir = tempfile::Builder::new()
            .prefix(&format!("{name}-"))
            .tempdir_in(&base)
            .or_else(|_| tempfile::Builder::new().prefix(name).tempdir())
            .expect("create a test directory");
        let path = dir.path().to_owned();
        Self {
            dir: Some(dir),
            path,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TestDir {
    /// Removes the directory, unless the thread panics (a failed test) or
    /// `MILVUS_LIKE_KEEP_TEST_DIRS` is set (to read the logs of a passing run).
    fn drop(&mut self) {
        let panicking = std::thread::panicking();
        if (panicking || std::env::var_os("MILVUS_LIKE_KEEP_TEST_DIRS").is_some())
            && let Some(dir) = self.dir.take()
        {
            let kept = dir.keep();
            let why = if panicking {
                "test failed"
            } else {
                "MILVUS_LIKE_KEEP_TEST_DIRS is set"
            };
            if panicking {
                eprint!("{}", warnings(&kept, WARNINGS_PER_LOG));
            }
            eprintln!(
                "{why}; its services' data and logs are kept in {}",
                kept.display()
            );
        }
    }
}

/// Warnings and errors kept of each log in a failed test's summary.
const WARNINGS_PER_LOG: usize = 8;
/// Characters kept of each line in it.
const SUMMARY_LINE_CHARS: usize = 400;

/// The last `per_log` warning and error lines of each of our processes' logs
/// in `dir`, shortened: printed last when a test fails, where a truncated
/// output still shows them (a node's log tail is often only the info lines
/// around the failure, and its warnings said why long before).
fn warnings(dir: &Path, per_log: usize) -> String {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return String::new();
    };
    let mut logs: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    logs.sort();
    let mut out = String::new();
    for log in logs {
        let Ok(text) = std::fs::read_to_string(&log) else {
            continue;
        };
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
            .collect();
        if lines.is_empty() {
            continue;
        }
        let name = log
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        out.push_str(&format!(
            "---- {name}: {} warnings and errors, the last {} ----\n",
            lines.len(),
            per_log.min(lines.len())
        ));
        for line in &lines[lines.len().saturating_sub(per_log)..] {
            let short: String = line.chars().take(SUMMARY_LINE_CHARS).collect();
            out.push_str(&short);
            out.push('\n');
        }
    }
    out
}

/// The workspace root (two levels above this crate's manifest).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_owned)
        .unwrap_or_else(|| PathBuf::from("."))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_keeps_the_last_warnings_of_each_log() {
        let dir = tempfile::tempdir().expect("dir");
        let node = "2026-12-07T20:00:00Z  INFO a: started\n2026-12-07T20:00:01Z  WARN a: first\n2026-12-07T20:00:02Z ERROR a: second\n2026-12-07T20:00:03Z  WARN a: third\n";
        std::fs::write(dir.path().join("datanode-0.log"), node).expect("write");
        std::fs::write(
            dir.path().join("quiet.log"),
            "2026-12-07T20:00:00Z  INFO b: fine\n",
        )
        .expect("write");
        std::fs::write(dir.path().join("notes.txt"), " WARN not a log\n").expect("write");
        let summary = warnings(dir.path(), 2);
        assert_eq!(
            summary,
            "---- datanode-0.log: 3 warnings and errors, the last 2 ----\n\
             2026-12-07T20:00:02Z ERROR a: second\n\
             2026-12-07T20:00:03Z  WARN a: third\n"
        );
    }
}
