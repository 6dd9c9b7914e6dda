//! ResNet backbones (He et al. 2016) laid out as torchvision's, so weights export by name.

use crate::norm::{Part, batch_norm as norm};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Initializer, PaddingConfig2d};
use burn::prelude::*;
use serde::{Deserialize, Serialize};

/// The first layers of the network, before the residual stages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ResNetStem {
    /// 3×3 stride-1 conv, no max-pool: keeps 32×32 inputs at full resolution (SimCLR's CIFAR variant).
    #[default]
    Cifar,
    /// 7×7 stride-2 conv followed by a 3×3 stride-2 max-pool (torchvision's).
    Imagenet,
}

#[derive(Config, Debug)]
pub struct ResNetConfig {
    /// 18, 34 or 50.
    #[config(default = 18)]
    pub depth: usize,
    /// Channels of the first stage; stages have width × (1, 2, 4, 8). torchvision: 64.
    #[config(default = 64)]
    pub width: usize,
    #[config(default = "ResNetStem::Cifar")]
    pub stem: ResNetStem,
    #[config(default = 3)]
    pub in_channels: usize,
}

/// Conv weights as torchvision initialises them: Kaiming normal, fan-out, ReLU gain.
fn conv(in_ch: usize, out_ch: usize, kernel: usize, stride: usize, device: &Device) -> Conv2d {
    let pad = kernel / 2;
    Conv2dConfig::new([in_ch, out_ch], [kernel, kernel])
        .with_stride([stride, stride])
        .with_padding(PaddingConfig2d::Explicit(pad, pad, pad, pad))
        .with_bias(false)
        .with_initializer(Initializer::KaimingNormal {
            gain: 2f64.sqrt(),
            fan_out_only: true,
        })
        .init(device)
}

/// Runs `conv` through selfsup-kernels' conv2d when it is a layer those cover (no bias, groups 1,
/// dilation 1, square stride, the same explicit padding on all sides: every conv built by
/// [`conv`]), through burn's `Conv2d::forward` otherwise.
fn conv_forward(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    match (
        &conv.bias,
        conv.groups,
        conv.dilation,
        conv.stride,
        &conv.padding,
    ) {
        (None, 1, [1, 1], [s, t], &PaddingConfig2d::Explicit(a, b, c, d))
            if s == t && a == b && a == c && a == d =>
        {
            selfsup_kernels::conv2d(x, conv.weight.val(), s, a)
        }
        _ => conv.forward(x),
    }
}

fn bn(ch: usize, device: &Device) -> BatchNorm {
    BatchNormConfig::new(ch).init(device)
}

/// 1×1 conv + BN on the shortcut when the shape changes (torchvision's `downsample`).
#[derive(Module, Debug)]
pub struct Downsample {
    pub conv: Conv2d,
    pub bn: BatchNorm,
}

impl Downsample {
    fn new(in_ch: usize, out_ch: usize, stride: usize, device: &Device) -> Self {
        Self {
            conv: conv(in_ch, out_ch, 1, stride, device),
            bn: bn(out_ch, device),
        }
    }
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        norm(&self.bn, conv_forward(&self.conv, x), false, Part::Backbone)
    }
}

/// A residual block: basic (two 3×3 convs, ResNet-18/34) or bottleneck (1×1, 3×3, 1×1, ResNet-50).
/// `conv3`/`bn3` are present only for bottlenecks, so parameter names match torchvision's.
#[derive(Module, Debug)]
pub struct Block {
    pub conv1: Conv2d,
    pub bn1: BatchNorm,
    pub conv2: Conv2d,
    pub bn2: BatchNorm,
    pub conv3: Option<Conv2d>,
    pub bn3: Option<BatchNorm>,
    pub downsample: Option<Downsample>,
}

impl Block {
    fn basic(in_ch: usize, out_ch: usize, stride: usize, device: &Device) -> Self {
        Self {
            conv1: conv(in_ch, out_ch, 3, stride, device),
            bn1: bn(out_ch, device),
            conv2: conv(out_ch, out_ch, 3, 1, device),
            bn2: bn(out_ch, device),
            conv3: None,
            bn3: None,
            downsample: (stride != 1 || in_ch != out_ch)
                .then(|| Downsample::new(in_ch, out_ch, stride, device)),
        }
    }

    /// `mid_ch` is the bottleneck width; the block outputs 4 × mid_ch channels.
    fn bottleneck(in_ch: usize, mid_ch: usize, stride: usize, device: &Device) -> Self {
        let out_ch = mid_ch * 4;
        Self {
            conv1: conv(in_ch, mid_ch, 1, 1, device),
            bn1: bn(mid_ch, device),
            conv2: conv(mid_ch, mid_ch, 3, stride, device),
            bn2: bn(mid_ch, device),
            conv3: Some(conv(mid_ch, out_ch, 1, 1, device)),
            bn3: Some(bn(out_ch, device)),
            downsample: (stride != 1 || in_ch != out_ch)
                .then(|| Downsample::new(in_ch, out_ch, stride, device)),
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let identity = match &self.downsample {
            Some(d) => d.forward(x.clone()),
            None => x.clone(),
        };
        let bottleneck = self.conv3.is_some();
        let mut out = norm(
            &self.bn1,
            conv_forward(&self.conv1, x),
            true,
            Part::Backbone,
        );
        out = norm(
            &self.bn2,
            conv_forward(&self.conv2, out),
            bottleneck,
            Part::Backbone,
        );
        if let (Some(conv3), Some(bn3)) = (&self.conv3, &self.bn3) {
            out = norm(bn3, conv_forward(conv3, out), false, Part::Backbone);
        }
        // Fused: keeps the block output (the next block's input, kept by its convolution
        // anyway) for the backward rather than the sum (one activation per block less).
        selfsup_kernels::add_relu(out, identity)
    }
}

#[derive(Module, Debug)]
pub struct ResNet {
    pub conv1: Conv2d,
    pub bn1: BatchNorm,
    pub maxpool: Option<MaxPool2d>,
    pub layer1: Vec<Block>,
    pub layer2: Vec<Block>,
    pub layer3: Vec<Block>,
    pub layer4: Vec<Block>,
    /// Feature dimension after global average pooling.
    pub out_dim: usize,
}

impl ResNetConfig {
    /// Blocks per stage and whether they are bottlenecks.
    fn layout(&self) -> Result<([usize; 4], bool), crate::ModelError> {
        match self.depth {
            18 => Ok(([2, 2, 2, 2], false)),
            34 => Ok(([3, 4, 6, 3], false)),
            50 => Ok(([3, 4, 6, 3], true)),
            d => Err(crate::ModelError::Config(format!(
                "backbone depth {d} is not supported: use 18, 34 or 50"
            ))),
        }
    }

    pub fn validate(&self) -> Result<(), crate::ModelError> {
        self.layout()?;
        if self.width == 0 {
            return Err(crate::ModelError::Config(
                "backbone width must be at least 1".into(),
            ));
        }
        if self.in_channels == 0 {
            return Err(crate::ModelError::Config(
                "in_channels must be at least 1".into(),
            ));
        }
        Ok(())
    }

    pub fn out_dim(&self) -> usize {
        let (_, bottleneck) = self.layout().expect("validated ResNet config");
        self.width * 8 * if bottleneck { 4 } else { 1 }
    }

    pub fn init(&self, device: &Device) -> ResNet {
        let (blocks, bottleneck) = self.layout().expect("validated ResNet config");
        let w = self.width;
        let (conv1, maxpool) = match self.stem {
            ResNetStem::Cifar => (conv(self.in_channels, w, 3, 1, device), None),
            ResNetStem::Imagenet => (
                conv(self.in_channels, w, 7, 2, device),
                Some(
                    MaxPool2dConfig::new([3, 3])
                        .with_strides([2, 2])
                        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                        .init(),
                ),
            ),
        };
        let expansion = if bottleneck { 4 } else { 1 };
        let mut in_ch = w;
        let mut stage = |mult: usize, n: usize, stride: usize| -> Vec<Block> {
            (0..n)
                .map(|i| {
                    let s = if i == 0 { stride } else { 1 };
                    let block = if bottleneck {
                        Block::bottleneck(in_ch, w * mult, s, device)
                    } else {
                        Block::basic(in_ch, w * mult, s, device)
                    };
                    in_ch = w * mult * expansion;
                    block
                })
                .collect()
        };
        let layer1 = stage(1, blocks[0], 1);
        let layer2 = stage(2, blocks[1], 2);
        let layer3 = stage(4, blocks[2], 2);
        let layer4 = stage(8, blocks[3], 2);
        ResNet {
            conv1,
            bn1: bn(w, device),
            maxpool,
            layer1,
            layer2,
            layer3,
            layer4,
            out_dim: self.out_dim(),
        }
    }
}

impl ResNet {
    /// `[batch, C, H, W]` → `[batch, out_dim]` (global average pool of the last stage).
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let x = self.forward_features(x);
        let [b, c, _, _] = x.dims();
        x.flatten::<3>(2, 3).mean_dim(2).reshape([b, c])
    }

    /// The last stage's feature map, `[batch, out_dim, H/s, W/s]` (s = 8 with the CIFAR stem,
    /// 32 with the ImageNet stem), for dense heads such as a colorization decoder.
    pub fn forward_features(&self, x: Tensor<4>) -> Tensor<4> {
        let mut x = norm(
            &self.bn1,
            conv_forward(&self.conv1, x),
            true,
            Part::Backbone,
        );
        if let Some(pool) = &self.maxpool {
            x = pool.forward(x);
        }
        for block in self
            .layer1
            .iter()
            .chain(&self.layer2)
            .chain(&self.layer3)
            .chain(&self.layer4)
        {
            x = block.forward(x);
        }
        x
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameter_counts_match_torchvision() {
        let device = Device::flex();
        // torchvision.models.resnet18(): 11,689,512 params with the 1000-way fc (513,000),
        // so 11,176,512 in the backbone; the CIFAR stem's 3×3 conv1 has 1,728 instead of 9,408.
        // Running mean/var are not parameters in PyTorch but are visited here, hence the count
        // of BN channels (4,800 per set for ResNet-18 at width 64) is subtracted.
        let r18 = ResNetConfig::new()
            .with_stem(ResNetStem::Imagenet)
            .init(&device);
        let bn_channels_r18 = 64 + (64 * 4) + (128 * 4 + 128) + (256 * 4 + 256) + (512 * 4 + 512);
        assert_eq!(r18.num_params() - 2 * bn_channels_r18, 11_176_512);
        // resnet50: 25,557,032 − fc (2048·1000 + 1000) = 23,508,032.
        let r50 = ResNetConfig::new()
            .with_depth(50)
            .with_stem(ResNetStem::Imagenet)
            .init(&device);
        assert_eq!(r50.out_dim, 2048);
        let mut bn_visitor = CountBn::default();
        r50.visit(&mut bn_visitor);
        assert_eq!(r50.num_params() - bn_visitor.running, 23_508_032);
        // Width 16 CIFAR ResNet-18: the 0.70 M backbone of the SimCLR reference recipe.
        // By hand: stem 432 + 32, layer1 9,344, layer2 33,088, layer3 131,712, layer4 525,568.
        let small = ResNetConfig::new().with_width(16).init(&device);
        let mut v = CountBn::default();
        small.visit(&mut v);
        assert_eq!(small.num_params() - v.running, 700_176);
    }

    /// Counts running-statistics elements (visited like parameters, but buffers in PyTorch).
    #[derive(Default)]
    struct CountBn {
        path: Vec<String>,
        running: usize,
    }
    impl burn::module::ModuleVisitor for CountBn {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.path.push(name.to_string());
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.path.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<D>>) {
            if self.path.last().is_some_and(|n| n.starts_with("running_")) {
                self.running += param.lazy_shape().num_elements();
            }
        }
    }

    #[test]
    fn forward_shapes() {
        let device = Device::flex();
        let x = Tensor::<4>::zeros([2, 3, 32, 32], &device);
        let r = ResNetConfig::new().with_width(8).init(&device);
        assert_eq!(r.forward(x.clone()).dims(), [2, 64]);
        let r = ResNetConfig::new()
            .with_width(8)
            .with_depth(50)
            .with_stem(ResNetStem::Imagenet)
            .init(&device);
        assert_eq!(r.forward(x).dims(), [2, 256]);
    }

    /// The network is the same function with selfsup-kernels (conv, BatchNorm+ReLU) as with
    /// burn's ops: outputs and gradients (training-mode BN) agree within float tolerance.
    #[test]
    fn kernels_and_burn_ops_give_the_same_network() {
        let device = Device::flex().autodiff();
        let net = ResNetConfig::new().with_width(4).init(&device);
        let x = Tensor::<4>::random(
            [4, 3, 16, 16],
            burn::tensor::Distribution::Normal(0.0, 1.0),
            &device,
        );
        let run = |fast: bool| {
            selfsup_kernels::set_enabled(fast);
            let y = net.forward(x.clone());
            let grads = (y.clone() * y.clone()).sum().backward();
            let stem = net.conv1.weight.val().grad(&grads).unwrap();
            let shortcut = net.layer4[0].downsample.as_ref().unwrap().conv.weight.val();
            (y.inner(), stem, shortcut.grad(&grads).unwrap())
        };
        let (y, g_stem, g_short) = run(true);
        let (y_ref, g_stem_ref, g_short_ref) = run(false);
        selfsup_kernels::set_enabled(true);
        fn rel<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> f32 {
            let d: f32 = (a - b.clone()).abs().max().into_scalar();
            d / b.abs().max().into_scalar::<f32>()
        }
        assert!(rel(y, y_ref) < 1e-4, "outputs differ");
        assert!(rel(g_stem, g_stem_ref) < 1e-3, "stem conv gradients differ");
        assert!(
            rel(g_short, g_short_ref) < 1e-3,
            "shortcut conv gradients differ"
        );
    }

    #[test]
    fn bad_depth_is_refused() {
        let err = ResNetConfig::new()
            .with_depth(19)
            .validate()
            .unwrap_err()
            .to_string();
        assert!(err.contains("18, 34 or 50"), "{err}");
    }
}
