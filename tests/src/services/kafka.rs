//! A real single-node Kafka broker (KRaft), run by `tests/scripts/kafka.sh`.

use std::path::{Path, PathBuf};

use crate::process::tail;

fn kafka_script(args: &[&str]) -> anyhow::Result<String> {
    super::script("kafka.sh", args)
}

/// A Kafka broker on 127.0.0.1 with its data and logs in its own directory.
/// Killed on drop (through a pid file in that directory); the tail of its log is
/// printed if the test is failing.
#[derive(Debug)]
pub struct Kafka {
    dir: PathBuf,
    pub bootstrap: String,
}

impl Kafka {
    /// Starts a broker whose data and logs live in `dir/kafka`; waits until it serves.
    pub fn start(dir: &Path) -> anyhow::Result<Self> {
        let dir = dir.join("kafka");
        let bootstrap = kafka_script(&["start", &dir.to_string_lossy()])?;
        Ok(Self { dir, bootstrap })
    }

    pub fn create_topic(&self, name: &str, partitions: u32) -> anyhow::Result<()> {
        kafka_script(&[
            "create-topic",
            &self.dir.to_string_lossy(),
            name,
            &partitions.to_string(),
        ])
        .map(drop)
    }

    /// kill -9; data stays for [`Kafka::restart`].
    pub fn kill9(&self) -> anyhow::Result<()> {
        kafka_script(&["kill", &self.dir.to_string_lossy()]).map(drop)
    }

    /// Starts again with the same ports and data.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.bootstrap = kafka_script(&["start", &self.dir.to_string_lossy()])?;
        Ok(())
    }
}

impl Drop for Kafka {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "---- last lines of kafka ({}) ----\n{}\n----",
                self.dir.display(),
                tail(&self.dir.join("logs/server.log"), 40)
            );
        }
        let _ = kafka_script(&["kill", &self.dir.to_string_lossy()]);
    }
}
