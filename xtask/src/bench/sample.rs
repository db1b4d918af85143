//! What one run yields: a workload's rate under an observer, and when that observer was probe,
//! what probe itself cost; when it was bpftrace, what its kernel programs cost.

use std::{fs, time::Duration};

use anyhow::{bail, Context as _, Result};

use super::{
    format::mib,
    observe::{Exit, Observing},
    parse::{
        parse_self_stats, parse_watch_stop, parse_window_secs, ProgramCost, Rate, SelfStats,
        UnwindStats,
    },
    plan::{Observer, Paths, Workload},
    MIN_ON_CPU,
};

/// One workload run under one observer.
pub(super) struct Sample {
    pub(super) round: usize,
    pub(super) workload: Workload,
    pub(super) observer: Observer,
    pub(super) rate: Rate,
    /// Set when the observer was probe (spin, record or watch).
    pub(super) probe: Option<ProbeRun>,
    /// What the observer's own process used; `None` alone, or when it hung and was killed.
    pub(super) own: Option<OwnCost>,
    /// Set when the observer writes a file (probe record, perf record, py-spy).
    pub(super) written: Option<Written>,
    /// Set when the observer was bpftrace: its kernel programs, or why they could not be read.
    pub(super) bpftrace: Option<Result<KernelPrograms, String>>,
    /// Other processes that held tracing BPF programs during the run (see `other_bpf_users`).
    pub(super) others: Vec<String>,
    /// Set when a peer did not exit after SIGINT and was killed: its figures are missing.
    pub(super) hung: Option<String>,
}

impl Sample {
    /// Why this run is left out of the figures, if it is.
    pub(super) fn disturbance(&self) -> Option<String> {
        if let Some(hung) = &self.hung {
            Some(hung.clone())
        } else if !self.others.is_empty() {
            Some(format!(
                "{} held tracing BPF programs",
                self.others.join(", ")
            ))
        } else if self.rate.on_cpu < MIN_ON_CPU && !self.observer.holds_the_workload_stopped() {
            Some(format!(
                "starved: on a CPU {:.0}% of the time",
                100.0 * self.rate.on_cpu
            ))
        } else {
            None
        }
    }
}

/// What happened during one observed run of something.
pub(super) struct Observation<T> {
    pub(super) value: T,
    pub(super) probe: Option<ProbeRun>,
    pub(super) own: Option<OwnCost>,
    pub(super) written: Option<Written>,
    pub(super) bpftrace: Option<Result<KernelPrograms, String>>,
    pub(super) others: Vec<String>,
    pub(super) hung: Option<String>,
}

/// What an observer's process used (any observer: probe, a peer), from its rusage at exit
/// and /proc while the workload ran. Kernel programs and ptrace stops run on the workload's
/// time, not here.
#[derive(Clone, Copy, Debug)]
pub(super) struct OwnCost {
    /// CPU while the workload ran, in % of one core.
    pub(super) observing_pct: f64,
    /// CPU from start to exit, in seconds.
    pub(super) lifetime_secs: f64,
    pub(super) peak_rss_kib: u64,
}

impl OwnCost {
    pub(super) fn new(exit: &Exit, observing: &Observing) -> Self {
        Self {
            observing_pct: observing.cpu_pct(),
            lifetime_secs: exit.cpu.as_secs_f64(),
            peak_rss_kib: exit.peak_rss_kib,
        }
    }
}

/// What one probe run cost: its process, and its kernel programs over its window.
pub(super) struct ProbeRun {
    pub(super) exit: Exit,
    pub(super) observing: Observing,
    /// From `--self-stats`; `None` for `probe watch`, which prints none.
    pub(super) attach_secs: Option<f64>,
    pub(super) kernel: KernelPrograms,
    /// What its `.eh_frame` tables cost, from `--self-stats`.
    pub(super) unwind: Option<UnwindStats>,
}

/// A file an observer wrote before it exited.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct Written {
    pub(super) bytes: u64,
    /// From the SIGINT that ended the observer to its exit, i.e. to the file being complete.
    pub(super) latency: Duration,
}

impl ProbeRun {
    /// `probe spin` (`observer`, either way of unwinding): reads the `--self-stats` line and
    /// the report's window from the files probe wrote.
    pub(super) fn read(
        observer: Observer,
        exit: Exit,
        observing: Observing,
        paths: &Paths,
    ) -> Result<Self> {
        let stats = read_self_stats(paths, observer)?;
        let report_path = paths.probe_report();
        let report = fs::read_to_string(&report_path)
            .with_context(|| format!("failed to read {}", report_path.display()))?;
        let window_secs = parse_window_secs(&report)
            .with_context(|| format!("no window.duration_secs in {}", report_path.display()))?;
        Ok(Self::new(exit, observing, stats, window_secs))
    }

    /// `probe record`: its `--self-stats` line carries the window.
    pub(super) fn read_record(exit: Exit, observing: Observing, paths: &Paths) -> Result<Self> {
        let stats = read_self_stats(paths, Observer::ProbeRecord)?;
        let window_secs = stats.window_secs.with_context(|| {
            format!(
                "no window_secs in probe record's --self-stats line in {}",
                paths.stderr(Observer::ProbeRecord).display()
            )
        })?;
        Ok(Self::new(exit, observing, stats, window_secs))
    }

    /// `probe watch`: its `watch_stop` event carries its uptime and, as the bench has the
    /// kernel count run time, its programs' totals since it loaded them.
    pub(super) fn read_watch(exit: Exit, observing: Observing, paths: &Paths) -> Result<Self> {
        let events_path = paths.watch_events();
        let events = fs::read_to_string(&events_path)
            .with_context(|| format!("failed to read {}", events_path.display()))?;
        let stop = parse_watch_stop(&events)
            .with_context(|| format!("no watch_stop event in {}", events_path.display()))?;
        let Some(programs) = stop.programs else {
            bail!(
                "probe watch's watch_stop event in {} has no kernel program totals: the kernel \
                 did not count run time",
                events_path.display()
            );
        };
        Ok(Self {
            exit,
            observing,
            attach_secs: None,
            kernel: KernelPrograms {
                window_secs: stop.uptime_secs,
                programs,
            },
            unwind: None,
        })
    }

    fn new(exit: Exit, observing: Observing, stats: SelfStats, window_secs: f64) -> Self {
        Self {
            exit,
            observing,
            attach_secs: Some(stats.attach_secs),
            kernel: KernelPrograms {
                window_secs,
                programs: stats.programs,
            },
            unwind: stats.unwind,
        }
    }

    /// probe's own CPU time as a share of one core over its lifetime, in percent.
    pub(super) fn cpu_pct(&self) -> f64 {
        100.0 * self.exit.cpu.as_secs_f64() / self.exit.wall.as_secs_f64()
    }

    pub(super) fn peak_rss_mib(&self) -> f64 {
        mib(self.exit.peak_rss_kib)
    }
}

/// The `--self-stats` line in the stderr of `observer` (probe spin or record).
pub(super) fn read_self_stats(paths: &Paths, observer: Observer) -> Result<SelfStats> {
    let stderr_path = paths.stderr(observer);
    let stderr = fs::read_to_string(&stderr_path)
        .with_context(|| format!("failed to read {}", stderr_path.display()))?;
    parse_self_stats(&stderr)
        .with_context(|| format!("no --self-stats line in {}", stderr_path.display()))
}

/// An observer's kernel programs over its window, from the kernel's BPF statistics.
pub(super) struct KernelPrograms {
    /// What the totals are over, in seconds.
    pub(super) window_secs: f64,
    pub(super) programs: Vec<ProgramCost>,
}

impl KernelPrograms {
    pub(super) fn program(&self, name: &str) -> Option<&ProgramCost> {
        self.programs.iter().find(|cost| cost.program == name)
    }

    pub(super) fn runs_per_sec(&self, name: &str) -> Option<f64> {
        Some(self.program(name)?.run_count as f64 / self.window_secs)
    }

    /// Share of one core spent in the named program's runs over the window, in percent; 0
    /// when there is no such program.
    pub(super) fn pct(&self, name: &str) -> f64 {
        self.kernel_pct(self.program(name))
    }

    /// The same for all the programs.
    pub(super) fn total_pct(&self) -> f64 {
        self.kernel_pct(&self.programs)
    }

    fn kernel_pct<'a>(&self, costs: impl IntoIterator<Item = &'a ProgramCost>) -> f64 {
        let ns: u64 = costs.into_iter().map(|cost| cost.run_time_ns).sum();
        100.0 * ns as f64 / (self.window_secs * 1e9)
    }
}
