//! `selfsup report RUN_DIR`: `RUN_DIR/report/report.html` with PNG plots beside it: loss and
//! learning rate per step, kNN accuracy and collapse diagnostics per epoch (from metrics.jsonl),
//! a t-SNE map of test embeddings coloured by class, and the few-label tables of prove*.json.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::prelude::*;
use selfsup_data::Split;
use selfsup_eval::{
    Features, SubsetSpec, TsneConfig, map_knn_accuracy, stratified_subset, trustworthiness, tsne_2d,
};
use serde_json::Value;

use crate::bail;
use crate::downstream::{Loaded, features_of};
use crate::error::{Context, Error, Result};
use crate::modality::{DownstreamTask, Init, Modality, Picture};

impl<E: std::error::Error + Send + Sync + 'static> From<DrawingAreaErrorKind<E>> for Error {
    fn from(e: DrawingAreaErrorKind<E>) -> Self {
        Error::other(e)
    }
}

/// What `selfsup report` draws.
#[derive(Debug, Clone)]
pub struct ReportOptions {
    /// Run directory written by `selfsup pretrain --out` (metrics.jsonl, checkpoints/).
    pub run_dir: PathBuf,
    /// Test samples in the t-SNE map (stratified by class); 0 leaves the map out.
    pub points: usize,
}

/// The method of a run from its metrics.jsonl (the `start` record's config), when it has one.
pub fn run_method(run_dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(run_dir.join("metrics.jsonl")).ok()?;
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["type"] == "start")
        .and_then(|v| v["config"]["method"]["name"].as_str().map(str::to_string))
}

const FONT: &str = "sans-serif";
/// Where Debian/Ubuntu (fonts-dejavu-core, fonts-liberation), Fedora and Arch keep a sans font.
const FONT_CANDIDATES: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu-sans-fonts/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/liberation-sans/LiberationSans-Regular.ttf",
    "/Library/Fonts/Arial.ttf",
    "/System/Library/Fonts/Supplemental/Arial.ttf",
];

/// Registers a TrueType font for plot text once: `SELFSUP_FONT` if set, else a known system
/// font (plotters' ab_glyph backend has no font of its own).
pub fn register_font() -> Result<()> {
    static REGISTERED: OnceLock<std::result::Result<PathBuf, String>> = OnceLock::new();
    let result = REGISTERED.get_or_init(|| {
        let path = match std::env::var_os("SELFSUP_FONT") {
            Some(p) => PathBuf::from(p),
            None => FONT_CANDIDATES
                .iter()
                .map(PathBuf::from)
                .find(|p| p.is_file())
                .ok_or_else(|| {
                    format!(
                        "no TrueType font found for plot text (looked for {}); install one \
                         (Debian/Ubuntu: apt-get install fonts-dejavu-core) or set \
                         SELFSUP_FONT=/path/to/font.ttf",
                        FONT_CANDIDATES.join(", ")
                    )
                })?,
        };
        let bytes = std::fs::read(&path)
            .map_err(|e| format!("cannot read font {} (SELFSUP_FONT): {e}", path.display()))?;
        // plotters keeps fonts for the life of the process.
        let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
        plotters::style::register_font(FONT, FontStyle::Normal, bytes).map_err(|_| {
            format!(
                "{} is not a TrueType/OpenType font; set SELFSUP_FONT to one",
                path.display()
            )
        })?;
        Ok(path)
    });
    result.clone().map(|_| ()).map_err(Error::msg)
}

/// What metrics.jsonl holds; a record logged again after a resume replaces the earlier one.
#[derive(Default)]
struct Metrics {
    start: Option<Value>,
    /// By global step: (epoch, loss, lr, step_seconds).
    steps: BTreeMap<u64, (u64, f64, f64, f64)>,
    epochs: BTreeMap<u64, Value>,
    skipped_lines: Vec<usize>,
}

fn read_metrics(run_dir: &Path) -> Result<Metrics> {
    let path = run_dir.join("metrics.jsonl");
    if !path.is_file() {
        bail!(
            "{} not found: RUN_DIR must be a directory written by `selfsup pretrain --out RUN_DIR`",
            path.display()
        );
    }
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let mut m = Metrics::default();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        // A run killed mid-write leaves a torn last line: skip (and say so) rather than fail.
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            m.skipped_lines.push(i + 1);
            continue;
        };
        let num = |k: &str| v[k].as_f64();
        match v["type"].as_str() {
            Some("start") => m.start = Some(v),
            Some("step") => match (v["step"].as_u64(), num("loss"), num("lr")) {
                (Some(step), Some(loss), Some(lr)) => {
                    let epoch = v["epoch"].as_u64().unwrap_or(0);
                    let secs = num("step_seconds").unwrap_or(f64::NAN);
                    m.steps.insert(step, (epoch, loss, lr, secs));
                }
                _ => m.skipped_lines.push(i + 1),
            },
            Some("epoch") => match v["epoch"].as_u64() {
                Some(e) => {
                    m.epochs.insert(e, v);
                }
                None => m.skipped_lines.push(i + 1),
            },
            _ => {}
        }
    }
    if m.steps.is_empty() && m.epochs.is_empty() {
        bail!(
            "{} has no step or epoch records yet: run more of `selfsup pretrain` first",
            path.display()
        );
    }
    Ok(m)
}

/// One curve of a panel.
struct Curve {
    label: String,
    points: Vec<(f64, f64)>,
    color: RGBColor,
    /// Draw a dot at every point (per-epoch values; a single point is otherwise invisible).
    markers: bool,
}

/// A line panel: title, axis names, curves, and an optional dashed horizontal reference.
struct Panel {
    title: String,
    x_desc: String,
    y_desc: String,
    curves: Vec<Curve>,
    reference: Option<(f64, String)>,
    /// Integer x ticks (epochs).
    integer_x: bool,
}

/// Tableau-10 colours (matplotlib's default cycle): distinct and readable on white.
const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

fn class_color(c: usize) -> RGBColor {
    if c < PALETTE.len() {
        return PALETTE[c];
    }
    // Beyond 10 classes: golden-angle hues.
    let (r, g, b) = HSLColor((c as f64 * 0.618_034).fract(), 0.65, 0.45).rgb();
    RGBColor(r, g, b)
}

/// `lo..hi` padded by 5 % (or by 1 / |value|·5 % when flat) so curves never touch the frame.
fn padded(values: impl Iterator<Item = f64>) -> Option<std::ops::Range<f64>> {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| {
            (l.min(v), h.max(v))
        });
    if !lo.is_finite() {
        return None;
    }
    let pad = if hi > lo {
        0.05 * (hi - lo)
    } else {
        0.05 * lo.abs().max(1e-3)
    };
    Some(lo - pad..hi + pad)
}

fn draw_panel(area: &DrawingArea<BitMapBackend, Shift>, p: &Panel) -> Result<()> {
    let all = || {
        p.curves
            .iter()
            .flat_map(|c| c.points.iter())
            .copied()
            .chain(p.reference.iter().map(|(y, _)| (f64::NAN, *y)))
    };
    let mut x_range = padded(all().map(|(x, _)| x)).unwrap_or(0.0..1.0);
    if p.integer_x {
        x_range = (x_range.start.floor().min(x_range.end - 1.0) - 0.2)..(x_range.end.ceil() + 0.2);
    }
    let y_range = padded(all().map(|(_, y)| y)).unwrap_or(0.0..1.0);
    let mut chart = ChartBuilder::on(area)
        .caption(&p.title, (FONT, 22))
        .margin(12)
        .x_label_area_size(46)
        .y_label_area_size(72)
        .build_cartesian_2d(x_range.clone(), y_range)?;
    let int_fmt = |x: &f64| {
        if (x - x.round()).abs() < 1e-9 {
            format!("{x:.0}")
        } else {
            String::new()
        }
    };
    let plain_fmt = |x: &f64| format_tick(*x);
    let mut mesh = chart.configure_mesh();
    mesh.x_desc(p.x_desc.as_str())
        .y_desc(p.y_desc.as_str())
        .label_style((FONT, 15))
        .axis_desc_style((FONT, 17))
        .y_label_formatter(&plain_fmt)
        .light_line_style(RGBColor(235, 235, 235));
    let epochs_span = (x_range.end - x_range.start).round() as usize;
    if p.integer_x {
        mesh.x_labels(epochs_span.clamp(2, 12) + 1)
            .x_label_formatter(&int_fmt);
    } else {
        mesh.x_label_formatter(&plain_fmt);
    }
    mesh.draw()?;
    if let Some((y, label)) = &p.reference {
        let style = RGBColor(90, 90, 90).stroke_width(1);
        chart
            .draw_series(DashedLineSeries::new(
                [(x_range.start, *y), (x_range.end, *y)],
                6,
                4,
                style,
            ))?
            .label(label.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
    }
    for c in &p.curves {
        let color = c.color;
        chart
            .draw_series(LineSeries::new(
                c.points.iter().copied(),
                color.stroke_width(2),
            ))?
            .label(c.label.as_str())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        if c.markers {
            chart.draw_series(
                c.points
                    .iter()
                    .map(|&pt| Circle::new(pt, 4, color.filled())),
            )?;
        }
    }
    if p.curves.len() + usize::from(p.reference.is_some()) > 1 {
        chart
            .configure_series_labels()
            .label_font((FONT, 15))
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(180, 180, 180))
            .position(SeriesLabelPosition::UpperRight)
            .draw()?;
    }
    Ok(())
}

/// Short tick labels: 0.06, 1.2e-4, 5,000.
fn format_tick(x: f64) -> String {
    let a = x.abs();
    if a == 0.0 {
        "0".into()
    } else if !(1e-3..1e5).contains(&a) {
        format!("{x:.1e}")
    } else if a >= 100.0 {
        format!("{x:.0}")
    } else {
        let s = format!("{x:.4}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// Panels stacked vertically in one PNG of `width` × (`panel_height` · panels).
fn draw_panels(path: &Path, panels: &[Panel], width: u32, panel_height: u32) -> Result<()> {
    let height = panel_height * panels.len() as u32;
    {
        let root = BitMapBackend::new(path, (width, height)).into_drawing_area();
        root.fill(&WHITE)?;
        for (area, panel) in root.split_evenly((panels.len(), 1)).iter().zip(panels) {
            draw_panel(area, panel)?;
        }
        root.present()
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

/// Diagnostics panels in a 2 × 2 grid.
fn draw_grid(path: &Path, panels: &[Panel]) -> Result<()> {
    let root = BitMapBackend::new(path, (1200, 800)).into_drawing_area();
    root.fill(&WHITE)?;
    for (area, panel) in root.split_evenly((2, 2)).iter().zip(panels) {
        draw_panel(area, panel)?;
    }
    root.present()
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

fn training_panels(m: &Metrics) -> Vec<Panel> {
    let loss: Vec<(f64, f64)> = m
        .steps
        .iter()
        .map(|(&s, &(_, l, _, _))| (s as f64, l))
        .collect();
    let lr: Vec<(f64, f64)> = m
        .steps
        .iter()
        .map(|(&s, &(_, _, lr, _))| (s as f64, lr))
        .collect();
    let epoch_loss: Vec<(f64, f64)> = m
        .epochs
        .values()
        .filter_map(|e| Some((e["step"].as_f64()?, e["loss"].as_f64()?)))
        .collect();
    let mut loss_curves = vec![Curve {
        label: "per step".into(),
        points: loss,
        color: PALETTE[0],
        markers: false,
    }];
    if !epoch_loss.is_empty() {
        loss_curves.push(Curve {
            label: "epoch mean (at its last step)".into(),
            points: epoch_loss,
            color: PALETTE[3],
            markers: true,
        });
    }
    vec![
        Panel {
            title: "Training loss".into(),
            x_desc: "step".into(),
            y_desc: "loss".into(),
            curves: loss_curves,
            reference: None,
            integer_x: false,
        },
        Panel {
            title: "Learning rate".into(),
            x_desc: "step".into(),
            y_desc: "lr".into(),
            curves: vec![Curve {
                label: "lr".into(),
                points: lr,
                color: PALETTE[2],
                markers: false,
            }],
            reference: None,
            integer_x: false,
        },
    ]
}

fn per_epoch(m: &Metrics, get: impl Fn(&Value) -> Option<f64>) -> Vec<(f64, f64)> {
    m.epochs
        .iter()
        .filter_map(|(&e, v)| Some((e as f64, get(v)?)))
        .collect()
}

fn epoch_panel(title: &str, y_desc: &str, points: Vec<(f64, f64)>, color: RGBColor) -> Panel {
    Panel {
        title: title.into(),
        x_desc: "epoch".into(),
        y_desc: y_desc.into(),
        curves: vec![Curve {
            label: y_desc.into(),
            points,
            color,
            markers: true,
        }],
        reference: None,
        integer_x: true,
    }
}

/// The collapse diagnostics of the projector output; `None` if no epoch logged them.
fn diagnostics_panels(m: &Metrics) -> Option<Vec<Panel>> {
    let d = |k: &'static str| per_epoch(m, move |v| v["diagnostics"][k].as_f64());
    let dim = m
        .epochs
        .values()
        .find_map(|v| v["diagnostics"]["dim"].as_f64());
    let std = d("embedding_std");
    if std.is_empty() {
        return None;
    }
    let mut std_panel = epoch_panel(
        "Embedding std (L2-normalised, mean over dims)",
        "std",
        std,
        PALETTE[0],
    );
    let mut rank_panel = epoch_panel(
        "Effective rank (RankMe)",
        "effective rank",
        d("effective_rank"),
        PALETTE[1],
    );
    if let Some(dim) = dim {
        // Uniform on the sphere: std 1/√dim; collapse drives it to 0.
        std_panel.reference = Some((1.0 / dim.sqrt(), format!("1/√dim (dim {dim:.0})")));
        rank_panel.reference = Some((dim, format!("dim = {dim:.0}")));
    }
    Some(vec![
        std_panel,
        rank_panel,
        epoch_panel(
            "Alignment of positive pairs (lower is better)",
            "alignment",
            d("alignment"),
            PALETTE[2],
        ),
        epoch_panel(
            "Uniformity (lower is more uniform)",
            "uniformity",
            d("uniformity"),
            PALETTE[4],
        ),
    ])
}

/// The 2-D map, one colour per class, legend with class names on the right.
fn draw_map(
    path: &Path,
    map: &Features,
    labels: &[u32],
    class_names: &[String],
    title: &str,
) -> Result<()> {
    let root = BitMapBackend::new(path, (1200, 900)).into_drawing_area();
    root.fill(&WHITE)?;
    let (plot_area, legend_area) = root.split_horizontally(930);
    let xs = || (0..map.n).map(|i| map.row(i)[0] as f64);
    let ys = || (0..map.n).map(|i| map.row(i)[1] as f64);
    // Equal spans on both axes (the plot area is about square): t-SNE distances are isotropic.
    let (x_range, y_range) = (
        padded(xs()).unwrap_or(0.0..1.0),
        padded(ys()).unwrap_or(0.0..1.0),
    );
    let half = 0.5 * (x_range.end - x_range.start).max(y_range.end - y_range.start);
    let around = |r: std::ops::Range<f64>| {
        let mid = 0.5 * (r.start + r.end);
        mid - half..mid + half
    };
    let mut chart = ChartBuilder::on(&plot_area)
        .caption(title, (FONT, 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(56)
        .build_cartesian_2d(around(x_range), around(y_range))?;
    let fmt = |x: &f64| format_tick(*x);
    chart
        .configure_mesh()
        .x_desc("t-SNE 1")
        .y_desc("t-SNE 2")
        .label_style((FONT, 14))
        .axis_desc_style((FONT, 16))
        .x_label_formatter(&fmt)
        .y_label_formatter(&fmt)
        .light_line_style(RGBColor(240, 240, 240))
        .draw()?;
    chart.draw_series((0..map.n).map(|i| {
        let r = map.row(i);
        Circle::new(
            (r[0] as f64, r[1] as f64),
            3,
            class_color(labels[i] as usize).mix(0.8).filled(),
        )
    }))?;
    legend_area.draw(&Text::new("class", (20, 60), (FONT, 20).into_font()))?;
    for (c, name) in class_names.iter().enumerate() {
        let y = 100 + 30 * c as i32;
        legend_area.draw(&Circle::new((30, y + 9), 7, class_color(c).filled()))?;
        legend_area.draw(&Text::new(name.as_str(), (46, y), (FONT, 18).into_font()))?;
    }
    root.present()
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// What the embedding map section reports.
struct MapSummary {
    checkpoint: PathBuf,
    epoch: usize,
    points: usize,
    pca_dims: usize,
    perplexity: f32,
    trustworthiness: f64,
    map_knn_top1: f64,
    seconds: f64,
}

/// A t-SNE map of up to `points` test embeddings (stratified by class) of the loaded
/// checkpoint's encoder.
fn embedding_map<M: Modality>(
    loaded: &Loaded<M>,
    points: usize,
    out_dir: &Path,
) -> Result<Option<MapSummary>> {
    if points == 0 {
        return Ok(None);
    }
    let t0 = std::time::Instant::now();
    let task = &loaded.eval.task;
    let n = task.len(Split::Test);
    let labels: Vec<u32> = task
        .labels(Split::Test)
        .into_iter()
        .map(|l| l.unwrap_or(0))
        .collect();
    let class_names = match task.class_names() {
        names if names.is_empty() => vec!["unlabelled".to_string()],
        names => names,
    };
    let seed = loaded.source.config.train.seed;
    let subset = if points < n {
        stratified_subset(
            &labels,
            SubsetSpec::Fraction(points as f64 / n as f64),
            seed,
        )?
    } else {
        (0..n).collect()
    };
    let subset_labels: Vec<u32> = subset.iter().map(|&i| labels[i]).collect();
    let encoder = task.encoder(Init::Pretrained, task.device())?;
    let feats = features_of(task, &encoder, Split::Test, &subset, loaded.eval.batch_size)
        .context("the embedding map needs the labelled test split: pass --data ROOT, or --points 0 to leave it out")?;
    let c = &loaded.source.checkpoint;
    map_from_embeddings(
        out_dir,
        c.path.clone(),
        c.state.epoch,
        feats,
        subset_labels,
        class_names,
        t0,
    )
}

fn map_from_embeddings(
    out_dir: &Path,
    ckpt: PathBuf,
    epoch: usize,
    feats: Features,
    subset_labels: Vec<u32>,
    class_names: Vec<String>,
    t0: std::time::Instant,
) -> Result<Option<MapSummary>> {
    // Perplexity 30 needs ≥ 91 points; smaller maps get the largest perplexity they support.
    let perplexity = 30f32.min(((feats.n.saturating_sub(1)) / 3) as f32);
    if perplexity < 2.0 {
        bail!(
            "the embedding map needs at least 7 test images, got {}",
            feats.n
        );
    }
    let tsne = TsneConfig {
        perplexity,
        ..Default::default()
    };
    let map = tsne_2d(&feats, &tsne)?;
    let k = 10.min((feats.n - 1) / 2);
    let trust = trustworthiness(&feats, &map, k)?;
    let knn = map_knn_accuracy(&map, &subset_labels, k)?;
    let title = format!(
        "t-SNE of {} test embeddings (epoch {epoch}, perplexity {perplexity:.0})",
        feats.n
    );
    draw_map(
        &out_dir.join("tsne.png"),
        &map,
        &subset_labels,
        &class_names,
        &title,
    )?;
    Ok(Some(MapSummary {
        checkpoint: ckpt,
        epoch,
        points: feats.n,
        pca_dims: tsne.pca_dims.min(feats.dim),
        perplexity,
        trustworthiness: trust,
        map_knn_top1: knn,
        seconds: t0.elapsed().as_secs_f64(),
    }))
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A JSON value for a table cell: accuracies (keys ending in `top1`) as percentages.
fn cell(key: &str, v: &Value) -> String {
    match v {
        Value::Number(n) if key.ends_with("top1") || key.ends_with("top5") => n
            .as_f64()
            .map_or(n.to_string(), |f| format!("{:.2}%", 100.0 * f)),
        Value::Number(n) => match n.as_f64() {
            Some(f) if f.fract() != 0.0 => format!("{f:.4}").trim_end_matches('0').to_string(),
            _ => n.to_string(),
        },
        Value::String(s) => esc(s),
        Value::Null => "–".into(),
        other => esc(&other.to_string()),
    }
}

/// Column order of `selfsup prove` tables; other keys follow alphabetically.
const PROVE_COLUMNS: &[&str] = &[
    "fraction",
    "labels",
    "linear_top1",
    "finetune_top1",
    "scratch_top1",
    "knn_top1",
    "knn_random_init_top1",
    "steps",
    "budget",
];

/// An HTML table of JSON objects: the known prove columns first, then the rest.
fn rows_table(rows: &[Value]) -> String {
    let present = |k: &str| rows.iter().any(|r| r.get(k).is_some());
    let mut cols: Vec<String> = PROVE_COLUMNS
        .iter()
        .filter(|k| present(k))
        .map(|k| k.to_string())
        .collect();
    for r in rows {
        if let Some(o) = r.as_object() {
            for k in o.keys() {
                if !cols.contains(k) {
                    cols.push(k.clone());
                }
            }
        }
    }
    let mut h = String::from("<table><tr>");
    for c in &cols {
        let _ = write!(h, "<th>{}</th>", esc(c));
    }
    h.push_str("</tr>");
    for r in rows {
        h.push_str("<tr>");
        for c in &cols {
            let _ = write!(h, "<td>{}</td>", cell(c, &r[c]));
        }
        h.push_str("</tr>");
    }
    h.push_str("</table>");
    h
}

/// Every `prove*.json` of the run directory as (file name, HTML).
fn prove_tables(run_dir: &Path) -> Vec<(String, String)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(run_dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("prove") && n.ends_with(".json"))
        })
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            let parsed = std::fs::read_to_string(&p)
                .map_err(|e| e.to_string())
                .and_then(|t| serde_json::from_str::<Value>(&t).map_err(|e| e.to_string()));
            let html = match parsed {
                Ok(Value::Array(rows)) => rows_table(&rows),
                Ok(Value::Object(o)) => {
                    let rows = o.get("rows").and_then(Value::as_array);
                    let scalars: Vec<String> = o
                        .iter()
                        .filter(|(k, v)| *k != "rows" && !v.is_array() && !v.is_object())
                        .map(|(k, v)| format!("{} = {}", esc(k), cell(k, v)))
                        .collect();
                    let mut h = String::new();
                    if !scalars.is_empty() {
                        let _ = write!(h, "<p>{}</p>", scalars.join(", "));
                    }
                    match rows {
                        Some(rows) => h.push_str(&rows_table(rows)),
                        None => h.push_str(&rows_table(&[Value::Object(o.clone())])),
                    }
                    h
                }
                Ok(other) => format!("<p>unexpected content: {}</p>", esc(&other.to_string())),
                Err(e) => format!(
                    "<p class=\"warn\">cannot read {}: {}</p>",
                    esc(&name),
                    esc(&e)
                ),
            };
            (name, html)
        })
        .collect()
}

/// JSON text with floats at f32 precision (the config's f32 values logged as f64 read
/// 0.49140000343322754 otherwise).
fn short_json(v: &Value) -> String {
    match v {
        Value::Number(n) if n.is_f64() => format!("{}", n.as_f64().unwrap_or(f64::NAN) as f32),
        Value::Array(items) => format!(
            "[{}]",
            items.iter().map(short_json).collect::<Vec<_>>().join(", ")
        ),
        other => other.to_string(),
    }
}

fn config_table(config: &Value) -> String {
    let mut h = String::from("<table>");
    if let Some(sections) = config.as_object() {
        for (section, keys) in sections {
            let items: Vec<String> = match keys.as_object() {
                Some(o) => o
                    .iter()
                    .map(|(k, v)| format!("{}&nbsp;=&nbsp;{}", esc(k), esc(&short_json(v))))
                    .collect(),
                None => vec![esc(&keys.to_string())],
            };
            let _ = write!(
                h,
                "<tr><th>{}</th><td>{}</td></tr>",
                esc(section),
                items.join(", ")
            );
        }
    }
    h.push_str("</table>");
    h
}

/// Headline figures of the run as (name, value) rows.
fn run_figures(m: &Metrics) -> Vec<(String, String)> {
    let mut rows = Vec::new();
    let start = m.start.as_ref();
    if let Some(s) = start {
        if let Some(n) = s["images"].as_u64() {
            rows.push(("training images".into(), n.to_string()));
        }
        if let Some(n) = s["params_backbone"].as_u64() {
            rows.push((
                "backbone parameters".into(),
                format!("{:.3} M", n as f64 / 1e6),
            ));
        }
        if let Some(n) = s["epochs"].as_u64() {
            rows.push(("epochs planned".into(), n.to_string()));
        }
    }
    if let Some((&e, last)) = m.epochs.iter().next_back() {
        rows.push(("epochs done".into(), e.to_string()));
        if let Some(l) = last["loss"].as_f64() {
            rows.push(("last epoch loss".into(), format!("{l:.4}")));
        }
    }
    if let Some((&s, _)) = m.steps.iter().next_back() {
        rows.push(("steps".into(), s.to_string()));
    }
    let secs: f64 = m
        .epochs
        .values()
        .filter_map(|e| e["seconds"].as_f64())
        .sum();
    if secs > 0.0 {
        rows.push(("training time".into(), format!("{:.1} min", secs / 60.0)));
    }
    let vps: Vec<f64> = m
        .epochs
        .values()
        .filter_map(|e| e["views_per_second"].as_f64())
        .collect();
    if !vps.is_empty() {
        rows.push((
            "views/s (mean over epochs)".into(),
            format!("{:.0}", vps.iter().sum::<f64>() / vps.len() as f64),
        ));
    }
    if let Some((e, v)) = m
        .epochs
        .iter()
        .rev()
        .find_map(|(e, v)| Some((e, v["knn_top1"].as_f64()?)))
    {
        rows.push((
            format!("kNN top-1 (epoch {e})"),
            format!("{:.2}%", 100.0 * v),
        ));
    }
    rows
}

const STYLE: &str = "body{font-family:sans-serif;max-width:1250px;margin:2em auto;color:#222}\
table{border-collapse:collapse;margin:0.5em 0}td,th{border:1px solid #ccc;padding:3px 8px;\
text-align:left;vertical-align:top;font-size:14px}th{background:#f3f3f3}img{max-width:100%;\
border:1px solid #eee}.warn{color:#a40}code{background:#f3f3f3;padding:1px 3px}";

/// What `report` wrote.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ReportSummary {
    pub report: PathBuf,
    pub plots: Vec<String>,
    pub prove_tables: usize,
    pub map_points: Option<usize>,
    pub map_trustworthiness: Option<f64>,
    pub map_knn_top1: Option<f64>,
}

/// `RUN_DIR/report/report.html` and its plots, from metrics.jsonl, the prove*.json tables and,
/// with a checkpoint (`loaded`), a t-SNE map of its test embeddings and the modality's
/// pictures.
pub fn report<M: Modality>(
    options: &ReportOptions,
    loaded: Option<&Loaded<M>>,
) -> Result<ReportSummary> {
    let metrics = read_metrics(&options.run_dir)?;
    register_font()?;
    let out_dir = options.run_dir.join("report");
    std::fs::create_dir_all(&out_dir)
        .with_context(|| format!("cannot create {}", out_dir.display()))?;
    // The slow, failure-prone part (checkpoint, dataset) first: a bad --checkpoint or --data
    // fails before any plot is written.
    let map = match loaded {
        Some(l) => embedding_map(l, options.points, &out_dir)?,
        None if options.points > 0 => bail!(
            "no checkpoint in {}: pass --checkpoint CKPT, or --points 0 to leave the embedding map out",
            options.run_dir.join("checkpoints").display()
        ),
        None => None,
    };
    let pictures: Vec<Picture> = match loaded {
        Some(l) => M::report_pictures(&l.source, &l.eval.task, &out_dir)?,
        None => Vec::new(),
    };
    let method = metrics
        .start
        .as_ref()
        .map(|s| &s["config"]["method"]["name"])
        .and_then(Value::as_str)
        .unwrap_or("?");
    let mut plots: Vec<String> = Vec::new();
    let mut html = String::new();
    let title = format!("selfsup run {}", options.run_dir.display());
    let _ = write!(
        html,
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{t}</title><style>{STYLE}</style></head><body><h1>{t}</h1>",
        t = esc(&title)
    );
    if !metrics.skipped_lines.is_empty() {
        let _ = write!(
            html,
            "<p class=\"warn\">metrics.jsonl: skipped unreadable line(s) {:?}</p>",
            metrics.skipped_lines
        );
        eprintln!(
            "warning: metrics.jsonl: skipped unreadable line(s) {:?}",
            metrics.skipped_lines
        );
    }

    html.push_str("<h2>Run</h2><table>");
    let _ = write!(html, "<tr><th>method</th><td>{}</td></tr>", esc(method));
    for (k, v) in run_figures(&metrics) {
        let _ = write!(html, "<tr><th>{}</th><td>{}</td></tr>", esc(&k), esc(&v));
    }
    html.push_str("</table>");
    if let Some(config) = metrics.start.as_ref().map(|s| &s["config"]) {
        html.push_str("<h3>Config</h3>");
        html.push_str(&config_table(config));
    }

    html.push_str("<h2>Training</h2>");
    if metrics.steps.is_empty() {
        html.push_str("<p>No step records in metrics.jsonl.</p>");
    } else {
        draw_panels(
            &out_dir.join("training.png"),
            &training_panels(&metrics),
            1200,
            400,
        )?;
        plots.push("training.png".into());
        html.push_str("<img src=\"training.png\" alt=\"loss and learning rate per step\">");
    }

    let knn = per_epoch(&metrics, |v| v["knn_top1"].as_f64().map(|a| 100.0 * a));
    html.push_str("<h2>kNN accuracy</h2>");
    if knn.is_empty() {
        html.push_str(
            "<p>No kNN evaluation during this run (set <code>train.knn_every</code> to log it).</p>",
        );
    } else {
        let panel = epoch_panel("kNN top-1 on the test split", "top-1 (%)", knn, PALETTE[3]);
        draw_panels(&out_dir.join("knn.png"), &[panel], 1200, 420)?;
        plots.push("knn.png".into());
        html.push_str("<img src=\"knn.png\" alt=\"kNN top-1 per epoch\">");
    }

    // Text runs: the language model on held-out documents (metrics.jsonl `heldout_*`).
    let heldout_accuracy = per_epoch(&metrics, |v| {
        v["heldout_accuracy"].as_f64().map(|a| 100.0 * a)
    });
    if !heldout_accuracy.is_empty() {
        let perplexity = per_epoch(&metrics, |v| v["heldout_perplexity"].as_f64());
        let panels = [
            epoch_panel(
                "accuracy on the held-out documents' predicted tokens",
                "accuracy (%)",
                heldout_accuracy,
                PALETTE[4],
            ),
            epoch_panel(
                "perplexity on the held-out documents",
                "perplexity",
                perplexity,
                PALETTE[5],
            ),
        ];
        draw_panels(&out_dir.join("heldout.png"), &panels, 1200, 380)?;
        plots.push("heldout.png".into());
        html.push_str(
            "<h2>Held-out language modelling</h2><img src=\"heldout.png\" alt=\"held-out accuracy and perplexity per epoch\">",
        );
    }

    html.push_str("<h2>Collapse diagnostics (projector output, per epoch)</h2>");
    match diagnostics_panels(&metrics) {
        Some(panels) => {
            draw_grid(&out_dir.join("diagnostics.png"), &panels)?;
            plots.push("diagnostics.png".into());
            html.push_str("<img src=\"diagnostics.png\" alt=\"collapse diagnostics per epoch\">");
        }
        None => html.push_str("<p>No diagnostics in metrics.jsonl.</p>"),
    }

    html.push_str("<h2>Test embeddings (backbone), t-SNE</h2>");
    match &map {
        Some(s) => {
            plots.push("tsne.png".into());
            let _ = write!(
                html,
                "<p>{} test samples (stratified by class) embedded by the encoder of <code>{}</code> \
                 (epoch {}), PCA to {} dimensions, Barnes-Hut t-SNE (perplexity {:.0}, θ 0.5, 1000 \
                 iterations, PCA start). Trustworthiness (k = 10): {:.3}; kNN top-1 in the 2-D map \
                 (k = 10, leave-one-out): {:.1}%. Computed in {:.0} s.</p>\
                 <img src=\"tsne.png\" alt=\"t-SNE of test embeddings coloured by class\">",
                s.points,
                esc(&s.checkpoint.display().to_string()),
                s.epoch,
                s.pca_dims,
                s.perplexity,
                s.trustworthiness,
                100.0 * s.map_knn_top1,
                s.seconds
            );
        }
        None => html.push_str("<p>Left out (--points 0).</p>"),
    }

    for p in &pictures {
        plots.push(p.file.clone());
        let _ = write!(
            html,
            "<h2>{}</h2><p>{}</p><img src=\"{}\" alt=\"{}\">",
            esc(&p.title),
            esc(&p.caption),
            esc(&p.file),
            esc(&p.caption)
        );
    }

    let proves = prove_tables(&options.run_dir);
    if !proves.is_empty() {
        html.push_str("<h2>Few-label evaluation</h2>");
        for (name, table) in &proves {
            let _ = write!(html, "<h3>{}</h3>{table}", esc(name));
        }
    }
    html.push_str("</body></html>\n");
    let report = out_dir.join("report.html");
    crate::fs::write_atomic(&report, html.as_bytes())?;
    eprintln!("wrote {} with {}", report.display(), plots.join(", "));
    Ok(ReportSummary {
        report,
        plots,
        prove_tables: proves.len(),
        map_points: map.as_ref().map(|s| s.points),
        map_trustworthiness: map.as_ref().map(|s| s.trustworthiness),
        map_knn_top1: map.as_ref().map(|s| s.map_knn_top1),
    })
}
