//! The in-memory model that flows between the stages:
//! observe (kernel) -> `collect` (a [`Recording`], raw addresses) -> `symbolize` (a
//! [`Profile`], interned frames) -> an analysis (`report`: spin; `profile`: record) ->
//! an output. Both are plain data (serde), so the later stages can be fed recorded data in
//! unit tests without root or BPF. What is not data (the mapped files held open, each
//! interpreter's layout) rides along in [`Resources`], a side table that serde skips.

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
    /// What ended it early, as a user would name it (`Ctrl-C`, `SIGTERM`).
    #[serde(default)]
    pub interrupted_by: Option<String>,
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
    /// Children of targets that could not be added to the filter (map full): not observed.
    #[serde(default)]
    pub targets_dropped: u64,
    /// Off-CPU stacks not recorded because the map of blocked threads was full.
    #[serde(default)]
    pub off_cpu_dropped: u64,
    /// Sampled syscall arguments lost because their ring buffer was full.
    #[serde(default)]
    pub syscall_args_lost: u64,
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
    /// On-CPU sample, or the stack a thread blocked with.
    #[serde(default)]
    pub kind: SampleKind,
    pub user: Vec<u64>,
    pub kernel: Vec<u64>,
    /// The kernel could not read the user stack at all.
    pub user_error: bool,
    /// The kernel unwound the user stack with `.eh_frame` tables (else by frame pointer).
    #[serde(default)]
    pub user_tables: bool,
    /// The table unwinder reached the outermost frame: the user stack is whole.
    #[serde(default)]
    pub user_complete: bool,
    /// Why the table unwinder stopped early (an `UNWIND_STOP_*` value), or 0.
    #[serde(default)]
    pub user_stop: u8,
    /// Python frames recorded by the kernel, innermost first. Empty for non-Python threads.
    pub python: Vec<PyRawFrame>,
    /// The kernel's Python walk stopped before the outermost frame.
    pub python_truncated: bool,
    /// Which snapshot of the process's maps names the user frames (a process gets a new
    /// one when it execs or a mapping is replaced).
    #[serde(default)]
    pub maps_generation: u32,
    /// Sampled while a mapping of the process was replaced by another: an address in a
    /// replaced range (see [`MapsChange`]) may belong to either, so the stack stops there.
    #[serde(default)]
    pub maps_changed: bool,
    /// The syscall the thread was in (its number), from the registers it entered the
    /// kernel with; `None` in user mode, an interrupt or an exception.
    #[serde(default)]
    pub syscall: Option<u32>,
}

/// Mappings of a process replaced by others (a library unloaded, another loaded at its
/// address) between two checks of its maps.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MapsChange {
    pub pid: u32,
    /// The generation of the maps that held the old mappings.
    pub generation: u32,
    /// [start, end) of the old mappings that were replaced.
    pub ranges: Vec<(u64, u64)>,
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
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
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
    /// On-CPU samples by CPU.
    #[serde(default)]
    pub samples_by_cpu: BTreeMap<u32, u64>,
    /// Sampled syscall arguments: syscall number -> the key argument, as shown ("/",
    /// `fd 3 → "/etc/hosts"`), -> how many samples had it.
    #[serde(default)]
    pub syscall_args: BTreeMap<u32, BTreeMap<String, u64>>,
    /// Samples aggregated by raw stack as they arrive, so memory follows the number of
    /// distinct stacks, not the duration.
    #[serde(with = "pairs")]
    pub stacks: HashMap<RawStack, StackStats>,
}

/// The samples of one thread with one raw stack.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StackStats {
    /// On-CPU: samples. Off-CPU: times the thread blocked with this stack.
    pub count: u64,
    /// Off-CPU only: nanoseconds blocked.
    pub off_cpu_ns: u64,
    /// CLOCK_MONOTONIC of the first and the latest sample.
    pub first_ns: u64,
    pub last_ns: u64,
}

impl StackStats {
    /// Adds one sample taken at `time_ns` (blocked for `off_cpu_ns`).
    pub fn add(&mut self, time_ns: u64, off_cpu_ns: u64) {
        if self.count == 0 || time_ns < self.first_ns {
            self.first_ns = time_ns;
        }
        self.last_ns = self.last_ns.max(time_ns);
        self.count += 1;
        self.off_cpu_ns += off_cpu_ns;
    }
}

/// `HashMap`s with non-string keys as a list of pairs, which JSON can hold.
mod pairs {
    use std::collections::HashMap;
    use std::hash::Hash;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S, K, V>(map: &HashMap<K, V>, serializer: S) -> Result<S::Ok, S::Error>
    where
        S: Serializer,
        K: Serialize,
        V: Serialize,
    {
        serializer.collect_seq(map.iter())
    }

    pub fn deserialize<'de, D, K, V>(deserializer: D) -> Result<HashMap<K, V>, D::Error>
    where
        D: Deserializer<'de>,
        K: Deserialize<'de> + Eq + Hash,
        V: Deserialize<'de>,
    {
        let pairs: Vec<(K, V)> = Vec::deserialize(deserializer)?;
        Ok(pairs.into_iter().collect())
    }
}

/// Everything collected over one observation, before symbolization: plain data, apart
/// from the [`Resources`] it carries for symbolization.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Recording {
    pub window: Window,
    pub frequency_hz: u64,
    pub online_cpus: u32,
    /// Processes the user asked for (`--pid`, or the spawned command and what it forked);
    /// empty means the whole machine.
    pub target_pids: Vec<u32>,
    pub threads: BTreeMap<u32, ThreadRecord>,
    pub processes: BTreeMap<u32, ProcessInfo>,
    pub loss: LossCounters,
    /// One-line notices for the user (partial data, degraded features).
    pub notices: Vec<String>,
    /// Cost of each kernel program, read just before detaching.
    pub program_stats: Vec<ProgramStats>,
    /// Mappings replaced while sampled.
    #[serde(default)]
    pub maps_changes: Vec<MapsChange>,
    /// The code objects of the recorded Python frames by (pid, code address), read while
    /// the processes ran; `None` for one that could not be read.
    #[serde(with = "pairs")]
    pub python_code: HashMap<(u32, u64), Option<Arc<CodeInfo>>>,
    /// What the `.eh_frame` unwind tables cost and where they fell short.
    #[serde(default)]
    pub unwind: crate::collect::UnwindSummary,
    /// Not data: what symbolization needs from the live system.
    #[serde(skip)]
    pub resources: Resources,
}

/// The side table of a [`Recording`]: handles to the observed system, not data.
#[derive(Debug, Default)]
pub struct Resources {
    /// Memory maps of each process with samples, captured while it was alive, with the
    /// mapped files held open so symbolization works after it exits or its binary is
    /// replaced.
    /// By (pid, generation): see [`RawStack::maps_generation`].
    pub process_maps: BTreeMap<(u32, u32), crate::procmaps::ProcessMaps>,
    /// The CPython processes whose frames the kernel walked, by pid, with their layouts.
    pub python: BTreeMap<u32, crate::python::discover::PythonProcess>,
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

/// One symbolized frame: one function at one address. Where calls were inlined, one
/// address gives several frames, innermost first, all but the last marked `inlined`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Frame {
    pub kind: FrameKind,
    /// Function name (demangled) when known.
    pub function: Option<String>,
    /// Binary or shared object file name, `[kernel]` or a kernel module name; the key of
    /// [`Profile::modules`].
    pub module: String,
    /// Offset of the address in `module` (file offset for user code), for frames without a
    /// name and to tell frames apart.
    pub module_offset: u64,
    pub file: Option<String>,
    pub line: Option<u32>,
    /// The address the sample recorded: a virtual address in the process for user frames,
    /// a kernel address for kernel frames, the code object's address for Python frames.
    #[serde(default)]
    pub address: u64,
    /// Inlined into the next (outer) frame, which has the same address.
    #[serde(default)]
    pub inlined: bool,
}

/// Index of a frame in [`Profile::frames`].
pub type FrameId = u32;
/// Index of a stack in [`Profile::stacks`].
pub type StackId = u32;

/// One distinct symbolized stack: frames innermost first (kernel, then user with Python
/// frames in place of the eval loop's), each an index into [`Profile::frames`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Stack {
    pub frames: Vec<FrameId>,
    /// The unwinder stopped before the thread's entry point (broken frame-pointer chain,
    /// depth limit, unreadable stack): frames beyond the last one are unknown.
    pub truncated: bool,
}

/// What a sample measures.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum SampleKind {
    /// Taken by the on-CPU sampler while the thread ran.
    #[default]
    OnCpu,
    /// The stack a thread had when it left the CPU to block (`record --off-cpu`).
    OffCpu,
}

/// The samples of one thread that share one stack.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StackSamples {
    pub stack: StackId,
    pub kind: SampleKind,
    /// On-CPU: samples taken. Off-CPU: times the thread blocked with this stack.
    pub count: u64,
    /// On-CPU: `count` sampling periods (1 s / frequency each). Off-CPU: nanoseconds spent
    /// off the CPU, blocked with this stack.
    pub weight_ns: u64,
    /// The syscall these samples were taken in (its name), when they were in one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub syscall: Option<String>,
}

/// A binary, library or the kernel that frames belong to, for outputs that describe them
/// (pprof's mappings).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModuleInfo {
    /// The name frames use ([`Frame::module`]).
    pub name: String,
    /// Its path in the process's mount namespace, when it is a file.
    pub path: Option<String>,
    /// The GNU build-id, lowercase hex, when the file has one.
    pub build_id: Option<String>,
}

/// Per-thread data after symbolization.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
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
    /// Sampled syscall arguments (see [`ThreadRecord::syscall_args`]).
    #[serde(default)]
    pub syscall_args: BTreeMap<u32, BTreeMap<String, u64>>,
    /// Samples by stack, hottest first; each stack appears once per kind.
    pub samples: Vec<StackSamples>,
}

/// Everything the analyses and outputs need: a [`Recording`] with its stacks symbolized.
/// Frames and stacks are interned: threads refer to stacks, stacks to frames, by index.
/// No frames are merged here: two addresses in one function are two frames (each with its
/// own line); merging by function is the business of an analysis that wants it.
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
    pub frames: Vec<Frame>,
    pub stacks: Vec<Stack>,
    /// Every module a frame names, by name.
    pub modules: BTreeMap<String, ModuleInfo>,
}

impl Profile {
    /// The frames of `stack`, innermost first.
    pub fn stack_frames(&self, stack: StackId) -> impl Iterator<Item = &Frame> + '_ {
        let ids = self.stacks.get(stack as usize).map(|s| s.frames.as_slice());
        ids.unwrap_or_default()
            .iter()
            .filter_map(|&id| self.frames.get(id as usize))
    }

    /// Whether `stack` is marked truncated.
    pub fn stack_truncated(&self, stack: StackId) -> bool {
        self.stacks.get(stack as usize).is_some_and(|s| s.truncated)
    }

    /// The index of the stack made of `frames`, adding the stack and any new frames.
    pub fn intern_stack(
        &mut self,
        frames: &[Frame],
        truncated: bool,
        index: &mut Interner,
    ) -> StackId {
        let ids: Vec<FrameId> = frames
            .iter()
            .map(|frame| match index.frames.get(frame) {
                Some(&id) => id,
                None => {
                    let id = self.frames.len() as FrameId;
                    self.frames.push(frame.clone());
                    index.frames.insert(frame.clone(), id);
                    id
                }
            })
            .collect();
        let stack = Stack {
            frames: ids,
            truncated,
        };
        if let Some(&id) = index.stacks.get(&stack) {
            return id;
        }
        let id = self.stacks.len() as StackId;
        self.stacks.push(stack.clone());
        index.stacks.insert(stack, id);
        id
    }
}

/// Lookup tables for [`Profile::intern_stack`], kept beside the profile while it is built.
#[derive(Debug, Default)]
pub struct Interner {
    frames: HashMap<Frame, FrameId>,
    stacks: HashMap<Stack, StackId>,
}
