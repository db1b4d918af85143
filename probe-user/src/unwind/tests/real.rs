//! Tables of real files: libc, CPython 3.12, and a C program compiled here, checked row by
//! row against binutils' own reading of the CFI (`readelf --debug-dump=frames-interp`);
//! mutated libc CFI; and the build-time measurement.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use object::{Object, ObjectSection, ObjectSymbol};

use super::*;

impl Indexed {
    /// The row at `pc`, which must exist.
    fn rule(&self, pc: u64) -> UnwindRow {
        *self.at(pc).unwrap_or_else(|| panic!("no row at {pc:#x}"))
    }

    fn rows_in(&self, start: u64, end: u64) -> impl Iterator<Item = &UnwindRow> {
        self.table
            .rows
            .iter()
            .filter(move |r| (start..end).contains(&u64::from(r.pc)))
    }
}

/// Address of a defined symbol (static table first, then dynamic).
fn symbol(data: &[u8], name: &str) -> u64 {
    let file = object::File::parse(data).unwrap();
    file.symbols()
        .chain(file.dynamic_symbols())
        .find(|s| s.is_definition() && s.name() == Ok(name))
        .unwrap_or_else(|| panic!("no symbol {name}"))
        .address()
}

fn section_range(data: &[u8], name: &str) -> Option<(u64, u64)> {
    let file = object::File::parse(data).unwrap();
    let section = file.section_by_name(name)?;
    Some((section.address(), section.address() + section.size()))
}

/// pyenv's newest CPython 3.12 shared library (`$PYENV_ROOT`, else `~/.pyenv`), which
/// every machine probe is developed and benchmarked on has.
fn libpython312() -> PathBuf {
    let root = std::env::var_os("PYENV_ROOT")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".pyenv")))
        .expect("PYENV_ROOT or HOME");
    let versions = root.join("versions");
    let mut found: Vec<PathBuf> = std::fs::read_dir(&versions)
        .unwrap_or_else(|err| panic!("read {}: {err}", versions.display()))
        .filter_map(|entry| entry.ok())
        .filter(|entry| entry.file_name().to_string_lossy().starts_with("3.12."))
        .map(|entry| entry.path().join("lib/libpython3.12.so.1.0"))
        .filter(|path| path.exists())
        .collect();
    found.sort();
    found
        .pop()
        .unwrap_or_else(|| panic!("no {}/3.12.*/lib/libpython3.12.so.1.0", versions.display()))
}

/// Every function starts in the x86-64 entry state: CFA = RSP + 8 (the return address
/// just pushed), RBP untouched.
fn assert_entry_state(table: &Indexed, data: &[u8], names: &[&str]) {
    for name in names {
        let address = symbol(data, name);
        assert_eq!(
            table.rule(address),
            UnwindRow {
                pc: table.rule(address).pc,
                ..rsp(0, 8)
            },
            "{name} at {address:#x}"
        );
    }
}

/// `.plt`'s FDE: CFA = RSP + 16 and + 24 in PLT0, then the PLT expression (threshold 11,
/// the classic lazy PLT) for the entries.
fn assert_plt(table: &Indexed, data: &[u8]) {
    let (plt, plt_end) = section_range(data, ".plt").expect(".plt");
    assert_eq!(table.rule(plt).cfa_rule(), CFA_RSP);
    assert_eq!(table.rule(plt).cfa_offset, 16);
    for entry in (plt + 16..plt_end).step_by(16) {
        let rule = table.rule(entry);
        assert_eq!(
            (rule.cfa_rule(), rule.cfa_offset, rule.rbp_rule()),
            (CFA_PLT, 11, RBP_SAME),
            "PLT entry at {entry:#x}"
        );
    }
}

// ---- readelf, the peer ------------------------------------------------------------------

/// One row of readelf's interpreted CFI table: its address, and each column's cell
/// ("CFA": `rsp+8`, `exp`; registers: `c-16`, `u`, `s`, ...).
#[derive(Clone, Debug)]
struct PeerRow {
    loc: u64,
    cells: HashMap<String, String>,
}

#[derive(Debug)]
struct PeerFde {
    start: u64,
    end: u64,
    rows: Vec<PeerRow>,
}

/// The FDEs of `path`'s `section` as readelf interprets them. readelf prints no table for
/// an FDE without instructions: its CIE's initial row applies, moved to the FDE's start.
fn readelf_fdes(path: &Path, section: CfiSection) -> Vec<PeerFde> {
    let output = Command::new("readelf")
        .arg("--debug-dump=frames-interp")
        .arg(path)
        .output()
        .expect("run readelf (binutils)");
    // readelf exits 1 for libc without saying why (its separate debug file is missing):
    // judge by what it printed.
    let text = String::from_utf8(output.stdout).unwrap();
    let heading = format!("Contents of the {} section", section.name());
    assert!(
        text.contains(&heading),
        "readelf {}: {}",
        path.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    let hex = |s: &str| u64::from_str_radix(s, 16).ok();

    let mut cie_rows: HashMap<String, Vec<PeerRow>> = HashMap::new();
    // FDEs with their CIE's offset.
    let mut fdes: Vec<(PeerFde, String)> = Vec::new();
    let mut in_cie: Option<String> = None;
    let mut columns: Vec<String> = Vec::new();
    let mut in_section = false;
    for line in text.lines() {
        if line.starts_with("Contents of the") {
            in_section = line.starts_with(&heading);
        }
        if !in_section {
            continue;
        }
        // A register rule reads `r9 (r9)`: one cell, two words.
        let mut tokens: Vec<String> = Vec::new();
        for word in line.split_whitespace() {
            match tokens.last_mut() {
                Some(last) if word.starts_with('(') => {
                    last.push(' ');
                    last.push_str(word);
                }
                _ => tokens.push(word.to_string()),
            }
        }
        let tokens: Vec<&str> = tokens.iter().map(String::as_str).collect();
        match tokens.as_slice() {
            [offset, _, _, "CIE", ..] => {
                in_cie = Some(offset.to_string());
                columns.clear();
            }
            [_, _, _, "FDE", cie, range, ..] => {
                let cie = cie.strip_prefix("cie=").unwrap().to_string();
                let (start, end) = range.strip_prefix("pc=").unwrap().split_once("..").unwrap();
                let fde = PeerFde {
                    start: hex(start).unwrap(),
                    end: hex(end).unwrap(),
                    rows: Vec::new(),
                };
                fdes.push((fde, cie));
                in_cie = None;
                columns.clear();
            }
            ["LOC", ..] => columns = tokens.iter().map(|t| t.to_string()).collect(),
            [loc, ..] if !columns.is_empty() && hex(loc).is_some() => {
                assert_eq!(tokens.len(), columns.len(), "readelf row {line:?}");
                let row = PeerRow {
                    loc: hex(loc).unwrap(),
                    cells: columns[1..]
                        .iter()
                        .cloned()
                        .zip(tokens[1..].iter().map(|t| t.to_string()))
                        .collect(),
                };
                match &in_cie {
                    Some(cie) => cie_rows.entry(cie.clone()).or_default().push(row),
                    None => fdes.last_mut().expect("row in an FDE").0.rows.push(row),
                }
            }
            [] => columns.clear(),
            _ => {}
        }
    }
    fdes.into_iter()
        .map(|(mut fde, cie)| {
            if fde.rows.is_empty() {
                let mut initial = cie_rows[&cie][0].clone();
                initial.loc = fde.start;
                fde.rows.push(initial);
            }
            fde
        })
        .collect()
}

/// Checks our row at `pc` against readelf's cells for it.
fn assert_matches_peer(got: UnwindRow, cells: &HashMap<String, String>, pc: u64, plt: (u64, u64)) {
    let context = || format!("at {pc:#x}: ours {got:?}, readelf {cells:?}");
    let cell = |name: &str| cells.get(name).map(String::as_str);
    match cell("ra") {
        Some("u") => {
            assert_eq!(got.cfa_rule(), CFA_END, "{}", context());
            return;
        }
        Some("c-8") => {}
        _ => {
            assert_eq!(got.cfa_rule(), CFA_NONE, "{}", context());
            return;
        }
    }
    if !matches!(cell("rsp"), None | Some("u")) {
        assert_eq!(got.cfa_rule(), CFA_NONE, "{}", context());
        return;
    }
    let cfa = cell("CFA").unwrap();
    let register_offset = cfa
        .split_once('+')
        .and_then(|(register, offset)| Some((register, offset.parse::<u64>().ok()?)));
    let (cfa_rule, cfa_offset) = match register_offset {
        Some(("rsp", offset)) if offset <= u64::from(u16::MAX) => (CFA_RSP, offset as u16),
        Some(("rbp", offset)) if offset <= u64::from(u16::MAX) => (CFA_RBP, offset as u16),
        // readelf does not print expressions here: ours must be the PLT rule in `.plt`,
        // and no rule anywhere else (the arm below).
        _ if cfa == "exp" && (plt.0..plt.1).contains(&pc) => {
            assert_eq!(got.cfa_rule(), CFA_PLT, "{}", context());
            assert!(matches!(got.cfa_offset, 10 | 11), "{}", context());
            (CFA_PLT, got.cfa_offset)
        }
        _ => {
            assert_eq!(got.cfa_rule(), CFA_NONE, "{}", context());
            return;
        }
    };
    assert_eq!(
        (got.cfa_rule(), got.cfa_offset),
        (cfa_rule, cfa_offset),
        "{}",
        context()
    );
    let saved = |cell: &str| {
        let offset: i64 = cell.strip_prefix('c')?.parse().ok()?;
        if offset % 8 != 0 {
            return None;
        }
        i8::try_from(offset / 8).ok()
    };
    match cell("rbp") {
        None | Some("s") => assert_eq!(got.rbp_rule(), RBP_SAME, "{}", context()),
        // readelf prints `u` both for no rule yet (ours: same) and DW_CFA_undefined.
        Some("u") => assert!(
            matches!(got.rbp_rule(), RBP_SAME | RBP_UNKNOWN),
            "{}",
            context()
        ),
        Some(other) => match saved(other) {
            Some(slot) => assert_eq!(
                (got.rbp_rule(), got.rbp_offset),
                (RBP_AT_CFA, slot),
                "{}",
                context()
            ),
            None => assert_eq!(got.rbp_rule(), RBP_UNKNOWN, "{}", context()),
        },
    }
}

/// Compares the table of `path` with readelf's interpretation at the start, middle and
/// last byte of every readelf row, and at the end of every FDE. Returns the rows checked.
fn cross_check(path: &Path, table: &Indexed) -> usize {
    let data = std::fs::read(path).unwrap();
    let plt = section_range(&data, ".plt").unwrap_or((0, 0));
    let fdes = readelf_fdes(path, table.table.stats.section);
    assert!(!fdes.is_empty());
    assert_eq!(table.table.stats.overlapping_fdes, 0);
    let starts: std::collections::HashSet<u64> = fdes.iter().map(|f| f.start).collect();
    let mut checked = 0;
    for fde in fdes.iter().filter(|f| f.start < f.end) {
        for (i, row) in fde.rows.iter().enumerate() {
            let next = fde.rows[i + 1..]
                .iter()
                .map(|r| r.loc)
                .find(|&loc| loc > row.loc)
                .unwrap_or(fde.end)
                .min(fde.end);
            // A later row at the same address replaces this one.
            if next <= row.loc || fde.rows[i + 1..].iter().any(|r| r.loc == row.loc) {
                continue;
            }
            for pc in [row.loc, row.loc + (next - row.loc) / 2, next - 1] {
                assert_matches_peer(table.rule(pc), &row.cells, pc, plt);
            }
            checked += 1;
        }
        if !starts.contains(&fde.end) {
            assert_eq!(
                table.rule(fde.end).cfa_rule(),
                CFA_NONE,
                "end {:#x}",
                fde.end
            );
        }
    }
    checked
}

/// A scratch directory, removed when dropped.
struct ScratchDir(PathBuf);

impl ScratchDir {
    fn new(tag: &str) -> ScratchDir {
        let dir = std::env::temp_dir().join(format!("probe-unwind-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        ScratchDir(dir)
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Functions that give each kind of row: a leaf, pushes of callee-saved registers, a
/// frame too big for a 16-bit CFA offset, and `alloca` (which makes GCC keep a frame
/// pointer even with `-fomit-frame-pointer`: CFA = RBP + 16).
const PROGRAM: &str = r#"
#include <alloca.h>
#include <stdio.h>
#include <string.h>
__attribute__((noinline)) long leaf(long a, long b) { return a * b + 3; }
__attribute__((noinline)) long many_saved(long *p, long n) {
    long s = 0, t = 1, u = 2, v = 3;
    for (long i = 0; i < n; i++) {
        s += leaf(p[i], i) ^ leaf(i, s);
        t ^= leaf(s, t);
        u += leaf(t, u);
        v -= leaf(u, v);
    }
    return s + t + u + v;
}
__attribute__((noinline)) long big_frame(int n) {
    volatile char buf[100000];
    buf[n] = (char)n;
    return buf[n / 2];
}
__attribute__((noinline)) long vla(int n) {
    char *p = alloca(n);
    memset(p, n, n);
    return p[n - 1] + leaf(n, n);
}
int main(int argc, char **argv) {
    long a[4] = {argc, 2, 3, 4};
    printf("%ld %ld %ld\n", many_saved(a, 4), big_frame(argc + 10), vla(argc + 20));
    return 0;
}
"#;

#[test]
fn compiled_c_program_matches_readelf() {
    let dir = ScratchDir::new("c");
    let source = dir.0.join("t.c");
    let exe = dir.0.join("t");
    std::fs::write(&source, PROGRAM).unwrap();
    let status = Command::new("cc")
        .args(["-O2", "-fomit-frame-pointer", "-o"])
        .arg(&exe)
        .arg(&source)
        .status()
        .expect("run cc");
    assert!(status.success());
    let data = std::fs::read(&exe).unwrap();
    let table = compile_file(&data).unwrap();
    assert_eq!(table.stats.section, CfiSection::EhFrame);
    assert_eq!(table.stats.skipped_fdes, 0, "{:?}", table.stats);
    let table = check_table(&table);

    assert!(cross_check(&exe, &table) > 10);

    assert_entry_state(
        &table,
        &data,
        &["leaf", "many_saved", "big_frame", "vla", "main"],
    );
    let span = |name: &str| {
        let start = symbol(&data, name);
        let &(_, end) = table
            .table
            .functions
            .iter()
            .find(|(s, _)| *s == start)
            .unwrap_or_else(|| panic!("no FDE at {name}"));
        (start, end)
    };
    // A leaf: one row, the entry state, for the whole function.
    let (start, end) = span("leaf");
    assert_eq!(table.rows_in(start + 1, end).count(), 0);
    // Callee-saved registers pushed: RBP saved at some CFA - 8n.
    let (start, end) = span("many_saved");
    assert!(table
        .rows_in(start, end)
        .any(|r| r.cfa_rule() == CFA_RSP && r.rbp_rule() == RBP_AT_CFA && r.rbp_offset < 0));
    // CFA = RSP + 99896: no rule, inside the function only.
    let (start, end) = span("big_frame");
    assert!(table.rows_in(start, end).any(|r| r.cfa_rule() == CFA_NONE));
    assert_eq!(table.rule(end - 1).cfa_rule(), CFA_RSP);
    // A frame pointer: CFA = RBP + 16, RBP saved at CFA - 16.
    let (start, end) = span("vla");
    assert!(table.rows_in(start, end).any(|r| (
        r.cfa_rule(),
        r.cfa_offset,
        r.rbp_rule(),
        r.rbp_offset
    ) == (CFA_RBP, 16, RBP_AT_CFA, -2)));
    // crt1's `_start` marks the return address undefined: the outermost frame.
    assert_eq!(table.rule(symbol(&data, "_start")).cfa_rule(), CFA_END);
    assert_plt(&table, &data);
}

/// `-fno-asynchronous-unwind-tables -g`: GCC then writes the CFI to `.debug_frame` only,
/// and without start files `.eh_frame` is empty.
#[test]
fn debug_frame_fallback_matches_readelf() {
    let dir = ScratchDir::new("debug-frame");
    let source = dir.0.join("d.c");
    let library = dir.0.join("d.so");
    // The C program's functions, without main (`memset` stays undefined: a shared
    // library may leave it to whoever loads it).
    let functions = &PROGRAM[..PROGRAM.find("int main").unwrap()];
    std::fs::write(&source, functions).unwrap();
    let status = Command::new("cc")
        .args([
            "-O2",
            "-fomit-frame-pointer",
            "-fno-asynchronous-unwind-tables",
        ])
        .args([
            "-fno-unwind-tables",
            "-g",
            "-shared",
            "-fPIC",
            "-nostdlib",
            "-o",
        ])
        .arg(&library)
        .arg(&source)
        .status()
        .expect("run cc");
    assert!(status.success());
    let data = std::fs::read(&library).unwrap();
    let table = compile_file(&data).unwrap();
    assert_eq!(table.stats.section, CfiSection::DebugFrame);
    assert_eq!(table.stats.fdes, 4, "{:?}", table.stats);
    let table = check_table(&table);
    assert!(cross_check(&library, &table) > 10);
    assert_entry_state(&table, &data, &["leaf", "many_saved", "big_frame", "vla"]);
}

#[test]
fn libc_table() {
    let data = read(LIBC);
    let table = compile_file(&data).unwrap();
    let stats = &table.stats;
    assert_eq!(stats.section, CfiSection::EhFrame);
    assert_eq!(stats.skipped_fdes, 0, "{stats:?}");
    assert!(stats.fdes > 1000 && stats.rows > 10_000, "{stats:?}");
    let table = check_table(&table);

    assert_entry_state(
        &table,
        &data,
        &["malloc", "free", "__libc_start_main", "clone"],
    );
    // The child's side of `clone` (and of the internal `clone3`) has its own FDE, with
    // the return address undefined: a new thread's outermost frame.
    let clone = symbol(&data, "clone");
    assert!(
        table
            .rows_in(clone, clone + 0x100)
            .any(|r| r.cfa_rule() == CFA_END),
        "no CFA_END row after clone"
    );
    assert!(stats.rules.end >= 2, "{stats:?}");
    // The signal return trampoline (`__restore_rt`) gives the CFA and every register,
    // the return address first, by expressions reading the saved context; a few
    // assembly functions keep the return address in a register.
    assert!(stats.rules.none_ra >= 1, "{stats:?}");
    assert_plt(&table, &data);
    assert!(cross_check(Path::new(LIBC), &table) > 10_000);
}

#[test]
fn libpython_table() {
    let path = libpython312();
    let data = std::fs::read(&path).unwrap();
    let table = compile_file(&data).unwrap();
    let stats = &table.stats;
    assert_eq!(stats.section, CfiSection::EhFrame);
    assert_eq!(stats.skipped_fdes, 0, "{stats:?}");
    assert!(stats.fdes > 5000 && stats.rows > 50_000, "{stats:?}");
    let table = check_table(&table);
    assert_entry_state(
        &table,
        &data,
        &[
            "_PyEval_EvalFrameDefault",
            "PyObject_Malloc",
            "Py_Initialize",
            "PyLong_FromLong",
        ],
    );
    assert_plt(&table, &data);
    assert!(cross_check(&path, &table) > 50_000);
}

// ---- malformed input --------------------------------------------------------------------

/// xorshift64*: deterministic, so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Compiles `data`, which must not panic and must finish quickly; a table it gives must
/// still be well formed.
fn compile_mutant(data: &[u8], what: &str) {
    let started = Instant::now();
    let result = compile_file(data);
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(1), "{what}: {elapsed:?}");
    if let Ok(table) = result {
        check_table(&table);
    }
}

#[test]
fn mutated_libc_cfi_never_panics() {
    let original = read(LIBC);
    let file = object::File::parse(&*original).unwrap();
    let (offset, size) = file
        .section_by_name(".eh_frame")
        .unwrap()
        .file_range()
        .unwrap();
    let eh_frame = offset as usize..(offset + size) as usize;
    let mut rng = Rng(0x5eed_cafe_f00d_0001);

    // Bytes of `.eh_frame` changed: flipped bits, zeroed, all ones, and runs of garbage
    // (lengths, CIE pointers, augmentation strings, pointer encodings and instructions are
    // all hit). Each mutant is compiled whole.
    for round in 0..64 {
        let mut data = original.clone();
        let changes = 1 + rng.below(64);
        for _ in 0..changes {
            let at = eh_frame.start + rng.below(eh_frame.len());
            data[at] = match rng.below(4) {
                0 => data[at] ^ (1 << rng.below(8)),
                1 => 0,
                2 => 0xff,
                _ => rng.next() as u8,
            };
        }
        if round % 4 == 0 {
            let at = eh_frame.start + rng.below(eh_frame.len() - 256);
            for byte in &mut data[at..at + 1 + rng.below(255)] {
                *byte = rng.next() as u8;
            }
        }
        compile_mutant(&data, &format!("mutant {round}"));
    }

    // `.eh_frame` cut short (what a truncated entry looks like from the inside): the rows
    // before the cut survive.
    let whole = compile_file(&original).unwrap();
    let address = file.section_by_name(".eh_frame").unwrap().address();
    let text = file.section_by_name(".text").unwrap().address();
    let bases = BaseAddresses::default()
        .set_eh_frame(address)
        .set_text(text);
    for _ in 0..16 {
        let cut = rng.below(eh_frame.len());
        let bytes = &original[eh_frame.start..eh_frame.start + cut];
        let mut section = EhFrame::new(bytes, LittleEndian);
        section.set_address_size(8);
        let started = Instant::now();
        let table = compile_section(&section, bytes, CfiSection::EhFrame, &bases, Evaluate::Rows);
        assert!(started.elapsed() < Duration::from_secs(1));
        assert!(table.stats.fdes <= whole.stats.fdes);
        if !table.rows.is_empty() {
            check_table(&table);
        }
    }

    // The file itself cut short: headers and sections past the cut are gone.
    for cut in [
        0,
        1,
        16,
        63,
        64,
        65,
        4096,
        eh_frame.start + 100,
        original.len() - 1,
    ] {
        compile_mutant(&original[..cut], &format!("file cut at {cut}"));
    }
    // Section headers mangled.
    let shoff = u64::from_le_bytes(original[0x28..0x30].try_into().unwrap()) as usize;
    for _ in 0..16 {
        let mut data = original.clone();
        let at = shoff + rng.below(original.len() - shoff);
        data[at] = rng.next() as u8;
        compile_mutant(&data, &format!("section header byte {at}"));
    }
}

// ---- measurement ------------------------------------------------------------------------

/// The biggest `.eh_frame` on the development machines (LLVM's shared library).
const LARGE: &str = "/usr/lib/x86_64-linux-gnu/libLLVM.so.22.1";

/// Build time and size of real tables. Run it optimised:
/// `AYA_BUILD_SKIP=1 cargo test --release -p probe-user unwind::tests::real::measure -- \
/// --ignored --nocapture`; `UNWIND_MEASURE_FILES` (colon-separated) replaces the files.
/// Each file also gets a JSON line (`{"measured": path, ...}`), which `cargo xtask bench`
/// reads.
#[test]
#[ignore = "a measurement, not a check: run with --release --ignored --nocapture"]
#[allow(clippy::print_stderr)] // The measurement's report.
fn measure_build_time() {
    let files: Vec<PathBuf> = match std::env::var("UNWIND_MEASURE_FILES") {
        Ok(list) => list.split(':').map(PathBuf::from).collect(),
        Err(_) => vec![PathBuf::from(LIBC), libpython312(), PathBuf::from(LARGE)],
    };
    for path in files.iter().filter(|p| p.exists()) {
        let data = std::fs::read(path).unwrap();
        // Best of 3: the file is in the page cache after the read.
        let mut best = Duration::MAX;
        let mut result = None;
        for _ in 0..3 {
            let started = Instant::now();
            let table = compile_file(&data);
            let (base_pc, pages) = table
                .as_ref()
                .map(|t| page_index(&t.rows))
                .unwrap_or_default();
            best = best.min(started.elapsed());
            result = Some((table, base_pc, pages));
        }
        let Some((Ok(table), _, pages)) = result else {
            let error = result.and_then(|r| r.0.err()).map(|err| err.to_string());
            eprintln!("{}: {error:?}", path.display());
            // For `cargo xtask bench`, which reads these lines.
            eprintln!(
                "{}",
                serde_json::json!({ "measured": path, "error": error })
            );
            continue;
        };
        // Code bytes between the first and last row that no rule covers (gaps between
        // FDEs and unusable CFI), and the most rows one page's search must cover.
        let uncovered: u64 = table
            .rows
            .windows(2)
            .filter(|pair| pair[0].cfa_rule() == CFA_NONE)
            .map(|pair| u64::from(pair[1].pc - pair[0].pc))
            .sum();
        let span = u64::from(table.rows.last().unwrap().pc - table.rows[0].pc);
        let widest_page = pages.windows(2).map(|p| p[1] - p[0] + 1).max().unwrap_or(0);
        let s = &table.stats;
        let mib = s.eh_frame_bytes as f64 / (1 << 20) as f64;
        let ms = best.as_secs_f64() * 1e3;
        eprintln!(
            "{}: {} {:.0} KiB, {} FDEs ({} skipped), {} CFI rows -> {} rows ({} CFA_NONE, \
             {:.1}%), rows {:.0} KiB + pages {:.0} KiB; {ms:.1} ms, {:.1} ms/MiB\n    \
             {:.1}% of {} KiB of code without a rule; at most {widest_page} rows in a \
             page's search\n    {:?}",
            path.display(),
            s.section.name(),
            s.eh_frame_bytes as f64 / 1024.0,
            s.fdes,
            s.skipped_fdes,
            s.cfi_rows,
            s.rows,
            s.no_rule_rows,
            100.0 * s.no_rule_rows as f64 / s.rows as f64,
            (s.rows * std::mem::size_of::<UnwindRow>()) as f64 / 1024.0,
            (pages.len() * 4) as f64 / 1024.0,
            ms / mib,
            100.0 * uncovered as f64 / span as f64,
            span / 1024,
            s.rules,
        );
        let table_bytes = s.rows * std::mem::size_of::<UnwindRow>() + pages.len() * 4;
        eprintln!(
            "{}",
            serde_json::json!({
                "measured": path,
                "section": s.section.name(),
                "cfi_bytes": s.eh_frame_bytes,
                "fdes": s.fdes,
                "rows": s.rows,
                "table_bytes": table_bytes,
                "build_ns": u64::try_from(best.as_nanos()).unwrap_or(u64::MAX),
            })
        );
    }
}
