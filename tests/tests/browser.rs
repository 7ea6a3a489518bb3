//! The viewer page in a real browser (Debian's headless Chromium, driven by playwright-core
//! from npm; tests/browser/viewer.cjs) on the sample stream in real time:
//! - live HLS (hls.js): each product card appears within 0.5 s of the media time the product
//!   enters, and goes within 0.5 s of the media time it leaves, by the page's own player
//!   clock, and that clock is the picture's (the video shows the product then);
//! - a page opened late shows the product already on screen (the snapshot);
//! - a page whose WebSocket is cut while events happen gets every one of them on reconnect;
//! - a page open while vitrine restarts starts again with the new run's video and events;
//! - a page refused by the server (a bad viewer token) says so.
//!
//! Each test plays the stream in real time beside a pipeline: they run one at a time
//! (`.config/nextest.toml`; a lock under `cargo test`).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;

use serde_json::Value;
use vitrine_tests::{demo_spec, free_port, replace, root, temp_dir};

const SLACK_MS: i64 = 500;
/// The sample stream's products, by media time (scripts/make-sample-stream.sh).
const SHOTS_MS: [(&str, i64, i64); 3] =
    [("MUG-ESP-01", 3000, 11000), ("APL-GALA-1KG", 14000, 22000), ("ORG-VAL-2KG", 25000, 33000)];

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// vitrine on the demo spec (the sample stream once, in real time), on a free port.
struct Server {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Server {
    fn start(name: &str, hls: bool) -> Server {
        Server::start_on(temp_dir(name), hls, free_port(), "")
    }

    /// With `server_settings`: more lines of the spec's `server` section.
    fn start_on(dir: PathBuf, hls: bool, port: u16, server_settings: &str) -> Server {
        let mut spec = replace(&demo_spec(&dir.join("out")), "    loop: true\n", "");
        if !hls {
            spec = replace(&spec, "    hls:\n      segment: 1s\n", "");
        }
        spec += server_settings;
        let spec_path = dir.join("browser.yaml");
        std::fs::write(&spec_path, spec).unwrap();
        let log = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("vitrine.log")).unwrap();
        let child = Command::new(vitrine_tests::vitrine_bin())
            .arg("run")
            .arg(&spec_path)
            .env("VITRINE_LISTEN", format!("127.0.0.1:{port}"))
            .env("VITRINE_BROWSER_SECRET", "a secret for the browser tests")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let server = Server { child, port, dir };
        let ready = (0..300).any(|_| {
            std::thread::sleep(std::time::Duration::from_millis(100));
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        assert!(ready, "the server did not come up; see {}", server.dir.join("vitrine.log").display());
        server
    }

    /// Runs tests/browser/viewer.cjs in `mode` for at most `seconds`; what the pages saw.
    fn browse(&mut self, mode: &str, seconds: u32) -> Value {
        self.browse_while(mode, seconds, |_| {})
    }

    /// As `browse`, doing `meanwhile` with the server while the browser runs.
    fn browse_while(&mut self, mode: &str, seconds: u32, meanwhile: impl FnOnce(&mut Server)) -> Value {
        let root = root();
        assert!(
            root.join(".vitrine/node/node_modules/playwright-core").exists(),
            "playwright-core is missing: run scripts/setup.sh"
        );
        let browser = Command::new("node")
            .arg(root.join("tests/browser/viewer.cjs"))
            .args([mode, &format!("http://127.0.0.1:{}", self.port), &seconds.to_string()])
            .env("NODE_PATH", root.join(".vitrine/node/node_modules"))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        meanwhile(self);
        let out = browser.wait_with_output().unwrap();
        let log = self.dir.join("vitrine.log");
        assert!(
            out.status.success(),
            "the browser script failed: {}\n(vitrine's log: {})",
            String::from_utf8_lossy(&out.stderr),
            log.display()
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// `GET path`: status line and headers (lowercase), and the body.
    fn get(&self, path: &str) -> (String, Vec<u8>) {
        vitrine_tests::http_response(self.port, path)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// (player media time, cards shown, picture) of each sample a page took.
fn samples(seen: &Value) -> Vec<(i64, Vec<String>, Option<String>)> {
    seen["samples"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| {
            let cards = s["cards"].as_array().unwrap().iter().map(|c| c.as_str().unwrap().to_string()).collect();
            Some((s["t"].as_i64()?, cards, s["picture"].as_str().map(str::to_owned)))
        })
        .collect()
}

/// The media time of `sku`'s `kind` event on a page's timeline.
fn pts(timeline: &Value, kind: &str, sku: &str) -> Option<i64> {
    timeline
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == kind && e["sku"] == sku)
        .map(|e| e["pts_ms"].as_i64().unwrap())
}

/// By the player's clock, `sku`'s card is never shown before the product enters or from
/// SLACK_MS after it leaves, and always from SLACK_MS after it enters until it leaves (judged
/// per sample, so a player that seeks is judged on the times it really showed). Returns how
/// many samples had to show it.
fn assert_card_in_sync(samples: &[(i64, Vec<String>, Option<String>)], sku: &str, enter: i64, leave: i64) -> usize {
    let mut checked = 0;
    for (t, cards, _) in samples {
        let shown = cards.iter().any(|c| c == sku);
        if *t < enter || *t >= leave + SLACK_MS {
            assert!(!shown, "{sku} is on screen from {enter} to {leave} ms, its card showed at player time {t} ms");
        } else if *t >= enter + SLACK_MS && *t < leave {
            assert!(shown, "{sku} is on screen from {enter} to {leave} ms, no card at player time {t} ms");
            checked += 1;
        }
    }
    checked
}

/// The player's clock is the picture's: at a media time in a shot the video shows the photo,
/// in a gap the empty studio (300 ms either side of a cut is not judged). Returns how many
/// samples were judged.
fn assert_clock_is_the_pictures(samples: &[(i64, Vec<String>, Option<String>)]) -> usize {
    let mut judged = 0;
    for (t, _, picture) in samples {
        let Some(picture) = picture else { continue };
        let near_cut = SHOTS_MS.iter().any(|(_, a, b)| (t - a).abs() < 300 || (t - b).abs() < 300);
        if near_cut || *t < 300 {
            continue;
        }
        let in_shot = SHOTS_MS.iter().any(|(_, a, b)| (a..b).contains(&t));
        assert_eq!(picture, if in_shot { "photo" } else { "grey" }, "the video at player time {t} ms");
        judged += 1;
    }
    judged
}

#[test]
fn live_hls_cards_appear_and_go_with_the_product_in_the_picture() {
    let _one = ONE_AT_A_TIME.lock();
    let mut server = Server::start("browser-sync", true);
    // The playlist and its segments, as a CDN sees them.
    let playlist = (0..100)
        .find_map(|_| {
            std::thread::sleep(std::time::Duration::from_millis(100));
            let (head, body) = server.get("/v1/streams/demo/hls/live.m3u8");
            (head.starts_with("http/1.1 200") || head.starts_with("http/1.0 200"))
                .then_some((head, String::from_utf8(body).unwrap()))
        })
        .expect("no HLS playlist within 10 s");
    assert!(playlist.0.contains("cache-control: public, max-age=1"), "{}", playlist.0);
    assert!(playlist.1.contains("#EXT-X-PROGRAM-DATE-TIME:"), "{}", playlist.1);
    let segment = playlist.1.lines().find(|l| l.ends_with(".ts")).unwrap();
    let (head, body) = server.get(&format!("/v1/streams/demo/hls/{segment}"));
    assert!(head.contains("immutable") && head.contains("video/mp2t") && body[0] == 0x47, "{head}");
    assert!(server.get("/v1/streams/demo/hls/..%2Fbrowser.yaml").0.contains(" 404 "));

    // The browser watches 48 s: the page plays 5 s behind the pipeline, through the 36 s stream.
    let seen = server.browse("sync", 48);
    assert_eq!(seen["playback"], "hls", "{}", seen["status"]);
    let samples = samples(&seen);
    assert!(samples.len() > 100, "the page's player never ran: {seen}");
    for (sku, _, _) in SHOTS_MS {
        let enter = pts(&seen["timeline"], "appeared", sku).expect(sku);
        let leave = pts(&seen["timeline"], "disappeared", sku).expect(sku);
        let checked = assert_card_in_sync(&samples, sku, enter, leave);
        assert!(checked > 50, "the player hardly played {sku}'s time on screen ({checked} samples)");
    }
    let judged = assert_clock_is_the_pictures(&samples);
    assert!(judged > 300, "the picture was judged on {judged} samples only");
    // Cards show the pictures' thumbnails, loaded (at most 256 pixels a side).
    let pictures = seen["pictures"].as_array().unwrap();
    assert!(!pictures.is_empty(), "no card picture loaded: {seen}");
    for p in pictures {
        assert!(p["src"].as_str().unwrap().ends_with("-256.jpg"), "{p}");
        assert!(p["width"].as_u64().unwrap() <= 256 && p["height"].as_u64().unwrap() <= 256, "{p}");
    }
}

#[test]
fn a_late_viewer_sees_the_product_already_on_screen() {
    let _one = ONE_AT_A_TIME.lock();
    // The source video file, played by the page itself (no HLS).
    let mut server = Server::start("browser-late", false);
    let seen = server.browse("late", 30);
    assert!(
        seen["on_screen_when_opened"].as_array().unwrap().iter().any(|s| s == "MUG-ESP-01"),
        "the mug never came on screen: {seen}"
    );
    // The page learnt of the mug from its snapshot (its `appeared` went out before the page
    // connected), and shows it in sync with its player.
    let enter = pts(&seen["timeline"], "appeared", "MUG-ESP-01").expect("the mug");
    let leave = pts(&seen["timeline"], "disappeared", "MUG-ESP-01").unwrap_or(i64::MAX / 2);
    let samples = samples(&seen);
    let checked = assert_card_in_sync(&samples, "MUG-ESP-01", enter, leave);
    assert!(checked > 20, "the late page hardly played the mug's time on screen ({checked} samples): {seen}");
    assert!(assert_clock_is_the_pictures(&samples) > 20, "{seen}");
}

#[test]
fn a_viewer_whose_connection_drops_resumes_with_nothing_lost() {
    let _one = ONE_AT_A_TIME.lock();
    let mut server = Server::start("browser-resume", true);
    let seen = server.browse("resume", 40);
    assert!(seen["came_back_ms"].is_i64(), "the connection was never cut and restored: {seen}");
    // The page kept trying while the network was down, and came back with the last event it had.
    let urls: Vec<&str> = seen["urls"].as_array().unwrap().iter().map(|u| u.as_str().unwrap()).collect();
    assert!(urls.len() >= 3, "{urls:?}");
    assert!(urls.last().unwrap().contains("last_event_id="), "{urls:?}");
    // Every event the steady page got, the dropped page has too, the mug's exit among them.
    let ids = |page: &str| -> std::collections::BTreeSet<String> {
        seen[page].as_array().unwrap().iter().map(|e| e["event_id"].as_str().unwrap().to_string()).collect()
    };
    let (steady, dropped) = (ids("steady"), ids("dropped"));
    assert!(pts(&seen["dropped"], "disappeared", "MUG-ESP-01").is_some(), "{seen}");
    let missing: Vec<_> = steady.difference(&dropped).collect();
    assert!(missing.is_empty(), "the dropped page lacks events {missing:?}: {seen}");
}

#[test]
fn a_page_open_while_vitrine_restarts_starts_over_with_the_new_run() {
    let _one = ONE_AT_A_TIME.lock();
    let mut server = Server::start("browser-restart", true);
    let seen = server.browse_while("restart", 34, |server| {
        // Once the page has played into the mug, vitrine restarts on the same address: a
        // new run, whose media time, events and video start again from 0.
        std::thread::sleep(std::time::Duration::from_secs(14));
        let (dir, port) = (server.dir.clone(), server.port);
        let _ = server.child.kill();
        let _ = server.child.wait();
        *server = Server::start_on(dir, true, port, "");
    });
    assert!(seen["loads"].as_u64().unwrap() >= 2, "the page did not start over: {seen}");
    // Before and after, the player's clock is its picture's, judged from half a second after
    // each load's first sample: a player that just started can show a frame of the fragment it
    // loaded first before it seeks to the playing time. Seen once in CI: a photo at 2023 ms,
    // 1 s before the mug; a load's first samples come at about 2050 ms here, so most likely
    // such a start (the failure did not say which load it was in; the log now does).
    let mut judged = Vec::new();
    let (mut load, mut started) = (None, i64::MIN);
    for sample in seen["samples"].as_array().unwrap() {
        let Some(t) = sample["t"].as_i64() else { continue };
        if sample["loads"].as_u64() != load {
            (load, started) = (sample["loads"].as_u64(), t);
        }
        if t >= started + 500 {
            judged.push(sample.clone());
        }
    }
    // Where each load's clock went, for a failure's log: (load, player time, picture).
    let by_load: Vec<_> = seen["samples"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["t"].is_i64())
        .map(|s| (s["loads"].clone(), s["t"].clone(), s["picture"].clone()))
        .collect();
    eprintln!("samples: {by_load:?}");
    let all = samples(&serde_json::json!({ "samples": judged }));
    assert!(assert_clock_is_the_pictures(&all) > 100, "{seen}");
    // After, the cards follow the new run's events on the new run's video.
    let after: Vec<_> =
        seen["samples"].as_array().unwrap().iter().filter(|s| s["loads"].as_u64() >= Some(2)).cloned().collect();
    let after = samples(&serde_json::json!({ "samples": after }));
    let enter = pts(&seen["timeline"], "appeared", "MUG-ESP-01").expect("the new run's mug");
    let leave = pts(&seen["timeline"], "disappeared", "MUG-ESP-01").unwrap_or(i64::MAX / 2);
    let checked = assert_card_in_sync(&after, "MUG-ESP-01", enter, leave);
    assert!(checked > 20, "the restarted page hardly played the mug ({checked} samples): {seen}");
}

#[test]
fn a_refused_page_says_why() {
    let _one = ONE_AT_A_TIME.lock();
    let dir = temp_dir("browser-refused");
    let mut server = Server::start_on(dir, false, free_port(), "  token_secret_env: VITRINE_BROWSER_SECRET\n");
    let seen = server.browse("refused", 10);
    let status = seen["status"].as_str().unwrap();
    assert!(status.starts_with("refused: ") && status.contains("token"), "{status}");
}
