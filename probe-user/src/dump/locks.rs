//! Who holds the lock a thread waits for, and deadlocks: glibc's mutexes keep their owner's
//! tid in the mutex (`pthread_mutex_t.__data.__owner`, 8 bytes after the lock word the
//! waiter's futex names), so a thread blocked in the futex wait of a locked mutex points at
//! the thread it waits for; a cycle of such waits is a deadlock.
//!
//! A futex wait is taken for a mutex wait only when it has the shape of glibc's low-level
//! lock wait (`FUTEX_WAIT` on a word holding 2, "locked, with waiters") and the owner read
//! from the mutex is a thread of the same process: a condition variable, a semaphore or an
//! unrelated futex word does not match all of that.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::python::memory::{LiveMemory, ReadExt};

/// `FUTEX_WAIT`, the operation glibc's lock wait uses (with `FUTEX_PRIVATE_FLAG` for a
/// process-private mutex).
const FUTEX_WAIT: u64 = 0;
const FUTEX_CMD_MASK: u64 = 0x7f;
/// The value glibc's lock wait waits on: "locked, and someone waits".
const LOCKED_WITH_WAITERS: u64 = 2;
/// Bytes from the lock word to `__owner` in glibc's `struct __pthread_mutex_s` (x86-64:
/// `int __lock; unsigned __count; int __owner; ...`).
const OWNER_OFFSET: u64 = 8;

/// A thread waiting in a futex, as the syscall arguments say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FutexWait {
    pub tid: u32,
    /// The futex word's address, the operation and the value waited on.
    pub addr: u64,
    pub op: u64,
    pub val: u64,
}

/// One wait for a mutex whose owner is known.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MutexWait {
    pub waiter: u32,
    /// What is waited for.
    pub kind: LockKind,
    /// Its address: the mutex, or the `RLock` object.
    pub mutex: String,
    pub owner: u32,
}

/// The kind of lock a [`MutexWait`] waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LockKind {
    /// A glibc `pthread_mutex_t`: its owner's tid is in the mutex.
    Mutex,
    /// A Python `threading.RLock`: its owner's thread ident is in the object.
    #[serde(rename = "threading.RLock")]
    RLock,
}

impl LockKind {
    pub fn describe(self) -> &'static str {
        match self {
            LockKind::Mutex => "mutex",
            LockKind::RLock => "threading.RLock",
        }
    }
}

/// A cycle of threads, each waiting for a mutex the next one holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Deadlock {
    /// In cycle order: each waits for a mutex the next holds (the last for the first's).
    pub waits: Vec<MutexWait>,
}

/// Whether the wait has the shape of glibc's low-level lock wait.
pub fn is_lock_wait(wait: &FutexWait) -> bool {
    wait.op & FUTEX_CMD_MASK == FUTEX_WAIT && wait.val == LOCKED_WITH_WAITERS
}

/// The mutex waits among `waits` whose owner (read from process `pid`'s memory) is one of
/// `threads`.
pub fn mutex_waits(pid: u32, waits: &[FutexWait], threads: &BTreeSet<u32>) -> Vec<MutexWait> {
    let memory = LiveMemory::new(pid);
    waits
        .iter()
        .filter(|wait| is_lock_wait(wait))
        .filter_map(|wait| {
            let owner = memory.read_i32(wait.addr.wrapping_add(OWNER_OFFSET)).ok()?;
            let owner = u32::try_from(owner).ok()?;
            (owner != wait.tid && threads.contains(&owner)).then(|| MutexWait {
                waiter: wait.tid,
                kind: LockKind::Mutex,
                mutex: format!("{:#x}", wait.addr),
                owner,
            })
        })
        .collect()
}

/// The cycles among `waits` (a thread waits for one mutex at a time, so each thread has at
/// most one outgoing wait), each once, starting from its lowest tid.
pub fn deadlocks(waits: &[MutexWait]) -> Vec<Deadlock> {
    let next: BTreeMap<u32, &MutexWait> = waits.iter().map(|w| (w.waiter, w)).collect();
    let mut found = Vec::new();
    let mut in_cycle = BTreeSet::new();
    for &start in next.keys() {
        if in_cycle.contains(&start) {
            continue;
        }
        // Follow the waits from `start`; a cycle is found when a thread repeats.
        let mut path: Vec<u32> = Vec::new();
        let mut at = start;
        while let Some(wait) = next.get(&at) {
            if let Some(from) = path.iter().position(|&t| t == at) {
                let cycle = &path[from..];
                if cycle.iter().all(|t| !in_cycle.contains(t)) {
                    let lowest = cycle
                        .iter()
                        .position(|t| t == cycle.iter().min().unwrap_or(&at));
                    let mut order: Vec<u32> = cycle.to_vec();
                    order.rotate_left(lowest.unwrap_or(0));
                    in_cycle.extend(order.iter().copied());
                    found.push(Deadlock {
                        waits: order.iter().map(|t| (*next[t]).clone()).collect(),
                    });
                }
                break;
            }
            path.push(at);
            at = wait.owner;
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wait(waiter: u32, owner: u32) -> MutexWait {
        MutexWait {
            waiter,
            kind: LockKind::Mutex,
            mutex: format!("{:#x}", 0x1000 + waiter),
            owner,
        }
    }

    #[test]
    fn a_cycle_is_a_deadlock_and_a_chain_is_not() {
        // 10 -> 11 -> 10 is a deadlock; 12 waits on 10, part of none.
        let waits = [wait(11, 10), wait(10, 11), wait(12, 10)];
        let found = deadlocks(&waits);
        assert_eq!(found.len(), 1);
        let tids: Vec<(u32, u32)> = found[0].waits.iter().map(|w| (w.waiter, w.owner)).collect();
        assert_eq!(tids, [(10, 11), (11, 10)]);
        // A chain that ends at a thread that waits for nothing.
        assert!(deadlocks(&[wait(1, 2), wait(2, 3)]).is_empty());
        // Three threads in a ring, found once.
        let ring = deadlocks(&[wait(7, 5), wait(5, 6), wait(6, 7)]);
        assert_eq!(ring.len(), 1);
        assert_eq!(ring[0].waits[0].waiter, 5);
    }

    #[test]
    fn only_glibc_lock_waits_count() {
        let lock = FutexWait {
            tid: 1,
            addr: 0x10,
            op: 128, // FUTEX_WAIT | FUTEX_PRIVATE_FLAG
            val: 2,
        };
        assert!(is_lock_wait(&lock));
        // A condition variable's wait: FUTEX_WAIT_BITSET.
        assert!(!is_lock_wait(&FutexWait { op: 137, ..lock }));
        // A word that does not say "locked, with waiters".
        assert!(!is_lock_wait(&FutexWait { val: 0, ..lock }));
    }

    #[test]
    fn a_real_mutex_names_its_owner() {
        let pid = std::process::id();
        // A mutex of ours, locked by this thread while it looks.
        let mut raw: Box<libc::pthread_mutex_t> = Box::new(libc::PTHREAD_MUTEX_INITIALIZER);
        let addr = std::ptr::from_mut(raw.as_mut()) as u64;
        // SAFETY: `raw` is an initialised mutex that outlives the lock and unlock below.
        assert_eq!(unsafe { libc::pthread_mutex_lock(raw.as_mut()) }, 0);
        // SAFETY: gettid has no preconditions.
        let me = unsafe { libc::gettid() } as u32;
        let waits = [FutexWait {
            tid: me + 1_000_000,
            addr,
            op: 128,
            val: 2,
        }];
        let threads = BTreeSet::from([me, me + 1_000_000]);
        let found = mutex_waits(pid, &waits, &threads);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].owner, me);
        // SAFETY: locked above by this thread.
        assert_eq!(unsafe { libc::pthread_mutex_unlock(raw.as_mut()) }, 0);
    }
}
