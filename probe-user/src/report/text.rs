//! The spin report for people: one header block, then a compact block per thread.
//!
//! Every string from the report goes through [`Escaped`]: names and command lines are
//! chosen by the processes being watched, and a report read back from JSON is no more
//! trustworthy than they are.

use std::fmt::{self, Display, Formatter};

use super::frame_text::{kind_mark, short_kind_mark, FrameText};
use super::human::{grouped, pct1, pct_short, plural, rate, secs, share_pct, Escaped};
use super::schema::{LoopIn, SpinReport, StackReport, ThreadReport};

/// Frames shown per stack in text; deeper stacks end in "… N more frames" (JSON has all).
/// Twelve covers the loop and its callers without burying the next thread.
pub const TEXT_MAX_FRAMES: usize = 12;

/// Characters of a command line shown in text; JVM and Python command lines run to
/// kilobytes of class paths and flags that would drown the title line.
pub const TEXT_MAX_CMDLINE_CHARS: usize = 160;

/// Renders the report as human-readable text.
pub fn render_text(report: &SpinReport) -> String {
    Text(report).to_string()
}

struct Text<'a>(&'a SpinReport);

impl Display for Text<'_> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        header(f, self.0)?;
        threads(f, self.0)
    }
}

fn header(f: &mut Formatter<'_>, report: &SpinReport) -> fmt::Result {
    writeln!(
        f,
        "probe spin: {}, {} CPUs, {} Hz, threshold {} of one CPU",
        scope(&report.scope.pids),
        report.online_cpus,
        report.frequency_hz,
        pct_short(report.threshold_pct)
    )?;
    window(f, report)?;
    loss(f, report)?;
    for notice in &report.notices {
        writeln!(f, "note: {}", Escaped(notice))?;
    }
    Ok(())
}

fn scope(pids: &[u32]) -> String {
    if pids.is_empty() {
        return "whole machine".to_owned();
    }
    let list: Vec<String> = pids.iter().map(u32::to_string).collect();
    format!(
        "{} {}",
        if pids.len() == 1 { "pid" } else { "pids" },
        list.join(", ")
    )
}

fn window(f: &mut Formatter<'_>, report: &SpinReport) -> fmt::Result {
    let window = &report.window;
    write!(
        f,
        "window: {} (requested {})",
        secs(window.duration_secs),
        secs(window.requested_secs)
    )?;
    if window.interrupted {
        let by = window.interrupted_by.as_deref().unwrap_or("a signal");
        write!(f, " — interrupted by {} — partial window", Escaped(by))?;
    }
    writeln!(f)
}

fn loss(f: &mut Formatter<'_>, report: &SpinReport) -> fmt::Result {
    let loss = &report.loss;
    write!(
        f,
        "samples: {}, lost: {}, threads dropped: {}, syscalls dropped: {}",
        grouped(loss.samples),
        grouped(loss.samples_lost),
        grouped(loss.threads_dropped),
        grouped(loss.syscalls_dropped)
    )?;
    if loss.any() {
        write!(f, " — counts below are incomplete")?;
    }
    writeln!(f)
}

fn threads(f: &mut Formatter<'_>, report: &SpinReport) -> fmt::Result {
    let threshold = pct_short(report.threshold_pct);
    writeln!(f)?;
    if !report.spinning.is_empty() {
        let count = plural(report.spinning.len(), "thread");
        writeln!(f, "{count} at or above {threshold} of one CPU:")?;
        return thread_list(f, &report.spinning);
    }
    let nothing = format!("nothing spins: no thread at or above {threshold} of one CPU");
    if report.busiest.is_empty() {
        return writeln!(f, "{nothing}, and none ran on a CPU in the window");
    }
    writeln!(f, "{nothing}; the busiest below it:")?;
    thread_list(f, &report.busiest)
}

fn thread_list(f: &mut Formatter<'_>, threads: &[ThreadReport]) -> fmt::Result {
    for thread in threads {
        writeln!(f)?;
        thread_block(f, thread)?;
    }
    Ok(())
}

fn thread_block(f: &mut Formatter<'_>, thread: &ThreadReport) -> fmt::Result {
    title(f, thread)?;
    let class = &thread.classification;
    writeln!(
        f,
        "  class: {} — {}",
        class.kind.as_str(),
        Escaped(&class.evidence)
    )?;
    writeln!(
        f,
        "  switches: {} voluntary, {} involuntary",
        grouped(thread.voluntary_switches),
        grouped(thread.involuntary_switches)
    )?;
    syscalls(f, thread)?;
    if let Some(loop_in) = &thread.loop_in {
        loop_in_line(f, loop_in)?;
    }
    stacks(f, thread)
}

/// `loop in: spin_inner (spin_loop) at spin.c:12 — in 98% of samples`.
fn loop_in_line(f: &mut Formatter<'_>, loop_in: &LoopIn) -> fmt::Result {
    write!(
        f,
        "  loop in: {}{} — in {} of samples",
        short_kind_mark(loop_in.frame.kind),
        FrameText::from(&loop_in.frame),
        share_pct(loop_in.share)
    )?;
    if let Some(caller) = &loop_in.called_from {
        write!(
            f,
            ", called from {}{}",
            short_kind_mark(caller.kind),
            FrameText::from(caller)
        )?;
    }
    writeln!(f)
}

/// `pid 1234 tid 1240 "worker-3" in spin_loop (./spin_loop --busy) — 99.6% CPU (...)`.
fn title(f: &mut Formatter<'_>, thread: &ThreadReport) -> fmt::Result {
    write!(
        f,
        "pid {} tid {} \"{}\"",
        thread.pid,
        thread.tid,
        Escaped(&thread.thread_name),
    )?;
    if let Some(python_name) = &thread.python_thread_name {
        write!(f, " (Python \"{}\")", Escaped(python_name))?;
    }
    write!(f, " in {}", Escaped(&thread.process_name))?;
    if !thread.cmdline.is_empty() {
        write!(f, " ({})", Escaped(&cmdline(&thread.cmdline)))?;
    }
    write!(f, " — {} CPU", pct1(thread.cpu_pct))?;
    match (thread.user_pct, thread.kernel_pct) {
        (Some(user), Some(kernel)) => write!(f, " (user {}, kernel {})", pct1(user), pct1(kernel))?,
        _ => write!(f, " (split unknown)")?,
    }
    if thread.exited {
        write!(f, " (exited)")?;
    }
    writeln!(f)
}

/// The arguments joined by spaces, cut to [`TEXT_MAX_CMDLINE_CHARS`].
fn cmdline(args: &[String]) -> String {
    let joined = args.join(" ");
    if joined.chars().count() <= TEXT_MAX_CMDLINE_CHARS {
        return joined;
    }
    let mut cut: String = joined.chars().take(TEXT_MAX_CMDLINE_CHARS).collect();
    cut.push('…');
    cut
}

/// `syscalls: 48,210/s — getppid 241,050 (48,210/s, 61% of samples), openat 12 (2.4/s;
/// "/" 100%)`: the share of the thread's samples taken inside the syscall, when any were.
fn syscalls(f: &mut Formatter<'_>, thread: &ThreadReport) -> fmt::Result {
    if thread.syscalls.is_empty() {
        return writeln!(f, "  syscalls: none");
    }
    write!(f, "  syscalls: {}/s —", rate(thread.syscalls_per_sec))?;
    for (i, syscall) in thread.syscalls.iter().enumerate() {
        let separator = if i == 0 { " " } else { ", " };
        write!(
            f,
            "{separator}{} {} ({}/s",
            Escaped(&syscall.name),
            grouped(syscall.count),
            rate(syscall.per_sec)
        )?;
        if let Some(share) = syscall.sampled_share.filter(|&share| share > 0.0) {
            write!(f, ", {} of samples", pct1(share * 100.0))?;
        }
        for arg in &syscall.args {
            // Paths are quoted and escaped where they were sampled; the rest is ours.
            write!(f, "; {} {:.0}%", Escaped(&arg.value), arg.share * 100.0)?;
        }
        write!(f, ")")?;
    }
    writeln!(f)
}

fn stacks(f: &mut Formatter<'_>, thread: &ThreadReport) -> fmt::Result {
    if thread.samples == 0 {
        return writeln!(f, "  stacks: no samples");
    }
    if thread.stacks.is_empty() {
        return writeln!(f, "  stacks: none ({} samples)", grouped(thread.samples));
    }
    writeln!(f, "  hottest stacks ({} samples):", grouped(thread.samples))?;
    for stack in &thread.stacks {
        stack_block(f, stack)?;
    }
    Ok(())
}

fn stack_block(f: &mut Formatter<'_>, stack: &StackReport) -> fmt::Result {
    let count = grouped(stack.count);
    writeln!(f, "    {} ({count} samples)", pct1(stack.share * 100.0))?;
    for frame in stack.frames.iter().take(TEXT_MAX_FRAMES) {
        writeln!(
            f,
            "      {}{}",
            kind_mark(frame.kind),
            FrameText::from(frame)
        )?;
    }
    let hidden = stack.frames.len().saturating_sub(TEXT_MAX_FRAMES);
    if hidden > 0 {
        writeln!(f, "           … {} more frames", grouped(hidden as u64))?;
    }
    if stack.truncated {
        writeln!(f, "           … (truncated: unwinding stopped here)")?;
    }
    Ok(())
}
