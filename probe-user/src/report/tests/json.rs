//! The JSON schema: round trip and the documented keys.

use serde_json::Value;
use syscalls::Sysno;

use super::*;
use crate::report::render_json;

/// A report with every optional part filled: a spinning thread with syscalls, a loop,
/// stacks, a partial window, losses and notices.
fn full_report() -> SpinReport {
    let loss = LossCounters {
        samples: 300,
        samples_lost: 3,
        threads_dropped: 1,
        syscalls_dropped: 0,
        targets_dropped: 0,
        off_cpu_dropped: 0,
        syscall_args_lost: 0,
    };
    profile()
        .window(3 * SEC, 1_234_567_891, true)
        .targets(&[1])
        .loss(loss)
        .notice("a notice")
        .process(1, "app", &["app", "--x"])
        .thread(
            thread(1, 10)
                .on_cpu_ns(1_234_000_000)
                .samples(77, 23)
                .switches(1, 2)
                .syscall(Sysno::getppid, 33_333)
                .syscall(Sysno::read, 7)
                .stack(70, vec![kernel("k"), at(user("f", "app"), "f.c", 3)])
                .truncated_stack(30, vec![unnamed("app", 0x77)]),
        )
        .thread(thread(1, 11).on_cpu_ns(1))
        .report()
}

fn keys(value: &Value) -> Vec<&str> {
    let mut keys: Vec<&str> = value
        .as_object()
        .map(|object| object.keys().map(String::as_str).collect())
        .unwrap_or_default();
    keys.sort_unstable();
    keys
}

fn sorted(mut keys: Vec<&str>) -> Vec<&str> {
    keys.sort_unstable();
    keys
}

#[test]
fn json_round_trips_to_the_same_report() {
    let report = full_report();
    let json = render_json(&report);
    assert!(json.ends_with("}\n"), "{json}");
    let parsed: SpinReport = serde_json::from_str(&json).unwrap();
    assert_eq!(parsed, report);
    let busiest = profile()
        .thread(thread(1, 10).on_cpu_ns(123_456_789))
        .report();
    let parsed: SpinReport = serde_json::from_str(&render_json(&busiest)).unwrap();
    assert_eq!(parsed, busiest);
}

#[test]
fn json_has_the_documented_top_level_keys() {
    let json: Value = serde_json::from_str(&render_json(&full_report())).unwrap();
    let expected = [
        "schema_version",
        "command",
        "window",
        "frequency_hz",
        "online_cpus",
        "scope",
        "threshold_pct",
        "loss",
        "notices",
        "spinning",
        "busiest",
    ];
    assert_eq!(keys(&json), sorted(expected.to_vec()));
    assert_eq!(json["schema_version"], 2);
    assert_eq!(json["command"], "spin");
    assert_eq!(
        keys(&json["window"]),
        [
            "duration_secs",
            "interrupted",
            "interrupted_by",
            "requested_secs"
        ]
    );
    assert_eq!(json["window"]["interrupted_by"], "Ctrl-C");
    assert_eq!(json["window"]["duration_secs"], 1.235);
    assert_eq!(json["window"]["interrupted"], true);
    assert_eq!(json["scope"]["pids"], serde_json::json!([1]));
    assert_eq!(
        keys(&json["loss"]),
        [
            "samples",
            "samples_lost",
            "syscalls_dropped",
            "threads_dropped"
        ]
    );
    assert_eq!(json["notices"], serde_json::json!(["a notice"]));
    assert_eq!(json["busiest"], serde_json::json!([]));
}

#[test]
fn json_thread_objects_have_the_documented_keys() {
    let json: Value = serde_json::from_str(&render_json(&full_report())).unwrap();
    let thread = &json["spinning"][0];
    let expected = [
        "pid",
        "tid",
        "process_name",
        "cmdline",
        "thread_name",
        "python_thread_name",
        "exited",
        "cpu_pct",
        "user_pct",
        "kernel_pct",
        "voluntary_switches",
        "involuntary_switches",
        "syscalls_per_sec",
        "syscalls",
        "classification",
        "loop_in",
        "samples",
        "stacks",
    ];
    assert_eq!(keys(thread), sorted(expected.to_vec()));
    assert_eq!(thread["cmdline"], serde_json::json!(["app", "--x"]));
    assert_eq!(
        keys(&thread["syscalls"][0]),
        ["count", "name", "nr", "per_sec", "sampled_share"]
    );
    assert_eq!(keys(&thread["classification"]), ["evidence", "kind"]);
    assert_eq!(thread["classification"]["kind"], "syscall_storm");
    let loop_keys = [
        "file",
        "function",
        "kind",
        "line",
        "module",
        "module_offset",
        "share",
    ];
    assert_eq!(keys(&thread["loop_in"]), loop_keys);
    assert_eq!(
        keys(&thread["stacks"][0]),
        ["count", "frames", "share", "truncated"]
    );
    let frame_keys = [
        "file",
        "function",
        "kind",
        "line",
        "module",
        "module_offset",
    ];
    assert_eq!(keys(&thread["stacks"][0]["frames"][0]), frame_keys);
    assert_eq!(thread["stacks"][0]["frames"][0]["kind"], "kernel");
    assert_eq!(thread["stacks"][1]["truncated"], true);
}

#[test]
fn unknown_split_and_missing_loop_are_null() {
    let report = profile().thread(thread(1, 10).cpu(100)).report();
    let json: Value = serde_json::from_str(&render_json(&report)).unwrap();
    let thread = &json["spinning"][0];
    assert!(thread["user_pct"].is_null() && thread["kernel_pct"].is_null());
    assert!(thread["loop_in"].is_null());
    assert_eq!(json["loss"]["samples_lost"], 0);
}
