//! Segment files in object storage (being written).
