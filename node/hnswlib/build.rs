//! Compiles the C interface to the vendored hnswlib (`cpp/shim.cpp`), always
//! optimized: an unoptimized graph is tens of times slower, in tests too.

fn main() {
    println!("cargo:rerun-if-changed=cpp/shim.cpp");
    println!("cargo:rerun-if-changed=vendor/hnswlib");
    cc::Build::new()
        .cpp(true)
        .file("cpp/shim.cpp")
        .include("vendor")
        .std("c++17")
        .opt_level(3)
        .debug(false)
        .warnings(false)
        .compile("milvus_like_hnswlib");
}
