//! The JSON report's documented shape (`--json`, schema_version 2).

use probe_tests::{
    all_threads, assert_field, check_thread, number, require_bpf, spin_json, spinning_thread,
    threads, Workload,
};
use serde_json::Value;

#[test]
fn json_report_has_documented_shape() {
    if !require_bpf() {
        return;
    }
    let spin = Workload::start("spin_loop", &[]);
    let pid = spin.pid.to_string();
    let report = spin_json(&["-p", &pid, "-d", "2"]);

    assert_eq!(report["schema_version"], 2);
    assert_eq!(report["command"], "spin");
    check_window(&report["window"], 2.0);
    assert_eq!(report["frequency_hz"], 99, "default -F");
    assert!(report["online_cpus"].as_u64().is_some_and(|cpus| cpus >= 1));
    assert_eq!(report["scope"]["pids"], serde_json::json!([spin.pid]));
    assert_eq!(
        number(&report, "threshold_pct"),
        90.0,
        "default --threshold"
    );
    for key in [
        "samples",
        "samples_lost",
        "threads_dropped",
        "syscalls_dropped",
    ] {
        assert_field(&report["loss"], key, "an integer", Value::is_u64);
    }
    assert!(
        report["loss"]["samples"].as_u64() > Some(0),
        "no samples counted"
    );
    let notices = report["notices"].as_array().expect("notices is an array");
    assert!(notices.iter().all(Value::is_string), "{notices:?}");

    for thread in all_threads(&report) {
        check_thread(thread);
    }
    assert!(
        threads(&report, "busiest").is_empty(),
        "busiest is only filled when nothing spins:\n{report:#}"
    );
    let spinner = spinning_thread(&report, spin.tid);
    assert!(spinner["samples"].as_u64() > Some(0), "{spinner:#}");
}

fn check_window(window: &Value, requested: f64) {
    assert_eq!(number(window, "requested_secs"), requested);
    // The window is what was observed: loading and attaching come before it, reading
    // the maps back after it.
    let duration = number(window, "duration_secs");
    assert!(
        (requested * 0.98..=requested * 1.05).contains(&duration),
        "duration_secs should be within 2% below to 5% above requested_secs: {window:#}"
    );
    assert_eq!(window["interrupted"], false);
}
