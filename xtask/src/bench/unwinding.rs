//! Native stacks unwound with the `.eh_frame` tables against frame pointers: the stack
//! sampler's cost per sample of the workload both ways in the same rounds, what building the
//! tables cost in the runs, and each table's build time for a few real files.

use std::{
    fmt::{self, Write as _},
    fs,
    path::{Path, PathBuf},
};

use anyhow::{bail, Context as _, Result};

use super::{
    format::{fmt_bytes, fmt_summary},
    plan::{Observer, Workload, SAMPLE_HZ, WORKLOADS},
    render::Results,
    sample::{ProbeRun, Sample},
    stats::Summary,
    targets::Target,
};
use crate::workspace_root;

/// probe's stack sampler; its runs include the table walk, which it tail calls (the kernel
/// counts a tail-called program's time in its caller's statistics).
const SAMPLER: &str = "sample_stack";
/// Per-sample cost of table unwinding, at most this many times the frame-pointer walk's.
const MAX_TABLES_OVER_FRAME_POINTERS: f64 = 2.0;
/// Per-sample cost with tables, Python walk included, in ns.
const MAX_TABLES_SAMPLE_NS: f64 = 5_000.0;
/// From a process's first sample to its tables in the kernel, in ns.
const MAX_TABLES_LATENCY_NS: f64 = 200_000_000.0;
/// glibc, whose tables every process needs.
const LIBC: &str = "/usr/lib/x86_64-linux-gnu/libc.so.6";
/// Where the largest binaries are looked for, and how many of them are measured.
const LARGEST_UNDER: [&str; 2] = ["/usr", "/opt"];
const LARGEST_COUNT: usize = 3;
/// The release test build that measures table builds, apart from the release `probe` (it
/// is built without the eBPF programs, which would otherwise rebuild that one).
const MEASURE_TARGET_DIR: &str = "target/bench/table-build";

impl Sample {
    /// The sampler's cost per sample of the workload itself in this run, in ns: its total
    /// run time less its other runs at `other_ns` each (the idle run's cost per run: CPUs
    /// with nothing of the workload on them are idle or nearly so), over the workload's
    /// samples (its CPU time at the sampling rate). `None` without figures.
    fn sampler_ns_per_workload_sample(&self, secs: f64, other_ns: f64) -> Option<f64> {
        let cost = self.probe.as_ref()?.kernel.program(SAMPLER)?;
        let runs = cost.run_count as f64;
        let workload_samples = (f64::from(SAMPLE_HZ) * secs * self.rate.on_cpu).min(runs);
        if workload_samples < 1.0 {
            return None;
        }
        let other = (runs - workload_samples) * other_ns;
        Some((cost.run_time_ns as f64 - other).max(0.0) / workload_samples)
    }
}

/// One way of unwinding's figures for one workload, over the rounds.
struct WayFigures {
    /// The sampler per sample of the workload (see `sampler_ns_per_workload_sample`).
    per_sample_ns: Option<Summary>,
    /// The sampler per run, all of its runs (systemwide).
    per_run_ns: Option<Summary>,
    /// Throughput ratio to alone in the same round.
    ratio: Option<Summary>,
    /// probe's own CPU while the workload ran, % of one core.
    cpu_pct: Option<Summary>,
}

impl Results<'_> {
    /// The workloads probe watched both ways.
    fn compared_workloads() -> impl Iterator<Item = Workload> {
        WORKLOADS
            .into_iter()
            .filter(|w| w.observers().contains(&Observer::ProbeFramePointers))
    }

    /// The idle run's sampler cost per run: what a sample of nothing costs.
    fn idle_sampler_ns(&self) -> f64 {
        self.idle
            .kernel
            .program(SAMPLER)
            .and_then(|cost| cost.ns_per_run())
            .unwrap_or(0.0)
    }

    fn per_workload_sample_ns(&self, sample: &Sample) -> Option<f64> {
        sample.sampler_ns_per_workload_sample(self.bench.options.secs, self.idle_sampler_ns())
    }

    fn way_figures(&self, workload: Workload, observer: Observer) -> WayFigures {
        let runs = self.runs_of(workload, observer);
        let probe_runs: Vec<&ProbeRun> = runs.iter().filter_map(|s| s.probe.as_ref()).collect();
        WayFigures {
            per_sample_ns: Summary::of(runs.iter().filter_map(|s| self.per_workload_sample_ns(s))),
            per_run_ns: Summary::of(
                probe_runs
                    .iter()
                    .filter_map(|run| run.kernel.program(SAMPLER)?.ns_per_run()),
            ),
            ratio: Summary::of(self.ratios(workload, observer, |r| r.wall)),
            cpu_pct: Summary::of(probe_runs.iter().map(|run| run.observing.cpu_pct())),
        }
    }

    /// Tables ÷ frame pointers, per sample of the workload, one per round that has both.
    fn tables_over_frame_pointers(&self, workload: Workload) -> Vec<f64> {
        let in_round = |observer, round| {
            self.runs_of(workload, observer)
                .into_iter()
                .find(|s| s.round == round)
                .and_then(|s| self.per_workload_sample_ns(s))
        };
        (0..self.bench.options.rounds)
            .filter_map(|round| {
                let tables = in_round(Observer::Probe, round)?;
                let frame_pointers = in_round(Observer::ProbeFramePointers, round)?;
                (frame_pointers > 0.0).then(|| tables / frame_pointers)
            })
            .collect()
    }

    pub(super) fn write_unwinding(&self, out: &mut String) -> fmt::Result {
        writeln!(
            out,
            "## Native stacks: `.eh_frame` tables against frame pointers\n"
        )?;
        writeln!(
            out,
            "`probe spin` (tables, the default) and `probe spin --frame-pointers-only` in the \
             same rounds. The sampler's cost per sample of the workload: `{SAMPLER}`'s run time \
             over probe's window (the table walk it tail calls included) less its other runs \
             at the idle run's {:.0} ns each, over the workload's samples ({SAMPLE_HZ} Hz × its \
             CPU time); per run: all of its runs, systemwide, the CPUs with nothing on them \
             included. Tables ÷ frame pointers is taken per round, then the median. Medians \
             (min–max) over the rounds.\n",
            self.idle_sampler_ns()
        )?;
        writeln!(
            out,
            "| workload | unwinding | µs per sample of the workload | tables ÷ frame pointers \
             | ns per run (all runs) | throughput ratio to alone | probe's CPU while observing, \
             % of one core |\n|---|---|---|---|---|---|---|"
        )?;
        let us = |s: Option<Summary>| {
            s.map_or("n/a".into(), |s| {
                format!(
                    "{:.2} ({:.2}–{:.2})",
                    s.median / 1e3,
                    s.min / 1e3,
                    s.max / 1e3
                )
            })
        };
        for workload in Self::compared_workloads() {
            for (observer, way) in [
                (Observer::Probe, "tables"),
                (Observer::ProbeFramePointers, "frame pointers only"),
            ] {
                let figures = self.way_figures(workload, observer);
                let over = if observer == Observer::Probe {
                    fmt_summary(Summary::of(self.tables_over_frame_pointers(workload)), 2)
                } else {
                    "—".into()
                };
                writeln!(
                    out,
                    "| {} | {way} | {} | {over} | {} | {} | {} |",
                    workload.name(),
                    us(figures.per_sample_ns),
                    fmt_summary(figures.per_run_ns, 0),
                    fmt_summary(figures.ratio, 2),
                    fmt_summary(figures.cpu_pct, 2),
                )?;
            }
        }
        writeln!(out)?;
        self.write_table_costs(out)?;
        self.write_table_builds(out)
    }

    /// What building and loading tables cost in probe spin's runs, by workload.
    fn write_table_costs(&self, out: &mut String) -> fmt::Result {
        writeln!(
            out,
            "What probe spin's tables cost in its runs (from `--self-stats`: every process it \
             sampled, systemwide, over the whole run; medians, latency the max): files \
             compiled, their `.eh_frame` / `.debug_frame`, the time compiling and loading \
             them took, the most table rows in the kernel at once (of its capacity), the \
             longest time from a process's first sample to its tables in the kernel, and the \
             samples taken before (walked with frame pointers).\n"
        )?;
        writeln!(
            out,
            "| while running | runs | processes | files | CFI | build ms | ms per MiB | rows \
             peak / capacity | first sample → tables, max | samples before tables |\n\
             |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        )?;
        for (name, runs) in self.probe_runs() {
            let stats: Vec<_> = runs
                .iter()
                .filter_map(|run| run.unwind)
                .filter(|u| u.enabled)
                .collect();
            let median = |figure: &dyn Fn(&super::parse::UnwindStats) -> f64| {
                Summary::of(stats.iter().map(figure)).map(|s| s.median)
            };
            let (Some(processes), Some(files), Some(cfi), Some(build_ns)) = (
                median(&|u| u.processes as f64),
                median(&|u| u.files_compiled as f64),
                median(&|u| u.cfi_bytes as f64),
                median(&|u| u.build_ns as f64),
            ) else {
                writeln!(out, "| {name} | {} | n/a | | | | | | | |", runs.len())?;
                continue;
            };
            let per_mib = Summary::of(
                stats
                    .iter()
                    .filter(|u| u.cfi_bytes > 0)
                    .map(|u| u.build_ns as f64 / 1e6 / (u.cfi_bytes as f64 / (1 << 20) as f64)),
            );
            let peak = stats.iter().map(|u| u.rows_peak).max().unwrap_or(0);
            let capacity = stats.iter().map(|u| u.rows_capacity).max().unwrap_or(0);
            let latency = stats
                .iter()
                .map(|u| u.tables_latency_max_ns)
                .max()
                .unwrap_or(0);
            let before = median(&|u| u.samples_before_tables as f64).unwrap_or(0.0);
            writeln!(
                out,
                "| {name} | {} | {processes:.0} | {files:.0} | {} | {:.1} | {} | {peak} / \
                 {capacity} | {:.3} s | {before:.0} |",
                stats.len(),
                fmt_bytes(cfi),
                build_ns / 1e6,
                per_mib.map_or("n/a".into(), |s| format!("{:.1}", s.median)),
                latency as f64 / 1e9,
            )?;
        }
        writeln!(out)
    }

    /// Build time and size of the tables of single files, from the release build of
    /// probe's table compiler.
    fn write_table_builds(&self, out: &mut String) -> fmt::Result {
        writeln!(
            out,
            "Single files, compiled by probe's table compiler alone (`{}`; best of 3, the file \
             read into memory first): glibc, the CPython 3.12 that runs the Python loop, and \
             the {LARGEST_COUNT} largest ELF files under {}.\n",
            TABLE_BUILD_COMMAND,
            LARGEST_UNDER.join(" and ")
        )?;
        writeln!(
            out,
            "| file | file size | CFI | FDEs | table rows | table in the kernel | build ms | \
             ms per MiB of CFI |\n|---|---:|---:|---:|---:|---:|---:|---:|"
        )?;
        for build in &self.table_builds {
            let size = fs::metadata(&build.file).map_or(0, |m| m.len());
            match &build.figures {
                Ok(f) => writeln!(
                    out,
                    "| {} | {} | {} {} | {} | {} | {} | {:.1} | {:.1} |",
                    build.file.display(),
                    fmt_bytes(size as f64),
                    fmt_bytes(f.cfi_bytes as f64),
                    f.section,
                    f.fdes,
                    f.rows,
                    fmt_bytes(f.table_bytes as f64),
                    f.build_ns as f64 / 1e6,
                    f.ms_per_mib(),
                )?,
                Err(why) => writeln!(
                    out,
                    "| {} | {} | no table: {why} | | | | | |",
                    build.file.display(),
                    fmt_bytes(size as f64)
                )?,
            }
        }
        writeln!(out)
    }

    pub(super) fn unwinding_targets(&self) -> Vec<Target> {
        let worst = |figure: &dyn Fn(Workload) -> Option<Summary>| {
            Self::compared_workloads()
                .filter_map(|w| Some((w.name(), figure(w)?)))
                .max_by(|a, b| a.1.median.total_cmp(&b.1.median))
        };
        let over = worst(&|w| Summary::of(self.tables_over_frame_pointers(w)));
        let per_sample = worst(&|w| self.way_figures(w, Observer::Probe).per_sample_ns);
        let latency = self
            .all_probe_runs()
            .iter()
            .filter_map(|run| run.unwind)
            .filter(|u| u.enabled)
            .map(|u| u.tables_latency_max_ns as f64)
            .max_by(f64::total_cmp);
        let builds: Vec<_> = self
            .table_builds
            .iter()
            .filter_map(|b| Some((b, b.figures.as_ref().ok()?)))
            .collect();
        let largest = builds.iter().max_by_key(|(_, f)| f.cfi_bytes);
        let per_mib = Summary::of(builds.iter().map(|(_, f)| f.ms_per_mib()));
        vec![
            Target {
                what: "stack sample with tables ÷ with frame pointers only, per sample of the \
                       workload, same rounds (median; worst workload)",
                goal: "≤ 2",
                measured: over.map_or("n/a".into(), |(name, s)| {
                    format!("{} ({name})", fmt_summary(Some(s), 2))
                }),
                met: over.is_some_and(|(_, s)| s.median <= MAX_TABLES_OVER_FRAME_POINTERS),
            },
            Target {
                what: "stack sample with tables, Python walk included, per sample of the \
                       workload (median; worst workload)",
                goal: "≤ 5 µs",
                measured: per_sample.map_or("n/a".into(), |(name, s)| {
                    format!("{:.2} µs ({name})", s.median / 1e3)
                }),
                met: per_sample.is_some_and(|(_, s)| s.median <= MAX_TABLES_SAMPLE_NS),
            },
            Target {
                what: "a process's first sample to its tables in the kernel (max over all \
                       probe spin runs and every process they sampled)",
                goal: "≤ 0.2 s",
                measured: latency.map_or("n/a".into(), |ns| format!("{:.3} s", ns / 1e9)),
                met: latency.is_some_and(|ns| ns <= MAX_TABLES_LATENCY_NS),
            },
            Target {
                what: "table build time (single files: glibc, libpython3.12, the largest \
                       binaries)",
                goal: "reported",
                measured: match (per_mib, largest) {
                    (Some(s), Some((build, f))) => format!(
                        "{:.1} ms per MiB of CFI (median; {:.1}–{:.1}); the largest CFI, {} of \
                         {}: {:.1} ms",
                        s.median,
                        s.min,
                        s.max,
                        fmt_bytes(f.cfi_bytes as f64),
                        build.file.display(),
                        f.build_ns as f64 / 1e6
                    ),
                    _ => "n/a".into(),
                },
                met: per_mib.is_some(),
            },
        ]
    }
}

/// The command that measures single files' table builds, as the results show it.
const TABLE_BUILD_COMMAND: &str = "AYA_BUILD_SKIP=1 cargo test --release -p probe-user --lib \
     unwind::tests::real::measure_build_time -- --ignored --nocapture";

/// One file's table build.
pub(super) struct TableBuild {
    pub(super) file: PathBuf,
    /// Why there is no table, when there is none.
    pub(super) figures: Result<BuildFigures, String>,
}

#[derive(Clone, Debug, PartialEq)]
pub(super) struct BuildFigures {
    /// `.eh_frame` or `.debug_frame`.
    pub(super) section: String,
    pub(super) cfi_bytes: u64,
    pub(super) fdes: u64,
    pub(super) rows: u64,
    /// Rows and page index, as loaded into the kernel.
    pub(super) table_bytes: u64,
    pub(super) build_ns: u64,
}

impl BuildFigures {
    fn ms_per_mib(&self) -> f64 {
        self.build_ns as f64 / 1e6 / (self.cfi_bytes.max(1) as f64 / (1 << 20) as f64)
    }
}

/// Builds probe's table compiler's measurement in release and runs it on glibc, `python`'s
/// libpython and the largest binaries here. Before the rounds: its build would disturb them.
pub(super) fn measure_table_builds(python: &Path) -> Result<Vec<TableBuild>> {
    let mut files = vec![PathBuf::from(LIBC)];
    files.extend(libpython_of(python));
    files.extend(largest_elf_files(&LARGEST_UNDER, LARGEST_COUNT));
    let list = files
        .iter()
        .map(|file| file.to_str().map(str::to_owned))
        .collect::<Option<Vec<_>>>()
        .context("a file to measure has a name that is not UTF-8")?
        .join(":");
    eprintln!(
        "xtask: measuring table builds of {}",
        list.replace(':', ", ")
    );
    let output = crate::cargo()
        .args([
            "test",
            "--release",
            "--package",
            "probe-user",
            "--lib",
            "unwind::tests::real::measure_build_time",
            "--",
            "--ignored",
            "--nocapture",
            "--exact",
        ])
        .env("AYA_BUILD_SKIP", "1")
        .env(
            "CARGO_TARGET_DIR",
            workspace_root().join(MEASURE_TARGET_DIR),
        )
        .env("UNWIND_MEASURE_FILES", &list)
        .current_dir(workspace_root())
        .output()
        .context("failed to run the table build measurement")?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        let tail: Vec<&str> = stderr.lines().rev().take(20).collect();
        bail!(
            "the table build measurement failed ({}):\n{}",
            output.status,
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
    let builds = parse_table_builds(&stderr);
    if builds.is_empty() {
        bail!("the table build measurement printed no figures");
    }
    Ok(builds)
}

/// The measurement's JSON lines, `{"measured": path, ...figures}` or `{"measured": path,
/// "error": why}`.
pub(super) fn parse_table_builds(stderr: &str) -> Vec<TableBuild> {
    stderr
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter_map(|value| {
            let file = PathBuf::from(value.get("measured")?.as_str()?);
            let count = |key: &str| value.get(key)?.as_u64();
            let figures = match value.get("error") {
                Some(error) => Err(error.as_str().unwrap_or("no CFI").to_owned()),
                None => Ok(BuildFigures {
                    section: value.get("section")?.as_str()?.to_owned(),
                    cfi_bytes: count("cfi_bytes")?,
                    fdes: count("fdes")?,
                    rows: count("rows")?,
                    table_bytes: count("table_bytes")?,
                    build_ns: count("build_ns")?,
                }),
            };
            Some(TableBuild { file, figures })
        })
        .collect()
}

/// pyenv's layout: `<prefix>/bin/python3.12` has `<prefix>/lib/libpython3.12.so.1.0` when it
/// was built shared (the one probe's tables cover; a static build has it in the executable).
fn libpython_of(python: &Path) -> Option<PathBuf> {
    let prefix = python.parent()?.parent()?;
    let name = python.file_name()?.to_str()?;
    let library = prefix.join(format!("lib/lib{name}.so.1.0"));
    Some(if library.is_file() {
        library
    } else {
        python.to_owned()
    })
}

/// The `count` largest ELF files under `roots` (symbolic links not followed), largest first.
fn largest_elf_files(roots: &[&str], count: usize) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut dirs: Vec<PathBuf> = roots.iter().map(PathBuf::from).collect();
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(metadata) = entry.metadata() else {
                continue;
            };
            if metadata.is_dir() {
                dirs.push(entry.path());
            } else if metadata.is_file() && metadata.len() >= 1 << 20 {
                files.push((metadata.len(), entry.path()));
            }
        }
    }
    files.sort_unstable_by(|a, b| b.cmp(a));
    files
        .into_iter()
        .map(|(_, path)| path)
        .filter(|path| is_elf(path))
        .take(count)
        .collect()
}

fn is_elf(path: &Path) -> bool {
    use std::io::Read as _;
    let mut magic = [0u8; 4];
    fs::File::open(path)
        .and_then(|mut file| file.read_exact(&mut magic))
        .is_ok_and(|()| magic == *b"\x7fELF")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_builds_are_read_from_the_measurement_lines() {
        let stderr = "running 1 test\n\
            /lib/libc.so.6: .eh_frame 223 KiB, ...\n\
            {\"measured\":\"/lib/libc.so.6\",\"section\":\".eh_frame\",\"cfi_bytes\":228352,\
            \"fdes\":3000,\"rows\":30000,\"table_bytes\":300000,\"build_ns\":1700000}\n\
            {\"measured\":\"/opt/go-binary\",\"error\":\"no .eh_frame or .debug_frame\"}\n\
            {\"unrelated\":1}\n";
        let builds = parse_table_builds(stderr);
        assert_eq!(builds.len(), 2);
        assert_eq!(builds[0].file, Path::new("/lib/libc.so.6"));
        let figures = builds[0].figures.as_ref().unwrap();
        assert_eq!(figures.cfi_bytes, 228_352);
        assert!((figures.ms_per_mib() - 1.7 / (228_352.0 / 1_048_576.0)).abs() < 1e-9);
        assert_eq!(
            builds[1].figures.as_ref().unwrap_err(),
            "no .eh_frame or .debug_frame"
        );
    }

    #[test]
    fn the_largest_elf_files_are_found_largest_first() {
        let dir = std::env::temp_dir().join(format!("xtask-largest-{}", std::process::id()));
        let nested = dir.join("nested");
        fs::create_dir_all(&nested).unwrap();
        let write = |path: &Path, magic: &[u8], len: usize| {
            let mut data = magic.to_vec();
            data.resize(len, 0);
            fs::write(path, data).unwrap();
        };
        write(&dir.join("small.so"), b"\x7fELF", 2 << 20);
        write(&nested.join("big.so"), b"\x7fELF", 3 << 20);
        write(&dir.join("bigger.dat"), b"data", 4 << 20);
        write(&dir.join("tiny.so"), b"\x7fELF", 1000);
        let root = dir.to_str().unwrap();
        let found = largest_elf_files(&[root], 5);
        fs::remove_dir_all(&dir).unwrap();
        assert_eq!(found, [nested.join("big.so"), dir.join("small.so")]);
    }

    #[test]
    fn libpython_is_found_next_to_a_shared_build() {
        let prefix = std::env::temp_dir().join(format!("xtask-pyprefix-{}", std::process::id()));
        fs::create_dir_all(prefix.join("bin")).unwrap();
        fs::create_dir_all(prefix.join("lib")).unwrap();
        let python = prefix.join("bin/python3.12");
        assert_eq!(libpython_of(&python), Some(python.clone()));
        fs::write(prefix.join("lib/libpython3.12.so.1.0"), b"").unwrap();
        let found = libpython_of(&python);
        fs::remove_dir_all(&prefix).unwrap();
        assert_eq!(found, Some(prefix.join("lib/libpython3.12.so.1.0")));
    }
}
