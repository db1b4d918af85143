//! Numbers and untrusted strings made fit for a terminal.

use std::fmt;

/// Displays a string with every control character escaped.
///
/// Thread names, command lines, file and symbol names come from other processes and from
/// binaries on disk; written raw, an escape sequence in them could rewrite the terminal
/// (hide lines, fake output). C0, DEL and C1 controls (`char::is_control`) and the
/// bidirectional formatting characters (which reorder what is shown) are written as
/// `\xNN` / `\u{NNNN}` instead.
pub struct Escaped<'a>(pub &'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in self.0.chars() {
            match u32::from(c) {
                code @ (0..=0x1f | 0x7f) => write!(f, "\\x{code:02x}")?,
                code if c.is_control() || is_bidi_control(c) => write!(f, "\\u{{{code:x}}}")?,
                _ => fmt::Write::write_char(f, c)?,
            }
        }
        Ok(())
    }
}

/// Unicode bidirectional embeddings, overrides, isolates and marks.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `1234567` -> `"1,234,567"`.
pub fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// A rate per second: whole and grouped from 10 up (`48,210`), one decimal below (`0.4`)
/// so that rare syscalls do not all read as "0".
pub fn rate(per_sec: f64) -> String {
    let one_decimal = format!("{per_sec:.1}");
    // Decide on the rounded text, so that 9.96 reads "10", not "10.0".
    if one_decimal.ends_with(".0") || per_sec >= 9.95 {
        grouped(per_sec.round() as u64)
    } else {
        one_decimal
    }
}

/// A fraction (0..=1) as a whole percentage: `0.983` -> `"98%"`.
pub fn share_pct(share: f64) -> String {
    format!("{:.0}%", share * 100.0)
}

/// A percentage with one decimal: `99.62` -> `"99.6%"`.
pub fn pct1(pct: f64) -> String {
    format!("{pct:.1}%")
}

/// A percentage as short as it can be written: `90.0` -> `"90%"`, `92.5` -> `"92.5%"`.
pub fn pct_short(pct: f64) -> String {
    let text = format!("{pct:.2}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{text}%")
}

/// Seconds for the header: `10.0 s`, `0.250 s`.
pub fn secs(secs: f64) -> String {
    if secs >= 1.0 {
        format!("{secs:.1} s")
    } else {
        format!("{secs:.3} s")
    }
}

/// `"1 thread"`, `"2 threads"`.
pub fn plural(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("{n} {noun}")
    } else {
        format!("{n} {noun}s")
    }
}
