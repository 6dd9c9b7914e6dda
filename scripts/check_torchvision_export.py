"""Checks `selfsup export --format torchvision` against `selfsup embed`.

Loads the export into torchvision's own ResNet with load_state_dict(strict=True), runs it in eval
mode on the images that `selfsup embed` embedded (paths from its metadata), with the same eval
preprocessing (resize shorter side, centre crop, to-tensor, normalise with the mean/std stored in
the export), and compares with the embeddings selfsup computed. Exit status 1 if the largest
absolute difference exceeds --tolerance.

    /work/venv/bin/python scripts/check_torchvision_export.py EXPORT.safetensors EMBED.safetensors

JPEG decoders differ: selfsup decodes with the Rust `image` crate, PIL with libjpeg-turbo, and on
CIFAR-10's JPEGs the pixels differ by up to 4/255 (every image differs somewhere), which moves
features by ~1e-2. To check the export itself, give both sides the same pixels with a lossless
copy of some test images:

    python scripts/check_torchvision_export.py --write-png-subset ../shared/data/cifar10 200 runs/check/png
    selfsup embed --checkpoint CKPT --data runs/check/png --split test --out runs/check/png200.safetensors
    python scripts/check_torchvision_export.py EXPORT.safetensors runs/check/png200.safetensors

Architecture: torchvision.models.resnet.ResNet with its BasicBlock (resnet18/34) or Bottleneck
(resnet50); for the CIFAR stem, conv1 = Conv2d(3, width, 3, 1, 1, bias=False) and
maxpool = Identity; fc = Identity (the export is the backbone, features after global pooling).
Widths other than 64: torchvision hard-codes 64/128/256/512 planes, so `build_resnet` passes
torchvision's ResNet a `_make_layer` that scales the `planes` argument by width/64 (and starts
`inplanes` at width); every block and the forward pass remain torchvision's code.
"""

import argparse
import json
import sys

import numpy as np
import torch
import torchvision
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file
from torchvision import transforms
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

LAYOUTS = {
    "resnet18": (BasicBlock, [2, 2, 2, 2]),
    "resnet34": (BasicBlock, [3, 4, 6, 3]),
    "resnet50": (Bottleneck, [3, 4, 6, 3]),
}


class ScaledResNet(ResNet):
    """torchvision's ResNet with stage widths width * (1, 2, 4, 8) instead of 64 * (1, 2, 4, 8)."""

    def __init__(self, block, layers, width):
        self._width = width
        super().__init__(block, layers)

    def _make_layer(self, block, planes, blocks, stride=1, dilate=False):
        if planes == 64:  # first stage: the stem's output has `width` channels
            self.inplanes = self._width
        return super()._make_layer(block, planes * self._width // 64, blocks, stride, dilate)


def build_resnet(architecture: str, width: int, stem: str) -> torch.nn.Module:
    if architecture not in LAYOUTS:
        sys.exit(f"unknown architecture {architecture!r}: expected one of {sorted(LAYOUTS)}")
    block, layers = LAYOUTS[architecture]
    if width == 64:
        model = getattr(torchvision.models, architecture)()
    else:
        model = ScaledResNet(block, layers, width)
    if stem == "cifar":
        model.conv1 = torch.nn.Conv2d(3, width, kernel_size=3, stride=1, padding=1, bias=False)
        model.maxpool = torch.nn.Identity()
    elif stem == "imagenet":
        model.conv1 = torch.nn.Conv2d(3, width, kernel_size=7, stride=2, padding=3, bias=False)
    else:
        sys.exit(f"unknown stem {stem!r}")
    model.bn1 = torch.nn.BatchNorm2d(width)
    model.fc = torch.nn.Identity()
    return model


def lightness_image(rgb: torch.Tensor) -> torch.Tensor:
    """CIE L* (D65, as skimage.color.rgb2lab) of a [3, H, W] sRGB tensor in [0, 1], as
    L*/100 repeated in 3 channels."""
    c = rgb.double()
    lin = torch.where(c > 0.04045, ((c + 0.055) / 1.055) ** 2.4, c / 12.92)
    y = 0.212671 * lin[0] + 0.715160 * lin[1] + 0.072169 * lin[2]
    f = torch.where(y > 0.008856, torch.pow(y, 1.0 / 3.0), 7.787 * y + 16.0 / 116.0)
    light = (116.0 * f - 16.0) / 100.0
    return light.float().expand(3, -1, -1).clone()


def write_png_subset(src_root: str, n: int, out_root: str):
    """N images evenly spaced over SRC_ROOT/test/<class>/ (sorted), as PNG under OUT_ROOT/test/<class>/."""
    import os

    split = os.path.join(src_root, "test")
    files = sorted(
        os.path.join(c, f) for c in sorted(os.listdir(split)) for f in sorted(os.listdir(os.path.join(split, c)))
    )
    picked = [files[i * len(files) // n] for i in range(min(n, len(files)))]
    for rel in picked:
        dst = os.path.join(out_root, "test", os.path.splitext(rel)[0] + ".png")
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        Image.open(os.path.join(split, rel)).convert("RGB").save(dst)
    print(json.dumps({"images": len(picked), "out": out_root}))


def main():
    if len(sys.argv) == 5 and sys.argv[1] == "--write-png-subset":
        return write_png_subset(sys.argv[2], int(sys.argv[3]), sys.argv[4])
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("export", help="selfsup export --format torchvision output (.safetensors)")
    ap.add_argument("embed", help="selfsup embed output (.safetensors with paths metadata)")
    ap.add_argument("--tolerance", type=float, default=1e-4)
    ap.add_argument("--batch-size", type=int, default=100)
    args = ap.parse_args()

    with safe_open(args.export, "pt") as f:
        meta = f.metadata() or {}
    for key in ("architecture", "width", "stem", "normalize_mean", "normalize_std", "input_size"):
        if key not in meta:
            sys.exit(f"{args.export}: metadata has no {key!r}; is it a `selfsup export --format torchvision` file?")
    model = build_resnet(meta["architecture"], int(meta["width"]), meta["stem"])
    model.load_state_dict(load_file(args.export), strict=True)
    model.eval()

    with safe_open(args.embed, "np") as f:
        expected = f.get_tensor("embeddings")
        emeta = f.metadata() or {}
    if "paths" not in emeta:
        sys.exit(f"{args.embed}: no `paths` metadata; write it with `selfsup embed --out FILE.safetensors`")
    paths = json.loads(emeta["paths"])
    if any(p.lower().endswith((".jpg", ".jpeg")) for p in paths):
        print(
            "note: JPEG inputs; selfsup and PIL decode JPEG slightly differently (see --help), "
            "so expect differences from decoding, not from the export",
            file=sys.stderr,
        )
    size = int(meta["input_size"])
    # A colorization encoder was trained on R = G = B = L*/100 (`input` = lightness), not colour.
    to_input = {"rgb": lambda x: x, "lightness": lightness_image}[meta.get("input", "rgb")]
    preprocess = transforms.Compose(
        [
            transforms.Resize(size),
            transforms.CenterCrop(size),
            transforms.ToTensor(),
            transforms.Lambda(to_input),
            transforms.Normalize(json.loads(meta["normalize_mean"]), json.loads(meta["normalize_std"])),
        ]
    )
    feats = []
    with torch.no_grad():
        for i in range(0, len(paths), args.batch_size):
            batch = torch.stack([preprocess(Image.open(p).convert("RGB")) for p in paths[i : i + args.batch_size]])
            feats.append(model(batch).numpy())
    got = np.concatenate(feats)
    if got.shape != expected.shape:
        sys.exit(f"shape mismatch: torchvision {got.shape}, selfsup embed {expected.shape}")
    diff = np.abs(got - expected)
    scale = np.abs(expected).max()
    print(
        json.dumps(
            {
                "images": len(paths),
                "architecture": meta["architecture"],
                "width": int(meta["width"]),
                "stem": meta["stem"],
                "max_abs_diff": float(diff.max()),
                "mean_abs_diff": float(diff.mean()),
                "max_abs_feature": float(scale),
                "tolerance": args.tolerance,
                "torch": torch.__version__,
                "torchvision": torchvision.__version__,
            }
        )
    )
    if diff.max() > args.tolerance:
        print(f"FAIL: max abs diff {diff.max():.3g} > {args.tolerance}", file=sys.stderr)
        sys.exit(1)
    print(f"OK: max abs diff {diff.max():.3g} <= {args.tolerance}", file=sys.stderr)


if __name__ == "__main__":
    main()
