//! Running the probe binary under test.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

use crate::workload::prioritize;

/// How long probe may take beyond its window (loading, symbolizing) before a test gives up
/// on it instead of hanging the suite.
const PROBE_GRACE: Duration = Duration::from_secs(60);

/// The probe binary under test: `$PROBE_BIN`, else `<workspace>/target/debug/probe`.
pub fn probe_bin() -> PathBuf {
    match std::env::var_os("PROBE_BIN") {
        Some(path) => PathBuf::from(path),
        None => workspace_dir().join("target/debug/probe"),
    }
}

fn workspace_dir() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .parent()
        .expect("tests crate lives inside the workspace")
        .to_path_buf()
}

/// Runs probe with `args` (see [`prioritize`]) and returns whatever it produced, success or
/// not. Panics if it cannot be started or runs `PROBE_GRACE` past `window` (then it is
/// killed by PID).
pub fn probe_output(args: &[&str], window: Duration) -> Output {
    probe_output_with(args, window, |_| {})
}

/// [`probe_output`] with the command adjusted by `configure` first (its environment, its
/// working directory).
pub fn probe_output_with(
    args: &[&str],
    window: Duration,
    configure: impl FnOnce(&mut Command),
) -> Output {
    let bin = probe_bin();
    let mut command = Command::new(&bin);
    prioritize(&mut command);
    configure(&mut command);
    let child = command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "failed to start {} (build it with `cargo build -p probe-user` or set PROBE_BIN): {e}",
                bin.display()
            )
        });
    let pid = child.id();
    let (done, result) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(child.wait_with_output());
    });
    match result.recv_timeout(window + PROBE_GRACE) {
        Ok(output) => output.unwrap_or_else(|e| panic!("failed to wait for probe: {e}")),
        Err(_) => {
            let threads = describe_threads(pid);
            let pid = libc::pid_t::try_from(pid).expect("pid fits pid_t");
            // SAFETY: kill has no memory-safety preconditions; the pid is our own child,
            // still unreaped because its waiting thread has not returned.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            let stderr = match result.recv_timeout(Duration::from_secs(10)) {
                Ok(Ok(output)) => String::from_utf8_lossy(&output.stderr).into_owned(),
                _ => "(not collected)".to_owned(),
            };
            panic!(
                "probe {args:?} did not finish within {window:?} + {PROBE_GRACE:?}; \
                 its threads when killed:\n{threads}stderr:\n{stderr}"
            );
        }
    }
}

/// State, wait channel and kernel stack of each thread of `pid`, to tell a hang from
/// slowness when probe overruns.
fn describe_threads(pid: u32) -> String {
    let task_dir = format!("/proc/{pid}/task");
    let Ok(tasks) = std::fs::read_dir(&task_dir) else {
        return format!("(cannot read {task_dir})\n");
    };
    let read = |path: std::path::PathBuf| std::fs::read_to_string(path).unwrap_or_default();
    let mut out = String::new();
    for task in tasks.flatten() {
        let dir = task.path();
        let stat = read(dir.join("stat"));
        // The state follows the parenthesized comm, which may contain spaces.
        let state = stat
            .rsplit_once(") ")
            .and_then(|(_, rest)| rest.get(..1))
            .unwrap_or("?");
        out += &format!(
            "{} {} state={state} wchan={}\n{}",
            task.file_name().to_string_lossy(),
            read(dir.join("comm")).trim_end(),
            read(dir.join("wchan")),
            read(dir.join("stack")),
        );
    }
    out
}

/// Runs probe with `args`; panics, showing its stderr, unless it succeeds. The window is
/// taken from `-d` (default 5 s) to bound the wait.
pub fn run_probe(args: &[&str]) -> Output {
    let output = probe_output(args, window_of(args));
    assert!(
        output.status.success(),
        "probe {args:?} failed ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// Runs `probe spin --json <args>` and returns its report.
pub fn spin_json(args: &[&str]) -> Value {
    let mut full = vec!["spin", "--json"];
    full.extend_from_slice(args);
    let output = run_probe(&full);
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "probe {full:?} printed invalid JSON ({e}):\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

fn window_of(args: &[&str]) -> Duration {
    let secs = args
        .iter()
        .position(|arg| *arg == "-d")
        .and_then(|i| args.get(i + 1))
        .and_then(|secs| secs.parse().ok())
        .unwrap_or(5);
    Duration::from_secs(secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_from_args() {
        assert_eq!(window_of(&["spin", "-d", "3"]), Duration::from_secs(3));
        assert_eq!(window_of(&["spin"]), Duration::from_secs(5));
    }
}
