//! The dump as text for people (one line per group of identical threads, its kernel
//! stack under it) and as JSON for scripts.

use std::fmt::Write as _;

use super::native::UserStack;
use super::{Activity, Dump, ProcessDump, ThreadGroup};
use crate::report::human::{grouped, Escaped};

/// Threads named on a group's line before the rest are counted.
const NAMED_THREADS: usize = 6;
/// Kernel frames shown per group.
const KERNEL_FRAMES: usize = 8;
/// Python frames shown per group.
const PYTHON_FRAMES: usize = 12;
/// User-stack frames shown per group.
const USER_FRAMES: usize = 32;

pub fn render_json(dump: &Dump) -> String {
    let mut json = serde_json::to_string_pretty(dump).unwrap_or_else(|err| {
        // Plain structs with string keys: cannot fail; if it ever does, still valid JSON.
        serde_json::json!({ "error": format!("failed to serialize the dump: {err}") }).to_string()
    });
    json.push('\n');
    json
}

pub fn render_text(dump: &Dump) -> String {
    let mut out = String::new();
    if let Some(wait) = dump.wait_secs {
        let cut = dump
            .interrupted_by
            .as_deref()
            .map_or(String::new(), |by| format!(" (cut short by {by})"));
        let _ = writeln!(out, "watched for {wait:.1} s before the dump{cut}");
    }
    for process in &dump.processes {
        process_text(&mut out, process);
    }
    out
}

fn process_text(out: &mut String, process: &ProcessDump) {
    let exited = if process.exited {
        ", exited during --wait: as last seen"
    } else {
        ""
    };
    let threads = match process.thread_count {
        1 => "1 thread".to_owned(),
        n => format!("{} threads", grouped(n as u64)),
    };
    let python = process
        .python_version
        .as_deref()
        .map_or(String::new(), |version| format!(", Python {version}"));
    let _ = writeln!(
        out,
        "process {} ({}{python}): {threads}{exited}",
        process.pid,
        Escaped(&process.name),
    );
    for notice in &process.notices {
        let _ = writeln!(out, "  note: {}", Escaped(notice));
    }
    let name_of = |tid: u32| {
        process
            .groups
            .iter()
            .flat_map(|g| &g.threads)
            .find(|t| t.tid == tid)
            .map_or(format!("{tid}"), |t| {
                let name = t.python_name.as_deref().unwrap_or(&t.name);
                format!("{} ({tid})", Escaped(name))
            })
    };
    let wait_text = |wait: &super::locks::MutexWait| {
        format!(
            "{} waits for {} {}, held by {}",
            name_of(wait.waiter),
            wait.kind.describe(),
            wait.mutex,
            name_of(wait.owner)
        )
    };
    for deadlock in &process.deadlocks {
        let all_mutexes = deadlock
            .waits
            .iter()
            .all(|w| w.kind == super::locks::LockKind::Mutex);
        let _ = writeln!(
            out,
            "  DEADLOCK: {} threads wait for each other's {}:",
            deadlock.waits.len(),
            if all_mutexes { "mutexes" } else { "locks" }
        );
        for wait in &deadlock.waits {
            let _ = writeln!(out, "    {}", wait_text(wait));
        }
    }
    if let Some(possible) = &process.possible_deadlock {
        let _ = writeln!(
            out,
            "  POSSIBLE DEADLOCK: {} threads blocked ≥ {:.1} s waiting for locks (a \
             threading.Lock has no owner to follow):",
            possible.threads.len(),
            possible.blocked_at_least_secs
        );
        for waiter in &possible.threads {
            let line = waiter.at.line.map_or(String::new(), |l| format!(":{l}"));
            let _ = writeln!(
                out,
                "    {} ({}) on lock {} at {} ({}{line})",
                Escaped(&waiter.name),
                waiter.tid,
                waiter.futex,
                Escaped(&waiter.at.function),
                Escaped(&waiter.at.file)
            );
        }
    }
    let in_deadlock = |tid: u32| {
        process
            .deadlocks
            .iter()
            .any(|d| d.waits.iter().any(|w| w.waiter == tid))
    };
    for wait in process
        .mutex_waits
        .iter()
        .filter(|w| !in_deadlock(w.waiter))
    {
        let _ = writeln!(out, "  {}", wait_text(wait));
    }
    for group in &process.groups {
        group_text(out, group);
    }
}

fn group_text(out: &mut String, group: &ThreadGroup) {
    let count = group.threads.len();
    let who = if count == 1 {
        "1 thread".to_owned()
    } else {
        format!("{} threads", grouped(count as u64))
    };
    let mut line = format!("  {who} {}", group.state.describe());
    if let Some(syscall) = &group.syscall {
        let _ = write!(line, " in {}", Escaped(&syscall.name));
        match (&syscall.arg, &syscall.timeout) {
            (Some(arg), Some(timeout)) => {
                let _ = write!(line, " ({}, {timeout})", Escaped(arg));
            }
            (Some(arg), None) => {
                let _ = write!(line, " ({})", Escaped(arg));
            }
            (None, Some(timeout)) => {
                let _ = write!(line, " ({timeout})");
            }
            (None, None) => {}
        }
    }
    if let Some(wchan) = &group.wchan {
        let _ = write!(line, ", wait channel {}", Escaped(wchan));
    }
    match group.activity {
        Some(Activity::Blocked { at_least_secs }) => {
            let _ = write!(line, ": blocked ≥ {at_least_secs:.1} s");
        }
        Some(Activity::Active) => line.push_str(": active"),
        None => {}
    }
    let _ = writeln!(out, "{line}");
    let names: Vec<String> = group
        .threads
        .iter()
        .take(NAMED_THREADS)
        .map(|t| {
            // A Python thread by its `threading` name; its comm is often just "python3".
            let name = t.python_name.as_deref().unwrap_or(&t.name);
            format!("{} ({})", Escaped(name), t.tid)
        })
        .collect();
    let more = count.saturating_sub(NAMED_THREADS);
    let more = if more > 0 {
        format!(", … {} more", grouped(more as u64))
    } else {
        String::new()
    };
    let _ = writeln!(out, "      threads: {}{more}", names.join(", "));
    if let Some(peer) = group.syscall.as_ref().and_then(|s| s.peer.as_deref()) {
        let _ = writeln!(out, "      peer: {}", Escaped(peer));
    }
    match &group.kernel_stack {
        Some(stack) if !stack.is_empty() => {
            let shown: Vec<String> = stack
                .iter()
                .take(KERNEL_FRAMES)
                .map(|f| Escaped(f).to_string())
                .collect();
            let cut = if stack.len() > KERNEL_FRAMES {
                " ← …"
            } else {
                ""
            };
            let _ = writeln!(out, "      kernel: {}{cut}", shown.join(" ← "));
        }
        Some(_) => {}
        None => {
            let _ = writeln!(out, "      kernel: (stack unreadable: needs root)");
        }
    }
    if let Some(stack) = &group.user_stack {
        user_stack_text(out, stack);
    }
    let merged = group
        .user_stack
        .as_ref()
        .is_some_and(|stack| stack.frames.iter().any(|f| f.kind == "python"));
    if let Some(stack) = group.python_stack.as_ref().filter(|_| !merged) {
        let shown: Vec<String> = stack
            .frames
            .iter()
            .take(PYTHON_FRAMES)
            .map(|f| {
                let line = f.line.map_or(String::new(), |line| format!(":{line}"));
                format!("{} ({}{line})", Escaped(&f.function), Escaped(&f.file))
            })
            .collect();
        let cut = if stack.frames.len() > PYTHON_FRAMES {
            " ← …"
        } else if stack.truncated {
            " ← … (truncated: unreadable frame)"
        } else {
            ""
        };
        if !shown.is_empty() || stack.truncated {
            let _ = writeln!(out, "      python: {}{cut}", shown.join(" ← "));
        }
    }
}

fn user_stack_text(out: &mut String, stack: &UserStack) {
    let _ = writeln!(out, "      stack:");
    for frame in stack.frames.iter().take(USER_FRAMES) {
        let function = frame.function.as_deref().map(Escaped);
        let text = match (frame.kind, function) {
            ("python", Some(function)) => {
                let line = frame.line.map_or(String::new(), |line| format!(":{line}"));
                format!("[py] {function} ({}{line})", Escaped(&frame.module))
            }
            (_, Some(function)) => {
                let source = match (&frame.file, frame.line) {
                    (Some(file), Some(line)) => format!(" at {}:{line}", Escaped(file)),
                    _ => String::new(),
                };
                format!("     {function} ({}){source}", Escaped(&frame.module))
            }
            (_, None) => format!("     {}+{:#x}", Escaped(&frame.module), frame.offset),
        };
        let _ = writeln!(out, "        {text}");
    }
    let hidden = stack.frames.len().saturating_sub(USER_FRAMES);
    if hidden > 0 {
        let _ = writeln!(out, "             … {} more frames", grouped(hidden as u64));
    }
    if stack.truncated {
        let _ = writeln!(out, "             … (truncated: unwinding stopped here)");
    }
}
