//! A debug view of the Python frames the kernel recorded (`probe spin
//! --dump-python-frames FILE`, hidden): one JSON line per distinct (thread, raw stack),
//! with each frame's code address and byte offset resolved through [`CodeCache`] while the
//! processes are still alive. The reports do not show Python frames yet; this is what the
//! integration tests check the kernel walker against.

use std::io::{self, Write};

use serde_json::{json, Value};

use super::code::CodeCache;
use super::memory::LiveMemory;
use crate::model::Recording;

/// Writes the dump of `recording` to `out`.
pub fn write(recording: &Recording, out: &mut dyn Write) -> io::Result<()> {
    let mut cache = CodeCache::new();
    for thread in recording.threads.values() {
        let Some(process) = recording.python.get(&thread.pid) else {
            continue;
        };
        let mem = LiveMemory::new(thread.pid);
        for (stack, count) in &thread.stacks {
            if stack.python.is_empty() && !stack.python_truncated {
                continue;
            }
            let frames: Vec<Value> = stack
                .python
                .iter()
                .map(|&(code, offset)| {
                    let info = cache.get(thread.pid, &process.layout, &mem, code).ok();
                    json!({
                        "code": code,
                        "offset": offset,
                        "qualname": info.as_ref().map(|i| i.qualname.clone()),
                        "file": info.as_ref().map(|i| i.filename.clone()),
                        "line": info.as_ref().and_then(|i| i.line_for(offset)),
                    })
                })
                .collect();
            let line = json!({
                "pid": thread.pid,
                "tid": thread.tid,
                "count": count,
                "truncated": stack.python_truncated,
                "frames": frames,
            });
            writeln!(out, "{line}")?;
        }
    }
    out.flush()
}
