//! Pretrain a tiny SimCLR encoder on an image folder and score it with kNN, through the
//! library: `cargo run --release -p selfsup --example pretrain_knn -- DATA [RUN_DIR]`
//! (DATA: an image-folder tree with train/ and test/, e.g. ../shared/data/cifar10).

fn main() -> selfsup::Result<()> {
    let mut args = std::env::args().skip(1);
    let data = args.next().expect("usage: pretrain_knn DATA [RUN_DIR]");
    let out = args.next().unwrap_or_else(|| "runs/example".into());
    let run = selfsup::Pretrain::new(&out)
        .method("simclr")
        .data(&data)
        .set("model.width=8")
        .set("data.limit=5120")
        .set("train.epochs=3")
        .set("optim.lr=0.3")
        .run()?;
    let pretrained = selfsup::Evaluate::checkpoint(&run.checkpoint).knn()?;
    let random = selfsup::Evaluate::checkpoint(&run.checkpoint)
        .random_init(true)
        .knn()?;
    println!(
        "kNN top-1: {:.1} % pretrained, {:.1} % at random init ({} test images)",
        100.0 * pretrained.knn_top1,
        100.0 * random.knn_top1,
        pretrained.images
    );
    Ok(())
}
