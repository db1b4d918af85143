//! Picking threads out of probe's JSON report and checking their documented shape.

use serde_json::Value;

/// The threads of `list` (`"spinning"` or `"busiest"`) in `report`.
pub fn threads<'a>(report: &'a Value, list: &str) -> &'a [Value] {
    report[list]
        .as_array()
        .unwrap_or_else(|| panic!("report has no {list:?} array:\n{report:#}"))
}

/// The thread `tid` in `report[list]`, if listed.
pub fn find_thread<'a>(report: &'a Value, list: &str, tid: u32) -> Option<&'a Value> {
    threads(report, list)
        .iter()
        .find(|thread| thread["tid"].as_u64() == Some(u64::from(tid)))
}

/// The thread `tid` in `report["spinning"]`; panics, showing the report, if absent.
pub fn spinning_thread(report: &Value, tid: u32) -> &Value {
    find_thread(report, "spinning", tid)
        .unwrap_or_else(|| panic!("thread {tid} is not in \"spinning\":\n{report:#}"))
}

/// Every thread the report lists, spinning or busiest.
pub fn all_threads(report: &Value) -> impl Iterator<Item = &Value> {
    threads(report, "spinning")
        .iter()
        .chain(threads(report, "busiest"))
}

/// The stack of `thread` with the most samples.
pub fn hottest_stack(thread: &Value) -> &Value {
    thread["stacks"]
        .as_array()
        .expect("stacks is an array")
        .iter()
        .max_by_key(|stack| stack["count"].as_u64().expect("stack count is an integer"))
        .unwrap_or_else(|| panic!("thread has no stacks:\n{thread:#}"))
}

/// Asserts a loop of `openat("/")`, `fstat` and `close` (one each per iteration): the three
/// lead the thread's syscalls in any order, with counts equal but for the iterations cut
/// by the window's edges. glibc >= 2.33 implements fstat with newfstatat on x86_64.
pub fn assert_open_fstat_close_loop(thread: &Value, context: &str) {
    let names = syscall_names(thread);
    let fstat = if names.contains(&"newfstatat") {
        "newfstatat"
    } else {
        "fstat"
    };
    let mut top: Vec<&str> = names.iter().take(3).copied().collect();
    top.sort_unstable();
    let mut expected = vec!["close", fstat, "openat"];
    expected.sort_unstable();
    assert_eq!(top, expected, "{context}:\n{thread:#}");
    let counts: Vec<u64> = thread["syscalls"].as_array().expect("syscalls array")[..3]
        .iter()
        .map(|syscall| syscall["count"].as_u64().expect("count is an integer"))
        .collect();
    let (min, max) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
    assert!(
        max - min <= max / 100 + 2,
        "{context}: counts {counts:?}\n{thread:#}"
    );
}

/// The names of a thread's syscalls, in report order.
pub fn syscall_names(thread: &Value) -> Vec<&str> {
    thread["syscalls"]
        .as_array()
        .unwrap_or_else(|| panic!("thread has no syscalls array:\n{thread:#}"))
        .iter()
        .map(|syscall| syscall["name"].as_str().expect("syscall name is a string"))
        .collect()
}

/// A number field of `value`; panics, showing `value`, if it is missing or not a number.
pub fn number(value: &Value, key: &str) -> f64 {
    value[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key:?} is not a number in:\n{value:#}"))
}

/// Asserts `value[key]` exists and passes `test`.
pub fn assert_field(value: &Value, key: &str, what: &str, test: fn(&Value) -> bool) {
    let field = value
        .get(key)
        .unwrap_or_else(|| panic!("missing {key:?} in:\n{value:#}"));
    assert!(test(field), "{key:?} should be {what}, is {field}");
}

fn string_or_null(value: &Value) -> bool {
    value.is_string() || value.is_null()
}

fn number_or_null(value: &Value) -> bool {
    value.is_number() || value.is_null()
}

fn u64_or_null(value: &Value) -> bool {
    value.is_u64() || value.is_null()
}

/// Asserts `thread` has every documented field with its documented type.
pub fn check_thread(thread: &Value) {
    for key in [
        "pid",
        "tid",
        "voluntary_switches",
        "involuntary_switches",
        "samples",
    ] {
        assert_field(thread, key, "an integer", Value::is_u64);
    }
    for key in ["process_name", "thread_name"] {
        assert_field(thread, key, "a string", Value::is_string);
    }
    for key in ["cpu_pct", "syscalls_per_sec"] {
        assert_field(thread, key, "a number", Value::is_number);
    }
    for key in ["user_pct", "kernel_pct"] {
        assert_field(thread, key, "a number or null", number_or_null);
    }
    assert_field(
        thread,
        "python_thread_name",
        "a string or null",
        string_or_null,
    );
    assert_field(thread, "exited", "a boolean", Value::is_boolean);
    assert_field(thread, "cmdline", "an array of strings", |v| {
        v.as_array()
            .is_some_and(|args| args.iter().all(Value::is_string))
    });
    assert_field(thread, "syscalls", "an array", Value::is_array);
    thread["syscalls"]
        .as_array()
        .unwrap()
        .iter()
        .for_each(check_syscall);
    check_classification(&thread["classification"]);
    assert_field(thread, "loop_in", "an object or null", |v| {
        v.is_object() || v.is_null()
    });
    if thread["loop_in"].is_object() {
        check_location(&thread["loop_in"]);
        assert_field(&thread["loop_in"], "share", "a number", Value::is_number);
    }
    assert_field(thread, "stacks", "an array", Value::is_array);
    thread["stacks"]
        .as_array()
        .unwrap()
        .iter()
        .for_each(check_stack);
}

fn check_syscall(syscall: &Value) {
    assert_field(syscall, "name", "a string", Value::is_string);
    assert_field(syscall, "nr", "an integer", Value::is_u64);
    assert_field(syscall, "count", "an integer", Value::is_u64);
    assert_field(syscall, "per_sec", "a number", Value::is_number);
}

fn check_classification(classification: &Value) {
    assert_field(classification, "kind", "a known kind", |v| {
        let kinds = ["user_loop", "syscall_storm", "poll_storm", "kernel_bound"];
        v.as_str().is_some_and(|kind| kinds.contains(&kind))
    });
    assert!(
        classification.get("evidence").is_some(),
        "missing evidence in {classification}"
    );
}

/// The fields a frame and `loop_in` share.
fn check_location(location: &Value) {
    assert_field(location, "function", "a string or null", string_or_null);
    assert_field(location, "module", "a string", Value::is_string);
    assert_field(location, "module_offset", "an integer", Value::is_u64);
    assert_field(location, "file", "a string or null", string_or_null);
    assert_field(location, "line", "an integer or null", u64_or_null);
}

fn check_stack(stack: &Value) {
    assert_field(stack, "share", "a number", Value::is_number);
    assert_field(stack, "count", "an integer", Value::is_u64);
    assert_field(stack, "truncated", "a boolean", Value::is_boolean);
    assert_field(stack, "frames", "an array", Value::is_array);
    for frame in stack["frames"].as_array().unwrap() {
        assert_field(frame, "kind", "user, kernel or python", |v| {
            v == "user" || v == "kernel" || v == "python"
        });
        check_location(frame);
    }
}
