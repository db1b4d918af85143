//! Records shared by the kernel programs (probe-ebpf) and the loader (probe-user).
//!
//! Every type here is `#[repr(C)]` with no implicit padding, so both sides agree on the
//! layout byte for byte and userspace can read map values without guessing. Flags are `u32`,
//! never `bool`.
#![no_std]

use core::mem::size_of;

/// Deepest stack (in frames) recorded per side of a sample. The kernel's own limit for
/// `bpf_get_stack` is `PERF_MAX_STACK_DEPTH` = 127.
pub const MAX_STACK_DEPTH: usize = 127;

/// Most processes `--pid` can name.
pub const MAX_TARGET_PIDS: u32 = 1024;

/// Threads whose scheduler statistics are kept during one window.
pub const MAX_THREADS: u32 = 32_768;

/// Threads `probe watch` samples and counts syscalls of at once (`HOT_THREADS`).
pub const MAX_HOT_THREADS: u32 = 1024;

/// (thread, syscall number) pairs counted during one window.
pub const MAX_SYSCALL_KEYS: u32 = 131_072;

/// Size of the ring buffer carrying stack samples to userspace, as compiled (bytes, power
/// of two); the loader sizes it to the sampling rate at load time.
pub const SAMPLE_RING_BYTES: u32 = 256 << 10;

/// Bytes of the ring buffer of sampled syscall arguments (`SYSCALL_ARGS`).
pub const SYSCALL_ARGS_RING_BYTES: u32 = 256 << 10;

/// Syscall numbers `SYSCALL_PATH_ARG` has a slot for (x86-64's are below 512).
pub const SYSCALL_NR_SLOTS: u32 = 512;

/// Bytes of a path argument kept per sampled syscall (the kernel cuts longer ones).
pub const SYSCALL_PATH_BYTES: usize = 96;

/// The arguments of one sampled syscall: every `GLOBAL_SYSCALL_ARG_EVERY`-th call that
/// `sys_enter` counts on a CPU. The six argument registers as they were, and the path a
/// path argument points at (see `SYSCALL_PATH_ARG`), read at entry.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct SyscallArgs {
    pub tid: u32,
    pub tgid: u32,
    pub nr: u32,
    /// Bytes of `path` the kernel read, the NUL included (0: no path argument or it could
    /// not be read).
    pub path_len: u32,
    pub args: [u64; 6],
    pub path: [u8; SYSCALL_PATH_BYTES],
}

/// Names of the maps and programs, so the two sides cannot drift apart.
pub mod names {
    pub const SAMPLES: &str = "SAMPLES";
    pub const THREAD_STATS: &str = "THREAD_STATS";
    pub const SYSCALL_COUNTS: &str = "SYSCALL_COUNTS";
    /// Ring buffer of [`super::SyscallArgs`].
    pub const SYSCALL_ARGS: &str = "SYSCALL_ARGS";
    /// Array, syscall number -> 1 + the index of its path argument (0: none).
    pub const SYSCALL_PATH_ARG: &str = "SYSCALL_PATH_ARG";
    pub const CPU_STATE: &str = "CPU_STATE";
    pub const COUNTERS: &str = "COUNTERS";
    pub const TARGET_PIDS: &str = "TARGET_PIDS";
    pub const CONTROL: &str = "CONTROL";
    pub const SYSCALL_CACHE: &str = "SYSCALL_CACHE";
    pub const PY_PROCS: &str = "PY_PROCS";
    pub const PY_THREADS: &str = "PY_THREADS";
    pub const SAMPLE_SCRATCH: &str = "SAMPLE_SCRATCH";
    pub const SAMPLE_TAIL_CALLS: &str = "SAMPLE_TAIL_CALLS";
    pub const SWITCH_TAIL_CALLS: &str = "SWITCH_TAIL_CALLS";
    pub const KERNEL_NAMES: &str = "KERNEL_NAMES";
    pub const UNWIND_ROWS: &str = "UNWIND_ROWS";
    pub const UNWIND_PAGES: &str = "UNWIND_PAGES";
    pub const UNWIND_MAPPINGS: &str = "UNWIND_MAPPINGS";
    pub const UNWIND_FILES: &str = "UNWIND_FILES";
    pub const UNWIND_PROCS: &str = "UNWIND_PROCS";
    /// `probe watch`: the threads whose stacks and syscalls are recorded.
    pub const HOT_THREADS: &str = "HOT_THREADS";

    pub const PROG_SAMPLE: &str = "sample_stack";
    pub const PROG_SCHED_SWITCH: &str = "sched_switch";
    pub const PROG_PROCESS_EXIT: &str = "sched_process_exit";
    pub const PROG_SYS_ENTER: &str = "sys_enter";
    /// Follows forks of observed processes (`probe record -- COMMAND`).
    pub const PROG_PROCESS_FORK: &str = "sched_process_fork";
    /// Tells userspace that an observed process exec'd.
    pub const PROG_PROCESS_EXEC: &str = "sched_process_exec";
    /// `sched_switch`'s Python frame walk for off-CPU stacks, reached by a tail call.
    pub const PROG_PY_WALK_SWITCH: &str = "walk_python_switch";
    /// `sample_stack`'s Python frame walk, reached by a tail call (never attached).
    pub const PROG_PY_WALK: &str = "walk_python";
    /// The table unwinder, tail called by `sample_stack` (never attached).
    pub const PROG_UNWIND: &str = "unwind_user_stack";
    /// `sched_switch`'s table unwinder for off-CPU stacks, reached by a tail call.
    pub const PROG_UNWIND_SWITCH: &str = "unwind_switch_stack";
    /// Names kernel addresses for the report; run with `BPF_PROG_TEST_RUN`, never attached.
    pub const PROG_NAME_KERNEL: &str = "name_kernel_addresses";
    /// `probe dump`: copies the saved user registers of every thread of a process; run
    /// with `BPF_PROG_TEST_RUN`, never attached.
    pub const PROG_TASK_REGISTERS: &str = "read_task_registers";
    /// Its results: tid -> [`super::TaskRegisters`].
    pub const TASK_REGISTERS: &str = "TASK_REGISTERS";
    /// Its summary of the last run ([`super::TaskWalk`], one slot).
    pub const TASK_WALK: &str = "TASK_WALK";

    /// Load-time global (`EbpfLoader::override_global`).
    pub const GLOBAL_FILTER_PIDS: &str = "FILTER_PIDS";
    /// Load-time global: byte offset of `tgid` in the kernel's `struct task_struct`, read
    /// from its BTF (0: unknown, forks are not followed).
    pub const GLOBAL_TASK_TGID_OFFSET: &str = "TASK_TGID_OFFSET";
    /// Load-time global: non-zero makes `sched_switch` record off-CPU stacks.
    pub const GLOBAL_OFF_CPU_STACKS: &str = "OFF_CPU_STACKS";
    /// Load-time global: byte offset of `pid` (the thread id) in `struct task_struct` (0:
    /// unknown): `sched_switch` then notes which thread each CPU runs (`CpuState`).
    pub const GLOBAL_TASK_PID_OFFSET: &str = "TASK_PID_OFFSET";
    /// Load-time global: non-zero (`probe watch`) records stack samples and syscalls of the
    /// threads in `HOT_THREADS` only.
    pub const GLOBAL_HOT_ONLY: &str = "HOT_ONLY";
    /// Load-time global: non-zero (`probe watch` with continuous profiling) samples the
    /// stacks of every thread even with `HOT_ONLY` set; syscalls stay hot threads' only.
    pub const GLOBAL_PROFILE_ALL: &str = "PROFILE_ALL";
    /// Load-time global: `sys_enter` samples the arguments of every N-th syscall it counts
    /// on a CPU (a power of two; 0: none).
    pub const GLOBAL_SYSCALL_ARG_EVERY: &str = "SYSCALL_ARG_EVERY";
}

/// Index in the `CONTROL` array of the CLOCK_MONOTONIC time the window opened (0: not
/// yet). Written by userspace once every program is attached; nothing is accounted before it.
pub const CONTROL_WINDOW_START: u32 = 0;
/// Index in the `CONTROL` array of the time the window closed (0: still open). Run time is
/// accounted up to it, so detaching afterwards adds nothing.
pub const CONTROL_WINDOW_END: u32 = 1;
/// Index in the `CONTROL` array of a flag: non-zero once `walk_python` is in the sampler's
/// tail-call slot. Until then the sampler skips its `PY_THREADS` lookup (a hash lookup, cold
/// at 99 Hz) for every sample.
pub const CONTROL_PY_WALK_LOADED: u32 = 2;
/// Slots in the `CONTROL` array.
pub const CONTROL_SLOTS: u32 = 3;

/// `SampleHeader::flags`: `bpf_get_stack` failed for the user stack (the sample has none).
pub const SAMPLE_USER_STACK_ERROR: u32 = 1 << 0;
/// `SampleHeader::flags`: `bpf_get_stack` failed for the kernel stack.
pub const SAMPLE_KERNEL_STACK_ERROR: u32 = 1 << 1;

/// `SampleHeader::flags`: the thread has a Python thread state and its Python frames were
/// walked: the record holds them (possibly none).
pub const SAMPLE_PY_WALKED: u32 = 1 << 2;
/// `SampleHeader::flags`: the Python walk stopped before the outermost frame (depth bound
/// hit, a frame linking to itself, or a read failed mid-chain).
pub const SAMPLE_PY_TRUNCATED: u32 = 1 << 3;

/// The start of one on-CPU stack sample in the `SAMPLES` ring buffer. The record is this
/// header followed by exactly the valid frames, each list innermost first and nothing
/// after them: `kernel_frames` kernel addresses (`u64`), `user_frames` user addresses
/// (`u64`), then `py_frames` [`PyFrameRecord`]s, [`sample_record_bytes`] in all.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SampleHeader {
    pub tgid: u32,
    pub tid: u32,
    pub cpu: u32,
    pub flags: u32,
    /// `bpf_ktime_get_ns` (CLOCK_MONOTONIC) at the sample.
    pub ktime_ns: u64,
    /// Kernel frames that follow the header. Zero when the sample hit user mode.
    pub kernel_frames: u32,
    /// User frames that follow the kernel frames.
    pub user_frames: u32,
    /// Python frames that follow the user frames (see `SAMPLE_PY_WALKED`).
    pub py_frames: u32,
    /// What the record is: one of the `RECORD_*` kinds.
    pub kind: u32,
    /// 1 + the number of the syscall the thread was in, from the registers it entered the
    /// kernel with (on-CPU samples taken in kernel mode, and off-CPU stacks); 0 when it was
    /// not in one (user mode, an interrupt or exception, a kernel thread).
    pub syscall: u32,
    /// Always 0: keeps the header a multiple of 8 bytes without padding.
    pub reserved: u32,
}

/// [`SampleHeader::kind`]: an on-CPU stack sample.
pub const RECORD_SAMPLE: u32 = 0;
/// [`SampleHeader::kind`]: the process `tgid` exec'd at `ktime_ns` (no frames): its
/// mappings and interpreter are new from then on.
pub const RECORD_EXEC: u32 = 1;
/// [`SampleHeader::kind`]: the stack thread `tid` had when it left the CPU to block at
/// `ktime_ns` (`record --off-cpu`).
pub const RECORD_OFF_CPU: u32 = 2;
/// [`SampleHeader::kind`]: thread `tid`, which blocked with the latest `RECORD_OFF_CPU`
/// stack, was back on a CPU at `ktime_ns` (no frames).
pub const RECORD_OFF_CPU_END: u32 = 3;

/// Bytes of a sample record with these frame counts.
pub const fn sample_record_bytes(
    kernel_frames: usize,
    user_frames: usize,
    py_frames: usize,
) -> usize {
    size_of::<SampleHeader>()
        + (kernel_frames + user_frames) * size_of::<u64>()
        + py_frames * size_of::<PyFrameRecord>()
}

/// Most user frames a record holds: the table unwinder's limit (the frame-pointer walk's,
/// [`MAX_STACK_DEPTH`], is one less).
pub const MAX_USER_FRAMES: usize = UNWIND_MAX_FRAMES;

/// The largest sample record: full native stacks and [`PY_MAX_FRAMES`] Python frames.
pub const SAMPLE_MAX_BYTES: usize =
    sample_record_bytes(MAX_STACK_DEPTH, MAX_USER_FRAMES, PY_MAX_FRAMES);

/// Words in [`SampleScratch::words`]: a power of two that holds the largest record's frames
/// even where the kernel side bounds its indexes with masks (kernel + user frames masked to
/// 255 words, a Python frame's index to 127).
pub const SAMPLE_SCRATCH_WORDS: usize = 512;

/// Where the sampler assembles one record (the per-CPU `SAMPLE_SCRATCH`, cache-hot) before
/// copying its valid bytes, [`sample_record_bytes`] from the start, to the ring buffer:
/// `words` holds the kernel frames, the user frames right after them, then the Python
/// frames (two words each), as the record does.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct SampleScratch {
    pub header: SampleHeader,
    pub words: [u64; SAMPLE_SCRATCH_WORDS],
}

const _: () = {
    assert!(MAX_STACK_DEPTH + MAX_USER_FRAMES <= 255);
    assert!(MAX_STACK_DEPTH <= MAX_USER_FRAMES);
    assert!(256 + 2 * PY_MAX_FRAMES <= SAMPLE_SCRATCH_WORDS);
    assert!(SAMPLE_MAX_BYTES <= size_of::<SampleScratch>());
};

/// Slot of `walk_python` in the `SAMPLE_TAIL_CALLS` program array: `sample_stack` tail
/// calls it for threads in `PY_THREADS`. Userspace fills it only once a Python process is
/// in scope, so the sampler itself verifies (and attaches) quickly.
pub const TAIL_CALL_PY_WALK: u32 = 0;
/// Slot of `unwind_user_stack` in `SAMPLE_TAIL_CALLS`: `sample_stack` tail calls it for
/// processes with unwind tables; it unwinds the user stack, then goes on as the sampler
/// would (the Python walk, or the record out).
pub const TAIL_CALL_UNWIND: u32 = 1;
/// Slots in `SAMPLE_TAIL_CALLS`.
pub const TAIL_CALL_SLOTS: u32 = 2;

/// Deepest Python stack (in frames, shims not counted) recorded per sample.
pub const PY_MAX_FRAMES: usize = 128;
/// Most frame links the kernel follows per sample, counting skipped shim frames.
pub const PY_MAX_STEPS: usize = 2 * PY_MAX_FRAMES;
/// Python processes whose layout the kernel holds (`PY_PROCS`).
pub const PY_MAX_PROCS: u32 = 1024;
/// Python threads whose thread state the kernel knows (`PY_THREADS`).
pub const PY_MAX_THREADS: u32 = 16_384;
/// Most bytes of one frame struct the kernel reads per frame, in one read: the span from the
/// first to the last field it needs (see [`PyLayoutKernel::frame_read_start`]).
pub const PY_FRAME_READ_BYTES: u32 = 128;
/// [`PyLayoutKernel`] value of an offset the version does not have.
pub const PY_ABSENT: u32 = u32::MAX;

/// What a frame's instruction field holds (`PyLayoutKernel::instr_kind`), and so how the
/// kernel turns it into a bytecode byte offset.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PyInstrKind {
    /// `int f_lasti`, a byte offset (3.8–3.9).
    LastiBytes = 0,
    /// `int f_lasti`, in 2-byte code units (3.10).
    LastiCodeUnits = 1,
    /// `_Py_CODEUNIT *prev_instr` (3.11–3.12).
    PrevInstrPtr = 2,
    /// `_Py_CODEUNIT *instr_ptr` (3.13).
    InstrPtr = 3,
}

/// The offsets the kernel's Python frame walk needs, per process (`PY_PROCS`, keyed by
/// tgid). Built in userspace from the full layout; frame field offsets are relative to the
/// start of the frame struct, and all lie within
/// `frame_read_start .. frame_read_start + frame_read_len`, which is read in one go.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PyLayoutKernel {
    /// `PyThreadState.frame` / `.cframe` / `.current_frame`.
    pub tstate_frame: u32,
    /// `_PyCFrame.current_frame` (3.11–3.12, the second hop), else [`PY_ABSENT`].
    pub cframe_current_frame: u32,
    /// First byte of the frame struct read per frame (a multiple of 8).
    pub frame_read_start: u32,
    /// Bytes read per frame (at most [`PY_FRAME_READ_BYTES`]).
    pub frame_read_len: u32,
    /// `f_back` / `previous` (8 bytes, 8-aligned).
    pub frame_previous: u32,
    /// `f_code` / `f_executable` (8 bytes, 8-aligned).
    pub frame_code: u32,
    /// `f_lasti` (4 bytes) or `prev_instr` / `instr_ptr` (8 bytes), see `instr_kind`.
    pub frame_instr: u32,
    /// A [`PyInstrKind`] value.
    pub instr_kind: u32,
    /// `_PyInterpreterFrame.owner` (one byte), or [`PY_ABSENT`] when shims need no check.
    pub frame_owner: u32,
    /// The owner value of a shim frame (`FRAME_OWNED_BY_CSTACK`, 3.12+).
    pub owned_by_cstack: u32,
    /// `PyCodeObject.co_code_adaptive` (3.11+), else 0.
    pub code_code_adaptive: u32,
    /// `_PyInterpreterFrame.is_entry` (one byte, 3.11 only), else [`PY_ABSENT`].
    pub frame_is_entry: u32,
}

/// One Python frame as the kernel records it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PyFrameRecord {
    /// Address of the `PyCodeObject`.
    pub code: u64,
    /// Byte offset of the current instruction in the code's bytecode.
    pub offset: u32,
    /// `PY_FRAME_*` bits.
    pub flags: u32,
}

/// `PyFrameRecord::flags`: this frame is the outermost one run by its call of the eval loop
/// (`_PyEval_EvalFrameDefault`): the next recorded frame, if any, belongs to another call,
/// further out on the native stack. Every frame on 3.8–3.10; frames with `is_entry` on
/// 3.11; frames just inside an entry shim on 3.12+.
pub const PY_FRAME_CALL_ENTRY: u32 = 1;

/// Per-thread scheduler statistics (`THREAD_STATS`, keyed by tid).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ThreadStats {
    /// Nanoseconds on CPU, from completed runs that ended with a `sched_switch`.
    pub on_cpu_ns: u64,
    /// Switched out while not runnable (it blocked or slept).
    pub voluntary_switches: u64,
    /// Switched out while still runnable (preempted).
    pub involuntary_switches: u64,
    pub tgid: u32,
    /// Non-zero once `sched_process_exit` fired for this thread.
    pub exited: u32,
    /// `comm` of the thread the first time it was seen (NUL padded).
    pub comm: [u8; 16],
}

/// Addresses `name_kernel_addresses` names per run: a raw tracepoint's test run passes it
/// at most 12 arguments, one address each (0: no address).
pub const KERNEL_NAME_BATCH: u32 = 12;
/// Room for one name: the kernel's longest symbol name (`KSYM_NAME_LEN`, 512) plus the
/// ` [module]` that follows a module's.
pub const KERNEL_NAME_TEXT_BYTES: usize = 600;

/// `read_task_registers`' test-run arguments, by index: the process whose threads to read,
/// then the byte offsets (from the kernel's BTF) of the fields it follows to find them.
pub mod task_walk_args {
    /// The tgid whose threads are read.
    pub const TGID: usize = 0;
    /// `task_struct.tasks`: the list of every thread-group leader.
    pub const TASKS: usize = 1;
    /// `task_struct.group_leader`.
    pub const GROUP_LEADER: usize = 2;
    /// `task_struct.signal`.
    pub const SIGNAL: usize = 3;
    /// `signal_struct.thread_head`: the list of a group's threads ...
    pub const THREAD_HEAD: usize = 4;
    /// ... linked through `task_struct.thread_node`.
    pub const THREAD_NODE: usize = 5;
    /// `task_struct.pid` (the thread id).
    pub const PID: usize = 6;
    /// `task_struct.tgid`.
    pub const TGID_FIELD: usize = 7;
    /// `task_struct.stack`: the bottom of the thread's kernel stack.
    pub const STACK: usize = 8;
    /// How many arguments there are.
    pub const COUNT: usize = 9;
}

/// Most threads of one process `read_task_registers` copies registers of.
pub const TASK_REGISTERS_MAX: u32 = 16_384;
/// Most thread-group leaders it passes looking for the process.
pub const TASK_WALK_MAX_PROCESSES: u32 = 1 << 17;
/// Words copied from the top of a kernel stack: where x86-64 saves a thread's user
/// registers on entry (`struct pt_regs`, 21 words, below up to 2 words of padding).
pub const TASK_STACK_TOP_WORDS: usize = 24;
/// The kernel stack sizes whose tops are copied (x86-64: 16 KiB, 32 KiB with KASAN).
pub const TASK_STACK_SIZES: [u64; 2] = [16 << 10, 32 << 10];

/// One thread's saved user registers, as `read_task_registers` found them: the top words
/// of its kernel stack for each of [`TASK_STACK_SIZES`]. Userspace picks the copy and the
/// padding at which the `pt_regs` agree with what /proc/TID/syscall says of the thread
/// (its stack pointer and PC), so a wrong guess of the layout shows no registers rather
/// than wrong ones.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct TaskRegisters {
    pub tid: u32,
    /// Bit `i`: the top of the stack for `TASK_STACK_SIZES[i]` was read.
    pub read: u32,
    pub tops: [[u64; TASK_STACK_TOP_WORDS]; TASK_STACK_SIZES.len()],
}

/// What the last run of `read_task_registers` did.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TaskWalk {
    /// Non-zero: the process was found.
    pub found: u32,
    /// Thread-group leaders passed on the way.
    pub processes: u32,
    /// Threads of the process seen, and how many of them were stored.
    pub threads: u32,
    pub stored: u32,
    /// A kernel read failed: the walk stopped there.
    pub failed: u32,
    /// The walk ended before the end of a list (its bound).
    pub cut: u32,
}

/// One slot of `KERNEL_NAMES`: what the kernel's `%ps` printed for an address.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelName {
    /// `bpf_snprintf`'s result: the bytes `%ps` needed, its NUL included (more than `text`
    /// holds when the name was cut), or a negative errno.
    pub needed: i64,
    /// `symbol`, `symbol [module]`, or `0x<address>` for an address no symbol covers;
    /// NUL-terminated.
    pub text: [u8; KERNEL_NAME_TEXT_BYTES],
}

/// Key of `SYSCALL_COUNTS`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SyscallKey {
    pub tid: u32,
    pub nr: u32,
    /// The CPU whose cache flushed these calls: each key has a single writer, so the kernel
    /// side needs no atomics (userspace sums over CPUs).
    pub cpu: u32,
    pub _pad: u32,
}

/// Entries in each CPU's [`SyscallCache`].
pub const SYSCALL_CACHE_WAYS: usize = 4;

/// Per-CPU cache of recent (thread, syscall) counts (`SYSCALL_CACHE`). A thread in a
/// syscall storm repeats a few syscalls, so most calls only bump a per-CPU counter here and
/// never touch the `SYSCALL_COUNTS` hash map; an entry is added to the map when it is
/// evicted, and userspace adds what is still pending at the window's end.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyscallCache {
    /// Each entry's `SyscallCache::key` (thread and syscall number in one word, so a hit is
    /// one comparison).
    pub key: [u64; SYSCALL_CACHE_WAYS],
    /// Calls not yet added to `SYSCALL_COUNTS` (0: the entry is free).
    pub pending: [u64; SYSCALL_CACHE_WAYS],
    /// The entry to evict next (round robin).
    pub next_victim: u32,
    /// Syscalls counted on this CPU (wrapping), for sampling their arguments.
    pub arg_ticks: u32,
}

impl SyscallCache {
    /// The entry key of syscall `nr` made by thread `tid`.
    #[inline(always)]
    pub const fn key(tid: u32, nr: u32) -> u64 {
        ((tid as u64) << 32) | nr as u64
    }

    /// (tid, syscall number) of an entry key.
    #[inline(always)]
    pub const fn split(key: u64) -> (u32, u32) {
        ((key >> 32) as u32, key as u32)
    }
}

/// Per-CPU bookkeeping (`CPU_STATE`): lets userspace account the run that is still in
/// progress when the window closes, without reading any kernel struct field.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuState {
    /// Time of the latest `sched_switch` on this CPU (0: none yet).
    pub last_switch_ns: u64,
    /// Time of the latest stack sample on this CPU (0: none yet).
    pub last_sample_ns: u64,
    /// In-scope thread running at that sample (0: idle or out of scope).
    pub last_sample_tid: u32,
    pub last_sample_tgid: u32,
    /// The thread `sched_switch` last put on this CPU, since `last_switch_ns` (0: idle, out
    /// of scope, or not known: only when the loader gave the task_struct offsets).
    pub running_tid: u32,
    pub running_tgid: u32,
}

/// Indexes into the per-CPU `COUNTERS` array: events the kernel side had to drop or saw.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    /// Stack samples taken (of non-idle, in-scope threads).
    Samples = 0,
    /// Samples lost because the ring buffer was full.
    SamplesLost = 1,
    /// Threads whose scheduler statistics could not be stored (map full).
    ThreadsDropped = 2,
    /// Syscalls not counted because the (tid, nr) map was full.
    SyscallsDropped = 3,
    /// Forked processes of targets that did not fit the target filter (map full).
    TargetsDropped = 4,
    /// Off-CPU stacks not recorded: the map of blocked threads was full.
    OffCpuDropped = 5,
    /// Sampled syscall arguments lost because their ring buffer was full.
    SyscallArgsLost = 6,
}

impl Counter {
    pub const COUNT: u32 = 7;
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: all of these are `#[repr(C)]`, `Copy`, made only of integers and integer
    // arrays with no implicit padding, so every bit pattern is a valid value.
    unsafe impl aya::Pod for super::ThreadStats {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::SyscallKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::CpuState {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::SyscallArgs {}
    // SAFETY: as above (`_pad` makes the trailing padding explicit).
    unsafe impl aya::Pod for super::SyscallCache {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::PyLayoutKernel {}
    // SAFETY: as above (600 text bytes after an 8-byte integer leave no padding).
    unsafe impl aya::Pod for super::KernelName {}
    // SAFETY: as above (two u32 then u64 arrays).
    unsafe impl aya::Pod for super::TaskRegisters {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::TaskWalk {}
    // SAFETY: the unwind types are `#[repr(C)]` integers with explicit padding fields.
    unsafe impl aya::Pod for super::UnwindRow {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::UnwindFile {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::UnwindMapping {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::UnwindProcess {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_have_no_padding() {
        assert_eq!(size_of::<SampleHeader>(), 48);
        assert_eq!(size_of::<SampleScratch>(), 48 + 8 * SAMPLE_SCRATCH_WORDS);
        assert_eq!(
            SAMPLE_MAX_BYTES,
            48 + 8 * (MAX_STACK_DEPTH + MAX_USER_FRAMES) + 16 * PY_MAX_FRAMES
        );
        assert_eq!(size_of::<UnwindRow>(), 8);
        assert_eq!(size_of::<UnwindFile>(), 6 * 4);
        assert_eq!(size_of::<UnwindMapping>(), 3 * 8 + 2 * 4);
        assert_eq!(size_of::<UnwindProcess>(), 2 * 4);
        assert_eq!(size_of::<PyFrameRecord>(), 16);
        assert_eq!(size_of::<PyLayoutKernel>(), 12 * 4);
        assert_eq!(size_of::<ThreadStats>(), 8 * 3 + 4 * 2 + 16);
        assert_eq!(size_of::<SyscallKey>(), 16);
        assert_eq!(size_of::<CpuState>(), 32);
        assert_eq!(size_of::<SyscallArgs>(), 4 * 4 + 6 * 8 + SYSCALL_PATH_BYTES);
        assert_eq!(size_of::<SyscallCache>(), SYSCALL_CACHE_WAYS * 16 + 8);
        assert_eq!(size_of::<KernelName>(), 8 + KERNEL_NAME_TEXT_BYTES);
        assert_eq!(
            size_of::<TaskRegisters>(),
            8 + 8 * TASK_STACK_TOP_WORDS * TASK_STACK_SIZES.len()
        );
        assert_eq!(size_of::<TaskWalk>(), 6 * 4);
    }
}

// ---- Native unwinding with `.eh_frame` tables -------------------------------------------
//
// Userspace compiles each executable file's call frame information into rows sorted by
// address (`UnwindRow`), indexed by 4 KiB page (`UNWIND_PAGES`), and stores them in two
// global arrays shared by every process that maps the file. Each process in scope gets a
// sorted list of its executable mappings (`UnwindProcess`). The kernel unwinds a user stack
// from the sampled registers, one frame per `bpf_loop` iteration: mapping (binary search),
// page, row (binary search), rule.

/// Most frames the table unwinder records per user stack (the kernel side masks frame
/// indexes to 255 words, kernel frames included: see [`SAMPLE_SCRATCH_WORDS`]).
pub const UNWIND_MAX_FRAMES: usize = 128;

/// Executable mappings per process the kernel can look up (its binary search covers 2^9).
pub const UNWIND_MAX_MAPPINGS: usize = 512;

/// Files with tables loaded at once (`UNWIND_FILES` slots).
pub const UNWIND_MAX_FILES: u32 = 4096;

/// Processes with unwind tables at once (`UNWIND_PROCS`).
pub const UNWIND_MAX_PROCS: u32 = 4096;

/// Rows in `UNWIND_ROWS` as compiled; the loader sizes it at load time (the kernel memory
/// cap for tables).
pub const UNWIND_ROWS_DEFAULT: u32 = 2 << 20;

/// Page entries in `UNWIND_PAGES` as compiled (one per 4 KiB of covered code, plus one per
/// file).
pub const UNWIND_PAGES_DEFAULT: u32 = 1 << 19;

/// A table's page index has one entry per `1 << UNWIND_PAGE_SHIFT` bytes of code.
pub const UNWIND_PAGE_SHIFT: u32 = 12;

/// Most rows the kernel's binary search inside one page can cover (`1 << steps`).
pub const UNWIND_PAGE_SEARCH_STEPS: u32 = 12;

/// Most mapping-search steps (`UNWIND_MAX_MAPPINGS` = 2^9).
pub const UNWIND_MAPPING_SEARCH_STEPS: u32 = 9;

/// How to find the canonical frame address (CFA) at a PC: [`UnwindRow::rules`] low nibble.
/// No rule is known for this PC: the unwind stops here, marked truncated.
pub const CFA_NONE: u8 = 0;
/// CFA = RSP + `cfa_offset`.
pub const CFA_RSP: u8 = 1;
/// CFA = RBP + `cfa_offset`.
pub const CFA_RBP: u8 = 2;
/// The PLT rule: CFA = RSP + 8, plus 8 more when `(RIP & 15) >= cfa_offset` (the expression
/// GCC and binutils emit for `.plt` entries, with their threshold 10 or 11).
pub const CFA_PLT: u8 = 3;
/// The outermost frame (its return address is undefined: `_start`, the thread entry
/// `clone3` runs): the stack is complete here.
pub const CFA_END: u8 = 4;

/// How to recover the caller's RBP: [`UnwindRow::rules`] high nibble.
/// RBP is unchanged (not saved by this frame).
pub const RBP_SAME: u8 = 0;
/// RBP was saved at CFA + 8 * `rbp_offset`.
pub const RBP_AT_CFA: u8 = 1;
/// The caller's RBP cannot be recovered: a later frame whose CFA needs it is truncated.
pub const RBP_UNKNOWN: u8 = 2;

/// One row of a file's unwind table: the rule for the code from `pc` up to the next row's
/// `pc`. Addresses are the file's own (ELF virtual addresses, as in its symbol table); a
/// row with [`CFA_NONE`] marks code no rule covers (the gaps between FDEs, the end of the
/// last one). The return address is always at CFA - 8 (x86-64).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UnwindRow {
    pub pc: u32,
    /// Bytes added to the CFA register (or the PLT threshold, see [`CFA_PLT`]).
    pub cfa_offset: u16,
    /// See [`RBP_AT_CFA`]; in 8-byte words.
    pub rbp_offset: i8,
    /// CFA rule (low nibble, `CFA_*`) | RBP rule (high nibble, `RBP_*`) << 4.
    pub rules: u8,
}

impl UnwindRow {
    pub const fn cfa_rule(&self) -> u8 {
        self.rules & 0xf
    }

    pub const fn rbp_rule(&self) -> u8 {
        self.rules >> 4
    }
}

/// Where a file's table lives in the global arrays (`UNWIND_FILES`, by slot).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UnwindFile {
    /// Index of the file's first row in `UNWIND_ROWS`.
    pub rows_start: u32,
    pub rows_len: u32,
    /// Index of the file's first page entry in `UNWIND_PAGES`. Page entry `p` is the index
    /// (relative to `rows_start`) of the last row whose `pc` is at most
    /// `base_pc + (p << UNWIND_PAGE_SHIFT)`, or 0; entry `pages_len - 1` is `rows_len - 1`.
    pub pages_start: u32,
    pub pages_len: u32,
    /// Page 0 starts here: the first row's `pc`, rounded down to a page.
    pub base_pc: u32,
    pub _pad: u32,
}

/// One executable mapping of a process, for the kernel's lookup.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UnwindMapping {
    /// Runtime addresses `start..end`.
    pub start: u64,
    pub end: u64,
    /// Runtime address - `bias` = the file's own address.
    pub bias: u64,
    /// Slot in `UNWIND_FILES`, or [`UNWIND_NO_FILE`]: frames here unwind by frame pointer.
    pub file: u32,
    pub _pad: u32,
}

/// [`UnwindMapping::file`] of a mapping without a table.
pub const UNWIND_NO_FILE: u32 = u32::MAX;

/// Where a process's executable mappings are in `UNWIND_MAPPINGS` (`UNWIND_PROCS`, keyed by
/// tgid): `len` [`UnwindMapping`]s from `start`, sorted by address, not overlapping. A
/// changed mapping list is written to a new range and swapped in with one update of this
/// entry, so a sample never sees half of a list; the old range is reused only later.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UnwindProcess {
    pub start: u32,
    pub len: u32,
}

/// Entries in `UNWIND_MAPPINGS` as compiled (the loader may size it at load time).
pub const UNWIND_MAPPINGS_DEFAULT: u32 = 1 << 16;

/// `SampleHeader::flags`: the user stack was unwound with tables (else by frame pointer,
/// through `bpf_get_stack`).
pub const SAMPLE_USER_TABLES: u32 = 1 << 4;
/// `SampleHeader::flags`: the table unwinder reached the outermost frame ([`CFA_END`]).
pub const SAMPLE_USER_COMPLETE: u32 = 1 << 5;
/// `SampleHeader::flags`: why the table unwinder stopped early, in these bits (an
/// `UNWIND_STOP_*` value); zero when it did not.
pub const SAMPLE_USER_STOP_SHIFT: u32 = 8;
pub const SAMPLE_USER_STOP_MASK: u32 = 0xf << SAMPLE_USER_STOP_SHIFT;
/// A PC with no rule ([`CFA_NONE`], or past a table's end).
pub const UNWIND_STOP_NO_RULE: u32 = 1;
/// A read of the stack failed.
pub const UNWIND_STOP_READ: u32 = 2;
/// The stack did not advance (a CFA at or below the previous one).
pub const UNWIND_STOP_STUCK: u32 = 3;
/// [`UNWIND_MAX_FRAMES`] frames.
pub const UNWIND_STOP_LIMIT: u32 = 4;
/// A PC in no executable mapping, where frame pointers did not lead on either.
pub const UNWIND_STOP_NO_MAPPING: u32 = 5;
/// A CFA rule needed RBP, which an earlier frame could not recover.
pub const UNWIND_STOP_NO_RBP: u32 = 6;
/// The table lookup gave up (a page with more rows than the search covers).
pub const UNWIND_STOP_SEARCH: u32 = 7;
