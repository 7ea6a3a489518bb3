//! Frames as Kafka messages: headers in, headers out.

use std::path::Path;

use rdkafka::message::{Header, Headers, OwnedHeaders};
use vitrine_schemas::{now_ms, DeadLetter, Frame, SourcePosition, MAX_SEQ, MAX_TIME_MS};

use super::headers as h;

/// The headers of a frame message. Width and height come from the JPEG's own header.
pub fn frame_headers(frame: &Frame) -> OwnedHeaders {
    let (width, height) = jpeg_size(&frame.jpeg).unwrap_or((0, 0));
    let values = [
        (h::STREAM_ID, frame.stream_id.clone()),
        (h::SEQ, frame.seq.to_string()),
        (h::PTS_MS, frame.pts_ms.to_string()),
        (h::CAPTURED_AT_MS, frame.captured_at_ms.to_string()),
        (h::WIDTH, width.to_string()),
        (h::HEIGHT, height.to_string()),
        (h::CONTENT_TYPE, "image/jpeg".to_string()),
    ];
    values.iter().fold(OwnedHeaders::new(), |hs, (k, v)| hs.insert(Header { key: k, value: Some(v.as_bytes()) }))
}

fn header<'a, H: Headers>(headers: Option<&'a H>, name: &str) -> Option<&'a [u8]> {
    headers?.iter().find(|x| x.key == name).and_then(|x| x.value)
}

/// Largest frame read by reference.
pub const MAX_REFERENCED_BYTES: u64 = 256 << 20;

/// Reads a frame sent by reference: a `file://` URL inside `refs_dir` (and nowhere else, so
/// a producer cannot make vitrine read arbitrary files).
pub fn read_reference(url: &str, refs_dir: Option<&Path>) -> Result<Vec<u8>, String> {
    let Some(dir) = refs_dir else {
        return Err(format!("frame sent by reference ({url}) but the source has no `frame_refs_dir`"));
    };
    let Some(path) = url.strip_prefix("file://") else {
        return Err(format!("frame reference `{url}`: only file:// URLs are supported"));
    };
    let path = Path::new(path).canonicalize().map_err(|e| format!("frame reference `{url}`: {e}"))?;
    let dir = dir.canonicalize().map_err(|e| format!("frame_refs_dir {}: {e}", dir.display()))?;
    if !path.starts_with(&dir) {
        return Err(format!("frame reference `{url}` is outside frame_refs_dir {}", dir.display()));
    }
    let len = std::fs::metadata(&path).map_err(|e| format!("frame reference `{url}`: {e}"))?.len();
    if len > MAX_REFERENCED_BYTES {
        return Err(format!("frame reference `{url}` is {len} bytes, over {MAX_REFERENCED_BYTES}"));
    }
    std::fs::read(&path).map_err(|e| format!("frame reference `{url}`: {e}"))
}

/// Reads a frame from a message; a message that is not one becomes a dead letter.
/// `refs_dir` is where frames sent by reference may be read from.
pub fn frame_from_message<H: Headers>(
    key: Option<&[u8]>,
    payload: Option<&[u8]>,
    headers: Option<&H>,
    origin: String,
    refs_dir: Option<&Path>,
) -> Result<Frame, DeadLetter> {
    let text = |name: &str| header(headers, name).and_then(|v| std::str::from_utf8(v).ok());
    let stream_id = text(h::STREAM_ID)
        .map(str::to_owned)
        .or_else(|| key.and_then(|k| std::str::from_utf8(k).ok()).map(str::to_owned))
        .unwrap_or_default();
    let payload = payload.unwrap_or_default().to_vec();
    let reject = |seq: u64, pts: i64, reason: String, payload: Vec<u8>| DeadLetter {
        stream_id: stream_id.clone(),
        seq,
        pts_ms: pts,
        stage: "source".into(),
        reason,
        origin: Some(origin.clone()),
        bytes: payload.len() as u64,
        at_ms: now_ms(),
        payload,
    };
    if stream_id.is_empty() {
        return Err(reject(
            0,
            0,
            format!("no stream id: set the message key or the `{}` header", h::STREAM_ID),
            payload,
        ));
    }
    let number = |name: &str| -> Result<i64, String> {
        let v = text(name).ok_or_else(|| format!("missing header `{name}`"))?;
        v.trim().parse::<i64>().map_err(|_| format!("header `{name}` is `{v}`, not a whole number"))
    };
    // Times in range, so that what is computed from them (gaps, latencies) cannot overflow.
    let time = |name: &str| -> Result<i64, String> {
        let t = number(name)?;
        if t.unsigned_abs() > MAX_TIME_MS as u64 {
            return Err(format!(
                "header `{name}` is {t}, out of range (at most {MAX_TIME_MS} ms either way of 0; times are milliseconds)"
            ));
        }
        Ok(t)
    };
    let seq = match number(h::SEQ) {
        Ok(s) if (0..=MAX_SEQ as i64).contains(&s) => s as u64,
        Ok(s) => {
            let reason = format!("header `{}` is {s}, out of range (0 to {MAX_SEQ})", h::SEQ);
            return Err(reject(0, 0, reason, payload));
        }
        Err(reason) => return Err(reject(0, 0, reason, payload)),
    };
    let pts_ms = match time(h::PTS_MS) {
        Ok(p) => p,
        Err(reason) => return Err(reject(seq, 0, reason, payload)),
    };
    if let Some(ct) = text(h::CONTENT_TYPE) {
        if ct != "image/jpeg" {
            return Err(reject(seq, pts_ms, format!("content type `{ct}`; frames must be image/jpeg"), payload));
        }
    }
    // No capture time: the frame is taken as captured now. A wrong one is refused.
    let captured_at_ms = match text(h::CAPTURED_AT_MS) {
        None => now_ms(),
        Some(_) => match time(h::CAPTURED_AT_MS) {
            Ok(t) => t,
            Err(reason) => return Err(reject(seq, pts_ms, reason, payload)),
        },
    };
    let (jpeg, origin) = match text(h::FRAME_URL) {
        Some(url) => match read_reference(url, refs_dir) {
            Ok(bytes) => (bytes, format!("{origin} -> {url}")),
            Err(reason) => return Err(reject(seq, pts_ms, reason, payload)),
        },
        None => (payload, origin),
    };
    let position = SourcePosition::in_stream(seq);
    Ok(Frame {
        stream_id,
        seq,
        pts_ms,
        captured_at_ms,
        origin: Some(origin),
        position,
        jpeg,
        change: Default::default(),
    })
}

/// Width and height from a JPEG's frame header (SOFn), without decoding it.
pub fn jpeg_size(jpeg: &[u8]) -> Option<(u16, u16)> {
    if jpeg.get(..2)? != [0xFF, 0xD8] {
        return None;
    }
    let mut i = 2;
    while i + 4 <= jpeg.len() {
        if jpeg[i] != 0xFF {
            return None;
        }
        let marker = jpeg[i + 1];
        let len = u16::from_be_bytes([jpeg[i + 2], jpeg[i + 3]]) as usize;
        let is_sof = matches!(marker, 0xC0..=0xCF) && !matches!(marker, 0xC4 | 0xC8 | 0xCC);
        if is_sof {
            let b = jpeg.get(i + 5..i + 9)?;
            return Some((u16::from_be_bytes([b[2], b[3]]), u16::from_be_bytes([b[0], b[1]])));
        }
        i += 2 + len;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame() -> Frame {
        Frame {
            stream_id: "s1".into(),
            seq: 7,
            pts_ms: 1400,
            captured_at_ms: 99,
            origin: None,
            position: SourcePosition::in_stream(7),
            jpeg: vec![0xFF, 0xD8, 0xFF, 0xD9],
            change: Default::default(),
        }
    }

    #[test]
    fn headers_round_trip() {
        let f = frame();
        let hs = frame_headers(&f);
        let back = frame_from_message(Some(b"s1"), Some(&f.jpeg), Some(&hs), "t/0@5".into(), None).unwrap();
        assert_eq!((back.stream_id.as_str(), back.seq, back.pts_ms, back.captured_at_ms), ("s1", 7, 1400, 99));
        assert_eq!(back.jpeg, f.jpeg);
    }

    #[test]
    fn missing_headers_are_dead_letters_with_a_reason() {
        let hs = OwnedHeaders::new().insert(Header { key: h::SEQ, value: Some("3".as_bytes()) });
        let err = frame_from_message(Some(b"s1"), Some(b"jpeg"), Some(&hs), "t/0@1".into(), None).unwrap_err();
        assert_eq!((err.stage.as_str(), err.seq), ("source", 3));
        assert!(err.reason.contains(h::PTS_MS), "{}", err.reason);
        assert_eq!(err.payload, b"jpeg");
        let err = frame_from_message::<OwnedHeaders>(None, Some(b"x"), None, "t/0@2".into(), None).unwrap_err();
        assert!(err.reason.contains("no stream id"), "{}", err.reason);
    }

    fn with_header(name: &'static str, value: &str) -> OwnedHeaders {
        let mut f = frame();
        f.captured_at_ms = 1_800_000_000_000;
        let kept = frame_headers(&f);
        let hs = kept.iter().filter(|x| x.key != name).fold(OwnedHeaders::new(), |hs, x| hs.insert(x));
        hs.insert(Header { key: name, value: Some(value.as_bytes()) })
    }

    #[test]
    fn out_of_range_numbers_are_refused_naming_the_header() {
        let refused = |name: &'static str, value: &str| {
            let hs = with_header(name, value);
            frame_from_message(Some(b"s1"), Some(b"jpeg"), Some(&hs), "t/0@1".into(), None).unwrap_err().reason
        };
        for (name, value) in [
            (h::SEQ, "9223372036854775807"),
            (h::SEQ, "-1"),
            (h::PTS_MS, "-9223372036854775808"),
            (h::PTS_MS, "35184372088833"),
            (h::CAPTURED_AT_MS, "9223372036854775807"),
        ] {
            let reason = refused(name, value);
            assert!(reason.contains(name) && reason.contains("out of range"), "{name}={value}: {reason}");
        }
        let reason = refused(h::CAPTURED_AT_MS, "yesterday");
        assert!(reason.contains("not a whole number"), "{reason}");
        // The largest values in range are taken.
        for (name, value) in [(h::SEQ, MAX_SEQ.to_string()), (h::PTS_MS, (-MAX_TIME_MS).to_string())] {
            let hs = with_header(name, &value);
            assert!(frame_from_message(Some(b"s1"), Some(b"j"), Some(&hs), "t/0@1".into(), None).is_ok(), "{name}");
        }
    }

    #[test]
    fn references_are_read_only_inside_the_refs_dir() {
        let dir = std::env::temp_dir().join(format!("vitrine-refs-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("s1")).unwrap();
        let frame_path = dir.join("s1/0000000001.jpg");
        std::fs::write(&frame_path, b"jpeg bytes").unwrap();
        let url = format!("file://{}", frame_path.display());
        assert_eq!(read_reference(&url, Some(&dir)).unwrap(), b"jpeg bytes");
        assert!(read_reference(&url, None).unwrap_err().contains("frame_refs_dir"));
        assert!(read_reference("file:///etc/passwd", Some(&dir)).unwrap_err().contains("outside"));
        assert!(read_reference(&format!("file://{}/s1/../../../etc/passwd", dir.display()), Some(&dir)).is_err());
        assert!(read_reference("https://example.com/f.jpg", Some(&dir)).unwrap_err().contains("file://"));
    }

    #[test]
    fn jpeg_size_reads_the_frame_header() {
        let jpeg = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../models/tests/fixtures/apple.jpg")).unwrap();
        let (w, h) = jpeg_size(&jpeg).unwrap();
        assert!(w > 100 && h > 100);
    }
}
