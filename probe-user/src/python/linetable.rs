//! Decoders from a bytecode byte offset to a source line, one per CPython encoding.
//!
//! All three are pure functions of the table bytes, the code object's `co_firstlineno` and
//! the offset, so they are tested without a process. Garbage input yields `None` or a wrong
//! line, never a panic: every loop is bounded by the table length.

use super::offsets::LineTableKind;

/// The line of the instruction at byte offset `offset`, or `None` if the table says the
/// instruction has no line (or the offset is past the table).
pub fn line_for(kind: LineTableKind, table: &[u8], first_line: u32, offset: u32) -> Option<u32> {
    let first = i64::from(first_line);
    let line = match kind {
        LineTableKind::Lnotab => lnotab(table, first, u64::from(offset)),
        LineTableKind::Linetable310 => linetable_310(table, first, u64::from(offset)),
        LineTableKind::Locations => locations(table, first, u64::from(offset)),
    }?;
    u32::try_from(line).ok()
}

/// 3.8–3.9 `co_lnotab`: (byte delta, signed line delta) pairs; a pair applies once the
/// running address has passed it.
fn lnotab(table: &[u8], first: i64, offset: u64) -> Option<i64> {
    let mut line = first;
    let mut addr = 0u64;
    for pair in table.chunks_exact(2) {
        addr += u64::from(pair[0]);
        if addr > offset {
            break;
        }
        line += i64::from(pair[1] as i8);
    }
    Some(line)
}

/// 3.10 `co_linetable`: (byte delta, signed line delta) pairs, each closing the range
/// `[start, start + delta)`; a line delta of -128 means "no line".
fn linetable_310(table: &[u8], first: i64, offset: u64) -> Option<i64> {
    let mut line = first;
    let mut end = 0u64;
    for pair in table.chunks_exact(2) {
        let start = end;
        end += u64::from(pair[0]);
        let delta = pair[1] as i8;
        let this = if delta == -128 {
            None
        } else {
            line += i64::from(delta);
            Some(line)
        };
        if (start..end).contains(&offset) {
            return this;
        }
    }
    None
}

/// 3.11+ location table: entries covering runs of 2-byte code units.
fn locations(table: &[u8], first: i64, offset: u64) -> Option<i64> {
    let target = offset / 2;
    let mut r = Reader { table, pos: 0 };
    let mut line = first;
    let mut unit = 0u64;
    while let Some(head) = r.byte() {
        if head & 0x80 == 0 {
            return None; // not at an entry start: garbage
        }
        let code = (head >> 3) & 0x0f;
        let length = u64::from(head & 0x07) + 1;
        let delta = r.entry_line_delta(code)?;
        let this = delta.map(|d| {
            line = line.saturating_add(d);
            line
        });
        if (unit..unit + length).contains(&target) {
            return this;
        }
        unit += length;
    }
    None
}

/// A cursor over the location table.
struct Reader<'a> {
    table: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn byte(&mut self) -> Option<u8> {
        let b = *self.table.get(self.pos)?;
        self.pos += 1;
        Some(b)
    }

    /// Unsigned varint: 6-bit chunks, least significant first, bit 6 = "more".
    fn varint(&mut self) -> Option<u64> {
        let mut b = self.byte()?;
        let mut value = u64::from(b & 63);
        let mut shift = 0;
        while b & 64 != 0 {
            b = self.byte()?;
            shift += 6;
            if shift > 56 {
                return None;
            }
            value |= u64::from(b & 63) << shift;
        }
        Some(value)
    }

    /// Signed varint: the low bit of the unsigned value is the sign.
    fn svarint(&mut self) -> Option<i64> {
        let u = self.varint()?;
        let magnitude = (u >> 1) as i64;
        Some(if u & 1 != 0 { -magnitude } else { magnitude })
    }

    /// Consumes the rest of an entry with the given code; returns its line delta, `None`
    /// inside for entries without a location. The outer `None` means truncated input.
    fn entry_line_delta(&mut self, code: u8) -> Option<Option<i64>> {
        match code {
            15 => Some(None),
            14 => {
                let delta = self.svarint()?;
                self.varint()?; // end line delta
                self.varint()?; // column + 1
                self.varint()?; // end column + 1
                Some(Some(delta))
            }
            13 => self.svarint().map(Some),
            10..=12 => {
                self.byte()?; // column
                self.byte()?; // end column
                Some(Some(i64::from(code) - 10))
            }
            _ => {
                self.byte()?; // short form: column bits
                Some(Some(0))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lnotab_applies_pairs_once_passed() {
        // bytes 0..6 on line 10, 6..10 on line 11, then line 13.
        let table = [6, 1, 4, 2];
        let at = |off| line_for(LineTableKind::Lnotab, &table, 10, off);
        assert_eq!(
            (at(0), at(5), at(6), at(9), at(10), at(99)),
            (Some(10), Some(10), Some(11), Some(11), Some(13), Some(13))
        );
    }

    #[test]
    fn linetable_310_ranges_and_no_line() {
        // [0,4) line 11, [4,8) no line, [8,12) line 9.
        let table = [4, 1, 4, 0x80, 4, (-2i8) as u8];
        let at = |off| line_for(LineTableKind::Linetable310, &table, 10, off);
        assert_eq!(
            (at(0), at(4), at(8), at(12)),
            (Some(11), None, Some(9), None)
        );
    }

    #[test]
    fn locations_all_entry_forms() {
        let table = [
            0x80 | (13 << 3) | 1,
            2, // no-column, +1 line, units 0..2
            0x80 | (11 << 3),
            3,
            4,                    // one-line form +1, unit 2
            0x80 | (15 << 3) | 2, // no location, units 3..6
            0x80 | (14 << 3),
            3,
            0,
            1,
            2, // long form, -1 line, unit 6
            0x80 | (2 << 3) | 1,
            5, // short form, same line, units 7..9
        ];
        let at = |unit: u32| line_for(LineTableKind::Locations, &table, 20, unit * 2);
        assert_eq!(
            (at(0), at(1), at(2), at(3), at(5)),
            (Some(21), Some(21), Some(22), None, None)
        );
        assert_eq!((at(6), at(8), at(9)), (Some(21), Some(21), None));
    }

    #[test]
    fn garbage_tables_do_not_panic() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for len in 0..300 {
            let table: Vec<u8> = (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    seed as u8
                })
                .collect();
            for kind in [
                LineTableKind::Lnotab,
                LineTableKind::Linetable310,
                LineTableKind::Locations,
            ] {
                for off in [0, 1, 7, 100, u32::MAX] {
                    let _ = line_for(kind, &table, u32::MAX, off);
                }
            }
        }
    }
}
