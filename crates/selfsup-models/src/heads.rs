//! MLP heads: projection heads (SimCLR, MoCo v2, BYOL, …) and prediction heads.
//!
//! A head is a stack of Linear layers; every layer but the last is followed by optional
//! BatchNorm and a ReLU. As in LightlySSL, a Linear followed by BatchNorm has no bias (the BN
//! shift makes it redundant).

use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::relu;

#[derive(Config, Debug)]
pub struct MlpHeadConfig {
    /// Layer widths, input first: `[128, 128, 128]` is Linear(128,128)-BN-ReLU-Linear(128,128).
    pub dims: Vec<usize>,
    /// BatchNorm after each hidden Linear.
    #[config(default = true)]
    pub batch_norm: bool,
    /// BatchNorm (without affine learning is not offered by burn, so with it) after the last
    /// Linear too, as SimSiam and Barlow Twins projectors do.
    #[config(default = false)]
    pub last_batch_norm: bool,
}

#[derive(Module, Debug)]
pub struct MlpLayer {
    pub linear: Linear,
    pub bn: Option<BatchNorm>,
}

#[derive(Module, Debug)]
pub struct MlpHead {
    pub layers: Vec<MlpLayer>,
}

impl MlpHeadConfig {
    /// A head on `input`-wide features with layer widths `dims` (hidden…, output).
    pub fn on(input: usize, dims: &[usize]) -> Self {
        Self::new([&[input], dims].concat())
    }

    /// LightlySSL's `SimCLRProjectionHead(input, hidden, output)` with 2 layers.
    pub fn simclr(input: usize, hidden: usize, output: usize) -> Self {
        Self::new(vec![input, hidden, output])
    }

    pub fn validate(&self) -> Result<(), crate::ModelError> {
        if self.dims.len() < 2 {
            return Err(crate::ModelError::Config(format!(
                "a head needs at least an input and an output width, got {:?}",
                self.dims
            )));
        }
        if self.dims.contains(&0) {
            return Err(crate::ModelError::Config(format!(
                "head widths must be positive, got {:?}",
                self.dims
            )));
        }
        Ok(())
    }

    pub fn init(&self, device: &Device) -> MlpHead {
        self.validate().expect("valid head config");
        let n = self.dims.len() - 1;
        let layers = (0..n)
            .map(|i| {
                let last = i + 1 == n;
                let with_bn = if last {
                    self.last_batch_norm
                } else {
                    self.batch_norm
                };
                MlpLayer {
                    linear: LinearConfig::new(self.dims[i], self.dims[i + 1])
                        .with_bias(!with_bn)
                        .init(device),
                    bn: with_bn.then(|| BatchNormConfig::new(self.dims[i + 1]).init(device)),
                }
            })
            .collect();
        MlpHead { layers }
    }
}

impl MlpHead {
    pub fn forward(&self, mut x: Tensor<2>) -> Tensor<2> {
        let n = self.layers.len();
        for (i, layer) in self.layers.iter().enumerate() {
            x = layer.linear.forward(x);
            if let Some(bn) = &layer.bn {
                x = crate::norm::batch_norm_1d(bn, x, crate::norm::Part::Head);
            }
            if i + 1 < n {
                x = relu(x);
            }
        }
        x
    }

    pub fn out_dim(&self) -> usize {
        let w = &self.layers.last().expect("head has layers").linear.weight;
        w.lazy_shape().dims::<2>()[1]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simclr_head_matches_lightly_layout() {
        let device = Device::flex();
        let head = MlpHeadConfig::simclr(128, 128, 64).init(&device);
        // Linear(128,128, no bias) + BN(128) + Linear(128,64, bias).
        assert!(head.layers[0].linear.bias.is_none());
        assert!(head.layers[0].bn.is_some());
        assert!(head.layers[1].linear.bias.is_some());
        assert!(head.layers[1].bn.is_none());
        assert_eq!(head.out_dim(), 64);
        let y = head.forward(Tensor::<2>::ones([4, 128], &device));
        assert_eq!(y.dims(), [4, 64]);
    }

    #[test]
    fn too_few_dims_is_refused() {
        assert!(MlpHeadConfig::new(vec![128]).validate().is_err());
    }
}
