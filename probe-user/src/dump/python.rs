//! The Python side of a dump: each thread's Python stack and `threading` name, read from
//! the interpreter's memory while the process runs (the state of a blocked thread does not
//! change under the reader; a running thread's may, and then its walk ends marked
//! truncated, never with invented frames).

use std::collections::HashMap;

use serde::Serialize;

use crate::model::PyRawFrame;
use crate::python::code::CodeCache;
use crate::python::discover::{self, DiscoverError, PythonProcess};
use crate::python::frames::{self, Walk};
use crate::python::memory::{LiveMemory, ProcessMemory, ReadExt};
use crate::python::thread_names::thread_names;

/// One Python frame, named.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PyFrame {
    /// `co_qualname` (3.11+) or `co_name`.
    pub function: String,
    pub file: String,
    pub line: Option<u32>,
}

/// A thread's Python frames, innermost first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PyStack {
    pub frames: Vec<PyFrame>,
    /// The walk stopped before the outermost frame (a frame that could not be read).
    pub truncated: bool,
}

/// What the interpreter of one process says about its threads.
#[derive(Debug, Default)]
pub struct PythonView {
    pub version: Option<(u8, u8)>,
    pub stacks: HashMap<u32, PyStack>,
    pub names: HashMap<u32, String>,
    /// The same frames raw, to merge into the native stacks.
    pub raw: super::native::PythonFrames,
    /// Each thread's innermost Python frame's address.
    pub innermost: HashMap<u32, u64>,
    /// Thread idents (`pthread_t`, what an RLock records as its owner) -> tid.
    pub idents: HashMap<u64, u32>,
}

/// The Python view of `pid`: empty for a process that is not CPython 3.8–3.13; `Err`
/// with a one-line reason when it is one but could not be read.
pub fn view(pid: u32) -> Result<PythonView, String> {
    let process = match discover::discover(pid) {
        Ok(process) => process,
        Err(DiscoverError::NotPython { .. }) => return Ok(PythonView::default()),
        Err(err) => return Err(err.to_string()),
    };
    let mem = LiveMemory::new(pid);
    let threads = process
        .threads(&mem)
        .map_err(|err| format!("failed to read the Python threads of process {pid}: {err}"))?;
    let mut codes = CodeCache::new();
    let mut stacks = HashMap::new();
    let mut raw = super::native::PythonFrames::default();
    let mut innermost = HashMap::new();
    let mut idents = HashMap::new();
    for thread in threads {
        let Some(tid) = thread.tid else {
            continue;
        };
        idents.insert(thread.pthread, tid);
        let Ok(walk) = frames::walk(&process.layout, &mem, thread.tstate) else {
            continue;
        };
        if walk.innermost != 0 {
            innermost.insert(tid, walk.innermost);
        }
        stacks.insert(tid, named(&process, &mem, &mut codes, &walk));
        let frames = walk
            .frames
            .iter()
            .map(|frame| PyRawFrame {
                code: frame.code,
                offset: frame.offset,
                call_entry: frame.call_entry,
            })
            .collect();
        for frame in &walk.frames {
            raw.code
                .entry((pid, frame.code))
                .or_insert_with(|| codes.get(pid, &process.layout, &mem, frame.code).ok());
        }
        raw.threads.insert(tid, (frames, walk.truncated.is_some()));
    }
    // Names are a bonus: a process that never imported threading has none.
    let names = thread_names(&process, &mem).unwrap_or_default();
    Ok(PythonView {
        version: Some(process.version),
        stacks,
        names,
        raw,
        innermost,
        idents,
    })
}

/// The frames of `walk` with names and lines; a code object that cannot be read ends the
/// stack there, marked truncated.
fn named(process: &PythonProcess, mem: &LiveMemory, codes: &mut CodeCache, walk: &Walk) -> PyStack {
    let mut frames = Vec::with_capacity(walk.frames.len());
    let mut truncated = walk.truncated.is_some();
    for raw in &walk.frames {
        match codes.get(process.pid, &process.layout, mem, raw.code) {
            Ok(info) => frames.push(PyFrame {
                function: info.qualname.clone(),
                file: info.filename.clone(),
                line: info.line_for(raw.offset),
            }),
            Err(_) => {
                truncated = true;
                break;
            }
        }
    }
    PyStack { frames, truncated }
}

/// `PyObject.ob_type`, `PyTypeObject.tp_name`, and the fields of `_thread.RLock`'s
/// `rlockobject` (3.8–3.13: the lock's semaphore, then the owner's ident).
const OB_TYPE: u64 = 8;
const TP_NAME: u64 = 24;
const RLOCK_LOCK: u64 = 16;
const RLOCK_OWNER: u64 = 24;
/// A bound method's `self` (`PyCFunctionObject.m_self`, `PyMethodObject.im_self`).
const METHOD_SELF: u64 = 24;
/// Words of a frame searched for the lock (its fixed fields, locals and value stack).
const FRAME_WORDS: usize = 128;

/// The `threading.RLock` waits among `waits` (threads of process `pid` in futex waits):
/// for each, an RLock the thread's innermost Python frame refers to (as a local, or as the
/// `self` of a bound method such as the `__exit__` a `with` holds) whose semaphore is the
/// futex word it waits on. The lock records its owner, so the wait names who holds it. A
/// lock found nowhere in the frame, or whose owner is not a thread of the process, is left
/// out: nothing is guessed.
pub fn rlock_waits(
    pid: u32,
    view: &PythonView,
    waits: &[super::locks::FutexWait],
) -> Vec<super::locks::MutexWait> {
    let mem = LiveMemory::new(pid);
    // Threads waiting alike point at many of the same objects: each object's type is
    // read once (a 1,000-thread process would otherwise cost ~100,000 reads).
    let mut types: HashMap<u64, Option<u64>> = HashMap::new();
    let mut type_names: HashMap<u64, Option<String>> = HashMap::new();
    let mut type_name = |object: u64| -> Option<String> {
        let ty = (*types
            .entry(object)
            .or_insert_with(|| mem.read_u64(object.wrapping_add(OB_TYPE)).ok()))?;
        type_names
            .entry(ty)
            .or_insert_with(|| {
                let name = mem.read_u64(ty.wrapping_add(TP_NAME)).ok()?;
                let mut bytes = [0u8; 48];
                mem.read(name, &mut bytes).ok()?;
                let end = bytes.iter().position(|&b| b == 0)?;
                Some(String::from_utf8_lossy(&bytes[..end]).into_owned())
            })
            .clone()
    };
    let mut found = Vec::new();
    for wait in waits {
        let Some(&frame) = view.innermost.get(&wait.tid) else {
            continue;
        };
        let Ok(words) = mem.read_vec(frame, FRAME_WORDS * 8) else {
            continue;
        };
        let pointers = words
            .chunks_exact(8)
            .filter_map(|w| w.try_into().ok().map(u64::from_ne_bytes))
            .filter(|&p| p > 0xffff && p % 8 == 0);
        let lock = pointers.into_iter().find_map(|pointer| {
            let object = match type_name(pointer)?.as_str() {
                "_thread.RLock" => pointer,
                "builtin_function_or_method" | "method" => {
                    mem.read_u64(pointer.wrapping_add(METHOD_SELF)).ok()?
                }
                _ => return None,
            };
            let is_rlock = type_name(object).as_deref() == Some("_thread.RLock");
            let semaphore = mem.read_u64(object.wrapping_add(RLOCK_LOCK)).ok()?;
            (is_rlock && semaphore == wait.addr).then_some(object)
        });
        let Some(lock) = lock else {
            continue;
        };
        let Some(&owner) = mem
            .read_u64(lock.wrapping_add(RLOCK_OWNER))
            .ok()
            .and_then(|ident| view.idents.get(&ident))
        else {
            continue;
        };
        if owner != wait.tid {
            found.push(super::locks::MutexWait {
                waiter: wait.tid,
                kind: super::locks::LockKind::RLock,
                mutex: format!("{lock:#x}"),
                owner,
            });
        }
    }
    found
}
