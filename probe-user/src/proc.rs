//! The /proc files of a process that probe reads, other than its memory map (that is
//! [`crate::procmaps`]): status, stat, command line and task list, each read here only.
//!
//! `procfs` parses status and stat. A process's name (its comm) and its arguments may be
//! any bytes, so none of them may make a live process unreadable: status is read as bytes
//! and made lossy UTF-8 before `procfs` parses it, stat `procfs` already reads lossily, and
//! comm and the command line are read here (see the README's "/proc").

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use procfs::process::{Stat, Status};
use procfs::FromRead as _;

/// `/proc/PID`, or `/proc/PID/task/TID` for one of its threads.
pub fn dir(pid: u32, tid: Option<u32>) -> PathBuf {
    match tid {
        Some(tid) => format!("/proc/{pid}/task/{tid}").into(),
        None => format!("/proc/{pid}").into(),
    }
}

/// Whether the process (or thread) is still there; a zombie is, until it is reaped.
pub fn exists(pid: u32, tid: Option<u32>) -> bool {
    dir(pid, tid).exists()
}

/// `/proc/PID/status` (or `/proc/self/status`; a thread's id works too, as `/proc/TID`
/// exists for every thread). Its `Name:` is lossy UTF-8.
pub fn status(pid: &str) -> io::Result<Status> {
    let bytes = fs::read(format!("/proc/{pid}/status"))?;
    Status::from_read(String::from_utf8_lossy(&bytes).as_bytes()).map_err(io::Error::other)
}

/// The process thread `tid` belongs to.
pub fn tgid(tid: u32) -> Option<u32> {
    let tgid = status(&tid.to_string()).ok()?.tgid;
    u32::try_from(tgid).ok()
}

/// `/proc/PID/stat` of a process or one of its threads.
pub fn stat(pid: u32, tid: Option<u32>) -> Result<Stat, procfs::ProcError> {
    Stat::from_file(dir(pid, tid).join("stat"))
}

/// The command name (comm) of a process or thread, lossy UTF-8; `None` once it is gone.
pub fn comm(pid: u32, tid: Option<u32>) -> Option<String> {
    read_comm(&dir(pid, tid).join("comm"))
}

/// A `comm` file: the name and a newline. By hand: `procfs` reads comm only as part of
/// stat, whose 50 other fields this does not need.
pub fn read_comm(path: &Path) -> Option<String> {
    let bytes = fs::read(path).ok()?;
    let name = bytes.strip_suffix(b"\n").unwrap_or(&bytes);
    Some(String::from_utf8_lossy(name).into_owned())
}

/// Whether `pid` is a zombie (or dead). A process that cannot be inspected counts as one:
/// it has no memory to read either.
pub fn is_zombie(pid: u32) -> bool {
    stat(pid, None).map_or(true, |stat| matches!(stat.state, 'Z' | 'X'))
}

/// The arguments of process `pid`, each lossy UTF-8; empty for a zombie or a kernel thread,
/// or once it is gone. By hand: `procfs`'s `Process::cmdline` fails on an argument that is
/// not UTF-8.
pub fn cmdline(pid: u32) -> Vec<String> {
    let Ok(bytes) = fs::read(dir(pid, None).join("cmdline")) else {
        return Vec::new();
    };
    split_cmdline(&bytes)
}

fn split_cmdline(bytes: &[u8]) -> Vec<String> {
    bytes
        .split(|&b| b == 0)
        .filter(|arg| !arg.is_empty())
        .map(|arg| String::from_utf8_lossy(arg).into_owned())
        .collect()
}

/// The thread ids of process `pid`, or `None` if `/proc/PID/task` is unreadable. By hand:
/// `procfs`'s `Process::tasks` opens every task's directory, which this does not need.
pub fn task_ids(pid: u32) -> Option<Vec<u32>> {
    let tasks = fs::read_dir(dir(pid, None).join("task")).ok()?;
    Some(
        tasks
            .filter_map(Result::ok)
            .filter_map(|task| task.file_name().to_str()?.parse().ok())
            .collect(),
    )
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Runs `check` with the id of a thread of this process named `name` (at most 15
    /// bytes), while that thread lives.
    pub(crate) fn with_named_thread(name: &'static std::ffi::CStr, check: impl FnOnce(u32)) {
        let (tid_tx, tid_rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            // SAFETY: PR_SET_NAME reads a NUL-terminated string (of at most 16 bytes)
            // from a valid pointer and names only this thread.
            unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr()) };
            // SAFETY: gettid has no preconditions.
            tid_tx.send(unsafe { libc::gettid() } as u32).unwrap();
            done_rx.recv().unwrap();
        });
        check(tid_rx.recv().unwrap());
        done_tx.send(()).unwrap();
        thread.join().unwrap();
    }

    #[test]
    fn names_that_are_not_utf8_are_read() {
        let pid = std::process::id();
        with_named_thread(c"bad\xff) (x\xfe", |tid| {
            let status = status(&tid.to_string()).unwrap();
            assert_eq!(status.name, "bad\u{fffd}) (x\u{fffd}");
            assert_eq!(tgid(tid), Some(pid));
            let name = comm(pid, Some(tid));
            assert_eq!(name.as_deref(), Some("bad\u{fffd}) (x\u{fffd}"));
            assert_eq!(stat(pid, Some(tid)).unwrap().pid as u32, tid);
        });
    }

    #[test]
    fn own_process_is_read() {
        let pid = std::process::id();
        assert!(exists(pid, None) && exists(pid, Some(pid)));
        assert_eq!(tgid(pid), Some(pid));
        assert!(!is_zombie(pid));
        let args = cmdline(pid);
        let exe = std::env::current_exe().unwrap();
        assert!(
            args.first()
                .is_some_and(|arg0| exe.ends_with(std::path::Path::new(arg0).file_name().unwrap())),
            "{args:?}"
        );
        assert!(task_ids(pid).unwrap().contains(&pid));
        assert_eq!(status("self").unwrap().tgid as u32, pid);
    }

    #[test]
    fn arguments_that_are_not_utf8_are_kept() {
        let args = split_cmdline(b"spin\xff\0--x\0\xfe\0");
        assert_eq!(args, ["spin\u{fffd}", "--x", "\u{fffd}"]);
        assert!(split_cmdline(b"").is_empty());
    }

    #[test]
    fn a_process_that_is_gone_reads_as_gone() {
        // PIDs above pid_max (at most 2^22) never exist.
        let pid = u32::MAX - 1;
        assert!(!exists(pid, None));
        assert!(status(&pid.to_string()).is_err());
        assert_eq!(tgid(pid), None);
        assert_eq!(comm(pid, None), None);
        assert!(cmdline(pid).is_empty());
        assert!(is_zombie(pid));
        assert_eq!(task_ids(pid), None);
    }
}
