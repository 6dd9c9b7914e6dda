//! InfoNCE against a queue of earlier keys: MoCo's loss (He et al. 2020, Chen et al. 2020 v2).

use burn::prelude::*;

use super::{LossConfigError, NtXentConfig, check_pair, l2_normalize};

/// InfoNCE of each query against its own key (the positive) and `queue` (the negatives);
/// returns a 1-element tensor.
///
/// `query` and `key` are `[N, D]` (`key[i]` is the momentum encoder's view of the image of
/// `query[i]`) and are L2-normalised here; `queue` is `[K, D]` of keys that were already
/// normalised when they were enqueued, and is used as is. The logits are
/// `[q·k, q·queue_1, …, q·queue_K] / temperature` and the loss is the mean cross-entropy with
/// the positive as target — `lightly.loss.NTXentLoss(temperature, memory_bank_size=(K, D))`
/// with its bank equal to `queue` (in-batch samples are not negatives, as in MoCo).
///
/// Panics if the shapes disagree, N < 1, K < 1 or `temperature` is not finite and > 0.
pub fn info_nce_queue_loss(
    query: Tensor<2>,
    key: Tensor<2>,
    queue: Tensor<2>,
    temperature: f64,
) -> Tensor<1> {
    check_pair("query", &query, "key", &key, 1);
    let [k, dq] = queue.dims();
    let d = query.dims()[1];
    assert!(
        k >= 1 && dq == d,
        "queue must be [K, D] with K >= 1 and the queries' D = {d}, got {:?}",
        queue.dims()
    );
    if let Err(e) = NtXentConfig::new(temperature) {
        panic!("info_nce_queue_loss: {e}");
    }
    let q = l2_normalize(query);
    let key = l2_normalize(key);
    let positive = (q.clone() * key).sum_dim(1).div_scalar(temperature); // [N, 1]
    let negatives = q.matmul(queue.transpose()).div_scalar(temperature); // [N, K]
    let logits = Tensor::cat(vec![positive.clone(), negatives], 1);
    let row_max = logits.clone().max_dim(1).detach();
    let log_sum_exp = (logits - row_max.clone()).exp().sum_dim(1).log() + row_max;
    (log_sum_exp - positive).mean()
}

/// The queue after enqueuing `keys` (`[B, D]`, L2-normalised here): the newest B keys first,
/// the oldest B dropped, size unchanged. A queue is a set of negatives, so keeping it in age
/// order (rather than lightly's ring buffer with a pointer) changes no loss and needs no
/// pointer in the checkpoint. Panics if B exceeds the queue size or D differs.
pub fn enqueue(queue: Tensor<2>, keys: Tensor<2>) -> Tensor<2> {
    let [k, d] = queue.dims();
    let [b, dk] = keys.dims();
    assert!(
        dk == d && b <= k,
        "cannot enqueue keys {:?} into a queue {:?}: the widths must match and the batch fit",
        keys.dims(),
        queue.dims()
    );
    let keys = l2_normalize(keys.detach());
    if b == k {
        return keys;
    }
    Tensor::cat(vec![keys, queue.narrow(0, 0, k - b)], 0)
}

/// A random initial queue as in lightly's memory bank: standard normal rows, L2-normalised.
pub fn random_queue(size: usize, dim: usize, device: &Device) -> Tensor<2> {
    l2_normalize(Tensor::random(
        [size, dim],
        burn::tensor::Distribution::Normal(0.0, 1.0),
        device,
    ))
}

/// Validated MoCo loss hyper-parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InfoNceQueueConfig {
    pub temperature: f64,
    pub queue_size: usize,
}

impl InfoNceQueueConfig {
    pub fn new(temperature: f64, queue_size: usize) -> Result<Self, LossConfigError> {
        NtXentConfig::new(temperature)?;
        if queue_size == 0 {
            return Err(LossConfigError::QueueSize(queue_size));
        }
        Ok(Self {
            temperature,
            queue_size,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loss::test_util::*;

    #[test]
    fn matches_lightly_value_and_gradient() {
        let device = Device::flex().autodiff();
        for case in load("info_nce_queue.json")["cases"].as_array().unwrap() {
            let n = case["n"].as_u64().unwrap() as usize;
            let d = case["d"].as_u64().unwrap() as usize;
            let k = case["k"].as_u64().unwrap() as usize;
            let t = case["temperature"].as_f64().unwrap();
            let query = tensor2(&case["query"], n, d, &device).require_grad();
            let key = tensor2(&case["key"], n, d, &device).require_grad();
            let queue = tensor2(&case["queue"], k, d, &device);
            let loss = info_nce_queue_loss(query.clone(), key.clone(), queue, t);
            assert_loss_and_grads(case, loss, (&query, &key), ("grad_query", "grad_key"));
        }
    }

    #[test]
    fn enqueue_puts_newest_first_and_drops_oldest() {
        let device = Device::flex();
        let queue = Tensor::<2>::from_data(
            TensorData::new(vec![1.0f32, 0.0, 0.0, 1.0, -1.0, 0.0], [3, 2]),
            &device,
        );
        // Keys are normalised on the way in: (3, 4) becomes (0.6, 0.8).
        let keys = Tensor::<2>::from_data(TensorData::new(vec![3.0f32, 4.0], [1, 2]), &device);
        let got = enqueue(queue, keys)
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        assert_close("queue", &got, &[0.6, 0.8, 1.0, 0.0, 0.0, 1.0], 1e-6);
    }

    #[test]
    fn config_rejects_empty_queue() {
        assert_eq!(
            InfoNceQueueConfig::new(0.1, 0),
            Err(LossConfigError::QueueSize(0))
        );
        assert!(InfoNceQueueConfig::new(0.0, 16).is_err());
        assert!(InfoNceQueueConfig::new(0.1, 16).is_ok());
    }
}
