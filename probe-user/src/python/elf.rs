//! The two facts discovery needs from an ELF64 file that blazesym's symbol lookup does not
//! give: the load bias of a mapped image, and the address of a named section (`.PyRuntime`,
//! where 3.12+ place `_PyRuntime`, a fallback when the symbol is missing).
//!
//! Only little-endian ELF64 is handled (x86-64 and aarch64, the targets probe supports).

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// `p_type` of a loadable segment.
const PT_LOAD: u32 = 1;
/// Most program or section headers considered; more means garbage.
const MAX_HEADERS: u64 = 4096;
/// Page mask used by the loader's mappings.
const PAGE_MASK: u64 = !0xfff;

/// The fields of the ELF header used here.
struct Header {
    phoff: u64,
    phentsize: u64,
    phnum: u64,
    shoff: u64,
    shentsize: u64,
    shnum: u64,
    shstrndx: u64,
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

fn u16_at(b: &[u8], at: usize) -> u64 {
    u64::from(u16::from_le_bytes([b[at], b[at + 1]]))
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(w)
}

fn header(file: &File) -> io::Result<Header> {
    let mut h = [0u8; 64];
    file.read_exact_at(&mut h, 0)?;
    if &h[..4] != b"\x7fELF" || h[4] != 2 || h[5] != 1 {
        return Err(invalid("not a little-endian ELF64 file"));
    }
    Ok(Header {
        phoff: u64_at(&h, 32),
        shoff: u64_at(&h, 40),
        phentsize: u16_at(&h, 54),
        phnum: u16_at(&h, 56).min(MAX_HEADERS),
        shentsize: u16_at(&h, 58),
        shnum: u16_at(&h, 60).min(MAX_HEADERS),
        shstrndx: u16_at(&h, 62),
    })
}

/// Process address minus file virtual address, given the image's mappings as
/// (start address, file offset) pairs: the first `PT_LOAD` segment whose page-aligned file
/// offset is mapped fixes it.
pub fn load_bias(file: &File, mapped: &[(u64, u64)]) -> io::Result<u64> {
    let h = header(file)?;
    let mut ph = [0u8; 56];
    for i in 0..h.phnum {
        file.read_exact_at(&mut ph, h.phoff + i * h.phentsize)?;
        if u32_at(&ph, 0) != PT_LOAD {
            continue;
        }
        let (p_offset, p_vaddr) = (u64_at(&ph, 8), u64_at(&ph, 16));
        let found = mapped.iter().find(|&&(_, off)| off == p_offset & PAGE_MASK);
        if let Some(&(start, _)) = found {
            return Ok(start.wrapping_sub(p_vaddr & PAGE_MASK));
        }
    }
    Err(invalid("no PT_LOAD segment of the image is mapped"))
}

/// The virtual address of the section called `name`, if the file has one.
pub fn section_addr(file: &File, name: &str) -> io::Result<Option<u64>> {
    let h = header(file)?;
    let section = |i: u64| -> io::Result<[u8; 64]> {
        let mut sh = [0u8; 64];
        file.read_exact_at(&mut sh, h.shoff + i * h.shentsize)?;
        Ok(sh)
    };
    let strtab = section(h.shstrndx)?;
    let names_at = u64_at(&strtab, 24);
    let mut buf = vec![0u8; name.len() + 1];
    for i in 0..h.shnum {
        let sh = section(i)?;
        if file
            .read_exact_at(&mut buf, names_at + u64::from(u32_at(&sh, 0)))
            .is_err()
        {
            continue;
        }
        if &buf[..name.len()] == name.as_bytes() && buf[name.len()] == 0 {
            return Ok(Some(u64_at(&sh, 16)));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_executable_parses() {
        let file = File::open("/proc/self/exe").unwrap();
        assert!(section_addr(&file, ".text").unwrap().is_some());
        assert_eq!(section_addr(&file, ".no-such-section").unwrap(), None);
        // Mapped at file offset 0 of the first PT_LOAD: bias is start minus its vaddr.
        assert_eq!(
            load_bias(&file, &[(0x5555_0000_0000, 0)]).unwrap() & 0xfff,
            0
        );
        assert!(load_bias(&file, &[]).is_err());
        let not_elf = File::open("/proc/self/maps").unwrap();
        assert!(section_addr(&not_elf, ".text").is_err());
    }
}
