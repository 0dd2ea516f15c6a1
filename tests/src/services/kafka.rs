//! A real single-node Kafka broker (KRaft), run by `tests/scripts/kafka.sh`.

use std::path::Path;

use super::Scripted;

/// A Kafka broker on 127.0.0.1 with its data and logs in its own directory.
/// Killed on drop (through a pid file in that directory); the tail of its log is
/// printed if the test is failing.
#[derive(Debug)]
pub struct Kafka {
    service: Scripted,
    pub bootstrap: String,
}

impl Kafka {
    /// Starts a broker whose data and logs live in `dir/kafka`; waits until it serves.
    pub fn start(dir: &Path) -> anyhow::Result<Self> {
        let (service, bootstrap) =
            Scripted::start("kafka.sh", dir.join("kafka"), "logs/server.log")?;
        Ok(Self { service, bootstrap })
    }

    pub fn create_topic(&self, name: &str, partitions: u32) -> anyhow::Result<()> {
        self.service
            .run("create-topic", &[name, &partitions.to_string()])
            .map(drop)
    }

    /// The broker's pid, from the pid file `kafka.sh` keeps (`None` while it is
    /// not running).
    pub fn pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.service.dir.join("pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// kill -9; data stays for [`Kafka::restart`].
    pub fn kill9(&self) -> anyhow::Result<()> {
        self.service.kill9()
    }

    /// Starts again with the same ports and data.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.bootstrap = self.service.restart()?;
        Ok(())
    }
}
