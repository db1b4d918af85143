//! `probe dump`'s use of the kernel side: `read_task_registers` alone, loaded from the same
//! object as every other program, with the maps it does not use shrunk to nothing (an
//! object's maps are all created when it loads).

use std::collections::HashMap;

use aya::maps::{Array, HashMap as BpfHashMap, MapData};
use aya::programs::{RawTracePoint, RawTracePointRunOptions, TestRun};
use aya::{Ebpf, EbpfLoader};
use probe_common::{names, task_walk_args as arg, TaskRegisters, TaskWalk};

use super::{
    classify_object_error, open_map, program_error, raise_memlock_limit, LoadError, PROGRAMS,
};

/// Maps the other programs use, created with one entry (or the smallest ring buffer).
const UNUSED_MAPS: [&str; 13] = [
    names::THREAD_STATS,
    names::SYSCALL_COUNTS,
    names::TARGET_PIDS,
    names::PY_PROCS,
    names::PY_THREADS,
    names::HOT_THREADS,
    names::UNWIND_ROWS,
    names::UNWIND_PAGES,
    names::UNWIND_MAPPINGS,
    names::UNWIND_FILES,
    names::UNWIND_PROCS,
    "OFF_CPU_SINCE",
    names::SYSCALL_PATH_ARG,
];

/// The smallest ring buffer: one page.
const RING_BYTES: u32 = 4096;

/// The loaded `read_task_registers` and the struct offsets it is given.
pub struct RegisterReader {
    ebpf: Ebpf,
    /// The test run's arguments after the tgid (see [`probe_common::task_walk_args`]).
    offsets: [u64; arg::COUNT],
}

/// What one run found of a process.
#[derive(Debug, Default)]
pub struct ProcessRegisters {
    pub walk: TaskWalk,
    /// Tid -> the tops of its kernel stack.
    pub threads: HashMap<u32, TaskRegisters>,
}

impl RegisterReader {
    /// Loads the program. Fails with the reason when the kernel programs, the struct
    /// offsets (the kernel's BTF) or the permission to load are missing.
    pub fn load() -> Result<RegisterReader, LoadError> {
        if PROGRAMS.is_empty() {
            return Err(LoadError::Other(
                "this probe was built with AYA_BUILD_SKIP set, without its kernel programs"
                    .to_owned(),
            ));
        }
        let field = |name: &str, field: &str| {
            crate::btf::kernel_field_offset(name, field)
                .map(u64::from)
                .map_err(LoadError::Btf)
        };
        let mut offsets = [0u64; arg::COUNT];
        offsets[arg::TASKS] = field("task_struct", "tasks")?;
        offsets[arg::GROUP_LEADER] = field("task_struct", "group_leader")?;
        offsets[arg::SIGNAL] = field("task_struct", "signal")?;
        offsets[arg::THREAD_HEAD] = field("signal_struct", "thread_head")?;
        offsets[arg::THREAD_NODE] = field("task_struct", "thread_node")?;
        offsets[arg::PID] = field("task_struct", "pid")?;
        offsets[arg::TGID_FIELD] = field("task_struct", "tgid")?;
        offsets[arg::STACK] = field("task_struct", "stack")?;
        raise_memlock_limit();
        let mut loader = EbpfLoader::new();
        for map in UNUSED_MAPS {
            loader.map_max_entries(map, 1);
        }
        let mut ebpf = loader
            .map_max_entries(names::SAMPLES, RING_BYTES)
            .map_max_entries(names::SYSCALL_ARGS, RING_BYTES)
            .load(PROGRAMS)
            .map_err(classify_object_error)?;
        let name = names::PROG_TASK_REGISTERS;
        let program: &mut RawTracePoint = ebpf
            .program_mut(name)
            .ok_or_else(|| LoadError::Other(format!("find program `{name}` in the object")))?
            .try_into()
            .map_err(|source| program_error(name, source))?;
        program
            .load()
            .map_err(|source| program_error(name, source))?;
        Ok(RegisterReader { ebpf, offsets })
    }

    /// The saved registers of every thread of process `tgid`, as the kernel holds them now.
    pub fn read(&mut self, tgid: u32) -> Result<ProcessRegisters, LoadError> {
        let name = names::PROG_TASK_REGISTERS;
        let mut options = RawTracePointRunOptions::new();
        options.args[..arg::COUNT].copy_from_slice(&self.offsets);
        options.args[arg::TGID] = u64::from(tgid);
        let program: &mut RawTracePoint = self
            .ebpf
            .program_mut(name)
            .ok_or_else(|| LoadError::Other(format!("find program `{name}` in the object")))?
            .try_into()
            .map_err(|source| program_error(name, source))?;
        program
            .test_run(options)
            .map_err(|source| program_error(name, source))?;
        let walk = {
            let summary: Array<&MapData, TaskWalk> =
                open_map(&self.ebpf, names::TASK_WALK, Array::try_from)?;
            summary
                .get(&0, 0)
                .map_err(|err| LoadError::Other(format!("read `{}`: {err}", names::TASK_WALK)))?
        };
        let map = self
            .ebpf
            .map_mut(names::TASK_REGISTERS)
            .ok_or_else(|| LoadError::Other(format!("find map `{}`", names::TASK_REGISTERS)))?;
        let mut stored: BpfHashMap<&mut MapData, u32, TaskRegisters> = BpfHashMap::try_from(map)
            .map_err(|err| {
                LoadError::Other(format!("open map `{}`: {err}", names::TASK_REGISTERS))
            })?;
        let tids: Vec<u32> = stored.keys().filter_map(Result::ok).collect();
        let mut threads = HashMap::with_capacity(tids.len());
        for tid in tids {
            if let Ok(registers) = stored.get(&tid, 0) {
                threads.insert(tid, registers);
            }
            // Emptied for the next process: a tid that is gone must not be found there.
            let _ = stored.remove(&tid);
        }
        Ok(ProcessRegisters { walk, threads })
    }
}
