//! Python `int` values of a target.
//!
//! An int is a sign and a little-endian array of `PyLong_SHIFT`-bit digits. Up to 3.11 the
//! signed `ob_size` holds both (sign of the value, number of digits); 3.12+ pack them into
//! `lv_tag` ([`LongTag`](super::offsets::LongTag)).

use super::memory::{ProcessMemory, ReadExt};
use super::object::{expect_flag, field, ObjectError};
use super::offsets::PyLayout;

/// Most digits read: enough for any 64-bit value (a `pthread_t`, a tid) with 15-bit digits.
pub const MAX_DIGITS: u64 = 5;

/// The value of the `int` (or `bool`, or int subclass) at `obj`, if it has at most
/// [`MAX_DIGITS`] digits.
pub fn read_int(layout: &PyLayout, mem: &dyn ProcessMemory, obj: u64) -> Result<i128, ObjectError> {
    expect_flag(layout, mem, obj, layout.tpflags_long_subclass, "int")?;
    let header = field(mem, obj, layout.long_size)?;
    let (negative, digits) = match layout.long_tag {
        Some(tag) => (
            header & tag.sign_mask == tag.negative,
            header >> tag.size_shift,
        ),
        None => ((header as i64) < 0, (header as i64).unsigned_abs()),
    };
    let shift = layout.long_shift;
    if digits > MAX_DIGITS || shift == 0 || shift * digits > 120 {
        return Err(ObjectError::TooLarge {
            addr: obj,
            what: "int digit count",
            value: digits,
            limit: MAX_DIGITS,
        });
    }
    let size = layout.long_digit_size as usize;
    if !matches!(size, 2 | 4) {
        return Err(ObjectError::Invalid {
            addr: obj,
            what: "unsupported digit size",
        });
    }
    let raw = mem
        .read_vec(obj.wrapping_add(layout.long_digits), digits as usize * size)
        .map_err(ObjectError::memory(obj))?;
    let mut value: i128 = 0;
    for (i, chunk) in raw.chunks_exact(size).enumerate() {
        let digit = match *chunk {
            [a, b] => u64::from(u16::from_ne_bytes([a, b])),
            [a, b, c, d] => u64::from(u32::from_ne_bytes([a, b, c, d])),
            _ => 0,
        };
        if digit >> shift != 0 {
            return Err(ObjectError::Invalid {
                addr: obj,
                what: "int digit out of range",
            });
        }
        value |= i128::from(digit) << (shift * i as u64);
    }
    Ok(if negative { -value } else { value })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::python::memory::FakeMemory;
    use crate::python::testutil::{int_obj, put_u64};

    const INT_TYPE: u64 = 0x200;

    fn memory(layout: &PyLayout, value: i128) -> FakeMemory {
        let mut t = Vec::new();
        put_u64(&mut t, layout.type_flags, layout.tpflags_long_subclass);
        FakeMemory::new()
            .with(INT_TYPE, t)
            .with(0x1000, int_obj(layout, INT_TYPE, value))
    }

    #[test]
    fn ints_round_trip_on_every_version() {
        let values = [
            0,
            1,
            -1,
            4242,
            1 << 30,
            (1 << 30) - 1,
            -(1 << 45),
            u64::MAX as i128,
        ];
        for minor in 8..=13 {
            let l = PyLayout::table_row(3, minor).unwrap();
            for v in values {
                assert_eq!(
                    read_int(&l, &memory(&l, v), 0x1000).unwrap(),
                    v,
                    "3.{minor}"
                );
            }
        }
    }

    #[test]
    fn malformed_ints_are_errors() {
        for minor in [11, 12] {
            let l = PyLayout::table_row(3, minor).unwrap();
            let mut mem = memory(&l, 5);
            // A digit count of 2^40.
            let huge = if l.long_tag.is_some() {
                1 << 43
            } else {
                1 << 40
            };
            put_u64(mem.region_mut(0x1000).unwrap(), l.long_size, huge);
            let err = read_int(&l, &mem, 0x1000).unwrap_err();
            assert!(matches!(err, ObjectError::TooLarge { .. }), "{err}");
            // One digit holding more than PyLong_SHIFT bits.
            let mut mem = memory(&l, 5);
            let obj = mem.region_mut(0x1000).unwrap();
            let at = l.long_digits as usize;
            obj[at..at + 4].copy_from_slice(&u32::MAX.to_ne_bytes());
            let err = read_int(&l, &mem, 0x1000).unwrap_err();
            assert!(matches!(err, ObjectError::Invalid { .. }), "{err}");
            // Not an int.
            let mut mem = memory(&l, 5);
            put_u64(mem.region_mut(0x1000).unwrap(), l.object_type, 0x1000);
            assert!(read_int(&l, &mem, 0x1000).is_err());
            assert!(read_int(&l, &mem, 0x9999_0000).is_err());
        }
    }
}
