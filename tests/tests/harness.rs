//! The harness itself: the real services start, survive kill -9 with their data,
//! and stop. Later tests build on these guarantees.

use std::time::Duration;

use milvus_like_tests::{Etcd, Kafka, TestDir};

#[tokio::test]
async fn etcd_keeps_its_data_across_kill9() {
    let dir = TestDir::new("harness-etcd");
    let mut etcd = Etcd::start(dir.path()).await.expect("etcd starts");
    let mut client = etcd_client::Client::connect([etcd.endpoint()], None)
        .await
        .expect("connect");
    client.put("k", "v", None).await.expect("put");
    etcd.kill9();
    assert!(
        tokio::time::timeout(Duration::from_secs(2), client.get("k", None))
            .await
            .map_or(true, |r| r.is_err()),
        "etcd must be down after kill -9"
    );
    etcd.restart().await.expect("etcd restarts");
    let mut client = etcd_client::Client::connect([etcd.endpoint()], None)
        .await
        .expect("reconnect");
    let got = client.get("k", None).await.expect("get");
    assert_eq!(got.kvs()[0].value(), b"v");
}

#[test]
fn kafka_starts_creates_topics_and_restarts_after_kill9() {
    let dir = TestDir::new("harness-kafka");
    let mut kafka = Kafka::start(dir.path()).expect("kafka starts");
    assert!(
        kafka.bootstrap.starts_with("127.0.0.1:"),
        "{}",
        kafka.bootstrap
    );
    kafka.create_topic("insert-log", 3).expect("create topic");
    kafka
        .create_topic("insert-log", 3)
        .expect("creating again is fine");
    let before = kafka.bootstrap.clone();
    kafka.kill9().expect("kill -9");
    kafka.restart().expect("restart from the same data");
    assert_eq!(kafka.bootstrap, before, "same port after restart");
    kafka
        .create_topic("delete-log", 3)
        .expect("serves after restart");
}
