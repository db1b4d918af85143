//! Python frames for CPython 3.8–3.13: the userspace half.
//!
//! Pieces, in the order a profiler uses them:
//! - [`discover`]: from a pid, find the CPython image in `/proc/PID/maps`, its version and
//!   the address of `_PyRuntime`, and pick the [`offsets::PyLayout`] for it
//!   ([`discover::PythonProcess`]); [`crate::elf`] supplies the load bias and the
//!   `.PyRuntime` section fallback.
//! - [`offsets`]: the one description of a CPython build. 3.8–3.12 come from a table
//!   generated from each interpreter's own headers (`python/generate.sh`, `layouts.rs`);
//!   3.13 reads `_Py_DebugOffsets` from the target at run time.
//! - [`memory`]: the [`memory::ProcessMemory`] trait (`process_vm_readv` or fake memory).
//! - [`threads`]: interpreters → thread states, each with its kernel thread id
//!   (`PythonProcess::threads`, `PythonProcess::thread(tid)`).
//! - [`frames`]: the userspace frame walker. It yields exactly what the kernel walker will
//!   record per frame: `(code object address, bytecode byte offset)`.
//! - [`code`] and [`linetable`]: code objects → qualified name, file, first line, and the
//!   line of a bytecode offset; [`code::CodeCache`] caches them per (pid, code address).
//! - [`thread_names`]: kernel tid → `threading` name, read from `threading._active`
//!   (`thread_names::thread_names`); it uses the readers of plain objects: [`object`]
//!   (type checks, `str`), [`dict`] (dict entries and instance attributes) and [`long`]
//!   (`int`).
//!
//! # What the kernel walker needs (per pid, e.g. a BPF hash map keyed by tgid)
//! - the address of the thread's `PyThreadState`: walk once from `_PyRuntime`
//!   (`runtime_interpreters_head`, `interp_next`, `interp_threads_head`, `tstate_next`) and
//!   match `tstate_native_thread_id` (3.11+) or the `pthread_t` in `tstate_thread_id`
//!   (3.8–3.10, see [`threads`]) against the sampled tid — or let userspace fill a
//!   tid → tstate map from [`threads::python_threads`];
//! - `tstate_frame`, then `cframe_current_frame` when present (3.11–3.12: two hops);
//! - per frame: `frame_previous`, `frame_code`, `frame_instr` and the [`offsets::InstrKind`];
//!   `frame_owner` + `frame_owned_by_cstack` (3.12+) to skip shim frames without counting
//!   them; `code_code_adaptive` (3.11+) to turn an instruction pointer into a byte offset:
//!   `offset = instr_ptr - (code + code_code_adaptive)` (clamped at 0); 3.10's `f_lasti` is
//!   in code units (×2), 3.8–3.9's in bytes;
//! - a frame bound (128+) and the rule that a frame pointing to itself ends the walk.
//!
//! Everything else (names, files, lines) stays in userspace: the kernel records
//! `(code address, byte offset)` pairs and [`code::CodeCache`] turns them into
//! `qualname (file:line)` after the window.
//!
//! A typical userspace use:
//!
//! ```no_run
//! use probe_user::python::{code::CodeCache, discover::discover, frames::walk, memory::LiveMemory};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let (pid, tid) = (1234, 1235);
//! let proc = discover(pid)?;
//! let mem = LiveMemory::new(pid);
//! let mut cache = CodeCache::new();
//! if let Some(thread) = proc.thread(&mem, tid)? {
//!     for frame in walk(&proc.layout, &mem, thread.tstate)?.frames {
//!         let code = cache.get(pid, &proc.layout, &mem, frame.code)?;
//!         println!("{} ({}:{:?})", code.qualname, code.filename, code.line_for(frame.offset));
//!     }
//! }
//! # Ok(())
//! # }
//! ```

pub mod code;
pub mod dict;
pub mod discover;
pub mod dump;
/// The ELF reader now shared with symbolization; still reachable here for existing users
/// (`probe-user/tests/python_real.rs`).
pub use crate::elf;
pub mod frames;
pub mod kernel;
mod layouts;
pub mod linetable;
pub mod long;
pub mod memory;
pub mod object;
pub mod offsets;
#[cfg(test)]
pub(crate) mod testutil;
pub mod thread_names;
pub mod threads;
