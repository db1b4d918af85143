//! How long a blocked syscall asked to wait, from its arguments (a timespec or timeval is
//! read from the caller's memory): `timeout 5 s` for a relative one, `wakes in 4.2 s` for a
//! deadline, `no timeout` for an unbounded wait. Syscalls without a timeout argument get
//! none.

use crate::python::memory::{LiveMemory, ProcessMemory};

const FUTEX_CMD_MASK: u64 = !(128 | 256);
const FUTEX_WAIT: u64 = 0;
const FUTEX_WAIT_BITSET: u64 = 9;
const FUTEX_CLOCK_REALTIME: u64 = 256;
const TIMER_ABSTIME: u64 = 1;

/// What the timeout argument of syscall `name` (with `args`, in process `pid`) says.
pub fn describe(pid: u32, name: &str, args: &[u64; 6]) -> Option<String> {
    let memory = LiveMemory::new(pid);
    let timespec = |at: u64| -> Option<f64> {
        let mut bytes = [0u8; 16];
        memory.read(at, &mut bytes).ok()?;
        let secs = i64::from_ne_bytes(bytes[..8].try_into().ok()?);
        let nanos = i64::from_ne_bytes(bytes[8..].try_into().ok()?);
        Some(secs as f64 + nanos as f64 / 1e9)
    };
    // A timeval's second word is microseconds.
    let timeval = |at: u64| timespec(at).map(|t| t.trunc() + t.fract() * 1e3);
    let relative = |secs: Option<f64>| secs.map(|s| format!("timeout {}", seconds(s)));
    let pointer = |at: u64, read: &dyn Fn(u64) -> Option<f64>| -> Option<String> {
        if at == 0 {
            Some("no timeout".to_owned())
        } else {
            relative(read(at))
        }
    };
    let millis = |ms: u64| -> String {
        match ms as u32 as i32 {
            ms if ms < 0 => "no timeout".to_owned(),
            ms => format!("timeout {}", seconds(f64::from(ms) / 1e3)),
        }
    };
    match name {
        "futex" => {
            let op = args[1];
            let deadline_clock = if op & FUTEX_CLOCK_REALTIME != 0 {
                libc::CLOCK_REALTIME
            } else {
                libc::CLOCK_MONOTONIC
            };
            match op & FUTEX_CMD_MASK {
                FUTEX_WAIT => pointer(args[3], &timespec),
                FUTEX_WAIT_BITSET if args[3] == 0 => Some("no timeout".to_owned()),
                FUTEX_WAIT_BITSET => deadline(timespec(args[3])?, deadline_clock),
                _ => None,
            }
        }
        "nanosleep" => relative(timespec(args[0])),
        "clock_nanosleep" if args[1] & TIMER_ABSTIME != 0 => {
            deadline(timespec(args[2])?, args[0] as libc::clockid_t)
        }
        "clock_nanosleep" => relative(timespec(args[2])),
        "poll" => Some(millis(args[2])),
        "epoll_wait" | "epoll_pwait" => Some(millis(args[3])),
        "ppoll" => pointer(args[2], &timespec),
        "epoll_pwait2" => pointer(args[3], &timespec),
        "select" => pointer(args[4], &timeval),
        "pselect6" => pointer(args[4], &timespec),
        _ => None,
    }
}

/// `wakes in 4.2 s` for an absolute `at` on `clock`, or that it has passed.
fn deadline(at: f64, clock: libc::clockid_t) -> Option<String> {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid, writable timespec; an unknown clock is an error, not UB.
    if unsafe { libc::clock_gettime(clock, &mut now) } != 0 {
        return None;
    }
    let left = at - (now.tv_sec as f64 + now.tv_nsec as f64 / 1e9);
    Some(if left > 0.0 {
        format!("wakes in {}", seconds(left))
    } else {
        "its deadline has passed".to_owned()
    })
}

/// `5 s`, `1.5 s`, `0.25 s`.
fn seconds(secs: f64) -> String {
    let text = format!("{secs:.3}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{text} s")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_in_words() {
        assert_eq!(seconds(5.0), "5 s");
        assert_eq!(seconds(0.25), "0.25 s");
        let args = [0, 0, u64::MAX, 0, 0, 0];
        assert_eq!(describe(1, "poll", &args).as_deref(), Some("no timeout"));
        let args = [0, 0, 1500, 0, 0, 0];
        assert_eq!(describe(1, "poll", &args).as_deref(), Some("timeout 1.5 s"));
        let futex = [0x1000, 128, 2, 0, 0, 0];
        assert_eq!(describe(1, "futex", &futex).as_deref(), Some("no timeout"));
        assert_eq!(describe(1, "read", &futex), None);
    }

    #[test]
    fn a_timespec_is_read_from_the_callers_memory() {
        let wait = libc::timespec {
            tv_sec: 2,
            tv_nsec: 500_000_000,
        };
        let at = std::ptr::addr_of!(wait) as u64;
        let args = [at, 0, 0, 0, 0, 0];
        assert_eq!(
            describe(std::process::id(), "nanosleep", &args).as_deref(),
            Some("timeout 2.5 s")
        );
    }
}
