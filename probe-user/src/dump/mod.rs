//! `probe dump`: what every thread of a process is doing or waiting on, read from /proc
//! without stopping it (no ptrace, no signal): state, wait channel, kernel stack, the
//! syscall it is blocked in with its key argument, and, with `--wait`, whether it ran at
//! all meanwhile. Threads that look the same are grouped, so a 500-thread process stays
//! readable.

pub mod locks;
pub mod native;
pub mod peers;
pub mod python;
pub mod read;
pub mod render;
pub mod timeout;

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use self::python::{PyStack, PythonView};
use self::read::{SyscallLine, ThreadRead, ThreadState};
use crate::syscall_names::{self, KeyArg};

/// The dump of every process asked for.
#[derive(Clone, Debug, Serialize)]
pub struct Dump {
    pub schema_version: u32,
    /// `--wait`: how long switches were watched for before the dump, and whether that was
    /// cut short (Ctrl-C, SIGTERM).
    pub wait_secs: Option<f64>,
    pub interrupted_by: Option<String>,
    pub processes: Vec<ProcessDump>,
}

pub const SCHEMA_VERSION: u32 = 1;

/// One process.
#[derive(Clone, Debug, Serialize)]
pub struct ProcessDump {
    pub pid: u32,
    pub name: String,
    pub cmdline: Vec<String>,
    /// It exited before the end (during `--wait`): what is shown is what was seen before.
    pub exited: bool,
    /// `3.12` when it is a CPython process whose interpreter was read.
    pub python_version: Option<String>,
    /// What could not be read, one line each.
    pub notices: Vec<String>,
    /// Threads waiting for a glibc mutex another thread of the process holds.
    pub mutex_waits: Vec<locks::MutexWait>,
    /// Cycles among those waits.
    pub deadlocks: Vec<locks::Deadlock>,
    /// With `--wait`, in a Python process: two or more threads blocked all along in lock
    /// waits of their own code (see [`python_lock_waits`]).
    pub possible_deadlock: Option<PossibleDeadlock>,
    pub thread_count: usize,
    /// Identical threads together (each thread alone with `--all`), most threads first.
    pub groups: Vec<ThreadGroup>,
}

/// Threads that look the same: one line of the text output.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ThreadGroup {
    pub state: ThreadState,
    pub wchan: Option<String>,
    pub syscall: Option<BlockedSyscall>,
    /// Innermost first; `None` when /proc would not show it (it needs root).
    pub kernel_stack: Option<Vec<String>>,
    /// The Python frames, innermost first, of a Python thread.
    pub python_stack: Option<PyStack>,
    /// The user stack it blocked with (native frames, Python frames merged in), innermost
    /// first; `None` where it could not be read (see the process's notices).
    pub user_stack: Option<native::UserStack>,
    /// With `--wait`: whether these threads ran during it.
    pub activity: Option<Activity>,
    pub threads: Vec<ThreadId>,
}

/// A thread of a group.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ThreadId {
    pub tid: u32,
    pub name: String,
    /// Its `threading` name, for a Python thread.
    pub python_name: Option<String>,
    /// CPU time so far, seconds.
    pub cpu_secs: Option<f64>,
}

/// The syscall a thread is in, from /proc/PID/task/TID/syscall (its saved registers).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BlockedSyscall {
    pub nr: u32,
    pub name: String,
    /// Its key argument, where it has one: `fd 3 → socket:[123]`, `futex 0x55d…`.
    pub arg: Option<String>,
    /// The six argument registers, hex.
    pub args: Vec<String>,
    /// User stack pointer and program counter when it entered the kernel, hex.
    pub sp: String,
    pub pc: String,
    /// Who is at the other end, for a wait on a pipe or unix socket (see `peers`).
    pub peer: Option<String>,
    /// What its timeout argument says (`timeout 5 s`, `wakes in 4.2 s`, `no timeout`).
    pub timeout: Option<String>,
}

/// What `--wait` saw of a group's threads.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Activity {
    /// Not on a CPU at all during the wait: blocked at least this long.
    Blocked { at_least_secs: f64 },
    /// Ran during the wait.
    Active,
}

/// A thread seen before and after `--wait`: it was not on a CPU in between if its CPU
/// time did not move (the scheduler adds to it at every switch away and every tick).
pub fn activity(before: &ThreadRead, after: &ThreadRead, wait_secs: f64) -> Option<Activity> {
    let (Some(before), Some(after)) = (before.cpu_ns, after.cpu_ns) else {
        return None;
    };
    Some(if after == before {
        Activity::Blocked {
            at_least_secs: wait_secs,
        }
    } else {
        Activity::Active
    })
}

/// The syscall of a thread, with its key argument named (fd targets read now, from
/// process `pid`'s fd table).
pub fn blocked_syscall(pid: u32, line: &SyscallLine) -> Option<BlockedSyscall> {
    let SyscallLine::InSyscall { nr, args, sp, pc } = line else {
        return None;
    };
    let name = syscall_names::name(*nr);
    let timeout = timeout::describe(pid, &name, args);
    let arg = match syscall_names::key_arg(*nr) {
        _ if matches!(name.as_ref(), "msgsnd" | "msgrcv") => {
            let msqid = args[0] as u32 as i32;
            Some(read::describe_queue(msqid, name.as_ref(), args[2]))
        }
        Some(KeyArg::Fd) => {
            // The fd is an int: the register's low 32 bits.
            let fd = args[0] as u32 as i32;
            (fd >= 0).then(|| match read::fd_target(pid, fd as u64) {
                Some(target) => format!("fd {fd} → {target}"),
                None => format!("fd {fd}"),
            })
        }
        Some(KeyArg::Futex) => Some(format!("futex {:#x}", args[0])),
        Some(KeyArg::Path(_)) | None => None,
    };
    Some(BlockedSyscall {
        nr: *nr,
        name: name.into_owned(),
        arg,
        args: args.iter().map(|a| format!("{a:#x}")).collect(),
        sp: format!("{sp:#x}"),
        pc: format!("{pc:#x}"),
        peer: None,
        timeout,
    })
}

/// One thread ready to group: what it is doing and who it is.
#[derive(Clone, Debug, PartialEq)]
pub struct ThreadEntry {
    pub key: GroupKey,
    pub id: ThreadId,
}

/// What makes two threads look the same. The syscall's argument registers and stack
/// pointers differ between threads waiting on the same thing, so only its name and key
/// argument count.
#[derive(Clone, Debug, PartialEq)]
pub struct GroupKey {
    pub state: ThreadState,
    pub wchan: Option<String>,
    pub syscall: Option<BlockedSyscall>,
    pub kernel_stack: Option<Vec<String>>,
    pub python_stack: Option<PyStack>,
    pub user_stack: Option<native::UserStack>,
    pub activity: Option<Activity>,
}

impl GroupKey {
    fn same_as(&self, other: &Self) -> bool {
        // Threads waiting alike each wait on a futex word of their own (a Python thread on
        // its own waiter lock): the word does not tell them apart, its stack does.
        let syscall = |s: &Option<BlockedSyscall>| {
            s.as_ref()
                .map(|s| (s.nr, s.arg.clone().filter(|_| s.name != "futex")))
        };
        self.state == other.state
            && self.wchan == other.wchan
            && syscall(&self.syscall) == syscall(&other.syscall)
            && self.kernel_stack == other.kernel_stack
            && self.python_stack == other.python_stack
            && self.user_stack == other.user_stack
            && self.activity == other.activity
    }
}

/// The entry of one thread as read (after `--wait`, with what it saw; `python`, its
/// process's interpreter, for a Python process; `user_stack`, the stack it blocked with).
pub fn entry(
    pid: u32,
    thread: &ThreadRead,
    activity: Option<Activity>,
    python: Option<&PythonView>,
    user_stack: Option<native::UserStack>,
) -> ThreadEntry {
    ThreadEntry {
        key: GroupKey {
            state: thread.state,
            wchan: thread.wchan.clone(),
            syscall: thread
                .syscall
                .as_ref()
                .and_then(|line| blocked_syscall(pid, line)),
            kernel_stack: thread.kernel_stack.clone(),
            python_stack: python.and_then(|view| view.stacks.get(&thread.tid).cloned()),
            user_stack,
            activity,
        },
        id: ThreadId {
            tid: thread.tid,
            name: thread.name.clone(),
            python_name: python.and_then(|view| view.names.get(&thread.tid).cloned()),
            cpu_secs: thread.cpu_ns.map(|ns| ns as f64 / 1e9),
        },
    }
}

/// Groups `entries` (each alone when `all`), most threads first, then by lowest tid. A
/// group's syscall is its first thread's (their registers differ; its name and key
/// argument are the same for all).
pub fn group(mut entries: Vec<ThreadEntry>, all: bool) -> Vec<ThreadGroup> {
    entries.sort_by_key(|e| e.id.tid);
    type Seen = BTreeSet<Option<String>>;
    let mut groups: Vec<(GroupKey, Vec<ThreadId>, Seen, Seen)> = Vec::new();
    for entry in entries {
        let arg = entry.key.syscall.as_ref().and_then(|s| s.arg.clone());
        let timeout = entry.key.syscall.as_ref().and_then(|s| s.timeout.clone());
        match groups
            .iter_mut()
            .find(|(key, ..)| !all && key.same_as(&entry.key))
        {
            Some((_, threads, args, timeouts)) => {
                threads.push(entry.id);
                args.insert(arg);
                timeouts.insert(timeout);
            }
            None => groups.push((
                entry.key,
                vec![entry.id],
                BTreeSet::from([arg]),
                BTreeSet::from([timeout]),
            )),
        }
    }
    groups.sort_by(|(_, a, ..), (_, b, ..)| b.len().cmp(&a.len()).then(a[0].tid.cmp(&b[0].tid)));
    groups
        .into_iter()
        .map(|(key, threads, args, timeouts)| ThreadGroup {
            state: key.state,
            wchan: key.wchan,
            // Futex words that differ between the threads: how many, not the first's; and
            // timeouts only where all agree.
            syscall: key.syscall.map(|mut syscall| {
                if args.len() > 1 {
                    syscall.arg = Some(format!("{} different futex words", args.len()));
                }
                if timeouts.len() > 1 {
                    syscall.timeout = Some("timeouts differ".to_owned());
                }
                syscall
            }),
            kernel_stack: key.kernel_stack,
            python_stack: key.python_stack,
            user_stack: key.user_stack,
            activity: key.activity,
            threads,
        })
        .collect()
}

/// Python threads that sat in a lock wait all through `--wait`, none of which can be
/// proven to wait for another (a `threading.Lock` has no owner): a possible deadlock.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PossibleDeadlock {
    pub blocked_at_least_secs: f64,
    pub threads: Vec<LockWaiter>,
}

/// One thread of a [`PossibleDeadlock`].
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LockWaiter {
    pub tid: u32,
    pub name: String,
    /// The futex word it waits on (the lock's semaphore).
    pub futex: String,
    /// Its innermost Python frame: where its code waits.
    pub at: python::PyFrame,
}

/// Python modules whose waits are coordination, not a lock the code took: a worker
/// idle in `queue.get()` or `Event.wait()` waits in `threading.py`'s `Condition.wait`.
const COORDINATION_MODULES: [&str; 4] = [
    "threading.py",
    "queue.py",
    "concurrent/futures/_base.py",
    "multiprocessing/connection.py",
];

/// The threads of `entries` blocked all through the wait in a futex wait whose innermost
/// Python frame is the program's own code (not a `threading` or `queue` wait); two or
/// more of them are a possible deadlock.
pub fn python_lock_waits(entries: &[ThreadEntry]) -> Option<PossibleDeadlock> {
    let mut blocked_for = f64::INFINITY;
    let threads: Vec<LockWaiter> = entries
        .iter()
        .filter_map(|entry| {
            let Some(Activity::Blocked { at_least_secs }) = entry.key.activity else {
                return None;
            };
            let syscall = entry.key.syscall.as_ref().filter(|s| s.name == "futex")?;
            let at = entry.key.python_stack.as_ref()?.frames.first()?;
            if COORDINATION_MODULES.iter().any(|m| at.file.ends_with(m)) {
                return None;
            }
            blocked_for = blocked_for.min(at_least_secs);
            Some(LockWaiter {
                tid: entry.id.tid,
                name: entry
                    .id
                    .python_name
                    .clone()
                    .unwrap_or(entry.id.name.clone()),
                futex: syscall.args.first().cloned().unwrap_or_default(),
                at: at.clone(),
            })
        })
        .collect();
    (threads.len() >= 2).then_some(PossibleDeadlock {
        blocked_at_least_secs: blocked_for,
        threads,
    })
}

/// The futex waits among `threads` (their syscall arguments: word, operation, value).
pub fn futex_waits<'a>(threads: impl IntoIterator<Item = &'a ThreadRead>) -> Vec<locks::FutexWait> {
    threads
        .into_iter()
        .filter_map(|thread| match thread.syscall {
            Some(SyscallLine::InSyscall { nr, args, .. }) if syscall_names::name(nr) == "futex" => {
                Some(locks::FutexWait {
                    tid: thread.tid,
                    addr: args[0],
                    op: args[1],
                    val: args[2],
                })
            }
            _ => None,
        })
        .collect()
}

/// Threads by tid, as read at one moment.
pub type Snapshot = BTreeMap<u32, ThreadRead>;

/// Every thread of `pid` now; `None` once the process is gone.
pub fn snapshot(pid: u32) -> Option<Snapshot> {
    let tids = crate::proc::task_ids(pid)?;
    Some(
        tids.into_iter()
            .filter_map(|tid| Some((tid, read::read_thread(pid, tid)?)))
            .collect(),
    )
}

#[cfg(test)]
mod tests;
