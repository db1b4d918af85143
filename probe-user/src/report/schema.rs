//! The spin report as data: what `analyze` produces and both renderers read. These types
//! are the `--json` schema (version [`SCHEMA_VERSION`]), so their field names are a
//! contract with scripts and the integration tests; they are deliberately separate from
//! the model's types so that a change in collection cannot silently change the output.

use serde::{Deserialize, Serialize};

use crate::model::{Frame, FrameKind, LossCounters};

/// Version of the JSON layout; bump it when a field is renamed, removed or changes meaning.
pub const SCHEMA_VERSION: u32 = 2;

/// Everything the spin command found, ready to render.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SpinReport {
    /// [`SCHEMA_VERSION`] of the producer.
    pub schema_version: u32,
    /// Always `"spin"`, so a consumer can tell reports of different commands apart.
    pub command: String,
    pub window: WindowInfo,
    /// Sampling frequency per CPU.
    pub frequency_hz: u64,
    pub online_cpus: u32,
    pub scope: Scope,
    /// A thread at or above this share of one CPU is spinning.
    pub threshold_pct: f64,
    pub loss: Loss,
    /// One-line notices from the earlier stages (partial data, degraded features).
    pub notices: Vec<String>,
    /// Threads at or above the threshold, busiest first; never cut to `top`.
    pub spinning: Vec<ThreadReport>,
    /// When nothing spins: the busiest threads below the threshold. Empty otherwise.
    pub busiest: Vec<ThreadReport>,
}

/// The observation window, in seconds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WindowInfo {
    /// What the user asked for.
    pub requested_secs: f64,
    /// What was observed; shorter than requested when interrupted.
    pub duration_secs: f64,
    /// Ended early by Ctrl-C / SIGTERM: the numbers cover a partial window.
    pub interrupted: bool,
    /// What ended it early (`Ctrl-C`, `SIGTERM`); absent when it ran its course.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interrupted_by: Option<String>,
}

/// Which processes were watched.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scope {
    /// Target processes; empty means the whole machine.
    pub pids: Vec<u32>,
}

/// Events the kernel side saw or had to drop; always present so a consumer can tell
/// "nothing lost" from "not reported".
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Loss {
    /// Stack samples taken of in-scope, non-idle threads.
    pub samples: u64,
    /// Samples lost because the ring buffer was full.
    pub samples_lost: u64,
    /// Threads whose scheduler statistics could not be kept.
    pub threads_dropped: u64,
    /// Syscalls not counted because the syscall map was full.
    pub syscalls_dropped: u64,
}

impl Loss {
    /// Whether anything was dropped, i.e. the numbers undercount.
    pub fn any(&self) -> bool {
        self.samples_lost > 0 || self.threads_dropped > 0 || self.syscalls_dropped > 0
    }
}

impl From<&LossCounters> for Loss {
    fn from(loss: &LossCounters) -> Self {
        Self {
            samples: loss.samples,
            samples_lost: loss.samples_lost,
            threads_dropped: loss.threads_dropped,
            syscalls_dropped: loss.syscalls_dropped,
        }
    }
}

/// The facts about one thread.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ThreadReport {
    pub pid: u32,
    pub tid: u32,
    /// `comm` of the process, or the thread's own name when the process is unknown.
    pub process_name: String,
    /// argv of the process; empty for kernel threads or when unreadable.
    pub cmdline: Vec<String>,
    /// OS thread name (`comm` of the thread).
    pub thread_name: String,
    /// The `threading` name of a Python thread ("MainThread", "Thread-1 (worker)");
    /// `None` for other threads.
    pub python_thread_name: Option<String>,
    /// The thread or its process was gone by the end of the window.
    pub exited: bool,
    /// On-CPU time as a share of one CPU over the window.
    pub cpu_pct: f64,
    /// `cpu_pct` split by the user : kernel sample ratio; `None` without samples.
    pub user_pct: Option<f64>,
    /// See `user_pct`.
    pub kernel_pct: Option<f64>,
    pub voluntary_switches: u64,
    pub involuntary_switches: u64,
    /// All syscalls of the thread per second of window.
    pub syscalls_per_sec: f64,
    /// The most frequent syscalls, most frequent first.
    pub syscalls: Vec<SyscallRate>,
    pub classification: Classification,
    /// The innermost frame common to most samples: where the loop is.
    pub loop_in: Option<LoopIn>,
    /// Stack samples of the thread (the denominator of every `share`).
    pub samples: u64,
    /// The hottest stacks, hottest first.
    pub stacks: Vec<StackReport>,
}

/// How often a thread made one syscall.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SyscallRate {
    pub name: String,
    pub nr: u32,
    pub count: u64,
    pub per_sec: f64,
    /// The most frequent values of its key argument (path, fd and what it points at,
    /// futex address) among the calls whose arguments were sampled; absent when none
    /// were.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<SyscallArg>,
    /// The share (0..1) of the thread's on-CPU samples taken inside this syscall (read
    /// from the registers the thread entered the kernel with): the part of its CPU time
    /// the syscall takes. Absent when the thread has no samples.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sampled_share: Option<f64>,
}

/// One value of a syscall's key argument and its share of the sampled calls.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SyscallArg {
    pub value: String,
    /// 0..1.
    pub share: f64,
    /// Calls sampled with it.
    pub samples: u64,
}

/// What kind of spinning the numbers point at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SpinKind {
    /// Mostly user-space code, few syscalls: a loop in the program itself.
    UserLoop,
    /// Thousands of syscalls a second: the loop goes through the kernel.
    SyscallStorm,
    /// A syscall storm of poll-family calls: a wait that never waits.
    PollStorm,
    /// Most samples in the kernel without a syscall storm (page faults, locks, I/O paths).
    KernelBound,
}

impl SpinKind {
    /// The name used in JSON and text.
    pub fn as_str(self) -> &'static str {
        match self {
            SpinKind::UserLoop => "user_loop",
            SpinKind::SyscallStorm => "syscall_storm",
            SpinKind::PollStorm => "poll_storm",
            SpinKind::KernelBound => "kernel_bound",
        }
    }
}

/// A classification with the numbers that led to it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Classification {
    pub kind: SpinKind,
    /// One line with the numbers behind `kind`.
    pub evidence: String,
}

/// The frame the loop is in, with how many of the thread's samples contain it. In JSON the
/// frame's fields sit beside `share`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LoopIn {
    /// Python frame, else native user frame, else kernel frame: the first kind with a
    /// function common enough.
    #[serde(flatten)]
    pub frame: StackFrame,
    /// Fraction (0..=1) of the thread's samples whose stack contains this function.
    pub share: f64,
    /// When the loop is in native code called from Python (a C extension, a library
    /// called through ctypes): the innermost Python function common to most samples.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub called_from: Option<StackFrame>,
}

/// One of the hottest stacks of a thread.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StackReport {
    /// Fraction (0..=1) of the thread's samples.
    pub share: f64,
    pub count: u64,
    /// Unwinding stopped before the thread's entry point.
    pub truncated: bool,
    /// Innermost first: kernel frames, then user frames with Python frames in place of
    /// the eval-loop frames that ran them.
    pub frames: Vec<StackFrame>,
}

/// One frame of a stack, as the report shows it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct StackFrame {
    pub kind: FrameKind,
    /// Function name (demangled) when known.
    pub function: Option<String>,
    /// Binary or shared object file name, `[kernel]`, a kernel module name, or a Python
    /// frame's source file.
    pub module: String,
    /// Offset in `module` (file offset for user code, bytecode offset for Python).
    pub module_offset: u64,
    pub file: Option<String>,
    pub line: Option<u32>,
}

impl From<&Frame> for StackFrame {
    fn from(frame: &Frame) -> Self {
        StackFrame {
            kind: frame.kind,
            function: frame.function.clone(),
            module: frame.module.clone(),
            module_offset: frame.module_offset,
            file: frame.file.clone(),
            line: frame.line,
        }
    }
}
