//! The command line: bad input fails fast with one line on stderr, and the text report
//! names what it found without passing terminal control bytes through.

use std::process::Command;
use std::time::{Duration, Instant};

use probe_tests::{probe_output, require_bpf, run_probe, Workload};

/// How long a rejected command line may take: it must fail before attaching anything.
const QUICK: Duration = Duration::from_secs(5);

/// Asserts probe rejected `args` quickly, printing nothing on stdout; returns stderr.
fn assert_rejected(args: &[&str]) -> String {
    let start = Instant::now();
    let output = probe_output(args, QUICK);
    let elapsed = start.elapsed();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        !output.status.success(),
        "probe {args:?} succeeded:\n{stderr}"
    );
    assert!(elapsed < QUICK, "probe {args:?} took {elapsed:?} to fail");
    assert!(
        output.stdout.is_empty(),
        "probe {args:?} printed on stdout:\n{}",
        String::from_utf8_lossy(&output.stdout)
    );
    stderr
}

fn assert_pid_rejected(pid: &str) {
    let stderr = assert_rejected(&["spin", "--json", "-p", pid, "-d", "1"]);
    assert_eq!(
        stderr.trim_end().lines().count(),
        1,
        "not one line:\n{stderr}"
    );
    assert!(
        stderr.contains(pid),
        "stderr does not name pid {pid}:\n{stderr}"
    );
}

#[test]
fn rejects_missing_pid() {
    if !require_bpf() {
        return;
    }
    assert_pid_rejected("999999999");
}

#[test]
fn rejects_reaped_pid() {
    if !require_bpf() {
        return;
    }
    let mut child = Command::new("true").spawn().expect("failed to start true");
    let pid = child.id().to_string();
    child.wait().expect("failed to reap true");
    assert_pid_rejected(&pid);
}

#[test]
fn rejects_bad_threshold_and_duration() {
    if !require_bpf() {
        return;
    }
    // (arguments, the rejected value the error must name)
    let cases: [(&[&str], &str); 3] = [
        (&["spin", "--json", "-d", "1", "--threshold", "101"], "101"),
        (&["spin", "--json", "-d", "1", "--threshold=-1"], "-1"),
        (&["spin", "--json", "-d", "0"], "0"),
    ];
    for (args, value) in cases {
        let stderr = assert_rejected(args);
        let first = stderr.lines().next().unwrap_or("");
        assert!(
            first.contains(&format!("'{value}'")) || first.contains(&format!(" {value}")),
            "probe {args:?}: the error does not name the value {value}:\n{stderr}"
        );
    }
}

#[test]
fn text_output_names_spinner_and_function() {
    if !require_bpf() {
        return;
    }
    let spin = Workload::start("spin_loop", &[]);
    let pid = spin.pid.to_string();
    let output = run_probe(&["spin", "-p", &pid, "-d", "2"]);
    let text = String::from_utf8_lossy(&output.stdout);

    assert!(
        text.contains(&spin.tid.to_string()),
        "no tid {}:\n{text}",
        spin.tid
    );
    assert!(text.contains("spin_inner"), "no spin_inner:\n{text}");
}

#[test]
fn text_output_escapes_thread_name() {
    if !require_bpf() {
        return;
    }
    let spin = Workload::start("spin_loop", &["--escape-name"]);
    let pid = spin.pid.to_string();
    let output = run_probe(&["spin", "-p", &pid, "-d", "2"]);
    let text = String::from_utf8_lossy(&output.stdout);

    assert!(
        text.contains(&spin.tid.to_string()),
        "no tid {}:\n{text}",
        spin.tid
    );
    assert!(
        !output.stdout.contains(&0x1b),
        "raw ESC on stdout:\n{text:?}"
    );
    assert!(
        !output.stderr.contains(&0x1b),
        "raw ESC on stderr:\n{:?}",
        String::from_utf8_lossy(&output.stderr)
    );
}
