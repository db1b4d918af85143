//! What kind of spinning a thread does, decided from its syscall rate and where its samples
//! landed, with the numbers as evidence so a reader can check the verdict.

use super::human::{rate, share_pct};
use super::schema::{Classification, SpinKind, SyscallRate};

/// Syscalls per second from which a thread is in a syscall storm. A thread that really
/// waits makes a handful to a few hundred a second; thousands mean a loop that goes through
/// the kernel on every turn (`open("/")`, `fstat`, `close` forever).
pub const SYSCALL_STORM_PER_SEC: f64 = 1000.0;

/// Share of a storm's syscalls that must be poll-family (`poll`, `epoll_wait`, `select`, ...)
/// for it to be a poll storm: a wait that returns at once, typically a ready fd that is
/// never drained or a zero timeout.
pub const POLL_STORM_MIN_SHARE: f64 = 0.5;

/// Share of samples in kernel mode from which a thread without a syscall storm is
/// kernel-bound (page faults, lock contention, expensive syscalls) rather than a user loop.
pub const KERNEL_BOUND_MIN_SHARE: f64 = 0.5;

/// Syscalls named in storm evidence: enough for a loop like `openat`, `fstat`, `close`.
const EVIDENCE_MAX_SYSCALLS: usize = 3;

/// Share of the syscalls a syscall needs, beyond the first, to be named in the evidence.
const EVIDENCE_MIN_SYSCALL_SHARE: f64 = 0.1;

/// Share of a Python thread's samples in native code called from Python from which the
/// evidence mentions it.
const NATIVE_MIN_SHARE: f64 = 0.05;

/// Evidence for a thread that ran but was never sampled (a short burst between samples).
const NO_SAMPLES: &str = "no samples to tell user from kernel time";

/// The numbers a classification is made from.
#[derive(Debug)]
pub(super) struct Facts<'a> {
    pub syscalls_per_sec: f64,
    pub total_syscalls: u64,
    pub poll_syscalls: u64,
    /// Every syscall of the thread, most frequent first.
    pub ranked: &'a [SyscallRate],
    /// Fraction of samples in kernel mode; `None` without samples.
    pub kernel_share: Option<f64>,
    /// Fraction of samples with Python frames; `None` for a thread without any.
    pub python_share: Option<f64>,
    /// Fraction of samples in native code called from Python (a C extension, a library
    /// called through ctypes); `None` for a thread without Python frames.
    pub native_share: Option<f64>,
}

/// Applies the rules in order: storm (poll or not), then kernel share, else a user loop.
pub(super) fn classify(facts: &Facts<'_>) -> Classification {
    let kind = kind(facts);
    let evidence = match kind {
        SpinKind::SyscallStorm => storm_evidence(facts),
        SpinKind::PollStorm => poll_storm_evidence(facts),
        SpinKind::KernelBound | SpinKind::UserLoop => sample_evidence(facts),
    };
    Classification { kind, evidence }
}

fn kind(facts: &Facts<'_>) -> SpinKind {
    if facts.syscalls_per_sec >= SYSCALL_STORM_PER_SEC {
        if poll_share(facts) >= POLL_STORM_MIN_SHARE {
            SpinKind::PollStorm
        } else {
            SpinKind::SyscallStorm
        }
    } else if facts
        .kernel_share
        .is_some_and(|k| k >= KERNEL_BOUND_MIN_SHARE)
    {
        SpinKind::KernelBound
    } else {
        SpinKind::UserLoop
    }
}

fn poll_share(facts: &Facts<'_>) -> f64 {
    fraction(facts.poll_syscalls, facts.total_syscalls)
}

/// `"48,210 syscalls/s (getppid 99%), 62% of samples in kernel"`.
fn storm_evidence(facts: &Facts<'_>) -> String {
    format!(
        "{}{}, {}",
        syscall_rate(facts),
        top_syscalls(facts),
        kernel_part(facts)
    )
}

/// `"31,000 syscalls/s, 98% poll-family (epoll_wait 98%), 40% of samples in kernel"`.
fn poll_storm_evidence(facts: &Facts<'_>) -> String {
    format!(
        "{}, {} poll-family{}, {}",
        syscall_rate(facts),
        share_pct(poll_share(facts)),
        top_syscalls(facts),
        kernel_part(facts)
    )
}

/// `"99% of samples in user space, 3 syscalls/s"` / `"82% of samples in kernel, ..."`.
fn sample_evidence(facts: &Facts<'_>) -> String {
    let samples = match facts.kernel_share {
        Some(kernel) if kernel >= KERNEL_BOUND_MIN_SHARE => {
            format!("{} of samples in kernel", share_pct(kernel))
        }
        Some(kernel) => format!("{} of samples in user space", share_pct(1.0 - kernel)),
        None => NO_SAMPLES.to_owned(),
    };
    format!("{samples}{}, {}", python_part(facts), syscall_rate(facts))
}

/// `" (97% in Python code)"` for a thread with Python frames, with
/// `", 91% in native code called from it"` when some of it was; else nothing.
fn python_part(facts: &Facts<'_>) -> String {
    let native = match facts.native_share {
        Some(native) if native >= NATIVE_MIN_SHARE => {
            format!(", {} in native code called from it", share_pct(native))
        }
        _ => String::new(),
    };
    match facts.python_share {
        Some(share) => format!(" ({} in Python code{native})", share_pct(share)),
        None => String::new(),
    }
}

fn syscall_rate(facts: &Facts<'_>) -> String {
    format!("{} syscalls/s", rate(facts.syscalls_per_sec))
}

/// `" (getppid 99%)"` or `" (openat 33%, fstat 33%, close 33%)"`: the most frequent
/// syscalls; nothing without syscalls.
fn top_syscalls(facts: &Facts<'_>) -> String {
    let named: Vec<String> = facts
        .ranked
        .iter()
        .take(EVIDENCE_MAX_SYSCALLS)
        .map(|syscall| (syscall, fraction(syscall.count, facts.total_syscalls)))
        .enumerate()
        .filter(|(i, (_, share))| *i == 0 || *share >= EVIDENCE_MIN_SYSCALL_SHARE)
        .map(|(_, (syscall, share))| format!("{} {}", syscall.name, share_pct(share)))
        .collect();
    if named.is_empty() {
        String::new()
    } else {
        format!(" ({})", named.join(", "))
    }
}

fn kernel_part(facts: &Facts<'_>) -> String {
    match facts.kernel_share {
        Some(kernel) => format!(
            "{} of samples in kernel{}",
            share_pct(kernel),
            python_part(facts)
        ),
        None => NO_SAMPLES.to_owned(),
    }
}

/// `part / whole`, 0 for an empty whole.
pub(super) fn fraction(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}
