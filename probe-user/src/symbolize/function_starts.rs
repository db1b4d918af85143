//! Where the functions of frames without a name begin, from the file's call frame
//! information: each FDE covers one function, and stripped files keep `.eh_frame`. Samples
//! at different offsets of one stripped function then share one frame name,
//! `[fn@0x4a00]` (the function's file offset, in the notation of `module+0x4a26`), so they
//! aggregate as one function instead of one stack per address.

use std::fs::File;
use std::path::Path;

use crate::elf::{self, ElfFile};
use crate::unwind::function_ranges;

/// The name given to a frame in the function starting at file offset `start`.
pub(super) fn function_start_name(start: u64) -> String {
    format!("[fn@{start:#x}]")
}

/// For each file offset in `offsets` (of the file at `path`), the file offset where the
/// function holding it begins, per the FDE that covers it; `None` where no FDE does or the
/// file cannot be read.
pub(super) fn function_starts(path: &Path, offsets: &[u64]) -> Vec<Option<u64>> {
    read_function_starts(path, offsets).unwrap_or_else(|| vec![None; offsets.len()])
}

fn read_function_starts(path: &Path, offsets: &[u64]) -> Option<Vec<Option<u64>>> {
    let file = File::open(path).ok()?;
    // SAFETY: a private read-only mapping, only parsed (bounds-checked by `object` and
    // `gimli`); the file is one a process had mapped, replaced by rename if at all.
    let bytes = unsafe { memmap2::Mmap::map(&file) }.ok()?;
    let ranges = function_ranges(&bytes).ok()?;
    let segments = ElfFile::new(&file).ok()?.load_segments().ok()?;
    let start_of = |offset: u64| -> Option<u64> {
        let address = elf::virtual_address(&segments, offset)?;
        let index = ranges.partition_point(|&(start, _)| start <= address);
        let &(start, end) = ranges.get(index.checked_sub(1)?)?;
        // Back to a file offset: the function starts in the same segment as `offset`.
        (address < end).then(|| offset - (address - start))
    };
    Some(offsets.iter().map(|&offset| start_of(offset)).collect())
}

#[cfg(test)]
mod tests {
    use object::{Object, ObjectSymbol};

    use super::*;

    /// libz's exported `deflate`: every offset inside it maps to its start, as its symbol
    /// says; the stripped file's static functions get their starts the same way.
    #[test]
    fn offsets_inside_a_function_map_to_its_start() {
        let path = Path::new("/lib/x86_64-linux-gnu/libz.so.1");
        let Ok(data) = std::fs::read(path) else {
            assert!(
                std::env::var_os("CI").is_none(),
                "libz is missing: install zlib1g"
            );
            return;
        };
        let object = object::File::parse(&*data).unwrap();
        let deflate = object
            .dynamic_symbols()
            .find(|symbol| symbol.name() == Ok("deflate"))
            .expect("libz exports deflate");
        let file = File::open(path).unwrap();
        let segments = ElfFile::new(&file).unwrap().load_segments().unwrap();
        // Its file offset (the segment that holds its address).
        let segment = segments
            .iter()
            .find(|s| s.vaddr <= deflate.address() && deflate.address() < s.vaddr + s.file_size)
            .unwrap();
        let start = deflate.address() - segment.vaddr + segment.offset;
        let inside = [
            start,
            start + 1,
            start + deflate.size() / 2,
            start + deflate.size() - 1,
        ];
        let starts = function_starts(path, &inside);
        assert_eq!(starts, vec![Some(start); inside.len()]);
        assert_eq!(function_starts(path, &[0]), vec![None]);
        assert_eq!(function_starts(Path::new("/nonexistent"), &[1]), vec![None]);
        assert_eq!(function_start_name(0x4a00), "[fn@0x4a00]");
    }
}
