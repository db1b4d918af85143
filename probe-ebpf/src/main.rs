//! probe's kernel programs. Each one filters first and returns early; everything it
//! learns goes into bounded maps that the loader drains. No kernel struct field is read, so
//! nothing here depends on one kernel's layout.
#![no_std]
#![no_main]

use core::{ffi::c_void, mem::size_of, ptr::addr_of_mut};

use aya_ebpf::{
    bindings::{
        bpf_perf_event_data, BPF_F_NO_PREALLOC, BPF_F_USER_STACK, BPF_NOEXIST, BPF_RB_NO_WAKEUP,
    },
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_smp_processor_id,
        bpf_probe_read_kernel, bpf_probe_read_user_str_bytes,
        generated::{bpf_get_current_task_btf, bpf_get_stack, bpf_ktime_get_ns, bpf_task_pt_regs},
    },
    macros::{btf_tracepoint, map, perf_event},
    maps::{Array, HashMap, PerCpuArray, ProgramArray, RingBuf},
    programs::{BtfTracePointContext, PerfEventContext},
    EbpfContext,
};
use probe_common::{
    Counter, CpuState, PyLayoutKernel, SampleHeader, SampleScratch, SyscallArgs, SyscallCache,
    SyscallKey, ThreadStats, CONTROL_PY_WALK_LOADED, CONTROL_SLOTS, CONTROL_WINDOW_END,
    CONTROL_WINDOW_START, MAX_HOT_THREADS, MAX_STACK_DEPTH, MAX_SYSCALL_KEYS, MAX_TARGET_PIDS,
    MAX_THREADS, PY_MAX_PROCS, PY_MAX_THREADS, RECORD_EXEC, RECORD_OFF_CPU, RECORD_OFF_CPU_END,
    RECORD_SAMPLE, SAMPLE_KERNEL_STACK_ERROR, SAMPLE_RING_BYTES, SAMPLE_SCRATCH_WORDS,
    SAMPLE_USER_STACK_ERROR, SYSCALL_ARGS_RING_BYTES, SYSCALL_CACHE_WAYS, SYSCALL_NR_SLOTS,
    TAIL_CALL_PY_WALK, TAIL_CALL_SLOTS, TAIL_CALL_UNWIND,
};

mod kernel_names;
mod python;
mod task_registers;
mod unwind;

/// Non-zero: only processes in `TARGET_PIDS` are observed. Set at load time.
#[no_mangle]
static FILTER_PIDS: u32 = 0;

/// Non-zero: `sched_switch` records the stack of each observed thread that blocks
/// (`record --off-cpu`). Set at load time.
#[no_mangle]
static OFF_CPU_STACKS: u32 = 0;

/// Byte offset of `tgid` in `struct task_struct`, from the running kernel's BTF (set at
/// load time; 0 when unknown). Read by `sched_process_fork`, and by `sched_switch` with
/// `TASK_PID_OFFSET`.
#[no_mangle]
static TASK_TGID_OFFSET: u32 = 0;

/// Byte offset of `pid` (the thread id) in `struct task_struct` (set at load time; 0 when
/// unknown): with it `sched_switch` notes which thread each CPU runs, so userspace can see
/// a thread that has run for seconds without a switch (`probe watch`).
#[no_mangle]
static TASK_PID_OFFSET: u32 = 0;

/// Non-zero (`probe watch`): stack samples and syscall counts are recorded for the threads
/// in `HOT_THREADS` only. Set at load time.
#[no_mangle]
static HOT_ONLY: u32 = 0;

/// Non-zero (`probe watch` with continuous profiling): every thread's stacks are sampled
/// even with `HOT_ONLY` set. Set at load time.
#[no_mangle]
static PROFILE_ALL: u32 = 0;

/// `sys_enter` samples the arguments of every N-th syscall it counts on a CPU into
/// `SYSCALL_ARGS` (0: none). Set at load time.
#[no_mangle]
static SYSCALL_ARG_EVERY: u32 = 0;

#[map]
static SAMPLES: RingBuf = RingBuf::with_byte_size(SAMPLE_RING_BYTES, 0);

/// Sampled syscall arguments (`SyscallArgs`).
#[map]
static SYSCALL_ARGS: RingBuf = RingBuf::with_byte_size(SYSCALL_ARGS_RING_BYTES, 0);

/// Syscall number -> 1 + the index of its path argument (0: none), filled by userspace.
#[map]
static SYSCALL_PATH_ARG: Array<u8> = Array::with_max_entries(SYSCALL_NR_SLOTS, 0);

/// Where `sample_stack` assembles each record (see `SampleScratch`).
#[map]
static SAMPLE_SCRATCH: PerCpuArray<SampleScratch> = PerCpuArray::with_max_entries(1, 0);

/// `sample_stack`'s tail calls: `walk_python` at `TAIL_CALL_PY_WALK`, once userspace has
/// loaded it.
#[map]
static SAMPLE_TAIL_CALLS: ProgramArray = ProgramArray::with_max_entries(TAIL_CALL_SLOTS, 0);

// The two big maps allocate an entry when a key first appears (entries are then updated in
// place): preallocating them cost ~15 MiB of kernel memory and a few ms at every start, for
// capacity a run seldom uses. Only tracepoint programs use them; the sampler's maps (a
// perf_event program) stay preallocated, as kernels before 6.1 require.
/// Where `sched_switch` assembles an off-CPU record. Not shared with the sampler's scratch:
/// the two never nest (sched_switch runs with interrupts off), but keeping them apart needs
/// no argument.
#[map]
static SWITCH_SCRATCH: PerCpuArray<SampleScratch> = PerCpuArray::with_max_entries(1, 0);

/// `sched_switch`'s tail call: `walk_python_switch` at `TAIL_CALL_PY_WALK`.
#[map]
static SWITCH_TAIL_CALLS: ProgramArray = ProgramArray::with_max_entries(TAIL_CALL_SLOTS, 0);

/// Threads blocked with a recorded off-CPU stack: tid -> when they left the CPU.
#[map]
static OFF_CPU_SINCE: HashMap<u32, u64> = HashMap::with_max_entries(MAX_THREADS, BPF_F_NO_PREALLOC);

#[map]
static THREAD_STATS: HashMap<u32, ThreadStats> =
    HashMap::with_max_entries(MAX_THREADS, BPF_F_NO_PREALLOC);

#[map]
static SYSCALL_COUNTS: HashMap<SyscallKey, u64> =
    HashMap::with_max_entries(MAX_SYSCALL_KEYS, BPF_F_NO_PREALLOC);

#[map]
static SYSCALL_CACHE: PerCpuArray<SyscallCache> = PerCpuArray::with_max_entries(1, 0);

#[map]
static CPU_STATE: PerCpuArray<CpuState> = PerCpuArray::with_max_entries(1, 0);

#[map]
static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(Counter::COUNT, 0);

/// Written by userspace while the programs run: the window's bounds and whether the
/// Python walk is loaded (the `CONTROL_*` slots).
#[map]
static CONTROL: Array<u64> = Array::with_max_entries(CONTROL_SLOTS, 0);

#[map]
static TARGET_PIDS: HashMap<u32, u8> = HashMap::with_max_entries(MAX_TARGET_PIDS, 0);

/// Python processes in scope: the offsets their frame walk needs (filled by userspace).
#[map]
static PY_PROCS: HashMap<u32, PyLayoutKernel> = HashMap::with_max_entries(PY_MAX_PROCS, 0);

/// Python threads: tid -> address of its `PyThreadState` (filled by userspace).
#[map]
static PY_THREADS: HashMap<u32, u64> = HashMap::with_max_entries(PY_MAX_THREADS, 0);

/// `probe watch`'s hot threads (tid -> 1), filled by userspace for an episode: with
/// `HOT_ONLY` set, only these are sampled and have their syscalls counted.
#[map]
static HOT_THREADS: HashMap<u32, u8> = HashMap::with_max_entries(MAX_HOT_THREADS, 0);

const TASK_RUNNING: u32 = 0;
/// `prev_state` bit of a task switched out for the last time (it exited).
const TASK_DEAD: u32 = 0x80;
const STACK_BYTES: u32 = (MAX_STACK_DEPTH * size_of::<u64>()) as u32;

#[inline(always)]
fn filter_pids() -> bool {
    // SAFETY: a plain read of a load-time constant; volatile so the compiler does not fold
    // the zero it was compiled with.
    unsafe { core::ptr::read_volatile(&FILTER_PIDS) != 0 }
}

/// (start, end) of the window: start is 0 while userspace is still attaching programs, end
/// is 0 while the window is open.
#[inline(always)]
fn window() -> (u64, u64) {
    (control(CONTROL_WINDOW_START), control(CONTROL_WINDOW_END))
}

#[inline(always)]
fn control(slot: u32) -> u64 {
    CONTROL.get(slot).copied().unwrap_or(0)
}

#[inline(always)]
fn in_window(now: u64) -> bool {
    let (start, end) = window();
    start != 0 && now >= start && (end == 0 || now < end)
}

/// Whether the process `tgid` is in scope.
#[inline(always)]
fn in_scope(tgid: u32) -> bool {
    !filter_pids() || TARGET_PIDS.get_ptr(tgid).is_some()
}

/// Whether thread `tid`'s syscalls are counted: always, but under `probe watch` only
/// while it is hot.
#[inline(always)]
fn recorded(tid: u32) -> bool {
    // SAFETY: a plain read of a load-time constant (see `filter_pids`).
    let hot_only = unsafe { core::ptr::read_volatile(&HOT_ONLY) != 0 };
    !hot_only || HOT_THREADS.get_ptr(tid).is_some()
}

/// Whether thread `tid`'s stacks are sampled: as [`recorded`], except that continuous
/// profiling (`PROFILE_ALL`) samples every thread.
#[inline(always)]
fn sampled(tid: u32) -> bool {
    // SAFETY: as above.
    let profile_all = unsafe { core::ptr::read_volatile(&PROFILE_ALL) != 0 };
    profile_all || recorded(tid)
}

#[inline(always)]
fn now_ns() -> u64 {
    // SAFETY: the helper has no preconditions.
    unsafe { bpf_ktime_get_ns() }
}

#[inline(always)]
fn current_cpu() -> u32 {
    // SAFETY: the helper has no preconditions.
    unsafe { bpf_get_smp_processor_id() }
}

#[inline(always)]
fn bump(counter: Counter) {
    add_to(counter, 1);
}

#[inline(always)]
fn add_to(counter: Counter, count: u64) {
    if let Some(slot) = COUNTERS.get_ptr_mut(counter as u32) {
        // SAFETY: per-CPU slot; programs on one CPU don't run concurrently with each other
        // for the hooks used here (all run with preemption disabled).
        unsafe { *slot += count };
    }
}

/// On-CPU sampler, attached to a software CPU_CLOCK perf event on every CPU. The record is
/// assembled in this CPU's `SAMPLE_SCRATCH` and only its valid bytes are copied to the ring
/// buffer (see `SampleHeader`). A Python thread's record is finished by `walk_python`,
/// reached by a tail call; until userspace has loaded that program, the record goes out
/// with native frames only (`SAMPLE_PY_WALKED` unset).
#[perf_event]
pub fn sample_stack(ctx: PerfEventContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    let tid = pid_tgid as u32;
    let tgid = (pid_tgid >> 32) as u32;
    let now = now_ns();
    // The CPU state names in-scope threads only, even outside the window: at the window's
    // end it tells which in-scope thread is still running (see `CpuState`).
    let observed = tid != 0 && in_scope(tgid);
    if let Some(state) = CPU_STATE.get_ptr_mut(0) {
        // SAFETY: per-CPU slot, see `bump`.
        unsafe {
            (*state).last_sample_ns = now;
            (*state).last_sample_tid = if observed { tid } else { 0 };
            (*state).last_sample_tgid = if observed { tgid } else { 0 };
        }
    }
    if !observed || !in_window(now) || !sampled(tid) {
        return 0;
    }
    bump(Counter::Samples);
    let Some(scratch) = SAMPLE_SCRATCH.get_ptr_mut(0) else {
        bump(Counter::SamplesLost);
        return 0;
    };
    // SAFETY: `scratch` is this CPU's slot, which only this program (and the walker it tail
    // calls) uses, and never nested: a perf_event program does not run while another one
    // runs on the same CPU.
    unsafe {
        let header = Header {
            tgid,
            tid,
            time_ns: now,
            kind: RECORD_SAMPLE,
        };
        // A sample taken in user mode has no kernel frames: skip the helper, whose set-up
        // alone costs ~1 µs when cold.
        let kernel = !interrupted_user_mode(&ctx);
        fill_record(ctx.as_ptr(), scratch, &header, kernel);
        if unwind::UNWIND_PROCS.get_ptr(tgid).is_some() {
            // Does not return once the unwinder is loaded: it unwinds the user stack and
            // goes on from there.
            SAMPLE_TAIL_CALLS.tail_call(&ctx, TAIL_CALL_UNWIND);
        }
        fill_user_frame_pointers(ctx.as_ptr(), scratch);
        finish_sample(&ctx, scratch, tid);
    }
    0
}

/// The table unwinder's half of `sample_stack` (reached by a tail call, never attached):
/// the user stack from the registers the thread had in user mode, by table, then the rest
/// of the sampler's work. Its run time counts as `sample_stack`'s.
#[perf_event]
pub fn unwind_user_stack(ctx: PerfEventContext) -> u32 {
    let Some(scratch) = SAMPLE_SCRATCH.get_ptr_mut(0) else {
        bump(Counter::SamplesLost);
        return 0;
    };
    let regs = if interrupted_user_mode(&ctx) {
        let data = ctx.as_ptr().cast::<bpf_perf_event_data>();
        // SAFETY: a perf_event program's context is a `bpf_perf_event_data`, whose
        // registers the verifier lets the program read.
        unsafe {
            unwind::UserRegisters {
                pc: (*data).regs.rip,
                sp: (*data).regs.rsp,
                bp: (*data).regs.rbp,
            }
        }
    } else {
        match saved_user_registers() {
            Some(regs) => regs,
            None => unwind::UserRegisters {
                pc: 0,
                sp: 0,
                bp: 0,
            },
        }
    };
    // SAFETY: `scratch` is this CPU's slot, filled by `sample_stack` (see there).
    unsafe {
        let tgid = (*scratch).header.tgid;
        let tid = (*scratch).header.tid;
        if regs.pc == 0 || !unwind::unwind_user(scratch, tgid, &regs, unwind::WalkSlot::Sample) {
            fill_user_frame_pointers(ctx.as_ptr(), scratch);
        }
        finish_sample(&ctx, scratch, tid);
    }
    0
}

/// The user registers of `current`, saved when it entered the kernel.
#[inline(always)]
fn saved_user_registers() -> Option<unwind::UserRegisters> {
    // SAFETY: the helpers have no preconditions beyond a valid task, which
    // bpf_get_current_task_btf gives; the reads are checked.
    unsafe {
        let task = bpf_get_current_task_btf();
        let regs = bpf_task_pt_regs(task) as *const aya_ebpf::bindings::pt_regs;
        if regs.is_null() {
            return None;
        }
        Some(unwind::UserRegisters {
            pc: bpf_probe_read_kernel(core::ptr::addr_of!((*regs).rip)).ok()?,
            sp: bpf_probe_read_kernel(core::ptr::addr_of!((*regs).rsp)).ok()?,
            bp: bpf_probe_read_kernel(core::ptr::addr_of!((*regs).rbp)).ok()?,
        })
    }
}

/// The end of a sample: the Python walk for a Python thread (which emits the record), else
/// the record out.
///
/// # Safety
/// `scratch` is this CPU's `SAMPLE_SCRATCH` slot, holding the record.
#[inline(always)]
unsafe fn finish_sample(ctx: &PerfEventContext, scratch: *mut SampleScratch, tid: u32) {
    // SAFETY: see above.
    unsafe {
        if control(CONTROL_PY_WALK_LOADED) != 0 && PY_THREADS.get_ptr(tid).is_some() {
            // Does not return once the walker is loaded: it walks and emits the record.
            SAMPLE_TAIL_CALLS.tail_call(ctx, TAIL_CALL_PY_WALK);
        }
        emit(scratch);
    }
}

/// The Python frame walk of a `sample_stack` record, in a program of its own so that the
/// sampler verifies quickly and the walk (the bulk of the verifier's work) is verified
/// only when a Python process is in scope. Reached by a tail call from `sample_stack`,
/// never attached: the record is in this CPU's `SAMPLE_SCRATCH`, which it completes and
/// emits. Its run time counts as `sample_stack`'s in the kernel's statistics.
#[perf_event]
pub fn walk_python(_ctx: PerfEventContext) -> u32 {
    walk_and_emit(&SAMPLE_SCRATCH);
    0
}

/// `walk_python` for the off-CPU records of `sched_switch`, which tail calls it (a tail
/// call must stay within one program type and hook).
#[btf_tracepoint(function = "sched_switch")]
pub fn walk_python_switch(_ctx: BtfTracePointContext) -> u32 {
    walk_and_emit(&SWITCH_SCRATCH);
    0
}

/// Adds the Python frames to the record in this CPU's slot of `scratch`, and emits it.
#[inline(always)]
fn walk_and_emit(scratch: &PerCpuArray<SampleScratch>) {
    let Some(scratch) = scratch.get_ptr_mut(0) else {
        bump(Counter::SamplesLost);
        return;
    };
    // SAFETY: `scratch` is this CPU's slot, filled by the program that tail called this
    // one (see there). The Python maps' values are plain integers, valid for the whole run
    // of the program (map values are RCU protected).
    unsafe {
        let header = addr_of_mut!((*scratch).header);
        let (tid, tgid) = ((*header).tid, (*header).tgid);
        if let (Some(&tstate), Some(layout)) = (PY_THREADS.get(tid), PY_PROCS.get(tgid)) {
            (*header).flags |= python::walk(scratch, layout, tstate);
        }
        emit(scratch);
    }
}

/// Who and when a record is about.
struct Header {
    tgid: u32,
    tid: u32,
    time_ns: u64,
    kind: u32,
}

/// Fills `scratch` with a record of `current`: the header and its stacks (the kernel one
/// only if `kernel`), without Python frames.
///
/// # Safety
/// `scratch` must be this CPU's slot of a scratch map, used by nothing else meanwhile;
/// `ctx` the running program's context. The helper writes at most MAX_STACK_DEPTH frames
/// per side: the kernel frames at the start of `words`, the user frames right after them,
/// which both fit.
#[inline(always)]
unsafe fn fill_record(ctx: *mut c_void, scratch: *mut SampleScratch, who: &Header, kernel: bool) {
    // SAFETY: the caller's slot and context (see above).
    unsafe {
        let header = addr_of_mut!((*scratch).header);
        let words = addr_of_mut!((*scratch).words).cast::<u64>();
        (*header).tgid = who.tgid;
        (*header).tid = who.tid;
        (*header).cpu = current_cpu();
        (*header).ktime_ns = who.time_ns;
        (*header).kind = who.kind;
        let mut flags = 0;
        (*header).syscall = if kernel { current_syscall() } else { 0 };
        let kernel = if kernel {
            bpf_get_stack(ctx, words.cast::<c_void>(), STACK_BYTES, 0)
        } else {
            0
        };
        let kernel_frames = frames(kernel);
        if kernel < 0 {
            flags |= SAMPLE_KERNEL_STACK_ERROR;
        }
        (*header).kernel_frames = kernel_frames;
        (*header).user_frames = 0;
        (*header).py_frames = 0;
        (*header).flags = flags;
        (*header).reserved = 0;
    }
}

/// The highest syscall number the kernel's table has (x86-64, 6.x); anything above is not
/// a syscall number.
const MAX_SYSCALL_NR: u64 = 1024;
/// `-ENOSYS`: the kernel's syscall entry saves it as the user's RAX until the call
/// returns, so an entry that saved anything else was an exception (whose error code sits
/// where a syscall's number would).
const ENOSYS_SAVED: u64 = (-38i64) as u64;

/// 1 + the number of the syscall `current` is in, read from the user registers saved when
/// it entered the kernel, as /proc/PID/syscall reads them; 0 when it is in none: a kernel
/// thread (no user registers), an interrupt (negative number) or an exception (RAX not
/// `-ENOSYS`).
#[inline(always)]
fn current_syscall() -> u32 {
    // SAFETY: the helpers have no preconditions beyond a valid task, which
    // bpf_get_current_task_btf gives; the read is checked. `rax` through `cs` are 8
    // consecutive words of `pt_regs`.
    unsafe {
        let task = bpf_get_current_task_btf();
        let regs = bpf_task_pt_regs(task) as *const aya_ebpf::bindings::pt_regs;
        if regs.is_null() {
            return 0;
        }
        let Ok(words) = bpf_probe_read_kernel(core::ptr::addr_of!((*regs).rax).cast::<[u64; 8]>())
        else {
            return 0;
        };
        // rax, rcx, rdx, rsi, rdi, orig_rax, rip, cs
        let (rax, orig_rax, cs) = (words[0], words[5], words[7]);
        if cs & 3 != 3 || rax != ENOSYS_SAVED || orig_rax >= MAX_SYSCALL_NR {
            return 0;
        }
        orig_rax as u32 + 1
    }
}

/// Adds the user stack by frame pointer (the kernel's walk) to the record in `scratch`.
///
/// # Safety
/// As for [`fill_record`], after it.
#[inline(always)]
unsafe fn fill_user_frame_pointers(ctx: *mut c_void, scratch: *mut SampleScratch) {
    // SAFETY: the caller's slot and context (see above).
    unsafe {
        let header = addr_of_mut!((*scratch).header);
        let words = addr_of_mut!((*scratch).words).cast::<u64>();
        let kernel_frames = (*header).kernel_frames.min(MAX_STACK_DEPTH as u32);
        let user = bpf_get_stack(
            ctx,
            words.add(kernel_frames as usize).cast::<c_void>(),
            STACK_BYTES,
            BPF_F_USER_STACK as u64,
        );
        if user < 0 {
            (*header).flags |= SAMPLE_USER_STACK_ERROR;
        }
        (*header).user_frames = frames(user);
    }
}

/// Emits a record of `kind` with no frames (an event, not a stack).
#[inline(always)]
fn emit_marker(kind: u32, tid: u32, tgid: u32, time_ns: u64) {
    let marker = SampleHeader {
        tgid,
        tid,
        cpu: current_cpu(),
        flags: 0,
        ktime_ns: time_ns,
        kernel_frames: 0,
        user_frames: 0,
        py_frames: 0,
        kind,
        syscall: 0,
        reserved: 0,
    };
    if SAMPLES
        .output::<SampleHeader>(&marker, BPF_RB_NO_WAKEUP as u64)
        .is_err()
    {
        bump(Counter::SamplesLost);
    }
}

/// Copies the record assembled in `scratch` to the ring buffer: the header and the valid
/// frames, nothing more. A full ring buffer is a counted loss.
///
/// # Safety
/// `scratch` must be this CPU's `SAMPLE_SCRATCH` slot.
#[inline(always)]
unsafe fn emit(scratch: *const SampleScratch) {
    // SAFETY: the caller's slot, valid for the program's run.
    let header = unsafe { &(*scratch).header };
    // Each count was bounded where it was written; bound the sum again so the verifier
    // sees a size within the slot.
    let words =
        header.kernel_frames as usize + header.user_frames as usize + 2 * header.py_frames as usize;
    let words = if words > SAMPLE_SCRATCH_WORDS {
        SAMPLE_SCRATCH_WORDS
    } else {
        words
    };
    let len = size_of::<SampleHeader>() + words * size_of::<u64>();
    // SAFETY: `len` is at most the slot's size (above).
    let record = unsafe { core::slice::from_raw_parts(scratch.cast::<u8>(), len) };
    // Userspace polls the ring buffer on a timer, so no wakeup is needed: a wakeup is an
    // irq_work self-interrupt per sample, costly (a VM exit) on virtual machines.
    if SAMPLES
        .output::<[u8]>(record, BPF_RB_NO_WAKEUP as u64)
        .is_err()
    {
        bump(Counter::SamplesLost);
    }
}

/// Whether the sample interrupted user mode. x86-64: the privilege level, the low two bits
/// of the interrupted CS, is 3. (probe is built for x86-64 only; its syscall table is too.)
#[inline(always)]
fn interrupted_user_mode(ctx: &PerfEventContext) -> bool {
    let data = ctx.as_ptr().cast::<bpf_perf_event_data>();
    // SAFETY: a perf_event program's context is a `bpf_perf_event_data`, whose registers
    // the verifier lets the program read (8-byte loads, as here).
    let cs = unsafe { (*data).regs.cs };
    cs & 3 == 3
}

#[inline(always)]
fn frames(bytes: i64) -> u32 {
    if bytes <= 0 {
        0
    } else {
        (bytes as u32 / size_of::<u64>() as u32).min(MAX_STACK_DEPTH as u32)
    }
}

/// Per-thread on-CPU time and context switches. The thread that ran on this CPU since the
/// previous switch is `prev`, which is still `current` here, so no task_struct field is read.
#[btf_tracepoint(function = "sched_switch")]
pub fn sched_switch(ctx: BtfTracePointContext) -> u32 {
    let now = now_ns();
    let Some(state) = CPU_STATE.get_ptr_mut(0) else {
        return 0;
    };
    // SAFETY: per-CPU slot, see `bump`.
    let since = unsafe {
        let since = (*state).last_switch_ns;
        (*state).last_switch_ns = now;
        since
    };
    note_next_thread(&ctx, state);
    let pid_tgid = bpf_get_current_pid_tgid();
    let tid = pid_tgid as u32;
    let tgid = (pid_tgid >> 32) as u32;
    let (start, end) = window();
    if start == 0 || tid == 0 || !in_scope(tgid) {
        return 0;
    }
    // sched_switch(bool preempt, task_struct *prev, task_struct *next, unsigned int prev_state)
    let prev_state: u32 = ctx.arg(3);
    // SAFETY: a plain read of a load-time constant (see `filter_pids`).
    if unsafe { core::ptr::read_volatile(&OFF_CPU_STACKS) } != 0 && in_window(now) {
        off_cpu(&ctx, tid, tgid, since, now, prev_state);
    }
    // Only the part of the run inside the window counts.
    let from = since.max(start);
    let to = if end == 0 { now } else { now.min(end) };
    if to <= from {
        return 0;
    }
    let ran_ns = to - from;
    let involuntary = prev_state == TASK_RUNNING;
    let Some(stats) = thread_stats(tid, tgid) else {
        return 0;
    };
    // SAFETY: `stats` points into a map value owned by thread `tid`, which is only updated
    // from `tid`'s own context (it is `current`), so there is no concurrent writer.
    unsafe {
        (*stats).on_cpu_ns += ran_ns;
        if involuntary {
            (*stats).involuntary_switches += 1;
        } else {
            (*stats).voluntary_switches += 1;
        }
    }
    0
}

/// Notes in this CPU's state which thread `sched_switch` puts on it, when the loader gave
/// the task_struct offsets (`probe watch`): 0 for the idle task and out-of-scope threads.
#[inline(always)]
fn note_next_thread(ctx: &BtfTracePointContext, state: *mut CpuState) {
    // SAFETY: plain reads of load-time constants (see `filter_pids`).
    let (pid_offset, tgid_offset) = unsafe {
        (
            core::ptr::read_volatile(&TASK_PID_OFFSET),
            core::ptr::read_volatile(&TASK_TGID_OFFSET),
        )
    };
    if pid_offset == 0 || tgid_offset == 0 {
        return;
    }
    // sched_switch(bool preempt, task_struct *prev, task_struct *next, unsigned int prev_state)
    let next: *const u8 = ctx.arg(2);
    // SAFETY: `next` is the kernel's task pointer for this tracepoint; the reads are checked
    // by the helper and only their results are used.
    let (tid, tgid) = unsafe {
        (
            bpf_probe_read_kernel(next.add(pid_offset as usize).cast::<u32>()).unwrap_or(0),
            bpf_probe_read_kernel(next.add(tgid_offset as usize).cast::<u32>()).unwrap_or(0),
        )
    };
    let known = tid != 0 && in_scope(tgid);
    // SAFETY: per-CPU slot, see `bump`.
    unsafe {
        (*state).running_tid = if known { tid } else { 0 };
        (*state).running_tgid = if known { tgid } else { 0 };
    }
}

/// Off-CPU stacks. The thread leaving the CPU is `current`: its stack is the one it
/// blocked with. It came on this CPU at `since` (the previous switch here), which ends
/// its previous off-CPU period, if one was recorded; and if it now blocks (rather than
/// being preempted or exiting), its stack is recorded and the time noted.
#[inline(always)]
fn off_cpu(ctx: &BtfTracePointContext, tid: u32, tgid: u32, since: u64, now: u64, state: u32) {
    if OFF_CPU_SINCE.get_ptr(tid).is_some() {
        emit_marker(RECORD_OFF_CPU_END, tid, tgid, since);
        let _ = OFF_CPU_SINCE.remove(tid);
    }
    if state == TASK_RUNNING || state & TASK_DEAD != 0 {
        return;
    }
    let Some(scratch) = SWITCH_SCRATCH.get_ptr_mut(0) else {
        bump(Counter::SamplesLost);
        return;
    };
    if OFF_CPU_SINCE.insert(tid, now, 0).is_err() {
        bump(Counter::OffCpuDropped);
        return;
    }
    // SAFETY: `scratch` is this CPU's slot, used only by this program and the walker it
    // tail calls, never nested (sched_switch runs with interrupts off).
    unsafe {
        let header = Header {
            tgid,
            tid,
            time_ns: now,
            kind: RECORD_OFF_CPU,
        };
        fill_record(ctx.as_ptr(), scratch, &header, true);
        if unwind::UNWIND_PROCS.get_ptr(tgid).is_some() {
            // Does not return once the unwinder is in its slot.
            SWITCH_TAIL_CALLS.tail_call(ctx, TAIL_CALL_UNWIND);
        }
        fill_user_frame_pointers(ctx.as_ptr(), scratch);
        finish_off_cpu(ctx, scratch, tid);
    }
}

/// The end of an off-CPU record: the Python walk for a Python thread (which emits it),
/// else the record out.
///
/// # Safety
/// `scratch` is this CPU's `SWITCH_SCRATCH` slot, holding the record.
#[inline(always)]
unsafe fn finish_off_cpu(ctx: &BtfTracePointContext, scratch: *mut SampleScratch, tid: u32) {
    if PY_THREADS.get_ptr(tid).is_some() {
        // Does not return once the walker is in its slot.
        SWITCH_TAIL_CALLS.tail_call(ctx, TAIL_CALL_PY_WALK);
    }
    // SAFETY: see above.
    unsafe { emit(scratch) };
}

/// `off_cpu`'s table unwinder (reached by a tail call, never attached): the user stack a
/// thread blocked with, from the registers it entered the kernel with, by table.
#[btf_tracepoint(function = "sched_switch")]
pub fn unwind_switch_stack(ctx: BtfTracePointContext) -> u32 {
    let Some(scratch) = SWITCH_SCRATCH.get_ptr_mut(0) else {
        bump(Counter::SamplesLost);
        return 0;
    };
    // SAFETY: `scratch` is this CPU's slot, filled by `off_cpu` (see there).
    unsafe {
        let tgid = (*scratch).header.tgid;
        let tid = (*scratch).header.tid;
        let unwound = match saved_user_registers() {
            Some(regs) if regs.pc != 0 => {
                unwind::unwind_user(scratch, tgid, &regs, unwind::WalkSlot::Switch)
            }
            _ => false,
        };
        if !unwound {
            fill_user_frame_pointers(ctx.as_ptr(), scratch);
        }
        finish_off_cpu(&ctx, scratch, tid);
    }
    0
}

/// An observed process exec'd: its interpreter state is gone (so are the kernel's Python
/// entries for it), and userspace learns that its mappings are new from now on.
#[btf_tracepoint(function = "sched_process_exec")]
pub fn sched_process_exec(_ctx: BtfTracePointContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    let tid = pid_tgid as u32;
    let tgid = (pid_tgid >> 32) as u32;
    if !in_scope(tgid) {
        return 0;
    }
    let _ = PY_THREADS.remove(tid);
    let _ = PY_PROCS.remove(tgid);
    let now = now_ns();
    if in_window(now) {
        emit_marker(RECORD_EXEC, tid, tgid, now);
    }
    0
}

/// Marks a thread as exited so the report can say so even after its tid is reused.
#[btf_tracepoint(function = "sched_process_exit")]
pub fn sched_process_exit(_ctx: BtfTracePointContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    let tid = pid_tgid as u32;
    let tgid = (pid_tgid >> 32) as u32;
    if !in_scope(tgid) {
        return 0;
    }
    if let Some(stats) = thread_stats(tid, tgid) {
        // SAFETY: see `sched_switch`.
        unsafe { (*stats).exited = 1 };
    }
    // A reused tid must not inherit this thread's (freed) Python thread state. Absent
    // entries are the common case: the error is not a problem.
    let _ = PY_THREADS.remove(tid);
    0
}

/// Adds the child of an observed process to the filter, so that a spawned command's
/// descendants are observed from their first instruction. `current` is the parent; the
/// child's tgid is read from its `task_struct` at the offset userspace found in the
/// kernel's BTF. Threads (same tgid) add nothing new.
#[btf_tracepoint(function = "sched_process_fork")]
pub fn sched_process_fork(ctx: BtfTracePointContext) -> u32 {
    let parent = (bpf_get_current_pid_tgid() >> 32) as u32;
    // SAFETY: a plain read of a load-time constant (see `filter_pids`).
    let offset = unsafe { core::ptr::read_volatile(&TASK_TGID_OFFSET) };
    if offset == 0 || TARGET_PIDS.get_ptr(parent).is_none() {
        return 0;
    }
    // sched_process_fork(struct task_struct *parent, struct task_struct *child)
    let child: *const u8 = ctx.arg(1);
    // SAFETY: `child` is the kernel's task pointer for this tracepoint; the read is checked
    // by the helper and only its result is used.
    let tgid = unsafe { bpf_probe_read_kernel(child.add(offset as usize).cast::<u32>()) };
    if let Ok(tgid) = tgid {
        if tgid != parent && TARGET_PIDS.insert(tgid, 1, 0).is_err() {
            bump(Counter::TargetsDropped);
        }
    }
    0
}

/// The stats slot of the current thread, created on first use.
#[inline(always)]
fn thread_stats(tid: u32, tgid: u32) -> Option<*mut ThreadStats> {
    if let Some(stats) = THREAD_STATS.get_ptr_mut(tid) {
        return Some(stats);
    }
    let fresh = ThreadStats {
        tgid,
        comm: bpf_get_current_comm().unwrap_or([0; 16]),
        ..ThreadStats::default()
    };
    if THREAD_STATS.insert(tid, fresh, BPF_NOEXIST as u64).is_err()
        && THREAD_STATS.get_ptr(tid).is_none()
    {
        bump(Counter::ThreadsDropped);
        return None;
    }
    THREAD_STATS.get_ptr_mut(tid)
}

/// Counts syscalls per (thread, number). Runs for every syscall on the machine, so the
/// common case (a thread repeating a few syscalls) is one per-CPU array lookup; the hash map
/// is only touched when a cache entry is evicted.
#[btf_tracepoint(function = "sys_enter")]
pub fn sys_enter(ctx: BtfTracePointContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    if filter_pids() && TARGET_PIDS.get_ptr((pid_tgid >> 32) as u32).is_none() {
        return 0;
    }
    if !recorded(pid_tgid as u32) {
        return 0;
    }
    let Some(cache) = SYSCALL_CACHE.get_ptr_mut(0) else {
        return 0;
    };
    // sys_enter(struct pt_regs *regs, long id)
    let nr = ctx.arg::<i64>(1) as u32;
    let key = SyscallCache::key(pid_tgid as u32, nr);
    // SAFETY: a plain read of a load-time constant (see `filter_pids`): a power of two.
    let every = unsafe { core::ptr::read_volatile(&SYSCALL_ARG_EVERY) };
    // SAFETY: per-CPU slot, see `bump`; indexes are bounded by the array length.
    unsafe {
        let cache = &mut *cache;
        if every != 0 {
            cache.arg_ticks = cache.arg_ticks.wrapping_add(1);
            if cache.arg_ticks & (every - 1) == 0 {
                sample_syscall_args(&ctx, pid_tgid, nr);
            }
        }
        for way in 0..SYSCALL_CACHE_WAYS {
            if cache.key[way] == key {
                cache.pending[way] += 1;
                return 0;
            }
        }
        let victim = cache.next_victim as usize % SYSCALL_CACHE_WAYS;
        cache.next_victim = (victim as u32 + 1) % SYSCALL_CACHE_WAYS as u32;
        let (old_tid, old_nr) = SyscallCache::split(cache.key[victim]);
        add_syscalls(old_tid, old_nr, cache.pending[victim]);
        cache.key[victim] = key;
        cache.pending[victim] = 1;
    }
    0
}

/// Adds `count` calls to `SYSCALL_COUNTS` under this CPU's key, which no other CPU writes.
/// The arguments of one syscall (every `SYSCALL_ARG_EVERY`-th counted on a CPU): its
/// argument registers, and the path its path argument points at, into `SYSCALL_ARGS`.
/// The storm's arguments are the clue a count alone does not give (`open("/")` forever).
#[inline(always)]
fn sample_syscall_args(ctx: &BtfTracePointContext, pid_tgid: u64, nr: u32) {
    let Some(mut entry) = SYSCALL_ARGS.reserve::<SyscallArgs>(0) else {
        bump(Counter::SyscallArgsLost);
        return;
    };
    let record = entry.as_mut_ptr();
    let regs: *const aya_ebpf::bindings::pt_regs = ctx.arg(0);
    // SAFETY: `record` is the reserved entry, written whole before it is submitted; `regs`
    // is the tracepoint's pointer to the syscall's saved registers, read through the
    // helper (a failed read is a zero); the path is read through the user-memory helper,
    // which bounds it to the record's buffer.
    unsafe {
        let read = |field: *const u64| bpf_probe_read_kernel(field).unwrap_or(0);
        let args = [
            read(core::ptr::addr_of!((*regs).rdi)),
            read(core::ptr::addr_of!((*regs).rsi)),
            read(core::ptr::addr_of!((*regs).rdx)),
            read(core::ptr::addr_of!((*regs).r10)),
            read(core::ptr::addr_of!((*regs).r8)),
            read(core::ptr::addr_of!((*regs).r9)),
        ];
        (*record).tid = pid_tgid as u32;
        (*record).tgid = (pid_tgid >> 32) as u32;
        (*record).nr = nr;
        (*record).args = args;
        (*record).path_len = 0;
        let path_arg = match SYSCALL_PATH_ARG.get(nr).copied().unwrap_or(0) {
            1 => args[0],
            2 => args[1],
            3 => args[2],
            _ => 0,
        };
        if path_arg != 0 {
            let path = &mut *addr_of_mut!((*record).path);
            if let Ok(bytes) = bpf_probe_read_user_str_bytes(path_arg as *const u8, path) {
                (*record).path_len = bytes.len() as u32 + 1;
            }
        }
    }
    entry.submit(BPF_RB_NO_WAKEUP as u64);
}

#[inline(always)]
fn add_syscalls(tid: u32, nr: u32, count: u64) {
    if count == 0 {
        return;
    }
    let key = SyscallKey {
        tid,
        nr,
        cpu: current_cpu(),
        _pad: 0,
    };
    if let Some(total) = SYSCALL_COUNTS.get_ptr_mut(key) {
        // SAFETY: a live map value that only this CPU's programs write, one at a time.
        unsafe { *total += count };
    } else if SYSCALL_COUNTS
        .insert(key, count, BPF_NOEXIST as u64)
        .is_err()
    {
        add_to(Counter::SyscallsDropped, count);
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[link_section = "license"]
#[no_mangle]
static LICENSE: [u8; 4] = *b"GPL\0";
