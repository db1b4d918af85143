//! The observer processes: starting one, checking that it attached, reading its CPU time and
//! peak RSS from /proc while it runs, and stopping and reaping it with its rusage.

use std::{
    fs, io,
    path::PathBuf,
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};

use super::{
    parse::parse_vm_hwm_kib,
    plan::{Observer, Paths},
};

/// How long a stopped observer may take to write its output and exit before it is killed.
pub(super) const STOP_TIMEOUT: Duration = Duration::from_secs(120);
/// How often a stopping observer is polled; small next to its multi-second wall time.
const POLL: Duration = Duration::from_millis(10);

/// An observer process we started. Dropping it before `stop` reaped it kills it by PID, so
/// an error anywhere in the bench never leaves a tracer attached.
pub(super) struct Observed {
    pub(super) pid: libc::pid_t,
    name: &'static str,
    started: Instant,
    stderr: PathBuf,
    reaped: bool,
}

/// How an observer ended and what its process used, from wait4.
pub(super) struct Exit {
    status: libc::c_int,
    pub(super) wall: Duration,
    pub(super) cpu: Duration,
    pub(super) peak_rss_kib: u64,
    /// From the SIGINT that ended it to its exit (to [`POLL`]): the time it took to write
    /// its output. Zero when it exited by itself.
    pub(super) stop_latency: Duration,
}

impl Observed {
    pub(super) fn spawn(observer: Observer, argv: &[String], paths: &Paths) -> Result<Self> {
        let stderr_path = paths.stderr(observer);
        let stderr = fs::File::create(&stderr_path)
            .with_context(|| format!("failed to create {}", stderr_path.display()))?;
        // Files, not pipes: nobody reads while the observer runs, and a full pipe would block it.
        let stdout = if observer.is_probe_spin() {
            Stdio::from(
                fs::File::create(paths.probe_report())
                    .context("failed to create probe's report file")?,
            )
        } else {
            Stdio::null()
        };
        let started = Instant::now();
        let child = Command::new(&argv[0])
            .args(&argv[1..])
            .current_dir(&paths.root)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("failed to start {}", argv.join(" ")))?;
        let pid = libc::pid_t::try_from(child.id()).context("child PID out of range")?;
        // From here on the PID is ours to reap: wait4 gives the rusage that Child::wait hides.
        Ok(Self {
            pid,
            name: observer.name(),
            started,
            stderr: stderr_path,
            reaped: false,
        })
    }

    /// Time since it was started.
    pub(super) fn running_for(&self) -> Duration {
        self.started.elapsed()
    }

    /// Fails if the observer already exited, e.g. because it could not attach.
    pub(super) fn ensure_running(&mut self) -> Result<()> {
        match self.try_reap()? {
            None => Ok(()),
            Some(exit) => bail!(
                "{} exited before the workload started ({}); see {}",
                self.name,
                describe(exit.status),
                self.stderr.display()
            ),
        }
    }

    /// Ends the observer with SIGINT (each of them reports and exits on it) and reaps it.
    /// `None`: it did not exit within [`STOP_TIMEOUT`] and was killed.
    pub(super) fn stop(mut self) -> Result<Option<Exit>> {
        self.signal(libc::SIGINT);
        let signalled = Instant::now();
        let deadline = signalled + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if let Some(mut exit) = self.try_reap()? {
                exit.stop_latency = signalled.elapsed();
                if !ended_by_sigint(exit.status) {
                    bail!(
                        "{} failed ({}); see {}",
                        self.name,
                        describe(exit.status),
                        self.stderr.display()
                    );
                }
                return Ok(Some(exit));
            }
            thread::sleep(POLL);
        }
        // Drop kills it.
        Ok(None)
    }

    fn try_reap(&mut self) -> Result<Option<Exit>> {
        if self.reaped {
            bail!("{} was already reaped", self.name);
        }
        let mut status = 0;
        // SAFETY: rusage is plain integers, for which all-zero bytes are a valid value.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: both pointers are to live locals; the PID is our child and not yet reaped
        // (checked above), so it cannot name another process.
        let pid = unsafe { libc::wait4(self.pid, &mut status, libc::WNOHANG, &mut usage) };
        match pid {
            0 => Ok(None),
            -1 => Err(io::Error::last_os_error())
                .with_context(|| format!("failed to wait for {}", self.name)),
            _ => {
                self.reaped = true;
                let cpu = timeval(usage.ru_utime) + timeval(usage.ru_stime);
                let peak_rss_kib = u64::try_from(usage.ru_maxrss).unwrap_or(0);
                Ok(Some(Exit {
                    status,
                    wall: self.started.elapsed(),
                    cpu,
                    peak_rss_kib,
                    stop_latency: Duration::ZERO,
                }))
            }
        }
    }

    fn signal(&self, signal: libc::c_int) {
        if !self.reaped {
            // SAFETY: the PID is our unreaped child (a zombie at worst), never another process.
            unsafe { libc::kill(self.pid, signal) };
        }
    }
}

impl Drop for Observed {
    fn drop(&mut self) {
        if self.reaped {
            return;
        }
        self.signal(libc::SIGKILL);
        let mut status = 0;
        // SAFETY: the PID is our unreaped child and `status` is a live local.
        unsafe { libc::waitpid(self.pid, &mut status, 0) };
    }
}

/// An observer's CPU time and peak RSS so far, read from /proc while it runs.
pub(super) struct Snapshot {
    at: Instant,
    cpu_ns: u64,
    peak_rss_kib: u64,
}

/// probe while the workload ran (from the end of SETTLE to the workload's exit): its steady
/// cost, without loading the programs before and writing the report after.
#[derive(Clone, Copy)]
pub(super) struct Observing {
    /// CPU time before the workload started: loading and attaching, and SETTLE of watching.
    pub(super) cpu_before: Duration,
    /// CPU time while the workload ran.
    pub(super) cpu: Duration,
    span: Duration,
    pub(super) peak_rss_kib: u64,
}

impl Observing {
    pub(super) fn between(before: &Snapshot, after: &Snapshot) -> Self {
        Self {
            cpu_before: Duration::from_nanos(before.cpu_ns),
            cpu: Duration::from_nanos(after.cpu_ns.saturating_sub(before.cpu_ns)),
            span: after.at.duration_since(before.at),
            peak_rss_kib: after.peak_rss_kib,
        }
    }

    pub(super) fn cpu_pct(&self) -> f64 {
        100.0 * self.cpu.as_secs_f64() / self.span.as_secs_f64().max(1e-9)
    }
}

impl Observed {
    /// CPU time of the whole process so far, threads that already exited included (its
    /// CPU-time clock: nanoseconds, where /proc/PID/stat has 10 ms ticks and the threads'
    /// schedstat files vanish with them), and its peak RSS so far (VmHWM).
    pub(super) fn snapshot(&self) -> Result<Snapshot> {
        let dir = PathBuf::from(format!("/proc/{}", self.pid));
        let cpu_ns = process_cpu_ns(self.pid)
            .with_context(|| format!("failed to read the CPU time of {}", self.name))?;
        let status = fs::read_to_string(dir.join("status"))
            .with_context(|| format!("failed to read the status of {}", self.name))?;
        Ok(Snapshot {
            at: Instant::now(),
            cpu_ns,
            peak_rss_kib: parse_vm_hwm_kib(&status).unwrap_or(0),
        })
    }
}

/// Total CPU time of process `pid`, all its threads, living and exited, in nanoseconds.
fn process_cpu_ns(pid: libc::pid_t) -> std::io::Result<u64> {
    let mut clock: libc::clockid_t = 0;
    // SAFETY: `clock` is a valid, writable clockid_t.
    let err = unsafe { libc::clock_getcpuclockid(pid, &mut clock) };
    if err != 0 {
        return Err(std::io::Error::from_raw_os_error(err));
    }
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid, writable timespec; `clock` came from clock_getcpuclockid.
    if unsafe { libc::clock_gettime(clock, &mut now) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let secs = u64::try_from(now.tv_sec).unwrap_or(0);
    let nanos = u64::try_from(now.tv_nsec).unwrap_or(0);
    Ok(secs * 1_000_000_000 + nanos)
}

fn timeval(tv: libc::timeval) -> Duration {
    let secs = u64::try_from(tv.tv_sec).unwrap_or(0);
    let micros = u64::try_from(tv.tv_usec).unwrap_or(0);
    Duration::from_secs(secs) + Duration::from_micros(micros)
}

/// perf exits 130 (128 + SIGINT) after a SIGINT; probe and bpftrace exit 0.
fn ended_by_sigint(status: libc::c_int) -> bool {
    (libc::WIFEXITED(status) && matches!(libc::WEXITSTATUS(status), 0 | 130))
        || (libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGINT)
}

fn describe(status: libc::c_int) -> String {
    if libc::WIFSIGNALED(status) {
        format!("killed by signal {}", libc::WTERMSIG(status))
    } else {
        format!("exit code {}", libc::WEXITSTATUS(status))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_cpu_time_keeps_exited_threads() {
        let pid = libc::pid_t::try_from(std::process::id()).expect("pid fits pid_t");
        let before = process_cpu_ns(pid).expect("own CPU clock");
        let spun = std::thread::spawn(|| {
            let start = std::time::Instant::now();
            let mut x = 1u64;
            while start.elapsed() < Duration::from_millis(50) {
                x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
            }
            x
        });
        spun.join().expect("spinning thread");
        let after = process_cpu_ns(pid).expect("own CPU clock");
        // The thread is gone, and its ~50 ms (at least 20 on a busy machine) still count.
        assert!(after - before >= 20_000_000, "{before} -> {after}");
        // pid_max itself is never a process's pid.
        let pid_max = std::fs::read_to_string("/proc/sys/kernel/pid_max").expect("pid_max");
        let unused: libc::pid_t = pid_max.trim().parse().expect("pid_max is a number");
        assert!(process_cpu_ns(unused).is_err());
    }
}
