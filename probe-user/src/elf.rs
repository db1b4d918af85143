//! The few ELF64 facts probe needs that blazesym's symbol lookup does not give. Python
//! discovery needs the load bias of a mapped image and the address of a named section
//! (`.PyRuntime`, where 3.12+ place `_PyRuntime`, a fallback when the symbol is missing);
//! symbolization needs section types, the GNU build-id and the `PT_LOAD` segments to pick
//! what to read names from.
//!
//! Only little-endian ELF64 is handled (x86-64 and aarch64, the targets probe supports).
//! Probe opens whatever a process maps, so every read is bounded and every field checked:
//! garbage gives an error or `None`, never a panic or a huge allocation.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// `p_type` of a loadable segment.
const PT_LOAD: u32 = 1;
/// `p_type` of a segment of notes.
const PT_NOTE: u32 = 4;
/// `sh_type` of a full symbol table (`.symtab`).
pub const SHT_SYMTAB: u32 = 2;
/// `sh_type` of a section of notes.
const SHT_NOTE: u32 = 7;
/// `sh_type` of a section that occupies no file space (its contents were stripped into a
/// separate debug file, or it is `.bss`).
const SHT_NOBITS: u32 = 8;
/// `e_shstrndx` meaning "the index is in section 0's `sh_link`".
const SHN_XINDEX: u64 = 0xffff;
/// Note type of the GNU build-id.
const NT_GNU_BUILD_ID: u32 = 3;

/// Sizes of the 64-bit header, program header and section header.
const EHDR_SIZE: usize = 64;
const PHDR_SIZE: u64 = 56;
const SHDR_SIZE: u64 = 64;
/// Largest header entry size accepted (the real ones are 56 and 64 bytes).
const MAX_ENTRY_SIZE: u64 = 256;
/// Most program or section headers considered; more means garbage.
const MAX_HEADERS: u64 = 4096;
/// Most bytes of section names read (real tables hold a few KiB at most).
const MAX_SECTION_NAMES: u64 = 1 << 20;
/// Most bytes of one note segment or section read (build-ids sit in tiny ones).
const MAX_NOTES: u64 = 1 << 16;
/// Longest build-id accepted (SHA-1 ones are 20 bytes).
const MAX_BUILD_ID: usize = 64;
/// Page mask used by the loader's mappings.
const PAGE_MASK: u64 = !0xfff;

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_owned())
}

/// Little-endian integers at `at`; 0 past the end (callers check lengths beforehand, this
/// only keeps a mistake from panicking).
fn u16_at(b: &[u8], at: usize) -> u64 {
    let bytes = b.get(at..at + 2).and_then(|s| s.try_into().ok());
    bytes.map_or(0, |bytes| u64::from(u16::from_le_bytes(bytes)))
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let bytes = b.get(at..at + 4).and_then(|s| s.try_into().ok());
    bytes.map_or(0, u32::from_le_bytes)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let bytes = b.get(at..at + 8).and_then(|s| s.try_into().ok());
    bytes.map_or(0, u64::from_le_bytes)
}

/// Read `len` bytes at `offset`, refusing lengths that do not fit in memory.
fn read_at(file: &File, offset: u64, len: u64) -> io::Result<Vec<u8>> {
    let len = usize::try_from(len).map_err(|_| invalid("length out of range"))?;
    let mut buf = vec![0u8; len];
    file.read_exact_at(&mut buf, offset)?;
    Ok(buf)
}

/// A loadable segment: file bytes `offset..offset + file_size` are mapped at `vaddr`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoadSegment {
    /// `p_offset`.
    pub offset: u64,
    /// `p_vaddr`.
    pub vaddr: u64,
    /// `p_filesz`.
    pub file_size: u64,
}

/// The virtual address of `file_offset` per `segments`; `None` when no segment holds it.
pub fn virtual_address(segments: &[LoadSegment], file_offset: u64) -> Option<u64> {
    segments.iter().find_map(|segment| {
        let delta = file_offset.checked_sub(segment.offset)?;
        if delta >= segment.file_size {
            return None;
        }
        segment.vaddr.checked_add(delta)
    })
}

/// One program header.
#[derive(Clone, Copy, Debug)]
struct ProgramHeader {
    kind: u32,
    offset: u64,
    vaddr: u64,
    file_size: u64,
    align: u64,
}

/// One section header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SectionHeader {
    /// Offset of the name in the section-name table.
    name: u32,
    /// `sh_type`.
    pub kind: u32,
    /// `sh_addr`.
    pub addr: u64,
    /// `sh_offset`.
    pub offset: u64,
    /// `sh_size`.
    pub size: u64,
    /// `sh_addralign`.
    pub align: u64,
}

impl SectionHeader {
    /// Whether the file holds the section's bytes: not `SHT_NOBITS` (the type `strip
    /// --only-keep-debug` gives everything it moved out) and not empty.
    pub fn has_contents(&self) -> bool {
        self.kind != SHT_NOBITS && self.size > 0
    }
}

/// The section headers and their names.
#[derive(Debug, Default)]
pub struct Sections {
    headers: Vec<SectionHeader>,
    names: Vec<u8>,
}

impl Sections {
    /// The first section called `name`.
    pub fn find(&self, name: &str) -> Option<&SectionHeader> {
        self.headers
            .iter()
            .find(|header| self.name_of(header) == Some(name.as_bytes()))
    }

    fn name_of(&self, header: &SectionHeader) -> Option<&[u8]> {
        let rest = self.names.get(usize::try_from(header.name).ok()?..)?;
        let end = rest.iter().position(|&b| b == 0)?;
        rest.get(..end)
    }
}

/// An open ELF64 file whose header was checked.
pub struct ElfFile<'f> {
    file: &'f File,
    phoff: u64,
    phentsize: u64,
    phnum: u64,
    shoff: u64,
    shentsize: u64,
    shnum: u64,
    shstrndx: u64,
}

impl<'f> ElfFile<'f> {
    /// Read and check the ELF header.
    pub fn new(file: &'f File) -> io::Result<ElfFile<'f>> {
        let mut h = [0u8; EHDR_SIZE];
        file.read_exact_at(&mut h, 0)?;
        if &h[..4] != b"\x7fELF" || h[4] != 2 || h[5] != 1 {
            return Err(invalid("not a little-endian ELF64 file"));
        }
        Ok(ElfFile {
            file,
            phoff: u64_at(&h, 32),
            shoff: u64_at(&h, 40),
            phentsize: u16_at(&h, 54),
            phnum: u16_at(&h, 56),
            shentsize: u16_at(&h, 58),
            shnum: u16_at(&h, 60),
            shstrndx: u16_at(&h, 62),
        })
    }

    /// `count` header entries of `entsize` (at least `min_size`) bytes from `offset`, read
    /// at once and parsed by `parse`.
    fn table<T>(
        &self,
        (offset, entsize, count): (u64, u64, u64),
        min_size: u64,
        parse: impl Fn(&[u8]) -> T,
    ) -> io::Result<Vec<T>> {
        if count == 0 {
            return Ok(Vec::new());
        }
        if !(min_size..=MAX_ENTRY_SIZE).contains(&entsize) || count > MAX_HEADERS {
            return Err(invalid("implausible ELF header table"));
        }
        let bytes = read_at(self.file, offset, entsize * count)?;
        // `entsize` is at least `min_size`, so never 0, and each chunk holds a whole entry.
        Ok(bytes.chunks_exact(entsize as usize).map(parse).collect())
    }

    fn program_headers(&self) -> io::Result<Vec<ProgramHeader>> {
        let parse = |ph: &[u8]| ProgramHeader {
            kind: u32_at(ph, 0),
            offset: u64_at(ph, 8),
            vaddr: u64_at(ph, 16),
            file_size: u64_at(ph, 32),
            align: u64_at(ph, 48),
        };
        self.table((self.phoff, self.phentsize, self.phnum), PHDR_SIZE, parse)
    }

    /// The `PT_LOAD` segments, in file order.
    pub fn load_segments(&self) -> io::Result<Vec<LoadSegment>> {
        let headers = self.program_headers()?;
        let loads = headers.iter().filter(|ph| ph.kind == PT_LOAD);
        Ok(loads
            .map(|ph| LoadSegment {
                offset: ph.offset,
                vaddr: ph.vaddr,
                file_size: ph.file_size,
            })
            .collect())
    }

    /// The section headers and names; empty for a file without section headers.
    pub fn sections(&self) -> io::Result<Sections> {
        if self.shoff == 0 {
            return Ok(Sections::default());
        }
        let (mut shnum, mut shstrndx) = (self.shnum, self.shstrndx);
        // 65280+ sections or a high name-table index: the real values are in section 0.
        if shnum == 0 || shstrndx == SHN_XINDEX {
            let first = self.table((self.shoff, self.shentsize, 1), SHDR_SIZE, |sh| {
                (u64_at(sh, 32), u32_at(sh, 40))
            })?;
            let (size, link) = first.first().copied().unwrap_or_default();
            if shnum == 0 {
                shnum = size;
            }
            if shstrndx == SHN_XINDEX {
                shstrndx = u64::from(link);
            }
        }
        let parse = |sh: &[u8]| SectionHeader {
            name: u32_at(sh, 0),
            kind: u32_at(sh, 4),
            addr: u64_at(sh, 16),
            offset: u64_at(sh, 24),
            size: u64_at(sh, 32),
            align: u64_at(sh, 48),
        };
        let headers = self.table((self.shoff, self.shentsize, shnum), SHDR_SIZE, parse)?;
        if headers.is_empty() {
            return Ok(Sections::default());
        }
        let names = match usize::try_from(shstrndx).ok().and_then(|i| headers.get(i)) {
            Some(strtab) if strtab.has_contents() && strtab.size <= MAX_SECTION_NAMES => {
                read_at(self.file, strtab.offset, strtab.size)?
            }
            _ => return Err(invalid("no readable section-name table")),
        };
        Ok(Sections { headers, names })
    }

    /// The GNU build-id, from the note segments (or, for a file without program headers,
    /// the note sections); `None` when there is none.
    pub fn build_id(&self) -> io::Result<Option<Vec<u8>>> {
        let segments = self
            .program_headers()?
            .into_iter()
            .filter(|ph| ph.kind == PT_NOTE);
        let mut regions: Vec<(u64, u64, u64)> = segments
            .map(|ph| (ph.offset, ph.file_size, ph.align))
            .collect();
        if regions.is_empty() {
            let sections = self.sections()?;
            let notes = sections.headers.iter().filter(|sh| sh.kind == SHT_NOTE);
            regions.extend(notes.map(|sh| (sh.offset, sh.size, sh.align)));
        }
        for (offset, size, align) in regions {
            // A damaged note region does not hide a build-id in the next one.
            let Ok(notes) = read_at(self.file, offset, size.min(MAX_NOTES)) else {
                continue;
            };
            if let Some(id) = gnu_build_id(&notes, align) {
                return Ok(Some(id.to_vec()));
            }
        }
        Ok(None)
    }

    /// Process address minus file virtual address, given the image's mappings as
    /// (start address, file offset) pairs: the first `PT_LOAD` segment whose page-aligned
    /// file offset is mapped fixes it.
    pub fn load_bias(&self, mapped: &[(u64, u64)]) -> io::Result<u64> {
        for segment in self.load_segments()? {
            let found = mapped
                .iter()
                .find(|&&(_, off)| off == segment.offset & PAGE_MASK);
            if let Some(&(start, _)) = found {
                return Ok(start.wrapping_sub(segment.vaddr & PAGE_MASK));
            }
        }
        Err(invalid("no PT_LOAD segment of the image is mapped"))
    }
}

/// The descriptor of the first `NT_GNU_BUILD_ID` note owned by "GNU" in a block of notes
/// whose fields are padded to `align` (4, or 8 in segments aligned so).
fn gnu_build_id(notes: &[u8], align: u64) -> Option<&[u8]> {
    let pad = |len: usize| -> Option<usize> {
        let align = if align == 8 { 8 } else { 4 };
        Some(len.checked_add(align - 1)? & !(align - 1))
    };
    let mut at = 0usize;
    while let Some(head) = notes.get(at..at.checked_add(12)?) {
        let name_size = usize::try_from(u32_at(head, 0)).ok()?;
        let desc_size = usize::try_from(u32_at(head, 4)).ok()?;
        let name_at = at + 12;
        let desc_at = name_at.checked_add(pad(name_size)?)?;
        let name = notes.get(name_at..name_at.checked_add(name_size)?)?;
        let desc = notes.get(desc_at..desc_at.checked_add(desc_size)?)?;
        if u32_at(head, 8) == NT_GNU_BUILD_ID && name == b"GNU\0" {
            return (1..=MAX_BUILD_ID).contains(&desc.len()).then_some(desc);
        }
        at = desc_at.checked_add(pad(desc_size)?)?;
    }
    None
}

/// Process address minus file virtual address of the image in `file`; see
/// [`ElfFile::load_bias`].
pub fn load_bias(file: &File, mapped: &[(u64, u64)]) -> io::Result<u64> {
    ElfFile::new(file)?.load_bias(mapped)
}

/// The virtual address of the section called `name`, if the file has one.
pub fn section_addr(file: &File, name: &str) -> io::Result<Option<u64>> {
    let sections = ElfFile::new(file)?.sections()?;
    Ok(sections.find(name).map(|section| section.addr))
}

/// The libc this (test) process maps: a real, stripped ELF file on every machine probe
/// runs on.
#[cfg(test)]
pub(crate) fn mapped_libc_path() -> std::path::PathBuf {
    let maps = crate::procmaps::MapsFile::read(std::process::id()).expect("maps");
    let path = maps
        .lines()
        .filter_map(|line| line.file_path())
        .find(|path| path.as_os_str().to_string_lossy().contains("/libc.so"))
        .expect("libc mapped");
    path.into()
}

#[cfg(test)]
mod tests;
