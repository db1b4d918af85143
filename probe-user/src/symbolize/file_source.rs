//! Which ELF file blazesym reads for the names in one mapped file, and whether with DWARF.
//!
//! Line numbers come only from DWARF a binary carries itself. Distributions ship the DWARF
//! of their libraries in separate debug files (`/usr/lib/debug/.build-id/..`, from packages
//! such as libc6-dbg) with compressed sections, and inflating libc's cost more CPU than all
//! the rest of the report. Those files also hold the full symbol table, which names the
//! static functions a stripped library's `.dynsym` lacks (`__libc_start_call_main`,
//! `start_thread`), so probe reads that table there and nothing else.

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use crate::elf::{ElfFile, LoadSegment, SectionHeader, Sections, SHT_SYMTAB};

/// Where separate debug files are installed.
const DEBUG_ROOT: &str = "/usr/lib/debug";
/// The sections whose presence means a file carries its own DWARF.
const DWARF_SECTIONS: [&str; 2] = [".debug_info", ".debug_line"];

/// What blazesym reads to name the code of one file.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum FileSource {
    /// The file itself, by file offset; with its DWARF (`dwarf`) when it carries some.
    Itself { dwarf: bool },
    /// The symbol table of a separate debug file, by virtual address. Its segments hold no
    /// file contents (their offsets are 0), so file offsets into the original are translated
    /// through the original's `segments`.
    DebugFile {
        path: PathBuf,
        segments: Vec<LoadSegment>,
    },
}

/// What to read for the names in the ELF file at `path`.
pub(super) fn file_source(path: &Path) -> FileSource {
    // Not something this reader knows (not ELF64, unreadable): blazesym does what it can,
    // as it always did.
    let Ok(file) = File::open(path) else {
        return FileSource::Itself { dwarf: true };
    };
    let Ok(elf) = ElfFile::new(&file) else {
        return FileSource::Itself { dwarf: true };
    };
    let sections = elf.sections().unwrap_or_default();
    let has_contents = |name: &str| sections.find(name).is_some_and(SectionHeader::has_contents);
    if DWARF_SECTIONS.into_iter().any(has_contents) {
        return FileSource::Itself { dwarf: true };
    }
    // An unstripped file's symbol table is the one a debug file would have.
    if has_symbol_table(&sections) {
        return FileSource::Itself { dwarf: false };
    }
    debug_file_source(&elf, Path::new(DEBUG_ROOT)).unwrap_or(FileSource::Itself { dwarf: false })
}

/// The separate debug file of `elf` under `root`, found by build-id, if it is usable.
fn debug_file_source(elf: &ElfFile<'_>, root: &Path) -> Option<FileSource> {
    let build_id = elf.build_id().ok()??;
    let path = build_id_path(root, &build_id)?;
    if !is_symbol_file_of(&path, &build_id) {
        return None;
    }
    let segments = elf.load_segments().ok()?;
    Some(FileSource::DebugFile { path, segments })
}

/// `ROOT/.build-id/ab/cdef….debug` for build-id `abcdef…`, the layout gdb and the
/// distributions use.
fn build_id_path(root: &Path, build_id: &[u8]) -> Option<PathBuf> {
    let (first, rest) = build_id.split_first()?;
    if rest.is_empty() {
        return None;
    }
    let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let file = format!("{}.debug", hex(rest));
    Some(root.join(".build-id").join(hex(&[*first])).join(file))
}

/// Whether `path` is a regular ELF file with `build_id` and a symbol table.
fn is_symbol_file_of(path: &Path, build_id: &[u8]) -> bool {
    // Checked before opening: opening a FIFO would block.
    if !fs::metadata(path).is_ok_and(|meta| meta.is_file()) {
        return false;
    }
    let Ok(file) = File::open(path) else {
        return false;
    };
    let Ok(elf) = ElfFile::new(&file) else {
        return false;
    };
    let same_build = elf.build_id().ok().flatten().as_deref() == Some(build_id);
    same_build && elf.sections().is_ok_and(|s| has_symbol_table(&s))
}

fn has_symbol_table(sections: &Sections) -> bool {
    sections
        .find(".symtab")
        .is_some_and(|symtab| symtab.kind == SHT_SYMTAB && symtab.has_contents())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_id_paths() {
        let root = Path::new("/usr/lib/debug");
        let path = build_id_path(root, &[0x93, 0xac, 0x61, 0x0e]).expect("path");
        assert_eq!(path, Path::new("/usr/lib/debug/.build-id/93/ac610e.debug"));
        assert_eq!(build_id_path(root, &[0x93]), None);
        assert_eq!(build_id_path(root, &[]), None);
    }

    #[test]
    fn own_dwarf_is_read_where_present() {
        // Test binaries are built with debug info by the dev and test profiles.
        let exe = std::env::current_exe().expect("current_exe");
        let file = File::open(&exe).expect("open");
        let sections = ElfFile::new(&file)
            .expect("elf")
            .sections()
            .expect("sections");
        let expected = DWARF_SECTIONS
            .into_iter()
            .any(|name| sections.find(name).is_some_and(SectionHeader::has_contents));
        assert_eq!(file_source(&exe), FileSource::Itself { dwarf: expected });
    }

    #[test]
    fn unknown_files_are_left_to_blazesym() {
        let not_elf = Path::new("/proc/self/status");
        assert_eq!(file_source(not_elf), FileSource::Itself { dwarf: true });
        let missing = Path::new("/nonexistent/probe-test");
        assert_eq!(file_source(missing), FileSource::Itself { dwarf: true });
    }

    #[test]
    fn stripped_libc_uses_its_debug_file_when_installed() {
        let libc = crate::elf::mapped_libc_path();
        let file = File::open(&libc).expect("open libc");
        let elf = ElfFile::new(&file).expect("elf");
        let build_id = elf.build_id().expect("notes").expect("build-id");
        let debug = build_id_path(Path::new(DEBUG_ROOT), &build_id).expect("path");
        let source = file_source(&libc);
        if !debug.is_file() {
            println!("skipped: no debug file for {}", libc.display());
            assert_eq!(source, FileSource::Itself { dwarf: false });
            return;
        }
        let segments = elf.load_segments().expect("segments");
        assert_eq!(
            source,
            FileSource::DebugFile {
                path: debug,
                segments
            }
        );
    }

    #[test]
    fn a_debug_file_must_have_the_same_build_id() {
        let exe = std::env::current_exe().expect("current_exe");
        let file = File::open(&exe).expect("open");
        let Some(build_id) = ElfFile::new(&file).expect("elf").build_id().expect("notes") else {
            println!("skipped: the test binary has no build-id");
            return;
        };
        assert!(is_symbol_file_of(&exe, &build_id));
        let mut other = build_id.clone();
        other[0] ^= 0xff;
        assert!(!is_symbol_file_of(&exe, &other));
        assert!(!is_symbol_file_of(Path::new("/proc/self"), &build_id));
    }
}
