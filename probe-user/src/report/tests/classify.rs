//! The four kinds, their boundaries, and the evidence lines.

use syscalls::Sysno;

use super::*;
use crate::report::{Classification, SpinKind};

/// Classifies a fully busy thread over the default 1 s window.
fn classify(thread: ThreadBuilder) -> Classification {
    let report = profile().thread(thread.cpu(100)).report();
    only_spinning(&report).classification.clone()
}

#[test]
fn few_syscalls_and_user_samples_make_a_user_loop() {
    let class = classify(thread(1, 10).samples(99, 1).syscall(Sysno::read, 3));
    assert_eq!(class.kind, SpinKind::UserLoop);
    assert_eq!(class.evidence, "99% of samples in user space, 3 syscalls/s");
}

#[test]
fn a_thousand_syscalls_a_second_is_a_storm() {
    let class = classify(
        thread(1, 10)
            .samples(38, 62)
            .syscall(Sysno::getppid, 48_000)
            .syscall(Sysno::read, 210),
    );
    assert_eq!(class.kind, SpinKind::SyscallStorm);
    assert_eq!(
        class.evidence,
        "48,210 syscalls/s (getppid 100%), 62% of samples in kernel"
    );
}

#[test]
fn the_storm_boundary_is_inclusive() {
    let at = classify(thread(1, 10).samples(90, 10).syscall(Sysno::getppid, 1000));
    let below = classify(thread(1, 10).samples(90, 10).syscall(Sysno::getppid, 999));
    assert_eq!(at.kind, SpinKind::SyscallStorm);
    assert_eq!(below.kind, SpinKind::UserLoop);
}

#[test]
fn a_storm_of_mostly_poll_calls_is_a_poll_storm() {
    let class = classify(
        thread(1, 10)
            .samples(60, 40)
            .syscall(Sysno::epoll_pwait, 30_000)
            .syscall(Sysno::read, 1_000),
    );
    assert_eq!(class.kind, SpinKind::PollStorm);
    assert_eq!(
        class.evidence,
        "31,000 syscalls/s, 97% poll-family (epoll_pwait 97%), 40% of samples in kernel"
    );
}

#[test]
fn half_poll_calls_is_enough_for_a_poll_storm_and_less_is_not() {
    let half = classify(
        thread(1, 10)
            .syscall(Sysno::ppoll, 1000)
            .syscall(Sysno::read, 1000),
    );
    let less = classify(
        thread(1, 10)
            .syscall(Sysno::ppoll, 999)
            .syscall(Sysno::read, 1001),
    );
    assert_eq!(half.kind, SpinKind::PollStorm);
    assert_eq!(less.kind, SpinKind::SyscallStorm);
}

#[test]
fn many_poll_calls_below_the_storm_rate_are_no_storm() {
    let class = classify(thread(1, 10).samples(99, 1).syscall(Sysno::ppoll, 999));
    assert_eq!(class.kind, SpinKind::UserLoop);
}

#[test]
fn mostly_kernel_samples_without_a_storm_is_kernel_bound() {
    let class = classify(thread(1, 10).samples(18, 82).syscall(Sysno::read, 12));
    assert_eq!(class.kind, SpinKind::KernelBound);
    assert_eq!(class.evidence, "82% of samples in kernel, 12 syscalls/s");
}

#[test]
fn half_kernel_samples_is_kernel_bound() {
    let half = classify(thread(1, 10).samples(50, 50));
    let less = classify(thread(1, 10).samples(51, 49));
    assert_eq!(half.kind, SpinKind::KernelBound);
    assert_eq!(less.kind, SpinKind::UserLoop);
}

#[test]
fn no_samples_says_so_in_the_evidence() {
    let class = classify(thread(1, 10).syscall(Sysno::read, 2));
    assert_eq!(class.kind, SpinKind::UserLoop);
    assert_eq!(
        class.evidence,
        "no samples to tell user from kernel time, 2 syscalls/s"
    );
    let storm = classify(thread(1, 10).syscall(Sysno::getppid, 5000));
    assert_eq!(
        storm.evidence,
        "5,000 syscalls/s (getppid 100%), no samples to tell user from kernel time"
    );
}

#[test]
fn slow_rates_keep_a_decimal() {
    let report = profile()
        .window(10 * SEC, 10 * SEC, false)
        .thread(
            thread(1, 10)
                .on_cpu_ns(10 * SEC)
                .samples(10, 0)
                .syscall(Sysno::read, 4),
        )
        .report();
    let class = &only_spinning(&report).classification;
    assert_eq!(
        class.evidence,
        "100% of samples in user space, 0.4 syscalls/s"
    );
}

#[test]
fn storm_evidence_names_the_syscalls_of_the_loop() {
    let class = classify(
        thread(1, 10)
            .samples(40, 60)
            .syscall(Sysno::openat, 30_000)
            .syscall(Sysno::fstat, 30_000)
            .syscall(Sysno::close, 30_000)
            .syscall(Sysno::read, 10),
    );
    assert_eq!(class.kind, SpinKind::SyscallStorm);
    let mut names = [
        ("openat", Sysno::openat),
        ("fstat", Sysno::fstat),
        ("close", Sysno::close),
    ];
    names.sort_by_key(|(_, sysno)| *sysno as u32);
    let named: Vec<String> = names
        .iter()
        .map(|(name, _)| format!("{name} 33%"))
        .collect();
    let expected = format!(
        "90,010 syscalls/s ({}), 60% of samples in kernel",
        named.join(", ")
    );
    assert_eq!(class.evidence, expected);
}
