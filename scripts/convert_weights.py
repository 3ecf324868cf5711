#!/usr/bin/env python3
"""Converts a PyTorch checkpoint (torch.save of a state_dict, e.g. torchvision's
resnet101-*.pth) into a safetensors file that remind-rs reads.

    python scripts/convert_weights.py IN.pth OUT.safetensors

Accepted inputs: a state_dict; a dict holding one under 'state_dict', 'model' or
'model_state_dict' (training checkpoints); a whole nn.Module. A 'module.' prefix on every
name (DataParallel) is removed. Tensors are written contiguous, in their own dtype.
Uses the `safetensors` package when installed, else writes the (simple) format directly:
8-byte little-endian header length, JSON header {name: {dtype, shape, data_offsets}},
then the raw little-endian bytes.
"""
import argparse
import json
import os
import pickle
import sys

import torch

DTYPES = {
    torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
    torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8",
    torch.uint8: "U8", torch.bool: "BOOL",
}


def state_dict_of(obj, path):
    if isinstance(obj, torch.nn.Module):
        return obj.state_dict()
    if isinstance(obj, dict):
        for key in ("state_dict", "model_state_dict", "model"):
            inner = obj.get(key)
            if isinstance(inner, dict) and inner and all(
                    isinstance(v, torch.Tensor) for v in inner.values()):
                return inner
            if isinstance(inner, torch.nn.Module):
                return inner.state_dict()
        tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
        if tensors:
            return tensors
    sys.exit(f"{path}: no state_dict found (expected a dict of tensors)")


def write_safetensors(tensors, path, metadata):
    header = {}
    if metadata:
        header["__metadata__"] = metadata
    blobs, offset = [], 0
    for name in sorted(tensors):
        t = tensors[name]
        data = t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""
        header[name] = {"dtype": DTYPES[t.dtype], "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as f:
        f.write(len(raw).to_bytes(8, "little"))
        f.write(raw)
        for b in blobs:
            f.write(b)


def convert(src, dst, metadata=None, unsafe_pickle=False):
    try:
        obj = torch.load(src, map_location="cpu", weights_only=not unsafe_pickle)
    except Exception as e:  # noqa: BLE001 - report any load failure the same way
        hint = "" if unsafe_pickle or not isinstance(e, pickle.UnpicklingError) else (
            " (if the file is trusted and holds more than tensors, retry with --unsafe-pickle)")
        sys.exit(f"{src}: cannot load: {e}{hint}")
    sd = state_dict_of(obj, src)
    if sd and all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    tensors = {}
    for name, t in sd.items():
        if t.dtype not in DTYPES:
            sys.exit(f"{src}: tensor '{name}' has unsupported dtype {t.dtype}")
        tensors[name] = t.detach().cpu().contiguous()
    tmp = f"{dst}.tmp-{os.getpid()}"
    try:
        try:
            from safetensors.torch import save_file
            save_file(tensors, tmp, metadata=metadata)
        except ImportError:
            write_safetensors(tensors, tmp, metadata)
        os.replace(tmp, dst)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return len(tensors)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("src", help="checkpoint written by torch.save (.pth/.pt)")
    ap.add_argument("dst", help="output .safetensors")
    ap.add_argument("--pure", action="store_true",
                    help="write the format directly even when the safetensors package exists")
    ap.add_argument("--unsafe-pickle", action="store_true",
                    help="let torch.load run arbitrary pickled code (trusted files only)")
    args = ap.parse_args()
    if args.pure:
        sys.modules["safetensors"] = None  # makes the import fail
        sys.modules["safetensors.torch"] = None
    n = convert(args.src, args.dst, unsafe_pickle=args.unsafe_pickle)
    print(f"convert_weights: {n} tensors -> {args.dst}", file=sys.stderr)


if __name__ == "__main__":
    main()
