//! `probe dump`'s kernel program: the user registers every thread of a process saved when
//! it entered the kernel. /proc/TID/syscall shows only a blocked thread's stack pointer and
//! PC; unwinding code built without frame pointers from there needs its RBP as well, and
//! the only other way to get that is ptrace, which stops the thread.
//!
//! Never attached: userspace runs it with `BPF_PROG_TEST_RUN`, passing the tgid and the
//! struct offsets it needs (from the kernel's BTF) as the raw tracepoint's arguments. It
//! starts from its own thread-group leader, follows the list of every leader
//! (`task_struct.tasks`) to the process's, then that process's thread list, and copies the
//! top of each thread's kernel stack, where x86-64 keeps the saved registers. The program
//! runs inside an RCU read-side section (as every BPF program does), so the tasks it
//! passes are not freed under it, and every read is a checked `bpf_probe_read_kernel`.

use core::ffi::c_void;

use aya_ebpf::{
    bindings::BPF_F_NO_PREALLOC,
    helpers::{
        bpf_probe_read_kernel, bpf_probe_read_kernel_buf,
        generated::{bpf_get_current_task, bpf_loop},
    },
    macros::{map, raw_tracepoint},
    maps::{Array, HashMap, PerCpuArray},
    programs::RawTracePointContext,
    EbpfContext,
};
use probe_common::{
    task_walk_args as arg, TaskRegisters, TaskWalk, TASK_REGISTERS_MAX, TASK_STACK_SIZES,
    TASK_STACK_TOP_WORDS, TASK_WALK_MAX_PROCESSES,
};

/// The last run's threads: tid -> the top of its kernel stack. Userspace empties it.
#[map]
static TASK_REGISTERS: HashMap<u32, TaskRegisters> =
    HashMap::with_max_entries(TASK_REGISTERS_MAX, BPF_F_NO_PREALLOC);

/// The last run's summary.
#[map]
static TASK_WALK: Array<TaskWalk> = Array::with_max_entries(1, 0);

/// The walk's state, in a map value rather than on the stack (see `unwind::WalkState` for
/// why that keeps the verifier's work small), and the record being filled.
#[repr(C)]
struct Scratch {
    args: [u64; arg::COUNT],
    walk: TaskWalk,
    /// The leader the walk started from, and the one it is at.
    start: u64,
    at: u64,
    /// The process's leader once found.
    leader: u64,
    /// The thread list's head and the node the walk is at.
    head: u64,
    node: u64,
    record: TaskRegisters,
}

#[map]
static TASK_SCRATCH: PerCpuArray<Scratch> = PerCpuArray::with_max_entries(1, 0);

/// What `bpf_loop` passes to each iteration, on the program's stack.
#[repr(C)]
struct LoopContext {
    scratch: *mut Scratch,
}

#[raw_tracepoint(tracepoint = "read_task_registers")]
pub fn read_task_registers(ctx: RawTracePointContext) -> i32 {
    let Some(scratch) = TASK_SCRATCH.get_ptr_mut(0) else {
        return 0;
    };
    // SAFETY: a raw tracepoint's context is its argument array, and userspace's test run
    // passes all 12; `scratch` is this CPU's slot, used by nothing else during the run.
    unsafe {
        let s = &mut *scratch;
        // One load per argument at a constant offset: the verifier allows no other access
        // to a raw tracepoint's context (a copy of the array is a loop over it).
        let context = ctx.as_ptr() as *const u64;
        s.args[arg::TGID] = core::ptr::read_volatile(context.add(arg::TGID));
        s.args[arg::TASKS] = core::ptr::read_volatile(context.add(arg::TASKS));
        s.args[arg::GROUP_LEADER] = core::ptr::read_volatile(context.add(arg::GROUP_LEADER));
        s.args[arg::SIGNAL] = core::ptr::read_volatile(context.add(arg::SIGNAL));
        s.args[arg::THREAD_HEAD] = core::ptr::read_volatile(context.add(arg::THREAD_HEAD));
        s.args[arg::THREAD_NODE] = core::ptr::read_volatile(context.add(arg::THREAD_NODE));
        s.args[arg::PID] = core::ptr::read_volatile(context.add(arg::PID));
        s.args[arg::TGID_FIELD] = core::ptr::read_volatile(context.add(arg::TGID_FIELD));
        s.args[arg::STACK] = core::ptr::read_volatile(context.add(arg::STACK));
        let args = s.args;
        s.walk = TaskWalk::default();
        s.leader = 0;
        let current = bpf_get_current_task();
        // A thread other than a leader is on no `tasks` list: start from the leader.
        let Some(start) = read_u64(current.wrapping_add(args[arg::GROUP_LEADER])) else {
            return finish(s, true);
        };
        s.start = start;
        s.at = start;
        if read_u32(start.wrapping_add(args[arg::TGID_FIELD])) == Some(args[arg::TGID] as u32) {
            s.leader = start;
            s.walk.found = 1;
        } else {
            let mut context = LoopContext { scratch };
            let done = bpf_loop(
                TASK_WALK_MAX_PROCESSES,
                next_process as *mut c_void,
                core::ptr::addr_of_mut!(context).cast(),
                0,
            );
            if done == i64::from(TASK_WALK_MAX_PROCESSES) && s.walk.found == 0 {
                s.walk.cut = 1;
            }
        }
        if s.walk.found == 0 || s.walk.failed != 0 {
            return finish(s, false);
        }
        let Some(signal) = read_u64(s.leader.wrapping_add(args[arg::SIGNAL])) else {
            return finish(s, true);
        };
        s.head = signal.wrapping_add(args[arg::THREAD_HEAD]);
        let Some(first) = read_u64(s.head) else {
            return finish(s, true);
        };
        s.node = first;
        let mut context = LoopContext { scratch };
        let done = bpf_loop(
            TASK_REGISTERS_MAX + 1,
            next_thread as *mut c_void,
            core::ptr::addr_of_mut!(context).cast(),
            0,
        );
        if done == i64::from(TASK_REGISTERS_MAX + 1) {
            s.walk.cut = 1;
        }
        finish(s, false)
    }
}

/// Publishes the summary.
fn finish(scratch: &mut Scratch, failed: bool) -> i32 {
    if failed {
        scratch.walk.failed = 1;
    }
    if let Some(out) = TASK_WALK.get_ptr_mut(0) {
        // SAFETY: a map value, valid for the run.
        unsafe { *out = scratch.walk };
    }
    0
}

/// One leader further along `tasks`; 1 stops (found, back at the start, or a failed read).
///
/// # Safety
/// `ctx` is the program's `LoopContext`.
#[inline(never)]
unsafe extern "C" fn next_process(_index: u64, ctx: *mut c_void) -> i64 {
    // SAFETY: see above; the iterations run one after another.
    let s = unsafe { &mut *(*ctx.cast::<LoopContext>()).scratch };
    let tasks = s.args[arg::TASKS];
    let Some(next) = read_u64(s.at.wrapping_add(tasks)) else {
        s.walk.failed = 1;
        return 1;
    };
    let task = next.wrapping_sub(tasks);
    if task == s.start {
        return 1;
    }
    s.walk.processes += 1;
    match read_u32(task.wrapping_add(s.args[arg::TGID_FIELD])) {
        Some(tgid) if tgid == s.args[arg::TGID] as u32 => {
            s.leader = task;
            s.walk.found = 1;
            1
        }
        Some(_) => {
            s.at = task;
            0
        }
        None => {
            s.walk.failed = 1;
            1
        }
    }
}

/// One thread of the process: its stack tops into `TASK_REGISTERS`; 1 stops.
///
/// # Safety
/// As [`next_process`].
#[inline(never)]
unsafe extern "C" fn next_thread(_index: u64, ctx: *mut c_void) -> i64 {
    // SAFETY: see `next_process`.
    let s = unsafe { &mut *(*ctx.cast::<LoopContext>()).scratch };
    if s.node == s.head || s.node == 0 {
        return 1;
    }
    let task = s.node.wrapping_sub(s.args[arg::THREAD_NODE]);
    let (Some(tid), Some(stack), Some(next)) = (
        read_u32(task.wrapping_add(s.args[arg::PID])),
        read_u64(task.wrapping_add(s.args[arg::STACK])),
        read_u64(s.node),
    ) else {
        s.walk.failed = 1;
        return 1;
    };
    s.walk.threads += 1;
    s.record.tid = tid;
    s.record.read = 0;
    for (i, size) in TASK_STACK_SIZES.into_iter().enumerate() {
        let top = stack.wrapping_add(size) - 8 * TASK_STACK_TOP_WORDS as u64;
        // SAFETY: the destination is the scratch record's array (a map value); the source
        // is checked by the helper.
        let dst = unsafe {
            core::slice::from_raw_parts_mut(
                s.record.tops[i].as_mut_ptr().cast::<u8>(),
                8 * TASK_STACK_TOP_WORDS,
            )
        };
        // SAFETY: bpf_probe_read_kernel_buf checks the source; a fault is an error.
        if unsafe { bpf_probe_read_kernel_buf(top as *const u8, dst) }.is_ok() {
            s.record.read |= 1 << i;
        }
    }
    // By reference: the record is a map value, and a copy would not fit the BPF stack.
    #[allow(clippy::needless_borrows_for_generic_args)]
    let stored = TASK_REGISTERS.insert(tid, &s.record, 0);
    if stored.is_ok() {
        s.walk.stored += 1;
    }
    s.node = next;
    0
}

#[inline(always)]
fn read_u64(address: u64) -> Option<u64> {
    // SAFETY: bpf_probe_read_kernel checks the address; a fault is an error, not a crash.
    unsafe { bpf_probe_read_kernel(address as *const u64) }.ok()
}

#[inline(always)]
fn read_u32(address: u64) -> Option<u32> {
    // SAFETY: as `read_u64`.
    unsafe { bpf_probe_read_kernel(address as *const u32) }.ok()
}
