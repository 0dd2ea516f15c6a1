//! MinIO harness (being written).
