//! The kernel side of the unwind tables: the three large arrays (rows, page index,
//! mappings) are `BPF_F_MMAPABLE` and written through a shared memory mapping, so loading
//! a table of 100,000 rows is a copy rather than 100,000 map updates; the two small maps
//! (file slots, processes) are updated one entry at a time, and those updates are what make
//! new rows visible to the kernel (see `UnwindProcess` in probe-common).

use std::{
    marker::PhantomData,
    os::fd::{AsFd, AsRawFd},
    ptr::NonNull,
};

use aya::{
    maps::{Array, HashMap as BpfHashMap, MapData},
    Pod,
};
use probe_common::{names, UnwindFile, UnwindMapping, UnwindProcess, UnwindRow};

use super::{LoadError, Probe};
use crate::collect::{UnwindCapacity, UnwindMaps};

/// A `BPF_F_MMAPABLE` array map mapped read-write into this process.
pub(super) struct MappedArray<T> {
    base: NonNull<T>,
    len: usize,
    bytes: usize,
    _values: PhantomData<T>,
}

// SAFETY: the mapping is plain shared memory owned by this value; nothing else in this
// process aliases it, so moving it to another thread is sound.
unsafe impl<T: Send> Send for MappedArray<T> {}

impl<T: Pod> MappedArray<T> {
    /// Maps the whole of array `map` (`name` for errors). Its values must be `T`, with a
    /// size that is a multiple of 8 (the kernel lays array values out 8-byte aligned).
    pub(super) fn new(map: &MapData, name: &str) -> Result<Self, LoadError> {
        let info = map
            .info()
            .map_err(|err| LoadError::Other(format!("read the info of map `{name}`: {err}")))?;
        let value = std::mem::size_of::<T>();
        if info.value_size() as usize != value || !value.is_multiple_of(8) {
            return Err(LoadError::Other(format!(
                "map `{name}` holds {}-byte values, not {value}",
                info.value_size()
            )));
        }
        let len = info.max_entries() as usize;
        let page = page_size();
        let bytes = (len * value).div_ceil(page) * page;
        let fd = map.fd().as_fd().as_raw_fd();
        // SAFETY: a new shared mapping of the map's fd at an address the kernel picks; the
        // result is checked before use. The length covers exactly the array's values,
        // rounded up to pages as the kernel maps them.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(LoadError::Other(format!(
                "map `{name}` into memory: {}",
                std::io::Error::last_os_error()
            )));
        }
        let base = NonNull::new(base.cast::<T>())
            .ok_or_else(|| LoadError::Other(format!("map `{name}` into memory: null")))?;
        Ok(MappedArray {
            base,
            len,
            bytes,
            _values: PhantomData,
        })
    }

    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// Writes `values` at index `at`; an error if they do not fit.
    pub(super) fn write(&mut self, at: usize, values: &[T]) -> Result<(), String> {
        let end = at
            .checked_add(values.len())
            .filter(|&end| end <= self.len)
            .ok_or_else(|| {
                format!(
                    "{} values at {at} do not fit in {} entries",
                    values.len(),
                    self.len
                )
            })?;
        debug_assert!(end <= self.len);
        // SAFETY: `at..end` is inside the mapping (checked above); `T` is plain data and the
        // mapping is 8-byte aligned with 8-byte multiples as values; `values` is ordinary
        // memory, so the ranges cannot overlap. The kernel may read concurrently: entries
        // written here are published only by a later map update (see the module docs).
        unsafe {
            std::ptr::copy_nonoverlapping(
                values.as_ptr(),
                self.base.as_ptr().add(at),
                values.len(),
            );
        }
        Ok(())
    }
}

impl<T> Drop for MappedArray<T> {
    fn drop(&mut self) {
        // SAFETY: `base` and `bytes` are exactly what mmap returned and was given; nothing
        // refers to the mapping after this.
        unsafe {
            libc::munmap(self.base.as_ptr().cast(), self.bytes);
        }
    }
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(size).unwrap_or(4096).max(4096)
}

/// The mapped arrays, opened on first use.
pub(super) struct UnwindArrays {
    rows: MappedArray<UnwindRow>,
    pages: MappedArray<u64>,
    mappings: MappedArray<UnwindMapping>,
}

impl Probe {
    fn unwind_arrays(&mut self) -> Result<&mut UnwindArrays, String> {
        if self.unwind_arrays.is_none() {
            let open = |probe: &mut Probe| -> Result<UnwindArrays, LoadError> {
                let rows =
                    MappedArray::new(probe.map_data(names::UNWIND_ROWS)?, names::UNWIND_ROWS)?;
                let pages =
                    MappedArray::new(probe.map_data(names::UNWIND_PAGES)?, names::UNWIND_PAGES)?;
                let mappings = MappedArray::new(
                    probe.map_data(names::UNWIND_MAPPINGS)?,
                    names::UNWIND_MAPPINGS,
                )?;
                Ok(UnwindArrays {
                    rows,
                    pages,
                    mappings,
                })
            };
            let arrays = open(self).map_err(|err| err.to_string())?;
            self.unwind_arrays = Some(arrays);
        }
        Ok(self.unwind_arrays.as_mut().expect("opened above"))
    }

    fn map_data(&mut self, name: &str) -> Result<&MapData, LoadError> {
        match self.ebpf_map(name)? {
            aya::maps::Map::Array(data) => Ok(data),
            _ => Err(LoadError::Other(format!("map `{name}` is not an array"))),
        }
    }
}

impl UnwindMaps for Probe {
    fn enabled(&self) -> bool {
        self.unwinder_loaded
    }

    fn capacity(&mut self) -> Result<UnwindCapacity, String> {
        let arrays = self.unwind_arrays()?;
        Ok(UnwindCapacity {
            rows: arrays.rows.len() as u32,
            pages: arrays.pages.len() as u32,
            mappings: arrays.mappings.len() as u32,
            files: probe_common::UNWIND_MAX_FILES,
            processes: probe_common::UNWIND_MAX_PROCS,
        })
    }

    fn write_rows(&mut self, at: u32, rows: &[UnwindRow]) -> Result<(), String> {
        self.unwind_arrays()?.rows.write(at as usize, rows)
    }

    fn write_pages(&mut self, at: u32, pages: &[u64]) -> Result<(), String> {
        self.unwind_arrays()?.pages.write(at as usize, pages)
    }

    fn write_mappings(&mut self, at: u32, mappings: &[UnwindMapping]) -> Result<(), String> {
        self.unwind_arrays()?.mappings.write(at as usize, mappings)
    }

    fn set_file(&mut self, slot: u32, file: &UnwindFile) -> Result<(), String> {
        let map = self
            .ebpf_map(names::UNWIND_FILES)
            .map_err(|err| err.to_string())?;
        let mut files: Array<_, UnwindFile> =
            Array::try_from(map).map_err(|err| err.to_string())?;
        files
            .set(slot, file, 0)
            .map_err(|err| format!("set unwind file slot {slot}: {err}"))
    }

    fn set_process(&mut self, pid: u32, process: &UnwindProcess) -> Result<(), String> {
        let map = self
            .ebpf_map(names::UNWIND_PROCS)
            .map_err(|err| err.to_string())?;
        let mut procs: BpfHashMap<_, u32, UnwindProcess> =
            BpfHashMap::try_from(map).map_err(|err| err.to_string())?;
        procs
            .insert(pid, process, 0)
            .map_err(|err| format!("add process {pid} to the kernel's unwind map: {err}"))
    }

    fn remove_process(&mut self, pid: u32) -> Result<(), String> {
        let map = self
            .ebpf_map(names::UNWIND_PROCS)
            .map_err(|err| err.to_string())?;
        let mut procs: BpfHashMap<_, u32, UnwindProcess> =
            BpfHashMap::try_from(map).map_err(|err| err.to_string())?;
        match procs.remove(&pid) {
            Ok(()) => Ok(()),
            // Not there: nothing to remove.
            Err(aya::maps::MapError::SyscallError(err))
                if err.io_error.raw_os_error() == Some(libc::ENOENT) =>
            {
                Ok(())
            }
            Err(err) => Err(format!(
                "remove process {pid} from the kernel's unwind map: {err}"
            )),
        }
    }
}
