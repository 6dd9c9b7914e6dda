"""PyTorch + LightlySSL reference runs of the method zoo at the SimCLR reference budget.

Implemented so far: DINO (the method whose selfsup run stays below the random-init floor; BYOL,
SimSiam and MoCo would be added to METHODS the same way). Each method mirrors its selfsup config (configs/<method>_cifar10.toml: ResNet-18 CIFAR width 16,
batch 256, SGD lr 0.06 momentum 0.9 wd 5e-4 with a per-step cosine schedule, the same heads,
losses and augmentations) built from LightlySSL's modules, so a selfsup run can be compared with
what the reference code does on the same data and budget. Prints one JSON line per step
({"step", "loss", "lr"}) and a final summary line; with --knn, the weighted kNN top-1 (k=200,
T=0.1) of the test split against the train split's backbone features.

  /work/venv/bin/python bench/zoo_reference.py dino --data ../shared/data/cifar10 --limit 5120 --epochs 4
  /work/venv/bin/python bench/zoo_reference.py dino --data ../shared/data/cifar10 --epochs 4 --knn
"""

import argparse
import copy
import json
import math
import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from reference import load_images, resnet18_cifar  # noqa: E402

MEAN, STD = [0.4914, 0.4822, 0.4465], [0.2470, 0.2435, 0.2616]


def sinkhorn_knopp(logits, iterations=3):
    """DINOv2's teacher centring: exp(logits) scaled so that every prototype gets an equal share
    of the batch and every sample sums to one (rows of the returned [B, K] sum to 1)."""
    import torch

    q = torch.exp(logits - logits.max()).T  # [K, B]
    q /= q.sum()
    k, b = q.shape
    for _ in range(iterations):
        q /= q.sum(dim=1, keepdim=True)
        q /= k
        q /= q.sum(dim=0, keepdim=True)
        q /= b
    return (q * b).T


def dino(width, steps_per_epoch, norm_last_layer=True, head_bn=True, ema_start=0.99,
         sinkhorn=False):
    """configs/dino_cifar10.toml: head Linear-BN-ReLU 128-512-512, bottleneck 64, 1024
    weight-normalised prototypes; student T 0.1, teacher T 0.04 -> 0.07 over the first epoch,
    centre momentum 0.9, teacher EMA cosine 0.99 -> 1; 2 global 32 px crops (scale 0.4-1) and 4
    local 16 px crops (0.05-0.4), colour jitter 0.8/0.8/0.8/0.2 with p 0.8, grey 0.2, no blur.

    Pilot knobs (the defaults are the config): `norm_last_layer=False` makes the prototypes'
    gain trainable (lightly's option, solo-learn's CIFAR setting); `head_bn=False` is the DINO
    paper's Linear-GELU head without BatchNorm; `ema_start` is the teacher's EMA momentum at
    step 0 (cosine to 1); `sinkhorn=True` replaces the teacher's EMA centring + softmax by
    DINOv2's Sinkhorn-Knopp centring (3 iterations) at the same teacher temperature."""
    import torch
    from lightly.loss import DINOLoss
    from lightly.models.modules import DINOProjectionHead
    from lightly.models.utils import update_momentum
    from lightly.transforms import DINOTransform
    from lightly.utils.scheduler import cosine_schedule

    def make_head():
        head = DINOProjectionHead(dim, 512, 64, 1024, batch_norm=head_bn,
                                  freeze_last_layer=-1, norm_last_layer=norm_last_layer)
        # lightly's head uses GELU; selfsup's (and the config's) Linear-BN-ReLU blocks use ReLU.
        for i, m in enumerate(head.layers):
            if isinstance(m, torch.nn.GELU) and head_bn:
                head.layers[i] = torch.nn.ReLU()
        return head

    backbone, dim = resnet18_cifar(width)
    student = torch.nn.Sequential(backbone, make_head())
    # deepcopy cannot copy the weight-normalised last layer: a fresh head with the same values.
    teacher = torch.nn.Sequential(copy.deepcopy(backbone), make_head())
    teacher[1].load_state_dict(student[1].state_dict())
    for p in teacher.parameters():
        p.requires_grad = False
    loss_fn = DINOLoss(
        output_dim=1024,
        warmup_teacher_temp=0.04,
        teacher_temp=0.07,
        warmup_teacher_temp_epochs=1,
        student_temp=0.1,
        center_momentum=0.9,
    )
    transform = DINOTransform(
        global_crop_size=32,
        global_crop_scale=(0.4, 1.0),
        local_crop_size=16,
        local_crop_scale=(0.05, 0.4),
        n_local_views=4,
        hf_prob=0.5,
        cj_prob=0.8,
        cj_strength=1.0,
        cj_bright=0.8,
        cj_contrast=0.8,
        cj_sat=0.8,
        cj_hue=0.2,
        random_gray_scale=0.2,
        gaussian_blur=(0.0, 0.0, 0.0),
        solarization_prob=0.0,
        normalize={"mean": MEAN, "std": STD},
    )

    def step(views, global_step, total_steps):
        m = cosine_schedule(global_step, total_steps, ema_start, 1.0)
        update_momentum(student, teacher, m)
        with torch.no_grad():
            t_out = [teacher(v) for v in views[:2]]
        s_out = [student(v) for v in views]
        # lightly's own warm-up is per whole epoch; selfsup's is per step (fractional epochs).
        epoch = global_step / steps_per_epoch
        teacher_temp = 0.04 + 0.03 * min(epoch, 1.0)
        if not sinkhorn:
            return loss_fn(t_out, s_out, teacher_temp=teacher_temp), epoch
        # The same pairs as DINOLoss: every student view against each teacher (global) view
        # but its own, mean cross-entropy over the pairs.
        targets = [sinkhorn_knopp(t / teacher_temp) for t in t_out]
        terms = [
            -(q * torch.log_softmax(s / 0.1, dim=-1)).sum(dim=-1).mean()
            for i, q in enumerate(targets)
            for j, s in enumerate(s_out)
            if i != j
        ]
        return sum(terms) / len(terms), epoch

    return student, backbone, transform, step


METHODS = {"dino": dino}


def knn_top1(backbone, data, k=200, t=0.1, batch=512):
    """Weighted kNN (Wu et al. 2018, as selfsup eval knn): cosine similarity on L2-normalised
    features, weights exp(s/T), top-k neighbours of each test image among the train images."""
    import torch
    import torchvision.transforms as T
    from torchvision.datasets import ImageFolder

    tf = T.Compose([T.ToTensor(), T.Normalize(MEAN, STD)])
    backbone.eval()

    def feats(split):
        ds = ImageFolder(os.path.join(data, split), transform=tf)
        dl = torch.utils.data.DataLoader(ds, batch_size=batch, num_workers=2)
        out, labels = [], []
        with torch.no_grad():
            for x, y in dl:
                out.append(torch.nn.functional.normalize(backbone(x), dim=1))
                labels.append(y)
        return torch.cat(out), torch.cat(labels)

    ftr, ltr = feats("train")
    fte, lte = feats("test")
    correct = 0
    for i in range(0, len(fte), batch):
        sim = fte[i : i + batch] @ ftr.T
        s, idx = sim.topk(k, dim=1)
        w = (s / t).exp()
        votes = torch.zeros(len(s), 10).scatter_add_(1, ltr[idx], w)
        correct += (votes.argmax(1) == lte[i : i + batch]).sum().item()
    return correct / len(fte)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("method", choices=sorted(METHODS))
    p.add_argument("--data", required=True)
    p.add_argument("--limit", type=int, default=50000)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--knn", action="store_true")
    p.add_argument("--dino-learnable-gain", action="store_true",
                   help="DINO: norm_last_layer=False (trainable gain of the prototypes)")
    p.add_argument("--dino-ema-start", type=float, default=0.99,
                   help="DINO: teacher EMA momentum at step 0, cosine to 1")
    p.add_argument("--dino-plain-head", action="store_true",
                   help="DINO: Linear-GELU head without BatchNorm (the paper's) instead of Linear-BN-ReLU")
    p.add_argument("--freeze-last-steps", type=int, default=0,
                   help="DINO: no gradient to the prototypes (the head's last layer) for the first N "
                        "steps (the DINO paper's freeze_last_layer, 1 epoch)")
    p.add_argument("--dino-sinkhorn", action="store_true",
                   help="DINO: DINOv2's Sinkhorn-Knopp teacher centring instead of the EMA centre")
    p.add_argument("--clip-grad", type=float, default=0.0,
                   help="clip each parameter's gradient to this L2 norm (the DINO paper's 3.0); 0 = off")
    args = p.parse_args()

    import torch

    torch.manual_seed(0)
    torch.set_num_threads(2)
    images = load_images(args.data, args.limit)
    steps_per_epoch = len(images) // args.batch
    total = steps_per_epoch * args.epochs
    options = {}
    if args.method == "dino":
        options = dict(norm_last_layer=not args.dino_learnable_gain,
                       head_bn=not args.dino_plain_head, ema_start=args.dino_ema_start,
                       sinkhorn=args.dino_sinkhorn)
    model, backbone, transform, step = METHODS[args.method](args.width, steps_per_epoch, **options)

    class Views(torch.utils.data.Dataset):
        def __len__(self):
            return len(images)

        def __getitem__(self, i):
            return transform(images[i])

    loader = torch.utils.data.DataLoader(
        Views(), batch_size=args.batch, shuffle=True, drop_last=True, num_workers=args.workers
    )
    opt = torch.optim.SGD(model.parameters(), lr=0.06, momentum=0.9, weight_decay=5e-4)
    start, global_step = time.perf_counter(), 0
    for _ in range(args.epochs):
        model.train()
        for views in loader:
            lr = 0.06 * 0.5 * (1 + math.cos(math.pi * global_step / total))
            for g in opt.param_groups:
                g["lr"] = lr
            loss, _ = step(views, global_step, total)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if global_step < args.freeze_last_steps:
                for p_ in model[1].last_layer.parameters():
                    p_.grad = None
            if args.clip_grad > 0:
                # Per parameter, as the DINO code's clip_gradients does.
                for p_ in model.parameters():
                    if p_.grad is not None:
                        torch.nn.utils.clip_grad_norm_([p_], args.clip_grad)
            opt.step()
            global_step += 1
            print(json.dumps({"step": global_step, "loss": loss.item(), "lr": lr}), flush=True)
    summary = {"method": args.method, "steps": global_step, "images": len(images),
               "train_seconds": time.perf_counter() - start}
    if args.knn:
        summary["knn_top1"] = knn_top1(backbone, args.data)
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
