//! Reading another process's memory, behind a trait so the struct readers can be tested
//! against fake memory in-process.

use std::collections::BTreeMap;
use std::io;

/// Largest single read; anything bigger is a garbage length read from the target.
pub const MAX_READ: usize = 1 << 20;

/// Why a read of target memory failed.
#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    /// The requested length exceeds [`MAX_READ`].
    #[error("refusing to read {len} bytes at {addr:#x} (limit {MAX_READ})")]
    TooLarge { addr: u64, len: usize },
    /// Some byte of the range is not mapped in the target (or the address is garbage).
    #[error("{len} bytes at {addr:#x} are not readable in the target")]
    Unmapped { addr: u64, len: usize },
    /// The target exited.
    #[error("process {pid} is gone")]
    Gone { pid: u32 },
    /// No permission to read the target.
    #[error(
        "permission denied reading the memory of process {pid}: run probe as root (or with CAP_SYS_PTRACE)"
    )]
    PermissionDenied { pid: u32 },
    /// Any other failure.
    #[error("failed to read {len} bytes at {addr:#x} of process {pid}")]
    Io {
        pid: u32,
        addr: u64,
        len: usize,
        #[source]
        source: io::Error,
    },
}

/// A source of target-process memory.
pub trait ProcessMemory {
    /// Fills `buf` with the bytes at `addr`, completely, or fails.
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError>;
}

/// Typed little helpers on top of [`ProcessMemory::read`].
pub trait ReadExt: ProcessMemory {
    /// Reads a native-endian `u64` (a pointer on the 64-bit targets probe supports).
    fn read_u64(&self, addr: u64) -> Result<u64, MemoryError> {
        let mut b = [0u8; 8];
        self.read(addr, &mut b)?;
        Ok(u64::from_ne_bytes(b))
    }

    /// Reads a native-endian `u32`.
    fn read_u32(&self, addr: u64) -> Result<u32, MemoryError> {
        let mut b = [0u8; 4];
        self.read(addr, &mut b)?;
        Ok(u32::from_ne_bytes(b))
    }

    /// Reads a native-endian `i32`.
    fn read_i32(&self, addr: u64) -> Result<i32, MemoryError> {
        self.read_u32(addr).map(|v| v as i32)
    }

    /// Reads one byte.
    fn read_u8(&self, addr: u64) -> Result<u8, MemoryError> {
        let mut b = [0u8; 1];
        self.read(addr, &mut b)?;
        Ok(b[0])
    }

    /// Reads `len` bytes into a new vector (bounded by [`MAX_READ`]).
    fn read_vec(&self, addr: u64, len: usize) -> Result<Vec<u8>, MemoryError> {
        if len > MAX_READ {
            return Err(MemoryError::TooLarge { addr, len });
        }
        let mut v = vec![0u8; len];
        self.read(addr, &mut v)?;
        Ok(v)
    }
}

impl<T: ProcessMemory + ?Sized> ReadExt for T {}

/// The memory of a live process, read with `process_vm_readv` (no ptrace stop; the target
/// keeps running, so multi-field reads can be torn and callers must validate).
#[derive(Clone, Copy, Debug)]
pub struct LiveMemory {
    pid: u32,
}

impl LiveMemory {
    /// Memory of process `pid`.
    pub fn new(pid: u32) -> LiveMemory {
        LiveMemory { pid }
    }

    /// The process this reads.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    fn error(&self, addr: u64, len: usize, err: io::Error) -> MemoryError {
        match err.raw_os_error() {
            Some(libc::EFAULT) => MemoryError::Unmapped { addr, len },
            Some(libc::ESRCH) => MemoryError::Gone { pid: self.pid },
            Some(libc::EPERM) | Some(libc::EACCES) => {
                MemoryError::PermissionDenied { pid: self.pid }
            }
            _ => MemoryError::Io {
                pid: self.pid,
                addr,
                len,
                source: err,
            },
        }
    }
}

impl ProcessMemory for LiveMemory {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        let len = buf.len();
        if len > MAX_READ {
            return Err(MemoryError::TooLarge { addr, len });
        }
        if len == 0 {
            return Ok(());
        }
        let local = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: len,
        };
        let remote = libc::iovec {
            iov_base: addr as usize as *mut libc::c_void,
            iov_len: len,
        };
        // SAFETY: `local` describes `buf`, which is valid for writes of `len` bytes for the
        // whole call; `remote` is only interpreted by the kernel in the target's address space
        // (bad addresses there give EFAULT, never UB here). One iovec each.
        let got =
            unsafe { libc::process_vm_readv(self.pid as libc::pid_t, &local, 1, &remote, 1, 0) };
        if got < 0 {
            return Err(self.error(addr, len, io::Error::last_os_error()));
        }
        if got as usize != len {
            // A partial read means the range crosses into an unmapped page.
            return Err(MemoryError::Unmapped { addr, len });
        }
        Ok(())
    }
}

/// In-memory fake: a set of non-overlapping regions. Reads must lie inside one region.
#[derive(Clone, Debug, Default)]
pub struct FakeMemory {
    regions: BTreeMap<u64, Vec<u8>>,
}

impl FakeMemory {
    /// Empty memory: every read fails with [`MemoryError::Unmapped`].
    pub fn new() -> FakeMemory {
        FakeMemory::default()
    }

    /// Adds a region of `bytes` at `addr` (builder style).
    pub fn with(mut self, addr: u64, bytes: Vec<u8>) -> FakeMemory {
        self.insert(addr, bytes);
        self
    }

    /// Adds a region of `bytes` at `addr`.
    pub fn insert(&mut self, addr: u64, bytes: Vec<u8>) {
        self.regions.insert(addr, bytes);
    }

    /// Mutable access to the region starting exactly at `addr`.
    pub fn region_mut(&mut self, addr: u64) -> Option<&mut Vec<u8>> {
        self.regions.get_mut(&addr)
    }
}

impl ProcessMemory for FakeMemory {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        let len = buf.len();
        if len > MAX_READ {
            return Err(MemoryError::TooLarge { addr, len });
        }
        let unmapped = MemoryError::Unmapped { addr, len };
        let Some((&start, bytes)) = self.regions.range(..=addr).next_back() else {
            return Err(unmapped);
        };
        let from = (addr - start) as usize;
        let src = from
            .checked_add(len)
            .and_then(|to| bytes.get(from..to))
            .ok_or(unmapped)?;
        buf.copy_from_slice(src);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fake_reads_inside_regions_only() {
        let mem = FakeMemory::new().with(0x1000, vec![1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(
            mem.read_u32(0x1004).unwrap(),
            u32::from_ne_bytes([5, 6, 7, 8])
        );
        assert!(matches!(
            mem.read_u32(0x1006),
            Err(MemoryError::Unmapped { .. })
        ));
        assert!(matches!(
            mem.read_u8(0xfff),
            Err(MemoryError::Unmapped { .. })
        ));
        assert!(matches!(
            mem.read_u8(u64::MAX),
            Err(MemoryError::Unmapped { .. })
        ));
    }

    #[test]
    fn oversized_reads_are_refused() {
        let mem = FakeMemory::new();
        let err = mem.read_vec(0, MAX_READ + 1).unwrap_err();
        assert!(matches!(err, MemoryError::TooLarge { .. }));
    }

    #[test]
    fn live_reads_own_memory() {
        let value: u64 = 0x1122_3344_5566_7788;
        let mem = LiveMemory::new(std::process::id());
        let addr = std::ptr::addr_of!(value) as u64;
        assert_eq!(mem.read_u64(addr).unwrap(), value);
        assert!(matches!(mem.read_u64(8), Err(MemoryError::Unmapped { .. })));
    }
}
