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
    Spin(SpinArgs),
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
            self_stats: args.self_stats,
            dump_python_frames: args.dump_python_frames.clone(),
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
        let Command::Spin(spin) = cli.command;
        Ok(SpinOptions::from(&spin))
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
