//! Prints the `MilvusCluster` CRD as YAML: `cargo run -p milvus-like-operator --bin crdgen > crds/milvusclusters.yaml`.

#![forbid(unsafe_code)]

fn main() -> anyhow::Result<()> {
    print!("{}", milvus_like_operator::crd_yaml()?);
    Ok(())
}
