//! Syscall names for the architecture probe runs on, from the `syscalls` crate (generated
//! from the kernel's syscall tables), never typed by hand.

use std::borrow::Cow;

/// The name of syscall `nr`, or `syscall_<nr>` when the table has none.
pub fn name(nr: u32) -> Cow<'static, str> {
    match syscalls::Sysno::new(nr as usize) {
        Some(sysno) => Cow::Borrowed(sysno.name()),
        None => Cow::Owned(format!("syscall_{nr}")),
    }
}

/// Syscalls that wait for file descriptors: a thread at full CPU making thousands of these
/// a second is in a poll storm (a wait that never waits).
pub fn is_poll_family(nr: u32) -> bool {
    matches!(
        name(nr).as_ref(),
        "poll" | "ppoll" | "select" | "pselect6" | "epoll_wait" | "epoll_pwait" | "epoll_pwait2"
    )
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;

    #[test]
    fn names_x86_64_syscalls() {
        assert_eq!(name(0), "read");
        assert_eq!(name(110), "getppid");
        assert_eq!(name(257), "openat");
        assert_eq!(name(5), "fstat");
        assert_eq!(name(9999), "syscall_9999");
        assert!(is_poll_family(232)); // epoll_wait
        assert!(!is_poll_family(0));
    }
}
