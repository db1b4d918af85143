//! `cargo xtask`: the project's entry points. It orchestrates (toolchain setup, the README's
//! run and test commands, lint, bench); the build itself stays a plain `cargo build`.

mod bench;
mod package;
mod peers;
mod setup;

use std::{
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Command, ExitCode, Stdio},
};

use anyhow::{bail, Context as _, Result};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "xtask", about = "probe's setup, run, test and bench commands")]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install the kernel-side toolchain when it is missing (idempotent; needs root for apt).
    Setup,
    /// Set up, build (release) and run `probe spin` on this machine; extra arguments go to
    /// `probe spin`, e.g. `cargo xtask spin -- -d 10 --json`.
    Spin {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Set up, then run every check: rustfmt, clippy, unit tests and the integration tests
    /// (real eBPF, real workloads; root needed, and required when CI=true).
    Test,
    /// rustfmt --check and clippy -D warnings (user side and eBPF side).
    Lint,
    /// Measure probe's overhead next to bpftrace, perf record, strace and py-spy (root;
    /// ~12 min with the defaults); prints a markdown table and writes
    /// target/bench/results.md.
    Bench {
        /// Interleaved rounds; each runs every workload under each of its observers once.
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=1000))]
        rounds: u64,
        /// Seconds each workload run lasts.
        #[arg(long, default_value_t = 3.0)]
        secs: f64,
        /// Instead of the bench: one `probe record -a -F 99` of MINUTES with both CPUs busy,
        /// its RSS sampled every 5 s (peak, and growth first minute to last); writes
        /// target/bench/record-soak.md.
        #[arg(long, value_name = "MINUTES", conflicts_with_all = ["rounds", "secs"])]
        record_soak: Option<f64>,
    },
    /// Build probe in release and its Debian package (cargo-deb): the binary and the
    /// probe-watch systemd unit, installed neither enabled nor started. Prints the path of
    /// the .deb (target/debian/probe_<version>_<arch>.deb).
    Package,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Task::Setup => setup::ensure_toolchain(),
        Task::Spin { args } => spin(&args),
        Task::Test => test(),
        Task::Lint => setup::ensure_toolchain().and_then(|()| lint()),
        Task::Bench {
            record_soak: Some(minutes),
            ..
        } => bench::record_soak(minutes),
        Task::Bench { rounds, secs, .. } => bench::run(&bench::Options {
            rounds: rounds as usize,
            secs,
        }),
        Task::Package => package::build().map(|deb| println!("{}", deb.display())),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// The workspace root (xtask lives one level below it).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Runs a command in the workspace root, failing with the command line on a non-zero exit.
pub fn run(command: &mut Command) -> Result<()> {
    let status = command
        .current_dir(workspace_root())
        .status()
        .with_context(|| format!("failed to start {command:?}"))?;
    if !status.success() {
        bail!("{command:?} failed ({status})");
    }
    Ok(())
}

pub(crate) fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

/// [`run`] with the command's stdout sent to our stderr: for the steps before a command
/// whose stdout is its result (`spin -- --json`, bench's table), which must hold only that.
pub fn run_to_stderr(command: &mut Command) -> Result<()> {
    run(command.stdout(std::io::stderr()))
}

/// Sets up the toolchain and builds `probe` in release; returns its path.
pub fn build_release_probe() -> Result<PathBuf> {
    setup::ensure_toolchain()?;
    run_to_stderr(cargo().args([
        "build",
        "--release",
        "--package",
        "probe-user",
        "--bin",
        "probe",
    ]))?;
    Ok(workspace_root().join("target/release/probe"))
}

fn spin(args: &[String]) -> Result<()> {
    let probe = build_release_probe()?;
    let status = Command::new(&probe)
        .arg("spin")
        .args(args)
        .status()
        .with_context(|| format!("failed to start {}", probe.display()))?;
    if !status.success() {
        // probe already printed its one-line error.
        std::process::exit(status.code().unwrap_or(1));
    }
    Ok(())
}

fn lint() -> Result<()> {
    run(cargo().args(["fmt", "--all", "--", "--check"]))?;
    run(cargo().args([
        "clippy",
        "--workspace",
        "--exclude",
        "probe-ebpf",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    // The kernel programs, checked as host code: clippy cannot run on the BPF target's
    // Debian compiler, and the code is the same. No unwinding on the host either (the crate
    // has its own panic handler), and a target directory of its own keeps these flags
    // from rebuilding the rest.
    let target_dir = workspace_root().join("target/lint-ebpf");
    let mut ebpf = cargo();
    ebpf.env("RUSTFLAGS", "-C panic=abort")
        .args(["clippy", "--package", "probe-ebpf", "--target-dir"])
        .arg(&target_dir)
        .args(["--", "-D", "warnings"]);
    run(&mut ebpf)?;
    Ok(())
}

fn test() -> Result<()> {
    setup::ensure_toolchain()?;
    lint()?;
    let mut tally = Tally::default();
    // Unit tests: no root needed (default members leave out the eBPF crate and the
    // integration tests).
    tally.run(cargo().args(["test"]))?;
    run(cargo().args(["build", "--package", "probe-user", "--bin", "probe"]))?;
    let probe = workspace_root().join("target/debug/probe");
    // tests/tests/package.rs installs and removes it.
    let deb = package::build()?;
    peers::install()?;
    // The integration tests share the machine's two CPUs: one at a time, so a spinning
    // workload gets its CPU and the thresholds mean what they say.
    let integration = tally.run(
        cargo()
            .args([
                "test",
                "--no-fail-fast",
                "--package",
                "probe-tests",
                "--tests",
            ])
            .args(["--", "--test-threads=1"])
            .env("PROBE_BIN", probe)
            .env("PROBE_DEB", deb),
    );
    // One closing line for the whole run, whatever failed.
    println!(
        "xtask test: {} passed, {} failed",
        tally.passed, tally.failed
    );
    integration
}

/// Test counts summed over several `cargo test` runs, read from their "test result:" lines.
#[derive(Default)]
struct Tally {
    passed: u64,
    failed: u64,
}

impl Tally {
    /// Runs `command` (a `cargo test`), echoing its stdout and counting its results.
    fn run(&mut self, command: &mut Command) -> Result<()> {
        let mut child = command
            .current_dir(workspace_root())
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("failed to start {command:?}"))?;
        if let Some(stdout) = child.stdout.take() {
            for line in BufReader::new(stdout).lines() {
                let line = line.context("failed to read the test output")?;
                println!("{line}");
                self.count(&line);
            }
        }
        let status = child
            .wait()
            .with_context(|| format!("failed to wait for {command:?}"))?;
        if !status.success() {
            bail!("{command:?} failed ({status})");
        }
        Ok(())
    }

    /// Adds the counts of a line like `test result: ok. 12 passed; 1 failed; 0 ignored; ...`.
    fn count(&mut self, line: &str) {
        let Some(rest) = line.strip_prefix("test result: ") else {
            return;
        };
        for part in rest.split(';') {
            let mut words = part.split_whitespace().rev();
            let (Some(kind), Some(number)) = (words.next(), words.next()) else {
                continue;
            };
            let Ok(number) = number.parse::<u64>() else {
                continue;
            };
            match kind {
                "passed" => self.passed += number,
                "failed" => self.failed += number,
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::{run_to_stderr, Tally};

    /// Set in the copy of this test binary that runs a step with separate stdout and
    /// stderr pipes.
    const STEP_CHILD: &str = "XTASK_TEST_STEP_CHILD";

    #[test]
    fn steps_before_a_report_print_nothing_on_stdout() {
        if std::env::var_os(STEP_CHILD).is_some() {
            run_to_stderr(Command::new("echo").arg("step output")).unwrap();
            return;
        }
        let exe = std::env::current_exe().unwrap();
        let output = Command::new(exe)
            .args([
                "--exact",
                "tests::steps_before_a_report_print_nothing_on_stdout",
            ])
            .args(["--nocapture", "--test-threads=1"])
            .env(STEP_CHILD, "1")
            .output()
            .unwrap();
        let (stdout, stderr) = (
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
        );
        assert!(output.status.success(), "{stdout}\n{stderr}");
        assert!(
            stdout.contains("1 passed"),
            "the step did not run:\n{stdout}"
        );
        assert!(!stdout.contains("step output"), "on stdout:\n{stdout}");
        assert!(stderr.contains("step output"), "not on stderr:\n{stderr}");
    }

    #[test]
    fn tally_reads_cargo_test_result_lines() {
        let mut tally = Tally::default();
        tally.count("test result: ok. 12 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 1.5s");
        tally.count(
            "test result: FAILED. 5 passed; 2 failed; 0 ignored; 0 measured; 0 filtered out",
        );
        tally.count("test something ... ok");
        assert_eq!((tally.passed, tally.failed), (17, 2));
    }
}
