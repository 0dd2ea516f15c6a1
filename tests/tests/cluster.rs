//! The operator's end-to-end scenario (`tests/cluster/scenario.sh`) on the local
//! control plane: kube-apiserver, controller-manager, scheduler and kwok nodes
//! built from their Go modules (`tests/scripts/k8s.sh`), real etcd, Kafka, MinIO
//! and coordinators, the operator with the chart's RBAC, and a data-node process
//! per data-node pod. Real pods from our images: `tests/kind/scenario.sh`.

use std::process::Command;

use milvus_like_tests::{TestDir, heavy_slot, node_binary, workspace_root};

#[test]
fn operator_scenario_on_the_local_control_plane() {
    // A control plane, etcd, Kafka, MinIO and every role: a whole cluster's worth.
    let _slot = heavy_slot();
    let dir = TestDir::new("cluster-scenario");
    let bin_dir = node_binary().parent().expect("binary directory").to_owned();
    assert!(
        bin_dir.join("milvus-like-operator").is_file(),
        "{} is missing: run `cargo build --workspace --bins` first (tests/run.sh does)",
        bin_dir.join("milvus-like-operator").display()
    );
    let output = Command::new(workspace_root().join("tests/cluster/scenario.sh"))
        .env("WORK", dir.path())
        .env("MILVUS_LIKE_BIN_DIR", &bin_dir)
        .output()
        .expect("run tests/cluster/scenario.sh");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");
    assert!(
        output.status.success(),
        "the scenario failed ({}); its logs are in {}",
        output.status,
        dir.path().display()
    );
    for expected in [
        "every child created",
        "status: phase Ready",
        "Rebalance at the data coordinator",
        "query channels: 0->demo-querynode-",
        "DrainNode calls before the StatefulSet shrank",
        "all 7 pods replaced",
        "every child garbage-collected",
        "a refused apply: phase Degraded",
        "every child created, no data coordinator answering",
    ] {
        assert!(stdout.contains(expected), "no {expected:?} in:\n{stdout}");
    }
}
