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
use crate::python::memory::LiveMemory;
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
    for thread in threads {
        let Some(tid) = thread.tid else {
            continue;
        };
        let Ok(walk) = frames::walk(&process.layout, &mem, thread.tstate) else {
            continue;
        };
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
