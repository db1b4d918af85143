//! Which processes in scope run CPython, so the kernel can walk their frames.
//!
//! A process is discovered once, at its first sample (or right after attach for `-p`
//! targets); the answer is cached either way, so a non-Python process costs one read of its
//! `/proc/PID/maps` per window. A Python process gets its layout into `PY_PROCS` and its
//! threads' thread states into `PY_THREADS`; a sample of it the kernel did not walk (its
//! thread is missing from `PY_THREADS`: started during the window, or its tid was reused)
//! re-reads its thread list, at most once per [`THREADS_REFRESH_INTERVAL`].

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use probe_common::PyLayoutKernel;

use crate::python::discover::{discover, DiscoverError, PythonProcess};
use crate::python::memory::{LiveMemory, MemoryError};
use crate::python::threads::PyThread;

/// A Python process's thread list is re-read at most this often.
pub const THREADS_REFRESH_INTERVAL: Duration = Duration::from_secs(1);

/// Where the kernel learns about Python processes and threads (the BPF maps, or a fake).
pub trait PythonMaps {
    fn add_process(&mut self, pid: u32, layout: &PyLayoutKernel) -> Result<(), String>;
    fn add_thread(&mut self, tid: u32, tstate: u64) -> Result<(), String>;
}

/// How processes are inspected (live /proc and memory, or a fake in tests).
pub trait PythonSource {
    fn discover(&mut self, pid: u32) -> Result<PythonProcess, DiscoverError>;
    fn threads(&mut self, process: &PythonProcess) -> Result<Vec<PyThread>, MemoryError>;
}

/// Reads live processes.
pub struct LiveSource;

impl PythonSource for LiveSource {
    fn discover(&mut self, pid: u32) -> Result<PythonProcess, DiscoverError> {
        discover(pid)
    }

    fn threads(&mut self, process: &PythonProcess) -> Result<Vec<PyThread>, MemoryError> {
        process.threads(&LiveMemory::new(process.pid))
    }
}

enum State {
    Python {
        /// Boxed: a layout is large and most processes are `Other`.
        process: Box<PythonProcess>,
        /// When its threads were last written to `PY_THREADS`.
        refreshed: Instant,
    },
    /// Not Python, gone, or unusable: never looked at again this window.
    Other,
}

/// The Python side of the collector.
#[derive(Default)]
pub struct PythonTracker {
    states: HashMap<u32, State>,
    to_discover: BTreeSet<u32>,
    to_refresh: BTreeSet<u32>,
    notices: Vec<String>,
}

impl PythonTracker {
    /// Queues `pid` for discovery unless it was looked at already.
    pub fn track(&mut self, pid: u32) {
        if !self.states.contains_key(&pid) {
            self.to_discover.insert(pid);
        }
    }

    /// Notes a sample of process `tgid`; `python_walked`: the kernel knew its thread
    /// (`SAMPLE_PY_WALKED`). Cheap: no I/O.
    pub fn note_sample(&mut self, tgid: u32, python_walked: bool) {
        match self.states.get(&tgid) {
            None => {
                self.to_discover.insert(tgid);
            }
            Some(State::Python { .. }) if !python_walked => {
                self.to_refresh.insert(tgid);
            }
            Some(_) => {}
        }
    }

    /// Discovers the queued processes and refreshes the thread lists that are due.
    pub fn sync(&mut self, source: &mut dyn PythonSource, maps: &mut dyn PythonMaps) {
        for pid in std::mem::take(&mut self.to_discover) {
            let state = self.discover(pid, source, maps);
            self.states.insert(pid, state);
        }
        for pid in std::mem::take(&mut self.to_refresh) {
            if let Some(State::Python { process, refreshed }) = self.states.get_mut(&pid) {
                if refreshed.elapsed() >= THREADS_REFRESH_INTERVAL {
                    *refreshed = Instant::now();
                    // The process may have exited: its known threads stay as they are.
                    let _ = add_threads(process, source, maps);
                }
            }
        }
    }

    fn discover(
        &mut self,
        pid: u32,
        source: &mut dyn PythonSource,
        maps: &mut dyn PythonMaps,
    ) -> State {
        let process = match source.discover(pid) {
            Ok(process) => process,
            // Not Python, or gone / a kernel thread: nothing to say.
            Err(DiscoverError::NotPython { .. } | DiscoverError::Unreadable { .. }) => {
                return State::Other
            }
            // The error names the process.
            Err(err) => return self.unavailable(err),
        };
        let layout = match process.layout.kernel() {
            Ok(layout) => layout,
            Err(err) => return self.unavailable(format!("process {pid}: {err}")),
        };
        if let Err(err) = maps.add_process(pid, &layout) {
            return self.unavailable(format!("process {pid}: {err}"));
        }
        if let Err(err) = add_threads(&process, source, maps) {
            return self.unavailable(format!(
                "process {pid}: failed to read its thread states: {err}"
            ));
        }
        State::Python {
            process: Box::new(process),
            refreshed: Instant::now(),
        }
    }

    /// Notes why a Python process gets no Python frames (`why` names the process).
    fn unavailable(&mut self, why: impl std::fmt::Display) -> State {
        self.notices.push(format!(
            "{why}: Python frames unavailable, native frames only"
        ));
        State::Other
    }

    /// The Python processes whose threads the kernel walks.
    pub fn processes(&self) -> BTreeMap<u32, PythonProcess> {
        self.states
            .iter()
            .filter_map(|(&pid, state)| match state {
                State::Python { process, .. } => Some((pid, **process)),
                State::Other => None,
            })
            .collect()
    }

    /// One line per process whose Python frames could not be recorded.
    pub fn take_notices(&mut self) -> Vec<String> {
        std::mem::take(&mut self.notices)
    }
}

/// Writes every thread of `process` to the kernel's map (again, for those already there:
/// a reused tid gets its new thread state).
fn add_threads(
    process: &PythonProcess,
    source: &mut dyn PythonSource,
    maps: &mut dyn PythonMaps,
) -> Result<(), MemoryError> {
    for thread in source.threads(process)? {
        if let Some(tid) = thread.tid {
            // A full map loses this thread's Python frames only; its samples stay.
            let _ = maps.add_thread(tid, thread.tstate);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::python::offsets::PyLayout;

    #[derive(Default)]
    struct Fake {
        discovered: Vec<u32>,
        thread_reads: usize,
        threads: Vec<PyThread>,
        procs: Vec<u32>,
        added: Vec<(u32, u64)>,
    }

    impl PythonSource for Fake {
        fn discover(&mut self, pid: u32) -> Result<PythonProcess, DiscoverError> {
            self.discovered.push(pid);
            match pid {
                1 => Ok(PythonProcess {
                    pid,
                    version: (3, 12),
                    runtime_addr: 0x1000,
                    layout: PyLayout::table_row(3, 12).unwrap(),
                }),
                2 => Err(DiscoverError::Unsupported {
                    pid,
                    version: (3, 7),
                }),
                _ => Err(DiscoverError::NotPython { pid }),
            }
        }

        fn threads(&mut self, _: &PythonProcess) -> Result<Vec<PyThread>, MemoryError> {
            self.thread_reads += 1;
            Ok(self.threads.clone())
        }
    }

    impl PythonMaps for Fake {
        fn add_process(&mut self, pid: u32, _: &PyLayoutKernel) -> Result<(), String> {
            self.procs.push(pid);
            Ok(())
        }

        fn add_thread(&mut self, tid: u32, tstate: u64) -> Result<(), String> {
            self.added.push((tid, tstate));
            Ok(())
        }
    }

    fn thread(tid: u32, tstate: u64) -> PyThread {
        PyThread {
            tstate,
            pthread: 0,
            tid: Some(tid),
        }
    }

    /// `sync` with one `Fake` as both source and maps.
    fn sync(tracker: &mut PythonTracker, fake: &mut Fake) {
        let mut maps = Fake::default();
        tracker.sync(fake, &mut maps);
        fake.procs.extend(maps.procs);
        fake.added.extend(maps.added);
    }

    #[test]
    fn discovery_is_cached_and_only_failures_of_python_processes_are_noticed() {
        let mut tracker = PythonTracker::default();
        let mut fake = Fake {
            threads: vec![thread(1, 0xa0), thread(11, 0xb0)],
            ..Fake::default()
        };
        for _ in 0..3 {
            for pid in [1, 2, 3] {
                tracker.note_sample(pid, pid == 1);
            }
            sync(&mut tracker, &mut fake);
        }
        assert_eq!(fake.discovered, [1, 2, 3]);
        assert_eq!(fake.procs, [1]);
        assert_eq!(fake.added, [(1, 0xa0), (11, 0xb0)]);
        let notices = tracker.take_notices();
        assert_eq!(notices.len(), 1, "{notices:?}");
        assert_eq!(
            notices[0],
            "process 2 runs Python 3.7, which is not supported (3.8–3.13 are): \
             Python frames unavailable, native frames only"
        );
        assert_eq!(tracker.processes().keys().copied().collect::<Vec<_>>(), [1]);
    }

    #[test]
    fn unknown_threads_refresh_the_list_at_most_once_per_interval() {
        let mut tracker = PythonTracker::default();
        let mut fake = Fake {
            threads: vec![thread(1, 0xa0)],
            ..Fake::default()
        };
        tracker.track(1);
        sync(&mut tracker, &mut fake);
        fake.threads.push(thread(12, 0xc0));
        for _ in 0..5 {
            tracker.note_sample(1, false);
            sync(&mut tracker, &mut fake);
        }
        // Discovery read the list once; the refresh is not due yet.
        assert_eq!(fake.thread_reads, 1);
        if let Some(State::Python { refreshed, .. }) = tracker.states.get_mut(&1) {
            *refreshed -= THREADS_REFRESH_INTERVAL;
        }
        tracker.note_sample(1, false);
        sync(&mut tracker, &mut fake);
        assert_eq!(fake.thread_reads, 2);
        assert_eq!(fake.added, [(1, 0xa0), (1, 0xa0), (12, 0xc0)]);
        // Samples the kernel walked need nothing.
        tracker.note_sample(1, true);
        assert!(tracker.to_refresh.is_empty());
    }
}
