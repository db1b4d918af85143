//! Snapshots of `/proc/PID/maps` that keep the mapped code files open.
//!
//! Symbolization runs after the observation window, when a sampled process may have exited
//! or had its binary replaced (a redeploy, a package upgrade). So when a process's first sample
//! arrives, the collector calls [`ProcessMaps::capture`], which records every executable
//! mapping and opens each mapped file through `/proc/PID/map_files/START-END`: that link
//! reaches the exact inode the process mapped, even when the file was deleted, replaced, or
//! lives in another mount namespace. The open file descriptor keeps the inode readable until
//! the snapshot is dropped. Capturing parses no ELF: it costs one read of the maps file plus
//! one `open` per mapped file not already held open.
//!
//! Open files are shared between snapshots of all processes (keyed by device and inode), so
//! watching a whole machine holds libc open once, not once per process: file descriptors
//! are a limited resource (`RLIMIT_NOFILE`, often 1024).

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::{self, File};
use std::io;
use std::ops::Range;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, PoisonError, Weak};

/// Why a snapshot of a process's mappings could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum ProcMapsError {
    /// The process exited (or is a zombie whose memory is already gone).
    #[error("process {pid} is gone")]
    Gone { pid: u32 },
    /// Reading another user's process needs privileges.
    #[error(
        "permission denied reading /proc/{pid}/maps: run probe as root (or with CAP_SYS_PTRACE)"
    )]
    PermissionDenied { pid: u32 },
    /// Any other failure to read the maps file.
    #[error("failed to read /proc/{pid}/maps")]
    Io {
        pid: u32,
        #[source]
        source: io::Error,
    },
}

/// Identity of an open file (`st_dev`, `st_ino` of the opened inode). The same library
/// mapped by many processes has one identity, so it is symbolized once.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FileId {
    /// `st_dev`.
    pub dev: u64,
    /// `st_ino`.
    pub ino: u64,
}

/// A mapped file held open.
#[derive(Debug)]
pub struct MappedFile {
    file: File,
    id: FileId,
}

impl MappedFile {
    /// Identity of the opened inode.
    pub fn id(&self) -> FileId {
        self.id
    }

    /// The open file.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// A path that reopens exactly this inode while `self` lives (`/proc/self/fd/N`), for
    /// libraries that want a path rather than a file descriptor.
    pub fn proc_path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/self/fd/{}", self.file.as_raw_fd()))
    }
}

/// What backs an executable mapping.
#[derive(Debug)]
pub enum Backing {
    /// A file, open when opening it worked (the error text otherwise).
    File(Result<Arc<MappedFile>, String>),
    /// The kernel's vDSO: the same image in every (64-bit) process of this kernel.
    Vdso,
    /// Anonymous or special memory (JIT code, `[vsyscall]`, `[uprobes]`): no symbols.
    Anonymous,
}

/// The object behind an executable mapping.
#[derive(Debug)]
pub struct Module {
    name: Arc<str>,
    /// The path maps showed (in the process's mount namespace), for files.
    path: Option<Arc<str>>,
    backing: Backing,
}

impl Module {
    /// Display name: the file name (`libc.so.6`) without ` (deleted)`, or the bracketed
    /// pseudo-name of special mappings (`[vdso]`, `[anon]`).
    pub fn name(&self) -> &Arc<str> {
        &self.name
    }

    /// What backs the mapping.
    pub fn backing(&self) -> &Backing {
        &self.backing
    }

    /// The file's path as the process's maps showed it (` (deleted)` removed); `None` for
    /// special mappings.
    pub fn path(&self) -> Option<&Arc<str>> {
        self.path.as_ref()
    }
}

/// Where an address lies.
#[derive(Clone, Copy, Debug)]
pub struct Location<'a> {
    /// The object mapped there.
    pub module: &'a Arc<Module>,
    /// File offset for file-backed modules; offset from the mapping start otherwise (for the
    /// vDSO that is the offset into its image).
    pub offset: u64,
}

/// One executable mapping.
#[derive(Clone, Debug)]
struct Mapping {
    range: Range<u64>,
    /// File offset of `range.start` (0 for non-file mappings).
    file_offset: u64,
    /// (device, inode) as maps shows them: what is mapped, to tell a replaced mapping.
    identity: (u64, u64),
    module: Arc<Module>,
}

impl Mapping {
    /// Whether `other` maps the same thing at the same place.
    fn same_as(&self, other: &Mapping) -> bool {
        self.range == other.range
            && self.file_offset == other.file_offset
            && self.identity == other.identity
    }
}

/// The executable mappings of a process changed where some were: what the next
/// generation of its maps is, and which address ranges may now mean something else.
#[derive(Debug)]
pub struct ChangedMaps {
    pub fresh: ProcessMaps,
    /// Ranges of the old mappings that a different mapping now overlaps.
    pub changed: Vec<Range<u64>>,
}

/// The executable mappings of one process, with their files held open (shared by clones).
#[derive(Clone, Debug, Default)]
pub struct ProcessMaps {
    /// Sorted by start address, non-overlapping.
    mappings: Vec<Mapping>,
    /// Opened modules by the (device, inode) that maps reports, so one file is opened once.
    files: HashMap<(u64, u64), Arc<Module>>,
}

impl ProcessMaps {
    /// Snapshot the executable mappings of `pid` and open their files.
    pub fn capture(pid: u32) -> Result<ProcessMaps, ProcMapsError> {
        let mut maps = ProcessMaps::default();
        maps.refresh(pid)?;
        Ok(maps)
    }

    /// Re-read the mappings to pick up libraries loaded since the last capture (`dlopen`).
    /// Files already open are reused; mappings that disappeared but do not overlap a current
    /// one are kept, so addresses sampled before a `dlclose` still resolve. On error `self`
    /// is unchanged.
    pub fn refresh(&mut self, pid: u32) -> Result<(), ProcMapsError> {
        let fresh = self.read_fresh(pid)?;
        self.mappings = merge_mappings(fresh, std::mem::take(&mut self.mappings));
        Ok(())
    }

    /// Re-reads the mappings. Mappings added in free space and mappings removed only
    /// update `self` (no address changes meaning); where a different mapping now overlaps
    /// an old one (a library unloaded and another loaded at its address), `self` is left
    /// as it was, valid for what was sampled before, and the new state is returned.
    pub fn check(&mut self, pid: u32) -> Result<Option<ChangedMaps>, ProcMapsError> {
        let fresh = self.read_fresh(pid)?;
        let changed: Vec<Range<u64>> = self
            .mappings
            .iter()
            .filter(|old| {
                let overlapping = fresh.iter().filter(|new| {
                    new.range.start < old.range.end && old.range.start < new.range.end
                });
                overlapping.into_iter().any(|new| !new.same_as(old))
            })
            .map(|old| old.range.clone())
            .collect();
        if changed.is_empty() {
            self.mappings = merge_mappings(fresh, std::mem::take(&mut self.mappings));
            return Ok(None);
        }
        let mut sorted = fresh;
        sorted.sort_by_key(|m| m.range.start);
        let fresh = ProcessMaps {
            mappings: sorted,
            files: self.files.clone(),
        };
        Ok(Some(ChangedMaps { fresh, changed }))
    }

    fn read_fresh(&mut self, pid: u32) -> Result<Vec<Mapping>, ProcMapsError> {
        let maps = MapsFile::read(pid)?;
        let mut fresh = Vec::new();
        for line in maps.lines().filter(|line| line.exec) {
            fresh.push(self.mapping_for(maps.dir(), &line));
        }
        Ok(fresh)
    }

    /// Whether `addr` lies in an executable mapping (including the vDSO): a plausible
    /// instruction or return address.
    pub fn covers(&self, addr: u64) -> bool {
        self.find(addr).is_some()
    }

    /// The module containing `addr` and the offset of `addr` in it.
    pub fn lookup(&self, addr: u64) -> Option<Location<'_>> {
        let mapping = self.find(addr)?;
        Some(Location {
            module: &mapping.module,
            offset: addr - mapping.range.start + mapping.file_offset,
        })
    }

    /// The modules of every known mapping (a module mapped several times appears as often).
    pub fn modules(&self) -> impl Iterator<Item = &Arc<Module>> + '_ {
        self.mappings.iter().map(|m| &m.module)
    }

    /// Every executable mapping, sorted by address: (range, file offset of its start, what
    /// is mapped).
    pub fn mappings(&self) -> impl Iterator<Item = (Range<u64>, u64, &Arc<Module>)> + '_ {
        self.mappings
            .iter()
            .map(|m| (m.range.clone(), m.file_offset, &m.module))
    }

    /// Whether no executable mapping is known (kernel threads, or an empty snapshot).
    pub fn is_empty(&self) -> bool {
        self.mappings.is_empty()
    }

    fn find(&self, addr: u64) -> Option<&Mapping> {
        let idx = self.mappings.partition_point(|m| m.range.start <= addr);
        let mapping = self.mappings.get(idx.checked_sub(1)?)?;
        (addr < mapping.range.end).then_some(mapping)
    }

    fn mapping_for(&mut self, dir: &str, line: &MapsLine<'_>) -> Mapping {
        let (module, file_offset) = match line.file_path() {
            Some(path) => (self.file_module(dir, line, path), line.offset),
            None => (Arc::new(special_module(line.path)), 0),
        };
        Mapping {
            range: line.start..line.end,
            file_offset,
            identity: (line.dev, line.inode),
            module,
        }
    }

    fn file_module(&mut self, dir: &str, line: &MapsLine<'_>, path: &Path) -> Arc<Module> {
        let key = (line.dev, line.inode);
        let module = self.files.entry(key).or_insert_with(|| {
            Arc::new(Module {
                name: display_name(path).into(),
                path: Some(path.to_string_lossy().into()),
                backing: Backing::File(open_mapped(dir, line, path)),
            })
        });
        Arc::clone(module)
    }
}

#[cfg(test)]
impl ProcessMaps {
    /// A snapshot of made-up mappings: (range, file offset of its start, module).
    pub(crate) fn from_mappings(mappings: Vec<(Range<u64>, u64, Module)>) -> ProcessMaps {
        let mut mappings: Vec<Mapping> = mappings
            .into_iter()
            .map(|(range, file_offset, module)| Mapping {
                range,
                file_offset,
                identity: (0, 0),
                module: Arc::new(module),
            })
            .collect();
        mappings.sort_by_key(|m| m.range.start);
        ProcessMaps {
            mappings,
            files: HashMap::new(),
        }
    }
}

#[cfg(test)]
impl Module {
    pub(crate) fn new(name: &str, backing: Backing) -> Module {
        Module {
            name: name.into(),
            path: None,
            backing,
        }
    }
}

#[cfg(test)]
impl MappedFile {
    pub(crate) fn open(path: &Path) -> io::Result<MappedFile> {
        open_with_id(path)
    }
}

/// Start address of this process's own vDSO. Every 64-bit process of a kernel maps the same
/// vDSO image, so an offset into another process's vDSO can be symbolized against ours.
pub fn own_vdso_start() -> Option<u64> {
    let maps = MapsFile::read(std::process::id()).ok()?;
    let vdso = maps.lines().find(|line| line.path == b"[vdso]")?;
    Some(vdso.start)
}

/// `fresh` plus those of `old` that overlap none of `fresh`, sorted by start.
fn merge_mappings(fresh: Vec<Mapping>, old: Vec<Mapping>) -> Vec<Mapping> {
    let overlaps_fresh = |m: &Mapping| {
        fresh
            .iter()
            .any(|f| f.range.start < m.range.end && m.range.start < f.range.end)
    };
    let kept: Vec<Mapping> = old.into_iter().filter(|m| !overlaps_fresh(m)).collect();
    let mut all = fresh;
    all.extend(kept);
    all.sort_by_key(|m| m.range.start);
    all
}

/// A process's `/proc/PID/maps`, read whole, as bytes: a mapped file's path may be any
/// bytes, and one that is not UTF-8 must neither hide the other mappings nor lose the
/// path that reopens it. The one reader of maps files.
#[derive(Debug)]
pub(crate) struct MapsFile {
    bytes: Vec<u8>,
    dir: String,
}

impl MapsFile {
    /// Reads the maps of `pid` from `/proc/PID`, or, when the main thread has exited while
    /// others run (its maps read empty), from a live thread's `/proc/PID/task/TID`, whose
    /// maps and map_files are the process's. A process that exited (before or during the
    /// read), or a zombie, is [`ProcMapsError::Gone`]; a kernel thread has empty maps.
    pub(crate) fn read(pid: u32) -> Result<MapsFile, ProcMapsError> {
        let dir = format!("/proc/{pid}");
        let bytes = fs::read(format!("{dir}/maps")).map_err(|err| classify(pid, err))?;
        if !bytes.is_empty() {
            return Ok(MapsFile { bytes, dir });
        }
        if let Some(found) = thread_maps(pid) {
            return Ok(found);
        }
        // A zombie (or a kernel thread) has no memory map; only the former is "gone".
        if crate::proc::is_zombie(pid) {
            return Err(ProcMapsError::Gone { pid });
        }
        Ok(MapsFile { bytes, dir })
    }

    /// The well-formed lines (a malformed one is skipped rather than failing the whole
    /// snapshot).
    pub(crate) fn lines(&self) -> impl Iterator<Item = MapsLine<'_>> + '_ {
        self.bytes
            .split(|&b| b == b'\n')
            .filter_map(MapsLine::parse)
    }

    /// The /proc directory the maps came from (`/proc/PID` or `/proc/PID/task/TID`), whose
    /// `map_files` and `root` are the process's.
    pub(crate) fn dir(&self) -> &str {
        &self.dir
    }
}

/// The maps of the first thread of `pid` that has any, with its task directory.
fn thread_maps(pid: u32) -> Option<MapsFile> {
    crate::proc::task_ids(pid)?.into_iter().find_map(|tid| {
        let dir = format!("/proc/{pid}/task/{tid}");
        let bytes = fs::read(format!("{dir}/maps")).ok()?;
        (!bytes.is_empty()).then_some(MapsFile { bytes, dir })
    })
}

fn classify(pid: u32, err: io::Error) -> ProcMapsError {
    // ESRCH: the process exited between opening and reading the file.
    if err.kind() == io::ErrorKind::NotFound || err.raw_os_error() == Some(libc::ESRCH) {
        ProcMapsError::Gone { pid }
    } else if err.kind() == io::ErrorKind::PermissionDenied {
        ProcMapsError::PermissionDenied { pid }
    } else {
        ProcMapsError::Io { pid, source: err }
    }
}

/// The file behind a mapping: the one another snapshot holds open, or newly opened.
fn open_mapped(dir: &str, line: &MapsLine<'_>, path: &Path) -> Result<Arc<MappedFile>, String> {
    let key = (line.dev, line.inode);
    // One lock for look-up, open and insert: two captures racing for the same file must end
    // up sharing one handle.
    let mut shared = shared_files();
    if let Some(file) = shared.get(&key).and_then(Weak::upgrade) {
        return Ok(file);
    }
    let file = Arc::new(open_mapped_file(dir, line, path)?);
    // Forget closed files now and then, so the table stays as small as what is open.
    if shared.len() >= 256 && shared.len().is_power_of_two() {
        shared.retain(|_, file| file.strong_count() > 0);
    }
    shared.insert(key, Arc::downgrade(&file));
    Ok(file)
}

/// Files held open by any snapshot, by the (device, inode) that maps reports. An entry
/// cannot name a different file later: the inode stays allocated while it is open.
type SharedFiles = HashMap<(u64, u64), Weak<MappedFile>>;

fn shared_files() -> MutexGuard<'static, SharedFiles> {
    static SHARED: LazyLock<Mutex<SharedFiles>> = LazyLock::new(Mutex::default);
    // A panic elsewhere while holding the lock leaves the map consistent: keep using it.
    SHARED.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Open the file behind a mapping: through `map_files` (exact inode, any mount namespace,
/// works for deleted files; needs CAP_SYS_ADMIN), else by path inside the process's root,
/// accepted only when it is still the inode that was mapped.
fn open_mapped_file(dir: &str, line: &MapsLine<'_>, path: &Path) -> Result<MappedFile, String> {
    let link = format!("{dir}/map_files/{:x}-{:x}", line.start, line.end);
    if let Ok(file) = open_with_id(Path::new(&link)) {
        return Ok(file);
    }
    let shown = path.display();
    let file = open_with_id(&rooted(dir, path)).map_err(|err| format!("{shown}: {err}"))?;
    if file.id.ino != line.inode {
        return Err(format!("{shown}: replaced since it was mapped"));
    }
    Ok(file)
}

/// `path` (absolute, in the process's mount namespace) seen through `DIR/root`.
pub(crate) fn rooted(dir: &str, path: &Path) -> PathBuf {
    let mut rooted = OsString::from(format!("{dir}/root"));
    rooted.push(path.as_os_str());
    PathBuf::from(rooted)
}

fn open_with_id(path: &Path) -> io::Result<MappedFile> {
    let file = File::open(path)?;
    let meta = file.metadata()?;
    let id = FileId {
        dev: meta.dev(),
        ino: meta.ino(),
    };
    Ok(MappedFile { file, id })
}

fn special_module(path: &[u8]) -> Module {
    let (name, backing) = match path {
        b"[vdso]" => ("[vdso]".into(), Backing::Vdso),
        b"" => ("[anon]".into(), Backing::Anonymous),
        other => (String::from_utf8_lossy(other), Backing::Anonymous),
    };
    Module {
        name: name.into(),
        path: None,
        backing,
    }
}

/// `libc.so.6` for `/usr/lib/x86_64-linux-gnu/libc.so.6`, lossy UTF-8.
fn display_name(path: &Path) -> String {
    let name = path.file_name().unwrap_or(path.as_os_str());
    name.to_string_lossy().into_owned()
}

/// One line of `/proc/PID/maps`:
/// `start-end perms offset major:minor inode    path`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct MapsLine<'a> {
    pub start: u64,
    pub end: u64,
    pub exec: bool,
    /// File offset of `start`.
    pub offset: u64,
    /// `major << 32 | minor`: only used to tell files apart.
    pub dev: u64,
    pub inode: u64,
    /// As maps shows it: empty for anonymous memory, `[name]` for special mappings; a file's
    /// path may hold any bytes (spaces too) and ends in ` (deleted)` once it was removed.
    pub path: &'a [u8],
}

impl<'a> MapsLine<'a> {
    /// `None` for a malformed line.
    pub(crate) fn parse(line: &'a [u8]) -> Option<MapsLine<'a>> {
        let mut rest = line;
        let mut field = || {
            let start = rest.iter().position(|&b| b != b' ').unwrap_or(rest.len());
            let trimmed = &rest[start..];
            let end = trimmed
                .iter()
                .position(|&b| b == b' ')
                .unwrap_or(trimmed.len());
            let (field, tail) = trimmed.split_at(end);
            rest = tail;
            field
        };
        let (start, end) = split_once(field(), b'-')?;
        let perms = field();
        let offset = field();
        let (major, minor) = split_once(field(), b':')?;
        let inode = field();
        Some(MapsLine {
            start: hex(start)?,
            end: hex(end)?,
            exec: perms.get(2) == Some(&b'x'),
            offset: hex(offset)?,
            dev: hex(major)? << 32 | hex(minor)?,
            inode: decimal(inode)?,
            path: rest.trim_ascii_start(),
        })
    }

    /// The mapped file's path without ` (deleted)`; `None` for anything but a file.
    pub(crate) fn file_path(&self) -> Option<&'a Path> {
        if !self.path.starts_with(b"/") {
            return None;
        }
        let path = self.path.strip_suffix(b" (deleted)").unwrap_or(self.path);
        Some(Path::new(OsStr::from_bytes(path)))
    }
}

fn split_once(field: &[u8], at: u8) -> Option<(&[u8], &[u8])> {
    let i = field.iter().position(|&b| b == at)?;
    Some((&field[..i], &field[i + 1..]))
}

/// By hand rather than `from_str_radix`, which wants a `&str`: this runs for every field
/// of every line at every maps read.
fn hex(field: &[u8]) -> Option<u64> {
    if field.is_empty() || field.len() > 16 {
        return None;
    }
    field.iter().try_fold(0u64, |value, &b| {
        let digit = (b as char).to_digit(16)?;
        Some(value << 4 | u64::from(digit))
    })
}

fn decimal(field: &[u8]) -> Option<u64> {
    if field.is_empty() {
        return None;
    }
    field.iter().try_fold(0u64, |value, &b| {
        let digit = (b as char).to_digit(10)?;
        value.checked_mul(10)?.checked_add(u64::from(digit))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Recorded from a real process (one path has a space, one was deleted).
    const MAPS: &str = "\
55d0c4a00000-55d0c4a01000 r--p 00000000 fd:01 1051042                    /opt/spin loop/spin_loop
55d0c4a01000-55d0c4a02000 r-xp 00001000 fd:01 1051042                    /opt/spin loop/spin_loop
55d0c5c0e000-55d0c5c2f000 rw-p 00000000 00:00 0                          [heap]
7f3e1c400000-7f3e1c428000 r--p 00000000 fd:01 1835189                    /usr/lib/x86_64-linux-gnu/libc.so.6
7f3e1c428000-7f3e1c59d000 r-xp 00028000 fd:01 1835189                    /usr/lib/x86_64-linux-gnu/libc.so.6
7f3e1c600000-7f3e1c700000 r-xp 00000000 00:00 0 
7f3e1c800000-7f3e1c801000 r-xp 00002000 fd:01 99                         /tmp/libgone.so (deleted)
7ffd6a5f2000-7ffd6a5f4000 r-xp 00000000 00:00 0                          [vdso]
ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]
";

    #[test]
    fn parses_maps_lines() {
        let lines: Vec<MapsLine<'_>> = MAPS
            .lines()
            .filter_map(|line| MapsLine::parse(line.as_bytes()))
            .collect();
        assert_eq!(lines.len(), 9);
        assert_eq!(
            lines[1],
            MapsLine {
                start: 0x55d0c4a01000,
                end: 0x55d0c4a02000,
                exec: true,
                offset: 0x1000,
                dev: 0xfd << 32 | 1,
                inode: 1051042,
                path: b"/opt/spin loop/spin_loop",
            }
        );
        assert!(!lines[2].exec);
        assert_eq!(lines[5].path, b"");
        assert_eq!(lines[5].file_path(), None);
        assert_eq!(lines[2].file_path(), None);
        let path = |i: usize| lines[i].file_path().unwrap();
        assert_eq!(path(6), Path::new("/tmp/libgone.so"));
        assert_eq!(display_name(path(6)), "libgone.so");
        assert_eq!(display_name(path(4)), "libc.so.6");
        assert_eq!(display_name(path(1)), "spin_loop");
    }

    #[test]
    fn malformed_lines_are_skipped() {
        assert_eq!(MapsLine::parse(b""), None);
        assert_eq!(MapsLine::parse(b"zz-10 r-xp 0 fd:01 1 /x"), None);
        assert_eq!(MapsLine::parse(b"10-20 r-xp 0 fd:01 -1 /x"), None);
        assert_eq!(MapsLine::parse(b"10-20 r-xp 0 fd01 1 /x"), None);
        assert_eq!(MapsLine::parse(b"10-20 r-xp 0 fd:01"), None);
        assert_eq!(hex(b"11112222333344445"), None);
        assert_eq!(decimal(b"99999999999999999999"), None);
        assert_eq!(hex(b"fFa0"), Some(0xffa0));
    }

    #[test]
    fn paths_that_are_not_utf8_are_kept() {
        let line = MapsLine::parse(b"7f00-7f80 r-xp 00001000 08:01 99  /tmp/a\xff b.so (deleted)");
        let path = line.unwrap().file_path().unwrap();
        assert_eq!(path.as_os_str().as_bytes(), b"/tmp/a\xff b.so");
        assert_eq!(display_name(path), "a\u{fffd} b.so");
        let rooted = rooted("/proc/7", path);
        assert_eq!(
            rooted.as_os_str().as_bytes(),
            b"/proc/7/root/tmp/a\xff b.so"
        );
    }

    fn fn_in_test_binary() -> u64 {
        std::hint::black_box(7)
    }

    #[test]
    fn capture_of_self_covers_own_code() {
        let maps = ProcessMaps::capture(std::process::id()).expect("capture self");
        let addr = fn_in_test_binary as fn() -> u64 as usize as u64;
        assert!(maps.covers(addr));
        assert!(!maps.covers(0x10));
        let location = maps.lookup(addr).expect("lookup");
        let exe = std::env::current_exe().expect("current_exe");
        let exe_name = exe.file_name().and_then(|n| n.to_str()).expect("exe name");
        assert_eq!(&**location.module.name(), exe_name);
        let Backing::File(Ok(file)) = location.module.backing() else {
            panic!("test binary not opened: {:?}", location.module.backing());
        };
        let meta = fs::metadata(&exe).expect("stat exe");
        assert_eq!(file.id().ino, meta.ino());
        assert!(fs::metadata(file.proc_path()).is_ok());
    }

    #[test]
    fn capture_of_self_sees_vdso() {
        let maps = ProcessMaps::capture(std::process::id()).expect("capture self");
        if let Some(vdso) = own_vdso_start() {
            let location = maps.lookup(vdso + 0x10).expect("vdso covered");
            assert!(matches!(location.module.backing(), Backing::Vdso));
            assert_eq!(location.offset, 0x10);
        }
    }

    #[test]
    fn refresh_reuses_open_files() {
        let pid = std::process::id();
        let mut maps = ProcessMaps::capture(pid).expect("capture self");
        let before: Vec<*const Module> = maps.files.values().map(Arc::as_ptr).collect();
        maps.refresh(pid).expect("refresh");
        for ptr in before {
            assert!(maps.files.values().any(|m| Arc::as_ptr(m) == ptr));
        }
    }

    #[test]
    fn snapshots_share_open_files() {
        let pid = std::process::id();
        let (a, b) = (ProcessMaps::capture(pid), ProcessMaps::capture(pid));
        let (a, b) = (a.expect("capture self"), b.expect("capture self"));
        let addr = fn_in_test_binary as fn() -> u64 as usize as u64;
        let file = |maps: &ProcessMaps| match maps.lookup(addr).map(|l| l.module.backing()) {
            Some(Backing::File(Ok(file))) => Arc::clone(file),
            other => panic!("test binary not opened: {other:?}"),
        };
        assert!(Arc::ptr_eq(&file(&a), &file(&b)));
    }

    #[test]
    fn vanished_process_is_gone() {
        // PIDs above pid_max (at most 2^22) never exist.
        let err = ProcessMaps::capture(u32::MAX - 1).expect_err("no such process");
        assert!(matches!(err, ProcMapsError::Gone { .. }), "{err:?}");
    }

    #[test]
    fn merge_keeps_unmapped_old_code() {
        let module = Arc::new(special_module(b""));
        let mapping = |start: u64, end: u64| Mapping {
            range: start..end,
            file_offset: 0,
            identity: (0, 0),
            module: Arc::clone(&module),
        };
        let merged = merge_mappings(
            vec![mapping(0x3000, 0x4000), mapping(0x1000, 0x2000)],
            vec![mapping(0x1800, 0x2800), mapping(0x5000, 0x6000)],
        );
        let ranges: Vec<_> = merged.iter().map(|m| m.range.clone()).collect();
        assert_eq!(ranges, vec![0x1000..0x2000, 0x3000..0x4000, 0x5000..0x6000]);
    }
}
