//! Faults and odd situations: Ctrl-C, no privileges, an unwritable stdout or stderr, names
//! that are not UTF-8, a child PID namespace, too few file descriptors, /proc or /sys that
//! are not what they should be, and workloads whose binary the probe cannot reach by its
//! path (deleted, other mount namespace).

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::process::CommandExt as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use probe_tests::{
    number, probe_bin, probe_output, require_bpf, spin_json, spinning_thread, workload_path,
    ScratchDir, Workload,
};
use serde_json::Value;

/// Nobody's uid/gid: no capabilities at all.
const NOBODY: u32 = 65534;

fn loop_in_function(thread: &Value) -> &str {
    thread["loop_in"]["function"].as_str().unwrap_or_else(|| {
        panic!("no loop_in function: {thread:#}");
    })
}

#[test]
fn ctrl_c_ends_the_window_and_still_reports() {
    signal_ends_the_window_and_still_reports(libc::SIGINT, "Ctrl-C");
}

#[test]
fn sigterm_ends_the_window_and_says_so() {
    signal_ends_the_window_and_still_reports(libc::SIGTERM, "SIGTERM");
}

/// `signal` sent to probe mid-window: a partial report that names the signal.
fn signal_ends_the_window_and_still_reports(signal: libc::c_int, named: &str) {
    if !require_bpf() {
        return;
    }
    let spinner = Workload::start("spin_loop", &[]);
    let pid = spinner.pid.to_string();
    let started = Instant::now();
    let child = Command::new(probe_bin())
        .args(["spin", "--json", "-d", "60", "-p", &pid])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("failed to start probe");
    // Let the window run for a second once everything is attached (loading takes from
    // 0.1 s to seconds on a busy machine), so there is something to report.
    wait_until_attached(child.id());
    std::thread::sleep(Duration::from_secs(1));
    let probe_pid = libc::pid_t::try_from(child.id()).expect("pid fits pid_t");
    // SAFETY: kill has no memory-safety preconditions; the pid is our own unreaped child.
    unsafe { libc::kill(probe_pid, signal) };
    let output = child.wait_with_output().expect("failed to wait for probe");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "probe took {:?} after {named}",
        started.elapsed()
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_slice(&output.stdout).expect("report is JSON");
    assert_eq!(report["window"]["interrupted"], true, "{report:#}");
    assert_eq!(report["window"]["interrupted_by"], named, "{report:#}");
    let duration = number(&report["window"], "duration_secs");
    assert!((0.5..20.0).contains(&duration), "window {duration} s");
    let thread = spinning_thread(&report, spinner.tid);
    assert_eq!(loop_in_function(thread), "spin_inner");
}

/// Waits (bounded) until `pid` holds the BPF links of its three tracepoints: the window
/// opens right after they are attached, the last step of loading.
fn wait_until_attached(pid: u32) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while bpf_links(pid) < 3 {
        assert!(
            Instant::now() < deadline,
            "probe did not attach within 60 s"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn bpf_links(pid: u32) -> usize {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return 0;
    };
    fds.flatten()
        .filter(|fd| {
            std::fs::read_link(fd.path())
                .is_ok_and(|target| target.as_os_str() == "anon_inode:bpf_link")
        })
        .count()
}

#[test]
fn without_privileges_fails_with_one_line() {
    if !require_bpf() {
        return;
    }
    // A copy in a world-readable place: the checkout may sit where nobody cannot reach it.
    let scratch = ScratchDir::new("nobody");
    let probe = scratch.0.join("probe");
    std::fs::copy(probe_bin(), &probe).expect("copy probe");
    let mut command = Command::new(&probe);
    // std drops the supplementary groups when it changes the uid.
    command.args(["spin", "-d", "1"]).uid(NOBODY).gid(NOBODY);
    let output = command.output().expect("failed to start probe as nobody");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(output.stdout.is_empty());
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("root") && stderr.contains("CAP_BPF"),
        "{stderr}"
    );
}

#[test]
fn unwritable_stdout_is_an_error() {
    if !require_bpf() {
        return;
    }
    let full = std::fs::File::create("/dev/full").expect("/dev/full");
    let output = Command::new(probe_bin())
        .args(["spin", "-d", "0.5", "-p", "1"])
        .stdout(full)
        .output()
        .expect("failed to start probe");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("failed to write"), "{stderr}");
}

/// A scratch directory of this test's own, removed on drop.
#[test]
fn names_frames_of_a_deleted_binary() {
    if !require_bpf() {
        return;
    }
    let scratch = ScratchDir::new("deleted");
    let copy = scratch.0.join("spin_copy");
    std::fs::copy(workload_path("spin_loop"), &copy).expect("copy workload");
    let spinner = Workload::start_command("spin_copy", Command::new(&copy), copy.clone());
    std::fs::remove_file(&copy).expect("delete the running binary");
    let report = spin_json(&["-d", "2", "-p", &spinner.pid.to_string()]);
    let thread = spinning_thread(&report, spinner.tid);
    assert_eq!(loop_in_function(thread), "spin_inner", "{thread:#}");
}

#[test]
fn names_frames_in_another_mount_namespace() {
    if !require_bpf() {
        return;
    }
    // The binary lives on a tmpfs mounted only inside the workload's mount namespace: the
    // path in its maps names nothing (or something else) from probe's namespace.
    let scratch = ScratchDir::new("mntns");
    let source = workload_path("spin_loop");
    let inner = scratch.0.join("hidden");
    let script = format!(
        "mkdir -p {inner} && mount -t tmpfs tmpfs {inner} && cp {source} {inner}/spin_ns && exec {inner}/spin_ns",
        inner = inner.display(),
        source = source.display()
    );
    let mut command = Command::new("unshare");
    command.args(["--mount", "--propagation", "private", "sh", "-c", &script]);
    let spinner = Workload::start_command("spin_ns", command, inner.join("spin_ns"));
    assert!(
        !inner.join("spin_ns").exists(),
        "the binary is visible outside the namespace"
    );
    let report = spin_json(&["-d", "2", "-p", &spinner.pid.to_string()]);
    let thread = spinning_thread(&report, spinner.tid);
    assert_eq!(loop_in_function(thread), "spin_inner", "{thread:#}");
}

#[test]
fn reports_quickly_when_nothing_is_in_scope() {
    if !require_bpf() {
        return;
    }
    // An idle target: the report still comes, with nothing spinning, within the window
    // plus loading and symbolizing.
    let idle = Workload::start("idle_threads", &[]);
    let started = Instant::now();
    let output = probe_output(
        &["spin", "-d", "1", "-p", &idle.pid.to_string()],
        Duration::from_secs(1),
    );
    assert!(output.status.success());
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("nothing spins"));
}

/// A name that is not UTF-8 (a lone 0xff and 0xfe), as the kernel keeps it.
const NOT_UTF8: &[u8] = b"spin\xff\xfe";

#[test]
fn observes_a_process_whose_comm_and_argv_are_not_utf8() {
    if !require_bpf() {
        return;
    }
    let path = workload_path("spin_loop");
    let mut command = Command::new(&path);
    command
        .arg0(OsStr::from_bytes(NOT_UTF8))
        .args(["--invalid-utf8-comm".as_ref(), OsStr::from_bytes(NOT_UTF8)]);
    let spinner = Workload::start_command("spin_loop", command, path);
    let status = std::fs::read(format!("/proc/{}/status", spinner.pid)).expect("status");
    assert!(
        status.starts_with(b"Name:\tspin\xff\xfe\n"),
        "the workload did not rename itself"
    );
    let report = spin_json(&["-d", "1", "-p", &spinner.pid.to_string()]);
    let thread = spinning_thread(&report, spinner.tid);
    assert_eq!(thread["process_name"], "spin\u{fffd}\u{fffd}", "{thread:#}");
    assert_eq!(loop_in_function(thread), "spin_inner", "{thread:#}");
}

#[test]
fn runs_under_a_name_that_is_not_utf8() {
    if !require_bpf() {
        return;
    }
    // Its comm is the file name it was started by: a symlink's, here.
    let scratch = ScratchDir::new("badname");
    let link = scratch.0.join(OsStr::from_bytes(NOT_UTF8));
    std::os::unix::fs::symlink(probe_bin(), &link).expect("link probe");
    let spinner = Workload::start("spin_loop", &[]);
    let output = Command::new(&link)
        .args(["spin", "--json", "-d", "1", "-p", &spinner.pid.to_string()])
        .output()
        .expect("failed to start probe");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let report: Value = serde_json::from_slice(&output.stdout).expect("report is JSON");
    spinning_thread(&report, spinner.tid);
}

/// Runs `sh -c SCRIPT` where `"$0"` is the probe binary; asserts it failed with one line
/// on stderr and nothing on stdout; returns that line.
fn probe_fails_in_shell(script: &str) -> String {
    let output = Command::new("sh")
        .args(["-c", script])
        .arg(probe_bin())
        .stdin(Stdio::null())
        .output()
        .expect("failed to start sh");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!output.status.success(), "{script} succeeded:\n{stderr}");
    assert!(output.stdout.is_empty(), "{script} printed on stdout");
    assert_eq!(
        stderr.trim_end().lines().count(),
        1,
        "not one line:\n{stderr}"
    );
    stderr
}

#[test]
fn refuses_to_run_in_a_child_pid_namespace() {
    if !require_bpf() {
        return;
    }
    // With a /proc of the new namespace (NSpid then shows one pid) and without (two).
    for flags in ["--mount-proc", ""] {
        let script = format!("exec unshare --pid --fork {flags} \"$0\" spin -d 1");
        let stderr = probe_fails_in_shell(&script);
        assert!(stderr.contains("PID namespace"), "{flags}: {stderr}");
    }
}

#[test]
fn too_few_file_descriptors_say_so() {
    if !require_bpf() {
        return;
    }
    // 10 is refused before anything starts; 28 runs out while loading (34 are needed with
    // 2 CPUs).
    for (limit, says) in [(10, "the limit of open files"), (28, "too many open files")] {
        let stderr = probe_fails_in_shell(&format!("ulimit -n {limit} && exec \"$0\" spin -d 1"));
        assert!(stderr.contains(says), "ulimit -n {limit}: {stderr}");
        assert!(stderr.contains("ulimit -n"), "ulimit -n {limit}: {stderr}");
    }
}

#[test]
fn proc_that_is_not_procfs_is_named() {
    if !require_bpf() {
        return;
    }
    let script =
        "exec unshare --mount sh -c 'mount -t tmpfs none /proc && exec \"$0\" spin -d 1' \"$0\"";
    let stderr = probe_fails_in_shell(script);
    assert!(stderr.contains("/proc is not procfs"), "{stderr}");
    assert!(stderr.contains("tmpfs"), "{stderr}");
}

#[test]
fn sys_that_is_not_sysfs_is_named() {
    if !require_bpf() {
        return;
    }
    let script =
        "exec unshare --mount sh -c 'mount -t tmpfs none /sys && exec \"$0\" spin -d 1' \"$0\"";
    let stderr = probe_fails_in_shell(script);
    assert!(stderr.contains("sysfs is not mounted at /sys"), "{stderr}");
}

#[test]
fn unwritable_stderr_exits_quietly() {
    if !require_bpf() {
        return;
    }
    // An error that cannot be printed, and statistics that cannot be printed after a
    // report that can: 101 would be a panic (`eprintln!` panics when it cannot write).
    for (args, code) in [
        (&["-p", "999999999"][..], 1),
        (&["--self-stats", "-p", "1"][..], 0),
    ] {
        let full = std::fs::File::create("/dev/full").expect("/dev/full");
        let output = Command::new(probe_bin())
            .args(["spin", "-d", "1"])
            .args(args)
            .stderr(full)
            .output()
            .expect("failed to start probe");
        assert_eq!(
            output.status.code(),
            Some(code),
            "{args:?}: {}",
            output.status
        );
        assert_eq!(output.stdout.is_empty(), code != 0, "{args:?}");
    }
}
