use std::path::PathBuf;

use super::*;
use crate::procmaps::ProcessMaps;

/// A file in the temp directory, removed when dropped.
struct TempFile(PathBuf);

impl TempFile {
    fn new(tag: &str, bytes: &[u8]) -> TempFile {
        let name = format!("probe-elf-{tag}-{}", std::process::id());
        let path = std::env::temp_dir().join(name);
        std::fs::write(&path, bytes).expect("write temp file");
        TempFile(path)
    }

    fn open(&self) -> File {
        File::open(&self.0).expect("open temp file")
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Every query, for files that must not panic whatever they hold.
fn query_everything(file: &File) {
    let Ok(elf) = ElfFile::new(file) else {
        return;
    };
    let _ = elf.load_segments();
    let _ = elf.build_id();
    if let Ok(sections) = elf.sections() {
        let _ = sections.find(".text");
    }
    let _ = elf.load_bias(&[(0x1000, 0)]);
    let _ = section_addr(file, ".symtab");
}

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
    let sections = ElfFile::new(&file).unwrap().sections().unwrap();
    let symtab = sections
        .find(".symtab")
        .expect("test binaries keep .symtab");
    assert_eq!(symtab.kind, SHT_SYMTAB);
    assert!(symtab.has_contents());
}

#[inline(never)]
fn some_function() -> u64 {
    std::hint::black_box(7)
}

#[test]
fn file_offsets_translate_to_the_addresses_code_runs_at() {
    let addr = some_function as fn() -> u64 as usize as u64;
    let maps = ProcessMaps::capture(std::process::id()).expect("capture self");
    let file_offset = maps.lookup(addr).expect("own code is mapped").offset;
    let file = File::open("/proc/self/exe").unwrap();
    let elf = ElfFile::new(&file).unwrap();
    let vaddr = virtual_address(&elf.load_segments().unwrap(), file_offset).expect("in a segment");
    // The whole image moves by one page-aligned bias.
    let bias = addr.wrapping_sub(vaddr);
    assert_eq!(bias & 0xfff, 0, "{addr:#x} {vaddr:#x}");
    let text = section_addr(&file, ".text").unwrap().unwrap();
    assert!(vaddr >= text, "{vaddr:#x} before .text at {text:#x}");
}

#[test]
fn stripped_libc() {
    let libc = crate::elf::mapped_libc_path();
    let file = File::open(&libc).unwrap();
    let elf = ElfFile::new(&file).unwrap();
    let build_id = elf
        .build_id()
        .unwrap()
        .expect("distribution libcs have a build-id");
    assert!((8..=MAX_BUILD_ID).contains(&build_id.len()), "{build_id:?}");
    let sections = elf.sections().unwrap();
    assert!(sections
        .find(".dynsym")
        .is_some_and(SectionHeader::has_contents));
    assert!(!sections
        .find(".debug_info")
        .is_some_and(SectionHeader::has_contents));
    let segments = elf.load_segments().unwrap();
    assert!(segments.len() >= 2, "{segments:?}");
    // libc's code lies in a segment whose offsets and addresses agree modulo a page.
    let code = section_addr(&file, ".text").unwrap().expect(".text");
    let in_code = segments
        .iter()
        .find(|s| (s.vaddr..s.vaddr + s.file_size).contains(&code))
        .expect("a segment holds .text");
    assert_eq!((in_code.vaddr - in_code.offset) & 0xfff, 0);
    let offset = in_code.offset + (code - in_code.vaddr);
    assert_eq!(virtual_address(&segments, offset), Some(code));
}

#[test]
fn virtual_addresses_of_segments() {
    let segments = [
        LoadSegment {
            offset: 0,
            vaddr: 0,
            file_size: 0x100,
        },
        LoadSegment {
            offset: 0x1000,
            vaddr: 0x2000,
            file_size: 0x500,
        },
        LoadSegment {
            offset: 0x2000,
            vaddr: u64::MAX - 0x10,
            file_size: 0x100,
        },
    ];
    assert_eq!(virtual_address(&segments, 0x10), Some(0x10));
    assert_eq!(virtual_address(&segments, 0x1004), Some(0x2004));
    assert_eq!(virtual_address(&segments, 0x14ff), Some(0x24ff));
    assert_eq!(virtual_address(&segments, 0x1500), None);
    assert_eq!(virtual_address(&segments, 0x800), None);
    // Garbage that would overflow is no address.
    assert_eq!(virtual_address(&segments, 0x2020), None);
    assert_eq!(virtual_address(&[], 0), None);
}

/// A note: 12-byte header, name and descriptor padded to `align`.
fn note(kind: u32, name: &[u8], desc: &[u8], align: usize) -> Vec<u8> {
    let padded = |len: usize| len.div_ceil(align) * align;
    let mut bytes = Vec::new();
    bytes.extend((name.len() as u32).to_le_bytes());
    bytes.extend((desc.len() as u32).to_le_bytes());
    bytes.extend(kind.to_le_bytes());
    bytes.extend(name);
    bytes.resize(12 + padded(name.len()), 0);
    bytes.extend(desc);
    bytes.resize(12 + padded(name.len()) + padded(desc.len()), 0);
    bytes
}

#[test]
fn build_id_notes() {
    let id = [0xab; 20];
    let property = note(5, b"GNU\0", &[1, 2, 3, 4, 5, 6, 7, 8, 9], 8);
    let build = note(NT_GNU_BUILD_ID, b"GNU\0", &id, 8);
    assert_eq!(gnu_build_id(&[property, build].concat(), 8), Some(&id[..]));

    let other_owner = note(NT_GNU_BUILD_ID, b"Go\0\0", &[1; 8], 4);
    let abi = note(1, b"GNU\0", &[0; 16], 4);
    let build = note(NT_GNU_BUILD_ID, b"GNU\0", &id, 4);
    let notes = [other_owner, abi, build.clone()].concat();
    assert_eq!(gnu_build_id(&notes, 4), Some(&id[..]));

    assert_eq!(gnu_build_id(&build[..build.len() - 1], 4), None);
    assert_eq!(
        gnu_build_id(&note(NT_GNU_BUILD_ID, b"GNU\0", &[], 4), 4),
        None
    );
    let mut huge = build.clone();
    huge[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
    assert_eq!(gnu_build_id(&huge, 4), None);
    assert_eq!(gnu_build_id(&[], 4), None);
    assert_eq!(gnu_build_id(&[0; 7], 4), None);
}

#[test]
fn truncated_and_garbage_files_give_errors() {
    let libc = std::fs::read(crate::elf::mapped_libc_path()).expect("read libc");

    let empty = TempFile::new("empty", b"");
    assert!(ElfFile::new(&empty.open()).is_err());
    let short = TempFile::new("short", &libc[..20]);
    assert!(ElfFile::new(&short.open()).is_err());
    let text = TempFile::new("text", &[b'x'; 200]);
    assert!(ElfFile::new(&text.open()).is_err());

    // The first page of libc: headers readable, section headers past the end.
    let head = TempFile::new("head", &libc[..4096]);
    let file = head.open();
    let elf = ElfFile::new(&file).expect("header");
    assert!(!elf.load_segments().expect("program headers").is_empty());
    assert!(elf.build_id().expect("notes").is_some());
    assert!(elf.sections().is_err());
    query_everything(&file);

    // Header tables claiming 4096 huge entries, or entries of size 0.
    let mut header = libc[..64].to_vec();
    header[54..56].copy_from_slice(&0u16.to_le_bytes()); // e_phentsize
    header[58..60].copy_from_slice(&0xffffu16.to_le_bytes()); // e_shentsize
    header[60..62].copy_from_slice(&0xffffu16.to_le_bytes()); // e_shnum
    let bad = TempFile::new("bad", &header);
    let file = bad.open();
    let elf = ElfFile::new(&file).expect("header");
    assert!(elf.load_segments().is_err());
    assert!(elf.sections().is_err());
    query_everything(&file);
}

/// A tiny deterministic generator (xorshift64*), so failures reproduce.
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

#[test]
fn random_headers_never_panic() {
    let libc = std::fs::read(crate::elf::mapped_libc_path()).expect("read libc");
    let mut noise = Noise(0x9e37_79b9_7f4a_7c15);
    let path = TempFile::new("noise", b"");
    for _ in 0..300 {
        let len = 64 + (noise.next() % 2048) as usize;
        let mut bytes: Vec<u8> = (0..len).map(|_| noise.next() as u8).collect();
        bytes[..6].copy_from_slice(b"\x7fELF\x02\x01");
        // Mostly plausible offsets, counts and entry sizes, so the parsers get past the
        // first checks; sometimes a real libc header and program headers with noise after.
        let mut put = |at: usize, value: &[u8]| bytes[at..at + value.len()].copy_from_slice(value);
        let len64 = len as u64;
        put(32, &(noise.next() % len64).to_le_bytes()); // e_phoff
        put(40, &(noise.next() % len64).to_le_bytes()); // e_shoff
        let entry_sizes = [56u16, 64, 0, 255];
        put(54, &entry_sizes[(noise.next() % 4) as usize].to_le_bytes()); // e_phentsize
        put(56, &((noise.next() % 16) as u16).to_le_bytes()); // e_phnum
        put(58, &entry_sizes[(noise.next() % 4) as usize].to_le_bytes()); // e_shentsize
        put(60, &((noise.next() % 16) as u16).to_le_bytes()); // e_shnum
        put(62, &((noise.next() % 20) as u16).to_le_bytes()); // e_shstrndx
        if noise.next().is_multiple_of(4) {
            let keep = len.min(1024);
            bytes[..keep].copy_from_slice(&libc[..keep]);
        }
        std::fs::write(&path.0, &bytes).expect("write");
        query_everything(&path.open());
    }
}
