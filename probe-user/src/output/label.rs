//! The one way every output names a frame and a thread.
//!
//! Labels leave out line numbers and addresses of named frames on purpose: a flame graph
//! merges frames by label, and two samples in one function at different lines belong in
//! one box. Formats with fields for them (speedscope, pprof) carry files and lines beside
//! the label.

use crate::model::{Frame, FrameKind, ThreadProfile};

/// Suffix of kernel frames: flamegraph.pl's and perf's, which inferno knows (it leaves the
/// suffix out of the text drawn in the box).
const KERNEL_SUFFIX: &str = "_[k]";
/// Suffix of Python frames, in the style of the kernel one.
const PYTHON_SUFFIX: &str = "_[py]";

/// The label of a frame: a native frame's function name; a Python frame's qualified name
/// with its file (`is_zipfile (zipfile/__init__.py)_[py]`); a kernel function with `_[k]`;
/// `module+0xoffset` (with the same suffixes) for a frame without a name. Safe for the
/// folded format: no `;`, no control characters.
pub fn frame_label(frame: &Frame) -> String {
    let suffix = suffix(frame.kind);
    let label = match (&frame.function, &frame.file) {
        (None, _) => format!("{}+{:#x}{suffix}", frame.module, frame.module_offset),
        (Some(name), Some(file)) if frame.kind == FrameKind::Python => {
            format!("{name} ({}){suffix}", short_file(file))
        }
        (Some(name), _) => format!("{name}{suffix}"),
    };
    sanitize(&label)
}

fn suffix(kind: FrameKind) -> &'static str {
    match kind {
        FrameKind::User => "",
        FrameKind::Kernel => KERNEL_SUFFIX,
        FrameKind::Python => PYTHON_SUFFIX,
    }
}

/// The file name of `path`, with its directory when the name alone says little
/// (`zipfile/__init__.py`). Full paths are long and differ between machines; the full
/// path is in the formats that have a file field.
fn short_file(path: &str) -> &str {
    let mut slashes = path.rmatch_indices('/').map(|(index, _)| index);
    let Some(last) = slashes.next() else {
        return path;
    };
    if &path[last + 1..] != "__init__.py" {
        return &path[last + 1..];
    }
    match slashes.next() {
        Some(before) => &path[before + 1..],
        None => path,
    }
}

/// The label of a thread's root frame: OS thread name, Python `threading` name if any,
/// tid (`python3 [py "MainThread"] tid 1234`).
pub fn thread_label(thread: &ThreadProfile) -> String {
    let label = match &thread.python_name {
        Some(python) => format!("{} [py \"{python}\"] tid {}", thread.name, thread.tid),
        None => format!("{} tid {}", thread.name, thread.tid),
    };
    sanitize(&label)
}

/// Replaces what would break a folded line: `;` separates frames, and a newline or other
/// control character would end or garble the line. Names come from the traced programs
/// and are untrusted.
fn sanitize(label: &str) -> String {
    one_line(label).replace(';', ":")
}

/// `text` with each control character (newlines included) replaced by a space: titles
/// hold command lines, which are untrusted and may span lines.
pub fn one_line(text: &str) -> String {
    let plain = |c: char| if c.is_control() { ' ' } else { c };
    text.chars().map(plain).collect()
}

#[cfg(test)]
mod tests {
    use super::{frame_label, thread_label};
    use crate::model::FrameKind;
    use crate::output::fixture::{frame, thread};

    #[test]
    fn frames_are_labelled_by_kind() {
        let native = frame(FrameKind::User, Some("storm"), "syscall_storm");
        let kernel = frame(FrameKind::Kernel, Some("do_syscall_64"), "[kernel]");
        let mut python = frame(FrameKind::Python, Some("is_zipfile"), "x");
        python.file = Some("/usr/lib/python3.12/zipfile/__init__.py".into());
        assert_eq!(frame_label(&native), "storm");
        assert_eq!(frame_label(&kernel), "do_syscall_64_[k]");
        assert_eq!(
            frame_label(&python),
            "is_zipfile (zipfile/__init__.py)_[py]"
        );
        python.file = Some("<frozen posixpath>".into());
        assert_eq!(frame_label(&python), "is_zipfile (<frozen posixpath>)_[py]");
    }

    #[test]
    fn unnamed_frames_are_module_and_offset() {
        let mut unnamed = frame(FrameKind::User, None, "libc.so.6");
        unnamed.module_offset = 0x2a10;
        assert_eq!(frame_label(&unnamed), "libc.so.6+0x2a10");
        let mut kernel = frame(FrameKind::Kernel, None, "[kernel]");
        kernel.module_offset = 0x10;
        assert_eq!(frame_label(&kernel), "[kernel]+0x10_[k]");
    }

    #[test]
    fn labels_never_break_a_folded_line() {
        let evil = frame(FrameKind::User, Some("a;b\nc\td"), "m");
        assert_eq!(frame_label(&evil), "a:b c d");
        let mut named = thread(7, "x;y\n");
        named.python_name = Some("Main;\r".into());
        assert_eq!(thread_label(&named), "x:y  [py \"Main: \"] tid 7");
    }

    #[test]
    fn threads_are_labelled_with_both_names() {
        let mut main = thread(1234, "python3");
        assert_eq!(thread_label(&main), "python3 tid 1234");
        main.python_name = Some("MainThread".into());
        assert_eq!(thread_label(&main), "python3 [py \"MainThread\"] tid 1234");
    }
}
