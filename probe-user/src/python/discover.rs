//! Finding the CPython interpreter in a process: which image holds it, which version it
//! is, where `_PyRuntime` lives, and which [`PyLayout`] describes it.
//!
//! The image is the `libpython3.X.so` mapping if there is one, else a `python3.X`
//! executable (a statically linked interpreter). It is opened through
//! `/proc/PID/map_files/START-END` (the exact inode mapped, even if deleted or in another
//! mount namespace), falling back to `/proc/PID/root/PATH`.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use blazesym::inspect::{source::Elf, source::Source, Inspector};

use super::memory::{LiveMemory, ProcessMemory};
use super::offsets::{LayoutError, PyLayout};
use crate::elf;
use crate::procmaps::{self, MapsFile, MapsLine};

/// A CPython process probe can read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PythonProcess {
    /// The process id.
    pub pid: u32,
    /// (major, minor).
    pub version: (u8, u8),
    /// Address of `_PyRuntime` in the process.
    pub runtime_addr: u64,
    /// The layout of this build.
    pub layout: PyLayout,
}

/// Why a process is not a readable CPython 3.8–3.13.
#[derive(Debug, thiserror::Error)]
pub enum DiscoverError {
    /// No libpython or python executable is mapped.
    #[error("process {pid} is not a Python process")]
    NotPython { pid: u32 },
    /// A Python other than 3.8–3.13.
    #[error("process {pid} runs Python {}.{}, which is not supported (3.8–3.13 are)", .version.0, .version.1)]
    Unsupported { pid: u32, version: (u8, u8) },
    /// `/proc/PID/maps` or the image could not be read.
    #[error("failed to read {path} of process {pid}")]
    Unreadable {
        pid: u32,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The image has no `_PyRuntime` symbol.
    #[error("no _PyRuntime symbol in {path} (process {pid})")]
    NoRuntime { pid: u32, path: PathBuf },
    /// The layout of a 3.13+ process could not be read from it.
    #[error("failed to read the interpreter layout of process {pid}")]
    Layout {
        pid: u32,
        #[source]
        source: LayoutError,
    },
}

/// Discovers the interpreter of live process `pid`.
pub fn discover(pid: u32) -> Result<PythonProcess, DiscoverError> {
    discover_with(pid, &LiveMemory::new(pid))
}

/// Like [`discover`], reading process memory (only needed for 3.13+) through `mem`.
pub fn discover_with(pid: u32, mem: &dyn ProcessMemory) -> Result<PythonProcess, DiscoverError> {
    let maps_file = MapsFile::read(pid).map_err(|err| DiscoverError::Unreadable {
        pid,
        path: PathBuf::from(format!("/proc/{pid}/maps")),
        source: io::Error::other(err),
    })?;
    let maps = file_mappings(&maps_file);
    let image = find_image(&maps).ok_or(DiscoverError::NotPython { pid })?;
    let file_path = open_path(pid, &maps_file, &maps, &image.path)?;
    let unreadable = |source| DiscoverError::Unreadable {
        pid,
        path: file_path.clone(),
        source,
    };
    let file = File::open(&file_path).map_err(unreadable)?;
    let symbols = lookup(&file_path, &["_PyRuntime", "Py_Version"]);
    let version = symbols[1]
        .and_then(|(_, off)| read_py_version(&file, off?))
        .unwrap_or(image.version);
    let layout_row = PyLayout::table_row(version.0, version.1)
        .ok_or(DiscoverError::Unsupported { pid, version })?;
    let runtime_vaddr = symbols[0]
        .map(|(addr, _)| addr)
        .or_else(|| elf::section_addr(&file, ".PyRuntime").ok().flatten())
        .ok_or_else(|| DiscoverError::NoRuntime {
            pid,
            path: image.path.clone(),
        })?;
    let bias = elf::load_bias(&file, &image_mappings(&maps, &image.path)).map_err(unreadable)?;
    let runtime_addr = runtime_vaddr.wrapping_add(bias);
    let layout = if PyLayout::uses_debug_offsets(version) {
        PyLayout::from_debug_offsets(mem, runtime_addr, version)
            .map_err(|source| DiscoverError::Layout { pid, source })?
    } else {
        layout_row
    };
    Ok(PythonProcess {
        pid,
        version,
        runtime_addr,
        layout,
    })
}

/// (start address, file offset) of every mapping of `path`.
fn image_mappings(maps: &[Mapping<'_>], path: &Path) -> Vec<(u64, u64)> {
    maps.iter()
        .filter(|m| m.path == path)
        .map(|m| (m.line.start, m.line.offset))
        .collect()
}

/// A file-backed line of `/proc/PID/maps` and its path (without ` (deleted)`).
#[derive(Clone, Copy, Debug)]
struct Mapping<'a> {
    line: MapsLine<'a>,
    path: &'a Path,
}

fn file_mappings(maps: &MapsFile) -> Vec<Mapping<'_>> {
    maps.lines()
        .filter_map(|line| {
            let path = line.file_path()?;
            Some(Mapping { line, path })
        })
        .collect()
}

/// The interpreter image and the version its file name states.
#[derive(Debug, PartialEq, Eq)]
struct Image {
    path: PathBuf,
    version: (u8, u8),
}

/// The libpython mapping if any, else a `pythonX.Y` executable.
fn find_image(maps: &[Mapping<'_>]) -> Option<Image> {
    let named = |prefix: &str| {
        maps.iter().find_map(|m| {
            let name = m.path.file_name()?.to_str()?;
            let version = version_in_name(name.strip_prefix(prefix)?)?;
            Some(Image {
                path: m.path.to_path_buf(),
                version,
            })
        })
    };
    named("libpython").or_else(|| named("python"))
}

/// Parses the `X.Y` at the start of `rest` (`3.11.so.1.0`, `3.12`, `2.7`, `3.8d.so`), which
/// must be followed by nothing, `.`, or an ABI flag letter.
fn version_in_name(rest: &str) -> Option<(u8, u8)> {
    let (major, tail) = rest.split_once('.')?;
    let digits = tail
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(tail.len());
    let after = &tail[digits..];
    if !(after.is_empty() || after.starts_with('.') || after.starts_with(['d', 'm', 't'])) {
        return None;
    }
    Some((major.parse().ok()?, tail[..digits].parse().ok()?))
}

/// A path that opens the mapped file from outside the target's mount namespace.
fn open_path(
    pid: u32,
    maps_file: &MapsFile,
    maps: &[Mapping<'_>],
    path: &Path,
) -> Result<PathBuf, DiscoverError> {
    let dir = maps_file.dir();
    let first = maps.iter().find(|m| m.path == path);
    if let Some(m) = first {
        let (start, end) = (m.line.start, m.line.end);
        let link = PathBuf::from(format!("{dir}/map_files/{start:x}-{end:x}"));
        if File::open(&link).is_ok() {
            return Ok(link);
        }
    }
    let root = procmaps::rooted(dir, path);
    match File::open(&root) {
        Ok(_) => Ok(root),
        Err(source) => Err(DiscoverError::Unreadable {
            pid,
            path: root,
            source,
        }),
    }
}

/// (virtual address, file offset) of each named symbol, `None` where absent.
fn lookup(path: &Path, names: &[&str]) -> Vec<Option<(u64, Option<u64>)>> {
    let inspector = Inspector::new();
    // The ELF symbol tables have both symbols; parsing DWARF (pyenv's builds carry it)
    // would cost tens of milliseconds per interpreter for nothing.
    let src = Source::Elf(Elf {
        debug_syms: false,
        ..Elf::new(path)
    });
    let found = inspector.lookup(&src, names).unwrap_or_default();
    (0..names.len())
        .map(|i| {
            let sym = found.get(i)?.first()?;
            Some((sym.addr, sym.file_offset))
        })
        .collect()
}

/// `Py_Version` (3.11+): `PY_VERSION_HEX` as an `unsigned long` in `.rodata`; its low 4
/// bytes (little-endian targets) hold the whole value.
fn read_py_version(file: &File, offset: u64) -> Option<(u8, u8)> {
    let mut b = [0u8; 4];
    file.read_exact_at(&mut b, offset).ok()?;
    let hex = u32::from_ne_bytes(b);
    Some(((hex >> 24) as u8, (hex >> 16) as u8))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_give_versions() {
        assert_eq!(version_in_name("3.11.so.1.0"), Some((3, 11)));
        assert_eq!(version_in_name("3.8"), Some((3, 8)));
        assert_eq!(version_in_name("2.7"), Some((2, 7)));
        assert_eq!(version_in_name("3.13t"), Some((3, 13)));
        assert_eq!(version_in_name("3.12-config"), None);
        assert_eq!(version_in_name("3"), None);
    }

    /// A process that maps a file whose name is not UTF-8 still has readable maps.
    #[test]
    fn maps_with_a_path_that_is_not_utf8_are_read() {
        use std::ffi::OsStr;
        use std::os::fd::AsRawFd as _;
        use std::os::unix::ffi::OsStrExt as _;
        let dir = std::env::temp_dir();
        let path = dir.join(OsStr::from_bytes(b"probe-discover-\xff\xfe.dat"));
        std::fs::write(&path, [0u8; 4096]).unwrap();
        let file = File::open(&path).unwrap();
        // SAFETY: a fresh read-only private mapping of a 4 KiB file, at an address the
        // kernel picks; nothing reads through it, and it is unmapped below.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                4096,
                libc::PROT_READ,
                libc::MAP_PRIVATE,
                file.as_raw_fd(),
                0,
            )
        };
        assert_ne!(addr, libc::MAP_FAILED);
        let maps = MapsFile::read(std::process::id());
        std::fs::remove_file(&path).unwrap();
        let maps = maps.unwrap();
        let mappings = file_mappings(&maps);
        let found = mappings.iter().find(|m| m.path == path);
        // The path reopens the file (from this mount namespace), and deleted it still
        // names it.
        assert!(found.is_some(), "{mappings:?}");
        let deleted = MapsFile::read(std::process::id()).unwrap();
        let mappings = file_mappings(&deleted);
        assert!(mappings.iter().any(|m| m.path == path), "{mappings:?}");
        // SAFETY: `addr` is the 4 KiB mapping made above, unmapped once.
        unsafe { libc::munmap(addr, 4096) };
    }

    #[test]
    fn libpython_is_preferred_over_the_executable() {
        let line = MapsLine::parse(b"0-1 r-xp 0 0:0 1 /x").unwrap();
        let map = |path: &'static str| Mapping {
            line,
            path: Path::new(path),
        };
        let maps = [map("/x/bin/python3.12"), map("/x/lib/libpython3.12.so.1.0")];
        assert_eq!(
            find_image(&maps).unwrap().path,
            Path::new("/x/lib/libpython3.12.so.1.0")
        );
        assert_eq!(find_image(&maps[..1]).unwrap().version, (3, 12));
        assert!(find_image(&[map("/bin/sleep")]).is_none());
    }
}
