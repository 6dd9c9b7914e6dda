//! A module's tensors as `(dotted.path, shape, f32 values)`, and back.
//!
//! Paths come from the module tree's field names (`layer1.0.conv1.weight`), which are stable
//! across runs, unlike burn's random `ParamId`s: checkpoints, optimizer state and exports key
//! on them. BatchNorm running statistics are included (they are visited like parameters).

use std::collections::BTreeMap;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::prelude::*;

/// Whether a module-tree segment names an enum variant ([`crate::Backbone::ResNet`]) rather than
/// a field. Variants are not part of tensor paths: a `backbone` field holding either
/// architecture stores its tensors as `backbone.<field path>`, as a plain `ResNet` field did,
/// so checkpoints written before the enum existed still load.
pub fn is_variant_segment(container_type: &str) -> bool {
    container_type.starts_with("Enum:")
}

/// One tensor's shape and values, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct NamedTensor {
    pub shape: Vec<usize>,
    pub values: Vec<f32>,
}

struct Collect {
    path: Vec<String>,
    out: BTreeMap<String, NamedTensor>,
}

impl ModuleVisitor for Collect {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        if !is_variant_segment(container_type) {
            self.path.push(name.to_string());
        }
    }
    fn exit_module(&mut self, _: &str, container_type: &str) {
        if !is_variant_segment(container_type) {
            self.path.pop();
        }
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let t = param.val();
        let shape = t.dims().to_vec();
        let values = t
            .into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .expect("f32 tensor data");
        self.out
            .insert(self.path.join("."), NamedTensor { shape, values });
    }
}

/// Every float tensor of `module` by dotted path.
pub fn named_tensors<M: Module>(module: &M) -> BTreeMap<String, NamedTensor> {
    let mut c = Collect {
        path: Vec::new(),
        out: BTreeMap::new(),
    };
    // burn keeps a BatchNorm's latest running statistics pending until they are synced, and a
    // visitor sees the value before them; `valid()` syncs them (and drops the autodiff graph).
    module.valid().visit(&mut c);
    c.out
}

struct Assign<'a> {
    path: Vec<String>,
    source: &'a BTreeMap<String, NamedTensor>,
    prefix: String,
    errors: Vec<String>,
    assigned: usize,
}

impl ModuleMapper for Assign<'_> {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        if !is_variant_segment(container_type) {
            self.path.push(name.to_string());
        }
    }
    fn exit_module(&mut self, _: &str, container_type: &str) {
        if !is_variant_segment(container_type) {
            self.path.pop();
        }
    }
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let name = format!("{}{}", self.prefix, self.path.join("."));
        let Some(src) = self.source.get(&name) else {
            self.errors.push(format!("missing tensor `{name}`"));
            return param;
        };
        let (id, tensor, mapper) = param.consume();
        if src.shape != tensor.dims() {
            self.errors.push(format!(
                "tensor `{name}` has shape {:?} in the file but {:?} in the model",
                src.shape,
                tensor.dims()
            ));
            return Param::from_mapped_value(id, tensor, mapper);
        }
        let require_grad = tensor.is_require_grad();
        let device = tensor.device();
        let mut value = Tensor::<D>::from_data(
            TensorData::new(src.values.clone(), src.shape.clone()),
            &device,
        );
        if require_grad {
            value = value.require_grad();
        }
        self.assigned += 1;
        Param::from_mapped_value(id, value, mapper)
    }
}

/// Replace `module`'s tensors with those named `prefix + path` in `source`. Every tensor of the
/// module must be present with its shape; extra tensors in `source` are ignored (a checkpoint
/// holds heads and optimizer state beside the backbone).
pub fn load_named_tensors<M: Module>(
    module: M,
    source: &BTreeMap<String, NamedTensor>,
    prefix: &str,
) -> Result<M, crate::ModelError> {
    let mut a = Assign {
        path: Vec::new(),
        source,
        prefix: prefix.to_string(),
        errors: Vec::new(),
        assigned: 0,
    };
    let module = module.map(&mut a);
    if !a.errors.is_empty() {
        let n = a.errors.len();
        let shown: Vec<_> = a.errors.into_iter().take(5).collect();
        return Err(crate::ModelError::Tensors(format!(
            "{n} tensor(s) do not match: {}",
            shown.join("; ")
        )));
    }
    Ok(module)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ResNetConfig, heads::MlpHeadConfig};

    #[test]
    fn paths_follow_field_names() {
        let device = Device::flex();
        let r = ResNetConfig::new().with_width(4).init(&device);
        let names = named_tensors(&r);
        for expected in [
            "conv1.weight",
            "bn1.gamma",
            "bn1.running_var",
            "layer1.0.conv1.weight",
            "layer2.0.downsample.conv.weight",
            "layer4.1.bn2.beta",
        ] {
            assert!(
                names.contains_key(expected),
                "{expected} not in {:?}",
                names.keys().collect::<Vec<_>>()
            );
        }
    }

    #[test]
    fn latest_batchnorm_statistics_are_collected() {
        let device = Device::flex().autodiff();
        let head = MlpHeadConfig::new(vec![3, 4, 2]).init(&device);
        let before = named_tensors(&head)["layers.0.bn.running_mean"]
            .values
            .clone();
        let x = Tensor::<2>::from_data(
            TensorData::new((0..24).map(|v| v as f32).collect::<Vec<_>>(), [8, 3]),
            &device,
        );
        let _ = head.forward(x);
        let after = named_tensors(&head)["layers.0.bn.running_mean"]
            .values
            .clone();
        assert_ne!(
            before, after,
            "a training forward pass must move the running mean"
        );
    }

    #[test]
    fn round_trip_restores_values_and_reports_mismatches() {
        let device = Device::flex();
        let a = MlpHeadConfig::new(vec![6, 5, 3]).init(&device);
        let b = MlpHeadConfig::new(vec![6, 5, 3]).init(&device);
        let src = named_tensors(&a);
        let b = load_named_tensors(b, &src, "").unwrap();
        assert_eq!(named_tensors(&b), src);

        let wrong = MlpHeadConfig::new(vec![6, 4, 3]).init(&device);
        let err = load_named_tensors(wrong, &src, "").unwrap_err().to_string();
        assert!(err.contains("layers.0.linear.weight"), "{err}");
        let err = load_named_tensors(
            MlpHeadConfig::new(vec![6, 5, 3]).init(&device),
            &src,
            "backbone.",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("missing tensor `backbone.layers.0.linear.weight`"),
            "{err}"
        );
    }
}
