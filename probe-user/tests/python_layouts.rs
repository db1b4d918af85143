//! The checked-in layout table (`probe-user/src/python/layouts.rs`) must equal what
//! `python/generate.sh` produces from the installed interpreters' headers. Skipped (with a
//! message) when interpreters or a C compiler are missing, unless `CI=true`.

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn generated_table_matches_installed_headers() {
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    let out = std::env::temp_dir().join(format!("probe-layouts-{}.rs", std::process::id()));
    let status = Command::new("bash")
        .arg(repo().join("python/generate.sh"))
        .arg(&out)
        .status()
        .expect("run bash");
    if !status.success() {
        assert!(
            !ci,
            "CI=true but python/generate.sh failed (interpreters or cc missing?)"
        );
        eprintln!("skipping: python/generate.sh failed (needs cc and pyenv CPython 3.8-3.13)");
        return;
    }
    let generated = std::fs::read_to_string(&out).unwrap();
    let _ = std::fs::remove_file(&out);
    let checked_in =
        std::fs::read_to_string(repo().join("probe-user/src/python/layouts.rs")).unwrap();
    assert!(
        generated == checked_in,
        "probe-user/src/python/layouts.rs is stale: run python/generate.sh"
    );
}
