//! The user stack each blocked thread of a dump blocked with: its saved registers (from
//! the kernel, `read_task_registers`), checked against what /proc/TID/syscall says, then
//! unwound in userspace with the same `.eh_frame` tables and rules the kernel's unwinder
//! uses, reading the thread's stack with `process_vm_readv` (the thread is blocked, so its
//! stack holds still), and named by the same symbolizer as every other command, Python
//! frames merged in place of the eval loop that runs them.
//!
//! A thread whose registers do not match what /proc said (it ran in between) gets no
//! stack rather than one that may belong to another moment.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::sync::Arc;

use probe_common::{TaskRegisters, TASK_STACK_TOP_WORDS, UNWIND_STOP_NO_RULE, UNWIND_STOP_READ};
use serde::Serialize;

use super::read::{SyscallLine, ThreadRead};
use crate::collect::unwind::{compile_mapped, mapping_bias};
use crate::elf::LoadSegment;
use crate::model::{FrameKind, PyRawFrame, RawStack, Recording, SampleKind};
use crate::procmaps::{Backing, FileId, MappedFile, ProcessMaps};
use crate::python::code::CodeInfo;
use crate::python::memory::{LiveMemory, ProcessMemory};
use crate::symbolize::{symbolize_stacks, KernelNames};
use crate::unwind::walk::{self, Registers, Rule, Walked};
use crate::unwind::{lookup, page_index, UnwindRow};

/// Words of x86-64's `struct pt_regs`, and where the registers used are in it.
const PT_REGS_WORDS: usize = 21;
const PT_REGS_BP: usize = 4;
const PT_REGS_ORIG_AX: usize = 15;
const PT_REGS_IP: usize = 16;
const PT_REGS_CS: usize = 17;
const PT_REGS_SP: usize = 19;

/// One frame of a thread's user stack, named.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct UserFrame {
    /// `native` or `python`.
    pub kind: &'static str,
    pub function: Option<String>,
    /// The file the code is in (a Python frame's source file).
    pub module: String,
    /// Offset in `module` (a Python frame's bytecode offset).
    pub offset: u64,
    pub file: Option<String>,
    pub line: Option<u32>,
}

/// A thread's user stack, innermost first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct UserStack {
    pub frames: Vec<UserFrame>,
    /// The unwind stopped before the outermost frame.
    pub truncated: bool,
}

/// The Python side a stack is merged with: each thread's raw frames and the code objects
/// they name.
#[derive(Debug, Default)]
pub struct PythonFrames {
    pub threads: HashMap<u32, (Vec<PyRawFrame>, bool)>,
    pub code: HashMap<(u32, u64), Option<Arc<CodeInfo>>>,
}

/// The saved user registers in `record` that agree with what /proc said of the thread
/// (`line`): the copy of the stack top and the padding at which the `pt_regs` hold the
/// same stack pointer, PC and syscall, saved from user mode. `None` when none does.
pub fn saved_registers(record: &TaskRegisters, line: &SyscallLine) -> Option<Registers> {
    let (nr, sp, pc) = match *line {
        SyscallLine::InSyscall { nr, sp, pc, .. } => (u64::from(nr), sp, pc),
        // orig_ax is -1 outside a syscall.
        SyscallLine::NotInSyscall { sp, pc } => (u64::MAX, sp, pc),
        SyscallLine::Running => return None,
    };
    record
        .tops
        .iter()
        .enumerate()
        .filter(|(i, _)| record.read & (1 << i) != 0)
        .flat_map(|(_, top)| {
            (0..=TASK_STACK_TOP_WORDS - PT_REGS_WORDS).map(move |padding| {
                let start = TASK_STACK_TOP_WORDS - PT_REGS_WORDS - padding;
                &top[start..start + PT_REGS_WORDS]
            })
        })
        .find(|regs| {
            regs[PT_REGS_IP] == pc
                && regs[PT_REGS_SP] == sp
                && regs[PT_REGS_ORIG_AX] == nr
                && regs[PT_REGS_CS] & 3 == 3
        })
        .map(|regs| Registers {
            pc,
            sp,
            bp: regs[PT_REGS_BP],
        })
}

/// A file's table, ready to search.
struct FileRules {
    rows: Vec<UnwindRow>,
    pages: Vec<u32>,
    base_pc: u32,
    segments: Vec<LoadSegment>,
}

/// Tables compiled during one dump, shared by all its processes (`None`: the file has
/// none, its frames go by frame pointer as in the kernel).
#[derive(Default)]
pub struct Tables {
    files: HashMap<FileId, Option<Arc<FileRules>>>,
}

impl Tables {
    fn get(&mut self, file: &MappedFile) -> Option<Arc<FileRules>> {
        self.files
            .entry(file.id())
            .or_insert_with(|| {
                let table = compile_mapped(file).ok()?;
                let (base_pc, pages) = page_index(&table.rows);
                Some(Arc::new(FileRules {
                    rows: table.rows,
                    pages,
                    base_pc,
                    segments: table.segments,
                }))
            })
            .clone()
    }
}

/// The rules for one process's addresses.
struct ProcessRules<'t> {
    mappings: Vec<(Range<u64>, u64, Option<Arc<MappedFile>>)>,
    tables: &'t mut Tables,
}

impl ProcessRules<'_> {
    fn rule(&mut self, pc: u64) -> Rule {
        let at = self
            .mappings
            .partition_point(|(range, ..)| range.start <= pc);
        let Some((range, file_offset, Some(file))) = at.checked_sub(1).map(|i| &self.mappings[i])
        else {
            return Rule::NoTable;
        };
        if pc >= range.end {
            return Rule::NoTable;
        }
        let Some(rules) = self.tables.get(file) else {
            return Rule::NoTable;
        };
        let Some(bias) = mapping_bias(&rules.segments, range.start, *file_offset) else {
            return Rule::NoTable;
        };
        match lookup(
            &rules.rows,
            &rules.pages,
            rules.base_pc,
            pc.wrapping_sub(bias),
        ) {
            Some(row) => Rule::Row(*row),
            None => Rule::Stop(UNWIND_STOP_NO_RULE),
        }
    }
}

/// Reads of a thread's stack, a page at a time.
struct StackReader<'m> {
    memory: &'m LiveMemory,
    pages: HashMap<u64, Option<Box<[u8; PAGE]>>>,
}

const PAGE: usize = 4096;

impl StackReader<'_> {
    fn word(&mut self, address: u64) -> Option<u64> {
        let page = address & !(PAGE as u64 - 1);
        let within = (address - page) as usize;
        if within + 8 > PAGE {
            // A word across two pages: rare (the stack is 8-aligned); read it alone.
            let mut bytes = [0u8; 8];
            self.memory.read(address, &mut bytes).ok()?;
            return Some(u64::from_ne_bytes(bytes));
        }
        let memory = self.memory;
        let bytes = self.pages.entry(page).or_insert_with(|| {
            let mut bytes = Box::new([0u8; PAGE]);
            memory.read(page, &mut bytes[..]).ok().map(|()| bytes)
        });
        let bytes = bytes.as_ref()?;
        Some(u64::from_ne_bytes(
            bytes[within..within + 8].try_into().ok()?,
        ))
    }
}

/// The user stacks of `threads` of process `pid` from their saved `registers`, named.
/// Threads without registers that match /proc get none; `notices` says how many and why.
pub fn user_stacks(
    pid: u32,
    threads: &BTreeMap<u32, ThreadRead>,
    registers: &HashMap<u32, TaskRegisters>,
    python: &PythonFrames,
    tables: &mut Tables,
    notices: &mut Vec<String>,
) -> HashMap<u32, UserStack> {
    let maps = match ProcessMaps::capture(pid) {
        Ok(maps) => maps,
        Err(err) => {
            notices.push(format!("native stacks not shown: {err}"));
            return HashMap::new();
        }
    };
    let mappings = maps
        .mappings()
        .map(|(range, offset, module)| {
            let file = match module.backing() {
                Backing::File(Ok(file)) => Some(Arc::clone(file)),
                _ => None,
            };
            (range, offset, file)
        })
        .collect();
    let mut rules = ProcessRules { mappings, tables };
    let memory = LiveMemory::new(pid);
    let mut moved = 0usize;
    let mut raw = BTreeMap::new();
    for (&tid, thread) in threads {
        let Some(line) = &thread.syscall else {
            continue;
        };
        if matches!(line, SyscallLine::Running) {
            continue;
        }
        let Some(regs) = registers
            .get(&tid)
            .and_then(|record| saved_registers(record, line))
        else {
            moved += 1;
            continue;
        };
        let mut stack = StackReader {
            memory: &memory,
            pages: HashMap::new(),
        };
        let walked = walk::walk(regs, |pc| rules.rule(pc), |at| stack.word(at));
        raw.insert(tid, raw_stack(walked, python.threads.get(&tid)));
    }
    if moved > 0 {
        notices.push(format!(
            "native stacks of {moved} thread{} not shown: {} ran between the reads of its \
             registers",
            if moved == 1 { "" } else { "s" },
            if moved == 1 { "it" } else { "each" },
        ));
    }
    symbolize(pid, raw, maps, &python.code)
}

fn raw_stack(walked: Walked, python: Option<&(Vec<PyRawFrame>, bool)>) -> RawStack {
    let (frames, python_truncated) = python.cloned().unwrap_or_default();
    RawStack {
        kind: SampleKind::OffCpu,
        user_error: walked.pcs.is_empty(),
        user: walked.pcs,
        user_tables: true,
        user_complete: walked.complete,
        user_stop: u8::try_from(walked.stop).unwrap_or(UNWIND_STOP_READ as u8),
        python: frames,
        python_truncated,
        ..RawStack::default()
    }
}

/// Names the stacks, all of one process in one pass of the symbolizer.
fn symbolize(
    pid: u32,
    stacks: BTreeMap<u32, RawStack>,
    maps: ProcessMaps,
    code: &HashMap<(u32, u64), Option<Arc<CodeInfo>>>,
) -> HashMap<u32, UserStack> {
    if stacks.is_empty() {
        return HashMap::new();
    }
    // No kernel frames: dump reads those from /proc.
    let names = KernelNames::look_up(&Recording::default(), |_| Ok::<_, String>(Vec::new()));
    symbolize_stacks(pid, stacks, maps, code.clone(), names)
        .into_iter()
        .map(|(tid, (frames, truncated))| {
            let frames = frames
                .into_iter()
                .filter(|frame| frame.kind != FrameKind::Kernel)
                .map(|frame| UserFrame {
                    kind: if frame.kind == FrameKind::Python {
                        "python"
                    } else {
                        "native"
                    },
                    function: frame.function,
                    module: frame.module,
                    offset: frame.module_offset,
                    file: frame.file,
                    line: frame.line,
                })
                .collect();
            (tid, UserStack { frames, truncated })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(top: [u64; TASK_STACK_TOP_WORDS], read: u32) -> TaskRegisters {
        TaskRegisters {
            tid: 7,
            read,
            tops: [[0; TASK_STACK_TOP_WORDS], top],
        }
    }

    #[test]
    fn registers_are_taken_only_where_they_match_proc() {
        // pt_regs ending two words below the top (the padding some kernels keep).
        let mut top = [0u64; TASK_STACK_TOP_WORDS];
        let start = TASK_STACK_TOP_WORDS - PT_REGS_WORDS - 2;
        top[start + PT_REGS_BP] = 0x7ffd_0100;
        top[start + PT_REGS_ORIG_AX] = 202;
        top[start + PT_REGS_IP] = 0x7f00_1234;
        top[start + PT_REGS_CS] = 0x33;
        top[start + PT_REGS_SP] = 0x7ffd_0000;
        let line = SyscallLine::InSyscall {
            nr: 202,
            args: [0; 6],
            sp: 0x7ffd_0000,
            pc: 0x7f00_1234,
        };
        let found = saved_registers(&record(top, 0b10), &line);
        assert_eq!(
            found,
            Some(Registers {
                pc: 0x7f00_1234,
                sp: 0x7ffd_0000,
                bp: 0x7ffd_0100
            })
        );
        // The copy that was not read, another syscall, or a thread that moved: none.
        assert_eq!(saved_registers(&record(top, 0b01), &line), None);
        let other = SyscallLine::InSyscall {
            nr: 7,
            args: [0; 6],
            sp: 0x7ffd_0000,
            pc: 0x7f00_1234,
        };
        assert_eq!(saved_registers(&record(top, 0b10), &other), None);
        let moved = SyscallLine::InSyscall {
            nr: 202,
            args: [0; 6],
            sp: 0x7ffd_0008,
            pc: 0x7f00_1234,
        };
        assert_eq!(saved_registers(&record(top, 0b10), &moved), None);
        assert_eq!(
            saved_registers(&record(top, 0b10), &SyscallLine::Running),
            None
        );
    }
}
