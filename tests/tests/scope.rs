//! Which threads `probe spin` looks at: `-p` keeps everything else out of the report, and
//! without it the whole machine is in scope.

use probe_tests::{all_threads, require_bpf, spin_json, spinning_thread, threads, Workload};
use serde_json::Value;

#[test]
fn pid_filter_excludes_other_processes() {
    if !require_bpf() {
        return;
    }
    let spin = Workload::start("spin_loop", &[]);
    let storm = Workload::start("syscall_storm", &[]);
    let pid = spin.pid.to_string();
    let report = spin_json(&["-p", &pid, "-d", "2"]);

    assert_eq!(report["scope"]["pids"], serde_json::json!([spin.pid]));
    assert_only_pid(&report, spin.pid, &[storm.pid]);
    spinning_thread(&report, spin.tid);
}

#[test]
fn pid_filter_with_nothing_spinning() {
    if !require_bpf() {
        return;
    }
    // Nothing in scope spins, so "busiest" lists the scope's threads: a leak of the
    // spinners outside the scope would show there.
    let spin = Workload::start("spin_loop", &[]);
    let storm = Workload::start("syscall_storm", &[]);
    let idle = Workload::start("idle_threads", &[]);
    let pid = idle.pid.to_string();
    let report = spin_json(&["-p", &pid, "-d", "2"]);

    assert!(threads(&report, "spinning").is_empty(), "{report:#}");
    assert_only_pid(&report, idle.pid, &[spin.pid, storm.pid]);
}

/// Asserts every thread the report lists belongs to `pid`; `others` are the test's own
/// out-of-scope workloads, named in the message.
fn assert_only_pid(report: &Value, pid: u32, others: &[u32]) {
    let strays: Vec<String> = all_threads(report)
        .filter(|thread| thread["pid"] != pid)
        .map(|thread| {
            format!(
                "pid {} tid {} {} ({}% CPU)",
                thread["pid"], thread["tid"], thread["thread_name"], thread["cpu_pct"]
            )
        })
        .collect();
    assert!(
        strays.is_empty(),
        "-p {pid} report lists threads of other processes (the test's others: {others:?}): \
         {strays:?}\n{report:#}"
    );
}

#[test]
fn systemwide_finds_spinner() {
    if !require_bpf() {
        return;
    }
    let spin = Workload::start("spin_loop", &[]);
    let report = spin_json(&["-d", "2"]);

    spinning_thread(&report, spin.tid);
}
