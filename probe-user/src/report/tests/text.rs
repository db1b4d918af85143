//! The human text: header, thread blocks, stacks, and escaping of untrusted names.

use syscalls::Sysno;

use super::*;
use crate::report::render_text;

/// A profile with one spinning `spin_loop` thread, as in the README.
fn spin_loop() -> ProfileBuilder {
    let spin = at(user("spin_inner", "spin_loop"), "spin.c", 12);
    let main = at(user("main", "spin_loop"), "spin.c", 30);
    profile()
        .window(5 * SEC, 5 * SEC, false)
        .process(1234, "spin_loop", &["./spin_loop", "--busy"])
        .thread(
            thread(1234, 1240)
                .name("worker-3")
                .on_cpu_ns(4_980_000_000)
                .samples(490, 5)
                .switches(2, 41)
                .syscall(Sysno::read, 10)
                .stack(485, vec![spin, main.clone()])
                .stack(
                    10,
                    vec![kernel("__x64_sys_read"), user("read", "libc.so.6"), main],
                ),
        )
}

#[test]
fn a_spinning_thread_reads_as_one_compact_block() {
    let text = render_text(&spin_loop().report());
    let expected = "\
1 thread at or above 90% of one CPU:

pid 1234 tid 1240 \"worker-3\" in spin_loop (./spin_loop --busy) — 99.6% CPU (user 98.6%, kernel 1.0%)
  class: user_loop — 99% of samples in user space, 2 syscalls/s
  switches: 2 voluntary, 41 involuntary
  syscalls: 2/s — read 10 (2/s)
  loop in: spin_inner (spin_loop) at spin.c:12 — in 98% of samples
  hottest stacks (495 samples):
    98.0% (485 samples)
           spin_inner (spin_loop) at spin.c:12
           main (spin_loop) at spin.c:30
    2.0% (10 samples)
      [k]  __x64_sys_read
           read (libc.so.6)
           main (spin_loop) at spin.c:30
";
    let body = text.split_once("\n\n").map(|(_header, body)| body);
    assert_eq!(body, Some(expected), "{text}");
}

#[test]
fn header_shows_scope_window_threshold_and_losses() {
    let text = render_text(&profile().targets(&[42]).report());
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("probe spin: pid 42, 4 CPUs, 99 Hz, threshold 90% of one CPU")
    );
    assert_eq!(lines.next(), Some("window: 1.0 s (requested 1.0 s)"));
    assert_eq!(
        lines.next(),
        Some("samples: 0, lost: 0, threads dropped: 0, syscalls dropped: 0")
    );
}

#[test]
fn an_interrupted_window_is_called_partial() {
    let text = render_text(&profile().window(10 * SEC, 3_200_000_000, true).report());
    assert!(
        text.contains(
            "window: 3.2 s (requested 10.0 s) — interrupted by Ctrl-C — partial window\n"
        ),
        "{text}"
    );
}

#[test]
fn losses_and_notices_are_visible() {
    let loss = LossCounters {
        samples: 12_345,
        samples_lost: 17,
        threads_dropped: 2,
        syscalls_dropped: 1_000,
        targets_dropped: 0,
        off_cpu_dropped: 0,
        syscall_args_lost: 0,
    };
    let text = render_text(&profile().loss(loss).notice("no python frames").report());
    assert!(text.contains(
        "samples: 12,345, lost: 17, threads dropped: 2, syscalls dropped: 1,000 — counts below are incomplete\n"
    ), "{text}");
    assert!(text.contains("\nnote: no python frames\n"), "{text}");
}

#[test]
fn nothing_spinning_says_so_and_lists_the_busiest() {
    let text = render_text(&profile().thread(thread(1, 10).cpu(40)).report());
    assert!(text.contains(
        "nothing spins: no thread at or above 90% of one CPU; the busiest below it:\n\npid 1 tid 10 \"t10\" in t10 — 40.0% CPU (split unknown)\n"
    ), "{text}");
    let idle = render_text(&profile().report());
    assert!(idle.contains("none ran on a CPU in the window"), "{idle}");
}

#[test]
fn exited_threads_are_marked() {
    let text = render_text(&profile().thread(thread(1, 10).cpu(100).exited()).report());
    assert!(text.contains("% CPU (split unknown) (exited)\n"), "{text}");
}

#[test]
fn truncated_stacks_end_with_a_marker() {
    let report = profile()
        .thread(
            thread(1, 10)
                .cpu(100)
                .samples(10, 0)
                .truncated_stack(10, vec![user("f", "app")]),
        )
        .report();
    let text = render_text(&report);
    assert!(
        text.contains("           f (app)\n           … (truncated: unwinding stopped here)\n"),
        "{text}"
    );
}

#[test]
fn deep_stacks_are_cut_in_text_but_not_in_json() {
    let frames: Vec<_> = (0..30).map(|i| user(&format!("f{i}"), "app")).collect();
    let report = profile()
        .thread(
            thread(1, 10)
                .cpu(100)
                .samples(10, 0)
                .truncated_stack(10, frames),
        )
        .report();
    let text = render_text(&report);
    assert!(
        text.contains("           f11 (app)\n           … 18 more frames\n           … (truncated"),
        "{text}"
    );
    assert!(!text.contains("f12 (app)"), "{text}");
    assert_eq!(only_spinning(&report).stacks[0].frames.len(), 30);
}

#[test]
fn unnamed_and_kernel_module_frames_show_where_they_are() {
    let mut module_frame = kernel("nft_do_chain");
    module_frame.module = "nf_tables".to_owned();
    let report = profile()
        .thread(spinner_with_stack(vec![
            module_frame,
            unnamed("libfoo.so", 0x1a2b),
        ]))
        .report();
    let text = render_text(&report);
    assert!(
        text.contains("      [k]  nft_do_chain (nf_tables)\n           libfoo.so+0x1a2b\n"),
        "{text}"
    );
}

#[test]
fn control_characters_in_untrusted_strings_are_escaped() {
    let evil = "\x1b[31mred\x07\u{9b}2J\u{7f}é\u{202e}";
    let report = profile()
        .process(1, evil, &[evil, "--flag\nfake line"])
        .thread(
            thread(1, 10)
                .name(evil)
                .cpu(100)
                .samples(1, 0)
                .stack(1, vec![user(evil, evil)]),
        )
        .notice(evil)
        .report();
    let text = render_text(&report);
    let raw_controls: Vec<char> = text
        .chars()
        .filter(|c| c.is_control() && *c != '\n')
        .collect();
    assert!(
        raw_controls.is_empty(),
        "raw controls {raw_controls:?} in {text}"
    );
    assert!(!text.contains('\u{202e}'), "{text}");
    assert!(
        text.contains("\"\\x1b[31mred\\x07\\u{9b}2J\\x7fé\\u{202e}\""),
        "{text}"
    );
    assert!(text.contains("--flag\\x0afake line"), "{text}");
}

#[test]
fn long_command_lines_are_cut_in_text() {
    let long = "x".repeat(500);
    let report = profile()
        .process(1, "java", &["java", &long])
        .thread(thread(1, 10).cpu(100))
        .report();
    let text = render_text(&report);
    let shown = format!(
        "(java {}…)",
        "x".repeat(crate::report::TEXT_MAX_CMDLINE_CHARS - 5)
    );
    assert!(text.contains(&shown), "{text}");
}

#[test]
fn a_loop_in_the_kernel_is_marked() {
    let report = profile()
        .thread(
            thread(1, 10)
                .cpu(100)
                .samples(10, 90)
                .stack(45, vec![kernel("do_fault"), user("a", "app")])
                .stack(45, vec![kernel("do_fault"), user("b", "app")])
                .stack(10, vec![user("c", "app")]),
        )
        .report();
    let text = render_text(&report);
    assert!(
        text.contains("  loop in: [k] do_fault — in 90% of samples\n"),
        "{text}"
    );
}

#[test]
fn numbers_are_grouped_and_short() {
    use crate::report::human::{grouped, pct_short, rate};
    let groups: Vec<String> = [0, 999, 1000, 1_234_567].map(grouped).into();
    assert_eq!(groups, ["0", "999", "1,000", "1,234,567"]);
    assert_eq!(
        [90.0, 92.5, 100.0, 0.0].map(pct_short),
        ["90%", "92.5%", "100%", "0%"]
    );
    assert_eq!(
        [0.0, 0.44, 9.96, 10.4, 48_210.2].map(rate),
        ["0", "0.4", "10", "10", "48,210"]
    );
}

#[test]
fn python_frames_and_thread_names_are_marked() {
    let report = profile()
        .thread(
            spinner_with_stack(vec![
                kernel("__x64_sys_openat"),
                user("__libc_open64", "libc.so.6"),
                python("is_zipfile", "zipfile.py", 232),
                python("find_zip", "app.py", 13),
            ])
            .name("python3")
            .python_name("MainThread"),
        )
        .report();
    let text = render_text(&report);
    assert!(
        text.contains("tid 101 \"python3\" (Python \"MainThread\") in "),
        "{text}"
    );
    assert!(
        text.contains("  loop in: [py] is_zipfile at zipfile.py:232 — in 100% of samples\n"),
        "{text}"
    );
    let frames = "      [k]  __x64_sys_openat\n           __libc_open64 (libc.so.6)\n      \
                  [py] is_zipfile at zipfile.py:232\n      [py] find_zip at app.py:13\n";
    assert!(text.contains(frames), "{text}");
}
