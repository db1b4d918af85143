//! The Debian package and its probe-watch unit (packaging/probe-watch.service).
//!
//! - The package `cargo xtask package` built (`cargo xtask test` passes its path in
//!   `PROBE_DEB`): its files and fields, its maintainer scripts never starting the service;
//!   installed with `dpkg -i`, the unit passes `systemd-analyze verify` (as installed, so
//!   its `ExecStart=/usr/bin/probe` exists) and is left disabled, the binary runs; `dpkg
//!   --purge` then leaves nothing behind, and runs even when a check fails. It refuses to
//!   start where a probe it did not install is in the way.
//! - The unit's privileges: probe run the way the unit runs it (its command line, a user
//!   of its own that is not root, exactly the unit's capabilities, no new privileges)
//!   against a workload of another user whose binary was deleted after it started, so
//!   each capability is needed; the report must name the workload's function.
//!
//! Root needed (dpkg, setpriv); outside CI a missing `PROBE_DEB` or tool skips, under
//! `CI=true` it fails. About 5 s.

use std::collections::BTreeSet;
use std::fs;
use std::io::{BufRead as _, BufReader};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use probe_tests::{probe_bin, require_bpf, workload_path, ScratchDir, Workload};
use serde_json::Value;

/// The unit, as the package installs it.
const INSTALLED_UNIT: &str = "/usr/lib/systemd/system/probe-watch.service";
const INSTALLED_PROBE: &str = "/usr/bin/probe";
/// Where a probe the test did not install would be in the way, or be replaced unseen
/// (dpkg overwrites files no package owns).
const MUST_BE_ABSENT: [&str; 3] = [
    INSTALLED_PROBE,
    INSTALLED_UNIT,
    "/lib/systemd/system/probe-watch.service",
];
/// What `deb-systemd-helper` leaves when a package is removed but not purged (a mask, and
/// its record of the mask and of links it made), which a purge must take away.
const SYSTEMD_HELPER_STATE: [&str; 3] = [
    "/etc/systemd/system/probe-watch.service",
    "/var/lib/systemd/deb-systemd-helper-masked/probe-watch.service",
    "/var/lib/systemd/deb-systemd-helper-enabled/probe-watch.service.dsh-also",
];
/// A user that is not root and owns nothing, as `DynamicUser=yes` allocates one (from
/// this range's start).
const SERVICE_UID: &str = "61184";
/// Another user's workload: `nobody`.
const WORKLOAD_UID: &str = "65534";
/// Longest wait for probe watch's spin event.
const EVENT_TIMEOUT: Duration = Duration::from_secs(40);

fn ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

/// `false` after saying why the test is skipped; under `CI=true`, a panic instead.
fn missing(what: &str) -> bool {
    assert!(!ci(), "CI=true but {what} (`cargo xtask test` sets it up)");
    eprintln!("skipping: {what} (`cargo xtask test` sets it up)");
    false
}

/// Whether every one of `programs` is on PATH.
fn have_programs(programs: &[&str]) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    programs.iter().all(|program| {
        std::env::split_paths(&path).any(|dir| dir.join(program).is_file())
            || missing(&format!("{program} is not on PATH"))
    })
}

/// The package under test, from `PROBE_DEB`.
fn package_under_test() -> Option<PathBuf> {
    match std::env::var_os("PROBE_DEB") {
        Some(path) => Some(PathBuf::from(path)),
        None => {
            missing("PROBE_DEB, the package `cargo xtask package` builds, is not set");
            None
        }
    }
}

fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("failed to start {program}: {e}"))
}

/// Stdout of `program args`; panics with its stderr unless it succeeds.
fn run_ok(program: &str, args: &[&str]) -> String {
    let output = run(program, args);
    assert!(
        output.status.success(),
        "{program} {args:?} failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// dpkg's state of package `probe` (`installed`, `config-files`, ...); `None` if dpkg
/// does not know it.
fn dpkg_status() -> Option<String> {
    let output = run("dpkg-query", &["-W", "-f=${db:Status-Status}", "probe"]);
    let status = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    (output.status.success() && !status.is_empty() && status != "not-installed").then_some(status)
}

/// Panics, saying what to do, if installing could overwrite a probe of someone else's
/// (or the leftover of an earlier run that was killed before it could clean up).
fn refuse_to_overwrite() {
    if let Some(status) = dpkg_status() {
        panic!(
            "a package named probe is already on this machine ({status}); this test installs \
             and purges its own, so it will not touch that one: remove it with \
             `dpkg --purge probe` if it is a leftover of this test"
        );
    }
    for path in MUST_BE_ABSENT {
        assert!(
            fs::symlink_metadata(path).is_err(),
            "{path} exists and is not from a probe package: this test installs the package \
             and would overwrite it; move it away first"
        );
    }
}

/// The package, installed; purged when dropped (a failed check included) unless
/// [`Installed::purge`] already did.
struct Installed {
    purged: bool,
}

impl Installed {
    fn install(deb: &Path) -> Self {
        let installed = Installed { purged: false };
        let deb = deb.to_str().expect("the package's path is UTF-8");
        run_ok("dpkg", &["-i", deb]);
        installed
    }

    fn purge(mut self) {
        self.purged = true;
        run_ok("dpkg", &["--purge", "probe"]);
    }
}

impl Drop for Installed {
    fn drop(&mut self) {
        if self.purged {
            return;
        }
        let output = run("dpkg", &["--purge", "probe"]);
        if !output.status.success() {
            eprintln!(
                "cleanup: `dpkg --purge probe` failed ({}):\n{}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            );
        }
    }
}

/// Mode and owner (`-rwxr-xr-x`, `0/0`) of `path` (`./usr/bin/probe`) in the listing of
/// `dpkg-deb --contents`.
fn mode_and_owner<'a>(contents: &'a str, path: &str) -> (&'a str, &'a str) {
    contents
        .lines()
        .map(|line| line.split_whitespace().collect::<Vec<_>>())
        .find(|fields| fields.last() == Some(&path))
        .map(|fields| (fields[0], fields[1]))
        .unwrap_or_else(|| panic!("{path} is not in the package:\n{contents}"))
}

fn check_contents(deb: &str) {
    let contents = run_ok("dpkg-deb", &["--contents", deb]);
    let root = |owner| ["0/0", "root/root"].contains(&owner);
    let (mode, owner) = mode_and_owner(&contents, &format!(".{INSTALLED_PROBE}"));
    assert!(mode == "-rwxr-xr-x" && root(owner), "probe: {mode} {owner}");
    let (mode, owner) = mode_and_owner(&contents, &format!(".{INSTALLED_UNIT}"));
    assert!(mode == "-rw-r--r--" && root(owner), "unit: {mode} {owner}");
    for line in contents.lines() {
        let path = line.split_whitespace().last().unwrap_or_default();
        // Nothing in /etc: no conffiles to leave behind, no unit enabled by a link.
        assert!(path.starts_with("./usr/"), "outside /usr: {line}");
    }
}

/// Control fields: the binary's architecture, a dependency on the C library (derived by
/// dpkg-shlibdeps), and no maintainer script that starts or restarts the service on a
/// fresh installation.
fn check_control(deb: &str, scratch: &ScratchDir) {
    let fields = run_ok(
        "dpkg-deb",
        &["--field", deb, "Package", "Architecture", "Depends"],
    );
    assert!(fields.contains("Package: probe\n"), "{fields}");
    let arch = run_ok("dpkg", &["--print-architecture"]);
    assert!(
        fields.contains(&format!("Architecture: {}", arch.trim())),
        "{fields}"
    );
    assert!(
        fields.contains("libc6"),
        "no dependency on libc6:\n{fields}"
    );
    let control = scratch.0.join("control");
    run_ok(
        "dpkg-deb",
        &["--control", deb, control.to_str().expect("UTF-8 path")],
    );
    let postinst = fs::read_to_string(control.join("postinst")).expect("a postinst");
    for starts in ["deb-systemd-invoke start", "systemctl start", "--now"] {
        assert!(
            !postinst.contains(starts),
            "postinst starts it:\n{postinst}"
        );
    }
    // Restarting is only for upgrades ($2, the old version, is set), and only if running.
    assert!(
        postinst.contains("[ -n \"$2\" ]") && postinst.contains("try-restart"),
        "{postinst}"
    );
}

/// `systemd-analyze verify` on the installed unit: no error, and nothing said about it.
fn check_unit_verifies() {
    let output = run("systemd-analyze", &["verify", INSTALLED_UNIT]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "systemd-analyze verify failed ({}):\n{stderr}",
        output.status
    );
    let about_it: Vec<&str> = stderr
        .lines()
        .filter(|line| line.contains("probe-watch"))
        .collect();
    assert!(about_it.is_empty(), "systemd-analyze verify:\n{stderr}");
}

/// Installed, not enabled, and (where systemd runs the machine) not started.
fn check_unit_left_off() {
    let enabled = run(
        "systemctl",
        &["--root=/", "is-enabled", "probe-watch.service"],
    );
    let state = String::from_utf8_lossy(&enabled.stdout);
    assert_eq!(state.trim(), "disabled", "is-enabled: {enabled:?}");
    if Path::new("/run/systemd/system").is_dir() {
        let active = run("systemctl", &["is-active", "probe-watch.service"]);
        let state = String::from_utf8_lossy(&active.stdout);
        assert_eq!(state.trim(), "inactive", "is-active: {active:?}");
    }
}

/// The installed binary runs, loads its programs and reports.
fn check_installed_probe() {
    let version = run_ok(INSTALLED_PROBE, &["--version"]);
    assert!(version.starts_with("probe "), "{version}");
    let report = run_ok(INSTALLED_PROBE, &["spin", "-d", "1", "--json"]);
    let report: Value = serde_json::from_str(&report)
        .unwrap_or_else(|e| panic!("probe spin printed invalid JSON ({e}):\n{report}"));
    assert_eq!(report["command"], "spin", "{report:#}");
}

fn check_nothing_left() {
    assert_eq!(dpkg_status(), None, "dpkg still knows probe");
    for path in MUST_BE_ABSENT.into_iter().chain(SYSTEMD_HELPER_STATE) {
        assert!(
            fs::symlink_metadata(path).is_err(),
            "{path} is left after the purge"
        );
    }
}

#[test]
fn the_package_installs_a_valid_disabled_unit_and_purges_cleanly() {
    if !require_bpf() {
        return;
    }
    let tools = [
        "dpkg",
        "dpkg-deb",
        "dpkg-query",
        "systemd-analyze",
        "systemctl",
    ];
    let Some(deb) = package_under_test().filter(|_| have_programs(&tools)) else {
        return;
    };
    let deb_str = deb.to_str().expect("the package's path is UTF-8");
    let scratch = ScratchDir::new("package");
    check_contents(deb_str);
    check_control(deb_str, &scratch);
    refuse_to_overwrite();

    let installed = Installed::install(&deb);
    let unit = fs::read_to_string(INSTALLED_UNIT).expect("the installed unit");
    assert_eq!(unit, repo_unit(), "the package's unit is not packaging/'s");
    check_unit_verifies();
    check_unit_left_off();
    check_installed_probe();
    installed.purge();
    check_nothing_left();
}

/// packaging/probe-watch.service.
fn repo_unit() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/probe-watch.service");
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// The values of `key=` in the unit's `[Service]` section (comments skipped, later
/// assignments appended, as systemd reads these keys).
fn unit_values(unit: &str, key: &str) -> Vec<String> {
    let mut section = "";
    let mut values = Vec::new();
    for line in unit.lines().map(str::trim) {
        if line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name;
        } else if let Some((name, value)) = line.split_once('=') {
            if section == "Service" && name.trim() == key {
                values.push(value.trim().to_owned());
            }
        }
    }
    values
}

/// The unit's capability set, as setpriv writes it: `-all,+bpf,+perfmon,...`. Its bounding
/// and ambient sets must be the same: the test gives probe exactly one set.
fn unit_capabilities(unit: &str) -> String {
    let set = |key| -> BTreeSet<String> {
        unit_values(unit, key)
            .iter()
            .flat_map(|value| value.split_whitespace())
            .map(|cap| cap.trim_start_matches("CAP_").to_ascii_lowercase())
            .collect()
    };
    let bounding = set("CapabilityBoundingSet");
    assert!(
        !bounding.is_empty(),
        "no CapabilityBoundingSet= in the unit"
    );
    assert_eq!(bounding, set("AmbientCapabilities"), "bounding != ambient");
    std::iter::once("-all".to_owned())
        .chain(bounding.iter().map(|cap| format!("+{cap}")))
        .collect::<Vec<_>>()
        .join(",")
}

/// A `probe watch` under setpriv; killed by PID if the test panics first.
struct Watch {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Watch {
    fn start(mut command: Command) -> Self {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("failed to start {command:?}: {e}"));
        let stdout = child.stdout.take().expect("stdout is piped");
        let (send, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        Watch { child, lines }
    }

    /// The first event `matches` accepts; panics with the events so far after
    /// [`EVENT_TIMEOUT`].
    fn wait_for(&self, what: &str, matches: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + EVENT_TIMEOUT;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match self.lines.recv_timeout(left) {
                Ok(line) => line,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    panic!("no {what} within {EVENT_TIMEOUT:?}; events:\n{seen:#?}")
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    panic!(
                        "probe watch ended before {what} (its stderr is above); events:\n{seen:#?}"
                    )
                }
            };
            let event: Value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("not a JSON event ({e}): {line}"));
            if matches(&event) {
                return event;
            }
            seen.push(event);
        }
    }

    fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid fits pid_t");
        // SAFETY: kill has no memory-safety preconditions; the pid is our unreaped child.
        unsafe { libc::kill(pid, signal) };
    }

    /// SIGTERM, as systemd stops the unit; panics unless probe then exits successfully.
    fn stop(mut self) {
        self.signal(libc::SIGTERM);
        let deadline = Instant::now() + EVENT_TIMEOUT;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait for probe watch") {
                break status;
            }
            assert!(Instant::now() < deadline, "probe watch ignored SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(status.success(), "probe watch exited with {status}");
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.signal(libc::SIGKILL);
            let _ = self.child.wait();
        }
    }
}

/// Copies `from` into `dir` (mode 0755), where the unprivileged users of the test can run
/// it whatever the permissions of the target directory.
fn copy_into(dir: &Path, from: &Path) -> PathBuf {
    let to = dir.join(from.file_name().expect("a file name"));
    fs::copy(from, &to).unwrap_or_else(|e| panic!("copy {}: {e}", from.display()));
    fs::set_permissions(&to, fs::Permissions::from_mode(0o755)).expect("chmod");
    to
}

#[test]
fn the_units_user_and_capabilities_name_a_deleted_binary_of_another_user() {
    if !require_bpf() || !have_programs(&["setpriv"]) {
        return;
    }
    let unit = repo_unit();
    let caps = unit_capabilities(&unit);
    assert_eq!(
        unit_values(&unit, "DynamicUser"),
        ["yes"],
        "not DynamicUser=yes"
    );
    assert_eq!(unit_values(&unit, "NoNewPrivileges"), ["yes"]);
    let exec_start = unit_values(&unit, "ExecStart");
    let [exec_start] = exec_start.as_slice() else {
        panic!("not one ExecStart=: {exec_start:?}");
    };
    let mut words = exec_start.split_whitespace();
    assert_eq!(words.next(), Some(INSTALLED_PROBE), "{exec_start}");
    let unit_args: Vec<&str> = words.collect();

    let scratch = ScratchDir::new("unit-caps");
    fs::set_permissions(&scratch.0, fs::Permissions::from_mode(0o755)).expect("chmod");
    let probe = copy_into(&scratch.0, &probe_bin());
    let spinner = copy_into(&scratch.0, &workload_path("spin_loop"));
    let mut as_nobody = Command::new("setpriv");
    as_nobody
        .args([
            &format!("--reuid={WORKLOAD_UID}"),
            &format!("--regid={WORKLOAD_UID}"),
            "--clear-groups",
        ])
        .arg(&spinner);
    let workload = Workload::start_command("spin_loop", as_nobody, spinner.clone());
    // Like an upgrade replacing it: only /proc/PID/map_files still reaches the file.
    fs::remove_file(&spinner).expect("delete the workload's binary");

    let mut command = Command::new("setpriv");
    command
        .args([
            &format!("--reuid={SERVICE_UID}"),
            &format!("--regid={SERVICE_UID}"),
            "--clear-groups",
            &format!("--inh-caps={caps}"),
            &format!("--ambient-caps={caps}"),
            &format!("--bounding-set={caps}"),
            "--no-new-privs",
        ])
        .arg(&probe)
        .args(&unit_args)
        .args(["--for", "1", "--sample", "1", "--threshold", "50"]);
    let watch = Watch::start(command);
    watch.wait_for("watch_start", |e| e["event"] == "watch_start");
    let spin = watch.wait_for("the workload's spin event", |e| {
        e["event"] == "spin" && e["episode"]["pid"] == workload.pid
    });
    watch.stop();
    let thread = spin["spinning"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|thread| thread["tid"] == workload.tid)
        .unwrap_or_else(|| panic!("the spinner is not in the spin event:\n{spin:#}"));
    assert_eq!(
        thread["loop_in"]["function"], "spin_inner",
        "caps {caps}: the loop is not named:\n{spin:#}"
    );
    drop(workload);
}
