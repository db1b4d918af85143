//! Memory maps that change under the sampler: a library unloaded and another loaded at its
//! address, a process whose main thread has exited. Each sample must be named from the
//! mappings that were there when it was taken, or not at all.

use probe_tests::{
    require_bpf, run_probe, shared_library, spin_json, spinning_thread, ScratchDir, Workload,
};

/// Folded stacks: (frames outermost first, weight).
fn folded(text: &str) -> Vec<(Vec<&str>, u64)> {
    text.lines()
        .filter_map(|line| {
            let (stack, weight) = line.rsplit_once(' ')?;
            Some((stack.split(';').collect(), weight.parse().ok()?))
        })
        .collect()
}

fn weight_of(stacks: &[(Vec<&str>, u64)], function: &str) -> u64 {
    let with = stacks
        .iter()
        .filter(|(frames, _)| frames.contains(&function));
    with.map(|(_, weight)| weight).sum()
}

#[test]
fn a_library_replaced_at_the_same_address_is_named_as_it_was_sampled() {
    if !require_bpf() {
        return;
    }
    let lib_a = shared_library("dl_swap_lib", "swap_a", &["-DSPIN_NAME=swap_spin_a"]);
    let lib_b = shared_library("dl_swap_lib", "swap_b", &["-DSPIN_NAME=swap_spin_b"]);
    let (a, b) = (lib_a.to_str().unwrap(), lib_b.to_str().unwrap());
    let swapper = Workload::start("dl_swap", &[a, b]);
    let dir = ScratchDir::new("dl-swap");
    let out = dir.0.join("swap.folded");
    let pid = swapper.pid.to_string();
    // 1.5 s in each library; the recording covers the swap.
    run_probe(&[
        "record",
        "-p",
        &pid,
        "-d",
        "2.8",
        "-o",
        out.to_str().unwrap(),
    ]);
    let text = std::fs::read_to_string(&out).unwrap();
    let stacks = folded(&text);
    let (in_a, in_b) = (
        weight_of(&stacks, "swap_spin_a"),
        weight_of(&stacks, "swap_spin_b"),
    );
    // About 1.4 s in A and 1.4 s in B at 99 Hz; the samples around the swap may be cut
    // (truncated) but never named after the other library.
    assert!(in_a >= 60, "swap_spin_a has {in_a} samples:\n{text}");
    assert!(in_b >= 60, "swap_spin_b has {in_b} samples:\n{text}");
    let mixed = stacks
        .iter()
        .find(|(frames, _)| frames.contains(&"swap_spin_a") && frames.contains(&"swap_spin_b"));
    assert!(mixed.is_none(), "one stack with both libraries: {mixed:?}");
}

#[test]
fn a_process_whose_main_thread_exited_gets_named_frames() {
    if !require_bpf() {
        return;
    }
    let orphan = Workload::start("main_exits", &[]);
    let pid = orphan.pid.to_string();
    let report = spin_json(&["-d", "1", "-p", &pid]);
    let thread = spinning_thread(&report, orphan.tid);
    assert_eq!(thread["loop_in"]["function"], "orphan_loop", "{thread:#}");
}
