//! Criterion micro-benchmarks of the stages around the model: what each costs a frame.
//!
//!     cargo bench -p vitrine-benches --bench stages
//!
//! - decode + resize of a 1280x720 frame of the sample stream (stretch to 300x300 for the
//!   SSD, letterbox to 320x320 for YOLO), decoded whole and at the model's scale (1/2 here;
//!   libjpeg-turbo both), against zune-jpeg's decode alone;
//! - libjpeg-turbo's decode alone of the sample's 180 frames at 1/1, 1/2, 1/4 and 1/8 (at 1/8
//!   little is left but its Huffman pass: the floor of any pipeline of JPEG frames);
//! - NMS of 1000 candidate boxes of 80 classes;
//! - tracking and debounce of a frame with 6 detections;
//! - the catalog join and events (differential dataflow) for 1000 frames against a catalog
//!   of 1000 products;
//! - matching's image embedder on one crop of the sample frame at 224 and 160 a side, with the
//!   default SSD's run on the same frame as the baseline (printed as a ratio).

use std::hint::black_box;
use std::process::Command;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use differential_dataflow::input::Input;
use timely::dataflow::operators::core::Probe;
use timely::dataflow::{InputHandle, ProbeHandle};
use vitrine_models::{
    find_runtime_library, nms, Candidate, Crop, DecodeLimits, Detector, DetectorConfig, Embedder, EmbedderConfig, Fit,
    InputSpec, Preparer, Runtime, ScaledDecoder,
};
use vitrine_operators::{product_events, DebounceConfig, Debouncer, ReplayPoints, Tracker, TrackerConfig};
use vitrine_schemas::spec::{DecoderKind, ExecutionProvider};
use vitrine_schemas::{BBox, CatalogItem, Detection, FrameDetections, Money};

fn root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// One 1280x720 frame of the sample stream (the mug on screen), as the video source makes it.
fn sample_jpeg() -> Vec<u8> {
    let out = Command::new("ffmpeg")
        .args(["-loglevel", "error", "-ss", "5", "-i"])
        .arg(root().join("examples/sample/shopping.mp4"))
        .args(["-frames:v", "1", "-f", "image2pipe", "-c:v", "mjpeg", "-q:v", "3", "-"])
        .output()
        .expect("ffmpeg (scripts/setup.sh installs it)");
    assert!(out.status.success() && !out.stdout.is_empty());
    out.stdout
}

/// The sample stream's 180 frames at 5 frames/s, as the video source makes them.
fn sample_stream_jpegs() -> Vec<Vec<u8>> {
    let dir = std::env::temp_dir().join(format!("vitrine-stages-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let status = Command::new("ffmpeg")
        .args(["-loglevel", "error", "-i"])
        .arg(root().join("examples/sample/shopping.mp4"))
        .args(["-vf", "fps=5", "-q:v", "3"])
        .arg(dir.join("%03d.jpg"))
        .status()
        .expect("ffmpeg (scripts/setup.sh installs it)");
    assert!(status.success());
    let mut paths: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    paths.sort();
    let frames = paths.iter().map(|p| std::fs::read(p).unwrap()).collect();
    std::fs::remove_dir_all(&dir).unwrap();
    frames
}

fn decode(c: &mut Criterion) {
    let jpeg = sample_jpeg();
    let mut group = c.benchmark_group("decode");
    group.throughput(Throughput::Elements(1));
    group.bench_function("zune-jpeg decode only, 1280x720", |b| {
        b.iter(|| {
            let mut d = zune_jpeg::JpegDecoder::new(black_box(&jpeg[..]));
            black_box(d.decode().unwrap())
        })
    });
    group.finish();
    // Every frame of the sample stream (as `vitrine bench` takes them): frames differ in detail.
    let frames = sample_stream_jpegs();
    let mut group = c.benchmark_group("decode");
    group.throughput(Throughput::Elements(frames.len() as u64)).sample_size(10);
    let mut turbo = ScaledDecoder::new().unwrap();
    for denominator in [1, 2, 4, 8] {
        group.bench_function(
            format!("libjpeg-turbo decode only, the sample's 1280x720 frames at 1/{denominator}"),
            |b| {
                b.iter(|| {
                    for jpeg in &frames {
                        black_box(turbo.decode(black_box(jpeg), denominator).unwrap());
                    }
                })
            },
        );
    }
    group.finish();
    let mut group = c.benchmark_group("decode");
    group.throughput(Throughput::Elements(1));
    for (scale, at_model_scale) in [("full size", false), ("model scale", true)] {
        let mut preparer = Preparer::new(DecodeLimits { at_model_scale, ..DecodeLimits::default() });
        for (name, input) in [
            ("decode + bars + stretch to 300x300", InputSpec { width: 300, height: 300, fit: Fit::Stretch }),
            ("decode + bars + letterbox to 320x320", InputSpec { width: 320, height: 320, fit: Fit::Letterbox }),
        ] {
            group.bench_function(format!("{name}, decoded at {scale}"), |b| {
                b.iter(|| black_box(preparer.prepare(black_box(&jpeg), input).unwrap()))
            });
        }
    }
    group.finish();
}

/// A deterministic pseudo-random sequence, so every run measures the same boxes.
fn lcg(state: &mut u64) -> f32 {
    *state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (*state >> 40) as f32 / (1u64 << 24) as f32
}

fn suppression(c: &mut Criterion) {
    let mut s = 7;
    let candidates: Vec<Candidate> = (0..1000)
        .map(|_| {
            let (x, y) = (lcg(&mut s) * 0.8, lcg(&mut s) * 0.8);
            Candidate {
                class_id: (lcg(&mut s) * 80.0) as u32,
                score: lcg(&mut s),
                bbox: BBox { x0: x, y0: y, x1: x + 0.2, y1: y + 0.2 },
            }
        })
        .collect();
    c.bench_function("nms: 1000 candidates, 80 classes", |b| {
        b.iter(|| black_box(nms(black_box(candidates.clone()), 0.45, 100)))
    });
}

fn frame(seq: u64) -> FrameDetections {
    let detections = ["cup", "apple", "person", "bottle", "cup", "orange"]
        .iter()
        .enumerate()
        .map(|(i, label)| {
            let x = 0.1 * i as f32 + 0.002 * (seq % 10) as f32;
            Detection {
                label: label.to_string(),
                class_id: i as u32,
                score: 0.4 + 0.1 * (i % 5) as f32,
                bbox: BBox { x0: x, y0: 0.3, x1: x + 0.12, y1: 0.6 },
                track_id: None,
                embedding: None,
                product: None,
            }
        })
        .collect();
    FrameDetections {
        stream_id: "bench".into(),
        seq,
        pts_ms: seq as i64 * 200,
        captured_at_ms: 0,
        width: 1280,
        height: 720,
        model: "bench".into(),
        position: Default::default(),
        detections,
        carried: false,
    }
}

fn track_and_debounce(c: &mut Criterion) {
    let frames: Vec<FrameDetections> = (0..1000).map(frame).collect();
    let mut group = c.benchmark_group("per frame");
    group.throughput(Throughput::Elements(frames.len() as u64));
    group.bench_function("track, 6 detections a frame (1000 frames)", |b| {
        b.iter(|| {
            let mut tracker = Tracker::new(TrackerConfig::default());
            for f in &frames {
                let mut f = f.clone();
                tracker.track(&mut f);
                black_box(&f);
            }
        })
    });
    group.bench_function("debounce, 6 detections a frame (1000 frames)", |b| {
        b.iter(|| {
            let mut debouncer = Debouncer::new(DebounceConfig::simple(0.5, 3, 5, 1500));
            for f in &frames {
                black_box(debouncer.observe(f));
            }
        })
    });
    group.finish();
}

fn catalog_join(c: &mut Criterion) {
    let labels = ["cup", "apple", "person", "bottle", "orange"];
    let catalog: Vec<CatalogItem> = (0..1000)
        .map(|i| CatalogItem {
            sku: format!("SKU-{i}"),
            label: labels[i % labels.len()].into(),
            title: format!("product {i}"),
            price: Money(100 + i as i64),
            currency: "EUR".into(),
            image: None,
            url: None,
            in_stock: true,
            streams: vec![format!("show-{}", i % 50)],
        })
        .collect();
    let mut group = c.benchmark_group("dataflow");
    group.throughput(Throughput::Elements(1000));
    group.sample_size(10);
    group.bench_function("debounce + catalog join + events, 1000 frames, 1000 products", |b| {
        b.iter(|| {
            let (catalog, frames) = (catalog.clone(), (0..1000).map(frame).collect::<Vec<_>>());
            timely::execute_directly(move |worker| {
                let mut frames_in = InputHandle::new();
                let probe = ProbeHandle::new();
                let mut catalog_in = worker.dataflow::<u64, _, _>(|scope| {
                    let (catalog_in, catalog) = scope.new_collection::<(String, CatalogItem), isize>();
                    let config = DebounceConfig::simple(0.5, 3, 5, 1500);
                    product_events(frames_in.to_stream(scope), catalog, config, ReplayPoints::default())
                        .probe_with(&probe);
                    catalog_in
                });
                for item in catalog {
                    catalog_in.update((item.label.clone(), item), 1);
                }
                for (t, mut f) in frames.into_iter().enumerate() {
                    f.stream_id = format!("show-{}", t % 50);
                    frames_in.send(f);
                    let next = t as u64 + 1;
                    frames_in.advance_to(next);
                    catalog_in.advance_to(next);
                    catalog_in.flush();
                    if next.is_multiple_of(100) {
                        while probe.less_than(frames_in.time()) {
                            worker.step();
                        }
                    }
                }
            });
        })
    });
    group.finish();
}

/// Matching's cost: one crop through the embedder, against one SSD run on the frame (one core).
#[allow(clippy::print_stdout)] // the ratios are the bench's report
fn embed(c: &mut Criterion) {
    let root = root();
    let library = find_runtime_library(None, &[&root]).expect("ONNX Runtime missing: run scripts/setup.sh");
    let runtime = Runtime::load(&library).unwrap();
    let mut detector = Detector::load(
        &runtime,
        &DetectorConfig {
            model: root.join("models/zoo/ssd-mobilenet-v2-coco-quant/model.onnx"),
            labels: None,
            decoder: DecoderKind::SsdPostprocessed,
            intra_threads: 1,
            min_score: 0.3,
            input_size: None,
            nms_iou: 0.45,
            execution_provider: ExecutionProvider::Cpu,
            device_id: 0,
        },
    )
    .unwrap();
    let mut preparer = Preparer::new(DecodeLimits::default());
    let frame = preparer.prepare(&sample_jpeg(), detector.input()).unwrap();
    // The mug, about a quarter of the frame.
    let mug = Crop { x: 480, y: 200, width: 320, height: 320 };
    let mut group = c.benchmark_group("matching");
    group.throughput(Throughput::Elements(1));
    let mut each = Vec::new();
    group
        .bench_function("ssd detect, one frame (baseline)", |b| b.iter(|| black_box(detector.detect(&frame).unwrap())));
    each.push(("ssd", mean_ms(|| drop(detector.detect(&frame).unwrap()))));
    for side in [224, 160] {
        let config = EmbedderConfig {
            model: root.join("models/zoo/mobilenetv2-imagenet-embedder/model.onnx"),
            side,
            intra_threads: 1,
            execution_provider: ExecutionProvider::Cpu,
            device_id: 0,
            centre: None,
            colour: 0.0,
        };
        let mut embedder = Embedder::load(&runtime, &config).unwrap();
        let crop = preparer.last_region(mug, side, side).unwrap();
        group.bench_function(format!("embed one crop at {side}x{side}"), |b| {
            b.iter(|| black_box(embedder.embed(&[&crop]).unwrap()))
        });
        each.push((if side == 224 { "embed 224" } else { "embed 160" }, mean_ms(|| drop(embedder.embed(&[&crop])))));
    }
    group.finish();
    let ssd = each[0].1;
    for (what, ms) in &each {
        println!("matching: {what:10} {ms:6.2} ms, {:.2} of an SSD run", ms / ssd);
    }
}

/// Mean time of `f` over 50 runs after 5 warm ones, in ms.
fn mean_ms(mut f: impl FnMut()) -> f64 {
    (0..5).for_each(|_| f());
    let started = std::time::Instant::now();
    (0..50).for_each(|_| f());
    started.elapsed().as_secs_f64() * 1000.0 / 50.0
}

criterion_group!(benches, decode, suppression, track_and_debounce, catalog_join, embed);
criterion_main!(benches);
