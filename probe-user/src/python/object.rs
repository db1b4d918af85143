//! Reading plain Python objects of a target: type checks by `tp_flags`, and `str` values.
//!
//! Everything here reads memory the target keeps changing, so every length is bounded and
//! every type is checked before its fields are trusted; garbage gives an [`ObjectError`],
//! never a panic or an unbounded read.

use super::code::decode;
use super::memory::{MemoryError, ProcessMemory, ReadExt};
use super::offsets::PyLayout;

/// Why an object of the target could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    /// A read failed (unmapped, process gone, no permission).
    #[error("failed to read object {addr:#x}")]
    Memory {
        addr: u64,
        #[source]
        source: MemoryError,
    },
    /// The object is not of the expected type.
    #[error("object {addr:#x} is not a {expected}")]
    WrongType { addr: u64, expected: &'static str },
    /// A field holds something the object cannot hold.
    #[error("object {addr:#x}: {what}")]
    Invalid { addr: u64, what: &'static str },
    /// A size is beyond probe's limit for such objects.
    #[error("object {addr:#x}: {what} is {value}, beyond the limit of {limit}")]
    TooLarge {
        addr: u64,
        what: &'static str,
        value: u64,
        limit: u64,
    },
}

impl ObjectError {
    /// Wraps a failed read of object `addr`.
    pub fn memory(addr: u64) -> impl FnOnce(MemoryError) -> ObjectError {
        move |source| ObjectError::Memory { addr, source }
    }
}

/// Reads the `u64` at `obj + off`, attributing failures to `obj`.
pub(crate) fn field(mem: &dyn ProcessMemory, obj: u64, off: u64) -> Result<u64, ObjectError> {
    mem.read_u64(obj.wrapping_add(off))
        .map_err(ObjectError::memory(obj))
}

/// `(type, tp_flags)` of the object at `obj`.
pub fn type_and_flags(
    layout: &PyLayout,
    mem: &dyn ProcessMemory,
    obj: u64,
) -> Result<(u64, u64), ObjectError> {
    if obj == 0 {
        return Err(ObjectError::Invalid {
            addr: obj,
            what: "null object pointer",
        });
    }
    let ty = field(mem, obj, layout.object_type)?;
    let flags = field(mem, ty, layout.type_flags).map_err(|_| ObjectError::Invalid {
        addr: obj,
        what: "unreadable type",
    })?;
    Ok((ty, flags))
}

/// Fails with [`ObjectError::WrongType`] unless `obj`'s type has `flag` in `tp_flags`.
pub fn expect_flag(
    layout: &PyLayout,
    mem: &dyn ProcessMemory,
    obj: u64,
    flag: u64,
    expected: &'static str,
) -> Result<(), ObjectError> {
    let (_, flags) = type_and_flags(layout, mem, obj)?;
    if flags & flag == 0 {
        return Err(ObjectError::WrongType {
            addr: obj,
            expected,
        });
    }
    Ok(())
}

/// The `str` at `obj`, at most `max_bytes` bytes of character data read (longer strings are
/// cut at a character boundary). Only compact strings are supported (every exact `str`
/// Python code creates is compact). Code points that are not valid `char`s (lone
/// surrogates) become U+FFFD: names are untrusted text, kept lossily.
pub fn read_str(
    layout: &PyLayout,
    mem: &dyn ProcessMemory,
    obj: u64,
    max_bytes: usize,
) -> Result<String, ObjectError> {
    read_str_prefix(layout, mem, obj, max_bytes).map(|(text, _)| text)
}

/// [`read_str`], and whether the string was cut (it is longer than what was read).
pub fn read_str_prefix(
    layout: &PyLayout,
    mem: &dyn ProcessMemory,
    obj: u64,
    max_bytes: usize,
) -> Result<(String, bool), ObjectError> {
    expect_flag(layout, mem, obj, layout.tpflags_unicode_subclass, "str")?;
    let (len, kind, data) = str_header(layout, mem, obj)?;
    let chars = len.min((max_bytes / kind as usize) as u64);
    let raw = mem
        .read_vec(data, (chars * u64::from(kind)) as usize)
        .map_err(ObjectError::memory(obj))?;
    let text = decode(&raw, kind).ok_or(ObjectError::Invalid {
        addr: obj,
        what: "bad str kind",
    })?;
    Ok((text, chars < len))
}

/// Whether the `str` at `obj` equals `want` (cheap for strings of another length).
pub fn str_equals(
    layout: &PyLayout,
    mem: &dyn ProcessMemory,
    obj: u64,
    want: &str,
) -> Result<bool, ObjectError> {
    expect_flag(layout, mem, obj, layout.tpflags_unicode_subclass, "str")?;
    let (len, _, _) = str_header(layout, mem, obj)?;
    if len != want.chars().count() as u64 {
        return Ok(false);
    }
    Ok(read_str(layout, mem, obj, want.len() * 4)? == want)
}

/// (length in code points, bytes per code point, address of the characters).
fn str_header(
    layout: &PyLayout,
    mem: &dyn ProcessMemory,
    obj: u64,
) -> Result<(u64, u32, u64), ObjectError> {
    let len = field(mem, obj, layout.unicode_length)?;
    let state = mem
        .read_u32(obj.wrapping_add(layout.unicode_state))
        .map_err(ObjectError::memory(obj))?;
    if len > i64::MAX as u64 {
        return Err(ObjectError::Invalid {
            addr: obj,
            what: "negative str length",
        });
    }
    if state >> layout.unicode_compact_bit & 1 == 0 {
        return Err(ObjectError::Invalid {
            addr: obj,
            what: "str is not compact",
        });
    }
    let ascii = state >> layout.unicode_ascii_bit & 1 == 1;
    let kind = if ascii {
        1
    } else {
        state >> layout.unicode_kind_shift & 7
    };
    if !matches!(kind, 1 | 2 | 4) {
        return Err(ObjectError::Invalid {
            addr: obj,
            what: "bad str kind",
        });
    }
    let data = if ascii {
        layout.unicode_ascii_data
    } else {
        layout.unicode_compact_data
    };
    Ok((len, kind, obj.wrapping_add(data)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::python::memory::FakeMemory;
    use crate::python::testutil::{put_u64, str_obj};

    const STR_TYPE: u64 = 0x100;
    const INT_TYPE: u64 = 0x200;

    /// Memory with a `str` type and an `int` type object, and `text` (of `kind`) at 0x1000.
    fn memory(layout: &PyLayout, text: &str, kind: u32) -> FakeMemory {
        let mut s = str_obj(layout, text, kind);
        put_u64(&mut s, layout.object_type, STR_TYPE);
        FakeMemory::new()
            .with(STR_TYPE, type_obj(layout, layout.tpflags_unicode_subclass))
            .with(INT_TYPE, type_obj(layout, layout.tpflags_long_subclass))
            .with(0x1000, s)
    }

    fn type_obj(layout: &PyLayout, flags: u64) -> Vec<u8> {
        let mut t = Vec::new();
        put_u64(&mut t, layout.type_flags, flags);
        t
    }

    #[test]
    fn strings_of_every_kind_are_read() {
        for minor in 8..=13 {
            let l = PyLayout::table_row(3, minor).unwrap();
            for (text, kind) in [("MainThread", 1), ("nïce", 1), ("нить-✓", 2), ("🧵x", 4)]
            {
                let mem = memory(&l, text, kind);
                assert_eq!(read_str(&l, &mem, 0x1000, 1024).unwrap(), text, "3.{minor}");
                assert!(str_equals(&l, &mem, 0x1000, text).unwrap());
                assert!(!str_equals(&l, &mem, 0x1000, "other").unwrap());
            }
        }
    }

    #[test]
    fn long_strings_are_cut_at_the_cap() {
        let l = PyLayout::table_row(3, 12).unwrap();
        let text = "ж".repeat(2000);
        let mem = memory(&l, &text, 2);
        let got = read_str(&l, &mem, 0x1000, 1024).unwrap();
        assert_eq!(got.chars().count(), 512);
    }

    #[test]
    fn malformed_strings_are_errors() {
        let l = PyLayout::table_row(3, 11).unwrap();
        let mut mem = memory(&l, "abc", 1);
        // Not a str: its type lacks the flag.
        let obj = mem.region_mut(0x1000).unwrap();
        put_u64(obj, l.object_type, INT_TYPE);
        let err = read_str(&l, &mem, 0x1000, 1024).unwrap_err();
        assert!(matches!(err, ObjectError::WrongType { .. }), "{err}");
        // A huge length is read only up to the cap, and then the data is unmapped.
        let obj = mem.region_mut(0x1000).unwrap();
        put_u64(obj, l.object_type, STR_TYPE);
        put_u64(obj, l.unicode_length, 1 << 40);
        let err = read_str(&l, &mem, 0x1000, 1024).unwrap_err();
        assert!(matches!(err, ObjectError::Memory { .. }), "{err}");
        // Kind 3 does not exist.
        let obj = mem.region_mut(0x1000).unwrap();
        put_u64(obj, l.unicode_length, 3);
        let state = (1u32 << l.unicode_compact_bit) | (3 << l.unicode_kind_shift);
        let at = l.unicode_state as usize;
        obj[at..at + 4].copy_from_slice(&state.to_ne_bytes());
        let err = read_str(&l, &mem, 0x1000, 1024).unwrap_err();
        assert!(matches!(err, ObjectError::Invalid { .. }), "{err}");
        // Null and unmapped objects.
        assert!(read_str(&l, &mem, 0, 1024).is_err());
        assert!(read_str(&l, &mem, 0xdead_0000, 1024).is_err());
    }
}
