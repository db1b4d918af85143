//! Where the loop is, and the hottest stacks.

use super::*;
use crate::report::{LoopIn, SpinOptions};

fn loop_in(thread: ThreadBuilder) -> Option<LoopIn> {
    let report = profile().thread(thread).report();
    only_spinning(&report).loop_in.clone()
}

fn function(loop_in: &Option<LoopIn>) -> Option<&str> {
    loop_in.as_ref().and_then(|l| l.frame.function.as_deref())
}

#[test]
fn loop_is_in_the_innermost_user_function_common_to_most_samples() {
    let (main, outer, inner) = (
        user("main", "app"),
        user("outer", "app"),
        user("inner", "app"),
    );
    let thread = thread(1, 10)
        .cpu(100)
        .samples(100, 0)
        .stack(40, vec![user("leaf_a", "app"), outer.clone(), main.clone()])
        .stack(
            30,
            vec![
                user("leaf_b", "app"),
                inner.clone(),
                outer.clone(),
                main.clone(),
            ],
        )
        .stack(30, vec![user("leaf_c", "app"), inner.clone(), outer, main]);
    let found = loop_in(thread).expect("a common frame");
    // `inner` is in 60% of samples and inside `outer`/`main` wherever they meet, although
    // the hottest stack does not contain it.
    assert_eq!(found.frame.function.as_deref(), Some("inner"));
    assert_eq!(found.share, 0.6);
    assert_eq!(found.frame.module, "app");
}

#[test]
fn different_lines_of_one_function_count_as_one_and_the_hottest_line_is_shown() {
    let spin = user("spin_inner", "spin_loop");
    let thread = thread(1, 10)
        .cpu(100)
        .samples(100, 0)
        .stack(
            30,
            vec![at(spin.clone(), "spin.c", 11), user("main", "spin_loop")],
        )
        .stack(
            68,
            vec![at(spin.clone(), "spin.c", 12), user("main", "spin_loop")],
        )
        .stack(2, vec![user("main", "spin_loop")]);
    let found = loop_in(thread).expect("a common frame");
    assert_eq!(found.frame.function.as_deref(), Some("spin_inner"));
    assert_eq!(
        (found.frame.file.as_deref(), found.frame.line),
        (Some("spin.c"), Some(12))
    );
    assert_eq!(found.share, 0.98);
}

#[test]
fn truncated_stacks_still_find_the_inner_function() {
    let (work, helper) = (user("work", "app"), user("helper", "app"));
    let thread = thread(1, 10)
        .cpu(100)
        .samples(100, 0)
        .truncated_stack(50, vec![helper.clone(), work.clone()])
        .truncated_stack(30, vec![helper.clone(), work.clone(), user("run", "app")])
        .stack(20, vec![work, user("run", "app"), user("main", "app")]);
    assert_eq!(function(&loop_in(thread)), Some("helper"));
}

#[test]
fn exactly_half_of_the_samples_is_enough() {
    let thread = thread(1, 10)
        .cpu(100)
        .samples(100, 0)
        .stack(50, vec![user("hot", "app")])
        .stack(50, vec![user("cold", "lib")]);
    let found = loop_in(thread).expect("a common frame");
    assert_eq!(found.share, 0.5);
    // A tie goes to the function seen first in the stacks' fixed order: same every run.
    assert_eq!(found.frame.function.as_deref(), Some("cold"));
}

#[test]
fn unnamed_frames_are_told_apart_by_offset() {
    let thread = thread(1, 10)
        .cpu(100)
        .samples(100, 0)
        .stack(
            40,
            vec![unnamed("libx.so", 0x10), unnamed("libx.so", 0x500)],
        )
        .stack(
            40,
            vec![unnamed("libx.so", 0x20), unnamed("libx.so", 0x500)],
        )
        .stack(20, vec![unnamed("libx.so", 0x30)]);
    let found = loop_in(thread).expect("a common frame");
    assert_eq!(
        (found.frame.function, found.frame.module_offset),
        (None, 0x500)
    );
    assert_eq!(found.share, 0.8);
}

#[test]
fn the_kernel_frame_is_used_when_no_user_frame_is_common() {
    let thread = thread(1, 10)
        .cpu(100)
        .samples(10, 90)
        .stack(
            45,
            vec![kernel("copy_page"), kernel("do_fault"), user("a", "app")],
        )
        .stack(
            45,
            vec![kernel("zero_page"), kernel("do_fault"), user("b", "app")],
        )
        .stack(10, vec![user("c", "app")]);
    let found = loop_in(thread).expect("a common frame");
    assert_eq!(found.frame.function.as_deref(), Some("do_fault"));
    assert_eq!(found.frame.kind, crate::model::FrameKind::Kernel);
}

#[test]
fn no_loop_without_a_common_frame_or_without_samples() {
    let scattered = thread(1, 10)
        .cpu(100)
        .samples(100, 0)
        .stack(40, vec![user("a", "app")])
        .stack(30, vec![user("b", "app")])
        .stack(30, vec![user("c", "app")]);
    assert_eq!(loop_in(scattered), None);
    assert_eq!(loop_in(thread(1, 10).cpu(100)), None);
}

#[test]
fn recursion_counts_a_sample_once() {
    let rec = user("recurse", "app");
    let thread = thread(1, 10)
        .cpu(100)
        .samples(100, 0)
        .stack(40, vec![rec.clone(), rec.clone(), rec.clone()])
        .stack(60, vec![user("other", "app")]);
    assert_eq!(function(&loop_in(thread)), Some("other"));
}

#[test]
fn stacks_are_the_hottest_top_with_their_share() {
    let profile = profile()
        .thread(
            thread(1, 10)
                .cpu(100)
                .samples(150, 50)
                .stack(20, vec![user("c", "app")])
                .stack(100, vec![user("a", "app")])
                .truncated_stack(60, vec![kernel("k"), user("b", "app")])
                .stack(20, vec![user("d", "app")]),
        )
        .build();
    let options = SpinOptions {
        threshold_pct: 90.0,
        top: 3,
    };
    let report = analyze(&profile, &options);
    let stacks = &only_spinning(&report).stacks;
    let summary: Vec<(u64, f64, bool, usize)> = stacks
        .iter()
        .map(|s| (s.count, s.share, s.truncated, s.frames.len()))
        .collect();
    assert_eq!(
        summary,
        [
            (100, 0.5, false, 1),
            (60, 0.3, true, 2),
            (20, 0.1, false, 1)
        ]
    );
    // Equal counts are ordered by their frames, not by input order.
    assert_eq!(stacks[2].frames[0].function.as_deref(), Some("c"));
}

#[test]
fn shares_never_exceed_one_when_stack_counts_outnumber_mode_samples() {
    let report = profile()
        .thread(
            thread(1, 10)
                .cpu(100)
                .samples(5, 0)
                .stack(10, vec![user("a", "app")]),
        )
        .report();
    let thread = only_spinning(&report);
    assert_eq!(thread.samples, 10);
    assert_eq!(thread.stacks[0].share, 1.0);
}

#[test]
fn loop_in_prefers_python_frames_over_the_interpreter() {
    let stack = |leaf: &str| {
        vec![
            user(leaf, "libpython3.12.so"),
            python("inner", "app.py", 11),
            python("outer", "app.py", 20),
        ]
    };
    let report = profile()
        .thread(
            thread(1, 2)
                .cpu(100)
                .samples(10, 0)
                .stack(6, stack("PyNumber_Add"))
                .stack(4, stack("_PyEval_EvalFrameDefault")),
        )
        .report();
    let loop_in = only_spinning(&report).loop_in.as_ref().unwrap();
    assert_eq!(loop_in.frame.kind, FrameKind::Python);
    assert_eq!(loop_in.frame.function.as_deref(), Some("inner"));
    assert_eq!(loop_in.share, 1.0);
}

/// The zlib scene: most samples in libz under `zlib.compress`, called from Python code;
/// the interpreter (libpython) calls the Python frames. The loop is libz's, called from
/// the Python function; a sample in libpython's own helpers is Python code.
#[test]
fn loop_in_native_code_called_from_python_names_both() {
    let native = vec![
        user("deflate_slow", "libz.so.1"),
        user("deflate", "libz.so.1"),
        user("zlib_compress", "zlib.cpython-312.so"),
        user("cfunction_vectorcall", "libpython3.12.so"),
        python("compress_loop", "app.py", 7),
        python("main", "app.py", 20),
        user("PyEval_EvalCode", "libpython3.12.so"),
        user("main", "python3.12"),
    ];
    let interpreter = vec![
        user("PyNumber_Add", "libpython3.12.so"),
        python("compress_loop", "app.py", 8),
        python("main", "app.py", 20),
        user("PyEval_EvalCode", "libpython3.12.so"),
        user("main", "python3.12"),
    ];
    assert!(crate::report::frames::in_native_called_from_python(&native));
    assert!(!crate::report::frames::in_native_called_from_python(
        &interpreter
    ));
    assert!(!crate::report::frames::in_native_called_from_python(&[
        user("f", "c")
    ]));
    // A syscall storm made by Python code: the kernel's time, not a native loop.
    let storm = vec![
        kernel("do_sys_openat2"),
        user("__libc_open64", "libc.so.6"),
        user("_PyEval_EvalFrame", "libpython3.12.so"),
        python("is_zipfile", "zipfile.py", 232),
        user("PyEval_EvalCode", "libpython3.12.so"),
    ];
    assert!(!crate::report::frames::in_native_called_from_python(&storm));
    let report = profile()
        .thread(
            thread(1, 2)
                .cpu(100)
                .samples(10, 0)
                .stack(8, native)
                .stack(2, interpreter),
        )
        .report();
    let thread = only_spinning(&report);
    let loop_in = thread.loop_in.as_ref().unwrap();
    assert_eq!(loop_in.frame.function.as_deref(), Some("deflate_slow"));
    assert_eq!(loop_in.frame.kind, FrameKind::User);
    assert_eq!(loop_in.share, 0.8);
    let caller = loop_in.called_from.as_ref().unwrap();
    assert_eq!(caller.function.as_deref(), Some("compress_loop"));
    assert!(
        thread
            .classification
            .evidence
            .contains("(100% in Python code, 80% in native code called from it)"),
        "{}",
        thread.classification.evidence
    );
    let text = crate::report::render_text(&report);
    assert!(
        text.contains(
            "loop in: deflate_slow (libz.so.1) — in 80% of samples, called from [py] compress_loop"
        ),
        "{text}"
    );
}
