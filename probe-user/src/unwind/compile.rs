//! The table compiler: ELF sections in, sorted [`UnwindRow`]s out.
//!
//! gimli parses each FDE and evaluates its CFI program (with the CIE's initial
//! instructions) into rows; each row's rules are reduced to the few the kernel follows.
//! Files come from whatever a process maps, so the input is untrusted: every FDE that
//! cannot be parsed or evaluated is skipped and counted, work is bounded by the section's
//! size, and nothing here panics.

use std::collections::HashMap;
use std::ops::Range;

use gimli::{
    BaseAddresses, CfaRule, CommonInformationEntry, DebugFrame, EhFrame, EndianSlice, LittleEndian,
    Register, RegisterRule, UnwindContext, UnwindOffset, UnwindSection, UnwindTableRow,
};
use object::{Architecture, Object, ObjectSection};
use probe_common::{
    UnwindRow, CFA_END, CFA_NONE, CFA_PLT, CFA_RBP, CFA_RSP, RBP_AT_CFA, RBP_SAME, RBP_UNKNOWN,
};

type Slice<'a> = EndianSlice<'a, LittleEndian>;

/// x86-64 DWARF register numbers (System V ABI, figure 3.36).
const RBP: Register = Register(6);
const RSP: Register = Register(7);
/// The return address column: the CFI's name for the caller's RIP.
const RA: Register = Register(16);

/// Most rows one FDE may produce. A real function has tens, a huge one hundreds; far more
/// means a corrupt or hostile program, and its FDE is skipped.
pub(super) const MAX_ROWS_PER_FDE: usize = 100_000;

/// Why a table could not be built. [`TableError::NoCfi`] is the ordinary case of a file
/// that ships no unwind information (callers fall back to frame pointers); the others mean
/// the file is not something the compiler can read.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    #[error("not a readable ELF file")]
    Elf(#[source] object::Error),
    #[error("unwind tables are for x86-64 files, not {0}")]
    Architecture(String),
    #[error("no call frame information (no FDE in .eh_frame or .debug_frame)")]
    NoCfi,
    #[error("cannot read {name}")]
    Section {
        name: &'static str,
        #[source]
        source: object::Error,
    },
    /// The section has FDEs but none could be compiled; the stats say why.
    #[error(
        "malformed call frame information in {}: none of its FDEs compiled ({} unreadable, \
         {} above 4 GiB, {} too long{})",
        .0.section.name(), .0.bad_fdes, .0.high_fdes, .0.long_fdes,
        if .0.truncated { ", section truncated" } else { "" }
    )]
    Malformed(Box<TableStats>),
}

/// The section a table was compiled from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CfiSection {
    /// `.eh_frame`: what the C++ runtime unwinds with, kept in stripped files.
    #[default]
    EhFrame,
    /// `.debug_frame`: the DWARF section, used only for files without `.eh_frame`.
    DebugFrame,
}

impl CfiSection {
    pub fn name(self) -> &'static str {
        match self {
            CfiSection::EhFrame => ".eh_frame",
            CfiSection::DebugFrame => ".debug_frame",
        }
    }
}

/// One file's compiled table.
#[derive(Clone, Debug, Default)]
pub struct CompiledTable {
    /// Sorted by strictly increasing `pc`, never two consecutive rows with the same rules,
    /// and the last one a [`CFA_NONE`] row (the end of the last FDE). File addresses.
    pub rows: Vec<UnwindRow>,
    /// The `[start, end)` range of every FDE that parsed (including those whose rows were
    /// left out), sorted, without duplicates. An FDE covers one function, so in a
    /// stripped file these ranges still say where functions begin and end.
    pub functions: Vec<(u64, u64)>,
    pub stats: TableStats,
}

/// What the compiler saw and did, for diagnostics and for judging CFI coverage.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TableStats {
    pub section: CfiSection,
    /// Size of the section compiled (`.debug_frame`'s when that is the one).
    pub eh_frame_bytes: usize,
    pub cies: usize,
    /// FDEs whose rows are in the table.
    pub fdes: usize,
    /// FDEs left out: the sum of the four counts below. Their code has no rule.
    pub skipped_fdes: usize,
    /// Entries gimli could not parse or whose program it could not evaluate, and entries
    /// with a length too short for their header.
    pub bad_fdes: usize,
    /// FDEs with code above `u32::MAX` (rows hold 32-bit addresses).
    pub high_fdes: usize,
    /// FDEs with more than `MAX_ROWS_PER_FDE` rows.
    pub long_fdes: usize,
    /// FDEs starting inside an earlier one's range (the earlier-starting one is kept).
    pub overlapping_fdes: usize,
    /// FDEs covering no code (length 0); not counted as skipped.
    pub empty_fdes: usize,
    /// The section walk stopped at an entry header that runs past the section's end or
    /// is invalid; entries after it were not seen.
    pub truncated: bool,
    /// The first error gimli reported, if any.
    pub first_error: Option<gimli::Error>,
    /// Non-empty rows the CFI programs of the FDEs in the table produced, before merging.
    pub cfi_rows: usize,
    /// Rows in the table.
    pub rows: usize,
    /// [`CFA_NONE`] rows in the table: gaps between FDEs, their ends, and code whose rule
    /// the kernel cannot follow.
    pub no_rule_rows: usize,
    /// How the `cfi_rows` were classified.
    pub rules: RuleCounts,
}

/// Classification of CFI rows (before merging): which rules real code uses, and why rows
/// end up without one. The return address is judged first, then RSP, then the CFA: a row
/// counts under its first unusable rule only.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RuleCounts {
    pub cfa_rsp: usize,
    pub cfa_rbp: usize,
    pub cfa_plt: usize,
    /// The return address is undefined: outermost frames.
    pub end: usize,
    /// CFA based on a register other than RSP or RBP.
    pub none_cfa_register: usize,
    /// CFA offset negative or above `u16::MAX`.
    pub none_cfa_offset: usize,
    /// CFA given by a DWARF expression other than the PLT one.
    pub none_cfa_expression: usize,
    /// Return address not at CFA - 8 (kept in a register, an expression, ...).
    pub none_ra: usize,
    /// A rule for RSP itself (the caller's RSP is not the CFA).
    pub none_rsp: usize,
    /// Rows with a CFA rule whose RBP was saved at CFA + 8n.
    pub rbp_saved: usize,
    /// Rows with a CFA rule whose RBP is undefined.
    pub rbp_undefined: usize,
    /// Rows with a CFA rule whose RBP is in a register, given by an expression, saved at
    /// an offset that is not a multiple of 8 or does not fit, ...
    pub rbp_other: usize,
}

impl RuleCounts {
    fn add(&mut self, other: &RuleCounts) {
        let RuleCounts {
            cfa_rsp,
            cfa_rbp,
            cfa_plt,
            end,
            none_cfa_register,
            none_cfa_offset,
            none_cfa_expression,
            none_ra,
            none_rsp,
            rbp_saved,
            rbp_undefined,
            rbp_other,
        } = other;
        self.cfa_rsp += cfa_rsp;
        self.cfa_rbp += cfa_rbp;
        self.cfa_plt += cfa_plt;
        self.end += end;
        self.none_cfa_register += none_cfa_register;
        self.none_cfa_offset += none_cfa_offset;
        self.none_cfa_expression += none_cfa_expression;
        self.none_ra += none_ra;
        self.none_rsp += none_rsp;
        self.rbp_saved += rbp_saved;
        self.rbp_undefined += rbp_undefined;
        self.rbp_other += rbp_other;
    }
}

/// Compiles the unwind table of an ELF file's bytes (x86-64 only).
///
/// Uses `.eh_frame`, or `.debug_frame` when `.eh_frame` is missing or gives no rows (some
/// files keep only the DWARF section). FDEs that cannot be compiled are skipped and counted
/// in the stats; [`TableError::Malformed`] only comes when there were FDEs and none
/// compiled, [`TableError::NoCfi`] when there were none. A table always has rows.
/// Compressed `.debug_frame` sections are not supported ([`TableError::Section`]).
pub fn compile_file(data: &[u8]) -> Result<CompiledTable, TableError> {
    compile(data, Evaluate::Rows)
}

/// The `[start, end)` of every FDE of an ELF file's bytes (its functions, even where the
/// symbol tables are stripped), sorted, from the section [`compile_file`] would use,
/// without evaluating any CFI program: cheap enough for the symbolizer.
pub fn function_ranges(data: &[u8]) -> Result<Vec<(u64, u64)>, TableError> {
    compile(data, Evaluate::FunctionsOnly).map(|table| table.functions)
}

/// How much of each FDE [`compile_section`] reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Evaluate {
    /// Its range and its rows.
    Rows,
    /// Only its range.
    FunctionsOnly,
}

fn compile(data: &[u8], evaluate: Evaluate) -> Result<CompiledTable, TableError> {
    let usable = |table: &CompiledTable| match evaluate {
        Evaluate::Rows => !table.rows.is_empty(),
        Evaluate::FunctionsOnly => !table.functions.is_empty(),
    };
    let file = object::File::parse(data).map_err(TableError::Elf)?;
    if file.architecture() != Architecture::X86_64 || !file.is_little_endian() {
        return Err(TableError::Architecture(format!(
            "{:?}",
            file.architecture()
        )));
    }
    // The stats of a section whose FDEs all failed, for the error.
    let mut failed = None;
    if let Some(eh_frame) = file.section_by_name(".eh_frame") {
        let bytes = eh_frame.data().map_err(|source| TableError::Section {
            name: ".eh_frame",
            source,
        })?;
        // `.eh_frame` pointers are usually PC-relative (relative to where the pointer
        // itself is), sometimes relative to `.text` or the GOT: gimli needs the section
        // addresses to decode them into the file's own addresses.
        let mut bases = BaseAddresses::default().set_eh_frame(eh_frame.address());
        let address_of = |name: &str| file.section_by_name(name).map(|s| s.address());
        if let Some(address) = address_of(".eh_frame_hdr") {
            bases = bases.set_eh_frame_hdr(address);
        }
        if let Some(address) = address_of(".text") {
            bases = bases.set_text(address);
        }
        if let Some(address) = address_of(".got") {
            bases = bases.set_got(address);
        }
        let mut section = EhFrame::new(bytes, LittleEndian);
        section.set_address_size(8);
        let table = compile_section(&section, bytes, CfiSection::EhFrame, &bases, evaluate);
        if usable(&table) {
            return Ok(table);
        }
        note_failure(&mut failed, table.stats);
    }
    if let Some(debug_frame) = file.section_by_name(".debug_frame") {
        let bytes = debug_frame
            .uncompressed_data()
            .map_err(|source| TableError::Section {
                name: ".debug_frame",
                source,
            })?;
        let mut section = DebugFrame::new(&bytes, LittleEndian);
        section.set_address_size(8);
        // `.debug_frame` addresses are absolute: no bases needed.
        let bases = BaseAddresses::default();
        let table = compile_section(&section, &bytes, CfiSection::DebugFrame, &bases, evaluate);
        if usable(&table) {
            return Ok(table);
        }
        note_failure(&mut failed, table.stats);
    }
    match failed {
        Some(stats) => Err(TableError::Malformed(Box::new(stats))),
        None => Err(TableError::NoCfi),
    }
}

/// Keeps the stats of a section that gave no rows if it had FDEs that failed (rather than
/// none, or only empty ones); the first such section wins.
fn note_failure(failed: &mut Option<TableStats>, stats: TableStats) {
    if failed.is_none() && (stats.skipped_fdes > 0 || stats.truncated) {
        *failed = Some(stats);
    }
}

/// What a section entry is, read from its length and CIE id fields.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Entry {
    Cie,
    Fde,
    /// A zero length: the terminator `.eh_frame` ends with (or padding).
    Zero,
    /// Length too short to hold a CIE id: skipped.
    Short,
}

fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let field = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes(field.try_into().ok()?))
}

fn read_u64(bytes: &[u8], at: usize) -> Option<u64> {
    let field = bytes.get(at..at.checked_add(8)?)?;
    Some(u64::from_le_bytes(field.try_into().ok()?))
}

/// The entry at `offset` and the offset of the next one, or `None` when the header is
/// invalid or the entry runs past the section. Walking entries this way, rather than with
/// gimli's iterator (which stops at the first error), lets one bad FDE cost only itself.
pub(super) fn entry_at(bytes: &[u8], offset: usize, kind: CfiSection) -> Option<(Entry, usize)> {
    let (length, header, id_size) = match read_u32(bytes, offset)? {
        0 => return Some((Entry::Zero, offset.checked_add(4)?)),
        // 64-bit DWARF: the real length follows. `.eh_frame` keeps a 4-byte CIE pointer.
        0xffff_ffff => {
            let id_size = match kind {
                CfiSection::EhFrame => 4,
                CfiSection::DebugFrame => 8,
            };
            (read_u64(bytes, offset.checked_add(4)?)?, 12, id_size)
        }
        // Reserved values.
        0xffff_fff0.. => return None,
        length => (u64::from(length), 4, 4),
    };
    let id_at = offset.checked_add(header)?;
    let next = id_at.checked_add(usize::try_from(length).ok()?)?;
    if next > bytes.len() {
        return None;
    }
    if length < id_size as u64 {
        return Some((Entry::Short, next));
    }
    let is_cie = match (kind, id_size) {
        (CfiSection::EhFrame, _) => read_u32(bytes, id_at)? == 0,
        (CfiSection::DebugFrame, 4) => read_u32(bytes, id_at)? == u32::MAX,
        (CfiSection::DebugFrame, _) => read_u64(bytes, id_at)? == u64::MAX,
    };
    Some((if is_cie { Entry::Cie } else { Entry::Fde }, next))
}

/// One compiled FDE: its range and its rows (in `rows` of [`compile_section`]).
struct Span {
    start: u64,
    end: u64,
    rows: Range<usize>,
    counts: RuleCounts,
}

/// Why one FDE's rows were left out.
enum Skip {
    Bad(gimli::Error),
    /// Rows going backwards (an address advance that wrapped).
    Disordered,
    Long,
}

/// Compiles every FDE of `section` (whose bytes are `bytes`) into a table. Never fails:
/// what cannot be compiled is counted in the stats, which the caller judges.
pub(super) fn compile_section<'a, S>(
    section: &S,
    bytes: &'a [u8],
    kind: CfiSection,
    bases: &BaseAddresses,
    evaluate: Evaluate,
) -> CompiledTable
where
    S: UnwindSection<Slice<'a>>,
{
    let mut stats = TableStats {
        section: kind,
        eh_frame_bytes: bytes.len(),
        ..TableStats::default()
    };
    let mut functions = Vec::new();
    let mut rows = Vec::new();
    let mut spans = Vec::new();
    // FDEs share a handful of CIEs: parse each once.
    let mut cies: HashMap<usize, gimli::Result<CommonInformationEntry<Slice<'a>>>> = HashMap::new();
    let mut get_cie = |section: &S, bases: &BaseAddresses, offset: S::Offset| {
        cies.entry(UnwindOffset::into(offset))
            .or_insert_with(|| section.cie_from_offset(bases, offset))
            .clone()
    };
    let mut ctx = UnwindContext::new();

    let mut offset = 0;
    // Each step advances by at least 4 bytes: the walk ends.
    while offset < bytes.len() {
        let Some((entry, next)) = entry_at(bytes, offset, kind) else {
            stats.truncated = true;
            break;
        };
        let at = offset;
        offset = next;
        match entry {
            // Zero lengths: the terminator, or padding. Entries may follow one in the
            // middle of a section (as `ld -r` output can have), so keep walking.
            Entry::Zero => continue,
            Entry::Cie => {
                stats.cies += 1;
                continue;
            }
            Entry::Short => {
                stats.bad_fdes += 1;
                continue;
            }
            Entry::Fde => {}
        }
        let fde = match section
            .partial_fde_from_offset(bases, S::Offset::from(at))
            .and_then(|partial| partial.parse(&mut get_cie))
        {
            Ok(fde) => fde,
            Err(err) => {
                note_bad(&mut stats, err);
                continue;
            }
        };
        let start = fde.initial_address();
        let Some(end) = start.checked_add(fde.len()) else {
            note_bad(&mut stats, gimli::Error::AddressOverflow);
            continue;
        };
        if start == end {
            stats.empty_fdes += 1;
            continue;
        }
        functions.push((start, end));
        if evaluate == Evaluate::FunctionsOnly {
            continue;
        }
        // Rows hold 32-bit addresses, and the end of the FDE needs a row too.
        if end > u64::from(u32::MAX) {
            stats.high_fdes += 1;
            continue;
        }
        let mark = rows.len();
        let mut counts = RuleCounts::default();
        match fde_rows(section, bases, &mut ctx, &fde, &mut rows, &mut counts) {
            Ok(()) if rows.len() > mark => spans.push(Span {
                start,
                end,
                rows: mark..rows.len(),
                counts,
            }),
            // Every row was empty (a program that only moved the location past the end).
            Ok(()) => stats.empty_fdes += 1,
            Err(skip) => {
                rows.truncate(mark);
                match skip {
                    Skip::Bad(err) => note_bad(&mut stats, err),
                    Skip::Disordered => stats.bad_fdes += 1,
                    Skip::Long => stats.long_fdes += 1,
                }
            }
        }
    }

    // Stable: FDEs starting at the same address stay in section order.
    spans.sort_by_key(|span| span.start);
    let mut table = Vec::with_capacity(rows.len() + spans.len() + 1);
    let mut covered_end: Option<u64> = None;
    for span in &spans {
        if let Some(end) = covered_end {
            if span.start < end {
                stats.overlapping_fdes += 1;
                continue;
            }
            if span.start > end {
                push_merged(&mut table, no_rule(end));
            }
        }
        for row in &rows[span.rows.clone()] {
            push_merged(&mut table, *row);
        }
        covered_end = Some(span.end);
        stats.fdes += 1;
        stats.cfi_rows += span.rows.len();
        stats.rules.add(&span.counts);
    }
    if let Some(end) = covered_end {
        push_merged(&mut table, no_rule(end));
    }
    stats.skipped_fdes =
        stats.bad_fdes + stats.high_fdes + stats.long_fdes + stats.overlapping_fdes;
    stats.rows = table.len();
    stats.no_rule_rows = table.iter().filter(|r| r.cfa_rule() == CFA_NONE).count();

    functions.sort_unstable();
    functions.dedup();
    CompiledTable {
        rows: table,
        functions,
        stats,
    }
}

fn note_bad(stats: &mut TableStats, err: gimli::Error) {
    stats.bad_fdes += 1;
    stats.first_error.get_or_insert(err);
}

/// A [`CFA_NONE`] row at `pc`, which callers checked fits 32 bits.
fn no_rule(pc: u64) -> UnwindRow {
    UnwindRow {
        pc: pc as u32,
        ..UnwindRow::default()
    }
}

/// Appends `row` unless the last row already has the same rules (it then covers `row`'s
/// addresses too). `row.pc` must be above the last row's.
fn push_merged(table: &mut Vec<UnwindRow>, row: UnwindRow) {
    let same_rules = |last: &UnwindRow| {
        (last.cfa_offset, last.rbp_offset, last.rules)
            == (row.cfa_offset, row.rbp_offset, row.rules)
    };
    if !table.last().is_some_and(same_rules) {
        table.push(row);
    }
}

/// Evaluates one FDE's program and appends its rows, clipped to the FDE's range (which the
/// caller checked lies below `u32::MAX`), non-empty and in increasing order.
fn fde_rows<'a, S>(
    section: &S,
    bases: &BaseAddresses,
    ctx: &mut UnwindContext<usize>,
    fde: &gimli::FrameDescriptionEntry<Slice<'a>>,
    rows: &mut Vec<UnwindRow>,
    counts: &mut RuleCounts,
) -> Result<(), Skip>
where
    S: UnwindSection<Slice<'a>>,
{
    let start = fde.initial_address();
    let end = start.saturating_add(fde.len());
    let mut table = fde.rows(section, bases, ctx).map_err(Skip::Bad)?;
    let mut previous_end = start;
    let mut produced = 0usize;
    while let Some(row) = table.next_row().map_err(Skip::Bad)? {
        produced += 1;
        if produced > MAX_ROWS_PER_FDE {
            return Err(Skip::Long);
        }
        let row_start = row.start_address();
        let row_end = row.end_address().min(end);
        if row_start < previous_end {
            return Err(Skip::Disordered);
        }
        if row_start >= row_end {
            // Empty (an advance by 0, or past the FDE's end).
            continue;
        }
        previous_end = row_end;
        let Ok(pc) = u32::try_from(row_start) else {
            return Err(Skip::Disordered);
        };
        rows.push(UnwindRow {
            pc,
            ..row_rules(row, section, counts)
        });
    }
    Ok(())
}

/// The kernel's rules for one CFI row (`pc` left 0).
fn row_rules<'a, S>(row: &UnwindTableRow<usize>, section: &S, counts: &mut RuleCounts) -> UnwindRow
where
    S: UnwindSection<Slice<'a>>,
{
    let none = UnwindRow::default();
    match row.register(RA) {
        // No caller: the stack is complete (`_start`, a new thread's first frame).
        Some(RegisterRule::Undefined) => {
            counts.end += 1;
            return UnwindRow {
                rules: CFA_END,
                ..none
            };
        }
        // x86-64 `call` pushes the return address just below the caller's stack pointer,
        // which is the CFA: every ordinary frame says so.
        Some(RegisterRule::Offset(-8)) => {}
        _ => {
            counts.none_ra += 1;
            return none;
        }
    }
    // The kernel takes the caller's RSP to be the CFA, as the x86-64 ABI defines it; CFI
    // that says otherwise (glibc's `__longjmp` restores RSP from a register) is code the
    // kernel cannot step through.
    if row.register(RSP).is_some() {
        counts.none_rsp += 1;
        return none;
    }
    let (cfa, cfa_offset) = match row.cfa() {
        CfaRule::RegisterAndOffset { register, offset } => {
            let cfa = match *register {
                RSP => CFA_RSP,
                RBP => CFA_RBP,
                _ => {
                    counts.none_cfa_register += 1;
                    return none;
                }
            };
            let Ok(offset) = u16::try_from(*offset) else {
                counts.none_cfa_offset += 1;
                return none;
            };
            (cfa, offset)
        }
        CfaRule::Expression(expression) => {
            let threshold = expression
                .get(section)
                .ok()
                .and_then(|e| plt_threshold(e.0.slice()));
            let Some(threshold) = threshold else {
                counts.none_cfa_expression += 1;
                return none;
            };
            (CFA_PLT, threshold)
        }
    };
    match cfa {
        CFA_RSP => counts.cfa_rsp += 1,
        CFA_RBP => counts.cfa_rbp += 1,
        _ => counts.cfa_plt += 1,
    }
    let (rbp, rbp_offset) = match row.register(RBP) {
        // No rule: the callee-saved register is untouched.
        None | Some(RegisterRule::SameValue) => (RBP_SAME, 0),
        Some(RegisterRule::Offset(offset)) => match rbp_slot(offset) {
            Some(slot) => {
                counts.rbp_saved += 1;
                (RBP_AT_CFA, slot)
            }
            None => {
                counts.rbp_other += 1;
                (RBP_UNKNOWN, 0)
            }
        },
        Some(RegisterRule::Undefined) => {
            counts.rbp_undefined += 1;
            (RBP_UNKNOWN, 0)
        }
        Some(_) => {
            counts.rbp_other += 1;
            (RBP_UNKNOWN, 0)
        }
    };
    UnwindRow {
        pc: 0,
        cfa_offset,
        rbp_offset,
        rules: cfa | (rbp << 4),
    }
}

/// `offset` (bytes from the CFA) in 8-byte words, if it is whole words and fits an `i8`.
fn rbp_slot(offset: i64) -> Option<i8> {
    if offset % 8 != 0 {
        return None;
    }
    i8::try_from(offset / 8).ok()
}

/// The threshold N of the CFA expression GCC and binutils emit for `.plt` entries:
/// `DW_OP_breg7 (rsp) 8; DW_OP_breg16 (rip) 0; DW_OP_lit15; DW_OP_and; DW_OP_litN;
/// DW_OP_ge; DW_OP_lit3; DW_OP_shl; DW_OP_plus`, that is CFA = RSP + 8, plus 8 once the
/// entry's `push` has run (at byte N or later of the 16-byte entry). N is 11 for the
/// classic lazy PLT, 10 for some variants. Matched byte for byte: assemblers emit exactly
/// this encoding, and anything else is a general expression the kernel cannot run.
pub(super) fn plt_threshold(expression: &[u8]) -> Option<u16> {
    use gimli::constants as dw;
    const BREG7: u8 = dw::DW_OP_breg7.0;
    const BREG16: u8 = dw::DW_OP_breg16.0;
    const LIT0: u8 = dw::DW_OP_lit0.0;
    const LIT3: u8 = dw::DW_OP_lit3.0;
    const LIT10: u8 = dw::DW_OP_lit10.0;
    const LIT11: u8 = dw::DW_OP_lit11.0;
    const LIT15: u8 = dw::DW_OP_lit15.0;
    const AND: u8 = dw::DW_OP_and.0;
    const GE: u8 = dw::DW_OP_ge.0;
    const SHL: u8 = dw::DW_OP_shl.0;
    const PLUS: u8 = dw::DW_OP_plus.0;
    match *expression {
        [BREG7, 8, BREG16, 0, LIT15, AND, n @ (LIT10 | LIT11), GE, LIT3, SHL, PLUS] => {
            Some(u16::from(n - LIT0))
        }
        _ => None,
    }
}
