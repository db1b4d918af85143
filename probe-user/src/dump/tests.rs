use super::read::{SyscallLine, ThreadRead, ThreadState};
use super::*;

fn thread(tid: u32, name: &str, nr: u32, stack: &[&str]) -> ThreadRead {
    ThreadRead {
        tid,
        name: name.into(),
        state: ThreadState::Sleeping,
        wchan: Some(stack[0].into()),
        kernel_stack: Some(stack.iter().map(|f| (*f).to_owned()).collect()),
        syscall: Some(SyscallLine::InSyscall {
            nr,
            // The registers differ between threads waiting on the same thing.
            args: [0x1000 + u64::from(tid), 0x80, 0, 0, 0, 0],
            sp: 0x7ff0_0000 + u64::from(tid),
            pc: 0x7f00_1234,
        }),
        cpu_ns: Some(1_000_000),
    }
}

const FUTEX: u32 = 202;
const NANOSLEEP: u32 = 230;

#[test]
fn identical_threads_group_and_the_biggest_group_comes_first() {
    let futex_stack = ["futex_wait_queue", "__futex_wait", "do_futex"];
    let sleep_stack = ["hrtimer_nanosleep", "common_nsleep"];
    let mut entries = Vec::new();
    for tid in 10..14 {
        let mut t = thread(tid, "sleeper", NANOSLEEP, &sleep_stack);
        t.syscall = Some(SyscallLine::InSyscall {
            nr: NANOSLEEP,
            args: [0; 6],
            sp: u64::from(tid),
            pc: 1,
        });
        entries.push(entry(std::process::id(), &t, None, None, None));
    }
    // Two waiting on one futex word, one on another.
    for tid in [20, 21] {
        let mut t = thread(tid, "worker", FUTEX, &futex_stack);
        if let Some(SyscallLine::InSyscall { args, .. }) = &mut t.syscall {
            args[0] = 0x5000;
        }
        entries.push(entry(std::process::id(), &t, None, None, None));
    }
    let mut lone = thread(30, "worker", FUTEX, &futex_stack);
    if let Some(SyscallLine::InSyscall { args, .. }) = &mut lone.syscall {
        args[0] = 0x6000;
    }
    entries.push(entry(std::process::id(), &lone, None, None, None));
    // Two on one word: one group, its word named.
    let same_word = group(entries[4..6].to_vec(), false);
    assert_eq!(same_word.len(), 1);
    assert_eq!(
        same_word[0].syscall.as_ref().unwrap().arg.as_deref(),
        Some("futex 0x5000")
    );
    // The word does not split threads that wait alike (each Python thread waits on its
    // own lock): the group says how many words there are.
    let groups = group(entries.clone(), false);
    let sizes: Vec<usize> = groups.iter().map(|g| g.threads.len()).collect();
    assert_eq!(sizes, [4, 3]);
    assert_eq!(groups[0].syscall.as_ref().unwrap().name, "clock_nanosleep");
    assert_eq!(
        groups[1].syscall.as_ref().unwrap().arg.as_deref(),
        Some("2 different futex words")
    );
    assert_eq!(groups[1].threads[0].tid, 20);
    // --all: one group per thread, by tid.
    let all = group(entries, true);
    assert_eq!(all.len(), 7);
    assert!(all.iter().all(|g| g.threads.len() == 1));
}

#[test]
fn a_thread_whose_cpu_time_did_not_move_was_blocked() {
    let before = thread(7, "t", FUTEX, &["futex_wait_queue"]);
    let mut after = before.clone();
    assert_eq!(
        activity(&before, &after, 2.0),
        Some(Activity::Blocked { at_least_secs: 2.0 })
    );
    after.cpu_ns = Some(1_000_001);
    assert_eq!(activity(&before, &after, 2.0), Some(Activity::Active));
    after.cpu_ns = None;
    assert_eq!(activity(&before, &after, 2.0), None);
    // Blocked and active threads of the same wait never share a group.
    let blocked = entry(
        1,
        &before,
        Some(Activity::Blocked { at_least_secs: 2.0 }),
        None,
        None,
    );
    let active = entry(1, &before, Some(Activity::Active), None, None);
    assert_eq!(group(vec![blocked, active], false).len(), 2);
}

#[test]
fn fd_arguments_name_what_the_fd_is() {
    let pid = std::process::id();
    let file = std::fs::File::open("/proc/self/status").unwrap();
    let fd = std::os::fd::AsRawFd::as_raw_fd(&file);
    let line = SyscallLine::InSyscall {
        nr: 0, // read
        args: [fd as u64, 0, 0, 0, 0, 0],
        sp: 0,
        pc: 0,
    };
    let syscall = blocked_syscall(pid, &line).unwrap();
    assert_eq!(syscall.name, "read");
    let arg = syscall.arg.unwrap();
    assert!(arg.starts_with(&format!("fd {fd} → /proc/")), "{arg}");
    // Not in a syscall: nothing to name.
    assert_eq!(blocked_syscall(pid, &SyscallLine::Running), None);
}

#[test]
fn text_names_the_wait_and_escapes_hostile_names() {
    let t = thread(5, "evil\u{1b}[2J", FUTEX, &["futex_wait_queue", "do_futex"]);
    let dump = Dump {
        schema_version: SCHEMA_VERSION,
        wait_secs: Some(2.0),
        interrupted_by: None,
        processes: vec![ProcessDump {
            pid: 5,
            name: "app".into(),
            cmdline: vec![],
            exited: false,
            python_version: None,
            notices: vec![],
            mutex_waits: vec![],
            deadlocks: vec![],
            possible_deadlock: None,
            thread_count: 1,
            groups: group(
                vec![entry(
                    5,
                    &t,
                    Some(Activity::Blocked { at_least_secs: 2.0 }),
                    None,
                    None,
                )],
                false,
            ),
        }],
    };
    let text = render::render_text(&dump);
    assert!(text.contains("process 5 (app): 1 thread\n"), "{text}");
    assert!(
        text.contains("1 thread sleeping in futex (futex 0x1005, no timeout), wait channel futex_wait_queue: blocked ≥ 2.0 s"),
        "{text}"
    );
    assert!(text.contains("evil\\x1b[2J (5)"), "{text}");
    assert!(
        text.contains("kernel: futex_wait_queue ← do_futex"),
        "{text}"
    );
    let json: serde_json::Value = serde_json::from_str(&render::render_json(&dump)).unwrap();
    let group = &json["processes"][0]["groups"][0];
    assert_eq!(group["state"], "sleeping");
    assert_eq!(group["activity"]["kind"], "blocked");
    assert_eq!(group["syscall"]["name"], "futex");
}

#[test]
fn python_threads_blocked_in_their_own_lock_waits_are_a_possible_deadlock() {
    use super::python::{PyFrame, PyStack};
    let blocked = Some(Activity::Blocked { at_least_secs: 2.0 });
    let frame = |function: &str, file: &str| PyFrame {
        function: function.into(),
        file: file.into(),
        line: Some(16),
    };
    let with_stack = |tid: u32, at: PyFrame| {
        let mut e = entry(
            1,
            &thread(tid, "python3", FUTEX, &["futex_wait_queue"]),
            blocked,
            None,
            None,
        );
        e.key.python_stack = Some(PyStack {
            frames: vec![at],
            truncated: false,
        });
        e.id.python_name = Some(format!("worker-{tid}"));
        e
    };
    let left = with_stack(10, frame("take_both", "/app/deadlock.py"));
    let right = with_stack(11, frame("take_both", "/app/deadlock.py"));
    // An idle pool worker waits in threading's Condition.wait: not a lock of its own.
    let idle = with_stack(
        12,
        frame("Condition.wait", "/usr/lib/python3.12/threading.py"),
    );
    let found = python_lock_waits(&[left.clone(), right.clone(), idle.clone()]).unwrap();
    let tids: Vec<u32> = found.threads.iter().map(|t| t.tid).collect();
    assert_eq!(tids, [10, 11]);
    assert_eq!(found.threads[0].name, "worker-10");
    assert_eq!(found.threads[0].futex, "0x100a");
    // One thread alone, or threads that ran, are no deadlock.
    assert_eq!(python_lock_waits(&[left.clone(), idle]), None);
    let mut ran = right;
    ran.key.activity = Some(Activity::Active);
    assert_eq!(python_lock_waits(&[left, ran]), None);
}
