//! The `step` and `forward` workloads of `selfsup-bench` on burn 0.21.0's CUDA backend: ResNet-18
//! (CIFAR stem, widths w·(1, 2, 4, 8)), SimCLR projection head [8w → 8w → 128] with BatchNorm,
//! NT-Xent (T = 0.5), SGD (lr 0.06, momentum 0.9, weight decay 5e-4) on random 32×32 views.
//! Prints one JSON line as selfsup-bench and bench/reference.py do.
//!
//!   burn021-cuda-bench step --width 64 --batch 128 --steps 20 --warmup 3

use burn::backend::{Autodiff, Cuda};
use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig, PaddingConfig2d};
use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{GradientsParams, Optimizer, SgdConfig};
use burn::tensor::activation::{log_softmax, relu};
use burn::tensor::backend::Backend;
use burn::tensor::{Distribution, Int, Tensor, TensorData};
use std::time::Instant;

fn conv<B: Backend>(
    cin: usize,
    cout: usize,
    k: usize,
    stride: usize,
    dev: &B::Device,
) -> Conv2d<B> {
    let p = k / 2;
    Conv2dConfig::new([cin, cout], [k, k])
        .with_stride([stride, stride])
        .with_padding(PaddingConfig2d::Explicit(p, p, p, p))
        .with_bias(false)
        .init(dev)
}

fn bn<B: Backend>(c: usize, dev: &B::Device) -> BatchNorm<B> {
    BatchNormConfig::new(c).init(dev)
}

#[derive(Module, Debug)]
struct Block<B: Backend> {
    conv1: Conv2d<B>,
    bn1: BatchNorm<B>,
    conv2: Conv2d<B>,
    bn2: BatchNorm<B>,
    down: Option<(Conv2d<B>, BatchNorm<B>)>,
}

impl<B: Backend> Block<B> {
    fn new(cin: usize, cout: usize, stride: usize, dev: &B::Device) -> Self {
        let down =
            (stride != 1 || cin != cout).then(|| (conv(cin, cout, 1, stride, dev), bn(cout, dev)));
        Self {
            conv1: conv(cin, cout, 3, stride, dev),
            bn1: bn(cout, dev),
            conv2: conv(cout, cout, 3, 1, dev),
            bn2: bn(cout, dev),
            down,
        }
    }

    fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let y = relu(self.bn1.forward(self.conv1.forward(x.clone())));
        let y = self.bn2.forward(self.conv2.forward(y));
        let skip = match &self.down {
            Some((c, n)) => n.forward(c.forward(x)),
            None => x,
        };
        relu(y + skip)
    }
}

#[derive(Module, Debug)]
struct ResNet18<B: Backend> {
    stem: Conv2d<B>,
    stem_bn: BatchNorm<B>,
    blocks: Vec<Block<B>>,
}

impl<B: Backend> ResNet18<B> {
    fn new(width: usize, dev: &B::Device) -> Self {
        let mut blocks = Vec::new();
        let mut cin = width;
        for (mult, stride) in [(1, 1), (2, 2), (4, 2), (8, 2)] {
            let cout = width * mult;
            blocks.push(Block::new(cin, cout, stride, dev));
            blocks.push(Block::new(cout, cout, 1, dev));
            cin = cout;
        }
        Self {
            stem: conv(3, width, 3, 1, dev),
            stem_bn: bn(width, dev),
            blocks,
        }
    }

    /// Global-average-pooled features `[batch, 8w]`.
    fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 2> {
        let mut y = relu(self.stem_bn.forward(self.stem.forward(x)));
        for b in &self.blocks {
            y = b.forward(y);
        }
        let [n, c, h, w] = y.dims();
        y.reshape([n, c, h * w]).mean_dim(2).reshape([n, c])
    }
}

#[derive(Module, Debug)]
struct SimClr<B: Backend> {
    backbone: ResNet18<B>,
    fc1: Linear<B>,
    fc_bn: BatchNorm<B>,
    fc2: Linear<B>,
}

impl<B: Backend> SimClr<B> {
    fn new(width: usize, dev: &B::Device) -> Self {
        let d = 8 * width;
        Self {
            backbone: ResNet18::new(width, dev),
            fc1: LinearConfig::new(d, d).init(dev),
            fc_bn: bn(d, dev),
            fc2: LinearConfig::new(d, 128).init(dev),
        }
    }

    fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 2> {
        let h = self.fc1.forward(self.backbone.forward(x));
        // BatchNorm over the feature axis of [n, d]: as [n, d, 1].
        let [n, d] = h.dims();
        let h = self.fc_bn.forward(h.reshape([n, d, 1])).reshape([n, d]);
        self.fc2.forward(relu(h))
    }
}

/// NT-Xent over `z = [za; zb]` (2n rows): row i's positive is row (i + n) mod 2n.
fn nt_xent<B: Backend>(z: Tensor<B, 2>, temperature: f64) -> Tensor<B, 1> {
    let [m, _] = z.dims();
    let dev = z.device();
    let norm = z
        .clone()
        .powf_scalar(2.0)
        .sum_dim(1)
        .sqrt()
        .clamp_min(1e-12);
    let z = z / norm;
    let diag: Vec<f32> = (0..m * m)
        .map(|i| if i / m == i % m { 1e9 } else { 0.0 })
        .collect();
    let diag = Tensor::<B, 2>::from_data(TensorData::new(diag, [m, m]), &dev);
    let logits = z.clone().matmul(z.transpose()) / temperature - diag;
    let targets: Vec<i64> = (0..m).map(|i| ((i + m / 2) % m) as i64).collect();
    let targets = Tensor::<B, 2, Int>::from_data(TensorData::new(targets, [m, 1]), &dev);
    log_softmax(logits, 1).gather(1, targets).mean().neg()
}

type Ad = Autodiff<Cuda>;

fn step(width: usize, batch: usize, steps: usize, warmup: usize) -> Vec<f64> {
    let dev = Default::default();
    let mut model = SimClr::<Ad>::new(width, &dev);
    let mut optim = SgdConfig::new()
        .with_momentum(Some(
            MomentumConfig::new().with_momentum(0.9).with_dampening(0.0),
        ))
        .with_weight_decay(Some(WeightDecayConfig::new(5e-4)))
        .init();
    let views =
        || Tensor::<Ad, 4>::random([batch, 3, 32, 32], Distribution::Normal(0.0, 1.0), &dev);
    let (a, b) = (views(), views());
    let mut rates = Vec::new();
    for s in 0..warmup + steps {
        let t = Instant::now();
        let z = model.forward(Tensor::cat(vec![a.clone(), b.clone()], 0));
        let loss = nt_xent(z, 0.5);
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(0.06, model, grads);
        // Reading a parameter back waits for the update, as selfsup-bench does.
        let _: f32 = model.backbone.stem.weight.val().sum().into_scalar();
        if s >= warmup {
            rates.push(2.0 * batch as f64 / t.elapsed().as_secs_f64());
        }
    }
    rates
}

fn forward(width: usize, batch: usize, steps: usize, warmup: usize) -> Vec<f64> {
    let dev = Default::default();
    let net = ResNet18::<Cuda>::new(width, &dev);
    let x = Tensor::<Cuda, 4>::random([batch, 3, 32, 32], Distribution::Normal(0.0, 1.0), &dev);
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

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let flag = |name: &str, default: usize| -> usize {
        args.iter()
            .position(|a| a == name)
            .map(|i| args[i + 1].parse().expect("a number after the flag"))
            .unwrap_or(default)
    };
    let workload = args.get(1).map(String::as_str).unwrap_or("step");
    let (width, steps, warmup) = (flag("--width", 16), flag("--steps", 5), flag("--warmup", 1));
    let samples = match workload {
        "step" => step(width, flag("--batch", 128), steps, warmup),
        "forward" => forward(width, flag("--batch", 256), steps, warmup),
        other => {
            eprintln!("unknown workload `{other}`: use step or forward");
            std::process::exit(2);
        }
    };
    let mut sorted = samples.clone();
    sorted.sort_by(f64::total_cmp);
    println!(
        "{}",
        serde_json::json!({"workload": workload, "views_per_s": sorted[sorted.len() / 2],
                           "samples": samples, "backend": "burn 0.21.0 cuda (fusion, autotune)"})
    );
}
