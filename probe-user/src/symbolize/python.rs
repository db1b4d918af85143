//! Python frames in a stack: named from the code objects the collector read while the
//! process ran, and put in place of the native eval-loop frames that ran them.
//!
//! The kernel marks the outermost frame of each eval-loop call (`PyRawFrame::call_entry`),
//! so the Python frames split into calls, innermost first, and the n-th
//! `_PyEval_EvalFrameDefault` frame of the native stack (innermost first) is replaced by the
//! n-th call. Calls left over (the native walk broke before reaching their eval frames, as
//! it does in interpreters built without frame pointers) follow the last native frame;
//! such a stack is marked truncated, since its native part is incomplete.
//!
//! The interpreter's own native frames inside the Python part of a stack (the leaf where
//! the eval loop happened to be: `PyNumber_Add`, `_PyObject_Malloc`, ... and the call
//! machinery between Python calls) are left out: they change with every sample, so they
//! would split one Python stack into dozens of rare ones, and say nothing about the
//! program. Native frames of other libraries (libc, C extensions) stay, and so do the
//! interpreter's frames outside the outermost Python frame (`Py_RunMain`, `main`).

use std::collections::HashMap;
use std::sync::Arc;

use super::{Pending, SymFrame};
use crate::model::{FrameKind, PyRawFrame};
use crate::python::code::CodeInfo;

/// Module of Python frames whose code object could not be read.
const UNKNOWN_PYTHON_MODULE: &str = "[python]";

/// A code object's strings, shared by all the frames that show it.
#[derive(Clone, Debug)]
struct Code {
    info: Arc<CodeInfo>,
    qualname: Arc<str>,
    file: Arc<str>,
}

/// The code objects of a recording, by (pid, address), ready to name frames.
#[derive(Debug, Default)]
pub(super) struct PythonCode {
    code: HashMap<(u32, u64), Code>,
    unknown: Arc<str>,
}

impl PythonCode {
    pub(super) fn new(read: &HashMap<(u32, u64), Option<Arc<CodeInfo>>>) -> PythonCode {
        let code = read
            .iter()
            .filter_map(|(&key, info)| {
                let info = info.as_ref()?;
                let code = Code {
                    qualname: info.qualname.as_str().into(),
                    file: info.filename.as_str().into(),
                    info: Arc::clone(info),
                };
                Some((key, code))
            })
            .collect();
        PythonCode {
            code,
            unknown: UNKNOWN_PYTHON_MODULE.into(),
        }
    }

    /// One frame: `qualname at file:line`, or `[python]+code address` when unreadable.
    fn frame(&self, pid: u32, raw: &PyRawFrame) -> Pending {
        match self.code.get(&(pid, raw.code)) {
            Some(code) => Pending {
                kind: FrameKind::Python,
                address: raw.code,
                inlined: false,
                module: Arc::clone(&code.file),
                module_offset: u64::from(raw.offset),
                sym: Some(SymFrame {
                    function: Arc::clone(&code.qualname),
                    file: Some(Arc::clone(&code.file)),
                    line: code.info.line_for(raw.offset),
                }),
            },
            None => Pending {
                kind: FrameKind::Python,
                address: raw.code,
                inlined: false,
                module: Arc::clone(&self.unknown),
                module_offset: raw.code,
                sym: None,
            },
        }
    }

    /// The Python frames of one sample of process `pid`, one list per eval-loop call,
    /// innermost call first.
    pub(super) fn calls(&self, pid: u32, frames: &[PyRawFrame]) -> Vec<Vec<Pending>> {
        let mut calls = Vec::new();
        let mut call = Vec::new();
        for raw in frames {
            call.push(self.frame(pid, raw));
            if raw.call_entry {
                calls.push(std::mem::take(&mut call));
            }
        }
        if !call.is_empty() {
            calls.push(call);
        }
        calls
    }
}

/// Whether a native function is CPython's eval loop, which runs Python frames. Compilers
/// split off cold parts as `name.cold`.
pub(super) fn is_eval_loop(function: &str) -> bool {
    let base = function.split('.').next().unwrap_or(function);
    base == "_PyEval_EvalFrameDefault"
}

/// Whether a module is the CPython interpreter: `libpython3.X.so...` or a statically
/// linked `python3.X` executable.
fn is_interpreter(module: &str) -> bool {
    let name = module.rsplit('/').next().unwrap_or(module);
    name.starts_with("libpython") || name.starts_with("python")
}

/// `native` (user frames, innermost first) with its eval-loop frames replaced by `calls`,
/// in order, and the interpreter's frames inward of the outermost Python frame left out
/// (see the module doc). Calls left over follow the last native frame: their eval-loop
/// frames lie beyond where the native walk stopped.
pub(super) fn merge(native: Vec<Pending>, calls: Vec<Vec<Pending>>) -> Vec<Pending> {
    if calls.is_empty() {
        return native;
    }
    let mut merged = replace_eval_frames(native, calls);
    let outermost_python = merged
        .iter()
        .rposition(|frame| frame.kind == FrameKind::Python)
        .unwrap_or(0);
    let mut index = 0;
    merged.retain(|frame| {
        let keep = index >= outermost_python
            || frame.kind != FrameKind::User
            || !is_interpreter(&frame.module);
        index += 1;
        keep
    });
    merged
}

fn replace_eval_frames(native: Vec<Pending>, calls: Vec<Vec<Pending>>) -> Vec<Pending> {
    let mut calls = calls.into_iter();
    let mut merged = Vec::with_capacity(native.len() + calls.len());
    for frame in native {
        let eval = frame
            .sym
            .as_ref()
            .is_some_and(|sym| is_eval_loop(&sym.function));
        match if eval { calls.next() } else { None } {
            Some(call) => merged.extend(call),
            None => merged.push(frame),
        }
    }
    merged.extend(calls.flatten());
    merged
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::python::offsets::PyLayout;

    const LIBPYTHON: &str = "/usr/lib/libpython3.12.so.1.0";

    fn native(module: &str, function: Option<&str>) -> Pending {
        Pending {
            kind: FrameKind::User,
            module: module.into(),
            module_offset: 0x100,
            address: 0x100,
            inlined: false,
            sym: function.map(|name| SymFrame {
                function: name.into(),
                file: None,
                line: None,
            }),
        }
    }

    fn py(name: &str) -> Pending {
        Pending {
            kind: FrameKind::Python,
            module: "app.py".into(),
            module_offset: 0,
            address: 0,
            inlined: false,
            sym: Some(SymFrame {
                function: name.into(),
                file: Some("app.py".into()),
                line: None,
            }),
        }
    }

    fn names(frames: &[Pending]) -> Vec<String> {
        let name = |f: &Pending| match (&f.sym, f.kind) {
            (Some(sym), FrameKind::Python) => format!("py:{}", sym.function),
            (Some(sym), _) => sym.function.to_string(),
            (None, _) => format!("{}+{:#x}", f.module, f.module_offset),
        };
        frames.iter().map(name).collect()
    }

    #[test]
    fn each_eval_loop_frame_is_replaced_by_its_call_in_order() {
        let native = vec![
            native("libc.so.6", Some("__memmove_avx_unaligned")),
            native(LIBPYTHON, Some("PyNumber_Add")),
            native(LIBPYTHON, Some("_PyEval_EvalFrameDefault")),
            native("ext.so", Some("call_back")),
            native(LIBPYTHON, Some("_PyObject_Call")),
            native(LIBPYTHON, Some("_PyEval_EvalFrameDefault.cold")),
            native(LIBPYTHON, Some("Py_RunMain")),
            native("python3.12", Some("main")),
        ];
        let calls = vec![vec![py("inner"), py("middle")], vec![py("outer")]];
        assert_eq!(
            names(&merge(native, calls)),
            [
                "__memmove_avx_unaligned",
                "py:inner",
                "py:middle",
                "call_back",
                "py:outer",
                "Py_RunMain",
                "main"
            ],
            "the interpreter's own frames inside the Python part are left out"
        );
    }

    #[test]
    fn calls_beyond_a_broken_native_walk_follow_it_and_spare_eval_frames_stay() {
        let broken = vec![
            native(LIBPYTHON, Some("_PyEval_EvalFrameDefault")),
            native("libc.so.6", None),
        ];
        let calls = vec![vec![py("inner")], vec![py("outer")]];
        assert_eq!(
            names(&merge(broken, calls)),
            ["py:inner", "libc.so.6+0x100", "py:outer"]
        );
        let spare = vec![
            native(LIBPYTHON, Some("_PyEval_EvalFrameDefault")),
            native(LIBPYTHON, Some("_PyEval_EvalFrameDefault")),
        ];
        assert_eq!(
            names(&merge(spare, vec![vec![py("only")]])),
            ["py:only", "_PyEval_EvalFrameDefault"]
        );
        let plain = vec![native(LIBPYTHON, Some("main"))];
        assert_eq!(names(&merge(plain, Vec::new())), ["main"]);
    }

    #[test]
    fn frames_split_into_calls_after_each_entry_and_unread_code_stays_unnamed() {
        let layout = PyLayout::table_row(3, 12).unwrap();
        let mut read = HashMap::new();
        let info = crate::python::testutil::code_info(&layout, "work", "app.py");
        read.insert((7, 0x10), Some(Arc::new(info)));
        read.insert((7, 0x20), None);
        let code = PythonCode::new(&read);
        let frame = |code, call_entry| PyRawFrame {
            code,
            offset: 0,
            call_entry,
        };
        let calls = code.calls(
            7,
            &[frame(0x10, false), frame(0x20, true), frame(0x10, false)],
        );
        let calls: Vec<Vec<String>> = calls.iter().map(|call| names(call)).collect();
        assert_eq!(
            calls,
            [vec!["py:work", "[python]+0x20"], vec!["py:work"]],
            "the last call ends with the frames, marked or not"
        );
        // Another process's code at the same address is not this one's.
        assert_eq!(
            names(&code.calls(8, &[frame(0x10, true)])[0]),
            ["[python]+0x10"]
        );
    }
}
