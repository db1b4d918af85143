//! Finding the CPython interpreter in a process: which image holds it, which version it
//! is, where `_PyRuntime` lives, and which [`PyLayout`] describes it.
//!
//! The image is the `libpython3.X.so` mapping if there is one, else a `python3.X`
//! executable (a statically linked interpreter). It is opened through
//! `/proc/PID/map_files/START-END` (the exact inode mapped, even if deleted or in another
//! mount namespace), falling back to `/proc/PID/root/PATH`.

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use blazesym::inspect::{source::Elf, source::Source, Inspector};

use super::memory::{LiveMemory, ProcessMemory};
use super::offsets::{LayoutError, PyLayout};
use crate::elf;

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
    let maps = read_maps(pid)?;
    let image = find_image(&maps).ok_or(DiscoverError::NotPython { pid })?;
    let file_path = open_path(pid, &maps, &image.path)?;
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
fn image_mappings(maps: &[Mapping], path: &Path) -> Vec<(u64, u64)> {
    maps.iter()
        .filter(|m| m.path == path)
        .map(|m| (m.start, m.offset))
        .collect()
}

/// One file-backed line of `/proc/PID/maps`.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Mapping {
    start: u64,
    end: u64,
    offset: u64,
    path: PathBuf,
}

fn read_maps(pid: u32) -> Result<Vec<Mapping>, DiscoverError> {
    let path = PathBuf::from(format!("/proc/{pid}/maps"));
    // Bytes, not text: a path may be any bytes, and one that is not UTF-8 (a mapped file
    // of any name) must not make the interpreter undiscoverable.
    let text =
        std::fs::read(&path).map_err(|source| DiscoverError::Unreadable { pid, path, source })?;
    Ok(text
        .split(|&b| b == b'\n')
        .filter_map(parse_maps_line)
        .collect())
}

/// Parses `start-end perms offset dev inode path`; `None` for anonymous mappings.
fn parse_maps_line(line: &[u8]) -> Option<Mapping> {
    let mut fields = line.splitn(6, |&b| b == b' ');
    // Every field but the path is ASCII.
    let hex = |field: &str| u64::from_str_radix(field, 16).ok();
    let (start, end) = std::str::from_utf8(fields.next()?).ok()?.split_once('-')?;
    let _perms = fields.next()?;
    let offset = std::str::from_utf8(fields.next()?).ok()?;
    let _dev = fields.next()?;
    let _inode = fields.next()?;
    let path = fields.next()?.trim_ascii_start();
    if !path.starts_with(b"/") {
        return None;
    }
    let path = path.strip_suffix(b" (deleted)").unwrap_or(path);
    Some(Mapping {
        start: hex(start)?,
        end: hex(end)?,
        offset: hex(offset)?,
        path: PathBuf::from(OsStr::from_bytes(path)),
    })
}

/// The interpreter image and the version its file name states.
#[derive(Debug, PartialEq, Eq)]
struct Image {
    path: PathBuf,
    version: (u8, u8),
}

/// The libpython mapping if any, else a `pythonX.Y` executable.
fn find_image(maps: &[Mapping]) -> Option<Image> {
    let named = |prefix: &str| {
        maps.iter().find_map(|m| {
            let name = m.path.file_name()?.to_str()?;
            let version = version_in_name(name.strip_prefix(prefix)?)?;
            Some(Image {
                path: m.path.clone(),
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
fn open_path(pid: u32, maps: &[Mapping], path: &Path) -> Result<PathBuf, DiscoverError> {
    let first = maps.iter().find(|m| m.path == path);
    if let Some(m) = first {
        let link = PathBuf::from(format!("/proc/{pid}/map_files/{:x}-{:x}", m.start, m.end));
        if File::open(&link).is_ok() {
            return Ok(link);
        }
    }
    let root =
        PathBuf::from(format!("/proc/{pid}/root")).join(path.strip_prefix("/").unwrap_or(path));
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

    #[test]
    fn maps_lines_parse() {
        let line = "7f00-7f80 r-xp 00001000 08:01 1234    /usr/lib/libpython3.11.so.1.0 (deleted)";
        let m = parse_maps_line(line.as_bytes()).unwrap();
        assert_eq!((m.start, m.end, m.offset), (0x7f00, 0x7f80, 0x1000));
        assert_eq!(m.path, Path::new("/usr/lib/libpython3.11.so.1.0"));
        assert!(parse_maps_line(b"7f00-7f80 rw-p 00000000 00:00 0 [heap]").is_none());
        // A path that is not UTF-8 is kept byte for byte.
        let m = parse_maps_line(b"7f00-7f80 r--p 00000000 08:01 99 /tmp/a\xff\xfe.dat").unwrap();
        assert_eq!(m.path.as_os_str().as_bytes(), b"/tmp/a\xff\xfe.dat");
    }

    /// A process that maps a file whose name is not UTF-8 still has readable maps.
    #[test]
    fn maps_with_a_path_that_is_not_utf8_are_read() {
        use std::os::fd::AsRawFd as _;
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
        let maps = read_maps(std::process::id());
        // SAFETY: `addr` is the 4 KiB mapping made above, unmapped once.
        unsafe { libc::munmap(addr, 4096) };
        std::fs::remove_file(&path).unwrap();
        let maps = maps.unwrap();
        assert!(maps.iter().any(|m| m.path == path), "{maps:?}");
    }

    #[test]
    fn libpython_is_preferred_over_the_executable() {
        let map = |path: &str| Mapping {
            start: 0,
            end: 1,
            offset: 0,
            path: PathBuf::from(path),
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
