//! Command-line definitions. Clap types are converted once into plain option structs, so
//! the stages never see clap.

use std::time::Duration;

use clap::{Args, Parser, Subcommand};

/// Find the threads burning CPU on this machine and show what they are doing.
#[derive(Debug, Parser)]
#[command(name = "probe", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Report every thread that spent at least --threshold % of the window on a CPU: its CPU
    /// share, syscall mix, where it loops and its hottest stacks.
    #[command(after_help = SPIN_EXAMPLES)]
    Spin(SpinArgs),
    /// Record on-CPU (and with --off-cpu, blocked) stacks of processes, a command or the
    /// whole machine into a flamegraph, folded stacks, speedscope or pprof file.
    #[command(after_help = RECORD_EXAMPLES)]
    Record(RecordArgs),
    /// Watch the machine until stopped: run-time accounting only while nothing spins; a
    /// thread at or above --threshold for --for seconds is sampled for --sample seconds and
    /// reported as one event (the spin report of it), and once more when it stops.
    #[command(after_help = WATCH_EXAMPLES)]
    Watch(WatchArgs),
    /// Show what every thread of a process is doing or waiting on, without stopping it:
    /// state, wait channel, kernel stack, the syscall it is blocked in; identical threads
    /// grouped.
    #[command(after_help = DUMP_EXAMPLES)]
    Dump(DumpArgs),
}

const DUMP_EXAMPLES: &str = "Examples:
  probe dump -p 1234              every thread of 1234, identical ones grouped
  probe dump -p 1234 --wait 5     first watch 5 s: threads that never ran are blocked >= 5 s
  probe dump -p 1234 -p 99 --json --all

Read from /proc (no ptrace, no signal: the process keeps running). Kernel stacks need root.";

#[derive(Debug, Args)]
pub struct DumpArgs {
    /// The process to dump (repeatable).
    #[arg(short = 'p', long = "pid", value_name = "PID", required = true)]
    pub pids: Vec<u32>,

    /// Watch this long before dumping: a thread that was not on a CPU at all meanwhile is
    /// shown as blocked at least that long, the others as active. Ctrl-C dumps at once.
    #[arg(long, value_name = "SECS", value_parser = parse_duration_secs)]
    pub wait: Option<f64>,

    /// Print the dump as JSON (schema_version inside) instead of text.
    #[arg(long)]
    pub json: bool,

    /// One entry per thread: do not group identical threads.
    #[arg(long)]
    pub all: bool,
}

/// What `probe dump` was asked to do, free of clap.
#[derive(Clone, Debug, PartialEq)]
pub struct DumpOptions {
    pub pids: Vec<u32>,
    pub wait: Option<Duration>,
    pub json: bool,
    pub all: bool,
}

impl From<&DumpArgs> for DumpOptions {
    fn from(args: &DumpArgs) -> Self {
        let mut pids = args.pids.clone();
        pids.sort_unstable();
        pids.dedup();
        Self {
            pids,
            wait: args.wait.map(Duration::from_secs_f64),
            json: args.json,
            all: args.all,
        }
    }
}

const WATCH_EXAMPLES: &str = "Examples:
  probe watch                                   events as JSON lines on stdout
  probe watch -o /var/log/probe/events.jsonl    to a file (0600; SIGHUP reopens it)
  probe watch --for 10 --sample 3 --format text

Events: watch_start, spin (an episode's spin report, with its episode), episode_end,
heartbeat (every --heartbeat seconds: probe's CPU, RSS, map use and losses), watch_stop.
SIGTERM or Ctrl-C reports what is being sampled, ends the open episodes and stops.";

const SPIN_EXAMPLES: &str = "Examples:
  probe spin                      every thread on the machine, 5 s window
  probe spin -d 10 --json         10 s, as JSON
  probe spin -p 1234 --top 3      one process, three stacks per thread";

const RECORD_EXAMPLES: &str = "Examples:
  probe record -p 1234 -d 30                  30 s of process 1234 -> probe-1234.svg
  probe record -o app.pb.gz -- ./app --flag   run ./app, profile it and its children (pprof)
  probe record -a -F 49 -o all.folded         the whole machine until Ctrl-C, folded stacks
  probe record -p 1234 --off-cpu --threads    where its threads block, one tower per thread

The format follows the output's extension (.svg, .folded or .txt, .speedscope.json,
.pb.gz or .pprof) unless --format says otherwise. The file is written when the recording
ends (duration, Ctrl-C, SIGTERM, or the command's exit), complete and marked partial when
a signal ended it; the output path is checked before anything is attached.";

#[derive(Debug, Args)]
pub struct RecordArgs {
    /// Record this process (repeatable).
    #[arg(short = 'p', long = "pid", value_name = "PID", conflicts_with_all = ["all", "command"])]
    pub pids: Vec<u32>,

    /// Record every process on the machine.
    #[arg(short = 'a', long = "all", conflicts_with = "command")]
    pub all: bool,

    /// Recording length in seconds; without it, until Ctrl-C (or the command's exit).
    #[arg(short = 'd', long = "duration", value_parser = parse_duration_secs)]
    pub duration_secs: Option<f64>,

    /// Stack samples per second on every CPU.
    #[arg(short = 'F', long = "frequency", default_value_t = 99,
          value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub frequency: u64,

    /// Output file (default: probe-<target>.<format's extension> in the current directory).
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<std::path::PathBuf>,

    /// Output format; default: from the output's extension, else svg.
    #[arg(long, value_enum)]
    pub format: Option<FormatArg>,

    /// One root frame per thread (OS thread name, Python thread name, tid).
    #[arg(long)]
    pub threads: bool,

    /// Also record where threads block: the stack each thread had when it left the CPU,
    /// weighted by how long it stayed off (a wall-clock profile).
    #[arg(long)]
    pub off_cpu: bool,

    /// Unwind native stacks by frame pointers only: no `.eh_frame` tables in the kernel
    /// (saves their kernel memory and build time; stacks through code built without frame
    /// pointers end early, marked truncated).
    #[arg(long)]
    pub frame_pointers_only: bool,

    /// Print probe's own costs as one JSON line on stderr (for `cargo xtask bench`):
    /// time to attach, the recording's length, and each kernel program's run time and count.
    #[arg(long, hide = true)]
    pub self_stats: bool,

    /// The command to run and record, with its arguments (after `--`); it runs as the
    /// invoking user under sudo, and its children are recorded too.
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<std::ffi::OsString>,
}

/// `--format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum FormatArg {
    Svg,
    Folded,
    Speedscope,
    Pprof,
}

/// What `probe record` records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecordTarget {
    Pids(Vec<u32>),
    All,
    Command(Vec<std::ffi::OsString>),
}

/// What `probe record` was asked to do, free of clap.
#[derive(Clone, Debug, PartialEq)]
pub struct RecordOptions {
    pub target: RecordTarget,
    pub duration: Option<Duration>,
    pub frequency_hz: u64,
    pub output: Option<std::path::PathBuf>,
    pub format: Option<FormatArg>,
    pub per_thread: bool,
    pub off_cpu: bool,
    pub frame_pointers_only: bool,
    pub self_stats: bool,
}

impl TryFrom<&RecordArgs> for RecordOptions {
    type Error = String;

    fn try_from(args: &RecordArgs) -> Result<Self, String> {
        let target = if !args.command.is_empty() {
            RecordTarget::Command(args.command.clone())
        } else if args.all {
            RecordTarget::All
        } else if !args.pids.is_empty() {
            let mut pids = args.pids.clone();
            pids.sort_unstable();
            pids.dedup();
            RecordTarget::Pids(pids)
        } else {
            return Err("say what to record: -p PID, -a (the whole machine) or -- COMMAND".into());
        };
        Ok(Self {
            target,
            duration: args.duration_secs.map(Duration::from_secs_f64),
            frequency_hz: args.frequency,
            output: args.output.clone(),
            format: args.format,
            per_thread: args.threads,
            off_cpu: args.off_cpu,
            frame_pointers_only: args.frame_pointers_only,
            self_stats: args.self_stats,
        })
    }
}

#[derive(Debug, Args)]
pub struct SpinArgs {
    /// Observation window in seconds (Ctrl-C ends it early and still reports).
    #[arg(short = 'd', long = "duration", default_value_t = 5.0, value_parser = parse_duration_secs)]
    pub duration_secs: f64,

    /// Share of one CPU, in percent, at or above which a thread counts as spinning.
    #[arg(long, default_value_t = 90.0, value_parser = parse_threshold)]
    pub threshold: f64,

    /// Only observe this process (repeatable). Filtering happens in the kernel.
    #[arg(short = 'p', long = "pid", value_name = "PID")]
    pub pids: Vec<u32>,

    /// Stack sampling frequency in Hz on every CPU.
    #[arg(short = 'F', long = "frequency", default_value_t = 99,
          value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub frequency: u64,

    /// Print the report as JSON (schema_version inside) instead of text.
    #[arg(long)]
    pub json: bool,

    /// How many entries each list shows: hottest stacks and syscalls per thread, and the
    /// busiest threads when nothing spins.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub top: u64,

    /// Unwind native stacks by frame pointers only: no `.eh_frame` tables in the kernel
    /// (saves their kernel memory and build time; stacks through code built without frame
    /// pointers end early, marked truncated).
    #[arg(long)]
    pub frame_pointers_only: bool,

    /// Print probe's own costs as one JSON line on stderr (for `cargo xtask bench`):
    /// time to attach, and each kernel program's run time and count.
    #[arg(long, hide = true)]
    pub self_stats: bool,

    /// Write the Python frames the kernel recorded, resolved to names and lines, as JSON
    /// lines to FILE: every frame of every sample, before merging with native frames (a
    /// debug view for the tests).
    #[arg(long, hide = true, value_name = "FILE")]
    pub dump_python_frames: Option<std::path::PathBuf>,
}

/// What `probe spin` was asked to do, free of clap.
#[derive(Clone, Debug, PartialEq)]
pub struct SpinOptions {
    pub duration: Duration,
    pub threshold_pct: f64,
    pub pids: Vec<u32>,
    pub frequency_hz: u64,
    pub json: bool,
    pub top: usize,
    pub frame_pointers_only: bool,
    pub self_stats: bool,
    pub dump_python_frames: Option<std::path::PathBuf>,
}

impl From<&SpinArgs> for SpinOptions {
    fn from(args: &SpinArgs) -> Self {
        let mut pids = args.pids.clone();
        pids.sort_unstable();
        pids.dedup();
        Self {
            duration: Duration::from_secs_f64(args.duration_secs),
            threshold_pct: args.threshold,
            pids,
            frequency_hz: args.frequency,
            json: args.json,
            top: args.top as usize,
            frame_pointers_only: args.frame_pointers_only,
            self_stats: args.self_stats,
            dump_python_frames: args.dump_python_frames.clone(),
        }
    }
}

#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Share of one CPU, in percent, at or above which a thread is hot.
    #[arg(long, default_value_t = 90.0, value_parser = parse_threshold)]
    pub threshold: f64,

    /// Seconds a thread must be hot (its mean over them) before an episode starts.
    #[arg(long = "for", value_name = "SECS", default_value_t = 30.0, value_parser = parse_duration_secs)]
    pub hold_secs: f64,

    /// Seconds an episode's threads are sampled (stacks and syscalls) before its report.
    #[arg(long = "sample", value_name = "SECS", default_value_t = 5.0, value_parser = parse_duration_secs)]
    pub sample_secs: f64,

    /// Where events go, one per line: a file (appended; created 0600) or - for stdout.
    #[arg(short = 'o', long = "output", value_name = "FILE|-")]
    pub output: Option<std::path::PathBuf>,

    /// Events as JSON lines, or as text for people.
    #[arg(long, value_enum, default_value_t = EventFormat::Json)]
    pub format: EventFormat,

    /// Stack samples per second on every CPU while an episode is sampled.
    #[arg(short = 'F', long = "frequency", default_value_t = 99,
          value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub frequency: u64,

    /// Seconds between heartbeat events.
    #[arg(long, value_name = "SECS", default_value_t = 600.0, value_parser = parse_duration_secs)]
    pub heartbeat: f64,

    /// Stacks and syscalls shown per thread in a report.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub top: u64,

    /// Stop after this many seconds (default: until SIGTERM or Ctrl-C).
    #[arg(short = 'd', long = "duration", value_parser = parse_duration_secs)]
    pub duration_secs: Option<f64>,

    /// Serve GET /metrics (Prometheus) and /debug/pprof/profile?seconds=N (pprof) here:
    /// PORT (on 127.0.0.1) or ADDR:PORT.
    #[arg(long, value_name = "[ADDR:]PORT", value_parser = parse_listen)]
    pub listen: Option<std::net::SocketAddr>,

    /// Continuous profiling: every thread's stacks sampled at this rate per CPU, for
    /// /debug/pprof/profile and --profile-dir [default: 19 with --listen or --profile-dir,
    /// else 0 (off)].
    #[arg(long, value_name = "HZ", value_parser = clap::value_parser!(u64).range(0..=1000))]
    pub profile_hz: Option<u64>,

    /// Write the continuous profile here, one pprof file per --profile-interval
    /// (created 0700 if missing; the oldest files go past --profile-dir-max-mib).
    #[arg(long, value_name = "DIR")]
    pub profile_dir: Option<std::path::PathBuf>,

    /// Seconds each --profile-dir file covers.
    #[arg(long, value_name = "SECS", default_value_t = 60.0, value_parser = parse_duration_secs)]
    pub profile_interval: f64,

    /// Most MiB of profiles kept in --profile-dir.
    #[arg(long, value_name = "MIB", default_value_t = 256.0, value_parser = parse_mib)]
    pub profile_dir_max_mib: f64,
}

/// `--listen`: a bare port binds loopback; anything else needs an explicit address.
fn parse_listen(text: &str) -> Result<std::net::SocketAddr, String> {
    if let Ok(port) = text.parse::<u16>() {
        return Ok(std::net::SocketAddr::from(([127, 0, 0, 1], port)));
    }
    text.parse().map_err(|_| {
        format!("not a port or ADDR:PORT: {text:?} (e.g. 9464, 127.0.0.1:9464, [::1]:9464)")
    })
}

/// `probe watch --format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum EventFormat {
    Json,
    Text,
}

/// What `probe watch` was asked to do, free of clap.
#[derive(Clone, Debug, PartialEq)]
pub struct WatchOptions {
    pub threshold_pct: f64,
    pub hold: Duration,
    pub sample: Duration,
    pub output: Option<std::path::PathBuf>,
    pub format: EventFormat,
    pub frequency_hz: u64,
    pub heartbeat: Duration,
    pub top: usize,
    pub duration: Option<Duration>,
    pub listen: Option<std::net::SocketAddr>,
    /// Continuous profiling rate; 0: off.
    pub profile_hz: u64,
    pub profile_dir: Option<std::path::PathBuf>,
    pub profile_interval: Duration,
    pub profile_dir_max_bytes: u64,
}

impl From<&WatchArgs> for WatchOptions {
    fn from(args: &WatchArgs) -> Self {
        Self {
            threshold_pct: args.threshold,
            hold: Duration::from_secs_f64(args.hold_secs),
            sample: Duration::from_secs_f64(args.sample_secs),
            output: args.output.clone(),
            format: args.format,
            frequency_hz: args.frequency,
            heartbeat: Duration::from_secs_f64(args.heartbeat),
            top: args.top as usize,
            duration: args.duration_secs.map(Duration::from_secs_f64),
            listen: args.listen,
            profile_hz: args.profile_hz.unwrap_or(
                if args.listen.is_some() || args.profile_dir.is_some() {
                    19
                } else {
                    0
                },
            ),
            profile_dir: args.profile_dir.clone(),
            profile_interval: Duration::from_secs_f64(args.profile_interval),
            profile_dir_max_bytes: (args.profile_dir_max_mib * 1024.0 * 1024.0) as u64,
        }
    }
}

fn parse_duration_secs(text: &str) -> Result<f64, String> {
    let secs: f64 = text
        .parse()
        .map_err(|_| format!("`{text}` is not a number of seconds"))?;
    if !(secs > 0.0 && secs <= 86_400.0) {
        return Err(format!(
            "duration must be > 0 and <= 86400 seconds, got {text}"
        ));
    }
    Ok(secs)
}

fn parse_mib(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(mib) if mib > 0.0 && mib <= 1_048_576.0 => Ok(mib),
        _ => Err(format!(
            "`{text}` is not a size in MiB (> 0, e.g. 256 or 0.5)"
        )),
    }
}

fn parse_threshold(text: &str) -> Result<f64, String> {
    let pct: f64 = text
        .parse()
        .map_err(|_| format!("`{text}` is not a percentage"))?;
    if !(pct > 0.0 && pct <= 100.0) {
        return Err(format!(
            "threshold must be > 0 and <= 100 (percent of one CPU), got {text}"
        ));
    }
    Ok(pct)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spin(args: &[&str]) -> Result<SpinOptions, clap::Error> {
        let cli = Cli::try_parse_from(["probe", "spin"].iter().chain(args))?;
        let Command::Spin(spin) = cli.command else {
            panic!("not spin");
        };
        Ok(SpinOptions::from(&spin))
    }

    fn record(args: &[&str]) -> Result<RecordOptions, String> {
        let cli = Cli::try_parse_from(["probe", "record"].iter().chain(args))
            .map_err(|err| err.to_string())?;
        let Command::Record(record) = cli.command else {
            panic!("not record");
        };
        RecordOptions::try_from(&record)
    }

    #[test]
    fn record_targets() {
        let options = record(&["-p", "9", "-p", "3", "-p", "9"]).unwrap();
        assert_eq!(options.target, RecordTarget::Pids(vec![3, 9]));
        assert_eq!(options.duration, None);
        assert_eq!(
            record(&["-a", "-d", "2"]).unwrap().target,
            RecordTarget::All
        );
        let command = record(&["-F", "49", "--", "sh", "-c", "exit 3"]).unwrap();
        assert_eq!(command.frequency_hz, 49);
        let argv: Vec<std::ffi::OsString> = ["sh", "-c", "exit 3"].map(Into::into).into();
        assert_eq!(command.target, RecordTarget::Command(argv));
        assert!(!command.self_stats);
        assert!(record(&["-a", "--self-stats"]).unwrap().self_stats);
    }

    #[test]
    fn record_needs_exactly_one_target() {
        assert!(record(&[]).unwrap_err().contains("say what to record"));
        assert!(record(&["-a", "-p", "3"]).is_err());
        assert!(record(&["-p", "3", "--", "true"]).is_err());
        assert!(record(&["-a", "--format", "jpeg"]).is_err());
    }

    #[test]
    fn defaults() {
        let options = spin(&[]).unwrap();
        assert_eq!(options.duration, Duration::from_secs(5));
        assert_eq!(options.threshold_pct, 90.0);
        assert_eq!(options.frequency_hz, 99);
        assert_eq!(options.top, 5);
        assert!(options.pids.is_empty());
        assert!(!options.json);
    }

    fn watch(args: &[&str]) -> Result<WatchOptions, clap::Error> {
        let cli = Cli::try_parse_from(["probe", "watch"].iter().chain(args))?;
        let Command::Watch(watch) = cli.command else {
            panic!("not watch");
        };
        Ok(WatchOptions::from(&watch))
    }

    #[test]
    fn watch_defaults_and_options() {
        let options = watch(&[]).unwrap();
        assert_eq!(options.threshold_pct, 90.0);
        assert_eq!(options.hold, Duration::from_secs(30));
        assert_eq!(options.sample, Duration::from_secs(5));
        assert_eq!(options.output, None);
        assert_eq!(options.format, EventFormat::Json);
        assert_eq!(options.duration, None);
        let options = watch(&[
            "--for", "2", "--sample", "1.5", "-o", "-", "--format", "text",
        ])
        .unwrap();
        assert_eq!(options.hold, Duration::from_secs(2));
        assert_eq!(options.sample, Duration::from_millis(1500));
        assert_eq!(options.output.as_deref(), Some(std::path::Path::new("-")));
        assert_eq!(options.format, EventFormat::Text);
        for bad in [
            &["--for", "0"][..],
            &["--sample", "-1"],
            &["--threshold", "200"],
            &["--format", "xml"],
            &["--listen", "localhost:9464"],
            &["--listen", "99999"],
            &["--profile-hz", "5000"],
        ] {
            assert!(watch(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn watch_listens_on_loopback_unless_told_otherwise() {
        let options = watch(&[]).unwrap();
        assert_eq!((options.listen, options.profile_hz), (None, 0));
        let options = watch(&["--listen", "9464"]).unwrap();
        assert_eq!(options.listen, Some("127.0.0.1:9464".parse().unwrap()));
        assert_eq!(options.profile_hz, 19, "profiles are on with --listen");
        let options = watch(&["--listen", "0.0.0.0:9464", "--profile-hz", "0"]).unwrap();
        assert_eq!(options.listen, Some("0.0.0.0:9464".parse().unwrap()));
        assert_eq!(options.profile_hz, 0);
        let options = watch(&["--listen", "[::1]:9464"]).unwrap();
        assert_eq!(options.listen, Some("[::1]:9464".parse().unwrap()));
    }

    #[test]
    fn pids_are_deduplicated() {
        let options = spin(&["-p", "7", "--pid", "3", "-p", "7"]).unwrap();
        assert_eq!(options.pids, vec![3, 7]);
    }

    #[test]
    fn rejects_out_of_range_values() {
        for bad in [
            &["-d", "0"][..],
            &["-d", "-1"],
            &["-d", "nan"],
            &["--threshold", "0"],
            &["--threshold", "101"],
            &["-F", "0"],
            &["--top", "0"],
            &["-p", "abc"],
        ] {
            assert!(spin(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
