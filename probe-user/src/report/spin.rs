//! From a [`Profile`] to a [`SpinReport`]: which threads spin, and the facts about each.

use super::classify::{classify, fraction, Facts};
use super::frames::{
    hottest_first, in_native_called_from_python, interpreter_modules, loop_in, top_stacks,
};
use super::merge::{merged_stacks, StackCount};
use super::schema::{
    Loss, Scope, SpinReport, SyscallArg, SyscallRate, ThreadReport, WindowInfo, SCHEMA_VERSION,
};
use super::SpinOptions;
use crate::model::{FrameKind, ProcessInfo, Profile, SampleKind, ThreadProfile};
use crate::syscall_names;
use std::collections::{BTreeSet, HashSet};

/// Decimals kept for percentages and rates: finer than anyone reads, and short decimals
/// survive a JSON round trip exactly.
const PCT_DECIMALS: i32 = 2;

/// Decimals kept for window lengths: milliseconds.
const SECS_DECIMALS: i32 = 3;

const NS_PER_SEC: f64 = 1e9;

/// Builds the spin report: every thread at or above the threshold, or, when none is, the
/// busiest ones below it.
pub fn analyze(profile: &Profile, options: &SpinOptions) -> SpinReport {
    let ranked = rank_by_cpu(profile);
    let (spinning, below): (Vec<_>, Vec<_>) = ranked
        .into_iter()
        .partition(|(cpu_pct, _)| *cpu_pct >= options.threshold_pct);
    let busiest = if spinning.is_empty() {
        below
            .into_iter()
            .filter(|(_, thread)| thread.on_cpu_ns > 0)
            .take(options.top)
            .collect()
    } else {
        Vec::new()
    };
    let describe = |threads: Vec<(f64, &ThreadProfile)>| -> Vec<ThreadReport> {
        threads
            .into_iter()
            .map(|(cpu_pct, thread)| thread_report(profile, thread, cpu_pct, options.top))
            .collect()
    };
    SpinReport {
        schema_version: SCHEMA_VERSION,
        command: "spin".to_owned(),
        window: window_info(profile),
        frequency_hz: profile.frequency_hz,
        online_cpus: profile.online_cpus,
        scope: Scope {
            pids: profile.target_pids.clone(),
        },
        threshold_pct: options.threshold_pct,
        loss: Loss::from(&profile.loss),
        notices: profile.notices.clone(),
        spinning: describe(spinning),
        busiest: describe(busiest),
    }
}

/// The threads [`analyze`] will describe, from their on-CPU time alone: every thread at or
/// above the threshold or, when none is, the `top` busiest below it. Lets the caller
/// symbolize only these (symbolizing every thread on the machine costs time and memory
/// for stacks nobody sees).
pub fn shown_tids(
    on_cpu_ns: impl IntoIterator<Item = (u32, u64)>,
    window_ns: u64,
    options: &SpinOptions,
) -> BTreeSet<u32> {
    let mut ranked: Vec<(f64, u32)> = on_cpu_ns
        .into_iter()
        .map(|(tid, ns)| (cpu_pct(ns, window_ns), tid))
        .collect();
    ranked.sort_by(|(pct_a, a), (pct_b, b)| pct_b.total_cmp(pct_a).then_with(|| a.cmp(b)));
    let spinning: BTreeSet<u32> = ranked
        .iter()
        .take_while(|(pct, _)| *pct >= options.threshold_pct)
        .map(|(_, tid)| *tid)
        .collect();
    if !spinning.is_empty() {
        return spinning;
    }
    ranked
        .iter()
        .filter(|(pct, _)| *pct > 0.0)
        .take(options.top)
        .map(|(_, tid)| *tid)
        .collect()
}

/// Threads with their unrounded CPU share, busiest first, then by tid.
fn rank_by_cpu(profile: &Profile) -> Vec<(f64, &ThreadProfile)> {
    let window_ns = profile.window.duration_ns;
    let mut ranked: Vec<_> = profile
        .threads
        .iter()
        .map(|thread| (cpu_pct(thread.on_cpu_ns, window_ns), thread))
        .collect();
    ranked.sort_by(|(pct_a, a), (pct_b, b)| {
        pct_b
            .total_cmp(pct_a)
            .then_with(|| a.tid.cmp(&b.tid))
            .then_with(|| a.pid.cmp(&b.pid))
    });
    ranked
}

/// On-CPU time as a percentage of one CPU over the window; 0 for an empty window.
fn cpu_pct(on_cpu_ns: u64, window_ns: u64) -> f64 {
    if window_ns == 0 {
        return 0.0;
    }
    // Multiplying first keeps a share that is exactly the threshold exactly equal to it.
    on_cpu_ns as f64 * 100.0 / window_ns as f64
}

fn window_info(profile: &Profile) -> WindowInfo {
    let secs = |ns: u64| round_to(ns as f64 / NS_PER_SEC, SECS_DECIMALS);
    WindowInfo {
        requested_secs: secs(profile.window.requested_ns),
        duration_secs: secs(profile.window.duration_ns),
        interrupted: profile.window.interrupted,
        interrupted_by: profile.window.interrupted_by.clone(),
    }
}

fn thread_report(
    profile: &Profile,
    thread: &ThreadProfile,
    cpu_pct: f64,
    top: usize,
) -> ThreadReport {
    let process = profile.processes.get(&thread.pid);
    let window_secs = profile.window.duration_ns as f64 / NS_PER_SEC;
    let syscalls = ranked_syscalls(thread, window_secs);
    let syscalls_per_sec = per_sec(total(&syscalls), window_secs);
    let kernel_share = kernel_share(thread);
    let merged = merged_stacks(profile, thread);
    let samples = samples(thread, &merged);
    let mut facts = facts(&syscalls, syscalls_per_sec, kernel_share);
    facts.python_share = python_share(&merged, samples);
    if facts.python_share.is_some() {
        facts.native_share = Some(native_share(&merged, samples));
    }
    let classification = classify(&facts);
    let native_share = facts.native_share.unwrap_or(0.0);
    let interpreter: HashSet<&str> = merged
        .iter()
        .filter(|stack| stack.frames.iter().any(|f| f.kind == FrameKind::Python))
        .flat_map(|stack| interpreter_modules(&stack.frames))
        .collect();
    let stacks = hottest_first(&merged);
    ThreadReport {
        pid: thread.pid,
        tid: thread.tid,
        process_name: process_name(process, thread),
        cmdline: process.map(|p| p.cmdline.clone()).unwrap_or_default(),
        thread_name: thread.name.clone(),
        python_thread_name: thread.python_name.clone(),
        exited: thread.exited || process.is_some_and(|p| p.exited),
        cpu_pct: round_to(cpu_pct, PCT_DECIMALS),
        user_pct: kernel_share.map(|k| round_to(cpu_pct * (1.0 - k), PCT_DECIMALS)),
        kernel_pct: kernel_share.map(|k| round_to(cpu_pct * k, PCT_DECIMALS)),
        voluntary_switches: thread.voluntary_switches,
        involuntary_switches: thread.involuntary_switches,
        syscalls_per_sec: round_to(syscalls_per_sec, PCT_DECIMALS),
        syscalls: syscalls.into_iter().take(top).collect(),
        classification,
        loop_in: loop_in(&stacks, samples, native_share, &interpreter),
        samples,
        stacks: top_stacks(&stacks, samples, top),
    }
}

/// The process's `comm`; the thread's own when the process was never seen (it exited
/// before /proc could be read) or has none.
fn process_name(process: Option<&ProcessInfo>, thread: &ThreadProfile) -> String {
    process
        .map(|p| p.name.as_str())
        .filter(|name| !name.is_empty())
        .unwrap_or(&thread.name)
        .to_owned()
}

/// What the classification rules look at. `syscalls` is ranked, most frequent first.
fn facts(syscalls: &[SyscallRate], per_sec: f64, kernel_share: Option<f64>) -> Facts<'_> {
    Facts {
        syscalls_per_sec: per_sec,
        total_syscalls: total(syscalls),
        poll_syscalls: poll_total(syscalls),
        ranked: syscalls,
        kernel_share,
        python_share: None,
        native_share: None,
    }
}

/// Fraction of samples in native code called from Python (see
/// [`in_native_called_from_python`]).
fn native_share(stacks: &[StackCount], samples: u64) -> f64 {
    let native: u64 = stacks
        .iter()
        .filter(|stack| in_native_called_from_python(&stack.frames))
        .map(|stack| stack.count)
        .sum();
    fraction(native, samples)
}

/// Fraction of samples with Python frames; `None` for a thread that never had any.
fn python_share(stacks: &[StackCount], samples: u64) -> Option<f64> {
    let python: u64 = stacks
        .iter()
        .filter(|stack| stack.frames.iter().any(|f| f.kind == FrameKind::Python))
        .map(|stack| stack.count)
        .sum();
    (python > 0).then(|| fraction(python, samples))
}

/// Samples of the thread. Usually the user + kernel counts equal the stack counts; when a
/// sample lost its stack (or the reverse) the larger count is used so that no share is
/// ever overstated.
fn samples(thread: &ThreadProfile, stacks: &[StackCount]) -> u64 {
    let by_mode = thread.user_samples + thread.kernel_samples;
    let by_stack = stacks.iter().map(|s| s.count).sum();
    by_mode.max(by_stack)
}

/// Fraction of samples that hit kernel mode; `None` when there are none to tell.
fn kernel_share(thread: &ThreadProfile) -> Option<f64> {
    let total = thread.user_samples + thread.kernel_samples;
    (total > 0).then(|| fraction(thread.kernel_samples, total))
}

/// Every syscall of the thread, most frequent first (then by number).
fn ranked_syscalls(thread: &ThreadProfile, window_secs: f64) -> Vec<SyscallRate> {
    let mut counts: Vec<(u32, u64)> = thread.syscalls.clone();
    counts.sort_by(|(nr_a, a), (nr_b, b)| b.cmp(a).then_with(|| nr_a.cmp(nr_b)));
    // On-CPU samples in total and by the syscall they were taken in, counted once.
    let mut sampled_total = 0;
    let mut sampled_in: std::collections::HashMap<&str, u64> = std::collections::HashMap::new();
    for samples in thread
        .samples
        .iter()
        .filter(|s| s.kind == SampleKind::OnCpu)
    {
        sampled_total += samples.count;
        if let Some(syscall) = &samples.syscall {
            *sampled_in.entry(syscall).or_insert(0) += samples.count;
        }
    }
    counts
        .into_iter()
        .map(|(nr, count)| {
            let name = syscall_names::name(nr).into_owned();
            let sampled = sampled_in.get(name.as_str()).copied().unwrap_or(0);
            SyscallRate {
                nr,
                count,
                per_sec: round_to(per_sec(count, window_secs), PCT_DECIMALS),
                args: top_args(thread.syscall_args.get(&nr)),
                sampled_share: (sampled_total > 0)
                    .then(|| round_to(fraction(sampled, sampled_total), PCT_DECIMALS + 2)),
                name,
            }
        })
        .collect()
}

/// Values of a syscall's key argument shown per syscall.
const TOP_ARGS: usize = 3;

/// The most frequent sampled values, most frequent first (then by value).
fn top_args(sampled: Option<&std::collections::BTreeMap<String, u64>>) -> Vec<SyscallArg> {
    let Some(sampled) = sampled else {
        return Vec::new();
    };
    let total: u64 = sampled.values().sum();
    let mut values: Vec<(&String, u64)> = sampled.iter().map(|(v, &n)| (v, n)).collect();
    values.sort_by(|(va, a), (vb, b)| b.cmp(a).then_with(|| va.cmp(vb)));
    values
        .into_iter()
        .take(TOP_ARGS)
        .map(|(value, samples)| SyscallArg {
            value: value.clone(),
            share: round_to(fraction(samples, total), PCT_DECIMALS + 2),
            samples,
        })
        .collect()
}

fn total(syscalls: &[SyscallRate]) -> u64 {
    syscalls.iter().map(|s| s.count).sum()
}

fn poll_total(syscalls: &[SyscallRate]) -> u64 {
    syscalls
        .iter()
        .filter(|s| syscall_names::is_poll_family(s.nr))
        .map(|s| s.count)
        .sum()
}

fn per_sec(count: u64, secs: f64) -> f64 {
    if secs > 0.0 {
        count as f64 / secs
    } else {
        0.0
    }
}

/// Rounds to `decimals` places; non-finite values (which JSON cannot carry) become 0.
pub(super) fn round_to(value: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    let rounded = (value * scale).round() / scale;
    if rounded.is_finite() {
        rounded
    } else {
        0.0
    }
}
