#!/usr/bin/env bash
# Creates (once) the Python environment that provides libtorch for tch and the
# interoperability tools used by tests and benchmarks. It lives outside the clone,
# keyed by the torch version, so every clone and CI run on this machine reuses it.
set -euo pipefail

TORCH_VERSION="${TORCH_VERSION:-2.13.0}"
VENV="${REMIND_VENV:-$HOME/.cache/remind-rs/torch-$TORCH_VERSION}"
STAMP="$VENV/.remind-complete-v3"
# Packages on top of torch. v2 added torchvision (parity tests, benchmarks), pillow (its
# image I/O) and safetensors (weight files); v3 polars and pinned duckdb (opening every
# artifact as users do, tests/open_in_python.rs).
ADDED_V3=("polars==2.1.0" "duckdb==2.0.1")
EXTRA=(numpy pyarrow faiss-cpu h5py "torchvision==0.28.0" safetensors "${ADDED_V3[@]}")

if [ -f "$STAMP" ]; then
  echo "$VENV"
  exit 0
fi

# A complete environment of an earlier version only needs the packages added since.
if [ -f "$VENV/.remind-complete-v2" ]; then
  echo "setup: adding ${ADDED_V3[*]} to $VENV" >&2
  "$VENV/bin/python" -m pip install --quiet "${ADDED_V3[@]}" >&2
  touch "$STAMP"
  echo "$VENV"
  exit 0
fi
if [ -f "$VENV/.remind-complete-v1" ]; then
  echo "setup: adding ${EXTRA[*]} to $VENV" >&2
  "$VENV/bin/python" -m pip install --quiet "torch==$TORCH_VERSION" "${EXTRA[@]}" >&2
  touch "$STAMP"
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
"$VENV/bin/python" -m pip install --quiet "torch==$TORCH_VERSION" "${EXTRA[@]}" >&2
touch "$STAMP"
echo "$VENV"
