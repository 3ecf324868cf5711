//! Build script of the `remind` library: libtorch's rpath.
include!("rpath.in");

fn main() {
    emit_rpath();
}
