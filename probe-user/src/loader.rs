//! Loads and attaches the kernel programs and owns their maps. Dropping a [`Probe`] (on
//! every exit path, including Ctrl-C and errors) closes the links, which detaches them.

use aya::{
    maps::{Array, HashMap as BpfHashMap, MapData, PerCpuArray, ProgramArray, RingBuf},
    programs::{
        perf_event::{
            PerfEventConfig, PerfEventLinkId, PerfEventScope, SamplePolicy, SoftwareEvent,
        },
        tp_btf::BtfTracePointLinkId,
        BtfTracePoint, PerfEvent, ProgramError, ProgramFd, RawTracePoint, RawTracePointRunOptions,
        TestRun,
    },
    util::online_cpus,
    Btf, BtfError, Ebpf, EbpfError, EbpfLoader, Pod,
};
use probe_common::{
    names, Counter, CpuState, KernelName, PyLayoutKernel, SyscallCache, SyscallKey, ThreadStats,
    CONTROL_PY_WALK_LOADED, CONTROL_WINDOW_END, CONTROL_WINDOW_START, KERNEL_NAME_BATCH,
    KERNEL_NAME_TEXT_BYTES, SAMPLE_MAX_BYTES, TAIL_CALL_PY_WALK, TAIL_CALL_UNWIND,
};
use thiserror::Error;

use crate::model::{LossCounters, ProgramStats};
use crate::syscall_names::KeyArg;

mod batch;
pub mod task_registers;
mod unwind_maps;

/// The compiled kernel programs, built by build.rs for bpfel-unknown-none.
static PROGRAMS: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/probe"));

/// Why the kernel side could not be set up. Callers branch on permission problems.
#[derive(Debug, Error)]
pub enum LoadError {
    #[error(
        "permission denied by the kernel while {action}: run probe as root \
         (or give it CAP_BPF and CAP_PERFMON)"
    )]
    Permission { action: String },
    #[error(
        "kernel BTF is unavailable ({0}); probe needs a kernel built with CONFIG_DEBUG_INFO_BTF=y"
    )]
    Btf(String),
    #[error(
        "too many open files while {action}: probe needs a file descriptor for every map, \
         program and attachment; raise the limit, e.g. `ulimit -n 4096`"
    )]
    TooManyOpenFiles { action: &'static str },
    #[error(
        "the system's table of open files is full (ENFILE) while {action}: close files or \
         raise `sysctl fs.file-max` (raising `ulimit -n` does not help)"
    )]
    SystemOutOfFiles { action: &'static str },
    #[error("failed to load the eBPF object: {0}")]
    Object(#[source] EbpfError),
    #[error("the kernel's verifier rejected program `{program}` ({errno}): {last_line}")]
    Verifier {
        program: &'static str,
        errno: std::io::Error,
        /// The verifier log's last line, which says why.
        last_line: String,
    },
    #[error("the kernel rejected program `{program}`: {source}")]
    Program {
        program: &'static str,
        #[source]
        source: ProgramError,
    },
    #[error("failed to {0}")]
    Other(String),
}

/// What to load: the scope is decided in the kernel, at load time.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// Processes to observe; empty = every process (unless `follow_forks` with a command
    /// still to be added: see [`Probe::add_target`]).
    pub pids: Vec<u32>,
    /// Observe only the processes in the filter, even while it is empty (a spawned
    /// command's pid is added once it exists).
    pub filter_pids: bool,
    pub frequency_hz: u64,
    /// The kernel programs the command needs.
    pub programs: ProgramSet,
}

/// Which kernel programs an observation loads. Each costs the observed machine something;
/// a command loads only what it reports on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProgramSet {
    /// Per-(thread, syscall) counts: a hook in every syscall of the machine, the costliest
    /// program. Attached when the window opens ([`Probe::attach_syscall_counter`]).
    pub syscalls: bool,
    /// Add every process that an observed process forks to the filter, in the kernel, so
    /// a short-lived child is observed from its first instruction.
    pub follow_forks: bool,
    /// Record the stack of every observed thread that blocks, and for how long
    /// (`record --off-cpu`): a ring-buffer record per voluntary context switch.
    pub off_cpu: bool,
    /// Unwind user stacks with `.eh_frame` tables (else frame pointers only): the table
    /// unwinder is loaded, and userspace fills the tables' maps.
    pub unwind_tables: bool,
    /// `probe watch`: the sampler is not attached at load but on demand
    /// ([`Probe::attach_sampling`]), it and the syscall counter record only the threads in
    /// `HOT_THREADS` ([`Probe::set_hot_threads`]), and `sched_switch` notes which thread each
    /// CPU runs, so a thread that runs without a switch is seen while it runs.
    pub watch: bool,
    /// `probe watch` with continuous profiling: the sampler records every thread's stacks
    /// (the syscall counter still only the hot threads').
    pub profile_all: bool,
}

impl ProgramSet {
    /// `probe spin`: run time, stacks and syscall counts.
    pub const SPIN: ProgramSet = ProgramSet {
        syscalls: true,
        follow_forks: false,
        off_cpu: false,
        unwind_tables: true,
        watch: false,
        profile_all: false,
    };

    /// `probe watch`: run time always; stacks and syscalls of hot threads on demand.
    pub const WATCH: ProgramSet = ProgramSet {
        syscalls: true,
        follow_forks: false,
        off_cpu: false,
        unwind_tables: true,
        watch: true,
        profile_all: false,
    };
}

/// What the kernel programs have aggregated, as plain records (see
/// [`Probe::read_aggregates`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Aggregates {
    pub threads: Vec<(u32, ThreadStats)>,
    pub syscalls: Vec<(SyscallKey, u64)>,
    /// Each CPU's syscall cache (counts not yet in `syscalls`).
    pub syscall_caches: Vec<SyscallCache>,
    pub cpus: Vec<CpuState>,
    pub window_start_ns: u64,
    pub loss: LossCounters,
}

/// The loaded, attached programs and the maps they fill.
pub struct Probe {
    ebpf: Ebpf,
    /// CLOCK_MONOTONIC nanoseconds at which the window opened (every program attached).
    pub window_start_ns: u64,
    pub online_cpus: Vec<u32>,
    /// The sampler's Python frame walk, loaded on first need.
    python_walk: PythonWalk,
    /// Every attachment, in attach order; emptied by [`Probe::detach_all`].
    links: Vec<Attachment>,
    /// `name_kernel_addresses` is loaded (on first need).
    kernel_namer_loaded: bool,
    /// The ring buffer of stack samples, mapped once: mapping it for every drain cost
    /// more than reading it.
    samples: RingBuf<MapData>,
    /// The ring buffer of sampled syscall arguments.
    syscall_args: RingBuf<MapData>,
    /// What was loaded.
    programs: ProgramSet,
    /// Features that are unavailable on this kernel, one line each, for the report.
    pub notices: Vec<String>,
    /// Only the processes in the filter are observed.
    filter_pids: bool,
    /// The table unwinder is in the sampler's tail-call slot.
    unwinder_loaded: bool,
    /// The unwind arrays, mapped on first use.
    unwind_arrays: Option<unwind_maps::UnwindArrays>,
    /// Held while the kernel keeps run-time statistics for every BPF program (see
    /// [`Probe::keep_run_time_stats`]).
    run_time_stats: Option<std::os::fd::OwnedFd>,
    /// The syscall map has had no entries since it was last cleared with the counter
    /// detached: reading it can be skipped (iterating a hash map visits all its buckets,
    /// 131,072 for this one, even when it is empty).
    syscall_counts_empty: bool,
}

/// One attached program. Detaching leaves the program loaded until the [`Probe`] drops, so
/// the kernel still knows its name when the report names the frames that landed in it.
enum Attachment {
    Sampler(PerfEventLinkId),
    Tracepoint(&'static str, BtfTracePointLinkId),
}

/// Whether `walk_python` is in the sampler's tail-call slot.
#[derive(Clone, Debug)]
enum PythonWalk {
    NotLoaded,
    Loaded,
    /// Loading it failed (the reason, repeated for every Python process): the sampler
    /// records native frames only.
    Failed(String),
}

/// Every program that can be attached, for statistics (those not loaded are left out).
/// `walk_python` is not among them: it is never attached, and the kernel counts its runs
/// (tail calls) as `sample_stack`'s.
const PROGRAMS_IN_ORDER: [&str; 6] = [
    names::PROG_SAMPLE,
    names::PROG_SCHED_SWITCH,
    names::PROG_PROCESS_EXIT,
    names::PROG_PROCESS_EXEC,
    names::PROG_PROCESS_FORK,
    names::PROG_SYS_ENTER,
];

/// The BTF tracepoints every observation attaches; each program is named after its
/// tracepoint. The optional ones ([`ProgramSet`]) are attached after them.
const ALWAYS_ATTACHED: [&str; 3] = [
    names::PROG_SCHED_SWITCH,
    names::PROG_PROCESS_EXIT,
    names::PROG_PROCESS_EXEC,
];

/// CLOCK_MONOTONIC now, in nanoseconds: the clock `bpf_ktime_get_ns` reads.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// `sys_enter` samples the arguments of one syscall in this many on each CPU: ~2,000 a
/// second of a 136,000/s storm, a handful of a quiet thread's.
const SYSCALL_ARG_EVERY: u32 = 64;

impl Probe {
    /// Loads every program, fills the pid filter and attaches everything.
    pub fn load(options: &LoadOptions) -> Result<Self, LoadError> {
        if PROGRAMS.is_empty() {
            return Err(LoadError::Other(
                "load the kernel programs: this probe was built with AYA_BUILD_SKIP set, \
                 without them; rebuild without it"
                    .to_owned(),
            ));
        }
        raise_memlock_limit();
        raise_open_files_limit();
        // `EbpfLoader::new` parses the kernel BTF for itself (~25 ms here; aya offers no
        // way around it), and the BTF tracepoints need a parsed copy of their own: parse
        // that one on another thread meanwhile, which takes one parse off the time to attach.
        let parsing = std::thread::spawn(Btf::from_sys_fs);
        let mut loader = EbpfLoader::new();
        let btf = parsing
            .join()
            .map_err(|_| LoadError::Btf("parsing it panicked".to_owned()))?
            .map_err(btf_error)?;
        let filter: u32 = (options.filter_pids || !options.pids.is_empty()).into();
        let online_cpus = online_cpus().map_err(|(path, err)| {
            out_of_files(&err, "reading the online CPUs")
                .unwrap_or_else(|| LoadError::Other(format!("read {path}: {err}")))
        })?;
        let ring_bytes = sample_ring_bytes(online_cpus.len(), options.frequency_hz);
        let mut notices = Vec::new();
        let mut tgid_offset = 0u32;
        let mut pid_offset = 0u32;
        if options.programs.watch {
            let offsets = crate::btf::kernel_field_offset("task_struct", "pid")
                .and_then(|pid| Ok((pid, crate::btf::kernel_field_offset("task_struct", "tgid")?)));
            match offsets {
                Ok((pid, tgid)) => (pid_offset, tgid_offset) = (pid, tgid),
                Err(why) => notices.push(format!(
                    "a thread that runs without being switched out is seen only once it is \
                     ({why})"
                )),
            }
        }
        if options.programs.follow_forks {
            match crate::btf::kernel_field_offset("task_struct", "tgid") {
                Ok(offset) => tgid_offset = offset,
                Err(why) => notices.push(format!(
                    "children of the command are not followed ({why}): only the command \
                     itself is observed"
                )),
            }
        }
        let mut ebpf = loader
            .btf(Some(&btf))
            .map_max_entries(names::SAMPLES, ring_bytes)
            .override_global(names::GLOBAL_FILTER_PIDS, &filter, true)
            .override_global(names::GLOBAL_TASK_TGID_OFFSET, &tgid_offset, true)
            .override_global(
                names::GLOBAL_OFF_CPU_STACKS,
                &u32::from(options.programs.off_cpu),
                true,
            )
            .override_global(names::GLOBAL_TASK_PID_OFFSET, &pid_offset, true)
            .override_global(
                names::GLOBAL_HOT_ONLY,
                &u32::from(options.programs.watch),
                true,
            )
            .override_global(
                names::GLOBAL_PROFILE_ALL,
                &u32::from(options.programs.profile_all),
                true,
            )
            .override_global(
                names::GLOBAL_SYSCALL_ARG_EVERY,
                &if options.programs.syscalls {
                    SYSCALL_ARG_EVERY
                } else {
                    0
                },
                true,
            )
            .load(PROGRAMS)
            .map_err(classify_object_error)?;
        let samples = ebpf.take_map(names::SAMPLES).ok_or_else(|| {
            LoadError::Other(format!("find map `{}` in the object", names::SAMPLES))
        })?;
        let samples = RingBuf::try_from(samples)
            .map_err(|err| LoadError::Other(format!("map the sample ring buffer: {err}")))?;
        let syscall_args = ebpf.take_map(names::SYSCALL_ARGS).ok_or_else(|| {
            LoadError::Other(format!("find map `{}` in the object", names::SYSCALL_ARGS))
        })?;
        let syscall_args = RingBuf::try_from(syscall_args).map_err(|err| {
            LoadError::Other(format!("map the syscall-argument ring buffer: {err}"))
        })?;
        let mut probe = Self {
            ebpf,
            window_start_ns: 0,
            online_cpus,
            python_walk: PythonWalk::NotLoaded,
            links: Vec::new(),
            kernel_namer_loaded: false,
            samples,
            syscall_args,
            programs: ProgramSet::default(),
            notices,
            filter_pids: filter != 0,
            unwinder_loaded: false,
            unwind_arrays: None,
            run_time_stats: None,
            syscall_counts_empty: true,
        };
        probe.fill_pid_filter(&options.pids)?;
        if options.programs.syscalls {
            probe.fill_syscall_path_args()?;
        }
        // Verify everything first, then attach in quick succession; the programs account
        // nothing until the caller opens the window with `start_window`. The Python walk
        // is loaded later, once a Python process is in scope.
        probe.load_programs(&btf, options.programs)?;
        if options.programs.off_cpu {
            // Off-CPU stacks of Python threads get their Python frames once the walk is in
            // its slot; without it they keep their native frames.
            if let Err(err) = probe.insert_python_switch_walk(&btf) {
                probe.notices.push(format!(
                    "off-CPU stacks have native frames only: the Python walk for them could \
                     not be loaded ({err})"
                ));
            }
        }
        let unwinder = if options.programs.unwind_tables {
            probe.insert_unwinder()
        } else {
            Ok(())
        };
        match unwinder {
            Ok(()) if options.programs.off_cpu && probe.unwinder_loaded => {
                if let Err(err) = probe.insert_switch_unwinder(&btf) {
                    probe.notices.push(format!(
                        "off-CPU native stacks use frame pointers only: the table unwinder \
                         for them could not be loaded ({err})"
                    ));
                }
            }
            Ok(()) => {}
            Err(err) => probe.notices.push(unwinder_notice(&err)),
        }
        if !options.programs.watch {
            probe.attach_sampler(options.frequency_hz)?;
        }
        probe.attach_tracepoints(&ALWAYS_ATTACHED)?;
        if options.programs.follow_forks {
            probe.attach_tracepoints(&[names::PROG_PROCESS_FORK])?;
        }
        probe.programs = options.programs;
        Ok(probe)
    }

    /// Attaches the syscall counter (loaded when the [`ProgramSet`] asked for it); calls
    /// made before this are not counted.
    pub fn attach_syscall_counter(&mut self) -> Result<(), LoadError> {
        if !self.programs.syscalls {
            return Err(LoadError::Other(
                "attach `sys_enter`: it was not loaded for this command".to_owned(),
            ));
        }
        self.attach_tracepoints(&[names::PROG_SYS_ENTER])
    }

    /// Deletes every syscall count, with the counter detached (`probe watch`, once no
    /// thread is sampled): until it is attached again, reads skip the map.
    pub fn clear_syscall_counts(&mut self) -> Result<(), LoadError> {
        if self.syscall_counter_attached() || self.syscall_counts_empty {
            return Ok(());
        }
        let map = self.ebpf_map(names::SYSCALL_COUNTS)?;
        let mut counts: BpfHashMap<_, SyscallKey, u64> = BpfHashMap::try_from(map)
            .map_err(|err| LoadError::Other(format!("open the syscall map: {err}")))?;
        let keys: Vec<SyscallKey> = counts.keys().filter_map(Result::ok).collect();
        for key in keys {
            // Gone already: nothing to remove.
            let _ = counts.remove(&key);
        }
        self.syscall_counts_empty = true;
        Ok(())
    }

    /// Has the kernel count run time and runs of every BPF program for as long as this
    /// probe lives (`BPF_ENABLE_STATS`, which `kernel.bpf_stats_enabled` does for the
    /// whole machine): `probe watch`'s metrics report its programs' cost. Each program run
    /// then costs two clock reads more.
    pub fn keep_run_time_stats(&mut self) -> Result<(), LoadError> {
        if self.run_time_stats.is_none() {
            let fd = aya::sys::enable_stats(aya::sys::Stats::RunTime).map_err(|err| {
                LoadError::Other(format!(
                    "enable the BPF programs' run-time statistics: {err}"
                ))
            })?;
            self.run_time_stats = Some(fd);
        }
        Ok(())
    }

    /// Whether the kernel is counting the programs' run time: this probe asked it to
    /// ([`Probe::keep_run_time_stats`]) or `kernel.bpf_stats_enabled` is 1. Otherwise
    /// [`Probe::program_stats`] holds run counts with zero run time.
    pub fn run_time_counted(&self) -> bool {
        self.run_time_stats.is_some()
            || std::fs::read_to_string("/proc/sys/kernel/bpf_stats_enabled")
                .is_ok_and(|enabled| enabled.trim() == "1")
    }

    /// Stops counting syscalls (`probe watch`, between episodes); a no-op when the counter
    /// is not attached.
    pub fn detach_syscall_counter(&mut self) {
        self.detach_where(|link| matches!(link, Attachment::Tracepoint(name, _) if *name == names::PROG_SYS_ENTER));
    }

    /// Whether the syscall counter is attached.
    pub fn syscall_counter_attached(&self) -> bool {
        self.links
            .iter()
            .any(|link| matches!(link, Attachment::Tracepoint(name, _) if *name == names::PROG_SYS_ENTER))
    }

    /// Attaches the stack sampler at `frequency_hz` on every online CPU, unless it is
    /// attached already (`probe watch`, which samples on demand).
    pub fn attach_sampling(&mut self, frequency_hz: u64) -> Result<(), LoadError> {
        if self.sampling() {
            return Ok(());
        }
        self.attach_sampler(frequency_hz)
    }

    /// Whether the stack sampler is attached.
    pub fn sampling(&self) -> bool {
        self.links
            .iter()
            .any(|link| matches!(link, Attachment::Sampler(_)))
    }

    /// Detaches the stack sampler; a no-op when it is not attached.
    pub fn detach_sampling(&mut self) {
        self.detach_where(|link| matches!(link, Attachment::Sampler(_)));
    }

    /// Makes `tids` the hot threads (`probe watch`): from now on the sampler and the syscall
    /// counter record these threads only. At most [`probe_common::MAX_HOT_THREADS`] are kept; returns how
    /// many did not fit.
    pub fn set_hot_threads(&mut self, tids: &[u32]) -> Result<usize, LoadError> {
        let map = self.ebpf_map(names::HOT_THREADS)?;
        let mut hot: BpfHashMap<_, u32, u8> = BpfHashMap::try_from(map)
            .map_err(|err| LoadError::Other(format!("open the hot-thread map: {err}")))?;
        let old: Vec<u32> = hot.keys().filter_map(Result::ok).collect();
        for tid in old.into_iter().filter(|tid| !tids.contains(tid)) {
            // Gone already: nothing to remove.
            let _ = hot.remove(&tid);
        }
        let mut dropped = 0;
        for &tid in tids {
            if hot.insert(tid, 1, 0).is_err() {
                dropped += 1;
            }
        }
        Ok(dropped)
    }

    /// Deletes the run-time entries of `tids` (exited threads, once read), so the map does
    /// not fill up over a long `probe watch`.
    pub fn forget_threads(&mut self, tids: &[u32]) -> Result<(), LoadError> {
        let map = self.ebpf_map(names::THREAD_STATS)?;
        let mut stats: BpfHashMap<_, u32, ThreadStats> = BpfHashMap::try_from(map)
            .map_err(|err| LoadError::Other(format!("open the thread map: {err}")))?;
        for tid in tids {
            // Gone already: nothing to remove.
            let _ = stats.remove(tid);
        }
        Ok(())
    }

    /// Deletes the syscall counts of thread `tid` (`probe watch`, once they are reported).
    pub fn forget_syscalls(&mut self, tid: u32) -> Result<(), LoadError> {
        let map = self.ebpf_map(names::SYSCALL_COUNTS)?;
        let mut counts: BpfHashMap<_, SyscallKey, u64> = BpfHashMap::try_from(map)
            .map_err(|err| LoadError::Other(format!("open the syscall map: {err}")))?;
        let keys: Vec<SyscallKey> = counts
            .keys()
            .filter_map(Result::ok)
            .filter(|key| key.tid == tid)
            .collect();
        for key in keys {
            // Gone already: nothing to remove.
            let _ = counts.remove(&key);
        }
        Ok(())
    }

    /// Detaches the links `which` selects, the last attached first.
    fn detach_where(&mut self, which: impl Fn(&Attachment) -> bool) {
        let mut kept = Vec::with_capacity(self.links.len());
        while let Some(link) = self.links.pop() {
            if which(&link) {
                self.detach_link(link);
            } else {
                kept.push(link);
            }
        }
        kept.reverse();
        self.links = kept;
    }

    /// Adds a process to the kernel's filter while the programs run (a spawned command).
    pub fn add_target(&mut self, pid: u32) -> Result<(), LoadError> {
        self.fill_pid_filter(&[pid])
    }

    /// The processes in the kernel's filter now: the targets, and what they forked when
    /// forks are followed. Empty without a filter.
    pub fn target_pids(&self) -> Vec<u32> {
        let Ok(targets) = self.read_map(names::TARGET_PIDS, BpfHashMap::<_, u32, u8>::try_from)
        else {
            return Vec::new();
        };
        let mut pids: Vec<u32> = targets.keys().filter_map(Result::ok).collect();
        pids.sort_unstable();
        pids
    }

    /// Whether the kernel observes only the processes in its filter.
    pub fn filters_pids(&self) -> bool {
        self.filter_pids
    }

    /// Samples lost so far (ring buffer full), for status lines.
    pub fn samples_lost(&self) -> u64 {
        let Ok(counters) = self.counters() else {
            return 0;
        };
        let lost = counters.get(&(Counter::SamplesLost as u32), 0);
        lost.map_or(0, |values| values.iter().sum())
    }

    /// Opens the window: from now on the programs sample and account.
    pub fn start_window(&mut self) -> Result<(), LoadError> {
        self.window_start_ns = self.mark_window(CONTROL_WINDOW_START)?;
        Ok(())
    }

    /// Closes the window: nothing after the returned time (CLOCK_MONOTONIC ns) is accounted.
    pub fn end_window(&mut self) -> Result<u64, LoadError> {
        self.mark_window(CONTROL_WINDOW_END)
    }

    fn mark_window(&mut self, slot: u32) -> Result<u64, LoadError> {
        let now = monotonic_ns();
        self.set_control(slot, now)?;
        Ok(now)
    }

    fn set_control(&mut self, slot: u32, value: u64) -> Result<(), LoadError> {
        let map = self.ebpf_map(names::CONTROL)?;
        let mut control: Array<_, u64> = Array::try_from(map)
            .map_err(|err| LoadError::Other(format!("open the control map: {err}")))?;
        control
            .set(slot, value, 0)
            .map_err(|err| LoadError::Other(format!("write the control map: {err}")))
    }

    /// Tells `sys_enter` which argument of each syscall is a path, for sampled arguments.
    fn fill_syscall_path_args(&mut self) -> Result<(), LoadError> {
        let map = self.ebpf_map(names::SYSCALL_PATH_ARG)?;
        let mut slots: Array<_, u8> = Array::try_from(map)
            .map_err(|err| LoadError::Other(format!("open the path-argument map: {err}")))?;
        for nr in 0..probe_common::SYSCALL_NR_SLOTS {
            if let Some(KeyArg::Path(index)) = crate::syscall_names::key_arg(nr) {
                slots.set(nr, index as u8 + 1, 0).map_err(|err| {
                    LoadError::Other(format!("fill the path-argument map: {err}"))
                })?;
            }
        }
        Ok(())
    }

    fn fill_pid_filter(&mut self, pids: &[u32]) -> Result<(), LoadError> {
        let map = self.ebpf_map(names::TARGET_PIDS)?;
        let mut targets: BpfHashMap<_, u32, u8> = BpfHashMap::try_from(map)
            .map_err(|err| LoadError::Other(format!("open the pid filter map: {err}")))?;
        for &pid in pids {
            targets
                .insert(pid, 1, 0)
                .map_err(|err| LoadError::Other(format!("add pid {pid} to the filter: {err}")))?;
        }
        Ok(())
    }

    fn load_programs(&mut self, btf: &Btf, set: ProgramSet) -> Result<(), LoadError> {
        let optional = [
            (names::PROG_SYS_ENTER, set.syscalls),
            (names::PROG_PROCESS_FORK, set.follow_forks),
        ];
        let wanted = optional.iter().filter(|(_, wanted)| *wanted);
        let names = ALWAYS_ATTACHED
            .iter()
            .copied()
            .chain(wanted.map(|(name, _)| *name));
        for name in names {
            let program: &mut BtfTracePoint = self.program(name)?;
            program
                .load(name, btf)
                .map_err(|source| program_error(name, source))?;
        }
        let name = names::PROG_SAMPLE;
        let program: &mut PerfEvent = self.program(name)?;
        program.load().map_err(|source| program_error(name, source))
    }

    /// Loads `walk_python` and puts it in the sampler's tail-call slot, once: from then on
    /// the samples of threads in `PY_THREADS` get their Python frames. A failure is kept
    /// and returned again (the walk is not retried).
    pub fn load_python_walk(&mut self) -> Result<(), String> {
        match &self.python_walk {
            PythonWalk::Loaded => return Ok(()),
            PythonWalk::Failed(why) => return Err(why.clone()),
            PythonWalk::NotLoaded => {}
        }
        let loaded = self
            .insert_python_walk()
            .map_err(|err| format!("the kernel's Python frame walk is unavailable: {err}"));
        self.python_walk = match &loaded {
            Ok(()) => PythonWalk::Loaded,
            Err(why) => PythonWalk::Failed(why.clone()),
        };
        loaded
    }

    fn insert_python_switch_walk(&mut self, btf: &Btf) -> Result<(), LoadError> {
        self.insert_switch_tail_call(names::PROG_PY_WALK_SWITCH, TAIL_CALL_PY_WALK, btf)
    }

    fn insert_python_walk(&mut self) -> Result<(), LoadError> {
        self.insert_sample_tail_call(names::PROG_PY_WALK, TAIL_CALL_PY_WALK)?;
        // Only now does the sampler start looking threads up in `PY_THREADS`.
        self.set_control(CONTROL_PY_WALK_LOADED, 1)
    }

    /// Whether the table unwinder is in the sampler's slot.
    pub fn unwinder_loaded(&self) -> bool {
        self.unwinder_loaded
    }

    /// Loads the table unwinder and puts it in the sampler's slot for it.
    pub fn insert_unwinder(&mut self) -> Result<(), LoadError> {
        self.insert_sample_tail_call(names::PROG_UNWIND, TAIL_CALL_UNWIND)?;
        self.unwinder_loaded = true;
        Ok(())
    }

    /// Loads the table unwinder of off-CPU stacks and puts it in `sched_switch`'s slot.
    fn insert_switch_unwinder(&mut self, btf: &Btf) -> Result<(), LoadError> {
        self.insert_switch_tail_call(names::PROG_UNWIND_SWITCH, TAIL_CALL_UNWIND, btf)
    }

    /// Loads perf-event program `name` into `slot` of the sampler's tail calls.
    fn insert_sample_tail_call(&mut self, name: &'static str, slot: u32) -> Result<(), LoadError> {
        let program: &mut PerfEvent = self.program(name)?;
        program
            .load()
            .map_err(|source| program_error(name, source))?;
        let fd = owned_fd(name, program.fd())?;
        self.insert_tail_call(names::SAMPLE_TAIL_CALLS, slot, name, &fd)
    }

    /// Loads `sched_switch` program `name` into `slot` of `sched_switch`'s tail calls.
    fn insert_switch_tail_call(
        &mut self,
        name: &'static str,
        slot: u32,
        btf: &Btf,
    ) -> Result<(), LoadError> {
        let program: &mut BtfTracePoint = self.program(name)?;
        program
            .load(names::PROG_SCHED_SWITCH, btf)
            .map_err(|source| program_error(name, source))?;
        let fd = owned_fd(name, program.fd())?;
        self.insert_tail_call(names::SWITCH_TAIL_CALLS, slot, name, &fd)
    }

    /// Puts program `name` (loaded, `fd`) in `slot` of the program array `map`.
    fn insert_tail_call(
        &mut self,
        map: &str,
        slot: u32,
        name: &'static str,
        fd: &ProgramFd,
    ) -> Result<(), LoadError> {
        let map = self.ebpf_map(map)?;
        let mut slots: ProgramArray<_> = ProgramArray::try_from(map)
            .map_err(|err| LoadError::Other(format!("open the tail-call map: {err}")))?;
        slots
            .set(slot, fd, 0)
            .map_err(|err| LoadError::Other(format!("insert `{name}` as a tail call: {err}")))
    }

    fn attach_tracepoints(&mut self, names: &[&'static str]) -> Result<(), LoadError> {
        for &name in names {
            if name == names::PROG_SYS_ENTER {
                self.syscall_counts_empty = false;
            }
            let program: &mut BtfTracePoint = self.program(name)?;
            let link = program
                .attach()
                .map_err(|source| program_error(name, source))?;
            self.links.push(Attachment::Tracepoint(name, link));
        }
        Ok(())
    }

    fn attach_sampler(&mut self, frequency_hz: u64) -> Result<(), LoadError> {
        let cpus = self.online_cpus.clone();
        let name = names::PROG_SAMPLE;
        let program: &mut PerfEvent = self.program(name)?;
        let mut links = Vec::with_capacity(cpus.len());
        let attached = cpus.into_iter().try_for_each(|cpu| {
            let link = program.attach(
                PerfEventConfig::Software(SoftwareEvent::CpuClock),
                PerfEventScope::AllProcessesOneCpu { cpu },
                SamplePolicy::Frequency(frequency_hz),
                false,
            )?;
            links.push(Attachment::Sampler(link));
            Ok(())
        });
        // Those attached before a failure are detached with the rest.
        self.links.extend(links);
        attached.map_err(|source| program_error(name, source))
    }

    fn program<'a, T>(&'a mut self, name: &'static str) -> Result<&'a mut T, LoadError>
    where
        &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = ProgramError>,
    {
        let program = self
            .ebpf
            .program_mut(name)
            .ok_or_else(|| LoadError::Other(format!("find program `{name}` in the object")))?;
        program
            .try_into()
            .map_err(|source| program_error(name, source))
    }

    fn ebpf_map(&mut self, name: &str) -> Result<&mut aya::maps::Map, LoadError> {
        self.ebpf
            .map_mut(name)
            .ok_or_else(|| LoadError::Other(format!("find map `{name}` in the object")))
    }

    /// Detaches every program, the last attached first (the maps stay readable), so the
    /// final reads see a frozen state. The programs stay loaded until the probe drops.
    /// Idempotent.
    pub fn detach_all(&mut self) {
        while let Some(link) = self.links.pop() {
            self.detach_link(link);
        }
    }

    fn detach_link(&mut self, link: Attachment) {
        // An error means the link is already gone: nothing to detach.
        let _ = match link {
            Attachment::Sampler(link) => self
                .program::<PerfEvent>(names::PROG_SAMPLE)
                .map(|program| program.detach(link)),
            Attachment::Tracepoint(name, link) => self
                .program::<BtfTracePoint>(name)
                .map(|program| program.detach(link)),
        };
    }

    /// The kernel's own names for kernel addresses, in order: what `%ps` prints for each
    /// (`symbol`, `symbol [module]`, or `0x<address>` where no symbol covers it), or `None`
    /// where it failed or the name did not fit. Probe's own programs are named too, while
    /// they are loaded. Loads `name_kernel_addresses` on first use and runs it with
    /// `BPF_PROG_TEST_RUN`, `KERNEL_NAME_BATCH` addresses at a time.
    pub fn name_kernel_addresses(
        &mut self,
        addrs: &[u64],
    ) -> Result<Vec<Option<Vec<u8>>>, LoadError> {
        let name = names::PROG_NAME_KERNEL;
        if !self.kernel_namer_loaded {
            let program: &mut RawTracePoint = self.program(name)?;
            program
                .load()
                .map_err(|source| program_error(name, source))?;
            self.kernel_namer_loaded = true;
        }
        let mut names = Vec::with_capacity(addrs.len());
        for batch in addrs.chunks(KERNEL_NAME_BATCH as usize) {
            let mut options = RawTracePointRunOptions::new();
            options.args[..batch.len()].copy_from_slice(batch);
            let program: &mut RawTracePoint = self.program(name)?;
            program
                .test_run(options)
                .map_err(|source| program_error(name, source))?;
            let slots: Array<_, KernelName> =
                self.read_map(names::KERNEL_NAMES, Array::try_from)?;
            for (slot, &addr) in (0..).zip(batch) {
                let named = slots.get(&slot, 0).map_err(|err| {
                    LoadError::Other(format!("read the kernel's name of {addr:#x}: {err}"))
                })?;
                names.push(name_text(addr, &named));
            }
        }
        Ok(names)
    }

    /// Per-program kernel statistics (needs `kernel.bpf_stats_enabled=1` to be non-zero).
    pub fn program_stats(&self) -> Vec<ProgramStats> {
        PROGRAMS_IN_ORDER
            .iter()
            .filter_map(|name| {
                let info = self.ebpf.program(name)?.info().ok()?;
                Some(ProgramStats {
                    program: (*name).to_owned(),
                    run_time_ns: info.run_time().as_nanos() as u64,
                    run_count: info.run_count(),
                })
            })
            .collect()
    }

    /// Everything the kernel has aggregated so far, read in one go; the programs keep
    /// running (a snapshot) unless detached.
    pub fn read_aggregates(&self) -> Result<Aggregates, LoadError> {
        let read = |what: &str, err: &dyn std::fmt::Display| {
            LoadError::Other(format!("read {what}: {err}"))
        };
        let threads = match self.batch_read(names::THREAD_STATS, self.thread_stats()?)? {
            Some(threads) => threads,
            None => {
                let mut threads = Vec::new();
                for entry in self.thread_stats()?.iter() {
                    threads.push(entry.map_err(|err| read("thread stats", &err))?);
                }
                threads
            }
        };
        let mut syscalls = Vec::new();
        if !self.syscall_counts_empty {
            match self.batch_read(names::SYSCALL_COUNTS, self.syscall_counts()?)? {
                Some(counts) => syscalls = counts,
                None => {
                    for entry in self.syscall_counts()?.iter() {
                        syscalls.push(entry.map_err(|err| read("syscall counts", &err))?);
                    }
                }
            }
        }
        let caches = self.syscall_cache()?.get(&0, 0);
        let caches = caches.map_err(|err| read("the per-CPU syscall caches", &err))?;
        let cpus = self.cpu_state()?.get(&0, 0);
        let cpus = cpus.map_err(|err| read("per-CPU state", &err))?;
        Ok(Aggregates {
            threads,
            syscalls,
            syscall_caches: caches.iter().copied().collect(),
            cpus: cpus.iter().copied().collect(),
            window_start_ns: self.window_start_ns,
            loss: self.read_counters()?,
        })
    }

    fn read_counters(&self) -> Result<LossCounters, LoadError> {
        let counters = self.counters()?;
        let total = |counter: Counter| -> Result<u64, LoadError> {
            let values = counters
                .get(&(counter as u32), 0)
                .map_err(|err| LoadError::Other(format!("read counters: {err}")))?;
            Ok(values.iter().sum())
        };
        Ok(LossCounters {
            samples: total(Counter::Samples)?,
            samples_lost: total(Counter::SamplesLost)?,
            threads_dropped: total(Counter::ThreadsDropped)?,
            syscalls_dropped: total(Counter::SyscallsDropped)?,
            targets_dropped: total(Counter::TargetsDropped)?,
            off_cpu_dropped: total(Counter::OffCpuDropped)?,
            syscall_args_lost: total(Counter::SyscallArgsLost)?,
        })
    }

    /// The ring buffer of sampled syscall arguments.
    pub fn syscall_args(&mut self) -> &mut RingBuf<MapData> {
        &mut self.syscall_args
    }

    /// The ring buffer of stack samples.
    pub fn samples(&mut self) -> &mut RingBuf<MapData> {
        &mut self.samples
    }

    pub fn thread_stats(&self) -> Result<BpfHashMap<&MapData, u32, ThreadStats>, LoadError> {
        self.read_map(names::THREAD_STATS, BpfHashMap::try_from)
    }

    pub fn syscall_counts(&self) -> Result<BpfHashMap<&MapData, SyscallKey, u64>, LoadError> {
        self.read_map(names::SYSCALL_COUNTS, BpfHashMap::try_from)
    }

    pub fn syscall_cache(&self) -> Result<PerCpuArray<&MapData, SyscallCache>, LoadError> {
        self.read_map(names::SYSCALL_CACHE, PerCpuArray::try_from)
    }

    pub fn cpu_state(&self) -> Result<PerCpuArray<&MapData, CpuState>, LoadError> {
        self.read_map(names::CPU_STATE, PerCpuArray::try_from)
    }

    pub fn counters(&self) -> Result<PerCpuArray<&MapData, u64>, LoadError> {
        self.read_map(names::COUNTERS, PerCpuArray::try_from)
    }

    /// All of hash map `name` in a few batch lookups; `None` when the kernel cannot (the
    /// caller walks `typed` entry by entry). `typed` is the map opened with its key and
    /// value types, which checked their sizes against the map's.
    fn batch_read<K: Pod + Default, V: Pod + Default>(
        &self,
        name: &str,
        _typed: BpfHashMap<&MapData, K, V>,
    ) -> Result<Option<Vec<(K, V)>>, LoadError> {
        let Some(aya::maps::Map::HashMap(data)) = self.ebpf.map(name) else {
            return Ok(None);
        };
        batch::lookup_all(std::os::fd::AsFd::as_fd(data.fd()))
            .map_err(|err| LoadError::Other(format!("read map `{name}` in batches: {err}")))
    }

    fn read_map<'a, M, E: std::fmt::Display>(
        &'a self,
        name: &str,
        open: impl FnOnce(&'a aya::maps::Map) -> Result<M, E>,
    ) -> Result<M, LoadError> {
        open_map(&self.ebpf, name, open)
    }
}

/// Map `name` of `ebpf`, opened as `open` types it.
fn open_map<'a, M, E: std::fmt::Display>(
    ebpf: &'a Ebpf,
    name: &str,
    open: impl FnOnce(&'a aya::maps::Map) -> Result<M, E>,
) -> Result<M, LoadError> {
    let map = ebpf
        .map(name)
        .ok_or_else(|| LoadError::Other(format!("find map `{name}` in the object")))?;
    open(map).map_err(|err| LoadError::Other(format!("open map `{name}`: {err}")))
}

/// The text of one `KERNEL_NAMES` slot; `None` for address 0 (never named, so the slot
/// is stale), a failed `bpf_snprintf`, or a name cut short.
fn name_text(addr: u64, named: &KernelName) -> Option<Vec<u8>> {
    let fits =
        usize::try_from(named.needed).is_ok_and(|n| (1..=KERNEL_NAME_TEXT_BYTES).contains(&n));
    if addr == 0 || !fits {
        return None;
    }
    let text = &named.text[..named.needed as usize - 1];
    Some(text.to_vec())
}

impl Probe {
    /// Tells the kernel's Python walk the layout of process `pid`; also loads the walk,
    /// when this is the first Python process.
    pub fn add_python_process(&mut self, pid: u32, layout: &PyLayoutKernel) -> Result<(), String> {
        self.load_python_walk()?;
        let map = self
            .ebpf_map(names::PY_PROCS)
            .map_err(|err| err.to_string())?;
        let mut procs: BpfHashMap<_, u32, PyLayoutKernel> =
            BpfHashMap::try_from(map).map_err(|err| err.to_string())?;
        procs
            .insert(pid, layout, 0)
            .map_err(|err| format!("failed to add it to the kernel's Python map: {err}"))
    }

    /// Tells the kernel's Python walk where thread `tid`'s `PyThreadState` is.
    pub fn add_python_thread(&mut self, tid: u32, tstate: u64) -> Result<(), String> {
        let map = self
            .ebpf_map(names::PY_THREADS)
            .map_err(|err| err.to_string())?;
        let mut threads: BpfHashMap<_, u32, u64> =
            BpfHashMap::try_from(map).map_err(|err| err.to_string())?;
        threads
            .insert(tid, tstate, 0)
            .map_err(|err| format!("failed to add thread {tid} to the kernel's Python map: {err}"))
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        self.detach_all();
    }
}

/// The notice for a table unwinder that did not load: kernels before 5.17 have no
/// `bpf_loop`, which the verifier then names.
fn unwinder_notice(err: &LoadError) -> String {
    let text = err.to_string();
    if text.contains("bpf_loop") || text.contains("unknown func") {
        format!(
            "native stacks use frame pointers only: this kernel has no bpf_loop (Linux 5.17+), \
             which the .eh_frame unwinder needs ({text})"
        )
    } else {
        format!(
            "native stacks use frame pointers only: the .eh_frame unwinder did not load ({text})"
        )
    }
}

/// Ring buffer size for the sampling rate: room for half a second of samples from every
/// CPU at the largest record size (userspace drains it every 100 ms), at least 256 KiB, at
/// most 64 MiB. A record holds only its valid frames, so typical ones are a fraction of
/// that size and the ring holds seconds of them: margin for a drain delayed by Python
/// discovery.
fn sample_ring_bytes(cpus: usize, frequency_hz: u64) -> u32 {
    const MIN: u64 = 256 << 10;
    const MAX: u64 = 64 << 20;
    let per_second = cpus as u64 * frequency_hz * SAMPLE_MAX_BYTES as u64;
    (per_second / 2).clamp(MIN, MAX).next_power_of_two() as u32
}

/// An owned copy of a loaded program's fd (the program stays borrowed otherwise).
fn owned_fd(
    program: &'static str,
    fd: Result<&ProgramFd, ProgramError>,
) -> Result<ProgramFd, LoadError> {
    let fd = fd.map_err(|source| program_error(program, source))?;
    fd.try_clone()
        .map_err(|err| LoadError::Other(format!("duplicate the fd of `{program}`: {err}")))
}

fn program_error(program: &'static str, source: ProgramError) -> LoadError {
    // A verifier rejection also fails with EACCES, but with a log saying why: not a
    // permission problem.
    if let ProgramError::LoadError {
        io_error,
        verifier_log,
    } = source
    {
        return match verifier_last_line(&verifier_log.to_string()) {
            Some(last_line) => LoadError::Verifier {
                program,
                errno: io_error,
                last_line,
            },
            None => program_error_without_log(
                program,
                ProgramError::LoadError {
                    io_error,
                    verifier_log,
                },
            ),
        };
    }
    program_error_without_log(program, source)
}

/// The last line of a verifier log that says why, control characters escaped (the
/// statistics lines that close the log are skipped); `None` when the log is empty (the load
/// failed before the verifier ran, e.g. for lack of privileges).
fn verifier_last_line(log: &str) -> Option<String> {
    const STATISTICS: [&str; 3] = ["processed ", "verification time", "stack depth"];
    let line = log.lines().map(str::trim).rfind(|line| {
        !line.is_empty() && !STATISTICS.iter().any(|prefix| line.starts_with(prefix))
    })?;
    let escape = |c: char| match c.is_control() {
        true => c.escape_default().to_string(),
        false => c.to_string(),
    };
    Some(line.chars().map(escape).collect())
}

fn program_error_without_log(program: &'static str, source: ProgramError) -> LoadError {
    if let Some(err) = out_of_files(&source, "loading or attaching the kernel programs") {
        return err;
    }
    if is_permission_error(&source) {
        return LoadError::Permission {
            action: format!("loading or attaching `{program}`"),
        };
    }
    LoadError::Program { program, source }
}

fn classify_object_error(err: EbpfError) -> LoadError {
    if let Some(err) = out_of_files(&err, "creating BPF maps") {
        return err;
    }
    if is_permission_error(&err) {
        return LoadError::Permission {
            action: "creating BPF maps".to_owned(),
        };
    }
    LoadError::Object(err)
}

/// Reading the BTF needs a file descriptor too: running out of them is not missing BTF.
fn btf_error(err: BtfError) -> LoadError {
    out_of_files(&err, "reading the kernel BTF").unwrap_or_else(|| LoadError::Btf(err.to_string()))
}

/// The error to report when `err`'s chain bottoms out in EMFILE (this process's limit)
/// or ENFILE (the system's): every map, program and link takes a file descriptor.
fn out_of_files(
    err: &(dyn std::error::Error + 'static),
    action: &'static str,
) -> Option<LoadError> {
    match errno_in_chain(err, &[libc::EMFILE, libc::ENFILE])? {
        libc::EMFILE => Some(LoadError::TooManyOpenFiles { action }),
        _ => Some(LoadError::SystemOutOfFiles { action }),
    }
}

/// Whether an error chain bottoms out in EPERM / EACCES.
fn is_permission_error(err: &(dyn std::error::Error + 'static)) -> bool {
    errno_in_chain(err, &[libc::EPERM, libc::EACCES]).is_some()
}

/// The first of `errnos` that an I/O error in `err`'s chain carries.
fn errno_in_chain(err: &(dyn std::error::Error + 'static), errnos: &[i32]) -> Option<i32> {
    let mut current = Some(err);
    while let Some(err) = current {
        let errno = err
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::raw_os_error);
        if let Some(errno) = errno.filter(|errno| errnos.contains(errno)) {
            return Some(errno);
        }
        current = err.source();
    }
    None
}

/// Kernels >= 5.11 charge BPF memory to the cgroup, so a memlock limit that can't be raised
/// (CAP_SYS_RESOURCE dropped, as in containers) is not an error; older kernels would fail to
/// create maps, and that failure is reported where it happens.
fn raise_memlock_limit() {
    let unlimited = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: `unlimited` is a valid rlimit; failure is reported through the return value.
    let _ = unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &unlimited) };
}

/// probe holds every mapped file of the processes it samples open until it names their
/// frames (so a binary replaced or deleted meanwhile is still read as it was): a systemwide
/// recording of a busy machine can need more than the usual soft limit of 1024. The soft
/// limit is raised to the hard one, which the user set and probe respects.
fn raise_open_files_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid, writable rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return;
    }
    limit.rlim_cur = limit.rlim_max;
    // SAFETY: `limit` is a valid rlimit; a failure leaves the limit as it was.
    let _ = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifier_logs_give_their_reason() {
        let log = "0: (bf) r6 = r1\n\
                   7: (85) call bpf_probe_read_user#112\n\
                   R2 unbounded memory access, use 'var &= const'\n\
                   processed 8 insns (limit 1000000) max_states_per_insn 0 total_states 0\n\
                   verification time 12 usec\n\
                   stack depth 8\n\n";
        assert_eq!(
            verifier_last_line(log).as_deref(),
            Some("R2 unbounded memory access, use 'var &= const'")
        );
        assert_eq!(verifier_last_line(""), None);
        assert_eq!(verifier_last_line("\n  \n"), None);
        assert_eq!(
            verifier_last_line("bad\x1b[2J").as_deref(),
            Some("bad\\u{1b}[2J")
        );
    }

    #[test]
    fn running_out_of_file_descriptors_says_so() {
        let file_error = |errno| BtfError::FileError {
            path: "/sys/kernel/btf/vmlinux".into(),
            error: std::io::Error::from_raw_os_error(errno),
        };
        let err = btf_error(file_error(libc::EMFILE));
        assert!(matches!(err, LoadError::TooManyOpenFiles { .. }), "{err}");
        assert!(err.to_string().contains("ulimit -n"), "{err}");
        let err = btf_error(file_error(libc::ENFILE));
        assert!(matches!(err, LoadError::SystemOutOfFiles { .. }), "{err}");
        let err = btf_error(file_error(libc::ENOENT));
        assert!(matches!(err, LoadError::Btf(_)), "{err}");
        let map = |errno| {
            EbpfError::MapError(aya::maps::MapError::CreateError {
                name: "CONTROL".into(),
                io_error: std::io::Error::from_raw_os_error(errno),
            })
        };
        let err = classify_object_error(map(libc::EMFILE));
        assert!(matches!(err, LoadError::TooManyOpenFiles { .. }), "{err}");
        let err = classify_object_error(map(libc::EPERM));
        assert!(matches!(err, LoadError::Permission { .. }), "{err}");
    }

    #[test]
    fn ring_buffer_scales_with_cpus_and_rate() {
        // The largest sample is ~4 KiB (full native stacks and Python frames).
        assert_eq!(sample_ring_bytes(2, 99), 512 << 10);
        assert_eq!(sample_ring_bytes(16, 999), 32 << 20);
        assert_eq!(sample_ring_bytes(1024, 10_000), 64 << 20);
        for (cpus, hz) in [(1, 1), (3, 99), (7, 1234)] {
            assert!(sample_ring_bytes(cpus, hz).is_power_of_two());
        }
    }
}
