//! Which threads spin, their order, the busiest list, and the per-thread numbers.

use syscalls::Sysno;

use super::*;
use crate::report::SpinOptions;

fn tids(threads: &[ThreadReport]) -> Vec<u32> {
    threads.iter().map(|t| t.tid).collect()
}

#[test]
fn exactly_at_the_threshold_spins_and_just_below_does_not() {
    let report = profile()
        .thread(thread(1, 10).on_cpu_ns(SEC * 9 / 10))
        .thread(thread(1, 11).on_cpu_ns(SEC * 9 / 10 - 1))
        .report();
    assert_eq!(tids(&report.spinning), [10]);
    assert_eq!(report.spinning[0].cpu_pct, 90.0);
    assert!(report.busiest.is_empty());
}

#[test]
fn a_fractional_threshold_is_compared_exactly() {
    let options = SpinOptions {
        threshold_pct: 33.3,
        top: 5,
    };
    let profile = profile()
        .thread(thread(1, 10).on_cpu_ns(333_000_000))
        .thread(thread(1, 11).on_cpu_ns(332_999_999))
        .build();
    assert_eq!(tids(&analyze(&profile, &options).spinning), [10]);
}

#[test]
fn spinning_threads_are_sorted_by_cpu_then_tid_and_never_cut_to_top() {
    let profile = profile()
        .thread(thread(1, 30).cpu(95))
        .thread(thread(2, 20).cpu(100))
        .thread(thread(1, 12).cpu(95))
        .thread(thread(3, 40).cpu(99))
        .build();
    let options = SpinOptions {
        threshold_pct: 90.0,
        top: 1,
    };
    assert_eq!(
        tids(&analyze(&profile, &options).spinning),
        [20, 40, 12, 30]
    );
}

#[test]
fn cpu_is_a_share_of_the_actual_window() {
    let report = profile()
        .window(10 * SEC, 2 * SEC, true)
        .thread(thread(1, 10).on_cpu_ns(SEC))
        .report();
    assert_eq!(report.busiest[0].cpu_pct, 50.0);
    assert_eq!(report.window.requested_secs, 10.0);
    assert_eq!(report.window.duration_secs, 2.0);
    assert!(report.window.interrupted);
}

#[test]
fn an_empty_window_yields_zeros_not_nan() {
    let report = profile()
        .window(SEC, 0, true)
        .thread(thread(1, 10).on_cpu_ns(SEC).syscall(Sysno::read, 5))
        .report();
    assert!(report.spinning.is_empty());
    let thread = &report.busiest[0];
    assert_eq!((thread.cpu_pct, thread.syscalls_per_sec), (0.0, 0.0));
}

#[test]
fn when_nothing_spins_the_busiest_are_listed_up_to_top() {
    let profile = profile()
        .thread(thread(1, 10).cpu(5))
        .thread(thread(1, 11).cpu(50))
        .thread(thread(1, 12).cpu(20))
        .thread(thread(1, 13).cpu(1))
        .build();
    let options = SpinOptions {
        threshold_pct: 90.0,
        top: 3,
    };
    let report = analyze(&profile, &options);
    assert!(report.spinning.is_empty());
    assert_eq!(tids(&report.busiest), [11, 12, 10]);
}

#[test]
fn threads_that_never_ran_are_not_among_the_busiest() {
    let report = profile()
        .thread(thread(1, 10))
        .thread(thread(1, 11).on_cpu_ns(1))
        .report();
    assert_eq!(tids(&report.busiest), [11]);
}

#[test]
fn user_and_kernel_split_follows_the_sample_ratio() {
    let report = profile()
        .thread(thread(1, 10).cpu(100).samples(75, 25))
        .report();
    let thread = only_spinning(&report);
    assert_eq!(
        (thread.user_pct, thread.kernel_pct),
        (Some(75.0), Some(25.0))
    );
    assert_eq!(thread.samples, 100);
}

#[test]
fn split_is_unknown_without_samples() {
    let report = profile().thread(thread(1, 10).cpu(100)).report();
    let thread = only_spinning(&report);
    assert_eq!((thread.user_pct, thread.kernel_pct), (None, None));
    assert_eq!(thread.samples, 0);
}

#[test]
fn names_come_from_the_process_with_the_thread_name_as_fallback() {
    let report = profile()
        .process(1, "server", &["/usr/bin/server", "--port", "80"])
        .thread(thread(1, 10).name("worker-3").cpu(100))
        .thread(thread(2, 20).name("orphan").cpu(100))
        .report();
    let [known, unknown] = &report.spinning[..] else {
        panic!("{report:#?}")
    };
    assert_eq!(known.process_name, "server");
    assert_eq!(known.thread_name, "worker-3");
    assert_eq!(known.cmdline, ["/usr/bin/server", "--port", "80"]);
    assert_eq!(unknown.process_name, "orphan");
    assert!(unknown.cmdline.is_empty());
}

#[test]
fn a_thread_is_exited_when_it_or_its_process_is_gone() {
    let report = profile()
        .process(1, "a", &[])
        .process(2, "b", &[])
        .process_exited(2)
        .thread(thread(1, 10).cpu(100).exited())
        .thread(thread(2, 20).cpu(100))
        .thread(thread(1, 11).cpu(100))
        .report();
    let exited: Vec<bool> = report.spinning.iter().map(|t| t.exited).collect();
    assert_eq!(exited, [true, false, true]);
}

#[test]
fn syscalls_are_ranked_rated_and_cut_to_top() {
    let profile = profile()
        .window(2 * SEC, 2 * SEC, false)
        .thread(
            thread(1, 10)
                .on_cpu_ns(2 * SEC)
                .syscall(Sysno::read, 10)
                .syscall(Sysno::openat, 4000)
                .syscall(Sysno::close, 4000)
                .syscall(Sysno::fstat, 3),
        )
        .build();
    let options = SpinOptions {
        threshold_pct: 90.0,
        top: 2,
    };
    let report = analyze(&profile, &options);
    let thread = only_spinning(&report);
    assert_eq!(thread.syscalls_per_sec, 4006.5);
    let top: Vec<(&str, u64, f64)> = thread
        .syscalls
        .iter()
        .map(|s| (s.name.as_str(), s.count, s.per_sec))
        .collect();
    // Equal counts are ordered by syscall number, whatever the architecture's numbering.
    let (openat, close) = (Sysno::openat as u32, Sysno::close as u32);
    let (first, second) = if openat < close {
        ("openat", "close")
    } else {
        ("close", "openat")
    };
    assert_eq!(top, [(first, 4000, 2000.0), (second, 4000, 2000.0)]);
    assert_eq!(thread.syscalls[0].nr, openat.min(close));
}

#[test]
fn header_facts_are_carried_over() {
    let loss = LossCounters {
        samples: 1000,
        samples_lost: 7,
        threads_dropped: 2,
        syscalls_dropped: 3,
        targets_dropped: 0,
        off_cpu_dropped: 0,
        syscall_args_lost: 0,
    };
    let report = profile()
        .targets(&[42, 43])
        .loss(loss)
        .notice("python frames unavailable")
        .report();
    assert_eq!(
        (report.schema_version, report.command.as_str()),
        (2, "spin")
    );
    assert_eq!((report.frequency_hz, report.online_cpus), (99, 4));
    assert_eq!(report.scope.pids, [42, 43]);
    assert_eq!(report.threshold_pct, 90.0);
    assert_eq!(
        (report.loss.samples_lost, report.loss.threads_dropped),
        (7, 2)
    );
    assert_eq!(report.loss.syscalls_dropped, 3);
    assert_eq!(report.notices, ["python frames unavailable"]);
}

#[test]
fn shown_tids_are_exactly_the_threads_the_report_describes() {
    let cases = [
        // Some spin: all of them, whatever `top` says.
        vec![(10, 95), (11, 100), (12, 30), (13, 0)],
        // None spins: the `top` busiest with any CPU time.
        vec![
            (10, 50),
            (11, 20),
            (12, 20),
            (13, 5),
            (14, 0),
            (15, 1),
            (16, 2),
        ],
        vec![(10, 0)],
    ];
    let options = SpinOptions {
        threshold_pct: 90.0,
        top: 3,
    };
    for case in cases {
        let mut builder = profile();
        for &(tid, pct) in &case {
            builder = builder.thread(thread(1, tid).cpu(pct));
        }
        let profile = builder.build();
        let report = analyze(&profile, &options);
        let described: std::collections::BTreeSet<u32> = tids(&report.spinning)
            .into_iter()
            .chain(tids(&report.busiest))
            .collect();
        let on_cpu = profile.threads.iter().map(|t| (t.tid, t.on_cpu_ns));
        let shown = crate::report::shown_tids(on_cpu, profile.window.duration_ns, &options);
        assert_eq!(shown, described, "{case:?}");
    }
}
