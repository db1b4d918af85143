//! Building and running the C workloads in `workloads/`.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};

/// Compiler flags for every workload. Frame pointers everywhere, leaf functions included,
/// so a frame-pointer unwinder sees every function of the nested loops. (gcc 12 still
/// omits the frame of a leaf that needs no stack slot; `spin_loop.c` gives its leaf one.)
const CFLAGS: &[&str] = &[
    "-O1",
    "-g",
    "-fno-omit-frame-pointer",
    "-mno-omit-leaf-frame-pointer",
    "-pthread",
    "-Wall",
    "-Wextra",
    "-Werror",
];

/// Nice value of the workloads and of probe (see [`prioritize`]).
const TOP_NICE: libc::c_int = -20;

/// Where built workloads go: next to the test executable, so inside the target directory.
fn workload_out_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current test executable path");
    exe.parent()
        .expect("test executable has a parent directory")
        .join("probe-workloads")
}

/// Flags that take frame pointers away again when added after [`CFLAGS`] (gcc and clang
/// obey the last of `-f[no-]omit-frame-pointer`, `-m[no-]omit-leaf-frame-pointer` and
/// `-O<n>`): code only `.eh_frame` tables can unwind, at the optimization level distributions
/// build with.
pub const NO_FRAME_POINTERS: &[&str] =
    &["-O2", "-fomit-frame-pointer", "-momit-leaf-frame-pointer"];

/// Builds `workloads/<name>.c` once per test process and returns the executable's path.
pub fn workload_path(name: &str) -> PathBuf {
    workload_path_with(name, name, &[])
}

/// Builds `workloads/<source>.c` with [`CFLAGS`] followed by `extra` (which override them:
/// see [`NO_FRAME_POINTERS`]) into the executable `<out_name>`, once per test process, and
/// returns its path. `out_name` names the build: asking for it again with other flags
/// panics.
pub fn workload_path_with(source: &str, out_name: &str, extra: &[&str]) -> PathBuf {
    type Builds = HashMap<String, (String, Vec<String>, PathBuf)>;
    static BUILT: OnceLock<Mutex<Builds>> = OnceLock::new();
    let mut built = BUILT
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let flags: Vec<String> = extra.iter().map(|flag| flag.to_string()).collect();
    let (built_source, built_flags, path) = built.entry(out_name.to_owned()).or_insert_with(|| {
        let path = compile(source, out_name, extra);
        (source.to_owned(), flags.clone(), path)
    });
    assert!(
        *built_source == source && *built_flags == flags,
        "workload {out_name} was built from {built_source}.c with {built_flags:?}, \
         now wanted from {source}.c with {flags:?}"
    );
    path.clone()
}

/// Compiles `workloads/<source>.c` with [`CFLAGS`] and `extra` into `<out_name>` in the
/// workloads' directory. Built under a per-process name and renamed: test binaries running
/// at the same time never see a half-written file.
fn compile(source: &str, out_name: &str, extra: &[&str]) -> PathBuf {
    let source = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("workloads")
        .join(format!("{source}.c"));
    let dir = workload_out_dir();
    std::fs::create_dir_all(&dir)
        .unwrap_or_else(|e| panic!("failed to create {}: {e}", dir.display()));
    let out = dir.join(out_name);
    let tmp = dir.join(format!("{out_name}.{}.tmp", std::process::id()));
    let result = Command::new("cc")
        .args(CFLAGS)
        .args(extra)
        .arg("-o")
        .arg(&tmp)
        .arg(&source)
        .output()
        .unwrap_or_else(|e| panic!("failed to run cc for {}: {e}", source.display()));
    assert!(
        result.status.success(),
        "cc failed for {}:\n{}",
        source.display(),
        String::from_utf8_lossy(&result.stderr)
    );
    std::fs::rename(&tmp, &out)
        .unwrap_or_else(|e| panic!("failed to move {} into place: {e}", tmp.display()));
    out
}

/// Builds `workloads/<source>.c` as a shared library named `lib<name>.so` with the extra
/// compiler `flags` (defines); returns its path.
pub fn shared_library(source: &str, name: &str, flags: &[&str]) -> PathBuf {
    let extra: Vec<&str> = ["-shared", "-fPIC"]
        .into_iter()
        .chain(flags.iter().copied())
        .collect();
    compile(source, &format!("lib{name}.so"), &extra)
}

/// A running workload. Dropping it closes its stdin (its signal to exit), then kills it by
/// its own PID and reaps it, so no test leaves a workload behind.
pub struct Workload {
    child: Child,
    stdin: Option<ChildStdin>,
    /// Process id.
    pub pid: u32,
    /// Thread id of the workload's interesting thread.
    pub tid: u32,
    /// The executable's path.
    pub path: PathBuf,
}

impl Workload {
    /// Builds and starts workload `name` with `args`; returns once it reported ready.
    pub fn start(name: &str, args: &[&str]) -> Workload {
        let path = workload_path(name);
        let mut command = Command::new(&path);
        command.args(args);
        Workload::start_command(name, command, path)
    }

    /// Builds workload `source` with `extra` flags as `out_name` (see
    /// [`workload_path_with`]) and starts it with `args`; returns once it reported ready.
    pub fn start_with(source: &str, out_name: &str, extra: &[&str], args: &[&str]) -> Workload {
        let path = workload_path_with(source, out_name, extra);
        let mut command = Command::new(&path);
        command.args(args);
        Workload::start_command(out_name, command, path)
    }

    /// Starts `command`, which must end up exec'ing a workload in the same process (a
    /// copied binary, or a wrapper such as `unshare` that execs it), whose executable is
    /// `path`; returns once it reported ready.
    pub fn start_command(name: &str, mut command: Command, path: PathBuf) -> Workload {
        prioritize(&mut command);
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("failed to start {name} ({command:?}): {e}"));
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("workload stdout is piped");
        let mut workload = Workload {
            pid: child.id(),
            tid: 0,
            child,
            stdin,
            path,
        };
        // Built before parsing, so a panic below still ends the process through Drop.
        let line = read_ready_line(stdout, name);
        let (pid, tid) = parse_ready_line(&line)
            .unwrap_or_else(|| panic!("workload {name} printed a bad ready line: {line:?}"));
        assert_eq!(pid, workload.pid, "workload {name} reported another pid");
        workload.tid = tid;
        workload
    }

    /// The executable's file name, as `comm` and argv[0] show it.
    pub fn file_name(&self) -> &str {
        self.path
            .file_name()
            .and_then(OsStr::to_str)
            .expect("workload names are UTF-8")
    }
}

impl Drop for Workload {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let pid = libc::pid_t::try_from(self.pid).expect("pid fits pid_t");
        // SAFETY: kill has no memory-safety preconditions. The pid is our own unreaped
        // child, so it cannot have been reused by another process.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

/// Makes the process `command` starts win the CPU against everything else on a shared
/// machine (parallel builds, other test suites), so a spinning workload gets a whole CPU
/// and its reported share is about probe's accounting, not the scheduler. Probe gets the
/// same, so the workloads cannot starve it either (two spinners on two CPUs would leave it
/// ~1% of a CPU). With `kernel.sched_autogroup_enabled`, nice values only compete inside
/// one autogroup, so the process also gets a session of its own, hence its own autogroup,
/// and raises that autogroup's nice too; where autogroups are off that write just fails.
pub(crate) fn prioritize(command: &mut Command) {
    // SAFETY: the closure runs in the forked child before exec and only makes
    // async-signal-safe system calls (no allocation, no locks).
    unsafe {
        command.pre_exec(|| {
            libc::setsid();
            let fd = libc::open(c"/proc/self/autogroup".as_ptr(), libc::O_WRONLY);
            if fd >= 0 {
                let nice = b"-20";
                libc::write(fd, nice.as_ptr().cast(), nice.len());
                libc::close(fd);
            }
            if libc::setpriority(libc::PRIO_PROCESS, 0, TOP_NICE) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    };
}

fn read_ready_line(stdout: impl Read, name: &str) -> String {
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .unwrap_or_else(|e| panic!("failed to read the ready line of {name}: {e}"));
    assert!(
        !line.is_empty(),
        "workload {name} exited before it was ready"
    );
    line
}

/// Parses `ready pid=<pid> tid=<tid>`.
fn parse_ready_line(line: &str) -> Option<(u32, u32)> {
    let rest = line.trim_end().strip_prefix("ready pid=")?;
    let (pid, tid) = rest.split_once(" tid=")?;
    Some((pid.parse().ok()?, tid.parse().ok()?))
}

/// A directory of this test process under the temp dir, removed when dropped.
pub struct ScratchDir(pub PathBuf);

impl ScratchDir {
    pub fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("probe-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create scratch dir");
        Self(dir)
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ready_line() {
        assert_eq!(parse_ready_line("ready pid=12 tid=34\n"), Some((12, 34)));
        assert_eq!(parse_ready_line("ready pid=12\n"), None);
        assert_eq!(parse_ready_line("hello\n"), None);
    }
}
