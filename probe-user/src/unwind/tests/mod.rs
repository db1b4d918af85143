use gimli::{BaseAddresses, EhFrame, LittleEndian};
use probe_common::{
    CFA_END, CFA_NONE, CFA_PLT, CFA_RBP, CFA_RSP, RBP_AT_CFA, RBP_SAME, RBP_UNKNOWN,
    UNWIND_PAGE_SEARCH_STEPS, UNWIND_PAGE_SHIFT,
};

use super::compile::{compile_section, entry_at, plt_threshold, Entry, Evaluate, MAX_ROWS_PER_FDE};
use super::*;

mod real;

const LIBC: &str = "/lib/x86_64-linux-gnu/libc.so.6";

fn row(pc: u32, cfa: u8, cfa_offset: u16, rbp: u8, rbp_offset: i8) -> UnwindRow {
    UnwindRow {
        pc,
        cfa_offset,
        rbp_offset,
        rules: cfa | (rbp << 4),
    }
}

fn none(pc: u32) -> UnwindRow {
    row(pc, CFA_NONE, 0, RBP_SAME, 0)
}

fn rsp(pc: u32, offset: u16) -> UnwindRow {
    row(pc, CFA_RSP, offset, RBP_SAME, 0)
}

/// A table with its page index, looked up as the kernel would.
struct Indexed {
    table: CompiledTable,
    base_pc: u32,
    pages: Vec<u32>,
}

impl Indexed {
    fn new(table: CompiledTable) -> Indexed {
        let (base_pc, pages) = page_index(&table.rows);
        Indexed {
            table,
            base_pc,
            pages,
        }
    }

    fn at(&self, pc: u64) -> Option<&UnwindRow> {
        lookup(&self.table.rows, &self.pages, self.base_pc, pc)
    }
}

/// What every compiled table must satisfy, and every row must be found where it starts
/// and just before the next one.
fn check_table(table: &CompiledTable) -> Indexed {
    let rows = &table.rows;
    assert!(!rows.is_empty());
    for pair in rows.windows(2) {
        assert!(pair[0].pc < pair[1].pc, "unsorted: {pair:?}");
        assert!(
            (pair[0].cfa_offset, pair[0].rbp_offset, pair[0].rules)
                != (pair[1].cfa_offset, pair[1].rbp_offset, pair[1].rules),
            "unmerged: {pair:?}"
        );
    }
    assert_eq!(rows.last().unwrap().cfa_rule(), CFA_NONE);
    for r in rows {
        assert!(
            r.cfa_rule() <= CFA_END && r.rbp_rule() <= RBP_UNKNOWN,
            "{r:?}"
        );
    }
    assert_eq!(table.stats.rows, rows.len());
    assert_eq!(
        table.stats.no_rule_rows,
        rows.iter().filter(|r| r.cfa_rule() == CFA_NONE).count()
    );
    for pair in table.functions.windows(2) {
        assert!(pair[0] < pair[1]);
    }
    let indexed = Indexed::new(table.clone());
    for (i, r) in rows.iter().enumerate() {
        assert_eq!(indexed.at(u64::from(r.pc)), Some(r), "row {i}");
        if let Some(next) = rows.get(i + 1) {
            assert_eq!(
                indexed.at(u64::from(next.pc) - 1),
                Some(r),
                "end of row {i}"
            );
        }
    }
    if rows[0].pc > 0 {
        assert_eq!(indexed.at(u64::from(rows[0].pc) - 1), None);
    }
    indexed
}

fn read(path: &str) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|err| panic!("read {path}: {err}"))
}

// ---- page index and lookup --------------------------------------------------------------

#[test]
fn page_index_follows_the_format() {
    assert_eq!(page_index(&[]), (0, vec![]));
    assert_eq!(lookup(&[], &[], 0, 0), None);

    let rows = [rsp(0x1010, 8), rsp(0x1020, 16), none(0x1030)];
    let (base, pages) = page_index(&rows);
    assert_eq!(base, 0x1000);
    // One page (0x1000..0x2000) plus the final entry.
    assert_eq!(pages, vec![0, 2]);
    assert_eq!(lookup(&rows, &pages, base, 0x0fff), None);
    // In page 0 but before the first row.
    assert_eq!(lookup(&rows, &pages, base, 0x1000), None);
    assert_eq!(lookup(&rows, &pages, base, 0x100f), None);
    assert_eq!(lookup(&rows, &pages, base, 0x1010), Some(&rows[0]));
    assert_eq!(lookup(&rows, &pages, base, 0x101f), Some(&rows[0]));
    assert_eq!(lookup(&rows, &pages, base, 0x1020), Some(&rows[1]));
    assert_eq!(lookup(&rows, &pages, base, 0x1030), Some(&rows[2]));
    // Past the last row, in its page: the closing CFA_NONE row.
    assert_eq!(lookup(&rows, &pages, base, 0x1fff), Some(&rows[2]));
    // Past the last page.
    assert_eq!(lookup(&rows, &pages, base, 0x2000), None);
    assert_eq!(lookup(&rows, &pages, base, u64::MAX), None);

    // Rows across pages, a page with no row of its own, a row exactly on a page start.
    let rows = [
        rsp(0x1ff0, 8),
        rsp(0x3000, 16),
        rsp(0x3008, 24),
        rsp(0x5004, 32),
        none(0x5010),
    ];
    let (base, pages) = page_index(&rows);
    assert_eq!(base, 0x1000);
    // Pages at 0x1000, 0x2000, 0x3000, 0x4000, 0x5000, then the final entry.
    assert_eq!(pages, vec![0, 0, 1, 2, 2, 4]);
    assert_eq!(lookup(&rows, &pages, base, 0x2500), Some(&rows[0]));
    assert_eq!(lookup(&rows, &pages, base, 0x2fff), Some(&rows[0]));
    assert_eq!(lookup(&rows, &pages, base, 0x3000), Some(&rows[1]));
    assert_eq!(lookup(&rows, &pages, base, 0x4fff), Some(&rows[2]));
    assert_eq!(lookup(&rows, &pages, base, 0x5003), Some(&rows[2]));
    assert_eq!(lookup(&rows, &pages, base, 0x5004), Some(&rows[3]));
    assert_eq!(lookup(&rows, &pages, base, 0x5fff), Some(&rows[4]));
    assert_eq!(lookup(&rows, &pages, base, 0x6000), None);

    // A single row.
    let rows = [none(0xffff_f000)];
    let (base, pages) = page_index(&rows);
    assert_eq!((base, pages.clone()), (0xffff_f000, vec![0, 0]));
    assert_eq!(lookup(&rows, &pages, base, 0xffff_ffff), Some(&rows[0]));
    assert_eq!(lookup(&rows, &pages, base, 0x1_0000_0000), None);

    // Unsorted rows and garbage page entries never panic.
    let _ = page_index(&[rsp(0x5000, 8), rsp(0x1000, 8), rsp(0x3000, 8)]);
    assert_eq!(lookup(&rows, &[5, 9], base, 0xffff_f000), None);
    assert_eq!(lookup(&rows, &[0, 9], base, 0xffff_f000), None);
}

#[test]
fn lookup_gives_up_on_pages_the_kernel_cannot_search() {
    let page = 1u32 << UNWIND_PAGE_SHIFT;
    let limit = 1usize << UNWIND_PAGE_SEARCH_STEPS;
    // A row on every byte of a page, plus the row at the next page start: more rows in one
    // page's range than the bounded search covers.
    let rows: Vec<UnwindRow> = (0..=page).map(|i| rsp(page + i, (i % 2) as u16)).collect();
    let (base, pages) = page_index(&rows);
    assert_eq!(pages, vec![0, page, page]);
    assert!(pages[1] as usize + 1 > limit);
    assert_eq!(lookup(&rows, &pages, base, u64::from(page) + 5), None);
    // The last page holds one row: found.
    assert_eq!(
        lookup(&rows, &pages, base, u64::from(2 * page)),
        rows.last()
    );
    // One row fewer fits exactly.
    let rows = &rows[1..];
    let (base, pages) = page_index(rows);
    assert_eq!(pages[1] - pages[0] + 1, limit as u32);
    for pc in [page + 1, page + 2, page + 77, 2 * page - 1, 2 * page] {
        assert_eq!(
            lookup(rows, &pages, base, u64::from(pc)).map(|r| r.pc),
            Some(pc)
        );
    }
}

// ---- hand-assembled CFI -----------------------------------------------------------------

fn uleb(mut value: u64, out: &mut Vec<u8>) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn sleb(mut value: i64, out: &mut Vec<u8>) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        let done = (value == 0 && byte & 0x40 == 0) || (value == -1 && byte & 0x40 != 0);
        if done {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// DWARF call frame instructions, as the tests need them.
#[derive(Default)]
struct Program(Vec<u8>);

impl Program {
    fn advance(mut self, delta: u8) -> Self {
        assert!(delta < 64);
        self.0.push(0x40 | delta);
        self
    }
    fn def_cfa(mut self, reg: u64, offset: u64) -> Self {
        self.0.push(0x0c);
        uleb(reg, &mut self.0);
        uleb(offset, &mut self.0);
        self
    }
    fn def_cfa_offset(mut self, offset: u64) -> Self {
        self.0.push(0x0e);
        uleb(offset, &mut self.0);
        self
    }
    fn def_cfa_register(mut self, reg: u64) -> Self {
        self.0.push(0x0d);
        uleb(reg, &mut self.0);
        self
    }
    fn def_cfa_expression(mut self, expression: &[u8]) -> Self {
        self.0.push(0x0f);
        uleb(expression.len() as u64, &mut self.0);
        self.0.extend_from_slice(expression);
        self
    }
    /// Saved at CFA + `offset` (a multiple of the data alignment, -8).
    fn offset(mut self, reg: u64, offset: i64) -> Self {
        self.0.push(0x11);
        uleb(reg, &mut self.0);
        sleb(offset / -8, &mut self.0);
        self
    }
    fn val_offset(mut self, reg: u64, factored: u64) -> Self {
        self.0.push(0x14);
        uleb(reg, &mut self.0);
        uleb(factored, &mut self.0);
        self
    }
    fn undefined(mut self, reg: u64) -> Self {
        self.0.push(0x07);
        uleb(reg, &mut self.0);
        self
    }
    fn same_value(mut self, reg: u64) -> Self {
        self.0.push(0x08);
        uleb(reg, &mut self.0);
        self
    }
    /// Back to the CIE's rule (`DW_CFA_restore`).
    fn restore(mut self, reg: u8) -> Self {
        assert!(reg < 64);
        self.0.push(0xc0 | reg);
        self
    }
    fn register(mut self, reg: u64, in_reg: u64) -> Self {
        self.0.push(0x09);
        uleb(reg, &mut self.0);
        uleb(in_reg, &mut self.0);
        self
    }
}

/// An `.eh_frame` section under construction, at address 0, absolute pointers.
#[derive(Default)]
struct EhFrameBuilder {
    bytes: Vec<u8>,
}

impl EhFrameBuilder {
    fn entry(&mut self, body: &[u8]) -> usize {
        let at = self.bytes.len();
        self.bytes
            .extend_from_slice(&(body.len() as u32).to_le_bytes());
        self.bytes.extend_from_slice(body);
        at
    }

    /// The x86-64 CIE GCC emits: CFA = RSP + 8, return address at CFA - 8.
    fn cie(&mut self) -> usize {
        let mut body = vec![0, 0, 0, 0, 1];
        body.extend_from_slice(b"zR\0");
        body.extend_from_slice(&[1, 0x78, 16, 1, 0x00]);
        body.extend(Program::default().def_cfa(7, 8).offset(16, -8).0);
        self.entry(&body)
    }

    fn fde(&mut self, cie: usize, start: u64, len: u64, program: Program) -> usize {
        let pointer = (self.bytes.len() + 4).wrapping_sub(cie) as u32;
        let mut body = pointer.to_le_bytes().to_vec();
        body.extend_from_slice(&start.to_le_bytes());
        body.extend_from_slice(&len.to_le_bytes());
        body.push(0);
        body.extend(program.0);
        self.entry(&body)
    }

    fn finish(mut self) -> Vec<u8> {
        self.bytes.extend_from_slice(&[0; 4]);
        self.bytes
    }
}

fn compile_eh_frame(bytes: &[u8]) -> CompiledTable {
    let mut section = EhFrame::new(bytes, LittleEndian);
    section.set_address_size(8);
    let bases = BaseAddresses::default().set_eh_frame(0);
    compile_section(&section, bytes, CfiSection::EhFrame, &bases, Evaluate::Rows)
}

#[test]
fn rules_map_to_kernel_rows() {
    const PLT11: [u8; 11] = [0x77, 8, 0x80, 0, 0x3f, 0x1a, 0x3b, 0x2a, 0x33, 0x24, 0x22];
    let mut cfi = EhFrameBuilder::default();
    let cie = cfi.cie();
    let program = Program::default()
        .advance(1)
        .def_cfa_offset(16)
        .offset(6, -16)
        .advance(3)
        .def_cfa_register(6)
        .advance(4)
        .def_cfa(3, 8)
        .advance(4)
        .def_cfa(7, 70_000)
        .advance(4)
        .def_cfa(7, 16)
        .offset(6, -1600)
        .advance(4)
        .def_cfa_offset(24)
        .val_offset(6, 2)
        .advance(4)
        .def_cfa_offset(32)
        .same_value(6)
        .advance(4)
        .register(16, 1)
        .advance(4)
        .offset(16, -8)
        .undefined(6)
        .advance(4)
        .def_cfa_expression(&PLT11)
        .advance(4)
        .register(7, 8)
        .advance(4)
        .same_value(7)
        .advance(4)
        .restore(7)
        .def_cfa_expression(&[0x77, 0xa0, 0x01, 0x06])
        .advance(4)
        .undefined(16)
        // An advance by 0: an empty row, which must not hide the next one.
        .advance(0)
        .advance(4)
        .def_cfa(7, 8)
        .advance(4);
    cfi.fde(cie, 0x1000, 0x40, program);
    // Starts where the first ends: no CFA_NONE row between them.
    cfi.fde(cie, 0x1040, 0x10, Program::default());
    // Inside the first FDE: left out.
    cfi.fde(cie, 0x1020, 0x10, Program::default());
    // Covers nothing.
    cfi.fde(cie, 0x3000, 0, Program::default());
    // Above 4 GiB.
    cfi.fde(cie, 0x1_0000_0000, 0x10, Program::default());
    // After a gap.
    cfi.fde(
        cie,
        0x1060,
        0x10,
        Program::default().advance(2).def_cfa_offset(16),
    );
    // Points at no CIE.
    cfi.fde(cfi.bytes.len() + 8, 0x2000, 0x10, Program::default());
    // Too short for its CIE pointer.
    cfi.entry(&[1, 2]);
    let bytes = cfi.finish();

    let table = compile_eh_frame(&bytes);
    let expected = vec![
        rsp(0x1000, 8),
        row(0x1001, CFA_RSP, 16, RBP_AT_CFA, -2),
        row(0x1004, CFA_RBP, 16, RBP_AT_CFA, -2),
        // RBX-based CFA, then an offset past u16: both CFA_NONE, merged.
        none(0x1008),
        // RBP saved 200 words below the CFA: past i8.
        row(0x1010, CFA_RSP, 16, RBP_UNKNOWN, 0),
        // val_offset.
        row(0x1014, CFA_RSP, 24, RBP_UNKNOWN, 0),
        rsp(0x1018, 32),
        // Return address in a register.
        none(0x101c),
        // RBP undefined.
        row(0x1020, CFA_RSP, 32, RBP_UNKNOWN, 0),
        row(0x1024, CFA_PLT, 11, RBP_UNKNOWN, 0),
        // RSP kept in a register, then RSP "unchanged": neither is the CFA. Then a general
        // expression (the signal frame's `DW_OP_breg7 160; DW_OP_deref`). All merged.
        none(0x1028),
        // Then three rows with an undefined return address (whatever their CFA): one.
        row(0x1034, CFA_END, 0, RBP_SAME, 0),
        rsp(0x1040, 8),
        none(0x1050),
        rsp(0x1060, 8),
        rsp(0x1062, 16),
        none(0x1070),
    ];
    assert_eq!(table.rows, expected);
    check_table(&table);

    let stats = &table.stats;
    assert_eq!(stats.cies, 1);
    assert_eq!(stats.fdes, 3);
    assert_eq!(stats.overlapping_fdes, 1);
    assert_eq!(stats.empty_fdes, 1);
    assert_eq!(stats.high_fdes, 1);
    assert_eq!(stats.bad_fdes, 2);
    assert_eq!(stats.skipped_fdes, 4);
    assert!(stats.first_error.is_some());
    assert!(!stats.truncated);
    assert_eq!(stats.eh_frame_bytes, bytes.len());
    let rules = &stats.rules;
    assert_eq!(rules.none_cfa_register, 1);
    assert_eq!(rules.none_cfa_offset, 1);
    assert_eq!(rules.none_cfa_expression, 1);
    assert_eq!(rules.none_ra, 1);
    assert_eq!(rules.none_rsp, 2);
    assert_eq!(rules.end, 3);
    assert_eq!(rules.cfa_plt, 1);
    assert_eq!(rules.cfa_rbp, 1);
    assert_eq!(rules.rbp_saved, 2);
    assert_eq!(rules.rbp_undefined, 2);
    assert_eq!(rules.rbp_other, 2);
    assert_eq!(
        table.functions,
        vec![
            (0x1000, 0x1040),
            (0x1020, 0x1030),
            (0x1040, 0x1050),
            (0x1060, 0x1070),
            (0x1_0000_0000, 0x1_0000_0010)
        ]
    );

    // A truncated section keeps what came before the cut.
    let cut = compile_eh_frame(&bytes[..bytes.len() - 7]);
    assert!(cut.stats.truncated);
    assert_eq!(cut.rows, table.rows);
}

#[test]
fn long_programs_are_skipped() {
    let mut cfi = EhFrameBuilder::default();
    let cie = cfi.cie();
    let mut program = Program::default();
    for i in 0..=MAX_ROWS_PER_FDE {
        program = program.advance(1).def_cfa_offset(8 + (i as u64 % 2) * 8);
    }
    cfi.fde(cie, 0x1000, 0x100_0000, program);
    cfi.fde(cie, 0x200_0000, 0x10, Program::default());
    let table = compile_eh_frame(&cfi.finish());
    assert_eq!(table.stats.long_fdes, 1);
    assert_eq!(table.stats.fdes, 1);
    assert_eq!(table.rows, vec![rsp(0x200_0000, 8), none(0x200_0010)]);
}

#[test]
fn entry_headers_are_bounded() {
    let eh = CfiSection::EhFrame;
    let debug = CfiSection::DebugFrame;
    assert_eq!(entry_at(&[], 0, eh), None);
    assert_eq!(entry_at(&[0, 0, 0], 0, eh), None);
    assert_eq!(entry_at(&[0, 0, 0, 0], 0, eh), Some((Entry::Zero, 4)));
    assert_eq!(
        entry_at(&[4, 0, 0, 0, 0, 0, 0, 0], 0, eh),
        Some((Entry::Cie, 8))
    );
    assert_eq!(
        entry_at(&[4, 0, 0, 0, 1, 0, 0, 0], 0, eh),
        Some((Entry::Fde, 8))
    );
    assert_eq!(entry_at(&[5, 0, 0, 0, 1, 0, 0, 0], 0, eh), None);
    assert_eq!(
        entry_at(&[2, 0, 0, 0, 1, 0], 0, eh),
        Some((Entry::Short, 6))
    );
    assert_eq!(entry_at(&[0xf0, 0xff, 0xff, 0xff], 0, eh), None);
    let debug_cie = [4, 0, 0, 0, 0xff, 0xff, 0xff, 0xff];
    assert_eq!(entry_at(&debug_cie, 0, debug), Some((Entry::Cie, 8)));
    assert_eq!(entry_at(&debug_cie, 0, eh), Some((Entry::Fde, 8)));
    // 64-bit lengths, including one that would overflow the offset.
    let mut long = vec![0xff; 4];
    long.extend_from_slice(&8u64.to_le_bytes());
    long.extend_from_slice(&[0xff; 8]);
    assert_eq!(entry_at(&long, 0, debug), Some((Entry::Cie, 20)));
    assert_eq!(entry_at(&long, 0, eh), Some((Entry::Fde, 20)));
    let mut huge = vec![0xff; 4];
    huge.extend_from_slice(&u64::MAX.to_le_bytes());
    assert_eq!(entry_at(&huge, 0, debug), None);
    assert_eq!(entry_at(&[0; 8], usize::MAX - 2, eh), None);
}

#[test]
fn plt_expression_is_recognised_exactly() {
    let mut plt = vec![0x77, 8, 0x80, 0, 0x3f, 0x1a, 0x3b, 0x2a, 0x33, 0x24, 0x22];
    assert_eq!(plt_threshold(&plt), Some(11));
    plt[6] = 0x3a;
    assert_eq!(plt_threshold(&plt), Some(10));
    plt[6] = 0x3c;
    assert_eq!(plt_threshold(&plt), None);
    plt[6] = 0x3b;
    plt[1] = 16;
    assert_eq!(plt_threshold(&plt), None);
    assert_eq!(plt_threshold(&plt[..10]), None);
    assert_eq!(plt_threshold(&[]), None);
}

#[test]
fn non_elf_and_foreign_files_are_errors() {
    assert!(matches!(compile_file(b""), Err(TableError::Elf(_))));
    assert!(matches!(
        compile_file(b"#!/bin/sh\necho hi\n"),
        Err(TableError::Elf(_))
    ));
    // An x86-64 ELF header with no sections at all.
    let libc = read(LIBC);
    let mut bare = libc[..64].to_vec();
    bare[0x28..0x30].fill(0); // e_shoff
    bare[0x3c..0x40].fill(0); // e_shnum, e_shstrndx
    bare[0x20..0x28].fill(0); // e_phoff
    bare[0x38..0x3a].fill(0); // e_phnum
    assert!(matches!(compile_file(&bare), Err(TableError::NoCfi)));
    // Same header, another machine (EM_AARCH64).
    bare[0x12..0x14].copy_from_slice(&183u16.to_le_bytes());
    assert!(matches!(
        compile_file(&bare),
        Err(TableError::Architecture(_))
    ));
}
