//! Unwind tables: each executable file's call frame information (CFI, from `.eh_frame`, or
//! `.debug_frame` when a file has no `.eh_frame`) compiled into the compact rows the kernel
//! unwinder reads ([`UnwindRow`], defined with the rest of the format in `probe-common`).
//!
//! Most distribution code is built without frame pointers, so following RBP from a sample
//! loses every frame above the first function that does not keep one. The CFI the compiler
//! emits for C++ exceptions describes, for every instruction, where the caller's frame is.
//! DWARF states it as a program per function; the kernel cannot run programs, so userspace
//! evaluates them here once per file into one row per address range, keeping only what
//! x86-64 needs to step a frame: how to find the canonical frame address (CFA), that the
//! return address is at CFA - 8, and where the caller's RBP was saved. Anything else the CFI
//! says (signal frames, registers kept in other registers, general DWARF expressions)
//! becomes a [`CFA_NONE`](probe_common::CFA_NONE) row: the kernel stops there rather than guess.
//!
//! [`compile_file`] builds a file's table; [`page_index`] builds the per-page index the
//! kernel searches with; [`lookup`] is the kernel's search, done in userspace, so that the
//! tests pin the semantics both sides rely on (and for a userspace unwinder).
//!
//! Only x86-64 files are compiled: the register numbers and the return-address rule are the
//! x86-64 ABI's.

mod compile;
pub mod walk;

#[cfg(test)]
mod tests;

pub use compile::{
    compile_file, function_ranges, CfiSection, CompiledTable, RuleCounts, TableError, TableStats,
};
pub use probe_common::UnwindRow;

use probe_common::{UNWIND_PAGE_SEARCH_STEPS, UNWIND_PAGE_SHIFT};

/// The page index of sorted `rows`, as the kernel expects it (see `UnwindFile` in
/// `probe-common`): `(base_pc, entries)`.
///
/// `base_pc` is the first row's `pc` rounded down to a page (`1 << UNWIND_PAGE_SHIFT`).
/// Entry `p` is the index of the last row whose `pc` is at most `base_pc + (p << SHIFT)`,
/// or 0 when there is none (only possible in page 0, before the first row). There is one
/// entry per page up to the page of the last row, plus a final entry, `rows.len() - 1`, so
/// that the rows of page `p` are always `entries[p]..=entries[p + 1]`.
///
/// `rows` must be sorted by `pc` (as [`compile_file`] returns them). No rows give
/// `(0, [])`, which [`lookup`] treats as an empty table.
pub fn page_index(rows: &[UnwindRow]) -> (u32, Vec<u32>) {
    let (Some(first), Some(last)) = (rows.first(), rows.last()) else {
        return (0, Vec::new());
    };
    let page_mask = (1u32 << UNWIND_PAGE_SHIFT) - 1;
    let base_pc = first.pc & !page_mask;
    // Pages up to and including the last row's page, plus the final entry: at most
    // 2^20 + 1 for 32-bit addresses and 4 KiB pages. (Saturating: unsorted rows give a
    // useless index, not a panic.)
    let last_page = (last.pc.saturating_sub(base_pc) >> UNWIND_PAGE_SHIFT) as usize;
    let len = last_page + 2;
    let mut entries = Vec::with_capacity(len);
    let mut row = 0usize;
    for page in 0..len {
        // u64: the final entry's address can pass u32::MAX.
        let page_pc = u64::from(base_pc) + ((page as u64) << UNWIND_PAGE_SHIFT);
        while row + 1 < rows.len() && u64::from(rows[row + 1].pc) <= page_pc {
            row += 1;
        }
        // `row` is the last row at or below page_pc, or 0 if even row 0 is above it.
        entries.push(row as u32);
    }
    // The rows of the last page run to the end of the table.
    if let Some(final_entry) = entries.last_mut() {
        *final_entry = (rows.len() - 1) as u32;
    }
    (base_pc, entries)
}

/// The row that applies at `pc` (a file address), searched as the kernel does: the page of
/// `pc` gives the rows `pages[p]..=pages[p + 1]`, and a binary search of at most
/// `UNWIND_PAGE_SEARCH_STEPS` steps finds the last of them whose `pc` is at most `pc`.
///
/// `None` when `pc` is below `base_pc`, at or past the final page entry, before the first
/// row, or in a page with more rows than the kernel's search covers (the kernel stops with
/// `UNWIND_STOP_SEARCH` there). A `pc` past the last row but inside its page gets the last
/// row, which [`compile_file`] always makes a [`CFA_NONE`](probe_common::CFA_NONE) row.
pub fn lookup<'a>(
    rows: &'a [UnwindRow],
    pages: &[u32],
    base_pc: u32,
    pc: u64,
) -> Option<&'a UnwindRow> {
    let offset = pc.checked_sub(u64::from(base_pc))?;
    let page = usize::try_from(offset >> UNWIND_PAGE_SHIFT).ok()?;
    let mut lo = *pages.get(page)? as usize;
    let mut hi = *pages.get(page.checked_add(1)?)? as usize;
    if lo > hi || hi >= rows.len() {
        return None;
    }
    if hi - lo + 1 > 1usize << UNWIND_PAGE_SEARCH_STEPS {
        return None;
    }
    if u64::from(rows[lo].pc) > pc {
        return None;
    }
    // Invariant: rows[lo].pc <= pc, and the answer is in lo..=hi. Each step halves the
    // range (rounding the midpoint up so that `lo = mid` always advances), so
    // UNWIND_PAGE_SEARCH_STEPS steps cover 2^steps rows: the kernel's bounded loop.
    for _ in 0..UNWIND_PAGE_SEARCH_STEPS {
        if lo >= hi {
            break;
        }
        let mid = lo + (hi - lo).div_ceil(2);
        if u64::from(rows[mid].pc) <= pc {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    rows.get(lo)
}
