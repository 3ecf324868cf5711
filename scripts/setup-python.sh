#!/usr/bin/env bash
# Creates (once) the Python environment that provides libtorch for tch and the
# interoperability tools used by tests and benchmarks. It lives outside the clone,
# keyed by the torch version, so every clone and CI run on this machine reuses it.
set -euo pipefail

TORCH_VERSION="${TORCH_VERSION:-2.13.0}"
VENV="${REMIND_VENV:-$HOME/.cache/remind-rs/torch-$TORCH_VERSION}"
STAMP="$VENV/.remind-complete-v1"

if [ -f "$STAMP" ]; then
  echo "$VENV"
  exit 0
fi

PY="${PYTHON:-python3}"
echo "setup: creating Python environment $VENV (torch==$TORCH_VERSION, about 5 GB, a few minutes)" >&2
# A half-made environment (no stamp) is discarded and rebuilt; the stamp is written last.
rm -rf "$VENV"
mkdir -p "$(dirname "$VENV")"
"$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip >&2
"$VENV/bin/python" -m pip install --quiet \
  "torch==$TORCH_VERSION" numpy pyarrow duckdb faiss-cpu h5py >&2
touch "$STAMP"
echo "$VENV"
