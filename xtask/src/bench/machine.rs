//! The machine under the bench: the kernel settings it needs for the length of the bench,
//! what the machine and the probe build are, and other tracers that would disturb a run.

use std::{
    fs, io,
    path::{Path, PathBuf},
    process::Command,
    thread,
};

use anyhow::{Context as _, Result};

use super::parse::parse_prog_type;
use crate::{run as run_command, workspace_root};

pub(super) const BPF_STATS: &str = "/proc/sys/kernel/bpf_stats_enabled";
const TRACEFS: &str = "/sys/kernel/tracing";

/// Enables `kernel.bpf_stats_enabled` (run time and count per program) for the bench and
/// puts the previous value back when dropped.
pub(super) struct BpfStats {
    previous: String,
}

impl BpfStats {
    pub(super) fn enable() -> Result<Self> {
        let previous =
            fs::read_to_string(BPF_STATS).with_context(|| format!("failed to read {BPF_STATS}"))?;
        fs::write(BPF_STATS, "1").with_context(|| format!("failed to write 1 to {BPF_STATS}"))?;
        Ok(Self {
            previous: previous.trim().to_owned(),
        })
    }
}

impl Drop for BpfStats {
    fn drop(&mut self) {
        if let Err(err) = fs::write(BPF_STATS, &self.previous) {
            eprintln!(
                "xtask: warning: failed to restore {BPF_STATS} to {}: {err}",
                self.previous
            );
        }
    }
}

/// bpftrace's `tracepoint:` probes need tracefs, which fresh machines here do not mount:
/// mounts it for the bench and unmounts it at the end if it was not there before.
pub(super) struct Tracefs {
    mounted_here: bool,
}

impl Tracefs {
    pub(super) fn ensure() -> Result<Self> {
        if Path::new(TRACEFS).join("events").exists() {
            return Ok(Self {
                mounted_here: false,
            });
        }
        run_command(Command::new("mount").args(["-t", "tracefs", "tracefs", TRACEFS]))?;
        Ok(Self { mounted_here: true })
    }
}

impl Drop for Tracefs {
    fn drop(&mut self) {
        // If something else started using it meanwhile, umount fails (busy) and it stays.
        if self.mounted_here
            && !Command::new("umount")
                .arg(TRACEFS)
                .status()
                .is_ok_and(|s| s.success())
        {
            eprintln!("xtask: warning: left {TRACEFS} mounted");
        }
    }
}

/// The machine the figures come from.
pub(super) struct Machine {
    pub(super) date: String,
    /// At the end of the bench.
    pub(super) load: String,
    pub(super) kernel: String,
    pub(super) cpus: usize,
    pub(super) model: String,
}

impl Machine {
    pub(super) fn read() -> Self {
        let date = Command::new("date")
            .args(["-u", "+%Y-%m-%d %H:%M UTC"])
            .output()
            .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
            .unwrap_or_default();
        let kernel = fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
            .to_owned();
        let cpus = thread::available_parallelism().map_or(0, usize::from);
        let model = fs::read_to_string("/proc/cpuinfo")
            .unwrap_or_default()
            .lines()
            .find_map(|line| {
                line.strip_prefix("model name")
                    .map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_owned())
            })
            .unwrap_or_default();
        Self {
            date,
            load: loadavg(),
            kernel,
            cpus,
            model,
        }
    }
}

/// The commit probe was built from, and whether its crates had uncommitted changes: figures
/// from different builds must not be compared as if they were noise.
pub(super) fn probe_build() -> String {
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .current_dir(workspace_root())
            .output()
            .ok()
            .filter(|out| out.status.success())
            .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    };
    let Some(commit) = git(&["rev-parse", "--short", "HEAD"]) else {
        return "an unknown commit".into();
    };
    let status = git(&[
        "status",
        "--porcelain",
        "--",
        "probe-common",
        "probe-ebpf",
        "probe-user",
    ]);
    match status {
        Some(changes) if changes.is_empty() => format!("commit {commit}"),
        _ => format!("commit {commit} with uncommitted changes"),
    }
}

/// The 1, 5 and 15 minute load averages.
pub(super) fn loadavg() -> String {
    let loadavg = fs::read_to_string("/proc/loadavg").unwrap_or_default();
    loadavg
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Processes other than `own` that hold tracing BPF programs, as "name (PID)". Another
/// tracer running meanwhile (say, a concurrent test run) slows every syscall of the workload
/// and adds its own to probe's counts, so runs that saw one are left out of the figures.
pub(super) fn other_bpf_users(own: Option<libc::pid_t>) -> Vec<String> {
    let Ok(processes) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    processes
        .filter_map(|entry| {
            entry
                .ok()?
                .file_name()
                .to_str()?
                .parse::<libc::pid_t>()
                .ok()
        })
        .filter(|&pid| Some(pid) != own && holds_tracing_program(pid))
        .map(|pid| {
            let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            format!("{} ({pid})", comm.trim())
        })
        .collect()
}

/// Whether the process holds a BPF program of a tracing type. Other types (cgroup, socket
/// filters: systemd holds some on most machines) do not run on a workload's syscalls or
/// timer ticks, so they are no disturbance.
fn holds_tracing_program(pid: libc::pid_t) -> bool {
    let Ok(fdinfos) = bpf_program_fdinfos(pid) else {
        return false;
    };
    fdinfos
        .iter()
        .filter_map(|path| fs::read_to_string(path).ok())
        .any(|fdinfo| {
            parse_prog_type(&fdinfo).is_some_and(|kind| TRACING_PROG_TYPES.contains(&kind))
        })
}

/// The /proc/PID/fdinfo/FD paths of the process's file descriptors that are BPF programs.
pub(super) fn bpf_program_fdinfos(pid: libc::pid_t) -> io::Result<Vec<PathBuf>> {
    let fds = fs::read_dir(format!("/proc/{pid}/fd"))?;
    Ok(fds
        .filter_map(|fd| fd.ok())
        .filter(|fd| {
            fs::read_link(fd.path()).is_ok_and(|target| target.as_os_str() == "anon_inode:bpf-prog")
        })
        .map(|fd| PathBuf::from(format!("/proc/{pid}/fdinfo")).join(fd.file_name()))
        .collect())
}

/// `enum bpf_prog_type` values of the programs that hook the kernel's execution: kprobe,
/// tracepoint, perf_event, raw_tracepoint, raw_tracepoint_writable and tracing (BTF).
const TRACING_PROG_TYPES: [u32; 6] = [2, 5, 7, 17, 24, 26];

pub(super) fn union(mut a: Vec<String>, b: Vec<String>) -> Vec<String> {
    a.extend(b);
    a.sort_unstable();
    a.dedup();
    a
}

/// A warning suffix for progress lines when other tracers were around.
pub(super) fn others_note(others: &[String]) -> String {
    if others.is_empty() {
        String::new()
    } else {
        format!(
            " (disturbed: {} held tracing BPF programs)",
            others.join(", ")
        )
    }
}
