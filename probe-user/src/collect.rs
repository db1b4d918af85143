//! Drains the kernel's maps and ring buffer into a [`Recording`] over one observation.
//!
//! While the programs run, the ring buffer is drained 10 times a second (samples are
//! aggregated by thread and raw stack as they arrive) and processes are snapshotted when
//! first seen, so their names and memory maps survive if they exit. The aggregated maps
//! can be read at any time ([`Collector::read_aggregates`]); [`observe`] reads them once
//! more after detaching, for the final numbers. How an observation ends is the caller's
//! choice: a duration, a signal, a spawned command's exit (the `until` future).

use std::{
    collections::{BTreeMap, HashMap},
    io::{IsTerminal, Write},
    time::{Duration, Instant},
};

use probe_common::{
    sample_record_bytes, CpuState, PyFrameRecord, SampleHeader, SyscallArgs, SyscallCache,
    ThreadStats, MAX_STACK_DEPTH, MAX_USER_FRAMES, PY_FRAME_CALL_ENTRY, PY_MAX_FRAMES, RECORD_EXEC,
    RECORD_OFF_CPU, RECORD_OFF_CPU_END, RECORD_SAMPLE, SAMPLE_KERNEL_STACK_ERROR,
    SAMPLE_PY_TRUNCATED, SAMPLE_PY_WALKED, SAMPLE_USER_COMPLETE, SAMPLE_USER_STACK_ERROR,
    SAMPLE_USER_STOP_MASK, SAMPLE_USER_STOP_SHIFT, SAMPLE_USER_TABLES, SYSCALL_CACHE_WAYS,
    SYSCALL_PATH_BYTES,
};

mod python;
pub(crate) mod unwind;

pub use python::{LiveSource, PythonMaps, PythonSource, PythonTracker};
pub use unwind::{
    compile_mapped, mapping_bias, ExecMapping, FileTable, LiveTables, NoTable, TableSource,
    UnwindCapacity, UnwindMaps, UnwindSummary, UnwindTracker,
};

use crate::{
    loader::{monotonic_ns, Aggregates, LoadError, Probe},
    model::{
        MapsChange, ProcessInfo, PyRawFrame, RawStack, Recording, SampleKind, StackStats,
        ThreadRecord, Window,
    },
    proc,
    procmaps::ProcessMaps,
};

/// How often the ring buffer is drained during the window.
const DRAIN_INTERVAL: Duration = Duration::from_millis(100);
/// A process whose samples miss its known mappings gets its maps re-read at most this often
/// (libraries loaded with dlopen after the first snapshot).
const MAPS_REFRESH_INTERVAL: Duration = Duration::from_secs(1);
/// How often the maps of a sampled process are checked for a mapping replaced by another
/// (dlclose, then dlopen at the same address): every drain for the processes the user
/// named, every second systemwide.
const MAPS_CHECK_TARGETED: Duration = DRAIN_INTERVAL;
const MAPS_CHECK_SYSTEMWIDE: Duration = Duration::from_secs(1);
/// Most maps checks per drain (each reads /proc/PID/maps), to bound probe's own cost.
const MAPS_CHECKS_PER_DRAIN: usize = 16;

/// What ended an observation before its duration, as a user would name it (`Ctrl-C`,
/// `SIGTERM`); `None` when it ran its course (or the spawned command exited).
pub type EndReason = Option<String>;

/// What [`observe`] does besides collecting.
#[derive(Clone, Debug, Default)]
pub struct ObserveOptions {
    /// The observation's length; `None`: until `until` resolves.
    pub duration: Option<Duration>,
    pub frequency_hz: u64,
    /// Processes whose Python interpreters are discovered before the window opens.
    pub target_pids: Vec<u32>,
    /// Attach `sys_enter` when the window opens (not before: Python discovery makes
    /// syscalls that are not the targets' business).
    pub count_syscalls: bool,
    /// What the status line on a terminal says the observation is doing.
    pub status: &'static str,
}

/// Accumulates samples and process snapshots; pure apart from the /proc reads in
/// `Accumulator::observe_process`, so aggregation is unit-tested on recorded events.
/// Cloning it is cheap enough for a snapshot: stacks are per distinct stack, and the
/// mapped files are shared.
#[derive(Clone, Default)]
pub struct Accumulator {
    threads: BTreeMap<u32, ThreadRecord>,
    processes: BTreeMap<u32, ProcessInfo>,
    /// Snapshots by (pid, generation): a process gets a new generation when it execs or
    /// a mapping is replaced; a sample is named from the generation it was taken in.
    process_maps: BTreeMap<(u32, u32), ProcessMaps>,
    maps_refreshed: HashMap<u32, Instant>,
    /// The current generation of each process's maps (absent: 0).
    generations: HashMap<u32, u32>,
    /// What each process's samples added since its maps were last checked, by (tid, raw
    /// stack): if the check finds a replaced mapping, these may have been taken in either.
    unchecked: HashMap<u32, HashMap<u32, HashMap<RawStack, StackStats>>>,
    maps_checked: HashMap<u32, Instant>,
    /// Replaced mappings found, for symbolization.
    maps_changes: Vec<MapsChange>,
    /// Samples per thread whose Python frames the kernel did not walk.
    not_walked: HashMap<u32, u64>,
    /// Ring-buffer records that were not a well-formed sample (ignored).
    malformed_samples: u64,
    /// Samples added so far (for the status line).
    samples: u64,
    /// Threads blocked with a recorded off-CPU stack, waiting for the record that says
    /// when they were back: tid -> (stack, when they left the CPU).
    blocked: HashMap<u32, (RawStack, u32, u64)>,
    /// What the fds of sampled syscalls point at.
    fd_targets: FdTargets,
}

/// The aggregation key of a sample: its frames and flags, on-CPU.
fn raw_stack(sample: &Sample) -> RawStack {
    let header = &sample.header;
    RawStack {
        kind: SampleKind::OnCpu,
        user: sample.user.clone(),
        kernel: sample.kernel.clone(),
        user_error: header.flags & SAMPLE_USER_STACK_ERROR != 0,
        user_tables: header.flags & SAMPLE_USER_TABLES != 0,
        user_complete: header.flags & SAMPLE_USER_COMPLETE != 0,
        user_stop: ((header.flags & SAMPLE_USER_STOP_MASK) >> SAMPLE_USER_STOP_SHIFT) as u8,
        python: sample
            .python
            .iter()
            .map(|frame| PyRawFrame {
                code: frame.code,
                offset: frame.offset,
                call_entry: frame.flags & PY_FRAME_CALL_ENTRY != 0,
            })
            .collect(),
        python_truncated: header.flags & SAMPLE_PY_TRUNCATED != 0,
        maps_generation: 0,
        maps_changed: false,
        syscall: header.syscall.checked_sub(1),
    }
}

/// One sample as read from the ring buffer (see [`read_sample`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sample {
    pub header: SampleHeader,
    /// Innermost first, as are the other two.
    pub kernel: Vec<u64>,
    pub user: Vec<u64>,
    pub python: Vec<PyFrameRecord>,
}

impl Accumulator {
    /// Renames every tallied `fd N` to what it pointed at when last read.
    fn name_fd_arguments(&mut self) {
        let fds = &self.fd_targets;
        for thread in self.threads.values_mut() {
            for values in thread.syscall_args.values_mut() {
                *values = std::mem::take(values)
                    .into_iter()
                    .map(|(value, count)| match tallied_fd(&value) {
                        Some(fd) => (fds.describe(thread.pid, fd), count),
                        None => (value, count),
                    })
                    .fold(BTreeMap::new(), |mut named, (value, count)| {
                        *named.entry(value).or_insert(0) += count;
                        named
                    });
            }
        }
    }

    /// Adds one sampled syscall's key argument to its thread's tally.
    pub fn add_syscall_args(&mut self, args: &SyscallArgs) {
        let Some(value) = key_arg_value(args, &mut self.fd_targets) else {
            return;
        };
        let thread = self.thread(args.tid, args.tgid);
        let values = thread.syscall_args.entry(args.nr).or_default();
        let full = values.len() >= MAX_ARG_VALUES && !values.contains_key(&value);
        let key = if full {
            "(other values)".to_owned()
        } else {
            value
        };
        *values.entry(key).or_insert(0) += 1;
    }

    /// Adds one sample from the ring buffer.
    pub fn add_sample(&mut self, sample: &Sample) {
        let header = &sample.header;
        let stack = RawStack {
            maps_generation: self.generation(header.tgid),
            ..raw_stack(sample)
        };
        if header.flags & SAMPLE_PY_WALKED == 0 {
            *self.not_walked.entry(header.tid).or_insert(0) += 1;
        }
        let thread = self.thread(header.tid, header.tgid);
        if !sample.kernel.is_empty() || header.flags & SAMPLE_KERNEL_STACK_ERROR != 0 {
            thread.kernel_samples += 1;
        } else {
            thread.user_samples += 1;
        }
        *thread.samples_by_cpu.entry(header.cpu).or_insert(0) += 1;
        self.add_stack(header.tid, header.tgid, stack, header.ktime_ns, 0);
        self.samples += 1;
    }

    /// Counts one sample of `stack` for thread `tid`, also as not yet checked against a
    /// change of its process's maps.
    fn add_stack(&mut self, tid: u32, pid: u32, stack: RawStack, time_ns: u64, off_ns: u64) {
        let has_user = !stack.user.is_empty();
        if has_user {
            let unchecked = self
                .unchecked
                .entry(pid)
                .or_default()
                .entry(tid)
                .or_default();
            // Looked up by reference: the stack is copied only the first time it is seen
            // since the last check, not for every sample.
            match unchecked.get_mut(&stack) {
                Some(delta) => delta.add(time_ns, off_ns),
                None => unchecked
                    .entry(stack.clone())
                    .or_default()
                    .add(time_ns, off_ns),
            }
        }
        let thread = self.thread(tid, pid);
        thread.stacks.entry(stack).or_default().add(time_ns, off_ns);
    }

    fn generation(&self, pid: u32) -> u32 {
        self.generations.get(&pid).copied().unwrap_or(0)
    }

    /// Checks the maps of `pid` for a replaced mapping. If there is one, the stacks
    /// sampled since the last check that have an address in a replaced range are moved to
    /// a key marked `maps_changed` (their frames stop at that address), and the process
    /// moves to a new generation of maps. A process that is gone keeps what it had.
    fn check_maps(&mut self, pid: u32) {
        self.maps_checked.insert(pid, Instant::now());
        let unchecked = self.unchecked.remove(&pid).unwrap_or_default();
        let generation = self.generation(pid);
        let Some(maps) = self.process_maps.get_mut(&(pid, generation)) else {
            return;
        };
        let Ok(Some(changed)) = maps.check(pid) else {
            return;
        };
        let unchecked = unchecked
            .into_iter()
            .flat_map(|(tid, stacks)| stacks.into_iter().map(move |entry| (tid, entry)));
        for (tid, (stack, delta)) in unchecked {
            let touched = stack
                .user
                .iter()
                .any(|addr| changed.changed.iter().any(|range| range.contains(addr)));
            let Some(thread) = self.threads.get_mut(&tid) else {
                continue;
            };
            if !touched {
                continue;
            }
            if let std::collections::hash_map::Entry::Occupied(mut entry) =
                thread.stacks.entry(stack.clone())
            {
                let stats = entry.get_mut();
                stats.count = stats.count.saturating_sub(delta.count);
                stats.off_cpu_ns = stats.off_cpu_ns.saturating_sub(delta.off_cpu_ns);
                if stats.count == 0 {
                    entry.remove();
                }
            }
            let moved = RawStack {
                maps_changed: true,
                ..stack
            };
            let stats = thread.stacks.entry(moved).or_default();
            stats.count += delta.count;
            stats.off_cpu_ns += delta.off_cpu_ns;
            stats.first_ns = if stats.first_ns == 0 {
                delta.first_ns
            } else {
                stats.first_ns.min(delta.first_ns)
            };
            stats.last_ns = stats.last_ns.max(delta.last_ns);
        }
        self.maps_changes.push(MapsChange {
            pid,
            generation,
            ranges: changed.changed.iter().map(|r| (r.start, r.end)).collect(),
        });
        self.generations.insert(pid, generation + 1);
        self.process_maps
            .insert((pid, generation + 1), changed.fresh);
    }

    /// Checks the maps of the processes sampled since their last check that are due.
    fn check_due_maps(&mut self, targeted: bool) {
        let interval = if targeted {
            MAPS_CHECK_TARGETED
        } else {
            MAPS_CHECK_SYSTEMWIDE
        };
        let mut due: Vec<u32> = self
            .unchecked
            .keys()
            .copied()
            .filter(|pid| {
                self.maps_checked
                    .get(pid)
                    .is_none_or(|at| at.elapsed() >= interval)
            })
            .collect();
        // Longest unchecked first, so a busy machine still gets to every process.
        due.sort_by_key(|pid| self.maps_checked.get(pid).copied());
        for pid in due.into_iter().take(MAPS_CHECKS_PER_DRAIN) {
            self.check_maps(pid);
        }
    }

    /// Notes the stack of a thread that left the CPU to block (`RECORD_OFF_CPU`); it
    /// counts once [`Accumulator::add_off_cpu_end`] (or the end of the window) says for how
    /// long.
    pub fn add_off_cpu(&mut self, sample: &Sample) {
        let header = &sample.header;
        let stack = RawStack {
            kind: SampleKind::OffCpu,
            maps_generation: self.generation(header.tgid),
            ..raw_stack(sample)
        };
        // A previous period whose end was lost (ring buffer full) is dropped, not guessed.
        self.blocked
            .insert(header.tid, (stack, header.tgid, header.ktime_ns));
    }

    /// Thread `tid` was back on a CPU at `time_ns` (`RECORD_OFF_CPU_END`): its blocked
    /// stack counts for the time it was off.
    pub fn add_off_cpu_end(&mut self, tid: u32, time_ns: u64) {
        if let Some((stack, tgid, since)) = self.blocked.remove(&tid) {
            self.add_stack(tid, tgid, stack, since, time_ns.saturating_sub(since));
        }
    }

    /// Threads still blocked when the window closed at `end_ns` count up to then.
    pub fn close_off_cpu(&mut self, end_ns: u64) {
        let blocked: Vec<u32> = self.blocked.keys().copied().collect();
        for tid in blocked {
            self.add_off_cpu_end(tid, end_ns);
        }
    }

    fn thread(&mut self, tid: u32, pid: u32) -> &mut ThreadRecord {
        self.threads.entry(tid).or_insert_with(|| ThreadRecord {
            tid,
            pid,
            ..ThreadRecord::default()
        })
    }

    /// Snapshots a process the first time it shows up (name, command line, memory maps),
    /// and re-reads its maps when a sample points outside them.
    fn observe_process(&mut self, pid: u32, user_leaf: Option<u64>) {
        if let std::collections::btree_map::Entry::Vacant(entry) = self.processes.entry(pid) {
            entry.insert(read_process_info(pid));
        }
        let key = (pid, self.generation(pid));
        if let std::collections::btree_map::Entry::Vacant(entry) = self.process_maps.entry(key) {
            // On failure symbolization tries once more after the window and, if the maps
            // are still unreadable, says so in one notice.
            if let Ok(maps) = ProcessMaps::capture(pid) {
                entry.insert(maps);
            }
            return;
        }
        let Some(maps) = self.process_maps.get_mut(&key) else {
            return;
        };
        if user_leaf.is_some_and(|leaf| !maps.covers(leaf)) {
            let due = self
                .maps_refreshed
                .get(&pid)
                .is_none_or(|at| at.elapsed() >= MAPS_REFRESH_INTERVAL);
            if due {
                self.maps_refreshed.insert(pid, Instant::now());
                // The process may have exited meanwhile; the old snapshot stays valid.
                let _ = maps.refresh(pid);
            }
        }
    }

    /// Process `pid` exec'd: from now on it is another program. Its name, command line
    /// and mappings are read again at its next sample; stacks sampled before keep the
    /// old mappings' names (see `maps_generation`).
    pub fn exec(&mut self, pid: u32) {
        self.processes.remove(&pid);
        let generation = self.generations.entry(pid).or_insert(0);
        *generation += 1;
    }

    /// Adds what the kernel aggregated (read at `end_ns`).
    pub fn add_aggregates(&mut self, aggregates: &Aggregates, end_ns: u64) {
        for (tid, stats) in &aggregates.threads {
            self.add_thread_stats(*tid, stats);
        }
        for (key, count) in &aggregates.syscalls {
            self.add_syscalls(key.tid, key.nr, *count);
        }
        for cache in &aggregates.syscall_caches {
            self.add_syscall_cache(cache);
        }
        self.add_running(&aggregates.cpus, aggregates.window_start_ns, end_ns);
    }

    /// Adds the scheduler statistics of one thread.
    pub fn add_thread_stats(&mut self, tid: u32, stats: &ThreadStats) {
        let thread = self.thread(tid, stats.tgid);
        thread.on_cpu_ns += stats.on_cpu_ns;
        thread.voluntary_switches += stats.voluntary_switches;
        thread.involuntary_switches += stats.involuntary_switches;
        thread.exited |= stats.exited != 0;
        if thread.name.is_empty() {
            thread.name = comm_to_string(&stats.comm);
        }
    }

    /// Adds a syscall count for a thread. A thread seen only here (it made syscalls but was
    /// never switched out or sampled) is unknown to the other maps; its pid is looked up.
    pub fn add_syscalls(&mut self, tid: u32, nr: u32, count: u64) {
        let pid = match self.threads.get(&tid) {
            Some(thread) => thread.pid,
            None => proc::tgid(tid).unwrap_or(tid),
        };
        *self.thread(tid, pid).syscalls.entry(nr).or_insert(0) += count;
    }

    /// Adds the calls still pending in one CPU's syscall cache.
    pub fn add_syscall_cache(&mut self, cache: &SyscallCache) {
        for way in 0..SYSCALL_CACHE_WAYS {
            if cache.pending[way] > 0 {
                let (tid, nr) = SyscallCache::split(cache.key[way]);
                self.add_syscalls(tid, nr, cache.pending[way]);
            }
        }
    }

    /// Credits the run still in progress on each CPU at the window's end: the thread seen by
    /// the latest sample has been running since the latest switch, if that sample came after
    /// the switch. (No sample since the switch means the run is shorter than one sampling
    /// period and is left out.) A switch after the end already credited the run up to it.
    /// Where the switch noted the thread it put on the CPU (`CpuState::running_tid`), that
    /// one is credited without waiting for a sample.
    pub fn add_running(&mut self, cpus: &[CpuState], window_start_ns: u64, end_ns: u64) {
        for cpu in cpus {
            let since = cpu.last_switch_ns.max(window_start_ns);
            let credited_by_switch = cpu.last_switch_ns >= end_ns;
            let (tid, tgid) = if cpu.running_tid != 0 {
                (cpu.running_tid, cpu.running_tgid)
            } else if cpu.last_sample_ns >= since {
                (cpu.last_sample_tid, cpu.last_sample_tgid)
            } else {
                (0, 0)
            };
            if credited_by_switch || tid == 0 {
                continue;
            }
            let thread = self.thread(tid, tgid);
            thread.on_cpu_ns += end_ns.saturating_sub(since);
        }
    }

    /// Fills names and exit marks from /proc and returns the recording.
    pub fn finish(mut self, mut recording: Recording) -> Recording {
        self.name_fd_arguments();
        let pids: Vec<u32> = self.threads.values().map(|thread| thread.pid).collect();
        for pid in pids {
            self.processes
                .entry(pid)
                .or_insert_with(|| read_process_info(pid));
        }
        for process in self.processes.values_mut() {
            process.exited = !proc::exists(process.pid, None);
        }
        for thread in self.threads.values_mut() {
            let alive = proc::exists(thread.pid, Some(thread.tid));
            thread.exited |= !alive;
            if thread.name.is_empty() {
                thread.name = proc::comm(thread.pid, Some(thread.tid)).unwrap_or_default();
            }
            if let Some(process) = self.processes.get_mut(&thread.pid) {
                if process.name.is_empty() && thread.tid == thread.pid {
                    process.name = thread.name.clone();
                }
            }
        }
        recording.threads = self.threads;
        recording.processes = self.processes;
        recording.resources.process_maps = self.process_maps;
        recording.maps_changes = self.maps_changes;
        recording
    }
}

fn read_process_info(pid: u32) -> ProcessInfo {
    ProcessInfo {
        pid,
        name: proc::comm(pid, None).unwrap_or_default(),
        cmdline: proc::cmdline(pid),
        exited: false,
    }
}

fn comm_to_string(comm: &[u8; 16]) -> String {
    let len = comm.iter().position(|&b| b == 0).unwrap_or(comm.len());
    String::from_utf8_lossy(&comm[..len]).into_owned()
}

/// Opens the window (once the `-p` targets' interpreters are known), observes until the
/// duration elapses or `until` resolves (with what ended it), then detaches and reads
/// everything back.
pub async fn observe(
    probe: &mut Probe,
    options: &ObserveOptions,
    until: impl std::future::Future<Output = EndReason>,
) -> Result<Recording, LoadError> {
    let mut collector = Collector::default();
    // `-p` targets are known now: discovered before the window opens, their Python frames
    // are walked from the first sample.
    // Their unwind tables are built now too, so that their first samples have whole
    // native stacks.
    for &pid in &options.target_pids {
        collector.python.track(pid);
        collector.unwind.track(pid);
    }
    collector.python.sync(&mut collector.live, probe);
    collector.unwind.sync(&mut collector.tables, probe);
    while collector.unwind.has_pending() && probe.unwinder_loaded() {
        collector.unwind.sync(&mut collector.tables, probe);
    }
    if options.count_syscalls {
        probe.attach_syscall_counter()?;
    }
    probe.start_window()?;
    let status = Status::new(options.duration, options.status);
    // The window opened when the loader wrote its start; count the deadline from there.
    let opened_ago = Duration::from_nanos(monotonic_ns().saturating_sub(probe.window_start_ns));
    let deadline = options
        .duration
        .map(|duration| tokio::time::Instant::now() + duration.saturating_sub(opened_ago));
    let elapsed = async {
        match deadline {
            Some(deadline) => tokio::time::sleep_until(deadline).await,
            None => std::future::pending().await,
        }
    };
    let mut tick = tokio::time::interval(DRAIN_INTERVAL);
    tokio::pin!(until, elapsed);
    let interrupted_by = loop {
        tokio::select! {
            _ = &mut elapsed => break None,
            reason = &mut until => break reason,
            _ = tick.tick() => {
                collector.drain(probe)?;
                status.show(collector.accumulator.samples, probe.samples_lost());
            }
        }
    };
    let end_ns = probe.end_window()?;
    // Detached right away (sys_enter, attached last, first): sys_enter does not look at
    // the window, so it counts until here. The programs stay loaded for their statistics.
    probe.detach_all();
    let program_stats = probe.program_stats();
    status.clear();
    collector.drain(probe)?;
    collector.accumulator.close_off_cpu(end_ns);
    let aggregates = probe.read_aggregates()?;
    collector.accumulator.add_aggregates(&aggregates, end_ns);
    let window = Window {
        requested_ns: options.duration.map_or(0, |d| d.as_nanos() as u64),
        duration_ns: end_ns.saturating_sub(probe.window_start_ns),
        interrupted: interrupted_by.is_some(),
        interrupted_by,
    };
    let recording = Recording {
        window,
        frequency_hz: options.frequency_hz,
        online_cpus: probe.online_cpus.len() as u32,
        target_pids: probe.target_pids(),
        loss: aggregates.loss.clone(),
        program_stats,
        notices: probe.notices.clone(),
        ..Recording::default()
    };
    let mut recording = recording;
    if aggregates.loss.syscall_args_lost > 0 {
        recording.notices.push(format!(
            "{} sampled syscall arguments were lost (their ring buffer was full): the \
             argument shares are of the rest",
            aggregates.loss.syscall_args_lost
        ));
    }
    Ok(collector.finish(recording))
}

/// The state of one observation: samples and snapshots so far, and the Python
/// interpreters being followed.
#[derive(Default)]
pub struct Collector {
    accumulator: Accumulator,
    python: PythonTracker,
    live: LiveSource,
    unwind: UnwindTracker,
    tables: LiveTables,
}

impl Collector {
    /// Follows process `pid` from now on (its Python interpreter, its unwind tables),
    /// found at the next drain: `probe watch`, when one of its threads goes hot.
    pub fn track(&mut self, pid: u32) {
        self.python.track(pid);
        self.unwind.track(pid);
    }

    /// Drops the samples of thread `tid` (`probe watch`, once they are reported).
    pub fn forget_thread(&mut self, tid: u32) {
        let accumulator = &mut self.accumulator;
        accumulator.threads.remove(&tid);
        accumulator.not_walked.remove(&tid);
        for threads in accumulator.unchecked.values_mut() {
            threads.remove(&tid);
        }
    }

    /// The on-CPU samples collected so far, by (thread, raw stack) (`probe watch`'s
    /// profile windows).
    pub fn stack_counts(&self) -> crate::profiles::StackCounts {
        self.accumulator
            .threads
            .values()
            .flat_map(|thread| {
                thread
                    .stacks
                    .iter()
                    .filter(|(stack, _)| stack.kind == SampleKind::OnCpu)
                    .map(|(stack, stats)| (((thread.tid, thread.pid), stack.clone()), stats.count))
            })
            .collect()
    }

    /// Drops every thread's samples and the threads' records, keeping what names them
    /// (processes, maps, Python state): `probe watch`, which runs for weeks, reclaims
    /// memory this way between episodes.
    pub fn clear_samples(&mut self) {
        let accumulator = &mut self.accumulator;
        accumulator.threads.clear();
        accumulator.not_walked.clear();
        accumulator.unchecked.clear();
        accumulator.blocked.clear();
    }

    /// Drops everything kept of process `pid`, which is gone: its snapshots and memory
    /// maps, its Python state (`probe watch`, which runs for weeks).
    pub fn forget_process(&mut self, pid: u32) {
        let accumulator = &mut self.accumulator;
        accumulator.threads.retain(|_, thread| thread.pid != pid);
        accumulator.processes.remove(&pid);
        accumulator.process_maps.retain(|(p, _), _| *p != pid);
        accumulator.maps_refreshed.remove(&pid);
        accumulator.generations.remove(&pid);
        accumulator.unchecked.remove(&pid);
        accumulator.maps_checked.remove(&pid);
        accumulator.maps_changes.retain(|change| change.pid != pid);
        self.python.forget(pid);
    }

    /// Moves every sample waiting in the ring buffer into the accumulator and tells the
    /// kernel about new Python threads.
    pub fn drain(&mut self, probe: &mut Probe) -> Result<(), LoadError> {
        drain_samples(probe, self)
    }

    /// What was collected so far, as a recording, while the programs keep running: the
    /// samples drained until now, the kernel's aggregates as they are (`aggregates`, read
    /// at `now_ns`), runs and blocked periods still in progress counted up to `now_ns`.
    /// The observation goes on unchanged. For commands that report while observing.
    pub fn snapshot(&self, aggregates: &Aggregates, now_ns: u64) -> Recording {
        let mut accumulator = self.accumulator.clone();
        accumulator.add_aggregates(aggregates, now_ns);
        accumulator.close_off_cpu(now_ns);
        let mut recording = Recording {
            window: Window {
                duration_ns: now_ns.saturating_sub(aggregates.window_start_ns),
                ..Window::default()
            },
            loss: aggregates.loss.clone(),
            python_code: self.python.code(),
            notices: self.python.notices().to_vec(),
            unwind: self.unwind.summary(),
            ..Recording::default()
        };
        recording.notices.extend(self.unwind.notices());
        recording.resources.python = self.python.processes();
        let mut recording = accumulator.finish(recording);
        for thread in recording.threads.values_mut() {
            thread.python_name = self.python.thread_name(thread.tid).map(str::to_owned);
        }
        recording
    }

    /// The recording: `recording`'s header with everything collected.
    pub fn finish(mut self, recording: Recording) -> Recording {
        // Names of the threads still alive now; those gone kept the name last read.
        self.python.read_thread_names(&mut self.live);
        let mut recording = Recording {
            python_code: self.python.take_code(),
            ..recording
        };
        recording.notices.extend(self.python.take_notices());
        recording.notices.extend(self.unwind.notices());
        recording.unwind = self.unwind.summary();
        recording.resources.python = self.python.processes();
        let not_walked = std::mem::take(&mut self.accumulator.not_walked);
        let malformed = self.accumulator.malformed_samples;
        let mut recording = self.accumulator.finish(recording);
        if malformed > 0 {
            recording.notices.push(format!(
                "{malformed} ring-buffer records were not well-formed samples and were ignored"
            ));
        }
        let mut missed = 0;
        for thread in recording.threads.values_mut() {
            thread.python_name = self.python.thread_name(thread.tid).map(str::to_owned);
            if thread.python_name.is_some() {
                missed += not_walked.get(&thread.tid).copied().unwrap_or(0);
            }
        }
        if missed > 0 {
            recording.notices.push(format!(
                "{missed} samples of Python threads have native frames only: they were taken \
                 before probe had found the thread's interpreter state (it looks when a new \
                 process or thread shows up, at most every 0.25 s per process)"
            ));
        }
        recording
    }
}

fn drain_samples(probe: &mut Probe, collector: &mut Collector) -> Result<(), LoadError> {
    let Collector {
        accumulator,
        python,
        live,
        unwind,
        tables,
    } = collector;
    let ring = probe.samples();
    while let Some(item) = ring.next() {
        let Some(sample) = read_sample(&item) else {
            accumulator.malformed_samples += 1;
            continue;
        };
        let header = &sample.header;
        match header.kind {
            RECORD_SAMPLE | RECORD_OFF_CPU => {
                accumulator.observe_process(header.tgid, sample.user.first().copied());
                unwind.note_sample(
                    header.tgid,
                    header.ktime_ns,
                    header.flags & SAMPLE_USER_TABLES != 0,
                    (header.flags & SAMPLE_USER_STOP_MASK) >> SAMPLE_USER_STOP_SHIFT,
                    sample.user.first().copied(),
                );
                if header.kind == RECORD_SAMPLE {
                    accumulator.add_sample(&sample);
                } else {
                    accumulator.add_off_cpu(&sample);
                }
                python.note_sample(
                    header.tgid,
                    header.flags & SAMPLE_PY_WALKED != 0,
                    sample.python.iter().map(|frame| frame.code),
                );
            }
            RECORD_OFF_CPU_END => accumulator.add_off_cpu_end(header.tid, header.ktime_ns),
            RECORD_EXEC => {
                accumulator.exec(header.tgid);
                python.forget(header.tgid);
                unwind.exec(header.tgid);
            }
            _ => accumulator.malformed_samples += 1,
        }
    }
    accumulator.fd_targets.next_drain();
    let ring = probe.syscall_args();
    while let Some(item) = ring.next() {
        match read_syscall_args(&item) {
            Some(args) => accumulator.add_syscall_args(&args),
            None => accumulator.malformed_samples += 1,
        }
    }
    accumulator.check_due_maps(probe.filters_pids());
    python.sync(live, probe);
    unwind.sync(tables, probe);
    Ok(())
}

/// One `SYSCALL_ARGS` record, copied out (the ring's bytes are only 8-byte aligned);
/// `None` when its size is not a record's.
pub fn read_syscall_args(bytes: &[u8]) -> Option<SyscallArgs> {
    if bytes.len() != std::mem::size_of::<SyscallArgs>() {
        return None;
    }
    // SAFETY: exactly one record's bytes (checked above); `SyscallArgs` is plain old data
    // (any bit pattern is valid) and `read_unaligned` makes no alignment assumption.
    Some(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<SyscallArgs>()) })
}

/// Distinct key-argument values kept per (thread, syscall); the rest are counted as one.
const MAX_ARG_VALUES: usize = 32;

/// What file descriptors pointed at: read once per (process, fd) and drain, and the last
/// target read kept for when the fd is closed by the time of the next read (a storm of
/// open / close is the case that matters), so one fd is shown one way.
#[derive(Clone, Debug, Default)]
pub struct FdTargets {
    read_this_drain: HashMap<(u32, i32), Option<String>>,
    last_known: HashMap<(u32, i32), String>,
}

/// (process, fd) targets kept at most; beyond, the oldest knowledge is dropped at once.
const MAX_FD_TARGETS: usize = 4096;

impl FdTargets {
    /// A new drain: targets are read again.
    fn next_drain(&mut self) {
        self.read_this_drain.clear();
        if self.last_known.len() > MAX_FD_TARGETS {
            self.last_known.clear();
        }
    }

    /// Reads what `fd` of `tgid` points at, once per drain; remembered once read.
    fn look(&mut self, tgid: u32, fd: i32) {
        let read = self.read_this_drain.entry((tgid, fd)).or_insert_with(|| {
            std::fs::read_link(format!("/proc/{tgid}/fd/{fd}"))
                .ok()
                .map(|target| format!("{:?}", target.to_string_lossy()))
        });
        if let Some(target) = read {
            self.last_known.insert((tgid, fd), target.clone());
        }
    }

    /// `fd N → "target"` with the last target read, or `fd N` when none was.
    fn describe(&self, tgid: u32, fd: i32) -> String {
        match self.last_known.get(&(tgid, fd)) {
            Some(target) => format!("{FD_PREFIX}{fd} → {target}"),
            None => format!("{FD_PREFIX}{fd}"),
        }
    }
}

/// Tallied fd arguments are `fd N` until the report names what they point at.
const FD_PREFIX: &str = "fd ";

/// `N` of a tallied `fd N`.
fn tallied_fd(value: &str) -> Option<i32> {
    value.strip_prefix(FD_PREFIX)?.parse().ok()
}

/// How a sampled syscall's key argument is shown, or `None` for a syscall without one.
fn key_arg_value(args: &SyscallArgs, fds: &mut FdTargets) -> Option<String> {
    use crate::syscall_names::KeyArg;
    Some(match crate::syscall_names::key_arg(args.nr)? {
        KeyArg::Path(index) => {
            let len = (args.path_len as usize).min(SYSCALL_PATH_BYTES);
            // An `*at` call with an empty path works on its directory fd (glibc's fstat
            // is `newfstatat(fd, "", AT_EMPTY_PATH)`): that fd is the argument.
            if len == 1 && index == 1 {
                return Some(fd_value(args, fds));
            }
            if len == 0 {
                "(unreadable path)".to_owned()
            } else {
                let path = String::from_utf8_lossy(&args.path[..len - 1]);
                // Quoted and escaped: a path is whatever bytes the program passed.
                let cut = if len == SYSCALL_PATH_BYTES { "…" } else { "" };
                format!("{path:?}{cut}")
            }
        }
        KeyArg::Fd => fd_value(args, fds),
        KeyArg::Futex => format!("futex {:#x}", args.args[0]),
    })
}

/// `fd N`, tallied as is: what it points at is read now (at the drain, not at the call)
/// and named at the end, one way for every call on that fd.
fn fd_value(args: &SyscallArgs, fds: &mut FdTargets) -> String {
    let fd = args.args[0] as i32;
    fds.look(args.tgid, fd);
    format!("{FD_PREFIX}{fd}")
}

/// Parses one ring-buffer record: a [`SampleHeader`] and exactly the frames it counts
/// (see there). `None` for anything else (too short or too long for its counts, or counts
/// beyond what the kernel records), which the caller counts and skips. The record bytes
/// are only 8-byte aligned by the kernel, so every value is copied out, never cast in place.
pub fn read_sample(bytes: &[u8]) -> Option<Sample> {
    let header_len = std::mem::size_of::<SampleHeader>();
    if bytes.len() < header_len {
        return None;
    }
    // SAFETY: `bytes` holds at least a header (checked above); `SampleHeader` is plain old
    // data (any bit pattern is valid) and `read_unaligned` makes no alignment assumption.
    let header = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<SampleHeader>()) };
    let kernel_frames = header.kernel_frames as usize;
    let user_frames = header.user_frames as usize;
    let py_frames = header.py_frames as usize;
    if kernel_frames > MAX_STACK_DEPTH || user_frames > MAX_USER_FRAMES || py_frames > PY_MAX_FRAMES
    {
        return None;
    }
    if bytes.len() != sample_record_bytes(kernel_frames, user_frames, py_frames) {
        return None;
    }
    let events_have_frames = matches!(header.kind, RECORD_EXEC | RECORD_OFF_CPU_END)
        && kernel_frames + user_frames + py_frames > 0;
    if events_have_frames {
        return None;
    }
    let (native, python) = bytes[header_len..].split_at((kernel_frames + user_frames) * 8);
    let (kernel, user) = native.split_at(kernel_frames * 8);
    let python = python
        .chunks_exact(std::mem::size_of::<PyFrameRecord>())
        .map(|frame| PyFrameRecord {
            code: u64::from_ne_bytes(fixed(&frame[..8])),
            offset: u32::from_ne_bytes(fixed(&frame[8..12])),
            flags: u32::from_ne_bytes(fixed(&frame[12..])),
        })
        .collect();
    let addresses = |bytes: &[u8]| {
        bytes
            .chunks_exact(8)
            .map(|word| u64::from_ne_bytes(fixed(word)))
            .collect()
    };
    let (kernel, user) = (addresses(kernel), addresses(user));
    Some(Sample {
        header,
        kernel,
        user,
        python,
    })
}

/// The bytes of a slice whose length is `N` by construction (exact chunks).
fn fixed<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut out = [0; N];
    out.copy_from_slice(bytes);
    out
}

/// A one-line status on stderr, only when stderr is a terminal: what is being done,
/// elapsed or remaining time, samples and lost samples.
struct Status {
    started: Instant,
    duration: Option<Duration>,
    doing: &'static str,
    enabled: bool,
}

impl Status {
    fn new(duration: Option<Duration>, doing: &'static str) -> Self {
        Self {
            started: Instant::now(),
            duration,
            doing,
            enabled: std::io::stderr().is_terminal(),
        }
    }

    fn show(&self, samples: u64, lost: u64) {
        if !self.enabled {
            return;
        }
        let elapsed = self.started.elapsed();
        let time = match self.duration {
            Some(duration) => format!(
                "{:.0} s left",
                duration.saturating_sub(elapsed).as_secs_f64().ceil()
            ),
            None => format!("{:.0} s", elapsed.as_secs_f64().floor()),
        };
        let mut stderr = std::io::stderr().lock();
        // A failed write to the terminal only loses the status line.
        let _ = write!(
            stderr,
            "\r\x1b[Kprobe: {}, {time}, {samples} samples, {lost} lost (Ctrl-C ends early)",
            self.doing
        );
        let _ = stderr.flush();
    }

    fn clear(&self) {
        if self.enabled {
            let _ = write!(std::io::stderr().lock(), "\r\x1b[K");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use probe_common::SyscallKey;

    use super::*;

    fn header(tid: u32, kernel: usize, user: usize, python: usize) -> SampleHeader {
        SampleHeader {
            tgid: 100,
            tid,
            cpu: 1,
            flags: SAMPLE_PY_WALKED,
            ktime_ns: 42,
            kernel_frames: kernel as u32,
            user_frames: user as u32,
            py_frames: python as u32,
            kind: RECORD_SAMPLE,
            syscall: 0,
            reserved: 0,
        }
    }

    fn sample(tid: u32, user: &[u64], kernel: &[u64]) -> Sample {
        Sample {
            header: header(tid, kernel.len(), user.len(), 0),
            kernel: kernel.to_vec(),
            user: user.to_vec(),
            python: Vec::new(),
        }
    }

    /// The record the kernel writes for `sample`: its header and frames, back to back.
    fn record(sample: &Sample) -> Vec<u8> {
        let h = &sample.header;
        let mut bytes = Vec::new();
        for field in [h.tgid, h.tid, h.cpu, h.flags] {
            bytes.extend(field.to_ne_bytes());
        }
        bytes.extend(h.ktime_ns.to_ne_bytes());
        for field in [
            h.kernel_frames,
            h.user_frames,
            h.py_frames,
            h.kind,
            h.syscall,
            h.reserved,
        ] {
            bytes.extend(field.to_ne_bytes());
        }
        for addr in sample.kernel.iter().chain(&sample.user) {
            bytes.extend(addr.to_ne_bytes());
        }
        for frame in &sample.python {
            bytes.extend(frame.code.to_ne_bytes());
            bytes.extend(frame.offset.to_ne_bytes());
            bytes.extend(frame.flags.to_ne_bytes());
        }
        bytes
    }

    fn python_sample() -> Sample {
        let python = vec![
            PyFrameRecord {
                code: 0x7000,
                offset: 12,
                flags: 0,
            },
            PyFrameRecord {
                code: 0x7100,
                offset: 4,
                flags: PY_FRAME_CALL_ENTRY,
            },
        ];
        Sample {
            header: header(7, 2, 3, python.len()),
            kernel: vec![0xffff_1000, 0xffff_2000],
            user: vec![0x401000, 0x402000, 0x403000],
            python,
        }
    }

    #[test]
    fn records_are_parsed_back_exactly() {
        let python = python_sample();
        let bytes = record(&python);
        assert_eq!(bytes.len(), 48 + 5 * 8 + 2 * 16);
        assert_eq!(read_sample(&bytes), Some(python));
        let native = sample(9, &[1, 2], &[]);
        assert_eq!(read_sample(&record(&native)), Some(native));
        let mut full = sample(9, &[5; MAX_USER_FRAMES], &[6; MAX_STACK_DEPTH]);
        full.python = vec![PyFrameRecord::default(); PY_MAX_FRAMES];
        full.header.py_frames = PY_MAX_FRAMES as u32;
        let bytes = record(&full);
        assert_eq!(bytes.len(), probe_common::SAMPLE_MAX_BYTES);
        assert_eq!(read_sample(&bytes), Some(full));
    }

    #[test]
    fn malformed_records_are_rejected_without_panicking() {
        let bytes = record(&python_sample());
        // Every truncation, and a record longer than its counts say.
        for len in 0..bytes.len() {
            assert_eq!(read_sample(&bytes[..len]), None, "{len} bytes");
        }
        let mut long = bytes.clone();
        long.extend([0; 8]);
        assert_eq!(read_sample(&long), None);
        // Counts beyond what the kernel records, even when the length would match.
        for (kernel, user, python) in [
            (MAX_STACK_DEPTH + 1, 0, 0),
            (0, MAX_USER_FRAMES + 1, 0),
            (0, 0, PY_MAX_FRAMES + 1),
            (u32::MAX as usize, u32::MAX as usize, u32::MAX as usize),
        ] {
            let mut bad = sample(1, &[], &[]);
            bad.header = header(1, kernel, user, python);
            let mut bytes = record(&bad);
            bytes.resize(sample_record_bytes(kernel, user, python).min(1 << 20), 0);
            assert_eq!(read_sample(&bytes), None, "{kernel} {user} {python}");
        }
    }

    #[test]
    fn aggregates_identical_stacks_and_splits_user_kernel() {
        let mut acc = Accumulator::default();
        acc.add_sample(&sample(101, &[1, 2, 3], &[]));
        acc.add_sample(&sample(101, &[1, 2, 3], &[]));
        acc.add_sample(&sample(101, &[1, 2, 3], &[9]));
        let thread = &acc.threads[&101];
        assert_eq!(thread.user_samples, 2);
        assert_eq!(thread.kernel_samples, 1);
        assert_eq!(thread.stacks.len(), 2);
        let user_only = RawStack {
            user: vec![1, 2, 3],
            ..RawStack::default()
        };
        let stats = thread.stacks[&user_only];
        assert_eq!(stats.count, 2);
        // Samples keep their time (the test's are all at 42 ns) and CPU.
        assert_eq!((stats.first_ns, stats.last_ns), (42, 42));
        assert_eq!(thread.samples_by_cpu, BTreeMap::from([(1, 3)]));
    }

    #[test]
    fn the_syscall_a_sample_was_in_keys_its_stack() {
        let mut acc = Accumulator::default();
        let mut in_getppid = sample(101, &[1], &[9]);
        in_getppid.header.syscall = 110 + 1;
        acc.add_sample(&in_getppid);
        acc.add_sample(&sample(101, &[1], &[9]));
        let syscalls: Vec<Option<u32>> =
            acc.threads[&101].stacks.keys().map(|s| s.syscall).collect();
        assert_eq!(syscalls.len(), 2);
        assert!(syscalls.contains(&Some(110)) && syscalls.contains(&None));
    }

    #[test]
    fn python_frames_and_flags_reach_the_stack() {
        let mut acc = Accumulator::default();
        let mut truncated = python_sample();
        truncated.header.flags |= SAMPLE_PY_TRUNCATED;
        acc.add_sample(&truncated);
        let mut not_walked = python_sample();
        not_walked.header.flags = 0;
        acc.add_sample(&not_walked);
        let stack = acc.threads[&7].stacks.keys().find(|s| s.python_truncated);
        let stack = stack.expect("the truncated sample's stack");
        assert_eq!(stack.kernel, [0xffff_1000, 0xffff_2000]);
        assert_eq!(stack.user, [0x401000, 0x402000, 0x403000]);
        let frames: Vec<_> = stack
            .python
            .iter()
            .map(|f| (f.code, f.offset, f.call_entry))
            .collect();
        assert_eq!(frames, [(0x7000, 12, false), (0x7100, 4, true)]);
        assert_eq!(acc.threads[&7].kernel_samples, 2);
        assert_eq!(acc.not_walked[&7], 1);
    }

    #[test]
    fn running_thread_is_credited_only_after_a_sample_since_the_last_switch() {
        let mut acc = Accumulator::default();
        let cpus = [
            // Never switched, sampled: running since the window start.
            CpuState {
                last_switch_ns: 0,
                last_sample_ns: 50,
                last_sample_tid: 7,
                last_sample_tgid: 7,
                ..CpuState::default()
            },
            // Switched after its last sample: the sampled thread is no longer there.
            CpuState {
                last_switch_ns: 80,
                last_sample_ns: 60,
                last_sample_tid: 8,
                last_sample_tgid: 8,
                ..CpuState::default()
            },
            // Sampled after the switch: running since the switch.
            CpuState {
                last_switch_ns: 70,
                last_sample_ns: 90,
                last_sample_tid: 9,
                last_sample_tgid: 9,
                ..CpuState::default()
            },
            // Switched after the window's end: that switch credited the run up to the end.
            CpuState {
                last_switch_ns: 120,
                last_sample_ns: 110,
                last_sample_tid: 10,
                last_sample_tgid: 10,
                ..CpuState::default()
            },
            // Idle at the last sample.
            CpuState {
                last_switch_ns: 10,
                last_sample_ns: 90,
                last_sample_tid: 0,
                last_sample_tgid: 0,
                ..CpuState::default()
            },
        ];
        acc.add_running(&cpus, 20, 100);
        assert_eq!(acc.threads[&7].on_cpu_ns, 80);
        assert!(!acc.threads.contains_key(&8));
        assert_eq!(acc.threads[&9].on_cpu_ns, 30);
        assert_eq!(acc.threads.len(), 2);
    }

    #[test]
    fn the_thread_a_switch_put_on_a_cpu_is_credited_without_a_sample() {
        let mut acc = Accumulator::default();
        let cpus = [
            // Switched in at 30 and not sampled since: the switch named it.
            CpuState {
                last_switch_ns: 30,
                last_sample_ns: 10,
                last_sample_tid: 8,
                last_sample_tgid: 8,
                running_tid: 12,
                running_tgid: 11,
            },
            // The switch put an idle or out-of-scope task on: a sample still counts.
            CpuState {
                last_switch_ns: 40,
                last_sample_ns: 60,
                last_sample_tid: 9,
                last_sample_tgid: 9,
                running_tid: 0,
                running_tgid: 0,
            },
        ];
        acc.add_running(&cpus, 20, 100);
        assert_eq!(acc.threads[&12].on_cpu_ns, 70);
        assert_eq!(acc.threads[&12].pid, 11);
        assert_eq!(acc.threads[&9].on_cpu_ns, 60);
        assert!(!acc.threads.contains_key(&8));
    }

    #[test]
    fn thread_stats_add_up_and_keep_the_first_name() {
        let mut acc = Accumulator::default();
        let mut stats = ThreadStats {
            on_cpu_ns: 5,
            voluntary_switches: 1,
            involuntary_switches: 2,
            tgid: 40,
            exited: 1,
            comm: [0; 16],
        };
        stats.comm[..4].copy_from_slice(b"wrk\x1b");
        acc.add_thread_stats(41, &stats);
        let thread = &acc.threads[&41];
        assert_eq!((thread.pid, thread.on_cpu_ns, thread.exited), (40, 5, true));
        assert_eq!(thread.name, "wrk\x1b");
    }

    #[test]
    fn snapshots_leave_the_observation_as_it_was() {
        let mut collector = Collector::default();
        collector.accumulator.add_sample(&sample(7, &[1, 2], &[]));
        let aggregates = Aggregates {
            threads: vec![(
                7,
                ThreadStats {
                    on_cpu_ns: 500,
                    tgid: 100,
                    ..ThreadStats::default()
                },
            )],
            syscalls: vec![(
                SyscallKey {
                    tid: 7,
                    nr: 39,
                    cpu: 0,
                    _pad: 0,
                },
                4,
            )],
            window_start_ns: 1_000,
            ..Aggregates::default()
        };
        for _ in 0..2 {
            let snapshot = collector.snapshot(&aggregates, 3_000);
            let thread = &snapshot.threads[&7];
            assert_eq!(
                thread.on_cpu_ns, 500,
                "aggregates are added once per snapshot"
            );
            assert_eq!(thread.syscalls[&39], 4);
            assert_eq!(thread.stacks.values().map(|s| s.count).sum::<u64>(), 1);
            assert_eq!(snapshot.window.duration_ns, 2_000);
        }
        let thread = &collector.accumulator.threads[&7];
        assert_eq!((thread.on_cpu_ns, thread.syscalls.len()), (0, 0));
    }

    #[test]
    fn off_cpu_stacks_weigh_the_time_off() {
        let mut acc = Accumulator::default();
        let mut blocked = sample(7, &[1, 2], &[9]);
        blocked.header.kind = RECORD_OFF_CPU;
        blocked.header.ktime_ns = 100;
        acc.add_off_cpu(&blocked);
        acc.add_off_cpu_end(7, 350);
        blocked.header.ktime_ns = 400;
        acc.add_off_cpu(&blocked);
        // Still blocked when the window closes.
        acc.close_off_cpu(1_000);
        // An end with no recorded start (its record was lost) adds nothing.
        acc.add_off_cpu_end(8, 500);
        let stacks = &acc.threads[&7].stacks;
        assert_eq!(stacks.len(), 1);
        let (stack, stats) = stacks.iter().next().unwrap();
        assert_eq!(stack.kind, SampleKind::OffCpu);
        assert_eq!((stats.count, stats.off_cpu_ns), (2, 250 + 600));
        assert_eq!(
            (acc.threads[&7].user_samples, acc.threads[&7].kernel_samples),
            (0, 0)
        );
        assert!(!acc.threads.contains_key(&8));
    }

    #[test]
    fn event_records_with_frames_are_malformed() {
        let mut exec = sample(7, &[], &[]);
        exec.header.kind = RECORD_EXEC;
        assert_eq!(read_sample(&record(&exec)), Some(exec.clone()));
        let mut bad = sample(7, &[1], &[]);
        bad.header.kind = RECORD_OFF_CPU_END;
        assert_eq!(read_sample(&record(&bad)), None);
    }

    #[test]
    fn exec_starts_a_new_generation_of_maps() {
        let mut acc = Accumulator::default();
        acc.add_sample(&sample(7, &[1], &[]));
        acc.exec(100);
        acc.add_sample(&sample(7, &[1], &[]));
        let generations: BTreeSet<u32> = acc.threads[&7]
            .stacks
            .keys()
            .map(|s| s.maps_generation)
            .collect();
        assert_eq!(generations, BTreeSet::from([0, 1]));
    }

    #[test]
    fn pending_cached_syscalls_are_added() {
        let mut acc = Accumulator::default();
        acc.add_thread_stats(
            3,
            &ThreadStats {
                tgid: 2,
                ..ThreadStats::default()
            },
        );
        acc.add_syscalls(3, 110, 10);
        let cache = SyscallCache {
            key: [SyscallCache::key(3, 110), SyscallCache::key(3, 0), 0, 0],
            pending: [5, 2, 0, 0],
            ..SyscallCache::default()
        };
        acc.add_syscall_cache(&cache);
        assert_eq!(acc.threads[&3].syscalls[&110], 15);
        assert_eq!(acc.threads[&3].syscalls[&0], 2);
        assert_eq!(acc.threads.len(), 1);
    }

    fn syscall_args(tgid: u32, nr: u32, args: [u64; 6], path: &[u8]) -> SyscallArgs {
        let mut record = SyscallArgs {
            tid: tgid,
            tgid,
            nr,
            path_len: 0,
            args,
            path: [0; SYSCALL_PATH_BYTES],
        };
        if !path.is_empty() {
            record.path[..path.len()].copy_from_slice(path);
            record.path_len = path.len() as u32 + 1;
        }
        record
    }

    #[test]
    fn sampled_arguments_are_tallied_by_their_key_value() {
        let me = std::process::id();
        let mut acc = Accumulator::default();
        // openat(AT_FDCWD, "/etc\n\"x"): a hostile path, quoted and escaped.
        acc.add_syscall_args(&syscall_args(me, 257, [0; 6], b"/etc\n\"x"));
        // read(0, ...) twice: this process's stdin, named from /proc; an fd nothing
        // points at keeps its number.
        acc.add_syscall_args(&syscall_args(me, 0, [0; 6], b""));
        acc.add_syscall_args(&syscall_args(me, 0, [0; 6], b""));
        acc.add_syscall_args(&syscall_args(me, 0, [9999, 0, 0, 0, 0, 0], b""));
        // getppid has no key argument: nothing is kept.
        acc.add_syscall_args(&syscall_args(me, 110, [0; 6], b""));
        // futex(addr, ...).
        acc.add_syscall_args(&syscall_args(me, 202, [0x7f00_1234, 0, 0, 0, 0, 0], b""));
        let stdin = std::fs::read_link("/proc/self/fd/0")
            .map(|target| format!("fd 0 → {:?}", target.to_string_lossy()))
            .unwrap_or_else(|_| "fd 0".to_owned());
        let recording = acc.finish(Recording::default());
        let args = &recording.threads[&me].syscall_args;
        assert_eq!(
            args[&257],
            BTreeMap::from([("\"/etc\\n\\\"x\"".to_owned(), 1)])
        );
        assert_eq!(
            args[&0],
            BTreeMap::from([(stdin, 2), ("fd 9999".to_owned(), 1)])
        );
        assert_eq!(
            args[&202],
            BTreeMap::from([("futex 0x7f001234".to_owned(), 1)])
        );
        assert!(!args.contains_key(&110));
    }
}
