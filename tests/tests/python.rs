//! Python frames recorded by the kernel at sample time, for every installed CPython
//! 3.8–3.13: a thread spinning in `deep -> outer -> middle -> inner` must show exactly those
//! frames, innermost first, with the lines of the loop and of the calls. These tests check
//! the kernel's walk itself, before any merging with native frames, through probe's hidden
//! `--dump-python-frames` output (every recorded frame, resolved through the code objects
//! probe read while the workload ran); `python_report.rs` checks the reports.
//!
//! Interpreters come from pyenv (`$PYENV_ROOT` or `~/.pyenv`, `versions/3.X.*`). A missing
//! one skips its test, except under `CI=true`, where it fails.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use probe_tests::{
    require_bpf, require_interpreter, run_probe, spinning_thread, start_python, Workload,
};
use serde_json::Value;

const SCRIPT: &str = "py_spin.py";

fn script_path() -> PathBuf {
    probe_tests::script_path(SCRIPT)
}

/// The 1-based line of the script ending with `# LINE <marker>`.
fn marker_line(marker: &str) -> u64 {
    probe_tests::marker_line(SCRIPT, marker)
}

/// Starts the script: its spinner runs below `depth` extra recursive frames.
fn start_spinner(python: &Path, depth: u32) -> Workload {
    start_script(python, &[&depth.to_string()])
}

fn start_script(python: &Path, args: &[&str]) -> Workload {
    probe_tests::start_python(python, SCRIPT, args)
}

/// A fresh path for a dump file.
fn dump_path() -> PathBuf {
    static COUNT: AtomicUsize = AtomicUsize::new(0);
    let n = COUNT.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!("probe-py-dump-{}-{n}.jsonl", std::process::id()))
}

/// Runs `probe spin --json -p <pids> --dump-python-frames` and returns (report, dump lines).
fn observe(pids: &[u32]) -> (Value, Vec<Value>) {
    let dump = dump_path();
    let pid_args: Vec<String> = pids.iter().map(u32::to_string).collect();
    let mut args = vec!["spin", "--json", "-d", "2"];
    for pid in &pid_args {
        args.extend(["-p", pid.as_str()]);
    }
    let dump_arg = dump.to_string_lossy().into_owned();
    args.extend(["--dump-python-frames", &dump_arg]);
    let output = run_probe(&args);
    let report: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "probe printed invalid JSON ({e}):\n{}",
            String::from_utf8_lossy(&output.stdout)
        )
    });
    let text = std::fs::read_to_string(&dump)
        .unwrap_or_else(|e| panic!("probe wrote no dump at {}: {e}", dump.display()));
    let _ = std::fs::remove_file(&dump);
    let lines = text
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    (report, lines)
}

fn check_version(minor: u8) {
    if !require_bpf() {
        return;
    }
    let Some(python) = require_interpreter(minor) else {
        return;
    };
    let spinner = start_spinner(&python, 0);
    let (report, dump) = observe(&[spinner.pid]);
    assert_eq!(report["notices"], serde_json::json!([]), "3.{minor}");
    let stacks: Vec<&Value> = dump
        .iter()
        .filter(|line| line["tid"] == spinner.tid)
        .collect();
    let samples: u64 = stacks.iter().map(|s| s["count"].as_u64().unwrap()).sum();
    assert!(
        samples >= 10,
        "3.{minor}: {samples} samples of the spinner with Python frames; dump: {dump:#?}"
    );
    let file = script_path().to_string_lossy().into_owned();
    let expected = [
        ("inner", marker_line("inner")),
        ("middle", marker_line("middle")),
        ("outer", marker_line("outer")),
        ("deep", marker_line("deep")),
    ];
    for stack in stacks {
        assert_eq!(stack["truncated"], false, "3.{minor}: {stack:#}");
        let frames = stack["frames"].as_array().unwrap();
        assert!(frames.len() > expected.len(), "3.{minor}: {stack:#}");
        for ((name, line), frame) in expected.iter().zip(frames) {
            let got = (&frame["qualname"], &frame["file"], &frame["line"]);
            assert_eq!(
                got,
                (
                    &Value::from(*name),
                    &Value::from(file.as_str()),
                    &Value::from(*line)
                ),
                "3.{minor}: frame {frame} of {stack:#}"
            );
        }
        // Below them: threading's Thread.run / _bootstrap_inner / _bootstrap.
        let last = &frames[frames.len() - 1];
        assert!(
            last["qualname"]
                .as_str()
                .is_some_and(|q| q.ends_with("_bootstrap")),
            "3.{minor}: outermost frame {last}"
        );
        assert_eq!(
            call_entries(frames),
            expected_call_entries(minor, frames.len()),
            "3.{minor}: which frames end a call of the eval loop, in {stack:#}"
        );
    }
}

/// The `call_entry` flag of each frame, innermost first.
fn call_entries(frames: &[Value]) -> Vec<bool> {
    frames
        .iter()
        .map(|frame| {
            frame["call_entry"]
                .as_bool()
                .expect("call_entry is a boolean")
        })
        .collect()
}

/// Where the spinner's frames (`inner, middle, outer, deep, Thread.run,
/// Thread._bootstrap_inner, Thread._bootstrap`) end a call of the eval loop. Up to 3.10 every
/// Python call is one (the kernel marks every frame). From 3.11 a Python function called from
/// Python code runs in its caller's call: `_bootstrap` (called by the thread's C start
/// routine) starts one, and on 3.11 so does `deep`, which `Thread.run` calls through
/// `self._target(*args)`; 3.12 runs that call (`CALL_FUNCTION_EX`) inline too. (3.11 marks
/// entries with `is_entry`, 3.12+ with shim frames: both are checked here.)
fn expected_call_entries(minor: u8, frames: usize) -> Vec<bool> {
    if minor <= 10 {
        return vec![true; frames];
    }
    let mut entries = vec![false; frames];
    if minor == 11 {
        entries[3] = true;
    }
    entries[frames - 1] = true;
    entries
}

#[test]
fn python_3_8() {
    check_version(8);
}

#[test]
fn python_3_9() {
    check_version(9);
}

#[test]
fn python_3_10() {
    check_version(10);
}

#[test]
fn python_3_11() {
    check_version(11);
}

#[test]
fn python_3_12() {
    check_version(12);
}

#[test]
fn python_3_13() {
    check_version(13);
}

/// The kernel records at most 128 frames (the innermost ones) and marks the rest as cut.
#[test]
fn deep_stack_is_bounded_and_truncated() {
    if !require_bpf() {
        return;
    }
    let Some(python) = require_interpreter(12) else {
        return;
    };
    let spinner = start_spinner(&python, 300);
    let (report, dump) = observe(&[spinner.pid]);
    assert_eq!(report["notices"], serde_json::json!([]));
    let stacks: Vec<&Value> = dump
        .iter()
        .filter(|line| line["tid"] == spinner.tid)
        .collect();
    assert!(!stacks.is_empty(), "{dump:#?}");
    for stack in stacks {
        assert_eq!(stack["truncated"], true, "{stack:#}");
        let names: Vec<&str> = stack["frames"]
            .as_array()
            .unwrap()
            .iter()
            .map(|frame| frame["qualname"].as_str().unwrap_or("?"))
            .collect();
        assert_eq!(names.len(), 128, "{names:?}");
        assert_eq!(names[..4], ["inner", "middle", "outer", "deep"]);
        assert!(names[3..].iter().all(|name| *name == "deep"), "{names:?}");
    }
}

/// A thread that starts during the window (after discovery) gets its Python frames too:
/// its first samples make the collector re-read the process's thread list.
#[test]
fn thread_started_during_the_window() {
    if !require_bpf() {
        return;
    }
    let Some(python) = require_interpreter(12) else {
        return;
    };
    let process = start_script(&python, &["0", "late"]);
    let (_, dump) = observe(&[process.pid]);
    let spinner: Vec<&Value> = dump
        .iter()
        .filter(|line| line["tid"] != process.pid)
        .collect();
    assert!(!spinner.is_empty(), "{dump:#?}");
    for stack in spinner {
        let frames = stack["frames"].as_array().unwrap();
        assert_eq!(frames[0]["qualname"], "inner", "{stack:#}");
        assert_eq!(frames[0]["line"], marker_line("inner"), "{stack:#}");
    }
}

/// A native process in scope: its samples carry no Python frames and nothing complains.
#[test]
fn native_process_has_native_frames_only() {
    if !require_bpf() {
        return;
    }
    let native = Workload::start("spin_loop", &[]);
    let (report, dump) = observe(&[native.pid]);
    assert_eq!(report["notices"], serde_json::json!([]));
    assert!(dump.is_empty(), "{dump:#?}");
    let thread = spinning_thread(&report, native.tid);
    assert!(
        !thread["stacks"].as_array().unwrap().is_empty(),
        "{thread:#}"
    );
}

/// A Python the kernel walker does not support (3.7): one notice, native samples.
#[test]
fn unsupported_python_gets_one_notice() {
    if !require_bpf() {
        return;
    }
    let Some(python) = require_interpreter(7) else {
        return;
    };
    let spinner = start_spinner(&python, 0);
    let (report, dump) = observe(&[spinner.pid]);
    let notices = report["notices"].as_array().unwrap();
    assert_eq!(notices.len(), 1, "{notices:?}");
    let notice = notices[0].as_str().unwrap();
    assert!(
        notice.contains(&format!("process {}", spinner.pid))
            && notice.contains("Python frames unavailable"),
        "{notice}"
    );
    assert!(dump.is_empty(), "{dump:#?}");
    // 3.7 has no native thread ids: the process's busiest thread is the spinner.
    let busy = report["spinning"].as_array().unwrap();
    assert!(busy.iter().any(|t| t["pid"] == spinner.pid), "{report:#}");
}

/// A Python function called from C code (`sorted`'s key) runs in a call of the eval loop of
/// its own: on 3.12+ the kernel sees the entry shim below it and marks the frame inside.
#[test]
fn frames_called_from_c_end_a_call() {
    if !require_bpf() {
        return;
    }
    for minor in [11, 12, 13] {
        let Some(python) = require_interpreter(minor) else {
            continue;
        };
        let process = start_python(&python, "py_c_call.py", &[]);
        let (_, dump) = observe(&[process.pid]);
        let stacks: Vec<&Value> = dump
            .iter()
            .filter(|line| line["tid"] == process.tid)
            .collect();
        assert!(!stacks.is_empty(), "3.{minor}: {dump:#?}");
        for stack in stacks {
            let frames = stack["frames"].as_array().unwrap();
            let names: Vec<&str> = frames
                .iter()
                .map(|frame| frame["qualname"].as_str().unwrap_or("?"))
                .collect();
            assert_eq!(names, ["inner", "key", "outer", "<module>"], "3.{minor}");
            assert_eq!(
                call_entries(frames),
                [false, true, false, true],
                "3.{minor}: {stack:#}"
            );
        }
    }
}
