//! One stack frame on one line of text.

use std::fmt::{self, Display, Formatter};

use super::human::Escaped;
use super::schema::StackFrame;
use crate::model::FrameKind;

/// `[k]` before kernel frames, `[py]` before Python frames, nothing before native user
/// frames; padded to one width so that names line up.
pub(super) fn kind_mark(kind: FrameKind) -> &'static str {
    match kind {
        FrameKind::Kernel => "[k]  ",
        FrameKind::Python => "[py] ",
        FrameKind::User => "     ",
    }
}

/// The mark alone, for a frame on a line of its own (`loop in: [py] work at app.py:3`).
pub(super) fn short_kind_mark(kind: FrameKind) -> &'static str {
    match kind {
        FrameKind::Kernel => "[k] ",
        FrameKind::Python => "[py] ",
        FrameKind::User => "",
    }
}

/// One frame on one line: `spin_inner (spin_loop) at spin.c:12`, `libfoo.so+0x1a2b`, for
/// kernel code `do_syscall_64`, with the module only when it is a kernel module, and for
/// Python code `Worker.run at /srv/app/worker.py:42` (the module is the file).
pub(super) struct FrameText<'a> {
    kind: FrameKind,
    function: Option<&'a str>,
    module: &'a str,
    module_offset: u64,
    file: Option<&'a str>,
    line: Option<u32>,
}

impl<'a> From<&'a StackFrame> for FrameText<'a> {
    fn from(frame: &'a StackFrame) -> Self {
        Self {
            kind: frame.kind,
            function: frame.function.as_deref(),
            module: &frame.module,
            module_offset: frame.module_offset,
            file: frame.file.as_deref(),
            line: frame.line,
        }
    }
}

/// The kernel image's module name: not worth repeating on every kernel frame.
const KERNEL_MODULE: &str = "[kernel]";

impl Display for FrameText<'_> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let module = Escaped(self.module);
        match self.function {
            None => write!(f, "{module}+{:#x}", self.module_offset)?,
            Some(function) if self.kind == FrameKind::Kernel && self.module == KERNEL_MODULE => {
                write!(f, "{}", Escaped(function))?
            }
            Some(function) if self.kind == FrameKind::Python => write!(f, "{}", Escaped(function))?,
            Some(function) => write!(f, "{} ({module})", Escaped(function))?,
        }
        if let Some(file) = self.file {
            write!(f, " at {}", Escaped(file))?;
            if let Some(line) = self.line {
                write!(f, ":{line}")?;
            }
        }
        Ok(())
    }
}
