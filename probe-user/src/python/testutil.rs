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
