//! The viewer page in a real browser (Debian's headless Chromium, driven by playwright-core
//! from npm; tests/browser/viewer.cjs) on the sample stream in real time:
//! - each product card appears within 0.5 s of the media time the product enters, and goes
//!   within 0.5 s of the media time it leaves, by the page's own player clock;
//! - a page opened late shows the product already on screen (the snapshot);
//! - a page whose connection drops while events happen gets every one of them on reconnect.

use std::process::{Command, Stdio};

use serde_json::Value;
use vitrine_tests::{free_port, replace, root, temp_dir, vitrine_bin};

const SLACK_MS: i64 = 500;

#[test]
fn the_viewer_page_shows_cards_in_sync_with_its_video_joins_late_and_resumes() {
    let root = root();
    let playwright = root.join(".vitrine/node/node_modules/playwright-core");
    assert!(playwright.exists(), "playwright-core is missing: run scripts/setup.sh");
    let dir = temp_dir("browser");
    let examples = root.join("examples");
    let mut spec = std::fs::read_to_string(examples.join("demo.yaml")).unwrap();
    spec = replace(&spec, "input: sample/", &format!("input: {}/sample/", examples.display()));
    spec = replace(&spec, "loop: true", "loop: false");
    spec = replace(&spec, "path: ../models/", &format!("path: {}/models/", root.display()));
    spec = replace(&spec, "path: demo-catalog.jsonl", &format!("path: {}/demo-catalog.jsonl", examples.display()));
    spec = replace(&spec, "path: ../out/", &format!("path: {}/", dir.join("out").display()));
    let spec_path = dir.join("browser.yaml");
    std::fs::write(&spec_path, spec).unwrap();
    let port = free_port();
    let log = std::fs::File::create(dir.join("vitrine.log")).unwrap();
    let mut server = Command::new(vitrine_bin())
        .arg("run")
        .arg(&spec_path)
        .env("VITRINE_LISTEN", format!("127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    // Wait for the server, then let the browser watch 44 s (the page plays 5 s behind the
    // pipeline, through the 36 s stream).
    let ready = (0..300).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(100));
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    assert!(ready, "the server did not come up; see {}", dir.join("vitrine.log").display());
    let out = Command::new("node")
        .arg(root.join("tests/browser/viewer.cjs"))
        .arg(format!("http://127.0.0.1:{port}"))
        .arg("44")
        .env("NODE_PATH", root.join(".vitrine/node/node_modules"))
        .output()
        .unwrap();
    let _ = server.kill();
    let _ = server.wait();
    assert!(out.status.success(), "the browser script failed: {}", String::from_utf8_lossy(&out.stderr));
    let seen: Value = serde_json::from_slice(&out.stdout).unwrap();

    // Each product's card, by the page's player clock, against the events' media times.
    let timeline = seen["steady_timeline"].as_array().unwrap();
    let pts = |kind: &str, sku: &str| {
        timeline.iter().find(|e| e["kind"] == kind && e["sku"] == sku).map(|e| e["pts_ms"].as_i64().unwrap())
    };
    let samples: Vec<(i64, Vec<String>)> = seen["samples"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| {
            let t = s["t"].as_i64()?;
            Some((t, s["cards"].as_array().unwrap().iter().map(|c| c.as_str().unwrap().to_string()).collect()))
        })
        .collect();
    assert!(samples.len() > 100, "the page's player never ran: {seen}");
    // By the player's clock: never shown before the product enters or from SLACK_MS after it
    // leaves; always shown from SLACK_MS after it enters until it leaves. (Judged per sample,
    // so a player that seeks is judged on the times it really showed.)
    for sku in ["MUG-ESP-01", "APL-GALA-1KG", "ORG-VAL-2KG"] {
        let (enter, leave) = (pts("appeared", sku).expect(sku), pts("disappeared", sku).expect(sku));
        let mut checked = 0;
        for (t, cards) in &samples {
            let shown = cards.iter().any(|c| c == sku);
            if *t < enter || *t >= leave + SLACK_MS {
                assert!(!shown, "{sku} is on screen from {enter} to {leave} ms, its card showed at player time {t} ms");
            } else if *t >= enter + SLACK_MS && *t < leave {
                assert!(shown, "{sku} is on screen from {enter} to {leave} ms, no card at player time {t} ms");
                checked += 1;
            }
        }
        assert!(checked > 50, "the player hardly played {sku}'s time on screen ({checked} samples)");
    }
    // Cards show the pictures' thumbnails, loaded (at most 256 pixels a side).
    let pictures = seen["pictures"].as_array().unwrap();
    assert!(!pictures.is_empty(), "no card picture loaded: {seen}");
    for p in pictures {
        assert!(p["src"].as_str().unwrap().ends_with("-256.jpg"), "{p}");
        assert!(p["width"].as_u64().unwrap() <= 256 && p["height"].as_u64().unwrap() <= 256, "{p}");
    }
    // Late: the mug, on screen when the page opened, is shown from the snapshot.
    assert!(seen["late"].as_array().unwrap().iter().any(|c| c == "MUG-ESP-01"), "late page: {}", seen["late"]);
    // Resumed: offline while the mug left, and no event lost.
    assert!(seen["reopened_at_ms"].is_i64(), "{seen}");
    let resumed: std::collections::BTreeSet<&str> =
        seen["resumed_events"].as_array().unwrap().iter().map(|e| e.as_str().unwrap()).collect();
    for id in seen["steady_events"].as_array().unwrap() {
        assert!(resumed.contains(id.as_str().unwrap()), "the resumed page lacks event {id}: {seen}");
    }
}
