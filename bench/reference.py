"""PyTorch / torchvision / LightlySSL side of the selfsup benchmark.

Each call runs one workload and prints one JSON line: {"workload", "views_per_s", "samples"}.
The same workloads on the selfsup side are `selfsup-bench` subcommands of the same names;
bench/bench.py alternates the two and reports medians and ratios.

  python reference.py step --width 16 --batch 128 --steps 5
  python reference.py forward --width 64 --batch 256 --steps 5
  python reference.py augment --data DIR --size 32 --blur 0 --views 4000
  python reference.py pretrain --data cifar10 --limit 2560 --width 16
"""

import argparse
import json
import os
import resource
import statistics
import sys
import time


def resnet18_cifar(width):
    """ResNet-18 with the CIFAR stem (3x3 s1 conv, no max-pool), stages width x (1, 2, 4, 8);
    the same architecture as selfsup's ResNetConfig{depth 18, width, stem Cifar}."""
    import torch.nn as nn
    from torchvision.models.resnet import BasicBlock

    layers = [
        nn.Conv2d(3, width, 3, 1, 1, bias=False),
        nn.BatchNorm2d(width),
        nn.ReLU(inplace=True),
    ]
    in_ch = width
    for mult, stride in [(1, 1), (2, 2), (4, 2), (8, 2)]:
        out_ch = width * mult
        for i in range(2):
            s = stride if i == 0 else 1
            down = None
            if s != 1 or in_ch != out_ch:
                down = nn.Sequential(
                    nn.Conv2d(in_ch, out_ch, 1, s, bias=False), nn.BatchNorm2d(out_ch)
                )
            layers.append(BasicBlock(in_ch, out_ch, s, down))
            in_ch = out_ch
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    return nn.Sequential(*layers), in_ch


def backbone_of(arch, width, size):
    """The `--arch` backbone and its feature width, as selfsup-bench builds it."""
    import torch.nn as nn
    import torchvision.models as tvm

    if arch == "resnet18-cifar":
        return resnet18_cifar(width)
    if arch in ("resnet18", "resnet50"):
        if width != 64:
            raise SystemExit(f"--arch {arch}: torchvision's ImageNet ResNets are width 64")
        net = getattr(tvm, arch)()
        dim = net.fc.in_features
        net.fc = nn.Identity()
        return net, dim
    if arch == "vit-s16":
        net = tvm.VisionTransformer(image_size=size, patch_size=16, num_layers=12, num_heads=6,
                                    hidden_dim=384, mlp_dim=1536)
        net.heads = nn.Identity()
        return net, 384
    raise SystemExit(f"--arch {arch}: one of resnet18-cifar, resnet18, resnet50, vit-s16")


def simclr_model(width, arch="resnet18-cifar", size=32):
    import torch.nn as nn
    from lightly.models.modules import SimCLRProjectionHead

    backbone, dim = backbone_of(arch, width, size)
    # selfsup's bench model: projection dims [d, 128] after the backbone's d features.
    return nn.Sequential(backbone, SimCLRProjectionHead(dim, dim, 128))


def sgd(model):
    import torch

    # The recipe of configs/simclr_cifar10.toml (weight decay on all parameters).
    return torch.optim.SGD(model.parameters(), lr=0.06, momentum=0.9, weight_decay=5e-4)


def timed_steps(run_one, steps, warmup):
    for _ in range(warmup):
        run_one()
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        run_one()
        times.append(time.perf_counter() - t)
    return times


def cmd_step(args):
    import torch
    from lightly.loss import NTXentLoss

    torch.manual_seed(0)
    model = simclr_model(args.width, args.arch, args.size).to(args.device)
    model.train()
    opt = sgd(model)
    loss_fn = NTXentLoss(temperature=0.5)
    a = torch.randn(args.batch, 3, args.size, args.size, device=args.device)
    b = torch.randn(args.batch, 3, args.size, args.size, device=args.device)

    def one():
        z = model(torch.cat([a, b]))
        loss = loss_fn(z[: args.batch], z[args.batch :])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        loss.item()

    times = timed_steps(one, args.steps, args.warmup)
    return [2 * args.batch / t for t in times]


def cmd_forward(args):
    import torch

    torch.manual_seed(0)
    backbone, _ = resnet18_cifar(args.width)
    backbone.to(args.device).eval()
    x = torch.randn(args.batch, 3, 32, 32, device=args.device)

    def one():
        with torch.inference_mode():
            backbone(x).sum().item()

    times = timed_steps(one, args.steps, args.warmup)
    return [args.batch / t for t in times]


def load_images(root, limit):
    """Decoded RGB PIL images of an image folder's train split (first `limit` in sorted order)."""
    from PIL import Image

    train = os.path.join(root, "train")
    paths = []
    for cls in sorted(os.listdir(train)):
        d = os.path.join(train, cls)
        paths += [os.path.join(d, f) for f in sorted(os.listdir(d))]
    step = max(1, len(paths) // limit)
    paths = paths[::step][:limit]
    return [Image.open(p).convert("RGB") for p in paths]


def cmd_augment(args):
    """Two SimCLR views per image, one thread: LightlySSL's SimCLRTransform on PIL images
    (`--impl lightly`) or the same recipe in torchvision.transforms.v2 on uint8 tensors (`tv2`)."""
    import torch

    torch.set_num_threads(1)
    images = load_images(args.data, args.images)
    if args.impl == "lightly":
        from lightly.transforms import SimCLRTransform

        transform = SimCLRTransform(
            input_size=args.size,
            gaussian_blur=args.blur,
            normalize={"mean": [0.4914, 0.4822, 0.4465], "std": [0.2470, 0.2435, 0.2616]},
        )
        inputs = images
    else:
        import torchvision.transforms.v2 as T

        k = max(3, int(args.size * 0.1) // 2 * 2 + 1)
        steps = [
            T.RandomResizedCrop(args.size, scale=(0.08, 1.0), antialias=True),
            T.RandomHorizontalFlip(),
            T.RandomApply([T.ColorJitter(0.8, 0.8, 0.8, 0.2)], p=0.8),
            T.RandomGrayscale(0.2),
        ]
        if args.blur > 0:
            steps.append(T.RandomApply([T.GaussianBlur(k, (0.1, 2.0))], p=args.blur))
        steps += [
            T.ToDtype(torch.float32, scale=True),
            T.Normalize([0.4914, 0.4822, 0.4465], [0.2470, 0.2435, 0.2616]),
        ]
        view = T.Compose(steps)
        transform = lambda img: [view(img), view(img)]  # noqa: E731
        inputs = [T.functional.pil_to_tensor(im) for im in images]

    rates = []
    for _ in range(args.rounds):
        t = time.perf_counter()
        n = 0
        while n < args.views:
            for img in inputs:
                transform(img)
                n += 2
                if n >= args.views:
                    break
        rates.append(n / (time.perf_counter() - t))
    return rates


def load_split(root, split, limit=0):
    """The images of an image folder's split (`limit` of them evenly spaced, 0: all) as uint8
    NCHW with their class ids."""
    import numpy as np
    from PIL import Image

    d = os.path.join(root, split)
    paths = []
    for c, cls in enumerate(sorted(os.listdir(d))):
        paths += [(os.path.join(d, cls, f), c) for f in sorted(os.listdir(os.path.join(d, cls)))]
    if limit:
        paths = paths[:: max(1, len(paths) // limit)][:limit]
    xs = [np.asarray(Image.open(p).convert("RGB")) for p, _ in paths]
    return np.stack(xs).transpose(0, 3, 1, 2), np.array([c for _, c in paths])


def knn_top1(backbone, root, device, k=200, temperature=0.1, limit=0):
    """selfsup's kNN (cosine, k = 200, T = 0.1, votes weighted by exp(sim / T)) of the backbone's
    features of the test split against the train split, on `device`."""
    import torch

    mean = torch.tensor([0.4914, 0.4822, 0.4465], device=device).view(1, 3, 1, 1)
    std = torch.tensor([0.2470, 0.2435, 0.2616], device=device).view(1, 3, 1, 1)

    @torch.no_grad()
    def features(split):
        x, y = load_split(root, split, limit)
        out = []
        for i in range(0, len(x), 1024):
            b = torch.from_numpy(x[i : i + 1024]).to(device).float().div(255).sub(mean).div(std)
            out.append(torch.nn.functional.normalize(backbone(b), dim=1))
        return torch.cat(out), torch.from_numpy(y).to(device)

    was_training = backbone.training
    backbone.eval()
    ftr, ytr = features("train")
    fte, yte = features("test")
    classes = int(ytr.max()) + 1
    correct = 0
    for i in range(0, len(fte), 512):
        sim, idx = (fte[i : i + 512] @ ftr.T).topk(k, dim=1)
        votes = torch.zeros(len(sim), classes, device=device)
        votes.scatter_add_(1, ytr[idx], (sim / temperature).exp())
        correct += int((votes.argmax(1) == yte[i : i + 512]).sum())
    backbone.train(was_training)
    return correct / len(fte)


def cmd_pretrain(args):
    """A LightlySSL SimCLR loop over `--limit` CIFAR-10 training images (the recipe of
    configs/simclr_cifar10.toml): one epoch, views/s over the whole epoch, data loading included
    (decoding the images into memory before it is not). With `--seconds S`: epochs until S seconds
    of training have passed, each followed by kNN on the test split (not counted as training
    time), for a time-to-accuracy row."""
    import torch
    from lightly.loss import NTXentLoss
    from lightly.transforms import SimCLRTransform

    torch.manual_seed(0)
    images = [(im, 0) for im in load_images(args.data, args.limit)]
    transform = SimCLRTransform(
        input_size=32,
        gaussian_blur=0.0,
        normalize={"mean": [0.4914, 0.4822, 0.4465], "std": [0.2470, 0.2435, 0.2616]},
    )

    class Views(torch.utils.data.Dataset):
        def __len__(self):
            return len(images)

        def __getitem__(self, i):
            return transform(images[i][0])

    loader = torch.utils.data.DataLoader(
        Views(),
        batch_size=args.batch,
        shuffle=True,
        drop_last=True,
        num_workers=args.workers,
        persistent_workers=args.seconds > 0,
        pin_memory=args.device == "cuda",
    )
    model = simclr_model(args.width).to(args.device)
    model.train()
    opt = sgd(model)
    loss_fn = NTXentLoss(temperature=0.5)
    rates, epochs, trained = [], [], 0.0
    while True:
        t = time.perf_counter()
        views = 0
        for a, b in loader:
            a = a.to(args.device, non_blocking=True)
            b = b.to(args.device, non_blocking=True)
            z = model(torch.cat([a, b]))
            loss = loss_fn(z[: len(a)], z[len(a) :])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss.item()
            views += 2 * len(a)
            if args.seconds > 0 and trained + time.perf_counter() - t > args.seconds:
                break
        if views == 0:
            sys.exit(f"pretrain: {len(images)} images give no full batch of {args.batch}")
        seconds = time.perf_counter() - t
        trained += seconds
        rates.append(views / seconds)
        if args.seconds <= 0:
            return rates
        epochs.append({"epoch": len(epochs) + 1, "epoch_seconds": round(seconds, 1),
                       "train_seconds": round(trained, 1),
                       "knn_top1": knn_top1(model[0], args.data, args.device,
                                            limit=args.knn_images)})
        print(json.dumps(epochs[-1]), file=sys.stderr, flush=True)
        if trained >= args.seconds:
            args.epochs_out = epochs
            return rates


def cmd_loader(args):
    """Two SimCLR views per image from JPEG files: torchvision's ImageFolder (PIL decode every
    epoch) with LightlySSL's SimCLRTransform (`input_size`, blur p as given, ImageNet
    normalisation) in a DataLoader with `--workers` processes, batches of `--batch`. Each round
    is a whole pass over the folder, after one untimed pass (worker start-up, file cache)."""
    import torch
    from lightly.transforms import SimCLRTransform
    from torchvision.datasets import ImageFolder

    torch.set_num_threads(1)
    transform = SimCLRTransform(input_size=args.size, gaussian_blur=args.blur)
    dataset = ImageFolder(os.path.join(args.data, "train"), transform=transform)
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=args.batch, shuffle=True, num_workers=args.workers,
        drop_last=True, persistent_workers=args.workers > 0)
    rates = []
    for r in range(args.rounds + 1):
        t = time.perf_counter()
        n = 0
        for (views, _labels) in loader:
            n += sum(v.shape[0] for v in views)
        if r > 0:
            rates.append(n / (time.perf_counter() - t))
    return rates


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ["step", "forward"]:
        s = sub.add_parser(name)
        s.add_argument("--width", type=int, default=16)
        s.add_argument("--batch", type=int, default=128 if name == "step" else 256)
        s.add_argument("--steps", type=int, default=5)
        s.add_argument("--warmup", type=int, default=1)
        s.add_argument("--device", default="cpu", help="cpu or cuda")
        if name == "step":
            s.add_argument("--size", type=int, default=32)
            s.add_argument("--arch", default="resnet18-cifar",
                           help="resnet18-cifar, resnet18, resnet50 or vit-s16")
    s = sub.add_parser("augment")
    s.add_argument("--data", required=True)
    s.add_argument("--size", type=int, default=32)
    s.add_argument("--blur", type=float, default=0.0)
    s.add_argument("--images", type=int, default=500)
    s.add_argument("--views", type=int, default=4000)
    s.add_argument("--rounds", type=int, default=3)
    s.add_argument("--impl", choices=["lightly", "tv2"], default="lightly")
    s = sub.add_parser("loader")
    s.add_argument("--data", required=True)
    s.add_argument("--size", type=int, default=224)
    s.add_argument("--blur", type=float, default=0.5)
    s.add_argument("--batch", type=int, default=64)
    s.add_argument("--workers", type=int, default=1)
    s.add_argument("--rounds", type=int, default=3)
    s = sub.add_parser("pretrain")
    s.add_argument("--data", required=True)
    s.add_argument("--limit", type=int, default=2560)
    s.add_argument("--width", type=int, default=16)
    s.add_argument("--workers", type=int, default=2)
    s.add_argument("--batch", type=int, default=256)
    s.add_argument("--device", default="cpu", help="cpu or cuda")
    s.add_argument("--seconds", type=float, default=0,
                   help="train until this many seconds, kNN after every epoch (0: one epoch)")
    s.add_argument("--knn-images", type=int, default=0,
                   help="kNN on this many images of each split, evenly spaced (0: all)")
    args = p.parse_args()

    import torch

    # What importing torch (and its CUDA libraries) costs, before any workload.
    import_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss >> 10
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
    samples = {
        "step": cmd_step,
        "forward": cmd_forward,
        "augment": cmd_augment,
        "loader": cmd_loader,
        "pretrain": cmd_pretrain,
    }[args.cmd](args)
    print(
        json.dumps(
            {
                "workload": args.cmd,
                "views_per_s": statistics.median(samples),
                "samples": samples,
                "torch": torch.__version__,
                "threads": torch.get_num_threads(),
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss >> 10,
                "import_rss_mb": import_rss_mb,
            }
            | ({"epochs": args.epochs_out} if getattr(args, "epochs_out", None) else {})
        )
    )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
