//! `probe spin` against real workloads, with the real eBPF programs loaded: what it finds
//! in a spinning thread, and where the threshold falls.
//!
//! Run with `cargo xtask test` (root, one test at a time). These tests scope probe to their
//! own workloads with `-p`, so other processes on the machine do not change the outcome.

use probe_tests::{
    assert_open_fstat_close_loop, check_thread, find_thread, hottest_stack, number, require_bpf,
    spin_json, spinning_thread, syscall_names, threads, Workload,
};
use serde_json::Value;

/// Function names of a stack's user frames, innermost first (`?` when unnamed).
fn user_functions(stack: &Value) -> Vec<&str> {
    stack["frames"]
        .as_array()
        .expect("frames is an array")
        .iter()
        .filter(|frame| frame["kind"] == "user")
        .map(|frame| frame["function"].as_str().unwrap_or("?"))
        .collect()
}

#[test]
fn spin_loop_reports_nested_user_loop() {
    if !require_bpf() {
        return;
    }
    let spin = Workload::start("spin_loop", &[]);
    let pid = spin.pid.to_string();
    let report = spin_json(&["-p", &pid, "-d", "2"]);
    let thread = spinning_thread(&report, spin.tid);

    assert!(number(thread, "cpu_pct") >= 90.0, "{thread:#}");
    assert_eq!(thread["classification"]["kind"], "user_loop", "{thread:#}");
    assert_eq!(thread["loop_in"]["function"], "spin_inner", "{thread:#}");
    let hottest = user_functions(hottest_stack(thread));
    assert!(
        hottest.starts_with(&["spin_inner", "spin_middle", "spin_outer"]),
        "hottest stack's user frames: {hottest:?}\n{thread:#}"
    );
    assert_eq!(thread["thread_name"], "spinner");
    assert_eq!(thread["pid"], spin.pid);
    assert_eq!(thread["process_name"], spin.file_name());
    let argv0 = thread["cmdline"][0]
        .as_str()
        .expect("cmdline[0] is a string");
    assert!(argv0.ends_with(spin.file_name()), "cmdline[0] = {argv0:?}");
}

#[test]
fn spin_loop_location_has_source_line() {
    if !require_bpf() {
        return;
    }
    let spin = Workload::start("spin_loop", &[]);
    let pid = spin.pid.to_string();
    let report = spin_json(&["-p", &pid, "-d", "2"]);
    let loop_in = &spinning_thread(&report, spin.tid)["loop_in"];

    // Built with -g, so the debug info names the file and line.
    let module = loop_in["module"]
        .as_str()
        .expect("loop_in.module is a string");
    assert!(module.ends_with(spin.file_name()), "{loop_in:#}");
    let file = loop_in["file"].as_str().unwrap_or("");
    assert!(file.ends_with("spin_loop.c"), "{loop_in:#}");
    assert!(
        loop_in["line"].as_u64().is_some_and(|line| line > 0),
        "{loop_in:#}"
    );
}

#[test]
fn cpu_time_agrees_with_samples() {
    if !require_bpf() {
        return;
    }
    let spin = Workload::start("spin_loop", &[]);
    let pid = spin.pid.to_string();
    let report = spin_json(&["-p", &pid, "-d", "2"]);
    let thread = spinning_thread(&report, spin.tid);

    // Two independent measures of the same on-CPU time: scheduler accounting over the
    // window, and CPU-clock samples taken `frequency_hz` times per on-CPU second.
    let duration = number(&report["window"], "duration_secs");
    let on_cpu_secs = number(thread, "cpu_pct") / 100.0 * duration;
    let sampled_secs = number(thread, "samples") / number(&report, "frequency_hz");
    let ratio = sampled_secs / on_cpu_secs;
    assert!(
        (0.95..=1.05).contains(&ratio),
        "sampled {sampled_secs:.3} s vs accounted {on_cpu_secs:.3} s on CPU \
         (window {duration} s):\n{thread:#}"
    );
}

#[test]
fn syscall_storm_is_classified() {
    if !require_bpf() {
        return;
    }
    let storm = Workload::start("syscall_storm", &[]);
    let pid = storm.pid.to_string();
    let report = spin_json(&["-p", &pid, "-d", "2"]);
    let thread = spinning_thread(&report, storm.tid);

    assert_eq!(
        thread["classification"]["kind"], "syscall_storm",
        "{thread:#}"
    );
    assert_eq!(
        syscall_names(thread).first(),
        Some(&"getppid"),
        "{thread:#}"
    );
    assert!(number(thread, "syscalls_per_sec") > 10_000.0, "{thread:#}");
    assert_eq!(thread["thread_name"], "storm");
}

#[test]
fn open_loop_top_syscalls() {
    if !require_bpf() {
        return;
    }
    let opener = Workload::start("open_loop", &[]);
    let pid = opener.pid.to_string();
    let report = spin_json(&["-p", &pid, "-d", "2"]);
    let thread = spinning_thread(&report, opener.tid);

    assert_open_fstat_close_loop(thread, "open_loop");
}

#[test]
fn idle_threads_are_not_spinning() {
    if !require_bpf() {
        return;
    }
    let idle = Workload::start("idle_threads", &[]);
    let pid = idle.pid.to_string();
    let report = spin_json(&["-p", &pid, "-d", "2"]);

    let spinning = threads(&report, "spinning");
    assert!(
        spinning.iter().all(|thread| thread["pid"] != idle.pid),
        "idle threads reported as spinning:\n{report:#}"
    );
}

#[test]
fn threshold_boundary() {
    if !require_bpf() {
        return;
    }
    let duty = Workload::start("duty_cycle", &[]);
    let pid = duty.pid.to_string();

    let low = spin_json(&["-p", &pid, "-d", "2", "--threshold", "30"]);
    let thread = spinning_thread(&low, duty.tid);
    assert_eq!(number(&low, "threshold_pct"), 30.0);
    let cpu = number(thread, "cpu_pct");
    assert!((30.0..75.0).contains(&cpu), "a ~50% duty cycle: {thread:#}");

    let high = spin_json(&["-p", &pid, "-d", "2", "--threshold", "75"]);
    assert!(threads(&high, "spinning").is_empty(), "{high:#}");
    let busiest = find_thread(&high, "busiest", duty.tid)
        .unwrap_or_else(|| panic!("thread {} not in \"busiest\":\n{high:#}", duty.tid));
    check_thread(busiest);
}

#[test]
fn thread_exiting_mid_window() {
    if !require_bpf() {
        return;
    }
    // Sleeps 500 ms (probe attaches meanwhile), spins 800 ms of CPU, exits: ~40% of 2 s.
    let short = Workload::start("short_lived", &["800", "500"]);
    let pid = short.pid.to_string();
    let report = spin_json(&["-p", &pid, "-d", "2", "--threshold", "10"]);
    let thread = spinning_thread(&report, short.tid);

    assert_eq!(thread["exited"], true, "{thread:#}");
    let cpu = number(thread, "cpu_pct");
    assert!((25.0..=60.0).contains(&cpu), "{thread:#}");
}
