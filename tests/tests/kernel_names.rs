//! Kernel frames get the names /proc/kallsyms gives their addresses. probe asks the kernel's
//! own symbol lookup (a BPF program printing `%ps`) instead of reading kallsyms; this checks
//! the two agree on a workload whose stacks are mostly kernel frames.
//!
//! Run with `cargo xtask test` (root: kallsyms shows addresses only to root).

use probe_tests::{require_bpf, run_probe, spinning_thread, Workload};
use serde_json::Value;

/// Every symbol of /proc/kallsyms as (address, name), sorted by address.
fn kallsyms() -> Vec<(u64, String)> {
    let text = std::fs::read_to_string("/proc/kallsyms").expect("read /proc/kallsyms");
    let parse = |line: &str| {
        let mut fields = line.split_whitespace();
        let addr = u64::from_str_radix(fields.next()?, 16).ok()?;
        let name = fields.nth(1)?.to_owned();
        Some((addr, name))
    };
    let mut symbols: Vec<(u64, String)> = text.lines().filter_map(parse).collect();
    symbols.sort();
    symbols
}

/// Names of the symbols at the highest address at or below `addr`.
fn names_at(symbols: &[(u64, String)], addr: u64) -> Vec<&str> {
    let after = symbols.partition_point(|(a, _)| *a <= addr);
    let Some(start) = after.checked_sub(1).map(|i| symbols[i].0) else {
        return Vec::new();
    };
    let same = symbols[..after]
        .iter()
        .rev()
        .take_while(|(a, _)| *a == start);
    same.map(|(_, name)| name.as_str()).collect()
}

/// The kernel frames of a stack, innermost first.
fn kernel_frames(stack: &Value) -> Vec<&Value> {
    let frames = stack["frames"].as_array().expect("frames is an array");
    frames.iter().filter(|f| f["kind"] == "kernel").collect()
}

#[test]
fn kernel_frames_are_named_as_kallsyms_names_them() {
    if !require_bpf() {
        return;
    }
    let storm = Workload::start("syscall_storm", &[]);
    let pid = storm.pid.to_string();
    let args = [
        "spin",
        "--json",
        "--self-stats",
        "-p",
        &pid,
        "-d",
        "2",
        "--top",
        "50",
    ];
    let output = run_probe(&args);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(r#""kernel_names":"kernel lookup""#),
        "kernel frames were not named by the kernel's lookup: {stderr}"
    );
    let report: Value = serde_json::from_slice(&output.stdout).expect("JSON report");
    let thread = spinning_thread(&report, storm.tid);
    let symbols = kallsyms();
    assert!(
        symbols.iter().any(|(addr, _)| *addr != 0),
        "kallsyms shows no addresses"
    );

    let mut checked = 0;
    for stack in thread["stacks"].as_array().expect("stacks") {
        for (depth, frame) in kernel_frames(stack).into_iter().enumerate() {
            let function = frame["function"].as_str();
            // A return address is named after the call before it, as probe does.
            let addr = frame["module_offset"].as_u64().expect("module_offset") - (depth > 0) as u64;
            if frame["module"] != "[kernel]" {
                continue; // a module's frame: its offset is relative to the module
            }
            match function {
                // probe's own programs are gone from kallsyms by now.
                Some(name) if name.starts_with("bpf_prog_") => {
                    assert!(name.ends_with("_sys_enter"), "{frame:#}");
                }
                Some(name) => {
                    let expected = names_at(&symbols, addr);
                    assert!(
                        expected.contains(&name),
                        "{addr:#x} is {expected:?} in kallsyms, probe says {name}"
                    );
                    checked += 1;
                }
                None => panic!("a kernel frame of a syscall storm is unnamed: {frame:#}"),
            }
        }
    }
    assert!(checked >= 2, "too few kernel frames to compare: {thread:#}");
}
