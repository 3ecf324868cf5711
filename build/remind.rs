//! Build script of the `remind` library: libtorch's rpath, and the C++ shims compiled
//! against libtorch's headers (csrc/autocast.cpp: bf16 autocast; csrc/upload.cpp: pinned
//! uploads to a GPU; csrc/optim.cpp: multi-tensor optimiser steps).
include!("rpath.in");

fn main() {
    emit_rpath();
    println!("cargo:rerun-if-changed=csrc/autocast.cpp");
    println!("cargo:rerun-if-changed=csrc/upload.cpp");
    println!("cargo:rerun-if-changed=csrc/optim.cpp");
    let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") else {
        panic!("torch-sys did not publish DEP_TCH_LIBTORCH_LIB (libtorch's lib folder)");
    };
    let include = std::path::Path::new(&lib).join("..").join("include");
    cc::Build::new()
        .cpp(true)
        .std("c++20")
        .file("csrc/autocast.cpp")
        .file("csrc/upload.cpp")
        .file("csrc/optim.cpp")
        .include(&include)
        .include(include.join("torch/csrc/api/include"))
        .flag_if_supported("-Wno-unused-parameter")
        .define("_GLIBCXX_USE_CXX11_ABI", "1")
        .compile("remind_autocast");
    println!("cargo:rustc-link-lib=torch_cpu");
    println!("cargo:rustc-link-lib=c10");
    println!("cargo:rustc-link-search=native={lib}");
}
