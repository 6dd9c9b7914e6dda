//! Measures SimCLR view throughput on 32x32 CIFAR images, single thread.
//! `cargo run -p selfsup-data --release --example aug_speed`

use std::time::Instant;

use selfsup_data::{
    CacheFormat, CacheOptions, Normalization, Pipeline, SampleRng, Split, data_root, open_dataset,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let cache = std::env::temp_dir().join("selfsup-aug-speed-cache");
    let opts = CacheOptions {
        cache_dir: Some(cache),
        skip_corrupt: false,
        max_short_side: None,
        format: CacheFormat::Pixels,
    };
    let t = Instant::now();
    let ds = open_dataset(&data_root().join("cifar10"), Split::Train, &opts)?;
    println!("opened {} train images in {:.2?}", ds.len(), t.elapsed());
    let pipeline = Pipeline::simclr(32, 0.0, Normalization::CIFAR10)?;
    let mut out = vec![0.0f32; pipeline.output_len()];
    let views = 40_000;
    let t = Instant::now();
    for v in 0..views {
        let i = v % ds.len();
        let mut rng = SampleRng::for_sample(0, 0, i as u64, (v / ds.len()) as u64);
        pipeline.apply_into(ds.image(i).view(), &mut rng, &mut out);
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "{views} SimCLR views in {secs:.2}s: {:.0} views/s on one thread",
        views as f64 / secs
    );
    Ok(())
}
