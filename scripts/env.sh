# Source this to use cargo directly (make does the same for you):
#   source scripts/env.sh && cargo build --release
TORCH_VERSION="${TORCH_VERSION:-2.13.0}"
export VIRTUAL_ENV="${REMIND_VENV:-$HOME/.cache/remind-rs/torch-$TORCH_VERSION}"
export PATH="$VIRTUAL_ENV/bin:$PATH"
export LIBTORCH_USE_PYTORCH=1
