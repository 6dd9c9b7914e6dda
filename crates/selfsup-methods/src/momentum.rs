//! Momentum (EMA) teachers: MoCo's key encoder, BYOL's target network, DINO's teacher.

use std::collections::HashMap;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::prelude::*;
use selfsup_models::{load_named_tensors, named_tensors};

/// The EMA momentum at `step` of `total`: cosine from `start` (step 0) to `end` (last step),
/// as lightly's `cosine_schedule` (BYOL: 0.996 → 1; MoCo keeps it fixed with start = end).
pub fn cosine_momentum(step: usize, total: usize, start: f64, end: f64) -> f64 {
    if total <= 1 {
        return end;
    }
    let t = (step.min(total - 1)) as f64 / (total - 1) as f64;
    end - (end - start) * ((std::f64::consts::PI * t).cos() + 1.0) / 2.0
}

/// A teacher for `student`: `fresh` (a newly initialised module of the same architecture, so
/// its parameter ids and BatchNorm state are its own and never alias the student's) with the
/// student's values and gradients switched off, so the optimizer never touches it.
pub fn teacher_copy<M: Module>(student: &M, fresh: M) -> M {
    load_named_tensors(fresh.no_grad(), &named_tensors(student), "")
        .expect("teacher and student share an architecture")
}

/// `teacher ← m·teacher + (1 - m)·student` for every trainable parameter (what lightly's
/// `update_momentum` does with `parameters()`). BatchNorm running statistics are not
/// parameters: the teacher keeps its own, from its own forward passes.
///
/// Panics if a trainable student tensor has no counterpart in the teacher.
pub fn ema_update<M: Module>(teacher: M, student: &M, momentum: f64) -> M {
    let mut collect = Collect {
        path: Vec::new(),
        out: HashMap::new(),
    };
    student.visit(&mut collect);
    let mut ema = Ema {
        path: Vec::new(),
        student: collect.out,
        momentum,
    };
    let teacher = teacher.map(&mut ema);
    assert!(
        ema.student.is_empty(),
        "ema_update: the teacher lacks {:?}",
        ema.student.keys().collect::<Vec<_>>()
    );
    teacher
}

/// `t` out of the autodiff graph. burn's `detach` keeps a leaf's require-grad flag, and any op
/// on such a leaf records a graph: an EMA computed from it would leave the teacher's values
/// (and so every forward pass of the teacher) tracked, graphs that no backward pass frees
/// (BYOL and MoCo grew by ~700 MB per step at batch 256).
fn untracked<const D: usize>(t: Tensor<D>) -> Tensor<D> {
    t.detach().set_require_grad(false)
}

/// The student's trainable tensors, untracked and flattened, by path.
struct Collect {
    path: Vec<String>,
    out: HashMap<String, Tensor<1>>,
}

impl ModuleVisitor for Collect {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.push(name.to_string());
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.pop();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let t = param.val();
        if !t.is_require_grad() {
            return; // running statistics, not parameters
        }
        let numel = t.dims().iter().product::<usize>();
        self.out
            .insert(self.path.join("."), untracked(t).reshape([numel]));
    }
}

struct Ema {
    path: Vec<String>,
    student: HashMap<String, Tensor<1>>,
    momentum: f64,
}

impl ModuleMapper for Ema {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.push(name.to_string());
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.pop();
    }
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let Some(s) = self.student.remove(&self.path.join(".")) else {
            return param;
        };
        let (id, t, mapper) = param.consume();
        let dims = t.dims();
        let t = untracked(t);
        let value = t.mul_scalar(self.momentum) + s.reshape(dims).mul_scalar(1.0 - self.momentum);
        Param::from_mapped_value(id, value, mapper)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use selfsup_models::MlpHeadConfig;

    #[test]
    fn cosine_momentum_runs_from_start_to_end() {
        assert!((cosine_momentum(0, 101, 0.99, 1.0) - 0.99).abs() < 1e-12);
        assert!((cosine_momentum(50, 101, 0.99, 1.0) - 0.995).abs() < 1e-12);
        assert!((cosine_momentum(100, 101, 0.99, 1.0) - 1.0).abs() < 1e-12);
        assert_eq!(cosine_momentum(7, 10, 0.99, 0.99), 0.99);
    }

    #[test]
    fn teacher_is_a_detached_copy_and_ema_moves_it_by_one_minus_m() {
        let device = Device::flex().autodiff();
        let cfg = MlpHeadConfig::new(vec![3, 4, 2]);
        let student = cfg.init(&device);
        let teacher = teacher_copy(&student, cfg.init(&device));
        let (s0, t0) = (named_tensors(&student), named_tensors(&teacher));
        assert_eq!(s0, t0);
        assert!(!teacher.layers[0].linear.weight.val().is_require_grad());

        // A different student: the teacher moves 10% of the way to it, running stats stay.
        let student2 = cfg.init(&device);
        let s2 = named_tensors(&student2);
        let teacher = ema_update(teacher, &student2, 0.9);
        let t1 = named_tensors(&teacher);
        for (name, t) in &t1 {
            let before = &t0[name].values;
            let want: Vec<f32> = if name.contains("running") {
                before.clone()
            } else {
                before
                    .iter()
                    .zip(&s2[name].values)
                    .map(|(t, s)| 0.9 * t + 0.1 * s)
                    .collect()
            };
            for (g, w) in t.values.iter().zip(&want) {
                assert!((g - w).abs() < 1e-6, "{name}: got {g}, want {w}");
            }
        }
        assert!(!teacher.layers[1].linear.weight.val().is_require_grad());
    }
}
