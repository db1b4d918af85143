//! Naming the frames of a [`Recording`]: raw addresses in, a [`Profile`] out.
//!
//! User addresses are translated to (file, file offset) through the [`ProcessMaps`] captured
//! while each process was alive, and symbolized from the held-open file with blazesym's ELF
//! source, so a process that exited, or whose binary was replaced, still gets names. Line
//! numbers come only from DWARF a file carries itself; a stripped library is named from the
//! symbol table of its separate debug file when one is installed (`file_source`). Kernel
//! addresses are named by the kernel's own symbol lookup, asked address by address while
//! probe's programs are loaded ([`KernelNames::look_up`]); where that is unavailable, from
//! /proc/kallsyms (`kallsyms`). A vmlinux is rarely installed; kallsyms has every function
//! name.
//!
//! The work is batched: every distinct (file, offset) of all threads and processes is
//! symbolized once, in one blazesym call per file, by a `Symbolizer` of that file's own,
//! whose parsed ELF/DWARF data is freed before the next file is read.
//!
//! User stacks come from the kernel's walk with the `.eh_frame` tables (see `unwind`), which
//! says itself whether it reached the outermost frame, or, for processes without tables,
//! from a frame-pointer walk, which goes astray in code built without frame pointers. A
//! user address outside every executable mapping is the sign: the stack stops there and is
//! marked truncated. No frame is ever invented. Frames of stripped functions are named by
//! where their function begins (`[fn@0x4a00]`, from the CFI), so they aggregate.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use blazesym::symbolize::source::{Elf, Process, Source};
use blazesym::symbolize::{CodeInfo, Input, Sym, Symbolized, Symbolizer};
use blazesym::Pid;
use probe_common::MAX_STACK_DEPTH;

use crate::elf::{self, LoadSegment};
use crate::model::{
    Frame, FrameKind, Interner, ProcessInfo, Profile, RawStack, Recording, SampleKind, StackId,
    StackSamples, StackStats, ThreadProfile, ThreadRecord,
};
use crate::procmaps::{self, Backing, FileId, Location, ProcMapsError, ProcessMaps};
use file_source::FileSource;
pub use kallsyms::KernelSymbols;

mod file_source;
mod function_starts;
mod kallsyms;
mod modules;
mod python;

/// Module of user frames whose process's mappings are unknown.
const UNKNOWN_MODULE: &str = "[unknown]";
/// Module of kernel frames outside every loadable kernel module.
const KERNEL_MODULE: &str = "[kernel]";

/// Symbolize every thread's stacks and copy everything else across.
///
/// Takes the recording by value: names and syscall maps move into the profile without
/// copies, processes whose mappings were never captured get captured into it (if still
/// alive), and the files the [`ProcessMaps`] held open are closed when it is dropped here.
/// Never fails: what cannot be named becomes unnamed frames plus a line in
/// [`Profile::notices`].
pub fn symbolize(recording: Recording) -> Profile {
    symbolize_with(
        recording,
        KernelNames::kallsyms(KernelSymbols::read(), None),
    )
}

/// Where kernel frames get their names.
pub struct KernelNames {
    source: KernelNameSource,
}

enum KernelNameSource {
    /// The kernel's own lookup: what `%ps` printed for each lookup address (`None`: it
    /// failed, or the name did not fit).
    LookedUp(HashMap<u64, Option<Vec<u8>>>),
    /// All of /proc/kallsyms, and why the lookup was not used (`None`: not tried).
    Kallsyms {
        symbols: std::io::Result<KernelSymbols>,
        instead_of_lookup: Option<String>,
    },
}

impl KernelNames {
    /// Names the kernel addresses of `recording`'s stacks with `lookup`, the kernel's own
    /// symbol lookup (`Probe::name_kernel_addresses`: given addresses, what `%ps` prints
    /// for each). Reads /proc/kallsyms instead when the lookup fails. Call it while probe's
    /// programs are loaded: a sample can land inside one (`sys_enter` runs in every
    /// syscall), and the kernel knows a BPF program's name only while it is loaded.
    pub fn look_up<E: std::fmt::Display>(
        recording: &Recording,
        lookup: impl FnOnce(&[u64]) -> Result<Vec<Option<Vec<u8>>>, E>,
    ) -> KernelNames {
        let addrs: Vec<u64> = kernel_lookup_addrs(recording).into_iter().collect();
        if addrs.is_empty() {
            return KernelNames {
                source: KernelNameSource::LookedUp(HashMap::new()),
            };
        }
        match lookup(&addrs) {
            Ok(names) if names.len() == addrs.len() => KernelNames {
                source: KernelNameSource::LookedUp(addrs.into_iter().zip(names).collect()),
            },
            Ok(names) => Self::kallsyms(
                KernelSymbols::read(),
                Some(format!(
                    "the lookup gave {} names for {} addresses",
                    names.len(),
                    addrs.len()
                )),
            ),
            Err(err) => Self::kallsyms(KernelSymbols::read(), Some(err.to_string())),
        }
    }

    /// Names from all of /proc/kallsyms (read while probe's programs are loaded, for the
    /// reason [`KernelNames::look_up`] gives); `instead_of_lookup` says why the kernel's
    /// own lookup was not used, if it was tried.
    pub fn kallsyms(
        symbols: std::io::Result<KernelSymbols>,
        instead_of_lookup: Option<String>,
    ) -> KernelNames {
        KernelNames {
            source: KernelNameSource::Kallsyms {
                symbols,
                instead_of_lookup,
            },
        }
    }

    /// Where the names come from, for diagnostics (`probe spin --self-stats`).
    pub fn describe(&self) -> String {
        match &self.source {
            KernelNameSource::LookedUp(_) => "kernel lookup".to_owned(),
            KernelNameSource::Kallsyms {
                instead_of_lookup: None,
                ..
            } => "/proc/kallsyms".to_owned(),
            KernelNameSource::Kallsyms {
                instead_of_lookup: Some(why),
                ..
            } => format!("/proc/kallsyms (the kernel lookup failed: {why})"),
        }
    }
}

/// [`symbolize`], with kernel names looked up earlier: while probe's own programs were
/// still loaded, so that frames inside them get their names.
pub fn symbolize_with(mut recording: Recording, kernel_names: KernelNames) -> Profile {
    let mut notices = std::mem::take(&mut recording.notices);
    capture_missing_maps(&mut recording, &mut notices);
    let mut resolved = Resolved::new(&recording, kernel_names, &mut notices);
    resolved.python = python::PythonCode::new(&recording.python_code);
    let period_ns = 1_000_000_000 / recording.frequency_hz.max(1);
    let mut profile = Profile {
        window: recording.window.clone(),
        frequency_hz: recording.frequency_hz,
        online_cpus: recording.online_cpus,
        target_pids: recording.target_pids.clone(),
        processes: std::mem::take(&mut recording.processes),
        loss: recording.loss.clone(),
        ..Profile::default()
    };
    let mut interner = Interner::default();
    for thread in std::mem::take(&mut recording.threads).into_values() {
        let maps = &recording.resources.process_maps;
        let thread = thread_profile(
            thread,
            maps,
            &resolved,
            period_ns,
            &mut profile,
            &mut interner,
        );
        profile.threads.push(thread);
    }
    profile.modules = modules::describe(&profile.frames, &recording.resources.process_maps);
    profile.notices = notices;
    profile
}

/// Names one stack of process `pid`, unwound elsewhere (a blocked thread's, read from its
/// saved registers): its frames innermost first, and whether it is truncated. The same
/// path as a whole recording's, with `maps` taken when the stack was.
pub fn symbolize_stack(
    pid: u32,
    stack: RawStack,
    maps: ProcessMaps,
    kernel_names: KernelNames,
) -> (Vec<Frame>, bool) {
    let stacks = BTreeMap::from([(pid, stack)]);
    symbolize_stacks(pid, stacks, maps, HashMap::new(), kernel_names)
        .remove(&pid)
        .unwrap_or((Vec::new(), true))
}

/// [`symbolize_stack`] for several threads of process `pid` at once (tid -> its stack, all
/// with the generation of `maps`), in one pass of the symbolizer; `python_code` names their
/// Python frames. Each thread's frames, innermost first, and whether they are truncated.
pub fn symbolize_stacks(
    pid: u32,
    stacks: BTreeMap<u32, RawStack>,
    maps: ProcessMaps,
    python_code: HashMap<(u32, u64), Option<Arc<crate::python::code::CodeInfo>>>,
    kernel_names: KernelNames,
) -> HashMap<u32, (Vec<Frame>, bool)> {
    let generation = stacks.values().next().map_or(0, |s| s.maps_generation);
    let threads = stacks
        .into_iter()
        .map(|(tid, stack)| {
            let stats = StackStats {
                count: 1,
                ..StackStats::default()
            };
            let record = ThreadRecord {
                tid,
                pid,
                stacks: HashMap::from([(stack, stats)]),
                ..ThreadRecord::default()
            };
            (tid, record)
        })
        .collect();
    let mut recording = Recording {
        frequency_hz: 1,
        threads,
        python_code,
        ..Recording::default()
    };
    recording
        .resources
        .process_maps
        .insert((pid, generation), maps);
    let profile = symbolize_with(recording, kernel_names);
    profile
        .threads
        .iter()
        .filter_map(|thread| {
            let samples = thread.samples.first()?;
            let frames = profile.stack_frames(samples.stack).cloned().collect();
            Some((thread.tid, (frames, profile.stack_truncated(samples.stack))))
        })
        .collect()
}

/// The collector captures maps at a process's first sample; if that failed or was skipped,
/// try now, while the process may still be alive.
/// Only the latest generation of a process's maps can be captured late: an earlier one
/// was replaced (exec, or a replaced mapping), and its frames stay unnamed.
fn capture_missing_maps(recording: &mut Recording, notices: &mut Vec<String>) {
    let sampled: BTreeSet<(u32, u32)> = recording
        .threads
        .values()
        .flat_map(|thread| {
            let with_user = thread.stacks.keys().filter(|stack| !stack.user.is_empty());
            with_user.map(|stack| (thread.pid, stack.maps_generation))
        })
        .collect();
    let mut latest: BTreeMap<u32, u32> = BTreeMap::new();
    for &(pid, generation) in &sampled {
        let entry = latest.entry(pid).or_insert(generation);
        *entry = (*entry).max(generation);
    }
    let maps = &recording.resources.process_maps;
    let missing: BTreeSet<(u32, u32)> = sampled
        .into_iter()
        .filter(|key| !maps.contains_key(key))
        .collect();
    let mut gone = Vec::new();
    for (pid, generation) in missing {
        let info = recording.processes.get(&pid);
        let late = match latest.get(&pid) {
            Some(&last) if last == generation => capture_late(pid, info),
            _ => Err("its memory maps changed before they were read".to_owned()),
        };
        match late {
            Ok(maps) => {
                recording
                    .resources
                    .process_maps
                    .insert((pid, generation), maps);
            }
            Err(reason) if reason == GONE => gone.push(match info {
                Some(info) if !info.name.is_empty() => format!("{pid} ({})", info.name),
                _ => pid.to_string(),
            }),
            Err(reason) => notices.push(format!(
                "user frames of process {pid}{} are unnamed: {reason}",
                info.map(|i| format!(" ({})", i.name)).unwrap_or_default()
            )),
        }
    }
    // Short-lived processes (a shell's helpers) can be many: one line for all of them.
    match gone.as_slice() {
        [] => {}
        [one] => notices.push(format!("user frames of process {one} are unnamed: {GONE}")),
        many => {
            const SHOWN: usize = 5;
            let more = match many.len().saturating_sub(SHOWN) {
                0 => String::new(),
                n => format!(" and {n} more"),
            };
            notices.push(format!(
                "user frames of {} processes ({}{more}) are unnamed: they exited before their \
                 memory maps were read",
                many.len(),
                many[..many.len().min(SHOWN)].join(", "),
            ));
        }
    }
}

/// Why a process's frames are unnamed when it was gone before its maps were read.
const GONE: &str = "it exited before its memory maps were read";

fn capture_late(pid: u32, info: Option<&ProcessInfo>) -> Result<ProcessMaps, String> {
    // Its PID may already belong to another program, whose maps would give wrong names.
    if info.is_some_and(|info| info.exited) {
        return Err(GONE.to_owned());
    }
    ProcessMaps::capture(pid).map_err(|err| match err {
        ProcMapsError::Gone { .. } => GONE.to_owned(),
        other => other.to_string(),
    })
}

/// One function at an address (several per address where calls were inlined).
#[derive(Clone, Debug)]
struct SymFrame {
    function: Arc<str>,
    file: Option<Arc<str>>,
    line: Option<u32>,
}

/// The functions at one address, innermost (inlined) first; empty when unnamed.
type Names = Arc<[SymFrame]>;

/// What blazesym symbolizes in one batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Target {
    File(FileId),
    Vdso,
}

/// Where a user frame lies.
struct Site<'m> {
    /// Of the address looked up (one before a return address).
    location: Location<'m>,
    /// Offset of the real address, reported as `module_offset`.
    offset: u64,
}

/// Return addresses point after the call, possibly at the next function or past the end of
/// a `noreturn` callee's caller: look up the byte before, except for the innermost frame,
/// whose address is where the thread actually was.
fn lookup_addr(depth: usize, addr: u64) -> u64 {
    if depth == 0 {
        addr
    } else {
        addr.saturating_sub(1)
    }
}

/// Where each user frame lies, innermost first; `None` for an address outside every
/// executable mapping (the walk went astray there).
fn user_sites<'m>(
    maps: &'m ProcessMaps,
    user: &'m [u64],
) -> impl Iterator<Item = Option<Site<'m>>> + 'm {
    user.iter().enumerate().map(move |(depth, &addr)| {
        let probe = lookup_addr(depth, addr);
        let location = maps.lookup(probe)?;
        let offset = location.offset + (addr - probe);
        Some(Site { location, offset })
    })
}

fn target(location: &Location<'_>) -> Option<Target> {
    match location.module.backing() {
        Backing::File(Ok(file)) => Some(Target::File(file.id())),
        Backing::Vdso => Some(Target::Vdso),
        Backing::File(Err(_)) | Backing::Anonymous => None,
    }
}

/// Every distinct thing to look up, gathered before asking blazesym.
#[derive(Default)]
struct Plan {
    offsets: BTreeMap<Target, BTreeSet<u64>>,
    /// A path that opens each file, and its display name (for notices).
    files: HashMap<FileId, (PathBuf, Arc<str>)>,
    /// Files that could not be opened: display name -> why.
    unopened: BTreeMap<Arc<str>, String>,
    kernel: BTreeSet<u64>,
}

impl Plan {
    fn new(recording: &Recording) -> Plan {
        let mut plan = Plan {
            kernel: kernel_lookup_addrs(recording),
            ..Plan::default()
        };
        for thread in recording.threads.values() {
            for stack in thread.stacks.keys() {
                let key = (thread.pid, stack.maps_generation);
                if let Some(maps) = recording.resources.process_maps.get(&key) {
                    plan.add_user(maps, &stack.user);
                }
            }
        }
        plan
    }

    fn add_user(&mut self, maps: &ProcessMaps, user: &[u64]) {
        for site in user_sites(maps, user).map_while(|site| site) {
            let module = site.location.module;
            match module.backing() {
                Backing::File(Err(why)) => {
                    let name = Arc::clone(module.name());
                    self.unopened.entry(name).or_insert_with(|| why.clone());
                }
                Backing::File(Ok(file)) => {
                    let path_and_name = || (file.proc_path(), Arc::clone(module.name()));
                    self.files.entry(file.id()).or_insert_with(path_and_name);
                }
                Backing::Vdso | Backing::Anonymous => {}
            }
            if let Some(target) = target(&site.location) {
                let offsets = self.offsets.entry(target).or_default();
                offsets.insert(site.location.offset);
            }
        }
    }
}

/// The distinct addresses to name in the kernel stacks of `recording`.
fn kernel_lookup_addrs(recording: &Recording) -> BTreeSet<u64> {
    let stacks = recording.threads.values().flat_map(|t| t.stacks.keys());
    let frames = stacks.flat_map(|stack| stack.kernel.iter().enumerate());
    frames
        .map(|(depth, &addr)| lookup_addr(depth, addr))
        .collect()
}

/// A loaded kernel module's text range, from /proc/modules.
struct KernelModule {
    range: Range<u64>,
    name: Arc<str>,
}

/// Everything known about the recording's addresses, consulted while building stacks.
struct Resolved {
    user: HashMap<(Target, u64), Names>,
    kernel: HashMap<u64, Names>,
    /// Sorted by start address.
    kernel_modules: Vec<KernelModule>,
    unknown: Arc<str>,
    kernel_core: Arc<str>,
    python: python::PythonCode,
    /// Replaced mappings by (pid, generation of the maps that had them).
    replaced: HashMap<(u32, u32), Vec<(u64, u64)>>,
}

impl Resolved {
    fn new(recording: &Recording, kernel_names: KernelNames, notices: &mut Vec<String>) -> Self {
        let plan = Plan::new(recording);
        notices.extend(
            plan.unopened
                .iter()
                .map(|(name, why)| format!("could not open {name}, its frames are unnamed: {why}")),
        );
        let mut user = HashMap::new();
        for (target, offsets) in &plan.offsets {
            let offsets: Vec<u64> = offsets.iter().copied().collect();
            // A symbolizer per file: its parsed symbols and DWARF are freed once the file's
            // names are copied out, so memory peaks at the largest file, not at all of
            // them (a systemwide recording can touch hundreds).
            let symbolizer = Symbolizer::new();
            match symbolize_target(&symbolizer, &plan, *target, &offsets) {
                Ok(mut names) => {
                    name_by_function_start(&plan, *target, &offsets, &mut names);
                    user.extend(offsets.iter().map(|&o| (*target, o)).zip(names));
                }
                Err(notice) => notices.push(notice),
            }
        }
        let kernel_modules = if plan.kernel.is_empty() {
            Vec::new()
        } else {
            read_kernel_modules()
        };
        let kernel = match kernel_names.source {
            KernelNameSource::LookedUp(printed) => name_looked_up(&plan.kernel, &printed),
            KernelNameSource::Kallsyms { symbols, .. } => {
                symbolize_kernel(&plan.kernel, symbols, &kernel_modules, notices)
            }
        };
        Resolved {
            user,
            kernel,
            kernel_modules,
            unknown: UNKNOWN_MODULE.into(),
            kernel_core: KERNEL_MODULE.into(),
            python: python::PythonCode::default(),
            replaced: recording
                .maps_changes
                .iter()
                .map(|change| ((change.pid, change.generation), change.ranges.clone()))
                .collect(),
        }
    }

    /// Where in `user` (innermost first) the first address in a mapping of `pid` that
    /// was replaced after maps `generation` lies.
    fn replaced(&self, pid: u32, generation: u32, user: &[u64]) -> Option<usize> {
        let ranges = self.replaced.get(&(pid, generation))?;
        user.iter().position(|addr| {
            ranges
                .iter()
                .any(|&(start, end)| (start..end).contains(addr))
        })
    }

    /// The kernel module containing `addr` and the offset in it; `[kernel]` and the address
    /// itself for the core kernel (as kallsyms and `perf` show it).
    fn kernel_module(&self, addr: u64) -> (Arc<str>, u64) {
        let idx = self
            .kernel_modules
            .partition_point(|m| m.range.start <= addr);
        match idx.checked_sub(1).and_then(|i| self.kernel_modules.get(i)) {
            Some(m) if addr < m.range.end => (Arc::clone(&m.name), addr - m.range.start),
            _ => (Arc::clone(&self.kernel_core), addr),
        }
    }
}

/// Names for `offsets` (sorted, distinct) of one target, in the same order; or the notice
/// to show when the whole file could not be read.
fn symbolize_target(
    symbolizer: &Symbolizer,
    plan: &Plan,
    target: Target,
    offsets: &[u64],
) -> Result<Vec<Names>, String> {
    match target {
        Target::File(id) => {
            let Some((path, name)) = plan.files.get(&id) else {
                return Err(format!("internal: no path for file {id:?}"));
            };
            symbolize_file(symbolizer, path, offsets).map_err(|err| {
                format!("could not read symbols of {name}, its frames are unnamed: {err:#}")
            })
        }
        Target::Vdso => symbolize_vdso(symbolizer, offsets),
    }
}

/// Gives the frames of `target` that have no name the name of where their function
/// begins (see [`function_starts`]), so that they aggregate by function.
fn name_by_function_start(plan: &Plan, target: Target, offsets: &[u64], names: &mut [Names]) {
    let Target::File(id) = target else { return };
    let Some((path, _)) = plan.files.get(&id) else {
        return;
    };
    let (unnamed, at): (Vec<usize>, Vec<u64>) = names
        .iter()
        .zip(offsets)
        .enumerate()
        .filter(|(_, (names, _))| names.is_empty())
        .map(|(index, (_, &offset))| (index, offset))
        .unzip();
    if unnamed.is_empty() {
        return;
    }
    let starts = function_starts::function_starts(path, &at);
    for (index, start) in unnamed.into_iter().zip(starts) {
        if let Some(start) = start {
            names[index] = Arc::new([SymFrame {
                function: function_starts::function_start_name(start).into(),
                file: None,
                line: None,
            }]);
        }
    }
}

/// Names for `offsets` of the ELF file at `path`, from the source [`file_source`] picks.
fn symbolize_file(
    symbolizer: &Symbolizer,
    path: &Path,
    offsets: &[u64],
) -> blazesym::Result<Vec<Names>> {
    let dwarf = match file_source::file_source(path) {
        FileSource::Itself { dwarf } => dwarf,
        FileSource::DebugFile {
            path: debug_file,
            segments,
        } => match symbolize_debug_file(symbolizer, &debug_file, &segments, offsets) {
            Ok(names) => return Ok(names),
            // A debug file that blazesym cannot read must not cost the file its names.
            Err(_) => false,
        },
    };
    let source = Source::Elf(Elf {
        debug_syms: dwarf,
        ..Elf::new(path)
    });
    let found = symbolizer.symbolize(&source, Input::FileOffset(offsets))?;
    Ok(found.iter().map(names_of).collect())
}

/// Names for `offsets` of a file from the symbol table (only) of its separate debug file;
/// offsets outside the file's `segments` stay unnamed.
fn symbolize_debug_file(
    symbolizer: &Symbolizer,
    debug_file: &Path,
    segments: &[LoadSegment],
    offsets: &[u64],
) -> blazesym::Result<Vec<Names>> {
    let (indices, addrs): (Vec<usize>, Vec<u64>) = offsets
        .iter()
        .enumerate()
        .filter_map(|(i, &offset)| Some((i, elf::virtual_address(segments, offset)?)))
        .unzip();
    let source = Source::Elf(Elf {
        debug_syms: false,
        ..Elf::new(debug_file)
    });
    let found = symbolizer.symbolize(&source, Input::VirtOffset(&addrs))?;
    let mut names: Vec<Names> = vec![Arc::from([]); offsets.len()];
    for (i, found) in indices.into_iter().zip(&found) {
        names[i] = names_of(found);
    }
    Ok(names)
}

/// The vDSO has no file: symbolize the offsets against this process's own copy of it, which
/// is the same image (32-bit processes, which map another one, are not handled).
fn symbolize_vdso(symbolizer: &Symbolizer, offsets: &[u64]) -> Result<Vec<Names>, String> {
    let start = procmaps::own_vdso_start()
        .ok_or_else(|| "vDSO frames are unnamed: this process has no vDSO".to_owned())?;
    let addrs: Vec<u64> = offsets.iter().map(|offset| start + offset).collect();
    let source = Source::Process(Process {
        map_files: false,
        perf_map: false,
        ..Process::new(Pid::Slf)
    });
    let found = symbolizer
        .symbolize(&source, Input::AbsAddr(&addrs))
        .map_err(|err| format!("vDSO frames are unnamed: {err:#}"))?;
    Ok(found.iter().map(names_of).collect())
}

/// The functions at a symbolized address, inlined callees first: blazesym lists inlined
/// functions outermost first, and gives each the source location inside it. A function
/// inlined into one of the same name (glibc's aliases do this) is shown once, at the
/// innermost location.
fn names_of(found: &Symbolized<'_>) -> Names {
    let Symbolized::Sym(sym) = found else {
        return Arc::from([]);
    };
    let inlined = sym.inlined.iter().rev().map(|inlined| SymFrame {
        function: Arc::from(&*inlined.name),
        file: inlined.code_info.as_ref().map(file_of),
        line: inlined.code_info.as_ref().and_then(|info| info.line),
    });
    let mut frames: Vec<SymFrame> = inlined.chain(std::iter::once(outer_frame(sym))).collect();
    frames.dedup_by(|outer, inner| outer.function == inner.function);
    frames.into()
}

fn outer_frame(sym: &Sym<'_>) -> SymFrame {
    let info = sym.code_info.as_deref();
    SymFrame {
        function: Arc::from(&*sym.name),
        file: info.map(file_of),
        line: info.and_then(|info| info.line),
    }
}

fn file_of(info: &CodeInfo<'_>) -> Arc<str> {
    Arc::from(info.to_path().to_string_lossy().as_ref())
}

/// Kernel function names by (lookup) address, from what the kernel's `%ps` printed.
fn name_looked_up(
    addrs: &BTreeSet<u64>,
    printed: &HashMap<u64, Option<Vec<u8>>>,
) -> HashMap<u64, Names> {
    names_by_addr(addrs, |addr| {
        let text = printed.get(&addr)?.as_deref()?;
        printed_symbol_name(text)
    })
}

/// `Names` for each address from its function's name (`None`: unnamed); one `Names` per
/// function, shared by all its addresses.
fn names_by_addr<'n>(
    addrs: &BTreeSet<u64>,
    function_at: impl Fn(u64) -> Option<&'n [u8]>,
) -> HashMap<u64, Names> {
    let mut by_name: HashMap<&[u8], Names> = HashMap::new();
    let mut names_at = |addr: u64| -> Names {
        let Some(name) = function_at(addr) else {
            return Arc::from([]);
        };
        let names = by_name.entry(name).or_insert_with(|| kernel_names(name));
        Arc::clone(names)
    };
    addrs.iter().map(|&addr| (addr, names_at(addr))).collect()
}

/// The function name in what `%ps` printed: `name`, or `name [module]`; `None` for
/// `0x<address>`, the kernel's way of saying that no symbol covers the address.
fn printed_symbol_name(text: &[u8]) -> Option<&[u8]> {
    let name = text.split(|&b| b == b' ').next()?;
    let unnamed = name.is_empty() || name.starts_with(b"0x");
    (!unnamed).then_some(name)
}

/// Kernel function names by (lookup) address; empty, with a notice, when unavailable.
/// An address beyond the reach of every symbol (see [`kallsyms::PSEUDO_MODULE_REACH`]) is
/// left unnamed.
fn symbolize_kernel(
    addrs: &BTreeSet<u64>,
    symbols: std::io::Result<KernelSymbols>,
    modules: &[KernelModule],
    notices: &mut Vec<String>,
) -> HashMap<u64, Names> {
    if addrs.is_empty() {
        return HashMap::new();
    }
    let symbols = match symbols {
        Ok(symbols) => symbols,
        Err(err) => {
            notices.push(format!(
                "kernel frames are unnamed: failed to read /proc/kallsyms: {err}"
            ));
            return HashMap::new();
        }
    };
    if symbols.is_empty() {
        notices.push(
            "kernel frames are unnamed: /proc/kallsyms shows no addresses \
             (probe needs to run as root, with CAP_SYSLOG)"
                .to_owned(),
        );
        return HashMap::new();
    }
    let module_range = |name: &[u8]| {
        let found = modules.iter().find(|m| m.name.as_bytes() == name);
        found.map(|m| m.range.clone())
    };
    names_by_addr(addrs, |addr| {
        Some(symbols.function(addr, module_range)?.name)
    })
}

/// One kernel function, Rust ones demangled (as blazesym showed them).
fn kernel_names(name: &[u8]) -> Names {
    let name = String::from_utf8_lossy(name);
    let function = match rustc_demangle::try_demangle(&name) {
        Ok(demangled) => Arc::from(format!("{demangled:#}")),
        Err(_) => Arc::from(&*name),
    };
    Arc::from([SymFrame {
        function,
        file: None,
        line: None,
    }])
}

/// Loaded modules and their text ranges; empty when unreadable (or without privileges,
/// where every base address reads 0).
fn read_kernel_modules() -> Vec<KernelModule> {
    let Ok(text) = std::fs::read_to_string("/proc/modules") else {
        return Vec::new();
    };
    let mut modules: Vec<KernelModule> = text.lines().filter_map(parse_module_line).collect();
    modules.sort_by_key(|m| m.range.start);
    modules
}

/// `name size refcount deps state 0xaddress [taints]`.
fn parse_module_line(line: &str) -> Option<KernelModule> {
    let mut fields = line.split_whitespace();
    let name = fields.next()?;
    let size: u64 = fields.next()?.parse().ok()?;
    let addr = fields.nth(3)?.strip_prefix("0x")?;
    let start = u64::from_str_radix(addr, 16).ok().filter(|&a| a != 0)?;
    Some(KernelModule {
        range: start..start.saturating_add(size),
        name: name.into(),
    })
}

/// A frame being built: cheap to clone (shared strings).
#[derive(Clone, Debug)]
struct Pending {
    kind: FrameKind,
    module: Arc<str>,
    module_offset: u64,
    /// What the sample recorded (see [`Frame::address`]).
    address: u64,
    /// Inlined into the next frame, at the same address.
    inlined: bool,
    sym: Option<SymFrame>,
}

impl Pending {
    fn into_frame(self) -> Frame {
        let (function, file, line) = match self.sym {
            Some(sym) => (Some(sym.function.to_string()), sym.file, sym.line),
            None => (None, None, None),
        };
        Frame {
            kind: self.kind,
            function,
            module: self.module.to_string(),
            module_offset: self.module_offset,
            file: file.map(|file| file.to_string()),
            line,
            address: self.address,
            inlined: self.inlined,
        }
    }
}

/// Frames for one `module`/`offset`, one per function (inlined ones first, marked), or one
/// unnamed.
fn push_frames(
    out: &mut Vec<Pending>,
    kind: FrameKind,
    address: u64,
    (module, module_offset): (Arc<str>, u64),
    names: Option<&Names>,
) {
    let pending = |sym: Option<SymFrame>, inlined: bool| Pending {
        kind,
        module: Arc::clone(&module),
        module_offset,
        address,
        inlined,
        sym,
    };
    match names.filter(|names| !names.is_empty()) {
        Some(names) => {
            let last = names.len() - 1;
            let frames = names.iter().enumerate();
            out.extend(frames.map(|(i, sym)| pending(Some(sym.clone()), i < last)));
        }
        None => out.push(pending(None, false)),
    }
}

/// The tracepoint machinery around a BPF program run from `sched_switch`.
fn is_tracing_frame(frame: &Pending) -> bool {
    let Some(sym) = &frame.sym else {
        return false;
    };
    let name = &*sym.function;
    name.starts_with("bpf_prog_")
        || name.starts_with("bpf_trace_run")
        || name.starts_with("__traceiter_")
}

/// Functions that start a thread's stack: a walk that ends in one of them reached the root.
fn is_entry_point(function: &str) -> bool {
    matches!(
        function,
        "_start"
            | "__libc_start_main"
            | "__libc_start_main_impl"
            | "__libc_start_call_main"
            | "start_thread"
            | "clone"
            | "clone3"
    ) || function.starts_with("__clone")
}

/// The frames of one sample of process `pid`, innermost first (kernel, then user with the
/// Python frames merged in), and whether the walk stopped before the thread's entry point.
fn stack_frames(
    raw: &RawStack,
    pid: u32,
    maps: Option<&ProcessMaps>,
    r: &Resolved,
) -> (Vec<Pending>, bool) {
    let mut frames = Vec::with_capacity(raw.kernel.len() + raw.user.len());
    for (depth, &addr) in raw.kernel.iter().enumerate() {
        let names = r.kernel.get(&lookup_addr(depth, addr));
        let module = r.kernel_module(addr);
        push_frames(&mut frames, FrameKind::Kernel, addr, module, names);
    }
    if raw.kind == SampleKind::OffCpu {
        // The stack was taken inside probe's own sched_switch program: the innermost
        // frames are the tracepoint machinery that ran it, not where the thread waits.
        let observer = frames
            .iter()
            .take_while(|frame| is_tracing_frame(frame))
            .count();
        frames.drain(..observer);
    }
    let kernel_cut = raw.kernel.len() >= MAX_STACK_DEPTH;
    let mut user = Vec::with_capacity(raw.user.len() + raw.python.len());
    // Sampled while a mapping was replaced: an address in a replaced range may belong to
    // either mapping, so the stack stops before it.
    let replaced_at = raw
        .maps_changed
        .then(|| r.replaced(pid, raw.maps_generation, &raw.user))
        .flatten();
    let cut_raw;
    let raw_user = match replaced_at {
        Some(at) => {
            cut_raw = RawStack {
                user: raw.user[..at].to_vec(),
                user_error: true,
                ..raw.clone()
            };
            &cut_raw
        }
        None => raw,
    };
    let user_cut = match maps {
        Some(maps) => push_user_frames(&mut user, raw_user, maps, r),
        None => push_unknown_frames(&mut user, raw_user, r),
    };
    frames.extend(python::merge(user, r.python.calls(pid, &raw.python)));
    (frames, kernel_cut || user_cut || raw.python_truncated)
}

/// Returns whether the user stack is truncated.
fn push_user_frames(
    out: &mut Vec<Pending>,
    raw: &RawStack,
    maps: &ProcessMaps,
    r: &Resolved,
) -> bool {
    let first_user = out.len();
    let mut astray = false;
    for (site, &addr) in user_sites(maps, &raw.user).zip(&raw.user) {
        let Some(site) = site else {
            astray = true;
            break;
        };
        let names = target(&site.location).and_then(|t| r.user.get(&(t, site.location.offset)));
        let module = (Arc::clone(site.location.module.name()), site.offset);
        push_frames(out, FrameKind::User, addr, module, names);
    }
    if raw.user_tables {
        // The table unwinder knows whether it reached the outermost frame.
        return astray || raw.user_error || !raw.user_complete;
    }
    // An empty user stack without an error is a thread with no user side (a kernel thread,
    // an io_uring worker): nothing is missing.
    let reached_root = match out[first_user..].last() {
        None => true,
        Some(outermost) => outermost
            .sym
            .as_ref()
            .is_some_and(|s| is_entry_point(&s.function)),
    };
    astray || raw.user_error || raw.user.len() >= MAX_STACK_DEPTH || !reached_root
}

/// User frames of a process whose mappings are unknown: unnamed, and the stack cannot be
/// vouched for. Returns whether the user stack is truncated.
fn push_unknown_frames(out: &mut Vec<Pending>, raw: &RawStack, r: &Resolved) -> bool {
    for &addr in &raw.user {
        let module = (Arc::clone(&r.unknown), addr);
        push_frames(out, FrameKind::User, addr, module, None);
    }
    raw.user_error || !raw.user.is_empty()
}

/// One thread's samples by interned stack, hottest first (ties by stack id, so the order
/// does not depend on hash order). Raw stacks that symbolize to the same frames (two
/// return addresses into one line, say) become one.
fn thread_samples(
    thread: &ThreadRecord,
    process_maps: &BTreeMap<(u32, u32), ProcessMaps>,
    r: &Resolved,
    period_ns: u64,
    profile: &mut Profile,
    interner: &mut Interner,
) -> Vec<StackSamples> {
    let mut by_stack: BTreeMap<(StackId, SampleKind, Option<u32>), (u64, u64)> = BTreeMap::new();
    for (raw, stats) in &thread.stacks {
        let maps = process_maps.get(&(thread.pid, raw.maps_generation));
        let (frames, truncated) = stack_frames(raw, thread.pid, maps, r);
        let frames: Vec<Frame> = frames.into_iter().map(Pending::into_frame).collect();
        let stack = profile.intern_stack(&frames, truncated, interner);
        let entry = by_stack
            .entry((stack, raw.kind, raw.syscall))
            .or_insert((0, 0));
        entry.0 += stats.count;
        entry.1 += match raw.kind {
            SampleKind::OnCpu => stats.count * period_ns,
            SampleKind::OffCpu => stats.off_cpu_ns,
        };
    }
    let mut samples: Vec<StackSamples> = by_stack
        .into_iter()
        .map(
            |((stack, kind, syscall), (count, weight_ns))| StackSamples {
                stack,
                kind,
                count,
                weight_ns,
                syscall: syscall.map(|nr| crate::syscall_names::name(nr).into_owned()),
            },
        )
        .collect();
    samples.sort_by_key(|s| (std::cmp::Reverse(s.weight_ns), s.kind, s.stack));
    samples
}

fn thread_profile(
    thread: ThreadRecord,
    process_maps: &BTreeMap<(u32, u32), ProcessMaps>,
    r: &Resolved,
    period_ns: u64,
    profile: &mut Profile,
    interner: &mut Interner,
) -> ThreadProfile {
    let samples = thread_samples(&thread, process_maps, r, period_ns, profile, interner);
    ThreadProfile {
        tid: thread.tid,
        pid: thread.pid,
        name: thread.name,
        python_name: thread.python_name,
        on_cpu_ns: thread.on_cpu_ns,
        voluntary_switches: thread.voluntary_switches,
        involuntary_switches: thread.involuntary_switches,
        exited: thread.exited,
        user_samples: thread.user_samples,
        kernel_samples: thread.kernel_samples,
        syscalls: thread.syscalls.into_iter().collect(),
        syscall_args: thread.syscall_args,
        samples,
    }
}

#[cfg(test)]
mod tests;
