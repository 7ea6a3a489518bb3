//! A frame's bytes through the decoder with its limits (damage check, decode, bars, resize):
//! refused with a reason or decoded, never a crash, and never more pixels than the limits.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vitrine_models::{prepare, DecodeLimits, ModelError};

static PANIC_HOOK: std::sync::Once = std::sync::Once::new();

fuzz_target!(|data: &[u8]| {
    // vitrine catches a panic inside the JPEG decoder and refuses the frame (zune-jpeg's debug
    // assertions fail on some inputs: tests/fuzz/regressions/jpeg_decode/). libfuzzer-sys's hook
    // would abort on that caught panic too; any other panic still ends the run as a crash.
    PANIC_HOOK.call_once(|| {
        let abort = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !info.location().is_some_and(|l| l.file().contains("zune-jpeg")) {
                abort(info);
            }
        }));
    });
    let limits = DecodeLimits { max_side: 2048, ..DecodeLimits::default() };
    match prepare(data, limits, 64, 48) {
        Ok(prepared) => {
            assert!(prepared.frame_width <= 2048 && prepared.frame_height <= 2048);
            assert_eq!(prepared.pixels.len(), 64 * 48 * 3);
        }
        Err(ModelError::BadJpeg(why)) => assert!(!why.is_empty()),
        Err(ModelError::TooLarge { .. } | ModelError::TooManyPixels { .. } | ModelError::Resize(_)) => {}
        Err(other) => panic!("a frame can only be refused, not {other}"),
    }
});
