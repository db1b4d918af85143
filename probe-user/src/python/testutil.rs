//! Builders of fake CPython objects for unit tests on [`FakeMemory`](super::memory::FakeMemory).

use super::offsets::PyLayout;

/// Writes `v` at byte `off` of `buf`, growing it as needed.
pub fn put_u64(buf: &mut Vec<u8>, off: u64, v: u64) {
    let off = off as usize;
    if buf.len() < off + 8 {
        buf.resize(off + 8, 0);
    }
    buf[off..off + 8].copy_from_slice(&v.to_ne_bytes());
}

/// A compact `str` object holding `text` (ASCII or Latin-1 when `kind` is 1, else UCS-2/4).
pub fn str_obj(layout: &PyLayout, text: &str, kind: u32) -> Vec<u8> {
    let ascii = text.is_ascii() && kind == 1;
    let data = if ascii {
        layout.unicode_ascii_data
    } else {
        layout.unicode_compact_data
    };
    let mut buf = vec![0u8; data as usize];
    put_u64(&mut buf, layout.unicode_length, text.chars().count() as u64);
    let mut state =
        (1u64 << layout.unicode_compact_bit) | (u64::from(kind) << layout.unicode_kind_shift);
    if ascii {
        state |= 1 << layout.unicode_ascii_bit;
    }
    let at = layout.unicode_state as usize;
    buf[at..at + 4].copy_from_slice(&(state as u32).to_ne_bytes());
    for c in text.chars() {
        buf.extend_from_slice(&(c as u32).to_ne_bytes()[..kind as usize]);
    }
    buf
}

/// A `bytes` object holding `data`.
pub fn bytes_obj(layout: &PyLayout, data: &[u8]) -> Vec<u8> {
    let mut buf = vec![0u8; layout.bytes_data as usize];
    put_u64(&mut buf, layout.bytes_size, data.len() as u64);
    buf.extend_from_slice(data);
    buf
}

/// A code object (without bytecode) whose fields point at the given objects.
pub fn code_obj(
    layout: &PyLayout,
    filename: u64,
    name: u64,
    linetable: u64,
    first_line: u32,
) -> Vec<u8> {
    let mut buf = vec![0u8; 512];
    put_u64(&mut buf, layout.code_filename, filename);
    put_u64(&mut buf, layout.code_name, name);
    if let Some(q) = layout.code_qualname {
        put_u64(&mut buf, q, name);
    }
    put_u64(&mut buf, layout.code_linetable, linetable);
    let at = layout.code_firstlineno as usize;
    buf[at..at + 4].copy_from_slice(&first_line.to_ne_bytes());
    buf
}

/// A small deterministic pseudo-random byte stream (xorshift).
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut s = seed | 1;
    (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s as u8
        })
        .collect()
}

/// An `int` object of type `ty` holding `value`.
pub fn int_obj(layout: &PyLayout, ty: u64, value: i128) -> Vec<u8> {
    let mask = (1u128 << layout.long_shift) - 1;
    let mut digits = Vec::new();
    let mut rest = value.unsigned_abs();
    while rest != 0 {
        digits.push((rest & mask) as u32);
        rest >>= layout.long_shift;
    }
    let n = digits.len() as u64;
    let header = match layout.long_tag {
        Some(tag) if value < 0 => n << tag.size_shift | tag.negative,
        Some(tag) => n << tag.size_shift,
        None if value < 0 => (n as i64).wrapping_neg() as u64,
        None => n,
    };
    let mut buf = vec![0u8; layout.long_digits as usize];
    put_u64(&mut buf, layout.object_type, ty);
    put_u64(&mut buf, layout.long_size, header);
    buf.truncate(layout.long_digits as usize);
    for d in digits {
        buf.extend_from_slice(&d.to_ne_bytes()[..layout.long_digit_size as usize]);
    }
    buf.resize(buf.len().max(layout.long_digits as usize + 8), 0);
    buf
}

/// A type object with `flags` in `tp_flags` (and, for classes, shared keys `cached_keys`).
pub fn type_obj(layout: &PyLayout, flags: u64, dictoffset: u64, cached_keys: u64) -> Vec<u8> {
    let mut buf = Vec::new();
    put_u64(&mut buf, layout.type_flags, flags);
    put_u64(&mut buf, layout.type_dictoffset, dictoffset);
    put_u64(&mut buf, layout.heaptype_cached_keys, cached_keys);
    buf
}

/// A dict keys object holding `items` (key, value) as entries 0..n; with `unicode` (3.11+)
/// in `PyDictUnicodeEntry` form, else with hashes.
pub fn keys_obj(layout: &PyLayout, items: &[(u64, u64)], unicode: bool) -> Vec<u8> {
    let mut size = 8u64;
    while size * 2 / 3 < items.len() as u64 {
        size *= 2;
    }
    let width = match size {
        0..=0xff => 1,
        0x100..=0xffff => 2,
        _ => 4,
    };
    let mut buf = vec![0u8; layout.keys_indices as usize];
    match layout.keys_log2_index_bytes {
        Some(at) => {
            buf[layout.keys_size as usize] = size.trailing_zeros() as u8;
            buf[at as usize] = (size * width).trailing_zeros() as u8;
        }
        None => put_u64(&mut buf, layout.keys_size, size),
    }
    let (esize, ekey, evalue) = match (layout.keys_kind, layout.unicode_entry) {
        (Some((at, general)), Some(shape)) => {
            buf[at as usize] = if unicode { general + 1 } else { general };
            if unicode {
                shape
            } else {
                (layout.entry_size, layout.entry_key, layout.entry_value)
            }
        }
        _ => (layout.entry_size, layout.entry_key, layout.entry_value),
    };
    put_u64(&mut buf, layout.keys_nentries, items.len() as u64);
    buf.resize((layout.keys_indices + size * width) as usize, 0xff);
    for &(key, value) in items {
        let base = buf.len() as u64;
        buf.resize(buf.len() + esize as usize, 0);
        put_u64(&mut buf, base + ekey, key);
        put_u64(&mut buf, base + evalue, value);
    }
    buf
}

/// A `dict` of type `ty` over keys object `keys` and (for a split table) values `values`.
pub fn dict_obj(layout: &PyLayout, ty: u64, keys: u64, values: u64) -> Vec<u8> {
    let mut buf = Vec::new();
    put_u64(&mut buf, layout.object_type, ty);
    put_u64(&mut buf, layout.dict_keys, keys);
    put_u64(&mut buf, layout.dict_values, values);
    buf
}

/// A `PyDictValues` holding `values` (3.13: with its capacity/valid header).
pub fn values_obj(layout: &PyLayout, values: &[u64]) -> Vec<u8> {
    let mut buf = vec![0u8; layout.values_values as usize];
    if let Some(at) = layout.values_capacity {
        buf[at as usize] = values.len() as u8;
    }
    if let Some(at) = layout.values_valid {
        buf[at as usize] = 1;
    }
    for v in values {
        buf.extend_from_slice(&v.to_ne_bytes());
    }
    buf
}

/// A readable code object `name` in file `file` (first line 1, empty line table).
pub fn code_info(layout: &PyLayout, name: &str, file: &str) -> crate::python::code::CodeInfo {
    const CODE: u64 = 0x9000;
    let mem = crate::python::memory::FakeMemory::new()
        .with(0x1000, str_obj(layout, file, 1))
        .with(0x2000, str_obj(layout, name, 1))
        .with(0x3000, bytes_obj(layout, &[]))
        .with(CODE, code_obj(layout, 0x1000, 0x2000, 0x3000, 1));
    crate::python::code::CodeInfo::read(layout, &mem, CODE).expect("a well-formed code object")
}
