//! vitrine's image embedder (zune-jpeg/libjpeg-turbo decode, fast_image_resize, ort) against
//! Python onnxruntime (Pillow decode, crop and resize) on the same real photos and on regions
//! of one photo, as a catalog picture and a detection's crop are embedded.
//! The reference is made by models/zoo/mobilenetv2-imagenet-embedder/reference/make_reference.py.
//!
//! Tolerance: the two decoders and resizers differ slightly, so each embedding must have a
//! cosine similarity of 0.99 or more with the reference's (unrelated pictures are at 0.45-0.6).

mod common;

use common::root;
use vitrine_models::{
    find_runtime_library, Crop, DecodeLimits, Embedder, EmbedderConfig, Embedding, Fit, InputSpec, Preparer, Runtime,
};
use vitrine_schemas::spec::ExecutionProvider;

const MODEL: &str = "models/zoo/mobilenetv2-imagenet-embedder/model.onnx";

fn embedder(side: u32) -> Embedder {
    load(side, None)
}

/// vitrine's embedder as a run loads it: with its centre.
fn centred(side: u32) -> Embedder {
    load(side, Some(root().join("models/zoo/mobilenetv2-imagenet-embedder/centre.txt")))
}

fn load(side: u32, centre: Option<std::path::PathBuf>) -> Embedder {
    let root = root();
    let library = find_runtime_library(None, &[&root]).expect("ONNX Runtime missing: run scripts/setup.sh");
    let runtime = Runtime::load(&library).unwrap();
    let config = EmbedderConfig {
        model: root.join(MODEL),
        side,
        intra_threads: 1,
        execution_provider: ExecutionProvider::Cpu,
        device_id: 0,
        centre,
        colour: 0.0,
    };
    Embedder::load(&runtime, &config).unwrap()
}

struct Reference {
    photo: String,
    what: String,
    region: Option<Crop>,
    embedding: Embedding,
}

fn reference() -> Vec<Reference> {
    let path = root().join("models/zoo/mobilenetv2-imagenet-embedder/reference/embeddings.json");
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    assert_eq!(json["side"], 224);
    json["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let values = e["embedding"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
            let region = e["region"].as_array().map(|r| {
                let v: Vec<u32> = r.iter().map(|v| v.as_u64().unwrap() as u32).collect();
                Crop { x: v[0], y: v[1], width: v[2], height: v[3] }
            });
            let photo = e["photo"].as_str().unwrap().to_string();
            let what = e["what"].as_str().unwrap_or(&photo).to_string();
            Reference { photo, what, region, embedding: Embedding::normalized(values) }
        })
        .collect()
}

fn fixture(photo: &str) -> Vec<u8> {
    std::fs::read(root().join("models/tests/fixtures").join(photo)).unwrap()
}

#[test]
fn the_model_takes_any_picture_size_and_gives_1280_features() {
    let e = embedder(224);
    assert_eq!(e.dimensions(), 1280);
    assert_eq!(e.name(), "mobilenetv2-imagenet-embedder");
    assert_eq!(embedder(160).input(), InputSpec { width: 160, height: 160, fit: Fit::Stretch });
}

#[test]
fn embeddings_match_python_onnxruntime_on_real_photos_and_regions() {
    let mut embedder = embedder(224);
    let whole = DecodeLimits { crop_bars: false, at_model_scale: false, ..DecodeLimits::default() };
    let mut checked = 0;
    for want in reference() {
        let jpeg = fixture(&want.photo);
        let got = match want.region {
            None => embedder.embed_jpeg(&jpeg, whole).unwrap(),
            Some(region) => {
                let mut preparer = Preparer::new(whole);
                preparer.prepare(&jpeg, InputSpec { width: 300, height: 300, fit: Fit::Stretch }).unwrap();
                let crop = preparer.last_region(region, 224, 224).expect("the region is inside the photo");
                embedder.embed(&[&crop]).unwrap().remove(0)
            }
        };
        let similarity = got.similarity(&want.embedding);
        assert!(similarity >= 0.99, "{}: similarity to the reference {similarity:.4}", want.what);
        checked += 1;
    }
    assert_eq!(checked, 8);
}

#[test]
fn a_crop_looks_most_like_the_photo_of_its_own_product() {
    // The shelf's thumbnails are the fixtures' photos, small, on a desk: each crop's closest
    // photo is its own, at the model's scale of decode (1/2 for the SSD) and at 160 a side too.
    for side in [224, 160] {
        let mut embedder = embedder(side);
        let photos: Vec<(&str, Embedding)> = [("cup", "coffee.jpg"), ("apple", "apple.jpg"), ("oranges", "fruits.jpg")]
            .into_iter()
            .map(|(what, photo)| (what, embedder.embed_jpeg(&fixture(photo), DecodeLimits::default()).unwrap()))
            .collect();
        let mut preparer = Preparer::new(DecodeLimits::default());
        preparer.prepare(&fixture("shelf.jpg"), InputSpec { width: 300, height: 300, fit: Fit::Stretch }).unwrap();
        for want in reference().into_iter().filter(|r| r.region.is_some()) {
            if want.what == "oranges" {
                continue; // the shelf's oranges are another photo than fruits.jpg
            }
            let crop = preparer.last_region(want.region.unwrap(), side, side).unwrap();
            let got = embedder.embed(&[&crop]).unwrap().remove(0);
            let (best, score) =
                photos.iter().map(|(what, e)| (*what, got.similarity(e))).max_by(|a, b| a.1.total_cmp(&b.1)).unwrap();
            assert!(want.what.starts_with(best), "{side}: {} looks most like {best} ({score:.2})", want.what);
        }
    }
}

#[test]
fn several_pictures_embed_in_one_run_as_they_do_alone() {
    let mut embedder = embedder(224);
    let mut preparer = Preparer::new(DecodeLimits::default());
    preparer.prepare(&fixture("shelf.jpg"), InputSpec { width: 300, height: 300, fit: Fit::Stretch }).unwrap();
    let regions = [Crop { x: 30, y: 60, width: 210, height: 140 }, Crop { x: 280, y: 60, width: 210, height: 210 }];
    let crops: Vec<_> = regions.iter().map(|r| preparer.last_region(*r, 224, 224).unwrap()).collect();
    let together = embedder.embed(&[&crops[0], &crops[1]]).unwrap();
    for (crop, batched) in crops.iter().zip(&together) {
        let alone = embedder.embed(&[crop]).unwrap().remove(0);
        assert!(alone.similarity(batched) > 0.9999);
    }
    assert!(preparer.last_region(Crop { x: 5000, y: 0, width: 10, height: 10 }, 224, 224).is_none());
}

#[test]
fn the_centre_takes_unrelated_photos_apart_and_keeps_a_crop_closest_to_its_own_photo() {
    let photos = ["coffee.jpg", "apple.jpg", "fruits.jpg", "astronaut.jpg"];
    let pairs = |e: &mut Embedder| -> Vec<f32> {
        let v: Vec<Embedding> =
            photos.iter().map(|p| e.embed_jpeg(&fixture(p), DecodeLimits::default()).unwrap()).collect();
        vec![v[0].similarity(&v[3]), v[1].similarity(&v[3]), v[0].similarity(&v[1])]
    };
    let (raw, with_centre) = (pairs(&mut embedder(224)), pairs(&mut centred(224)));
    for (r, c) in raw.iter().zip(&with_centre) {
        // A cup, an apple and an astronaut: alike by half without the centre, hardly with it.
        assert!(*r > 0.35 && *c < 0.25 && c < r, "raw {raw:?}, centred {with_centre:?}");
    }
    // The shelf's apple is still closest to the apple photo, by a wide lead.
    let mut e = centred(224);
    let mut preparer = Preparer::new(DecodeLimits::default());
    preparer.prepare(&fixture("shelf.jpg"), InputSpec { width: 300, height: 300, fit: Fit::Stretch }).unwrap();
    let apple = preparer.last_region(Crop { x: 280, y: 60, width: 210, height: 210 }, 224, 224).unwrap();
    let crop = e.embed(&[&apple]).unwrap().remove(0);
    let mut to = |p: &str| crop.similarity(&e.embed_jpeg(&fixture(p), DecodeLimits::default()).unwrap());
    let (own, cup) = (to("apple.jpg"), to("coffee.jpg"));
    assert!(own > 0.5 && own - cup > 0.3, "apple {own:.2}, cup {cup:.2}");
}

#[test]
fn a_centre_of_the_wrong_length_is_refused_naming_the_file() {
    let dir = std::env::temp_dir().join(format!("vitrine-centre-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("centre.txt");
    std::fs::write(&file, "0.1\n0.2\n").unwrap();
    let library = find_runtime_library(None, &[&root()]).unwrap();
    let config = EmbedderConfig {
        model: root().join(MODEL),
        side: 224,
        intra_threads: 1,
        execution_provider: ExecutionProvider::Cpu,
        device_id: 0,
        centre: Some(file.clone()),
        colour: 0.0,
    };
    let error = Embedder::load(&Runtime::load(&library).unwrap(), &config).unwrap_err().to_string();
    assert!(error.contains("centre.txt") && error.contains("has 2 numbers, the embedder's output 1280"), "{error}");
}
