//! Build script shared by every package that links libtorch: embeds libtorch's directory
//! as an rpath so binaries and test executables run without LD_LIBRARY_PATH.
//! torch-sys publishes that directory to direct dependents as DEP_TCH_LIBTORCH_LIB.
fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    if let Ok(dir) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
        // libtorch_cuda and friends find their CUDA runtime libraries through their own
        // rpaths; --disable-new-dtags keeps ours as DT_RPATH so it applies transitively.
        println!("cargo:rustc-link-arg=-Wl,--disable-new-dtags");
    }
}
