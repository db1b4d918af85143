//! Checks made before anything is loaded, so the common mistakes get one clear line with
//! the fix instead of a kernel error code.

use std::{ffi::CStr, fs, io, os::unix::fs::MetadataExt as _, path::Path};

use thiserror::Error;

use crate::proc;

const BTF_PATH: &str = "/sys/kernel/btf/vmlinux";
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;
/// File descriptors probe needs at the very least: its runtime, the kernel BTF, a dozen
/// maps, six programs and their links (and one or two more per CPU, which the loader's
/// error reports when they run out).
const MIN_OPEN_FILES: u64 = 24;
/// `statfs` filesystem magics (linux/magic.h).
const PROC_SUPER_MAGIC: u32 = 0x9fa0;
const SYSFS_MAGIC: u32 = 0x6265_6572;
/// Names of the filesystems found where procfs or sysfs should be, for the error message.
const FILESYSTEM_NAMES: [(u32, &str); 8] = [
    (PROC_SUPER_MAGIC, "procfs"),
    (SYSFS_MAGIC, "sysfs"),
    (0x0102_1994, "tmpfs"),
    (0x8584_58f6, "ramfs"),
    (0x794c_7630, "overlayfs"),
    (0xef53, "ext2/3/4"),
    (0x9123_683e, "btrfs"),
    (0x5846_5342, "xfs"),
];
/// The inode of the initial PID namespace, a constant of the kernel's (`PROC_PID_INIT_INO`).
const INIT_PID_NS_INODE: u64 = 0xEFFF_FFFC;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum PreflightError {
    #[error(
        "/proc is not procfs ({found}): probe reads processes and its own privileges there; \
         mount it with `mount -t proc proc /proc`"
    )]
    ProcNotProcfs { found: String },
    #[error(
        "sysfs is not mounted at /sys ({found}): probe reads the kernel BTF and the online \
         CPUs there; mount it with `mount -t sysfs sysfs /sys`"
    )]
    SysNotSysfs { found: String },
    #[error(
        "probe runs in a child PID namespace (a container or `unshare --pid`), but its kernel \
         programs see the host's PIDs, so it would report nothing or the wrong processes: run \
         it in the host's PID namespace (`docker run --pid=host`, or `nsenter -t 1 -p`)"
    )]
    ChildPidNamespace,
    #[error(
        "probe needs root (missing {missing}): run it with sudo, or grant the capabilities \
         with `setcap cap_bpf,cap_perfmon,cap_sys_ptrace,cap_syslog+ep probe`"
    )]
    MissingCapabilities { missing: String },
    #[error(
        "kernel BTF not found at {BTF_PATH}: probe needs a kernel built with \
         CONFIG_DEBUG_INFO_BTF=y (most distribution kernels since 2020 are)"
    )]
    MissingBtf,
    #[error(
        "the limit of open files (`ulimit -n`) is {0}: probe needs a file descriptor for \
         every map, program and attachment, at least {MIN_OPEN_FILES}; raise it, e.g. \
         `ulimit -n 4096`"
    )]
    TooFewOpenFiles(u64),
    #[error("no process with PID {0} (check the number with `ps -p {0}`)")]
    NoSuchPid(u32),
    #[error("{tid} is a thread of process {pid}, not a process: pass -p {pid}")]
    ThreadNotProcess { tid: u32, pid: u32 },
}

/// Everything that must hold before loading the programs.
pub fn check(pids: &[u32]) -> Result<(), PreflightError> {
    expect_filesystem(c"/proc", PROC_SUPER_MAGIC)
        .map_err(|found| PreflightError::ProcNotProcfs { found })?;
    let status = proc::status("self").ok();
    let pid_ns_inode = fs::metadata("/proc/self/ns/pid").ok().map(|ns| ns.ino());
    let nspid = status.as_ref().and_then(|status| status.nspid.as_deref());
    check_pid_namespace(nspid, pid_ns_inode)?;
    // Unreadable, it shows no capabilities: the message then says what is needed.
    check_capabilities(status.map_or(0, |status| status.capeff))?;
    expect_filesystem(c"/sys", SYSFS_MAGIC)
        .map_err(|found| PreflightError::SysNotSysfs { found })?;
    check_open_files(open_files_limit())?;
    if !Path::new(BTF_PATH).exists() {
        return Err(PreflightError::MissingBtf);
    }
    pids.iter().try_for_each(|&pid| check_pid(pid))
}

/// What `probe dump` needs, which loads no programs: /proc, and processes to dump.
pub fn check_processes(pids: &[u32]) -> Result<(), PreflightError> {
    expect_filesystem(c"/proc", PROC_SUPER_MAGIC)
        .map_err(|found| PreflightError::ProcNotProcfs { found })?;
    pids.iter().try_for_each(|&pid| check_pid(pid))
}

/// Fails with what is at `path` instead, unless it is a filesystem of type `magic`: with
/// something else mounted over /proc or /sys, the files probe reads there are missing, which
/// would otherwise look like missing privileges or a kernel without BTF.
fn expect_filesystem(path: &CStr, magic: u32) -> Result<(), String> {
    match filesystem_magic(path) {
        Ok(found) if found == magic => Ok(()),
        found => Err(describe_filesystem(found)),
    }
}

fn filesystem_magic(path: &CStr) -> io::Result<u32> {
    // SAFETY: statfs is plain old data, for which all zeroes is a valid value.
    let mut stat: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is NUL-terminated and `stat` is a valid, writable statfs.
    if unsafe { libc::statfs(path.as_ptr(), &mut stat) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // The magics are 32-bit values; `f_type` is a signed long.
    Ok(stat.f_type as u32)
}

fn describe_filesystem(found: io::Result<u32>) -> String {
    match found {
        Ok(magic) => match FILESYSTEM_NAMES.iter().find(|(m, _)| *m == magic) {
            Some((_, name)) => format!("it is {name}"),
            None => format!("it is a filesystem of type {magic:#x}"),
        },
        Err(err) if err.kind() == io::ErrorKind::NotFound => "it does not exist".to_owned(),
        Err(err) => format!("it cannot be examined: {err}"),
    }
}

/// Below a few dozen file descriptors, creating the async runtime or the signal handlers
/// fails (tokio panics on the latter) before the loader could say why.
fn check_open_files(limit: Option<u64>) -> Result<(), PreflightError> {
    match limit {
        Some(limit) if limit < MIN_OPEN_FILES => Err(PreflightError::TooFewOpenFiles(limit)),
        _ => Ok(()),
    }
}

/// The soft limit of open files; `None` if unknown.
fn open_files_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid, writable rlimit; failure is reported by the return value.
    let read = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0;
    read.then_some(limit.rlim_cur)
}

/// The kernel programs see PIDs of the initial namespace only. `NSpid` (status) lists this
/// process's PID in each namespace from that of the /proc mount down to its own, so it
/// shows a child namespace unless /proc was mounted inside it (`unshare --mount-proc`, a
/// container); the namespace's inode shows it either way.
fn check_pid_namespace(nspid: Option<&[i32]>, ns_inode: Option<u64>) -> Result<(), PreflightError> {
    let levels = nspid.map_or(1, <[i32]>::len);
    let child_inode = ns_inode.is_some_and(|inode| inode != INIT_PID_NS_INODE);
    if levels > 1 || child_inode {
        return Err(PreflightError::ChildPidNamespace);
    }
    Ok(())
}

/// CAP_BPF and CAP_PERFMON (Linux >= 5.8) are enough to load and attach the programs; root
/// has them. `effective` is the effective set (`CapEff` in /proc/self/status).
fn check_capabilities(effective: u64) -> Result<(), PreflightError> {
    let missing: Vec<&str> = [(CAP_BPF, "CAP_BPF"), (CAP_PERFMON, "CAP_PERFMON")]
        .into_iter()
        .filter(|(bit, _)| effective & (1 << bit) == 0)
        .map(|(_, name)| name)
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(PreflightError::MissingCapabilities {
            missing: missing.join(" and "),
        })
    }
}

fn check_pid(pid: u32) -> Result<(), PreflightError> {
    // /proc/TID exists for threads too (hidden from listings), so compare with its Tgid.
    let tgid = proc::tgid(pid).ok_or(PreflightError::NoSuchPid(pid))?;
    if tgid != pid {
        return Err(PreflightError::ThreadNotProcess {
            tid: pid,
            pid: tgid,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proc::tests::with_named_thread;

    #[test]
    fn capabilities_from_status() {
        assert_eq!(check_capabilities(0x0000_01ff_ffff_ffff), Ok(()));
        assert_eq!(
            check_capabilities(0),
            Err(PreflightError::MissingCapabilities {
                missing: "CAP_BPF and CAP_PERFMON".into()
            })
        );
        assert_eq!(
            check_capabilities(1 << CAP_BPF),
            Err(PreflightError::MissingCapabilities {
                missing: "CAP_PERFMON".into()
            })
        );
    }

    #[test]
    fn open_file_limits() {
        assert_eq!(
            check_open_files(Some(10)),
            Err(PreflightError::TooFewOpenFiles(10))
        );
        assert_eq!(check_open_files(Some(MIN_OPEN_FILES)), Ok(()));
        assert_eq!(check_open_files(Some(libc::RLIM_INFINITY)), Ok(()));
        assert_eq!(check_open_files(None), Ok(()));
        let text = PreflightError::TooFewOpenFiles(10).to_string();
        assert!(
            text.contains("open files") && text.contains("ulimit -n"),
            "{text}"
        );
    }

    #[test]
    fn filesystems_are_named() {
        assert_eq!(expect_filesystem(c"/proc", PROC_SUPER_MAGIC), Ok(()));
        assert_eq!(
            expect_filesystem(c"/proc", SYSFS_MAGIC),
            Err("it is procfs".to_owned())
        );
        let missing = expect_filesystem(c"/nonexistent-probe-test", SYSFS_MAGIC);
        assert_eq!(missing, Err("it does not exist".to_owned()));
        assert_eq!(describe_filesystem(Ok(0x0102_1994)), "it is tmpfs");
        assert_eq!(
            describe_filesystem(Ok(0x1234)),
            "it is a filesystem of type 0x1234"
        );
    }

    #[test]
    fn child_pid_namespaces_are_refused() {
        let host = Some(&[4242][..]);
        assert_eq!(check_pid_namespace(host, Some(INIT_PID_NS_INODE)), Ok(()));
        // Kernels before 4.1 have no NSpid line.
        assert_eq!(check_pid_namespace(None, None), Ok(()));
        let child = Err(PreflightError::ChildPidNamespace);
        let nested = Some(&[4242, 2][..]);
        assert_eq!(check_pid_namespace(nested, Some(INIT_PID_NS_INODE)), child);
        assert_eq!(check_pid_namespace(nested, None), child);
        // /proc mounted inside the child namespace: NSpid shows only its own level.
        let own_proc = Some(&[2][..]);
        assert_eq!(check_pid_namespace(own_proc, Some(4026532175)), child);
    }

    #[test]
    fn pids() {
        assert_eq!(check_pid(std::process::id()), Ok(()));
        assert_eq!(
            check_pid(u32::MAX),
            Err(PreflightError::NoSuchPid(u32::MAX))
        );
        let pid = std::process::id();
        with_named_thread(c"worker", |tid| {
            assert_eq!(
                check_pid(tid),
                Err(PreflightError::ThreadNotProcess { tid, pid })
            );
        });
    }

    #[test]
    fn names_that_are_not_utf8_are_read() {
        let pid = std::process::id();
        with_named_thread(c"bad\xff\xfe", |tid| {
            assert_eq!(
                check_pid(tid),
                Err(PreflightError::ThreadNotProcess { tid, pid })
            );
        });
    }
}
