//! Code objects: qualified name, file, first line and line table, read once per
//! (pid, code address) and cached.
//!
//! A cached entry can go stale: the code object may be freed and its address reused by a
//! different one. Each entry therefore keeps a fingerprint (the pointers to filename,
//! name and line table, plus `co_firstlineno`), which [`CodeCache::get`] re-reads (one small
//! read) and compares before trusting the entry.

use std::collections::HashMap;
use std::sync::Arc;

use super::linetable;
use super::memory::{MemoryError, ProcessMemory, ReadExt};
use super::offsets::{LineTableKind, PyLayout};

/// Longest string (in code points) read from a target; longer means garbage.
pub const MAX_STR_CHARS: u64 = 4096;
/// Largest line table read; longer means garbage.
pub const MAX_LINE_TABLE: u64 = 1 << 20;
/// Entries kept per [`CodeCache`] before it is cleared.
pub const MAX_CACHED: usize = 1 << 16;

/// Why a code object could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CodeError {
    #[error("failed to read code object {addr:#x}")]
    Memory {
        addr: u64,
        #[source]
        source: MemoryError,
    },
    /// A field does not hold what it should (not a compact string, absurd length, ...).
    #[error("code object {addr:#x}: {what}")]
    Invalid { addr: u64, what: &'static str },
}

/// What a code object says about where it comes from.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CodeInfo {
    /// `co_qualname` (3.11+) or `co_name` (3.8–3.10, which have no qualified name).
    pub qualname: String,
    /// `co_name`.
    pub name: String,
    /// `co_filename`.
    pub filename: String,
    /// `co_firstlineno`.
    pub first_line: u32,
    line_table: Vec<u8>,
    line_kind: LineTableKind,
}

impl CodeInfo {
    /// Reads the code object at `addr`.
    pub fn read(
        layout: &PyLayout,
        mem: &dyn ProcessMemory,
        addr: u64,
    ) -> Result<CodeInfo, CodeError> {
        let fp = Fingerprint::read(layout, mem, addr)?;
        let strings = StringReader {
            layout,
            mem,
            code: addr,
        };
        let name = strings.unicode(fp.name)?;
        let qualname = match fp.qualname {
            Some(q) => strings.unicode(q)?,
            None => name.clone(),
        };
        Ok(CodeInfo {
            qualname,
            name,
            filename: strings.unicode(fp.filename)?,
            first_line: fp.first_line,
            line_table: strings.bytes(fp.line_table)?,
            line_kind: layout.line_table,
        })
    }

    /// The source line of the instruction at bytecode byte offset `offset` (as produced by
    /// the frame walker), or `None` if the table gives it no line.
    pub fn line_for(&self, offset: u32) -> Option<u32> {
        linetable::line_for(self.line_kind, &self.line_table, self.first_line, offset)
    }
}

/// The cheap identity of a code object: re-read on every cache hit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Fingerprint {
    filename: u64,
    name: u64,
    qualname: Option<u64>,
    line_table: u64,
    first_line: u32,
}

impl Fingerprint {
    /// Reads the fields in one read spanning them all.
    fn read(
        layout: &PyLayout,
        mem: &dyn ProcessMemory,
        addr: u64,
    ) -> Result<Fingerprint, CodeError> {
        let fields = [
            Some(layout.code_filename),
            Some(layout.code_name),
            layout.code_qualname,
            Some(layout.code_linetable),
            Some(layout.code_firstlineno),
        ];
        let lo = fields.iter().flatten().copied().min().unwrap_or(0);
        let hi = fields.iter().flatten().copied().max().unwrap_or(0) + 8;
        let start = addr.checked_add(lo).ok_or(CodeError::Invalid {
            addr,
            what: "address overflows",
        })?;
        let span = mem
            .read_vec(start, (hi - lo) as usize)
            .map_err(|source| CodeError::Memory { addr, source })?;
        let u64_at = |off: u64| read_ne::<8>(&span, off - lo).map(u64::from_ne_bytes);
        let first_line = read_ne::<4>(&span, layout.code_firstlineno - lo).map(i32::from_ne_bytes);
        let first_line =
            u32::try_from(first_line.unwrap_or(-1)).map_err(|_| CodeError::Invalid {
                addr,
                what: "negative co_firstlineno",
            })?;
        Ok(Fingerprint {
            filename: u64_at(layout.code_filename).unwrap_or(0),
            name: u64_at(layout.code_name).unwrap_or(0),
            qualname: layout.code_qualname.and_then(u64_at),
            line_table: u64_at(layout.code_linetable).unwrap_or(0),
            first_line,
        })
    }
}

/// `N` bytes at `off` of `span`.
fn read_ne<const N: usize>(span: &[u8], off: u64) -> Option<[u8; N]> {
    let off = usize::try_from(off).ok()?;
    span.get(off..off.checked_add(N)?)?.try_into().ok()
}

/// Reads `str` and `bytes` objects referenced by one code object (for error context).
struct StringReader<'a> {
    layout: &'a PyLayout,
    mem: &'a dyn ProcessMemory,
    code: u64,
}

impl StringReader<'_> {
    fn memory(&self, source: MemoryError) -> CodeError {
        CodeError::Memory {
            addr: self.code,
            source,
        }
    }

    fn invalid(&self, what: &'static str) -> CodeError {
        CodeError::Invalid {
            addr: self.code,
            what,
        }
    }

    /// A compact `str` (every str a code object holds is compact) as a Rust string.
    fn unicode(&self, obj: u64) -> Result<String, CodeError> {
        let l = self.layout;
        let len = self
            .mem
            .read_u64(obj.wrapping_add(l.unicode_length))
            .map_err(|e| self.memory(e))?;
        let state = self
            .mem
            .read_u32(obj.wrapping_add(l.unicode_state))
            .map_err(|e| self.memory(e))?;
        if len > MAX_STR_CHARS {
            return Err(self.invalid("string longer than the limit"));
        }
        if state >> l.unicode_compact_bit & 1 == 0 {
            return Err(self.invalid("string is not compact"));
        }
        let ascii = state >> l.unicode_ascii_bit & 1 == 1;
        let kind = if ascii {
            1
        } else {
            state >> l.unicode_kind_shift & 7
        };
        let data = obj.wrapping_add(if ascii {
            l.unicode_ascii_data
        } else {
            l.unicode_compact_data
        });
        let raw = self
            .mem
            .read_vec(data, (len * u64::from(kind)) as usize)
            .map_err(|e| self.memory(e))?;
        decode(&raw, kind).ok_or_else(|| self.invalid("bad string kind"))
    }

    /// A `bytes` object's contents.
    fn bytes(&self, obj: u64) -> Result<Vec<u8>, CodeError> {
        let len = self
            .mem
            .read_u64(obj.wrapping_add(self.layout.bytes_size))
            .map_err(|e| self.memory(e))?;
        if len > MAX_LINE_TABLE {
            return Err(self.invalid("line table longer than the limit"));
        }
        self.mem
            .read_vec(obj.wrapping_add(self.layout.bytes_data), len as usize)
            .map_err(|e| self.memory(e))
    }
}

/// Decodes `kind`-byte code points (1: Latin-1, 2: UCS-2, 4: UCS-4).
pub(crate) fn decode(raw: &[u8], kind: u32) -> Option<String> {
    let chars: Vec<u32> = match kind {
        1 => raw.iter().map(|&b| u32::from(b)).collect(),
        2 => raw
            .chunks_exact(2)
            .map(|c| u32::from(u16::from_ne_bytes([c[0], c[1]])))
            .collect(),
        4 => raw
            .chunks_exact(4)
            .map(|c| u32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        _ => return None,
    };
    Some(
        chars
            .into_iter()
            .map(|c| char::from_u32(c).unwrap_or('\u{fffd}'))
            .collect(),
    )
}

/// Code objects already read, per (pid, code address), each re-validated on lookup.
#[derive(Debug, Default)]
pub struct CodeCache {
    entries: HashMap<(u32, u64), (Fingerprint, Arc<CodeInfo>)>,
}

impl CodeCache {
    /// An empty cache.
    pub fn new() -> CodeCache {
        CodeCache::default()
    }

    /// The code object at `addr` in process `pid`: cached if its fingerprint still matches,
    /// otherwise (re)read from `mem`.
    pub fn get(
        &mut self,
        pid: u32,
        layout: &PyLayout,
        mem: &dyn ProcessMemory,
        addr: u64,
    ) -> Result<Arc<CodeInfo>, CodeError> {
        let fp = Fingerprint::read(layout, mem, addr)?;
        if let Some((cached_fp, info)) = self.entries.get(&(pid, addr)) {
            if *cached_fp == fp {
                return Ok(Arc::clone(info));
            }
        }
        let info = Arc::new(CodeInfo::read(layout, mem, addr)?);
        if self.entries.len() >= MAX_CACHED {
            self.entries.clear();
        }
        self.entries.insert((pid, addr), (fp, Arc::clone(&info)));
        Ok(info)
    }

    /// Forgets everything about `pid` (call when it exits).
    pub fn forget_process(&mut self, pid: u32) {
        self.entries.retain(|&(p, _), _| p != pid);
    }

    /// Number of cached code objects.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::python::memory::FakeMemory;
    use crate::python::testutil::{bytes_obj, code_obj, str_obj};

    const CODE: u64 = 0x10_0000;

    /// A 3.11 code object named `name`, in file `f.py`, first line 10, with a
    /// location table putting code units 0..2 on line 11.
    fn memory(layout: &PyLayout, name: &str) -> FakeMemory {
        let table = [0x80 | (13 << 3) | 1, 2];
        FakeMemory::new()
            .with(0x1000, str_obj(layout, "f.py", 1))
            .with(0x2000, str_obj(layout, name, 2))
            .with(0x3000, bytes_obj(layout, &table))
            .with(CODE, code_obj(layout, 0x1000, 0x2000, 0x3000, 10))
    }

    #[test]
    fn code_info_reads_names_and_lines() {
        let layout = PyLayout::table_row(3, 11).unwrap();
        let info = CodeInfo::read(&layout, &memory(&layout, "spïn"), CODE).unwrap();
        assert_eq!(
            (info.qualname.as_str(), info.filename.as_str()),
            ("spïn", "f.py")
        );
        assert_eq!(
            (info.first_line, info.line_for(2), info.line_for(4)),
            (10, Some(11), None)
        );
    }

    #[test]
    fn cache_notices_a_reused_address() {
        let layout = PyLayout::table_row(3, 11).unwrap();
        let mut mem = memory(&layout, "first");
        let mut cache = CodeCache::new();
        assert_eq!(cache.get(1, &layout, &mem, CODE).unwrap().name, "first");
        // The code object is freed and another one is allocated at the same address.
        mem.insert(0x4000, str_obj(&layout, "second", 1));
        mem.insert(CODE, code_obj(&layout, 0x1000, 0x4000, 0x3000, 10));
        assert_eq!(cache.get(1, &layout, &mem, CODE).unwrap().name, "second");
        assert_eq!(cache.len(), 1);
        cache.forget_process(1);
        assert!(cache.is_empty());
    }

    #[test]
    fn garbage_code_objects_are_errors() {
        let layout = PyLayout::table_row(3, 9).unwrap();
        for seed in 0..200 {
            let mut mem = FakeMemory::new().with(CODE, crate::python::testutil::noise(seed, 512));
            mem.insert(0, crate::python::testutil::noise(seed + 1, 4096));
            let _ = CodeInfo::read(&layout, &mem, CODE);
        }
        let err = CodeInfo::read(&layout, &FakeMemory::new(), CODE).unwrap_err();
        assert!(matches!(err, CodeError::Memory { .. }), "{err}");
    }
}
