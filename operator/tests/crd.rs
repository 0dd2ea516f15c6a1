//! The committed CRD, and the Helm chart's copy of it, are what the Rust types
//! generate. After changing the types:
//!
//! ```sh
//! cargo run -p milvus-like-operator --bin crdgen > crds/milvusclusters.yaml
//! cp crds/milvusclusters.yaml charts/milvus-like-operator/crds/
//! ```

#[test]
fn committed_crds_match_the_types() {
    let generated = milvus_like_operator::crd_yaml().expect("CRD serializes");
    for file in [
        "crds/milvusclusters.yaml",
        "charts/milvus-like-operator/crds/milvusclusters.yaml",
    ] {
        let path = format!("{}/../{file}", env!("CARGO_MANIFEST_DIR"));
        let committed = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert!(
            committed == generated,
            "{file} differs from the Rust types: regenerate it (see this test's header)"
        );
    }
}
