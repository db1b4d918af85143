//! A debug view of the Python frames the kernel recorded (`probe spin
//! --dump-python-frames FILE`, hidden): one JSON line per distinct (thread, raw stack),
//! with each frame's code address and byte offset resolved through the code objects the
//! collector read while the processes ran ([`Recording::python_code`]). The integration
//! tests check the kernel walker against it, apart from the merging the reports do.

use std::io::{self, Write};

use serde_json::{json, Value};

use crate::model::Recording;

/// Writes the dump of `recording` to `out`.
pub fn write(recording: &Recording, out: &mut dyn Write) -> io::Result<()> {
    for thread in recording.threads.values() {
        if !recording.resources.python.contains_key(&thread.pid) {
            continue;
        }
        for (stack, stats) in &thread.stacks {
            let count = stats.count;
            if stack.python.is_empty() && !stack.python_truncated {
                continue;
            }
            let frames: Vec<Value> = stack
                .python
                .iter()
                .map(|frame| {
                    let info = recording
                        .python_code
                        .get(&(thread.pid, frame.code))
                        .and_then(Option::as_ref);
                    let offset = frame.offset;
                    json!({
                        "code": frame.code,
                        "offset": offset,
                        "call_entry": frame.call_entry,
                        "qualname": info.as_ref().map(|i| i.qualname.clone()),
                        "file": info.as_ref().map(|i| i.filename.clone()),
                        "line": info.as_ref().and_then(|i| i.line_for(offset)),
                    })
                })
                .collect();
            let line = json!({
                "pid": thread.pid,
                "tid": thread.tid,
                "python_thread_name": thread.python_name,
                "count": count,
                "truncated": stack.python_truncated,
                "frames": frames,
            });
            writeln!(out, "{line}")?;
        }
    }
    out.flush()
}
