//! DINO (Caron et al. 2021): the student's softmax over prototypes matches the centred,
//! sharpened softmax of a momentum teacher, across views.

use burn::prelude::*;
use burn::tensor::activation::{log_softmax, softmax};

use super::LossConfigError;

/// DINO's cross-entropy between teacher and student views; returns a 1-element tensor.
///
/// `teacher` holds the teacher's outputs for the global views, `student` the student's outputs
/// for the same global views first and then any local crops; all are `[N, D]`. Teacher targets
/// are `softmax((t - center) / teacher_temp)` (centring and sharpening, no gradient is taken
/// through them by callers that pass detached outputs), student predictions
/// `log_softmax(s / student_temp)`. Every (teacher view i, student view j) pair with i ≠ j
/// contributes `-Σ_d t_i·log s_j`, averaged over pairs and images — exactly
/// `lightly.loss.DINOLoss(...)(teacher, student, teacher_temp)` with its center equal to
/// `center` (`[1, D]`).
///
/// Panics if fewer than one teacher view, fewer student views than teacher views, shapes
/// disagree, or a temperature is not finite and > 0.
pub fn dino_loss(
    teacher: &[Tensor<2>],
    student: &[Tensor<2>],
    center: Tensor<2>,
    teacher_temp: f64,
    student_temp: f64,
) -> Tensor<1> {
    check_views(teacher, student);
    for (name, t) in [
        ("teacher_temp", teacher_temp),
        ("student_temp", student_temp),
    ] {
        assert!(
            t.is_finite() && t > 0.0,
            "dino_loss: {name} must be finite and > 0, got {t}"
        );
    }
    let n = teacher[0].dims()[0];
    let targets: Vec<Tensor<2>> = teacher
        .iter()
        .map(|t| softmax((t.clone() - center.clone()).div_scalar(teacher_temp), 1))
        .collect();
    let log_probs: Vec<Tensor<2>> = student
        .iter()
        .map(|s| log_softmax(s.clone().div_scalar(student_temp), 1))
        .collect();
    let mut total: Option<Tensor<1>> = None;
    let mut pairs = 0usize;
    for (i, t) in targets.iter().enumerate() {
        for (j, s) in log_probs.iter().enumerate() {
            if i == j {
                continue;
            }
            let term = (t.clone() * s.clone()).sum().neg();
            total = Some(match total {
                Some(acc) => acc + term,
                None => term,
            });
            pairs += 1;
        }
    }
    total
        .expect("at least one cross-view pair")
        .div_scalar((pairs * n) as f64)
}

/// DINO's center after a step: `m·center + (1 - m)·mean of every teacher output` (`[1, D]`),
/// as lightly's `DINOLoss.update_center`.
pub fn dino_center_update(center: Tensor<2>, teacher: &[Tensor<2>], momentum: f64) -> Tensor<2> {
    assert!(!teacher.is_empty(), "dino_center_update: no teacher views");
    let stacked = Tensor::cat(teacher.iter().map(|t| t.clone().detach()).collect(), 0);
    let batch_center = stacked.mean_dim(0);
    center.mul_scalar(momentum) + batch_center.mul_scalar(1.0 - momentum)
}

/// The teacher temperature at a fractional `epoch`: linear from `warmup_temp` to `temp` over
/// `warmup_epochs`, then `temp` (DINO's warm-up; lightly steps it once per epoch).
pub fn teacher_temperature(epoch: f64, warmup_temp: f64, temp: f64, warmup_epochs: f64) -> f64 {
    if warmup_epochs <= 0.0 || epoch >= warmup_epochs {
        temp
    } else {
        warmup_temp + (temp - warmup_temp) * epoch / warmup_epochs
    }
}

/// Validated temperature or momentum of DINO's loss.
pub fn check_dino(
    teacher: [f64; 2],
    student: f64,
    center_momentum: f64,
) -> Result<(), LossConfigError> {
    for t in [teacher[0], teacher[1], student] {
        if !(t.is_finite() && t > 0.0) {
            return Err(LossConfigError::Temperature(t));
        }
    }
    if !(0.0..=1.0).contains(&center_momentum) {
        return Err(LossConfigError::Weight("center_momentum", center_momentum));
    }
    Ok(())
}

fn check_views(teacher: &[Tensor<2>], student: &[Tensor<2>]) {
    assert!(
        !teacher.is_empty() && student.len() >= teacher.len() && student.len() >= 2,
        "dino_loss needs at least one teacher view and at least as many (and >= 2) student views, got {} and {}",
        teacher.len(),
        student.len()
    );
    let shape = teacher[0].dims();
    for (who, views) in [("teacher", teacher), ("student", student)] {
        for (i, v) in views.iter().enumerate() {
            assert_eq!(
                v.dims(),
                shape,
                "dino_loss: {who} view {i} has shape {:?}, teacher view 0 {shape:?}",
                v.dims()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loss::test_util::*;

    #[test]
    fn matches_lightly_value_gradient_and_center() {
        let device = Device::flex().autodiff();
        for case in load("dino.json")["cases"].as_array().unwrap() {
            let n = case["n"].as_u64().unwrap() as usize;
            let d = case["d"].as_u64().unwrap() as usize;
            let views = |key: &str| -> Vec<Tensor<2>> {
                case[key]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| tensor2(v, n, d, &device))
                    .collect()
            };
            let teacher = views("teacher");
            let student: Vec<Tensor<2>> = views("student")
                .into_iter()
                .map(|s| s.require_grad())
                .collect();
            let center = tensor2(&case["center"], 1, d, &device);
            let loss = dino_loss(
                &teacher,
                &student,
                center.clone(),
                case["teacher_temp"].as_f64().unwrap(),
                case["student_temp"].as_f64().unwrap(),
            );
            let grads = loss.backward();
            let value = loss.into_scalar::<f32>();
            assert_close(
                "loss",
                &[value],
                &[case["loss"].as_f64().unwrap() as f32],
                1e-5,
            );
            for (j, s) in student.iter().enumerate() {
                let g = s
                    .grad(&grads)
                    .unwrap()
                    .into_data()
                    .try_to_vec::<f32>()
                    .unwrap();
                assert_close(
                    &format!("grad_student[{j}]"),
                    &g,
                    &floats(&case["grad_student"][j]),
                    1e-5,
                );
            }
            let new_center =
                dino_center_update(center, &teacher, case["center_momentum"].as_f64().unwrap());
            assert_close(
                "new_center",
                &new_center.into_data().try_to_vec::<f32>().unwrap(),
                &floats(&case["new_center"]),
                1e-5,
            );
        }
    }

    #[test]
    fn teacher_temperature_warms_up_linearly() {
        assert!((teacher_temperature(0.0, 0.04, 0.07, 2.0) - 0.04).abs() < 1e-12);
        assert!((teacher_temperature(1.0, 0.04, 0.07, 2.0) - 0.055).abs() < 1e-12);
        assert!((teacher_temperature(3.0, 0.04, 0.07, 2.0) - 0.07).abs() < 1e-12);
        assert_eq!(teacher_temperature(0.0, 0.04, 0.07, 0.0), 0.07);
    }
}
