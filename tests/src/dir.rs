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
            eprintln!(
                "{why}; its services' data and logs are kept in {}",
                kept.display()
            );
        }
    }
}

/// The workspace root (two levels above this crate's manifest).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_owned)
        .unwrap_or_else(|| PathBuf::from("."))
}
