//! Kernel thread id → `threading` name ("MainThread", "spinner-3", ...) of a Python
//! process, read from its memory while it runs.
//!
//! Route, per interpreter: `sys.modules` (`PyInterpreterState.modules`, `imports.modules`
//! on 3.12+) → `"threading"` → the module's `__dict__` → `_active` (ident → `Thread`) →
//! each Thread's `__dict__` → `_name` (a str) and `_native_id` (an int: the kernel tid,
//! set for every started thread on 3.8+). Should `_native_id` not be an int, the `_active`
//! key (the `pthread_t`) is matched against the thread states instead.
//!
//! The target keeps running, so a Thread may be half-built or already gone when read:
//! such entries are left out rather than failing the whole map; only a broken route to
//! `_active` is an error.

use std::collections::{HashMap, HashSet};

use super::dict::{dict_get_str, dict_items, find_str_key, instance_attrs, DictItem};
use super::discover::PythonProcess;
use super::long::read_int;
use super::memory::{MemoryError, ProcessMemory, ReadExt};
use super::object::{read_str_prefix, ObjectError};
use super::offsets::PyLayout;
use super::threads::{PyThread, MAX_THREADS};

/// Longest name kept, in bytes of the target's string data; longer names are cut, and end
/// in [`CUT_MARK`].
pub const MAX_NAME_BYTES: usize = 1024;
/// Ends a name that was cut at [`MAX_NAME_BYTES`], so no report shows a prefix as the name.
pub const CUT_MARK: char = '…';

/// Why the thread names of a process could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ThreadNamesError {
    /// The interpreter list in `_PyRuntime` could not be read.
    #[error("failed to read the interpreter list")]
    Interpreters(#[source] MemoryError),
    /// An object on the way to `threading._active` could not be read.
    #[error("failed to read {what} of interpreter {interp:#x}")]
    Object {
        interp: u64,
        what: &'static str,
        #[source]
        source: ObjectError,
    },
    /// The `threading` module has no `_active` dict.
    #[error("the threading module of interpreter {interp:#x} has no _active")]
    NoActive { interp: u64 },
}

/// The `threading` name of every live Python thread of `process`, by kernel thread id.
/// A process that never imported `threading` has no names (an empty map).
pub fn thread_names(
    process: &PythonProcess,
    mem: &impl ProcessMemory,
) -> Result<HashMap<u32, String>, ThreadNamesError> {
    let layout = &process.layout;
    let mut names = HashMap::new();
    let mut tstates = None;
    for interp in interpreters(layout, mem, process.runtime_addr)? {
        let Some(active) = active_dict(layout, mem, interp)? else {
            continue;
        };
        let object = |what| {
            move |source| ThreadNamesError::Object {
                interp,
                what,
                source,
            }
        };
        let threads = dict_items(layout, mem, active).map_err(object("threading._active"))?;
        for item in threads.iter().take(MAX_THREADS) {
            let Ok((tid, name)) = read_thread(layout, mem, item) else {
                continue;
            };
            let tid = match tid {
                Tid::Native(tid) => Some(tid),
                Tid::Pthread(ident) => {
                    let known = tstates.get_or_insert_with(|| process.threads(mem));
                    tid_of_pthread(known, ident)
                }
            };
            if let Some(tid) = tid {
                names.insert(tid, name);
            }
        }
    }
    Ok(names)
}

/// `threading._active` of interpreter `interp`, or `None` if `threading` is not imported.
fn active_dict(
    layout: &PyLayout,
    mem: &dyn ProcessMemory,
    interp: u64,
) -> Result<Option<u64>, ThreadNamesError> {
    let object = |what| {
        move |source| ThreadNamesError::Object {
            interp,
            what,
            source,
        }
    };
    let modules = mem
        .read_u64(interp.wrapping_add(layout.interp_modules))
        .map_err(|source| ObjectError::Memory {
            addr: interp,
            source,
        })
        .map_err(object("sys.modules"))?;
    if modules == 0 {
        // Not yet initialized, or being finalized.
        return Ok(None);
    }
    let Some(threading) =
        dict_get_str(layout, mem, modules, "threading").map_err(object("sys.modules"))?
    else {
        return Ok(None);
    };
    let attrs = instance_attrs(layout, mem, threading).map_err(object("the threading module"))?;
    find_str_key(layout, mem, &attrs, "_active")
        .map_err(object("the threading module"))?
        .map(Some)
        .ok_or(ThreadNamesError::NoActive { interp })
}

/// How a Thread identifies its kernel thread.
enum Tid {
    /// `_native_id`.
    Native(u32),
    /// Only its `_active` key, the `pthread_t`.
    Pthread(u64),
}

/// The tid and name of the Thread in one `_active` entry.
fn read_thread(
    layout: &PyLayout,
    mem: &dyn ProcessMemory,
    item: &DictItem,
) -> Result<(Tid, String), ObjectError> {
    let attrs = instance_attrs(layout, mem, item.value)?;
    let name = find_str_key(layout, mem, &attrs, "_name")?.ok_or(ObjectError::Invalid {
        addr: item.value,
        what: "Thread without _name",
    })?;
    let (mut name, cut) = read_str_prefix(layout, mem, name, MAX_NAME_BYTES)?;
    if cut {
        name.push(CUT_MARK);
    }
    let native = find_str_key(layout, mem, &attrs, "_native_id")?
        .and_then(|id| read_int(layout, mem, id).ok())
        .and_then(|id| u32::try_from(id).ok());
    let tid = match native {
        Some(tid) => Tid::Native(tid),
        None => {
            let ident = read_int(layout, mem, item.key)?;
            Tid::Pthread(u64::try_from(ident).map_err(|_| ObjectError::Invalid {
                addr: item.key,
                what: "negative thread ident",
            })?)
        }
    };
    Ok((tid, name))
}

/// The validated tid of the thread state whose `pthread_t` is `ident`.
fn tid_of_pthread(tstates: &Result<Vec<PyThread>, MemoryError>, ident: u64) -> Option<u32> {
    let tstates = tstates.as_ref().ok()?;
    tstates.iter().find(|t| t.pthread == ident)?.tid
}

/// Every interpreter reachable from `_PyRuntime`, bounded and cycle-safe.
fn interpreters(
    layout: &PyLayout,
    mem: &dyn ProcessMemory,
    runtime: u64,
) -> Result<Vec<u64>, ThreadNamesError> {
    let read = |addr: u64| mem.read_u64(addr).map_err(ThreadNamesError::Interpreters);
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    let mut interp = read(runtime.wrapping_add(layout.runtime_interpreters_head))?;
    while interp != 0 && out.len() < MAX_THREADS && seen.insert(interp) {
        out.push(interp);
        interp = read(interp.wrapping_add(layout.interp_next))?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::python::memory::FakeMemory;
    use crate::python::testutil::{dict_obj, int_obj, keys_obj, put_u64, str_obj, type_obj};

    const RUNTIME: u64 = 0x1_0000;
    const INTERP: u64 = 0x2_0000;
    const STR_TYPE: u64 = 0x3_0000;
    const DICT_TYPE: u64 = 0x4_0000;
    const INT_TYPE: u64 = 0x5_0000;
    const OBJ_TYPE: u64 = 0x6_0000;
    /// Objects are placed at `HEAP + n * 0x10000`.
    const HEAP: u64 = 0x100_0000;

    /// Builds a fake process heap one object at a time.
    struct Heap {
        layout: PyLayout,
        mem: FakeMemory,
        next: u64,
    }

    impl Heap {
        fn new(layout: PyLayout) -> Heap {
            let mut mem = FakeMemory::new()
                .with(
                    STR_TYPE,
                    type_obj(&layout, layout.tpflags_unicode_subclass, 0, 0),
                )
                .with(
                    DICT_TYPE,
                    type_obj(&layout, layout.tpflags_dict_subclass, 0, 0),
                )
                .with(
                    INT_TYPE,
                    type_obj(&layout, layout.tpflags_long_subclass, 0, 0),
                )
                .with(OBJ_TYPE, type_obj(&layout, 0, 16, 0));
            let mut runtime = Vec::new();
            put_u64(&mut runtime, layout.runtime_interpreters_head, INTERP);
            mem.insert(RUNTIME, runtime);
            Heap {
                layout,
                mem,
                next: HEAP,
            }
        }

        fn add(&mut self, bytes: Vec<u8>) -> u64 {
            let at = self.next;
            self.next += 0x1_0000;
            self.mem.insert(at, bytes);
            at
        }

        fn str(&mut self, text: &str) -> u64 {
            let kind = text.chars().map(|c| c as u32).max().map_or(1, |m| match m {
                0..=0xff => 1,
                0x100..=0xffff => 2,
                _ => 4,
            });
            let mut s = str_obj(&self.layout, text, kind);
            put_u64(&mut s, self.layout.object_type, STR_TYPE);
            self.add(s)
        }

        fn int(&mut self, value: i128) -> u64 {
            self.add(int_obj(&self.layout, INT_TYPE, value))
        }

        fn dict(&mut self, items: &[(u64, u64)]) -> u64 {
            let keys = self.add(keys_obj(&self.layout, items, false));
            self.add(dict_obj(&self.layout, DICT_TYPE, keys, 0))
        }

        /// An object with a `__dict__` (at offset 16) holding str-keyed `attrs`.
        fn object(&mut self, attrs: &[(&str, u64)]) -> u64 {
            let items: Vec<_> = attrs.iter().map(|&(k, v)| (self.str(k), v)).collect();
            let dict = self.dict(&items);
            let mut obj = Vec::new();
            put_u64(&mut obj, self.layout.object_type, OBJ_TYPE);
            put_u64(&mut obj, 16, dict);
            self.add(obj)
        }

        fn thread(&mut self, name: &str, native_id: Option<i128>) -> u64 {
            let name = self.str(name);
            let id = match native_id {
                Some(id) => self.int(id),
                None => self.object(&[]), // None stands in: not an int
            };
            self.object(&[("_name", name), ("_started", 1), ("_native_id", id)])
        }

        /// Sets `sys.modules` to {"sys": .., "threading": module with `_active`}.
        fn modules(&mut self, active: Option<u64>) {
            let attrs: Vec<(&str, u64)> = active.map(|a| ("_active", a)).into_iter().collect();
            let module = self.object(&attrs);
            let (sys, threading) = (self.str("sys"), self.str("threading"));
            let modules = self.dict(&[(sys, 0x77), (threading, module)]);
            let mut interp = Vec::new();
            put_u64(&mut interp, self.layout.interp_modules, modules);
            put_u64(&mut interp, self.layout.interp_next, INTERP); // a cycle
            self.mem.insert(INTERP, interp);
        }

        fn process(&self) -> PythonProcess {
            PythonProcess {
                pid: 1,
                version: self.layout.version,
                runtime_addr: RUNTIME,
                layout: self.layout,
            }
        }
    }

    #[test]
    fn names_by_native_id_on_every_version() {
        for minor in 8..=13 {
            let mut heap = Heap::new(PyLayout::table_row(3, minor).unwrap());
            let main = heap.thread("MainThread", Some(100));
            let spin = heap.thread("нить-✓", Some(101));
            let half = heap.object(&[("_native_id", 0)]); // no _name yet: left out
            let (k1, k2, k3) = (heap.int(1 << 40), heap.int(2 << 40), heap.int(3 << 40));
            let active = heap.dict(&[(k1, main), (k2, spin), (k3, half)]);
            heap.modules(Some(active));
            let names = thread_names(&heap.process(), &heap.mem).unwrap();
            let want = HashMap::from([(100, "MainThread".into()), (101, "нить-✓".into())]);
            assert_eq!(names, want, "3.{minor}");
        }
    }

    #[test]
    fn without_threading_there_are_no_names() {
        let mut heap = Heap::new(PyLayout::table_row(3, 12).unwrap());
        let sys = heap.str("sys");
        let modules = heap.dict(&[(sys, 0x77)]);
        let mut interp = Vec::new();
        put_u64(&mut interp, heap.layout.interp_modules, modules);
        heap.mem.insert(INTERP, interp);
        assert!(thread_names(&heap.process(), &heap.mem).unwrap().is_empty());
    }

    #[test]
    fn broken_routes_are_typed_errors() {
        let mut heap = Heap::new(PyLayout::table_row(3, 11).unwrap());
        heap.modules(None);
        let err = thread_names(&heap.process(), &heap.mem).unwrap_err();
        assert!(matches!(err, ThreadNamesError::NoActive { .. }), "{err}");
        let not_a_dict = heap.int(5);
        heap.modules(Some(not_a_dict));
        let err = thread_names(&heap.process(), &heap.mem).unwrap_err();
        assert!(matches!(err, ThreadNamesError::Object { .. }), "{err}");
        let err = thread_names(&heap.process(), &FakeMemory::new()).unwrap_err();
        assert!(matches!(err, ThreadNamesError::Interpreters(_)), "{err}");
    }

    /// A Thread whose `_native_id` is not an int is found through its `_active` key (the
    /// `pthread_t`) and the thread state holding that `pthread_t` (3.11+: and the tid).
    #[test]
    fn pthread_ident_is_the_fallback() {
        const TSTATE: u64 = 0x7_0000;
        // SAFETY: gettid has no preconditions and only returns a value.
        let tid = unsafe { libc::gettid() } as u32;
        let ident: u64 = 0x7f00_1234_5600;
        for minor in [11, 12, 13] {
            let mut heap = Heap::new(PyLayout::table_row(3, minor).unwrap());
            let t = heap.thread("no-native-id", None);
            let key = heap.int(i128::from(ident));
            let active = heap.dict(&[(key, t)]);
            heap.modules(Some(active));
            let l = heap.layout;
            let interp = heap.mem.region_mut(INTERP).unwrap();
            put_u64(interp, l.interp_threads_head, TSTATE);
            let mut tstate = Vec::new();
            put_u64(&mut tstate, l.tstate_thread_id, ident);
            put_u64(
                &mut tstate,
                l.tstate_native_thread_id.unwrap(),
                u64::from(tid),
            );
            heap.mem.insert(TSTATE, tstate);
            let process = PythonProcess {
                pid: std::process::id(),
                ..heap.process()
            };
            let names = thread_names(&process, &heap.mem).unwrap();
            assert_eq!(
                names,
                HashMap::from([(tid, "no-native-id".into())]),
                "3.{minor}"
            );
        }
    }

    #[test]
    fn long_names_are_cut_and_marked() {
        let mut heap = Heap::new(PyLayout::table_row(3, 13).unwrap());
        let fits = "f".repeat(MAX_NAME_BYTES);
        let ascii = "x".repeat(5000);
        let wide = "нить".repeat(1000); // 2 bytes per character in the target
        let threads = [(7, &ascii), (8, &wide), (9, &fits)].map(|(tid, name)| {
            let t = heap.thread(name, Some(tid));
            (heap.int(tid), t)
        });
        let active = heap.dict(&threads);
        heap.modules(Some(active));
        let names = thread_names(&heap.process(), &heap.mem).unwrap();
        let cut = |name: &str, chars| {
            format!(
                "{}{CUT_MARK}",
                &name[..name.char_indices().nth(chars).unwrap().0]
            )
        };
        assert_eq!(names[&7], cut(&ascii, MAX_NAME_BYTES));
        assert_eq!(names[&8], cut(&wide, MAX_NAME_BYTES / 2));
        // Exactly at the limit: whole, so not marked.
        assert_eq!(names[&9], fits);
    }
}
