//! `probe watch` against real workloads: a thread that starts spinning after watch started
//! gets one spin event (its report naming the loop) and one end event with its duration;
//! idle and briefly hot threads get nothing; SIGTERM mid-episode still reports what was
//! sampled; SIGHUP after a rotation moves the events to the new file; an output that
//! cannot be written is refused before anything is attached.

use std::fs;
use std::io::Read as _;
use std::net::{SocketAddr, TcpListener};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use probe_tests::{
    all_threads, check_thread, free_port, http_get, number, pprof_top, pprof_top_source, probe_bin,
    probe_output, prometheus, require_bpf, require_interpreter, start_python, ScratchDir, Workload,
};
use serde_json::Value;

/// Longest wait for an event; watch's own timings are seconds.
const EVENT_TIMEOUT: Duration = Duration::from_secs(30);

/// A `probe watch` we started, writing JSON events to a file; killed by PID if a test
/// panics first.
struct Watching {
    child: Child,
    events: PathBuf,
}

impl Watching {
    fn start(events: &Path, args: &[&str]) -> Self {
        let child = Command::new(probe_bin())
            .args(["watch", "--format", "json", "-o"])
            .arg(events)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start probe watch");
        let watching = Self {
            child,
            events: events.to_owned(),
        };
        watching.wait_for("the watch_start event", |e| e["event"] == "watch_start");
        watching
    }

    fn pid(&self) -> libc::pid_t {
        libc::pid_t::try_from(self.child.id()).expect("pid fits pid_t")
    }

    /// Waits for the first event `matches` accepts; panics with every event so far after
    /// [`EVENT_TIMEOUT`].
    fn wait_for(&self, what: &str, matches: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + EVENT_TIMEOUT;
        loop {
            let events = read_events(&self.events);
            if let Some(event) = events.iter().find(|e| matches(e)) {
                return event.clone();
            }
            assert!(
                Instant::now() < deadline,
                "no {what} within {EVENT_TIMEOUT:?}; events:\n{events:#?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn signal(&self, signal: libc::c_int) {
        // SAFETY: kill has no memory-safety preconditions; the pid is our unreaped child.
        unsafe { libc::kill(self.pid(), signal) };
    }

    /// SIGTERM, then its exit status and stderr.
    fn stop(mut self) -> (ExitStatus, String) {
        self.signal(libc::SIGTERM);
        let deadline = Instant::now() + EVENT_TIMEOUT;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait for probe watch") {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "probe watch did not stop on SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        let mut stderr = String::new();
        if let Some(mut pipe) = self.child.stderr.take() {
            let _ = pipe.read_to_string(&mut stderr);
        }
        (status, stderr)
    }
}

impl Drop for Watching {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.signal(libc::SIGKILL);
            let _ = self.child.wait();
        }
    }
}

/// Every event in `path`, in order; each line must be one whole JSON object.
fn read_events(path: &Path) -> Vec<Value> {
    let text = fs::read_to_string(path).unwrap_or_default();
    // A line still being written has no newline yet: only whole lines count.
    let whole = match text.rfind('\n') {
        Some(end) => &text[..=end],
        None => "",
    };
    whole
        .lines()
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON event ({e}): {line}"))
        })
        .collect()
}

fn of_pid(events: &[Value], pid: u32) -> Vec<&Value> {
    events
        .iter()
        .filter(|e| e["episode"]["pid"] == pid)
        .collect()
}

/// The thread the spin event reports.
fn reported_thread(spin: &Value, tid: u32) -> &Value {
    ["spinning", "busiest"]
        .iter()
        .flat_map(|list| spin[list].as_array().into_iter().flatten())
        .find(|thread| thread["tid"] == tid)
        .unwrap_or_else(|| panic!("thread {tid} not in the spin event:\n{spin:#}"))
}

#[test]
fn a_thread_that_starts_spinning_gets_one_episode_and_idle_ones_none() {
    if !require_bpf() {
        return;
    }
    let dir = ScratchDir::new("watch-episode");
    let events = dir.0.join("events.jsonl");
    let watch = Watching::start(
        &events,
        &["--for", "2", "--sample", "1", "--heartbeat", "2"],
    );
    let mode = fs::metadata(&events)
        .expect("events file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "events hold command lines: private");
    // Spins 6 s from 0.5 s after it is ready; hot for 1 s of a 2 s hold; never hot.
    let late = Workload::start("late_spin", &["500", "6000"]);
    let spinning_from = Instant::now() + Duration::from_millis(500);
    let brief = Workload::start("late_spin", &["0", "1000"]);
    let idle = Workload::start("late_spin", &["1000000", "0"]);
    // The latency target: the event within --for + --sample + 1 s of the spin's
    // start (the file is polled every 0.1 s).
    watch.wait_for("the late spinner's spin event", |e| {
        e["event"] == "spin" && e["episode"]["pid"] == late.pid
    });
    let latency = Instant::now().saturating_duration_since(spinning_from);
    assert!(
        latency <= Duration::from_millis(2_000 + 1_000 + 1_000 + 100),
        "the spin event came {latency:?} after the spin began"
    );
    let end = watch.wait_for("the late spinner's episode_end", |e| {
        e["event"] == "episode_end" && e["episode"]["pid"] == late.pid
    });
    watch.wait_for("a heartbeat", |e| e["event"] == "heartbeat");
    let (status, stderr) = watch.stop();
    assert!(status.success(), "probe watch failed ({status}):\n{stderr}");
    let all = read_events(&events);

    let late_events = of_pid(&all, late.pid);
    let kinds: Vec<&Value> = late_events.iter().map(|e| &e["event"]).collect();
    assert_eq!(kinds, ["spin", "episode_end"], "{all:#?}");
    let spin = late_events[0];
    // The schema of `probe spin --json`, every thread checked as its tests check them.
    assert_eq!(spin["schema_version"], 2, "the spin report's schema");
    assert_eq!(spin["command"], "spin");
    for thread in all_threads(spin) {
        check_thread(thread);
    }
    assert_eq!(spin["episode"]["tid"], late.tid);
    assert_eq!(spin["episode"]["id"], end["episode"]["id"]);
    let thread = reported_thread(spin, late.tid);
    assert_eq!(
        thread["loop_in"]["function"], "late_spin_loop",
        "{thread:#}"
    );
    assert!(number(&spin["window"], "duration_secs") >= 1.0, "{spin:#}");
    assert_eq!(end["episode"]["cause"], "cooled", "{end:#}");
    assert_eq!(end["episode"]["thread"], "late");
    let duration = number(&end["episode"], "duration_secs");
    // 6 s of spinning, seen at 0.5 s ticks.
    assert!((4.5..=7.5).contains(&duration), "{end:#}");

    for quiet in [&brief, &idle] {
        assert!(
            of_pid(&all, quiet.pid).is_empty(),
            "pid {}: {all:#?}",
            quiet.pid
        );
    }
    let heartbeat = all
        .iter()
        .find(|e| e["event"] == "heartbeat")
        .expect("heartbeat");
    assert!(number(heartbeat, "thread_map_entries") <= number(heartbeat, "thread_map_capacity"));
    for key in ["samples_lost", "events_lost", "cpu_secs", "rss_kib"] {
        assert!(heartbeat[key].is_number(), "{key}: {heartbeat:#}");
    }
    let last = all.last().expect("events");
    assert_eq!(
        (&last["event"], &last["stopped_by"]),
        (&Value::from("watch_stop"), &Value::from("SIGTERM"))
    );
    for key in ["uptime_secs", "cpu_secs", "rss_kib"] {
        assert!(last[key].is_number(), "{key}: {last:#}");
    }
    // Without --listen probe does not ask the kernel to count run time; unless the machine
    // does, no costs are claimed.
    let counted = fs::read_to_string("/proc/sys/kernel/bpf_stats_enabled")
        .is_ok_and(|enabled| enabled.trim() == "1");
    assert_eq!(last["kernel_programs"].is_array(), counted, "{last:#}");
}

#[test]
fn sigterm_mid_episode_reports_what_was_sampled_and_sighup_follows_a_rotation() {
    if !require_bpf() {
        return;
    }
    let dir = ScratchDir::new("watch-sigterm");
    let events = dir.0.join("events.jsonl");
    let watch = Watching::start(
        &events,
        &["--for", "1", "--sample", "60", "--heartbeat", "0.5"],
    );
    let spinner = Workload::start("late_spin", &["0", "120000"]);
    // Sampling, and for long enough to have samples.
    watch.wait_for("a heartbeat while sampling", |e| {
        e["event"] == "heartbeat" && e["sampling"] == true
    });
    std::thread::sleep(Duration::from_secs(1));
    // logrotate's move, then the signal that makes probe open the file again.
    let rotated = dir.0.join("events.jsonl.1");
    fs::rename(&events, &rotated).expect("rotate");
    watch.signal(libc::SIGHUP);
    watch.wait_for("a heartbeat in the new file", |e| e["event"] == "heartbeat");
    let (status, stderr) = watch.stop();
    assert!(status.success(), "probe watch failed ({status}):\n{stderr}");

    let before = read_events(&rotated);
    let after = read_events(&events);
    assert_eq!(before[0]["event"], "watch_start");
    let mode = fs::metadata(&events)
        .expect("reopened file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let spins: Vec<&Value> = after.iter().filter(|e| e["event"] == "spin").collect();
    assert_eq!(spins.len(), 1, "{after:#?}");
    let spin = spins[0];
    assert_eq!(spin["episode"]["pid"], spinner.pid);
    assert_eq!(spin["window"]["interrupted"], true, "{spin:#}");
    assert_eq!(spin["window"]["interrupted_by"], "SIGTERM", "{spin:#}");
    let thread = reported_thread(spin, spinner.tid);
    assert_eq!(
        thread["loop_in"]["function"], "late_spin_loop",
        "{thread:#}"
    );
    let end = after
        .iter()
        .find(|e| e["event"] == "episode_end")
        .expect("episode_end");
    assert_eq!(end["episode"]["cause"], "stopped");
    assert_eq!(after.last().expect("events")["event"], "watch_stop");
}

#[test]
fn a_python_spinner_episode_names_its_python_function() {
    if !require_bpf() {
        return;
    }
    let Some(python) = require_interpreter(12) else {
        return;
    };
    let dir = ScratchDir::new("watch-python");
    let events = dir.0.join("events.jsonl");
    let watch = Watching::start(&events, &["--for", "1", "--sample", "1"]);
    let spinner = start_python(&python, "py_spin.py", &[]);
    let spin = watch.wait_for("the Python spinner's spin event", |e| {
        e["event"] == "spin" && e["episode"]["pid"] == spinner.pid
    });
    let (status, stderr) = watch.stop();
    assert!(status.success(), "probe watch failed ({status}):\n{stderr}");
    let thread = reported_thread(&spin, spinner.tid);
    assert_eq!(thread["python_thread_name"], "py-spinner", "{thread:#}");
    assert_eq!(thread["loop_in"]["function"], "inner", "{thread:#}");
    assert_eq!(thread["loop_in"]["kind"], "python", "{thread:#}");
}

#[test]
fn an_output_that_cannot_be_written_is_refused_before_watching() {
    if !require_bpf() {
        return;
    }
    let output = probe_output(
        &["watch", "-d", "1", "-o", "/proc/version/events.jsonl"],
        Duration::from_secs(1),
    );
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(
        lines[0].starts_with("probe: error: ") && lines[0].contains("/proc/version/events.jsonl"),
        "{stderr}"
    );
}

#[test]
fn text_events_say_what_watch_does_and_why_it_stopped() {
    if !require_bpf() {
        return;
    }
    let output = probe_output(
        &["watch", "--format", "text", "-d", "1"],
        Duration::from_secs(1),
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(
        lines
            .first()
            .is_some_and(|l| l.contains("watching: threads at >= 90% of a CPU for 30 s")),
        "{stdout}"
    );
    assert!(
        lines
            .last()
            .is_some_and(|l| l.ends_with("stopped by --duration")),
        "{stdout}"
    );
}

/// The loopback address of `port`.
fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

#[test]
fn continuous_profiles_are_pprof_files_that_go_tool_pprof_reads() {
    if !require_bpf() {
        return;
    }
    let dir = ScratchDir::new("watch-pprof");
    let events = dir.0.join("events.jsonl");
    let port = free_port();
    let watch = Watching::start(&events, &["--listen", &port.to_string()]);
    let spinner = Workload::start("late_spin", &["0", "60000"]);
    let addr = loopback(port);
    let short = Duration::from_secs(10);
    for (path, status) in [
        ("/debug/pprof/profile?seconds=0", 400),
        ("/debug/pprof/profile?seconds=abc", 400),
        ("/nothing/here", 404),
    ] {
        let response = http_get(addr, path, short).expect("probe watch answers");
        assert_eq!(response.status, status, "{path}: {}", response.text());
    }
    // Go's convention: the request takes its seconds, then the profile of them comes.
    let started = Instant::now();
    let response =
        http_get(addr, "/debug/pprof/profile?seconds=3", EVENT_TIMEOUT).expect("a profile");
    assert_eq!(response.status, 200, "{}", response.text());
    eprintln!("a 3 s profile answered after {:?}", started.elapsed());
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "answered before its window ended"
    );
    assert_eq!(
        response.header("content-type"),
        Some("application/octet-stream")
    );
    let profile = dir.0.join("profile.pb.gz");
    fs::write(&profile, &response.body).expect("write the profile");
    let Some(top) = pprof_top(&profile) else {
        return;
    };
    assert!(
        top.contains("late_spin_loop"),
        "pid {}:\n{top}",
        spinner.pid
    );
    assert!(top.contains("samples at 19 Hz"), "{top}");
    assert!(top.contains("probe watch: continuous profile"), "{top}");

    // As people run it: pprof fetching the profile itself.
    let url = format!("http://{addr}/debug/pprof/profile?seconds=3");
    let Some(fetched) = pprof_top_source(&url) else {
        return;
    };
    assert!(fetched.contains("late_spin_loop"), "{url}:\n{fetched}");
    let (status, stderr) = watch.stop();
    assert!(status.success(), "probe watch failed ({status}):\n{stderr}");
}

#[test]
fn a_port_in_use_is_refused_before_watching() {
    if !require_bpf() {
        return;
    }
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind a port");
    let port = taken.local_addr().expect("its address").port().to_string();
    let output = probe_output(
        &["watch", "-d", "1", "--listen", &port],
        Duration::from_secs(1),
    );
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(
        lines[0].starts_with("probe: error: failed to listen on 127.0.0.1:")
            && lines[0].contains("in use"),
        "{stderr}"
    );
}

/// A Prometheus server we started, on loopback; stopped by PID when dropped.
struct Prometheus {
    child: Child,
    addr: SocketAddr,
}

impl Prometheus {
    fn start(binary: &Path, dir: &Path, scrape: SocketAddr) -> Self {
        let config = dir.join("prometheus.yml");
        fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: probe\n    static_configs:\n      - targets: ['{scrape}']\n"
            ),
        )
        .expect("write the Prometheus config");
        let addr = loopback(free_port());
        let child = Command::new(binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus");
        Self { child, addr }
    }

    /// The samples of instant query `metric` (a bare metric name): (labels, value).
    fn query(&self, metric: &str) -> Vec<(Value, f64)> {
        let Ok(response) = http_get(
            self.addr,
            &format!("/api/v1/query?query={metric}"),
            Duration::from_secs(5),
        ) else {
            return Vec::new();
        };
        let Ok(json) = serde_json::from_slice::<Value>(&response.body) else {
            return Vec::new();
        };
        json["data"]["result"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|sample| {
                let value = sample["value"][1].as_str()?.parse().ok()?;
                Some((sample["metric"].clone(), value))
            })
            .collect()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        if let Ok(pid) = libc::pid_t::try_from(self.child.id()) {
            // SAFETY: kill has no memory-safety preconditions; the pid is our unreaped child.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        let _ = self.child.wait();
    }
}

#[test]
fn a_real_prometheus_scrapes_the_metrics() {
    if !require_bpf() {
        return;
    }
    let Some(binary) = prometheus() else {
        return;
    };
    let dir = ScratchDir::new("watch-prometheus");
    let events = dir.0.join("events.jsonl");
    let port = free_port();
    let watch = Watching::start(
        &events,
        &["--listen", &port.to_string(), "--for", "1", "--sample", "1"],
    );
    let spinner = Workload::start("late_spin", &["0", "120000"]);
    watch.wait_for("the spinner's spin event", |e| {
        e["event"] == "spin" && e["episode"]["pid"] == spinner.pid
    });
    let server = Prometheus::start(&binary, &dir.0, loopback(port));
    let deadline = Instant::now() + Duration::from_secs(60);
    let scraped = loop {
        let up = server.query("up");
        let episodes = server.query("probe_episodes_total");
        let hot = server.query("probe_hot_threads");
        let runs = server.query("probe_bpf_program_runs_total");
        let ready = up
            .iter()
            .any(|(labels, value)| labels["job"] == "probe" && *value == 1.0)
            && episodes
                .iter()
                .any(|(labels, value)| labels["class"] == "user_loop" && *value >= 1.0)
            && hot
                .iter()
                .any(|(labels, value)| labels["process"] == "late_spin" && *value >= 1.0)
            && runs
                .iter()
                .any(|(labels, value)| labels["program"] == "sched_switch" && *value > 0.0);
        if ready {
            break (up, episodes, hot, runs);
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus did not scrape what was expected in 60 s: up {up:?}, episodes \
             {episodes:?}, hot {hot:?}, runs {runs:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    // No command line is ever a label.
    for (labels, _) in scraped.1.iter().chain(&scraped.2).chain(&scraped.3) {
        let labels = labels.as_object().expect("labels");
        assert!(!labels.contains_key("cmdline"), "{labels:?}");
    }
    drop(server);
    let (status, stderr) = watch.stop();
    assert!(status.success(), "probe watch failed ({status}):\n{stderr}");
    // With --listen probe has the kernel count its programs' run time: watch_stop says
    // what each cost.
    let all = read_events(&events);
    let last = all.last().expect("events");
    let programs = last["kernel_programs"].as_array().expect("kernel_programs");
    let switch = programs
        .iter()
        .find(|p| p["program"] == "sched_switch")
        .unwrap_or_else(|| panic!("no sched_switch in {last:#}"));
    assert!(
        number(switch, "run_count") > 0.0 && number(switch, "run_time_ns") > 0.0,
        "{last:#}"
    );
}

#[test]
fn profile_files_rotate_under_their_cap_and_go_tool_pprof_reads_them() {
    if !require_bpf() {
        return;
    }
    let dir = ScratchDir::new("watch-profile-dir");
    let profiles = dir.0.join("profiles");
    let events = dir.0.join("events.jsonl");
    let watch = Watching::start(
        &events,
        &[
            "--profile-dir",
            profiles.to_str().expect("a UTF-8 path"),
            "--profile-interval",
            "1",
            "--profile-dir-max-mib",
            "0.03",
        ],
    );
    let spinner = Workload::start("late_spin", &["0", "60000"]);
    std::thread::sleep(Duration::from_secs(6));
    let (status, stderr) = watch.stop();
    assert!(status.success(), "probe watch failed ({status}):\n{stderr}");
    let mode = fs::metadata(&profiles)
        .expect("the directory")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700, "profiles hold command lines: private");
    let mut files: Vec<(PathBuf, u64)> = fs::read_dir(&profiles)
        .expect("list the profiles")
        .map(|entry| {
            let entry = entry.expect("an entry");
            (entry.path(), entry.metadata().expect("its size").len())
        })
        .collect();
    files.sort();
    let names: Vec<String> = files
        .iter()
        .map(|(path, _)| path.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert!(
        names
            .iter()
            .all(|name| name.starts_with("profile-") && name.ends_with(".pb.gz")),
        "{names:?}"
    );
    // Six 1 s windows were written; the oldest went to keep ~30 KiB.
    let total: u64 = files.iter().map(|(_, len)| len).sum();
    let newest = files.last().expect("at least one profile").1;
    assert!(total <= 30 * 1024 + newest, "{total} bytes in {names:?}");
    assert!(files.len() >= 2, "{names:?}");
    // The last whole window (the final one may be cut short by the stop).
    let (path, _) = &files[files.len() - 2];
    let Some(top) = pprof_top(path) else {
        return;
    };
    assert!(
        top.contains("late_spin_loop"),
        "pid {}:\n{top}",
        spinner.pid
    );
}

#[test]
fn an_episodes_syscall_storm_names_its_argument() {
    if !require_bpf() {
        return;
    }
    let dir = ScratchDir::new("watch-args");
    let events = dir.0.join("events.jsonl");
    let watch = Watching::start(&events, &["--for", "1", "--sample", "1"]);
    let opener = Workload::start("open_loop", &[]);
    let spin = watch.wait_for("the open loop's spin event", |e| {
        e["event"] == "spin" && e["episode"]["tid"] == opener.tid
    });
    let (status, stderr) = watch.stop();
    assert!(status.success(), "probe watch failed ({status}):\n{stderr}");
    let thread = reported_thread(&spin, opener.tid);
    let openat = thread["syscalls"]
        .as_array()
        .expect("syscalls")
        .iter()
        .find(|s| s["name"] == "openat")
        .unwrap_or_else(|| panic!("no openat: {thread:#}"));
    assert_eq!(openat["args"][0]["value"], "\"/\"", "{thread:#}");
    assert_eq!(openat["args"][0]["share"], 1.0, "{thread:#}");
}

/// The latest heartbeat written so far.
fn latest_heartbeat(events: &Path) -> Option<Value> {
    read_events(events)
        .into_iter()
        .rev()
        .find(|e| e["event"] == "heartbeat")
}

#[test]
fn a_churn_of_100000_threads_leaves_memory_and_maps_where_they_were() {
    if !require_bpf() {
        return;
    }
    let dir = ScratchDir::new("watch-churn");
    let events = dir.0.join("events.jsonl");
    let watch = Watching::start(&events, &["--heartbeat", "1"]);
    watch.wait_for("a first heartbeat", |e| e["event"] == "heartbeat");
    // Settled: a few ticks in, what the machine's own threads take.
    std::thread::sleep(Duration::from_secs(2));
    let before = latest_heartbeat(&events).expect("a heartbeat");
    let churn = Workload::start("thread_churn", &["100000"]);
    let comm = format!("/proc/{}/task/{}/comm", churn.pid, churn.tid);
    let deadline = Instant::now() + Duration::from_secs(180);
    while fs::read_to_string(&comm).unwrap_or_default().trim() != "churned" {
        assert!(Instant::now() < deadline, "the churn did not end in 180 s");
        std::thread::sleep(Duration::from_millis(200));
    }
    // Exited threads' entries go a tick (0.5 s) after their exit is seen, once the loop has
    // read the churn's tens of thousands of entries (seconds in a debug build): wait for
    // a heartbeat that shows it, 30 s at most.
    // Margins: 64 entries for threads of the machine that came and went meanwhile; 8 MiB
    // of RSS for allocator slack (what is kept is per live thread, not per thread seen).
    let entries = |beat: &Value| number(beat, "thread_map_entries");
    let tracked = |beat: &Value| number(beat, "threads_tracked");
    let settled = |beat: &Value| {
        entries(beat) <= entries(&before) + 64.0 && tracked(beat) <= tracked(&before) + 64.0
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let after = loop {
        let beat = latest_heartbeat(&events).expect("a heartbeat");
        if settled(&beat) || Instant::now() >= deadline {
            break beat;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let (status, stderr) = watch.stop();
    assert!(status.success(), "probe watch failed ({status}):\n{stderr}");
    assert!(
        settled(&after),
        "30 s after the churn: thread map {} entries (before {}), threads tracked {} (before \
         {})\n{after:#}",
        entries(&after),
        entries(&before),
        tracked(&after),
        tracked(&before)
    );
    let rss_mib = |beat: &Value| number(beat, "rss_kib") / 1024.0;
    assert!(
        rss_mib(&after) <= rss_mib(&before) + 8.0,
        "RSS: {:.1} MiB before, {:.1} MiB after",
        rss_mib(&before),
        rss_mib(&after)
    );
    assert!(rss_mib(&after) <= 64.0, "RSS {:.1} MiB", rss_mib(&after));
}
