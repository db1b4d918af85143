//! `probe dump` next to `py-spy dump` (as it comes, which pauses the process, and with
//! `--nonblocking`) and gdb's `thread apply all bt`, on one CPython process of
//! [`DUMP_THREADS`] idle threads and one thread running a pure-Python loop
//! (`bench/dump_target.py`). Each dumper runs [`DUMP_RUNS`] times, in an order that rotates
//! every run, a second apart: its wall time, CPU and peak RSS, and what the loop kept while
//! it ran. The loop notes when each ~50 us chunk of work ends, so a pause shows as a gap
//! and a slowdown as fewer chunks per second than in the [`BASELINE`] just before.

use std::{
    fmt::{self, Write as _},
    fs,
    io::{BufRead as _, BufReader, Read as _},
    path::Path,
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};

use super::{format::mib, plan::Paths, render::Results, stats::Summary, targets::Target};

/// Idle threads of the dumped process (plus its main thread and the loop).
pub(super) const DUMP_THREADS: usize = 1000;
/// Runs of each dumper.
const DUMP_RUNS: usize = 5;
/// The loop's rate is measured over this long before each dump.
const BASELINE: Duration = Duration::from_millis(700);
/// Between two dumps: the baseline of the next one, and then some.
const BETWEEN: Duration = Duration::from_secs(1);
/// A dumper still running after this is killed (gdb reads 1,000 threads slowly).
const DUMP_TIMEOUT: Duration = Duration::from_secs(120);
/// Targets from the issue.
const PROBE_WALL_GOAL_SECS: f64 = 0.5;
const LOOP_KEPT_GOAL: f64 = 0.99;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Dumper {
    Probe,
    PySpy,
    PySpyNonblocking,
    Gdb,
}

const DUMPERS: [Dumper; 4] = [
    Dumper::Probe,
    Dumper::PySpy,
    Dumper::PySpyNonblocking,
    Dumper::Gdb,
];

impl Dumper {
    fn name(self) -> &'static str {
        match self {
            Dumper::Probe => "probe dump",
            Dumper::PySpy => "py-spy dump",
            Dumper::PySpyNonblocking => "py-spy dump --nonblocking",
            Dumper::Gdb => "gdb thread apply all bt",
        }
    }

    fn command(self, paths: &Paths, pid: u32) -> Command {
        let pid = pid.to_string();
        let mut command = match self {
            Dumper::Probe => {
                let mut c = Command::new(paths.root.join("target/release/probe"));
                c.args(["dump", "-p", &pid]);
                c
            }
            Dumper::PySpy | Dumper::PySpyNonblocking => {
                let mut c = Command::new(paths.py_spy());
                c.args(["dump", "--pid", &pid]);
                if self == Dumper::PySpyNonblocking {
                    c.arg("--nonblocking");
                }
                c
            }
            Dumper::Gdb => {
                let mut c = Command::new("gdb");
                c.args(["-batch", "-nx", "-p", &pid, "-ex", "thread apply all bt"]);
                c
            }
        };
        command.current_dir(&paths.root);
        command
    }
}

/// One dump.
#[derive(Clone, Debug)]
pub(super) struct DumpRun {
    pub(super) dumper: Dumper,
    pub(super) wall: Duration,
    pub(super) cpu: Duration,
    pub(super) peak_rss_kib: u64,
    /// The loop's chunks per second during the dump over those just before it.
    pub(super) kept: f64,
    /// The longest the loop went without finishing a chunk during the dump.
    pub(super) longest_gap: Duration,
    /// Its exit status said it worked (else it is shown, not judged).
    pub(super) succeeded: bool,
}

pub(super) struct DumpChecks {
    pub(super) runs: Vec<DumpRun>,
}

/// Times of one dump on CLOCK_MONOTONIC, to match the loop's stamps.
struct Window {
    dumper: Dumper,
    start_ns: u64,
    end_ns: u64,
    cpu: Duration,
    peak_rss_kib: u64,
    succeeded: bool,
}

pub(super) fn measure(paths: &Paths, python: &Path) -> Result<DumpChecks> {
    let mut target = Command::new(python)
        .arg(paths.root.join("bench/dump_target.py"))
        .arg(DUMP_THREADS.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("failed to start bench/dump_target.py")?;
    let pid = target.id();
    let mut stdout = BufReader::new(target.stdout.take().context("no stdout")?);
    let mut ready = String::new();
    stdout.read_line(&mut ready)?;
    if ready.trim() != "ready" {
        let _ = target.kill();
        let _ = target.wait();
        bail!("bench/dump_target.py did not start: {ready:?}");
    }
    thread::sleep(BETWEEN);
    let mut windows = Vec::new();
    for run in 0..DUMP_RUNS {
        for at in 0..DUMPERS.len() {
            let dumper = DUMPERS[(at + run) % DUMPERS.len()];
            let window = dump_once(paths, dumper, pid);
            match window {
                Ok(window) => windows.push(window),
                Err(err) => {
                    let _ = target.kill();
                    let _ = target.wait();
                    return Err(err);
                }
            }
            thread::sleep(BETWEEN);
        }
    }
    drop(target.stdin.take());
    let mut text = String::new();
    stdout.read_to_string(&mut text)?;
    target.wait()?;
    let stamps: Vec<u64> = text.lines().filter_map(|l| l.parse().ok()).collect();
    let runs = windows.iter().map(|w| judge(w, &stamps)).collect();
    Ok(DumpChecks { runs })
}

fn dump_once(paths: &Paths, dumper: Dumper, pid: u32) -> Result<Window> {
    let out_path = paths.out.join(format!(
        "dump-{}.out",
        dumper.name().replace([' ', '-'], "_")
    ));
    let out = fs::File::create(&out_path)
        .with_context(|| format!("failed to create {}", out_path.display()))?;
    let errors = out.try_clone()?;
    let start_ns = monotonic_ns();
    let child = dumper
        .command(paths, pid)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(errors)
        .spawn()
        .with_context(|| format!("failed to start {}", dumper.name()))?;
    let child_pid = libc::pid_t::try_from(child.id()).context("child PID out of range")?;
    let deadline = Instant::now() + DUMP_TIMEOUT;
    loop {
        let mut status = 0;
        // SAFETY: rusage is plain integers, for which all-zero bytes are a valid value.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: the PID is our unreaped child; both pointers are to live locals.
        let reaped = unsafe { libc::wait4(child_pid, &mut status, libc::WNOHANG, &mut usage) };
        if reaped == child_pid {
            let end_ns = monotonic_ns();
            let time = |t: libc::timeval| {
                Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
            };
            return Ok(Window {
                dumper,
                start_ns,
                end_ns,
                cpu: time(usage.ru_utime) + time(usage.ru_stime),
                peak_rss_kib: u64::try_from(usage.ru_maxrss).unwrap_or(0),
                succeeded: libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            });
        }
        if reaped == -1 {
            bail!("failed to wait for {}", dumper.name());
        }
        if Instant::now() > deadline {
            // SAFETY: our unreaped child.
            unsafe { libc::kill(child_pid, libc::SIGKILL) };
            let mut status = 0;
            // SAFETY: as above.
            unsafe { libc::waitpid(child_pid, &mut status, 0) };
            bail!(
                "{} did not finish within {} s; see {}",
                dumper.name(),
                DUMP_TIMEOUT.as_secs(),
                out_path.display()
            );
        }
        thread::sleep(Duration::from_millis(2));
    }
}

/// The loop's rate during `window` over its rate in the [`BASELINE`] before it, and its
/// longest gap then.
fn judge(window: &Window, stamps: &[u64]) -> DumpRun {
    let baseline_start = window.start_ns.saturating_sub(BASELINE.as_nanos() as u64);
    let count = |from: u64, to: u64| stamps.iter().filter(|&&t| t >= from && t < to).count();
    let before = count(baseline_start, window.start_ns) as f64 / BASELINE.as_secs_f64();
    let during_secs = (window.end_ns - window.start_ns) as f64 / 1e9;
    let during = count(window.start_ns, window.end_ns) as f64 / during_secs.max(1e-9);
    // Gaps between chunks that end during the dump, the first one counted from the last
    // chunk before it.
    let first = stamps.partition_point(|&t| t < window.start_ns);
    let last = stamps.partition_point(|&t| t <= window.end_ns);
    let longest_gap = stamps[first.saturating_sub(1)..last.min(stamps.len())]
        .windows(2)
        .map(|pair| pair[1] - pair[0])
        .max()
        .unwrap_or(window.end_ns - window.start_ns);
    DumpRun {
        dumper: window.dumper,
        wall: Duration::from_nanos(window.end_ns - window.start_ns),
        cpu: window.cpu,
        peak_rss_kib: window.peak_rss_kib,
        kept: if before > 0.0 { during / before } else { 0.0 },
        longest_gap: Duration::from_nanos(longest_gap),
        succeeded: window.succeeded,
    }
}

fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

impl Results<'_> {
    fn dump_runs(&self, dumper: Dumper) -> Vec<&DumpRun> {
        let runs = self.dump_checks.runs.iter();
        runs.filter(|run| run.dumper == dumper).collect()
    }

    pub(super) fn dump_targets(&self) -> Vec<Target> {
        let runs = self.dump_runs(Dumper::Probe);
        let all_succeeded = !runs.is_empty() && runs.iter().all(|r| r.succeeded);
        let wall = Summary::of(runs.iter().map(|r| r.wall.as_secs_f64()));
        let kept = Summary::of(runs.iter().map(|r| r.kept));
        vec![
            Target {
                what: "probe dump of a 1,000-thread Python process, wall time",
                goal: "≤ 0.5 s (every run)",
                measured: wall.map_or("no run".into(), |s| {
                    format!("slowest {:.2} s of {} runs", s.max, runs.len())
                }),
                met: all_succeeded && wall.is_some_and(|s| s.max <= PROBE_WALL_GOAL_SECS),
            },
            Target {
                what: "CPU loop in the dumped process during probe dump",
                goal: "≥ 0.99 of its throughput (median)",
                measured: kept.map_or("no run".into(), |s| {
                    format!("median {:.3}, worst {:.3}", s.median, s.min)
                }),
                met: kept.is_some_and(|s| s.median >= LOOP_KEPT_GOAL),
            },
        ]
    }

    pub(super) fn write_dump(&self, out: &mut String) -> fmt::Result {
        writeln!(out, "## probe dump against py-spy dump and gdb\n")?;
        writeln!(
            out,
            "One CPython process (the bench's interpreter) of {DUMP_THREADS} idle threads and \
             a thread running a pure-Python loop (`bench/dump_target.py`); each dumper \
             {DUMP_RUNS} times, in rotating order, a second apart. \"Loop kept\": the loop's \
             chunks per second while the dumper ran, over the {} ms before it; \"longest \
             pause\": the longest the loop went without finishing a ~50 µs chunk while it ran. \
             Median (worst) over the runs.\n",
            BASELINE.as_millis()
        )?;
        writeln!(
            out,
            "| dumper | wall | CPU | peak RSS | loop kept | longest pause | failed runs |\n\
             |---|---|---|---|---|---|---|"
        )?;
        for dumper in DUMPERS {
            let runs = self.dump_runs(dumper);
            let secs = |f: &dyn Fn(&DumpRun) -> f64| -> String {
                Summary::of(runs.iter().map(|r| f(r))).map_or("–".into(), |s| {
                    format!("{:.3} s ({:.3})", s.median, s.max)
                })
            };
            let kept = Summary::of(runs.iter().map(|r| r.kept))
                .map_or("–".into(), |s| format!("{:.3} ({:.3})", s.median, s.min));
            let rss = runs.iter().map(|r| r.peak_rss_kib).max().unwrap_or(0);
            let failed = runs.iter().filter(|r| !r.succeeded).count();
            writeln!(
                out,
                "| {} | {} | {} | {:.1} MiB | {kept} | {} | {failed} |",
                dumper.name(),
                secs(&|r| r.wall.as_secs_f64()),
                secs(&|r| r.cpu.as_secs_f64()),
                mib(rss),
                secs(&|r| r.longest_gap.as_secs_f64()),
            )?;
        }
        writeln!(out)
    }
}
