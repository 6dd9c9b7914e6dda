"""PyTorch re-computation of `selfsup finetune --mode full` (pretrained and --from-scratch).

An independent check of selfsup's few-label fine-tuning: the same architecture (torchvision's
ResNet built by check_torchvision_export.build_resnet), the same recipe as selfsup's defaults, in
plain PyTorch:
  SGD momentum 0.9, weight decay 5e-4 on every parameter, lr 0.05 with cosine decay to 0 (no
  warm-up), backbone lr × 0.5 when pretrained (× 1 from scratch), batch 64 (drop_last), RandomCrop
  32 padding 4 + horizontal flip, CIFAR-10 mean/std; max(1, round(20000 / labels)) epochs of
  floor(labels / 64) batches, times --budget; top-1 on the whole test split with BatchNorm in eval
  mode. The label subset is stratified and seeded here with numpy (not the same images selfsup
  draws: compare means over seeds, not single runs).

    /work/venv/bin/python scripts/finetune_reference.py --data ../shared/data/cifar10 \
        --labels 500 --seeds 0,1,2 [--export EXPORT.safetensors] [--budget 3]

Without --export it trains from scratch (width/stem from the flags); with it, it fine-tunes the
exported backbone (`selfsup export --format torchvision`). Prints one JSON line per seed and a
summary line.

Recipe checks: --lp-ft starts the head from a linear probe (Adam lr 1e-3, batch 64, 100 epochs,
raw features), as `selfsup finetune --lp-ft`; --init pytorch gives the convolutions PyTorch's
default init instead of torchvision's; --validation N scores on N held-out train images (the
same N/classes per class for every seed) instead of the test split, the label subsets being
drawn from the rest, for choosing a recipe without the test images.
"""

import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch
from PIL import Image
from torchvision import transforms

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from check_torchvision_export import build_resnet  # noqa: E402

MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)


def list_split(root, split):
    d = os.path.join(root, split)
    classes = sorted(os.listdir(d))
    paths, labels = [], []
    for ci, c in enumerate(classes):
        for f in sorted(os.listdir(os.path.join(d, c))):
            paths.append(os.path.join(d, c, f))
            labels.append(ci)
    return paths, np.array(labels), len(classes)


def load(paths):
    return np.stack([np.asarray(Image.open(p).convert("RGB")) for p in paths])


def stratified(labels, n, seed):
    rng = np.random.default_rng(seed)
    classes = np.unique(labels[labels >= 0])
    per = n // len(classes)
    picked = [rng.choice(np.flatnonzero(labels == c), per, replace=False) for c in classes]
    return np.sort(np.concatenate(picked))


def to_tensor(images):
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0
    return transforms.functional.normalize(x, MEAN, STD)


def augment(x, gen):
    """RandomCrop(32, padding=4) + RandomHorizontalFlip on a normalised batch (zero padding in
    pixel space = -mean/std after normalising, as torchvision's pad-then-normalise gives)."""
    n = x.shape[0]
    fill = (-torch.tensor(MEAN) / torch.tensor(STD)).view(1, 3, 1, 1)
    padded = fill.expand(n, 3, 40, 40).clone()
    padded[:, :, 4:36, 4:36] = x
    out = torch.empty_like(x)
    offs = torch.randint(0, 9, (n, 2), generator=gen)
    flips = torch.rand(n, generator=gen) < 0.5
    for i in range(n):
        t, l = offs[i].tolist()
        crop = padded[i, :, t : t + 32, l : l + 32]
        out[i] = crop.flip(-1) if flips[i] else crop
    return out


def probe_head(backbone, head, train_x, train_y, gen, epochs=100):
    """LP-FT (Kumar et al. 2022): fit `head` as a linear probe (Adam lr 1e-3, batch 64) on the
    frozen backbone's features of the labelled images (eval mode, no augmentation)."""
    backbone.eval()
    with torch.no_grad():
        feats = torch.cat([backbone(train_x[i : i + 500]) for i in range(0, len(train_x), 500)])
    backbone.train()
    opt = torch.optim.Adam(head.parameters(), lr=1e-3)
    for _ in range(epochs):
        perm = torch.randperm(len(feats), generator=gen)
        for b in range(0, len(feats), 64):
            idx = perm[b : b + 64]
            loss = torch.nn.functional.cross_entropy(head(feats[idx]), train_y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()


def run(args, seed, train_x, train_y, test_x, test_y, num_classes):
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    backbone = build_resnet("resnet18", args.width, "cifar")
    if args.init == "pytorch":
        # PyTorch's own Conv2d init (kaiming_uniform, a=sqrt(5)), as a ResNet assembled from
        # nn.Conv2d / BasicBlock without torchvision's ResNet.__init__ gets it.
        for m in backbone.modules():
            if isinstance(m, torch.nn.Conv2d):
                m.reset_parameters()
    pretrained = args.export is not None
    if pretrained:
        from safetensors.torch import load_file

        backbone.load_state_dict(load_file(args.export), strict=True)
    out_dim = args.width * 8
    head = torch.nn.Linear(out_dim, num_classes)
    if args.lp_ft:
        probe_head(backbone, head, train_x, train_y, gen)
    model = torch.nn.Sequential(backbone, head)
    bb_lr = args.lr * (args.backbone_lr_mult if pretrained else 1.0)
    opt = torch.optim.SGD(
        [{"params": backbone.parameters(), "lr": bb_lr}, {"params": head.parameters(), "lr": args.lr}],
        momentum=0.9,
        weight_decay=args.weight_decay,
    )
    base = [bb_lr, args.lr]
    labels = len(train_y)
    batch = min(args.batch_size, labels)
    batches = labels // batch
    epochs = max(1.0, round(20000 / labels))
    steps = max(1, round(epochs * batches * args.budget))
    model.train()
    step = 0
    t0 = time.time()
    while step < steps:
        perm = torch.randperm(labels, generator=gen)
        for b in range(batches):
            if step >= steps:
                break
            scale = 0.5 * (1 + math.cos(math.pi * step / steps))
            for g, lr in zip(opt.param_groups, base):
                g["lr"] = lr * scale
            idx = perm[b * batch : (b + 1) * batch]
            x = augment(train_x[idx], gen)
            loss = torch.nn.functional.cross_entropy(model(x), train_y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(test_y), 1000):
            correct += (model(test_x[i : i + 1000]).argmax(1) == test_y[i : i + 1000]).sum().item()
    return {
        "seed": seed,
        "pretrained": pretrained,
        "labels": labels,
        "steps": steps,
        "top1": correct / len(test_y),
        "seconds": time.time() - t0,
    }


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True)
    p.add_argument("--labels", type=int, required=True, help="labelled images, stratified")
    p.add_argument("--seeds", default="0")
    p.add_argument("--export", help="selfsup export --format torchvision file; omit for scratch")
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--backbone-lr-mult", type=float, default=0.5)
    p.add_argument("--weight-decay", type=float, default=5e-4)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--budget", type=float, default=1.0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--lp-ft", action="store_true", help="start the head from a linear probe")
    p.add_argument(
        "--validation",
        type=int,
        default=0,
        help="score on this many held-out train images instead of the test split",
    )
    p.add_argument(
        "--init",
        choices=["torchvision", "pytorch"],
        default="torchvision",
        help="random init of the convolutions (before --export overwrites them): torchvision's "
        "ResNet (kaiming normal, fan_out; selfsup's) or PyTorch's Conv2d default",
    )
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    train_paths, train_labels, num_classes = list_split(args.data, "train")
    test_paths, test_labels, _ = list_split(args.data, "test")
    if args.validation:
        # Held-out train images (the last --validation/classes of each class in a fixed
        # permutation) stand in for the test split; label subsets are drawn from the rest.
        rng = np.random.default_rng(12345)
        per = args.validation // num_classes
        held = np.concatenate(
            [rng.permutation(np.flatnonzero(train_labels == c))[-per:] for c in range(num_classes)]
        )
        test_x = to_tensor(load([train_paths[i] for i in held]))
        test_y = torch.from_numpy(train_labels[held])
        train_labels = train_labels.copy()
        train_labels[held] = -1
    else:
        test_x = to_tensor(load(test_paths))
        test_y = torch.from_numpy(test_labels)
    results = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        idx = stratified(train_labels, args.labels, seed)
        train_x = to_tensor(load([train_paths[i] for i in idx]))
        train_y = torch.from_numpy(train_labels[idx])
        r = run(args, seed, train_x, train_y, test_x, test_y, num_classes)
        print(json.dumps(r), flush=True)
        results.append(r["top1"])
    print(json.dumps({"mean_top1": float(np.mean(results)), "std_top1": float(np.std(results)), "runs": len(results)}))


if __name__ == "__main__":
    main()
