//! `probe dump` against real processes: hundreds of idle threads come out as a few grouped
//! lines with their syscalls and kernel stacks; `--wait` tells blocked threads from a
//! spinning one; the seed's scene (a sender blocked on a full SysV queue, a connector on a
//! unix socket nobody accepts) is named; a process that exits during `--wait` is shown as
//! last seen; no such PID is one clear line.

use std::time::{Duration, Instant};

use probe_tests::{probe_output, require_bpf, run_probe, Workload};
use serde_json::Value;

fn dump_json(args: &[&str]) -> Value {
    let mut full = vec!["dump", "--json"];
    full.extend_from_slice(args);
    let output = run_probe(&full);
    serde_json::from_slice(&output.stdout).expect("the dump is JSON")
}

fn groups(dump: &Value, process: usize) -> &Vec<Value> {
    dump["processes"][process]["groups"]
        .as_array()
        .expect("groups")
}

fn thread_count(group: &Value) -> usize {
    group["threads"].as_array().expect("threads").len()
}

fn kernel_stack(group: &Value) -> Vec<&str> {
    group["kernel_stack"]
        .as_array()
        .expect("a kernel stack (root)")
        .iter()
        .filter_map(Value::as_str)
        .collect()
}

#[test]
fn five_hundred_idle_threads_are_a_few_grouped_lines() {
    if !require_bpf() {
        return;
    }
    let idle = Workload::start("idle_threads", &["500"]);
    let dump = dump_json(&["-p", &idle.pid.to_string()]);
    let process = &dump["processes"][0];
    assert_eq!(process["thread_count"], 501, "{process:#}");
    let all_groups = groups;
    let groups = all_groups(&dump, 0);
    assert!(groups.len() <= 5, "{groups:#?}");
    let by_syscall = |name: &str| {
        groups
            .iter()
            .find(|g| g["syscall"]["name"] == name)
            .unwrap_or_else(|| panic!("no group in {name}: {groups:#?}"))
    };
    // The condition variable's waiters all wait on one futex word (two at most, should
    // glibc move some to its other group).
    let in_futex: usize = groups
        .iter()
        .filter(|g| g["syscall"]["name"] == "futex")
        .map(thread_count)
        .sum();
    assert_eq!(in_futex, 250, "{groups:#?}");
    let futex = by_syscall("futex");
    assert_eq!(futex["state"], "sleeping");
    assert!(
        futex["syscall"]["arg"]
            .as_str()
            .is_some_and(|a| a.starts_with("futex 0x")),
        "{futex:#}"
    );
    assert!(
        kernel_stack(futex).iter().any(|f| f.contains("futex_wait")),
        "{futex:#}"
    );
    let sleep = by_syscall("clock_nanosleep");
    assert_eq!(thread_count(sleep), 250, "{sleep:#}");
    // The timeouts, read from the callers' memory: an hour's sleep, a wait without one.
    assert_eq!(sleep["syscall"]["timeout"], "timeout 3600 s", "{sleep:#}");
    assert_eq!(futex["syscall"]["timeout"], "no timeout", "{futex:#}");
    assert!(
        kernel_stack(sleep).contains(&"hrtimer_nanosleep"),
        "{sleep:#}"
    );
    // The text: one line per group, its threads named, its kernel stack under it.
    let output = run_probe(&["dump", "-p", &idle.pid.to_string()]);
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.contains(
            "250 threads sleeping in clock_nanosleep (timeout 3600 s), wait channel \
             hrtimer_nanosleep"
        ),
        "{text}"
    );
    assert!(
        text.contains(" threads sleeping in futex (futex 0x"),
        "{text}"
    );
    assert!(text.contains("… 244 more"), "{text}");
    // Three groups, each with its kernel stack and the user stack its threads blocked
    // with (the same for all of them, so it is still one group).
    assert!(text.lines().count() < 40, "{text}");
    assert!(
        text.contains("idle (idle_threads) at ") && text.contains("start_thread (libc.so.6)"),
        "{text}"
    );
    // --all: one entry per thread.
    let all = dump_json(&["-p", &idle.pid.to_string(), "--all"]);
    assert_eq!(all_groups(&all, 0).len(), 501);
}

#[test]
fn wait_tells_blocked_threads_from_a_spinning_one() {
    if !require_bpf() {
        return;
    }
    let idle = Workload::start("idle_threads", &[]);
    let spinner = Workload::start("spin_loop", &[]);
    let started = Instant::now();
    let dump = dump_json(&[
        "-p",
        &idle.pid.to_string(),
        "-p",
        &spinner.pid.to_string(),
        "--wait",
        "1",
    ]);
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert_eq!(dump["wait_secs"].as_f64().map(|s| s >= 1.0), Some(true));
    let find = |pid: u32| {
        let processes = dump["processes"].as_array().expect("processes");
        let at = processes
            .iter()
            .position(|p| p["pid"] == pid)
            .unwrap_or_else(|| panic!("no process {pid}: {dump:#}"));
        groups(&dump, at)
    };
    // Every idle thread (the main one too, reading its stdin) sat still.
    for group in find(idle.pid) {
        assert_eq!(group["activity"]["kind"], "blocked", "{group:#}");
        assert!(group["activity"]["at_least_secs"].as_f64() >= Some(1.0));
    }
    let spinning = find(spinner.pid)
        .iter()
        .find(|g| {
            g["threads"]
                .as_array()
                .unwrap()
                .iter()
                .any(|t| t["tid"] == spinner.tid)
        })
        .expect("the spinner's group");
    assert_eq!(spinning["activity"]["kind"], "active", "{spinning:#}");
    assert_eq!(spinning["state"], "running", "{spinning:#}");
}

/// Removes the SysV queue whose last sender is `pid` (a queue outlives its process).
struct QueueOf(u32);

impl QueueOf {
    fn msqid(&self) -> Option<i32> {
        let table = std::fs::read_to_string("/proc/sysvipc/msg").ok()?;
        table.lines().skip(1).find_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            (fields.get(5)?.parse::<u32>().ok()? == self.0).then(|| fields[1].parse().ok())?
        })
    }
}

impl Drop for QueueOf {
    fn drop(&mut self) {
        if let Some(msqid) = self.msqid() {
            // SAFETY: IPC_RMID takes no buffer; the queue is the one our workload made.
            unsafe { libc::msgctl(msqid, libc::IPC_RMID, std::ptr::null_mut()) };
        }
    }
}

#[test]
fn the_seeds_scene_names_the_full_queue_and_the_unaccepted_connect() {
    if !require_bpf() {
        return;
    }
    let scene = Workload::start("ipc_scene", &[]);
    let queue = QueueOf(scene.pid);
    let msqid = queue
        .msqid()
        .expect("the scene's queue in /proc/sysvipc/msg");
    // The connector blocks a moment after the ready line: wait for its wait channel.
    let wchan = |name: &str| {
        let dir = format!("/proc/{}/task", scene.pid);
        std::fs::read_dir(dir)
            .ok()
            .into_iter()
            .flatten()
            .flatten()
            .any(|task| {
                let read =
                    |file| std::fs::read_to_string(task.path().join(file)).unwrap_or_default();
                read("comm").trim() == name && read("wchan") == "unix_wait_for_peer"
            })
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !wchan("connector") {
        assert!(Instant::now() < deadline, "the connector never blocked");
        std::thread::sleep(Duration::from_millis(20));
    }
    let dump = dump_json(&["-p", &scene.pid.to_string()]);
    let groups = groups(&dump, 0);
    let named = |name: &str| {
        groups
            .iter()
            .find(|g| g["threads"][0]["name"] == name)
            .unwrap_or_else(|| panic!("no thread {name}: {groups:#?}"))
    };
    let sender = named("sender");
    assert_eq!(sender["wchan"], "do_msgsnd", "{sender:#}");
    assert_eq!(sender["syscall"]["name"], "msgsnd", "{sender:#}");
    let arg = sender["syscall"]["arg"].as_str().expect("the queue named");
    assert!(
        arg.starts_with(&format!("queue {msqid}: ")) && arg.contains("(full)"),
        "{arg}"
    );
    assert!(
        arg.contains(&format!("last sent by {}", scene.pid)),
        "{arg}"
    );
    let connector = named("connector");
    assert_eq!(connector["wchan"], "unix_wait_for_peer", "{connector:#}");
    assert_eq!(connector["syscall"]["name"], "connect", "{connector:#}");
    assert!(
        connector["syscall"]["arg"]
            .as_str()
            .is_some_and(|a| a.contains("→ socket:[")),
        "{connector:#}"
    );
    // The peer: the address it connects to (abstract, read from its memory), the listener
    // there (/proc/net/unix) and who holds it (the scene itself), whose backlog is full.
    let peer = connector["syscall"]["peer"].as_str().unwrap_or_default();
    for part in [
        format!("connecting to unix socket @probe-ipc-scene-{}, ", scene.pid),
        ", listener socket:[".to_owned(),
        format!("] held by {} (ipc_scene) fd ", scene.pid),
        ", its backlog full: nobody accepts".to_owned(),
    ] {
        assert!(peer.contains(&part), "{part:?} not in {connector:#}");
    }
    // The main thread reads its stdin, a pipe this test holds the other end of.
    let main = named("ipc_scene");
    let peer = main["syscall"]["peer"].as_str().unwrap_or_default();
    assert!(
        peer.starts_with(&format!("pipe written by {} (", std::process::id())),
        "{main:#}"
    );
    let output = run_probe(&["dump", "-p", &scene.pid.to_string()]);
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.contains("      peer: connecting to unix socket @"),
        "{text}"
    );
    drop(queue);
}

#[test]
fn a_process_that_exits_during_wait_is_shown_as_last_seen() {
    if !require_bpf() {
        return;
    }
    // Spins 300 ms of CPU after a 200 ms nap, then exits by itself.
    let short = Workload::start("short_lived", &["300", "200"]);
    let output = probe_output(
        &[
            "dump",
            "--json",
            "-p",
            &short.pid.to_string(),
            "--wait",
            "3",
        ],
        Duration::from_secs(10),
    );
    assert!(output.status.success(), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("process {} exited during --wait", short.pid)),
        "{stderr}"
    );
    let dump: Value = serde_json::from_slice(&output.stdout).expect("JSON");
    let process = &dump["processes"][0];
    assert_eq!(process["exited"], true, "{process:#}");
    assert!(process["thread_count"].as_u64() >= Some(1), "{process:#}");
}

#[test]
fn no_such_pid_is_one_clear_line() {
    if !require_bpf() {
        return;
    }
    let pid_max: u32 = std::fs::read_to_string("/proc/sys/kernel/pid_max")
        .expect("pid_max")
        .trim()
        .parse()
        .expect("a number");
    let output = probe_output(
        &["dump", "-p", &pid_max.to_string()],
        Duration::from_secs(5),
    );
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        stderr.trim(),
        format!(
            "probe: error: no process with PID {pid_max} (check the number with `ps -p {pid_max}`)"
        )
    );
}

/// The group holding thread `name` (its `threading` name) in process 0 of `dump`.
fn python_thread<'a>(dump: &'a Value, name: &str) -> &'a Value {
    groups(dump, 0)
        .iter()
        .find(|g| {
            g["threads"]
                .as_array()
                .is_some_and(|threads| threads.iter().any(|t| t["python_name"] == name))
        })
        .unwrap_or_else(|| panic!("no Python thread {name}: {dump:#}"))
}

/// The frames `py-spy dump` printed for thread `tid`: `function (file:line)` lines under
/// its `Thread <tid> (...)` header, innermost first.
fn py_spy_thread(output: &str, tid: u64) -> Vec<String> {
    let header = format!("Thread {tid} ");
    output
        .lines()
        .skip_while(|line| !line.starts_with(&header))
        .skip(1)
        .take_while(|line| line.starts_with("    "))
        .map(|line| line.trim().to_owned())
        .collect()
}

#[test]
fn python_threads_deadlocked_on_two_locks_show_where_they_wait_on_3_8_to_3_13() {
    if !require_bpf() {
        return;
    }
    let line = probe_tests::marker_line("py_lock_deadlock.py", "take_second");
    for minor in 8..=13 {
        let Some(python) = probe_tests::require_interpreter(minor) else {
            continue;
        };
        let deadlock = probe_tests::start_python(&python, "py_lock_deadlock.py", &[]);
        // Both threads reach their second acquire a moment after the ready line.
        let deadline = Instant::now() + Duration::from_secs(10);
        let dump = loop {
            let dump = dump_json(&["-p", &deadlock.pid.to_string()]);
            let waiting =
                |name| python_thread(&dump, name)["python_stack"]["frames"][0]["line"] == line;
            if waiting("left") && waiting("right") {
                break dump;
            }
            assert!(
                Instant::now() < deadline,
                "3.{minor}: never both waiting: {dump:#}"
            );
            std::thread::sleep(Duration::from_millis(100));
        };
        assert_eq!(
            dump["processes"][0]["python_version"],
            format!("3.{minor}"),
            "{dump:#}"
        );
        for name in ["left", "right"] {
            let group = python_thread(&dump, name);
            let frames = group["python_stack"]["frames"].as_array().expect("frames");
            assert_eq!(
                frames[0]["function"], "take_both",
                "3.{minor} {name}: {group:#}"
            );
            assert!(
                frames[0]["file"]
                    .as_str()
                    .is_some_and(|f| f.ends_with("py_lock_deadlock.py")),
                "{group:#}"
            );
            // Below it, threading's own frames, as far as the thread's bootstrap.
            assert!(
                frames.iter().any(|f| f["function"]
                    .as_str()
                    .is_some_and(|f| f.ends_with("_bootstrap_inner"))),
                "3.{minor} {name}: {group:#}"
            );
            assert_eq!(group["python_stack"]["truncated"], false, "{group:#}");
            assert_eq!(group["state"], "sleeping", "{group:#}");
            assert_eq!(group["syscall"]["name"], "futex", "{group:#}");
        }
        // py-spy, reading the same process (and pausing it to do so), agrees frame by frame.
        if let Some(py_spy) = probe_tests::py_spy_dump(deadlock.pid) {
            for name in ["left", "right"] {
                let group = python_thread(&dump, name);
                let tid = group["threads"]
                    .as_array()
                    .and_then(|threads| threads.iter().find(|t| t["python_name"] == name))
                    .and_then(|t| t["tid"].as_u64())
                    .expect("tid");
                let ours: Vec<String> = group["python_stack"]["frames"]
                    .as_array()
                    .expect("frames")
                    .iter()
                    .map(|f| {
                        let file = f["file"].as_str().unwrap_or_default();
                        let base = file.rsplit('/').next().unwrap_or(file);
                        format!(
                            "{} ({base}:{})",
                            f["function"].as_str().unwrap_or("?"),
                            f["line"]
                        )
                    })
                    .collect();
                assert_eq!(
                    ours,
                    py_spy_thread(&py_spy, tid),
                    "3.{minor} {name}: py-spy dump:\n{py_spy}"
                );
            }
        }
        // With --wait, both blocked all along in waits of their own code: a possible
        // deadlock (a Lock has no owner to prove it).
        let waited = dump_json(&["-p", &deadlock.pid.to_string(), "--wait", "0.5"]);
        let possible = &waited["processes"][0]["possible_deadlock"];
        let names: Vec<&str> = possible["threads"]
            .as_array()
            .unwrap_or_else(|| panic!("3.{minor}: no possible deadlock: {waited:#}"))
            .iter()
            .filter_map(|t| t["name"].as_str())
            .collect();
        assert_eq!(names, ["left", "right"], "3.{minor}: {possible:#}");
        assert_eq!(possible["threads"][0]["at"]["line"], line, "{possible:#}");
        // The text names them by their threading names, with the Python stack.
        let output = run_probe(&["dump", "-p", &deadlock.pid.to_string()]);
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(text.contains(&format!("Python 3.{minor})")), "{text}");
        assert!(text.contains("left ("), "{text}");
        // The Python frames are merged into the native stack the threads blocked with,
        // which reaches the thread's start untruncated.
        assert!(
            text.contains("[py] take_both (") && text.contains(&format!(":{line})")),
            "{text}"
        );
        for name in ["left", "right"] {
            let group = python_thread(&dump, name);
            let stack = &group["user_stack"];
            let frames = stack["frames"].as_array().expect("a user stack");
            let at = frames
                .iter()
                .position(|f| f["kind"] == "python")
                .unwrap_or_else(|| panic!("3.{minor}: no Python frame: {stack:#}"));
            assert_eq!(frames[at]["function"], "take_both", "{stack:#}");
            assert_eq!(frames[at]["line"], line, "{stack:#}");
            assert!(
                frames[at..].iter().any(|f| f["function"] == "start_thread"),
                "3.{minor}: {stack:#}"
            );
            assert_eq!(stack["truncated"], false, "3.{minor}: {stack:#}");
        }
    }
}

#[test]
fn two_threads_deadlocked_on_two_mutexes_are_named_a_deadlock() {
    if !require_bpf() {
        return;
    }
    let deadlock = Workload::start("mutex_deadlock", &[]);
    let deadline = Instant::now() + Duration::from_secs(10);
    let dump = loop {
        let dump = dump_json(&["-p", &deadlock.pid.to_string()]);
        if dump["processes"][0]["deadlocks"]
            .as_array()
            .is_some_and(|d| !d.is_empty())
        {
            break dump;
        }
        assert!(Instant::now() < deadline, "no deadlock found: {dump:#}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let process = &dump["processes"][0];
    let cycles = process["deadlocks"].as_array().expect("deadlocks");
    assert_eq!(cycles.len(), 1, "{process:#}");
    let waits = cycles[0]["waits"].as_array().expect("waits");
    assert_eq!(waits.len(), 2, "{process:#}");
    let tids: Vec<u64> = waits.iter().filter_map(|w| w["waiter"].as_u64()).collect();
    let owners: Vec<u64> = waits.iter().filter_map(|w| w["owner"].as_u64()).collect();
    // Each waits for the other.
    assert_eq!(tids, [owners[1], owners[0]], "{process:#}");
    assert!(tids.contains(&u64::from(deadlock.tid)), "{process:#}");
    assert_ne!(waits[0]["mutex"], waits[1]["mutex"], "{process:#}");
    let output = run_probe(&["dump", "-p", &deadlock.pid.to_string()]);
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.contains("DEADLOCK: 2 threads wait for each other's mutexes:"),
        "{text}"
    );
    assert!(
        text.contains(&format!("left ({}) waits for mutex 0x", deadlock.tid))
            && text.contains(", held by right ("),
        "{text}"
    );
    // Both stacks, unwound from the saved registers through code built without frame
    // pointers, reach the thread's start with the function that took the locks; gdb,
    // attached afterwards, agrees on the program's own functions.
    for (name, locker) in [("left", "left_locks"), ("right", "right_locks")] {
        let group = groups(&dump, 0)
            .iter()
            .find(|g| g["threads"][0]["name"] == name)
            .unwrap_or_else(|| panic!("no thread {name}: {dump:#}"));
        let stack = &group["user_stack"];
        let frames = stack["frames"]
            .as_array()
            .unwrap_or_else(|| panic!("{name} has no user stack: {group:#}"));
        let own: Vec<&str> = frames
            .iter()
            .filter(|f| f["module"] == "mutex_deadlock")
            .filter_map(|f| f["function"].as_str())
            .collect();
        assert_eq!(own, [locker, name], "{stack:#}");
        assert_eq!(stack["truncated"], false, "{stack:#}");
        assert!(
            frames.iter().any(|f| f["function"] == "start_thread"),
            "{stack:#}"
        );
        let tid = group["threads"][0]["tid"].as_u64().expect("tid") as u32;
        if let Some(gdb) = probe_tests::gdb_frames(deadlock.pid, tid) {
            let gdb_own: Vec<&str> = gdb
                .iter()
                .filter(|f| {
                    f.source
                        .as_deref()
                        .is_some_and(|s| s.contains("mutex_deadlock.c"))
                })
                .map(|f| f.function.as_str())
                .collect();
            assert_eq!(gdb_own, own, "gdb: {gdb:#?}\nprobe: {stack:#}");
        }
    }
    assert!(
        text.contains(&format!("{:>5}left_locks (mutex_deadlock) at ", "")),
        "{text}"
    );
}

#[test]
fn a_thread_in_uninterruptible_sleep_is_shown_with_its_kernel_stack() {
    if !require_bpf() {
        return;
    }
    // vfork keeps the calling thread in D state until its child exits.
    let workload = Workload::start("vfork_wait", &[]);
    let deadline = Instant::now() + Duration::from_secs(10);
    let group = loop {
        let dump = dump_json(&["-p", &workload.pid.to_string()]);
        let found = groups(&dump, 0)
            .iter()
            .find(|g| g["state"] == "uninterruptible")
            .cloned();
        if let Some(group) = found {
            break group;
        }
        assert!(Instant::now() < deadline, "no D-state thread: {dump:#}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(group["threads"][0]["tid"], workload.tid, "{group:#}");
    assert_eq!(group["syscall"]["name"], "vfork", "{group:#}");
    assert!(
        kernel_stack(&group).iter().any(|f| f.contains("vfork")),
        "{group:#}"
    );
    // glibc's __vfork keeps its return address in a register across the syscall, which
    // the tables cannot follow: the stack is marked truncated there, not continued.
    let stack = &group["user_stack"];
    assert_eq!(stack["frames"][0]["function"], "__vfork", "{stack:#}");
    assert_eq!(stack["truncated"], true, "{stack:#}");
    let output = run_probe(&["dump", "-p", &workload.pid.to_string()]);
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.contains("1 thread uninterruptible (D) in vfork"),
        "{text}"
    );
}

#[test]
fn python_rlock_deadlocks_name_their_owners_on_3_8_to_3_13() {
    if !require_bpf() {
        return;
    }
    for minor in 8..=13 {
        let Some(python) = probe_tests::require_interpreter(minor) else {
            continue;
        };
        let deadlock = probe_tests::start_python(&python, "py_lock_deadlock.py", &["rlock"]);
        let deadline = Instant::now() + Duration::from_secs(10);
        let dump = loop {
            let dump = dump_json(&["-p", &deadlock.pid.to_string()]);
            if dump["processes"][0]["deadlocks"]
                .as_array()
                .is_some_and(|d| !d.is_empty())
            {
                break dump;
            }
            assert!(
                Instant::now() < deadline,
                "3.{minor}: no RLock deadlock found: {dump:#}"
            );
            std::thread::sleep(Duration::from_millis(100));
        };
        let process = &dump["processes"][0];
        let waits = process["deadlocks"][0]["waits"].as_array().expect("waits");
        assert_eq!(waits.len(), 2, "3.{minor}: {process:#}");
        let tid_of = |name: &str| {
            python_thread(&dump, name)["threads"]
                .as_array()
                .and_then(|threads| threads.iter().find(|t| t["python_name"] == name))
                .and_then(|t| t["tid"].as_u64())
                .expect("tid")
        };
        let (left, right) = (tid_of("left"), tid_of("right"));
        for wait in waits {
            assert_eq!(wait["kind"], "threading.RLock", "{wait:#}");
            let pair = (wait["waiter"].as_u64(), wait["owner"].as_u64());
            assert!(
                pair == (Some(left), Some(right)) || pair == (Some(right), Some(left)),
                "3.{minor}: {wait:#}"
            );
        }
        let output = run_probe(&["dump", "-p", &deadlock.pid.to_string()]);
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(
            text.contains("DEADLOCK: 2 threads wait for each other's locks:")
                && text.contains(&format!("left ({left}) waits for threading.RLock 0x"))
                && text.contains(&format!("held by right ({right})")),
            "3.{minor}: {text}"
        );
    }
}
