//! The in-memory model that flows between the stages:
//! kernel -> `collect` (a [`Recording`], raw addresses) -> `symbolize` (a [`Profile`],
//! named frames) -> `report`. Both are plain data (serde), so the later stages can be fed
//! recorded data in unit tests without root or BPF.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::python::code::CodeInfo;

/// The observation window.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Window {
    /// What the user asked for (`-d`).
    pub requested_ns: u64,
    /// What was actually observed (shorter when interrupted).
    pub duration_ns: u64,
    /// Ended early by Ctrl-C / SIGTERM.
    pub interrupted: bool,
}

/// Events the kernel side saw or had to drop. Reported, never hidden.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct LossCounters {
    /// Stack samples taken of in-scope, non-idle threads.
    pub samples: u64,
    /// Samples lost because the ring buffer was full.
    pub samples_lost: u64,
    /// Threads whose scheduler statistics could not be kept (map full).
    pub threads_dropped: u64,
    /// Syscalls not counted because the per-thread syscall map was full.
    pub syscalls_dropped: u64,
}

/// What one kernel program cost over the window, from the kernel's BPF statistics
/// (all zero unless `kernel.bpf_stats_enabled` is 1).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ProgramStats {
    pub program: String,
    pub run_time_ns: u64,
    pub run_count: u64,
}

/// What is known about a process in scope (read from /proc when first seen).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ProcessInfo {
    pub pid: u32,
    /// `comm` of the process (its main thread).
    pub name: String,
    /// argv; empty for kernel threads or when it could not be read.
    pub cmdline: Vec<String>,
    /// Gone by the end of the window.
    pub exited: bool,
}

/// Raw stack of one sample: addresses innermost first, as the kernel returned them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RawStack {
    pub user: Vec<u64>,
    pub kernel: Vec<u64>,
    /// The kernel could not read the user stack at all.
    pub user_error: bool,
    /// Python frames recorded by the kernel, innermost first. Empty for non-Python threads.
    pub python: Vec<PyRawFrame>,
    /// The kernel's Python walk stopped before the outermost frame.
    pub python_truncated: bool,
}

/// One Python frame as the kernel recorded it.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct PyRawFrame {
    /// Address of the code object in the process.
    pub code: u64,
    /// Byte offset of the current instruction in the code's bytecode.
    pub offset: u32,
    /// The outermost frame run by its call of the eval loop: the next frame, if any,
    /// belongs to another `_PyEval_EvalFrameDefault` further out on the native stack.
    pub call_entry: bool,
}

/// Per-thread data before symbolization.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ThreadRecord {
    pub tid: u32,
    pub pid: u32,
    /// OS thread name (`comm`).
    pub name: String,
    /// The `threading` name of a Python thread.
    pub python_name: Option<String>,
    pub on_cpu_ns: u64,
    pub voluntary_switches: u64,
    pub involuntary_switches: u64,
    pub exited: bool,
    /// Samples that hit user mode / kernel mode.
    pub user_samples: u64,
    pub kernel_samples: u64,
    /// Syscall number -> count.
    pub syscalls: BTreeMap<u32, u64>,
    pub stacks: HashMap<RawStack, u64>,
}

/// Everything collected over one window, before symbolization.
#[derive(Debug, Default)]
pub struct Recording {
    pub window: Window,
    pub frequency_hz: u64,
    pub online_cpus: u32,
    /// Processes the user asked for (`--pid`); empty means the whole machine.
    pub target_pids: Vec<u32>,
    pub threads: BTreeMap<u32, ThreadRecord>,
    pub processes: BTreeMap<u32, ProcessInfo>,
    pub loss: LossCounters,
    /// One-line notices for the user (partial data, degraded features).
    pub notices: Vec<String>,
    /// Memory maps of each process with samples, captured while it was alive, with the
    /// mapped files held open so symbolization works after it exits or its binary is
    /// replaced.
    pub process_maps: BTreeMap<u32, crate::procmaps::ProcessMaps>,
    /// Cost of each kernel program, read just before detaching.
    pub program_stats: Vec<ProgramStats>,
    /// The CPython processes whose frames the kernel walked, by pid.
    pub python: BTreeMap<u32, crate::python::discover::PythonProcess>,
    /// The code objects of the recorded Python frames by (pid, code address), read while
    /// the processes ran; `None` for one that could not be read.
    pub python_code: HashMap<(u32, u64), Option<Arc<CodeInfo>>>,
}

/// Which side of the system call boundary a frame belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FrameKind {
    User,
    Kernel,
    /// A CPython function: `function` is its qualified name, `module` and `file` its
    /// source file, `module_offset` the bytecode offset.
    Python,
}

/// One symbolized frame.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Frame {
    pub kind: FrameKind,
    /// Function name (demangled) when known.
    pub function: Option<String>,
    /// Binary or shared object file name, `[kernel]` or a kernel module name.
    pub module: String,
    /// Offset of the address in `module` (file offset for user code), for frames without a
    /// name and to tell frames apart.
    pub module_offset: u64,
    pub file: Option<String>,
    pub line: Option<u32>,
}

/// A symbolized stack, innermost frame first, with how many samples hit it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StackCount {
    pub frames: Vec<Frame>,
    /// The unwinder stopped before the thread's entry point (broken frame-pointer chain,
    /// depth limit, unreadable stack): frames beyond the last one are unknown.
    pub truncated: bool,
    pub count: u64,
}

/// Per-thread data after symbolization.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ThreadProfile {
    pub tid: u32,
    pub pid: u32,
    pub name: String,
    /// The `threading` name of a Python thread.
    pub python_name: Option<String>,
    pub on_cpu_ns: u64,
    pub voluntary_switches: u64,
    pub involuntary_switches: u64,
    pub exited: bool,
    pub user_samples: u64,
    pub kernel_samples: u64,
    /// (syscall number, count), any order.
    pub syscalls: Vec<(u32, u64)>,
    /// Stacks merged by identical frames, any order.
    pub stacks: Vec<StackCount>,
}

/// Everything the reports need: a [`Recording`] with its stacks symbolized.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    pub window: Window,
    pub frequency_hz: u64,
    pub online_cpus: u32,
    pub target_pids: Vec<u32>,
    pub threads: Vec<ThreadProfile>,
    pub processes: BTreeMap<u32, ProcessInfo>,
    pub loss: LossCounters,
    pub notices: Vec<String>,
}
