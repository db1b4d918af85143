//! Which processes get `.eh_frame` unwind tables in the kernel, and where the tables go.
//!
//! A process is given tables at its first sample (or before the window opens, for `-p`
//! targets): its executable mappings are read, every mapped file's table is compiled once
//! per file identity (shared by every process that maps it) and copied into the kernel's
//! row and page arrays, and the process's list of mappings is written to a new range of
//! `UNWIND_MAPPINGS` and published with one update of its `UNWIND_PROCS` entry. Until then
//! its samples are unwound by frame pointer; they are counted and reported.
//!
//! The kernel's arrays have a fixed size (the cap on kernel memory for tables). Files no
//! process uses any more stay loaded as a cache and are evicted, least recently used first,
//! when a new table needs the room; a table that does not fit even then is left out (its
//! frames fall back to frame pointers) and counted. Ranges that were in use are reused
//! only after one more sync (a drain interval), so a sample that read a process's old
//! mapping list just before it was replaced never sees its rows overwritten.
//!
//! A process is rebuilt when it execs, when its samples point outside the mappings it was
//! built with (a library loaded since), at most once per [`REBUILD_INTERVAL`], and dropped
//! when it is gone.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    ops::Range,
    sync::Arc,
    time::{Duration, Instant},
};

use probe_common::{
    UnwindFile, UnwindMapping, UnwindProcess, UnwindRow, UNWIND_MAX_MAPPINGS,
    UNWIND_STOP_NO_MAPPING,
};
use serde::{Deserialize, Serialize};

use crate::{
    elf::LoadSegment,
    procmaps::{Backing, FileId, MappedFile, ProcessMaps},
    unwind::{compile_file, page_index, TableError},
};

/// A process's tables are rebuilt at most this often when its samples leave its mappings.
pub const REBUILD_INTERVAL: Duration = Duration::from_secs(1);

/// Most time one sync spends building tables; the processes left wait for the next sync
/// (a drain interval later), so that a machine full of new binaries does not hold up the
/// draining of the ring buffer.
const BUILD_BUDGET: Duration = Duration::from_millis(50);

/// Processes with tables are checked for having exited this often.
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// How big the kernel's unwind maps are, in entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnwindCapacity {
    pub rows: u32,
    pub pages: u32,
    pub mappings: u32,
    pub files: u32,
    pub processes: u32,
}

/// Where the kernel's unwinder reads its tables (the BPF maps, or a fake in tests).
pub trait UnwindMaps {
    /// The unwinder is loaded (else nothing is built).
    fn enabled(&self) -> bool;
    fn capacity(&mut self) -> Result<UnwindCapacity, String>;
    fn write_rows(&mut self, at: u32, rows: &[UnwindRow]) -> Result<(), String>;
    fn write_pages(&mut self, at: u32, pages: &[u64]) -> Result<(), String>;
    fn write_mappings(&mut self, at: u32, mappings: &[UnwindMapping]) -> Result<(), String>;
    fn set_file(&mut self, slot: u32, file: &UnwindFile) -> Result<(), String>;
    fn set_process(&mut self, pid: u32, process: &UnwindProcess) -> Result<(), String>;
    fn remove_process(&mut self, pid: u32) -> Result<(), String>;
}

/// One executable mapping of a process, as the tracker needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecMapping {
    pub range: Range<u64>,
    /// File offset of `range.start`.
    pub file_offset: u64,
    /// The mapped file, if it is one and could be opened.
    pub file: Option<FileId>,
}

/// A file's compiled table and what is needed to place it in a process.
#[derive(Clone, Debug, Default)]
pub struct FileTable {
    pub rows: Vec<UnwindRow>,
    /// The file's loadable segments: which file offsets are mapped at which addresses.
    pub segments: Vec<LoadSegment>,
    /// Bytes of call frame information compiled.
    pub cfi_bytes: usize,
}

/// Why a file has no table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NoTable {
    /// The file has no call frame information (ordinary: frame pointers are all there is).
    NoCfi,
    /// Anything else, with the reason.
    Failed(String),
}

/// How processes and files are read (live /proc and files, or a fake in tests).
pub trait TableSource {
    /// The executable mappings of `pid`, sorted by address.
    fn mappings(&mut self, pid: u32) -> Result<Vec<ExecMapping>, String>;
    /// The table of `file`, one of those the last [`TableSource::mappings`] call returned.
    fn compile(&mut self, file: FileId) -> Result<FileTable, NoTable>;
    /// Whether process `pid` still exists.
    fn exists(&mut self, pid: u32) -> bool;
}

/// Reads live processes: their maps through `/proc` (files opened through `map_files`, so
/// deleted binaries and other mount namespaces work) and the files' bytes by memory map.
#[derive(Default)]
pub struct LiveTables {
    /// The files of the last processes read, until compiled.
    open: HashMap<FileId, Arc<MappedFile>>,
}

impl TableSource for LiveTables {
    fn mappings(&mut self, pid: u32) -> Result<Vec<ExecMapping>, String> {
        let maps = ProcessMaps::capture(pid).map_err(|err| err.to_string())?;
        let mut out = Vec::new();
        for (range, file_offset, module) in maps.mappings() {
            let file = match module.backing() {
                Backing::File(Ok(file)) => {
                    self.open.insert(file.id(), Arc::clone(file));
                    Some(file.id())
                }
                _ => None,
            };
            out.push(ExecMapping {
                range,
                file_offset,
                file,
            });
        }
        Ok(out)
    }

    fn compile(&mut self, id: FileId) -> Result<FileTable, NoTable> {
        let file = self
            .open
            .remove(&id)
            .ok_or_else(|| NoTable::Failed("the file is not open".into()))?;
        compile_mapped(&file)
    }

    fn exists(&mut self, pid: u32) -> bool {
        crate::proc::exists(pid, None)
    }
}

/// Compiles the table of an open file.
pub fn compile_mapped(file: &MappedFile) -> Result<FileTable, NoTable> {
    // SAFETY: the file is mapped read-only and private; its bytes are only parsed (every
    // read is bounds-checked by `object` and `gimli`). A file truncated by someone else
    // while mapped would fault (SIGBUS); the files mapped here are executables and
    // libraries in use, which package managers replace by rename, not rewrite in place.
    let bytes = unsafe { memmap2::Mmap::map(file.file()) }
        .map_err(|err| NoTable::Failed(format!("map the file: {err}")))?;
    let table = match compile_file(&bytes) {
        Ok(table) => table,
        Err(TableError::NoCfi) => return Err(NoTable::NoCfi),
        Err(err) => return Err(NoTable::Failed(err.to_string())),
    };
    let segments = crate::elf::ElfFile::new(file.file())
        .and_then(|elf| elf.load_segments())
        .map_err(|err| NoTable::Failed(format!("read the program headers: {err}")))?;
    Ok(FileTable {
        rows: table.rows,
        segments,
        cfi_bytes: table.stats.eh_frame_bytes,
    })
}

/// Runtime address minus file address for a mapping of `file_offset` at `start`, per the
/// file's segments: the segment the kernel mapped from that offset (its offset rounded
/// down to a page), else the one whose page-aligned extent holds the offset (a mapping
/// split by `mprotect`). `None` when no segment does (a mapping of something that is not
/// code).
pub fn mapping_bias(segments: &[LoadSegment], start: u64, file_offset: u64) -> Option<u64> {
    const PAGE: u64 = 4096;
    let first_page = |segment: &LoadSegment| segment.offset & !(PAGE - 1);
    let segment = segments
        .iter()
        .find(|segment| first_page(segment) == file_offset)
        .or_else(|| {
            segments.iter().find(|segment| {
                first_page(segment) <= file_offset
                    && file_offset < segment.offset.saturating_add(segment.file_size)
            })
        })?;
    // Segment addresses and offsets are congruent modulo the page size, so the address of
    // `file_offset` is vaddr - offset + file_offset, even below the segment's own offset.
    let address = segment
        .vaddr
        .wrapping_sub(segment.offset)
        .wrapping_add(file_offset);
    Some(start.wrapping_sub(address))
}

/// First-fit allocation of index ranges in a fixed-size array, with freed ranges merged.
#[derive(Clone, Debug, Default)]
struct RangeAllocator {
    /// Free ranges: start -> length, not touching each other.
    free: BTreeMap<u32, u32>,
    capacity: u32,
}

impl RangeAllocator {
    fn new(capacity: u32) -> Self {
        let mut free = BTreeMap::new();
        if capacity > 0 {
            free.insert(0, capacity);
        }
        RangeAllocator { free, capacity }
    }

    fn allocate(&mut self, len: u32) -> Option<Range<u32>> {
        if len == 0 {
            return Some(0..0);
        }
        let (&start, &free_len) = self.free.iter().find(|(_, &free_len)| free_len >= len)?;
        self.free.remove(&start);
        if free_len > len {
            self.free.insert(start + len, free_len - len);
        }
        Some(start..start + len)
    }

    fn release(&mut self, range: Range<u32>) {
        if range.is_empty() {
            return;
        }
        let (mut start, mut end) = (range.start, range.end);
        if let Some((&before, &len)) = self.free.range(..start).next_back() {
            if before + len == start {
                self.free.remove(&before);
                start = before;
            }
        }
        if let Some(&len) = self.free.get(&end) {
            self.free.remove(&end);
            end += len;
        }
        self.free.insert(start, end - start);
    }

    fn free_entries(&self) -> u32 {
        self.free.values().sum()
    }
}

/// A file's table in the kernel.
#[derive(Clone, Debug)]
struct LoadedFile {
    slot: u32,
    rows: Range<u32>,
    pages: Range<u32>,
    segments: Arc<[LoadSegment]>,
    /// Processes whose mapping lists point at it.
    users: u32,
    /// The sync that last gave it to a process or took it from one: least recently used
    /// tables are evicted first, and only those left unused since an earlier sync (a
    /// sample may still be reading a mapping list replaced in this one).
    last_used: u64,
}

#[derive(Clone, Debug)]
enum FileState {
    Loaded(LoadedFile),
    /// No table: frames in this file unwind by frame pointer.
    Unavailable,
    /// Compiled, but the kernel's arrays had no room even after evicting every unused
    /// table; tried again when a process needs it after room was freed.
    DidNotFit {
        room_seen: u64,
    },
}

/// A process with (or denied) tables.
#[derive(Clone, Debug)]
struct ProcessState {
    /// Its range of `UNWIND_MAPPINGS`; empty when none of its files has a table (the
    /// kernel then does not know it).
    mappings: Range<u32>,
    /// The files its mapping list points at (one entry per mapping).
    files: Vec<FileId>,
    /// Every executable range it had when built, to notice code mapped since.
    ranges: Vec<Range<u64>>,
    built: Instant,
    /// A table it needs did not fit: tried again at a later sample.
    incomplete: bool,
}

impl ProcessState {
    fn covers(&self, address: u64) -> bool {
        let index = self.ranges.partition_point(|r| r.start <= address);
        index > 0 && address < self.ranges[index - 1].end
    }
}

/// What the tracker did, for the report and the benchmark.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnwindSummary {
    /// The kernel unwound user stacks with tables (the unwinder was loaded).
    pub enabled: bool,
    pub processes: u64,
    pub files_compiled: u64,
    pub files_without_cfi: u64,
    pub files_failed: u64,
    /// Bytes of `.eh_frame` / `.debug_frame` compiled.
    pub cfi_bytes: u64,
    /// Time spent compiling and loading tables.
    pub build_ns: u64,
    /// Rows in the kernel at the end, and the most at once.
    pub rows_loaded: u64,
    pub rows_peak: u64,
    pub rows_capacity: u64,
    pub files_evicted: u64,
    /// Files whose tables did not fit in the kernel's arrays.
    pub files_not_fitted: u64,
    /// Processes left without tables: the kernel's process map was full.
    pub processes_not_fitted: u64,
    /// Processes with more mappings with tables than the kernel searches.
    pub processes_mappings_cut: u64,
    /// Samples of processes with tables, taken before the tables were built.
    pub samples_before_tables: u64,
    /// From a process's first sample to its tables in the kernel (CLOCK_MONOTONIC
    /// nanoseconds): the longest, and the sum over `processes`.
    pub tables_latency_max_ns: u64,
    pub tables_latency_sum_ns: u64,
    /// The first error writing the kernel's maps, if any.
    pub map_error: Option<String>,
    /// Why the first file that failed to compile failed (other than having no CFI).
    pub first_file_error: Option<String>,
}

/// The `.eh_frame` side of the collector.
#[derive(Default)]
pub struct UnwindTracker {
    files: HashMap<FileId, FileState>,
    processes: HashMap<u32, ProcessState>,
    /// Processes to build (or rebuild) at the next sync.
    to_build: BTreeSet<u32>,
    /// Processes to drop at the next sync (they exec'd: their mappings are stale).
    to_drop: BTreeSet<u32>,
    /// Samples of processes seen but not built yet, by pid: how many, and when the first
    /// was taken (CLOCK_MONOTONIC ns).
    pending_samples: HashMap<u32, (u64, u64)>,
    arrays: Option<Arrays>,
    /// Ranges of `UNWIND_MAPPINGS` freed during the last sync, reused from the next one on.
    quarantine: Vec<Range<u32>>,
    syncs: u64,
    /// Counts every time room may have been made (ranges released, tables left unused),
    /// so a table that did not fit is tried again only then.
    room_changes: u64,
    last_sweep: Option<Instant>,
    summary: UnwindSummary,
    /// Files that did not fit (counted once each).
    not_fitted: BTreeSet<FileId>,
}

#[derive(Debug)]
struct Arrays {
    rows: RangeAllocator,
    pages: RangeAllocator,
    mappings: RangeAllocator,
    /// Free slots of `UNWIND_FILES`, the lowest last.
    slots: Vec<u32>,
    /// Processes in `UNWIND_PROCS`.
    processes: u32,
    capacity: UnwindCapacity,
}

impl UnwindTracker {
    /// Gives `pid` tables at the next sync (a `-p` target, before the window opens).
    pub fn track(&mut self, pid: u32) {
        if !self.processes.contains_key(&pid) {
            self.to_build.insert(pid);
        }
    }

    /// Notes a sample of `tgid` taken at `time_ns` (CLOCK_MONOTONIC): `tables` it was
    /// unwound with tables, `stop` why the table unwinder stopped (0 for none), `leaf` its
    /// innermost user address. Cheap: no I/O.
    pub fn note_sample(
        &mut self,
        tgid: u32,
        time_ns: u64,
        tables: bool,
        stop: u32,
        leaf: Option<u64>,
    ) {
        // After an exec, the process's state is that of the old program.
        let known = match self.to_drop.contains(&tgid) {
            true => None,
            false => self.processes.get(&tgid),
        };
        match known {
            None => {
                self.to_build.insert(tgid);
                let pending = self.pending_samples.entry(tgid).or_insert((0, time_ns));
                pending.0 += 1;
                pending.1 = pending.1.min(time_ns);
            }
            Some(process) => {
                let left_mappings = (tables && stop == UNWIND_STOP_NO_MAPPING)
                    || leaf.is_some_and(|leaf| !process.covers(leaf));
                if (left_mappings || process.incomplete)
                    && process.built.elapsed() >= REBUILD_INTERVAL
                {
                    self.to_build.insert(tgid);
                }
            }
        }
    }

    /// Process `pid` exec'd: its tables are dropped, and built again at its next sample.
    pub fn exec(&mut self, pid: u32) {
        self.to_drop.insert(pid);
        self.to_build.remove(&pid);
    }

    /// Builds what is queued, drops what is gone. Does nothing while the kernel's
    /// unwinder is not loaded.
    pub fn sync(&mut self, source: &mut dyn TableSource, maps: &mut dyn UnwindMaps) {
        if !maps.enabled() {
            return;
        }
        self.summary.enabled = true;
        if self.arrays.is_none() {
            match maps.capacity() {
                Ok(capacity) => self.arrays = Some(Arrays::new(capacity)),
                Err(err) => {
                    // Nothing can be built: nothing waits.
                    self.map_error(err);
                    self.to_build.clear();
                    self.to_drop.clear();
                    return;
                }
            }
        }
        self.syncs += 1;
        self.release_quarantine();
        for pid in std::mem::take(&mut self.to_drop) {
            self.drop_process(pid, maps);
        }
        let now = Instant::now();
        if self
            .last_sweep
            .is_none_or(|last| now.duration_since(last) >= SWEEP_INTERVAL)
        {
            self.last_sweep = Some(now);
            let gone: Vec<u32> = self
                .processes
                .keys()
                .copied()
                .filter(|&pid| !source.exists(pid))
                .collect();
            for pid in gone {
                self.drop_process(pid, maps);
            }
        }
        let sync_started = Instant::now();
        while sync_started.elapsed() < BUILD_BUDGET {
            let Some(pid) = self.to_build.pop_first() else {
                break;
            };
            let started = Instant::now();
            self.build(pid, source, maps);
            self.summary.build_ns += started.elapsed().as_nanos() as u64;
        }
    }

    /// Whether processes are waiting for their tables (the last sync ran out of time).
    pub fn has_pending(&self) -> bool {
        !self.to_build.is_empty() || !self.to_drop.is_empty()
    }

    /// What was done so far.
    pub fn summary(&self) -> UnwindSummary {
        let mut summary = self.summary.clone();
        if let Some(arrays) = &self.arrays {
            summary.rows_capacity = u64::from(arrays.rows.capacity);
            summary.rows_loaded = u64::from(arrays.rows.capacity - arrays.rows.free_entries());
        }
        summary
    }

    /// The processes the kernel has tables for.
    pub fn processes_with_tables(&self) -> impl Iterator<Item = u32> + '_ {
        self.processes
            .iter()
            .filter(|(_, process)| !process.mappings.is_empty())
            .map(|(&pid, _)| pid)
    }

    /// One line per way the tables fell short, for the report.
    pub fn notices(&self) -> Vec<String> {
        let s = self.summary();
        let mut notices = Vec::new();
        if s.samples_before_tables > 0 {
            notices.push(format!(
                "{} samples were taken before their process's unwind tables were built: \
                 their native stacks follow frame pointers only",
                s.samples_before_tables
            ));
        }
        if s.files_not_fitted > 0 {
            notices.push(format!(
                "the unwind tables of {} files did not fit in the kernel's table memory \
                 ({} MiB): frames in them follow frame pointers only",
                s.files_not_fitted,
                (s.rows_capacity * std::mem::size_of::<UnwindRow>() as u64) >> 20
            ));
        }
        if s.processes_not_fitted > 0 {
            notices.push(format!(
                "{} processes got no unwind tables: the kernel's map of {} processes was \
                 full; their native stacks follow frame pointers only",
                s.processes_not_fitted,
                probe_common::UNWIND_MAX_PROCS
            ));
        }
        if s.processes_mappings_cut > 0 {
            notices.push(format!(
                "{} processes have more than {UNWIND_MAX_MAPPINGS} mappings with unwind \
                 tables: frames in the others follow frame pointers only",
                s.processes_mappings_cut
            ));
        }
        if let Some(err) = &s.map_error {
            notices.push(format!("unwind tables could not be loaded: {err}"));
        }
        notices
    }

    fn map_error(&mut self, err: String) {
        self.summary.map_error.get_or_insert(err);
    }

    fn release_quarantine(&mut self) {
        let Some(arrays) = self.arrays.as_mut() else {
            return;
        };
        if !self.quarantine.is_empty() {
            self.room_changes += 1;
        }
        for range in self.quarantine.drain(..) {
            arrays.mappings.release(range);
        }
    }

    fn drop_process(&mut self, pid: u32, maps: &mut dyn UnwindMaps) {
        self.pending_samples.remove(&pid);
        let Some(process) = self.processes.remove(&pid) else {
            return;
        };
        if !process.mappings.is_empty() {
            if let Err(err) = maps.remove_process(pid) {
                self.map_error(err);
            }
            if let Some(arrays) = self.arrays.as_mut() {
                arrays.processes -= 1;
            }
            self.quarantine.push(process.mappings);
        }
        self.release_files(&process.files);
    }

    fn release_files(&mut self, files: &[FileId]) {
        for id in files {
            if let Some(FileState::Loaded(file)) = self.files.get_mut(id) {
                file.users = file.users.saturating_sub(1);
                file.last_used = self.syncs;
                if file.users == 0 {
                    self.room_changes += 1;
                }
            }
        }
    }

    fn build(&mut self, pid: u32, source: &mut dyn TableSource, maps: &mut dyn UnwindMaps) {
        let mappings = match source.mappings(pid) {
            Ok(mappings) => mappings,
            Err(_) => {
                // Gone, or unreadable: whatever it had stays (the sweep drops the gone), and
                // it is not read again before the rebuild interval.
                self.pending_samples.remove(&pid);
                let state = self.processes.entry(pid).or_insert_with(|| ProcessState {
                    mappings: 0..0,
                    files: Vec::new(),
                    ranges: Vec::new(),
                    built: Instant::now(),
                    incomplete: false,
                });
                state.built = Instant::now();
                return;
            }
        };
        let mut entries = Vec::new();
        let mut files = Vec::new();
        let mut incomplete = false;
        for mapping in &mappings {
            let Some(id) = mapping.file else { continue };
            let Some(file) = self.load_file(id, source, maps) else {
                incomplete |= matches!(self.files.get(&id), Some(FileState::DidNotFit { .. }));
                continue;
            };
            let Some(bias) = mapping_bias(&file.segments, mapping.range.start, mapping.file_offset)
            else {
                continue;
            };
            entries.push(UnwindMapping {
                start: mapping.range.start,
                end: mapping.range.end,
                bias,
                file: file.slot,
                _pad: 0,
            });
            files.push(id);
        }
        if entries.len() > UNWIND_MAX_MAPPINGS {
            // The lowest addresses are kept: the executable and the libraries loaded first.
            entries.truncate(UNWIND_MAX_MAPPINGS);
            files.truncate(UNWIND_MAX_MAPPINGS);
            self.summary.processes_mappings_cut += 1;
        }
        let old = self.processes.remove(&pid);
        let had_entry = old.as_ref().is_some_and(|old| !old.mappings.is_empty());
        let mut state = ProcessState {
            mappings: 0..0,
            files: Vec::new(),
            ranges: mappings.iter().map(|m| m.range.clone()).collect(),
            built: Instant::now(),
            incomplete,
        };
        if !entries.is_empty() {
            match self.publish(pid, &entries, had_entry, maps) {
                Some(range) => {
                    state.mappings = range;
                    state.files = files;
                }
                None => {
                    // Not published: the old list (if any) stays in the kernel as it was.
                    if let Some(old) = old {
                        self.processes.insert(pid, old);
                    }
                    return;
                }
            }
        } else if had_entry {
            if let Err(err) = maps.remove_process(pid) {
                self.map_error(err);
            }
            if let Some(arrays) = self.arrays.as_mut() {
                arrays.processes -= 1;
            }
        }
        for id in &state.files {
            if let Some(FileState::Loaded(file)) = self.files.get_mut(id) {
                file.users += 1;
                file.last_used = self.syncs;
            }
        }
        if let Some(old) = old {
            if !old.mappings.is_empty() {
                self.quarantine.push(old.mappings);
            }
            self.release_files(&old.files);
        }
        let pending = self.pending_samples.remove(&pid);
        if !state.mappings.is_empty() {
            if let Some((samples, first_ns)) = pending {
                self.summary.samples_before_tables += samples;
                let latency = crate::loader::monotonic_ns().saturating_sub(first_ns);
                self.summary.tables_latency_max_ns =
                    self.summary.tables_latency_max_ns.max(latency);
                self.summary.tables_latency_sum_ns += latency;
            }
            if !had_entry {
                self.summary.processes += 1;
            }
        }
        self.processes.insert(pid, state);
    }

    /// Writes `entries` to a new range and points the kernel's entry for `pid` at it.
    fn publish(
        &mut self,
        pid: u32,
        entries: &[UnwindMapping],
        had_entry: bool,
        maps: &mut dyn UnwindMaps,
    ) -> Option<Range<u32>> {
        let arrays = self.arrays.as_mut()?;
        if !had_entry && arrays.processes >= arrays.capacity.processes {
            self.summary.processes_not_fitted += 1;
            return None;
        }
        let Some(range) = arrays.mappings.allocate(entries.len() as u32) else {
            self.summary.processes_not_fitted += 1;
            return None;
        };
        let written = maps.write_mappings(range.start, entries).and_then(|()| {
            maps.set_process(
                pid,
                &UnwindProcess {
                    start: range.start,
                    len: entries.len() as u32,
                },
            )
        });
        if let Err(err) = written {
            arrays.mappings.release(range);
            self.map_error(err);
            return None;
        }
        if !had_entry {
            arrays.processes += 1;
        }
        Some(range)
    }

    /// The file's table in the kernel: compiled and loaded the first time it is asked for.
    fn load_file(
        &mut self,
        id: FileId,
        source: &mut dyn TableSource,
        maps: &mut dyn UnwindMaps,
    ) -> Option<LoadedFile> {
        match self.files.get(&id) {
            Some(FileState::Loaded(file)) => return Some(file.clone()),
            Some(FileState::Unavailable) => return None,
            Some(FileState::DidNotFit { room_seen }) if *room_seen == self.room_changes => {
                return None
            }
            _ => {}
        }
        let table = match source.compile(id) {
            Ok(table) => table,
            Err(why) => {
                match why {
                    NoTable::NoCfi => self.summary.files_without_cfi += 1,
                    NoTable::Failed(reason) => {
                        self.summary.files_failed += 1;
                        self.summary.first_file_error.get_or_insert(reason);
                    }
                }
                self.files.insert(id, FileState::Unavailable);
                return None;
            }
        };
        self.summary.files_compiled += 1;
        self.summary.cfi_bytes += table.cfi_bytes as u64;
        let (base_pc, pages) = page_index(&table.rows);
        let rows_len = table.rows.len() as u32;
        let pages_len = pages.len() as u32;
        let Some((slot, rows, page_range)) = self.allocate_file(rows_len, pages_len) else {
            if self.not_fitted.insert(id) {
                self.summary.files_not_fitted += 1;
            }
            self.files.insert(
                id,
                FileState::DidNotFit {
                    room_seen: self.room_changes,
                },
            );
            return None;
        };
        let pages64: Vec<u64> = pages.iter().map(|&p| u64::from(p)).collect();
        let written = maps
            .write_rows(rows.start, &table.rows)
            .and_then(|()| maps.write_pages(page_range.start, &pages64))
            .and_then(|()| {
                maps.set_file(
                    slot,
                    &UnwindFile {
                        rows_start: rows.start,
                        rows_len,
                        pages_start: page_range.start,
                        pages_len,
                        base_pc,
                        _pad: 0,
                    },
                )
            });
        if let Err(err) = written {
            if let Some(arrays) = self.arrays.as_mut() {
                arrays.rows.release(rows);
                arrays.pages.release(page_range);
                arrays.slots.push(slot);
            }
            self.map_error(err);
            self.files.insert(id, FileState::Unavailable);
            return None;
        }
        let loaded = LoadedFile {
            slot,
            rows,
            pages: page_range,
            segments: table.segments.into(),
            users: 0,
            last_used: self.syncs,
        };
        self.files.insert(id, FileState::Loaded(loaded.clone()));
        if let Some(arrays) = &self.arrays {
            let used = u64::from(arrays.rows.capacity - arrays.rows.free_entries());
            self.summary.rows_peak = self.summary.rows_peak.max(used);
        }
        Some(loaded)
    }

    /// Room for a table, evicting unused tables (least recently used first) as needed.
    fn allocate_file(&mut self, rows: u32, pages: u32) -> Option<(u32, Range<u32>, Range<u32>)> {
        loop {
            let arrays = self.arrays.as_mut()?;
            if let Some(slot) = arrays.slots.pop() {
                match arrays.rows.allocate(rows) {
                    Some(row_range) => match arrays.pages.allocate(pages) {
                        Some(page_range) => return Some((slot, row_range, page_range)),
                        None => {
                            arrays.rows.release(row_range);
                            arrays.slots.push(slot);
                        }
                    },
                    None => arrays.slots.push(slot),
                }
            }
            if !self.evict_one() {
                return None;
            }
        }
    }

    /// Evicts the least recently used table that no process has used since an earlier
    /// sync, so no sample can still be reading it: its ranges are reused right away.
    fn evict_one(&mut self) -> bool {
        let victim = self
            .files
            .iter()
            .filter_map(|(id, state)| match state {
                FileState::Loaded(file) if file.users == 0 && file.last_used < self.syncs => {
                    Some((file.last_used, *id))
                }
                _ => None,
            })
            .min();
        let Some((_, id)) = victim else {
            return false;
        };
        let Some(FileState::Loaded(file)) = self.files.remove(&id) else {
            return false;
        };
        self.room_changes += 1;
        self.summary.files_evicted += 1;
        if let Some(arrays) = self.arrays.as_mut() {
            arrays.rows.release(file.rows);
            arrays.pages.release(file.pages);
            arrays.slots.push(file.slot);
        }
        true
    }
}

impl Arrays {
    fn new(capacity: UnwindCapacity) -> Self {
        Arrays {
            rows: RangeAllocator::new(capacity.rows),
            pages: RangeAllocator::new(capacity.pages),
            mappings: RangeAllocator::new(capacity.mappings),
            slots: (0..capacity.files).rev().collect(),
            processes: 0,
            capacity,
        }
    }
}

#[cfg(test)]
mod tests;
