//! The data coordinator: decides where data goes (channel ownership, segments,
//! flushes). See issue #3.

pub mod balancer;
