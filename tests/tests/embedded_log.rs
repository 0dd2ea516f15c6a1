//! The embedded log (standalone's insert and delete logs) under kill -9: a writer
//! process appending from 8 tasks is killed again and again; every append it saw
//! acknowledged must be readable afterwards at its offset, exactly once, and the
//! offsets of a channel have no gaps.

use std::collections::{HashMap, HashSet};
use std::process::{Command, Stdio};
use std::time::Duration;

use milvus_like_node::msgstream::{LocalLog, Log, Stream};
use milvus_like_tests::{TestDir, node_binary, wait_for};

const CHANNELS: u32 = 2;

/// `(channel, offset, seq)` of every complete `acked` line.
fn acked_lines(text: &str) -> Vec<(u32, i64, u64)> {
    let mut lines: Vec<&str> = text.split('\n').collect();
    lines.pop(); // after the last newline: empty, or cut by the kill
    lines
        .iter()
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            assert_eq!((f.len(), f[0]), (4, "acked"), "bad line {l:?}");
            (
                f[1].parse().expect("channel"),
                f[2].parse().expect("offset"),
                f[3].parse().expect("seq"),
            )
        })
        .collect()
}

#[tokio::test]
async fn every_acknowledged_append_survives_kill9_exactly_once() {
    let dir = TestDir::new("embedded-log-kill9");
    let path = dir.path().join("log.redb");
    let writer = node_binary().with_file_name("log_writer");
    let mut acked = Vec::new();
    for round in 0..6 {
        let out = dir.path().join(format!("round-{round}.out"));
        let mut child = Command::new(&writer)
            .arg(&path)
            .arg(CHANNELS.to_string())
            .arg(round.to_string())
            .stdout(std::fs::File::create(&out).expect("out file"))
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start log_writer (cargo build --bins)");
        // Kill it at a different point each round, once it has acknowledged something.
        let want = 50 + round * 150;
        wait_for("acknowledged appends", Duration::from_secs(30), || {
            let out = out.clone();
            async move {
                let n = std::fs::read_to_string(&out).ok()?.matches('\n').count();
                (n >= want).then_some(())
            }
        })
        .await
        .expect("the writer appends");
        child.kill().expect("kill -9");
        let _ = child.wait();
        let this = acked_lines(&std::fs::read_to_string(&out).expect("read out"));
        eprintln!(
            "round {round}: {} appends acknowledged before kill -9",
            this.len()
        );
        acked.extend(this);
    }

    let log = LocalLog::open(&path).expect("reopen after the kills");
    let consumer = log.consumer("check", 0).expect("consumer");
    let mut ends = HashMap::new();
    for channel in 0..CHANNELS {
        consumer.assign(channel, 0, 0).expect("assign");
        ends.insert(
            channel,
            consumer
                .high_watermark(Stream::Insert, channel)
                .await
                .expect("hw"),
        );
    }
    let total: i64 = ends.values().sum();
    let mut records: HashMap<(u32, i64), Vec<u8>> = HashMap::new();
    while (records.len() as i64) < total {
        let r = tokio::time::timeout(Duration::from_secs(10), consumer.recv())
            .await
            .expect("a record within 10 s")
            .expect("recv");
        assert_eq!(r.stream, Stream::Insert);
        let fresh = records
            .insert((r.channel, r.offset), r.payload().to_vec())
            .is_none();
        assert!(
            fresh,
            "offset {} of channel {} read twice",
            r.channel, r.offset
        );
    }
    // No gaps: every offset below the end is there.
    for (channel, end) in &ends {
        for offset in 0..*end {
            assert!(
                records.contains_key(&(*channel, offset)),
                "channel {channel} has no record at offset {offset} (end {end})"
            );
        }
    }
    // Every acknowledged append is at its offset with its payload.
    for (channel, offset, seq) in &acked {
        let payload = records
            .get(&(*channel, *offset))
            .unwrap_or_else(|| panic!("acknowledged ({channel}, {offset}) is missing"));
        assert_eq!(
            &payload[..8],
            &seq.to_le_bytes(),
            "({channel}, {offset}) holds another record"
        );
        assert_eq!(payload.len(), 4096 + (*seq % 7) as usize * 100);
    }
    // Exactly once: no payload twice.
    let seqs: Vec<u64> = records
        .values()
        .map(|p| u64::from_le_bytes(p[..8].try_into().expect("8 bytes")))
        .collect();
    let distinct: HashSet<u64> = seqs.iter().copied().collect();
    assert_eq!(distinct.len(), seqs.len(), "a record was written twice");
    eprintln!(
        "{} acknowledged appends over 6 kills all read back once; {} records in the log",
        acked.len(),
        records.len()
    );
}
