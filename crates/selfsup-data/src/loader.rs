//! Multi-view batch loading on worker threads with a bounded prefetch window.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use crate::dataset::ImageDataset;
use crate::error::{DataError, Result};
use crate::rng::SampleRng;
use crate::transforms::Pipeline;

/// Batching options for [`ViewLoader`].
#[derive(Clone, Debug)]
pub struct LoaderConfig {
    pub batch_size: usize,
    /// Shuffle the sample order each epoch (seeded by `seed` and the epoch).
    pub shuffle: bool,
    /// Drop a final batch smaller than `batch_size`.
    pub drop_last: bool,
    /// Seeds the order and every augmentation.
    pub seed: u64,
    /// Worker threads; 0 builds batches on the calling thread.
    pub num_workers: usize,
    /// Batches that may be built ahead of the consumer.
    pub prefetch: usize,
    /// Use only these dataset indices (a label fraction, a quick run); `None` = all.
    pub subset: Option<Vec<usize>>,
    /// Data-parallel training: this process's part of every batch.
    pub shard: Shard,
}

/// Rank `rank` of `world` data-parallel processes takes rows `[rank·b/world, (rank+1)·b/world)`
/// of every global batch of `b` (the order and the augmentations are those of one process, so
/// the ranks' parts together are exactly the single-process batch).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    pub rank: usize,
    pub world: usize,
}

impl Default for Shard {
    fn default() -> Self {
        Shard { rank: 0, world: 1 }
    }
}

impl Default for LoaderConfig {
    fn default() -> Self {
        LoaderConfig {
            batch_size: 256,
            shuffle: true,
            drop_last: true,
            seed: 0,
            num_workers: 2,
            prefetch: 4,
            subset: None,
            shard: Shard::default(),
        }
    }
}

/// One batch: for each view a normalised f32 NCHW buffer of shape `view_shapes[v]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    pub views: Vec<Vec<f32>>,
    /// `[batch, 3, height, width]` of each view.
    pub view_shapes: Vec<[usize; 4]>,
    /// Dataset indices of the samples, in batch order.
    pub indices: Vec<usize>,
    pub labels: Vec<Option<u32>>,
}

/// Produces batches of augmented views; the same pipeline twice gives SimCLR pairs.
/// Output depends only on (seed, epoch, config), never on the number of workers:
/// each (sample, view) gets its own RNG stream.
pub struct ViewLoader {
    dataset: Arc<ImageDataset>,
    views: Arc<Vec<Pipeline>>,
    config: LoaderConfig,
}

/// RNG stream key that cannot collide with a sample index.
const ORDER_STREAM: u64 = u64::MAX;

fn build_batch(
    dataset: &ImageDataset,
    views: &[Pipeline],
    seed: u64,
    epoch: u64,
    indices: &[usize],
) -> Batch {
    let b = indices.len();
    let mut out = Batch {
        views: Vec::with_capacity(views.len()),
        view_shapes: Vec::with_capacity(views.len()),
        indices: indices.to_vec(),
        labels: indices.iter().map(|&i| dataset.label(i)).collect(),
    };
    for (v, pipeline) in views.iter().enumerate() {
        let (h, w) = pipeline.output_size();
        let len = pipeline.output_len();
        let mut buf = vec![0.0f32; b * len];
        for (slot, &i) in buf.chunks_exact_mut(len).zip(indices) {
            let mut rng = SampleRng::for_sample(seed, epoch, i as u64, v as u64);
            pipeline.apply_into(dataset.image(i).view(), &mut rng, slot);
        }
        out.views.push(buf);
        out.view_shapes.push([b, 3, h, w]);
    }
    out
}

impl ViewLoader {
    pub fn new(
        dataset: Arc<ImageDataset>,
        views: Vec<Pipeline>,
        config: LoaderConfig,
    ) -> Result<Self> {
        if config.batch_size == 0 || views.is_empty() || config.prefetch == 0 {
            return Err(DataError::Pipeline(
                "loader needs batch_size > 0, prefetch > 0 and at least one view".into(),
            ));
        }
        let Shard { rank, world } = config.shard;
        if world == 0
            || rank >= world
            || config.batch_size % world != 0
            || !config.drop_last && world > 1
        {
            return Err(DataError::Pipeline(format!(
                "batch size {} cannot be split over {world} processes (rank {rank}): use a multiple of {world}, and drop_last",
                config.batch_size
            )));
        }
        if let Some(bad) = config
            .subset
            .as_ref()
            .and_then(|s| s.iter().find(|&&i| i >= dataset.len()))
        {
            return Err(DataError::Pipeline(format!(
                "loader subset index {bad} is out of range for a dataset of {} images",
                dataset.len()
            )));
        }
        Ok(ViewLoader {
            dataset,
            views: Arc::new(views),
            config,
        })
    }

    /// In-order, unshuffled single-view loader for evaluation (keeps the last partial batch).
    pub fn eval(
        dataset: Arc<ImageDataset>,
        pipeline: Pipeline,
        batch_size: usize,
        num_workers: usize,
    ) -> Result<Self> {
        let config = LoaderConfig {
            batch_size,
            shuffle: false,
            drop_last: false,
            seed: 0,
            num_workers,
            prefetch: 4,
            subset: None,
            shard: Shard::default(),
        };
        ViewLoader::new(dataset, vec![pipeline], config)
    }

    /// Sample order of `epoch`.
    pub fn epoch_order(&self, epoch: u64) -> Vec<usize> {
        let mut order: Vec<usize> = match &self.config.subset {
            Some(s) => s.clone(),
            None => (0..self.dataset.len()).collect(),
        };
        if self.config.shuffle {
            SampleRng::for_sample(self.config.seed, epoch, ORDER_STREAM, 0).shuffle(&mut order);
        }
        order
    }

    pub fn num_batches(&self) -> usize {
        let n = self
            .config
            .subset
            .as_ref()
            .map_or(self.dataset.len(), Vec::len);
        let b = self.config.batch_size;
        if self.config.drop_last {
            n / b
        } else {
            n.div_ceil(b)
        }
    }

    /// Iterator over the batches of `epoch`; workers start immediately and stop when it is dropped.
    pub fn epoch(&self, epoch: u64) -> EpochBatches {
        let order = Arc::new(self.epoch_order(epoch));
        let num_batches = self.num_batches();
        let shared = Arc::new(Shared {
            next_batch: AtomicUsize::new(0),
            consumed: Mutex::new(0),
            advanced: Condvar::new(),
            stop: AtomicBool::new(false),
        });
        let (tx, rx) = mpsc::channel();
        let workers = (0..self.config.num_workers)
            .map(|_| {
                let job = Job {
                    dataset: self.dataset.clone(),
                    views: self.views.clone(),
                    order: order.clone(),
                    shared: shared.clone(),
                    tx: tx.clone(),
                    seed: self.config.seed,
                    epoch,
                    batch_size: self.config.batch_size,
                    shard: self.config.shard,
                    num_batches,
                    prefetch: self.config.prefetch,
                };
                std::thread::spawn(move || job.run())
            })
            .collect();
        EpochBatches {
            next: 0,
            num_batches,
            pending: BTreeMap::new(),
            rx: Some(rx),
            shared,
            workers,
            inline: (self.config.num_workers == 0).then(|| Inline {
                dataset: self.dataset.clone(),
                views: self.views.clone(),
                order,
                seed: self.config.seed,
                epoch,
                batch_size: self.config.batch_size,
                shard: self.config.shard,
            }),
        }
    }
}

fn batch_indices(order: &[usize], batch: usize, batch_size: usize, shard: Shard) -> &[usize] {
    let global = &order[batch * batch_size..((batch + 1) * batch_size).min(order.len())];
    let part = global.len() / shard.world;
    &global[shard.rank * part..(shard.rank + 1) * part]
}

struct Shared {
    next_batch: AtomicUsize,
    /// Batches handed to the consumer so far; workers stay within `prefetch` of it.
    consumed: Mutex<usize>,
    advanced: Condvar,
    stop: AtomicBool,
}

struct Job {
    dataset: Arc<ImageDataset>,
    views: Arc<Vec<Pipeline>>,
    order: Arc<Vec<usize>>,
    shared: Arc<Shared>,
    tx: mpsc::Sender<(usize, Batch)>,
    seed: u64,
    epoch: u64,
    batch_size: usize,
    shard: Shard,
    num_batches: usize,
    prefetch: usize,
}

impl Job {
    fn run(self) {
        loop {
            let b = self.shared.next_batch.fetch_add(1, Ordering::SeqCst);
            if b >= self.num_batches {
                return;
            }
            {
                let mut consumed = self.shared.consumed.lock().unwrap();
                while b >= *consumed + self.prefetch && !self.shared.stop.load(Ordering::SeqCst) {
                    consumed = self.shared.advanced.wait(consumed).unwrap();
                }
            }
            if self.shared.stop.load(Ordering::SeqCst) {
                return;
            }
            let indices = batch_indices(&self.order, b, self.batch_size, self.shard);
            let batch = build_batch(&self.dataset, &self.views, self.seed, self.epoch, indices);
            if self.tx.send((b, batch)).is_err() {
                return;
            }
        }
    }
}

/// Everything needed to build batches on the consumer thread (`num_workers == 0`).
struct Inline {
    dataset: Arc<ImageDataset>,
    views: Arc<Vec<Pipeline>>,
    order: Arc<Vec<usize>>,
    seed: u64,
    epoch: u64,
    batch_size: usize,
    shard: Shard,
}

/// Batches of one epoch, in order.
pub struct EpochBatches {
    next: usize,
    num_batches: usize,
    /// Batches that arrived ahead of `next` (at most `prefetch`).
    pending: BTreeMap<usize, Batch>,
    rx: Option<mpsc::Receiver<(usize, Batch)>>,
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
    inline: Option<Inline>,
}

impl Iterator for EpochBatches {
    type Item = Batch;

    fn next(&mut self) -> Option<Batch> {
        if self.next >= self.num_batches {
            return None;
        }
        let batch = if let Some(i) = &self.inline {
            let indices = batch_indices(&i.order, self.next, i.batch_size, i.shard);
            build_batch(&i.dataset, &i.views, i.seed, i.epoch, indices)
        } else {
            loop {
                if let Some(b) = self.pending.remove(&self.next) {
                    break b;
                }
                // A worker panic drops its sender; with all senders gone recv fails.
                let (k, b) = self
                    .rx
                    .as_ref()?
                    .recv()
                    .expect("loader worker thread panicked");
                self.pending.insert(k, b);
            }
        };
        self.next += 1;
        *self.shared.consumed.lock().unwrap() = self.next;
        self.shared.advanced.notify_all();
        Some(batch)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.num_batches - self.next;
        (left, Some(left))
    }
}

impl Drop for EpochBatches {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        {
            let _guard = self.shared.consumed.lock().unwrap();
            self.shared.advanced.notify_all();
        }
        self.rx.take();
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}
