//! `cargo xtask bench`: what probe costs the machine, next to its peers, measured in one run.
//!
//! Four workloads (`bench/*.c`, and a pure-Python loop, `bench/py_loop.py`) run alone and
//! under each of their observers (the CPU loop and the getppid storm under probe watch, with
//! and without its 19 Hz profile, probe spin, probe record, perf, bpftrace and strace; the
//! deep C loop under probe spin's two ways of unwinding; the Python one under probe watch,
//! probe spin, probe record, strace and py-spy) in interleaved rounds whose order rotates
//! every round: these shared VMs drift by up to ±30% over an hour, so only a ratio to
//! "alone" from the same round means anything (see ../shared/benchmarking.md).
//! Ratios cannot resolve effects under ~10%, so the cost of probe's kernel programs is also
//! read directly from the kernel's BPF statistics, next to bpftrace's from the same rounds,
//! and every observer's own CPU time and peak RSS from its rusage and /proc. probe watch's
//! episode latency and its memory over a thread churn are measured after the rounds
//! (`watch`), and `probe dump` next to py-spy dump and gdb on a 1,000-thread Python
//! process (`dump`). The result is a markdown table on stdout and in `target/bench/results.md`.
//! `--record-soak` (`soak`) is a separate, long run of probe record alone.

mod dump;
mod format;
mod machine;
mod observe;
mod parse;
mod peers;
mod plan;
mod python;

pub use python::PY_SPY_VERSION;
mod record;
mod render;
mod rounds;
mod sample;
mod soak;
mod stats;
mod tables;
mod targets;
mod unwinding;
mod watch;
mod workload;

use std::{
    fs,
    path::PathBuf,
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};

use self::{
    machine::{loadavg, probe_build, BpfStats, Machine, Tracefs},
    plan::{Paths, Workload, WORKLOADS},
    render::Results,
    rounds::Bench,
};
use crate::{run as run_command, run_to_stderr};

/// What `cargo xtask bench` was asked for.
pub struct Options {
    /// Interleaved rounds; each gives one ratio per workload and observer.
    pub rounds: usize,
    /// Wall time of each workload run, in seconds.
    pub secs: f64,
}

/// Time every observer gets to attach before the workload starts; the same for all of them
/// (this is a bench, not a test). probe attaches in < 0.1 s, bpftrace and perf in ~0.15 s here.
const SETTLE: Duration = Duration::from_millis(1500);
/// The workloads' compiler flags, also quoted in the results.
const CFLAGS: [&str; 3] = ["-O2", "-Wall", "-Wextra"];
/// A workload on a CPU for less than this share of its run was starved by other load on the
/// machine (alone it gets 94–99% here): that run, and the ratios that need it, are left out.
const MIN_ON_CPU: f64 = 0.75;

/// Sets up, measures every workload under every observer, and prints the results.
pub fn run(options: &Options) -> Result<()> {
    check_preconditions(options)?;
    let started = Instant::now();
    let load_before = loadavg();
    let paths = Paths::new();
    let python = prepare(&paths)?;
    let table_builds = unwinding::measure_table_builds(&python)?;
    let build = probe_build();
    // Both guards restore the machine on every exit path, errors included.
    let _tracefs = Tracefs::ensure()?;
    let _stats = BpfStats::enable()?;
    let bench = Bench {
        options,
        paths,
        python,
    };
    let samples = bench.rounds()?;
    let (idle, idle_others) = bench.idle()?;
    let watch_checks = watch::measure_checks(&bench.paths)?;
    let dump_checks = dump::measure(&bench.paths, &bench.python)?;
    let results = Results {
        machine: Machine::read(),
        load_before,
        build,
        bench: &bench,
        samples,
        idle,
        idle_others,
        table_builds,
        watch_checks,
        dump_checks,
        elapsed: started.elapsed(),
    };
    let mut text = String::new();
    results
        .write(&mut text)
        .context("failed to format the results")?;
    let out = bench.paths.out.join("results.md");
    fs::write(&out, &text).with_context(|| format!("failed to write {}", out.display()))?;
    print!("{text}");
    eprintln!(
        "xtask: bench done in {:.1} min; results in {}",
        started.elapsed().as_secs_f64() / 60.0,
        out.display()
    );
    Ok(())
}

pub use soak::run as record_soak;

fn check_preconditions(options: &Options) -> Result<()> {
    if !(options.secs.is_finite() && options.secs > 0.0) {
        bail!(
            "--secs must be a positive number of seconds, not {}",
            options.secs
        );
    }
    check_root()
}

fn check_root() -> Result<()> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        bail!(
            "the bench loads eBPF programs and runs perf and bpftrace systemwide: \
             run it as root (`sudo cargo xtask bench`)"
        );
    }
    Ok(())
}

/// Builds probe (release) and the C workloads, and installs the peers when they are missing;
/// returns the CPython that runs the Python workload.
fn prepare(paths: &Paths) -> Result<PathBuf> {
    // First: without the interpreter there is no point in building anything.
    let python = python::find_python()?;
    crate::build_release_probe()?;
    ensure_peers()?;
    fs::create_dir_all(&paths.out)
        .with_context(|| format!("failed to create {}", paths.out.display()))?;
    python::ensure_py_spy(&python, paths)?;
    for workload in WORKLOADS.into_iter().filter(|w| !w.is_python()) {
        compile(paths, workload)?;
    }
    // watch's churn check (see `watch`).
    run_command(
        Command::new("cc")
            .args(CFLAGS)
            .arg("-pthread")
            .arg("-o")
            .arg(paths.out.join("thread_churn"))
            .arg("bench/thread_churn.c"),
    )?;
    Ok(python)
}

/// Compiles a C workload into `target/bench`.
fn compile(paths: &Paths, workload: Workload) -> Result<()> {
    fs::create_dir_all(&paths.out)
        .with_context(|| format!("failed to create {}", paths.out.display()))?;
    run_command(
        Command::new("cc")
            .args(CFLAGS)
            .args(workload.extra_cflags())
            .arg("-o")
            .arg(paths.workload(workload))
            .arg(workload.source()),
    )
}

fn ensure_peers() -> Result<()> {
    if on_path("bpftrace") && on_path("perf") && on_path("strace") {
        return Ok(());
    }
    eprintln!("xtask: installing the peers to compare against: bpftrace linux-perf strace");
    // On stderr: the table on stdout must hold only itself.
    run_to_stderr(Command::new("apt-get").args(["update", "-q"]))?;
    run_to_stderr(Command::new("apt-get").args([
        "install",
        "-y",
        "-q",
        "bpftrace",
        "linux-perf",
        "strace",
    ]))
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}
