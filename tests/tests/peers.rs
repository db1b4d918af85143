//! The output checkers themselves: each accepts a small valid file made here and rejects
//! a broken one, so that a check that passes on probe's files means something. No root
//! needed; a missing peer skips (fails under `CI=true`). About 5 s, mostly Chromium.

use std::panic::{catch_unwind, UnwindSafe};
use std::path::PathBuf;

use probe_tests::{
    pprof_lines, pprof_top, speedscope_opens_in_chromium, speedscope_validate, svg_rendered_text,
    ScratchDir,
};

fn write(dir: &ScratchDir, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.0.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// Asserts `check` panics (rejects its file), unless it skipped (returned `skipped`).
fn assert_rejects<T: PartialEq>(skipped: T, check: impl FnOnce() -> T + UnwindSafe) {
    match catch_unwind(check) {
        Err(_) => {}
        Ok(value) if value == skipped => eprintln!("skipped: peer missing"),
        Ok(_) => panic!("the check accepted a broken file"),
    }
}

/// A protobuf field of `bytes` (length-delimited; all lengths here are < 128).
fn field(number: u8, bytes: &[u8]) -> Vec<u8> {
    let mut out = vec![number << 3 | 2, u8::try_from(bytes.len()).unwrap()];
    out.extend_from_slice(bytes);
    out
}

/// A pprof profile, encoded by hand: 5 samples in `work_loop` at line 7 of work.c.
fn hand_made_pprof() -> Vec<u8> {
    let sample_type = field(1, &[0x08, 1, 0x10, 2]);
    let sample = field(2, &[field(1, &[1]), field(2, &[5])].concat());
    let line = field(4, &[0x08, 1, 0x10, 7]);
    let location = field(4, &[&[0x08, 1][..], &line].concat());
    let function = field(5, &[0x08, 1, 0x10, 3, 0x20, 4]);
    let strings = ["", "samples", "count", "work_loop", "work.c"];
    let strings = strings.map(|s| field(6, s.as_bytes())).concat();
    [sample_type, sample, location, function, strings].concat()
}

#[test]
fn pprof_checks_read_a_valid_profile_and_reject_a_broken_one() {
    let dir = ScratchDir::new("peers-pprof");
    let valid = write(&dir, "valid.pb", &hand_made_pprof());
    if let Some(top) = pprof_top(&valid) {
        assert!(top.contains("work_loop"), "{top}");
        assert!(top.contains("Type: samples"), "{top}");
    }
    if let Some(lines) = pprof_lines(&valid) {
        assert!(lines.contains("work_loop work.c:7"), "{lines}");
    }
    let broken = write(&dir, "broken.pb.gz", b"\x1f\x8b not a profile");
    assert_rejects(None, || pprof_top(&broken));
}

const SPEEDSCOPE: &str = r#"{
  "$schema": "https://www.speedscope.app/file-format-schema.json",
  "exporter": "hand", "name": "hand-made profile", "activeProfileIndex": 0,
  "shared": {"frames": [{"name": "main"}, {"name": "work_loop", "file": "work.c"}]},
  "profiles": [{"type": "sampled", "name": "worker thread", "unit": "nanoseconds",
    "startValue": 0, "endValue": 30, "samples": [[0, 1], [0]], "weights": [20, 10]}]
}"#;

#[test]
fn speedscope_schema_check_accepts_valid_and_rejects_broken() {
    let dir = ScratchDir::new("peers-speedscope");
    let valid = write(&dir, "valid.speedscope.json", SPEEDSCOPE.as_bytes());
    speedscope_validate(&valid);
    let wrong_unit = SPEEDSCOPE.replace("nanoseconds", "ns");
    let broken = write(&dir, "unit.speedscope.json", wrong_unit.as_bytes());
    assert_rejects(false, || speedscope_validate(&broken));
    let dangling = SPEEDSCOPE.replace("[[0, 1], [0]]", "[[0, 2], [0]]");
    let broken = write(&dir, "index.speedscope.json", dangling.as_bytes());
    assert_rejects(false, || speedscope_validate(&broken));
}

#[test]
fn speedscope_app_opens_a_valid_file_and_not_a_broken_one() {
    let dir = ScratchDir::new("peers-speedscope-app");
    let valid = write(&dir, "valid.speedscope.json", SPEEDSCOPE.as_bytes());
    speedscope_opens_in_chromium(&valid);
    let truncated = &SPEEDSCOPE[..SPEEDSCOPE.len() / 2];
    let broken = write(&dir, "broken.speedscope.json", truncated.as_bytes());
    assert_rejects(false, || speedscope_opens_in_chromium(&broken));
}

#[test]
fn svg_text_comes_from_chromium_and_broken_svg_is_rejected() {
    let dir = ScratchDir::new("peers-svg");
    let svg = r#"<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="200" height="40"><g><title>work_loop (5 samples)</title><rect width="100" height="20" fill="red"/><text y="15">work_loop &amp; co</text></g></svg>"#;
    let valid = write(&dir, "valid.svg", svg.as_bytes());
    if let Some(text) = svg_rendered_text(&valid) {
        assert!(text.contains("work_loop (5 samples)"), "{text}");
        assert!(text.contains("work_loop & co"), "{text}");
    }
    let broken = write(&dir, "broken.svg", svg.replace("</g>", "").as_bytes());
    assert_rejects(None, || svg_rendered_text(&broken));
}
