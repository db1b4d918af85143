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
}

/// The text (function) symbols of the running kernel, its modules and its BPF programs,
/// sorted by address.
pub(super) struct KernelSymbols {
    text: Vec<u8>,
    /// Sorted by address, one per address.
    symbols: Vec<TextSymbol>,
}

impl KernelSymbols {
    /// Read and parse /proc/kallsyms.
    pub(super) fn read() -> io::Result<KernelSymbols> {
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
            if let Some((addr, name)) = parse_line(line) {
                symbols.extend(TextSymbol::new(addr, line_start + name.start, name.len()));
            }
            line_start = line_end + 1;
        }
        // Stable: of the aliases at one address (`_text`, `_stext`), the first listed names
        // it, as blazesym did.
        symbols.sort_by_key(|symbol| symbol.addr);
        symbols.dedup_by_key(|symbol| symbol.addr);
        KernelSymbols { text, symbols }
    }

    /// Whether no symbol has an address. Without privileges (CAP_SYSLOG, and
    /// `kernel.kptr_restrict` allowing it) kallsyms lists every address as 0, which would
    /// name every kernel frame after one arbitrary symbol.
    pub(super) fn is_empty(&self) -> bool {
        self.symbols.is_empty()
    }

    /// The name of the function containing `addr`: the last symbol starting at or before
    /// it. `None` below the first symbol.
    pub(super) fn name(&self, addr: u64) -> Option<&[u8]> {
        let after = self.symbols.partition_point(|symbol| symbol.addr <= addr);
        let symbol = self.symbols.get(after.checked_sub(1)?)?;
        let start = usize::try_from(symbol.name_start).ok()?;
        let len = usize::try_from(symbol.name_len).ok()?;
        self.text.get(start..start.checked_add(len)?)
    }
}

impl TextSymbol {
    /// `None` past the `u32` offsets (unreachable with [`MAX_BYTES`]).
    fn new(addr: u64, name_start: usize, name_len: usize) -> Option<TextSymbol> {
        Some(TextSymbol {
            addr,
            name_start: u32::try_from(name_start).ok()?,
            name_len: u32::try_from(name_len).ok()?,
        })
    }
}

/// The text symbol of one line (without its newline): its address and the name's place in
/// the line; `None` for data symbols, zero addresses and lines that are not
/// `address type name`. It runs for 100,000 lines and more, so names are not scanned: only
/// lines ending in `]` have a module suffix to cut off.
fn parse_line(line: &[u8]) -> Option<(u64, Range<usize>)> {
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
    let name_end = match line.last() {
        Some(b']') => memchr::memrchr(b'\t', line).filter(|&tab| tab >= name_start),
        _ => None,
    };
    let name_end = name_end.unwrap_or(line.len());
    (name_end > name_start).then_some((addr, name_start..name_end))
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
ffffffffc0a01000 t ext4_read_folio\t[ext4]
ffffffffc0200800 t bpf_prog_6deef7357e7b4530_sd_fw_egress\t[bpf]
ffffffffc0a00000 T ext4_file_read_iter\t[ext4]
ffffffffc0200000 t ftrace_trampoline\t[__builtin__ftrace]
not a line
ffffffffzz000000 T bad_address
ffffffff81000700 T
";

    fn name(symbols: &KernelSymbols, addr: u64) -> Option<&str> {
        symbols
            .name(addr)
            .map(|name| std::str::from_utf8(name).expect("utf-8"))
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
    fn keeps_only_well_formed_text_symbols() {
        let symbols = KernelSymbols::parse(SAMPLE.as_bytes().to_vec());
        let addrs: Vec<u64> = symbols.symbols.iter().map(|s| s.addr).collect();
        let mut sorted = addrs.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(addrs, sorted);
        assert_eq!(addrs.len(), 9, "{addrs:x?}");
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
        assert_eq!(symbols.name(u64::MAX), None);
        assert!(KernelSymbols::parse(Vec::new()).is_empty());
    }

    #[test]
    fn parses_lines() {
        let module = b"ffffffffc0a01000 t ext4_read_folio\t[ext4]";
        assert_eq!(parse_line(module), Some((0xffffffffc0a01000, 19..34)));
        assert_eq!(&module[19..34], b"ext4_read_folio");
        let core = b"ffffffff81000000 T _text";
        assert_eq!(parse_line(core), Some((0xffffffff81000000, 19..24)));
        assert_eq!(parse_line(b"ffffffff81000300 D some_data"), None);
        assert_eq!(parse_line(b"1ffffffff81000000 T too_long"), None);
        assert_eq!(parse_line(b"0x10 T prefixed"), None);
        assert_eq!(parse_line(b"10 T"), None);
        assert_eq!(parse_line(b"10 T "), None);
        assert_eq!(parse_line(b"10 T \t[mod]"), None);
        assert_eq!(parse_line(b""), None);
        assert_eq!(parse_line(b"10 T odd]"), Some((0x10, 5..9)));
        assert_eq!(hex_prefix(b"00ffFF x"), (0xffff, 6));
        assert_eq!(hex_prefix(b"x"), (0, 0));
    }
}
