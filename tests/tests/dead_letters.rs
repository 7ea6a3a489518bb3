//! Bad frames go to the dead-letter output with a reason, and every other frame is processed.

use std::process::Command;

use vitrine_tests::{duckdb, root, temp_dir, vitrine_bin};

#[test]
fn bad_frames_are_dead_lettered_naming_what_they_are_and_odd_good_ones_processed() {
    let dir = temp_dir("dead-letters");
    let frames = dir.join("frames");
    std::fs::create_dir_all(&frames).unwrap();
    // 12 real frames of the sample stream, one a second.
    let status = Command::new("ffmpeg")
        .args(["-loglevel", "error", "-i"])
        .arg(root().join("examples/sample/shopping.mp4"))
        .args(["-vf", "fps=1", "-frames:v", "12", "-q:v", "3"])
        .arg(frames.join("frame_%03d.jpg"))
        .status()
        .expect("ffmpeg runs (scripts/setup.sh installs it)");
    assert!(status.success());
    let real = std::fs::read(frames.join("frame_005.jpg")).unwrap();
    // Sorted between the real frames, each bad input with the words its reason must have.
    let mut corrupt = real.clone();
    corrupt.truncate(64);
    corrupt.extend(std::iter::repeat_n(0x5a, 4000));
    let scan = scan_start(&real);
    let mut damaged = real.clone();
    damaged[scan + 3000..scan + 3064].iter_mut().enumerate().for_each(|(i, b)| *b = (i * 37 % 254) as u8);
    let mut cut_and_closed = real[..scan + (real.len() - scan) / 2].to_vec();
    cut_and_closed.extend([0xFF, 0xD9]);
    let mut huge = real.clone();
    let sof = huge.windows(2).position(|w| w == [0xFF, 0xC0]).expect("a baseline JPEG");
    huge[sof + 5..sof + 9].copy_from_slice(&[0xEA, 0x60, 0xEA, 0x60]); // 60000 x 60000
    let png = ffmpeg_frame(&["-f", "image2", "-c:v", "png"]);
    let bad: Vec<(&str, Vec<u8>, &[&str])> = vec![
        ("frame_002b_empty.jpg", Vec::new(), &["empty"]),
        ("frame_003b_png.jpg", png, &["PNG"]),
        ("frame_004b_html.jpg", b"<!DOCTYPE html><html><body>502 Bad Gateway</body></html>".to_vec(), &["HTML"]),
        ("frame_005b_truncated.jpg", real[..real.len() / 2].to_vec(), &["truncated"]),
        ("frame_006b_damaged.jpg", damaged, &["damaged"]),
        ("frame_007b_cut_and_closed.jpg", cut_and_closed, &["damaged", "cut short"]),
        ("frame_008b_huge.jpg", huge, &["60000x60000", "decode.max_side"]),
        ("frame_009b_corrupt.jpg", corrupt, &[]),
    ];
    for (name, bytes, _) in &bad {
        std::fs::write(frames.join(name), bytes).unwrap();
    }
    // Good inputs that look odd: a grayscale JPEG, and a JPEG with bytes after its end.
    std::fs::write(frames.join("frame_010b_gray.jpg"), ffmpeg_frame(&["-pix_fmt", "gray", "-f", "image2"])).unwrap();
    let mut padded = real.clone();
    padded.extend(vec![0u8; 4096]);
    std::fs::write(frames.join("frame_011b_padded.jpg"), padded).unwrap();

    let out_dir = dir.join("out");
    let spec = dir.join("frames.yaml");
    std::fs::write(
        &spec,
        format!(
            r#"
name: dead-letters
sources:
  - kind: frames
    stream_id: folder
    dir: {frames}
    fps: 1
    pace: fast
model:
  path: {root}/models/zoo/ssd-mobilenet-v2-coco-quant/model.onnx
catalog:
  path: {root}/examples/demo-catalog.jsonl
  watch: false
sinks:
  parquet:
    path: {out}
"#,
            frames = frames.display(),
            root = root().display(),
            out = out_dir.display()
        ),
    )
    .unwrap();
    let out = Command::new(vitrine_bin()).arg("run").arg(&spec).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // 12 + 8 bad + 2 odd but good: every frame read is processed or a dead letter.
    assert!(stderr.contains("22 frames"), "{stderr}");

    let letters: Vec<serde_json::Value> = std::fs::read_to_string(out_dir.join("dead-letter.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(letters.len(), bad.len(), "{letters:#?}");
    for (letter, (name, bytes, words)) in letters.iter().zip(&bad) {
        assert!(letter["origin"].as_str().unwrap().ends_with(name), "{letter}");
        assert_eq!(letter["stage"], "decode");
        let reason = letter["reason"].as_str().unwrap();
        assert!(reason.len() > 10, "a reason in words: {letter}");
        assert!(words.iter().all(|w| reason.contains(w)), "{name}: {reason}");
        assert_eq!(letter["bytes"].as_u64().unwrap(), bytes.len() as u64);
    }

    // Every good frame was processed (the summary's 14 frames: 12 detected, 2 dead letters);
    // the detections table holds the boxes of good frames only.
    let bad_seqs: Vec<u64> = letters.iter().map(|l| l["seq"].as_u64().unwrap()).collect();
    let good = duckdb(&format!(
        "SELECT list(DISTINCT seq ORDER BY seq) FROM read_parquet('{}/detections/**/*.parquet')",
        out_dir.display()
    ));
    let good: Vec<u64> = good[0][0].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
    assert!(good.len() >= 6 && good.len() <= 14, "frames with boxes: {good:?}");
    assert!(bad_seqs.iter().all(|s| !good.contains(s)), "{bad_seqs:?} vs {good:?}");
}

/// Where a JPEG's compressed data starts: after its start-of-scan segment.
fn scan_start(jpeg: &[u8]) -> usize {
    let sos = jpeg.windows(2).position(|w| w == [0xFF, 0xDA]).expect("a start of scan");
    sos + 2 + u16::from_be_bytes([jpeg[sos + 2], jpeg[sos + 3]]) as usize
}

/// One frame of the sample show (at 3 s) encoded by ffmpeg with `args` (format, pixels).
fn ffmpeg_frame(args: &[&str]) -> Vec<u8> {
    let out = Command::new("ffmpeg")
        .args(["-loglevel", "error", "-ss", "3", "-i"])
        .arg(root().join("examples/sample/shopping.mp4"))
        .args(["-frames:v", "1"])
        .args(args)
        .arg("-")
        .output()
        .expect("ffmpeg runs");
    assert!(out.status.success() && !out.stdout.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}
