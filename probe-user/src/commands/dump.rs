//! `probe dump`: reads every thread of each process from /proc (optionally twice, `--wait`
//! apart, to tell blocked threads from active ones), the user stacks they blocked with (one
//! kernel program copies their saved registers; see `dump::native`), groups identical
//! ones and prints them. The target never stops.

use std::collections::HashMap;
use std::io::Write as _;
use std::time::Instant;

use anyhow::Context as _;

use crate::cli::DumpOptions;
use crate::dump::native::{self, PythonFrames, Tables, UserStack};
use crate::dump::peers::Peers;
use crate::dump::python::PythonView;
use crate::dump::{self, render, Dump, ProcessDump, Snapshot};
use crate::loader::task_registers::RegisterReader;
use crate::{preflight, proc};

/// What reads the native stacks: loaded at the first process that needs it.
#[derive(Default)]
struct NativeSide {
    reader: Option<Result<RegisterReader, String>>,
    tables: Tables,
}

impl NativeSide {
    fn user_stacks(
        &mut self,
        pid: u32,
        shown: &Snapshot,
        python: Option<&PythonView>,
        notices: &mut Vec<String>,
    ) -> HashMap<u32, UserStack> {
        let reader = self
            .reader
            .get_or_insert_with(|| RegisterReader::load().map_err(|err| err.to_string()));
        let reader = match reader {
            Ok(reader) => reader,
            Err(why) => {
                notices.push(format!("native stacks not shown: {why}"));
                return HashMap::new();
            }
        };
        let registers = match reader.read(pid) {
            Ok(read) if read.walk.found != 0 => read.threads,
            Ok(read) => {
                let why = if read.walk.failed != 0 {
                    "a kernel read failed while looking for it"
                } else {
                    "the kernel's task list did not have it"
                };
                notices.push(format!("native stacks not shown: {why}"));
                return HashMap::new();
            }
            Err(err) => {
                notices.push(format!("native stacks not shown: {err}"));
                return HashMap::new();
            }
        };
        let empty = PythonFrames::default();
        let frames = python.map_or(&empty, |view| &view.raw);
        native::user_stacks(pid, shown, &registers, frames, &mut self.tables, notices)
    }
}

pub fn run(options: &DumpOptions) -> anyhow::Result<()> {
    preflight::check_processes(&options.pids)?;
    let first: Vec<Option<Snapshot>> = options
        .pids
        .iter()
        .map(|&pid| dump::snapshot(pid))
        .collect();
    let mut waited = None;
    let mut interrupted_by = None;
    if let Some(wait) = options.wait {
        let started = Instant::now();
        let runtime = super::runtime()?;
        interrupted_by = runtime.block_on(async {
            let stop = super::stop_signal();
            tokio::select! {
                () = tokio::time::sleep(wait) => None,
                reason = stop => reason,
            }
        });
        waited = Some(started.elapsed().as_secs_f64());
    }
    let mut processes = Vec::new();
    let mut native = NativeSide::default();
    let mut peers = Peers::default();
    for (&pid, first) in options.pids.iter().zip(first) {
        let now = if waited.is_some() {
            // A process that exited is a zombie until its parent reaps it: gone all the same.
            (!proc::is_zombie(pid))
                .then(|| dump::snapshot(pid))
                .flatten()
        } else {
            first.clone()
        };
        processes.push(process_dump(
            pid,
            first,
            now,
            waited,
            options.all,
            &mut native,
            &mut peers,
        ));
    }
    let gone: Vec<String> = processes
        .iter()
        .filter(|p| p.exited)
        .map(|p| p.pid.to_string())
        .collect();
    if !gone.is_empty() {
        crate::diag!(
            "probe: note: process {} exited during --wait: shown as last seen",
            gone.join(", ")
        );
    }
    let dump = Dump {
        schema_version: dump::SCHEMA_VERSION,
        wait_secs: waited.map(|secs| (secs * 1000.0).round() / 1000.0),
        interrupted_by,
        processes,
    };
    let text = if options.json {
        render::render_json(&dump)
    } else {
        render::render_text(&dump)
    };
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .context("failed to write the dump to stdout")
}

/// One process from its snapshots: `now` the one shown, `first` the one before `--wait`
/// (the same when there was none). A process gone by now is shown as first seen.
fn process_dump(
    pid: u32,
    first: Option<Snapshot>,
    now: Option<Snapshot>,
    waited: Option<f64>,
    all: bool,
    native: &mut NativeSide,
    peers: &mut Peers,
) -> ProcessDump {
    let exited = now.is_none();
    let shown = now.or_else(|| first.clone()).unwrap_or_default();
    let mut notices = Vec::new();
    // The interpreter is read once, after the wait, and only from a live process.
    let python = if exited {
        None
    } else {
        match dump::python::view(pid) {
            Ok(view) => view.version.is_some().then_some(view),
            Err(why) => {
                notices.push(format!("Python frames not shown: {why}"));
                None
            }
        }
    };
    // Read from the live process only, after everything else: a thread that moved since
    // /proc was read shows no stack (see `native::saved_registers`).
    let mut user_stacks = if exited {
        HashMap::new()
    } else {
        native.user_stacks(pid, &shown, python.as_ref(), &mut notices)
    };
    let entries: Vec<_> = shown
        .values()
        .map(|thread| {
            let activity = waited.and_then(|secs| {
                let before = first.as_ref()?.get(&thread.tid)?;
                if exited {
                    return None;
                }
                dump::activity(before, thread, secs)
            });
            let user_stack = user_stacks.remove(&thread.tid);
            let mut entry = dump::entry(pid, thread, activity, python.as_ref(), user_stack);
            if let Some(syscall) = entry.key.syscall.as_mut().filter(|_| !exited) {
                syscall.peer = peers.describe(pid, thread);
            }
            entry
        })
        .collect();
    // Mutex owners are read from the live process only: a dead one has no memory.
    let mutex_waits = if exited {
        Vec::new()
    } else {
        let tids = shown.keys().copied().collect();
        let futex_waits = dump::futex_waits(shown.values());
        let mut waits = dump::locks::mutex_waits(pid, &futex_waits, &tids);
        if let Some(view) = &python {
            waits.extend(dump::python::rlock_waits(pid, view, &futex_waits));
        }
        waits
    };
    let deadlocks = dump::locks::deadlocks(&mutex_waits);
    // Threads proven deadlocked are not a "possible" deadlock as well.
    let possible_deadlock = dump::python_lock_waits(&entries).filter(|possible| {
        !possible.threads.iter().all(|thread| {
            deadlocks
                .iter()
                .any(|d| d.waits.iter().any(|w| w.waiter == thread.tid))
        })
    });
    ProcessDump {
        pid,
        name: proc::comm(pid, None)
            .or_else(|| shown.get(&pid).map(|t| t.name.clone()))
            .unwrap_or_default(),
        cmdline: proc::cmdline(pid),
        exited,
        python_version: python
            .as_ref()
            .and_then(|view| view.version)
            .map(|(major, minor)| format!("{major}.{minor}")),
        notices,
        mutex_waits,
        deadlocks,
        possible_deadlock,
        thread_count: shown.len(),
        groups: dump::group(entries, all),
    }
}
