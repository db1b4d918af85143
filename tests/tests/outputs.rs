//! `probe record`'s four file formats, each read back by an outside reader of that format
//! (see `probe_tests::peers`): the C spinner recorded for 2 s per format, with
//! `--threads`, and its functions looked for in what the reader shows.

use std::path::PathBuf;

use probe_tests::{
    pprof_lines, pprof_top, require_bpf, run_probe, speedscope_opens_in_chromium,
    speedscope_validate, svg_rendered_text, ScratchDir, Workload,
};

/// Records `workload` into `dir/profile.<extension>`; returns the file.
fn record(workload: &Workload, dir: &ScratchDir, extension: &str) -> PathBuf {
    let path = dir.0.join(format!("profile.{extension}"));
    let pid = workload.pid.to_string();
    let out = path.to_str().unwrap();
    run_probe(&["record", "-d", "2", "-p", &pid, "--threads", "-o", out]);
    assert!(path.is_file(), "probe record wrote no {}", path.display());
    path
}

#[test]
fn every_format_reads_back_in_its_own_tools() {
    if !require_bpf() {
        return;
    }
    let spinner = Workload::start("spin_loop", &[]);
    let dir = ScratchDir::new("outputs");
    let thread_root = format!("spinner tid {}", spinner.tid);

    let folded = std::fs::read_to_string(record(&spinner, &dir, "folded")).unwrap();
    let stack = format!("{thread_root};");
    let hot = folded
        .lines()
        .find(|line| line.starts_with(&stack) && line.contains("spin_middle;spin_inner"))
        .unwrap_or_else(|| panic!("no spinner stack in:\n{folded}"));
    let count: u64 = hot.rsplit_once(' ').unwrap().1.parse().unwrap();
    assert!(count > 0, "{hot}");

    let svg = record(&spinner, &dir, "svg");
    if let Some(text) = svg_rendered_text(&svg) {
        for name in ["spin_inner", "spin_outer", &thread_root] {
            assert!(
                text.contains(name),
                "{name} not on the rendered page:\n{text}"
            );
        }
    }

    let speedscope = record(&spinner, &dir, "speedscope.json");
    speedscope_validate(&speedscope);
    speedscope_opens_in_chromium(&speedscope);

    let pprof = record(&spinner, &dir, "pb.gz");
    if let Some(top) = pprof_top(&pprof) {
        assert!(top.contains("spin_inner"), "{top}");
        assert!(
            top.contains(&format!("probe: pid {}", spinner.pid)),
            "{top}"
        );
    }
    if let Some(lines) = pprof_lines(&pprof) {
        assert!(lines.contains("spin_loop.c:"), "no source lines:\n{lines}");
    }
}
