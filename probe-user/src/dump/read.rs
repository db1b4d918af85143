//! What /proc says about one thread right now: its state, wait channel, kernel stack, the
//! syscall it is in and its CPU time so far. Each file is read once and parsed by a pure
//! function (tested on the kernel's text), so a thread that exits between two reads leaves
//! what was read, never a wrong value.

use std::fs;
use std::path::Path;

use serde::Serialize;

/// A thread's scheduler state, from field 3 of /proc/PID/task/TID/stat.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ThreadState {
    Running,
    Sleeping,
    /// `D`: waiting in the kernel, not even a signal wakes it.
    Uninterruptible,
    Stopped,
    /// Stopped by a tracer.
    Traced,
    Zombie,
    Dead,
    /// `I`: an idle kernel thread.
    Idle,
    /// A letter this probe does not know.
    Other,
}

impl ThreadState {
    pub fn from_letter(letter: char) -> Self {
        match letter {
            'R' => Self::Running,
            'S' => Self::Sleeping,
            'D' => Self::Uninterruptible,
            'T' => Self::Stopped,
            't' => Self::Traced,
            'Z' => Self::Zombie,
            'X' | 'x' => Self::Dead,
            'I' => Self::Idle,
            _ => Self::Other,
        }
    }

    /// How the text output says it: "sleeping", "uninterruptible (D)", ...
    pub fn describe(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Sleeping => "sleeping",
            Self::Uninterruptible => "uninterruptible (D)",
            Self::Stopped => "stopped",
            Self::Traced => "stopped by a tracer",
            Self::Zombie => "zombie",
            Self::Dead => "dead",
            Self::Idle => "idle",
            Self::Other => "in an unknown state",
        }
    }
}

/// What /proc/PID/task/TID/syscall says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SyscallLine {
    /// `running`: on a CPU, so no saved registers to read.
    Running,
    /// `-1 SP PC`: blocked in the kernel, but not in a syscall (a page fault, say).
    NotInSyscall { sp: u64, pc: u64 },
    /// `NR ARG1 .. ARG6 SP PC`.
    InSyscall {
        nr: u32,
        args: [u64; 6],
        sp: u64,
        pc: u64,
    },
}

/// Parses /proc/PID/task/TID/syscall; `None` for anything else.
pub fn parse_syscall(text: &str) -> Option<SyscallLine> {
    let text = text.trim();
    if text == "running" {
        return Some(SyscallLine::Running);
    }
    let fields: Vec<&str> = text.split_whitespace().collect();
    let hex = |field: &str| u64::from_str_radix(field.strip_prefix("0x")?, 16).ok();
    match fields.as_slice() {
        ["-1", sp, pc] => Some(SyscallLine::NotInSyscall {
            sp: hex(sp)?,
            pc: hex(pc)?,
        }),
        [nr, a0, a1, a2, a3, a4, a5, sp, pc] => Some(SyscallLine::InSyscall {
            nr: nr.parse().ok()?,
            args: [hex(a0)?, hex(a1)?, hex(a2)?, hex(a3)?, hex(a4)?, hex(a5)?],
            sp: hex(sp)?,
            pc: hex(pc)?,
        }),
        _ => None,
    }
}

/// The functions of /proc/PID/task/TID/stack, innermost first: `[<0>] do_msgsnd+0x2a3/0x5f0`
/// gives `do_msgsnd`.
pub fn parse_kernel_stack(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| {
            let symbol = line.split_once("] ").map_or(line, |(_, s)| s).trim();
            let function = symbol.split('+').next()?.trim();
            (!function.is_empty()).then(|| function.to_owned())
        })
        .collect()
}

/// /proc/PID/task/TID/wchan: the function the thread sleeps in; `None` for `0` (running,
/// or not sleeping in a named place) or an empty file.
pub fn parse_wchan(text: &str) -> Option<String> {
    let wchan = text.trim();
    (!wchan.is_empty() && wchan != "0").then(|| wchan.to_owned())
}

/// Time on a CPU so far in ns, the first field of /proc/PID/task/TID/schedstat.
pub fn parse_schedstat_ns(text: &str) -> Option<u64> {
    text.split_whitespace().next()?.parse().ok()
}

/// Field 3 (the state letter) of a stat line, after the `(comm)`, which may hold spaces
/// and parentheses of its own.
pub fn parse_stat_state(text: &str) -> Option<char> {
    let after_comm = &text[text.rfind(')')? + 1..];
    after_comm.trim_start().chars().next()
}

/// One thread as /proc showed it.
#[derive(Clone, Debug, PartialEq)]
pub struct ThreadRead {
    pub tid: u32,
    pub name: String,
    pub state: ThreadState,
    pub wchan: Option<String>,
    /// `None` when the stack file could not be read (it needs root).
    pub kernel_stack: Option<Vec<String>>,
    /// `None` when the syscall file could not be read (it needs ptrace access).
    pub syscall: Option<SyscallLine>,
    pub cpu_ns: Option<u64>,
}

/// Reads thread `tid` of `pid`; `None` when it is gone (its stat file is the proof of
/// life: the others may fail for want of privilege).
pub fn read_thread(pid: u32, tid: u32) -> Option<ThreadRead> {
    let dir = crate::proc::dir(pid, Some(tid));
    let text = |file: &str| fs::read_to_string(dir.join(file)).ok();
    let state = parse_stat_state(&text("stat")?)?;
    Some(ThreadRead {
        tid,
        name: crate::proc::read_comm(&dir.join("comm")).unwrap_or_default(),
        state: ThreadState::from_letter(state),
        wchan: text("wchan").as_deref().and_then(parse_wchan),
        kernel_stack: text("stack").map(|stack| parse_kernel_stack(&stack)),
        syscall: text("syscall").as_deref().and_then(parse_syscall),
        cpu_ns: text("schedstat").as_deref().and_then(parse_schedstat_ns),
    })
}

/// What fd `fd` of `pid` points at (`socket:[123]`, a path, `pipe:[9]`), if it is open.
pub fn fd_target(pid: u32, fd: u64) -> Option<String> {
    let link = crate::proc::dir(pid, None).join("fd").join(fd.to_string());
    fs::read_link(Path::new(&link))
        .ok()
        .map(|target| target.to_string_lossy().into_owned())
}

/// A SysV message queue as `msgctl(IPC_STAT)` shows it, for a thread blocked in `call`
/// (msgsnd or msgrcv) on it with a message of `size` bytes: `queue 3: 32 messages, 16,384
/// of 16,384 bytes (full), last sent by 812, last received by 0`.
pub fn describe_queue(msqid: i32, call: &str, size: u64) -> String {
    // SAFETY: msqid_ds is plain integers, for which all-zero bytes are a valid value.
    let mut info: libc::msqid_ds = unsafe { std::mem::zeroed() };
    // SAFETY: `info` is a valid, writable msqid_ds; IPC_STAT only writes into it.
    if unsafe { libc::msgctl(msqid, libc::IPC_STAT, &mut info) } != 0 {
        let err = std::io::Error::last_os_error();
        return format!("queue {msqid} (unreadable: {err})");
    }
    queue_text(msqid, call, size, &QueueState::from(&info))
}

/// The figures of a queue that matter to a blocked thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueState {
    pub messages: u64,
    pub bytes: u64,
    pub limit: u64,
    pub last_sender: i32,
    pub last_receiver: i32,
}

impl From<&libc::msqid_ds> for QueueState {
    fn from(info: &libc::msqid_ds) -> Self {
        Self {
            messages: info.msg_qnum,
            bytes: info.__msg_cbytes,
            limit: info.msg_qbytes,
            last_sender: info.msg_lspid,
            last_receiver: info.msg_lrpid,
        }
    }
}

/// The text of [`describe_queue`]: a sender waits while its message does not fit, a
/// receiver while nothing (of its type) is there.
pub fn queue_text(msqid: i32, call: &str, size: u64, queue: &QueueState) -> String {
    use crate::report::human::grouped;
    let condition = if call == "msgsnd" && queue.bytes + size > queue.limit {
        " (full)"
    } else if call == "msgrcv" && queue.messages == 0 {
        " (empty)"
    } else {
        ""
    };
    format!(
        "queue {msqid}: {} messages, {} of {} bytes{condition}, last sent by {}, last \
         received by {}",
        grouped(queue.messages),
        grouped(queue.bytes),
        grouped(queue.limit),
        queue.last_sender,
        queue.last_receiver
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syscall_lines_of_each_kind() {
        assert_eq!(parse_syscall("running\n"), Some(SyscallLine::Running));
        assert_eq!(
            parse_syscall("-1 0x7ffc2bb025b8 0x7f1d7bc02503\n"),
            Some(SyscallLine::NotInSyscall {
                sp: 0x7ffc_2bb0_25b8,
                pc: 0x7f1d_7bc0_2503
            })
        );
        assert_eq!(
            parse_syscall(
                "230 0x0 0x0 0x7ffc2bb025d0 0x7ffc2bb02610 0x0 0x0 0x7ffc2bb025b8 0x7f1d7bc02503"
            ),
            Some(SyscallLine::InSyscall {
                nr: 230,
                args: [0, 0, 0x7ffc_2bb0_25d0, 0x7ffc_2bb0_2610, 0, 0],
                sp: 0x7ffc_2bb0_25b8,
                pc: 0x7f1d_7bc0_2503
            })
        );
        for bad in [
            "",
            "230 0x0",
            "x 0x0 0x0 0x0 0x0 0x0 0x0 0x0 0x0",
            "-1 12 0x3",
        ] {
            assert_eq!(parse_syscall(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn kernel_stacks_keep_function_names_innermost_first() {
        let stack = "[<0>] do_msgsnd+0x2a3/0x5f0\n[<0>] __x64_sys_msgsnd+0x1a/0x30\n\
                     [<0>] do_syscall_64+0x71/0x290\n";
        assert_eq!(
            parse_kernel_stack(stack),
            ["do_msgsnd", "__x64_sys_msgsnd", "do_syscall_64"]
        );
        assert!(parse_kernel_stack("").is_empty());
        // A module's function keeps its name.
        assert_eq!(
            parse_kernel_stack("[<0>] fuse_wait+0x10/0x20 [fuse]\n"),
            ["fuse_wait"]
        );
    }

    #[test]
    fn wchan_schedstat_and_state() {
        assert_eq!(
            parse_wchan("hrtimer_nanosleep"),
            Some("hrtimer_nanosleep".into())
        );
        assert_eq!(parse_wchan("0"), None);
        assert_eq!(parse_wchan(""), None);
        assert_eq!(parse_schedstat_ns("1601998 4164493 2\n"), Some(1_601_998));
        assert_eq!(parse_schedstat_ns(""), None);
        // A comm with a space and a parenthesis of its own.
        assert_eq!(parse_stat_state("16186 (a) b) S 16184 16184"), Some('S'));
        assert_eq!(ThreadState::from_letter('D'), ThreadState::Uninterruptible);
        assert_eq!(ThreadState::from_letter('?'), ThreadState::Other);
    }

    #[test]
    fn a_queue_says_when_it_is_full_or_empty() {
        let full = QueueState {
            messages: 32,
            bytes: 16_384,
            limit: 16_384,
            last_sender: 812,
            last_receiver: 0,
        };
        assert_eq!(
            queue_text(3, "msgsnd", 512, &full),
            "queue 3: 32 messages, 16,384 of 16,384 bytes (full), last sent by 812, last \
             received by 0"
        );
        let empty = QueueState {
            messages: 0,
            bytes: 0,
            ..full
        };
        assert!(queue_text(3, "msgrcv", 512, &empty).contains("0 of 16,384 bytes (empty)"));
        assert!(!queue_text(3, "msgsnd", 512, &empty).contains('('));
        // A queue that is not there says so.
        assert!(describe_queue(-1, "msgsnd", 1).starts_with("queue -1 (unreadable: "));
    }

    #[test]
    fn a_real_sleeping_thread_reads_back() {
        crate::proc::tests::with_named_thread(c"dump-read", |tid| {
            let pid = std::process::id();
            let thread = read_thread(pid, tid).expect("the thread is alive");
            assert_eq!(thread.name, "dump-read");
            assert!(thread.cpu_ns.is_some());
            assert!(read_thread(pid, u32::MAX).is_none());
        });
    }
}
