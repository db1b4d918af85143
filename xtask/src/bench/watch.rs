//! `probe watch`'s checks beyond the rounds: how soon an episode's event comes after a thread
//! starts spinning, and whether watch's memory and kernel map end where they started after a
//! churn of short-lived threads. Its cost while watching is in the rounds (the
//! `probe watch` columns).

use std::{
    fmt::{self, Write as _},
    fs,
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};

use super::{
    format::mib,
    observe::Observed,
    parse::parse_vm_hwm_kib,
    plan::{Observer, Paths, Workload, WATCH_PROFILE_HZ, WORKLOADS},
    render::Results,
    sample::KernelPrograms,
    stats::{median_of, worst, Summary},
    tables::{write_program_header, write_program_rows},
    targets::Target,
};

/// The episode runs' `--for` and `--sample`: short, so that the bench stays short; the
/// target is relative to them.
pub(super) const EPISODE_FOR_SECS: f64 = 3.0;
pub(super) const EPISODE_SAMPLE_SECS: f64 = 2.0;
/// How many times an episode's latency is measured.
const EPISODE_RUNS: usize = 3;
/// Threads the churn creates and joins, one after another.
pub(super) const CHURN_THREADS: u64 = 100_000;
/// Entries of threads that came and went elsewhere on the machine meanwhile.
pub(super) const CHURN_ENTRY_MARGIN: f64 = 64.0;
/// How long after the churn the map may take to be cleaned (a tick after each exit is seen,
/// and a sweep of the rest every minute).
const CHURN_SETTLE: Duration = Duration::from_secs(30);
/// How long watch may take to write its first event.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// What the checks measured.
pub(super) struct WatchChecks {
    /// From the spinner's start to its `spin` event being in the file, per run.
    pub(super) episode_latencies: Vec<Duration>,
    pub(super) churn: Churn,
}

/// watch's state from its heartbeats before and after the churn.
pub(super) struct Churn {
    pub(super) churn_secs: f64,
    pub(super) rss_before_kib: f64,
    pub(super) rss_after_kib: f64,
    /// VmHWM at the end: the most watch ever held, its start included.
    pub(super) peak_rss_kib: u64,
    pub(super) entries_before: f64,
    pub(super) entries_after: f64,
    pub(super) tracked_before: f64,
    pub(super) tracked_after: f64,
    /// From the churn's end to the heartbeat that showed its entries gone; `None` if none
    /// did within [`CHURN_SETTLE`].
    pub(super) settled_after: Option<Duration>,
}

impl Churn {
    pub(super) fn rss_growth_mib(&self) -> f64 {
        (self.rss_after_kib - self.rss_before_kib) / 1024.0
    }

    pub(super) fn peak_rss_mib(&self) -> f64 {
        mib(self.peak_rss_kib)
    }
}

/// Runs both checks with the release probe and the bench's workloads.
pub(super) fn measure_checks(paths: &Paths) -> Result<WatchChecks> {
    let mut episode_latencies = Vec::new();
    for run in 0..EPISODE_RUNS {
        let latency = episode_latency(paths)?;
        eprintln!(
            "xtask: bench watch episode {}/{EPISODE_RUNS}: its spin event {:.2} s after the \
             spinner started",
            run + 1,
            latency.as_secs_f64()
        );
        episode_latencies.push(latency);
    }
    let churn = churn(paths)?;
    eprintln!(
        "xtask: bench watch churn: {CHURN_THREADS} threads in {:.1} s; RSS {:.1} -> {:.1} MiB \
         (peak {:.1}), thread map {} -> {} entries",
        churn.churn_secs,
        churn.rss_before_kib / 1024.0,
        churn.rss_after_kib / 1024.0,
        churn.peak_rss_mib(),
        churn.entries_before,
        churn.entries_after
    );
    Ok(WatchChecks {
        episode_latencies,
        churn,
    })
}

/// `probe watch` writing its events into `file`, with `extra` options.
fn start_watch(paths: &Paths, file: &std::path::Path, extra: &[&str]) -> Result<Observed> {
    match fs::remove_file(file) {
        Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
            return Err(err).with_context(|| format!("failed to remove {}", file.display()));
        }
        _ => {}
    }
    let mut argv: Vec<String> = ["target/release/probe", "watch", "-o"]
        .map(str::to_owned)
        .to_vec();
    argv.push(file.to_string_lossy().into_owned());
    argv.extend(extra.iter().map(|arg| (*arg).to_owned()));
    let mut watch = Observed::spawn(Observer::ProbeWatch, &argv, paths)?;
    wait_for_event(&mut watch, file, START_TIMEOUT, "watch_start", |e| {
        e["event"] == "watch_start"
    })?;
    Ok(watch)
}

/// The events in `file` so far (a line being written is skipped).
fn events(file: &std::path::Path) -> Vec<serde_json::Value> {
    fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

/// Polls `file` for an event that `matches`; fails if watch exits or `timeout` passes.
fn wait_for_event(
    watch: &mut Observed,
    file: &std::path::Path,
    timeout: Duration,
    what: &str,
    matches: impl Fn(&serde_json::Value) -> bool,
) -> Result<serde_json::Value> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(event) = events(file).into_iter().find(&matches) {
            return Ok(event);
        }
        watch.ensure_running()?;
        if Instant::now() >= deadline {
            bail!(
                "probe watch wrote no {what} event in {timeout:?}; see {}",
                file.display()
            );
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// A child that is killed and reaped when dropped (by its PID: it is ours).
struct Spinner(Child);

impl Drop for Spinner {
    fn drop(&mut self) {
        // Both act on our own child only; a failure leaves nothing to clean up.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the C loop under a watch with short `--for` / `--sample` and times its event.
fn episode_latency(paths: &Paths) -> Result<Duration> {
    let file = paths.out.join("watch-episode.jsonl");
    let (hold, sample) = (
        EPISODE_FOR_SECS.to_string(),
        EPISODE_SAMPLE_SECS.to_string(),
    );
    let mut watch = start_watch(paths, &file, &["--for", &hold, "--sample", &sample])?;
    let runs_for = EPISODE_FOR_SECS + EPISODE_SAMPLE_SECS + 10.0;
    let started = Instant::now();
    let spinner = Spinner(
        Command::new(paths.workload(Workload::CpuLoop))
            .arg(runs_for.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .context("failed to start the C loop")?,
    );
    let pid = spinner.0.id();
    wait_for_event(
        &mut watch,
        &file,
        Duration::from_secs_f64(runs_for),
        "spin event for the C loop",
        |e| e["event"] == "spin" && e["episode"]["pid"] == pid,
    )?;
    let latency = started.elapsed();
    drop(spinner);
    if watch.stop()?.is_none() {
        bail!("probe watch did not exit after SIGINT and was killed");
    }
    Ok(latency)
}

/// The last heartbeat in `file`.
fn latest_heartbeat(file: &std::path::Path) -> Option<serde_json::Value> {
    events(file)
        .into_iter()
        .rev()
        .find(|e| e["event"] == "heartbeat")
}

fn number(event: &serde_json::Value, key: &str) -> Result<f64> {
    event[key]
        .as_f64()
        .with_context(|| format!("no number {key} in the heartbeat {event}"))
}

/// Creates and joins [`CHURN_THREADS`] threads under watch (heartbeat every second) and
/// compares its heartbeats before and after.
fn churn(paths: &Paths) -> Result<Churn> {
    let file = paths.out.join("watch-churn.jsonl");
    let mut watch = start_watch(paths, &file, &["--heartbeat", "1"])?;
    wait_for_event(&mut watch, &file, START_TIMEOUT, "heartbeat", |e| {
        e["event"] == "heartbeat"
    })?;
    // A few ticks in: what the machine's own threads take.
    thread::sleep(Duration::from_secs(2));
    let before = latest_heartbeat(&file).context("no heartbeat")?;
    let output = Command::new(paths.out.join("thread_churn"))
        .arg(CHURN_THREADS.to_string())
        .stdin(Stdio::null())
        .output()
        .context("failed to run the thread churn")?;
    if !output.status.success() {
        bail!(
            "the thread churn failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let churned = Instant::now();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let churn_secs = stdout
        .split_whitespace()
        .find_map(|field| field.strip_prefix("secs="))
        .and_then(|secs| secs.parse().ok())
        .with_context(|| format!("unexpected output from the thread churn: {stdout:?}"))?;
    let entries = |beat: &serde_json::Value| number(beat, "thread_map_entries");
    let tracked = |beat: &serde_json::Value| number(beat, "threads_tracked");
    let (entries_before, tracked_before) = (entries(&before)?, tracked(&before)?);
    let settled = |beat: &serde_json::Value| -> Result<bool> {
        Ok(entries(beat)? <= entries_before + CHURN_ENTRY_MARGIN
            && tracked(beat)? <= tracked_before + CHURN_ENTRY_MARGIN)
    };
    let (after, settled_after) = loop {
        // A heartbeat written after the churn ended.
        thread::sleep(Duration::from_millis(1100));
        let beat = latest_heartbeat(&file).context("no heartbeat")?;
        if settled(&beat)? {
            break (beat, Some(churned.elapsed()));
        }
        if churned.elapsed() >= CHURN_SETTLE {
            break (beat, None);
        }
        watch.ensure_running()?;
    };
    let status = fs::read_to_string(format!("/proc/{}/status", watch.pid))
        .context("failed to read probe watch's status")?;
    let peak_rss_kib = parse_vm_hwm_kib(&status).context("no VmHWM in probe watch's status")?;
    if watch.stop()?.is_none() {
        bail!("probe watch did not exit after SIGINT and was killed");
    }
    Ok(Churn {
        churn_secs,
        rss_before_kib: number(&before, "rss_kib")?,
        rss_after_kib: number(&after, "rss_kib")?,
        peak_rss_kib,
        entries_before,
        entries_after: entries(&after)?,
        tracked_before,
        tracked_after: tracked(&after)?,
        settled_after,
    })
}

/// The workloads `probe watch` watched in the rounds.
fn watched() -> impl Iterator<Item = Workload> {
    WORKLOADS
        .into_iter()
        .filter(|w| w.observers().contains(&Observer::ProbeWatch))
}

/// watch's slowdown target, both with and without its profile: at most 0.5%.
const WATCH_MIN_RATIO: f64 = 0.995;
/// watch's own CPU between episodes, in % of one core.
const WATCH_MAX_CPU_PCT: f64 = 0.1;
/// watch's RSS over the churn: at most this, and growing by at most the margin.
const WATCH_MAX_RSS_MIB: f64 = 64.0;
const WATCH_RSS_GROWTH_MIB: f64 = 8.0;

impl Results<'_> {
    /// The median ratio of each watched workload under `observer`, and the worst of them.
    fn watch_ratios(&self, observer: Observer) -> (String, Option<f64>) {
        let medians: Vec<(&str, Option<f64>)> = watched()
            .map(|w| {
                let ratio = Summary::of(self.ratios(w, observer, |r| r.wall));
                (w.name(), ratio.map(|s| s.median))
            })
            .collect();
        let text = medians
            .iter()
            .map(|(name, median)| {
                format!(
                    "{name} {}",
                    median.map_or("n/a".into(), |m| format!("{m:.3}"))
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        let worst = medians
            .iter()
            .map(|(_, median)| *median)
            .collect::<Option<Vec<f64>>>()
            .and_then(|medians| medians.into_iter().min_by(f64::total_cmp));
        (text, worst)
    }

    /// The worst median share of one core `observer`'s kernel programs took, systemwide.
    fn watch_kernel_pct(&self, observer: Observer) -> Option<(&'static str, f64)> {
        worst(watched().map(|w| {
            let runs = self.observer_runs(w, observer);
            let kernels: Vec<&KernelPrograms> = runs.iter().map(|run| &run.kernel).collect();
            (w.name(), median_of(&kernels, |k| Some(k.total_pct())))
        }))
    }

    pub(super) fn watch_targets(&self) -> Vec<Target> {
        let mut targets = Vec::new();
        for (observer, what) in [
            (
                Observer::ProbeWatch,
                "throughput under probe watch between episodes (ratio to alone, median; worst workload)",
            ),
            (
                Observer::ProbeWatchProfile,
                "throughput under probe watch with its 19 Hz profile (ratio to alone, median; worst workload)",
            ),
        ] {
            let (ratios, worst_ratio) = self.watch_ratios(observer);
            let kernel = self
                .watch_kernel_pct(observer)
                .map_or("n/a".into(), |(name, pct)| format!("{pct:.3}% ({name})"));
            targets.push(Target {
                what,
                goal: "≥ 0.995 (≤ 0.5% slower) on every workload",
                measured: format!(
                    "{ratios}; its kernel programs, systemwide, at most {kernel} of one core"
                ),
                met: worst_ratio.is_some_and(|r| r >= WATCH_MIN_RATIO),
            });
        }
        let cpu = worst(watched().map(|w| {
            let runs = self.runs_of(w, Observer::ProbeWatch);
            (
                w.name(),
                median_of(&runs, |s| Some(s.own.as_ref()?.observing_pct)),
            )
        }));
        targets.push(Target {
            what: "probe watch's own CPU between episodes (median; worst workload)",
            goal: "≤ 0.1% of one core",
            measured: cpu.map_or("n/a".into(), |(name, pct)| format!("{pct:.3}% ({name})")),
            met: cpu.is_some_and(|(_, pct)| pct <= WATCH_MAX_CPU_PCT),
        });
        let churn = &self.watch_checks.churn;
        targets.push(Target {
            what: "probe watch's RSS over a churn of 100,000 threads",
            goal: "≤ 64 MiB, flat (ends within 8 MiB of where it started)",
            measured: format!(
                "{:.1} → {:.1} MiB ({:+.1}); peak {:.1} MiB",
                churn.rss_before_kib / 1024.0,
                churn.rss_after_kib / 1024.0,
                churn.rss_growth_mib(),
                churn.peak_rss_mib()
            ),
            met: churn.peak_rss_mib() <= WATCH_MAX_RSS_MIB
                && churn.rss_growth_mib() <= WATCH_RSS_GROWTH_MIB,
        });
        let latest = self.watch_checks.episode_latencies.iter().max();
        let bound = EPISODE_FOR_SECS + EPISODE_SAMPLE_SECS + 1.0;
        targets.push(Target {
            what: "an episode's spin event after its thread started spinning (max)",
            goal: "≤ --for + --sample + 1 s",
            measured: latest.map_or("n/a".into(), |latency| {
                format!(
                    "{:.2} s with --for {EPISODE_FOR_SECS} --sample {EPISODE_SAMPLE_SECS} \
                     (bound {bound} s)",
                    latency.as_secs_f64()
                )
            }),
            met: latest.is_some_and(|latency| latency.as_secs_f64() <= bound),
        });
        targets
    }

    pub(super) fn write_watch(&self, out: &mut String) -> fmt::Result {
        writeln!(out, "## probe watch\n")?;
        writeln!(
            out,
            "In the rounds watch is between episodes (its `--for` outlasts every run): only its \
             sched_switch accounting runs, plus, with `--profile-hz {WATCH_PROFILE_HZ}`, the \
             stack sampler at that rate. Its kernel programs' figures come from its \
             `watch_stop` event: the kernel's BPF statistics since it loaded them, over its \
             uptime, systemwide; median over the runs. A program that never ran (not attached \
             between episodes) shows no cost per run.\n"
        )?;
        write_program_header(out)?;
        for workload in watched() {
            for observer in [Observer::ProbeWatch, Observer::ProbeWatchProfile] {
                let runs = self.observer_runs(workload, observer);
                let kernels: Vec<&KernelPrograms> = runs.iter().map(|run| &run.kernel).collect();
                let name = format!("{} under {}", workload.name(), observer.name());
                write_program_rows(out, &name, &kernels)?;
            }
        }
        writeln!(out)?;
        let latencies = self
            .watch_checks
            .episode_latencies
            .iter()
            .map(|latency| format!("{:.2} s", latency.as_secs_f64()))
            .collect::<Vec<_>>()
            .join(", ");
        writeln!(
            out,
            "Episodes: `probe watch --for {EPISODE_FOR_SECS} --sample {EPISODE_SAMPLE_SECS}`, \
             then the C loop started; from its start to its `spin` event in the file: \
             {latencies}.\n"
        )?;
        let churn = &self.watch_checks.churn;
        let settled = churn.settled_after.map_or(
            format!("**not within {} s**", CHURN_SETTLE.as_secs()),
            |after| format!("{:.1} s after it ended", after.as_secs_f64()),
        );
        writeln!(
            out,
            "Churn: `probe watch --heartbeat 1` while `target/bench/thread_churn \
             {CHURN_THREADS}` created and joined {CHURN_THREADS} threads one after another \
             ({:.1} s). From the heartbeats before and after: RSS {:.1} → {:.1} MiB (VmHWM at \
             the end {:.1} MiB); the kernel's thread map {} → {} entries, threads tracked {} → \
             {}; back within {CHURN_ENTRY_MARGIN} entries {settled}.\n",
            churn.churn_secs,
            churn.rss_before_kib / 1024.0,
            churn.rss_after_kib / 1024.0,
            churn.peak_rss_mib(),
            churn.entries_before,
            churn.entries_after,
            churn.tracked_before,
            churn.tracked_after
        )
    }
}
