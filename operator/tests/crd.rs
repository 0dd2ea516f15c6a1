//! The committed CRD is what the Rust types generate (run
//! `cargo run -p milvus-like-operator --bin crdgen > crds/milvusclusters.yaml`
//! after changing them).

#[test]
fn committed_crd_matches_the_types() {
    let generated = milvus_like_operator::crd_yaml().expect("CRD serializes");
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../crds/milvusclusters.yaml");
    let committed = std::fs::read_to_string(path).expect("crds/milvusclusters.yaml exists");
    assert!(
        committed == generated,
        "crds/milvusclusters.yaml differs from the Rust types: regenerate it with \
         `cargo run -p milvus-like-operator --bin crdgen > crds/milvusclusters.yaml`"
    );
}
