//! What the bench runs: the workloads, the observers that watch them, the order of a round,
//! and where inputs and outputs live.

use std::path::PathBuf;

use super::SETTLE;
use crate::workspace_root;

/// Where `prepare` installs py-spy (see `python::ensure_py_spy`), and where it writes its
/// samples; relative to the workspace root.
const PY_SPY_VENV: &str = "target/bench/py-spy-venv";
const PY_SPY: &str = "target/bench/py-spy-venv/bin/py-spy";
const PY_SPY_OUTPUT: &str = "target/bench/py-spy.txt";
/// Where `probe record` writes its flamegraph (SVG: its default format, and the one that
/// takes longest to write).
const PROBE_RECORD_OUTPUT: &str = "target/bench/probe-record.svg";
/// Where `probe watch` writes its events, and its profiles with `--profile-dir`.
const WATCH_EVENTS: &str = "target/bench/watch-events.jsonl";
const WATCH_PROFILES: &str = "target/bench/watch-profiles";
/// strace's syscall summary.
const STRACE_OUTPUT: &str = "target/bench/strace.txt";
/// `probe watch --profile-hz`: the rate of its continuous profile (its default with
/// `--listen` or `--profile-dir`).
pub(super) const WATCH_PROFILE_HZ: u32 = 19;

/// bpftrace's counterpart of probe: 99 Hz stacks plus a per-thread syscall count.
const BPFTRACE_PROGRAM: &str = "profile:hz:99 { @s[kstack, ustack] = count(); } \
                                tracepoint:raw_syscalls:sys_enter { @[tid] = count(); }";

/// Samples per second of every sampling observer: probe's default, and the rate given to the
/// others (bpftrace's is in its program text).
pub(super) const SAMPLE_HZ: u32 = 99;

/// A CPU-bound loop and a syscall storm in C: the cases where sampling and the syscall hook
/// cost most; the CPU loop 30 calls deep without frame pointers, where unwinding with the
/// `.eh_frame` tables costs most; and a pure-Python CPU loop, for the kernel's Python frame
/// walk and py-spy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Workload {
    CpuLoop,
    GetppidStorm,
    DeepLoop,
    PyLoop,
}

pub(super) const WORKLOADS: [Workload; 4] = [
    Workload::CpuLoop,
    Workload::GetppidStorm,
    Workload::DeepLoop,
    Workload::PyLoop,
];

impl Workload {
    pub(super) fn name(self) -> &'static str {
        match self {
            Self::CpuLoop => "cpu_loop",
            Self::GetppidStorm => "getppid_storm",
            Self::DeepLoop => "deep_loop",
            Self::PyLoop => "py_loop",
        }
    }

    /// Compiler flags of a C workload beyond the bench's `CFLAGS`.
    pub(super) fn extra_cflags(self) -> &'static [&'static str] {
        match self {
            // Explicit, though Debian's gcc omits them at -O2 already: the point of the
            // workload is a stack only the tables unwind.
            Self::DeepLoop => &["-fomit-frame-pointer"],
            _ => &[],
        }
    }

    /// What one iteration is, for the rate column.
    pub(super) fn unit(self) -> &'static str {
        match self {
            Self::CpuLoop | Self::DeepLoop => "xorshift steps",
            Self::GetppidStorm => "getppid calls",
            Self::PyLoop => "Python xorshift calls",
        }
    }

    /// The Python workload is a script; the others are C programs the bench compiles.
    pub(super) fn is_python(self) -> bool {
        self == Self::PyLoop
    }

    pub(super) fn source(self) -> String {
        let extension = if self.is_python() { "py" } else { "c" };
        format!("bench/{}.{extension}", self.name())
    }

    /// Who watches this workload, `Alone` first. Only the Python loop runs under py-spy,
    /// which samples nothing else; it skips bpftrace and perf, which cannot see its frames.
    /// The deep loop is there for probe's two ways of unwinding, side by side.
    pub(super) fn observers(self) -> &'static [Observer] {
        match self {
            Self::PyLoop => &PYTHON_OBSERVERS,
            Self::DeepLoop => &DEEP_OBSERVERS,
            Self::CpuLoop | Self::GetppidStorm => &NATIVE_OBSERVERS,
        }
    }
}

/// Who watches the workload. `Alone` is the control every ratio is taken against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Observer {
    Alone,
    /// `probe watch` between episodes: its `--for` outlasts the run, so only its
    /// sched_switch accounting runs.
    ProbeWatch,
    /// The same with a continuous profile at 19 Hz written into `--profile-dir`.
    ProbeWatchProfile,
    /// `probe spin`, which unwinds native stacks with the `.eh_frame` tables.
    Probe,
    /// `probe spin --frame-pointers-only`: the same, walking frame pointers only.
    ProbeFramePointers,
    ProbeRecord,
    Bpftrace,
    Perf,
    /// `strace -c -f -p PID`: a syscall count by ptrace, the classic way.
    Strace,
    PySpy,
    PySpyNonblocking,
}

/// The C workloads' observers.
pub(super) const NATIVE_OBSERVERS: [Observer; 8] = [
    Observer::Alone,
    Observer::ProbeWatch,
    Observer::ProbeWatchProfile,
    Observer::Probe,
    Observer::ProbeRecord,
    Observer::Perf,
    Observer::Bpftrace,
    Observer::Strace,
];

/// The deep C loop's observers: probe spin with tables and with frame pointers only, in the
/// same rounds, for what the tables cost per sample.
pub(super) const DEEP_OBSERVERS: [Observer; 3] = [
    Observer::Alone,
    Observer::Probe,
    Observer::ProbeFramePointers,
];

/// The Python workload's observers: probe (which walks Python frames in the kernel for every
/// CPython process it samples, and libpython's native frames with its tables or, the second
/// time, with frame pointers) and py-spy at the same rate, pausing the process per sample
/// (its default) or not.
pub(super) const PYTHON_OBSERVERS: [Observer; 9] = [
    Observer::Alone,
    Observer::ProbeWatch,
    Observer::ProbeWatchProfile,
    Observer::Probe,
    Observer::ProbeFramePointers,
    Observer::ProbeRecord,
    Observer::Strace,
    Observer::PySpy,
    Observer::PySpyNonblocking,
];

/// The distinct observer sets, one throughput table each, in table order.
pub(super) const OBSERVER_SETS: [&[Observer]; 3] =
    [&NATIVE_OBSERVERS, &DEEP_OBSERVERS, &PYTHON_OBSERVERS];

/// Every observer once, in table order.
pub(super) const OBSERVERS: [Observer; 11] = [
    Observer::Alone,
    Observer::ProbeWatch,
    Observer::ProbeWatchProfile,
    Observer::Probe,
    Observer::ProbeFramePointers,
    Observer::ProbeRecord,
    Observer::Perf,
    Observer::Bpftrace,
    Observer::Strace,
    Observer::PySpy,
    Observer::PySpyNonblocking,
];

impl Observer {
    pub(super) fn name(self) -> &'static str {
        match self {
            Self::Alone => "alone",
            Self::ProbeWatch => "probe watch",
            Self::ProbeWatchProfile => "probe watch --profile-hz 19",
            Self::Probe => "probe spin",
            Self::ProbeFramePointers => "probe spin --frame-pointers-only",
            Self::ProbeRecord => "probe record",
            Self::Bpftrace => "bpftrace",
            Self::Perf => "perf record",
            Self::Strace => "strace -c -f",
            Self::PySpy => "py-spy record",
            Self::PySpyNonblocking => "py-spy record --nonblocking",
        }
    }

    /// The name as a file name's stem: no spaces, no leading dashes.
    fn file_stem(self) -> &'static str {
        match self {
            Self::ProbeWatch => "probe-watch",
            Self::ProbeWatchProfile => "probe-watch-profile",
            Self::Probe => "probe",
            Self::ProbeFramePointers => "probe-frame-pointers",
            Self::ProbeRecord => "probe-record",
            Self::Perf => "perf-record",
            Self::PySpy => "py-spy",
            Self::PySpyNonblocking => "py-spy-nonblocking",
            _ => self.name(),
        }
    }

    /// `probe spin`, either way of unwinding: it writes a JSON report.
    pub(super) fn is_probe_spin(self) -> bool {
        matches!(self, Self::Probe | Self::ProbeFramePointers)
    }

    /// Either `probe watch`: it writes its events (and profiles) into files.
    pub(super) fn is_probe_watch(self) -> bool {
        matches!(self, Self::ProbeWatch | Self::ProbeWatchProfile)
    }

    /// probe in any of its forms: its figures are read from what it wrote, and its hanging
    /// is a failure, not noise.
    pub(super) fn is_probe(self) -> bool {
        self.is_probe_spin() || self.is_probe_watch() || self == Self::ProbeRecord
    }

    /// strace stops the workload at every syscall until it has read it: a syscall storm is
    /// off a CPU most of its run because of strace itself, not because other load took
    /// the CPU, so its low on-CPU share does not make the run disturbed.
    pub(super) fn holds_the_workload_stopped(self) -> bool {
        self == Self::Strace
    }

    /// Whether it needs the workload's PID, so the workload has to start first (py-spy,
    /// strace).
    pub(super) fn needs_pid(self) -> bool {
        matches!(self, Self::Strace | Self::PySpy | Self::PySpyNonblocking)
    }

    /// The observer's command line, run from the workspace root; `None` for `alone`.
    /// `pid` is the workload's, for the observers that need one (`PID` when `None`: for
    /// showing the command).
    pub(super) fn argv(self, secs: f64, pid: Option<libc::pid_t>) -> Option<Vec<String>> {
        let hz = SAMPLE_HZ.to_string();
        let argv: &[&str] = match self {
            Self::Alone => return None,
            Self::Probe | Self::ProbeFramePointers => {
                // The window outlasts the run: SIGINT ends it, and probe still reports.
                let window = secs + SETTLE.as_secs_f64() + 30.0;
                let argv = [
                    "target/release/probe",
                    "spin",
                    "-d",
                    &window.to_string(),
                    "--self-stats",
                    "--json",
                ];
                let mut argv = argv.map(str::to_owned).to_vec();
                if self == Self::ProbeFramePointers {
                    argv.push("--frame-pointers-only".into());
                }
                return Some(argv);
            }
            Self::ProbeRecord => {
                return Some(probe_record_argv(PROBE_RECORD_OUTPUT));
            }
            Self::ProbeWatch | Self::ProbeWatchProfile => {
                // An episode needs a thread hot for --for: longer than the run, so the bench
                // measures watching, not an episode (`watch::measure_checks` times those).
                let hold = secs + SETTLE.as_secs_f64() + 30.0;
                let mut argv = [
                    "target/release/probe",
                    "watch",
                    "--for",
                    &hold.to_string(),
                    "-o",
                    WATCH_EVENTS,
                ]
                .map(str::to_owned)
                .to_vec();
                if self == Self::ProbeWatchProfile {
                    argv.extend(
                        [
                            "--profile-hz",
                            &WATCH_PROFILE_HZ.to_string(),
                            "--profile-dir",
                            WATCH_PROFILES,
                        ]
                        .map(str::to_owned),
                    );
                }
                return Some(argv);
            }
            Self::Bpftrace => &["bpftrace", "-e", BPFTRACE_PROGRAM],
            Self::Perf => &[
                "perf",
                "record",
                "-F",
                &hz,
                "-g",
                "-a",
                "-o",
                "target/bench/perf.data",
            ],
            Self::Strace => {
                // It detaches and writes its summary when the workload exits.
                let pid = pid.map_or("PID".into(), |pid| pid.to_string());
                let argv = ["strace", "-c", "-f", "-o", STRACE_OUTPUT, "-p", &pid];
                return Some(argv.map(str::to_owned).to_vec());
            }
            Self::PySpy | Self::PySpyNonblocking => {
                // It exits by itself when the workload does, after writing its output.
                let pid = pid.map_or("PID".into(), |pid| pid.to_string());
                let mut argv = [
                    PY_SPY,
                    "record",
                    "-r",
                    &hz,
                    "-p",
                    &pid,
                    "--format",
                    "raw",
                    "-o",
                    PY_SPY_OUTPUT,
                ]
                .map(str::to_owned)
                .to_vec();
                if self == Self::PySpyNonblocking {
                    argv.push("--nonblocking".into());
                }
                return Some(argv);
            }
        };
        Some(argv.iter().map(|arg| (*arg).to_owned()).collect())
    }
}

/// `probe record` of the whole machine at the bench's rate into `output`, until SIGINT.
pub(super) fn probe_record_argv(output: &str) -> Vec<String> {
    let hz = SAMPLE_HZ.to_string();
    let argv = [
        "target/release/probe",
        "record",
        "-a",
        "-F",
        &hz,
        "-o",
        output,
        "--self-stats",
    ];
    argv.map(str::to_owned).to_vec()
}

/// `observers` in round `round`'s order: rotated each round, so slow drift of the machine
/// does not always favour the same observer.
pub(super) fn round_order(round: usize, observers: &[Observer]) -> Vec<Observer> {
    (0..observers.len())
        .map(|i| observers[(i + round) % observers.len()])
        .collect()
}

/// Where the bench's inputs and outputs live.
pub(super) struct Paths {
    pub(super) root: PathBuf,
    pub(super) out: PathBuf,
}

impl Paths {
    pub(super) fn new() -> Self {
        let root = workspace_root();
        Self {
            out: root.join("target/bench"),
            root,
        }
    }

    pub(super) fn workload(&self, workload: Workload) -> PathBuf {
        self.out.join(workload.name())
    }

    /// probe's JSON report, for the length of its window.
    pub(super) fn probe_report(&self) -> PathBuf {
        self.out.join("probe-report.json")
    }

    pub(super) fn stderr(&self, observer: Observer) -> PathBuf {
        self.out.join(format!("{}.stderr", observer.file_stem()))
    }

    /// The venv py-spy is installed into when it is missing.
    pub(super) fn py_spy_venv(&self) -> PathBuf {
        self.root.join(PY_SPY_VENV)
    }

    pub(super) fn py_spy(&self) -> PathBuf {
        self.root.join(PY_SPY)
    }

    pub(super) fn py_spy_output(&self) -> PathBuf {
        self.root.join(PY_SPY_OUTPUT)
    }

    /// `probe record`'s flamegraph.
    pub(super) fn probe_record_output(&self) -> PathBuf {
        self.root.join(PROBE_RECORD_OUTPUT)
    }

    /// `probe watch`'s events (JSON lines).
    pub(super) fn watch_events(&self) -> PathBuf {
        self.root.join(WATCH_EVENTS)
    }

    /// `probe watch --profile-dir`'s directory.
    pub(super) fn watch_profiles(&self) -> PathBuf {
        self.root.join(WATCH_PROFILES)
    }

    pub(super) fn strace_output(&self) -> PathBuf {
        self.root.join(STRACE_OUTPUT)
    }

    pub(super) fn perf_data(&self) -> [PathBuf; 2] {
        // perf renames an existing perf.data to perf.data.old.
        [self.out.join("perf.data"), self.out.join("perf.data.old")]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_observer_leads_once_in_as_many_rounds() {
        for observers in OBSERVER_SETS {
            let n = observers.len();
            let leaders: Vec<Observer> = (0..n)
                .map(|round| round_order(round, observers)[0])
                .collect();
            assert_eq!(leaders, observers);
            assert_eq!(round_order(n, observers), round_order(0, observers));
        }
    }

    #[test]
    fn probe_record_records_everything_at_the_bench_rate_into_its_file() {
        let argv = Observer::ProbeRecord.argv(3.0, None).unwrap();
        assert_eq!(argv[..3], ["target/release/probe", "record", "-a"]);
        assert!(argv.windows(2).any(|w| w == ["-F", "99"]));
        assert!(argv.windows(2).any(|w| w == ["-o", PROBE_RECORD_OUTPUT]));
        assert!(argv.contains(&"--self-stats".to_owned()));
        // No -d: SIGINT ends it, as it ends the other observers.
        assert!(!argv.contains(&"-d".to_owned()));
        assert_ne!(
            Observer::ProbeRecord.file_stem(),
            Observer::Probe.file_stem()
        );
    }

    #[test]
    fn watch_outlasts_the_run_and_the_profile_goes_to_its_directory() {
        let watch = Observer::ProbeWatch.argv(3.0, None).unwrap();
        assert_eq!(watch[..2], ["target/release/probe", "watch"]);
        let hold: f64 = watch[watch.iter().position(|a| a == "--for").unwrap() + 1]
            .parse()
            .unwrap();
        assert!(hold > 3.0 + SETTLE.as_secs_f64());
        let profile = Observer::ProbeWatchProfile.argv(3.0, None).unwrap();
        assert_eq!(profile[..watch.len()], watch);
        assert_eq!(
            profile[watch.len()..],
            ["--profile-hz", "19", "--profile-dir", WATCH_PROFILES]
        );
        let strace = Observer::Strace.argv(3.0, Some(7)).unwrap();
        assert_eq!(strace[..3], ["strace", "-c", "-f"]);
        assert!(strace.windows(2).any(|w| w == ["-p", "7"]));
        assert!(Observer::Strace.needs_pid());
        assert!(Observer::ProbeWatchProfile.is_probe() && !Observer::Strace.is_probe());
    }

    #[test]
    fn py_spy_gets_the_workload_pid_and_its_mode() {
        let argv = Observer::PySpyNonblocking.argv(3.0, Some(42)).unwrap();
        assert_eq!(argv[0], PY_SPY);
        assert!(argv.windows(2).any(|w| w == ["-p", "42"]));
        assert_eq!(argv.last().map(String::as_str), Some("--nonblocking"));
        let shown = Observer::PySpy.argv(3.0, None).unwrap();
        assert!(shown.windows(2).any(|w| w == ["-p", "PID"]));
        assert!(!shown.contains(&"--nonblocking".to_owned()));
    }

    #[test]
    fn every_observer_of_a_workload_is_in_the_table_order() {
        for workload in WORKLOADS {
            assert!(workload.observers().iter().all(|o| OBSERVERS.contains(o)));
            assert_eq!(workload.observers()[0], Observer::Alone);
            assert!(OBSERVER_SETS.contains(&workload.observers()));
        }
    }

    #[test]
    fn both_ways_of_unwinding_watch_the_deep_and_the_python_loop() {
        for workload in [Workload::DeepLoop, Workload::PyLoop] {
            let observers = workload.observers();
            assert!(observers.contains(&Observer::Probe));
            assert!(observers.contains(&Observer::ProbeFramePointers));
        }
        let tables = Observer::Probe.argv(3.0, None).unwrap();
        let frame_pointers = Observer::ProbeFramePointers.argv(3.0, None).unwrap();
        assert_eq!(frame_pointers[..tables.len()], tables);
        assert_eq!(frame_pointers[tables.len()..], ["--frame-pointers-only"]);
        assert_ne!(
            Observer::ProbeFramePointers.file_stem(),
            Observer::Probe.file_stem()
        );
    }
}
