//! selfsup side of `bench/`: runs one workload and prints one JSON line
//! `{"workload", "views_per_s", "samples", "kernels"}`; `bench/reference.py` runs the same
//! workloads in PyTorch / LightlySSL and `bench/bench.py` alternates the two.
//! `SELFSUP_KERNELS=burn` runs burn's conv2d instead of selfsup-kernels' (see NOTES.md).

use std::path::PathBuf;
use std::time::Instant;

use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::Distribution;
use clap::{Parser, Subcommand};
use selfsup_data::{
    CacheFormat, CacheOptions, Normalization, Pipeline, SampleRng, Split, open_dataset,
};
use selfsup_kernels::conv::{self, ConvGeometry};
use selfsup_methods::method::{ImageContext, ImageMethodConfig};
use selfsup_methods::optim::OptimizerConfig;
use selfsup_methods::simclr::SimClrConfig;
use selfsup_models::ResNetConfig;

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    workload: Workload,
}

#[derive(Subcommand)]
enum Workload {
    /// SimCLR train step (forward, NT-Xent, backward, SGD) on random `size`×`size` views,
    /// 2×batch per step, projection head [d, 128] after the backbone's d features.
    Step {
        #[arg(long, default_value_t = 16)]
        width: usize,
        /// Side of the random views.
        #[arg(long, default_value_t = 32)]
        size: usize,
        /// resnet18-cifar (3×3 stem, no max-pool), resnet18 or resnet50 (ImageNet stem), or
        /// vit-s16 (ViT-S/16: 384 wide, 12 blocks, 6 heads; [CLS] pooling, learned positions).
        #[arg(long, default_value = "resnet18-cifar")]
        arch: String,
        #[arg(long, default_value_t = 128)]
        batch: usize,
        #[arg(long, default_value_t = 5)]
        steps: usize,
        #[arg(long, default_value_t = 1)]
        warmup: usize,
        /// cpu, or vulkan (build with `--features gpu`).
        #[arg(long, default_value = "cpu")]
        device: String,
    },
    /// Backbone forward (inference, BN with running statistics) on random 32×32 images.
    Forward {
        #[arg(long, default_value_t = 16)]
        width: usize,
        #[arg(long, default_value_t = 256)]
        batch: usize,
        #[arg(long, default_value_t = 5)]
        steps: usize,
        #[arg(long, default_value_t = 1)]
        warmup: usize,
        /// cpu, or vulkan (build with `--features gpu`).
        #[arg(long, default_value = "cpu")]
        device: String,
    },
    /// Each convolution shape of the CIFAR ResNet-18 through selfsup-kernels' three passes
    /// (forward, input gradient, weight gradient): one JSON line per shape and pass, GFLOP/s.
    Convs {
        #[arg(long, default_value_t = 64)]
        width: usize,
        #[arg(long, default_value_t = 256)]
        batch: usize,
        #[arg(long, default_value_t = 3)]
        reps: usize,
    },
    /// Two SimCLR views per image on the calling thread (decoded images, as the loader sees them).
    Augment {
        /// Image folder with a train/ split.
        #[arg(long)]
        data: PathBuf,
        #[arg(long, default_value_t = 32)]
        size: usize,
        /// Probability of the Gaussian blur (0 = the CIFAR recipe, 0.5 = the ImageNet one).
        #[arg(long, default_value_t = 0.0)]
        blur: f64,
        #[arg(long, default_value_t = 500)]
        images: usize,
        #[arg(long, default_value_t = 4000)]
        views: usize,
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// Where the decoded-image cache goes (never inside the data directory).
        #[arg(long)]
        cache: PathBuf,
    },
    /// Two SimCLR views per image of an image folder's train split through the loader
    /// (`--workers` threads, batches of `--batch`, ImageNet normalisation): whole passes after
    /// one untimed pass. First builds the bounded cache (shorter side ≤ ⌈size·8/7⌉, as
    /// `data.max_side`'s default) and prints its decode rate on stderr.
    Loader {
        #[arg(long)]
        data: PathBuf,
        #[arg(long, default_value_t = 224)]
        size: usize,
        #[arg(long, default_value_t = 0.5)]
        blur: f64,
        #[arg(long, default_value_t = 64)]
        batch: usize,
        #[arg(long, default_value_t = 1)]
        workers: usize,
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// Where the cache goes; it is rebuilt (and timed) when `--fresh-cache` is given.
        #[arg(long)]
        cache: PathBuf,
        #[arg(long)]
        fresh_cache: bool,
        /// Time first epochs instead: each round deletes the cache, builds it (decoding every
        /// JPEG) and makes one pass; views/s over both.
        #[arg(long)]
        first_epoch: bool,
        /// Store decoded pixels for every image (`data.cache_format = "pixels"`) instead of
        /// keeping the photos as JPEG (`auto`, the default).
        #[arg(long)]
        pixel_cache: bool,
    },
}

/// `loader`: views/s per whole pass of the loader over the cache, after one untimed pass.
#[allow(clippy::too_many_arguments)]
fn loader(
    data: &std::path::Path,
    size: usize,
    blur: f64,
    batch: usize,
    workers: usize,
    rounds: usize,
    cache: PathBuf,
    fresh: bool,
    first_epoch: bool,
    format: CacheFormat,
) -> Result<Vec<f64>, Box<dyn std::error::Error>> {
    let opts = CacheOptions {
        cache_dir: Some(cache.clone()),
        skip_corrupt: false,
        max_short_side: Some((size * 8).div_ceil(7) as u32),
        format,
    };
    let view = Pipeline::simclr(size, blur, Normalization::IMAGENET)?;
    let open = |fresh: bool| -> Result<selfsup_data::ViewLoader, Box<dyn std::error::Error>> {
        if fresh {
            let _ = std::fs::remove_dir_all(&cache);
        }
        let t = Instant::now();
        let ds = std::sync::Arc::new(open_dataset(data, Split::Train, &opts)?);
        let secs = t.elapsed().as_secs_f64();
        let bytes = ds
            .cache_file()
            .and_then(|f| std::fs::metadata(f).ok())
            .map_or(0, |m| m.len());
        eprintln!(
            "{}",
            serde_json::json!({"cache_images": ds.len(), "cache_seconds": secs,
                "cache_images_per_s": ds.len() as f64 / secs, "threads": rayon_threads(),
                "cache_bytes": bytes, "jpeg_entries": ds.num_jpeg_entries()})
        );
        Ok(selfsup_data::ViewLoader::new(
            ds,
            vec![view.clone(), view.clone()],
            selfsup_data::LoaderConfig {
                batch_size: batch,
                num_workers: workers,
                seed: 0,
                ..Default::default()
            },
        )?)
    };
    let pass = |loader: &selfsup_data::ViewLoader, epoch: usize| -> usize {
        loader
            .epoch(epoch as u64)
            .map(|b| b.view_shapes.iter().map(|s| s[0]).sum::<usize>())
            .sum()
    };
    let mut rates = Vec::new();
    if first_epoch {
        for _ in 0..rounds {
            let t = Instant::now();
            let loader = open(true)?;
            let n = pass(&loader, 0);
            rates.push(n as f64 / t.elapsed().as_secs_f64());
        }
        return Ok(rates);
    }
    let loader = open(fresh)?;
    for epoch in 0..=rounds {
        let t = Instant::now();
        let n = pass(&loader, epoch);
        if epoch > 0 {
            rates.push(n as f64 / t.elapsed().as_secs_f64());
        }
    }
    Ok(rates)
}

/// `--device`: the names `train.device` takes (cpu, vulkan, libtorch, cuda).
fn select_device(name: &str) -> Result<Device, String> {
    selfsup::selfsup_core::device::select(name).map_err(|e| format!("--device {name}: {e}"))
}

/// The `--arch` backbone at `width` for `size`-pixel images, and its feature width.
fn bench_backbone(
    arch: &str,
    width: usize,
    size: usize,
) -> Result<(selfsup_models::BackboneConfig, usize), String> {
    use selfsup_models::{ResNetStem, VitConfig, VitPooling, VitPositions};
    let resnet = |depth: usize, stem: ResNetStem| {
        ResNetConfig::new()
            .with_width(width)
            .with_depth(depth)
            .with_stem(stem)
    };
    Ok(match arch {
        "resnet18-cifar" => (resnet(18, ResNetStem::Cifar).into(), width * 8),
        "resnet18" => (resnet(18, ResNetStem::Imagenet).into(), width * 8),
        "resnet50" => (resnet(50, ResNetStem::Imagenet).into(), width * 32),
        "vit-s16" | "vit-s16-recompute" => (
            VitConfig::new()
                .with_recompute_attention(arch == "vit-s16-recompute")
                .with_image_size(size)
                .with_patch_size(16)
                .with_dim(384)
                .with_depth(12)
                .with_heads(6)
                .with_pooling(VitPooling::Cls)
                .with_positions(VitPositions::Learned)
                .into(),
            384,
        ),
        other => {
            return Err(format!(
                "--arch {other}: one of resnet18-cifar, resnet18, resnet50, vit-s16"
            ));
        }
    })
}

#[allow(clippy::too_many_arguments)]
fn simclr_step(
    device: Device,
    arch: &str,
    width: usize,
    size: usize,
    batch: usize,
    steps: usize,
    warmup: usize,
) -> Result<Vec<f64>, String> {
    let device = device.autodiff();
    let (backbone, features) = bench_backbone(arch, width, size)?;
    let cfg = SimClrConfig {
        projection_dims: vec![features, 128],
        ..SimClrConfig::default()
    };
    let mut model = cfg.init(&ImageContext::new(&backbone), &device);
    // The recipe of configs/simclr_cifar10.toml; reference.py uses the same.
    let mut optim = OptimizerConfig::sgd_momentum(5e-4, false)
        .init()
        .expect("valid optimizer");
    let views = |_| {
        Tensor::<4>::random(
            [batch, 3, size, size],
            Distribution::Normal(0.0, 1.0),
            &device,
        )
    };
    let (a, b) = (views(0), views(1));
    let mut rates = Vec::new();
    for s in 0..warmup + steps {
        let t = Instant::now();
        let out = model.step(a.clone(), b.clone(), cfg.objective(), s as u64);
        let grads = GradientsParams::from_grads(out.loss.backward(), &model);
        model = optim.step(0.06, model, grads);
        // Reading a parameter back forces the (lazy) update to complete.
        let _: f32 = model.projector.layers[0]
            .linear
            .weight
            .val()
            .sum()
            .into_scalar();
        if s >= warmup {
            rates.push(2.0 * batch as f64 / t.elapsed().as_secs_f64());
        }
    }
    Ok(rates)
}

fn backbone_forward(
    device: Device,
    width: usize,
    batch: usize,
    steps: usize,
    warmup: usize,
) -> Vec<f64> {
    let net = ResNetConfig::new().with_width(width).init(&device);
    let x = Tensor::<4>::random([batch, 3, 32, 32], Distribution::Normal(0.0, 1.0), &device);
    let mut rates = Vec::new();
    for s in 0..warmup + steps {
        let t = Instant::now();
        let _: f32 = net.forward(x.clone()).sum().into_scalar();
        if s >= warmup {
            rates.push(batch as f64 / t.elapsed().as_secs_f64());
        }
    }
    rates
}

#[allow(clippy::too_many_arguments)]
fn augment(
    data: &PathBuf,
    size: usize,
    blur: f64,
    images: usize,
    views: usize,
    rounds: usize,
    cache: PathBuf,
) -> Result<Vec<f64>, Box<dyn std::error::Error>> {
    let opts = CacheOptions {
        cache_dir: Some(cache),
        skip_corrupt: false,
        max_short_side: None,
        format: CacheFormat::Pixels,
    };
    let ds = open_dataset(data, Split::Train, &opts)?;
    // The same images as reference.py's load_images: every len/images-th in sorted order.
    let step = (ds.len() / images).max(1);
    let picked: Vec<usize> = (0..ds.len()).step_by(step).take(images).collect();
    let pipeline = Pipeline::simclr(size, blur, Normalization::CIFAR10)?;
    let mut out = vec![0.0f32; pipeline.output_len()];
    let mut rates = Vec::new();
    for round in 0..rounds {
        let t = Instant::now();
        let mut n = 0;
        'views: loop {
            for &i in &picked {
                for view in 0..2 {
                    let mut rng = SampleRng::for_sample(0, round as u64, (n + i) as u64, view);
                    pipeline.apply_into(ds.image(i).view(), &mut rng, &mut out);
                }
                n += 2;
                if n >= views {
                    break 'views;
                }
            }
        }
        rates.push(n as f64 / t.elapsed().as_secs_f64());
    }
    Ok(rates)
}

/// The distinct conv shapes of the CIFAR ResNet-18 at `width` (32×32 input) with how often each occurs.
fn resnet18_cifar_convs(width: usize) -> Vec<(ConvGeometry, usize)> {
    let g = |channels_in, height, channels_out, kernel, stride| ConvGeometry {
        channels_in,
        height,
        width: height,
        channels_out,
        kernel_h: kernel,
        kernel_w: kernel,
        stride,
        padding: kernel / 2,
    };
    let mut shapes = vec![(g(3, 32, width, 3, 1), 1), (g(width, 32, width, 3, 1), 4)];
    for stage in 1..4 {
        let (c, h) = (width << stage, 32 >> stage);
        shapes.push((g(c / 2, 2 * h, c, 3, 2), 1));
        shapes.push((g(c / 2, 2 * h, c, 1, 2), 1));
        shapes.push((g(c, h, c, 3, 1), 3));
    }
    shapes
}

/// Times the three conv passes of every ResNet-18 shape; prints a JSON line per shape and pass
/// and returns the whole network's conv time per pass (seconds per batch, each shape weighted by
/// how often it occurs).
fn conv_passes(width: usize, batch: usize, reps: usize) -> [f64; 3] {
    let noise = |n: usize, seed: u32| -> Vec<f32> {
        let mut s = seed.wrapping_mul(2_654_435_761) | 1;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                s as f32 / u32::MAX as f32 - 0.5
            })
            .collect()
    };
    let mut total = [0.0; 3];
    for (g, count) in resnet18_cifar_convs(width) {
        let x = noise(batch * g.channels_in * g.height * g.width, 1);
        let w = noise(g.channels_out * g.col_rows(), 2);
        let dy = noise(batch * g.channels_out * g.out_pixels(), 3);
        let flops = 2.0 * (batch * g.channels_out * g.col_rows() * g.out_pixels()) as f64;
        let passes: [(&str, &dyn Fn() -> Vec<f32>); 3] = [
            ("forward", &|| conv::conv2d_forward(&g, batch, &x, &w)),
            ("input_grad", &|| {
                conv::conv2d_input_grad(&g, batch, &w, &dy)
            }),
            ("weight_grad", &|| {
                conv::conv2d_weight_grad(&g, batch, &x, &dy)
            }),
        ];
        for (i, (pass, run)) in passes.iter().enumerate() {
            std::hint::black_box(run()); // warm-up: first-touch page faults, rayon start
            let times: Vec<f64> = (0..reps)
                .map(|_| {
                    let t = Instant::now();
                    std::hint::black_box(run());
                    t.elapsed().as_secs_f64()
                })
                .collect();
            let secs = median(&times);
            total[i] += count as f64 * secs;
            println!(
                "{}",
                serde_json::json!({
                    "conv": format!("{}->{} {}x{} k{} s{}", g.channels_in, g.channels_out,
                        g.height, g.width, g.kernel_h, g.stride),
                    "count": count,
                    "pass": pass,
                    "ms": secs * 1e3,
                    "gflop_per_s": flops / secs / 1e9,
                })
            );
        }
    }
    total
}

fn median(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// The allocator the `selfsup` binary runs with, so the workloads measure what users run.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    selfsup::alloc::keep_freed_memory();
    let cli = Cli::parse();
    // selfsup's kernels are backend extensions of the CPU backend only; on another device burn's
    // own ops run even when the kernels are enabled.
    let kernels = |device: &str| {
        if device == "cpu" && selfsup_kernels::enabled() {
            "selfsup"
        } else {
            "burn"
        }
    };
    let (name, kernels, samples) = match cli.workload {
        Workload::Step {
            width,
            size,
            arch,
            batch,
            steps,
            warmup,
            device,
        } => (
            "step",
            kernels(&device),
            simclr_step(
                select_device(&device)?,
                &arch,
                width,
                size,
                batch,
                steps,
                warmup,
            )?,
        ),
        Workload::Forward {
            width,
            batch,
            steps,
            warmup,
            device,
        } => (
            "forward",
            kernels(&device),
            backbone_forward(select_device(&device)?, width, batch, steps, warmup),
        ),
        Workload::Convs { width, batch, reps } => {
            let total = conv_passes(width, batch, reps.max(1));
            // Per-pass totals as images/s through all of the network's convolutions.
            (
                "convs",
                kernels("cpu"),
                total.iter().map(|secs| batch as f64 / secs).collect(),
            )
        }
        Workload::Augment {
            data,
            size,
            blur,
            images,
            views,
            rounds,
            cache,
        } => (
            "augment",
            kernels("cpu"),
            augment(&data, size, blur, images, views, rounds, cache)?,
        ),
        Workload::Loader {
            data,
            size,
            blur,
            batch,
            workers,
            rounds,
            cache,
            fresh_cache,
            first_epoch,
            pixel_cache,
        } => (
            "loader",
            kernels("cpu"),
            loader(
                &data,
                size,
                blur,
                batch,
                workers,
                rounds,
                cache,
                fresh_cache,
                first_epoch,
                if pixel_cache {
                    CacheFormat::Pixels
                } else {
                    CacheFormat::Auto
                },
            )?,
        ),
    };
    if samples.is_empty() {
        return Err("no timed repetitions: pass --steps/--rounds ≥ 1".into());
    }
    println!(
        "{}",
        serde_json::json!({
            "workload": name,
            "views_per_s": median(&samples),
            "samples": samples,
            "kernels": kernels,
            "threads": rayon_threads(),
            "peak_rss_mb": selfsup::selfsup_core::pretrain::peak_rss_bytes().map(|b| b >> 20),
        })
    );
    Ok(())
}

/// Threads the flex backend's rayon pool runs on (`RAYON_NUM_THREADS`, else the core count).
fn rayon_threads() -> usize {
    std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}
