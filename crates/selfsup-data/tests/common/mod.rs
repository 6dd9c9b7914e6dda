//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

/// `<data_root>/cifar10`, failing loudly when the shared data is missing.
pub fn cifar10_dir() -> PathBuf {
    let dir = selfsup_data::data_root().join("cifar10");
    assert!(
        dir.join("test").is_dir(),
        "shared CIFAR-10 JPEG tree not found at {}; set SELFSUP_DATA to the shared/data folder",
        dir.display()
    );
    dir
}

/// Fashion-MNIST IDX folder, failing loudly when missing.
pub fn fashion_mnist_dir() -> PathBuf {
    let dir = selfsup_data::fashion_mnist_dir();
    assert!(
        dir.join("t10k-images-idx3-ubyte.gz").is_file(),
        "Fashion-MNIST not found at {}; `apt-get install dataset-fashion-mnist` or set SELFSUP_FASHION_MNIST",
        dir.display()
    );
    dir
}
