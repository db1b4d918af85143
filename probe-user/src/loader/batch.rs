//! Reading a whole BPF hash map in a few syscalls (`BPF_MAP_LOOKUP_BATCH`, Linux 5.6)
//! instead of two per entry (get-next-key, then lookup): `probe watch` reads the thread map
//! every tick, and on a machine with thousands of threads the per-entry walk is most of
//! what watching costs. aya has no batch operations, so this is the raw `bpf(2)` call.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use aya::Pod;

/// `enum bpf_cmd`: `BPF_MAP_LOOKUP_BATCH`.
const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;
/// The kernel's `ENOTSUPP` (not in libc: it never reaches user space but from bpf(2)).
const ENOTSUPP: i32 = 524;
/// Entries asked for per call at first; doubled when one hash bucket holds more.
const FIRST_CHUNK: usize = 1024;

/// The `batch` member of `union bpf_attr` (include/uapi/linux/bpf.h).
#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

/// Every (key, value) of the hash map `fd`, whose keys are `K` and values `V` (the caller
/// checked both sizes against the map's). `None` when this kernel has no batch lookup for
/// it: the caller walks it entry by entry instead.
pub(super) fn lookup_all<K: Pod + Default, V: Pod + Default>(
    fd: BorrowedFd<'_>,
) -> io::Result<Option<Vec<(K, V)>>> {
    let mut entries = Vec::new();
    let mut chunk = FIRST_CHUNK;
    // The position to go on from: an opaque token the kernel writes (a bucket index for
    // hash maps); absent for the first call.
    let mut position: Option<u64> = None;
    loop {
        let mut keys = vec![K::default(); chunk];
        let mut values = vec![V::default(); chunk];
        let mut next: u64 = 0;
        let mut attr = BatchAttr {
            in_batch: position
                .as_ref()
                .map_or(0, |token| std::ptr::from_ref(token) as u64),
            out_batch: std::ptr::from_mut(&mut next) as u64,
            keys: keys.as_mut_ptr() as u64,
            values: values.as_mut_ptr() as u64,
            count: chunk as u32,
            map_fd: fd.as_raw_fd() as u32,
            ..BatchAttr::default()
        };
        // SAFETY: `attr` is a valid `bpf_attr` prefix of the size passed; `keys` and
        // `values` hold `count` elements of the map's key and value sizes (the caller's
        // check), so the kernel writes within them; the tokens are 8-byte locals, more
        // than the 4 bytes a hash map's token takes. All outlive the call.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_MAP_LOOKUP_BATCH,
                std::ptr::from_mut(&mut attr),
                std::mem::size_of::<BatchAttr>() as u32,
            )
        };
        let error = (ret < 0).then(io::Error::last_os_error);
        let filled = (attr.count as usize).min(chunk);
        match error.as_ref().and_then(io::Error::raw_os_error) {
            // A bucket holds more entries than fit: again from the same place, with more.
            Some(libc::ENOSPC) => {
                chunk *= 2;
                continue;
            }
            Some(libc::EINVAL | libc::EOPNOTSUPP | ENOTSUPP) if position.is_none() => {
                return Ok(None);
            }
            // ENOENT: the end of the map, these being the last.
            None | Some(libc::ENOENT) => {}
            Some(_) => return Err(error.unwrap_or_else(io::Error::last_os_error)),
        }
        entries.extend(keys.into_iter().zip(values).take(filled));
        if error.is_some() {
            return Ok(Some(entries));
        }
        position = Some(next);
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::{FromRawFd, OwnedFd};

    use super::*;

    /// `enum bpf_cmd` / `enum bpf_map_type` values the test needs.
    const BPF_MAP_CREATE: libc::c_long = 0;
    const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
    const BPF_MAP_TYPE_HASH: u32 = 1;

    fn bpf(cmd: libc::c_long, attr: &mut [u64; 16]) -> libc::c_long {
        // SAFETY: `attr` is 128 zero-initialised bytes, more than any `bpf_attr` member
        // the test uses; the kernel reads (and for these commands writes) only within it.
        unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_mut_ptr(), 128u32) }
    }

    /// A real kernel hash map of `max_entries`, u32 -> [u64; 6], or `None` without the
    /// privilege to make one (fails under CI, where the tests run as root).
    fn hash_map(max_entries: u32) -> Option<OwnedFd> {
        let mut attr = [0u64; 16];
        // map_type, key_size, value_size, max_entries: four u32s.
        attr[0] = u64::from(BPF_MAP_TYPE_HASH) | (4u64 << 32);
        attr[1] = 48 | (u64::from(max_entries) << 32);
        let fd = bpf(BPF_MAP_CREATE, &mut attr);
        if fd < 0 {
            assert!(
                std::env::var_os("CI").is_none(),
                "cannot create a BPF map: {}",
                io::Error::last_os_error()
            );
            return None;
        }
        // SAFETY: a new descriptor the kernel just returned, owned by nobody else.
        Some(unsafe { OwnedFd::from_raw_fd(fd as i32) })
    }

    fn insert(fd: &OwnedFd, key: u32, value: [u64; 6]) {
        let mut attr = [0u64; 16];
        // map_fd (u32, then padding to 8), key pointer, value pointer, flags.
        attr[0] = fd.as_raw_fd() as u64;
        attr[1] = std::ptr::from_ref(&key) as u64;
        attr[2] = value.as_ptr() as u64;
        assert_eq!(
            bpf(BPF_MAP_UPDATE_ELEM, &mut attr),
            0,
            "{}",
            io::Error::last_os_error()
        );
    }

    #[test]
    fn every_entry_comes_back_once_with_its_value() {
        use std::os::fd::AsFd as _;
        let Some(map) = hash_map(32_768) else {
            return;
        };
        // Empty: nothing, not an error.
        let empty = lookup_all::<u32, [u64; 6]>(map.as_fd()).unwrap();
        assert_eq!(empty.map(|e| e.len()), Some(0));
        // More than one call's worth, spread over the buckets.
        for key in 0..3_000u32 {
            insert(&map, key * 7919, [u64::from(key); 6]);
        }
        let mut entries = lookup_all::<u32, [u64; 6]>(map.as_fd())
            .unwrap()
            .expect("batch lookup on this kernel");
        entries.sort_unstable_by_key(|(key, _)| *key);
        assert_eq!(entries.len(), 3_000);
        for (i, (key, value)) in entries.iter().enumerate() {
            assert_eq!(*key, i as u32 * 7919);
            assert_eq!(*value, [i as u64; 6]);
        }
    }
}
