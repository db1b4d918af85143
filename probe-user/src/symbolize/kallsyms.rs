//! Kernel function names from /proc/kallsyms, read once.
//!
//! The kernel formats the whole file on every read (5 MB and 120,000 lines on a typical
//! kernel), tens of milliseconds of kernel time, so it is read exactly once. A general
//! parser that makes a `String` of every line, data symbols included, added a third of that
//! again in user space; here the text is read into one buffer and only text symbols are
//! kept, as an address and the place of the name in that buffer. Names are copied out only
//! for the few addresses a recording holds.

use std::fs::File;
use std::io::{self, Read};
use std::ops::Range;

const KALLSYMS: &str = "/proc/kallsyms";
/// Room for a typical kallsyms text, so reading it seldom reallocates.
const INITIAL_CAPACITY: usize = 8 << 20;
/// Most bytes read: name places are `u32` offsets, and no kernel lists a gigabyte.
const MAX_BYTES: u64 = 1 << 30;

/// Where a text symbol's name lies in the kallsyms text, and its address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct TextSymbol {
    addr: u64,
    name_start: u32,
    name_len: u32,
    /// The `[module]` suffix's name (0 length: the core kernel).
    module_start: u32,
    module_len: u32,
}

/// The text (function) symbols of the running kernel, its modules and its BPF programs,
/// sorted by address.
pub struct KernelSymbols {
    text: Vec<u8>,
    /// Sorted by address, one per address.
    symbols: Vec<TextSymbol>,
    /// The core kernel's text: `_stext.._etext` and `_sinittext.._einittext` (empty when a
    /// bound is missing).
    core_text: [Range<u64>; 2],
}

/// What kallsyms cannot say is how far a symbol reaches. Past the last function of the
/// core kernel or of a module lie data, other regions, or code that is gone: naming such
/// an address after the function before it would be a guess. Each symbol reaches at most
/// to the next one, and:
/// - core kernel functions lie inside the core kernel's text;
/// - a module's functions inside the module's range (from /proc/modules, the caller's);
/// - BPF programs and trampolines (the `[bpf]`, `[__builtin__*]` pseudo-modules, which
///   have no range) at most [`PSEUDO_MODULE_REACH`] bytes past their start.
pub(super) const PSEUDO_MODULE_REACH: u64 = 4096;

/// A kernel function found for an address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct KernelFunction<'a> {
    pub name: &'a [u8],
    /// `None` for the core kernel.
    pub module: Option<&'a [u8]>,
}

impl KernelSymbols {
    /// Read and parse /proc/kallsyms.
    pub fn read() -> io::Result<KernelSymbols> {
        let mut text = Vec::with_capacity(INITIAL_CAPACITY);
        File::open(KALLSYMS)?
            .take(MAX_BYTES)
            .read_to_end(&mut text)?;
        Ok(KernelSymbols::parse(text))
    }

    /// Parse kallsyms text: lines of `address type name`, with `\t[module]` after the
    /// names of module and BPF symbols. Module lines come unsorted, after the core kernel's.
    pub(super) fn parse(text: Vec<u8>) -> KernelSymbols {
        let mut symbols = Vec::with_capacity(text.len() / 40);
        let mut line_start = 0usize;
        let line_ends = memchr::memchr_iter(b'\n', &text).chain([text.len()]);
        for line_end in line_ends {
            let line = text.get(line_start..line_end).unwrap_or_default();
            if let Some((addr, name, module)) = parse_line(line) {
                let name = line_start + name.start..line_start + name.end;
                let module = line_start + module.start..line_start + module.end;
                symbols.extend(TextSymbol::new(addr, name, module));
            }
            line_start = line_end + 1;
        }
        let core_text = {
            let core_addr = |wanted: &[u8]| {
                symbols
                    .iter()
                    .find(|s| s.module_len == 0 && symbol_name(&text, s) == Some(wanted))
                    .map(|s| s.addr)
            };
            let range = |start: &[u8], end: &[u8]| match (core_addr(start), core_addr(end)) {
                (Some(start), Some(end)) => start..end,
                _ => 0..0,
            };
            [
                range(b"_stext", b"_etext"),
                range(b"_sinittext", b"_einittext"),
            ]
        };
        // Stable: of the aliases at one address (`_text`, `_stext`), the first listed names
        // it, as blazesym did.
        symbols.sort_by_key(|symbol| symbol.addr);
        symbols.dedup_by_key(|symbol| symbol.addr);
        KernelSymbols {
            text,
            symbols,
            core_text,
        }
    }

    /// Whether no symbol has an address. Without privileges (CAP_SYSLOG, and
    /// `kernel.kptr_restrict` allowing it) kallsyms lists every address as 0, which would
    /// name every kernel frame after one arbitrary symbol.
    pub(super) fn is_empty(&self) -> bool {
        self.symbols.is_empty()
    }

    /// The function containing `addr`: the last symbol starting at or before it, if `addr`
    /// is within its reach (see [`PSEUDO_MODULE_REACH`]); `module_range` gives a loaded
    /// module's address range by name.
    pub(super) fn function(
        &self,
        addr: u64,
        module_range: impl Fn(&[u8]) -> Option<Range<u64>>,
    ) -> Option<KernelFunction<'_>> {
        let after = self.symbols.partition_point(|symbol| symbol.addr <= addr);
        let symbol = self.symbols.get(after.checked_sub(1)?)?;
        let name = symbol_name(&self.text, symbol)?;
        let module = self.module(symbol);
        let within = match module {
            None => self.core_text.iter().any(|text| text.contains(&addr)),
            Some(module) if module == b"bpf" || module.starts_with(b"__builtin__") => {
                addr - symbol.addr < PSEUDO_MODULE_REACH
            }
            Some(module) => module_range(module).is_some_and(|range| range.contains(&addr)),
        };
        within.then_some(KernelFunction { name, module })
    }

    fn module(&self, symbol: &TextSymbol) -> Option<&[u8]> {
        if symbol.module_len == 0 {
            return None;
        }
        let start = usize::try_from(symbol.module_start).ok()?;
        let len = usize::try_from(symbol.module_len).ok()?;
        self.text.get(start..start.checked_add(len)?)
    }
}

fn symbol_name<'t>(text: &'t [u8], symbol: &TextSymbol) -> Option<&'t [u8]> {
    let start = usize::try_from(symbol.name_start).ok()?;
    let len = usize::try_from(symbol.name_len).ok()?;
    text.get(start..start.checked_add(len)?)
}

impl TextSymbol {
    /// `None` past the `u32` offsets (unreachable with [`MAX_BYTES`]).
    fn new(addr: u64, name: Range<usize>, module: Range<usize>) -> Option<TextSymbol> {
        Some(TextSymbol {
            addr,
            name_start: u32::try_from(name.start).ok()?,
            name_len: u32::try_from(name.len()).ok()?,
            module_start: u32::try_from(module.start).ok()?,
            module_len: u32::try_from(module.len()).ok()?,
        })
    }
}

/// The text symbol of one line (without its newline): its address, the name's place in the
/// line and its module's (empty for the core kernel); `None` for data symbols, zero
/// addresses and lines that are not `address type name`. It runs for 100,000 lines and
/// more, so names are not scanned: only lines ending in `]` have a module suffix.
fn parse_line(line: &[u8]) -> Option<(u64, Range<usize>, Range<usize>)> {
    let (addr, digits) = hex_prefix(line);
    let fields = (1..=16).contains(&digits)
        && line.get(digits) == Some(&b' ')
        && line.get(digits + 2) == Some(&b' ');
    // t/T: functions (local/global), w/W: weak ones. BPF programs and ftrace trampolines
    // are listed as `t` too.
    let is_text = matches!(line.get(digits + 1), Some(b't' | b'T' | b'w' | b'W'));
    if !fields || !is_text || addr == 0 {
        return None;
    }
    let name_start = digits + 3;
    // Only module and BPF lines end in `\t[module]`; names hold no tabs.
    let tab = match line.last() {
        Some(b']') => memchr::memrchr(b'\t', line).filter(|&tab| tab >= name_start),
        _ => None,
    };
    let (name_end, module) = match tab {
        Some(tab) if line.get(tab + 1) == Some(&b'[') => (tab, tab + 2..line.len() - 1),
        Some(tab) => (tab, 0..0),
        None => (line.len(), 0..0),
    };
    (name_end > name_start).then_some((addr, name_start..name_end, module))
}

/// The value of the hex digits that start `text`, and how many there are (the value is
/// meaningless past 16).
fn hex_prefix(text: &[u8]) -> (u64, usize) {
    let mut value = 0u64;
    let mut digits = 0usize;
    for digit in text.iter().map_while(|&b| char::from(b).to_digit(16)) {
        value = value << 4 | u64::from(digit);
        digits += 1;
    }
    (value, digits)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Core symbols sorted, data symbols, aliases, then modules and BPF programs unsorted.
    const SAMPLE: &str = "\
0000000000000000 A fixed_percpu_data
ffffffff81000000 T _stext
ffffffff81000000 T _text
ffffffff81000100 t do_one_initcall
ffffffff81000200 T vfs_read
ffffffff81000280 W weak_helper
ffffffff81000300 D some_data
ffffffff81000400 R some_rodata
ffffffff81000500 b some_bss
ffffffff81000600 T ksys_read
ffffffff81000800 T _etext
ffffffffc0a01000 t ext4_read_folio\t[ext4]
ffffffffc0200800 t bpf_prog_6deef7357e7b4530_sd_fw_egress\t[bpf]
ffffffffc0a00000 T ext4_file_read_iter\t[ext4]
ffffffffc0200000 t ftrace_trampoline\t[__builtin__ftrace]
not a line
ffffffffzz000000 T bad_address
ffffffff81000700 T
";

    /// ext4 is loaded at 0xffffffffc0a00000, 8 KiB.
    fn module_range(name: &[u8]) -> Option<Range<u64>> {
        (name == b"ext4").then_some(0xffffffffc0a00000..0xffffffffc0a02000)
    }

    fn name(symbols: &KernelSymbols, addr: u64) -> Option<&str> {
        symbols
            .function(addr, module_range)
            .map(|function| std::str::from_utf8(function.name).expect("utf-8"))
    }

    #[test]
    fn names_addresses_by_the_symbol_at_or_before_them() {
        let symbols = KernelSymbols::parse(SAMPLE.as_bytes().to_vec());
        assert!(!symbols.is_empty());
        assert_eq!(name(&symbols, 0xffffffff80ffffff), None);
        assert_eq!(name(&symbols, 0xffffffff81000000), Some("_stext"));
        assert_eq!(name(&symbols, 0xffffffff81000105), Some("do_one_initcall"));
        assert_eq!(name(&symbols, 0xffffffff81000200), Some("vfs_read"));
        assert_eq!(name(&symbols, 0xffffffff81000290), Some("weak_helper"));
        // Data symbols are skipped: their addresses belong to the function before.
        assert_eq!(name(&symbols, 0xffffffff81000301), Some("weak_helper"));
        assert_eq!(name(&symbols, 0xffffffff81000501), Some("weak_helper"));
        assert_eq!(name(&symbols, 0xffffffff81000650), Some("ksys_read"));
        assert_eq!(
            name(&symbols, 0xffffffffc0200010),
            Some("ftrace_trampoline")
        );
        let bpf = "bpf_prog_6deef7357e7b4530_sd_fw_egress";
        assert_eq!(name(&symbols, 0xffffffffc0200810), Some(bpf));
        assert_eq!(
            name(&symbols, 0xffffffffc0a00010),
            Some("ext4_file_read_iter")
        );
        assert_eq!(name(&symbols, 0xffffffffc0a01010), Some("ext4_read_folio"));
    }

    #[test]
    fn names_nothing_beyond_a_symbols_reach() {
        let symbols = KernelSymbols::parse(SAMPLE.as_bytes().to_vec());
        // Past the core kernel's text (e.g. a BPF program gone from the list).
        assert_eq!(name(&symbols, 0xffffffff81000900), None);
        // Past a module's range, and in a module whose range is unknown.
        assert_eq!(name(&symbols, 0xffffffffc0a02000), None);
        let unknown_module = SAMPLE.replace("[ext4]", "[xfs]");
        let unknown_module = KernelSymbols::parse(unknown_module.into_bytes());
        assert_eq!(name(&unknown_module, 0xffffffffc0a01010), None);
        // A BPF program reaches PSEUDO_MODULE_REACH bytes at most.
        let bpf = 0xffffffffc0200800;
        assert!(name(&symbols, bpf + PSEUDO_MODULE_REACH - 1).is_some());
        assert_eq!(name(&symbols, bpf + PSEUDO_MODULE_REACH), None);
        let function = symbols.function(bpf, module_range).expect("bpf program");
        assert_eq!(function.module, Some(&b"bpf"[..]));
        let core = symbols.function(0xffffffff81000650, module_range);
        assert_eq!(core.and_then(|function| function.module), None);
    }

    #[test]
    fn keeps_only_well_formed_text_symbols() {
        let symbols = KernelSymbols::parse(SAMPLE.as_bytes().to_vec());
        let addrs: Vec<u64> = symbols.symbols.iter().map(|s| s.addr).collect();
        let mut sorted = addrs.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(addrs, sorted);
        assert_eq!(addrs.len(), 10, "{addrs:x?}");
    }

    #[test]
    fn zero_addresses_give_no_symbols() {
        let unprivileged = "\
0000000000000000 T _stext
0000000000000000 T vfs_read
0000000000000000 t ext4_read_folio\t[ext4]
";
        let symbols = KernelSymbols::parse(unprivileged.as_bytes().to_vec());
        assert!(symbols.is_empty());
        assert_eq!(symbols.function(u64::MAX, module_range), None);
        assert!(KernelSymbols::parse(Vec::new()).is_empty());
    }

    #[test]
    fn parses_lines() {
        let module = b"ffffffffc0a01000 t ext4_read_folio\t[ext4]";
        assert_eq!(
            parse_line(module),
            Some((0xffffffffc0a01000, 19..34, 36..40))
        );
        assert_eq!(&module[19..34], b"ext4_read_folio");
        assert_eq!(&module[36..40], b"ext4");
        let core = b"ffffffff81000000 T _text";
        assert_eq!(parse_line(core), Some((0xffffffff81000000, 19..24, 0..0)));
        assert_eq!(parse_line(b"ffffffff81000300 D some_data"), None);
        assert_eq!(parse_line(b"1ffffffff81000000 T too_long"), None);
        assert_eq!(parse_line(b"0x10 T prefixed"), None);
        assert_eq!(parse_line(b"10 T"), None);
        assert_eq!(parse_line(b"10 T "), None);
        assert_eq!(parse_line(b"10 T \t[mod]"), None);
        assert_eq!(parse_line(b""), None);
        assert_eq!(parse_line(b"10 T odd]"), Some((0x10, 5..9, 0..0)));
        assert_eq!(parse_line(b"10 T odd\t]"), Some((0x10, 5..8, 0..0)));
        assert_eq!(parse_line(b"10 T odd\t[]"), Some((0x10, 5..8, 10..10)));
        assert_eq!(hex_prefix(b"00ffFF x"), (0xffff, 6));
        assert_eq!(hex_prefix(b"x"), (0, 0));
    }
}
