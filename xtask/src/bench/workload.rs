//! Running a workload: a C workload straight to completion, the Python one started ahead of
//! its observer (py-spy needs its PID) and held until the observer had time to attach.

use std::{
    io::{BufRead as _, BufReader, Read as _},
    process::{Child, ChildStderr, Command, Output, Stdio},
};

use anyhow::{bail, Context as _, Result};

use super::parse::{parse_rate, Rate};

/// What a held workload writes on stderr once it waits for the go (see bench/py_loop.py).
const READY: &str = "ready";

/// Runs a workload to completion; returns its rate.
pub(super) fn run_to_end(command: &mut Command) -> Result<Rate> {
    let what = describe(command);
    let output = command
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("failed to run {what}"))?;
    rate_of(&what, &output, &String::from_utf8_lossy(&output.stderr))
}

/// A workload started with `--start-on-eof`: it has started up and waits, blocked on its
/// stdin, until `release` closes that. Dropping it unreleased kills it by PID.
pub(super) struct Held {
    what: String,
    /// `None` once released.
    child: Option<Child>,
    stderr: BufReader<ChildStderr>,
}

impl Held {
    /// Starts the workload and waits for its `ready` line.
    pub(super) fn start(command: &mut Command) -> Result<Self> {
        command.arg("--start-on-eof");
        let what = describe(command);
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("failed to start {what}"))?;
        let stderr = child
            .stderr
            .take()
            .with_context(|| format!("no stderr pipe to {what}"))?;
        let mut held = Self {
            what,
            child: Some(child),
            stderr: BufReader::new(stderr),
        };
        let mut line = String::new();
        held.stderr
            .read_line(&mut line)
            .with_context(|| format!("failed to read the stderr of {}", held.what))?;
        if line.trim() != READY {
            // It failed before it got going: its stderr says why.
            let mut rest = String::new();
            // Best effort: the first line alone is reason enough to fail.
            let _ = held.stderr.read_to_string(&mut rest);
            bail!(
                "{} did not start: {}",
                held.what,
                format!("{line}{rest}").trim()
            );
        }
        Ok(held)
    }

    pub(super) fn pid(&self) -> Result<libc::pid_t> {
        let child = self.child.as_ref().context("the workload was released")?;
        libc::pid_t::try_from(child.id()).context("workload PID out of range")
    }

    /// Lets the workload run (end of file on its stdin) and waits for its result.
    pub(super) fn release(mut self) -> Result<Rate> {
        let mut child = self.child.take().context("the workload was released")?;
        drop(child.stdin.take());
        // Its stderr is tiny (nothing, or a traceback), so reading stdout first cannot block.
        let output = child
            .wait_with_output()
            .with_context(|| format!("failed to wait for {}", self.what))?;
        let mut stderr = String::new();
        self.stderr
            .read_to_string(&mut stderr)
            .with_context(|| format!("failed to read the stderr of {}", self.what))?;
        rate_of(&self.what, &output, &stderr)
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Both act on our own unreaped child only; a failure leaves nothing to clean up.
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The rate in a finished workload's output, or why there is none.
fn rate_of(what: &str, output: &Output, stderr: &str) -> Result<Rate> {
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!("{what} failed ({}): {}", output.status, stderr.trim());
    }
    parse_rate(&stdout)
        .with_context(|| format!("unexpected output from {what}: {:?}", stdout.trim()))
}

/// The command line, for messages.
fn describe(command: &Command) -> String {
    std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(|arg| arg.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ")
}
