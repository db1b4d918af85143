//! The tracker against fake maps and a fake process source: where tables go, when they are
//! shared, replaced, evicted, and what is counted when they do not fit. Every check of the
//! kernel's view goes through [`kernel_row`], the kernel's lookup done on the fake maps.

use std::collections::{HashMap, HashSet};

use probe_common::{
    UnwindFile, UnwindMapping, UnwindProcess, UnwindRow, CFA_NONE, CFA_RSP, UNWIND_NO_FILE,
};

use super::*;
use crate::elf::LoadSegment;

#[derive(Default)]
struct FakeMaps {
    rows: Vec<UnwindRow>,
    pages: Vec<u64>,
    mappings: Vec<UnwindMapping>,
    files: HashMap<u32, UnwindFile>,
    procs: HashMap<u32, UnwindProcess>,
    capacity: Option<UnwindCapacity>,
    fail_writes: bool,
}

impl FakeMaps {
    fn new(rows: u32, pages: u32, mappings: u32, files: u32, processes: u32) -> Self {
        FakeMaps {
            rows: vec![UnwindRow::default(); rows as usize],
            pages: vec![0; pages as usize],
            mappings: vec![UnwindMapping::default(); mappings as usize],
            capacity: Some(UnwindCapacity {
                rows,
                pages,
                mappings,
                files,
                processes,
            }),
            ..FakeMaps::default()
        }
    }

    /// The row the kernel would use for runtime address `pc` of process `pid`: its mapping
    /// search, then `lookup` on the file's rows and pages as they are in the arrays.
    fn kernel_row(&self, pid: u32, pc: u64) -> Option<UnwindRow> {
        let process = self.procs.get(&pid)?;
        let list = &self.mappings[process.start as usize..][..process.len as usize];
        assert!(list.windows(2).all(|w| w[0].end <= w[1].start), "{list:?}");
        let mapping = list.iter().find(|m| m.start <= pc && pc < m.end)?;
        assert_ne!(mapping.file, UNWIND_NO_FILE);
        let file = self.files.get(&mapping.file)?;
        let rows = &self.rows[file.rows_start as usize..][..file.rows_len as usize];
        let pages: Vec<u32> = self.pages[file.pages_start as usize..][..file.pages_len as usize]
            .iter()
            .map(|&p| p as u32)
            .collect();
        crate::unwind::lookup(rows, &pages, file.base_pc, pc - mapping.bias).copied()
    }
}

fn write<T: Copy>(array: &mut [T], at: u32, values: &[T]) -> Result<(), String> {
    let at = at as usize;
    array
        .get_mut(at..at + values.len())
        .ok_or("out of range")?
        .copy_from_slice(values);
    Ok(())
}

impl UnwindMaps for FakeMaps {
    fn enabled(&self) -> bool {
        self.capacity.is_some()
    }
    fn capacity(&mut self) -> Result<UnwindCapacity, String> {
        self.capacity.ok_or_else(|| "no maps".into())
    }
    fn write_rows(&mut self, at: u32, rows: &[UnwindRow]) -> Result<(), String> {
        if self.fail_writes {
            return Err("the map is gone".into());
        }
        write(&mut self.rows, at, rows)
    }
    fn write_pages(&mut self, at: u32, pages: &[u64]) -> Result<(), String> {
        write(&mut self.pages, at, pages)
    }
    fn write_mappings(&mut self, at: u32, mappings: &[UnwindMapping]) -> Result<(), String> {
        write(&mut self.mappings, at, mappings)
    }
    fn set_file(&mut self, slot: u32, file: &UnwindFile) -> Result<(), String> {
        self.files.insert(slot, *file);
        Ok(())
    }
    fn set_process(&mut self, pid: u32, process: &UnwindProcess) -> Result<(), String> {
        self.procs.insert(pid, *process);
        Ok(())
    }
    fn remove_process(&mut self, pid: u32) -> Result<(), String> {
        self.procs.remove(&pid);
        Ok(())
    }
}

#[derive(Default)]
struct FakeSource {
    processes: HashMap<u32, Vec<ExecMapping>>,
    tables: HashMap<FileId, Result<FileTable, NoTable>>,
    compiled: Vec<FileId>,
    gone: HashSet<u32>,
}

impl TableSource for FakeSource {
    fn mappings(&mut self, pid: u32) -> Result<Vec<ExecMapping>, String> {
        if self.gone.contains(&pid) {
            return Err("no such process".into());
        }
        self.processes
            .get(&pid)
            .cloned()
            .ok_or_else(|| "no such process".into())
    }
    fn compile(&mut self, file: FileId) -> Result<FileTable, NoTable> {
        self.compiled.push(file);
        self.tables
            .get(&file)
            .cloned()
            .unwrap_or(Err(NoTable::Failed("unknown".into())))
    }
    fn exists(&mut self, pid: u32) -> bool {
        !self.gone.contains(&pid) && self.processes.contains_key(&pid)
    }
}

fn id(ino: u64) -> FileId {
    FileId { dev: 1, ino }
}

/// A file whose code is at file addresses 0x1000.. (segment at offset 0x1000), with
/// `functions` functions of 0x100 bytes, each a row "CFA = RSP + 8 * (n + 1)".
fn table(functions: u32) -> FileTable {
    let mut rows: Vec<UnwindRow> = (0..functions)
        .map(|n| UnwindRow {
            pc: 0x1000 + n * 0x100,
            cfa_offset: 8 * (n as u16 + 1),
            rbp_offset: 0,
            rules: CFA_RSP,
        })
        .collect();
    rows.push(UnwindRow {
        pc: 0x1000 + functions * 0x100,
        rules: CFA_NONE,
        ..UnwindRow::default()
    });
    FileTable {
        rows,
        segments: vec![LoadSegment {
            offset: 0x1000,
            vaddr: 0x1000,
            file_size: 0x10000,
        }],
        cfi_bytes: 100,
    }
}

/// A mapping of file `ino`'s code (offset 0x1000) at `start`.
fn code(start: u64, ino: u64) -> ExecMapping {
    ExecMapping {
        range: start..start + 0x10000,
        file_offset: 0x1000,
        file: Some(id(ino)),
    }
}

fn big_maps() -> FakeMaps {
    FakeMaps::new(1 << 12, 1 << 10, 1 << 8, 16, 16)
}

#[test]
fn ranges_are_allocated_first_fit_and_merged_when_released() {
    let mut ranges = RangeAllocator::new(100);
    let a = ranges.allocate(10).unwrap();
    let b = ranges.allocate(20).unwrap();
    let c = ranges.allocate(30).unwrap();
    assert_eq!((a.clone(), b.clone(), c.clone()), (0..10, 10..30, 30..60));
    assert_eq!(ranges.allocate(41), None);
    assert_eq!(ranges.allocate(0), Some(0..0));
    ranges.release(a);
    ranges.release(c);
    // Free: 0..10 and 30..100 (c merged with the tail).
    assert_eq!(ranges.free.len(), 2);
    assert_eq!(ranges.allocate(11), Some(30..41));
    ranges.release(30..41);
    ranges.release(b);
    assert_eq!(ranges.free.iter().collect::<Vec<_>>(), vec![(&0, &100)]);
    assert_eq!(ranges.free_entries(), 100);
    assert_eq!(RangeAllocator::new(0).allocate(1), None);
}

#[test]
fn bias_follows_the_segment_holding_the_mapped_offset() {
    let pie = [LoadSegment {
        offset: 0x1000,
        vaddr: 0x1000,
        file_size: 0x5000,
    }];
    assert_eq!(
        mapping_bias(&pie, 0x5555_0000_1000, 0x1000),
        Some(0x5555_0000_0000)
    );
    // A segment whose offset is not page-aligned is mapped from the page below it; the
    // mapping's address still lines up with the segment's.
    let unaligned = [
        LoadSegment {
            offset: 0,
            vaddr: 0x400000,
            file_size: 0x1234,
        },
        LoadSegment {
            offset: 0x1234,
            vaddr: 0x402234,
            file_size: 0x3000,
        },
    ];
    assert_eq!(mapping_bias(&unaligned, 0x402000, 0x1000), Some(0));
    assert_eq!(mapping_bias(&unaligned, 0x400000, 0), Some(0));
    // Split by mprotect: the second part of the code mapping.
    assert_eq!(mapping_bias(&unaligned, 0x403000, 0x2000), Some(0));
    assert_eq!(mapping_bias(&unaligned, 0x500000, 0x9000), None);
}

#[test]
fn processes_share_a_files_table_and_the_kernel_finds_its_rows() {
    let mut maps = big_maps();
    let mut source = FakeSource::default();
    source.tables.insert(id(1), Ok(table(4)));
    source.tables.insert(id(2), Ok(table(2)));
    source.tables.insert(id(3), Err(NoTable::NoCfi));
    source.processes.insert(
        10,
        vec![code(0x10_0000, 1), code(0x20_0000, 2), code(0x30_0000, 3)],
    );
    source
        .processes
        .insert(11, vec![code(0x70_0000, 2), code(0x90_0000, 1)]);
    let mut tracker = UnwindTracker::default();
    tracker.note_sample(10, 0, false, 0, Some(0x10_0010));
    tracker.note_sample(10, 0, false, 0, Some(0x10_0010));
    tracker.note_sample(11, 0, false, 0, None);
    tracker.sync(&mut source, &mut maps);
    // Each file compiled once.
    assert_eq!(source.compiled.len(), 3);
    // Process 10's function 2 of file 1 (file address 0x1200).
    let row = maps.kernel_row(10, 0x10_0000 + 0x250).unwrap();
    assert_eq!((row.pc, row.cfa_offset), (0x1200, 24));
    // The same file in process 11, elsewhere.
    let row = maps.kernel_row(11, 0x90_0000 + 0x350).unwrap();
    assert_eq!((row.pc, row.cfa_offset), (0x1300, 32));
    let row = maps.kernel_row(11, 0x70_0000 + 0x150).unwrap();
    assert_eq!((row.pc, row.cfa_offset), (0x1100, 16));
    // The file without CFI is not in the list: the kernel falls back to frame pointers.
    assert_eq!(maps.procs[&10].len, 2);
    assert_eq!(maps.kernel_row(10, 0x30_0010), None);
    let summary = tracker.summary();
    assert_eq!(summary.processes, 2);
    assert_eq!(summary.files_compiled, 2);
    assert_eq!(summary.files_without_cfi, 1);
    assert_eq!(summary.samples_before_tables, 3);
    assert_eq!(summary.rows_loaded, 5 + 3);
    assert!(tracker.notices()[0].starts_with("3 samples were taken before"));
}

#[test]
fn a_process_without_tables_is_left_to_frame_pointers() {
    let mut maps = big_maps();
    let mut source = FakeSource::default();
    source.tables.insert(id(3), Err(NoTable::NoCfi));
    source.processes.insert(10, vec![code(0x10_0000, 3)]);
    let mut tracker = UnwindTracker::default();
    tracker.note_sample(10, 0, false, 0, Some(0x10_0010));
    tracker.sync(&mut source, &mut maps);
    assert!(maps.procs.is_empty());
    // Its later samples are not "before tables", and do not rebuild it.
    tracker.note_sample(10, 0, false, 0, Some(0x10_0010));
    tracker.sync(&mut source, &mut maps);
    assert_eq!(source.compiled.len(), 1);
    assert_eq!(tracker.summary().samples_before_tables, 0);
    assert!(tracker.notices().is_empty());
}

#[test]
fn exec_and_exit_drop_the_process_and_its_list_is_reused_only_later() {
    let mut maps = big_maps();
    let mut source = FakeSource::default();
    source.tables.insert(id(1), Ok(table(4)));
    source.tables.insert(id(2), Ok(table(2)));
    source.processes.insert(10, vec![code(0x10_0000, 1)]);
    let mut tracker = UnwindTracker::default();
    tracker.track(10);
    tracker.sync(&mut source, &mut maps);
    let first = maps.procs[&10];
    // It execs another program.
    source.processes.insert(10, vec![code(0x40_0000, 2)]);
    tracker.exec(10);
    // Its first sample comes in the same drain: built again in the sync that drops it.
    tracker.note_sample(10, 0, false, 0, Some(0x40_0010));
    tracker.sync(&mut source, &mut maps);
    let second = maps.procs[&10];
    assert_ne!(
        second.start, first.start,
        "the old list was still quarantined"
    );
    assert_eq!(maps.kernel_row(10, 0x40_0110).unwrap().cfa_offset, 16);
    assert_eq!(maps.kernel_row(10, 0x10_0110), None);
    // It exits: dropped at the next sweep.
    source.gone.insert(10);
    tracker.last_sweep = None;
    tracker.sync(&mut source, &mut maps);
    assert!(maps.procs.is_empty());
    assert_eq!(tracker.processes_with_tables().count(), 0);
}

#[test]
fn samples_outside_the_mappings_rebuild_the_process_at_most_once_per_interval() {
    let mut maps = big_maps();
    let mut source = FakeSource::default();
    source.tables.insert(id(1), Ok(table(4)));
    source.tables.insert(id(2), Ok(table(2)));
    source.processes.insert(10, vec![code(0x10_0000, 1)]);
    let mut tracker = UnwindTracker::default();
    tracker.track(10);
    tracker.sync(&mut source, &mut maps);
    // A library is loaded; a sample lands in it right away: too soon to rebuild.
    source
        .processes
        .insert(10, vec![code(0x10_0000, 1), code(0x50_0000, 2)]);
    tracker.note_sample(10, 0, true, UNWIND_STOP_NO_MAPPING, Some(0x50_0010));
    assert!(tracker.to_build.is_empty());
    // Later it is.
    tracker.processes.get_mut(&10).unwrap().built -= REBUILD_INTERVAL;
    tracker.note_sample(10, 0, true, 0, Some(0x50_0010));
    tracker.sync(&mut source, &mut maps);
    assert_eq!(maps.kernel_row(10, 0x50_0150).unwrap().cfa_offset, 16);
    assert_eq!(maps.kernel_row(10, 0x10_0150).unwrap().cfa_offset, 16);
    assert_eq!(tracker.summary().processes, 1);
}

#[test]
fn unused_tables_are_evicted_least_recently_used_first_and_what_does_not_fit_is_counted() {
    // Room for 12 rows: two tables of 5 rows (4 functions), not three.
    let mut maps = FakeMaps::new(12, 64, 64, 8, 8);
    let mut source = FakeSource::default();
    for ino in 1..=3 {
        source.tables.insert(id(ino), Ok(table(4)));
    }
    source.processes.insert(10, vec![code(0x10_0000, 1)]);
    source.processes.insert(11, vec![code(0x10_0000, 2)]);
    source.processes.insert(12, vec![code(0x10_0000, 3)]);
    let mut tracker = UnwindTracker::default();
    tracker.track(10);
    tracker.track(11);
    tracker.sync(&mut source, &mut maps);
    // Both in use: the third does not fit.
    tracker.track(12);
    tracker.sync(&mut source, &mut maps);
    assert!(!maps.procs.contains_key(&12));
    assert_eq!(tracker.summary().files_not_fitted, 1);
    assert!(tracker.notices()[0].contains("did not fit"));
    // Process 10 exits; its table stays cached until room is needed. Not in the sync
    // that dropped it (a sample may still read it), in the next one.
    source.gone.insert(10);
    tracker.last_sweep = None;
    let retry = |tracker: &mut UnwindTracker| {
        tracker.processes.get_mut(&12).unwrap().built -= REBUILD_INTERVAL;
        tracker.note_sample(12, 0, false, 0, Some(0x10_0010));
    };
    retry(&mut tracker);
    tracker.sync(&mut source, &mut maps);
    assert!(!maps.procs.contains_key(&12));
    retry(&mut tracker);
    tracker.sync(&mut source, &mut maps);
    assert_eq!(maps.kernel_row(12, 0x10_0250).unwrap().cfa_offset, 24);
    assert_eq!(maps.kernel_row(11, 0x10_0250).unwrap().cfa_offset, 24);
    let summary = tracker.summary();
    assert_eq!(summary.files_evicted, 1);
    assert_eq!(summary.rows_loaded, 10);
    // File 1 was evicted: a process mapping it again gets it compiled again.
    source.processes.insert(13, vec![code(0x10_0000, 1)]);
    let compiled = source.compiled.len();
    tracker.track(13);
    tracker.sync(&mut source, &mut maps);
    assert_eq!(source.compiled.len(), compiled + 1);
}

#[test]
fn a_full_process_map_and_failing_writes_are_reported() {
    let mut maps = FakeMaps::new(1 << 12, 1 << 10, 1 << 8, 16, 1);
    let mut source = FakeSource::default();
    source.tables.insert(id(1), Ok(table(4)));
    source.processes.insert(10, vec![code(0x10_0000, 1)]);
    source.processes.insert(11, vec![code(0x10_0000, 1)]);
    let mut tracker = UnwindTracker::default();
    tracker.track(10);
    tracker.track(11);
    tracker.sync(&mut source, &mut maps);
    assert_eq!(maps.procs.len(), 1);
    assert_eq!(tracker.summary().processes_not_fitted, 1);

    let mut maps = big_maps();
    maps.fail_writes = true;
    let mut tracker = UnwindTracker::default();
    tracker.track(10);
    tracker.sync(&mut source, &mut maps);
    assert!(maps.procs.is_empty());
    let notices = tracker.notices();
    assert!(
        notices.iter().any(|n| n.contains("the map is gone")),
        "{notices:?}"
    );
}

#[test]
fn nothing_is_built_while_the_unwinder_is_not_loaded() {
    let mut maps = FakeMaps::default();
    let mut source = FakeSource::default();
    source.tables.insert(id(1), Ok(table(4)));
    source.processes.insert(10, vec![code(0x10_0000, 1)]);
    let mut tracker = UnwindTracker::default();
    tracker.note_sample(10, 0, false, 0, None);
    tracker.sync(&mut source, &mut maps);
    assert!(source.compiled.is_empty());
    assert_eq!(tracker.summary(), UnwindSummary::default());
    assert!(tracker.notices().is_empty());
}

#[test]
fn more_mappings_than_the_kernel_searches_are_cut_and_counted() {
    let mut maps = FakeMaps::new(1 << 12, 1 << 10, 1 << 11, 16, 16);
    let mut source = FakeSource::default();
    source.tables.insert(id(1), Ok(table(1)));
    let many: Vec<ExecMapping> = (0..UNWIND_MAX_MAPPINGS as u64 + 10)
        .map(|n| code(0x100_0000 + n * 0x10000, 1))
        .collect();
    source.processes.insert(10, many);
    let mut tracker = UnwindTracker::default();
    tracker.track(10);
    tracker.sync(&mut source, &mut maps);
    assert_eq!(maps.procs[&10].len as usize, UNWIND_MAX_MAPPINGS);
    assert_eq!(tracker.summary().processes_mappings_cut, 1);
}

#[test]
fn maps_that_cannot_be_opened_leave_nothing_waiting() {
    struct Broken;
    impl UnwindMaps for Broken {
        fn enabled(&self) -> bool {
            true
        }
        fn capacity(&mut self) -> Result<UnwindCapacity, String> {
            Err("cannot map UNWIND_ROWS".into())
        }
        fn write_rows(&mut self, _: u32, _: &[UnwindRow]) -> Result<(), String> {
            unreachable!()
        }
        fn write_pages(&mut self, _: u32, _: &[u64]) -> Result<(), String> {
            unreachable!()
        }
        fn write_mappings(&mut self, _: u32, _: &[UnwindMapping]) -> Result<(), String> {
            unreachable!()
        }
        fn set_file(&mut self, _: u32, _: &UnwindFile) -> Result<(), String> {
            unreachable!()
        }
        fn set_process(&mut self, _: u32, _: &UnwindProcess) -> Result<(), String> {
            unreachable!()
        }
        fn remove_process(&mut self, _: u32) -> Result<(), String> {
            unreachable!()
        }
    }
    let mut tracker = UnwindTracker::default();
    tracker.track(10);
    tracker.sync(&mut FakeSource::default(), &mut Broken);
    assert!(!tracker.has_pending());
    assert!(tracker.notices()[0].contains("cannot map UNWIND_ROWS"));
}
