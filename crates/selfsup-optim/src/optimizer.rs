//! SGD (momentum, Nesterov), LARS, Adam and AdamW over a burn module, with exportable state.

use std::collections::{BTreeMap, HashMap};

use burn::module::{Module, ModuleMapper, Param, ParamId};
use burn::optim::GradientsParams;
use burn::prelude::*;

/// ε in LARS' trust ratio denominator, as in `lightly.utils.lars.LARS` and solo-learn.
pub const LARS_EPS: f64 = 1e-8;

/// The update rule and its own hyper-parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum OptimizerKind {
    /// `torch.optim.SGD` (dampening 0): `buf = μ·buf + (g + wd·p)`, `p -= lr·buf`
    /// (Nesterov: `p -= lr·(g + wd·p + μ·buf)`). `momentum == 0` keeps no buffer.
    Sgd { momentum: f64, nesterov: bool },
    /// LARS as in `lightly.utils.lars.LARS` / solo-learn: for adapted parameters
    /// `d = η·‖p‖/(‖g‖ + wd·‖p‖ + ε) · (g + wd·p)` (left as `g` when ‖p‖ or ‖g‖ is 0), then
    /// SGD momentum on `d`. Excluded parameters (see [`OptimizerConfig::exclude_bias_and_norm`])
    /// get `d = g`: no trust ratio and no weight decay.
    ///
    /// Unlike lightly, which skips the adaptation of any parameter whose group has
    /// `weight_decay == 0`, adaptation here depends only on the exclusion rule (as in solo-learn);
    /// the two agree whenever `weight_decay > 0`.
    ///
    /// `clip` is solo-learn's `clip_lr`: the trust ratio becomes `min(trust, lr) / lr`, so each
    /// layer steps by `min(trust, lr)·(g + wd·p)` — the scheduled `lr` caps the layer-wise rate
    /// instead of scaling it (solo-learn's CIFAR recipes for BYOL, Barlow Twins and DINO).
    Lars { momentum: f64, eta: f64, clip: bool },
    /// `torch.optim.Adam`: weight decay is an L2 term added to the gradient (`g + wd·p`, which
    /// then enters both moments), Adam moments with bias correction,
    /// `p -= lr/(1-β1^t) · m / (sqrt(v)/sqrt(1-β2^t) + eps)`. With `weight_decay == 0` it is
    /// the same update as [`AdamW`](Self::AdamW).
    Adam { beta1: f64, beta2: f64, eps: f64 },
    /// `torch.optim.AdamW`: `p *= 1 - lr·wd`, Adam moments with bias correction,
    /// `p -= lr/(1-β1^t) · m / (sqrt(v)/sqrt(1-β2^t) + eps)`.
    AdamW { beta1: f64, beta2: f64, eps: f64 },
}

/// What to build an [`Optimizer`] from; validated by [`OptimizerConfig::init`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OptimizerConfig {
    pub kind: OptimizerKind,
    pub weight_decay: f64,
    /// Put 1-D parameters (biases, BatchNorm/LayerNorm γ and β) in a group with no weight decay
    /// and, for LARS, no trust-ratio adaptation — the usual SimCLR/BYOL recipe.
    pub exclude_bias_and_norm: bool,
}

/// A rejected optimizer hyper-parameter: the field's name and its value.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field} must be {expected}, got {value}")]
pub struct OptimizerConfigError {
    pub field: &'static str,
    pub value: f64,
    pub expected: &'static str,
}

fn check(
    field: &'static str,
    value: f64,
    expected: &'static str,
    ok: bool,
) -> Result<(), OptimizerConfigError> {
    if value.is_finite() && ok {
        Ok(())
    } else {
        Err(OptimizerConfigError {
            field,
            value,
            expected,
        })
    }
}

impl OptimizerConfig {
    /// SGD with momentum 0.9 and no Nesterov term: the CIFAR ResNet recipe of SimCLR and of
    /// supervised fine-tuning.
    pub fn sgd_momentum(weight_decay: f64, exclude_bias_and_norm: bool) -> Self {
        OptimizerConfig {
            kind: OptimizerKind::Sgd {
                momentum: 0.9,
                nesterov: false,
            },
            weight_decay,
            exclude_bias_and_norm,
        }
    }

    /// Validates the hyper-parameters and builds an optimizer with empty state.
    pub fn init(self) -> Result<Optimizer, OptimizerConfigError> {
        let wd = self.weight_decay;
        check("weight_decay", wd, "finite and >= 0", wd >= 0.0)?;
        match self.kind {
            OptimizerKind::Sgd { momentum, .. } => check(
                "momentum",
                momentum,
                "in [0, 1)",
                (0.0..1.0).contains(&momentum),
            )?,
            OptimizerKind::Lars { momentum, eta, .. } => {
                check(
                    "momentum",
                    momentum,
                    "in [0, 1)",
                    (0.0..1.0).contains(&momentum),
                )?;
                check("eta", eta, "finite and > 0", eta > 0.0)?;
            }
            OptimizerKind::Adam { beta1, beta2, eps }
            | OptimizerKind::AdamW { beta1, beta2, eps } => {
                check("beta1", beta1, "in [0, 1)", (0.0..1.0).contains(&beta1))?;
                check("beta2", beta2, "in [0, 1)", (0.0..1.0).contains(&beta2))?;
                check("eps", eps, "finite and >= 0", eps >= 0.0)?;
            }
        }
        Ok(Optimizer {
            config: self,
            states: HashMap::new(),
            pending: BTreeMap::new(),
        })
    }
}

/// Exported optimizer state: `"<module path>.<field>"` → (shape, values). Fields are
/// `step` (shape `[]`, the number of updates this parameter has had), `momentum_buffer`
/// (SGD/LARS with momentum > 0), `exp_avg` and `exp_avg_sq` (Adam, AdamW).
pub type StateDict = BTreeMap<String, (Vec<usize>, Vec<f32>)>;

/// Why [`Optimizer::load_state_dict`] refused a state dict.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StateDictError {
    /// The key has no `.` or names a field this optimizer kind does not keep.
    #[error("optimizer state: unknown key {0:?}")]
    UnknownKey(String),
    /// A parameter's buffers lack its `step` entry, or a buffer this kind needs is missing.
    #[error("optimizer state: missing entry {0:?}")]
    Missing(String),
    /// The values do not fill the shape, buffers of one parameter disagree, or a step is not a
    /// non-negative integer.
    #[error("optimizer state: malformed entry {0:?}")]
    Malformed(String),
}

/// One parameter's state. Buffers are flattened to 1-D on the parameter's (inner) device and
/// reshaped to the parameter's shape when used.
#[derive(Clone)]
struct ParamState {
    path: String,
    shape: Vec<usize>,
    step: u64,
    momentum_buffer: Option<Tensor<1>>,
    exp_avg: Option<Tensor<1>>,
    exp_avg_sq: Option<Tensor<1>>,
}

/// State loaded from a [`StateDict`] whose parameter has not been stepped yet (its ParamId is
/// only known once the module is walked).
#[derive(Clone, Debug, PartialEq)]
struct HostState {
    shape: Vec<usize>,
    step: u64,
    buffers: BTreeMap<&'static str, Vec<f32>>,
}

/// Largest step count an f32 holds exactly.
const MAX_EXACT_STEP: u64 = 1 << 24;

/// Updates a module's parameters from their gradients; see [`OptimizerKind`] for the rules.
#[derive(Clone)]
pub struct Optimizer {
    config: OptimizerConfig,
    states: HashMap<ParamId, ParamState>,
    pending: BTreeMap<String, HostState>,
}

impl Optimizer {
    pub fn config(&self) -> &OptimizerConfig {
        &self.config
    }

    /// One update of every parameter of `module` that has a gradient in `grads`, with learning
    /// rate `lr`. Parameters without a gradient are left untouched (their state too).
    ///
    /// Panics if `lr` is negative or not finite, or if state loaded by
    /// [`load_state_dict`](Self::load_state_dict) does not fit the parameter at its path.
    pub fn step<M: Module>(&mut self, lr: f64, module: M, mut grads: GradientsParams) -> M {
        assert!(
            lr.is_finite() && lr >= 0.0,
            "lr must be finite and >= 0, got {lr}"
        );
        let mut mapper = StepMapper {
            optim: self,
            lr,
            grads: &mut grads,
            path: Vec::new(),
        };
        module.map(&mut mapper)
    }

    /// The state of every parameter stepped so far (plus loaded state not yet used), keyed by
    /// module path; see [`StateDict`]. Panics past 2^24 steps, where an f32 step stops being exact.
    pub fn state_dict(&self) -> StateDict {
        let mut out = StateDict::new();
        let put_step = |out: &mut StateDict, path: &str, step: u64| {
            assert!(
                step <= MAX_EXACT_STEP,
                "optimizer step {step} of {path} exceeds 2^24"
            );
            out.insert(format!("{path}.step"), (vec![], vec![step as f32]));
        };
        for (path, host) in &self.pending {
            put_step(&mut out, path, host.step);
            for (field, values) in &host.buffers {
                out.insert(
                    format!("{path}.{field}"),
                    (host.shape.clone(), values.clone()),
                );
            }
        }
        for state in self.states.values() {
            put_step(&mut out, &state.path, state.step);
            for (field, buffer) in state.buffers() {
                let values = buffer.clone().into_data().try_to_vec_as::<f32>().unwrap();
                out.insert(
                    format!("{}.{field}", state.path),
                    (state.shape.clone(), values),
                );
            }
        }
        out
    }

    /// Replaces all state with `state` (from [`state_dict`](Self::state_dict)). Each parameter's
    /// entry is attached on the next [`step`](Self::step) to the parameter at the same module path.
    pub fn load_state_dict(&mut self, state: &StateDict) -> Result<(), StateDictError> {
        let fields = self.buffer_fields();
        let mut pending: BTreeMap<String, HostState> = BTreeMap::new();
        let mut steps: BTreeMap<String, u64> = BTreeMap::new();
        for (key, (shape, values)) in state {
            let (path, field) = key
                .rsplit_once('.')
                .ok_or_else(|| StateDictError::UnknownKey(key.clone()))?;
            if shape.iter().product::<usize>() != values.len() {
                return Err(StateDictError::Malformed(key.clone()));
            }
            if field == "step" {
                let step = values[0];
                if !(step >= 0.0 && step.fract() == 0.0 && shape.is_empty()) {
                    return Err(StateDictError::Malformed(key.clone()));
                }
                steps.insert(path.to_string(), step as u64);
                continue;
            }
            let field = *fields
                .iter()
                .find(|f| **f == field)
                .ok_or_else(|| StateDictError::UnknownKey(key.clone()))?;
            let host = pending
                .entry(path.to_string())
                .or_insert_with(|| HostState {
                    shape: shape.clone(),
                    step: 0,
                    buffers: BTreeMap::new(),
                });
            if host.shape != *shape {
                return Err(StateDictError::Malformed(key.clone()));
            }
            host.buffers.insert(field, values.clone());
        }
        for (path, host) in pending.iter_mut() {
            host.step = *steps
                .get(path)
                .ok_or_else(|| StateDictError::Missing(format!("{path}.step")))?;
            if let Some(missing) = fields.iter().find(|f| !host.buffers.contains_key(*f)) {
                return Err(StateDictError::Missing(format!("{path}.{missing}")));
            }
        }
        // A step with no buffers: a parameter whose kind keeps none (SGD without momentum).
        for (path, step) in steps {
            if let std::collections::btree_map::Entry::Vacant(slot) = pending.entry(path) {
                if let Some(field) = fields.first() {
                    return Err(StateDictError::Missing(format!("{}.{field}", slot.key())));
                }
                slot.insert(HostState {
                    shape: vec![],
                    step,
                    buffers: BTreeMap::new(),
                });
            }
        }
        self.states.clear();
        self.pending = pending;
        Ok(())
    }

    /// The buffers this optimizer kind keeps per parameter.
    fn buffer_fields(&self) -> &'static [&'static str] {
        match self.config.kind {
            OptimizerKind::Sgd { momentum, .. } | OptimizerKind::Lars { momentum, .. }
                if momentum == 0.0 =>
            {
                &[]
            }
            OptimizerKind::Sgd { .. } | OptimizerKind::Lars { .. } => &["momentum_buffer"],
            OptimizerKind::Adam { .. } | OptimizerKind::AdamW { .. } => &["exp_avg", "exp_avg_sq"],
        }
    }

    /// State for a parameter seen for the first time: loaded state at its path, or empty.
    fn new_state(&mut self, path: String, shape: Vec<usize>, device: &Device) -> ParamState {
        let Some(host) = self.pending.remove(&path) else {
            return ParamState {
                path,
                shape,
                step: 0,
                momentum_buffer: None,
                exp_avg: None,
                exp_avg_sq: None,
            };
        };
        let numel: usize = shape.iter().product();
        let to_tensor = |field: &str| {
            host.buffers.get(field).map(|values| {
                assert!(
                    values.len() == numel,
                    "optimizer state {path}.{field} has shape {:?} but the parameter has shape {shape:?}",
                    host.shape
                );
                Tensor::<1>::from_data(TensorData::new(values.clone(), [numel]), device)
            })
        };
        ParamState {
            momentum_buffer: to_tensor("momentum_buffer"),
            exp_avg: to_tensor("exp_avg"),
            exp_avg_sq: to_tensor("exp_avg_sq"),
            step: host.step,
            shape,
            path,
        }
    }

    /// The update rule on plain (non-autodiff) tensors: returns the new parameter value.
    fn update<const D: usize>(
        &self,
        state: &mut ParamState,
        lr: f64,
        param: Tensor<D>,
        grad: Tensor<D>,
    ) -> Tensor<D> {
        let excluded = self.config.exclude_bias_and_norm && D == 1;
        let wd = if excluded {
            0.0
        } else {
            self.config.weight_decay
        };
        let dims = param.dims();
        let numel = dims.iter().product::<usize>();
        let unflat = |t: &Tensor<1>| t.clone().reshape(dims);
        let flat = |t: Tensor<D>| t.reshape([numel]);
        state.step += 1;

        match self.config.kind {
            OptimizerKind::Sgd { momentum, nesterov } => {
                let d = with_weight_decay(grad, &param, wd);
                let d = momentum_step(state, d, momentum, nesterov, unflat, flat);
                param - d.mul_scalar(lr)
            }
            OptimizerKind::Lars {
                momentum,
                eta,
                clip,
            } => {
                let d = if excluded {
                    grad
                } else {
                    lars_direction(param.clone(), grad, wd, eta, clip.then_some(lr))
                };
                let d = momentum_step(state, d, momentum, false, unflat, flat);
                param - d.mul_scalar(lr)
            }
            OptimizerKind::Adam { beta1, beta2, eps } => {
                let grad = with_weight_decay(grad, &param, wd);
                let update = adam_update(state, grad, lr, [beta1, beta2, eps], unflat, flat);
                param - update
            }
            OptimizerKind::AdamW { beta1, beta2, eps } => {
                let param = if wd != 0.0 {
                    param.mul_scalar(1.0 - lr * wd)
                } else {
                    param
                };
                let update = adam_update(state, grad, lr, [beta1, beta2, eps], unflat, flat);
                param - update
            }
        }
    }
}

/// Adam's moments with bias correction (PyTorch's single-tensor `adam`): updates the moments in
/// `state` and returns `lr/(1-β1^t) · m / (sqrt(v)/sqrt(1-β2^t) + eps)`, to subtract from the
/// parameter.
fn adam_update<const D: usize>(
    state: &mut ParamState,
    grad: Tensor<D>,
    lr: f64,
    [beta1, beta2, eps]: [f64; 3],
    unflat: impl Fn(&Tensor<1>) -> Tensor<D>,
    flat: impl Fn(Tensor<D>) -> Tensor<1>,
) -> Tensor<D> {
    let m = match state.exp_avg.as_ref() {
        Some(m) => unflat(m).mul_scalar(beta1) + grad.clone().mul_scalar(1.0 - beta1),
        None => grad.clone().mul_scalar(1.0 - beta1),
    };
    let v = match state.exp_avg_sq.as_ref() {
        Some(v) => unflat(v).mul_scalar(beta2) + grad.square().mul_scalar(1.0 - beta2),
        None => grad.square().mul_scalar(1.0 - beta2),
    };
    let t = state.step as i32;
    let bias_correction1 = 1.0 - beta1.powi(t);
    let bias_correction2 = 1.0 - beta2.powi(t);
    let denom = v
        .clone()
        .sqrt()
        .div_scalar(bias_correction2.sqrt())
        .add_scalar(eps);
    let update = (m.clone() / denom).mul_scalar(lr / bias_correction1);
    state.exp_avg = Some(flat(m));
    state.exp_avg_sq = Some(flat(v));
    update
}

impl ParamState {
    fn buffers(&self) -> impl Iterator<Item = (&'static str, &Tensor<1>)> {
        [
            ("momentum_buffer", &self.momentum_buffer),
            ("exp_avg", &self.exp_avg),
            ("exp_avg_sq", &self.exp_avg_sq),
        ]
        .into_iter()
        .filter_map(|(name, t)| t.as_ref().map(|t| (name, t)))
    }
}

fn with_weight_decay<const D: usize>(grad: Tensor<D>, param: &Tensor<D>, wd: f64) -> Tensor<D> {
    if wd != 0.0 {
        grad + param.clone().mul_scalar(wd)
    } else {
        grad
    }
}

/// Heavy-ball momentum with dampening 0; the first buffer is the direction itself (PyTorch).
fn momentum_step<const D: usize>(
    state: &mut ParamState,
    d: Tensor<D>,
    momentum: f64,
    nesterov: bool,
    unflat: impl Fn(&Tensor<1>) -> Tensor<D>,
    flat: impl Fn(Tensor<D>) -> Tensor<1>,
) -> Tensor<D> {
    if momentum == 0.0 {
        return d;
    }
    let buf = match state.momentum_buffer.as_ref() {
        Some(buf) => unflat(buf).mul_scalar(momentum) + d.clone(),
        None => d.clone(),
    };
    state.momentum_buffer = Some(flat(buf.clone()));
    if nesterov {
        d + buf.mul_scalar(momentum)
    } else {
        buf
    }
}

/// LARS' scaled direction, computed on the device (no host sync per parameter): where both norms
/// are non-zero `trust · (g + wd·p)` with `trust = η‖p‖/(‖g‖ + wd‖p‖ + ε)` (with `clip_lr`:
/// `min(trust / lr, 1)`), otherwise the raw gradient.
fn lars_direction<const D: usize>(
    param: Tensor<D>,
    grad: Tensor<D>,
    wd: f64,
    eta: f64,
    clip_lr: Option<f64>,
) -> Tensor<D> {
    let p_norm = param.clone().square().sum().sqrt();
    let g_norm = grad.clone().square().sum().sqrt();
    let adapt = p_norm
        .clone()
        .greater_elem(0.0)
        .bool_and(g_norm.clone().greater_elem(0.0));
    let trust =
        p_norm.clone().mul_scalar(eta) / (g_norm + p_norm.mul_scalar(wd)).add_scalar(LARS_EPS);
    let trust = match clip_lr {
        Some(lr) => trust.div_scalar(lr).clamp_max(1.0),
        None => trust,
    };
    let trust = trust.mask_where(adapt.clone().bool_not(), Tensor::ones([1], &param.device()));
    let wd_used = Tensor::<1>::zeros([1], &param.device())
        .add_scalar(wd)
        .mask_fill(adapt.bool_not(), 0.0);
    let trust: Tensor<D> = trust.reshape([1; D]);
    let wd_used: Tensor<D> = wd_used.reshape([1; D]);
    (grad + param * wd_used) * trust
}

struct StepMapper<'a> {
    optim: &'a mut Optimizer,
    lr: f64,
    grads: &'a mut GradientsParams,
    path: Vec<String>,
}

/// Whether a module-tree segment names an enum variant rather than a field: the rule of
/// `selfsup_models::named::is_variant_segment` (which this bottom-layer crate cannot import;
/// selfsup-methods' `optimizer_state_keys_are_checkpoint_paths` test checks the two agree).
fn is_variant_segment(container_type: &str) -> bool {
    container_type.starts_with("Enum:")
}

impl ModuleMapper for StepMapper<'_> {
    // Paths as in checkpoints (enum variants skipped), so state keys match `model.*` names.
    fn enter_module(&mut self, name: &str, container_type: &str) {
        if !is_variant_segment(container_type) {
            self.path.push(name.to_string());
        }
    }

    fn exit_module(&mut self, _name: &str, container_type: &str) {
        if !is_variant_segment(container_type) {
            self.path.pop();
        }
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let (id, tensor, mapper) = param.consume();
        let Some(grad) = self.grads.remove::<D>(id) else {
            return Param::from_mapped_value(id, tensor, mapper);
        };
        // Autodiff attributes of the parameter, restored on the updated value.
        let was_autodiff = tensor.is_autodiff();
        let require_grad = tensor.is_require_grad();
        let distributed = tensor.is_distributed();
        let checkpointing = tensor.gradient_checkpointing_strategy();

        let value = tensor.inner();
        let grad = grad.inner().to_device(&value.device());
        let mut state = match self.optim.states.remove(&id) {
            Some(state) => state,
            None => {
                let path = self.path.join(".");
                self.optim
                    .new_state(path, value.dims().to_vec(), &value.device())
            }
        };
        let updated = self.optim.update(&mut state, self.lr, value, grad);
        self.optim.states.insert(id, state);

        let updated = if was_autodiff {
            let mut t = Tensor::from_inner(updated);
            if let Some(strategy) = checkpointing {
                t = t.with_gradient_checkpointing_strategy(strategy);
            }
            if require_grad {
                t = t.require_grad();
            }
            if distributed {
                t = t.set_distributed(id);
            }
            t
        } else {
            updated
        };
        Param::from_mapped_value(id, updated, mapper)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig};
    use serde_json::Value;

    /// Mirrors the parameters of `fixtures/make_optim_fixtures.py`.
    #[derive(Module, Debug)]
    struct Net {
        linear: Linear,
        norm: BatchNorm,
    }

    impl Net {
        fn forward(&self, x: Tensor<2>) -> Tensor<2> {
            self.norm.forward(self.linear.forward(x))
        }
    }

    fn fixture() -> Value {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/optim.json");
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    fn floats(v: &Value) -> Vec<f32> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect()
    }

    fn tensor<const D: usize>(values: &Value, shape: [usize; D], device: &Device) -> Tensor<D> {
        Tensor::from_data(TensorData::new(floats(values), shape), device)
    }

    fn net(fx: &Value, device: &Device) -> Net {
        let init = &fx["init"];
        let mut linear = LinearConfig::new(3, 4).init(device);
        linear.weight =
            Param::from_tensor(tensor(&init["linear.weight"], [3, 4], device).require_grad());
        linear.bias = Some(Param::from_tensor(
            tensor(&init["linear.bias"], [4], device).require_grad(),
        ));
        let mut norm = BatchNormConfig::new(4).init(device);
        norm.gamma = Param::from_tensor(tensor(&init["norm.gamma"], [4], device).require_grad());
        norm.beta = Param::from_tensor(tensor(&init["norm.beta"], [4], device).require_grad());
        Net { linear, norm }
    }

    /// The fixture's gradients for one step, registered under the net's ParamIds.
    fn grads(net: &Net, step: &Value) -> GradientsParams {
        let device = net.linear.weight.val().inner().device();
        let mut grads = GradientsParams::new();
        grads.register(
            net.linear.weight.id,
            tensor(&step["linear.weight"], [3, 4], &device),
        );
        grads.register(
            net.linear.bias.as_ref().unwrap().id,
            tensor(&step["linear.bias"], [4], &device),
        );
        grads.register(net.norm.gamma.id, tensor(&step["norm.gamma"], [4], &device));
        grads.register(net.norm.beta.id, tensor(&step["norm.beta"], [4], &device));
        grads
    }

    fn values<const D: usize>(p: &Param<Tensor<D>>) -> Vec<f32> {
        p.val().into_data().try_to_vec::<f32>().unwrap()
    }

    fn config(case: &Value) -> OptimizerConfig {
        let f = |k: &str| case[k].as_f64().unwrap();
        let kind = match case["kind"].as_str().unwrap() {
            "sgd" => OptimizerKind::Sgd {
                momentum: f("momentum"),
                nesterov: case["nesterov"].as_bool().unwrap(),
            },
            "lars" => OptimizerKind::Lars {
                momentum: f("momentum"),
                eta: f("eta"),
                clip: case["clip"].as_bool().unwrap_or(false),
            },
            "adam" => OptimizerKind::Adam {
                beta1: f("beta1"),
                beta2: f("beta2"),
                eps: f("eps"),
            },
            "adamw" => OptimizerKind::AdamW {
                beta1: f("beta1"),
                beta2: f("beta2"),
                eps: f("eps"),
            },
            other => panic!("unknown kind {other}"),
        };
        OptimizerConfig {
            kind,
            weight_decay: f("weight_decay"),
            exclude_bias_and_norm: case["exclude_bias_and_norm"].as_bool().unwrap(),
        }
    }

    fn assert_close(what: &str, got: &[f32], want: &[f32]) {
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!(
                (g - w).abs() <= 1e-5 * (1.0 + w.abs()),
                "{what}[{i}]: got {g}, want {w}"
            );
        }
    }

    #[test]
    fn matches_torch_and_lightly_over_three_steps() {
        let fx = fixture();
        let device = Device::flex().autodiff();
        for case in fx["cases"].as_array().unwrap() {
            let name = case["name"].as_str().unwrap();
            let mut optim = config(case).init().unwrap();
            let mut model = net(&fx, &device);
            for (t, lr) in case["lr"].as_array().unwrap().iter().enumerate() {
                let g = grads(&model, &fx["grads"][t]);
                model = optim.step(lr.as_f64().unwrap(), model, g);
                let want = &case["after"][t];
                assert_close(
                    &format!("{name} step {t} linear.weight"),
                    &values(&model.linear.weight),
                    &floats(&want["linear.weight"]),
                );
                assert_close(
                    &format!("{name} step {t} linear.bias"),
                    &values(model.linear.bias.as_ref().unwrap()),
                    &floats(&want["linear.bias"]),
                );
                assert_close(
                    &format!("{name} step {t} norm.gamma"),
                    &values(&model.norm.gamma),
                    &floats(&want["norm.gamma"]),
                );
                assert_close(
                    &format!("{name} step {t} norm.beta"),
                    &values(&model.norm.beta),
                    &floats(&want["norm.beta"]),
                );
            }
        }
    }

    #[test]
    fn state_dict_round_trip_resumes_bit_exactly() {
        let fx = fixture();
        let device = Device::flex().autodiff();
        let lrs = [0.1, 0.05, 0.2];
        for case in fx["cases"].as_array().unwrap() {
            let cfg = config(case);
            // Uninterrupted: three steps.
            let mut optim = cfg.init().unwrap();
            let mut straight = net(&fx, &device);
            for (t, lr) in lrs.iter().enumerate() {
                let g = grads(&straight, &fx["grads"][t]);
                straight = optim.step(*lr, straight, g);
            }
            // Two steps, then "checkpoint": a fresh module (new ParamIds) and a fresh optimizer.
            let mut optim = cfg.init().unwrap();
            let mut model = net(&fx, &device);
            for (t, lr) in lrs[..2].iter().enumerate() {
                let g = grads(&model, &fx["grads"][t]);
                model = optim.step(*lr, model, g);
            }
            let saved = optim.state_dict();
            assert_eq!(saved["linear.weight.step"], (vec![], vec![2.0]));
            let mut resumed_model = net(&fx, &device);
            resumed_model.linear.weight = Param::from_tensor(model.linear.weight.val());
            resumed_model.linear.bias = Some(Param::from_tensor(
                model.linear.bias.as_ref().unwrap().val(),
            ));
            resumed_model.norm.gamma = Param::from_tensor(model.norm.gamma.val());
            resumed_model.norm.beta = Param::from_tensor(model.norm.beta.val());
            let mut resumed = cfg.init().unwrap();
            resumed.load_state_dict(&saved).unwrap();
            assert_eq!(
                resumed.state_dict(),
                saved,
                "loaded state exports unchanged before use"
            );
            let g = grads(&resumed_model, &fx["grads"][2]);
            resumed_model = resumed.step(lrs[2], resumed_model, g);
            let name = case["name"].as_str().unwrap();
            assert_eq!(
                values(&resumed_model.linear.weight),
                values(&straight.linear.weight),
                "{name}"
            );
            assert_eq!(
                values(&resumed_model.norm.gamma),
                values(&straight.norm.gamma),
                "{name}"
            );
            assert_eq!(
                resumed.state_dict(),
                optim_state_after_three(&cfg, &fx, &lrs),
                "{name}"
            );
        }
    }

    fn optim_state_after_three(cfg: &OptimizerConfig, fx: &Value, lrs: &[f64]) -> StateDict {
        let mut optim = cfg.init().unwrap();
        let mut model = net(fx, &Device::flex().autodiff());
        for (t, lr) in lrs.iter().enumerate() {
            let g = grads(&model, &fx["grads"][t]);
            model = optim.step(*lr, model, g);
        }
        optim.state_dict()
    }

    #[test]
    fn state_dict_keys_are_module_paths() {
        let fx = fixture();
        let device = Device::flex().autodiff();
        let cfg = OptimizerConfig {
            kind: OptimizerKind::AdamW {
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
            },
            weight_decay: 0.0,
            exclude_bias_and_norm: true,
        };
        let mut optim = cfg.init().unwrap();
        let model = net(&fx, &device);
        let g = grads(&model, &fx["grads"][0]);
        optim.step(0.1, model, g);
        let keys: Vec<String> = optim.state_dict().into_keys().collect();
        let mut want = Vec::new();
        for p in ["linear.bias", "linear.weight", "norm.beta", "norm.gamma"] {
            for f in ["exp_avg", "exp_avg_sq", "step"] {
                want.push(format!("{p}.{f}"));
            }
        }
        assert_eq!(keys, want);
        assert_eq!(optim.state_dict()["linear.weight.exp_avg"].0, vec![3, 4]);
    }

    #[test]
    fn trains_from_backward_gradients_and_keeps_require_grad() {
        let fx = fixture();
        let device = Device::flex().autodiff();
        let cfg = OptimizerConfig {
            kind: OptimizerKind::Lars {
                momentum: 0.9,
                eta: 0.02,
                clip: true,
            },
            weight_decay: 1e-4,
            exclude_bias_and_norm: true,
        };
        let mut optim = cfg.init().unwrap();
        let mut model = net(&fx, &device);
        let x = Tensor::<2>::from_data(
            TensorData::new((0..24).map(|i| (i as f32 * 0.37).sin()).collect(), [8, 3]),
            &device,
        );
        let target = Tensor::<2>::zeros([8, 4], &device).add_scalar(0.5);
        let loss_of = |m: &Net| (m.forward(x.clone()) - target.clone()).square().mean();
        let first = loss_of(&model).into_scalar::<f32>();
        for _ in 0..20 {
            let loss = loss_of(&model);
            let g = GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(0.5, model, g);
        }
        assert!(model.linear.weight.val().is_require_grad());
        let last = loss_of(&model).into_scalar::<f32>();
        assert!(last < first, "loss went from {first} to {last}");
    }

    /// Without weight decay, Adam's L2 term and AdamW's decoupled decay both vanish: the two
    /// kinds must give the same bits. With decay they differ (the fixture's `adam_*` cases are
    /// `torch.optim.Adam`, the `adamw_*` ones `torch.optim.AdamW`).
    #[test]
    fn adam_without_weight_decay_is_adamw() {
        let fx = fixture();
        let device = Device::flex().autodiff();
        let run = |kind, weight_decay| {
            let mut optim = OptimizerConfig {
                kind,
                weight_decay,
                exclude_bias_and_norm: false,
            }
            .init()
            .unwrap();
            let mut model = net(&fx, &device);
            for (t, lr) in [0.01, 0.005, 0.02].into_iter().enumerate() {
                let g = grads(&model, &fx["grads"][t]);
                model = optim.step(lr, model, g);
            }
            (values(&model.linear.weight), optim.state_dict())
        };
        let (beta1, beta2, eps) = (0.9, 0.999, 1e-8);
        let adam = OptimizerKind::Adam { beta1, beta2, eps };
        let adamw = OptimizerKind::AdamW { beta1, beta2, eps };
        assert_eq!(run(adam, 0.0), run(adamw, 0.0));
        assert_ne!(run(adam, 0.1).0, run(adamw, 0.1).0);
    }

    #[test]
    fn config_errors_name_the_field() {
        let bad = |kind, weight_decay| {
            OptimizerConfig {
                kind,
                weight_decay,
                exclude_bias_and_norm: true,
            }
            .init()
            .err()
            .map(|e| e.field)
        };
        let sgd = OptimizerKind::Sgd {
            momentum: 0.9,
            nesterov: false,
        };
        assert_eq!(bad(sgd, -1.0), Some("weight_decay"));
        assert_eq!(
            bad(
                OptimizerKind::Sgd {
                    momentum: 1.0,
                    nesterov: false
                },
                0.0
            ),
            Some("momentum")
        );
        assert_eq!(
            bad(
                OptimizerKind::Lars {
                    momentum: 0.9,
                    eta: 0.0,
                    clip: false
                },
                0.0
            ),
            Some("eta")
        );
        assert_eq!(
            bad(
                OptimizerKind::AdamW {
                    beta1: 0.9,
                    beta2: f64::NAN,
                    eps: 1e-8
                },
                0.0
            ),
            Some("beta2")
        );
        assert_eq!(
            bad(
                OptimizerKind::Adam {
                    beta1: 1.0,
                    beta2: 0.999,
                    eps: 1e-8
                },
                0.0
            ),
            Some("beta1")
        );
        assert_eq!(bad(sgd, 1e-4), None);
    }

    #[test]
    fn load_state_dict_rejects_bad_entries() {
        let cfg = OptimizerConfig {
            kind: OptimizerKind::Sgd {
                momentum: 0.9,
                nesterov: false,
            },
            weight_decay: 0.0,
            exclude_bias_and_norm: false,
        };
        let mut optim = cfg.init().unwrap();
        let mut sd = StateDict::new();
        sd.insert("w.momentum_buffer".into(), (vec![2], vec![1.0, 2.0]));
        assert_eq!(
            optim.load_state_dict(&sd),
            Err(StateDictError::Missing("w.step".into()))
        );
        sd.insert("w.step".into(), (vec![], vec![1.5]));
        assert_eq!(
            optim.load_state_dict(&sd),
            Err(StateDictError::Malformed("w.step".into()))
        );
        sd.insert("w.step".into(), (vec![], vec![3.0]));
        assert_eq!(optim.load_state_dict(&sd), Ok(()));
        sd.insert("w.exp_avg".into(), (vec![2], vec![1.0, 2.0]));
        assert_eq!(
            optim.load_state_dict(&sd),
            Err(StateDictError::UnknownKey("w.exp_avg".into()))
        );
    }
}
