"""Runs selfsup and the PyTorch/LightlySSL reference side by side and writes bench/RESULTS.md.

Every repetition runs each workload on every side, alternating which side goes first, so both
see the same machine conditions; the table reports per-side medians over repetitions and the
ratio selfsup / reference. Called by bench/run.sh (which builds selfsup and picks the venv).
"""

import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def sh(cmd, env=None):
    """Runs one workload process; returns its last stdout line parsed as JSON."""
    full_env = dict(os.environ, **(env or {}))
    t = time.time()
    p = subprocess.run(cmd, capture_output=True, text=True, env=full_env)
    if p.returncode != 0:
        sys.exit(f"bench: {' '.join(cmd)} failed ({p.returncode}):\n{p.stderr[-3000:]}")
    last = [l for l in p.stdout.splitlines() if l.strip()][-1]
    out = json.loads(last)
    # `selfsup pretrain` reports views_per_second; the bench workloads views_per_s.
    rate = out.get("views_per_s", out.get("views_per_second"))
    print(f"  {time.time() - t:6.1f}s  {' '.join(cmd[-8:])[:110]} -> {rate:.1f}",
          file=sys.stderr, flush=True)
    return out


def make_256px_folder(cifar, dest, n):
    """256×256 JPEGs (CIFAR-10 images upscaled) for the 224×224-crop augmentation benchmark."""
    from PIL import Image

    marker = os.path.join(dest, ".complete")
    if os.path.exists(marker):
        return
    shutil.rmtree(dest, ignore_errors=True)
    train = os.path.join(cifar, "train")
    classes = sorted(os.listdir(train))
    per_class = max(1, n // len(classes))
    for cls in classes:
        os.makedirs(os.path.join(dest, "train", cls), exist_ok=True)
        for f in sorted(os.listdir(os.path.join(train, cls)))[:per_class]:
            im = Image.open(os.path.join(train, cls, f)).convert("RGB")
            im = im.resize((256, 256), Image.BILINEAR)
            im.save(os.path.join(dest, "train", cls, f), quality=95)
    open(marker, "w").close()


PHOTOS = ["astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field",
          "immunohistochemistry", "retina"]


def make_photo_folder(dest, copies):
    """Real photos at ImageNet-like sizes (300×451 to 1411×1411): the colour photos of
    scikit-image's `skimage.data` (from PyPI), each saved once as a JPEG (q90) and repeated
    `copies` times as one class folder."""
    marker = os.path.join(dest, ".complete")
    if os.path.exists(marker):
        return
    try:
        import skimage.data
    except ImportError:
        sys.exit("bench.py: the photo workloads need scikit-image in the reference venv "
                 "(pip install scikit-image)")
    from PIL import Image

    shutil.rmtree(dest, ignore_errors=True)
    for name in PHOTOS:
        d = os.path.join(dest, "train", name)
        os.makedirs(d, exist_ok=True)
        first = os.path.join(d, "000.jpg")
        Image.fromarray(getattr(skimage.data, name)()).convert("RGB").save(first, quality=90)
        for k in range(1, copies):
            shutil.copyfile(first, os.path.join(d, f"{k:03}.jpg"))
    open(marker, "w").close()


def machine():
    cpu = "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} logical CPUs, {platform.system()} {platform.release()}"


def merge_sections(existing: str, sections) -> str:
    """`existing` RESULTS.md with each `## title` section in `sections` replaced (or appended
    when new); the other sections and the header stay as they were."""
    head, *parts = existing.split("\n## ")
    old = [("## " + p).rstrip("\n") + "\n" for p in parts]
    titles = [o.splitlines()[0][3:] for o in old]
    for title, body in sections:
        if title in titles:
            old[titles.index(title)] = body
        else:
            old.append(body)
            titles.append(title)
    return "\n".join([head.rstrip("\n") + "\n"] + old)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--selfsup-bench", required=True, help="the selfsup-bench binary")
    ap.add_argument("--selfsup", required=True, help="the selfsup CLI binary")
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--data", required=True, help="shared data root (cifar10/ inside)")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="fewer steps/views (a smoke run)")
    ap.add_argument("--only", default="", help="comma-separated workload keys to run")
    ap.add_argument("--out", default=os.path.join(HERE, "RESULTS.md"))
    ap.add_argument("--command", default="bench/run.sh", help="recorded in RESULTS.md")
    args = ap.parse_args()

    work = os.path.join(HERE, "work")
    os.makedirs(work, exist_ok=True)
    cifar = os.path.join(args.data, "cifar10")
    img256 = os.path.join(work, "img256")
    make_256px_folder(cifar, img256, 200)
    photos = os.path.join(work, "photos")
    cache = os.path.join(work, "cache")
    q = args.quick
    steps64, steps16 = ("1", "2") if q else ("3", "5")
    views32, views224 = ("1000", "200") if q else ("6000", "1000")
    limit = "512" if q else "2560"

    ref = [args.python, os.path.join(HERE, "reference.py")]
    rs = [args.selfsup_bench]
    burn_conv = {"SELFSUP_KERNELS": "burn"}
    one_core = {"RAYON_NUM_THREADS": "1", "BENCH_THREADS": "1"}

    def pretrain_selfsup():
        run = tempfile.mkdtemp(dir=work, prefix="pretrain-")
        try:
            out = sh([args.selfsup, "pretrain", "--config",
                      os.path.join(ROOT, "configs", "simclr_cifar10.toml"), "--data", cifar,
                      "--set", f"data.limit={limit}", "--set", "train.epochs=1",
                      "--out", run, "--quiet"])
        finally:
            shutil.rmtree(run, ignore_errors=True)
        return {"views_per_s": out["views_per_second"]}

    def step(side, w, n):
        a = ["step", "--width", str(w), "--batch", "128", "--steps", n]
        return lambda: sh((rs if side != "ref" else ref) + a, burn_conv if side == "burn" else None)

    def fwd(side, w):
        a = ["forward", "--width", str(w), "--batch", "256", "--steps", "3"]
        return lambda: sh((rs if side != "ref" else ref) + a, burn_conv if side == "burn" else None)

    def step_at(side, arch, width, size, batch, n):
        a = ["step", "--arch", arch, "--width", str(width), "--size", str(size),
             "--batch", str(batch), "--steps", n]
        return lambda: sh((rs if side != "ref" else ref) + a)

    def loader(side, workers):
        a = ["loader", "--data", photos, "--size", "224", "--blur", "0.5", "--batch", "64",
             "--workers", str(workers), "--rounds", "2" if q else "3"]
        if side == "selfsup":
            return lambda: sh(rs + a + ["--cache", os.path.join(work, "photo-cache")])
        if side == "first":
            return lambda: sh(rs + a + ["--cache", os.path.join(work, "photo-cache"),
                                        "--first-epoch"])
        if side == "pixels":
            return lambda: sh(rs + a + ["--cache", os.path.join(work, "photo-pixel-cache"),
                                        "--pixel-cache"])
        return lambda: sh(ref + a)

    def aug(side, folder, size, blur, views):
        a = ["augment", "--data", folder, "--size", str(size), "--blur", str(blur),
             "--images", "200", "--views", views, "--rounds", "2"]
        if side == "selfsup":
            return lambda: sh(rs + a + ["--cache", cache], one_core)
        return lambda: sh(ref + a + ["--impl", side], one_core)

    # key: (title, {side: runner}); the first side is selfsup, the second the reference the
    # ratio is taken against, further sides are extra columns.
    workloads = [
        ("step64", "SimCLR train step, ResNet-18 CIFAR width 64, 2×128 views",
         {"selfsup": step("selfsup", 64, steps64), "PyTorch": step("ref", 64, steps64)}
         # The slowest workload: --quick leaves out its burn-ops column.
         | ({} if q else {"selfsup, burn ops": step("burn", 64, steps64)})),
        ("step16", "SimCLR train step, width 16 (16-32-64-128), 2×128 views",
         {"selfsup": step("selfsup", 16, steps16), "PyTorch": step("ref", 16, steps16),
          "selfsup, burn ops": step("burn", 16, steps16)}),
        ("fwd64", "Backbone forward (inference), width 64, batch 256",
         {"selfsup": fwd("selfsup", 64), "PyTorch": fwd("ref", 64),
          "selfsup, burn ops": fwd("burn", 64)}),
        ("fwd16", "Backbone forward (inference), width 16, batch 256",
         {"selfsup": fwd("selfsup", 16), "PyTorch": fwd("ref", 16),
          "selfsup, burn ops": fwd("burn", 16)}),
        ("aug32", "Two-view SimCLR augmentation, 32×32 CIFAR-10, no blur, 1 core",
         {"selfsup": aug("selfsup", cifar, 32, 0.0, views32),
          "LightlySSL SimCLRTransform": aug("lightly", cifar, 32, 0.0, views32),
          "torchvision v2 (uint8 tensors)": aug("tv2", cifar, 32, 0.0, views32)}),
        ("aug224", "Two-view SimCLR augmentation, 224×224 crops of 256×256, blur p=0.5, 1 core",
         {"selfsup": aug("selfsup", img256, 224, 0.5, views224),
          "LightlySSL SimCLRTransform": aug("lightly", img256, 224, 0.5, views224),
          "torchvision v2 (uint8 tensors)": aug("tv2", img256, 224, 0.5, views224)}),
        ("aug224nb", "Two-view SimCLR augmentation, 224×224 crops of 256×256, no blur, 1 core",
         {"selfsup": aug("selfsup", img256, 224, 0.0, views224),
          "LightlySSL SimCLRTransform": aug("lightly", img256, 224, 0.0, views224),
          "torchvision v2 (uint8 tensors)": aug("tv2", img256, 224, 0.0, views224)}),
        ("loader224", "Loader, JPEG files to two SimCLR views at 224 px (blur p=0.5, batch 64), "
         "1 worker: 448 real photos (skimage.data, 300×451 to 1411×1411). selfsup reads its bounded "
         "cache (short side 256; photos kept as JPEG, decoded per read, by default; all pixels with "
         "data.cache_format = pixels) after the first epoch; torchvision decodes every epoch",
         {"selfsup": loader("selfsup", 1), "torchvision ImageFolder + SimCLRTransform": loader("ref", 1),
          "selfsup, first epoch (decode into the cache)": loader("first", 1),
          "selfsup, pixel cache": loader("pixels", 1)}),
        ("loader224w2", "Loader as above, 2 workers",
         {"selfsup": loader("selfsup", 2), "torchvision ImageFolder + SimCLRTransform": loader("ref", 2),
          "selfsup, pixel cache": loader("pixels", 2)}),
        ("step64px", "SimCLR train step, ResNet-18 CIFAR stem width 16, 64×64 views, 2×64",
         {"selfsup": step_at("selfsup", "resnet18-cifar", 16, 64, 64, steps16),
          "PyTorch": step_at("ref", "resnet18-cifar", 16, 64, 64, steps16)}),
        ("step96px", "SimCLR train step, ResNet-18 CIFAR stem width 16, 96×96 views, 2×32",
         {"selfsup": step_at("selfsup", "resnet18-cifar", 16, 96, 32, steps16),
          "PyTorch": step_at("ref", "resnet18-cifar", 16, 96, 32, steps16)}),
        ("step224r18", "SimCLR train step, ResNet-18 ImageNet stem (width 64), 224×224, 2×32",
         {"selfsup": step_at("selfsup", "resnet18", 64, 224, 32, steps64),
          "PyTorch": step_at("ref", "resnet18", 64, 224, 32, steps64)}),
        ("step224r50", "SimCLR train step, ResNet-50 ImageNet stem, 224×224, 2×32",
         {"selfsup": step_at("selfsup", "resnet50", 64, 224, 32, steps64),
          "PyTorch": step_at("ref", "resnet50", 64, 224, 32, steps64)}),
        ("step224vits", "SimCLR train step, ViT-S/16, 224×224, 2×32",
         {"selfsup": step_at("selfsup", "vit-s16", 64, 224, 32, steps64),
          "PyTorch": step_at("ref", "vit-s16", 64, 224, 32, steps64),
          "selfsup, model.vit_recompute_attention": step_at("selfsup", "vit-s16-recompute", 64, 224, 32, steps64)}),
        ("pretrain16", f"End-to-end pretraining, CIFAR-10 ({limit} images, 1 epoch), width 16",
         {"selfsup pretrain": pretrain_selfsup,
          "LightlySSL loop": lambda: sh(ref + ["pretrain", "--data", cifar, "--limit", limit,
                                              "--width", "16", "--workers", "2"])}),
    ]
    if args.only:
        keep = set(args.only.split(","))
        unknown = keep - {w[0] for w in workloads}
        if unknown:
            sys.exit(f"bench.py: --only {','.join(sorted(unknown))}: unknown workload; "
                     f"choose from {','.join(w[0] for w in workloads)}")
        workloads = [w for w in workloads if w[0] in keep]
    if any(key.startswith("loader") for key, _, _ in workloads):
        make_photo_folder(photos, 64)

    started = datetime.datetime.now(datetime.timezone.utc)
    load_before = os.getloadavg()
    results = {key: {side: [] for side in sides} for key, _, sides in workloads}
    peak_rss = {key: {} for key, _, _ in workloads}
    for rep in range(args.reps):
        print(f"repetition {rep + 1}/{args.reps}", file=sys.stderr, flush=True)
        for key, _, sides in workloads:
            order = list(sides.items())
            if rep % 2 == 1:
                order.reverse()
            for side, run in order:
                out = run()
                results[key][side].append(out["views_per_s"])
                if out.get("peak_rss_mb") is not None:
                    rss = (out["peak_rss_mb"], out.get("import_rss_mb"))
                    peak_rss[key][side] = max(peak_rss[key].get(side, rss), rss)
    load_after = os.getloadavg()
    finished = datetime.datetime.now(datetime.timezone.utc)

    torch_version = subprocess.run(
        [args.python, "-c", "import torch, torchvision, lightly;"
         "print(torch.__version__, torchvision.__version__, lightly.__version__)"],
        capture_output=True, text=True).stdout.split()
    header = [
        "# selfsup vs PyTorch: benchmark results",
        "",
        f"Command: `{args.command}` (bench/bench.py, {args.reps} repetitions"
        f"{', --quick' if q else ''}), {started:%Y-%m-%d %H:%M}–{finished:%H:%M} UTC.",
        "",
        f"Machine: {machine()}. Load average (1/5/15 min) at start "
        f"{load_before[0]:.1f}/{load_before[1]:.1f}/{load_before[2]:.1f}, at end "
        f"{load_after[0]:.1f}/{load_after[1]:.1f}/{load_after[2]:.1f}: the machine is shared, so "
        "absolute figures are noisy; sides alternate within each repetition, compare the ratios.",
        "",
        f"Reference: PyTorch {' '.join(torch_version[:1])} eager (2 threads; 1 for augmentation), "
        f"torchvision {' '.join(torch_version[1:2])}, LightlySSL {' '.join(torch_version[2:3])}. "
        "selfsup: release build, burn 0.22.1 flex (simd + rayon), selfsup-kernels conv2d and BatchNorm+ReLU unless "
        "the column says burn ops (SELFSUP_KERNELS=burn: burn's conv2d and BatchNorm).",
        "",
        "Figures are views/s (images/s for forward): median over repetitions; [min–max] in "
        "brackets. Ratio = selfsup / the first reference column.",
        "",
    ]
    sections = []
    for key, title, sides in workloads:
        names = list(sides)
        med = {s: statistics.median(results[key][s]) for s in names}
        lines = [f"## {title}", ""]
        if args.only:
            # A partial run replaces only its own sections: each says when and how it was made.
            lines.append(
                f"Measured {started:%Y-%m-%d %H:%M}–{finished:%H:%M} UTC by `{args.command}`, "
                f"load average {load_before[0]:.1f} → {load_after[0]:.1f}."
            )
            lines.append("")
        lines.append("| side | views/s | [min–max] |")
        lines.append("|---|---:|---|")
        for s in names:
            xs = results[key][s]
            lines.append(f"| {s} | {med[s]:.1f} | [{min(xs):.1f}–{max(xs):.1f}] |")
        lines.append("")
        lines.append(f"**Ratio selfsup / {names[1]}: {med[names[0]] / med[names[1]]:.2f}×**")
        for s in names[2:]:
            lines.append(f"; selfsup / {s}: {med[names[0]] / med[s]:.2f}×")
        lines.append("")
        if peak_rss[key]:
            parts = []
            for s in names:
                if s in peak_rss[key]:
                    mb, imported = peak_rss[key][s]
                    extra = f" ({imported} MB of it importing torch)" if imported else ""
                    parts.append(f"{s} {mb} MB{extra}")
            lines.append("Peak RSS (largest of the repetitions): " + "; ".join(parts) + ".")
            lines.append("")
        sections.append((title, "\n".join(lines)))
    text = "\n".join(header + [body for _, body in sections])
    if args.only and os.path.exists(args.out):
        text = merge_sections(open(args.out).read(), sections)
    with open(args.out, "w") as f:
        f.write(text)
    with open(os.path.join(work, "raw_results.json"), "w") as f:
        json.dump(results, f, indent=1)
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
