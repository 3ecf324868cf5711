#!/usr/bin/env python3
"""Feature-extraction throughput: remind-extract-features against PyTorch + torchvision on
the same model, weights, images, batch size and thread count.

    python scripts/bench_features.py --bin-dir target/release --out artifacts/bench/features.json

Generates `--images` random PNGs (CLEVR-sized, 480x320 by default) and random weights
(`remind-backbone init`), then times

- ours: the whole `remind-extract-features` process on `--device` (process start, weight loading,
  decode + resize on `--decode-threads` threads, forward with `--threads` libtorch threads,
  writing the Arrow part file);
- PyTorch: torchvision's ResNet blocks with the same weights (model construction, weight
  loading, a DataLoader with `--decode-threads` workers doing PIL open/convert/Resize
  (bicubic)/ToTensor/Normalize, forward under `torch.inference_mode` with
  `torch.set_num_threads(--threads)`; features kept in memory, not written).

Reports images/s for both and the largest relative difference between the two feature
sets (non-zero: the image crate's and PIL's bicubic resizes round differently).
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

import numpy as np
import pyarrow as pa
import torch
import torchvision
from PIL import Image
from safetensors.torch import load_file
from torch import nn
from torchvision import transforms
from torchvision.models import resnet as tvr

from cpu_info import BF16_FLAGS, cpu_flags, cpu_has_bf16

ARCHS = {
    "resnet18": (tvr.BasicBlock, [2, 2, 2, 2]),
    "resnet34": (tvr.BasicBlock, [3, 4, 6, 3]),
    "resnet50": (tvr.Bottleneck, [3, 4, 6, 3]),
    "resnet101": (tvr.Bottleneck, [3, 4, 23, 3]),
    "resnet152": (tvr.Bottleneck, [3, 8, 36, 3]),
}


class ResNetG(tvr.ResNet):
    """torchvision's ResNet with a base width and the small stem, as remind-rs builds it,
    truncated after `cut` (layerS or layerS.B). Parameter names are torchvision's."""

    def __init__(self, arch, width, stem, cut):
        nn.Module.__init__(self)
        block, layers = ARCHS[arch]
        self._norm_layer = nn.BatchNorm2d
        self.inplanes, self.dilation, self.groups, self.base_width = width, 1, 1, 64
        if stem == "small":
            self.conv1 = nn.Conv2d(3, width, 3, 1, 1, bias=False)
            self.maxpool = nn.Identity()
        else:
            self.conv1 = nn.Conv2d(3, width, 7, 2, 3, bias=False)
            self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        stage, _, block_idx = cut.removeprefix("layer").partition(".")
        stage = int(stage)
        self.stages = []
        for s in range(1, stage + 1):
            layer = self._make_layer(block, width << (s - 1), layers[s - 1], stride=1 if s == 1 else 2)
            if s == stage and block_idx:
                layer = layer[: int(block_idx) + 1]
            setattr(self, f"layer{s}", layer)
            self.stages.append(layer)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for layer in self.stages:
            x = layer(x)
        return x


class Folder(torch.utils.data.Dataset):
    def __init__(self, paths, size):
        self.paths = paths
        self.tf = transforms.Compose([
            transforms.Resize((size, size), interpolation=transforms.InterpolationMode.BICUBIC),
            transforms.ToTensor(),
            transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
        ])

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        with Image.open(self.paths[i]) as im:
            return self.tf(im.convert("RGB"))


def make_images(folder, n, w, h, seed=0):
    rng = np.random.default_rng(seed)
    os.makedirs(folder, exist_ok=True)
    base = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    for i in range(n):
        noise = rng.integers(0, 40, (h, w, 3), dtype=np.uint8)
        Image.fromarray(base // 2 + noise + (i % 50)).save(os.path.join(folder, f"img_{i:06d}.png"))


def run_ours(args, images, weights, out, precision="fp32"):
    cmd = [os.path.join(args.bin_dir, "remind-extract-features"),
           "--images", images, "--out", out, "--weights", weights,
           "--arch", args.arch, "--width", str(args.width), "--stem", args.stem,
           "--cut", args.cut, "--image-size", str(args.image_size),
           "--batch", str(args.batch), "--threads", str(args.threads),
           "--decode-threads", str(args.decode_threads), "--device", args.device,
           "--precision", precision,
           "--run-dir", os.path.join(os.path.dirname(out), "run")]
    env = dict(os.environ, REMIND_QUIET="1")
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, check=True, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    sys.stderr.write(proc.stderr)
    busy = re.search(r"backbone busy ([0-9.]+)% of the ([0-9.]+) s pipeline", proc.stderr)
    table = pa.ipc.open_file(os.path.join(out, "part-00000-of-00001.arrow")).read_all()
    data = table.column("data").combine_chunks()
    feats = data.to_numpy_ndarray().reshape(len(table), -1)
    return seconds, feats, (float(busy.group(1)) / 100.0 if busy else None)


def run_pytorch(args, paths, weights, bf16=False):
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    model = ResNetG(args.arch, args.width, args.stem, args.cut)
    state = {k: v for k, v in load_file(weights).items() if k in model.state_dict()}
    model.load_state_dict(state, strict=True)
    model.eval().to(args.device)
    loader = torch.utils.data.DataLoader(
        Folder(paths, args.image_size), batch_size=args.batch,
        num_workers=args.decode_threads, shuffle=False)
    outs = []
    with torch.inference_mode(), torch.autocast(args.device, dtype=torch.bfloat16, enabled=bf16):
        for x in loader:
            y = model(x.to(args.device)).float()
            outs.append(y.permute(0, 2, 3, 1).reshape(x.shape[0], -1).cpu().numpy().copy())
    seconds = time.perf_counter() - t0
    return seconds, np.concatenate(outs)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin-dir", default="target/release")
    ap.add_argument("--out", default="artifacts/bench/features.json")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--decode-threads", type=int, default=1)
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--source-size", default="480x320", help="generated image WxH")
    ap.add_argument("--arch", default="resnet18", choices=sorted(ARCHS))
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--stem", default="imagenet", choices=["imagenet", "small"])
    ap.add_argument("--cut", default="layer3")
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--work-dir", help="keep inputs and outputs here (default: a temp folder)")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"],
                    help="cuda: both sides on the GPU (bf16: autocast on the card)")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-features-") as tmp:
        work = args.work_dir or tmp
        os.makedirs(work, exist_ok=True)
        images = os.path.join(work, "images")
        w, h = (int(v) for v in args.source_size.split("x"))
        make_images(images, args.images, w, h)
        paths = sorted(os.path.join(images, p) for p in os.listdir(images))
        weights = os.path.join(work, "weights.safetensors")
        subprocess.run([os.path.join(args.bin_dir, "remind-backbone"), "init",
                        "--arch", args.arch, "--width", str(args.width), "--stem", args.stem,
                        "--out", weights], check=True, env=dict(os.environ, REMIND_QUIET="1"))
        out = os.path.join(work, "features")
        if os.path.exists(out):
            import shutil
            shutil.rmtree(out)

        ours_s, ours, busy = run_ours(args, images, weights, out)
        torch_s, ref = run_pytorch(args, paths, weights)
        rel = float(np.abs(ours - ref).max() / max(np.abs(ref).max(), 1e-12))
        bf16 = None
        if cpu_has_bf16() if args.device == "cpu" else torch.cuda.is_bf16_supported():
            ours16_s, ours16, _ = run_ours(args, images, weights, out + "-bf16", "bf16")
            torch16_s, _ = run_pytorch(args, paths, weights, bf16=True)
            bf16 = {
                "ours_images_per_s": args.images / ours16_s,
                "pytorch_images_per_s": args.images / torch16_s,
                "bf16_vs_fp32": ours_s / ours16_s,
                "bf16_vs_pytorch_bf16": torch16_s / ours16_s,
                "rel_l2_vs_fp32": float(np.linalg.norm(ours16 - ours) / max(np.linalg.norm(ours), 1e-12)),
            }

    result = {
        "bench": "features",
        "model": {"arch": args.arch, "width": args.width, "stem": args.stem, "cut": args.cut},
        "images": args.images, "source_size": args.source_size, "image_size": args.image_size,
        "batch": args.batch, "threads": args.threads, "decode_threads": args.decode_threads,
        "device": args.device,
        "torch": torch.__version__, "torchvision": torchvision.__version__,
        "ours": {"seconds": ours_s, "images_per_s": args.images / ours_s,
                 "note": "whole process: start, weight loading, decode, forward, Arrow write"},
        "pytorch": {"seconds": torch_s, "images_per_s": args.images / torch_s,
                    "note": "model build, weight loading, DataLoader, forward; no write"},
        "max_rel_diff": rel,
        "speed_ratio_vs_pytorch": torch_s / ours_s,
        "model_busy_fraction": busy,
        "bf16": bf16 if bf16 else ("not measured: no avx512_bf16/amx_bf16 in /proc/cpuinfo"
                                   if args.device == "cpu" else "not measured: the card has no bf16"),
        "cpu_flags": sorted(cpu_flags() & BF16_FLAGS),
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
    print(f"{args.arch} w{args.width} until {args.cut}, {args.images} images {args.source_size} -> "
          f"{args.image_size}px, batch {args.batch}, {args.threads} threads")
    print(f"  remind-extract-features  {result['ours']['images_per_s']:8.1f} images/s")
    print(f"  pytorch + torchvision    {result['pytorch']['images_per_s']:8.1f} images/s")
    print(f"  ratio ours / pytorch     {torch_s / ours_s:8.3f}")
    if busy is not None:
        print(f"  backbone busy            {100 * busy:8.1f} % of the pipeline's wall time")
    print(f"  max relative difference  {rel:.2e}")
    if bf16:
        print(f"  bf16: ours {bf16['ours_images_per_s']:.1f} images/s ({bf16['bf16_vs_fp32']:.2f}x fp32), "
              f"pytorch autocast {bf16['pytorch_images_per_s']:.1f} images/s "
              f"(ours/pytorch {bf16['bf16_vs_pytorch_bf16']:.2f}), relative L2 vs fp32 {bf16['rel_l2_vs_fp32']:.1e}")
    print(f"  -> {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
