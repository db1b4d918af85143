//! Which processes in scope run CPython, so the kernel can walk their frames.
//!
//! A process is discovered once, at its first sample (or right after attach for `-p`
//! targets); the answer is cached either way, so a non-Python process costs one read of its
//! `/proc/PID/maps` per window. A Python process gets its layout into `PY_PROCS` and its
//! threads' thread states into `PY_THREADS`; a sample of it the kernel did not walk (its
//! thread is missing from `PY_THREADS`: started during the window, or its tid was reused)
//! re-reads its thread list, at most once per [`THREADS_REFRESH_INTERVAL`].
//!
//! Everything that needs the live process happens here, during the window, so a process
//! that exits before the report still gets named frames: the code objects seen in each
//! drain's samples are read then (through a [`CodeCache`]: a small re-check per code object
//! and drain), and the `threading` names are read at discovery, at each thread-list refresh
//! and once more after the window. A code object freed during the window and its address
//! reused by another one is caught by that re-check: its frames are then left unnamed
//! rather than risk naming samples after the wrong function.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use probe_common::PyLayoutKernel;

use crate::python::code::{CodeCache, CodeError, CodeInfo};
use crate::python::discover::{discover, DiscoverError, PythonProcess};
use crate::python::memory::{LiveMemory, MemoryError};
use crate::python::thread_names::{thread_names, ThreadNamesError};
use crate::python::threads::PyThread;

/// A Python process's thread list is re-read at most this often: a new thread's first
/// samples wait up to this long for its Python frames; a process with threads the kernel
/// never walks (native threads) pays for a re-read this often (a few small reads).
pub const THREADS_REFRESH_INTERVAL: Duration = Duration::from_millis(250);

/// Where the kernel learns about Python processes and threads (the BPF maps, or a fake).
pub trait PythonMaps {
    /// The first call also loads the kernel's Python frame walk: it is verified (~2 ms of
    /// kernel time) only once a Python process is found, not at attach.
    fn add_process(&mut self, pid: u32, layout: &PyLayoutKernel) -> Result<(), String>;
    fn add_thread(&mut self, tid: u32, tstate: u64) -> Result<(), String>;
}

impl PythonMaps for crate::loader::Probe {
    fn add_process(&mut self, pid: u32, layout: &PyLayoutKernel) -> Result<(), String> {
        self.add_python_process(pid, layout)
    }

    fn add_thread(&mut self, tid: u32, tstate: u64) -> Result<(), String> {
        self.add_python_thread(tid, tstate)
    }
}

/// How processes are inspected (live /proc and memory, or a fake in tests).
pub trait PythonSource {
    fn discover(&mut self, pid: u32) -> Result<PythonProcess, DiscoverError>;
    fn threads(&mut self, process: &PythonProcess) -> Result<Vec<PyThread>, MemoryError>;
    /// The code object at `addr` in `process`.
    fn code(&mut self, process: &PythonProcess, addr: u64) -> Result<Arc<CodeInfo>, CodeError>;
    /// The `threading` names of `process`'s live threads, by tid.
    fn thread_names(
        &mut self,
        process: &PythonProcess,
    ) -> Result<HashMap<u32, String>, ThreadNamesError>;
}

/// Reads live processes.
#[derive(Default)]
pub struct LiveSource {
    code: CodeCache,
}

impl PythonSource for LiveSource {
    fn discover(&mut self, pid: u32) -> Result<PythonProcess, DiscoverError> {
        discover(pid)
    }

    fn threads(&mut self, process: &PythonProcess) -> Result<Vec<PyThread>, MemoryError> {
        process.threads(&LiveMemory::new(process.pid))
    }

    fn code(&mut self, process: &PythonProcess, addr: u64) -> Result<Arc<CodeInfo>, CodeError> {
        let mem = LiveMemory::new(process.pid);
        self.code.get(process.pid, &process.layout, &mem, addr)
    }

    fn thread_names(
        &mut self,
        process: &PythonProcess,
    ) -> Result<HashMap<u32, String>, ThreadNamesError> {
        thread_names(process, &LiveMemory::new(process.pid))
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

/// What is known of one code address of one process.
enum CodeEntry {
    Known(Arc<CodeInfo>),
    /// Not readable so far (tried again when seen again).
    Unreadable,
    /// Two different code objects lived at this address during the window.
    Reused,
}

fn same_code(a: &Arc<CodeInfo>, b: &Arc<CodeInfo>) -> bool {
    Arc::ptr_eq(a, b) || a == b
}

/// The Python side of the collector.
#[derive(Default)]
pub struct PythonTracker {
    states: HashMap<u32, State>,
    to_discover: BTreeSet<u32>,
    to_refresh: BTreeSet<u32>,
    /// Code objects seen in samples since the last sync: (pid, address).
    to_read: BTreeSet<(u32, u64)>,
    /// What is known of each code object seen, by (pid, address).
    code: HashMap<(u32, u64), CodeEntry>,
    /// The latest `threading` name of each Python thread, by tid.
    thread_names: HashMap<u32, String>,
    notices: Vec<String>,
}

impl PythonTracker {
    /// Queues `pid` for discovery unless it was looked at already.
    pub fn track(&mut self, pid: u32) {
        if !self.states.contains_key(&pid) {
            self.to_discover.insert(pid);
        }
    }

    /// Forgets process `pid` (it exec'd): it is discovered again at its next sample.
    pub fn forget(&mut self, pid: u32) {
        self.states.remove(&pid);
        self.to_refresh.remove(&pid);
    }

    /// Notes a sample of process `tgid`; `python_walked`: the kernel knew its thread
    /// (`SAMPLE_PY_WALKED`); `code`: the code objects of the Python frames it recorded.
    /// Cheap: no I/O.
    pub fn note_sample(
        &mut self,
        tgid: u32,
        python_walked: bool,
        code: impl IntoIterator<Item = u64>,
    ) {
        self.to_read
            .extend(code.into_iter().map(|addr| (tgid, addr)));
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
                    let process = **process;
                    self.read_names_of(&process, source);
                }
            }
        }
        self.read_code(source);
    }

    /// Reads (or re-checks) the code objects queued by [`PythonTracker::note_sample`].
    fn read_code(&mut self, source: &mut dyn PythonSource) {
        for (pid, addr) in std::mem::take(&mut self.to_read) {
            let read = match self.states.get(&pid) {
                Some(State::Python { process, .. }) => source.code(process, addr).ok(),
                _ => None,
            };
            let entry = self
                .code
                .entry((pid, addr))
                .or_insert(CodeEntry::Unreadable);
            *entry = match (std::mem::replace(entry, CodeEntry::Reused), read) {
                (CodeEntry::Reused, _) => CodeEntry::Reused,
                (CodeEntry::Unreadable, Some(info)) => CodeEntry::Known(info),
                (CodeEntry::Unreadable, None) => CodeEntry::Unreadable,
                (CodeEntry::Known(old), Some(new)) if !same_code(&old, &new) => CodeEntry::Reused,
                // The same code object, or no longer readable (the process exited).
                (known @ CodeEntry::Known(_), _) => known,
            };
        }
    }

    /// Reads the `threading` names of every Python process still alive.
    pub fn read_thread_names(&mut self, source: &mut dyn PythonSource) {
        let processes: Vec<PythonProcess> = self.processes().into_values().collect();
        for process in &processes {
            self.read_names_of(process, source);
        }
    }

    fn read_names_of(&mut self, process: &PythonProcess, source: &mut dyn PythonSource) {
        // A process that exited or never imported `threading` keeps the names known.
        if let Ok(names) = source.thread_names(process) {
            self.thread_names.extend(names);
        }
    }

    /// The `threading` name last read for thread `tid`.
    pub fn thread_name(&self, tid: u32) -> Option<&str> {
        self.thread_names.get(&tid).map(String::as_str)
    }

    /// The code objects read, by (pid, address); `None` for those that could not be read
    /// or whose address was reused by another code object during the window.
    pub fn take_code(&mut self) -> HashMap<(u32, u64), Option<Arc<CodeInfo>>> {
        let code = self.code();
        self.code.clear();
        code
    }

    /// [`PythonTracker::take_code`] without taking: what is known so far.
    pub fn code(&self) -> HashMap<(u32, u64), Option<Arc<CodeInfo>>> {
        self.code
            .iter()
            .map(|(&key, entry)| match entry {
                CodeEntry::Known(info) => (key, Some(Arc::clone(info))),
                CodeEntry::Unreadable | CodeEntry::Reused => (key, None),
            })
            .collect()
    }

    /// The notices so far, without taking them.
    pub fn notices(&self) -> &[String] {
        &self.notices
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
        self.read_names_of(&process, source);
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
        code_reads: Vec<u64>,
        code: HashMap<u64, Arc<CodeInfo>>,
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

        fn code(&mut self, _: &PythonProcess, addr: u64) -> Result<Arc<CodeInfo>, CodeError> {
            self.code_reads.push(addr);
            match self.code.get(&addr) {
                Some(info) => Ok(Arc::clone(info)),
                None => Err(CodeError::Invalid { addr, what: "fake" }),
            }
        }

        fn thread_names(
            &mut self,
            _: &PythonProcess,
        ) -> Result<HashMap<u32, String>, ThreadNamesError> {
            Ok(self
                .threads
                .iter()
                .filter_map(|t| Some((t.tid?, format!("t{}", t.tid?))))
                .collect())
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
                tracker.note_sample(pid, pid == 1, []);
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
            tracker.note_sample(1, false, []);
            sync(&mut tracker, &mut fake);
        }
        // Discovery read the list once; the refresh is not due yet.
        assert_eq!(fake.thread_reads, 1);
        if let Some(State::Python { refreshed, .. }) = tracker.states.get_mut(&1) {
            *refreshed -= THREADS_REFRESH_INTERVAL;
        }
        tracker.note_sample(1, false, []);
        sync(&mut tracker, &mut fake);
        assert_eq!(fake.thread_reads, 2);
        assert_eq!(fake.added, [(1, 0xa0), (1, 0xa0), (12, 0xc0)]);
        // Samples the kernel walked need nothing.
        tracker.note_sample(1, true, []);
        assert!(tracker.to_refresh.is_empty());
        // The refresh read the new thread's name.
        assert_eq!(tracker.thread_name(12), Some("t12"));
    }

    #[test]
    fn code_objects_are_read_per_drain_and_a_reused_address_is_left_unnamed() {
        let layout = PyLayout::table_row(3, 12).unwrap();
        let info = |name| Arc::new(crate::python::testutil::code_info(&layout, name, "a.py"));
        let mut tracker = PythonTracker::default();
        let mut fake = Fake::default();
        fake.code.insert(0x10, info("stays"));
        fake.code.insert(0x20, info("before"));
        tracker.track(1);
        sync(&mut tracker, &mut fake);
        for round in 0..3 {
            if round == 2 {
                // Freed, and another code object allocated at the same address.
                fake.code.insert(0x20, info("after"));
                // Gone: the name read earlier stays.
                fake.code.remove(&0x10);
            }
            tracker.note_sample(1, true, [0x10, 0x20, 0x10, 0x30]);
            // Not a Python process: never read.
            tracker.note_sample(3, false, [0x40]);
            sync(&mut tracker, &mut fake);
        }
        assert_eq!(
            fake.code_reads.len(),
            9,
            "three per drain: {:?}",
            fake.code_reads
        );
        let code = tracker.take_code();
        let name = |pid, addr| {
            let entry: &Option<Arc<CodeInfo>> = &code[&(pid, addr)];
            entry.as_ref().map(|info| info.name.clone())
        };
        assert_eq!(name(1, 0x10).as_deref(), Some("stays"));
        assert_eq!(name(1, 0x20), None, "reused address");
        assert_eq!(name(1, 0x30), None, "never readable");
        assert_eq!(name(3, 0x40), None);
    }
}
