//! Interpreters → thread states, each with the kernel thread id it runs on.
//!
//! 3.11+ store the kernel tid in `PyThreadState.native_thread_id`. 3.8–3.10 store only the
//! `pthread_t`, which in glibc is the address of the thread's `struct pthread`; that struct
//! holds the kernel tid at an offset that depends on the glibc build. [`pthread_tid_offset`]
//! finds it once by looking at probe's own threads. This assumes the target uses the same
//! glibc as probe (true on one machine for normally linked programs; not for musl, static or
//! containerized targets with another libc), so every tid read this way is checked against
//! `/proc/PID/task` and dropped (reported as `None`) if the process has no such thread.

use std::collections::HashSet;
use std::sync::OnceLock;

use super::discover::PythonProcess;
use super::memory::{LiveMemory, MemoryError, ProcessMemory, ReadExt};
use super::offsets::PyLayout;

/// Most thread states returned (and interpreters visited) per process.
pub const MAX_THREADS: usize = 4096;

/// One `PyThreadState` of the target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PyThread {
    /// Address of the `PyThreadState`.
    pub tstate: u64,
    /// `PyThreadState.thread_id`: the `pthread_t`.
    pub pthread: u64,
    /// The kernel thread id, if known and validated.
    pub tid: Option<u32>,
}

impl PythonProcess {
    /// Every Python thread of this process (see [`python_threads`]).
    pub fn threads(&self, mem: &dyn ProcessMemory) -> Result<Vec<PyThread>, MemoryError> {
        python_threads(&self.layout, mem, self.pid, self.runtime_addr)
    }

    /// The Python thread running on kernel thread `tid`, if any.
    pub fn thread(
        &self,
        mem: &dyn ProcessMemory,
        tid: u32,
    ) -> Result<Option<PyThread>, MemoryError> {
        find_thread(&self.layout, mem, self.pid, self.runtime_addr, tid)
    }
}

/// Every thread state of every interpreter, newest first, bounded by [`MAX_THREADS`]
/// (cycles are cut). `pid` is the target, used to validate tids recovered from `pthread_t`.
pub fn python_threads(
    layout: &PyLayout,
    mem: &dyn ProcessMemory,
    pid: u32,
    runtime: u64,
) -> Result<Vec<PyThread>, MemoryError> {
    let tstates = thread_states(layout, mem, runtime)?;
    let live_tids = task_ids(pid);
    let mut threads = Vec::with_capacity(tstates.len());
    for tstate in tstates {
        let pthread = mem.read_u64(tstate.wrapping_add(layout.tstate_thread_id))?;
        let tid = match layout.tstate_native_thread_id {
            Some(off) => mem.read_u32(tstate.wrapping_add(off)).ok(),
            None => tid_from_pthread(mem, pthread),
        };
        let tid = tid.filter(|t| live_tids.as_ref().is_none_or(|live| live.contains(t)));
        threads.push(PyThread {
            tstate,
            pthread,
            tid,
        });
    }
    Ok(threads)
}

/// The thread state running on kernel thread `tid`, if any.
pub fn find_thread(
    layout: &PyLayout,
    mem: &dyn ProcessMemory,
    pid: u32,
    runtime: u64,
    tid: u32,
) -> Result<Option<PyThread>, MemoryError> {
    let threads = python_threads(layout, mem, pid, runtime)?;
    Ok(threads.into_iter().find(|t| t.tid == Some(tid)))
}

/// Addresses of all thread states reachable from `_PyRuntime` at `runtime`.
pub fn thread_states(
    layout: &PyLayout,
    mem: &dyn ProcessMemory,
    runtime: u64,
) -> Result<Vec<u64>, MemoryError> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    let mut interp = mem.read_u64(runtime.wrapping_add(layout.runtime_interpreters_head))?;
    while interp != 0 && seen.insert(interp) && seen.len() <= MAX_THREADS {
        let mut tstate = mem.read_u64(interp.wrapping_add(layout.interp_threads_head))?;
        while tstate != 0 && out.len() < MAX_THREADS && seen.insert(tstate) {
            out.push(tstate);
            tstate = mem.read_u64(tstate.wrapping_add(layout.tstate_next))?;
        }
        interp = mem.read_u64(interp.wrapping_add(layout.interp_next))?;
    }
    Ok(out)
}

/// The tids of `pid`'s threads, or `None` if `/proc/PID/task` is unreadable (then tids
/// are not validated).
fn task_ids(pid: u32) -> Option<HashSet<u32>> {
    Some(crate::proc::task_ids(pid)?.into_iter().collect())
}

/// The kernel tid stored in the glibc `struct pthread` at `pthread`.
fn tid_from_pthread(mem: &dyn ProcessMemory, pthread: u64) -> Option<u32> {
    let offset = pthread_tid_offset()?;
    let tid = mem.read_i32(pthread.wrapping_add(offset)).ok()?;
    u32::try_from(tid).ok().filter(|&t| t > 0)
}

/// Offset of the kernel tid inside glibc's `struct pthread`, found once from probe's own
/// threads; `None` if it cannot be determined (e.g. not glibc).
pub fn pthread_tid_offset() -> Option<u64> {
    static OFFSET: OnceLock<Option<u64>> = OnceLock::new();
    *OFFSET.get_or_init(find_pthread_tid_offset)
}

/// How far into `struct pthread` to look (glibc's tid sits well inside the first KiB).
const PTHREAD_SCAN: usize = 2048;

/// Offsets where three threads (with three different tids) each store their own tid; the
/// first offset common to all is the field.
fn find_pthread_tid_offset() -> Option<u64> {
    let handles: Vec<_> = (0..3)
        .map(|_| std::thread::spawn(own_tid_offsets))
        .collect();
    let mut common: Option<HashSet<usize>> = None;
    for handle in handles {
        let found = handle.join().ok()??;
        common = Some(match common {
            None => found,
            Some(prev) => prev.intersection(&found).copied().collect(),
        });
    }
    common?.into_iter().min().map(|o| o as u64)
}

/// Offsets within the calling thread's `struct pthread` that hold its kernel tid.
fn own_tid_offsets() -> Option<HashSet<usize>> {
    // SAFETY: pthread_self and gettid have no preconditions and only return values.
    let (me, tid) = unsafe { (libc::pthread_self(), libc::gettid()) };
    let mut raw = vec![0u8; PTHREAD_SCAN];
    // Read through process_vm_readv rather than dereferencing `pthread_t`: it is opaque and
    // the scan may run past the end of the struct, which must fail softly.
    LiveMemory::new(std::process::id())
        .read(me, &mut raw)
        .ok()?;
    let want = tid.to_ne_bytes();
    let hits = (0..PTHREAD_SCAN - 3)
        .step_by(4)
        .filter(|&off| raw[off..off + 4] == want)
        .collect();
    Some(hits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pthread_tid_offset_reads_own_threads() {
        let offset = pthread_tid_offset().expect("glibc struct pthread holds the tid");
        let mem = LiveMemory::new(std::process::id());
        // SAFETY: as above; pure value-returning calls.
        let (me, tid) = unsafe { (libc::pthread_self(), libc::gettid()) };
        assert_eq!(mem.read_i32(me + offset).unwrap(), tid);
    }
}

#[cfg(test)]
mod thread_state_tests {
    use super::*;
    use crate::python::memory::FakeMemory;
    use crate::python::testutil::put_u64;

    #[test]
    fn thread_state_cycles_are_cut() {
        let l = PyLayout::table_row(3, 11).unwrap();
        let (runtime, interp, t1, t2) = (0x1000u64, 0x2000u64, 0x3000u64, 0x4000u64);
        let mut r = Vec::new();
        put_u64(&mut r, l.runtime_interpreters_head, interp);
        let mut i = Vec::new();
        put_u64(&mut i, l.interp_threads_head, t1);
        put_u64(&mut i, l.interp_next, interp); // interpreter list loops too
        let (mut a, mut b) = (Vec::new(), Vec::new());
        put_u64(&mut a, l.tstate_next, t2);
        put_u64(&mut b, l.tstate_next, t1);
        let mem = FakeMemory::new()
            .with(runtime, r)
            .with(interp, i)
            .with(t1, a)
            .with(t2, b);
        assert_eq!(thread_states(&l, &mem, runtime).unwrap(), vec![t1, t2]);
    }
}
