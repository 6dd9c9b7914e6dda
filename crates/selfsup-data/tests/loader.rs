//! ViewLoader: shapes, ordering, and independence from the worker count.

use std::sync::Arc;

use selfsup_data::{
    CacheOptions, LoaderConfig, Normalization, Pipeline, Shard, Split, ViewLoader, open_dataset,
};

mod common;

fn test_split() -> Arc<selfsup_data::ImageDataset> {
    let tmp = tempfile::tempdir().unwrap();
    // Ten classes x a few images from the real CIFAR tree keeps this fast.
    for class in ["cat", "dog", "ship"] {
        let d = tmp.path().join(class);
        std::fs::create_dir_all(&d).unwrap();
        for i in 0..7 {
            let name = format!("{i:04}.jpg");
            std::fs::copy(
                common::cifar10_dir().join("test").join(class).join(&name),
                d.join(&name),
            )
            .unwrap();
        }
    }
    Arc::new(open_dataset(tmp.path(), Split::Train, &CacheOptions::default()).unwrap())
}

#[test]
fn batches_do_not_depend_on_worker_count() {
    let ds = test_split();
    let simclr = Pipeline::simclr(24, 0.5, Normalization::CIFAR10).unwrap();
    let collect = |workers: usize, epoch: u64| {
        let cfg = LoaderConfig {
            batch_size: 4,
            shuffle: true,
            drop_last: true,
            seed: 11,
            num_workers: workers,
            prefetch: 2,
            subset: None,
            shard: Shard::default(),
        };
        let loader =
            ViewLoader::new(ds.clone(), vec![simclr.clone(), simclr.clone()], cfg).unwrap();
        loader.epoch(epoch).collect::<Vec<_>>()
    };
    let inline = collect(0, 3);
    assert_eq!(inline.len(), 21 / 4);
    for workers in [1, 3] {
        assert_eq!(collect(workers, 3), inline, "{workers} workers");
    }
    let b = &inline[0];
    assert_eq!(b.view_shapes, vec![[4, 3, 24, 24]; 2]);
    assert_eq!(b.views[0].len(), 4 * 3 * 24 * 24);
    assert_ne!(b.views[0], b.views[1], "two views of a sample differ");
    assert_ne!(collect(0, 4)[0].indices, b.indices, "epochs reshuffle");
    let mut seen: Vec<usize> = inline.iter().flat_map(|b| b.indices.clone()).collect();
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 20, "no sample repeats within an epoch");
    for batch in &inline {
        for (k, &i) in batch.indices.iter().enumerate() {
            assert_eq!(batch.labels[k], ds.label(i));
        }
    }
}

/// Two data-parallel ranks' parts of each batch, side by side, are the single-process batch:
/// the same samples in the same order with the same augmentations.
#[test]
fn shards_of_a_batch_make_the_single_process_batch() {
    let ds = test_split();
    let simclr = Pipeline::simclr(24, 0.5, Normalization::CIFAR10).unwrap();
    let batches = |shard: Shard| {
        let cfg = LoaderConfig {
            batch_size: 6,
            seed: 5,
            num_workers: 1,
            shard,
            ..LoaderConfig::default()
        };
        let loader =
            ViewLoader::new(ds.clone(), vec![simclr.clone(), simclr.clone()], cfg).unwrap();
        loader.epoch(2).collect::<Vec<_>>()
    };
    let whole = batches(Shard::default());
    let parts = [0, 1].map(|rank| batches(Shard { rank, world: 2 }));
    assert_eq!(whole.len(), 3);
    for (b, batch) in whole.iter().enumerate() {
        let (p0, p1) = (&parts[0][b], &parts[1][b]);
        assert_eq!(p0.view_shapes[0][0], 3);
        assert_eq!(
            [p0.indices.clone(), p1.indices.clone()].concat(),
            batch.indices
        );
        for v in 0..2 {
            assert_eq!(
                [p0.views[v].clone(), p1.views[v].clone()].concat(),
                batch.views[v]
            );
        }
    }
    // A batch that does not split is refused.
    let odd = LoaderConfig {
        batch_size: 5,
        shard: Shard { rank: 0, world: 2 },
        ..LoaderConfig::default()
    };
    let e = ViewLoader::new(ds, vec![simclr], odd)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("2 processes"), "{e}");
}

#[test]
fn early_drop_stops_workers() {
    let ds = test_split();
    let cfg = LoaderConfig {
        batch_size: 2,
        num_workers: 2,
        prefetch: 1,
        ..LoaderConfig::default()
    };
    let loader = ViewLoader::new(
        ds,
        vec![Pipeline::simclr(32, 0.0, Normalization::IMAGENET).unwrap()],
        cfg,
    )
    .unwrap();
    let mut it = loader.epoch(0);
    assert!(it.next().is_some());
    drop(it); // must not hang
}

#[test]
fn eval_batches_are_in_order_and_normalized() {
    let ds = test_split();
    let norm = Normalization::CIFAR10;
    let loader = ViewLoader::eval(ds.clone(), Pipeline::eval(32, norm).unwrap(), 8, 2).unwrap();
    let batches: Vec<_> = loader.epoch(0).collect();
    assert_eq!(
        batches.iter().map(|b| b.indices.len()).collect::<Vec<_>>(),
        vec![8, 8, 5]
    );
    assert_eq!(batches[1].indices, (8..16).collect::<Vec<_>>());
    // 32x32 input: the eval transform is the identity before normalisation.
    let img = ds.image(9);
    let img = img.view();
    let got = &batches[1].views[0][3 * 32 * 32..2 * 3 * 32 * 32];
    let g = |y: usize, x: usize| img.data[(y * 32 + x) * 3 + 1] as f32 / 255.0;
    assert!((got[32 * 32 + 5 * 32 + 7] - (g(5, 7) - norm.mean[1]) / norm.std[1]).abs() < 1e-6);
}

#[test]
fn subset_limits_samples_and_batches() {
    let ds = test_split();
    let subset: Vec<usize> = (1..20).collect();
    let cfg = LoaderConfig {
        batch_size: 8,
        num_workers: 1,
        subset: Some(subset.clone()),
        ..LoaderConfig::default()
    };
    let loader = ViewLoader::new(
        ds.clone(),
        vec![Pipeline::eval(32, Normalization::CIFAR10).unwrap()],
        cfg,
    )
    .unwrap();
    assert_eq!(loader.num_batches(), 2); // 19 samples, batch 8, drop_last
    let seen: Vec<usize> = loader.epoch(0).flat_map(|b| b.indices).collect();
    assert_eq!(seen.len(), 16);
    assert!(seen.iter().all(|i| subset.contains(i)), "{seen:?}");

    let out_of_range = LoaderConfig {
        subset: Some(vec![ds.len()]),
        ..LoaderConfig::default()
    };
    let err = ViewLoader::new(
        ds,
        vec![Pipeline::eval(32, Normalization::CIFAR10).unwrap()],
        out_of_range,
    )
    .err()
    .unwrap();
    assert!(err.to_string().contains("out of range"), "{err}");
}
