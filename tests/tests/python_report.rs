//! Python frames in the spin report (`"schema_version": 2`), with the real eBPF programs and
//! the real interpreters: pyenv's CPython 3.8–3.13 running the scripts in
//! `workloads/py_*.py`.
//!
//! A Python frame is `{"kind": "python", "function", "module" (= "file"), "module_offset"
//! (the bytecode offset), "file", "line"}`; Python frames stand in a stack where their
//! `_PyEval_EvalFrameDefault` frames were, innermost first, and still follow when the native
//! chain breaks (pyenv's builds have no frame pointers). A thread has a
//! `"python_thread_name"` (its `threading` name, null outside Python) and a Python thread's
//! `loop_in` is the innermost Python function common to most samples.
//!
//! Each test starts its own workloads and ends them by PID; all but the systemwide one scope
//! probe to them with `-p`. Interpreters and py-spy skip their tests when missing, except
//! under `CI=true`, where they fail.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use probe_tests::{
    all_threads, assert_field, assert_open_fstat_close_loop, check_python_frame, check_stack_order,
    check_thread, hottest_stack, marker_line, number, per_version, py_spy, python_frames,
    python_functions, require_bpf, require_interpreter, run_probe, script_path, spin_json,
    spinning_thread, start_python, ScratchDir, Workload,
};
use serde_json::Value;

/// Window of the runs scoped to one process: ~300 samples of a spinner.
const WINDOW: &str = "3";

/// `probe spin --json -d WINDOW -p pid <extra>`; checks the report is schema 2.
fn observe(pid: u32, extra: &[&str]) -> Value {
    let pid = pid.to_string();
    let mut args = vec!["-d", WINDOW, "-p", &pid];
    args.extend_from_slice(extra);
    let report = spin_json(&args);
    assert_eq!(report["schema_version"], 2, "{report:#}");
    report
}

/// (function, file, line) of a list of Python frames.
fn locations<'a>(frames: &[&'a Value]) -> Vec<(&'a str, &'a str, Option<u64>)> {
    frames
        .iter()
        .map(|frame| {
            (
                frame["function"].as_str().unwrap_or("?"),
                frame["file"].as_str().unwrap_or("?"),
                frame["line"].as_u64(),
            )
        })
        .collect()
}

/// Asserts `loop_in` of `thread` is the Python function `function` of `script`, at the
/// line marked `# LINE <function>`.
fn assert_loop_in(thread: &Value, script: &str, function: &str, context: &str) {
    let loop_in = &thread["loop_in"];
    check_python_frame(loop_in);
    let file = script_path(script).to_string_lossy().into_owned();
    assert_eq!(
        (&loop_in["function"], &loop_in["file"], &loop_in["line"]),
        (
            &Value::from(function),
            &Value::from(file),
            &Value::from(marker_line(script, function))
        ),
        "{context}: loop_in:\n{thread:#}"
    );
    assert!(number(loop_in, "share") >= 0.5, "{context}:\n{thread:#}");
}

/// Asserts every listed stack of `thread` has the documented frame order, that those with
/// Python frames start with `innermost` (function names), and that those without hold at
/// most `without_max` of the thread's samples.
fn assert_stacks_start_with(thread: &Value, innermost: &[&str], without_max: f64, context: &str) {
    let mut without = 0;
    for stack in thread["stacks"].as_array().expect("stacks is an array") {
        check_stack_order(stack);
        let functions = python_functions(stack);
        if functions.is_empty() {
            without += stack["count"].as_u64().expect("stack count is an integer");
            continue;
        }
        assert!(
            functions.starts_with(innermost),
            "{context}: a stack's Python frames are {functions:?}, want {innermost:?} first:\n{thread:#}"
        );
    }
    let share = without as f64 / number(thread, "samples");
    assert!(
        share <= without_max,
        "{context}: {share:.2} of the samples have no Python frames (at most {without_max}):\n{thread:#}"
    );
}

/// The spinner of `py_spin.py` (thread "py-spinner" in deep -> outer -> middle -> inner):
/// its Python frames, innermost first, with the script's lines; its `threading` name; its
/// loop in `inner`.
fn spinner(minor: u8) {
    if !require_bpf() {
        return;
    }
    let Some(python) = require_interpreter(minor) else {
        return;
    };
    let spinner = start_python(&python, "py_spin.py", &[]);
    let report = observe(spinner.pid, &[]);
    let thread = spinning_thread(&report, spinner.tid);
    let context = format!("3.{minor}");
    check_thread(thread);

    assert_eq!(
        thread["python_thread_name"], "py-spinner",
        "{context}:\n{thread:#}"
    );
    assert_eq!(
        thread["classification"]["kind"], "user_loop",
        "{context}:\n{thread:#}"
    );
    assert_loop_in(thread, "py_spin.py", "inner", &context);
    assert_stacks_start_with(thread, &["inner", "middle", "outer", "deep"], 0.0, &context);

    let frames = python_frames(hottest_stack(thread));
    let file = script_path("py_spin.py").to_string_lossy().into_owned();
    let want: Vec<(&str, &str, Option<u64>)> = ["inner", "middle", "outer", "deep"]
        .into_iter()
        .map(|name| (name, file.as_str(), Some(marker_line("py_spin.py", name))))
        .collect();
    let got = locations(&frames);
    assert!(
        got.len() > want.len() && got[..want.len()] == want[..],
        "{context}: hottest stack's Python frames {got:#?}\n{thread:#}"
    );
    // Below them: threading's Thread.run / _bootstrap_inner / _bootstrap, all of it.
    let (outermost, ..) = got[got.len() - 1];
    assert!(
        outermost.ends_with("_bootstrap"),
        "{context}: outermost Python frame {outermost:?}\n{thread:#}"
    );
}

per_version!(spinner:
    spinner_3_8 = 8,
    spinner_3_9 = 9,
    spinner_3_10 = 10,
    spinner_3_11 = 11,
    spinner_3_12 = 12,
    spinner_3_13 = 13,
);

/// A pure-Python loop in the main thread, the only thread (`py_main_loop.py`): a
/// `user_loop` in `busy`, named "MainThread".
fn main_thread_loop(minor: u8) {
    if !require_bpf() {
        return;
    }
    let Some(python) = require_interpreter(minor) else {
        return;
    };
    let busy = start_python(&python, "py_main_loop.py", &[]);
    assert_eq!(busy.tid, busy.pid, "the ready line names the main thread");
    let report = observe(busy.pid, &[]);
    let thread = spinning_thread(&report, busy.tid);
    let context = format!("3.{minor}");
    check_thread(thread);

    assert_eq!(
        thread["python_thread_name"], "MainThread",
        "{context}:\n{thread:#}"
    );
    assert_eq!(
        thread["classification"]["kind"], "user_loop",
        "{context}:\n{thread:#}"
    );
    assert_loop_in(thread, "py_main_loop.py", "busy", &context);
    assert_stacks_start_with(thread, &["busy"], 0.0, &context);

    let file = script_path("py_main_loop.py")
        .to_string_lossy()
        .into_owned();
    let want = [
        (
            "busy",
            file.as_str(),
            Some(marker_line("py_main_loop.py", "busy")),
        ),
        (
            "<module>",
            file.as_str(),
            Some(marker_line("py_main_loop.py", "module")),
        ),
    ];
    let got = locations(&python_frames(hottest_stack(thread)));
    assert_eq!(
        got, want,
        "{context}: hottest stack's Python frames\n{thread:#}"
    );
}

per_version!(main_thread_loop:
    main_thread_loop_3_8 = 8,
    main_thread_loop_3_9 = 9,
    main_thread_loop_3_10 = 10,
    main_thread_loop_3_11 = 11,
    main_thread_loop_3_12 = 12,
    main_thread_loop_3_13 = 13,
);

/// The pex bug's shape (`py_find_zip.py`): `find_zip` calling `zipfile.is_zipfile("/")`
/// forever is a syscall storm of openat / fstat / close, and the hottest Python path is
/// `is_zipfile` inside `find_zip`.
fn find_zip_storm(minor: u8) {
    if !require_bpf() {
        return;
    }
    let Some(python) = require_interpreter(minor) else {
        return;
    };
    let finder = start_python(&python, "py_find_zip.py", &[]);
    let report = observe(finder.pid, &["--top", "1000"]);
    let thread = spinning_thread(&report, finder.tid);
    let context = format!("3.{minor}");

    assert_eq!(
        thread["classification"]["kind"], "syscall_storm",
        "{context}:\n{thread:#}"
    );
    assert_eq!(
        thread["python_thread_name"], "MainThread",
        "{context}:\n{thread:#}"
    );
    // One openat("/"), one fstat of it and one close per iteration (checked with strace on
    // every version).
    assert_open_fstat_close_loop(thread, &context);

    // Every sample is in a syscall or in the interpreter, under many different native
    // and kernel frames: the single hottest stack holds a few percent of the samples and
    // which one it is is chance. What a reader looks for is the hottest Python path, so
    // the stacks (all of them, `--top 1000`) are added up by their Python frames.
    for stack in thread["stacks"].as_array().expect("stacks is an array") {
        check_stack_order(stack);
    }
    let (path, share) = hottest_python_path(thread);
    assert_eq!(
        path,
        ["is_zipfile", "find_zip", "<module>"],
        "{context}: the hottest Python path ({share:.2} of the samples)\n{thread:#}"
    );
    assert!(
        share >= 0.5,
        "{context}: the hottest Python path {path:?} has {share:.2} of the samples\n{thread:#}"
    );
    let file = script_path("py_find_zip.py").to_string_lossy().into_owned();
    let want_outer = [
        (
            "find_zip",
            file.as_str(),
            Some(marker_line("py_find_zip.py", "find_zip")),
        ),
        (
            "<module>",
            file.as_str(),
            Some(marker_line("py_find_zip.py", "module")),
        ),
    ];
    for stack in thread["stacks"].as_array().expect("stacks is an array") {
        let frames = locations(&python_frames(stack));
        if frames.first().map(|(function, ..)| *function) != Some("is_zipfile") {
            continue;
        }
        let zipfile = frames[0].1;
        assert!(
            zipfile.ends_with("/zipfile.py") || zipfile.ends_with("/zipfile/__init__.py"),
            "{context}: is_zipfile in {zipfile}\n{thread:#}"
        );
        assert_eq!(frames[1..], want_outer, "{context}: {stack:#}");
    }
    // loop_in prefers Python frames: is_zipfile, under ~80% of the samples on every version
    // (the rest in os.path.dirname and find_zip itself).
    let loop_in = &thread["loop_in"];
    check_python_frame(loop_in);
    assert_eq!(
        loop_in["function"], "is_zipfile",
        "{context}: loop_in\n{thread:#}"
    );
}

/// The function names of the Python frames, innermost first, that the most samples of
/// `thread` share over all its listed stacks; and its share of the samples.
fn hottest_python_path(thread: &Value) -> (Vec<&str>, f64) {
    let mut paths: Vec<(Vec<&str>, u64)> = Vec::new();
    for stack in thread["stacks"].as_array().expect("stacks is an array") {
        let path = python_functions(stack);
        let count = stack["count"].as_u64().expect("stack count is an integer");
        match paths.iter_mut().find(|(known, _)| *known == path) {
            Some((_, total)) => *total += count,
            None => paths.push((path, count)),
        }
    }
    let (path, count) = paths
        .into_iter()
        .max_by_key(|(_, count)| *count)
        .unwrap_or_else(|| panic!("thread has no stacks:\n{thread:#}"));
    (path, count as f64 / number(thread, "samples"))
}

per_version!(find_zip_storm:
    find_zip_storm_3_8 = 8,
    find_zip_storm_3_9 = 9,
    find_zip_storm_3_10 = 10,
    find_zip_storm_3_11 = 11,
    find_zip_storm_3_12 = 12,
    find_zip_storm_3_13 = 13,
);

/// A Python process started a second into a systemwide window (so unknown when probe
/// attached) gets its Python frames and thread name.
#[test]
fn process_started_during_systemwide_window() {
    if !require_bpf() {
        return;
    }
    let Some(python) = require_interpreter(12) else {
        return;
    };
    // The spinner runs ~3 of the 4 s; other spinners on the machine do not matter.
    let probe = std::thread::spawn(|| spin_json(&["-d", "4", "--threshold", "30"]));
    std::thread::sleep(Duration::from_secs(1));
    let spinner = start_python(&python, "py_spin.py", &[]);
    let report = probe
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e));
    assert_eq!(report["schema_version"], 2, "{report:#}");
    let thread = spinning_thread(&report, spinner.tid);

    assert_eq!(thread["pid"], spinner.pid, "{thread:#}");
    assert_eq!(thread["python_thread_name"], "py-spinner", "{thread:#}");
    assert_loop_in(thread, "py_spin.py", "inner", "systemwide");
    let functions = python_functions(hottest_stack(thread));
    assert!(
        functions.starts_with(&["inner", "middle", "outer", "deep"]),
        "hottest stack's Python frames {functions:?}\n{thread:#}"
    );
}

/// A fresh path for a file the workload writes.
fn temp_path(tag: &str) -> PathBuf {
    std::env::temp_dir().join(format!("probe-py-{tag}-{}", std::process::id()))
}

/// A thread that starts ~1.5 s into the window, spins 2 s and ends
/// (`py_short_thread.py`): listed, marked exited, with its name and Python frames.
#[test]
fn thread_living_inside_the_window() {
    if !require_bpf() {
        return;
    }
    let Some(python) = require_interpreter(12) else {
        return;
    };
    let tid_file = temp_path("short-tid");
    let _ = std::fs::remove_file(&tid_file);
    let tid_arg = tid_file.to_string_lossy().into_owned();
    // Probe attaches in well under a second, then discovers the process and reads its
    // threads. The thread starts 2.5 s after the ready line, so 1.5-2 s into the 6 s window
    // and well after that discovery: probe re-reads a Python process's thread list at most
    // every 0.25 s, and a thread started just after a re-read has its first samples
    // without Python frames. It spins 2 s, ~33% of the window, and ends inside it.
    let process = start_python(&python, "py_short_thread.py", &[&tid_arg, "2.5", "2"]);
    let pid = process.pid.to_string();
    let report = spin_json(&["-d", "6", "-p", &pid, "--threshold", "15"]);
    assert_eq!(report["schema_version"], 2, "{report:#}");
    let tid: u32 = std::fs::read_to_string(&tid_file)
        .unwrap_or_else(|e| {
            panic!(
                "the workload wrote no tid to {} ({e}); did the thread end in the window?\n{report:#}",
                tid_file.display()
            )
        })
        .trim()
        .parse()
        .expect("the tid file holds a number");
    let _ = std::fs::remove_file(&tid_file);
    let thread = spinning_thread(&report, tid);

    assert_eq!(thread["exited"], true, "{thread:#}");
    assert_eq!(thread["python_thread_name"], "py-short", "{thread:#}");
    let cpu = number(thread, "cpu_pct");
    assert!(
        (20.0..=45.0).contains(&cpu),
        "~1.5 s of a 5 s window:\n{thread:#}"
    );
    assert_loop_in(thread, "py_short_thread.py", "burst", "short thread");
    // Its first samples, before probe's next drain (every 100 ms) has read the new thread's
    // state, have no Python frames.
    assert_stacks_start_with(thread, &["burst"], 0.15, "short thread");
    let (_, file, line) = locations(&python_frames(hottest_stack(thread)))[0];
    assert_eq!(
        (file, line),
        (
            script_path("py_short_thread.py").to_string_lossy().as_ref(),
            Some(marker_line("py_short_thread.py", "burst"))
        ),
        "{thread:#}"
    );
}

/// py-spy, an independent reader of the same interpreter, sees the same Python stack as
/// probe in the spinner of `py_spin.py` (3.12): names, files and lines, innermost first.
#[test]
fn agrees_with_py_spy() {
    if !require_bpf() {
        return;
    }
    let Some(python) = require_interpreter(12) else {
        return;
    };
    let Some(py_spy) = py_spy() else {
        return;
    };
    let spinner = start_python(&python, "py_spin.py", &[]);
    let report = observe(spinner.pid, &[]);
    let thread = spinning_thread(&report, spinner.tid);
    let ours = locations(&python_frames(hottest_stack(thread)));

    // After probe's window: py-spy stops the process while it reads it.
    let pid = spinner.pid.to_string();
    let output = std::process::Command::new(&py_spy)
        .args(["dump", "--json", "--pid", &pid])
        .output()
        .unwrap_or_else(|e| panic!("failed to run {}: {e}", py_spy.display()));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "py-spy dump failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let dump: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("py-spy printed invalid JSON ({e}):\n{stdout}"));
    let theirs_thread = dump
        .as_array()
        .and_then(|threads| {
            threads
                .iter()
                .find(|t| t["os_thread_id"].as_u64() == Some(u64::from(spinner.tid)))
        })
        .unwrap_or_else(|| panic!("py-spy shows no thread {}:\n{dump:#}", spinner.tid));
    assert_eq!(
        theirs_thread["thread_name"], thread["python_thread_name"],
        "thread names (py-spy vs probe)"
    );
    let theirs: Vec<(&str, &str, Option<u64>)> = theirs_thread["frames"]
        .as_array()
        .expect("py-spy frames is an array")
        .iter()
        .map(|frame| {
            (
                frame["name"].as_str().unwrap_or("?"),
                frame["filename"].as_str().unwrap_or("?"),
                frame["line"].as_u64(),
            )
        })
        .collect();
    assert!(theirs.len() >= 4, "py-spy's frames {theirs:#?}");
    assert_eq!(
        ours, theirs,
        "probe's Python frames (left) vs py-spy's (right)"
    );
}

/// The text report marks Python frames `[py] ` and shows the `threading` name beside the
/// OS thread name.
#[test]
fn text_report_marks_python_frames() {
    if !require_bpf() {
        return;
    }
    let Some(python) = require_interpreter(12) else {
        return;
    };
    let spinner = start_python(&python, "py_spin.py", &[]);
    let pid = spinner.pid.to_string();
    let output = run_probe(&["spin", "-d", WINDOW, "-p", &pid]);
    let text = String::from_utf8_lossy(&output.stdout);

    let heading = format!("pid {} tid {} ", spinner.pid, spinner.tid);
    let line = text
        .lines()
        .find(|line| line.starts_with(&heading))
        .unwrap_or_else(|| panic!("no line starting {heading:?}:\n{text}"));
    assert!(line.contains("py-spinner"), "thread line {line:?}:\n{text}");
    let py_lines: Vec<&str> = text
        .lines()
        .map(str::trim_start)
        .filter(|line| line.starts_with("[py] "))
        .collect();
    for name in ["inner", "middle", "outer", "deep"] {
        let mark = format!("[py] {name} ");
        let at = format!("py_spin.py:{}", marker_line("py_spin.py", name));
        assert!(
            py_lines
                .iter()
                .any(|line| line.starts_with(&mark) && line.contains(&at)),
            "no {mark:?} line at {at}:\n{text}"
        );
    }
}

/// A native thread has no Python name and no Python frames.
#[test]
fn native_thread_has_no_python_name() {
    if !require_bpf() {
        return;
    }
    let native = Workload::start("spin_loop", &[]);
    let report = observe(native.pid, &[]);
    let thread = spinning_thread(&report, native.tid);

    assert!(thread["python_thread_name"].is_null(), "{thread:#}");
    assert_eq!(thread["loop_in"]["kind"], "user", "{thread:#}");
    for stack in thread["stacks"].as_array().expect("stacks is an array") {
        check_stack_order(stack);
        assert!(python_frames(stack).is_empty(), "{thread:#}");
    }
    for listed in all_threads(&report) {
        assert_field(listed, "python_thread_name", "a string or null", |v| {
            v.is_string() || v.is_null()
        });
    }
}

/// The spinner's thread in `report`: named, with `inner` as its loop.
fn assert_named_spinner(report: &Value, tid: u32, context: &str) {
    let thread = spinning_thread(report, tid);
    assert_eq!(
        thread["python_thread_name"], "py-spinner",
        "{context}:\n{thread:#}"
    );
    assert_loop_in(thread, "py_spin.py", "inner", context);
}

/// The interpreter and its libpython as copies that probe cannot reach by their paths:
/// on a tmpfs mounted only in the workload's own mount namespace. Discovery must read them
/// through `/proc/PID/map_files` (or `/proc/PID/root`).
#[test]
fn python_in_another_mount_namespace() {
    if !require_bpf() {
        return;
    }
    let Some(python) = require_interpreter(12) else {
        return;
    };
    let prefix = python
        .parent()
        .and_then(|bin| bin.parent())
        .expect("pyenv prefix");
    let scratch = ScratchDir::new("py-mntns");
    let hidden = scratch.0.join("hidden");
    let script = format!(
        "mkdir -p {hidden} && mount -t tmpfs tmpfs {hidden} && \
         cp {python} {lib}/libpython3.12.so.1.0 {hidden}/ && \
         LD_LIBRARY_PATH={hidden} PYTHONHOME={prefix} exec {hidden}/python3.12 {spin}",
        hidden = hidden.display(),
        python = python.display(),
        lib = prefix.join("lib").display(),
        prefix = prefix.display(),
        spin = script_path("py_spin.py").display(),
    );
    let mut command = Command::new("unshare");
    command.args(["--mount", "--propagation", "private", "sh", "-c", &script]);
    let spinner = Workload::start_command("py_spin_ns", command, hidden.join("python3.12"));
    assert!(
        !hidden.join("libpython3.12.so.1.0").exists(),
        "libpython is visible outside the namespace"
    );
    let maps = std::fs::read_to_string(format!("/proc/{}/maps", spinner.pid)).expect("maps");
    assert!(
        maps.contains(&format!("{}/libpython3.12", hidden.display())),
        "the workload does not run the hidden libpython:\n{maps}"
    );
    let report = observe(spinner.pid, &[]);
    assert_named_spinner(&report, spinner.tid, "other mount namespace");
}

/// A libpython deleted after the interpreter started: still found and read.
#[test]
fn python_with_a_deleted_libpython() {
    if !require_bpf() {
        return;
    }
    let Some(python) = require_interpreter(12) else {
        return;
    };
    let prefix = python
        .parent()
        .and_then(|bin| bin.parent())
        .expect("pyenv prefix");
    let scratch = ScratchDir::new("py-deleted");
    let copy = scratch.0.join("libpython3.12.so.1.0");
    std::fs::copy(prefix.join("lib/libpython3.12.so.1.0"), &copy).expect("copy libpython");
    let mut command = Command::new(&python);
    command
        .arg(script_path("py_spin.py"))
        .env("LD_LIBRARY_PATH", &scratch.0);
    let spinner = Workload::start_command("py_spin_deleted", command, python.clone());
    std::fs::remove_file(&copy).expect("delete the running libpython");
    let maps = std::fs::read_to_string(format!("/proc/{}/maps", spinner.pid)).expect("maps");
    assert!(
        maps.contains("libpython3.12.so.1.0 (deleted)"),
        "the workload does not run the deleted copy:\n{maps}"
    );
    let report = observe(spinner.pid, &[]);
    assert_named_spinner(&report, spinner.tid, "deleted libpython");
}
