//! `cargo xtask bench --record-soak MINUTES`: one long `probe record -a -F 99` with both
//! CPUs busy (two CPU loops), probe's resident set sampled every few seconds, to show its
//! peak and whether it grows with the recording's length; then how long the file took after
//! SIGINT, its size, and probe's CPU. Not part of the normal bench: it takes MINUTES.

use std::{
    fmt::{self, Write as _},
    fs,
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};

use super::{
    format::{fmt_bytes, fmt_pct, mib, si},
    machine::{loadavg, probe_build, BpfStats, Machine},
    observe::{Observed, Observing, STOP_TIMEOUT},
    parse::{parse_record_summary, parse_vm_rss_kib},
    plan::{probe_record_argv, Observer, Paths, Workload},
    record::{COMPLETE_MAX_SECS, RSS_MAX_MIB},
    sample::ProbeRun,
    stats::Summary,
    SETTLE,
};

/// Where the soak's recording goes, relative to the workspace root.
const SOAK_OUTPUT: &str = "target/bench/probe-record-soak.svg";
/// How often probe's resident set is read.
const RSS_EVERY: Duration = Duration::from_secs(5);
/// The length the RSS target is stated for.
const TARGET_MINUTES: f64 = 10.0;
/// A last minute's median RSS at most this far above the first minute's counts as flat:
/// allocator noise, not growth.
const FLAT_MIB: f64 = 1.0;

/// Runs the soak for `minutes` and prints its table (also `target/bench/record-soak.md`).
pub fn run(minutes: f64) -> Result<()> {
    if !(minutes.is_finite() && minutes > 0.0) {
        bail!("--record-soak takes a positive number of minutes, not {minutes}");
    }
    super::check_root()?;
    let started = Instant::now();
    let load_before = loadavg();
    let paths = Paths::new();
    crate::build_release_probe()?;
    super::compile(&paths, Workload::CpuLoop)?;
    let build = probe_build();
    let _stats = BpfStats::enable()?;
    let length = Duration::from_secs_f64(minutes * 60.0);
    // The loops outlast the recording; they are stopped (by PID) when it is written.
    let _loops = Loops::start(&paths, length + SETTLE + Duration::from_secs(60))?;
    let soak = record(&paths, length)?;
    let mut text = String::new();
    soak.write(&mut text, minutes, &Machine::read(), &load_before, &build)
        .context("failed to format the soak's results")?;
    let out = paths.out.join("record-soak.md");
    fs::write(&out, &text).with_context(|| format!("failed to write {}", out.display()))?;
    print!("{text}");
    eprintln!(
        "xtask: soak done in {:.1} min; results in {}",
        started.elapsed().as_secs_f64() / 60.0,
        out.display()
    );
    Ok(())
}

/// Two CPU loops, one per CPU of these machines; killed by PID when dropped.
struct Loops(Vec<Child>);

impl Loops {
    fn start(paths: &Paths, length: Duration) -> Result<Self> {
        let mut loops = Self(Vec::new());
        for _ in 0..2 {
            let child = Command::new(paths.workload(Workload::CpuLoop))
                .arg(length.as_secs_f64().to_string())
                .current_dir(&paths.root)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .spawn()
                .context("failed to start a CPU loop for the soak")?;
            loops.0.push(child);
        }
        Ok(loops)
    }
}

impl Drop for Loops {
    fn drop(&mut self) {
        for child in &mut self.0 {
            // Our own children, by PID; one that already exited leaves nothing to do.
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// What the soak measured.
struct Soak {
    run: ProbeRun,
    /// (seconds since probe started, RSS in MiB), every [`RSS_EVERY`] while it recorded.
    rss: Vec<(f64, f64)>,
    bytes: u64,
    /// Samples in the file and samples lost, from probe's last line.
    samples: Option<(u64, u64)>,
}

/// probe record for `length`, its RSS read every [`RSS_EVERY`], stopped with SIGINT.
fn record(paths: &Paths, length: Duration) -> Result<Soak> {
    let output = paths.root.join(SOAK_OUTPUT);
    if output.exists() {
        fs::remove_file(&output)
            .with_context(|| format!("failed to remove the last soak's {}", output.display()))?;
    }
    let argv = probe_record_argv(SOAK_OUTPUT);
    let mut observed = Observed::spawn(Observer::ProbeRecord, &argv, paths)?;
    thread::sleep(SETTLE);
    observed.ensure_running()?;
    let before = observed.snapshot()?;
    let mut rss = Vec::new();
    let recording = Instant::now();
    let mut minute = 0;
    while recording.elapsed() < length {
        thread::sleep(RSS_EVERY.min(length.saturating_sub(recording.elapsed())));
        observed.ensure_running()?;
        let status = fs::read_to_string(format!("/proc/{}/status", observed.pid))
            .context("failed to read probe record's /proc status")?;
        let kib = parse_vm_rss_kib(&status).context("no VmRSS in probe record's status")?;
        rss.push((observed.running_for().as_secs_f64(), mib(kib)));
        if recording.elapsed().as_secs() / 60 > minute {
            minute = recording.elapsed().as_secs() / 60;
            eprintln!(
                "xtask: soak: {minute} min recorded; probe's RSS {:.1} MiB",
                mib(kib)
            );
        }
    }
    let observing = Observing::between(&before, &observed.snapshot()?);
    let exit = observed.stop()?.with_context(|| {
        format!("probe record did not exit within {STOP_TIMEOUT:?} of SIGINT and was killed")
    })?;
    let bytes = fs::metadata(&output)
        .with_context(|| format!("probe record wrote no {}", output.display()))?
        .len();
    if bytes == 0 {
        bail!("probe record left {} empty", output.display());
    }
    let stderr_path = paths.stderr(Observer::ProbeRecord);
    let stderr = fs::read_to_string(&stderr_path)
        .with_context(|| format!("failed to read {}", stderr_path.display()))?;
    Ok(Soak {
        run: ProbeRun::read_record(exit, observing, paths)?,
        rss,
        bytes,
        samples: parse_record_summary(&stderr),
    })
}

/// How the resident set moved over the recording.
#[derive(Debug, PartialEq)]
struct Trend {
    /// Median over the first and over the last minute (halves of a run under 2 minutes).
    first_mib: f64,
    last_mib: f64,
    /// Least-squares slope over the whole recording.
    mib_per_min: f64,
}

impl Trend {
    fn of(rss: &[(f64, f64)]) -> Option<Self> {
        let (start, end) = (rss.first()?.0, rss.last()?.0);
        let span = (end - start).min(120.0) / 2.0;
        let median = |keep: &dyn Fn(f64) -> bool| {
            Summary::of(rss.iter().filter(|(t, _)| keep(*t)).map(|&(_, m)| m)).map(|s| s.median)
        };
        Some(Self {
            first_mib: median(&|t| t <= start + span)?,
            last_mib: median(&|t| t >= end - span)?,
            mib_per_min: slope(rss)? * 60.0,
        })
    }

    fn grew(&self) -> bool {
        self.last_mib - self.first_mib > FLAT_MIB
    }
}

/// Least-squares slope of y over x; `None` with fewer than two distinct x.
fn slope(points: &[(f64, f64)]) -> Option<f64> {
    let n = points.len() as f64;
    let mean_x = points.iter().map(|p| p.0).sum::<f64>() / n;
    let mean_y = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mean_x).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mean_x) * (p.1 - mean_y)).sum();
    (sxx > 0.0).then(|| sxy / sxx)
}

/// yes / **no**, or why the row is not judged.
fn verdict(met: bool, judged: Option<&str>) -> String {
    match (judged, met) {
        (Some(why), _) => format!("not judged: {why}"),
        (None, true) => "yes".into(),
        (None, false) => "**no**".into(),
    }
}

impl Soak {
    fn write(
        &self,
        out: &mut String,
        minutes: f64,
        machine: &Machine,
        load_before: &str,
        build: &str,
    ) -> fmt::Result {
        let run = &self.run;
        writeln!(out, "# probe record soak\n")?;
        writeln!(
            out,
            "`cargo xtask bench --record-soak {minutes}` on {}: `{}` for {minutes} min while two \
             `target/bench/cpu_loop` kept both CPUs busy, stopped with SIGINT. Linux {}, {} \
             CPUs ({}); load average {load_before} at the start, {} at the end. probe built \
             from {build}. RSS (VmRSS) read every {} s from {:.1} s after start.\n",
            machine.date,
            probe_record_argv(SOAK_OUTPUT).join(" "),
            machine.kernel,
            machine.cpus,
            machine.model,
            machine.load,
            RSS_EVERY.as_secs(),
            SETTLE.as_secs_f64()
        )?;
        let trend = Trend::of(&self.rss);
        let short =
            (minutes < TARGET_MINUTES).then(|| format!("{minutes} min < {TARGET_MINUTES} min"));
        let peak = run.peak_rss_mib();
        let latency = run.exit.stop_latency.as_secs_f64();
        let cpu = run.observing.cpu_pct();
        writeln!(out, "| target | goal | measured | met |\n|---|---|---|---|")?;
        writeln!(
            out,
            "| probe record's peak RSS after a {TARGET_MINUTES}-minute recording of both CPUs | \
             ≤ {RSS_MAX_MIB} MiB | {peak:.1} MiB (rusage; {:.1} MiB before writing the file) | \
             {} |",
            mib(run.observing.peak_rss_kib),
            verdict(peak <= RSS_MAX_MIB, short.as_deref())
        )?;
        writeln!(
            out,
            "| file complete after the recording ends (SIGINT to exit) | ≤ {COMPLETE_MAX_SECS} s \
             | {latency:.3} s | {} |",
            verdict(latency <= COMPLETE_MAX_SECS, None)
        )?;
        writeln!(
            out,
            "| probe record's own CPU while recording | ≤ 1% of one core | {cpu:.2}%; start to \
             exit {:.2}% | {} |\n",
            run.cpu_pct(),
            verdict(cpu <= 1.0, None)
        )?;
        let trend_text = trend.map_or("n/a (too few RSS samples)".into(), |t| {
            format!(
                "first minute {:.1} MiB, last minute {:.1} MiB (medians), {:+.2} MiB per minute \
                 over the whole recording: {}",
                t.first_mib,
                t.last_mib,
                t.mib_per_min,
                if t.grew() {
                    "**it grew**"
                } else {
                    "flat (within 1 MiB)"
                }
            )
        });
        let samples = self.samples.map_or("n/a".into(), |(samples, lost)| {
            format!("{} samples, {lost} lost", si(samples as f64))
        });
        writeln!(out, "- RSS over time: {trend_text}.")?;
        writeln!(
            out,
            "- The file: {}; {samples}; window {:.1} s.",
            fmt_bytes(self.bytes as f64),
            run.kernel.window_secs
        )?;
        writeln!(
            out,
            "- CPU: {:.2} s in all = {:.3} s before recording + {:.2} s recording + {:.3} s \
             writing the file.",
            run.exit.cpu.as_secs_f64(),
            run.observing.cpu_before.as_secs_f64(),
            run.observing.cpu.as_secs_f64(),
            run.exit
                .cpu
                .saturating_sub(run.observing.cpu_before + run.observing.cpu)
                .as_secs_f64()
        )?;
        let programs: Vec<String> = run
            .kernel
            .programs
            .iter()
            .map(|cost| {
                let ns = cost
                    .ns_per_run()
                    .map_or("n/a".into(), |ns| format!("{ns:.0}"));
                format!("{} {ns} ns per run", cost.program)
            })
            .collect();
        writeln!(
            out,
            "- Kernel programs: {}; all together {}% of one core.\n",
            programs.join(", "),
            fmt_pct(Some(run.kernel.total_pct()))
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flat_resident_set_did_not_grow() {
        let rss: Vec<(f64, f64)> = (0..120).map(|i| (1.5 + 5.0 * i as f64, 40.0)).collect();
        let trend = Trend::of(&rss).unwrap();
        assert_eq!(trend.first_mib, 40.0);
        assert_eq!(trend.last_mib, 40.0);
        assert_eq!(trend.mib_per_min, 0.0);
        assert!(!trend.grew());
    }

    #[test]
    fn growth_is_last_minute_over_first() {
        // 10 minutes, +0.5 MiB a minute.
        let rss: Vec<(f64, f64)> = (0..=120)
            .map(|i| {
                let t = 5.0 * i as f64;
                (t, 40.0 + t / 120.0)
            })
            .collect();
        let trend = Trend::of(&rss).unwrap();
        assert!((trend.mib_per_min - 0.5).abs() < 1e-9);
        assert!((trend.first_mib - 40.25).abs() < 1e-9);
        assert!((trend.last_mib - 44.75).abs() < 1e-9);
        assert!(trend.grew());
    }

    #[test]
    fn a_short_run_is_split_in_halves() {
        let rss = [(0.0, 30.0), (5.0, 30.0), (10.0, 33.0), (15.0, 33.0)];
        let trend = Trend::of(&rss).unwrap();
        assert_eq!((trend.first_mib, trend.last_mib), (30.0, 33.0));
        assert_eq!(Trend::of(&[]), None);
        assert_eq!(Trend::of(&[(1.0, 30.0)]), None);
    }

    #[test]
    fn verdicts() {
        assert_eq!(verdict(true, None), "yes");
        assert_eq!(verdict(false, None), "**no**");
        assert_eq!(
            verdict(false, Some("2 min < 10 min")),
            "not judged: 2 min < 10 min"
        );
    }
}
