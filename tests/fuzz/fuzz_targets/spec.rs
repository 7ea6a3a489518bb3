//! A pipeline spec as a person in a hurry writes it: parsed and checked, with every problem
//! named by its path, never a crash.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Err(problems) = vitrine_pipeline::spec::parse(text) {
        assert!(!problems.is_empty());
        assert!(problems.iter().all(|p| !p.path.is_empty() && !p.message.is_empty()), "{problems:?}");
    }
});
