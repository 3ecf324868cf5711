#!/usr/bin/env bash
# Builds the stage binaries against another PyTorch's libtorch (the GPU machine's), for
# `scripts/gpu-check.sh pack`:
#
#   scripts/gpu-build.sh TORCH_VERSION [WORK_DIR]      e.g. scripts/gpu-build.sh 2.11.0
#
# The GPU machine has no Rust toolchain and only its own PyTorch, so the binaries are built
# here against that version's headers and run there on its libraries (the ABI probe of
# gpu-check.sh checks the result). Steps: download the torch wheel (PyPI, no dependencies)
# into WORK_DIR (default ~/.cache/remind-rs/gpu-build), unpack its include/ and lib/, copy
# tch's torch-sys and stub the C wrappers of operators this libtorch lacks (found by
# compiling the wrappers against its headers; each stub throws if ever called), then
# `cargo build` into WORK_DIR/target with that torch-sys patched in on the command line
# (Cargo.toml is left as it is, Cargo.lock restored after). Prints the binaries' folder last.
set -euo pipefail
version=${1:?usage: scripts/gpu-build.sh TORCH_VERSION [WORK_DIR]}
work=${2:-$HOME/.cache/remind-rs/gpu-build}/torch-$version
mkdir -p "$work"
python=${PYTHON:-python3}

if [ ! -d "$work/torch/include" ]; then
    "$python" -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux_2_28_x86_64 -d "$work/wheel" "torch==$version"
    (cd "$work" && unzip -q -o wheel/torch-*.whl 'torch/include/*' 'torch/lib/*' 'torch/version.py')
fi

sys_src=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/torch-sys-0.26.0 | head -n 1)
[ -d "$sys_src" ] || { echo "torch-sys 0.26.0 is not in cargo's registry: run cargo fetch" >&2; exit 1; }
sys=$work/torch-sys
if [ ! -f "$sys/.stubbed" ]; then
    rm -rf "$sys" && cp -r "$sys_src" "$sys"
    inc=$work/torch/include
    errors=$(g++ -std=c++17 -fsyntax-only -D_GLIBCXX_USE_CXX11_ABI=1 -I"$inc" \
        -I"$inc/torch/csrc/api/include" "$sys/libtch/torch_api_generated.cpp" 2>&1 |
        sed -n 's/^[^:]*torch_api_generated.cpp:\([0-9]*\):[0-9]*: error:.*/\1/p' | sort -un || true)
    # Each error sits on the first line of a wrapper's PROTECT( ... ) body: replace the
    # body by a throw.
    "$python" - "$sys/libtch/torch_api_generated.cpp" "$version" $errors <<'PY'
import sys
path, version, lines = sys.argv[1], sys.argv[2], [int(n) for n in sys.argv[3:]]
src = open(path).read().split("\n")
for n in lines:
    i = n - 1
    assert "PROTECT(" in src[i - 1], f"line {n}: not the first line of a wrapper body"
    j = i
    while src[j].strip() != ")":
        j += 1
    src[i:j] = [f'    throw std::runtime_error("not in libtorch {version}");'] + [""] * (j - i - 1)
open(path, "w").write("\n".join(src))
print(f"stubbed {len(lines)} wrappers of operators libtorch {version} lacks", file=sys.stderr)
PY
    touch "$sys/.stubbed"
fi

cd "$(dirname "$0")/.."
# Patching torch-sys rewrites Cargo.lock's entry for it: put the checked-in one back.
cp Cargo.lock "$work/Cargo.lock.orig"
trap 'cp "$work/Cargo.lock.orig" Cargo.lock' EXIT
env -u LIBTORCH_USE_PYTORCH -u VIRTUAL_ENV LIBTORCH="$work/torch" LIBTORCH_BYPASS_VERSION_CHECK=1 \
    LIBTORCH_CXX11_ABI=1 CARGO_TARGET_DIR="$work/target" \
    cargo build --release -p remind-stages --bins --config "patch.crates-io.torch-sys.path=\"$sys\""
echo "$work/target/release"
